//! The agent's main loop: wires the Node watcher, the BGP speaker and the route reconciler.
//!
//! Level-triggered: any change of the view or of the BGP routes, and a periodic tick, runs one
//! reconcile from the current state. Stale podroute routes are removed only once the view is
//! complete (Node list done) and BGP has synced (End-of-RIB from every peer) or the start-up
//! grace period is over. If the API server goes away the view stays as it was, so nothing
//! changes until it returns.

use std::path::PathBuf;
use std::sync::Arc;

use k8s_openapi::api::core::v1::Node;
use kube::Api;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::cni_conf::{self, ReadinessFile};
use crate::config::Config;
use crate::context::Context;
use crate::drift::compute_drift;
use crate::metrics::Metrics;
use crate::peers::{MeshOptions, mesh_peers};
use crate::routes::RouteProgrammer;
use crate::routes::desired::{desired_routes, expected_routes};
use crate::routes::kernel::{self, KernelError};
use crate::speaker::session::SessionFactory;
use crate::speaker::{BgpOutput, SpeakerError, SpeakerInput, run_speaker};
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

/// Runs the agent until a fatal error or SIGTERM/SIGINT. Routes stay in the kernel on exit.
pub async fn run(config: Config, factory: SessionFactory) -> Result<(), AgentError> {
    let client = kube_client(config.kubeconfig.as_ref()).await?;
    let ctx = Arc::new(Context::new(config, Metrics::new()?));

    let http = tokio::net::TcpListener::bind(ctx.config.http_listen)
        .await
        .map_err(|source| AgentError::HttpBind {
            address: ctx.config.http_listen,
            source,
        })?;
    tokio::spawn(crate::http::serve(ctx.clone(), http));

    let (view_tx, mut view_rx) = watch::channel(ViewUpdate::initial());
    tokio::spawn(run_node_watch(
        Api::<Node>::all(client),
        ctx.config.node_name.clone(),
        ctx.config.node_ip_override,
        view_tx,
    ));

    let (speaker_tx, speaker_rx) = watch::channel(None);
    let (bgp_tx, mut bgp_rx) = watch::channel(BgpOutput::default());
    let speaker = tokio::spawn(run_speaker(ctx.clone(), factory, speaker_rx, bgp_tx));

    if ctx.config.cni.is_some() {
        // This agent runs the node's CNI: destroy pod veths whose namespace outlived DEL.
        tokio::spawn(crate::veth_sweep::run(
            kernel::connect()?,
            ctx.config.reconcile_period,
            ctx.metrics.clone(),
        ));
    }
    let mut reconciler = RouteProgrammer::new(ctx.config.route_protocol)?;
    let mut tick = tokio::time::interval(ctx.config.reconcile_period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let started = Instant::now();
    let mut state = LoopState {
        readiness_file: ctx
            .config
            .cni
            .as_ref()
            .and_then(|c| c.readiness_file.clone())
            .map(ReadinessFile::new),
        ..LoopState::default()
    };
    let mut speaker = std::pin::pin!(speaker);

    loop {
        tokio::select! {
            changed = view_rx.changed() => if changed.is_err() { break },
            // The speaker dropped its output: it ended, and its result says why.
            changed = bgp_rx.changed() => if changed.is_err() { return speaker_result((&mut speaker).await) },
            _ = tick.tick() => {}
            // A podroute route removed by someone else, a foreign route for one of ours, …
            () = reconciler.kernel_changed() => {}
            _ = tokio::time::sleep_until(started + ctx.config.startup_grace), if !state.grace_over => {
                state.grace_over = true;
            }
            result = &mut speaker => return speaker_result(result),
            _ = shutdown_signal() => {
                tracing::info!("shutting down; kernel routes and peers' routes stay as they are");
                return Ok(());
            }
        }
        let update = view_rx.borrow_and_update().clone();
        let bgp = bgp_rx.borrow_and_update().clone();
        step(
            &ctx,
            &mut reconciler,
            &mut state,
            &update,
            &bgp,
            &speaker_tx,
        )
        .await?;
    }
    Ok(())
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

/// What the loop remembers between steps.
#[derive(Debug, Default)]
struct LoopState {
    grace_over: bool,
    conflist_written_for: Option<Vec<ipnetwork::IpNetwork>>,
    logged_waiting_for_cidr: bool,
    logged_view_error: Option<ViewError>,
    /// The CNI readiness file, when the agent keeps one.
    readiness_file: Option<ReadinessFile>,
}

/// One pass: view + BGP → speaker input, kernel routes, drift, readiness.
async fn step(
    ctx: &Context,
    reconciler: &mut RouteProgrammer,
    state: &mut LoopState,
    update: &ViewUpdate,
    bgp: &BgpOutput,
    speaker_tx: &watch::Sender<Option<SpeakerInput>>,
) -> Result<(), AgentError> {
    if !update.synced {
        return Ok(());
    }
    let view: Arc<ClusterView> = match &update.view {
        Ok(view) => {
            state.logged_view_error = None;
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

    let options = MeshOptions {
        as_number: ctx.config.as_number,
        md5_password: ctx.config.mesh_md5_password.clone(),
        gtsm: ctx.config.mesh_gtsm,
    };
    let mut peers = mesh_peers(&view, &options);
    add_static_peers(&mut peers, &ctx.config.static_peers);
    let advertised: Vec<_> = view.own.routable_cidrs().collect();
    let input = SpeakerInput {
        peers: peers.clone(),
        view: view.clone(),
        advertised,
    };
    speaker_tx.send_if_modified(|current| {
        let changed = current.as_ref() != Some(&input);
        if changed {
            *current = Some(input);
        }
        changed
    });

    let has_cidr = view.own_has_pod_cidr();
    if !has_cidr && !state.logged_waiting_for_cidr {
        tracing::info!(node = %view.own.name, "waiting for the node's pod CIDR (spec.podCIDRs)");
        state.logged_waiting_for_cidr = true;
    }

    let remove_stale = bgp.initial_sync_done || state.grace_over;
    let mut desired = desired_routes(&view, &bgp.learned);
    // Routes from external peers passed their import list; a node's own or mesh route for the
    // same prefix wins.
    for (prefix, next_hop) in &bgp.external {
        desired
            .entry(*prefix)
            .or_insert(crate::routes::RouteIntent::Via(*next_hop));
    }
    // The whole desired set for now; the speaker's Loc-RIB changes can be staged directly.
    reconciler.stage_difference(&desired);
    let report = match reconciler.flush(remove_stale).await {
        Ok(report) => Some(report),
        Err(error) => {
            tracing::warn!(%error, "route flush failed; retrying on the next change or tick");
            ctx.metrics
                .errors
                .with_label_values(&[error.metric_label()])
                .inc();
            None
        }
    };
    ctx.metrics.observe_route_counters(reconciler.counters());

    let expected = expected_routes(&view);
    // Drift compares with what the Node objects say; externally learned routes are not part
    // of that.
    let installed: Vec<_> = report
        .as_ref()
        .map(|_| {
            reconciler
                .installed_routes()
                .filter(|p| !bgp.external.contains_key(p) || expected.contains_key(p))
                .collect()
        })
        .unwrap_or_default();
    let drift = compute_drift(&expected, &bgp.learned, &installed);
    ctx.metrics.observe_drift(&drift);
    if report.is_some() {
        // The programmer logs next hops as they become unreachable.
        ctx.metrics
            .routes_installed
            .set(reconciler.installed() as i64);
        ctx.metrics
            .route_collisions
            .set(reconciler.collisions() as i64);
        ctx.metrics
            .routes_unresolvable
            .set(reconciler.unresolvable() as i64);
    }

    // Ready once the own pod CIDR is known and its routes (the blackholes) are in place ...
    let own_cidrs: Vec<_> = view.own.routable_cidrs().map(|(c, _)| c).collect();
    let programmed = report.is_some() && own_cidrs.iter().all(|c| reconciler.is_installed(c));
    // ... and the initial BGP sync is done (or given up on), so a new node's pods do not start
    // before it can reach the others.
    let ready = has_cidr && programmed && remove_stale;
    if ready
        && state.conflist_written_for.as_ref() != Some(&own_cidrs)
        && write_conflist(ctx, &own_cidrs)
    {
        state.conflist_written_for = Some(own_cidrs.clone());
    }
    // CNI STATUS says ready once the plugin has its configuration, and no longer when the
    // agent stops being ready (the file stays when the agent exits: routes and plugin go on).
    set_cni_readiness(ctx, state, ready && state.conflist_written_for.is_some());
    let reason = if !has_cidr {
        Some("the node has no pod CIDR yet".to_owned())
    } else if !programmed {
        Some("routes not programmed yet".to_owned())
    } else if !remove_stale {
        Some("waiting for the initial BGP sync (End-of-RIB from every peer)".to_owned())
    } else {
        None
    };
    ctx.update_status(|s| {
        s.ready = ready;
        s.not_ready_reason = reason;
        s.view_synced = true;
        s.own_pod_cidrs = own_cidrs;
        s.peers = peers.len();
        s.stale_removal_allowed = remove_stale;
        s.routes_installed = report.map_or(installed.len(), |_| reconciler.installed());
        s.drift = drift;
        s.bgp_peers = bgp.peers.clone();
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

async fn shutdown_signal() {
    use tokio::signal::unix::{SignalKind, signal};
    let Ok(mut term) = signal(SignalKind::terminate()) else {
        return std::future::pending().await;
    };
    tokio::select! {
        _ = term.recv() => {}
        _ = tokio::signal::ctrl_c() => {}
    }
}
