//! The routes a node should hold, computed without I/O.
//!
//! Two sources must agree for a peer route: BGP must have learned the prefix (so the peer is up
//! and announcing it) *and* the cluster view must say that the peer's Node owns that pod CIDR
//! with that node IP. The view alone also gives the *expected* routes used for drift reports.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::RouteIntent;
use crate::view::ClusterView;

/// Best routes from the RIB: prefix → BGP next hop.
pub type LearnedRoutes = BTreeMap<IpNetwork, IpAddr>;

/// Desired kernel routes: the own pod CIDRs as blackholes, and every learned prefix that the
/// view allows as `via <next hop>`.
pub fn desired_routes(
    view: &ClusterView,
    learned: &LearnedRoutes,
) -> BTreeMap<IpNetwork, RouteIntent> {
    let mut desired: BTreeMap<IpNetwork, RouteIntent> = learned
        .iter()
        .filter(|(prefix, next_hop)| view_allows(view, **prefix, **next_hop))
        .map(|(prefix, next_hop)| (*prefix, RouteIntent::Via(*next_hop)))
        .collect();
    for (cidr, _) in view.own.routable_cidrs() {
        desired.insert(cidr, RouteIntent::Blackhole);
    }
    desired
}

/// Routes the node should hold if every peer announced exactly what its Node owns: what the
/// API alone says. The difference to [`desired_routes`] is drift.
pub fn expected_routes(view: &ClusterView) -> BTreeMap<IpNetwork, RouteIntent> {
    let mut expected: BTreeMap<IpNetwork, RouteIntent> = view
        .peers
        .values()
        .flat_map(|peer| peer.routable_cidrs())
        .map(|(cidr, ip)| (cidr, RouteIntent::Via(ip)))
        .collect();
    for (cidr, _) in view.own.routable_cidrs() {
        expected.insert(cidr, RouteIntent::Blackhole);
    }
    expected
}

/// True if some peer Node owns `prefix` with `next_hop` as its node IP of that family.
pub fn view_allows(view: &ClusterView, prefix: IpNetwork, next_hop: IpAddr) -> bool {
    view.peers.values().any(|peer| {
        peer.routable_cidrs()
            .any(|(cidr, ip)| cidr == prefix && ip == next_hop)
    })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeIpOverride;
    use k8s_openapi::api::core::v1::Node;

    fn view() -> ClusterView {
        let nodes: Vec<Node> = (1..=3)
            .map(|n| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("node-{n}")},
                    "spec": {"podCIDRs": [format!("10.244.{n}.0/24")]},
                    "status": {"addresses": [{"type": "InternalIP", "address": format!("198.18.0.{n}")}]}
                }))
                .expect("node")
            })
            .collect();
        ClusterView::from_nodes(&nodes, "node-1", NodeIpOverride::default()).expect("view")
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn learned_routes_that_match_the_view_are_desired_own_cidr_is_blackholed() {
        let learned = LearnedRoutes::from([(net("10.244.2.0/24"), ip("198.18.0.2"))]);
        let desired = desired_routes(&view(), &learned);
        assert_eq!(
            desired,
            BTreeMap::from([
                (net("10.244.1.0/24"), RouteIntent::Blackhole),
                (net("10.244.2.0/24"), RouteIntent::Via(ip("198.18.0.2"))),
            ])
        );
    }

    #[test]
    fn learned_routes_the_view_does_not_own_are_not_desired() {
        let learned = LearnedRoutes::from([
            // node-3's CIDR announced with node-2 as next hop: hijack, refused.
            (net("10.244.3.0/24"), ip("198.18.0.2")),
            // A prefix no Node owns.
            (net("0.0.0.0/0"), ip("198.18.0.2")),
            // A more specific part of a Node's CIDR is not the CIDR.
            (net("10.244.2.128/25"), ip("198.18.0.2")),
            // Our own CIDR learned from someone else never displaces the blackhole.
            (net("10.244.1.0/24"), ip("198.18.0.3")),
        ]);
        let desired = desired_routes(&view(), &learned);
        assert_eq!(
            desired,
            BTreeMap::from([(net("10.244.1.0/24"), RouteIntent::Blackhole)])
        );
    }

    #[test]
    fn expected_routes_come_from_the_api_alone() {
        let expected = expected_routes(&view());
        assert_eq!(expected.len(), 3);
        assert_eq!(
            expected[&net("10.244.3.0/24")],
            RouteIntent::Via(ip("198.18.0.3"))
        );
    }
}
