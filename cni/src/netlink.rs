//! Link, address, route and neighbour operations over rtnetlink, run synchronously.
//!
//! The plugin is a short-lived process: a [`Netlink`] is one rtnetlink connection on a
//! current-thread tokio runtime, and blocks on every request. A netlink socket talks to the
//! network namespace its creating thread was in, so a connection opened (with
//! [`Netlink::open_here`]) inside [`crate::netns::run_in`] manages the pod's namespace; it
//! shares the node-side connection's runtime, as building one is a good part of the cost.

use futures::TryStreamExt;
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::AddressFamily;
use rtnetlink::packet_route::address::{AddressAttribute, AddressFlags, AddressMessage};
use rtnetlink::packet_route::link::{InfoData, InfoVeth, LinkAttribute, LinkFlags, LinkMessage};
use rtnetlink::packet_route::neighbour::{NeighbourFlags, NeighbourState};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteMessage, RouteProtocol, RouteScope,
};
use rtnetlink::{Handle, LinkMessageBuilder, LinkUnspec, LinkVeth, RouteMessageBuilder};
use std::fs::File;
use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::os::fd::AsRawFd;
use std::rc::Rc;

/// MTU used when the node has no default route to learn its uplink MTU from.
pub const FALLBACK_MTU: u32 = 1500;

/// A failed netlink operation, with what was being done.
#[derive(Debug, thiserror::Error)]
pub enum NetlinkError {
    /// The runtime or the socket could not be created.
    #[error("cannot open a netlink socket: {0}")]
    Socket(#[source] io::Error),
    /// The kernel refused a request.
    #[error("{what}: {source}")]
    Request {
        /// The operation, e.g. "add address 10.244.1.2/32 to eth0".
        what: String,
        /// rtnetlink's error (holds the errno).
        #[source]
        source: rtnetlink::Error,
    },
}

/// The kernel errno of a failed request, if it was one.
fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

impl NetlinkError {
    fn errno(&self) -> Option<i32> {
        match self {
            NetlinkError::Request { source, .. } => errno(source),
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

/// One rtnetlink connection, in the network namespace its thread was in when it was opened.
#[derive(Debug)]
pub struct Netlink {
    rt: Rc<tokio::runtime::Runtime>,
    handle: Handle,
}

fn format_mac(bytes: &[u8]) -> String {
    bytes
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect::<Vec<_>>()
        .join(":")
}

fn request(what: impl Into<String>) -> impl FnOnce(rtnetlink::Error) -> NetlinkError {
    let what = what.into();
    move |source| NetlinkError::Request { what, source }
}

impl Netlink {
    /// Opens a connection, on a runtime of its own, in the namespace of the calling thread.
    pub fn connect() -> Result<Self, NetlinkError> {
        let rt = tokio::runtime::Builder::new_current_thread()
            .enable_io()
            .build()
            .map_err(NetlinkError::Socket)?;
        Self::open_on(Rc::new(rt))
    }

    /// Opens another connection on this one's runtime, in the namespace the calling thread
    /// is in now (inside [`crate::netns::run_in`]: the pod's).
    pub fn open_here(&self) -> Result<Self, NetlinkError> {
        Self::open_on(self.rt.clone())
    }

    fn open_on(rt: Rc<tokio::runtime::Runtime>) -> Result<Self, NetlinkError> {
        // The socket registers with the runtime's reactor, so it is made inside it.
        let (conn, handle, _) = rt
            .block_on(async { rtnetlink::new_connection() })
            .map_err(NetlinkError::Socket)?;
        rt.spawn(conn);
        Ok(Self { rt, handle })
    }

    /// The link called `name`, or `None` when there is none.
    pub fn link(&self, name: &str) -> Result<Option<LinkState>, NetlinkError> {
        let reply = self.rt.block_on(
            self.handle
                .link()
                .get()
                .match_name(name.to_owned())
                .execute()
                .try_next(),
        );
        match reply {
            Ok(Some(msg)) => Ok(Some(link_state(&msg))),
            Ok(None) => Ok(None),
            Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(request(format!("look up link {name}"))(e)),
        }
    }

    /// Creates a veth pair: `host` here, `peer` directly inside the namespace `peer_netns`
    /// (one request, no rename), both with `mtu`, and with `host_up` the host end up at once
    /// (one request fewer under the RTNL lock). The peer cannot come up in the same request:
    /// the kernel opens it before the pair is linked, and refuses (ENOTCONN).
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
            .setns_by_fd(peer_netns.as_raw_fd())
            .build();
        let mut host_msg = LinkVeth::new(host, peer).mtu(mtu);
        if host_up {
            host_msg = host_msg.up();
        }
        let msg = host_msg
            .set_info_data(InfoData::Veth(InfoVeth::Peer(peer_msg)))
            .build();
        self.rt
            .block_on(self.handle.link().add(msg).execute())
            .map_err(request(format!(
                "create veth {host} with peer {peer} in the pod netns"
            )))
    }

    /// Sets the link administratively up.
    pub fn set_up(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).up().build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(request(format!("set link {index} up")))
    }

    /// Sets the link administratively down.
    pub fn set_down(&self, index: u32) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).down().build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(request(format!("set link {index} down")))
    }

