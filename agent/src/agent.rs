//! The agent's main loop: wires the Node watcher, the BGP speaker and the route programmer.
//!
//! Data flows one way: the view becomes the speaker's input (peers, policies, own routes);
//! the speaker's Loc-RIB changes are staged in the programmer as they come, coalesced, and
//! flushed to the kernel in batches; the own pod CIDRs are staged as blackholes from the
//! view. A periodic tick and kernel notifications let the programmer repair what others
//! changed. Stale podroute routes are removed only once BGP has synced (End-of-RIB from
//! every mesh peer) or the start-up grace is over, which the speaker decides. If the API
//! server goes away the view stays as it was, so nothing changes until it returns.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::sync::{mpsc, watch};

use crate::cluster_peers::{ClusterResources, FlagDefaults, cluster_peers};
use crate::cni_conf::{self, ReadinessFile};
use crate::config::Config;
use crate::config_watch::{ConfigUpdate, run_config_watch};
use crate::context::Context;
use crate::drift::{DriftReport, DriftTracker, compute_drift};
use crate::metrics::{Metrics, Trigger};
use crate::peers::mesh_peers;
use crate::routes::desired::expected_routes;
use crate::routes::kernel::{self, KernelError};
use crate::routes::probe::{KernelProbe, KernelVerdict};
use crate::routes::{RouteIntent, RouteProgrammer};
use crate::speaker::{
    BgpStatus, RouteBatch, SpeakerError, SpeakerInput, SpeakerOutputs, run_speaker,
};
use crate::static_peers::add_static_peers;
use crate::view::{ClusterView, ViewError};
use crate::watch::{ViewUpdate, run_node_watch};

