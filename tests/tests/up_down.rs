//! `up` builds what the issue promises and `down` removes all of it, leaving the root
//! namespace byte-identical.

mod common;

use common::{TestResult, assert_gone, root_snapshot, unique};
use podroute_lab::{Lab, LabConfig, Tor};
use serde_json::Value;

#[test]
#[ignore = "needs root: run by make test"]
fn up_makes_nodes_with_addresses_and_pod_cidrs_and_down_removes_everything() -> TestResult {
    let name = unique("updown");
    let before = root_snapshot();
    let lab = Lab::up(&LabConfig::new(&name, 3).tor(Tor::Bird))?;

    // kubectl get nodes: three nodes with their InternalIPs and pod CIDRs.
    let nodes: Value = serde_json::from_str(&lab.kubectl(&["get", "nodes", "-o", "json"])?)?;
    let items = nodes["items"].as_array().ok_or("no items")?;
    assert_eq!(items.len(), 3, "{nodes}");
    for (i, item) in items.iter().enumerate() {
        let i = i + 1;
        assert_eq!(item["metadata"]["name"], format!("node{i}"));
        assert_eq!(item["spec"]["podCIDR"], format!("10.244.{i}.0/24"));
        assert_eq!(
            item["spec"]["podCIDRs"],
            serde_json::json!([format!("10.244.{i}.0/24")])
        );
        let internal: Vec<&Value> = item["status"]["addresses"]
            .as_array()
            .ok_or("no addresses")?
            .iter()
            .filter(|a| a["type"] == "InternalIP")
            .map(|a| &a["address"])
            .collect();
        assert_eq!(internal, vec![&Value::from(format!("198.18.0.{i}"))]);
    }
    // The wide listing a user reads shows the InternalIPs too.
    let wide = lab.kubectl(&["get", "nodes", "-o", "wide"])?;
    assert!(wide.contains("198.18.0.3"), "{wide}");

    // Nodes reach each other over the fabric, and the API server from their namespace.
    assert!(lab.ping_from("node1", "198.18.0.2".parse()?)?);
    assert!(lab.ping_from("node3", "198.18.0.250".parse()?)?);
    // Nothing was added to the root namespace while the lab runs.
    assert_eq!(
        root_snapshot(),
        before,
        "the root namespace changed during up"
    );

    let report = lab.down()?;
    assert_eq!(report.namespaces.len(), 5, "{report:?}"); // fabric, cp, 3 nodes
    assert!(
        report.processes.len() >= 3,
        "etcd, kube-apiserver and bird were stopped: {report:?}"
    );
    assert_gone(&name);
    assert_eq!(
        root_snapshot(),
        before,
        "the root namespace differs after down"
    );
    // down is idempotent.
    assert!(Lab::down_by_name(&name)?.was_empty());
    Ok(())
}

/// A Node object's InternalIPs, space-separated.
fn internal_ips(lab: &Lab, node: &str) -> podroute_lab::Result<String> {
    lab.kubectl(&[
        "get",
        "node",
        node,
        "-o",
        r#"jsonpath={.status.addresses[?(@.type=="InternalIP")].address}"#,
    ])
}

#[test]
#[ignore = "needs root: run by make test"]
fn ipv6_lab_gives_nodes_dual_stack_addresses_and_pod_cidrs() -> TestResult {
    let name = unique("v6");
    let lab = Lab::up(&LabConfig::new(&name, 2).ipv6(true))?;
    let cidrs = lab.kubectl(&["get", "node", "node2", "-o", "jsonpath={.spec.podCIDRs}"])?;
    assert_eq!(cidrs, r#"["10.244.2.0/24","fd00:10:244:2::/64"]"#);
    let ips = internal_ips(&lab, "node2")?;
    assert_eq!(ips, "198.18.0.2 fd00:198:18::2");
    assert!(lab.ping_from("node1", "fd00:198:18::2".parse()?)?);
    drop(lab);
    assert_gone(&name);
    Ok(())
}

/// Two racks: node2 on the second rack's own segment and subnet (its InternalIPs there),
/// reaching node1 and the control plane through the fabric namespace, one hop (its ping's
/// reply TTL is one less than from a neighbour on its own segment).
#[test]
#[ignore = "needs root: run by make test"]
fn a_two_rack_lab_puts_the_second_rack_on_its_own_subnet_one_hop_away() -> TestResult {
    let name = unique("racks");
    let lab = Lab::up(&LabConfig::new(&name, 2).racks(2).ipv6(true))?;
    let ips = internal_ips(&lab, "node2")?;
    assert_eq!(ips, "198.18.1.2 fd00:198:18:1::2");
    let reply_ttl = |from: &str, to: &str| -> Result<String, Box<dyn std::error::Error>> {
        let out = lab.exec_ok(from, &["ping", "-c", "1", "-W", "2", to])?;
        Ok(out
            .split_whitespace()
            .find_map(|w| w.strip_prefix("ttl=").or_else(|| w.strip_prefix("hlim=")))
            .ok_or_else(|| format!("no TTL in {out}"))?
            .to_owned())
    };
    assert_eq!(reply_ttl("node2", "198.18.1.254")?, "64", "own segment");
    for far in ["198.18.0.1", "198.18.0.250", "fd00:198:18::1"] {
        assert_eq!(reply_ttl("node2", far)?, "63", "{far} is one hop away");
    }
    drop(lab);
    assert_gone(&name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_second_up_with_the_same_name_is_refused_and_leaves_the_first_lab_alone() -> TestResult {
    let name = unique("twice");
    let lab = Lab::up(&LabConfig::new(&name, 1).control_plane(false))?;
    let err = Lab::up(&LabConfig::new(&name, 1).control_plane(false)).expect_err("second up");
    assert!(err.to_string().contains("already up"), "{err}");
    assert!(
        lab.ping_from("node1", "198.18.0.254".parse()?)?,
        "the first lab still works"
    );
    drop(lab);
    assert_gone(&name);
    Ok(())
}
