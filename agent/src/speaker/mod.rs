//! The BGP speaker: the listener, one task per peer, and the routes they bring in.
//!
//! Input is data: the [`PeerSet`] computed from the cluster view (later also from `BGPPeer`
//! resources), the view (for import policy) and the routes to advertise. The speaker applies
//! [`PeerChanges`] to the running tasks, so only the peers that changed are touched, and
//! publishes [`BgpOutput`]: routes accepted by import policy and whether the initial sync is
//! done (End-of-RIB from every mesh peer for every family its session negotiated).

pub mod bgp_session;
pub mod listener;
pub mod peer;
pub mod rib;
pub mod session;
pub mod sync;

use std::collections::{BTreeSet, HashMap};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::Arc;

use ipnetwork::IpNetwork;
use tokio::sync::{mpsc, watch};

use crate::context::Context;
use crate::peers::{PeerChanges, PeerKind, PeerSet};
use crate::routes::desired::LearnedRoutes;
use crate::view::ClusterView;
use peer::{PeerEvent, PeerTask};
use rib::{ReceivedRoutes, import};
use session::{LocalSettings, SessionFactory};
use sync::SyncTracker;

/// What the speaker should be doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerInput {
    /// The sessions to run.
    pub peers: PeerSet,
    /// The cluster view (import policy, own addresses).
    pub view: Arc<ClusterView>,
    /// Routes to advertise to every peer: own pod CIDRs with the node IP as next hop.
    pub advertised: Vec<(IpNetwork, IpAddr)>,
}

/// What the speaker learned.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpOutput {
    /// Best routes from mesh peers accepted by import policy.
    pub learned: LearnedRoutes,
    /// Routes from static external peers that their import lists allow.
    pub external: LearnedRoutes,
    /// Every current mesh peer has sent End-of-RIB for every negotiated family since start
    /// (true with none).
    pub initial_sync_done: bool,
    /// Peers with an Established session.
    pub established: usize,
    /// Received routes rejected by import policy.
    pub rejected: usize,
    /// Every configured peer and how its session is.
    pub peers: Vec<PeerStatus>,
}

/// One peer as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Peer address.
    pub address: IpAddr,
    /// Where it comes from (`mesh:<node>` or `static`).
    pub source: String,
    /// The session is Established.
    pub established: bool,
    /// It sent End-of-RIB for every negotiated family since the agent started.
    pub synced: bool,
}

/// The speaker failed to start.
#[derive(Debug, thiserror::Error)]
pub enum SpeakerError {
    /// The listener could not bind.
    #[error("binding the BGP listener to {address}: {source}")]
    Bind {
        /// The address.
        address: SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
    /// The node's own IP changed: the listener and every session's local address and router
    /// ID came from the old one. The agent exits so that it is restarted on the new address;
    /// kernel routes stay, and peers keep this node's routes while it restarts.
    #[error(
        "the node's IP changed from {from} to {to}; exiting so that the agent restarts on the new \
         address (kernel routes stay in place)"
    )]
    NodeIpChanged {
        /// The IPs the speaker started with.
        from: String,
        /// The IPs now.
        to: String,
    },
}

impl SpeakerError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Bind { .. } => "bgp_bind",
            Self::NodeIpChanged { .. } => "node_ip_changed",
        }
    }
}

/// Routes a static peer's import list refuses are logged one by one up to this many per
/// session, then only counted (a router may send a full table).
const REFUSALS_LOGGED: usize = 10;

/// How many refusals were logged per static peer in its current session.
#[derive(Debug, Default)]
struct RefusalLog {
    logged: HashMap<IpAddr, usize>,
}

impl RefusalLog {
    fn note(&mut self, peer: IpAddr, refused: &[(IpNetwork, IpAddr)]) {
        let logged = self.logged.entry(peer).or_default();
        for (prefix, next_hop) in refused {
            if *logged < REFUSALS_LOGGED {
                tracing::warn!(%peer, %prefix, %next_hop, "route rejected: not in the peer's import list");
            } else if *logged == REFUSALS_LOGGED {
                tracing::warn!(%peer, "more routes rejected by the import list: counted in podroute_bgp_rejected_routes, not logged");
            } else {
                break;
            }
            *logged += 1;
        }
    }

