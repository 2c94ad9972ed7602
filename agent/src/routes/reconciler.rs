//! The route reconciler: desired routes in, kernel writes out, counters kept.
//!
//! Level-triggered: each call dumps the table, resolves next hops, diffs and applies. It is
//! called on every change and periodically; with nothing changed it writes nothing.

use std::collections::{BTreeMap, BTreeSet};
use std::net::IpAddr;

use ipnetwork::IpNetwork;
use rtnetlink::Handle;

use super::diff::{RoutePlan, plan_routes};
use super::kernel::{self, KernelError, Resolution, WriteMode};
use super::{KernelTarget, RouteIntent, install_priority};

/// Running totals since start (exported as metrics).
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RouteCounters {
    /// Reconcile runs.
    pub runs: u64,
    /// Routes created (new destinations).
    pub created: u64,
    /// Routes changed in place with replace.
    pub replaced: u64,
    /// Routes deleted.
    pub deleted: u64,
    /// Routes podroute had installed that someone else removed, and that were put back.
    pub restored: u64,
    /// Newly seen collisions with routes of other protocols.
    pub collisions: u64,
    /// Netlink write errors.
    pub errors: u64,
    /// Creates refused because another program's route for the destination appeared between
    /// the table dump and the write (left alone; a collision from the next run on).
    pub raced: u64,
}

/// What one reconcile did and found.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReconcileReport {
    /// The plan that was applied.
    pub plan: RoutePlan,
    /// Desired routes whose next hop the kernel cannot reach.
    pub unresolvable: Vec<(IpNetwork, IpAddr)>,
    /// Routes that had been installed by podroute and were missing.
    pub restored: Vec<IpNetwork>,
    /// Routes the kernel holds for podroute after this run (desired and in place).
    pub installed: BTreeMap<IpNetwork, KernelTarget>,
}

/// Programs podroute's routes into the main table of the current network namespace.
#[derive(Debug)]
pub struct RouteReconciler {
    handle: Handle,
    protocol: u8,
    counters: RouteCounters,
    /// What podroute last put (or found) in place, to notice deletions by others.
    installed: BTreeMap<IpNetwork, KernelTarget>,
    /// Collisions currently known (logged once when they appear).
    collisions: BTreeSet<IpNetwork>,
}

impl RouteReconciler {
    /// A reconciler writing routes with `protocol` through `handle`.
    pub fn new(handle: Handle, protocol: u8) -> Self {
        Self {
            handle,
            protocol,
            counters: RouteCounters::default(),
            installed: BTreeMap::new(),
            collisions: BTreeSet::new(),
        }
    }

    /// Counters since start.
    pub fn counters(&self) -> RouteCounters {
        self.counters
    }

