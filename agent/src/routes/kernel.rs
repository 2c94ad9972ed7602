//! Route messages, without I/O: the requests podroute sends and what it reads from the ones
//! the kernel sends back (dumps, `ip route get` answers, notifications).
//!
//! Every message podroute writes carries its route protocol explicitly (rtnetlink's builder
//! defaults to `static`), so dumps, replaces and deletes only ever concern podroute's routes.
//! Messages are built with netlink-packet-route; the bytes are the crate's, never ours.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::IpNetwork;
use rtnetlink::packet_core::{
    NLM_F_CREATE, NLM_F_DUMP, NLM_F_EXCL, NLM_F_REPLACE, NLM_F_REQUEST, NetlinkHeader,
    NetlinkMessage, NetlinkPayload,
};
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteFlags, RouteHeader, RouteMessage, RouteNextHop,
    RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::packet_route::{AddressFamily, RouteNetlinkMessage};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::ownership::RouteShape;
use super::{Gateway, KernelTarget};

/// A netlink failure, with what podroute was doing.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Opening a netlink socket failed.
    #[error("opening a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// Dumping the routing table failed.
    #[error("dumping routes: {0}")]
    Dump(#[source] std::io::Error),
    /// Sending route writes, or reading the kernel's answers to them, failed.
    #[error("writing routes: {0}")]
    Write(#[source] std::io::Error),
}

impl KernelError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "netlink_connect",
            Self::Dump(_) => "netlink_dump",
            Self::Write(_) => "netlink_write",
        }
    }
}

/// The kernel's errno in a failed rtnetlink request, if the kernel answered.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// Opens an rtnetlink connection in the current network namespace and spawns its driver task
/// (for the veth sweep; routes go through [`super::RouteProgrammer`]'s own sockets).
pub fn connect() -> Result<Handle, KernelError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(KernelError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// A route as read from the kernel: the parts podroute looks at.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct KernelRoute {
    /// Destination prefix.
    pub destination: IpNetwork,
    /// True for the main table.
    pub main_table: bool,
    /// Route protocol (`RTM_PROTOCOL`).
    pub protocol: u8,
    /// A route that would clash with a podroute route to the same destination (not local,
    /// broadcast, anycast or multicast). IPv6 multicast and link-local housekeeping routes
    /// count too; they never equal a pod CIDR, so including them costs nothing.
    pub forwarding: bool,
    /// Metric (`RTA_PRIORITY`).
    pub priority: u32,
    /// Where it points.
    pub target: KernelTarget,
    /// What [`super::ownership::is_cni_pod_route`] needs.
    pub shape: RouteShape,
}

impl KernelRoute {
    /// Reads a route message; `None` for one without a usable destination.
    pub(crate) fn from_message(message: &RouteMessage) -> Option<Self> {
        let destination = destination_of(message)?;
        Some(Self {
            destination,
            main_table: table_of(message) == u32::from(RouteHeader::RT_TABLE_MAIN),
            protocol: u8::from(message.header.protocol),
            forwarding: !matches!(
                message.header.kind,
                RouteType::Local | RouteType::Broadcast | RouteType::Anycast | RouteType::Multicast
            ),
            priority: priority_of(message),
            target: target_of(message),
            shape: RouteShape {
                destination,
                unicast: message.header.kind == RouteType::Unicast,
                gateway: gateway_of(message),
                oif: oif_of(message),
            },
        })
    }
}

/// How a next hop is reached, per the kernel's own route to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Install `via gateway dev oif`.
    Reachable(Gateway),
    /// The kernel has no usable route to the next hop.
    Unresolvable,
}

/// Reads the answer to [`resolve_request`] like BIRD's recursive gateways: if the kernel's
/// route to the next hop has a gateway, podroute's route uses the same gateway and device; if
/// the next hop is on a connected subnet, the route goes `via next_hop dev <that device>`.
pub(crate) fn resolution_of(answer: &RouteMessage, next_hop: IpAddr, protocol: u8) -> Resolution {
    // A next hop reached only through a podroute route would make routes depend on each other.
    if answer.header.kind != RouteType::Unicast
        || answer.header.protocol == RouteProtocol::from(protocol)
    {
        return Resolution::Unresolvable;
    }
    match target_of(answer) {
        KernelTarget::Gateway { gateway, oif } => Resolution::Reachable(Gateway { gateway, oif }),
        _ => match oif_of(answer) {
            Some(oif) => Resolution::Reachable(Gateway {
                gateway: next_hop,
                oif,
            }),
            None => Resolution::Unresolvable,
        },
    }
}

/// The `ip route get <next hop>` request: how the kernel forwards to `next_hop`.
pub(crate) fn resolve_request(next_hop: IpAddr) -> NetlinkMessage<RouteNetlinkMessage> {
    get_request(next_hop, RouteFlags::empty())
}

