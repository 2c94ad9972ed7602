//! UPDATE message (RFC 4271 §4.3) with MP_REACH/MP_UNREACH_NLRI (RFC 4760 §3, §4) and
//! RFC 7606 error handling.
//!
//! ```text
//! +-----------------------------------------------------+
//! |   Withdrawn Routes Length (2 octets)                |
//! +-----------------------------------------------------+
//! |   Withdrawn Routes (variable)                       |
//! +-----------------------------------------------------+
//! |   Total Path Attribute Length (2 octets)            |
//! +-----------------------------------------------------+
//! |   Path Attributes (variable)                        |
//! +-----------------------------------------------------+
//! |   Network Layer Reachability Information (variable) |
//! +-----------------------------------------------------+
//! ```
//!
//! Error handling follows RFC 7606: lengths that overrun the message, an error in the
//! withdrawn routes or NLRI fields (§5.3), or in MP_REACH_NLRI/MP_UNREACH_NLRI (whose
//! prefixes could then not be located, §7.11), a duplicate MP_REACH/MP_UNREACH (§3.g) and
//! an unrecognised well-known attribute fail [`Update::decode`] (session reset). Errors in
//! single attributes, and an attribute overrunning the attribute list (§4), are recorded in
//! [`Update::faults`] with their action: the attribute is dropped (attribute-discard) or
//! every prefix announced is to be taken as withdrawn (treat-as-withdraw, see
//! [`Update::treat_as_withdraw`]). Rules that depend on the session (LOCAL_PREF and the
//! route-reflection attributes from an external peer) are the session's.
//!
//! Encoding puts MP_REACH_NLRI (always with the extended length) and MP_UNREACH_NLRI
//! first (RFC 7606 §5.1), the other attributes in type order. That is byte for byte what
//! BIRD 2 sends; FRR (extended length on AS_PATH) and GoBGP (type order throughout) send
//! different but equivalent bytes.

use std::net::{Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnetwork::IpNetwork;

use super::attributes::{
    AS_TRANS, Aggregator, AsPath, AsPathSegment, NextHop, Origin, PathAttributes, RawAttribute,
    SegmentType, attr_flags, attr_type, put_attr, put_attr_ext,
};
use super::error::{ErrorAction, UpdateError};
use super::nlri::{Family, decode_prefixes, encode_prefix};
use super::wire::Reader;
use super::{CodecContext, fill_u16_len, put_u16_placeholder};

/// MP_REACH_NLRI (RFC 4760 §3): prefixes of one family and their next hop.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpReach {
    /// The family (only IPv4 and IPv6 unicast are decoded; others are ignored).
    pub family: Family,
    /// The next hop (4 bytes IPv4; 16 or 32 bytes IPv6 global + link-local, RFC 2545 §3).
    pub next_hop: NextHop,
    /// Announced prefixes.
    pub nlri: Vec<IpNetwork>,
}

/// MP_UNREACH_NLRI (RFC 4760 §4): withdrawn prefixes of one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct MpUnreach {
    /// The family.
    pub family: Family,
    /// Withdrawn prefixes. Empty means End-of-RIB for the family (RFC 4724 §2) when it is
    /// the only thing in the UPDATE.
    pub withdrawn: Vec<IpNetwork>,
}

/// An attribute error that did not reset the session (RFC 7606).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct AttributeFault {
    /// What was wrong.
    pub error: UpdateError,
    /// What was done about it: `AttributeDiscard` or `TreatAsWithdraw`.
    pub action: ErrorAction,
}

/// An UPDATE message.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Update {
    /// Withdrawn IPv4 prefixes (the classic Withdrawn Routes field).
    pub withdrawn: Vec<IpNetwork>,
    /// Path attributes other than MP_REACH/MP_UNREACH; `None` when the UPDATE carries no
    /// such attribute (a pure withdrawal or End-of-RIB).
    pub attributes: Option<PathAttributes>,
    /// MP_REACH_NLRI.
    pub mp_reach: Option<MpReach>,
    /// MP_UNREACH_NLRI.
    pub mp_unreach: Option<MpUnreach>,
    /// Announced IPv4 prefixes (the classic NLRI field).
    pub nlri: Vec<IpNetwork>,
    /// RFC 7606 errors resolved while decoding; always empty for an UPDATE built locally
    /// and ignored by encoding.
    pub faults: Vec<AttributeFault>,
}

