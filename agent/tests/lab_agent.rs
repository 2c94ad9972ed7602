//! End-to-end: `podroute-agent` on every node of a lab with a real kube-apiserver and BIRD as
//! top-of-rack router (needs root: run by `make test`).
//!
//! Every wait is a bounded poll for a condition; the only fixed-length waits are observation
//! windows in which *nothing* may happen (API server outage, agent restart).

use std::collections::BTreeSet;
use std::time::{Duration, Instant};

use podroute_lab::{Lab, LabConfig, LabNode, LabPod, LabProcess, Signal, Tor};

mod lab_support;
use lab_support::{podroute_routes, spawn_agent_with};

/// Longest wait for routes to converge.
const CONVERGE: Duration = Duration::from_secs(60);

fn lab_name(tag: &str) -> String {
    format!("ag{tag}{}", std::process::id() % 100_000)
}

/// Starts the agent binary in `node`'s namespace.
fn spawn_agent(lab: &Lab, node: &LabNode) -> LabProcess {
    spawn_agent_as(lab, node, &node.name, &[])
}

/// Starts the agent in `node`'s namespace as Node `node_name`, with `extra` arguments.
fn spawn_agent_as(lab: &Lab, node: &LabNode, node_name: &str, extra: &[&str]) -> LabProcess {
    spawn_agent_with(lab, node, node_name, &lab.kubeconfig(), extra)
}

/// Routes of every protocol but podroute's, exactly as `ip -j` prints them.
fn foreign_routes(lab: &Lab, node: &str) -> Vec<serde_json::Value> {
    let routes = lab.routes_json(node).expect("routes");
    routes
        .as_array()
        .into_iter()
        .flatten()
        .filter(|r| !(r["protocol"] == "80" || r["protocol"] == 80))
        .cloned()
        .collect()
}

/// What `node` should hold when `cluster` are the nodes with Node objects.
fn expected_routes(node: &LabNode, cluster: &[LabNode]) -> BTreeSet<String> {
    let mut out = BTreeSet::new();
    for other in cluster {
        for (cidr, ip) in other.pod_cidrs().iter().zip(other.ips()) {
            if other.name == node.name {
                out.insert(format!("blackhole {cidr}"));
            } else {
                out.insert(format!("{cidr} via {ip}"));
            }
        }
    }
    out
}

