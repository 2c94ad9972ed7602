//! The multi-peer BGP speaker, sans-IO: every peer's session, their Adj-RIBs-In (in the
//! [`Rib`], with attributes), import and export policy, the Loc-RIB and its decision
//! process, prefix limits, and graceful restart (RFC 4724) in both roles.
//!
//! # Driving it
//!
//! ```text
//! let mut speaker = Speaker::new(SpeakerConfig::default(), now);
//! speaker.add_peer(now, peer_config);            // or update_peer / remove_peer
//! speaker.set_originated(now, own_routes);       // what we announce (export policy applies)
//! loop {
//!     while let Some(action) = speaker.poll_action() {
//!         Connect { peer, conn }  => open TCP; then speaker.connected(now, conn) or
//!                                    speaker.closed(now, conn)
//!         Send { conn, bytes }    => write to that connection
//!         Close { conn }          => close it (or abandon the attempt)
//!         the rest                => logs and metrics
//!     }
//!     for change in speaker.take_route_changes() { program the kernel }
//!     wait for: bytes (speaker.bytes), a closed connection (speaker.closed), an accepted
//!     one (speaker.incoming), or speaker.poll_timeout() (speaker.handle_timeout).
//! }
//! ```
//!
//! State lives here once: session state and collisions in the sessions, routes in the RIB
//! (stale ones included, marked in the peer's [`graceful::StaleRoutes`]), End-of-RIB and
//! sync per peer. The driver keeps only sockets.
//!
//! Connections: a peer whose session is not passive asks for connections
//! ([`SpeakerAction::Connect`]), retrying with the session's doubling ConnectRetry (the one
//! back-off policy); any peer takes connections the driver accepted from its address
//! ([`Speaker::incoming`]). Collisions (RFC 4271 §6.8) run a second session on the new
//! connection until the peer's identifier settles which survives. A new connection while
//! Established is refused, unless graceful restart was negotiated: then it is the peer
//! restarting (RFC 4724 §4.2), and once its OPEN is valid the old session ends as a
//! restart (routes kept stale) and the new one takes over.

mod graceful;
mod multipath;
mod peer;
pub mod policy;
mod reflect;
mod types;

use std::collections::{BTreeMap, BTreeSet, HashMap, VecDeque};
use std::net::{IpAddr, Ipv4Addr};
use std::sync::Arc;
use std::time::Instant;

use bytes::{BufMut, Bytes, BytesMut};
use ipnetwork::IpNetwork;

pub use policy::{NextHopMatch, Policy, PrefixRule, Verdict};
pub use types::{
    BfdMode, ConnId, GracefulRestartConfig, MaxPrefix, MaxPrefixAction, NextHops, PathState,
    PeerConfig, PeerStatus, Refusal, RouteChange, SpeakerAction, SpeakerConfig,
};

use crate::collision::{self, Keep};
use crate::counters::SessionCounters;
use crate::message::{Family, PathAttributes, cease};
use crate::rib::{BestChange, PeerId, PeerInfo, Rib};
use crate::session::{Action, AdminEvent, ReceivedRoutes, Session, SessionConfig, State};
use peer::{HeldDown, Link, Peer, Slot, with_next_hop};

/// Refused routes reported one by one per session; the rest are only counted.
const REJECTIONS_REPORTED: usize = 10;

/// The speaker. See the module docs.
#[derive(Debug)]
pub struct Speaker {
    config: SpeakerConfig,
    started: Instant,
    peers: BTreeMap<IpAddr, Peer>,
    conns: HashMap<ConnId, (IpAddr, Slot)>,
    next_conn: u64,
    rib: Rib,
    originated: Vec<(IpNetwork, PathAttributes)>,
    actions: VecDeque<SpeakerAction>,
    route_changes: Vec<RouteChange>,
    best_changes: Vec<BestChange>,
    initial_sync_done: bool,
    /// Some peer is a route-reflector client: learned routes are reflected.
    reflecting: bool,
    /// Peers with reflected routes staged in their sessions, not sent yet (sent at the end
    /// of the input that staged them, see [`Speaker::send_reflected`]).
    reflect_pending: BTreeSet<IpAddr>,
    /// With `max_paths` above 1: the next hops last reported per prefix (a path that is
    /// not the best one may change them).
    multipath: HashMap<IpNetwork, NextHops>,
}

impl Speaker {
    /// A speaker with no peers, started at `now` (the selection deferral runs from here).
    pub fn new(config: SpeakerConfig, now: Instant) -> Self {
        let mut rib = Rib::new();
        if config.max_paths > 1 {
            rib.track_touched();
        }
        Self {
            config,
            started: now,
            peers: BTreeMap::new(),
            conns: HashMap::new(),
            next_conn: 0,
            rib,
            originated: Vec::new(),
            actions: VecDeque::new(),
            route_changes: Vec::new(),
            best_changes: Vec::new(),
            initial_sync_done: false,
            reflecting: false,
            reflect_pending: BTreeSet::new(),
            multipath: HashMap::new(),
        }
    }

    // ---- inputs: configuration ----

    /// Adds a peer and starts its session, or applies a changed configuration to an
    /// existing one (see [`Speaker::update_peer`]).
    pub fn add_peer(&mut self, now: Instant, config: PeerConfig) {
        if self.peers.contains_key(&config.address) {
            self.update_peer(now, config);
            return;
        }
        let address = config.address;
        let rib_id = self.rib.add_peer(PeerInfo {
            address,
            router_id: Ipv4Addr::UNSPECIFIED,
            ibgp: config.session.is_ibgp(),
        });
        let strict = config.bfd == BfdMode::Strict;
        let session = self.new_session(&config, config.session.passive);
        // A new client has no routes yet, so no other peer's reflected routes change; it
        // gets its own with its first routes (no re-export of every peer: a reflector adds
        // its clients one by one).
        self.reflecting |= config.route_reflector_client;
        self.peers
            .insert(address, Peer::new(config, rib_id, session));
        if strict {
            // Routes are handed to the session now; it starts when BFD is Up.
            self.export_to(now, address);
            if let Some(peer) = self.peers.get_mut(&address) {
                peer.held_down = Some(HeldDown::UntilPathUp);
            }
        } else {
            self.start_primary(now, address);
        }
        self.send_reflected(now);
    }

