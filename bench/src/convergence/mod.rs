//! Convergence at cluster scale (issue 15): podroute against kube-router on the same lab, at
//! 20, 50 and 100 nodes, and podroute with two route reflectors against its full mesh.
//!
//! Per lab size, per system (alternating which goes first), on a lab whose Node objects are
//! back on the plan and whose nodes route nothing in 10.244.0.0/16: the system starts on every
//! node (the cold start is timed too), then for `changes` nodes in turn (node3.. round robin;
//! node1 and node2 are the reflectors of the reflector runs, and left alone in every run):
//!
//! - **recreate**: the node's agent stopped, then (clock starts) its Node deleted and created
//!   again with another pod CIDR and the agent started: done when every other node routes the
//!   new CIDR and not the old one (kube-router reads its own CIDR only at start, so the agent
//!   restart is part of the change for both);
//! - **delete**: (clock starts) the Node deleted: done when no other node routes its CIDR;
//!   then its agent is stopped;
//! - **add**: (clock starts) the Node created with its pod CIDR and its agent started: done
//!   when every other node routes the CIDR.
//!
//! "Routes" is what the kernels say ([`monitor`]), each node's moment its own, and the change's
//! time the last of them. A change that is not done within the timeout counts as a timeout
//! and not as a sample.

pub mod api_load;
pub mod monitor;
pub mod report;
pub mod systems;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime};

use ipnetwork::{IpNetwork, Ipv4Network};
use podroute_lab::{Lab, LabConfig, LabNode, LabProcess};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result, io_err};
use monitor::RouteMonitors;
pub use systems::{Binaries, System};

/// The nodes that are never changed (the reflectors of a reflector run).
const FIXED_NODES: usize = 2;
/// How long the cold start of a whole lab may take.
const COLD_START_TIMEOUT: Duration = Duration::from_secs(300);
/// The CRDs (BGPPeer, BGPConfiguration) the reflector runs configure.
const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crds.yaml");

/// Installs podroute's CRDs in `lab` and waits until the API server serves them.
pub(crate) fn install_crds(lab: &Lab) -> Result<()> {
    lab.kubectl(&["apply", "-f", CRDS])?;
    lab.kubectl(&[
        "wait",
        "--for=condition=Established",
        "crd/bgppeers.podroute.io",
        "crd/bgpconfigurations.podroute.io",
    ])?;
    Ok(())
}
/// The reflectors' CLUSTER_ID (both the same, as in agent/README.md).
const REFLECTOR_CLUSTER_ID: &str = "244.0.0.1";

/// How the nodes peer.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Topology {
    /// Every node with every other.
    Mesh,
    /// Mesh off; node1 and node2 reflectors, every node their client.
    Reflectors,
}

/// What to run.
#[derive(Debug, Clone)]
pub struct ConvergenceConfig {
    /// Prefix of the labs' names (the size is appended).
    pub lab_name: String,
    /// Lab sizes, in nodes.
    pub sizes: Vec<u8>,
    /// Changes of each kind per run.
    pub changes: usize,
    /// Changes of each kind in kube-router's runs, if fewer (its changes can take minutes).
    pub kube_router_changes: Option<usize>,
    /// Systems, alternated.
    pub systems: Vec<System>,
    /// Sizes at which podroute also runs with two route reflectors.
    pub reflectors_at: Vec<u8>,
    /// The binaries.
    pub bins: Binaries,
    /// The JSON result file; the Markdown table and SVG charts are written next to it.
    pub output: PathBuf,
    /// How long one change may take.
    pub timeout: Duration,
    /// The steady window (see [`api_load`]), after as long again to settle after the cold
    /// start.
    pub steady: Duration,
}

/// One kind of change in one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KindResult {
    /// `add`, `recreate` or `delete`.
    pub kind: String,
    /// Seconds each change took, in order.
    pub samples_s: Vec<f64>,
    /// Changes not done within the timeout.
    pub timeouts: usize,
}

/// One system on one lab size.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceRun {
    /// podroute or kube-router.
    pub system: System,
    /// Mesh or reflectors.
    pub topology: Topology,
    /// Nodes in the lab.
    pub nodes: u8,
    /// Seconds from starting every agent to every node routing every other's CIDR.
    pub cold_start_s: Option<f64>,
    /// The changes, by kind.
    pub kinds: Vec<KindResult>,
    /// BGPNodeStatus writes and agent CPU, steady and during the changes.
    #[serde(default)]
    pub api_load: Option<api_load::ApiLoad>,
    /// What went wrong, if the run stopped early.
    pub error: Option<String>,
}