    fn reset(&mut self, peer: IpAddr) {
        self.logged.remove(&peer);
    }
}

/// The node IPs as the speaker uses them, for logs: `198.18.0.1, fd00::1` or `none`.
fn describe_ips(ips: &crate::view::NodeIps) -> String {
    let all: Vec<String> = ips.all().map(|ip| ip.to_string()).collect();
    if all.is_empty() {
        "none".to_owned()
    } else {
        all.join(", ")
    }
}

/// Runs the speaker until `input` is closed.
pub async fn run_speaker(
    ctx: Arc<Context>,
    factory: SessionFactory,
    mut input: watch::Receiver<Option<SpeakerInput>>,
    output: watch::Sender<BgpOutput>,
) -> Result<(), SpeakerError> {
    // Wait for the first view: the listener binds to the node IP.
    let first = loop {
        if let Some(first) = input.borrow_and_update().clone() {
            break first;
        }
        if input.changed().await.is_err() {
            return Ok(());
        }
    };
    let own_ip = ctx
        .config
        .listen_address
        .or(first.view.own.ips.session_address())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let address = SocketAddr::new(own_ip, ctx.config.bgp_port);
    let mut addresses = vec![address];
    // Without an explicit listen address, also accept on the node's IPv6 address, for static
    // IPv6 peers that connect to us (the mesh runs over one family).
    if ctx.config.listen_address.is_none()
        && let Some(v6) = first.view.own.ips.v6
        && own_ip.is_ipv4()
    {
        addresses.push(SocketAddr::new(IpAddr::V6(v6), ctx.config.bgp_port));
    }
    let routes: listener::PeerRoutes = Arc::default();
    let mut listeners = Vec::new();
    for (index, address) in addresses.into_iter().enumerate() {
        let listener = match listener::bind(address) {
            Ok(listener) => Arc::new(listener),
            Err(source) if index == 0 => return Err(SpeakerError::Bind { address, source }),
            // The extra IPv6 listener is a convenience: peers we connect to work without it.
            Err(error) => {
                tracing::warn!(%address, %error, "binding the IPv6 BGP listener failed; IPv6 static peers must accept our connections");
                continue;
            }
        };
        tracing::info!(%address, "BGP listener bound");
        let metrics = ctx.metrics.clone();
        tokio::spawn(listener::accept_loop(
            listener.clone(),
            routes.clone(),
            move || {
                metrics.bgp_rejected_connections.inc();
            },
        ));
        listeners.push((address.is_ipv6(), listener));
    }
    // The TCP-MD5 key of a peer goes on the listener of its family.
    let listener_for = |peer: IpAddr| {
        listeners
            .iter()
            .find(|(v6, _)| *v6 == peer.is_ipv6())
            .map(|(_, l)| l.clone())
    };

    let local = LocalSettings {
        as_number: ctx.config.as_number,
        router_id: router_id(&first.view),
        address: first.view.own.ips.session_address().unwrap_or(own_ip),
        hold_time: ctx.config.hold_time,
    };
    let (advertised_tx, advertised_rx) = watch::channel(Vec::new());
    let (events_tx, mut events_rx) = mpsc::unbounded_channel();
    let mut tasks: HashMap<IpAddr, PeerTask> = HashMap::new();
    let mut current = SpeakerInput {
        peers: PeerSet::new(),
        ..first.clone()
    };
    let mut received = ReceivedRoutes::default();
    let mut established = BTreeSet::new();
    let mut end_of_rib = SyncTracker::default();
    let mut logged_rejections = BTreeSet::new();
    let mut refusal_log = RefusalLog::default();
    input.mark_changed();

    loop {
        tokio::select! {
            changed = input.changed() => {
                if changed.is_err() {
                    break;
                }
                let Some(next) = input.borrow_and_update().clone() else { continue };
                // The listeners, local addresses and router ID all follow the first view's IPs
                // (unless --listen-address pins the listener; the rest still follows them).
                if next.view.own.ips != first.view.own.ips {
                    // Like a stop: no Cease, the connections just close with the process, so
                    // peers treat it as a restart and keep our routes meanwhile.
                    return Err(SpeakerError::NodeIpChanged {
                        from: describe_ips(&first.view.own.ips),
                        to: describe_ips(&next.view.own.ips),
                    });
                }
                let changes = PeerChanges::between(&current.peers, &next.peers);
                for address in changes.removed.iter().chain(changes.changed.iter().map(|p| &p.address)) {
                    if let Some(task) = tasks.remove(address) {
                        tracing::info!(peer = %address, "stopping session");
                        if let Ok(mut map) = routes.write() {
                            map.remove(address);
                        }
                        task.stop().await;
                        received.peer_removed(*address);
                        refusal_log.reset(*address);
                        established.remove(address);
                        end_of_rib.remove(*address);
                        if let Some(listener) = listener_for(*address) {
                            let _ = listener::set_peer_md5(&listener, *address, None);
                        }
                    }
                }
                for spec in changes.added.iter().chain(changes.changed.iter()) {
                    if spec.md5_password.is_some()
                        && let Some(listener) = listener_for(spec.address)
                        && let Err(error) = listener::set_peer_md5(&listener, spec.address, spec.md5_password.as_deref())
                    {
                        tracing::warn!(peer = %spec.address, %error, "setting the TCP-MD5 key failed");
                    }
                    tracing::info!(peer = %spec.address, kind = ?spec.kind, "starting session");
                    let task = PeerTask::spawn(
                        spec.clone(),
                        local_for(spec.address, local, &next.view),
                        ctx.config.bgp_port,
                        factory.clone(),
                        advertised_rx.clone(),
                        events_tx.clone(),
                    );
                    if let Ok(mut map) = routes.write() {
                        map.insert(spec.address, task.incoming.clone());
                    }
                    tasks.insert(spec.address, task);
                }
                advertised_tx.send_if_modified(|current| {
                    let changed = *current != next.advertised;
                    if changed {
                        current.clone_from(&next.advertised);
                    }
                    changed
                });
                current = next;
            }
            Some((peer, event)) = events_rx.recv() => match event {
                PeerEvent::Up { ipv4, ipv6 } => {
                    established.insert(peer);
                    end_of_rib.established(peer, ipv4, ipv6);
                }
                PeerEvent::ConnectionRejected => ctx.metrics.bgp_rejected_connections.inc(),
                PeerEvent::Update { announced, withdrawn } => match current.peers.get(&peer).map(|spec| &spec.kind) {
                    Some(PeerKind::Static { import: rules }) => {
                        let refused = received.update_static(peer, &announced, &withdrawn, rules);
                        refusal_log.note(peer, &refused);
                    }
                    _ => received.update(peer, &announced, &withdrawn),
                },
                PeerEvent::EndOfRib(ipv6) => {
                    end_of_rib.end_of_rib(peer, ipv6);
                    received.end_of_rib(peer, ipv6);
                }
                PeerEvent::Down => {
                    established.remove(&peer);
                    refusal_log.reset(peer);
                    // Kept while a mesh peer restarts; an external router's routes go at once
                    // (nothing says it will come back soon, and traffic has other paths).
                    let is_static = current.peers.get(&peer).is_some_and(|spec| matches!(spec.kind, PeerKind::Static { .. }));
                    let keep = if is_static { std::time::Duration::ZERO } else { ctx.config.stale_routes_time };
                    let deadline = (!keep.is_zero()).then(|| std::time::Instant::now() + keep);
                    received.peer_down(peer, deadline);
                }
            },
            _ = sleep_until_std(received.next_deadline()) => {
                if received.expire(std::time::Instant::now()) {
                    tracing::info!("stale routes of a peer that did not come back were dropped");
                }
            }
        }
        let imported = import(&received, &current.peers, &current.view);
        // Log each rejected mesh route once, when it first appears (static peers' refusals
        // are logged on receipt, see `RefusalLog`).
        let now_rejected: BTreeSet<_> = imported.rejected.iter().copied().collect();
        for (peer, prefix, next_hop) in now_rejected.difference(&logged_rejections) {
            tracing::warn!(%peer, %prefix, %next_hop, "route rejected: the peer's Node does not own this pod CIDR with this next hop");
        }
        logged_rejections = now_rejected;
        let out = BgpOutput {
            // Only mesh peers count: routers send End-of-RIB only with graceful restart
            // negotiated (RFC 4724 §2), and the node's pods need the mesh, not the router.
            initial_sync_done: current
                .peers
                .values()
                .filter(|spec| matches!(spec.kind, PeerKind::Mesh { .. }))
                .all(|spec| end_of_rib.synced(spec.address)),
            established: established.len(),
            rejected: imported.rejected.len() + received.refused_count(),
            learned: imported.learned,
            external: imported.external,
            peers: current
                .peers
                .values()
                .map(|spec| PeerStatus {
                    address: spec.address,
                    source: spec.kind.label(),
                    established: established.contains(&spec.address),
                    synced: end_of_rib.synced(spec.address),
                })
                .collect(),
        };
        ctx.metrics
            .bgp_sessions
            .with_label_values(&["established"])
            .set(out.established as i64);
        ctx.metrics.bgp_rejected_routes.set(out.rejected as i64);
        output.send_if_modified(|current| {
            let changed = *current != out;
            if changed {
                *current = out;
            }
            changed
        });
    }
    for (_, task) in tasks.drain() {
        task.stop().await;
    }
    Ok(())
}

