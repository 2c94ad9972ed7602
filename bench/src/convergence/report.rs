//! The convergence results as files: JSON (every sample), a Markdown table of p50/p99/max
//! with podroute/kube-router ratios, and one SVG chart per lab size (the CDF of each run's
//! change times), drawn here as text.

use std::fmt::Write as _;
use std::path::Path;

use super::api_load::ApiLoad;
use super::{ConvergenceResult, ConvergenceRun, KindResult, System, Topology};
use crate::error::{Result, io_err};

/// p50, p99 and max of `samples` (nearest rank), `None` when there are none.
pub fn percentiles(samples: &[f64]) -> Option<(f64, f64, f64)> {
    if samples.is_empty() {
        return None;
    }
    let mut v = samples.to_vec();
    v.sort_by(f64::total_cmp);
    let rank = |p: f64| {
        let r = (p * v.len() as f64).ceil() as usize;
        v[r.clamp(1, v.len()) - 1]
    };
    Some((rank(0.50), rank(0.99), v[v.len() - 1]))
}

/// CPU model, cores and kernel of this machine.
pub fn machine() -> String {
    let cpu = std::fs::read_to_string("/proc/cpuinfo")
        .ok()
        .and_then(|t| {
            t.lines()
                .find(|l| l.starts_with("model name"))
                .and_then(|l| l.split_once(':'))
                .map(|(_, m)| m.trim().to_owned())
        })
        .unwrap_or_else(|| "unknown CPU".into());
    let cores = std::thread::available_parallelism().map_or(0, usize::from);
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    format!("{cpu}, {cores} cores, Linux {}", kernel.trim())
}

/// Writes `result` to `json` and its table and charts next to it.
pub fn write(result: &ConvergenceResult, json: &Path) -> Result<()> {
    if let Some(dir) = json.parent() {
        std::fs::create_dir_all(dir).map_err(io_err(format!("create {}", dir.display())))?;
    }
    let text = serde_json::to_string_pretty(result)
        .map_err(|e| crate::BenchError::Failed(format!("serialise results: {e}")))?;
    std::fs::write(json, text).map_err(io_err(format!("write {}", json.display())))?;
    let md = json.with_extension("md");
    std::fs::write(&md, markdown(result)).map_err(io_err(format!("write {}", md.display())))?;
    let mut sizes: Vec<u8> = result.runs.iter().map(|r| r.nodes).collect();
    sizes.dedup();
    for n in sizes {
        let svg = json.with_file_name(format!(
            "{}-{n}.svg",
            json.file_stem()
                .and_then(|s| s.to_str())
                .unwrap_or("convergence")
        ));
        std::fs::write(&svg, cdf_svg(result, n))
            .map_err(io_err(format!("write {}", svg.display())))?;
    }
    Ok(())
}

fn find(
    result: &ConvergenceResult,
    n: u8,
    system: System,
    topology: Topology,
) -> Option<&ConvergenceRun> {
    result
        .runs
        .iter()
        .find(|r| r.nodes == n && r.system == system && r.topology == topology)
}

fn kind<'a>(run: &'a ConvergenceRun, k: &str) -> Option<&'a KindResult> {
    run.kinds.iter().find(|x| x.kind == k)
}

fn cell(k: Option<&KindResult>) -> String {
    match k.and_then(|k| percentiles(&k.samples_s).map(|p| (p, k))) {
        Some(((p50, p99, max), k)) => {
            let mut s = format!("{p50:.3} / {p99:.3} / {max:.3} ({})", k.samples_s.len());
            if k.timeouts > 0 {
                let _ = write!(s, ", {} timed out", k.timeouts);
            }
            s
        }
        None => k.map_or("–".into(), |k| format!("none ({} timed out)", k.timeouts)),
    }
}

