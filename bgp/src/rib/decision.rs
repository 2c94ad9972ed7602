//! The BGP decision process (RFC 4271 §9.1.2.2) as a pure function over candidates.

use std::net::{IpAddr, Ipv4Addr};

use crate::message::PathAttributes;

/// LOCAL_PREF assumed when a route has none (the common default; RFC 4271 leaves it to
/// local policy).
pub const DEFAULT_LOCAL_PREF: u32 = 100;

/// What the decision process needs to know about one candidate route.
#[derive(Debug, Clone, Copy)]
pub struct Candidate<'a> {
    /// The route's attributes.
    pub attributes: &'a PathAttributes,
    /// Learned over iBGP.
    pub ibgp: bool,
    /// The BGP identifier of the peer it came from.
    pub peer_router_id: Ipv4Addr,
    /// The peer's address.
    pub peer_address: IpAddr,
}

impl Candidate<'_> {
    fn local_pref(&self) -> u32 {
        self.attributes.local_pref.unwrap_or(DEFAULT_LOCAL_PREF)
    }

    /// RFC 4456 §9: ORIGINATOR_ID stands in for the router ID when present.
    fn router_id(&self) -> u32 {
        u32::from(self.attributes.originator_id.unwrap_or(self.peer_router_id))
    }
}

/// Index of the best candidate, or `None` for an empty slice.
///
/// Steps, each keeping only the routes that survive it (RFC 4271 §9.1.2.2):
/// highest LOCAL_PREF; shortest AS_PATH; lowest ORIGIN; lowest MED among routes from the
/// same neighbouring AS (missing MED = 0); eBGP over iBGP; (IGP cost to the next hop is
/// not known here and is skipped); lowest BGP identifier (ORIGINATOR_ID if present,
/// RFC 4456 §9); shortest CLUSTER_LIST (RFC 4456 §9); lowest peer address.
pub fn select_best(candidates: &[Candidate<'_>]) -> Option<usize> {
    let mut alive: Vec<usize> = (0..candidates.len()).collect();
    let keep_min = |alive: &mut Vec<usize>, key: &dyn Fn(&Candidate<'_>) -> u64| {
        let best = alive.iter().map(|&i| key(&candidates[i])).min();
        if let Some(best) = best {
            alive.retain(|&i| key(&candidates[i]) == best);
        }
    };
    keep_min(&mut alive, &|c| u64::from(u32::MAX - c.local_pref()));
    keep_min(&mut alive, &|c| c.attributes.as_path.path_len() as u64);
    keep_min(&mut alive, &|c| c.attributes.origin as u64);
    // MED: a route loses if another route from the same neighbouring AS has a lower MED.
    // Decided against the survivors so far, all at once (not pairwise, which would make
    // the outcome depend on order).
    let med = |c: &Candidate<'_>| c.attributes.med.unwrap_or(0);
    let neighbor = |c: &Candidate<'_>| c.attributes.as_path.first_as();
    let snapshot = alive.clone();
    alive.retain(|&i| {
        let ci = &candidates[i];
        !snapshot.iter().any(|&j| {
            let cj = &candidates[j];
            neighbor(cj) == neighbor(ci) && med(cj) < med(ci)
        })
    });
    keep_min(&mut alive, &|c| u64::from(c.ibgp));
    keep_min(&mut alive, &|c| u64::from(c.router_id()));
    keep_min(&mut alive, &|c| c.attributes.cluster_list.len() as u64);
    alive
        .iter()
        .copied()
        .min_by_key(|&i| addr_key(candidates[i].peer_address))
}

fn addr_key(a: IpAddr) -> (u8, u128) {
    match a {
        IpAddr::V4(a) => (4, u128::from(u32::from(a))),
        IpAddr::V6(a) => (6, u128::from(a)),
    }
}
