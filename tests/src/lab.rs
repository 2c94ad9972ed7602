//! [`Lab`]: bringing a lab up, attaching to a running one, and tearing it down.
//!
//! A lab is a fabric namespace with a bridge, N node namespaces on it, optionally a control-plane
//! namespace with etcd and kube-apiserver, and optionally a router. `Lab::up` builds it;
//! dropping the `Lab` (or [`Lab::down`]) removes it, so a failing test cleans up after itself.

use std::collections::BTreeMap;
use std::ffi::OsStr;
use std::fs;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::{Child, Output};
use std::time::{Duration, Instant};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};
use serde_json::Value;

use crate::cancel;
use crate::cmd;
use crate::control_plane::{self, ControlPlaneBins};
use crate::error::{LabError, Result, file_err};
use crate::names::{self, LabName};
use crate::node_runtime::ClusterBins;
use crate::pki::{self, PkiPaths};
use crate::plan::{self, APISERVER_V4, FABRIC_V4_PREFIX, MAX_NODES};
use crate::process::{self, LabProcess};
use crate::router::{self, Neighbor, Router, Tor};
use crate::teardown::{self, DownReport};

/// Each node's (and the control plane's) interface on the fabric.
pub const NODE_IFACE: &str = "eth0";
/// The control plane's port on the fabric bridge.
const CP_PORT: &str = "cp";
/// How long a router gets to answer its client after starting.
const ROUTER_READY_TIMEOUT: Duration = Duration::from_secs(20);
/// How long [`Lab::spawn`] waits for `ip netns exec` to move the child into its namespace.
const NETNS_ENTER_TIMEOUT: Duration = Duration::from_secs(5);

/// What lab to build.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabConfig {
    /// The lab's name; every namespace is prefixed with it. Tests use a unique one
    /// (e.g. `t-updown-<pid>`) so they can run in parallel.
    pub name: String,
    /// How many node namespaces (`node1`..`nodeN`), 1 to 249.
    pub nodes: u8,
    /// Which router runs in the fabric namespace.
    pub tor: Tor,
    /// Give nodes IPv6 fabric addresses and IPv6 pod CIDRs too.
    pub ipv6: bool,
    /// Run etcd and kube-apiserver and create Node objects. Tests of the BGP speaker against a
    /// router alone can turn this off to save the API server's start-up time.
    pub control_plane: bool,
    /// Cluster mode ([`crate::cluster`]): kube-controller-manager, kube-scheduler, and containerd
    /// and a kubelet on every node; pod CIDRs from the node IPAM. Implies a control plane.
    pub cluster: bool,
    /// Cluster mode: the prefix length of the IPv4 pod CIDR the node IPAM gives each node
    /// (`--node-cidr-mask-size-ipv4`), [`DEFAULT_NODE_CIDR_MASK_V4`] unless a test wants a
    /// small range to exhaust.
    pub node_cidr_mask_v4: u8,
    /// How many racks, 1 to [`plan::MAX_RACKS`]: rack `r` is its own L2 segment (bridge
    /// `br<r>`) and subnet (198.18.`r`.0/24, fd00:198:18:`r`::/64), the nodes take turns
    /// ([`plan::node_rack`]), and the fabric namespace (198.18.`r`.254 on each) routes between
    /// them, so every rack reaches the control plane on rack 0.
    pub racks: u8,
}

/// The IPv4 pod CIDR prefix length of a cluster-mode node unless asked otherwise.
pub const DEFAULT_NODE_CIDR_MASK_V4: u8 = 24;
/// The node IPAM's IPv4 prefix lengths a cluster-mode lab accepts: inside the /16 cluster
/// CIDR, and at least the two addresses the CNI plugin needs.
const NODE_CIDR_MASKS_V4: std::ops::RangeInclusive<u8> = 17..=30;

impl LabConfig {
    /// A lab called `name` with `nodes` nodes, a control plane, no router, IPv4 only.
    pub fn new(name: impl Into<String>, nodes: u8) -> Self {
        Self {
            name: name.into(),
            nodes,
            tor: Tor::None,
            ipv6: false,
            control_plane: true,
            cluster: false,
            node_cidr_mask_v4: DEFAULT_NODE_CIDR_MASK_V4,
            racks: 1,
        }
    }

    /// Sets the number of racks.
    pub fn racks(mut self, racks: u8) -> Self {
        self.racks = racks;
        self
    }

