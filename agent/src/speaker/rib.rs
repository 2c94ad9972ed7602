//! What the peers announced, and what import policy lets through.
//!
//! Each peer's Adj-RIB-In (prefix → next hop, as received) is kept apart; [`import`] applies the
//! policy against the current cluster view and yields the learned routes the kernel may get.
//! Because the policy is re-applied whenever the view changes, a Node that changes its pod
//! CIDR or IP is reflected without waiting for the peer to re-announce.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Instant;

use ipnetwork::IpNetwork;

use crate::peers::{PeerKind, PeerSet};
use crate::routes::desired::LearnedRoutes;
use crate::static_peers::{ImportRule, import_allows};
use crate::view::ClusterView;

/// One peer's received routes.
pub type AdjRibIn = BTreeMap<IpNetwork, IpAddr>;

/// Routes kept from a session that went down, until it comes back and refreshes them or the
/// deadline passes (the receiving side of RFC 4724 §4.2, applied to mesh peers so an agent
/// restart makes no route flap on the other nodes).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct StaleRoutes {
    /// The routes as last received.
    pub routes: AdjRibIn,
    /// When they are dropped if not refreshed.
    pub deadline: Instant,
}

/// Received routes of every peer, keyed by peer address.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReceivedRoutes {
    /// Adj-RIB-In per peer.
    pub per_peer: BTreeMap<IpAddr, AdjRibIn>,
    /// Routes of peers whose session went down, retained for a while.
    pub stale: BTreeMap<IpAddr, StaleRoutes>,
    /// Routes of static peers that their import list refuses, kept apart as received (to
    /// count them) and never imported. A static peer's import list is configuration: a change
    /// restarts its session, which sends every route again, so filtering on receipt is exact,
    /// and a router sending a full table costs no work per UPDATE beyond its own prefixes.
    pub refused: BTreeMap<IpAddr, AdjRibIn>,
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

    /// Applies an UPDATE from a static peer with import list `rules`: what the list refuses
    /// goes to [`ReceivedRoutes::refused`]. Returns the routes refused now that were not
    /// refused before (for logging).
    pub fn update_static(
        &mut self,
        peer: IpAddr,
        announced: &[(IpNetwork, IpAddr)],
        withdrawn: &[IpNetwork],
        rules: &[ImportRule],
    ) -> Vec<(IpNetwork, IpAddr)> {
        let rib = self.per_peer.entry(peer).or_default();
        let refused = self.refused.entry(peer).or_default();
        let mut newly_refused = Vec::new();
        for (prefix, next_hop) in announced {
            if import_allows(rules, *prefix) {
                rib.insert(*prefix, *next_hop);
            } else if refused.insert(*prefix, *next_hop).is_none() {
                newly_refused.push((*prefix, *next_hop));
            }
        }
        for prefix in withdrawn {
            rib.remove(prefix);
            refused.remove(prefix);
        }
        if refused.is_empty() {
            self.refused.remove(&peer);
        }
        newly_refused
    }

    /// How many received routes import lists refused, over all static peers.
    pub fn refused_count(&self) -> usize {
        self.refused.values().map(BTreeMap::len).sum()
    }

    /// Forgets a peer's routes at once (the peer was removed from the configuration).
    pub fn peer_removed(&mut self, peer: IpAddr) {
        self.per_peer.remove(&peer);
        self.stale.remove(&peer);
        self.refused.remove(&peer);
    }

    /// A session went down: its routes become stale until `deadline` (or are dropped at once
    /// when `deadline` is `None`).
    pub fn peer_down(&mut self, peer: IpAddr, deadline: Option<Instant>) {
        // A new session sends every route again, refused ones too.
        self.refused.remove(&peer);
        let routes = self.per_peer.remove(&peer).unwrap_or_default();
        match deadline {
            Some(deadline) if !routes.is_empty() => {
                // Routes still stale from an earlier drop stay (they were never refreshed).
                let mut merged = self
                    .stale
                    .remove(&peer)
                    .map(|s| s.routes)
                    .unwrap_or_default();
                merged.extend(routes);
                self.stale.insert(
                    peer,
                    StaleRoutes {
                        routes: merged,
                        deadline,
                    },
                );
            }
            _ => {
                self.stale.remove(&peer);
            }
        }
    }

    /// End-of-RIB for one family from `peer`: stale routes of that family that were not
    /// announced again are gone (RFC 4724 §4.2).
    pub fn end_of_rib(&mut self, peer: IpAddr, ipv6: bool) {
        if let Some(stale) = self.stale.get_mut(&peer) {
            stale.routes.retain(|prefix, _| prefix.is_ipv6() != ipv6);
            if stale.routes.is_empty() {
                self.stale.remove(&peer);
            }
        }
    }

    /// Drops stale routes whose deadline passed; true if any were dropped.
    pub fn expire(&mut self, now: Instant) -> bool {
        let before = self.stale.len();
        self.stale.retain(|_, s| s.deadline > now);
        self.stale.len() != before
    }

    /// The earliest stale deadline.
    pub fn next_deadline(&self) -> Option<Instant> {
        self.stale.values().map(|s| s.deadline).min()
    }
}

