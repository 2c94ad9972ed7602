//! ROUTE-REFRESH message (RFC 2918 §3).
//!
//! ```text
//!  0       7      15      23      31
//! +-------+-------+-------+-------+
//! |      AFI      | Res.  | SAFI  |
//! +-------+-------+-------+-------+
//! ```

use bytes::{BufMut, BytesMut};

use super::error::HeaderError;
use super::nlri::Family;
use super::wire::Reader;

/// A request to re-send the Adj-RIB-Out for one family.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RouteRefresh {
    /// The family to refresh.
    pub family: Family,
    /// The reserved octet (RFC 7313 uses it as a subtype: 0 request, 1 BoRR, 2 EoRR).
    pub subtype: u8,
}

impl RouteRefresh {
    pub(crate) fn decode(body: &[u8]) -> Result<Self, HeaderError> {
        let mut r = Reader::new(body);
        let bad = HeaderError::BadLength {
            length: u16::try_from(body.len() + super::HEADER_LEN).unwrap_or(u16::MAX),
        };
        if body.len() != 4 {
            return Err(bad);
        }
        let afi = r.u16().ok_or(bad)?;
        let subtype = r.u8().ok_or(bad)?;
        let safi = r.u8().ok_or(bad)?;
        Ok(Self {
            family: Family { afi, safi },
            subtype,
        })
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u16(self.family.afi);
        buf.put_u8(self.subtype);
        buf.put_u8(self.family.safi);
    }
}
