//! Helpers shared by the lab tests.

#![allow(dead_code, unreachable_pub)]

use std::collections::BTreeSet;

use podroute_lab::Lab;

/// podroute's routes (protocol 80) on `node`: `blackhole <cidr>`, `unicast <dst>` or
/// `<cidr> via <gateway>`.
pub fn podroute_routes(lab: &Lab, node: &str) -> BTreeSet<String> {
    let routes = lab.routes_json(node).expect("routes");
    routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| r["protocol"] == "80" || r["protocol"] == 80)
        .map(|r| {
            let dst = r["dst"].as_str().unwrap_or("?");
            match r["gateway"].as_str() {
                Some(gw) => format!("{dst} via {gw}"),
                None => format!("{} {dst}", r["type"].as_str().unwrap_or("unicast")),
            }
        })
        .collect()
}

/// A metric's value from the agent on `node` (the first sample with exactly this name and
/// labels, e.g. `podroute_bgp_sessions{peer_type="mesh",state="established"}`).
pub fn metric(lab: &Lab, node: &str, name: &str) -> Option<f64> {
    let text = lab
        .exec_ok(node, &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
        .ok()?;
    text.lines()
        .filter(|l| !l.starts_with('#'))
        .find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.trim().parse().ok())
}

/// Starts `podroute-agent` in `node`'s namespace with the lab's admin kubeconfig, the files
/// it writes kept in the lab directory, short timers for tests, and `extra` arguments.
pub fn spawn_agent(
    lab: &Lab,
    node: &podroute_lab::LabNode,
    extra: &[&str],
) -> podroute_lab::LabProcess {
    spawn_agent_with(lab, node, &node.name, &lab.kubeconfig(), extra)
}

/// Starts the agent in `node`'s namespace as Node `node_name` with `kubeconfig`.
pub fn spawn_agent_with(
    lab: &Lab,
    node: &podroute_lab::LabNode,
    node_name: &str,
    kubeconfig: &std::path::Path,
    extra: &[&str],
) -> podroute_lab::LabProcess {
    let dir = lab.dir();
    let mut args: Vec<String> = vec![
        "--kubeconfig".into(),
        kubeconfig.display().to_string(),
        "--node-name".into(),
        node_name.to_owned(),
        "--cni-conflist".into(),
        dir.join(format!("cni-{node_name}.conflist"))
            .display()
            .to_string(),
        // Inside the lab directory, never the host's /run/podroute.
        "--cni-readiness-file".into(),
        dir.join(format!("cni-ready-{node_name}"))
            .display()
            .to_string(),
        "--reconcile-period".into(),
        "2s".into(),
        "--startup-grace".into(),
        "20s".into(),
        "--hold-time".into(),
        "9".into(),
    ];
    args.extend(extra.iter().map(|a| (*a).to_owned()));
    lab.spawn(
        &node.name,
        "agent",
        env!("CARGO_BIN_EXE_podroute-agent"),
        &args,
        &[("RUST_LOG", "info,podroute_agent=debug")],
    )
    .expect("spawn agent")
}
