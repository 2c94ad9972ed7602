//! Property tests: encode → decode is the identity for generated messages, and decode
//! never panics on arbitrary bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::Bytes;
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use podroute_bgp::message::{
    Aggregator, AsPath, AsPathSegment, Capability, CodecContext, Family, GracefulRestart,
    GracefulRestartFamily, Message, MpReach, MpUnreach, NextHop, Notification, Open, Origin,
    PathAttributes, RawAttribute, RouteRefresh, SegmentType, Update, frame_len,
};
use proptest::collection::{btree_map, vec};
use proptest::prelude::*;

fn v4_prefix() -> impl Strategy<Value = IpNetwork> {
    (any::<u32>(), 0u8..=32).prop_map(|(a, len)| {
        let mask = if len == 0 {
            0
        } else {
            u32::MAX << (32 - u32::from(len))
        };
        IpNetwork::V4(Ipv4Network::new(Ipv4Addr::from(a & mask), len).expect("valid"))
    })
}

fn v6_prefix() -> impl Strategy<Value = IpNetwork> {
    (any::<u128>(), 0u8..=128).prop_map(|(a, len)| {
        let mask = if len == 0 {
            0
        } else {
            u128::MAX << (128 - u32::from(len))
        };
        IpNetwork::V6(Ipv6Network::new(Ipv6Addr::from(a & mask), len).expect("valid"))
    })
}

fn unicast_v4() -> impl Strategy<Value = Ipv4Addr> {
    (1u32..0xe000_0000).prop_map(Ipv4Addr::from)
}

fn unicast_v6() -> impl Strategy<Value = Ipv6Addr> {
    any::<u128>()
        .prop_map(|a| Ipv6Addr::from(a & !(0xff << 120)))
        .prop_filter("not multicast", |a| !a.is_multicast())
}

fn as_path(four_octet: bool) -> impl Strategy<Value = AsPath> {
    let kinds = if four_octet {
        prop_oneof![
            Just(SegmentType::Sequence),
            Just(SegmentType::Set),
            Just(SegmentType::ConfedSequence),
            Just(SegmentType::ConfedSet)
        ]
        .boxed()
    } else {
        // Confederation segments are not carried in AS4_PATH (RFC 6793 §6).
        prop_oneof![Just(SegmentType::Sequence), Just(SegmentType::Set)].boxed()
    };
    // AS 0 is malformed (RFC 7607).
    vec((kinds, vec(1..=u32::MAX, 1..20)), 0..4).prop_map(|segs| AsPath {
        segments: segs
            .into_iter()
            .map(|(kind, asns)| AsPathSegment { kind, asns })
            .collect(),
    })
}

fn attributes(four_octet: bool) -> impl Strategy<Value = PathAttributes> {
    (
        prop_oneof![
            Just(Origin::Igp),
            Just(Origin::Egp),
            Just(Origin::Incomplete)
        ],
        as_path(four_octet),
        unicast_v4(),
        (any::<Option<u32>>(), any::<Option<u32>>(), any::<bool>()),
        proptest::option::of((1..=u32::MAX, any::<u32>())),
        vec(any::<u32>(), 0..20),
        proptest::option::of(any::<u32>()),
        vec(any::<u32>(), 0..5),
        // Types this crate does not check (24, 25 and 128 have RFC 7606 length rules).
        btree_map(
            (19u8..=254).prop_filter("checked type", |t| ![24, 25, 128].contains(t)),
            vec(any::<u8>(), 0..300),
            0..3,
        ),
    )
        .prop_map(
            |(
                origin,
                as_path,
                nh,
                (med, local_pref, atomic),
                agg,
                communities,
                orig,
                clusters,
                unknown,
            )| {
                PathAttributes {
                    origin,
                    as_path,
                    next_hop: Some(NextHop::V4(nh)),
                    med,
                    local_pref,
                    atomic_aggregate: atomic,
                    aggregator: agg.map(|(asn, a)| Aggregator {
                        asn,
                        address: Ipv4Addr::from(a),
                    }),
                    communities,
                    originator_id: orig.map(Ipv4Addr::from),
                    cluster_list: clusters.into_iter().map(Ipv4Addr::from).collect(),
                    unknown: unknown
                        .into_iter()
                        .map(|(type_code, value)| RawAttribute {
                            // Optional transitive, Partial set as decoding sets it.
                            flags: 0xe0,
                            type_code,
                            value: Bytes::from(value),
                        })
                        .collect(),
                }
            },
        )
}

