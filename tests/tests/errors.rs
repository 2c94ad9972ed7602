//! Failures a user can meet say what to do in one line, exit non-zero, and leave nothing behind.

mod common;

use std::os::unix::fs::PermissionsExt;
use std::process::{Command, Output};

use common::{TestResult, assert_gone, unique};

const CLI: &str = env!("CARGO_BIN_EXE_podroute-lab");

fn stderr(out: &Output) -> String {
    String::from_utf8_lossy(&out.stderr).into_owned()
}

/// Asserts the command failed with exactly one line on stderr containing `needle`.
fn assert_one_line_error(out: &Output, needle: &str) {
    assert!(!out.status.success(), "succeeded: {}", stderr(out));
    let text = stderr(out);
    let lines: Vec<&str> = text
        .lines()
        .filter(|l| !l.starts_with("control-plane:"))
        .collect();
    assert_eq!(lines.len(), 1, "{lines:?}");
    assert!(lines[0].contains(needle), "{lines:?}");
}

#[test]
#[ignore = "needs root: run by make test"]
fn up_as_an_ordinary_user_asks_for_root() -> TestResult {
    let name = unique("notroot");
    let out = Command::new("setpriv")
        .args([
            "--reuid=65534",
            "--regid=65534",
            "--clear-groups",
            CLI,
            "up",
            "--name",
            &name,
        ])
        .output()?;
    assert_one_line_error(&out, "needs root");
    assert_gone(&name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn up_whose_api_server_cannot_start_cleans_up_after_itself() -> TestResult {
    let name = unique("apifail");
    // Real etcd and kubectl, and a kube-apiserver that fails the way a taken port makes it fail.
    let real = podroute_lab::control_plane::ControlPlaneBins::locate()?;
    let fake = std::env::temp_dir().join(format!("{name}-bin"));
    std::fs::create_dir_all(&fake)?;
    for b in ["etcd", "kubectl"] {
        let link = fake.join(b);
        let _ = std::fs::remove_file(&link);
        std::os::unix::fs::symlink(real.dir.join(b), link)?;
    }
    let apiserver = fake.join("kube-apiserver");
    std::fs::write(
        &apiserver,
        "#!/bin/sh\necho 'failed to listen on 198.18.0.250:6443: bind: address already in use' >&2\nexit 1\n",
    )?;
    std::fs::set_permissions(&apiserver, std::fs::Permissions::from_mode(0o755))?;

    let out = Command::new(CLI)
        .args(["up", "--nodes", "2", "--tor", "bird", "--name", &name])
        .env("PODROUTE_CP_BIN", &fake)
        .output()?;
    std::fs::remove_dir_all(&fake)?;
    assert_one_line_error(&out, "address already in use");
    assert_gone(&name);
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn commands_on_a_lab_that_is_not_up_say_how_to_start_it() -> TestResult {
    let name = unique("absent");
    for args in [
        &["status"][..],
        &["exec", "node1", "--", "true"][..],
        &["kubectl", "--", "get", "nodes"][..],
    ] {
        let out = Command::new(CLI)
            .args(&args[..1])
            .args(["--name", &name])
            .args(&args[1..])
            .output()?;
        assert_one_line_error(&out, &format!("podroute-lab up --name {name}"));
    }
    // down of a lab that does not exist is not an error.
    let out = Command::new(CLI).args(["down", "--name", &name]).output()?;
    assert!(out.status.success(), "{}", stderr(&out));
    Ok(())
}

#[test]
#[ignore = "needs root: run by make test"]
fn a_bad_lab_name_is_refused_before_anything_is_made() -> TestResult {
    let out = Command::new(CLI)
        .args(["up", "--name", "Bad_Name"])
        .output()?;
    assert_one_line_error(&out, "invalid lab name");
    Ok(())
}
