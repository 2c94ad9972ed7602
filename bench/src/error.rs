//! The harness's one error type.

use std::io;

/// Why a benchmark step failed. A receiver that is merely slow is not an error: its run is
/// recorded as "did not converge".
#[derive(Debug, thiserror::Error)]
pub enum BenchError {
    /// Building, using or tearing down the lab.
    #[error(transparent)]
    Lab(#[from] podroute_lab::LabError),
    /// A system call or file the harness needed.
    #[error("{what}: {source}")]
    Io {
        /// What the harness was doing.
        what: String,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// A step that could not be done (a session that never came up, a receiver that would
    /// not start, ...), described for the operator.
    #[error("{0}")]
    Failed(String),
    /// Ctrl-C or SIGTERM.
    #[error("interrupted")]
    Interrupted,
}

/// Adds what was being done to an I/O error.
pub(crate) fn io_err(what: impl Into<String>) -> impl FnOnce(io::Error) -> BenchError {
    let what = what.into();
    move |source| BenchError::Io { what, source }
}

/// The harness's result type.
pub type Result<T> = std::result::Result<T, BenchError>;