/// Our end of a session to `peer`: the node IP of the peer's family (a static IPv6 peer is
/// reached from the node's IPv6 address even when the mesh runs over IPv4).
fn local_for(peer: IpAddr, local: LocalSettings, view: &ClusterView) -> LocalSettings {
    let address = match peer {
        IpAddr::V4(_) => view.own.ips.v4.map(IpAddr::V4),
        IpAddr::V6(_) => view.own.ips.v6.map(IpAddr::V6),
    };
    LocalSettings {
        address: address.unwrap_or(local.address),
        ..local
    }
}

async fn sleep_until_std(deadline: Option<std::time::Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline.into()).await,
        None => std::future::pending().await,
    }
}

/// The BGP identifier: the node's IPv4 address, or for IPv6-only nodes a stable value from
/// the IPv6 address (RFC 6286 allows any non-zero AS-wide unique 32-bit value).
fn router_id(view: &ClusterView) -> Ipv4Addr {
    router_id_from(view.own.ips.v4, view.own.ips.v6)
}

/// [`router_id`] from the node's addresses. For IPv6 the whole address is hashed (FNV-1a,
/// fixed so the identifier stays the same across agent versions): the last 32 bits alone
/// would give fd00:1::5 and fd00:2::5 the same identifier, and the peers would reject each
/// other's OPEN (RFC 4271 §6.2, Bad BGP Identifier for iBGP).
fn router_id_from(v4: Option<Ipv4Addr>, v6: Option<std::net::Ipv6Addr>) -> Ipv4Addr {
    if let Some(v4) = v4 {
        return v4;
    }
    const FNV_OFFSET: u32 = 0x811c_9dc5;
    const FNV_PRIME: u32 = 0x0100_0193;
    let octets = v6.map(|v6| v6.octets()).unwrap_or_default();
    let hash = octets.iter().fold(FNV_OFFSET, |hash, octet| {
        (hash ^ u32::from(*octet)).wrapping_mul(FNV_PRIME)
    });
    // Zero is not a valid identifier.
    Ipv4Addr::from(hash.max(1))
}

/// The session implementation the agent binary uses: `podroute_bgp`'s core session.
pub fn default_session_factory() -> SessionFactory {
    Arc::new(|spec, local| Box::new(bgp_session::CoreSession::new(spec, local)))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn v6(s: &str) -> Option<std::net::Ipv6Addr> {
        Some(s.parse().expect("ipv6"))
    }

    #[test]
    fn ipv6_only_router_ids_differ_when_only_the_prefix_differs() {
        let a = router_id_from(None, v6("fd00:1::5"));
        let b = router_id_from(None, v6("fd00:2::5"));
        assert_ne!(a, b);
        assert!(!a.is_unspecified() && !b.is_unspecified());
        // Pinned: an upgrade must not change a node's identifier (FNV-1a of the 16 octets).
        assert_eq!(a, Ipv4Addr::new(205, 22, 253, 20));
    }

    #[test]
    fn ipv4_address_is_the_router_id() {
        let v4 = Ipv4Addr::new(198, 18, 0, 7);
        assert_eq!(router_id_from(Some(v4), v6("fd00:198:18::7")), v4);
    }
}
