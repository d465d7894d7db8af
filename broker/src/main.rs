//! The `wasmq` command: runs the broker, or prints its default configuration.

use std::io::IsTerminal;
use std::net::SocketAddr;
use std::path::PathBuf;

use anyhow::Context;
use clap::{Parser, Subcommand};
use tracing::{info, warn};
use tracing_subscriber::EnvFilter;
use wasmq::Server;
use wasmq::config::{Config, DEFAULT_CONFIG};
use wasmq::plugins::Plugins;

/// An MQTT 3.1.1 and 5.0 broker whose policy lives in WebAssembly plugins.
#[derive(Parser)]
#[command(version, about)]
struct Cli {
    /// Configuration file (TOML); built-in defaults when absent.
    #[arg(long, global = true)]
    config: Option<PathBuf>,
    /// Listener address, overriding the configuration (e.g. 0.0.0.0:1883).
    #[arg(long, global = true)]
    listen: Option<SocketAddr>,
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Runs the broker (the default).
    Run,
    /// Prints the default configuration, every key commented.
    PrintConfig,
    /// Plugin tools.
    #[command(subcommand)]
    Plugin(PluginCommand),
}

#[derive(Subcommand)]
enum PluginCommand {
    /// Reports which hooks a component exports and which capabilities it imports, or
    /// what is wrong with it, without starting a broker. Exit code 1 when it cannot load.
    Check {
        /// The `.wasm` component.
        file: PathBuf,
    },
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match &cli.command {
        Some(Command::PrintConfig) => {
            print!("{DEFAULT_CONFIG}");
            return Ok(());
        }
        Some(Command::Plugin(PluginCommand::Check { file })) => {
            let report = wasmq_plugin_host::check(file)
                .with_context(|| format!("cannot check {}", file.display()))?;
            println!("{}: {report}", file.display());
            std::process::exit(if report.is_ok() { 0 } else { 1 });
        }
        Some(Command::Run) | None => {}
    }
    tracing_subscriber::fmt()
        .with_env_filter(
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new("info")),
        )
        // Colours only on a terminal: logs redirected to a file or read by a script
        // (the tests find `listening address=...` there) stay plain text.
        .with_ansi(std::io::stderr().is_terminal())
        .init();
    let mut config = match &cli.config {
        Some(path) => Config::load(path)?,
        None => Config::default(),
    };
    if let Some(listen) = cli.listen {
        config.listen = listen;
    }
    raise_file_limit();
    let runtime = tokio::runtime::Runtime::new().context("cannot start the tokio runtime")?;
    runtime.block_on(async {
        let database = wasmq::plugins::open_database(&config.database).await?;
        let plugins = Plugins::start_with_database(&config.plugins, database).await?;
        let server = Server::bind(config, Some(plugins.hooks())).await?;
        server.run(shutdown_signal()).await;
        drop(plugins);
        anyhow::Ok(())
    })
}

/// Each connection is a file descriptor: raise the soft limit to the hard one.
fn raise_file_limit() {
    match rlimit::increase_nofile_limit(u64::MAX) {
        Ok(limit) => info!(limit, "file descriptor limit"),
        Err(error) => warn!(%error, "cannot raise the file descriptor limit"),
    }
}

async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        match signal(SignalKind::terminate()) {
            Ok(mut term) => {
                tokio::select! {
                    _ = ctrl_c => {}
                    _ = term.recv() => {}
                }
            }
            Err(_) => {
                let _ = ctrl_c.await;
            }
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    info!("signal received");
}
