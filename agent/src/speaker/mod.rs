//! The BGP speaker's tokio shell: the listener, sockets and timers around
//! `podroute_bgp::speaker::Speaker`, which holds every piece of BGP state.
//!
//! Input is data: the [`SpeakerInput`] computed from the cluster view (peers, the view for
//! mesh import policy, the routes to advertise), turned into per-peer configuration by
//! [`peer_config`]. Output: Loc-RIB changes on a bounded channel (the kernel programmer's
//! input; a full channel slows the speaker, and with it the peers, through TCP), and a
//! [`BgpStatus`] for readiness, `status` and metrics.
//!
//! One task owns the speaker. Socket tasks ([`connection`]) only move bytes; the listener
//! hands accepted connections over; timers are the speaker's `poll_timeout`.

mod bfd_plan;
pub mod connection;
pub mod listener;
pub mod peer_config;

use std::collections::HashMap;
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex};
use std::time::Instant;

use ipnetwork::IpNetwork;
use podroute_bfd::endpoint::{BfdConfig, Liveness};
use podroute_bfd::session::SessionConfig;
use podroute_bgp::session::State;
use podroute_bgp::speaker::{
    ConnId, GracefulRestartConfig, PathState, Refusal, RouteChange, Speaker, SpeakerAction,
    SpeakerConfig,
};
use tokio::net::TcpListener;
use tokio::sync::{mpsc, watch};

use crate::bfd::driver::{self as bfd_driver, BfdDriverConfig, BfdHandle, LivenessEvent};
use crate::context::Context;
use crate::metrics::Trigger;
use crate::metrics::bgp::{PeerType, SeenCounters};
use crate::peers::{BfdSettings, PeerChanges, PeerSet};
use crate::view::ClusterView;
use bfd_plan::{BfdPlan, BfdSessions, bfd_plan};
use connection::{Connection, Dial, Inbound};
use peer_config::{LocalSettings, originated, peer_config};

/// Inbound events handled before the speaker's output is carried out and published.
const INBOUND_BATCH: usize = 64;
/// Loc-RIB changes after which the inbound batch ends and they are handed over: about one
/// full UPDATE's worth (a 4,096-byte UPDATE carries up to 1,013 IPv4 /24s), so a batch is
/// ~50 KB and the batches in flight stay well under a megabyte.
const ROUTE_BATCH: usize = 1024;
/// Capacity of the socket tasks' channel into the speaker task.
const INBOUND_CAPACITY: usize = 256;
/// How long a BFD task that is no longer wanted may take for its AdminDown round.
const BFD_STOP_WAIT: std::time::Duration = std::time::Duration::from_secs(1);
/// First wait before BFD's sockets are opened again after a failure (UDP 3784 taken, e.g.
/// by a stopping predecessor or another BFD daemon on the host).
const BFD_RETRY_FIRST: std::time::Duration = std::time::Duration::from_secs(1);
/// Longest wait between such tries.
const BFD_RETRY_MAX: std::time::Duration = std::time::Duration::from_secs(60);
/// How often a refusal of an unknown address may be logged.
const REFUSAL_LOG_INTERVAL: std::time::Duration = std::time::Duration::from_secs(10);

/// What the speaker should be doing.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SpeakerInput {
    /// The sessions to run.
    pub peers: PeerSet,
    /// The cluster view (mesh import policy, own addresses).
    pub view: Arc<ClusterView>,
    /// Routes to advertise to every peer: own pod CIDRs with the node IP as next hop.
    pub advertised: Vec<(IpNetwork, IpAddr)>,
    /// ECMP: the most equal-cost next hops per prefix (see `SpeakerConfig::max_paths`).
    pub max_paths: usize,
}

/// What the main loop needs from the speaker besides routes: readiness and the RIB side
/// of drift. It changes with session states, End-of-RIB and mesh best paths only, not with
/// every UPDATE, so it wakes the loop only when readiness may change. The per-peer view for
/// `status` goes to the [`Context`] directly ([`PeerStatus`]).
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct BgpStatus {
    /// End-of-RIB came from every mesh peer for every negotiated family, or the selection
    /// deferral (`--startup-grace`) ran out (true with no mesh peer).
    pub initial_sync_done: bool,
    /// Peers with an Established session.
    pub established: usize,
    /// Established mesh peers that did not send End-of-RIB yet.
    pub mesh_unsynced: usize,
    /// Every router (static or BGPPeer) peer has sent End-of-RIB since the agent started, or
    /// is established without graceful restart (which promises none): what the routes it
    /// taught the previous run may be judged by (true with no router peer).
    pub routers_synced: bool,
    /// The Loc-RIB's next hop for every pod CIDR of another Node (what the API expects):
    /// the RIB side of drift, without copying the whole RIB.
    pub mesh_best: crate::routes::desired::LearnedRoutes,
    /// The own routes advertised to at least one peer, or to no one because there is no
    /// established peer yet.
    pub own_advertised: bool,
}

