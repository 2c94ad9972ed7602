//! The BFD shell (one socket pair per family, TTL 255, the driver task) over real UDP on
//! loopback addresses of a private network namespace (needs root): two agents' BFD tasks,
//! 127.0.0.1 / fd00:bfd::1 and 127.0.0.2 / fd00:bfd::2, all on `lo`.

mod common;

use std::net::{IpAddr, Ipv4Addr, UdpSocket};
use std::process::Command;
use std::time::Duration;

use common::in_private_netns;
use podroute_agent::bfd::driver::{self, BfdDriverConfig, BfdHandle, LivenessEvent};
use podroute_agent::metrics::Metrics;
use podroute_bfd::endpoint::{BfdConfig, Liveness};
use podroute_bfd::packet::{ControlPacket, Diag, State};
use podroute_bfd::session::SessionConfig;
use tokio::sync::mpsc::UnboundedReceiver;

const A4: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 1));
const B4: IpAddr = IpAddr::V4(Ipv4Addr::new(127, 0, 0, 2));

fn v6(last: u16) -> IpAddr {
    IpAddr::V6(std::net::Ipv6Addr::new(0xfd00, 0xbfd, 0, 0, 0, 0, 0, last))
}

fn run(args: &[&str]) {
    let out = Command::new(args[0])
        .args(&args[1..])
        .output()
        .expect("run");
    assert!(
        out.status.success(),
        "{}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

fn node(local: Vec<IpAddr>, seed: u64) -> (BfdHandle, UnboundedReceiver<LivenessEvent>) {
    let (events, received) = tokio::sync::mpsc::unbounded_channel();
    let handle = driver::spawn(
        BfdDriverConfig {
            local,
            endpoint: BfdConfig {
                seed,
                ..BfdConfig::default()
            },
            metrics: Metrics::new(false).expect("metrics"),
            task: 1,
        },
        events,
    )
    .expect("BFD sockets");
    (handle, received)
}

/// Fast timers so the test is short; nothing below asserts how long anything took.
fn fast() -> SessionConfig {
    SessionConfig {
        desired_min_tx: Duration::from_millis(50),
        required_min_rx: Duration::from_millis(50),
        detect_mult: 3,
    }
}

/// Waits (at most 30 s) until each of `peers` has been reported `liveness`, in any
/// order, skipping other events.
async fn expect(
    events: &mut UnboundedReceiver<LivenessEvent>,
    peers: &[IpAddr],
    liveness: Liveness,
) {
    let mut missing: Vec<IpAddr> = peers.to_vec();
    let waited = tokio::time::timeout(Duration::from_secs(30), async {
        while !missing.is_empty() {
            let event = events.recv().await.expect("BFD task runs");
            if event.liveness == liveness {
                missing.retain(|p| *p != event.peer);
            }
        }
    })
    .await;
    assert!(waited.is_ok(), "no {liveness:?} from {missing:?}");
}

#[test]
#[ignore = "needs root: private network namespace"]
fn two_agents_bring_bfd_up_on_both_families_and_see_stop_and_failure_apart() {
    in_private_netns(async {
        for addr in ["fd00:bfd::1/128", "fd00:bfd::2/128"] {
            run(&["ip", "addr", "add", addr, "dev", "lo", "nodad"]);
        }
        let (a, mut a_events) = node(vec![A4, v6(1)], 1);
        let (b, mut b_events) = node(vec![B4, v6(2)], 2);
        for (handle, peers) in [(&a, [B4, v6(2)]), (&b, [A4, v6(1)])] {
            for peer in peers {
                handle.add_session(peer, fast());
            }
        }
        expect(&mut a_events, &[B4, v6(2)], Liveness::Up).await;
        expect(&mut b_events, &[A4, v6(1)], Liveness::Up).await;
        let a_view = a.snapshot().await.expect("a runs");
        let b_view = b.snapshot().await.expect("b runs");
        for (peer, mine) in [(B4, A4), (v6(2), v6(1))] {
            let ours = a_view
                .sessions
                .iter()
                .find(|s| s.peer == peer)
                .expect("session");
            let theirs = b_view
                .sessions
                .iter()
                .find(|s| s.peer == mine)
                .expect("session");
            assert_eq!(ours.state, State::Up);
            assert_eq!(ours.remote_discr, theirs.local_discr);
        }

        // GTSM: a well-formed packet that arrives with TTL 254 is dropped and counted.
        let forged = ControlPacket {
            diag: Diag::NONE,
            state: State::Down,
            poll: false,
            final_: false,
            control_plane_independent: false,
            demand: false,
            detect_mult: 3,
            my_discr: 7,
            your_discr: 0,
            desired_min_tx: 1_000_000,
            required_min_rx: 1_000_000,
            required_min_echo_rx: 0,
        };
        let sender = UdpSocket::bind((B4, 0)).expect("bind");
        sender.set_ttl(254).expect("ttl");
        sender.send_to(&forged.encode(), (A4, 3784)).expect("send");
        let mut dropped = 0;
        for _ in 0..100 {
            let view = a.snapshot().await.expect("a runs");
            dropped = view.counters.dropped.get("ttl").copied().unwrap_or(0);
            if dropped > 0 {
                break;
            }
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        assert_eq!(dropped, 1, "the TTL 254 packet is counted as a GTSM drop");
        let still = a.snapshot().await.expect("a runs");
        let session = still
            .sessions
            .iter()
            .find(|s| s.peer == B4)
            .expect("session");
        assert_eq!(session.state, State::Up, "the forged Down changed nothing");

        // A planned stop (B removes its IPv6 session): A hears AdminDown, no failure.
        b.remove_session(v6(1));
        expect(&mut a_events, &[v6(2)], Liveness::AdminDown).await;

        // A failure: B's IPv4 packets stop arriving; A detects it.
        run(&[
            "iptables",
            "-A",
            "INPUT",
            "-p",
            "udp",
            "-s",
            "127.0.0.2",
            "--dport",
            "3784",
            "-j",
            "DROP",
        ]);
        expect(&mut a_events, &[B4], Liveness::Down).await;
        let after = a.snapshot().await.expect("a runs");
        let session = after
            .sessions
            .iter()
            .find(|s| s.peer == B4)
            .expect("session");
        assert_eq!(session.state, State::Down);
        assert_eq!(session.diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
        assert_eq!(after.counters.detections, 1);

        a.shutdown().await;
        b.shutdown().await;
        assert!(a.snapshot().await.is_none(), "the task ends on shutdown");
        // Shutdown returns with the sockets closed: a new task binds port 3784 at once (what
        // the agent does when a peer wants BFD again right after the last one turned it off).
        let (again, _events) = node(vec![A4, v6(1)], 3);
        again.shutdown().await;
    });
}
