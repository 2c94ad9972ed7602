//! Kernel test of the sweep that destroys pod veths released by the CNI plugin's DEL whose
//! namespace lives on (needs root; private namespaces).

mod common;

use common::Netns;
use podroute_agent::veth_sweep::{ReleasedVethSweep, SweepReport};

fn has_link(ns: &Netns, name: &str) -> bool {
    ns.ip(&["-o", "link", "show"]).lines().any(|l| {
        l.split(": ")
            .nth(1)
            .is_some_and(|n| n.split('@').next() == Some(name))
    })
}

/// A veth pair `host` (node) / `pod_if` (pod namespace).
fn veth(node: &Netns, host: &str, pod: &Netns, pod_if: &str) {
    node.ip(&[
        "link", "add", host, "type", "veth", "peer", "name", pod_if, "netns", &pod.name,
    ]);
}

#[tokio::test]
#[ignore = "needs root: run by make test"]
async fn released_veths_are_destroyed_one_pass_after_they_are_seen() {
    let node = Netns::new();
    let pod = Netns::new();
    veth(&node, "prreleased", &pod, "eth0");
    node.ip(&[
        "link",
        "set",
        "prreleased",
        "down",
        "alias",
        "podroute:released",
    ]);
    // A live pod veth and a link with another alias are never touched.
    veth(&node, "prlive", &pod, "eth1");
    node.ip(&["link", "set", "prlive", "up"]);
    veth(&node, "prother", &pod, "eth2");
    node.ip(&["link", "set", "prother", "alias", "podroute:something-else"]);

    let mut sweep = ReleasedVethSweep::new(node.netlink().await);
    let first = sweep.sweep().await.expect("first pass");
    assert_eq!(
        first,
        SweepReport {
            destroyed: vec![],
            waiting: 1
        }
    );
    assert!(has_link(&node, "prreleased"), "destroyed at first sight");

    let second = sweep.sweep().await.expect("second pass");
    assert_eq!(second.destroyed, vec!["prreleased".to_owned()]);
    assert!(!has_link(&node, "prreleased"));
    assert!(!has_link(&pod, "eth0"), "the pod side went with it");
    for (ns, name) in [
        (&node, "prlive"),
        (&node, "prother"),
        (&pod, "eth1"),
        (&pod, "eth2"),
    ] {
        assert!(has_link(ns, name), "{name} was destroyed");
    }

    // A pair released after the last pass waits one more pass.
    node.ip(&[
        "link",
        "set",
        "prlive",
        "down",
        "alias",
        "podroute:released",
    ]);
    let third = sweep.sweep().await.expect("third pass");
    assert_eq!((third.destroyed.len(), third.waiting), (0, 1));
    let fourth = sweep.sweep().await.expect("fourth pass");
    assert_eq!(fourth.destroyed, vec!["prlive".to_owned()]);
    assert!(has_link(&node, "prother"));

    // Seen released, then replaced by a live veth of the same name (an ADD for the same
    // container) before the next pass: the sweep goes by interface index, so the new one stays.
    veth(&node, "prreadded", &pod, "eth3");
    node.ip(&[
        "link",
        "set",
        "prreadded",
        "down",
        "alias",
        "podroute:released",
    ]);
    let fifth = sweep.sweep().await.expect("fifth pass");
    assert_eq!((fifth.destroyed.len(), fifth.waiting), (0, 1));
    node.ip(&["link", "del", "prreadded"]);
    veth(&node, "prreadded", &pod, "eth3");
    node.ip(&["link", "set", "prreadded", "up"]);
    let sixth = sweep.sweep().await.expect("sixth pass");
    assert!(sixth.destroyed.is_empty(), "{sixth:?}");
    assert!(
        has_link(&node, "prreadded"),
        "the re-added veth was destroyed"
    );
}
