//! The agent's Prometheus registry: a few low-cardinality metrics.

use prometheus::{
    Encoder, IntCounter, IntCounterVec, IntGauge, IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::drift::DriftReport;
use crate::routes::RouteCounters;

/// Every metric the agent exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// 1 when the node is ready (pod CIDR known, routes programmed).
    pub ready: IntGauge,
    /// podroute routes in the kernel after the last flush.
    pub routes_installed: IntGauge,
    /// Kernel route writes by operation (`create`, `replace`, `delete`).
    pub route_writes: IntCounterVec,
    /// podroute routes deleted by someone else and restored.
    pub routes_restored: IntCounter,
    /// Destinations currently held by a route of another protocol.
    pub route_collisions: IntGauge,
    /// Desired routes whose next hop the kernel cannot reach.
    pub routes_unresolvable: IntGauge,
    /// Errors by kind (`metric_label()` of the error).
    pub errors: IntCounterVec,
    /// Drift between API, RIB and kernel, by kind.
    pub drift: IntGaugeVec,
    /// BGP connections refused because the source is no configured peer.
    pub bgp_rejected_connections: IntCounter,
    /// Received BGP routes currently rejected by import policy.
    pub bgp_rejected_routes: IntGauge,
    /// BGP sessions by state.
    pub bgp_sessions: IntGaugeVec,
    /// Loc-RIB prefixes by family (`ipv4`, `ipv6`).
    pub bgp_loc_rib_prefixes: IntGaugeVec,
    /// Pod veths released by the CNI plugin that the agent destroyed (their netns lived on).
    pub cni_released_veths_destroyed: IntCounter,
    /// Netlink batches of route writes sent (one `sendmsg` each).
    pub netlink_batches: IntCounter,
    /// Route write requests sent in those batches (divide by batches: requests per batch).
    pub netlink_batch_requests: IntCounter,
    /// Full passes of the route programmer (table dump and compare).
    pub route_full_passes: IntCounter,
    /// BFD sessions by state (`admin_down`, `down`, `init`, `up`).
    pub bfd_sessions: IntGaugeVec,
    /// BFD session state changes.
    pub bfd_transitions: IntCounter,
    /// BFD sessions that went Down because the Detection Time expired.
    pub bfd_detections: IntCounter,
    /// Received BFD packets dropped, by reason.
    pub bfd_dropped_packets: IntCounterVec,
    last_route_counters: std::sync::Arc<std::sync::Mutex<RouteCounters>>,
}

