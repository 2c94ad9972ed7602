//! The pure difference between desired and actual kernel routes, one destination at a time.
//!
//! Inputs, per destination: the desired target (next hop already resolved), podroute's route
//! at the install metric if the kernel holds one, and whether a route of *another* protocol
//! holds the destination in the same table. Output: a [`Decision`] — what to write, if
//! anything. Applying it and deciding again yields no write: programming is idempotent.
//! The programmer runs this on every changed destination, and on all of them in its periodic
//! full pass; podroute routes at other metrics are always stale ([`off_metric_write`]).

use super::kernel::WriteKind;

/// What to do for one destination.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Decision<T> {
    /// The write, if any.
    pub write: Option<Write<T>>,
    /// A route of another protocol holds a desired destination: podroute writes nothing for
    /// it, because a replace would overwrite the other route.
    pub collision: bool,
    /// podroute's route is no longer desired (or collides) but kept because the view is not
    /// complete yet (start-up adoption).
    pub kept_stale: bool,
}

/// One write, over any representation `T` of a kernel target.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Write<T> {
    /// New route: no route of podroute holds the destination at the install metric. Created
    /// exclusively, so a route another program added in the meantime is never overwritten.
    Create(T),
    /// podroute's route points elsewhere (another gateway, or another set of multipath next
    /// hops): replaced in place (no window without a route).
    Replace(T),
    /// podroute's route at the install metric goes.
    Delete,
}

/// Decides one destination.
///
/// - A desired destination also held by a foreign-protocol route is a collision: podroute
///   writes nothing for it, and its own route there (if any) is stale.
/// - A desired route already present with the same target is left alone (this is how
///   existing routes are adopted at start without a delete/re-add flap).
/// - podroute's route for a destination no longer desired is deleted only if `remove_stale`.
pub fn plan_destination<T: PartialEq>(
    desired: Option<T>,
    ours: Option<T>,
    foreign: bool,
    remove_stale: bool,
) -> Decision<T> {
    let collision = desired.is_some() && foreign;
    let mut decision = Decision {
        write: None,
        collision,
        kept_stale: false,
    };
    match (desired, ours) {
        (Some(target), ours) if !foreign => {
            decision.write = match ours {
                Some(current) if current == target => None,
                Some(_) => Some(Write::Replace(target)),
                None => Some(Write::Create(target)),
            };
        }
        (_, Some(_)) if remove_stale => decision.write = Some(Write::Delete),
        (_, Some(_)) => decision.kept_stale = true,
        (_, None) => {}
    }
    decision
}

/// A podroute route at another metric than the install metric: a leftover duplicate or a
/// stale route, deleted once `remove_stale`.
pub(crate) fn off_metric_write(priority: u32, remove_stale: bool) -> Option<WriteKind> {
    remove_stale.then_some(WriteKind::Delete { priority })
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::routes::KernelTarget;

    fn via(gw: &str, oif: u32) -> KernelTarget {
        KernelTarget::Gateway {
            gateway: gw.parse().expect("ip"),
            oif,
        }
    }

    fn multipath(hops: &[(&str, u32)]) -> KernelTarget {
        KernelTarget::over(
            hops.iter()
                .map(|(gw, oif)| crate::routes::Gateway {
                    gateway: gw.parse().expect("ip"),
                    oif: *oif,
                })
                .collect(),
        )
    }

    fn write(
        desired: Option<KernelTarget>,
        ours: Option<KernelTarget>,
        foreign: bool,
        remove_stale: bool,
    ) -> Option<Write<KernelTarget>> {
        plan_destination(desired, ours, foreign, remove_stale).write
    }

    #[test]
    fn missing_routes_are_created_present_ones_adopted() {
        let t = via("198.18.0.2", 2);
        assert_eq!(
            write(Some(t.clone()), None, false, false),
            Some(Write::Create(t.clone()))
        );
        assert_eq!(
            write(Some(KernelTarget::Blackhole), None, false, true),
            Some(Write::Create(KernelTarget::Blackhole))
        );
        assert_eq!(write(Some(t.clone()), Some(t), false, false), None);
    }

    #[test]
    fn deciding_again_after_the_write_writes_nothing() {
        let t = via("fd00:198:18::2", 2);
        let Some(Write::Create(written)) = write(Some(t.clone()), None, false, true) else {
            panic!("expected a create");
        };
        assert_eq!(write(Some(t), Some(written), false, true), None);
    }

    #[test]
    fn changed_next_hop_is_replaced_not_deleted() {
        let new = via("198.18.0.22", 2);
        assert_eq!(
            write(Some(new.clone()), Some(via("198.18.0.2", 2)), false, true),
            Some(Write::Replace(new)),
            "replace changes it in place, no window without a route"
        );
    }

    #[test]
    fn a_multipath_route_is_adopted_as_it_is_and_replaced_when_its_set_changes() {
        let both = multipath(&[("198.18.0.252", 2), ("198.18.0.251", 2)]);
        let read_back = multipath(&[("198.18.0.251", 2), ("198.18.0.252", 2)]);
        assert_eq!(
            write(Some(both.clone()), Some(read_back), false, true),
            None,
            "the kernel's order of next hops is not a difference"
        );
        // One router gone: the remaining next hop replaces the route in place.
        let one = via("198.18.0.251", 2);
        assert_eq!(
            write(Some(one.clone()), Some(both.clone()), false, true),
            Some(Write::Replace(one.clone()))
        );
        // Back: multipath again, in place.
        assert_eq!(
            write(Some(both.clone()), Some(one), false, true),
            Some(Write::Replace(both))
        );
    }

    #[test]
    fn stale_routes_wait_for_a_complete_view() {
        let old = via("198.18.0.9", 2);
        let early = plan_destination(None, Some(old.clone()), false, false);
        assert_eq!(early.write, None);
        assert!(early.kept_stale);
        assert_eq!(write(None, Some(old), false, true), Some(Write::Delete));
        assert_eq!(write(None::<KernelTarget>, None, false, true), None);
    }

    #[test]
    fn foreign_route_to_a_desired_destination_is_a_collision_and_untouched() {
        let t = via("198.18.0.2", 2);
        let decision = plan_destination(Some(t.clone()), None, true, true);
        assert!(decision.collision);
        assert_eq!(decision.write, None);
        // podroute's own route there is stale: it goes once stale removal is allowed.
        let with_ours = plan_destination(Some(t.clone()), Some(t.clone()), true, true);
        assert!(with_ours.collision);
        assert_eq!(with_ours.write, Some(Write::Delete));
        let early = plan_destination(Some(t.clone()), Some(t), true, false);
        assert!(early.kept_stale && early.write.is_none());
        // A foreign route to a destination podroute does not want is none of its business.
        assert!(!plan_destination(None::<KernelTarget>, None, true, true).collision);
    }

    #[test]
    fn podroute_routes_at_other_metrics_go_once_stale_removal_is_allowed() {
        assert_eq!(off_metric_write(100, false), None);
        assert_eq!(
            off_metric_write(100, true),
            Some(WriteKind::Delete { priority: 100 })
        );
    }
}