/// The `ip route get fibmatch <address>` request: the FIB entry that forwards `address` (its
/// prefix, protocol and next hop). The kernel answers blackhole and unreachable entries with
/// an error, like a missing route.
pub(crate) fn fibmatch_request(address: IpAddr) -> NetlinkMessage<RouteNetlinkMessage> {
    get_request(address, RouteFlags::FibMatch)
}

/// A route lookup of `address` that a socket with strict checking accepts too (every header
/// field but the family, the destination length and `flags` zero), as `ip route get` sends it.
fn get_request(address: IpAddr, flags: RouteFlags) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut message = RouteMessage::default();
    let (family, length) = match address {
        IpAddr::V4(_) => (AddressFamily::Inet, 32),
        IpAddr::V6(_) => (AddressFamily::Inet6, 128),
    };
    message.header.address_family = family;
    message.header.destination_prefix_length = length;
    message.header.flags = flags;
    message
        .attributes
        .push(RouteAttribute::Destination(RouteAddress::from(address)));
    request(RouteNetlinkMessage::GetRoute(message), NLM_F_REQUEST)
}

/// The request dumping the blackhole routes of one family (every protocol); on a socket
/// with strict checking the kernel sends only those.
pub(crate) fn blackhole_dump_request(family: AddressFamily) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut message = RouteMessage::default();
    message.header.address_family = family;
    message.header.kind = RouteType::BlackHole;
    request(
        RouteNetlinkMessage::GetRoute(message),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
}

/// The request dumping every route of one family.
pub(crate) fn dump_request(family: AddressFamily) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut message = RouteMessage::default();
    message.header.address_family = family;
    request(
        RouteNetlinkMessage::GetRoute(message),
        NLM_F_REQUEST | NLM_F_DUMP,
    )
}

/// One route write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) enum WriteKind {
    /// Create only (`NLM_F_EXCL`): the kernel answers EEXIST when any route holds the same
    /// key (destination, metric, table), so a route of another program is never overwritten.
    Create(KernelTarget),
    /// Replace the route with the same key (one of podroute's, per the cache).
    Replace(KernelTarget),
    /// Delete podroute's route with this metric.
    Delete {
        /// The route's metric.
        priority: u32,
    },
}

/// The request for one write of a podroute route in the main table. Without `NLM_F_ACK`: the
/// kernel answers only failures, and a batch asks for one acknowledgement at its end (see
/// [`super::batch`]).
pub(crate) fn write_request(
    destination: IpNetwork,
    kind: WriteKind,
    protocol: u8,
) -> NetlinkMessage<RouteNetlinkMessage> {
    let priority = super::install_priority(&destination);
    match kind {
        WriteKind::Create(target) => request(
            RouteNetlinkMessage::NewRoute(route_message(destination, target, protocol, priority)),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL,
        ),
        WriteKind::Replace(target) => request(
            RouteNetlinkMessage::NewRoute(route_message(destination, target, protocol, priority)),
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE,
        ),
        WriteKind::Delete { priority } => {
            // Only the key matters for a delete.
            let mut message = route_message(destination, KernelTarget::Other, protocol, priority);
            // Like `ip route del`: scope RT_SCOPE_NOWHERE and type RTN_UNSPEC match a route of
            // any scope and type. The builder's `universe` and `unicast` would miss a stale
            // link-scope route or a blackhole and fail with ESRCH every time.
            message.header.scope = RouteScope::NoWhere;
            message.header.kind = RouteType::Unspec;
            request(RouteNetlinkMessage::DelRoute(message), NLM_F_REQUEST)
        }
    }
}

fn request(payload: RouteNetlinkMessage, flags: u16) -> NetlinkMessage<RouteNetlinkMessage> {
    let mut header = NetlinkHeader::default();
    header.flags = flags;
    let mut message = NetlinkMessage::new(header, NetlinkPayload::InnerMessage(payload));
    message.finalize();
    message
}

