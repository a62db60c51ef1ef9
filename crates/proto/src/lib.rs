//! Wire types of cpm's native HTTP/JSON API (`/v1`), shared by the server and the client.
//!
//! These types are the contract: handlers and clients both speak them, and the OpenAPI document
//! served at `/v1/openapi.json` is derived from them, so the description cannot drift from the code.

use cpm_core::EntryKind;
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use utoipa::{IntoParams, ToSchema};

pub use cpm_core::message::AttachmentSummary;

/// Header carrying the BLAKE3 hash a client declares for an uploaded blob (also the URL key).
pub const CONTENT_HASH_HEADER: &str = "x-cpm-blake3";

/// Every error answer: a stable machine-readable `code` and a sentence for people.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ErrorBody {
    pub code: String,
    pub message: String,
}

/// A folder, file or message as listed or returned by the store.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Entry {
    #[schema(value_type = String, example = "file")]
    pub kind: EntryKind,
    pub id: String,
    pub name: String,
    /// Absolute path in the store. Given in listings and lookups; absent in the change feed,
    /// where a row's path may change through a move of an ancestor that the row itself never saw.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub path: Option<String>,
    /// The folder holding this entry; absent only for the root folder.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub parent_id: Option<String>,
    pub modseq: i64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub created: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub modified: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub size: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub content_type: Option<String>,
    /// BLAKE3 hash of the payload, lowercase hex.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub hash: Option<String>,
    /// Absolute URL of the payload; stable across moves and renames (it names the object id).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub link: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub flags: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub from: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub to: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub cc: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub subject: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub date: Option<Timestamp>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub message_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub conversation_id: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<Vec<Object>>)]
    pub attachments: Option<Vec<AttachmentSummary>>,
}

/// One page of a folder listing: folders first, then objects, each by name.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ListPage {
    pub entries: Vec<Entry>,
    /// Pass as `after` to get the next page; absent on the last page.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct ListQuery {
    pub after: Option<String>,
    pub limit: Option<u32>,
}

#[derive(Debug, Clone, Serialize, Deserialize, IntoParams)]
pub struct PathQuery {
    /// An absolute store path, e.g. `/content/favourite song`.
    pub path: String,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct DeleteObjectQuery {
    /// Refuse with 409 `conflict` unless the object is still at this modseq.
    pub base_modseq: Option<i64>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct DeleteFolderQuery {
    /// Delete a non-empty folder with everything below it.
    #[serde(default)]
    pub recursive: bool,
}

/// One changed row: its current state, or a tombstone when it was deleted.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Change {
    pub modseq: i64,
    #[schema(value_type = String)]
    pub kind: EntryKind,
    pub id: String,
    pub deleted: bool,
    /// The row as it is now; absent for a tombstone.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub entry: Option<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ChangesPage {
    pub changes: Vec<Change>,
    /// The modseq this page brings the caller up to: pass it as `since` next time.
    pub cursor: i64,
    pub has_more: bool,
    /// For a device's feed: the instant its view was read at. Pass it as `at` for the next pages
    /// of the same sync, and as `seen_at` in the next sync.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub time: Option<Timestamp>,
}

#[derive(Debug, Clone, Default, Serialize, Deserialize, IntoParams)]
pub struct ChangesQuery {
    #[serde(default)]
    pub since: i64,
    pub limit: Option<u32>,
    /// A device's feed: read every page of one sync at this instant (the first page's `time`).
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub at: Option<Timestamp>,
    /// A device's feed: the `time` of its last sync. Objects that entered or left its view since
    /// then only because they aged (a filter on `age`) come in the last page.
    #[serde(default)]
    #[param(value_type = Option<String>, format = DateTime)]
    pub seen_at: Option<Timestamp>,
    /// A device's feed: the profile's view tag the sync plans with; a profile changed since is
    /// refused with 409 `profile_changed`, and the device begins its sync again.
    #[serde(default)]
    pub view: Option<String>,
}

/// `POST /v1/sync/entries`: how some entries stand in the device's view now.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ViewRequest {
    /// Folder and object ids, at most [`MAX_VIEW_IDS`].
    pub ids: Vec<String>,
    /// Read the view at this instant (a sync's `time`); now when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub at: Option<Timestamp>,
    /// The profile's view tag the sync plans with, as in the feed.
    #[serde(default)]
    pub view: Option<String>,
}

/// The most ids one `POST /v1/sync/entries` may ask after.
pub const MAX_VIEW_IDS: usize = 10_000;

