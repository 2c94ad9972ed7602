//! One task per peer: get a TCP connection (connect actively with backoff, or take one the
//! listener accepted), set TCP-MD5 and GTSM, and drive the sans-IO session over it.
//!
//! Connection collisions (RFC 4271 §6.8) are avoided in the mesh by construction: of two
//! nodes, only the one with the lower session address connects; the other only accepts.
//! Static external peers are connected to actively and accepted from, so both sides may
//! connect at once. A further connection from the peer's address while a session runs is
//! judged by [`judge_further`]:
//! - the session is Established: the new connection is closed and counted (§6.8: the
//!   established one wins; anyone who can reach our port from the peer's address must not be
//!   able to tear the session down);
//! - the session runs on a connection the peer opened: the peer gave up on it (it restarted),
//!   so the new one replaces it;
//! - the session runs on our connection: a collision. Once the peer's OPEN told us its BGP
//!   identifier, the connection opened by the speaker with the higher identifier survives
//!   (AS number breaks a tie, RFC 6286 §2.3); the loser gets NOTIFICATION Cease/Connection
//!   Collision Resolution. Until then the new connection waits unanswered.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use ipnetwork::IpNetwork;
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::{mpsc, oneshot, watch};
use tokio::time::Instant;
use tracing::Instrument;

use podroute_bgp::collision::{self, Keep};

use super::session::{LocalSettings, SessionCore, SessionEvent, SessionFactory};
use crate::peers::{PeerKind, PeerSpec};
use crate::sockopt;

/// How long an outgoing connect may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// First and longest wait between connection attempts.
const BACKOFF_MIN: Duration = Duration::from_secs(1);
const BACKOFF_MAX: Duration = Duration::from_secs(30);

/// What a peer task reports to the speaker.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerEvent {
    /// The session is Established with these unicast families negotiated.
    Up {
        /// IPv4 unicast negotiated.
        ipv4: bool,
        /// IPv6 unicast negotiated.
        ipv6: bool,
    },
    /// Routes received.
    Update {
        /// Announced prefixes with next hop.
        announced: Vec<(IpNetwork, IpAddr)>,
        /// Withdrawn prefixes.
        withdrawn: Vec<IpNetwork>,
    },
    /// End-of-RIB received for IPv4 (`false`) or IPv6 (`true`).
    EndOfRib(bool),
    /// A further connection from the peer's address was refused because the session is
    /// Established (RFC 4271 §6.8).
    ConnectionRejected,
    /// The session is down; its routes are gone.
    Down,
}

/// The speaker's handle on a running peer task.
#[derive(Debug)]
pub struct PeerTask {
    /// The spec the task runs with.
    pub spec: PeerSpec,
    /// Connections the listener accepted from this peer.
    pub incoming: mpsc::Sender<TcpStream>,
    stop: Option<oneshot::Sender<()>>,
    join: tokio::task::JoinHandle<()>,
}

impl PeerTask {
    /// Starts the task.
    pub fn spawn(
        spec: PeerSpec,
        local: LocalSettings,
        port: u16,
        factory: SessionFactory,
        advertised: watch::Receiver<Vec<(IpNetwork, IpAddr)>>,
        events: mpsc::UnboundedSender<(IpAddr, PeerEvent)>,
    ) -> Self {
        let (incoming_tx, incoming_rx) = mpsc::channel(4);
        let (stop_tx, stop_rx) = oneshot::channel();
        let span = tracing::info_span!("peer", addr = %spec.address);
        let runner = PeerRunner {
            spec: spec.clone(),
            local,
            port,
            factory,
            advertised,
            events,
        };
        let join = tokio::spawn(runner.run(incoming_rx, stop_rx).instrument(span));
        Self {
            spec,
            incoming: incoming_tx,
            stop: Some(stop_tx),
            join,
        }
    }

    /// Stops the session (Cease) and waits briefly for the task to end.
    pub async fn stop(mut self) {
        if let Some(stop) = self.stop.take() {
            let _ = stop.send(());
        }
        if tokio::time::timeout(Duration::from_secs(2), &mut self.join)
            .await
            .is_err()
        {
            self.join.abort();
        }
    }
}

