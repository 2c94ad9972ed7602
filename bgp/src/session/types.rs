//! The session's vocabulary: states, inputs, outputs, configuration and what the OPEN
//! exchange negotiated.

use std::net::Ipv4Addr;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use ipnetwork::IpNetwork;

use crate::message::{
    AttributeFault, CodecContext, Family, GracefulRestart, Notification, Open, PathAttributes,
};

/// The six session states (RFC 4271 §8.2.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum State {
    /// Refusing connections; waiting for Start (or the automatic restart).
    Idle,
    /// Waiting for our outgoing TCP connection.
    Connect,
    /// Waiting for an incoming TCP connection (or the ConnectRetry timer).
    Active,
    /// OPEN sent, waiting for the peer's.
    OpenSent,
    /// OPENs exchanged, waiting for the peer's KEEPALIVE.
    OpenConfirm,
    /// Exchanging UPDATEs.
    Established,
}

impl std::fmt::Display for State {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        std::fmt::Debug::fmt(self, f)
    }
}

/// Administrative inputs (RFC 4271 §8.1.2).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum AdminEvent {
    /// ManualStart (Event 1), or ManualStart_with_PassiveTcpEstablishment (Event 4) when
    /// the config is passive. Also enables automatic restart after errors.
    Start,
    /// ManualStop (Event 2): NOTIFICATION Cease/Administrative Shutdown, then Idle with
    /// no automatic restart.
    Stop,
    /// Administrative reset: NOTIFICATION Cease/Administrative Reset, then restart.
    Reset,
}

/// What the session asks of the driver or tells it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Action {
    /// Open a TCP connection to the peer, then call [`Session::handle_connected`] (or
    /// [`Session::handle_closed`] if it fails).
    Connect,
    /// Write these bytes to the connection.
    Send(Bytes),
    /// Close the connection (after writing what was sent before).
    Disconnect,
    /// The state changed. Leaving Established means the peer's routes are gone.
    StateChanged {
        /// Old state.
        from: State,
        /// New state.
        to: State,
    },
    /// Routes from one received UPDATE for one family.
    Routes(ReceivedRoutes),
    /// The peer finished its initial announcement for a family (RFC 4724 §2).
    EndOfRib(Family),
    /// We sent this NOTIFICATION (the session is going down).
    NotificationSent(Notification),
    /// The peer sent this NOTIFICATION (the session is going down).
    NotificationReceived(Notification),
    /// An UPDATE error handled without a reset (RFC 7606), for logs.
    UpdateFault(AttributeFault),
}

/// Routes learned from one UPDATE for one family.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReceivedRoutes {
    /// The family of every prefix here.
    pub family: Family,
    /// Prefixes announced, all with `attributes`.
    pub announced: Vec<IpNetwork>,
    /// The announced routes' attributes; `next_hop` is set for this family (the
    /// MP_REACH_NLRI next hop for IPv6). `None` when nothing is announced.
    pub attributes: Option<Arc<PathAttributes>>,
    /// Prefixes withdrawn (including announcements RFC 7606 treats as withdrawn, and
    /// routes dropped by loop detection).
    pub withdrawn: Vec<IpNetwork>,
}

/// Configuration of one session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionConfig {
    /// Our AS.
    pub local_as: u32,
    /// Our BGP identifier.
    pub local_id: Ipv4Addr,
    /// The AS the peer must announce (2/2 otherwise), or any.
    pub peer_as: PeerAs,
    /// Hold time we propose, seconds (0 or >= 3; default 90).
    pub hold_time: u16,
    /// ConnectRetryTime (default 30 s; RFC 4271 suggests 120): the wait after a failed
    /// connection attempt. It doubles with each further failure up to `connect_retry_max`
    /// and is back to this value once a session reaches Established.
    pub connect_retry: Duration,
    /// Ceiling of the doubling ConnectRetryTime (default: `connect_retry`, no doubling).
    pub connect_retry_max: Duration,
    /// The wait after a connection attempt the peer refused (a TCP reset: its host is up
    /// and nothing listens yet, as while its agent starts), for the first
    /// [`REFUSED_RETRIES`](crate::session::REFUSED_RETRIES) refusals in a row; it does not
    /// double. After those, refusals back off like any failure. Default: `connect_retry`.
    pub refused_retry: Duration,
    /// How long to stay Idle after an error before restarting (default 5 s); doubled
    /// after each further failure short of Established, up to 120 s.
    pub idle_hold: Duration,
    /// Wait for the peer to connect (RFC 4271 §8.1.1 PassiveTcpEstablishment).
    pub passive: bool,
    /// With `passive`: connect out after all when no connection came in for this long
    /// since the session started, and from then on as an active session would, until the
    /// next start. A mesh lets one side of each pair connect; this keeps the other from
    /// waiting out that side's back-off after a long outage. `None`: never connect out.
    pub passive_connect_after: Option<Duration>,
    /// Families we offer (default IPv4 and IPv6 unicast).
    pub families: Vec<Family>,
    /// Offer extended messages (RFC 8654).
    pub extended_messages: bool,
    /// Graceful restart capability to offer (RFC 4724), if any.
    pub graceful_restart: Option<GracefulRestart>,
}

