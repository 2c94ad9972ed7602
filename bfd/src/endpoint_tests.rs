//! Endpoints wired in memory on simulated time (a fake clock jumped to the next
//! `poll_timeout`), as in quinn's `Pair`.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use super::*;

const A: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 1));
const B: IpAddr = IpAddr::V4(Ipv4Addr::new(198, 18, 0, 254));

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

/// Endpoints by address, a link that can be cut, one clock.
struct Net {
    now: Instant,
    nodes: Vec<(IpAddr, Bfd)>,
    index: HashMap<IpAddr, usize>,
    link_up: bool,
    /// Every action any node emitted, with when and who.
    log: Vec<(Instant, IpAddr, Action)>,
}

impl Net {
    fn new(addresses: &[IpAddr]) -> Self {
        let nodes = addresses
            .iter()
            .enumerate()
            .map(|(i, &a)| {
                (
                    a,
                    Bfd::new(BfdConfig {
                        seed: 0x5eed + i as u64,
                        ..BfdConfig::default()
                    }),
                )
            })
            .collect();
        let index = addresses.iter().enumerate().map(|(i, &a)| (a, i)).collect();
        Self {
            now: Instant::now(),
            nodes,
            index,
            link_up: true,
            log: Vec::new(),
        }
    }

    /// A and B, each with a session to the other at 300 ms × 3.
    fn pair() -> Self {
        let mut net = Net::new(&[A, B]);
        let now = net.now;
        net.node(A).add_session(now, B, SessionConfig::default());
        net.node(B).add_session(now, A, SessionConfig::default());
        net
    }

    fn node(&mut self, addr: IpAddr) -> &mut Bfd {
        &mut self
            .nodes
            .iter_mut()
            .find(|(a, _)| *a == addr)
            .expect("node")
            .1
    }

    fn state(&mut self, from: IpAddr, to: IpAddr) -> State {
        self.node(from).session(to).expect("session").state
    }

    /// Drains every node's actions, delivering packets at once while the link is up.
    fn deliver(&mut self) {
        loop {
            let mut packets = Vec::new();
            for (addr, bfd) in &mut self.nodes {
                while let Some(action) = bfd.poll_action() {
                    self.log.push((self.now, *addr, action));
                    if let Action::Transmit { peer, packet } = action {
                        packets.push((*addr, peer, packet));
                    }
                }
            }
            if packets.is_empty() {
                return;
            }
            for (source, peer, packet) in packets {
                if !self.link_up {
                    continue;
                }
                let now = self.now;
                if let Some(&i) = self.index.get(&peer) {
                    let _ = self.nodes[i].1.handle_datagram(
                        now,
                        Datagram {
                            source,
                            ttl: 255,
                            payload: &packet,
                        },
                    );
                }
            }
        }
    }

    /// Runs every timer up to `until`, then sets the clock to it.
    fn run_until(&mut self, until: Instant) {
        self.deliver();
        loop {
            let next = self
                .nodes
                .iter()
                .filter_map(|(_, b)| b.poll_timeout())
                .min();
            match next {
                Some(t) if t <= until => {
                    self.now = self.now.max(t);
                    let now = self.now;
                    for (_, bfd) in &mut self.nodes {
                        bfd.handle_timeout(now);
                    }
                    self.deliver();
                }
                _ => break,
            }
        }
        self.now = until;
    }

    fn run_for(&mut self, d: Duration) {
        let until = self.now + d;
        self.run_until(until);
    }

    fn liveness(&self, at: IpAddr, peer_: IpAddr) -> Vec<(Instant, Liveness)> {
        self.log
            .iter()
            .filter_map(|(t, who, a)| match a {
                Action::Liveness { peer, liveness } if *who == at && *peer == peer_ => {
                    Some((*t, *liveness))
                }
                _ => None,
            })
            .collect()
    }

    fn packets_from(&self, from: IpAddr) -> Vec<ControlPacket> {
        self.log
            .iter()
            .filter_map(|(_, who, a)| match a {
                Action::Transmit { packet, .. } if *who == from => {
                    Some(ControlPacket::decode(packet).expect("own packet decodes"))
                }
                _ => None,
            })
            .collect()
    }
}

