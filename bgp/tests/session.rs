//! The session state machine on simulated time: two sessions wired back to back in
//! memory with a fake clock that jumps to the next deadline (quinn's `Pair` style).

use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::{BufMut, Bytes, BytesMut};
use ipnetwork::IpNetwork;
use podroute_bgp::collision::{self, Keep};
use podroute_bgp::message::{
    Capability, CodecContext, Family, Message, NextHop, Notification, Open, PathAttributes,
    RouteRefresh, frame_len,
};
use podroute_bgp::session::{
    Action, AdminEvent, PeerAs, REFUSED_RETRIES, ReceivedRoutes, Session, SessionConfig, State,
    Timer,
};

const A_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 1);
const B_ID: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 2);

/// What one side saw, kept for assertions.
#[derive(Default, Debug)]
struct Seen {
    states: Vec<State>,
    routes: Vec<ReceivedRoutes>,
    eor: Vec<Family>,
    sent: Vec<Message>,
    notifications_sent: Vec<Notification>,
    notifications_received: Vec<Notification>,
    connects: usize,
}

/// Two sessions and the wire between them.
struct Pair {
    now: Instant,
    a: Session,
    b: Session,
    seen_a: Seen,
    seen_b: Seen,
    /// Both ends have the TCP connection.
    connected: bool,
    /// Bytes are silently dropped (a cut link: TCP stays up, nothing arrives).
    link_cut: bool,
}

fn decode_all(bytes: &[u8]) -> Vec<Message> {
    // Our own output: always whole messages, and always decodable with a 4-octet
    // extended context (hand-built tests never send 2-octet AS paths).
    let ctx = CodecContext {
        four_octet_as: true,
        extended_messages: true,
    };
    let mut out = Vec::new();
    let mut rest = bytes;
    while let Ok(Some(n)) = frame_len(rest, 65535) {
        out.push(Message::decode(&rest[..n], &ctx).expect("our own bytes decode"));
        rest = &rest[n..];
    }
    out
}

impl Pair {
    fn new(a: SessionConfig, b: SessionConfig) -> Self {
        Self {
            now: Instant::now(),
            a: Session::new(a),
            b: Session::new(b),
            seen_a: Seen::default(),
            seen_b: Seen::default(),
            connected: false,
            link_cut: false,
        }
    }

    /// A (active, AS 65001) and B (passive, AS 65002) peering over eBGP.
    fn ebgp() -> Self {
        let a = SessionConfig::new(65001, A_ID, 65002);
        let mut b = SessionConfig::new(65002, B_ID, 65001);
        b.passive = true;
        Self::new(a, b)
    }

    /// Moves actions between the two until nothing is left to do at `now`.
    fn drive(&mut self) {
        loop {
            let mut progress = false;
            while let Some(act) = self.a.poll_action() {
                progress = true;
                self.apply(true, act);
            }
            while let Some(act) = self.b.poll_action() {
                progress = true;
                self.apply(false, act);
            }
            if !progress {
                return;
            }
        }
    }

    fn apply(&mut self, from_a: bool, act: Action) {
        let now = self.now;
        let (seen, other) = if from_a {
            (&mut self.seen_a, &mut self.b)
        } else {
            (&mut self.seen_b, &mut self.a)
        };
        match act {
            Action::Connect => {
                seen.connects += 1;
                if !self.connected && other.accepts_connection() {
                    self.connected = true;
                    // Outgoing side first, as TCP would complete it.
                    if from_a {
                        self.a.handle_connected(now);
                        self.b.handle_connected(now);
                    } else {
                        self.b.handle_connected(now);
                        self.a.handle_connected(now);
                    }
                }
            }
            Action::Send(bytes) => {
                seen.sent.extend(decode_all(&bytes));
                if self.connected && !self.link_cut {
                    other.handle_bytes(now, &bytes);
                }
            }
            Action::Disconnect => {
                if self.connected {
                    self.connected = false;
                    other.handle_closed(now);
                }
            }
            Action::StateChanged { to, .. } => seen.states.push(to),
            Action::Routes(r) => seen.routes.push(r),
            Action::EndOfRib(f) => seen.eor.push(f),
            Action::NotificationSent(n) => seen.notifications_sent.push(n),
            Action::NotificationReceived(n) => seen.notifications_received.push(n),
            Action::UpdateFault(_) => {}
        }
    }

    /// Jumps the clock to the next deadline (if not after `limit`) and fires it.
    fn step(&mut self, limit: Instant) -> bool {
        let next = [self.a.poll_timeout(), self.b.poll_timeout()]
            .into_iter()
            .flatten()
            .min();
        match next {
            Some(t) if t <= limit => {
                self.now = self.now.max(t);
                let now = self.now;
                self.a.handle_timeout(now);
                self.b.handle_timeout(now);
                self.drive();
                true
            }
            _ => false,
        }
    }

