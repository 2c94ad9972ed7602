//! Mesh scale (issue 15, item 2): one podroute-agent, or kube-router, with many simulated mesh
//! peers.
//!
//! ```text
//!   <lab>-fabric                                  <lab>-node1 (198.18.0.1)
//!   br0 198.18.0.254 ◄──────────────────────────── route 198.18.16.0/20 via 198.18.0.254
//!   lo: 198.18.16.1 … 198.18.19.231/32            podroute-agent (release), measured in /proc
//!   generator: one listener, one tokio task per simulated node, one current-thread runtime
//! ```
//!
//! The simulated nodes sit behind one routed hop, so the node's neighbour table holds one
//! entry (198.18.0.254) whatever their number: the host-wide neighbour limit of issue 15 does
//! not come into play. Each has a Node object in the lab's API server (InternalIP its
//! address, a /26 pod CIDR from 10.244.6.0 upwards: the lab's own nodes hold 10.244.<i>.0/24,
//! i ≤ 5 here), which is how the agent learns its mesh peers; the agent resolves each next
//! hop through the route to 198.18.0.254 and installs `<pod CIDR> via 198.18.0.254`.
//!
//! Measured from outside the agent: time from its start to every session Established (seen
//! by the generator) and to every pod CIDR in the node's kernel table (protocol 80); then its
//! RSS and the CPU it uses over a steady window in which only KEEPALIVEs flow; the hold time
//! it offers and how often its KEEPALIVEs arrive.
//!
//! With BFD ([`MeshConfig::bfd`]), the lab gets podroute's CRDs and a BGPConfiguration whose
//! `nodeToNodeMesh.bfd` asks for 300 ms × 3, so the agent runs single-hop BFD (UDP 3784,
//! TTL 255) to every simulated node, and the generator answers for each
//! ([`bfd_responder`]). The simulated addresses are local to the fabric namespace, whose
//! bridge the node's veth is on: the agent's packets are delivered there, not forwarded, so
//! they arrive with TTL 255, and the answers reach the node directly. The bring-up then also
//! waits for every BFD session Up (seen by the generator), and the steady window counts the
//! BFD packets and reads the agent's `podroute_bfd_sessions{state="up"}`.
//!
//! With kube-router ([`MeshConfig::system`]; v2.1.0 as a router alone, started as the
//! convergence benchmark starts it) the Node objects and the generator are the same, with
//! one difference: kube-router installs a learned route only when its next hop is in the
//! subnet of one of its node's addresses (`injectRoute`: otherwise "let BGP do its thing",
//! no route, overlays being off), and 198.18.16.x is not in 198.18.0.0/24. So its simulated
//! peers announce their pod CIDRs via the routed hop itself, 198.18.0.254 (a third-party next
//! hop, which iBGP passes unchanged), and the routes end up the same as podroute's:
//! `<pod CIDR> via 198.18.0.254`, protocol 0x11. kube-router has no BFD.

pub mod bfd_responder;
pub mod generator;

use std::collections::BTreeSet;
use std::net::Ipv4Addr;
use std::path::PathBuf;
use std::process::Command;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use ipnetwork::Ipv4Network;
use podroute_lab::{Lab, LabConfig, LabNode, Signal, Tor};
use serde::{Deserialize, Serialize};
use serde_json::json;

use crate::convergence::{Binaries, System, systems};
use crate::error::{BenchError, Result, io_err};
use crate::netns::ip_batch;
use crate::procstat;
use crate::receivers::AS;
use crate::results::Machine;
use generator::{Generator, SimulatedNode};

/// Most simulated nodes the plan's 198.18.16.0/20 and the /26s from 10.244.6.0 hold.
pub const MAX_PEERS: usize = 999;
/// The routed hop in front of the simulated nodes: the fabric bridge's address.
const GATEWAY: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// Sampling period of the bring-up.
const POLL: Duration = Duration::from_millis(50);
/// Quiet time after bring-up before the steady window (the agent's start-up work done).
const SETTLE: Duration = Duration::from_secs(5);

