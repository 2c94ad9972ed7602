//! BGP-4 messages (RFC 4271 §4): framing, decoding and encoding.
//!
//! Framing is apart from parsing: [`frame_len`] finds one whole message in a byte stream
//! (an incomplete frame is `Ok(None)`, not an error), then [`Message::decode`] parses exactly
//! that frame. [`Message::encode`] appends a whole message, header included, to a `BytesMut`;
//! lengths are filled in after the body is written.
//!
//! ```text
//!  0                   1                   2                   3
//!  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |                                                               |
//! +                           Marker (16 x 0xff)                  +
//! |                                                               |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! |          Length               |      Type     |
//! +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
//! ```

mod attributes;
mod error;
mod nlri;
mod notification;
mod open;
mod route_refresh;
mod update;
pub(crate) mod wire;

use bytes::{BufMut, BytesMut};

pub use attributes::{
    AS_TRANS, Aggregator, AsPath, AsPathSegment, NextHop, Origin, PathAttributes, RawAttribute,
    SegmentType, attr_flags, attr_type,
};
pub use error::{DecodeError, ErrorAction, HeaderError, OpenError, UpdateError};
pub use nlri::Family;
pub(crate) use nlri::{canonical, encoded_prefix_len as nlri_len};
pub use notification::{Notification, cease, error_code};
pub use open::{Capability, GracefulRestart, GracefulRestartFamily, Open, capability_code};
pub use route_refresh::RouteRefresh;
pub use update::{AttributeFault, MpReach, MpUnreach, Update};

/// Length of the fixed message header (RFC 4271 §4.1).
pub const HEADER_LEN: usize = 19;
/// Largest message without the extended-message capability (RFC 4271 §4.1).
pub const MAX_MESSAGE_LEN: usize = 4096;
/// Largest message once extended messages are negotiated (RFC 8654 §4).
pub const MAX_EXTENDED_MESSAGE_LEN: usize = 65535;
/// BGP version spoken (RFC 4271 §4.2).
pub const BGP_VERSION: u8 = 4;

/// The message type octet (RFC 4271 §4.1, RFC 2918 §3).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
#[repr(u8)]
pub enum MessageType {
    /// OPEN (1).
    Open = 1,
    /// UPDATE (2).
    Update = 2,
    /// NOTIFICATION (3).
    Notification = 3,
    /// KEEPALIVE (4).
    Keepalive = 4,
    /// ROUTE-REFRESH (5, RFC 2918).
    RouteRefresh = 5,
}

impl MessageType {
    /// Parses the type octet.
    pub fn from_u8(value: u8) -> Option<Self> {
        Some(match value {
            1 => Self::Open,
            2 => Self::Update,
            3 => Self::Notification,
            4 => Self::Keepalive,
            5 => Self::RouteRefresh,
            _ => return None,
        })
    }
}

/// What was negotiated on a session and changes how messages look on the wire.
///
/// Before the OPEN exchange completes use [`CodecContext::default`]: 2-octet AS numbers,
/// 4096-byte messages.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct CodecContext {
    /// Both sides announced the 4-octet AS capability (RFC 6793): AS_PATH and AGGREGATOR
    /// carry 4-octet AS numbers and AS4_PATH/AS4_AGGREGATOR are not used.
    pub four_octet_as: bool,
    /// Both sides announced the extended message capability (RFC 8654): UPDATE, NOTIFICATION
    /// and ROUTE-REFRESH may be up to 65535 bytes.
    pub extended_messages: bool,
}

impl CodecContext {
    /// Largest UPDATE/NOTIFICATION/ROUTE-REFRESH this context allows (RFC 8654 §4).
    pub fn max_message_len(&self) -> usize {
        if self.extended_messages {
            MAX_EXTENDED_MESSAGE_LEN
        } else {
            MAX_MESSAGE_LEN
        }
    }
}

/// A BGP message.
// Messages are short-lived values on the stack; boxing the UPDATE would only add an
// allocation per message.
#[allow(clippy::large_enum_variant)]
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Message {
    /// OPEN (RFC 4271 §4.2).
    Open(Open),
    /// UPDATE (RFC 4271 §4.3).
    Update(Update),
    /// NOTIFICATION (RFC 4271 §4.5).
    Notification(Notification),
    /// KEEPALIVE (RFC 4271 §4.4): a header with no body.
    Keepalive,
    /// ROUTE-REFRESH (RFC 2918 §3).
    RouteRefresh(RouteRefresh),
}

