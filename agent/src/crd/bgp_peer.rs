//! The `BGPPeer` resource (cluster-scoped): a BGP session that some or all nodes run, either
//! to a router at a fixed address (`peerAddress`) or to other nodes chosen by labels
//! (`peerSelector`, how route-reflector topologies are written).
//!
//! The schema and its CEL rules refuse what the API server can see is wrong (a bad address,
//! AS 0, both or neither of `peerAddress` and `peerSelector`, an import rule that is not a
//! network address). What only the agent can see (a missing Secret) is reported by the agent
//! and the object ignored; see [`crate::cluster_peers`].

use kube::{CustomResource, KubeSchema};
use serde::{Deserialize, Serialize};

use super::{SecretKeyRef, bfd::BfdSpec, selector::LabelSelector};

/// A BGP peer of the nodes that `nodeSelector` selects.
#[derive(CustomResource, KubeSchema, Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[kube(
    group = "podroute.io",
    version = "v1alpha1",
    kind = "BGPPeer",
    plural = "bgppeers",
    singular = "bgppeer",
    shortname = "bgpp",
    derive = "PartialEq",
    printcolumn(
        name = "Peer",
        type_ = "string",
        description = "the router's address",
        json_path = ".spec.peerAddress"
    ),
    printcolumn(
        name = "AS",
        type_ = "integer",
        description = "the peer's AS number",
        json_path = ".spec.peerASNumber"
    ),
    printcolumn(
        name = "Age",
        type_ = "date",
        json_path = ".metadata.creationTimestamp"
    )
)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("has(self.peerAddress) != has(self.peerSelector)")
    .message("give exactly one of peerAddress (a router) and peerSelector (other nodes)"))]
#[x_kube(validation = Rule::new("!has(self.peerAddress) || has(self.peerASNumber) != (has(self.anyPeerAS) && self.anyPeerAS)")
    .message("a peer at peerAddress needs exactly one of peerASNumber and anyPeerAS: true"))]
#[x_kube(validation = Rule::new("!has(self.peerSelector) || !has(self.anyPeerAS) || !self.anyPeerAS")
    .message("anyPeerAS is for routers (peerAddress): a node's AS is known"))]
pub struct BGPPeerSpec {
    /// The router's address (IPv4 or IPv6). Exclusive with `peerSelector`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(length(max = 45))]
    #[x_kube(validation = Rule::new("isIP(self) && !ip(self).isUnspecified() && !ip(self).isLoopback() && !ip(self).isLinkLocalMulticast()")
        .message("peerAddress must be a unicast IPv4 or IPv6 address"))]
    pub peer_address: Option<String>,

    /// Other nodes to peer with, by their labels (a route reflector's clients, or the
    /// reflectors of a client). Exclusive with `peerAddress`; their AS is their node AS.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub peer_selector: Option<LabelSelector>,

    /// The nodes that run this session; empty or absent: every node.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub node_selector: Option<LabelSelector>,

    /// The peer's AS number: the node's AS makes the session iBGP, another one eBGP.
    #[serde(
        default,
        rename = "peerASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4294967295 && self != 23456")
        .message("peerASNumber must be 1..4294967295 and not AS_TRANS 23456"))]
    pub peer_as_number: Option<u32>,

    /// Accept whatever AS the router's OPEN carries instead of a `peerASNumber` (our OPEN
    /// still carries our AS): the node's AS makes that session iBGP, another one eBGP, decided
    /// by each OPEN. `status` and the BGPNodeStatus show the AS learned.
    #[serde(
        default,
        rename = "anyPeerAS",
        skip_serializing_if = "std::ops::Not::not"
    )]
    pub any_peer_as: bool,

    /// Our AS number on this session instead of the node's.
    #[serde(
        default,
        rename = "localASNumber",
        skip_serializing_if = "Option::is_none"
    )]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4294967295 && self != 23456")
        .message("localASNumber must be 1..4294967295 and not AS_TRANS 23456"))]
    pub local_as_number: Option<u32>,

    /// TCP-MD5 password (RFC 2385) from a Secret in the agent's namespace.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub password: Option<SecretKeyRef>,

    /// Hold time we offer, seconds: 0 (no keepalives) or 3..65535; the keepalive interval is
    /// a third of the negotiated hold time. Absent: the cluster's hold time.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self == 0 || (self >= 3 && self <= 65535)")
        .message("holdTimeSeconds must be 0 or 3..65535 (RFC 4271 §4.2)"))]
    pub hold_time_seconds: Option<u16>,

    /// GTSM (RFC 5082): send with TTL 255 and accept only TTL 255, i.e. only a directly
    /// connected peer.
    #[serde(default)]
    pub gtsm: bool,

    /// Prefixes accepted from the peer; nothing without an entry (RFC 8212's default deny
    /// for eBGP, and podroute's default for iBGP routers too).
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    #[schemars(length(max = 256))]
    pub import: Vec<ImportRule>,

    /// A limit on the prefixes accepted from the peer.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_prefixes: Option<MaxPrefixes>,

    /// BFD (RFC 5880/5881) on this session: present is on (`bfd: {}` gives 300 ms × 3), absent
    /// off. A BFD Down ends the BGP session at once (Cease/BFD Down); changing or removing it
    /// touches no BGP session. On a `peerSelector` BGPPeer it replaces the mesh's.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub bfd: Option<BfdSpec>,

    /// Graceful restart (RFC 4724) on this session; absent: as the mesh (the agent's
    /// `--graceful-restart-time`, on by default). Its capability is in the OPEN, so changing
    /// it restarts this BGPPeer's sessions, and no other.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub graceful_restart: Option<GracefulRestartSpec>,
}

