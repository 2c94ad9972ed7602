//! The speaker's vocabulary: its configuration, what it asks of the driver, what it reports.

use std::net::IpAddr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnetwork::IpNetwork;

use crate::message::{AttributeFault, Family, Notification};
use crate::session::{SessionConfig, State};

use super::policy::Policy;

/// One TCP connection (or connection attempt) the driver holds for the speaker. Ids are
/// never reused within one speaker.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct ConnId(pub u64);

impl std::fmt::Display for ConnId {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "conn#{}", self.0)
    }
}

/// Settings of the whole speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerConfig {
    /// How long after start the speaker waits for End-of-RIB from every peer marked
    /// [`PeerConfig::wait_for_end_of_rib`] before it reports the initial sync done anyway
    /// (the bounded selection deferral of RFC 4724 §4.1).
    pub selection_deferral: Duration,
    /// This process restarted while the forwarding state it programmed stayed in place:
    /// OPENs sent until the initial sync is done carry the Restart State bit (RFC 4724 §3),
    /// so peers send their routes without waiting for ours. (Every family is offered with
    /// its Forwarding State bit set in any case: see the `graceful` module.)
    pub restarted: bool,
    /// The CLUSTER_ID this speaker uses as a route reflector (RFC 4456 §7): prepended to
    /// the CLUSTER_LIST of every route it reflects, and routes carrying it are dropped as
    /// looped. `None`: each session's BGP identifier (the RFC's default). Reflectors that
    /// serve the same clients usually share one.
    pub cluster_id: Option<std::net::Ipv4Addr>,
    /// The most next hops a Loc-RIB change carries (ECMP, see the `multipath` module):
    /// 1 installs the best path only.
    pub max_paths: usize,
}

impl Default for SpeakerConfig {
    fn default() -> Self {
        Self {
            selection_deferral: Duration::from_secs(60),
            restarted: false,
            cluster_id: None,
            max_paths: 1,
        }
    }
}

/// What to do when a peer sends more prefixes than allowed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum MaxPrefixAction {
    /// Keep everything; report once per session that the limit was passed.
    Warn,
    /// Keep the first `limit` prefixes and refuse new ones beyond it (counted as rejected).
    DropExcess,
    /// NOTIFICATION Cease/Maximum Number of Prefixes Reached (RFC 4486) and the session
    /// stays down; with `restart_after`, it is started again after that time (like
    /// `maximum-prefix … restart`), without it only a configuration change restarts it.
    Cease {
        /// When to start the session again.
        restart_after: Option<Duration>,
    },
}

/// A per-peer prefix limit (counted over the routes accepted by import policy).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct MaxPrefix {
    /// The most prefixes allowed.
    pub limit: usize,
    /// What happens past it.
    pub action: MaxPrefixAction,
}

/// Graceful restart settings of a peer (RFC 4724).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct GracefulRestartConfig {
    /// The Restart Time we advertise: how long the peer should keep our routes while we
    /// restart (at most 4095 s).
    pub restart_time: Duration,
    /// The longest we keep a restarting peer's routes as stale: until it is back and sent
    /// End-of-RIB, but never longer than this, nor than the restart time it advertised
    /// for the time it is away.
    pub stale_routes_time: Duration,
}

/// Everything the speaker needs to run one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerConfig {
    /// The peer's address (its key: one session per remote address).
    pub address: IpAddr,
    /// The session: AS numbers, our identifier, hold time, families, passive, ...
    pub session: SessionConfig,
    /// Which received routes to accept.
    pub import: Policy,
    /// Which originated routes to advertise.
    pub export: Policy,
    /// A prefix limit, if any.
    pub max_prefixes: Option<MaxPrefix>,
    /// Graceful restart, both roles; `None` offers no capability and drops a peer's
    /// routes as soon as its session ends.
    pub graceful_restart: Option<GracefulRestartConfig>,
    /// The initial sync waits for this peer's End-of-RIB (mesh peers; not routers, which
    /// send End-of-RIB only with graceful restart and do not hold the node back).
    pub wait_for_end_of_rib: bool,
    /// The peer is a route-reflector client of ours (RFC 4456 §6, iBGP only): its best
    /// routes are reflected to every other iBGP peer, and other iBGP peers' best routes to
    /// it. With no client the speaker reflects nothing (plain iBGP: full mesh).
    pub route_reflector_client: bool,
    /// Reflected routes may go to this peer (node-to-node peers). False for routers: they
    /// get only our own routes under export policy, never what other peers sent us, also
    /// when they are iBGP peers of a route reflector.
    pub takes_reflected: bool,
    /// How BFD (reported with [`crate::speaker::Speaker::path_changed`]) governs the
    /// session.
    pub bfd: BfdMode,
}

