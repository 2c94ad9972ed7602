//! Watches podroute's resources: every BGPPeer, the BGPConfiguration and, one watch per name,
//! the Secrets they refer to; publishes them together as one [`ConfigUpdate`].
//!
//! `synced` turns true once BGPPeers and BGPConfigurations have both been listed and every
//! referenced Secret has been read (or found unreadable). A cluster without the CRDs answers
//! the lists with 404: that counts as listed and empty, so the agent runs on its flags, and
//! the watcher keeps retrying, so installing the CRDs later is picked up. Nothing is
//! published before the first full listing, so the channel's initial value (the state
//! file's resources, after a restart during an API outage) stands until then.
//!
//! Secrets are read only by name in the agent's namespace (`fieldSelector
//! metadata.name=<name>`), which is what the Role's `resourceNames` allows; values stay in
//! [`ClusterResources`] whose `Debug` prints no value.

use std::collections::BTreeMap;
use std::sync::Arc;

use futures::StreamExt;
use k8s_openapi::api::core::v1::Secret;
use kube::runtime::WatchStreamExt;
use kube::runtime::watcher::{self, Event};
use kube::{Api, Client};
use tokio::sync::{mpsc, watch};

use crate::cluster_peers::ClusterResources;
use crate::crd::bgp_configuration::BGPConfiguration;
use crate::crd::bgp_peer::{BGPPeer, BGPPeerSpec};

/// The resources as published to the agent's loop.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ConfigUpdate {
    /// What the API server holds (shared: the loop takes a copy on every wake).
    pub resources: Arc<ClusterResources>,
    /// Everything has been listed (or found absent) at least once.
    pub synced: bool,
}

/// One Secret watch's news.
#[derive(Debug)]
enum SecretNews {
    /// Its data (key → value), or why it cannot be read.
    State(String, Result<BTreeMap<String, Vec<u8>>, String>),
}

