//! The route programmer's two netlink sockets, in the network namespace they were opened in.
//!
//! - [`RequestSocket`]: dumps, `ip route get` lookups and write batches, one at a time (the
//!   programmer is `&mut` while it uses it), answers matched by sequence number.
//! - [`EventSocket`]: subscribed to route, link and address notifications; a kernel filter
//!   drops those caused by the request socket's own writes (see
//!   [`crate::sockopt::drop_netlink_messages_of`]).
//!
//! Both ask for a 4 MiB receive buffer: a batch's worst case of one error answer per request
//! (each answer costs ~1 KiB of buffer accounting) and a burst of notifications must fit.
//! When notifications overflow anyway, the kernel says ENOBUFS and the programmer dumps.

use std::io;
use std::os::fd::AsFd;

use podroute_cni::datagram::{AnswerReader, error_code, messages};
use rtnetlink::packet_core::{NLMSG_ERROR, NetlinkBuffer, NetlinkMessage, Parseable};
use rtnetlink::packet_route::route::RouteMessage;
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::protocols::NETLINK_ROUTE;
use rtnetlink::sys::{AsyncSocket, AsyncSocketExt, TokioSocket};

use super::batch::Batch;
use super::kernel::dump_request;
use crate::sockopt;

/// Receive buffer asked for on both sockets.
const RECEIVE_BUFFER: usize = 4 << 20;
/// User buffer for one datagram: a dump part is at most 32 KiB.
const DATAGRAM: usize = 64 * 1024;

/// Follows the answer to one dump request, datagram by datagram (see
/// [`RequestSocket::dump_with`]).
struct DumpReader {
    answer: AnswerReader,
    /// How many routes did not parse, and why the first did not.
    unreadable: Option<(usize, String)>,
}

impl DumpReader {
    fn new(sequence: u32) -> Self {
        Self {
            answer: AnswerReader::new(sequence),
            unreadable: None,
        }
    }

    /// Reads one datagram, handing each route to `each`; a route that does not parse is
    /// counted and left out. Once the dump has ended: whether the kernel flagged it as
    /// interrupted, or an error if any route could not be read.
    fn read(
        &mut self,
        datagram: &[u8],
        each: &mut impl FnMut(&RouteMessage),
    ) -> io::Result<Option<bool>> {
        let ended = self.answer.read_datagram(datagram, |message| {
            if message.message_type() == libc::RTM_NEWROUTE {
                match parse_route(&message) {
                    Ok(route) => each(&route),
                    Err(e) => self.unreadable.get_or_insert_with(|| (0, e.to_string())).0 += 1,
                }
            }
            Ok(false)
        })?;
        if !ended {
            return Ok(None);
        }
        match &self.unreadable {
            None => Ok(Some(self.answer.interrupted())),
            Some((n, first)) => Err(io::Error::new(
                io::ErrorKind::InvalidData,
                format!("{n} routes in the dump could not be read, the first: {first}"),
            )),
        }
    }
}

/// Dumps, lookups and write batches.
pub(crate) struct RequestSocket {
    socket: TokioSocket,
    port: u32,
    next_seq: u32,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for RequestSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("RequestSocket")
            .field("port", &self.port)
            .field("next_seq", &self.next_seq)
            .finish_non_exhaustive()
    }
}

impl RequestSocket {
    /// Opens the socket in the calling thread's network namespace.
    pub(crate) fn open() -> io::Result<Self> {
        Self::open_with(false)
    }

    /// Like [`Self::open`], with strict checking (`NETLINK_GET_STRICT_CHK`, Linux ≥ 4.20):
    /// the kernel applies a dump request's header fields (route type, protocol, table) as a
    /// filter instead of sending every route.
    pub(crate) fn open_strict() -> io::Result<Self> {
        Self::open_with(true)
    }