    /// Runs simulated time forward by `d`.
    fn run_for(&mut self, d: Duration) {
        let limit = self.now + d;
        self.drive();
        while self.step(limit) {}
        self.now = limit;
    }

    fn start(&mut self) {
        let now = self.now;
        self.b.handle(now, AdminEvent::Start);
        self.a.handle(now, AdminEvent::Start);
        self.drive();
    }
}

fn keepalives(seen: &Seen) -> usize {
    seen.sent
        .iter()
        .filter(|m| **m == Message::Keepalive)
        .count()
}

fn v4_attrs(next_hop: Ipv4Addr) -> PathAttributes {
    PathAttributes {
        next_hop: Some(NextHop::V4(next_hop)),
        ..PathAttributes::default()
    }
}

#[test]
fn sessions_establish_and_exchange_end_of_rib() {
    let mut p = Pair::ebgp();
    p.start();
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.b.state(), State::Established);
    assert_eq!(
        p.seen_a.states,
        vec![
            State::Connect,
            State::OpenSent,
            State::OpenConfirm,
            State::Established
        ]
    );
    assert_eq!(
        p.seen_b.states,
        vec![
            State::Active,
            State::OpenSent,
            State::OpenConfirm,
            State::Established
        ]
    );
    // Empty Adj-RIB-Out: just End-of-RIB for both families, each way.
    assert_eq!(
        p.seen_b.eor,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    assert_eq!(
        p.seen_a.eor,
        vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST]
    );
    let n = p.a.negotiated().expect("negotiated");
    assert_eq!(n.hold_time, 90);
    assert_eq!(n.remote_id, B_ID);
    assert!(n.codec.four_octet_as && n.codec.extended_messages && n.route_refresh);
    assert_eq!(p.a.counters().established, 1);
}

#[test]
fn routes_announced_before_establishment_arrive_with_our_as_prepended() {
    let mut p = Pair::ebgp();
    let now = p.now;
    let v4: Vec<IpNetwork> = vec!["10.244.1.0/24".parse().expect("net")];
    let v6: Vec<IpNetwork> = vec!["fd00:10:244:1::/64".parse().expect("net")];
    assert_eq!(p.a.announce(now, v4.clone(), v4_attrs(A_ID)), 1);
    let v6_attrs = PathAttributes {
        next_hop: Some(NextHop::V6 {
            global: "fd00:198:18::1".parse().expect("addr"),
            link_local: None,
        }),
        ..PathAttributes::default()
    };
    // A v4 prefix with a v6 next hop cannot be sent and is refused.
    assert_eq!(
        p.a.announce(now, v6.iter().copied().chain(v4.clone()), v6_attrs),
        1
    );
    p.start();
    let got: Vec<_> = p.seen_b.routes.iter().collect();
    assert_eq!(got.len(), 2);
    let r4 = got
        .iter()
        .find(|r| r.family == Family::IPV4_UNICAST)
        .expect("v4 routes");
    assert_eq!(r4.announced, v4);
    let a4 = r4.attributes.as_ref().expect("attributes");
    assert_eq!(a4.as_path.first_as(), Some(65001));
    assert_eq!(a4.local_pref, None);
    let r6 = got
        .iter()
        .find(|r| r.family == Family::IPV6_UNICAST)
        .expect("v6 routes");
    assert_eq!(r6.announced, v6);
    // Routes come before End-of-RIB.
    assert_eq!(p.seen_b.eor.len(), 2);

    // Withdraw while established.
    let now = p.now;
    p.a.withdraw(now, v4.clone());
    p.drive();
    let last = p.seen_b.routes.last().expect("withdrawal");
    assert_eq!(last.withdrawn, v4);
    assert!(last.announced.is_empty());
}

#[test]
fn many_prefixes_are_packed_into_few_updates_within_the_size_limit() {
    let mut a_cfg = SessionConfig::new(65001, A_ID, 65002);
    a_cfg.extended_messages = false;
    let mut b_cfg = SessionConfig::new(65002, B_ID, 65001);
    b_cfg.passive = true;
    let mut p = Pair::new(a_cfg, b_cfg);
    p.start();
    let prefixes: Vec<IpNetwork> = (0..3000u32)
        .map(|i| {
            IpNetwork::V4(
                ipnetwork::Ipv4Network::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24)
                    .expect("net"),
            )
        })
        .collect();
    let before = p.seen_a.sent.len();
    let now = p.now;
    p.a.announce(now, prefixes.clone(), v4_attrs(A_ID));
    p.drive();
    let updates: Vec<_> = p.seen_a.sent[before..]
        .iter()
        .filter_map(|m| match m {
            Message::Update(u) => Some(u),
            _ => None,
        })
        .collect();
    // 3000 prefixes of 4 bytes = 12000 bytes: 3 messages of at most 4096 bytes.
    assert_eq!(updates.len(), 3);
    for u in &updates {
        let len = Message::Update((*u).clone())
            .to_bytes(&CodecContext {
                four_octet_as: true,
                extended_messages: false,
            })
            .len();
        assert!(len <= 4096, "UPDATE of {len} bytes");
    }
    let received: usize = p.seen_b.routes.iter().map(|r| r.announced.len()).sum();
    assert_eq!(received, 3000);
    assert_eq!(p.a.counters().prefixes_sent, 3000);
}