/// The result file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ConvergenceResult {
    /// CPU, cores, kernel.
    pub machine: String,
    /// Changes of each kind asked for per run.
    pub changes: usize,
    /// Per-change timeout, seconds.
    pub timeout_s: f64,
    /// The runs, in the order they ran.
    pub runs: Vec<ConvergenceRun>,
}

/// Runs the benchmark, writing the result files after every run.
pub fn run(cfg: &ConvergenceConfig, cancel: Arc<AtomicBool>) -> Result<ConvergenceResult> {
    let mut result = ConvergenceResult {
        machine: report::machine(),
        changes: cfg.changes,
        timeout_s: cfg.timeout.as_secs_f64(),
        runs: Vec::new(),
    };
    for (i, &n) in cfg.sizes.iter().enumerate() {
        let mut lab = Lab::up(&LabConfig::new(format!("{}{n}", cfg.lab_name), n))?;
        install_crds(&lab)?;
        for node in lab.nodes() {
            // kube-router's GoBGP serves gRPC on <node IP>:50051 (fixed in its code) and exits
            // when that port is taken, which an outgoing connection of the system that ran
            // before (an ephemeral port, held for a minute in TIME_WAIT) can do: one node of
            // 100 then never routes. Keep the port out of the ephemeral range (a setting of
            // each network namespace).
            lab.exec_ok(
                &node.name,
                &["sysctl", "-qw", "net.ipv4.ip_local_reserved_ports=50051"],
            )?;
        }
        let namespaces: Vec<(String, String)> = lab
            .nodes()
            .iter()
            .map(|n| (n.name.clone(), n.netns.clone()))
            .collect();
        let monitors = RouteMonitors::start(&namespaces)?;
        let mut order: Vec<(System, Topology)> =
            cfg.systems.iter().map(|s| (*s, Topology::Mesh)).collect();
        if i % 2 == 1 {
            order.reverse();
        }
        if cfg.reflectors_at.contains(&n) && cfg.systems.contains(&System::Podroute) {
            order.push((System::Podroute, Topology::Reflectors));
        }
        for (system, topology) in order {
            if cancel.load(Ordering::Relaxed) {
                return Err(BenchError::Interrupted);
            }
            eprintln!(
                "bench: convergence, {n} nodes, {} ({topology:?})",
                system.name()
            );
            let run = run_one(&mut lab, &monitors, system, topology, cfg, &cancel);
            result.runs.push(run);
            report::write(&result, &cfg.output)?;
        }
    }
    Ok(result)
}

/// One system on the lab: reset, cold start, the changes. Errors end up in the run's record.
fn run_one(
    lab: &mut Lab,
    monitors: &RouteMonitors,
    system: System,
    topology: Topology,
    cfg: &ConvergenceConfig,
    cancel: &AtomicBool,
) -> ConvergenceRun {
    let mut run = ConvergenceRun {
        system,
        topology,
        nodes: u8::try_from(lab.nodes().len()).unwrap_or(u8::MAX),
        cold_start_s: None,
        kinds: ["recreate", "delete", "add"]
            .iter()
            .map(|k| KindResult {
                kind: (*k).to_owned(),
                ..KindResult::default()
            })
            .collect(),
        api_load: None,
        error: None,
    };
    let mut agents: Vec<Option<LabProcess>> = Vec::new();
    if let Err(e) = measure(lab, monitors, cfg, cancel, &mut run, &mut agents) {
        run.error = Some(e.to_string());
    }
    for a in agents.iter_mut().flatten() {
        let _ = a.terminate();
    }
    run
}

