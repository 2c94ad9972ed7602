//! CNI churn (issue 15, item 4): many pods added, then deleted, all at once, as a runtime
//! does when a node fills or drains; podroute's plugin against Debian's `ptp` + `host-local`
//! (the reference plugins doing the same job) and against `bridge` + `host-local` (how
//! kube-router wires pods: its `kube-bridge`, default gateway on the bridge), then podroute
//! killed -9 mid-churn and its address store checked.
//!
//! Plugins are run directly (`CNI_COMMAND` and the configuration on stdin) from threads that
//! sit in a private "node" namespace, so they inherit it with no `ip netns exec` in the
//! measured time; every address store (`dataDir`) is a temporary folder: nothing is written
//! under the host's `/var/lib/cni`. Pod namespaces are made (and removed) with one
//! `ip -batch` each round, outside the measured time.
//!
//! One round for one plugin: `pods` ADDs started together (a barrier), each timed as the
//! runtime waits for it, and the wall time until the last one answered; then `pods` DELs
//! the same way; then the pod namespaces go and the harness waits until no veth is left in
//! the node namespace. Plugins alternate within a round (A B C A B C ...).
//!
//! The kill round (podroute only): ADDs as above, a few of them held at known points by the
//! plugin's test hook (`PODROUTE_TEST_STALL`: after the address is recorded, after the veth
//! exists); once a third of the others have answered, every plugin still running gets
//! SIGKILL. The runtime then does what the CNI spec asks: DEL for every failed ADD, ADD
//! again, then GC with every pod valid (an ADD killed between creating an address file and
//! writing its owner leaves a record no DEL can find; containerd's periodic GC frees it), and
//! the store must hold exactly one address per pod, the one on the pod's `eth0`;
//! after DEL of every pod and the namespaces' removal it must hold nothing, and no veth may
//! be left.

use std::collections::{BTreeMap, BTreeSet};
use std::io::Write;
use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Barrier};
use std::thread;
use std::time::{Duration, Instant};

use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::error::{BenchError, Result, io_err};
use crate::netns;
use crate::netns::ip_batch;
use crate::results::Machine;

/// Debian's reference plugins.
pub const DEBIAN_PLUGINS: &str = "/usr/lib/cni";
/// The podroute network's name (its store is `<dataDir>/<name>/`).
const PODROUTE_NETWORK: &str = "churn-podroute";
/// Longest wait for the veths to go after the pod namespaces are removed.
const VETH_TIMEOUT: Duration = Duration::from_secs(30);
/// A round starts once the machine was busy for less than this fraction of its CPU time over
/// the last [`SETTLE_WINDOW`] (steal, the hypervisor running something else, is not counted
/// as busy: waiting does not end it), or after [`SETTLE_TIMEOUT`].
const SETTLE_BUSY: f64 = 0.05;
/// The window [`SETTLE_BUSY`] is measured over: 50 clock ticks on 2 CPUs.
const SETTLE_WINDOW: Duration = Duration::from_millis(250);
/// The longest wait for a quiet machine; rounds that reach it are counted in
/// [`ChurnResult::unsettled_rounds`].
const SETTLE_TIMEOUT: Duration = Duration::from_secs(10);
/// Longest a plugin call may take before the harness gives up on it.
const CALL_TIMEOUT: Duration = Duration::from_secs(120);

/// What to run.
#[derive(Debug, Clone)]
pub struct ChurnConfig {
    /// Prefix of every namespace this run makes (`<prefix>-node`, `<prefix>-p<i>`).
    pub prefix: String,
    /// Pods per round.
    pub pods: usize,
    /// Rounds per plugin (medians are over every pod of every round).
    pub rounds: u32,
    /// The podroute plugin binary.
    pub podroute_bin: PathBuf,
    /// The JSON result file.
    pub output: PathBuf,
    /// Where every plugin keeps its IPAM files (in a directory of this run's own). Its
    /// filesystem matters: see [`data_filesystem`].
    pub data_dir: PathBuf,
    /// Start each round on a quiet machine ([`settle`]). Off for the smoke test, which runs
    /// next to other tests: the machine is never quiet there, and its numbers are not read.
    pub settle: bool,
}

/// The plugins compared.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Plugin {
    Podroute,
    Ptp,
    Bridge,
}

impl Plugin {
    const ALL: [Plugin; 3] = [Plugin::Podroute, Plugin::Ptp, Plugin::Bridge];