    /// Turns cluster mode on or off.
    pub fn cluster(mut self, on: bool) -> Self {
        self.cluster = on;
        self
    }

    /// Sets the router.
    pub fn tor(mut self, tor: Tor) -> Self {
        self.tor = tor;
        self
    }

    /// Turns IPv6 on or off.
    pub fn ipv6(mut self, on: bool) -> Self {
        self.ipv6 = on;
        self
    }

    /// Turns the control plane on or off.
    pub fn control_plane(mut self, on: bool) -> Self {
        self.control_plane = on;
        self
    }

    /// Sets the prefix length of the nodes' IPv4 pod CIDRs (cluster mode).
    pub fn node_cidr_mask_v4(mut self, prefix: u8) -> Self {
        self.node_cidr_mask_v4 = prefix;
        self
    }
}

/// One node of the lab: a network namespace with `eth0` on the fabric.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct LabNode {
    /// The node's name, also its Node object's name: `node1`, `node2`, ...
    pub name: String,
    /// 1-based index; the last byte of its fabric address.
    pub index: u8,
    /// Its rack (0-based; the third byte of its fabric IPv4 address).
    #[serde(default)]
    pub rack: u8,
    /// The node's network namespace (`<lab>-node<index>`).
    pub netns: String,
    /// The node's fabric IPv4 address (198.18.`rack`.`index`/24).
    pub ipv4: Ipv4Addr,
    /// The node's fabric IPv6 address (fd00:198:18:`rack`::`index`/64) in an IPv6 lab.
    pub ipv6: Option<Ipv6Addr>,
    /// The IPv4 pod CIDR in the Node object (10.244.`index`.0/24 unless changed).
    pub pod_cidr_v4: Ipv4Network,
    /// The IPv6 pod CIDR in the Node object in an IPv6 lab (fd00:10:244:`index`::/64).
    pub pod_cidr_v6: Option<Ipv6Network>,
}

impl LabNode {
    pub(crate) fn planned(lab: &LabName, index: u8, racks: u8, ipv6: bool) -> Self {
        let rack = plan::node_rack(index, racks);
        Self {
            name: names::node_name(index),
            index,
            rack,
            netns: lab.node_ns(index),
            ipv4: plan::node_v4(rack, index),
            ipv6: ipv6.then(|| plan::node_v6(rack, index)),
            pod_cidr_v4: plan::pod_cidr_v4(index),
            pod_cidr_v6: ipv6.then(|| plan::pod_cidr_v6(index)),
        }
    }

    /// The node's fabric addresses (IPv4 first).
    pub fn ips(&self) -> Vec<IpAddr> {
        std::iter::once(IpAddr::V4(self.ipv4))
            .chain(self.ipv6.map(IpAddr::V6))
            .collect()
    }

    /// The node's pod CIDRs (IPv4 first), as in its Node object's `spec.podCIDRs`.
    pub fn pod_cidrs(&self) -> Vec<IpNetwork> {
        std::iter::once(IpNetwork::V4(self.pod_cidr_v4))
            .chain(self.pod_cidr_v6.map(IpNetwork::V6))
            .collect()
    }
}

/// What the lab directory's `lab.json` records, so the CLI can attach to a running lab.
#[derive(Debug, Clone, serde::Serialize, serde::Deserialize)]
pub(crate) struct LabState {
    pub(crate) name: LabName,
    pub(crate) tor: Tor,
    pub(crate) ipv6: bool,
    pub(crate) control_plane: bool,
    pub(crate) bins: Option<ControlPlaneBins>,
    /// The cluster mode's binaries and images; `None` in the light mode.
    #[serde(default)]
    pub(crate) cluster: Option<ClusterBins>,
    /// The node IPAM's IPv4 prefix length (cluster mode).
    #[serde(default = "default_node_cidr_mask_v4")]
    pub(crate) node_cidr_mask_v4: u8,
    pub(crate) nodes: Vec<LabNode>,
    /// How many racks (fabric segments); see [`LabConfig::racks`].
    #[serde(default = "one_rack")]
    pub(crate) racks: u8,
    /// Seconds `up` took (0 while it is still running).
    pub(crate) up_seconds: f64,
}

fn default_node_cidr_mask_v4() -> u8 {
    DEFAULT_NODE_CIDR_MASK_V4
}

fn one_rack() -> u8 {
    1
}

