//! Kubernetes Events about this node's BGP sessions: a session up or down, a peer past its
//! prefix limit, a BGPPeer or the BGPConfiguration this node cannot use. Reported on the own
//! Node object (cluster-scoped, so the API keeps them in
//! `default`), through kube-rs' recorder, which folds repeats of one reason about one peer
//! into an event series (the action names the peer).
//!
//! Rate-limited twice: one event per (reason, peer or resource) per [`PER_PEER_INTERVAL`],
//! and at most
//! [`BURST`] per minute in all, so a flapping peer or a mesh of a thousand nodes restarting
//! cannot flood the API server. Sending never blocks the speaker: a full queue drops the
//! event (logs and metrics keep it).

use std::collections::HashMap;
use std::net::IpAddr;
use std::time::{Duration, Instant};

use k8s_openapi::api::core::v1::ObjectReference;
use kube::runtime::events::{Event, EventType, Recorder, Reporter};
use tokio::sync::mpsc;

/// Least time between two events of one reason about one peer.
pub const PER_PEER_INTERVAL: Duration = Duration::from_secs(60);
/// Most events per minute in all.
pub const BURST: usize = 10;
const QUEUE: usize = 64;

/// Something operators should see in `kubectl describe node`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum AgentEvent {
    /// A session reached Established.
    SessionUp {
        /// The peer.
        peer: IpAddr,
        /// `mesh` or `router`.
        peer_type: &'static str,
    },
    /// A session left Established.
    SessionDown {
        /// The peer.
        peer: IpAddr,
        /// `mesh` or `router`.
        peer_type: &'static str,
        /// Why, if a NOTIFICATION said so.
        reason: Option<String>,
    },
    /// A peer passed its prefix limit.
    MaxPrefix {
        /// The peer.
        peer: IpAddr,
        /// The limit.
        limit: usize,
        /// What was done (`warn`, `drop_excess`, `cease`).
        action: &'static str,
    },
    /// A resource this node cannot use (the schema let it through, but not for this node:
    /// e.g. its Secret is missing, or it names the node's own address). Other sessions carry on.
    ConfigRejected {
        /// `BGPPeer/<name>` or `BGPConfiguration/default`.
        resource: String,
        /// Why.
        why: String,
    },
}

impl AgentEvent {
    /// The event's reason and what it is about (a peer, or a resource).
    fn key(&self) -> (&'static str, String) {
        match self {
            Self::SessionUp { peer, .. } => ("BGPSessionUp", format!("BGPPeer {peer}")),
            Self::SessionDown { peer, .. } => ("BGPSessionDown", format!("BGPPeer {peer}")),
            Self::MaxPrefix { peer, .. } => ("BGPMaxPrefix", format!("BGPPeer {peer}")),
            Self::ConfigRejected { resource, .. } => ("BGPConfigRejected", resource.clone()),
        }
    }

    fn to_event(&self) -> Event {
        let (reason, subject) = self.key();
        let (type_, note) = match self {
            Self::SessionUp { peer, peer_type } => (
                EventType::Normal,
                format!("BGP session with {peer_type} peer {peer} Established"),
            ),
            Self::SessionDown {
                peer,
                peer_type,
                reason,
            } => (
                EventType::Warning,
                match reason {
                    Some(r) => format!("BGP session with {peer_type} peer {peer} down: {r}"),
                    None => format!("BGP session with {peer_type} peer {peer} down"),
                },
            ),
            Self::MaxPrefix {
                peer,
                limit,
                action,
            } => (
                EventType::Warning,
                format!("BGP peer {peer} passed its prefix limit of {limit} ({action})"),
            ),
            Self::ConfigRejected { resource, why } => (
                EventType::Warning,
                format!("{resource} not used on this node: {why}"),
            ),
        };
        Event {
            type_,
            reason: reason.to_owned(),
            note: Some(note),
            // The recorder folds events of one (reason, action, object) into a series:
            // naming the peer or resource in the action keeps one series for each.
            action: subject,
            secondary: None,
        }
    }
}

/// The speaker's end: never blocks.
#[derive(Debug, Clone)]
pub struct EventSender(Option<mpsc::Sender<AgentEvent>>);

impl EventSender {
    /// A sender that drops everything (no API, tests).
    pub fn none() -> Self {
        Self(None)
    }

