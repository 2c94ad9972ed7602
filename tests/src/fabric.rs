//! The lab's layer 2: the fabric namespace with one bridge per rack, and each namespace's veth
//! into its rack's bridge. Every link is created inside the lab's own namespaces; nothing
//! appears in the root namespace.

use std::net::Ipv4Addr;

use crate::cmd;
use crate::error::{LabError, Result};
use crate::lab::{Lab, LabNode, NODE_IFACE};
use crate::names;
use crate::plan::{self, FABRIC_V4_PREFIX, FABRIC_V6_PREFIX, ROUTER_HOST};

impl Lab {
    pub(crate) fn build_fabric(&self) -> Result<()> {
        let f = self.name.fabric_ns();
        cmd::ip(["netns", "add", &f])?;
        cmd::ip_in(&f, ["link", "set", "lo", "up"])?;
        for rack in 0..self.state.racks {
            let bridge = names::rack_bridge(rack);
            // No STP, so ports forward at once; no multicast snooping, so IPv6 neighbour
            // discovery works without a querier. The MAC is the plan's (a bridge left alone
            // takes its lowest port's, which changes as nodes join), so neighbours can hold it
            // permanently.
            cmd::ip_in(
                &f,
                [
                    "link",
                    "add",
                    "name",
                    &bridge,
                    "address",
                    &plan::fabric_mac(rack, ROUTER_HOST),
                    "type",
                    "bridge",
                    "stp_state",
                    "0",
                    "mcast_snooping",
                    "0",
                ],
            )?;
            cmd::ip_in(
                &f,
                [
                    "addr",
                    "add",
                    &format!("{}/{FABRIC_V4_PREFIX}", plan::rack_router_v4(rack)),
                    "dev",
                    &bridge,
                ],
            )?;
            if self.state.ipv6 {
                cmd::ip_in(
                    &f,
                    [
                        "addr",
                        "add",
                        &format!("{}/{FABRIC_V6_PREFIX}", plan::rack_router_v6(rack)),
                        "dev",
                        &bridge,
                        "nodad",
                    ],
                )?;
            }
            cmd::ip_in(&f, ["link", "set", &bridge, "up"])?;
        }
        enable_forwarding(&f)
    }

    /// Creates a namespace `ns` attached to rack `rack`'s bridge through a veth: `port` on the
    /// bridge, `eth0` inside `ns` with the MAC of fabric host 198.18.`rack`.`host`
    /// ([`plan::fabric_mac`]).
    pub(crate) fn attach_to_fabric(
        &self,
        ns: &str,
        port: &str,
        rack: u8,
        host: u8,
        addrs: &[String],
    ) -> Result<()> {
        let f = self.name.fabric_ns();
        cmd::ip(["netns", "add", ns])?;
        cmd::ip_in(ns, ["link", "set", "lo", "up"])?;
        // Both ends are created inside lab namespaces: nothing ever appears in the root namespace.
        cmd::ip_in(
            &f,
            [
                "link",
                "add",
                "name",
                port,
                "type",
                "veth",
                "peer",
                "name",
                NODE_IFACE,
                "address",
                &plan::fabric_mac(rack, host),
                "netns",
                ns,
            ],
        )?;
        cmd::ip_in(
            &f,
            [
                "link",
                "set",
                port,
                "master",
                &names::rack_bridge(rack),
                "up",
            ],
        )?;
        for a in addrs {
            let mut args = vec!["addr", "add", a.as_str(), "dev", NODE_IFACE];
            if a.contains(':') {
                // Usable at once: DAD would hold the address tentative for a second or more.
                args.push("nodad");
            }
            cmd::ip_in(ns, args)?;
        }
        cmd::ip_in(ns, ["link", "set", NODE_IFACE, "up"]).map(drop)
    }

    /// In a lab of several racks: routes in `ns` (on rack `rack`) to every other rack's
    /// subnets through the fabric namespace's address on `rack` (IPv6 too if `ipv6`).
    pub(crate) fn route_to_other_racks(&self, ns: &str, rack: u8, ipv6: bool) -> Result<()> {
        for other in (0..self.state.racks).filter(|r| *r != rack) {
            let mut routes = vec![(
                "-4",
                plan::rack_v4(other).to_string(),
                plan::rack_router_v4(rack).to_string(),
            )];
            if ipv6 {
                routes.push((
                    "-6",
                    plan::rack_v6(other).to_string(),
                    plan::rack_router_v6(rack).to_string(),
                ));
            }
            for (fam, dst, via) in routes {
                cmd::ip_in(ns, [fam, "route", "add", &dst, "via", &via])?;
            }
        }
        Ok(())
    }

