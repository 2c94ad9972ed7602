//! From podroute's resources to peers: BGPPeers, the BGPConfiguration and the Secrets they
//! name become the same [`StaticPeer`]s and [`MeshOptions`] that `--bgp-peer` and the mesh
//! flags produce, so one path runs from there to the speaker.
//!
//! A BGPPeer with `peerSelector` asks for node-to-node sessions (how route reflectors are
//! written, Calico's way): every node its `nodeSelector` selects peers with every node its
//! `peerSelector` selects, and, so that both ends have the session, the other way round.
//! These sessions are mesh sessions ([`crate::peers::node_peer`]: the node's AS, the mesh
//! import rule) with the BGPPeer's password, hold time, GTSM and prefix limit.
//!
//! A BGPPeer the agent cannot use (its Secret or key is missing, a value the schema could not
//! refuse) is reported in [`ClusterPeers::invalid`] and left out; every other peer carries on.
//! Nothing here talks to the API server: [`crate::config_watch`] gathers the objects.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::time::Duration;

use podroute_bgp::session::PeerAs;
use podroute_bgp::speaker::{MaxPrefix, MaxPrefixAction, PrefixRule};

use crate::crd::SecretKeyRef;
use crate::crd::bfd::BfdSpec;
use crate::crd::bgp_configuration::{BGPConfiguration, BGPConfigurationSpec, DEFAULT_NAME};
use crate::crd::bgp_peer::{self, BGPPeer, BGPPeerSpec, ImportRule};
use crate::peers::{
    BfdSettings, MeshOptions, Password, PeerGracefulRestart, PeerSet, node_peer, usable_address,
    usable_as,
};
use crate::static_peers::StaticPeer;
use crate::view::ClusterView;

/// The most next hops `maxPaths` may ask for (its schema refuses more; an object stored
/// before that rule is clamped to it).
const MAX_PATHS: u8 = 16;

/// The Secrets the agent has read: name → key → value.
pub type SecretData = BTreeMap<String, BTreeMap<String, Vec<u8>>>;

/// Everything the resources say, as listed from the API server.
#[derive(Clone, Default, PartialEq, Eq)]
pub struct ClusterResources {
    /// Every BGPPeer, by name.
    pub peers: BTreeMap<String, BGPPeerSpec>,
    /// The `default` BGPConfiguration, if any.
    pub configuration: Option<BGPConfigurationSpec>,
    /// The referenced Secrets that exist and could be read.
    pub secrets: SecretData,
    /// Secrets that could not be read, with why (not found, forbidden).
    pub unreadable: BTreeMap<String, String>,
}

impl std::fmt::Debug for ClusterResources {
    // Secret values never reach a log: only their names and keys are shown.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let secrets: BTreeMap<&String, Vec<&String>> = self
            .secrets
            .iter()
            .map(|(name, data)| (name, data.keys().collect()))
            .collect();
        f.debug_struct("ClusterResources")
            .field("peers", &self.peers)
            .field("configuration", &self.configuration)
            .field("secrets", &secrets)
            .field("unreadable", &self.unreadable)
            .finish()
    }
}

impl ClusterResources {
    /// Records a BGPPeer (or its new version).
    pub fn apply_peer(&mut self, peer: &BGPPeer) {
        if let Some(name) = &peer.metadata.name {
            self.peers.insert(name.clone(), peer.spec.clone());
        }
    }

    /// Records the BGPConfiguration if it is the `default` one.
    pub fn apply_configuration(&mut self, config: Option<&BGPConfiguration>) {
        self.configuration = config
            .filter(|c| c.metadata.name.as_deref() == Some(DEFAULT_NAME))
            .map(|c| c.spec.clone());
    }

    /// The names of every Secret a BGPPeer or the BGPConfiguration refers to.
    pub fn secret_names(&self) -> std::collections::BTreeSet<String> {
        self.peers
            .values()
            .filter_map(|p| p.password.as_ref())
            .chain(
                self.configuration
                    .as_ref()
                    .and_then(|c| c.node_to_node_mesh.as_ref())
                    .and_then(|m| m.password.as_ref()),
            )
            .map(|r| r.name.clone())
            .collect()
    }
}

