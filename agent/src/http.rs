//! The HTTP server: `/healthz` (the main loop turns), `/readyz` (the node's pod network is
//! ready), `/metrics` (Prometheus text) and `/status` (JSON for operators).

use std::sync::Arc;

use axum::Router;
use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::get;

use crate::context::Context;

/// Serves until the listener fails.
pub async fn serve(ctx: Arc<Context>, listener: tokio::net::TcpListener) -> std::io::Result<()> {
    axum::serve(listener, router(ctx)).await
}

/// The routes of the HTTP server.
pub fn router(ctx: Arc<Context>) -> Router {
    Router::new()
        .route("/healthz", get(healthz))
        .route("/readyz", get(readyz))
        .route("/metrics", get(metrics))
        .route("/status", get(status))
        .with_state(ctx)
}

/// Live while the main loop turns (see [`crate::context::Heartbeat`]).
async fn healthz(State(ctx): State<Arc<Context>>) -> (StatusCode, String) {
    match ctx.heartbeat.stuck_for() {
        None => (StatusCode::OK, "ok\n".into()),
        Some(silent) => (
            StatusCode::SERVICE_UNAVAILABLE,
            format!(
                "stuck: the main loop has not turned for {}s\n",
                silent.as_secs()
            ),
        ),
    }
}

async fn readyz(State(ctx): State<Arc<Context>>) -> (StatusCode, String) {
    let status = ctx.status();
    if status.ready {
        (StatusCode::OK, "ready\n".into())
    } else {
        let reason = status.not_ready_reason.unwrap_or_default();
        (
            StatusCode::SERVICE_UNAVAILABLE,
            format!("not ready: {reason}\n"),
        )
    }
}

async fn metrics(State(ctx): State<Arc<Context>>) -> String {
    ctx.metrics.render()
}

async fn status(State(ctx): State<Arc<Context>>) -> String {
    let s = ctx.status();
    let list = |v: &[ipnetwork::IpNetwork]| v.iter().map(ToString::to_string).collect::<Vec<_>>();
    let since = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let json = serde_json::json!({
        "node": ctx.config.node_name,
        "ready": s.ready,
        "notReadyReason": s.not_ready_reason,
        "viewSynced": s.view_synced,
        "podCIDRs": list(&s.own_pod_cidrs),
        "peers": s.peers,
        "staleRemovalAllowed": s.stale_removal_allowed,
        "routesInstalled": s.routes_installed,
        "routes": {
            "expected": s.drift.expected,
            "installed": s.routes_installed,
            "asExpectedInKernel": s.drift.in_kernel,
            "drifting": s.drift.entries.len(),
        },
        "bgpPeers": s.bgp_peers.iter().map(|p| serde_json::json!({
            "address": p.address.to_string(),
            "source": p.source,
            "type": p.peer_type,
            "peerAS": p.peer_as,
            "state": p.state.to_string(),
            "sinceUnixSeconds": since(p.since),
            "established": p.established,
            "synced": p.synced,
            "receivedPrefixes": p.received,
            "acceptedRoutes": p.accepted,
            "advertisedRoutes": p.advertised,
            "rejectedRoutes": p.rejected,
            "staleRoutes": p.stale,
            "establishedCount": p.established_count,
            "bfd": match p.bfd {
                None => "off",
                Some(podroute_bfd::endpoint::Liveness::Up) => "up",
                Some(podroute_bfd::endpoint::Liveness::Down) => "down",
                Some(podroute_bfd::endpoint::Liveness::AdminDown) => "admin_down",
            },
            "waitingForBfd": p.waiting_for_bfd,
            "updateErrors": {
                "attributeDiscard": p.update_errors.attribute_discard,
                "treatAsWithdraw": p.update_errors.treat_as_withdraw,
                "sessionReset": p.update_errors.session_reset,
            },
            "lastError": p.last_error,
        })).collect::<Vec<_>>(),
        "drift": s.drift.entries.iter().map(|e| serde_json::json!({
            "prefix": e.prefix.to_string(),
            "kind": e.kind.label(),
            "expected": crate::drift::describe(&e.expected),
        })).collect::<Vec<_>>(),
        "invalidPeers": s.invalid_peers,
    });
    let mut text = serde_json::to_string_pretty(&json).unwrap_or_default();
    text.push('\n');
    text
}
