//! Drift's kernel side: how the kernel forwards each destination the API expects, read
//! fresh from the kernel on a socket of its own, never from the programmer's cache.
//!
//! Per expected peer route one `ip route get fibmatch` (the FIB entry that forwards the
//! destination's first address: its prefix, protocol and next hop); for the own pod CIDRs
//! (blackholes, which the kernel answers a lookup for with an error) one dump of the
//! blackhole routes per family. The cost grows with the expected routes (a 1,000-node mesh:
//! about a thousand lookups), not with the table (a router's full table costs nothing here).

use std::collections::{BTreeMap, HashMap};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use rtnetlink::packet_route::AddressFamily;

use super::kernel::{
    KernelError, KernelRoute, Resolution, blackhole_dump_request, fibmatch_request, resolution_of,
    resolve_request,
};
use super::netlink::RequestSocket;
use super::{Gateway, KernelTarget, RouteIntent};

/// What the kernel does with one expected destination.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum KernelVerdict {
    /// podroute's route, as expected.
    InPlace,
    /// No route of its own: the destination is unrouted or only covered by a shorter prefix.
    Missing,
    /// A route of another protocol (or a longer prefix) takes the destination's traffic.
    Foreign {
        /// That route's protocol.
        protocol: u8,
    },
    /// podroute's route, pointing elsewhere than expected.
    WrongTarget,
}

/// Looks the expected routes up in the kernel.
#[derive(Debug)]
pub struct KernelProbe {
    requests: RequestSocket,
    protocol: u8,
}

impl KernelProbe {
    /// Opens the probe's socket in the calling thread's network namespace (inside tokio).
    pub fn new(protocol: u8) -> Result<Self, KernelError> {
        Ok(Self {
            requests: RequestSocket::open_strict().map_err(KernelError::Connect)?,
            protocol,
        })
    }

    /// The kernel's verdict on every expected destination.
    pub async fn check(
        &mut self,
        expected: &BTreeMap<IpNetwork, RouteIntent>,
    ) -> Result<BTreeMap<IpNetwork, KernelVerdict>, KernelError> {
        let mut blackholes = Vec::new();
        for (family, v6) in [(AddressFamily::Inet, false), (AddressFamily::Inet6, true)] {
            let wanted = expected
                .iter()
                .any(|(d, intent)| *intent == RouteIntent::Blackhole && d.is_ipv6() == v6);
            if !wanted {
                continue;
            }
            self.requests
                .dump_with(blackhole_dump_request(family), |message| {
                    if let Some(route) = KernelRoute::from_message(message)
                        && route.target == KernelTarget::Blackhole
                    {
                        blackholes.push(route);
                    }
                })
                .await
                .map_err(KernelError::Dump)?;
        }
        let mut gateways: HashMap<IpAddr, Option<IpAddr>> = HashMap::new();
        let mut verdicts = BTreeMap::new();
        for (destination, intent) in expected {
            let verdict = match intent {
                RouteIntent::Blackhole => {
                    match classify_blackhole(*destination, &blackholes, self.protocol) {
                        Some(verdict) => verdict,
                        None => {
                            let answer = self.lookup(*destination).await?;
                            classify_replaced_blackhole(*destination, answer.as_ref())
                        }
                    }
                }
                // The API expects one next hop per pod CIDR; a multipath intent is checked by
                // its first next hop (a multipath route holding it is in place).
                RouteIntent::Via(_) | RouteIntent::Multipath(_) => {
                    let Some(next_hop) = intent.next_hops().first() else {
                        continue;
                    };
                    let answer = self.lookup(*destination).await?;
                    let protocol = self.protocol;
                    let classify = |gateway| {
                        classify_via(*destination, *next_hop, answer.as_ref(), gateway, protocol)
                    };
                    // Only a route through another gateway needs the kernel's way to the
                    // next hop (a next hop behind a router): one more lookup, per next hop.
                    match classify(None) {
                        KernelVerdict::WrongTarget => {
                            let gateway = match gateways.get(next_hop) {
                                Some(gateway) => *gateway,
                                None => {
                                    let gateway = self.gateway_of(*next_hop).await?;
                                    gateways.insert(*next_hop, gateway);
                                    gateway
                                }
                            };
                            classify(gateway)
                        }
                        verdict => verdict,
                    }
                }
            };
            verdicts.insert(*destination, verdict);
        }
        Ok(verdicts)
    }