/// Runs `podroute-agent status` on `node`: its exit code and output.
fn agent_status_cli(lab: &Lab, node: &str) -> (Option<i32>, String) {
    let out = lab
        .exec(node, &[env!("CARGO_BIN_EXE_podroute-agent"), "status"])
        .expect("run podroute-agent status");
    let text = format!(
        "{}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    (out.status.code(), text)
}

/// Polls until `check` holds or `CONVERGE` passes.
fn wait_for(what: &str, mut check: impl FnMut() -> bool) {
    let start = Instant::now();
    while start.elapsed() < CONVERGE {
        if check() {
            return;
        }
        std::thread::sleep(Duration::from_millis(200));
    }
    panic!("timed out after {CONVERGE:?} waiting for {what}");
}

/// Waits until every node in `on` holds exactly its expected routes.
fn wait_converged(lab: &Lab, on: &[LabNode], cluster: &[LabNode], agents: &[LabProcess]) {
    for node in on {
        let expected = expected_routes(node, cluster);
        let start = Instant::now();
        loop {
            let actual = podroute_routes(lab, &node.name);
            if actual == expected {
                eprintln!(
                    "{}: converged in {:?}: {actual:?}",
                    node.name,
                    start.elapsed()
                );
                break;
            }
            if start.elapsed() > CONVERGE {
                let logs: Vec<String> = agents.iter().map(|a| a.log()).collect();
                panic!(
                    "{}: routes did not converge\n expected {expected:?}\n actual   {actual:?}\nagent logs:\n{}",
                    node.name,
                    logs.join("\n---\n")
                );
            }
            std::thread::sleep(Duration::from_millis(200));
        }
    }
}

fn ping_matrix(lab: &Lab, pods: &[LabPod]) {
    let mut failures = Vec::new();
    for from in pods {
        for to in pods {
            if from.name != to.name && !lab.ping(from, to.ipv4) {
                failures.push(format!("{} -> {} ({})", from.name, to.name, to.ipv4));
            }
        }
    }
    assert!(failures.is_empty(), "unreachable pods: {failures:?}");
}

#[test]
#[ignore = "needs root: run by make test"]
fn mesh_routes_pods_reach_each_other_and_node_changes_follow() {
    let mut lab = Lab::up(&LabConfig::new(lab_name("m"), 3).tor(Tor::Bird)).expect("lab up");
    let nodes = lab.nodes().to_vec();
    let mut agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();
    wait_converged(&lab, &nodes, &nodes, &agents);

    // Readiness: the CNI conflist appears once routes are programmed.
    for node in &nodes {
        let conflist = lab.dir().join(format!("cni-{}.conflist", node.name));
        wait_for("the CNI conflist", || conflist.exists());
    }

    // /status: ready, both sessions up and synced, no drift between API, RIB and kernel.
    wait_for("a clean /status on node1", || {
        let Ok(text) = lab.exec_ok("node1", &["curl", "-sf", "http://127.0.0.1:9180/status"])
        else {
            return false;
        };
        let Ok(status) = serde_json::from_str::<serde_json::Value>(&text) else {
            return false;
        };
        let peers = status["bgpPeers"].as_array().cloned().unwrap_or_default();
        let drift_clean = status["drift"].as_array().is_some_and(Vec::is_empty);
        status["ready"] == true
            && peers.len() == 2
            && peers
                .iter()
                .all(|p| p["established"] == true && p["synced"] == true)
            && drift_clean
    });

    // The operator's view of the same: `podroute-agent status` on the node.
    let (code, text) = agent_status_cli(&lab, "node1");
    assert_eq!(code, Some(0), "{text}");
    assert!(text.contains("ready:      yes"), "{text}");
    assert_eq!(text.matches("Established").count(), 2, "{text}");
    assert!(text.contains("drift:      none"), "{text}");

    let mut pods = Vec::new();
    for node in &nodes {
        for suffix in ["a", "b"] {
            let name = format!("p{}{suffix}", node.index);
            pods.push(lab.add_pod(&node.name, &name).expect("add pod"));
        }
    }
    ping_matrix(&lab, &pods);
    eprintln!(
        "ping matrix of {} pods: every pod reaches every other",
        pods.len()
    );

    // Someone deletes a podroute route: the periodic reconcile puts it back and counts it.
    lab.exec_ok(
        "node1",
        &["ip", "route", "del", "10.244.2.0/24", "proto", "80"],
    )
    .expect("delete route");
    wait_converged(&lab, &nodes[..1], &nodes, &agents);
    wait_for("the restore to be counted", || {
        lab.exec_ok("node1", &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
            .is_ok_and(|m| m.contains("podroute_routes_restored_total 1"))
    });

    // A 4th node joins: its route appears everywhere, and it learns everyone's.
    let node4 = lab.add_node().expect("add node");
    agents.push(spawn_agent(&lab, &node4));
    let cluster4 = lab.nodes().to_vec();
    wait_converged(&lab, &cluster4, &cluster4, &agents);

    // Its Node object is deleted: its route goes from every other node.
    lab.delete_node_object(&node4.name).expect("delete node");
    wait_converged(&lab, &nodes, &nodes, &agents);
    if let Some(mut agent4) = agents.pop() {
        let _ = agent4.terminate();
    }

    // node3's pod CIDR changes: the old route goes, the new one comes, everywhere.
    let new_cidr = "10.244.33.0/24".parse().expect("cidr");
    lab.set_pod_cidr("node3", &[new_cidr])
        .expect("set pod cidr");
    let cluster = lab.nodes()[..3].to_vec();
    assert_eq!(cluster[2].pod_cidr_v4.to_string(), "10.244.33.0/24");
    wait_converged(&lab, &cluster, &cluster, &agents);

    for agent in &mut agents {
        let _ = agent.terminate();
    }
}

#[test]
#[ignore = "needs root: run by make test"]
fn foreign_routes_api_outage_and_restarts_change_nothing() {
    let mut lab = Lab::up(&LabConfig::new(lab_name("f"), 3).tor(Tor::Bird)).expect("lab up");
    let nodes = lab.nodes().to_vec();

    // Routes of other protocols on node1, one of them to node3's pod CIDR.
    let foreign = [
        vec![
            "route",
            "add",
            "192.0.2.0/24",
            "dev",
            "eth0",
            "proto",
            "kernel",
        ],
        vec![
            "route",
            "add",
            "198.51.100.0/24",
            "via",
            "198.18.0.254",
            "proto",
            "static",
        ],
        vec![
            "route",
            "add",
            "203.0.113.0/24",
            "via",
            "198.18.0.254",
            "proto",
            "bird",
        ],
        vec![
            "route",
            "add",
            "100.64.0.0/16",
            "via",
            "198.18.0.254",
            "proto",
            "186",
        ],
        vec![
            "route",
            "add",
            "blackhole",
            "100.65.0.0/16",
            "proto",
            "boot",
        ],
        vec![
            "route",
            "add",
            "10.244.3.0/24",
            "via",
            "198.18.0.3",
            "proto",
            "static",
        ],
    ];
    for args in &foreign {
        let mut cmd = vec!["ip"];
        cmd.extend(args.iter().copied());
        lab.exec_ok("node1", &cmd).expect("add foreign route");
    }
    let before = foreign_routes(&lab, "node1");

    let mut agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();
    // node1 leaves 10.244.3.0/24 to the static route (a collision); the rest is as usual.
    let mut expected1 = expected_routes(&nodes[0], &nodes);
    expected1.remove("10.244.3.0/24 via 198.18.0.3");
    wait_for("node1's routes", || {
        podroute_routes(&lab, "node1") == expected1
    });
    wait_converged(&lab, &nodes[1..], &nodes, &agents);
    assert_eq!(
        foreign_routes(&lab, "node1"),
        before,
        "foreign routes changed at start"
    );
    let metrics = lab
        .exec_ok("node1", &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
        .expect("metrics");
    assert!(metrics.contains("podroute_route_collisions 1"), "{metrics}");

    // Watch every node's routing table from here on.
    let monitors: Vec<LabProcess> = nodes
        .iter()
        .map(|n| {
            lab.spawn(&n.name, "monitor", "ip", &["monitor", "route"], &[])
                .expect("ip monitor")
        })
        .collect();
    // Positive control: the monitors see a change (a foreign route added and removed again).
    // Each try adds and removes the route: the kernel announces nothing for a replace that
    // changes nothing, so a monitor that started late would otherwise never see it.
    for (node, monitor) in nodes.iter().zip(&monitors) {
        wait_for("ip monitor to see a route change", || {
            for change in ["replace", "del"] {
                let _ = lab.exec(
                    &node.name,
                    &[
                        "ip",
                        "route",
                        change,
                        "192.0.2.128/25",
                        "dev",
                        "eth0",
                        "proto",
                        "static",
                    ],
                );
            }
            monitor.log().contains("192.0.2.128/25")
        });
    }
    let quiet = |lab: &Lab, when: &str| {
        for (node, monitor) in nodes.iter().zip(&monitors) {
            let changes: Vec<String> = monitor
                .log()
                .lines()
                .filter(|l| l.contains("proto 80"))
                .map(str::to_owned)
                .collect();
            assert!(
                changes.is_empty(),
                "{} {when}: podroute routes changed: {changes:?}",
                node.name
            );
        }
        assert_eq!(
            foreign_routes(lab, "node1"),
            before,
            "foreign routes changed {when}"
        );
    };

    // API server away for a while (several reconcile periods): nothing changes.
    lab.stop_apiserver().expect("stop apiserver");
    std::thread::sleep(Duration::from_secs(10));
    quiet(&lab, "during the API server outage");
    assert!(
        agents[0].log().contains("Node watch failed"),
        "the agent did not notice the outage"
    );
    lab.start_apiserver().expect("start apiserver");
    std::thread::sleep(Duration::from_secs(10));
    quiet(&lab, "after the API server came back");
    for node in &nodes {
        let status = lab
            .exec_ok(
                &node.name,
                &["curl", "-sf", "http://127.0.0.1:9180/metrics"],
            )
            .expect("metrics");
        assert!(
            status.contains("podroute_bgp_sessions{peer_type=\"mesh\",state=\"established\"} 2"),
            "{}: {status}",
            node.name
        );
    }

    // Agent restarts: SIGTERM on node2, kill -9 on node1; nothing is deleted or re-added,
    // on the restarted node or on its peers.
    let _ = agents[1].terminate();
    agents[1] = spawn_agent(&lab, &nodes[1]);
    agents[0].kill(Signal::SIGKILL).expect("kill -9");
    let _ = agents[0].wait_timeout(Duration::from_secs(5));
    assert_eq!(
        foreign_routes(&lab, "node1"),
        before,
        "foreign routes changed by kill -9"
    );
    agents[0] = spawn_agent(&lab, &nodes[0]);
    // node1 cannot install node3's route (the static route holds it): readiness means
    // routed, so node1 says so; the others are ready.
    for node in &nodes[1..] {
        wait_for("the agent to be ready", || {
            lab.exec(&node.name, &["curl", "-sf", "http://127.0.0.1:9180/readyz"])
                .is_ok_and(|o| o.status.success())
        });
    }
    wait_for("node1 not ready because of the collision", || {
        lab.exec("node1", &["curl", "-s", "http://127.0.0.1:9180/readyz"])
            .is_ok_and(|o| {
                String::from_utf8_lossy(&o.stdout)
                    .contains("1 mesh route(s) not in the kernel, e.g. 10.244.3.0/24")
            })
    });
    // Let the sessions re-establish and sync (End-of-RIB), then look.
    wait_for("sessions re-established", || {
        nodes.iter().all(|n| {
            lab.exec_ok(&n.name, &["curl", "-sf", "http://127.0.0.1:9180/metrics"])
                .is_ok_and(|m| {
                    m.contains("podroute_bgp_sessions{peer_type=\"mesh\",state=\"established\"} 2")
                })
        })
    });
    std::thread::sleep(Duration::from_secs(5));
    quiet(&lab, "after agent restarts");
    assert_eq!(podroute_routes(&lab, "node1"), expected1);

    for agent in &mut agents {
        let _ = agent.terminate();
    }
    assert_eq!(
        foreign_routes(&lab, "node1"),
        before,
        "foreign routes changed at stop"
    );
    drop(monitors);
}

#[test]
#[ignore = "needs root: run by make test"]
fn dual_stack_mesh_routes_and_pods_reach_each_other() {
    let mut lab =
        Lab::up(&LabConfig::new(lab_name("d"), 3).tor(Tor::Bird).ipv6(true)).expect("lab up");
    let nodes = lab.nodes().to_vec();
    let mut agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();
    // IPv6 pod CIDRs travel over the IPv4 sessions (MP-BGP) with IPv6 next hops.
    wait_converged(&lab, &nodes, &nodes, &agents);
    assert!(podroute_routes(&lab, "node1").contains("fd00:10:244:2::/64 via fd00:198:18::2"));

    let mut pods = Vec::new();
    for node in &nodes {
        pods.push(
            lab.add_pod(&node.name, &format!("p{}", node.index))
                .expect("add pod"),
        );
    }
    ping_matrix(&lab, &pods);
    let mut failures = Vec::new();
    for from in &pods {
        for to in &pods {
            if let Some(v6) = to.ipv6
                && from.name != to.name
                && !lab.ping(from, v6)
            {
                failures.push(format!("{} -> {} ({v6})", from.name, to.name));
            }
        }
    }
    assert!(
        failures.is_empty(),
        "unreachable pods over IPv6: {failures:?}"
    );
    eprintln!(
        "dual-stack ping matrix of {} pods: every pod reaches every other",
        pods.len()
    );
    for agent in &mut agents {
        let _ = agent.terminate();
    }
}

#[test]
#[ignore = "needs root: run by make test"]
fn wrong_node_name_fails_and_a_node_without_pod_cidr_waits_not_ready() {
    let lab = Lab::up(&LabConfig::new(lab_name("r"), 1)).expect("lab up");
    let node1 = lab.nodes()[0].clone();

    // A NODE_NAME that matches no Node: one clear error, non-zero exit.
    let mut wrong = spawn_agent_as(&lab, &node1, "nodo1", &[]);
    let status = wrong.wait_timeout(CONVERGE).expect("the agent must exit");
    assert!(!status.success());
    assert!(wrong.log().contains("NODE_NAME"), "{}", wrong.log());

    // A Node without pod CIDR (and without addresses: the IP comes from --node-ip).
    let path = lab.dir().join("node-bare.json");
    std::fs::write(
        &path,
        r#"{"apiVersion":"v1","kind":"Node","metadata":{"name":"bare"}}"#,
    )
    .expect("write node");
    lab.kubectl(&["apply", "-f", &path.display().to_string()])
        .expect("create node");
    let mut agent = spawn_agent_as(&lab, &node1, "bare", &["--node-ip", "198.18.0.1"]);
    let readyz = || {
        lab.exec(&node1.name, &["curl", "-s", "http://127.0.0.1:9180/readyz"])
            .map(|o| String::from_utf8_lossy(&o.stdout).into_owned())
            .unwrap_or_default()
    };
    wait_for("not ready: no pod CIDR", || {
        readyz().contains("no pod CIDR")
    });
    let conflist = lab.dir().join("cni-bare.conflist");
    assert!(
        !conflist.exists(),
        "no conflist before the node has a pod CIDR"
    );
    // `podroute-agent status` says why, and exits 1.
    let (code, text) = agent_status_cli(&lab, &node1.name);
    assert_eq!(code, Some(1), "{text}");
    assert!(
        text.contains("ready:      no (the node has no pod CIDR yet)"),
        "{text}"
    );

    // The pod CIDR is assigned: blackhole route, conflist, ready.
    lab.kubectl(&[
        "patch",
        "node",
        "bare",
        "--type=merge",
        "-p",
        r#"{"spec":{"podCIDR":"10.244.9.0/24","podCIDRs":["10.244.9.0/24"]}}"#,
    ])
    .expect("assign pod CIDR");
    wait_for("ready", || readyz().starts_with("ready"));
    assert!(conflist.exists());
    assert!(podroute_routes(&lab, &node1.name).contains("blackhole 10.244.9.0/24"));
    let waiting = agent
        .log()
        .matches("waiting for the node's pod CIDR")
        .count();
    assert_eq!(waiting, 1, "logged once: {}", agent.log());
    let _ = agent.terminate();
}

/// The agent works with the least-privilege RBAC of `manifests/rbac.yaml` (get/list/watch on
/// Nodes, nothing else), through a ServiceAccount token.
#[test]
#[ignore = "needs root: run by make test"]
fn agents_work_with_the_shipped_least_privilege_rbac() {
    let lab = Lab::up(&LabConfig::new(lab_name("rb"), 2)).expect("lab up");
    let rbac = concat!(env!("CARGO_MANIFEST_DIR"), "/../manifests/rbac.yaml");
    lab.kubectl(&["apply", "-f", rbac]).expect("apply RBAC");
    let kubeconfig = lab
        .service_account_kubeconfig("kube-system", "podroute")
        .expect("SA kubeconfig");
    let denied = lab.kubectl(&[
        "--kubeconfig",
        &kubeconfig.display().to_string(),
        "get",
        "pods",
        "-A",
    ]);
    assert!(denied.is_err(), "the ServiceAccount must not read pods");
    let nodes = lab.nodes().to_vec();
    let mut agents: Vec<LabProcess> = nodes
        .iter()
        .map(|n| spawn_agent_with(&lab, n, &n.name, &kubeconfig, &[]))
        .collect();
    wait_converged(&lab, &nodes, &nodes, &agents);
    for agent in &mut agents {
        let _ = agent.terminate();
    }
}

/// A node's IP changes: its agent exits with a clear message (its BGP listener, local address
/// and router ID came from the old IP) and leaves its kernel routes; restarted, as the
/// DaemonSet would, it peers on the new address and the other node routes via it.
#[test]
#[ignore = "needs root: run by make test"]
fn a_node_ip_change_restarts_the_agent_on_the_new_address() {
    let lab = Lab::up(&LabConfig::new(lab_name("i"), 2)).expect("lab up");
    let nodes = lab.nodes().to_vec();
    let mut agents: Vec<LabProcess> = nodes.iter().map(|n| spawn_agent(&lab, n)).collect();
    wait_converged(&lab, &nodes, &nodes, &agents);

    lab.exec_ok(
        "node1",
        &["ip", "addr", "add", "198.18.0.101/24", "dev", "eth0"],
    )
    .expect("second address on node1");
    lab.kubectl(&[
        "patch",
        "node",
        "node1",
        "--subresource=status",
        "--type=merge",
        "-p",
        r#"{"status":{"addresses":[{"type":"InternalIP","address":"198.18.0.101"}]}}"#,
    ])
    .expect("change node1's InternalIP");
    let exited = agents[0]
        .wait_timeout(CONVERGE)
        .expect("node1's agent must exit");
    assert!(!exited.success());
    let log = agents[0].log();
    assert!(
        log.contains("the node's IP changed from 198.18.0.1 to 198.18.0.101"),
        "{log}"
    );
    assert!(
        podroute_routes(&lab, "node1").contains("10.244.2.0/24 via 198.18.0.2"),
        "node1's routes went with its agent"
    );

    agents[0] = spawn_agent(&lab, &nodes[0]);
    wait_for("node2 to route node1's pod CIDR via its new IP", || {
        podroute_routes(&lab, "node2").contains("10.244.1.0/24 via 198.18.0.101")
    });
    wait_for("node1 to keep node2's route", || {
        podroute_routes(&lab, "node1").contains("10.244.2.0/24 via 198.18.0.2")
    });
}