/// For each id asked after: an upsert of what the device may hold, or a removal.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ViewAnswer {
    pub changes: Vec<Change>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct LoginRequest {
    pub user: String,
    pub password: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct TokenResponse {
    pub user: String,
    pub token: String,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisterDeviceRequest {
    pub user: String,
    pub password: String,
    pub name: String,
    /// pc, pda, phone, tablet or other.
    pub class: String,
    /// IANA time zone of the device, e.g. `Europe/Paris`.
    #[serde(default)]
    pub time_zone: Option<String>,
    /// The id of one of the user's devices this one takes the place of (the same directory,
    /// registered again): that device is revoked and its preferences carried over.
    #[serde(default)]
    pub replaces: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct RegisteredDevice {
    pub device: Device,
    /// The device's bearer token; shown once, stored by the server only as a hash.
    pub token: String,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, ToSchema)]
pub struct Device {
    pub id: String,
    pub name: String,
    pub class: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub time_zone: Option<String>,
    #[schema(value_type = String, format = DateTime)]
    pub registered: Timestamp,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_seen: Option<Timestamp>,
    pub revoked: bool,
    /// When it last synced (to the minute).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub last_sync: Option<Timestamp>,
    /// Connected now for sync hints (`cpm agent` running).
    #[serde(default)]
    pub online: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateFolderRequest {
    /// Absolute path of the folder to create.
    pub path: String,
    /// Create missing parents, and succeed when the folder exists (like `mkdir -p`).
    #[serde(default)]
    pub parents: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct CreateObjectRequest {
    pub folder_id: String,
    pub name: String,
    #[schema(value_type = String, example = "file")]
    pub kind: cpm_core::ObjectKind,
    /// BLAKE3 of the payload, which must already be uploaded with `PUT /v1/blobs/{hash}`.
    pub hash: String,
    /// Taken from the name's extension when absent (messages: detected from their bytes).
    #[serde(default)]
    pub content_type: Option<String>,
    /// Replace the payload of the object that has this name (keeping its id) instead of
    /// refusing the name clash.
    #[serde(default)]
    pub replace: bool,
    /// With `replace`: refuse with 409 `conflict` unless the object is still at this modseq, so a
    /// device never overwrites a version it has not seen.
    #[serde(default)]
    pub base_modseq: Option<i64>,
    /// When the content was last modified on the device; the server's time when absent.
    #[serde(default)]
    #[schema(value_type = Option<String>, format = DateTime)]
    pub modified: Option<Timestamp>,
    /// From a device re-reading its whole view: refuse with 409 `held` when that device's view
    /// would leave the new object out and a live object holds this content already; and when a
    /// move in the store took this content away from this place, make nothing and answer (200)
    /// with the object it became.
    #[serde(default)]
    pub unless_held: bool,
}

/// Moves and renames, of one entry or many at once (one transaction: all or nothing).
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveRequest {
    /// Folder and object ids to move.
    pub ids: Vec<String>,
    /// The folder to move them into; their current folder when absent (a rename).
    #[serde(default)]
    pub to: Option<String>,
    /// A new name; only when moving a single entry.
    #[serde(default)]
    pub name: Option<String>,
    /// One object, to `to` under `name`, brought back if it was deleted meanwhile (a device
    /// moving its copy of an object someone deleted keeps that object rather than making a
    /// second); refused with `not_found` once its tombstone or content is gone.
    #[serde(default)]
    pub revive: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct MoveResult {
    pub entries: Vec<Entry>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct SetFlagsRequest {
    /// The object's complete new set of flags, e.g. `["seen", "flagged"]`.
    pub flags: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct Health {
    pub status: String,
    /// The server's time: schedules fire by it (it may run on a simulated clock).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schema(value_type = Option<String>)]
    pub time: Option<jiff::Timestamp>,
}

/// A device's sync profile as the server keeps it.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ProfileState {
    #[schema(value_type = Object)]
    pub profile: cpm_core::profile::SyncProfile,
    /// Bumped at every change of the device's preferences.
    pub revision: i64,
    /// One line for people, e.g. `partial, stub; include /content/**; fields name,size`.
    pub summary: String,
    /// For each profile key, what decided it: `user`, `operator_default`, `built_in` or
    /// `operator_bound`.
    #[serde(default)]
    #[schema(value_type = Object)]
    pub sources: std::collections::BTreeMap<String, cpm_core::policy::Source>,
}

/// `POST /v1/contents`: the payloads of many objects in one answer.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct ContentsRequest {
    /// Object ids, at most [`MAX_BUNDLE_OBJECTS`]; the answer holds their payloads in this order.
    pub ids: Vec<String>,
}

/// The most objects one `POST /v1/contents` may ask for.
pub const MAX_BUNDLE_OBJECTS: usize = 256;
/// The most payload bytes one `POST /v1/contents` may ask for.
pub const MAX_BUNDLE_BYTES: u64 = 64 << 20;

/// The header of one payload in the answer to `POST /v1/contents`: a line of JSON, then exactly
/// `size` bytes of payload.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, ToSchema)]
pub struct BundlePart {
    pub id: String,
    /// BLAKE3 of the payload, lowercase hex.
    pub hash: String,
    pub size: u64,
}

/// The answer to a blob upload.
#[derive(Debug, Clone, Serialize, Deserialize, ToSchema)]
pub struct BlobReceipt {
    pub hash: String,
    pub size: u64,
}