impl SessionConfig {
    /// A config with the defaults above.
    pub fn new(local_as: u32, local_id: Ipv4Addr, peer_as: impl Into<PeerAs>) -> Self {
        Self {
            local_as,
            local_id,
            peer_as: peer_as.into(),
            hold_time: 90,
            connect_retry: Duration::from_secs(30),
            connect_retry_max: Duration::from_secs(30),
            refused_retry: Duration::from_secs(30),
            idle_hold: Duration::from_secs(5),
            passive: false,
            passive_connect_after: None,
            families: vec![Family::IPV4_UNICAST, Family::IPV6_UNICAST],
            extended_messages: true,
            graceful_restart: None,
        }
    }

    /// True when the peer is configured in our AS (iBGP). A peer of any AS is iBGP or eBGP
    /// by its OPEN: see [`crate::session::Session::is_ibgp`].
    pub fn is_ibgp(&self) -> bool {
        self.peer_as == PeerAs::Is(self.local_as)
    }
}

/// The AS a peer must have.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum PeerAs {
    /// This AS: an OPEN with another is refused (NOTIFICATION OPEN Message Error/Bad Peer AS).
    Is(u32),
    /// Whatever AS the peer's OPEN carries (our OPEN still carries ours): iBGP when it is
    /// ours, eBGP otherwise, decided anew by each OPEN.
    Any,
}

impl PeerAs {
    /// The configured AS, `None` for [`PeerAs::Any`].
    pub fn fixed(self) -> Option<u32> {
        match self {
            Self::Is(asn) => Some(asn),
            Self::Any => None,
        }
    }

    /// True if an OPEN carrying `asn` is acceptable.
    pub fn accepts(self, asn: u32) -> bool {
        self.fixed().is_none_or(|fixed| fixed == asn)
    }
}

impl From<u32> for PeerAs {
    fn from(asn: u32) -> Self {
        Self::Is(asn)
    }
}

impl std::fmt::Display for PeerAs {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            Self::Is(asn) => write!(f, "{asn}"),
            Self::Any => f.write_str("any"),
        }
    }
}

/// What the OPEN exchange settled (RFC 4271 §4.2, RFC 5492).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Negotiated {
    /// The peer's OPEN.
    pub remote_open: Open,
    /// The peer's AS.
    pub remote_as: u32,
    /// The peer's BGP identifier.
    pub remote_id: Ipv4Addr,
    /// Negotiated hold time in seconds (0: no keepalives, no hold timer).
    pub hold_time: u16,
    /// Families both sides offered.
    pub families: Vec<Family>,
    /// Both support route refresh.
    pub route_refresh: bool,
    /// Codec settings (4-octet AS, extended messages).
    pub codec: CodecContext,
}

impl Negotiated {
    /// The peer's graceful restart capability (RFC 4724 §3), if it sent one.
    pub fn peer_graceful_restart(&self) -> Option<&GracefulRestart> {
        self.remote_open.capabilities.iter().find_map(|c| match c {
            crate::message::Capability::GracefulRestart(gr) => Some(gr),
            _ => None,
        })
    }

    /// KEEPALIVE interval: a third of the hold time (RFC 4271 §10), `None` when 0.
    pub fn keepalive_interval(&self) -> Option<Duration> {
        (self.hold_time > 0).then(|| Duration::from_secs(u64::from(self.hold_time / 3).max(1)))
    }
}

impl ReceivedRoutes {
    pub(crate) fn empty(family: Family) -> Self {
        Self {
            family,
            announced: Vec::new(),
            attributes: None,
            withdrawn: Vec::new(),
        }
    }
}