    /// Creates host `name` (1-13 characters `[a-z0-9-]`) on the fabric: namespace
    /// `<lab>-host-<name>` with `eth0` (port `h-<name>`) holding `addrs` (CIDR notation),
    /// forwarding on; a target for [`Lab::exec`] and [`Lab::spawn`] by its name. Its rack is
    /// the one whose subnet holds its IPv4 address (198.18.`rack`.x), and it routes to the other
    /// racks like a node. For what a test needs besides the lab's one router (a second router,
    /// an outside host); `down` removes it, and its processes, with the lab.
    pub fn add_fabric_host(&self, name: &str, addrs: &[String]) -> Result<String> {
        names::check_pod_name(name)?;
        // Its MAC is the plan's for its fabric IPv4 address, like a node's.
        let [_, _, rack, host] = addrs
            .iter()
            .filter_map(|a| a.split('/').next()?.parse::<Ipv4Addr>().ok())
            .find(|a| (0..self.state.racks).any(|r| plan::rack_v4(r).contains(*a)))
            .map(|a| a.octets())
            .ok_or_else(|| {
                LabError::Invalid(format!(
                    "fabric host {name} needs an IPv4 address on a rack's subnet: {addrs:?}"
                ))
            })?;
        let ns = self.name.host_ns(name);
        let made = self
            .attach_to_fabric(&ns, &names::fabric_host_port(name), rack, host, addrs)
            .and_then(|()| enable_forwarding(&ns))
            .and_then(|()| {
                let ipv6 = addrs.iter().any(|a| a.contains(':'));
                self.route_to_other_racks(&ns, rack, ipv6)
            });
        if let Err(e) = made {
            let _ = cmd::ip(["netns", "del", &ns]);
            return Err(e);
        }
        Ok(ns)
    }

    /// Links fabric hosts `a` and `b` ([`Lab::add_fabric_host`]) with a veth of their own,
    /// point to point: `l-<b>` in `a` holds `a_addr` with `b_addr` as its peer, `l-<a>` in
    /// `b` the other way round (no subnet of its own: each end uses its host's fabric
    /// address). How two racks' routers are cabled to each other.
    pub fn link_fabric_hosts(
        &self,
        (a, a_addr): (&str, Ipv4Addr),
        (b, b_addr): (&str, Ipv4Addr),
    ) -> Result<()> {
        let (a_ns, b_ns) = (self.netns_of(a)?, self.netns_of(b)?);
        let (a_dev, b_dev) = (names::host_link(b), names::host_link(a));
        cmd::ip_in(
            &a_ns,
            [
                "link", "add", "name", &a_dev, "type", "veth", "peer", "name", &b_dev, "netns",
                &b_ns,
            ],
        )?;
        for (ns, dev, local, peer) in [
            (&a_ns, &a_dev, a_addr, b_addr),
            (&b_ns, &b_dev, b_addr, a_addr),
        ] {
            cmd::ip_in(
                ns,
                [
                    "addr",
                    "add",
                    &local.to_string(),
                    "peer",
                    &format!("{peer}/32"),
                    "dev",
                    dev,
                ],
            )?;
            cmd::ip_in(ns, ["link", "set", dev, "up"])?;
        }
        Ok(())
    }

    pub(crate) fn build_node(&self, node: &LabNode) -> Result<()> {
        let mut addrs = vec![format!("{}/{FABRIC_V4_PREFIX}", node.ipv4)];
        if let Some(v6) = node.ipv6 {
            addrs.push(format!("{v6}/{FABRIC_V6_PREFIX}"));
        }
        self.attach_to_fabric(
            &node.netns,
            &names::fabric_port(node.index),
            node.rack,
            node.index,
            &addrs,
        )?;
        self.route_to_other_racks(&node.netns, node.rack, node.ipv6.is_some())?;
        enable_forwarding(&node.netns)
    }
}

/// Turns on IPv4 and IPv6 forwarding in namespace `ns`.
fn enable_forwarding(ns: &str) -> Result<()> {
    cmd::run_in(
        ns,
        "sysctl",
        [
            "-q",
            "-w",
            "net.ipv4.ip_forward=1",
            "net.ipv6.conf.all.forwarding=1",
        ],
    )
    .map(drop)
}
