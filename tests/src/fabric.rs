//! The lab's layer 2: the fabric namespace with its bridge, and each namespace's veth into it.
//! Every link is created inside the lab's own namespaces; nothing appears in the root namespace.

use crate::cmd;
use crate::error::Result;
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
