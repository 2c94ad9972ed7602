//! The `BGPConfiguration` resource: the cluster's BGP settings, one object named `default`.
//!
//! Without it (or without the CRDs) the agent runs on its flags (`--as-number`,
//! `--hold-time`, `--mesh-password-file`, `--mesh-gtsm`); with it, its fields win. BFD on the
//! mesh (`nodeToNodeMesh.bfd`) has no flag: it is set here only.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{SecretKeyRef, bfd::BfdSpec};

/// The one BGPConfiguration the agent reads.
pub const DEFAULT_NAME: &str = "default";

/// Cluster-wide BGP settings.
#[derive(
    CustomResource, KubeSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[kube(
    group = "podroute.io",
    version = "v1alpha1",
    kind = "BGPConfiguration",
    plural = "bgpconfigurations",
    singular = "bgpconfiguration",
    shortname = "bgpconfig",
    derive = "PartialEq",
    validation = Rule::new("self.metadata.name == 'default'")
        .message("the agent reads only the BGPConfiguration named default"),
    printcolumn(
        name = "AS",
        type_ = "integer",
        description = "the nodes' AS number",
        json_path = ".spec.asNumber"
    ),
    printcolumn(
        name = "Mesh",
        type_ = "boolean",
        description = "node-to-node mesh on",
        json_path = ".spec.nodeToNodeMesh.enabled"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPConfigurationSpec {
    /// The AS number of every node (a node's `podroute.io/as-number` annotation overrides it
    /// for that node, e.g. one AS per rack).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4294967295 && self != 23456")
        .message("asNumber must be 1..4294967295 and not AS_TRANS 23456"))]
    pub as_number: Option<u32>,

    /// ECMP: the most equal-cost paths of a prefix learned over BGP that the nodes install,
    /// as one kernel route over their next hops (1 to 16; 1, the default: the best path's
    /// next hop alone). Changing it re-installs the affected routes and resets no session.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 16")
        .message("maxPaths must be 1..16"))]
    pub max_paths: Option<u8>,

    /// The full iBGP mesh between nodes.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_to_node_mesh: Option<MeshSettings>,
}

/// Settings of the node-to-node mesh.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct MeshSettings {
    /// Run the mesh (off: nodes peer only as BGPPeers say, e.g. with route reflectors).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// TCP-MD5 password of every mesh session, from a Secret in the agent's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeyRef>,
    /// GTSM (RFC 5082) on mesh sessions: only when every node shares one L2 segment.
    #[serde(default)]
    pub gtsm: bool,
    /// Hold time offered on mesh sessions, seconds (0 or 3..65535).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 0 || (self >= 3 && self <= 65535)")
        .message("holdTimeSeconds must be 0 or 3..65535 (RFC 4271 §4.2)"))]
    pub hold_time_seconds: Option<u16>,
    /// BFD (RFC 5880/5881) on every mesh session: present is on (`bfd: {}` gives 300 ms × 3),
    /// absent off. Every node reads the same object, so both ends of a session agree.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSpec>,
}

fn enabled() -> bool {
    true
}
