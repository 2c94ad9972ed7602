//! Threads inside a lab namespace. A thread that joins a network namespace keeps it, and so do
//! the sockets it opens and the processes it starts; the rest of the harness stays in the
//! root namespace, which it never changes.

use std::fs::File;
use std::io;
use std::thread::{self, JoinHandle};

use nix::sched::{CloneFlags, setns};

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
