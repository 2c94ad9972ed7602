//! Path attributes (RFC 4271 §4.3, §5) as values.
//!
//! ```text
//!  0                   1
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |  Attr. Flags  |Attr. Type Code|  then 1 octet of length (2 if Extended Length),
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+  then the value
//! ```
//!
//! [`PathAttributes`] holds what routes share. MP_REACH_NLRI/MP_UNREACH_NLRI are not in it:
//! they carry prefixes and live in [`super::Update`]. AS4_PATH and AS4_AGGREGATOR are not
//! kept either: decoding merges them into `as_path`/`aggregator` (RFC 6793 §4.2.3) and
//! encoding for a 2-octet peer regenerates them.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, Bytes, BytesMut};

/// AS_TRANS, the 2-octet stand-in for a 4-octet AS (RFC 6793 §9).
pub const AS_TRANS: u16 = 23456;

/// Attribute flag bits (RFC 4271 §4.3).
pub mod attr_flags {
    /// Optional (else well-known).
    pub const OPTIONAL: u8 = 0x80;
    /// Transitive.
    pub const TRANSITIVE: u8 = 0x40;
    /// Partial: some speaker on the path did not recognise this optional transitive attribute.
    pub const PARTIAL: u8 = 0x20;
    /// Two-octet length.
    pub const EXTENDED_LENGTH: u8 = 0x10;
}

/// Attribute type codes (IANA "BGP Path Attributes").
pub mod attr_type {
    /// ORIGIN (RFC 4271).
    pub const ORIGIN: u8 = 1;
    /// AS_PATH (RFC 4271).
    pub const AS_PATH: u8 = 2;
    /// NEXT_HOP (RFC 4271).
    pub const NEXT_HOP: u8 = 3;
    /// MULTI_EXIT_DISC (RFC 4271).
    pub const MED: u8 = 4;
    /// LOCAL_PREF (RFC 4271).
    pub const LOCAL_PREF: u8 = 5;
    /// ATOMIC_AGGREGATE (RFC 4271).
    pub const ATOMIC_AGGREGATE: u8 = 6;
    /// AGGREGATOR (RFC 4271).
    pub const AGGREGATOR: u8 = 7;
    /// COMMUNITIES (RFC 1997).
    pub const COMMUNITIES: u8 = 8;
    /// ORIGINATOR_ID (RFC 4456).
    pub const ORIGINATOR_ID: u8 = 9;
    /// CLUSTER_LIST (RFC 4456).
    pub const CLUSTER_LIST: u8 = 10;
    /// MP_REACH_NLRI (RFC 4760).
    pub const MP_REACH_NLRI: u8 = 14;
    /// MP_UNREACH_NLRI (RFC 4760).
    pub const MP_UNREACH_NLRI: u8 = 15;
    /// EXTENDED COMMUNITIES (RFC 4360).
    pub const EXTENDED_COMMUNITIES: u8 = 16;
    /// AS4_PATH (RFC 6793).
    pub const AS4_PATH: u8 = 17;
    /// AS4_AGGREGATOR (RFC 6793).
    pub const AS4_AGGREGATOR: u8 = 18;
    /// Traffic Engineering (RFC 5543).
    pub const TRAFFIC_ENGINEERING: u8 = 24;
    /// IPv6 Address Specific Extended Community (RFC 5701).
    pub const IPV6_EXTENDED_COMMUNITIES: u8 = 25;
    /// ATTR_SET (RFC 6368).
    pub const ATTR_SET: u8 = 128;
}

/// ORIGIN values (RFC 4271 §5.1.1); lower is preferred.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Default)]
pub enum Origin {
    /// Learned from an IGP (0).
    #[default]
    Igp = 0,
    /// Learned via EGP (1).
    Egp = 1,
    /// Learned some other way (2).
    Incomplete = 2,
}

