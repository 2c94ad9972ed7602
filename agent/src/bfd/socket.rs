//! The BFD shell's UDP sockets for one address family (RFC 5881 §4, §5).
//!
//! What this module owns: a receive socket on port 3784 that reports each datagram's TTL
//! or Hop Limit (the GTSM check itself is the endpoint's, so drops are counted), and a
//! send socket bound to one port in 49152–65535 that sends with TTL 255. One pair per
//! family for all sessions: a session is a row in [`podroute_bfd::endpoint::Bfd`], not a
//! socket.

use std::io;
use std::io::IoSliceMut;
use std::net::{IpAddr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};

use nix::sys::socket::{
    AddressFamily, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrStorage, bind,
    setsockopt, socket, sockopt,
};
use podroute_bfd::endpoint::SINGLE_HOP_TTL;
use tokio::io::Interest;
use tokio::net::UdpSocket;

/// Single-hop BFD Control packets go to this port (RFC 5881 §4).
pub const CONTROL_PORT: u16 = 3784;

/// Source ports a single-hop Control packet may come from (RFC 5881 §4).
pub const SOURCE_PORTS: std::ops::RangeInclusive<u16> = 49152..=65535;

/// A received datagram's header facts.
#[derive(Debug, Clone, Copy)]
pub struct Received {
    /// Sender's address.
    pub source: IpAddr,
    /// TTL / Hop Limit it arrived with; 0 if the kernel did not say.
    pub ttl: u8,
    /// Payload length.
    pub len: usize,
}

/// The two sockets of one family.
#[derive(Debug)]
pub struct FamilySockets {
    rx: UdpSocket,
    tx: UdpSocket,
}

impl FamilySockets {
    /// Opens both sockets on `local` (the node's address in that family; the receive
    /// socket takes port 3784, the send socket the first free port of 49152–65535 from a
    /// start derived from `seed`). Needs a tokio runtime.
    pub fn open(local: IpAddr, seed: u64) -> io::Result<Self> {
        let rx = udp_socket(local)?;
        if local.is_ipv6() {
            setsockopt(&rx, sockopt::Ipv6RecvHopLimit, &true)?;
        } else {
            setsockopt(&rx, sockopt::Ipv4RecvTtl, &true)?;
        }
        bind_to(&rx, SocketAddr::new(local, CONTROL_PORT)).map_err(|e| {
            io::Error::new(
                e.kind(),
                format!("bind BFD port {local}:{CONTROL_PORT}: {e}"),
            )
        })?;
        let tx = udp_socket(local)?;
        if local.is_ipv6() {
            setsockopt(&tx, sockopt::Ipv6Ttl, &i32::from(SINGLE_HOP_TTL))?;
        } else {
            setsockopt(&tx, sockopt::Ipv4Ttl, &i32::from(SINGLE_HOP_TTL))?;
        }
        bind_source_port(&tx, local, seed)?;
        Ok(Self {
            rx: into_tokio(rx)?,
            tx: into_tokio(tx)?,
        })
    }

    /// The port Control packets are sent from.
    pub fn source_port(&self) -> io::Result<u16> {
        Ok(self.tx.local_addr()?.port())
    }

    /// Waits for one datagram on port 3784.
    pub async fn recv(&self, buf: &mut [u8]) -> io::Result<Received> {
        self.rx
            .async_io(Interest::READABLE, || recv_with_ttl(&self.rx, buf))
            .await
    }

    /// Sends one Control packet to `peer` port 3784.
    pub async fn send(&self, peer: IpAddr, packet: &[u8]) -> io::Result<()> {
        self.tx
            .send_to(packet, SocketAddr::new(peer, CONTROL_PORT))
            .await
            .map(|_| ())
    }
}

fn udp_socket(local: IpAddr) -> io::Result<OwnedFd> {
    let family = if local.is_ipv6() {
        AddressFamily::Inet6
    } else {
        AddressFamily::Inet
    };
    let fd = socket(
        family,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?;
    if local.is_ipv6() {
        // The IPv4 socket has its own port 3784; a dual-stack one would collide with it.
        setsockopt(&fd, sockopt::Ipv6V6Only, &true)?;
    }
    Ok(fd)
}

fn bind_to(fd: &OwnedFd, addr: SocketAddr) -> io::Result<()> {
    bind(fd.as_raw_fd(), &SockaddrStorage::from(addr)).map_err(io::Error::from)
}

/// Binds to the first free port of [`SOURCE_PORTS`], starting at a seed-derived one.
fn bind_source_port(fd: &OwnedFd, local: IpAddr, seed: u64) -> io::Result<()> {
    let first = u64::from(*SOURCE_PORTS.start());
    let count = u64::from(*SOURCE_PORTS.end()) - first + 1;
    for i in 0..count {
        let port = u16::try_from(first + (seed.wrapping_add(i)) % count).unwrap_or(u16::MAX);
        match bind_to(fd, SocketAddr::new(local, port)) {
            Ok(()) => return Ok(()),
            Err(e) if e.kind() == io::ErrorKind::AddrInUse => continue,
            Err(e) => return Err(e),
        }
    }
    Err(io::Error::new(
        io::ErrorKind::AddrInUse,
        format!("no free BFD source port on {local} in 49152-65535"),
    ))
}

fn into_tokio(fd: OwnedFd) -> io::Result<UdpSocket> {
    UdpSocket::from_std(std::net::UdpSocket::from(fd))
}

/// One non-blocking `recvmsg` that also reads the TTL / Hop Limit control message.
fn recv_with_ttl(socket: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(libc::c_int);
    let mut iov = [IoSliceMut::new(buf)];
    let msg = nix::sys::socket::recvmsg::<SockaddrStorage>(
        socket.as_raw_fd(),
        &mut iov,
        Some(&mut cmsg),
        MsgFlags::empty(),
    )?;
    let mut ttl = 0u8;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) | ControlMessageOwned::Ipv6HopLimit(t) => {
                ttl = u8::try_from(t).unwrap_or(0);
            }
            _ => {}
        }
    }
    let source = msg
        .address
        .and_then(|a| {
            a.as_sockaddr_in()
                .map(|v4| IpAddr::V4(v4.ip()))
                .or_else(|| a.as_sockaddr_in6().map(|v6| IpAddr::V6(v6.ip())))
        })
        .ok_or_else(|| io::Error::other("datagram without an IP source address"))?;
    Ok(Received {
        source,
        ttl,
        len: msg.bytes,
    })
}
