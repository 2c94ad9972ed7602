//! Releasing a pod's veth on DEL without waiting for the kernel to destroy it.
//!
//! Destroying a network device is slow in Linux whoever asks: the request returns only after
//! RCU grace periods and an `rcu_barrier()` (about 20 ms on a small VM, measured for
//! `ip link del` as for this plugin). A runtime deletes the pod's network namespace right after
//! DEL, and the kernel then destroys every device in it, our veth pair included, in a
//! background worker that batches many namespaces per barrier. So DEL does not destroy the
//! pair: it *releases* it, which takes one netlink request:
//!
//! - the host side goes down, which cuts the pod off at once (both ends lose carrier) and
//!   makes the kernel drop every route through it (IPv4 and IPv6), so the pod's address can
//!   be handed to a new pod right away;
//! - the host side gets the alias [`RELEASED_ALIAS`], which marks it as nobody's.
//!
//! A released pair lives on only while something keeps the pod's namespace alive. It is
//! destroyed by whoever meets it first: the namespace teardown (the usual case), an ADD that
//! needs its name (same container and interface again, or a new container in the same
//! namespace), GC, or the agent's periodic sweep of released links.

use crate::netlink::{LinkState, Netlink, NetlinkError};
use crate::netns::{self, NetnsError};
use std::fs::File;
use std::path::Path;

/// Alias of a released host veth (`ip link show` prints it as `alias podroute:released`).
pub const RELEASED_ALIAS: &str = "podroute:released";

/// True when the link is a veth that DEL released.
pub fn is_released(link: &LinkState) -> bool {
    link.alias.as_deref() == Some(RELEASED_ALIAS)
}

/// Releases the host veth called `name`: down and marked. `false` when there is no such
/// link (the namespace teardown already destroyed it, or ADD never got that far).
pub fn release_host_veth(nl: &Netlink, name: &str) -> Result<bool, NetlinkError> {
    match nl.link(name)? {
        Some(link) if is_released(&link) => Ok(true),
        Some(link) => nl
            .set_down_with_alias(link.index, RELEASED_ALIAS)
            .map(|()| true),
        None => Ok(false),
    }
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

/// Why the pod's interface name could not be freed.
#[derive(Debug, thiserror::Error)]
pub enum FreeNameError {
    /// Looking inside the pod's namespace failed.
    #[error(transparent)]
    Netns(#[from] NetnsError),
    /// A netlink request failed.
    #[error(transparent)]
    Netlink(#[from] NetlinkError),
}

/// When `ifname` in the pod's namespace is the pod side of a released veth whose host side
/// is in the node namespace `nl` talks to, destroys that pair and returns `true`: the name
/// is free again. Any other interface of that name is left alone (`false`).
pub fn free_pod_ifname(
    nl: &Netlink,
    pod_ns: &File,
    pod_path: &Path,
    ifname: &str,
) -> Result<bool, FreeNameError> {
    let pod_link = netns::run_in(pod_ns, pod_path, || Netlink::connect()?.link(ifname))??;
    let Some(pod_link) = pod_link else {
        return Ok(false);
    };
    let Some(peer) = pod_link.peer_index else {
        return Ok(false);
    };
    // The peer index is only meaningful in the peer's namespace; checking that the node's
    // link with that index is released *and* points back at the pod's link rules out a
    // coincidence with a link of another namespace.
    match nl.link_by_index(peer)? {
        Some(host) if is_released(&host) && host.peer_index == Some(pod_link.index) => {
            // `false` here means the namespace teardown won the race: free either way.
            nl.delete_index(host.index, &host.name)?;
            Ok(true)
        }
        _ => Ok(false),
    }
}
