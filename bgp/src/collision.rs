//! Connection collision resolution (RFC 4271 §6.8).
//!
//! When both speakers connect at once there are two TCP connections for one peer. The
//! session is per connection, so a driver that allows an incoming connection while its
//! own outgoing one is open runs two [`crate::session::Session`]s for the peer, one per
//! connection, and resolves the collision like this:
//!
//! 1. Ask [`incoming`] with the session's state. In Connect/Active hand the connection
//!    to the session. In Idle or Established close it: an established session wins a
//!    collision (§6.8).
//! 2. In OpenSent/OpenConfirm (both sides connected at once), start a second session
//!    for the incoming connection (same config with `passive = true`, `Start`,
//!    `handle_connected`) and give it the same routes (`replace_routes`): each session
//!    has its own Adj-RIB-Out. As soon as either session learns the peer's BGP
//!    identifier (it reaches OpenConfirm: the driver sees `Action::StateChanged { to:
//!    OpenConfirm, .. }` and [`crate::session::Session::remote_id`] is set) while the
//!    other is in OpenSent or OpenConfirm, call [`resolve`] with the two identifiers.
//! 3. Call [`crate::session::Session::close_collision`] on the loser (it sends
//!    NOTIFICATION Cease/Connection Collision Resolution and asks to disconnect) and
//!    drop it; keep the winner.

use std::net::Ipv4Addr;

use crate::session::State;

/// What to do with an incoming connection from a configured peer, given the state of
/// that peer's session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Incoming {
    /// Hand it to the session with `handle_connected` (Connect or Active). In Connect,
    /// abandon the outgoing attempt still in progress.
    Accept,
    /// Close it: the session is Idle (RFC 4271 §8.2.2 refuses connections in Idle) or
    /// already Established (§6.8: the established connection wins).
    Reject,
    /// Both sides connected at once: run a second, passive session on it and resolve with
    /// [`resolve`] once the peer's BGP identifier is known (steps 2 and 3 above).
    Collide,
}

/// Decides what to do with an incoming connection (see [`Incoming`]).
///
/// A driver can avoid most collisions in a full mesh by letting only the side with the
/// higher BGP identifier connect out (the other `passive`), since the identifiers are
/// known from configuration before any OPEN.
pub fn incoming(state: State) -> Incoming {
    match state {
        State::Connect | State::Active => Incoming::Accept,
        State::Idle | State::Established => Incoming::Reject,
        State::OpenSent | State::OpenConfirm => Incoming::Collide,
    }
}

/// Which connection survives.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Keep {
    /// The connection we initiated.
    Outgoing,
    /// The connection the peer initiated.
    Incoming,
}

/// RFC 4271 §6.8: the connection initiated by the speaker with the higher BGP identifier
/// survives. Identifiers compare as 4-octet unsigned integers in host byte order.
///
/// Equal identifiers cannot happen on a valid session (OPEN validation rejects them for
/// iBGP; RFC 6286 §2.3 breaks the eBGP tie by AS number, which `resolve_with_as` does).
pub fn resolve(local_id: Ipv4Addr, remote_id: Ipv4Addr) -> Keep {
    if u32::from(local_id) > u32::from(remote_id) {
        Keep::Outgoing
    } else {
        Keep::Incoming
    }
}

/// [`resolve`] with the RFC 6286 §2.3 tie-break: on equal identifiers the speaker with the
/// larger AS number keeps its own connection.
pub fn resolve_with_as(
    local_id: Ipv4Addr,
    local_as: u32,
    remote_id: Ipv4Addr,
    remote_as: u32,
) -> Keep {
    if local_id == remote_id {
        if local_as > remote_as {
            Keep::Outgoing
        } else {
            Keep::Incoming
        }
    } else {
        resolve(local_id, remote_id)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn higher_identifier_keeps_its_own_connection() {
        let low = Ipv4Addr::new(198, 18, 0, 1);
        let high = Ipv4Addr::new(198, 18, 0, 2);
        assert_eq!(resolve(high, low), Keep::Outgoing);
        assert_eq!(resolve(low, high), Keep::Incoming);
        // Compared as integers, not octet by octet as strings would.
        assert_eq!(
            resolve(Ipv4Addr::new(10, 0, 0, 9), Ipv4Addr::new(9, 0, 0, 10)),
            Keep::Outgoing
        );
    }

    #[test]
    fn incoming_connections_by_state() {
        assert_eq!(incoming(State::Active), Incoming::Accept);
        assert_eq!(incoming(State::Connect), Incoming::Accept);
        assert_eq!(incoming(State::Idle), Incoming::Reject);
        assert_eq!(incoming(State::Established), Incoming::Reject);
        assert_eq!(incoming(State::OpenSent), Incoming::Collide);
        assert_eq!(incoming(State::OpenConfirm), Incoming::Collide);
    }

    #[test]
    fn equal_identifiers_fall_back_to_as_number() {
        let id = Ipv4Addr::new(198, 18, 0, 1);
        assert_eq!(resolve_with_as(id, 65001, id, 65000), Keep::Outgoing);
        assert_eq!(resolve_with_as(id, 65000, id, 65001), Keep::Incoming);
    }
}