    fn name(self) -> &'static str {
        match self {
            Plugin::Podroute => "podroute",
            Plugin::Ptp => "ptp+host-local",
            Plugin::Bridge => "bridge+host-local",
        }
    }

    fn binary(self, cfg: &ChurnConfig) -> PathBuf {
        match self {
            Plugin::Podroute => cfg.podroute_bin.clone(),
            Plugin::Ptp => Path::new(DEBIAN_PLUGINS).join("ptp"),
            Plugin::Bridge => Path::new(DEBIAN_PLUGINS).join("bridge"),
        }
    }

    /// The network configuration; each plugin gets its own /24 of the lab's pod range.
    fn config(self, data: &Path) -> Value {
        match self {
            Plugin::Podroute => json!({
                "cniVersion": "1.0.0", "name": PODROUTE_NETWORK, "type": "podroute", "mtu": 1500,
                "ranges": [{"subnet": "10.244.1.0/24"}], "dataDir": data,
            }),
            Plugin::Ptp => json!({
                "cniVersion": "1.0.0", "name": "churn-ptp", "type": "ptp", "ipMasq": false,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local", "dataDir": data,
                    "ranges": [[{"subnet": "10.244.2.0/24"}]],
                    "routes": [{"dst": "0.0.0.0/0"}],
                },
            }),
            // kube-router's 10-kuberouter.conflist, without its portmap entry.
            Plugin::Bridge => json!({
                "cniVersion": "1.0.0", "name": "churn-bridge", "type": "bridge",
                "bridge": "kube-bridge", "isDefaultGateway": true, "hairpinMode": true,
                "mtu": 1500,
                "ipam": {
                    "type": "host-local", "dataDir": data,
                    "ranges": [[{"subnet": "10.244.3.0/24"}]],
                },
            }),
        }
    }
}

/// One plugin's numbers over every round.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct PluginChurn {
    /// The plugin (chain).
    pub plugin: String,
    /// ADD latency per pod, p50 / p90 / max, milliseconds.
    pub add_ms: [f64; 3],
    /// DEL latency per pod, p50 / p90 / max.
    pub del_ms: [f64; 3],
    /// ADD + DEL per pod, p50 / p90 / max.
    pub add_del_ms: [f64; 3],
    /// Wall time of one round (every ADD answered, then every DEL), median over rounds.
    pub round_wall_ms: f64,
    /// Pod namespaces removed → no veth left in the node, median over rounds.
    pub veths_gone_ms: f64,
    /// CPU time (user + system) of the plugin processes and their IPAM plugins per pod
    /// (ADD + DEL), milliseconds, over every round.
    pub cpu_per_pod_ms: f64,
    /// Calls that failed (non-zero exit).
    pub failures: u64,
}

/// What the kill round found.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct KillCheck {
    /// Plugins killed with SIGKILL (held by the test hook or still running).
    pub killed: usize,
    /// ADDs that had answered before the kill.
    pub completed_before_kill: usize,
    /// Address records in the store right after the kill.
    pub records_after_kill: usize,
    /// Records with no owner (the file created, the plugin killed before writing its owner)
    /// after the runtime's DEL and ADD again, before GC.
    pub ownerless_before_gc: usize,
    /// Whether the runtime's GC (spec 1.1.0, every pod a valid attachment) succeeded.
    pub gc_ok: bool,
    /// Pods whose store record and `eth0` address disagree, or that share an address, or
    /// that own more than one record, after the runtime's DEL and ADD again.
    pub inconsistent_pods: Vec<String>,
    /// Records in the store after DEL of every pod (leaked addresses).
    pub leaked_records: usize,
    /// IPAM index entries (`owner:…`) in the store after DEL of every pod. Absent in result
    /// files from before the check.
    #[serde(default)]
    pub leaked_index_entries: usize,
    /// veths in the node namespace after the pod namespaces went (leaked veths).
    pub leaked_veths: usize,
}

impl KillCheck {
    /// No leaked or duplicate address, no leaked veth.
    pub fn clean(&self) -> bool {
        self.gc_ok
            && self.inconsistent_pods.is_empty()
            && self.leaked_records == 0
            && self.leaked_index_entries == 0
            && self.leaked_veths == 0
    }
}

