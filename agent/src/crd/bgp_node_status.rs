//! The `BGPNodeStatus` resource: what one node's agent sees, for the whole cluster to read
//! (`kubectl get bgpnodestatuses`). One object per node, named after it, written by that
//! node's agent only (its `status`, by server-side apply) and owned by the Node, so it goes
//! when the Node goes. The same facts as the agent's `/status` and `podroute-agent status`,
//! less what changes every second.

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

/// Nothing to ask for: the agent fills in the status.
// Three integer print columns repeat `type_ = "integer"`, which the lint takes for a
// duplicated attribute.
#[allow(clippy::duplicated_attributes)]
#[derive(
    CustomResource, KubeSchema, Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize,
)]
#[kube(
    group = "podroute.io",
    version = "v1alpha1",
    kind = "BGPNodeStatus",
    plural = "bgpnodestatuses",
    singular = "bgpnodestatus",
    shortname = "bgpstatus",
    status = "NodeBgpState",
    derive = "PartialEq",
    printcolumn(
        name = "Ready",
        type_ = "boolean",
        description = "the node routes (see /readyz)",
        json_path = ".status.ready"
    ),
    printcolumn(
        name = "Established",
        type_ = "integer",
        description = "BGP sessions Established",
        json_path = ".status.establishedPeers"
    ),
    printcolumn(
        name = "Peers",
        type_ = "integer",
        description = "BGP peers configured",
        json_path = ".status.configuredPeers"
    ),
    printcolumn(
        name = "Drifting",
        type_ = "integer",
        description = "expected routes that drift",
        json_path = ".status.routes.drifting"
    )
)]
#[serde(rename_all = "camelCase")]
pub struct BGPNodeStatusSpec {}

/// One node's BGP and routing state as its agent last wrote it.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct NodeBgpState {
    /// The node routes: what `/readyz` says.
    pub ready: bool,
    /// Why not, when it does not.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub not_ready_reason: Option<String>,
    /// BGP peers configured on the node.
    pub configured_peers: u32,
    /// Of those, sessions Established.
    pub established_peers: u32,
    /// Every peer's session.
    pub peers: Vec<PeerState>,
    /// Routes the API expects, installed, and drifting.
    pub routes: RouteCounts,
    /// BGPPeers (or the BGPConfiguration) this node cannot use, with why.
    #[serde(default, skip_serializing_if = "std::collections::BTreeMap::is_empty")]
    pub rejected_resources: std::collections::BTreeMap<String, String>,
}

/// One BGP session of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct PeerState {
    /// The peer's address.
    pub address: String,
    /// `mesh` or `router`.
    #[serde(rename = "type")]
    pub peer_type: String,
    /// The peer's AS: the configured one, or for a BGPPeer with `anyPeerAS` the one its OPEN
    /// carried on the current session (absent until then).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub as_number: Option<u32>,
    /// The session state (RFC 4271: Idle, Connect, Active, OpenSent, OpenConfirm, Established).
    pub state: String,
    /// When it entered that state, seconds since the Unix epoch.
    pub since_unix_seconds: u64,
    /// Prefixes the peer announced (every announcement counts, withdrawn or not).
    #[serde(default)]
    pub received_prefixes: u64,
    /// Routes accepted from the peer.
    pub accepted_routes: u64,
    /// Routes advertised to it.
    pub advertised_routes: u64,
    /// The last NOTIFICATION or UPDATE error, if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub last_error: Option<String>,
}

/// Route counts of the node.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct RouteCounts {
    /// Pod CIDR routes the API expects on this node.
    pub expected: u64,
    /// podroute's routes in the kernel.
    pub installed: u64,
    /// Expected routes that are not as the API says.
    pub drifting: u64,
}
