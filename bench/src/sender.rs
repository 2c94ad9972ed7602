//! The sender: one iBGP session per simulated peer, from the fabric namespace to the receiver,
//! written with `podroute-bgp`'s codec.
//!
//! Each peer is a thread in the fabric namespace with its own source address. It connects
//! (retrying until the receiver listens and accepts), exchanges OPEN and KEEPALIVE, and
//! reports Established. When every peer is up, [`Sender::start`] releases them together: each
//! writes its pre-encoded UPDATEs ([`crate::updates`]) with one `write_all` (the kernel's
//! socket buffer and the receiver's reading are all that pace it), then sends KEEPALIVEs at
//! a third of the negotiated hold time until stopped. A second thread per peer reads and
//! discards what the receiver sends (KEEPALIVEs, its own routes) and notes a NOTIFICATION or a
//! closed connection, which fails the run.

use std::io::{self, ErrorKind, Read, Write};
use std::net::{IpAddr, Ipv4Addr, Shutdown, SocketAddrV4, SocketAddrV6, TcpStream};
use std::os::fd::AsRawFd;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::{self, JoinHandle};
use std::time::{Duration, Instant};

use nix::sys::socket::{
    AddressFamily, SockFlag, SockType, SockaddrIn, SockaddrIn6, bind, connect, socket,
};
use podroute_bgp::message::{
    Capability, CodecContext, Family, MAX_MESSAGE_LEN, Message, MessageType, Open, frame_len,
};

use crate::error::{BenchError, Result};
use crate::netns;
use crate::updates::{CODEC, UpdateStream};

/// Hold time the senders offer (the receiver may negotiate it down).
pub const HOLD_TIME: u16 = 90;
/// BGP port of every receiver.
const BGP_PORT: u16 = 179;

/// One simulated peer.
#[derive(Debug, Clone)]
pub struct PeerPlan {
    /// Source address (in the fabric namespace).
    pub local: IpAddr,
    /// The receiver's address.
    pub remote: IpAddr,
    /// AS of both sides (iBGP).
    pub asn: u32,
    /// The peer's BGP identifier.
    pub router_id: Ipv4Addr,
    /// What it announces.
    pub stream: Arc<UpdateStream>,
}

/// What one peer did, read by the harness while it runs.
#[derive(Debug, Clone, Default)]
pub struct PeerStats {
    /// When the session reached Established.
    pub established_at: Option<Instant>,
    /// When the first UPDATE byte was handed to the socket.
    pub first_write: Option<Instant>,
    /// When the last byte (End-of-RIB) was handed to the socket.
    pub last_write: Option<Instant>,
    /// Why the session ended, if it did before [`Sender::stop`].
    pub closed: Option<String>,
    /// KEEPALIVEs sent after the UPDATEs.
    pub keepalives: u64,
}

/// A peer whose handshake is under way: its plan and the two ends of its start signal.
type Pending = (PeerPlan, mpsc::Receiver<()>, mpsc::Sender<()>);

struct Peer {
    plan: PeerPlan,
    stats: Arc<Mutex<PeerStats>>,
    stream: TcpStream,
    start: mpsc::Sender<()>,
    writer: JoinHandle<()>,
    reader: JoinHandle<()>,
}

/// Every peer's session (see the module docs).
pub struct Sender {
    peers: Vec<Peer>,
    stop: Arc<AtomicBool>,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender")
            .field("peers", &self.peers.len())
            .finish()
    }
}

