//! The result file (JSON, one record per run, written after every run so an interrupted suite
//! keeps what it measured) and its summary: medians per scenario and receiver, ratios of
//! podroute to BIRD and GoBGP, as the Markdown tables of `BENCHMARKS.md`.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use serde::{Deserialize, Serialize};

/// What one run measured. Times are seconds from the first UPDATE the sender wrote.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct RunResult {
    /// Scenario name.
    pub scenario: String,
    /// Receiver name.
    pub receiver: String,
    /// 1-based run number within the scenario.
    pub run: u32,
    /// The convergence timeout of this run.
    pub timeout_s: f64,
    /// Whether the RIB (and the FIB, for receivers that program it) held everything in time.
    pub converged: bool,
    /// When the RIB held all routes.
    pub rib_s: Option<f64>,
    /// The RIB count's source (metric or command) and unit.
    pub rib_source: String,
    /// The RIB count at the end of the convergence wait (baseline subtracted).
    pub rib_count: u64,
    /// The count that means "all".
    pub rib_target: u64,
    /// When the kernel FIB held all routes (receivers that program it).
    pub fib_s: Option<f64>,
    /// Benchmark routes in the FIB by the end of the wait, from notifications.
    pub fib_count: Option<u64>,
    /// The same counted by a dump at the end of the wait.
    pub fib_dump: Option<u64>,
    /// Routes the FIB must hold.
    pub fib_target: Option<u64>,
    /// Times the notification socket overflowed (0: exact).
    pub fib_overflows: u32,
    /// When the sender had handed every byte to its sockets (paced by the receiver's reads).
    pub sent_s: Option<f64>,
    /// RSS just before the first UPDATE, bytes.
    pub rss_before: Option<u64>,
    /// Peak RSS during the ingest (`VmHWM`), bytes.
    pub rss_peak: Option<u64>,
    /// (peak − before) / routes sent.
    pub bytes_per_route: Option<f64>,
    /// Length of the idle window after convergence (0: not measured).
    pub idle_s: f64,
    /// CPU seconds used over the idle window.
    pub idle_cpu_s: Option<f64>,
    /// CPU seconds in each 10-second slice of the idle window.
    pub idle_cpu_slices: Vec<f64>,
    /// Seconds from SIGTERM to exit.
    pub sigterm_exit_s: Option<f64>,
    /// The process had to be killed (did not exit within the grace time after SIGTERM).
    pub sigterm_killed: bool,
    /// The receiver's own summary of its table at the end (BIRD, GoBGP).
    pub table: Option<String>,
    /// The perf data file recorded during idle, if asked for.
    pub perf_data: Option<String>,
    /// What went wrong, if the run could not be measured.
    pub error: Option<String>,
}

/// The machine and software the suite ran on.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Machine {
    /// CPUs available.
    pub cpus: usize,
    /// CPU model.
    pub cpu_model: String,
    /// Memory, bytes.
    pub memory: u64,
    /// Kernel release.
    pub kernel: String,
    /// `bird --version`.
    pub bird: String,
    /// `gobgpd --version`.
    pub gobgp: String,
    /// `git describe --always --dirty` of the tree the bench runs from: the agent's commit
    /// only when the agent was built from that tree (see `agent_bin_sha256`).
    pub podroute: String,
    /// The agent binary (the plugin binary in the CNI churn bench).
    pub agent_bin: String,
    /// `sha256sum` of that binary: which build ran, when the tree was dirty or the binary
    /// came from elsewhere. Empty when `sha256sum` failed, and absent in result files from
    /// before it was recorded.
    #[serde(default)]
    pub agent_bin_sha256: String,
    /// `/proc/loadavg` when the suite started (other work on the machine).
    pub loadavg_at_start: String,
}

/// The whole result file.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct SuiteResult {
    /// Where it ran.
    pub machine: Machine,
    /// Start time (seconds since the epoch).
    pub started_unix: u64,
    /// Runs per scenario and receiver that were asked for.
    pub runs_per_receiver: u32,
    /// Every run, in the order they ran.
    pub runs: Vec<RunResult>,
}