/// Builds the route message of one podroute route in the main table.
fn route_message(
    destination: IpNetwork,
    target: KernelTarget,
    protocol: u8,
    priority: u32,
) -> RouteMessage {
    let mut message = match destination {
        IpNetwork::V4(n) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .build(),
        IpNetwork::V6(n) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(n.network(), n.prefix())
            .build(),
    };
    message.header.protocol = RouteProtocol::from(protocol);
    message.header.table = RouteHeader::RT_TABLE_MAIN;
    if priority != 0 {
        message.attributes.push(RouteAttribute::Priority(priority));
    }
    match target {
        KernelTarget::Gateway { gateway, oif } => {
            message.header.kind = RouteType::Unicast;
            message.header.scope = RouteScope::Universe;
            message
                .attributes
                .push(RouteAttribute::Gateway(RouteAddress::from(gateway)));
            message.attributes.push(RouteAttribute::Oif(oif));
        }
        KernelTarget::Multipath(hops) => {
            message.header.kind = RouteType::Unicast;
            message.header.scope = RouteScope::Universe;
            // Equal weights: `hops` is the weight minus one.
            let next_hops = hops
                .iter()
                .map(|hop| {
                    let mut next_hop = RouteNextHop::default();
                    next_hop.interface_index = hop.oif;
                    next_hop
                        .attributes
                        .push(RouteAttribute::Gateway(RouteAddress::from(hop.gateway)));
                    next_hop
                })
                .collect();
            message
                .attributes
                .push(RouteAttribute::MultiPath(next_hops));
        }
        KernelTarget::Blackhole => {
            message.header.kind = RouteType::BlackHole;
            message.header.scope = RouteScope::Universe;
        }
        KernelTarget::Other => {}
    }
    message
}

fn table_of(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Table(t) => Some(*t),
            _ => None,
        })
        .unwrap_or(u32::from(message.header.table))
}

fn priority_of(message: &RouteMessage) -> u32 {
    message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Priority(p) => Some(*p),
            _ => None,
        })
        .unwrap_or(0)
}

fn oif_of(message: &RouteMessage) -> Option<u32> {
    message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Oif(i) => Some(*i),
        _ => None,
    })
}

fn address(addr: &RouteAddress) -> Option<IpAddr> {
    match addr {
        RouteAddress::Inet(a) => Some(IpAddr::V4(*a)),
        RouteAddress::Inet6(a) => Some(IpAddr::V6(*a)),
        _ => None,
    }
}

/// The destination prefix; the kernel omits `RTA_DST` for default routes.
fn destination_of(message: &RouteMessage) -> Option<IpNetwork> {
    let length = message.header.destination_prefix_length;
    let ip = message
        .attributes
        .iter()
        .find_map(|a| match a {
            RouteAttribute::Destination(d) => address(d),
            _ => None,
        })
        .or(match message.header.address_family {
            AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            AddressFamily::Inet6 => Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED)),
            _ => None,
        })?;
    IpNetwork::new(ip, length).ok()
}

fn gateway_of(message: &RouteMessage) -> Option<IpAddr> {
    message.attributes.iter().find_map(|a| match a {
        RouteAttribute::Gateway(g) => address(g),
        _ => None,
    })
}

fn target_of(message: &RouteMessage) -> KernelTarget {
    match message.header.kind {
        RouteType::BlackHole => KernelTarget::Blackhole,
        RouteType::Unicast => match (gateway_of(message), oif_of(message)) {
            (Some(gateway), Some(oif)) => KernelTarget::Gateway { gateway, oif },
            _ => multipath_of(message).unwrap_or(KernelTarget::Other),
        },
        _ => KernelTarget::Other,
    }
}

/// A route's `RTA_MULTIPATH` as podroute writes it: every next hop with a gateway and a
/// device, all of weight 1. Sorted by [`KernelTarget::over`]: IPv4 reports the next hops in
/// the order written, IPv6 in the order its sibling routes were added, which after a replace
/// need not be that. Next-hop flags (`dead`, `linkdown`) are the kernel's view of the links,
/// not part of the route podroute wrote, and are not compared.
fn multipath_of(message: &RouteMessage) -> Option<KernelTarget> {
    let next_hops = message.attributes.iter().find_map(|a| match a {
        RouteAttribute::MultiPath(hops) => Some(hops),
        _ => None,
    })?;
    let hops = next_hops
        .iter()
        .map(|hop| {
            let gateway = hop.attributes.iter().find_map(|a| match a {
                RouteAttribute::Gateway(g) => address(g),
                _ => None,
            })?;
            (hop.hops == 0 && hop.interface_index != 0).then_some(Gateway {
                gateway,
                oif: hop.interface_index,
            })
        })
        .collect::<Option<Vec<_>>>()?;
    Some(KernelTarget::over(hops))
}