impl Sender {
    /// Brings every peer's session up from namespace `ns`, waiting at most `timeout` for all
    /// of them (the receiver may still be starting). `cancel` aborts the wait, and so does
    /// `receiver_gone` returning true (the receiver exited).
    pub fn connect(
        ns: &str,
        plans: Vec<PeerPlan>,
        timeout: Duration,
        cancel: &AtomicBool,
        receiver_gone: &dyn Fn() -> bool,
    ) -> Result<Sender> {
        let deadline = Instant::now() + timeout;
        let stop = Arc::new(AtomicBool::new(false));
        let (up_tx, up_rx) = mpsc::channel::<(usize, io::Result<(TcpStream, u16)>)>();
        let mut pending: Vec<Option<Pending>> = Vec::new();
        let mut handshakes = Vec::new();
        for (i, plan) in plans.into_iter().enumerate() {
            let (start_tx, start_rx) = mpsc::channel();
            let tx = up_tx.clone();
            let (p, s) = (plan.clone(), stop.clone());
            handshakes.push(
                netns::spawn_in(ns, &format!("peer{}", i + 1), move || {
                    let r = establish(&p, deadline, &s);
                    let _ = tx.send((i, r));
                    Ok(())
                })
                .map_err(|e| BenchError::Failed(format!("sender thread: {e}")))?,
            );
            pending.push(Some((plan, start_rx, start_tx)));
        }
        drop(up_tx);
        let mut peers: Vec<Option<Peer>> = (0..pending.len()).map(|_| None).collect();
        let mut failure = None;
        while peers.iter().any(Option::is_none) && failure.is_none() {
            if cancel.load(Ordering::SeqCst) {
                failure = Some(BenchError::Interrupted);
                break;
            }
            if receiver_gone() {
                failure = Some(BenchError::Failed("the receiver exited".into()));
                break;
            }
            let (i, result) = match up_rx.recv_timeout(Duration::from_millis(100)) {
                Ok(r) => r,
                Err(mpsc::RecvTimeoutError::Timeout) => continue,
                Err(mpsc::RecvTimeoutError::Disconnected) => break,
            };
            let Some((plan, start_rx, start_tx)) = pending[i].take() else {
                continue;
            };
            match result.and_then(|(stream, hold)| {
                spawn_peer(plan, stream, hold, start_rx, start_tx, stop.clone())
            }) {
                Ok(peer) => peers[i] = Some(peer),
                Err(e) => failure = Some(BenchError::Failed(format!("peer {}: {e}", i + 1))),
            }
        }
        // Handshake threads end by the deadline or once `stop` is set.
        let peers: Vec<Peer> = peers.into_iter().flatten().collect();
        let sender = Sender { peers, stop };
        if let Some(e) = failure {
            sender.stop();
            for h in handshakes {
                let _ = h.join();
            }
            return Err(e);
        }
        for h in handshakes {
            let _ = h.join();
        }
        if sender.peers.len() != pending.len() {
            sender.stop();
            return Err(BenchError::Failed(
                "not every sender session came up".into(),
            ));
        }
        Ok(sender)
    }

    /// Releases every peer's UPDATEs at once.
    pub fn start(&self) {
        for p in &self.peers {
            let _ = p.start.send(());
        }
    }

    /// Each peer's stats.
    pub fn stats(&self) -> Vec<PeerStats> {
        self.peers
            .iter()
            .map(|p| p.stats.lock().map(|s| s.clone()).unwrap_or_default())
            .collect()
    }

    /// When the first UPDATE of any peer was written.
    pub fn first_update_at(&self) -> Option<Instant> {
        self.stats().iter().filter_map(|s| s.first_write).min()
    }

    /// When every peer had written everything, once they all have.
    pub fn all_written_at(&self) -> Option<Instant> {
        let stats = self.stats();
        stats
            .iter()
            .map(|s| s.last_write)
            .collect::<Option<Vec<_>>>()
            .and_then(|v| v.into_iter().max())
    }

    /// The first session that ended, and why.
    pub fn failure(&self) -> Option<String> {
        self.peers.iter().find_map(|p| {
            let s = p.stats.lock().ok()?;
            s.closed
                .as_ref()
                .map(|why| format!("session from {}: {why}", p.plan.local))
        })
    }

    /// Closes every session (without a Cease: the receiver sees the connection drop).
    pub fn stop(self) {
        self.stop.store(true, Ordering::SeqCst);
        for p in &self.peers {
            let _ = p.stream.shutdown(Shutdown::Both);
        }
        for p in self.peers {
            let _ = p.start.send(());
            let _ = p.writer.join();
            let _ = p.reader.join();
        }
    }
}

