//! The helpers other crates' end-to-end tests use: pods, processes, routes, faults, and
//! changing the cluster at runtime.

mod common;

use std::net::IpAddr;
use std::time::Duration;

use common::{TestResult, assert_gone, unique};
use podroute_lab::{Lab, LabConfig, Signal, Tor};
use serde_json::Value;

fn has_route(routes: &Value, dst: &str, protocol: &str) -> bool {
    routes.as_array().is_some_and(|a| {
        a.iter()
            .any(|r| r["dst"] == dst && r["protocol"] == protocol)
    })
}

#[test]
#[ignore = "needs root: run by make test"]
fn pods_ping_each_other_once_nodes_have_routes() -> TestResult {
    let name = unique("pods");
    let mut lab = Lab::up(&LabConfig::new(&name, 2).ipv6(true).control_plane(false))?;
    let a = lab.add_pod("node1", "a")?;
    let b = lab.add_pod("node1", "b")?;
    let c = lab.add_pod("node2", "c")?;
    assert_eq!(a.ipv4.to_string(), "10.244.1.10");
    assert_eq!(b.ipv4.to_string(), "10.244.1.11");
    assert_eq!(
        c.ipv6.map(|a| a.to_string()),
        Some("fd00:10:244:2::a".into())
    );

    // Another process (the CLI) sees the same pods.
    assert_eq!(lab.pods()?, vec![a.clone(), b.clone(), c.clone()]);

    // Same node: the node's host routes (protocol static) are enough.
    assert!(has_route(
        &lab.routes_json("node1")?,
        "10.244.1.10",
        "static"
    ));
    assert!(lab.ping(&a, b.ipv4));
    assert!(lab.ping(&a, "198.18.0.1".parse()?));
    // Across nodes nothing routes the pod CIDRs yet: that is podroute's job.
    assert!(!lab.ping(&a, c.ipv4));
    // What the agent will install, by hand here.
    lab.exec_ok(
        "node1",
        &["ip", "route", "add", "10.244.2.0/24", "via", "198.18.0.2"],
    )?;
    lab.exec_ok(
        "node2",
        &["ip", "route", "add", "10.244.1.0/24", "via", "198.18.0.1"],
    )?;
    lab.exec_ok(
        "node1",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:10:244:2::/64",
            "via",
            "fd00:198:18::2",
        ],
    )?;
    lab.exec_ok(
        "node2",
        &[
            "ip",
            "-6",
            "route",
            "add",
            "fd00:10:244:1::/64",
            "via",
            "fd00:198:18::1",
        ],
    )?;
    assert!(lab.ping(&a, c.ipv4));
    assert!(lab.ping(&a, c.ipv6.ok_or("c has IPv6")?));

    // Faults: a cut link, then a lossy one.
    lab.link_down("node2")?;
    assert!(!lab.ping(&a, c.ipv4));
    lab.link_up("node2")?;
    assert!(lab.ping(&a, c.ipv4));
    lab.netem_loss("node2", 100)?;
    assert!(!lab.ping(&a, c.ipv4));
    lab.netem_loss("node2", 30)?;
    let rules = lab.exec_ok(
        "node2",
        &["nft", "list", "table", "inet", "podroute_lab_loss"],
    )?;
    assert!(rules.contains("numgen random mod 100 < 30"), "{rules}");
    lab.clear_loss("node2")?;
    assert!(lab.ping(&a, c.ipv4));

    lab.remove_pod(&b)?;
    assert!(!has_route(
        &lab.routes_json("node1")?,
        "10.244.1.11",
        "static"
    ));
    drop(lab);
    assert_gone(&name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn processes_run_inside_their_node_and_stop_on_request() -> TestResult {
    let name = unique("procs");
    let lab = Lab::up(&LabConfig::new(&name, 1).control_plane(false))?;
    let mut p = lab.spawn(
        "node1",
        "sleeper",
        "sh",
        &["-c", "ip -br addr show eth0; exec sleep 300"],
        &[("X", "1")],
    )?;
    assert!(p.is_running());
    assert!(
        common::wait_until(Duration::from_secs(5), || p.log().contains("198.18.0.1/24")),
        "{}",
        p.log()
    );
    // Logs can be kept beyond the lab (Drop does it when a test panics).
    let saved = lab.save_logs()?;
    let copy = std::fs::read_to_string(saved.join("node1-sleeper.log"))?;
    std::fs::remove_dir_all(&saved)?;
    assert!(copy.contains("198.18.0.1/24"), "{copy}");
    p.kill(Signal::SIGKILL)?;
    assert!(p.wait_timeout(Duration::from_secs(5)).is_some());
    assert!(!p.is_running());

    // A process left running is stopped by down.
    let _left = lab.spawn("node1", "left", "sleep", &["300"], &[])?;
    drop(lab);
    assert_gone(&name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn nodes_and_node_objects_change_at_runtime() -> TestResult {
    let name = unique("runtime");
    let mut lab = Lab::up(&LabConfig::new(&name, 2).tor(Tor::Bird))?;
    let n3 = lab.add_node()?;
    assert_eq!(n3.name, "node3");
    assert!(lab.ping_from("node3", "198.18.0.1".parse()?)?);
    let ip = lab.kubectl(&[
        "get",
        "node",
        "node3",
        "-o",
        r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#,
    ])?;
    assert_eq!(ip, "198.18.0.3");
    let router = lab.router().ok_or("router")?;
    let node3: IpAddr = "198.18.0.3".parse()?;
    assert!(
        router
            .sessions(&lab.router_neighbors())?
            .iter()
            .any(|s| s.neighbor == node3),
        "{}",
        router.sessions_text()?
    );

    lab.set_pod_cidr("node2", &["10.244.42.0/24".parse()?])?;
    assert_eq!(
        lab.kubectl(&["get", "node", "node2", "-o", "jsonpath={.spec.podCIDRs}"])?,
        r#"["10.244.42.0/24"]"#
    );
    assert_eq!(lab.node("node2")?.pod_cidr_v4.to_string(), "10.244.42.0/24");

    lab.delete_node_object("node1")?;
    assert_eq!(
        lab.kubectl(&["get", "nodes", "-o", "name"])?,
        "node/node2\nnode/node3\n"
    );
    drop(lab);
    assert_gone(&name);
    Ok(())
}