/// The result file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ChurnResult {
    /// Where it ran.
    pub machine: Machine,
    /// Pods per round.
    pub pods: usize,
    /// Rounds per plugin.
    pub rounds: u32,
    /// The filesystem of the IPAM data ([`data_filesystem`]); empty in older result files.
    #[serde(default)]
    pub data_fs: String,
    /// Per plugin, podroute first.
    pub plugins: Vec<PluginChurn>,
    /// Rounds that started on a machine still busy after [`SETTLE_TIMEOUT`] (see [`settle`]);
    /// absent in older result files.
    #[serde(default)]
    pub unsettled_rounds: u32,
    /// The kill round.
    pub kill: KillCheck,
}

impl ChurnResult {
    /// `other`'s ADD+DEL p50 over podroute's, and the same for the round's wall time.
    pub fn ratios(&self, other: &str) -> Option<(f64, f64)> {
        let p = self.plugins.iter().find(|p| p.plugin == "podroute")?;
        let o = self.plugins.iter().find(|p| p.plugin == other)?;
        Some((
            o.add_del_ms[0] / p.add_del_ms[0],
            o.round_wall_ms / p.round_wall_ms,
        ))
    }
}

/// The namespaces of one run, removed on drop.
struct Namespaces {
    prefix: String,
    pods: usize,
}

impl Namespaces {
    fn node(&self) -> String {
        format!("{}-node", self.prefix)
    }
    fn pod(&self, i: usize) -> String {
        format!("{}-p{i}", self.prefix)
    }
    fn pod_path(&self, i: usize) -> String {
        format!("/run/netns/{}", self.pod(i))
    }
    fn add_pods(&self) -> Result<()> {
        let batch: String = (0..self.pods)
            .map(|i| format!("netns add {}\n", self.pod(i)))
            .collect();
        ip_batch(None, &batch)
    }
    fn remove_pods(&self) {
        let batch: String = (0..self.pods)
            .filter(|&i| Path::new(&self.pod_path(i)).exists())
            .map(|i| format!("netns del {}\n", self.pod(i)))
            .collect();
        if !batch.is_empty() {
            let _ = ip_batch(None, &batch);
        }
    }
}

impl Drop for Namespaces {
    fn drop(&mut self) {
        self.remove_pods();
        let _ = Command::new("ip")
            .args(["netns", "del", &self.node()])
            .output();
    }
}

/// One plugin call's outcome.
#[derive(Debug, Clone)]
struct Call {
    took: Duration,
    ok: bool,
    killed: bool,
    stdout: Vec<u8>,
}

/// A plugin call prepared for one pod.
#[derive(Debug, Clone)]
struct Invocation {
    bin: PathBuf,
    conf: String,
    command: &'static str,
    container: String,
    netns: String,
    stall: Option<&'static str>,
}

impl Invocation {
    /// Runs the plugin; with `kill`, polls and SIGKILLs it once `kill` is set.
    fn run(&self, kill: Option<&AtomicBool>) -> Call {
        let start = Instant::now();
        let mut c = Command::new(&self.bin);
        c.env_clear()
            .env("CNI_COMMAND", self.command)
            .env("CNI_CONTAINERID", &self.container)
            .env("CNI_NETNS", &self.netns)
            .env("CNI_IFNAME", "eth0")
            .env("CNI_PATH", DEBIAN_PLUGINS)
            .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::null());
        if let Some(stage) = self.stall {
            c.env(STALL_ENV, stage);
        }
        let failed = |start: Instant| Call {
            took: start.elapsed(),
            ok: false,
            killed: false,
            stdout: Vec::new(),
        };
        let Ok(mut child) = c.spawn() else {
            return failed(start);
        };
        if let Some(mut stdin) = child.stdin.take() {
            let _ = stdin.write_all(self.conf.as_bytes());
        }
        let mut killed = false;
        if let Some(flag) = kill {
            loop {
                match child.try_wait() {
                    Ok(Some(_)) => break,
                    Ok(None) if flag.load(Ordering::SeqCst) => {
                        let _ = child.kill();
                        killed = true;
                        break;
                    }
                    Ok(None) if start.elapsed() > CALL_TIMEOUT => {
                        let _ = child.kill();
                        break;
                    }
                    Ok(None) => thread::sleep(Duration::from_micros(500)),
                    Err(_) => break,
                }
            }
        }
        match child.wait_with_output() {
            Ok(out) => Call {
                took: start.elapsed(),
                ok: out.status.success() && !killed,
                killed,
                stdout: out.stdout,
            },
            Err(_) => failed(start),
        }
    }
}

