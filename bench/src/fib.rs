//! Counting the benchmark's routes in a namespace's kernel FIB, from outside the receiver.
//!
//! A dump per poll would cost the kernel (and the machine the receivers share) a walk over up
//! to a million routes every few milliseconds, and still only sample. Instead [`FibWatch`]
//! listens on an rtnetlink socket subscribed to the IPv4 and IPv6 route groups, with a 256 MiB
//! receive buffer (`SO_RCVBUFFORCE`), and keeps the set of benchmark destinations the
//! receiver's route protocol holds in the main table: `RTM_NEWROUTE` adds, `RTM_DELROUTE`
//! removes, so a replaced or multipath route still counts once. The moment the set reaches
//! the target is the FIB time, to the resolution of the kernel's notification. Should the
//! socket overflow anyway (`ENOBUFS`), the set is rebuilt from a dump and watching goes on;
//! the result says so. [`dump_count`] confirms the count at the end.

use std::collections::HashSet;
use std::io;
use std::os::fd::{AsRawFd, OwnedFd};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use nix::errno::Errno;
use nix::sys::socket::{
    AddressFamily, MsgFlags, NetlinkAddr, SockFlag, SockProtocol, SockType, bind, recv, send,
    setsockopt, socket, sockopt,
};
use nix::sys::time::TimeVal;

use crate::netns;
use crate::scenario::{is_bench_v4, is_bench_v6};

const RTM_NEWROUTE: u16 = 24;
const RTM_DELROUTE: u16 = 25;
const RTM_GETROUTE: u16 = 26;
const NLMSG_ERROR: u16 = 2;
const NLMSG_DONE: u16 = 3;
const NLM_F_REQUEST: u16 = 0x1;
const NLM_F_DUMP: u16 = 0x300;
const RTMGRP_IPV4_ROUTE: u32 = 0x40;
const RTMGRP_IPV6_ROUTE: u32 = 0x400;
const RTA_DST: u16 = 1;
const RTA_TABLE: u16 = 15;
const RT_TABLE_MAIN: u32 = 254;
const AF_INET: u8 = 2;
const AF_INET6: u8 = 10;
const NLMSG_HDR_LEN: usize = 16;
const RTMSG_LEN: usize = 12;
/// Receive buffer of the watching socket: a million notifications of ~1 KiB truesize fit.
const WATCH_RCVBUF: usize = 256 << 20;

/// A benchmark destination: family and address (the prefix length is fixed per family).
type Dest = (u8, u128);

/// One route message, as far as counting needs it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct RouteMsg {
    kind: u16,
    dest: Option<Dest>,
    protocol: u8,
    table: u32,
}

/// What the watcher has seen so far.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct FibProgress {
    /// Benchmark routes of the protocol in the main table now.
    pub routes: u64,
    /// When the first one appeared.
    pub first_at: Option<Instant>,
    /// When the count first reached the target.
    pub reached_at: Option<Instant>,
    /// Times the socket overflowed and the set was rebuilt from a dump.
    pub overflows: u32,
}

/// Watches one namespace's route notifications (see the module docs).
#[derive(Debug)]
pub struct FibWatch {
    progress: Arc<Mutex<FibProgress>>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<io::Result<()>>>,
}

impl FibWatch {
    /// Starts watching routes of `protocol` in namespace `ns`; `target` is the count whose
    /// arrival is timed. Returns once the socket is subscribed, so no later route is missed.
    pub fn start(ns: &str, protocol: u8, target: u64) -> io::Result<FibWatch> {
        let progress = Arc::new(Mutex::new(FibProgress::default()));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = mpsc::channel();
        let (p, s) = (progress.clone(), stop.clone());
        let thread = netns::spawn_in(ns, "fib-watch", move || {
            let sock = match subscribe() {
                Ok(sock) => {
                    let _ = ready_tx.send(Ok(()));
                    sock
                }
                Err(e) => {
                    let _ = ready_tx.send(Err(io::Error::new(e.kind(), e.to_string())));
                    return Err(e);
                }
            };
            watch(&sock, protocol, target, &p, &s)
        })?;
        match ready_rx.recv() {
            Ok(Ok(())) => Ok(FibWatch {
                progress,
                stop,
                thread: Some(thread),
            }),
            Ok(Err(e)) => Err(e),
            Err(_) => Err(io::Error::other("the FIB watcher ended before subscribing")),
        }
    }

