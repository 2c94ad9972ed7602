//! Observability end to end (needs root: run by make test): three agents and BIRD as a
//! router peer in a lab, `promtool check metrics` on every agent, a real Prometheus (Debian's
//! `prometheus`, in the lab's fabric namespace) scraping them, the dashboard's panel queries
//! and the alert rules evaluated against it, drift that shows and clears, readiness that
//! follows routing.
//!
//! Every wait is a bounded poll for a condition.

use std::collections::BTreeSet;
use std::path::Path;
use std::time::{Duration, Instant};

use podroute_lab::{Lab, LabConfig, LabNode, LabProcess, Tor};
use serde_json::Value;

mod lab_support;
use lab_support::{metric, podroute_routes};

const CONVERGE: Duration = Duration::from_secs(90);
/// Where Prometheus listens, inside the fabric namespace (the lab's router address).
const PROMETHEUS: &str = "198.18.0.254:9090";

fn wait_for(what: &str, mut check: impl FnMut() -> bool, explain: impl Fn() -> String) {
    let start = Instant::now();
    while start.elapsed() < CONVERGE {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(300));
    }
    panic!(
        "timed out after {CONVERGE:?} waiting for {what}\n{}",
        explain()
    );
}

fn spawn_agent(lab: &Lab, node: &LabNode) -> LabProcess {
    lab_support::spawn_agent(lab, node, &["--bgp-peer", "address=198.18.0.254,as=64512"])
}

fn curl(lab: &Lab, node: &str, path: &str) -> String {
    lab.exec(
        node,
        &["curl", "-s", &format!("http://127.0.0.1:9180{path}")],
    )
    .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
    .unwrap_or_default()
}

fn status(lab: &Lab, node: &str) -> Value {
    serde_json::from_str(&curl(lab, node, "/status")).unwrap_or(Value::Null)
}

/// Drift entries of `node`'s `/status` as `prefix kind`.
fn drift(lab: &Lab, node: &str) -> BTreeSet<String> {
    status(lab, node)["drift"]
        .as_array()
        .into_iter()
        .flatten()
        .map(|e| {
            format!(
                "{} {}",
                e["prefix"].as_str().unwrap_or("?"),
                e["kind"].as_str().unwrap_or("?")
            )
        })
        .collect()
}

/// A PromQL query against the lab's Prometheus: its `data.result`, or the error it gave.
fn query(lab: &Lab, promql: &str) -> Result<Vec<Value>, String> {
    let out = lab
        .exec_ok(
            "fabric",
            &[
                "curl",
                "-sG",
                &format!("http://{PROMETHEUS}/api/v1/query"),
                "--data-urlencode",
                &format!("query={promql}"),
            ],
        )
        .map_err(|e| e.to_string())?;
    let answer: Value = serde_json::from_str(&out).map_err(|e| format!("{e}: {out}"))?;
    if answer["status"] != "success" {
        return Err(format!("{promql}: {out}"));
    }
    Ok(answer["data"]["result"]
        .as_array()
        .cloned()
        .unwrap_or_default())
}

/// The value of each result of `promql` by its `instance` label.
fn by_instance(lab: &Lab, promql: &str) -> Vec<(String, f64)> {
    let mut out: Vec<(String, f64)> = query(lab, promql)
        .unwrap_or_default()
        .iter()
        .map(|r| {
            (
                r["metric"]["instance"].as_str().unwrap_or("").to_owned(),
                r["value"][1]
                    .as_str()
                    .and_then(|v| v.parse().ok())
                    .unwrap_or(f64::NAN),
            )
        })
        .collect();
    out.sort_by(|a, b| a.0.cmp(&b.0));
    out
}

/// The shipped alert rules file.
fn rules_file() -> std::path::PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/monitoring/podroute-rules.yaml")
        .canonicalize()
        .expect("rules file")
}