fn measure(
    lab: &mut Lab,
    monitors: &RouteMonitors,
    cfg: &ConvergenceConfig,
    cancel: &AtomicBool,
    run: &mut ConvergenceRun,
    agents: &mut Vec<Option<LabProcess>>,
) -> Result<()> {
    prepare(lab, run.topology)?;
    let nodes: Vec<LabNode> = lab.nodes().to_vec();
    let names: Vec<String> = nodes.iter().map(|n| n.name.clone()).collect();

    let t0 = SystemTime::now();
    for n in &nodes {
        agents.push(Some(systems::start(lab, n, run.system, &cfg.bins)?));
    }
    let all: Vec<(String, String, bool)> = nodes
        .iter()
        .flat_map(|to| {
            names
                .iter()
                .filter(|from| **from != to.name)
                .map(|from| (from.clone(), to.pod_cidr_v4.to_string(), true))
        })
        .collect();
    run.cold_start_s = wait_for(monitors, &all, t0, COLD_START_TIMEOUT, cancel)?;
    if run.cold_start_s.is_none() {
        return Err(BenchError::Failed(format!(
            "{} did not converge from a cold start within {} s",
            run.system.name(),
            COLD_START_TIMEOUT.as_secs()
        )));
    }
    // First as long again to settle (statuses are published at most every 10 s), then the
    // steady window.
    pause(cfg.steady, cancel)?;
    let steady = api_load::Mark::take(lab, agents.iter().flatten())?;
    pause(cfg.steady, cancel)?;
    let (steady_s, steady_writes, steady_cpu) =
        steady.until(&api_load::Mark::take(lab, agents.iter().flatten())?);
    let changeable = nodes.len().saturating_sub(FIXED_NODES);
    if changeable == 0 {
        return Err(BenchError::Failed(format!(
            "a lab needs more than {FIXED_NODES} nodes"
        )));
    }
    let changes = match run.system {
        System::KubeRouter => cfg.kube_router_changes.unwrap_or(cfg.changes),
        System::Podroute => cfg.changes,
    };
    // The fixed nodes' agents run through every change.
    let churn = api_load::Mark::take(lab, agents[..FIXED_NODES].iter().flatten())?;
    for i in 0..changes {
        let idx = FIXED_NODES + i % changeable;
        let name = names[idx].clone();
        let others: Vec<String> = names.iter().filter(|n| **n != name).cloned().collect();
        let expect = |dsts: &[(String, bool)]| -> Vec<(String, String, bool)> {
            others
                .iter()
                .flat_map(|o| dsts.iter().map(move |(d, p)| (o.clone(), d.clone(), *p)))
                .collect()
        };

        // recreate: stop, delete + create with the other CIDR, start.
        let old = lab.node(&name)?.pod_cidr_v4;
        let new = other_cidr(old, lab.node(&name)?.index);
        if let Some(mut a) = agents[idx].take() {
            let _ = a.terminate();
        }
        let t0 = SystemTime::now();
        lab.set_pod_cidr(&name, &[IpNetwork::V4(new)])?;
        agents[idx] = Some(systems::start(
            lab,
            lab.node(&name)?,
            run.system,
            &cfg.bins,
        )?);
        let checks = expect(&[(old.to_string(), false), (new.to_string(), true)]);
        if !record(
            &mut run.kinds[0],
            wait_for(monitors, &checks, t0, cfg.timeout, cancel)?,
        ) {
            // The route never arrived: deleting it now would measure nothing.
            continue;
        }

        // delete
        let t0 = SystemTime::now();
        lab.delete_node_object(&name)?;
        let checks = expect(&[(new.to_string(), false)]);
        let deleted = record(
            &mut run.kinds[1],
            wait_for(monitors, &checks, t0, cfg.timeout, cancel)?,
        );
        if let Some(mut a) = agents[idx].take() {
            let _ = a.terminate();
        }
        if !deleted {
            // Still routed: an add now would be done before it started. Put the Node back.
            lab.create_node_object_again(&name)?;
            agents[idx] = Some(systems::start(
                lab,
                lab.node(&name)?,
                run.system,
                &cfg.bins,
            )?);
            continue;
        }

        // add
        let t0 = SystemTime::now();
        lab.create_node_object_again(&name)?;
        agents[idx] = Some(systems::start(
            lab,
            lab.node(&name)?,
            run.system,
            &cfg.bins,
        )?);
        let checks = expect(&[(new.to_string(), true)]);
        record(
            &mut run.kinds[2],
            wait_for(monitors, &checks, t0, cfg.timeout, cancel)?,
        );
    }
    let (churn_s, churn_writes, churn_cpu) = churn.until(&api_load::Mark::take(
        lab,
        agents[..FIXED_NODES].iter().flatten(),
    )?);
    run.api_load = Some(api_load::ApiLoad {
        steady_s,
        steady_status_writes_per_min: steady_writes,
        steady_agent_cpu_pct: steady_cpu,
        churn_s,
        churn_status_writes_per_min: churn_writes,
        churn_agent_cpu_pct: churn_cpu,
    });
    Ok(())
}

