//! `podroute`: the CNI plugin. Reads the network configuration on stdin and the `CNI_*`
//! environment, prints the result (or the spec's error object) on stdout. With arguments
//! (`install DIR`, `uninstall DIR`) it puts itself into a CNI bin directory or takes itself out.

use podroute_cni::commands;
use podroute_cni::env::CniEnv;
use podroute_cni::error::{CniError, ErrorCode};
use podroute_cni::install::InstallCommand;
use std::io::{Read, Write};
use std::process::ExitCode;

fn main() -> ExitCode {
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
    let (output, code) = match commands::execute(env, &stdin) {
        Ok(Some(result)) => (Some(result), ExitCode::SUCCESS),
        Ok(None) => (None, ExitCode::SUCCESS),
        Err(f) => (Some(f.error.to_json(&f.cni_version)), ExitCode::FAILURE),
    };
    if let Some(v) = output {
        let mut out = std::io::stdout().lock();
        // Nothing useful can be done when the runtime closed our stdout.
        let _ = writeln!(out, "{v}");
    }
    code
}

/// `podroute install|uninstall DIR`: one line on stdout when it worked, one on stderr if not.
fn install(parsed: Result<InstallCommand, podroute_cni::install::UsageError>) -> ExitCode {
    let outcome = parsed.map_err(|e| e.to_string()).and_then(|c| {
        let exe =
            std::env::current_exe().map_err(|e| format!("cannot find this executable: {e}"))?;
        c.run(&exe).map_err(|e| e.to_string())
    });
    match outcome {
        Ok(done) => {
            println!("podroute: {done}");
            ExitCode::SUCCESS
        }
        Err(e) => {
            eprintln!("podroute: error: {e}");
            ExitCode::FAILURE
        }
    }
}
