//! podroute's CNI plugin as a library: configuration, IPAM store, result types, netlink
//! operations, the commands, and the conflist writer the agent uses.
//!
//! The `podroute` binary is a thin `main` around [`commands::execute`].

pub mod commands;
pub mod config;
pub mod conflist;
pub mod datagram;
pub mod env;
pub mod error;
pub mod install;
pub mod ipam;
pub mod naming;
pub mod netlink;
pub mod netns;
pub mod release;
pub mod result;
pub mod sysctl;
pub mod version;