#[test]
fn replace_routes_sends_only_the_difference() {
    let mut p = Pair::ebgp();
    p.start();
    let n1: IpNetwork = "10.244.1.0/24".parse().expect("net");
    let n2: IpNetwork = "10.244.2.0/24".parse().expect("net");
    let now = p.now;
    p.a.replace_routes(now, vec![(n1, v4_attrs(A_ID)), (n2, v4_attrs(A_ID))]);
    p.drive();
    let before = p.seen_b.routes.len();
    p.a.replace_routes(now, vec![(n2, v4_attrs(A_ID))]);
    p.drive();
    let new: Vec<_> = p.seen_b.routes[before..].to_vec();
    assert_eq!(new.len(), 1);
    assert_eq!(new[0].withdrawn, vec![n1]);
    assert!(new[0].announced.is_empty());
}

#[test]
fn keepalives_every_third_of_the_negotiated_hold_time() {
    let mut a = SessionConfig::new(65001, A_ID, 65002);
    a.hold_time = 9;
    let mut b = SessionConfig::new(65002, B_ID, 65001);
    b.passive = true;
    let mut p = Pair::new(a, b);
    p.start();
    // The smaller hold time wins on both sides.
    assert_eq!(p.b.negotiated().map(|n| n.hold_time), Some(9));
    let (ka_a, ka_b) = (keepalives(&p.seen_a), keepalives(&p.seen_b));
    p.run_for(Duration::from_secs(60));
    assert_eq!(keepalives(&p.seen_a) - ka_a, 20);
    assert_eq!(keepalives(&p.seen_b) - ka_b, 20);
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.b.state(), State::Established);
}

#[test]
fn zero_hold_time_means_no_keepalives_and_no_expiry() {
    let mut a = SessionConfig::new(65001, A_ID, 65002);
    a.hold_time = 0;
    let mut b = SessionConfig::new(65002, B_ID, 65001);
    b.passive = true;
    let mut p = Pair::new(a, b);
    p.start();
    let ka = keepalives(&p.seen_a);
    p.link_cut = true;
    p.run_for(Duration::from_secs(3600));
    assert_eq!(keepalives(&p.seen_a), ka);
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.a.timer(Timer::Hold), None);
}

#[test]
fn hold_timer_expiry_sends_notification_and_restarts() {
    let mut p = Pair::ebgp();
    p.start();
    let cut_at = p.now;
    p.link_cut = true;
    // Nothing arrives any more: after 90 s both sides give up.
    p.run_for(Duration::from_secs(89));
    assert_eq!(p.a.state(), State::Established);
    p.run_for(Duration::from_secs(2));
    assert_eq!(p.a.state(), State::Idle);
    assert_eq!(
        p.seen_a.notifications_sent,
        vec![Notification::new(4, 0, Bytes::new())]
    );
    assert_eq!(p.a.counters().errors.hold_timer_expired, 1);
    assert!(p.now >= cut_at + Duration::from_secs(90));
    // The automatic restart brings the session back once the link heals.
    p.link_cut = false;
    p.run_for(Duration::from_secs(10));
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.b.state(), State::Established);
    assert_eq!(p.a.counters().established, 2);
}

#[test]
fn admin_stop_sends_cease_and_stays_down() {
    let mut p = Pair::ebgp();
    p.start();
    let now = p.now;
    p.a.handle(now, AdminEvent::Stop);
    p.drive();
    assert_eq!(p.seen_a.notifications_sent, vec![Notification::cease(2)]);
    assert_eq!(
        p.seen_b.notifications_received,
        vec![Notification::cease(2)]
    );
    p.run_for(Duration::from_secs(600));
    assert_eq!(p.a.state(), State::Idle);
    // B is passive and waits in Active for a new connection.
    assert_eq!(p.b.state(), State::Active);
}

#[test]
fn route_refresh_resends_the_adj_rib_out() {
    let mut p = Pair::ebgp();
    let now = p.now;
    p.a.announce(
        now,
        vec!["10.244.1.0/24".parse().expect("net")],
        v4_attrs(A_ID),
    );
    p.start();
    let before = p.seen_b.routes.len();
    let rr = Message::RouteRefresh(RouteRefresh {
        family: Family::IPV4_UNICAST,
        subtype: 0,
    });
    let ctx = p.a.negotiated().expect("negotiated").codec;
    p.a.handle_bytes(now, &rr.to_bytes(&ctx));
    p.drive();
    assert_eq!(p.seen_b.routes.len(), before + 1);
}