/// The median of `v` (mean of the middle two for an even count); `None` if empty.
pub fn median(mut v: Vec<f64>) -> Option<f64> {
    if v.is_empty() {
        return None;
    }
    v.sort_by(f64::total_cmp);
    let n = v.len();
    Some(if n % 2 == 1 {
        v[n / 2]
    } else {
        (v[n / 2 - 1] + v[n / 2]) / 2.0
    })
}

/// Medians of one receiver in one scenario.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Summary {
    /// Runs.
    pub runs: usize,
    /// Runs that converged.
    pub converged: usize,
    /// Runs that failed to measure.
    pub errors: usize,
    /// Median RIB time of the converged runs.
    pub rib_s: Option<f64>,
    /// Median FIB time.
    pub fib_s: Option<f64>,
    /// Median peak − before, bytes.
    pub mem_delta: Option<f64>,
    /// Median bytes per route.
    pub bytes_per_route: Option<f64>,
    /// Median idle CPU as a fraction of one core.
    pub idle_core: Option<f64>,
    /// Median idle window.
    pub idle_s: Option<f64>,
    /// Median SIGTERM-to-exit time of the runs that exited.
    pub sigterm_s: Option<f64>,
    /// Runs that had to be killed after SIGTERM.
    pub killed: usize,
    /// Longest timeout, for "did not converge in T".
    pub timeout_s: f64,
    /// Median FIB and RIB counts of the runs that did not converge.
    pub stuck_fib: Option<f64>,
    /// See `stuck_fib`.
    pub stuck_rib: Option<f64>,
    /// RIB targets and sources seen.
    pub rib_source: String,
    /// The FIB target.
    pub fib_target: Option<u64>,
    /// The RIB target.
    pub rib_target: u64,
}

/// Summarises the runs of one receiver in one scenario.
pub fn summarize(runs: &[&RunResult]) -> Summary {
    let ok: Vec<&&RunResult> = runs.iter().filter(|r| r.error.is_none()).collect();
    let conv: Vec<&&RunResult> = ok.iter().copied().filter(|r| r.converged).collect();
    let stuck: Vec<&&RunResult> = ok.iter().copied().filter(|r| !r.converged).collect();
    let med = |f: &dyn Fn(&RunResult) -> Option<f64>, set: &[&&RunResult]| {
        median(set.iter().filter_map(|r| f(r)).collect())
    };
    Summary {
        runs: runs.len(),
        converged: conv.len(),
        errors: runs.len() - ok.len(),
        rib_s: med(&|r| r.rib_s, &conv),
        fib_s: med(&|r| r.fib_s, &conv),
        mem_delta: med(&|r| Some(r.rss_peak? as f64 - r.rss_before? as f64), &conv),
        bytes_per_route: med(&|r| r.bytes_per_route, &conv),
        idle_core: med(
            &|r| {
                (r.idle_s > 0.0)
                    .then(|| r.idle_cpu_s.map(|c| c / r.idle_s))
                    .flatten()
            },
            &conv,
        ),
        idle_s: med(&|r| (r.idle_s > 0.0).then_some(r.idle_s), &conv),
        sigterm_s: med(&|r| r.sigterm_exit_s, &ok),
        killed: ok.iter().filter(|r| r.sigterm_killed).count(),
        timeout_s: ok.iter().map(|r| r.timeout_s).fold(0.0, f64::max),
        stuck_fib: med(&|r| r.fib_count.map(|c| c as f64), &stuck),
        stuck_rib: med(&|r| Some(r.rib_count as f64), &stuck),
        rib_source: ok.first().map(|r| r.rib_source.clone()).unwrap_or_default(),
        fib_target: ok.first().and_then(|r| r.fib_target),
        rib_target: ok.first().map(|r| r.rib_target).unwrap_or_default(),
    }
}

fn secs(v: f64) -> String {
    if v < 10.0 {
        format!("{v:.2} s")
    } else {
        format!("{v:.1} s")
    }
}

fn count(v: f64) -> String {
    let s = format!("{:.0}", v);
    let mut out = String::new();
    for (i, c) in s.chars().enumerate() {
        if i > 0 && (s.len() - i) % 3 == 0 {
            out.push(',');
        }
        out.push(c);
    }
    out
}

