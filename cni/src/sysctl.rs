//! Writing per-interface sysctls under `/proc/sys`.
//!
//! `/proc/sys/net` shows the network namespace of the thread that opens it, so a write from
//! inside [`crate::netns::run_in`] changes the pod's settings, not the node's.

use std::fs;
use std::io;
use std::path::PathBuf;

/// A sysctl write that failed.
#[derive(Debug, thiserror::Error)]
#[error("cannot set sysctl {path} = {value}: {source}")]
pub struct SysctlError {
    /// The file under /proc/sys.
    pub path: PathBuf,
    /// The value written.
    pub value: String,
    /// The OS error.
    #[source]
    pub source: io::Error,
}

/// Writes `value` to `/proc/sys/<key>` where `key` uses `/` separators
/// (e.g. `net/ipv4/conf/eth0/proxy_arp`; interface names may hold dots, so no dotted form).
pub fn set(key: &str, value: &str) -> Result<(), SysctlError> {
    let path = PathBuf::from("/proc/sys").join(key);
    fs::write(&path, value).map_err(|source| SysctlError {
        path,
        value: value.to_owned(),
        source,
    })
}
