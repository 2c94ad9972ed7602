//! The podroute lab: a whole Kubernetes cluster's network on one Linux host, for podroute's
//! end-to-end tests and its demo.
//!
//! A lab is made of network namespaces, named after the lab so labs never collide:
//!
//! ```text
//!   <lab>-node1 (198.18.0.1)   <lab>-node2 (198.18.0.2)   ...   <lab>-cp (198.18.0.250)
//!        eth0                        eth0                            eth0
//!         |                           |                               |
//!   ------n1--------------------------n2-----------------------------cp------  br0 in <lab>-fabric
//!                                                          198.18.0.254: BIRD / GoBGP / FRR
//! ```
//!
//! `<lab>-cp` runs etcd and a real kube-apiserver (RBAC on, service-account tokens signed); each
//! node has a Node object with its InternalIP(s) and pod CIDR(s). Nothing is ever added to the
//! root network namespace.
//!
//! ```no_run
//! use podroute_lab::{Lab, LabConfig, Tor};
//! # fn main() -> Result<(), podroute_lab::LabError> {
//! let lab = Lab::up(&LabConfig::new("t-example", 2).tor(Tor::Bird))?;
//! let nodes = lab.kubectl(&["get", "nodes", "-o", "wide"])?;
//! assert!(lab.ping_from("node1", lab.nodes()[1].ipv4.into())?);
//! drop(lab); // tears everything down
//! # Ok(()) }
//! ```

mod cmd;
pub mod control_plane;
pub mod error;
mod faults;
mod kube;
pub mod lab;
pub mod names;
pub mod pki;
pub mod plan;
pub mod pods;
pub mod process;
pub mod router;
pub mod teardown;

pub use error::{LabError, Result};
pub use lab::{Lab, LabConfig, LabNode};
pub use pods::LabPod;
pub use process::{LabProcess, Signal};
pub use router::{Router, RouterSession, Tor};
pub use teardown::DownReport;
