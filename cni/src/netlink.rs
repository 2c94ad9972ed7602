//! Link, address, route and neighbour operations over rtnetlink, run synchronously.
//!
//! The plugin is a short-lived process, so a [`Netlink`] is a plain blocking netlink socket:
//! each request is sent and its answer read before the call returns. rtnetlink's builders and
//! `netlink-packet-route` make and parse the messages; what is here is only the exchange. A
//! netlink socket talks to the network namespace its creating thread was in, so a
//! [`Netlink::connect`] inside [`crate::netns::run_in`] manages the pod's namespace.
//!
//! No async runtime: tokio's runtime, its signal driver and rtnetlink's connection task cost
//! the plugin 10–25 % of its CPU per call (36 of 89 page faults, eventfd and epoll calls
//! around every request), for requests that are sent one at a time anyway.

use crate::datagram::AnswerReader;
use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{
    NLM_F_ACK, NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkBuffer,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::{
    NeighbourAddress, NeighbourAttribute, NeighbourFlags, NeighbourMessage, NeighbourState,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::sys::{Socket, protocols::NETLINK_ROUTE};
use rtnetlink::{
    AddressMessageBuilder, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder,
};
use std::cell::{Cell, RefCell};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;

/// MTU used when the node has no default route to learn its uplink MTU from.
pub const FALLBACK_MTU: u32 = 1500;

/// Receive buffer size: a dump part is at most 32 KiB (the kernel sizes it to the reader's
/// buffer, up to that), a single answer far less. Pages the kernel does not write stay unmapped.
const RECV_BUFFER: usize = 64 * 1024;

/// A failed netlink operation, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The socket could not be opened.
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused a request, or talking to it failed.
    #[error("{what}: {source}")]
    Request {
        /// The operation, e.g. "add address 10.244.1.2/32 to eth0".
        what: String,
        /// The kernel's errno as an OS error, or why the exchange failed.
        #[source]
        source: io::Error,
    },
}

impl NetlinkError {
    fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => source.raw_os_error(),
            NetlinkError::Socket(_) => None,
        }
    }

    /// True when the kernel answered EEXIST ("file exists"): a name was already taken.
    pub fn is_exists(&self) -> bool {
        self.errno() == Some(nix::errno::Errno::EEXIST as i32)
    }

    /// True when the kernel answered ENODEV: the link is gone (e.g. its namespace's
    /// teardown destroyed it meanwhile).
    pub fn is_no_device(&self) -> bool {
        self.errno() == Some(libc_enodev())
    }
}

/// What podroute needs to know about a link.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LinkState {
    /// Interface index.
    pub index: u32,
    /// Interface name.
    pub name: String,
    /// The interface alias (`ip link set ... alias`), if set.
    pub alias: Option<String>,
    /// For a veth: its peer's index, in the peer's namespace (IFLA_LINK).
    pub peer_index: Option<u32>,
    /// MAC address as `aa:bb:cc:dd:ee:ff`.
    pub mac: String,
    /// Raw MAC bytes (for neighbour entries).
    pub mac_bytes: Vec<u8>,
    /// MTU.
    pub mtu: u32,
    /// Administratively up.
    pub up: bool,
}

/// A route as read back from the kernel, reduced to what CHECK compares.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct KernelRoute {
    /// Destination prefix.
    pub dst: IpNetwork,
    /// Gateway, if any.
    pub gw: Option<IpAddr>,
    /// Output interface index.
    pub oif: Option<u32>,
    /// Route protocol number.
    pub protocol: u8,
}

/// A route podroute installs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteSpec {
    /// Destination prefix.
    pub dst: IpNetwork,
    /// Next hop; `None` for an on-link (scope link) route.
    pub gw: Option<IpAddr>,
    /// Output interface index.
    pub oif: u32,
    /// Route protocol number.
    pub protocol: u8,
}

/// One netlink socket, in the network namespace its thread was in when it was opened.
pub struct Netlink {
    socket: Socket,
    sequence: Cell<u32>,
    buffer: RefCell<Vec<u8>>,
}

