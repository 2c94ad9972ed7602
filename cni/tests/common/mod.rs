//! Shared helpers of the kernel tests: namespaces with Drop guards and a plugin runner.
//!
//! Every namespace is named `prcni-<pid>-<n>-<tag>` so parallel tests never collide, and is
//! deleted when its guard drops, also when a test fails. The plugin always runs inside a
//! "node" namespace (`ip netns exec`), never in the root namespace.
#![allow(dead_code, unreachable_pub)]

use serde_json::{Value, json};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::process::{Command, Output, Stdio};
use std::sync::atomic::{AtomicUsize, Ordering};

static NEXT: AtomicUsize = AtomicUsize::new(0);

/// The plugin binary under test.
pub const PLUGIN: &str = env!("CARGO_BIN_EXE_podroute");

/// A network namespace deleted on drop.
#[derive(Debug)]
pub struct Netns {
    pub name: String,
}

impl Netns {
    pub fn new(tag: &str) -> Self {
        let n = NEXT.fetch_add(1, Ordering::SeqCst);
        let name = format!("prcni-{}-{n}-{tag}", std::process::id());
        run("ip", &["netns", "add", &name]);
        let ns = Self { name };
        ns.sh(&["ip", "link", "set", "lo", "up"]);
        ns
    }

    pub fn path(&self) -> PathBuf {
        PathBuf::from("/run/netns").join(&self.name)
    }

    /// Runs a command in the namespace; panics with its output when it fails.
    pub fn sh(&self, args: &[&str]) -> String {
        let mut full = vec!["netns", "exec", &self.name];
        full.extend_from_slice(args);
        run("ip", &full)
    }

    /// Runs a command in the namespace and returns its raw output.
    pub fn try_sh(&self, args: &[&str]) -> Output {
        Command::new("ip")
            .args(["netns", "exec", &self.name])
            .args(args)
            .output()
            .expect("spawn ip netns exec")
    }

    /// Deletes the namespace now (a test of "netns already gone").
    pub fn delete(&self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip")
            .args(["netns", "del", &self.name])
            .stderr(Stdio::null())
            .status();
    }
}

