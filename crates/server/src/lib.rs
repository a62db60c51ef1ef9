//! The cpm server: the native HTTP/JSON API over a store, and the store's housekeeping.

pub mod api;
pub mod config;
pub mod error;
pub mod metrics;
mod schedules;
pub mod state;

pub use config::ServerConfig;

use axum::serve::ListenerExt;
use cpm_core::Clock;
use cpm_service::{Limits, Service};
use cpm_store::{SqliteStore, Store};
use state::{AppState, SharedState};
use std::future::Future;
use std::net::SocketAddr;
use std::path::Path;
use std::sync::Arc;

/// A server bound to its address, ready to run.
pub struct Server {
    state: SharedState,
    listener: tokio::net::TcpListener,
}

impl Server {
    /// Opens the embedded store under `data` and binds `config.listen` (port 0: any free port).
    pub async fn bind(data: &Path, config: ServerConfig, clock: Arc<dyn Clock>) -> Result<Self, String> {
        let settings = config.store_settings();
        let data = data.to_owned();
        let store_clock = Arc::clone(&clock);
        let store = tokio::task::spawn_blocking(move || {
            let store = SqliteStore::open(&data, store_clock, settings)?;
            store.blobs().remove_partial_uploads()?;
            Ok::<_, cpm_store::StoreError>(store)
        })
        .await
        .map_err(|error| error.to_string())?
        .map_err(|error| format!("cannot open the store: {error}"))?;
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .map_err(|error| format!("cannot listen on {}: {error}", config.listen))?;
        let address = listener.local_addr().map_err(|error| error.to_string())?;
        let public_url = config.public_url.clone().unwrap_or_else(|| format!("http://{address}"));
        let limits = Limits { max_object_bytes: config.max_object_bytes, max_message_bytes: config.max_message_bytes };
        let service =
            Service::new(Arc::new(store), clock, limits, &public_url, config.classes.clone(), config.quota_bytes);
        let state = Arc::new(AppState {
            service: Arc::new(service),
            config,
            journal: tokio::sync::broadcast::channel(16).0,
            online: Default::default(),
            owed: Default::default(),
            timers_changed: tokio::sync::Notify::new(),
            metrics: Default::default(),
        });
        Ok(Self { state, listener })
    }

    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    pub fn public_url(&self) -> &str {
        self.state.service.public_url()
    }

    /// A handle that puts reloaded operator settings in force while the server runs.
    pub fn settings(&self) -> Settings {
        Settings { state: Arc::clone(&self.state) }
    }

    /// Serves until `shutdown` completes, then finishes the requests under way.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> std::io::Result<()> {
        let collector = tokio::spawn(collect_garbage(Arc::clone(&self.state)));
        let scheduler = tokio::spawn(schedules::run(Arc::clone(&self.state)));
        let app = api::router(self.state);
        // Headers and body go out as separate writes: without NODELAY, Nagle's algorithm holds
        // the body until the client's delayed ACK, some 40 ms per small response.
        let listener = self.listener.tap_io(|stream| {
            if let Err(error) = stream.set_nodelay(true) {
                tracing::debug!(%error, "cannot set TCP_NODELAY");
            }
        });
        let served = axum::serve(listener, app).with_graceful_shutdown(shutdown).await;
        collector.abort();
        scheduler.abort();
        served
    }
}

/// Purges expired tombstones and unreferenced blobs, once at start and then every `gc_interval`.
async fn collect_garbage(state: SharedState) {
    let mut ticks = tokio::time::interval(state.config.gc_interval);
    loop {
        ticks.tick().await;
        let store: Arc<dyn Store> = Arc::clone(&state.service.store);
        match tokio::task::spawn_blocking(move || store.collect_garbage()).await {
            Ok(Ok(report)) => {
                state.metrics.gc_blobs_removed.inc_by(report.blobs_removed);
                state.metrics.gc_tombstones_purged.inc_by(report.tombstones_purged);
                if report != cpm_store::GcReport::default() {
                    tracing::info!(?report, "collected garbage");
                }
            }
            Ok(Err(error)) => tracing::error!(%error, "garbage collection failed"),
            Err(error) => tracing::error!(%error, "garbage collection task failed"),
        }
    }
}

/// Reloads what can change while the server runs: the device class defaults and bounds, and the
/// user quota. The listening address, size limits and collection intervals take a restart.
pub struct Settings {
    state: SharedState,
}

impl Settings {
    pub fn reload(&self, config: &ServerConfig) {
        self.state.service.set_settings(config.classes.clone(), config.quota_bytes);
        self.state.timers_changed.notify_one();
    }
}