/// One peer as `status` shows it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PeerStatus {
    /// Peer address.
    pub address: IpAddr,
    /// Where it comes from (`mesh:<node>` or `static`).
    pub source: String,
    /// `mesh` or `router`.
    pub peer_type: &'static str,
    /// The peer's AS: the configured one, or for a peer of any AS the one its OPEN carried
    /// on the current session (`None` until then).
    pub peer_as: Option<u32>,
    /// The session state (RFC 4271 §8.2.2).
    pub state: State,
    /// When the session entered that state (since the agent started, if it never changed).
    pub since: std::time::SystemTime,
    /// The session is Established.
    pub established: bool,
    /// It sent End-of-RIB for every negotiated family since the agent started.
    pub synced: bool,
    /// Prefixes the peer announced on its current session (before import policy).
    pub received: u64,
    /// Routes accepted and held (stale ones included).
    pub accepted: usize,
    /// Routes advertised to the peer.
    pub advertised: usize,
    /// Routes refused since the agent started.
    pub rejected: u64,
    /// Routes kept as stale while the peer restarts.
    pub stale: usize,
    /// Times a session to the peer reached Established since the agent started.
    pub established_count: u64,
    /// BFD with the peer: `None` when off, else what BFD last said of the path.
    pub bfd: Option<Liveness>,
    /// Strict BFD holds the session until BFD is Up.
    pub waiting_for_bfd: bool,
    /// The last NOTIFICATION sent or received, or the last UPDATE error handled.
    pub last_error: Option<String>,
    /// Malformed UPDATEs from the peer since the agent started, by RFC 7606 action.
    pub update_errors: podroute_bgp::counters::Rfc7606Counts,
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

/// The node IPs as the speaker uses them, for logs: `198.18.0.1, fd00::1` or `none`.
fn describe_ips(ips: &crate::view::NodeIps) -> String {
    let all: Vec<String> = ips.all().map(|ip| ip.to_string()).collect();
    if all.is_empty() {
        "none".to_owned()
    } else {
        all.join(", ")
    }
}

/// Loc-RIB changes handed to the kernel side, with what caused the first of them.
#[derive(Debug)]
pub struct RouteBatch {
    /// The changes, in order.
    pub changes: Vec<RouteChange>,
    /// When the speaker task took the UPDATE or the configuration (Node event) that caused
    /// the first change; `None` for changes a timer caused (stale routes swept).
    pub cause: Option<(Instant, Trigger)>,
}

/// How often per-peer status and BGP metrics are refreshed while only routes change
/// (session state changes refresh them at once).
const STATUS_INTERVAL: std::time::Duration = std::time::Duration::from_secs(1);

/// Where the speaker's output goes.
#[derive(Debug)]
pub struct SpeakerOutputs {
    /// Loc-RIB changes, in order.
    pub routes: mpsc::Sender<RouteBatch>,
    /// Status, replaced whenever it changes.
    pub status: watch::Sender<BgpStatus>,
    /// The BFD task's handle while it runs (for the AdminDown of a planned stop).
    pub bfd: Arc<Mutex<Option<BfdHandle>>>,
}

