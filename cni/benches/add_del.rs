//! ADD+DEL latency: `podroute` against Debian's `ptp` + `host-local` doing the same job (a
//! veth pair, a /32 for the pod, a default route, a host route) on the same machine, in one
//! run, iterations interleaved so both see the same noise. Needs root.
//!
//! `cargo bench -p podroute-cni --bench add_del` (`BENCH_ITERATIONS`, default 200;
//! `BENCH_DUAL_STACK=1` gives both plugins an IPv6 range too).
//!
//! Each iteration does what a runtime does for one pod: a fresh network namespace (not
//! timed), ADD, DEL, then the namespace is removed. ADD and DEL are timed as the runtime
//! waits for them. A third figure, "gone", is the time from the start of DEL until the host
//! veth no longer exists, including the namespace removal: `ptp` destroys the veth inside DEL,
//! podroute leaves that to the namespace teardown (see `cni/src/release.rs`), so this shows
//! what the deferral costs in total. Pods come and go one at a time: the kernel batching many
//! namespace teardowns under pod churn is not measured here.
//!
//! The bench process enters a private "node" namespace itself (setns on its only thread), so
//! the plugins it spawns inherit it directly: no `ip netns exec` in the measured time.

use nix::mount::{MntFlags, umount2};
use nix::net::if_::if_nametoindex;
use nix::sched::{CloneFlags, setns};
use serde_json::{Value, json};
use std::fs::File;
use std::io::Write;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

const PODROUTE: &str = env!("CARGO_BIN_EXE_podroute");
const PTP: &str = "/usr/lib/cni/ptp";
/// Pause after each pod's namespace removal (not timed).
const SETTLE: Duration = Duration::from_millis(30);

/// A namespace deleted on drop.
struct Netns(String);

impl Netns {
    fn new(tag: &str) -> Self {
        let name = format!("prcni-bench-{}-{tag}", std::process::id());
        Self::named(name)
    }

    fn named(name: String) -> Self {
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
        // What `ip netns del` does, in-process so that removing it costs no process start:
        // the mount is the last reference, so the kernel tears the namespace down.
        let path = self.path();
        if umount2(path.as_str(), MntFlags::MNT_DETACH).is_ok() {
            let _ = std::fs::remove_file(&path);
        }
    }
}

/// Waits until no link called `name` exists in the bench's (node) namespace.
fn wait_gone(name: &str) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while if_nametoindex(name).is_ok() {
        assert!(
            Instant::now() < deadline,
            "{name} still exists 10 s after DEL"
        );
        std::thread::sleep(Duration::from_micros(200));
    }
}

struct Plugin {
    name: &'static str,
    bin: &'static str,
    conf: Value,
}

/// Runs one plugin command; returns its wall time and its stdout.
fn invoke(p: &Plugin, cmd: &str, cid: &str, netns: &str) -> (Duration, Vec<u8>) {
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
    (elapsed, out.stdout)
}

/// The host-side interface of an ADD result (the one without a sandbox).
fn host_veth(result: &[u8]) -> String {
    let v: Value = serde_json::from_slice(result).expect("ADD printed JSON");
    v["interfaces"]
        .as_array()
        .and_then(|ifs| ifs.iter().find(|i| i.get("sandbox").is_none()))
        .and_then(|i| i["name"].as_str())
        .expect("a host interface in the ADD result")
        .to_owned()
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
    gone: Vec<Duration>,
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
    assert!(iterations > 0, "BENCH_ITERATIONS must be at least 1");
    let node = Netns::new("node");
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
            let pod = Netns::named(format!("prcni-bench-{}-pod-{i}", std::process::id()));
            let (add, result) = invoke(p, "ADD", &cid, &pod.path());
            let host = host_veth(&result);
            let del_start = Instant::now();
            let (del, _) = invoke(p, "DEL", &cid, &pod.path());
            drop(pod);
            wait_gone(&host);
            let gone = del_start.elapsed();
            // The kernel finishes tearing the namespace down in a worker; let it, so that
            // work does not land in the next plugin's measurement.
            std::thread::sleep(SETTLE);
            if i >= warmup {
                s.add.push(add);
                s.del.push(del);
                s.total.push(add + del);
                s.gone.push(gone);
            }
        }
    }

    let family = if dual { "dual-stack" } else { "IPv4" };
    println!("ADD+DEL latency, {family}, {iterations} iterations each (ms): p50 / p90 / p99");
    let mut rows = Vec::new();
    for (p, s) in plugins.iter().zip(samples.iter_mut()) {
        let row = [
            stats(&mut s.add),
            stats(&mut s.del),
            stats(&mut s.total),
            stats(&mut s.gone),
        ];
        let cell = |[p50, p90, p99]: [Duration; 3]| {
            format!("{:6.2} {:6.2} {:6.2}", ms(p50), ms(p90), ms(p99))
        };
        println!(
            "{:>15}  ADD {}  DEL {}  ADD+DEL {}  gone {}",
            p.name,
            cell(row[0]),
            cell(row[1]),
            cell(row[2]),
            cell(row[3])
        );
        rows.push(row);
    }
    let ratio = |metric: usize, pct: usize| {
        rows[1][metric][pct].as_secs_f64() / rows[0][metric][pct].as_secs_f64()
    };
    println!(
        "ptp+host-local / podroute: ADD+DEL p50 {:.2}x, p90 {:.2}x, p99 {:.2}x; ADD p50 {:.2}x; \
         DEL p50 {:.2}x; gone p50 {:.2}x",
        ratio(2, 0),
        ratio(2, 1),
        ratio(2, 2),
        ratio(0, 0),
        ratio(1, 0),
        ratio(3, 0)
    );
}