/// Import result: accepted routes and how many were rejected.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Imported {
    /// Routes from mesh peers that passed import policy (checked against the view again
    /// before they reach the kernel).
    pub learned: LearnedRoutes,
    /// Routes from static external peers that their import list allows. A prefix announced
    /// by several is taken from the lowest peer address with a live session (stale routes
    /// only when no live one announces it).
    pub external: LearnedRoutes,
    /// Received routes rejected by policy.
    pub rejected: Vec<(IpAddr, IpNetwork, IpAddr)>,
}

/// Applies import policy: from a mesh peer accept only the pod CIDR(s) its Node owns, with
/// that Node's IP (of the prefix's family) as next hop; from a static peer only prefixes its
/// import list allows (any next hop; an unspecified one means the peer itself). Routes from
/// unknown peers are rejected.
pub fn import(received: &ReceivedRoutes, peers: &PeerSet, view: &ClusterView) -> Imported {
    let mut out = Imported::default();
    // Rejections by prefix: a mesh route accepted from one peer clears the rejections of the
    // same prefix seen before it, without a scan of the whole list.
    let mut rejected: BTreeMap<IpNetwork, Vec<(IpAddr, IpAddr)>> = BTreeMap::new();
    // Fresh routes first; stale ones only fill prefixes no fresh route covers.
    let fresh = received
        .per_peer
        .iter()
        .map(|(peer, rib)| (peer, rib, true));
    let stale = received
        .stale
        .iter()
        .map(|(peer, s)| (peer, &s.routes, false));
    for (peer, rib, is_fresh) in fresh.chain(stale) {
        match peers.get(peer).map(|spec| &spec.kind) {
            Some(PeerKind::Static { import: rules }) => {
                for (prefix, next_hop) in rib {
                    if import_allows(rules, *prefix) {
                        let via = if next_hop.is_unspecified() {
                            *peer
                        } else {
                            *next_hop
                        };
                        out.external.entry(*prefix).or_insert(via);
                    } else {
                        rejected
                            .entry(*prefix)
                            .or_default()
                            .push((*peer, *next_hop));
                    }
                }
            }
            kind => {
                let node = kind.and_then(|kind| match kind {
                    PeerKind::Mesh { node } => view.peers.get(node),
                    PeerKind::Static { .. } => None,
                });
                for (prefix, next_hop) in rib {
                    let allowed = node.is_some_and(|n| {
                        n.routable_cidrs()
                            .any(|(cidr, ip)| cidr == *prefix && ip == *next_hop)
                    });
                    if allowed {
                        if is_fresh {
                            out.learned.insert(*prefix, *next_hop);
                        } else {
                            out.learned.entry(*prefix).or_insert(*next_hop);
                        }
                        rejected.remove(prefix);
                    } else {
                        rejected
                            .entry(*prefix)
                            .or_default()
                            .push((*peer, *next_hop));
                    }
                }
            }
        }
    }
    out.rejected = rejected
        .into_iter()
        .flat_map(|(prefix, by)| {
            by.into_iter()
                .map(move |(peer, next_hop)| (peer, prefix, next_hop))
        })
        .collect();
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
        received.peer_down(ip("198.18.0.3"), None);
        assert!(import(&received, &peers, &view).learned.is_empty());
    }

    #[test]
    fn routes_of_a_restarting_peer_stay_until_refreshed_or_expired() {
        let view = view();
        let peers = mesh_peers(
            &view,
            &MeshOptions {
                as_number: 64512,
                ..Default::default()
            },
        );
        let now = Instant::now();
        let deadline = now + std::time::Duration::from_secs(120);
        let v4 = (net("10.244.3.0/24"), ip("198.18.0.3"));
        let v6 = (net("fd00:10:244:3::/64"), ip("fd00:198:18::3"));
        let mut received = ReceivedRoutes::default();
        received.update(ip("198.18.0.3"), &[v4, v6], &[]);

        received.peer_down(ip("198.18.0.3"), Some(deadline));
        assert_eq!(
            import(&received, &peers, &view).learned.len(),
            2,
            "kept while restarting"
        );
        assert_eq!(received.next_deadline(), Some(deadline));

        // Back up: it re-announces only IPv4, then End-of-RIB for both families.
        received.update(ip("198.18.0.3"), &[v4], &[]);
        received.end_of_rib(ip("198.18.0.3"), false);
        assert_eq!(
            import(&received, &peers, &view).learned.len(),
            2,
            "IPv6 not yet synced"
        );
        received.end_of_rib(ip("198.18.0.3"), true);
        let learned = import(&received, &peers, &view).learned;
        assert_eq!(learned, LearnedRoutes::from([v4]));

        received.peer_down(ip("198.18.0.3"), Some(deadline));
        assert!(!received.expire(now));
        assert!(received.expire(deadline));
        assert!(import(&received, &peers, &view).learned.is_empty());
    }

    #[test]
    fn a_static_peers_refused_routes_are_set_apart_on_receipt_and_counted() {
        let view = view();
        let mut peers = PeerSet::new();
        let spec = crate::static_peers::parse_static_peer(
            "address=198.18.0.254,as=64512,import=10.99.0.0/16:24",
        )
        .expect("peer");
        let rules = spec.import.clone();
        crate::static_peers::add_static_peers(&mut peers, &[spec]);
        let router = ip("198.18.0.254");
        let mut received = ReceivedRoutes::default();
        // A full table's worth in spirit: everything but one prefix is refused.
        let mut announced: Vec<_> = (0..=255u8)
            .map(|i| (net(&format!("172.16.{i}.0/24")), router))
            .collect();
        announced.push((net("10.99.1.0/24"), router));
        let refused = received.update_static(router, &announced, &[], &rules);
        assert_eq!(refused.len(), 256);
        assert_eq!(received.refused_count(), 256);
        assert_eq!(
            received.per_peer[&router].len(),
            1,
            "refused routes were stored"
        );
        // Announced again: nothing newly refused; withdrawn: no longer counted.
        let again =
            received.update_static(router, &announced[..2], &[net("172.16.7.0/24")], &rules);
        assert!(again.is_empty());
        assert_eq!(received.refused_count(), 255);

        let imported = import(&received, &peers, &view);
        assert_eq!(
            imported.external,
            LearnedRoutes::from([(net("10.99.1.0/24"), router)])
        );
        assert!(
            imported.rejected.is_empty(),
            "refused routes are counted apart"
        );

        // The session drops: the next one sends everything again, so nothing stays counted.
        received.peer_down(router, None);
        assert_eq!(received.refused_count(), 0);
        assert!(import(&received, &peers, &view).external.is_empty());
    }

    #[test]
    fn static_peer_routes_pass_only_its_import_list() {
        let view = view();
        let mut peers = PeerSet::new();
        crate::static_peers::add_static_peers(
            &mut peers,
            &[crate::static_peers::parse_static_peer(
                "address=198.18.0.254,as=64512,import=10.99.0.0/16:24;fd00:99::/32:64",
            )
            .expect("peer")],
        );
        let router = ip("198.18.0.254");
        let mut received = ReceivedRoutes::default();
        received.update(
            router,
            &[
                (net("10.99.1.0/24"), router),
                (net("fd00:99:1::/64"), ip("fd00:198:18::fe")),
                (net("10.99.2.0/24"), ip("0.0.0.0")),
                // Outside the list, too long, and a node's pod CIDR reflected back: rejected.
                (net("10.98.1.0/24"), router),
                (net("10.99.3.128/25"), router),
                (net("10.244.2.0/24"), ip("198.18.0.2")),
            ],
            &[],
        );
        let imported = import(&received, &peers, &view);
        assert!(imported.learned.is_empty());
        assert_eq!(
            imported.external,
            LearnedRoutes::from([
                (net("10.99.1.0/24"), router),
                (net("10.99.2.0/24"), router),
                (net("fd00:99:1::/64"), ip("fd00:198:18::fe")),
            ])
        );
        assert_eq!(imported.rejected.len(), 3);

        // A stale route (a lower peer address, which would otherwise win) does not beat a
        // fresh one of the same prefix; a stale prefix nobody else announces is kept.
        let other = ip("198.18.0.253");
        let mut both = PeerSet::new();
        crate::static_peers::add_static_peers(
            &mut both,
            &[
                crate::static_peers::parse_static_peer(
                    "address=198.18.0.253,as=64512,import=10.99.0.0/16:24",
                )
                .expect("peer"),
                crate::static_peers::parse_static_peer(
                    "address=198.18.0.254,as=64512,import=10.99.0.0/16:24",
                )
                .expect("peer"),
            ],
        );
        let mut with_stale = received.clone();
        with_stale.update(
            other,
            &[(net("10.99.1.0/24"), other), (net("10.99.7.0/24"), other)],
            &[],
        );
        with_stale.peer_down(
            other,
            Some(Instant::now() + std::time::Duration::from_secs(60)),
        );
        let external = import(&with_stale, &both, &view).external;
        assert_eq!(external.get(&net("10.99.1.0/24")), Some(&router));
        assert_eq!(external.get(&net("10.99.7.0/24")), Some(&other));

        // Withdrawn: gone.
        received.update(router, &[], &[net("10.99.1.0/24")]);
        assert!(
            !import(&received, &peers, &view)
                .external
                .contains_key(&net("10.99.1.0/24"))
        );
    }
}
