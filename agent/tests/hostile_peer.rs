//! A hostile peer against a running agent, in the lab (needs root: run by `make test`).
//!
//! One dual-stack lab of two nodes, no router: the agent runs on node2; the hostile peer
//! (`podroute_lab::hostile`) speaks as node1 from node1's namespace (a mesh peer, iBGP) and
//! as the top-of-rack router from the fabric namespace (198.18.0.254, `--bgp-peer`, eBGP).
//! For each role it runs:
//!
//! - the RFC 7606 table: per row, the subject prefix withdrawn, the crafted UPDATE sent, a
//!   ROUTE-REFRESH barrier (or the expected NOTIFICATION and a reconnect), then a well-formed
//!   sentinel prefix; checked: the sentinel in the kernel, the subject in the kernel or not,
//!   the agent's RFC 7606 counters for the peer, the session kept (or reset with the stated
//!   NOTIFICATION);
//! - header framing and OPEN errors (FRR CVE-2022-40302/-40318/-43681 and GoBGP
//!   CVE-2025-43971 patterns), each on a fresh connection;
//! - (router) a byte-at-a-time session and an UPDATE flood of 51,200 UPDATEs whose memory
//!   cost must stay under [`FLOOD_RSS_BOUND_KIB`].
//!
//! Plus: an unconfigured source connecting to 179 is closed and counted.

use std::collections::BTreeSet;
use std::net::{Ipv4Addr, SocketAddr};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use podroute_lab::hostile::cases::{Counts, Outcome, table};
use podroute_lab::hostile::peer::{HostilePeer, OpenParams, connect_from};
use podroute_lab::hostile::wire::{Env, Role, Subject, message};
use podroute_lab::{Lab, LabConfig, LabProcess, Tor};

mod lab_support;
use lab_support::metric;

const ROUTER_AS: u32 = 64513;
const AGENT_AS: u32 = 64512;
/// How long one step may take (a route to appear, a NOTIFICATION to arrive).
const STEP: Duration = Duration::from_secs(15);
/// The most the agent's resident memory may grow during the UPDATE flood: the flood
/// re-announces 256 prefixes 200 times, so what it holds does not grow; what may grow is
/// buffering while the agent catches up (the socket read buffer is bounded, 16 KiB reads,
/// a bounded channel to the kernel side).
const FLOOD_RSS_BOUND_KIB: u64 = 64 * 1024;

fn lab_name() -> String {
    format!("hp{}", std::process::id() % 100_000)
}

fn spawn_agent(lab: &Lab) -> LabProcess {
    let args = vec![
        "--kubeconfig".to_owned(),
        lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        "node2".to_owned(),
        "--cni-conflist".to_owned(),
        lab.dir().join("cni-node2.conflist").display().to_string(),
        "--cni-readiness-file".to_owned(),
        lab.dir().join("cni-ready-node2").display().to_string(),
        "--reconcile-period".to_owned(),
        "2s".to_owned(),
        "--startup-grace".to_owned(),
        "5s".to_owned(),
        "--bgp-peer".to_owned(),
        format!("address=198.18.0.254,as={ROUTER_AS},import=10.99.0.0/16:24;fd00:99::/32:64"),
    ];
    lab.spawn(
        "node2",
        "agent",
        env!("CARGO_BIN_EXE_podroute-agent"),
        &args,
        &[("RUST_LOG", "info,podroute_agent=debug")],
    )
    .expect("spawn agent")
}

/// podroute's kernel routes on node2, by destination.
fn kernel(lab: &Lab) -> BTreeSet<IpNetwork> {
    lab.routes_json("node2")
        .expect("routes")
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["protocol"] == "80" || r["protocol"] == 80)
        .filter_map(|r| r["dst"].as_str()?.parse().ok())
        .collect()
}