#[test]
fn route_refreshes_sent_more_often_than_keepalives_do_not_hold_them_back() {
    // A client whose import policy changes every few seconds asks for a refresh each time;
    // its peer's hold timer counts only KEEPALIVE and UPDATE (RFC 4271 §8.2.2), so the
    // KEEPALIVEs must still go out every 30 s.
    let mut p = Pair::ebgp();
    p.start();
    assert!(p.a.negotiated().is_some_and(|n| n.route_refresh));
    let before = keepalives(&p.seen_a);
    for _ in 0..12 {
        p.run_for(Duration::from_secs(20));
        let now = p.now;
        assert!(p.a.request_refresh(now));
        p.drive();
    }
    // 240 s at one KEEPALIVE per 30 s.
    assert_eq!(keepalives(&p.seen_a) - before, 8);
    assert_eq!(p.b.counters().established, 1);
}

#[test]
fn an_update_sent_puts_off_the_next_keepalive() {
    // RFC 4271 §8.2.2: an UPDATE restarts the KeepaliveTimer as a KEEPALIVE does.
    let mut p = Pair::ebgp();
    p.start();
    let before = keepalives(&p.seen_a);
    for i in 0..12 {
        p.run_for(Duration::from_secs(20));
        let now = p.now;
        p.a.announce(
            now,
            vec![format!("10.244.{i}.0/24").parse().expect("net")],
            v4_attrs(A_ID),
        );
        p.drive();
    }
    assert_eq!(keepalives(&p.seen_a), before);
    assert_eq!(p.b.counters().established, 1);
}

#[test]
fn a_route_refresh_received_keeps_the_session_up_like_a_keepalive() {
    // A peer that sends only ROUTE-REFRESHes for longer than the hold time (as podroute
    // agents before cf613c2 do when they refresh often) is alive.
    let (mut s, mut now) = open_sent();
    let open = Open::new(65002, 90, B_ID, vec![Capability::RouteRefresh]);
    s.handle_bytes(now, &Message::Open(open).to_bytes(&CodecContext::default()));
    s.handle_bytes(now, &Message::Keepalive.to_bytes(&CodecContext::default()));
    assert_eq!(s.state(), State::Established);
    let ctx = s.negotiated().expect("negotiated").codec;
    let refresh = Message::RouteRefresh(RouteRefresh {
        family: Family::IPV4_UNICAST,
        subtype: 0,
    })
    .to_bytes(&ctx);
    let end = now + Duration::from_secs(300);
    while now < end {
        now += Duration::from_secs(20);
        while let Some(t) = s.poll_timeout().filter(|t| *t <= now) {
            s.handle_timeout(t);
        }
        s.handle_bytes(now, &refresh);
        while s.poll_action().is_some() {}
        assert_eq!(
            s.state(),
            State::Established,
            "{:?} before the end",
            end - now
        );
    }
    assert_eq!(s.counters().errors.hold_timer_expired, 0);
}

// ---- OPEN and header errors, each with its NOTIFICATION ----

/// A session that has sent its OPEN and waits for the peer's.
fn open_sent() -> (Session, Instant) {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(65001, A_ID, 65002));
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    while s.poll_action().is_some() {}
    assert_eq!(s.state(), State::OpenSent);
    (s, now)
}

fn notification_after(bytes: &[u8]) -> (Notification, Session, Instant) {
    let (mut s, now) = open_sent();
    s.handle_bytes(now, bytes);
    let actions: Vec<Action> = std::iter::from_fn(|| s.poll_action()).collect();
    assert_eq!(s.state(), State::Idle, "{actions:?}");
    assert!(actions.contains(&Action::Disconnect));
    let sent: Vec<Message> = actions
        .iter()
        .filter_map(|a| match a {
            Action::Send(b) => Some(decode_all(b)),
            _ => None,
        })
        .flatten()
        .collect();
    let n = actions
        .iter()
        .find_map(|a| match a {
            Action::NotificationSent(n) => Some(n.clone()),
            _ => None,
        })
        .expect("a NOTIFICATION was sent");
    // What was reported is what went on the wire.
    assert_eq!(sent, vec![Message::Notification(n.clone())]);
    (n, s, now)
}

fn peer_open(asn: u32, hold: u16, id: Ipv4Addr) -> Vec<u8> {
    Message::Open(Open::new(asn, hold, id, vec![]))
        .to_bytes(&CodecContext::default())
        .to_vec()
}

#[test]
fn bad_version_gets_2_1_with_our_version() {
    let mut bytes = peer_open(65002, 90, B_ID);
    bytes[19] = 3;
    let (n, ..) = notification_after(&bytes);
    assert_eq!((n.code, n.subcode, n.data.as_ref()), (2, 1, &[0u8, 4][..]));
}

