//! One peer's BGP session: the RFC 4271 §8 finite state machine, sans-IO.
//!
//! # Driving a session
//!
//! ```text
//! let mut s = Session::new(config);
//! s.handle(now, AdminEvent::Start);
//! loop {
//!     while let Some(action) = s.poll_action() {
//!         match action {
//!             Action::Connect => /* open TCP to the peer; then s.handle_connected(now)
//!                                   or, on failure, s.handle_closed(now) */,
//!             Action::Send(bytes) => /* write all of it to the connection */,
//!             Action::Disconnect => /* close the connection */,
//!             Action::Routes(r) => /* into the Rib; StateChanged away from Established
//!                                     means: drop this peer's routes */,
//!             _ => /* logs, metrics */,
//!         }
//!     }
//!     wait for: bytes (s.handle_bytes), TCP closed (s.handle_closed), an accepted incoming
//!     connection (s.handle_connected), s.poll_timeout() (s.handle_timeout), or a route
//!     change to advertise (s.announce / s.withdraw / s.replace_routes).
//! }
//! ```
//!
//! Every state change goes through one function and is reported as
//! [`Action::StateChanged`]. Timers are data ([`Timer`]); the driver only sleeps until
//! [`Session::poll_timeout`]. A session handles one connection at a time; see
//! [`crate::collision`] for two at once.

mod adj_rib_out;
mod timer;
mod types;

use std::collections::{HashMap, VecDeque};
use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::{Duration, Instant};

use bytes::{Bytes, BytesMut};
use ipnetwork::IpNetwork;

pub use timer::Timer;
pub use types::{Action, AdminEvent, Negotiated, PeerAs, ReceivedRoutes, SessionConfig, State};

use crate::counters::SessionCounters;
use crate::message::{
    Capability, CodecContext, DecodeError, Family, Message, Notification, Open, OpenError,
    PathAttributes, RouteRefresh, Update, cease, error_code, frame_len,
};
use adj_rib_out::AdjRibOut;
use timer::TimerTable;

/// Hold time used while waiting for the peer's OPEN (RFC 4271 §8.2.2 suggests 4 minutes).
const OPEN_HOLD_TIME: Duration = Duration::from_secs(240);

/// Ceiling of the IdleHold back-off (RFC 4271 §8.1.1 DampPeerOscillations).
const MAX_IDLE_HOLD: Duration = Duration::from_secs(120);

/// How many refused connection attempts in a row are retried after
/// [`SessionConfig::refused_retry`] before refusals back off like other failures.
pub const REFUSED_RETRIES: u32 = 100;

/// One peer's BGP session.
#[derive(Debug)]
pub struct Session {
    config: SessionConfig,
    state: State,
    timers: TimerTable,
    actions: VecDeque<Action>,
    inbuf: BytesMut,
    codec: CodecContext,
    negotiated: Option<Negotiated>,
    admin_up: bool,
    /// Current IdleHold: doubles with each failure short of Established.
    idle_hold: Duration,
    /// Current ConnectRetryTime: doubles with each failed connection attempt.
    connect_retry: Duration,
    /// Connection attempts refused in a row since the last Established.
    refusals: u32,
    /// A passive session's `passive_connect_after` has passed since its start without a
    /// connection: it connects out from then on (see [`Session::connects_out`]).
    passive_wait_over: bool,
    adj_rib_out: AdjRibOut,
    /// With [`PeerAs::Any`]: the routes as given, before the iBGP or eBGP rewrite, so that
    /// an OPEN of the other kind can have them rewritten its way. `None` for a fixed AS.
    any_as_routes: Option<HashMap<IpNetwork, Arc<PathAttributes>>>,
    /// The rewrite the Adj-RIB-Out's routes had: iBGP's or eBGP's.
    exported_ibgp: bool,
    counters: SessionCounters,
}

impl Session {
    /// A session in Idle. Nothing happens until [`AdminEvent::Start`].
    ///
    /// Out-of-range settings are corrected rather than refused: a hold time of 1 or 2
    /// becomes 3 (RFC 4271 §4.2 allows 0 or at least 3), and ConnectRetry and IdleHold
    /// are at least one second (a zero timer would spin).
    pub fn new(mut config: SessionConfig) -> Self {
        if matches!(config.hold_time, 1 | 2) {
            config.hold_time = 3;
        }
        config.connect_retry = config.connect_retry.max(Duration::from_millis(100));
        config.connect_retry_max = config.connect_retry_max.max(config.connect_retry);
        config.refused_retry = config.refused_retry.max(Duration::from_millis(100));
        config.idle_hold = config.idle_hold.max(Duration::from_secs(1));
        config.passive_connect_after = config
            .passive_connect_after
            .map(|wait| wait.max(Duration::from_millis(100)));
        let idle_hold = config.idle_hold;
        let connect_retry = config.connect_retry;
        let any_as_routes = (config.peer_as == PeerAs::Any).then(HashMap::new);
        let exported_ibgp = config.is_ibgp();
        Self {
            config,
            state: State::Idle,
            timers: TimerTable::default(),
            actions: VecDeque::new(),
            inbuf: BytesMut::new(),
            codec: CodecContext::default(),
            negotiated: None,
            admin_up: false,
            idle_hold,
            connect_retry,
            refusals: 0,
            passive_wait_over: false,
            adj_rib_out: AdjRibOut::default(),
            any_as_routes,
            exported_ibgp,
            counters: SessionCounters::default(),
        }
    }

