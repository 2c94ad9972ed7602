//! The loss window of a cut link seen from behind a router, with and without BFD (issue 12).
//!
//! ```text
//!   <lab>-host-r1: BIRD 2 (AS 65001), ping -i 0.01 to the pod
//!      │  198.18.0.251        best: <pod CIDR> via node1 (BGP)     backup: via node2, metric 4000
//!   fabric br0 ── the cut: frames from r1's port to node1's port dropped (nftables, bridge)
//!      │                    │
//!   node1 198.18.0.1       node2 198.18.0.2 (no agent: forwards to node1 by a static route)
//!   podroute-agent, BGPPeer r1 (hold time 9 s; bfd 300 ms × 3 or none), pod "probe"
//! ```
//!
//! The cut is one way (router → node1): node1 stays alive and reachable through node2, so
//! the probes have a way around once the router stops using node1, and the window in which
//! they are lost is the time the failure takes to be noticed. node1 no longer hears the
//! router: without BFD its hold timer expires (6–9 s after the cut, depending on when the
//! last KEEPALIVE came); with BFD its BFD session goes Down after 3 × 300 ms. Either way
//! node1 ends the BGP session with a NOTIFICATION (which still reaches the router), BIRD
//! withdraws the route from its kernel and the backup route takes the probes. The replies
//! go node1 → router directly, a direction the cut leaves alone. BIRD ties its BGP session
//! to BFD (`bfd on`), as a router set up for BFD would; it still hears node1's BFD packets,
//! so what ends the session is node1's detection, its packets saying Down. Without BFD the
//! router learns of it late: node1's KEEPALIVEs (and its NOTIFICATION) after the cut queue in
//! TCP behind one that is never acknowledged, so the router's own hold timer, 9 s after the
//! last KEEPALIVE that got through, often ends it first. `router_saw` records which.
//!
//! Per run: **detection** is the time from the cut to the router's BGP route being gone from
//! its kernel (polled every ~5 ms, each poll an `ip route` of a few ms); **lost** is the probes
//! sent and never answered; **gap** the longest time between two answered probes. The two
//! modes alternate (BFD first), so each BFD run starts with a new BFD session and no damping.

use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use podroute_lab::{Lab, LabConfig, LabNode, LabProcess, Signal, Tor};
use serde::{Deserialize, Serialize};

use crate::error::{BenchError, Result, io_err};
use crate::results::median;

/// The router: its name (namespace `<lab>-host-r1`), fabric address and AS.
const ROUTER: &str = "r1";
const ROUTER_ADDRESS: &str = "198.18.0.251";
const ROUTER_AS: u32 = 65001;
/// The nodes' AS (the agent's default).
const NODE_AS: u32 = 64512;
/// BFD as the issue asks: 300 ms × 3 on both ends.
const BFD_INTERVAL_MS: u32 = 300;
const BFD_MULTIPLIER: u8 = 3;
/// The nftables table (bridge family, in the fabric namespace) that holds the cut.
const CUT_TABLE: &str = "bfdloss";
/// Probes answered before the cut, and after the route is gone, in each run.
const BEFORE_CUT: Duration = Duration::from_secs(2);
const AFTER_WITHDRAWAL: Duration = Duration::from_secs(2);
/// How long the lab may take to be ready for the next run (BGP and BFD back up).
const READY_TIMEOUT: Duration = Duration::from_secs(120);

/// How node1 finds out that the router is gone.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum Detection {
    /// BFD 300 ms × 3 on the BGPPeer.
    Bfd,
    /// No BFD: the BGP hold timer.
    HoldTimer,
}

impl Detection {
    /// The name in results and tables.
    pub fn name(self) -> &'static str {
        match self {
            Self::Bfd => "bfd",
            Self::HoldTimer => "hold-timer",
        }
    }
}

/// What to run.
#[derive(Debug, Clone)]
pub struct LossConfig {
    /// The lab's name.
    pub lab_name: String,
    /// Runs per mode (the modes alternate).
    pub runs: u32,
    /// The BGP hold time on both ends, seconds.
    pub hold_time_s: u16,
    /// The podroute-agent binary.
    pub agent_bin: PathBuf,
    /// The JSON result file.
    pub output: PathBuf,
}