#[test]
fn wrong_peer_as_gets_2_2() {
    let (n, ..) = notification_after(&peer_open(65003, 90, B_ID));
    assert_eq!((n.code, n.subcode), (2, 2));
}

#[test]
fn zero_identifier_gets_2_3() {
    let (n, ..) = notification_after(&peer_open(65002, 90, Ipv4Addr::UNSPECIFIED));
    assert_eq!((n.code, n.subcode), (2, 3));
}

#[test]
fn own_identifier_on_ibgp_gets_2_3() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(65001, A_ID, 65001));
    s.handle(now, AdminEvent::Start);
    s.handle_connected(now);
    s.handle_bytes(now, &peer_open(65001, 90, A_ID));
    let n = std::iter::from_fn(|| s.poll_action()).find_map(|a| match a {
        Action::NotificationSent(n) => Some(n),
        _ => None,
    });
    assert_eq!(n.map(|n| (n.code, n.subcode)), Some((2, 3)));
}

#[test]
fn hold_time_of_one_or_two_seconds_gets_2_6() {
    for hold in [1, 2] {
        let (n, ..) = notification_after(&peer_open(65002, hold, B_ID));
        assert_eq!((n.code, n.subcode), (2, 6));
    }
}

#[test]
fn unknown_optional_parameter_gets_2_4() {
    let mut body = BytesMut::new();
    body.put_u8(4);
    body.put_u16(65002);
    body.put_u16(90);
    body.put_slice(&B_ID.octets());
    // Optional parameters: 3 bytes, one parameter of type 1 (authentication) with 1 byte.
    body.put_slice(&[3, 1, 1, 0]);
    let mut bytes = vec![0xff; 16];
    bytes.extend_from_slice(&((19 + body.len()) as u16).to_be_bytes());
    bytes.push(1);
    bytes.extend_from_slice(&body);
    let (n, ..) = notification_after(&bytes);
    assert_eq!((n.code, n.subcode), (2, 4));
}

#[test]
fn header_errors_get_code_1() {
    let mut bad_marker = peer_open(65002, 90, B_ID);
    bad_marker[3] = 0;
    assert_eq!(notification_after(&bad_marker).0.subcode, 1);

    let mut bad_type = peer_open(65002, 90, B_ID);
    bad_type[18] = 9;
    let (n, ..) = notification_after(&bad_type);
    assert_eq!((n.code, n.subcode, n.data.as_ref()), (1, 3, &[9u8][..]));

    // A KEEPALIVE claiming 20 bytes.
    let mut bad_len = vec![0xff; 16];
    bad_len.extend_from_slice(&[0, 20, 4, 0]);
    let (n, ..) = notification_after(&bad_len);
    assert_eq!((n.code, n.subcode, n.data.as_ref()), (1, 2, &[0u8, 20][..]));
}

#[test]
fn keepalive_before_open_is_an_fsm_error() {
    let mut ka = vec![0xff; 16];
    ka.extend_from_slice(&[0, 19, 4]);
    let (n, ..) = notification_after(&ka);
    assert_eq!((n.code, n.subcode), (5, 1));
}

#[test]
fn after_an_open_error_the_session_restarts_by_itself() {
    let (_, mut s, now) = notification_after(&peer_open(65003, 90, B_ID));
    let at = s.poll_timeout().expect("idle hold timer");
    assert_eq!(at, now + Duration::from_secs(5));
    s.handle_timeout(at);
    assert_eq!(s.state(), State::Connect);
    assert!(std::iter::from_fn(|| s.poll_action()).any(|a| a == Action::Connect));
}

#[test]
fn connect_retry_timer_retries_the_connection() {
    let now = Instant::now();
    let mut s = Session::new(SessionConfig::new(65001, A_ID, 65002));
    s.handle(now, AdminEvent::Start);
    assert_eq!(
        s.poll_action(),
        Some(Action::StateChanged {
            from: State::Idle,
            to: State::Connect
        })
    );
    assert_eq!(s.poll_action(), Some(Action::Connect));
    // TCP fails: wait in Active for ConnectRetry, then try again.
    s.handle_closed(now);
    assert_eq!(s.state(), State::Active);
    let at = s.poll_timeout().expect("connect retry");
    assert_eq!(at, now + Duration::from_secs(30));
    s.handle_timeout(at);
    assert_eq!(s.state(), State::Connect);
    assert!(std::iter::from_fn(|| s.poll_action()).any(|a| a == Action::Connect));
}

/// A started session with ConnectRetry 1 s (doubling to 30 s) and 250 ms after a refusal.
fn retrying_session() -> (Session, Instant) {
    let mut config = SessionConfig::new(65001, A_ID, 65002);
    config.connect_retry = Duration::from_secs(1);
    config.connect_retry_max = Duration::from_secs(30);
    config.refused_retry = Duration::from_millis(250);
    let mut s = Session::new(config);
    let now = Instant::now();
    s.handle(now, AdminEvent::Start);
    (s, now)
}

