//! Which peers finished their initial announcement: End-of-RIB (RFC 4724 §2) for every
//! address family the session negotiated.
//!
//! On a dual-stack session one End-of-RIB is not enough: routes of the other family may still
//! be on the way, and dropping stale routes at that point would withdraw them for a while.

use std::collections::BTreeMap;
use std::net::IpAddr;

/// The unicast families of one session, and the End-of-RIBs received for them.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
struct PeerSync {
    /// Families the session negotiated (from the latest Established session).
    ipv4: bool,
    ipv6: bool,
    /// End-of-RIB received since the agent started.
    ipv4_done: bool,
    ipv6_done: bool,
}

/// End-of-RIB bookkeeping per peer.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SyncTracker {
    peers: BTreeMap<IpAddr, PeerSync>,
}

impl SyncTracker {
    /// A session to `peer` is Established with these unicast families negotiated.
    pub fn established(&mut self, peer: IpAddr, ipv4: bool, ipv6: bool) {
        let entry = self.peers.entry(peer).or_default();
        entry.ipv4 = ipv4;
        entry.ipv6 = ipv6;
    }

    /// End-of-RIB for IPv4 (`false`) or IPv6 (`true`) from `peer`.
    pub fn end_of_rib(&mut self, peer: IpAddr, ipv6: bool) {
        let entry = self.peers.entry(peer).or_default();
        if ipv6 {
            entry.ipv6_done = true;
        } else {
            entry.ipv4_done = true;
        }
    }

    /// The peer is no longer configured.
    pub fn remove(&mut self, peer: IpAddr) {
        self.peers.remove(&peer);
    }

    /// `peer` has been Established and sent End-of-RIB for every family it negotiated.
    pub fn synced(&self, peer: IpAddr) -> bool {
        self.peers.get(&peer).is_some_and(|p| {
            (p.ipv4 || p.ipv6) && (!p.ipv4 || p.ipv4_done) && (!p.ipv6 || p.ipv6_done)
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn peer() -> IpAddr {
        "198.18.0.2".parse().expect("ip")
    }

    #[test]
    fn dual_stack_peer_is_synced_only_after_both_end_of_ribs() {
        let mut sync = SyncTracker::default();
        assert!(!sync.synced(peer()));
        sync.established(peer(), true, true);
        assert!(!sync.synced(peer()));
        sync.end_of_rib(peer(), false);
        assert!(!sync.synced(peer()), "IPv6 routes may still come");
        sync.end_of_rib(peer(), true);
        assert!(sync.synced(peer()));
        sync.remove(peer());
        assert!(!sync.synced(peer()));
    }

    #[test]
    fn single_family_peer_is_synced_after_its_end_of_rib() {
        let mut sync = SyncTracker::default();
        sync.established(peer(), false, true);
        sync.end_of_rib(peer(), false);
        assert!(
            !sync.synced(peer()),
            "IPv4 End-of-RIB says nothing about IPv6"
        );
        sync.end_of_rib(peer(), true);
        assert!(sync.synced(peer()));
    }
}
