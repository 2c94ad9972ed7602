//! BGP metric families: sessions by state and peer type, prefixes, rejections, UPDATE
//! errors, NOTIFICATIONs, prefix limits, graceful restart; per-peer series for router peers.
//!
//! Cardinality is bounded by design: every aggregate family is keyed by `peer_type` (`mesh`,
//! `router`) and a small fixed label (state, family, reason, code), and every series of it
//! exists from the start with zero, so a rate or an absence alert works from the first
//! scrape. Per-peer series (`podroute_bgp_peer_*`) exist for router peers only; mesh peers
//! are aggregated unless `--metrics-per-mesh-peer` asks for them (N-1 peers per node would
//! make N² series over a cluster, the BIRD-exporter problem).
//!
//! Values come from the speaker, which holds the state ([`BgpMetrics::observe`] reads it),
//! and from what it reports as it happens ([`BgpMetrics::record`]): notifications, UPDATE
//! faults, prefix-limit events and session transitions are counted once each.

use std::collections::HashMap;
use std::net::IpAddr;

use super::{counter_vec, gauge_vec, registered};
use podroute_bgp::message::error_code;
use podroute_bgp::session::State;
use podroute_bgp::speaker::{MaxPrefixAction, Refusal, Speaker, SpeakerAction};
use prometheus::{IntCounterVec, IntGauge, IntGaugeVec, Registry};

use crate::peers::{PeerKind, PeerSet};

/// The `peer_type` label: mesh peers (other nodes) and routers (everything configured).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerType {
    /// Another node of the mesh.
    Mesh,
    /// A router (a static peer, later a `BGPPeer`).
    Router,
}

impl PeerType {
    /// Both, in label order.
    pub const ALL: [Self; 2] = [Self::Mesh, Self::Router];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::Mesh => "mesh",
            Self::Router => "router",
        }
    }

    /// The type of a configured peer.
    pub fn of(kind: &PeerKind) -> Self {
        match kind {
            PeerKind::Mesh { .. } => Self::Mesh,
            _ => Self::Router,
        }
    }
}

/// Every session state (RFC 4271 §8.2.2), with its label and the value of
/// `podroute_bgp_peer_state` (1 Idle … 6 Established, the order of the RFC).
pub const STATES: [(State, &str); 6] = [
    (State::Idle, "idle"),
    (State::Connect, "connect"),
    (State::Active, "active"),
    (State::OpenSent, "open_sent"),
    (State::OpenConfirm, "open_confirm"),
    (State::Established, "established"),
];

fn state_number(state: State) -> i64 {
    STATES
        .iter()
        .position(|(s, _)| *s == state)
        .map_or(0, |i| i as i64 + 1)
}

/// NOTIFICATION error codes (RFC 4271 §4.5, RFC 7313) and their labels; anything else is
/// `other`, so the label set stays fixed whatever a peer sends.
const CODES: [(u8, &str); 7] = [
    (error_code::MESSAGE_HEADER, "message_header"),
    (error_code::OPEN_MESSAGE, "open_message"),
    (error_code::UPDATE_MESSAGE, "update_message"),
    (error_code::HOLD_TIMER_EXPIRED, "hold_timer_expired"),
    (error_code::FSM, "fsm"),
    (error_code::CEASE, "cease"),
    (error_code::ROUTE_REFRESH, "route_refresh"),
];

fn code_label(code: u8) -> &'static str {
    CODES
        .iter()
        .find(|(c, _)| *c == code)
        .map_or("other", |(_, l)| l)
}

const FAMILIES: [&str; 2] = ["ipv4", "ipv6"];

/// The per-peer families (without the `podroute_` prefix): they have series only while a
/// peer they cover is configured.
pub const PER_PEER_FAMILIES: [&str; 5] = [
    "bgp_peer_state",
    "bgp_peer_prefixes_received_total",
    "bgp_peer_prefixes_accepted",
    "bgp_peer_prefixes_advertised",
    "bgp_peer_rejected_routes_total",
];
const REJECT_REASONS: [&str; 2] = ["import_policy", "max_prefix"];
const RFC7606_ACTIONS: [&str; 3] = ["attribute_discard", "treat_as_withdraw", "session_reset"];
const MAX_PREFIX_ACTIONS: [&str; 3] = ["warn", "drop_excess", "cease"];
const REFUSALS: [Refusal; 3] = [
    Refusal::UnknownPeer,
    Refusal::Established,
    Refusal::HeldDown,
];
/// The `reason` of a connection the agent closes itself before the speaker sees it: a GTSM
/// peer's SYN that did not arrive with TTL 255 (the sans-IO speaker never sees TTLs).
const GTSM_REFUSAL: &str = "gtsm";

