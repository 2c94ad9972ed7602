//! From the agent's peer set and cluster view to the speaker's per-peer configuration:
//! session settings, import and export policy as data, graceful restart.
//!
//! The mesh rule "a node may announce only its own Node's pod CIDRs, with its node IP as next
//! hop" is generated here from the view, one exact [`PrefixRule`] per CIDR; a Node whose CIDR
//! changes changes only its own peer's import policy. A route reflector (a Node with a
//! CLUSTER_ID) may pass on every other Node's CIDRs too, each only with that Node's IP as next
//! hop and that Node's router ID as the route's originator (ORIGINATOR_ID): the rule follows
//! the route's origin, not the session it came over, so a reflector cannot place another
//! node's CIDR anywhere else and a client can announce only its own.

use std::net::{IpAddr, Ipv4Addr};
use std::time::Duration;

use ipnetwork::IpNetwork;
use podroute_bgp::message::{NextHop, PathAttributes};
use podroute_bgp::session::SessionConfig;
use podroute_bgp::speaker::{
    BfdMode, GracefulRestartConfig, PeerConfig, Policy, PrefixRule, Verdict,
};

use crate::peers::{DEFAULT_RESTART_TIME, PeerGracefulRestart, PeerKind, PeerSpec};
use crate::view::ClusterView;

/// First wait after a failed connection attempt; it doubles up to [`CONNECT_RETRY_MAX`].
const CONNECT_RETRY: Duration = Duration::from_secs(1);
/// Longest wait between connection attempts.
const CONNECT_RETRY_MAX: Duration = Duration::from_secs(30);
/// Wait after a refused connection attempt (the peer's host is up, its agent not listening
/// yet: a node joining or an agent restarting), for the first [`podroute_bgp::session::REFUSED_RETRIES`] refusals in a row.
const REFUSED_RETRY: Duration = Duration::from_millis(100);
/// How long the passive side of a mesh pair (the higher address) waits for the other to
/// connect before it connects out too: after a long outage of this agent the other side's
/// retries have backed off (up to [`CONNECT_RETRY_MAX`]), and it would otherwise wait that out.
const MESH_PASSIVE_CONNECT_AFTER: Duration = Duration::from_secs(5);
/// Wait after a session error before the session starts again (doubles while it keeps
/// failing before Established).
const IDLE_HOLD: Duration = Duration::from_secs(1);

/// Our end of every session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LocalSettings {
    /// Our AS number.
    pub as_number: u32,
    /// Our BGP identifier.
    pub router_id: Ipv4Addr,
    /// Our session address (the mesh runs over it; it decides who connects in the mesh).
    pub address: IpAddr,
    /// Hold time we offer, seconds.
    pub hold_time: u16,
    /// Graceful restart, both roles, of sessions that do not set their own (`None`: off).
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// The longest a restarting peer's routes are kept as stale, for sessions that turn
    /// graceful restart on themselves (`--stale-routes-time`).
    pub stale_routes_time: Duration,
}

