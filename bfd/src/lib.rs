//! BFD (Bidirectional Forwarding Detection, RFC 5880) for podroute, sans-IO.
//!
//! No async runtime, no sockets, no clock, like `podroute-bgp`: datagrams and timer
//! expiries go in with a `now: Instant`, packets to send and state changes come out.
//!
//! # Modules
//!
//! - [`packet`]: the Control packet codec and the packet-only checks of RFC 5880 §6.8.6.

pub mod packet;
