//! A fabric bigger than the host's neighbour table: 50 nodes (IPv4 and IPv6), the control plane
//! and the router on one segment need more neighbour entries than the 1,024 the kernel's
//! `gc_thresh3` lets all namespaces together hold dynamically. The lab writes them all as
//! permanent entries, which the kernel does not count, so every host reaches every other with
//! no ARP or neighbour discovery at all, and a node added to the running lab does too.

mod common;

use common::{TestResult, assert_gone, unique};
use podroute_lab::{Lab, LabConfig};

/// Nodes in the lab: 52 fabric hosts, about 5,300 entries with IPv6.
const NODES: u8 = 50;
/// What the default `gc_thresh3` would allow in dynamic entries, host-wide.
const GC_THRESH3_DEFAULT: usize = 1024;

/// The neighbour entries of `target`'s namespace, as `ip neigh show nud all` prints them.
fn neighbours(lab: &Lab, target: &str) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let out = lab.exec_ok(target, &["ip", "neigh", "show", "nud", "all"])?;
    Ok(out.lines().map(str::to_owned).collect())
}

/// Entries the kernel learnt by ARP or ND, the ones that count against `gc_thresh3`.
fn dynamic(entries: &[String]) -> Vec<&String> {
    const STATES: [&str; 6] = [
        "REACHABLE",
        "STALE",
        "DELAY",
        "PROBE",
        "INCOMPLETE",
        "FAILED",
    ];
    entries
        .iter()
        .filter(|e| STATES.iter().any(|s| e.split_whitespace().any(|w| w == *s)))
        .collect()
}

/// Pings every address in `addrs` once from `target`, all at once; returns those that did not
/// answer.
fn unreachable_from(
    lab: &Lab,
    target: &str,
    addrs: &[String],
) -> Result<Vec<String>, Box<dyn std::error::Error>> {
    let mut script = String::new();
    for a in addrs {
        script.push_str(&format!(
            "(ping -c 1 -W 3 -q {a} >/dev/null 2>&1 || echo {a}) & "
        ));
    }
    script.push_str("wait");
    let out = lab.exec_ok(target, &["sh", "-c", &script])?;
    Ok(out.split_whitespace().map(str::to_owned).collect())
}

/// Every fabric address of the lab but `target`'s own (IPv4 only from the control plane,
/// which has no IPv6 address).
fn others(lab: &Lab, target: &str) -> Vec<String> {
    let mut all = vec![
        ("fabric".to_owned(), "198.18.0.254".to_owned()),
        ("fabric".to_owned(), "fd00:198:18::fe".to_owned()),
        ("cp".to_owned(), "198.18.0.250".to_owned()),
    ];
    for n in lab.nodes() {
        for ip in n.ips() {
            all.push((n.name.clone(), ip.to_string()));
        }
    }
    all.into_iter()
        .filter(|(t, a)| t != target && !(target == "cp" && a.contains(':')))
        .map(|(_, a)| a)
        .collect()
}

/// Checks that every fabric host pings every other and learnt no neighbour on the way;
/// returns how many permanent entries the lab holds.
fn check_all_pairs(lab: &Lab) -> Result<usize, Box<dyn std::error::Error>> {
    let mut targets: Vec<String> = vec!["fabric".into(), "cp".into()];
    targets.extend(lab.nodes().iter().map(|n| n.name.clone()));
    let mut permanent = 0;
    for t in &targets {
        let missed = unreachable_from(lab, t, &others(lab, t))?;
        assert!(missed.is_empty(), "{t} cannot reach {missed:?}");
        let entries = neighbours(lab, t)?;
        assert_eq!(
            dynamic(&entries),
            Vec::<&String>::new(),
            "{t} needed ARP/ND for fabric hosts"
        );
        permanent += entries
            .iter()
            .filter(|e| e.split_whitespace().any(|w| w == "PERMANENT"))
            .count();
    }
    Ok(permanent)
}

#[test]
#[ignore = "needs root: run by make test"]
fn fifty_nodes_reach_each_other_without_the_hosts_neighbour_table() -> TestResult {
    let name = unique("bigfab");
    {
        let mut lab = Lab::up(&LabConfig::new(&name, NODES).ipv6(true))?;
        let permanent = check_all_pairs(&lab)?;
        assert!(
            permanent > GC_THRESH3_DEFAULT,
            "only {permanent} entries: the lab is too small to overflow the host's table"
        );

        // A node joining the running lab is everyone's neighbour at once, and they are its.
        let added = lab.add_node()?;
        let missed = unreachable_from(&lab, &added.name, &others(&lab, &added.name))?;
        assert!(missed.is_empty(), "{} cannot reach {missed:?}", added.name);
        for t in ["fabric", "cp", "node1", "node50"] {
            let missed = unreachable_from(&lab, t, &[added.ipv4.to_string()])?;
            assert!(missed.is_empty(), "{t} cannot reach the new node");
            assert_eq!(dynamic(&neighbours(&lab, t)?), Vec::<&String>::new(), "{t}");
        }
        assert_eq!(
            dynamic(&neighbours(&lab, &added.name)?),
            Vec::<&String>::new()
        );
    }
    assert_gone(&name);
    Ok(())
}