    fn open_with(strict: bool) -> io::Result<Self> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        if strict {
            socket.socket_ref().set_netlink_get_strict_chk(true)?;
        }
        let address = socket.socket_mut().bind_auto()?;
        // Error answers echo only the failed request's header, not the whole request.
        socket.socket_ref().set_cap_ack(true)?;
        sockopt::set_receive_buffer(socket.socket_ref().as_fd(), RECEIVE_BUFFER)?;
        Ok(Self {
            socket,
            port: address.port_number(),
            next_seq: 1,
            buffer: Vec::with_capacity(DATAGRAM),
        })
    }

    /// The socket's netlink port id (the `nlmsg_pid` of notifications its writes cause).
    pub(crate) fn port(&self) -> u32 {
        self.port
    }

    fn take_seq(&mut self) -> u32 {
        let seq = self.next_seq;
        self.next_seq = self.next_seq.wrapping_add(1);
        seq
    }

    async fn send(&self, bytes: &[u8]) -> io::Result<()> {
        let sent = self.socket.send(bytes).await?;
        if sent == bytes.len() {
            Ok(())
        } else {
            Err(io::Error::other("netlink datagram sent in part"))
        }
    }

    async fn send_message(
        &mut self,
        mut message: NetlinkMessage<RouteNetlinkMessage>,
    ) -> io::Result<u32> {
        let seq = self.take_seq();
        message.header.sequence_number = seq;
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        self.send(&bytes).await?;
        Ok(seq)
    }

    async fn recv(&mut self) -> io::Result<()> {
        self.buffer.clear();
        self.socket.recv(&mut self.buffer).await
    }

    /// Dumps the routes of `family`, handing each to `each`; see [`Self::dump_with`].
    pub(crate) async fn dump(
        &mut self,
        family: AddressFamily,
        each: impl FnMut(&RouteMessage),
    ) -> io::Result<bool> {
        self.dump_with(dump_request(family), each).await
    }

    /// Sends a dump request and hands each route of the answer to `each`. Returns true if the
    /// kernel flagged the dump as interrupted by a change (it may miss or repeat routes). A
    /// route that netlink-packet-route cannot read fails the dump, once the whole answer has
    /// been read (so the socket holds none of it for the next request): leaving it out would
    /// have the caller take it for gone, and a full pass then writes over a route it cannot
    /// see, is refused (EEXIST) and counts a collision, pass after pass.
    pub(crate) async fn dump_with(
        &mut self,
        request: NetlinkMessage<RouteNetlinkMessage>,
        mut each: impl FnMut(&RouteMessage),
    ) -> io::Result<bool> {
        let seq = self.send_message(request).await?;
        let mut reader = DumpReader::new(seq);
        loop {
            self.recv().await?;
            if let Some(interrupted) = reader.read(&self.buffer, &mut each)? {
                return Ok(interrupted);
            }
        }
    }

    /// Sends one request answered by one route (`ip route get`). `None` if the kernel
    /// answered with an error (no route).
    pub(crate) async fn get_route(
        &mut self,
        request: NetlinkMessage<RouteNetlinkMessage>,
    ) -> io::Result<Option<RouteMessage>> {
        let seq = self.send_message(request).await?;
        loop {
            self.recv().await?;
            for message in messages(&self.buffer) {
                let message = message?;
                if message.sequence_number() != seq {
                    continue;
                }
                match message.message_type() {
                    // An error (no route), or an acknowledgement without an answer.
                    NLMSG_ERROR => return Ok(None),
                    libc::RTM_NEWROUTE => return Ok(Some(parse_route(&message)?)),
                    _ => {}
                }
            }
        }
    }

    /// An empty batch numbered from this socket's next sequence number.
    pub(crate) fn new_batch(&self) -> Batch {
        Batch::new(self.next_seq)
    }

    /// Sends `batch` in one datagram and waits for its acknowledgement. Returns the failed
    /// requests as (index in the batch, errno); every other request succeeded. An error of
    /// kind ENOBUFS means answers were lost: which requests failed is unknown.
    pub(crate) async fn send_batch(&mut self, batch: &mut Batch) -> io::Result<Vec<(usize, i32)>> {
        if batch.is_empty() {
            return Ok(Vec::new());
        }
        self.next_seq = batch.last_seq().wrapping_add(1);
        let bytes = batch.seal();
        let sent = self.socket.send(bytes).await?;
        if sent != bytes.len() {
            return Err(io::Error::other("netlink batch sent in part"));
        }
        let last = batch.last_seq();
        let mut failures = Vec::new();
        loop {
            self.recv().await?;
            for message in messages(&self.buffer) {
                let message = message?;
                if message.message_type() != NLMSG_ERROR {
                    continue;
                }
                let seq = message.sequence_number();
                let Some(index) = batch.index_of(seq) else {
                    continue;
                };
                if let Some(errno) = error_code(&message)? {
                    failures.push((index, errno));
                }
                if seq == last {
                    return Ok(failures);
                }
            }
        }
    }
}

/// Route, link and address notifications.
pub(crate) struct EventSocket {
    socket: TokioSocket,
    buffer: Vec<u8>,
}

impl std::fmt::Debug for EventSocket {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventSocket").finish_non_exhaustive()
    }
}

impl EventSocket {
    /// Opens the socket in the calling thread's network namespace, joined to the route,
    /// link and address groups of both families; notifications caused by the socket bound to
    /// `own_port` are filtered out in the kernel.
    pub(crate) fn open(own_port: u32) -> io::Result<Self> {
        let mut socket = TokioSocket::new(NETLINK_ROUTE)?;
        socket.socket_mut().bind_auto()?;
        let raw = socket.socket_ref();
        sockopt::set_receive_buffer(raw.as_fd(), RECEIVE_BUFFER)?;
        sockopt::drop_netlink_messages_of(raw.as_fd(), own_port)?;
        for group in [
            libc::RTNLGRP_IPV4_ROUTE,
            libc::RTNLGRP_IPV6_ROUTE,
            libc::RTNLGRP_LINK,
            libc::RTNLGRP_IPV4_IFADDR,
            libc::RTNLGRP_IPV6_IFADDR,
        ] {
            raw.add_membership(group)?;
        }
        Ok(Self {
            socket,
            buffer: Vec::with_capacity(DATAGRAM),
        })
    }