/// Why the agent stopped.
#[derive(Debug, thiserror::Error)]
pub enum AgentError {
    /// Kubernetes client configuration.
    #[error("Kubernetes client configuration: {0}")]
    KubeConfig(String),
    /// The own node is unusable.
    #[error(transparent)]
    View(#[from] ViewError),
    /// Netlink could not be opened.
    #[error(transparent)]
    Kernel(#[from] KernelError),
    /// The BGP speaker could not start, or stopped.
    #[error(transparent)]
    Speaker(#[from] SpeakerError),
    /// The BGP speaker's task panicked or was cancelled.
    #[error("the BGP speaker task ended abnormally: {0}")]
    SpeakerTask(String),
    /// Metrics registry.
    #[error("metrics registry: {0}")]
    Metrics(#[from] prometheus::Error),
    /// The signal handlers could not be installed.
    #[error("installing the SIGTERM/SIGINT handlers: {0}")]
    Signal(#[source] std::io::Error),
    /// HTTP listener.
    #[error("binding the HTTP server to {address}: {source}")]
    HttpBind {
        /// Address.
        address: std::net::SocketAddr,
        /// Why.
        #[source]
        source: std::io::Error,
    },
}

impl AgentError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::KubeConfig(_) => "kube_config",
            Self::View(e) => e.metric_label(),
            Self::Kernel(e) => e.metric_label(),
            Self::Speaker(e) => e.metric_label(),
            Self::SpeakerTask(_) => "speaker_task",
            Self::Metrics(_) => "metrics",
            Self::HttpBind { .. } => "http_bind",
            Self::Signal(_) => "signal",
        }
    }
}

/// Builds the Kubernetes client: explicit kubeconfig, else in-cluster, else the defaults.
pub async fn kube_client(kubeconfig: Option<&PathBuf>) -> Result<kube::Client, AgentError> {
    let config = match kubeconfig {
        Some(path) => {
            let file = kube::config::Kubeconfig::read_from(path)
                .map_err(|e| AgentError::KubeConfig(format!("{}: {e}", path.display())))?;
            kube::Config::from_custom_kubeconfig(file, &kube::config::KubeConfigOptions::default())
                .await
                .map_err(|e| AgentError::KubeConfig(format!("{}: {e}", path.display())))?
        }
        None => kube::Config::infer()
            .await
            .map_err(|e| AgentError::KubeConfig(e.to_string()))?,
    };
    kube::Client::try_from(config).map_err(|e| AgentError::KubeConfig(e.to_string()))
}

/// Route-change batches the speaker may queue ahead of the kernel programmer; past that the
/// speaker waits (and with it, through TCP, the peers).
const ROUTE_BATCHES: usize = 4;

/// Loc-RIB changes staged before a flush, at most (plus one batch): enough for a flush to
/// fill several netlink batches, few enough that the programmer's queue stays small.
const STAGE_ROUTES: usize = 16 * 1024;

/// Runs the agent until a fatal error or SIGTERM/SIGINT. Routes stay in the kernel on exit.
pub async fn run(config: Config) -> Result<(), AgentError> {
    // Installed once, before anything else runs, so a signal that arrives while a step is
    // busy is kept until the loop looks again.
    let mut shutdown = Shutdown::install()?;
    let client = kube_client(config.kubeconfig.as_ref()).await?;
    let metrics = Metrics::new(config.metrics_per_mesh_peer)?;
    let events = crate::events::spawn(client.clone(), config.node_name.clone());
    let ctx = Arc::new(Context::new(config, metrics).with_events(events));
    crate::node_status::spawn(client.clone(), ctx.clone());

    let http = tokio::net::TcpListener::bind(ctx.config.http_listen)
        .await
        .map_err(|source| AgentError::HttpBind {
            address: ctx.config.http_listen,
            source,
        })?;
    tokio::spawn(crate::http::serve(ctx.clone(), http));

    // A view and resources kept on the node stand in until the API's first answers replace
    // them (the Node watch's and the config watch's each replace their half).
    let persisted = ctx.config.state_file.as_deref().and_then(|path| {
        match crate::persist::load(path, &ctx.config.node_name) {
            Ok(state) => {
                tracing::info!(path = %path.display(), peers = state.view.peers.len(),
                    bgp_peers = state.resources.peers.len(),
                    "starting from the persisted cluster view until the API server answers");
                Some(Arc::new(state))
            }
            Err(crate::persist::PersistError::Io { source, .. })
                if source.kind() == std::io::ErrorKind::NotFound =>
            {
                None
            }
            Err(error) => {
                tracing::warn!(%error, "persisted cluster view not used; waiting for the API server");
                ctx.metrics.errors.with_label_values(&[error.metric_label()]).inc();
                None
            }
        }
    });
    let (initial, initial_config) = match &persisted {
        Some(state) => (
            ViewUpdate {
                view: Ok(Arc::new(state.view.clone())),
                synced: true,
            },
            ConfigUpdate {
                resources: Arc::new(state.resources.clone()),
                synced: true,
            },
        ),
        None => (ViewUpdate::initial(), ConfigUpdate::default()),
    };
    let (view_tx, mut view_rx) = watch::channel(initial);
    let (config_tx, mut config_rx) = watch::channel(initial_config);
    tokio::spawn(run_config_watch(
        client.clone(),
        ctx.config.namespace.clone(),
        config_tx,
    ));
    tokio::spawn(run_node_watch(
        Api::<Node>::all(client),
        ctx.config.node_name.clone(),
        ctx.config.node_ip_override,
        view_tx,
    ));

    if ctx.config.cni.is_some() {
        // This agent runs the node's CNI: destroy pod veths whose namespace outlived DEL.
        tokio::spawn(crate::veth_sweep::run(
            kernel::connect()?,
            ctx.config.reconcile_period,
            ctx.metrics.clone(),
        ));
    }
    let mut state = LoopState {
        programmer: RouteProgrammer::new(ctx.config.route_protocol)?,
        probe: KernelProbe::new(ctx.config.route_protocol)?,
        drift: DriftTracker::default(),
        last_drift: DriftReport::default(),
        kernel_verdicts: Default::default(),
        drift_owed: true,
        drift_soon: None,
        converging: Vec::new(),
        started: tokio::time::Instant::now(),
        readiness_file: ctx
            .config
            .cni
            .as_ref()
            .and_then(|c| c.readiness_file.clone())
            .map(ReadinessFile::new),
        own_cidrs: Vec::new(),
        speaker: None,
        bgp: BgpStatus::default(),
        conflist_written_for: None,
        view_seen: None,
        logged_waiting_for_cidr: false,
        logged_view_error: None,
        logged_invalid: Default::default(),
        persisted,
    };
    let mut tick = tokio::time::interval(ctx.config.reconcile_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);

    loop {
        let wake = {
            let (join, routes, status) = match state.speaker.as_mut() {
                Some(task) => (
                    Some(&mut task.join),
                    Some(&mut task.routes),
                    Some(&mut task.status),
                ),
                None => (None, None, None),
            };
            let drift_soon = state.drift_soon;
            tokio::select! {
                biased;
                () = shutdown.recv() => Wake::Shutdown,
                result = speaker_ended(join) => Wake::SpeakerEnded(result),
                changed = view_rx.changed() => if changed.is_err() { Wake::ViewGone } else { Wake::View },
                changed = config_rx.changed() => if changed.is_err() { Wake::ViewGone } else { Wake::Step },
                Some(batch) = next_routes(routes) => Wake::Routes(batch),
                () = status_changed(status) => Wake::BgpStatus,
                () = state.programmer.kernel_changed() => Wake::Kernel,
                _ = tick.tick() => Wake::Tick,
                () = tokio::time::sleep_until(drift_soon.unwrap_or_else(tokio::time::Instant::now)),
                    if drift_soon.is_some() => Wake::DriftSoon,
            }
        };
        match wake {
            Wake::Shutdown => {
                planned_stop(&state).await;
                return Ok(());
            }
            Wake::SpeakerEnded(result) => return speaker_result(result),
            Wake::ViewGone => break,
            Wake::Routes(batch) => state.stage_bgp(batch),
            Wake::View => state.view_seen = Some(std::time::Instant::now()),
            // Someone changed routes: look at the kernel again soon (drift).
            Wake::Kernel => {
                let soon = tokio::time::Instant::now() + DRIFT_AFTER_KERNEL_CHANGE;
                state.drift_soon = Some(state.drift_soon.map_or(soon, |t| t.min(soon)));
            }
            Wake::Tick => state.drift_owed = true,
            Wake::DriftSoon => {
                state.drift_soon = None;
                state.drift_owed = true;
            }
            Wake::BgpStatus => {
                if let Some(task) = &mut state.speaker {
                    state.bgp = task.status.borrow_and_update().clone();
                }
            }
            Wake::Step => {}
        }

        let update = view_rx.borrow_and_update().clone();
        let resources = config_rx.borrow_and_update().clone();
        // A signal also ends a long step (a bulk flush of a million routes): the kernel keeps
        // what was written, and the next agent's first pass takes over from there.
        tokio::select! {
            biased;
            () = shutdown.recv() => {
                planned_stop(&state).await;
                return Ok(());
            }
            result = step(&ctx, &mut state, &update, &resources) => result?,
        }
        ctx.heartbeat.beat();
    }
    Ok(())
}

/// A SIGTERM: kernel routes stay, BGP connections just close (peers keep our routes by
/// graceful restart), and BFD says AdminDown first so that peers take this for a planned
/// stop, not a failure (RFC 5882 §3.2), and do not drop those routes at once.
async fn planned_stop(state: &LoopState) {
    tracing::info!("shutting down; kernel routes and peers' routes stay as they are");
    let bfd = state
        .speaker
        .as_ref()
        .and_then(|s| s.bfd.lock().ok().and_then(|b| b.clone()));
    if let Some(bfd) = bfd {
        let _ = tokio::time::timeout(std::time::Duration::from_secs(1), bfd.shutdown()).await;
    }
}

/// The agent's result once the speaker task ended.
fn speaker_result(
    result: Result<Result<(), SpeakerError>, tokio::task::JoinError>,
) -> Result<(), AgentError> {
    match result {
        Ok(Ok(())) => Ok(()),
        Ok(Err(e)) => Err(e.into()),
        Err(e) => Err(AgentError::SpeakerTask(e.to_string())),
    }
}

/// The running speaker task and its channels.
#[derive(Debug)]
struct SpeakerTask {
    input: watch::Sender<Option<SpeakerInput>>,
    routes: mpsc::Receiver<RouteBatch>,
    status: watch::Receiver<BgpStatus>,
    join: SpeakerJoin,
    /// The speaker's BFD task while it runs.
    bfd: Arc<std::sync::Mutex<Option<crate::bfd::driver::BfdHandle>>>,
}

/// How soon after a kernel notification the drift check looks again (the programmer
/// repairs what it can first).
const DRIFT_AFTER_KERNEL_CHANGE: std::time::Duration = std::time::Duration::from_millis(500);

impl SpeakerTask {
    /// Starts the speaker. `restarted`: podroute's routes were already in the kernel.
    fn spawn(ctx: Arc<Context>, restarted: bool) -> Self {
        let (input, input_rx) = watch::channel(None);
        let (routes_tx, routes) = mpsc::channel(ROUTE_BATCHES);
        let (status_tx, status) = watch::channel(BgpStatus::default());
        let bfd = Arc::new(std::sync::Mutex::new(None));
        let outputs = SpeakerOutputs {
            routes: routes_tx,
            status: status_tx,
            bfd: bfd.clone(),
        };
        let join = tokio::spawn(run_speaker(ctx, input_rx, outputs, restarted));
        Self {
            input,
            routes,
            status,
            join,
            bfd,
        }
    }
}

/// What the loop keeps between steps. The routes themselves live in the speaker (BGP) and
/// in the kernel (the programmer's cache of it); the loop keeps only what it staged for the
/// own pod CIDRs and what it wrote for CNI.
#[derive(Debug)]
struct LoopState {
    programmer: RouteProgrammer,
    /// Drift's fresh look at the kernel.
    probe: KernelProbe,
    drift: DriftTracker,
    last_drift: DriftReport,
    kernel_verdicts: std::collections::BTreeMap<ipnetwork::IpNetwork, KernelVerdict>,
    /// A drift check runs at the next pass that gets past the initial sync: set at start, on
    /// every reconcile tick, and when `drift_soon` fires.
    drift_owed: bool,
    /// When to look again after the kernel reported a change.
    drift_soon: Option<tokio::time::Instant>,
    /// Route changes staged and not flushed yet: when their cause arrived, what it was, how
    /// many (the convergence histogram).
    converging: Vec<(std::time::Instant, Trigger, usize)>,
    /// When the agent started (the startup grace of CNI readiness).
    started: tokio::time::Instant,
    /// When the loop last saw a new view (a Node event).
    view_seen: Option<std::time::Instant>,
    /// Own pod CIDRs staged as blackholes.
    own_cidrs: Vec<ipnetwork::IpNetwork>,
    /// Started at the first usable view, after the first flush (so it knows whether routes
    /// survived a restart).
    speaker: Option<SpeakerTask>,
    /// The speaker's latest status.
    bgp: BgpStatus,
    conflist_written_for: Option<Vec<ipnetwork::IpNetwork>>,
    logged_waiting_for_cidr: bool,
    logged_view_error: Option<ViewError>,
    /// The unusable BGPPeers last logged.
    logged_invalid: std::collections::BTreeMap<String, String>,
    /// The CNI readiness file, when the agent keeps one.
    readiness_file: Option<ReadinessFile>,
    /// The state last written to (or read from) the state file.
    persisted: Option<Arc<crate::persist::State>>,
}

/// Why the loop woke up.
enum Wake {
    Shutdown,
    SpeakerEnded(Result<Result<(), SpeakerError>, tokio::task::JoinError>),
    ViewGone,
    Routes(RouteBatch),
    /// The speaker published a new status.
    BgpStatus,
    /// The Node watcher published a new view.
    View,
    /// The kernel reported a change the programmer has work for.
    Kernel,
    /// The reconcile period passed.
    Tick,
    /// Time to look at the kernel again after it reported a change.
    DriftSoon,
    Step,
}

type SpeakerJoin = tokio::task::JoinHandle<Result<(), SpeakerError>>;

async fn speaker_ended(
    join: Option<&mut SpeakerJoin>,
) -> Result<Result<(), SpeakerError>, tokio::task::JoinError> {
    match join {
        Some(join) => join.await,
        None => std::future::pending().await,
    }
}

async fn next_routes(routes: Option<&mut mpsc::Receiver<RouteBatch>>) -> Option<RouteBatch> {
    match routes {
        Some(routes) => routes.recv().await,
        None => std::future::pending().await,
    }
}

async fn status_changed(status: Option<&mut watch::Receiver<BgpStatus>>) {
    // A closed channel means the speaker ended; `speaker_ended` reports why.
    let open = match status {
        Some(status) => status.changed().await.is_ok(),
        None => false,
    };
    if !open {
        std::future::pending::<()>().await;
    }
}

impl LoopState {
    /// Stages Loc-RIB changes (and further queued batches, up to [`STAGE_ROUTES`] changes)
    /// for the kernel. The node's own pod CIDRs stay blackholes whatever BGP says.
    ///
    /// Bounded: the speaker refills the channel as fast as this drains it, so draining until
    /// empty would stage a whole million-route feed (18 bytes a route in the programmer's
    /// queue) before the first flush. A flush between bounded stages keeps the queue small and
    /// starts installing sooner.
    fn stage_bgp(&mut self, first: RouteBatch) {
        let mut batch = Some(first);
        let mut staged = 0;
        while let Some(RouteBatch { changes, cause }) = batch {
            staged += changes.len();
            if let Some((at, trigger)) = cause {
                self.converging.push((at, trigger, changes.len()));
            }
            for change in changes {
                if self.own_cidrs.contains(&change.prefix) {
                    continue;
                }
                let intent = RouteIntent::via_all(change.next_hops.as_slice());
                self.programmer.stage(change.prefix, intent);
            }
            if staged >= STAGE_ROUTES {
                break;
            }
            batch = self
                .speaker
                .as_mut()
                .and_then(|task| task.routes.try_recv().ok());
        }
    }

    /// Stages the own pod CIDRs as blackholes (and drops ones that are no longer ours).
    fn stage_own(&mut self, cidrs: Vec<ipnetwork::IpNetwork>) {
        if cidrs == self.own_cidrs {
            return;
        }
        let changed = cidrs
            .iter()
            .filter(|c| !self.own_cidrs.contains(c))
            .chain(self.own_cidrs.iter().filter(|c| !cidrs.contains(c)))
            .count();
        if let Some(at) = self.view_seen {
            self.converging.push((at, Trigger::NodeEvent, changed));
        }
        for old in &self.own_cidrs {
            if !cidrs.contains(old) {
                self.programmer.stage(*old, None);
            }
        }
        for cidr in &cidrs {
            self.programmer.stage(*cidr, Some(RouteIntent::Blackhole));
        }
        self.own_cidrs = cidrs;
    }
}

/// Keeps `view` and `resources` (without Secret data) in the state file when they differ
/// from what the file holds.
fn persist_state(
    ctx: &Context,
    state: &mut LoopState,
    view: &ClusterView,
    resources: &ClusterResources,
) {
    let Some(path) = &ctx.config.state_file else {
        return;
    };
    if state.persisted.as_deref().is_some_and(|p| {
        p.view == *view
            && p.resources.peers == resources.peers
            && p.resources.configuration == resources.configuration
    }) {
        return;
    }
    let kept = crate::persist::State::new(view.clone(), resources);
    match crate::persist::save(path, &kept) {
        Ok(()) => state.persisted = Some(Arc::new(kept)),
        Err(error) => {
            tracing::warn!(%error, "could not keep the cluster view on the node");
            ctx.metrics
                .errors
                .with_label_values(&[error.metric_label()])
                .inc();
        }
    }
}

/// One pass: view → speaker input and own routes; staged routes → kernel; drift, readiness.
#[tracing::instrument(name = "reconcile", skip_all)]
async fn step(
    ctx: &Arc<Context>,
    state: &mut LoopState,
    update: &ViewUpdate,
    resources: &ConfigUpdate,
) -> Result<(), AgentError> {
    // The initial sync waits for Nodes, BGPPeers, the BGPConfiguration and their Secrets (a
    // loaded state file stands in for both until the API answers).
    if !update.synced || !resources.synced {
        return Ok(());
    }
    let view: Arc<ClusterView> = match &update.view {
        Ok(view) => {
            state.logged_view_error = None;
            persist_state(ctx, state, view, &resources.resources);
            view.clone()
        }
        Err(error) => {
            // At start a wrong NODE_NAME is fatal; later (node deleted) keep routes, not ready.
            if state.conflist_written_for.is_none() && matches!(error, ViewError::OwnNodeMissing(_))
            {
                return Err(error.clone().into());
            }
            if state.logged_view_error.as_ref() != Some(error) {
                tracing::error!(%error, "no usable view of the own node; routes left as they are");
                state.logged_view_error = Some(error.clone());
            }
            ctx.update_status(|s| {
                s.ready = false;
                s.not_ready_reason = Some(error.to_string());
            });
            set_cni_readiness(ctx, state, false);
            return Ok(());
        }
    };
    for problem in view
        .own
        .problems
        .iter()
        .chain(view.peers.values().flat_map(|p| &p.problems))
    {
        tracing::debug!(?problem, "Node problem");
    }

    let defaults = FlagDefaults {
        as_number: ctx.config.as_number,
        mesh_md5_password: ctx.config.mesh_md5_password.clone(),
        mesh_gtsm: ctx.config.mesh_gtsm,
    };
    let from_resources = cluster_peers(&resources.resources, &view, &defaults);
    let invalid: std::collections::BTreeMap<String, String> = from_resources
        .invalid
        .iter()
        .map(|(name, why)| (name.clone(), why.to_string()))
        .collect();
    if invalid != state.logged_invalid {
        for (name, why) in &invalid {
            if state.logged_invalid.get(name) != Some(why) {
                tracing::warn!(bgppeer = %name, reason = %why, "BGPPeer not used on this node; other sessions carry on");
                ctx.events.send(crate::events::AgentEvent::ConfigRejected {
                    resource: rejected_resource(name),
                    why: why.clone(),
                });
            }
        }
        state.logged_invalid = invalid.clone();
    }
    let mut peers = mesh_peers(&view, &from_resources.mesh);
    // A peerSelector BGPPeer's session to a node wins over the mesh's to the same node.
    peers.extend(from_resources.nodes.clone());
    add_static_peers(&mut peers, &from_resources.routers);
    // `--bgp-peer` last: an operator's flag wins over a resource for the same address.
    add_static_peers(&mut peers, &ctx.config.static_peers);
    let advertised: Vec<_> = view.own.routable_cidrs().collect();
    state.stage_own(advertised.iter().map(|(cidr, _)| *cidr).collect());

    let has_cidr = view.own_has_pod_cidr();
    if !has_cidr && !state.logged_waiting_for_cidr {
        tracing::info!(node = %view.own.name, "waiting for the node's pod CIDR (spec.podCIDRs)");
        state.logged_waiting_for_cidr = true;
    }

    // Routes a previous run left in the kernel stay until BGP has told this run about them
    // again: the mesh's after the initial sync, a router's after its End-of-RIB (an agent
    // restarted before its router session is back must not pull the router's routes for
    // the seconds that takes), all of them once the startup grace runs out.
    let grace_over = state.started.elapsed() >= ctx.config.startup_grace;
    let initial_sync_done = state.bgp.initial_sync_done;
    let remove_stale = initial_sync_done && (state.bgp.routers_synced || grace_over);
    let flush_started = std::time::Instant::now();
    let flushed = match state.programmer.flush(remove_stale).await {
        Ok(report) => Some(report),
        Err(error) => {
            tracing::warn!(%error, "route flush failed; retrying on the next change or tick");
            ctx.metrics
                .errors
                .with_label_values(&[error.metric_label()])
                .inc();
            if !matches!(error, KernelError::Write(_)) {
                ctx.metrics.netlink_dump_failed();
            }
            None
        }
    };
    let flush_done = std::time::Instant::now();
    if let Some(report) = &flushed {
        ctx.metrics.observe_flush(
            flush_done.duration_since(flush_started).as_secs_f64(),
            report.full_pass,
        );
        for (at, trigger, routes) in state.converging.drain(..) {
            let seconds = flush_done.saturating_duration_since(at).as_secs_f64();
            ctx.metrics.observe_convergence(trigger, seconds, routes);
        }
    }
    ctx.metrics
        .observe_batches(&state.programmer.take_batch_sizes());
    ctx.metrics
        .observe_route_counters(state.programmer.counters());

    // The speaker starts once the kernel was looked at: routes found there mean this is a
    // restart with forwarding preserved (graceful restart's F bit).
    if state.speaker.is_none() {
        let restarted = state.programmer.installed() > state.own_cidrs.len();
        state.speaker = Some(SpeakerTask::spawn(ctx.clone(), restarted));
    }
    let mesh_peers_count = peers
        .values()
        .filter(|p| matches!(p.kind, crate::peers::PeerKind::Mesh { .. }))
        .count();
    let input = SpeakerInput {
        peers: peers.clone(),
        view: view.clone(),
        advertised,
        max_paths: from_resources.max_paths,
    };
    if let Some(task) = &state.speaker {
        task.input.send_if_modified(|current| {
            let changed = current.as_ref() != Some(&input);
            if changed {
                *current = Some(input);
            }
            changed
        });
    }

    // Drift, over the routes the API expects (the mesh), never the whole table: the kernel
    // looked at afresh every reconcile period and soon after it reported a change.
    if std::mem::take(&mut state.drift_owed) {
        let expected = expected_routes(&view);
        match state.probe.check(&expected).await {
            Ok(verdicts) => state.kernel_verdicts = verdicts,
            Err(error) => {
                tracing::warn!(%error, "looking at the kernel for drift failed");
                ctx.metrics.netlink_dump_failed();
            }
        }
        let drift = compute_drift(&expected, &state.bgp.mesh_best, &state.kernel_verdicts);
        let events = state.drift.update(expected.keys().copied(), &drift);
        for event in &events {
            tracing::warn!(
                kind = event.label(),
                "route drift: an expected route is no longer as the API says"
            );
        }
        ctx.metrics.observe_drift(&drift, &events);
        state.last_drift = drift;
        observe_address_usage(ctx, &state.own_cidrs);
    }
    let drift = state.last_drift.clone();
    ctx.metrics
        .set_installed(state.programmer.installed_by_family());
    ctx.metrics
        .route_collisions
        .set(state.programmer.collisions() as i64);
    ctx.metrics
        .routes_unresolvable
        .set(state.programmer.unresolvable() as i64);

    // Ready means routed: the own pod CIDR known, its blackhole in place and advertised ...
    let own_cidrs = state.own_cidrs.clone();
    let programmed =
        flushed.is_some() && own_cidrs.iter().all(|c| state.programmer.is_installed(c));
    // ... the initial BGP sync done (or given up on) and End-of-RIB from every established
    // mesh peer, so a new node's pods do not start before it can reach the others ...
    let synced = initial_sync_done && state.bgp.mesh_unsynced == 0;
    // ... and every mesh route BGP has in the FIB, as a fresh look at the kernel says. A
    // router's prefix that cannot be installed does not count: only Node pod CIDRs do.
    let unrouted: Vec<_> = state
        .bgp
        .mesh_best
        .keys()
        .filter(|p| state.kernel_verdicts.get(p) != Some(&KernelVerdict::InPlace))
        .copied()
        .collect();
    let ready = has_cidr && programmed && state.bgp.own_advertised && synced && unrouted.is_empty();
    // A restarted agent finds the conflist its predecessor wrote: pods can go on being wired
    // (the routes stayed) while this one resyncs.
    if state.conflist_written_for.is_none()
        && has_cidr
        && ctx.config.cni.as_ref().is_some_and(|settings| {
            cni_conf::is_current(settings, &own_cidrs, ctx.config.route_protocol)
        })
    {
        state.conflist_written_for = Some(own_cidrs.clone());
    }
    if ready
        && state.conflist_written_for.as_ref() != Some(&own_cidrs)
        && write_conflist(ctx, &own_cidrs)
    {
        state.conflist_written_for = Some(own_cidrs.clone());
    }
    // CNI STATUS: pods can be wired once the plugin has its configuration, while the node
    // has a pod CIDR, and unless peers exist but no mesh route made it into the kernel
    // after the startup grace. A single route that cannot be installed holds /readyz back,
    // not pod creation; the file stays when the agent exits (routes and plugin go on).
    let mesh_routed = mesh_peers_count == 0 || drift.in_kernel > own_cidrs.len();
    let cni_ready = state.conflist_written_for.is_some()
        && has_cidr
        && programmed
        && (mesh_routed || !grace_over);
    set_cni_readiness(ctx, state, cni_ready);
    let reason = if !has_cidr {
        Some("the node has no pod CIDR yet".to_owned())
    } else if !programmed {
        Some("routes not programmed yet".to_owned())
    } else if !initial_sync_done {
        Some("waiting for the initial BGP sync (End-of-RIB from every mesh peer)".to_owned())
    } else if state.bgp.mesh_unsynced > 0 {
        Some(format!(
            "waiting for End-of-RIB from {} established mesh peer(s)",
            state.bgp.mesh_unsynced
        ))
    } else if !state.bgp.own_advertised {
        Some("the own pod CIDRs are not advertised yet".to_owned())
    } else {
        unrouted.first().map(|first| {
            format!(
                "{} mesh route(s) not in the kernel, e.g. {first}",
                unrouted.len()
            )
        })
    };
    let routes_installed = state.programmer.installed();
    ctx.update_status(|s| {
        s.ready = ready;
        s.not_ready_reason = reason;
        s.view_synced = true;
        s.own_pod_cidrs = own_cidrs;
        s.peers = peers.len();
        s.stale_removal_allowed = remove_stale;
        s.routes_installed = routes_installed;
        s.drift = drift;
        s.invalid_peers = invalid;
    });
    Ok(())
}

/// Writes the conflist (if configured); true when done or not wanted.
fn write_conflist(ctx: &Context, cidrs: &[ipnetwork::IpNetwork]) -> bool {
    let Some(settings) = &ctx.config.cni else {
        tracing::info!("node ready");
        return true;
    };
    let path = settings.conflist.display();
    match cni_conf::write(settings, cidrs, ctx.config.route_protocol) {
        Ok(()) => {
            tracing::info!(%path, "node ready; CNI configuration written");
            true
        }
        Err(error) => {
            tracing::error!(%path, %error, "writing the CNI configuration failed");
            ctx.metrics
                .errors
                .with_label_values(&["cni_conflist"])
                .inc();
            false
        }
    }
}

/// Publishes how full the own pod CIDRs are, from the CNI plugin's address store.
fn observe_address_usage(ctx: &Context, own_cidrs: &[ipnetwork::IpNetwork]) {
    let Some(settings) = &ctx.config.cni else {
        return;
    };
    match cni_conf::address_usage(settings, own_cidrs) {
        Ok(usage) => ctx.metrics.set_address_usage(&usage),
        Err(error) => {
            tracing::warn!(%error, "reading the CNI plugin's address store failed");
            ctx.metrics
                .errors
                .with_label_values(&["cni_address_store"])
                .inc();
        }
    }
}

/// Brings the CNI readiness file (if kept) in line with `ready`; failures are logged and
/// counted, and retried at the next step.
fn set_cni_readiness(ctx: &Context, state: &mut LoopState, ready: bool) {
    let Some(file) = &mut state.readiness_file else {
        return;
    };
    match file.set(ready) {
        Ok(()) => {}
        Err(error) => {
            tracing::error!(%error, "CNI STATUS may report the wrong readiness");
            ctx.metrics
                .errors
                .with_label_values(&["cni_readiness_file"])
                .inc();
        }
    }
}

/// SIGTERM and SIGINT, listened to from start to end.
#[derive(Debug)]
struct Shutdown {
    term: tokio::signal::unix::Signal,
    interrupt: tokio::signal::unix::Signal,
}

impl Shutdown {
    fn install() -> Result<Self, AgentError> {
        use tokio::signal::unix::{SignalKind, signal};
        Ok(Self {
            term: signal(SignalKind::terminate()).map_err(AgentError::Signal)?,
            interrupt: signal(SignalKind::interrupt()).map_err(AgentError::Signal)?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.term.recv() => {}
            _ = self.interrupt.recv() => {}
        }
    }
}

/// A resource the node cannot use, kind/name, from its key in [`ClusterPeers::invalid`]
/// (a BGPPeer's name, which cannot hold a `/`, or `BGPConfiguration/default`).
///
/// [`ClusterPeers::invalid`]: crate::cluster_peers::ClusterPeers::invalid
fn rejected_resource(key: &str) -> String {
    if key.contains('/') {
        key.to_owned()
    } else {
        format!("BGPPeer/{key}")
    }
}
