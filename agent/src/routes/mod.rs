//! Kernel routes: what podroute wants in the kernel, how that differs from what is there, and
//! the programmer that closes the gap incrementally.
//!
//! - [`desired`]: pure — the routes a node should hold, from the cluster view and the BGP RIB.
//! - [`diff`]: pure — per destination, desired vs. the kernel's podroute-protocol route → a
//!   [`diff::Decision`].
//! - [`ownership`]: pure — which routes of podroute's protocol are the CNI plugin's pod host
//!   routes (`<pod IP>/32 dev pr…` inside the own pod CIDRs), which the agent never touches.
//! - [`kernel`]: pure — the route messages podroute sends and reads.
//! - `table` (private): pure — the programmer's cache of desired routes and kernel state.
//! - `interner` (private): pure — the cache's next hops, sets and targets by id, freed ids
//!   reused.
//! - `batch` (private): pure — many route writes packed into one netlink datagram.
//! - `netlink` (private): the programmer's request and notification sockets.
//! - [`probe`]: drift's kernel side, a fresh look at how the kernel forwards each expected
//!   destination (not the programmer's cache).
//! - [`programmer`]: [`RouteProgrammer`], staged deltas in, batched writes out, kernel
//!   notifications and a rare full pass as the safety net.

mod batch;
pub mod desired;
pub mod diff;
mod interner;
pub mod kernel;
mod netlink;
pub mod ownership;
pub mod probe;
pub mod programmer;
mod table;

pub use programmer::{FlushReport, RouteCounters, RouteProgrammer};

use std::net::IpAddr;
use std::sync::Arc;

use ipnetwork::IpNetwork;

/// The metric podroute installs a route with: the kernel's default of each family (0 for IPv4,
/// 1024 for IPv6), so podroute's routes look like any plainly added route, and so dumps match
/// what was written.
pub fn install_priority(destination: &IpNetwork) -> u32 {
    match destination {
        IpNetwork::V4(_) => 0,
        IpNetwork::V6(_) => 1024,
    }
}

/// What podroute wants for one destination, before next-hop resolution.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum RouteIntent {
    /// Forward to this node IP (a BGP next hop); resolved through the kernel's route to it.
    Via(IpAddr),
    /// Forward over several equal-cost BGP next hops (ECMP): one kernel route with one
    /// `nexthop` per next hop that resolves. Sorted, without duplicates, at least two; built
    /// by [`RouteIntent::via_all`], so one next hop is always [`RouteIntent::Via`].
    Multipath(Arc<[IpAddr]>),
    /// Drop: the node's own pod CIDR, so traffic to unallocated pod IPs does not loop back out.
    Blackhole,
}

impl RouteIntent {
    /// Forward over `next_hops` (a BGP route's, see `podroute_bgp::speaker::NextHops`):
    /// `None` for none, [`RouteIntent::Via`] for one, [`RouteIntent::Multipath`] for more.
    pub fn via_all(next_hops: &[IpAddr]) -> Option<Self> {
        match next_hops {
            [] => None,
            [one] => Some(Self::Via(*one)),
            many => {
                let mut hops = many.to_vec();
                hops.sort_unstable();
                hops.dedup();
                Some(match hops.as_slice() {
                    [one] => Self::Via(*one),
                    _ => Self::Multipath(hops.into()),
                })
            }
        }
    }

    /// The BGP next hops this intent forwards to (none for a blackhole).
    pub fn next_hops(&self) -> &[IpAddr] {
        match self {
            Self::Via(hop) => std::slice::from_ref(hop),
            Self::Multipath(hops) => hops,
            Self::Blackhole => &[],
        }
    }
}

/// One next hop of a kernel route: `via <gateway> dev <oif>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Gateway {
    /// Immediate next hop (the BGP next hop itself, or the gateway of the route to it).
    pub gateway: IpAddr,
    /// Output interface index.
    pub oif: u32,
}

/// A route as the kernel holds it (or should hold it): the part podroute compares.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelTarget {
    /// `via <gateway> dev <oif>`.
    Gateway {
        /// Immediate next hop (the node IP itself, or the gateway of the route to it).
        gateway: IpAddr,
        /// Output interface index.
        oif: u32,
    },
    /// `nexthop via <g1> dev <o1> weight 1 nexthop via <g2> dev <o2> weight 1 …`: one route
    /// over several equal-weight next hops (`RTA_MULTIPATH`), sorted, at least two. Built by
    /// [`KernelTarget::over`], so the order the kernel reports them in never matters.
    Multipath(Arc<[Gateway]>),
    /// `blackhole`.
    Blackhole,
    /// Anything else (unequal weights, unreachable, no gateway); never equal to a desired
    /// route.
    Other,
}

impl KernelTarget {
    /// The route over `hops`: [`KernelTarget::Other`] for none, [`KernelTarget::Gateway`]
    /// for one, [`KernelTarget::Multipath`] (sorted, duplicates removed) for more.
    pub fn over(mut hops: Vec<Gateway>) -> Self {
        hops.sort_unstable();
        hops.dedup();
        match hops.as_slice() {
            [] => Self::Other,
            [Gateway { gateway, oif }] => Self::Gateway {
                gateway: *gateway,
                oif: *oif,
            },
            _ => Self::Multipath(hops.into()),
        }
    }

    /// True if the route sends traffic out of interface `index`.
    pub fn uses_interface(&self, index: u32) -> bool {
        match self {
            Self::Gateway { oif, .. } => *oif == index,
            Self::Multipath(hops) => hops.iter().any(|h| h.oif == index),
            Self::Blackhole | Self::Other => false,
        }
    }
}

/// One route of podroute's protocol found in the kernel that the agent manages (not a CNI pod
/// host route, see [`ownership`]).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OwnedRoute {
    /// Destination prefix.
    pub destination: IpNetwork,
    /// Where it points.
    pub target: KernelTarget,
    /// Route metric (`RTA_PRIORITY`); podroute installs [`install_priority`].
    pub priority: u32,
}
