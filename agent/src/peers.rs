//! BGP peers as data: the set of sessions the agent should run, and how it changed.
//!
//! The set is the node mesh (one iBGP session to every other node) plus static external peers
//! ([`crate::static_peers`], later `BGPPeer` resources) such as top-of-rack routers. Running
//! sessions are changed by applying a [`PeerChanges`] diff, so a node or peer that comes, goes
//! or changes touches only its own session.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use podroute_bgp::session::PeerAs;

use crate::view::ClusterView;

/// The 2-octet placeholder for 4-octet AS numbers (RFC 6793 §9); never a real AS.
pub(crate) const AS_TRANS: u32 = 23456;

/// An AS a node or a peer can have: not 0 (RFC 7607), not AS_TRANS.
pub(crate) fn usable_as(asn: u32) -> bool {
    asn != 0 && asn != AS_TRANS
}

/// An address a peer or a node can have: unicast, not unspecified or loopback.
pub(crate) fn usable_address(ip: IpAddr) -> bool {
    !(ip.is_unspecified() || ip.is_loopback() || ip.is_multicast())
}

/// A TCP-MD5 password (RFC 2385). Its `Debug` prints `<redacted>`, so no log line, status or
/// error that shows a peer's configuration shows the password.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Password(String);

impl Password {
    /// Wraps a password (already checked: 1 to 80 bytes).
    pub fn new(text: String) -> Self {
        Self(text)
    }

    /// A password as a file or a Secret holds it: without its trailing newline, 1 to 80
    /// bytes (the TCP-MD5 key limit). The error says why it is unusable.
    pub fn parse(text: &str) -> Result<Self, &'static str> {
        let text = text.trim_end_matches(['\n', '\r']);
        if text.is_empty() {
            return Err("empty");
        }
        if text.len() > crate::sockopt::MD5_MAX_KEY_LEN {
            return Err("longer than 80 bytes, the TCP-MD5 key limit");
        }
        Ok(Self(text.to_owned()))
    }

    /// The password itself, for the socket option that needs it.
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl std::fmt::Debug for Password {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("<redacted>")
    }
}

/// Where a peer comes from (decides import policy).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum PeerKind {
    /// Another node of the mesh, by Node name: import only that Node's pod CIDRs.
    Mesh {
        /// The peer's Node name.
        node: String,
    },
    /// A static external peer (`--bgp-peer`, later a `BGPPeer` resource): import only
    /// prefixes its import list allows; the agent connects actively and also accepts.
    Static {
        /// The import list (empty: import nothing).
        import: Vec<podroute_bgp::speaker::PrefixRule>,
    },
}

impl PeerKind {
    /// Short label for `status` and logs: `mesh:<node>` or `static`.
    pub fn label(&self) -> String {
        match self {
            Self::Mesh { node } => format!("mesh:{node}"),
            Self::Static { .. } => "static".to_owned(),
        }
    }
}

/// Everything needed to run one BGP session.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerSpec {
    /// The peer's address (the session's remote end).
    pub address: IpAddr,
    /// The peer's AS number, or any (taken from its OPEN).
    pub remote_as: PeerAs,
    /// Where the peer comes from.
    pub kind: PeerKind,
    /// TCP-MD5 password (RFC 2385), if any.
    pub md5_password: Option<Password>,
    /// GTSM (RFC 5082): require TTL 255 on received packets and send with TTL 255.
    pub gtsm: bool,
    /// Our AS on this session, when not the node's.
    pub local_as: Option<u32>,
    /// Hold time offered, when not the cluster's.
    pub hold_time: Option<u16>,
    /// Prefix limit, if any.
    pub max_prefixes: Option<podroute_bgp::speaker::MaxPrefix>,
    /// BFD with the peer (RFC 5880/5881), if on.
    pub bfd: Option<BfdSettings>,
    /// Graceful restart (RFC 4724) on this session, when not the agent's
    /// (`--graceful-restart-time`).
    pub graceful_restart: Option<PeerGracefulRestart>,
}

/// Graceful restart on one session (BGPPeer `gracefulRestart`). Its capability is in the
/// OPEN, so a change restarts that session, and only that one.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerGracefulRestart {
    /// No capability offered: the peer drops our routes when the session ends, and we its.
    Off,
    /// Offered, with this Restart Time (`None`: the agent's `--graceful-restart-time`, or
    /// [`DEFAULT_RESTART_TIME`] when that turns graceful restart off).
    On {
        /// The Restart Time we advertise.
        restart_time: Option<Duration>,
    },
}

/// The Restart Time of a session that turns graceful restart on when the agent's
/// `--graceful-restart-time 0s` leaves none to take (that flag's default).
pub const DEFAULT_RESTART_TIME: Duration = Duration::from_secs(120);

/// BFD for one peer: the session's intervals, and whether BGP waits for it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct BfdSettings {
    /// Desired Min TX Interval.
    pub min_tx: Duration,
    /// Required Min RX Interval.
    pub min_rx: Duration,
    /// Detect Mult.
    pub multiplier: u8,
    /// Strict mode: the BGP session waits for BFD Up.
    pub strict: bool,
}

