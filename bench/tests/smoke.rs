//! The benchmark harness end to end on a tiny scenario, so `make test` notices when it breaks
//! (root, the lab's control plane, BIRD and GoBGP: run by `make bench-smoke`, which `make test`
//! runs last). 1,000 IPv4 prefixes from one peer into each receiver once, a 2-second idle
//! window: every number the suite reports must come out, and add up. The mesh bench with 20
//! simulated peers (with 5 and BFD on, and with kube-router under test on 5), the CNI churn with 10 pods (and a plugin killed -9, which must leave no
//! address or veth behind) run the same way, and so does one cut of the BFD loss bench in each
//! mode (the route must be withdrawn, the probes counted). It asserts no speed.

use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::time::Duration;

use podroute_bench::convergence::{self, System};
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
    use podroute_bench::convergence::{Binaries, ConvergenceConfig, Topology};
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
            agent_log: "warn".into(),
            kube_router: Some(convergence::build_kube_router().expect("kube-router builds")),
        },
        output: output.clone(),
        timeout: Duration::from_secs(30),
        steady: Duration::from_secs(3),
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
        let load = r.api_load.as_ref().expect("control-plane cost measured");
        assert!(
            load.steady_s >= 3.0 && load.churn_s > 0.0,
            "{who}: {load:?}"
        );
        if r.system == System::Podroute {
            // Restarted agents publish their BGPNodeStatus; kube-router writes none.
            assert!(load.churn_status_writes_per_min > 0.0, "{who}: {load:?}");
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
    assert!(md.contains("| 3 | podroute (Mesh) |"), "{md}");
    let svg = std::fs::read_to_string(output.with_file_name("smoke-convergence-3.svg"))
        .expect("chart written");
    assert!(
        svg.starts_with("<svg") && svg.contains("<polyline"),
        "{svg}"
    );
}

/// A short mesh run (3-s steady window) with the debug agent unless PODROUTE_BENCH_AGENT says.
fn mesh_config(
    lab: &str,
    peers: usize,
    bfd: bool,
    output: &std::path::Path,
) -> podroute_bench::mesh::MeshConfig {
    let agent = std::env::var_os("PODROUTE_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/podroute-agent"));
    podroute_bench::mesh::MeshConfig {
        lab_name: format!("{lab}{}", std::process::id() % 100_000),
        peers,
        steady: Duration::from_secs(3),
        timeout: Duration::from_secs(90),
        system: System::Podroute,
        agent_bin: agent,
        kube_router: None,
        output: output.to_owned(),
        bfd,
    }
}

#[test]
#[ignore = "needs root and the lab's control plane: make bench-smoke"]
fn an_agent_meshes_with_20_simulated_peers_and_keeps_them() {
    let output = target_dir().join("bench/smoke-mesh.json");
    let cfg = mesh_config("bsmokem", 20, false, &output);
    let r = podroute_bench::mesh::run(&cfg, &AtomicBool::new(false)).expect("the mesh bench runs");
    assert_eq!(r.error, None);
    assert_eq!((r.established, r.routes), (20, 20), "{r:?}");
    // Every pod CIDR the simulated Nodes own is in the kernel via the one routed hop.
    assert!(r.routes_match, "{r:?}");
    assert!(
        r.all_established_s.is_some() && r.all_routes_s.is_some(),
        "{r:?}"
    );
    assert_eq!(r.sessions_lost, 0, "{r:?}");
    assert_eq!(
        r.agent_hold_time_s,
        Some(90),
        "the agent's default hold time"
    );
    assert!(
        r.agent_restart_time_s.is_some(),
        "the agent offers graceful restart"
    );
    assert!(r.rss_bytes.is_some_and(|b| b > 0), "{r:?}");
    assert!(r.steady_cpu_percent.is_some_and(|c| c >= 0.0), "{r:?}");
    let back: podroute_bench::mesh::MeshResult =
        serde_json::from_str(&std::fs::read_to_string(&output).expect("result file"))
            .expect("result file parses");
    assert_eq!(back, r);
}

/// The mesh bench with kube-router under test on 5 simulated peers: it dials every one, its
/// sessions stay up, and it installs every pod CIDR via the routed hop (the generator's
/// third-party next hop, as kube-router wants next hops on its own subnet).
#[test]
#[ignore = "needs root and the lab's control plane; builds kube-router once: make bench-smoke"]
fn kube_router_meshes_with_5_simulated_peers() {
    let output = target_dir().join("bench/smoke-mesh-kube-router.json");
    let mut cfg = mesh_config("bsmokek", 5, false, &output);
    cfg.system = System::KubeRouter;
    cfg.kube_router = Some(convergence::build_kube_router().expect("kube-router builds"));
    let r = podroute_bench::mesh::run(&cfg, &AtomicBool::new(false)).expect("the mesh bench runs");
    assert_eq!(r.error, None);
    assert_eq!(r.system, System::KubeRouter);
    assert_eq!((r.established, r.routes), (5, 5), "{r:?}");
    assert!(r.routes_match, "{r:?}");
    assert_eq!(r.sessions_lost, 0, "{r:?}");
    assert_eq!(
        r.agent_hold_time_s,
        Some(90),
        "kube-router's default hold time"
    );
    // It announces its own node's pod CIDR on every session.
    assert!(r.agent_updates >= 5, "{r:?}");
    assert!(r.rss_bytes.is_some_and(|b| b > 0), "{r:?}");
    assert!(r.steady_cpu_percent.is_some_and(|c| c >= 0.0), "{r:?}");
}

