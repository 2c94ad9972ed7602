//! The suite: one lab, then for every scenario `runs` rounds of every receiver in turn
//! (A B C A B C ...), each run measured from outside the receiver.
//!
//! # One run
//!
//! 1. The node's FIB is emptied of the benchmark's routes (both receivers' protocols) and a
//!    [`FibWatch`] subscribes, before the receiver starts.
//! 2. The receiver starts in the node's namespace; every sender session comes up; the harness
//!    waits until the receiver is quiet (start-up work done), reads its RIB count (the
//!    baseline), resets its peak RSS and reads its RSS.
//! 3. The senders write. t = 0 is the first UPDATE written. The RIB is polled (podroute's
//!    metrics and `birdc` every 50 ms, `gobgp` every 200 ms: each GoBGP CLI call costs a Go
//!    process start on the machine the receiver shares); the FIB time is the watcher's.
//!    The run ends when both hold everything, or at the timeout ("did not converge").
//! 4. Peak RSS (`VmHWM`), a FIB dump to confirm the count; then, if converged, the idle
//!    window: CPU seconds with nothing changing while the senders only send KEEPALIVEs
//!    (optionally under `perf record`).
//! 5. SIGTERM, timed to exit (SIGKILL after the grace time, 30 s by default), sessions closed,
//!    routes flushed.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};
use std::process::Command;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::thread;
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podroute_lab::{Lab, LabConfig, LabNode, Signal, Tor};

use crate::error::{BenchError, Result, io_err};
use crate::fib::{self, FibWatch};
use crate::netns;
use crate::procstat;
use crate::receivers::{AS, Receiver, ReceiverKind, Setup};
use crate::results::{Machine, RunResult, SuiteResult};
use crate::scenario::{Family, Scenario};
use crate::sender::{PeerPlan, Sender};
use crate::updates::{self, UpdateStream};

/// Longest wait for every sender session to come up (the receiver starting included).
const SESSION_TIMEOUT: Duration = Duration::from_secs(90);
/// Longest wait for a receiver to go quiet after its sessions came up.
const SETTLE_MAX: Duration = Duration::from_secs(15);
/// Slice of the idle window whose CPU time is recorded on its own.
const IDLE_SLICE: Duration = Duration::from_secs(10);

/// What to run.
#[derive(Debug, Clone)]
pub struct SuiteConfig {
    /// The lab's name (brought up and torn down by the suite).
    pub lab_name: String,
    /// Scenarios, in order.
    pub scenarios: Vec<Scenario>,
    /// Receivers, alternated in this order.
    pub receivers: Vec<ReceiverKind>,
    /// Runs per scenario and receiver.
    pub runs: u32,
    /// A fixed convergence timeout; `None`: 30 s + 30 s per 100k routes, at most
    /// [`SuiteConfig::timeout_cap`].
    pub timeout: Option<Duration>,
    /// Upper bound of the computed timeout.
    pub timeout_cap: Duration,
    /// Idle window after convergence.
    pub idle: Duration,
    /// Scenarios with an idle window (empty: all).
    pub idle_scenarios: Vec<String>,
    /// The podroute-agent binary.
    pub agent_bin: PathBuf,
    /// Result file (JSON); `results.md` is written next to it.
    pub output: PathBuf,
    /// `perf record -g` the podroute agent for this long at the start of each idle window.
    pub perf: Option<Duration>,
    /// Time a receiver gets to exit after SIGTERM before it is killed.
    pub sigterm_grace: Duration,
}

impl SuiteConfig {
    fn timeout_for(&self, s: &Scenario) -> Duration {
        self.timeout.unwrap_or_else(|| {
            let per_100k = s.paths().div_ceil(100_000);
            (Duration::from_secs(30) + Duration::from_secs(30 * per_100k)).min(self.timeout_cap)
        })
    }

    fn idle_for(&self, s: &Scenario) -> Duration {
        if self.idle_scenarios.is_empty() || self.idle_scenarios.contains(&s.name) {
            self.idle
        } else {
            Duration::ZERO
        }
    }
}

