//! A device's sync: its profile, and its view of the change journal.

use crate::convert;
use crate::error::{ApiError, ApiJson, ApiQuery};
use crate::state::{AppState, Auth, SharedState};
use axum::Json;
use axum::extract::State;
use cpm_core::filter::ObjectFacts;
use cpm_core::policy::{ClassPolicy, Effective, merge_preferences};
use cpm_core::profile::CompiledProfile;
use cpm_core::{ChangedRow, EntryKind, Item, Object};
use cpm_proto::{Change, ChangesPage, ChangesQuery, Entry, ErrorBody, ProfileState};
use cpm_store::{DeviceProfile, Store, StoreError, UserId};
use jiff::Timestamp;
use serde_json::{Map, Value};
use std::collections::{BTreeMap, HashMap, HashSet};
use std::sync::Arc;

const DEFAULT_PAGE: u32 = 1000;

/// A device's profile as it applies, with what makes it up.
pub struct DeviceProfileView {
    pub effective: Effective,
    pub revision: i64,
    pub policy: ClassPolicy,
    /// The keys its user set.
    pub preferences: Map<String, Value>,
}

/// The profile a device syncs by: its user's preferences over the operator's defaults for its
/// class, held within the operator's bounds; the zone it registered in when none is set.
pub fn effective_profile(
    store: &dyn Store,
    classes: &BTreeMap<String, ClassPolicy>,
    user: UserId,
    device: &str,
    now: Timestamp,
) -> Result<DeviceProfileView, StoreError> {
    profile_of(store.device_profile(user, device)?, classes, now)
}

/// The largest payload a device may download, when it has a limit.
pub fn download_limit(
    store: &dyn Store,
    classes: &BTreeMap<String, ClassPolicy>,
    user: UserId,
    device: &str,
    now: Timestamp,
) -> Result<Option<u64>, StoreError> {
    let record = store.device_profile(user, device)?;
    let policy = classes.get(&record.class);
    // Downloads are the hot path: most devices have no limit, and that is told without merging.
    let limited = policy
        .is_some_and(|policy| policy.bounds.max_download.is_some() || policy.defaults.contains_key("max_download"))
        || record.preferences.as_deref().is_some_and(|json| json.contains("\"max_download\""));
    if !limited {
        return Ok(None);
    }
    let view = profile_of(record, classes, now)?;
    view.effective.profile.max_download_bytes().map_err(StoreError::Internal)
}

/// [`effective_profile`] of a device record already read.
pub fn profile_of(
    record: DeviceProfile,
    classes: &BTreeMap<String, ClassPolicy>,
    now: Timestamp,
) -> Result<DeviceProfileView, StoreError> {
    let preferences = match record.preferences {
        Some(json) => serde_json::from_str(&json)
            .map_err(|error| StoreError::Internal(format!("stored preferences do not parse: {error}")))?,
        None => Map::new(),
    };
    let policy = classes
        .get(&record.class)
        .cloned()
        .unwrap_or_else(|| ClassPolicy { class: record.class.clone(), ..ClassPolicy::default() });
    let mut effective = policy.effective(&preferences, now).map_err(StoreError::Internal)?;
    if effective.profile.zone.is_none() {
        effective.profile.zone = record.time_zone;
    }
    Ok(DeviceProfileView { effective, revision: record.revision, policy, preferences })
}

fn state_of(view: DeviceProfileView) -> ProfileState {
    let Effective { profile, sources } = view.effective;
    ProfileState { summary: profile.to_string(), profile, revision: view.revision, sources }
}

fn invalid(code: &'static str, message: String) -> ApiError {
    ApiError::new(axum::http::StatusCode::BAD_REQUEST, code, message)
}

#[utoipa::path(get, path = "/v1/profile", tag = "sync", security(("bearer" = [])),
    responses((status = 200, body = ProfileState), (status = 403, body = ErrorBody)))]
