//! Running `cnitool` without leaving anything on the host.
//!
//! libcni keeps every ADD's result in `/var/lib/cni/results` and cnitool has no option to move
//! that cache. A test that stops between ADD and DEL would leave the file behind on the host, so
//! the command runs in a private mount namespace with an overlay on `/var/lib` whose upper layer
//! is a directory the caller owns (under the lab's directory or a temporary one).

use std::ffi::OsStr;
use std::path::Path;
use std::process::Command;

/// A command that runs `cnitool` inside network namespace `ns`, with libcni's cache written
/// under `cache_dir` instead of the host's `/var/lib/cni`. Add the operation and its arguments
/// (`add NET /run/netns/POD`) and the environment (`NETCONFPATH`, `CNI_PATH`, ...) to it.
pub fn cnitool_in(ns: &str, cache_dir: &Path, cnitool: impl AsRef<OsStr>) -> Command {
    let mut cmd = Command::new("ip");
    cmd.args([
        "netns",
        "exec",
        ns,
        "unshare",
        "--mount",
        "--propagation",
        "private",
        "--",
    ])
    .args(["sh", "-c", OVERLAY_SCRIPT, "sh"])
    .arg(cache_dir)
    .arg(cnitool);
    cmd
}

/// `$1` is the cache directory, the rest is the command to exec once the overlay is mounted.
const OVERLAY_SCRIPT: &str = r#"mkdir -p "$1/upper" "$1/work" &&
mount -t overlay podroute-lab-cnitool -o "lowerdir=/var/lib,upperdir=$1/upper,workdir=$1/work" /var/lib &&
shift && exec "$@""#;