/// What to run.
#[derive(Debug, Clone)]
pub struct MeshConfig {
    /// The lab's name (brought up and torn down here).
    pub lab_name: String,
    /// Simulated mesh peers (at most [`MAX_PEERS`]).
    pub peers: usize,
    /// Steady window with keepalives only.
    pub steady: Duration,
    /// Longest wait for every session and route.
    pub timeout: Duration,
    /// The system under test.
    pub system: System,
    /// The podroute-agent binary.
    pub agent_bin: PathBuf,
    /// The kube-router binary (with [`System::KubeRouter`]).
    pub kube_router: Option<PathBuf>,
    /// The JSON result file.
    pub output: PathBuf,
    /// BFD (300 ms × 3) on every mesh session (podroute only).
    pub bfd: bool,
}

/// One mesh run, as written to the result file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct MeshResult {
    /// Where it ran.
    pub machine: Machine,
    /// The system under test.
    #[serde(default)]
    pub system: System,
    /// Start time (seconds since the epoch).
    pub started_unix: u64,
    /// Simulated peers (Node objects, sessions).
    pub peers: usize,
    /// Sessions Established at the end of the bring-up.
    pub established: usize,
    /// Pod CIDR routes in the kernel at the end of the bring-up.
    pub routes: u64,
    /// Agent start → first session Established, seconds.
    pub first_established_s: Option<f64>,
    /// Agent start → every session Established, seconds.
    pub all_established_s: Option<f64>,
    /// Agent start → every pod CIDR in the kernel, seconds.
    pub all_routes_s: Option<f64>,
    /// The kernel's podroute routes are exactly the simulated nodes' pod CIDRs, each via
    /// the routed hop.
    pub routes_match: bool,
    /// The agent's RSS at the start of the steady window, bytes.
    pub rss_bytes: Option<u64>,
    /// The agent's RSS at the end of the steady window, bytes.
    pub rss_end_bytes: Option<u64>,
    /// The agent's peak RSS since it started (`VmHWM`), bytes.
    pub rss_peak_bytes: Option<u64>,
    /// Length of the steady window, seconds.
    pub steady_s: f64,
    /// CPU seconds the agent used in the steady window.
    pub steady_cpu_s: Option<f64>,
    /// The same, in percent of one core.
    pub steady_cpu_percent: Option<f64>,
    /// CPU seconds the agent used from its start to the end of the bring-up.
    pub bring_up_cpu_s: Option<f64>,
    /// The hold time in the agent's OPENs (seconds; every session offered the same).
    pub agent_hold_time_s: Option<u16>,
    /// The restart time of the agent's graceful-restart capability.
    pub agent_restart_time_s: Option<u16>,
    /// The capabilities in the agent's OPEN (first session).
    #[serde(default)]
    pub agent_capabilities: Vec<String>,
    /// UPDATEs the agent sent over all sessions by the end (its own pod CIDR, End-of-RIB).
    #[serde(default)]
    pub agent_updates: u64,
    /// Mean time between the agent's KEEPALIVEs on one session in the steady window.
    pub agent_keepalive_interval_s: Option<f64>,
    /// KEEPALIVEs the generator sent in the steady window (all sessions).
    pub generator_keepalives: u64,
    /// Sessions that ended or were opened again in the steady window.
    pub sessions_lost: usize,
    /// Connections the agent opened during the bring-up beyond one per peer (a connection
    /// it gave up on and opened again).
    pub extra_connections: u64,
    /// BFD ran on the mesh sessions.
    #[serde(default)]
    pub bfd: bool,
    /// Agent start → every BFD session Up (seen by the generator), seconds.
    #[serde(default)]
    pub all_bfd_up_s: Option<f64>,
    /// BFD sessions Up at the end of the steady window, by the generator's endpoints.
    #[serde(default)]
    pub bfd_up: u64,
    /// The agent's `podroute_bfd_sessions{state="up"}` at the end of the steady window.
    #[serde(default)]
    pub agent_bfd_up: Option<u64>,
    /// BFD packets per second between the agent and the generator in the steady window (both
    /// directions).
    #[serde(default)]
    pub bfd_packets_per_s: Option<f64>,
    /// BFD sessions that went from Up to Down in the steady window (generator's view).
    #[serde(default)]
    pub bfd_downs: u64,
    /// Datagrams the generator's BFD dropped in the steady window (TTL, unknown address).
    #[serde(default)]
    pub bfd_dropped: u64,
    /// What went wrong, if the run failed.
    pub error: Option<String>,
}

