//! Drift: where the BGP RIB or the kernel disagree with what the API alone says this node
//! should route.
//!
//! The expected routes come from Node objects only ([`crate::routes::desired::expected_routes`]):
//! every other Node's pod CIDRs via its node IP, the own pod CIDRs as blackholes. The RIB side
//! is the speaker's best path for each; the kernel side is a fresh lookup
//! ([`crate::routes::probe`]), so a route deleted by hand, replaced by another protocol or
//! pointed elsewhere shows up whatever the programmer believes.
//!
//! [`DriftTracker`] turns successive reports into events: a destination that was routed as
//! expected at the last check and drifts now is one event of its kind. A destination that
//! never converged yet (a new Node whose session is still coming up) is no event; it is
//! drift in the gauge until it converges.

use ipnetwork::IpNetwork;
use std::collections::{BTreeMap, BTreeSet};

use crate::routes::RouteIntent;
use crate::routes::desired::LearnedRoutes;
use crate::routes::probe::KernelVerdict;

/// The kinds of drift, each a `kind` label of `podroute_drift_routes` and
/// `podroute_drift_events_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum DriftKind {
    /// An expected peer route the RIB has no path for (peer down, or not announcing it).
    RibMissing,
    /// The RIB's best path has another next hop than the Node's IP.
    RibWrongNextHop,
    /// The kernel has no route for an expected destination.
    KernelMissing,
    /// A route of another protocol (or a longer prefix) takes the destination's traffic.
    KernelForeign,
    /// podroute's kernel route points elsewhere than expected.
    KernelWrongTarget,
}

impl DriftKind {
    /// Every kind, in label order.
    pub const ALL: [Self; 5] = [
        Self::RibMissing,
        Self::RibWrongNextHop,
        Self::KernelMissing,
        Self::KernelForeign,
        Self::KernelWrongTarget,
    ];

    /// The label value.
    pub fn label(self) -> &'static str {
        match self {
            Self::RibMissing => "rib_missing",
            Self::RibWrongNextHop => "rib_wrong_next_hop",
            Self::KernelMissing => "kernel_missing",
            Self::KernelForeign => "kernel_foreign",
            Self::KernelWrongTarget => "kernel_wrong_target",
        }
    }
}

/// One drifting destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DriftEntry {
    /// The destination.
    pub prefix: IpNetwork,
    /// How it drifts.
    pub kind: DriftKind,
    /// What the API expects for it.
    pub expected: RouteIntent,
}

/// The comparison result, kept for metrics and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftReport {
    /// Expected routes: every other Node's pod CIDRs and the own ones.
    pub expected: usize,
    /// Expected routes the kernel forwards as expected.
    pub in_kernel: usize,
    /// Every drifting destination (one destination may drift in the RIB and the kernel).
    pub entries: Vec<DriftEntry>,
}

impl DriftReport {
    /// True if RIB and kernel match the API.
    pub fn is_clean(&self) -> bool {
        self.entries.is_empty()
    }

    /// How many destinations drift in `kind`.
    pub fn count(&self, kind: DriftKind) -> usize {
        self.entries.iter().filter(|e| e.kind == kind).count()
    }
}

/// Compares the expected routes with the RIB's best paths and the kernel's verdicts (a
/// destination without a verdict was not looked at and counts as missing).
pub fn compute_drift(
    expected: &BTreeMap<IpNetwork, RouteIntent>,
    rib: &LearnedRoutes,
    kernel: &BTreeMap<IpNetwork, KernelVerdict>,
) -> DriftReport {
    let mut report = DriftReport {
        expected: expected.len(),
        ..DriftReport::default()
    };
    for (prefix, intent) in expected {
        let mut push = |kind| {
            report.entries.push(DriftEntry {
                prefix: *prefix,
                kind,
                expected: intent.clone(),
            });
        };
        if let RouteIntent::Via(next_hop) = intent {
            match rib.get(prefix) {
                None => push(DriftKind::RibMissing),
                Some(found) if found != next_hop => push(DriftKind::RibWrongNextHop),
                Some(_) => {}
            }
        }
        match kernel
            .get(prefix)
            .copied()
            .unwrap_or(KernelVerdict::Missing)
        {
            KernelVerdict::InPlace => report.in_kernel += 1,
            KernelVerdict::Missing => push(DriftKind::KernelMissing),
            KernelVerdict::Foreign { .. } => push(DriftKind::KernelForeign),
            KernelVerdict::WrongTarget => push(DriftKind::KernelWrongTarget),
        }
    }
    report
}

/// Remembers the last check, to count drift events.
#[derive(Debug, Default)]
pub struct DriftTracker {
    /// Destinations expected and clean at the last check.
    clean: BTreeSet<IpNetwork>,
}

