//! `podroute-agent`: the node agent binary.

use std::process::ExitCode;

use clap::Parser;
use podroute_agent::config::{Cli, Command, LogFormat, StatusArgs};
use podroute_agent::status_cli;

fn main() -> ExitCode {
    let cli = Cli::parse();
    if let Some(Command::Status(args)) = &cli.command {
        return status(args);
    }
    if let Some(Command::Crds) = &cli.command {
        return match podroute_agent::crd::manifest_yaml() {
            Ok(yaml) => {
                print!("{yaml}");
                ExitCode::SUCCESS
            }
            Err(error) => {
                eprintln!("podroute-agent crds: {error}");
                ExitCode::FAILURE
            }
        };
    }
    let config = match cli.validate() {
        Ok(config) => config,
        Err(error) => {
            eprintln!("podroute-agent: invalid configuration: {error}");
            return ExitCode::from(2);
        }
    };
    init_logging(config.log_format, config.log_level.as_deref());
    tracing::info!(version = env!("CARGO_PKG_VERSION"), node = %config.node_name, "podroute-agent starting");
    podroute_agent::malloc::tune();
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
    match runtime.block_on(podroute_agent::agent::run(config)) {
        Ok(()) => ExitCode::SUCCESS,
        Err(error) => {
            let error = anyhow::Error::from(error);
            eprintln!("podroute-agent: {error:#}");
            ExitCode::FAILURE
        }
    }
}

/// `podroute-agent status`: 0 ready, 1 not ready, 2 the agent could not be asked.
fn status(args: &StatusArgs) -> ExitCode {
    let fetched = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .map_err(|e| e.to_string())
        .and_then(|rt| {
            rt.block_on(status_cli::fetch(args.address))
                .map_err(|e| e.to_string())
        });
    let status = match fetched {
        Ok(status) => status,
        Err(error) => {
            eprintln!("podroute-agent status: {error}");
            return ExitCode::from(2);
        }
    };
    if args.json {
        println!(
            "{}",
            serde_json::to_string_pretty(&status).unwrap_or_default()
        );
    } else {
        print!("{}", status_cli::render(&status));
    }
    if status_cli::is_ready(&status) {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    }
}

/// Logs to stderr; `--log-level` filters, else `RUST_LOG`, else `info`.
fn init_logging(format: LogFormat, level: Option<&str>) {
    let filter = level
        .and_then(|l| tracing_subscriber::EnvFilter::try_new(l).ok())
        .or_else(|| tracing_subscriber::EnvFilter::try_from_default_env().ok())
        .unwrap_or_else(|| tracing_subscriber::EnvFilter::new("info"));
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(std::io::stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}
