//! The cluster view: what the agent needs to know about Nodes, computed purely from Node objects.
//!
//! A [`ClusterView`] holds the agent's own node and every other node (its peers), each with its
//! node IP per family and its pod CIDRs. It is rebuilt from the reflector's store whenever a
//! relevant field changes; everything downstream (mesh peers, import policy, expected routes)
//! is derived from it.

use std::collections::BTreeMap;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use k8s_openapi::api::core::v1::Node;

use crate::config::NodeIpOverride;

/// Annotation that overrides a node's IP(s): one IPv4 and/or one IPv6, comma separated.
pub const NODE_IP_ANNOTATION: &str = "podroute.io/node-ip";

/// Annotation that gives a node its own AS number instead of the cluster's (e.g. one AS per
/// rack); sessions between nodes of different AS numbers are eBGP.
pub const NODE_AS_ANNOTATION: &str = "podroute.io/as-number";

/// Annotation that makes a node a route reflector with this CLUSTER_ID (an IPv4 address,
/// RFC 4456 §7), like Calico's `routeReflectorClusterID`. Node-to-node sessions from a
/// reflector to a node without one treat that node as its client; sessions are written as
/// BGPPeers with `peerSelector`.
pub const NODE_RR_CLUSTER_ID_ANNOTATION: &str = "podroute.io/route-reflector-cluster-id";

/// A node's IP per address family.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Hash)]
pub struct NodeIps {
    /// IPv4 node IP.
    pub v4: Option<Ipv4Addr>,
    /// IPv6 node IP.
    pub v6: Option<Ipv6Addr>,
}

impl NodeIps {
    /// The node IP of the family of `network`, if the node has one.
    pub fn for_family_of(&self, network: &IpNetwork) -> Option<IpAddr> {
        match network {
            IpNetwork::V4(_) => self.v4.map(IpAddr::V4),
            IpNetwork::V6(_) => self.v6.map(IpAddr::V6),
        }
    }

    /// The address BGP sessions use: IPv4 when present (MP-BGP carries IPv6 over it), else IPv6.
    pub fn session_address(&self) -> Option<IpAddr> {
        self.v4.map(IpAddr::V4).or(self.v6.map(IpAddr::V6))
    }

    /// Every node IP the node has.
    pub fn all(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.v4
            .map(IpAddr::V4)
            .into_iter()
            .chain(self.v6.map(IpAddr::V6))
    }
}

/// Something wrong with one Node object that the agent works around (and logs).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NodeProblem {
    /// The `podroute.io/node-ip` annotation could not be parsed; InternalIPs are used.
    BadNodeIpAnnotation(String),
    /// A pod CIDR that is not a network address in CIDR form; it is ignored.
    BadPodCidr(String),
    /// The `podroute.io/as-number` annotation is not a usable AS number; the cluster AS is used.
    BadAsAnnotation(String),
    /// The `podroute.io/route-reflector-cluster-id` annotation is not an IPv4 address; the
    /// node is no route reflector.
    BadClusterIdAnnotation(String),
    /// A pod CIDR of a family the node has no IP of; no route can point to it.
    NoNodeIpForPodCidr(IpNetwork),
}

/// What the agent knows about one Node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct NodeInfo {
    /// Node name.
    pub name: String,
    /// Node IP per family.
    pub ips: NodeIps,
    /// Valid pod CIDRs, in the order of `spec.podCIDRs`.
    pub pod_cidrs: Vec<IpNetwork>,
    /// Node labels (for peer selectors later).
    pub labels: BTreeMap<String, String>,
    /// The node's own AS (`podroute.io/as-number`), if it has one apart from the cluster's.
    pub as_number: Option<u32>,
    /// The node is a route reflector with this CLUSTER_ID
    /// ([`NODE_RR_CLUSTER_ID_ANNOTATION`]).
    pub route_reflector_cluster_id: Option<Ipv4Addr>,
    /// Problems found while reading the Node.
    pub problems: Vec<NodeProblem>,
}