fn wait(what: &str, timeout: Duration, mut check: impl FnMut() -> bool) -> Result<(), String> {
    let start = Instant::now();
    while start.elapsed() < timeout {
        if check() {
            return Ok(());
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!("timed out after {timeout:?} waiting for {what}"))
}

/// The agent's view of the peer at `address`: RFC 7606 counters and Established count.
fn peer_status(lab: &Lab, address: &str) -> (Counts, u64, bool) {
    let text = lab
        .exec_ok("node2", &["curl", "-sf", "http://127.0.0.1:9180/status"])
        .unwrap_or_default();
    let v: serde_json::Value = serde_json::from_str(&text).unwrap_or_default();
    let p = v["bgpPeers"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|p| p["address"] == address)
        .cloned()
        .unwrap_or_default();
    let e = &p["updateErrors"];
    let n = |v: &serde_json::Value| v.as_u64().unwrap_or(0);
    (
        Counts {
            attribute_discard: n(&e["attributeDiscard"]),
            treat_as_withdraw: n(&e["treatAsWithdraw"]),
            session_reset: n(&e["sessionReset"]),
        },
        n(&p["establishedCount"]),
        p["established"].as_bool().unwrap_or(false),
    )
}

fn add(a: Counts, b: Counts) -> Counts {
    Counts {
        attribute_discard: a.attribute_discard + b.attribute_discard,
        treat_as_withdraw: a.treat_as_withdraw + b.treat_as_withdraw,
        session_reset: a.session_reset + b.session_reset,
    }
}

/// The hostile peer in one role, and the session it holds.
struct Runner<'a> {
    lab: &'a Lab,
    role: Role,
    netns: String,
    address: &'static str,
    id: Ipv4Addr,
    base: Env,
    peer: Option<(HostilePeer, bool)>,
}

impl<'a> Runner<'a> {
    fn new(lab: &'a Lab, role: Role) -> Self {
        let (netns, address, asn, v4, v6) = match role {
            Role::Mesh => (
                lab.netns_of("node1").expect("ns"),
                "198.18.0.1",
                AGENT_AS,
                "198.18.0.1",
                "fd00:198:18::1",
            ),
            Role::Router => (
                lab.fabric_ns(),
                "198.18.0.254",
                ROUTER_AS,
                "198.18.0.254",
                "fd00:198:18::fe",
            ),
        };
        let node1 = lab.node("node1").expect("node1").pod_cidrs();
        let base = Env {
            role,
            four_octet: true,
            asn,
            next_hop_v4: v4.parse().expect("v4"),
            next_hop_v6: v6.parse().expect("v6"),
            subject_v4: node1[0],
            subject_v6: node1[1],
            receiver_id: Ipv4Addr::new(198, 18, 0, 2),
        };
        Runner {
            lab,
            role,
            netns,
            address,
            id: address.parse().expect("id"),
            base,
            peer: None,
        }
    }

    fn params(&self, four_octet: bool) -> OpenParams {
        OpenParams {
            asn: self.base.asn,
            id: self.id,
            four_octet,
        }
    }

