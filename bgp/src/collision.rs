//! Connection collision resolution (RFC 4271 §6.8).
//!
//! When both speakers connect at once there are two TCP connections for one peer. The
//! session is per connection, so a driver that allows an incoming connection while its
//! own outgoing one is open runs two [`crate::session::Session`]s for the peer, one per
//! connection, and resolves the collision like this:
//!
//! 1. An incoming connection for a peer whose session is Established is a collision the
//!    established one wins (§6.8): close the new connection (optionally after a
//!    NOTIFICATION Cease/Connection-Rejected via
//!    [`crate::session::Session::reject_connection`]).
//! 2. Otherwise start a second session for the incoming connection (passive). As soon as
//!    either session learns the peer's BGP identifier (it reaches OpenConfirm: the driver
//!    sees `Action::StateChanged { to: OpenConfirm, .. }`, and
//!    [`crate::session::Session::remote_id`] is set) while the other is in OpenSent or
//!    OpenConfirm, call [`resolve`] with the two identifiers.
//! 3. Call [`crate::session::Session::close_collision`] on the loser (it sends
//!    NOTIFICATION Cease/Connection Collision Resolution and asks to disconnect) and
//!    drop it; keep the winner.

use std::net::Ipv4Addr;

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
    fn equal_identifiers_fall_back_to_as_number() {
        let id = Ipv4Addr::new(198, 18, 0, 1);
        assert_eq!(resolve_with_as(id, 65001, id, 65000), Keep::Outgoing);
        assert_eq!(resolve_with_as(id, 65000, id, 65001), Keep::Incoming);
    }
}