/// A running lab.
///
/// Made by [`Lab::up`] (owning: dropping it tears the lab down) or [`Lab::open`] (attached to a
/// lab someone else brought up: dropping it leaves the lab running). All methods block.
#[derive(Debug)]
pub struct Lab {
    pub(crate) name: LabName,
    pub(crate) dir: PathBuf,
    pub(crate) state: LabState,
    /// Whether dropping this value tears the lab down.
    owned: bool,
    /// Daemons this process started (etcd, kube-apiserver, router), reaped at teardown.
    pub(crate) daemons: BTreeMap<String, Child>,
}

impl Lab {
    /// Builds the lab described by `cfg` and waits until it is ready: namespaces wired, API
    /// server answering `/readyz`, Node objects created, router running.
    ///
    /// On failure everything already made is removed before the error is returned.
    pub fn up(cfg: &LabConfig) -> Result<Self> {
        let name = LabName::new(&cfg.name)?;
        if cfg.nodes == 0 || cfg.nodes > MAX_NODES {
            return Err(LabError::Invalid(format!(
                "--nodes must be 1 to {MAX_NODES}"
            )));
        }
        if cfg.racks == 0 || cfg.racks > plan::MAX_RACKS {
            return Err(LabError::Invalid(format!(
                "--racks must be 1 to {}",
                plan::MAX_RACKS
            )));
        }
        if cfg.racks > 1 && cfg.cluster {
            return Err(LabError::Invalid(
                "more than one rack is for the light mode only".into(),
            ));
        }
        preflight(cfg)?;
        if !teardown::lab_namespaces(&name)?.is_empty() {
            return Err(LabError::AlreadyUp {
                name: name.to_string(),
            });
        }
        // Leftovers of a lab whose namespaces are gone (a killed `down`): clear them first.
        teardown::down(&name)?;
        if cfg.cluster && !cfg.control_plane {
            return Err(LabError::Invalid(
                "cluster mode needs the control plane".into(),
            ));
        }
        if !NODE_CIDR_MASKS_V4.contains(&cfg.node_cidr_mask_v4) {
            return Err(LabError::Invalid(format!(
                "the nodes' IPv4 pod CIDR prefix length must be {} to {}",
                NODE_CIDR_MASKS_V4.start(),
                NODE_CIDR_MASKS_V4.end()
            )));
        }
        let bins = if cfg.control_plane {
            Some(ControlPlaneBins::locate()?)
        } else {
            None
        };
        let cluster = if cfg.cluster {
            Some(ClusterBins::locate()?)
        } else {
            None
        };
        let started = Instant::now();
        let dir = name.dir();
        let state = LabState {
            name: name.clone(),
            tor: cfg.tor,
            ipv6: cfg.ipv6,
            control_plane: cfg.control_plane,
            bins,
            cluster,
            node_cidr_mask_v4: cfg.node_cidr_mask_v4,
            nodes: (1..=cfg.nodes)
                .map(|i| LabNode::planned(&name, i, cfg.racks, cfg.ipv6))
                .collect(),
            racks: cfg.racks,
            up_seconds: 0.0,
        };
        let mut lab = Self {
            name,
            dir,
            state,
            owned: true,
            daemons: BTreeMap::new(),
        };
        // On error `lab` is dropped here, and its Drop removes whatever was built.
        // A Ctrl-C also kills the short-lived command `up` was running (same process group);
        // report the interruption rather than that command's failure.
        lab.build()
            .map_err(|e| cancel::check().err().unwrap_or(e))?;
        lab.state.up_seconds = started.elapsed().as_secs_f64();
        lab.save_state()?;
        Ok(lab)
    }

    /// Attaches to the running lab `name` (brought up by the CLI or another process). Dropping
    /// the returned value leaves the lab running; call [`Lab::down`] to remove it.
    pub fn open(name: &str) -> Result<Self> {
        let name = LabName::new(name)?;
        let dir = name.dir();
        let path = dir.join("lab.json");
        let text = match fs::read_to_string(&path) {
            Ok(t) => t,
            Err(_) => {
                return Err(LabError::NotUp {
                    name: name.to_string(),
                });
            }
        };
        let state: LabState = serde_json::from_str(&text).map_err(|e| LabError::BadState {
            path: path.clone(),
            detail: e.to_string(),
        })?;
        if teardown::lab_namespaces(&name)?.is_empty() {
            return Err(LabError::NotUp {
                name: name.to_string(),
            });
        }
        Ok(Self {
            name,
            dir,
            state,
            owned: false,
            daemons: BTreeMap::new(),
        })
    }

