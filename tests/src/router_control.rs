//! Router faults for interop tests: stop the router daemon (a crash or reboot as its peers see
//! it) and start it again with the lab's base configuration.

use crate::error::Result;
use crate::lab::Lab;
use crate::process::{self, TERM_GRACE};

impl Lab {
    /// Stops the router daemon (SIGTERM, then SIGKILL after a grace period); its sessions
    /// drop. Does nothing in a lab without a router or one attached with [`Lab::open`].
    pub fn stop_router(&mut self) -> Result<()> {
        if let Some(mut child) = self.daemons.remove("router") {
            let pid = i32::try_from(child.id()).unwrap_or(0);
            process::terminate_all(&[pid], TERM_GRACE);
            let _ = child.wait();
        }
        Ok(())
    }

    /// Starts the router again after [`Lab::stop_router`], with the configuration the lab
    /// writes for it (extra routes or settings a test added are gone), and waits until its
    /// client answers.
    pub fn restart_router(&mut self) -> Result<()> {
        self.stop_router()?;
        self.start_router()
    }
}
