//! What the speaker's BFD task has to do for a new configuration, as a pure function.
//!
//! What this module owns: the decision when the BFD task (and with it UDP 3784) starts and
//! stops, and which sessions it is told to add or remove. The task runs exactly while some
//! peer wants BFD: the first such peer starts it, the last one gone stops it (its sessions
//! say AdminDown and the sockets close), so a node on which nobody asks for BFD has no BFD
//! port open. The shell carries the plan out; nothing here does I/O.

use std::collections::BTreeMap;
use std::net::IpAddr;

use podroute_bfd::session::SessionConfig;

/// The sessions asked of the BFD task, by peer.
pub(super) type BfdSessions = BTreeMap<IpAddr, SessionConfig>;

/// What to do with the BFD task.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum BfdPlan {
    /// No task and none needed.
    Idle,
    /// Open the sockets, start the task, then add every wanted session.
    Start,
    /// The task keeps running: remove these sessions (each says AdminDown), then add or
    /// reconfigure those.
    Update {
        remove: Vec<IpAddr>,
        add: Vec<(IpAddr, SessionConfig)>,
    },
    /// Nobody wants BFD any more: end the task (AdminDown on every session it has) and
    /// close its sockets.
    Stop,
}

/// The plan that takes a task with `current` sessions (`running`: whether it runs) to
/// `wanted`.
pub(super) fn bfd_plan(running: bool, current: &BfdSessions, wanted: &BfdSessions) -> BfdPlan {
    match (running, wanted.is_empty()) {
        (false, true) => BfdPlan::Idle,
        (false, false) => BfdPlan::Start,
        (true, true) => BfdPlan::Stop,
        (true, false) => BfdPlan::Update {
            remove: current
                .keys()
                .filter(|p| !wanted.contains_key(p))
                .copied()
                .collect(),
            add: wanted
                .iter()
                .filter(|(p, c)| current.get(p) != Some(c))
                .map(|(p, c)| (*p, *c))
                .collect(),
        },
    }
}

#[cfg(test)]
mod tests {
    use std::net::Ipv4Addr;
    use std::time::Duration;

    use super::*;

    fn addr(last: u8) -> IpAddr {
        IpAddr::V4(Ipv4Addr::new(198, 18, 0, last))
    }

    fn config(ms: u64) -> SessionConfig {
        SessionConfig {
            desired_min_tx: Duration::from_millis(ms),
            required_min_rx: Duration::from_millis(ms),
            detect_mult: 3,
        }
    }

    fn sessions(list: &[(u8, u64)]) -> BfdSessions {
        list.iter().map(|&(a, ms)| (addr(a), config(ms))).collect()
    }

    #[test]
    fn the_task_runs_exactly_while_a_peer_wants_bfd() {
        let none = BfdSessions::new();
        let one = sessions(&[(254, 300)]);
        assert_eq!(bfd_plan(false, &none, &none), BfdPlan::Idle);
        assert_eq!(bfd_plan(false, &none, &one), BfdPlan::Start);
        // The last peer turned BFD off: the port closes, not just the session.
        assert_eq!(bfd_plan(true, &one, &none), BfdPlan::Stop);
        // ... and the next one to want it opens it again.
        assert_eq!(bfd_plan(false, &none, &one), BfdPlan::Start);
    }

    #[test]
    fn a_running_task_is_told_only_what_changed() {
        let before = sessions(&[(1, 300), (2, 300), (254, 300)]);
        let after = sessions(&[(2, 300), (254, 100), (3, 300)]);
        assert_eq!(
            bfd_plan(true, &before, &after),
            BfdPlan::Update {
                remove: vec![addr(1)],
                add: vec![(addr(3), config(300)), (addr(254), config(100))],
            }
        );
        assert_eq!(
            bfd_plan(true, &after, &after),
            BfdPlan::Update {
                remove: vec![],
                add: vec![],
            }
        );
    }
}
