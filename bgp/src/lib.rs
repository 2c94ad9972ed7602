//! BGP protocol core for podroute (sans-IO).
//!
//! No async runtime, no sockets, no clock: bytes, timer expiries and admin events go in
//! with a `now: Instant`, actions come out. A driver (the agent's tokio shell) owns the
//! TCP connection and the timers.
//!
//! - [`message`]: the codec. [`message::frame_len`] finds a message in a stream,
//!   [`message::Message::decode`] / [`message::Message::encode`] convert it. Prefixes are
//!   `ipnetwork::IpNetwork` everywhere (host bits cleared on decode).
//! - [`session`]: one peer's RFC 4271 §8 state machine with its Adj-RIB-Out.
//! - [`collision`]: the RFC 4271 §6.8 connection-collision decision.
//! - [`rib`]: the Loc-RIB with per-peer Adj-RIB-In and best-path selection.
//! - [`counters`]: plain per-session counters for the driver to export.
//!
//! # API changes
//!
//! None yet since the first published surface.

pub mod collision;
pub mod counters;
pub mod message;
pub mod rib;
pub mod session;
