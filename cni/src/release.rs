//! Releasing a pod's veth on DEL without waiting for the kernel to destroy it.
//!
//! Destroying a network device is slow in Linux whoever asks: the request returns only after
//! RCU grace periods and an `rcu_barrier()` (about 20 ms on a small VM, measured for
//! `ip link del` as for this plugin). A runtime deletes the pod's network namespace right after
//! DEL, and the kernel then destroys every device in it, our veth pair included, in a
//! background worker. So DEL does not destroy the pair: it *releases* it, which takes a few
//! quick netlink requests:
//!
//! - the host side goes down, which cuts the pod off at once and makes the kernel drop every
//!   route through it (IPv4 and IPv6), and gets the alias [`RELEASED_ALIAS`], which marks it
//!   as nobody's;
//! - when the pod's namespace is still there, the pod side goes down, loses its addresses and
//!   is renamed ([`released_pod_name`]): the pod is left without `CNI_IFNAME` and without the
//!   addresses, exactly as if the interface had been deleted, and the addresses can go to a new
//!   pod right away.
//!
//! A released pair lives on only while something keeps the pod's namespace alive. It is
//! destroyed by whoever meets it first: the namespace teardown (the usual case), an ADD for
//! the same container and interface (it needs the host-side name), GC, or the agent's periodic
//! sweep of released links.

use crate::naming::HOST_VETH_PREFIX;
use crate::netlink::{LinkState, Netlink, NetlinkError};
use crate::netns::{self, NetnsError};
use std::fs::File;
use std::path::Path;

/// Alias of a released host veth (`ip link show` prints it as `alias podroute:released`).
pub const RELEASED_ALIAS: &str = "podroute:released";

/// Prefix of a released pod-side interface's name.
pub const RELEASED_POD_PREFIX: &str = "px";

/// True when the link is a veth that DEL released.
pub fn is_released(link: &LinkState) -> bool {
    link.alias.as_deref() == Some(RELEASED_ALIAS)
}

/// The name a released pod side gets: [`RELEASED_POD_PREFIX`] + the host side's hash, unique per
/// attachment and never a name a runtime asks for.
pub fn released_pod_name(host_name: &str) -> String {
    let hash = host_name
        .strip_prefix(HOST_VETH_PREFIX)
        .unwrap_or(host_name);
    format!("{RELEASED_POD_PREFIX}{hash}")
}

/// Releases the host veth `link`: down and marked. `false` when it is gone meanwhile.
pub fn release_host_veth(nl: &Netlink, link: &LinkState) -> Result<bool, NetlinkError> {
    if is_released(link) {
        return Ok(true);
    }
    match nl.set_down_with_alias(link.index, RELEASED_ALIAS) {
        Ok(()) => Ok(true),
        Err(e) if e.is_no_device() => Ok(false),
        Err(e) => Err(e),
    }
}

/// Why the pod side could not be released.
#[derive(Debug, thiserror::Error)]
pub enum PodSideError {
    /// Working inside the pod's namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// Releases the pod side of `host` in the pod's namespace: down, addresses removed, renamed
/// away from `ifname`. Does nothing when `ifname` there is not `host`'s peer (each must name
/// the other as its peer), or is gone.
pub fn release_pod_side(
    pod_ns: &File,
    pod_path: &Path,
    ifname: &str,
    host: &LinkState,
) -> Result<(), PodSideError> {
    netns::run_in(pod_ns, pod_path, || -> Result<(), NetlinkError> {
        let nl = Netlink::connect()?;
        let Some(pod) = nl.link(ifname)? else {
            return Ok(());
        };
        if pod.peer_index != Some(host.index) || host.peer_index != Some(pod.index) {
            return Ok(());
        }
        // Down first: the kernel renames only a link that is down, and drops the routes
        // through it (and its IPv6 addresses) as it goes down.
        let steps = || -> Result<(), NetlinkError> {
            nl.set_down(pod.index)?;
            nl.flush_addresses(pod.index)?;
            nl.rename(pod.index, &released_pod_name(&host.name))
        };
        match steps() {
            Err(e) if e.is_no_device() => Ok(()),
            other => other,
        }
    })??;
    Ok(())
}

/// Destroys every released veth in the node namespace `nl` talks to; returns how many it
/// destroyed (a pair destroyed meanwhile by its namespace's teardown is not counted).
pub fn destroy_released(nl: &Netlink) -> Result<usize, NetlinkError> {
    let mut destroyed = 0;
    for link in nl.links()?.iter().filter(|l| is_released(l)) {
        if nl.delete_index(link.index, &link.name)? {
            destroyed += 1;
        }
    }
    Ok(destroyed)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::naming::host_veth_name;

    #[test]
    fn released_pod_name_fits_and_follows_the_host_name() {
        let host = host_veth_name("0123456789abcdef", "eth0");
        let pod = released_pod_name(&host);
        assert_eq!(pod.len(), host.len());
        assert!(pod.starts_with(RELEASED_POD_PREFIX));
        assert_eq!(pod[2..], host[2..]);
        assert!(crate::env::is_valid_ifname(&pod));
    }
}