/// Runs the speaker until `input` is closed. `restarted`: podroute's routes were found in the
/// kernel at start (graceful restart's Forwarding State, RFC 4724 §3).
pub async fn run_speaker(
    ctx: Arc<Context>,
    mut input: watch::Receiver<Option<SpeakerInput>>,
    outputs: SpeakerOutputs,
    restarted: bool,
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
    let (inbound_tx, mut inbound_rx) = mpsc::channel(INBOUND_CAPACITY);
    let listeners = bind_listeners(&ctx, &first.view, &inbound_tx)?;
    let local = LocalSettings {
        as_number: ctx.config.as_number,
        router_id: router_id(&first.view),
        address: first
            .view
            .own
            .ips
            .session_address()
            .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
        hold_time: ctx.config.hold_time,
        graceful_restart: (!ctx.config.graceful_restart_time.is_zero()).then_some(
            GracefulRestartConfig {
                restart_time: ctx.config.graceful_restart_time,
                stale_routes_time: ctx.config.stale_routes_time,
            },
        ),
        stale_routes_time: ctx.config.stale_routes_time,
    };
    let config = SpeakerConfig {
        selection_deferral: ctx.config.startup_grace,
        restarted,
        cluster_id: first.view.own.route_reflector_cluster_id,
        max_paths: first.max_paths,
    };
    // BFD starts when a peer first wants it; its liveness changes arrive here all along.
    let (bfd_events_tx, mut bfd_events) = mpsc::unbounded_channel();
    let mut shell = Shell {
        bfd: None,
        bfd_task: 0,
        bfd_stopping: None,
        bfd_events: bfd_events_tx,
        bfd_sessions: BfdSessions::new(),
        bfd_liveness: HashMap::new(),
        bfd_retry: None,
        bfd_retry_wait: BFD_RETRY_FIRST,
        speaker: Speaker::new(config, Instant::now()),
        ctx,
        local,
        first_view: first.view.clone(),
        view: first.view.clone(),
        specs: PeerSet::new(),
        listeners,
        inbound: inbound_tx,
        connections: HashMap::new(),
        dialing: HashMap::new(),
        outputs,
        last_refusal_log: None,
        cause: None,
        seen: SeenCounters::default(),
        peer_notes: HashMap::new(),
        status_due: None,
        status_stale: false,
    };
    shell.configure(first).await?;
    loop {
        shell.carry_out();
        shell.publish().await;
        let deadline = shell.speaker.poll_timeout();
        tokio::select! {
            changed = input.changed() => {
                if changed.is_err() {
                    break;
                }
                let next = input.borrow_and_update().clone();
                if let Some(next) = next {
                    shell.configure(next).await?;
                    shell.note_cause(Instant::now(), Trigger::NodeEvent);
                }
            }
            Some(event) = inbound_rx.recv() => {
                let taken = Instant::now();
                shell.handle(event);
                shell.note_cause(taken, Trigger::BgpUpdate);
                for _ in 1..INBOUND_BATCH {
                    if shell.speaker.pending_route_changes() >= ROUTE_BATCH {
                        // Hand these over first: a bounded batch keeps the memory of routes
                        // in flight small, and the full channel slows the peers instead.
                        break;
                    }
                    match inbound_rx.try_recv() {
                        Ok(event) => {
                            shell.handle(event);
                            shell.note_cause(taken, Trigger::BgpUpdate);
                        }
                        Err(_) => break,
                    }
                }
            }
            Some(event) = bfd_events.recv() => shell.bfd_event(event),
            _ = sleep_until(shell.bfd_retry) => {
                shell.bfd_retry = None;
                let peers = shell.specs.clone();
                shell.configure_bfd(&peers).await;
            }
            _ = sleep_until(deadline) => shell.speaker.handle_timeout(Instant::now()),
            // A status refresh held back by the interval: due now.
            _ = sleep_until(shell.status_stale.then_some(shell.status_due).flatten()) => {}
        }
    }
    // No Cease: the connections close with the task, so peers treat it as a restart and keep
    // our routes (graceful restart), as after a kill.
    Ok(())
}

/// The BFD session a peer spec asks for.
fn bfd_session(settings: &BfdSettings) -> SessionConfig {
    SessionConfig {
        desired_min_tx: settings.min_tx,
        required_min_rx: settings.min_rx,
        detect_mult: settings.multiplier,
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(tokio::time::Instant::from_std(deadline)).await,
        None => std::future::pending().await,
    }
}

/// Binds the listener on the node IP (and, without `--listen-address`, also on the node's
/// IPv6 address for static IPv6 peers), each feeding `inbound`.
fn bind_listeners(
    ctx: &Context,
    view: &ClusterView,
    inbound: &mpsc::Sender<Inbound>,
) -> Result<Vec<(bool, Arc<TcpListener>)>, SpeakerError> {
    let own_ip = ctx
        .config
        .listen_address
        .or(view.own.ips.session_address())
        .unwrap_or(IpAddr::V4(Ipv4Addr::UNSPECIFIED));
    let address = SocketAddr::new(own_ip, ctx.config.bgp_port);
    let mut addresses = vec![address];
    if ctx.config.listen_address.is_none()
        && let Some(v6) = view.own.ips.v6
        && own_ip.is_ipv4()
    {
        addresses.push(SocketAddr::new(IpAddr::V6(v6), ctx.config.bgp_port));
    }
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
        tokio::spawn(listener::accept_loop(listener.clone(), inbound.clone()));
        listeners.push((address.is_ipv6(), listener));
    }
    Ok(listeners)
}

/// The speaker task's state: the speaker, and the sockets it asked for.
struct Shell {
    ctx: Arc<Context>,
    /// The BFD task, while a peer wants BFD.
    bfd: Option<BfdHandle>,
    /// The id of the latest BFD task started: events of earlier ones are dropped.
    bfd_task: u64,
    /// The last BFD task told to stop, until it has (it closes UDP 3784 as it ends).
    bfd_stopping: Option<tokio::task::JoinHandle<()>>,
    /// Where the BFD task reports liveness (the receiver is the task loop's).
    bfd_events: mpsc::UnboundedSender<LivenessEvent>,
    /// The BFD sessions asked of it, by peer.
    bfd_sessions: BfdSessions,
    /// What BFD last said of each peer's path (for status; the speaker acts on it).
    bfd_liveness: HashMap<IpAddr, Liveness>,
    /// When to try starting BFD again after its sockets could not be opened, and the wait
    /// after the next failure (doubling from [`BFD_RETRY_FIRST`] to [`BFD_RETRY_MAX`]).
    bfd_retry: Option<Instant>,
    bfd_retry_wait: std::time::Duration,
    speaker: Speaker,
    local: LocalSettings,
    first_view: Arc<ClusterView>,
    view: Arc<ClusterView>,
    specs: PeerSet,
    listeners: Vec<(bool, Arc<TcpListener>)>,
    inbound: mpsc::Sender<Inbound>,
    connections: HashMap<ConnId, Connection>,
    dialing: HashMap<ConnId, tokio::task::AbortHandle>,
    outputs: SpeakerOutputs,
    last_refusal_log: Option<Instant>,
    /// What caused the first route change not handed over yet.
    cause: Option<(Instant, Trigger)>,
    /// Counters as last exported to metrics.
    seen: SeenCounters,
    /// Per peer: since when in its state, and its last error.
    peer_notes: HashMap<IpAddr, PeerNote>,
    /// When per-peer status and metrics are refreshed next (`None`: at once).
    status_due: Option<Instant>,
    /// Something changed since the last refresh.
    status_stale: bool,
}