fn update(four_octet: bool) -> impl Strategy<Value = Update> {
    (
        vec(v4_prefix(), 0..30),
        attributes(four_octet),
        vec(v4_prefix(), 0..30),
        proptest::option::of((
            unicast_v6(),
            proptest::option::of(unicast_v6()),
            vec(v6_prefix(), 0..30),
        )),
        proptest::option::of(vec(v6_prefix(), 0..30)),
    )
        .prop_map(|(withdrawn, attrs, nlri, reach, unreach)| Update {
            withdrawn,
            attributes: Some(attrs),
            mp_reach: reach.map(|(global, link_local, nlri)| MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 { global, link_local },
                nlri,
            }),
            mp_unreach: unreach.map(|withdrawn| MpUnreach {
                family: Family::IPV6_UNICAST,
                withdrawn,
            }),
            nlri,
            faults: vec![],
        })
}

fn capability() -> impl Strategy<Value = Capability> {
    prop_oneof![
        prop_oneof![Just(Family::IPV4_UNICAST), Just(Family::IPV6_UNICAST)]
            .prop_map(Capability::Multiprotocol),
        Just(Capability::RouteRefresh),
        Just(Capability::ExtendedMessage),
        any::<u32>().prop_map(Capability::FourOctetAs),
        (
            0u8..16,
            0u16..4096,
            vec((any::<u16>(), any::<u8>(), any::<u8>()), 0..5)
        )
            .prop_map(|(flags, restart_time, fams)| Capability::GracefulRestart(
                GracefulRestart {
                    flags,
                    restart_time,
                    families: fams
                        .into_iter()
                        .map(|(afi, safi, flags)| GracefulRestartFamily {
                            family: Family { afi, safi },
                            flags
                        })
                        .collect(),
                }
            )),
        (70u8..=127, vec(any::<u8>(), 0..20)).prop_map(|(code, v)| Capability::Unknown {
            code,
            value: Bytes::from(v)
        }),
    ]
}

fn message() -> impl Strategy<Value = (Message, CodecContext)> {
    let ctx = (any::<bool>(), any::<bool>()).prop_map(|(four_octet_as, extended_messages)| {
        CodecContext {
            four_octet_as,
            extended_messages,
        }
    });
    prop_oneof![
        (
            any::<u16>(),
            prop_oneof![Just(0u16), 3u16..],
            any::<u32>(),
            vec(capability(), 0..8),
            ctx.clone()
        )
            .prop_map(|(my_as, hold_time, id, capabilities, ctx)| (
                Message::Open(Open {
                    my_as,
                    hold_time,
                    bgp_id: Ipv4Addr::from(id),
                    capabilities
                }),
                ctx
            )),
        update(true).prop_map(|u| (
            Message::Update(u),
            CodecContext {
                four_octet_as: true,
                extended_messages: true
            }
        )),
        update(false).prop_map(|u| (
            Message::Update(u),
            CodecContext {
                four_octet_as: false,
                extended_messages: true
            }
        )),
        (
            any::<u8>(),
            any::<u8>(),
            vec(any::<u8>(), 0..100),
            ctx.clone()
        )
            .prop_map(|(code, subcode, data, ctx)| (
                Message::Notification(Notification::new(code, subcode, Bytes::from(data))),
                ctx
            )),
        ctx.clone().prop_map(|ctx| (Message::Keepalive, ctx)),
        (any::<u16>(), any::<u8>(), any::<u8>(), ctx).prop_map(|(afi, subtype, safi, ctx)| (
            Message::RouteRefresh(RouteRefresh {
                family: Family { afi, safi },
                subtype
            }),
            ctx
        )),
    ]
}

proptest! {
    #![proptest_config(ProptestConfig::with_cases(512))]

    #[test]
    fn encode_then_decode_is_identity((msg, ctx) in message()) {
        let bytes = msg.to_bytes(&ctx);
        prop_assert_eq!(frame_len(&bytes, ctx.max_message_len()), Ok(Some(bytes.len())));
        let decoded = Message::decode(&bytes, &ctx);
        prop_assert_eq!(decoded, Ok(msg));
    }

    #[test]
    fn decode_never_panics(body in vec(any::<u8>(), 0..600), ty in 1u8..=5, four in any::<bool>()) {
        let mut bytes = vec![0xff; 16];
        bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
        bytes.push(ty);
        bytes.extend_from_slice(&body);
        let ctx = CodecContext { four_octet_as: four, extended_messages: false };
        let _ = Message::decode(&bytes, &ctx);
    }
}
