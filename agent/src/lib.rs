//! podroute node agent: watches Nodes, runs the iBGP mesh, programs kernel routes.
//!
//! Data flows one way: Kubernetes API ([`watch`]) → [`view::ClusterView`] → BGP (mesh peers,
//! import policy) → desired kernel routes → netlink reconcile ([`routes`]).

pub mod agent;
pub mod bfd;
pub mod cluster_peers;
pub mod cni_conf;
pub mod config;
pub mod config_watch;
pub mod context;
pub mod crd;
pub mod drift;
pub mod events;
pub mod http;
pub mod malloc;
pub mod metrics;
pub mod node_status;
pub mod peers;
pub mod persist;
pub mod routes;
pub mod sockopt;
pub mod speaker;
pub mod static_peers;
pub mod status_cli;
pub mod veth_sweep;
pub mod view;
pub mod watch;