/// Why a BGPPeer or the mesh settings are not used.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum InvalidPeer {
    /// The Secret named for the password could not be read.
    #[error("Secret {name:?}: {reason}")]
    SecretUnreadable {
        /// The Secret.
        name: String,
        /// Not found, forbidden, ...
        reason: String,
    },
    /// The Secret has no such key.
    #[error("Secret {name:?} has no key {key:?}")]
    SecretKeyMissing {
        /// The Secret.
        name: String,
        /// The key.
        key: String,
    },
    /// The password is empty, longer than 80 bytes or not UTF-8.
    #[error("the password in Secret {0:?} is not 1 to 80 bytes of text")]
    BadPassword(String),
    /// A field the schema should have refused (an object stored before the CRD was updated).
    #[error("{0}")]
    BadField(String),
}

impl InvalidPeer {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::SecretUnreadable { .. } => "secret_unreadable",
            Self::SecretKeyMissing { .. } => "secret_key_missing",
            Self::BadPassword(_) => "bad_password",
            Self::BadField(_) => "bad_field",
        }
    }
}

/// What the resources mean for one node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClusterPeers {
    /// The router peers of this node (BGPPeers with `peerAddress` that select it).
    pub routers: Vec<StaticPeer>,
    /// The node-to-node sessions `peerSelector` BGPPeers give this node, by address.
    pub nodes: PeerSet,
    /// The mesh settings.
    pub mesh: MeshOptions,
    /// ECMP: the most equal-cost next hops per prefix (the BGPConfiguration's `maxPaths`,
    /// else 1).
    pub max_paths: usize,
    /// Resources not used, with why: BGPPeers by name (which cannot hold a `/`), the mesh
    /// password of the BGPConfiguration as `BGPConfiguration/default`.
    pub invalid: BTreeMap<String, InvalidPeer>,
}

/// The defaults when no BGPConfiguration exists: the agent's flags.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FlagDefaults {
    /// `--as-number`.
    pub as_number: u32,
    /// `--mesh-password-file`'s password.
    pub mesh_md5_password: Option<crate::peers::Password>,
    /// `--mesh-gtsm`.
    pub mesh_gtsm: bool,
}