/// The plugin's test hook (`STALL_ENV` in `cni/src/commands.rs`).
const STALL_ENV: &str = "PODROUTE_TEST_STALL";

/// Runs every invocation at once from threads in namespace `node`; returns the calls in
/// order and the wall time until the last answered.
fn all_at_once(
    node: &str,
    calls: Vec<Invocation>,
    kill: Option<Arc<AtomicBool>>,
    answered: Option<Arc<AtomicUsize>>,
) -> Result<(Vec<Call>, Duration)> {
    let barrier = Arc::new(Barrier::new(calls.len() + 1));
    let mut handles = Vec::new();
    for (i, inv) in calls.into_iter().enumerate() {
        let (b, k, a) = (barrier.clone(), kill.clone(), answered.clone());
        handles.push(
            netns::spawn_in(node, &format!("cni-{i}"), move || {
                b.wait();
                let call = inv.run(k.as_deref());
                if let Some(a) = a {
                    a.fetch_add(1, Ordering::SeqCst);
                }
                Ok(call)
            })
            .map_err(io_err("spawn a plugin thread"))?,
        );
    }
    barrier.wait();
    let start = Instant::now();
    let mut out = Vec::new();
    for h in handles {
        let call = h
            .join()
            .map_err(|_| BenchError::Failed("a plugin thread panicked".into()))?
            .map_err(io_err("plugin thread"))?;
        out.push(call);
    }
    Ok((out, start.elapsed()))
}

/// veths in namespace `ns`.
fn veth_count(ns: &str) -> Result<usize> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "link", "show", "type", "veth"])
        .output()
        .map_err(io_err("ip link show"))?;
    let v: Value = serde_json::from_slice(&out.stdout).unwrap_or(Value::Array(Vec::new()));
    Ok(v.as_array().map_or(0, Vec::len))
}

fn wait_no_veth(ns: &str) -> Result<Duration> {
    let start = Instant::now();
    while veth_count(ns)? > 0 {
        if start.elapsed() > VETH_TIMEOUT {
            return Err(BenchError::Failed(format!(
                "veths still in {ns} {} s after the pods went",
                VETH_TIMEOUT.as_secs()
            )));
        }
        thread::sleep(Duration::from_millis(2));
    }
    Ok(start.elapsed())
}

/// Waits until the machine is quiet (see [`SETTLE_BUSY`]); `false` when it did not get there
/// within [`SETTLE_TIMEOUT`]. The kernel destroys the previous round's namespaces, and with
/// them any veths left in them, in a background worker after the round; without this wait that
/// work would land in the next plugin's round.
fn settle() -> Result<bool> {
    let start = Instant::now();
    let ticks = || crate::procstat::machine_ticks().map_err(io_err("/proc/stat"));
    let mut before = ticks()?;
    while start.elapsed() < SETTLE_TIMEOUT {
        thread::sleep(SETTLE_WINDOW);
        let now = ticks()?;
        // Counters that went back (iowait may) make the window say nothing.
        if let (Some(busy), Some(total)) =
            (now.0.checked_sub(before.0), now.1.checked_sub(before.1))
            && total > 0
            && (busy as f64) < SETTLE_BUSY * total as f64
        {
            return Ok(true);
        }
        before = now;
    }
    Ok(false)
}

fn invocations(
    ns: &Namespaces,
    bin: &Path,
    conf: &str,
    command: &'static str,
    tag: &str,
    stall: impl Fn(usize) -> Option<&'static str>,
) -> Vec<Invocation> {
    (0..ns.pods)
        .map(|i| Invocation {
            bin: bin.to_owned(),
            conf: conf.to_owned(),
            command,
            container: format!("churn-{tag}-{i}"),
            netns: ns.pod_path(i),
            stall: stall(i),
        })
        .collect()
}

#[derive(Default)]
struct Samples {
    add: Vec<f64>,
    del: Vec<f64>,
    add_del: Vec<f64>,
    wall: Vec<f64>,
    gone: Vec<f64>,
    cpu_ms: f64,
    failures: u64,
}

/// CPU time of every reaped child of this process so far, milliseconds.
fn children_cpu_ms() -> f64 {
    use nix::sys::resource::{UsageWho, getrusage};
    getrusage(UsageWho::RUSAGE_CHILDREN).map_or(0.0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as f64 * 1e3 + tv.tv_usec() as f64 / 1e3;
        t(u.user_time()) + t(u.system_time())
    })
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

