//! Interim BGP message codec: just what an iBGP pod-route mesh needs, until `podroute-bgp`
//! exposes its own codec and session (then this module and `interim_session` go away).
//!
//! Covered: the header and framing (RFC 4271 §4.1), OPEN with the multiprotocol (RFC 4760)
//! and 4-octet AS (RFC 6793) capabilities, UPDATE with ORIGIN, AS_PATH, NEXT_HOP, LOCAL_PREF,
//! MP_REACH_NLRI and MP_UNREACH_NLRI for IPv4/IPv6 unicast, End-of-RIB (RFC 4724 §2),
//! NOTIFICATION and KEEPALIVE. Attributes it does not use are skipped.
//! Every length is checked; malformed input becomes a [`Notification`], never a panic.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;

/// Header length (marker 16, length 2, type 1).
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 4271 §4.1).
pub const MAX_LEN: usize = 4096;
/// AS_TRANS (RFC 6793 §9).
const AS_TRANS: u16 = 23456;

const AFI_IPV4: u16 = 1;
const AFI_IPV6: u16 = 2;
const SAFI_UNICAST: u8 = 1;

const ATTR_ORIGIN: u8 = 1;
const ATTR_AS_PATH: u8 = 2;
const ATTR_NEXT_HOP: u8 = 3;
const ATTR_LOCAL_PREF: u8 = 5;
const ATTR_MP_REACH: u8 = 14;
const ATTR_MP_UNREACH: u8 = 15;
const FLAG_OPTIONAL: u8 = 0x80;
const FLAG_TRANSITIVE: u8 = 0x40;
const FLAG_EXTENDED: u8 = 0x10;

/// A NOTIFICATION's error code and subcode (RFC 4271 §4.5).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Notification {
    /// Error code.
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
}

impl Notification {
    /// Message Header Error / Bad Message Length.
    pub const BAD_LENGTH: Self = Self {
        code: 1,
        subcode: 2,
    };
    /// Message Header Error / Connection Not Synchronized (bad marker).
    pub const NOT_SYNCHRONIZED: Self = Self {
        code: 1,
        subcode: 1,
    };
    /// Message Header Error / Bad Message Type.
    pub const BAD_TYPE: Self = Self {
        code: 1,
        subcode: 3,
    };
    /// OPEN Message Error / Unspecific.
    pub const OPEN_ERROR: Self = Self {
        code: 2,
        subcode: 0,
    };
    /// OPEN / Unsupported Version Number.
    pub const BAD_VERSION: Self = Self {
        code: 2,
        subcode: 1,
    };
    /// OPEN / Bad Peer AS.
    pub const BAD_PEER_AS: Self = Self {
        code: 2,
        subcode: 2,
    };
    /// OPEN / Bad BGP Identifier.
    pub const BAD_IDENTIFIER: Self = Self {
        code: 2,
        subcode: 3,
    };
    /// OPEN / Unacceptable Hold Time.
    pub const BAD_HOLD_TIME: Self = Self {
        code: 2,
        subcode: 6,
    };
    /// UPDATE Message Error / Malformed Attribute List.
    pub const MALFORMED_UPDATE: Self = Self {
        code: 3,
        subcode: 1,
    };
    /// Hold Timer Expired.
    pub const HOLD_EXPIRED: Self = Self {
        code: 4,
        subcode: 0,
    };
    /// Finite State Machine Error.
    pub const FSM_ERROR: Self = Self {
        code: 5,
        subcode: 0,
    };
    /// Cease / Peer De-configured (RFC 4486).
    pub const CEASE_DECONFIGURED: Self = Self {
        code: 6,
        subcode: 3,
    };
}

/// An OPEN message (RFC 4271 §4.2) with the capabilities this codec knows.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// Sender's AS (the 4-octet one if the capability was present).
    pub as_number: u32,
    /// Proposed hold time, seconds.
    pub hold_time: u16,
    /// BGP identifier.
    pub identifier: Ipv4Addr,
    /// IPv6 unicast capability announced.
    pub ipv6_unicast: bool,
}

/// An UPDATE reduced to what the mesh uses.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Update {
    /// Announced prefixes with their next hop.
    pub announced: Vec<(IpNetwork, IpAddr)>,
    /// Withdrawn prefixes.
    pub withdrawn: Vec<IpNetwork>,
    /// End-of-RIB marker for IPv4 (`Some(false)`) or IPv6 (`Some(true)`).
    pub end_of_rib: Option<bool>,
}

/// A decoded message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN.
    Open(Open),
    /// UPDATE.
    Update(Update),
    /// NOTIFICATION.
    Notification(Notification),
    /// KEEPALIVE.
    Keepalive,
}

