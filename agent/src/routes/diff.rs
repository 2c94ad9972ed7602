//! The pure difference between desired and actual kernel routes.
//!
//! Inputs: the desired routes (next hops already resolved), the kernel's routes of podroute's
//! protocol, and the destinations that routes of *other* protocols use in the same table.
//! Output: a [`RoutePlan`] — what to create, what to change, what to delete, what collides.
//! Running the plan and diffing again yields an empty plan: reconcile is idempotent.

use std::collections::{BTreeMap, BTreeSet};

use ipnetwork::IpNetwork;

use super::{KernelTarget, OwnedRoute, install_priority};

/// What one reconcile will write.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct RoutePlan {
    /// New routes: no route of podroute holds their destination at the install metric. They
    /// are created exclusively, so a route another program adds for the same destination
    /// between the snapshot and the write is never overwritten.
    pub create: Vec<(IpNetwork, KernelTarget)>,
    /// podroute routes whose target changes: replaced in place (no window without a route).
    pub replace: Vec<(IpNetwork, KernelTarget)>,
    /// podroute routes to delete (exact kernel routes, with their metric).
    pub delete: Vec<OwnedRoute>,
    /// Desired destinations held by a route of another protocol: left alone.
    pub collisions: Vec<IpNetwork>,
    /// podroute routes that are no longer desired but kept because the view is not complete
    /// yet (start-up adoption).
    pub kept_stale: Vec<IpNetwork>,
}

impl RoutePlan {
    /// True if the plan writes nothing to the kernel.
    pub fn is_noop(&self) -> bool {
        self.create.is_empty() && self.replace.is_empty() && self.delete.is_empty()
    }
}

/// Computes the plan.
///
/// - A desired route whose destination is used by a foreign-protocol route is a collision:
///   podroute writes nothing for it, because a replace would overwrite the foreign route.
/// - A desired route already present with the same target and metric is left alone
///   (this is how existing routes are adopted at start without a delete/re-add flap).
/// - podroute routes that are not desired are deleted only if `remove_stale`; duplicates of a
///   desired destination at another metric are deleted likewise.
pub fn plan_routes(
    desired: &BTreeMap<IpNetwork, KernelTarget>,
    owned: &[OwnedRoute],
    foreign: &BTreeSet<IpNetwork>,
    remove_stale: bool,
) -> RoutePlan {
    let mut plan = RoutePlan::default();
    for (destination, target) in desired {
        if foreign.contains(destination) {
            plan.collisions.push(*destination);
            continue;
        }
        let slot = owned
            .iter()
            .find(|r| r.destination == *destination && r.priority == install_priority(destination));
        match slot {
            Some(route) if route.target == *target => {}
            Some(_) => plan.replace.push((*destination, *target)),
            None => plan.create.push((*destination, *target)),
        }
    }
    for route in owned {
        let wanted = desired.get(&route.destination);
        // A desired destination is kept at its install metric (replaced if its target differs); any
        // other podroute route for it, or for a destination no longer wanted, is stale.
        let is_the_desired_slot = wanted.is_some()
            && route.priority == install_priority(&route.destination)
            && !foreign.contains(&route.destination);
        if is_the_desired_slot {
            continue;
        }
        if remove_stale {
            plan.delete.push(*route);
        } else {
            plan.kept_stale.push(route.destination);
        }
    }
    plan
}

#[cfg(test)]
mod tests {
    use super::*;

    fn net(s: &str) -> IpNetwork {
        s.parse().expect("net")
    }
    fn via(gw: &str, oif: u32) -> KernelTarget {
        KernelTarget::Gateway {
            gateway: gw.parse().expect("ip"),
            oif,
        }
    }
    fn owned(dest: &str, target: KernelTarget, priority: u32) -> OwnedRoute {
        OwnedRoute {
            destination: net(dest),
            target,
            priority,
        }
    }

