//! UPDATE error handling per RFC 7606: which errors reset the session, which withdraw,
//! which drop just the attribute; and the RFC 6793 AS4_PATH merge.

use std::net::Ipv4Addr;
use std::time::Instant;

use ipnetwork::IpNetwork;
use podroute_bgp::message::{
    AS_TRANS, AsPath, CodecContext, ErrorAction, Message, NextHop, Open, PathAttributes, Update,
    UpdateError,
};
use podroute_bgp::session::{Action, AdminEvent, Session, SessionConfig, State};

const FOUR: CodecContext = CodecContext {
    four_octet_as: true,
    extended_messages: false,
};
const TWO: CodecContext = CodecContext {
    four_octet_as: false,
    extended_messages: false,
};

fn attr(flags: u8, ty: u8, value: &[u8]) -> Vec<u8> {
    let mut v = vec![flags, ty, value.len() as u8];
    v.extend_from_slice(value);
    v
}

fn origin() -> Vec<u8> {
    attr(0x40, 1, &[0])
}
fn as_path_65002() -> Vec<u8> {
    attr(0x40, 2, &[2, 1, 0, 0, 0xfd, 0xea])
}
fn next_hop() -> Vec<u8> {
    attr(0x40, 3, &[198, 18, 0, 2])
}

/// UPDATE body: no withdrawals, `attrs`, NLRI 10.244.2.0/24.
fn body(attrs: &[Vec<u8>]) -> Vec<u8> {
    let a: Vec<u8> = attrs.concat();
    let mut b = vec![0, 0];
    b.extend_from_slice(&(a.len() as u16).to_be_bytes());
    b.extend_from_slice(&a);
    b.extend_from_slice(&[24, 10, 244, 2]);
    b
}

fn decode(attrs: &[Vec<u8>]) -> Result<Update, UpdateError> {
    Update::decode(&body(attrs), &FOUR)
}

fn actions(u: &Update) -> Vec<ErrorAction> {
    u.faults.iter().map(|f| f.action).collect()
}

#[test]
fn clean_update_has_no_faults() {
    let u = decode(&[origin(), as_path_65002(), next_hop()]).expect("decodes");
    assert!(u.faults.is_empty());
    assert!(!u.treat_as_withdraw());
}

#[test]
fn bad_origin_value_is_treat_as_withdraw() {
    let u = decode(&[attr(0x40, 1, &[7]), as_path_65002(), next_hop()]).expect("decodes");
    assert_eq!(u.faults[0].error, UpdateError::InvalidOrigin { value: 7 });
    assert!(u.treat_as_withdraw());
}

#[test]
fn missing_next_hop_is_treat_as_withdraw() {
    let u = decode(&[origin(), as_path_65002()]).expect("decodes");
    assert_eq!(
        u.faults[0].error,
        UpdateError::MissingWellKnown { type_code: 3 }
    );
    assert!(u.treat_as_withdraw());
    // And the NOTIFICATION, were it sent, names the missing attribute.
    assert_eq!(u.faults[0].error.notification().data.as_ref(), &[3]);
}

#[test]
fn wrong_flags_on_a_well_known_attribute_is_treat_as_withdraw() {
    let u = decode(&[attr(0xc0, 1, &[0]), as_path_65002(), next_hop()]).expect("decodes");
    assert_eq!(
        u.faults[0].error,
        UpdateError::AttributeFlags { type_code: 1 }
    );
    assert!(u.treat_as_withdraw());
}

#[test]
fn zero_length_as_path_segment_is_treat_as_withdraw() {
    let u = decode(&[origin(), attr(0x40, 2, &[2, 0]), next_hop()]).expect("decodes");
    assert_eq!(
        u.faults[0].error,
        UpdateError::MalformedAsPath { type_code: 2 }
    );
    assert!(u.treat_as_withdraw());
}

#[test]
fn malformed_aggregator_is_discarded_and_routes_kept() {
    let u = decode(&[
        origin(),
        as_path_65002(),
        next_hop(),
        attr(0xc0, 7, &[1, 2, 3]),
    ])
    .expect("decodes");
    assert_eq!(actions(&u), vec![ErrorAction::AttributeDiscard]);
    assert!(!u.treat_as_withdraw());
    assert_eq!(u.attributes.as_ref().and_then(|a| a.aggregator), None);
    assert_eq!(u.nlri.len(), 1);
}

#[test]
fn duplicate_attribute_keeps_the_first() {
    let u = decode(&[
        origin(),
        as_path_65002(),
        next_hop(),
        attr(0x80, 4, &[0, 0, 0, 1]),
        attr(0x80, 4, &[0, 0, 0, 2]),
    ])
    .expect("decodes");
    assert_eq!(actions(&u), vec![ErrorAction::AttributeDiscard]);
    assert_eq!(u.attributes.as_ref().and_then(|a| a.med), Some(1));
}