/// One cut.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossRun {
    /// The mode.
    pub mode: Detection,
    /// Cut to the router's route gone from its kernel, seconds (`None`: it never went).
    pub detection_s: Option<f64>,
    /// Probes sent (10 ms apart asked; fewer on a loaded machine).
    pub transmitted: u64,
    /// Probes answered.
    pub received: u64,
    /// The longest time between two answered probes, seconds.
    pub longest_gap_s: Option<f64>,
    /// What BIRD logged first about the session to node1 after the cut (`Received: Cease`,
    /// `Error: Hold timer expired`, `BFD session down`, ...): who ended it.
    pub router_saw: Option<String>,
    /// Why the run failed, if it did.
    pub error: Option<String>,
}

impl LossRun {
    /// Probes never answered.
    pub fn lost(&self) -> u64 {
        self.transmitted.saturating_sub(self.received)
    }
}

/// The result file.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LossResult {
    /// CPU, cores, kernel.
    pub machine: String,
    /// When the benchmark started (Unix seconds).
    pub started_unix: u64,
    /// The BGP hold time, seconds.
    pub hold_time_s: u16,
    /// The BFD settings of the BFD runs.
    pub bfd: String,
    /// Every run, in order.
    pub runs: Vec<LossRun>,
    /// Why the benchmark stopped early, if it did.
    pub error: Option<String>,
}

/// The medians of one mode's successful runs.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct LossSummary {
    /// Runs with a detection.
    pub runs: usize,
    /// Median detection, seconds.
    pub detection_s: f64,
    /// Median probes lost.
    pub lost: f64,
    /// Median longest gap, seconds.
    pub longest_gap_s: f64,
}

impl LossResult {
    /// The medians of `mode`'s runs that saw the route withdrawn; `None` if none did.
    pub fn summary(&self, mode: Detection) -> Option<LossSummary> {
        let ok: Vec<&LossRun> = self
            .runs
            .iter()
            .filter(|r| r.mode == mode && r.error.is_none() && r.detection_s.is_some())
            .collect();
        Some(LossSummary {
            runs: ok.len(),
            detection_s: median(ok.iter().filter_map(|r| r.detection_s).collect())?,
            lost: median(ok.iter().map(|r| r.lost() as f64).collect())?,
            longest_gap_s: median(ok.iter().filter_map(|r| r.longest_gap_s).collect())?,
        })
    }
}

/// The Markdown table of a result.
pub fn markdown(r: &LossResult) -> String {
    let mut out = format!(
        "Loss window of a cut router → node link, probes every 10 ms from behind the router \
         (BGP hold time {} s; BFD {}); medians.\n\n\
         | detection | runs | cut → route withdrawn at the router | probes lost | longest gap | what BIRD logged |\n\
         |---|---|---|---|---|---|\n",
        r.hold_time_s, r.bfd
    );
    for mode in [Detection::Bfd, Detection::HoldTimer] {
        match r.summary(mode) {
            Some(s) => out.push_str(&format!(
                "| {} | {} | {:.2} s | {:.0} | {:.2} s | {} |\n",
                mode.name(),
                s.runs,
                s.detection_s,
                s.lost,
                s.longest_gap_s,
                reasons(r, mode)
            )),
            None => out.push_str(&format!("| {} | 0 | – | – | – | – |\n", mode.name())),
        }
    }
    if let (Some(b), Some(h)) = (r.summary(Detection::Bfd), r.summary(Detection::HoldTimer))
        && b.detection_s > 0.0
        && b.lost > 0.0
    {
        out.push_str(&format!(
            "\nWithout BFD the failure takes {:.1}× as long to detect and loses {:.1}× as many probes.\n",
            h.detection_s / b.detection_s,
            h.lost / b.lost
        ));
    }
    let failed = r.runs.iter().filter(|x| x.error.is_some()).count();
    if failed > 0 {
        out.push_str(&format!("\n{failed} run(s) failed; see the JSON file.\n"));
    }
    out
}

