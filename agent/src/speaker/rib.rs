//! What the peers announced, and what import policy lets through.
//!
//! Each peer's Adj-RIB-In (prefix → next hop, as received) is kept apart; [`import`] applies the
//! policy against the current cluster view and yields the learned routes the kernel may get.
//! Because the policy is re-applied whenever the view changes, a Node that changes its pod
//! CIDR or IP is reflected without waiting for the peer to re-announce.

use std::collections::BTreeMap;
use std::net::IpAddr;

use ipnetwork::IpNetwork;

use crate::peers::{PeerKind, PeerSet};
use crate::routes::desired::LearnedRoutes;
use crate::view::ClusterView;

/// One peer's received routes.
pub type AdjRibIn = BTreeMap<IpNetwork, IpAddr>;

/// Received routes of every peer, keyed by peer address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedRoutes {
    /// Adj-RIB-In per peer.
    pub per_peer: BTreeMap<IpAddr, AdjRibIn>,
}

impl ReceivedRoutes {
    /// Applies an UPDATE from `peer`: announcements then withdrawals (RFC 4271 §3.1: an UPDATE
    /// can both; a prefix in both is a withdraw per RFC 7606 §5.3 — handled by the codec).
    pub fn update(
        &mut self,
        peer: IpAddr,
        announced: &[(IpNetwork, IpAddr)],
        withdrawn: &[IpNetwork],
    ) {
        let rib = self.per_peer.entry(peer).or_default();
        for (prefix, next_hop) in announced {
            rib.insert(*prefix, *next_hop);
        }
        for prefix in withdrawn {
            rib.remove(prefix);
        }
    }

    /// Forgets a peer whose session went down (its routes are withdrawn implicitly).
    pub fn peer_down(&mut self, peer: IpAddr) {
        self.per_peer.remove(&peer);
    }
}

/// Import result: accepted routes and how many were rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Routes that passed import policy.
    pub learned: LearnedRoutes,
    /// Received routes rejected by policy.
    pub rejected: Vec<(IpAddr, IpNetwork, IpAddr)>,
}

/// Applies import policy: from a mesh peer accept only the pod CIDR(s) its Node owns, with
/// that Node's IP (of the prefix's family) as next hop. Routes from unknown peers are rejected.
pub fn import(received: &ReceivedRoutes, peers: &PeerSet, view: &ClusterView) -> Imported {
    let mut out = Imported::default();
    for (peer, rib) in &received.per_peer {
        let node = peers.get(peer).and_then(|spec| match &spec.kind {
            PeerKind::Mesh { node } => view.peers.get(node),
        });
        for (prefix, next_hop) in rib {
            let allowed = node.is_some_and(|n| {
                n.routable_cidrs()
                    .any(|(cidr, ip)| cidr == *prefix && ip == *next_hop)
            });
            if allowed {
                out.learned.insert(*prefix, *next_hop);
            } else {
                out.rejected.push((*peer, *prefix, *next_hop));
            }
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeIpOverride;
    use crate::peers::{MeshOptions, mesh_peers};
    use k8s_openapi::api::core::v1::Node;

    fn view() -> ClusterView {
        let nodes: Vec<Node> = (1..=3)
            .map(|n| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("node-{n}")},
                    "spec": {"podCIDRs": [format!("10.244.{n}.0/24"), format!("fd00:10:244:{n}::/64")]},
                    "status": {"addresses": [
                        {"type": "InternalIP", "address": format!("198.18.0.{n}")},
                        {"type": "InternalIP", "address": format!("fd00:198:18::{n}")}
                    ]}
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
    fn mesh_peer_may_announce_only_its_own_node_cidrs() {
        let view = view();
        let peers = mesh_peers(
            &view,
            &MeshOptions {
                as_number: 64512,
                ..Default::default()
            },
        );
        let mut received = ReceivedRoutes::default();
        received.update(
            ip("198.18.0.2"),
            &[
                (net("10.244.2.0/24"), ip("198.18.0.2")),
                (net("fd00:10:244:2::/64"), ip("fd00:198:18::2")),
                // node-3's CIDR from node-2: rejected.
                (net("10.244.3.0/24"), ip("198.18.0.2")),
                // Own CIDR with a third-party next hop: rejected.
                (net("10.244.2.0/24"), ip("198.18.0.3")),
            ],
            &[],
        );
        let imported = import(&received, &peers, &view);
        // The later announcement of 10.244.2.0/24 replaced the first (same prefix, one path
        // per peer), and it has the wrong next hop.
        assert_eq!(
            imported.learned,
            LearnedRoutes::from([(net("fd00:10:244:2::/64"), ip("fd00:198:18::2"))])
        );
        assert_eq!(imported.rejected.len(), 2);
    }

    #[test]
    fn unknown_peer_routes_are_rejected_and_session_down_withdraws() {
        let view = view();
        let peers = mesh_peers(
            &view,
            &MeshOptions {
                as_number: 64512,
                ..Default::default()
            },
        );
        let mut received = ReceivedRoutes::default();
        received.update(
            ip("198.18.0.3"),
            &[(net("10.244.3.0/24"), ip("198.18.0.3"))],
            &[],
        );
        received.update(
            ip("198.18.0.66"),
            &[(net("10.244.3.0/24"), ip("198.18.0.3"))],
            &[],
        );
        let imported = import(&received, &peers, &view);
        assert_eq!(imported.learned.len(), 1);
        assert_eq!(
            imported.rejected,
            vec![(ip("198.18.0.66"), net("10.244.3.0/24"), ip("198.18.0.3"))]
        );

        received.update(ip("198.18.0.3"), &[], &[net("10.244.3.0/24")]);
        assert!(import(&received, &peers, &view).learned.is_empty());
        received.update(
            ip("198.18.0.3"),
            &[(net("10.244.3.0/24"), ip("198.18.0.3"))],
            &[],
        );
        received.peer_down(ip("198.18.0.3"));
        assert!(import(&received, &peers, &view).learned.is_empty());
    }
}