    /// Queues an event; a full queue drops it.
    pub fn send(&self, event: AgentEvent) {
        if let Some(tx) = &self.0
            && tx.try_send(event).is_err()
        {
            tracing::debug!("event queue full; event dropped");
        }
    }
}

/// Decides which events go out (pure, for tests).
#[derive(Debug, Default)]
pub struct RateLimit {
    last: HashMap<(&'static str, String), Instant>,
    window: Vec<Instant>,
}

impl RateLimit {
    /// True if `event` may go out at `now` (and records it).
    pub fn admit(&mut self, event: &AgentEvent, now: Instant) -> bool {
        let key = event.key();
        if self
            .last
            .get(&key)
            .is_some_and(|t| now.duration_since(*t) < PER_PEER_INTERVAL)
        {
            return false;
        }
        self.window
            .retain(|t| now.duration_since(*t) < Duration::from_secs(60));
        if self.window.len() >= BURST {
            return false;
        }
        self.window.push(now);
        self.last.insert(key, now);
        self.last
            .retain(|_, t| now.duration_since(*t) < PER_PEER_INTERVAL);
        true
    }
}

/// Starts the task publishing events about Node `node_name`; returns its sender.
pub fn spawn(client: kube::Client, node_name: String) -> EventSender {
    let (tx, mut rx) = mpsc::channel(QUEUE);
    let reporter = Reporter {
        controller: "podroute-agent".to_owned(),
        instance: Some(node_name.clone()),
    };
    let recorder = Recorder::new(client, reporter);
    let reference = ObjectReference {
        api_version: Some("v1".to_owned()),
        kind: Some("Node".to_owned()),
        name: Some(node_name),
        ..ObjectReference::default()
    };
    tokio::spawn(async move {
        let mut limit = RateLimit::default();
        while let Some(event) = rx.recv().await {
            if !limit.admit(&event, Instant::now()) {
                continue;
            }
            if let Err(error) = recorder.publish(&event.to_event(), &reference).await {
                tracing::debug!(%error, "publishing a Kubernetes Event failed");
            }
        }
    });
    EventSender(Some(tx))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn up(n: u8) -> AgentEvent {
        AgentEvent::SessionUp {
            peer: IpAddr::from([198, 18, 0, n]),
            peer_type: "mesh",
        }
    }

    #[test]
    fn a_flapping_peer_and_a_burst_are_limited() {
        let start = Instant::now();
        let mut limit = RateLimit::default();
        assert!(limit.admit(&up(1), start));
        // The same peer again within the interval: dropped; another reason: admitted.
        assert!(!limit.admit(&up(1), start + Duration::from_secs(5)));
        let down = AgentEvent::SessionDown {
            peer: IpAddr::from([198, 18, 0, 1]),
            peer_type: "mesh",
            reason: None,
        };
        assert!(limit.admit(&down, start + Duration::from_secs(5)));
        // Many peers at once: at most BURST a minute.
        let admitted = (2..40)
            .filter(|n| limit.admit(&up(*n), start + Duration::from_secs(6)))
            .count();
        assert_eq!(admitted, BURST - 2);
        // A minute later, the first peer may be reported again.
        assert!(limit.admit(&up(1), start + Duration::from_secs(70)));
    }

    #[test]
    fn events_say_what_happened() {
        let event = AgentEvent::MaxPrefix {
            peer: IpAddr::from([198, 18, 0, 254]),
            limit: 100,
            action: "cease",
        }
        .to_event();
        assert_eq!(event.reason, "BGPMaxPrefix");
        assert_eq!(event.type_, EventType::Warning);
        assert_eq!(
            event.note.as_deref(),
            Some("BGP peer 198.18.0.254 passed its prefix limit of 100 (cease)")
        );
        let event = AgentEvent::ConfigRejected {
            resource: "BGPPeer/rack-a".to_owned(),
            why: "Secret kube-system/podroute-bgp-passwords has no key rack-a".to_owned(),
        }
        .to_event();
        assert_eq!(
            (event.reason.as_str(), event.type_, event.action.as_str()),
            ("BGPConfigRejected", EventType::Warning, "BGPPeer/rack-a")
        );
        assert_eq!(
            event.note.as_deref(),
            Some(
                "BGPPeer/rack-a not used on this node: Secret kube-system/podroute-bgp-passwords has no key rack-a"
            )
        );
    }
}