struct PeerRunner {
    spec: PeerSpec,
    local: LocalSettings,
    port: u16,
    factory: SessionFactory,
    advertised: watch::Receiver<Vec<(IpNetwork, IpAddr)>>,
    events: mpsc::UnboundedSender<(IpAddr, PeerEvent)>,
}

/// What to do with a further connection from the peer while a session runs on another one.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Further {
    /// Close the new connection: the session is Established, or its connection wins.
    Refuse,
    /// End the session (Cease/Connection Collision Resolution) and go on with the new one.
    Switch,
    /// The peer's identifier is not known yet: keep the new connection aside until it is.
    Hold,
}

/// RFC 4271 §6.8 for a driver that runs one session per peer (see the module docs).
/// `current_outgoing`: we opened the session's connection.
fn judge_further(
    established: bool,
    current_outgoing: bool,
    remote_id: Option<Ipv4Addr>,
    local: &LocalSettings,
    remote_as: u32,
) -> Further {
    if established {
        return Further::Refuse;
    }
    if !current_outgoing {
        return Further::Switch;
    }
    match remote_id {
        None => Further::Hold,
        Some(remote) => {
            match collision::resolve_with_as(local.router_id, local.as_number, remote, remote_as) {
                Keep::Outgoing => Further::Refuse,
                Keep::Incoming => Further::Switch,
            }
        }
    }
}

/// Why driving a connection ended.
enum DriveEnd {
    /// Connection closed or session ended: reconnect after backoff.
    Closed,
    /// A newer incoming connection replaces this one.
    Replaced(TcpStream),
    /// The speaker stopped us.
    Stopped,
}

impl PeerRunner {
    /// Mesh: active side iff our address is lower (see module docs). Static peers: always
    /// active (a router may be configured passive) and accepting too; collisions are settled
    /// per RFC 4271 §6.8 (see module docs).
    fn is_active(&self) -> bool {
        matches!(self.spec.kind, PeerKind::Static { .. }) || self.local.address < self.spec.address
    }

    async fn run(
        mut self,
        mut incoming: mpsc::Receiver<TcpStream>,
        mut stop: oneshot::Receiver<()>,
    ) {
        let mut backoff = BACKOFF_MIN;
        let mut pending: Option<TcpStream> = None;
        loop {
            // Which connection, and whether we opened it.
            let (stream, outgoing) = match pending.take() {
                Some(stream) => (stream, false),
                None => tokio::select! {
                    _ = &mut stop => return,
                    Some(stream) = incoming.recv() => (stream, false),
                    result = self.connect(), if self.is_active() => match result {
                        Ok(stream) => (stream, true),
                        Err(error) => {
                            tracing::debug!(%error, "connect failed");
                            tokio::select! {
                                _ = &mut stop => return,
                                Some(stream) = incoming.recv() => pending = Some(stream),
                                _ = tokio::time::sleep(backoff) => {}
                            }
                            backoff = (backoff * 2).min(BACKOFF_MAX);
                            continue;
                        }
                    },
                },
            };
            if !outgoing && let Err(error) = self.prepare_accepted(&stream) {
                tracing::warn!(%error, "socket options on accepted connection failed");
            }
            let (end, established) = self.drive(stream, outgoing, &mut incoming, &mut stop).await;
            // Only a session that came up can go down: a failed attempt must not touch the
            // routes kept for a restarting peer.
            if established {
                let _ = self.events.send((self.spec.address, PeerEvent::Down));
                backoff = BACKOFF_MIN;
            }
            match end {
                DriveEnd::Stopped => return,
                DriveEnd::Replaced(stream) => pending = Some(stream),
                DriveEnd::Closed => {
                    tokio::select! {
                        _ = &mut stop => return,
                        Some(stream) = incoming.recv() => pending = Some(stream),
                        _ = tokio::time::sleep(backoff) => {}
                    }
                    backoff = (backoff * 2).min(BACKOFF_MAX);
                }
            }
        }
    }

