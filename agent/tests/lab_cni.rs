//! End-to-end: pods created through the `podroute` CNI plugin (driven by `cnitool`, as a
//! runtime would) on every node of a lab, with the conflist each node's `podroute-agent` wrote,
//! reach each other across nodes over the agents' routes (needs root: run by `make test`).
//!
//! The plugin binary is the workspace's `podroute`, found next to this package's agent binary
//! (`cargo test --workspace` and `make test` build it); `cnitool` comes from the lab's
//! control-plane bin directory.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::time::{Duration, Instant};

use podroute_lab::control_plane::ControlPlaneBins;
use podroute_lab::{Lab, LabConfig, LabNode, LabPod, LabProcess};

/// Longest wait for a node to become ready (its conflist written).
const READY: Duration = Duration::from_secs(60);
/// Longer than two of the agents' `--reconcile-period`s (2 s): time for the periodic
/// reconcile, with stale-route removal, to have run on every node.
const AFTER_RECONCILES: Duration = Duration::from_secs(5);
/// How long the agents' sweeps may take to destroy released veths: two periods, with room
/// for a loaded machine.
const SWEPT: Duration = Duration::from_secs(15);
/// Pods created on every node.
const PODS_PER_NODE: [&str; 2] = ["a", "b"];

fn lab_name(tag: &str) -> String {
    format!("cni{tag}{}", std::process::id() % 100_000)
}

/// The directory holding the `podroute` plugin binary: the same target directory as the agent.
fn plugin_dir() -> PathBuf {
    let agent = Path::new(env!("CARGO_BIN_EXE_podroute-agent"));
    let dir = agent.parent().expect("target dir").to_path_buf();
    assert!(
        dir.join("podroute").is_file(),
        "{}/podroute is missing: build it with `cargo build -p podroute-cni` \
         (make test builds the whole workspace first)",
        dir.display()
    );
    dir
}

/// Where one node keeps its CNI files inside the lab directory.
struct NodeCni {
    node: LabNode,
    /// `<lab dir>/<node>/`: holds the conflist (cnitool's NETCONFPATH).
    netconf_dir: PathBuf,
    /// `<lab dir>/<node>/cni`: the plugin's address store.
    data_dir: PathBuf,
}

impl NodeCni {
    fn new(lab: &Lab, node: &LabNode) -> Self {
        let netconf_dir = lab.dir().join(&node.name);
        std::fs::create_dir_all(&netconf_dir).expect("node dir");
        Self {
            node: node.clone(),
            data_dir: netconf_dir.join("cni"),
            netconf_dir,
        }
    }

    fn conflist(&self) -> PathBuf {
        self.netconf_dir.join("10-podroute.conflist")
    }

    /// Addresses the plugin holds: the store's files other than its lock and cursors.
    fn held_addresses(&self) -> Vec<String> {
        let mut held: Vec<String> = std::fs::read_dir(self.data_dir.join("podroute"))
            .into_iter()
            .flatten()
            .filter_map(Result::ok)
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        held.sort();
        held
    }
}

/// Starts the agent on `node`, writing its conflist and address store where `cni` says.
fn spawn_agent(lab: &Lab, cni: &NodeCni) -> LabProcess {
    let args = [
        "--kubeconfig".to_owned(),
        lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        cni.node.name.clone(),
        "--cni-conflist".to_owned(),
        cni.conflist().display().to_string(),
        "--cni-data-dir".to_owned(),
        cni.data_dir.display().to_string(),
        "--reconcile-period".to_owned(),
        "2s".to_owned(),
        "--hold-time".to_owned(),
        "9".to_owned(),
    ];
    lab.spawn(
        &cni.node.name,
        "agent",
        env!("CARGO_BIN_EXE_podroute-agent"),
        &args,
        &[("RUST_LOG", "info,podroute_agent=debug")],
    )
    .expect("spawn agent")
}

/// Runs `cnitool <op> podroute /run/netns/<pod ns>` inside the node's namespace.
fn cnitool(cnitool: &Path, plugins: &Path, cni: &NodeCni, op: &str, pod_ns: &str) -> Output {
    std::process::Command::new("ip")
        .args(["netns", "exec", &cni.node.netns])
        .arg(cnitool)
        .args([op, "podroute", &format!("/run/netns/{pod_ns}")])
        .env("CNI_PATH", format!("{}:/usr/lib/cni", plugins.display()))
        .env("NETCONFPATH", &cni.netconf_dir)
        .output()
        .expect("spawn cnitool")
}