impl NodeInfo {
    /// Reads one Node. `override_ips` applies on top of annotation and InternalIPs (used for
    /// the own node only).
    pub fn from_node(node: &Node, override_ips: NodeIpOverride) -> Option<Self> {
        let name = node.metadata.name.clone()?;
        let mut problems = Vec::new();

        let mut ips = internal_ips(node);
        if let Some(text) = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NODE_IP_ANNOTATION))
        {
            match parse_ip_list(text) {
                Some(annotated) => {
                    ips.v4 = annotated.v4.or(ips.v4);
                    ips.v6 = annotated.v6.or(ips.v6);
                }
                None => problems.push(NodeProblem::BadNodeIpAnnotation(text.clone())),
            }
        }
        ips.v4 = override_ips.v4.or(ips.v4);
        ips.v6 = override_ips.v6.or(ips.v6);

        let mut pod_cidrs = Vec::new();
        for text in pod_cidr_strings(node) {
            match parse_pod_cidr(&text) {
                Some(network) if pod_cidrs.contains(&network) => {}
                Some(network) => {
                    if ips.for_family_of(&network).is_none() {
                        problems.push(NodeProblem::NoNodeIpForPodCidr(network));
                    }
                    pod_cidrs.push(network);
                }
                None => problems.push(NodeProblem::BadPodCidr(text)),
            }
        }

        let labels = node.metadata.labels.clone().unwrap_or_default();
        let as_number = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NODE_AS_ANNOTATION))
            .and_then(|text| match text.trim().parse::<u32>() {
                Ok(asn) if crate::peers::usable_as(asn) => Some(asn),
                _ => {
                    problems.push(NodeProblem::BadAsAnnotation(text.clone()));
                    None
                }
            });
        let route_reflector_cluster_id = node
            .metadata
            .annotations
            .as_ref()
            .and_then(|a| a.get(NODE_RR_CLUSTER_ID_ANNOTATION))
            .and_then(|text| match text.trim().parse::<Ipv4Addr>() {
                Ok(id) if !id.is_unspecified() => Some(id),
                _ => {
                    problems.push(NodeProblem::BadClusterIdAnnotation(text.clone()));
                    None
                }
            });
        Some(Self {
            name,
            ips,
            pod_cidrs,
            labels,
            as_number,
            route_reflector_cluster_id,
            problems,
        })
    }

    /// Pod CIDRs paired with the node IP of their family (those without one are left out).
    pub fn routable_cidrs(&self) -> impl Iterator<Item = (IpNetwork, IpAddr)> + '_ {
        self.pod_cidrs
            .iter()
            .filter_map(|cidr| self.ips.for_family_of(cidr).map(|ip| (*cidr, ip)))
    }
}

/// The agent's picture of the cluster.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterView {
    /// The node this agent runs on.
    pub own: NodeInfo,
    /// Every other node, by name.
    pub peers: BTreeMap<String, NodeInfo>,
}

/// Why no view could be built.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ViewError {
    /// The Node list has not completed yet.
    #[error("the Node list from the API server has not completed yet")]
    NotListedYet,
    /// The own Node object does not exist (yet, or NODE_NAME is wrong).
    #[error(
        "node {0:?} is not in the API: check NODE_NAME (it must be the Node object's name, from the downward API spec.nodeName)"
    )]
    OwnNodeMissing(String),
    /// The own node has neither an InternalIP nor an override.
    #[error("node {0:?} has no InternalIP; set --node-ip or the podroute.io/node-ip annotation")]
    OwnNodeWithoutIp(String),
}

impl ViewError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::NotListedYet => "not_listed_yet",
            Self::OwnNodeMissing(_) => "own_node_missing",
            Self::OwnNodeWithoutIp(_) => "own_node_without_ip",
        }
    }
}

impl ClusterView {
    /// Builds the view from all Node objects.
    pub fn from_nodes<'a>(
        nodes: impl IntoIterator<Item = &'a Node>,
        own_name: &str,
        own_override: NodeIpOverride,
    ) -> Result<Self, ViewError> {
        let mut own = None;
        let mut peers = BTreeMap::new();
        for node in nodes {
            if node.metadata.name.as_deref() == Some(own_name) {
                own = NodeInfo::from_node(node, own_override);
            } else if let Some(info) = NodeInfo::from_node(node, NodeIpOverride::default()) {
                peers.insert(info.name.clone(), info);
            }
        }
        let own = own.ok_or_else(|| ViewError::OwnNodeMissing(own_name.to_owned()))?;
        if own.ips.session_address().is_none() {
            return Err(ViewError::OwnNodeWithoutIp(own.name));
        }
        Ok(Self { own, peers })
    }

    /// True once the own node has at least one pod CIDR it can route.
    pub fn own_has_pod_cidr(&self) -> bool {
        self.own.routable_cidrs().next().is_some()
    }

    /// The peer node, if any, whose IP (either family) is `addr`.
    pub fn peer_by_ip(&self, addr: IpAddr) -> Option<&NodeInfo> {
        self.peers
            .values()
            .find(|p| p.ips.all().any(|ip| ip == addr))
    }
}

