//! Graceful restart (RFC 4724): the capability we offer, and the routes of a restarting
//! peer kept as stale until it refreshes them.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use ipnetwork::IpNetwork;

use crate::message::{Family, GracefulRestart, GracefulRestartFamily};

use super::types::GracefulRestartConfig;

/// Restart State bit (RFC 4724 §3), in the capability's 4-bit flags.
const RESTART_STATE: u8 = 0x8;
/// Forwarding State bit of a family.
const FORWARDING_STATE: u8 = 0x80;
/// The restart time is 12 bits.
const MAX_RESTART_TIME: u64 = 0x0fff;

/// The capability to put in our OPEN. The Forwarding State bit is always set: the driver
/// keeps its forwarding state (kernel routes) across its own restarts, which is what makes
/// keeping our routes safe for the peer (on the first start the peer had no session with us,
/// and the bit means nothing). The Restart State bit is set when `restarted`, until the
/// initial sync is done (`in_restart_window`).
pub(crate) fn capability(
    config: &GracefulRestartConfig,
    families: &[Family],
    restarted: bool,
    in_restart_window: bool,
) -> GracefulRestart {
    let restart_time = config.restart_time.as_secs().min(MAX_RESTART_TIME) as u16;
    GracefulRestart {
        flags: if restarted && in_restart_window {
            RESTART_STATE
        } else {
            0
        },
        restart_time,
        families: families
            .iter()
            .map(|family| GracefulRestartFamily {
                family: *family,
                flags: FORWARDING_STATE,
            })
            .collect(),
    }
}

/// True if the peer's capability says it kept forwarding for `family` across its restart
/// (RFC 4724 §4.2: otherwise its stale routes of that family go at once).
pub(crate) fn preserved(capability: &GracefulRestart, family: Family) -> bool {
    capability
        .families
        .iter()
        .any(|f| f.family == family && f.flags & FORWARDING_STATE != 0)
}

/// The restart time a peer advertised.
pub(crate) fn restart_time(capability: &GracefulRestart) -> Duration {
    Duration::from_secs(u64::from(capability.restart_time))
}

/// A restarting peer's routes that were not announced again yet.
#[derive(Debug, Default)]
pub(crate) struct StaleRoutes {
    /// The prefixes, still in the RIB under the peer's id.
    pub(crate) prefixes: HashSet<IpNetwork>,
    /// When the remaining ones go (the restart time while the peer is away; then the
    /// stale routes time until its End-of-RIB).
    pub(crate) deadline: Option<Instant>,
}

impl StaleRoutes {
    /// Adds prefixes (a second restart before the first finished keeps the union).
    pub(crate) fn mark(&mut self, prefixes: impl IntoIterator<Item = IpNetwork>) {
        self.prefixes.extend(prefixes);
    }

    /// The peer announced or withdrew `prefix` again: it is no longer stale.
    pub(crate) fn refreshed(&mut self, prefix: &IpNetwork) {
        self.prefixes.remove(prefix);
    }

    /// Takes the stale prefixes of one family.
    pub(crate) fn take_family(&mut self, family: Family) -> Vec<IpNetwork> {
        let taken: Vec<IpNetwork> = self
            .prefixes
            .iter()
            .filter(|p| Family::of(p) == family)
            .copied()
            .collect();
        for p in &taken {
            self.prefixes.remove(p);
        }
        taken
    }

    /// Takes every stale prefix.
    pub(crate) fn take_all(&mut self) -> Vec<IpNetwork> {
        self.deadline = None;
        self.prefixes.drain().collect()
    }

    pub(crate) fn len(&self) -> usize {
        self.prefixes.len()
    }

    pub(crate) fn is_empty(&self) -> bool {
        self.prefixes.is_empty()
    }
}