/// The simulated node `i` (0-based): 198.18.16.1 upwards, pod CIDR the `i`-th /26 from
/// 10.244.6.0.
pub fn simulated_node(i: usize) -> SimulatedNode {
    let address = u32::from(Ipv4Addr::new(198, 18, 16, 1)) + i as u32;
    let cidr = u32::from(Ipv4Addr::new(10, 244, 6, 0)) + 64 * i as u32;
    SimulatedNode {
        address: Ipv4Addr::from(address),
        // A /26 on a multiple of 64 is always a valid network.
        pod_cidr: Ipv4Network::new(Ipv4Addr::from(cidr), 26)
            .unwrap_or_else(|_| Ipv4Network::from(Ipv4Addr::from(cidr))),
    }
}

/// Runs the mesh benchmark once with `cfg.system`; writes `cfg.output` and returns the result.
/// `cancel` (SIGINT/SIGTERM) stops it at its next step; the lab is torn down either way.
pub fn run(cfg: &MeshConfig, cancel: &AtomicBool) -> Result<MeshResult> {
    if cfg.peers == 0 || cfg.peers > MAX_PEERS {
        return Err(BenchError::Failed(format!(
            "peers must be 1..={MAX_PEERS}, not {}",
            cfg.peers
        )));
    }
    match cfg.system {
        System::Podroute if !cfg.agent_bin.is_file() => {
            return Err(BenchError::Failed(format!(
                "{} not found: cargo build --release -p podroute-agent",
                cfg.agent_bin.display()
            )));
        }
        System::KubeRouter if cfg.bfd => {
            return Err(BenchError::Failed(
                "kube-router runs no BFD: --bfd is for podroute".into(),
            ));
        }
        System::KubeRouter if !cfg.kube_router.as_deref().is_some_and(|b| b.is_file()) => {
            return Err(BenchError::Failed(format!(
                "no kube-router binary ({:?}): tests/scripts/kube-router.sh builds it",
                cfg.kube_router
            )));
        }
        _ => {}
    }
    let _ = Lab::down_by_name(&cfg.lab_name);
    eprintln!("mesh: bringing up lab {}", cfg.lab_name);
    let lab = Lab::up(&LabConfig::new(&cfg.lab_name, 1).tor(Tor::None))?;
    let node = lab.nodes()[0].clone();
    let nodes: Vec<SimulatedNode> = (0..cfg.peers).map(simulated_node).collect();
    let mut result = MeshResult {
        machine: crate::suite::machine(measured(cfg)),
        system: cfg.system,
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        peers: cfg.peers,
        steady_s: cfg.steady.as_secs_f64(),
        bfd: cfg.bfd,
        ..MeshResult::default()
    };
    let outcome = measure(cfg, &lab, &node, &nodes, cancel, &mut result);
    if let Err(e) = &outcome {
        result.error = Some(e.to_string());
    }
    write(cfg, &result)?;
    drop(lab);
    outcome.map(|()| result)
}

/// The binary of the system under test.
fn measured(cfg: &MeshConfig) -> &std::path::Path {
    match cfg.system {
        System::Podroute => &cfg.agent_bin,
        System::KubeRouter => cfg.kube_router.as_deref().unwrap_or(&cfg.agent_bin),
    }
}

fn write(cfg: &MeshConfig, result: &MeshResult) -> Result<()> {
    if let Some(dir) = cfg.output.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    let json = serde_json::to_string_pretty(result)
        .map_err(|e| BenchError::Failed(format!("results to JSON: {e}")))?;
    std::fs::write(&cfg.output, json + "\n")
        .map_err(io_err(format!("write {}", cfg.output.display())))
}