/// `a / b`, or `—` without both; `> 100` when `b` is next to nothing (idle CPU of 0.02 %).
fn ratio(a: Option<f64>, b: Option<f64>) -> String {
    match (a, b) {
        (Some(a), Some(b)) if b > 0.0 && a / b > 100.0 => "> 100".into(),
        (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
        _ => "—".into(),
    }
}

/// One table row: a metric for each receiver, then the ratios.
struct Row {
    name: &'static str,
    cells: Vec<String>,
    values: Vec<Option<f64>>,
}

/// The Markdown tables: one per scenario, receivers as columns.
pub fn markdown(result: &SuiteResult) -> String {
    let mut by_scenario: BTreeMap<(usize, &str), BTreeMap<&str, Vec<&RunResult>>> = BTreeMap::new();
    let mut order: Vec<&str> = Vec::new();
    for r in &result.runs {
        if !order.contains(&r.scenario.as_str()) {
            order.push(&r.scenario);
        }
        let idx = order.iter().position(|s| *s == r.scenario).unwrap_or(0);
        by_scenario
            .entry((idx, &r.scenario))
            .or_default()
            .entry(&r.receiver)
            .or_default()
            .push(r);
    }
    let mut out = String::new();
    for ((_, scenario), receivers) in &by_scenario {
        let names: Vec<&str> = ["podroute", "bird", "gobgp"]
            .into_iter()
            .filter(|n| receivers.contains_key(n))
            .collect();
        let sums: Vec<Summary> = names.iter().map(|n| summarize(&receivers[n])).collect();
        let _ = writeln!(out, "#### `{scenario}`\n");
        let mut rows = vec![
            metric_row("RIB holds all", &sums, |s| s.rib_s, secs, true),
            metric_row("FIB holds all", &sums, |s| s.fib_s, secs, true),
            metric_row(
                "peak RSS − RSS before",
                &sums,
                |s| s.mem_delta,
                |v| format!("{:.1} MB", v / 1e6),
                false,
            ),
            metric_row(
                "… per route",
                &sums,
                |s| s.bytes_per_route,
                |v| format!("{v:.0} B"),
                false,
            ),
            metric_row(
                "idle CPU after convergence",
                &sums,
                |s| s.idle_core,
                |v| format!("{:.2} %", v * 100.0),
                false,
            ),
            metric_row("SIGTERM → exit", &sums, |s| s.sigterm_s, secs, false),
        ];
        // Idle window length and run counts as a footer row.
        rows.push(Row {
            name: "runs converged",
            cells: sums
                .iter()
                .map(|s| {
                    let mut c = format!("{}/{}", s.converged, s.runs);
                    if s.errors > 0 {
                        let _ = write!(c, ", {} failed", s.errors);
                    }
                    c
                })
                .collect(),
            values: vec![None; sums.len()],
        });
        let podroute = names.iter().position(|n| *n == "podroute");
        let others: Vec<(usize, &str)> = names
            .iter()
            .enumerate()
            .filter(|(_, n)| **n != "podroute")
            .map(|(i, n)| (i, *n))
            .collect();
        let _ = write!(out, "| |");
        for n in &names {
            let _ = write!(out, " {} |", display(n));
        }
        if podroute.is_some() {
            for (_, n) in &others {
                let _ = write!(out, " podroute/{} |", display(n));
            }
        }
        let _ = writeln!(out);
        let _ = write!(out, "|---|");
        for _ in &names {
            let _ = write!(out, "---|");
        }
        if podroute.is_some() {
            for _ in &others {
                let _ = write!(out, "---|");
            }
        }
        let _ = writeln!(out);
        for row in &rows {
            let _ = write!(out, "| {} |", row.name);
            for c in &row.cells {
                let _ = write!(out, " {c} |");
            }
            if let Some(p) = podroute {
                for (i, _) in &others {
                    let _ = write!(out, " {} |", ratio(row.values[p], row.values[*i]));
                }
            }
            let _ = writeln!(out);
        }
        let idle = sums.iter().filter_map(|s| s.idle_s).fold(0.0, f64::max);
        let _ = writeln!(out);
        let mut notes = Vec::new();
        if idle > 0.0 {
            notes.push(format!("idle window {idle:.0} s"));
        }
        for (n, s) in names.iter().zip(&sums) {
            notes.push(format!("{} RIB: {}", display(n), s.rib_source));
        }
        let _ = writeln!(out, "Medians. {}.\n", notes.join("; "));
    }
    out
}

fn display(name: &str) -> &str {
    match name {
        "bird" => "BIRD",
        "gobgp" => "GoBGP",
        other => other,
    }
}

fn metric_row(
    name: &'static str,
    sums: &[Summary],
    get: impl Fn(&Summary) -> Option<f64>,
    fmt: impl Fn(f64) -> String,
    timed: bool,
) -> Row {
    let cells = sums
        .iter()
        .map(|s| match get(s) {
            Some(v) if s.converged < s.runs && timed => {
                format!("{} ({}/{} runs)", fmt(v), s.converged, s.runs)
            }
            Some(v) if name.starts_with("SIGTERM") && s.killed > 0 => {
                format!("{} ({} of {} killed)", fmt(v), s.killed, s.runs - s.errors)
            }
            Some(v) => fmt(v),
            None if name.starts_with("SIGTERM") && s.killed > 0 => {
                format!("all {} killed", s.killed)
            }
            None if timed && s.runs > s.errors && s.converged == 0 => {
                let stuck = if name.starts_with("FIB") {
                    s.stuck_fib.map(|c| (c, s.fib_target.unwrap_or(0) as f64))
                } else {
                    s.stuck_rib.map(|c| (c, s.rib_target as f64))
                };
                match stuck {
                    Some((c, t)) => format!(
                        "did not converge in {:.0} s ({} of {})",
                        s.timeout_s,
                        count(c),
                        count(t)
                    ),
                    None => format!("did not converge in {:.0} s", s.timeout_s),
                }
            }
            None => "—".into(),
        })
        .collect();
    let values = sums.iter().map(get).collect();
    Row {
        name,
        cells,
        values,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn run(receiver: &str, n: u32, fib: Option<f64>, converged: bool) -> RunResult {
        RunResult {
            scenario: "v4-100k".into(),
            receiver: receiver.into(),
            run: n,
            timeout_s: 60.0,
            converged,
            rib_s: fib,
            fib_s: fib,
            fib_count: Some(if converged { 100_000 } else { 42_000 }),
            fib_target: Some(100_000),
            rib_target: 100_000,
            rib_source: "x".into(),
            sigterm_exit_s: Some(0.1),
            ..RunResult::default()
        }
    }

    #[test]
    fn a_result_reads_back_to_the_same_numbers() {
        // A CPU-time difference as the idle measurement computes it; serde_json's default
        // float parser read it back one ulp off, and `make bench-smoke` compares exactly.
        let run = RunResult {
            idle_cpu_s: Some(0.010000000000000009),
            idle_cpu_slices: vec![0.010000000000000009, 0.1 + 0.2],
            ..run("podroute", 1, Some(0.528046905), true)
        };
        let text = serde_json::to_string(&run).expect("serialize");
        assert_eq!(
            serde_json::from_str::<RunResult>(&text).expect("parse"),
            run
        );
    }

    #[test]
    fn medians_of_odd_and_even_counts() {
        assert_eq!(median(vec![3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(vec![4.0, 1.0, 2.0, 3.0]), Some(2.5));
        assert_eq!(median(vec![]), None);
    }

    #[test]
    fn tables_show_medians_ratios_and_non_convergence() {
        let mut result = SuiteResult::default();
        for i in 1..=3 {
            result.runs.push(run("podroute", i, None, false));
            result.runs.push(run("bird", i, Some(f64::from(i)), true));
        }
        let md = markdown(&result);
        assert!(md.contains("| | podroute | BIRD | podroute/BIRD |"), "{md}");
        assert!(
            md.contains("did not converge in 60 s (42,000 of 100,000)"),
            "{md}"
        );
        assert!(
            md.contains(
                "| FIB holds all | did not converge in 60 s (42,000 of 100,000) | 2.00 s | — |"
            ),
            "{md}"
        );
        assert!(
            md.contains("| SIGTERM → exit | 0.10 s | 0.10 s | 1.00 |"),
            "{md}"
        );
    }
}