impl Update {
    /// The End-of-RIB marker for `family` (RFC 4724 §2): an empty UPDATE for IPv4
    /// unicast, an UPDATE with only an empty MP_UNREACH_NLRI otherwise.
    pub fn end_of_rib(family: Family) -> Update {
        if family == Family::IPV4_UNICAST {
            Update::default()
        } else {
            Update {
                mp_unreach: Some(MpUnreach {
                    family,
                    withdrawn: Vec::new(),
                }),
                ..Update::default()
            }
        }
    }

    /// The family this UPDATE marks End-of-RIB for, if it is such a marker.
    pub fn end_of_rib_family(&self) -> Option<Family> {
        if !self.withdrawn.is_empty()
            || !self.nlri.is_empty()
            || self.attributes.is_some()
            || self.mp_reach.is_some()
        {
            return None;
        }
        match &self.mp_unreach {
            None => Some(Family::IPV4_UNICAST),
            Some(u) if u.withdrawn.is_empty() => Some(u.family),
            Some(_) => None,
        }
    }

    /// True if RFC 7606 says every prefix this UPDATE announces is to be treated as
    /// withdrawn.
    pub fn treat_as_withdraw(&self) -> bool {
        self.faults
            .iter()
            .any(|f| f.action == ErrorAction::TreatAsWithdraw)
    }

    /// Decodes an UPDATE body (after the 19-byte header).
    pub fn decode(body: &[u8], ctx: &CodecContext) -> Result<Update, UpdateError> {
        let mut r = Reader::new(body);
        let wlen = r.u16().ok_or(UpdateError::MalformedAttributeList)?;
        let wbuf = r
            .take(usize::from(wlen))
            .ok_or(UpdateError::MalformedAttributeList)?;
        let alen = r.u16().ok_or(UpdateError::MalformedAttributeList)?;
        let abuf = r
            .take(usize::from(alen))
            .ok_or(UpdateError::MalformedAttributeList)?;
        // RFC 7606 §5.3: an unparseable prefix field cannot be treated as withdrawn.
        let withdrawn = decode_prefixes(wbuf, false)?;
        let nlri = decode_prefixes(r.rest(), false)?;
        let mut parser = AttributeParser::new(ctx.four_octet_as);
        parser.parse(abuf)?;
        Ok(parser.finish(withdrawn, nlri))
    }

    /// Appends the body (after the header).
    pub(crate) fn encode_body(&self, buf: &mut BytesMut, ctx: &CodecContext) {
        let pos = put_u16_placeholder(buf);
        for p in &self.withdrawn {
            encode_prefix(buf, p);
        }
        fill_u16_len(buf, pos);
        let pos = put_u16_placeholder(buf);
        // RFC 7606 §5.1: MP_REACH_NLRI/MP_UNREACH_NLRI first, so a receiver can find the
        // prefixes even if a later attribute is malformed; the rest in type order.
        if let Some(mp) = &self.mp_reach {
            encode_mp_reach(buf, mp);
        }
        if let Some(mp) = &self.mp_unreach {
            encode_mp_unreach(buf, mp);
        }
        if let Some(a) = &self.attributes {
            a.encode_low(buf, ctx.four_octet_as);
            a.encode_high(buf, ctx.four_octet_as);
        }
        fill_u16_len(buf, pos);
        for p in &self.nlri {
            encode_prefix(buf, p);
        }
    }
}

