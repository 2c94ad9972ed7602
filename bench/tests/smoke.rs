//! The benchmark harness end to end on a tiny scenario, so `make test` notices when it breaks
//! (root, the lab's control plane, BIRD and GoBGP: run by `make bench-smoke`, which `make test`
//! runs last). 1,000 IPv4 prefixes from one peer into each receiver once, a 2-second idle
//! window: every number the suite reports must come out, and add up. It asserts no speed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use podroute_bench::receivers::ReceiverKind;
use podroute_bench::results::markdown;
use podroute_bench::scenario::Scenario;
use podroute_bench::suite::{self, SuiteConfig};

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../target"))
}

#[test]
#[ignore = "needs root, the lab's control plane, BIRD and GoBGP: make bench-smoke"]
fn every_receiver_is_measured_on_1k_prefixes() {
    // The debug agent `make build` made is enough to prove the harness; `make bench` uses
    // the release build.
    let agent = std::env::var_os("PODROUTE_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/podroute-agent"));
    let output = target_dir().join("bench/smoke.json");
    let cfg = SuiteConfig {
        lab_name: format!("bsmoke{}", std::process::id() % 100_000),
        scenarios: vec![Scenario::smoke()],
        receivers: ReceiverKind::ALL.to_vec(),
        runs: 1,
        timeout: Some(Duration::from_secs(60)),
        timeout_cap: Duration::from_secs(60),
        idle: Duration::from_secs(2),
        idle_scenarios: Vec::new(),
        agent_bin: agent,
        output: output.clone(),
        perf: None,
        sigterm_grace: Duration::from_secs(10),
    };
    let result = suite::run(&cfg, Arc::new(AtomicBool::new(false))).expect("the suite runs");

    assert_eq!(result.runs.len(), 3, "one run per receiver");
    for r in &result.runs {
        let who = format!("{} ({r:?})", r.receiver);
        assert_eq!(r.error, None, "{who}");
        assert!(r.converged, "{who}");
        assert_eq!((r.rib_count, r.rib_target), (1000, 1000), "{who}");
        assert!(
            r.rib_s.is_some_and(|t| t >= 0.0 && t < r.timeout_s),
            "{who}"
        );
        assert!(r.sent_s.is_some(), "the sender wrote everything: {who}");
        if r.receiver == "gobgp" {
            assert_eq!(
                (r.fib_s, r.fib_target),
                (None, None),
                "GoBGP programs no FIB: {who}"
            );
        } else {
            assert!(r.fib_s.is_some(), "{who}");
            // Notifications and the confirming dump agree, with nothing lost.
            assert_eq!(r.fib_count, Some(1000), "{who}");
            assert_eq!(r.fib_dump, Some(1000), "{who}");
            assert_eq!(r.fib_overflows, 0, "{who}");
        }
        let (before, peak) = (r.rss_before.unwrap_or(0), r.rss_peak.unwrap_or(0));
        assert!(before > 0 && peak >= before, "{who}");
        assert!(r.bytes_per_route.is_some(), "{who}");
        assert!(
            r.idle_s >= 2.0 && r.idle_cpu_s.is_some_and(|c| c >= 0.0),
            "{who}"
        );
        assert!(r.sigterm_exit_s.is_some() || r.sigterm_killed, "{who}");
    }
    // The result file is written and reads back; its tables have the ratio columns.
    let text = std::fs::read_to_string(&output).expect("result file");
    let back: podroute_bench::results::SuiteResult =
        serde_json::from_str(&text).expect("result file parses");
    assert_eq!(back, result);
    let md = markdown(&result);
    assert!(
        md.contains("| | podroute | BIRD | GoBGP | podroute/BIRD | podroute/GoBGP |"),
        "{md}"
    );
}

/// The convergence benchmark (issue 15) on 3 nodes: podroute with the mesh and with two
/// reflectors, 3 changes of each kind; kube-router's cold start and one change of each kind
/// (a kube-router change can wait out GoBGP's 120-s connect retry, so its changes may time
/// out here; they must still be counted).
#[test]
#[ignore = "needs root and the lab's control plane; builds kube-router once: make bench-smoke"]
fn convergence_is_measured_for_podroute_and_kube_router_on_3_nodes() {
    use podroute_bench::convergence::{self, Binaries, ConvergenceConfig, System, Topology};
    let agent = std::env::var_os("PODROUTE_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/podroute-agent"));
    let output = target_dir().join("bench/smoke-convergence.json");
    let cfg = ConvergenceConfig {
        lab_name: format!("bsmoke{}c", std::process::id() % 100_000),
        sizes: vec![3],
        changes: 3,
        kube_router_changes: Some(1),
        systems: vec![System::Podroute, System::KubeRouter],
        reflectors_at: vec![3],
        bins: Binaries {
            agent,
            kube_router: Some(convergence::build_kube_router().expect("kube-router builds")),
        },
        output: output.clone(),
        timeout: Duration::from_secs(30),
    };
    let result =
        convergence::run(&cfg, Arc::new(AtomicBool::new(false))).expect("the benchmark runs");

    assert_eq!(result.runs.len(), 3, "{result:?}");
    for r in &result.runs {
        let who = format!("{} {:?}", r.system.name(), r.topology);
        assert_eq!(r.error, None, "{who}");
        assert!(
            r.cold_start_s.is_some(),
            "{who} converged from a cold start"
        );
        let kinds: Vec<&str> = r.kinds.iter().map(|k| k.kind.as_str()).collect();
        assert_eq!(kinds, ["recreate", "delete", "add"], "{who}");
        if r.system == System::Podroute {
            for k in &r.kinds {
                assert_eq!(
                    (k.samples_s.len(), k.timeouts),
                    (3, 0),
                    "{who}: every {} reached every node",
                    k.kind
                );
            }
        } else {
            // The first change runs; a timed-out recreate skips the rest of its cycle.
            let recreate = &r.kinds[0];
            assert_eq!(recreate.samples_s.len() + recreate.timeouts, 1, "{who}");
        }
    }
    assert!(
        result
            .runs
            .iter()
            .any(|r| r.topology == Topology::Reflectors)
    );
    let md = std::fs::read_to_string(output.with_extension("md")).expect("table written");
    assert!(md.contains("| 3 | add |"), "{md}");
    assert!(md.contains("reflectors / mesh"), "{md}");
    let svg = std::fs::read_to_string(output.with_file_name("smoke-convergence-3.svg"))
        .expect("chart written");
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
}
