//! The mesh generator: many light iBGP speakers in one process, one tokio task each on one
//! current-thread runtime, inside the lab namespace that holds their addresses.
//!
//! The agent connects to them (in the mesh the lower session address connects, and the
//! agent's 198.18.0.x is lower than 198.18.16.x), so the generator is one listener on port
//! 179; the local address a connection arrived on says which simulated node it is. Each
//! speaker answers the agent's OPEN with its own (graceful restart advertised, as the agent's
//! mesh peers do), confirms with KEEPALIVE, and once Established announces its Node's pod CIDR
//! with its own address as next hop (or the one [`Generator::start`] is given), then
//! End-of-RIB (the agent's initial sync waits for it), then sends KEEPALIVEs at a third of the
//! negotiated hold time until stopped. Messages are framed and built with `podroute-bgp`'s
//! codec.
//!
//! kube-router (GoBGP) connects the same way: it dials every Node's InternalIP from its own
//! (first attempt 5–10 s after the peer is added) and accepts only configured neighbours, so a
//! listener is all it takes.
//!
//! With BFD on ([`Generator::start`]'s `bfd`), every simulated node also runs single-hop
//! BFD to the agent ([`super::bfd_responder`]), on the same runtime.

use std::collections::HashMap;
use std::io::{self, ErrorKind};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use bytes::BytesMut;
use ipnetwork::{IpNetwork, Ipv4Network};
use podroute_bgp::message::{
    Capability, Family, GracefulRestart, GracefulRestartFamily, MAX_MESSAGE_LEN, Message,
    MessageType, Open, frame_len,
};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;
use tokio::task::JoinSet;

use super::bfd_responder::{BfdCount, BfdCounters, Responder, Sockets};
use crate::error::{BenchError, Result};
use crate::netns;
use crate::updates::{self, CODEC};

/// Hold time the speakers offer (the agent's own, 90 s by default, is what gets negotiated).
pub const HOLD_TIME: u16 = 90;
/// Restart time in the speakers' graceful-restart capability.
const RESTART_TIME: u16 = 120;
/// How long a speaker waits for the agent's OPEN and KEEPALIVE.
const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(30);

/// One simulated node: its session address and the pod CIDR it announces.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct SimulatedNode {
    /// Session address (and next hop), in the generator's namespace.
    pub address: Ipv4Addr,
    /// The Node object's pod CIDR.
    pub pod_cidr: Ipv4Network,
}

/// What one speaker saw, read by the harness while it runs.
#[derive(Debug, Clone, Default)]
pub struct SpeakerState {
    /// Connections the agent opened to this speaker.
    pub connections: u32,
    /// When the (last) session reached Established.
    pub established_at: Option<Instant>,
    /// The hold time in the agent's OPEN.
    pub agent_hold_time: Option<u16>,
    /// The restart time of the agent's graceful-restart capability, if it sent one.
    pub agent_restart_time: Option<u16>,
    /// The capabilities in the agent's OPEN, in its order ([`capability_name`]).
    pub agent_capabilities: Vec<String>,
    /// The hold time both ends use.
    pub negotiated_hold_time: Option<u16>,
    /// KEEPALIVEs received after Established.
    pub keepalives_received: u64,
    /// KEEPALIVEs sent after Established.
    pub keepalives_sent: u64,
    /// UPDATEs received (the agent's own routes, End-of-RIB).
    pub updates_received: u64,
    /// Why the last session ended, if it did before [`Generator::stop`].
    pub closed: Option<String>,
}

type States = Arc<Mutex<Vec<SpeakerState>>>;

/// The running generator (see the module docs).
pub struct Generator {
    stop: watch::Sender<bool>,
    thread: Option<JoinHandle<io::Result<()>>>,
    states: States,
    bfd: Arc<BfdCounters>,
}

impl std::fmt::Debug for Generator {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Generator").finish_non_exhaustive()
    }
}