/// Length of the first whole message in `buf`, `Ok(None)` if more bytes are needed.
pub fn frame_len(buf: &[u8]) -> Result<Option<usize>, Notification> {
    if buf.len() < HEADER_LEN {
        return Ok(None);
    }
    if buf[..16].iter().any(|b| *b != 0xff) {
        return Err(Notification::NOT_SYNCHRONIZED);
    }
    let len = usize::from(u16::from_be_bytes([buf[16], buf[17]]));
    if !(HEADER_LEN..=MAX_LEN).contains(&len) {
        return Err(Notification::BAD_LENGTH);
    }
    Ok((buf.len() >= len).then_some(len))
}

/// Decodes one whole message (as delimited by [`frame_len`]).
pub fn decode(frame: &[u8]) -> Result<Message, Notification> {
    let body = frame.get(HEADER_LEN..).ok_or(Notification::BAD_LENGTH)?;
    match frame[18] {
        1 => decode_open(body).map(Message::Open),
        2 => decode_update(body).map(Message::Update),
        3 => {
            let code = *body.first().ok_or(Notification::BAD_LENGTH)?;
            let subcode = body.get(1).copied().unwrap_or(0);
            Ok(Message::Notification(Notification { code, subcode }))
        }
        4 if body.is_empty() => Ok(Message::Keepalive),
        4 => Err(Notification::BAD_LENGTH),
        _ => Err(Notification::BAD_TYPE),
    }
}

/// A cursor over a byte slice whose reads fail instead of panicking.
struct Reader<'a> {
    buf: &'a [u8],
    error: Notification,
}

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], Notification> {
        if self.buf.len() < n {
            return Err(self.error);
        }
        let (head, tail) = self.buf.split_at(n);
        self.buf = tail;
        Ok(head)
    }
    fn u8(&mut self) -> Result<u8, Notification> {
        Ok(self.take(1)?[0])
    }
    fn u16(&mut self) -> Result<u16, Notification> {
        let b = self.take(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }
}

fn decode_open(body: &[u8]) -> Result<Open, Notification> {
    let mut r = Reader {
        buf: body,
        error: Notification::OPEN_ERROR,
    };
    if r.u8()? != 4 {
        return Err(Notification::BAD_VERSION);
    }
    let my_as = r.u16()?;
    let hold_time = r.u16()?;
    let id = r.take(4)?;
    let identifier = Ipv4Addr::new(id[0], id[1], id[2], id[3]);
    let params_len = usize::from(r.u8()?);
    let mut params = Reader {
        buf: r.take(params_len)?,
        error: Notification::OPEN_ERROR,
    };
    let mut as4 = None;
    let mut ipv6_unicast = false;
    while !params.buf.is_empty() {
        let kind = params.u8()?;
        let len = usize::from(params.u8()?);
        let value = params.take(len)?;
        if kind != 2 {
            continue; // Only capabilities (RFC 5492) are defined in practice.
        }
        let mut caps = Reader {
            buf: value,
            error: Notification::OPEN_ERROR,
        };
        while !caps.buf.is_empty() {
            let code = caps.u8()?;
            let len = usize::from(caps.u8()?);
            let value = caps.take(len)?;
            match (code, value) {
                (1, [0, 2, _, 1]) => ipv6_unicast = true,
                (65, [a, b, c, d]) => as4 = Some(u32::from_be_bytes([*a, *b, *c, *d])),
                _ => {}
            }
        }
    }
    Ok(Open {
        as_number: as4.unwrap_or(u32::from(my_as)),
        hold_time,
        identifier,
        ipv6_unicast,
    })
}

fn decode_prefixes(buf: &[u8], ipv6: bool) -> Result<Vec<IpNetwork>, Notification> {
    let mut r = Reader {
        buf,
        error: Notification::MALFORMED_UPDATE,
    };
    let mut out = Vec::new();
    while !r.buf.is_empty() {
        let len = r.u8()?;
        let max = if ipv6 { 128 } else { 32 };
        if len > max {
            return Err(Notification::MALFORMED_UPDATE);
        }
        let bytes = r.take(usize::from(len).div_ceil(8))?;
        let network = if ipv6 {
            let mut octets = [0u8; 16];
            octets[..bytes.len()].copy_from_slice(bytes);
            IpNetwork::new(IpAddr::V6(Ipv6Addr::from(octets)), len)
        } else {
            let mut octets = [0u8; 4];
            octets[..bytes.len()].copy_from_slice(bytes);
            IpNetwork::new(IpAddr::V4(Ipv4Addr::from(octets)), len)
        }
        .map_err(|_| Notification::MALFORMED_UPDATE)?;
        // Normalise stray host bits so the prefix compares equal to the Node's CIDR form.
        let normal =
            IpNetwork::new(network.network(), len).map_err(|_| Notification::MALFORMED_UPDATE)?;
        out.push(normal);
    }
    Ok(out)
}

