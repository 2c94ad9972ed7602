//! Netlink I/O for routes: dump the main table, resolve next hops, replace and delete.
//!
//! Every message podroute writes carries its route protocol explicitly (rtnetlink's builder
//! defaults to `static`), so dumps, replaces and deletes only ever concern podroute's routes.
//! Of the routes with that protocol, the CNI plugin's pod host routes are set apart in the
//! snapshot (see [`super::ownership`]): the agent never adopts or deletes them.

use std::collections::BTreeSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use futures::{StreamExt, TryStreamExt};
use ipnetwork::IpNetwork;
use rtnetlink::packet_route::route::{
    RouteAddress, RouteAttribute, RouteHeader, RouteMessage, RouteProtocol, RouteScope, RouteType,
};
use rtnetlink::{Handle, RouteMessageBuilder};

use super::ownership::{RouteShape, is_cni_pod_route};
use super::{KernelTarget, OwnedRoute, install_priority};

/// How many netlink requests are in flight at once when applying a plan.
const BATCH: usize = 64;

/// A netlink failure, with what podroute was doing.
#[derive(Debug, thiserror::Error)]
pub enum KernelError {
    /// Opening the netlink socket failed.
    #[error("opening a netlink socket: {0}")]
    Connect(#[source] std::io::Error),
    /// Dumping the routing table failed.
    #[error("dumping routes: {0}")]
    Dump(#[source] rtnetlink::Error),
    /// Writing one route failed.
    #[error("{op} route {destination}: {source}")]
    Write {
        /// `create`, `replace` or `delete`.
        op: &'static str,
        /// The route's destination.
        destination: IpNetwork,
        /// The kernel's answer.
        #[source]
        source: rtnetlink::Error,
    },
}

impl KernelError {
    /// Low-cardinality label for metrics.
    pub fn metric_label(&self) -> &'static str {
        match self {
            Self::Connect(_) => "netlink_connect",
            Self::Dump(_) => "netlink_dump",
            Self::Write { op: "delete", .. } => "netlink_delete",
            Self::Write { op: "create", .. } => "netlink_create",
            Self::Write { .. } => "netlink_replace",
        }
    }

    /// True for a create the kernel refused because a route with the same key exists.
    pub fn is_exists(&self) -> bool {
        matches!(self, Self::Write { source, .. } if errno(source) == Some(libc::EEXIST))
    }
}

/// The kernel's errno in a failed netlink request, if the kernel answered.
pub fn errno(e: &rtnetlink::Error) -> Option<i32> {
    match e {
        rtnetlink::Error::NetlinkError(m) => m.code.map(|c| -c.get()),
        _ => None,
    }
}

/// The main table's routes as podroute sees them.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct TableSnapshot {
    /// Routes of podroute's protocol that the agent manages.
    pub owned: Vec<OwnedRoute>,
    /// Pod host routes of podroute's protocol written by the CNI plugin: not the agent's.
    pub cni_pod_routes: BTreeSet<IpNetwork>,
    /// Destinations of routes of any other protocol (unicast, blackhole, … in the main table).
    pub foreign: BTreeSet<IpNetwork>,
}

/// How a next hop is reached, per the kernel's own route to it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Resolution {
    /// Install `via gateway dev oif`.
    Reachable(KernelTarget),
    /// The kernel has no usable route to the next hop.
    Unresolvable,
}

/// Opens a netlink connection in the current network namespace and spawns its driver task.
pub fn connect() -> Result<Handle, KernelError> {
    let (connection, handle, _) = rtnetlink::new_connection().map_err(KernelError::Connect)?;
    tokio::spawn(connection);
    Ok(handle)
}

/// Dumps the main table (both families) and splits the agent's routes from the CNI plugin's
/// pod host routes (inside `own_pod_cidrs`) and from everyone else's.
pub async fn snapshot(
    handle: &Handle,
    protocol: u8,
    own_pod_cidrs: &[IpNetwork],
) -> Result<TableSnapshot, KernelError> {
    let mut out = TableSnapshot::default();
    let requests = [
        RouteMessageBuilder::<Ipv4Addr>::new().build(),
        RouteMessageBuilder::<Ipv6Addr>::new().build(),
    ];
    for request in requests {
        let mut routes = handle.route().get(request).execute();
        while let Some(message) = routes.try_next().await.map_err(KernelError::Dump)? {
            if table_of(&message) != u32::from(RouteHeader::RT_TABLE_MAIN) {
                continue;
            }
            let Some(destination) = destination_of(&message) else {
                continue;
            };
            if message.header.protocol != RouteProtocol::from(protocol) {
                if is_forwarding_route(&message) {
                    out.foreign.insert(destination);
                }
            } else if is_cni_pod_route(&shape_of(&message, destination), own_pod_cidrs) {
                out.cni_pod_routes.insert(destination);
            } else {
                out.owned.push(OwnedRoute {
                    destination,
                    target: target_of(&message),
                    priority: priority_of(&message),
                });
            }
        }
    }
    Ok(out)
}

