//! `podroute-bench`: runs the BGP ingest suite (`sudo make bench`) or prints the tables of a
//! result file. Every option is also an environment variable, which is how `make bench`
//! passes them.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use anyhow::{Context, bail};
use clap::{Parser, Subcommand};
use podroute_bench::receivers::ReceiverKind;
use podroute_bench::results::{SuiteResult, markdown};
use podroute_bench::scenario::Scenario;
use podroute_bench::suite::{self, SuiteConfig};

#[derive(Debug, Parser)]
#[command(about = "podroute's BGP ingest benchmark against BIRD 2 and GoBGP (root)")]
struct Cli {
    #[command(subcommand)]
    command: Cmd,
}

#[derive(Debug, Subcommand)]
enum Cmd {
    /// Bring up a lab, run the suite, write the result file and its tables, tear down.
    Run(RunArgs),
    /// The cost of many BFD sessions (CPU and memory of the sans-IO endpoint), as JSON.
    Bfd {
        /// Sessions on the measured endpoint.
        #[arg(long, env = "BENCH_BFD_SESSIONS", default_value_t = 999)]
        sessions: usize,
        /// Simulated seconds measured after bring-up.
        #[arg(long, env = "BENCH_BFD_SECS", default_value_t = 60)]
        secs: u64,
    },
    /// The loss window of a cut router → node link with and without BFD, probes every 10 ms
    /// from behind a BIRD router (JSON file and a table).
    BfdLoss(BfdLossArgs),
    /// Convergence at cluster scale against kube-router (issue 15): route on every other node
    /// after a Node is added, re-created with another pod CIDR, or deleted.
    Convergence(ConvergenceArgs),
    /// Rewrite the Markdown table and SVG charts of a convergence result file, and print the table.
    ConvergenceReport {
        /// The JSON result file.
        file: PathBuf,
    },
    /// One agent with many simulated mesh peers: bring-up time, RSS, steady CPU (JSON file
    /// and a table).
    Mesh(MeshArgs),
    /// Many pods added and deleted at once with podroute's CNI plugin, ptp and bridge (JSON
    /// file and a table).
    CniChurn(ChurnArgs),
    /// Print the Markdown tables of a result file.
    Report {
        /// The JSON result file.
        file: PathBuf,
    },
}

/// `--agent`, the same in every subcommand that runs podroute-agent.
#[derive(Debug, clap::Args)]
struct AgentArg {
    /// The podroute-agent binary (a release build).
    #[arg(
        long = "agent",
        env = "BENCH_AGENT",
        default_value = "target/release/podroute-agent"
    )]
    path: PathBuf,
}

impl AgentArg {
    fn absolute(&self) -> std::io::Result<PathBuf> {
        std::path::absolute(&self.path)
    }
}

#[derive(Debug, clap::Args)]
struct MeshArgs {
    /// Simulated mesh peers (Node objects, sessions), at most 999.
    #[arg(long, env = "BENCH_MESH_PEERS", default_value_t = 999)]
    peers: usize,
    /// Steady window after bring-up, seconds (KEEPALIVEs only).
    #[arg(long, env = "BENCH_MESH_STEADY_SECS", default_value_t = 120)]
    steady_secs: u64,
    /// Longest wait for every session and route, seconds.
    #[arg(long, env = "BENCH_MESH_TIMEOUT_SECS", default_value_t = 300)]
    timeout_secs: u64,
    #[command(flatten)]
    agent: AgentArg,
    /// The JSON result file.
    #[arg(
        long,
        env = "BENCH_MESH_OUTPUT",
        default_value = "target/bench/mesh.json"
    )]
    output: PathBuf,
    /// The lab's name.
    #[arg(long, env = "BENCH_MESH_LAB", default_value = "bmesh")]
    lab: String,
    /// BFD at 300 ms × 3 on every mesh session (BGPConfiguration `nodeToNodeMesh.bfd`); the
    /// generator answers for each simulated node. podroute only.
    #[arg(long, env = "BENCH_MESH_BFD")]
    bfd: bool,
    /// The system under test: podroute or kube-router (v2.1.0, a router alone).
    #[arg(long, env = "BENCH_MESH_SYSTEM", default_value = "podroute")]
    system: String,
    /// The kube-router binary (default: built and cached by tests/scripts/kube-router.sh).
    #[arg(long, env = "BENCH_KUBE_ROUTER")]
    kube_router: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct BfdLossArgs {
    /// Cuts per mode (BFD and hold timer, alternating); medians are taken over them.
    #[arg(long, env = "BENCH_BFD_LOSS_RUNS", default_value_t = 5)]
    runs: u32,
    /// The BGP hold time on both ends, seconds.
    #[arg(long, env = "BENCH_BFD_LOSS_HOLD_SECS", default_value_t = 9)]
    hold_time_secs: u16,
    #[command(flatten)]
    agent: AgentArg,
    /// The JSON result file.
    #[arg(
        long,
        env = "BENCH_BFD_LOSS_OUTPUT",
        default_value = "target/bench/bfd-loss.json"
    )]
    output: PathBuf,
    /// The lab's name.
    #[arg(long, env = "BENCH_BFD_LOSS_LAB", default_value = "bfdloss")]
    lab: String,
}