pub async fn get_profile(
    State(state): State<SharedState>,
    Auth(principal): Auth,
) -> Result<Json<ProfileState>, ApiError> {
    let device = AppState::device_of(&principal)?;
    let (now, classes) = (state.clock.now(), state.classes());
    let view = state.run(move |store| effective_profile(store, &classes, principal.user_id, &device, now)).await?;
    Ok(Json(state_of(view)))
}

#[utoipa::path(put, path = "/v1/profile", tag = "sync", security(("bearer" = [])),
    request_body(content = Object, description = "preferences to change: any of mode, include, exclude, filter, \
        fields, content, auto, schedule, zone; null gives a key back to the operator's default"),
    responses((status = 200, body = ProfileState), (status = 400, body = ErrorBody), (status = 403, body = ErrorBody)))]
pub async fn set_profile(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(patch): ApiJson<Map<String, Value>>,
) -> Result<Json<ProfileState>, ApiError> {
    let device = AppState::device_of(&principal)?;
    let (now, classes) = (state.clock.now(), state.classes());
    let lookup = device.clone();
    let view = state.run(move |store| effective_profile(store, &classes, principal.user_id, &lookup, now)).await?;
    let mut preferences = view.preferences;
    merge_preferences(&mut preferences, &patch).map_err(|error| invalid("invalid_profile", error))?;
    view.policy.check(&preferences, now).map_err(|error| invalid("outside_bounds", error))?;
    let effective = view.policy.effective(&preferences, now).map_err(|error| invalid("invalid_profile", error))?;
    effective.profile.compile().map_err(|error| invalid("invalid_profile", error))?;
    let json = serde_json::to_string(&preferences).map_err(|error| StoreError::Internal(error.to_string()))?;
    let (now, classes) = (state.clock.now(), state.classes());
    let view = state
        .run(move |store| {
            store.set_device_profile(principal.user_id, &device, &json)?;
            effective_profile(store, &classes, principal.user_id, &device, now)
        })
        .await?;
    Ok(Json(state_of(view)))
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
    let limit = query.limit.unwrap_or(DEFAULT_PAGE) as usize;
    let shared = Arc::clone(&state);
    // A device that syncs after a scheduled instant has done what the schedule asked.
    let settles = state.settle(&device);
    let page = state
        .run(move |store| {
            if settles {
                store.settle_timer(&device)?;
            }
            store.record_sync(&device)?;
            view_page(&shared, store, principal.user_id, &device, query.since, limit, None)
        })
        .await?;
    Ok(Json(page))
}

/// One page of the journal as a device's profile sees it.
pub fn view_page(
    state: &AppState,
    store: &dyn Store,
    user: UserId,
    device: &str,
    since: i64,
    limit: usize,
    unseen_after: Option<Timestamp>,
) -> Result<ChangesPage, StoreError> {
    let view = effective_profile(store, &state.classes(), user, device, state.clock.now())?;
    let profile = view.effective.profile.compile().map_err(StoreError::Internal)?;
    page_through(state, store, user, &profile, since, limit, unseen_after)
}

/// [`view_page`] through a profile already worked out.
pub fn page_through(
    state: &AppState,
    store: &dyn Store,
    user: UserId,
    profile: &CompiledProfile,
    since: i64,
    limit: usize,
    unseen_after: Option<Timestamp>,
) -> Result<ChangesPage, StoreError> {
    let now = state.clock.now();
    let batch = store.changes(user, since, limit)?;
    let mut view = DeviceView {
        state,
        store,
        user,
        profile,
        now,
        folder_paths: HashMap::new(),
        changes: Vec::new(),
        sent: HashSet::new(),
        unseen_after,
    };
    for row in &batch.rows {
        view.push(row)?;
    }
    Ok(ChangesPage { changes: view.changes, cursor: batch.cursor, has_more: batch.has_more })
}