    /// What the watcher has counted so far.
    pub fn progress(&self) -> FibProgress {
        self.progress.lock().map(|p| p.clone()).unwrap_or_default()
    }

    /// Stops watching and returns the last progress (and the watcher's error, if it failed).
    pub fn stop(mut self) -> io::Result<FibProgress> {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            t.join()
                .map_err(|_| io::Error::other("the FIB watcher panicked"))??;
        }
        Ok(self.progress())
    }
}

impl Drop for FibWatch {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::SeqCst);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

fn route_socket(groups: u32) -> io::Result<OwnedFd> {
    let fd = socket(
        AddressFamily::Netlink,
        SockType::Raw,
        SockFlag::SOCK_CLOEXEC,
        SockProtocol::NetlinkRoute,
    )?;
    bind(fd.as_raw_fd(), &NetlinkAddr::new(0, groups))?;
    // Wake up now and then to notice `stop`.
    setsockopt(&fd, sockopt::ReceiveTimeout, &TimeVal::new(0, 100_000))?;
    Ok(fd)
}

fn subscribe() -> io::Result<OwnedFd> {
    let fd = route_socket(RTMGRP_IPV4_ROUTE | RTMGRP_IPV6_ROUTE)?;
    setsockopt(&fd, sockopt::RcvBufForce, &WATCH_RCVBUF)?;
    Ok(fd)
}

fn watch(
    sock: &OwnedFd,
    protocol: u8,
    target: u64,
    progress: &Mutex<FibProgress>,
    stop: &AtomicBool,
) -> io::Result<()> {
    let mut set: HashSet<Dest> = HashSet::new();
    let mut buf = vec![0u8; 1 << 20];
    while !stop.load(Ordering::SeqCst) {
        let n = match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
            Ok(n) => n,
            Err(Errno::EAGAIN | Errno::EINTR) => continue,
            Err(Errno::ENOBUFS) => {
                // Notifications were lost: start again from what the kernel holds.
                set = dump(protocol)?;
                let now = Instant::now();
                let mut p = progress.lock().map_err(|_| io::Error::other("poisoned"))?;
                p.overflows += 1;
                record(&mut p, set.len() as u64, target, now);
                continue;
            }
            Err(e) => return Err(e.into()),
        };
        let now = Instant::now();
        let mut changed = false;
        for msg in parse(&buf[..n]) {
            let Some(dest) = msg.dest else { continue };
            if msg.protocol != protocol || msg.table != RT_TABLE_MAIN {
                continue;
            }
            changed |= match msg.kind {
                RTM_NEWROUTE => set.insert(dest),
                RTM_DELROUTE => set.remove(&dest),
                _ => false,
            };
        }
        if changed {
            let mut p = progress.lock().map_err(|_| io::Error::other("poisoned"))?;
            record(&mut p, set.len() as u64, target, now);
        }
    }
    Ok(())
}

fn record(p: &mut FibProgress, routes: u64, target: u64, now: Instant) {
    p.routes = routes;
    if routes > 0 && p.first_at.is_none() {
        p.first_at = Some(now);
    }
    if routes >= target && p.reached_at.is_none() {
        p.reached_at = Some(now);
    }
}

/// Counts the benchmark routes of `protocol` in the main table of namespace `ns` with one
/// dump per family.
pub fn dump_count(ns: &str, protocol: u8) -> io::Result<u64> {
    let t = netns::spawn_in(ns, "fib-dump", move || {
        dump(protocol).map(|s| s.len() as u64)
    })?;
    t.join()
        .map_err(|_| io::Error::other("the FIB dump panicked"))?
}