fn measure(
    cfg: &MeshConfig,
    lab: &Lab,
    node: &LabNode,
    nodes: &[SimulatedNode],
    cancel: &AtomicBool,
    r: &mut MeshResult,
) -> Result<()> {
    place_addresses(lab, node, nodes)?;
    eprintln!("mesh: creating {} Node objects", nodes.len());
    create_node_objects(lab, nodes)?;
    if cfg.bfd {
        mesh_bfd(lab)?;
    }
    // kube-router's next hops must be on its node's subnet (module docs).
    let next_hop = (cfg.system == System::KubeRouter).then_some(GATEWAY);
    let generator = Generator::start(
        &lab.fabric_ns(),
        AS,
        nodes.to_vec(),
        next_hop,
        cfg.bfd.then_some(node.ipv4),
    )?;
    let bins = Binaries {
        agent: cfg.agent_bin.clone(),
        agent_log: "info".into(),
        kube_router: cfg.kube_router.clone(),
    };
    let protocol = cfg.system.route_protocol();
    let started = Instant::now();
    let mut agent = systems::start(lab, node, cfg.system, &bins)?;
    let pid = agent.pid();
    let secs = |t: Instant| t.saturating_duration_since(started).as_secs_f64();
    let deadline = started + cfg.timeout;
    let wanted = nodes.len();
    loop {
        if cancel.load(Ordering::SeqCst) {
            return Err(BenchError::Interrupted);
        }
        if !agent.is_running() {
            return Err(BenchError::Failed(format!(
                "{} exited; log {}",
                cfg.system.name(),
                agent.log_path().display()
            )));
        }
        let states = generator.states();
        let up: Vec<Instant> = states.iter().filter_map(|s| s.established_at).collect();
        r.established = up.len();
        r.first_established_s = up.iter().min().map(|&t| secs(t));
        if up.len() == wanted && r.all_established_s.is_none() {
            r.all_established_s = up.iter().max().map(|&t| secs(t));
        }
        r.routes = routes_of(node, protocol)?.len() as u64;
        if r.routes >= wanted as u64 && r.all_routes_s.is_none() {
            r.all_routes_s = Some(secs(Instant::now()));
        }
        let bfd_up = generator.bfd().up;
        if cfg.bfd && bfd_up == wanted as u64 && r.all_bfd_up_s.is_none() {
            r.all_bfd_up_s = Some(secs(Instant::now()));
        }
        if r.all_established_s.is_some()
            && r.all_routes_s.is_some()
            && (!cfg.bfd || r.all_bfd_up_s.is_some())
        {
            break;
        }
        if Instant::now() > deadline {
            return Err(BenchError::Failed(format!(
                "after {:.0} s: {}/{wanted} sessions Established, {}/{wanted} routes, \
                 {bfd_up} BFD sessions Up",
                cfg.timeout.as_secs_f64(),
                r.established,
                r.routes
            )));
        }
        thread::sleep(POLL);
    }
    // The process measured is the binary itself, not a wrapper (kube-router is started
    // through `unshare` and `sh`, which exec it).
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).map_err(io_err("agent exe"))?;
    let bin = std::fs::canonicalize(measured(cfg)).map_err(io_err("binary path"))?;
    if exe != bin {
        return Err(BenchError::Failed(format!(
            "pid {pid} runs {}, not {}",
            exe.display(),
            bin.display()
        )));
    }
    r.bring_up_cpu_s = procstat::cpu_seconds(pid).ok();
    eprintln!(
        "mesh: {wanted} sessions in {:.2} s, {wanted} routes in {:.2} s",
        r.all_established_s.unwrap_or_default(),
        r.all_routes_s.unwrap_or_default()
    );
    r.routes_match = routes_match(node, protocol, nodes)?;
    thread::sleep(SETTLE);
    let before = generator.states();
    let bfd_before = generator.bfd();
    let mem = procstat::memory(pid).map_err(io_err("agent memory"))?;
    r.rss_bytes = Some(mem.rss);
    let cpu0 = procstat::cpu_seconds(pid).map_err(io_err("agent CPU"))?;
    let t0 = Instant::now();
    while t0.elapsed() < cfg.steady {
        if cancel.load(Ordering::SeqCst) {
            return Err(BenchError::Interrupted);
        }
        thread::sleep(Duration::from_millis(200));
    }
    let cpu1 = procstat::cpu_seconds(pid).map_err(io_err("agent CPU"))?;
    let window = t0.elapsed().as_secs_f64();
    r.steady_s = window;
    r.steady_cpu_s = Some(cpu1 - cpu0);
    r.steady_cpu_percent = Some(100.0 * (cpu1 - cpu0) / window);
    let mem = procstat::memory(pid).map_err(io_err("agent memory"))?;
    r.rss_end_bytes = Some(mem.rss);
    r.rss_peak_bytes = Some(mem.peak);
    let after = generator.states();
    let bfd_after = generator.bfd();
    if cfg.bfd {
        r.bfd_up = bfd_after.up;
        r.bfd_downs = bfd_after.downs - bfd_before.downs;
        r.bfd_dropped = bfd_after.dropped - bfd_before.dropped;
        let packets =
            (bfd_after.sent + bfd_after.received) - (bfd_before.sent + bfd_before.received);
        r.bfd_packets_per_s = Some(packets as f64 / window);
        r.agent_bfd_up = agent_bfd_up(node);
    }
    let received: u64 = after.iter().map(|s| s.keepalives_received).sum::<u64>()
        - before.iter().map(|s| s.keepalives_received).sum::<u64>();
    if received > 0 {
        r.agent_keepalive_interval_s = Some(window * after.len() as f64 / received as f64);
    }
    r.generator_keepalives = after.iter().map(|s| s.keepalives_sent).sum::<u64>()
        - before.iter().map(|s| s.keepalives_sent).sum::<u64>();
    r.agent_hold_time_s = after.iter().find_map(|s| s.agent_hold_time);
    r.agent_restart_time_s = after.iter().find_map(|s| s.agent_restart_time);
    r.agent_capabilities = after
        .iter()
        .find(|s| !s.agent_capabilities.is_empty())
        .map(|s| s.agent_capabilities.clone())
        .unwrap_or_default();
    r.agent_updates = after.iter().map(|s| s.updates_received).sum();
    r.sessions_lost = before
        .iter()
        .zip(&after)
        .filter(|(b, a)| a.connections != b.connections || a.closed.is_some())
        .count();
    r.extra_connections = before
        .iter()
        .map(|s| u64::from(s.connections.saturating_sub(1)))
        .sum();
    let _ = agent.kill(Signal::SIGTERM);
    let stop_by = Instant::now() + Duration::from_secs(10);
    while agent.is_running() && Instant::now() < stop_by {
        thread::sleep(Duration::from_millis(50));
    }
    let _ = agent.kill(Signal::SIGKILL);
    generator.stop();
    Ok(())
}

