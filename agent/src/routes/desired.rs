//! The routes the API alone says a node should hold, computed without I/O: every other
//! Node's pod CIDRs via its node IP, and the own pod CIDRs as blackholes. Drift compares them
//! with the Loc-RIB and the kernel. (That a mesh peer may announce only its own Node's CIDRs
//! is the speaker's import policy, see `speaker::peer_config`.)

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use super::RouteIntent;
use crate::view::ClusterView;

/// Routes as prefix → BGP next hop (the Loc-RIB's, for the prefixes drift looks at).
pub type LearnedRoutes = BTreeMap<IpNetwork, IpAddr>;

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
    fn expected_routes_come_from_the_api_alone() {
        let expected = expected_routes(&view());
        assert_eq!(expected.len(), 3);
        assert_eq!(
            expected[&net("10.244.3.0/24")],
            RouteIntent::Via(ip("198.18.0.3"))
        );
    }
}