/// Starts Prometheus in the fabric namespace, scraping every agent each second, with the
/// shipped alert rules.
fn start_prometheus(lab: &Lab, nodes: &[LabNode]) -> LabProcess {
    let dir = lab.dir().join("prometheus");
    std::fs::create_dir_all(&dir).expect("prometheus dir");
    let rules = rules_file();
    let targets: Vec<String> = nodes.iter().map(|n| format!("'{}:9180'", n.ipv4)).collect();
    let config = format!(
        "global:\n  scrape_interval: 1s\n  evaluation_interval: 1s\nrule_files:\n  - {}\n\
         scrape_configs:\n  - job_name: podroute\n    static_configs:\n      - targets: [{}]\n",
        rules.display(),
        targets.join(", ")
    );
    let config_file = dir.join("prometheus.yml");
    std::fs::write(&config_file, config).expect("write prometheus.yml");
    let check = std::process::Command::new("promtool")
        .args(["check", "config"])
        .arg(&config_file)
        .output()
        .expect("run promtool");
    assert!(
        check.status.success(),
        "promtool check config: {}",
        String::from_utf8_lossy(&check.stdout)
    );
    let check = std::process::Command::new("promtool")
        .args(["check", "rules"])
        .arg(&rules)
        .output()
        .expect("run promtool");
    assert!(
        check.status.success(),
        "promtool check rules: {}{}",
        String::from_utf8_lossy(&check.stdout),
        String::from_utf8_lossy(&check.stderr)
    );
    lab.spawn(
        "fabric",
        "prometheus",
        "prometheus",
        &[
            format!("--config.file={}", config_file.display()),
            format!("--storage.tsdb.path={}", dir.join("data").display()),
            format!("--web.listen-address={PROMETHEUS}"),
        ],
        &[],
    )
    .expect("spawn prometheus")
}

/// What each alert rule watches: its `expr` without the final comparison with a number
/// (`podroute_ready == 0` → `podroute_ready`), so that querying it returns the series the
/// alert would fire on, healthy or not.
fn alert_watched_series() -> Vec<String> {
    let rules = std::fs::read_to_string(rules_file()).expect("rules");
    rules
        .lines()
        .filter_map(|l| l.trim().strip_prefix("expr:"))
        .map(|expr| {
            let expr = expr.trim();
            let (lhs, threshold) = [" == ", " != ", " >= ", " <= ", " > ", " < "]
                .iter()
                .filter_map(|op| expr.rsplit_once(op))
                .max_by_key(|(lhs, _)| lhs.len())
                .unwrap_or_else(|| panic!("alert expression without a comparison: {expr}"));
            assert!(
                threshold.trim().parse::<f64>().is_ok(),
                "alert expression does not end in a comparison with a number: {expr}"
            );
            lhs.trim().to_owned()
        })
        .collect()
}

/// Every `expr` of the dashboard's panels.
fn dashboard_queries() -> Vec<String> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR"))
        .join("../manifests/monitoring/grafana-dashboard.json");
    let dashboard: Value =
        serde_json::from_str(&std::fs::read_to_string(path).expect("dashboard")).expect("json");
    dashboard["panels"]
        .as_array()
        .into_iter()
        .flatten()
        .flat_map(|p| p["targets"].as_array().cloned().unwrap_or_default())
        .filter_map(|t| t["expr"].as_str().map(str::to_owned))
        .collect()
}

