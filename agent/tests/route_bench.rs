//! FIB programming benchmark (needs root; numbers printed, never asserted): install and
//! withdraw N routes with the route programmer and with `ip -batch`, alternating, each run in
//! a fresh private network namespace. Also the cost of a full pass (dump and compare) and of
//! an idle flush with N routes installed, and the process memory the routes add.
//!
//! `PODROUTE_BENCH_ROUTES=100000,1000000 cargo test -p podroute-agent --release --test
//! route_bench -- --ignored --nocapture`; without the variable it runs 10,000 routes, the
//! smoke that `make test` runs.

mod common;

use std::io::Write as _;
use std::net::{IpAddr, Ipv4Addr};
use std::process::Command;
use std::time::{Duration, Instant};

use common::Netns;
use ipnetwork::IpNetwork;
use podroute_agent::routes::{RouteIntent, RouteProgrammer};

const PROTO: u8 = 80;

/// Route `i`: a /28 in 10.0.0.0/8 (room for 2^20), through one of 4 next hops.
fn route(i: u32) -> (IpNetwork, Ipv4Addr) {
    let destination =
        IpNetwork::new(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 + (i << 4))), 28).expect("net");
    (destination, Ipv4Addr::new(198, 18, 0, 2 + (i % 4) as u8))
}

/// User + system CPU time of this process so far.
fn cpu() -> Duration {
    let stat = std::fs::read_to_string("/proc/self/stat").expect("stat");
    let fields: Vec<&str> = stat
        .rsplit_once(')')
        .expect("comm")
        .1
        .split_whitespace()
        .collect();
    let ticks: u64 =
        fields[11].parse::<u64>().expect("utime") + fields[12].parse::<u64>().expect("stime");
    Duration::from_millis(ticks * 10)
}

fn rss() -> u64 {
    let statm = std::fs::read_to_string("/proc/self/statm").expect("statm");
    let pages: u64 = statm
        .split_whitespace()
        .nth(1)
        .expect("rss")
        .parse()
        .expect("pages");
    pages * 4096
}

fn count_routes(ns: &Netns) -> usize {
    ns.ip(&["route", "show", "proto", "80"]).lines().count()
}

struct ProgrammerRun {
    install: Duration,
    withdraw: Duration,
    full_pass: Duration,
    full_pass_cpu: Duration,
    idle_flush: Duration,
    unchanged_difference: Duration,
    bytes_per_route: f64,
    requests_per_batch: f64,
}

async fn programmer_run(n: u32) -> ProgrammerRun {
    let ns = Netns::with_fabric();
    let mut programmer = ns.enter(|| RouteProgrammer::new(PROTO).expect("programmer"));
    programmer.flush(true).await.expect("first flush");
    let rss_before = rss();

    let started = Instant::now();
    for i in 0..n {
        let (destination, next_hop) = route(i);
        programmer.stage(destination, Some(RouteIntent::Via(next_hop.into())));
    }
    let report = programmer.flush(true).await.expect("flush");
    let install = started.elapsed();
    assert_eq!(report.created, u64::from(n), "{report:?}");
    assert_eq!(programmer.installed(), n as usize);
    let bytes_per_route = (rss().saturating_sub(rss_before)) as f64 / f64::from(n);
    let counters = programmer.counters();
    let requests_per_batch = counters.batched_requests as f64 / counters.batches as f64;

    // What the agent loop does each step for now: the whole desired map, nothing changed.
    let desired: std::collections::BTreeMap<_, _> = (0..n)
        .map(|i| {
            let (destination, next_hop) = route(i);
            (destination, RouteIntent::Via(next_hop.into()))
        })
        .collect();
    let started = Instant::now();
    programmer.stage_difference(&desired);
    let unchanged_difference = started.elapsed();
    drop(desired);

    let started = Instant::now();
    let idle = programmer.flush(true).await.expect("idle flush");
    let idle_flush = started.elapsed();
    assert!(idle.is_noop() && !idle.full_pass);

    programmer.schedule_full_pass();
    let (started, cpu_before) = (Instant::now(), cpu());
    let pass = programmer.flush(true).await.expect("full pass");
    let (full_pass, full_pass_cpu) = (started.elapsed(), cpu() - cpu_before);
    assert!(pass.full_pass && pass.is_noop(), "{pass:?}");

    let started = Instant::now();
    for i in 0..n {
        programmer.stage(route(i).0, None);
    }
    let report = programmer.flush(true).await.expect("flush");
    let withdraw = started.elapsed();
    assert_eq!(report.deleted, u64::from(n));
    assert_eq!(count_routes(&ns), 0);
    ProgrammerRun {
        install,
        withdraw,
        full_pass,
        full_pass_cpu,
        idle_flush,
        unchanged_difference,
        bytes_per_route,
        requests_per_batch,
    }
}

