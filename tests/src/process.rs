//! Processes the lab runs inside its namespaces: starting them with their output in a log file,
//! and finding and stopping them again, including after the process that started them died.
//!
//! A lab's processes are found two ways, so `down` works from the system's state alone:
//! every process whose network namespace is one of the lab's (`ip netns pids`), and every
//! process whose command line names the lab directory (etcd, kube-apiserver and the routers
//! all take their files from there).

use std::fs::{self, OpenOptions};
use std::io;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, ExitStatus, Stdio};
use std::thread;
use std::time::{Duration, Instant};

pub use nix::sys::signal::Signal;
use nix::sys::signal::kill;
use nix::unistd::Pid;

use crate::cmd;
use crate::error::{LabError, Result, file_err};

/// How long a process gets to exit after SIGTERM before it is sent SIGKILL.
pub const TERM_GRACE: Duration = Duration::from_secs(5);

/// Starts `cmd` detached from the caller's terminal (own process group, stdin closed) with
/// stdout and stderr appended to `log`, and writes its pid to `pid_file`.
pub(crate) fn spawn_logged(mut cmd: Command, log: &Path, pid_file: &Path) -> Result<Child> {
    let out = OpenOptions::new()
        .create(true)
        .append(true)
        .open(log)
        .map_err(file_err(log))?;
    let err = out.try_clone().map_err(file_err(log))?;
    cmd.stdin(Stdio::null())
        .stdout(out)
        .stderr(err)
        .process_group(0);
    let child = cmd.spawn().map_err(|source| LabError::Spawn {
        command: cmd::describe(&cmd),
        source,
    })?;
    fs::write(pid_file, format!("{}\n", child.id())).map_err(file_err(pid_file))?;
    Ok(child)
}

/// Whether `pid` is a live (not zombie) process.
pub(crate) fn alive(pid: i32) -> bool {
    match fs::read_to_string(format!("/proc/{pid}/stat")) {
        // The state follows the parenthesised command name, which may itself contain ')'.
        Ok(stat) => stat
            .rsplit_once(')')
            .and_then(|(_, rest)| rest.split_whitespace().next())
            .is_some_and(|state| state != "Z" && state != "X"),
        Err(_) => false,
    }
}

/// The command name of `pid` (`/proc/<pid>/comm`), empty if it is gone.
pub(crate) fn command_name(pid: i32) -> String {
    fs::read_to_string(format!("/proc/{pid}/comm"))
        .map(|s| s.trim().to_owned())
        .unwrap_or_default()
}

/// Pids of the processes in namespace `ns` (`ip netns pids`); empty if the namespace is gone.
pub(crate) fn pids_in_ns(ns: &str) -> Vec<i32> {
    cmd::ip(["netns", "pids", ns])
        .map(|out| out.lines().filter_map(|l| l.trim().parse().ok()).collect())
        .unwrap_or_default()
}

/// Pids of processes (other than this one) whose command line names a file under `dir`.
///
/// The needle is `dir/`, so lab `t` never matches lab `t-2`'s files.
pub(crate) fn pids_referencing(dir: &Path) -> Vec<i32> {
    let mut needle = dir.as_os_str().as_encoded_bytes().to_vec();
    needle.push(b'/');
    let needle = needle.as_slice();
    let me = std::process::id();
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| *pid != me)
        .filter(|pid| {
            fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|c| c.windows(needle.len()).any(|w| w == needle))
        })
        .filter_map(|pid| i32::try_from(pid).ok())
        .collect()
}

/// Sends SIGTERM to every pid, waits up to `grace` for them to exit, then SIGKILLs the rest.
/// Pids that are already gone are ignored.
pub(crate) fn terminate_all(pids: &[i32], grace: Duration) {
    for &pid in pids {
        if pid > 1 {
            let _ = kill(Pid::from_raw(pid), Signal::SIGTERM);
        }
    }
    let deadline = Instant::now() + grace;
    while pids.iter().any(|&p| alive(p)) && Instant::now() < deadline {
        thread::sleep(Duration::from_millis(50));
    }
    kill_and_wait(pids, Duration::from_secs(2));
}

/// Sends SIGKILL to every live pid above 1 (never to init or a process group) and waits at most
/// `timeout` for every pid given to be gone; true when none is left.
pub(crate) fn kill_and_wait(pids: &[i32], timeout: Duration) -> bool {
    for &pid in pids {
        if pid > 1 && alive(pid) {
            let _ = kill(Pid::from_raw(pid), Signal::SIGKILL);
        }
    }
    let deadline = Instant::now() + timeout;
    while pids.iter().any(|&p| alive(p)) {
        if Instant::now() >= deadline {
            return false;
        }
        thread::sleep(Duration::from_millis(10));
    }
    true
}