/// The journal seen through one device's profile.
///
/// Invariant: a device never receives a record outside its record filter, nor a detail outside
/// its field filter; each changed row reaches it as an upsert of what it may hold or a removal.
struct DeviceView<'a> {
    state: &'a AppState,
    store: &'a dyn Store,
    user: UserId,
    profile: &'a CompiledProfile,
    now: Timestamp,
    folder_paths: HashMap<String, String>,
    changes: Vec<Change>,
    /// Each record goes out once per page: rows and a moved folder's descendants overlap.
    sent: HashSet<String>,
    /// Records created after this instant were never in the device's view, so their being
    /// outside it is no news (for hints only; the feed itself reports every removal).
    unseen_after: Option<Timestamp>,
}

impl DeviceView<'_> {
    fn push(&mut self, row: &ChangedRow) -> Result<(), StoreError> {
        match row {
            ChangedRow::Deleted { kind, id, modseq } => self.remove(*kind, id, *modseq),
            ChangedRow::Live(item) => {
                self.evaluate(item)?;
                // A moved folder can carry objects into or out of a path-based profile.
                if let Item::Folder(folder) = item
                    && self.profile.depends_on_paths()
                {
                    for below in self.store.descendants(self.user, &folder.id)? {
                        self.evaluate(&below)?;
                    }
                }
            }
        }
        Ok(())
    }

    fn evaluate(&mut self, item: &Item) -> Result<(), StoreError> {
        if !self.sent.insert(item.id().to_owned()) {
            return Ok(());
        }
        let wanted = match item {
            Item::Folder(folder) => match &folder.parent_id {
                None => true,
                Some(parent) => {
                    let path = convert::child_path_text(&self.folder_path(parent)?, &folder.name);
                    self.profile.wants_folder(&path)
                }
            },
            Item::Object(object) => {
                let path = convert::child_path_text(&self.folder_path(&object.folder_id)?, &object.name);
                self.profile.wants_object(&facts(object, &path), self.now)
            }
        };
        if wanted {
            let entry = project(convert::entry(self.state, item, None), self.profile);
            self.changes.push(Change {
                modseq: item.modseq(),
                kind: item.kind(),
                id: item.id().to_owned(),
                deleted: false,
                entry: Some(entry),
            });
        } else {
            let created = match item {
                Item::Folder(folder) => folder.created,
                Item::Object(object) => object.created,
            };
            if self.unseen_after.is_none_or(|after| created <= after) {
                self.remove(item.kind(), item.id(), item.modseq());
            }
        }
        Ok(())
    }

    fn remove(&mut self, kind: EntryKind, id: &str, modseq: i64) {
        self.sent.insert(id.to_owned());
        self.changes.push(Change { modseq, kind, id: id.to_owned(), deleted: true, entry: None });
    }

    fn folder_path(&mut self, folder_id: &str) -> Result<String, StoreError> {
        if let Some(path) = self.folder_paths.get(folder_id) {
            return Ok(path.clone());
        }
        let path = self.store.folder_path(self.user, folder_id)?.to_string();
        self.folder_paths.insert(folder_id.to_owned(), path.clone());
        Ok(path)
    }
}

fn facts<'a>(object: &'a Object, path: &'a str) -> ObjectFacts<'a> {
    let message = object.message.as_deref();
    ObjectFacts {
        path,
        name: &object.name,
        kind: object.kind,
        content_type: &object.content_type,
        size: object.size,
        created: object.created,
        modified: object.modified,
        date: message.and_then(|message| message.date),
        flags: &object.flags,
        from: message.and_then(|message| message.from.as_deref()),
        to: message.map_or(&[], |message| message.to.as_slice()),
        subject: message.and_then(|message| message.subject.as_deref()),
    }
}

/// Drops the details the device does not keep.
fn project(mut entry: Entry, profile: &CompiledProfile) -> Entry {
    macro_rules! keep {
        ($($field:ident),*) => {
            $(if !profile.keeps(stringify!($field)) { entry.$field = None; })*
        };
    }
    keep!(
        content_type,
        size,
        hash,
        created,
        modified,
        flags,
        from,
        to,
        cc,
        subject,
        date,
        message_id,
        conversation_id,
        attachments
    );
    entry
}