/// `times` failed attempts in a row (each reported by `fail`): the wait before each retry.
fn retry_waits(
    s: &mut Session,
    now: &mut Instant,
    times: u32,
    fail: fn(&mut Session, Instant),
) -> Vec<Duration> {
    let mut waits = Vec::new();
    for _ in 0..times {
        assert_eq!(s.state(), State::Connect);
        fail(s, *now);
        assert_eq!(s.state(), State::Active);
        let at = s.poll_timeout().expect("connect retry");
        waits.push(at - *now);
        *now = at;
        s.handle_timeout(*now);
    }
    waits
}

#[test]
fn a_refused_connection_is_retried_soon_and_without_backing_off() {
    let (mut s, mut now) = retrying_session();
    // The peer's host answers with a reset while its speaker starts: each refusal is
    // retried 250 ms later, the last of them as quickly as the first.
    let waits = retry_waits(&mut s, &mut now, REFUSED_RETRIES, Session::handle_refused);
    assert!(waits.iter().all(|w| *w == Duration::from_millis(250)));
    // A peer that keeps refusing is then tried less and less often, as after any failure.
    let waits = retry_waits(&mut s, &mut now, 3, Session::handle_refused);
    assert_eq!(waits, [1, 2, 4].map(Duration::from_secs));
}

/// A passive session (A's side of a mesh pair where B connects) started at `now`.
fn passive_session(connect_after: Option<Duration>) -> (Session, Instant) {
    let mut config = SessionConfig::new(65001, A_ID, 65002);
    config.passive = true;
    config.passive_connect_after = connect_after;
    let mut s = Session::new(config);
    let now = Instant::now();
    s.handle(now, AdminEvent::Start);
    (s, now)
}

fn asks_to_connect(s: &mut Session) -> bool {
    std::iter::from_fn(|| s.poll_action()).any(|a| a == Action::Connect)
}

#[test]
fn a_passive_session_connects_out_itself_when_the_peer_does_not_in_time() {
    let (mut s, now) = passive_session(Some(Duration::from_secs(5)));
    assert!(!asks_to_connect(&mut s));
    assert_eq!(s.state(), State::Active);
    // The peer, backing off after a long outage of ours, has not connected: we do.
    s.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(s.state(), State::Connect);
    assert!(asks_to_connect(&mut s));
}

#[test]
fn a_passive_session_the_peer_connected_to_in_time_does_not_connect_out() {
    let (mut s, now) = passive_session(Some(Duration::from_secs(5)));
    let _ = asks_to_connect(&mut s);
    s.handle_connected(now + Duration::from_secs(1));
    s.handle_timeout(now + Duration::from_secs(5));
    assert_eq!(s.state(), State::OpenSent);
    assert!(!asks_to_connect(&mut s));
}

#[test]
fn a_passive_session_whose_incoming_connection_failed_waits_as_long_again() {
    let (mut s, now) = passive_session(Some(Duration::from_secs(5)));
    let _ = asks_to_connect(&mut s);
    let t = now + Duration::from_secs(1);
    s.handle_connected(t);
    s.handle_closed(t);
    assert_eq!(s.state(), State::Active);
    // Not the 1-s back-off of an active session: the full wait, from the failure.
    s.handle_timeout(t + Duration::from_millis(4900));
    assert!(!asks_to_connect(&mut s));
    s.handle_timeout(t + Duration::from_secs(5));
    assert!(asks_to_connect(&mut s));
}

#[test]
fn a_passive_session_without_a_wait_never_connects_out() {
    let (mut s, now) = passive_session(None);
    s.handle_timeout(now + Duration::from_secs(3600));
    assert_eq!(s.state(), State::Active);
    assert!(!asks_to_connect(&mut s));
}

#[test]
fn a_failure_that_is_no_refusal_backs_off_from_the_first() {
    let (mut s, mut now) = retrying_session();
    let waits = retry_waits(&mut s, &mut now, 3, Session::handle_closed);
    assert_eq!(waits, [1, 2, 4].map(Duration::from_secs));
}

// ---- connection collision (RFC 4271 §6.8) ----

