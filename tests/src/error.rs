//! The lab's error type: every failure says what went wrong and, where a user can fix it, what to do.

use std::io;
use std::path::PathBuf;

/// Why a lab operation failed.
#[derive(Debug, thiserror::Error)]
pub enum LabError {
    /// The lab needs root for network namespaces.
    #[error("podroute-lab needs root (network namespaces); run it as root, e.g. with sudo")]
    NotRoot,
    /// `ip netns` does not work on this machine.
    #[error(
        "`ip netns` does not work here ({detail}); install iproute2 and run on a kernel with network namespaces"
    )]
    NoNetns {
        /// What `ip netns list` said.
        detail: String,
    },
    /// A program the lab runs is not installed.
    #[error("`{program}` not found; {hint}")]
    MissingProgram {
        /// The program that was looked for.
        program: String,
        /// How to install it.
        hint: &'static str,
    },
    /// The control-plane build script failed or printed no directory.
    #[error(
        "control-plane binaries unavailable ({detail}); run tests/scripts/control-plane.sh or set PODROUTE_CP_BIN"
    )]
    ControlPlaneBinaries {
        /// What went wrong.
        detail: String,
    },
    /// The lab name is not usable.
    #[error("invalid lab name {name:?}: {reason}")]
    InvalidName {
        /// The rejected name.
        name: String,
        /// Why it was rejected.
        reason: &'static str,
    },
    /// Another lab with this name is running.
    #[error("lab {name:?} is already up; run `podroute-lab down --name {name}` first")]
    AlreadyUp {
        /// The lab's name.
        name: String,
    },
    /// No lab with this name is running.
    #[error("lab {name:?} is not up; start it with `podroute-lab up --name {name}`")]
    NotUp {
        /// The lab's name.
        name: String,
    },
    /// A node name does not exist in the lab.
    #[error("no node {node:?} in lab {lab:?} (nodes are node1..nodeN, cp and fabric)")]
    UnknownNode {
        /// The lab's name.
        lab: String,
        /// The name that was asked for.
        node: String,
    },
    /// A command ran but failed.
    #[error("`{command}` failed ({status}): {stderr}")]
    CommandFailed {
        /// The command line, for the user to re-run.
        command: String,
        /// The exit status.
        status: String,
        /// The last lines of its standard error.
        stderr: String,
    },
    /// A command could not be started at all.
    #[error("cannot run `{command}`: {source}")]
    Spawn {
        /// The command line.
        command: String,
        /// The OS error.
        source: io::Error,
    },
    /// A file in the lab directory could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The OS error.
        source: io::Error,
    },
    /// A lab component did not come up in time.
    #[error("{what} did not become ready within {seconds} s; its log ends: {tail}")]
    Timeout {
        /// The component.
        what: &'static str,
        /// How long we waited.
        seconds: u64,
        /// The last lines of its log (the log itself goes with the lab directory).
        tail: String,
    },
    /// A lab process exited while the lab was starting.
    #[error("{what} exited during startup: {tail}")]
    Exited {
        /// The component.
        what: &'static str,
        /// The last lines of its log (the log itself goes with the lab directory).
        tail: String,
    },
    /// The lab's state file is not what this version writes.
    #[error("lab state file {path} is unreadable: {detail}; run `podroute-lab down` and up again")]
    BadState {
        /// The state file.
        path: PathBuf,
        /// The parse error.
        detail: String,
    },
    /// `up` was interrupted (Ctrl-C or SIGTERM) and removed what it had made.
    #[error("interrupted; everything made so far was removed")]
    Interrupted,
    /// A request the lab cannot satisfy (bad argument from the caller).
    #[error("{0}")]
    Invalid(String),
}

/// Result of a lab operation.
pub type Result<T, E = LabError> = std::result::Result<T, E>;

/// Wraps an I/O error on `path`.
pub(crate) fn file_err(path: impl Into<PathBuf>) -> impl FnOnce(io::Error) -> LabError {
    let path = path.into();
    move |source| LabError::File { path, source }
}
