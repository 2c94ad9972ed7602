//! Lab "pods": network namespaces wired into a node with a veth, the way the CNI plugin will
//! do it (the plugin replaces this helper in its own tests), and pinging between them.
//!
//! A pod gets one address from its node's pod CIDR (/32, and /128 in an IPv6 lab) and a default
//! route via 169.254.1.1 (fe80::1), addresses held by the node's end of the veth, the way Calico
//! wires pods. The node gets a host route to the pod with protocol `static`, so the agent's
//! tests can tell it from podroute's own routes.

use std::net::IpAddr;

use crate::cmd;
use crate::error::{LabError, Result};
use crate::lab::Lab;
use crate::names;
use crate::plan::{self, POD_GATEWAY_V4, POD_GATEWAY_V6};

/// How many single pings [`Lab::ping`] tries before giving up.
pub const PING_TRIES: u32 = 3;

/// A pod made by [`Lab::add_pod`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LabPod {
    /// The pod's name (unique in the lab).
    pub name: String,
    /// The node it runs on (`node1`, ...).
    pub node: String,
    /// Its network namespace (`<lab>-pod-<name>`).
    pub netns: String,
    /// The node's end of its veth (`p-<name>`, in the node's namespace).
    pub host_veth: String,
    /// Its IPv4 address (from the node's IPv4 pod CIDR).
    pub ipv4: IpAddr,
    /// Its IPv6 address in an IPv6 lab.
    pub ipv6: Option<IpAddr>,
}

impl Lab {
    /// Creates pod `name` (1-13 characters `[a-z0-9-]`) on node `node`: a namespace, a veth into
    /// the node, the next free address(es) of the node's pod CIDR(s), and the routes both ways.
    pub fn add_pod(&mut self, node: &str, name: &str) -> Result<LabPod> {
        names::check_pod_name(name)?;
        let n = self.node(node)?.clone();
        // The first host number whose address no pod on the node holds yet, found from the
        // node's routes so that pods added by another process (the CLI) are seen too.
        let used: Vec<String> = self
            .pod_routes(node)?
            .into_iter()
            .map(|(_, a)| a.to_string())
            .collect();
        let no_room = || LabError::Invalid(format!("pod CIDR of {node} is full"));
        let mut count = 0;
        let ipv4 = loop {
            let addr = plan::pod_address(n.pod_cidr_v4.into(), count).ok_or_else(no_room)?;
            if !used.contains(&addr.to_string()) {
                break addr;
            }
            count += 1;
        };
        let ipv6 = match n.pod_cidr_v6 {
            Some(c) => Some(plan::pod_address(c.into(), count).ok_or_else(no_room)?),
            None => None,
        };
        let pod = LabPod {
            name: name.to_owned(),
            node: node.to_owned(),
            netns: self.name.pod_ns(name),
            host_veth: names::pod_host_veth(name),
            ipv4,
            ipv6,
        };
        if crate::teardown::list_namespaces()?.contains(&pod.netns) {
            return Err(LabError::Invalid(format!("pod {name} already exists")));
        }
        if let Err(e) = wire_pod(&n.netns, &pod) {
            let _ = cmd::ip(["netns", "del", &pod.netns]);
            return Err(e);
        }
        Ok(pod)
    }

    /// The pods made by [`Lab::add_pod`] (by this process or another, e.g. the CLI), found
    /// from the nodes' host routes into pod veths.
    pub fn pods(&self) -> Result<Vec<LabPod>> {
        let mut pods: Vec<LabPod> = Vec::new();
        for node in self.nodes() {
            for (veth, addr) in self.pod_routes(&node.name)? {
                let Some(pod) = veth.strip_prefix("p-") else {
                    continue;
                };
                match pods.iter_mut().find(|p| p.name == pod) {
                    Some(p) if addr.is_ipv6() => p.ipv6 = Some(addr),
                    Some(_) => {}
                    None if addr.is_ipv4() => pods.push(LabPod {
                        name: pod.to_owned(),
                        node: node.name.clone(),
                        netns: self.name.pod_ns(pod),
                        host_veth: veth.clone(),
                        ipv4: addr,
                        ipv6: None,
                    }),
                    None => {}
                }
            }
        }
        // IPv6 routes come after IPv4 ones, so every pod was found before its IPv6 address.
        Ok(pods)
    }