/// What the shell remembers of a peer for `status`.
#[derive(Debug, Clone)]
struct PeerNote {
    since: std::time::SystemTime,
    last_error: Option<String>,
}

impl Default for PeerNote {
    fn default() -> Self {
        Self {
            since: std::time::SystemTime::now(),
            last_error: None,
        }
    }
}

impl Shell {
    /// Applies a new input: peers removed, added or changed, mesh policies, own routes.
    async fn configure(&mut self, next: SpeakerInput) -> Result<(), SpeakerError> {
        // The listeners, local addresses and router ID all follow the first view's IPs
        // (unless --listen-address pins the listener; the rest still follows them).
        if next.view.own.ips != self.first_view.own.ips {
            return Err(SpeakerError::NodeIpChanged {
                from: describe_ips(&self.first_view.own.ips),
                to: describe_ips(&next.view.own.ips),
            });
        }
        let now = Instant::now();
        let changes = PeerChanges::between(&self.specs, &next.peers);
        for address in &changes.removed {
            if moved_to_another_address(&self.specs, &next.peers, *address) {
                // The Node is still there under a new IP: like a restart of that node, so no
                // NOTIFICATION, and it keeps our routes (graceful restart) until it is back.
                tracing::info!(peer = %address, "peer's Node changed its IP; closing the old session");
                self.speaker.forget_peer(now, *address);
            } else {
                tracing::info!(peer = %address, "peer removed; stopping its session (Cease)");
                self.speaker.remove_peer(now, *address);
            }
            self.set_md5(*address, None);
        }
        for spec in changes.added.iter().chain(&changes.changed) {
            self.set_md5(
                spec.address,
                spec.md5_password
                    .as_ref()
                    .map(crate::peers::Password::expose),
            );
        }
        for spec in &changes.changed {
            let rekeyed = self
                .specs
                .get(&spec.address)
                .is_some_and(|old| old.md5_password != spec.md5_password || old.gtsm != spec.gtsm);
            if rekeyed {
                // A running connection keeps the key (and TTL) it was opened with: end this
                // session so that it comes back with the new ones. No other session is touched.
                tracing::info!(peer = %spec.address, "peer's password or GTSM changed; restarting its session");
                self.speaker.remove_peer(now, spec.address);
            }
        }
        self.speaker
            .set_cluster_id(now, next.view.own.route_reflector_cluster_id);
        // Live: the prefixes whose next hops change are reported again; no session resets.
        self.speaker.set_max_paths(next.max_paths);
        for spec in next.peers.values() {
            let local = local_for(spec.address, self.local, &next.view);
            self.speaker
                .add_peer(now, peer_config(spec, &next.view, &local));
        }
        self.speaker
            .set_originated(now, originated(&next.advertised));
        self.configure_bfd(&next.peers).await;
        self.specs = next.peers;
        self.view = next.view;
        Ok(())
    }

    /// Starts, changes and ends BFD sessions to match the peers that want one. The BFD task
    /// (and its UDP port 3784) runs only while some peer wants BFD ([`bfd_plan`]).
    async fn configure_bfd(&mut self, peers: &PeerSet) {
        let wanted: BfdSessions = peers
            .values()
            .filter_map(|s| Some((s.address, bfd_session(s.bfd.as_ref()?))))
            .collect();
        match bfd_plan(self.bfd.is_some(), &self.bfd_sessions, &wanted) {
            BfdPlan::Idle => {}
            BfdPlan::Start => {
                // A task stopped just before must have closed UDP 3784 first.
                if let Some(stopping) = self.bfd_stopping.take() {
                    let _ = stopping.await;
                }
                let Some(bfd) = self.start_bfd() else {
                    // Not started (logged and counted): tried again later, with back-off.
                    self.bfd_retry = Some(Instant::now() + self.bfd_retry_wait);
                    self.bfd_retry_wait = (self.bfd_retry_wait * 2).min(BFD_RETRY_MAX);
                    return;
                };
                self.bfd_retry = None;
                self.bfd_retry_wait = BFD_RETRY_FIRST;
                for (peer, config) in &wanted {
                    bfd.add_session(*peer, *config);
                }
                self.bfd = Some(bfd);
            }
            BfdPlan::Update { remove, add } => {
                if let Some(bfd) = &self.bfd {
                    for peer in remove {
                        bfd.remove_session(peer);
                        self.bfd_liveness.remove(&peer);
                    }
                    for (peer, config) in add {
                        bfd.add_session(peer, config);
                    }
                }
            }
            BfdPlan::Stop => {
                self.bfd_retry = None;
                if let Some(bfd) = self.bfd.take() {
                    self.set_published_bfd(None);
                    // Its sessions say AdminDown and its sockets close as it ends; the
                    // speaker loop does not wait for that, a restart of BFD does.
                    self.bfd_stopping = Some(tokio::spawn(async move {
                        if tokio::time::timeout(BFD_STOP_WAIT, bfd.shutdown())
                            .await
                            .is_err()
                        {
                            tracing::warn!("the BFD task did not stop within 1 s");
                        }
                        tracing::info!("no peer wants BFD any more: BFD stopped, UDP 3784 closed");
                    }));
                }
                self.bfd_liveness.clear();
            }
        }
        self.bfd_sessions = wanted;
    }

