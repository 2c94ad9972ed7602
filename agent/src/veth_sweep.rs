//! Destroys pod veths that the CNI plugin released on DEL but that nothing else destroyed.
//!
//! The plugin's DEL does not wait for the kernel to destroy a pod's veth pair: it releases it,
//! with the host side down and marked (see `podroute_cni::release`). Normally the
//! runtime removes the pod's network namespace right after DEL and the kernel destroys the pair
//! with it. When the namespace outlives DEL (a runtime that keeps it, a crashed runtime), the
//! released pair would stay forever; this sweep destroys it. A pair is destroyed only when it
//! is still released one period after the sweep first saw it, so the namespace teardown, which
//! costs the agent nothing, gets the first chance.

use std::collections::BTreeSet;
use std::time::Duration;

use futures::TryStreamExt;
use podroute_cni::netlink::link_state;
use podroute_cni::release::is_released;
use rtnetlink::Handle;
use rtnetlink::packet_route::link::LinkMessage;

use crate::metrics::Metrics;
use crate::routes::kernel::errno;

/// A failed sweep step.
#[derive(Debug, thiserror::Error)]
pub enum SweepError {
    /// Listing the node's links failed.
    #[error("listing links: {0}")]
    List(#[source] rtnetlink::Error),
    /// Destroying a released veth failed.
    #[error("destroying released veth {name}: {source}")]
    Destroy {
        /// The host-side name.
        name: String,
        /// The netlink error.
        #[source]
        source: rtnetlink::Error,
    },
}

/// Remembers which released veths it saw last time, to destroy them on the next pass.
#[derive(Debug)]
pub struct ReleasedVethSweep {
    handle: Handle,
    /// Interface indexes released at the last pass (indexes are not reused soon after a
    /// device is destroyed, so an index names the same device across two passes).
    seen: BTreeSet<u32>,
}

/// What one pass did.
#[derive(Debug, Default, PartialEq, Eq)]
pub struct SweepReport {
    /// Released veths destroyed now (host-side names).
    pub destroyed: Vec<String>,
    /// Released veths seen for the first time, left for the next pass.
    pub waiting: usize,
}

impl ReleasedVethSweep {
    /// A sweep working in the namespace of `handle` (the node's).
    pub fn new(handle: Handle) -> Self {
        Self {
            handle,
            seen: BTreeSet::new(),
        }
    }

    /// One pass: destroys the released veths already seen at the previous pass. Keeps going
    /// after a failed destroy and returns the first error with what was done before it.
    pub async fn sweep(&mut self) -> Result<SweepReport, (SweepReport, SweepError)> {
        let links: Vec<LinkMessage> = self
            .handle
            .link()
            .get()
            .execute()
            .try_collect()
            .await
            .map_err(|e| (SweepReport::default(), SweepError::List(e)))?;
        let released: Vec<(u32, String)> = links.iter().filter_map(released_veth).collect();
        let (due, fresh): (Vec<_>, Vec<_>) = released
            .into_iter()
            .partition(|(index, _)| self.seen.contains(index));
        self.seen = fresh.iter().map(|(index, _)| *index).collect();
        let mut report = SweepReport {
            destroyed: Vec::new(),
            waiting: fresh.len(),
        };
        let mut first_error = None;
        for (index, name) in due {
            match self.handle.link().del(index).execute().await {
                Ok(()) => report.destroyed.push(name),
                // Destroyed meanwhile by its namespace's teardown.
                Err(e) if errno(&e) == Some(libc::ENODEV) => {}
                Err(source) => {
                    first_error.get_or_insert(SweepError::Destroy { name, source });
                }
            }
        }
        match first_error {
            None => Ok(report),
            Some(error) => Err((report, error)),
        }
    }
}

/// `(index, name)` of a link the CNI plugin released.
fn released_veth(message: &LinkMessage) -> Option<(u32, String)> {
    let link = link_state(message);
    is_released(&link).then_some((link.index, link.name))
}

/// Sweeps every `period`, forever; counts what it destroys and its errors in `metrics`.
pub async fn run(handle: Handle, period: Duration, metrics: Metrics) {
    let mut sweep = ReleasedVethSweep::new(handle);
    let mut tick = tokio::time::interval(period);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let (report, error) = match sweep.sweep().await {
            Ok(report) => (report, None),
            Err((report, error)) => (report, Some(error)),
        };
        if !report.destroyed.is_empty() {
            tracing::info!(veths = ?report.destroyed, "destroyed released pod veths whose namespace lives on");
            metrics
                .cni_released_veths_destroyed
                .inc_by(report.destroyed.len() as u64);
        }
        if let Some(error) = error {
            tracing::warn!(%error, "sweeping released pod veths");
            metrics.errors.with_label_values(&["veth_sweep"]).inc();
        }
    }
}