    /// Connects to the peer from our node IP, with MD5 and GTSM set before the SYN.
    async fn connect(&self) -> std::io::Result<TcpStream> {
        let socket = match self.spec.address {
            IpAddr::V4(_) => TcpSocket::new_v4()?,
            IpAddr::V6(_) => TcpSocket::new_v6()?,
        };
        socket.bind(SocketAddr::new(self.local.address, 0))?;
        if let Some(password) = &self.spec.md5_password {
            sockopt::set_tcp_md5(socket.as_fd(), self.spec.address, password.as_bytes())?;
        }
        if self.spec.gtsm {
            sockopt::set_gtsm(socket.as_fd(), self.spec.address.is_ipv6())?;
        }
        let remote = SocketAddr::new(self.spec.address, self.port);
        let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(remote))
            .await
            .map_err(|_| {
                std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out")
            })??;
        stream.set_nodelay(true)?;
        Ok(stream)
    }

    /// An accepted connection got MD5 from the listener; GTSM is set per peer here.
    fn prepare_accepted(&self, stream: &TcpStream) -> std::io::Result<()> {
        stream.set_nodelay(true)?;
        if self.spec.gtsm {
            sockopt::set_gtsm(stream.as_fd(), self.spec.address.is_ipv6())?;
        }
        Ok(())
    }

    /// Runs one session over `stream` (`outgoing`: we opened it) until it ends. Returns how,
    /// and whether it had been Established.
    async fn drive(
        &mut self,
        mut stream: TcpStream,
        outgoing: bool,
        incoming: &mut mpsc::Receiver<TcpStream>,
        stop: &mut oneshot::Receiver<()>,
    ) -> (DriveEnd, bool) {
        let mut session = (self.factory)(&self.spec, self.local);
        let mut established = false;
        let mut buffer = vec![0u8; 64 * 1024];
        let now = Instant::now().into_std();
        session.connected(now);
        // Hand over the routes now, not via the select loop below: if the peer's OPEN and
        // KEEPALIVE were read first, the session would reach Established and send End-of-RIB
        // with nothing before it, and the peer would drop our stale routes (RFC 4724 §4.2)
        // only to get them again a moment later.
        let routes = self.advertised.borrow_and_update().clone();
        session.advertise(now, &routes);
        // A connection the peer opened while ours waits for its OPEN (`Further::Hold`); it
        // takes over if this session ends before the collision is settled.
        let mut held: Option<TcpStream> = None;
        let closed = |held: Option<TcpStream>, established| match held {
            Some(newer) => (DriveEnd::Replaced(newer), established),
            None => (DriveEnd::Closed, established),
        };
        loop {
            while let Some(event) = session.poll_event() {
                match event {
                    SessionEvent::Transmit(bytes) => {
                        if let Err(error) = stream.write_all(&bytes).await {
                            tracing::info!(%error, "write failed; session down");
                            return closed(held, established);
                        }
                    }
                    SessionEvent::Established { ipv4, ipv6 } => {
                        established = true;
                        tracing::info!("session established");
                        let _ = self
                            .events
                            .send((self.spec.address, PeerEvent::Up { ipv4, ipv6 }));
                    }
                    SessionEvent::Update {
                        announced,
                        withdrawn,
                    } => {
                        let _ = self.events.send((
                            self.spec.address,
                            PeerEvent::Update {
                                announced,
                                withdrawn,
                            },
                        ));
                    }
                    SessionEvent::EndOfRib { ipv6 } => {
                        let _ = self
                            .events
                            .send((self.spec.address, PeerEvent::EndOfRib(ipv6)));
                    }
                    SessionEvent::Closed(reason) => {
                        tracing::info!(%reason, "session closed");
                        return closed(held, established);
                    }
                }
            }
            // A held connection is judged as soon as the peer's identifier is known (or the
            // session came up, which settles it too).
            if let Some(newer) = held.take() {
                match self.judge(&*session, established, outgoing) {
                    Further::Hold => held = Some(newer),
                    Further::Refuse => self.refuse(newer, established),
                    Further::Switch => {
                        return self.switch(session, stream, newer, established).await;
                    }
                }
            }
            let deadline = session.poll_timeout().map(Instant::from_std);
            tokio::select! {
                read = stream.read(&mut buffer) => match read {
                    Ok(0) | Err(_) => {
                        tracing::info!("connection closed by peer");
                        return closed(held, established);
                    }
                    Ok(n) => session.handle_bytes(Instant::now().into_std(), &buffer[..n]),
                },
                _ = sleep_until(deadline) => session.handle_timeout(Instant::now().into_std()),
                Ok(()) = self.advertised.changed() => {
                    let routes = self.advertised.borrow_and_update().clone();
                    session.advertise(Instant::now().into_std(), &routes);
                }
                Some(newer) = incoming.recv() => {
                    match self.judge(&*session, established, outgoing) {
                        // A newer one from the peer replaces an older one still held.
                        Further::Hold => held = Some(newer),
                        Further::Refuse => self.refuse(newer, established),
                        Further::Switch => {
                            return self.switch(session, stream, newer, established).await;
                        }
                    }
                }
                _ = &mut *stop => {
                    session.stop(Instant::now().into_std());
                    while let Some(event) = session.poll_event() {
                        if let SessionEvent::Transmit(bytes) = event {
                            let _ = stream.write_all(&bytes).await;
                        }
                    }
                    return (DriveEnd::Stopped, established);
                }
            }
        }
    }
}

