//! `podroute`: the CNI plugin. Reads the network configuration on stdin and the `CNI_*`
//! environment, prints the result (or the spec's error object) on stdout. With arguments
//! (`install DIR`, `uninstall DIR`) it puts itself into a CNI bin directory or takes itself out.
//!
//! The plugin starts twice for every pod, so it skips std's runtime start-up (`no_main`: the C
//! `main` below is the entry point). That start-up finds the main thread's stack by reading
//! `/proc/self/maps` and installs a stack-overflow handler on an alternate signal stack: about
//! 0.15 ms of CPU on every call, a tenth of a DEL, for a process that lives a millisecond. What
//! it did that the plugin relies on is done here: SIGPIPE is ignored (a write to a closed
//! stdout fails instead of killing the plugin), a panic ends the process with status 101, and
//! stdout is flushed before exit. Lost, and accepted: std's stack-overflow message (a bare
//! SIGSEGV now), the main thread's name in panic messages, and std's reopening of a closed
//! stdin, stdout or stderr on `/dev/null` (runtimes always pass all three).
#![no_main]
// One `signal(SIGPIPE, SIG_IGN)`; see `ignore_sigpipe`.
#![allow(unsafe_code)]

use podroute_cni::commands;
use podroute_cni::env::CniEnv;
use podroute_cni::error::{CniError, ErrorCode};
use podroute_cni::install::InstallCommand;
use std::ffi::{c_char, c_int};
use std::io::{Read, Write};

/// Exit status of a panic, as std's own start-up gives it.
const PANIC_STATUS: c_int = 101;

/// The process entry point, called by glibc's start-up (std's `args` are set up before it).
#[unsafe(no_mangle)]
pub extern "C" fn main(_argc: c_int, _argv: *const *const c_char) -> c_int {
    ignore_sigpipe();
    let status = std::panic::catch_unwind(run).unwrap_or(PANIC_STATUS);
    // Nothing useful can be done when the runtime closed our stdout.
    let _ = std::io::stdout().flush();
    status
}

fn ignore_sigpipe() {
    use nix::sys::signal::{SigHandler, Signal, signal};
    // SAFETY: SIG_IGN installs no handler, so no code of ours can run in signal context.
    let _ = unsafe { signal(Signal::SIGPIPE, SigHandler::SigIgn) };
}

fn run() -> c_int {
    let args: Vec<String> = std::env::args().skip(1).collect();
    if let Some(parsed) = InstallCommand::parse(&args) {
        return install(parsed);
    }
    let mut stdin = Vec::new();
    let read = std::io::stdin().read_to_end(&mut stdin);
    let env = match read {
        Ok(_) => CniEnv::from_lookup(|k| std::env::var(k).ok()),
        Err(e) => Err(CniError::with_details(
            ErrorCode::Io,
            "cannot read stdin",
            e,
        )),
    };
    let (output, status) = match commands::execute(env, &stdin) {
        Ok(Some(result)) => (Some(result), 0),
        Ok(None) => (None, 0),
        Err(f) => (Some(f.error.to_json(&f.cni_version)), 1),
    };
    if let Some(v) = output {
        let mut out = std::io::stdout().lock();
        // Nothing useful can be done when the runtime closed our stdout.
        let _ = writeln!(out, "{v}");
    }
    status
}

/// `podroute install|uninstall DIR`: one line on stdout when it worked, one on stderr if not.
fn install(parsed: Result<InstallCommand, podroute_cni::install::UsageError>) -> c_int {
    let outcome = parsed.map_err(|e| e.to_string()).and_then(|c| {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        c.run(&exe).map_err(|e| e.to_string())
    });
    match outcome {
        Ok(done) => {
            println!("podroute: {done}");
            0
        }
        Err(e) => {
            eprintln!("podroute: error: {e}");
            1
        }
    }
}