    /// Makes the running BFD task (or none) the one a planned stop tells to say AdminDown.
    fn set_published_bfd(&self, handle: Option<BfdHandle>) {
        if let Ok(mut published) = self.outputs.bfd.lock() {
            *published = handle;
        }
    }

    /// Opens the BFD sockets on the node's addresses and starts the BFD task; `None` (logged,
    /// counted) when the sockets cannot be opened: BGP carries on without BFD meanwhile.
    fn start_bfd(&mut self) -> Option<BfdHandle> {
        self.bfd_task += 1;
        let local: Vec<IpAddr> = self.first_view.own.ips.all().collect();
        let seed = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .map_or(1, |d| d.as_nanos() as u64)
            ^ u64::from(std::process::id());
        let config = BfdDriverConfig {
            local,
            endpoint: BfdConfig {
                seed,
                // BFD runs inside the agent: it dies with the control plane, and says so
                // (RFC 5880 §4.1, RFC 5882 §4.3).
                control_plane_independent: false,
                ..BfdConfig::default()
            },
            metrics: self.ctx.metrics.clone(),
            task: self.bfd_task,
        };
        match bfd_driver::spawn(config, self.bfd_events.clone()) {
            Ok(handle) => {
                self.set_published_bfd(Some(handle.clone()));
                Some(handle)
            }
            Err(error) => {
                tracing::error!(%error, retry_in = ?self.bfd_retry_wait, "opening the BFD sockets (UDP 3784) failed; BGP runs without BFD (strict sessions wait) until a retry succeeds");
                self.ctx.metrics.bfd_start_failures.inc();
                None
            }
        }
    }

    /// BFD's word on a peer's path, handed to the speaker: Down ends the session at once
    /// (Cease/BFD Down), Up lets a strict one start. AdminDown (the peer's planned stop)
    /// is no failure: the session is left to its hold timer and graceful restart.
    fn bfd_event(&mut self, event: LivenessEvent) {
        if event.task != self.bfd_task || !self.bfd_sessions.contains_key(&event.peer) {
            return;
        }
        self.bfd_liveness.insert(event.peer, event.liveness);
        let now = Instant::now();
        match event.liveness {
            Liveness::Up => self.speaker.path_changed(now, event.peer, PathState::Up),
            Liveness::Down => {
                tracing::info!(peer = %event.peer, "BFD Down: ending the BGP session now");
                let path = PathState::Down {
                    control_plane_independent: event.peer_control_plane_independent,
                };
                self.speaker.path_changed(now, event.peer, path);
            }
            Liveness::AdminDown => {
                tracing::info!(peer = %event.peer, "peer's BFD went AdminDown (planned stop): BGP left to graceful restart");
            }
        }
    }

    /// Installs (or with `None` removes) a peer's TCP-MD5 key on the listener of its family.
    fn set_md5(&self, peer: IpAddr, password: Option<&str>) {
        let Some((_, listener)) = self.listeners.iter().find(|(v6, _)| *v6 == peer.is_ipv6())
        else {
            return;
        };
        if let Err(error) = listener::set_peer_md5(listener, peer, password)
            && password.is_some()
        {
            tracing::warn!(%peer, %error, "setting the TCP-MD5 key failed");
        }
    }

    /// A connection the listener accepted from `peer`: the speaker takes it or refuses it.
    fn accepted(&mut self, now: Instant, stream: tokio::net::TcpStream, peer: IpAddr, gtsm: bool) {
        if let Err(error) = connection::prepare_accepted(&stream, gtsm, peer.is_ipv6()) {
            if gtsm {
                // Without the minimum TTL the session would run unprotected: refused.
                tracing::warn!(%peer, %error, "GTSM on an accepted connection failed; connection closed");
                self.ctx.metrics.bgp.refused_by_gtsm();
                return;
            }
            tracing::warn!(%peer, %error, "socket options on an accepted connection failed");
        }
        match self.speaker.incoming(now, peer) {
            Ok(conn) => {
                self.connections
                    .insert(conn, Connection::start(conn, stream, self.inbound.clone()));
            }
            Err(reason) => {
                // Counted before the close, so whoever sees the close sees the count.
                self.refused(peer, reason);
                drop(stream);
            }
        }
    }

