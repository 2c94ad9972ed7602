//! The agent's Prometheus registry (every name prefixed `podroute_`): BGP ([`bgp`]), kernel
//! routes and netlink, reconcile and convergence timing, drift, readiness, build info.
//!
//! Every family has a fixed, small label set; the README's metrics reference lists each
//! series and its cardinality.

pub mod bgp;

use prometheus::{
    Encoder, Histogram, HistogramOpts, HistogramVec, IntCounter, IntCounterVec, IntGauge,
    IntGaugeVec, Opts, Registry, TextEncoder,
};

use crate::drift::{DriftKind, DriftReport};
use crate::routes::RouteCounters;
pub use bgp::BgpMetrics;

/// What caused a kernel route change, the `trigger` label of the convergence histogram.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Trigger {
    /// A BGP UPDATE (or a session's end) from a peer.
    BgpUpdate,
    /// A Node event from the API (the own pod CIDRs, or a peer added or removed).
    NodeEvent,
}

impl Trigger {
    fn label(self) -> &'static str {
        match self {
            Self::BgpUpdate => "bgp_update",
            Self::NodeEvent => "node_event",
        }
    }
}

/// Every metric the agent exports.
#[derive(Debug, Clone)]
pub struct Metrics {
    registry: Registry,
    /// The BGP families.
    pub bgp: BgpMetrics,
    /// 1 when the node is ready (see `/readyz`).
    pub ready: IntGauge,
    /// podroute routes in the kernel after the last flush, by family.
    routes_installed: IntGaugeVec,
    /// Netlink route operations by kind (`create`, `replace`, `delete`).
    netlink_operations: IntCounterVec,
    /// Netlink failures by operation (`write`, `dump`).
    netlink_errors: IntCounterVec,
    /// Requests per netlink batch.
    netlink_batch_size: Histogram,
    /// podroute routes deleted by someone else and restored.
    routes_restored: IntCounter,
    /// Destinations currently held by a route of another protocol.
    pub route_collisions: IntGauge,
    /// Desired routes whose next hop the kernel cannot reach.
    pub routes_unresolvable: IntGauge,
    /// Errors by kind (`metric_label()` of the error).
    pub errors: IntCounterVec,
    /// Drifting destinations by kind, from the last check.
    drift_routes: IntGaugeVec,
    /// Drift events by kind.
    drift_events: IntCounterVec,
    /// Pod veths released by the CNI plugin that the agent destroyed (their netns lived on).
    pub cni_released_veths_destroyed: IntCounter,
    /// Full passes of the route programmer (table dump and compare).
    route_full_passes: IntCounter,
    /// Duration of one route flush, by pass (`incremental`, `full`).
    reconcile_duration: HistogramVec,
    /// Time from receiving a BGP UPDATE or Node event to the kernel route written.
    convergence: HistogramVec,
    /// Pod addresses the CNI plugin has handed out in the own pod CIDRs, by family.
    pod_addresses_allocated: IntGaugeVec,
    /// Pod addresses the own pod CIDRs hold, by family.
    pod_addresses_capacity: prometheus::GaugeVec,
    /// BFD sessions by state (`admin_down`, `down`, `init`, `up`).
    pub bfd_sessions: IntGaugeVec,
    /// BFD session state changes.
    pub bfd_transitions: IntCounter,
    /// BFD sessions that went Down because the Detection Time expired.
    pub bfd_detections: IntCounter,
    /// Received BFD packets dropped, by reason.
    pub bfd_dropped_packets: IntCounterVec,
    /// Times the BFD sockets could not be opened when a peer first wanted BFD.
    pub bfd_start_failures: IntCounter,
    last_route_counters: std::sync::Arc<std::sync::Mutex<RouteCounters>>,
}

/// The pod address families (without the `podroute_` prefix): series only for the families
/// the node has a pod CIDR of, so none before the first reconcile.
pub const POD_ADDRESS_FAMILIES: [&str; 2] = ["pod_addresses_allocated", "pod_addresses_capacity"];

/// Buckets of the timing histograms: 1 ms to 60 s.
const SECONDS_BUCKETS: [f64; 14] = [
    0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 15.0, 60.0,
];