pub fn run(cmd: &str, args: &[&str]) -> String {
    let out = Command::new(cmd).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{cmd} {args:?} failed: {}{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// A "node": a namespace holding the node's addresses (198.18.0.1, fd00:198:18::1 from the
/// lab plan) on its loopback (no dummy module needed), and a private IPAM data dir.
#[derive(Debug)]
pub struct Node {
    pub ns: Netns,
    pub data: tempfile::TempDir,
}

pub const NODE_V4: &str = "198.18.0.1";
pub const NODE_V6: &str = "fd00:198:18::1";

impl Node {
    pub fn new() -> Self {
        let ns = Netns::new("node");
        ns.sh(&["ip", "addr", "add", &format!("{NODE_V4}/32"), "dev", "lo"]);
        ns.sh(&[
            "ip",
            "-6",
            "addr",
            "add",
            &format!("{NODE_V6}/128"),
            "dev",
            "lo",
            "nodad",
        ]);
        ns.sh(&["sysctl", "-qw", "net.ipv4.ip_forward=1"]);
        Self {
            ns,
            data: tempfile::tempdir().expect("tempdir"),
        }
    }

    /// A podroute config for this node; dual-stack unless `v4_only`.
    pub fn conf(&self, version: &str, v4_only: bool) -> Value {
        let mut ranges = vec![json!({"subnet": "10.244.1.0/24"})];
        if !v4_only {
            ranges.push(json!({"subnet": "fd00:10:244:1::/64"}));
        }
        json!({
            "cniVersion": version,
            "name": "podroute-test",
            "type": "podroute",
            "ranges": ranges,
            "dataDir": self.data.path(),
        })
    }

    pub fn store_dir(&self) -> PathBuf {
        self.data.path().join("podroute-test")
    }

    /// Addresses recorded in the IPAM store.
    pub fn records(&self) -> Vec<String> {
        let Ok(dir) = std::fs::read_dir(self.store_dir()) else {
            return vec![];
        };
        let mut v: Vec<String> = dir
            .filter_map(|e| e.ok())
            .map(|e| e.file_name().to_string_lossy().into_owned())
            .filter(|n| n.parse::<std::net::IpAddr>().is_ok())
            .collect();
        v.sort();
        v
    }

    /// Links of the node whose names start with podroute's host veth prefix.
    pub fn host_veths(&self) -> Vec<String> {
        let out = self.ns.sh(&["ip", "-o", "link", "show"]);
        out.lines()
            .filter_map(|l| l.split(": ").nth(1))
            .map(|n| n.split('@').next().unwrap_or(n).to_owned())
            .filter(|n| n.starts_with("pr"))
            .collect()
    }

    /// `ip -j link show` of one node link, `None` when it does not exist.
    pub fn link(&self, name: &str) -> Option<Value> {
        let out = self.ns.try_sh(&["ip", "-j", "link", "show", "dev", name]);
        if !out.status.success() {
            return None;
        }
        let links: Value = serde_json::from_slice(&out.stdout).expect("ip -j link JSON");
        links.get(0).cloned()
    }

    /// Asserts that DEL released the host veth `name`: still there, down, marked with
    /// podroute's alias, and no route of the node goes through it.
    pub fn assert_released(&self, name: &str) {
        let link = self
            .link(name)
            .unwrap_or_else(|| panic!("host veth {name} is gone already"));
        let flags = link["flags"].as_array().expect("flags");
        assert!(
            !flags.iter().any(|f| f == "UP"),
            "{name} is still up: {link}"
        );
        assert_eq!(link["ifalias"], "podroute:released", "{link}");
        for family in ["-4", "-6"] {
            let routes = self.ns.sh(&["ip", family, "route", "show", "dev", name]);
            assert!(
                routes.trim().is_empty(),
                "routes left through {name}: {routes}"
            );
        }
    }

    /// Asserts that DEL released the pod side too: no `eth0` and no address but loopback's
    /// in the pod, the pod side renamed `px…` (the host veth's hash) and down.
    pub fn assert_pod_released(&self, pod: &Netns, host: &str) {
        let links = pod.sh(&["ip", "-o", "link", "show"]);
        assert!(!links.contains("eth0"), "eth0 left in the pod: {links}");
        let released = format!("px{}", &host[2..]);
        let link = pod.sh(&["ip", "-o", "link", "show", "dev", &released]);
        assert!(link.contains("state DOWN"), "{link}");
        let addrs = pod.sh(&["ip", "-o", "addr", "show"]);
        assert!(
            addrs.lines().all(|l| l.contains(" lo ")),
            "addresses left in the pod: {addrs}"
        );
    }

    /// Waits (up to 10 s) until no podroute host veth is left: the kernel destroys a
    /// released veth in the background once its pod's namespace is removed.
    pub fn wait_no_host_veths(&self) {
        let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
        while !self.host_veths().is_empty() {
            assert!(
                std::time::Instant::now() < deadline,
                "host veths left 10 s after their namespaces went: {:?}",
                self.host_veths()
            );
            std::thread::sleep(std::time::Duration::from_millis(20));
        }
    }

    /// Runs the plugin in the node namespace.
    pub fn plugin(
        &self,
        cmd: &str,
        conf: &Value,
        cid: Option<&str>,
        netns: Option<&Path>,
    ) -> Output {
        self.plugin_cmd(cmd, conf, cid, netns, &[])
            .wait_with_output()
            .expect("wait plugin")
    }

    /// Starts the plugin in the node namespace (stdin already written) with extra env vars.
    pub fn plugin_cmd(
        &self,
        cmd: &str,
        conf: &Value,
        cid: Option<&str>,
        netns: Option<&Path>,
        extra_env: &[(&str, &str)],
    ) -> std::process::Child {
        let mut c = Command::new("ip");
        c.args(["netns", "exec", &self.ns.name, PLUGIN])
            .env("CNI_COMMAND", cmd)
            .env("CNI_PATH", "/usr/lib/cni")
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped());
        if let Some(cid) = cid {
            c.env("CNI_CONTAINERID", cid).env("CNI_IFNAME", "eth0");
        }
        if let Some(ns) = netns {
            c.env("CNI_NETNS", ns);
        }
        for (k, v) in extra_env {
            c.env(k, v);
        }
        let mut child = c.spawn().expect("spawn plugin");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin
            .write_all(conf.to_string().as_bytes())
            .expect("write stdin");
        drop(stdin);
        child
    }
}

/// Parses the plugin's stdout, panicking with stderr when it failed.
pub fn ok_json(out: &Output) -> Value {
    assert!(
        out.status.success(),
        "plugin failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_slice(&out.stdout).expect("plugin printed JSON")
}

pub fn assert_ok(out: &Output) {
    assert!(
        out.status.success(),
        "plugin failed: {} {}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
}

/// The error object of a failed run.
pub fn err_json(out: &Output) -> Value {
    assert!(!out.status.success(), "plugin should have failed");
    serde_json::from_slice(&out.stdout).expect("error JSON on stdout")
}

/// Pings `dst` once from namespace `ns`; true when a reply came back.
pub fn ping(ns: &Netns, dst: &str) -> bool {
    ns.try_sh(&["ping", "-c", "1", "-W", "2", dst])
        .status
        .success()
}

/// The config with `prevResult` set (CHECK, chained DEL).
pub fn with_prev(conf: &Value, prev: &Value) -> Value {
    let mut c = conf.clone();
    c["prevResult"] = prev.clone();
    c
}
