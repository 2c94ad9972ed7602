//! The CLI as a user drives it: up, status, add-pod, exec, spawn, kubectl, down.

mod common;

use std::process::{Command, Output};

use common::{TestResult, assert_gone, namespaces_of, unique};

const CLI: &str = env!("CARGO_BIN_EXE_podroute-lab");

fn lab(args: &[&str]) -> Result<Output, std::io::Error> {
    Command::new(CLI).args(args).output()
}

fn stdout(out: &Output) -> String {
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn ok(out: Output) -> Result<String, String> {
    if out.status.success() {
        Ok(stdout(&out))
    } else {
        Err(String::from_utf8_lossy(&out.stderr).into_owned())
    }
}

/// Removes the lab when the test ends, also when it fails half-way: the CLI's lab has no
/// `Lab` value whose drop would.
struct DownOnDrop(String);

impl Drop for DownOnDrop {
    fn drop(&mut self) {
        let _ = podroute_lab::Lab::down_by_name(&self.0);
    }
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_user_session_with_the_cli() -> TestResult {
    let name = unique("cli");
    let _cleanup = DownOnDrop(name.clone());
    let n = name.as_str();
    let up = ok(lab(&["up", "--nodes", "2", "--tor", "bird", "--name", n])?)?;
    // `up` shows the lab: nodes with addresses and pod CIDRs, the router and its sessions.
    for expected in [
        "node2",
        "198.18.0.2",
        "10.244.2.0/24",
        "node1_v4",
        "kubeconfig",
    ] {
        assert!(up.contains(expected), "{expected} missing from:\n{up}");
    }
    let status = ok(lab(&["status", "--name", n])?)?;
    assert!(
        status.contains("10.244.1.0/24") && status.contains("Ready"),
        "{status}"
    );

    let nodes = ok(lab(&[
        "kubectl", "--name", n, "--", "get", "nodes", "-o", "name",
    ])?)?;
    assert_eq!(nodes, "node/node1\nnode/node2\n");

    let a = ok(lab(&["add-pod", "--name", n, "node1", "a"])?)?;
    let b = ok(lab(&["add-pod", "--name", n, "node1", "b"])?)?;
    assert!(
        a.contains("10.244.1.10") && b.contains("10.244.1.11"),
        "{a}{b}"
    );
    ok(lab(&[
        "exec",
        "--name",
        n,
        "a",
        "--",
        "ping",
        "-c",
        "1",
        "-W",
        "1",
        "10.244.1.11",
    ])?)?;
    let status = ok(lab(&["status", "--name", n])?)?;
    assert!(
        status
            .lines()
            .any(|l| l.starts_with("b ") && l.contains("10.244.1.11")),
        "{status}"
    );
    // exec passes the command's exit status through.
    let failed = lab(&["exec", "--name", n, "node1", "--", "sh", "-c", "exit 7"])?;
    assert_eq!(failed.status.code(), Some(7));

    let spawned = ok(lab(&[
        "spawn", "--name", n, "node2", "sleeper", "--", "sleep", "300",
    ])?)?;
    assert!(spawned.contains("started pid"), "{spawned}");
    let pids = Command::new("ip")
        .args(["netns", "pids", &format!("{n}-node2")])
        .output()?;
    assert!(
        !stdout(&pids).trim().is_empty(),
        "the spawned process runs in node2"
    );

    let down = ok(lab(&["down", "--name", n])?)?;
    assert!(down.contains("removed 6 namespaces"), "{down}"); // fabric, cp, 2 nodes, 2 pods
    assert!(namespaces_of(n).is_empty());
    assert_gone(n);
    let again = ok(lab(&["down", "--name", n])?)?;
    assert!(again.contains("nothing to remove"), "{again}");
    Ok(())
}