/// Watches BGPPeers, BGPConfigurations and the named Secrets in `namespace`; publishes on
/// `tx` until it has no receivers.
pub async fn run_config_watch(client: Client, namespace: String, tx: watch::Sender<ConfigUpdate>) {
    let peers = watcher::watcher(
        Api::<BGPPeer>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let configs = watcher::watcher(
        Api::<BGPConfiguration>::all(client.clone()),
        watcher::Config::default(),
    )
    .default_backoff();
    let mut peers = std::pin::pin!(peers);
    let mut configs = std::pin::pin!(configs);
    let (secret_tx, mut secret_rx) = mpsc::channel(16);
    let mut state = WatchState::default();
    let mut synced_once = false;

    loop {
        tokio::select! {
            Some(event) = peers.next() => state.peer_event(event),
            Some(event) = configs.next() => state.config_event(event),
            Some(SecretNews::State(name, result)) = secret_rx.recv() => state.secret(name, result),
            else => return,
        }
        state.follow_secrets(&client, &namespace, &secret_tx);
        let update = state.update();
        // Nothing before the first full listing: until then the channel holds what the agent
        // started from (nothing yet, or the state file's resources), and a partial listing,
        // or a failed list during an API outage, must not replace it.
        synced_once |= update.synced;
        if synced_once {
            tx.send_if_modified(|current| {
                let changed = *current != update;
                if changed {
                    *current = update;
                }
                changed
            });
        }
        if tx.is_closed() {
            return;
        }
    }
}

/// What the watches have seen.
#[derive(Default)]
struct WatchState {
    resources: ClusterResources,
    /// BGPPeers of a re-list in progress.
    relisting_peers: Option<BTreeMap<String, BGPPeerSpec>>,
    relisting_configs: Option<Vec<BGPConfiguration>>,
    configs: Vec<BGPConfiguration>,
    peers_listed: bool,
    configs_listed: bool,
    secret_watches: BTreeMap<String, tokio::task::AbortHandle>,
    /// The watch error last logged, per kind: the watcher retries every second or so, and
    /// the same error again is not news (it is logged anew after the watch worked).
    logged: BTreeMap<&'static str, String>,
}

impl WatchState {
    fn peer_event(&mut self, event: Result<Event<BGPPeer>, watcher::Error>) {
        match event {
            Ok(Event::Apply(peer)) => self.resources.apply_peer(&peer),
            Ok(Event::Delete(peer)) => {
                if let Some(name) = &peer.metadata.name {
                    self.resources.peers.remove(name);
                }
            }
            Ok(Event::Init) => self.relisting_peers = Some(BTreeMap::new()),
            Ok(Event::InitApply(peer)) => {
                if let (Some(list), Some(name)) = (&mut self.relisting_peers, &peer.metadata.name) {
                    list.insert(name.clone(), peer.spec.clone());
                }
            }
            Ok(Event::InitDone) => {
                self.resources.peers = self.relisting_peers.take().unwrap_or_default();
                self.peers_listed = true;
                self.logged.remove(PEER_KIND);
            }
            Err(error) => {
                if is_not_found(&error) {
                    // No CRD: no BGPPeers.
                    self.resources.peers.clear();
                    self.peers_listed = true;
                }
                self.log_error(PEER_KIND, &error);
            }
        }
    }

    fn config_event(&mut self, event: Result<Event<BGPConfiguration>, watcher::Error>) {
        match event {
            Ok(Event::Apply(config)) => {
                self.configs
                    .retain(|c| c.metadata.name != config.metadata.name);
                self.configs.push(config);
            }
            Ok(Event::Delete(config)) => {
                self.configs
                    .retain(|c| c.metadata.name != config.metadata.name);
            }
            Ok(Event::Init) => self.relisting_configs = Some(Vec::new()),
            Ok(Event::InitApply(config)) => {
                if let Some(list) = &mut self.relisting_configs {
                    list.push(config);
                }
            }
            Ok(Event::InitDone) => {
                self.configs = self.relisting_configs.take().unwrap_or_default();
                self.configs_listed = true;
                self.logged.remove(CONFIG_KIND);
            }
            Err(error) => {
                if is_not_found(&error) {
                    self.configs.clear();
                    self.configs_listed = true;
                }
                self.log_error(CONFIG_KIND, &error);
            }
        }
        let default = self.configs.iter().find(|c| {
            c.metadata.name.as_deref() == Some(crate::crd::bgp_configuration::DEFAULT_NAME)
        });
        self.resources.apply_configuration(default);
    }

    fn secret(&mut self, name: String, result: Result<BTreeMap<String, Vec<u8>>, String>) {
        if !self.secret_watches.contains_key(&name) {
            return;
        }
        match result {
            Ok(data) => {
                self.resources.unreadable.remove(&name);
                self.resources.secrets.insert(name, data);
            }
            Err(reason) => {
                self.resources.secrets.remove(&name);
                self.resources.unreadable.insert(name, reason);
            }
        }
    }

    /// Starts a watch for each newly referenced Secret and stops those no longer referenced.
    fn follow_secrets(&mut self, client: &Client, namespace: &str, tx: &mpsc::Sender<SecretNews>) {
        let wanted = self.resources.secret_names();
        self.secret_watches.retain(|name, task| {
            let keep = wanted.contains(name);
            if !keep {
                task.abort();
            }
            keep
        });
        self.resources
            .secrets
            .retain(|name, _| wanted.contains(name));
        self.resources
            .unreadable
            .retain(|name, _| wanted.contains(name));
        for name in wanted {
            if self.secret_watches.contains_key(&name) {
                continue;
            }
            let api = Api::<Secret>::namespaced(client.clone(), namespace);
            let task = tokio::spawn(watch_secret(api, name.clone(), tx.clone()));
            self.secret_watches.insert(name, task.abort_handle());
        }
    }

    fn update(&self) -> ConfigUpdate {
        let secrets_known = self.secret_watches.keys().all(|name| {
            self.resources.secrets.contains_key(name)
                || self.resources.unreadable.contains_key(name)
        });
        ConfigUpdate {
            resources: Arc::new(self.resources.clone()),
            synced: self.peers_listed && self.configs_listed && secrets_known,
        }
    }

    fn log_error(&mut self, kind: &'static str, error: &watcher::Error) {
        if !self.is_news(kind, error.to_string()) {
            return;
        }
        if is_not_found(error) {
            tracing::info!(
                kind,
                "the podroute.io CRDs are not installed: running on flags (--bgp-peer, --as-number, --mesh-*)"
            );
        } else {
            tracing::warn!(kind, %error, "watch failed; retrying with backoff, sessions unchanged");
        }
    }

    /// True when `error` is not the one last logged for `kind` (and remembers it).
    fn is_news(&mut self, kind: &'static str, error: String) -> bool {
        if self.logged.get(kind) == Some(&error) {
            return false;
        }
        self.logged.insert(kind, error);
        true
    }
}

const PEER_KIND: &str = "BGPPeer";
const CONFIG_KIND: &str = "BGPConfiguration";

/// True if the API server said 404 (the CRD is not installed).
fn is_not_found(error: &watcher::Error) -> bool {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status))
        | watcher::Error::WatchStartFailed(kube::Error::Api(status)) => status.code == 404,
        _ => false,
    }
}