impl PeerRunner {
    fn judge(&self, session: &dyn SessionCore, established: bool, outgoing: bool) -> Further {
        judge_further(
            established,
            outgoing,
            session.remote_id(),
            &self.local,
            self.spec.remote_as,
        )
    }

    /// Closes a further connection that lost (see [`Further::Refuse`]).
    fn refuse(&self, newer: TcpStream, established: bool) {
        drop(newer);
        if established {
            tracing::info!("refused a further connection from the peer: session is Established");
            let _ = self
                .events
                .send((self.spec.address, PeerEvent::ConnectionRejected));
        } else {
            tracing::info!("connection collision: ours wins, the peer's is closed (RFC 4271 §6.8)");
        }
    }

    /// Ends the session on `stream` as a collision's loser and hands over `newer`.
    async fn switch(
        &self,
        mut session: Box<dyn SessionCore>,
        mut stream: TcpStream,
        newer: TcpStream,
        established: bool,
    ) -> (DriveEnd, bool) {
        tracing::info!("connection collision: the peer's connection wins (RFC 4271 §6.8)");
        session.close_collision(Instant::now().into_std());
        while let Some(event) = session.poll_event() {
            if let SessionEvent::Transmit(bytes) = event {
                let _ = stream.write_all(&bytes).await;
            }
        }
        (DriveEnd::Replaced(newer), established)
    }
}

async fn sleep_until(deadline: Option<Instant>) {
    match deadline {
        Some(deadline) => tokio::time::sleep_until(deadline).await,
        None => std::future::pending().await,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn local(id: [u8; 4]) -> LocalSettings {
        LocalSettings {
            as_number: 64512,
            router_id: Ipv4Addr::from(id),
            address: IpAddr::V4(Ipv4Addr::from(id)),
            hold_time: 90,
        }
    }

    #[test]
    fn an_established_session_refuses_any_further_connection() {
        for outgoing in [false, true] {
            let judged = judge_further(true, outgoing, None, &local([198, 18, 0, 9]), 64512);
            assert_eq!(judged, Further::Refuse);
        }
    }

    #[test]
    fn a_peer_that_opens_again_replaces_its_own_older_connection() {
        let judged = judge_further(false, false, None, &local([198, 18, 0, 1]), 64512);
        assert_eq!(judged, Further::Switch);
    }

    #[test]
    fn a_collision_waits_for_the_identifier_then_the_higher_one_keeps_its_connection() {
        let me = local([198, 18, 0, 5]);
        assert_eq!(judge_further(false, true, None, &me, 64512), Further::Hold);
        let lower = Some(Ipv4Addr::new(198, 18, 0, 4));
        assert_eq!(
            judge_further(false, true, lower, &me, 64512),
            Further::Refuse
        );
        let higher = Some(Ipv4Addr::new(198, 18, 0, 254));
        assert_eq!(
            judge_further(false, true, higher, &me, 64512),
            Further::Switch
        );
        // Equal identifiers (eBGP only): the larger AS number keeps its connection.
        let same = Some(me.router_id);
        assert_eq!(
            judge_further(false, true, same, &me, 64513),
            Further::Switch
        );
        assert_eq!(
            judge_further(false, true, same, &me, 64511),
            Further::Refuse
        );
    }
}