#[test]
#[ignore = "needs root: run by make test"]
fn metrics_prometheus_dashboard_alerts_drift_and_readiness() {
    let mut lab =
        Lab::up(&LabConfig::new(format!("ob{}", std::process::id() % 100_000), 3).tor(Tor::Bird))
            .expect("lab up");
    let nodes = lab.nodes().to_vec();
    let mut agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();
    let logs = |agents: &[LabProcess]| {
        agents
            .iter()
            .map(LabProcess::log)
            .collect::<Vec<_>>()
            .join("\n---\n")
    };

    // Ready means routed: on every node, after convergence. The routes are looked at right
    // after /readyz first says ready: a node that said so before its mesh routes were in the
    // kernel is caught at that moment.
    for node in &nodes {
        wait_for(
            &format!("{} ready", node.name),
            || curl(&lab, &node.name, "/readyz").starts_with("ready"),
            || format!("{}\n{}", curl(&lab, &node.name, "/readyz"), logs(&agents)),
        );
        let routes = podroute_routes(&lab, &node.name);
        for other in nodes.iter().filter(|o| o.name != node.name) {
            let route = format!("{} via {}", other.pod_cidr_v4, other.ipv4);
            assert!(
                routes.contains(&route),
                "{} said ready without {route}: {routes:?}",
                node.name
            );
        }
    }

    // Kubernetes Events on the Nodes: the sessions came up.
    wait_for(
        "BGPSessionUp events on node1",
        || {
            lab.kubectl(&[
                "get",
                "events.events.k8s.io",
                "-n",
                "default",
                "--field-selector",
                "reason=BGPSessionUp,regarding.name=node1",
                "-o",
                "name",
            ])
            .is_ok_and(|out| out.lines().count() >= 2)
        },
        || {
            lab.kubectl(&["get", "events.events.k8s.io", "-A"])
                .unwrap_or_default()
        },
    );

    // promtool finds nothing wrong with any agent's exposition.
    for node in &nodes {
        let out = lab
            .exec(
                &node.name,
                &[
                    "sh",
                    "-c",
                    "curl -sf http://127.0.0.1:9180/metrics | promtool check metrics",
                ],
            )
            .expect("promtool");
        let said = format!(
            "{}{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        );
        assert!(
            out.status.success() && said.trim().is_empty(),
            "{}: promtool check metrics: {said}",
            node.name
        );
    }

    // A real Prometheus scrapes every agent: 3 nodes, 2 established mesh sessions each, one
    // router session each.
    let mut prometheus = start_prometheus(&lab, &nodes);
    let mesh = "podroute_bgp_sessions{peer_type=\"mesh\",state=\"established\"}";
    wait_for(
        "Prometheus to see 2 mesh sessions on each of 3 nodes",
        || {
            let values = by_instance(&lab, mesh);
            values.len() == 3 && values.iter().all(|(_, v)| *v == 2.0)
        },
        || format!("{:?}\n{}", query(&lab, mesh), prometheus.log()),
    );
    let router = "podroute_bgp_peer_state{peer_type=\"router\"}";
    wait_for(
        "Prometheus to see each node's router session Established",
        || {
            let values = by_instance(&lab, router);
            values.len() == 3 && values.iter().all(|(_, v)| *v == 6.0)
        },
        || format!("{:?}", query(&lab, router)),
    );
    let installed = "sum by (instance) (podroute_routes_installed)";
    wait_for(
        "3 routes installed on each node (own blackhole, two peers)",
        || {
            let values = by_instance(&lab, installed);
            values.len() == 3 && values.iter().all(|(_, v)| *v == 3.0)
        },
        || format!("{:?}", query(&lab, installed)),
    );

    // The convergence histogram counts more after node3's Node is re-created with another
    // pod CIDR (the field is immutable: delete and create).
    let node1 = format!("{}:9180", nodes[0].ipv4);
    let count = format!("sum(podroute_route_convergence_seconds_count{{instance=\"{node1}\"}})");
    let before = by_instance(&lab, &count).first().map_or(0.0, |(_, v)| *v);
    lab.set_pod_cidr("node3", &["10.244.33.0/24".parse().expect("cidr")])
        .expect("set pod cidr");
    wait_for(
        "node1 to route node3's new pod CIDR",
        || {
            lab.routes_json("node1")
                .map(|r| r.to_string().contains("10.244.33.0/24"))
                .unwrap_or(false)
        },
        || logs(&agents),
    );
    wait_for(
        "node1's convergence count to grow in Prometheus",
        || {
            by_instance(&lab, &count)
                .first()
                .is_some_and(|(_, v)| *v >= before + 2.0)
        },
        || format!("before {before}, now {:?}", query(&lab, &count)),
    );

    // Every dashboard panel query parses and returns data.
    let queries = dashboard_queries();
    assert!(!queries.is_empty(), "the dashboard has no panel queries");
    for expr in queries {
        wait_for(
            &format!("data for the panel query {expr}"),
            || query(&lab, &expr).is_ok_and(|r| !r.is_empty()),
            || format!("{:?}", query(&lab, &expr)),
        );
    }
    // Every alert rule loaded and is healthy (its expression parses and evaluates); the
    // series each one reads exist.
    let shipped = std::fs::read_to_string(rules_file())
        .expect("rules")
        .matches("- alert:")
        .count();
    wait_for(
        "every alert rule evaluated without error",
        || {
            let rules = lab
                .exec_ok(
                    "fabric",
                    &["curl", "-s", &format!("http://{PROMETHEUS}/api/v1/rules")],
                )
                .unwrap_or_default();
            let rules: Value = serde_json::from_str(&rules).unwrap_or(Value::Null);
            let all: Vec<&Value> = rules["data"]["groups"]
                .as_array()
                .into_iter()
                .flatten()
                .flat_map(|g| g["rules"].as_array().into_iter().flatten())
                .collect();
            all.len() == shipped
                && all
                    .iter()
                    .all(|r| r["health"] == "ok" && r["lastEvaluation"] != "0001-01-01T00:00:00Z")
        },
        || {
            lab.exec_ok(
                "fabric",
                &["curl", "-s", &format!("http://{PROMETHEUS}/api/v1/rules")],
            )
            .unwrap_or_default()
        },
    );

    // What every alert watches returns data: a metric or label value the agents do not
    // export would leave an alert that can never fire.
    let watched = alert_watched_series();
    assert_eq!(watched.len(), shipped, "one expression per alert");
    for expr in watched {
        wait_for(
            &format!("data for the alert's series {expr}"),
            || query(&lab, &expr).is_ok_and(|r| !r.is_empty()),
            || format!("{:?}", query(&lab, &expr)),
        );
    }

    // Drift, replaced by another protocol: node2's route on node1 becomes a static one. The
    // agent leaves it alone; drift shows in status, metrics and Prometheus (the alert's
    // expression returns it) and /readyz says the mesh route is not in the kernel.
    let route = "10.244.2.0/24";
    lab.exec_ok(
        "node1",
        &[
            "ip",
            "route",
            "replace",
            route,
            "via",
            "198.18.0.2",
            "proto",
            "static",
        ],
    )
    .expect("replace route");
    let foreign = format!("{route} kernel_foreign");
    wait_for(
        "node1 to report the replaced route as drift",
        || drift(&lab, "node1").contains(&foreign),
        || format!("{:?}", status(&lab, "node1")),
    );
    assert_eq!(
        metric(
            &lab,
            "node1",
            "podroute_drift_routes{kind=\"kernel_foreign\"}"
        ),
        Some(1.0)
    );
    assert!(
        curl(&lab, "node1", "/readyz").contains("mesh route(s) not in the kernel"),
        "{}",
        curl(&lab, "node1", "/readyz")
    );
    wait_for(
        "Prometheus to see the drift",
        || {
            query(&lab, "sum by (instance, kind) (podroute_drift_routes) > 0")
                .is_ok_and(|r| r.len() == 1 && r[0]["metric"]["kind"] == "kernel_foreign")
        },
        || format!("{:?}", query(&lab, "podroute_drift_routes > 0")),
    );
    // Repaired: the static route goes, the agent puts its own back, drift clears.
    lab.exec_ok("node1", &["ip", "route", "del", route, "proto", "static"])
        .expect("delete static route");
    wait_for(
        "node1's drift to clear and readiness to return",
        || drift(&lab, "node1").is_empty() && curl(&lab, "node1", "/readyz").starts_with("ready"),
        || format!("{:?}", status(&lab, "node1")),
    );
    assert_eq!(
        metric(
            &lab,
            "node1",
            "podroute_drift_routes{kind=\"kernel_foreign\"}"
        ),
        Some(0.0)
    );
    assert!(
        metric(
            &lab,
            "node1",
            "podroute_drift_events_total{kind=\"kernel_foreign\"}"
        )
        .is_some_and(|v| v >= 1.0)
    );

    // Drift, deleted by hand: repaired within a moment, and still counted.
    let missing = "podroute_drift_events_total{kind=\"kernel_missing\"}";
    let before = metric(&lab, "node1", missing).unwrap_or(0.0);
    lab.exec_ok("node1", &["ip", "route", "del", route, "proto", "80"])
        .expect("delete route");
    wait_for(
        "the deleted route to be restored and counted as drift",
        || {
            metric(&lab, "node1", missing).is_some_and(|v| v > before)
                && podroute_routes(&lab, "node1").contains(&format!("{route} via 198.18.0.2"))
                && drift(&lab, "node1").is_empty()
        },
        || format!("{:?}", status(&lab, "node1")),
    );

    // Readiness: node3's Node re-created without a pod CIDR makes it not ready (and CNI
    // STATUS not ready); given one back, it is ready again.
    lab.delete_node_object("node3").expect("delete node3");
    let bare = lab.dir().join("node3-bare.json");
    std::fs::write(
        &bare,
        format!(
            r#"{{"apiVersion":"v1","kind":"Node","metadata":{{"name":"node3"}},
               "status":{{"addresses":[{{"type":"InternalIP","address":"{}"}}]}}}}"#,
            nodes[2].ipv4
        ),
    )
    .expect("write node");
    wait_for(
        "node3's Node object to be gone",
        || {
            lab.kubectl(&["get", "node", "node3", "-o", "name"])
                .map_or(true, |out| out.trim().is_empty())
        },
        String::new,
    );
    lab.kubectl(&["create", "-f", &bare.display().to_string()])
        .expect("create node3 without pod CIDR");
    let cni_ready = lab.dir().join("cni-ready-node3");
    wait_for(
        "node3 not ready: no pod CIDR",
        || curl(&lab, "node3", "/readyz").contains("no pod CIDR") && !cni_ready.exists(),
        || curl(&lab, "node3", "/readyz"),
    );
    lab.kubectl(&[
        "patch",
        "node",
        "node3",
        "--type=merge",
        "-p",
        r#"{"spec":{"podCIDR":"10.244.34.0/24","podCIDRs":["10.244.34.0/24"]}}"#,
    ])
    .expect("assign pod CIDR");
    wait_for(
        "node3 ready again",
        || curl(&lab, "node3", "/readyz").starts_with("ready") && cni_ready.exists(),
        || format!("{}\n{}", curl(&lab, "node3", "/readyz"), logs(&agents)),
    );

    // `podroute-agent status` shows peers with type, state and counts, and the routes,
    // once node1 routes node3's new CIDR too.
    wait_for(
        "node1 ready with node3's new pod CIDR",
        || curl(&lab, "node1", "/readyz").starts_with("ready"),
        || curl(&lab, "node1", "/readyz"),
    );
    let out = lab
        .exec_ok("node1", &[env!("CARGO_BIN_EXE_podroute-agent"), "status"])
        .expect("status");
    assert!(
        out.contains("198.18.0.254") && out.contains("router"),
        "{out}"
    );
    assert_eq!(out.matches(" mesh ").count(), 2, "{out}");
    assert!(out.contains("drift:      none"), "{out}");

    let _ = prometheus.terminate();
    for agent in &mut agents {
        let _ = agent.terminate();
    }
}