/// Two connections at once: A→B and B→A. Each is a pair of sessions. The driver rule in
/// `collision`: when a session reaches OpenConfirm and the other connection for the same
/// peer is in OpenSent/OpenConfirm, resolve by BGP identifier and close the loser.
#[test]
fn collision_keeps_the_connection_of_the_higher_identifier() {
    // Connection 1 initiated by A (A outgoing, B incoming).
    let a_cfg = SessionConfig::new(65001, A_ID, 65002);
    let b_cfg = SessionConfig::new(65002, B_ID, 65001);
    let passive = |c: &SessionConfig| {
        let mut c = c.clone();
        c.passive = true;
        c
    };
    let mut conn1 = Pair::new(a_cfg.clone(), passive(&b_cfg));
    // Connection 2 initiated by B (B outgoing, A incoming): in this pair, `a` is B.
    let mut conn2 = Pair::new(b_cfg.clone(), passive(&a_cfg));
    conn1.start();
    conn2.start();
    // Without resolution both would establish; the driver resolves at OpenConfirm. Here
    // both got there in the same instant; each side decides with its own identifiers.
    let a_keeps = collision::resolve(A_ID, conn1.a.remote_id().expect("B's id"));
    let b_keeps = collision::resolve(B_ID, conn2.a.remote_id().expect("A's id"));
    // B has the higher identifier: both agree to keep B's outgoing connection (conn2).
    assert_eq!(a_keeps, Keep::Incoming);
    assert_eq!(b_keeps, Keep::Outgoing);
    let now = conn1.now;
    conn1.a.close_collision(now);
    conn1.drive();
    assert_eq!(
        conn1.seen_a.notifications_sent,
        vec![Notification::cease(7)]
    );
    assert_eq!(
        conn1.seen_b.notifications_received,
        vec![Notification::cease(7)]
    );
    // The loser stays down; the winner stays up.
    conn1.run_for(Duration::from_secs(600));
    assert_eq!(conn1.a.state(), State::Idle);
    assert_eq!(conn2.a.state(), State::Established);
    assert_eq!(conn2.b.state(), State::Established);
}

#[test]
fn equal_attributes_from_separate_calls_share_one_update() {
    let mut p = Pair::ebgp();
    let now = p.now;
    p.a.announce(
        now,
        vec!["10.244.1.0/24".parse().expect("net")],
        v4_attrs(A_ID),
    );
    p.a.announce(
        now,
        vec!["10.244.2.0/24".parse().expect("net")],
        v4_attrs(A_ID),
    );
    p.start();
    let with_routes: Vec<_> = p
        .seen_b
        .routes
        .iter()
        .filter(|r| !r.announced.is_empty())
        .collect();
    assert_eq!(with_routes.len(), 1);
    assert_eq!(with_routes[0].announced.len(), 2);
}

#[test]
fn extended_messages_carry_thousands_of_prefixes_in_one_update() {
    let mut p = Pair::ebgp();
    p.start();
    assert!(
        p.a.negotiated()
            .expect("negotiated")
            .codec
            .extended_messages
    );
    let prefixes: Vec<IpNetwork> = (0..3000u32)
        .map(|i| {
            IpNetwork::V4(
                ipnetwork::Ipv4Network::new(Ipv4Addr::from((10 << 24) | (i << 8)), 24)
                    .expect("net"),
            )
        })
        .collect();
    let before = p.seen_b.routes.len();
    let now = p.now;
    p.a.announce(now, prefixes, v4_attrs(A_ID));
    p.drive();
    assert_eq!(p.seen_b.routes.len(), before + 1);
    assert_eq!(p.seen_b.routes[before].announced.len(), 3000);
}

#[test]
fn ipv6_withdrawals_travel_in_mp_unreach() {
    let mut p = Pair::ebgp();
    let now = p.now;
    let v6: IpNetwork = "fd00:10:244:1::/64".parse().expect("net");
    let attrs = PathAttributes {
        next_hop: Some(NextHop::V6 {
            global: "fd00:198:18::1".parse().expect("addr"),
            link_local: Some("fe80::1".parse().expect("addr")),
        }),
        ..PathAttributes::default()
    };
    p.a.announce(now, [v6], attrs);
    p.start();
    let got = p.seen_b.routes.last().expect("route").clone();
    assert_eq!(got.family, Family::IPV6_UNICAST);
    assert_eq!(
        got.attributes.and_then(|a| a.next_hop),
        Some(NextHop::V6 {
            global: "fd00:198:18::1".parse().expect("addr"),
            link_local: Some("fe80::1".parse().expect("addr")),
        })
    );
    let now = p.now;
    p.a.withdraw(now, [v6]);
    p.drive();
    let last = p.seen_b.routes.last().expect("withdrawal");
    assert_eq!(
        (last.family, last.withdrawn.clone()),
        (Family::IPV6_UNICAST, vec![v6])
    );
    let Some(Message::Update(u)) = p.seen_a.sent.last() else {
        panic!("an UPDATE")
    };
    assert!(u.withdrawn.is_empty() && u.mp_unreach.is_some());
}

#[test]
fn idle_hold_backs_off_while_the_peer_keeps_refusing() {
    let (_, mut s, mut now) = notification_after(&peer_open(65003, 90, B_ID));
    let mut waits = Vec::new();
    for _ in 0..6 {
        let at = s.poll_timeout().expect("idle hold timer");
        waits.push((at - now).as_secs());
        now = at;
        s.handle_timeout(now);
        s.handle_connected(now);
        s.handle_bytes(now, &peer_open(65003, 90, B_ID));
        while s.poll_action().is_some() {}
        assert_eq!(s.state(), State::Idle);
    }
    assert_eq!(waits, vec![5, 10, 20, 40, 80, 120]);
}