/// The peers of `view`'s own node from `resources`, with `defaults` for what they leave
/// unsaid.
pub fn cluster_peers(
    resources: &ClusterResources,
    view: &ClusterView,
    defaults: &FlagDefaults,
) -> ClusterPeers {
    let own = &view.own;
    let mut invalid = BTreeMap::new();
    let config = resources.configuration.clone().unwrap_or_default();
    let as_number = config.as_number.unwrap_or(defaults.as_number);
    let mesh_settings = config.node_to_node_mesh.as_ref();
    let mut mesh = MeshOptions {
        as_number,
        md5_password: defaults.mesh_md5_password.clone(),
        gtsm: mesh_settings.map_or(defaults.mesh_gtsm, |m| m.gtsm),
        hold_time: mesh_settings.and_then(|m| m.hold_time_seconds),
        enabled: mesh_settings.is_none_or(|m| m.enabled),
        // The mesh's graceful restart is the agent's (--graceful-restart-time).
        graceful_restart: None,
        bfd: bfd_settings(
            mesh_settings.and_then(|m| m.bfd.as_ref()),
            "BGPConfiguration/default.spec.nodeToNodeMesh.bfd",
            &mut invalid,
        ),
    };
    if let Some(reference) = mesh_settings.and_then(|m| m.password.as_ref()) {
        match password(resources, reference) {
            Ok(pw) => mesh.md5_password = Some(pw),
            Err(error) => {
                // A mesh with the wrong (or no) password would not come up anywhere: keep the
                // previous one working by leaving the mesh's sessions as the flags say.
                invalid.insert("BGPConfiguration/default".to_owned(), error);
            }
        }
    }
    let mut routers: Vec<StaticPeer> = Vec::new();
    let mut nodes = PeerSet::new();
    for (name, spec) in &resources.peers {
        let bfd_key = format!("BGPPeer/{name}.spec.bfd");
        if let Some(peer_selector) = &spec.peer_selector {
            let selected_mesh = MeshOptions {
                bfd: match &spec.bfd {
                    Some(bfd) => bfd_settings(Some(bfd), &bfd_key, &mut invalid),
                    None => mesh.bfd,
                },
                ..mesh.clone()
            };
            match selected_nodes(resources, view, spec, peer_selector, &selected_mesh) {
                Ok(peers) => {
                    for (address, peer) in peers {
                        // Two BGPPeers selecting one pair of nodes: the first by name wins.
                        nodes.entry(address).or_insert(peer);
                    }
                }
                Err(error) => {
                    invalid.insert(name.clone(), error);
                }
            }
            continue;
        }
        let selected = spec
            .node_selector
            .as_ref()
            .is_none_or(|s| s.matches(&own.labels));
        if !selected {
            continue;
        }
        match router_peer(resources, spec).map(|mut peer| {
            // Our AS on a router session: the BGPPeer's, else the node's own, else the
            // cluster's (when a BGPConfiguration sets it; the flag is the fallback after).
            peer.local_as = peer.local_as.or(own.as_number).or(config.as_number);
            peer
        }) {
            // Two BGPPeers for one address on this node: the first by name wins.
            Ok(peer) if routers.iter().any(|r| r.address == peer.address) => {
                let reason = format!(
                    "another BGPPeer already peers with {} on this node",
                    peer.address
                );
                invalid.insert(name.clone(), InvalidPeer::BadField(reason));
            }
            Ok(mut peer) => {
                // A bad `bfd` leaves the session running without BFD, reported; the rest
                // of the BGPPeer is used.
                peer.bfd = bfd_settings(spec.bfd.as_ref(), &bfd_key, &mut invalid);
                routers.push(peer);
            }
            Err(error) => {
                invalid.insert(name.clone(), error);
            }
        }
    }
    ClusterPeers {
        routers,
        nodes,
        mesh,
        max_paths: config
            .max_paths
            .map_or(1, |n| usize::from(n.clamp(1, MAX_PATHS))),
        invalid,
    }
}

/// The node-to-node sessions one `peerSelector` BGPPeer gives the own node: with every
/// node of `peerSelector` if `nodeSelector` selects us, with every node of `nodeSelector`
/// if `peerSelector` selects us.
fn selected_nodes(
    resources: &ClusterResources,
    view: &ClusterView,
    spec: &BGPPeerSpec,
    peer_selector: &crate::crd::selector::LabelSelector,
    mesh: &MeshOptions,
) -> Result<PeerSet, InvalidPeer> {
    let in_nodes = |labels| {
        spec.node_selector
            .as_ref()
            .is_none_or(|s| s.matches(labels))
    };
    let in_peers = |labels| peer_selector.matches(labels);
    let own = &view.own.labels;
    let (own_in_nodes, own_in_peers) = (in_nodes(own), in_peers(own));
    if !own_in_nodes && !own_in_peers {
        return Ok(PeerSet::new());
    }
    if spec.hold_time_seconds.is_some_and(|h| h == 1 || h == 2) {
        return Err(InvalidPeer::BadField(
            "holdTimeSeconds must be 0 or at least 3".into(),
        ));
    }
    let mut options = MeshOptions {
        gtsm: spec.gtsm || mesh.gtsm,
        hold_time: spec.hold_time_seconds.or(mesh.hold_time),
        graceful_restart: spec.graceful_restart.as_ref().map(graceful_restart),
        ..mesh.clone()
    };
    if let Some(reference) = &spec.password {
        options.md5_password = Some(password(resources, reference)?);
    }
    let max_prefixes = spec.max_prefixes.as_ref().map(max_prefixes);
    Ok(view
        .peers
        .values()
        .filter(|node| {
            (own_in_nodes && in_peers(&node.labels)) || (own_in_peers && in_nodes(&node.labels))
        })
        .filter_map(|node| node_peer(view, node, &options))
        .map(|mut peer| {
            peer.max_prefixes = max_prefixes;
            (peer.address, peer)
        })
        .collect())
}