impl Default for BfdSettings {
    /// 300 ms × 3, not strict.
    fn default() -> Self {
        Self {
            min_tx: Duration::from_millis(300),
            min_rx: Duration::from_millis(300),
            multiplier: 3,
            strict: false,
        }
    }
}

impl BfdSettings {
    /// Checks the intervals: 10 ms to 60 s (the wire allows more; nothing sensible
    /// needs it) and a multiplier of 1 to 255.
    pub fn validate(self) -> Result<Self, String> {
        for (name, d) in [("min-tx", self.min_tx), ("min-rx", self.min_rx)] {
            if d < Duration::from_millis(10) || d > Duration::from_secs(60) {
                return Err(format!("BFD {name} {d:?}: expected 10 ms to 60 s"));
            }
        }
        if self.multiplier == 0 {
            return Err("BFD multiplier 0: expected 1 to 255".to_owned());
        }
        Ok(self)
    }
}

/// The set of peers, keyed by address (one session per remote address).
pub type PeerSet = BTreeMap<IpAddr, PeerSpec>;

/// Mesh options shared by every mesh session.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct MeshOptions {
    /// The cluster's AS number: every node's, unless its `podroute.io/as-number` says otherwise.
    pub as_number: u32,
    /// Password for every mesh session, if MD5 is used.
    pub md5_password: Option<Password>,
    /// GTSM on mesh sessions (only when all nodes share an L2 segment).
    pub gtsm: bool,
    /// BFD on mesh sessions.
    pub bfd: Option<BfdSettings>,
    /// Hold time offered on mesh sessions, when not the agent's `--hold-time`.
    pub hold_time: Option<u16>,
    /// The mesh runs (BGPConfiguration `nodeToNodeMesh.enabled`; on without one).
    pub enabled: bool,
    /// Graceful restart on these sessions, when not the agent's (a `peerSelector` BGPPeer's
    /// `gracefulRestart`; the mesh itself follows `--graceful-restart-time`).
    pub graceful_restart: Option<PeerGracefulRestart>,
}

/// The mesh: one iBGP peer per other node that has an IP to reach it on.
pub fn mesh_peers(view: &ClusterView, options: &MeshOptions) -> PeerSet {
    if !options.enabled {
        return PeerSet::new();
    }
    view.peers
        .values()
        .filter_map(|node| node_peer(view, node, options))
        .map(|spec| (spec.address, spec))
        .collect()
}

/// The session to another node (the mesh's, or one a `peerSelector` BGPPeer asks for) with
/// `options`' settings; `None` if there is no address both ends can use.
pub fn node_peer(
    view: &ClusterView,
    node: &crate::view::NodeInfo,
    options: &MeshOptions,
) -> Option<PeerSpec> {
    // A Node claiming one of our own IPs (stale object, misconfiguration) is no peer: a
    // session to ourselves would only fail.
    if node
        .ips
        .all()
        .any(|ip| view.own.ips.all().any(|own| own == ip))
    {
        return None;
    }
    // Sessions run over the family both ends have, IPv4 first (MP-BGP carries IPv6).
    let address = match (
        view.own.ips.v4.is_some(),
        node.ips.v4,
        node.ips.v6,
        view.own.ips.v6,
    ) {
        (true, Some(v4), _, _) => IpAddr::V4(v4),
        (_, _, Some(v6), Some(_)) => IpAddr::V6(v6),
        _ => return None,
    };
    Some(PeerSpec {
        address,
        remote_as: PeerAs::Is(node.as_number.unwrap_or(options.as_number)),
        kind: PeerKind::Mesh {
            node: node.name.clone(),
        },
        md5_password: options.md5_password.clone(),
        gtsm: options.gtsm,
        bfd: options.bfd,
        // The own node's AS: its annotation's, else the cluster's (which a BGPConfiguration
        // may set apart from --as-number).
        local_as: Some(view.own.as_number.unwrap_or(options.as_number)),
        hold_time: options.hold_time,
        max_prefixes: None,
        graceful_restart: options.graceful_restart,
    })
}

/// How the peer set changed.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct PeerChanges {
    /// New peers: start a session.
    pub added: Vec<PeerSpec>,
    /// Peers gone: stop their session.
    pub removed: Vec<IpAddr>,
    /// Same address, different settings: restart that session only.
    pub changed: Vec<PeerSpec>,
}

impl PeerChanges {
    /// Computes what to do to go from `old` to `new`.
    pub fn between(old: &PeerSet, new: &PeerSet) -> Self {
        let mut changes = Self::default();
        for (address, spec) in new {
            match old.get(address) {
                None => changes.added.push(spec.clone()),
                Some(previous) if previous != spec => changes.changed.push(spec.clone()),
                Some(_) => {}
            }
        }
        changes.removed = old
            .keys()
            .filter(|a| !new.contains_key(a))
            .copied()
            .collect();
        changes
    }

