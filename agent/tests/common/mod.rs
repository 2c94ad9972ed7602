//! Helpers for root tests: a private network namespace and a netlink handle inside it.

#![allow(dead_code, unreachable_pub)]

use std::fs::File;
use std::process::Command;
use std::sync::atomic::{AtomicU32, Ordering};

static NEXT: AtomicU32 = AtomicU32::new(0);

/// A network namespace named `pra-<pid>-<n>`, deleted on drop (even when a test fails).
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new() -> Self {
        let name = format!(
            "pra-{}-{}",
            std::process::id(),
            NEXT.fetch_add(1, Ordering::SeqCst)
        );
        let status = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .expect("run ip");
        assert!(status.success(), "ip netns add {name}");
        let ns = Self { name };
        ns.ip(&["link", "set", "lo", "up"]);
        ns
    }

    /// A namespace with a node's fabric link: `fabric0` (198.18.0.1/24), one end of a veth
    /// pair whose peer end stays in the namespace (the dummy module may be missing). No
    /// link-local addresses: they would appear a moment later (after DAD) and make
    /// comparisons of the routing table racy.
    pub fn with_fabric() -> Self {
        let ns = Self::new();
        ns.ip(&[
            "link", "add", "fabric0", "type", "veth", "peer", "name", "fabric0p",
        ]);
        for link in ["fabric0p", "fabric0"] {
            ns.ip(&["link", "set", link, "addrgenmode", "none"]);
            ns.ip(&["link", "set", link, "up"]);
        }
        ns.ip(&["addr", "add", "198.18.0.1/24", "dev", "fabric0"]);
        ns
    }

    /// Runs `ip -n <ns> args...`, panics on failure, returns stdout.
    pub fn ip(&self, args: &[&str]) -> String {
        let out = Command::new("ip")
            .arg("-n")
            .arg(&self.name)
            .args(args)
            .output()
            .expect("run ip");
        assert!(
            out.status.success(),
            "ip -n {} {}: {}",
            self.name,
            args.join(" "),
            String::from_utf8_lossy(&out.stderr)
        );
        String::from_utf8_lossy(&out.stdout).into_owned()
    }

    /// Opens an rtnetlink connection whose socket lives in this namespace.
    pub async fn netlink(&self) -> rtnetlink::Handle {
        let path = format!("/run/netns/{}", self.name);
        let runtime = tokio::runtime::Handle::current();
        // setns() changes only the calling thread, so a short-lived thread enters the
        // namespace, creates the socket (which stays bound to it) and exits.
        let (connection, handle, _) = std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let _guard = runtime.enter();
            rtnetlink::new_connection().expect("netlink socket")
        })
        .join()
        .expect("netns thread");
        tokio::spawn(connection);
        handle
    }
}

impl Netns {
    /// Runs `f` on a short-lived thread inside this namespace, with the current tokio runtime
    /// entered: sockets `f` opens (e.g. a `RouteProgrammer`'s) stay bound to the namespace.
    pub fn enter<T: Send + 'static>(&self, f: impl FnOnce() -> T + Send + 'static) -> T {
        let path = format!("/run/netns/{}", self.name);
        let runtime = tokio::runtime::Handle::current();
        std::thread::spawn(move || {
            let file = File::open(&path).expect("open netns");
            nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
            let _guard = runtime.enter();
            f()
        })
        .join()
        .expect("netns thread")
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .status();
    }
}

/// Runs `scenario` on a tokio runtime whose threads all live in a fresh network namespace.
pub fn in_private_netns(scenario: impl std::future::Future<Output = ()> + Send + 'static) {
    let ns = Netns::new();
    let path = format!("/run/netns/{}", ns.name);
    let result = std::thread::spawn(move || {
        let file = std::fs::File::open(&path).expect("open netns");
        nix::sched::setns(file, nix::sched::CloneFlags::CLONE_NEWNET).expect("setns");
        // Worker threads are created from this thread and so start in the same namespace.
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
            .expect("runtime");
        // Guard the premise: a worker thread is in the private namespace, not the host's.
        let expected = format!(
            "net:[{}]",
            std::fs::metadata(&path)
                .map(|m| std::os::unix::fs::MetadataExt::ino(&m))
                .expect("netns inode")
        );
        let task = runtime.spawn(async { std::fs::read_link("/proc/thread-self/ns/net") });
        let on_worker = runtime.block_on(task).expect("task").expect("readlink");
        assert_eq!(on_worker.to_string_lossy(), expected);
        runtime.block_on(scenario);
    })
    .join();
    drop(ns);
    if let Err(panic) = result {
        std::panic::resume_unwind(panic);
    }
}