/// A process started in one of the lab's namespaces by [`crate::Lab::spawn`].
///
/// Its stdout and stderr go to [`LabProcess::log_path`]. Dropping it kills it (SIGKILL) if it
/// still runs, so a failing test leaves nothing behind; call [`LabProcess::terminate`] for a
/// graceful stop.
#[derive(Debug)]
pub struct LabProcess {
    name: String,
    child: Child,
    log: PathBuf,
    pid_file: PathBuf,
    status: Option<ExitStatus>,
    /// Set by [`LabProcess::detach`]: dropping the handle leaves the process running.
    detached: bool,
}

impl LabProcess {
    pub(crate) fn new(name: String, child: Child, log: PathBuf, pid_file: PathBuf) -> Self {
        Self {
            name,
            child,
            log,
            pid_file,
            status: None,
            detached: false,
        }
    }

    /// The name given at spawn time.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// The process id (the program's own: `ip netns exec` execs it).
    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    /// The file holding the process's stdout and stderr.
    pub fn log_path(&self) -> &Path {
        &self.log
    }

    /// The log's contents so far (empty if unreadable).
    pub fn log(&self) -> String {
        fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Sends `signal` (e.g. `Signal::SIGKILL` to simulate a crash, `SIGHUP` to reload).
    pub fn kill(&mut self, signal: Signal) -> Result<()> {
        if self.status.is_some() {
            return Ok(());
        }
        let pid = i32::try_from(self.child.id())
            .map_err(|_| LabError::Invalid("pid out of range".into()))?;
        kill(Pid::from_raw(pid), signal)
            .map_err(|e| LabError::Invalid(format!("kill {pid} with {signal}: {e}")))
    }

    /// Whether the process is still running (reaps it if it has exited).
    pub fn is_running(&mut self) -> bool {
        self.try_status().is_none()
    }

    /// The exit status if the process has exited.
    pub fn try_status(&mut self) -> Option<ExitStatus> {
        if self.status.is_none()
            && let Ok(Some(st)) = self.child.try_wait()
        {
            self.status = Some(st);
            let _ = fs::remove_file(&self.pid_file);
        }
        self.status
    }

    /// Waits up to `timeout` until the process has entered the named network namespace
    /// (`ip netns exec` forks before it calls setns), so that a caller that reports the pid or
    /// looks at the namespace right away sees the process there. Returns early if it exits.
    pub fn wait_until_in_netns(&mut self, ns: &str, timeout: Duration) -> bool {
        use std::os::unix::fs::MetadataExt;
        let Ok(want) = fs::metadata(Path::new("/run/netns").join(ns)) else {
            return false;
        };
        let started = Instant::now();
        loop {
            let current = fs::metadata(format!("/proc/{}/ns/net", self.pid()));
            if current.is_ok_and(|m| m.dev() == want.dev() && m.ino() == want.ino()) {
                return true;
            }
            if self.try_status().is_some() || started.elapsed() > timeout {
                return false;
            }
            thread::sleep(Duration::from_millis(2));
        }
    }

    /// Waits up to `timeout` for the process to exit; `None` if it still runs.
    pub fn wait_timeout(&mut self, timeout: Duration) -> Option<ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(st) = self.try_status() {
                return Some(st);
            }
            if Instant::now() >= deadline {
                return None;
            }
            thread::sleep(Duration::from_millis(20));
        }
    }

    /// Waits for the process to exit.
    pub fn wait(&mut self) -> io::Result<ExitStatus> {
        if let Some(st) = self.status {
            return Ok(st);
        }
        let st = self.child.wait()?;
        self.status = Some(st);
        let _ = fs::remove_file(&self.pid_file);
        Ok(st)
    }

    /// Leaves the process running when this handle goes away (the CLI's `spawn`); `down`
    /// still stops it. Returns its pid.
    pub fn detach(mut self) -> u32 {
        self.detached = true;
        self.child.id()
    }

    /// SIGTERM, then SIGKILL after [`TERM_GRACE`]; returns the exit status.
    pub fn terminate(&mut self) -> io::Result<ExitStatus> {
        if self.try_status().is_none() {
            let _ = self.kill(Signal::SIGTERM);
            if self.wait_timeout(TERM_GRACE).is_none() {
                let _ = self.kill(Signal::SIGKILL);
            }
        }
        self.wait()
    }
}

impl Drop for LabProcess {
    fn drop(&mut self) {
        if !self.detached && self.try_status().is_none() {
            let _ = self.kill(Signal::SIGKILL);
            let _ = self.wait();
        }
    }
}

/// Creates `path` (and parents) as a directory.
pub(crate) fn ensure_dir(path: &Path) -> Result<()> {
    fs::create_dir_all(path).map_err(file_err(path))
}