/// The InternalIP of each family from `status.addresses` (the first of each family wins).
fn internal_ips(node: &Node) -> NodeIps {
    let mut ips = NodeIps::default();
    let addresses = node.status.as_ref().and_then(|s| s.addresses.as_ref());
    for address in addresses.into_iter().flatten() {
        if address.type_ != "InternalIP" {
            continue;
        }
        match address.address.trim().parse::<IpAddr>() {
            Ok(IpAddr::V4(a)) if ips.v4.is_none() => ips.v4 = Some(a),
            Ok(IpAddr::V6(a)) if ips.v6.is_none() => ips.v6 = Some(a),
            _ => {}
        }
    }
    ips
}

/// `spec.podCIDRs`, or the older single `spec.podCIDR` when the list is absent.
fn pod_cidr_strings(node: &Node) -> Vec<String> {
    let Some(spec) = node.spec.as_ref() else {
        return Vec::new();
    };
    match (&spec.pod_cidrs, &spec.pod_cidr) {
        (Some(list), _) if !list.is_empty() => list.clone(),
        (_, Some(one)) => vec![one.clone()],
        _ => Vec::new(),
    }
}

/// A pod CIDR must be a network address with its prefix (`10.244.1.0/24`, not `10.244.1.5/24`).
fn parse_pod_cidr(text: &str) -> Option<IpNetwork> {
    let network: IpNetwork = text.trim().parse().ok()?;
    (network.ip() == network.network()).then_some(network)
}