    #[test]
    fn missing_routes_are_installed_present_ones_adopted() {
        let desired = BTreeMap::from([
            (net("10.244.2.0/24"), via("198.18.0.2", 2)),
            (net("10.244.3.0/24"), via("198.18.0.3", 2)),
            (net("10.244.1.0/24"), KernelTarget::Blackhole),
        ]);
        let present = [owned("10.244.2.0/24", via("198.18.0.2", 2), 0)];
        let plan = plan_routes(&desired, &present, &BTreeSet::new(), false);
        assert_eq!(
            plan.create,
            vec![
                (net("10.244.1.0/24"), KernelTarget::Blackhole),
                (net("10.244.3.0/24"), via("198.18.0.3", 2))
            ]
        );
        assert!(plan.replace.is_empty());
        assert!(plan.delete.is_empty());
    }

    #[test]
    fn second_run_writes_nothing() {
        let desired = BTreeMap::from([
            (net("10.244.2.0/24"), via("198.18.0.2", 2)),
            (net("fd00:10:244:2::/64"), via("fd00:198:18::2", 2)),
        ]);
        let present: Vec<_> = desired
            .iter()
            .map(|(d, t)| OwnedRoute {
                destination: *d,
                target: *t,
                priority: install_priority(d),
            })
            .collect();
        assert!(plan_routes(&desired, &present, &BTreeSet::new(), true).is_noop());
    }

    #[test]
    fn changed_next_hop_is_replaced_not_deleted() {
        let desired = BTreeMap::from([(net("10.244.2.0/24"), via("198.18.0.22", 2))]);
        let present = [owned("10.244.2.0/24", via("198.18.0.2", 2), 0)];
        let plan = plan_routes(&desired, &present, &BTreeSet::new(), true);
        assert_eq!(
            plan.replace,
            vec![(net("10.244.2.0/24"), via("198.18.0.22", 2))]
        );
        assert!(plan.create.is_empty());
        assert!(
            plan.delete.is_empty(),
            "replace changes it in place, no window without a route"
        );
    }

    #[test]
    fn stale_routes_wait_for_a_complete_view() {
        let present = [owned("10.244.9.0/24", via("198.18.0.9", 2), 0)];
        let early = plan_routes(&BTreeMap::new(), &present, &BTreeSet::new(), false);
        assert!(early.is_noop());
        assert_eq!(early.kept_stale, vec![net("10.244.9.0/24")]);
        let complete = plan_routes(&BTreeMap::new(), &present, &BTreeSet::new(), true);
        assert_eq!(complete.delete, present.to_vec());
    }

    #[test]
    fn foreign_route_to_same_destination_is_a_collision_and_untouched() {
        let desired = BTreeMap::from([(net("10.244.2.0/24"), via("198.18.0.2", 2))]);
        let foreign = BTreeSet::from([net("10.244.2.0/24")]);
        let plan = plan_routes(&desired, &[], &foreign, true);
        assert_eq!(plan.collisions, vec![net("10.244.2.0/24")]);
        assert!(plan.is_noop());
    }

    #[test]
    fn duplicate_podroute_route_at_other_metric_is_removed() {
        let desired = BTreeMap::from([(net("10.244.2.0/24"), via("198.18.0.2", 2))]);
        let present = [
            owned("10.244.2.0/24", via("198.18.0.2", 2), 0),
            owned("10.244.2.0/24", via("198.18.0.2", 2), 100),
        ];
        let plan = plan_routes(&desired, &present, &BTreeSet::new(), true);
        assert!(plan.replace.is_empty() && plan.create.is_empty());
        assert_eq!(plan.delete, vec![present[1]]);
    }

    #[test]
    fn a_podroute_route_only_at_another_metric_means_create() {
        // The install slot is free: the new route is created exclusively, the old one is stale.
        let desired = BTreeMap::from([(net("10.244.2.0/24"), via("198.18.0.2", 2))]);
        let present = [owned("10.244.2.0/24", via("198.18.0.2", 2), 100)];
        let plan = plan_routes(&desired, &present, &BTreeSet::new(), true);
        assert_eq!(
            plan.create,
            vec![(net("10.244.2.0/24"), via("198.18.0.2", 2))]
        );
        assert!(plan.replace.is_empty());
        assert_eq!(plan.delete, vec![present[0]]);
    }
}
