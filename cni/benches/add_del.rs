//! ADD+DEL latency: `podroute` against Debian's `ptp` + `host-local` doing the same job (a
//! veth pair, a /32 for the pod, a default route, a host route) on the same machine, in one
//! run, iterations interleaved so both see the same noise. Needs root.
//!
//! `cargo bench -p podroute-cni --bench add_del` (`BENCH_ITERATIONS`, default 200;
//! `BENCH_DUAL_STACK=1` gives both plugins an IPv6 range too).
//!
//! The bench process enters a private "node" namespace itself (setns on its only thread), so
//! the plugins it spawns inherit it directly: no `ip netns exec` in the measured time.

use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODROUTE: &str = env!("CARGO_BIN_EXE_podroute");
const PTP: &str = "/usr/lib/cni/ptp";

/// A namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("prcni-bench-{}-{tag}", std::process::id());
        let ok = Command::new("ip")
            .args(["netns", "add", &name])
            .status()
            .is_ok_and(|s| s.success());
        assert!(ok, "ip netns add {name} failed (run as root)");
        Self(name)
    }
    fn path(&self) -> String {
        format!("/run/netns/{}", self.0)
    }
}

impl Drop for Netns {
    fn drop(&mut self) {
        let _ = Command::new("ip").args(["netns", "del", &self.0]).status();
    }
}

struct Plugin {
    name: &'static str,
    bin: &'static str,
    conf: Value,
}

/// Runs one plugin command; returns its wall time.
fn invoke(p: &Plugin, cmd: &str, cid: &str, netns: &str) -> Duration {
    let start = Instant::now();
    let mut child = Command::new(p.bin)
        .env_clear()
        .env("CNI_COMMAND", cmd)
        .env("CNI_CONTAINERID", cid)
        .env("CNI_NETNS", netns)
        .env("CNI_IFNAME", "eth0")
        .env("CNI_PATH", "/usr/lib/cni")
        .env("PATH", "/usr/sbin:/usr/bin:/sbin:/bin")
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("spawn plugin");
    if let Some(mut stdin) = child.stdin.take() {
        stdin
            .write_all(p.conf.to_string().as_bytes())
            .expect("stdin");
    }
    let out = child.wait_with_output().expect("wait plugin");
    let elapsed = start.elapsed();
    assert!(
        out.status.success(),
        "{} {cmd} failed: {}{}",
        p.name,
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    elapsed
}

fn percentile(sorted: &[Duration], p: f64) -> Duration {
    let idx = ((sorted.len() as f64 - 1.0) * p).round() as usize;
    sorted[idx.min(sorted.len() - 1)]
}

#[derive(Default)]
struct Samples {
    add: Vec<Duration>,
    del: Vec<Duration>,
    total: Vec<Duration>,
}

fn stats(v: &mut [Duration]) -> [Duration; 3] {
    v.sort();
    [percentile(v, 0.5), percentile(v, 0.9), percentile(v, 0.99)]
}

fn ms(d: Duration) -> f64 {
    d.as_secs_f64() * 1e3
}

fn main() {
    // `cargo bench` passes `--bench`; `cargo test --benches` does not, and must not spend
    // seconds creating veths.
    if !std::env::args().any(|a| a == "--bench") {
        return;
    }
    if !nix::unistd::Uid::effective().is_root() {
        eprintln!("add_del bench needs root (network namespaces); skipped");
        return;
    }
    let iterations: usize = std::env::var("BENCH_ITERATIONS")
        .ok()
        .and_then(|s| s.parse().ok())
        .unwrap_or(200);
    let node = Netns::new("node");
    let pod = Netns::new("pod");
    let data = tempfile::tempdir().expect("tempdir");
    let node_ns = File::open(node.path()).expect("open node netns");
    setns(&node_ns, CloneFlags::CLONE_NEWNET).expect("enter node netns");

    let dual = std::env::var("BENCH_DUAL_STACK").is_ok_and(|v| v == "1");
    let mut podroute_ranges = vec![json!({"subnet": "10.244.1.0/24"})];
    let mut ptp_ranges = vec![json!([{"subnet": "10.245.1.0/24"}])];
    let mut ptp_routes = vec![json!({"dst": "0.0.0.0/0"})];
    if dual {
        podroute_ranges.push(json!({"subnet": "fd00:10:244:1::/64"}));
        ptp_ranges.push(json!([{"subnet": "fd00:10:245:1::/64"}]));
        ptp_routes.push(json!({"dst": "::/0"}));
    }
    let plugins = [
        Plugin {
            name: "podroute",
            bin: PODROUTE,
            conf: json!({
                "cniVersion": "1.0.0", "name": "bench-podroute", "type": "podroute", "mtu": 1500,
                "ranges": podroute_ranges, "dataDir": data.path(),
            }),
        },
        Plugin {
            name: "ptp+host-local",
            bin: PTP,
            conf: json!({
                "cniVersion": "1.0.0", "name": "bench-ptp", "type": "ptp", "ipMasq": false, "mtu": 1500,
                "ipam": {
                    "type": "host-local", "dataDir": data.path(),
                    "ranges": ptp_ranges,
                    "routes": ptp_routes,
                },
            }),
        },
    ];
    let mut samples: Vec<Samples> = plugins.iter().map(|_| Samples::default()).collect();
    let warmup = 10;
    for i in 0..iterations + warmup {
        for (p, s) in plugins.iter().zip(samples.iter_mut()) {
            let cid = format!("bench-{i}");
            let add = invoke(p, "ADD", &cid, &pod.path());
            let del = invoke(p, "DEL", &cid, &pod.path());
            if i >= warmup {
                s.add.push(add);
                s.del.push(del);
                s.total.push(add + del);
            }
        }
    }

    let family = if dual { "dual-stack" } else { "IPv4" };
    println!("ADD+DEL latency, {family}, {iterations} iterations each (ms): p50 / p90 / p99");
    let mut totals = Vec::new();
    for (p, s) in plugins.iter().zip(samples.iter_mut()) {
        let [a50, a90, a99] = stats(&mut s.add);
        let [d50, d90, d99] = stats(&mut s.del);
        let [t50, t90, t99] = stats(&mut s.total);
        println!(
            "{:>15}  ADD {:6.2} {:6.2} {:6.2}  DEL {:6.2} {:6.2} {:6.2}  ADD+DEL {:6.2} {:6.2} {:6.2}",
            p.name,
            ms(a50),
            ms(a90),
            ms(a99),
            ms(d50),
            ms(d90),
            ms(d99),
            ms(t50),
            ms(t90),
            ms(t99)
        );
        totals.push((ms(a50), ms(t50), ms(t90), ms(t99)));
    }
    let (ours, theirs) = (totals[0], totals[1]);
    println!(
        "ptp+host-local / podroute: ADD p50 {:.2}x, ADD+DEL p50 {:.2}x, p90 {:.2}x, p99 {:.2}x",
        theirs.0 / ours.0,
        theirs.1 / ours.1,
        theirs.2 / ours.2,
        theirs.3 / ours.3
    );
}