#[test]
fn two_endpoints_come_up_and_settle_on_the_configured_rate() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    assert_eq!(net.state(A, B), State::Up);
    assert_eq!(net.state(B, A), State::Up);
    assert_eq!(net.liveness(A, B).last().map(|l| l.1), Some(Liveness::Up));
    let status = net.node(A).session(B).expect("session");
    assert_eq!(status.transmit_interval, Some(ms(300)));
    assert_eq!(status.detection_time, Some(ms(900)));
    assert_ne!(status.remote_discr, 0);
    assert_eq!(
        status.remote_discr,
        net.node(B).session(A).expect("session").local_discr
    );
    // Leaving the one-second rate of a session not yet Up was a poll sequence (§6.8.3):
    // A sent a Poll and B a Final, and the Polls stopped.
    let from_a = net.packets_from(A);
    let from_b = net.packets_from(B);
    assert!(from_a.iter().any(|p| p.poll && p.state == State::Up));
    assert!(from_b.iter().any(|p| p.final_));
    assert!(!from_a.last().expect("packets").poll);
    assert!(from_a.iter().chain(&from_b).all(|p| !(p.poll && p.final_)));
    // Before Up nobody sent faster than once a second.
    assert!(
        from_a
            .iter()
            .filter(|p| p.state != State::Up)
            .all(|p| p.desired_min_tx >= 1_000_000)
    );
}

#[test]
fn a_cut_link_is_detected_within_the_detection_time_and_counted() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    net.link_up = false;
    // The last packet before the cut was at most one interval (300 ms) ago, so nothing
    // expires before 600 ms, and everything by 900 ms.
    net.run_for(ms(550));
    assert_eq!(net.state(A, B), State::Up);
    net.run_for(ms(351));
    for (x, y) in [(A, B), (B, A)] {
        let s = net.node(x).session(y).expect("session");
        assert_eq!(s.state, State::Down);
        assert_eq!(s.diag, Diag::CONTROL_DETECTION_TIME_EXPIRED);
        assert_eq!(s.liveness, Liveness::Down);
        assert_eq!(s.remote_discr, 0, "forgotten after a Detection Time");
        assert_eq!(net.node(x).counters().detections, 1);
    }
    assert_eq!(
        net.liveness(A, B).iter().map(|l| l.1).collect::<Vec<_>>(),
        [Liveness::Up, Liveness::Down]
    );
    // Link back: up again by itself.
    net.link_up = true;
    net.run_for(ms(5_000));
    assert_eq!(net.state(A, B), State::Up);
}

#[test]
fn a_planned_stop_says_admin_down_and_the_peer_takes_it_for_no_failure() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    let now = net.now;
    net.node(A).shutdown(now);
    net.run_for(ms(100));
    assert_eq!(net.state(A, B), State::AdminDown);
    let b = net.node(B).session(A).expect("session");
    assert_eq!(b.state, State::Down);
    assert_eq!(b.diag, Diag::NEIGHBOR_SIGNALED_DOWN);
    assert_eq!(b.liveness, Liveness::AdminDown);
    assert_eq!(net.node(B).counters().detections, 0);
    // A goes away for good; B's Detection Time passes and B stays Down quietly.
    net.index.remove(&A);
    net.nodes[0].1 = Bfd::new(BfdConfig::default());
    net.run_for(ms(10_000));
    assert_eq!(net.state(B, A), State::Down);
    assert_eq!(net.node(B).counters().detections, 0);
    assert_eq!(
        net.liveness(B, A).iter().map(|l| l.1).collect::<Vec<_>>(),
        [Liveness::Up, Liveness::AdminDown]
    );
}

#[test]
fn a_restarted_peer_with_a_new_discriminator_is_heard_again() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    let old = net.node(A).session(B).expect("session").remote_discr;
    let now = net.now;
    // B's process restarts: its session is new, with another discriminator.
    let fresh = Bfd::new(BfdConfig {
        seed: 0xfeed,
        ..BfdConfig::default()
    });
    net.nodes[1].1 = fresh;
    net.node(B).add_session(now, A, SessionConfig::default());
    net.run_for(ms(10_000));
    let a = net.node(A).session(B).expect("session");
    assert_eq!(a.state, State::Up);
    assert_ne!(a.remote_discr, old);
}