impl DriftTracker {
    /// The events of `report` (over the `expected` destinations): each (destination, kind)
    /// that drifts now and whose destination was clean at the last check.
    pub fn update(
        &mut self,
        expected: impl IntoIterator<Item = IpNetwork>,
        report: &DriftReport,
    ) -> Vec<DriftKind> {
        let now: BTreeSet<(IpNetwork, DriftKind)> =
            report.entries.iter().map(|e| (e.prefix, e.kind)).collect();
        let events = now
            .iter()
            .filter(|(prefix, _)| self.clean.contains(prefix))
            .map(|(_, kind)| *kind)
            .collect();
        let drifting: BTreeSet<IpNetwork> = now.iter().map(|(prefix, _)| *prefix).collect();
        self.clean = expected
            .into_iter()
            .filter(|p| !drifting.contains(p))
            .collect();
        events
    }
}

/// An own pod CIDR or a peer route, for `status`: `blackhole`, `via <ip>` or
/// `via <ip>, <ip>` (multipath).
pub fn describe(intent: &RouteIntent) -> String {
    match intent {
        RouteIntent::Blackhole => "blackhole".to_owned(),
        RouteIntent::Via(ip) => format!("via {ip}"),
        RouteIntent::Multipath(hops) => {
            let hops: Vec<String> = hops.iter().map(ToString::to_string).collect();
            format!("via {}", hops.join(", "))
        }
    }
}

#[cfg(test)]
mod tests {
    use std::net::IpAddr;

    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn expected() -> BTreeMap<IpNetwork, RouteIntent> {
        BTreeMap::from([
            (net("10.244.1.0/24"), RouteIntent::Blackhole),
            (net("10.244.2.0/24"), RouteIntent::Via(ip("198.18.0.2"))),
            (net("10.244.3.0/24"), RouteIntent::Via(ip("198.18.0.3"))),
        ])
    }

    fn all_in_place() -> BTreeMap<IpNetwork, KernelVerdict> {
        expected()
            .keys()
            .map(|p| (*p, KernelVerdict::InPlace))
            .collect()
    }

    #[test]
    fn all_in_agreement_is_clean() {
        let rib = LearnedRoutes::from([
            (net("10.244.2.0/24"), ip("198.18.0.2")),
            (net("10.244.3.0/24"), ip("198.18.0.3")),
        ]);
        let report = compute_drift(&expected(), &rib, &all_in_place());
        assert!(report.is_clean(), "{report:?}");
        assert_eq!((report.expected, report.in_kernel), (3, 3));
    }

    #[test]
    fn silent_peer_wrong_next_hop_and_kernel_gaps_are_reported() {
        // node-3 is silent; node-2's CIDR arrives with a wrong next hop.
        let rib = LearnedRoutes::from([(net("10.244.2.0/24"), ip("198.18.0.99"))]);
        let kernel = BTreeMap::from([
            (net("10.244.1.0/24"), KernelVerdict::InPlace),
            (net("10.244.2.0/24"), KernelVerdict::Foreign { protocol: 4 }),
        ]);
        let report = compute_drift(&expected(), &rib, &kernel);
        let kinds: Vec<(String, DriftKind)> = report
            .entries
            .iter()
            .map(|e| (e.prefix.to_string(), e.kind))
            .collect();
        assert_eq!(
            kinds,
            vec![
                ("10.244.2.0/24".into(), DriftKind::RibWrongNextHop),
                ("10.244.2.0/24".into(), DriftKind::KernelForeign),
                ("10.244.3.0/24".into(), DriftKind::RibMissing),
                ("10.244.3.0/24".into(), DriftKind::KernelMissing),
            ]
        );
        assert_eq!(report.in_kernel, 1);
        assert_eq!(report.count(DriftKind::KernelMissing), 1);
    }

    #[test]
    fn only_drift_from_a_converged_state_is_an_event() {
        let rib = LearnedRoutes::from([
            (net("10.244.2.0/24"), ip("198.18.0.2")),
            (net("10.244.3.0/24"), ip("198.18.0.3")),
        ]);
        let keys = || expected().into_keys();
        let mut tracker = DriftTracker::default();
        // Start-up: nothing in place yet is convergence, not drift events.
        let empty = compute_drift(&expected(), &LearnedRoutes::new(), &BTreeMap::new());
        assert!(tracker.update(keys(), &empty).is_empty());
        // Converged.
        let clean = compute_drift(&expected(), &rib, &all_in_place());
        assert!(tracker.update(keys(), &clean).is_empty());
        // Someone replaces node-2's route: one event, and none while it lasts.
        let mut kernel = all_in_place();
        kernel.insert(net("10.244.2.0/24"), KernelVerdict::Foreign { protocol: 4 });
        let replaced = compute_drift(&expected(), &rib, &kernel);
        assert_eq!(
            tracker.update(keys(), &replaced),
            vec![DriftKind::KernelForeign]
        );
        assert!(
            replaced
                .entries
                .iter()
                .any(|e| e.prefix == net("10.244.2.0/24") && e.kind == DriftKind::KernelForeign)
        );
        assert!(tracker.update(keys(), &replaced).is_empty());
        // Repaired, then deleted: a new event of the other kind.
        assert!(tracker.update(keys(), &clean).is_empty());
        kernel.insert(net("10.244.2.0/24"), KernelVerdict::Missing);
        let deleted = compute_drift(&expected(), &rib, &kernel);
        assert_eq!(
            tracker.update(keys(), &deleted),
            vec![DriftKind::KernelMissing]
        );
    }
}