    /// The configuration.
    pub fn config(&self) -> &SessionConfig {
        &self.config
    }

    /// Current state.
    pub fn state(&self) -> State {
        self.state
    }

    /// What the OPEN exchange settled, from OpenConfirm on.
    pub fn negotiated(&self) -> Option<&Negotiated> {
        self.negotiated.as_ref()
    }

    /// The peer's AS: the configured one, or with [`PeerAs::Any`] the one its accepted OPEN
    /// carried (`None` before that).
    pub fn peer_as(&self) -> Option<u32> {
        self.config
            .peer_as
            .fixed()
            .or_else(|| self.negotiated.as_ref().map(|n| n.remote_as))
    }

    /// True when the peer is in our AS: by configuration, or with [`PeerAs::Any`] by its
    /// accepted OPEN (false before that).
    pub fn is_ibgp(&self) -> bool {
        self.peer_as() == Some(self.config.local_as)
    }

    /// The peer's BGP identifier, once its OPEN was accepted (for [`crate::collision`]).
    pub fn remote_id(&self) -> Option<Ipv4Addr> {
        self.negotiated.as_ref().map(|n| n.remote_id)
    }

    /// The deadline of one timer, if armed.
    pub fn timer(&self, timer: Timer) -> Option<Instant> {
        self.timers.get(timer)
    }

    /// Counters.
    pub fn counters(&self) -> &SessionCounters {
        &self.counters
    }

    /// True if an incoming connection may be handed to [`Session::handle_connected`] now
    /// (Connect or Active: RFC 4271 §8.2.2; Idle refuses connections).
    pub fn accepts_connection(&self) -> bool {
        matches!(self.state, State::Connect | State::Active)
    }

    /// The next action for the driver.
    pub fn poll_action(&mut self) -> Option<Action> {
        self.actions.pop_front()
    }

