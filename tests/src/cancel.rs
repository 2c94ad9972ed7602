//! Interrupting `up`: Ctrl-C (SIGINT) or SIGTERM while a lab is being built makes [`crate::Lab::up`]
//! stop at its next step and remove what it made, instead of dying and leaving it behind.
//!
//! The signal handler only sets a flag (all that is safe in a handler); `up` checks it between
//! steps and while it waits for the API server and the router.

use std::sync::atomic::{AtomicBool, Ordering};

use crate::error::{LabError, Result};

static REQUESTED: AtomicBool = AtomicBool::new(false);

/// Makes SIGINT and SIGTERM cancel a running `up` (the CLI calls this; tests need not).
pub fn install_signal_handlers() -> Result<()> {
    for sig in [signal_hook::consts::SIGINT, signal_hook::consts::SIGTERM] {
        signal_hook::flag::register(sig, &REQUESTED).map_err(|e| {
            LabError::Invalid(format!("cannot install a handler for signal {sig}: {e}"))
        })?;
    }
    Ok(())
}

/// Asks a running `up` to stop and clean up.
pub fn request() {
    REQUESTED.store(true, Ordering::SeqCst);
}

/// Fails with [`LabError::Interrupted`] once cancellation was requested.
pub(crate) fn check() -> Result<()> {
    if REQUESTED.load(Ordering::SeqCst) {
        Err(LabError::Interrupted)
    } else {
        Ok(())
    }
}