    /// BFD's word on the path to `address` (RFC 5882 §4.2). `false` (BFD Down, a failure;
    /// not a peer's planned AdminDown, which a driver does not report) ends the session at
    /// once with NOTIFICATION Cease/BFD Down (RFC 9384) and drops the peer's routes, stale
    /// ones included: a dead path is no graceful restart. With [`BfdMode::Strict`] the
    /// session then waits for `true`; with [`BfdMode::On`] it starts again at once. A
    /// peer without BFD ignores this.
    ///
    /// Except during the peer's graceful restart (RFC 5882 §4.3): when its connection has
    /// already closed without a NOTIFICATION and its routes are held as stale, the peer's
    /// kernel was alive to close it — its control plane (and BFD, which shares its fate, C
    /// bit clear) stopped, not its forwarding. A BFD Down that follows is that same restart
    /// seen again, so the stale routes stay until the restart ends (End-of-RIB, or the
    /// restart time). Not so when the peer's BFD set the C bit: its BFD outlives its
    /// control plane, so its Down is a forwarding failure and ends the restart. A cut link
    /// or a dead node closes no connection: BFD Down then finds the session still up and
    /// ends it as above.
    pub fn path_changed(&mut self, now: Instant, address: IpAddr, path: PathState) {
        let up = path == PathState::Up;
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let mode = peer.config.bfd;
        if mode == BfdMode::Off || peer.path_up == Some(up) {
            peer.path_up = Some(up);
            return;
        }
        peer.path_up = Some(up);
        if up {
            if peer.held_down == Some(HeldDown::UntilPathUp) {
                peer.held_down = None;
                peer.primary.session.handle(now, AdminEvent::Start);
                self.drain(now, address, Slot::Primary);
            }
            return;
        }
        let independent = matches!(
            path,
            PathState::Down {
                control_plane_independent: true
            }
        );
        let restarting = !independent
            && !peer.stale.is_empty()
            && peer.primary.session.state() != State::Established;
        if restarting {
            // Strict mode still refuses the restarted peer's connection until BFD is Up
            // again ([`Speaker::incoming`] reads `path_up`).
            return;
        }
        let active = std::iter::once(&peer.primary)
            .chain(peer.colliding.as_ref())
            .any(|l| l.conn.is_some() || l.session.state() != State::Idle);
        if !active && mode == BfdMode::On && peer.stale.is_empty() {
            // Nothing to end and nothing held: the session starts again by itself.
            return;
        }
        self.reset_peer(now, address, cease::BFD_DOWN, mode != BfdMode::Strict);
        if mode == BfdMode::Strict
            && let Some(peer) = self.peers.get_mut(&address)
        {
            peer.held_down = Some(HeldDown::UntilPathUp);
        }
        self.send_reflected(now);
    }

    /// Applies a changed configuration. A change of the session itself (AS numbers,
    /// identifier, timers, families, graceful restart) ends it with NOTIFICATION
    /// Cease/Other Configuration Change (RFC 4486) and starts it again; a changed import
    /// policy is applied to the routes held, and after it or a prefix limit that takes more
    /// than the old one dropped the peer is asked to send its routes again if it sent any that
    /// were refused (ROUTE-REFRESH; without it the session is reset); a lower limit applies
    /// to new prefixes only; a changed export policy is re-advertised. Nothing else is
    /// touched.
    pub fn update_peer(&mut self, now: Instant, config: PeerConfig) {
        let address = config.address;
        let Some(peer) = self.peers.get_mut(&address) else {
            self.add_peer(now, config);
            return;
        };
        if peer.config == config {
            return;
        }
        let old = std::mem::replace(&mut peer.config, config);
        let new = &peer.config;
        if old.session != new.session || old.graceful_restart != new.graceful_restart {
            let client_changed = old.route_reflector_client != new.route_reflector_client;
            self.restart_peer(now, address, cease::CONFIGURATION_CHANGE);
            if client_changed {
                self.reflection_changed(now);
            }
            self.send_reflected(now);
            return;
        }
        if old.bfd != new.bfd {
            self.bfd_mode_changed(now, address);
        }
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let new = &peer.config;
        // A changed limit ends a hold-down that the limit caused (Cease), not one that strict
        // BFD keeps until the path is up.
        if old.max_prefixes != new.max_prefixes
            && matches!(
                peer.held_down,
                Some(HeldDown::Until(_) | HeldDown::UntilReconfigured)
            )
        {
            peer.held_down = None;
            peer.primary.session.handle(now, AdminEvent::Start);
            self.drain(now, address, Slot::Primary);
        }
        if old.route_reflector_client != self.peers[&address].config.route_reflector_client {
            self.reflection_changed(now);
        } else if old.export != self.peers[&address].config.export {
            self.export_to(now, address);
        }
        // A looser limit takes routes that the old one dropped: asked for again like those a
        // wider import policy takes.
        let new = &self.peers[&address].config;
        if old.import != new.import || limit_takes_more(old.max_prefixes, new.max_prefixes) {
            self.reapply_import(now, address);
        }
        self.send_reflected(now);
    }

    /// BFD turned on, off, or between on and strict on a peer: no session is reset. Off
    /// forgets what BFD said; a session that strict mode held until BFD Up starts once
    /// strict mode is gone. A session already running when strict mode comes keeps running
    /// (a BFD Down ends it as usual); strict mode holds it from its next start.
    fn bfd_mode_changed(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if peer.config.bfd == BfdMode::Off {
            peer.path_up = None;
        }
        if peer.config.bfd != BfdMode::Strict && peer.held_down == Some(HeldDown::UntilPathUp) {
            peer.held_down = None;
            peer.primary.session.handle(now, AdminEvent::Start);
            self.drain(now, address, Slot::Primary);
        }
    }

    /// Removes a peer: NOTIFICATION Cease/Peer De-configured (RFC 4486), its routes go.
    pub fn remove_peer(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.primary
            .session
            .cease(now, cease::PEER_DECONFIGURED, Bytes::new());
        if let Some(c) = peer.colliding.as_mut() {
            c.session.cease(now, cease::PEER_DECONFIGURED, Bytes::new());
        }
        self.drain(now, address, Slot::Colliding);
        self.drain(now, address, Slot::Primary);
        self.forget_peer(now, address);
    }

    /// The route-reflector clients changed: every peer's advertised routes are computed
    /// again (a new client gets every route, non-clients get the clients' routes).
    fn reflection_changed(&mut self, now: Instant) {
        self.reflecting = self.peers.values().any(|p| p.config.route_reflector_client);
        let addresses: Vec<IpAddr> = self.peers.keys().copied().collect();
        for address in addresses {
            self.export_to(now, address);
        }
    }

    /// Removes a peer without a NOTIFICATION: its connections just close, as when this
    /// process stops, so a peer with graceful restart keeps our routes as stale (for a peer
    /// that comes back under another address). Its routes go here.
    pub fn forget_peer(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.remove(&address) else {
            return;
        };
        for conn in [peer.primary.conn, peer.colliding.and_then(|c| c.conn)]
            .into_iter()
            .flatten()
        {
            self.conns.remove(&conn);
            self.actions.push_back(SpeakerAction::Close { conn });
        }
        self.rib.remove_peer(peer.rib_id, &mut self.best_changes);
        self.reflect_pending.remove(&address);
        // Its routes' withdrawals were staged above (still reflecting); what others got from
        // it goes with them, so only the flag is left to update.
        self.collect_route_changes();
        self.reflecting = self.peers.values().any(|p| p.config.route_reflector_client);
        self.check_initial_sync(false);
        self.send_reflected(now);
    }