    /// Brings the kernel to `desired`. Stale podroute routes are removed only if
    /// `remove_stale` (the view is complete); before that they are adopted as they are.
    #[tracing::instrument(name = "reconcile_routes", skip_all, fields(desired = desired.len()))]
    pub async fn reconcile(
        &mut self,
        desired: &BTreeMap<IpNetwork, RouteIntent>,
        remove_stale: bool,
    ) -> Result<ReconcileReport, KernelError> {
        self.counters.runs += 1;
        let own_pod_cidrs = own_pod_cidrs(desired);
        let table = kernel::snapshot(&self.handle, self.protocol, &own_pod_cidrs).await?;
        tracing::debug!(
            cni_pod_routes = table.cni_pod_routes.len(),
            "pod host routes of the CNI plugin left alone"
        );

        let mut report = ReconcileReport::default();
        let mut resolved = BTreeMap::new();
        for (destination, intent) in desired {
            match intent {
                RouteIntent::Blackhole => {
                    resolved.insert(*destination, KernelTarget::Blackhole);
                }
                RouteIntent::Via(next_hop) => {
                    match kernel::resolve(&self.handle, *next_hop, self.protocol).await {
                        Resolution::Reachable(target) => {
                            resolved.insert(*destination, target);
                        }
                        Resolution::Unresolvable => {
                            report.unresolvable.push((*destination, *next_hop));
                        }
                    }
                }
            }
        }
        // An unresolvable next hop leaves the existing route alone rather than deleting it:
        // the path may come back, and a stale route is better than a flap.
        for (destination, _) in &report.unresolvable {
            if let Some(route) = table.owned.iter().find(|r| {
                r.destination == *destination && r.priority == install_priority(destination)
            }) {
                resolved.insert(*destination, route.target);
            }
        }

        let plan = plan_routes(&resolved, &table.owned, &table.foreign, remove_stale);
        self.note_collisions(&plan.collisions);
        for (destination, target) in plan.create.iter().chain(&plan.replace) {
            let was_ours = self.installed.get(destination) == Some(target);
            let still_there = table.owned.iter().any(|r| r.destination == *destination);
            if was_ours && !still_there {
                report.restored.push(*destination);
            }
        }
        if !report.restored.is_empty() {
            tracing::warn!(routes = ?report.restored, "podroute routes were deleted by someone else; restoring");
        }

        let (created, create_errors) =
            kernel::write_all(&self.handle, &plan.create, self.protocol, WriteMode::Create).await;
        // A create refused with EEXIST lost a race with another program adding a route for the
        // same destination after the dump: that route stays, and is a collision next time.
        let (raced, mut errors): (Vec<_>, Vec<_>) =
            create_errors.into_iter().partition(KernelError::is_exists);
        for error in &raced {
            tracing::warn!(%error, "another route appeared for this destination; left alone");
        }
        let (replaced, replace_errors) = kernel::write_all(
            &self.handle,
            &plan.replace,
            self.protocol,
            WriteMode::Replace,
        )
        .await;
        let (deleted, delete_errors) =
            kernel::delete_all(&self.handle, &plan.delete, self.protocol).await;
        errors.extend(replace_errors);
        errors.extend(delete_errors);
        self.counters.created += created as u64;
        self.counters.raced += raced.len() as u64;
        self.counters.replaced += replaced as u64;
        self.counters.deleted += deleted as u64;
        self.counters.restored += report.restored.len() as u64;
        self.counters.errors += errors.len() as u64;
        for error in &errors {
            tracing::warn!(%error, "route write failed; retried on the next reconcile");
        }
        if !plan.is_noop() {
            tracing::info!(
                created,
                replaced,
                deleted,
                errors = errors.len(),
                "kernel routes updated"
            );
        }

        let failed: BTreeSet<IpNetwork> = errors
            .iter()
            .chain(&raced)
            .filter_map(|e| match e {
                KernelError::Write { destination, .. } => Some(*destination),
                _ => None,
            })
            .collect();
        self.installed = resolved
            .into_iter()
            .filter(|(d, _)| !plan.collisions.contains(d) && !failed.contains(d))
            .collect();
        report.installed = self.installed.clone();
        report.plan = plan;
        Ok(report)
    }

    fn note_collisions(&mut self, now: &[IpNetwork]) {
        let now: BTreeSet<IpNetwork> = now.iter().copied().collect();
        for destination in now.difference(&self.collisions) {
            self.counters.collisions += 1;
            tracing::warn!(
                %destination,
                "a route of another protocol holds this destination; podroute leaves it alone"
            );
        }
        self.collisions = now;
    }
}

/// The node's own pod CIDRs: the destinations desired as blackholes (see
/// [`RouteIntent::Blackhole`]). Pod host routes inside them are the CNI plugin's.
fn own_pod_cidrs(desired: &BTreeMap<IpNetwork, RouteIntent>) -> Vec<IpNetwork> {
    desired
        .iter()
        .filter(|(_, intent)| **intent == RouteIntent::Blackhole)
        .map(|(cidr, _)| *cidr)
        .collect()
}
