//! The plugin as a process: what its entry point does without std's start-up (see `main.rs`).

use std::io::Write;
use std::process::{Command, Output, Stdio};

/// Runs `CNI_COMMAND=VERSION` with `stdout` as the plugin's standard output.
fn version(stdout: impl Into<Stdio>) -> Output {
    let mut child = Command::new(env!("CARGO_BIN_EXE_podroute"))
        .env_clear()
        .env("CNI_COMMAND", "VERSION")
        .stdin(Stdio::piped())
        .stdout(stdout)
        .stderr(Stdio::null())
        .spawn()
        .expect("spawn the plugin");
    child
        .stdin
        .take()
        .expect("stdin")
        .write_all(br#"{"cniVersion":"1.0.0"}"#)
        .expect("write the configuration");
    child.wait_with_output().expect("wait")
}

/// A runtime that stopped reading (its end of stdout closed) gets the plugin's exit status,
/// not a plugin killed by SIGPIPE half-way.
#[test]
fn a_closed_stdout_fails_the_write_without_killing_the_plugin() {
    let (reader, writer) = std::io::pipe().expect("pipe");
    drop(reader);
    let out = version(writer);
    assert_eq!(out.status.code(), Some(0), "{}", out.status);
}
