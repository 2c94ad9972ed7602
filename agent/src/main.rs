//! `podroute-agent`: the node agent binary.

use std::process::ExitCode;

use clap::Parser;
use podroute_agent::config::{Cli, LogFormat};

fn main() -> ExitCode {
    let config = match Cli::parse().validate() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("podroute-agent: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format);
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .enable_all()
        .build()
    {
        Ok(runtime) => runtime,
        Err(error) => {
            eprintln!("podroute-agent: starting the async runtime: {error}");
            return ExitCode::FAILURE;
        }
    };
    let factory = podroute_agent::speaker::default_session_factory();
    match runtime.block_on(podroute_agent::agent::run(config, factory)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = anyhow::Error::from(error);
            eprintln!("podroute-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// Logs to stderr; `RUST_LOG` filters (default `info`).
fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_default_env()
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
