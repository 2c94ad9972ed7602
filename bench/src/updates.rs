//! The byte stream one sending peer writes: its prefixes packed densely into UPDATEs, then
//! End-of-RIB, encoded once before the clock starts so the sender only copies bytes.
//!
//! Every UPDATE carries the same attributes (ORIGIN IGP, an empty AS_PATH and LOCAL_PREF 100,
//! as an iBGP speaker originates them; the peer's own address as next hop) and as many
//! prefixes as fit in 4,096 bytes (no extended messages: not every receiver negotiates them).
//! A /24 costs 4 bytes of NLRI, so an IPv4 UPDATE holds 1,013 of them; an IPv6 /48 in
//! MP_REACH_NLRI costs 7, 576 per UPDATE.

use std::net::IpAddr;

use bytes::BytesMut;
use ipnetwork::IpNetwork;
use podroute_bgp::message::{
    AsPath, CodecContext, Family, MAX_MESSAGE_LEN, Message, MpReach, NextHop, Origin,
    PathAttributes, Update,
};

/// The codec context of every benchmark session: 4-octet AS (all receivers announce it; the
/// AS_PATH is empty anyway), no extended messages.
pub const CODEC: CodecContext = CodecContext {
    four_octet_as: true,
    extended_messages: false,
};

/// One peer's encoded announcements.
#[derive(Debug, Clone)]
pub struct UpdateStream {
    /// The UPDATEs followed by End-of-RIB, ready to write.
    pub bytes: Vec<u8>,
    /// UPDATE messages carrying prefixes (End-of-RIB not counted).
    pub updates: usize,
    /// Prefixes announced.
    pub prefixes: usize,
}

/// Packs `prefixes` (all of one family) into UPDATEs with `next_hop`, then End-of-RIB.
pub fn encode(prefixes: &[IpNetwork], next_hop: IpAddr) -> UpdateStream {
    let family = match next_hop {
        IpAddr::V4(_) => Family::IPV4_UNICAST,
        IpAddr::V6(_) => Family::IPV6_UNICAST,
    };
    let mut buf = BytesMut::with_capacity(prefixes.len() * 5 + 4096);
    let overhead = message(&[], next_hop).to_bytes(&CODEC).len();
    let mut updates = 0;
    let mut start = 0;
    while start < prefixes.len() {
        let mut len = overhead;
        let mut end = start;
        while end < prefixes.len() && len + nlri_len(&prefixes[end]) <= MAX_MESSAGE_LEN {
            len += nlri_len(&prefixes[end]);
            end += 1;
        }
        let before = buf.len();
        message(&prefixes[start..end], next_hop).encode(&mut buf, &CODEC);
        debug_assert_eq!(buf.len() - before, len, "packing arithmetic");
        updates += 1;
        start = end;
    }
    Message::Update(Update::end_of_rib(family)).encode(&mut buf, &CODEC);
    UpdateStream {
        bytes: buf.to_vec(),
        updates,
        prefixes: prefixes.len(),
    }
}

/// Bytes one prefix takes in NLRI (RFC 4271 §4.3: a length octet and the significant octets).
fn nlri_len(p: &IpNetwork) -> usize {
    1 + usize::from(p.prefix()).div_ceil(8)
}

/// One UPDATE announcing `prefixes` via `next_hop`.
fn message(prefixes: &[IpNetwork], next_hop: IpAddr) -> Message {
    let mut attributes = PathAttributes {
        origin: Origin::Igp,
        as_path: AsPath::default(),
        local_pref: Some(100),
        ..PathAttributes::default()
    };
    let update = match next_hop {
        IpAddr::V4(a) => {
            attributes.next_hop = Some(NextHop::V4(a));
            Update {
                attributes: Some(attributes),
                nlri: prefixes.to_vec(),
                ..Update::default()
            }
        }
        // RFC 4760: IPv6 prefixes and their next hop travel in MP_REACH_NLRI.
        IpAddr::V6(a) => Update {
            attributes: Some(attributes),
            mp_reach: Some(MpReach {
                family: Family::IPV6_UNICAST,
                next_hop: NextHop::V6 {
                    global: a,
                    link_local: None,
                },
                nlri: prefixes.to_vec(),
            }),
            ..Update::default()
        },
    };
    Message::Update(update)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scenario::Scenario;
    use podroute_bgp::message::frame_len;

    /// Decodes a stream back: (prefixes in order, UPDATE sizes, saw End-of-RIB last).
    fn decode(bytes: &[u8]) -> (Vec<IpNetwork>, Vec<usize>, bool) {
        let (mut prefixes, mut sizes, mut eor) = (Vec::new(), Vec::new(), false);
        let mut rest = bytes;
        while !rest.is_empty() {
            let len = frame_len(rest, MAX_MESSAGE_LEN)
                .expect("valid header")
                .expect("whole message");
            let Message::Update(u) = Message::decode(&rest[..len], &CODEC).expect("decodes") else {
                panic!("only UPDATEs");
            };
            assert!(!eor, "End-of-RIB is last");
            if u.end_of_rib_family().is_some() {
                eor = true;
            } else {
                assert!(u.faults.is_empty(), "{:?}", u.faults);
                prefixes.extend(u.nlri.iter().copied());
                prefixes.extend(u.mp_reach.iter().flat_map(|m| m.nlri.iter().copied()));
                sizes.push(len);
            }
            rest = &rest[len..];
        }
        (prefixes, sizes, eor)
    }

    #[test]
    fn ipv4_prefixes_round_trip_in_full_updates() {
        let prefixes = Scenario::by_name("v4-5k").expect("scenario").prefixes(0);
        let s = encode(&prefixes, "198.18.16.1".parse().expect("addr"));
        let (back, sizes, eor) = decode(&s.bytes);
        assert_eq!(back, prefixes);
        assert!(eor);
        assert_eq!(s.updates, sizes.len());
        // 19 header + 4 lengths + 21 attributes (ORIGIN 4, AS_PATH 3, NEXT_HOP 7,
        // LOCAL_PREF 7), then 4 bytes per /24: 1,013 fill the 4,096 bytes exactly.
        assert_eq!(sizes[0], MAX_MESSAGE_LEN);
        assert_eq!(back.len() - (sizes.len() - 1) * 1013, 5000 % 1013);
        assert!(sizes.iter().all(|&n| n <= MAX_MESSAGE_LEN));
    }

    #[test]
    fn ipv6_prefixes_round_trip_in_mp_reach() {
        let prefixes = Scenario::by_name("v6-2k").expect("scenario").prefixes(0);
        let nh: IpAddr = "fd00:198:18:16::1".parse().expect("addr");
        let s = encode(&prefixes, nh);
        let (back, sizes, eor) = decode(&s.bytes);
        assert_eq!(back, prefixes);
        assert!(eor);
        assert!(sizes[0] > MAX_MESSAGE_LEN - 7, "dense: {}", sizes[0]);
        assert!(sizes.iter().all(|&n| n <= MAX_MESSAGE_LEN));
    }
}
