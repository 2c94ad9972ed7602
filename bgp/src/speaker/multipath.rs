//! Multipath (ECMP): which of a prefix's paths are as good as its best one, and the next
//! hops they give.
//!
//! The best path comes from the decision process (RFC 4271 §9.1.2.2). Another path joins it
//! when the steps before the final tie-breaks cannot tell them apart: the same LOCAL_PREF,
//! AS_PATH length, ORIGIN and MED, both learned over eBGP or both over iBGP, and (not known
//! here, so always equal) the same IGP cost to the next hop. Paths to one next hop count
//! once. Of more candidates than `max_paths`, those the tie-breaks (router ID, then peer
//! address) prefer are kept, the best path always. The AS_PATHs need not be the same, only
//! as long (FRR's `bestpath as-path multipath-relax`): two top-of-rack routers in their own
//! AS announcing one default route share it.

use std::net::{IpAddr, Ipv4Addr};

use crate::message::PathAttributes;
use crate::rib::DEFAULT_LOCAL_PREF;

use super::types::NextHops;

/// One path of a prefix as multipath sees it.
#[derive(Debug, Clone, Copy)]
pub(crate) struct PathView<'a> {
    /// Its attributes (the next hop filled in).
    pub(crate) attributes: &'a PathAttributes,
    /// Learned over iBGP.
    pub(crate) ibgp: bool,
    /// The BGP identifier it counts with (ORIGINATOR_ID if set).
    pub(crate) router_id: Ipv4Addr,
    /// The peer's address.
    pub(crate) peer_address: IpAddr,
}

/// True if `other` is as good as `best` up to the final tie-breaks.
fn equal_cost(best: &PathView<'_>, other: &PathView<'_>) -> bool {
    let (a, b) = (best.attributes, other.attributes);
    a.local_pref.unwrap_or(DEFAULT_LOCAL_PREF) == b.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
        && a.as_path.path_len() == b.as_path.path_len()
        && a.origin == b.origin
        && a.med.unwrap_or(0) == b.med.unwrap_or(0)
        && best.ibgp == other.ibgp
}

/// The next hops for a prefix whose paths are `paths`, the best one first: the best path's,
/// and with `max_paths` above 1 those of the equal-cost others (sorted).
pub(crate) fn next_hops(paths: &[PathView<'_>], max_paths: usize) -> NextHops {
    let Some(best) = paths.first() else {
        return NextHops::None;
    };
    let Some(best_hop) = best.attributes.next_hop.map(|n| n.addr()) else {
        return NextHops::None;
    };
    let mut others: Vec<&PathView<'_>> =
        paths[1..].iter().filter(|p| equal_cost(best, p)).collect();
    others.sort_by_key(|p| (u32::from(p.router_id), addr_key(p.peer_address)));
    let mut hops = vec![best_hop];
    for p in others {
        if hops.len() >= max_paths.max(1) {
            break;
        }
        if let Some(hop) = p.attributes.next_hop.map(|n| n.addr())
            && !hops.contains(&hop)
        {
            hops.push(hop);
        }
    }
    if hops.len() == 1 {
        return NextHops::One(best_hop);
    }
    hops.sort();
    NextHops::Many(hops.into())
}

fn addr_key(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::message::{AsPath, NextHop, Origin};

    fn attrs(hop: u8, path: &[u32]) -> PathAttributes {
        PathAttributes {
            next_hop: Some(NextHop::V4(Ipv4Addr::new(198, 18, 0, hop))),
            as_path: AsPath::sequence(path.to_vec()),
            ..PathAttributes::default()
        }
    }

    fn view(a: &PathAttributes, id: u8) -> PathView<'_> {
        PathView {
            attributes: a,
            ibgp: false,
            router_id: Ipv4Addr::new(10, 0, 0, id),
            peer_address: IpAddr::V4(Ipv4Addr::new(198, 18, 0, id)),
        }
    }

    fn hops(n: &NextHops) -> Vec<String> {
        n.as_slice().iter().map(ToString::to_string).collect()
    }

    #[test]
    fn two_routers_in_their_own_as_share_a_route_of_equal_length() {
        let a = attrs(253, &[65001]);
        let b = attrs(254, &[65002]);
        let paths = [view(&a, 1), view(&b, 2)];
        assert_eq!(
            hops(&next_hops(&paths, 2)),
            ["198.18.0.253", "198.18.0.254"]
        );
        assert_eq!(
            next_hops(&paths, 1),
            NextHops::One("198.18.0.253".parse().expect("ip"))
        );
    }

    #[test]
    fn any_difference_before_the_tie_breaks_keeps_the_best_path_alone() {
        let best = attrs(253, &[65001]);
        let longer = attrs(254, &[65002, 65003]);
        let mut lower_pref = attrs(254, &[65002]);
        lower_pref.local_pref = Some(50);
        let mut igp_origin = attrs(254, &[65002]);
        igp_origin.origin = Origin::Incomplete;
        let mut higher_med = attrs(254, &[65002]);
        higher_med.med = Some(10);
        for other in [&longer, &lower_pref, &igp_origin, &higher_med] {
            let paths = [view(&best, 1), view(other, 2)];
            assert_eq!(next_hops(&paths, 4).as_slice().len(), 1, "{other:?}");
        }
        let same = attrs(254, &[65002]);
        let ibgp = PathView {
            ibgp: true,
            ..view(&same, 2)
        };
        assert_eq!(next_hops(&[view(&best, 1), ibgp], 4).as_slice().len(), 1);
    }

    #[test]
    fn past_max_paths_the_tie_breaks_choose_and_one_next_hop_counts_once() {
        let best = attrs(250, &[65001]);
        let c = attrs(251, &[65002]);
        let d = attrs(252, &[65003]);
        let same_hop = attrs(250, &[65004]);
        // Router IDs 9, 3, 5 for c, d...: the lower identifier wins the last place.
        let paths = [view(&best, 7), view(&c, 9), view(&d, 3), view(&same_hop, 1)];
        assert_eq!(
            hops(&next_hops(&paths, 2)),
            ["198.18.0.250", "198.18.0.252"]
        );
        assert_eq!(
            hops(&next_hops(&paths, 8)),
            ["198.18.0.250", "198.18.0.251", "198.18.0.252"]
        );
        assert_eq!(next_hops(&[], 8), NextHops::None);
    }
}