impl Generator {
    /// Starts the speakers of `nodes` (AS `asn`) in namespace `ns`, and with `bfd` (the
    /// agent's address) a BFD session from each to it; returns once the sockets are bound.
    /// With `next_hop`, every speaker announces its pod CIDR via that address instead of its
    /// own.
    pub fn start(
        ns: &str,
        asn: u32,
        nodes: Vec<SimulatedNode>,
        next_hop: Option<Ipv4Addr>,
        bfd: Option<Ipv4Addr>,
    ) -> Result<Generator> {
        let states: States = Arc::new(Mutex::new(vec![SpeakerState::default(); nodes.len()]));
        let counters = Arc::new(BfdCounters::default());
        let bfd_counters = counters.clone();
        let (stop, stop_rx) = watch::channel(false);
        let (ready_tx, ready_rx) = mpsc::channel::<io::Result<()>>();
        let st = states.clone();
        let thread = netns::spawn_in(ns, "mesh-generator", move || {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()?;
            let plan = Plan {
                asn,
                nodes,
                next_hop,
                bfd,
            };
            runtime.block_on(serve(plan, bfd_counters, st, stop_rx, ready_tx))
        })
        .map_err(|e| BenchError::Failed(format!("generator thread: {e}")))?;
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(Generator {
                stop,
                thread: Some(thread),
                states,
                bfd: counters,
            }),
            Ok(Err(e)) => Err(BenchError::Failed(format!("generator listener: {e}"))),
            Err(_) => Err(BenchError::Failed(
                "the generator did not start listening".into(),
            )),
        }
    }

    /// Every speaker's state, in the order of the nodes given to [`Generator::start`].
    pub fn states(&self) -> Vec<SpeakerState> {
        self.states.lock().map(|s| s.clone()).unwrap_or_default()
    }

    /// What the BFD side counted so far (all zero without BFD).
    pub fn bfd(&self) -> BfdCount {
        self.bfd.snapshot()
    }

    /// Closes every session (no Cease) and ends the runtime.
    pub fn stop(mut self) {
        self.shutdown();
    }

    fn shutdown(&mut self) {
        let _ = self.stop.send(true);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Drop for Generator {
    fn drop(&mut self) {
        self.shutdown();
    }
}

/// What [`Generator::start`] was asked to simulate.
struct Plan {
    asn: u32,
    nodes: Vec<SimulatedNode>,
    next_hop: Option<Ipv4Addr>,
    bfd: Option<Ipv4Addr>,
}

async fn serve(
    plan: Plan,
    bfd_counters: Arc<BfdCounters>,
    states: States,
    mut stop: watch::Receiver<bool>,
    ready: mpsc::Sender<io::Result<()>>,
) -> io::Result<()> {
    let Plan {
        asn,
        nodes,
        next_hop,
        bfd,
    } = plan;
    let bound = async {
        let listener = TcpListener::bind(SocketAddr::from((Ipv4Addr::UNSPECIFIED, 179))).await?;
        let sockets = bfd.map(|_| Sockets::open()).transpose()?;
        io::Result::Ok((listener, sockets))
    };
    let (listener, sockets) = match bound.await {
        Ok(b) => {
            let _ = ready.send(Ok(()));
            b
        }
        Err(e) => {
            let _ = ready.send(Err(io::Error::new(e.kind(), e.to_string())));
            return Err(e);
        }
    };
    let responder = match (bfd, sockets) {
        (Some(agent), Some(sockets)) => {
            let addresses = nodes.iter().map(|n| n.address).collect();
            let responder = Responder::new(agent, addresses, bfd_counters);
            Some(tokio::spawn(responder.run(sockets, stop.clone())))
        }
        _ => None,
    };
    let by_address: HashMap<Ipv4Addr, usize> = nodes
        .iter()
        .enumerate()
        .map(|(i, n)| (n.address, i))
        .collect();
    // Each speaker's UPDATE and End-of-RIB, encoded once.
    let announcements: Vec<Arc<Vec<u8>>> = nodes
        .iter()
        .map(|n| {
            let via = next_hop.unwrap_or(n.address);
            Arc::new(updates::encode(&[IpNetwork::V4(n.pod_cidr)], IpAddr::V4(via)).bytes)
        })
        .collect();
    let mut sessions = JoinSet::new();
    loop {
        tokio::select! {
            _ = stop.changed() => break,
            accepted = listener.accept() => {
                let Ok((stream, _)) = accepted else { continue };
                let Ok(SocketAddr::V4(local)) = stream.local_addr() else { continue };
                let Some(&i) = by_address.get(local.ip()) else { continue };
                let speaker = Speaker {
                    index: i,
                    asn,
                    bgp_id: nodes[i].address,
                    announcement: announcements[i].clone(),
                    states: states.clone(),
                };
                let stop = stop.clone();
                sessions.spawn(speaker.run(stream, stop));
            }
            Some(_) = sessions.join_next(), if !sessions.is_empty() => {}
        }
    }
    sessions.shutdown().await;
    if let Some(r) = responder {
        let _ = r.await;
    }
    Ok(())
}

struct Speaker {
    index: usize,
    asn: u32,
    bgp_id: Ipv4Addr,
    announcement: Arc<Vec<u8>>,
    states: States,
}

impl Speaker {
    fn update(&self, f: impl FnOnce(&mut SpeakerState)) {
        if let Ok(mut s) = self.states.lock()
            && let Some(state) = s.get_mut(self.index)
        {
            f(state);
        }
    }

    async fn run(self, stream: TcpStream, mut stop: watch::Receiver<bool>) {
        self.update(|s| s.connections += 1);
        let outcome = tokio::select! {
            r = self.session(stream) => r,
            _ = stop.changed() => return,
        };
        let why = match outcome {
            Ok(()) => "closed".to_owned(),
            Err(e) => e.to_string(),
        };
        self.update(|s| s.closed = Some(why));
    }

    async fn session(&self, mut stream: TcpStream) -> io::Result<()> {
        stream.set_nodelay(true)?;
        let mut frames = Framer::default();
        let theirs = tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.open(&mut stream))
            .await
            .map_err(|_| io::Error::new(ErrorKind::TimedOut, "no OPEN from the agent"))??;
        if theirs.asn() != self.asn {
            return Err(io::Error::other(format!(
                "the agent speaks AS {}, not {}",
                theirs.asn(),
                self.asn
            )));
        }
        let hold = HOLD_TIME.min(theirs.hold_time);
        let restart = theirs.capabilities.iter().find_map(|c| match c {
            Capability::GracefulRestart(gr) => Some(gr.restart_time),
            _ => None,
        });
        self.update(|s| {
            s.agent_hold_time = Some(theirs.hold_time);
            s.agent_restart_time = restart;
            s.agent_capabilities = theirs.capabilities.iter().map(capability_name).collect();
            s.negotiated_hold_time = Some(hold);
        });
        let open = Open::new(
            self.asn,
            HOLD_TIME,
            self.bgp_id,
            vec![
                Capability::Multiprotocol(Family::IPV4_UNICAST),
                Capability::RouteRefresh,
                Capability::GracefulRestart(GracefulRestart {
                    flags: 0,
                    restart_time: RESTART_TIME,
                    families: vec![GracefulRestartFamily {
                        family: Family::IPV4_UNICAST,
                        flags: 0,
                    }],
                }),
                Capability::FourOctetAs(self.asn),
            ],
        );
        let mut out = BytesMut::new();
        Message::Open(open).encode(&mut out, &CODEC);
        Message::Keepalive.encode(&mut out, &CODEC);
        stream.write_all(&out).await?;
        tokio::time::timeout(HANDSHAKE_TIMEOUT, frames.keepalive(&mut stream))
            .await
            .map_err(|_| io::Error::new(ErrorKind::TimedOut, "no KEEPALIVE from the agent"))??;
        let now = Instant::now();
        self.update(|s| {
            s.established_at = Some(now);
            s.closed = None;
        });
        stream.write_all(&self.announcement).await?;
        let keepalive = Message::Keepalive.to_bytes(&CODEC);
        let every = Duration::from_secs(u64::from(hold / 3).max(1));
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + every, every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                frame = frames.next(&mut stream) => {
                    let frame = frame?;
                    match frame[18] {
                        t if t == MessageType::Keepalive as u8 => {
                            self.update(|s| s.keepalives_received += 1);
                        }
                        t if t == MessageType::Update as u8 => {
                            self.update(|s| s.updates_received += 1);
                        }
                        t if t == MessageType::Notification as u8 => {
                            return Err(match Message::decode(&frame, &Default::default()) {
                                Ok(Message::Notification(n)) => notification(n.code, n.subcode),
                                _ => io::Error::other("a malformed NOTIFICATION"),
                            });
                        }
                        _ => {}
                    }
                }
                _ = tick.tick(), if hold > 0 => {
                    stream.write_all(&keepalive).await?;
                    self.update(|s| s.keepalives_sent += 1);
                }
            }
        }
    }
}