/// Parses an annotation like `198.18.0.7,fd00:198:18::7` (at most one per family).
fn parse_ip_list(text: &str) -> Option<NodeIps> {
    let addrs: Vec<IpAddr> = text
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(str::parse)
        .collect::<Result<_, _>>()
        .ok()?;
    if addrs.is_empty() {
        return None;
    }
    let parsed = NodeIpOverride::from_addrs(&addrs).ok()?;
    Some(NodeIps {
        v4: parsed.v4,
        v6: parsed.v6,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(json: serde_json::Value) -> Node {
        serde_json::from_value(json).expect("valid Node JSON")
    }

    fn lab_node(n: u8) -> Node {
        node(serde_json::json!({
            "apiVersion": "v1", "kind": "Node",
            "metadata": {"name": format!("node-{n}"), "labels": {"rack": "a"}},
            "spec": {"podCIDR": format!("10.244.{n}.0/24"),
                     "podCIDRs": [format!("10.244.{n}.0/24"), format!("fd00:10:244:{n}::/64")]},
            "status": {"addresses": [
                {"type": "Hostname", "address": format!("node-{n}")},
                {"type": "ExternalIP", "address": "203.0.113.9"},
                {"type": "InternalIP", "address": format!("198.18.0.{n}")},
                {"type": "InternalIP", "address": format!("fd00:198:18::{n}")}
            ]}
        }))
    }

    #[test]
    fn node_ip_is_the_internal_ip_of_each_family() {
        let info = NodeInfo::from_node(&lab_node(2), NodeIpOverride::default()).expect("named");
        assert_eq!(info.ips.v4, Some(Ipv4Addr::new(198, 18, 0, 2)));
        assert_eq!(info.ips.v6, Some("fd00:198:18::2".parse().expect("ip")));
        let routable: Vec<_> = info.routable_cidrs().collect();
        assert_eq!(
            routable,
            vec![
                (
                    "10.244.2.0/24".parse().expect("net"),
                    "198.18.0.2".parse().expect("ip")
                ),
                (
                    "fd00:10:244:2::/64".parse().expect("net"),
                    "fd00:198:18::2".parse().expect("ip")
                ),
            ]
        );
        assert!(info.problems.is_empty());
    }

    #[test]
    fn annotation_overrides_internal_ip_and_flag_overrides_annotation() {
        let mut n = lab_node(1);
        n.metadata.annotations =
            Some([(NODE_IP_ANNOTATION.to_owned(), "198.18.1.1".to_owned())].into());
        let info = NodeInfo::from_node(&n, NodeIpOverride::default()).expect("named");
        assert_eq!(info.ips.v4, Some(Ipv4Addr::new(198, 18, 1, 1)));
        // The annotation named no IPv6, so the InternalIP stays.
        assert_eq!(info.ips.v6, Some("fd00:198:18::1".parse().expect("ip")));

        let flag = NodeIpOverride {
            v4: Some(Ipv4Addr::new(198, 18, 1, 100)),
            v6: None,
        };
        let info = NodeInfo::from_node(&n, flag).expect("named");
        assert_eq!(info.ips.v4, Some(Ipv4Addr::new(198, 18, 1, 100)));
    }

    #[test]
    fn bad_annotation_is_reported_and_ignored() {
        let mut n = lab_node(1);
        n.metadata.annotations =
            Some([(NODE_IP_ANNOTATION.to_owned(), "not-an-ip".to_owned())].into());
        let info = NodeInfo::from_node(&n, NodeIpOverride::default()).expect("named");
        assert_eq!(info.ips.v4, Some(Ipv4Addr::new(198, 18, 0, 1)));
        assert_eq!(
            info.problems,
            vec![NodeProblem::BadNodeIpAnnotation("not-an-ip".into())]
        );
    }

    #[test]
    fn invalid_pod_cidrs_are_skipped_not_fatal() {
        let n = node(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"podCIDRs": ["10.244.1.5/24", "garbage", "10.244.9.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.9"}]}
        }));
        let info = NodeInfo::from_node(&n, NodeIpOverride::default()).expect("named");
        assert_eq!(
            info.pod_cidrs,
            vec!["10.244.9.0/24".parse::<IpNetwork>().expect("net")]
        );
        assert_eq!(info.problems.len(), 2);
    }

    #[test]
    fn ipv6_pod_cidr_without_ipv6_node_ip_is_not_routable() {
        let n = node(serde_json::json!({
            "metadata": {"name": "n"},
            "spec": {"podCIDRs": ["10.244.3.0/24", "fd00:10:244:3::/64"]},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.3"}]}
        }));
        let info = NodeInfo::from_node(&n, NodeIpOverride::default()).expect("named");
        assert_eq!(info.routable_cidrs().count(), 1);
        assert!(matches!(
            info.problems[..],
            [NodeProblem::NoNodeIpForPodCidr(_)]
        ));
    }

    #[test]
    fn view_splits_own_node_from_peers() {
        let nodes = [lab_node(1), lab_node(2), lab_node(3)];
        let view =
            ClusterView::from_nodes(&nodes, "node-2", NodeIpOverride::default()).expect("view");
        assert_eq!(view.own.name, "node-2");
        assert_eq!(view.peers.keys().collect::<Vec<_>>(), ["node-1", "node-3"]);
        assert!(view.own_has_pod_cidr());
        let peer = view
            .peer_by_ip("198.18.0.3".parse().expect("ip"))
            .expect("peer");
        assert_eq!(peer.name, "node-3");
        assert!(
            view.peer_by_ip("198.18.0.2".parse().expect("ip")).is_none(),
            "own IP is no peer"
        );
    }

    #[test]
    fn missing_own_node_is_a_clear_error() {
        let nodes = [lab_node(1)];
        let err = ClusterView::from_nodes(&nodes, "nodo-1", NodeIpOverride::default())
            .expect_err("typo in NODE_NAME");
        assert_eq!(err, ViewError::OwnNodeMissing("nodo-1".into()));
        assert!(err.to_string().contains("NODE_NAME"));
    }

    #[test]
    fn own_node_without_pod_cidr_is_a_view_that_is_not_ready() {
        let n = node(serde_json::json!({
            "metadata": {"name": "fresh"},
            "status": {"addresses": [{"type": "InternalIP", "address": "198.18.0.4"}]}
        }));
        let view = ClusterView::from_nodes([&n], "fresh", NodeIpOverride::default()).expect("view");
        assert!(!view.own_has_pod_cidr());
    }

    #[test]
    fn own_node_without_any_ip_is_an_error_unless_overridden() {
        let n = node(
            serde_json::json!({"metadata": {"name": "bare"}, "spec": {"podCIDR": "10.244.5.0/24"}}),
        );
        let err =
            ClusterView::from_nodes([&n], "bare", NodeIpOverride::default()).expect_err("no ip");
        assert!(matches!(err, ViewError::OwnNodeWithoutIp(_)));
        let flag = NodeIpOverride {
            v4: Some(Ipv4Addr::new(198, 18, 0, 5)),
            v6: None,
        };
        let view = ClusterView::from_nodes([&n], "bare", flag).expect("view");
        assert!(view.own_has_pod_cidr());
    }
}