    /// One event from the socket tasks.
    fn handle(&mut self, event: Inbound) {
        let now = Instant::now();
        match event {
            Inbound::Accepted(stream, peer) => {
                // Read for every connection: the kernel frees the saved SYN once it is read.
                let from_a_neighbour = connection::from_a_neighbour(&stream);
                let gtsm = self.specs.get(&peer).is_some_and(|s| s.gtsm);
                if gtsm && !from_a_neighbour {
                    // Further away than one hop (or spoofed): no session state at all.
                    self.ctx.metrics.bgp.refused_by_gtsm();
                    self.log_refusal(peer, "GTSM: a connection whose SYN came with TTL < 255 (or without a saved SYN, as with SYN cookies) closed");
                    drop(stream);
                    return;
                }
                self.accepted(now, stream, peer, gtsm);
            }
            Inbound::Connected(conn, result) => {
                if self.dialing.remove(&conn).is_none() {
                    return;
                }
                match result {
                    Ok(stream) => {
                        self.connections
                            .insert(conn, Connection::start(conn, stream, self.inbound.clone()));
                        self.speaker.connected(now, conn);
                    }
                    Err(error) if error.kind() == std::io::ErrorKind::ConnectionRefused => {
                        tracing::debug!(%conn, %error, "connect refused");
                        self.speaker.refused(now, conn);
                    }
                    Err(error) => {
                        tracing::debug!(%conn, %error, "connect failed");
                        self.speaker.closed(now, conn);
                    }
                }
            }
            Inbound::Bytes(conn, bytes) => self.speaker.bytes(now, conn, &bytes),
            Inbound::Closed(conn) => {
                self.connections.remove(&conn);
                self.speaker.closed(now, conn);
            }
        }
    }

    fn refused(&mut self, peer: IpAddr, reason: Refusal) {
        self.ctx.metrics.bgp.refused(reason);
        if reason == Refusal::UnknownPeer {
            self.log_refusal(
                peer,
                "BGP connection from an address that is no configured peer closed",
            );
        }
    }