/// Finds the length of the first whole message in `buf`.
///
/// Returns `Ok(None)` while fewer than a header's or a message's bytes are buffered, and
/// `Ok(Some(len))` once `buf[..len]` holds one message. The header is checked here (RFC 4271
/// §6.1: marker, length within `19..=max_len`, known type) so a stream that can never frame
/// is rejected before its body arrives. `max_len` is [`CodecContext::max_message_len`];
/// OPEN and KEEPALIVE are held to 4096 bytes regardless (RFC 8654 §4).
pub fn frame_len(buf: &[u8], max_len: usize) -> Result<Option<usize>, HeaderError> {
    if buf.len() < HEADER_LEN {
        // Check the part of the marker that has arrived: garbage fails fast.
        if buf.iter().take(16).any(|&b| b != 0xff) {
            return Err(HeaderError::ConnectionNotSynchronized);
        }
        return Ok(None);
    }
    if buf[..16].iter().any(|&b| b != 0xff) {
        return Err(HeaderError::ConnectionNotSynchronized);
    }
    let len = u16::from_be_bytes([buf[16], buf[17]]);
    let ty = buf[18];
    let Some(kind) = MessageType::from_u8(ty) else {
        return Err(HeaderError::BadType { message_type: ty });
    };
    let ulen = usize::from(len);
    let min = match kind {
        MessageType::Open => HEADER_LEN + 10,
        MessageType::Update => HEADER_LEN + 4,
        MessageType::Notification => HEADER_LEN + 2,
        MessageType::Keepalive => HEADER_LEN,
        MessageType::RouteRefresh => HEADER_LEN + 4,
    };
    let max = match kind {
        MessageType::Keepalive => HEADER_LEN,
        MessageType::Open => MAX_MESSAGE_LEN,
        MessageType::RouteRefresh => max_len.min(MAX_EXTENDED_MESSAGE_LEN),
        _ => max_len.min(MAX_EXTENDED_MESSAGE_LEN),
    };
    if ulen < min || ulen > max {
        return Err(HeaderError::BadLength { length: len });
    }
    if buf.len() < ulen {
        return Ok(None);
    }
    Ok(Some(ulen))
}

impl Message {
    /// The type octet of this message.
    pub fn message_type(&self) -> MessageType {
        match self {
            Message::Open(_) => MessageType::Open,
            Message::Update(_) => MessageType::Update,
            Message::Notification(_) => MessageType::Notification,
            Message::Keepalive => MessageType::Keepalive,
            Message::RouteRefresh(_) => MessageType::RouteRefresh,
        }
    }

    /// Decodes one whole message, header included (`frame` is what [`frame_len`] found).
    ///
    /// The header is re-validated, so `decode` is safe on any input. UPDATE errors that RFC
    /// 7606 resolves without a session reset (treat-as-withdraw, attribute-discard) decode
    /// successfully and are listed in [`Update::faults`].
    pub fn decode(frame: &[u8], ctx: &CodecContext) -> Result<Message, DecodeError> {
        let len = match frame_len(frame, ctx.max_message_len())? {
            Some(len) => len,
            None => {
                return Err(HeaderError::BadLength {
                    length: u16::try_from(frame.len()).unwrap_or(u16::MAX),
                }
                .into());
            }
        };
        if len != frame.len() {
            return Err(HeaderError::BadLength {
                length: u16::try_from(len).unwrap_or(u16::MAX),
            }
            .into());
        }
        let body = &frame[HEADER_LEN..];
        Ok(match frame[18] {
            1 => Message::Open(Open::decode(body)?),
            2 => Message::Update(Update::decode(body, ctx)?),
            3 => Message::Notification(Notification::decode(body)),
            4 => Message::Keepalive,
            5 => Message::RouteRefresh(RouteRefresh::decode(body)?),
            other => {
                return Err(HeaderError::BadType {
                    message_type: other,
                }
                .into());
            }
        })
    }

    /// Appends this message, header included, to `buf`.
    ///
    /// Encoding does not check size: a caller building UPDATEs keeps them within
    /// [`CodecContext::max_message_len`] (the session's Adj-RIB-Out packer does).
    pub fn encode(&self, buf: &mut BytesMut, ctx: &CodecContext) {
        let start = buf.len();
        buf.put_bytes(0xff, 16);
        buf.put_u16(0); // length, filled below
        buf.put_u8(self.message_type() as u8);
        match self {
            Message::Open(open) => open.encode_body(buf),
            Message::Update(update) => update.encode_body(buf, ctx),
            Message::Notification(notification) => notification.encode_body(buf),
            Message::Keepalive => {}
            Message::RouteRefresh(rr) => rr.encode_body(buf),
        }
        let len = u16::try_from(buf.len() - start).unwrap_or(u16::MAX);
        buf[start + 16..start + 18].copy_from_slice(&len.to_be_bytes());
    }

    /// Encodes this message into a fresh buffer.
    pub fn to_bytes(&self, ctx: &CodecContext) -> bytes::Bytes {
        let mut buf = BytesMut::new();
        self.encode(&mut buf, ctx);
        buf.freeze()
    }
}

/// Writes a length placeholder and returns its position, for [`fill_u16_len`].
pub(crate) fn put_u16_placeholder(buf: &mut BytesMut) -> usize {
    let pos = buf.len();
    buf.put_u16(0);
    pos
}

/// Fills the 2-byte length at `pos` with the number of bytes written after it.
pub(crate) fn fill_u16_len(buf: &mut BytesMut, pos: usize) {
    let len = u16::try_from(buf.len() - pos - 2).unwrap_or(u16::MAX);
    buf[pos..pos + 2].copy_from_slice(&len.to_be_bytes());
}