/// One BGPPeer with a `peerAddress` as a [`StaticPeer`].
fn router_peer(
    resources: &ClusterResources,
    spec: &BGPPeerSpec,
) -> Result<StaticPeer, InvalidPeer> {
    let bad = |what: String| InvalidPeer::BadField(what);
    let Some(address) = &spec.peer_address else {
        return Err(bad("neither peerAddress nor peerSelector".into()));
    };
    let address: IpAddr = address
        .parse()
        .map_err(|_| bad(format!("peerAddress {address:?} is not an IP address")))?;
    if !usable_address(address) {
        return Err(bad(format!(
            "peerAddress {address} is not a unicast address"
        )));
    }
    let remote_as = match (spec.peer_as_number, spec.any_peer_as) {
        (Some(asn), false) if usable_as(asn) => PeerAs::Is(asn),
        (None, true) => PeerAs::Any,
        (Some(_), true) => return Err(bad("both peerASNumber and anyPeerAS".into())),
        _ => return Err(bad("peerASNumber is missing, 0 or 23456".into())),
    };
    if spec.local_as_number.is_some_and(|a| !usable_as(a)) {
        return Err(bad("localASNumber is 0 or 23456".into()));
    }
    if spec.hold_time_seconds.is_some_and(|h| h == 1 || h == 2) {
        return Err(bad("holdTimeSeconds must be 0 or at least 3".into()));
    }
    let import = spec
        .import
        .iter()
        .map(import_rule)
        .collect::<Result<Vec<_>, _>>()?;
    let md5_password = match &spec.password {
        Some(reference) => Some(password(resources, reference)?),
        None => None,
    };
    Ok(StaticPeer {
        address,
        remote_as,
        password_file: None,
        md5_password,
        gtsm: spec.gtsm,
        import,
        local_as: spec.local_as_number,
        hold_time: spec.hold_time_seconds,
        max_prefixes: spec.max_prefixes.as_ref().map(max_prefixes),
        graceful_restart: spec.graceful_restart.as_ref().map(graceful_restart),
        // Set by the caller, which reports a bad `bfd` without dropping the session.
        bfd: None,
    })
}

/// A resource's `bfd` as the agent runs it: `None` when absent, or when its values are
/// unusable (then recorded in `invalid` under `key`, e.g. `BGPPeer/tor.spec.bfd`, and the
/// sessions run without BFD rather than not at all).
fn bfd_settings(
    spec: Option<&BfdSpec>,
    key: &str,
    invalid: &mut BTreeMap<String, InvalidPeer>,
) -> Option<BfdSettings> {
    match spec?.settings() {
        Ok(settings) => Some(settings),
        Err(why) => {
            invalid.insert(key.to_owned(), InvalidPeer::BadField(why));
            None
        }
    }
}

/// An import entry as the speaker's rule: ge/le default to the prefix's own length.
fn import_rule(rule: &ImportRule) -> Result<PrefixRule, InvalidPeer> {
    let bad = || InvalidPeer::BadField(format!("import prefix {:?} is not usable", rule.prefix));
    let prefix: ipnetwork::IpNetwork = rule.prefix.parse().map_err(|_| bad())?;
    crate::static_peers::import_rule(prefix, rule.ge, rule.le).ok_or_else(bad)
}

/// A BGPPeer's `gracefulRestart` as the session's setting (a restart time the schema should
/// have refused is clamped to RFC 4724's 1..4095 s).
fn graceful_restart(spec: &bgp_peer::GracefulRestartSpec) -> PeerGracefulRestart {
    if !spec.enabled {
        return PeerGracefulRestart::Off;
    }
    PeerGracefulRestart::On {
        restart_time: spec
            .restart_time_seconds
            .map(|s| Duration::from_secs(u64::from(s.clamp(1, 4095)))),
    }
}

fn max_prefixes(limit: &bgp_peer::MaxPrefixes) -> MaxPrefix {
    MaxPrefix {
        limit: usize::try_from(limit.limit).unwrap_or(usize::MAX),
        action: match limit.action {
            bgp_peer::MaxPrefixAction::Warn => MaxPrefixAction::Warn,
            bgp_peer::MaxPrefixAction::DropExcess => MaxPrefixAction::DropExcess,
            bgp_peer::MaxPrefixAction::Cease => MaxPrefixAction::Cease {
                restart_after: limit
                    .restart_after_seconds
                    .map(|s| Duration::from_secs(u64::from(s))),
            },
        },
    }
}

