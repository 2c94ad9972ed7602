//! NOTIFICATION message (RFC 4271 §4.5).
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! | Error code    | Error subcode |   Data (variable)             |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

use bytes::{BufMut, Bytes, BytesMut};

/// Error codes (RFC 4271 §4.5, RFC 7313 §5).
pub mod error_code {
    /// Message Header Error.
    pub const MESSAGE_HEADER: u8 = 1;
    /// OPEN Message Error.
    pub const OPEN_MESSAGE: u8 = 2;
    /// UPDATE Message Error.
    pub const UPDATE_MESSAGE: u8 = 3;
    /// Hold Timer Expired.
    pub const HOLD_TIMER_EXPIRED: u8 = 4;
    /// Finite State Machine Error.
    pub const FSM: u8 = 5;
    /// Cease.
    pub const CEASE: u8 = 6;
    /// ROUTE-REFRESH Message Error (RFC 7313).
    pub const ROUTE_REFRESH: u8 = 7;
}

/// Cease subcodes (RFC 4486 §4).
pub mod cease {
    /// Maximum number of prefixes reached.
    pub const MAX_PREFIXES: u8 = 1;
    /// Administrative shutdown.
    pub const ADMIN_SHUTDOWN: u8 = 2;
    /// Peer de-configured.
    pub const PEER_DECONFIGURED: u8 = 3;
    /// Administrative reset.
    pub const ADMIN_RESET: u8 = 4;
    /// Connection rejected.
    pub const CONNECTION_REJECTED: u8 = 5;
    /// Other configuration change.
    pub const CONFIGURATION_CHANGE: u8 = 6;
    /// Connection collision resolution (RFC 4271 §6.8).
    pub const CONNECTION_COLLISION: u8 = 7;
    /// Out of resources.
    pub const OUT_OF_RESOURCES: u8 = 8;
    /// BFD Down (RFC 9384): BFD found the forwarding path to the peer dead.
    pub const BFD_DOWN: u8 = 10;
}

/// A NOTIFICATION: the error that ends a session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct Notification {
    /// Error code ([`error_code`]).
    pub code: u8,
    /// Error subcode.
    pub subcode: u8,
    /// Diagnostic data, meaning depends on code/subcode.
    pub data: Bytes,
}

impl Notification {
    /// A NOTIFICATION with the given code, subcode and data.
    pub fn new(code: u8, subcode: u8, data: Bytes) -> Self {
        Self {
            code,
            subcode,
            data,
        }
    }

    /// Cease with a subcode from [`cease`] and no data.
    pub fn cease(subcode: u8) -> Self {
        Self::new(error_code::CEASE, subcode, Bytes::new())
    }

    /// Decodes the body. Any body of two or more bytes is a valid NOTIFICATION; the
    /// framing layer guarantees the two bytes.
    pub(crate) fn decode(body: &[u8]) -> Self {
        match body {
            [code, subcode, data @ ..] => Self::new(*code, *subcode, Bytes::copy_from_slice(data)),
            // Unreachable through frame_len (minimum length 21); keep decode total anyway.
            _ => Self::new(0, 0, Bytes::new()),
        }
    }

    pub(crate) fn encode_body(&self, buf: &mut BytesMut) {
        buf.put_u8(self.code);
        buf.put_u8(self.subcode);
        buf.put_slice(&self.data);
    }
}

impl std::fmt::Display for Notification {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self.code {
            error_code::MESSAGE_HEADER => "message header error",
            error_code::OPEN_MESSAGE => "OPEN message error",
            error_code::UPDATE_MESSAGE => "UPDATE message error",
            error_code::HOLD_TIMER_EXPIRED => "hold timer expired",
            error_code::FSM => "finite state machine error",
            error_code::CEASE => "cease",
            error_code::ROUTE_REFRESH => "ROUTE-REFRESH message error",
            _ => "unknown error",
        };
        match self.cease_reason() {
            Some(reason) => write!(f, "{name}: {reason} ({}/{})", self.code, self.subcode),
            None => write!(f, "{name} ({}/{})", self.code, self.subcode),
        }
    }
}

impl Notification {
    /// The RFC 4486 / RFC 9384 name of a Cease subcode, so a log line or `lastError` says
    /// why a session ended without a table lookup.
    fn cease_reason(&self) -> Option<&'static str> {
        if self.code != error_code::CEASE {
            return None;
        }
        Some(match self.subcode {
            cease::MAX_PREFIXES => "maximum number of prefixes reached",
            cease::ADMIN_SHUTDOWN => "administrative shutdown",
            cease::PEER_DECONFIGURED => "peer de-configured",
            cease::ADMIN_RESET => "administrative reset",
            cease::CONNECTION_REJECTED => "connection rejected",
            cease::CONFIGURATION_CHANGE => "other configuration change",
            cease::CONNECTION_COLLISION => "connection collision resolution",
            cease::OUT_OF_RESOURCES => "out of resources",
            cease::BFD_DOWN => "BFD down",
            _ => return None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_cease_names_its_subcode_and_other_errors_show_code_and_subcode() {
        assert_eq!(
            Notification::cease(cease::BFD_DOWN).to_string(),
            "cease: BFD down (6/10)"
        );
        assert_eq!(
            Notification::cease(cease::PEER_DECONFIGURED).to_string(),
            "cease: peer de-configured (6/3)"
        );
        assert_eq!(Notification::cease(99).to_string(), "cease (6/99)");
        assert_eq!(
            Notification::new(error_code::HOLD_TIMER_EXPIRED, 0, Bytes::new()).to_string(),
            "hold timer expired (4/0)"
        );
    }
}