/// Sleeps for `how_long`, or until cancelled.
fn pause(how_long: Duration, cancel: &AtomicBool) -> Result<()> {
    let until = Instant::now() + how_long;
    while Instant::now() < until {
        if cancel.load(Ordering::Relaxed) {
            return Err(BenchError::Interrupted);
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    Ok(())
}

/// Node objects back on the plan, no pod route left on any node, the topology configured.
fn prepare(lab: &mut Lab, topology: Topology) -> Result<()> {
    lab.kubectl(&["delete", "bgppeers,bgpconfigurations", "--all"])?;
    lab.reset_nodes_to_plan()?;
    for n in lab.nodes() {
        // Whatever the last system left (podroute keeps its routes over a planned stop).
        lab.exec_ok(&n.name, &["ip", "route", "flush", "root", "10.244.0.0/16"])?;
    }
    if topology == Topology::Reflectors {
        for name in ["node1", "node2"] {
            lab.kubectl(&["label", "node", name, "route-reflector=true"])?;
            lab.kubectl(&[
                "annotate",
                "node",
                name,
                &format!("podroute.io/route-reflector-cluster-id={REFLECTOR_CLUSTER_ID}"),
            ])?;
        }
        let yaml = "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata: {name: default}\n\
                    spec: {nodeToNodeMesh: {enabled: false}}\n---\n\
                    apiVersion: podroute.io/v1alpha1\nkind: BGPPeer\nmetadata: {name: to-reflectors}\n\
                    spec:\n  peerSelector: {matchLabels: {route-reflector: \"true\"}}\n";
        let path = lab.dir().join("conv-reflectors.yaml");
        std::fs::write(&path, yaml).map_err(io_err(format!("write {}", path.display())))?;
        lab.kubectl(&["apply", "-f", &path.display().to_string()])?;
    }
    Ok(())
}

/// The CIDR a node switches to: 10.244.`index + 100`.0/24 and back.
fn other_cidr(current: Ipv4Network, index: u8) -> Ipv4Network {
    let planned = podroute_lab::plan::pod_cidr_v4(index);
    if current == planned {
        let third = index.saturating_add(100);
        Ipv4Network::new(std::net::Ipv4Addr::new(10, 244, third, 0), 24).unwrap_or(planned)
    } else {
        planned
    }
}

/// Adds a sample or a timeout; returns whether the change was done.
fn record(kind: &mut KindResult, took: Option<f64>) -> bool {
    match took {
        Some(s) => kind.samples_s.push(s),
        None => kind.timeouts += 1,
    }
    took.is_some()
}

/// Waits until every `(node, destination, present)` holds; returns the seconds from `t0` to
/// the last kernel event that made one hold, `None` on timeout.
fn wait_for(
    monitors: &RouteMonitors,
    checks: &[(String, String, bool)],
    t0: SystemTime,
    timeout: Duration,
    cancel: &AtomicBool,
) -> Result<Option<f64>> {
    let started = Instant::now();
    loop {
        let mut latest = t0;
        let mut done = true;
        for (node, dst, want) in checks {
            let st = monitors.state(node, dst);
            if st.present != *want {
                done = false;
                break;
            }
            latest = latest.max(st.since);
        }
        if done {
            return Ok(Some(
                latest
                    .duration_since(t0)
                    .unwrap_or(Duration::ZERO)
                    .as_secs_f64(),
            ));
        }
        if cancel.load(Ordering::Relaxed) {
            return Err(BenchError::Interrupted);
        }
        if started.elapsed() > timeout {
            return Ok(None);
        }
        std::thread::sleep(Duration::from_millis(10));
    }
}

/// The kube-router binary `tests/scripts/kube-router.sh` builds (or finds cached).
pub fn build_kube_router() -> Result<PathBuf> {
    let script = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/scripts/kube-router.sh");
    let out = std::process::Command::new(&script)
        .stderr(std::process::Stdio::inherit())
        .output()
        .map_err(io_err(format!("run {}", script.display())))?;
    if !out.status.success() {
        return Err(BenchError::Failed(format!(
            "{} failed ({})",
            script.display(),
            out.status
        )));
    }
    Ok(PathBuf::from(String::from_utf8_lossy(&out.stdout).trim()))
}