/// The `action` label of a prefix limit.
pub fn max_prefix_label(action: MaxPrefixAction) -> &'static str {
    match action {
        MaxPrefixAction::Warn => "warn",
        MaxPrefixAction::DropExcess => "drop_excess",
        MaxPrefixAction::Cease { .. } => "cease",
    }
}

/// The BGP families, registered once.
#[derive(Debug, Clone)]
pub struct BgpMetrics {
    sessions: IntGaugeVec,
    initial_sync_done: IntGauge,
    session_transitions: IntCounterVec,
    prefixes_received: IntCounterVec,
    prefixes_accepted: IntGaugeVec,
    prefixes_advertised: IntGaugeVec,
    rejected_routes: IntCounterVec,
    update_errors: IntCounterVec,
    notifications: IntCounterVec,
    max_prefix_events: IntCounterVec,
    graceful_restart_peers: IntGaugeVec,
    stale_routes: IntGaugeVec,
    loc_rib_prefixes: IntGaugeVec,
    rejected_connections: IntCounterVec,
    peer_state: IntGaugeVec,
    peer_prefixes_received: IntCounterVec,
    peer_prefixes_accepted: IntGaugeVec,
    peer_prefixes_advertised: IntGaugeVec,
    peer_rejected_routes: IntCounterVec,
    per_mesh_peer: bool,
}

