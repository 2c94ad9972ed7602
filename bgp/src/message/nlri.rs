//! Address families and prefix encoding (RFC 4271 §4.3, RFC 4760 §5).
//!
//! Prefixes are `ipnetwork::IpNetwork` throughout the crate. Decoded prefixes always have
//! their host bits cleared (a peer may send junk in the trailing bits of the last octet;
//! RFC 4271 §4.3 says they are irrelevant), so equal routes compare equal.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use bytes::{BufMut, BytesMut};
use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

use super::error::UpdateError;
use super::wire::Reader;

/// An address family: AFI and SAFI (RFC 4760 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Family {
    /// Address Family Identifier (1 IPv4, 2 IPv6).
    pub afi: u16,
    /// Subsequent AFI (1 unicast).
    pub safi: u8,
}

impl Family {
    /// IPv4 unicast (AFI 1, SAFI 1).
    pub const IPV4_UNICAST: Family = Family { afi: 1, safi: 1 };
    /// IPv6 unicast (AFI 2, SAFI 1).
    pub const IPV6_UNICAST: Family = Family { afi: 2, safi: 1 };

    /// The family a prefix belongs to (unicast).
    pub fn of(prefix: &IpNetwork) -> Family {
        match prefix {
            IpNetwork::V4(_) => Family::IPV4_UNICAST,
            IpNetwork::V6(_) => Family::IPV6_UNICAST,
        }
    }

    /// True for the two families this crate carries routes for.
    pub fn is_supported(&self) -> bool {
        *self == Family::IPV4_UNICAST || *self == Family::IPV6_UNICAST
    }
}

impl std::fmt::Display for Family {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match *self {
            Family::IPV4_UNICAST => f.write_str("ipv4-unicast"),
            Family::IPV6_UNICAST => f.write_str("ipv6-unicast"),
            Family { afi, safi } => write!(f, "afi{afi}-safi{safi}"),
        }
    }
}

/// Clears host bits so the prefix is canonical.
pub(crate) fn canonical(prefix: IpNetwork) -> IpNetwork {
    match prefix {
        IpNetwork::V4(n) => {
            let len = n.prefix();
            let bits = u32::from(n.ip()) & mask_u32(len);
            Ipv4Network::new(Ipv4Addr::from(bits), len).map_or(prefix, IpNetwork::V4)
        }
        IpNetwork::V6(n) => {
            let len = n.prefix();
            let bits = u128::from(n.ip()) & mask_u128(len);
            Ipv6Network::new(Ipv6Addr::from(bits), len).map_or(prefix, IpNetwork::V6)
        }
    }
}

fn mask_u32(len: u8) -> u32 {
    if len == 0 {
        0
    } else {
        u32::MAX << (32 - u32::from(len.min(32)))
    }
}

fn mask_u128(len: u8) -> u128 {
    if len == 0 {
        0
    } else {
        u128::MAX << (128 - u32::from(len.min(128)))
    }
}

/// Decodes one prefix of the family's width: a length octet then just enough octets.
pub(crate) fn decode_prefix(r: &mut Reader<'_>, ipv6: bool) -> Result<IpNetwork, UpdateError> {
    let len = r.u8().ok_or(UpdateError::InvalidNetworkField)?;
    let max = if ipv6 { 128 } else { 32 };
    if len > max {
        return Err(UpdateError::InvalidNetworkField);
    }
    let nbytes = usize::from(len).div_ceil(8);
    let bytes = r.take(nbytes).ok_or(UpdateError::InvalidNetworkField)?;
    let net = if ipv6 {
        let mut a = [0u8; 16];
        a[..nbytes].copy_from_slice(bytes);
        let bits = u128::from_be_bytes(a) & mask_u128(len);
        Ipv6Network::new(Ipv6Addr::from(bits), len).map(IpNetwork::V6)
    } else {
        let mut a = [0u8; 4];
        a[..nbytes].copy_from_slice(bytes);
        let bits = u32::from_be_bytes(a) & mask_u32(len);
        Ipv4Network::new(Ipv4Addr::from(bits), len).map(IpNetwork::V4)
    };
    net.map_err(|_| UpdateError::InvalidNetworkField)
}

/// Decodes a run of prefixes that fills `buf` exactly.
pub(crate) fn decode_prefixes(buf: &[u8], ipv6: bool) -> Result<Vec<IpNetwork>, UpdateError> {
    let mut r = Reader::new(buf);
    // At most one prefix per byte: a bound on the allocation from untrusted input.
    let mut out = Vec::with_capacity(buf.len().min(4096) / 2);
    while !r.is_empty() {
        out.push(decode_prefix(&mut r, ipv6)?);
    }
    Ok(out)
}

/// Bytes a prefix takes on the wire.
pub(crate) fn encoded_prefix_len(prefix: &IpNetwork) -> usize {
    1 + usize::from(prefix.prefix()).div_ceil(8)
}

/// Appends one prefix.
pub(crate) fn encode_prefix(buf: &mut BytesMut, prefix: &IpNetwork) {
    let len = prefix.prefix();
    let nbytes = usize::from(len).div_ceil(8);
    buf.put_u8(len);
    match canonical(*prefix).ip() {
        IpAddr::V4(a) => buf.put_slice(&a.octets()[..nbytes.min(4)]),
        IpAddr::V6(a) => buf.put_slice(&a.octets()[..nbytes.min(16)]),
    }
}