#[derive(Debug, clap::Args)]
struct ChurnArgs {
    /// Pods added and deleted at once.
    #[arg(long, env = "BENCH_CNI_PODS", default_value_t = 100)]
    pods: usize,
    /// Rounds per plugin.
    #[arg(long, env = "BENCH_CNI_ROUNDS", default_value_t = 5)]
    rounds: u32,
    /// The podroute CNI plugin: the static release build that ships
    /// (tests/scripts/static-bins.sh).
    #[arg(
        long,
        env = "BENCH_CNI_PLUGIN",
        default_value = "target/x86_64-unknown-linux-gnu/release/podroute"
    )]
    plugin: PathBuf,
    /// The JSON result file.
    #[arg(
        long,
        env = "BENCH_CNI_OUTPUT",
        default_value = "target/bench/cni-churn.json"
    )]
    output: PathBuf,
    /// Where the plugins keep their IPAM files (default: the temporary directory). `make
    /// bench` gives a fresh ext4 with a journal, as on a node's disk
    /// (tests/scripts/journaled-scratch.sh).
    #[arg(long, env = "BENCH_CNI_DATA_DIR")]
    data_dir: Option<PathBuf>,
}

#[derive(Debug, clap::Args)]
struct RunArgs {
    /// Scenarios, comma separated: v4-100k, v6-100k, v4-10x100k-same, v4-10x100k-disjoint,
    /// v4-1m, or any v4-<N>, v6-<N>, v4-<P>x<N>-same|disjoint.
    #[arg(
        long,
        env = "BENCH_SCENARIOS",
        value_delimiter = ',',
        default_value = "v4-100k,v6-100k,v4-10x100k-same,v4-10x100k-disjoint,v4-1m"
    )]
    scenarios: Vec<String>,
    /// Receivers, alternated in this order.
    #[arg(
        long,
        env = "BENCH_RECEIVERS",
        value_delimiter = ',',
        default_value = "podroute,bird,gobgp"
    )]
    receivers: Vec<String>,
    /// Runs per scenario and receiver (medians are taken over them).
    #[arg(long, env = "BENCH_RUNS", default_value_t = 5)]
    runs: u32,
    /// Idle window after convergence, seconds.
    #[arg(long, env = "BENCH_IDLE_SECS", default_value_t = 300)]
    idle_secs: u64,
    /// Scenarios with an idle window (comma separated; `all` for every one).
    #[arg(
        long,
        env = "BENCH_IDLE_SCENARIOS",
        value_delimiter = ',',
        default_value = "v4-100k,v4-1m"
    )]
    idle_scenarios: Vec<String>,
    /// A fixed convergence timeout, seconds (default: 30 s + 30 s per 100k routes, capped).
    #[arg(long, env = "BENCH_TIMEOUT_SECS")]
    timeout_secs: Option<u64>,
    /// Cap of the computed convergence timeout, seconds.
    #[arg(long, env = "BENCH_TIMEOUT_CAP_SECS", default_value_t = 300)]
    timeout_cap_secs: u64,
    #[command(flatten)]
    agent: AgentArg,
    /// The JSON result file (results.md is written next to it).
    #[arg(
        long,
        env = "BENCH_OUTPUT",
        default_value = "target/bench/results.json"
    )]
    output: PathBuf,
    /// The lab's name.
    #[arg(long, env = "BENCH_LAB", default_value = "bench")]
    lab: String,
    /// Record the agent with `perf record -g` for this many seconds of each idle window.
    #[arg(long, env = "BENCH_PERF_SECS")]
    perf_secs: Option<u64>,
    /// Seconds a receiver gets to exit after SIGTERM before it is killed (and counted so).
    #[arg(long, env = "BENCH_SIGTERM_GRACE_SECS", default_value_t = 30)]
    sigterm_grace_secs: u64,
}

