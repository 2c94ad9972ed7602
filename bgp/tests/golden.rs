//! Golden bytes captured from real BGP daemons, decoded and re-encoded.
//!
//! How they were captured (2026-11-24, Debian packages BIRD 2, GoBGP, FRR): two network
//! namespaces joined by a veth pair, the daemon at 198.18.0.1 (AS 65001) in one, and in the
//! other a ~60-line Python listener at 198.18.0.2 (AS 65002) that accepted the daemon's
//! connection, answered with an OPEN (MP IPv4+IPv6 unicast, route refresh, 4-octet AS) and
//! KEEPALIVEs, and wrote every message it received as hex. The daemons exported
//! 10.244.1.0/24, 10.244.2.0/24 (community 65001:100, MED 50) and fd00:10:244:1::/64
//! (BIRD also 10.244.3.128/25). NOTIFICATIONs came from stopping the daemon, or from the
//! listener offering AS 64999 (bad peer AS) or a hold time of 2 (unacceptable hold time).
//! The listener, namespace script and daemon configs are in `tests/golden-capture/`.
//!
//! BIRD's bytes re-encode exactly. FRR and GoBGP lay out equivalent messages differently
//! (FRR: one optional parameter per capability, extended length on AS_PATH; GoBGP:
//! attributes strictly in type order), so for those we check that decode → encode →
//! decode gives the same value.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnetwork::IpNetwork;
use podroute_bgp::message::{
    AsPath, Capability, CodecContext, Family, GracefulRestart, Message, NextHop, Notification,
    Origin, PathAttributes, frame_len,
};

fn hex(s: &str) -> Vec<u8> {
    (0..s.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(&s[i..i + 2], 16).expect("test hex"))
        .collect()
}

fn net(s: &str) -> IpNetwork {
    s.parse().expect("test prefix")
}

/// Both ends announced the 4-octet AS capability; neither extended messages.
const CTX: CodecContext = CodecContext {
    four_octet_as: true,
    extended_messages: false,
};

/// Decodes and checks the bytes re-encode exactly.
fn exact(h: &str) -> Message {
    let bytes = hex(h);
    assert_eq!(frame_len(&bytes, 4096), Ok(Some(bytes.len())));
    let msg = Message::decode(&bytes, &CTX).expect("golden message decodes");
    assert_eq!(
        msg.to_bytes(&CTX).as_ref(),
        bytes.as_slice(),
        "re-encode differs"
    );
    msg
}

/// Decodes and checks decode(encode(msg)) == msg.
fn equivalent(h: &str) -> Message {
    let bytes = hex(h);
    let msg = Message::decode(&bytes, &CTX).expect("golden message decodes");
    let again = Message::decode(&msg.to_bytes(&CTX), &CTX).expect("re-encoded message decodes");
    assert_eq!(again, msg);
    msg
}

// ---- BIRD 2 ----

const BIRD_OPEN: &str = "ffffffffffffffffffffffffffffffff003b0104fde900f0c61200011e021c01040001000101040002000102004002007841040000fde946004700";
const BIRD_KEEPALIVE: &str = "ffffffffffffffffffffffffffffffff001304";
const BIRD_UPDATE_V4: &str = "ffffffffffffffffffffffffffffffff004602000000224001010040020602010000fde9400304c612000180040400000032c00804fde90064180af401180af402190af40380";
const BIRD_EOR_V4: &str = "ffffffffffffffffffffffffffffffff00170200000000";
const BIRD_UPDATE_V6: &str = "ffffffffffffffffffffffffffffffff0056020000003f900e002e00020120fd000198001800000000000000000001fe80000000000000d4ed2ffffe0d5ab40040fd000010024400014001010040020602010000fde9";
const BIRD_EOR_V6: &str = "ffffffffffffffffffffffffffffffff001d0200000006800f03000201";
const BIRD_CEASE_SHUTDOWN: &str = "ffffffffffffffffffffffffffffffff0015030602";
const BIRD_BAD_PEER_AS: &str = "ffffffffffffffffffffffffffffffff00190302020000fde7";