    /// Tears down lab `name` whether or not it is fully up (see [`teardown::down`]).
    pub fn down_by_name(name: &str) -> Result<DownReport> {
        teardown::down(&LabName::new(name)?)
    }

    /// Tears the lab down: every process, namespace and file it made.
    pub fn down(mut self) -> Result<DownReport> {
        self.owned = false;
        self.teardown()
    }

    /// Leaves the lab running when this value is dropped (the CLI's `up` does this).
    pub fn detach(mut self) {
        self.owned = false;
    }

    fn teardown(&mut self) -> Result<DownReport> {
        let report = teardown::down(&self.name);
        // Reap our own children so they do not linger as zombies.
        for (_, mut child) in std::mem::take(&mut self.daemons) {
            let _ = child.kill();
            let _ = child.wait();
        }
        report
    }

    /// The lab's name.
    pub fn name(&self) -> &str {
        self.name.as_str()
    }

    /// The lab's directory (`${PODROUTE_LAB_DIR:-/tmp/podroute-lab}/<lab>`).
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// Where logs of the lab's processes go (`<lab dir>/logs`).
    pub fn log_dir(&self) -> PathBuf {
        self.dir.join("logs")
    }

    /// The lab's nodes, `node1` first.
    pub fn nodes(&self) -> &[LabNode] {
        &self.state.nodes
    }

    /// The node called `name` (`node1`, ...).
    pub fn node(&self, name: &str) -> Result<&LabNode> {
        self.state
            .nodes
            .iter()
            .find(|n| n.name == name)
            .ok_or_else(|| LabError::UnknownNode {
                lab: self.name.to_string(),
                node: name.to_owned(),
            })
    }

    /// Whether the lab has IPv6 addresses and pod CIDRs.
    pub fn ipv6(&self) -> bool {
        self.state.ipv6
    }

    /// How long `up` took, in seconds.
    pub fn up_seconds(&self) -> f64 {
        self.state.up_seconds
    }

    /// The fabric namespace (`<lab>-fabric`): bridge `br0` holding 198.18.0.254 (and
    /// fd00:198:18::fe), where the router runs, and `br1` holding 198.18.1.254 in a lab of
    /// two racks.
    pub fn fabric_ns(&self) -> String {
        self.name.fabric_ns()
    }

    /// The control-plane namespace (`<lab>-cp`).
    pub fn cp_ns(&self) -> String {
        self.name.cp_ns()
    }

    /// The network namespace behind a target name: `node<i>`, `cp`, `fabric`, or the name of a
    /// pod made by [`Lab::add_pod`] or a host made by [`Lab::add_fabric_host`].
    pub fn netns_of(&self, target: &str) -> Result<String> {
        match target {
            "cp" if self.state.control_plane => Ok(self.name.cp_ns()),
            "fabric" => Ok(self.name.fabric_ns()),
            _ => {
                if let Ok(node) = self.node(target) {
                    return Ok(node.netns.clone());
                }
                if names::check_pod_name(target).is_ok() {
                    let namespaces = teardown::list_namespaces()?;
                    for ns in [self.name.pod_ns(target), self.name.host_ns(target)] {
                        if namespaces.contains(&ns) {
                            return Ok(ns);
                        }
                    }
                }
                Err(LabError::UnknownNode {
                    lab: self.name.to_string(),
                    node: target.to_owned(),
                })
            }
        }
    }

