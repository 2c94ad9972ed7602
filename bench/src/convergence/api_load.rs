//! What the agents cost the control plane (issue 10: BGPNodeStatus is "written only on change
//! and rate-limited"): BGPNodeStatus writes the API server counted (its own
//! `apiserver_request_total`), and the agents' CPU, over a steady window after the cold start
//! and over the changes.

use std::time::Instant;

use podroute_lab::{Lab, LabProcess};
use serde::{Deserialize, Serialize};

use crate::error::Result;
use crate::procstat;

/// The control-plane cost of one run.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct ApiLoad {
    /// The steady window, seconds.
    pub steady_s: f64,
    /// BGPNodeStatus writes per minute, all nodes together, nothing changing.
    pub steady_status_writes_per_min: f64,
    /// Mean agent CPU over the steady window, percent of one core per agent.
    pub steady_agent_cpu_pct: f64,
    /// The changes phase, seconds.
    pub churn_s: f64,
    /// BGPNodeStatus writes per minute, all nodes together, during the changes.
    pub churn_status_writes_per_min: f64,
    /// Mean CPU of the agents that run through every change (the fixed nodes'), percent of
    /// one core per agent.
    pub churn_agent_cpu_pct: f64,
}

/// A point to measure from: the API server's write count and the agents' CPU seconds.
#[derive(Debug)]
pub struct Mark {
    at: Instant,
    writes: f64,
    cpu: Vec<(u32, f64)>,
}

impl Mark {
    /// Now, for `agents`.
    pub fn take<'a>(lab: &Lab, agents: impl IntoIterator<Item = &'a LabProcess>) -> Result<Self> {
        let writes = status_writes(&lab.kubectl(&["get", "--raw", "/metrics"])?);
        let cpu = agents
            .into_iter()
            .filter_map(|a| Some((a.pid(), procstat::cpu_seconds(a.pid()).ok()?)))
            .collect();
        Ok(Self {
            at: Instant::now(),
            writes,
            cpu,
        })
    }

    /// Since `self`: seconds, writes per minute, mean CPU percent of the agents in both marks.
    pub fn until(&self, later: &Mark) -> (f64, f64, f64) {
        let secs = later.at.duration_since(self.at).as_secs_f64().max(1e-3);
        let per_min = (later.writes - self.writes) * 60.0 / secs;
        let used: Vec<f64> = later
            .cpu
            .iter()
            .filter_map(|(pid, end)| {
                let start = self.cpu.iter().find(|(p, _)| p == pid)?.1;
                Some((end - start) * 100.0 / secs)
            })
            .collect();
        let mean = if used.is_empty() {
            0.0
        } else {
            used.iter().sum::<f64>() / used.len() as f64
        };
        (secs, per_min, mean)
    }
}

/// BGPNodeStatus write requests (create, update, patch, apply, the status subresource
/// included) in the API server's Prometheus text.
fn status_writes(metrics: &str) -> f64 {
    metrics
        .lines()
        .filter(|l| {
            l.starts_with("apiserver_request_total{")
                && l.contains("resource=\"bgpnodestatuses\"")
                && ["POST", "PUT", "PATCH", "APPLY"]
                    .iter()
                    .any(|v| l.contains(&format!("verb=\"{v}\"")))
        })
        .filter_map(|l| l.rsplit(' ').next()?.parse::<f64>().ok())
        .sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_writes_of_node_status_count() {
        let text = r#"# HELP apiserver_request_total Counter of apiserver requests
apiserver_request_total{code="201",component="apiserver",dry_run="",group="podroute.io",resource="bgpnodestatuses",scope="cluster",subresource="",verb="POST",version="v1alpha1"} 100
apiserver_request_total{code="200",component="apiserver",dry_run="",group="podroute.io",resource="bgpnodestatuses",scope="cluster",subresource="status",verb="PATCH",version="v1alpha1"} 23
apiserver_request_total{code="200",component="apiserver",dry_run="",group="podroute.io",resource="bgpnodestatuses",scope="cluster",subresource="",verb="LIST",version="v1alpha1"} 7
apiserver_request_total{code="200",component="apiserver",dry_run="",group="",resource="nodes",scope="cluster",subresource="",verb="PATCH",version="v1"} 9
"#;
        assert_eq!(status_writes(text), 123.0);
    }
}