/// Sender `i`'s (0-based) address in the scale-test range of the address plan.
fn sender_addr(family: Family, i: u8) -> IpAddr {
    match family {
        Family::Ipv4 => Ipv4Addr::new(198, 18, 16, i + 1).into(),
        Family::Ipv6 => Ipv6Addr::new(0xfd00, 0x198, 0x18, 0x16, 0, 0, 0, u16::from(i) + 1).into(),
    }
}

/// Puts the scale-test subnets on the fabric: the senders' addresses on the bridge, one
/// address of each on the node's `eth0`, so every sender is on-link (next hops resolve
/// directly for every receiver).
fn add_sender_addresses(lab: &Lab, node: &LabNode) -> Result<()> {
    let fabric = lab.fabric_ns();
    let ip = |ns: &str, args: &[&str]| -> Result<()> {
        let out = Command::new("ip")
            .arg("-n")
            .arg(ns)
            .args(args)
            .output()
            .map_err(io_err("run ip"))?;
        if out.status.success() {
            Ok(())
        } else {
            Err(BenchError::Failed(format!(
                "ip -n {ns} {}: {}",
                args.join(" "),
                String::from_utf8_lossy(&out.stderr).trim()
            )))
        }
    };
    for i in 0..10 {
        let v4 = format!("{}/20", sender_addr(Family::Ipv4, i));
        ip(&fabric, &["addr", "add", &v4, "dev", "br0"])?;
        let v6 = format!("{}/64", sender_addr(Family::Ipv6, i));
        ip(&fabric, &["addr", "add", &v6, "dev", "br0", "nodad"])?;
    }
    ip(
        &node.netns,
        &["addr", "add", "198.18.16.254/20", "dev", "eth0"],
    )?;
    ip(
        &node.netns,
        &[
            "addr",
            "add",
            "fd00:198:18:16::fe/64",
            "dev",
            "eth0",
            "nodad",
        ],
    )?;
    Ok(())
}

/// Removes every benchmark route of both receivers' protocols from the node, and checks.
fn flush_routes(ns: &str) -> Result<()> {
    for proto in ReceiverKind::ALL.iter().filter_map(|k| k.kernel_protocol()) {
        for fam in ["-4", "-6"] {
            let _ = Command::new("ip")
                .args(["-n", ns, fam, "route", "flush", "proto", &proto.to_string()])
                .output();
        }
        let left = fib::dump_count(ns, proto).map_err(io_err("count routes"))?;
        if left != 0 {
            return Err(BenchError::Failed(format!(
                "{left} routes of protocol {proto} still in {ns} after a flush"
            )));
        }
    }
    Ok(())
}

/// The machine the benchmarks run on (also used by [`crate::mesh`]).
pub(crate) fn machine(agent_bin: &Path) -> Machine {
    let read = |p: &str| std::fs::read_to_string(p).unwrap_or_default();
    let first_line = |program: &str, args: &[&str]| {
        Command::new(program)
            .args(args)
            .output()
            .map(|o| {
                let text = format!(
                    "{}{}",
                    String::from_utf8_lossy(&o.stdout),
                    String::from_utf8_lossy(&o.stderr)
                );
                text.lines().next().unwrap_or("").trim().to_owned()
            })
            .unwrap_or_default()
    };
    let workspace = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    Machine {
        cpus: thread::available_parallelism()
            .map(|n| n.get())
            .unwrap_or(0),
        cpu_model: read("/proc/cpuinfo")
            .lines()
            .find_map(|l| l.strip_prefix("model name"))
            .map(|l| l.trim_start_matches([' ', '\t', ':']).to_owned())
            .unwrap_or_default(),
        memory: read("/proc/meminfo")
            .lines()
            .find_map(|l| l.strip_prefix("MemTotal:"))
            .and_then(|l| l.split_whitespace().next()?.parse::<u64>().ok())
            .map(|kb| kb * 1024)
            .unwrap_or(0),
        kernel: read("/proc/sys/kernel/osrelease").trim().to_owned(),
        bird: first_line("bird", &["--version"]),
        gobgp: first_line("gobgpd", &["--version"]),
        podroute: first_line(
            "git",
            &[
                "-C",
                &workspace.display().to_string(),
                "describe",
                "--always",
                "--dirty",
            ],
        ),
        agent_bin: agent_bin.display().to_string(),
        agent_bin_sha256: Command::new("sha256sum")
            .arg(agent_bin)
            .output()
            .ok()
            .filter(|o| o.status.success())
            .and_then(|o| {
                let text = String::from_utf8_lossy(&o.stdout);
                Some(text.split_whitespace().next()?.to_owned())
            })
            .unwrap_or_default(),
        loadavg_at_start: read("/proc/loadavg").trim().to_owned(),
    }
}

