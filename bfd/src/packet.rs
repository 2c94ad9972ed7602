//! The BFD Control packet (RFC 5880 §4.1) and the checks of §6.8.6 that need nothing but
//! the packet itself.
//!
//! What this module owns: bytes ↔ [`ControlPacket`]. A packet that fails a check is
//! refused with a [`DecodeError`] naming the rule; the caller drops it and counts it
//! ([`DecodeError::metric_label`]) and no session ever sees it. The checks that need
//! session state (which session a Your Discriminator selects, whether authentication is
//! in use) live in [`crate::endpoint`].

use std::fmt;

/// Length of a Control packet without an authentication section (RFC 5880 §4.1).
pub const PACKET_LEN: usize = 24;

/// The only version RFC 5880 defines.
const VERSION: u8 = 1;

/// Smallest Length with the A bit set: the header plus Auth Type and Auth Len (§6.8.6).
const MIN_LEN_WITH_AUTH: usize = PACKET_LEN + 2;

/// Session state as carried in the Sta field (RFC 5880 §4.1, values in §4.1 "State").
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum State {
    /// 0: the session is held down by its administrator.
    AdminDown,
    /// 1: the session is down or just created.
    Down,
    /// 2: the remote end is talking, but we have not yet seen it see us.
    Init,
    /// 3: both ends see each other.
    Up,
}

impl State {
    /// The 2-bit wire value.
    pub fn to_wire(self) -> u8 {
        match self {
            State::AdminDown => 0,
            State::Down => 1,
            State::Init => 2,
            State::Up => 3,
        }
    }

    /// From the 2-bit wire value (higher bits are ignored).
    pub fn from_wire(value: u8) -> Self {
        match value & 0b11 {
            0 => State::AdminDown,
            1 => State::Down,
            2 => State::Init,
            _ => State::Up,
        }
    }

    /// Lower-case name for logs, metrics and status.
    pub fn name(self) -> &'static str {
        match self {
            State::AdminDown => "admin_down",
            State::Down => "down",
            State::Init => "init",
            State::Up => "up",
        }
    }
}

impl fmt::Display for State {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// The Diagnostic field (RFC 5880 §4.1 "Diagnostic"): why the session last left Up.
/// Five bits; values above 8 are reserved but kept as received.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Diag(u8);

impl Diag {
    /// 0: No Diagnostic.
    pub const NONE: Diag = Diag(0);
    /// 1: Control Detection Time Expired.
    pub const CONTROL_DETECTION_TIME_EXPIRED: Diag = Diag(1);
    /// 2: Echo Function Failed.
    pub const ECHO_FAILED: Diag = Diag(2);
    /// 3: Neighbor Signaled Session Down.
    pub const NEIGHBOR_SIGNALED_DOWN: Diag = Diag(3);
    /// 4: Forwarding Plane Reset.
    pub const FORWARDING_PLANE_RESET: Diag = Diag(4);
    /// 5: Path Down.
    pub const PATH_DOWN: Diag = Diag(5);
    /// 6: Concatenated Path Down.
    pub const CONCATENATED_PATH_DOWN: Diag = Diag(6);
    /// 7: Administratively Down.
    pub const ADMIN_DOWN: Diag = Diag(7);
    /// 8: Reverse Concatenated Path Down.
    pub const REVERSE_CONCATENATED_PATH_DOWN: Diag = Diag(8);

    /// From the field's value; only the low five bits count.
    pub fn from_wire(value: u8) -> Self {
        Diag(value & 0x1f)
    }

    /// The 5-bit wire value.
    pub fn to_wire(self) -> u8 {
        self.0
    }

    /// Name for logs, metrics and status.
    pub fn name(self) -> &'static str {
        match self.0 {
            0 => "none",
            1 => "control_detection_time_expired",
            2 => "echo_failed",
            3 => "neighbor_signaled_down",
            4 => "forwarding_plane_reset",
            5 => "path_down",
            6 => "concatenated_path_down",
            7 => "admin_down",
            8 => "reverse_concatenated_path_down",
            _ => "reserved",
        }
    }
}

impl fmt::Display for Diag {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.name())
    }
}