/// A short name of a capability for the results: `ipv4-unicast` style for multiprotocol
/// families (`afi/safi` when unnamed), `graceful-restart`; of those the codec does not
/// interpret, the IANA name of the ones GoBGP sends, else `code <n>`.
pub fn capability_name(c: &Capability) -> String {
    match c {
        Capability::Multiprotocol(f) if *f == Family::IPV4_UNICAST => "ipv4-unicast".into(),
        Capability::Multiprotocol(f) if *f == Family::IPV6_UNICAST => "ipv6-unicast".into(),
        Capability::Multiprotocol(f) => format!("multiprotocol {}/{}", f.afi, f.safi),
        Capability::RouteRefresh => "route-refresh".into(),
        Capability::ExtendedMessage => "extended-message".into(),
        Capability::GracefulRestart(_) => "graceful-restart".into(),
        Capability::FourOctetAs(_) => "4-octet-as".into(),
        Capability::Unknown { code: 5, .. } => "extended-next-hop".into(),
        Capability::Unknown { code: 69, .. } => "add-path".into(),
        Capability::Unknown { code: 73, .. } => "fqdn".into(),
        Capability::Unknown { code, .. } => format!("code {code}"),
    }
}

fn notification(code: u8, subcode: u8) -> io::Error {
    io::Error::other(format!("the agent sent NOTIFICATION {code}/{subcode}"))
}