/// The speaker's configuration of one peer.
///
/// Mesh peers: the side with the lower session address connects, the other waits (no
/// collisions by construction); import only the peer Node's pod CIDRs with its node IP;
/// the initial sync waits for its End-of-RIB. Static peers: we connect and accept; import
/// what the import list allows (nothing without one); they do not hold the initial sync.
/// Every peer gets the node's own pod CIDRs, and nothing learned from other peers.
pub fn peer_config(spec: &PeerSpec, view: &ClusterView, local: &LocalSettings) -> PeerConfig {
    let local_as = spec.local_as.unwrap_or(local.as_number);
    let mut session = SessionConfig::new(local_as, local.router_id, spec.remote_as);
    session.hold_time = spec.hold_time.unwrap_or(local.hold_time);
    session.connect_retry = CONNECT_RETRY;
    session.connect_retry_max = CONNECT_RETRY_MAX;
    session.refused_retry = REFUSED_RETRY;
    session.idle_hold = IDLE_HOLD;
    let (import, passive, wait_for_end_of_rib) = match &spec.kind {
        PeerKind::Mesh { node } => (mesh_import(view, node), local.address > spec.address, true),
        PeerKind::Static { import } => (Policy::allow_only(import.clone()), false, false),
    };
    // Calico's rule: a reflector's session to a node that is no reflector serves a client.
    let route_reflector_client = match &spec.kind {
        PeerKind::Mesh { node } => {
            view.own.route_reflector_cluster_id.is_some()
                && view
                    .peers
                    .get(node)
                    .is_some_and(|n| n.route_reflector_cluster_id.is_none())
        }
        PeerKind::Static { .. } => false,
    };
    session.passive = passive;
    session.passive_connect_after = passive.then_some(MESH_PASSIVE_CONNECT_AFTER);
    PeerConfig {
        address: spec.address,
        session,
        import,
        export: Policy::accept_all(),
        max_prefixes: spec.max_prefixes,
        graceful_restart: graceful_restart(spec.graceful_restart, local),
        wait_for_end_of_rib,
        route_reflector_client,
        takes_reflected: matches!(spec.kind, PeerKind::Mesh { .. }),
        bfd: match spec.bfd {
            None => BfdMode::Off,
            Some(b) if b.strict => BfdMode::Strict,
            Some(_) => BfdMode::On,
        },
    }
}

/// A session's graceful restart: its own setting, else the agent's.
fn graceful_restart(
    own: Option<PeerGracefulRestart>,
    local: &LocalSettings,
) -> Option<GracefulRestartConfig> {
    match own {
        None => local.graceful_restart,
        Some(PeerGracefulRestart::Off) => None,
        Some(PeerGracefulRestart::On { restart_time }) => Some(GracefulRestartConfig {
            restart_time: restart_time
                .or(local.graceful_restart.map(|gr| gr.restart_time))
                .unwrap_or(DEFAULT_RESTART_TIME),
            stale_routes_time: local.stale_routes_time,
        }),
    }
}

/// Import from the node-to-node peer of Node `node`: exactly its routable pod CIDRs, each
/// with the node's IP of that family as next hop; from a route reflector also every other
/// Node's (not ours), with that Node's IP and router ID as originator. A Node the view does
/// not know may send nothing.
pub fn mesh_import(view: &ClusterView, node: &str) -> Policy {
    let Some(peer) = view.peers.get(node) else {
        return Policy::reject_all();
    };
    let mut rules: Vec<PrefixRule> = peer
        .routable_cidrs()
        .map(|(cidr, ip)| PrefixRule::exact(cidr, Verdict::Accept).with_next_hop(ip))
        .collect();
    if peer.route_reflector_cluster_id.is_some() {
        for other in view.peers.values().filter(|n| n.name != node) {
            let originator = super::router_id_from(other.ips.v4, other.ips.v6);
            rules.extend(other.routable_cidrs().map(|(cidr, ip)| {
                PrefixRule::exact(cidr, Verdict::Accept)
                    .with_next_hop(ip)
                    .with_originator(originator)
            }));
        }
    }
    Policy::allow_only(rules)
}