    /// True if nothing changed.
    pub fn is_empty(&self) -> bool {
        self.added.is_empty() && self.removed.is_empty() && self.changed.is_empty()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeIpOverride;
    use k8s_openapi::api::core::v1::Node;

    fn node(name: &str, ip: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": name},
            "spec": {"podCIDRs": ["10.244.0.0/24"]},
            "status": {"addresses": [{"type": "InternalIP", "address": ip}]}
        }))
        .expect("node")
    }

    fn peers(nodes: &[Node]) -> PeerSet {
        let view =
            ClusterView::from_nodes(nodes, "node-1", NodeIpOverride::default()).expect("view");
        mesh_peers(
            &view,
            &MeshOptions {
                as_number: 64512,
                enabled: true,
                ..Default::default()
            },
        )
    }

    #[test]
    fn one_ibgp_peer_per_other_node() {
        let set = peers(&[
            node("node-1", "198.18.0.1"),
            node("node-2", "198.18.0.2"),
            node("node-3", "198.18.0.3"),
        ]);
        let addresses: Vec<String> = set.keys().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["198.18.0.2", "198.18.0.3"]);
        assert!(set.values().all(|p| p.remote_as == PeerAs::Is(64512)));
    }

    #[test]
    fn a_node_with_our_own_ip_is_no_peer() {
        let set = peers(&[
            node("node-1", "198.18.0.1"),
            node("old-node-1", "198.18.0.1"),
            node("node-2", "198.18.0.2"),
        ]);
        let addresses: Vec<String> = set.keys().map(|a| a.to_string()).collect();
        assert_eq!(addresses, ["198.18.0.2"]);
    }

    #[test]
    fn node_changes_touch_only_their_own_session() {
        let before = peers(&[
            node("node-1", "198.18.0.1"),
            node("node-2", "198.18.0.2"),
            node("node-3", "198.18.0.3"),
        ]);
        let after = peers(&[
            node("node-1", "198.18.0.1"),
            node("node-2", "198.18.0.2"),
            // node-3 changed IP, node-4 joined.
            node("node-3", "198.18.0.33"),
            node("node-4", "198.18.0.4"),
        ]);
        let changes = PeerChanges::between(&before, &after);
        let added: Vec<String> = changes
            .added
            .iter()
            .map(|p| p.address.to_string())
            .collect();
        assert_eq!(added, ["198.18.0.4", "198.18.0.33"], "ordered by address");
        assert_eq!(
            changes.removed,
            vec!["198.18.0.3".parse::<IpAddr>().expect("ip")]
        );
        assert!(changes.changed.is_empty());
        assert!(PeerChanges::between(&after, &after).is_empty());
    }

    #[test]
    fn changed_settings_restart_only_that_peer() {
        let before = peers(&[
            node("node-1", "198.18.0.1"),
            node("node-2", "198.18.0.2"),
            node("node-3", "198.18.0.3"),
        ]);
        let mut after = before.clone();
        if let Some(p) = after.values_mut().next() {
            p.md5_password = Some(Password::new("secret".into()));
        }
        let changes = PeerChanges::between(&before, &after);
        assert_eq!(changes.changed.len(), 1);
        assert!(changes.added.is_empty() && changes.removed.is_empty());
    }

    #[test]
    fn debug_output_never_shows_a_password() {
        let mut set = peers(&[node("node-1", "198.18.0.1"), node("node-2", "198.18.0.2")]);
        for spec in set.values_mut() {
            spec.md5_password = Some(Password::new("hunter2-mesh".into()));
        }
        let text = format!("{set:?}");
        assert!(
            !text.contains("hunter2-mesh") && text.contains("<redacted>"),
            "{text}"
        );
    }

    #[test]
    fn a_node_as_annotation_makes_cross_rack_sessions_ebgp() {
        let mut rack_b = node("node-3", "198.18.1.3");
        rack_b.metadata.annotations = Some(
            [(
                crate::view::NODE_AS_ANNOTATION.to_owned(),
                "65002".to_owned(),
            )]
            .into(),
        );
        let mut bad = node("node-4", "198.18.0.4");
        bad.metadata.annotations =
            Some([(crate::view::NODE_AS_ANNOTATION.to_owned(), "0".to_owned())].into());
        let set = peers(&[
            node("node-1", "198.18.0.1"),
            node("node-2", "198.18.0.2"),
            rack_b,
            bad,
        ]);
        let by_ip = |ip: &str| &set[&ip.parse::<IpAddr>().expect("ip")];
        assert_eq!(
            by_ip("198.18.0.2").remote_as,
            PeerAs::Is(64512),
            "same rack: iBGP"
        );
        assert_eq!(
            by_ip("198.18.1.3").remote_as,
            PeerAs::Is(65002),
            "other rack: eBGP"
        );
        assert_eq!(
            by_ip("198.18.0.4").remote_as,
            PeerAs::Is(64512),
            "a bad annotation is ignored"
        );
        assert!(set.values().all(|p| p.local_as == Some(64512)));
    }
}
