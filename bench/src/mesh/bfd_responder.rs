//! The mesh generator's BFD side (issue 12): single-hop BFD (RFC 5881) for every simulated
//! node, towards the one agent.
//!
//! One `podroute_bfd` endpoint per simulated node, each with one session to the agent (an
//! endpoint keys its sessions by peer address, and all of them have the same peer). Two
//! sockets for all of them: one bound to 0.0.0.0:3784 that reports each datagram's TTL
//! (`IP_RECVTTL`: the endpoint drops what did not arrive with 255) and its destination
//! address (`IP_PKTINFO`: which simulated node it is for), and one bound to 0.0.0.0:49152
//! that sends with TTL 255, each packet's source address set with `IP_PKTINFO`. The timers
//! of all endpoints sit in one heap, driven by one task.

use std::cmp::Reverse;
use std::collections::{BinaryHeap, HashMap};
use std::io::{self, IoSlice, IoSliceMut};
use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use nix::libc;
use nix::sys::socket::{
    AddressFamily, ControlMessage, ControlMessageOwned, MsgFlags, SockFlag, SockType, SockaddrIn,
    SockaddrStorage, bind, recvmsg, sendmsg, setsockopt, socket, sockopt,
};
use podroute_bfd::endpoint::{Action, Bfd, BfdConfig, Datagram, SINGLE_HOP_TTL};
use podroute_bfd::packet::State;
use podroute_bfd::session::SessionConfig;
use tokio::io::Interest;
use tokio::net::UdpSocket;
use tokio::sync::watch;

/// Single-hop Control packets go to this port (RFC 5881 §4).
const CONTROL_PORT: u16 = 3784;
/// The responder's source port: the first of RFC 5881's 49152–65535.
const SOURCE_PORT: u16 = 49152;

/// What the responder counted, read by the harness while it runs.
#[derive(Debug, Default)]
pub struct BfdCounters {
    /// Sessions Up now (one per simulated node at most).
    pub up: AtomicU64,
    /// Control packets received from the agent (all endpoints).
    pub received: AtomicU64,
    /// Control packets sent to the agent.
    pub sent: AtomicU64,
    /// Datagrams no endpoint took (a wrong TTL, an unknown destination, a bad packet).
    pub dropped: AtomicU64,
    /// Sessions that went Down after having been Up.
    pub downs: AtomicU64,
}

/// A snapshot of [`BfdCounters`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct BfdCount {
    /// Sessions Up.
    pub up: u64,
    /// Packets received.
    pub received: u64,
    /// Packets sent.
    pub sent: u64,
    /// Datagrams dropped.
    pub dropped: u64,
    /// Up → Down transitions.
    pub downs: u64,
}

impl BfdCounters {
    /// The counters now.
    pub fn snapshot(&self) -> BfdCount {
        BfdCount {
            up: self.up.load(Ordering::Relaxed),
            received: self.received.load(Ordering::Relaxed),
            sent: self.sent.load(Ordering::Relaxed),
            dropped: self.dropped.load(Ordering::Relaxed),
            downs: self.downs.load(Ordering::Relaxed),
        }
    }
}

/// The two bound sockets; opened before the generator reports ready, so a port in use is
/// an error of [`super::generator::Generator::start`].
pub(super) struct Sockets {
    rx: UdpSocket,
    tx: UdpSocket,
}

impl Sockets {
    /// Binds both (needs the tokio runtime, inside the generator's namespace).
    pub(super) fn open() -> io::Result<Self> {
        let rx = udp()?;
        setsockopt(&rx, sockopt::Ipv4RecvTtl, &true)?;
        setsockopt(&rx, sockopt::Ipv4PacketInfo, &true)?;
        bind(
            rx.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(
                Ipv4Addr::UNSPECIFIED,
                CONTROL_PORT,
            )),
        )?;
        let tx = udp()?;
        setsockopt(&tx, sockopt::Ipv4Ttl, &i32::from(SINGLE_HOP_TTL))?;
        bind(
            tx.as_raw_fd(),
            &SockaddrIn::from(std::net::SocketAddrV4::new(
                Ipv4Addr::UNSPECIFIED,
                SOURCE_PORT,
            )),
        )?;
        Ok(Self {
            rx: UdpSocket::from_std(std::net::UdpSocket::from(rx))?,
            tx: UdpSocket::from_std(std::net::UdpSocket::from(tx))?,
        })
    }
}

