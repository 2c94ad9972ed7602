//! End-to-end: pods created through the `podroute` CNI plugin (driven by `cnitool`, as a
//! runtime would) on every node of a lab, with the conflist each node's `podroute-agent` wrote,
//! reach each other across nodes over the agents' routes (needs root: run by `make test`).
//! The IPv4 variant chains Debian's `portmap` and `bandwidth` after podroute (the agents write
//! that conflist) and reaches a pod through a hostPort from another node; the dual-stack
//! variant checks CNI STATUS against the agents' readiness.
//!
//! The plugin binary is the workspace's `podroute`, found next to this package's agent binary
//! (`cargo test --workspace` and `make test` build it); `cnitool` comes from the lab's
//! control-plane bin directory.

use std::path::{Path, PathBuf};
use std::process::Output;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use podroute_lab::cnitool::cnitool_in;
use podroute_lab::control_plane::ControlPlaneBins;
use podroute_lab::{Lab, LabConfig, LabNode, LabPod, LabProcess, Signal};

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
/// The hostPort the chained variant maps to port 80 of its first pod.
const HOST_PORT: u16 = 8080;
/// The runtime's capability arguments for that mapping.
const PORT_MAPPING: &str =
    r#"{"portMappings":[{"hostPort":8080,"containerPort":80,"protocol":"tcp"}]}"#;