    /// The node's main-table host routes into pod veths (`p-*`): (veth, pod address).
    fn pod_routes(&self, node: &str) -> Result<Vec<(String, IpAddr)>> {
        let routes = self.routes_json(node)?;
        Ok(routes
            .as_array()
            .into_iter()
            .flatten()
            // Main-table routes carry no "table" key; the local table holds the gateway addresses.
            .filter(|r| r.get("table").is_none())
            .filter_map(|r| {
                let dev = r["dev"].as_str().filter(|d| d.starts_with("p-"))?;
                let addr = r["dst"].as_str()?.parse().ok()?;
                Some((dev.to_owned(), addr))
            })
            .collect())
    }

    /// Deletes a pod's namespace (its veth, and so the node's route to it, go with it).
    pub fn remove_pod(&self, pod: &LabPod) -> Result<()> {
        cmd::ip(["netns", "del", &pod.netns]).map(drop)
    }

    /// Whether `from` (a pod) reaches `to`: up to [`PING_TRIES`] pings, each waiting 1 s.
    pub fn ping(&self, from: &LabPod, to: IpAddr) -> bool {
        ping_in(&from.netns, to)
    }

    /// Whether `target` (`node<i>`, `cp`, `fabric` or a pod name) reaches `to`.
    pub fn ping_from(&self, target: &str, to: IpAddr) -> Result<bool> {
        Ok(ping_in(&self.netns_of(target)?, to))
    }
}

fn ping_in(ns: &str, to: IpAddr) -> bool {
    let to = to.to_string();
    (0..PING_TRIES).any(|_| {
        cmd::output(&mut cmd::in_ns(
            ns,
            "ping",
            ["-n", "-q", "-c", "1", "-W", "1", &to],
        ))
        .is_ok_and(|o| o.status.success())
    })
}

fn wire_pod(node_ns: &str, pod: &LabPod) -> Result<()> {
    let p = &pod.netns;
    let host = &pod.host_veth;
    cmd::ip(["netns", "add", p])?;
    cmd::ip_in(p, ["link", "set", "lo", "up"])?;
    cmd::ip_in(
        node_ns,
        [
            "link", "add", "name", host, "type", "veth", "peer", "name", "eth0", "netns", p,
        ],
    )?;
    // The gateway address on every pod veth of the node: pods answer ARP for it from the node.
    cmd::ip_in(
        node_ns,
        [
            "addr",
            "add",
            &format!("{POD_GATEWAY_V4}/32"),
            "dev",
            host,
            "scope",
            "link",
        ],
    )?;
    if pod.ipv6.is_some() {
        cmd::ip_in(
            node_ns,
            [
                "addr",
                "add",
                &format!("{POD_GATEWAY_V6}/64"),
                "dev",
                host,
                "nodad",
            ],
        )?;
    }
    cmd::ip_in(node_ns, ["link", "set", host, "up"])?;

    cmd::ip_in(
        p,
        ["addr", "add", &format!("{}/32", pod.ipv4), "dev", "eth0"],
    )?;
    if let Some(v6) = pod.ipv6 {
        cmd::ip_in(
            p,
            ["addr", "add", &format!("{v6}/128"), "dev", "eth0", "nodad"],
        )?;
    }
    cmd::ip_in(p, ["link", "set", "eth0", "up"])?;
    cmd::ip_in(
        p,
        [
            "route",
            "add",
            &POD_GATEWAY_V4.to_string(),
            "dev",
            "eth0",
            "scope",
            "link",
        ],
    )?;
    cmd::ip_in(
        p,
        [
            "route",
            "add",
            "default",
            "via",
            &POD_GATEWAY_V4.to_string(),
            "dev",
            "eth0",
        ],
    )?;
    if pod.ipv6.is_some() {
        cmd::ip_in(
            p,
            [
                "-6",
                "route",
                "add",
                "default",
                "via",
                &POD_GATEWAY_V6.to_string(),
                "dev",
                "eth0",
            ],
        )?;
    }

    cmd::ip_in(
        node_ns,
        [
            "route",
            "add",
            &format!("{}/32", pod.ipv4),
            "dev",
            host,
            "proto",
            "static",
            "scope",
            "link",
        ],
    )?;
    if let Some(v6) = pod.ipv6 {
        cmd::ip_in(
            node_ns,
            [
                "-6",
                "route",
                "add",
                &format!("{v6}/128"),
                "dev",
                host,
                "proto",
                "static",
            ],
        )?;
    }
    Ok(())
}