    /// Warns of a refused connection, at most once per [`REFUSAL_LOG_INTERVAL`].
    fn log_refusal(&mut self, peer: IpAddr, what: &str) {
        let now = Instant::now();
        if self
            .last_refusal_log
            .is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL)
        {
            tracing::warn!(%peer, "{what}");
            self.last_refusal_log = Some(now);
        }
    }

    /// Does what the speaker asked, and logs what it reported.
    fn carry_out(&mut self) {
        while let Some(action) = self.speaker.poll_action() {
            match action {
                SpeakerAction::Connect { peer, conn } => {
                    let Some(spec) = self.specs.get(&peer) else {
                        self.speaker.closed(Instant::now(), conn);
                        continue;
                    };
                    let dial = Dial {
                        remote: SocketAddr::new(peer, self.ctx.config.bgp_port),
                        local: local_for(peer, self.local, &self.first_view).address,
                        md5_password: spec.md5_password.clone(),
                        gtsm: spec.gtsm,
                    };
                    let task = tokio::spawn(connection::dial(conn, dial, self.inbound.clone()));
                    self.dialing.insert(conn, task.abort_handle());
                }
                SpeakerAction::Send { conn, bytes } => {
                    if let Some(c) = self.connections.get(&conn) {
                        c.send(bytes);
                    }
                }
                SpeakerAction::Close { conn } => {
                    self.connections.remove(&conn);
                    if let Some(task) = self.dialing.remove(&conn) {
                        task.abort();
                    }
                }
                other => {
                    // Logs about one peer carry its span, `peer{addr=…}`.
                    let peer = action_peer(&other);
                    let _span = peer.map(|p| tracing::info_span!("peer", addr = %p).entered());
                    if let Some(peer) = peer {
                        let peer_type = self
                            .specs
                            .get(&peer)
                            .map_or(PeerType::Router, |s| PeerType::of(&s.kind));
                        self.ctx.metrics.bgp.record(&other, peer_type);
                        self.note(&other, peer);
                        self.report(&other, peer, peer_type);
                    }
                    log_action(&other);
                }
            }
        }
    }

    /// Remembers `at` as the cause of route changes the last input produced, unless an
    /// earlier cause is still waiting to be handed over.
    fn note_cause(&mut self, at: Instant, trigger: Trigger) {
        if self.cause.is_none() && self.speaker.pending_route_changes() > 0 {
            self.cause = Some((at, trigger));
        }
    }

    /// Sends a Kubernetes Event for session changes and prefix limits.
    fn report(&self, action: &SpeakerAction, peer: IpAddr, peer_type: PeerType) {
        use crate::events::AgentEvent;
        let peer_type = peer_type.label();
        let event = match action {
            SpeakerAction::PeerState { to, .. } if *to == State::Established => {
                AgentEvent::SessionUp { peer, peer_type }
            }
            SpeakerAction::PeerState { from, .. } if *from == State::Established => {
                AgentEvent::SessionDown {
                    peer,
                    peer_type,
                    reason: self
                        .peer_notes
                        .get(&peer)
                        .and_then(|n| n.last_error.clone()),
                }
            }
            SpeakerAction::MaxPrefixExceeded { limit, action, .. } => AgentEvent::MaxPrefix {
                peer,
                limit: *limit,
                action: crate::metrics::bgp::max_prefix_label(*action),
            },
            _ => return,
        };
        self.ctx.events.send(event);
    }

    /// Records a session change or error of `peer` for `status`.
    fn note(&mut self, action: &SpeakerAction, peer: IpAddr) {
        let note = self.peer_notes.entry(peer).or_default();
        match action {
            SpeakerAction::PeerState { .. } => {
                note.since = std::time::SystemTime::now();
                self.status_due = None;
            }
            SpeakerAction::Notification {
                sent, notification, ..
            } => {
                let direction = if *sent { "sent" } else { "received" };
                note.last_error = Some(format!("NOTIFICATION {direction}: {notification}"));
            }
            SpeakerAction::UpdateFault { fault, .. } => {
                note.last_error = Some(format!(
                    "UPDATE error handled as {:?}: {:?}",
                    fault.action, fault.error
                ));
            }
            SpeakerAction::MaxPrefixExceeded { limit, action, .. } => {
                note.last_error = Some(format!("prefix limit {limit} passed ({action:?})"));
            }
            _ => {}
        }
    }

    /// Hands Loc-RIB changes to the kernel side (waiting while it is behind), publishes the
    /// loop's status when it changed, and refreshes per-peer status and metrics when due.
    async fn publish(&mut self) {
        let mut changes = self.speaker.take_route_changes();
        // The vector grew by doubling; a batch waiting in the channel keeps only its length.
        changes.shrink_to_fit();
        if !changes.is_empty() {
            let batch = RouteBatch {
                changes,
                cause: self.cause.take(),
            };
            if self.outputs.routes.send(batch).await.is_err() {
                tracing::debug!("route consumer gone");
            }
        }
        self.cause = None;
        let status = self.status();
        self.outputs.status.send_if_modified(|current| {
            let changed = *current != status;
            if changed {
                *current = status;
            }
            changed
        });
        let now = Instant::now();
        self.status_stale = true;
        if self.status_due.is_none_or(|due| now >= due) {
            self.status_due = Some(now + STATUS_INTERVAL);
            self.status_stale = false;
            self.ctx
                .metrics
                .bgp
                .observe(&self.speaker, &self.specs, &mut self.seen);
            let peers = self.peer_status();
            self.ctx.update_status(|s| s.bgp_peers = peers);
        }
    }

    fn peer_status(&mut self) -> Vec<PeerStatus> {
        let configured: std::collections::HashSet<IpAddr> =
            self.speaker.peers().map(|p| p.address).collect();
        self.peer_notes.retain(|a, _| configured.contains(a));
        self.speaker
            .peers()
            .map(|p| {
                let spec = self.specs.get(&p.address);
                let note = self.peer_notes.entry(p.address).or_default();
                PeerStatus {
                    address: p.address,
                    source: spec.map_or_else(|| "unknown".to_owned(), |s| s.kind.label()),
                    peer_type: spec
                        .map_or(PeerType::Router, |s| PeerType::of(&s.kind))
                        .label(),
                    peer_as: p.peer_as,
                    state: p.state,
                    since: note.since,
                    established: p.state == State::Established,
                    synced: p.synced,
                    received: self
                        .speaker
                        .session_counters(p.address)
                        .map_or(0, |c| c.prefixes_received),
                    accepted: p.accepted,
                    advertised: p.advertised_by_family.0 + p.advertised_by_family.1,
                    rejected: p.rejected,
                    stale: p.stale,
                    established_count: p.established_count,
                    bfd: self.bfd_sessions.contains_key(&p.address).then(|| {
                        self.bfd_liveness
                            .get(&p.address)
                            .copied()
                            .unwrap_or(Liveness::Down)
                    }),
                    waiting_for_bfd: p.waiting_for_bfd,
                    last_error: note.last_error.clone(),
                    update_errors: self
                        .speaker
                        .session_counters(p.address)
                        .map(|c| c.rfc7606)
                        .unwrap_or_default(),
                }
            })
            .collect()
    }

    fn status(&self) -> BgpStatus {
        let mut established = 0;
        let mut mesh_unsynced = 0;
        let mut routers_synced = true;
        let mut advertised = false;
        for p in self.speaker.peers() {
            let mesh = self
                .specs
                .get(&p.address)
                .is_some_and(|s| PeerType::of(&s.kind) == PeerType::Mesh);
            let up = p.state == State::Established;
            let told_everything = p.synced || up && !p.graceful_restart;
            routers_synced &= mesh || told_everything;
            if !up {
                continue;
            }
            established += 1;
            advertised |= p.advertised_by_family.0 + p.advertised_by_family.1 > 0;
            if mesh && !p.synced {
                mesh_unsynced += 1;
            }
        }
        let mesh_best = self
            .view
            .peers
            .values()
            .flat_map(|node| node.routable_cidrs())
            .filter_map(|(cidr, _)| Some((cidr, self.speaker.best_next_hops(&cidr).first()?)))
            .collect();
        BgpStatus {
            initial_sync_done: self.speaker.initial_sync_done(),
            established,
            mesh_unsynced,
            routers_synced,
            mesh_best,
            own_advertised: advertised || established == 0,
        }
    }
}

