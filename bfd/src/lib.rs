//! BFD (Bidirectional Forwarding Detection, RFC 5880) for podroute, sans-IO.
//!
//! No async runtime, no sockets, no clock, like `podroute-bgp`: datagrams and timer
//! expiries go in with a `now: Instant`, packets to send and state changes come out.
//! Single-hop (RFC 5881) asynchronous mode; no Echo function, no Demand mode, no
//! authentication (a packet with the A bit is dropped).
//!
//! # Modules
//!
//! - [`packet`]: the Control packet codec and the packet-only checks of RFC 5880 §6.8.6.
//! - [`session`]: one session's RFC 5880 §6.8 state machine, intervals, poll sequences.
//! - [`endpoint`]: [`endpoint::Bfd`], every session of a node behind one socket and one
//!   timer heap; demultiplexing, GTSM, damping, counters. Drivers use this.

pub mod endpoint;
pub mod packet;
pub mod session;

mod damping;

pub use damping::DampingConfig;
