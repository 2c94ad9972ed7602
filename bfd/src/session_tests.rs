use super::*;

fn ms(n: u64) -> Duration {
    Duration::from_millis(n)
}

fn peer_packet(state: State, your_discr: u32) -> ControlPacket {
    ControlPacket {
        diag: Diag::NONE,
        state,
        poll: false,
        final_: false,
        control_plane_independent: false,
        demand: false,
        detect_mult: 3,
        my_discr: 77,
        your_discr,
        desired_min_tx: 300_000,
        required_min_rx: 300_000,
        required_min_echo_rx: 0,
    }
}

fn states(out: &[Output]) -> Vec<State> {
    out.iter()
        .filter_map(|o| match o {
            Output::StateChanged { to, .. } => Some(*to),
            Output::Transmit(_) => None,
        })
        .collect()
}

#[test]
fn the_three_way_handshake_of_6_8_6() {
    let now = Instant::now();
    let mut s = Session::new(now, 5, SessionConfig::default(), false, 1);
    let mut out = Vec::new();
    s.handle_packet(now, &peer_packet(State::Down, 0), &mut out);
    assert_eq!(states(&out), [State::Init]);
    out.clear();
    s.handle_packet(now, &peer_packet(State::Up, 5), &mut out);
    assert_eq!(states(&out), [State::Up]);
    assert_eq!(s.remote_discr(), 77);
    // Up and the peer says Down: Down with "neighbor signaled session down".
    out.clear();
    s.handle_packet(now, &peer_packet(State::Down, 5), &mut out);
    assert_eq!(states(&out), [State::Down]);
    assert_eq!(s.local_diag(), Diag::NEIGHBOR_SIGNALED_DOWN);
}

#[test]
fn down_goes_straight_up_when_the_peer_is_already_init() {
    let now = Instant::now();
    let mut s = Session::new(now, 5, SessionConfig::default(), false, 1);
    let mut out = Vec::new();
    s.handle_packet(now, &peer_packet(State::Init, 5), &mut out);
    assert_eq!(states(&out), [State::Up]);
}

#[test]
fn admin_down_ignores_the_peer_until_released() {
    let now = Instant::now();
    let mut s = Session::new(now, 5, SessionConfig::default(), true, 1);
    let mut out = Vec::new();
    s.admin_down(now, &mut out);
    let Some(Output::Transmit(p)) = out.last() else {
        panic!("AdminDown is sent at once: {out:?}");
    };
    assert_eq!((p.state, p.diag), (State::AdminDown, Diag::ADMIN_DOWN));
    assert!(p.control_plane_independent);
    out.clear();
    s.handle_packet(now, &peer_packet(State::Down, 0), &mut out);
    assert_eq!(s.state(), State::AdminDown);
    s.admin_up(now, &mut out);
    assert_eq!(s.state(), State::Down);
}

#[test]
fn a_final_answers_a_poll_at_once_and_never_carries_p() {
    let now = Instant::now();
    let mut s = Session::new(now, 5, SessionConfig::default(), false, 1);
    let mut out = Vec::new();
    s.handle_packet(now, &peer_packet(State::Down, 0), &mut out);
    s.handle_packet(now, &peer_packet(State::Up, 5), &mut out);
    assert_eq!(s.state(), State::Up);
    // A new interval while Up starts our own poll sequence: our packets carry P now.
    s.reconfigure(SessionConfig {
        desired_min_tx: ms(100),
        ..SessionConfig::default()
    });
    out.clear();
    s.handle_timeout(s.timer(Timer::Transmit).expect("transmit timer"), &mut out);
    assert!(
        out.iter()
            .any(|o| matches!(o, Output::Transmit(p) if p.poll && !p.final_)),
        "polling: {out:?}"
    );
    // The peer polls too: answered at once with F, and without P even though we poll.
    out.clear();
    let poll = ControlPacket {
        poll: true,
        ..peer_packet(State::Up, 5)
    };
    s.handle_packet(now + ms(10), &poll, &mut out);
    let finals: Vec<_> = out
        .iter()
        .filter_map(|o| match o {
            Output::Transmit(p) if p.final_ => Some(p),
            _ => None,
        })
        .collect();
    assert_eq!(finals.len(), 1);
    assert!(!finals[0].poll);
    assert_eq!(s.state(), State::Up);
}

#[test]
fn jitter_keeps_the_interval_between_75_and_100_percent() {
    let mut j = Jitter::new(42);
    for _ in 0..10_000 {
        let d = j.apply(ms(300), 75, 100);
        assert!(d >= ms(225) && d < ms(300), "{d:?}");
        let d = j.apply(ms(300), 75, 90);
        assert!(d >= ms(225) && d < ms(270), "{d:?}");
    }
}

#[test]
fn settings_out_of_range_are_clamped() {
    let now = Instant::now();
    let s = Session::new(
        now,
        5,
        SessionConfig {
            desired_min_tx: Duration::ZERO,
            required_min_rx: Duration::from_secs(100_000),
            detect_mult: 0,
        },
        false,
        1,
    );
    assert_eq!(s.config().detect_mult, 1);
    assert_eq!(s.config().desired_min_tx, Duration::from_micros(1));
    assert_eq!(s.config().required_min_rx, micros(u32::MAX));
}