/// Runs the suite; `cancel` (set by SIGINT/SIGTERM) stops it at the next step, tearing
/// everything down. Returns every run's result (also written to `cfg.output`).
pub fn run(cfg: &SuiteConfig, cancel: Arc<AtomicBool>) -> Result<SuiteResult> {
    preflight(cfg)?;
    if let Some(dir) = cfg.output.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    // A lab of this name left by a killed suite goes first.
    let _ = Lab::down_by_name(&cfg.lab_name);
    eprintln!("bench: bringing up lab {}", cfg.lab_name);
    let lab = Lab::up(&LabConfig::new(&cfg.lab_name, 1).tor(Tor::None).ipv6(true))?;
    let node = lab.nodes()[0].clone();
    add_sender_addresses(&lab, &node)?;
    let mut result = SuiteResult {
        machine: machine(&cfg.agent_bin),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map(|d| d.as_secs())
            .unwrap_or(0),
        runs_per_receiver: cfg.runs,
        runs: Vec::new(),
    };
    // Everything from here runs inside the node's namespace (the receivers' APIs listen on
    // its loopback); senders and the FIB watcher enter their own namespaces.
    let outcome = thread::scope(|s| {
        s.spawn(|| -> Result<()> {
            netns::enter(&node.netns).map_err(io_err(format!("enter {}", node.netns)))?;
            run_scenarios(cfg, &lab, &node, &cancel, &mut result)
        })
        .join()
        .unwrap_or_else(|_| Err(BenchError::Failed("the suite thread panicked".into())))
    });
    let _ = flush_routes(&node.netns);
    write_results(cfg, &result)?;
    drop(lab);
    outcome.map(|()| result)
}

fn preflight(cfg: &SuiteConfig) -> Result<()> {
    let mut programs = vec!["ip"];
    if cfg.receivers.contains(&ReceiverKind::Bird) {
        programs.extend(["bird", "birdc"]);
    }
    if cfg.receivers.contains(&ReceiverKind::Gobgp) {
        programs.extend(["gobgpd", "gobgp"]);
    }
    if cfg.perf.is_some() {
        programs.push("perf");
    }
    for p in programs {
        let found = Command::new("sh")
            .args(["-c", &format!("command -v {p}")])
            .output()
            .is_ok_and(|o| o.status.success());
        if !found {
            return Err(BenchError::Failed(format!(
                "{p} not found (make bench installs it)"
            )));
        }
    }
    if cfg.receivers.contains(&ReceiverKind::Podroute) && !cfg.agent_bin.is_file() {
        return Err(BenchError::Failed(format!(
            "{} not found: cargo build --release -p podroute-agent",
            cfg.agent_bin.display()
        )));
    }
    Ok(())
}

fn write_results(cfg: &SuiteConfig, result: &SuiteResult) -> Result<()> {
    if let Some(dir) = cfg.output.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    let json = serde_json::to_string_pretty(result)
        .map_err(|e| BenchError::Failed(format!("results to JSON: {e}")))?;
    std::fs::write(&cfg.output, json + "\n")
        .map_err(io_err(format!("write {}", cfg.output.display())))?;
    let md = cfg.output.with_extension("md");
    std::fs::write(&md, crate::results::markdown(result))
        .map_err(io_err(format!("write {}", md.display())))
}