    /// Waits for the next datagram of notifications (cancel-safe: nothing is consumed until
    /// it returns). ENOBUFS: the kernel dropped notifications because the buffer was full.
    pub(crate) async fn recv(&mut self) -> io::Result<&[u8]> {
        self.buffer.clear();
        self.socket.recv(&mut self.buffer).await?;
        Ok(&self.buffer)
    }

    /// The next datagram if one is waiting, without blocking.
    pub(crate) fn try_recv(&mut self) -> Option<io::Result<&[u8]>> {
        self.buffer.clear();
        match self
            .socket
            .socket_ref()
            .recv(&mut self.buffer, libc::MSG_DONTWAIT)
        {
            Ok(_) => Some(Ok(&self.buffer)),
            Err(e) if e.kind() == io::ErrorKind::WouldBlock => None,
            Err(e) => Some(Err(e)),
        }
    }
}

/// The route message in a `RTM_NEWROUTE` / `RTM_DELROUTE` message.
pub(crate) fn parse_route(message: &NetlinkBuffer<&[u8]>) -> io::Result<RouteMessage> {
    RouteMessage::parse(message.payload())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::KernelTarget;
    use crate::routes::kernel::{WriteKind, write_request};

    #[test]
    fn a_datagram_splits_into_its_messages() {
        let mut batch = Batch::new(7);
        for destination in ["10.244.2.0/24", "fd00:10:244:2::/64"] {
            assert!(batch.push(
                write_request(
                    destination.parse().expect("net"),
                    WriteKind::Create(KernelTarget::Blackhole),
                    80
                ),
                4096
            ));
        }
        let bytes = batch.seal().to_vec();
        let parsed: Vec<_> = messages(&bytes)
            .map(|m| {
                let m = m.expect("message");
                let route = parse_route(&m).expect("route");
                (m.sequence_number(), route.header.destination_prefix_length)
            })
            .collect();
        assert_eq!(parsed, vec![(7, 24), (8, 64)]);
        assert!(messages(&bytes[..10]).next().is_none());
    }

    /// One message of a dump's answer: `message` renumbered to `seq`.
    fn part(seq: u32, message: NetlinkMessage<RouteNetlinkMessage>) -> Vec<u8> {
        let mut message = message;
        message.header.sequence_number = seq;
        message.finalize();
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        bytes
    }

    /// One message of a dump's answer: a header of `kind` numbered `seq`, then `payload`.
    fn raw_part(seq: u32, kind: u16, payload: &[u8]) -> Vec<u8> {
        let len = 16 + payload.len() as u32;
        let mut bytes = Vec::new();
        bytes.extend_from_slice(&len.to_ne_bytes());
        bytes.extend_from_slice(&kind.to_ne_bytes());
        bytes.extend_from_slice(&2u16.to_ne_bytes()); // NLM_F_MULTI
        bytes.extend_from_slice(&seq.to_ne_bytes());
        bytes.extend_from_slice(&0u32.to_ne_bytes());
        bytes.extend_from_slice(payload);
        bytes
    }

    #[test]
    fn a_dump_with_a_route_it_cannot_read_reads_on_to_its_end_and_fails() {
        let route = |destination: &str| {
            part(
                9,
                write_request(
                    destination.parse().expect("net"),
                    WriteKind::Create(KernelTarget::Blackhole),
                    80,
                ),
            )
        };
        // A route message too short for its header, between two good ones; then the end.
        let first = [
            route("10.244.2.0/24"),
            raw_part(9, libc::RTM_NEWROUTE, &[0; 4]),
            route("10.244.3.0/25"),
        ]
        .concat();
        let last = raw_part(9, rtnetlink::packet_core::NLMSG_DONE, &0i32.to_ne_bytes());
        let mut seen = Vec::new();
        let mut each = |m: &RouteMessage| seen.push(m.header.destination_prefix_length);
        let mut reader = DumpReader::new(9);
        assert!(reader.read(&first, &mut each).expect("read on").is_none());
        let err = reader.read(&last, &mut each).expect_err("unreadable");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
        assert!(
            err.to_string()
                .starts_with("1 routes in the dump could not be read, the first: "),
            "{err}"
        );
        // Without the unreadable route the same answer reads cleanly.
        let clean = [route("10.244.2.0/24"), last.clone()].concat();
        assert_eq!(
            DumpReader::new(9).read(&clean, &mut each).expect("clean"),
            Some(false)
        );
        assert_eq!(seen, vec![24, 25, 24]);
    }
}
