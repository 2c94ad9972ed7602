//! The lab's layer 2: the fabric namespace with its bridge, and each namespace's veth into it.
//! Every link is created inside the lab's own namespaces; nothing appears in the root namespace.

use crate::cmd;
use crate::error::{LabError, Result};
use crate::lab::{FABRIC_BRIDGE, Lab, LabNode, NODE_IFACE};
use crate::names;
use crate::plan::{self, FABRIC_V4_PREFIX, FABRIC_V6_PREFIX, ROUTER_HOST, ROUTER_V4, ROUTER_V6};

impl Lab {
    pub(crate) fn build_fabric(&self) -> Result<()> {
        let f = self.name.fabric_ns();
        cmd::ip(["netns", "add", &f])?;
        cmd::ip_in(&f, ["link", "set", "lo", "up"])?;
        // No STP, so ports forward at once; no multicast snooping, so IPv6 neighbour discovery
        // works without a querier. The MAC is the plan's (a bridge left alone takes its
        // lowest port's, which changes as nodes join), so neighbours can hold it permanently.
        cmd::ip_in(
            &f,
            [
                "link",
                "add",
                "name",
                FABRIC_BRIDGE,
                "address",
                &plan::fabric_mac(ROUTER_HOST),
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
                &format!("{ROUTER_V4}/{FABRIC_V4_PREFIX}"),
                "dev",
                FABRIC_BRIDGE,
            ],
        )?;
        if self.state.ipv6 {
            cmd::ip_in(
                &f,
                [
                    "addr",
                    "add",
                    &format!("{ROUTER_V6}/{FABRIC_V6_PREFIX}"),
                    "dev",
                    FABRIC_BRIDGE,
                    "nodad",
                ],
            )?;
        }
        cmd::ip_in(&f, ["link", "set", FABRIC_BRIDGE, "up"])?;
        enable_forwarding(&f)
    }

    /// Creates a namespace `ns` attached to the fabric through a veth: `port` on the bridge,
    /// `eth0` inside `ns` with the MAC of fabric host `host` ([`plan::fabric_mac`]).
    pub(crate) fn attach_to_fabric(
        &self,
        ns: &str,
        port: &str,
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
                &plan::fabric_mac(host),
                "netns",
                ns,
            ],
        )?;
        cmd::ip_in(&f, ["link", "set", port, "master", FABRIC_BRIDGE, "up"])?;
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

    /// Creates host `name` (1-13 characters `[a-z0-9-]`) on the fabric: namespace
    /// `<lab>-host-<name>` with `eth0` on the bridge (port `h-<name>`) holding `addrs` (CIDR
    /// notation), forwarding on; a target for [`Lab::exec`] and [`Lab::spawn`] by its name.
    /// For what a test needs besides the lab's one router (a second router, an outside
    /// host); `down` removes it, and its processes, with the lab.
    pub fn add_fabric_host(&self, name: &str, addrs: &[String]) -> Result<String> {
        names::check_pod_name(name)?;
        // Its MAC is the plan's for the last byte of its fabric IPv4 address, like a node's.
        let host = addrs
            .iter()
            .find_map(|a| a.split('/').next()?.parse::<std::net::Ipv4Addr>().ok())
            .map(|a| a.octets()[3])
            .ok_or_else(|| {
                LabError::Invalid(format!(
                    "fabric host {name} needs an IPv4 address: {addrs:?}"
                ))
            })?;
        let ns = self.name.host_ns(name);
        let made = self
            .attach_to_fabric(&ns, &names::fabric_host_port(name), host, addrs)
            .and_then(|()| enable_forwarding(&ns));
        if let Err(e) = made {
            let _ = cmd::ip(["netns", "del", &ns]);
            return Err(e);
        }
        Ok(ns)
    }

    pub(crate) fn build_node(&self, node: &LabNode) -> Result<()> {
        let mut addrs = vec![format!("{}/{FABRIC_V4_PREFIX}", node.ipv4)];
        if let Some(v6) = node.ipv6 {
            addrs.push(format!("{v6}/{FABRIC_V6_PREFIX}"));
        }
        self.attach_to_fabric(
            &node.netns,
            &names::fabric_port(node.index),
            node.index,
            &addrs,
        )?;
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