fn run_scenarios(
    cfg: &SuiteConfig,
    lab: &Lab,
    node: &LabNode,
    cancel: &AtomicBool,
    result: &mut SuiteResult,
) -> Result<()> {
    for scenario in &cfg.scenarios {
        let peers: Vec<IpAddr> = (0..scenario.peers)
            .map(|i| sender_addr(scenario.family, i))
            .collect();
        let streams: Vec<Arc<UpdateStream>> = (0..scenario.peers)
            .map(|i| {
                Arc::new(updates::encode(
                    &scenario.prefixes(i),
                    peers[usize::from(i)],
                ))
            })
            .collect();
        let remote = match scenario.family {
            Family::Ipv4 => IpAddr::V4(node.ipv4),
            Family::Ipv6 => node
                .ipv6
                .map(IpAddr::V6)
                .ok_or_else(|| BenchError::Failed("the lab has no IPv6".into()))?,
        };
        let plans: Vec<PeerPlan> = (0..scenario.peers)
            .map(|i| PeerPlan {
                local: peers[usize::from(i)],
                remote,
                asn: AS,
                router_id: Ipv4Addr::new(198, 18, 16, i + 1),
                stream: streams[usize::from(i)].clone(),
            })
            .collect();
        eprintln!(
            "bench: {}: {} peer(s) × {} prefixes, {} UPDATEs per peer",
            scenario.name, scenario.peers, scenario.prefixes_per_peer, streams[0].updates
        );
        for run in 1..=cfg.runs {
            for &kind in &cfg.receivers {
                if cancel.load(Ordering::SeqCst) {
                    return Err(BenchError::Interrupted);
                }
                let ctx = RunContext {
                    cfg,
                    lab,
                    node,
                    scenario,
                    peers: &peers,
                    plans: &plans,
                    cancel,
                };
                let r = ctx.run_one(kind, run);
                eprintln!("bench: {}", one_line(&r));
                let interrupted = r.error.as_deref() == Some("interrupted");
                result.runs.push(r);
                write_results(cfg, result)?;
                if interrupted {
                    return Err(BenchError::Interrupted);
                }
            }
        }
    }
    Ok(())
}

fn one_line(r: &RunResult) -> String {
    let t = |v: Option<f64>| v.map(|v| format!("{v:.2} s")).unwrap_or_else(|| "—".into());
    let mut s = format!(
        "{} {} run {}: RIB {} FIB {}",
        r.scenario,
        r.receiver,
        r.run,
        t(r.rib_s),
        t(r.fib_s)
    );
    if !r.converged {
        s.push_str(&format!(
            " (not converged in {:.0} s: RIB {}/{}, FIB {:?}/{:?})",
            r.timeout_s, r.rib_count, r.rib_target, r.fib_count, r.fib_target
        ));
    }
    if let Some(b) = r.bytes_per_route {
        s.push_str(&format!(", {b:.0} B/route"));
    }
    if let Some(c) = r.idle_cpu_s {
        s.push_str(&format!(
            ", idle {:.2} % of a core",
            100.0 * c / r.idle_s.max(1e-9)
        ));
    }
    s.push_str(&format!(", SIGTERM {}", t(r.sigterm_exit_s)));
    if let Some(e) = &r.error {
        s.push_str(&format!(", error: {e}"));
    }
    s
}

struct RunContext<'a> {
    cfg: &'a SuiteConfig,
    lab: &'a Lab,
    node: &'a LabNode,
    scenario: &'a Scenario,
    peers: &'a [IpAddr],
    plans: &'a [PeerPlan],
    cancel: &'a AtomicBool,
}