impl std::fmt::Debug for Netlink {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Netlink")
            .field("sequence", &self.sequence.get())
            .finish_non_exhaustive()
    }
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn request(what: impl Into<String>) -> impl FnOnce(io::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

fn invalid(what: impl std::fmt::Display) -> io::Error {
    io::Error::new(io::ErrorKind::InvalidData, what.to_string())
}

/// What the kernel answers a request with.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Answer {
    /// An acknowledgement (a change).
    Ack,
    /// One message (a lookup).
    One,
    /// Messages up to NLMSG_DONE (a dump).
    Dump,
}

/// How often a dump that a concurrent change interrupted (`NLM_F_DUMP_INTR`) is started again
/// before its last try is taken as it is (a draining node changes links all the time).
const DUMP_TRIES: usize = 3;

/// Adds the message of an answer to `answers`; true when it completes a lookup's answer. In a
/// dump, a message that does not decode is skipped, as netlink-proto did (a kernel newer than
/// netlink-packet-route may send attributes it cannot parse); a lookup's one answer must decode.
fn decode(
    message: NetlinkBuffer<&[u8]>,
    answer: Answer,
    answers: &mut Vec<RouteNetlinkMessage>,
) -> io::Result<bool> {
    match NetlinkMessage::<RouteNetlinkMessage>::deserialize(message.into_inner()) {
        Ok(NetlinkMessage {
            payload: NetlinkPayload::InnerMessage(inner),
            ..
        }) => {
            answers.push(inner);
            Ok(answer == Answer::One)
        }
        Ok(_) => Ok(false),
        Err(_) if answer == Answer::Dump => Ok(false),
        Err(e) => Err(invalid(e)),
    }
}

/// Retries `op` while a signal interrupts it.
fn uninterrupted<T>(mut op: impl FnMut() -> io::Result<T>) -> io::Result<T> {
    loop {
        match op() {
            Err(e) if e.kind() == io::ErrorKind::Interrupted => {}
            other => return other,
        }
    }
}

impl Netlink {
    /// Opens a socket in the namespace of the calling thread. It needs no bind or connect:
    /// the kernel gives it a port at its first send, and an unaddressed send goes to the
    /// kernel.
    pub fn connect() -> Result<Self, NetlinkError> {
        let socket = Socket::new(NETLINK_ROUTE).map_err(NetlinkError::Socket)?;
        Ok(Self {
            socket,
            sequence: Cell::new(0),
            buffer: RefCell::new(Vec::with_capacity(RECV_BUFFER)),
        })
    }

    /// Sends `message` (with `flags` besides those `answer` implies) and reads its answer: the
    /// acknowledgement of a change, the one message of a lookup, or the messages of a dump,
    /// started again when a concurrent change interrupted it. A kernel error, also one that
    /// ends a dump, comes back as the OS error of its errno.
    fn exchange(
        &self,
        message: RouteNetlinkMessage,
        flags: u16,
        answer: Answer,
    ) -> io::Result<Vec<RouteNetlinkMessage>> {
        let flags = NLM_F_REQUEST
            | flags
            | match answer {
                Answer::Ack => NLM_F_ACK,
                Answer::One => 0,
                Answer::Dump => NLM_F_DUMP,
            };
        let mut req = NetlinkMessage::from(message);
        req.header.flags = flags;
        req.finalize();
        let mut tries = 0;
        loop {
            tries += 1;
            let sequence = self.send(&mut req)?;
            let (answers, interrupted) = self.answers(sequence, answer)?;
            if answer != Answer::Dump || !interrupted || tries == DUMP_TRIES {
                return Ok(answers);
            }
        }
    }

    /// Sends `req` under the next sequence number; returns that number.
    fn send(&self, req: &mut NetlinkMessage<RouteNetlinkMessage>) -> io::Result<u32> {
        let sequence = self.sequence.get().wrapping_add(1);
        self.sequence.set(sequence);
        req.header.sequence_number = sequence;
        let mut bytes = vec![0; req.buffer_len()];
        req.serialize(&mut bytes);
        let sent = uninterrupted(|| self.socket.send(&bytes, 0))?;
        if sent != bytes.len() {
            return Err(io::Error::other("netlink request sent in part"));
        }
        Ok(sequence)
    }

