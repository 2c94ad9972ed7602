//! The BFD driver task: one [`Bfd`] endpoint, its sockets and its clock.
//!
//! What this module owns: the translation of I/O into endpoint inputs (datagrams with
//! their TTL, timer expiries at `poll_timeout`, commands from the agent) and of endpoint
//! actions into I/O (packets out, liveness changes to the agent's clients). All BFD state
//! is in the endpoint; this task keeps none of its own. One task for all sessions.

use std::io;
use std::net::IpAddr;
use std::time::Instant;

use podroute_bfd::endpoint::{Action, Bfd, BfdConfig, Counters, Datagram, Liveness, SessionStatus};
use podroute_bfd::packet::State;
use podroute_bfd::session::SessionConfig;
use tokio::sync::{mpsc, oneshot};
use tracing::{debug, info, trace, warn};

use super::socket::{FamilySockets, Received};
use crate::metrics::Metrics;

/// A liveness change for the agent's clients (BGP).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct LivenessEvent {
    /// The [`BfdDriverConfig::task`] of the task that sent it.
    pub task: u64,
    /// The BFD peer's address.
    pub peer: IpAddr,
    /// What the path to it now is.
    pub liveness: Liveness,
    /// The peer's BFD says (C bit) it outlives the peer's control plane: a Down is then a
    /// forwarding failure even while the peer's BGP restarts.
    pub peer_control_plane_independent: bool,
}

/// What status and metrics read from the driver.
#[derive(Debug, Clone, Default)]
pub struct BfdSnapshot {
    /// Every session.
    pub sessions: Vec<SessionStatus>,
    /// The endpoint's counters.
    pub counters: Counters,
    /// Datagrams that could not be sent (no socket of the family, or a send error).
    pub send_errors: u64,
}

enum Command {
    Add(IpAddr, SessionConfig),
    Remove(IpAddr),
    Shutdown(oneshot::Sender<()>),
    Snapshot(oneshot::Sender<BfdSnapshot>),
}

/// The agent's handle on the BFD task. Dropping every handle stops the task after a
/// [`BfdHandle::shutdown`]-like AdminDown round.
#[derive(Debug, Clone)]
pub struct BfdHandle {
    commands: mpsc::UnboundedSender<Command>,
}

impl BfdHandle {
    /// Starts (or reconfigures) the session with `peer`.
    pub fn add_session(&self, peer: IpAddr, config: SessionConfig) {
        let _ = self.commands.send(Command::Add(peer, config));
    }

    /// Ends the session with `peer` (AdminDown first).
    pub fn remove_session(&self, peer: IpAddr) {
        let _ = self.commands.send(Command::Remove(peer));
    }

    /// A planned stop: every session says AdminDown, then the task ends. Returns once the
    /// packets are sent and the sockets closed (UDP 3784 is free for a new task at once).
    pub async fn shutdown(&self) {
        let (done, wait) = oneshot::channel();
        if self.commands.send(Command::Shutdown(done)).is_ok() {
            let _ = wait.await;
        }
    }

    /// The sessions and counters now; `None` once the task has stopped.
    pub async fn snapshot(&self) -> Option<BfdSnapshot> {
        let (reply, wait) = oneshot::channel();
        self.commands.send(Command::Snapshot(reply)).ok()?;
        wait.await.ok()
    }
}

/// Where the BFD task listens and how it behaves.
#[derive(Debug, Clone)]
pub struct BfdDriverConfig {
    /// The node's addresses, at most one per family: sockets are opened on them.
    pub local: Vec<IpAddr>,
    /// Endpoint settings (seed, C bit, damping).
    pub endpoint: BfdConfig,
    /// Where sessions by state, transitions, detections and drops are exported.
    pub metrics: Metrics,
    /// Carried by every event, so a client that stops BFD and starts it again can tell the
    /// earlier task's events, still queued, from the new one's.
    pub task: u64,
}

/// Opens the sockets and spawns the BFD task. Liveness changes are sent to `events` (the
/// client keeps the receiver, so it can wait on it before BFD runs at all).
pub fn spawn(
    config: BfdDriverConfig,
    events: mpsc::UnboundedSender<LivenessEvent>,
) -> io::Result<BfdHandle> {
    let mut v4 = None;
    let mut v6 = None;
    for &local in &config.local {
        let sockets = FamilySockets::open(local, config.endpoint.seed)?;
        info!(%local, source_port = sockets.source_port()?, "BFD listening on port 3784");
        if local.is_ipv6() {
            v6 = Some(sockets);
        } else {
            v4 = Some(sockets);
        }
    }
    let (commands, command_rx) = mpsc::unbounded_channel();
    let task = Driver {
        bfd: Bfd::new(config.endpoint),
        v4,
        v6,
        events,
        task: config.task,
        send_errors: 0,
        metrics: config.metrics,
        exported: Counters::default(),
    };
    tokio::spawn(task.run(command_rx));
    Ok(BfdHandle { commands })
}

struct Driver {
    bfd: Bfd,
    v4: Option<FamilySockets>,
    v6: Option<FamilySockets>,
    events: mpsc::UnboundedSender<LivenessEvent>,
    task: u64,
    send_errors: u64,
    metrics: Metrics,
    /// The counters as last exported (metrics get the differences).
    exported: Counters,
}