#[test]
fn unknown_attributes_optional_transitive_kept_partial_others_dropped() {
    let u = decode(&[
        origin(),
        as_path_65002(),
        next_hop(),
        attr(0xc0, 99, &[1, 2]),
        attr(0x80, 98, &[3]),
    ])
    .expect("decodes");
    let a = u.attributes.expect("attributes");
    assert_eq!(a.unknown.len(), 1);
    assert_eq!(a.unknown[0].type_code, 99);
    assert_eq!(a.unknown[0].flags, 0xe0, "Partial bit set when carried on");
}

#[test]
fn unknown_well_known_attribute_resets_the_session() {
    assert_eq!(
        decode(&[origin(), as_path_65002(), next_hop(), attr(0x40, 99, &[])]),
        Err(UpdateError::UnrecognizedWellKnown { type_code: 99 })
    );
}

#[test]
fn attribute_overrunning_the_list_is_treat_as_withdraw() {
    // RFC 7606 §4: the Total Path Attribute Length still locates the NLRI.
    let mut bad = next_hop();
    bad[2] = 200;
    let u = decode(&[origin(), as_path_65002(), bad]).expect("decodes");
    assert!(u.treat_as_withdraw());
    assert_eq!(u.nlri.len(), 1);
    // Fewer than three octets left for an attribute header: the same.
    let u = decode(&[origin(), as_path_65002(), next_hop(), vec![0x40, 1]]).expect("decodes");
    assert!(u.treat_as_withdraw());
}

#[test]
fn mp_reach_whose_nlri_cannot_be_located_resets_the_session() {
    // AFI 2 SAFI 1, next hop length 16 but only 4 bytes follow (RFC 7606 §7.11).
    let mp = attr(0x80, 14, &[0, 2, 1, 16, 0xfd, 0, 0, 0]);
    assert_eq!(
        decode(&[mp, origin(), as_path_65002(), next_hop()]),
        Err(UpdateError::OptionalAttribute { type_code: 14 })
    );
    // A bad prefix inside MP_UNREACH_NLRI: same.
    let mp = attr(0x80, 15, &[0, 2, 1, 200, 1]);
    assert_eq!(
        decode(&[mp, origin(), as_path_65002(), next_hop()]),
        Err(UpdateError::OptionalAttribute { type_code: 15 })
    );
}

#[test]
fn mp_reach_with_a_next_hop_length_the_family_has_not_resets_the_session() {
    // RFC 7606 §7.11: a 5-byte next hop fits no family, so the NLRI behind it is not
    // trusted; nor is a 4-byte (IPv4) next hop for IPv6 prefixes.
    for (nh_len, nh) in [(5u8, vec![1, 2, 3, 4, 5]), (4, vec![198, 18, 0, 2])] {
        let mut value = vec![0, 2, 1, nh_len];
        value.extend_from_slice(&nh);
        value.extend_from_slice(&[0, 64, 0xfd, 0, 0, 0x10, 2, 0x44, 0, 1]);
        let mp = attr(0x80, 14, &value);
        assert_eq!(
            decode(&[mp, origin(), as_path_65002(), next_hop()]),
            Err(UpdateError::OptionalAttribute { type_code: 14 })
        );
    }
}

#[test]
fn mp_reach_with_a_multicast_next_hop_is_treat_as_withdraw() {
    let mut value = vec![0, 2, 1, 16, 0xff, 2];
    value.extend_from_slice(&[0; 13]);
    value.extend_from_slice(&[1, 0, 64, 0xfd, 0, 0, 0x10, 2, 0x44, 0, 1]);
    let mp = attr(0x80, 14, &value);
    let u = decode(&[mp, origin(), as_path_65002(), next_hop()]).expect("decodes");
    assert!(u.treat_as_withdraw());
    assert_eq!(u.mp_reach.map(|m| m.nlri.len()), Some(1));
}

#[test]
fn bad_prefix_length_in_nlri_resets_the_session() {
    let mut b = body(&[origin(), as_path_65002(), next_hop()]);
    let n = b.len();
    b[n - 4] = 33;
    assert_eq!(
        Update::decode(&b, &FOUR),
        Err(UpdateError::InvalidNetworkField)
    );
}

#[test]
fn as4_path_is_merged_for_a_two_octet_peer() {
    // AS_PATH 65001 23456 23456, AS4_PATH 70000 80000 (RFC 6793 §4.2.3).
    let as_path = attr(0x40, 2, &[2, 3, 0xfd, 0xe9, 0x5b, 0xa0, 0x5b, 0xa0]);
    let mut as4 = vec![2, 2];
    as4.extend_from_slice(&70000u32.to_be_bytes());
    as4.extend_from_slice(&80000u32.to_be_bytes());
    let b = body(&[origin(), as_path, next_hop(), attr(0xc0, 17, &as4)]);
    let u = Update::decode(&b, &TWO).expect("decodes");
    assert_eq!(
        u.attributes.map(|a| a.as_path),
        Some(AsPath::sequence([65001, 70000, 80000]))
    );
}