/// Buckets of the batch size histogram (requests; a batch holds at most 64 KiB).
const BATCH_BUCKETS: [f64; 8] = [1.0, 4.0, 16.0, 64.0, 256.0, 512.0, 1024.0, 2048.0];

/// Registers `metric` in `registry` and hands it back (clones share the series).
fn registered<M: prometheus::core::Collector + Clone + 'static>(
    registry: &Registry,
    metric: M,
) -> Result<M, prometheus::Error> {
    registry.register(Box::new(metric.clone()))?;
    Ok(metric)
}

/// A registered gauge family.
fn gauge_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntGaugeVec, prometheus::Error> {
    registered(registry, IntGaugeVec::new(Opts::new(name, help), labels)?)
}

/// A registered counter family.
fn counter_vec(
    registry: &Registry,
    name: &str,
    help: &str,
    labels: &[&str],
) -> Result<IntCounterVec, prometheus::Error> {
    registered(registry, IntCounterVec::new(Opts::new(name, help), labels)?)
}

impl Metrics {
    /// Creates and registers every metric (`per_mesh_peer`: per-peer BGP series for mesh
    /// peers too).
    pub fn new(per_mesh_peer: bool) -> Result<Self, prometheus::Error> {
        let registry = Registry::new_custom(Some("podroute".into()), None)?;
        let bgp = BgpMetrics::new(&registry, per_mesh_peer)?;
        gauge_vec(
            &registry,
            "build_info",
            "1, labelled with the agent's version",
            &["version"],
        )?
        .with_label_values(&[env!("CARGO_PKG_VERSION")])
        .set(1);
        let ready = registered(
            &registry,
            IntGauge::new(
                "ready",
                "1 when the node routes: own pod CIDR advertised, End-of-RIB from every established \
             mesh peer, every mesh route in the FIB",
            )?,
        )?;
        let routes_installed = gauge_vec(
            &registry,
            "routes_installed",
            "podroute routes in the kernel, by family",
            &["family"],
        )?;
        let netlink_operations = counter_vec(
            &registry,
            "netlink_operations_total",
            "kernel route writes done, by operation",
            &["op"],
        )?;
        let netlink_errors = counter_vec(
            &registry,
            "netlink_errors_total",
            "failed netlink requests, by operation",
            &["op"],
        )?;
        let netlink_batch_size = registered(
            &registry,
            Histogram::with_opts(
                HistogramOpts::new(
                    "netlink_batch_size",
                    "route write requests per netlink batch (one sendmsg)",
                )
                .buckets(BATCH_BUCKETS.to_vec()),
            )?,
        )?;
        let routes_restored = registered(
            &registry,
            IntCounter::new(
                "routes_restored_total",
                "podroute routes deleted by someone else and restored",
            )?,
        )?;
        let route_collisions = registered(
            &registry,
            IntGauge::new(
                "route_collisions",
                "destinations held by a route of another protocol",
            )?,
        )?;
        let routes_unresolvable = registered(
            &registry,
            IntGauge::new(
                "routes_unresolvable",
                "routes whose next hop cannot be reached",
            )?,
        )?;
        let errors = counter_vec(&registry, "errors_total", "errors by kind", &["kind"])?;
        let drift_routes = gauge_vec(
            &registry,
            "drift_routes",
            "expected routes (from Node objects) the RIB or the kernel gets wrong, by kind",
            &["kind"],
        )?;
        let drift_events = counter_vec(
            &registry,
            "drift_events_total",
            "expected routes that were in place and drifted, by kind (repairs of routes \
                 others deleted included)",
            &["kind"],
        )?;
        for kind in DriftKind::ALL {
            drift_routes.with_label_values(&[kind.label()]);
            drift_events.with_label_values(&[kind.label()]);
        }
        let cni_released_veths_destroyed = registered(
            &registry,
            IntCounter::new(
                "cni_released_veths_destroyed_total",
                "pod veths released by CNI DEL and destroyed by the agent because their netns lived on",
            )?,
        )?;
        let route_full_passes = registered(
            &registry,
            IntCounter::new(
                "route_full_passes_total",
                "kernel table dumps compared with the desired routes",
            )?,
        )?;
        let reconcile_duration = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "route_reconcile_duration_seconds",
                    "time one flush of staged routes to the kernel takes, by pass (a full pass \
                 dumps and compares the table first)",
                )
                .buckets(SECONDS_BUCKETS.to_vec()),
                &["pass"],
            )?,
        )?;
        let convergence = registered(
            &registry,
            HistogramVec::new(
                HistogramOpts::new(
                    "route_convergence_seconds",
                    "per kernel route change: from this agent receiving the BGP UPDATE or Node \
                 event that caused it to the flush that wrote it",
                )
                .buckets(SECONDS_BUCKETS.to_vec()),
                &["trigger"],
            )?,
        )?;
        let pod_addresses_allocated = gauge_vec(
            &registry,
            POD_ADDRESS_FAMILIES[0],
            "pod addresses the CNI plugin has handed out in the node's pod CIDRs, by family \
             (read from its address store every reconcile period)",
            &["family"],
        )?;
        let pod_addresses_capacity = registered(
            &registry,
            prometheus::GaugeVec::new(
                Opts::new(
                    POD_ADDRESS_FAMILIES[1],
                    "pod addresses the node's pod CIDRs hold, by family (IPv4 without network \
                 and broadcast)",
                ),
                &["family"],
            )?,
        )?;
        let bfd_sessions = gauge_vec(
            &registry,
            "bfd_sessions",
            "BFD sessions by state",
            &["state"],
        )?;
        let bfd_transitions = registered(
            &registry,
            IntCounter::new("bfd_transitions_total", "BFD session state changes")?,
        )?;
        let bfd_detections = registered(
            &registry,
            IntCounter::new(
                "bfd_detections_total",
                "BFD sessions that went down because no packet came within the detection time",
            )?,
        )?;
        let bfd_dropped_packets = counter_vec(
            &registry,
            "bfd_dropped_packets_total",
            "received BFD packets dropped, by reason",
            &["reason"],
        )?;
        let bfd_start_failures = registered(
            &registry,
            IntCounter::new(
                "bfd_start_failures_total",
                "times the BFD sockets (UDP 3784) could not be opened when a peer wanted BFD",
            )?,
        )?;
        for family in ["ipv4", "ipv6"] {
            routes_installed.with_label_values(&[family]);
        }
        // The kinds an alert looks at exist from the start; others appear when they happen.
        for kind in [
            "netlink_write",
            "netlink_dump",
            "cni_conflist",
            "cni_readiness_file",
            "veth_sweep",
        ] {
            errors.with_label_values(&[kind]);
        }
        for op in ["create", "replace", "delete"] {
            netlink_operations.with_label_values(&[op]);
        }
        for op in ["write", "dump"] {
            netlink_errors.with_label_values(&[op]);
        }
        for pass in ["incremental", "full"] {
            reconcile_duration.with_label_values(&[pass]);
        }
        for trigger in [Trigger::BgpUpdate, Trigger::NodeEvent] {
            convergence.with_label_values(&[trigger.label()]);
        }
        Ok(Self {
            registry,
            bgp,
            ready,
            routes_installed,
            netlink_operations,
            netlink_errors,
            netlink_batch_size,
            routes_restored,
            route_collisions,
            routes_unresolvable,
            errors,
            drift_routes,
            drift_events,
            cni_released_veths_destroyed,
            route_full_passes,
            reconcile_duration,
            convergence,
            pod_addresses_allocated,
            pod_addresses_capacity,
            bfd_sessions,
            bfd_transitions,
            bfd_detections,
            bfd_dropped_packets,
            bfd_start_failures,
            last_route_counters: Default::default(),
        })
    }

    /// Adds what the route programmer counted since the last call. Routes others deleted
    /// and the programmer restored, and collisions newly seen, are drift events too: they
    /// are repaired (or left) before any check would see them.
    pub fn observe_route_counters(&self, now: RouteCounters) {
        let Ok(mut last) = self.last_route_counters.lock() else {
            return;
        };
        let ops = &self.netlink_operations;
        ops.with_label_values(&["create"])
            .inc_by(now.created.saturating_sub(last.created));
        ops.with_label_values(&["replace"])
            .inc_by(now.replaced.saturating_sub(last.replaced));
        ops.with_label_values(&["delete"])
            .inc_by(now.deleted.saturating_sub(last.deleted));
        let restored = now.restored.saturating_sub(last.restored);
        self.routes_restored.inc_by(restored);
        self.drift_events
            .with_label_values(&[DriftKind::KernelMissing.label()])
            .inc_by(restored);
        self.netlink_errors
            .with_label_values(&["write"])
            .inc_by(now.errors.saturating_sub(last.errors));
        self.route_full_passes
            .inc_by(now.full_passes.saturating_sub(last.full_passes));
        *last = now;
    }

    /// Counts a failed dump or lookup.
    pub fn netlink_dump_failed(&self) {
        self.netlink_errors.with_label_values(&["dump"]).inc();
    }

    /// Records the size of netlink batches just sent.
    pub fn observe_batches(&self, sizes: &[u32]) {
        for size in sizes {
            self.netlink_batch_size.observe(f64::from(*size));
        }
    }

    /// Records how long a flush took.
    pub fn observe_flush(&self, seconds: f64, full_pass: bool) {
        let pass = if full_pass { "full" } else { "incremental" };
        self.reconcile_duration
            .with_label_values(&[pass])
            .observe(seconds);
    }

    /// Records `routes` route changes that reached the kernel `seconds` after their cause.
    pub fn observe_convergence(&self, trigger: Trigger, seconds: f64, routes: usize) {
        let histogram = self.convergence.with_label_values(&[trigger.label()]);
        for _ in 0..routes {
            histogram.observe(seconds);
        }
    }

    /// Publishes the routes installed by family.
    pub fn set_installed(&self, (v4, v6): (usize, usize)) {
        self.routes_installed
            .with_label_values(&["ipv4"])
            .set(v4 as i64);
        self.routes_installed
            .with_label_values(&["ipv6"])
            .set(v6 as i64);
    }

    /// Publishes the pod address usage; a family without a pod CIDR has no series.
    pub fn set_address_usage(&self, usage: &[crate::cni_conf::AddressUsage]) {
        self.pod_addresses_allocated.reset();
        self.pod_addresses_capacity.reset();
        for u in usage {
            self.pod_addresses_allocated
                .with_label_values(&[u.family])
                .set(i64::try_from(u.allocated).unwrap_or(i64::MAX));
            self.pod_addresses_capacity
                .with_label_values(&[u.family])
                .set(u.capacity as f64);
        }
    }

    /// Publishes a drift report and counts its new events.
    pub fn observe_drift(&self, drift: &DriftReport, events: &[DriftKind]) {
        for kind in DriftKind::ALL {
            self.drift_routes
                .with_label_values(&[kind.label()])
                .set(drift.count(kind) as i64);
        }
        for kind in events {
            // Counted by the programmer already when it restored the route itself.
            self.drift_events.with_label_values(&[kind.label()]).inc();
        }
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
        let metrics = Metrics::new(false).expect("registry");
        metrics.observe_route_counters(RouteCounters {
            replaced: 3,
            ..Default::default()
        });
        metrics.observe_route_counters(RouteCounters {
            created: 2,
            replaced: 5,
            restored: 1,
            ..Default::default()
        });
        metrics.observe_batches(&[1500, 3]);
        let text = metrics.render();
        for line in [
            "podroute_netlink_operations_total{op=\"replace\"} 5",
            "podroute_netlink_operations_total{op=\"create\"} 2",
            "podroute_routes_restored_total 1",
            "podroute_drift_events_total{kind=\"kernel_missing\"} 1",
            "podroute_netlink_batch_size_count 2",
            "podroute_netlink_batch_size_sum 1503",
        ] {
            assert!(text.lines().any(|l| l == line), "{line} missing in\n{text}");
        }
    }

    #[test]
    fn every_session_state_and_peer_type_is_there_from_the_start() {
        let text = Metrics::new(false).expect("registry").render();
        for peer_type in ["mesh", "router"] {
            for (_, state) in bgp::STATES {
                let line = format!(
                    "podroute_bgp_sessions{{peer_type=\"{peer_type}\",state=\"{state}\"}} 0"
                );
                assert!(text.lines().any(|l| l == line), "{line} missing");
            }
        }
        assert!(text.contains("podroute_build_info{version=\""), "{text}");
        assert!(
            text.contains(
                "podroute_bgp_notifications_total{code=\"cease\",direction=\"received\",peer_type=\"mesh\"} 0"
            ),
            "{text}"
        );
    }
}