impl BgpMetrics {
    /// Registers the families in `registry`, every aggregate series at zero.
    /// `per_mesh_peer`: per-peer series for mesh peers too.
    pub fn new(registry: &Registry, per_mesh_peer: bool) -> Result<Self, prometheus::Error> {
        const PT: &str = "peer_type";
        let metrics = Self {
            sessions: gauge_vec(
                registry,
                "bgp_sessions",
                "BGP sessions by state and peer type",
                &[PT, "state"],
            )?,
            initial_sync_done: registered(
                registry,
                IntGauge::new(
                    "bgp_initial_sync_done",
                    "1 once End-of-RIB came from every mesh peer or the startup grace ran out",
                )?,
            )?,
            session_transitions: counter_vec(
                registry,
                "bgp_session_transitions_total",
                "BGP sessions that reached (up) or left (down) Established",
                &[PT, "direction"],
            )?,
            prefixes_received: counter_vec(
                registry,
                "bgp_prefixes_received_total",
                "prefixes announced by peers, before import policy",
                &[PT, "family"],
            )?,
            prefixes_accepted: gauge_vec(
                registry,
                "bgp_prefixes_accepted",
                "prefixes held from peers after import policy (Adj-RIB-In), stale ones included",
                &[PT, "family"],
            )?,
            prefixes_advertised: gauge_vec(
                registry,
                "bgp_prefixes_advertised",
                "prefixes advertised to peers (Adj-RIB-Out), summed over sessions",
                &[PT, "family"],
            )?,
            rejected_routes: counter_vec(
                registry,
                "bgp_rejected_routes_total",
                "received prefixes refused, by reason",
                &[PT, "reason"],
            )?,
            update_errors: counter_vec(
                registry,
                "bgp_update_errors_total",
                "malformed UPDATEs by RFC 7606 action taken",
                &[PT, "action"],
            )?,
            notifications: counter_vec(
                registry,
                "bgp_notifications_total",
                "NOTIFICATION messages sent and received, by error code",
                &[PT, "direction", "code"],
            )?,
            max_prefix_events: counter_vec(
                registry,
                "bgp_max_prefix_events_total",
                "sessions that passed their prefix limit, by the action configured",
                &[PT, "action"],
            )?,
            graceful_restart_peers: gauge_vec(
                registry,
                "bgp_graceful_restart_peers",
                "peers with graceful restart negotiated, and those restarting now (routes stale)",
                &[PT, "state"],
            )?,
            stale_routes: gauge_vec(
                registry,
                "bgp_stale_routes",
                "routes kept as stale while their peer restarts (graceful restart)",
                &[PT],
            )?,
            loc_rib_prefixes: gauge_vec(
                registry,
                "bgp_loc_rib_prefixes",
                "prefixes in the BGP Loc-RIB (best paths), by family",
                &["family"],
            )?,
            rejected_connections: counter_vec(
                registry,
                "bgp_rejected_connections_total",
                "BGP connections refused, by reason",
                &["reason"],
            )?,
            peer_state: gauge_vec(
                registry,
                PER_PEER_FAMILIES[0],
                "session state of one peer: 1 Idle, 2 Connect, 3 Active, 4 OpenSent, \
                 5 OpenConfirm, 6 Established (routers; mesh peers with --metrics-per-mesh-peer)",
                &["peer", PT],
            )?,
            peer_prefixes_received: counter_vec(
                registry,
                PER_PEER_FAMILIES[1],
                "prefixes one peer announced, before import policy",
                &["peer", PT, "family"],
            )?,
            peer_prefixes_accepted: gauge_vec(
                registry,
                PER_PEER_FAMILIES[2],
                "prefixes held from one peer after import policy",
                &["peer", PT, "family"],
            )?,
            peer_prefixes_advertised: gauge_vec(
                registry,
                PER_PEER_FAMILIES[3],
                "prefixes advertised to one peer",
                &["peer", PT, "family"],
            )?,
            peer_rejected_routes: counter_vec(
                registry,
                PER_PEER_FAMILIES[4],
                "prefixes of one peer refused, by reason",
                &["peer", PT, "reason"],
            )?,
            per_mesh_peer,
        };
        for pt in PeerType::ALL.map(PeerType::label) {
            for (_, state) in STATES {
                metrics.sessions.with_label_values(&[pt, state]).set(0);
            }
            for direction in ["up", "down"] {
                metrics
                    .session_transitions
                    .with_label_values(&[pt, direction]);
            }
            for family in FAMILIES {
                metrics.prefixes_received.with_label_values(&[pt, family]);
                metrics.prefixes_accepted.with_label_values(&[pt, family]);
                metrics.prefixes_advertised.with_label_values(&[pt, family]);
            }
            for reason in REJECT_REASONS {
                metrics.rejected_routes.with_label_values(&[pt, reason]);
            }
            for action in RFC7606_ACTIONS {
                metrics.update_errors.with_label_values(&[pt, action]);
            }
            for direction in ["sent", "received"] {
                for code in CODES.map(|(_, l)| l).iter().chain(&["other"]) {
                    metrics
                        .notifications
                        .with_label_values(&[pt, direction, code]);
                }
            }
            for action in MAX_PREFIX_ACTIONS {
                metrics.max_prefix_events.with_label_values(&[pt, action]);
            }
            for state in ["negotiated", "restarting"] {
                metrics
                    .graceful_restart_peers
                    .with_label_values(&[pt, state]);
            }
            metrics.stale_routes.with_label_values(&[pt]);
        }
        for family in FAMILIES {
            metrics.loc_rib_prefixes.with_label_values(&[family]);
        }
        for refusal in REFUSALS {
            metrics
                .rejected_connections
                .with_label_values(&[refusal.metric_label()]);
        }
        metrics
            .rejected_connections
            .with_label_values(&[GTSM_REFUSAL]);
        Ok(metrics)
    }

    /// Counts a refused connection.
    pub fn refused(&self, reason: Refusal) {
        self.rejected_connections
            .with_label_values(&[reason.metric_label()])
            .inc();
    }

    /// Counts a connection of a GTSM peer closed by the agent (its SYN's TTL was not 255, or
    /// the minimum TTL could not be set), before the speaker saw it.
    pub fn refused_by_gtsm(&self) {
        self.rejected_connections
            .with_label_values(&[GTSM_REFUSAL])
            .inc();
    }