impl RunContext<'_> {
    fn run_one(&self, kind: ReceiverKind, run: u32) -> RunResult {
        let mut r = RunResult {
            scenario: self.scenario.name.clone(),
            receiver: kind.name().to_owned(),
            run,
            timeout_s: self.cfg.timeout_for(self.scenario).as_secs_f64(),
            ..RunResult::default()
        };
        if let Err(e) = self.measure(kind, &mut r) {
            r.error = Some(e.to_string());
            r.converged = false;
        }
        if let Err(e) = flush_routes(&self.node.netns)
            && r.error.is_none()
        {
            r.error = Some(e.to_string());
        }
        r
    }

    fn measure(&self, kind: ReceiverKind, r: &mut RunResult) -> Result<()> {
        let ns = &self.node.netns;
        flush_routes(ns)?;
        let proto = kind.kernel_protocol();
        let watch = match proto {
            Some(p) => Some(
                FibWatch::start(ns, p, self.scenario.networks())
                    .map_err(io_err("watch the FIB"))?,
            ),
            None => None,
        };
        r.fib_target = proto.map(|_| self.scenario.networks());
        let dir = self.lab.dir().join("bench").join(format!(
            "{}-{}-{}",
            self.scenario.name,
            kind.name(),
            r.run
        ));
        let _ = std::fs::remove_dir_all(&dir);
        let setup = Setup {
            lab: self.lab,
            node: self.node,
            peers: self.peers,
            dir,
            agent_bin: &self.cfg.agent_bin,
            family: self.scenario.family,
        };
        let mut rx = Receiver::start(kind, &setup)?;
        let pid = rx.pid();
        let sender = Sender::connect(
            &self.lab.fabric_ns(),
            self.plans.to_vec(),
            SESSION_TIMEOUT,
            self.cancel,
            &|| !procstat::alive(pid),
        )
        .map_err(|e| match e {
            BenchError::Interrupted => e,
            e => BenchError::Failed(format!(
                "{e}; receiver log: {}",
                rx.process.log_path().display()
            )),
        })?;
        let outcome = self.ingest(&mut rx, pid, &sender, watch.as_ref(), r);
        // SIGTERM with everything installed, sessions still up.
        let _ = rx.process.kill(Signal::SIGTERM);
        let signalled = Instant::now();
        match rx.process.wait_timeout(self.cfg.sigterm_grace) {
            Some(_) => r.sigterm_exit_s = Some(signalled.elapsed().as_secs_f64()),
            None => {
                r.sigterm_killed = true;
                let _ = rx.process.kill(Signal::SIGKILL);
                let _ = rx.process.wait_timeout(Duration::from_secs(5));
            }
        }
        sender.stop();
        if let Some(w) = watch {
            let _ = w.stop();
        }
        outcome
    }

    /// Steps 2 to 4 of the module docs.
    fn ingest(
        &self,
        rx: &mut Receiver,
        pid: u32,
        sender: &Sender,
        watch: Option<&FibWatch>,
        r: &mut RunResult,
    ) -> Result<()> {
        settle(pid, self.cancel)?;
        let base = rx.rib();
        let base_value = base.map(|c| c.value).unwrap_or(0);
        procstat::reset_peak(pid).map_err(io_err("reset the receiver's peak RSS"))?;
        let before = procstat::memory(pid).map_err(io_err("read the receiver's RSS"))?;
        r.rss_before = Some(before.rss);
        sender.start();
        let timeout = self.cfg.timeout_for(self.scenario);
        let poll = match rx.kind {
            ReceiverKind::Gobgp => Duration::from_millis(200),
            _ => Duration::from_millis(50),
        };
        let start_wait = Instant::now();
        let t0 = loop {
            if let Some(t) = sender.first_update_at() {
                break t;
            }
            if start_wait.elapsed() > Duration::from_secs(5) {
                return Err(BenchError::Failed("the sender never wrote".into()));
            }
            thread::sleep(Duration::from_millis(1));
        };
        let since = |t: Instant| t.saturating_duration_since(t0).as_secs_f64();
        let mut rib_at: Option<Instant> = None;
        loop {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(BenchError::Interrupted);
            }
            let now = Instant::now();
            if rib_at.is_none()
                && let Some(c) = rx.rib()
            {
                r.rib_source = format!("{}, counting {}", c.source, c.unit.name());
                r.rib_target = c.target(self.scenario);
                r.rib_count = c.value.saturating_sub(base_value);
                if r.rib_count >= r.rib_target {
                    rib_at = Some(now);
                }
            }
            let fib_done = watch.is_none_or(|w| w.progress().reached_at.is_some());
            if rib_at.is_some() && fib_done {
                r.converged = true;
                break;
            }
            if let Some(why) = sender.failure() {
                return Err(BenchError::Failed(why));
            }
            if !rx.process.is_running() {
                return Err(BenchError::Failed(format!(
                    "the receiver exited; log: {}",
                    rx.process.log_path().display()
                )));
            }
            if t0.elapsed() > timeout {
                break;
            }
            thread::sleep(poll);
        }
        r.rib_s = rib_at.map(since);
        r.sent_s = sender.all_written_at().map(since);
        if let Some(w) = watch {
            let p = w.progress();
            r.fib_s = p.reached_at.map(since);
            r.fib_count = Some(p.routes);
            r.fib_overflows = p.overflows;
            r.fib_dump = rx
                .kind
                .kernel_protocol()
                .and_then(|proto| fib::dump_count(&self.node.netns, proto).ok());
        }
        let mem = procstat::memory(pid).map_err(io_err("read the receiver's peak RSS"))?;
        r.rss_peak = Some(mem.peak);
        r.bytes_per_route =
            Some((mem.peak.saturating_sub(before.rss)) as f64 / self.scenario.paths() as f64);
        r.table = rx.table_summary();
        let idle = self.cfg.idle_for(self.scenario);
        if r.converged && !idle.is_zero() {
            self.idle(rx, pid, sender, idle, r)?;
        }
        Ok(())
    }

    fn idle(
        &self,
        rx: &Receiver,
        pid: u32,
        sender: &Sender,
        idle: Duration,
        r: &mut RunResult,
    ) -> Result<()> {
        let perf = match (self.cfg.perf, rx.kind) {
            (Some(d), ReceiverKind::Podroute) => {
                // Next to the result file: the lab directory goes with the lab.
                let dir = self.cfg.output.parent().unwrap_or(Path::new("."));
                let file = dir.join(format!(
                    "perf-{}-{}-{}.data",
                    self.scenario.name,
                    rx.kind.name(),
                    r.run
                ));
                let secs = d.min(idle).as_secs().max(1).to_string();
                let child = Command::new("perf")
                    // DWARF unwinding: release builds keep no frame pointers, so `-g` alone
                    // would cut most Rust stacks after the first frame.
                    .args(["record", "-F", "199", "--call-graph", "dwarf,32768", "-p"])
                    .arg(pid.to_string())
                    .arg("-o")
                    .arg(&file)
                    .args(["--", "sleep", &secs])
                    .stdout(std::process::Stdio::null())
                    .stderr(std::process::Stdio::null())
                    .spawn()
                    .map_err(io_err("start perf"))?;
                r.perf_data = Some(file.display().to_string());
                Some(child)
            }
            _ => None,
        };
        let start = Instant::now();
        let cpu0 = procstat::cpu_seconds(pid).map_err(io_err("read the receiver's CPU time"))?;
        let mut last = cpu0;
        while start.elapsed() < idle {
            if self.cancel.load(Ordering::SeqCst) {
                return Err(BenchError::Interrupted);
            }
            let slice_end =
                (start + IDLE_SLICE * (r.idle_cpu_slices.len() as u32 + 1)).min(start + idle);
            while Instant::now() < slice_end && !self.cancel.load(Ordering::SeqCst) {
                thread::sleep(Duration::from_millis(100));
            }
            let now = procstat::cpu_seconds(pid).map_err(io_err("read the receiver's CPU time"))?;
            r.idle_cpu_slices.push(now - last);
            last = now;
        }
        r.idle_s = start.elapsed().as_secs_f64();
        r.idle_cpu_s = Some(last - cpu0);
        if let Some(mut child) = perf {
            let _ = child.wait();
        }
        if let Some(why) = sender.failure() {
            return Err(BenchError::Failed(format!("during the idle window: {why}")));
        }
        Ok(())
    }
}

/// Waits until `pid` used under 2 % of a core over half a second (its start-up work is done),
/// at most [`SETTLE_MAX`].
fn settle(pid: u32, cancel: &AtomicBool) -> Result<()> {
    let start = Instant::now();
    let mut last = procstat::cpu_seconds(pid).map_err(io_err("read the receiver's CPU time"))?;
    while start.elapsed() < SETTLE_MAX {
        if cancel.load(Ordering::SeqCst) {
            return Err(BenchError::Interrupted);
        }
        thread::sleep(Duration::from_millis(500));
        let now = procstat::cpu_seconds(pid).map_err(io_err("read the receiver's CPU time"))?;
        if now - last < 0.01 {
            return Ok(());
        }
        last = now;
    }
    Ok(())
}