pub(crate) fn encode_mp_reach(buf: &mut BytesMut, mp: &MpReach) {
    let mut v = BytesMut::new();
    v.put_u16(mp.family.afi);
    v.put_u8(mp.family.safi);
    match mp.next_hop {
        NextHop::V4(a) => {
            v.put_u8(4);
            v.put_slice(&a.octets());
        }
        NextHop::V6 {
            global,
            link_local: None,
        } => {
            v.put_u8(16);
            v.put_slice(&global.octets());
        }
        NextHop::V6 {
            global,
            link_local: Some(ll),
        } => {
            v.put_u8(32);
            v.put_slice(&global.octets());
            v.put_slice(&ll.octets());
        }
    }
    v.put_u8(0); // Reserved
    for p in &mp.nlri {
        encode_prefix(&mut v, p);
    }
    // Always the 2-octet length form, as BIRD and FRR send it: the value grows with the
    // prefixes, and the packer then need not account for the header changing size.
    put_attr_ext(
        buf,
        attr_flags::OPTIONAL,
        attr_type::MP_REACH_NLRI,
        &v,
        true,
    );
}

pub(crate) fn encode_mp_unreach(buf: &mut BytesMut, mp: &MpUnreach) {
    let mut v = BytesMut::new();
    v.put_u16(mp.family.afi);
    v.put_u8(mp.family.safi);
    for p in &mp.withdrawn {
        encode_prefix(&mut v, p);
    }
    put_attr(buf, attr_flags::OPTIONAL, attr_type::MP_UNREACH_NLRI, &v);
}

/// Walks the attribute list once, collecting values and RFC 7606 faults.
struct AttributeParser {
    four_octet_as: bool,
    attrs: PathAttributes,
    any_attribute: bool,
    seen: [u64; 4],
    as4_path: Option<AsPath>,
    as4_aggregator: Option<Aggregator>,
    mp_reach: Option<MpReach>,
    mp_unreach: Option<MpUnreach>,
    faults: Vec<AttributeFault>,
}

impl AttributeParser {
    fn new(four_octet_as: bool) -> Self {
        Self {
            four_octet_as,
            attrs: PathAttributes::default(),
            any_attribute: false,
            seen: [0; 4],
            as4_path: None,
            as4_aggregator: None,
            mp_reach: None,
            mp_unreach: None,
            faults: Vec::new(),
        }
    }

    fn seen(&mut self, type_code: u8) -> bool {
        let (word, bit) = (usize::from(type_code / 64), type_code % 64);
        let was = self.seen[word] & (1 << bit) != 0;
        self.seen[word] |= 1 << bit;
        was
    }

    fn has(&self, type_code: u8) -> bool {
        self.seen[usize::from(type_code / 64)] & (1 << (type_code % 64)) != 0
    }

    fn fault(&mut self, error: UpdateError, action: ErrorAction) {
        // Bounded: at most one fault per attribute type (duplicates are counted once).
        if self.faults.len() < 256 {
            self.faults.push(AttributeFault { error, action });
        }
    }

    fn parse(&mut self, buf: &[u8]) -> Result<(), UpdateError> {
        let mut r = Reader::new(buf);
        while !r.is_empty() {
            let Some((flags, type_code, value)) = next_attribute(&mut r) else {
                // RFC 7606 §4: an attribute header that does not fit, or a value that
                // overruns the Total Path Attribute Length. That length still locates the
                // NLRI field, so the UPDATE is treat-as-withdraw; whatever followed the bad
                // attribute is unreadable (RFC 7606 §5.1 has MP_REACH/MP_UNREACH sent first,
                // as BIRD, FRR, GoBGP and this crate do, so their prefixes were read).
                self.fault(
                    UpdateError::MalformedAttributeList,
                    ErrorAction::TreatAsWithdraw,
                );
                return Ok(());
            };
            if self.seen(type_code) {
                if matches!(
                    type_code,
                    attr_type::MP_REACH_NLRI | attr_type::MP_UNREACH_NLRI
                ) {
                    // RFC 7606 §3.g.
                    return Err(UpdateError::DuplicateAttribute { type_code });
                }
                // RFC 7606 §3.g: keep the first, discard the rest.
                self.fault(
                    UpdateError::DuplicateAttribute { type_code },
                    ErrorAction::AttributeDiscard,
                );
                continue;
            }
            self.attribute(flags, type_code, value)?;
        }
        Ok(())
    }

