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
//! A lab of two racks ([`LabConfig::racks`]) has a second bridge, `br1` (198.18.1.254 in
//! `<lab>-fabric`), for the second rack's nodes (198.18.1.`index`), and the fabric namespace
//! routes between the two.
//!
//! `<lab>-cp` runs etcd and a real kube-apiserver (RBAC on, service-account tokens signed); each
//! node has a Node object with its InternalIP(s) and pod CIDR(s). Nothing is ever added to the
//! root network namespace: the root namespace cannot reach the lab, so kubectl and every other
//! client run inside a lab namespace ([`Lab::kubectl`], [`Lab::exec`], [`Lab::spawn`]).
//!
//! # API at a glance (all blocking)
//!
//! | call | what it does |
//! |---|---|
//! | [`Lab::up`]`(&LabConfig::new(name, n).tor(Tor::Bird).ipv6(true))` | build a lab; `Drop` tears it down |
//! | [`Lab::open`]`(name)` / [`Lab::down`] / [`Lab::down_by_name`] | attach to a running lab / remove one |
//! | [`Lab::nodes`], [`Lab::node`] | [`LabNode`]: name, netns, ipv4/ipv6, pod_cidr_v4/v6 |
//! | [`Lab::kubeconfig`], [`Lab::kubectl`], [`Lab::kubectl_output`] | admin access (inside `<lab>-cp`) |
//! | [`Lab::service_account_kubeconfig`] | a token kubeconfig for a ServiceAccount (no rights until bound) |
//! | [`Lab::exec`], [`Lab::exec_ok`] | run a command in `node<i>`, `cp`, `fabric` or a pod |
//! | [`Lab::spawn`] | start a long-running process there, logged to `<lab dir>/logs/` ([`LabProcess`]) |
//! | [`Lab::add_pod`], [`Lab::pods`], [`Lab::remove_pod`], [`Lab::ping`], [`Lab::ping_from`] | pods (veth + /32, proto static host route) and reachability |
//! | [`Lab::routes_json`] | `ip -j route show table all`, IPv4 then IPv6 |
//! | [`Lab::link_down`], [`Lab::link_up`], [`Lab::netem_loss`], [`Lab::clear_loss`] | faults on a node's fabric link |
//! | [`Lab::stop_apiserver`], [`Lab::start_apiserver`] | an API-server outage |
//! | [`Lab::add_node`], [`Lab::delete_node_object`], [`Lab::set_pod_cidr`] | change the cluster at runtime |
//! | [`Lab::router`], [`Lab::router_exec`], [`Router::sessions`] | the top-of-rack router and its sessions |
//! | `LabConfig::cluster(true)`, [`Lab::deploy_podroute`], [`Lab::node_exec`] | cluster mode: kubelet + containerd per node, podroute as its DaemonSet ([`cluster`]) |
//!
//! # Debugging a failed test
//!
//! When a test panics, dropping its [`Lab`] copies the logs to `<lab root>/<lab>-logs-<time>/`
//! before tearing down ([`Lab::save_logs`]); `PODROUTE_LAB_KEEP_LOGS=1` does it always, and
//! `PODROUTE_LAB_KEEP=1` leaves the lab running for `podroute-lab status/exec --name <lab>`.
//!
//! # The lab directory
//!
//! `${PODROUTE_LAB_DIR:-/tmp/podroute-lab}/<lab>/` (outside the repository), removed by `down`:
//!
//! ```text
//! lab.json            what `up` built (nodes, router, binaries), read by `podroute-lab status`
//! kubeconfig          admin kubeconfig (system:masters), server https://198.18.0.250:6443
//! pki/                lab CA, API server serving cert, admin client cert, service-account keys
//! etcd/               etcd's data
//! node-objects.json  the Node objects applied; node-status.json their status
//! router/             router config (bird.conf | gobgpd.toml | bgpd.conf), bird.ctl, logs
//! logs/               etcd.log, kube-apiserver.log, <target>-<name>.log of spawned processes
//! pids/               pid files of the lab's processes
//! ```
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

pub mod cancel;
mod cgroups;
pub mod cluster;
mod cmd;
pub mod cnitool;
pub mod control_plane;
pub mod error;
mod fabric;
mod faults;
pub mod hostile;
mod kube;
pub mod lab;
pub mod names;
mod neighbours;
pub mod node_runtime;
pub mod pki;
pub mod plan;
pub mod pods;
pub mod process;
pub mod router;
mod router_control;
pub mod teardown;

pub use error::{LabError, Result};
pub use lab::{Lab, LabConfig, LabNode};
pub use pods::LabPod;
pub use process::{LabProcess, Signal};
pub use router::{Router, RouterSession, Tor};
pub use teardown::DownReport;
