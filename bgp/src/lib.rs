//! BGP protocol core for podroute (sans-IO).
//!
//! No async runtime, no sockets, no clock: bytes, timer expiries and admin events go in
//! with a `now: Instant`, actions come out. A driver (the agent's tokio shell) owns the
//! TCP connection and the timers.
//!
//! # Modules
//!
//! - [`message`]: the codec. [`message::frame_len`] finds one message in a byte stream
//!   (`Ok(None)` = need more bytes), [`message::Message::decode`] /
//!   [`message::Message::encode`] convert it under a [`message::CodecContext`] (4-octet
//!   AS, extended messages). Errors: [`message::HeaderError`], [`message::OpenError`],
//!   [`message::UpdateError`], each with `notification()`; RFC 7606 non-fatal UPDATE
//!   errors land in [`message::Update::faults`] with their [`message::ErrorAction`].
//! - [`session`]: one peer's RFC 4271 §8 state machine ([`session::Session`]) with its
//!   Adj-RIB-Out (UPDATE packing, End-of-RIB, route refresh).
//! - [`collision`]: the RFC 4271 §6.8 decision and how a driver holding two connections
//!   uses it.
//! - [`rib`]: the Loc-RIB ([`rib::Rib`]) holding every peer's Adj-RIB-In, with the §9.1.2.2
//!   decision process, reporting best-path changes ([`rib::BestChange`]).
//! - [`sharded_map`]: the hash map of the big prefix tables, grown shard by shard.
//! - [`counters`]: plain per-session counters ([`counters::SessionCounters`]).
//! - [`speaker`]: the multi-peer speaker ([`speaker::Speaker`]) that owns every session, the
//!   RIB, import/export policy ([`speaker::Policy`]), prefix limits and graceful restart,
//!   and reports Loc-RIB changes ([`speaker::RouteChange`]). Drivers use this; the pieces
//!   above are its parts.
//!
//! Prefixes are `ipnetwork::IpNetwork` everywhere; decoded ones have host bits cleared.
//! Path attributes are [`message::PathAttributes`], shared as `Arc` between routes.
//!
//! # Driving a session
//!
//! 1. `Session::new(SessionConfig::new(local_as, router_id, peer_as))`, adjust fields
//!    (`passive`, `hold_time`, `families`, ...), then `handle(now, AdminEvent::Start)`.
//! 2. After every input, drain `poll_action()`:
//!    - `Connect`: open TCP to the peer; on success `handle_connected(now)`, on failure
//!      `handle_closed(now)`. An accepted incoming connection is also handed over with
//!      `handle_connected(now)` if `accepts_connection()`; otherwise see [`collision`].
//!    - `Send(bytes)`: write all of it, in order. `Disconnect`: close the socket (after
//!      writing pending sends; a NOTIFICATION precedes it).
//!    - `Routes(r)`: `rib.apply(peer_id, &r, &mut changes)`, then program `changes`.
//!    - `StateChanged { from: Established, .. }`: `rib.clear_peer(peer_id, &mut changes)`.
//!    - `EndOfRib`, `Notification*`, `UpdateFault`: logs and metrics.
//! 3. Feed the socket with `handle_bytes(now, &buf[..n])` (any chunking), EOF/errors with
//!    `handle_closed(now)`, and sleep until `poll_timeout()`, then `handle_timeout(now)`.
//! 4. Advertise with `announce(now, prefixes, attrs)` / `withdraw(now, prefixes)` or
//!    `replace_routes(now, routes)` (the whole set; only differences are sent). Routes
//!    given before Established are sent on establishment, followed by End-of-RIB.
//! 5. `counters()` any time; `negotiated()` from OpenConfirm on.
//!
//! # API changes
//!
//! Additions only since the first published surface (eba9812): `collision::incoming` and
//! `collision::Incoming`; `Session::timer`; `Session::new` corrects out-of-range timers.

pub mod collision;
pub mod counters;
pub mod message;
pub mod rib;
pub mod session;
pub mod sharded_map;
pub mod speaker;