/// `ip -n <ns> -batch <file>`, timed.
fn ip_batch(ns: &Netns, lines: impl Iterator<Item = String>) -> Duration {
    let mut file = tempfile::NamedTempFile::new().expect("temp file");
    {
        let mut out = std::io::BufWriter::new(file.as_file_mut());
        for line in lines {
            writeln!(out, "{line}").expect("write");
        }
    }
    let started = Instant::now();
    let status = Command::new("ip")
        .args(["-n", &ns.name, "-batch"])
        .arg(file.path())
        .status()
        .expect("ip -batch");
    let elapsed = started.elapsed();
    assert!(status.success());
    elapsed
}

fn ip_run(n: u32) -> (Duration, Duration) {
    let ns = Netns::with_fabric();
    let install = ip_batch(
        &ns,
        (0..n).map(|i| {
            let (d, nh) = route(i);
            format!("route add {d} via {nh} dev fabric0 proto {PROTO}")
        }),
    );
    assert_eq!(count_routes(&ns), n as usize);
    let withdraw = ip_batch(
        &ns,
        (0..n).map(|i| format!("route del {} proto {PROTO}", route(i).0)),
    );
    assert_eq!(count_routes(&ns), 0);
    (install, withdraw)
}

#[tokio::test]
#[ignore = "needs root: make test runs a 10k smoke; PODROUTE_BENCH_ROUTES=100000,1000000 for the real numbers"]
async fn programmer_vs_ip_batch() {
    let sizes: Vec<u32> = std::env::var("PODROUTE_BENCH_ROUTES")
        .unwrap_or_else(|_| "10000".to_owned())
        .split(',')
        .map(|s| s.trim().parse().expect("route count"))
        .collect();
    for n in sizes {
        // Alternating, twice each: programmer, ip, programmer, ip.
        for round in 1..=2 {
            let p = programmer_run(n).await;
            let (ip_install, ip_withdraw) = ip_run(n);
            println!(
                "routes={n} round={round} install: programmer {:.2} s, ip -batch {:.2} s, \
                 ratio {:.2} | withdraw: programmer {:.2} s, ip -batch {:.2} s, ratio {:.2} | \
                 full pass {:.2} s ({:.2} s CPU) | idle flush {:?} | unchanged \
                 stage_difference {:.3} s | {:.0} requests/batch | RSS {:.1} B/route",
                p.install.as_secs_f64(),
                ip_install.as_secs_f64(),
                p.install.as_secs_f64() / ip_install.as_secs_f64(),
                p.withdraw.as_secs_f64(),
                ip_withdraw.as_secs_f64(),
                p.withdraw.as_secs_f64() / ip_withdraw.as_secs_f64(),
                p.full_pass.as_secs_f64(),
                p.full_pass_cpu.as_secs_f64(),
                p.idle_flush,
                p.unchanged_difference.as_secs_f64(),
                p.requests_per_batch,
                p.bytes_per_route,
            );
        }
    }
}