    /// Runs `args` (program first) in `target`'s namespace (see [`Lab::netns_of`]) and returns
    /// its output whatever its exit status.
    pub fn exec<S: AsRef<OsStr>>(&self, target: &str, args: &[S]) -> Result<Output> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Invalid("exec needs a command".into()))?;
        cmd::output(&mut cmd::in_ns(&self.netns_of(target)?, program, rest))
    }

    /// Like [`Lab::exec`] but fails unless the command succeeds; returns its stdout.
    pub fn exec_ok<S: AsRef<OsStr>>(&self, target: &str, args: &[S]) -> Result<String> {
        let (program, rest) = args
            .split_first()
            .ok_or_else(|| LabError::Invalid("exec needs a command".into()))?;
        cmd::run_in(&self.netns_of(target)?, program, rest)
    }

    /// Starts `program args...` in `target`'s namespace with extra environment `env`, its
    /// stdout and stderr in `<lab dir>/logs/<target>-<name>.log`. The process is stopped by
    /// dropping the returned handle, and in any case by `down`.
    pub fn spawn<S: AsRef<OsStr>>(
        &self,
        target: &str,
        name: &str,
        program: impl AsRef<OsStr>,
        args: &[S],
        env: &[(&str, &str)],
    ) -> Result<LabProcess> {
        let ns = self.netns_of(target)?;
        let label = format!("{target}-{name}");
        let log = self.log_dir().join(format!("{label}.log"));
        let pid_file = self.dir.join("pids").join(format!("{label}.pid"));
        let mut c = cmd::in_ns(&ns, program, args);
        c.envs(env.iter().copied());
        let child = process::spawn_logged(c, &log, &pid_file)?;
        let mut proc = LabProcess::new(name.to_owned(), child, log, pid_file);
        proc.wait_until_in_netns(&ns, NETNS_ENTER_TIMEOUT);
        Ok(proc)
    }

    /// The node's routes from every table, IPv4 then IPv6, as `ip -j route show table all`
    /// prints them (objects with `dst`, `gateway`, `dev`, `protocol`, `table`, ...).
    pub fn routes_json(&self, target: &str) -> Result<Value> {
        let ns = self.netns_of(target)?;
        let mut all = Vec::new();
        for fam in ["-4", "-6"] {
            let out = cmd::ip_in(&ns, ["-j", fam, "route", "show", "table", "all"])?;
            let v: Value = serde_json::from_str(if out.trim().is_empty() { "[]" } else { &out })
                .map_err(|e| {
                    LabError::Invalid(format!("ip -j route printed unexpected JSON: {e}"))
                })?;
            if let Value::Array(routes) = v {
                all.extend(routes);
            }
        }
        Ok(Value::Array(all))
    }

    /// The router in the fabric namespace, if the lab has one.
    pub fn router(&self) -> Option<Router> {
        (self.state.tor != Tor::None).then(|| {
            Router::new(
                self.state.tor,
                self.dir.join("router"),
                self.name.fabric_ns(),
            )
        })
    }

    /// The router's neighbours: every node address.
    pub fn router_neighbors(&self) -> Vec<Neighbor> {
        let mut v: Vec<Neighbor> = Vec::new();
        for fam_v4 in [true, false] {
            for n in &self.state.nodes {
                let addr = if fam_v4 {
                    Some(IpAddr::V4(n.ipv4))
                } else {
                    n.ipv6.map(IpAddr::V6)
                };
                if let Some(addr) = addr {
                    v.push(Neighbor {
                        node: n.name.clone(),
                        addr,
                    });
                }
            }
        }
        v
    }

    /// Runs the router's client (`birdc`, `gobgp` or `vtysh -c`) with `args` in the fabric
    /// namespace.
    pub fn router_exec(&self, args: &[&str]) -> Result<String> {
        self.router()
            .ok_or_else(|| LabError::Invalid("this lab has no router (--tor none)".into()))?
            .exec(args)
    }

    pub(crate) fn save_state(&self) -> Result<()> {
        let path = self.dir.join("lab.json");
        let text = serde_json::to_string_pretty(&self.state)
            .map_err(|e| LabError::Invalid(format!("cannot serialise lab state: {e}")))?;
        fs::write(&path, text).map_err(file_err(&path))
    }

    /// Builds everything in order; each step assumes the previous ones.
    fn build(&mut self) -> Result<()> {
        for sub in ["logs", "pids"] {
            process::ensure_dir(&self.dir.join(sub))?;
        }
        self.save_state()?;
        cancel::check()?;
        self.build_fabric()?;
        for i in 0..self.state.nodes.len() {
            cancel::check()?;
            let node = self.state.nodes[i].clone();
            self.build_node(&node)?;
        }
        if self.state.control_plane {
            cancel::check()?;
            self.attach_control_plane()?;
        }
        // Before anything talks over the fabric, so that no dynamic neighbour entry is made.
        self.write_fabric_neighbours()?;
        if self.state.control_plane {
            cancel::check()?;
            self.build_control_plane()?;
        }
        if self.state.tor != Tor::None {
            cancel::check()?;
            self.start_router()?;
        }
        cancel::check()
    }

    fn attach_control_plane(&self) -> Result<()> {
        let cp = self.name.cp_ns();
        self.attach_to_fabric(
            &cp,
            CP_PORT,
            0,
            plan::APISERVER_HOST,
            &[format!("{APISERVER_V4}/{FABRIC_V4_PREFIX}")],
        )?;
        self.route_to_other_racks(&cp, 0, false)
    }

    fn build_control_plane(&mut self) -> Result<()> {
        let cp = self.name.cp_ns();
        let pki_dir = self.dir.join("pki");
        process::ensure_dir(&pki_dir)?;
        let pki = pki::create(&pki_dir)?;
        let kubeconfig = self.kubeconfig();
        let text = serde_json::to_string_pretty(&control_plane::admin_kubeconfig(&pki))
            .map_err(|e| LabError::Invalid(format!("cannot serialise kubeconfig: {e}")))?;
        fs::write(&kubeconfig, text).map_err(file_err(&kubeconfig))?;

        let bins = self.bins()?;
        let etcd_dir = self.dir.join("etcd");
        let etcd = process::spawn_logged(
            cmd::in_ns(&cp, bins.etcd(), control_plane::etcd_args(&etcd_dir)),
            &self.log_dir().join("etcd.log"),
            &self.dir.join("pids/etcd.pid"),
        )?;
        self.daemons.insert("etcd".to_owned(), etcd);
        self.start_apiserver()?;
        if self.state.cluster.is_some() {
            // The kubelets register the Nodes; the node IPAM gives them their pod CIDRs.
            self.build_cluster()
        } else {
            self.create_node_objects(&self.state.nodes)
        }
    }

    pub(crate) fn bins(&self) -> Result<ControlPlaneBins> {
        self.state.bins.clone().ok_or_else(|| {
            LabError::Invalid("this lab has no control plane (--no-control-plane)".into())
        })
    }

    pub(crate) fn pki(&self) -> PkiPaths {
        PkiPaths::new(&self.dir.join("pki"))
    }

    /// The admin kubeconfig (`<lab dir>/kubeconfig`): user `system:masters`, server
    /// `https://198.18.0.250:6443`, reachable from the lab's namespaces only.
    pub fn kubeconfig(&self) -> PathBuf {
        self.dir.join("kubeconfig")
    }

    pub(crate) fn start_router(&mut self) -> Result<()> {
        let Some(router) = self.router() else {
            return Ok(());
        };
        process::ensure_dir(router.dir())?;
        let neighbors = self.router_neighbors();
        router::write_config(&router, &neighbors)?;
        self.spawn_router(false)
    }

    /// Starts the router daemon with the configuration file as it is (see
    /// [`Router::config_path`]), recovering from its own crash if `recovery` (see
    /// [`Router::daemon_args`]), and waits until its client answers.
    pub(crate) fn spawn_router(&mut self, recovery: bool) -> Result<()> {
        let Some(router) = self.router() else {
            return Ok(());
        };
        let argv = router.daemon_args(recovery);
        let Some((prog, rest)) = argv.split_first() else {
            return Ok(());
        };
        let child = process::spawn_logged(
            cmd::in_ns(&self.name.fabric_ns(), prog, rest),
            &router.log_path().with_file_name("daemon.log"),
            &router.pid_file(),
        )?;
        self.daemons.insert("router".to_owned(), child);
        let started = Instant::now();
        loop {
            cancel::check()?;
            if router.sessions_text().is_ok() {
                return Ok(());
            }
            if let Some(child) = self.daemons.get_mut("router")
                && let Ok(Some(_)) = child.try_wait()
            {
                let log = fs::read_to_string(router.log_path().with_file_name("daemon.log"))
                    .unwrap_or_default();
                return Err(LabError::Exited {
                    what: "the router",
                    tail: cmd::tail(&log, 3),
                });
            }
            if started.elapsed() > ROUTER_READY_TIMEOUT {
                return Err(LabError::Timeout {
                    what: "the router",
                    seconds: ROUTER_READY_TIMEOUT.as_secs(),
                    tail: cmd::tail(
                        &fs::read_to_string(router.log_path().with_file_name("daemon.log"))
                            .unwrap_or_default(),
                        3,
                    ),
                });
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    }
}

/// Set (to anything but `0`) to keep a test's lab running when its `Lab` is dropped, to look
/// at it after a failure; remove it with `podroute-lab down --name <lab>`.
pub const KEEP_ENV: &str = "PODROUTE_LAB_KEEP";
/// Set (to anything but `0`) to save every lab's logs when it is torn down; they are saved
/// anyway when a test panics.
pub const KEEP_LOGS_ENV: &str = "PODROUTE_LAB_KEEP_LOGS";

fn env_flag(name: &str) -> bool {
    std::env::var_os(name).is_some_and(|v| !v.is_empty() && v != "0")
}

impl Lab {
    /// Copies the lab's logs (its processes' and the router's) to
    /// `<lab root>/<lab>-logs-<unix seconds>/`, outside the lab directory that `down` removes.
    pub fn save_logs(&self) -> Result<PathBuf> {
        let stamp = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0);
        let dest = names::lab_root().join(format!("{}-logs-{stamp}", self.name));
        process::ensure_dir(&dest)?;
        for src in [self.log_dir(), self.dir.join("router")] {
            let Ok(entries) = fs::read_dir(&src) else {
                continue;
            };
            for e in entries.flatten() {
                let from = e.path();
                if from.extension().is_some_and(|x| x == "log") {
                    let to = dest.join(e.file_name());
                    fs::copy(&from, &to).map_err(file_err(&to))?;
                }
            }
        }
        Ok(dest)
    }
}