/// The mesh bench with BFD on 5 simulated peers: every BFD session comes Up over the lab's
/// sockets (TTL 255 both ways), the agent counts them Up, and none goes Down.
#[test]
#[ignore = "needs root and the lab's control plane: make bench-smoke"]
fn an_agent_runs_bfd_with_5_simulated_mesh_peers() {
    let output = target_dir().join("bench/smoke-mesh-bfd.json");
    let cfg = mesh_config("bsmokeb", 5, true, &output);
    let r = podroute_bench::mesh::run(&cfg, &AtomicBool::new(false)).expect("the mesh bench runs");
    assert_eq!(r.error, None);
    assert!(r.bfd && r.all_bfd_up_s.is_some(), "{r:?}");
    assert_eq!((r.bfd_up, r.agent_bfd_up), (5, Some(5)), "{r:?}");
    assert_eq!(
        (r.bfd_downs, r.bfd_dropped, r.sessions_lost),
        (0, 0, 0),
        "{r:?}"
    );
    // 5 sessions at 300 ms (less jitter) send at least 2 packets a second each way.
    assert!(r.bfd_packets_per_s.is_some_and(|p| p > 10.0), "{r:?}");
}

#[test]
#[ignore = "needs root and Debian's containernetworking-plugins: make bench-smoke"]
fn cni_churn_measures_every_plugin_and_a_killed_plugin_leaks_nothing() {
    let plugin = std::env::var_os("PODROUTE_BENCH_CNI_PLUGIN")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/podroute"));
    let output = target_dir().join("bench/smoke-cni-churn.json");
    let cfg = podroute_bench::cni_churn::ChurnConfig {
        prefix: format!("bsmokec{}", std::process::id() % 100_000),
        pods: 10,
        rounds: 1,
        podroute_bin: plugin,
        output: output.clone(),
        data_dir: std::env::temp_dir(),
        settle: false,
    };
    let r = podroute_bench::cni_churn::run(&cfg, &AtomicBool::new(false)).expect("the churn runs");
    let names: Vec<&str> = r.plugins.iter().map(|p| p.plugin.as_str()).collect();
    assert_eq!(names, ["podroute", "ptp+host-local", "bridge+host-local"]);
    for p in &r.plugins {
        assert_eq!(p.failures, 0, "{p:?}");
        assert!(
            p.add_del_ms[0] > 0.0 && p.round_wall_ms >= p.add_ms[0],
            "{p:?}"
        );
    }
    assert!(r.ratios("ptp+host-local").is_some());
    assert_eq!(
        r.data_fs,
        podroute_bench::cni_churn::data_filesystem(&std::env::temp_dir())
    );
    assert_ne!(
        r.data_fs, "unknown",
        "findmnt names the IPAM files' filesystem"
    );
    // Pods 0, 5 (held after IPAM) and 1, 6 (held after the veth) are killed for certain.
    assert!(r.kill.killed >= 4, "{:?}", r.kill);
    assert!(
        r.kill.clean(),
        "no leaked or duplicate address, no leaked veth: {:?}",
        r.kill
    );
    let back: podroute_bench::cni_churn::ChurnResult =
        serde_json::from_str(&std::fs::read_to_string(&output).expect("result file"))
            .expect("result file parses");
    assert_eq!(back, r);
}

#[test]
#[ignore = "needs root, the lab's control plane and BIRD: make bench-smoke"]
fn a_cut_link_is_measured_with_and_without_bfd() {
    let agent = std::env::var_os("PODROUTE_BENCH_AGENT")
        .map(PathBuf::from)
        .unwrap_or_else(|| target_dir().join("debug/podroute-agent"));
    let output = target_dir().join("bench/smoke-bfd-loss.json");
    let cfg = podroute_bench::bfd_loss::LossConfig {
        lab_name: format!("bsmokel{}", std::process::id() % 100_000),
        runs: 1,
        // The shortest hold time BGP allows, so that the run without BFD is short too.
        hold_time_s: 3,
        agent_bin: agent,
        output: output.clone(),
    };
    let r = podroute_bench::bfd_loss::run(&cfg, &AtomicBool::new(false))
        .expect("the BFD loss bench runs");
    assert_eq!(r.error, None);
    let modes: Vec<_> = r.runs.iter().map(|run| run.mode).collect();
    use podroute_bench::bfd_loss::Detection;
    assert_eq!(modes, [Detection::Bfd, Detection::HoldTimer]);
    for run in &r.runs {
        assert_eq!(run.error, None, "{run:?}");
        // The router withdrew node1's route after the cut, in both modes.
        assert!(run.detection_s.is_some_and(|d| d > 0.0), "{run:?}");
        // Probes were answered before the cut and again through node2 after it.
        assert!(
            run.received > 0 && run.transmitted >= run.received,
            "{run:?}"
        );
        assert!(run.longest_gap_s.is_some(), "{run:?}");
    }
    let table = podroute_bench::bfd_loss::markdown(&r);
    assert!(
        table.contains("| bfd | 1 |") && table.contains("| hold-timer | 1 |"),
        "{table}"
    );
    let back: podroute_bench::bfd_loss::LossResult =
        serde_json::from_str(&std::fs::read_to_string(&output).expect("result file"))
            .expect("result file parses");
    assert_eq!(back, r);
}
