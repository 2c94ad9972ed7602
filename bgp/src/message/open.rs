//! OPEN message (RFC 4271 §4.2) and capabilities (RFC 5492).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+
//! |    Version    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |     My Autonomous System      |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |           Hold Time           |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                         BGP Identifier                        |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Opt Parm Len  |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |             Optional Parameters (variable)                    |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```
//!
//! Capabilities are decoded from every capabilities parameter (type 2) in order and
//! re-encoded in a single parameter (as BIRD and GoBGP do; FRR sends one parameter per
//! capability, which therefore re-encodes to different but equivalent bytes).

use std::net::Ipv4Addr;

use bytes::{BufMut, Bytes, BytesMut};

use super::BGP_VERSION;
use super::attributes::AS_TRANS;
use super::error::OpenError;
use super::nlri::Family;
use super::wire::Reader;

/// Capability codes (IANA "Capability Codes" registry).
pub mod capability_code {
    /// Multiprotocol extensions (RFC 4760).
    pub const MULTIPROTOCOL: u8 = 1;
    /// Route refresh (RFC 2918).
    pub const ROUTE_REFRESH: u8 = 2;
    /// Extended message (RFC 8654).
    pub const EXTENDED_MESSAGE: u8 = 6;
    /// Graceful restart (RFC 4724).
    pub const GRACEFUL_RESTART: u8 = 64;
    /// 4-octet AS numbers (RFC 6793).
    pub const FOUR_OCTET_AS: u8 = 65;
}

/// Optional parameter type carrying capabilities (RFC 5492 §4).
const PARAM_CAPABILITIES: u8 = 2;

/// One family in the graceful restart capability (RFC 4724 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartFamily {
    /// The family.
    pub family: Family,
    /// Flags for the family; 0x80 = forwarding state preserved.
    pub flags: u8,
}

/// The graceful restart capability (RFC 4724 §3). Encoded and decoded only; the restart
/// behaviour belongs to the driver.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct GracefulRestart {
    /// Restart flags, the top 4 bits of the first octet (0x8 = Restart State,
    /// 0x4 = Notification support, RFC 8538).
    pub flags: u8,
    /// Restart time in seconds (12 bits).
    pub restart_time: u16,
    /// Families whose forwarding state the speaker can preserve.
    pub families: Vec<GracefulRestartFamily>,
}

/// A capability advertised in OPEN (RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Capability {
    /// Multiprotocol extensions for one family (RFC 4760 §8).
    Multiprotocol(Family),
    /// Route refresh (RFC 2918 §2).
    RouteRefresh,
    /// Extended messages up to 65535 bytes (RFC 8654 §3).
    ExtendedMessage,
    /// Graceful restart (RFC 4724 §3).
    GracefulRestart(GracefulRestart),
    /// The speaker's 4-octet AS number (RFC 6793 §3).
    FourOctetAs(u32),
    /// A capability this crate does not interpret, or a known one with a malformed
    /// length, kept as received.
    Unknown {
        /// Capability code.
        code: u8,
        /// Capability value.
        value: Bytes,
    },
}

impl Capability {
    fn decode(code: u8, value: &[u8]) -> Capability {
        let mut r = Reader::new(value);
        let known = match (code, value.len()) {
            (capability_code::MULTIPROTOCOL, 4) => (|| {
                let afi = r.u16()?;
                let _reserved = r.u8()?;
                let safi = r.u8()?;
                Some(Capability::Multiprotocol(Family { afi, safi }))
            })(),
            (capability_code::ROUTE_REFRESH, 0) => Some(Capability::RouteRefresh),
            (capability_code::EXTENDED_MESSAGE, 0) => Some(Capability::ExtendedMessage),
            (capability_code::FOUR_OCTET_AS, 4) => r.u32().map(Capability::FourOctetAs),
            (capability_code::GRACEFUL_RESTART, n) if n >= 2 && (n - 2) % 4 == 0 => (|| {
                let head = r.u16()?;
                let mut families = Vec::with_capacity((n - 2) / 4);
                while !r.is_empty() {
                    let afi = r.u16()?;
                    let safi = r.u8()?;
                    let flags = r.u8()?;
                    families.push(GracefulRestartFamily {
                        family: Family { afi, safi },
                        flags,
                    });
                }
                Some(Capability::GracefulRestart(GracefulRestart {
                    flags: (head >> 12) as u8,
                    restart_time: head & 0x0fff,
                    families,
                }))
            })(
            ),
            _ => None,
        };
        known.unwrap_or_else(|| Capability::Unknown {
            code,
            value: Bytes::copy_from_slice(value),
        })
    }

