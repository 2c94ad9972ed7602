//! Drift: where the RIB or the kernel disagree with what the API alone says a node should have.
//!
//! The expected routes come from Node objects only ([`crate::routes::desired::expected_routes`]).
//! A route missing from the RIB means a peer is down or not announcing; one missing from the
//! kernel means it could not be installed (collision, unresolvable next hop, write error).

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::routes::RouteIntent;
use crate::routes::desired::LearnedRoutes;

/// The comparison result, kept for metrics and `status`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct DriftReport {
    /// Expected peer routes the RIB does not have (with the expected next hop).
    pub missing_in_rib: Vec<(IpNetwork, IpAddr)>,
    /// RIB routes that no Node owns with that next hop (rejected from the kernel).
    pub unexpected_in_rib: Vec<(IpNetwork, IpAddr)>,
    /// Expected routes the kernel does not hold for podroute.
    pub missing_in_kernel: Vec<IpNetwork>,
    /// podroute kernel routes that are not expected.
    pub unexpected_in_kernel: Vec<IpNetwork>,
}

impl DriftReport {
    /// True if RIB and kernel match the API.
    pub fn is_clean(&self) -> bool {
        self.missing_in_rib.is_empty()
            && self.unexpected_in_rib.is_empty()
            && self.missing_in_kernel.is_empty()
            && self.unexpected_in_kernel.is_empty()
    }
}

/// Compares expected routes with the RIB and with the kernel's podroute routes
/// (`kernel` holds the destinations installed).
pub fn compute_drift<'a>(
    expected: &BTreeMap<IpNetwork, RouteIntent>,
    rib: &LearnedRoutes,
    kernel: impl IntoIterator<Item = &'a IpNetwork>,
) -> DriftReport {
    let mut report = DriftReport::default();
    for (prefix, intent) in expected {
        if let RouteIntent::Via(next_hop) = intent
            && rib.get(prefix) != Some(next_hop)
        {
            report.missing_in_rib.push((*prefix, *next_hop));
        }
    }
    for (prefix, next_hop) in rib {
        if expected.get(prefix) != Some(&RouteIntent::Via(*next_hop)) {
            report.unexpected_in_rib.push((*prefix, *next_hop));
        }
    }
    let kernel: std::collections::BTreeSet<IpNetwork> = kernel.into_iter().copied().collect();
    report.missing_in_kernel = expected
        .keys()
        .filter(|p| !kernel.contains(p))
        .copied()
        .collect();
    report.unexpected_in_kernel = kernel
        .iter()
        .filter(|p| !expected.contains_key(p))
        .copied()
        .collect();
    report
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn all_in_agreement_is_clean() {
        let expected = BTreeMap::from([
            (net("10.244.1.0/24"), RouteIntent::Blackhole),
            (net("10.244.2.0/24"), RouteIntent::Via(ip("198.18.0.2"))),
        ]);
        let rib = LearnedRoutes::from([(net("10.244.2.0/24"), ip("198.18.0.2"))]);
        assert!(compute_drift(&expected, &rib, expected.keys()).is_clean());
    }

    #[test]
    fn silent_peer_wrong_next_hop_and_kernel_gaps_are_reported() {
        let expected = BTreeMap::from([
            (net("10.244.1.0/24"), RouteIntent::Blackhole),
            (net("10.244.2.0/24"), RouteIntent::Via(ip("198.18.0.2"))),
            (net("10.244.3.0/24"), RouteIntent::Via(ip("198.18.0.3"))),
        ]);
        // node-3 is silent; node-2's CIDR arrives with a wrong next hop.
        let rib = LearnedRoutes::from([(net("10.244.2.0/24"), ip("198.18.0.99"))]);
        let kernel = [net("10.244.1.0/24"), net("10.244.9.0/24")];
        let drift = compute_drift(&expected, &rib, &kernel);
        assert_eq!(
            drift.missing_in_rib,
            vec![
                (net("10.244.2.0/24"), ip("198.18.0.2")),
                (net("10.244.3.0/24"), ip("198.18.0.3"))
            ]
        );
        assert_eq!(
            drift.unexpected_in_rib,
            vec![(net("10.244.2.0/24"), ip("198.18.0.99"))]
        );
        assert_eq!(
            drift.missing_in_kernel,
            vec![net("10.244.2.0/24"), net("10.244.3.0/24")]
        );
        assert_eq!(drift.unexpected_in_kernel, vec![net("10.244.9.0/24")]);
    }
}
