//! One peer inside the speaker: its configuration, its session(s), and what the speaker
//! knows about it (graceful restart, End-of-RIB, rejections, prefix limit).

use std::net::IpAddr;
use std::time::Instant;

use ipnetwork::IpNetwork;

use crate::message::{Family, GracefulRestart, NextHop, PathAttributes};
use crate::rib::PeerId;
use crate::session::Session;

use super::graceful::StaleRoutes;
use super::types::{ConnId, PeerConfig};

/// Which of a peer's sessions a connection belongs to.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub(crate) enum Slot {
    /// The session that carries the peer's routes.
    Primary,
    /// A second session on a connection that arrived while the primary one had its own
    /// (RFC 4271 §6.8 collision, or a restarting peer's new connection, RFC 4724 §4.2).
    Colliding,
}

/// A session and the connection it runs on.
#[derive(Debug)]
pub(crate) struct Link {
    pub(crate) session: Session,
    /// The connection (or attempt) the driver holds for it.
    pub(crate) conn: Option<ConnId>,
    /// We opened the connection.
    pub(crate) outgoing: bool,
    /// A NOTIFICATION was sent or received on the current connection: its end is no
    /// restart (RFC 4724 §4.2 keeps routes only when the connection just ends).
    pub(crate) notified: bool,
}

impl Link {
    pub(crate) fn new(session: Session) -> Self {
        Self {
            session,
            conn: None,
            outgoing: false,
            notified: false,
        }
    }
}

/// Why a session is held down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum HeldDown {
    /// Until this time.
    Until(Instant),
    /// Until the configuration changes.
    UntilReconfigured,
    /// Until BFD says the path is up (strict mode: no session without BFD).
    UntilPathUp,
}

/// Everything the speaker keeps per peer.
#[derive(Debug)]
pub(crate) struct Peer {
    pub(crate) config: PeerConfig,
    /// The peer's id in the RIB (its Adj-RIB-In).
    pub(crate) rib_id: PeerId,
    pub(crate) primary: Link,
    pub(crate) colliding: Option<Link>,
    /// The peer's graceful restart capability on the current or last session (only when
    /// we offer graceful restart too).
    pub(crate) peer_graceful_restart: Option<GracefulRestart>,
    /// Routes kept while the peer restarts.
    pub(crate) stale: StaleRoutes,
    /// Families the peer sent End-of-RIB for on the current session.
    pub(crate) end_of_rib: Vec<Family>,
    /// End-of-RIB came for every negotiated family at least once.
    pub(crate) synced: bool,
    /// Routes refused since the speaker started (import policy and prefix limit).
    pub(crate) rejected: u64,
    /// Of those, refused because of the prefix limit ([`super::MaxPrefixAction::DropExcess`]).
    pub(crate) rejected_max_prefix: u64,
    /// Refusals reported one by one on the current session.
    pub(crate) rejections_reported: usize,
    /// The prefix limit was reported on the current session.
    pub(crate) max_prefix_reported: bool,
    /// A route the peer sent was refused on the current session since we last asked it for
    /// a ROUTE-REFRESH. Only then can a changed import policy or a looser prefix limit accept
    /// something the peer sent (what it accepted is held and judged again locally), so only
    /// then is a refresh sent.
    pub(crate) refused_since_refresh: bool,
    pub(crate) held_down: Option<HeldDown>,
    /// What BFD last said of the path to the peer (`None`: nothing yet, or BFD off).
    pub(crate) path_up: Option<bool>,
    /// Times a session to the peer reached Established.
    pub(crate) established_count: u64,
}

impl Peer {
    pub(crate) fn new(config: PeerConfig, rib_id: PeerId, session: Session) -> Self {
        Self {
            config,
            rib_id,
            primary: Link::new(session),
            colliding: None,
            peer_graceful_restart: None,
            stale: StaleRoutes::default(),
            end_of_rib: Vec::new(),
            synced: false,
            rejected: 0,
            rejected_max_prefix: 0,
            rejections_reported: 0,
            max_prefix_reported: false,
            refused_since_refresh: false,
            held_down: None,
            path_up: None,
            established_count: 0,
        }
    }

    pub(crate) fn link(&mut self, slot: Slot) -> Option<&mut Link> {
        match slot {
            Slot::Primary => Some(&mut self.primary),
            Slot::Colliding => self.colliding.as_mut(),
        }
    }

    pub(crate) fn address(&self) -> IpAddr {
        self.config.address
    }

    /// The route's next hop as an address; a missing or unspecified one means the peer
    /// itself (only for a prefix of the peer address's family).
    pub(crate) fn next_hop_of(&self, prefix: &IpNetwork, attrs: &PathAttributes) -> Option<IpAddr> {
        let given = attrs.next_hop.map(|n| n.addr());
        let next_hop = match given {
            Some(a) if !a.is_unspecified() => a,
            _ => self.address(),
        };
        (next_hop.is_ipv4() == prefix.is_ipv4()).then_some(next_hop)
    }
}

/// `attrs` with `next_hop` as NEXT_HOP (for routes whose next hop was filled in).
pub(crate) fn with_next_hop(attrs: &PathAttributes, next_hop: IpAddr) -> PathAttributes {
    let mut a = attrs.clone();
    a.next_hop = Some(match next_hop {
        IpAddr::V4(v4) => NextHop::V4(v4),
        IpAddr::V6(global) => NextHop::V6 {
            global,
            link_local: None,
        },
    });
    a
}