/// The password a reference names, checked like a password file.
fn password(
    resources: &ClusterResources,
    reference: &SecretKeyRef,
) -> Result<Password, InvalidPeer> {
    let Some(data) = resources.secrets.get(&reference.name) else {
        let reason = resources
            .unreadable
            .get(&reference.name)
            .cloned()
            .unwrap_or_else(|| "not read yet".to_owned());
        return Err(InvalidPeer::SecretUnreadable {
            name: reference.name.clone(),
            reason,
        });
    };
    let value = data
        .get(&reference.key)
        .ok_or_else(|| InvalidPeer::SecretKeyMissing {
            name: reference.name.clone(),
            key: reference.key.clone(),
        })?;
    std::str::from_utf8(value)
        .ok()
        .and_then(|text| Password::parse(text).ok())
        .ok_or_else(|| InvalidPeer::BadPassword(reference.name.clone()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::config::NodeIpOverride;

    fn own(labels: serde_json::Value) -> ClusterView {
        nodes(&[("node-1", labels)], "node-1")
    }

    /// Nodes node-1, node-2, ... with these labels, at 198.18.0.1, .2, ..., seen by `own`.
    pub(super) fn nodes(labelled: &[(&str, serde_json::Value)], own: &str) -> ClusterView {
        let nodes: Vec<k8s_openapi::api::core::v1::Node> = labelled
            .iter()
            .enumerate()
            .map(|(i, (name, labels))| {
                serde_json::from_value(serde_json::json!({
                    "metadata": {"name": name, "labels": labels},
                    "spec": {"podCIDRs": [format!("10.244.{}.0/24", i + 1)]},
                    "status": {"addresses": [
                        {"type": "InternalIP", "address": format!("198.18.0.{}", i + 1)}
                    ]}
                }))
                .expect("node")
            })
            .collect();
        ClusterView::from_nodes(&nodes, own, NodeIpOverride::default()).expect("view")
    }

    fn spec(json: serde_json::Value) -> BGPPeerSpec {
        serde_json::from_value(json).expect("spec")
    }

    fn defaults() -> FlagDefaults {
        FlagDefaults {
            as_number: 64512,
            mesh_md5_password: None,
            mesh_gtsm: false,
        }
    }

    #[test]
    fn a_bgppeer_becomes_the_static_peer_its_flag_would_give() {
        let mut resources = ClusterResources::default();
        resources.peers.insert(
            "tor".into(),
            spec(serde_json::json!({
                "peerAddress": "198.18.0.254", "peerASNumber": 64512,
                "import": [{"prefix": "10.99.0.0/16", "le": 24}]
            })),
        );
        let peers = cluster_peers(&resources, &own(serde_json::json!({})), &defaults());
        let flag = crate::static_peers::parse_static_peer(
            "address=198.18.0.254,as=64512,import=10.99.0.0/16:24",
        )
        .expect("flag");
        assert_eq!(peers.routers, vec![flag]);
        assert!(peers.invalid.is_empty());
        assert!(peers.mesh.enabled, "no BGPConfiguration: the mesh runs");
    }

    #[test]
    fn any_peer_as_is_the_flags_as_any_and_excludes_a_peer_as_number() {
        let mut resources = ClusterResources::default();
        resources.peers.insert(
            "tor".into(),
            spec(serde_json::json!({"peerAddress": "198.18.0.254", "anyPeerAS": true})),
        );
        resources.peers.insert(
            "both".into(),
            spec(serde_json::json!({
                "peerAddress": "198.18.0.253", "peerASNumber": 65001, "anyPeerAS": true
            })),
        );
        let peers = cluster_peers(&resources, &own(serde_json::json!({})), &defaults());
        let flag =
            crate::static_peers::parse_static_peer("address=198.18.0.254,as=any").expect("flag");
        assert_eq!(peers.routers, vec![flag]);
        assert_eq!(peers.routers[0].remote_as, PeerAs::Any);
        assert_eq!(
            peers
                .invalid
                .get("both")
                .map(ToString::to_string)
                .as_deref(),
            Some("both peerASNumber and anyPeerAS")
        );
    }

    #[test]
    fn graceful_restart_of_one_bgppeer_changes_only_its_sessions() {
        let mut resources = ClusterResources::default();
        for (name, address) in [("tor-a", "198.18.0.254"), ("tor-b", "198.18.0.253")] {
            resources.peers.insert(
                name.into(),
                spec(serde_json::json!({"peerAddress": address, "peerASNumber": 65001})),
            );
        }
        let view = own(serde_json::json!({}));
        let set = |resources: &ClusterResources| {
            let mut set = PeerSet::new();
            crate::static_peers::add_static_peers(
                &mut set,
                &cluster_peers(resources, &view, &defaults()).routers,
            );
            set
        };
        let before = set(&resources);
        assert!(before.values().all(|p| p.graceful_restart.is_none()));
        for (json, expected) in [
            (
                serde_json::json!({"restartTimeSeconds": 30}),
                PeerGracefulRestart::On {
                    restart_time: Some(Duration::from_secs(30)),
                },
            ),
            (
                serde_json::json!({"enabled": false}),
                PeerGracefulRestart::Off,
            ),
            (
                serde_json::json!({}),
                PeerGracefulRestart::On { restart_time: None },
            ),
        ] {
            resources.peers.insert(
                "tor-a".into(),
                spec(serde_json::json!({
                    "peerAddress": "198.18.0.254", "peerASNumber": 65001, "gracefulRestart": json
                })),
            );
            let after = set(&resources);
            let changes = crate::peers::PeerChanges::between(&before, &after);
            let changed: Vec<_> = changes.changed.iter().map(|p| p.address).collect();
            assert_eq!(changed, ["198.18.0.254".parse::<IpAddr>().expect("ip")]);
            assert!(changes.added.is_empty() && changes.removed.is_empty());
            assert_eq!(changes.changed[0].graceful_restart, Some(expected));
        }
    }

    #[test]
    fn max_paths_comes_from_the_bgp_configuration_and_defaults_to_one() {
        let view = own(serde_json::json!({}));
        let mut resources = ClusterResources::default();
        assert_eq!(cluster_peers(&resources, &view, &defaults()).max_paths, 1);
        let config = |json| serde_json::from_value::<BGPConfigurationSpec>(json).expect("spec");
        resources.configuration = Some(config(serde_json::json!({"maxPaths": 4})));
        assert_eq!(cluster_peers(&resources, &view, &defaults()).max_paths, 4);
        // Stored before the schema refused it: clamped, never zero paths.
        for (stored, used) in [(0, 1), (200, 16)] {
            resources.configuration = Some(config(serde_json::json!({"maxPaths": stored})));
            assert_eq!(
                cluster_peers(&resources, &view, &defaults()).max_paths,
                used
            );
        }
    }

    #[test]
    fn node_selector_picks_nodes_and_a_missing_secret_is_reported_alone() {
        let mut resources = ClusterResources::default();
        resources.peers.insert(
            "rack-a".into(),
            spec(serde_json::json!({
                "peerAddress": "198.18.0.254", "peerASNumber": 65001,
                "nodeSelector": {"matchLabels": {"rack": "a"}}
            })),
        );
        resources.peers.insert(
            "rack-b".into(),
            spec(serde_json::json!({
                "peerAddress": "198.18.1.254", "peerASNumber": 65002,
                "nodeSelector": {"matchLabels": {"rack": "b"}}
            })),
        );
        resources.peers.insert(
            "locked".into(),
            spec(serde_json::json!({
                "peerAddress": "198.18.0.253", "peerASNumber": 65003,
                "password": {"name": "pw", "key": "tor"}
            })),
        );
        let peers = cluster_peers(
            &resources,
            &own(serde_json::json!({"rack": "a"})),
            &defaults(),
        );
        let addresses: Vec<String> = peers
            .routers
            .iter()
            .map(|p| p.address.to_string())
            .collect();
        assert_eq!(addresses, ["198.18.0.254"]);
        assert_eq!(
            peers.invalid.get("locked").map(InvalidPeer::metric_label),
            Some("secret_unreadable")
        );

        // The Secret appears: the peer is used, with its password.
        resources.secrets.insert(
            "pw".into(),
            [("tor".to_owned(), b"s3cret\n".to_vec())].into(),
        );
        let peers = cluster_peers(
            &resources,
            &own(serde_json::json!({"rack": "a"})),
            &defaults(),
        );
        assert_eq!(peers.routers.len(), 2);
        assert_eq!(
            peers.routers[0].md5_password.as_ref().map(Password::expose),
            Some("s3cret")
        );
        assert!(
            !format!("{resources:?}").contains("s3cret"),
            "Debug shows no Secret value"
        );
    }

    #[test]
    fn the_configuration_turns_the_mesh_off_and_sets_its_as() {
        let resources = ClusterResources {
            configuration: Some(
                serde_json::from_value(serde_json::json!({
                    "asNumber": 65100, "nodeToNodeMesh": {"enabled": false, "holdTimeSeconds": 30}
                }))
                .expect("config"),
            ),
            ..Default::default()
        };
        let peers = cluster_peers(&resources, &own(serde_json::json!({})), &defaults());
        assert!(!peers.mesh.enabled);
        assert_eq!(peers.mesh.as_number, 65100);
        assert_eq!(peers.mesh.hold_time, Some(30));
    }

    fn mesh_with(bfd: serde_json::Value) -> ClusterResources {
        ClusterResources {
            configuration: Some(
                serde_json::from_value(serde_json::json!({"nodeToNodeMesh": {"bfd": bfd}}))
                    .expect("config"),
            ),
            ..Default::default()
        }
    }

    #[test]
    fn bfd_on_the_mesh_and_a_bgppeer_comes_with_its_defaults_and_overrides() {
        let view = nodes(
            &[
                ("node-1", serde_json::json!({})),
                ("node-2", serde_json::json!({})),
            ],
            "node-1",
        );
        let mut resources = mesh_with(serde_json::json!({"strict": true}));
        resources.peers.insert(
            "tor".into(),
            spec(serde_json::json!({
                "peerAddress": "198.18.0.254", "peerASNumber": 64512,
                "bfd": {"minRxMilliseconds": 100, "minTxMilliseconds": 200, "multiplier": 5}
            })),
        );
        resources.peers.insert(
            "no-bfd".into(),
            spec(serde_json::json!({"peerAddress": "198.18.0.253", "peerASNumber": 64512})),
        );
        let peers = cluster_peers(&resources, &view, &defaults());
        assert!(peers.invalid.is_empty(), "{:?}", peers.invalid);
        let strict = BfdSettings {
            strict: true,
            ..BfdSettings::default()
        };
        assert_eq!(peers.mesh.bfd, Some(strict));
        let mesh = crate::peers::mesh_peers(&view, &peers.mesh);
        assert!(mesh.values().all(|p| p.bfd == Some(strict)), "{mesh:?}");
        let bfd_of = |address: &str| {
            peers
                .routers
                .iter()
                .find(|r| r.address.to_string() == address)
                .expect("router")
                .bfd
        };
        assert_eq!(
            bfd_of("198.18.0.254"),
            Some(BfdSettings {
                min_rx: Duration::from_millis(100),
                min_tx: Duration::from_millis(200),
                multiplier: 5,
                strict: false,
            })
        );
        assert_eq!(bfd_of("198.18.0.253"), None);
        // No `bfd`: BFD off on the mesh.
        let off = cluster_peers(&ClusterResources::default(), &view, &defaults());
        assert_eq!(off.mesh.bfd, None);
    }

    #[test]
    fn a_bad_bfd_is_reported_and_the_session_runs_without_it() {
        let view = own(serde_json::json!({}));
        let mut resources = mesh_with(serde_json::json!({"multiplier": 0}));
        resources.peers.insert(
            "tor".into(),
            spec(serde_json::json!({
                "peerAddress": "198.18.0.254", "peerASNumber": 64512,
                "gtsm": true,
                "bfd": {"minRxMilliseconds": 5}
            })),
        );
        let peers = cluster_peers(&resources, &view, &defaults());
        assert_eq!(peers.mesh.bfd, None);
        assert!(peers.mesh.enabled);
        let tor = &peers.routers[0];
        assert_eq!(
            (tor.bfd, tor.gtsm),
            (None, true),
            "the rest of the BGPPeer is used"
        );
        let why = |key: &str| peers.invalid.get(key).map(ToString::to_string);
        assert_eq!(
            why("BGPPeer/tor.spec.bfd").as_deref(),
            Some("minRxMilliseconds 5: expected 10..60000")
        );
        assert_eq!(
            why("BGPConfiguration/default.spec.nodeToNodeMesh.bfd").as_deref(),
            Some("multiplier 0: expected 1..255")
        );
        assert_eq!(peers.invalid.len(), 2, "{:?}", peers.invalid);
    }

    #[test]
    fn a_peer_selector_bgppeer_with_bfd_replaces_the_meshs() {
        let view = nodes(
            &[
                ("node-1", serde_json::json!({})),
                ("node-2", serde_json::json!({"route-reflector": "true"})),
            ],
            "node-1",
        );
        let mut resources = mesh_with(serde_json::json!({}));
        resources.peers.insert(
            "rr".into(),
            spec(serde_json::json!({
                "peerSelector": {"matchLabels": {"route-reflector": "true"}},
                "bfd": {"multiplier": 7}
            })),
        );
        let peers = cluster_peers(&resources, &view, &defaults());
        let node2 = peers.nodes.values().next().expect("session to node-2");
        assert_eq!(node2.bfd.map(|b| b.multiplier), Some(7));
        resources.peers.get_mut("rr").expect("rr").bfd = None;
        let peers = cluster_peers(&resources, &view, &defaults());
        let node2 = peers.nodes.values().next().expect("session to node-2");
        assert_eq!(node2.bfd, Some(BfdSettings::default()), "the mesh's");
    }
}

#[cfg(test)]
mod peer_selector_tests {
    use super::*;

    fn cluster(own: &str) -> ClusterView {
        let rr = || serde_json::json!({"route-reflector": "true"});
        let plain = || serde_json::json!({});
        super::tests::nodes(
            &[
                ("node-1", rr()),
                ("node-2", rr()),
                ("node-3", plain()),
                ("node-4", plain()),
            ],
            own,
        )
    }

    fn to_reflectors() -> ClusterResources {
        let mut resources = ClusterResources::default();
        resources.peers.insert(
            "to-reflectors".into(),
            serde_json::from_value(serde_json::json!({
                "peerSelector": {"matchLabels": {"route-reflector": "true"}},
                "holdTimeSeconds": 30
            }))
            .expect("spec"),
        );
        resources
    }

    fn addresses(view: &ClusterView) -> Vec<String> {
        let defaults = FlagDefaults {
            as_number: 64512,
            mesh_md5_password: None,
            mesh_gtsm: false,
        };
        let peers = cluster_peers(&to_reflectors(), view, &defaults);
        assert!(peers.invalid.is_empty(), "{:?}", peers.invalid);
        assert!(peers.routers.is_empty());
        for peer in peers.nodes.values() {
            assert_eq!(peer.hold_time, Some(30));
            assert_eq!(peer.remote_as, PeerAs::Is(64512));
        }
        peers.nodes.keys().map(ToString::to_string).collect()
    }

    #[test]
    fn a_peer_selector_peers_clients_with_reflectors_and_reflectors_with_everyone() {
        // A client peers with the two reflectors only.
        assert_eq!(addresses(&cluster("node-3")), ["198.18.0.1", "198.18.0.2"]);
        // A reflector is selected by peerSelector, so it peers with every node nodeSelector
        // selects (all), the other reflector included.
        assert_eq!(
            addresses(&cluster("node-1")),
            ["198.18.0.2", "198.18.0.3", "198.18.0.4"]
        );
    }
}
