//! Damping of a flapping session (RFC 5882 §3.2: a session that bounces should not bounce
//! its clients with it).
//!
//! What this module owns: when a client (BGP) is told a path is usable again. Down is
//! always said at once: that is what BFD is for. Up is said after a hold-down that is
//! zero for a session that was stable, and doubles with every flap (Up for less than
//! [`DampingConfig::stable`]) up to [`DampingConfig::max_hold`]. A session that stays Up
//! for `stable` forgets its flaps.

use std::time::{Duration, Instant};

/// How flaps are damped.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DampingConfig {
    /// Hold-down after the first flap.
    pub initial_hold: Duration,
    /// The longest hold-down.
    pub max_hold: Duration,
    /// Up this long and the session is stable again: the next Up is said at once.
    pub stable: Duration,
}

impl Default for DampingConfig {
    fn default() -> Self {
        Self {
            initial_hold: Duration::from_secs(2),
            max_hold: Duration::from_secs(120),
            stable: Duration::from_secs(60),
        }
    }
}

/// One session's damping state.
#[derive(Debug, Clone, Default)]
pub(crate) struct Damper {
    /// The hold-down the next Up waits for.
    hold: Duration,
    /// The session's last Up, and whether the client was told.
    up_at: Option<Instant>,
    /// When a held Up is to be said; `None` when nothing is held.
    release_at: Option<Instant>,
    /// What the client was last told.
    told_up: bool,
}

impl Damper {
    /// The session came Up. Returns true when the client may be told now.
    pub(crate) fn session_up(&mut self, now: Instant) -> bool {
        self.up_at = Some(now);
        if self.hold.is_zero() {
            self.told_up = true;
            true
        } else {
            self.release_at = Some(now + self.hold);
            false
        }
    }

    /// The session left Up. Returns true when the client had been told it was up (and
    /// so must now be told it is not).
    pub(crate) fn session_down(&mut self, now: Instant, config: &DampingConfig) -> bool {
        if let Some(up_at) = self.up_at.take() {
            let flapped = now.saturating_duration_since(up_at) < config.stable;
            self.hold = if flapped {
                (self.hold * 2).clamp(config.initial_hold, config.max_hold)
            } else {
                Duration::ZERO
            };
        }
        self.release_at = None;
        std::mem::take(&mut self.told_up)
    }

    /// When a held Up is due.
    pub(crate) fn deadline(&self) -> Option<Instant> {
        self.release_at
    }

    /// Runs the hold-down timer. Returns true when the client is to be told Up now.
    pub(crate) fn handle_timeout(&mut self, now: Instant) -> bool {
        if self.release_at.is_some_and(|t| t <= now) {
            self.release_at = None;
            self.told_up = true;
            return true;
        }
        false
    }

    /// Whether the client was told the path is up.
    pub(crate) fn told_up(&self) -> bool {
        self.told_up
    }

    /// The hold-down the next Up would wait for.
    pub(crate) fn hold(&self) -> Duration {
        self.hold
    }
}