fn spawn_peer(
    plan: PeerPlan,
    stream: TcpStream,
    hold: u16,
    start_rx: mpsc::Receiver<()>,
    start_tx: mpsc::Sender<()>,
    stop: Arc<AtomicBool>,
) -> io::Result<Peer> {
    let stats = Arc::new(Mutex::new(PeerStats {
        established_at: Some(Instant::now()),
        ..PeerStats::default()
    }));
    let mut read_half = stream.try_clone()?;
    read_half.set_read_timeout(None)?;
    let mut write_half = stream.try_clone()?;
    let (rs, rstop) = (stats.clone(), stop.clone());
    let reader = thread::Builder::new()
        .name("peer-reader".into())
        .spawn(move || read_until_closed(&mut read_half, &rs, &rstop))?;
    let (ws, wstop, bytes) = (stats.clone(), stop, plan.stream.clone());
    let writer = thread::Builder::new()
        .name("peer-writer".into())
        .spawn(move || {
            if start_rx.recv().is_err() || wstop.load(Ordering::SeqCst) {
                return;
            }
            let now = Instant::now();
            set(&ws, |s| s.first_write = Some(now));
            if let Err(e) = write_half.write_all(&bytes.bytes) {
                if !wstop.load(Ordering::SeqCst) {
                    set(&ws, |s| s.closed = Some(format!("write: {e}")));
                }
                return;
            }
            let now = Instant::now();
            set(&ws, |s| s.last_write = Some(now));
            keepalives(&mut write_half, hold, &ws, &wstop);
        })?;
    Ok(Peer {
        plan,
        stats,
        stream,
        start: start_tx,
        writer,
        reader,
    })
}

fn set(stats: &Mutex<PeerStats>, f: impl FnOnce(&mut PeerStats)) {
    if let Ok(mut s) = stats.lock() {
        f(&mut s);
    }
}

/// KEEPALIVE every third of the hold time (RFC 4271 §10) until `stop`.
fn keepalives(stream: &mut TcpStream, hold: u16, stats: &Mutex<PeerStats>, stop: &AtomicBool) {
    if hold == 0 {
        return;
    }
    let every = Duration::from_secs(u64::from(hold / 3).max(1));
    let keepalive = Message::Keepalive.to_bytes(&CODEC);
    let mut next = Instant::now() + every;
    while !stop.load(Ordering::SeqCst) {
        if Instant::now() >= next {
            if let Err(e) = stream.write_all(&keepalive) {
                if !stop.load(Ordering::SeqCst) {
                    set(stats, |s| s.closed = Some(format!("keepalive: {e}")));
                }
                return;
            }
            set(stats, |s| s.keepalives += 1);
            next += every;
        }
        thread::sleep(Duration::from_millis(100));
    }
}

/// Reads and drops the receiver's messages; records why the session ended unless stopped.
/// Only NOTIFICATIONs are decoded: the receiver's own UPDATEs are framed and dropped.
fn read_until_closed(stream: &mut TcpStream, stats: &Mutex<PeerStats>, stop: &AtomicBool) {
    let mut frames = Framer::default();
    let reason = loop {
        match frames.next(stream) {
            Ok(frame) if frame[18] == MessageType::Notification as u8 => {
                break describe(&frame);
            }
            Ok(_) => {}
            Err(e) => break e.to_string(),
        }
    };
    if !stop.load(Ordering::SeqCst) {
        set(stats, |s| s.closed = Some(reason));
    }
}

/// A NOTIFICATION frame as `NOTIFICATION code/subcode`.
fn describe(frame: &[u8]) -> String {
    match Message::decode(frame, &CodecContext::default()) {
        Ok(Message::Notification(n)) => format!("NOTIFICATION {}/{}", n.code, n.subcode),
        _ => "a malformed NOTIFICATION".into(),
    }
}

/// Splits a byte stream into whole messages with `frame_len`.
#[derive(Default)]
struct Framer {
    buf: Vec<u8>,
}

impl Framer {
    /// The next whole message, header included.
    fn next(&mut self, stream: &mut TcpStream) -> io::Result<Vec<u8>> {
        loop {
            let found = frame_len(&self.buf, MAX_MESSAGE_LEN)
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()))?;
            if let Some(len) = found {
                return Ok(self.buf.drain(..len).collect());
            }
            let mut chunk = [0u8; 16384];
            let n = stream.read(&mut chunk)?;
            if n == 0 {
                return Err(io::Error::new(
                    ErrorKind::UnexpectedEof,
                    "connection closed by the receiver",
                ));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
    }

    /// The next OPEN, KEEPALIVE or NOTIFICATION, decoded (anything else is skipped).
    fn next_control(&mut self, stream: &mut TcpStream) -> io::Result<Message> {
        loop {
            let frame = self.next(stream)?;
            if frame[18] == MessageType::Update as u8 {
                continue;
            }
            return Message::decode(&frame, &CodecContext::default())
                .map_err(|e| io::Error::new(ErrorKind::InvalidData, e.to_string()));
        }
    }
}