fn ratio(a: Option<&KindResult>, b: Option<&KindResult>) -> String {
    let p = |k: Option<&KindResult>| k.and_then(|k| percentiles(&k.samples_s));
    match (p(a), p(b)) {
        (Some(a), Some(b)) if b.0 > 0.0 && b.1 > 0.0 => {
            format!("{:.2} / {:.2}", a.0 / b.0, a.1 / b.1)
        }
        _ => "–".into(),
    }
}

/// The Markdown tables: podroute against kube-router (mesh), and podroute's reflectors
/// against its mesh.
pub fn markdown(result: &ConvergenceResult) -> String {
    let mut out = String::new();
    let _ = writeln!(
        out,
        "Machine: {}. Seconds, p50 / p99 / max (samples); ratio columns are p50 / p99.\n",
        result.machine
    );
    let _ = writeln!(
        out,
        "| nodes | change | podroute | kube-router | podroute / kube-router |\n|---|---|---|---|---|"
    );
    let mut sizes: Vec<u8> = result.runs.iter().map(|r| r.nodes).collect();
    sizes.dedup();
    for &n in &sizes {
        let pr = find(result, n, System::Podroute, Topology::Mesh);
        let kr = find(result, n, System::KubeRouter, Topology::Mesh);
        let cold = |r: Option<&ConvergenceRun>| {
            r.and_then(|r| r.cold_start_s)
                .map_or("–".into(), |s| format!("{s:.3}"))
        };
        let cold_ratio = match (
            pr.and_then(|r| r.cold_start_s),
            kr.and_then(|r| r.cold_start_s),
        ) {
            (Some(a), Some(b)) if b > 0.0 => format!("{:.2}", a / b),
            _ => "–".into(),
        };
        let _ = writeln!(
            out,
            "| {n} | cold start (all agents) | {} | {} | {cold_ratio} |",
            cold(pr),
            cold(kr)
        );
        for k in ["add", "recreate", "delete"] {
            let a = pr.and_then(|r| kind(r, k));
            let b = kr.and_then(|r| kind(r, k));
            let _ = writeln!(
                out,
                "| {n} | {k} | {} | {} | {} |",
                cell(a),
                cell(b),
                ratio(a, b)
            );
        }
    }
    let rr: Vec<u8> = sizes
        .iter()
        .copied()
        .filter(|&n| find(result, n, System::Podroute, Topology::Reflectors).is_some())
        .collect();
    if !rr.is_empty() {
        let _ = writeln!(
            out,
            "\n| nodes | change | podroute, 2 reflectors | podroute, mesh | reflectors / mesh |\n|---|---|---|---|---|"
        );
        for n in rr {
            let r = find(result, n, System::Podroute, Topology::Reflectors);
            let m = find(result, n, System::Podroute, Topology::Mesh);
            for k in ["add", "recreate", "delete"] {
                let a = r.and_then(|r| kind(r, k));
                let b = m.and_then(|r| kind(r, k));
                let _ = writeln!(
                    out,
                    "| {n} | {k} | {} | {} | {} |",
                    cell(a),
                    cell(b),
                    ratio(a, b)
                );
            }
        }
    }
    let loads: Vec<(&ConvergenceRun, &ApiLoad)> = result
        .runs
        .iter()
        .filter_map(|r| Some((r, r.api_load.as_ref()?)))
        .collect();
    if !loads.is_empty() {
        let _ = writeln!(
            out,
            "\nControl-plane cost: BGPNodeStatus writes per minute, all nodes together (the API \
             server's `apiserver_request_total`), and agent CPU in % of one core per agent (steady: a \
             window that starts as long after the cold start; during the changes: the agents of \
             the nodes that are never changed).\n\n\
             | nodes | system | steady: writes/min | steady: CPU/agent | changes: writes/min | changes: CPU/agent |\n\
             |---|---|---|---|---|---|"
        );
        for (r, l) in loads {
            let _ = writeln!(
                out,
                "| {} | {} ({:?}) | {:.1} over {:.0} s | {:.2} % | {:.1} over {:.0} s | {:.2} % |",
                r.nodes,
                r.system.name(),
                r.topology,
                l.steady_status_writes_per_min,
                l.steady_s,
                l.steady_agent_cpu_pct,
                l.churn_status_writes_per_min,
                l.churn_s,
                l.churn_agent_cpu_pct
            );
        }
    }
    for r in result.runs.iter().filter(|r| r.error.is_some()) {
        let _ = writeln!(
            out,
            "\n{} ({:?}) at {} nodes stopped early: {}",
            r.system.name(),
            r.topology,
            r.nodes,
            r.error.as_deref().unwrap_or_default()
        );
    }
    out
}