    /// Renames the link (the kernel refuses while it is up).
    pub fn rename(&self, index: u32, name: &str) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index).name(name).build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
            .map_err(request(format!("rename link {index} to {name}")))
    }

    /// Removes every address from the link.
    pub fn flush_addresses(&self, index: u32) -> Result<(), NetlinkError> {
        for msg in self.address_messages(index)? {
            match self.rt.block_on(self.handle.address().del(msg).execute()) {
                // Gone meanwhile (IPv6 addresses go with the link's down state).
                Err(e) if errno(&e) == Some(nix::errno::Errno::EADDRNOTAVAIL as i32) => {}
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
        match self.rt.block_on(self.handle.link().del(index).execute()) {
            Ok(()) => Ok(true),
            // Raced with the kernel removing it (its peer's namespace went away).
            Err(e) if errno(&e) == Some(libc_enodev()) => Ok(false),
            Err(e) => Err(request(format!("delete link {name}"))(e)),
        }
    }

    /// The link with `index`, or `None` when there is none.
    pub fn link_by_index(&self, index: u32) -> Result<Option<LinkState>, NetlinkError> {
        let reply = self.rt.block_on(
            self.handle
                .link()
                .get()
                .match_index(index)
                .execute()
                .try_next(),
        );
        match reply {
            Ok(msg) => Ok(msg.as_ref().map(link_state)),
            Err(e) if errno(&e) == Some(libc_enodev()) => Ok(None),
            Err(e) => Err(request(format!("look up link {index}"))(e)),
        }
    }

    /// Every link of the namespace.
    pub fn links(&self) -> Result<Vec<LinkState>, NetlinkError> {
        let msgs: Vec<LinkMessage> = self
            .rt
            .block_on(self.handle.link().get().execute().try_collect())
            .map_err(request("dump links"))?;
        Ok(msgs.iter().map(link_state).collect())
    }

    /// Sets the link down and its alias to `alias`, in one request.
    pub fn set_down_with_alias(&self, index: u32, alias: &str) -> Result<(), NetlinkError> {
        let msg = LinkUnspec::new_with_index(index)
            .down()
            .alias(alias)
            .build();
        self.rt
            .block_on(self.handle.link().set(msg).execute())
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
        let mut req = self.handle.address().add(index, addr, prefix).replace();
        if addr.is_ipv6() {
            req.message_mut()
                .attributes
                .push(AddressAttribute::Flags(AddressFlags::Nodad));
        }
        self.rt
            .block_on(req.execute())
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

    /// The kernel's address messages of the link (the filter is a hint to the kernel, so
    /// they are filtered here again).
    fn address_messages(&self, index: u32) -> Result<Vec<AddressMessage>, NetlinkError> {
        let msgs: Vec<AddressMessage> = self
            .rt
            .block_on(
                self.handle
                    .address()
                    .get()
                    .set_link_index_filter(index)
                    .execute()
                    .try_collect(),
            )
            .map_err(request(format!("list addresses of link {index}")))?;
        Ok(msgs
            .into_iter()
            .filter(|m| m.header.index == index)
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
        self.rt
            .block_on(self.handle.route().add(msg).replace().execute())
            .map_err(request(format!("add route {} via {:?}", spec.dst, spec.gw)))
    }

    /// Every route of the main table of one family.
    pub fn routes(&self, v6: bool) -> Result<Vec<KernelRoute>, NetlinkError> {
        let query = if v6 {
            RouteMessageBuilder::<Ipv6Addr>::new().build()
        } else {
            RouteMessageBuilder::<Ipv4Addr>::new().build()
        };
        let msgs: Vec<RouteMessage> = self
            .rt
            .block_on(self.handle.route().get(query).execute().try_collect())
            .map_err(request("dump routes"))?;
        Ok(msgs.iter().filter_map(kernel_route).collect())
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
        let mut req = self
            .handle
            .neighbours()
            .add(index, ip)
            .state(NeighbourState::Permanent);
        if let Some(mac) = mac {
            req = req.link_layer_address(mac);
        }
        if proxy {
            req = req.flags(NeighbourFlags::Proxy);
        }
        self.rt
            .block_on(req.replace().execute())
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