/// p50, p90 and max of `v`.
fn spread(v: &mut [f64]) -> [f64; 3] {
    if v.is_empty() {
        return [0.0; 3];
    }
    v.sort_by(f64::total_cmp);
    let at = |p: f64| v[((v.len() as f64 - 1.0) * p).round() as usize];
    [at(0.5), at(0.9), v[v.len() - 1]]
}

fn median(v: &mut [f64]) -> f64 {
    spread(v)[0]
}

/// Runs the churn rounds and the kill round; writes `cfg.output`.
pub fn run(cfg: &ChurnConfig, cancel: &AtomicBool) -> Result<ChurnResult> {
    for p in Plugin::ALL {
        let bin = p.binary(cfg);
        if !bin.is_file() {
            return Err(BenchError::Failed(format!(
                "{} not found (podroute: tests/scripts/static-bins.sh; the others: \
                 apt-get install containernetworking-plugins)",
                bin.display()
            )));
        }
    }
    let ns = Namespaces {
        prefix: cfg.prefix.clone(),
        pods: cfg.pods,
    };
    let _ = Command::new("ip")
        .args(["netns", "del", &ns.node()])
        .output();
    ip_batch(None, &format!("netns add {}\n", ns.node()))?;
    node_forwards(&ns.node())?;
    let data = cfg.data_dir.join(format!("{}-cni-data", cfg.prefix));
    let _ = std::fs::remove_dir_all(&data);
    std::fs::create_dir_all(&data).map_err(io_err(format!("create {}", data.display())))?;
    let outcome = rounds(cfg, &ns, &data, cancel);
    let _ = std::fs::remove_dir_all(&data);
    let result = outcome?;
    if let Some(dir) = cfg.output.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(&result)
        .map_err(|e| BenchError::Failed(format!("results to JSON: {e}")))?;
    std::fs::write(&cfg.output, text + "\n")
        .map_err(io_err(format!("write {}", cfg.output.display())))?;
    Ok(result)
}

fn rounds(
    cfg: &ChurnConfig,
    ns: &Namespaces,
    data: &Path,
    cancel: &AtomicBool,
) -> Result<ChurnResult> {
    let mut samples: Vec<Samples> = Plugin::ALL.iter().map(|_| Samples::default()).collect();
    let mut unsettled_rounds = 0;
    for round in 1..=cfg.rounds {
        for (p, s) in Plugin::ALL.iter().zip(samples.iter_mut()) {
            if cancel.load(Ordering::SeqCst) {
                return Err(BenchError::Interrupted);
            }
            let bin = p.binary(cfg);
            let conf = p.config(data).to_string();
            ns.add_pods()?;
            if cfg.settle && !settle()? {
                unsettled_rounds += 1;
                eprintln!(
                    "cni-churn: round {round} {}: the machine was still busy after {} s",
                    p.name(),
                    SETTLE_TIMEOUT.as_secs()
                );
            }
            let tag = format!("r{round}");
            let cpu_before = children_cpu_ms();
            let adds = invocations(ns, &bin, &conf, "ADD", &tag, |_| None);
            let (added, add_wall) = all_at_once(&ns.node(), adds, None, None)?;
            let dels = invocations(ns, &bin, &conf, "DEL", &tag, |_| None);
            let (deleted, del_wall) = all_at_once(&ns.node(), dels, None, None)?;
            s.cpu_ms += children_cpu_ms() - cpu_before;
            ns.remove_pods();
            let gone = wait_no_veth(&ns.node())?;
            for (a, d) in added.iter().zip(&deleted) {
                s.add.push(ms(a.took));
                s.del.push(ms(d.took));
                s.add_del.push(ms(a.took + d.took));
                s.failures += u64::from(!a.ok) + u64::from(!d.ok);
            }
            s.wall.push(ms(add_wall + del_wall));
            s.gone.push(ms(gone));
            eprintln!(
                "cni-churn: round {round} {}: {} pods, ADD wall {:.0} ms, DEL wall {:.0} ms, \
                 veths gone {:.0} ms, failures {}",
                p.name(),
                cfg.pods,
                ms(add_wall),
                ms(del_wall),
                ms(gone),
                s.failures
            );
        }
    }
    let plugins = Plugin::ALL
        .iter()
        .zip(samples.iter_mut())
        .map(|(p, s)| PluginChurn {
            plugin: p.name().to_owned(),
            add_ms: spread(&mut s.add),
            del_ms: spread(&mut s.del),
            add_del_ms: spread(&mut s.add_del),
            round_wall_ms: median(&mut s.wall),
            veths_gone_ms: median(&mut s.gone),
            cpu_per_pod_ms: s.cpu_ms / (cfg.pods as f64 * f64::from(cfg.rounds)),
            failures: s.failures,
        })
        .collect();
    let kill = kill_round(cfg, ns, data)?;
    Ok(ChurnResult {
        machine: crate::suite::machine(&cfg.podroute_bin),
        pods: cfg.pods,
        rounds: cfg.rounds,
        data_fs: data_filesystem(data),
        plugins,
        unsettled_rounds,
        kill,
    })
}