/// AS_PATH segment types (RFC 4271 §4.3, RFC 5065 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SegmentType {
    /// AS_SET (1).
    Set = 1,
    /// AS_SEQUENCE (2).
    Sequence = 2,
    /// AS_CONFED_SEQUENCE (3).
    ConfedSequence = 3,
    /// AS_CONFED_SET (4).
    ConfedSet = 4,
}

impl SegmentType {
    pub(crate) fn from_u8(v: u8) -> Option<Self> {
        Some(match v {
            1 => Self::Set,
            2 => Self::Sequence,
            3 => Self::ConfedSequence,
            4 => Self::ConfedSet,
            _ => return None,
        })
    }
}

/// One AS_PATH segment.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct AsPathSegment {
    /// Segment type.
    pub kind: SegmentType,
    /// AS numbers (1 to 255 on the wire).
    pub asns: Vec<u32>,
}

/// An AS_PATH with 4-octet AS numbers.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct AsPath {
    /// Segments in wire order (the first is nearest to us).
    pub segments: Vec<AsPathSegment>,
}

impl AsPath {
    /// A path of one AS_SEQUENCE.
    pub fn sequence(asns: impl Into<Vec<u32>>) -> Self {
        let asns = asns.into();
        if asns.is_empty() {
            return Self::default();
        }
        Self {
            segments: vec![AsPathSegment {
                kind: SegmentType::Sequence,
                asns,
            }],
        }
    }

    /// Path length for the decision process (RFC 4271 §9.1.2.2 a): an AS_SET counts as
    /// one, confederation segments count zero (RFC 5065 §5.3).
    pub fn path_len(&self) -> usize {
        self.segments
            .iter()
            .map(|s| match s.kind {
                SegmentType::Sequence => s.asns.len(),
                SegmentType::Set => 1,
                SegmentType::ConfedSequence | SegmentType::ConfedSet => 0,
            })
            .sum()
    }

    /// The neighbouring AS: the first AS of a leading AS_SEQUENCE (RFC 4271 §9.1.2.2 c).
    pub fn first_as(&self) -> Option<u32> {
        let seg = self.segments.first()?;
        match seg.kind {
            SegmentType::Sequence => seg.asns.first().copied(),
            _ => None,
        }
    }

    /// True if `asn` appears anywhere in the path (loop detection, RFC 4271 §9.1.2).
    pub fn contains(&self, asn: u32) -> bool {
        self.segments.iter().any(|s| s.asns.contains(&asn))
    }

    /// Prepends `asn` as a speaker does when sending to an external peer (RFC 4271 §5.1.2).
    pub fn prepend(&mut self, asn: u32) {
        match self.segments.first_mut() {
            Some(seg) if seg.kind == SegmentType::Sequence && seg.asns.len() < 255 => {
                seg.asns.insert(0, asn);
            }
            _ => self.segments.insert(
                0,
                AsPathSegment {
                    kind: SegmentType::Sequence,
                    asns: vec![asn],
                },
            ),
        }
    }

    /// True if any AS needs 4 octets.
    pub(crate) fn needs_four_octets(&self) -> bool {
        self.segments
            .iter()
            .any(|s| s.asns.iter().any(|&a| a > u32::from(u16::MAX)))
    }

    /// Appends the value of AS_PATH (or AS4_PATH) with 2- or 4-octet AS numbers.
    /// Segments longer than 255 are split. In 2-octet form large ASes become AS_TRANS.
    pub(crate) fn encode(&self, buf: &mut BytesMut, four_octet: bool, skip_confed: bool) {
        for seg in &self.segments {
            if skip_confed
                && matches!(
                    seg.kind,
                    SegmentType::ConfedSequence | SegmentType::ConfedSet
                )
            {
                continue;
            }
            for chunk in seg.asns.chunks(255) {
                buf.put_u8(seg.kind as u8);
                buf.put_u8(chunk.len() as u8);
                for &asn in chunk {
                    if four_octet {
                        buf.put_u32(asn);
                    } else {
                        buf.put_u16(u16::try_from(asn).unwrap_or(AS_TRANS));
                    }
                }
            }
        }
    }
}

