//! Browsing and changing the tree: lookups, listings, folders, objects, moves, flags, deletes.

use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::{Auth, SharedState};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cpm_proto::{
    CreateFolderRequest, CreateObjectRequest, DeleteFolderQuery, DeleteObjectQuery, Entry, ErrorBody, ListPage,
    ListQuery, MoveRequest, MoveResult, PathQuery, SetFlagsRequest,
};

const DEFAULT_PAGE: u32 = 1000;

#[utoipa::path(get, path = "/v1/entries", tag = "tree", security(("bearer" = [])), params(PathQuery),
    responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
pub async fn resolve(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<Entry>, ApiError> {
    Ok(Json(state.call(move |service| service.resolve(principal.user_id, &query.path)).await?))
}

#[utoipa::path(get, path = "/v1/entries/{id}", tag = "tree", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
pub async fn get_entry(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Entry>, ApiError> {
    Ok(Json(state.call(move |service| service.entry_by_id(principal.user_id, &id)).await?))
}

#[utoipa::path(get, path = "/v1/folders/{id}/children", tag = "tree", security(("bearer" = [])),
    params(("id" = String, Path), ListQuery), responses((status = 200, body = ListPage), (status = 404, body = ErrorBody)))]
pub async fn children(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ListPage>, ApiError> {
    let limit = query.limit.unwrap_or(DEFAULT_PAGE) as usize;
    let page =
        state.call(move |service| service.children(principal.user_id, &id, query.after.as_deref(), limit)).await?;
    Ok(Json(page))
}

#[utoipa::path(post, path = "/v1/folders", tag = "tree", security(("bearer" = [])), request_body = CreateFolderRequest,
    responses((status = 201, body = Entry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn create_folder(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(request): ApiJson<CreateFolderRequest>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    let entry =
        state.call(move |service| service.create_folder(principal.user_id, &request.path, request.parents)).await?;
    Ok((StatusCode::CREATED, Json(entry)))
}

#[utoipa::path(delete, path = "/v1/folders/{id}", tag = "tree", security(("bearer" = [])),
    params(("id" = String, Path), DeleteFolderQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_folder(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeleteFolderQuery>,
) -> Result<StatusCode, ApiError> {
    state.call(move |service| service.delete_folder(principal.user_id, &id, query.recursive)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/objects", tag = "tree", security(("bearer" = [])), request_body = CreateObjectRequest,
    responses((status = 201, body = Entry), (status = 200, body = Entry, description = "with unless_held: a move in the store took this content away from this place; nothing was made, and the answer is the object it became"), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "name clash; blob_missing: upload the content first; held: outside this device's view, and the store holds the content already"),
        (status = 413, body = ErrorBody)))]
pub async fn create_object(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(request): ApiJson<CreateObjectRequest>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    let created = state
        .call(move |service| service.create_object(principal.user_id, principal.device_id.as_deref(), request))
        .await?;
    Ok((if created.new { StatusCode::CREATED } else { StatusCode::OK }, Json(created.entry)))
}

#[utoipa::path(put, path = "/v1/objects/{id}/flags", tag = "tree", security(("bearer" = [])),
    params(("id" = String, Path)), request_body = SetFlagsRequest,
    responses((status = 200, body = Entry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn set_flags(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
    ApiJson(request): ApiJson<SetFlagsRequest>,
) -> Result<Json<Entry>, ApiError> {
    Ok(Json(state.call(move |service| service.set_flags(principal.user_id, &id, &request.flags)).await?))
}

#[utoipa::path(delete, path = "/v1/objects/{id}", tag = "tree", security(("bearer" = [])),
    params(("id" = String, Path), DeleteObjectQuery),
    responses((status = 204), (status = 404, body = ErrorBody), (status = 409, body = ErrorBody)))]
pub async fn delete_object(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<DeleteObjectQuery>,
) -> Result<StatusCode, ApiError> {
    state.call(move |service| service.delete_object(principal.user_id, &id, query.base_modseq)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/move", tag = "tree", security(("bearer" = [])), request_body = MoveRequest,
    responses((status = 200, body = MoveResult), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn move_entries(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(request): ApiJson<MoveRequest>,
) -> Result<Json<MoveResult>, ApiError> {
    Ok(Json(state.call(move |service| service.move_entries(principal.user_id, &request)).await?))
}