    /// When [`Session::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        self.timers.next()
    }

    /// Administrative events (RFC 4271 §8.1.2).
    pub fn handle(&mut self, now: Instant, event: AdminEvent) {
        match event {
            AdminEvent::Start => {
                self.admin_up = true;
                self.idle_hold = self.config.idle_hold;
                if self.state == State::Idle {
                    self.start(now);
                }
            }
            AdminEvent::Stop => {
                self.admin_up = false;
                self.close(now, Some(Notification::cease(cease::ADMIN_SHUTDOWN)));
            }
            AdminEvent::Reset => {
                self.close(now, Some(Notification::cease(cease::ADMIN_RESET)));
                if self.admin_up {
                    self.timers.stop(Timer::IdleHold);
                    self.start(now);
                }
            }
        }
    }

    /// The TCP connection is up, outgoing or incoming (RFC 4271 Events 16/17
    /// Tcp_CR_Acked/TcpConnectionConfirmed): send OPEN and go to OpenSent.
    ///
    /// In states that already have a connection this is ignored (the driver must not
    /// hand over a second one; see [`crate::collision`]); in Idle the connection is
    /// refused with [`Action::Disconnect`].
    pub fn handle_connected(&mut self, now: Instant) {
        match self.state {
            State::Connect | State::Active => {
                self.timers.stop(Timer::ConnectRetry);
                self.inbuf.clear();
                self.codec = CodecContext::default();
                let open = self.local_open();
                self.send(now, &Message::Open(open));
                self.timers.set(Timer::Hold, now + OPEN_HOLD_TIME);
                self.set_state(State::OpenSent);
            }
            State::Idle => self.actions.push_back(Action::Disconnect),
            State::OpenSent | State::OpenConfirm | State::Established => {}
        }
    }

    /// The TCP connection failed or closed (Events 18 TcpConnectionFails and the like).
    pub fn handle_closed(&mut self, now: Instant) {
        match self.state {
            State::Idle => {}
            State::Connect | State::Active => {
                // Connect attempt failed: wait in Active for ConnectRetry (§8.2.2).
                self.arm_connect_retry_backoff(now);
                self.set_state(State::Active);
            }
            State::OpenSent => {
                // §8.2.2 OpenSent, Event 18: back to Active, ConnectRetry restarted.
                self.reset_connection_state();
                self.arm_connect_retry_backoff(now);
                self.set_state(State::Active);
            }
            State::OpenConfirm | State::Established => self.fail(now, None),
        }
    }

    /// The peer refused our connection attempt (a TCP reset). A host that answers is up and
    /// most likely starting its BGP speaker, so the first [`REFUSED_RETRIES`] refusals in a
    /// row are retried after the short, fixed `refused_retry`; later ones, and a refusal in
    /// any state but Connect, count as [`Session::handle_closed`].
    pub fn handle_refused(&mut self, now: Instant) {
        if self.state != State::Connect || self.refusals >= REFUSED_RETRIES {
            self.handle_closed(now);
            return;
        }
        self.refusals += 1;
        self.timers
            .set(Timer::ConnectRetry, now + self.config.refused_retry);
        self.set_state(State::Active);
    }

    /// Bytes read from the connection. Partial messages are buffered.
    pub fn handle_bytes(&mut self, now: Instant, bytes: &[u8]) {
        if !matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        ) {
            return;
        }
        self.inbuf.extend_from_slice(bytes);
        loop {
            if !matches!(
                self.state,
                State::OpenSent | State::OpenConfirm | State::Established
            ) {
                self.inbuf.clear();
                return;
            }
            let len = match frame_len(&self.inbuf, self.codec.max_message_len()) {
                Ok(Some(len)) => len,
                Ok(None) => return,
                Err(e) => {
                    let e = DecodeError::from(e);
                    self.counters.count_decode_error(&e);
                    self.fail(now, Some(e.notification()));
                    return;
                }
            };
            let frame = self.inbuf.split_to(len);
            match Message::decode(&frame, &self.codec) {
                Ok(msg) => {
                    self.counters.messages_in.count(msg.message_type());
                    self.handle_message(now, msg);
                }
                Err(e) => {
                    self.counters.count_decode_error(&e);
                    self.fail(now, Some(e.notification()));
                }
            }
        }
    }

    /// A deadline from [`Session::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        // Each due timer fires once per call, even if its handler re-arms it.
        let mut due = Vec::new();
        while let Some(timer) = self.timers.pop_expired(now) {
            due.push(timer);
        }
        for timer in due {
            self.timer_expired(now, timer);
        }
    }

    /// Sends NOTIFICATION Cease/Connection Collision Resolution and closes: this session
    /// lost a collision (RFC 4271 §6.8, see [`crate::collision`]). The session stays Idle
    /// without restarting; the driver drops it.
    pub fn close_collision(&mut self, now: Instant) {
        self.admin_up = false;
        self.close(now, Some(Notification::cease(cease::CONNECTION_COLLISION)));
    }

    /// Ends the session with NOTIFICATION Cease and `subcode` (RFC 4486: e.g. peer
    /// de-configured, other configuration change, maximum number of prefixes reached) and
    /// stays Idle with no automatic restart until the next [`AdminEvent::Start`].
    pub fn cease(&mut self, now: Instant, subcode: u8, data: Bytes) {
        self.admin_up = false;
        self.close(
            now,
            Some(Notification::new(error_code::CEASE, subcode, data)),
        );
    }

    /// Changes the graceful restart capability offered in the next OPEN (RFC 4724 §3; e.g.
    /// the Restart State bit is set only for a while after our own restart).
    pub fn set_graceful_restart(
        &mut self,
        graceful_restart: Option<crate::message::GracefulRestart>,
    ) {
        self.config.graceful_restart = graceful_restart;
    }

    /// Whether the session connects out after its next (re)start: a passive session
    /// promoted to carry the peer after a collision connects out again when it restarts.
    pub fn set_passive(&mut self, passive: bool) {
        self.config.passive = passive;
    }

    /// Asks the peer to send its routes again (ROUTE-REFRESH, RFC 2918) for every
    /// negotiated family, e.g. after our import policy changed. False if the session is not
    /// Established or the peer does not support route refresh.
    pub fn request_refresh(&mut self, now: Instant) -> bool {
        let supported = self.state == State::Established
            && self.negotiated.as_ref().is_some_and(|n| n.route_refresh);
        if supported {
            for family in self.negotiated_families() {
                self.send(
                    now,
                    &Message::RouteRefresh(RouteRefresh { family, subtype: 0 }),
                );
            }
        }
        supported
    }

    /// Refuses a connection on this session with Cease/Connection Rejected (RFC 4486),
    /// for a driver that sets up a throwaway session for a connection it will not keep.
    pub fn reject_connection(&mut self, now: Instant) {
        self.admin_up = false;
        self.close(now, Some(Notification::cease(cease::CONNECTION_REJECTED)));
    }

    /// Advertises `prefixes` with `attributes` (next hop required: IPv4 for IPv4
    /// prefixes, IPv6 for IPv6 ones; prefixes of the other family are skipped). Returns
    /// how many were taken. Sent now if Established, else at the next establishment.
    ///
    /// Our AS is prepended and LOCAL_PREF removed for eBGP; LOCAL_PREF defaults to 100 for
    /// iBGP (RFC 4271 §5.1.2, §5.1.5).
    pub fn announce(
        &mut self,
        now: Instant,
        prefixes: impl IntoIterator<Item = IpNetwork>,
        attributes: PathAttributes,
    ) -> usize {
        let given = self
            .any_as_routes
            .is_some()
            .then(|| Arc::new(attributes.clone()));
        let attrs = Arc::new(self.export(attributes));
        let mut taken = 0;
        for p in prefixes {
            if next_hop_matches(&p, &attrs) {
                let p = crate::message::canonical(p);
                self.adj_rib_out.insert(p, attrs.clone());
                if let (Some(routes), Some(given)) = (self.any_as_routes.as_mut(), &given) {
                    routes.insert(p, given.clone());
                }
                taken += 1;
            }
        }
        self.flush(now);
        taken
    }

    /// Withdraws `prefixes` from the peer.
    pub fn withdraw(&mut self, now: Instant, prefixes: impl IntoIterator<Item = IpNetwork>) {
        for p in prefixes {
            let p = crate::message::canonical(p);
            self.adj_rib_out.remove(&p);
            if let Some(routes) = self.any_as_routes.as_mut() {
                routes.remove(&p);
            }
        }
        self.flush(now);
    }

    /// Changes one advertised route without sending yet: `Some` announces (or replaces) it,
    /// `None` withdraws it. [`Session::send_staged`] sends what was staged, so a batch of
    /// changes shares UPDATEs.
    pub fn stage(&mut self, prefix: IpNetwork, attributes: Option<PathAttributes>) {
        let prefix = crate::message::canonical(prefix);
        let given = attributes
            .as_ref()
            .filter(|_| self.any_as_routes.is_some())
            .map(|a| Arc::new(a.clone()));
        match attributes.map(|a| Arc::new(self.export(a))) {
            Some(attrs) if next_hop_matches(&prefix, &attrs) => {
                self.adj_rib_out.insert(prefix, attrs);
                if let (Some(routes), Some(given)) = (self.any_as_routes.as_mut(), given) {
                    routes.insert(prefix, given);
                }
            }
            _ => {
                self.adj_rib_out.remove(&prefix);
                if let Some(routes) = self.any_as_routes.as_mut() {
                    routes.remove(&prefix);
                }
            }
        }
    }

    /// Sends the changes [`Session::stage`] made (when Established; else they go with the
    /// next establishment's full table).
    pub fn send_staged(&mut self, now: Instant) {
        self.flush(now);
    }

    /// Makes the advertised set exactly `routes`, sending only the difference. Routes with
    /// equal attributes share one attribute set (and UPDATEs).
    pub fn replace_routes(
        &mut self,
        now: Instant,
        routes: impl IntoIterator<Item = (IpNetwork, PathAttributes)>,
    ) {
        // Given attributes → (as given, as exported), one shared pair per distinct set.
        let mut shared: HashMap<PathAttributes, (Arc<PathAttributes>, Arc<PathAttributes>)> =
            HashMap::new();
        let mut keep = std::collections::HashSet::new();
        for (p, a) in routes {
            let p = crate::message::canonical(p);
            let (given, attrs) = match shared.get(&a) {
                Some(x) => x.clone(),
                None => {
                    let x = (Arc::new(a.clone()), Arc::new(self.export(a.clone())));
                    shared.insert(a, x.clone());
                    x
                }
            };
            if next_hop_matches(&p, &attrs) {
                self.adj_rib_out.insert(p, attrs);
                if let Some(routes) = self.any_as_routes.as_mut() {
                    routes.insert(p, given);
                }
                keep.insert(p);
            }
        }
        for p in self.adj_rib_out.prefixes() {
            if !keep.contains(&p) {
                self.adj_rib_out.remove(&p);
            }
        }
        if let Some(routes) = self.any_as_routes.as_mut() {
            routes.retain(|p, _| keep.contains(p));
        }
        self.flush(now);
    }

    /// The routes we advertise, with the attributes as sent.
    pub fn advertised(&self) -> impl Iterator<Item = (&IpNetwork, &Arc<PathAttributes>)> {
        self.adj_rib_out.iter()
    }

    /// Number of routes we advertise.
    pub fn advertised_len(&self) -> usize {
        self.adj_rib_out.len()
    }

    /// Number of routes we advertise per family: IPv4, IPv6.
    pub fn advertised_by_family(&self) -> (usize, usize) {
        self.adj_rib_out.len_by_family()
    }

    // ---- internals ----

    fn local_open(&self) -> Open {
        let mut caps: Vec<Capability> = self
            .config
            .families
            .iter()
            .map(|f| Capability::Multiprotocol(*f))
            .collect();
        caps.push(Capability::RouteRefresh);
        if self.config.extended_messages {
            caps.push(Capability::ExtendedMessage);
        }
        if let Some(gr) = &self.config.graceful_restart {
            caps.push(Capability::GracefulRestart(gr.clone()));
        }
        caps.push(Capability::FourOctetAs(self.config.local_as));
        Open::new(
            self.config.local_as,
            self.config.hold_time,
            self.config.local_id,
            caps,
        )
    }

    /// With [`PeerAs::Any`], once an OPEN is accepted: the Adj-RIB-Out rewritten the way
    /// the AS it carried asks (iBGP or eBGP) if that is not the way it was, before the full
    /// table goes out on Established.
    fn reexport_for_peer_as(&mut self) {
        let ibgp = self.is_ibgp();
        if self.exported_ibgp == ibgp {
            return;
        }
        self.exported_ibgp = ibgp;
        let Some(routes) = self.any_as_routes.take() else {
            return;
        };
        let mut shared: HashMap<*const PathAttributes, Arc<PathAttributes>> = HashMap::new();
        for (prefix, given) in &routes {
            let attrs = shared
                .entry(Arc::as_ptr(given))
                .or_insert_with(|| Arc::new(self.export(PathAttributes::clone(given))))
                .clone();
            self.adj_rib_out.insert(*prefix, attrs);
        }
        self.any_as_routes = Some(routes);
    }

    /// Applies the standard export rewrite for the peer type.
    fn export(&self, mut a: PathAttributes) -> PathAttributes {
        if self.exported_ibgp {
            a.local_pref.get_or_insert(100);
        } else {
            a.as_path.prepend(self.config.local_as);
            a.local_pref = None;
            // Route-reflection attributes are non-transitive and iBGP-only (RFC 4456 §8).
            a.originator_id = None;
            a.cluster_list.clear();
        }
        a
    }

    /// The single place where the state changes (and is reported).
    fn set_state(&mut self, to: State) {
        let from = self.state;
        if from == to {
            return;
        }
        self.state = to;
        if to == State::Established {
            self.counters.established += 1;
            self.idle_hold = self.config.idle_hold;
            self.connect_retry = self.config.connect_retry;
            self.refusals = 0;
        }
        if from == State::Established {
            self.counters.dropped += 1;
        }
        self.actions.push_back(Action::StateChanged { from, to });
    }

    /// Arms ConnectRetry after a failed attempt and doubles the next wait (up to
    /// `connect_retry_max`): a peer that is away is tried less and less often.
    /// Whether the session makes connection attempts of its own.
    fn connects_out(&self) -> bool {
        !self.config.passive || self.passive_wait_over
    }

    fn arm_connect_retry_backoff(&mut self, now: Instant) {
        if !self.connects_out() {
            // Passive, and not yet tired of waiting: wait for the peer again, as long.
            if let Some(wait) = self.config.passive_connect_after {
                self.timers.set(Timer::ConnectRetry, now + wait);
            }
            return;
        }
        self.timers
            .set(Timer::ConnectRetry, now + self.connect_retry);
        self.connect_retry = self
            .connect_retry
            .saturating_mul(2)
            .min(self.config.connect_retry_max);
    }

    /// ManualStart / AutomaticStart (Events 1, 3, 4, 5).
    fn start(&mut self, now: Instant) {
        self.reset_connection_state();
        self.passive_wait_over = false;
        if self.config.passive {
            if let Some(wait) = self.config.passive_connect_after {
                self.timers.set(Timer::ConnectRetry, now + wait);
            }
            self.set_state(State::Active);
        } else {
            self.timers
                .set(Timer::ConnectRetry, now + self.connect_retry);
            self.set_state(State::Connect);
            self.actions.push_back(Action::Connect);
        }
    }

    fn reset_connection_state(&mut self) {
        self.inbuf.clear();
        self.codec = CodecContext::default();
        self.negotiated = None;
        self.timers.stop_all();
        self.adj_rib_out.clear_dirty();
    }

    /// Sends an optional NOTIFICATION, disconnects and goes to Idle without restart.
    fn close(&mut self, now: Instant, notification: Option<Notification>) {
        let connected = matches!(
            self.state,
            State::OpenSent | State::OpenConfirm | State::Established
        );
        if connected && let Some(n) = notification {
            self.send_notification(now, n);
        }
        if self.state != State::Idle {
            self.actions.push_back(Action::Disconnect);
        }
        self.reset_connection_state();
        self.set_state(State::Idle);
    }

    /// An error: NOTIFICATION (if any), Idle, and the automatic restart after IdleHold
    /// while administratively up (RFC 4271 §8.1.1 DampPeerOscillations: IdleHold doubles
    /// with each failure before Established, up to 120 s).
    fn fail(&mut self, now: Instant, notification: Option<Notification>) {
        self.close(now, notification);
        if self.admin_up {
            self.timers.set(Timer::IdleHold, now + self.idle_hold);
            // Back off while the peer keeps failing; Established resets it.
            self.idle_hold = self
                .idle_hold
                .saturating_mul(2)
                .min(MAX_IDLE_HOLD.max(self.config.idle_hold));
        }
    }

    fn send_notification(&mut self, now: Instant, n: Notification) {
        self.counters.notifications_sent += 1;
        self.send(now, &Message::Notification(n.clone()));
        self.actions.push_back(Action::NotificationSent(n));
    }

    fn send(&mut self, now: Instant, msg: &Message) {
        self.counters.messages_out.count(msg.message_type());
        self.actions
            .push_back(Action::Send(msg.to_bytes(&self.codec)));
        // Only these restart the peer's hold timer (RFC 4271 §8.2.2), so only these may put
        // off our next KEEPALIVE: a speaker that sends a ROUTE-REFRESH more often than
        // every keepalive interval would otherwise never send one, and be cut off after the
        // hold time by a peer that counts only KEEPALIVE and UPDATE.
        if matches!(msg, Message::Keepalive | Message::Update(_)) {
            self.restart_keepalive(now);
        }
    }

    /// RFC 4271 §8.2.2: each KEEPALIVE or UPDATE sent restarts the KeepaliveTimer.
    fn restart_keepalive(&mut self, now: Instant) {
        if matches!(self.state, State::OpenConfirm | State::Established)
            && let Some(iv) = self
                .negotiated
                .as_ref()
                .and_then(Negotiated::keepalive_interval)
        {
            self.timers.set(Timer::Keepalive, now + iv);
        }
    }

    fn restart_hold(&mut self, now: Instant) {
        if let Some(n) = &self.negotiated
            && n.hold_time > 0
        {
            self.timers.set(
                Timer::Hold,
                now + Duration::from_secs(u64::from(n.hold_time)),
            );
        }
    }

    fn timer_expired(&mut self, now: Instant, timer: Timer) {
        match (self.state, timer) {
            // Event 9 ConnectRetryTimer_Expires in Connect: drop the attempt, try again.
            (State::Connect, Timer::ConnectRetry) => {
                self.actions.push_back(Action::Disconnect);
                self.arm_connect_retry_backoff(now);
                self.actions.push_back(Action::Connect);
            }
            // Event 9 in Active: try connecting out again; for a passive session (armed only
            // with `passive_connect_after`), its wait for the peer is over.
            (State::Active, Timer::ConnectRetry) => {
                self.passive_wait_over = true;
                self.timers
                    .set(Timer::ConnectRetry, now + self.connect_retry);
                self.set_state(State::Connect);
                self.actions.push_back(Action::Connect);
            }
            // Event 10 HoldTimer_Expires.
            (State::OpenSent | State::OpenConfirm | State::Established, Timer::Hold) => {
                self.counters.errors.hold_timer_expired += 1;
                self.fail(
                    now,
                    Some(Notification::new(
                        error_code::HOLD_TIMER_EXPIRED,
                        0,
                        Bytes::new(),
                    )),
                );
            }
            // Event 11 KeepaliveTimer_Expires.
            (State::OpenConfirm | State::Established, Timer::Keepalive) => {
                self.send(now, &Message::Keepalive);
            }
            // Event 13 IdleHoldTimer_Expires: automatic restart.
            (State::Idle, Timer::IdleHold) if self.admin_up => self.start(now),
            _ => {}
        }
    }

    fn handle_message(&mut self, now: Instant, msg: Message) {
        match (self.state, msg) {
            // Event 25 NotifMsg, any state: the peer is closing.
            (_, Message::Notification(n)) => {
                self.counters.notifications_received += 1;
                self.actions.push_back(Action::NotificationReceived(n));
                self.fail(now, None);
            }
            // Event 19 BGPOpen in OpenSent.
            (State::OpenSent, Message::Open(open)) => match self.check_open(&open) {
                Ok(negotiated) => {
                    self.codec = negotiated.codec;
                    self.negotiated = Some(negotiated);
                    self.reexport_for_peer_as();
                    self.set_state(State::OpenConfirm);
                    self.send(now, &Message::Keepalive);
                    // The 4-minute OPEN hold timer gives way to the negotiated one (none
                    // when the hold time is 0).
                    self.timers.stop(Timer::Hold);
                    self.restart_hold(now);
                }
                Err(e) => {
                    self.counters.errors.open += 1;
                    self.fail(now, Some(e.notification()));
                }
            },
            // Event 26 KeepAliveMsg in OpenConfirm.
            (State::OpenConfirm, Message::Keepalive) => {
                self.restart_hold(now);
                self.set_state(State::Established);
                self.initial_sync(now);
            }
            // Event 26/27 in Established.
            (State::Established, Message::Keepalive) => self.restart_hold(now),
            (State::Established, Message::Update(update)) => {
                self.restart_hold(now);
                self.handle_update(update);
            }
            // RFC 4271 restarts the hold timer only on KEEPALIVE and UPDATE; a ROUTE-REFRESH
            // shows the peer alive just as well, and counting it keeps a session up with a
            // speaker that lets refreshes put off its KEEPALIVEs, as podroute agents before
            // cf613c2 (7 Dec 2026) do (a rolling upgrade has both kinds).
            (State::Established, Message::RouteRefresh(rr)) => {
                self.restart_hold(now);
                self.handle_route_refresh(now, rr);
            }
            // Anything else is unexpected in the state (RFC 6608 subcodes 1/2/3).
            (state, _) => {
                let subcode = match state {
                    State::OpenSent => 1,
                    State::OpenConfirm => 2,
                    _ => 3,
                };
                self.counters.errors.fsm += 1;
                self.fail(
                    now,
                    Some(Notification::new(error_code::FSM, subcode, Bytes::new())),
                );
            }
        }
    }

    /// OPEN validation (RFC 4271 §6.2) and capability negotiation (RFC 5492).
    fn check_open(&self, open: &Open) -> Result<Negotiated, OpenError> {
        let remote_as = open.asn();
        if open.hold_time == 1 || open.hold_time == 2 {
            return Err(OpenError::UnacceptableHoldTime {
                hold_time: open.hold_time,
            });
        }
        // AS 0 is never a peer's (RFC 7607), nor is AS_TRANS in a 4-octet OPEN: `Any`
        // accepts every other.
        if !self.config.peer_as.accepts(remote_as)
            || remote_as == 0
            || remote_as == u32::from(crate::message::AS_TRANS)
        {
            return Err(OpenError::BadPeerAs {
                received: remote_as,
            });
        }
        // RFC 6286 §2.2: zero is invalid; equal to ours only matters within one AS.
        if open.bgp_id.is_unspecified()
            || (remote_as == self.config.local_as && open.bgp_id == self.config.local_id)
        {
            return Err(OpenError::BadBgpIdentifier);
        }
        let hold_time = if self.config.hold_time == 0 || open.hold_time == 0 {
            0
        } else {
            self.config.hold_time.min(open.hold_time)
        };
        let theirs = open.families();
        let families = self
            .config
            .families
            .iter()
            .copied()
            .filter(|f| theirs.contains(f))
            .collect();
        let four_octet_as = open.four_octet_as().is_some();
        let extended_messages =
            self.config.extended_messages && open.has_capability(&Capability::ExtendedMessage);
        Ok(Negotiated {
            remote_open: open.clone(),
            remote_as,
            remote_id: open.bgp_id,
            hold_time,
            families,
            route_refresh: open.has_capability(&Capability::RouteRefresh),
            codec: CodecContext {
                four_octet_as,
                extended_messages,
            },
        })
    }

    fn negotiated_families(&self) -> Vec<Family> {
        self.negotiated
            .as_ref()
            .map(|n| n.families.clone())
            .unwrap_or_default()
    }

    /// On reaching Established: send the whole Adj-RIB-Out, then End-of-RIB per family.
    fn initial_sync(&mut self, now: Instant) {
        self.adj_rib_out.mark_all(None);
        self.flush(now);
        for family in self.negotiated_families() {
            self.send(now, &Message::Update(Update::end_of_rib(family)));
        }
    }

    /// Sends pending Adj-RIB-Out changes if Established.
    fn flush(&mut self, now: Instant) {
        if self.state != State::Established {
            return;
        }
        let families = self.negotiated_families();
        let flushed = self.adj_rib_out.flush(&self.codec, &families);
        self.counters.prefixes_sent += flushed.announced;
        self.counters.withdrawals_sent += flushed.withdrawn;
        if flushed.messages.is_empty() {
            return;
        }
        for m in flushed.messages {
            self.counters.messages_out.update += 1;
            self.actions.push_back(Action::Send(m));
        }
        self.restart_keepalive(now);
    }

    fn handle_route_refresh(&mut self, now: Instant, rr: RouteRefresh) {
        // RFC 2918 §4: re-advertise the Adj-RIB-Out for a family we negotiated; others are
        // ignored. RFC 7313 demarcation subtypes (1, 2) are not requests.
        if rr.subtype == 0 && self.negotiated_families().contains(&rr.family) {
            self.adj_rib_out.mark_all(Some(rr.family));
            self.flush(now);
        }
    }

    fn handle_update(&mut self, mut update: Update) {
        if !self.is_ibgp() {
            self.external_peer_rules(&mut update);
        }
        for f in &update.faults {
            self.counters.errors.update += 1;
            self.counters.rfc7606.count(f.action);
            self.actions.push_back(Action::UpdateFault(*f));
        }
        if let Some(family) = update.end_of_rib_family() {
            self.actions.push_back(Action::EndOfRib(family));
            return;
        }
        let families = self.negotiated_families();
        let withdraw_all = update.treat_as_withdraw() || self.is_looped(&update);
        let Update {
            withdrawn,
            attributes,
            mp_reach,
            mp_unreach,
            nlri,
            ..
        } = update;
        let attributes = attributes.unwrap_or_default();

        let mut v4 = ReceivedRoutes::empty(Family::IPV4_UNICAST);
        v4.withdrawn = withdrawn;
        let mut mp = mp_reach.map(|m| {
            let mut r = ReceivedRoutes::empty(m.family);
            r.announced = m.nlri;
            (r, m.next_hop)
        });
        let mut unreach = None;
        if let Some(u) = mp_unreach {
            if u.family == Family::IPV4_UNICAST {
                v4.withdrawn.extend(u.withdrawn);
            } else if let Some((r, _)) = mp.as_mut().filter(|(r, _)| r.family == u.family) {
                r.withdrawn.extend(u.withdrawn);
            } else {
                let mut r = ReceivedRoutes::empty(u.family);
                r.withdrawn = u.withdrawn;
                unreach = Some(r);
            }
        }
        v4.announced = nlri;
        let mut out = Vec::with_capacity(3);
        if !v4.announced.is_empty() {
            v4.attributes = Some(Arc::new(attributes.clone()));
        }
        out.push(v4);
        if let Some((mut r, next_hop)) = mp {
            if !r.announced.is_empty() {
                let mut a = attributes;
                a.next_hop = Some(next_hop);
                r.attributes = Some(Arc::new(a));
            }
            out.push(r);
        }
        out.extend(unreach);
        for mut r in out {
            if !families.contains(&r.family) {
                continue;
            }
            self.counters.prefixes_received += r.announced.len() as u64;
            let by_family = &mut self.counters.prefixes_received_by_family;
            if r.family == Family::IPV6_UNICAST {
                by_family.1 += r.announced.len() as u64;
            } else if r.family == Family::IPV4_UNICAST {
                by_family.0 += r.announced.len() as u64;
            }
            self.counters.prefixes_withdrawn += r.withdrawn.len() as u64;
            if withdraw_all {
                let announced = std::mem::take(&mut r.announced);
                r.withdrawn.extend(announced);
                r.attributes = None;
            }
            self.counters.prefixes_accepted += r.announced.len() as u64;
            if !r.announced.is_empty() || !r.withdrawn.is_empty() {
                self.actions.push_back(Action::Routes(r));
            }
        }
    }

    /// RFC 7606 rules for an UPDATE from an external peer: a malformed LOCAL_PREF is
    /// discarded, not treat-as-withdraw (§7.5; a well-formed one is dropped too, RFC 4271
    /// §5.1.5); ORIGINATOR_ID and CLUSTER_LIST do not belong on the session and are
    /// discarded (§7.9, §7.10); an AS_PATH whose first AS is not the peer's makes the
    /// UPDATE treat-as-withdraw (§7.2, RFC 4271 §6.3).
    fn external_peer_rules(&self, update: &mut Update) {
        use crate::message::{AttributeFault, ErrorAction, UpdateError, attr_type};
        for f in &mut update.faults {
            if matches!(
                f.error.type_code(),
                Some(attr_type::LOCAL_PREF | attr_type::ORIGINATOR_ID | attr_type::CLUSTER_LIST)
            ) {
                f.action = ErrorAction::AttributeDiscard;
            }
        }
        // Only when nothing else already withdraws the UPDATE (one error, one count).
        let announces = !update.treat_as_withdraw()
            && (!update.nlri.is_empty()
                || update.mp_reach.as_ref().is_some_and(|m| !m.nlri.is_empty()));
        let Some(a) = update.attributes.as_mut() else {
            return;
        };
        // RFC 4271 §5.1.5: LOCAL_PREF from an external peer is ignored.
        a.local_pref = None;
        a.originator_id = None;
        a.cluster_list.clear();
        if announces && a.as_path.first_as() != self.peer_as() {
            update.faults.push(AttributeFault {
                error: UpdateError::MalformedAsPath {
                    type_code: attr_type::AS_PATH,
                },
                action: ErrorAction::TreatAsWithdraw,
            });
        }
    }

    /// Loop detection (RFC 4271 §9.1.2 for eBGP AS_PATH, RFC 4456 §8 ORIGINATOR_ID).
    fn is_looped(&self, update: &Update) -> bool {
        let Some(a) = &update.attributes else {
            return false;
        };
        if self.is_ibgp() {
            a.originator_id == Some(self.config.local_id)
        } else {
            a.as_path.contains(self.config.local_as)
        }
    }
}

fn next_hop_matches(prefix: &IpNetwork, attrs: &PathAttributes) -> bool {
    use crate::message::NextHop;
    matches!(
        (prefix, attrs.next_hop),
        (IpNetwork::V4(_), Some(NextHop::V4(_))) | (IpNetwork::V6(_), Some(NextHop::V6 { .. }))
    )
}