impl Drop for Lab {
    fn drop(&mut self) {
        if !self.owned {
            return;
        }
        if env_flag(KEEP_ENV) {
            eprintln!(
                "podroute-lab: keeping lab {} ({KEEP_ENV} is set); remove it with `podroute-lab down --name {}`",
                self.name, self.name
            );
            return;
        }
        if std::thread::panicking() || env_flag(KEEP_LOGS_ENV) {
            match self.save_logs() {
                Ok(dir) => eprintln!(
                    "podroute-lab: logs of lab {} saved in {}",
                    self.name,
                    dir.display()
                ),
                Err(e) => eprintln!("podroute-lab: saving the logs of lab {}: {e}", self.name),
            }
        }
        if let Err(e) = self.teardown() {
            eprintln!("podroute-lab: tearing down lab {}: {e}", self.name);
        }
    }
}

/// Checks, before anything is created, that this host can run the lab.
fn preflight(cfg: &LabConfig) -> Result<()> {
    if !nix::unistd::geteuid().is_root() {
        return Err(LabError::NotRoot);
    }
    cmd::require("ip", "install iproute2: apt-get install iproute2")?;
    if let Err(e) = cmd::ip(["netns", "list"]) {
        return Err(LabError::NoNetns {
            detail: e.to_string(),
        });
    }
    cmd::require("sysctl", "install procps: apt-get install procps")?;
    if cfg.control_plane {
        cmd::require("openssl", "install openssl: apt-get install openssl")?;
    }
    if let Some((daemon, client, hint)) = router::programs(cfg.tor) {
        cmd::require(daemon, hint)?;
        cmd::require(client, hint)?;
    }
    Ok(())
}

