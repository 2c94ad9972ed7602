//! Two labs with the same address plan run side by side without colliding.

mod common;

use common::{TestResult, assert_gone, unique};
use podroute_lab::{Lab, LabConfig, Tor};

#[test]
#[ignore = "needs root: run by make test"]
fn two_labs_run_side_by_side_and_one_goes_down_alone() -> TestResult {
    let a_name = unique("laba");
    let b_name = unique("labb");
    let (a, b) = std::thread::scope(|s| {
        let a = s.spawn(|| Lab::up(&LabConfig::new(&a_name, 2).tor(Tor::Bird)));
        let b = s.spawn(|| Lab::up(&LabConfig::new(&b_name, 2).tor(Tor::Bird)));
        (a.join(), b.join())
    });
    let a = a.map_err(|_| "lab a panicked")??;
    let b = b.map_err(|_| "lab b panicked")??;

    for lab in [&a, &b] {
        assert_eq!(
            lab.kubectl(&["get", "nodes", "-o", "name"])?,
            "node/node1\nnode/node2\n"
        );
        assert!(lab.ping_from("node1", "198.18.0.2".parse()?)?);
    }
    // Each lab's apiserver has its own etcd: a Node made in one is not in the other.
    a.kubectl(&["label", "node", "node1", "only-in=a"])?;
    let b_labels = b.kubectl(&["get", "node", "node1", "-o", "jsonpath={.metadata.labels}"])?;
    assert!(!b_labels.contains("only-in"), "{b_labels}");

    a.down()?;
    assert_gone(&a_name);
    // b is untouched by a's teardown.
    assert_eq!(
        b.kubectl(&["get", "nodes", "-o", "name"])?,
        "node/node1\nnode/node2\n"
    );
    assert!(b.ping_from("node2", "198.18.0.1".parse()?)?);
    assert!(
        b.router()
            .ok_or("b has a router")?
            .sessions_text()?
            .contains("node2_v4")
    );
    b.down()?;
    assert_gone(&b_name);
    Ok(())
}
