//! Router faults for interop and zero-loss tests: stop the router daemon (a shutdown: BIRD and
//! GoBGP send a Cease first), kill it (a crash: no NOTIFICATION, its kernel routes left as they
//! are), and start it again, with the lab's base configuration or with the file a test wrote.

use std::fs;

use crate::error::{LabError, Result};
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

    /// Kills the router daemon with SIGKILL: it sends no NOTIFICATION and removes nothing
    /// from its kernel, as a crashed router would (its peers see the TCP connections close).
    /// Start it again with [`Lab::recover_router`].
    pub fn crash_router(&mut self) -> Result<()> {
        if let Some(mut child) = self.daemons.remove("router") {
            let _ = child.kill();
            let _ = child.wait();
        }
        Ok(())
    }

    /// Kills the router daemon and the FIB manager beside it (FRR's zebra) with SIGKILL, as
    /// a router whose routing suite crashed as a whole: the kernel keeps the routes they
    /// installed, nothing else does. BIRD and GoBGP are one daemon: the same as
    /// [`Lab::crash_router`]. Start it again with [`Lab::recover_router`].
    pub fn crash_router_entirely(&mut self) -> Result<()> {
        if let Some(pid_file) = self.router().and_then(|r| r.fib_manager_pid_file()) {
            // zebra first: killed after bgpd, it would first handle bgpd's disconnect.
            let pid = fs::read_to_string(&pid_file)
                .ok()
                .and_then(|s| s.trim().parse::<i32>().ok())
                .filter(|pid| process::command_name(*pid) == "zebra")
                .ok_or_else(|| {
                    LabError::Invalid(format!("no running zebra in {}", pid_file.display()))
                })?;
            if !process::kill_and_wait(&[pid], TERM_GRACE) {
                return Err(LabError::Invalid(format!(
                    "zebra (pid {pid}) outlived SIGKILL"
                )));
            }
            // The next start script waits for zebra's socket: the dead one's must not count.
            let _ = fs::remove_file(pid_file.with_file_name("zserv.api"));
        }
        self.crash_router()
    }

    /// Starts the router again after [`Lab::stop_router`], with the configuration the lab
    /// writes for it (extra routes or settings a test added are gone), and waits until its
    /// client answers.
    pub fn restart_router(&mut self) -> Result<()> {
        self.stop_router()?;
        self.start_router()
    }

    /// Stops the router and starts it again with its configuration file as a test rewrote
    /// it (see [`crate::Router::config_path`]), for settings the running daemon does not pick
    /// up on reload (GoBGP takes a TCP-MD5 password added by `SIGHUP` on IPv4 sessions only).
    pub fn restart_router_as_configured(&mut self) -> Result<()> {
        self.stop_router()?;
        self.spawn_router(false)
    }

    /// Starts the router again after [`Lab::crash_router`], with its configuration file as
    /// it is, as a restarting speaker that kept its forwarding state (BIRD: `bird -R`).
    pub fn recover_router(&mut self) -> Result<()> {
        self.stop_router()?;
        self.spawn_router(true)
    }
}