/// A BFD Control packet without authentication (RFC 5880 §4.1).
///
/// ```text
///  0                   1                   2                   3
///  0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1 2 3 4 5 6 7 8 9 0 1
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |Vers |  Diag   |Sta|P|F|C|A|D|M|  Detect Mult  |    Length     |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                       My Discriminator                        |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                      Your Discriminator                       |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                    Desired Min TX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                   Required Min RX Interval                    |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// |                 Required Min Echo RX Interval                 |
/// +-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+-+
/// ```
///
/// Intervals are in microseconds, as on the wire. The A (authentication) and M
/// (multipoint) bits are not fields: a packet with either set is refused by
/// [`ControlPacket::decode`] and never encoded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ControlPacket {
    /// Diag: the reason of the sender's last change away from Up.
    pub diag: Diag,
    /// Sta: the sender's session state.
    pub state: State,
    /// P: the sender asks for a Final (poll sequence, §6.5).
    pub poll: bool,
    /// F: the answer to a Poll.
    pub final_: bool,
    /// C: Control Plane Independent; the sender's BFD survives its control plane (§4.1).
    pub control_plane_independent: bool,
    /// D: the sender wants Demand mode (not implemented here: always sent clear).
    pub demand: bool,
    /// Detect Mult: how many intervals without a packet make the sender's peer declare
    /// the session down.
    pub detect_mult: u8,
    /// My Discriminator: the sender's id of the session (never 0).
    pub my_discr: u32,
    /// Your Discriminator: the receiver's id as last heard, or 0 if unknown.
    pub your_discr: u32,
    /// Desired Min TX Interval (µs).
    pub desired_min_tx: u32,
    /// Required Min RX Interval (µs); 0 means "send me nothing".
    pub required_min_rx: u32,
    /// Required Min Echo RX Interval (µs); 0: the sender takes no Echo packets.
    pub required_min_echo_rx: u32,
}

/// Why a received Control packet was discarded (RFC 5880 §6.8.6, in the order the RFC
/// checks). Each one is counted under its [`DecodeError::metric_label`].
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum DecodeError {
    /// Fewer bytes than a Control packet's fixed part.
    #[error("datagram of {0} bytes is shorter than a BFD Control packet (24)")]
    Truncated(usize),
    /// The version is not 1.
    #[error("BFD version {0}, only version 1 is spoken")]
    Version(u8),
    /// Length is below 24 (26 with the A bit).
    #[error("Length field {0} is below the minimum")]
    LengthTooShort(u8),
    /// Length claims more bytes than the datagram holds.
    #[error("Length field {length} exceeds the {datagram}-byte datagram")]
    LengthBeyondDatagram {
        /// The Length field.
        length: u8,
        /// Bytes received.
        datagram: usize,
    },
    /// Detect Mult is zero.
    #[error("Detect Mult is zero")]
    DetectMultZero,
    /// The Multipoint bit is set.
    #[error("Multipoint (M) bit set")]
    Multipoint,
    /// My Discriminator is zero.
    #[error("My Discriminator is zero")]
    MyDiscriminatorZero,
    /// Your Discriminator is zero while the sender is neither Down nor AdminDown.
    #[error("Your Discriminator is zero in state {0}")]
    YourDiscriminatorZero(State),
    /// The A bit is set, and authentication is not in use on any session here.
    #[error("authentication present but not in use")]
    AuthenticationNotInUse,
}

impl DecodeError {
    /// Stable label for the drop counter.
    pub fn metric_label(self) -> &'static str {
        match self {
            DecodeError::Truncated(_) => "truncated",
            DecodeError::Version(_) => "version",
            DecodeError::LengthTooShort(_) => "length_too_short",
            DecodeError::LengthBeyondDatagram { .. } => "length_beyond_datagram",
            DecodeError::DetectMultZero => "detect_mult_zero",
            DecodeError::Multipoint => "multipoint",
            DecodeError::MyDiscriminatorZero => "my_discriminator_zero",
            DecodeError::YourDiscriminatorZero(_) => "your_discriminator_zero",
            DecodeError::AuthenticationNotInUse => "authentication_not_in_use",
        }
    }
}

