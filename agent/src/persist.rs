//! What the agent needs to route, kept on the node for a restart while the API server is
//! away: the cluster view built from the Node objects (own node: name, IPs, pod CIDRs,
//! labels; every other node: the same) and podroute's resources (every BGPPeer's spec, the
//! `default` BGPConfiguration's spec). Secret data is never copied here: a session whose
//! TCP-MD5 password comes from a Secret comes back when the API answers (the mesh falls
//! back to `--mesh-password-file` meanwhile); static peers come from the agent's own flags
//! and their passwords from files the kubelet keeps on the node.
//!
//! The file is JSON with a version; it is written atomically (a temporary file in the same
//! directory, fsync, rename, fsync of the directory), so a crash leaves the old file or the
//! new one. On load it is validated (version, own node name, addresses and CIDRs, no node
//! twice, pod CIDRs of a family the node has an IP of) and a bad file is an error that
//! loses nothing: the agent then waits for the API as it would without a file. A loaded
//! view is only a stand-in: the first answer from the API replaces it.

use std::collections::BTreeMap;
use std::io::Write;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::{Path, PathBuf};

use ipnetwork::IpNetwork;
use serde::{Deserialize, Serialize};

use crate::cluster_peers::ClusterResources;
use crate::crd::bgp_configuration::BGPConfigurationSpec;
use crate::crd::bgp_peer::BGPPeerSpec;
use crate::view::{ClusterView, NodeInfo, NodeIps};

/// The file format version this agent writes and reads (1: the view without labels or
/// resources).
const VERSION: u32 = 2;

/// Why a persisted view could not be used (or written).
#[derive(Debug, thiserror::Error)]
pub enum PersistError {
    /// Reading or writing the file failed.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The file is not the JSON this agent writes.
    #[error("{path}: not a podroute state file: {reason}")]
    Format {
        /// The file.
        path: PathBuf,
        /// Why.
        reason: String,
    },
    /// A version this agent does not read.
    #[error("{path}: state file version {found}, this agent reads version {VERSION}")]
    Version {
        /// The file.
        path: PathBuf,
        /// The version found.
        found: u32,
    },
    /// The file was written for another node.
    #[error("{path}: written for node {found}, this is node {expected}")]
    OtherNode {
        /// The file.
        path: PathBuf,
        /// Node name in the file.
        found: String,
        /// This agent's node name.
        expected: String,
    },
    /// A value that does not hold together.
    #[error("{path}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

impl PersistError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Io { .. } => "state_file_io",
            Self::Format { .. } | Self::Version { .. } | Self::Invalid { .. } => "state_file_bad",
            Self::OtherNode { .. } => "state_file_other_node",
        }
    }
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredNode {
    name: String,
    ipv4: Option<Ipv4Addr>,
    ipv6: Option<Ipv6Addr>,
    pod_cidrs: Vec<String>,
    labels: BTreeMap<String, String>,
    /// The node's own AS (`podroute.io/as-number`); absent in files of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    as_number: Option<u32>,
    /// The node's route-reflector CLUSTER_ID; absent in files of older agents.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    route_reflector_cluster_id: Option<Ipv4Addr>,
}

#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
struct StoredView {
    version: u32,
    own: StoredNode,
    peers: Vec<StoredNode>,
    /// Every BGPPeer's spec, by name.
    bgp_peers: BTreeMap<String, BGPPeerSpec>,
    /// The `default` BGPConfiguration's spec.
    bgp_configuration: Option<BGPConfigurationSpec>,
}

/// What the file holds: the cluster view and the resources without Secret data.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct State {
    /// The view from the Node objects.
    pub view: ClusterView,
    /// BGPPeers and the BGPConfiguration; `secrets` and `unreadable` are always empty.
    pub resources: ClusterResources,
}

impl State {
    /// `view` and `resources`, with the resources' Secret data (and read errors) left out.
    pub fn new(view: ClusterView, resources: &ClusterResources) -> Self {
        Self {
            view,
            resources: ClusterResources {
                peers: resources.peers.clone(),
                configuration: resources.configuration.clone(),
                ..ClusterResources::default()
            },
        }
    }
}

fn store(n: &NodeInfo) -> StoredNode {
    StoredNode {
        name: n.name.clone(),
        ipv4: n.ips.v4,
        ipv6: n.ips.v6,
        pod_cidrs: n.pod_cidrs.iter().map(ToString::to_string).collect(),
        labels: n.labels.clone(),
        as_number: n.as_number,
        route_reflector_cluster_id: n.route_reflector_cluster_id,
    }
}

