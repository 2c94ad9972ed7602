//! The Kubernetes side of a [`Lab`]: kubectl, the API server's life cycle, Node objects.

use std::ffi::OsStr;
use std::fs;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use ipnetwork::IpNetwork;
use serde_json::json;

use crate::cmd;
use crate::control_plane;
use crate::error::{LabError, Result, file_err};
use crate::lab::{Lab, LabNode};
use crate::plan::MAX_NODES;
use crate::process::{self, TERM_GRACE};
use crate::router::Neighbor;

impl Lab {
    /// A kubectl command with kubeconfig `kubeconfig` and `args`, to run inside the
    /// control-plane namespace (the only place besides the nodes that reaches 198.18.0.250).
    pub fn kubectl_command<S: AsRef<OsStr>>(
        &self,
        kubeconfig: &Path,
        args: &[S],
    ) -> Result<Command> {
        let bins = self.bins()?;
        let mut c = cmd::in_ns(
            &self.cp_ns(),
            bins.kubectl(),
            ["--kubeconfig".as_ref(), kubeconfig.as_os_str()],
        );
        c.args(args);
        Ok(c)
    }

    /// Runs kubectl as admin and returns its output whatever its exit status.
    pub fn kubectl_output<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<Output> {
        cmd::output(&mut self.kubectl_command(&self.kubeconfig(), args)?)
    }

    /// Runs kubectl with kubeconfig `kubeconfig` (e.g. from
    /// [`Lab::service_account_kubeconfig`]) and returns its output whatever its exit status.
    pub fn kubectl_as_output<S: AsRef<OsStr>>(
        &self,
        kubeconfig: &Path,
        args: &[S],
    ) -> Result<Output> {
        cmd::output(&mut self.kubectl_command(kubeconfig, args)?)
    }

    /// Runs kubectl as admin and fails unless it succeeds; returns its stdout.
    pub fn kubectl<S: AsRef<OsStr>>(&self, args: &[S]) -> Result<String> {
        cmd::run(&mut self.kubectl_command(&self.kubeconfig(), args)?)
    }

    /// The API server's log file.
    pub fn apiserver_log(&self) -> PathBuf {
        self.log_dir().join("kube-apiserver.log")
    }

    /// Starts kube-apiserver (again) and waits until it answers `/readyz`.
    pub fn start_apiserver(&mut self) -> Result<()> {
        let bins = self.bins()?;
        let log = self.apiserver_log();
        let child = process::spawn_logged(
            cmd::in_ns(
                &self.cp_ns(),
                bins.kube_apiserver(),
                control_plane::apiserver_args(&self.pki()),
            ),
            &log,
            &self.dir.join("pids/kube-apiserver.pid"),
        )?;
        self.daemons.insert("kube-apiserver".to_owned(), child);
        let cp = self.cp_ns();
        let kubeconfig = self.kubeconfig();
        let daemons = &mut self.daemons;
        control_plane::wait_ready(&cp, &bins, &kubeconfig, &log, || {
            daemons
                .get_mut("kube-apiserver")
                .is_some_and(|c| matches!(c.try_wait(), Ok(Some(_))))
        })
    }

    /// Stops kube-apiserver (SIGTERM, then SIGKILL), leaving etcd and everything else running:
    /// the "API server outage" of the agent's tests.
    pub fn stop_apiserver(&mut self) -> Result<()> {
        if let Some(mut child) = self.daemons.remove("kube-apiserver") {
            let pid = i32::try_from(child.id()).unwrap_or(0);
            process::terminate_all(&[pid], TERM_GRACE);
            let _ = child.wait();
        } else {
            // Attached with `open`: the API server is not our child; find it by its pid file.
            let pid_file = self.dir.join("pids/kube-apiserver.pid");
            let text = fs::read_to_string(&pid_file).map_err(file_err(&pid_file))?;
            if let Ok(pid) = text.trim().parse::<i32>()
                && process::pids_referencing(&self.dir).contains(&pid)
            {
                process::terminate_all(&[pid], TERM_GRACE);
            }
        }
        let _ = fs::remove_file(self.dir.join("pids/kube-apiserver.pid"));
        Ok(())
    }

