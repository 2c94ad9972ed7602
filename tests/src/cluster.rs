//! The lab's cluster mode (`LabConfig::cluster`, `podroute-lab up --cluster`): besides etcd and
//! kube-apiserver, kube-controller-manager (node IPAM) and kube-scheduler run in `<lab>-cp`,
//! and every node runs containerd and a kubelet ([`crate::node_runtime`]) that registers its
//! Node object. Pod CIDRs then come from the node IPAM controller, not from the lab's plan:
//! `up` waits for them and records what was allocated.
//!
//! podroute itself is not started by the lab: [`Lab::deploy_podroute`] applies the manifests
//! (`tests/manifests/cluster`, an overlay on `manifests/`) as a user would.

use std::ffi::OsStr;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;
use serde_json::{Value, json};

use crate::cgroups;
use crate::cmd;
use crate::control_plane;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::node_runtime::{ClusterBins, NodeRuntime};
use crate::pki;
use crate::process;

/// How long the kubelets get to register their Nodes and the IPAM to give them pod CIDRs.
const NODES_REGISTERED_TIMEOUT: Duration = Duration::from_secs(120);

/// The overlay the lab deploys podroute from (image built by `lab-images.sh`, the direct API
/// endpoint ConfigMap).
pub fn cluster_manifests() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("manifests/cluster")
}

impl Lab {
    /// Whether the lab runs in cluster mode.
    pub fn is_cluster(&self) -> bool {
        self.state.cluster.is_some()
    }

    pub(crate) fn cluster_bins(&self) -> Result<ClusterBins> {
        self.state
            .cluster
            .clone()
            .ok_or_else(|| LabError::Invalid("this lab is not in cluster mode (--cluster)".into()))
    }

    pub(crate) fn node_runtime(&self, node: &str) -> Result<NodeRuntime> {
        let n = self.node(node)?;
        Ok(NodeRuntime::new(
            &self.dir,
            n,
            cgroups::node_cgroup(self.name(), &n.name),
        ))
    }

    /// Starts the controller manager, the scheduler and every node's containerd and kubelet,
    /// then waits until each Node is registered with its pod CIDR(s).
    pub(crate) fn build_cluster(&mut self) -> Result<()> {
        let bins = self.cluster_bins()?;
        let cp = self.cp_ns();
        let kubeconfig = self.kubeconfig();
        let pki = self.pki();
        let kcm = control_plane::controller_manager_args(
            &pki,
            &kubeconfig,
            self.ipv6(),
            self.state.node_cidr_mask_v4,
        );
        let sched = control_plane::scheduler_args(&kubeconfig);
        for (name, args) in [("kube-controller-manager", kcm), ("kube-scheduler", sched)] {
            let child = process::spawn_logged(
                cmd::in_ns(&cp, bins.bin(name), args),
                &self.log_dir().join(format!("{name}.log")),
                &self.dir.join(format!("pids/{name}.pid")),
            )?;
            self.daemons.insert(name.to_owned(), child);
        }
        for node in self.state.nodes.clone() {
            crate::cancel::check()?;
            self.start_node_runtime(&node.name)?;
        }
        self.wait_for_registered_nodes()
    }

    /// containerd (images imported) and then the kubelet of `node`.
    fn start_node_runtime(&mut self, node: &str) -> Result<()> {
        let bins = self.cluster_bins()?;
        let rt = self.node_runtime(node)?;
        let n = rt.node.clone();
        cgroups::create(&rt.cgroup)?;
        process::ensure_dir(&rt.dir)?;
        let (cert, key) = pki::issue_node_client(&self.dir.join("pki"), &n.name, n.index, &rt.dir)?;
        let kubeconfig = control_plane::kubeconfig(
            &self.pki(),
            json!({ "client-certificate": cert, "client-key": key }),
        );
        let masks = rt.prepare(&kubeconfig, &self.pki().ca_cert)?;
        let log = self.log_dir().join(format!("{node}-containerd.log"));
        let containerd = process::spawn_logged(
            rt.containerd_command(&bins, &masks),
            &log,
            &self.dir.join(format!("pids/{node}-containerd.pid")),
        )?;
        let pid = containerd.id();
        self.daemons
            .insert(format!("{node}-containerd"), containerd);
        rt.wait_containerd(&bins, &log)?;
        rt.import_images(&bins)?;
        let kubelet = process::spawn_logged(
            rt.kubelet_command(&bins, pid),
            &self.log_dir().join(format!("{node}-kubelet.log")),
            &self.dir.join(format!("pids/{node}-kubelet.pid")),
        )?;
        self.daemons.insert(format!("{node}-kubelet"), kubelet);
        Ok(())
    }