/// A (AS 65001, any peer AS) and B (passive, `b_as`, expecting 65001).
fn any_as_pair(b_as: u32) -> Pair {
    let a = SessionConfig::new(65001, A_ID, PeerAs::Any);
    let mut b = SessionConfig::new(b_as, B_ID, 65001);
    b.passive = true;
    Pair::new(a, b)
}

/// The attributes B last received for an IPv4 announcement.
fn last_v4_attributes(seen: &Seen) -> PathAttributes {
    seen.routes
        .iter()
        .rev()
        .find(|r| r.family == Family::IPV4_UNICAST && !r.announced.is_empty())
        .and_then(|r| r.attributes.as_deref().cloned())
        .expect("an IPv4 announcement")
}

#[test]
fn any_peer_as_takes_an_external_as_from_the_open_and_runs_ebgp() {
    let mut p = any_as_pair(65002);
    let now = p.now;
    let v4: Vec<IpNetwork> = vec!["10.244.1.0/24".parse().expect("net")];
    assert_eq!(p.a.peer_as(), None, "nothing learned before an OPEN");
    p.a.announce(now, v4.clone(), v4_attrs(A_ID));
    p.start();
    // B checks that A's OPEN carries 65001: our OPEN keeps our AS.
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.b.state(), State::Established);
    assert_eq!(p.a.peer_as(), Some(65002));
    assert!(!p.a.is_ibgp());
    let got = last_v4_attributes(&p.seen_b);
    assert_eq!(got.as_path.first_as(), Some(65001), "own AS prepended");
    assert_eq!(got.local_pref, None, "no LOCAL_PREF to an external peer");
    // The peer's routes must start with its AS (RFC 4271 §6.3): the learned one counts.
    let now = p.now;
    let mut from_b = v4_attrs(B_ID);
    from_b.as_path.prepend(65099);
    p.b.announce(now, ["10.99.0.0/24".parse().expect("net")], from_b);
    p.drive();
    let last = p.seen_a.routes.last().expect("routes from B");
    assert_eq!(last.announced.len(), 1, "{last:?}");
}

#[test]
fn any_peer_as_with_our_own_as_in_the_open_runs_ibgp() {
    let mut p = any_as_pair(65001);
    let now = p.now;
    p.a.announce(now, ["10.244.1.0/24".parse().expect("net")], v4_attrs(A_ID));
    p.start();
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.a.peer_as(), Some(65001));
    assert!(p.a.is_ibgp());
    let got = last_v4_attributes(&p.seen_b);
    assert_eq!(
        got.as_path.first_as(),
        None,
        "no AS prepended within the AS"
    );
    assert_eq!(got.local_pref, Some(100));
}

#[test]
fn any_peer_as_rewrites_its_routes_when_the_next_open_is_of_the_other_kind() {
    let mut p = any_as_pair(65002);
    let now = p.now;
    p.a.announce(now, ["10.244.1.0/24".parse().expect("net")], v4_attrs(A_ID));
    p.start();
    assert!(!p.a.is_ibgp());
    // The eBGP peer goes; an iBGP one comes on the same address.
    let now = p.now;
    p.b.handle(now, AdminEvent::Stop);
    p.drive();
    assert_ne!(p.a.state(), State::Established);
    let mut b = SessionConfig::new(65001, B_ID, 65001);
    b.passive = true;
    p.b = Session::new(b);
    p.seen_b = Seen::default();
    let now = p.now;
    p.b.handle(now, AdminEvent::Start);
    p.run_for(Duration::from_secs(60));
    assert_eq!(p.a.state(), State::Established);
    assert_eq!(p.a.peer_as(), Some(65001));
    let got = last_v4_attributes(&p.seen_b);
    assert_eq!(got.as_path.first_as(), None, "the eBGP prepend is gone");
    assert_eq!(got.local_pref, Some(100));
}

#[test]
fn any_peer_as_still_refuses_as_0_and_as_trans() {
    for bad in [0, 23456] {
        let now = Instant::now();
        let mut s = Session::new(SessionConfig::new(65001, A_ID, PeerAs::Any));
        s.handle(now, AdminEvent::Start);
        s.handle_connected(now);
        while s.poll_action().is_some() {}
        s.handle_bytes(now, &peer_open(bad, 90, B_ID));
        let n = std::iter::from_fn(|| s.poll_action()).find_map(|a| match a {
            Action::NotificationSent(n) => Some(n),
            _ => None,
        });
        assert_eq!(n.map(|n| (n.code, n.subcode)), Some((2, 2)), "AS {bad}");
    }
}
