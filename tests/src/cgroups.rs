//! The cgroups of a cluster-mode lab: one `podroute-lab-<lab>-<node>` directory per node in
//! every cgroup v1 hierarchy of the host, the kubelet's `--cgroup-root`, under which it puts
//! every pod. The lab creates them before the kubelet starts (the kubelet refuses a root that
//! does not exist) and removes them at `down`, after the processes in them are gone.
//!
//! The host is cgroup v1 (hybrid: v1 controllers plus an empty unified tree), the layout the
//! pinned kubelet runs on with `failCgroupV1: false`. Nothing outside these directories is
//! written.

use std::fs;
use std::path::{Path, PathBuf};
use std::time::Duration;

use crate::error::{Result, file_err};

/// Where the cgroup hierarchies are mounted.
const CGROUP_ROOT: &str = "/sys/fs/cgroup";

/// The kubelet's cgroup root for `node` of lab `lab` (a path inside each hierarchy).
pub(crate) fn node_cgroup(lab: &str, node: &str) -> String {
    format!("/podroute-lab-{lab}-{node}")
}

/// The v1 hierarchies (every directory under /sys/fs/cgroup but the unified one), and with
/// `unified` the unified one too (runc adds its cgroups there as well on a hybrid host).
fn hierarchies(unified: bool) -> Vec<PathBuf> {
    let Ok(entries) = fs::read_dir(CGROUP_ROOT) else {
        return Vec::new();
    };
    let mut v: Vec<PathBuf> = entries
        .flatten()
        .filter(|e| e.file_type().is_ok_and(|t| t.is_dir()))
        .map(|e| e.path())
        .filter(|p| unified || p.file_name().is_some_and(|n| n != "unified"))
        .collect();
    v.sort();
    v
}

/// Creates `cgroup` in every hierarchy; in cpuset it copies the parent's cpus and mems (a
/// new cpuset cgroup has none, and nothing could run in it).
pub(crate) fn create(cgroup: &str) -> Result<()> {
    for h in hierarchies(false) {
        let dir = h.join(cgroup.trim_start_matches('/'));
        fs::create_dir_all(&dir).map_err(file_err(&dir))?;
        if h.ends_with("cpuset") {
            for f in ["cpuset.cpus", "cpuset.mems"] {
                let parent = h.join(f);
                let value = fs::read_to_string(&parent).map_err(file_err(&parent))?;
                let target = dir.join(f);
                fs::write(&target, value.trim()).map_err(file_err(&target))?;
            }
        }
    }
    Ok(())
}

/// Every lab cgroup directory of `lab` (the per-node roots), in every hierarchy.
pub(crate) fn lab_cgroups(lab: &str) -> Vec<PathBuf> {
    let prefix = format!("podroute-lab-{lab}-");
    hierarchies(true)
        .into_iter()
        .flat_map(|h| fs::read_dir(h).into_iter().flatten().flatten())
        // `podroute-lab-<lab>-node<i>` exactly: lab `a` must not take lab `a-b`'s cgroups.
        .filter(|e| {
            e.file_name()
                .to_string_lossy()
                .strip_prefix(&prefix)
                .and_then(|rest| rest.strip_prefix("node"))
                .is_some_and(|i| !i.is_empty() && i.bytes().all(|b| b.is_ascii_digit()))
        })
        .map(|e| e.path())
        .collect()
}

/// The pids in `root` and every cgroup below it.
pub(crate) fn pids_below(root: &Path) -> Vec<i32> {
    let mut pids = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        if let Ok(text) = fs::read_to_string(dir.join("cgroup.procs")) {
            pids.extend(text.lines().filter_map(|l| l.trim().parse::<i32>().ok()));
        }
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
    }
    pids
}

/// Removes `root` and the cgroups below it, deepest first. A cgroup whose last process has
/// just exited can stay busy for a moment, so each is tried for up to `patience`. Returns how
/// many directories were removed.
pub(crate) fn remove_tree(root: &Path, patience: Duration) -> Result<usize> {
    let mut dirs = Vec::new();
    let mut stack = vec![root.to_path_buf()];
    while let Some(dir) = stack.pop() {
        for e in fs::read_dir(&dir).into_iter().flatten().flatten() {
            if e.file_type().is_ok_and(|t| t.is_dir()) {
                stack.push(e.path());
            }
        }
        dirs.push(dir);
    }
    // Deeper paths have more components: remove them first.
    dirs.sort_by_key(|d| std::cmp::Reverse(d.components().count()));
    let mut removed = 0;
    for dir in dirs {
        let ok = crate::lab::wait_until(patience, || match fs::remove_dir(&dir) {
            Ok(()) => true,
            Err(e) => e.kind() == std::io::ErrorKind::NotFound,
        });
        if !ok {
            // Report the last error as it is now.
            fs::remove_dir(&dir).map_err(file_err(&dir))?;
        }
        removed += 1;
    }
    Ok(removed)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_node_cgroup_names_its_lab_and_node() {
        assert_eq!(node_cgroup("demo", "node2"), "/podroute-lab-demo-node2");
    }
}