#[derive(Debug, clap::Args)]
struct ConvergenceArgs {
    /// Lab sizes in nodes, comma separated.
    #[arg(
        long,
        env = "BENCH_CONV_SIZES",
        value_delimiter = ',',
        default_value = "20,50,100"
    )]
    sizes: Vec<u8>,
    /// Changes of each kind (add, recreate, delete) per system and size.
    #[arg(long, env = "BENCH_CONV_CHANGES", default_value_t = 100)]
    changes: usize,
    /// Changes of each kind in kube-router's runs (default: --changes); its adds can take
    /// minutes (GoBGP's 120-s connect retry).
    #[arg(long, env = "BENCH_CONV_KUBE_ROUTER_CHANGES")]
    kube_router_changes: Option<usize>,
    /// Systems, alternated: podroute, kube-router.
    #[arg(
        long,
        env = "BENCH_CONV_SYSTEMS",
        value_delimiter = ',',
        default_value = "podroute,kube-router"
    )]
    systems: Vec<String>,
    /// Sizes at which podroute also runs with two route reflectors (mesh off).
    #[arg(
        long,
        env = "BENCH_CONV_REFLECTORS_AT",
        value_delimiter = ',',
        default_value = "100"
    )]
    reflectors_at: Vec<u8>,
    /// Seconds one change may take before it counts as timed out.
    #[arg(long, env = "BENCH_CONV_TIMEOUT_SECS", default_value_t = 300)]
    timeout_secs: u64,
    /// Seconds of nothing changing, for the control-plane cost (BGPNodeStatus writes and agent
    /// CPU); measured after waiting as long again for the cold start to settle.
    #[arg(long, env = "BENCH_CONV_STEADY_SECS", default_value_t = 60)]
    steady_secs: u64,
    #[command(flatten)]
    agent: AgentArg,
    /// The kube-router binary (default: built and cached by tests/scripts/kube-router.sh).
    #[arg(long, env = "BENCH_KUBE_ROUTER")]
    kube_router: Option<PathBuf>,
    /// RUST_LOG of the podroute agents (their logs stay in the lab's log folder while it
    /// runs), e.g. `info,podroute_agent::speaker=debug` to see where a slow change waited.
    #[arg(long, env = "BENCH_CONV_AGENT_LOG", default_value = "warn")]
    agent_log: String,
    /// The JSON result file (the .md table and the -<size>.svg charts are written next to it).
    #[arg(
        long,
        env = "BENCH_CONV_OUTPUT",
        default_value = "target/bench/convergence.json"
    )]
    output: PathBuf,
    /// Prefix of the labs' names (the size is appended).
    #[arg(long, env = "BENCH_CONV_LAB", default_value = "conv")]
    lab: String,
}

fn main() -> ExitCode {
    match run(Cli::parse()) {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("podroute-bench: {e:#}");
            ExitCode::FAILURE
        }
    }
}

fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Cmd::Bfd { sessions, secs } => {
            let cost = podroute_bench::bfd::run(sessions, secs);
            println!("{}", serde_json::to_string_pretty(&cost)?);
            Ok(())
        }
        Cmd::Report { file } => {
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let result: SuiteResult =
                serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
            print!("{}", markdown(&result));
            Ok(())
        }
        Cmd::Run(args) => run_suite(args),
        Cmd::Convergence(args) => run_convergence(args),
        Cmd::Mesh(args) => run_mesh(args),
        Cmd::BfdLoss(args) => run_bfd_loss(args),
        Cmd::CniChurn(args) => run_churn(args),
        Cmd::ConvergenceReport { file } => {
            use podroute_bench::convergence::{ConvergenceResult, report};
            let text = std::fs::read_to_string(&file)
                .with_context(|| format!("read {}", file.display()))?;
            let result: ConvergenceResult =
                serde_json::from_str(&text).with_context(|| format!("parse {}", file.display()))?;
            report::write(&result, &file)?;
            print!("{}", report::markdown(&result));
            Ok(())
        }
    }
}