/// What the pod's listener answers.
const GREETING: &str = "hello from the pod";

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

    fn readiness_file(&self) -> PathBuf {
        self.netconf_dir.join("cni-ready")
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

/// What differs between the two end-to-end runs.
#[derive(Debug, Clone, Copy)]
struct Variant {
    ipv6: bool,
    /// The agents write `[podroute, portmap, bandwidth]` with cniVersion 1.0.0 (Debian's
    /// reference plugins stop there); otherwise `[podroute]` with 1.1.0 (GC, STATUS).
    chained: bool,
}

/// Starts the agent on `node`, writing its conflist, readiness file and address store where
/// `cni` says.
fn spawn_agent(lab: &Lab, cni: &NodeCni, variant: Variant) -> LabProcess {
    let mut args = vec![
        "--kubeconfig".to_owned(),
        lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        cni.node.name.clone(),
        "--cni-conflist".to_owned(),
        cni.conflist().display().to_string(),
        "--cni-data-dir".to_owned(),
        cni.data_dir.display().to_string(),
        "--cni-readiness-file".to_owned(),
        cni.readiness_file().display().to_string(),
        "--reconcile-period".to_owned(),
        "2s".to_owned(),
        "--hold-time".to_owned(),
        "9".to_owned(),
    ];
    if variant.chained {
        args.extend(
            ["--cni-chain", "portmap,bandwidth", "--cni-version", "1.0.0"].map(String::from),
        );
    }
    lab.spawn(
        &cni.node.name,
        "agent",
        env!("CARGO_BIN_EXE_podroute-agent"),
        &args,
        &[("RUST_LOG", "info,podroute_agent=debug")],
    )
    .expect("spawn agent")
}

/// Runs `cnitool <op> podroute /run/netns/<pod ns>` inside the node's namespace, with
/// `cap_args` as the runtime's capability arguments (`CAP_ARGS`, e.g. port mappings).
fn cnitool(
    cnitool: &Path,
    plugins: &Path,
    cni: &NodeCni,
    op: &str,
    pod_ns: &str,
    cap_args: &str,
) -> Output {
    cnitool_in(
        &cni.node.netns,
        &cni.netconf_dir.join("cnitool-cache"),
        cnitool,
    )
    .args([op, "podroute", &format!("/run/netns/{pod_ns}")])
    .env("CNI_PATH", format!("{}:/usr/lib/cni", plugins.display()))
    .env("NETCONFPATH", &cni.netconf_dir)
    .env("CAP_ARGS", cap_args)
    .output()
    .expect("spawn cnitool")
}

/// Kills the agent on `cni`'s node with SIGKILL (a crash, or the old pod of an upgrade) and
/// starts a new one; the readiness file that answers CNI STATUS must exist the whole time, from
/// before the kill until the new agent is ready: the routes stay, so pods can still be wired.
fn cni_status_stays_ready_through_an_agent_restart(
    lab: &Lab,
    cni: &NodeCni,
    agent: &mut LabProcess,
    variant: Variant,
) {
    let file = cni.readiness_file();
    assert!(
        file.exists(),
        "{} missing before the restart",
        file.display()
    );
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = {
        let (stop, file) = (stop.clone(), file.clone());
        std::thread::spawn(move || {
            let mut missing = 0u32;
            while !stop.load(Ordering::Relaxed) {
                missing += u32::from(!file.exists());
                std::thread::sleep(Duration::from_millis(2));
            }
            missing
        })
    };
    agent.kill(Signal::SIGKILL).expect("kill the agent");
    agent.wait().expect("reap the agent");
    *agent = spawn_agent(lab, cni, variant);
    let readyz = || {
        lab.exec(
            &cni.node.name,
            &["curl", "-s", "http://127.0.0.1:9180/readyz"],
        )
        .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
        .unwrap_or_default()
    };
    let start = Instant::now();
    while !readyz().starts_with("ready") {
        assert!(
            start.elapsed() < READY,
            "the restarted agent is not ready after {READY:?}: {}\n{}",
            readyz(),
            agent.log()
        );
        std::thread::sleep(Duration::from_millis(100));
    }
    stop.store(true, Ordering::Relaxed);
    let missing = watcher.join().expect("watcher");
    assert_eq!(
        missing,
        0,
        "CNI STATUS answered not ready during the agent restart ({missing} looks saw no {})",
        file.display()
    );
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
fn add_pod(
    lab: &Lab,
    tool: &Path,
    plugins: &Path,
    cni: &NodeCni,
    name: &str,
    cap_args: &str,
) -> CniPod {
    let netns = format!("{}-pod-{name}", lab.name());
    let made = std::process::Command::new("ip")
        .args(["netns", "add", &netns])
        .output()
        .expect("spawn ip");
    ok(&made, "ip netns add");
    let out = ok(
        &cnitool(tool, plugins, cni, "add", &netns, cap_args),
        "cnitool add",
    );
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

fn pods_across_nodes(variant: Variant) {
    let ipv6 = variant.ipv6;
    let tag = if ipv6 { "6" } else { "4" };
    let lab = Lab::up(&LabConfig::new(lab_name(tag), 3).ipv6(ipv6)).expect("lab up");
    let plugins = plugin_dir();
    let tool = ControlPlaneBins::locate()
        .expect("control-plane bins")
        .dir
        .join("cnitool");
    assert!(tool.is_file(), "{} is missing", tool.display());

    let nodes: Vec<NodeCni> = lab.nodes().iter().map(|n| NodeCni::new(&lab, n)).collect();
    let mut agents: Vec<LabProcess> = nodes
        .iter()
        .map(|n| spawn_agent(&lab, n, variant))
        .collect();

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
            // The chained variant maps a hostPort to the first pod.
            let cap_args = if variant.chained && pods.is_empty() {
                PORT_MAPPING
            } else {
                ""
            };
            pods.push(add_pod(&lab, &tool, &plugins, n, &name, cap_args));
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
    if variant.chained {
        host_port_reaches_the_pod(&lab, &pods[0]);
    } else {
        for n in &nodes {
            ok(
                &cnitool(&tool, &plugins, n, "status", &pods[0].pod.netns, ""),
                "cnitool status",
            );
        }
        cni_status_stays_ready_through_an_agent_restart(&lab, &nodes[0], &mut agents[0], variant);
        ok(
            &cnitool(&tool, &plugins, &nodes[0], "status", &pods[0].pod.netns, ""),
            "cnitool status after the agent restart",
        );
    }

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
    // Each agent read the plugin's address store on those reconciles: its pods' addresses
    // of every family, against a /24's 254 (and a /64's 2^64 - 1).
    for n in &nodes {
        assert_address_usage(&lab, &n.node.name, PODS_PER_NODE.len(), ipv6);
    }

    // DEL: every address goes back to the store, every pod route is gone, every host veth is
    // released (down, marked) at once.
    for p in &pods {
        let n = nodes
            .iter()
            .find(|n| n.node.name == p.pod.node)
            .expect("pod's node");
        let cap_args = if variant.chained && p.pod.name == pods[0].pod.name {
            PORT_MAPPING
        } else {
            ""
        };
        ok(
            &cnitool(&tool, &plugins, n, "del", &p.pod.netns, cap_args),
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
        // Reconciles ran since the DELs (the sweep is one): the addresses are free again.
        assert_address_usage(&lab, &n.node.name, 0, ipv6);
    }

    if variant.chained {
        let nat = lab
            .exec_ok(&pods[0].pod.node, &["iptables-save", "-t", "nat"])
            .expect("iptables-save");
        assert!(!nat.contains("--dport 8080"), "hostPort DNAT left:\n{nat}");
    } else {
        status_follows_the_agents_readiness(&lab, &tool, &plugins, &nodes[2], &pods[0]);
    }

    for agent in &mut agents {
        let _ = agent.terminate();
    }
    // The lab's teardown (on drop) removes the pod namespaces with the rest of the lab.
}

/// `podroute_pod_addresses_allocated` says `pods` addresses of each family of the node and
/// `podroute_pod_addresses_capacity` what its pod CIDRs hold.
fn assert_address_usage(lab: &Lab, node: &str, pods: usize, ipv6: bool) {
    let metrics = lab
        .exec_ok(node, &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
        .expect("metrics");
    let value = |series: &str| -> Option<f64> {
        metrics
            .lines()
            .find_map(|l| l.strip_prefix(series)?.strip_prefix(' ')?.parse().ok())
    };
    let families: &[(&str, f64)] = if ipv6 {
        &[("ipv4", 254.0), ("ipv6", 18_446_744_073_709_551_615.0)]
    } else {
        &[("ipv4", 254.0)]
    };
    for (family, capacity) in families {
        let allocated = format!("podroute_pod_addresses_allocated{{family=\"{family}\"}}");
        let held = format!("podroute_pod_addresses_capacity{{family=\"{family}\"}}");
        assert_eq!(value(&allocated), Some(pods as f64), "{node}: {metrics}");
        assert_eq!(value(&held), Some(*capacity), "{node}: {metrics}");
    }
    if !ipv6 {
        assert!(
            !metrics.contains("podroute_pod_addresses_allocated{family=\"ipv6\"}"),
            "{node}: no IPv6 pod CIDR, no IPv6 series: {metrics}"
        );
    }
}

/// From another node, connects to the pod's node address at [`HOST_PORT`] and expects the
/// greeting of a listener inside the pod on port 80: portmap's DNAT, chained after podroute.
fn host_port_reaches_the_pod(lab: &Lab, pod: &CniPod) {
    let pod_ns = format!("/run/netns/{}", pod.pod.netns);
    let (listening_tx, listening) = std::sync::mpsc::channel();
    let server = std::thread::spawn(move || serve_one_greeting(&pod_ns, &listening_tx));
    // Connect only once the pod listens, or the connection would be refused.
    listening
        .recv_timeout(Duration::from_secs(10))
        .expect("the pod's listener is up");
    let node_ip = lab.node(&pod.pod.node).expect("pod's node").ipv4;
    let other = lab
        .nodes()
        .iter()
        .find(|n| n.name != pod.pod.node)
        .expect("another node")
        .name
        .clone();
    let script = format!("exec 3<>/dev/tcp/{node_ip}/{HOST_PORT} && cat <&3");
    let reply = lab
        .exec_ok(&other, &["timeout", "10", "bash", "-c", &script])
        .expect("connect to the hostPort");
    server.join().expect("listener thread");
    assert_eq!(
        reply.trim(),
        GREETING,
        "from {other} to {node_ip}:{HOST_PORT}"
    );
}

/// Listens on port 80 inside the namespace `netns` (says so on `listening`), answers one
/// connection with [`GREETING`]; gives up after 20 s.
fn serve_one_greeting(netns: &str, listening: &std::sync::mpsc::Sender<()>) {
    use std::io::Write;
    let ns = std::fs::File::open(netns).expect("open pod netns");
    nix::sched::setns(ns, nix::sched::CloneFlags::CLONE_NEWNET).expect("enter pod netns");
    let listener = std::net::TcpListener::bind("0.0.0.0:80").expect("listen in the pod");
    listener.set_nonblocking(true).expect("nonblocking");
    let _ = listening.send(());
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        match listener.accept() {
            Ok((mut conn, _)) => {
                let _ = conn.write_all(format!("{GREETING}\n").as_bytes());
                return;
            }
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => {
                assert!(
                    Instant::now() < deadline,
                    "no connection through the hostPort"
                );
                std::thread::sleep(Duration::from_millis(50));
            }
            Err(e) => panic!("accept in the pod: {e}"),
        }
    }
}

/// CNI STATUS on `node` fails ("not available") while its agent is not ready, here because
/// its Node object is gone, and succeeds again once the Node is back.
fn status_follows_the_agents_readiness(
    lab: &Lab,
    tool: &Path,
    plugins: &Path,
    node: &NodeCni,
    any_pod: &CniPod,
) {
    let status = || cnitool(tool, plugins, node, "status", &any_pod.pod.netns, "");
    assert!(node.readiness_file().exists());
    lab.delete_node_object(&node.node.name)
        .expect("delete node");
    let not_ready =
        podroute_lab::lab::wait_until(Duration::from_secs(30), || !status().status.success());
    assert!(
        not_ready,
        "STATUS still succeeds after the Node was deleted"
    );
    let out = status();
    let said = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(said.contains("not ready"), "{said}");
    assert!(!node.readiness_file().exists());

    lab.create_node_object_again(&node.node.name)
        .expect("create node");
    let ready =
        podroute_lab::lab::wait_until(Duration::from_secs(60), || status().status.success());
    assert!(ready, "STATUS still fails after the Node came back");
}

#[test]
#[ignore = "needs root: run by make test"]
fn pods_through_the_plugin_chained_with_portmap_and_bandwidth_ipv4() {
    pods_across_nodes(Variant {
        ipv6: false,
        chained: true,
    });
}

#[test]
#[ignore = "needs root: run by make test"]
fn pods_through_the_plugin_reach_each_other_across_nodes_dual_stack() {
    pods_across_nodes(Variant {
        ipv6: true,
        chained: false,
    });
}