fn restore(n: StoredNode, path: &Path) -> Result<NodeInfo, PersistError> {
    let invalid = |reason: String| PersistError::Invalid {
        path: path.to_owned(),
        reason,
    };
    if n.name.is_empty() {
        return Err(invalid("a node without a name".to_owned()));
    }
    let ips = NodeIps {
        v4: n.ipv4,
        v6: n.ipv6,
    };
    let mut pod_cidrs = Vec::new();
    for text in &n.pod_cidrs {
        let cidr: IpNetwork = text
            .parse()
            .map_err(|_| invalid(format!("node {}: bad pod CIDR {text:?}", n.name)))?;
        if cidr.network() != cidr.ip() {
            return Err(invalid(format!(
                "node {}: {text} is not a network address",
                n.name
            )));
        }
        if ips.for_family_of(&cidr).is_none() {
            return Err(invalid(format!(
                "node {}: no node IP for pod CIDR {text}",
                n.name
            )));
        }
        pod_cidrs.push(cidr);
    }
    Ok(NodeInfo {
        name: n.name,
        ips,
        pod_cidrs,
        labels: n.labels,
        as_number: n.as_number.filter(|a| crate::peers::usable_as(*a)),
        route_reflector_cluster_id: n
            .route_reflector_cluster_id
            .filter(|id| !id.is_unspecified()),
        problems: Vec::new(),
    })
}

/// Writes `state` to `path` atomically (Secret data, should `state` hold any, is left out).
pub fn save(path: &Path, state: &State) -> Result<(), PersistError> {
    let io = |source| PersistError::Io {
        path: path.to_owned(),
        source,
    };
    let stored = StoredView {
        version: VERSION,
        own: store(&state.view.own),
        peers: state.view.peers.values().map(store).collect(),
        bgp_peers: state.resources.peers.clone(),
        bgp_configuration: state.resources.configuration.clone(),
    };
    let text = serde_json::to_vec_pretty(&stored).map_err(|e| PersistError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    })?;
    let dir = path
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .unwrap_or(Path::new("."));
    std::fs::create_dir_all(dir).map_err(io)?;
    let tmp = dir.join(format!(
        ".{}.tmp",
        path.file_name().and_then(|n| n.to_str()).unwrap_or("state")
    ));
    let mut file = std::fs::File::create(&tmp).map_err(io)?;
    file.write_all(&text).map_err(io)?;
    file.sync_all().map_err(io)?;
    drop(file);
    std::fs::rename(&tmp, path).map_err(io)?;
    // The rename is durable once the directory is.
    std::fs::File::open(dir)
        .and_then(|d| d.sync_all())
        .map_err(io)?;
    Ok(())
}

