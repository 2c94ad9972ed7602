//! Permanent neighbour entries for the fabric, so that a big lab does not depend on the host's
//! neighbour table.
//!
//! The kernel's ARP and ND tables are one table each for the whole host, shared by every
//! namespace, and their garbage collector refuses new dynamic entries past `gc_thresh3` (1,024
//! by default): a 50-node mesh on one segment needs about 2,500 and half its SYNs then go
//! unanswered. Entries written `nud permanent` are exempt from that count
//! (`net/core/neighbour.c`, `neigh_alloc`: `if (exempt_from_gc) goto do_alloc`, checked on
//! Linux 6.18 with 2,000 of them), so the lab fixes every fabric MAC by the address plan
//! ([`plan::fabric_mac`]) and writes, in each namespace on the fabric, a permanent entry for
//! every other fabric host, IPv4 and IPv6: one `ip -n NS -batch FILE` per namespace. No host
//! setting changes, and no ARP or ND is needed between fabric hosts at all.

use std::fmt::Write as _;
use std::fs;
use std::net::{IpAddr, Ipv6Addr};

use crate::cmd;
use crate::error::{Result, file_err};
use crate::lab::{Lab, LabNode, NODE_IFACE};
use crate::names;
use crate::plan::{self, APISERVER_HOST, APISERVER_V4, ROUTER_HOST};
use crate::process;

/// One namespace on the fabric: where its interface is, its MAC and its addresses.
#[derive(Debug, Clone)]
struct FabricHost {
    ns: String,
    /// The rack (L2 segment) this interface is on; hosts of other racks are not its neighbours.
    rack: u8,
    dev: String,
    mac: String,
    /// Its fabric addresses, IPv4 and (in an IPv6 lab) IPv6.
    addrs: Vec<IpAddr>,
    /// Its link-local address, which IPv6 gives every interface, IPv6 lab or not.
    link_local: Ipv6Addr,
}

impl FabricHost {
    fn node(node: &LabNode) -> Self {
        Self {
            ns: node.netns.clone(),
            rack: node.rack,
            dev: NODE_IFACE.to_owned(),
            mac: plan::fabric_mac(node.rack, node.index),
            addrs: node.ips(),
            link_local: plan::fabric_link_local(node.rack, node.index),
        }
    }

    fn has_v6(&self) -> bool {
        self.addrs.iter().any(IpAddr::is_ipv6)
    }
}

/// The `ip -batch` lines that make `to`'s addresses permanent neighbours in `on`'s namespace
/// (global IPv6 ones only where `on` has one too; the link-local address always: a namespace
/// with forwarding on learns its neighbours' from their router solicitations otherwise).
fn batch_lines(on: &FabricHost, to: &FabricHost, out: &mut String) {
    let link_local = IpAddr::V6(to.link_local);
    for addr in to.addrs.iter().chain(std::iter::once(&link_local)) {
        if addr.is_ipv6() && *addr != link_local && !on.has_v6() {
            continue;
        }
        let _ = writeln!(
            out,
            "neigh replace {addr} lladdr {} dev {} nud permanent",
            to.mac, on.dev
        );
    }
}

impl Lab {
    /// Every interface on the fabric: the fabric namespace's bridges (one per rack, holding
    /// the router's addresses there), the control plane's, and the nodes'.
    fn fabric_hosts(&self) -> Vec<FabricHost> {
        let mut hosts: Vec<FabricHost> = (0..self.state.racks)
            .map(|rack| {
                let mut addrs = vec![IpAddr::V4(plan::rack_router_v4(rack))];
                if self.state.ipv6 {
                    addrs.push(IpAddr::V6(plan::rack_router_v6(rack)));
                }
                FabricHost {
                    ns: self.name.fabric_ns(),
                    rack,
                    dev: names::rack_bridge(rack),
                    mac: plan::fabric_mac(rack, ROUTER_HOST),
                    addrs,
                    link_local: plan::fabric_link_local(rack, ROUTER_HOST),
                }
            })
            .collect();
        if self.state.control_plane {
            hosts.push(FabricHost {
                ns: self.name.cp_ns(),
                rack: 0,
                dev: NODE_IFACE.to_owned(),
                mac: plan::fabric_mac(0, APISERVER_HOST),
                addrs: vec![IpAddr::V4(APISERVER_V4)],
                link_local: plan::fabric_link_local(0, APISERVER_HOST),
            });
        }
        hosts.extend(self.state.nodes.iter().map(FabricHost::node));
        hosts
    }

