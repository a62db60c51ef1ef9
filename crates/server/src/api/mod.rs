//! The native HTTP/JSON API: routes, and the OpenAPI document derived from them.

pub mod account;
pub mod changes;
pub mod content;
pub mod events;
pub mod sync;
pub mod tree;

use crate::error::ApiError;
use crate::metrics;
use crate::state::{Acting, SharedState};
use axum::extract::{DefaultBodyLimit, State};
use axum::http::StatusCode;
use axum::response::Response;
use axum::routing::{delete, get, post, put};
use axum::{Json, Router, middleware};
use cpm_proto::{Entry, ErrorBody, Health};
use std::sync::Arc;
use tower_http::compression::predicate::Predicate;
use tower_http::compression::{CompressionLayer, CompressionLevel};
use utoipa::OpenApi;
use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};

/// JSON bodies may carry a move of up to `tree::MAX_MOVE` ids; payloads stream and are not
/// bounded by this.
const JSON_BODY_LIMIT: usize = 16 << 20;

#[derive(OpenApi)]
#[openapi(
    info(title = "cpm", description = "Network message and content store for CPM users, with device sync."),
    paths(
        account::login, account::register_device, account::list_devices, account::revoke_device,
        tree::resolve, tree::get_entry, tree::children, tree::create_folder, tree::delete_folder,
        tree::create_object, tree::set_flags, tree::delete_object, tree::move_entries,
        content::has_blob, content::upload_blob, content::download, content::download_many,
        changes::changes, sync::get_profile, sync::set_profile, sync::sync_changes, sync::sync_entries, health
    ),
    components(schemas(Entry, ErrorBody)),
    modifiers(&BearerAuth)
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        if let Some(components) = openapi.components.as_mut() {
            components.add_security_scheme(
                "bearer",
                SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
            );
        }
    }
}

/// Compresses JSON answers only.
#[derive(Clone, Copy)]
struct JsonOnly;

impl Predicate for JsonOnly {
    fn should_compress<B: axum::body::HttpBody>(&self, response: &axum::http::Response<B>) -> bool {
        response
            .headers()
            .get(axum::http::header::CONTENT_TYPE)
            .and_then(|value| value.to_str().ok())
            .is_some_and(|content_type| content_type.starts_with("application/json"))
    }
}

/// After a request that changed a user's store, the user's connected devices are told to look
/// for news.
async fn ring_after_changes(
    State(state): State<SharedState>,
    mut request: axum::extract::Request,
    next: middleware::Next,
) -> Response {
    // Asking for many payloads at once, or after entries of the view, is a POST that changes nothing.
    let writes = !matches!(*request.method(), axum::http::Method::GET | axum::http::Method::HEAD)
        && !matches!(request.uri().path(), "/v1/contents" | "/v1/sync/entries");
    let acting = Acting::default();
    // A new or revoked device, or a changed profile, may change what is scheduled.
    let path = request.uri().path();
    let touches_timers = path.starts_with("/v1/devices") || path == "/v1/profile";
    if writes {
        request.extensions_mut().insert(acting.clone());
    }
    let response = next.run(request).await;
    if writes && response.status().is_success() {
        if let Some(user) = acting.0.get() {
            // Nobody listening is not an error.
            let _ = state.journal.send(*user);
        }
        if touches_timers {
            state.timers_changed.notify_one();
        }
    }
    response
}

pub fn router(state: SharedState) -> Router {
    Router::new()
        .route("/v1/login", post(account::login))
        .route("/v1/devices", post(account::register_device).get(account::list_devices))
        .route("/v1/devices/{name}", delete(account::revoke_device))
        .route("/v1/entries", get(tree::resolve))
        .route("/v1/entries/{id}", get(tree::get_entry))
        .route("/v1/folders", post(tree::create_folder))
        .route("/v1/folders/{id}", delete(tree::delete_folder))
        .route("/v1/folders/{id}/children", get(tree::children))
        .route("/v1/objects", post(tree::create_object))
        .route("/v1/objects/{id}", delete(tree::delete_object))
        .route("/v1/objects/{id}/flags", put(tree::set_flags))
        .route("/v1/objects/{id}/content", get(content::download))
        .route("/v1/move", post(tree::move_entries))
        .route("/v1/contents", post(content::download_many))
        .route("/v1/blobs/{hash}", put(content::upload_blob).head(content::has_blob))
        .route("/v1/changes", get(changes::changes))
        .route("/v1/profile", get(sync::get_profile).put(sync::set_profile))
        .route("/v1/sync", get(sync::sync_changes))
        .route("/v1/sync/entries", post(sync::sync_entries))
        .route("/v1/events", get(events::events))
        .route("/v1/openapi.json", get(openapi))
        .route("/health", get(health))
        .route("/metrics", get(render_metrics))
        .route_layer(middleware::from_fn_with_state(state.metrics.clone(), metrics::track))
        .route_layer(middleware::from_fn_with_state(Arc::clone(&state), ring_after_changes))
        .fallback(not_found)
        .method_not_allowed_fallback(method_not_allowed)
        .layer(DefaultBodyLimit::max(JSON_BODY_LIMIT))
        // JSON (listings, the change feed) shrinks several times over; payloads are left alone:
        // they are mostly compressed media, and compression would break their ranges.
        .layer(CompressionLayer::new().gzip(true).quality(CompressionLevel::Fastest).compress_when(JsonOnly))
        .with_state(state)
}

#[utoipa::path(get, path = "/health", tag = "system", responses((status = 200, body = Health)))]
pub async fn health(State(state): State<SharedState>) -> Json<Health> {
    Json(Health { status: "ok".into(), time: Some(state.service.clock.now()) })
}

async fn openapi() -> Json<utoipa::openapi::OpenApi> {
    Json(ApiDoc::openapi())
}

async fn render_metrics(State(state): State<SharedState>) -> Response {
    state.metrics.render()
}

async fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such endpoint")
}

async fn method_not_allowed() -> ApiError {
    ApiError::new(StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed", "this endpoint does not take that method")
}
