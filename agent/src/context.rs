//! The agent's shared state: configuration, metrics and the status the HTTP server reports.

use std::sync::RwLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use crate::config::Config;
use crate::drift::DriftReport;
use crate::metrics::Metrics;

/// What the agent is doing, for /readyz and /status.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AgentStatus {
    /// Ready: own pod CIDR known and routes programmed.
    pub ready: bool,
    /// Why the agent is not ready, if it is not.
    pub not_ready_reason: Option<String>,
    /// The Node list completed at least once.
    pub view_synced: bool,
    /// The own node's pod CIDRs.
    pub own_pod_cidrs: Vec<IpNetwork>,
    /// Number of mesh peers.
    pub peers: usize,
    /// BGP initial sync (End-of-RIB from every established peer) or grace period over.
    pub stale_removal_allowed: bool,
    /// Routes installed after the last reconcile.
    pub routes_installed: usize,
    /// Last drift report.
    pub drift: DriftReport,
    /// BGP peers and their sessions.
    pub bgp_peers: Vec<crate::speaker::PeerStatus>,
    /// BGPPeers (and the BGPConfiguration) not used on this node, by name, with why.
    pub invalid_peers: std::collections::BTreeMap<String, String>,
}

/// One per agent, shared by every task.
#[derive(Debug)]
pub struct Context {
    /// Validated configuration.
    pub config: Config,
    /// Prometheus metrics.
    pub metrics: Metrics,
    /// Current status.
    pub status: RwLock<AgentStatus>,
    /// Kubernetes Events about the own Node.
    pub events: crate::events::EventSender,
    /// When the main loop last finished a turn: `/healthz`.
    pub heartbeat: Heartbeat,
}

/// The main loop's sign of life. It turns at least once per reconcile period even when
/// nothing changes, so a loop that has not turned for much longer is stuck, and the kubelet's
/// liveness probe should restart the agent (graceful restart keeps the routes meanwhile).
#[derive(Debug)]
pub struct Heartbeat {
    started: Instant,
    /// Milliseconds after `started` of the last beat.
    last: AtomicU64,
    /// How long without a beat counts as stuck.
    limit: Duration,
}

impl Heartbeat {
    /// Stuck after three reconcile periods without a turn, and never sooner than a minute
    /// (a bulk flush of a million routes is one long turn).
    pub fn new(reconcile_period: Duration) -> Self {
        Self {
            started: Instant::now(),
            last: AtomicU64::new(0),
            limit: (reconcile_period * 3).max(Duration::from_secs(60)),
        }
    }

    /// The main loop finished a turn.
    pub fn beat(&self) {
        self.beat_at(Instant::now());
    }

    fn beat_at(&self, now: Instant) {
        let ms = now.saturating_duration_since(self.started).as_millis();
        self.last
            .store(u64::try_from(ms).unwrap_or(u64::MAX), Ordering::Relaxed);
    }

    /// How long since the last turn, if that is longer than the limit.
    pub fn stuck_for(&self) -> Option<Duration> {
        self.stuck_at(Instant::now())
    }

    fn stuck_at(&self, now: Instant) -> Option<Duration> {
        let last = self.started + Duration::from_millis(self.last.load(Ordering::Relaxed));
        let silent = now.saturating_duration_since(last);
        (silent > self.limit).then_some(silent)
    }
}

impl Context {
    /// A context with a not-ready status.
    pub fn new(config: Config, metrics: Metrics) -> Self {
        let status = AgentStatus {
            not_ready_reason: Some("starting".into()),
            ..Default::default()
        };
        Self {
            metrics,
            heartbeat: Heartbeat::new(config.reconcile_period),
            status: RwLock::new(status),
            events: crate::events::EventSender::none(),
            config,
        }
    }

    /// The context, publishing Kubernetes Events through `events`.
    pub fn with_events(mut self, events: crate::events::EventSender) -> Self {
        self.events = events;
        self
    }

    /// A copy of the current status.
    pub fn status(&self) -> AgentStatus {
        self.status.read().map(|s| s.clone()).unwrap_or_default()
    }

    /// Changes the status.
    pub fn update_status(&self, change: impl FnOnce(&mut AgentStatus)) {
        if let Ok(mut status) = self.status.write() {
            change(&mut status);
            self.metrics.ready.set(i64::from(status.ready));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_loop_that_stops_turning_is_stuck_only_after_the_limit() {
        let heartbeat = Heartbeat::new(Duration::from_secs(30));
        let start = heartbeat.started;
        assert_eq!(heartbeat.stuck_at(start + Duration::from_secs(89)), None);
        assert_eq!(
            heartbeat.stuck_at(start + Duration::from_secs(91)),
            Some(Duration::from_secs(91))
        );
        heartbeat.beat_at(start + Duration::from_secs(90));
        assert_eq!(heartbeat.stuck_at(start + Duration::from_secs(150)), None);
        // A short reconcile period still gets a minute.
        let quick = Heartbeat::new(Duration::from_secs(2));
        assert_eq!(
            quick.stuck_at(quick.started + Duration::from_secs(59)),
            None
        );
        assert!(
            quick
                .stuck_at(quick.started + Duration::from_secs(61))
                .is_some()
        );
    }
}
