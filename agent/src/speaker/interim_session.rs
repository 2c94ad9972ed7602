//! Interim sans-IO iBGP session for the mesh, until `podroute-bgp` exposes its `Session`.
//!
//! The driver owns the TCP connection, so the FSM starts at "connection up" (RFC 4271 §8.2.2:
//! Connect → OpenSent) and ends at any error; reconnecting is the driver's job.
//! States: OpenSent → OpenConfirm → Established. Timers (hold, keepalive) are data: deadlines
//! read by the driver through [`SessionCore::poll_timeout`].

use std::collections::{BTreeMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use super::interim_wire::{self as wire, Message, Notification};
use super::session::{LocalSettings, SessionCore, SessionEvent};
use crate::peers::PeerSpec;

/// Hold time while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
const OPEN_HOLD: Duration = Duration::from_secs(240);

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    Idle,
    OpenSent,
    OpenConfirm,
    Established,
}

/// One iBGP session with a mesh peer.
#[derive(Debug)]
pub struct InterimSession {
    local: LocalSettings,
    peer_as: u32,
    state: State,
    inbox: Vec<u8>,
    events: VecDeque<SessionEvent>,
    hold: Option<Duration>,
    hold_deadline: Option<Instant>,
    keepalive_deadline: Option<Instant>,
    /// What we want the peer to have.
    advertised: BTreeMap<IpNetwork, IpAddr>,
    /// What the peer has from us.
    sent: BTreeMap<IpNetwork, IpAddr>,
}

impl InterimSession {
    /// A session for `spec` from `local`.
    pub fn new(spec: &PeerSpec, local: LocalSettings) -> Self {
        Self {
            local,
            peer_as: spec.remote_as,
            state: State::Idle,
            inbox: Vec::new(),
            events: VecDeque::new(),
            hold: None,
            hold_deadline: None,
            keepalive_deadline: None,
            advertised: BTreeMap::new(),
            sent: BTreeMap::new(),
        }
    }

    fn transmit(&mut self, bytes: Vec<u8>) {
        self.events.push_back(SessionEvent::Transmit(bytes));
    }

    /// Sends a NOTIFICATION and ends the session (RFC 4271 §6).
    fn fail(&mut self, notification: Notification, why: &str) {
        let mut out = Vec::new();
        wire::encode_notification(&mut out, notification);
        self.transmit(out);
        self.close(format!(
            "{why} (sent NOTIFICATION {}/{})",
            notification.code, notification.subcode
        ));
    }

    fn close(&mut self, reason: String) {
        self.state = State::Idle;
        self.hold_deadline = None;
        self.keepalive_deadline = None;
        self.events.push_back(SessionEvent::Closed(reason));
    }

    fn handle_message(&mut self, now: Instant, message: Message) {
        match (self.state, message) {
            (_, Message::Notification(n)) => {
                self.close(format!("peer sent NOTIFICATION {}/{}", n.code, n.subcode));
            }
            (State::OpenSent, Message::Open(open)) => self.on_open(now, open),
            (State::OpenConfirm, Message::Keepalive) => {
                self.state = State::Established;
                self.reset_hold(now);
                self.events.push_back(SessionEvent::Established);
                self.sync_advertisements();
                for ipv6 in [false, true] {
                    let mut out = Vec::new();
                    wire::encode_end_of_rib(&mut out, ipv6);
                    self.transmit(out);
                }
            }
            (State::Established, Message::Keepalive) => self.reset_hold(now),
            (State::Established, Message::Update(update)) => {
                self.reset_hold(now);
                if let Some(ipv6) = update.end_of_rib {
                    self.events.push_back(SessionEvent::EndOfRib { ipv6 });
                } else {
                    self.events.push_back(SessionEvent::Update {
                        announced: update.announced,
                        withdrawn: update.withdrawn,
                    });
                }
            }
            (_, _) => self.fail(
                Notification::FSM_ERROR,
                "unexpected message for the session state",
            ),
        }
    }