fn udp() -> io::Result<OwnedFd> {
    Ok(socket(
        AddressFamily::Inet,
        SockType::Datagram,
        SockFlag::SOCK_NONBLOCK | SockFlag::SOCK_CLOEXEC,
        None,
    )?)
}

/// One received datagram's header facts.
struct Received {
    source: IpAddr,
    destination: Ipv4Addr,
    ttl: u8,
    len: usize,
}

fn receive(fd: &UdpSocket, buf: &mut [u8]) -> io::Result<Received> {
    let mut cmsg = nix::cmsg_space!(libc::c_int, libc::in_pktinfo);
    let mut iov = [IoSliceMut::new(buf)];
    let msg =
        recvmsg::<SockaddrStorage>(fd.as_raw_fd(), &mut iov, Some(&mut cmsg), MsgFlags::empty())?;
    let mut ttl = 0u8;
    let mut destination = Ipv4Addr::UNSPECIFIED;
    for c in msg.cmsgs()? {
        match c {
            ControlMessageOwned::Ipv4Ttl(t) => ttl = u8::try_from(t).unwrap_or(0),
            ControlMessageOwned::Ipv4PacketInfo(info) => {
                destination = Ipv4Addr::from(u32::from_be(info.ipi_addr.s_addr));
            }
            _ => {}
        }
    }
    let source = msg
        .address
        .and_then(|a| a.as_sockaddr_in().map(|v4| IpAddr::V4(v4.ip())))
        .ok_or_else(|| io::Error::other("datagram without an IPv4 source"))?;
    Ok(Received {
        source,
        destination,
        ttl,
        len: msg.bytes,
    })
}

fn send_from(fd: &UdpSocket, from: Ipv4Addr, to: SocketAddr, packet: &[u8]) -> io::Result<()> {
    let info = libc::in_pktinfo {
        ipi_ifindex: 0,
        ipi_spec_dst: libc::in_addr {
            s_addr: u32::from(from).to_be(),
        },
        ipi_addr: libc::in_addr { s_addr: 0 },
    };
    let SocketAddr::V4(to) = to else {
        return Err(io::Error::other("the agent's BFD address is not IPv4"));
    };
    sendmsg(
        fd.as_raw_fd(),
        &[IoSlice::new(packet)],
        &[ControlMessage::Ipv4PacketInfo(&info)],
        MsgFlags::empty(),
        Some(&SockaddrIn::from(to)),
    )?;
    Ok(())
}

/// The endpoints and their one timer heap.
pub(super) struct Responder {
    agent: IpAddr,
    addresses: Vec<Ipv4Addr>,
    by_address: HashMap<Ipv4Addr, usize>,
    endpoints: Vec<Bfd>,
    /// (deadline, endpoint); an entry whose deadline is no longer the endpoint's
    /// `poll_timeout` is stale and skipped.
    timers: BinaryHeap<Reverse<(Instant, usize)>>,
    counters: Arc<BfdCounters>,
}

impl Responder {
    /// One endpoint per address in `addresses`, each with a session to `agent` at 300 ms × 3.
    pub(super) fn new(
        agent: Ipv4Addr,
        addresses: Vec<Ipv4Addr>,
        counters: Arc<BfdCounters>,
    ) -> Self {
        let now = Instant::now();
        let agent = IpAddr::V4(agent);
        let endpoints: Vec<Bfd> = (0..addresses.len())
            .map(|i| {
                let mut bfd = Bfd::new(BfdConfig {
                    seed: 0x6d65_7368_0000 + i as u64,
                    ..BfdConfig::default()
                });
                bfd.add_session(now, agent, SessionConfig::default());
                bfd
            })
            .collect();
        let by_address = addresses.iter().enumerate().map(|(i, a)| (*a, i)).collect();
        let mut responder = Self {
            agent,
            addresses,
            by_address,
            endpoints,
            timers: BinaryHeap::new(),
            counters,
        };
        for i in 0..responder.endpoints.len() {
            responder.schedule(i);
        }
        responder
    }