/// The benchmark destinations of `protocol` in the calling thread's namespace.
fn dump(protocol: u8) -> io::Result<HashSet<Dest>> {
    let sock = route_socket(0)?;
    setsockopt(&sock, sockopt::RcvBuf, &(8usize << 20))?;
    let mut set = HashSet::new();
    let mut buf = vec![0u8; 1 << 20];
    for (seq, family) in [(1u32, AF_INET), (2, AF_INET6)] {
        let mut req = Vec::with_capacity(NLMSG_HDR_LEN + RTMSG_LEN);
        req.extend_from_slice(&((NLMSG_HDR_LEN + RTMSG_LEN) as u32).to_ne_bytes());
        req.extend_from_slice(&RTM_GETROUTE.to_ne_bytes());
        req.extend_from_slice(&(NLM_F_REQUEST | NLM_F_DUMP).to_ne_bytes());
        req.extend_from_slice(&seq.to_ne_bytes());
        req.extend_from_slice(&0u32.to_ne_bytes());
        req.push(family);
        req.extend_from_slice(&[0; RTMSG_LEN - 1]);
        send(sock.as_raw_fd(), &req, MsgFlags::empty())?;
        let started = Instant::now();
        'dump: loop {
            let n = match recv(sock.as_raw_fd(), &mut buf, MsgFlags::empty()) {
                Ok(n) => n,
                Err(Errno::EAGAIN | Errno::EINTR)
                    if started.elapsed() < Duration::from_secs(60) =>
                {
                    continue;
                }
                Err(e) => return Err(e.into()),
            };
            for (kind, _) in frames(&buf[..n]) {
                if kind == NLMSG_DONE {
                    break 'dump;
                }
                if kind == NLMSG_ERROR {
                    return Err(io::Error::other("route dump answered with an error"));
                }
            }
            for msg in parse(&buf[..n]) {
                if let Some(dest) = msg.dest
                    && msg.kind == RTM_NEWROUTE
                    && msg.protocol == protocol
                    && msg.table == RT_TABLE_MAIN
                {
                    set.insert(dest);
                }
            }
        }
    }
    Ok(set)
}

/// The netlink messages in one datagram: (type, payload after the 16-byte header).
fn frames(mut buf: &[u8]) -> impl Iterator<Item = (u16, &[u8])> {
    std::iter::from_fn(move || {
        if buf.len() < NLMSG_HDR_LEN {
            return None;
        }
        let len = u32::from_ne_bytes(buf[0..4].try_into().ok()?) as usize;
        let kind = u16::from_ne_bytes(buf[4..6].try_into().ok()?);
        if len < NLMSG_HDR_LEN || len > buf.len() {
            return None;
        }
        let payload = &buf[NLMSG_HDR_LEN..len];
        buf = &buf[len.next_multiple_of(4).min(buf.len())..];
        Some((kind, payload))
    })
}

