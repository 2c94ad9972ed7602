//! Plain per-session counters. The driver exports them (the agent owns the Prometheus
//! registry); this crate only increments.

use crate::message::{DecodeError, ErrorAction, MessageType};

/// Counts per message type.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct MessageCounts {
    /// OPEN messages.
    pub open: u64,
    /// UPDATE messages.
    pub update: u64,
    /// NOTIFICATION messages.
    pub notification: u64,
    /// KEEPALIVE messages.
    pub keepalive: u64,
    /// ROUTE-REFRESH messages.
    pub route_refresh: u64,
}

impl MessageCounts {
    /// Adds one message of `ty`.
    pub fn count(&mut self, ty: MessageType) {
        let c = match ty {
            MessageType::Open => &mut self.open,
            MessageType::Update => &mut self.update,
            MessageType::Notification => &mut self.notification,
            MessageType::Keepalive => &mut self.keepalive,
            MessageType::RouteRefresh => &mut self.route_refresh,
        };
        *c += 1;
    }

    /// All messages.
    pub fn total(&self) -> u64 {
        self.open + self.update + self.notification + self.keepalive + self.route_refresh
    }
}

/// Errors by the layer that found them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct ErrorCounts {
    /// Message header errors (NOTIFICATION code 1).
    pub header: u64,
    /// OPEN errors (code 2), decoding or validation.
    pub open: u64,
    /// UPDATE errors (code 3), any RFC 7606 action.
    pub update: u64,
    /// Hold timer expiries (code 4).
    pub hold_timer_expired: u64,
    /// Unexpected messages for the state (code 5).
    pub fsm: u64,
}

/// UPDATE errors by RFC 7606 action.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Rfc7606Counts {
    /// Attributes discarded.
    pub attribute_discard: u64,
    /// UPDATEs treated as withdraw.
    pub treat_as_withdraw: u64,
    /// Session resets.
    pub session_reset: u64,
}

impl Rfc7606Counts {
    /// Adds one error handled with `action`.
    pub fn count(&mut self, action: ErrorAction) {
        match action {
            ErrorAction::AttributeDiscard => self.attribute_discard += 1,
            ErrorAction::TreatAsWithdraw => self.treat_as_withdraw += 1,
            ErrorAction::SessionReset => self.session_reset += 1,
        }
    }
}

/// Everything counted for one session (monotonic across connections).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct SessionCounters {
    /// Messages received, by type.
    pub messages_in: MessageCounts,
    /// Messages sent, by type.
    pub messages_out: MessageCounts,
    /// Prefixes announced by the peer (including treat-as-withdraw ones).
    pub prefixes_received: u64,
    /// [`SessionCounters::prefixes_received`] by family: IPv4, IPv6 (unicast).
    pub prefixes_received_by_family: (u64, u64),
    /// Prefixes announced by the peer and reported as routes.
    pub prefixes_accepted: u64,
    /// Prefixes withdrawn by the peer.
    pub prefixes_withdrawn: u64,
    /// Prefixes announced to the peer.
    pub prefixes_sent: u64,
    /// Prefixes withdrawn towards the peer.
    pub withdrawals_sent: u64,
    /// Errors by kind.
    pub errors: ErrorCounts,
    /// UPDATE errors by RFC 7606 action.
    pub rfc7606: Rfc7606Counts,
    /// NOTIFICATIONs we sent.
    pub notifications_sent: u64,
    /// NOTIFICATIONs the peer sent.
    pub notifications_received: u64,
    /// Times the session reached Established.
    pub established: u64,
    /// Times the session left Established.
    pub dropped: u64,
}

impl SessionCounters {
    /// Counts a decode error under its layer.
    pub fn count_decode_error(&mut self, e: &DecodeError) {
        match e {
            DecodeError::Header(_) => self.errors.header += 1,
            DecodeError::Open(_) => self.errors.open += 1,
            DecodeError::Update(_) => {
                self.errors.update += 1;
                self.rfc7606.count(ErrorAction::SessionReset);
            }
        }
    }
}