/// The filesystem that holds `dir`, e.g. "ext4 without a journal (/dev/vda)". Every plugin
/// creates and deletes files per pod, and on ext4 without a journal each new inode is found by
/// skipping every inode freed in the last minute (`recently_deleted`): under churn that costs
/// more than the netlink work. A node's disk has a journal; this machine's root does not.
pub fn data_filesystem(dir: &Path) -> String {
    let out = Command::new("findmnt")
        .args(["-n", "-o", "SOURCE,FSTYPE", "--target"])
        .arg(dir)
        .output();
    let text = out.map_or_else(
        |_| String::new(),
        |o| String::from_utf8_lossy(&o.stdout).into_owned(),
    );
    let mut fields = text.split_whitespace();
    let (Some(source), Some(fstype)) = (fields.next(), fields.next()) else {
        return "unknown".into();
    };
    if fstype != "ext4" {
        return format!("{fstype} ({source})");
    }
    let device = Path::new(source)
        .file_name()
        .map(|n| n.to_string_lossy().into_owned());
    let journal = device
        .and_then(|d| std::fs::read_to_string(format!("/sys/fs/ext4/{d}/journal_task")).ok())
        .map(|t| t.trim() != "<none>");
    match journal {
        Some(true) => format!("ext4 with a journal ({source})"),
        Some(false) => format!("ext4 without a journal ({source})"),
        None => format!("ext4 ({source})"),
    }
}

/// The address records of podroute's store: address → container IDs (one each, unless the
/// store is corrupt, which shows as a missing record).
fn store_records(data: &Path) -> Result<BTreeMap<IpAddr, String>> {
    let mut out = BTreeMap::new();
    for (name, path) in store_files(data)? {
        let Ok(addr) = name.parse::<IpAddr>() else {
            continue;
        };
        let text = std::fs::read_to_string(path).unwrap_or_default();
        out.insert(addr, text.lines().next().unwrap_or_default().to_owned());
    }
    Ok(out)
}

/// The names and paths of the files in the podroute plugin's store (none before it exists).
fn store_files(data: &Path) -> Result<Vec<(String, PathBuf)>> {
    let dir = data.join(PODROUTE_NETWORK);
    let Ok(entries) = std::fs::read_dir(&dir) else {
        return Ok(Vec::new());
    };
    let mut out = Vec::new();
    for e in entries {
        let e = e.map_err(io_err(format!("read {}", dir.display())))?;
        if let Some(name) = e.file_name().to_str() {
            out.push((name.to_owned(), e.path()));
        }
    }
    Ok(out)
}

/// Turns on IPv4 forwarding in the node namespace, as on every Kubernetes node. A new
/// namespace copies the host's setting, and with it off the first plugins of a run would
/// each switch their veth's forwarding on under the kernel's RTNL lock (the sysctl retries
/// while another holds it), and `ptp` would switch it on for all later ones.
fn node_forwards(node: &str) -> Result<()> {
    // `/proc/sys/net` shows the namespace of the thread that opens it.
    netns::spawn_in(node, "ip-forward", || {
        std::fs::write("/proc/sys/net/ipv4/ip_forward", "1")
    })
    .map_err(io_err("spawn the ip_forward thread"))?
    .join()
    .map_err(|_| BenchError::Failed("the ip_forward thread panicked".into()))?
    .map_err(io_err(format!("ip_forward in {node}")))
}

/// The plugin's IPAM index entries (`owner:<containerID>:<ifname>:<family>` links) in the
/// store.
fn index_entries(data: &Path) -> Result<usize> {
    Ok(store_files(data)?
        .iter()
        .filter(|(name, _)| name.starts_with("owner:"))
        .count())
}

