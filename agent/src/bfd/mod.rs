//! The agent's BFD shell around the sans-IO [`podroute_bfd`] endpoint: single-hop BFD
//! (RFC 5880/5881) to the node's BGP peers.
//!
//! - [`socket`]: the UDP sockets of one family (port 3784 in, 49152–65535 out, TTL 255).
//! - [`driver`]: the one task that owns the endpoint and those sockets.

pub mod driver;
pub mod socket;
