//! `cpm serve`: the network store on the embedded default.

use anyhow::{Result, anyhow};
use clap::Args;
use cpm_core::{Clock, SimulatedClock, SystemClock};
use cpm_server::{Server, ServerConfig};
use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::sync::Arc;

#[derive(Args)]
pub struct ServeArgs {
    /// Where the store keeps its database and content.
    #[arg(long, default_value = "./cpm-data")]
    data: PathBuf,
    /// Address to listen on [default: 127.0.0.1:7373, or server.listen from --config].
    #[arg(long)]
    listen: Option<SocketAddr>,
    /// Operator settings (TOML).
    #[arg(long)]
    config: Option<PathBuf>,
    /// Run on a simulated clock starting at this instant (RFC 3339, e.g.
    /// 2026-11-25T23:59:50+01:00), for demos and tests; the real clock by default.
    #[arg(long)]
    clock_start: Option<jiff::Timestamp>,
    /// How many times as fast as real time the simulated clock runs.
    #[arg(long, requires = "clock_start", default_value_t = 1.0)]
    clock_speed: f64,
}

pub async fn run(args: ServeArgs) -> Result<()> {
    let mut config = match &args.config {
        Some(path) => ServerConfig::load(path).map_err(|error| anyhow!(error))?,
        None => ServerConfig::default(),
    };
    if let Some(listen) = args.listen {
        config.listen = listen;
    }
    let clock: Arc<dyn Clock> = match args.clock_start {
        Some(start) => Arc::new(SimulatedClock::new(start, args.clock_speed).map_err(|error| anyhow!(error))?),
        None => Arc::new(SystemClock),
    };
    let server = Server::bind(&args.data, config, clock).await.map_err(|error| anyhow!(error))?;
    let address = server.local_addr()?;
    // Scripts and tests read this line to learn the port (with --listen 127.0.0.1:0).
    let clock = match args.clock_start {
        Some(start) => format!("; simulated clock from {start}, {}× real time", args.clock_speed),
        None => String::new(),
    };
    println!("cpm: serving http://{address} (data: {}{clock})", args.data.display());
    std::io::stdout().flush()?;
    tracing::info!(%address, public_url = server.public_url(), "serving");
    if let Some(path) = args.config.clone() {
        tokio::spawn(reload_on_hangup(path, server.settings()));
    }
    server.run(shutdown_signal()).await?;
    tracing::info!("stopped");
    Ok(())
}

/// SIGHUP reloads the operator settings; a file that no longer parses leaves the old ones in
/// force, and says why.
#[cfg(unix)]
async fn reload_on_hangup(path: PathBuf, settings: cpm_server::Settings) {
    let Ok(mut hangups) = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::hangup()) else {
        tracing::warn!("cannot listen for SIGHUP: operator settings will not be reloaded");
        return;
    };
    while hangups.recv().await.is_some() {
        match ServerConfig::load(&path) {
            Ok(config) => {
                settings.reload(&config);
                tracing::info!(path = %path.display(), "operator settings reloaded (device classes; other keys take a restart)");
            }
            Err(error) => tracing::warn!(%error, "operator settings not reloaded; the previous ones stay in force"),
        }
    }
}

#[cfg(not(unix))]
async fn reload_on_hangup(_path: PathBuf, _settings: cpm_server::Settings) {}

async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let terminate = async {
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(mut signal) => {
                    signal.recv().await;
                }
                Err(_) => std::future::pending::<()>().await,
            }
        };
        tokio::select! {
            _ = interrupt => {}
            () = terminate => {}
        }
    }
    #[cfg(not(unix))]
    {
        let _ = interrupt.await;
    }
}