/// What BFD says of the forwarding path to a peer, for
/// [`crate::speaker::Speaker::path_changed`] (a peer's AdminDown, its planned stop, is no
/// news for BGP and is not reported).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum PathState {
    /// BFD is Up.
    Up,
    /// BFD went Down: the Detection Time expired, or the peer's BFD said Down.
    Down {
        /// The peer's C bit (RFC 5880 §4.1): its BFD does not share fate with its control
        /// plane, so this Down is a forwarding failure even during its graceful restart.
        control_plane_independent: bool,
    },
}

/// How BFD governs a peer's session (RFC 5882 §4.2 for BGP).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum BfdMode {
    /// No BFD: only the hold timer finds a dead peer.
    #[default]
    Off,
    /// BFD Down ends the session at once (Cease/BFD Down, RFC 9384) and drops its
    /// routes; the session starts again without waiting for BFD.
    On,
    /// As `On`, and the session does not start (nor accept a connection) until BFD is
    /// Up: BGP never comes up over a path BFD cannot see (the strict mode of the IETF
    /// IDR BGP–BFD strict-mode draft).
    Strict,
}

/// The next hops to install for a prefix: the best path's, plus equal-cost ones where
/// multipath is configured. Empty: the prefix is no longer reachable.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum NextHops {
    /// Unreachable: remove the route.
    None,
    /// One next hop (the common case, no allocation).
    One(IpAddr),
    /// Several equal-cost next hops, sorted.
    Many(Arc<[IpAddr]>),
}

impl NextHops {
    /// The next hops as a slice.
    pub fn as_slice(&self) -> &[IpAddr] {
        match self {
            Self::None => &[],
            Self::One(a) => std::slice::from_ref(a),
            Self::Many(v) => v,
        }
    }

    /// The first next hop, if any.
    pub fn first(&self) -> Option<IpAddr> {
        self.as_slice().first().copied()
    }
}

/// A Loc-RIB change: what to program into the forwarding table for one prefix.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct RouteChange {
    /// The prefix.
    pub prefix: IpNetwork,
    /// Where it goes now.
    pub next_hops: NextHops,
}