    /// Writes `lines` into namespace `ns` with one `ip -batch`.
    fn apply_neighbour_batch(&self, ns: &str, lines: &str) -> Result<()> {
        if lines.is_empty() {
            return Ok(());
        }
        let dir = self.dir.join("neighbours");
        process::ensure_dir(&dir)?;
        let path = dir.join(format!("{ns}.batch"));
        fs::write(&path, lines).map_err(file_err(&path))?;
        cmd::ip_in(ns, ["-batch".as_ref(), path.as_os_str()]).map(drop)
    }

    /// Writes every fabric host as a permanent neighbour of every other one on its rack
    /// (called once the namespaces exist, before anything talks over the fabric).
    pub(crate) fn write_fabric_neighbours(&self) -> Result<()> {
        let hosts = self.fabric_hosts();
        let namespaces: std::collections::BTreeSet<&str> =
            hosts.iter().map(|h| h.ns.as_str()).collect();
        for ns in namespaces {
            let mut lines = String::new();
            for on in hosts.iter().filter(|h| h.ns == ns) {
                for to in hosts.iter().filter(|h| h.ns != ns && h.rack == on.rack) {
                    batch_lines(on, to, &mut lines);
                }
            }
            self.apply_neighbour_batch(ns, &lines)?;
        }
        Ok(())
    }

    /// A node added to a running lab: every other fabric host as its permanent neighbours, and
    /// it as theirs.
    pub(crate) fn add_fabric_neighbour(&self, node: &LabNode) -> Result<()> {
        let new = FabricHost::node(node);
        let hosts = self.fabric_hosts();
        let mut mine = String::new();
        for other in hosts
            .iter()
            .filter(|h| h.ns != new.ns && h.rack == new.rack)
        {
            batch_lines(&new, other, &mut mine);
            let mut theirs = String::new();
            batch_lines(other, &new, &mut theirs);
            self.apply_neighbour_batch(&other.ns, &theirs)?;
        }
        self.apply_neighbour_batch(&new.ns, &mine)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(ns: &str, mac_host: u8, addrs: &[&str]) -> FabricHost {
        FabricHost {
            ns: ns.into(),
            rack: 0,
            dev: NODE_IFACE.to_owned(),
            mac: plan::fabric_mac(0, mac_host),
            addrs: addrs.iter().map(|a| a.parse().expect("address")).collect(),
            link_local: plan::fabric_link_local(0, mac_host),
        }
    }

    #[test]
    fn a_batch_names_the_other_hosts_mac_on_our_interface() {
        let on = host("n1", 1, &["198.18.0.1", "fd00:198:18::1"]);
        let to = host("n2", 2, &["198.18.0.2", "fd00:198:18::2"]);
        let mut out = String::new();
        batch_lines(&on, &to, &mut out);
        assert_eq!(
            out,
            "neigh replace 198.18.0.2 lladdr 02:00:c6:12:00:02 dev eth0 nud permanent\n\
             neigh replace fd00:198:18::2 lladdr 02:00:c6:12:00:02 dev eth0 nud permanent\n\
             neigh replace fe80::c6ff:fe12:2 lladdr 02:00:c6:12:00:02 dev eth0 nud permanent\n"
        );
    }

    #[test]
    fn an_ipv4_only_host_gets_no_ipv6_entries() {
        let cp = host("cp", APISERVER_HOST, &["198.18.0.250"]);
        let node = host("n2", 2, &["198.18.0.2", "fd00:198:18::2"]);
        let mut out = String::new();
        batch_lines(&cp, &node, &mut out);
        assert_eq!(out.lines().count(), 2, "{out}");
        assert!(out.contains("198.18.0.2 "), "{out}");
        assert!(out.contains("fe80::c6ff:fe12:2 "), "{out}");
    }
}
