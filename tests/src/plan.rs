//! The lab's address plan (DESIGN.md, "Address plan for the lab"): which addresses and pod CIDRs
//! node `i` gets. Pure functions, so the plan is unit-tested without root.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};

use ipnetwork::{IpNetwork, Ipv4Network, Ipv6Network};

/// The fabric's IPv4 prefix length (198.18.0.0/24, RFC 2544 benchmarking space).
pub const FABRIC_V4_PREFIX: u8 = 24;
/// The fabric's IPv6 prefix length (fd00:198:18::/64).
pub const FABRIC_V6_PREFIX: u8 = 64;
/// The API server's fabric address.
pub const APISERVER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 250);
/// The API server's secure port.
pub const APISERVER_PORT: u16 = 6443;
/// The router's fabric address (IPv4).
pub const ROUTER_V4: Ipv4Addr = Ipv4Addr::new(198, 18, 0, 254);
/// The router's fabric address (IPv6).
pub const ROUTER_V6: Ipv6Addr = Ipv6Addr::new(0xfd00, 0x198, 0x18, 0, 0, 0, 0, 0xfe);
/// The AS every lab speaker uses (iBGP; RFC 6996 private range).
pub const LAB_AS: u32 = 64512;
/// The gateway a lab pod routes through: a link-local address on the node side of its veth
/// (the way Calico does it, so the pod's route never depends on the node's addresses).
pub const POD_GATEWAY_V4: Ipv4Addr = Ipv4Addr::new(169, 254, 1, 1);
/// The IPv6 gateway of a lab pod: a link-local address on the node side of its veth.
pub const POD_GATEWAY_V6: Ipv6Addr = Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0, 0, 1);
/// Largest node index: .250 and above are the control plane and the router.
pub const MAX_NODES: u8 = 249;
/// How many racks (fabric segments) a lab can have: rack 0 on 198.18.0.0/24, rack 1 on
/// 198.18.1.0/24 (DESIGN.md's second rack).
pub const MAX_RACKS: u8 = 2;

/// The rack (fabric segment) of node `index` (1-based) in a lab of `racks` racks: the nodes
/// take turns, node1 in rack 0, node2 in rack 1, node3 in rack 0, ...
pub fn node_rack(index: u8, racks: u8) -> u8 {
    index.saturating_sub(1) % racks.max(1)
}

/// Node `index`'s (1-based) fabric IPv4 address in rack `rack`: 198.18.`rack`.`index`.
pub fn node_v4(rack: u8, index: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, rack, index)
}

/// Node `index`'s fabric IPv6 address in rack `rack`: fd00:198:18:`rack`::`index` (hex digits,
/// as written).
pub fn node_v6(rack: u8, index: u8) -> Ipv6Addr {
    Ipv6Addr::new(
        0xfd00,
        0x198,
        0x18,
        u16::from(rack),
        0,
        0,
        0,
        u16::from(index),
    )
}

/// Rack `rack`'s IPv4 subnet: 198.18.`rack`.0/24.
pub fn rack_v4(rack: u8) -> Ipv4Network {
    Ipv4Network::new(Ipv4Addr::new(198, 18, rack, 0), FABRIC_V4_PREFIX)
        .unwrap_or_else(|_| unreachable!())
}

/// Rack `rack`'s IPv6 subnet: fd00:198:18:`rack`::/64.
pub fn rack_v6(rack: u8) -> Ipv6Network {
    Ipv6Network::new(node_v6(rack, 0), FABRIC_V6_PREFIX).unwrap_or_else(|_| unreachable!())
}

/// The fabric namespace's address on rack `rack` (its gateway to the other racks and to the
/// control plane): 198.18.`rack`.254; [`ROUTER_V4`] on rack 0.
pub fn rack_router_v4(rack: u8) -> Ipv4Addr {
    Ipv4Addr::new(198, 18, rack, ROUTER_HOST)
}

/// The fabric namespace's IPv6 address on rack `rack`: fd00:198:18:`rack`::fe.
pub fn rack_router_v6(rack: u8) -> Ipv6Addr {
    node_v6(rack, ROUTER_HOST)
}

/// The MAC address of the fabric interface whose IPv4 address is 198.18.`rack`.`host` (`host`
/// a node's index, [`APISERVER_HOST`] or [`ROUTER_HOST`]): `02:00:c6:12:<rack>:<host>`, locally
/// administered and unicast, `c6:12` being 198.18. Fixed by the plan so that the lab can write
/// every fabric neighbour as a permanent entry ([`crate::Lab`] does, see `neighbours.rs`).
pub fn fabric_mac(rack: u8, host: u8) -> String {
    format!("02:00:c6:12:{rack:02x}:{host:02x}")
}

/// The IPv6 link-local address the kernel gives the interface with
/// [`fabric_mac`]`(rack, host)` (modified EUI-64, RFC 4291 appendix A):
/// `fe80::c6ff:fe12:<rack><host>`. Every namespace has one, IPv6 lab or not, and sends router
/// solicitations and the like from it.
pub fn fabric_link_local(rack: u8, host: u8) -> Ipv6Addr {
    let low = u16::from(rack) << 8 | u16::from(host);
    Ipv6Addr::new(0xfe80, 0, 0, 0, 0, 0xc6ff, 0xfe12, low)
}