impl Metrics {
    /// Creates and registers every metric.
    pub fn new() -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("podroute".into()), None)?;
        let ready = IntGauge::new("ready", "1 when the node's pod network is ready")?;
        let routes_installed = IntGauge::new("routes_installed", "podroute routes in the kernel")?;
        let route_writes = IntCounterVec::new(
            Opts::new("route_writes_total", "kernel route writes"),
            &["op"],
        )?;
        let routes_restored = IntCounter::new(
            "routes_restored_total",
            "podroute routes deleted by someone else and restored",
        )?;
        let route_collisions = IntGauge::new(
            "route_collisions",
            "destinations held by a route of another protocol",
        )?;
        let routes_unresolvable = IntGauge::new(
            "routes_unresolvable",
            "routes whose next hop cannot be reached",
        )?;
        let errors = IntCounterVec::new(Opts::new("errors_total", "errors by kind"), &["kind"])?;
        let drift = IntGaugeVec::new(
            Opts::new("drift_routes", "routes that differ from what the API says"),
            &["kind"],
        )?;
        let bgp_rejected_connections = IntCounter::new(
            "bgp_rejected_connections_total",
            "BGP connections from sources that are no configured peer",
        )?;
        let bgp_rejected_routes = IntGauge::new(
            "bgp_rejected_routes",
            "received BGP routes rejected by import policy",
        )?;
        let bgp_sessions = IntGaugeVec::new(
            Opts::new("bgp_sessions", "BGP sessions by state"),
            &["state"],
        )?;
        registry.register(Box::new(ready.clone()))?;
        registry.register(Box::new(routes_installed.clone()))?;
        registry.register(Box::new(route_writes.clone()))?;
        registry.register(Box::new(routes_restored.clone()))?;
        registry.register(Box::new(route_collisions.clone()))?;
        registry.register(Box::new(routes_unresolvable.clone()))?;
        registry.register(Box::new(errors.clone()))?;
        registry.register(Box::new(drift.clone()))?;
        registry.register(Box::new(bgp_rejected_connections.clone()))?;
        registry.register(Box::new(bgp_rejected_routes.clone()))?;
        let cni_released_veths_destroyed = IntCounter::new(
            "cni_released_veths_destroyed_total",
            "pod veths released by CNI DEL and destroyed by the agent because their netns lived on",
        )?;
        registry.register(Box::new(bgp_sessions.clone()))?;
        let bgp_loc_rib_prefixes = IntGaugeVec::new(
            Opts::new(
                "bgp_loc_rib_prefixes",
                "prefixes in the BGP Loc-RIB (best paths), by family",
            ),
            &["family"],
        )?;
        registry.register(Box::new(bgp_loc_rib_prefixes.clone()))?;
        registry.register(Box::new(cni_released_veths_destroyed.clone()))?;
        let netlink_batches = IntCounter::new(
            "netlink_batches_total",
            "netlink batches of route writes sent, one sendmsg each",
        )?;
        let netlink_batch_requests = IntCounter::new(
            "netlink_batch_requests_total",
            "route write requests sent in netlink batches",
        )?;
        let route_full_passes = IntCounter::new(
            "route_full_passes_total",
            "kernel table dumps compared with the desired routes",
        )?;
        registry.register(Box::new(netlink_batches.clone()))?;
        registry.register(Box::new(netlink_batch_requests.clone()))?;
        registry.register(Box::new(route_full_passes.clone()))?;
        let bfd_sessions = IntGaugeVec::new(
            Opts::new("bfd_sessions", "BFD sessions by state"),
            &["state"],
        )?;
        let bfd_transitions =
            IntCounter::new("bfd_transitions_total", "BFD session state changes")?;
        let bfd_detections = IntCounter::new(
            "bfd_detections_total",
            "BFD sessions that went down because no packet came within the detection time",
        )?;
        let bfd_dropped_packets = IntCounterVec::new(
            Opts::new(
                "bfd_dropped_packets_total",
                "received BFD packets dropped, by reason",
            ),
            &["reason"],
        )?;
        registry.register(Box::new(bfd_sessions.clone()))?;
        registry.register(Box::new(bfd_transitions.clone()))?;
        registry.register(Box::new(bfd_detections.clone()))?;
        registry.register(Box::new(bfd_dropped_packets.clone()))?;
        Ok(Self {
            bfd_sessions,
            bfd_transitions,
            bfd_detections,
            bfd_dropped_packets,
            registry,
            ready,
            routes_installed,
            route_writes,
            bgp_loc_rib_prefixes,
            routes_restored,
            route_collisions,
            routes_unresolvable,
            errors,
            drift,
            bgp_rejected_connections,
            bgp_rejected_routes,
            bgp_sessions,
            cni_released_veths_destroyed,
            netlink_batches,
            netlink_batch_requests,
            route_full_passes,
            last_route_counters: Default::default(),
        })
    }

    /// Adds what the route programmer counted since the last call.
    pub fn observe_route_counters(&self, now: RouteCounters) {
        let Ok(mut last) = self.last_route_counters.lock() else {
            return;
        };
        self.route_writes
            .with_label_values(&["create"])
            .inc_by(now.created.saturating_sub(last.created));
        self.route_writes
            .with_label_values(&["replace"])
            .inc_by(now.replaced.saturating_sub(last.replaced));
        self.route_writes
            .with_label_values(&["delete"])
            .inc_by(now.deleted.saturating_sub(last.deleted));
        self.routes_restored
            .inc_by(now.restored.saturating_sub(last.restored));
        self.errors
            .with_label_values(&["netlink_write"])
            .inc_by(now.errors.saturating_sub(last.errors));
        self.netlink_batches
            .inc_by(now.batches.saturating_sub(last.batches));
        self.netlink_batch_requests
            .inc_by(now.batched_requests.saturating_sub(last.batched_requests));
        self.route_full_passes
            .inc_by(now.full_passes.saturating_sub(last.full_passes));
        *last = now;
    }

    /// Publishes a drift report.
    pub fn observe_drift(&self, drift: &DriftReport) {
        let set = |kind: &str, n: usize| self.drift.with_label_values(&[kind]).set(n as i64);
        set("missing_in_rib", drift.missing_in_rib.len());
        set("unexpected_in_rib", drift.unexpected_in_rib.len());
        set("missing_in_kernel", drift.missing_in_kernel.len());
        set("unexpected_in_kernel", drift.unexpected_in_kernel.len());
    }

    /// The text exposition of every metric.
    pub fn render(&self) -> String {
        let mut buffer = Vec::new();
        if TextEncoder::new()
            .encode(&self.registry.gather(), &mut buffer)
            .is_err()
        {
            return String::new();
        }
        String::from_utf8(buffer).unwrap_or_default()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn counters_are_exported_as_deltas() {
        let metrics = Metrics::new().expect("registry");
        metrics.observe_route_counters(RouteCounters {
            replaced: 3,
            ..Default::default()
        });
        metrics.observe_route_counters(RouteCounters {
            created: 2,
            replaced: 5,
            restored: 1,
            batches: 2,
            batched_requests: 1500,
            ..Default::default()
        });
        let text = metrics.render();
        assert!(
            text.contains("podroute_route_writes_total{op=\"replace\"} 5"),
            "{text}"
        );
        assert!(
            text.contains("podroute_route_writes_total{op=\"create\"} 2"),
            "{text}"
        );
        assert!(text.contains("podroute_routes_restored_total 1"), "{text}");
        assert!(text.contains("podroute_netlink_batches_total 2"), "{text}");
        assert!(
            text.contains("podroute_netlink_batch_requests_total 1500"),
            "{text}"
        );
    }
}
