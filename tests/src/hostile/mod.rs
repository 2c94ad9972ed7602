//! A scripted hostile BGP peer: it opens a session to an agent from a lab namespace and
//! sends crafted bytes, to check what the agent does with malformed input.
//!
//! - [`wire`]: messages built field by field ([`wire::Env`] builds the well-formed UPDATE
//!   a case then breaks);
//! - [`cases`]: the RFC 7606 conformance table, each row with what a mesh peer and a router
//!   peer must see (prefix installed or not, counter, NOTIFICATION);
//! - [`peer`]: the connection ([`peer::connect_from`] a namespace, send at once or a byte at
//!   a time, read NOTIFICATIONs, a ROUTE-REFRESH barrier).
//!
//! The same table runs in memory against `podroute_bgp::session::Session`
//! (`tests/tests/rfc7606_table.rs`, no root) and against a running agent in the lab
//! (`agent/tests/hostile_peer.rs`, root).

pub mod cases;
pub mod peer;
pub mod wire;