fn decode_update(body: &[u8]) -> Result<Update, Notification> {
    let mut r = Reader {
        buf: body,
        error: Notification::MALFORMED_UPDATE,
    };
    let withdrawn_len = usize::from(r.u16()?);
    let withdrawn = decode_prefixes(r.take(withdrawn_len)?, false)?;
    let attrs_len = usize::from(r.u16()?);
    let mut attrs = Reader {
        buf: r.take(attrs_len)?,
        error: Notification::MALFORMED_UPDATE,
    };
    let nlri = decode_prefixes(r.buf, false)?;

    let mut update = Update {
        withdrawn,
        ..Default::default()
    };
    let mut next_hop_v4 = None;
    let mut saw_attribute = false;
    let mut mp_unreach_empty_v6 = false;
    while !attrs.buf.is_empty() {
        saw_attribute = true;
        let flags = attrs.u8()?;
        let kind = attrs.u8()?;
        let len = if flags & FLAG_EXTENDED != 0 {
            usize::from(attrs.u16()?)
        } else {
            usize::from(attrs.u8()?)
        };
        let value = attrs.take(len)?;
        match kind {
            ATTR_NEXT_HOP => {
                let [a, b, c, d] = value else {
                    return Err(Notification::MALFORMED_UPDATE);
                };
                next_hop_v4 = Some(IpAddr::V4(Ipv4Addr::new(*a, *b, *c, *d)));
            }
            ATTR_MP_REACH => {
                let mut mp = Reader {
                    buf: value,
                    error: Notification::MALFORMED_UPDATE,
                };
                let afi = mp.u16()?;
                let safi = mp.u8()?;
                let nh_len = usize::from(mp.u8()?);
                let nh = mp.take(nh_len)?;
                mp.u8()?; // reserved
                if safi != SAFI_UNICAST {
                    continue;
                }
                let next_hop = match (afi, nh.len()) {
                    (AFI_IPV6, 16 | 32) => {
                        let mut octets = [0u8; 16];
                        octets.copy_from_slice(&nh[..16]);
                        IpAddr::V6(Ipv6Addr::from(octets))
                    }
                    (AFI_IPV4, 4) => IpAddr::V4(Ipv4Addr::new(nh[0], nh[1], nh[2], nh[3])),
                    _ => continue,
                };
                for prefix in decode_prefixes(mp.buf, afi == AFI_IPV6)? {
                    update.announced.push((prefix, next_hop));
                }
            }
            ATTR_MP_UNREACH => {
                let mut mp = Reader {
                    buf: value,
                    error: Notification::MALFORMED_UPDATE,
                };
                let afi = mp.u16()?;
                let safi = mp.u8()?;
                if safi != SAFI_UNICAST || !(afi == AFI_IPV4 || afi == AFI_IPV6) {
                    continue;
                }
                if mp.buf.is_empty() && afi == AFI_IPV6 {
                    mp_unreach_empty_v6 = true;
                }
                update
                    .withdrawn
                    .extend(decode_prefixes(mp.buf, afi == AFI_IPV6)?);
            }
            _ => {}
        }
    }
    if !nlri.is_empty() {
        let next_hop = next_hop_v4.ok_or(Notification {
            code: 3,
            subcode: 3,
        })?; // missing well-known
        update
            .announced
            .extend(nlri.into_iter().map(|p| (p, next_hop)));
    }
    if !saw_attribute && update.withdrawn.is_empty() && update.announced.is_empty() {
        update.end_of_rib = Some(false);
    } else if mp_unreach_empty_v6 && update.announced.is_empty() && update.withdrawn.is_empty() {
        update.end_of_rib = Some(true);
    }
    Ok(update)
}

fn header(out: &mut Vec<u8>, kind: u8) -> usize {
    let start = out.len();
    out.extend_from_slice(&[0xff; 16]);
    out.extend_from_slice(&[0, 0, kind]);
    start
}