/// BIRD's reasons in `mode`'s runs, each with its count.
fn reasons(r: &LossResult, mode: Detection) -> String {
    let mut counts: std::collections::BTreeMap<&str, usize> = Default::default();
    for run in r.runs.iter().filter(|x| x.mode == mode) {
        *counts
            .entry(run.router_saw.as_deref().unwrap_or("nothing"))
            .or_default() += 1;
    }
    counts
        .iter()
        .map(|(what, n)| format!("{what} ×{n}"))
        .collect::<Vec<_>>()
        .join(", ")
}

/// Brings up the lab, runs `cfg.runs` cuts per mode, writes the JSON file, tears down.
pub fn run(cfg: &LossConfig, cancel: &AtomicBool) -> Result<LossResult> {
    if !cfg.agent_bin.is_file() {
        return Err(BenchError::Failed(format!(
            "{} not found: cargo build --release -p podroute-agent",
            cfg.agent_bin.display()
        )));
    }
    let _ = Lab::down_by_name(&cfg.lab_name);
    eprintln!("bfd-loss: bringing up lab {}", cfg.lab_name);
    let mut lab = Lab::up(&LabConfig::new(&cfg.lab_name, 2).tor(Tor::None))?;
    let mut result = LossResult {
        machine: crate::convergence::report::machine(),
        started_unix: SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| d.as_secs()),
        hold_time_s: cfg.hold_time_s,
        bfd: format!("{BFD_INTERVAL_MS} ms × {BFD_MULTIPLIER}"),
        runs: Vec::new(),
        error: None,
    };
    let outcome = measure(cfg, &mut lab, cancel, &mut result);
    if let Err(e) = &outcome {
        result.error = Some(e.to_string());
    }
    write(&cfg.output, &result)?;
    drop(lab);
    outcome.map(|()| result)
}

fn write(path: &Path, result: &LossResult) -> Result<()> {
    if let Some(dir) = path.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    let json = serde_json::to_string_pretty(result)
        .map_err(|e| BenchError::Failed(format!("results to JSON: {e}")))?;
    std::fs::write(path, json + "\n").map_err(io_err(format!("write {}", path.display())))
}

/// The lab's parts a run needs.
struct Bench<'a> {
    lab: &'a Lab,
    node: LabNode,
    pod_ip: String,
    /// node1's pod CIDR: the route the router learns from it.
    cidr: String,
    hold_time_s: u16,
    cancel: &'a AtomicBool,
    _router: LabProcess,
    agent: LabProcess,
}

fn measure(
    cfg: &LossConfig,
    lab: &mut Lab,
    cancel: &AtomicBool,
    result: &mut LossResult,
) -> Result<()> {
    let node = lab.node("node1")?.clone();
    let node2 = lab.node("node2")?.clone();
    let cidr = node.pod_cidr_v4.to_string();
    let pod = lab.add_pod("node1", "probe")?;
    let lab: &Lab = lab;
    crate::convergence::install_crds(lab)?;
    apply(
        lab,
        "config",
        &format!(
            "apiVersion: podroute.io/v1alpha1\nkind: BGPConfiguration\nmetadata:\n  name: default\nspec:\n  asNumber: {NODE_AS}\n  nodeToNodeMesh:\n    enabled: false\n"
        ),
    )?;
    // The way around: node2 forwards to node1's pods, the router falls back to it.
    lab.exec_ok(&node2.name, &["sysctl", "-qw", "net.ipv4.ip_forward=1"])?;
    no_redirects(lab, &node2.name, "send_redirects")?;
    lab.exec_ok(
        &node2.name,
        &[
            "ip",
            "route",
            "replace",
            &cidr,
            "via",
            &node.ipv4.to_string(),
        ],
    )?;
    lab.add_fabric_host(ROUTER, &[format!("{ROUTER_ADDRESS}/24")])?;
    no_redirects(lab, ROUTER, "accept_redirects")?;
    let backup = node2.ipv4.to_string();
    lab.exec_ok(
        ROUTER,
        &[
            "ip", "route", "add", &cidr, "via", &backup, "metric", "4000",
        ],
    )?;
    let router = start_bird(lab, &node, cfg.hold_time_s)?;
    cut_table(lab)?;
    let agent = start_agent(lab, &node, &cfg.agent_bin)?;
    let bench = Bench {
        lab,
        node,
        pod_ip: pod.ipv4.to_string(),
        cidr,
        hold_time_s: cfg.hold_time_s,
        cancel,
        _router: router,
        agent,
    };
    for i in 0..cfg.runs {
        for mode in [Detection::Bfd, Detection::HoldTimer] {
            if cancel.load(Ordering::Relaxed) {
                return Err(BenchError::Interrupted);
            }
            let run = bench.one_cut(mode, i)?;
            eprintln!(
                "bfd-loss: run {}/{} {}: detection {:?} s, {} of {} probes lost, longest gap {:?} s",
                i + 1,
                cfg.runs,
                mode.name(),
                run.detection_s,
                run.lost(),
                run.transmitted,
                run.longest_gap_s
            );
            result.runs.push(run);
            write(&cfg.output, result)?;
        }
    }
    Ok(())
}