    /// Handles one attribute. Returns `Err` only for session-reset errors.
    fn attribute(&mut self, flags: u8, type_code: u8, value: &[u8]) -> Result<(), UpdateError> {
        use attr_flags::{OPTIONAL, PARTIAL, TRANSITIVE};
        use attr_type as t;
        let category = flags & (OPTIONAL | TRANSITIVE);
        let (expected, action) = match type_code {
            t::ORIGIN | t::AS_PATH | t::NEXT_HOP | t::LOCAL_PREF => {
                (TRANSITIVE, ErrorAction::TreatAsWithdraw)
            }
            t::ATOMIC_AGGREGATE => (TRANSITIVE, ErrorAction::AttributeDiscard),
            t::MED | t::ORIGINATOR_ID | t::CLUSTER_LIST => (OPTIONAL, ErrorAction::TreatAsWithdraw),
            t::COMMUNITIES => (OPTIONAL | TRANSITIVE, ErrorAction::TreatAsWithdraw),
            t::AGGREGATOR | t::AS4_PATH | t::AS4_AGGREGATOR => {
                (OPTIONAL | TRANSITIVE, ErrorAction::AttributeDiscard)
            }
            // RFC 7606 §7.13–7.16.
            t::EXTENDED_COMMUNITIES | t::IPV6_EXTENDED_COMMUNITIES | t::ATTR_SET => {
                (OPTIONAL | TRANSITIVE, ErrorAction::TreatAsWithdraw)
            }
            t::TRAFFIC_ENGINEERING => (OPTIONAL, ErrorAction::TreatAsWithdraw),
            t::MP_REACH_NLRI | t::MP_UNREACH_NLRI => (OPTIONAL, ErrorAction::SessionReset),
            _ => {
                if flags & OPTIONAL == 0 {
                    return Err(UpdateError::UnrecognizedWellKnown { type_code });
                }
                if flags & TRANSITIVE != 0 {
                    self.any_attribute = true;
                    self.attrs.unknown.push(RawAttribute {
                        flags: (flags | PARTIAL) & !attr_flags::EXTENDED_LENGTH,
                        type_code,
                        value: bytes::Bytes::copy_from_slice(value),
                    });
                }
                // Unknown optional non-transitive: quietly ignored (RFC 4271 §5).
                return Ok(());
            }
        };
        let result = if category != expected {
            Err(UpdateError::AttributeFlags { type_code })
        } else {
            self.known(flags, type_code, value)
        };
        match result {
            Ok(()) => Ok(()),
            Err(e) if action == ErrorAction::SessionReset => Err(e),
            Err(e) => {
                self.fault(e, action);
                Ok(())
            }
        }
    }

