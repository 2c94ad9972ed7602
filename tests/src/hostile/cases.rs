//! The RFC 7606 conformance table: one crafted UPDATE per row, what the agent must do
//! with it, for a mesh peer (iBGP) and a router peer (eBGP).
//!
//! Every row states the rule it tests, the bytes (built from [`Env`], so the same row runs
//! on both sessions), and per role the [`Expect`]ation: whether the subject prefix ends up
//! installed, which RFC 7606 counter moves, and for a session reset the NOTIFICATION.

use super::wire::{
    Attrs, Env, OPTIONAL, Role, Subject, TRANSITIVE, attr, attr_claiming, attr_ext, mp_reach_value,
    mp_unreach_value, prefix, update,
};

/// What becomes of the subject prefix.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// Installed (the UPDATE was accepted, maybe minus an attribute).
    Installed,
    /// Not installed, session kept.
    NotInstalled,
    /// NOTIFICATION (code 3, `subcode`) and the session closed.
    Reset {
        /// UPDATE Message Error subcode (RFC 4271 §6.3).
        subcode: u8,
    },
}

/// The RFC 7606 counters of the agent's peer (its `/status` `updateErrors`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct Counts {
    /// attribute-discard.
    pub attribute_discard: u64,
    /// treat-as-withdraw.
    pub treat_as_withdraw: u64,
    /// session reset.
    pub session_reset: u64,
}

/// What a row expects.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Expect {
    /// The subject prefix and the session.
    pub outcome: Outcome,
    /// How much each counter moves.
    pub counts: Counts,
}

impl Expect {
    /// Accepted as it is: installed, no counter.
    pub const ACCEPT: Expect = Expect::new(Outcome::Installed, 0, 0, 0);
    /// attribute-discard: installed, one discard.
    pub const DISCARD: Expect = Expect::new(Outcome::Installed, 1, 0, 0);
    /// treat-as-withdraw: not installed, one count.
    pub const WITHDRAW: Expect = Expect::new(Outcome::NotInstalled, 0, 1, 0);
    /// Not an error but not usable (a reflection loop): not installed, no counter.
    pub const IGNORED: Expect = Expect::new(Outcome::NotInstalled, 0, 0, 0);

    const fn new(outcome: Outcome, discard: u64, withdraw: u64, reset: u64) -> Expect {
        Expect {
            outcome,
            counts: Counts {
                attribute_discard: discard,
                treat_as_withdraw: withdraw,
                session_reset: reset,
            },
        }
    }

    /// Session reset with NOTIFICATION (3, `subcode`).
    pub const fn reset(subcode: u8) -> Expect {
        Expect::new(Outcome::Reset { subcode }, 0, 0, 1)
    }
}

/// One row of the table.
#[derive(Debug, Clone, Copy)]
pub struct Case {
    /// Short name, unique in the table.
    pub name: &'static str,
    /// The rule it tests.
    pub rule: &'static str,
    /// The family of the subject prefix.
    pub subject: Subject,
    /// Run on a session without the 4-octet AS capability (AS4_PATH/AS4_AGGREGATOR rows).
    pub two_octet: bool,
    /// The whole UPDATE message.
    pub build: fn(&Env) -> Vec<u8>,
    /// Expected from a mesh peer.
    pub mesh: Expect,
    /// Expected from a router peer (eBGP).
    pub router: Expect,
}

impl Case {
    /// The expectation for `role`.
    pub fn expect(&self, role: Role) -> Expect {
        match role {
            Role::Mesh => self.mesh,
            Role::Router => self.router,
        }
    }
}

const fn row(
    name: &'static str,
    rule: &'static str,
    subject: Subject,
    build: fn(&Env) -> Vec<u8>,
    both: Expect,
) -> Case {
    Case {
        name,
        rule,
        subject,
        two_octet: false,
        build,
        mesh: both,
        router: both,
    }
}

const fn two_octet(mut c: Case) -> Case {
    c.two_octet = true;
    c
}