/// The route messages in one datagram; a destination only if it is a benchmark prefix.
fn parse(buf: &[u8]) -> impl Iterator<Item = RouteMsg> + '_ {
    frames(buf).filter_map(|(kind, p)| {
        if !matches!(kind, RTM_NEWROUTE | RTM_DELROUTE) || p.len() < RTMSG_LEN {
            return None;
        }
        let (family, dst_len, mut table, protocol) = (p[0], p[1], u32::from(p[4]), p[5]);
        let mut dest = None;
        let mut attrs = &p[RTMSG_LEN..];
        while attrs.len() >= 4 {
            let len = usize::from(u16::from_ne_bytes([attrs[0], attrs[1]]));
            let ty = u16::from_ne_bytes([attrs[2], attrs[3]]);
            if len < 4 || len > attrs.len() {
                break;
            }
            let data = &attrs[4..len];
            match (ty, family, data.len()) {
                (RTA_TABLE, _, 4) => table = u32::from_ne_bytes(data.try_into().ok()?),
                (RTA_DST, AF_INET, 4) => {
                    let a = u32::from_be_bytes(data.try_into().ok()?);
                    dest = is_bench_v4(a, dst_len).then_some((AF_INET, u128::from(a)));
                }
                (RTA_DST, AF_INET6, 16) => {
                    let a = u128::from_be_bytes(data.try_into().ok()?);
                    dest = is_bench_v6(a, dst_len).then_some((AF_INET6, a));
                }
                _ => {}
            }
            attrs = &attrs[len.next_multiple_of(4).min(attrs.len())..];
        }
        Some(RouteMsg {
            kind,
            dest,
            protocol,
            table,
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// An RTM_NEWROUTE as the kernel sends it (header, rtmsg, RTA_TABLE, RTA_DST).
    fn route_msg(kind: u16, family: u8, dst_len: u8, proto: u8, dst: &[u8]) -> Vec<u8> {
        let mut body = vec![family, dst_len, 0, 0, 254, proto, 0, 1, 0, 0, 0, 0];
        body.extend_from_slice(&8u16.to_ne_bytes());
        body.extend_from_slice(&RTA_TABLE.to_ne_bytes());
        body.extend_from_slice(&254u32.to_ne_bytes());
        body.extend_from_slice(&((4 + dst.len()) as u16).to_ne_bytes());
        body.extend_from_slice(&RTA_DST.to_ne_bytes());
        body.extend_from_slice(dst);
        while body.len() % 4 != 0 {
            body.push(0);
        }
        let mut m = ((NLMSG_HDR_LEN + body.len()) as u32).to_ne_bytes().to_vec();
        m.extend_from_slice(&kind.to_ne_bytes());
        m.extend_from_slice(&[0; 10]);
        m.extend_from_slice(&body);
        m
    }

    #[test]
    fn benchmark_routes_are_recognised_in_a_batch() {
        let mut dgram = route_msg(RTM_NEWROUTE, AF_INET, 24, 12, &[100, 1, 2, 0]);
        dgram.extend(route_msg(RTM_NEWROUTE, AF_INET, 24, 80, &[10, 244, 1, 0]));
        let v6: Vec<u8> = "fd10:0:7::"
            .parse::<std::net::Ipv6Addr>()
            .expect("addr")
            .octets()
            .to_vec();
        dgram.extend(route_msg(RTM_DELROUTE, AF_INET6, 48, 80, &v6));
        let msgs: Vec<RouteMsg> = parse(&dgram).collect();
        assert_eq!(msgs.len(), 3);
        assert_eq!(msgs[0].dest, Some((AF_INET, u128::from(0x6401_0200u32))));
        assert_eq!((msgs[0].protocol, msgs[0].table), (12, 254));
        assert_eq!(
            msgs[1].dest, None,
            "the node's pod CIDR is not a benchmark route"
        );
        assert_eq!(msgs[2].kind, RTM_DELROUTE);
        assert!(msgs[2].dest.is_some());
    }

    #[test]
    fn truncated_messages_end_the_batch() {
        let mut dgram = route_msg(RTM_NEWROUTE, AF_INET, 24, 12, &[100, 1, 2, 0]);
        dgram.truncate(dgram.len() - 3);
        assert_eq!(parse(&dgram).count(), 0);
    }

    #[test]
    fn progress_times_the_first_route_and_the_target() {
        let mut p = FibProgress::default();
        let t0 = Instant::now();
        record(&mut p, 1, 3, t0);
        record(&mut p, 3, 3, t0 + Duration::from_millis(5));
        record(&mut p, 2, 3, t0 + Duration::from_millis(9));
        assert_eq!(p.first_at, Some(t0));
        assert_eq!(p.reached_at, Some(t0 + Duration::from_millis(5)));
        assert_eq!(p.routes, 2);
    }
}