    /// Reads the answer to request `sequence` (messages of earlier requests are skipped, each
    /// message goes through [`decode`]); also says whether a dump was interrupted.
    fn answers(
        &self,
        sequence: u32,
        answer: Answer,
    ) -> io::Result<(Vec<RouteNetlinkMessage>, bool)> {
        let mut answers = Vec::new();
        let mut reader = AnswerReader::new(sequence);
        let mut buffer = self.buffer.borrow_mut();
        loop {
            buffer.clear();
            uninterrupted(|| self.socket.recv(&mut *buffer, 0))?;
            if reader.read_datagram(&buffer, |m| decode(m, answer, &mut answers))? {
                return Ok((answers, reader.interrupted()));
            }
        }
    }

    /// Sends a change and waits for its acknowledgement.
    fn change(&self, message: RouteNetlinkMessage, flags: u16) -> io::Result<()> {
        self.exchange(message, flags, Answer::Ack).map(drop)
    }

    /// The one link a lookup message names, `None` when there is none (ENODEV).
    fn lookup_link(&self, message: LinkMessage) -> io::Result<Option<LinkState>> {
        match self.exchange(RouteNetlinkMessage::GetLink(message), 0, Answer::One) {
            Ok(answers) => match answers.first() {
                Some(RouteNetlinkMessage::NewLink(link)) => Ok(Some(link_state(link))),
                Some(other) => Err(invalid(format!(
                    "a link lookup answered with message type {}",
                    other.message_type()
                ))),
                None => Ok(None),
            },
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(e),
        }
    }

    /// The link called `name`, or `None` when there is none.
    pub fn link(&self, name: &str) -> Result<Option<LinkState>, NetlinkError> {
        self.lookup_link(LinkUnspec::new_with_name(name).build())
            .map_err(request(format!("look up link {name}")))
    }

