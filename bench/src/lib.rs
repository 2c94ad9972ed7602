//! podroute's BGP ingest benchmark (issue 9's "Targets"): one sender written with
//! `podroute-bgp`'s codec feeds 100k–1M prefixes from 1 or 10 iBGP peers into podroute-agent,
//! BIRD 2 (configured as Calico configures it) and GoBGP, in turn, inside a lab's namespaces;
//! each receiver is measured from outside its process: RIB and FIB convergence, memory per
//! route, idle CPU, SIGTERM to exit.
//!
//! ```text
//!   <lab>-fabric                                 <lab>-node1
//!   br0: 198.18.16.1-10/20, fd00:198:18:16::1-10 eth0: 198.18.0.1, 198.18.16.254/20, ...
//!   sender threads (one session per address) ──► receiver (podroute-agent | bird | gobgpd)
//!                                                 FIB watcher (rtnetlink route groups)
//!                                                 probes (metrics, birdc, gobgp), /proc/PID
//! ```
//!
//! | module | what it owns |
//! |---|---|
//! | [`scenario`] | the scenarios and their prefixes |
//! | [`updates`] | packing prefixes into UPDATE bytes, once, before the clock starts |
//! | [`sender`] | the sessions: connect, OPEN, write, KEEPALIVE |
//! | [`receivers`] | starting each receiver and asking its RIB size |
//! | [`fib`] | counting the receiver's kernel routes from netlink notifications |
//! | [`convergence`] | convergence at 20/50/100 nodes against kube-router, and with route reflectors (issue 15) |
//! | [`cni_churn`] | 100 pods added and deleted at once: podroute's CNI plugin against ptp and bridge + host-local, and killed -9 (issue 15) |
//! | [`mesh`] | one agent with 999 simulated mesh peers: bring-up time, RSS, steady CPU (issue 15) |
//! | [`bfd`] | the cost of 999 BFD sessions in the sans-IO endpoint (issue 12) |
//! | [`bfd_loss`] | the loss window of a cut link from behind a BIRD router, with and without BFD (issue 12) |
//! | [`procstat`] | RSS, peak RSS and CPU time from `/proc` |
//! | [`suite`] | the runs, alternated, and the lab around them |
//! | [`results`] | the JSON result file, medians, ratios, Markdown tables |

pub mod bfd;
pub mod bfd_loss;
pub mod cni_churn;
pub mod convergence;
pub mod error;
pub mod fib;
pub mod mesh;
pub mod netns;
pub mod procstat;
pub mod receivers;
pub mod results;
pub mod scenario;
pub mod sender;
pub mod suite;
pub mod updates;

pub use error::{BenchError, Result};