/// AGGREGATOR (RFC 4271 §5.1.7) with a 4-octet AS.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct Aggregator {
    /// AS of the aggregating speaker.
    pub asn: u32,
    /// Its BGP identifier.
    pub address: Ipv4Addr,
}

/// Next hop of a route: NEXT_HOP for IPv4, the MP_REACH_NLRI next hop for IPv6
/// (RFC 2545 §3: a global address and optionally a link-local one).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum NextHop {
    /// An IPv4 next hop.
    V4(Ipv4Addr),
    /// An IPv6 next hop.
    V6 {
        /// Global address.
        global: Ipv6Addr,
        /// Link-local address, when the next hop field was 32 bytes.
        link_local: Option<Ipv6Addr>,
    },
}

impl NextHop {
    /// The address to route via (the global one for IPv6).
    pub fn addr(&self) -> std::net::IpAddr {
        match *self {
            NextHop::V4(a) => a.into(),
            NextHop::V6 { global, .. } => global.into(),
        }
    }
}

/// An optional transitive attribute this crate does not interpret, carried on. Decoding
/// sets the Partial bit on an unrecognised one (RFC 4271 §5); the ones RFC 7606 §7.14–7.16
/// give a length rule for (extended communities, IPv6 extended communities, ATTR_SET) are
/// checked and kept as received. Encoding writes `flags` as they are.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RawAttribute {
    /// Flags as received (Extended Length is recomputed on encode).
    pub flags: u8,
    /// Type code.
    pub type_code: u8,
    /// Value.
    pub value: Bytes,
}

/// The path attributes routes share.
///
/// `next_hop` is the NEXT_HOP attribute when decoded from the wire. In the routes a
/// [`crate::session::Session`] reports, it is the next hop for that route's family (the
/// MP_REACH_NLRI next hop for IPv6). On encode a `V4` next hop becomes the NEXT_HOP
/// attribute; a `V6` one is not an attribute (it goes in MP_REACH_NLRI).
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct PathAttributes {
    /// ORIGIN.
    pub origin: Origin,
    /// AS_PATH, merged with AS4_PATH when the peer speaks 2-octet AS.
    pub as_path: AsPath,
    /// Next hop (see the type docs).
    pub next_hop: Option<NextHop>,
    /// MULTI_EXIT_DISC.
    pub med: Option<u32>,
    /// LOCAL_PREF.
    pub local_pref: Option<u32>,
    /// ATOMIC_AGGREGATE present.
    pub atomic_aggregate: bool,
    /// AGGREGATOR, merged with AS4_AGGREGATOR.
    pub aggregator: Option<Aggregator>,
    /// COMMUNITIES (RFC 1997), in received order.
    pub communities: Vec<u32>,
    /// ORIGINATOR_ID (RFC 4456).
    pub originator_id: Option<Ipv4Addr>,
    /// CLUSTER_LIST (RFC 4456).
    pub cluster_list: Vec<Ipv4Addr>,
    /// Optional transitive attributes this crate does not interpret (some length-checked,
    /// see [`RawAttribute`]).
    pub unknown: Vec<RawAttribute>,
}

/// Appends one attribute with the right length form.
pub(crate) fn put_attr(buf: &mut BytesMut, flags: u8, type_code: u8, value: &[u8]) {
    put_attr_ext(buf, flags, type_code, value, false);
}

