//! Running code inside a pod's network namespace.
//!
//! `setns(2)` changes the namespace of the calling *thread* only, so the work runs on a
//! dedicated scoped thread: the main thread (and its netlink socket) stays in the node's
//! namespace, and the namespace switch cannot leak into later code. Sockets and
//! `/proc/sys/net` files opened on that thread belong to the pod's namespace.

use nix::sched::{CloneFlags, setns};
use std::fs::File;
use std::io;
use std::path::Path;
use std::thread;

/// Why code could not be run in a namespace.
#[derive(Debug, thiserror::Error)]
pub enum NetnsError {
    /// The namespace file could not be opened (usually: it no longer exists).
    #[error("cannot open network namespace {path}: {source}")]
    Open {
        /// The netns path.
        path: String,
        /// The OS error.
        #[source]
        source: io::Error,
    },
    /// `setns` failed.
    #[error("cannot enter network namespace {path}: {source}")]
    Enter {
        /// The netns path.
        path: String,
        /// The OS error.
        #[source]
        source: nix::Error,
    },
    /// The worker thread panicked.
    #[error("the thread working in network namespace {0} panicked")]
    Panicked(String),
}

/// Opens a network namespace file (e.g. `/run/netns/x`, `/proc/PID/ns/net`).
pub fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| NetnsError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// Runs `f` on a fresh thread that has entered the network namespace `ns`.
pub fn run_in<T: Send>(
    ns: &File,
    path: &Path,
    f: impl FnOnce() -> T + Send,
) -> Result<T, NetnsError> {
    let name = path.display().to_string();
    thread::scope(|s| {
        let worker = s.spawn(|| {
            setns(ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
                path: name.clone(),
                source,
            })?;
            Ok(f())
        });
        worker
            .join()
            .unwrap_or_else(|_| Err(NetnsError::Panicked(name.clone())))
    })
}