#[test]
fn bird_open() {
    let Message::Open(open) = exact(BIRD_OPEN) else {
        panic!("not an OPEN")
    };
    assert_eq!(open.asn(), 65001);
    assert_eq!(open.hold_time, 240);
    assert_eq!(open.bgp_id, Ipv4Addr::new(198, 18, 0, 1));
    assert_eq!(
        open.capabilities,
        vec![
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::RouteRefresh,
            Capability::GracefulRestart(GracefulRestart {
                flags: 0,
                restart_time: 120,
                families: vec![],
            }),
            Capability::FourOctetAs(65001),
            // Enhanced route refresh (70) and long-lived graceful restart (71): kept as is.
            Capability::Unknown {
                code: 70,
                value: Bytes::new()
            },
            Capability::Unknown {
                code: 71,
                value: Bytes::new()
            },
        ]
    );
    assert_eq!(
        open.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
}

#[test]
fn bird_keepalive_and_notifications() {
    assert_eq!(exact(BIRD_KEEPALIVE), Message::Keepalive);
    assert_eq!(
        exact(BIRD_CEASE_SHUTDOWN),
        Message::Notification(Notification::cease(2))
    );
    // Bad peer AS: BIRD puts the AS it saw (4 octets) in the data.
    assert_eq!(
        exact(BIRD_BAD_PEER_AS),
        Message::Notification(Notification::new(
            2,
            2,
            Bytes::from_static(&[0, 0, 0xfd, 0xe7])
        ))
    );
}

fn bird_v4_attributes() -> PathAttributes {
    PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath::sequence([65001]),
        next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 1))),
        med: Some(50),
        communities: vec![(65001 << 16) | 100],
        ..PathAttributes::default()
    }
}

#[test]
fn bird_ipv4_update() {
    let Message::Update(u) = exact(BIRD_UPDATE_V4) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.attributes, Some(bird_v4_attributes()));
    assert_eq!(
        u.nlri,
        vec![
            net("10.244.1.0/24"),
            net("10.244.2.0/24"),
            net("10.244.3.128/25")
        ]
    );
    assert!(u.withdrawn.is_empty() && u.faults.is_empty());
    assert_eq!(u.end_of_rib_family(), None);
}

#[test]
fn bird_ipv6_update_with_link_local_next_hop() {
    let Message::Update(u) = exact(BIRD_UPDATE_V6) else {
        panic!("not an UPDATE")
    };
    let mp = u.mp_reach.as_ref().expect("MP_REACH_NLRI");
    assert_eq!(mp.family, Family::IPV6_UNICAST);
    assert_eq!(
        mp.next_hop,
        NextHop::V6 {
            global: "fd00:198:18::1".parse::<Ipv6Addr>().expect("addr"),
            link_local: Some(
                "fe80::d4ed:2fff:fe0d:5ab4"
                    .parse::<Ipv6Addr>()
                    .expect("addr")
            ),
        }
    );
    assert_eq!(mp.nlri, vec![net("fd00:10:244:1::/64")]);
    let a = u.attributes.as_ref().expect("attributes");
    assert_eq!(a.as_path, AsPath::sequence([65001]));
    assert_eq!(a.next_hop, None);
}

#[test]
fn bird_end_of_rib_markers() {
    let Message::Update(u) = exact(BIRD_EOR_V4) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.end_of_rib_family(), Some(Family::IPV4_UNICAST));
    let Message::Update(u) = exact(BIRD_EOR_V6) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.end_of_rib_family(), Some(Family::IPV6_UNICAST));
}

// ---- GoBGP ----