    /// Creates a veth pair: `host` here, `peer` directly inside the namespace `peer_netns`
    /// (one request, no rename), both with `mtu`, and with `host_up` the host end up at once
    /// (one request fewer under the RTNL lock). The peer cannot come up in the same request:
    /// the kernel opens it before the pair is linked, and refuses (ENOTCONN).
    ///
    /// Each end gets one receive and one transmit queue. Left to itself the kernel gives a veth
    /// a queue of each kind per possible CPU, makes sysfs entries for all of them and removes
    /// all but one again at once, under the RTNL lock, for both ends (about a fifth of the
    /// creation in a profile on a 2-CPU machine, more with more CPUs). The one real queue each
    /// way is what a veth runs with by default anyway. What the pair gives up: spreading veth
    /// GRO (`ethtool -K <veth> gro on`), XDP or AF_XDP over several queues, which needs more
    /// queues made at creation (`ethtool -L` cannot add them later); podroute uses none of it.
    pub fn create_veth(
        &self,
        host: &str,
        peer: &str,
        peer_netns: &File,
        mtu: u32,
        host_up: bool,
    ) -> Result<(), NetlinkError> {
        let peer_msg = LinkMessageBuilder::<LinkUnspec>::new()
            .name(peer.to_owned())
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1))
            .setns_by_fd(peer_netns.as_raw_fd())
            .build();
        let mut host_msg = LinkVeth::new(host, peer)
            .mtu(mtu)
            .append_extra_attribute(LinkAttribute::NumTxQueues(1))
            .append_extra_attribute(LinkAttribute::NumRxQueues(1));
        if host_up {
            host_msg = host_msg.up();
        }
        let msg = host_msg
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.change(RouteNetlinkMessage::NewLink(msg), NLM_F_CREATE | NLM_F_EXCL)
            .map_err(request(format!(
                "create veth {host} with peer {peer} in the pod netns"
            )))
    }

    /// Applies a link message (RTM_SETLINK).
    fn set_link(&self, msg: LinkMessage) -> io::Result<()> {
        self.change(RouteNetlinkMessage::SetLink(msg), 0)
    }

    /// Sets the link administratively up.
    pub fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        self.set_link(LinkUnspec::new_with_index(index).up().build())
            .map_err(request(format!("set link {index} up")))
    }

    /// Sets the link administratively down.
    pub fn set_down(&self, index: u32) -> Result<(), NetlinkError> {
        self.set_link(LinkUnspec::new_with_index(index).down().build())
            .map_err(request(format!("set link {index} down")))
    }

    /// Renames the link (the kernel refuses while it is up).
    pub fn rename(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        self.set_link(LinkUnspec::new_with_index(index).name(name).build())
            .map_err(request(format!("rename link {index} to {name}")))
    }

    /// Removes every address from the link.
    pub fn flush_addresses(&self, index: u32) -> Result<(), NetlinkError> {
        for msg in self.address_messages(index)? {
            match self.change(RouteNetlinkMessage::DelAddress(msg), 0) {
                // Gone meanwhile (IPv6 addresses go with the link's down state).
                Err(e) if e.raw_os_error() == Some(nix::errno::Errno::EADDRNOTAVAIL as i32) => {}
                other => other.map_err(request(format!("remove an address of link {index}")))?,
            }
        }
        Ok(())
    }

    /// Deletes the link called `name`; `false` when there was none.
    pub fn delete_link(&self, name: &str) -> Result<bool, NetlinkError> {
        match self.link(name)? {
            Some(link) => self.delete_index(link.index, name),
            None => Ok(false),
        }
    }

    /// Deletes the link with `index` (`name` is for the error message); `false` when there
    /// was none. Costs a few RCU grace periods in the kernel (~20 ms here), whoever asks.
    pub fn delete_index(&self, index: u32, name: &str) -> Result<bool, NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).build();
        match self.change(RouteNetlinkMessage::DelLink(msg), 0) {
            Ok(()) => Ok(true),
            // Raced with the kernel removing it (its peer's namespace went away).
            Err(e) if e.raw_os_error() == Some(libc_enodev()) => Ok(false),
            Err(e) => Err(request(format!("delete link {name}"))(e)),
        }
    }

    /// The link with `index`, or `None` when there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<LinkState>, NetlinkError> {
        self.lookup_link(LinkUnspec::new_with_index(index).build())
            .map_err(request(format!("look up link {index}")))
    }

    /// Every link of the namespace.
    pub fn links(&self) -> Result<Vec<LinkState>, NetlinkError> {
        let answers = self
            .exchange(
                RouteNetlinkMessage::GetLink(LinkMessage::default()),
                0,
                Answer::Dump,
            )
            .map_err(request("dump links"))?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewLink(link) => Some(link_state(link)),
                _ => None,
            })
            .collect())
    }

    /// Sets the link down and its alias to `alias`, in one request.
    pub fn set_down_with_alias(&self, index: u32, alias: &str) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index)
            .down()
            .alias(alias)
            .build();
        self.set_link(msg)
            .map_err(request(format!("set link {index} down")))
    }

    /// Adds (or replaces) `addr/prefix` on the link; IPv6 addresses skip duplicate address
    /// detection, which would otherwise hold them "tentative" for about a second.
    pub fn replace_address(
        &self,
        index: u32,
        addr: IpAddr,
        prefix: u8,
    ) -> Result<(), NetlinkError> {
        let msg = match addr {
            IpAddr::V4(v4) => AddressMessageBuilder::<Ipv4Addr>::new()
                .index(index)
                .address(v4, prefix)
                .build(),
            IpAddr::V6(v6) => {
                let mut msg = AddressMessageBuilder::<Ipv6Addr>::new()
                    .index(index)
                    .address(v6, prefix)
                    .build();
                msg.attributes
                    .push(AddressAttribute::Flags(AddressFlags::Nodad));
                msg
            }
        };
        self.change(
            RouteNetlinkMessage::NewAddress(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(request(format!("add address {addr}/{prefix}")))
    }

    /// The addresses on the link.
    pub fn addresses(&self, index: u32) -> Result<Vec<IpNetwork>, NetlinkError> {
        Ok(self
            .address_messages(index)?
            .iter()
            .filter_map(|m| {
                m.attributes.iter().find_map(|a| match a {
                    AddressAttribute::Address(ip) => IpNetwork::new(*ip, m.header.prefix_len).ok(),
                    _ => None,
                })
            })
            .collect())
    }

    /// The kernel's address messages of the link (the index in the request is a hint to the
    /// kernel, so they are filtered here again).
    fn address_messages(&self, index: u32) -> Result<Vec<AddressMessage>, NetlinkError> {
        let mut query = AddressMessage::default();
        query.header.index = index;
        let answers = self
            .exchange(RouteNetlinkMessage::GetAddress(query), 0, Answer::Dump)
            .map_err(request(format!("list addresses of link {index}")))?;
        Ok(answers
            .into_iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewAddress(a) if a.header.index == index => Some(a),
                _ => None,
            })
            .collect())
    }

    /// Installs (or replaces) a route in the main table.
    pub fn replace_route(&self, spec: RouteSpec) -> Result<(), NetlinkError> {
        let protocol = RouteProtocol::from(spec.protocol);
        let scope = if spec.gw.is_some() {
            RouteScope::Universe
        } else {
            RouteScope::Link
        };
        let msg = match spec.dst {
            IpNetwork::V4(d) => {
                let mut b = RouteMessageBuilder::<Ipv4Addr>::new()
                    .destination_prefix(d.ip(), d.prefix())
                    .output_interface(spec.oif)
                    .protocol(protocol)
                    .scope(scope);
                if let Some(IpAddr::V4(gw)) = spec.gw {
                    b = b.gateway(gw);
                }
                b.build()
            }
            IpNetwork::V6(d) => {
                let mut b = RouteMessageBuilder::<Ipv6Addr>::new()
                    .destination_prefix(d.ip(), d.prefix())
                    .output_interface(spec.oif)
                    .protocol(protocol)
                    .scope(scope);
                if let Some(IpAddr::V6(gw)) = spec.gw {
                    b = b.gateway(gw);
                }
                b.build()
            }
        };
        self.change(
            RouteNetlinkMessage::NewRoute(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(request(format!("add route {} via {:?}", spec.dst, spec.gw)))
    }

    /// Every route of the main table of one family.
    pub fn routes(&self, v6: bool) -> Result<Vec<KernelRoute>, NetlinkError> {
        let query = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        let answers = self
            .exchange(RouteNetlinkMessage::GetRoute(query), 0, Answer::Dump)
            .map_err(request("dump routes"))?;
        Ok(answers
            .iter()
            .filter_map(|m| match m {
                RouteNetlinkMessage::NewRoute(r) => kernel_route(r),
                _ => None,
            })
            .collect())
    }

    /// Adds (or replaces) a permanent neighbour `ip → mac` on the link, or with `proxy` a
    /// proxy entry (`ip neigh add proxy`) so the link answers neighbour solicitations for `ip`.
    pub fn replace_neighbour(
        &self,
        index: u32,
        ip: IpAddr,
        mac: Option<&[u8]>,
        proxy: bool,
    ) -> Result<(), NetlinkError> {
        let mut msg = NeighbourMessage::default();
        msg.header.family = match ip {
            IpAddr::V4(_) => AddressFamily::Inet,
            IpAddr::V6(_) => AddressFamily::Inet6,
        };
        msg.header.ifindex = index;
        msg.header.state = NeighbourState::Permanent;
        msg.header.kind = RouteType::Unspec;
        if proxy {
            msg.header.flags = NeighbourFlags::Proxy;
        }
        msg.attributes
            .push(NeighbourAttribute::Destination(match ip {
                IpAddr::V4(v4) => NeighbourAddress::Inet(v4),
                IpAddr::V6(v6) => NeighbourAddress::Inet6(v6),
            }));
        if let Some(mac) = mac {
            msg.attributes
                .push(NeighbourAttribute::LinkLayerAddress(mac.to_vec()));
        }
        self.change(
            RouteNetlinkMessage::NewNeighbour(msg),
            NLM_F_CREATE | NLM_F_REPLACE,
        )
        .map_err(request(format!("add neighbour {ip} on link {index}")))
    }

    /// The MTU of the node's uplink: the interface of the IPv4 (else IPv6) default route,
    /// [`FALLBACK_MTU`] when there is none.
    pub fn uplink_mtu(&self) -> Result<u32, NetlinkError> {
        for v6 in [false, true] {
            let default = self.routes(v6)?.into_iter().find(|r| r.dst.prefix() == 0);
            if let Some(oif) = default.and_then(|r| r.oif)
                && let Some(link) = self.link_by_index(oif)?
            {
                return Ok(link.mtu);
            }
        }
        Ok(FALLBACK_MTU)
    }
}

/// ENODEV: "no such device", what the kernel answers for a missing link.
fn libc_enodev() -> i32 {
    nix::errno::Errno::ENODEV as i32
}

/// What podroute needs to know about a link, from the kernel's message.
pub fn link_state(msg: &LinkMessage) -> LinkState {
    let mut state = LinkState {
        index: msg.header.index,
        name: String::new(),
        alias: None,
        peer_index: None,
        mac: String::new(),
        mac_bytes: Vec::new(),
        mtu: 0,
        up: msg.header.flags.contains(LinkFlags::Up),
    };
    for attr in &msg.attributes {
        match attr {
            LinkAttribute::Address(bytes) => {
                state.mac = format_mac(bytes);
                state.mac_bytes = bytes.clone();
            }
            LinkAttribute::Mtu(m) => state.mtu = *m,
            LinkAttribute::IfName(n) => state.name.clone_from(n),
            LinkAttribute::IfAlias(a) => state.alias = Some(a.clone()),
            LinkAttribute::Link(i) => state.peer_index = Some(*i),
            _ => {}
        }
    }
    state
}

fn kernel_route(msg: &RouteMessage) -> Option<KernelRoute> {
    let mut dst_ip = None;
    let mut gw = None;
    let mut oif = None;
    let mut table = u32::from(msg.header.table);
    for attr in &msg.attributes {
        match attr {
            RouteAttribute::Destination(a) => dst_ip = route_addr(a),
            RouteAttribute::Gateway(a) => gw = route_addr(a),
            RouteAttribute::Oif(i) => oif = Some(*i),
            RouteAttribute::Table(t) => table = *t,
            _ => {}
        }
    }
    if table != u32::from(rtnetlink::packet_route::route::RouteHeader::RT_TABLE_MAIN) {
        return None;
    }
    let dst_ip = dst_ip.unwrap_or(match msg.header.address_family {
        AddressFamily::Inet6 => IpAddr::V6(Ipv6Addr::UNSPECIFIED),
        _ => IpAddr::V4(Ipv4Addr::UNSPECIFIED),
    });
    let dst = IpNetwork::new(dst_ip, msg.header.destination_prefix_length).ok()?;
    Some(KernelRoute {
        dst,
        gw,
        oif,
        protocol: u8::from(msg.header.protocol),
    })
}

fn route_addr(a: &RouteAddress) -> Option<IpAddr> {
    match a {
        RouteAddress::Inet(v4) => Some(IpAddr::V4(*v4)),
        RouteAddress::Inet6(v6) => Some(IpAddr::V6(*v6)),
        _ => None,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn bytes(message: RouteNetlinkMessage) -> Vec<u8> {
        let mut message = NetlinkMessage::from(message);
        message.finalize();
        let mut out = vec![0; message.buffer_len()];
        message.serialize(&mut out);
        out
    }

    /// An RTM_NEWLINK whose payload is too short for a link header.
    fn undecodable() -> Vec<u8> {
        crate::datagram::tests::message(nix::libc::RTM_NEWLINK, 0, &[0; 4])
    }

    #[test]
    fn a_dump_skips_what_does_not_decode_and_a_lookup_fails_on_it() {
        let link = bytes(RouteNetlinkMessage::NewLink(
            LinkUnspec::new_with_name("eth0").build(),
        ));
        let bad = undecodable();
        let read = |raw: &[u8], answer: Answer, answers: &mut Vec<RouteNetlinkMessage>| {
            decode(NetlinkBuffer::new(raw), answer, answers)
        };
        let mut dumped = Vec::new();
        assert!(!read(&link, Answer::Dump, &mut dumped).expect("entry"));
        assert!(!read(&bad, Answer::Dump, &mut dumped).expect("skipped"));
        assert_eq!(dumped.len(), 1);

        let mut looked_up = Vec::new();
        assert!(read(&link, Answer::One, &mut looked_up).expect("the answer"));
        let err = read(&bad, Answer::One, &mut Vec::new()).expect_err("must decode");
        assert_eq!(err.kind(), io::ErrorKind::InvalidData);
    }
}