    /// Counts what the speaker reported as it happened (`peer_type` of the peer concerned).
    pub fn record(&self, action: &SpeakerAction, peer_type: PeerType) {
        let pt = peer_type.label();
        match action {
            SpeakerAction::PeerState { from, to, .. } => {
                if *to == State::Established {
                    self.session_transitions
                        .with_label_values(&[pt, "up"])
                        .inc();
                } else if *from == State::Established {
                    self.session_transitions
                        .with_label_values(&[pt, "down"])
                        .inc();
                }
            }
            SpeakerAction::Notification {
                sent, notification, ..
            } => {
                let direction = if *sent { "sent" } else { "received" };
                self.notifications
                    .with_label_values(&[pt, direction, code_label(notification.code)])
                    .inc();
                if *sent && notification.code == error_code::UPDATE_MESSAGE {
                    self.update_errors
                        .with_label_values(&[pt, "session_reset"])
                        .inc();
                }
            }
            SpeakerAction::UpdateFault { fault, .. } => {
                let action = match fault.action {
                    podroute_bgp::message::ErrorAction::AttributeDiscard => "attribute_discard",
                    podroute_bgp::message::ErrorAction::TreatAsWithdraw => "treat_as_withdraw",
                    podroute_bgp::message::ErrorAction::SessionReset => "session_reset",
                };
                self.update_errors.with_label_values(&[pt, action]).inc();
            }
            SpeakerAction::MaxPrefixExceeded { action, .. } => {
                self.max_prefix_events
                    .with_label_values(&[pt, max_prefix_label(*action)])
                    .inc();
            }
            _ => {}
        }
    }

    /// Reads the speaker's state into the gauges, and what its counters gained since the
    /// last call into the counters. `seen` is the caller's memory of those counters.
    pub fn observe(&self, speaker: &Speaker, specs: &PeerSet, seen: &mut SeenCounters) {
        #[derive(Default)]
        struct Sums {
            sessions: [i64; 6],
            accepted: [i64; 2],
            advertised: [i64; 2],
            gr_negotiated: i64,
            gr_restarting: i64,
            stale: i64,
        }
        let mut sums: HashMap<PeerType, Sums> = HashMap::new();
        let mut present = Vec::new();
        let mut configured = std::collections::HashSet::new();
        for peer in speaker.peers() {
            configured.insert(peer.address);
            let peer_type = specs
                .get(&peer.address)
                .map_or(PeerType::Router, |s| PeerType::of(&s.kind));
            let pt = peer_type.label();
            let sum = sums.entry(peer_type).or_default();
            let state = state_number(peer.state);
            if let Some(slot) = sum.sessions.get_mut(state as usize - 1) {
                *slot += 1;
            }
            sum.accepted[0] += peer.accepted_by_family.0 as i64;
            sum.accepted[1] += peer.accepted_by_family.1 as i64;
            sum.advertised[0] += peer.advertised_by_family.0 as i64;
            sum.advertised[1] += peer.advertised_by_family.1 as i64;
            sum.gr_negotiated += i64::from(peer.graceful_restart);
            sum.gr_restarting += i64::from(peer.stale > 0);
            sum.stale += peer.stale as i64;

            let received = speaker
                .session_counters(peer.address)
                .map(|c| c.prefixes_received_by_family)
                .unwrap_or_default();
            let now = Counts {
                received,
                rejected_policy: peer.rejected.saturating_sub(peer.rejected_max_prefix),
                rejected_limit: peer.rejected_max_prefix,
            };
            let last = seen.0.insert(peer.address, now).unwrap_or_default();
            let gained = now.since(&last);
            self.prefixes_received
                .with_label_values(&[pt, "ipv4"])
                .inc_by(gained.received.0);
            self.prefixes_received
                .with_label_values(&[pt, "ipv6"])
                .inc_by(gained.received.1);
            self.rejected_routes
                .with_label_values(&[pt, "import_policy"])
                .inc_by(gained.rejected_policy);
            self.rejected_routes
                .with_label_values(&[pt, "max_prefix"])
                .inc_by(gained.rejected_limit);

            if peer_type == PeerType::Router || self.per_mesh_peer {
                let address = peer.address.to_string();
                let a = address.as_str();
                self.peer_state.with_label_values(&[a, pt]).set(state);
                for (i, family) in FAMILIES.iter().enumerate() {
                    let (accepted, advertised, received) = if i == 0 {
                        (
                            peer.accepted_by_family.0,
                            peer.advertised_by_family.0,
                            gained.received.0,
                        )
                    } else {
                        (
                            peer.accepted_by_family.1,
                            peer.advertised_by_family.1,
                            gained.received.1,
                        )
                    };
                    self.peer_prefixes_accepted
                        .with_label_values(&[a, pt, family])
                        .set(accepted as i64);
                    self.peer_prefixes_advertised
                        .with_label_values(&[a, pt, family])
                        .set(advertised as i64);
                    self.peer_prefixes_received
                        .with_label_values(&[a, pt, family])
                        .inc_by(received);
                }
                self.peer_rejected_routes
                    .with_label_values(&[a, pt, "import_policy"])
                    .inc_by(gained.rejected_policy);
                self.peer_rejected_routes
                    .with_label_values(&[a, pt, "max_prefix"])
                    .inc_by(gained.rejected_limit);
                present.push((peer.address, peer_type));
            }
        }
        for peer_type in PeerType::ALL {
            let pt = peer_type.label();
            let sum = sums.remove(&peer_type).unwrap_or_default();
            for ((_, state), n) in STATES.iter().zip(sum.sessions) {
                self.sessions.with_label_values(&[pt, state]).set(n);
            }
            for (i, family) in FAMILIES.iter().enumerate() {
                self.prefixes_accepted
                    .with_label_values(&[pt, family])
                    .set(sum.accepted[i]);
                self.prefixes_advertised
                    .with_label_values(&[pt, family])
                    .set(sum.advertised[i]);
            }
            self.graceful_restart_peers
                .with_label_values(&[pt, "negotiated"])
                .set(sum.gr_negotiated);
            self.graceful_restart_peers
                .with_label_values(&[pt, "restarting"])
                .set(sum.gr_restarting);
            self.stale_routes.with_label_values(&[pt]).set(sum.stale);
        }
        let rib = speaker.rib();
        self.loc_rib_prefixes
            .with_label_values(&["ipv4"])
            .set(rib.len_of(podroute_bgp::message::Family::IPV4_UNICAST) as i64);
        self.loc_rib_prefixes
            .with_label_values(&["ipv6"])
            .set(rib.len_of(podroute_bgp::message::Family::IPV6_UNICAST) as i64);
        self.initial_sync_done
            .set(i64::from(speaker.initial_sync_done()));
        seen.0.retain(|address, _| configured.contains(address));
        self.forget_gone(seen, present);
    }