fn finish(out: &mut [u8], start: usize) {
    let len = (out.len() - start) as u16; // callers keep messages under MAX_LEN
    out[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
}

/// Encodes an OPEN offering IPv4 and IPv6 unicast and 4-octet AS numbers.
pub fn encode_open(out: &mut Vec<u8>, as_number: u32, hold_time: u16, identifier: Ipv4Addr) {
    let start = header(out, 1);
    let my_as = u16::try_from(as_number).unwrap_or(AS_TRANS);
    out.push(4);
    out.extend_from_slice(&my_as.to_be_bytes());
    out.extend_from_slice(&hold_time.to_be_bytes());
    out.extend_from_slice(&identifier.octets());
    let mut caps = Vec::new();
    caps.extend_from_slice(&[1, 4, 0, AFI_IPV4 as u8, 0, SAFI_UNICAST]);
    caps.extend_from_slice(&[1, 4, 0, AFI_IPV6 as u8, 0, SAFI_UNICAST]);
    caps.extend_from_slice(&[65, 4]);
    caps.extend_from_slice(&as_number.to_be_bytes());
    out.push((caps.len() + 2) as u8);
    out.push(2);
    out.push(caps.len() as u8);
    out.extend_from_slice(&caps);
    finish(out, start);
}

/// Encodes a KEEPALIVE.
pub fn encode_keepalive(out: &mut Vec<u8>) {
    let start = header(out, 4);
    finish(out, start);
}

/// Encodes a NOTIFICATION without data.
pub fn encode_notification(out: &mut Vec<u8>, notification: Notification) {
    let start = header(out, 3);
    out.extend_from_slice(&[notification.code, notification.subcode]);
    finish(out, start);
}

fn push_prefix(out: &mut Vec<u8>, prefix: &IpNetwork) {
    let len = prefix.prefix();
    out.push(len);
    let bytes = usize::from(len).div_ceil(8);
    match prefix.network() {
        IpAddr::V4(a) => out.extend_from_slice(&a.octets()[..bytes]),
        IpAddr::V6(a) => out.extend_from_slice(&a.octets()[..bytes]),
    }
}

fn push_attr(out: &mut Vec<u8>, flags: u8, kind: u8, value: &[u8]) {
    out.extend_from_slice(&[flags | FLAG_EXTENDED, kind]);
    out.extend_from_slice(&(value.len() as u16).to_be_bytes());
    out.extend_from_slice(value);
}

/// Encodes an iBGP announcement of one prefix we originate (ORIGIN IGP, empty AS_PATH,
/// LOCAL_PREF 100; IPv4 via NEXT_HOP + NLRI, IPv6 via MP_REACH_NLRI).
pub fn encode_announce(out: &mut Vec<u8>, prefix: &IpNetwork, next_hop: IpAddr) {
    let start = header(out, 2);
    out.extend_from_slice(&[0, 0]); // no withdrawn routes
    let mut attrs = Vec::new();
    push_attr(&mut attrs, FLAG_TRANSITIVE, ATTR_ORIGIN, &[0]);
    push_attr(&mut attrs, FLAG_TRANSITIVE, ATTR_AS_PATH, &[]);
    push_attr(
        &mut attrs,
        FLAG_TRANSITIVE,
        ATTR_LOCAL_PREF,
        &100u32.to_be_bytes(),
    );
    match (prefix, next_hop) {
        (IpNetwork::V4(_), IpAddr::V4(nh)) => {
            push_attr(&mut attrs, FLAG_TRANSITIVE, ATTR_NEXT_HOP, &nh.octets());
            out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
            out.extend_from_slice(&attrs);
            push_prefix(out, prefix);
        }
        (_, nh) => {
            let mut mp = Vec::new();
            let afi = if prefix.is_ipv6() { AFI_IPV6 } else { AFI_IPV4 };
            mp.extend_from_slice(&afi.to_be_bytes());
            mp.push(SAFI_UNICAST);
            match nh {
                IpAddr::V4(a) => {
                    mp.push(4);
                    mp.extend_from_slice(&a.octets());
                }
                IpAddr::V6(a) => {
                    mp.push(16);
                    mp.extend_from_slice(&a.octets());
                }
            }
            mp.push(0);
            push_prefix(&mut mp, prefix);
            push_attr(&mut attrs, FLAG_OPTIONAL, ATTR_MP_REACH, &mp);
            out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
            out.extend_from_slice(&attrs);
        }
    }
    finish(out, start);
}

/// Encodes a withdrawal of one prefix.
pub fn encode_withdraw(out: &mut Vec<u8>, prefix: &IpNetwork) {
    let start = header(out, 2);
    if prefix.is_ipv4() {
        let mut withdrawn = Vec::new();
        push_prefix(&mut withdrawn, prefix);
        out.extend_from_slice(&(withdrawn.len() as u16).to_be_bytes());
        out.extend_from_slice(&withdrawn);
        out.extend_from_slice(&[0, 0]);
    } else {
        out.extend_from_slice(&[0, 0]);
        let mut mp = AFI_IPV6.to_be_bytes().to_vec();
        mp.push(SAFI_UNICAST);
        push_prefix(&mut mp, prefix);
        let mut attrs = Vec::new();
        push_attr(&mut attrs, FLAG_OPTIONAL, ATTR_MP_UNREACH, &mp);
        out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        out.extend_from_slice(&attrs);
    }
    finish(out, start);
}

/// Encodes End-of-RIB for IPv4 (empty UPDATE) or IPv6 (empty MP_UNREACH_NLRI), RFC 4724 §2.
pub fn encode_end_of_rib(out: &mut Vec<u8>, ipv6: bool) {
    let start = header(out, 2);
    out.extend_from_slice(&[0, 0]);
    if ipv6 {
        let mut attrs = Vec::new();
        let mut mp = AFI_IPV6.to_be_bytes().to_vec();
        mp.push(SAFI_UNICAST);
        push_attr(&mut attrs, FLAG_OPTIONAL, ATTR_MP_UNREACH, &mp);
        out.extend_from_slice(&(attrs.len() as u16).to_be_bytes());
        out.extend_from_slice(&attrs);
    } else {
        out.extend_from_slice(&[0, 0]);
    }
    finish(out, start);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn roundtrip(bytes: &[u8]) -> Message {
        assert_eq!(frame_len(bytes), Ok(Some(bytes.len())));
        decode(bytes).expect("decodes")
    }

    #[test]
    fn open_roundtrip_with_four_octet_as() {
        let mut out = Vec::new();
        encode_open(&mut out, 4_200_000_000, 90, Ipv4Addr::new(198, 18, 0, 1));
        let Message::Open(open) = roundtrip(&out) else {
            panic!("not an OPEN")
        };
        assert_eq!(open.as_number, 4_200_000_000);
        assert_eq!(open.hold_time, 90);
        assert!(open.ipv6_unicast);
        assert_eq!(
            &out[20..22],
            &AS_TRANS.to_be_bytes(),
            "2-octet field carries AS_TRANS"
        );
    }

    #[test]
    fn updates_roundtrip_both_families() {
        for (prefix, nh) in [
            ("10.244.2.0/24", "198.18.0.2"),
            ("fd00:10:244:2::/64", "fd00:198:18::2"),
        ] {
            let prefix: IpNetwork = prefix.parse().expect("net");
            let nh: IpAddr = nh.parse().expect("ip");
            let mut out = Vec::new();
            encode_announce(&mut out, &prefix, nh);
            assert_eq!(
                roundtrip(&out),
                Message::Update(Update {
                    announced: vec![(prefix, nh)],
                    ..Default::default()
                })
            );
            out.clear();
            encode_withdraw(&mut out, &prefix);
            assert_eq!(
                roundtrip(&out),
                Message::Update(Update {
                    withdrawn: vec![prefix],
                    ..Default::default()
                })
            );
        }
    }

    #[test]
    fn end_of_rib_markers_are_recognised() {
        for ipv6 in [false, true] {
            let mut out = Vec::new();
            encode_end_of_rib(&mut out, ipv6);
            let Message::Update(update) = roundtrip(&out) else {
                panic!("not an UPDATE")
            };
            assert_eq!(update.end_of_rib, Some(ipv6));
        }
    }

    #[test]
    fn truncated_and_bad_input_is_an_error_not_a_panic() {
        let mut out = Vec::new();
        encode_announce(
            &mut out,
            &"10.244.2.0/24".parse().expect("net"),
            "198.18.0.2".parse().expect("ip"),
        );
        assert_eq!(frame_len(&out[..out.len() - 1]), Ok(None));
        for cut in HEADER_LEN..out.len() {
            let mut broken = out[..cut].to_vec();
            let len = broken.len() as u16;
            broken[16..18].copy_from_slice(&len.to_be_bytes());
            let _ = decode(&broken); // any result but a panic
        }
        let mut bad_marker = out.clone();
        bad_marker[0] = 0;
        assert_eq!(frame_len(&bad_marker), Err(Notification::NOT_SYNCHRONIZED));
        let mut prefix_too_long = Vec::new();
        encode_withdraw(&mut prefix_too_long, &"10.0.0.0/8".parse().expect("net"));
        prefix_too_long[21] = 33;
        assert_eq!(
            decode(&prefix_too_long),
            Err(Notification::MALFORMED_UPDATE)
        );
    }
}
