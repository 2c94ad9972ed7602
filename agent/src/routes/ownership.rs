//! Which routes of podroute's protocol belong to the agent, and which to the CNI plugin.
//!
//! Both the agent and the `podroute` CNI plugin write routes with the same route protocol
//! (issue 5: a pod's host route says it is podroute's). The agent manages its *prefix* routes:
//! the own pod CIDRs as blackholes and peers' pod CIDRs `via` their node IPs. The plugin owns
//! each pod's *host* route, `<pod IP>/32 dev pr… proto N` (`/128` for IPv6), which it adds on
//! CNI ADD and removes on DEL. If the agent treated those as its own, its stale-route removal
//! would delete every pod's route and cut the pods off.
//!
//! The rule ([`is_cni_pod_route`]): a route of podroute's protocol is a CNI pod route, left
//! alone by the reconciler, when it is a unicast host route (`/32` or `/128`) with no gateway
//! and an output device, whose address lies inside one of the node's own pod CIDRs. The agent
//! itself never writes such a route (its own CIDRs are blackholes, every other route has a
//! gateway), so the two sets cannot overlap.

use std::net::IpAddr;

use ipnetwork::IpNetwork;

/// The parts of a kernel route of podroute's protocol that decide who owns it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RouteShape {
    /// Destination prefix.
    pub destination: IpNetwork,
    /// True for a unicast route (not blackhole, unreachable, local, …).
    pub unicast: bool,
    /// `RTA_GATEWAY`, if any.
    pub gateway: Option<IpAddr>,
    /// `RTA_OIF`, if any.
    pub oif: Option<u32>,
}

/// True if `route` is a pod host route written by the CNI plugin on this node: a unicast
/// host route (`/32`, `/128`) straight onto a device (no gateway) to an address inside one of
/// `own_pod_cidrs`. The reconciler neither adopts, replaces nor deletes such routes.
pub fn is_cni_pod_route(route: &RouteShape, own_pod_cidrs: &[IpNetwork]) -> bool {
    let destination = route.destination;
    let is_host_route = destination.prefix() == host_prefix_length(&destination);
    route.unicast
        && is_host_route
        && route.gateway.is_none()
        && route.oif.is_some()
        && own_pod_cidrs
            .iter()
            .any(|cidr| cidr.contains(destination.network()))
}

/// `/32` for IPv4, `/128` for IPv6.
fn host_prefix_length(network: &IpNetwork) -> u8 {
    match network {
        IpNetwork::V4(_) => 32,
        IpNetwork::V6(_) => 128,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn own() -> Vec<IpNetwork> {
        vec![
            "10.244.1.0/24".parse().expect("net"),
            "fd00:10:244:1::/64".parse().expect("net"),
        ]
    }

    fn pod_route(destination: &str) -> RouteShape {
        RouteShape {
            destination: destination.parse().expect("net"),
            unicast: true,
            gateway: None,
            oif: Some(7),
        }
    }

    #[test]
    fn pod_host_routes_in_own_cidr_are_the_plugins() {
        assert!(is_cni_pod_route(&pod_route("10.244.1.7/32"), &own()));
        assert!(is_cni_pod_route(&pod_route("fd00:10:244:1::7/128"), &own()));
    }

    #[test]
    fn host_routes_outside_own_cidrs_stay_the_agents() {
        assert!(!is_cni_pod_route(&pod_route("10.244.2.7/32"), &own()));
        assert!(!is_cni_pod_route(
            &pod_route("fd00:10:244:2::7/128"),
            &own()
        ));
        assert!(
            !is_cni_pod_route(&pod_route("10.244.1.7/32"), &[]),
            "no own pod CIDR known: nothing is the plugin's"
        );
    }

    #[test]
    fn agent_shaped_routes_are_never_the_plugins() {
        // The own CIDR itself (the agent's blackhole, or any prefix route).
        let mut cidr = pod_route("10.244.1.0/24");
        assert!(!is_cni_pod_route(&cidr, &own()));
        cidr.unicast = false;
        assert!(!is_cni_pod_route(&cidr, &own()));
        // A host route with a gateway, a blackhole host route, one without a device.
        let mut via = pod_route("10.244.1.7/32");
        via.gateway = Some("198.18.0.2".parse().expect("ip"));
        assert!(!is_cni_pod_route(&via, &own()));
        let mut blackhole = pod_route("10.244.1.7/32");
        blackhole.unicast = false;
        blackhole.oif = None;
        assert!(!is_cni_pod_route(&blackhole, &own()));
        let mut no_device = pod_route("10.244.1.7/32");
        no_device.oif = None;
        assert!(!is_cni_pod_route(&no_device, &own()));
    }
}
