//! Decode errors, one type per layer, each mapped to the NOTIFICATION it causes
//! (RFC 4271 §6) and, for UPDATE attribute errors, to its RFC 7606 action.

use bytes::Bytes;
use thiserror::Error;

use super::notification::{Notification, error_code};

/// Message header errors (RFC 4271 §6.1), NOTIFICATION code 1.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum HeaderError {
    /// The marker is not all ones (subcode 1).
    #[error("message header marker is not all ones")]
    ConnectionNotSynchronized,
    /// The length is out of range for the type (subcode 2).
    #[error("bad message length {length}")]
    BadLength {
        /// The offending length field.
        length: u16,
    },
    /// Unknown message type (subcode 3).
    #[error("bad message type {message_type}")]
    BadType {
        /// The offending type octet.
        message_type: u8,
    },
}

impl HeaderError {
    /// The NOTIFICATION to send (RFC 4271 §6.1: data is the length or the type).
    pub fn notification(&self) -> Notification {
        let code = error_code::MESSAGE_HEADER;
        match *self {
            HeaderError::ConnectionNotSynchronized => Notification::new(code, 1, Bytes::new()),
            HeaderError::BadLength { length } => {
                Notification::new(code, 2, Bytes::copy_from_slice(&length.to_be_bytes()))
            }
            HeaderError::BadType { message_type } => {
                Notification::new(code, 3, Bytes::copy_from_slice(&[message_type]))
            }
        }
    }
}

/// OPEN message errors (RFC 4271 §6.2), NOTIFICATION code 2.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum OpenError {
    /// Optional parameters or capabilities overrun the message (subcode 0, unspecific).
    #[error("malformed OPEN optional parameters")]
    Malformed,
    /// Version is not 4 (subcode 1; data is the version we support).
    #[error("unsupported BGP version {version}")]
    UnsupportedVersion {
        /// Version the peer offered.
        version: u8,
    },
    /// The peer's AS is not the configured one (subcode 2).
    #[error("peer AS {received} is not the expected AS")]
    BadPeerAs {
        /// AS the peer announced (4-octet if it sent the capability).
        received: u32,
    },
    /// BGP identifier is zero, or equal to ours on an iBGP session (subcode 3, RFC 6286).
    #[error("bad BGP identifier")]
    BadBgpIdentifier,
    /// An optional parameter other than capabilities (subcode 4).
    #[error("unsupported optional parameter {param_type}")]
    UnsupportedOptionalParameter {
        /// The parameter type.
        param_type: u8,
    },
    /// Hold time of 1 or 2 seconds (subcode 6).
    #[error("unacceptable hold time {hold_time}")]
    UnacceptableHoldTime {
        /// Hold time the peer proposed.
        hold_time: u16,
    },
    /// A capability we require was not offered (subcode 7, RFC 5492 §5).
    #[error("required capability {code} not supported by the peer")]
    UnsupportedCapability {
        /// The capability code we require.
        code: u8,
    },
}

impl OpenError {
    /// The NOTIFICATION to send (RFC 4271 §6.2, RFC 5492 §5).
    pub fn notification(&self) -> Notification {
        let code = error_code::OPEN_MESSAGE;
        match *self {
            OpenError::Malformed => Notification::new(code, 0, Bytes::new()),
            OpenError::UnsupportedVersion { .. } => {
                Notification::new(code, 1, Bytes::copy_from_slice(&[0, super::BGP_VERSION]))
            }
            OpenError::BadPeerAs { .. } => Notification::new(code, 2, Bytes::new()),
            OpenError::BadBgpIdentifier => Notification::new(code, 3, Bytes::new()),
            OpenError::UnsupportedOptionalParameter { .. } => {
                Notification::new(code, 4, Bytes::new())
            }
            OpenError::UnacceptableHoldTime { .. } => Notification::new(code, 6, Bytes::new()),
            OpenError::UnsupportedCapability { code: cap } => {
                // Data: the capability we wanted, as a capability TLV with no value.
                Notification::new(code, 7, Bytes::copy_from_slice(&[cap, 0]))
            }
        }
    }
}

/// How an UPDATE error is handled (RFC 7606 §2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ErrorAction {
    /// Drop the malformed attribute, keep the routes (RFC 7606 §2 "attribute discard").
    AttributeDiscard,
    /// Treat every prefix in the UPDATE as withdrawn (RFC 7606 §2 "treat-as-withdraw").
    TreatAsWithdraw,
    /// Send NOTIFICATION and close the session (RFC 4271 §6.3, RFC 7606 §2 "session reset").
    SessionReset,
}

