//! The Node watcher: a kube-rs watcher feeding a reflector store, and a [`ClusterView`]
//! published on a `tokio::sync::watch` channel whenever a field that matters changes.
//!
//! Node heartbeats rewrite `status.conditions` every few seconds; [`NodeFingerprint`] covers only
//! pod CIDRs, addresses, labels and podroute's annotations, so those updates cause no work.
//! `InitDone` (after the first list, and after every re-list when the watch had to restart, e.g.
//! because the API server was away) is treated as a full resync: the view is rebuilt from the
//! store and published only if it differs from the last one, so an outage changes nothing.

use std::collections::HashMap;
use std::hash::{DefaultHasher, Hash, Hasher};
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Node;
use kube::Api;
use kube::runtime::WatchStreamExt;
use kube::runtime::reflector::{self, Store};
use kube::runtime::watcher::{self, Event};
use tokio::sync::watch;

use crate::config::NodeIpOverride;
use crate::view::{ClusterView, ViewError};

/// The latest cluster view as published to the rest of the agent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ViewUpdate {
    /// The view, or why there is none.
    pub view: Result<Arc<ClusterView>, ViewError>,
    /// True once the watcher has listed every Node at least once (first `InitDone`).
    pub synced: bool,
}

impl ViewUpdate {
    /// The state before the first list completes.
    pub fn initial() -> Self {
        Self {
            view: Err(ViewError::NotListedYet),
            synced: false,
        }
    }
}

/// A hash of the Node fields podroute reads; equal fingerprints mean no work.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct NodeFingerprint(u64);

impl NodeFingerprint {
    /// Fingerprint of `node`: pod CIDRs, addresses, labels, `podroute.io/` annotations.
    pub fn of(node: &Node) -> Self {
        let mut hasher = DefaultHasher::new();
        if let Some(spec) = &node.spec {
            spec.pod_cidr.hash(&mut hasher);
            spec.pod_cidrs.hash(&mut hasher);
        }
        if let Some(addresses) = node.status.as_ref().and_then(|s| s.addresses.as_ref()) {
            for address in addresses {
                address.type_.hash(&mut hasher);
                address.address.hash(&mut hasher);
            }
        }
        node.metadata.labels.hash(&mut hasher);
        if let Some(annotations) = &node.metadata.annotations {
            for (key, value) in annotations
                .iter()
                .filter(|(k, _)| k.starts_with("podroute.io/"))
            {
                key.hash(&mut hasher);
                value.hash(&mut hasher);
            }
        }
        Self(hasher.finish())
    }
}

/// Remembers the fingerprint of every Node and says whether an event needs a new view.
#[derive(Debug, Default)]
pub struct NodeChangeFilter {
    seen: HashMap<String, NodeFingerprint>,
}

impl NodeChangeFilter {
    /// Records an applied Node; true if a relevant field changed (or the Node is new).
    pub fn applied(&mut self, node: &Node) -> bool {
        let Some(name) = node.metadata.name.clone() else {
            return false;
        };
        let fingerprint = NodeFingerprint::of(node);
        self.seen.insert(name, fingerprint) != Some(fingerprint)
    }

    /// Records a deleted Node; true if it was known.
    pub fn deleted(&mut self, node: &Node) -> bool {
        node.metadata
            .name
            .as_ref()
            .is_some_and(|name| self.seen.remove(name).is_some())
    }

    /// Forgets everything and remembers exactly `nodes` (full resync).
    pub fn resync<'a>(&mut self, nodes: impl IntoIterator<Item = &'a Node>) {
        self.seen = nodes
            .into_iter()
            .filter_map(|n| {
                n.metadata
                    .name
                    .clone()
                    .map(|name| (name, NodeFingerprint::of(n)))
            })
            .collect();
    }
}

