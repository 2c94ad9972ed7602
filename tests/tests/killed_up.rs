//! `down` cleans up after an `up` that was killed half way (kill -9 of the CLI).

mod common;

use std::process::Command;
use std::time::Duration;

use common::{TestResult, assert_gone, namespaces_of, unique, wait_until};

const CLI: &str = env!("CARGO_BIN_EXE_podroute-lab");

/// Starts `up`, waits for `ready`, kills the CLI with SIGKILL, then runs `down`.
fn kill_up_then_down(name: &str, ready: impl Fn() -> bool) -> TestResult {
    let mut up = Command::new(CLI)
        .args(["up", "--nodes", "2", "--tor", "bird", "--name", name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()?;
    let reached = wait_until(Duration::from_secs(60), &ready);
    up.kill()?; // SIGKILL: no chance to clean up
    up.wait()?;
    assert!(
        reached,
        "up never reached the point where the test kills it"
    );

    let down = Command::new(CLI).args(["down", "--name", name]).output()?;
    assert!(
        down.status.success(),
        "{}",
        String::from_utf8_lossy(&down.stderr)
    );
    assert_gone(name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn down_after_up_was_killed_while_the_api_server_started() -> TestResult {
    let name = unique("killcp");
    let pid_file = podroute_lab::names::lab_root()
        .join(&name)
        .join("pids/kube-apiserver.pid");
    kill_up_then_down(&name, || pid_file.exists())
}

#[test]
#[ignore = "needs root: run by make test"]
fn down_after_up_was_killed_while_wiring_nodes() -> TestResult {
    let name = unique("killnet");
    let fabric = format!("{name}-fabric");
    kill_up_then_down(&name, || namespaces_of(&name).contains(&fabric))
}

#[test]
#[ignore = "needs root: run by make test"]
fn ctrl_c_during_up_removes_the_half_built_lab() -> TestResult {
    let name = unique("sigint");
    let pid_file = podroute_lab::names::lab_root()
        .join(&name)
        .join("pids/etcd.pid");
    let up = Command::new(CLI)
        .args(["up", "--nodes", "2", "--tor", "bird", "--name", &name])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()?;
    let reached = wait_until(Duration::from_secs(60), || pid_file.exists());
    let pid = nix::unistd::Pid::from_raw(i32::try_from(up.id())?);
    nix::sys::signal::kill(pid, nix::sys::signal::Signal::SIGINT)?;
    let out = up.wait_with_output()?;
    assert!(reached, "up never started etcd");
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("interrupted"), "{stderr}");
    // No `down` here: up removed everything itself.
    assert_gone(&name);
    Ok(())
}