/// The last byte of the API server's fabric address, which names its MAC ([`fabric_mac`]).
pub const APISERVER_HOST: u8 = 250;
/// The last byte of the router's fabric address (and of the fabric bridge's MAC).
pub const ROUTER_HOST: u8 = 254;

/// Node `index`'s IPv4 pod CIDR: 10.244.`index`.0/24.
pub fn pod_cidr_v4(index: u8) -> Ipv4Network {
    // A /24 with a valid prefix length never fails to build.
    Ipv4Network::new(Ipv4Addr::new(10, 244, index, 0), 24).unwrap_or_else(|_| unreachable!())
}

/// Node `index`'s IPv6 pod CIDR: fd00:10:244:`index`::/64.
pub fn pod_cidr_v6(index: u8) -> Ipv6Network {
    let addr = Ipv6Addr::new(0xfd00, 0x10, 0x244, u16::from(index), 0, 0, 0, 0);
    Ipv6Network::new(addr, 64).unwrap_or_else(|_| unreachable!())
}

/// The `n`th (0-based) pod address handed out by [`crate::Lab::add_pod`] in `cidr`: host
/// number `n + 10`, leaving the low addresses to the CNI plugin's tests. `None` when the CIDR
/// is exhausted.
pub fn pod_address(cidr: IpNetwork, n: u32) -> Option<IpAddr> {
    let host = u128::from(n) + 10;
    match cidr {
        IpNetwork::V4(net) => {
            let size = 1u128 << (32 - u32::from(net.prefix()));
            if host >= size - 1 {
                return None;
            }
            let base = u32::from(net.network());
            u32::try_from(host)
                .ok()
                .map(|h| IpAddr::V4(Ipv4Addr::from(base + h)))
        }
        IpNetwork::V6(net) => {
            let bits = 128 - u32::from(net.prefix());
            if bits < 128 && host >= (1u128 << bits) {
                return None;
            }
            Some(IpAddr::V6(Ipv6Addr::from(u128::from(net.network()) + host)))
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn node_addresses_follow_the_design() {
        assert_eq!(node_v4(0, 1).to_string(), "198.18.0.1");
        assert_eq!(node_v6(0, 2).to_string(), "fd00:198:18::2");
        assert_eq!(node_v4(1, 2).to_string(), "198.18.1.2");
        assert_eq!(node_v6(1, 2).to_string(), "fd00:198:18:1::2");
        assert_eq!(rack_v4(1).to_string(), "198.18.1.0/24");
        assert_eq!(rack_v6(1).to_string(), "fd00:198:18:1::/64");
        assert_eq!(rack_router_v4(0), ROUTER_V4);
        assert_eq!(rack_router_v6(0), ROUTER_V6);
        assert_eq!(
            (1..=4).map(|i| node_rack(i, 2)).collect::<Vec<_>>(),
            [0, 1, 0, 1]
        );
        assert_eq!(node_rack(3, 1), 0);
        assert_eq!(ROUTER_V6.to_string(), "fd00:198:18::fe");
        assert_eq!(pod_cidr_v4(3).to_string(), "10.244.3.0/24");
        assert_eq!(pod_cidr_v6(3).to_string(), "fd00:10:244:3::/64");
    }

    #[test]
    fn fabric_macs_are_unicast_locally_administered_and_follow_the_address() {
        assert_eq!(fabric_mac(0, 1), "02:00:c6:12:00:01");
        assert_eq!(fabric_mac(0, ROUTER_HOST), "02:00:c6:12:00:fe");
        assert_eq!(fabric_mac(1, ROUTER_HOST), "02:00:c6:12:01:fe");
        assert_eq!(APISERVER_V4.octets()[3], APISERVER_HOST);
        assert_eq!(ROUTER_V4.octets()[3], ROUTER_HOST);
        assert_ne!(fabric_mac(0, 2), fabric_mac(0, 3));
        assert_eq!(fabric_link_local(0, 0xfa).to_string(), "fe80::c6ff:fe12:fa");
        assert_eq!(fabric_link_local(1, 2).to_string(), "fe80::c6ff:fe12:102");
    }

    #[test]
    fn pod_addresses_stay_inside_the_cidr() {
        let v4 = IpNetwork::V4(pod_cidr_v4(1));
        assert_eq!(
            pod_address(v4, 0).map(|a| a.to_string()),
            Some("10.244.1.10".into())
        );
        assert_eq!(
            pod_address(v4, 244).map(|a| a.to_string()),
            Some("10.244.1.254".into())
        );
        assert_eq!(
            pod_address(v4, 245),
            None,
            "the broadcast address is not a pod's"
        );
        let v6 = IpNetwork::V6(pod_cidr_v6(1));
        assert_eq!(
            pod_address(v6, 0).map(|a| a.to_string()),
            Some("fd00:10:244:1::a".into())
        );
    }
}