const fn roles(mut c: Case, mesh: Expect, router: Expect) -> Case {
    c.mesh = mesh;
    c.router = router;
    c
}

use Subject::{V4, V6};

fn v4(env: &Env, edit: impl FnOnce(&mut Attrs, &Env)) -> Vec<u8> {
    env.announce(V4, edit)
}

fn v6(env: &Env, edit: impl FnOnce(&mut Attrs, &Env)) -> Vec<u8> {
    env.announce(V6, edit)
}

/// A well-formed UPDATE announcing the IPv4 subject with extra `attrs` appended.
fn v4_plus(env: &Env, extra: Vec<u8>) -> Vec<u8> {
    v4(env, |a, _| {
        a.push(extra);
    })
}

/// Replaces the MP_REACH_NLRI of an IPv6 announcement with `value`.
fn v6_mp(env: &Env, value: Vec<u8>) -> Vec<u8> {
    v6(env, |a, _| {
        a.set(attr_ext(OPTIONAL, 14, &value));
    })
}

fn v6_nlri(env: &Env) -> Vec<u8> {
    prefix(&env.subject_v6)
}

/// The table. At least 40 rows; every attribute of RFC 7606 §7, RFC 6793's AS4 attributes,
/// flags, duplicates, unknown attributes and the UPDATE framing of §4 and §5.
pub fn table() -> Vec<Case> {
    vec![
        // The control: a well-formed UPDATE.
        row(
            "well-formed",
            "control",
            V4,
            |e| v4(e, |_, _| {}),
            Expect::ACCEPT,
        ),
        row(
            "well-formed-v6",
            "control (MP_REACH_NLRI)",
            V6,
            |e| v6(e, |_, _| {}),
            Expect::ACCEPT,
        ),
        // UPDATE framing (RFC 4271 §6.3, RFC 7606 §4, §5.3).
        row(
            "withdrawn-length-overrun",
            "RFC 4271 §6.3: withdrawn length beyond the message",
            V4,
            |e| {
                let mut m = v4(e, |_, _| {});
                m[19..21].copy_from_slice(&0xfff0u16.to_be_bytes());
                m
            },
            Expect::reset(1),
        ),
        row(
            "attribute-length-overrun-message",
            "RFC 4271 §6.3: total attribute length beyond the message",
            V4,
            |e| {
                let mut m = v4(e, |_, _| {});
                m[21..23].copy_from_slice(&0xfff0u16.to_be_bytes());
                m
            },
            Expect::reset(1),
        ),
        row(
            "attribute-overruns-list",
            "RFC 7606 §4: an attribute longer than the list",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.push(attr_claiming(OPTIONAL | TRANSITIVE, 8, 200, &[0, 0, 0, 1]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "attribute-header-truncated",
            "RFC 7606 §4: fewer than 3 octets left for a header",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.push(vec![0x40, 1]);
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "nlri-prefix-length-33",
            "RFC 7606 §5.3: IPv4 prefix longer than 32",
            V4,
            |e| update(&[], &e.base(V4).bytes(), &[33, 10, 99, 0, 0, 0]),
            Expect::reset(10),
        ),
        row(
            "nlri-prefix-overrun",
            "RFC 7606 §5.3: prefix octets beyond the message",
            V4,
            |e| update(&[], &e.base(V4).bytes(), &[24, 10, 99]),
            Expect::reset(10),
        ),
        row(
            "withdrawn-prefix-length-33",
            "RFC 7606 §5.3: withdrawn prefix longer than 32",
            V4,
            |e| update(&[33, 10, 0, 0, 0, 0], &e.base(V4).bytes(), &e.nlri(V4)),
            Expect::reset(10),
        ),
        // Mandatory attributes (RFC 7606 §3.d).
        row(
            "missing-origin",
            "RFC 7606 §3.d",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.remove(1);
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "missing-as-path",
            "RFC 7606 §3.d",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.remove(2);
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "missing-next-hop",
            "RFC 7606 §3.d (NEXT_HOP with classic NLRI)",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.remove(3);
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "missing-origin-v6",
            "RFC 7606 §3.d (MP_REACH_NLRI)",
            V6,
            |e| {
                v6(e, |a, _| {
                    a.remove(1);
                })
            },
            Expect::WITHDRAW,
        ),
        // ORIGIN (§7.1).
        row(
            "origin-length-2",
            "RFC 7606 §7.1",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 1, &[0, 0]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "origin-value-3",
            "RFC 7606 §7.1",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 1, &[3]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "origin-flags-optional",
            "RFC 7606 §3.c",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(OPTIONAL | TRANSITIVE, 1, &[0]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "origin-extended-length",
            "RFC 4271 §4.3: extended length is allowed on any attribute",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr_ext(TRANSITIVE, 1, &[0]));
                })
            },
            Expect::ACCEPT,
        ),
        // AS_PATH (§7.2).
        row(
            "as-path-segment-type-5",
            "RFC 7606 §7.2: unknown segment type",
            V4,
            |e| {
                v4(e, |a, e| {
                    let mut p = e.path_value(&[e.asn], e.four_octet);
                    p[0] = 5;
                    a.set(attr(TRANSITIVE, 2, &p));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "as-path-zero-length-segment",
            "RFC 7606 §7.2",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 2, &[2, 0]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "as-path-segment-overrun",
            "RFC 7606 §7.2: segment longer than the attribute",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 2, &[2, 3, 0, 0, 0xfd, 0xe9]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "as-path-trailing-octet",
            "RFC 7606 §7.2",
            V4,
            |e| {
                v4(e, |a, e| {
                    let mut p = e.path_value(&[e.asn], e.four_octet);
                    p.push(7);
                    a.set(attr(TRANSITIVE, 2, &p));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "as-path-as-zero",
            "RFC 7607 §2: AS 0 in AS_PATH",
            V4,
            |e| {
                v4(e, |a, e| {
                    a.set(attr(
                        TRANSITIVE,
                        2,
                        &e.path_value(&[e.asn, 0], e.four_octet),
                    ));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "as-path-flags-optional",
            "RFC 7606 §3.c",
            V4,
            |e| {
                v4(e, |a, e| {
                    let mut p = e.as_path();
                    p[0] = OPTIONAL | TRANSITIVE;
                    a.set(p);
                })
            },
            Expect::WITHDRAW,
        ),
        roles(
            row(
                "as-path-first-as-not-peer",
                "RFC 7606 §7.2, RFC 4271 §6.3: eBGP leftmost AS",
                V4,
                |e| {
                    v4(e, |a, e| {
                        a.set(attr(TRANSITIVE, 2, &e.path_value(&[64999], e.four_octet)));
                    })
                },
                Expect::ACCEPT,
            ),
            Expect::ACCEPT,
            Expect::WITHDRAW,
        ),
        // NEXT_HOP (§7.3).
        row(
            "next-hop-length-5",
            "RFC 7606 §7.3",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 3, &[198, 18, 0, 1, 0]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "next-hop-zero",
            "RFC 4271 §6.3: semantically incorrect NEXT_HOP",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 3, &[0, 0, 0, 0]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "next-hop-multicast",
            "RFC 4271 §6.3",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 3, &[224, 0, 0, 1]));
                })
            },
            Expect::WITHDRAW,
        ),
        row(
            "next-hop-flags-optional",
            "RFC 7606 §3.c",
            V4,
            |e| {
                v4(e, |a, e| {
                    a.set(attr(OPTIONAL | TRANSITIVE, 3, &e.next_hop_v4.octets()));
                })
            },
            Expect::WITHDRAW,
        ),
        // MULTI_EXIT_DISC (§7.4).
        row(
            "med-length-3",
            "RFC 7606 §7.4",
            V4,
            |e| v4_plus(e, attr(OPTIONAL, 4, &[0, 0, 1])),
            Expect::WITHDRAW,
        ),
        row(
            "med-flags-transitive",
            "RFC 7606 §3.c",
            V4,
            |e| v4_plus(e, attr(TRANSITIVE, 4, &[0, 0, 0, 1])),
            Expect::WITHDRAW,
        ),
        // LOCAL_PREF (§7.5): treat-as-withdraw inside the AS, discarded from outside.
        roles(
            row(
                "local-pref-length-2",
                "RFC 7606 §7.5",
                V4,
                |e| {
                    v4(e, |a, _| {
                        a.set(attr(TRANSITIVE, 5, &[0, 100]));
                    })
                },
                Expect::WITHDRAW,
            ),
            Expect::WITHDRAW,
            Expect::DISCARD,
        ),
        roles(
            row(
                "local-pref-flags-optional",
                "RFC 7606 §7.5, §3.c",
                V4,
                |e| {
                    v4(e, |a, _| {
                        a.set(attr(OPTIONAL, 5, &[0, 0, 0, 100]));
                    })
                },
                Expect::WITHDRAW,
            ),
            Expect::WITHDRAW,
            Expect::DISCARD,
        ),
        // ATOMIC_AGGREGATE (§7.6).
        row(
            "atomic-aggregate-length-1",
            "RFC 7606 §7.6",
            V4,
            |e| v4_plus(e, attr(TRANSITIVE, 6, &[1])),
            Expect::DISCARD,
        ),
        row(
            "atomic-aggregate-flags-optional",
            "RFC 7606 §7.6, §3.c",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 6, &[])),
            Expect::DISCARD,
        ),
        // AGGREGATOR (§7.7).
        row(
            "aggregator-length-7",
            "RFC 7606 §7.7",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 7, &[0, 0, 0xfd, 0xe9, 10, 0, 0]),
                )
            },
            Expect::DISCARD,
        ),
        row(
            "aggregator-2-octet-on-4-octet-session",
            "RFC 7606 §7.7, RFC 6793 §4.1",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 7, &[0xfd, 0xe9, 10, 0, 0, 1]),
                )
            },
            Expect::DISCARD,
        ),
        row(
            "aggregator-as-zero",
            "RFC 7607 §2",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 7, &[0, 0, 0, 0, 10, 0, 0, 1]),
                )
            },
            Expect::DISCARD,
        ),
        row(
            "aggregator-flags-well-known",
            "RFC 7606 §7.7, §3.c",
            V4,
            |e| v4_plus(e, attr(TRANSITIVE, 7, &[0, 0, 0xfd, 0xe9, 10, 0, 0, 1])),
            Expect::DISCARD,
        ),
        // COMMUNITIES (§7.8).
        row(
            "communities-length-5",
            "RFC 7606 §7.8",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 8, &[0, 1, 0, 1, 0])),
            Expect::WITHDRAW,
        ),
        row(
            "communities-length-0",
            "RFC 7606 §7.8: a non-zero multiple of 4",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 8, &[])),
            Expect::WITHDRAW,
        ),
        row(
            "communities-flags-non-transitive",
            "RFC 7606 §3.c",
            V4,
            |e| v4_plus(e, attr(OPTIONAL, 8, &[0, 1, 0, 1])),
            Expect::WITHDRAW,
        ),
        // ORIGINATOR_ID (§7.9) and CLUSTER_LIST (§7.10): iBGP only; discarded from eBGP.
        roles(
            row(
                "originator-id-length-5",
                "RFC 7606 §7.9",
                V4,
                |e| v4_plus(e, attr(OPTIONAL, 9, &[10, 0, 0, 1, 0])),
                Expect::WITHDRAW,
            ),
            Expect::WITHDRAW,
            Expect::DISCARD,
        ),
        roles(
            row(
                "originator-id-is-receiver",
                "RFC 4456 §8: reflection loop (eBGP: attribute dropped)",
                V4,
                |e| v4_plus(e, attr(OPTIONAL, 9, &e.receiver_id.octets())),
                Expect::IGNORED,
            ),
            Expect::IGNORED,
            Expect::ACCEPT,
        ),
        roles(
            row(
                "cluster-list-length-6",
                "RFC 7606 §7.10",
                V4,
                |e| v4_plus(e, attr(OPTIONAL, 10, &[10, 0, 0, 1, 0, 0])),
                Expect::WITHDRAW,
            ),
            Expect::WITHDRAW,
            Expect::DISCARD,
        ),
        roles(
            row(
                "cluster-list-length-0",
                "RFC 7606 §7.10: a non-zero multiple of 4",
                V4,
                |e| v4_plus(e, attr(OPTIONAL, 10, &[])),
                Expect::WITHDRAW,
            ),
            Expect::WITHDRAW,
            Expect::DISCARD,
        ),
        // MP_REACH_NLRI (§7.11).
        row(
            "mp-reach-v6-next-hop-length-4",
            "RFC 7606 §7.11: next-hop length no IPv6 next hop has",
            V6,
            |e| {
                v6_mp(
                    e,
                    mp_reach_value(2, 1, &e.next_hop_v4.octets(), &v6_nlri(e)),
                )
            },
            Expect::reset(9),
        ),
        row(
            "mp-reach-v6-next-hop-length-24",
            "RFC 7606 §7.11",
            V6,
            |e| v6_mp(e, mp_reach_value(2, 1, &[0x20; 24], &v6_nlri(e))),
            Expect::reset(9),
        ),
        row(
            "mp-reach-v4-next-hop-length-16",
            "RFC 7606 §7.11 (no RFC 8950 extended next hop negotiated)",
            V6,
            |e| {
                v6_mp(
                    e,
                    mp_reach_value(1, 1, &e.next_hop_v6.octets(), &[24, 10, 99, 250]),
                )
            },
            Expect::reset(9),
        ),
        row(
            "mp-reach-next-hop-overruns",
            "RFC 7606 §7.11: next hop beyond the attribute",
            V6,
            |e| v6_mp(e, vec![0, 2, 1, 32, 0xfd, 0, 0, 0]),
            Expect::reset(9),
        ),
        row(
            "mp-reach-truncated",
            "RFC 7606 §7.11: no room for the next-hop length",
            V6,
            |e| v6_mp(e, vec![0, 2, 1]),
            Expect::reset(9),
        ),
        row(
            "mp-reach-prefix-length-129",
            "RFC 7606 §5.3, §7.11",
            V6,
            |e| {
                v6_mp(
                    e,
                    mp_reach_value(2, 1, &e.next_hop_v6.octets(), &[129, 0xfd, 0]),
                )
            },
            Expect::reset(9),
        ),
        row(
            "mp-reach-next-hop-multicast",
            "RFC 4760 §3, RFC 7606 §7.11: usable length, unusable address",
            V6,
            |e| {
                let mut nh = [0u8; 16];
                nh[0] = 0xff;
                nh[1] = 2;
                nh[15] = 1;
                v6_mp(e, mp_reach_value(2, 1, &nh, &v6_nlri(e)))
            },
            Expect::WITHDRAW,
        ),
        row(
            "mp-reach-duplicate",
            "RFC 7606 §3.g",
            V6,
            |e| {
                v6(e, |a, e| {
                    a.push(e.mp_reach_v6());
                })
            },
            Expect::reset(1),
        ),
        row(
            "mp-reach-flags-transitive",
            "RFC 7606 §3.c (prefixes behind it: session reset)",
            V6,
            |e| {
                v6(e, |a, e| {
                    a.set(attr_ext(
                        OPTIONAL | TRANSITIVE,
                        14,
                        &mp_reach_value(2, 1, &e.next_hop_v6.octets(), &v6_nlri(e)),
                    ));
                })
            },
            Expect::reset(4),
        ),
        row(
            "mp-reach-unknown-family",
            "RFC 4760 §7: a family not negotiated is ignored",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr_ext(OPTIONAL, 14, &mp_reach_value(25, 65, &[1, 2, 3], &[1, 2])),
                )
            },
            Expect::ACCEPT,
        ),
        // MP_UNREACH_NLRI (§7.12).
        row(
            "mp-unreach-prefix-length-129",
            "RFC 7606 §7.12, §5.3",
            V4,
            |e| v4_plus(e, attr(OPTIONAL, 15, &mp_unreach_value(2, 1, &[129, 0xfd]))),
            Expect::reset(9),
        ),
        row(
            "mp-unreach-truncated",
            "RFC 7606 §7.12: shorter than AFI and SAFI",
            V4,
            |e| v4_plus(e, attr(OPTIONAL, 15, &[0, 2])),
            Expect::reset(5),
        ),
        row(
            "mp-unreach-duplicate",
            "RFC 7606 §3.g",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.push(attr(OPTIONAL, 15, &mp_unreach_value(2, 1, &[])));
                    a.push(attr(OPTIONAL, 15, &mp_unreach_value(2, 1, &[])));
                })
            },
            Expect::reset(1),
        ),
        // §7.13–7.16.
        row(
            "traffic-engineering-length-35",
            "RFC 7606 §7.13",
            V4,
            |e| v4_plus(e, attr(OPTIONAL, 24, &[0; 35])),
            Expect::WITHDRAW,
        ),
        row(
            "traffic-engineering-well-formed",
            "RFC 7606 §7.13 (control)",
            V4,
            |e| v4_plus(e, attr(OPTIONAL, 24, &[0; 36])),
            Expect::ACCEPT,
        ),
        row(
            "extended-communities-length-7",
            "RFC 7606 §7.14",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 16, &[0; 7])),
            Expect::WITHDRAW,
        ),
        row(
            "extended-communities-length-0",
            "RFC 7606 §7.14: a non-zero multiple of 8",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 16, &[])),
            Expect::WITHDRAW,
        ),
        row(
            "extended-communities-well-formed",
            "RFC 7606 §7.14 (control)",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 16, &[0, 2, 0xfd, 0xe9, 0, 0, 0, 1]),
                )
            },
            Expect::ACCEPT,
        ),
        row(
            "ipv6-extended-communities-length-19",
            "RFC 7606 §7.15",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 25, &[0; 19])),
            Expect::WITHDRAW,
        ),
        row(
            "ipv6-extended-communities-length-0",
            "RFC 7606 §7.15: a non-zero multiple of 20",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 25, &[])),
            Expect::WITHDRAW,
        ),
        row(
            "attr-set-length-3",
            "RFC 7606 §7.16",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 128, &[0, 0, 1])),
            Expect::WITHDRAW,
        ),
        // AS4_PATH and AS4_AGGREGATOR (RFC 6793 §6: malformed ones are discarded), on a
        // session without the 4-octet AS capability.
        two_octet(row(
            "as4-path-segment-overrun",
            "RFC 6793 §6",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 17, &[2, 2, 0, 1, 0x11, 0x70]),
                )
            },
            Expect::DISCARD,
        )),
        two_octet(row(
            "as4-path-confed-segment",
            "RFC 6793 §6: no confederation segments in AS4_PATH",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 17, &[3, 1, 0, 1, 0x11, 0x70]),
                )
            },
            Expect::DISCARD,
        )),
        two_octet(row(
            "as4-path-as-zero",
            "RFC 7607 §2, RFC 6793 §6",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 17, &[2, 1, 0, 0, 0, 0])),
            Expect::DISCARD,
        )),
        two_octet(row(
            "as4-path-flags-well-known",
            "RFC 6793 §6, RFC 7606 §3.c",
            V4,
            |e| v4_plus(e, attr(TRANSITIVE, 17, &[2, 1, 0, 1, 0x11, 0x70])),
            Expect::DISCARD,
        )),
        two_octet(row(
            "as4-aggregator-length-6",
            "RFC 6793 §6",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 18, &[0, 1, 0x11, 0x70, 10, 0]),
                )
            },
            Expect::DISCARD,
        )),
        two_octet(row(
            "as4-aggregator-as-zero",
            "RFC 7607 §2, RFC 6793 §6",
            V4,
            |e| {
                v4_plus(
                    e,
                    attr(OPTIONAL | TRANSITIVE, 18, &[0, 0, 0, 0, 10, 0, 0, 1]),
                )
            },
            Expect::DISCARD,
        )),
        two_octet(row(
            "as4-path-well-formed",
            "RFC 6793 §4.2.3 (control)",
            V4,
            |e| {
                v4(e, |a, e| {
                    let asns: &[u32] = if e.ibgp() { &[23456] } else { &[e.asn, 23456] };
                    a.set(attr(TRANSITIVE, 2, &e.path_value(asns, false)));
                    a.push(attr(
                        OPTIONAL | TRANSITIVE,
                        17,
                        &e.path_value(&[70000], true),
                    ));
                })
            },
            Expect::ACCEPT,
        )),
        // Duplicates (RFC 7606 §3.g): the first is kept.
        row(
            "duplicate-origin",
            "RFC 7606 §3.g",
            V4,
            |e| v4_plus(e, attr(TRANSITIVE, 1, &[2])),
            Expect::DISCARD,
        ),
        row(
            "duplicate-communities",
            "RFC 7606 §3.g",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.push(attr(OPTIONAL | TRANSITIVE, 8, &[0, 1, 0, 1]));
                    a.push(attr(OPTIONAL | TRANSITIVE, 8, &[0, 1, 0, 2]));
                })
            },
            Expect::DISCARD,
        ),
        row(
            "duplicate-malformed-med",
            "RFC 7606 §3.g: the discarded duplicate is not parsed",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.push(attr(OPTIONAL, 4, &[0, 0, 0, 1]));
                    a.push(attr(OPTIONAL, 4, &[1]));
                })
            },
            Expect::DISCARD,
        ),
        // Unknown attributes (RFC 4271 §5, §6.3).
        row(
            "unknown-optional-transitive",
            "RFC 4271 §5: kept, Partial set",
            V4,
            |e| v4_plus(e, attr(OPTIONAL | TRANSITIVE, 99, &[1, 2, 3])),
            Expect::ACCEPT,
        ),
        row(
            "unknown-optional-non-transitive",
            "RFC 4271 §5: ignored",
            V4,
            |e| v4_plus(e, attr(OPTIONAL, 98, &[1, 2, 3])),
            Expect::ACCEPT,
        ),
        row(
            "unknown-well-known",
            "RFC 4271 §6.3: unrecognized well-known attribute",
            V4,
            |e| v4_plus(e, attr(TRANSITIVE, 97, &[1])),
            Expect::reset(2),
        ),
        // Several errors: the strongest action wins (RFC 7606 §3.h).
        Case {
            mesh: Expect::new(Outcome::NotInstalled, 1, 1, 0),
            router: Expect::new(Outcome::NotInstalled, 1, 1, 0),
            ..row(
                "discard-and-withdraw",
                "RFC 7606 §3.h: strongest action",
                V4,
                |e| {
                    v4(e, |a, _| {
                        a.push(attr(TRANSITIVE, 6, &[1]));
                        a.set(attr(TRANSITIVE, 1, &[7]));
                    })
                },
                Expect::WITHDRAW,
            )
        },
        row(
            "withdraw-and-reset",
            "RFC 7606 §3.h: strongest action",
            V4,
            |e| {
                v4(e, |a, _| {
                    a.set(attr(TRANSITIVE, 1, &[7]));
                    a.push(attr(TRANSITIVE, 97, &[1]));
                })
            },
            Expect::reset(2),
        ),
    ]
}

/// An UPDATE with path attributes and no NLRI at all (RFC 7606 §5.2: not an error, nothing
/// to do); used by the runner as a no-op.
pub fn attributes_without_nlri(env: &Env) -> Vec<u8> {
    update(&[], &env.base(Subject::V4).bytes(), &[])
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table_has_forty_distinct_rows() {
        let t = table();
        assert!(t.len() >= 40, "{} rows", t.len());
        let mut names: Vec<&str> = t.iter().map(|c| c.name).collect();
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), t.len(), "duplicate row names");
    }
}