    /// Drops the per-peer series and the memory of peers that are no longer configured.
    fn forget_gone(&self, seen: &mut SeenCounters, present: Vec<(IpAddr, PeerType)>) {
        let gone: Vec<(IpAddr, PeerType)> = seen
            .1
            .iter()
            .filter(|p| !present.contains(p))
            .copied()
            .collect();
        for (address, peer_type) in gone {
            let a = address.to_string();
            let pt = peer_type.label();
            let _ = self.peer_state.remove_label_values(&[&a, pt]);
            for family in FAMILIES {
                let _ = self
                    .peer_prefixes_accepted
                    .remove_label_values(&[&a, pt, family]);
                let _ = self
                    .peer_prefixes_advertised
                    .remove_label_values(&[&a, pt, family]);
                let _ = self
                    .peer_prefixes_received
                    .remove_label_values(&[&a, pt, family]);
            }
            for reason in REJECT_REASONS {
                let _ = self
                    .peer_rejected_routes
                    .remove_label_values(&[&a, pt, reason]);
            }
        }
        seen.1 = present;
    }
}

/// One peer's monotonic counters as last exported.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct Counts {
    received: (u64, u64),
    rejected_policy: u64,
    rejected_limit: u64,
}

impl Counts {
    /// What grew since `last`; a counter that went back (a new session's counters) counts
    /// from zero.
    fn since(&self, last: &Self) -> Self {
        let d = |now: u64, then: u64| if now >= then { now - then } else { now };
        Self {
            received: (
                d(self.received.0, last.received.0),
                d(self.received.1, last.received.1),
            ),
            rejected_policy: d(self.rejected_policy, last.rejected_policy),
            rejected_limit: d(self.rejected_limit, last.rejected_limit),
        }
    }
}

/// What [`BgpMetrics::observe`] exported last, per peer (owned by the speaker task).
#[derive(Debug, Default)]
pub struct SeenCounters(HashMap<IpAddr, Counts>, Vec<(IpAddr, PeerType)>);
