//! Route reflection (RFC 4456): which iBGP peer gets which learned route, and the
//! attributes a reflected route carries.
//!
//! A speaker with at least one client (a peer marked
//! [`super::PeerConfig::route_reflector_client`]) is a route reflector. Its best route to a
//! prefix, learned over iBGP from peer S, goes to iBGP peer T (T ≠ S) when S or T is a
//! client (§6: from a client to every peer; from a non-client to clients only). Routes
//! from eBGP peers and routes we originate are not reflected: originated routes go out
//! under export policy as before, and podroute never passes a router's routes on.
//!
//! The reflected copy keeps NEXT_HOP, AS_PATH and LOCAL_PREF; it gets ORIGINATOR_ID (the
//! router ID of the peer that sent it into our AS, unless set already) and our CLUSTER_ID
//! in front of its CLUSTER_LIST (§8). Received routes whose CLUSTER_LIST holds our
//! CLUSTER_ID are loops and dropped ([`looped`]); ORIGINATOR_ID equal to our own router ID
//! is checked by the session.

use std::net::Ipv4Addr;

use crate::message::PathAttributes;
use crate::rib::PeerInfo;

use super::peer::Peer;

/// The facts about a peer that reflection decides on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Side {
    /// The peer is in our AS.
    pub(crate) ibgp: bool,
    /// It is one of our route-reflector clients.
    pub(crate) client: bool,
    /// It takes reflected routes at all ([`super::PeerConfig::takes_reflected`]).
    pub(crate) takes_reflected: bool,
}

impl Side {
    pub(crate) fn of(peer: &Peer) -> Self {
        Self {
            // With any peer AS, what the session's OPEN said.
            ibgp: peer.primary.session.is_ibgp(),
            client: peer.config.route_reflector_client,
            takes_reflected: peer.config.takes_reflected,
        }
    }
}

/// True if a route learned from `source` is reflected to `target` (two different peers).
pub(crate) fn reflects(source: Side, target: Side) -> bool {
    source.ibgp && target.ibgp && target.takes_reflected && (source.client || target.client)
}

/// The attributes of a route from `source` as reflected with `cluster_id`.
pub(crate) fn reflected(
    attrs: &PathAttributes,
    source: &PeerInfo,
    cluster_id: Ipv4Addr,
) -> PathAttributes {
    let mut a = attrs.clone();
    a.originator_id = Some(a.originator_id.unwrap_or(source.router_id));
    a.cluster_list.insert(0, cluster_id);
    a
}

/// True if a received route went through this cluster already (RFC 4456 §8).
pub(crate) fn looped(attrs: &PathAttributes, cluster_id: Ipv4Addr) -> bool {
    attrs.cluster_list.contains(&cluster_id)
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::net::IpAddr;

    const CLIENT: Side = Side {
        ibgp: true,
        client: true,
        takes_reflected: true,
    };
    const NON_CLIENT: Side = Side {
        ibgp: true,
        client: false,
        takes_reflected: true,
    };
    const EXTERNAL: Side = Side {
        ibgp: false,
        client: false,
        takes_reflected: true,
    };
    /// An iBGP router (not a node): gets our own routes under export policy, nothing else.
    const ROUTER: Side = Side {
        ibgp: true,
        client: false,
        takes_reflected: false,
    };

    #[test]
    fn clients_reach_everyone_non_clients_reach_clients_and_ebgp_nothing() {
        assert!(reflects(CLIENT, CLIENT));
        assert!(reflects(CLIENT, NON_CLIENT));
        assert!(reflects(NON_CLIENT, CLIENT));
        assert!(
            !reflects(NON_CLIENT, NON_CLIENT),
            "plain iBGP: no re-advertising"
        );
        assert!(!reflects(EXTERNAL, CLIENT));
        assert!(!reflects(CLIENT, EXTERNAL));
        assert!(!reflects(CLIENT, ROUTER), "a router gets no node's routes");
    }

    #[test]
    fn reflection_sets_the_originator_once_and_prepends_the_cluster() {
        let source = PeerInfo {
            address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, 3)),
            router_id: Ipv4Addr::new(198, 18, 0, 3),
            ibgp: true,
        };
        let cluster = Ipv4Addr::new(244, 0, 0, 1);
        let once = reflected(&PathAttributes::default(), &source, cluster);
        assert_eq!(once.originator_id, Some(Ipv4Addr::new(198, 18, 0, 3)));
        assert_eq!(once.cluster_list, vec![cluster]);
        assert!(looped(&once, cluster));
        let other = Ipv4Addr::new(244, 0, 0, 2);
        assert!(!looped(&once, other));
        let via_second_source = PeerInfo {
            router_id: Ipv4Addr::new(198, 18, 0, 9),
            ..source
        };
        let twice = reflected(&once, &via_second_source, other);
        assert_eq!(
            twice.originator_id,
            Some(Ipv4Addr::new(198, 18, 0, 3)),
            "the first reflector's ORIGINATOR_ID stays"
        );
        assert_eq!(twice.cluster_list, vec![other, cluster]);
    }
}