    async fn lookup(&mut self, destination: IpNetwork) -> Result<Option<KernelRoute>, KernelError> {
        let answer = self
            .requests
            .get_route(fibmatch_request(destination.network()))
            .await
            .map_err(KernelError::Dump)?;
        Ok(answer.as_ref().and_then(KernelRoute::from_message))
    }

    /// The gateway the kernel uses to reach `next_hop` (the next hop itself when it is on
    /// a connected subnet), as the programmer resolves it.
    async fn gateway_of(&mut self, next_hop: IpAddr) -> Result<Option<IpAddr>, KernelError> {
        let answer = self
            .requests
            .get_route(resolve_request(next_hop))
            .await
            .map_err(KernelError::Dump)?;
        Ok(
            match answer.map(|a| resolution_of(&a, next_hop, self.protocol)) {
                Some(Resolution::Reachable(Gateway { gateway, .. })) => Some(gateway),
                _ => None,
            },
        )
    }
}

/// The verdict on an expected `destination via next_hop` from the kernel's FIB entry for it
/// (`answer`) and the gateway through which the kernel reaches `next_hop`.
pub(crate) fn classify_via(
    destination: IpNetwork,
    next_hop: IpAddr,
    answer: Option<&KernelRoute>,
    next_hop_gateway: Option<IpAddr>,
    protocol: u8,
) -> KernelVerdict {
    let Some(route) = answer else {
        return KernelVerdict::Missing;
    };
    if route.destination != destination {
        return if route.destination.prefix() > destination.prefix() {
            KernelVerdict::Foreign {
                protocol: route.protocol,
            }
        } else {
            KernelVerdict::Missing
        };
    }
    if route.protocol != protocol {
        return KernelVerdict::Foreign {
            protocol: route.protocol,
        };
    }
    let expected = |gateway: IpAddr| gateway == next_hop || Some(gateway) == next_hop_gateway;
    match &route.target {
        KernelTarget::Gateway { gateway, .. } if expected(*gateway) => KernelVerdict::InPlace,
        // A multipath route (ECMP over routers' next hops) forwards over the expected one too.
        KernelTarget::Multipath(hops) if hops.iter().any(|h| expected(h.gateway)) => {
            KernelVerdict::InPlace
        }
        _ => KernelVerdict::WrongTarget,
    }
}

/// The verdict on an own pod CIDR (expected as a blackhole) from the kernel's blackhole
/// routes in the main table; `None` when none has the destination (then a lookup tells).
pub(crate) fn classify_blackhole(
    destination: IpNetwork,
    blackholes: &[KernelRoute],
    protocol: u8,
) -> Option<KernelVerdict> {
    let same: Vec<&KernelRoute> = blackholes
        .iter()
        .filter(|r| r.destination == destination && r.main_table)
        .collect();
    if same.iter().any(|r| r.protocol == protocol) {
        return Some(KernelVerdict::InPlace);
    }
    same.first().map(|r| KernelVerdict::Foreign {
        protocol: r.protocol,
    })
}

