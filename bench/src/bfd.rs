//! The cost of many BFD sessions in the sans-IO endpoint (issue 12: "999 sessions at
//! 300 ms must stay cheap").
//!
//! One hub endpoint with N sessions (the view of one node in an (N+1)-node mesh) and N
//! peer endpoints, wired in memory, run on a simulated clock for a number of seconds at
//! 300 ms × 3. Measured: the thread CPU time spent in the hub's calls only (packets in,
//! timers, packets out; peers not counted), per simulated second and per packet, and the
//! resident memory the hub's sessions add. Not measured: the two syscalls a packet costs in
//! the agent (one `sendto`, one `recvmsg`), which the report states as a count. Nothing is
//! asserted about speed; the result is a JSON object.

use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use podroute_bfd::endpoint::{Action, Bfd, BfdConfig, Datagram};
use podroute_bfd::packet::State;
use podroute_bfd::session::SessionConfig;
use serde::Serialize;

/// What one run found.
#[derive(Debug, Clone, Serialize)]
pub struct BfdCost {
    /// Sessions on the hub.
    pub sessions: usize,
    /// Simulated seconds run after all sessions were Up.
    pub simulated_secs: u64,
    /// Sessions Up at the end.
    pub up: usize,
    /// Packets the hub sent and received in the measured window.
    pub packets_sent: u64,
    /// Packets the hub received.
    pub packets_received: u64,
    /// CPU time the hub's endpoint used in the window, microseconds.
    pub hub_cpu_us: u64,
    /// That per simulated second: the share of one core, in per mille.
    pub cpu_per_mille_of_a_core: f64,
    /// Hub CPU per packet (sent or received), nanoseconds.
    pub ns_per_packet: f64,
    /// Resident memory the hub's sessions added, bytes (from /proc/self/statm; page
    /// granular).
    pub hub_rss_bytes: u64,
    /// That per session.
    pub rss_bytes_per_session: f64,
    /// Syscalls per second the agent would make for these packets (one each).
    pub syscalls_per_sec: f64,
    /// Sessions that went Down during the window (should be 0).
    pub detections: u64,
}

fn thread_cpu() -> Duration {
    let ts = nix::time::clock_gettime(nix::time::ClockId::CLOCK_THREAD_CPUTIME_ID)
        .unwrap_or(nix::sys::time::TimeSpec::new(0, 0));
    Duration::new(ts.tv_sec() as u64, ts.tv_nsec() as u32)
}

fn rss_bytes() -> u64 {
    let page = 4096;
    std::fs::read_to_string("/proc/self/statm")
        .ok()
        .and_then(|s| s.split_whitespace().nth(1)?.parse::<u64>().ok())
        .map_or(0, |pages| pages * page)
}

fn peer_address(i: usize) -> IpAddr {
    IpAddr::V4(Ipv4Addr::from(
        u32::from(Ipv4Addr::new(198, 18, 17, 0)) + i as u32,
    ))
}

/// Runs the hub with `sessions` peers for `simulated_secs` after bring-up.
pub fn run(sessions: usize, simulated_secs: u64) -> BfdCost {
    let hub_addr = IpAddr::V4(Ipv4Addr::new(198, 18, 16, 1));
    let start = Instant::now();
    let config = SessionConfig::default();
    let rss_before = rss_bytes();
    let mut hub = Bfd::new(BfdConfig {
        seed: 1,
        ..BfdConfig::default()
    });
    for i in 0..sessions {
        hub.add_session(start, peer_address(i), config);
    }
    let hub_rss_bytes = rss_bytes().saturating_sub(rss_before);
    let mut peers: Vec<Bfd> = (0..sessions)
        .map(|i| {
            let mut b = Bfd::new(BfdConfig {
                seed: 1000 + i as u64,
                ..BfdConfig::default()
            });
            b.add_session(start, hub_addr, config);
            b
        })
        .collect();
    let index = |a: IpAddr| -> Option<usize> {
        let IpAddr::V4(v4) = a else { return None };
        let base = u32::from(Ipv4Addr::new(198, 18, 17, 0));
        usize::try_from(u32::from(v4).checked_sub(base)?).ok()
    };
    let mut now = start;
    let mut hub_cpu = Duration::ZERO;
    let mut measuring = false;
    let bring_up = Duration::from_secs(5);
    let end = start + bring_up + Duration::from_secs(simulated_secs);
    let mut sent_at_start = 0;
    let mut received_at_start = 0;
    let mut detections_at_start = 0;
    let mut to_hub: Vec<(IpAddr, [u8; 24])> = Vec::new();
    loop {
        if !measuring && now >= start + bring_up {
            measuring = true;
            hub_cpu = Duration::ZERO;
            sent_at_start = hub.counters().sent;
            received_at_start = hub.counters().received;
            detections_at_start = hub.counters().detections;
        }
        // Hub: timers, packets from peers, then its output to the peers.
        let t0 = thread_cpu();
        hub.handle_timeout(now);
        for (source, packet) in to_hub.drain(..) {
            let _ = hub.handle_datagram(
                now,
                Datagram {
                    source,
                    ttl: 255,
                    payload: &packet,
                },
            );
        }
        let mut to_peers = Vec::new();
        while let Some(action) = hub.poll_action() {
            if let Action::Transmit { peer, packet } = action {
                to_peers.push((peer, packet));
            }
        }
        hub_cpu += thread_cpu() - t0;
        for (peer, packet) in to_peers {
            if let Some(p) = index(peer).and_then(|i| peers.get_mut(i)) {
                let _ = p.handle_datagram(
                    now,
                    Datagram {
                        source: hub_addr,
                        ttl: 255,
                        payload: &packet,
                    },
                );
            }
        }
        for (i, p) in peers.iter_mut().enumerate() {
            if p.poll_timeout().is_some_and(|t| t <= now) {
                p.handle_timeout(now);
            }
            while let Some(action) = p.poll_action() {
                if let Action::Transmit { packet, .. } = action {
                    to_hub.push((peer_address(i), packet));
                }
            }
        }
        if !to_hub.is_empty() {
            continue; // deliver at this instant
        }
        let next = peers
            .iter()
            .filter_map(|p| p.poll_timeout())
            .chain(hub.poll_timeout())
            .min();
        match next {
            Some(t) if t <= end => now = now.max(t),
            _ => break,
        }
    }
    let c = hub.counters();
    let packets_sent = c.sent - sent_at_start;
    let packets_received = c.received - received_at_start;
    let packets = (packets_sent + packets_received).max(1);
    let secs = simulated_secs.max(1) as f64;
    BfdCost {
        sessions,
        simulated_secs,
        up: hub
            .sessions_by_state()
            .iter()
            .find(|(s, _)| *s == State::Up)
            .map_or(0, |(_, n)| *n),
        packets_sent,
        packets_received,
        hub_cpu_us: hub_cpu.as_micros() as u64,
        cpu_per_mille_of_a_core: hub_cpu.as_secs_f64() / secs * 1000.0,
        ns_per_packet: hub_cpu.as_nanos() as f64 / packets as f64,
        hub_rss_bytes,
        rss_bytes_per_session: hub_rss_bytes as f64 / sessions.max(1) as f64,
        syscalls_per_sec: packets as f64 / secs,
        detections: c.detections - detections_at_start,
    }
}
