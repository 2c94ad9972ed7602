//! The interface between the tokio driver and a sans-IO BGP session.
//!
//! The driver owns the socket and the clock; the session owns the protocol. [`SessionCore`] is
//! the small surface the driver needs; the adapter to `podroute_bgp::Session` implements it,
//! and tests implement it with a scripted fake.

use std::net::IpAddr;
use std::time::Instant;

use ipnetwork::IpNetwork;

use crate::peers::PeerSpec;

/// Local end of a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSettings {
    /// Our AS number.
    pub as_number: u32,
    /// Our BGP identifier (the node's IPv4 address, or a stable value derived from the name).
    pub router_id: std::net::Ipv4Addr,
    /// Our address on the session.
    pub address: IpAddr,
    /// Hold time we offer, seconds.
    pub hold_time: u16,
}

/// What a session asks the driver to do or tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SessionEvent {
    /// Send these bytes on the connection.
    Transmit(Vec<u8>),
    /// The session reached Established (RFC 4271 §8.2.2) with these unicast families
    /// negotiated (RFC 4760); the peer's initial sync ends with an End-of-RIB for each.
    Established {
        /// IPv4 unicast negotiated.
        ipv4: bool,
        /// IPv6 unicast negotiated.
        ipv6: bool,
    },
    /// Routes received from the peer: announcements with their next hop, and withdrawals.
    Update {
        /// Prefixes announced (or re-announced) with their next hop.
        announced: Vec<(IpNetwork, IpAddr)>,
        /// Prefixes withdrawn.
        withdrawn: Vec<IpNetwork>,
    },
    /// The peer finished its initial announcement for a family (RFC 4724 §2 End-of-RIB).
    EndOfRib {
        /// True for IPv6 unicast, false for IPv4 unicast.
        ipv6: bool,
    },
    /// The session ended; the driver closes the connection. The text says why (for logs).
    Closed(String),
}

/// A sans-IO BGP session as the driver uses it.
pub trait SessionCore: Send {
    /// The TCP connection is up: begin (send OPEN).
    fn connected(&mut self, now: Instant);
    /// Bytes received from the peer.
    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]);
    /// The deadline from [`SessionCore::poll_timeout`] passed.
    fn handle_timeout(&mut self, now: Instant);
    /// The next deadline, if any timer is armed.
    fn poll_timeout(&self) -> Option<Instant>;
    /// The next event, if any.
    fn poll_event(&mut self) -> Option<SessionEvent>;
    /// Sets the routes we advertise (the whole set; the session sends the difference).
    fn advertise(&mut self, now: Instant, routes: &[(IpNetwork, IpAddr)]);
    /// Ends the session administratively (NOTIFICATION Cease, RFC 4486).
    fn stop(&mut self, now: Instant);
    /// The peer's BGP identifier, once its OPEN arrived (OpenConfirm on). A session that
    /// never learns it (test fakes) leaves collisions unresolved by identifier.
    fn remote_id(&self) -> Option<std::net::Ipv4Addr> {
        None
    }
    /// Ends the session as the loser of a connection collision (NOTIFICATION Cease,
    /// Connection Collision Resolution, RFC 4271 §6.8).
    fn close_collision(&mut self, now: Instant) {
        self.stop(now);
    }
}

/// Builds a session for a peer; boxed so the driver does not depend on the implementation.
pub type SessionFactory =
    std::sync::Arc<dyn Fn(&PeerSpec, LocalSettings) -> Box<dyn SessionCore> + Send + Sync>;