    /// Sets the most next hops per prefix (see [`SpeakerConfig::max_paths`]); every prefix
    /// whose next hops this changes is reported again.
    pub fn set_max_paths(&mut self, max_paths: usize) {
        let max_paths = max_paths.max(1);
        if self.config.max_paths == max_paths {
            return;
        }
        let prefixes: Vec<IpNetwork> = self.rib.best_routes().map(|(p, _, _)| p).collect();
        let before: Vec<NextHops> = prefixes.iter().map(|p| self.best_next_hops(p)).collect();
        self.config.max_paths = max_paths;
        self.multipath.clear();
        if max_paths > 1 {
            self.rib.track_touched();
        }
        for (prefix, before) in prefixes.into_iter().zip(before) {
            let next_hops = self.best_next_hops(&prefix);
            if max_paths > 1 {
                self.multipath.insert(prefix, next_hops.clone());
            }
            if next_hops != before {
                self.route_changes.push(RouteChange { prefix, next_hops });
            }
        }
    }

    /// Sets the CLUSTER_ID used as a route reflector (see [`SpeakerConfig::cluster_id`]);
    /// every peer's reflected routes are computed again.
    pub fn set_cluster_id(&mut self, now: Instant, cluster_id: Option<Ipv4Addr>) {
        if self.config.cluster_id == cluster_id {
            return;
        }
        self.config.cluster_id = cluster_id;
        self.reflection_changed(now);
        self.send_reflected(now);
    }

    /// Sets the routes we originate (each with its next hop); every peer gets those its
    /// export policy allows, and only differences are sent.
    pub fn set_originated(&mut self, now: Instant, routes: Vec<(IpNetwork, PathAttributes)>) {
        if routes == self.originated {
            return;
        }
        self.originated = routes;
        let addresses: Vec<IpAddr> = self.peers.keys().copied().collect();
        for address in addresses {
            self.export_to(now, address);
        }
        self.send_reflected(now);
    }

    // ---- inputs: connections and time ----

    /// An outgoing connection asked for with [`SpeakerAction::Connect`] is up.
    pub fn connected(&mut self, now: Instant, conn: ConnId) {
        let Some(&(address, slot)) = self.conns.get(&conn) else {
            return;
        };
        let Some(link) = self.peers.get_mut(&address).and_then(|p| p.link(slot)) else {
            return;
        };
        if link.conn == Some(conn) {
            link.session.handle_connected(now);
            self.drain(now, address, slot);
        }
        self.send_reflected(now);
    }

    /// The driver accepted a connection from `address`. On `Ok` the speaker took it under
    /// that id (bytes and closing are then reported with it); on `Err` the driver closes it.
    pub fn incoming(&mut self, now: Instant, address: IpAddr) -> Result<ConnId, Refusal> {
        let Some(peer) = self.peers.get_mut(&address) else {
            return Err(Refusal::UnknownPeer);
        };
        if peer.held_down.is_some() {
            return Err(self.refuse(address, Refusal::HeldDown));
        }
        let conn = self.new_conn();
        let peer = self.peers.get_mut(&address).expect("looked up above");
        match peer.primary.session.state() {
            State::Idle | State::Connect | State::Active => {
                self.take_over_primary(now, address, conn);
            }
            State::OpenSent | State::OpenConfirm if !peer.primary.outgoing => {
                // The peer opened the connection we run on, and opens another: it gave up
                // on the old one (it restarted).
                self.take_over_primary(now, address, conn);
            }
            State::Established
                if peer.peer_graceful_restart.is_none()
                    || peer.config.graceful_restart.is_none() =>
            {
                return Err(self.refuse(address, Refusal::Established));
            }
            state @ (State::OpenSent | State::OpenConfirm | State::Established) => {
                self.start_colliding(now, address, conn);
                if state == State::OpenConfirm {
                    // The identifier is known from our own connection: settle it now.
                    self.resolve_collision(now, address);
                }
            }
        }
        self.send_reflected(now);
        Ok(conn)
    }

    /// Bytes read from a connection.
    pub fn bytes(&mut self, now: Instant, conn: ConnId, bytes: &[u8]) {
        let Some(&(address, slot)) = self.conns.get(&conn) else {
            return;
        };
        let Some(link) = self.peers.get_mut(&address).and_then(|p| p.link(slot)) else {
            return;
        };
        if link.conn == Some(conn) {
            link.session.handle_bytes(now, bytes);
            self.drain(now, address, slot);
        }
        self.send_reflected(now);
    }

    /// A connection closed, failed, or could not be opened.
    pub fn closed(&mut self, now: Instant, conn: ConnId) {
        self.ended(now, conn, false);
    }

    /// The peer refused a connection we opened (a TCP reset): retried soon, see
    /// [`Session::handle_refused`](crate::session::Session::handle_refused).
    pub fn refused(&mut self, now: Instant, conn: ConnId) {
        self.ended(now, conn, true);
    }

    fn ended(&mut self, now: Instant, conn: ConnId, refused: bool) {
        let Some((address, slot)) = self.conns.remove(&conn) else {
            return;
        };
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        match slot {
            Slot::Colliding => {
                if peer
                    .colliding
                    .as_ref()
                    .is_some_and(|l| l.conn == Some(conn))
                {
                    peer.colliding = None;
                }
            }
            Slot::Primary => {
                if peer.primary.conn == Some(conn) {
                    peer.primary.conn = None;
                    if refused {
                        peer.primary.session.handle_refused(now);
                    } else {
                        peer.primary.session.handle_closed(now);
                    }
                    self.drain(now, address, Slot::Primary);
                }
            }
        }
        self.send_reflected(now);
    }

    /// A deadline from [`Speaker::poll_timeout`] passed.
    pub fn handle_timeout(&mut self, now: Instant) {
        let addresses: Vec<IpAddr> = self.peers.keys().copied().collect();
        for address in addresses {
            for slot in [Slot::Primary, Slot::Colliding] {
                if let Some(link) = self.peers.get_mut(&address).and_then(|p| p.link(slot))
                    && link.session.poll_timeout().is_some_and(|t| t <= now)
                {
                    link.session.handle_timeout(now);
                    self.drain(now, address, slot);
                }
            }
            let Some(peer) = self.peers.get_mut(&address) else {
                continue;
            };
            if peer.stale.deadline.is_some_and(|t| t <= now) {
                self.sweep_stale(address, None, true);
            }
            let peer = self.peers.get_mut(&address).expect("present");
            if let Some(HeldDown::Until(t)) = peer.held_down
                && t <= now
            {
                peer.held_down = None;
                peer.primary.session.handle(now, AdminEvent::Start);
                self.drain(now, address, Slot::Primary);
            }
        }
        if !self.initial_sync_done && now >= self.started + self.config.selection_deferral {
            self.check_initial_sync(true);
        }
        self.send_reflected(now);
    }

    // ---- outputs ----

    /// The next thing for the driver to do or know.
    pub fn poll_action(&mut self) -> Option<SpeakerAction> {
        self.actions.pop_front()
    }

    /// The Loc-RIB changes since the last call, in order (a prefix may appear more than
    /// once; the last entry counts).
    pub fn take_route_changes(&mut self) -> Vec<RouteChange> {
        std::mem::take(&mut self.route_changes)
    }

