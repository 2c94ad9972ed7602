//! `podroute-agent`: the node agent binary.

use clap::Parser;
use podroute_agent::config::Cli;

fn main() -> std::process::ExitCode {
    let config = match Cli::parse().validate() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("podroute-agent: invalid configuration: {error}");
            return std::process::ExitCode::from(2);
        }
    };
    let _ = config;
    std::process::ExitCode::SUCCESS
}