/// UPDATE message errors (RFC 4271 §6.3), NOTIFICATION code 3.
///
/// `type_code` fields name the path attribute involved.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum UpdateError {
    /// Withdrawn/attribute lengths inconsistent with the message (subcode 1).
    #[error("malformed attribute list")]
    MalformedAttributeList,
    /// A well-known attribute we do not know (subcode 2).
    #[error("unrecognized well-known attribute {type_code}")]
    UnrecognizedWellKnown {
        /// Attribute type code.
        type_code: u8,
    },
    /// A mandatory well-known attribute is missing while NLRI is present (subcode 3).
    #[error("missing well-known attribute {type_code}")]
    MissingWellKnown {
        /// Attribute type code.
        type_code: u8,
    },
    /// Attribute flags conflict with the type (subcode 4).
    #[error("attribute {type_code} has wrong flags")]
    AttributeFlags {
        /// Attribute type code.
        type_code: u8,
    },
    /// Attribute length wrong for the type (subcode 5).
    #[error("attribute {type_code} has a bad length")]
    AttributeLength {
        /// Attribute type code.
        type_code: u8,
    },
    /// ORIGIN value not 0, 1 or 2 (subcode 6).
    #[error("invalid ORIGIN value {value}")]
    InvalidOrigin {
        /// The value received.
        value: u8,
    },
    /// NEXT_HOP (or MP_REACH next hop) is not a usable address (subcode 8).
    #[error("invalid next hop in attribute {type_code}")]
    InvalidNextHop {
        /// NEXT_HOP (3) or MP_REACH_NLRI (14).
        type_code: u8,
    },
    /// An optional attribute's value is malformed (subcode 9).
    #[error("optional attribute {type_code} is malformed")]
    OptionalAttribute {
        /// Attribute type code.
        type_code: u8,
    },
    /// A prefix in NLRI or withdrawn routes cannot be parsed (subcode 10).
    #[error("invalid network field")]
    InvalidNetworkField,
    /// AS_PATH (or AS4_PATH) segments malformed (subcode 11).
    #[error("malformed AS path in attribute {type_code}")]
    MalformedAsPath {
        /// AS_PATH (2) or AS4_PATH (17).
        type_code: u8,
    },
    /// The same attribute appears twice (RFC 7606 §3.g; subcode 1 when it resets).
    #[error("attribute {type_code} appears more than once")]
    DuplicateAttribute {
        /// Attribute type code.
        type_code: u8,
    },
}

impl UpdateError {
    /// The NOTIFICATION subcode (RFC 4271 §6.3).
    pub fn subcode(&self) -> u8 {
        match self {
            UpdateError::MalformedAttributeList | UpdateError::DuplicateAttribute { .. } => 1,
            UpdateError::UnrecognizedWellKnown { .. } => 2,
            UpdateError::MissingWellKnown { .. } => 3,
            UpdateError::AttributeFlags { .. } => 4,
            UpdateError::AttributeLength { .. } => 5,
            UpdateError::InvalidOrigin { .. } => 6,
            UpdateError::InvalidNextHop { .. } => 8,
            UpdateError::OptionalAttribute { .. } => 9,
            UpdateError::InvalidNetworkField => 10,
            UpdateError::MalformedAsPath { .. } => 11,
        }
    }

    /// The path attribute the error is about, if it is about one.
    pub fn type_code(&self) -> Option<u8> {
        match *self {
            UpdateError::MalformedAttributeList | UpdateError::InvalidNetworkField => None,
            UpdateError::InvalidOrigin { .. } => Some(super::attr_type::ORIGIN),
            UpdateError::UnrecognizedWellKnown { type_code }
            | UpdateError::MissingWellKnown { type_code }
            | UpdateError::AttributeFlags { type_code }
            | UpdateError::AttributeLength { type_code }
            | UpdateError::InvalidNextHop { type_code }
            | UpdateError::OptionalAttribute { type_code }
            | UpdateError::MalformedAsPath { type_code }
            | UpdateError::DuplicateAttribute { type_code } => Some(type_code),
        }
    }

    /// The NOTIFICATION to send when this error resets the session.
    pub fn notification(&self) -> Notification {
        let data = match self {
            UpdateError::MissingWellKnown { type_code } => Bytes::copy_from_slice(&[*type_code]),
            _ => Bytes::new(),
        };
        Notification::new(error_code::UPDATE_MESSAGE, self.subcode(), data)
    }
}

/// Any error decoding a message: the layer it came from says which NOTIFICATION to send.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Error)]
pub enum DecodeError {
    /// Message header error.
    #[error(transparent)]
    Header(#[from] HeaderError),
    /// OPEN error.
    #[error(transparent)]
    Open(#[from] OpenError),
    /// UPDATE error that resets the session (RFC 7606 session-reset).
    #[error(transparent)]
    Update(#[from] UpdateError),
}

impl DecodeError {
    /// The NOTIFICATION to send before closing.
    pub fn notification(&self) -> Notification {
        match self {
            DecodeError::Header(e) => e.notification(),
            DecodeError::Open(e) => e.notification(),
            DecodeError::Update(e) => e.notification(),
        }
    }
}