    /// Creates (or updates the spec of) one Node object.
    pub(crate) fn create_node_object(&self, node: &LabNode) -> Result<()> {
        self.create_node_objects(std::slice::from_ref(node))
    }

    /// Creates (or updates the spec of) the Node objects of `nodes` and sets their InternalIP(s)
    /// and a Ready condition through the status subresource: two kubectl calls whatever the
    /// number of nodes (`kubectl apply` ignores `status`, so the second one writes the status
    /// subresource).
    pub(crate) fn create_node_objects(&self, nodes: &[LabNode]) -> Result<()> {
        self.write_node_objects(nodes, "apply")
    }

    /// Creates the Node objects of `nodes`, which do not exist, with their addresses in the
    /// one create, as a kubelet registers its Node: a watcher that acts on Node additions
    /// only (kube-router does) sees the InternalIP in the ADDED event. One kubectl call: a
    /// change's clock in the convergence bench starts before it.
    pub(crate) fn create_new_node_objects(&self, nodes: &[LabNode]) -> Result<()> {
        self.write_node_objects(nodes, "create")
    }

    fn write_node_objects(&self, nodes: &[LabNode], verb: &str) -> Result<()> {
        let mut specs = Vec::new();
        let mut statuses = Vec::new();
        for node in nodes {
            let cidrs: Vec<String> = node.pod_cidrs().iter().map(ToString::to_string).collect();
            let ips: Vec<String> = node.ips().iter().map(ToString::to_string).collect();
            let mut status = control_plane::node_status_patch(&node.name, &ips);
            let mut spec = control_plane::node_object(&node.name, &cidrs);
            // `create` keeps a Node's status; `apply` drops it.
            spec["status"] = status["status"].clone();
            specs.push(spec);
            status["apiVersion"] = json!("v1");
            status["kind"] = json!("Node");
            status["metadata"] = json!({ "name": node.name });
            statuses.push(status);
        }
        let list = |items: Vec<serde_json::Value>| json!({ "apiVersion": "v1", "kind": "List", "items": items });
        let spec_file = self.dir.join("node-objects.json");
        fs::write(&spec_file, list(specs).to_string()).map_err(file_err(&spec_file))?;
        self.kubectl(&[verb.as_ref(), "-f".as_ref(), spec_file.as_os_str()])?;
        if verb == "create" {
            // A create keeps the status it was given (a kubelet registers its Node so).
            return Ok(());
        }
        let status_file = self.dir.join("node-status.json");
        fs::write(&status_file, list(statuses).to_string()).map_err(file_err(&status_file))?;
        // `replace` (an unconditional update of the status subresource) rather than a
        // server-side apply, which refuses two InternalIP addresses: it keys addresses by type.
        self.kubectl(&[
            "replace".as_ref(),
            "--subresource=status".as_ref(),
            "-f".as_ref(),
            status_file.as_os_str(),
        ])
        .map(drop)
    }

    /// Deletes the Node object `name` (the namespace stays: a node "removed from the cluster").
    pub fn delete_node_object(&self, name: &str) -> Result<()> {
        self.kubectl(&["delete", "node", name, "--ignore-not-found", "--wait=false"])
            .map(drop)
    }

    /// Re-creates the Node object `name` (after [`Lab::delete_node_object`]) from the lab's plan.
    pub fn create_node_object_again(&self, name: &str) -> Result<()> {
        let node = self.node(name)?.clone();
        self.create_new_node_objects(std::slice::from_ref(&node))
    }