    /// How many Loc-RIB changes wait for [`Speaker::take_route_changes`].
    pub fn pending_route_changes(&self) -> usize {
        self.route_changes.len()
    }

    /// When [`Speaker::handle_timeout`] should next be called.
    pub fn poll_timeout(&self) -> Option<Instant> {
        let peers = self.peers.values().flat_map(|p| {
            let sessions = std::iter::once(&p.primary)
                .chain(p.colliding.as_ref())
                .filter_map(|l| l.session.poll_timeout());
            let held = match p.held_down {
                Some(HeldDown::Until(t)) => Some(t),
                _ => None,
            };
            sessions.chain(p.stale.deadline).chain(held)
        });
        let deferral =
            (!self.initial_sync_done).then_some(self.started + self.config.selection_deferral);
        peers.chain(deferral).min()
    }

    /// End-of-RIB came from every peer that is waited for, or the selection deferral ran
    /// out (true with no such peer).
    pub fn initial_sync_done(&self) -> bool {
        self.initial_sync_done || self.all_waited_peers_synced()
    }

    /// Every peer, in address order.
    pub fn peers(&self) -> impl Iterator<Item = PeerStatus> + '_ {
        self.peers.values().map(|p| PeerStatus {
            address: p.address(),
            state: p.primary.session.state(),
            peer_as: p.primary.session.peer_as(),
            synced: p.synced,
            accepted: self.rib.peer_len(p.rib_id),
            accepted_by_family: (
                self.rib.peer_len_of(p.rib_id, Family::IPV4_UNICAST),
                self.rib.peer_len_of(p.rib_id, Family::IPV6_UNICAST),
            ),
            advertised_by_family: p.primary.session.advertised_by_family(),
            rejected: p.rejected,
            rejected_max_prefix: p.rejected_max_prefix,
            stale: p.stale.len(),
            graceful_restart: p.peer_graceful_restart.is_some(),
            established_count: p.established_count,
            waiting_for_bfd: p.held_down == Some(HeldDown::UntilPathUp),
        })
    }

    /// One peer's session counters.
    pub fn session_counters(&self, address: IpAddr) -> Option<&SessionCounters> {
        self.peers
            .get(&address)
            .map(|p| p.primary.session.counters())
    }

    /// The RIB (Loc-RIB and every Adj-RIB-In), read-only.
    pub fn rib(&self) -> &Rib {
        &self.rib
    }

    /// The route the Loc-RIB holds for `prefix`: its next hops (several with multipath).
    pub fn best_next_hops(&self, prefix: &IpNetwork) -> NextHops {
        if self.config.max_paths <= 1 {
            return self
                .rib
                .best(prefix)
                .and_then(|(_, a)| a.next_hop)
                .map_or(NextHops::None, |n| NextHops::One(n.addr()));
        }
        let paths = self.rib.paths(prefix);
        let views: Vec<multipath::PathView<'_>> = paths
            .iter()
            .filter_map(|(peer, attributes)| {
                let info = self.rib.peer_info(*peer)?;
                Some(multipath::PathView {
                    attributes,
                    ibgp: info.ibgp,
                    router_id: attributes.originator_id.unwrap_or(info.router_id),
                    peer_address: info.address,
                })
            })
            .collect();
        multipath::next_hops(&views, self.config.max_paths)
    }

    // ---- internals: sessions ----

    fn new_conn(&mut self) -> ConnId {
        self.next_conn += 1;
        ConnId(self.next_conn)
    }

    /// A session for `config`, offering graceful restart as configured.
    fn new_session(&self, config: &PeerConfig, passive: bool) -> Session {
        let mut session = config.session.clone();
        session.passive = passive;
        session.graceful_restart = self.graceful_restart_capability(config, &session);
        Session::new(session)
    }

    fn graceful_restart_capability(
        &self,
        config: &PeerConfig,
        session: &SessionConfig,
    ) -> Option<crate::message::GracefulRestart> {
        config.graceful_restart.map(|gr| {
            graceful::capability(
                &gr,
                &session.families,
                self.config.restarted,
                !self.initial_sync_done,
            )
        })
    }

    /// Gives the primary session its routes and starts it.
    fn start_primary(&mut self, now: Instant, address: IpAddr) {
        self.export_to(now, address);
        if let Some(peer) = self.peers.get_mut(&address) {
            peer.primary.session.handle(now, AdminEvent::Start);
        }
        self.drain(now, address, Slot::Primary);
    }

    /// Ends the peer's sessions with Cease/`subcode`, drops its routes, and starts it
    /// again with its (new) configuration.
    fn restart_peer(&mut self, now: Instant, address: IpAddr, subcode: u8) {
        // Strict BFD: the new session too waits for BFD Up.
        let wait = self
            .peers
            .get(&address)
            .is_some_and(|p| p.config.bfd == BfdMode::Strict && p.path_up != Some(true));
        self.reset_peer(now, address, subcode, !wait);
        if wait && let Some(peer) = self.peers.get_mut(&address) {
            peer.held_down = Some(HeldDown::UntilPathUp);
        }
    }

    /// [`Speaker::restart_peer`], and with `start` false the new session stays Idle.
    fn reset_peer(&mut self, now: Instant, address: IpAddr, subcode: u8, start: bool) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.primary.session.cease(now, subcode, Bytes::new());
        if let Some(c) = peer.colliding.as_mut() {
            c.session.cease(now, subcode, Bytes::new());
        }
        self.drain(now, address, Slot::Colliding);
        self.drain(now, address, Slot::Primary);
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let session = self.new_session(&peer.config, peer.config.session.passive);
        let peer = self.peers.get_mut(&address).expect("present");
        peer.colliding = None;
        peer.held_down = None;
        peer.primary = Link::new(session);
        // Stale routes are in the RIB under the peer's id too: clearing the peer takes them.
        peer.stale.take_all();
        let rib_id = peer.rib_id;
        self.rib.clear_peer(rib_id, &mut self.best_changes);
        self.collect_route_changes();
        if start {
            self.start_primary(now, address);
        } else {
            self.export_to(now, address);
        }
    }

    /// Hands `conn` (accepted from the peer) to the primary session, ending whatever
    /// connection or attempt it had.
    fn take_over_primary(&mut self, now: Instant, address: IpAddr, conn: ConnId) {
        let peer = self.peers.get_mut(&address).expect("caller checked");
        let session = &mut peer.primary.session;
        if !matches!(session.state(), State::Connect | State::Active) {
            if session.state() != State::Idle {
                session.close_collision(now);
            }
            // Start without asking for a connection of our own: this one is it.
            let passive = session.config().passive;
            session.set_passive(true);
            session.handle(now, AdminEvent::Start);
            session.set_passive(passive);
        }
        self.drain(now, address, Slot::Primary);
        let peer = self.peers.get_mut(&address).expect("caller checked");
        if let Some(old) = peer.primary.conn.take() {
            self.conns.remove(&old);
            self.actions.push_back(SpeakerAction::Close { conn: old });
        }
        peer.primary.conn = Some(conn);
        peer.primary.outgoing = false;
        peer.primary.notified = false;
        self.conns.insert(conn, (address, Slot::Primary));
        peer.primary.session.handle_connected(now);
        self.drain(now, address, Slot::Primary);
    }

    /// Runs a second, passive session on `conn` next to the primary one.
    fn start_colliding(&mut self, now: Instant, address: IpAddr, conn: ConnId) {
        let peer = &self.peers[&address];
        let mut link = Link::new(self.new_session(&peer.config, true));
        let routes = self.routes_for(peer);
        link.session.replace_routes(now, routes);
        link.session.handle(now, AdminEvent::Start);
        link.conn = Some(conn);
        link.session.handle_connected(now);
        let peer = self.peers.get_mut(&address).expect("present");
        if let Some(old) = peer.colliding.replace(link).and_then(|l| l.conn) {
            self.conns.remove(&old);
            self.actions.push_back(SpeakerAction::Close { conn: old });
        }
        self.conns.insert(conn, (address, Slot::Colliding));
        self.drain(now, address, Slot::Colliding);
    }

    fn refuse(&mut self, peer: IpAddr, reason: Refusal) -> Refusal {
        self.actions
            .push_back(SpeakerAction::ConnectionRefused { peer, reason });
        reason
    }

    /// Settles two sessions to one peer once the peer's identifier is known. Returns the
    /// slot the colliding session's remaining actions belong to, if it survived.
    fn resolve_collision(&mut self, now: Instant, address: IpAddr) -> Option<Slot> {
        let peer = self.peers.get_mut(&address)?;
        let colliding = peer.colliding.as_ref()?;
        let keep_new = if peer.primary.session.state() == State::Established {
            // Only with graceful restart is a colliding session run while Established: the
            // peer restarted, and its new OPEN was valid.
            true
        } else {
            let remote_id = colliding
                .session
                .remote_id()
                .or(peer.primary.session.remote_id())?;
            let session = &peer.config.session;
            // With any peer AS, the AS its OPEN carried (the same on both connections).
            let remote_as = colliding
                .session
                .peer_as()
                .or(peer.primary.session.peer_as())?;
            let keep = collision::resolve_with_as(
                session.local_id,
                session.local_as,
                remote_id,
                remote_as,
            );
            // The colliding connection is always the peer's; the primary is ours here.
            keep == Keep::Incoming
        };
        if keep_new {
            let mut new = peer.colliding.take()?;
            new.session.set_passive(peer.config.session.passive);
            let mut old = std::mem::replace(&mut peer.primary, new);
            if old.session.state() == State::Established {
                // RFC 4724 §4.2: treat it as the old connection having ended.
                old.session.handle_closed(now);
            } else {
                old.session.close_collision(now);
            }
            // The old session's last actions (NOTIFICATION, state change) go out under a
            // temporary colliding slot, then it is dropped.
            peer.colliding = Some(old);
            if let Some(c) = peer.primary.conn {
                self.conns.insert(c, (address, Slot::Primary));
            }
            if let Some(c) = peer.colliding.as_ref().and_then(|l| l.conn) {
                self.conns.insert(c, (address, Slot::Colliding));
            }
            self.finish_replaced(now, address);
            Some(Slot::Primary)
        } else {
            let mut loser = peer.colliding.take()?;
            loser.session.close_collision(now);
            while let Some(action) = loser.session.poll_action() {
                self.forward_io(&mut loser, action);
            }
            if let Some(c) = loser.conn {
                self.conns.remove(&c);
            }
            None
        }
    }

    /// Drains and drops the replaced session parked in the colliding slot. Its leaving
    /// Established counts as the peer going down (a restart: no NOTIFICATION was sent).
    fn finish_replaced(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(mut old) = peer.colliding.take() else {
            return;
        };
        let mut went_down = false;
        while let Some(action) = old.session.poll_action() {
            match action {
                Action::StateChanged {
                    from: State::Established,
                    ..
                } => went_down = true,
                other => self.forward_io(&mut old, other),
            }
        }
        if let Some(c) = old.conn.take() {
            self.conns.remove(&c);
            self.actions.push_back(SpeakerAction::Close { conn: c });
        }
        if went_down {
            self.peer_down(now, address, old.notified);
        }
    }

    /// Passes a session's I/O action on (for sessions being dropped).
    fn forward_io(&mut self, link: &mut Link, action: Action) {
        if let Some(Action::NotificationSent(_) | Action::NotificationReceived(_)) =
            carry_io(link, action, &mut self.conns, &mut self.actions)
        {
            link.notified = true;
        }
    }

    /// Processes everything one session asked for or reported.
    fn drain(&mut self, now: Instant, address: IpAddr, mut slot: Slot) {
        loop {
            let Some(peer) = self.peers.get_mut(&address) else {
                return;
            };
            let Some(link) = peer.link(slot) else {
                return;
            };
            let Some(action) = link.session.poll_action() else {
                return;
            };
            let Some(action) = carry_io(link, action, &mut self.conns, &mut self.actions) else {
                continue;
            };
            match action {
                Action::Connect => {
                    self.next_conn += 1;
                    let conn = ConnId(self.next_conn);
                    if let Some(old) = link.conn.replace(conn) {
                        self.conns.remove(&old);
                        self.actions.push_back(SpeakerAction::Close { conn: old });
                    }
                    link.outgoing = true;
                    link.notified = false;
                    self.conns.insert(conn, (address, slot));
                    self.actions.push_back(SpeakerAction::Connect {
                        peer: address,
                        conn,
                    });
                }
                // Handled by `carry_io`.
                Action::Send(_) | Action::Disconnect => {}
                Action::NotificationSent(notification) => {
                    link.notified = true;
                    self.actions.push_back(SpeakerAction::Notification {
                        peer: address,
                        sent: true,
                        notification,
                    });
                }
                Action::NotificationReceived(notification) => {
                    link.notified = true;
                    self.actions.push_back(SpeakerAction::Notification {
                        peer: address,
                        sent: false,
                        notification,
                    });
                }
                Action::UpdateFault(fault) => {
                    self.actions.push_back(SpeakerAction::UpdateFault {
                        peer: address,
                        fault,
                    });
                }
                Action::StateChanged { from, to } => match slot {
                    Slot::Primary => {
                        let notified = link.notified;
                        if from == State::Established {
                            link.notified = false;
                        }
                        self.actions.push_back(SpeakerAction::PeerState {
                            peer: address,
                            from,
                            to,
                        });
                        if to == State::Established {
                            self.peer_up(now, address);
                        }
                        if from == State::Established {
                            self.peer_down(now, address, notified);
                        }
                        // Our connection's OPEN told us the identifier: settle a collision
                        // (if the primary loses, its replacement goes on in this slot).
                        if to == State::OpenConfirm && self.peers[&address].colliding.is_some() {
                            self.resolve_collision(now, address);
                        }
                    }
                    Slot::Colliding => {
                        if to == State::Idle {
                            if let Some(peer) = self.peers.get_mut(&address) {
                                peer.colliding = None;
                            }
                            return;
                        }
                        if matches!(to, State::OpenConfirm | State::Established) {
                            match self.resolve_collision(now, address) {
                                Some(new_slot) => {
                                    slot = new_slot;
                                    if to == State::Established {
                                        self.actions.push_back(SpeakerAction::PeerState {
                                            peer: address,
                                            from,
                                            to,
                                        });
                                        self.peer_up(now, address);
                                    }
                                }
                                None if self.peers[&address].colliding.is_none() => return,
                                None => {}
                            }
                        }
                    }
                },
                Action::Routes(routes) => {
                    if slot == Slot::Primary {
                        self.import(now, address, routes);
                    }
                }
                Action::EndOfRib(family) => {
                    if slot == Slot::Primary {
                        self.end_of_rib(address, family);
                    }
                }
            }
        }
    }

    // ---- internals: routes ----

    /// The session reached Established.
    fn peer_up(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(negotiated) = peer.primary.session.negotiated() else {
            return;
        };
        let families = negotiated.families.clone();
        let router_id = negotiated.remote_id;
        peer.peer_graceful_restart = peer
            .config
            .graceful_restart
            .and(negotiated.peer_graceful_restart().cloned());
        peer.established_count += 1;
        peer.end_of_rib.clear();
        peer.rejections_reported = 0;
        peer.max_prefix_reported = false;
        peer.refused_since_refresh = false;
        self.rib.set_peer_info(
            peer.rib_id,
            PeerInfo {
                address,
                router_id,
                // With any peer AS, what this session's OPEN said.
                ibgp: peer.primary.session.is_ibgp(),
            },
        );
        if peer.stale.is_empty() {
            return;
        }
        // RFC 4724 §4.2: stale routes of a family the peer did not keep forwarding for (or
        // no longer negotiates) go now; the rest wait for its End-of-RIB.
        let cap = peer.peer_graceful_restart.clone();
        let stale_families: Vec<Family> = [Family::IPV4_UNICAST, Family::IPV6_UNICAST]
            .into_iter()
            .filter(|f| peer.stale.prefixes.iter().any(|p| Family::of(p) == *f))
            .collect();
        peer.stale.deadline = peer
            .config
            .graceful_restart
            .map(|gr| now + gr.stale_routes_time);
        for family in stale_families {
            let kept = families.contains(&family)
                && cap.as_ref().is_some_and(|c| graceful::preserved(c, family));
            if !kept {
                self.sweep_stale(address, Some(family), false);
            }
        }
    }

    /// The session left Established. Without a NOTIFICATION and with graceful restart
    /// negotiated, the routes stay as stale for the peer's restart time (RFC 4724 §4.2);
    /// otherwise they go now.
    fn peer_down(&mut self, now: Instant, address: IpAddr, notified: bool) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.end_of_rib.clear();
        let keep_for = match (&peer.peer_graceful_restart, peer.config.graceful_restart) {
            (Some(cap), Some(local)) if !notified => {
                Some(graceful::restart_time(cap).min(local.stale_routes_time))
            }
            _ => None,
        };
        let rib_id = peer.rib_id;
        match keep_for {
            Some(time) if !time.is_zero() => {
                let prefixes = self.rib.peer_prefixes(rib_id);
                let peer = self.peers.get_mut(&address).expect("present");
                peer.stale.mark(prefixes);
                peer.stale.deadline = Some(now + time);
                self.actions.push_back(SpeakerAction::StaleKept {
                    peer: address,
                    routes: peer.stale.len(),
                });
            }
            _ => {
                peer.stale.take_all();
                self.rib.clear_peer(rib_id, &mut self.best_changes);
                self.collect_route_changes();
            }
        }
    }

    /// Removes a peer's stale routes (of one family, or all).
    fn sweep_stale(&mut self, address: IpAddr, family: Option<Family>, expired: bool) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let prefixes = match family {
            Some(f) => peer.stale.take_family(f),
            None => peer.stale.take_all(),
        };
        if peer.stale.is_empty() {
            peer.stale.deadline = None;
        }
        if prefixes.is_empty() {
            return;
        }
        let rib_id = peer.rib_id;
        self.rib.withdraw(rib_id, &prefixes, &mut self.best_changes);
        self.collect_route_changes();
        self.actions.push_back(SpeakerAction::StaleSwept {
            peer: address,
            routes: prefixes.len(),
            expired,
        });
    }

    /// End-of-RIB for `family` from the primary session.
    fn end_of_rib(&mut self, address: IpAddr, family: Family) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if !peer.end_of_rib.contains(&family) {
            peer.end_of_rib.push(family);
        }
        let negotiated = peer
            .primary
            .session
            .negotiated()
            .map(|n| n.families.clone())
            .unwrap_or_default();
        if !negotiated.is_empty() && negotiated.iter().all(|f| peer.end_of_rib.contains(f)) {
            peer.synced = true;
        }
        self.actions.push_back(SpeakerAction::EndOfRib {
            peer: address,
            family,
        });
        self.sweep_stale(address, Some(family), false);
        self.check_initial_sync(false);
    }

    fn all_waited_peers_synced(&self) -> bool {
        self.peers
            .values()
            .filter(|p| p.config.wait_for_end_of_rib)
            .all(|p| p.synced)
    }

    /// Reports the initial sync once, and stops offering the Restart State bit.
    fn check_initial_sync(&mut self, deferral_expired: bool) {
        if self.initial_sync_done || !(deferral_expired || self.all_waited_peers_synced()) {
            return;
        }
        self.initial_sync_done = true;
        self.actions
            .push_back(SpeakerAction::InitialSyncDone { deferral_expired });
        if self.config.restarted {
            let updates: Vec<(IpAddr, Option<crate::message::GracefulRestart>)> = self
                .peers
                .values()
                .map(|p| {
                    (
                        p.address(),
                        self.graceful_restart_capability(&p.config, &p.config.session),
                    )
                })
                .collect();
            for (address, cap) in updates {
                if let Some(peer) = self.peers.get_mut(&address) {
                    peer.primary.session.set_graceful_restart(cap);
                }
            }
        }
    }

    /// Applies import policy (and the prefix limit) to one UPDATE's routes.
    fn import(&mut self, now: Instant, address: IpAddr, routes: ReceivedRoutes) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        if peer.held_down.is_some() {
            return;
        }
        let rib_id = peer.rib_id;
        if !peer.stale.is_empty() {
            for p in routes.withdrawn.iter().chain(&routes.announced) {
                peer.stale.refreshed(p);
            }
        }
        let mut refused = Vec::new();
        let mut refused_by_limit = 0;
        let mut routes = routes;
        let cluster_id = self
            .config
            .cluster_id
            .unwrap_or(peer.config.session.local_id);
        if routes
            .attributes
            .as_ref()
            .is_some_and(|a| reflect::looped(a, cluster_id))
        {
            // Reflected through our cluster already (RFC 4456 §8): a loop, dropped.
            let announced = std::mem::take(&mut routes.announced);
            routes.withdrawn.extend(announced);
        }
        if let Some(attrs) = routes.attributes.filter(|_| !routes.announced.is_empty()) {
            let first = routes.announced[0];
            let next_hop = peer.next_hop_of(&first, &attrs);
            let originator = attrs
                .originator_id
                .or_else(|| peer.primary.session.remote_id());
            let attrs = match (next_hop, attrs.next_hop.map(|n| n.addr())) {
                (Some(nh), Some(given)) if nh == given => attrs,
                (Some(nh), _) => Arc::new(with_next_hop(&attrs, nh)),
                (None, _) => attrs,
            };
            let mut accepted = Vec::with_capacity(routes.announced.len());
            for prefix in routes.announced {
                match next_hop {
                    Some(nh) if peer.config.import.accepts_from(&prefix, nh, originator) => {
                        accepted.push(prefix)
                    }
                    _ => refused.push((prefix, next_hop)),
                }
            }
            let refused_by_policy = refused.len();
            let over_limit = self.limit_prefixes(address, &mut accepted, &mut refused);
            refused_by_limit = (refused.len() - refused_by_policy) as u64;
            self.rib
                .announce(rib_id, &accepted, &attrs, &mut self.best_changes);
            if over_limit {
                self.prefix_limit_passed(now, address);
            }
        }
        self.rib
            .withdraw(rib_id, &routes.withdrawn, &mut self.best_changes);
        if !refused.is_empty() {
            self.note_refused(address, &refused);
            if let Some(peer) = self.peers.get_mut(&address) {
                peer.rejected_max_prefix += refused_by_limit;
            }
            let prefixes: Vec<IpNetwork> = refused.iter().map(|(p, _)| *p).collect();
            // A refused announcement replaces what the peer sent before for the prefix.
            self.rib.withdraw(rib_id, &prefixes, &mut self.best_changes);
        }
        self.collect_route_changes();
    }

    /// With a limit of [`MaxPrefixAction::DropExcess`], moves new prefixes beyond it from
    /// `accepted` to `refused`. Returns true if the peer now holds more than its limit
    /// (counting `accepted`).
    fn limit_prefixes(
        &self,
        address: IpAddr,
        accepted: &mut Vec<IpNetwork>,
        refused: &mut Vec<(IpNetwork, Option<IpAddr>)>,
    ) -> bool {
        let Some(peer) = self.peers.get(&address) else {
            return false;
        };
        let Some(limit) = peer.config.max_prefixes else {
            return false;
        };
        let held = self.rib.peer_len(peer.rib_id);
        if held + accepted.len() <= limit.limit {
            return false;
        }
        let new: Vec<bool> = accepted
            .iter()
            .map(|p| self.rib.path_of(peer.rib_id, p).is_none())
            .collect();
        let added = new.iter().filter(|n| **n).count();
        if held + added <= limit.limit {
            return false;
        }
        if limit.action != MaxPrefixAction::DropExcess {
            return true;
        }
        let mut room = limit.limit.saturating_sub(held);
        let mut kept = Vec::with_capacity(accepted.len());
        for (prefix, is_new) in accepted.drain(..).zip(new) {
            if !is_new {
                kept.push(prefix);
            } else if room > 0 {
                room -= 1;
                kept.push(prefix);
            } else {
                refused.push((prefix, None));
            }
        }
        *accepted = kept;
        true
    }

    /// The peer passed its prefix limit: report it once per session, and with
    /// [`MaxPrefixAction::Cease`] end the session (RFC 4486 subcode 1, with the family and
    /// the limit as data).
    fn prefix_limit_passed(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        let Some(limit) = peer.config.max_prefixes else {
            return;
        };
        if !peer.max_prefix_reported {
            peer.max_prefix_reported = true;
            self.actions.push_back(SpeakerAction::MaxPrefixExceeded {
                peer: address,
                limit: limit.limit,
                action: limit.action,
            });
        }
        if let MaxPrefixAction::Cease { restart_after } = limit.action {
            let mut data = BytesMut::with_capacity(7);
            data.put_u16(Family::IPV4_UNICAST.afi);
            data.put_u8(Family::IPV4_UNICAST.safi);
            data.put_u32(u32::try_from(limit.limit).unwrap_or(u32::MAX));
            peer.held_down = Some(match restart_after {
                Some(after) => HeldDown::Until(now + after),
                None => HeldDown::UntilReconfigured,
            });
            peer.primary
                .session
                .cease(now, cease::MAX_PREFIXES, data.freeze());
        }
    }

    fn note_refused(&mut self, address: IpAddr, refused: &[(IpNetwork, Option<IpAddr>)]) {
        let Some(peer) = self.peers.get_mut(&address) else {
            return;
        };
        peer.rejected += refused.len() as u64;
        peer.refused_since_refresh = true;
        for (prefix, next_hop) in refused {
            if peer.rejections_reported < REJECTIONS_REPORTED {
                self.actions.push_back(SpeakerAction::RouteRejected {
                    peer: address,
                    prefix: *prefix,
                    next_hop: next_hop.unwrap_or(address),
                });
            } else if peer.rejections_reported == REJECTIONS_REPORTED {
                self.actions
                    .push_back(SpeakerAction::RejectionsNotReported { peer: address });
            } else {
                break;
            }
            peer.rejections_reported += 1;
        }
    }

    /// Import policy changed, or the prefix limit takes more: drop held routes the policy no
    /// longer accepts, and, if the peer sent routes that were refused, ask for everything
    /// again (those may pass now). A route reflector's clients change their import policy for it with every Node in the cluster,
    /// and a refresh makes the reflector send its whole table again: asked for only when
    /// something was refused, that is once per new Node a client heard of late, not once per
    /// client and Node.
    fn reapply_import(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let failing: Vec<IpNetwork> = self
            .rib
            .adj_rib_in(peer.rib_id)
            .into_iter()
            .filter(|(prefix, attrs)| {
                let originator = attrs
                    .originator_id
                    .or_else(|| peer.primary.session.remote_id());
                attrs.next_hop.is_none_or(|nh| {
                    !peer
                        .config
                        .import
                        .accepts_from(prefix, nh.addr(), originator)
                })
            })
            .map(|(prefix, _)| prefix)
            .collect();
        let rib_id = peer.rib_id;
        self.rib.withdraw(rib_id, &failing, &mut self.best_changes);
        self.collect_route_changes();
        let peer = self.peers.get_mut(&address).expect("present");
        for p in &failing {
            peer.stale.refreshed(p);
        }
        let established = peer.primary.session.state() == State::Established;
        let ask = established && peer.refused_since_refresh;
        // Asked: what is still refused shows again as the peer sends it. Not asked: the routes
        // dropped here count as refused, for a policy that takes them again later.
        peer.refused_since_refresh = !ask && (peer.refused_since_refresh || !failing.is_empty());
        if ask && !peer.primary.session.request_refresh(now) {
            self.restart_peer(now, address, cease::CONFIGURATION_CHANGE);
        } else {
            self.drain(now, address, Slot::Primary);
        }
    }

    /// What `peer` is sent: the originated routes its export policy allows, and the
    /// learned routes reflected to it.
    fn routes_for(&self, peer: &Peer) -> Vec<(IpNetwork, PathAttributes)> {
        let config = &peer.config;
        let mut routes: Vec<(IpNetwork, PathAttributes)> = self
            .originated
            .iter()
            .filter(|(prefix, attrs)| {
                attrs
                    .next_hop
                    .is_some_and(|nh| config.export.accepts(prefix, nh.addr()))
            })
            .cloned()
            .collect();
        if self.reflecting {
            for (prefix, source, attrs) in self.rib.best_routes() {
                if let Some(a) = self.reflection(peer, &prefix, source, attrs) {
                    routes.push((prefix, a));
                }
            }
        }
        routes
    }

    /// The route to reflect to `target` for `prefix`, whose best path came from `source`
    /// with `attrs`; `None` if nothing is reflected to it.
    fn reflection(
        &self,
        target: &Peer,
        prefix: &IpNetwork,
        source: PeerId,
        attrs: &PathAttributes,
    ) -> Option<PathAttributes> {
        if source == target.rib_id || self.originated.iter().any(|(p, _)| p == prefix) {
            return None;
        }
        let info = self.rib.peer_info(source)?;
        let source_side = self.peers.get(&info.address).map(reflect::Side::of)?;
        if !reflect::reflects(source_side, reflect::Side::of(target)) {
            return None;
        }
        let originator = attrs.originator_id.unwrap_or(info.router_id);
        // The route's originator would drop it as its own (RFC 4456 §8): not sent.
        if target.primary.session.remote_id() == Some(originator) {
            return None;
        }
        let cluster_id = self.cluster_id(&target.config);
        Some(reflect::reflected(attrs, &info, cluster_id))
    }

    /// Our CLUSTER_ID on the session to a peer (RFC 4456 §7: the router ID by default).
    fn cluster_id(&self, config: &PeerConfig) -> Ipv4Addr {
        self.config.cluster_id.unwrap_or(config.session.local_id)
    }

    /// Stages the reflected route (or its withdrawal) for `prefix` in every iBGP peer's
    /// sessions; [`Speaker::send_reflected`] sends them.
    fn stage_reflection(&mut self, prefix: IpNetwork, best: Option<(PeerId, &PathAttributes)>) {
        if self.originated.iter().any(|(p, _)| *p == prefix) {
            return;
        }
        let staged: Vec<(IpAddr, Option<PathAttributes>)> = self
            .peers
            .values()
            .filter(|p| p.primary.session.is_ibgp())
            .map(|peer| {
                let route =
                    best.and_then(|(source, attrs)| self.reflection(peer, &prefix, source, attrs));
                (peer.address(), route)
            })
            .collect();
        for (address, route) in staged {
            let Some(peer) = self.peers.get_mut(&address) else {
                continue;
            };
            peer.primary.session.stage(prefix, route.clone());
            if let Some(c) = peer.colliding.as_mut() {
                c.session.stage(prefix, route);
            }
            self.reflect_pending.insert(address);
        }
    }

    /// Sends what [`Speaker::stage_reflection`] staged. Called at the end of every input:
    /// staging happens deep inside the handling of one peer's UPDATE, where draining other
    /// peers' sessions (or that one's) would reorder their actions.
    fn send_reflected(&mut self, now: Instant) {
        while let Some(address) = self.reflect_pending.pop_first() {
            let Some(peer) = self.peers.get_mut(&address) else {
                continue;
            };
            peer.primary.session.send_staged(now);
            if let Some(c) = peer.colliding.as_mut() {
                c.session.send_staged(now);
            }
            self.drain(now, address, Slot::Primary);
            self.drain(now, address, Slot::Colliding);
        }
    }

    fn export_to(&mut self, now: Instant, address: IpAddr) {
        let Some(peer) = self.peers.get(&address) else {
            return;
        };
        let routes = self.routes_for(peer);
        let peer = self.peers.get_mut(&address).expect("present");
        peer.primary.session.replace_routes(now, routes.clone());
        if let Some(c) = peer.colliding.as_mut() {
            c.session.replace_routes(now, routes);
        }
        self.drain(now, address, Slot::Primary);
        self.drain(now, address, Slot::Colliding);
    }

    /// Turns the RIB's best-path changes into route changes (and reflected routes).
    fn collect_route_changes(&mut self) {
        let changes = std::mem::take(&mut self.best_changes);
        if self.reflecting {
            for change in &changes {
                match change {
                    BestChange::Best {
                        prefix,
                        peer,
                        attributes,
                    } => self.stage_reflection(*prefix, Some((*peer, attributes))),
                    BestChange::Unreachable { prefix } => self.stage_reflection(*prefix, None),
                }
            }
        }
        let mut touched = self.rib.take_touched();
        if self.config.max_paths > 1 {
            touched.sort();
            touched.dedup();
            for prefix in touched {
                let next_hops = self.best_next_hops(&prefix);
                let before = match next_hops {
                    NextHops::None => self.multipath.remove(&prefix),
                    _ => self.multipath.insert(prefix, next_hops.clone()),
                };
                let unchanged = match &before {
                    Some(b) => *b == next_hops,
                    None => next_hops == NextHops::None,
                };
                if !unchanged {
                    self.route_changes.push(RouteChange { prefix, next_hops });
                }
            }
            return;
        }
        for change in changes {
            self.route_changes.push(match change {
                BestChange::Best {
                    prefix, attributes, ..
                } => RouteChange {
                    prefix,
                    next_hops: attributes
                        .next_hop
                        .map_or(NextHops::None, |n| NextHops::One(n.addr())),
                },
                BestChange::Unreachable { prefix } => RouteChange {
                    prefix,
                    next_hops: NextHops::None,
                },
            });
        }
    }
}

