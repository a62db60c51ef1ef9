//! Browsing and changing the tree: lookups, listings, folders, objects, moves, flags, deletes.

use crate::convert::{self, child_path};
use crate::error::{ApiError, ApiJson, ApiPath, ApiQuery};
use crate::state::{Auth, SharedState};
use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use cpm_core::message::parse_message;
use cpm_core::{Item, Name, ObjectKind, StorePath};
use cpm_proto::{
    CreateFolderRequest, CreateObjectRequest, DeleteFolderQuery, DeleteObjectQuery, Entry, ErrorBody, ListPage,
    ListQuery, MoveRequest, MoveResult, PathQuery, SetFlagsRequest,
};
use cpm_store::{NewObject, StoreError, is_valid_hash};

const DEFAULT_PAGE: u32 = 1000;
/// The most entries one move may name; a larger set is split by the client.
pub const MAX_MOVE: usize = 100_000;

fn store_path(raw: &str) -> Result<StorePath, ApiError> {
    StorePath::parse(raw).map_err(|error| ApiError::invalid_name(error.to_string()))
}

fn name(raw: &str) -> Result<Name, ApiError> {
    Name::parse(raw).map_err(|error| ApiError::invalid_name(format!("bad name {raw:?}: {error}")))
}

/// Ids name their kind; a folder route given an object id (or the reverse) finds nothing.
fn expect_kind(id: &str, prefix: char, what: &str) -> Result<(), ApiError> {
    if id.starts_with(prefix) { Ok(()) } else { Err(StoreError::NotFound(format!("no {what} with id {id}")).into()) }
}

/// `type/subtype` with optional parameters, in printable ASCII.
fn valid_content_type(raw: &str) -> bool {
    let essence = raw.split(';').next().unwrap_or_default().trim();
    let shape = essence.split_once('/').is_some_and(|(kind, sub)| {
        !kind.is_empty() && !sub.is_empty() && !sub.contains('/') && !essence.contains(char::is_whitespace)
    });
    shape && raw.len() <= 255 && raw.bytes().all(|b| (b' '..=b'~').contains(&b))
}

async fn located(state: &SharedState, user: i64, items: Vec<Item>) -> Result<Vec<Entry>, ApiError> {
    let located = state.run(move |store| convert::with_paths(store, user, items)).await?;
    Ok(located.iter().map(|(item, path)| convert::entry(state, item, Some(path.clone()))).collect())
}

async fn located_one(state: &SharedState, user: i64, item: Item) -> Result<Entry, ApiError> {
    located(state, user, vec![item])
        .await?
        .pop()
        .ok_or_else(|| StoreError::Internal("an entry vanished while its path was looked up".into()).into())
}

#[utoipa::path(get, path = "/v1/entries", tag = "tree", security(("bearer" = [])), params(PathQuery),
    responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
pub async fn resolve(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiQuery(query): ApiQuery<PathQuery>,
) -> Result<Json<Entry>, ApiError> {
    let path = store_path(&query.path)?;
    let shown = path.to_string();
    let item = state.run(move |store| store.resolve(principal.user_id, &path)).await?;
    Ok(Json(convert::entry(&state, &item, Some(shown))))
}

#[utoipa::path(get, path = "/v1/entries/{id}", tag = "tree", security(("bearer" = [])),
    params(("id" = String, Path)), responses((status = 200, body = Entry), (status = 404, body = ErrorBody)))]
pub async fn get_entry(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
) -> Result<Json<Entry>, ApiError> {
    let item = state.run(move |store| store.item(principal.user_id, &id)).await?;
    Ok(Json(located_one(&state, principal.user_id, item).await?))
}

#[utoipa::path(get, path = "/v1/folders/{id}/children", tag = "tree", security(("bearer" = [])),
    params(("id" = String, Path), ListQuery), responses((status = 200, body = ListPage), (status = 404, body = ErrorBody)))]
pub async fn children(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
    ApiQuery(query): ApiQuery<ListQuery>,
) -> Result<Json<ListPage>, ApiError> {
    expect_kind(&id, 'f', "folder")?;
    let limit = query.limit.unwrap_or(DEFAULT_PAGE) as usize;
    let (folder, batch) = state
        .run(move |store| {
            let batch = store.list(principal.user_id, &id, query.after.as_deref(), limit)?;
            Ok((store.folder_path(principal.user_id, &id)?, batch))
        })
        .await?;
    let entries =
        batch.items.iter().map(|item| convert::entry(&state, item, Some(child_path(&folder, item.name())))).collect();
    Ok(Json(ListPage { entries, next: batch.next }))
}