const GOBGP_OPEN: &str = "ffffffffffffffffffffffffffffffff00410104fde9005ac61200012402220200490402766d0001040001000101040002000141040000fde90506000100010002";
const GOBGP_UPDATE_V4: &str = "ffffffffffffffffffffffffffffffff004102000000224001010040020602010000fde9400304c612000180040400000032c00804fde90064180af401180af402";
const GOBGP_UPDATE_V6: &str = "ffffffffffffffffffffffffffffffff0045020000002e4001010240020602010000fde9800e1e00020110fd0001980018000000000000000000010040fd00001002440001";
const GOBGP_CEASE_DECONFIGURED: &str = "ffffffffffffffffffffffffffffffff0015030603";
const GOBGP_BAD_HOLD_TIME: &str = "ffffffffffffffffffffffffffffffff0015030206";

#[test]
fn gobgp_open() {
    let Message::Open(open) = exact(GOBGP_OPEN) else {
        panic!("not an OPEN")
    };
    assert_eq!(open.hold_time, 90);
    assert_eq!(
        open.capabilities,
        vec![
            Capability::RouteRefresh,
            // FQDN (73): hostname "vm".
            Capability::Unknown {
                code: 73,
                value: Bytes::from_static(b"\x02vm\x00")
            },
            Capability::Multiprotocol(Family::IPV4_UNICAST),
            Capability::Multiprotocol(Family::IPV6_UNICAST),
            Capability::FourOctetAs(65001),
            // Extended next hop (5, RFC 8950).
            Capability::Unknown {
                code: 5,
                value: Bytes::from_static(&[0, 1, 0, 1, 0, 2])
            },
        ]
    );
}

#[test]
fn gobgp_updates_and_notifications() {
    let Message::Update(u) = exact(GOBGP_UPDATE_V4) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.attributes, Some(bird_v4_attributes()));
    assert_eq!(u.nlri, vec![net("10.244.1.0/24"), net("10.244.2.0/24")]);

    let Message::Update(u) = equivalent(GOBGP_UPDATE_V6) else {
        panic!("not an UPDATE")
    };
    let mp = u.mp_reach.as_ref().expect("MP_REACH_NLRI");
    assert_eq!(
        mp.next_hop,
        NextHop::V6 {
            global: "fd00:198:18::1".parse::<Ipv6Addr>().expect("addr"),
            link_local: None
        }
    );
    assert_eq!(mp.nlri, vec![net("fd00:10:244:1::/64")]);
    assert_eq!(
        u.attributes.as_ref().map(|a| a.origin),
        Some(Origin::Incomplete)
    );

    assert_eq!(
        exact(GOBGP_CEASE_DECONFIGURED),
        Message::Notification(Notification::cease(3))
    );
    assert_eq!(
        exact(GOBGP_BAD_HOLD_TIME),
        Message::Notification(Notification::new(2, 6, Bytes::new()))
    );
}

// ---- FRR ----

const FRR_OPEN: &str = "ffffffffffffffffffffffffffffffff00750104fde900b4c61200015802060104000100010206010400020001020280000202020002024600020641040000fde902020600020a45080001010100020101020a490806676f6c64656e0002044002c0780210470e0001018000000000020180000000";
const FRR_UPDATE_V6: &str = "ffffffffffffffffffffffffffffffff004e0200000037900e001e0002011000000000000000000000ffffc61200010040fd00001002440001400101005002000602010000fde980040400000000";
const FRR_UPDATE_V4: &str = "ffffffffffffffffffffffffffffffff00420200000023400101005002000602010000fde9400304c612000180040400000032c00804fde90064180af401180af402";
const FRR_BAD_PEER_AS: &str = "ffffffffffffffffffffffffffffffff0017030202fde7";
const FRR_BAD_HOLD_TIME: &str = "ffffffffffffffffffffffffffffffff00170302060002";

