//! The change journal: what changed since a cursor.

use crate::error::{ApiError, ApiQuery};
use crate::state::{Auth, SharedState};
use axum::Json;
use axum::extract::State;
use cpm_proto::{ChangesPage, ChangesQuery, ErrorBody};

const DEFAULT_PAGE: u32 = 1000;

#[utoipa::path(get, path = "/v1/changes", tag = "sync", security(("bearer" = [])), params(ChangesQuery),
    responses((status = 200, body = ChangesPage), (status = 400, body = ErrorBody),
        (status = 410, body = ErrorBody, description = "resync_required: the cursor is older than the tombstones kept")))]
pub async fn changes(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiQuery(query): ApiQuery<ChangesQuery>,
) -> Result<Json<ChangesPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE) as usize;
    Ok(Json(state.call(move |service| service.journal(principal.user_id, query.since, limit)).await?))
}