/// Polls `check` every 100 ms until it returns true or `timeout` passes; returns whether it
/// did. Lab tests wait with this instead of sleeping a fixed time.
pub fn wait_until(timeout: Duration, mut check: impl FnMut() -> bool) -> bool {
    let deadline = Instant::now() + timeout;
    loop {
        if check() {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        std::thread::sleep(Duration::from_millis(100));
    }
}

impl Lab {
    /// The routes of `target` (see [`Lab::routes_json`]) whose destination is `dst` (as `ip`
    /// prints it: `10.244.2.0/24`, a host route without `/32`), from any table.
    pub fn routes_to(&self, target: &str, dst: &str) -> Result<Vec<Value>> {
        let Value::Array(all) = self.routes_json(target)? else {
            return Ok(Vec::new());
        };
        Ok(all.into_iter().filter(|r| r["dst"] == dst).collect())
    }

    /// Waits up to `timeout` for `target` to have a route to `dst` with route protocol
    /// `protocol` (as `ip -j` prints it: a name from rt_protos such as `static`, `bird`, or the
    /// number, e.g. `80` for podroute's routes when rt_protos does not name it).
    pub fn wait_for_route(
        &self,
        target: &str,
        dst: &str,
        protocol: &str,
        timeout: Duration,
    ) -> bool {
        wait_until(timeout, || {
            self.routes_to(target, dst)
                .is_ok_and(|routes| routes.iter().any(|r| r["protocol"] == protocol))
        })
    }
}