/// podroute's CRDs and a BGPConfiguration with BFD at 300 ms × 3 on the mesh (the agent's
/// AS and the rest from its flags).
fn mesh_bfd(lab: &Lab) -> Result<()> {
    crate::convergence::install_crds(lab)?;
    crate::bfd_loss::apply(
        lab,
        "mesh-config",
        "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: default\n\
         spec:\n  nodeToNodeMesh:\n    bfd:\n      minRxMilliseconds: 300\n      \
         minTxMilliseconds: 300\n      multiplier: 3\n",
    )
}

/// The agent's `podroute_bfd_sessions{state="up"}`, read from its metrics endpoint inside the
/// node's namespace.
fn agent_bfd_up(node: &LabNode) -> Option<u64> {
    let read = crate::netns::spawn_in(&node.netns, "mesh-metrics", || {
        Ok(crate::receivers::podroute::metrics())
    })
    .ok()?;
    let text = read.join().ok()?.ok()??;
    crate::receivers::podroute::sum(&text, "podroute_bfd_sessions{state=\"up\"}")
}

/// The simulated nodes' addresses on the fabric namespace's loopback and, in the
/// node's namespace, one route to them through the fabric bridge (all inside the lab).
fn place_addresses(lab: &Lab, node: &LabNode, nodes: &[SimulatedNode]) -> Result<()> {
    // On the loopback: no dummy device (the `dummy` module may be missing), and the
    // addresses are local to the fabric namespace all the same.
    let mut batch = String::from("link set lo up\n");
    for n in nodes {
        batch.push_str(&format!("addr add {}/32 dev lo\n", n.address));
    }
    ip_batch(Some(&lab.fabric_ns()), &batch)?;
    ip_batch(
        Some(&node.netns),
        &format!("route add 198.18.16.0/20 via {GATEWAY} proto static\n"),
    )
}

