//! Running the host programs the lab is built from (`ip`, `openssl`, `kubectl`, ...), with
//! errors that show the command line and what it printed.

use std::ffi::OsStr;
use std::process::{Command, Output, Stdio};

use crate::error::{LabError, Result};

/// How many lines of a failed command's stderr go into its error.
const STDERR_LINES: usize = 5;

/// The command line of `cmd`, for error messages.
pub(crate) fn describe(cmd: &Command) -> String {
    let mut s = cmd.get_program().to_string_lossy().into_owned();
    for a in cmd.get_args() {
        s.push(' ');
        s.push_str(&a.to_string_lossy());
    }
    s
}

/// The last few lines of `text`.
pub(crate) fn tail(text: &str, lines: usize) -> String {
    let all: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
    all[all.len().saturating_sub(lines)..].join(" | ")
}

/// Runs `cmd`, capturing its output; its exit status is not checked.
pub(crate) fn output(cmd: &mut Command) -> Result<Output> {
    cmd.stdin(Stdio::null())
        .output()
        .map_err(|source| LabError::Spawn {
            command: describe(cmd),
            source,
        })
}

/// Runs `cmd` and fails unless it exits with status 0; returns its stdout.
pub(crate) fn run(cmd: &mut Command) -> Result<String> {
    let out = output(cmd)?;
    if out.status.success() {
        Ok(String::from_utf8_lossy(&out.stdout).into_owned())
    } else {
        Err(LabError::CommandFailed {
            command: describe(cmd),
            status: out.status.to_string(),
            stderr: tail(&String::from_utf8_lossy(&out.stderr), STDERR_LINES),
        })
    }
}

/// `ip ARGS...` in the root namespace (only read-only or `netns` commands are ever run there).
pub(crate) fn ip<I, S>(args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("ip").args(args))
}

/// `ip -n NS ARGS...`: an iproute2 command applied inside namespace `ns`.
pub(crate) fn ip_in<I, S>(ns: &str, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(Command::new("ip").arg("-n").arg(ns).args(args))
}

/// A command that runs `program args...` inside namespace `ns` (`ip netns exec`, which execs the
/// program after `setns`, so the child's pid is the program's).
pub(crate) fn in_ns<I, S>(ns: &str, program: impl AsRef<OsStr>, args: I) -> Command
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    let mut cmd = Command::new("ip");
    cmd.args(["netns", "exec", ns]).arg(program).args(args);
    cmd
}

/// Runs `program args...` in `ns` and fails unless it succeeds; returns its stdout.
pub(crate) fn run_in<I, S>(ns: &str, program: impl AsRef<OsStr>, args: I) -> Result<String>
where
    I: IntoIterator<Item = S>,
    S: AsRef<OsStr>,
{
    run(&mut in_ns(ns, program, args))
}

/// Finds `program` on `PATH` (or checks an explicit path).
pub(crate) fn which(program: &str) -> Option<std::path::PathBuf> {
    if program.contains('/') {
        let p = std::path::PathBuf::from(program);
        return p.is_file().then_some(p);
    }
    let path = std::env::var_os("PATH")?;
    // Root's PATH may lack the sbin directories when run from some shells; look there too.
    let extra = ["/usr/sbin", "/sbin", "/usr/lib/frr"].map(std::path::PathBuf::from);
    std::env::split_paths(&path)
        .chain(extra)
        .map(|d| d.join(program))
        .find(|p| p.is_file())
}

/// Fails with an install hint unless `program` is installed.
pub(crate) fn require(program: &str, hint: &'static str) -> Result<std::path::PathBuf> {
    which(program).ok_or_else(|| LabError::MissingProgram {
        program: program.to_owned(),
        hint,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn tail_keeps_the_last_non_empty_lines() {
        assert_eq!(tail("a\n\nb\nc\n", 2), "b | c");
        assert_eq!(tail("", 2), "");
    }

    #[test]
    fn a_failing_command_reports_its_command_line() {
        let err =
            run(Command::new("sh").args(["-c", "echo boom >&2; exit 3"])).expect_err("sh exits 3");
        let msg = err.to_string();
        assert!(msg.contains("sh -c") && msg.contains("boom"), "{msg}");
    }
}
