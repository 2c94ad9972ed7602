//! Running code inside a pod's network namespace.
//!
//! `setns(2)` changes the namespace of the calling *thread* only. [`run_in`] moves the calling
//! thread into the pod's namespace, runs the work there and moves it back before it returns
//! (also when the work panics), so the switch cannot leak into later code. Sockets opened
//! meanwhile (and `/proc/sys/net` files) belong to the pod's namespace and keep talking to it
//! after the thread is back; sockets opened before keep talking to the node's. The plugin
//! does this on its one thread: a fresh thread per switch cost more than the switch.

use nix::sched::{CloneFlags, setns};
use std::fs::File;
use std::io;
use std::path::Path;

/// This thread's own network namespace, to come back to.
const OWN_NAMESPACE: &str = "/proc/thread-self/ns/net";

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
}

/// Opens a network namespace file (e.g. `/run/netns/x`, `/proc/PID/ns/net`).
pub fn open(path: &Path) -> Result<File, NetnsError> {
    File::open(path).map_err(|source| NetnsError::Open {
        path: path.display().to_string(),
        source,
    })
}

/// Moves the thread back to the namespace it came from when dropped.
struct Return(File);

impl Drop for Return {
    fn drop(&mut self) {
        if let Err(e) = setns(&self.0, CloneFlags::CLONE_NEWNET) {
            // Going on would point the node-side work that follows at the pod's namespace.
            // The kernel refuses re-entering a namespace held open only on resource
            // exhaustion; the runtime retries a failed plugin call.
            eprintln!("podroute: cannot return to the node's network namespace: {e}");
            std::process::abort();
        }
    }
}

/// Runs `f` on the calling thread inside the network namespace `ns`, then returns the
/// thread to its own namespace.
pub fn run_in<T>(ns: &File, path: &Path, f: impl FnOnce() -> T) -> Result<T, NetnsError> {
    let home = open(Path::new(OWN_NAMESPACE))?;
    setns(ns, CloneFlags::CLONE_NEWNET).map_err(|source| NetnsError::Enter {
        path: path.display().to_string(),
        source,
    })?;
    let _back = Return(home);
    Ok(f())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_namespace_is_an_error_naming_it() {
        let e = open(Path::new("/run/netns/podroute-no-such-namespace")).expect_err("missing");
        assert!(e.to_string().contains("podroute-no-such-namespace"), "{e}");
    }

    #[test]
    #[ignore = "needs root: run by make test"]
    fn the_thread_comes_back_to_its_namespace_also_after_a_panic() {
        use std::os::unix::fs::MetadataExt;
        // On a thread of its own, so a failure cannot leave the test harness's threads in
        // another namespace.
        std::thread::spawn(|| {
            let current = || std::fs::metadata(OWN_NAMESPACE).expect("own netns").ino();
            let before = current();
            // The namespace to visit: made by a helper thread, alive while its file is open.
            let pod = std::thread::spawn(|| {
                nix::sched::unshare(CloneFlags::CLONE_NEWNET).expect("unshare");
                open(Path::new(OWN_NAMESPACE)).expect("new netns")
            })
            .join()
            .expect("helper thread");
            let inside = run_in(&pod, Path::new("pod"), current).expect("run_in");
            assert_ne!(inside, before, "the work ran in the other namespace");
            assert_eq!(current(), before, "and the thread came back");
            let panicked = std::panic::catch_unwind(|| {
                run_in(&pod, Path::new("pod"), || panic!("work failed"))
            });
            assert!(panicked.is_err());
            assert_eq!(current(), before, "back after a panic too");
        })
        .join()
        .expect("test thread");
    }
}
