//! The podroute lab.