/// The IPv4 address on `eth0` in namespace `ns`, if any.
fn pod_address(ns: &str) -> Option<IpAddr> {
    let out = Command::new("ip")
        .args(["-n", ns, "-j", "-4", "addr", "show", "dev", "eth0"])
        .output()
        .ok()?;
    let v: Value = serde_json::from_slice(&out.stdout).ok()?;
    v.get(0)?["addr_info"].get(0)?["local"]
        .as_str()?
        .parse()
        .ok()
}

fn kill_round(cfg: &ChurnConfig, ns: &Namespaces, data: &Path) -> Result<KillCheck> {
    let bin = Plugin::Podroute.binary(cfg);
    let conf = Plugin::Podroute.config(data).to_string();
    let mut check = KillCheck::default();
    ns.add_pods()?;
    // Every fifth pod is held after its address is recorded, the next after its veth
    // exists: those are certainly killed at the points that matter; the rest race the kill.
    let stall = |i: usize| match i % 5 {
        0 => Some("after-ipam"),
        1 => Some("after-veth"),
        _ => None,
    };
    let held = (0..ns.pods).filter(|&i| stall(i).is_some()).count();
    let free = ns.pods - held;
    let kill = Arc::new(AtomicBool::new(false));
    let answered = Arc::new(AtomicUsize::new(0));
    let adds = invocations(ns, &bin, &conf, "ADD", "kill", stall);
    let (k, a) = (kill.clone(), answered.clone());
    let killer = thread::spawn(move || {
        let deadline = Instant::now() + CALL_TIMEOUT;
        while a.load(Ordering::SeqCst) < free.div_ceil(3) && Instant::now() < deadline {
            thread::sleep(Duration::from_micros(200));
        }
        k.store(true, Ordering::SeqCst);
    });
    let (added, _) = all_at_once(&ns.node(), adds, Some(kill), Some(answered))?;
    let _ = killer.join();
    check.killed = added.iter().filter(|c| c.killed).count();
    check.completed_before_kill = added.iter().filter(|c| c.ok).count();
    check.records_after_kill = store_records(data)?.len();
    // The runtime: DEL for every ADD that failed, then ADD again.
    let failed: Vec<usize> = (0..ns.pods).filter(|&i| !added[i].ok).collect();
    let all = invocations(ns, &bin, &conf, "DEL", "kill", |_| None);
    let dels: Vec<Invocation> = failed.iter().map(|&i| all[i].clone()).collect();
    all_at_once(&ns.node(), dels, None, None)?;
    let all = invocations(ns, &bin, &conf, "ADD", "kill", |_| None);
    let retries: Vec<Invocation> = failed.iter().map(|&i| all[i].clone()).collect();
    let (again, _) = all_at_once(&ns.node(), retries, None, None)?;
    for (&i, call) in failed.iter().zip(&again) {
        if !call.ok {
            check.inconsistent_pods.push(format!(
                "{}: ADD again failed: {}",
                ns.pod(i),
                String::from_utf8_lossy(&call.stdout)
            ));
        }
    }
    // A record whose owner was never written belongs to nobody, so no DEL frees it: the
    // runtime's periodic GC does (containerd calls it), with every live pod valid.
    check.ownerless_before_gc = store_records(data)?
        .values()
        .filter(|o| o.is_empty())
        .count();
    let mut gc_conf = Plugin::Podroute.config(data);
    gc_conf["cniVersion"] = json!("1.1.0");
    gc_conf["cni.dev/valid-attachments"] = (0..ns.pods)
        .map(|i| json!({"containerID": format!("churn-kill-{i}"), "ifname": "eth0"}))
        .collect();
    let gc = Invocation {
        bin: bin.clone(),
        conf: gc_conf.to_string(),
        command: "GC",
        container: String::new(),
        netns: String::new(),
        stall: None,
    };
    let (gc_calls, _) = all_at_once(&ns.node(), vec![gc], None, None)?;
    check.gc_ok = gc_calls.first().is_some_and(|c| c.ok);
    let records = store_records(data)?;
    let mut owned: BTreeMap<String, Vec<IpAddr>> = BTreeMap::new();
    for (addr, container) in &records {
        owned.entry(container.clone()).or_default().push(*addr);
    }
    let mut seen = BTreeSet::new();
    for i in 0..ns.pods {
        let container = format!("churn-kill-{i}");
        let on_pod = pod_address(&ns.pod(i));
        let in_store = owned.get(&container).cloned().unwrap_or_default();
        let ok = match on_pod {
            Some(a) => in_store == [a] && seen.insert(a),
            None => false,
        };
        if !ok {
            check.inconsistent_pods.push(format!(
                "{}: eth0 {on_pod:?}, store {in_store:?}",
                ns.pod(i)
            ));
        }
    }
    // Records of containers that are no pod (leaked by a killed ADD and not released).
    for (container, addrs) in &owned {
        if !container.starts_with("churn-kill-") {
            check
                .inconsistent_pods
                .push(format!("unknown owner {container}: {addrs:?}"));
        }
    }
    let dels = invocations(ns, &bin, &conf, "DEL", "kill", |_| None);
    all_at_once(&ns.node(), dels, None, None)?;
    ns.remove_pods();
    let _ = wait_no_veth(&ns.node());
    check.leaked_records = store_records(data)?.len();
    check.leaked_index_entries = index_entries(data)?;
    check.leaked_veths = veth_count(&ns.node())?;
    eprintln!(
        "cni-churn: kill round: {} killed, {} answered before, {} records after the kill; \
         inconsistent {}, leaked records {}, leaked index entries {}, leaked veths {}",
        check.killed,
        check.completed_before_kill,
        check.records_after_kill,
        check.inconsistent_pods.len(),
        check.leaked_records,
        check.leaked_index_entries,
        check.leaked_veths
    );
    Ok(check)
}