    fn schedule(&mut self, i: usize) {
        if let Some(at) = self.endpoints[i].poll_timeout() {
            self.timers.push(Reverse((at, i)));
        }
    }

    /// Runs until `stop` changes; the sessions end without AdminDown (the agent is gone by
    /// then, or its Down is what a run that stops early should see).
    pub(super) async fn run(mut self, sockets: Sockets, mut stop: watch::Receiver<bool>) {
        let tx = &sockets.tx;
        let mut buf = [0u8; 128];
        loop {
            let next = self.timers.peek().map(|Reverse((at, _))| *at);
            let sleep = async {
                match next {
                    Some(at) => tokio::time::sleep_until(at.into()).await,
                    None => std::future::pending().await,
                }
            };
            tokio::select! {
                _ = stop.changed() => return,
                _ = sleep => self.expire(tx, Instant::now()).await,
                ready = sockets.rx.readable() => {
                    if ready.is_err() {
                        return;
                    }
                    // Every datagram queued now, then the timers that came due meanwhile.
                    loop {
                        let rx = &sockets.rx;
                        match rx.try_io(Interest::READABLE, || receive(rx, &mut buf)) {
                            Ok(r) => self.datagram(tx, &r, &buf).await,
                            Err(e) if e.kind() == io::ErrorKind::WouldBlock => break,
                            Err(_) => {
                                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
                            }
                        }
                    }
                    self.expire(tx, Instant::now()).await;
                }
            }
        }
    }

    async fn datagram(&mut self, tx: &UdpSocket, r: &Received, buf: &[u8]) {
        let Some(&i) = self.by_address.get(&r.destination) else {
            self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            return;
        };
        let datagram = Datagram {
            source: r.source,
            ttl: r.ttl,
            payload: &buf[..r.len.min(buf.len())],
        };
        match self.endpoints[i].handle_datagram(Instant::now(), datagram) {
            Ok(()) => {
                self.counters.received.fetch_add(1, Ordering::Relaxed);
            }
            Err(_) => {
                self.counters.dropped.fetch_add(1, Ordering::Relaxed);
            }
        }
        self.flush(tx, i).await;
        self.schedule(i);
    }

    async fn expire(&mut self, tx: &UdpSocket, now: Instant) {
        while let Some(&Reverse((at, i))) = self.timers.peek() {
            if at > now {
                break;
            }
            self.timers.pop();
            if self.endpoints[i].poll_timeout() != Some(at) {
                continue;
            }
            self.endpoints[i].handle_timeout(now);
            self.flush(tx, i).await;
            self.schedule(i);
        }
    }

    async fn flush(&mut self, tx: &UdpSocket, i: usize) {
        let to = SocketAddr::new(self.agent, CONTROL_PORT);
        while let Some(action) = self.endpoints[i].poll_action() {
            match action {
                Action::Transmit { packet, .. } => {
                    let from = self.addresses[i];
                    let sent = tx
                        .async_io(Interest::WRITABLE, || send_from(tx, from, to, &packet))
                        .await;
                    if sent.is_ok() {
                        self.counters.sent.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Action::StateChanged { from, to, .. } => {
                    if to == State::Up {
                        self.counters.up.fetch_add(1, Ordering::Relaxed);
                    } else if from == State::Up {
                        self.counters.up.fetch_sub(1, Ordering::Relaxed);
                        self.counters.downs.fetch_add(1, Ordering::Relaxed);
                    }
                }
                Action::Liveness { .. } => {}
            }
        }
    }
}
