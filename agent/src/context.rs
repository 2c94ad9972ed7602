//! The agent's shared state: configuration, metrics and the status the HTTP server reports.

use std::sync::RwLock;

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
}

impl Context {
    /// A context with a not-ready status.
    pub fn new(config: Config, metrics: Metrics) -> Self {
        let status = AgentStatus {
            not_ready_reason: Some("starting".into()),
            ..Default::default()
        };
        Self {
            config,
            metrics,
            status: RwLock::new(status),
            events: crate::events::EventSender::none(),
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