/// Appends one attribute, with the 2-octet length when it is needed or `force_ext`.
pub(crate) fn put_attr_ext(
    buf: &mut BytesMut,
    flags: u8,
    type_code: u8,
    value: &[u8],
    force_ext: bool,
) {
    if value.len() > 255 || force_ext {
        buf.put_u8(flags | attr_flags::EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u16(u16::try_from(value.len()).unwrap_or(u16::MAX));
    } else {
        buf.put_u8(flags & !attr_flags::EXTENDED_LENGTH);
        buf.put_u8(type_code);
        buf.put_u8(value.len() as u8);
    }
    buf.put_slice(value);
}

impl PathAttributes {
    /// Appends the attributes with type codes below MP_REACH_NLRI (1..=10) in type order.
    pub(crate) fn encode_low(&self, buf: &mut BytesMut, four_octet: bool) {
        use attr_flags::{OPTIONAL, TRANSITIVE};
        put_attr(buf, TRANSITIVE, attr_type::ORIGIN, &[self.origin as u8]);
        let mut v = BytesMut::new();
        self.as_path.encode(&mut v, four_octet, false);
        put_attr(buf, TRANSITIVE, attr_type::AS_PATH, &v);
        if let Some(NextHop::V4(nh)) = self.next_hop {
            put_attr(buf, TRANSITIVE, attr_type::NEXT_HOP, &nh.octets());
        }
        if let Some(med) = self.med {
            put_attr(buf, OPTIONAL, attr_type::MED, &med.to_be_bytes());
        }
        if let Some(lp) = self.local_pref {
            put_attr(buf, TRANSITIVE, attr_type::LOCAL_PREF, &lp.to_be_bytes());
        }
        if self.atomic_aggregate {
            put_attr(buf, TRANSITIVE, attr_type::ATOMIC_AGGREGATE, &[]);
        }
        if let Some(agg) = self.aggregator {
            let mut v = BytesMut::with_capacity(8);
            if four_octet {
                v.put_u32(agg.asn);
            } else {
                v.put_u16(u16::try_from(agg.asn).unwrap_or(AS_TRANS));
            }
            v.put_slice(&agg.address.octets());
            put_attr(buf, OPTIONAL | TRANSITIVE, attr_type::AGGREGATOR, &v);
        }
        if !self.communities.is_empty() {
            let mut v = BytesMut::with_capacity(self.communities.len() * 4);
            for c in &self.communities {
                v.put_u32(*c);
            }
            put_attr(buf, OPTIONAL | TRANSITIVE, attr_type::COMMUNITIES, &v);
        }
        if let Some(id) = self.originator_id {
            put_attr(buf, OPTIONAL, attr_type::ORIGINATOR_ID, &id.octets());
        }
        if !self.cluster_list.is_empty() {
            let mut v = BytesMut::with_capacity(self.cluster_list.len() * 4);
            for c in &self.cluster_list {
                v.put_slice(&c.octets());
            }
            put_attr(buf, OPTIONAL, attr_type::CLUSTER_LIST, &v);
        }
    }

    /// Appends AS4_PATH/AS4_AGGREGATOR (only for a 2-octet peer, only when some AS does
    /// not fit, RFC 6793 §4.2.2) and the unknown attributes.
    pub(crate) fn encode_high(&self, buf: &mut BytesMut, four_octet: bool) {
        use attr_flags::{OPTIONAL, TRANSITIVE};
        if !four_octet {
            if self.as_path.needs_four_octets() {
                let mut v = BytesMut::new();
                self.as_path.encode(&mut v, true, true);
                put_attr(buf, OPTIONAL | TRANSITIVE, attr_type::AS4_PATH, &v);
            }
            if let Some(agg) = self.aggregator.filter(|a| a.asn > u32::from(u16::MAX)) {
                let mut v = BytesMut::with_capacity(8);
                v.put_u32(agg.asn);
                v.put_slice(&agg.address.octets());
                put_attr(buf, OPTIONAL | TRANSITIVE, attr_type::AS4_AGGREGATOR, &v);
            }
        }
        for a in &self.unknown {
            // Decoding already set Partial on these (RFC 4271 §5).
            put_attr(buf, a.flags, a.type_code, &a.value);
        }
    }
}