/// Graceful restart on one BGPPeer's sessions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
pub struct GracefulRestartSpec {
    /// Offer the capability (off: the peer drops our routes as soon as the session ends,
    /// and we drop its).
    #[serde(default = "enabled")]
    pub enabled: bool,
    /// The Restart Time we advertise, seconds (1..4095; absent: the mesh's,
    /// `--graceful-restart-time`, or 120 when that is 0).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[x_kube(validation = Rule::new("self >= 1 && self <= 4095")
        .message("restartTimeSeconds must be 1..4095 (RFC 4724's 12 bits)"))]
    pub restart_time_seconds: Option<u16>,
}

fn enabled() -> bool {
    true
}

/// An import prefix-list entry: `prefix` and the prefixes inside it whose length is between
/// `ge` and `le` (both default to the prefix's own length: exactly `prefix`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[x_kube(validation = Rule::new("!has(self.le) || int(self.le) <= (cidr(self.prefix).ip().family() == 4 ? 32 : 128)")
    .message("le must not be longer than the family's 32 or 128 bits"))]
#[x_kube(validation = Rule::new("!has(self.le) || int(self.le) >= cidr(self.prefix).prefixLength()")
    .message("le must be at least the prefix's own length"))]
#[x_kube(validation = Rule::new("!has(self.ge) || int(self.ge) >= cidr(self.prefix).prefixLength()")
    .message("ge must be at least the prefix's own length"))]
#[x_kube(validation = Rule::new("!has(self.ge) || !has(self.le) || self.ge <= self.le")
    .message("ge must not be longer than le"))]
pub struct ImportRule {
    /// A network address in CIDR form, e.g. `10.99.0.0/16`.
    #[schemars(length(max = 49))]
    #[x_kube(validation = Rule::new("isCIDR(self) && cidr(self).masked() == cidr(self)")
        .message("prefix must be a network address in CIDR form, e.g. 10.99.0.0/16"))]
    pub prefix: String,
    /// Shortest length accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ge: Option<u8>,
    /// Longest length accepted.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub le: Option<u8>,
}

/// A prefix limit.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, KubeSchema)]
#[serde(rename_all = "camelCase")]
#[x_kube(validation = Rule::new("!has(self.restartAfterSeconds) || self.action == 'Cease'")
    .message("restartAfterSeconds applies to the Cease action only"))]
pub struct MaxPrefixes {
    /// The most prefixes accepted.
    #[x_kube(validation = Rule::new("self >= 1").message("limit must be at least 1"))]
    pub limit: u32,
    /// What happens past the limit.
    pub action: MaxPrefixAction,
    /// With `Cease`: start the session again after this many seconds (absent: only a change
    /// of the BGPPeer starts it again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub restart_after_seconds: Option<u32>,
}

/// What happens when a peer passes its prefix limit.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub enum MaxPrefixAction {
    /// Keep everything and report it.
    Warn,
    /// Keep the first `limit` prefixes and refuse the rest.
    DropExcess,
    /// End the session (NOTIFICATION Cease, Maximum Number of Prefixes Reached).
    Cease,
}