/// The routes we originate: each own pod CIDR with the node IP of its family as next hop,
/// ORIGIN IGP (LOCAL_PREF and AS_PATH are the session's to fill, RFC 4271 §5.1).
pub fn originated(advertised: &[(IpNetwork, IpAddr)]) -> Vec<(IpNetwork, PathAttributes)> {
    advertised
        .iter()
        .map(|(prefix, next_hop)| {
            let next_hop = match next_hop {
                IpAddr::V4(a) => NextHop::V4(*a),
                IpAddr::V6(global) => NextHop::V6 {
                    global: *global,
                    link_local: None,
                },
            };
            (
                *prefix,
                PathAttributes {
                    next_hop: Some(next_hop),
                    ..PathAttributes::default()
                },
            )
        })
        .collect()
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
        ClusterView::from_nodes(&nodes, "node-2", NodeIpOverride::default()).expect("view")
    }

    fn local() -> LocalSettings {
        LocalSettings {
            as_number: 64512,
            router_id: Ipv4Addr::new(198, 18, 0, 2),
            address: "198.18.0.2".parse().expect("ip"),
            hold_time: 90,
            graceful_restart: None,
            stale_routes_time: Duration::from_secs(300),
        }
    }

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    #[test]
    fn a_mesh_peer_may_announce_only_its_own_nodes_cidrs_with_its_node_ip() {
        let view = view();
        let peers = mesh_peers(
            &view,
            &MeshOptions {
                as_number: 64512,
                enabled: true,
                ..Default::default()
            },
        );
        let node3 = &peers[&ip("198.18.0.3")];
        let config = peer_config(node3, &view, &local());
        let import = &config.import;
        assert!(import.accepts(&net("10.244.3.0/24"), ip("198.18.0.3")));
        assert!(import.accepts(&net("fd00:10:244:3::/64"), ip("fd00:198:18::3")));
        // Another node's CIDR, a third-party next hop, a more specific: refused.
        assert!(!import.accepts(&net("10.244.1.0/24"), ip("198.18.0.3")));
        assert!(!import.accepts(&net("10.244.3.0/24"), ip("198.18.0.1")));
        assert!(!import.accepts(&net("10.244.3.0/25"), ip("198.18.0.3")));
        // The higher address waits for the lower one to connect, for a while.
        assert!(!config.session.passive);
        let towards_lower = peer_config(&peers[&ip("198.18.0.1")], &view, &local()).session;
        assert!(towards_lower.passive);
        assert_eq!(
            towards_lower.passive_connect_after,
            Some(MESH_PASSIVE_CONNECT_AFTER)
        );
        assert!(config.wait_for_end_of_rib);
        assert!(config.takes_reflected);
        assert_eq!(mesh_import(&view, "node-9"), Policy::reject_all());
    }

    #[test]
    fn a_static_peer_imports_its_list_connects_and_gets_only_our_routes() {
        let view = view();
        let spec = crate::static_peers::parse_static_peer(
            "address=198.18.0.254,as=64512,import=10.99.0.0/16:24",
        )
        .expect("peer")
        .to_spec();
        let config = peer_config(&spec, &view, &local());
        assert!(
            config
                .import
                .accepts(&net("10.99.1.0/24"), ip("198.18.0.254"))
        );
        assert!(
            !config
                .import
                .accepts(&net("10.99.1.0/25"), ip("198.18.0.254"))
        );
        assert!(
            !config
                .import
                .accepts(&net("10.244.1.0/24"), ip("198.18.0.1"))
        );
        assert!(!config.session.passive);
        assert!(!config.wait_for_end_of_rib);
        assert!(
            !config.takes_reflected,
            "a router gets no other peer's routes"
        );
    }

    #[test]
    fn a_sessions_own_graceful_restart_wins_over_the_agents() {
        let view = view();
        let mut spec = crate::static_peers::parse_static_peer("address=198.18.0.254,as=any")
            .expect("peer")
            .to_spec();
        let secs = Duration::from_secs;
        let agents = GracefulRestartConfig {
            restart_time: secs(90),
            stale_routes_time: secs(300),
        };
        let with = |gr: Option<GracefulRestartConfig>| LocalSettings {
            graceful_restart: gr,
            ..local()
        };
        let restart_time = |spec: &PeerSpec, local: &LocalSettings| {
            peer_config(spec, &view, local)
                .graceful_restart
                .map(|gr| gr.restart_time)
        };
        assert_eq!(restart_time(&spec, &with(Some(agents))), Some(secs(90)));
        assert_eq!(restart_time(&spec, &with(None)), None);
        spec.graceful_restart = Some(PeerGracefulRestart::Off);
        assert_eq!(restart_time(&spec, &with(Some(agents))), None);
        spec.graceful_restart = Some(PeerGracefulRestart::On { restart_time: None });
        assert_eq!(restart_time(&spec, &with(Some(agents))), Some(secs(90)));
        assert_eq!(
            restart_time(&spec, &with(None)),
            Some(DEFAULT_RESTART_TIME),
            "on though the agent's is off"
        );
        spec.graceful_restart = Some(PeerGracefulRestart::On {
            restart_time: Some(secs(30)),
        });
        let config = peer_config(&spec, &view, &with(None));
        assert_eq!(
            config.graceful_restart,
            Some(GracefulRestartConfig {
                restart_time: secs(30),
                stale_routes_time: secs(300),
            })
        );
        assert_eq!(config.session.peer_as, podroute_bgp::session::PeerAs::Any);
    }

    /// node-1 a route reflector (CLUSTER_ID 244.0.0.1), node-2 and node-3 not; seen by `own`.
    fn reflected_view(own: &str) -> ClusterView {
        let nodes: Vec<Node> = (1..=3)
            .map(|n| {
                let annotations = if n == 1 {
                    serde_json::json!({"podroute.io/route-reflector-cluster-id": "244.0.0.1"})
                } else {
                    serde_json::json!({})
                };
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": format!("node-{n}"), "annotations": annotations},
                    "spec": {"podCIDRs": [format!("10.244.{n}.0/24")]},
                    "status": {"addresses": [
                        {"type": "InternalIP", "address": format!("198.18.0.{n}")}
                    ]}
                }))
                .expect("node")
            })
            .collect();
        ClusterView::from_nodes(&nodes, own, NodeIpOverride::default()).expect("view")
    }

    #[test]
    fn a_reflector_may_pass_on_other_nodes_cidrs_only_from_their_originator() {
        let view = reflected_view("node-2");
        let options = MeshOptions {
            as_number: 64512,
            enabled: true,
            ..Default::default()
        };
        let peers = mesh_peers(&view, &options);
        let from_rr = peer_config(&peers[&ip("198.18.0.1")], &view, &local());
        let node3 = Ipv4Addr::new(198, 18, 0, 3);
        let cidr3 = net("10.244.3.0/24");
        assert!(
            from_rr
                .import
                .accepts_from(&cidr3, ip("198.18.0.3"), Some(node3))
        );
        // Node 3's CIDR through the reflector with another next hop, or with the reflector
        // itself (or nobody) as its originator: refused.
        assert!(
            !from_rr
                .import
                .accepts_from(&cidr3, ip("198.18.0.1"), Some(node3))
        );
        let rr_id = Ipv4Addr::new(198, 18, 0, 1);
        assert!(
            !from_rr
                .import
                .accepts_from(&cidr3, ip("198.18.0.3"), Some(rr_id))
        );
        assert!(!from_rr.import.accepts_from(&cidr3, ip("198.18.0.3"), None));
        // Our own CIDR never comes back; the reflector's own CIDR comes straight from it.
        let own_id = Ipv4Addr::new(198, 18, 0, 2);
        let cidr2 = net("10.244.2.0/24");
        assert!(
            !from_rr
                .import
                .accepts_from(&cidr2, ip("198.18.0.2"), Some(own_id))
        );
        let cidr1 = net("10.244.1.0/24");
        assert!(
            from_rr
                .import
                .accepts_from(&cidr1, ip("198.18.0.1"), Some(rr_id))
        );
        // A node that is no reflector may send only its own CIDR.
        let from_3 = peer_config(&peers[&ip("198.18.0.3")], &view, &local());
        let node1 = Ipv4Addr::new(198, 18, 0, 1);
        assert!(
            !from_3
                .import
                .accepts_from(&cidr1, ip("198.18.0.1"), Some(node1))
        );
        assert!(!from_rr.route_reflector_client && !from_3.route_reflector_client);

        // Seen from the reflector: nodes without a CLUSTER_ID are its clients.
        let view = reflected_view("node-1");
        let peers = mesh_peers(&view, &options);
        let local = LocalSettings {
            router_id: rr_id,
            address: ip("198.18.0.1"),
            ..local()
        };
        assert!(peer_config(&peers[&ip("198.18.0.3")], &view, &local).route_reflector_client);
    }
}