#[test]
fn bad_packets_are_dropped_counted_and_change_nothing() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    let before = net.node(A).session(B).expect("session");
    let good = ControlPacket::decode(&net.packets_from(B).last().expect("packets from B").encode())
        .expect("decodes");
    let now = net.now;
    let bad_version = {
        let mut b = good.encode();
        b[0] = 0x40;
        b
    };
    let down = ControlPacket {
        state: State::Down,
        ..good
    };
    let cases: Vec<(IpAddr, u8, Vec<u8>, Drop)> = vec![
        (B, 254, down.encode().to_vec(), Drop::Ttl(254)),
        (
            B,
            255,
            bad_version.to_vec(),
            Drop::Packet(DecodeError::Version(2)),
        ),
        (
            B,
            255,
            ControlPacket {
                detect_mult: 0,
                ..down
            }
            .encode()
            .to_vec(),
            Drop::Packet(DecodeError::DetectMultZero),
        ),
        (
            B,
            255,
            ControlPacket {
                my_discr: 0,
                ..down
            }
            .encode()
            .to_vec(),
            Drop::Packet(DecodeError::MyDiscriminatorZero),
        ),
        (
            B,
            255,
            down.encode()[..20].to_vec(),
            Drop::Packet(DecodeError::Truncated(20)),
        ),
        (
            B,
            255,
            ControlPacket {
                your_discr: before.local_discr.wrapping_add(1),
                ..down
            }
            .encode()
            .to_vec(),
            Drop::UnknownDiscriminator,
        ),
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)),
            255,
            down.encode().to_vec(),
            Drop::WrongPeer,
        ),
        (
            IpAddr::V4(Ipv4Addr::new(198, 18, 0, 9)),
            255,
            ControlPacket {
                your_discr: 0,
                ..down
            }
            .encode()
            .to_vec(),
            Drop::NoSession,
        ),
    ];
    for (source, ttl, payload, want) in &cases {
        let got = net.node(A).handle_datagram(
            now,
            Datagram {
                source: *source,
                ttl: *ttl,
                payload,
            },
        );
        assert_eq!(got, Err(*want));
    }
    assert_eq!(net.node(A).session(B).expect("session"), before);
    let dropped = &net.node(A).counters().dropped;
    assert_eq!(dropped.values().sum::<u64>(), cases.len() as u64);
    assert_eq!(dropped.get("ttl"), Some(&1));
    // The same Down packet with TTL 255 from B is a real one: A goes Down.
    let got = net.node(A).handle_datagram(
        now,
        Datagram {
            source: B,
            ttl: 255,
            payload: &down.encode(),
        },
    );
    assert_eq!(got, Ok(()));
    assert_eq!(net.state(A, B), State::Down);
}

#[test]
fn a_flapping_session_is_damped_towards_clients() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    let mut ups = Vec::new();
    for _ in 0..3 {
        net.link_up = false;
        net.run_for(ms(2_000));
        assert_eq!(net.state(A, B), State::Down);
        net.link_up = true;
        let back = net.now;
        net.run_for(ms(3_000));
        assert_eq!(net.state(A, B), State::Up);
        net.run_for(ms(20_000));
        let session_up = net
            .log
            .iter()
            .find_map(|(t, who, a)| match a {
                Action::StateChanged { to: State::Up, .. } if *who == A && *t >= back => Some(*t),
                _ => None,
            })
            .expect("session up");
        let told_up = net
            .liveness(A, B)
            .into_iter()
            .find(|l| l.0 >= back && l.1 == Liveness::Up)
            .expect("told up")
            .0
            - session_up;
        ups.push(told_up);
    }
    // The first session was stable (Up for 5 s, under `stable` but never flapped):
    // its failure costs the initial hold-down of 2 s; the next flaps double it.
    assert_eq!(ups, [ms(2_000), ms(4_000), ms(8_000)]);
    assert!(net.node(A).counters().damped >= 2);
    // Down is never held back.
    let lv = net.liveness(A, B);
    assert_eq!(lv.iter().filter(|l| l.1 == Liveness::Down).count(), 3);
}

#[test]
fn a_slower_rate_takes_effect_after_the_poll_sequence() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    let now = net.now;
    let slow = SessionConfig {
        desired_min_tx: ms(1_000),
        ..SessionConfig::default()
    };
    net.node(A).add_session(now, B, slow);
    // Until B's Final, A keeps sending at the old rate (§6.8.3).
    assert_eq!(
        net.node(A).session(B).expect("session").transmit_interval,
        Some(ms(300))
    );
    net.run_for(ms(2_000));
    assert_eq!(
        net.node(A).session(B).expect("session").transmit_interval,
        Some(ms(1_000))
    );
    assert_eq!(
        net.node(B).session(A).expect("session").detection_time,
        Some(ms(3_000))
    );
    net.run_for(ms(10_000));
    assert_eq!(net.state(A, B), State::Up);
    assert_eq!(net.node(A).counters().detections, 0);
}

