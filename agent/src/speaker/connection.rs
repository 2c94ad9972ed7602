//! Sockets for the speaker: outgoing connection attempts (from the node IP, TCP-MD5 and GTSM
//! set before the SYN), and one reader and one writer task per connection.
//!
//! These tasks hold no BGP state. Everything they learn goes to the speaker task as an
//! [`Inbound`] over one bounded channel: a reader waits while the channel is full, so a peer
//! flooding UPDATEs is slowed down by TCP's flow control instead of growing our memory.

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::time::Duration;

use bytes::{Bytes, BytesMut};
use podroute_bgp::speaker::ConnId;
use tokio::io::AsyncWriteExt;
use tokio::net::tcp::{OwnedReadHalf, OwnedWriteHalf};
use tokio::net::{TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::sockopt;

/// How long an outgoing connect may take before it counts as failed.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);
/// Read size per connection: four 4096-byte messages (an extended message of up to 64 KiB
/// takes several reads; the session reassembles frames). Each chunk becomes at most a few
/// thousand Loc-RIB changes in flight, so it bounds that memory.
const READ_CHUNK: usize = 16 * 1024;

/// What the socket tasks tell the speaker task.
#[derive(Debug)]
pub enum Inbound {
    /// The listener accepted a connection from this address.
    Accepted(TcpStream, IpAddr),
    /// An outgoing attempt finished.
    Connected(ConnId, std::io::Result<TcpStream>),
    /// Bytes read.
    Bytes(ConnId, Bytes),
    /// The connection closed or failed.
    Closed(ConnId),
}

/// How to reach one peer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Dial {
    /// The peer's address and BGP port.
    pub remote: SocketAddr,
    /// Our address to connect from.
    pub local: IpAddr,
    /// TCP-MD5 password (RFC 2385).
    pub md5_password: Option<crate::peers::Password>,
    /// GTSM (RFC 5082).
    pub gtsm: bool,
}

/// Opens the connection and reports it (or the failure) as [`Inbound::Connected`].
pub async fn dial(conn: ConnId, dial: Dial, inbound: mpsc::Sender<Inbound>) {
    let result = connect(&dial).await;
    let _ = inbound.send(Inbound::Connected(conn, result)).await;
}

async fn connect(dial: &Dial) -> std::io::Result<TcpStream> {
    let socket = match dial.remote {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.bind(SocketAddr::new(dial.local, 0))?;
    if let Some(password) = &dial.md5_password {
        sockopt::set_tcp_md5(
            socket.as_fd(),
            dial.remote.ip(),
            password.expose().as_bytes(),
        )?;
    }
    if dial.gtsm {
        sockopt::set_gtsm(socket.as_fd(), dial.remote.is_ipv6())?;
    }
    let stream = tokio::time::timeout(CONNECT_TIMEOUT, socket.connect(dial.remote))
        .await
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::TimedOut, "connect timed out"))??;
    stream.set_nodelay(true)?;
    Ok(stream)
}

/// GTSM (RFC 5082 §3) on an accepted connection: true if its SYN arrived with TTL (hop
/// limit) 255, i.e. from a directly connected neighbour. The minimum-TTL option set after
/// the handshake ([`prepare_accepted`]) cannot check what was queued before it; the SYN
/// decides whether the connection is taken at all.
pub fn from_a_neighbour(stream: &TcpStream) -> bool {
    sockopt::saved_syn_hop_limit(stream.as_fd()) == Some(255)
}

/// Socket options on an accepted connection (TCP-MD5 came from the listener).
pub fn prepare_accepted(stream: &TcpStream, gtsm: bool, ipv6: bool) -> std::io::Result<()> {
    stream.set_nodelay(true)?;
    if gtsm {
        sockopt::set_gtsm(stream.as_fd(), ipv6)?;
    }
    Ok(())
}

/// The speaker's handle on a running connection: bytes to write, and the reader to stop.
#[derive(Debug)]
pub struct Connection {
    writer: mpsc::UnboundedSender<Bytes>,
    reader: tokio::task::AbortHandle,
}

impl Connection {
    /// Starts the reader and writer tasks of `stream`.
    pub fn start(conn: ConnId, stream: TcpStream, inbound: mpsc::Sender<Inbound>) -> Self {
        let (read, write) = stream.into_split();
        let (writer, queue) = mpsc::unbounded_channel();
        let reader = tokio::spawn(read_loop(conn, read, inbound)).abort_handle();
        tokio::spawn(write_loop(write, queue));
        Self { writer, reader }
    }

    /// Queues bytes to write. The queue is unbounded on purpose: what the speaker writes is
    /// bounded by its Adj-RIB-Out (our own routes) and keepalives, and the speaker must
    /// never wait on one slow peer.
    pub fn send(&self, bytes: Bytes) {
        let _ = self.writer.send(bytes);
    }
}

impl Drop for Connection {
    /// Stops reading at once; the writer ends after writing what was queued, then closes.
    fn drop(&mut self) {
        self.reader.abort();
    }
}

async fn read_loop(conn: ConnId, read: OwnedReadHalf, inbound: mpsc::Sender<Inbound>) {
    while let Some(chunk) = read_chunk(&read).await {
        if inbound.send(Inbound::Bytes(conn, chunk)).await.is_err() {
            return;
        }
    }
    let _ = inbound.send(Inbound::Closed(conn)).await;
}

/// Reads below this size are copied out of the read buffer, so a KEEPALIVE holds 19 bytes
/// on its way to the speaker, not the buffer's 16 KiB.
const SMALL_READ: usize = 512;

/// The next bytes from the peer; `None` once the connection is closed or failed.
///
/// The read buffer is allocated only when the socket is readable and handed on or freed at
/// once: an idle connection holds no buffer (999 mesh peers would otherwise keep 16 MB of
/// them, and the allocator's free lists fragment as their chunks come and go).
async fn read_chunk(read: &OwnedReadHalf) -> Option<Bytes> {
    loop {
        read.readable().await.ok()?;
        let mut buffer = BytesMut::with_capacity(READ_CHUNK);
        match read.try_read_buf(&mut buffer) {
            Ok(0) => return None,
            Ok(n) if n < SMALL_READ => return Some(Bytes::copy_from_slice(&buffer)),
            Ok(_) => return Some(buffer.freeze()),
            Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => continue,
            Err(_) => return None,
        }
    }
}

async fn write_loop(mut write: OwnedWriteHalf, mut queue: mpsc::UnboundedReceiver<Bytes>) {
    while let Some(bytes) = queue.recv().await {
        if write.write_all(bytes.as_ref()).await.is_err() {
            return;
        }
    }
    let _ = write.shutdown().await;
}