/// Watches Nodes and publishes a [`ViewUpdate`] on `tx` whenever the view changes.
///
/// Runs until `tx` has no receivers left. Watch errors (API server away, expired resource
/// version) are retried by the watcher's backoff; the last view stays published meanwhile.
pub async fn run_node_watch(
    api: Api<Node>,
    own_name: String,
    own_override: NodeIpOverride,
    tx: watch::Sender<ViewUpdate>,
) {
    let (store, writer) = reflector::store::<Node>();
    let events = watcher::watcher(api, watcher::Config::default())
        .default_backoff()
        .reflect(writer);
    let mut events = std::pin::pin!(events);
    let mut filter = NodeChangeFilter::default();
    let mut synced = false;
    let mut last_error_logged = None;

    while let Some(event) = events.next().await {
        let changed = match event {
            Ok(Event::Apply(node)) => filter.applied(&node),
            Ok(Event::Delete(node)) => filter.deleted(&node),
            Ok(Event::Init | Event::InitApply(_)) => false,
            Ok(Event::InitDone) => {
                let nodes = store.state();
                filter.resync(nodes.iter().map(|n| n.as_ref()));
                if !synced {
                    tracing::info!(nodes = nodes.len(), "initial Node list complete");
                }
                synced = true;
                true
            }
            Err(error) => {
                // Log each distinct error once; the backoff retries quietly.
                let text = error.to_string();
                if last_error_logged.as_ref() != Some(&text) {
                    tracing::warn!(%error, "Node watch failed; retrying with backoff, routes unchanged");
                    last_error_logged = Some(text);
                }
                false
            }
        };
        if !changed || !synced {
            continue;
        }
        last_error_logged = None;
        let update = ViewUpdate {
            view: build_view(&store, &own_name, own_override),
            synced,
        };
        tx.send_if_modified(|current| {
            if *current == update {
                return false;
            }
            *current = update;
            true
        });
        if tx.is_closed() {
            return;
        }
    }
}

fn build_view(
    store: &Store<Node>,
    own_name: &str,
    own_override: NodeIpOverride,
) -> Result<Arc<ClusterView>, ViewError> {
    let nodes = store.state();
    ClusterView::from_nodes(nodes.iter().map(|n| n.as_ref()), own_name, own_override).map(Arc::new)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn node(conditions_time: &str, pod_cidr: &str) -> Node {
        serde_json::from_value(serde_json::json!({
            "metadata": {"name": "node-1", "resourceVersion": conditions_time,
                         "annotations": {"node.alpha.kubernetes.io/ttl": "0"}},
            "spec": {"podCIDRs": [pod_cidr]},
            "status": {
                "addresses": [{"type": "InternalIP", "address": "198.18.0.1"}],
                "conditions": [{"type": "Ready", "status": "True", "lastHeartbeatTime": conditions_time}]
            }
        }))
        .expect("valid Node")
    }

    #[test]
    fn heartbeats_cause_no_work() {
        let mut filter = NodeChangeFilter::default();
        assert!(
            filter.applied(&node("2026-01-01T00:00:00Z", "10.244.1.0/24")),
            "new node"
        );
        assert!(
            !filter.applied(&node("2026-01-01T00:00:10Z", "10.244.1.0/24")),
            "heartbeat"
        );
        assert!(
            filter.applied(&node("2026-01-01T00:00:20Z", "10.244.7.0/24")),
            "CIDR changed"
        );
    }

    #[test]
    fn podroute_annotations_and_labels_count_others_do_not() {
        let mut filter = NodeChangeFilter::default();
        let base = node("2026-01-01T00:00:00Z", "10.244.1.0/24");
        filter.applied(&base);
        let mut other = base.clone();
        other
            .metadata
            .annotations
            .get_or_insert_default()
            .insert("x/y".into(), "1".into());
        assert!(!filter.applied(&other));
        let mut ours = other.clone();
        ours.metadata
            .annotations
            .get_or_insert_default()
            .insert("podroute.io/node-ip".into(), "198.18.1.1".into());
        assert!(filter.applied(&ours));
        let mut labelled = ours.clone();
        labelled
            .metadata
            .labels
            .get_or_insert_default()
            .insert("rack".into(), "b".into());
        assert!(filter.applied(&labelled));
    }

    #[test]
    fn delete_of_unknown_node_is_no_change_and_resync_forgets() {
        let mut filter = NodeChangeFilter::default();
        let n = node("2026-01-01T00:00:00Z", "10.244.1.0/24");
        assert!(!filter.deleted(&n));
        filter.applied(&n);
        filter.resync(std::iter::empty());
        assert!(
            filter.applied(&n),
            "after a resync without it the node is new again"
        );
        assert!(filter.deleted(&n));
    }
}
