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
//!
//! # BFD and graceful restart (RFC 5882 §4.3): the rule
//!
//! A peer must tell "the agent restarts, keep its routes" (BGP graceful restart) from "the
//! link or node is dead, drop them now". podroute's BFD runs inside the agent, so it dies
//! with the control plane; the rule is:
//!
//! 1. **The C bit is honest: clear.** [`endpoint::BfdConfig::control_plane_independent`]
//!    is false in the agent. A BFD that outlived the agent (a separate process) could set
//!    it; this one cannot, and a set C bit would tell peers a BFD Down is always a
//!    forwarding failure.
//! 2. **Planned stop → AdminDown first.** On SIGTERM (a restart, an upgrade) the agent
//!    calls [`endpoint::Bfd::shutdown`]: every session sends AdminDown (diag 7) before BGP
//!    closes. RFC 5882 §3.2: AdminDown is no failure, so peers leave the BGP session to its
//!    hold timer and graceful restart, and keep the routes as stale.
//! 3. **A crash closes the connections first.** When the agent is killed (kill -9, OOM,
//!    a crash), the node's kernel closes its BGP connections at once, without a
//!    NOTIFICATION: peers enter graceful restart and keep the routes as stale. BFD, in the
//!    same process, stops too, and peers report it Down a Detection Time later.
//! 4. **As a receiver:** [`endpoint::Liveness::AdminDown`] (the peer's planned stop)
//!    changes nothing in BGP. [`endpoint::Liveness::Down`] on a running session (a cut
//!    link, a dead node: no connection closed) ends it at once with Cease/BFD Down (RFC
//!    9384) and drops its routes. A Down that finds the session already closed without a
//!    NOTIFICATION and its routes held stale is the restart of rule 3 seen again: the
//!    stale routes stay until the restart ends (End-of-RIB) or its restart time runs out
//!    (`podroute_bgp::speaker::Speaker::path_changed`). The peer's kernel was alive to
//!    close the connection, so its forwarding is taken to be alive too.
//!
//!    The peer's C bit is read ([`endpoint::SessionStatus::remote_control_plane_independent`],
//!    kept over the silence that ends in Down): a peer whose BFD outlives its control plane
//!    (C set) has lost its forwarding when its BFD goes Down, so that Down ends the restart
//!    and drops the routes at once. BIRD 2 and FRR send it clear (see the golden packets),
//!    like podroute.
//!
//! Authentication (RFC 5880 §6.7) is off: a packet with the A bit is dropped. Adding it
//! would take: per-session keys (a `Password`-like type that does not print), the
//! bfd.XmitAuthSeq / bfd.RcvAuthSeq / bfd.AuthSeqKnown variables, the five auth section
//! formats with their Length rules in the codec, sequence windows of 3 × Detect Mult, and
//! MD5/SHA1 digests over the packet with the key (a maintained crate: `sha1`, `md-5`).

pub mod endpoint;
pub mod packet;
pub mod session;

mod damping;

pub use damping::DampingConfig;