/// Watches one Secret by name; reports its data, its absence or why it cannot be read.
async fn watch_secret(api: Api<Secret>, name: String, tx: mpsc::Sender<SecretNews>) {
    let config = watcher::Config::default().fields(&format!("metadata.name={name}"));
    let events = watcher::watcher(api, config).default_backoff();
    let mut events = std::pin::pin!(events);
    let mut listed: Option<BTreeMap<String, Vec<u8>>> = None;
    while let Some(event) = events.next().await {
        let news = match event {
            Ok(Event::Apply(secret)) => Some(Ok(data_of(&secret))),
            Ok(Event::InitApply(secret)) => {
                // Reported once the (re-)list is complete.
                listed = Some(data_of(&secret));
                None
            }
            Ok(Event::Delete(_)) => Some(Err("not found".to_owned())),
            Ok(Event::Init) => {
                listed = None;
                None
            }
            Ok(Event::InitDone) => Some(listed.take().ok_or_else(|| "not found".to_owned())),
            Err(error) => Some(Err(secret_error(&error))),
        };
        if let Some(news) = news
            && tx
                .send(SecretNews::State(name.clone(), news))
                .await
                .is_err()
        {
            return;
        }
    }
}

/// Why a Secret cannot be read, in words that say what to fix.
fn secret_error(error: &watcher::Error) -> String {
    match error {
        watcher::Error::InitialListFailed(kube::Error::Api(status)) if status.code == 403 => {
            "forbidden: add its name to the Role podroute-agent-secrets (resourceNames)".to_owned()
        }
        other => other.to_string(),
    }
}

fn data_of(secret: &Secret) -> BTreeMap<String, Vec<u8>> {
    secret
        .data
        .iter()
        .flatten()
        .map(|(key, value)| (key.clone(), value.0.clone()))
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn not_installed() -> watcher::Error {
        let status: kube::core::Status = serde_json::from_value(serde_json::json!({
            "status": "Failure", "code": 404, "message": "404 page not found"
        }))
        .expect("a Status");
        watcher::Error::InitialListFailed(kube::Error::Api(Box::new(status)))
    }

    #[test]
    fn a_missing_crd_is_logged_once_per_kind_not_at_every_retry() {
        let mut state = WatchState::default();
        let mut logged = 0;
        // The two watches retry about every second, interleaved.
        for _ in 0..10 {
            for kind in [PEER_KIND, CONFIG_KIND] {
                logged += usize::from(state.is_news(kind, not_installed().to_string()));
            }
        }
        assert_eq!(logged, 2);
        // Both kinds' watches count as listed (empty) meanwhile.
        state.peer_event(Err(not_installed()));
        state.config_event(Err(not_installed()));
        assert!(state.update().synced);
    }

    #[test]
    fn the_same_error_after_a_working_watch_is_logged_again() {
        let mut state = WatchState::default();
        assert!(state.is_news(PEER_KIND, not_installed().to_string()));
        state.peer_event(Ok(Event::Init));
        state.peer_event(Ok(Event::InitDone));
        assert!(state.is_news(PEER_KIND, not_installed().to_string()));
        assert!(!state.is_news(PEER_KIND, not_installed().to_string()));
    }
}