/// One Node object per simulated node, as the lab writes its own (spec, then InternalIP and
/// Ready through the status subresource), named `mesh-<i>`.
fn create_node_objects(lab: &Lab, nodes: &[SimulatedNode]) -> Result<()> {
    let mut specs = Vec::new();
    let mut statuses = Vec::new();
    for (i, n) in nodes.iter().enumerate() {
        let name = format!("mesh-{:03}", i + 1);
        let cidr = n.pod_cidr.to_string();
        specs.push(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name, "labels": { "kubernetes.io/hostname": name, "podroute.io/lab": "true" } },
            "spec": { "podCIDR": cidr, "podCIDRs": [cidr] },
        }));
        statuses.push(json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": { "name": name },
            "status": {
                "addresses": [
                    { "type": "InternalIP", "address": n.address.to_string() },
                    { "type": "Hostname", "address": name },
                ],
                "conditions": [{ "type": "Ready", "status": "True", "reason": "PodrouteBench",
                                 "message": "simulated mesh peer" }],
            },
        }));
    }
    let list = |items: Vec<serde_json::Value>| json!({ "apiVersion": "v1", "kind": "List", "items": items });
    let spec_file = lab.dir().join("mesh-nodes.json");
    std::fs::write(&spec_file, list(specs).to_string())
        .map_err(io_err(format!("write {}", spec_file.display())))?;
    lab.kubectl(&["create".as_ref(), "-f".as_ref(), spec_file.as_os_str()])?;
    let status_file = lab.dir().join("mesh-node-status.json");
    std::fs::write(&status_file, list(statuses).to_string())
        .map_err(io_err(format!("write {}", status_file.display())))?;
    lab.kubectl(&[
        "replace".as_ref(),
        "--subresource=status".as_ref(),
        "-f".as_ref(),
        status_file.as_os_str(),
    ])?;
    Ok(())
}

/// The node's IPv4 routes of `protocol` with a gateway: (destination, gateway); podroute's
/// blackhole for its own pod CIDR is left out. The harness's netlink counter ([`crate::fib`])
/// counts only the ingest benchmark's prefixes, so this asks `ip`.
fn routes_of(node: &LabNode, protocol: u8) -> Result<BTreeSet<(String, String)>> {
    let out = Command::new("ip")
        .args(["-n", &node.netns, "-j", "-4", "route", "show", "proto"])
        .arg(protocol.to_string())
        .output()
        .map_err(io_err("run ip route"))?;
    let routes: Vec<serde_json::Value> = serde_json::from_slice(&out.stdout)
        .map_err(|e| BenchError::Failed(format!("ip -j route: {e}")))?;
    Ok(routes
        .iter()
        .filter(|r| r.get("gateway").is_some())
        .map(|r| {
            (
                r["dst"].as_str().unwrap_or_default().to_owned(),
                r["gateway"].as_str().unwrap_or_default().to_owned(),
            )
        })
        .collect())
}

/// Whether the node's routes of `protocol` are exactly the simulated pod CIDRs, each via the
/// routed hop.
fn routes_match(node: &LabNode, protocol: u8, nodes: &[SimulatedNode]) -> Result<bool> {
    let want: BTreeSet<(String, String)> = nodes
        .iter()
        .map(|n| (n.pod_cidr.to_string(), GATEWAY.to_string()))
        .collect();
    Ok(routes_of(node, protocol)? == want)
}