/// Carries out a session's I/O on its link's connection: `Send` becomes
/// [`SpeakerAction::Send`], `Disconnect` [`SpeakerAction::Close`] (and the connection is
/// forgotten). Any other action is handed back.
/// Whether `new` keeps routes that `old` dropped: only [`MaxPrefixAction::DropExcess`] drops
/// any, and a higher limit, another action or no limit keeps more.
fn limit_takes_more(old: Option<MaxPrefix>, new: Option<MaxPrefix>) -> bool {
    let Some(MaxPrefix {
        limit: was,
        action: MaxPrefixAction::DropExcess,
    }) = old
    else {
        return false;
    };
    !matches!(new, Some(MaxPrefix { limit, action: MaxPrefixAction::DropExcess }) if limit <= was)
}

fn carry_io(
    link: &mut Link,
    action: Action,
    conns: &mut HashMap<ConnId, (IpAddr, Slot)>,
    out: &mut VecDeque<SpeakerAction>,
) -> Option<Action> {
    match action {
        Action::Send(bytes) => {
            if let Some(conn) = link.conn {
                out.push_back(SpeakerAction::Send { conn, bytes });
            }
            None
        }
        Action::Disconnect => {
            if let Some(conn) = link.conn.take() {
                conns.remove(&conn);
                out.push_back(SpeakerAction::Close { conn });
            }
            None
        }
        other => Some(other),
    }
}