/// The verdict on an own pod CIDR that has no blackhole route, from its FIB entry.
pub(crate) fn classify_replaced_blackhole(
    destination: IpNetwork,
    answer: Option<&KernelRoute>,
) -> KernelVerdict {
    match answer {
        Some(route) if route.destination.prefix() >= destination.prefix() => {
            KernelVerdict::Foreign {
                protocol: route.protocol,
            }
        }
        _ => KernelVerdict::Missing,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::ownership::RouteShape;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn ip(s: &str) -> IpAddr {
        s.parse().expect("ip")
    }

    fn route(destination: &str, protocol: u8, target: KernelTarget) -> KernelRoute {
        let destination = net(destination);
        KernelRoute {
            destination,
            main_table: true,
            protocol,
            forwarding: true,
            priority: 0,
            shape: RouteShape {
                destination,
                unicast: target != KernelTarget::Blackhole,
                gateway: None,
                oif: None,
            },
            target,
        }
    }

    fn via(gateway: &str) -> KernelTarget {
        KernelTarget::Gateway {
            gateway: ip(gateway),
            oif: 2,
        }
    }

    #[test]
    fn a_peer_route_is_in_place_missing_foreign_or_wrong() {
        let d = net("10.244.2.0/24");
        let nh = ip("198.18.0.2");
        let ours = route("10.244.2.0/24", 80, via("198.18.0.2"));
        assert_eq!(
            classify_via(d, nh, Some(&ours), Some(nh), 80),
            KernelVerdict::InPlace
        );
        // Deleted: only the default route answers.
        let default = route("0.0.0.0/0", 2, via("198.18.0.254"));
        assert_eq!(
            classify_via(d, nh, Some(&default), Some(nh), 80),
            KernelVerdict::Missing
        );
        assert_eq!(
            classify_via(d, nh, None, Some(nh), 80),
            KernelVerdict::Missing
        );
        // Replaced by a static route.
        let static_route = route("10.244.2.0/24", 4, via("198.18.0.2"));
        assert_eq!(
            classify_via(d, nh, Some(&static_route), Some(nh), 80),
            KernelVerdict::Foreign { protocol: 4 }
        );
        // A longer prefix of another program takes the first address.
        let longer = route("10.244.2.0/25", 3, via("198.18.0.9"));
        assert_eq!(
            classify_via(d, nh, Some(&longer), Some(nh), 80),
            KernelVerdict::Foreign { protocol: 3 }
        );
        // Ours, pointing to another node.
        let wrong = route("10.244.2.0/24", 80, via("198.18.0.3"));
        assert_eq!(
            classify_via(d, nh, Some(&wrong), Some(nh), 80),
            KernelVerdict::WrongTarget
        );
        // An off-link next hop reached through a gateway: the gateway is expected.
        let recursive = route("10.244.2.0/24", 80, via("198.18.0.254"));
        assert_eq!(
            classify_via(
                d,
                ip("198.18.1.2"),
                Some(&recursive),
                Some(ip("198.18.0.254")),
                80
            ),
            KernelVerdict::InPlace
        );
    }

    #[test]
    fn a_multipath_route_over_the_expected_next_hop_is_in_place() {
        let d = net("198.18.1.0/24");
        let both = KernelTarget::over(vec![
            Gateway {
                gateway: ip("198.18.0.251"),
                oif: 2,
            },
            Gateway {
                gateway: ip("198.18.0.252"),
                oif: 2,
            },
        ]);
        let ours = route("198.18.1.0/24", 80, both);
        assert_eq!(
            classify_via(d, ip("198.18.0.252"), Some(&ours), None, 80),
            KernelVerdict::InPlace
        );
        assert_eq!(
            classify_via(d, ip("198.18.0.253"), Some(&ours), None, 80),
            KernelVerdict::WrongTarget
        );
    }

    #[test]
    fn an_own_blackhole_is_in_place_foreign_or_missing() {
        let d = net("10.244.1.0/24");
        let ours = route("10.244.1.0/24", 80, KernelTarget::Blackhole);
        let theirs = route("10.244.1.0/24", 4, KernelTarget::Blackhole);
        let other = route("10.244.9.0/24", 80, KernelTarget::Blackhole);
        assert_eq!(
            classify_blackhole(d, &[other.clone(), ours], 80),
            Some(KernelVerdict::InPlace)
        );
        assert_eq!(
            classify_blackhole(d, &[theirs], 80),
            Some(KernelVerdict::Foreign { protocol: 4 })
        );
        assert_eq!(classify_blackhole(d, &[other], 80), None);
        let unicast = route("10.244.1.0/24", 4, via("198.18.0.5"));
        assert_eq!(
            classify_replaced_blackhole(d, Some(&unicast)),
            KernelVerdict::Foreign { protocol: 4 }
        );
        assert_eq!(classify_replaced_blackhole(d, None), KernelVerdict::Missing);
    }
}