fn run_convergence(args: ConvergenceArgs) -> anyhow::Result<()> {
    use podroute_bench::convergence::{self, Binaries, ConvergenceConfig, System};
    let mut systems = Vec::new();
    for name in &args.systems {
        match System::parse(name.trim()) {
            Some(s) => systems.push(s),
            None => bail!("unknown system `{name}` (podroute, kube-router)"),
        }
    }
    let kube_router = match args.kube_router {
        Some(p) => Some(std::path::absolute(p)?),
        None if systems.contains(&System::KubeRouter) => Some(convergence::build_kube_router()?),
        None => None,
    };
    let cfg = ConvergenceConfig {
        lab_name: args.lab,
        sizes: args.sizes,
        changes: args.changes,
        kube_router_changes: args.kube_router_changes,
        systems,
        reflectors_at: args.reflectors_at,
        bins: Binaries {
            agent: args.agent.absolute()?,
            agent_log: args.agent_log.clone(),
            kube_router,
        },
        output: args.output.clone(),
        timeout: Duration::from_secs(args.timeout_secs),
        steady: Duration::from_secs(args.steady_secs),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    podroute_lab::cancel::install_signal_handlers()?;
    let result = convergence::run(&cfg, cancel)?;
    print!("{}", convergence::report::markdown(&result));
    eprintln!(
        "bench: results in {} and {}",
        args.output.display(),
        args.output.with_extension("md").display()
    );
    Ok(())
}

fn run_suite(args: RunArgs) -> anyhow::Result<()> {
    let mut scenarios = Vec::new();
    for name in &args.scenarios {
        match Scenario::by_name(name.trim()) {
            Some(s) => scenarios.push(s),
            None => bail!("unknown scenario `{name}`"),
        }
    }
    let mut receivers = Vec::new();
    for name in &args.receivers {
        match ReceiverKind::parse(name.trim()) {
            Some(k) => receivers.push(k),
            None => bail!("unknown receiver `{name}` (podroute, bird, gobgp)"),
        }
    }
    let idle_scenarios = if args.idle_scenarios.iter().any(|s| s == "all") {
        Vec::new()
    } else {
        args.idle_scenarios.clone()
    };
    let cfg = SuiteConfig {
        lab_name: args.lab,
        scenarios,
        receivers,
        runs: args.runs.max(1),
        timeout: args.timeout_secs.map(Duration::from_secs),
        timeout_cap: Duration::from_secs(args.timeout_cap_secs),
        idle: Duration::from_secs(args.idle_secs),
        idle_scenarios,
        agent_bin: args.agent.absolute()?,
        output: args.output.clone(),
        perf: args.perf_secs.map(Duration::from_secs),
        sigterm_grace: Duration::from_secs(args.sigterm_grace_secs),
    };
    // Ctrl-C or SIGTERM stops the suite at its next step; the lab is torn down either way.
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    podroute_lab::cancel::install_signal_handlers()?;
    suite::run(&cfg, cancel)?;
    eprintln!(
        "bench: results in {} and {}",
        args.output.display(),
        args.output.with_extension("md").display()
    );
    Ok(())
}

fn run_mesh(args: MeshArgs) -> anyhow::Result<()> {
    use podroute_bench::convergence::{self, System};
    let Some(system) = System::parse(args.system.trim()) else {
        bail!("unknown system `{}` (podroute, kube-router)", args.system);
    };
    let kube_router = match args.kube_router {
        Some(p) => Some(std::path::absolute(p)?),
        None if system == System::KubeRouter => Some(convergence::build_kube_router()?),
        None => None,
    };
    let cfg = podroute_bench::mesh::MeshConfig {
        system,
        kube_router,
        lab_name: args.lab,
        peers: args.peers,
        steady: Duration::from_secs(args.steady_secs),
        timeout: Duration::from_secs(args.timeout_secs),
        agent_bin: args.agent.absolute()?,
        output: args.output.clone(),
        bfd: args.bfd,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    podroute_lab::cancel::install_signal_handlers()?;
    let result = podroute_bench::mesh::run(&cfg, &cancel)?;
    print!("{}", podroute_bench::mesh::markdown(&result));
    eprintln!("bench: results in {}", args.output.display());
    Ok(())
}

fn run_bfd_loss(args: BfdLossArgs) -> anyhow::Result<()> {
    use podroute_bench::bfd_loss::{self, LossConfig};
    if args.hold_time_secs < 3 {
        bail!("the hold time must be at least 3 s (RFC 4271 §4.2)");
    }
    let cfg = LossConfig {
        lab_name: args.lab,
        runs: args.runs.max(1),
        hold_time_s: args.hold_time_secs,
        agent_bin: args.agent.absolute()?,
        output: args.output.clone(),
    };
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    podroute_lab::cancel::install_signal_handlers()?;
    let result = bfd_loss::run(&cfg, &cancel)?;
    print!("{}", bfd_loss::markdown(&result));
    eprintln!("bench: results in {}", args.output.display());
    Ok(())
}

fn run_churn(args: ChurnArgs) -> anyhow::Result<()> {
    let cfg = podroute_bench::cni_churn::ChurnConfig {
        prefix: format!("bchurn{}", std::process::id() % 100_000),
        pods: args.pods.max(1),
        rounds: args.rounds.max(1),
        podroute_bin: std::path::absolute(&args.plugin)?,
        output: args.output.clone(),
        // The plugins take only an absolute dataDir.
        data_dir: std::path::absolute(args.data_dir.clone().unwrap_or_else(std::env::temp_dir))?,
        settle: true,
    };
    let cancel = Arc::new(AtomicBool::new(false));
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, cancel.clone())?;
    }
    let result = podroute_bench::cni_churn::run(&cfg, &cancel)?;
    print!("{}", podroute_bench::cni_churn::markdown(&result));
    eprintln!("bench: results in {}", args.output.display());
    if !result.kill.clean() {
        bail!("the plugin killed -9 mid-churn left: {:?}", result.kill);
    }
    Ok(())
}