/// Reads and validates the state in `path`, written for node `node_name`.
pub fn load(path: &Path, node_name: &str) -> Result<State, PersistError> {
    let text = std::fs::read(path).map_err(|source| PersistError::Io {
        path: path.to_owned(),
        source,
    })?;
    let format = |e: serde_json::Error| PersistError::Format {
        path: path.to_owned(),
        reason: e.to_string(),
    };
    // The version first, so a file of another version is refused as such, whatever its shape.
    #[derive(Deserialize)]
    struct Versioned {
        version: u32,
    }
    let versioned: Versioned = serde_json::from_slice(&text).map_err(format)?;
    if versioned.version != VERSION {
        return Err(PersistError::Version {
            path: path.to_owned(),
            found: versioned.version,
        });
    }
    let stored: StoredView = serde_json::from_slice(&text).map_err(format)?;
    if stored.own.name != node_name {
        return Err(PersistError::OtherNode {
            path: path.to_owned(),
            found: stored.own.name,
            expected: node_name.to_owned(),
        });
    }
    let own = restore(stored.own, path)?;
    let mut peers = BTreeMap::new();
    for p in stored.peers {
        let p = restore(p, path)?;
        if p.name == own.name || peers.contains_key(&p.name) {
            return Err(PersistError::Invalid {
                path: path.to_owned(),
                reason: format!("node {} appears twice", p.name),
            });
        }
        peers.insert(p.name.clone(), p);
    }
    Ok(State {
        view: ClusterView { own, peers },
        resources: ClusterResources {
            peers: stored.bgp_peers,
            configuration: stored.bgp_configuration,
            ..ClusterResources::default()
        },
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(name: &str, i: u8) -> NodeInfo {
        NodeInfo {
            name: name.to_owned(),
            ips: NodeIps {
                v4: Some(Ipv4Addr::new(198, 18, 0, i)),
                v6: Some(format!("fd00:198:18::{i}").parse().expect("v6")),
            },
            pod_cidrs: vec![
                format!("10.244.{i}.0/24").parse().expect("net"),
                format!("fd00:10:244:{i}::/64").parse().expect("net"),
            ],
            labels: [
                ("kubernetes.io/hostname".to_owned(), name.to_owned()),
                ("rack".to_owned(), format!("r{i}")),
            ]
            .into(),
            as_number: None,
            route_reflector_cluster_id: None,
            problems: Vec::new(),
        }
    }

    fn view() -> ClusterView {
        ClusterView {
            own: node("node1", 1),
            peers: [("node2".to_owned(), node("node2", 2))].into(),
        }
    }

    fn resources() -> ClusterResources {
        let peer: BGPPeerSpec = serde_json::from_value(serde_json::json!({
            "peerAddress": "198.18.0.254",
            "peerASNumber": 65100,
            "nodeSelector": {"matchLabels": {"rack": "r1"}},
            "password": {"name": "tor", "key": "password"},
            "holdTimeSeconds": 9,
            "import": [{"prefix": "10.96.0.0/12", "le": 32}],
            "maxPrefixes": {"limit": 100, "action": "Warn"},
        }))
        .expect("BGPPeer spec");
        let configuration: BGPConfigurationSpec = serde_json::from_value(serde_json::json!({
            "asNumber": 64513,
            "nodeToNodeMesh": {"enabled": false, "gtsm": true,
                "password": {"name": "mesh", "key": "pw"}},
        }))
        .expect("BGPConfiguration spec");
        ClusterResources {
            peers: [("tor".to_owned(), peer)].into(),
            configuration: Some(configuration),
            secrets: [(
                "tor".to_owned(),
                [("password".to_owned(), b"s3cret-tor".to_vec())].into(),
            )]
            .into(),
            unreadable: [("mesh".to_owned(), "not found".to_owned())].into(),
        }
    }

    fn state() -> State {
        State::new(view(), &resources())
    }

    #[test]
    fn a_saved_view_loads_back_equal_and_replaces_the_old_file() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("sub").join("view.json");
        let mut v = state();
        save(&path, &v).expect("save");
        v.view.peers.insert("node3".to_owned(), node("node3", 3));
        save(&path, &v).expect("save again");
        assert_eq!(load(&path, "node1").expect("load"), v);
        let leftovers: Vec<_> = std::fs::read_dir(path.parent().expect("dir"))
            .expect("list")
            .filter_map(|e| e.ok())
            .filter(|e| e.file_name().to_string_lossy().ends_with(".tmp"))
            .collect();
        assert!(leftovers.is_empty(), "temporary file left behind");
    }

    #[test]
    fn peers_configuration_and_labels_come_back_and_secrets_are_not_kept() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("view.json");
        let full = resources();
        save(&path, &State::new(view(), &full)).expect("save");
        let loaded = load(&path, "node1").expect("load");
        assert_eq!(loaded.view, view());
        assert_eq!(loaded.view.own.labels["rack"], "r1");
        assert_eq!(loaded.view.peers["node2"].labels["rack"], "r2");
        assert_eq!(loaded.resources.peers, full.peers);
        assert_eq!(loaded.resources.configuration, full.configuration);
        assert!(loaded.resources.secrets.is_empty());
        assert!(loaded.resources.unreadable.is_empty());
        let text = std::fs::read_to_string(&path).expect("read");
        assert!(!text.contains("s3cret"), "a Secret value reached the file");
        assert!(
            text.contains("\"name\": \"tor\""),
            "the Secret reference is kept"
        );
        // The loaded resources select the same peers, and name the Secret still to be read.
        let defaults = crate::cluster_peers::FlagDefaults {
            as_number: 64512,
            mesh_md5_password: None,
            mesh_gtsm: false,
        };
        let peers = crate::cluster_peers::cluster_peers(&loaded.resources, &loaded.view, &defaults);
        assert_eq!(peers.mesh.as_number, 64513);
        assert!(!peers.mesh.enabled);
        assert!(peers.invalid.contains_key("tor"), "{peers:?}");
    }

    #[test]
    fn a_file_of_version_1_is_refused() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("view.json");
        std::fs::write(
            &path,
            r#"{"version": 1, "own": {"name": "node1", "ipv4": "198.18.0.1", "ipv6": null,
                "pod_cidrs": ["10.244.1.0/24"]}, "peers": []}"#,
        )
        .expect("write");
        assert!(matches!(
            load(&path, "node1"),
            Err(PersistError::Version { found: 1, .. })
        ));
    }

    #[test]
    fn a_bad_file_is_an_error_not_a_view() {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("view.json");
        save(&path, &state()).expect("save");
        assert!(matches!(
            load(&path, "node2"),
            Err(PersistError::OtherNode { .. })
        ));
        let text = std::fs::read_to_string(&path).expect("read");
        for (from, to) in [
            ("\"version\": 2", "\"version\": 1"),
            ("\"version\": 2", "\"version\": 3"),
            ("10.244.2.0/24", "10.244.2.1/24"),
            ("10.244.2.0/24", "banana"),
            ("\"name\": \"node2\"", "\"name\": \"node1\""),
        ] {
            std::fs::write(&path, text.replacen(from, to, 1)).expect("write");
            assert!(load(&path, "node1").is_err(), "{from} → {to} was accepted");
        }
        std::fs::write(&path, &text[..text.len() / 2]).expect("write");
        assert!(matches!(
            load(&path, "node1"),
            Err(PersistError::Format { .. })
        ));
        assert!(matches!(
            load(&dir.path().join("missing"), "node1"),
            Err(PersistError::Io { .. })
        ));
    }
}
