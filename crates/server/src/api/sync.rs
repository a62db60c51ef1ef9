//! A device's sync: its profile, and its view of the change journal.

use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::{AppState, Auth, SharedState};
use axum::Json;
use axum::extract::State;
use cpm_proto::{ChangesPage, ChangesQuery, ErrorBody, MAX_VIEW_IDS, ProfileState, ViewAnswer, ViewRequest};
use cpm_service::view::FeedRequest;
use serde_json::{Map, Value};

const DEFAULT_PAGE: u32 = 1000;

#[utoipa::path(get, path = "/v1/profile", tag = "sync", security(("bearer" = [])),
    responses((status = 200, body = ProfileState), (status = 403, body = ErrorBody)))]
pub async fn get_profile(
    State(state): State<SharedState>,
    Auth(principal): Auth,
) -> Result<Json<ProfileState>, ApiError> {
    let device = AppState::device_of(&principal)?;
    let view = state.call(move |service| service.device_profile(principal.user_id, &device)).await?;
    Ok(Json(view.state()))
}

#[utoipa::path(put, path = "/v1/profile", tag = "sync", security(("bearer" = [])),
    request_body(content = Object, description = "preferences to change: any of mode, include, exclude, filter, \
        fields, content, auto, schedule, zone, max_download; null gives a key back to the operator's default"),
    responses((status = 200, body = ProfileState), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_profile(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(patch): ApiJson<Map<String, Value>>,
) -> Result<Json<ProfileState>, ApiError> {
    let device = AppState::device_of(&principal)?;
    Ok(Json(state.call(move |service| service.set_preferences(principal.user_id, &device, &patch)).await?))
}

#[utoipa::path(get, path = "/v1/sync", tag = "sync", security(("bearer" = [])), params(ChangesQuery),
    responses((status = 200, body = ChangesPage, description = "the journal as this device's profile sees it: \
        upserts of records it holds (with only the details it keeps), removals of records it must not hold"),
        (status = 403, body = ErrorBody), (status = 410, body = ErrorBody)))]
pub async fn sync_changes(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<Json<ChangesPage>, ApiError> {
    let device = AppState::device_of(&principal)?;
    let request = FeedRequest {
        since: query.since,
        limit: query.limit.unwrap_or(DEFAULT_PAGE) as usize,
        at: query.at,
        seen_at: query.seen_at,
        view: query.view,
    };
    // A device that syncs after a scheduled instant has done what the schedule asked.
    let settles = state.settle(&device);
    let page = state
        .call(move |service| {
            if settles {
                service.store.settle_timer(&device)?;
            }
            service.store.record_sync(&device)?;
            service.device_feed(principal.user_id, &device, request)
        })
        .await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/v1/sync/entries", tag = "sync", security(("bearer" = [])), request_body = ViewRequest,
    responses((status = 200, body = ViewAnswer, description = "for each id: an upsert of what this device may hold, \
        or a removal"), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn sync_entries(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(request): ApiJson<ViewRequest>,
) -> Result<Json<ViewAnswer>, ApiError> {
    let device = AppState::device_of(&principal)?;
    if request.ids.len() > MAX_VIEW_IDS {
        return Err(ApiError::bad_request(format!("ask after at most {MAX_VIEW_IDS} entries at a time")));
    }
    let changes = state
        .call(move |service| {
            service.device_entries(principal.user_id, &device, &request.ids, request.at, request.view.as_deref())
        })
        .await?;
    Ok(Json(ViewAnswer { changes }))
}