    fn connect(&self) -> Result<HostilePeer, String> {
        let to: SocketAddr = "198.18.0.2:179".parse().expect("addr");
        let mut last = String::new();
        let start = Instant::now();
        while start.elapsed() < STEP {
            match connect_from(&self.netns, to, Duration::from_secs(2)) {
                Ok(s) => return Ok(HostilePeer::new(s)),
                Err(e) => last = e.to_string(),
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(format!("connect: {last}"))
    }

    /// Closes our connection and waits until the agent has seen it go: while its session
    /// is Established it refuses a second connection (RFC 4271 §6.8, no graceful restart).
    fn drop_session(&mut self) -> Result<(), String> {
        self.peer = None;
        let (lab, address) = (self.lab, self.address);
        wait("the agent to see the session go", STEP, || {
            !peer_status(lab, address).2
        })
    }

    /// An Established session with or without 4-octet AS numbers.
    fn session(&mut self, four_octet: bool) -> Result<&mut HostilePeer, String> {
        if !matches!(&self.peer, Some((_, f)) if *f == four_octet) {
            self.drop_session()?;
            // The agent may still be closing the previous connection: retry a few times.
            let mut last = String::new();
            for _ in 0..5 {
                let mut p = self.connect()?;
                match p.establish(&self.params(four_octet), STEP) {
                    Ok(_) => {
                        self.peer = Some((p, four_octet));
                        last.clear();
                        break;
                    }
                    Err(e) => last = e,
                }
                std::thread::sleep(Duration::from_millis(500));
            }
            if !last.is_empty() {
                return Err(last);
            }
        }
        Ok(&mut self.peer.as_mut().expect("set above").0)
    }

    /// The subject prefixes and sentinel of row `i`.
    fn env(&self, i: usize, subject: Subject) -> (Env, IpNetwork, IpNetwork) {
        let mut env = self.base.clone();
        match self.role {
            Role::Mesh => {
                let (s, sentinel) = match subject {
                    Subject::V4 => (env.subject_v4, env.subject_v6),
                    Subject::V6 => (env.subject_v6, env.subject_v4),
                };
                (env, s, sentinel)
            }
            Role::Router => {
                env.subject_v4 = format!("10.99.{i}.0/24").parse().expect("net");
                env.subject_v6 = format!("fd00:99:{i:x}::/64").parse().expect("net");
                let sentinel = format!("10.99.{}.0/24", 128 + i).parse().expect("net");
                let s = match subject {
                    Subject::V4 => env.subject_v4,
                    Subject::V6 => env.subject_v6,
                };
                (env, s, sentinel)
            }
        }
    }

    /// Runs every row of the table; returns the failures.
    fn table(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        for (i, case) in table().iter().enumerate() {
            let want = case.expect(self.role);
            let result = self.row(
                i,
                case.subject,
                !case.two_octet,
                case.build,
                want.outcome,
                want.counts,
            );
            let verdict = match &result {
                Ok(()) => "ok".to_owned(),
                Err(e) => format!("FAILED: {e}"),
            };
            eprintln!(
                "{:6} {:40} {:55} {:?} {:?}: {verdict}",
                self.role.label(),
                case.name,
                case.rule,
                want.outcome,
                want.counts
            );
            if let Err(e) = result {
                failures.push(format!("{} {}: {e}", self.role.label(), case.name));
            }
        }
        failures
    }

    fn row(
        &mut self,
        i: usize,
        subject: Subject,
        four_octet: bool,
        build: fn(&Env) -> Vec<u8>,
        outcome: Outcome,
        counts: Counts,
    ) -> Result<(), String> {
        let lab = self.lab;
        let (env, subject_prefix, sentinel) = self.env(i, subject);
        let env = Env { four_octet, ..env };
        let withdraw = env.withdraw(&[env.subject_v4, env.subject_v6, sentinel]);
        let peer = self.session(four_octet)?;
        peer.send(&withdraw).map_err(|e| e.to_string())?;
        wait("the subject and the sentinel to be withdrawn", STEP, || {
            let k = kernel(lab);
            !k.contains(&subject_prefix) && !k.contains(&sentinel)
        })?;
        let (before, established_before, _) = peer_status(lab, self.address);

        let peer = self.session(four_octet)?;
        peer.send(&build(&env)).map_err(|e| e.to_string())?;
        if let Outcome::Reset { subcode } = outcome {
            let (got, closed) = peer.notification(STEP);
            if got != Some((3, subcode)) || !closed {
                return Err(format!(
                    "NOTIFICATION {got:?} (closed: {closed}), want (3, {subcode})"
                ));
            }
            self.peer = None;
        } else {
            match peer.barrier(STEP) {
                podroute_lab::hostile::peer::Heard::Message(
                    podroute_bgp::message::Message::Update(_),
                ) => {}
                other => return Err(format!("the session did not survive: {other:?}")),
            }
        }
        let peer = self.session(four_octet)?;
        peer.send(&env.announce_prefix(&sentinel))
            .map_err(|e| e.to_string())?;
        wait("the sentinel in the kernel", STEP, || {
            kernel(lab).contains(&sentinel)
        })?;
        let installed = kernel(lab).contains(&subject_prefix);
        if installed != (outcome == Outcome::Installed) {
            return Err(format!("subject {subject_prefix} installed: {installed}"));
        }
        let want = add(before, counts);
        let _ = wait("the counters", Duration::from_secs(3), || {
            peer_status(lab, self.address).0 == want
        });
        let (after, established_after, up) = peer_status(lab, self.address);
        if after != want {
            return Err(format!(
                "counters {after:?}, want {want:?} (before {before:?})"
            ));
        }
        if !up {
            return Err("the agent does not show the session Established".to_owned());
        }
        if !matches!(outcome, Outcome::Reset { .. }) && established_after != established_before {
            return Err(format!(
                "the session was re-established ({established_before} → {established_after})"
            ));
        }
        Ok(())
    }
}

/// An OPEN body: version, AS, hold time, identifier, optional parameters as given.
fn open(version: u8, asn: u16, hold: u16, id: Ipv4Addr, opt_len: u8, params: &[u8]) -> Vec<u8> {
    let mut b = vec![version];
    b.extend_from_slice(&asn.to_be_bytes());
    b.extend_from_slice(&hold.to_be_bytes());
    b.extend_from_slice(&id.octets());
    b.push(opt_len);
    b.extend_from_slice(params);
    message(1, &b)
}

/// The usual capabilities parameter, with `extra` capabilities appended.
fn caps_param(asn: u32, extra: &[u8]) -> Vec<u8> {
    let mut caps = vec![1, 4, 0, 1, 0, 1, 1, 4, 0, 2, 0, 1, 2, 0, 65, 4];
    caps.extend_from_slice(&asn.to_be_bytes());
    caps.extend_from_slice(extra);
    let mut p = vec![2, caps.len() as u8];
    p.extend_from_slice(&caps);
    p
}

/// What an OPEN or framing case expects: a NOTIFICATION (code, subcode) or Established.
type OpenExpect = Option<(u8, u8)>;

fn open_cases(asn: u32, id: Ipv4Addr) -> Vec<(&'static str, Vec<u8>, OpenExpect)> {
    let asn16 = u16::try_from(asn).unwrap_or(23456);
    let good = caps_param(asn, &[]);
    let glen = good.len() as u8;
    // RFC 9072 extended optional parameters: 255, 255, then a 2-octet length.
    let mut ext = vec![255u8];
    ext.extend_from_slice(&((good.len() + 1) as u16).to_be_bytes());
    ext.push(2);
    ext.extend_from_slice(&(good.len() as u16 - 2).to_be_bytes());
    ext.extend_from_slice(&good[2..]);
    vec![
        (
            "open-version-3",
            open(3, asn16, 0, id, glen, &good),
            Some((2, 1)),
        ),
        (
            "open-bad-peer-as",
            open(4, 64000, 0, id, 2 + 6, &[2, 6, 65, 4, 0, 0, 0xfa, 0]),
            Some((2, 2)),
        ),
        (
            "open-bgp-id-zero",
            open(4, asn16, 0, Ipv4Addr::UNSPECIFIED, glen, &good),
            Some((2, 3)),
        ),
        (
            "open-hold-time-1",
            open(4, asn16, 1, id, glen, &good),
            Some((2, 6)),
        ),
        (
            "open-unsupported-optional-parameter",
            open(4, asn16, 0, id, 3, &[1, 1, 0]),
            Some((2, 4)),
        ),
        // CVE-2022-43681: the OPEN ends right after an option's type octet.
        (
            "open-ends-at-option-length (CVE-2022-43681)",
            open(4, asn16, 0, id, 1, &[2]),
            Some((2, 0)),
        ),
        (
            "open-param-length-overruns",
            open(4, asn16, 0, id, 4, &[2, 9, 2, 0]),
            Some((2, 0)),
        ),
        // CVE-2022-40302: extended parameters (0xff) with no room for the 2-octet length.
        (
            "open-extended-length-truncated (CVE-2022-40302)",
            open(4, asn16, 0, id, 255, &[255, 0]),
            Some((2, 0)),
        ),
        // CVE-2022-40318: extended parameters whose capability overruns its parameter.
        (
            "open-extended-capability-overrun (CVE-2022-40318)",
            open(4, asn16, 0, id, 255, &[255, 0, 5, 2, 0, 2, 65, 9]),
            Some((2, 0)),
        ),
        (
            "open-extended-well-formed (RFC 9072)",
            open(
                4,
                asn16,
                0,
                id,
                255,
                &[vec![255u8], ext[1..].to_vec()].concat(),
            ),
            None,
        ),
        (
            "open-capability-overruns-parameter",
            open(4, asn16, 0, id, 4, &[2, 2, 65, 4]),
            Some((2, 0)),
        ),
        // CVE-2025-43971: a Software Version capability (75) with a zero version length.
        (
            "open-software-version-length-0 (CVE-2025-43971)",
            open(4, asn16, 0, id, glen + 3, &caps_param(asn, &[75, 1, 0])),
            None,
        ),
        (
            "open-software-version-empty",
            open(4, asn16, 0, id, glen + 2, &caps_param(asn, &[75, 0])),
            None,
        ),
    ]
}

fn framing_cases() -> Vec<(&'static str, Vec<u8>, OpenExpect)> {
    let mut bad_marker = message(4, &[]);
    bad_marker[3] = 0;
    let mut short = message(4, &[]);
    short[16..18].copy_from_slice(&18u16.to_be_bytes());
    let mut long = message(2, &[0; 4]);
    long[16..18].copy_from_slice(&4097u16.to_be_bytes());
    vec![
        ("header-bad-marker", bad_marker, Some((1, 1))),
        ("header-length-18", short, Some((1, 2))),
        ("header-length-4097", long, Some((1, 2))),
        ("keepalive-length-20", message(4, &[0]), Some((1, 2))),
        ("update-length-22", message(2, &[0, 0, 0]), Some((1, 2))),
        ("header-type-9", message(9, &[]), Some((1, 3))),
        (
            "open-when-established",
            open(4, 1, 0, Ipv4Addr::new(1, 1, 1, 1), 0, &[]),
            Some((5, 3)),
        ),
    ]
}

impl Runner<'_> {
    /// OPEN errors on fresh connections, framing errors on an Established one.
    fn open_and_framing(&mut self) -> Vec<String> {
        let mut failures = Vec::new();
        let role = self.role.label();
        let mut report = |name: &str, r: Result<(), String>| {
            eprintln!(
                "{:6} {name:50} {}",
                role,
                r.as_ref()
                    .map_or_else(|e| format!("FAILED: {e}"), |_| "ok".to_owned())
            );
            if let Err(e) = r {
                failures.push(format!("{role} {name}: {e}"));
            }
        };
        for (name, bytes, expect) in open_cases(self.base.asn, self.id) {
            let r = (|| {
                self.drop_session()?;
                let mut p = self.connect()?;
                p.send(&bytes).map_err(|e| e.to_string())?;
                match expect {
                    Some(code) => {
                        let (got, closed) = p.notification(STEP);
                        if got != Some(code) || !closed {
                            return Err(format!(
                                "NOTIFICATION {got:?} (closed {closed}), want {code:?}"
                            ));
                        }
                        Ok(())
                    }
                    None => {
                        p.establish_after_open(&self.params(true), STEP)?;
                        self.peer = Some((p, true));
                        Ok(())
                    }
                }
            })();
            report(name, r);
        }
        for (name, bytes, expect) in framing_cases() {
            let r = (|| {
                let p = self.session(true)?;
                p.send(&bytes).map_err(|e| e.to_string())?;
                let (got, closed) = p.notification(STEP);
                self.peer = None;
                if got != expect || !closed {
                    return Err(format!(
                        "NOTIFICATION {got:?} (closed {closed}), want {expect:?}"
                    ));
                }
                Ok(())
            })();
            report(name, r);
        }
        failures
    }

    /// A whole session, OPEN to UPDATE, one byte per write.
    fn byte_at_a_time(&mut self) -> Result<(), String> {
        self.drop_session()?;
        let mut p = self.connect()?;
        let params = self.params(true);
        p.send_bytewise(
            &params.open().to_bytes(&Default::default()),
            Duration::from_millis(2),
        )
        .map_err(|e| e.to_string())?;
        p.establish_after_open(&params, STEP)?;
        let target: IpNetwork = "10.99.250.0/24".parse().expect("net");
        let env = Env {
            four_octet: true,
            ..self.base.clone()
        };
        p.send_bytewise(&env.announce_prefix(&target), Duration::from_millis(2))
            .map_err(|e| e.to_string())?;
        let lab = self.lab;
        wait("the byte-at-a-time route", STEP, || {
            kernel(lab).contains(&target)
        })?;
        self.peer = Some((p, true));
        Ok(())
    }

    /// 51,200 UPDATEs (256 prefixes, 200 rounds of MED); returns the growth of the agent's
    /// peak resident memory in KiB.
    fn flood(&mut self, agent_pid: u32) -> Result<u64, String> {
        let rss = |field: &str| -> u64 {
            std::fs::read_to_string(format!("/proc/{agent_pid}/status"))
                .unwrap_or_default()
                .lines()
                .find_map(|l| {
                    l.strip_prefix(field)?
                        .trim()
                        .strip_suffix("kB")?
                        .trim()
                        .parse()
                        .ok()
                })
                .unwrap_or(0)
        };
        // The flood's own peak: VmHWM reset to the current RSS first (clear_refs 5), as the
        // ingest benchmark does.
        std::fs::write(format!("/proc/{agent_pid}/clear_refs"), "5")
            .map_err(|e| format!("resetting the agent's peak RSS: {e}"))?;
        let before = rss("VmRSS:");
        let env = Env {
            four_octet: true,
            ..self.base.clone()
        };
        let p = self.session(true)?;
        let start = Instant::now();
        for round in 0..200u32 {
            let mut batch = Vec::new();
            for j in 0..=255u8 {
                let mut e = env.clone();
                e.subject_v4 = format!("10.99.{j}.0/24").parse().expect("net");
                batch.extend(e.announce(Subject::V4, |a, _| {
                    a.push(podroute_lab::hostile::wire::attr(
                        0x80,
                        4,
                        &round.to_be_bytes(),
                    ));
                }));
            }
            p.send(&batch)
                .map_err(|e| format!("flood round {round}: {e}"))?;
        }
        match p.barrier(Duration::from_secs(120)) {
            podroute_lab::hostile::peer::Heard::Message(
                podroute_bgp::message::Message::Update(_),
            ) => {}
            other => return Err(format!("the session did not survive the flood: {other:?}")),
        }
        let lab = self.lab;
        wait(
            "all 256 flooded prefixes in the kernel",
            Duration::from_secs(60),
            || {
                kernel(lab)
                    .iter()
                    .filter(|p| p.to_string().starts_with("10.99.") && p.prefix() == 24)
                    .count()
                    >= 256
            },
        )?;
        let peak = rss("VmHWM:");
        eprintln!(
            "flood: 51200 UPDATEs in {:?}; agent RSS before {before} KiB, peak {peak} KiB",
            start.elapsed()
        );
        Ok(peak.saturating_sub(before))
    }
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_hostile_mesh_peer_and_router_peer_get_rfc7606_handling() {
    let lab = Lab::up(&LabConfig::new(lab_name(), 2).tor(Tor::None).ipv6(true)).expect("lab up");
    let mut agent = spawn_agent(&lab);
    let mut failures = Vec::new();

    for role in [Role::Mesh, Role::Router] {
        let mut r = Runner::new(&lab, role);
        failures.extend(r.table());
        failures.extend(r.open_and_framing());
        if role == Role::Router {
            if let Err(e) = r.byte_at_a_time() {
                failures.push(format!("byte at a time: {e}"));
            }
            match r.flood(agent.pid()) {
                Ok(grew) if grew <= FLOOD_RSS_BOUND_KIB => {
                    eprintln!("flood: peak RSS grew {grew} KiB (bound {FLOOD_RSS_BOUND_KIB} KiB)");
                }
                Ok(grew) => failures.push(format!(
                    "flood: peak RSS grew {grew} KiB, more than {FLOOD_RSS_BOUND_KIB} KiB"
                )),
                Err(e) => failures.push(format!("flood: {e}")),
            }
        }
    }

    // An unconfigured source (the control plane's address) is closed at once and counted.
    let counted = || {
        metric(
            &lab,
            "node2",
            "podroute_bgp_rejected_connections_total{reason=\"unknown_peer\"}",
        )
        .unwrap_or(0.0)
    };
    let before = counted();
    let to: SocketAddr = "198.18.0.2:179".parse().expect("addr");
    match connect_from(&lab.cp_ns(), to, Duration::from_secs(2)) {
        Ok(s) => {
            let mut p = HostilePeer::new(s);
            if !matches!(p.next(STEP), podroute_lab::hostile::peer::Heard::Closed) {
                failures.push("unconfigured source: connection not closed".to_owned());
            }
        }
        Err(e) => failures.push(format!("unconfigured source: connect failed: {e}")),
    }
    if wait("the unconfigured source counted", STEP, || {
        counted() > before
    })
    .is_err()
    {
        failures.push("unconfigured source: not counted".to_owned());
    }

    if !failures.is_empty() {
        panic!(
            "{} failures:\n{}\nagent log:\n{}",
            failures.len(),
            failures.join("\n"),
            agent.log()
        );
    }
    let _ = agent.terminate();
}