    fn known(&mut self, flags: u8, type_code: u8, value: &[u8]) -> Result<(), UpdateError> {
        use attr_type as t;
        let bad_len = UpdateError::AttributeLength { type_code };
        let mut r = Reader::new(value);
        if !matches!(type_code, t::MP_REACH_NLRI | t::MP_UNREACH_NLRI) {
            self.any_attribute = true;
        }
        match type_code {
            t::ORIGIN => {
                let [v] = value else { return Err(bad_len) };
                self.attrs.origin = match v {
                    0 => Origin::Igp,
                    1 => Origin::Egp,
                    2 => Origin::Incomplete,
                    _ => return Err(UpdateError::InvalidOrigin { value: *v }),
                };
            }
            t::AS_PATH => {
                self.attrs.as_path = decode_as_path(value, self.four_octet_as, type_code)?;
            }
            t::NEXT_HOP => {
                let a = Ipv4Addr::from(r.array::<4>().filter(|_| value.len() == 4).ok_or(bad_len)?);
                // RFC 4271 §6.3: syntactically incorrect next hops.
                if a.is_unspecified() || a.is_broadcast() || a.is_multicast() {
                    return Err(UpdateError::InvalidNextHop { type_code });
                }
                self.attrs.next_hop = Some(NextHop::V4(a));
            }
            t::MED => self.attrs.med = Some(exact_u32(value).ok_or(bad_len)?),
            t::LOCAL_PREF => self.attrs.local_pref = Some(exact_u32(value).ok_or(bad_len)?),
            t::ATOMIC_AGGREGATE => {
                if !value.is_empty() {
                    return Err(bad_len);
                }
                self.attrs.atomic_aggregate = true;
            }
            t::AGGREGATOR => {
                let asn = match value.len() {
                    8 if self.four_octet_as => r.u32(),
                    6 if !self.four_octet_as => r.u16().map(u32::from),
                    _ => None,
                }
                .ok_or(bad_len)?;
                let address = Ipv4Addr::from(r.u32().ok_or(bad_len)?);
                // RFC 7607 §2: AS 0 makes the attribute malformed.
                if asn == 0 {
                    return Err(UpdateError::OptionalAttribute { type_code });
                }
                self.attrs.aggregator = Some(Aggregator { asn, address });
            }
            t::COMMUNITIES => {
                // RFC 7606 §7.8: a non-zero multiple of 4.
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    return Err(bad_len);
                }
                self.attrs.communities = value
                    .chunks_exact(4)
                    .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                    .collect();
            }
            t::ORIGINATOR_ID => {
                self.attrs.originator_id = Some(Ipv4Addr::from(exact_u32(value).ok_or(bad_len)?));
            }
            t::CLUSTER_LIST => {
                // RFC 7606 §7.10: a non-zero multiple of 4.
                if value.is_empty() || !value.len().is_multiple_of(4) {
                    return Err(bad_len);
                }
                self.attrs.cluster_list = value
                    .chunks_exact(4)
                    .map(|c| Ipv4Addr::new(c[0], c[1], c[2], c[3]))
                    .collect();
            }
            t::AS4_PATH => {
                let path = decode_as_path(value, true, type_code)?;
                // RFC 6793 §6: confederation segments do not belong in AS4_PATH.
                if path
                    .segments
                    .iter()
                    .any(|s| matches!(s.kind, SegmentType::ConfedSequence | SegmentType::ConfedSet))
                {
                    return Err(UpdateError::MalformedAsPath { type_code });
                }
                self.as4_path = Some(path);
            }
            t::AS4_AGGREGATOR => {
                if value.len() != 8 {
                    return Err(bad_len);
                }
                let asn = r.u32().ok_or(bad_len)?;
                let address = Ipv4Addr::from(r.u32().ok_or(bad_len)?);
                // RFC 7607 §2: AS 0 makes it malformed (RFC 6793 §6: discarded).
                if asn == 0 {
                    return Err(UpdateError::OptionalAttribute { type_code });
                }
                self.as4_aggregator = Some(Aggregator { asn, address });
            }
            t::EXTENDED_COMMUNITIES | t::IPV6_EXTENDED_COMMUNITIES | t::ATTR_SET => {
                // RFC 7606 §7.14: a non-zero multiple of 8; §7.15: of 20; §7.16: at least
                // the 4-octet origin AS.
                let ok = match type_code {
                    t::EXTENDED_COMMUNITIES => !value.is_empty() && value.len().is_multiple_of(8),
                    t::IPV6_EXTENDED_COMMUNITIES => {
                        !value.is_empty() && value.len().is_multiple_of(20)
                    }
                    _ => value.len() >= 4,
                };
                if !ok {
                    return Err(bad_len);
                }
                self.attrs.unknown.push(RawAttribute {
                    flags: flags & !attr_flags::EXTENDED_LENGTH,
                    type_code,
                    value: bytes::Bytes::copy_from_slice(value),
                });
            }
            // RFC 7606 §7.13: shorter than one Interface Switching Capability Descriptor
            // (RFC 5543 §3: 4 octets, then 8 four-octet bandwidths). Non-transitive and of
            // no use here: checked, then dropped.
            t::TRAFFIC_ENGINEERING if value.len() < 36 => return Err(bad_len),
            t::MP_REACH_NLRI => self.mp_reach(value)?,
            t::MP_UNREACH_NLRI => {
                let afi = r.u16().ok_or(bad_len)?;
                let safi = r.u8().ok_or(bad_len)?;
                let family = Family { afi, safi };
                let rest = r.rest();
                if family.is_supported() {
                    let withdrawn = decode_prefixes(rest, family == Family::IPV6_UNICAST)
                        .map_err(|_| UpdateError::OptionalAttribute { type_code })?;
                    self.mp_unreach = Some(MpUnreach { family, withdrawn });
                } else if rest.is_empty() {
                    // End-of-RIB for a family we do not carry: keep it so it can be seen.
                    self.mp_unreach = Some(MpUnreach {
                        family,
                        withdrawn: Vec::new(),
                    });
                }
            }
            _ => {}
        }
        Ok(())
    }

    /// MP_REACH_NLRI: errors that leave the prefixes unlocatable reset the session
    /// (RFC 7606 §7.11), and so does a next-hop length the family does not have (4 octets
    /// for IPv4, 16 or 32 for IPv6, RFC 2545 §3; RFC 8950 next hops are not negotiated):
    /// §7.11 does not trust the NLRI behind it. A next hop of the right length that is no
    /// usable address is treat-as-withdraw.
    fn mp_reach(&mut self, value: &[u8]) -> Result<(), UpdateError> {
        let type_code = attr_type::MP_REACH_NLRI;
        let bad = UpdateError::OptionalAttribute { type_code };
        let mut r = Reader::new(value);
        let afi = r.u16().ok_or(bad)?;
        let safi = r.u8().ok_or(bad)?;
        let nh_len = r.u8().ok_or(bad)?;
        let nh = r.take(usize::from(nh_len)).ok_or(bad)?;
        let _reserved = r.u8().ok_or(bad)?;
        let family = Family { afi, safi };
        if !family.is_supported() {
            // RFC 4760 §7: a family not negotiated is ignored.
            return Ok(());
        }
        let mut nr = Reader::new(nh);
        let next_hop = match (family == Family::IPV6_UNICAST, nh.len()) {
            (false, 4) => nr.array::<4>().map(|a| NextHop::V4(Ipv4Addr::from(a))),
            (true, 16) => nr.array::<16>().map(|a| NextHop::V6 {
                global: Ipv6Addr::from(a),
                link_local: None,
            }),
            (true, 32) => (|| {
                let g = nr.array::<16>()?;
                let l = nr.array::<16>()?;
                Some(NextHop::V6 {
                    global: Ipv6Addr::from(g),
                    link_local: Some(Ipv6Addr::from(l)),
                })
            })(),
            _ => None,
        }
        .ok_or(bad)?;
        let nlri = decode_prefixes(r.rest(), family == Family::IPV6_UNICAST).map_err(|_| bad)?;
        let invalid = match next_hop {
            NextHop::V4(a) => a.is_unspecified() || a.is_multicast() || a.is_broadcast(),
            NextHop::V6 { global, .. } => global.is_unspecified() || global.is_multicast(),
        };
        if invalid {
            self.fault(
                UpdateError::InvalidNextHop { type_code },
                ErrorAction::TreatAsWithdraw,
            );
        }
        // Kept when invalid too: treat-as-withdraw then withdraws these prefixes.
        self.mp_reach = Some(MpReach {
            family,
            next_hop,
            nlri,
        });
        Ok(())
    }

    fn finish(mut self, withdrawn: Vec<IpNetwork>, nlri: Vec<IpNetwork>) -> Update {
        let announces =
            !nlri.is_empty() || self.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty());
        if announces {
            // RFC 7606 §3.d: a missing mandatory attribute is treat-as-withdraw.
            let mut required = vec![attr_type::ORIGIN, attr_type::AS_PATH];
            if !nlri.is_empty() {
                required.push(attr_type::NEXT_HOP);
            }
            for type_code in required {
                if !self.has(type_code) {
                    self.fault(
                        UpdateError::MissingWellKnown { type_code },
                        ErrorAction::TreatAsWithdraw,
                    );
                }
            }
        }
        self.merge_as4();
        Update {
            withdrawn,
            attributes: self.any_attribute.then_some(self.attrs),
            mp_reach: self.mp_reach,
            mp_unreach: self.mp_unreach,
            nlri,
            faults: self.faults,
        }
    }

    /// RFC 6793 §4.2.3: rebuild the 4-octet path from AS_PATH and AS4_PATH when the peer
    /// speaks 2-octet AS. A 4-octet peer's AS4_PATH/AS4_AGGREGATOR are ignored.
    fn merge_as4(&mut self) {
        if self.four_octet_as {
            return;
        }
        if let Some(agg) = self.attrs.aggregator {
            if agg.asn != u32::from(AS_TRANS) {
                // The aggregator was a 2-octet speaker: AS4 information is stale.
                return;
            }
            if let Some(as4) = self.as4_aggregator {
                self.attrs.aggregator = Some(as4);
            }
        }
        let Some(as4) = self.as4_path.take() else {
            return;
        };
        let n = self.attrs.as_path.path_len();
        let m = as4.path_len();
        if n < m {
            return;
        }
        let mut keep = n - m;
        let mut segments = Vec::new();
        for seg in &self.attrs.as_path.segments {
            match seg.kind {
                SegmentType::ConfedSequence | SegmentType::ConfedSet => segments.push(seg.clone()),
                _ if keep == 0 => break,
                SegmentType::Set => {
                    segments.push(seg.clone());
                    keep -= 1;
                }
                SegmentType::Sequence => {
                    let take = keep.min(seg.asns.len());
                    segments.push(AsPathSegment {
                        kind: SegmentType::Sequence,
                        asns: seg.asns[..take].to_vec(),
                    });
                    keep -= take;
                }
            }
        }
        let mut as4 = as4.segments.into_iter();
        if let Some(first) = as4.next() {
            // Join the kept head and the AS4 tail into one sequence where they meet.
            match segments.last_mut() {
                Some(last)
                    if last.kind == SegmentType::Sequence
                        && first.kind == SegmentType::Sequence =>
                {
                    last.asns.extend(first.asns);
                }
                _ => segments.push(first),
            }
        }
        segments.extend(as4);
        self.attrs.as_path = AsPath { segments };
    }
}