const BIT_POLL: u8 = 0x20;
const BIT_FINAL: u8 = 0x10;
const BIT_CPI: u8 = 0x08;
const BIT_AUTH: u8 = 0x04;
const BIT_DEMAND: u8 = 0x02;
const BIT_MULTIPOINT: u8 = 0x01;

impl ControlPacket {
    /// Parses one datagram's payload and applies the packet-only checks of RFC 5880
    /// §6.8.6. Authentication is off everywhere, so a packet with the A bit is refused
    /// (§6.8.6: "If the A bit is set and no authentication is in use ... discarded").
    /// Bytes past Length are ignored.
    pub fn decode(datagram: &[u8]) -> Result<Self, DecodeError> {
        let Some(fixed) = datagram.first_chunk::<PACKET_LEN>() else {
            // The version is checked first when there is a first byte, so a short packet
            // of another version is counted as a version error, as the RFC orders it.
            if let Some(&b) = datagram.first()
                && b >> 5 != VERSION
            {
                return Err(DecodeError::Version(b >> 5));
            }
            return Err(DecodeError::Truncated(datagram.len()));
        };
        let version = fixed[0] >> 5;
        if version != VERSION {
            return Err(DecodeError::Version(version));
        }
        let flags = fixed[1];
        let length = fixed[3];
        let min_len = if flags & BIT_AUTH != 0 {
            MIN_LEN_WITH_AUTH
        } else {
            PACKET_LEN
        };
        if usize::from(length) < min_len {
            return Err(DecodeError::LengthTooShort(length));
        }
        if usize::from(length) > datagram.len() {
            return Err(DecodeError::LengthBeyondDatagram {
                length,
                datagram: datagram.len(),
            });
        }
        let detect_mult = fixed[2];
        if detect_mult == 0 {
            return Err(DecodeError::DetectMultZero);
        }
        if flags & BIT_MULTIPOINT != 0 {
            return Err(DecodeError::Multipoint);
        }
        let word =
            |i: usize| u32::from_be_bytes([fixed[i], fixed[i + 1], fixed[i + 2], fixed[i + 3]]);
        let my_discr = word(4);
        if my_discr == 0 {
            return Err(DecodeError::MyDiscriminatorZero);
        }
        let state = State::from_wire(flags >> 6);
        let your_discr = word(8);
        if your_discr == 0 && !matches!(state, State::Down | State::AdminDown) {
            return Err(DecodeError::YourDiscriminatorZero(state));
        }
        if flags & BIT_AUTH != 0 {
            return Err(DecodeError::AuthenticationNotInUse);
        }
        Ok(ControlPacket {
            diag: Diag::from_wire(fixed[0]),
            state,
            poll: flags & BIT_POLL != 0,
            final_: flags & BIT_FINAL != 0,
            control_plane_independent: flags & BIT_CPI != 0,
            demand: flags & BIT_DEMAND != 0,
            detect_mult,
            my_discr,
            your_discr,
            desired_min_tx: word(12),
            required_min_rx: word(16),
            required_min_echo_rx: word(20),
        })
    }

    /// The 24 bytes on the wire (Length 24, A and M clear).
    pub fn encode(&self) -> [u8; PACKET_LEN] {
        let mut out = [0u8; PACKET_LEN];
        out[0] = (VERSION << 5) | self.diag.to_wire();
        out[1] = (self.state.to_wire() << 6)
            | if self.poll { BIT_POLL } else { 0 }
            | if self.final_ { BIT_FINAL } else { 0 }
            | if self.control_plane_independent {
                BIT_CPI
            } else {
                0
            }
            | if self.demand { BIT_DEMAND } else { 0 };
        out[2] = self.detect_mult;
        out[3] = PACKET_LEN as u8;
        out[4..8].copy_from_slice(&self.my_discr.to_be_bytes());
        out[8..12].copy_from_slice(&self.your_discr.to_be_bytes());
        out[12..16].copy_from_slice(&self.desired_min_tx.to_be_bytes());
        out[16..20].copy_from_slice(&self.required_min_rx.to_be_bytes());
        out[20..24].copy_from_slice(&self.required_min_echo_rx.to_be_bytes());
        out
    }
}

#[cfg(test)]
#[path = "packet_tests.rs"]
mod tests;