    fn encode(&self, buf: &mut BytesMut) {
        match self {
            Capability::Multiprotocol(f) => {
                buf.put_slice(&[capability_code::MULTIPROTOCOL, 4]);
                buf.put_u16(f.afi);
                buf.put_u8(0);
                buf.put_u8(f.safi);
            }
            Capability::RouteRefresh => buf.put_slice(&[capability_code::ROUTE_REFRESH, 0]),
            Capability::ExtendedMessage => {
                buf.put_slice(&[capability_code::EXTENDED_MESSAGE, 0]);
            }
            Capability::FourOctetAs(asn) => {
                buf.put_slice(&[capability_code::FOUR_OCTET_AS, 4]);
                buf.put_u32(*asn);
            }
            Capability::GracefulRestart(gr) => {
                // Capability values are at most 255 bytes: 63 families fit.
                let families = &gr.families[..gr.families.len().min(63)];
                buf.put_u8(capability_code::GRACEFUL_RESTART);
                buf.put_u8((2 + 4 * families.len()) as u8);
                buf.put_u16((u16::from(gr.flags & 0x0f) << 12) | (gr.restart_time & 0x0fff));
                for f in families {
                    buf.put_u16(f.family.afi);
                    buf.put_u8(f.family.safi);
                    buf.put_u8(f.flags);
                }
            }
            Capability::Unknown { code, value } => {
                let value = &value[..value.len().min(255)];
                buf.put_u8(*code);
                buf.put_u8(value.len() as u8);
                buf.put_slice(value);
            }
        }
    }
}

/// An OPEN message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Open {
    /// The 2-octet "My Autonomous System" field: the AS, or AS_TRANS (23456) when the
    /// AS needs 4 octets (RFC 6793 §4.1). See [`Open::asn`].
    pub my_as: u16,
    /// Proposed hold time in seconds (0, or at least 3).
    pub hold_time: u16,
    /// BGP identifier.
    pub bgp_id: Ipv4Addr,
    /// Capabilities, in the order received.
    pub capabilities: Vec<Capability>,
}

impl Open {
    /// An OPEN for `asn` (4-octet AS numbers go in the capability and AS_TRANS in the
    /// 2-octet field; the [`Capability::FourOctetAs`] capability is added if missing).
    pub fn new(
        asn: u32,
        hold_time: u16,
        bgp_id: Ipv4Addr,
        mut capabilities: Vec<Capability>,
    ) -> Self {
        if !capabilities
            .iter()
            .any(|c| matches!(c, Capability::FourOctetAs(_)))
        {
            capabilities.push(Capability::FourOctetAs(asn));
        }
        Self {
            my_as: u16::try_from(asn).unwrap_or(AS_TRANS),
            hold_time,
            bgp_id,
            capabilities,
        }
    }

    /// The speaker's AS: from the 4-octet AS capability when present, else `my_as`.
    pub fn asn(&self) -> u32 {
        self.four_octet_as().unwrap_or(u32::from(self.my_as))
    }

    /// The AS from the 4-octet AS capability, if sent.
    pub fn four_octet_as(&self) -> Option<u32> {
        self.capabilities.iter().find_map(|c| match c {
            Capability::FourOctetAs(asn) => Some(*asn),
            _ => None,
        })
    }

    /// True if the capability list holds one equal to `cap`.
    pub fn has_capability(&self, cap: &Capability) -> bool {
        self.capabilities.contains(cap)
    }