/// The result as Markdown: the table and the ratios.
pub fn markdown(r: &ChurnResult) -> String {
    let c = |v: [f64; 3]| format!("{:.1} / {:.1} / {:.1}", v[0], v[1], v[2]);
    let mut out = format!(
        "{} pods added then deleted at once, {} rounds, IPAM files on {} (ms; p50 / p90 / max \
         per pod)\n\n\
         | plugin | ADD | DEL | ADD+DEL | round wall (median) | veths gone | CPU per pod | failures |\n\
         |---|---|---|---|---|---|---|---|\n",
        r.pods, r.rounds, r.data_fs
    );
    for p in &r.plugins {
        out.push_str(&format!(
            "| {} | {} | {} | {} | {:.0} | {:.0} | {:.1} | {} |\n",
            p.plugin,
            c(p.add_ms),
            c(p.del_ms),
            c(p.add_del_ms),
            p.round_wall_ms,
            p.veths_gone_ms,
            p.cpu_per_pod_ms,
            p.failures
        ));
    }
    out.push('\n');
    if r.unsettled_rounds > 0 {
        out.push_str(&format!(
            "{} rounds started on a machine still busy after {} s\n",
            r.unsettled_rounds,
            SETTLE_TIMEOUT.as_secs()
        ));
    }
    for other in ["ptp+host-local", "bridge+host-local"] {
        if let Some((per_pod, wall)) = r.ratios(other) {
            out.push_str(&format!(
                "{other} / podroute: ADD+DEL p50 {per_pod:.2}×, round wall {wall:.2}×\n"
            ));
        }
    }
    let k = &r.kill;
    out.push_str(&format!(
        "\nkill -9 mid-churn: {} killed, {} answered before; after DEL + ADD again {} \
         ownerless records, GC ok {}, then {} inconsistent pods; after DEL of all: {} leaked \
         records, {} leaked index entries, {} leaked veths\n",
        k.killed,
        k.completed_before_kill,
        k.ownerless_before_gc,
        k.gc_ok,
        k.inconsistent_pods.len(),
        k.leaked_records,
        k.leaked_index_entries,
        k.leaked_veths
    ));
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn spread_is_p50_p90_max() {
        let mut v: Vec<f64> = (1..=10).map(f64::from).rev().collect();
        assert_eq!(spread(&mut v), [6.0, 9.0, 10.0]);
        assert_eq!(spread(&mut []), [0.0; 3]);
    }

    #[test]
    fn ratios_are_against_podroute() {
        let plugin = |name: &str, add_del: f64, wall: f64| PluginChurn {
            plugin: name.into(),
            add_del_ms: [add_del, 0.0, 0.0],
            round_wall_ms: wall,
            ..PluginChurn::default()
        };
        let r = ChurnResult {
            plugins: vec![
                plugin("podroute", 2.0, 100.0),
                plugin("ptp+host-local", 11.0, 600.0),
            ],
            ..ChurnResult::default()
        };
        assert_eq!(r.ratios("ptp+host-local"), Some((5.5, 6.0)));
        assert_eq!(r.ratios("bridge+host-local"), None);
    }
}