/// The peer an action concerns, if any.
fn action_peer(action: &SpeakerAction) -> Option<IpAddr> {
    match action {
        SpeakerAction::PeerState { peer, .. }
        | SpeakerAction::Notification { peer, .. }
        | SpeakerAction::UpdateFault { peer, .. }
        | SpeakerAction::MaxPrefixExceeded { peer, .. }
        | SpeakerAction::StaleKept { peer, .. }
        | SpeakerAction::StaleSwept { peer, .. }
        | SpeakerAction::EndOfRib { peer, .. }
        | SpeakerAction::RouteRejected { peer, .. }
        | SpeakerAction::RejectionsNotReported { peer }
        | SpeakerAction::ConnectionRefused { peer, .. }
        | SpeakerAction::Connect { peer, .. } => Some(*peer),
        SpeakerAction::InitialSyncDone { .. }
        | SpeakerAction::Send { .. }
        | SpeakerAction::Close { .. } => None,
    }
}

/// True if the mesh peer at `address` in `old` is a Node that `new` still has under another
/// address.
fn moved_to_another_address(old: &PeerSet, new: &PeerSet, address: IpAddr) -> bool {
    let Some(crate::peers::PeerKind::Mesh { node }) = old.get(&address).map(|s| &s.kind) else {
        return false;
    };
    new.values().any(|spec| {
        spec.address != address
            && matches!(&spec.kind, crate::peers::PeerKind::Mesh { node: n } if n == node)
    })
}

/// Logs what the speaker reported.
fn log_action(action: &SpeakerAction) {
    match action {
        SpeakerAction::PeerState { peer, from, to } => {
            if *to == State::Established {
                tracing::info!(%peer, "session Established");
            } else if *from == State::Established {
                tracing::info!(%peer, state = %to, "session down");
            } else {
                tracing::debug!(%peer, %from, %to, "session state");
            }
        }
        SpeakerAction::Notification {
            peer,
            sent,
            notification,
        } => {
            let direction = if *sent { "sent" } else { "received" };
            tracing::info!(%peer, direction, code = notification.code, subcode = notification.subcode, "NOTIFICATION");
        }
        SpeakerAction::UpdateFault { peer, fault } => {
            tracing::warn!(%peer, ?fault, "UPDATE error handled without reset (RFC 7606)");
        }
        SpeakerAction::RouteRejected {
            peer,
            prefix,
            next_hop,
        } => tracing::warn!(%peer, %prefix, %next_hop, "route rejected by import policy"),
        SpeakerAction::RejectionsNotReported { peer } => tracing::warn!(
            %peer,
            "more routes rejected by import policy: counted in podroute_bgp_rejected_routes_total, not logged"
        ),
        SpeakerAction::MaxPrefixExceeded {
            peer,
            limit,
            action,
        } => tracing::warn!(%peer, limit, ?action, "peer passed its prefix limit"),
        SpeakerAction::StaleKept { peer, routes } => {
            tracing::info!(%peer, routes, "peer restarting: its routes are kept as stale (graceful restart)");
        }
        SpeakerAction::StaleSwept {
            peer,
            routes,
            expired,
        } => {
            tracing::info!(%peer, routes, expired, "stale routes the peer did not announce again were removed");
        }
        SpeakerAction::ConnectionRefused { peer, reason } => {
            tracing::info!(%peer, reason = reason.metric_label(), "further connection from a peer refused");
        }
        SpeakerAction::EndOfRib { peer, family } => {
            tracing::debug!(%peer, ?family, "End-of-RIB");
        }
        SpeakerAction::InitialSyncDone { deferral_expired } => {
            tracing::info!(
                deferral_expired,
                "initial BGP sync done (End-of-RIB from every mesh peer, or the startup grace ran out)"
            );
        }
        SpeakerAction::Connect { .. }
        | SpeakerAction::Send { .. }
        | SpeakerAction::Close { .. } => {}
    }
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