/// Resolves a BGP next hop through the kernel's route to it (like BIRD's recursive gateways):
/// if that route has a gateway, podroute's route uses the same gateway and device; if the next
/// hop is on a connected subnet, the route goes `via next_hop dev <that device>`.
pub async fn resolve(handle: &Handle, next_hop: IpAddr, protocol: u8) -> Resolution {
    let request = match next_hop {
        IpAddr::V4(a) => RouteMessageBuilder::<Ipv4Addr>::new()
            .destination_prefix(a, 32)
            .build(),
        IpAddr::V6(a) => RouteMessageBuilder::<Ipv6Addr>::new()
            .destination_prefix(a, 128)
            .build(),
    };
    let mut answers = handle.route().get(request).execute();
    let Ok(Some(route)) = answers.try_next().await else {
        return Resolution::Unresolvable;
    };
    // A next hop reached only through a podroute route would make routes depend on each other.
    if route.header.kind != RouteType::Unicast
        || route.header.protocol == RouteProtocol::from(protocol)
    {
        return Resolution::Unresolvable;
    }
    match target_of(&route) {
        KernelTarget::Gateway { gateway, oif } => {
            Resolution::Reachable(KernelTarget::Gateway { gateway, oif })
        }
        _ => match oif_of(&route) {
            Some(oif) => Resolution::Reachable(KernelTarget::Gateway {
                gateway: next_hop,
                oif,
            }),
            None => Resolution::Unresolvable,
        },
    }
}

/// How a route is written.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum WriteMode {
    /// Create only: the kernel answers EEXIST when any route holds the same key (destination,
    /// metric, table), so a route of another program is never overwritten.
    Create,
    /// Replace the route with the same key (one of podroute's, per the snapshot).
    Replace,
}

impl WriteMode {
    fn label(self) -> &'static str {
        match self {
            WriteMode::Create => "create",
            WriteMode::Replace => "replace",
        }
    }
}

/// Writes routes, [`BATCH`] requests in flight at a time. Returns how many were written and
/// the failures.
pub async fn write_all(
    handle: &Handle,
    routes: &[(IpNetwork, KernelTarget)],
    protocol: u8,
    mode: WriteMode,
) -> (usize, Vec<KernelError>) {
    let results: Vec<_> = futures::stream::iter(routes.iter().copied())
        .map(|(destination, target)| {
            let message = route_message(
                destination,
                target,
                protocol,
                install_priority(&destination),
            );
            // rtnetlink's add request is create-exclusive unless told to replace.
            let request = match mode {
                WriteMode::Create => handle.route().add(message),
                WriteMode::Replace => handle.route().add(message).replace(),
            };
            async move {
                request
                    .execute()
                    .await
                    .map_err(|source| KernelError::Write {
                        op: mode.label(),
                        destination,
                        source,
                    })
            }
        })
        .buffer_unordered(BATCH)
        .collect()
        .await;
    split_results(results)
}

/// Deletes podroute routes (each matched by destination, metric, table and protocol).
pub async fn delete_all(
    handle: &Handle,
    routes: &[OwnedRoute],
    protocol: u8,
) -> (usize, Vec<KernelError>) {
    let results: Vec<_> = futures::stream::iter(routes.iter().copied())
        .map(|route| {
            let mut message =
                route_message(route.destination, route.target, protocol, route.priority);
            // Only the key matters for a delete; the target may be `Other`.
            message
                .attributes
                .retain(|a| !matches!(a, RouteAttribute::Gateway(_) | RouteAttribute::Oif(_)));
            // The IPv4 FIB deletes only a route of the request's scope unless it is
            // RT_SCOPE_NOWHERE (`ip route del` sends that too); the builder's `universe` would
            // miss a stale link-scope route and fail with ESRCH on every reconcile.
            message.header.scope = RouteScope::NoWhere;
            let request = handle.route().del(message);
            async move {
                request
                    .execute()
                    .await
                    .map_err(|source| KernelError::Write {
                        op: "delete",
                        destination: route.destination,
                        source,
                    })
            }
        })
        .buffer_unordered(BATCH)
        .collect()
        .await;
    split_results(results)
}

fn split_results(results: Vec<Result<(), KernelError>>) -> (usize, Vec<KernelError>) {
    let mut written = 0;
    let mut errors = Vec::new();
    for result in results {
        match result {
            Ok(()) => written += 1,
            Err(e) => errors.push(e),
        }
    }
    (written, errors)
}

/// Builds the netlink message of one podroute route in the main table.
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
            rtnetlink::packet_route::AddressFamily::Inet => Some(IpAddr::V4(Ipv4Addr::UNSPECIFIED)),
            rtnetlink::packet_route::AddressFamily::Inet6 => {
                Some(IpAddr::V6(Ipv6Addr::UNSPECIFIED))
            }
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

/// What [`is_cni_pod_route`] needs to know of a dumped route.
fn shape_of(message: &RouteMessage, destination: IpNetwork) -> RouteShape {
    RouteShape {
        destination,
        unicast: message.header.kind == RouteType::Unicast,
        gateway: gateway_of(message),
        oif: oif_of(message),
    }
}

fn target_of(message: &RouteMessage) -> KernelTarget {
    match message.header.kind {
        RouteType::BlackHole => KernelTarget::Blackhole,
        RouteType::Unicast => match (gateway_of(message), oif_of(message)) {
            (Some(gateway), Some(oif)) => KernelTarget::Gateway { gateway, oif },
            _ => KernelTarget::Other,
        },
        _ => KernelTarget::Other,
    }
}

/// Routes in the main table that would clash with a podroute route to the same destination.
/// IPv6 multicast and link-local housekeeping routes are included too; they never equal a pod
/// CIDR, so including them costs nothing.
fn is_forwarding_route(message: &RouteMessage) -> bool {
    !matches!(
        message.header.kind,
        RouteType::Local | RouteType::Broadcast | RouteType::Anycast | RouteType::Multicast
    )
}
