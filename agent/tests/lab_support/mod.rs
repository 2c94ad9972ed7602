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

/// Starts BIRD in the namespace of fabric host `name` with configuration `config`, its
/// files (`bird-<name>.conf`, `.ctl`, `.pid`) in the lab directory; [`birdc`] talks to it.
pub fn spawn_bird(lab: &Lab, name: &str, config: &str) -> podroute_lab::LabProcess {
    let path = lab.dir().join(format!("bird-{name}.conf"));
    std::fs::write(&path, config).expect("BIRD config");
    let socket = lab.dir().join(format!("bird-{name}.ctl"));
    let pid = lab.dir().join(format!("bird-{name}.pid"));
    let args = [
        "-f".to_owned(),
        "-c".to_owned(),
        path.display().to_string(),
        "-s".to_owned(),
        socket.display().to_string(),
        "-P".to_owned(),
        pid.display().to_string(),
    ];
    lab.spawn(name, "bird", "bird", &args, &[])
        .expect("start BIRD")
}

/// `birdc` of the BIRD [`spawn_bird`] started as `name` (empty output when it does not
/// answer).
pub fn birdc(lab: &Lab, name: &str, args: &[&str]) -> String {
    let socket = lab.dir().join(format!("bird-{name}.ctl"));
    let mut command = vec![
        "birdc".to_owned(),
        "-s".to_owned(),
        socket.display().to_string(),
    ];
    command.extend(args.iter().map(|a| (*a).to_owned()));
    lab.exec_ok(name, &command).unwrap_or_default()
}

/// A BGPPeer named `name` with `spec` (YAML indented by two spaces).
pub fn peer(name: &str, spec: &str) -> String {
    format!(
        "apiVersion: podroute.io/v1alpha1\nkind: BGPPeer\nmetadata:\n  name: {name}\nspec:\n{spec}"
    )
}

/// The generated CRDs.
pub const CRDS: &str = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/crds.yaml");

/// Installs the CRDs and waits until the API server serves them.
pub fn install_crds(lab: &Lab) {
    lab.kubectl(&["apply", "-f", CRDS]).expect("apply CRDs");
    lab.kubectl(&[
        "wait",
        "--for=condition=Established",
        "--timeout=60s",
        "crd/bgppeers.podroute.io",
        "crd/bgpconfigurations.podroute.io",
    ])
    .expect("CRDs established");
}

/// `kubectl apply` of one YAML document: Ok, or the API server's refusal.
pub fn apply(lab: &Lab, name: &str, yaml: &str) -> Result<String, String> {
    let path = lab.dir().join(format!("{name}.yaml"));
    std::fs::write(&path, yaml).expect("write object");
    let out = lab
        .kubectl_output(&["apply", "-f", &path.display().to_string()])
        .expect("run kubectl");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    if out.status.success() {
        Ok(text)
    } else {
        Err(text)
    }
}

/// node1's `/status` as JSON (Null while the agent does not answer).
pub fn status(lab: &Lab, node: &str) -> serde_json::Value {
    lab.exec_ok(node, &["curl", "-sf", "http://127.0.0.1:9180/status"])
        .ok()
        .and_then(|t| serde_json::from_str(&t).ok())
        .unwrap_or(serde_json::Value::Null)
}

/// The `/status` entry of peer `address`, if the agent runs a session to it.
pub fn peer_status(status: &serde_json::Value, address: &str) -> Option<serde_json::Value> {
    status["bgpPeers"]
        .as_array()?
        .iter()
        .find(|p| p["address"] == address)
        .cloned()
}

/// Every agent's log, for a failure message.
pub fn joined_logs(agents: &[podroute_lab::LabProcess]) -> String {
    agents
        .iter()
        .map(|a| a.log())
        .collect::<Vec<_>>()
        .join("\n---\n")
}

/// Polls `check` for up to 60 s; panics with `what` and `explain()` on timeout.
pub fn wait_for(what: &str, mut check: impl FnMut() -> bool, explain: impl FnOnce() -> String) {
    let start = std::time::Instant::now();
    while start.elapsed() < std::time::Duration::from_secs(60) {
        if check() {
            return;
        }
        std::thread::sleep(std::time::Duration::from_millis(250));
    }
    panic!("timed out waiting for {what}\n{}", explain());
}