/// Waits for a datagram on `sockets`, or forever if the family has none.
async fn recv(sockets: Option<&FamilySockets>, buf: &mut [u8]) -> io::Result<Received> {
    match sockets {
        Some(s) => s.recv(buf).await,
        None => std::future::pending().await,
    }
}

impl Driver {
    async fn run(mut self, mut commands: mpsc::UnboundedReceiver<Command>) {
        let mut buf4 = [0u8; 512];
        let mut buf6 = [0u8; 512];
        loop {
            self.flush().await;
            let deadline = self.bfd.poll_timeout();
            let sleep = async {
                match deadline {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                command = commands.recv() => match command {
                    Some(Command::Add(peer, config)) => {
                        self.bfd.add_session(Instant::now(), peer, config);
                    }
                    Some(Command::Remove(peer)) => self.bfd.remove_session(Instant::now(), peer),
                    Some(Command::Snapshot(reply)) => {
                        let _ = reply.send(self.snapshot());
                    }
                    Some(Command::Shutdown(done)) => {
                        self.stop().await;
                        // Closed before the answer: whoever waits may bind port 3784 again.
                        self.v4 = None;
                        self.v6 = None;
                        let _ = done.send(());
                        return;
                    }
                    None => {
                        self.stop().await;
                        return;
                    }
                },
                received = recv(self.v4.as_ref(), &mut buf4) => {
                    self.received(received, &buf4);
                }
                received = recv(self.v6.as_ref(), &mut buf6) => {
                    self.received(received, &buf6);
                }
                () = sleep => self.bfd.handle_timeout(Instant::now()),
            }
        }
    }

    fn received(&mut self, received: io::Result<Received>, buf: &[u8]) {
        match received {
            Ok(r) => {
                let datagram = Datagram {
                    source: r.source,
                    ttl: r.ttl,
                    payload: &buf[..r.len.min(buf.len())],
                };
                if let Err(drop) = self.bfd.handle_datagram(Instant::now(), datagram) {
                    debug!(peer = %r.source, ttl = r.ttl, reason = %drop, "BFD packet dropped");
                }
            }
            Err(e) => warn!(error = %e, "BFD receive failed"),
        }
    }

    async fn stop(&mut self) {
        self.bfd.shutdown(Instant::now());
        self.flush().await;
        // The sessions end with the task: none is left in any state.
        for (state, _) in self.bfd.sessions_by_state() {
            self.metrics
                .bfd_sessions
                .with_label_values(&[state.name()])
                .set(0);
        }
    }

    async fn flush(&mut self) {
        let mut changed = false;
        while let Some(action) = self.bfd.poll_action() {
            changed |= matches!(action, Action::StateChanged { .. });
            match action {
                Action::Transmit { peer, packet } => {
                    let sockets = if peer.is_ipv6() { &self.v6 } else { &self.v4 };
                    let sent = match sockets {
                        Some(s) => s.send(peer, &packet).await,
                        None => Err(io::Error::other("no local address of that family")),
                    };
                    match sent {
                        Ok(()) => trace!(%peer, "BFD packet sent"),
                        Err(e) => {
                            self.send_errors += 1;
                            debug!(%peer, error = %e, "BFD send failed");
                        }
                    }
                }
                Action::StateChanged {
                    peer,
                    from,
                    to,
                    diag,
                } => {
                    if to == State::Up || from == State::Up {
                        info!(%peer, %from, %to, %diag, "BFD session state");
                    } else {
                        debug!(%peer, %from, %to, %diag, "BFD session state");
                    }
                }
                Action::Liveness { peer, liveness } => {
                    let peer_control_plane_independent = self
                        .bfd
                        .session(peer)
                        .is_some_and(|s| s.remote_control_plane_independent);
                    let _ = self.events.send(LivenessEvent {
                        task: self.task,
                        peer,
                        liveness,
                        peer_control_plane_independent,
                    });
                }
            }
        }
        self.export(changed);
    }

    /// Brings the metrics up to date; the per-state gauges only after a state change
    /// (counting them walks every session).
    fn export(&mut self, states_changed: bool) {
        let now = self.bfd.counters();
        let m = &self.metrics;
        m.bfd_transitions
            .inc_by(now.transitions.saturating_sub(self.exported.transitions));
        m.bfd_detections
            .inc_by(now.detections.saturating_sub(self.exported.detections));
        for (reason, n) in &now.dropped {
            let before = self.exported.dropped.get(reason).copied().unwrap_or(0);
            if *n > before {
                m.bfd_dropped_packets
                    .with_label_values(&[reason])
                    .inc_by(n - before);
            }
        }
        if states_changed {
            for (state, n) in self.bfd.sessions_by_state() {
                m.bfd_sessions
                    .with_label_values(&[state.name()])
                    .set(n as i64);
            }
        }
        self.exported = now.clone();
    }

    fn snapshot(&self) -> BfdSnapshot {
        let mut sessions: Vec<_> = self.bfd.sessions().collect();
        sessions.sort_by_key(|s| s.peer);
        BfdSnapshot {
            sessions,
            counters: self.bfd.counters().clone(),
            send_errors: self.send_errors,
        }
    }
}