#[cfg(test)]
mod tests {
    use super::*;
    use rtnetlink::packet_route::route::RouteNextHopFlags;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }

    fn route_of(message: &NetlinkMessage<RouteNetlinkMessage>) -> &RouteMessage {
        match &message.payload {
            NetlinkPayload::InnerMessage(
                RouteNetlinkMessage::NewRoute(m) | RouteNetlinkMessage::DelRoute(m),
            ) => m,
            other => panic!("not a route write: {other:?}"),
        }
    }

    #[test]
    fn writes_carry_the_protocol_and_read_back_as_written() {
        let target = KernelTarget::Gateway {
            gateway: "198.18.0.2".parse().expect("ip"),
            oif: 7,
        };
        let create = write_request(net("10.244.2.0/24"), WriteKind::Create(target.clone()), 80);
        assert_eq!(
            create.header.flags,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_EXCL
        );
        let read = KernelRoute::from_message(route_of(&create)).expect("route");
        assert_eq!(read.destination, net("10.244.2.0/24"));
        assert_eq!(read.protocol, 80);
        assert!(read.main_table && read.forwarding);
        assert_eq!(read.target, target);
        assert_eq!(read.priority, 0);

        let replace = write_request(
            net("fd00:10:244:2::/64"),
            WriteKind::Replace(KernelTarget::Blackhole),
            80,
        );
        assert_eq!(
            replace.header.flags,
            NLM_F_REQUEST | NLM_F_CREATE | NLM_F_REPLACE
        );
        let read = KernelRoute::from_message(route_of(&replace)).expect("route");
        assert_eq!(read.target, KernelTarget::Blackhole);
        assert_eq!(read.priority, 1024);
    }

    #[test]
    fn a_delete_names_only_the_key() {
        let delete = write_request(
            net("10.244.2.0/24"),
            WriteKind::Delete { priority: 100 },
            80,
        );
        let message = route_of(&delete);
        assert_eq!(message.header.scope, RouteScope::NoWhere);
        assert_eq!(message.header.kind, RouteType::Unspec);
        assert!(
            !message
                .attributes
                .iter()
                .any(|a| matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::Oif(_)))
        );
        assert_eq!(priority_of(message), 100);
    }

    fn hop(gateway: &str, oif: u32) -> Gateway {
        Gateway {
            gateway: gateway.parse().expect("ip"),
            oif,
        }
    }

    /// The bytes of `message` parsed back, as the kernel's answer would be.
    fn through_bytes(message: &NetlinkMessage<RouteNetlinkMessage>) -> RouteMessage {
        let mut bytes = vec![0; message.buffer_len()];
        message.serialize(&mut bytes);
        let parsed = NetlinkMessage::<RouteNetlinkMessage>::deserialize(&bytes).expect("parse");
        route_of(&parsed).clone()
    }

    #[test]
    fn a_multipath_route_reads_back_equal_whatever_the_order_of_its_next_hops() {
        for (destination, a, b) in [
            (
                "198.18.1.0/24",
                hop("198.18.0.254", 3),
                hop("198.18.0.253", 3),
            ),
            (
                "fd00:198:18:1::/64",
                hop("fd00:198:18::fe", 3),
                hop("fd00:198:18::fd", 4),
            ),
        ] {
            let target = KernelTarget::over(vec![a, b]);
            assert!(matches!(target, KernelTarget::Multipath(_)));
            let replace = write_request(net(destination), WriteKind::Replace(target.clone()), 80);
            let mut message = through_bytes(&replace);
            assert!(
                message
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::MultiPath(hops) if hops.len() == 2))
            );
            assert!(
                !message
                    .attributes
                    .iter()
                    .any(|a| matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::Oif(_)))
            );
            let read = KernelRoute::from_message(&message).expect("route");
            assert_eq!(read.target, target);
            assert_eq!(read.shape.gateway, None, "never a CNI pod route");
            // The kernel may list the next hops in another order (IPv6 siblings) and flags
            // them dead or linkdown: still the route podroute wrote.
            for attribute in &mut message.attributes {
                if let RouteAttribute::MultiPath(hops) = attribute {
                    hops.reverse();
                    hops[0].flags = RouteNextHopFlags::Linkdown;
                }
            }
            assert_eq!(
                KernelRoute::from_message(&message).expect("route").target,
                target
            );
        }
    }

    #[test]
    fn multipath_with_weights_or_without_gateways_is_not_podroutes() {
        let target = KernelTarget::over(vec![hop("198.18.0.254", 3), hop("198.18.0.253", 3)]);
        let create = write_request(net("198.18.1.0/24"), WriteKind::Create(target), 80);
        let written = through_bytes(&create);
        let mut weighted = written.clone();
        let mut no_gateway = written;
        for attribute in &mut weighted.attributes {
            if let RouteAttribute::MultiPath(hops) = attribute {
                hops[1].hops = 1;
            }
        }
        for attribute in &mut no_gateway.attributes {
            if let RouteAttribute::MultiPath(hops) = attribute {
                hops[1].attributes.clear();
            }
        }
        for message in [weighted, no_gateway] {
            assert_eq!(
                KernelRoute::from_message(&message).expect("route").target,
                KernelTarget::Other
            );
        }
    }

    #[test]
    fn one_or_repeated_next_hops_make_a_plain_gateway_route() {
        let a = hop("198.18.0.254", 3);
        assert_eq!(
            KernelTarget::over(vec![a, a]),
            KernelTarget::Gateway {
                gateway: a.gateway,
                oif: 3
            }
        );
        assert_eq!(KernelTarget::over(Vec::new()), KernelTarget::Other);
    }
}
