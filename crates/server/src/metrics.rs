//! Prometheus metrics, served at `/metrics`.

use axum::extract::{MatchedPath, Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use prometheus_client::encoding::EncodeLabelSet;
use prometheus_client::metrics::counter::Counter;
use prometheus_client::metrics::family::Family;
use prometheus_client::metrics::gauge::Gauge;
use prometheus_client::registry::Registry;
use std::sync::Arc;

#[derive(Debug, Clone, Hash, PartialEq, Eq, EncodeLabelSet)]
pub struct RequestLabels {
    pub method: String,
    pub route: String,
    pub status: u16,
}

#[derive(Clone)]
pub struct Metrics {
    registry: Arc<Registry>,
    pub requests: Family<RequestLabels, Counter>,
    pub upload_bytes: Counter,
    pub download_bytes: Counter,
    pub deduplicated_uploads: Counter,
    pub gc_blobs_removed: Counter,
    pub gc_tombstones_purged: Counter,
    /// Devices holding an event socket now.
    pub connected_devices: Gauge,
}

impl Default for Metrics {
    fn default() -> Self {
        let mut registry = Registry::with_prefix("cpm");
        let requests = Family::<RequestLabels, Counter>::default();
        let upload_bytes = Counter::default();
        let download_bytes = Counter::default();
        let deduplicated_uploads = Counter::default();
        let gc_blobs_removed = Counter::default();
        let gc_tombstones_purged = Counter::default();
        let connected_devices = Gauge::default();
        registry.register("http_requests", "HTTP requests answered", requests.clone());
        registry.register("upload_bytes", "Payload bytes received", upload_bytes.clone());
        registry.register("download_bytes", "Payload bytes sent", download_bytes.clone());
        registry.register(
            "deduplicated_uploads",
            "Uploads answered without receiving bytes, the content being stored already",
            deduplicated_uploads.clone(),
        );
        registry.register("gc_blobs_removed", "Unreferenced blobs collected", gc_blobs_removed.clone());
        registry.register(
            "gc_tombstones_purged",
            "Tombstones purged after their retention",
            gc_tombstones_purged.clone(),
        );
        registry.register("connected_devices", "Devices connected for sync hints", connected_devices.clone());
        Self {
            registry: Arc::new(registry),
            requests,
            upload_bytes,
            download_bytes,
            deduplicated_uploads,
            gc_blobs_removed,
            gc_tombstones_purged,
            connected_devices,
        }
    }
}

impl Metrics {
    pub fn render(&self) -> Response {
        let mut text = String::new();
        match prometheus_client::encoding::prometheus_text::encode(&mut text, &self.registry) {
            Ok(()) => {
                ([(axum::http::header::CONTENT_TYPE, prometheus_client::encoding::prometheus_text::CONTENT_TYPE)], text)
                    .into_response()
            }
            Err(_) => axum::http::StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        }
    }
}

/// Counts every answered request by method, route template (never the raw path: ids would make
/// the label set unbounded) and status.
pub async fn track(State(metrics): State<Metrics>, request: Request, next: Next) -> Response {
    let method = request.method().to_string();
    let route = request.extensions().get::<MatchedPath>().map_or("unmatched", MatchedPath::as_str).to_owned();
    let response = next.run(request).await;
    metrics.requests.get_or_create(&RequestLabels { method, route, status: response.status().as_u16() }).inc();
    response
}