/// Connects and exchanges OPEN/KEEPALIVE, retrying until `deadline`; returns the stream and
/// the negotiated hold time.
fn establish(
    plan: &PeerPlan,
    deadline: Instant,
    stop: &AtomicBool,
) -> io::Result<(TcpStream, u16)> {
    let mut last_error = String::from("no attempt");
    while Instant::now() < deadline && !stop.load(Ordering::SeqCst) {
        match try_establish(plan) {
            Ok(r) => return Ok(r),
            Err(e) => last_error = e.to_string(),
        }
        thread::sleep(Duration::from_millis(200));
    }
    Err(io::Error::new(
        ErrorKind::TimedOut,
        format!(
            "no session with {} from {}: {last_error}",
            plan.remote, plan.local
        ),
    ))
}

fn try_establish(plan: &PeerPlan) -> io::Result<(TcpStream, u16)> {
    let mut stream = connect_from(plan.local, plan.remote)?;
    stream.set_read_timeout(Some(Duration::from_secs(10)))?;
    let family = match plan.remote {
        IpAddr::V4(_) => Family::IPV4_UNICAST,
        IpAddr::V6(_) => Family::IPV6_UNICAST,
    };
    let open = Open::new(
        plan.asn,
        HOLD_TIME,
        plan.router_id,
        vec![
            Capability::Multiprotocol(family),
            Capability::RouteRefresh,
            Capability::FourOctetAs(plan.asn),
        ],
    );
    let ctx = CodecContext::default();
    stream.write_all(&Message::Open(open).to_bytes(&ctx))?;
    let mut frames = Framer::default();
    let theirs = loop {
        match frames.next_control(&mut stream)? {
            Message::Open(o) => break o,
            Message::Notification(n) => return Err(notification(n.code, n.subcode)),
            _ => {}
        }
    };
    if theirs.asn() != plan.asn {
        return Err(io::Error::other(format!(
            "the receiver speaks AS {}, not {}",
            theirs.asn(),
            plan.asn
        )));
    }
    let hold = HOLD_TIME.min(theirs.hold_time);
    stream.write_all(&Message::Keepalive.to_bytes(&ctx))?;
    loop {
        match frames.next_control(&mut stream)? {
            Message::Keepalive => break,
            Message::Notification(n) => return Err(notification(n.code, n.subcode)),
            _ => {}
        }
    }
    // Whatever the framer read past the KEEPALIVE is the receiver's own routes: dropped.
    Ok((stream, hold))
}

fn notification(code: u8, subcode: u8) -> io::Error {
    io::Error::other(format!("the receiver sent NOTIFICATION {code}/{subcode}"))
}

/// A TCP connection from `local` (bound first, so each simulated peer has its own address)
/// to `remote`:179.
fn connect_from(local: IpAddr, remote: IpAddr) -> io::Result<TcpStream> {
    let family = match remote {
        IpAddr::V4(_) => AddressFamily::Inet,
        IpAddr::V6(_) => AddressFamily::Inet6,
    };
    let fd = socket(family, SockType::Stream, SockFlag::SOCK_CLOEXEC, None)?;
    match (local, remote) {
        (IpAddr::V4(l), IpAddr::V4(r)) => {
            bind(fd.as_raw_fd(), &SockaddrIn::from(SocketAddrV4::new(l, 0)))?;
            connect(
                fd.as_raw_fd(),
                &SockaddrIn::from(SocketAddrV4::new(r, BGP_PORT)),
            )?;
        }
        (IpAddr::V6(l), IpAddr::V6(r)) => {
            bind(
                fd.as_raw_fd(),
                &SockaddrIn6::from(SocketAddrV6::new(l, 0, 0, 0)),
            )?;
            connect(
                fd.as_raw_fd(),
                &SockaddrIn6::from(SocketAddrV6::new(r, BGP_PORT, 0, 0)),
            )?;
        }
        _ => {
            return Err(io::Error::new(
                ErrorKind::InvalidInput,
                format!("{local} and {remote} are of different families"),
            ));
        }
    }
    let stream = TcpStream::from(fd);
    stream.set_nodelay(true)?;
    Ok(stream)
}