    /// OPEN checks of RFC 4271 §6.2, then KEEPALIVE and OpenConfirm.
    fn on_open(&mut self, now: Instant, open: wire::Open) {
        if open.as_number != self.peer_as {
            return self.fail(
                Notification::BAD_PEER_AS,
                "peer AS differs from the configured one",
            );
        }
        if open.hold_time == 1 || open.hold_time == 2 {
            return self.fail(Notification::BAD_HOLD_TIME, "hold time 1 or 2");
        }
        if open.identifier == Ipv4Addr::UNSPECIFIED || open.identifier == self.local.router_id {
            return self.fail(Notification::BAD_IDENTIFIER, "bad or equal BGP identifier");
        }
        let hold = open.hold_time.min(self.local.hold_time);
        self.hold = (hold != 0).then(|| Duration::from_secs(u64::from(hold)));
        let mut out = Vec::new();
        wire::encode_keepalive(&mut out);
        self.transmit(out);
        self.state = State::OpenConfirm;
        self.reset_hold(now);
        self.arm_keepalive(now);
    }

    fn reset_hold(&mut self, now: Instant) {
        self.hold_deadline = self.hold.map(|h| now + h);
    }

    /// KEEPALIVE every third of the hold time (RFC 4271 §10).
    fn arm_keepalive(&mut self, now: Instant) {
        self.keepalive_deadline = self.hold.map(|h| now + h / 3);
    }

    /// Sends the difference between what we want the peer to have and what it has.
    fn sync_advertisements(&mut self) {
        if self.state != State::Established {
            return;
        }
        let mut out = Vec::new();
        let gone: Vec<IpNetwork> = self
            .sent
            .keys()
            .filter(|p| !self.advertised.contains_key(p))
            .copied()
            .collect();
        for prefix in gone {
            wire::encode_withdraw(&mut out, &prefix);
            self.sent.remove(&prefix);
        }
        for (prefix, next_hop) in &self.advertised {
            if self.sent.get(prefix) != Some(next_hop) {
                wire::encode_announce(&mut out, prefix, *next_hop);
                self.sent.insert(*prefix, *next_hop);
            }
        }
        if !out.is_empty() {
            self.transmit(out);
        }
    }
}

impl SessionCore for InterimSession {
    fn connected(&mut self, now: Instant) {
        let mut out = Vec::new();
        wire::encode_open(
            &mut out,
            self.local.as_number,
            self.local.hold_time,
            self.local.router_id,
        );
        self.transmit(out);
        self.state = State::OpenSent;
        self.hold_deadline = Some(now + OPEN_HOLD);
    }

    fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        self.inbox.extend_from_slice(bytes);
        while self.state != State::Idle {
            match wire::frame_len(&self.inbox) {
                Ok(None) => break,
                Ok(Some(len)) => {
                    let frame: Vec<u8> = self.inbox.drain(..len).collect();
                    match wire::decode(&frame) {
                        Ok(message) => self.handle_message(now, message),
                        Err(notification) => self.fail(notification, "malformed message"),
                    }
                }
                Err(notification) => self.fail(notification, "bad message header"),
            }
        }
    }

    fn handle_timeout(&mut self, now: Instant) {
        if self.hold_deadline.is_some_and(|d| d <= now) {
            return self.fail(Notification::HOLD_EXPIRED, "hold timer expired");
        }
        if self.keepalive_deadline.is_some_and(|d| d <= now) {
            let mut out = Vec::new();
            wire::encode_keepalive(&mut out);
            self.transmit(out);
            self.arm_keepalive(now);
        }
    }

    fn poll_timeout(&self) -> Option<Instant> {
        match (self.hold_deadline, self.keepalive_deadline) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    fn poll_event(&mut self) -> Option<SessionEvent> {
        self.events.pop_front()
    }

    fn advertise(&mut self, _now: Instant, routes: &[(IpNetwork, IpAddr)]) {
        self.advertised = routes.iter().copied().collect();
        self.sync_advertisements();
    }

    fn stop(&mut self, _now: Instant) {
        if self.state != State::Idle {
            self.fail(Notification::CEASE_DECONFIGURED, "peer removed");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::peers::PeerKind;

    fn pair() -> (InterimSession, InterimSession) {
        let spec = |n: u8| PeerSpec {
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, n)),
            remote_as: 64512,
            kind: PeerKind::Mesh {
                node: format!("node-{n}"),
            },
            md5_password: None,
            gtsm: false,
        };
        let local = |n: u8| LocalSettings {
            as_number: 64512,
            router_id: Ipv4Addr::new(198, 18, 0, n),
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, n)),
            hold_time: 9,
        };
        (
            InterimSession::new(&spec(2), local(1)),
            InterimSession::new(&spec(1), local(2)),
        )
    }

    /// Moves bytes both ways until quiet; returns the non-transmit events of each side.
    fn pump(
        now: Instant,
        a: &mut InterimSession,
        b: &mut InterimSession,
    ) -> (Vec<SessionEvent>, Vec<SessionEvent>) {
        let (mut ea, mut eb) = (Vec::new(), Vec::new());
        loop {
            let mut moved = false;
            while let Some(e) = a.poll_event() {
                match e {
                    SessionEvent::Transmit(bytes) => {
                        b.handle_bytes(now, &bytes);
                        moved = true;
                    }
                    other => ea.push(other),
                }
            }
            while let Some(e) = b.poll_event() {
                match e {
                    SessionEvent::Transmit(bytes) => {
                        a.handle_bytes(now, &bytes);
                        moved = true;
                    }
                    other => eb.push(other),
                }
            }
            if !moved {
                return (ea, eb);
            }
        }
    }

    #[test]
    fn establishes_exchanges_routes_and_end_of_rib() {
        let now = Instant::now();
        let (mut a, mut b) = pair();
        let route = (
            "10.244.1.0/24".parse().expect("net"),
            "198.18.0.1".parse().expect("ip"),
        );
        a.advertise(now, &[route]);
        a.connected(now);
        b.connected(now);
        let (ea, eb) = pump(now, &mut a, &mut b);
        assert!(ea.contains(&SessionEvent::Established));
        assert!(eb.contains(&SessionEvent::Update {
            announced: vec![route],
            withdrawn: vec![]
        }));
        assert!(eb.contains(&SessionEvent::EndOfRib { ipv6: false }));
        assert!(eb.contains(&SessionEvent::EndOfRib { ipv6: true }));

        a.advertise(now, &[]);
        let (_, eb) = pump(now, &mut a, &mut b);
        assert_eq!(
            eb,
            vec![SessionEvent::Update {
                announced: vec![],
                withdrawn: vec![route.0]
            }]
        );
    }

    #[test]
    fn hold_timer_expiry_closes_with_notification() {
        let now = Instant::now();
        let (mut a, mut b) = pair();
        a.connected(now);
        b.connected(now);
        pump(now, &mut a, &mut b);
        // Keepalives keep it up at a third of the 9 s hold time.
        let deadline = a.poll_timeout().expect("timer armed");
        assert_eq!(deadline, now + Duration::from_secs(3));
        a.handle_timeout(now + Duration::from_secs(10));
        let events: Vec<_> = std::iter::from_fn(|| a.poll_event()).collect();
        assert!(
            matches!(events.last(), Some(SessionEvent::Closed(reason)) if reason.contains("hold timer"))
        );
    }

    #[test]
    fn wrong_peer_as_is_refused() {
        let now = Instant::now();
        let (mut a, mut b) = pair();
        b.local.as_number = 65001;
        a.connected(now);
        b.connected(now);
        let (ea, _) = pump(now, &mut a, &mut b);
        assert!(matches!(ea.last(), Some(SessionEvent::Closed(reason)) if reason.contains("2/2")));
    }
}