#[test]
fn frr_open_with_one_parameter_per_capability() {
    let Message::Open(open) = equivalent(FRR_OPEN) else {
        panic!("not an OPEN")
    };
    assert_eq!(open.hold_time, 180);
    assert_eq!(open.asn(), 65001);
    assert_eq!(
        open.families(),
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert!(open.has_capability(&Capability::RouteRefresh));
    let gr = open.capabilities.iter().find_map(|c| match c {
        Capability::GracefulRestart(gr) => Some(gr.clone()),
        _ => None,
    });
    // Restart State and Notification (RFC 8538) flags, 120 s.
    assert_eq!(gr.map(|g| (g.flags, g.restart_time)), Some((0xc, 120)));
    assert!(open.capabilities.contains(&Capability::Unknown {
        code: 73,
        value: Bytes::from_static(b"\x06golden\x00")
    }));
}

#[test]
fn frr_updates_and_notifications() {
    let Message::Update(u) = equivalent(FRR_UPDATE_V6) else {
        panic!("not an UPDATE")
    };
    let mp = u.mp_reach.as_ref().expect("MP_REACH_NLRI");
    // Session over IPv4 with no IPv6 address configured: an IPv4-mapped next hop.
    assert_eq!(
        mp.next_hop,
        NextHop::V6 {
            global: Ipv4Addr::new(198, 18, 0, 1).to_ipv6_mapped(),
            link_local: None
        }
    );
    assert_eq!(u.attributes.as_ref().and_then(|a| a.med), Some(0));

    let Message::Update(u) = equivalent(FRR_UPDATE_V4) else {
        panic!("not an UPDATE")
    };
    assert_eq!(u.attributes, Some(bird_v4_attributes()));

    assert_eq!(
        exact(FRR_BAD_PEER_AS),
        Message::Notification(Notification::new(2, 2, Bytes::from_static(&[0xfd, 0xe7])))
    );
    assert_eq!(
        exact(FRR_BAD_HOLD_TIME),
        Message::Notification(Notification::new(2, 6, Bytes::from_static(&[0, 2])))
    );
}

/// The whole BIRD conversation through a session: establishment, routes for both
/// families with the right next hops, End-of-RIB for both, and the NOTIFICATION at the end.
#[test]
fn session_ingests_a_bird_conversation() {
    use podroute_bgp::session::{Action, AdminEvent, Session, SessionConfig, State};
    let now = std::time::Instant::now();
    let mut s = Session::new(SessionConfig::new(
        65002,
        Ipv4Addr::new(198, 18, 0, 2),
        65001,
    ));
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    let mut stream = Vec::new();
    for h in [
        BIRD_OPEN,
        BIRD_KEEPALIVE,
        BIRD_UPDATE_V4,
        BIRD_EOR_V4,
        BIRD_UPDATE_V6,
        BIRD_EOR_V6,
    ] {
        stream.extend(hex(h));
    }
    // Deliver in awkward pieces: framing must not care.
    for chunk in stream.chunks(7) {
        s.handle_bytes(now, chunk);
    }
    assert_eq!(s.state(), State::Established);
    let actions: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    let routes: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Routes(r) => Some(r.clone()),
            _ => None,
        })
        .collect();
    assert_eq!(routes.len(), 2);
    assert_eq!(routes[0].announced.len(), 3);
    assert_eq!(
        routes[0].attributes.as_ref().and_then(|a| a.next_hop),
        Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 1)))
    );
    assert_eq!(routes[1].family, Family::IPV6_UNICAST);
    assert_eq!(
        routes[1]
            .attributes
            .as_ref()
            .and_then(|a| a.next_hop)
            .map(|n| n.addr()),
        Some("fd00:198:18::1".parse().expect("addr"))
    );
    let eors: Vec<_> = actions
        .iter()
        .filter_map(|a| match a {
            Action::EndOfRib(f) => Some(*f),
            _ => None,
        })
        .collect();
    assert_eq!(eors, vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]);
    s.handle_bytes(now, &hex(BIRD_CEASE_SHUTDOWN));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.counters().notifications_received, 1);
}