    /// Families announced with the multiprotocol capability. RFC 4760 §8: a speaker that
    /// announces none supports IPv4 unicast only.
    pub fn families(&self) -> Vec<Family> {
        let families: Vec<Family> = self
            .capabilities
            .iter()
            .filter_map(|c| match c {
                Capability::Multiprotocol(f) => Some(*f),
                _ => None,
            })
            .collect();
        if families.is_empty() {
            vec![Family::IPV4_UNICAST]
        } else {
            families
        }
    }

    pub(crate) fn decode(body: &[u8]) -> Result<Open, OpenError> {
        let mut r = Reader::new(body);
        let version = r.u8().ok_or(OpenError::Malformed)?;
        if version != BGP_VERSION {
            return Err(OpenError::UnsupportedVersion { version });
        }
        let my_as = r.u16().ok_or(OpenError::Malformed)?;
        let hold_time = r.u16().ok_or(OpenError::Malformed)?;
        let bgp_id = Ipv4Addr::from(r.u32().ok_or(OpenError::Malformed)?);
        let opt_len = r.u8().ok_or(OpenError::Malformed)?;
        // RFC 9072: a length of 255 with a first parameter type of 255 means extended
        // optional parameters with 2-octet lengths.
        let extended = opt_len == 255 && r.rest().first() == Some(&255);
        let params = if extended {
            let _marker = r.u8();
            let len = r.u16().ok_or(OpenError::Malformed)?;
            r.take(usize::from(len)).ok_or(OpenError::Malformed)?
        } else {
            r.take(usize::from(opt_len)).ok_or(OpenError::Malformed)?
        };
        if !r.is_empty() {
            return Err(OpenError::Malformed);
        }
        let mut capabilities = Vec::new();
        let mut pr = Reader::new(params);
        while !pr.is_empty() {
            let param_type = pr.u8().ok_or(OpenError::Malformed)?;
            let len = if extended {
                usize::from(pr.u16().ok_or(OpenError::Malformed)?)
            } else {
                usize::from(pr.u8().ok_or(OpenError::Malformed)?)
            };
            let value = pr.take(len).ok_or(OpenError::Malformed)?;
            if param_type != PARAM_CAPABILITIES {
                return Err(OpenError::UnsupportedOptionalParameter { param_type });
            }
            let mut cr = Reader::new(value);
            while !cr.is_empty() {
                let code = cr.u8().ok_or(OpenError::Malformed)?;
                let len = cr.u8().ok_or(OpenError::Malformed)?;
                let value = cr.take(usize::from(len)).ok_or(OpenError::Malformed)?;
                capabilities.push(Capability::decode(code, value));
            }
        }
        Ok(Open {
            my_as,
            hold_time,
            bgp_id,
            capabilities,
        })
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(BGP_VERSION);
        buf.put_u16(self.my_as);
        buf.put_u16(self.hold_time);
        buf.put_u32(u32::from(self.bgp_id));
        let mut caps = BytesMut::new();
        for c in &self.capabilities {
            c.encode(&mut caps);
        }
        if caps.is_empty() {
            buf.put_u8(0);
            return;
        }
        // One capabilities parameter holds at most 255 bytes; split on capability
        // boundaries if more (never the case for what this crate sends).
        let mut params = BytesMut::new();
        let mut chunk = BytesMut::new();
        for c in &self.capabilities {
            let mut one = BytesMut::new();
            c.encode(&mut one);
            if chunk.len() + one.len() > 255 {
                params.put_u8(PARAM_CAPABILITIES);
                params.put_u8(chunk.len() as u8);
                params.put_slice(&chunk);
                chunk.clear();
            }
            chunk.put_slice(&one);
        }
        params.put_u8(PARAM_CAPABILITIES);
        params.put_u8(chunk.len() as u8);
        params.put_slice(&chunk);
        buf.put_u8(u8::try_from(params.len()).unwrap_or(u8::MAX));
        buf.put_slice(&params);
    }
}