#[utoipa::path(post, path = "/v1/folders", tag = "tree", security(("bearer" = [])), request_body = CreateFolderRequest,
    responses((status = 201, body = Entry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody)))]
pub async fn create_folder(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(request): ApiJson<CreateFolderRequest>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    let path = store_path(&request.path)?;
    let shown = path.to_string();
    let folder = state.run(move |store| store.create_folder(principal.user_id, &path, request.parents)).await?;
    Ok((StatusCode::CREATED, Json(convert::entry(&state, &Item::Folder(folder), Some(shown)))))
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
    expect_kind(&id, 'f', "folder")?;
    state.run(move |store| store.delete(principal.user_id, &id, query.recursive, None)).await?;
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(post, path = "/v1/objects", tag = "tree", security(("bearer" = [])), request_body = CreateObjectRequest,
    responses((status = 201, body = Entry), (status = 400, body = ErrorBody), (status = 404, body = ErrorBody),
        (status = 409, body = ErrorBody, description = "name clash, or blob_missing: upload the content first"),
        (status = 413, body = ErrorBody)))]
pub async fn create_object(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(request): ApiJson<CreateObjectRequest>,
) -> Result<(StatusCode, Json<Entry>), ApiError> {
    let name = name(&request.name)?;
    if !is_valid_hash(&request.hash) {
        return Err(ApiError::bad_request(format!(
            "bad hash {:?}: expected 64 lowercase hex digits of BLAKE3",
            request.hash
        )));
    }
    if let Some(content_type) = request.content_type.as_deref().filter(|ct| !valid_content_type(ct)) {
        return Err(ApiError::bad_request(format!("bad content type {content_type:?}: expected type/subtype")));
    }
    let max_message = state.config.max_message_bytes;
    let quota_bytes = state.quota_bytes();
    let user = principal.user_id;
    let object = state
        .run(move |store| {
            let (content_type, message) = match request.kind {
                ObjectKind::File => {
                    (request.content_type.unwrap_or_else(|| "application/octet-stream".to_owned()), None)
                }
                ObjectKind::Message => {
                    if !store.has_blob(user, &request.hash)? {
                        return Err(StoreError::BlobMissing(format!(
                            "content {} has not been uploaded yet",
                            request.hash
                        )));
                    }
                    let path = store.blob_path(&request.hash);
                    if std::fs::metadata(&path)?.len() > max_message {
                        return Err(StoreError::TooLarge(format!("a message may be at most {max_message} bytes")));
                    }
                    let info = parse_message(&std::fs::read(&path)?)
                        .map_err(|error| StoreError::Invalid(error.to_string()))?;
                    (info.content_type.clone(), Some(Box::new(info)))
                }
            };
            let new = NewObject {
                folder_id: request.folder_id,
                name,
                kind: request.kind,
                hash: request.hash,
                content_type,
                message,
                modified: request.modified,
                replace: request.replace,
                base_modseq: request.base_modseq,
                quota_bytes,
            };
            store.create_object(user, new)
        })
        .await?;
    Ok((StatusCode::CREATED, Json(located_one(&state, user, Item::Object(object)).await?)))
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
    expect_kind(&id, 'o', "object")?;
    let object = state.run(move |store| store.set_flags(principal.user_id, &id, &request.flags)).await?;
    Ok(Json(located_one(&state, principal.user_id, Item::Object(object)).await?))
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
    expect_kind(&id, 'o', "object")?;
    state.run(move |store| store.delete(principal.user_id, &id, false, query.base_modseq)).await?;
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
    if request.ids.len() > MAX_MOVE {
        return Err(ApiError::bad_request(format!("one move may name at most {MAX_MOVE} entries")));
    }
    let new_name = request.name.as_deref().map(name).transpose()?;
    let user = principal.user_id;
    let moved =
        state.run(move |store| store.move_items(user, &request.ids, request.to.as_deref(), new_name.as_ref())).await?;
    Ok(Json(MoveResult { entries: located(&state, user, moved).await? }))
}

#[cfg(test)]
mod tests {
    use super::valid_content_type;

    #[test]
    fn content_types_need_a_type_and_a_subtype() {
        for ok in ["audio/mpeg", "text/plain; charset=utf-8", "application/vnd.ms-excel"] {
            assert!(valid_content_type(ok), "{ok}");
        }
        for bad in ["", "audio", "audio/", "/mpeg", "a/b/c", "audio /mpeg", "audio/mp\u{e9}g"] {
            assert!(!valid_content_type(bad), "{bad}");
        }
    }
}
