//! Threads inside a lab namespace. A thread that joins a network namespace keeps it, and so do
//! the sockets it opens and the processes it starts; the rest of the harness stays in the
//! root namespace, which it never changes.

use std::fs::File;
use std::io::{self, Write};
use std::process::{Command, Stdio};
use std::thread::{self, JoinHandle};

use nix::sched::{CloneFlags, setns};

use crate::error::{BenchError, Result, io_err};

/// Moves the calling thread into network namespace `ns` (`/run/netns/<ns>`, as `ip netns`
/// names it).
pub fn enter(ns: &str) -> io::Result<()> {
    let file = File::open(format!("/run/netns/{ns}"))?;
    setns(&file, CloneFlags::CLONE_NEWNET).map_err(io::Error::from)
}

/// Runs `f` on a new thread named `name` inside network namespace `ns`.
pub fn spawn_in<T, F>(ns: &str, name: &str, f: F) -> io::Result<JoinHandle<io::Result<T>>>
where
    T: Send + 'static,
    F: FnOnce() -> io::Result<T> + Send + 'static,
{
    let ns = ns.to_owned();
    thread::Builder::new().name(name.to_owned()).spawn(move || {
        enter(&ns)?;
        f()
    })
}

/// Runs `ip [-n ns] -batch -` with `batch` on its stdin (one process for many commands); its
/// stderr is the error when it fails.
pub(crate) fn ip_batch(ns: Option<&str>, batch: &str) -> Result<()> {
    let mut c = Command::new("ip");
    if let Some(ns) = ns {
        c.args(["-n", ns]);
    }
    let mut child = c
        .args(["-batch", "-"])
        .stdin(Stdio::piped())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .spawn()
        .map_err(io_err("run ip -batch"))?;
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(batch.as_bytes())
            .map_err(io_err("write to ip -batch"))?;
    }
    let out = child.wait_with_output().map_err(io_err("wait ip -batch"))?;
    if out.status.success() {
        Ok(())
    } else {
        Err(BenchError::Failed(format!(
            "ip {}-batch: {}",
            ns.map(|n| format!("-n {n} ")).unwrap_or_default(),
            String::from_utf8_lossy(&out.stderr).trim()
        )))
    }
}
