//! The `sluice` command line.

use std::path::PathBuf;
use std::process::ExitCode;
use std::sync::Arc;

use clap::{Parser, Subcommand};
use sluice::config::Config;
use sluice_engine::SystemClock;

/// Sluice: Kinesis Data Streams and Firehose, on your own machines.
#[derive(Debug, Parser)]
#[command(version)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Serve the Kinesis API (JSON 1.1 over HTTP/1.1 and h2c).
    Serve {
        /// TOML configuration file (see deploy/sluice.toml); defaults apply without one.
        #[arg(long)]
        config: Option<PathBuf>,
        /// Address to listen on, overriding the config (default 127.0.0.1:4567).
        #[arg(long)]
        bind: Option<std::net::SocketAddr>,
        /// Data directory, overriding the config (default ./sluice-data).
        #[arg(long)]
        data_dir: Option<PathBuf>,
    },
    /// Check that a configuration file parses and its settings fit together.
    CheckConfig {
        /// The TOML file.
        file: PathBuf,
    },
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).expect("SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

fn main() -> ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into()))
        .init();
    match Cli::parse().command {
        Command::CheckConfig { file } => match Config::load(&file) {
            Ok(_) => {
                println!("{}: ok", file.display());
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::FAILURE
            }
        },
        Command::Serve { config, bind, data_dir } => {
            let mut cfg = match config.map(|f| Config::load(&f)).transpose() {
                Ok(c) => c.unwrap_or_default(),
                Err(e) => {
                    eprintln!("{e}");
                    return ExitCode::FAILURE;
                }
            };
            cfg.bind = bind.unwrap_or(cfg.bind);
            cfg.data_dir = data_dir.unwrap_or(cfg.data_dir);
            if let Err(e) = cfg.check() {
                eprintln!("{e}");
                return ExitCode::FAILURE;
            }
            let runtime = tokio::runtime::Runtime::new().expect("tokio runtime");
            runtime.block_on(async move {
                let state = match sluice::open_state(&cfg, Arc::new(SystemClock)) {
                    Ok(s) => s,
                    Err(e) => {
                        eprintln!("cannot open {}: {e}", cfg.data_dir.display());
                        return ExitCode::FAILURE;
                    }
                };
                let listener = match tokio::net::TcpListener::bind(cfg.bind).await {
                    Ok(l) => l,
                    Err(e) => {
                        eprintln!("cannot listen on {}: {e}", cfg.bind);
                        return ExitCode::FAILURE;
                    }
                };
                tracing::info!(bind = %cfg.bind, data_dir = %cfg.data_dir.display(), "sluice serving the Kinesis API");
                sluice::server::serve(listener, state.clone(), shutdown_signal()).await;
                // Dropping the state closes every shard log, which syncs it.
                drop(state);
                tracing::info!("sluice stopped");
                ExitCode::SUCCESS
            })
        }
    }
}