/// What the speaker asks the driver to do, or tells it (logs, metrics).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SpeakerAction {
    /// Open a TCP connection to `peer` (from the node's address, with the peer's TCP-MD5
    /// key and TTL settings); then [`super::Speaker::connected`] or
    /// [`super::Speaker::closed`] with `conn`.
    Connect {
        /// The peer.
        peer: IpAddr,
        /// The id the attempt goes by.
        conn: ConnId,
    },
    /// Write these bytes to the connection, in order.
    Send {
        /// The connection.
        conn: ConnId,
        /// The bytes.
        bytes: Bytes,
    },
    /// Close the connection after writing what was sent before (or abandon the attempt).
    Close {
        /// The connection.
        conn: ConnId,
    },
    /// A peer's session changed state.
    PeerState {
        /// The peer.
        peer: IpAddr,
        /// Old state.
        from: State,
        /// New state.
        to: State,
    },
    /// A peer finished its initial announcement for a family (RFC 4724 §2).
    EndOfRib {
        /// The peer.
        peer: IpAddr,
        /// The family.
        family: Family,
    },
    /// We sent (`sent`) or received a NOTIFICATION.
    Notification {
        /// The peer.
        peer: IpAddr,
        /// True if we sent it.
        sent: bool,
        /// The message.
        notification: Notification,
    },
    /// An UPDATE error handled without a reset (RFC 7606).
    UpdateFault {
        /// The peer.
        peer: IpAddr,
        /// What was wrong and what was done.
        fault: AttributeFault,
    },
    /// Import policy refused a route. Reported for the first few of each session only;
    /// all are counted in [`PeerStatus::rejected`].
    RouteRejected {
        /// The peer.
        peer: IpAddr,
        /// The prefix.
        prefix: IpNetwork,
        /// Its next hop.
        next_hop: IpAddr,
    },
    /// More rejections followed that are counted but not reported one by one.
    RejectionsNotReported {
        /// The peer.
        peer: IpAddr,
    },
    /// A peer passed its prefix limit.
    MaxPrefixExceeded {
        /// The peer.
        peer: IpAddr,
        /// The limit.
        limit: usize,
        /// What was done.
        action: MaxPrefixAction,
    },
    /// A restarting peer's routes are kept as stale (RFC 4724 §4.2).
    StaleKept {
        /// The peer.
        peer: IpAddr,
        /// How many.
        routes: usize,
    },
    /// Stale routes of a peer went: not refreshed before its End-of-RIB, or its time ran
    /// out.
    StaleSwept {
        /// The peer.
        peer: IpAddr,
        /// How many.
        routes: usize,
        /// True if the stale timer ran out (the peer did not finish in time).
        expired: bool,
    },
    /// A further connection from a peer was refused (see [`Refusal`]).
    ConnectionRefused {
        /// The peer.
        peer: IpAddr,
        /// Why.
        reason: Refusal,
    },
    /// The initial sync is done: End-of-RIB came from every peer that is waited for, or the
    /// selection deferral ran out. Reported once.
    InitialSyncDone {
        /// True if the deferral timer ended it.
        deferral_expired: bool,
    },
}

/// Why an incoming connection was not taken.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Refusal {
    /// The address is no configured peer.
    UnknownPeer,
    /// The session is Established, and the peer does not do graceful restart (RFC 4271
    /// §6.8: the established connection wins).
    Established,
    /// The session is held down (after Maximum Number of Prefixes Reached).
    HeldDown,
}

impl Refusal {
    /// Low-cardinality label for metrics.
    pub fn metric_label(self) -> &'static str {
        match self {
            Self::UnknownPeer => "unknown_peer",
            Self::Established => "established",
            Self::HeldDown => "held_down",
        }
    }
}

/// One peer as status pages and metrics show it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// The peer's address.
    pub address: IpAddr,
    /// Its session state.
    pub state: State,
    /// Its AS: the configured one, or with any peer AS the one its OPEN carried on the
    /// current session (`None` until one is accepted).
    pub peer_as: Option<u32>,
    /// It sent End-of-RIB for every negotiated family at least once since the speaker
    /// started.
    pub synced: bool,
    /// Routes accepted and held (its Adj-RIB-In after policy), stale ones included.
    pub accepted: usize,
    /// [`PeerStatus::accepted`] by family: IPv4 unicast, IPv6 unicast.
    pub accepted_by_family: (usize, usize),
    /// Routes advertised to the peer on the current session (its Adj-RIB-Out): IPv4,
    /// IPv6.
    pub advertised_by_family: (usize, usize),
    /// Routes refused by import policy or the prefix limit since the speaker started.
    pub rejected: u64,
    /// Of [`PeerStatus::rejected`], those refused by the prefix limit.
    pub rejected_max_prefix: u64,
    /// Routes held as stale while the peer restarts.
    pub stale: usize,
    /// Graceful restart was negotiated on the current or last session.
    pub graceful_restart: bool,
    /// Times the session reached Established.
    pub established_count: u64,
    /// Strict mode holds the session until BFD is Up, and it is not.
    pub waiting_for_bfd: bool,
}
