//! Publishes this node's [`BGPNodeStatus`]: the agent's status (peers, readiness, routes) for
//! the whole cluster to read, without asking each node.
//!
//! Written by server-side apply (field manager `podroute-agent`): the object once, owned by
//! the Node (so it is deleted with it), then its `status` whenever what it says changed,
//! looked at every [`PUBLISH_INTERVAL`]. A thousand nodes thus write at most a hundred
//! statuses a second, and none while nothing changes. Without the CRD (a cluster that did not
//! apply `manifests/crds.yaml`) it says so once and tries again every [`NO_CRD_RETRY`].

use std::sync::Arc;
use std::time::Duration;

use k8s_openapi::api::core::v1::Node;
use k8s_openapi::apimachinery::pkg::apis::meta::v1::OwnerReference;
use kube::api::{Api, Patch, PatchParams};

use crate::context::{AgentStatus, Context};
use crate::crd::bgp_node_status::{BGPNodeStatus, NodeBgpState, PeerState, RouteCounts};

/// How often the status is looked at (and written when it changed).
pub const PUBLISH_INTERVAL: Duration = Duration::from_secs(10);
/// How long to wait after the API said it has no BGPNodeStatus resource.
pub const NO_CRD_RETRY: Duration = Duration::from_secs(60);
const FIELD_MANAGER: &str = "podroute-agent";

/// Where in each [`PUBLISH_INTERVAL`] node `node_name` writes: a fixed offset from a hash of
/// its name. Agents started together (a cluster's cold start, a DaemonSet rollout) would
/// otherwise all write in the same instant of every interval: 100 server-side-apply patches
/// at once, which at 100 nodes slowed the Node changes that met them.
pub fn publish_phase(node_name: &str) -> Duration {
    use std::hash::{Hash, Hasher};
    // Fixed keys: the same phase for the same name with the same build.
    let mut hasher = std::collections::hash_map::DefaultHasher::new();
    node_name.hash(&mut hasher);
    let interval_ms = u64::try_from(PUBLISH_INTERVAL.as_millis()).unwrap_or(u64::MAX);
    Duration::from_millis(hasher.finish() % interval_ms)
}

/// What the agent's status says, as the resource's status.
pub fn node_state(status: &AgentStatus) -> NodeBgpState {
    let since = |t: std::time::SystemTime| {
        t.duration_since(std::time::UNIX_EPOCH)
            .map_or(0, |d| d.as_secs())
    };
    let count = |n: usize| u64::try_from(n).unwrap_or(u64::MAX);
    NodeBgpState {
        ready: status.ready,
        not_ready_reason: status.not_ready_reason.clone(),
        configured_peers: u32::try_from(status.bgp_peers.len()).unwrap_or(u32::MAX),
        established_peers: u32::try_from(status.bgp_peers.iter().filter(|p| p.established).count())
            .unwrap_or(u32::MAX),
        peers: status
            .bgp_peers
            .iter()
            .map(|p| PeerState {
                address: p.address.to_string(),
                peer_type: p.peer_type.to_owned(),
                as_number: p.peer_as,
                state: p.state.to_string(),
                since_unix_seconds: since(p.since),
                received_prefixes: p.received,
                accepted_routes: count(p.accepted),
                advertised_routes: count(p.advertised),
                last_error: p.last_error.clone(),
            })
            .collect(),
        routes: RouteCounts {
            expected: count(status.drift.expected),
            installed: count(status.routes_installed),
            drifting: count(status.drift.entries.len()),
        },
        rejected_resources: status.invalid_peers.clone(),
    }
}

/// Starts the publisher for Node `node_name`.
pub fn spawn(client: kube::Client, ctx: Arc<Context>) {
    tokio::spawn(run(client, ctx));
}

