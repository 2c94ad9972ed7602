//! Tearing a lab down from what the system shows, not from what `up` remembered, so it works
//! after `up` crashed or was killed half way, and a second time (idempotent).
//!
//! Order matters: processes first (a process keeps its namespace alive after `ip netns del`,
//! and would then be invisible to `ip netns pids`), then namespaces, then the lab directory.

use std::fs;

use crate::cgroups;
use crate::cmd;
use crate::error::{Result, file_err};
use crate::names::LabName;
use crate::process::{self, TERM_GRACE};

/// How long a cgroup whose processes have exited may stay busy.
const CGROUP_PATIENCE: std::time::Duration = std::time::Duration::from_secs(5);

/// What `down` removed.
#[derive(Debug, Default, Clone, PartialEq, Eq)]
pub struct DownReport {
    /// Namespaces deleted.
    pub namespaces: Vec<String>,
    /// Processes stopped.
    pub processes: Vec<i32>,
    /// Whether the lab directory existed and was removed.
    pub removed_dir: bool,
    /// Cgroup directories of a cluster-mode lab removed.
    pub cgroups: usize,
}

impl DownReport {
    /// Whether there was nothing to remove.
    pub fn was_empty(&self) -> bool {
        self.namespaces.is_empty()
            && self.processes.is_empty()
            && !self.removed_dir
            && self.cgroups == 0
    }
}

/// The names of every network namespace on the host (`ip netns list`).
pub fn list_namespaces() -> Result<Vec<String>> {
    Ok(cmd::ip(["netns", "list"])?
        .lines()
        .filter_map(|l| l.split_whitespace().next().map(str::to_owned))
        .collect())
}

/// The namespaces that belong to lab `name`.
pub fn lab_namespaces(name: &LabName) -> Result<Vec<String>> {
    Ok(list_namespaces()?
        .into_iter()
        .filter(|ns| name.owns_ns(ns))
        .collect())
}

/// Every live process of lab `name`: those in its namespaces and those naming its directory.
pub fn lab_processes(name: &LabName, namespaces: &[String]) -> Vec<i32> {
    let mut pids: Vec<i32> = namespaces
        .iter()
        .flat_map(|ns| process::pids_in_ns(ns))
        .collect();
    pids.extend(process::pids_referencing(&name.dir()));
    // A cluster-mode lab's containers run in pod namespaces the host does not list, from
    // images outside the lab directory: their cgroups find them.
    for cg in cgroups::lab_cgroups(name.as_str()) {
        pids.extend(cgroups::pids_below(&cg));
    }
    let me = i32::try_from(std::process::id()).unwrap_or(0);
    pids.retain(|p| *p != me && process::alive(*p));
    pids.sort_unstable();
    pids.dedup();
    pids
}

/// Removes every process, namespace and file of lab `name`. Idempotent.
pub fn down(name: &LabName) -> Result<DownReport> {
    let mut report = DownReport::default();
    let namespaces = lab_namespaces(name)?;
    // Two rounds: a process may have forked while the first round was stopping its parent.
    for _ in 0..2 {
        let pids = lab_processes(name, &namespaces);
        if pids.is_empty() {
            break;
        }
        // etcd last: kube-apiserver stops in about a second with etcd up, but waits out its
        // grace period when etcd has gone first.
        let (etcd, rest): (Vec<i32>, Vec<i32>) = pids
            .iter()
            .partition(|p| process::command_name(**p) == "etcd");
        process::terminate_all(&rest, TERM_GRACE);
        process::terminate_all(&etcd, TERM_GRACE);
        report.processes.extend(pids);
    }
    report.processes.sort_unstable();
    report.processes.dedup();

    // Pods before nodes before the fabric: each veth dies with the first of its two ends.
    let mut ordered = namespaces;
    ordered.sort_by_key(|ns| {
        if ns.ends_with("-fabric") {
            2
        } else if ns.contains("-pod-") {
            0
        } else {
            1
        }
    });
    for ns in ordered {
        match cmd::ip(["netns", "del", &ns]) {
            Ok(_) => report.namespaces.push(ns),
            // Gone already (a concurrent down): fine; anything else is reported.
            Err(e) if !list_namespaces()?.contains(&ns) => drop(e),
            Err(e) => return Err(e),
        }
    }

    // Cgroups once their processes are gone; the node mount namespaces (and every mount the
    // runtimes made in them) went with their last process.
    for cg in cgroups::lab_cgroups(name.as_str()) {
        report.cgroups += cgroups::remove_tree(&cg, CGROUP_PATIENCE)?;
    }

    let dir = name.dir();
    if dir.exists() {
        fs::remove_dir_all(&dir).map_err(file_err(&dir))?;
        report.removed_dir = true;
    }
    Ok(report)
}
