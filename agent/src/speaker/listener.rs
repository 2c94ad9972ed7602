//! The BGP listener: accepts TCP connections on the node IP and hands each one to its peer's
//! task. A connection from an address that is no configured peer is closed at once, before any
//! session state exists; such refusals are counted and logged at most every few seconds.

use std::collections::HashMap;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::{Arc, RwLock};
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket, TcpStream};
use tokio::sync::mpsc;

use crate::sockopt;

/// How often a refused-connection line may be logged.
const REFUSAL_LOG_INTERVAL: Duration = Duration::from_secs(10);

/// Peer address → the channel of its task.
pub type PeerRoutes = Arc<RwLock<HashMap<IpAddr, mpsc::Sender<TcpStream>>>>;

/// Binds the listener (with `SO_REUSEADDR`, so a restarted agent can bind at once). It sends
/// with TTL 255 for every peer (harmless for peers without GTSM, required for those with it);
/// the minimum-TTL check is set per accepted connection.
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    sockopt::set_ttl_255(socket.as_fd(), address.is_ipv6())?;
    socket.bind(address)?;
    socket.listen(128)
}

/// Installs or removes a peer's TCP-MD5 key on the listening socket (RFC 2385: the key must be
/// known before the peer's SYN arrives).
pub fn set_peer_md5(
    listener: &TcpListener,
    peer: IpAddr,
    password: Option<&str>,
) -> std::io::Result<()> {
    sockopt::set_tcp_md5(
        listener.as_fd(),
        peer,
        password.unwrap_or_default().as_bytes(),
    )
}

/// Accepts forever, routing connections to peer tasks; `refused` is called per refusal.
pub async fn accept_loop(listener: Arc<TcpListener>, peers: PeerRoutes, refused: impl Fn()) {
    let mut last_log: Option<tokio::time::Instant> = None;
    let mut unlogged = 0u64;
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let source = canonical(remote.ip());
        let task = peers.read().ok().and_then(|p| p.get(&source).cloned());
        match task {
            Some(task) => {
                if task.try_send(stream).is_err() {
                    tracing::debug!(%source, "peer task busy; connection dropped");
                }
            }
            None => {
                drop(stream);
                refused();
                unlogged += 1;
                let now = tokio::time::Instant::now();
                if last_log.is_none_or(|t| now.duration_since(t) >= REFUSAL_LOG_INTERVAL) {
                    tracing::warn!(%source, refused = unlogged, "BGP connection from an address that is no configured peer closed");
                    last_log = Some(now);
                    unlogged = 0;
                }
            }
        }
    }
}

/// IPv4-mapped IPv6 addresses (from a dual-stack socket) as plain IPv4.
fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}
