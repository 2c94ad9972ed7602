//! The RFC 7606 table of `podroute_lab::hostile::cases`, run in memory against
//! `podroute_bgp`'s session (no sockets, no root): every row gives the outcome and the
//! counters it states, for a mesh peer (iBGP) and a router peer (eBGP). The lab test
//! `agent/tests/hostile_peer.rs` runs the same rows against a running agent.

use std::net::Ipv4Addr;
use std::time::Instant;

use podroute_bgp::message::{CodecContext, Message};
use podroute_bgp::session::{Action, AdminEvent, Session, SessionConfig, State};
use podroute_lab::hostile::cases::{Counts, Outcome, table};
use podroute_lab::hostile::peer::OpenParams;
use podroute_lab::hostile::wire::{Env, Role};

const AGENT_AS: u32 = 64512;
const AGENT_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

fn env(role: Role, four_octet: bool) -> Env {
    match role {
        Role::Mesh => Env {
            role,
            four_octet,
            asn: AGENT_AS,
            next_hop_v4: Ipv4Addr::new(198, 18, 0, 1),
            next_hop_v6: "fd00:198:18::1".parse().expect("v6"),
            subject_v4: "10.244.1.0/24".parse().expect("net"),
            subject_v6: "fd00:10:244:1::/64".parse().expect("net"),
            receiver_id: AGENT_ID,
        },
        Role::Router => Env {
            role,
            four_octet,
            asn: 64513,
            next_hop_v4: Ipv4Addr::new(198, 18, 0, 254),
            next_hop_v6: "fd00:198:18::fe".parse().expect("v6"),
            subject_v4: "10.99.1.0/24".parse().expect("net"),
            subject_v6: "fd00:99:1::/64".parse().expect("net"),
            receiver_id: AGENT_ID,
        },
    }
}

/// An Established session of the agent's side with the hostile peer.
fn established(e: &Env, now: Instant) -> Session {
    let mut s = Session::new(SessionConfig::new(AGENT_AS, AGENT_ID, e.asn));
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    let params = OpenParams {
        asn: e.asn,
        id: if e.role == Role::Mesh {
            Ipv4Addr::new(198, 18, 0, 1)
        } else {
            Ipv4Addr::new(198, 18, 0, 254)
        },
        four_octet: e.four_octet,
    };
    let ctx = CodecContext::default();
    s.handle_bytes(now, &params.open().to_bytes(&ctx));
    s.handle_bytes(now, &Message::Keepalive.to_bytes(&ctx));
    assert_eq!(s.state(), State::Established);
    while s.poll_action().is_some() {}
    s
}

#[test]
fn every_row_has_the_stated_outcome_and_counters_in_memory() {
    let now = Instant::now();
    let mut failures = Vec::new();
    let mut rows = 0;
    for role in [Role::Mesh, Role::Router] {
        for case in table() {
            rows += 1;
            let e = env(role, !case.two_octet);
            let mut s = established(&e, now);
            s.handle_bytes(now, &(case.build)(&e));
            let subject = match case.subject {
                podroute_lab::hostile::wire::Subject::V4 => e.subject_v4,
                podroute_lab::hostile::wire::Subject::V6 => e.subject_v6,
            };
            let mut outcome = Outcome::NotInstalled;
            while let Some(a) = s.poll_action() {
                match a {
                    Action::Routes(r) if r.announced.contains(&subject) => {
                        outcome = Outcome::Installed;
                    }
                    Action::NotificationSent(n) if n.code == 3 => {
                        outcome = Outcome::Reset { subcode: n.subcode };
                    }
                    _ => {}
                }
            }
            let c = s.counters().rfc7606;
            let counts = Counts {
                attribute_discard: c.attribute_discard,
                treat_as_withdraw: c.treat_as_withdraw,
                session_reset: c.session_reset,
            };
            let want = case.expect(role);
            if outcome != want.outcome || counts != want.counts {
                failures.push(format!(
                    "{} {} ({}): got {outcome:?} {counts:?}, want {:?} {:?}",
                    role.label(),
                    case.name,
                    case.rule,
                    want.outcome,
                    want.counts
                ));
            }
        }
    }
    assert!(rows >= 80, "{rows} rows");
    assert!(failures.is_empty(), "{}", failures.join("\n"));
}

/// Every row is a seed of the `update` fuzz target (`fuzz/seeds/update/rfc7606-<role>-<row>`:
/// the context byte, then the UPDATE body), so the fuzzer starts from each error the table
/// knows. `PODROUTE_WRITE_SEEDS=1` writes them after the table changed.
#[test]
fn every_row_is_a_fuzz_seed() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../fuzz/seeds/update");
    let write = std::env::var_os("PODROUTE_WRITE_SEEDS").is_some();
    let mut missing = Vec::new();
    for role in [Role::Mesh, Role::Router] {
        for case in table() {
            let e = env(role, !case.two_octet);
            let message = (case.build)(&e);
            let mut seed = vec![u8::from(e.four_octet)];
            seed.extend_from_slice(&message[19..]);
            let path = dir.join(format!("rfc7606-{}-{}", role.label(), case.name));
            if write {
                std::fs::write(&path, &seed).expect("write seed");
            } else if std::fs::read(&path).ok().as_deref() != Some(&seed[..]) {
                missing.push(path.display().to_string());
            }
        }
    }
    assert!(
        missing.is_empty(),
        "seeds missing or stale (PODROUTE_WRITE_SEEDS=1 writes them): {missing:?}"
    );
}