#[test]
fn a_peer_that_wants_no_packets_gets_none() {
    let mut net = Net::pair();
    net.run_for(ms(5_000));
    let now = net.now;
    let good = *net.packets_from(B).last().expect("packets");
    let quiet = ControlPacket {
        required_min_rx: 0,
        poll: false,
        final_: false,
        ..good
    };
    net.link_up = false;
    net.node(A)
        .handle_datagram(
            now,
            Datagram {
                source: B,
                ttl: 255,
                payload: &quiet.encode(),
            },
        )
        .expect("accepted");
    assert_eq!(
        net.node(A).session(B).expect("session").transmit_interval,
        None
    );
    let sent = net.node(A).counters().sent;
    net.run_for(ms(800));
    assert_eq!(net.node(A).counters().sent, sent);
}

#[test]
fn ipv6_sessions_work_the_same() {
    let a6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 1));
    let b6 = IpAddr::V6(Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 0xfe));
    let mut net = Net::new(&[a6, b6]);
    let now = net.now;
    net.node(a6).add_session(now, b6, SessionConfig::default());
    net.node(b6).add_session(now, a6, SessionConfig::default());
    net.run_for(ms(5_000));
    assert_eq!(net.state(a6, b6), State::Up);
}

#[test]
fn many_sessions_share_one_heap_and_stay_up() {
    // One node with 999 sessions, each peer a node of its own: the shape of a 1000-node
    // mesh seen from one agent.
    let hub = IpAddr::V4(Ipv4Addr::new(198, 18, 16, 1));
    let peers: Vec<IpAddr> = (0..999u32)
        .map(|i| IpAddr::V4(Ipv4Addr::from(u32::from(Ipv4Addr::new(198, 18, 17, 0)) + i)))
        .collect();
    let mut all = vec![hub];
    all.extend(&peers);
    let mut net = Net::new(&all);
    let now = net.now;
    for &p in &peers {
        net.node(hub).add_session(now, p, SessionConfig::default());
        net.node(p).add_session(now, hub, SessionConfig::default());
    }
    net.log.clear();
    net.run_for(ms(5_000));
    let [(_, admin), (_, down), (_, init), (_, up)] = net.node(hub).sessions_by_state();
    assert_eq!((admin, down, init, up), (0, 0, 0, 999));
    // Stale timer entries do not pile up: at most a few per session.
    let hub_node = net.node(hub);
    assert!(hub_node.heap.len() <= 2 * 999, "{}", hub_node.heap.len());
    // Steady state: about one packet per session per 225–300 ms, no more.
    let sent_before = net.node(hub).counters().sent;
    net.log.clear();
    net.run_for(ms(3_000));
    let sent = net.node(hub).counters().sent - sent_before;
    assert!(sent <= 999 * 3_000 / 225 + 999, "{sent}");
    assert!(sent >= 999 * 3_000 / 300 - 999, "{sent}");
    assert_eq!(net.node(hub).counters().detections, 0);
}

#[test]
fn the_peers_c_bit_is_known_and_still_known_after_it_went_silent() {
    // B's BFD outlives its control plane (C bit set); A's shares its fate (clear).
    let mut net = Net::new(&[A, B]);
    if let Some((_, b)) = net.nodes.iter_mut().find(|(a, _)| *a == B) {
        *b = Bfd::new(BfdConfig {
            seed: 0xb,
            control_plane_independent: true,
            ..BfdConfig::default()
        });
    }
    let now = net.now;
    net.node(A).add_session(now, B, SessionConfig::default());
    net.node(B).add_session(now, A, SessionConfig::default());
    net.run_for(ms(5_000));
    assert!(
        net.node(A)
            .session(B)
            .expect("session")
            .remote_control_plane_independent
    );
    assert!(
        !net.node(B)
            .session(A)
            .expect("session")
            .remote_control_plane_independent
    );
    net.link_up = false;
    net.run_for(ms(2_000));
    let s = net.node(A).session(B).expect("session");
    assert_eq!(s.state, State::Down);
    assert!(
        s.remote_control_plane_independent,
        "what the silence means is still known"
    );
}