#[test]
fn four_octet_ases_survive_a_two_octet_encoding() {
    let attrs = PathAttributes {
        as_path: AsPath::sequence([4_200_000_000, 65001]),
        next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 1))),
        ..PathAttributes::default()
    };
    let u = Update {
        attributes: Some(attrs.clone()),
        nlri: vec!["10.244.1.0/24".parse::<IpNetwork>().expect("net")],
        ..Update::default()
    };
    let bytes = Message::Update(u).to_bytes(&TWO);
    // The 2-octet AS_PATH carries AS_TRANS in place of the big AS.
    assert!(bytes.windows(2).any(|w| w == AS_TRANS.to_be_bytes()));
    let Ok(Message::Update(back)) = Message::decode(&bytes, &TWO) else {
        panic!("decodes")
    };
    assert_eq!(back.attributes, Some(attrs));
}

/// Through a session: a treat-as-withdraw UPDATE withdraws its prefixes, is counted,
/// and the session stays up; a session-reset one sends NOTIFICATION 3/x.
#[test]
fn session_applies_rfc7606_actions() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(
        65001,
        Ipv4Addr::new(198, 18, 0, 1),
        65002,
    ));
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    let open = Message::Open(Open::new(65002, 90, Ipv4Addr::new(198, 18, 0, 2), vec![]));
    s.handle_bytes(now, &open.to_bytes(&CodecContext::default()));
    s.handle_bytes(now, &Message::Keepalive.to_bytes(&CodecContext::default()));
    assert_eq!(s.state(), State::Established);
    while s.poll_action().is_some() {}

    let frame = |b: Vec<u8>| {
        let mut m = vec![0xff; 16];
        m.extend_from_slice(&((19 + b.len()) as u16).to_be_bytes());
        m.push(2);
        m.extend_from_slice(&b);
        m
    };
    s.handle_bytes(
        now,
        &frame(body(&[attr(0x40, 1, &[9]), as_path_65002(), next_hop()])),
    );
    let routes: Vec<_> = std::iter::from_fn(|| s.poll_action())
        .filter_map(|a| match a {
            Action::Routes(r) => Some(r),
            _ => None,
        })
        .collect();
    assert_eq!(routes.len(), 1);
    assert!(routes[0].announced.is_empty());
    assert_eq!(
        routes[0].withdrawn,
        vec!["10.244.2.0/24".parse::<IpNetwork>().expect("net")]
    );
    assert_eq!(s.counters().rfc7606.treat_as_withdraw, 1);
    assert_eq!(s.state(), State::Established);

    s.handle_bytes(
        now,
        &frame(body(&[
            origin(),
            as_path_65002(),
            next_hop(),
            attr(0x40, 99, &[]),
        ])),
    );
    let sent = std::iter::from_fn(|| s.poll_action()).find_map(|a| match a {
        Action::NotificationSent(n) => Some((n.code, n.subcode)),
        _ => None,
    });
    assert_eq!(sent, Some((3, 2)));
    assert_eq!(s.state(), State::Idle);
    assert_eq!(s.counters().rfc7606.session_reset, 1);
}

/// eBGP: a route whose AS_PATH holds our AS is a loop and is not accepted.
#[test]
fn session_drops_looped_routes() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(
        65001,
        Ipv4Addr::new(198, 18, 0, 1),
        65002,
    ));
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    let open = Message::Open(Open::new(65002, 90, Ipv4Addr::new(198, 18, 0, 2), vec![]));
    s.handle_bytes(now, &open.to_bytes(&CodecContext::default()));
    s.handle_bytes(now, &Message::Keepalive.to_bytes(&CodecContext::default()));
    while s.poll_action().is_some() {}
    let u = Update {
        attributes: Some(PathAttributes {
            as_path: AsPath::sequence([65002, 65001]),
            next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, 2))),
            ..PathAttributes::default()
        }),
        nlri: vec!["10.244.9.0/24".parse::<IpNetwork>().expect("net")],
        ..Update::default()
    };
    let ctx = s.negotiated().expect("negotiated").codec;
    s.handle_bytes(now, &Message::Update(u).to_bytes(&ctx));
    let r = std::iter::from_fn(|| s.poll_action()).find_map(|a| match a {
        Action::Routes(r) => Some(r),
        _ => None,
    });
    assert_eq!(
        r.map(|r| (r.announced.len(), r.withdrawn.len())),
        Some((0, 1))
    );
}