async fn run(client: kube::Client, ctx: Arc<Context>) {
    let name = ctx.config.node_name.clone();
    let statuses: Api<BGPNodeStatus> = Api::all(client.clone());
    let nodes: Api<Node> = Api::all(client);
    let params = PatchParams::apply(FIELD_MANAGER).force();
    let mut created = false;
    let mut written: Option<NodeBgpState> = None;
    let mut said_no_crd = false;
    // The first look at once (a new node's status shows up without waiting), the later ones
    // at this node's phase of the interval.
    let mut tick = tokio::time::interval_at(
        tokio::time::Instant::now() + publish_phase(&name),
        PUBLISH_INTERVAL,
    );
    // Skip, not Delay: after a long wait (no CRD yet) the next look is back on this node's
    // phase, not at the same instant as every other node that waited.
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Skip);
    let mut first = true;
    loop {
        if !std::mem::take(&mut first) {
            tick.tick().await;
        }
        let state = node_state(&ctx.status());
        if written.as_ref() == Some(&state) {
            continue;
        }
        let result = async {
            if !created {
                let owner = owner(&nodes, &name).await?;
                let object = serde_json::json!({
                    "apiVersion": "podroute.io/v1alpha1",
                    "kind": "BGPNodeStatus",
                    "metadata": { "name": name, "ownerReferences": [owner] },
                    "spec": {},
                });
                statuses
                    .patch(&name, &params, &Patch::Apply(object))
                    .await?;
                created = true;
            }
            let status = serde_json::json!({
                "apiVersion": "podroute.io/v1alpha1",
                "kind": "BGPNodeStatus",
                "status": state,
            });
            statuses
                .patch_status(&name, &params, &Patch::Apply(status))
                .await
        }
        .await;
        match result {
            Ok(_) => {
                written = Some(state);
                said_no_crd = false;
            }
            Err(kube::Error::Api(e)) if e.code == 404 => {
                // The CRD is missing, or someone deleted the object: make it again.
                created = false;
                if !said_no_crd {
                    tracing::info!(
                        "no BGPNodeStatus resource in the cluster (apply manifests/crds.yaml); \
                         the node's status is not published"
                    );
                    said_no_crd = true;
                }
                tokio::time::sleep(NO_CRD_RETRY).await;
            }
            Err(error) => {
                tracing::debug!(%error, "publishing the BGPNodeStatus failed; retrying");
                ctx.metrics.errors.with_label_values(&["node_status"]).inc();
            }
        }
    }
}

/// The Node as the status object's owner (the object goes when the Node is deleted).
async fn owner(nodes: &Api<Node>, name: &str) -> Result<OwnerReference, kube::Error> {
    let node = nodes.get(name).await?;
    Ok(OwnerReference {
        api_version: "v1".to_owned(),
        kind: "Node".to_owned(),
        name: name.to_owned(),
        uid: node.metadata.uid.unwrap_or_default(),
        ..OwnerReference::default()
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn nodes_started_together_write_at_spread_out_times() {
        let phases: Vec<Duration> = (1..=100)
            .map(|i| publish_phase(&format!("node{i}")))
            .collect();
        assert!(phases.iter().all(|p| *p < PUBLISH_INTERVAL));
        // Ten one-second slots of the interval: none holds more than a quarter of the nodes
        // (all in one slot was the old behaviour).
        let mut per_second = [0; 10];
        for p in &phases {
            per_second[p.as_secs() as usize] += 1;
        }
        assert!(per_second.iter().all(|n| *n <= 25), "{per_second:?}");
        assert_eq!(publish_phase("node7"), publish_phase("node7"));
    }

    #[test]
    fn the_resource_says_what_status_says() {
        let status = AgentStatus {
            ready: false,
            not_ready_reason: Some("waiting for End-of-RIB from 1 established mesh peer(s)".into()),
            routes_installed: 3,
            invalid_peers: [("tor".to_owned(), "no such Secret".to_owned())].into(),
            ..AgentStatus::default()
        };
        let state = node_state(&status);
        assert!(!state.ready);
        assert_eq!(state.not_ready_reason, status.not_ready_reason);
        assert_eq!((state.configured_peers, state.established_peers), (0, 0));
        assert_eq!(state.routes.installed, 3);
        assert_eq!(
            state.rejected_resources.get("tor").map(String::as_str),
            Some("no such Secret")
        );
        let json = serde_json::to_value(&state).expect("json");
        assert_eq!(json["routes"]["installed"], 3);
        assert_eq!(json["rejectedResources"]["tor"], "no such Secret");
        assert!(
            json.get("peers")
                .is_some_and(|p| p.as_array().is_some_and(Vec::is_empty))
        );
    }
}