    /// Waits until every lab node has a Node object with pod CIDRs and records them.
    fn wait_for_registered_nodes(&mut self) -> Result<()> {
        let started = Instant::now();
        let want = if self.ipv6() { 2 } else { 1 };
        loop {
            crate::cancel::check()?;
            let nodes = self.node_pod_cidrs().unwrap_or_default();
            let all = self.state.nodes.iter().all(|n| {
                nodes
                    .iter()
                    .any(|(name, cidrs)| *name == n.name && cidrs.len() >= want)
            });
            if all {
                for n in &mut self.state.nodes {
                    let Some((_, cidrs)) = nodes.iter().find(|(name, _)| *name == n.name) else {
                        continue;
                    };
                    for c in cidrs {
                        match c {
                            IpNetwork::V4(v4) => n.pod_cidr_v4 = *v4,
                            IpNetwork::V6(v6) => n.pod_cidr_v6 = Some(*v6),
                        }
                    }
                }
                return self.save_state();
            }
            if started.elapsed() > NODES_REGISTERED_TIMEOUT {
                let first = &self.state.nodes[0].name;
                let log = self.log_dir().join(format!("{first}-kubelet.log"));
                return Err(LabError::Timeout {
                    what: "the kubelets' Node registration with pod CIDRs",
                    seconds: NODES_REGISTERED_TIMEOUT.as_secs(),
                    tail: cmd::tail(&std::fs::read_to_string(log).unwrap_or_default(), 3),
                });
            }
            std::thread::sleep(Duration::from_millis(500));
        }
    }

    /// Every Node object's name and `spec.podCIDRs`.
    pub fn node_pod_cidrs(&self) -> Result<Vec<(String, Vec<IpNetwork>)>> {
        let text = self.kubectl(&["get", "nodes", "-o", "json"])?;
        let v: Value = serde_json::from_str(&text)
            .map_err(|e| LabError::Invalid(format!("kubectl get nodes printed bad JSON: {e}")))?;
        Ok(v["items"]
            .as_array()
            .into_iter()
            .flatten()
            .map(|item| {
                let name = item["metadata"]["name"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned();
                let cidrs = item["spec"]["podCIDRs"]
                    .as_array()
                    .into_iter()
                    .flatten()
                    .filter_map(|c| c.as_str()?.parse().ok())
                    .collect();
                (name, cidrs)
            })
            .collect())
    }

    /// Runs `args` on `node` the way the node's kubelet and containerd see it: in its network
    /// namespace and its mount namespace (where `/etc/cni/net.d`, `/opt/cni/bin` and `/run` are
    /// the node's own). Returns the output whatever the exit status.
    pub fn node_exec<S: AsRef<OsStr>>(&self, node: &str, args: &[S]) -> Result<Output> {
        let pid_file = self.dir.join(format!("pids/{node}-containerd.pid"));
        let pid = std::fs::read_to_string(&pid_file).map_err(crate::error::file_err(&pid_file))?;
        let mut c = Command::new("nsenter");
        c.args(["-t", pid.trim(), "-m", "-n", "--"]).args(args);
        cmd::output(&mut c)
    }

    /// Runs `ctr -n k8s.io args...` against `node`'s containerd (the namespace the CRI uses)
    /// and returns its stdout; fails unless it succeeds.
    pub fn ctr<S: AsRef<OsStr>>(&self, node: &str, args: &[S]) -> Result<String> {
        let bins = self.cluster_bins()?;
        cmd::run(self.node_runtime(node)?.ctr(&bins).args(args))
    }

    /// `kubectl apply -k` of the cluster overlay: podroute's DaemonSet as users deploy it,
    /// with the lab's image and direct API endpoint.
    pub fn deploy_podroute(&self) -> Result<String> {
        let dir = cluster_manifests();
        self.kubectl(&["apply".as_ref(), "-k".as_ref(), dir.as_os_str()])
    }
}