/// The CDF of every run's change times at lab size `n`, log-scaled seconds on x.
pub fn cdf_svg(result: &ConvergenceResult, n: u8) -> String {
    const W: f64 = 720.0;
    const H: f64 = 420.0;
    const LEFT: f64 = 60.0;
    const RIGHT: f64 = 200.0;
    const TOP: f64 = 30.0;
    const BOTTOM: f64 = 50.0;
    let runs: Vec<&ConvergenceRun> = result.runs.iter().filter(|r| r.nodes == n).collect();
    let all: Vec<f64> = runs
        .iter()
        .flat_map(|r| r.kinds.iter().flat_map(|k| k.samples_s.iter().copied()))
        .filter(|s| *s > 0.0)
        .collect();
    let lo = all.iter().copied().fold(f64::INFINITY, f64::min).max(1e-3);
    let hi = all.iter().copied().fold(0.0, f64::max).max(lo * 10.0);
    let (lx0, lx1) = (lo.log10().floor(), hi.log10().ceil());
    let x =
        |s: f64| LEFT + (s.max(10f64.powf(lx0)).log10() - lx0) / (lx1 - lx0) * (W - LEFT - RIGHT);
    let y = |f: f64| TOP + (1.0 - f) * (H - TOP - BOTTOM);
    let mut svg = format!(
        "<svg xmlns=\"http://www.w3.org/2000/svg\" width=\"{W}\" height=\"{H}\" font-family=\"sans-serif\" font-size=\"12\">\n\
         <rect width=\"100%\" height=\"100%\" fill=\"white\"/>\n\
         <text x=\"{LEFT}\" y=\"18\" font-size=\"14\">Convergence at {n} nodes: fraction of changes done within t (CDF)</text>\n"
    );
    // Axes, decades on x, quarters on y.
    let mut d = lx0;
    while d <= lx1 + 1e-9 {
        let s = 10f64.powf(d);
        let px = x(s);
        let _ = writeln!(
            svg,
            "<line x1=\"{px:.1}\" y1=\"{TOP}\" x2=\"{px:.1}\" y2=\"{:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{px:.1}\" y=\"{:.1}\" text-anchor=\"middle\">{s} s</text>",
            H - BOTTOM,
            H - BOTTOM + 16.0
        );
        d += 1.0;
    }
    for q in [0.0, 0.25, 0.5, 0.75, 1.0] {
        let py = y(q);
        let _ = writeln!(
            svg,
            "<line x1=\"{LEFT}\" y1=\"{py:.1}\" x2=\"{:.1}\" y2=\"{py:.1}\" stroke=\"#ddd\"/>\
             <text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"end\">{q}</text>",
            W - RIGHT,
            LEFT - 6.0,
            py + 4.0
        );
    }
    let _ = writeln!(
        svg,
        "<text x=\"{:.1}\" y=\"{:.1}\" text-anchor=\"middle\">seconds from the API change to the last node's kernel route (log scale)</text>",
        (LEFT + W - RIGHT) / 2.0,
        H - 12.0
    );
    let mut legend = 0;
    for r in &runs {
        let color = match (r.system, r.topology) {
            (System::Podroute, Topology::Mesh) => "#1f77b4",
            (System::Podroute, Topology::Reflectors) => "#2ca02c",
            (System::KubeRouter, _) => "#d62728",
        };
        for (k, dash) in r.kinds.iter().zip(["", "6,3", "2,2"]) {
            let mut v = k.samples_s.clone();
            v.sort_by(f64::total_cmp);
            if v.is_empty() {
                continue;
            }
            // Timeouts count in the denominator: a system that misses changes never reaches 1.
            let total = (v.len() + k.timeouts) as f64;
            let mut pts = format!("{:.1},{:.1}", x(v[0]), y(0.0));
            for (i, s) in v.iter().enumerate() {
                let _ = write!(
                    pts,
                    " {:.1},{:.1} {:.1},{:.1}",
                    x(*s),
                    y(i as f64 / total),
                    x(*s),
                    y((i + 1) as f64 / total)
                );
            }
            let _ = writeln!(
                svg,
                "<polyline fill=\"none\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\" points=\"{pts}\"/>"
            );
            let ly = TOP + 10.0 + 18.0 * f64::from(legend);
            let topo = if r.topology == Topology::Reflectors {
                ", 2 RR"
            } else {
                ""
            };
            let _ = writeln!(
                svg,
                "<line x1=\"{:.1}\" y1=\"{ly:.1}\" x2=\"{:.1}\" y2=\"{ly:.1}\" stroke=\"{color}\" stroke-width=\"1.5\" stroke-dasharray=\"{dash}\"/>\
                 <text x=\"{:.1}\" y=\"{:.1}\">{}{topo}: {}</text>",
                W - RIGHT + 10.0,
                W - RIGHT + 40.0,
                W - RIGHT + 46.0,
                ly + 4.0,
                r.system.name(),
                k.kind
            );
            legend += 1;
        }
    }
    svg.push_str("</svg>\n");
    svg
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn percentiles_are_nearest_rank() {
        let v: Vec<f64> = (1..=100).map(f64::from).collect();
        assert_eq!(percentiles(&v), Some((50.0, 99.0, 100.0)));
        assert_eq!(percentiles(&[0.3]), Some((0.3, 0.3, 0.3)));
        assert_eq!(percentiles(&[]), None);
    }

    #[test]
    fn the_table_and_chart_show_both_systems_and_their_ratio() {
        let run = |system, s: f64| ConvergenceRun {
            system,
            topology: Topology::Mesh,
            nodes: 20,
            cold_start_s: Some(s),
            kinds: ["add", "recreate", "delete"]
                .iter()
                .map(|k| KindResult {
                    kind: (*k).into(),
                    samples_s: vec![s, 2.0 * s],
                    timeouts: 0,
                })
                .collect(),
            api_load: (system == System::Podroute).then_some(ApiLoad {
                steady_s: 60.0,
                steady_status_writes_per_min: 0.0,
                steady_agent_cpu_pct: 0.05,
                churn_s: 120.0,
                churn_status_writes_per_min: 12.5,
                churn_agent_cpu_pct: 1.25,
            }),
            error: None,
        };
        let result = ConvergenceResult {
            machine: "test".into(),
            changes: 2,
            timeout_s: 30.0,
            runs: vec![run(System::Podroute, 0.1), run(System::KubeRouter, 0.4)],
        };
        let md = markdown(&result);
        assert!(
            md.contains(
                "| 20 | add | 0.100 / 0.200 / 0.200 (2) | 0.400 / 0.800 / 0.800 (2) | 0.25 / 0.25 |"
            ),
            "{md}"
        );
        assert!(
            md.contains(
                "| 20 | podroute (Mesh) | 0.0 over 60 s | 0.05 % | 12.5 over 120 s | 1.25 % |"
            ),
            "{md}"
        );
        assert_eq!(
            md.matches("(Mesh) |").count(),
            1,
            "kube-router has no load row: {md}"
        );
        let svg = cdf_svg(&result, 20);
        assert_eq!(svg.matches("<polyline").count(), 6, "{svg}");
        assert!(svg.contains("kube-router: delete"), "{svg}");
    }
}