fn ok(out: &Output, what: &str) -> String {
    assert!(
        out.status.success(),
        "{what} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A pod made through the plugin, and the host veth the plugin reported for it.
struct CniPod {
    pod: LabPod,
    host_veth: String,
}

/// Creates pod `name` on the node of `cni` through cnitool and reads its addresses from the
/// CNI result.
fn add_pod(lab: &Lab, tool: &Path, plugins: &Path, cni: &NodeCni, name: &str) -> CniPod {
    let netns = format!("{}-pod-{name}", lab.name());
    let made = std::process::Command::new("ip")
        .args(["netns", "add", &netns])
        .output()
        .expect("spawn ip");
    ok(&made, "ip netns add");
    let out = ok(&cnitool(tool, plugins, cni, "add", &netns), "cnitool add");
    let result: serde_json::Value = serde_json::from_str(&out).expect("CNI result is JSON");
    let address = |v6: bool| {
        result["ips"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|ip| ip["address"].as_str())
            .filter_map(|a| a.split('/').next()?.parse::<std::net::IpAddr>().ok())
            .find(|a| a.is_ipv6() == v6)
    };
    let ipv4 = address(false).unwrap_or_else(|| panic!("no IPv4 address in {result}"));
    let ipv6 = address(true);
    for (ip, cidr) in [Some(ipv4), ipv6]
        .into_iter()
        .flatten()
        .zip(cni.node.pod_cidrs())
    {
        assert!(cidr.contains(ip), "{name}: {ip} is not in {cidr}");
    }
    assert_eq!(ipv6.is_some(), lab.ipv6(), "{name}: families in {result}");
    let host_veth = result["interfaces"]
        .as_array()
        .into_iter()
        .flatten()
        .find(|i| i.get("sandbox").is_none())
        .and_then(|i| i["name"].as_str())
        .unwrap_or_else(|| panic!("no host interface in {result}"))
        .to_owned();
    CniPod {
        pod: LabPod {
            name: name.to_owned(),
            node: cni.node.name.clone(),
            netns,
            host_veth: host_veth.clone(),
            ipv4,
            ipv6,
        },
        host_veth,
    }
}

/// Every pod pings every other pod, on IPv4 and (dual-stack) IPv6.
fn ping_matrix(lab: &Lab, pods: &[CniPod]) {
    let mut failures = Vec::new();
    let mut pings = 0;
    for from in pods {
        for to in pods.iter().filter(|p| p.pod.name != from.pod.name) {
            for ip in [Some(to.pod.ipv4), to.pod.ipv6].into_iter().flatten() {
                pings += 1;
                if !lab.ping(&from.pod, ip) {
                    failures.push(format!("{} -> {} ({ip})", from.pod.name, to.pod.name));
                }
            }
        }
    }
    assert!(failures.is_empty(), "unreachable pods: {failures:?}");
    eprintln!("ping matrix: {pings} pings between {} pods", pods.len());
}

/// The host routes of podroute's protocol (`<pod IP>/32`, `/128`) that the plugin installed
/// for the pods of `node` and that are no longer in the node's main table.
fn missing_pod_routes(lab: &Lab, node: &str, pods: &[CniPod]) -> Vec<String> {
    let routes = lab.routes_json(node).expect("routes");
    let present = |ip: std::net::IpAddr, dev: &str| {
        routes.as_array().into_iter().flatten().any(|r| {
            r["dst"].as_str() == Some(ip.to_string().as_str())
                && r["dev"].as_str() == Some(dev)
                && (r["protocol"] == "80" || r["protocol"] == 80)
        })
    };
    pods.iter()
        .filter(|p| p.pod.node == node)
        .flat_map(|p| {
            [Some(p.pod.ipv4), p.pod.ipv6]
                .into_iter()
                .flatten()
                .filter(|ip| !present(*ip, &p.host_veth))
                .map(|ip| format!("{ip} dev {}", p.host_veth))
        })
        .collect()
}

fn link_exists(lab: &Lab, node: &str, link: &str) -> bool {
    lab.exec(node, &["ip", "link", "show", "dev", link])
        .is_ok_and(|o| o.status.success())
}

fn pods_across_nodes(ipv6: bool) {
    let tag = if ipv6 { "6" } else { "4" };
    let lab = Lab::up(&LabConfig::new(lab_name(tag), 3).ipv6(ipv6)).expect("lab up");
    let plugins = plugin_dir();
    let tool = ControlPlaneBins::locate()
        .expect("control-plane bins")
        .dir
        .join("cnitool");
    assert!(tool.is_file(), "{} is missing", tool.display());

    let nodes: Vec<NodeCni> = lab.nodes().iter().map(|n| NodeCni::new(&lab, n)).collect();
    let mut agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();

    // The conflist appears once the agent has programmed the node's routes: its "ready".
    for n in &nodes {
        let start = Instant::now();
        while !n.conflist().exists() {
            if start.elapsed() > READY {
                let logs: Vec<String> = agents.iter().map(LabProcess::log).collect();
                panic!(
                    "{}: no conflist after {READY:?}\nagent logs:\n{}",
                    n.node.name,
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }

    let mut pods = Vec::new();
    for n in &nodes {
        for suffix in PODS_PER_NODE {
            let name = format!("c{}{suffix}", n.node.index);
            pods.push(add_pod(&lab, &tool, &plugins, n, &name));
        }
        assert_eq!(
            n.held_addresses().len(),
            PODS_PER_NODE.len() * if ipv6 { 2 } else { 1 }
        );
    }
    let mut addresses: Vec<_> = pods.iter().map(|p| p.pod.ipv4).collect();
    addresses.sort();
    addresses.dedup();
    assert_eq!(addresses.len(), pods.len(), "two pods share an address");

    ping_matrix(&lab, &pods);

    // The agents' periodic reconcile (every 2 s here) removes stale routes of podroute's
    // protocol; the pods' host routes carry that protocol too and must survive it. This is a
    // deliberate wait for that periodic event: more than two reconcile periods.
    std::thread::sleep(AFTER_RECONCILES);
    for n in &nodes {
        let missing = missing_pod_routes(&lab, &n.node.name, &pods);
        assert!(
            missing.is_empty(),
            "{}: pod host routes gone after the agent's reconciles: {missing:?}",
            n.node.name
        );
    }
    ping_matrix(&lab, &pods);

    // DEL: every address goes back to the store, every pod route is gone, every host veth is
    // released (down, marked) at once.
    for p in &pods {
        let n = nodes
            .iter()
            .find(|n| n.node.name == p.pod.node)
            .expect("pod's node");
        ok(
            &cnitool(&tool, &plugins, n, "del", &p.pod.netns),
            "cnitool del",
        );
        let link = lab
            .exec_ok(&n.node.name, &["ip", "link", "show", "dev", &p.host_veth])
            .expect("host veth right after DEL");
        assert!(
            link.contains("state DOWN") && link.contains("alias podroute:released"),
            "{}: host veth not released by DEL: {link}",
            p.pod.name
        );
    }
    for n in &nodes {
        assert_eq!(n.held_addresses(), Vec::<String>::new(), "{}", n.node.name);
        let left: Vec<String> = lab
            .routes_json(&n.node.name)
            .expect("routes")
            .as_array()
            .into_iter()
            .flatten()
            .filter(|r| r["dev"].as_str().is_some_and(|d| d.starts_with("pr")))
            .map(ToString::to_string)
            .collect();
        assert!(
            left.is_empty(),
            "{}: pod routes left: {left:?}",
            n.node.name
        );
    }

    // The pods' namespaces live on (the lab keeps them), so nothing else destroys the
    // released veths: each agent's sweep does, one reconcile period (2 s) after it first sees
    // them, so within two periods.
    let deadline = Instant::now() + SWEPT;
    for p in &pods {
        while link_exists(&lab, &p.pod.node, &p.host_veth) {
            assert!(
                Instant::now() < deadline,
                "{}: released host veth {} still there {SWEPT:?} after DEL",
                p.pod.name,
                p.host_veth
            );
            std::thread::sleep(Duration::from_millis(200));
        }
    }
    for n in &nodes {
        let metrics = lab
            .exec_ok(
                &n.node.name,
                &["curl", "-sf", "http://127.0.0.1:9180/metrics"],
            )
            .expect("metrics");
        let want = format!(
            "podroute_cni_released_veths_destroyed_total {}",
            PODS_PER_NODE.len()
        );
        assert!(metrics.contains(&want), "{}: {metrics}", n.node.name);
    }

    for agent in &mut agents {
        let _ = agent.terminate();
    }
    // The lab's teardown (on drop) removes the pod namespaces with the rest of the lab.
}

#[test]
#[ignore = "needs root: run by make test"]
fn pods_through_the_plugin_reach_each_other_across_nodes_ipv4() {
    pods_across_nodes(false);
}

#[test]
#[ignore = "needs root: run by make test"]
fn pods_through_the_plugin_reach_each_other_across_nodes_dual_stack() {
    pods_across_nodes(true);
}