/// Reads one attribute's flags, type code and value; `None` if the header or the value
/// does not fit in what is left.
fn next_attribute<'a>(r: &mut Reader<'a>) -> Option<(u8, u8, &'a [u8])> {
    let flags = r.u8()?;
    let type_code = r.u8()?;
    let len = if flags & attr_flags::EXTENDED_LENGTH != 0 {
        usize::from(r.u16()?)
    } else {
        usize::from(r.u8()?)
    };
    Some((flags, type_code, r.take(len)?))
}

fn exact_u32(value: &[u8]) -> Option<u32> {
    let a: [u8; 4] = value.try_into().ok()?;
    Some(u32::from_be_bytes(a))
}

fn decode_as_path(value: &[u8], four_octet: bool, type_code: u8) -> Result<AsPath, UpdateError> {
    let bad = UpdateError::MalformedAsPath { type_code };
    let mut r = Reader::new(value);
    let width = if four_octet { 4 } else { 2 };
    let mut segments = Vec::new();
    while !r.is_empty() {
        let kind = SegmentType::from_u8(r.u8().ok_or(bad)?).ok_or(bad)?;
        let count = usize::from(r.u8().ok_or(bad)?);
        // RFC 7606 §7.2: a zero-length segment is malformed.
        if count == 0 {
            return Err(bad);
        }
        let raw = r.take(count * width).ok_or(bad)?;
        let asns: Vec<u32> = if four_octet {
            raw.chunks_exact(4)
                .map(|c| u32::from_be_bytes([c[0], c[1], c[2], c[3]]))
                .collect()
        } else {
            raw.chunks_exact(2)
                .map(|c| u32::from(u16::from_be_bytes([c[0], c[1]])))
                .collect()
        };
        // RFC 7607 §2: AS 0 makes the path malformed.
        if asns.contains(&0) {
            return Err(bad);
        }
        segments.push(AsPathSegment { kind, asns });
    }
    Ok(AsPath { segments })
}
