//! A real router (BIRD 2) sends 100,000 prefixes, of which the node's import list allows a
//! known subset: exactly that subset reaches the kernel, the rest is counted; when the router
//! withdraws everything the kernel holds exactly the node's own routes again (root, lab).

mod lab_support;

use std::collections::BTreeSet;
use std::fmt::Write as _;
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use lab_support::{metric, podroute_routes};
use podroute_lab::{Lab, LabConfig, LabProcess, Tor};

/// Prefixes the router announces: the first 100,000 /26s of 10.0.0.0/9.
const ANNOUNCED: u32 = 100_000;
/// The import list: 10.1.0.0/16 up to /26, i.e. its 1,024 /26s.
const IMPORT: &str = "10.1.0.0/16:26";
const ALLOWED: usize = 1024;
const ROUTER: &str = "198.18.0.254";
const CONVERGE: Duration = Duration::from_secs(120);

fn lab_name() -> String {
    format!("in{}", std::process::id() % 100_000)
}

/// The n-th /26 of 10.0.0.0/9.
fn nth_prefix(n: u32) -> String {
    let base = u32::from(Ipv4Addr::new(10, 0, 0, 0)) + n * 64;
    format!("{}/26", Ipv4Addr::from(base))
}

/// The lab's BIRD configuration, plus a static protocol with `count` prefixes.
fn write_router_config(lab: &Lab, count: u32) {
    let router = lab.router().expect("the lab has a router");
    let mut text = podroute_lab::router::bird_config(router.dir(), &lab.router_neighbors());
    // BIRD's kernel protocol would copy every route into the fabric namespace's table; the
    // test only needs BGP.
    text = text.replace("export all; }; }", "export none; }; }");
    text.push_str("protocol static bulk {\n  ipv4;\n");
    for n in 0..count {
        let _ = writeln!(text, "  route {} blackhole;", nth_prefix(n));
    }
    text.push_str("}\n");
    std::fs::write(router.config_path(), text).expect("write bird.conf");
    router.reload().expect("birdc configure");
}

fn spawn_agent(lab: &Lab) -> LabProcess {
    let args = vec![
        "--kubeconfig".to_owned(),
        lab.kubeconfig().display().to_string(),
        "--node-name".to_owned(),
        "node1".to_owned(),
        "--cni-conflist".to_owned(),
        lab.dir().join("cni-node1.conflist").display().to_string(),
        "--cni-readiness-file".to_owned(),
        lab.dir().join("cni-ready").display().to_string(),
        "--startup-grace".to_owned(),
        "10s".to_owned(),
        "--bgp-peer".to_owned(),
        format!("address={ROUTER},as=64512,import={IMPORT}"),
    ];
    lab.spawn(
        "node1",
        "agent",
        env!("CARGO_BIN_EXE_podroute-agent"),
        &args,
        &[("RUST_LOG", "info")],
    )
    .expect("spawn agent")
}

fn wait_for(what: &str, agent: &LabProcess, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < CONVERGE {
        if check() {
            eprintln!("{what}: {:?}", start.elapsed());
            return;
        }
        std::thread::sleep(Duration::from_millis(500));
    }
    panic!("timed out waiting for {what}\nagent log:\n{}", agent.log());
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_router_sends_100k_prefixes_and_only_the_import_lists_subset_reaches_the_kernel() {
    let lab = Lab::up(&LabConfig::new(lab_name(), 1).tor(Tor::Bird)).expect("lab up");
    let own = format!("blackhole {}", lab.nodes()[0].pod_cidrs()[0]);
    write_router_config(&lab, ANNOUNCED);
    let agent = spawn_agent(&lab);

    let mut expected: BTreeSet<String> = (0..ANNOUNCED)
        .map(nth_prefix)
        .filter(|p| p.starts_with("10.1."))
        .map(|p| format!("{p} via {ROUTER}"))
        .collect();
    assert_eq!(expected.len(), ALLOWED);
    expected.insert(own.clone());
    wait_for("the allowed subset in the kernel", &agent, || {
        podroute_routes(&lab, "node1") == expected
    });
    // Everything else was refused and counted, nothing of it stored.
    let refused = f64::from(ANNOUNCED) - ALLOWED as f64;
    wait_for("the refusals counted", &agent, || {
        metric(
            &lab,
            "node1",
            "podroute_bgp_rejected_routes_total{peer_type=\"router\",reason=\"import_policy\"}",
        ) == Some(refused)
    });
    // BGP metrics follow the speaker within a second.
    wait_for("the Loc-RIB size in the metrics", &agent, || {
        metric(
            &lab,
            "node1",
            "podroute_bgp_loc_rib_prefixes{family=\"ipv4\"}",
        ) == Some(ALLOWED as f64)
    });

    // The router withdraws everything: back to exactly the node's own route.
    write_router_config(&lab, 0);
    wait_for("the kernel back to the own routes", &agent, || {
        podroute_routes(&lab, "node1") == BTreeSet::from([own.clone()])
    });
    // BGP metrics follow the speaker within a second.
    wait_for("the Loc-RIB size in the metrics", &agent, || {
        metric(
            &lab,
            "node1",
            "podroute_bgp_loc_rib_prefixes{family=\"ipv4\"}",
        ) == Some(0.0)
    });
    drop(agent);
    lab.down().expect("lab down");
}