    /// Gives node `name` new pod CIDRs (one IPv4, optionally one IPv6).
    ///
    /// `spec.podCIDRs` cannot change once set, so, as when a real node re-registers, the Node
    /// object is deleted and created again with the new CIDRs; watchers see a delete and an add.
    pub fn set_pod_cidr(&mut self, name: &str, cidrs: &[IpNetwork]) -> Result<()> {
        let idx = self
            .state
            .nodes
            .iter()
            .position(|n| n.name == name)
            .ok_or_else(|| LabError::UnknownNode {
                lab: self.name.to_string(),
                node: name.to_owned(),
            })?;
        let mut node = self.state.nodes[idx].clone();
        let mut v4 = None;
        let mut v6 = None;
        for c in cidrs {
            match c {
                IpNetwork::V4(n) => v4 = Some(*n),
                IpNetwork::V6(n) => v6 = Some(*n),
            }
        }
        node.pod_cidr_v4 =
            v4.ok_or_else(|| LabError::Invalid("set_pod_cidr needs an IPv4 CIDR".into()))?;
        node.pod_cidr_v6 = v6;
        self.delete_node_object(name)?;
        self.create_new_node_objects(std::slice::from_ref(&node))?;
        self.state.nodes[idx] = node;
        self.save_state()
    }

    /// Puts every node back on its planned pod CIDRs (10.244.`index`.0/24, ...): all Node
    /// objects deleted, then created again (labels and annotations gone), in three kubectl
    /// calls whatever the number of nodes.
    pub fn reset_nodes_to_plan(&mut self) -> Result<()> {
        let ipv6 = self.state.ipv6;
        for n in &mut self.state.nodes {
            n.pod_cidr_v4 = crate::plan::pod_cidr_v4(n.index);
            n.pod_cidr_v6 = ipv6.then(|| crate::plan::pod_cidr_v6(n.index));
        }
        self.save_state()?;
        self.kubectl(&["delete", "nodes", "--all", "--wait=true"])?;
        let nodes = self.state.nodes.clone();
        self.create_new_node_objects(&nodes)
    }

    /// Adds a node at runtime: the next `node<i>` namespace on the fabric, its Node object, and
    /// the router's neighbour. Returns the new node.
    pub fn add_node(&mut self) -> Result<LabNode> {
        let index = self.state.nodes.iter().map(|n| n.index).max().unwrap_or(0) + 1;
        if index > MAX_NODES {
            return Err(LabError::Invalid(format!(
                "a lab holds at most {MAX_NODES} nodes"
            )));
        }
        let node = LabNode::planned(&self.name, index, self.state.racks, self.state.ipv6);
        self.state.nodes.push(node.clone());
        self.save_state()?;
        self.build_node(&node)?;
        self.add_fabric_neighbour(&node)?;
        if self.state.control_plane {
            self.create_node_object(&node)?;
        }
        if let Some(router) = self.router() {
            let new: Vec<Neighbor> = node
                .ips()
                .into_iter()
                .map(|addr| Neighbor {
                    node: node.name.clone(),
                    addr,
                })
                .collect();
            router.add_neighbors(&new, &self.router_neighbors())?;
        }
        Ok(node)
    }

    /// A kubeconfig for ServiceAccount `namespace/name` (both created if missing), with a token
    /// valid for 24 hours, written to `<lab dir>/kubeconfig-<namespace>-<name>`. The account
    /// has no permissions until the caller binds it a role.
    pub fn service_account_kubeconfig(&self, namespace: &str, name: &str) -> Result<PathBuf> {
        let manifest = json!({
            "apiVersion": "v1",
            "kind": "List",
            "items": [
                { "apiVersion": "v1", "kind": "Namespace", "metadata": { "name": namespace } },
                { "apiVersion": "v1", "kind": "ServiceAccount", "metadata": { "name": name, "namespace": namespace } },
            ],
        });
        let path = self.dir.join(format!("sa-{namespace}-{name}.json"));
        fs::write(&path, manifest.to_string()).map_err(file_err(&path))?;
        self.kubectl(&["apply".as_ref(), "-f".as_ref(), path.as_os_str()])?;
        let token = self.kubectl(&["create", "token", "-n", namespace, name, "--duration=24h"])?;
        let config = control_plane::kubeconfig(&self.pki(), json!({ "token": token.trim() }));
        let out = self.dir.join(format!("kubeconfig-{namespace}-{name}"));
        fs::write(&out, config.to_string()).map_err(file_err(&out))?;
        Ok(out)
    }
}