impl Bench<'_> {
    /// Sets `mode`, waits until BGP (and BFD) run, cuts, measures, heals.
    fn one_cut(&self, mode: Detection, index: u32) -> Result<LossRun> {
        self.set_mode(mode)?;
        self.wait_ready(mode)?;
        let mut ping = self.lab.spawn(
            ROUTER,
            // One log per run: a process name's log is appended to.
            &format!("probe-{}-{index}", mode.name()),
            "ping",
            &["-D", "-O", "-n", "-i", "0.01", "-W", "1", &self.pod_ip],
            &[],
        )?;
        std::thread::sleep(BEFORE_CUT);
        let log_before = self.router_log().len();
        self.cut(true)?;
        let cut_at = Instant::now();
        let limit = Duration::from_secs(u64::from(self.hold_time_s) + 30);
        let mut detection = None;
        while cut_at.elapsed() < limit {
            if !self.router_route()? {
                detection = Some(cut_at.elapsed().as_secs_f64());
                break;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        std::thread::sleep(AFTER_WITHDRAWAL);
        let _ = ping.kill(Signal::SIGINT);
        let exited = ping.wait_timeout(Duration::from_secs(5));
        self.cut(false)?;
        let router_saw = router_reason(self.router_log().get(log_before..).unwrap_or(""));
        let log = ping.log();
        let counts = parse_ping(&log);
        let error = match (&counts, detection) {
            (None, _) => Some(format!("no ping summary ({exited:?}): {log}")),
            (_, None) => Some(format!(
                "the router kept the route {} s after the cut",
                limit.as_secs()
            )),
            _ => None,
        };
        let counts = counts.unwrap_or_default();
        Ok(LossRun {
            mode,
            detection_s: detection,
            transmitted: counts.transmitted,
            received: counts.received,
            longest_gap_s: counts.longest_gap_s,
            router_saw,
            error,
        })
    }

    /// BIRD's log so far.
    fn router_log(&self) -> String {
        std::fs::read_to_string(self.lab.dir().join("bird-r1.log")).unwrap_or_default()
    }

    fn set_mode(&self, mode: Detection) -> Result<()> {
        let bfd = match mode {
            Detection::Bfd => format!(
                "  bfd:\n    minRxMilliseconds: {BFD_INTERVAL_MS}\n    minTxMilliseconds: {BFD_INTERVAL_MS}\n    multiplier: {BFD_MULTIPLIER}\n"
            ),
            Detection::HoldTimer => String::new(),
        };
        apply(
            self.lab,
            "peer",
            &format!(
                "apiVersion: podroute.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {ROUTER}\nspec:\n  peerAddress: {ROUTER_ADDRESS}\n  peerASNumber: {ROUTER_AS}\n  holdTimeSeconds: {}\n{bfd}",
                self.hold_time_s
            ),
        )
    }

    /// Waits until the router routes the pod CIDR via node1 and node1's session shows the
    /// mode (BFD Up, or BFD off).
    fn wait_ready(&self, mode: Detection) -> Result<()> {
        let want_bfd = match mode {
            Detection::Bfd => "up",
            Detection::HoldTimer => "off",
        };
        let started = Instant::now();
        while started.elapsed() < READY_TIMEOUT {
            if self.cancel.load(Ordering::Relaxed) {
                return Err(BenchError::Interrupted);
            }
            let peer = self.peer_status();
            if peer
                .as_ref()
                .is_some_and(|p| p["established"] == true && p["bfd"] == want_bfd)
                && self.router_route()?
            {
                return Ok(());
            }
            std::thread::sleep(Duration::from_millis(200));
        }
        Err(BenchError::Failed(format!(
            "not ready for a {} run within {} s: peer {:?}\n{}",
            mode.name(),
            READY_TIMEOUT.as_secs(),
            self.peer_status(),
            self.agent.log()
        )))
    }

    /// node1's `/status` entry for the router.
    fn peer_status(&self) -> Option<serde_json::Value> {
        let text = self
            .lab
            .exec_ok(
                &self.node.name,
                &["curl", "-sf", "http://127.0.0.1:9180/status"],
            )
            .ok()?;
        let status: serde_json::Value = serde_json::from_str(&text).ok()?;
        status["bgpPeers"]
            .as_array()?
            .iter()
            .find(|p| p["address"] == ROUTER_ADDRESS)
            .cloned()
    }

    /// Whether the router's kernel has BIRD's (protocol 12) route to node1's pod CIDR.
    fn router_route(&self) -> Result<bool> {
        let out = self.lab.exec_ok(
            ROUTER,
            &["ip", "-j", "route", "show", &self.cidr, "proto", "12"],
        )?;
        let routes: serde_json::Value = serde_json::from_str(&out).unwrap_or_default();
        Ok(routes.as_array().is_some_and(|r| !r.is_empty()))
    }

    /// Drops (or lets through again) every frame from the router's bridge port to node1's.
    fn cut(&self, on: bool) -> Result<()> {
        let from = podroute_lab::names::fabric_host_port(ROUTER);
        let to = podroute_lab::names::fabric_port(self.node.index);
        let args: Vec<&str> = if on {
            vec![
                "nft", "add", "rule", "bridge", CUT_TABLE, "cut", "iifname", &from, "oifname", &to,
                "drop",
            ]
        } else {
            vec!["nft", "flush", "chain", "bridge", CUT_TABLE, "cut"]
        };
        self.lab.exec_ok("fabric", &args)?;
        Ok(())
    }
}

/// The cut's table and chain in the fabric namespace (empty: nothing cut yet).
fn cut_table(lab: &Lab) -> Result<()> {
    lab.exec_ok("fabric", &["nft", "add", "table", "bridge", CUT_TABLE])?;
    lab.exec_ok(
        "fabric",
        &[
            "nft",
            "add",
            "chain",
            "bridge",
            CUT_TABLE,
            "cut",
            "{ type filter hook forward priority 0; }",
        ],
    )?;
    Ok(())
}

/// Sets `setting` (`send_redirects`, `accept_redirects`) to 0 on every interface of
/// `target`: a redirect from node2 would send the router's probes straight back to node1
/// through the cut.
fn no_redirects(lab: &Lab, target: &str, setting: &str) -> Result<()> {
    let script = format!("for f in /proc/sys/net/ipv4/conf/*/{setting}; do echo 0 > \"$f\"; done");
    lab.exec_ok(target, &["sh", "-c", &script])?;
    Ok(())
}

/// Writes `yaml` to `bfd-loss-<name>.yaml` in the lab directory and `kubectl apply`s it.
pub(crate) fn apply(lab: &Lab, name: &str, yaml: &str) -> Result<()> {
    let path = lab.dir().join(format!("bfd-loss-{name}.yaml"));
    std::fs::write(&path, yaml).map_err(io_err(format!("write {}", path.display())))?;
    lab.kubectl(&["apply".as_ref(), "-f".as_ref(), path.as_os_str()])?;
    Ok(())
}

/// BIRD in the router's namespace: eBGP to node1 (its pod CIDR into the kernel) and a BFD
/// session to it, 300 ms × 3, that ends the BGP session when it goes Down (`bfd on`; while
/// node1 runs no BFD it is never Up, and BGP runs without it). `debug { events }` makes
/// BIRD log "BFD session down" when that is what ends the session.
fn start_bird(lab: &Lab, node: &LabNode, hold_time_s: u16) -> Result<LabProcess> {
    let dir = lab.dir();
    let log = dir.join("bird-r1.log");
    let keepalive = (hold_time_s / 3).max(1);
    let text = format!(
        "log \"{log}\" all;\n\
         router id {ROUTER_ADDRESS};\n\
         protocol device {{ }}\n\
         protocol kernel {{ ipv4 {{ import none; export where source = RTS_BGP; }}; }}\n\
         protocol bfd {{\n  \
           interface \"*\" {{ min rx interval {BFD_INTERVAL_MS} ms; min tx interval {BFD_INTERVAL_MS} ms; multiplier {BFD_MULTIPLIER}; }};\n  \
           neighbor {node_ip} local {ROUTER_ADDRESS};\n\
         }}\n\
         protocol bgp node1 {{\n  \
           local {ROUTER_ADDRESS} as {ROUTER_AS};\n  \
           neighbor {node_ip} as {NODE_AS};\n  \
           direct;\n  \
           hold time {hold_time_s};\n  \
           keepalive time {keepalive};\n  \
           connect retry time 1;\n  \
           error wait time 1, 5;\n  \
           bfd on;\n  \
           debug {{ events }};\n  \
           ipv4 {{ import all; export none; }};\n\
         }}\n",
        log = log.display(),
        node_ip = node.ipv4,
    );
    let config = dir.join("bird-r1.conf");
    std::fs::write(&config, text).map_err(io_err(format!("write {}", config.display())))?;
    let args = [
        "-f".to_owned(),
        "-c".to_owned(),
        config.display().to_string(),
        "-s".to_owned(),
        dir.join("bird-r1.ctl").display().to_string(),
        "-P".to_owned(),
        dir.join("bird-r1.pid").display().to_string(),
    ];
    Ok(lab.spawn(ROUTER, "bird", "bird", &args, &[])?)
}

fn start_agent(lab: &Lab, node: &LabNode, agent: &Path) -> Result<LabProcess> {
    let mut args =
        crate::convergence::systems::podroute_args(lab, node, &lab.dir().join("bfd-loss"))?;
    args.extend(["--startup-grace".to_owned(), "5s".to_owned()]);
    Ok(lab.spawn(
        &node.name,
        "bfd-loss-agent",
        agent,
        &args,
        &[("RUST_LOG", "info")],
    )?)
}

/// The first line of a BIRD log about the BGP session to node1 going down, without
/// BIRD's timestamp and protocol name.
fn router_reason(log: &str) -> Option<String> {
    log.lines()
        .filter_map(|l| l.split_once("node1: ").map(|(_, rest)| rest.trim()))
        .find(|rest| {
            rest.starts_with("Received:") || rest.starts_with("Error:") || rest.contains("BFD")
        })
        .map(str::to_owned)
}

/// What a `ping -D -O` log says.
#[derive(Debug, Clone, Copy, Default, PartialEq)]
pub struct PingCounts {
    /// Probes sent (from the summary).
    pub transmitted: u64,
    /// Probes answered (from the summary).
    pub received: u64,
    /// The longest time between two answers (their `-D` timestamps), seconds.
    pub longest_gap_s: Option<f64>,
}

/// Reads a `ping -D` log: the summary's counts and the longest gap between answers;
/// `None` without a summary line.
pub fn parse_ping(log: &str) -> Option<PingCounts> {
    let summary = log.lines().find(|l| l.contains("packets transmitted"))?;
    let mut numbers = summary
        .split(',')
        .map(|part| part.split_whitespace().next()?.parse::<u64>().ok());
    let transmitted = numbers.next()??;
    let received = numbers.next()??;
    let answers: Vec<f64> = log
        .lines()
        .filter(|l| l.contains(" bytes from "))
        .filter_map(|l| l.strip_prefix('[')?.split(']').next()?.parse().ok())
        .collect();
    let longest_gap_s = answers
        .windows(2)
        .map(|w| w[1] - w[0])
        .max_by(f64::total_cmp);
    Some(PingCounts {
        transmitted,
        received,
        longest_gap_s,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ping_log_gives_its_counts_and_longest_gap() {
        let log = "PING 10.244.1.2 (10.244.1.2) 56(84) bytes of data.\n\
            [1765051200.000000] 64 bytes from 10.244.1.2: icmp_seq=1 ttl=63 time=0.1 ms\n\
            [1765051200.010000] 64 bytes from 10.244.1.2: icmp_seq=2 ttl=63 time=0.1 ms\n\
            [1765051200.020000] no answer yet for icmp_seq=3\n\
            [1765051200.950000] 64 bytes from 10.244.1.2: icmp_seq=96 ttl=63 time=0.1 ms\n\
            \n--- 10.244.1.2 ping statistics ---\n\
            96 packets transmitted, 3 received, 96.875% packet loss, time 950ms\n";
        let counts = parse_ping(log).expect("summary");
        assert_eq!((counts.transmitted, counts.received), (96, 3));
        let gap = counts.longest_gap_s.expect("gap");
        assert!((gap - 0.94).abs() < 1e-6, "{gap}");
        // ping's summary with errors (unreachable while no route was there).
        let errors = "10 packets transmitted, 4 received, +6 errors, 60% packet loss, time 90ms\n";
        let counts = parse_ping(errors).expect("summary");
        assert_eq!((counts.transmitted, counts.received), (10, 4));
        assert_eq!(counts.longest_gap_s, None);
        assert_eq!(parse_ping("PING 10.244.1.2\n"), None);
    }

    #[test]
    fn the_router_log_says_who_ended_the_session() {
        let log = "2026-12-06 22:30:00.100 <INFO> node1: Established\n\
            2026-12-06 22:30:09.200 <RMT> node1: Error: Hold timer expired\n\
            2026-12-06 22:30:09.300 <INFO> node1: State changed to down\n";
        assert_eq!(
            router_reason(log).as_deref(),
            Some("Error: Hold timer expired")
        );
        assert_eq!(router_reason("node1: State changed to down\n"), None);
    }

    #[test]
    fn the_table_has_the_medians_of_each_mode_and_their_ratio() {
        let run = |mode, detection: f64, sent: u64, lost: u64| LossRun {
            mode,
            detection_s: Some(detection),
            transmitted: sent,
            received: sent - lost,
            longest_gap_s: Some(detection + 0.01),
            router_saw: None,
            error: None,
        };
        let result = LossResult {
            machine: "test".into(),
            started_unix: 0,
            hold_time_s: 9,
            bfd: "300 ms × 3".into(),
            runs: vec![
                run(Detection::Bfd, 0.9, 500, 90),
                run(Detection::HoldTimer, 8.0, 1200, 800),
                run(Detection::Bfd, 1.0, 500, 100),
                run(Detection::HoldTimer, 7.0, 1100, 700),
                run(Detection::Bfd, 0.8, 500, 80),
            ],
            error: None,
        };
        let bfd = result.summary(Detection::Bfd).expect("bfd runs");
        assert_eq!((bfd.runs, bfd.detection_s, bfd.lost), (3, 0.9, 90.0));
        let hold = result.summary(Detection::HoldTimer).expect("hold runs");
        assert_eq!((hold.runs, hold.detection_s, hold.lost), (2, 7.5, 750.0));
        let table = markdown(&result);
        assert!(
            table.contains("| bfd | 3 | 0.90 s | 90 | 0.91 s | nothing ×3 |"),
            "{table}"
        );
        assert!(
            table.contains("| hold-timer | 2 | 7.50 s | 750 |"),
            "{table}"
        );
        assert!(table.contains("8.3× as long"), "{table}");
    }
}
