//! The BGP listener: accepts TCP connections on the node IP and hands each one to the
//! speaker, which decides (a connection from an address that is no configured peer is
//! closed at once, before any session state exists).

use std::net::{IpAddr, SocketAddr};
use std::os::fd::AsFd;
use std::sync::Arc;
use std::time::Duration;

use tokio::net::{TcpListener, TcpSocket};
use tokio::sync::mpsc;

use super::connection::Inbound;
use crate::sockopt;

/// Binds the listener (with `SO_REUSEADDR`, so a restarted agent can bind at once). It sends
/// with TTL 255 for every peer (harmless for peers without GTSM, required for those with it);
/// the minimum-TTL check is set per accepted connection, and the SYN is kept so that a GTSM
/// peer's connection is taken only when its SYN came with TTL 255
/// ([`super::connection::from_a_neighbour`]).
pub fn bind(address: SocketAddr) -> std::io::Result<TcpListener> {
    let socket = match address {
        SocketAddr::V4(_) => TcpSocket::new_v4()?,
        SocketAddr::V6(_) => TcpSocket::new_v6()?,
    };
    socket.set_reuseaddr(true)?;
    sockopt::set_ttl_255(socket.as_fd(), address.is_ipv6())?;
    sockopt::set_save_syn(socket.as_fd())?;
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

/// Accepts forever and hands every connection, with the peer's address, to the speaker,
/// which takes it or refuses it. `accepted` is bounded: while the speaker is busy, the
/// kernel's backlog holds further connections.
pub async fn accept_loop(listener: Arc<TcpListener>, accepted: mpsc::Sender<Inbound>) {
    loop {
        let (stream, remote) = match listener.accept().await {
            Ok(accepted) => accepted,
            Err(error) => {
                tracing::warn!(%error, "accept failed");
                tokio::time::sleep(Duration::from_millis(100)).await;
                continue;
            }
        };
        let peer = canonical(remote.ip());
        if accepted
            .send(Inbound::Accepted(stream, peer))
            .await
            .is_err()
        {
            return;
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