/// The result as a Markdown table.
pub fn markdown(r: &MeshResult) -> String {
    let s = |v: Option<f64>| v.map(|v| format!("{v:.2} s")).unwrap_or_else(|| "—".into());
    let mb = |v: Option<u64>| {
        v.map(|b| format!("{:.1} MB", b as f64 / 1e6))
            .unwrap_or_else(|| "—".into())
    };
    let mut out = String::new();
    out.push_str(&format!(
        "| {}, {} mesh peers{} | |\n|---|---|\n",
        match r.system {
            System::Podroute => "podroute-agent",
            System::KubeRouter => "kube-router",
        },
        r.peers,
        if r.bfd { ", BFD 300 ms × 3" } else { "" }
    ));
    let rows = [
        (
            "start → first session Established",
            s(r.first_established_s),
        ),
        ("start → all sessions Established", s(r.all_established_s)),
        ("start → all routes in the kernel", s(r.all_routes_s)),
        ("routes as expected", r.routes_match.to_string()),
        ("CPU during bring-up", s(r.bring_up_cpu_s)),
        (
            "RSS (steady start / end / peak)",
            format!(
                "{} / {} / {}",
                mb(r.rss_bytes),
                mb(r.rss_end_bytes),
                mb(r.rss_peak_bytes)
            ),
        ),
        (
            "steady CPU",
            r.steady_cpu_percent
                .map(|p| format!("{p:.3} % of a core over {:.0} s", r.steady_s))
                .unwrap_or_else(|| "—".into()),
        ),
        (
            "agent hold time / keepalive interval seen",
            format!(
                "{} s / {}",
                r.agent_hold_time_s
                    .map(|h| h.to_string())
                    .unwrap_or_else(|| "—".into()),
                s(r.agent_keepalive_interval_s)
            ),
        ),
        (
            "capabilities offered / UPDATEs sent (all sessions)",
            format!(
                "{} / {}",
                if r.agent_capabilities.is_empty() {
                    "—".to_owned()
                } else {
                    r.agent_capabilities.join(", ")
                },
                r.agent_updates
            ),
        ),
        (
            "sessions lost in the steady window",
            r.sessions_lost.to_string(),
        ),
        (
            "extra connections during bring-up",
            r.extra_connections.to_string(),
        ),
    ];
    for (k, v) in rows {
        out.push_str(&format!("| {k} | {v} |\n"));
    }
    if r.bfd {
        let rows = [
            ("start → all BFD sessions Up", s(r.all_bfd_up_s)),
            (
                "BFD sessions Up at the end (generator / agent metric)",
                format!(
                    "{} / {}",
                    r.bfd_up,
                    r.agent_bfd_up
                        .map(|n| n.to_string())
                        .unwrap_or_else(|| "—".into())
                ),
            ),
            (
                "BFD packets/s in the steady window (both directions)",
                r.bfd_packets_per_s
                    .map(|p| format!("{p:.0}"))
                    .unwrap_or_else(|| "—".into()),
            ),
            (
                "BFD Up → Down / datagrams dropped in the steady window",
                format!("{} / {}", r.bfd_downs, r.bfd_dropped),
            ),
        ];
        for (k, v) in rows {
            out.push_str(&format!("| {k} | {v} |\n"));
        }
    }
    if let Some(e) = &r.error {
        out.push_str(&format!("\nerror: {e}\n"));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn simulated_nodes_stay_in_the_plan_and_do_not_overlap() {
        let first = simulated_node(0);
        let last = simulated_node(MAX_PEERS - 1);
        assert_eq!(first.address, Ipv4Addr::new(198, 18, 16, 1));
        assert_eq!(first.pod_cidr.to_string(), "10.244.6.0/26");
        let scale: Ipv4Network = "198.18.16.0/20".parse().expect("a CIDR");
        let pods: Ipv4Network = "10.244.0.0/16".parse().expect("a CIDR");
        assert!(scale.contains(last.address));
        assert!(pods.contains(last.pod_cidr.broadcast()));
        assert_eq!(last.pod_cidr.to_string(), "10.244.255.128/26");
        assert_ne!(simulated_node(1).pod_cidr, first.pod_cidr);
    }
}