/// Splits the agent's byte stream into whole messages with `frame_len`. Reading into the
/// buffer is cancel-safe, so [`Framer::next`] can sit in a `select!`.
#[derive(Default)]
struct Framer {
    buf: BytesMut,
}

impl Framer {
    /// The next whole message, header included.
    async fn next(&mut self, stream: &mut TcpStream) -> io::Result<BytesMut> {
        loop {
            let found = frame_len(&self.buf, MAX_MESSAGE_LEN)
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
            if let Some(len) = found {
                return Ok(self.buf.split_to(len));
            }
            if stream.read_buf(&mut self.buf).await? == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed by the agent",
                ));
            }
        }
    }

    /// The peer's OPEN (a NOTIFICATION instead is an error).
    async fn open(&mut self, stream: &mut TcpStream) -> io::Result<Open> {
        loop {
            match self.next_control(stream).await? {
                Message::Open(o) => return Ok(o),
                Message::Notification(n) => return Err(notification(n.code, n.subcode)),
                _ => {}
            }
        }
    }

    /// The KEEPALIVE that confirms our OPEN (a NOTIFICATION instead is an error).
    async fn keepalive(&mut self, stream: &mut TcpStream) -> io::Result<()> {
        loop {
            match self.next_control(stream).await? {
                Message::Keepalive => return Ok(()),
                Message::Notification(n) => return Err(notification(n.code, n.subcode)),
                _ => {}
            }
        }
    }

    /// The next OPEN, KEEPALIVE or NOTIFICATION, decoded (UPDATEs are skipped).
    async fn next_control(&mut self, stream: &mut TcpStream) -> io::Result<Message> {
        loop {
            let frame = self.next(stream).await?;
            if frame[18] == MessageType::Update as u8 {
                continue;
            }
            return Message::decode(&frame, &Default::default())
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()));
        }
    }
}
