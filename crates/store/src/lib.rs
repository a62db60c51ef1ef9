//! The network store: one user's folders and objects, the change journal over them, devices and
//! tokens, and the content-addressed blobs their payloads live in.
//!
//! [`Store`] is the interface every backend implements; [`SqliteStore`] is the embedded one
//! (SQLite in WAL mode + blob files). Its SQL is kept portable (no `INSERT OR REPLACE`, no rowid
//! tricks, `ON CONFLICT`/`RETURNING` as PostgreSQL spells them) so a PostgreSQL backend can share it.
//!
//! Calls are blocking; async callers run them on a blocking thread.

mod blobs;
mod error;
pub mod secret;
mod sqlite;

pub use blobs::{BlobDir, BlobWriter, VerifiedBlob, is_valid_hash};
pub use error::{Result, StoreError};
pub use sqlite::{IdSource, SqliteStore};

use cpm_core::schedule::Timer;
use cpm_core::{ChangedRow, Folder, Item, MessageInfo, Name, Object, ObjectKind, StorePath};
use jiff::Timestamp;
use std::path::PathBuf;
use std::time::Duration;

pub type UserId = i64;

/// Who a request acts for: always one user, and the device when a device token was used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Principal {
    pub user_id: UserId,
    pub user: String,
    pub device_id: Option<String>,
}

/// What a device's profile is made from: its class (for the operator's settings), the zone it
/// registered in, and its user's preferences.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceProfile {
    pub class: String,
    pub time_zone: Option<String>,
    /// A JSON object of the profile keys the user set; `None` until first set.
    pub preferences: Option<String>,
    pub revision: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct DeviceRecord {
    pub id: String,
    pub name: String,
    pub class: String,
    pub time_zone: Option<String>,
    pub registered: Timestamp,
    pub last_seen: Option<Timestamp>,
    pub revoked: bool,
    /// When it last read its sync feed (to the minute).
    pub last_sync: Option<Timestamp>,
}

#[derive(Debug, Clone, PartialEq)]
pub struct UserSummary {
    pub name: String,
    pub created: Timestamp,
    pub objects: u64,
    pub bytes: u64,
    pub devices: u64,
}

/// An object to create (or, with `replace`, a new payload for the object of that name).
#[derive(Debug, Clone)]
pub struct NewObject {
    pub folder_id: String,
    pub name: Name,
    pub kind: ObjectKind,
    pub hash: String,
    pub content_type: String,
    pub message: Option<Box<MessageInfo>>,
    pub modified: Option<Timestamp>,
    pub replace: bool,
    /// With `replace`: refuse (conflict) unless the object is still at this modseq.
    pub base_modseq: Option<i64>,
    /// The user's quota in force: refuse when the user's live objects would take more bytes.
    pub quota_bytes: Option<u64>,
}

/// A live device and what its periodic sync is made from, as the server's scheduler reads it.
#[derive(Debug, Clone, PartialEq)]
pub struct DeviceTimer {
    pub user: UserId,
    pub device_id: String,
    pub profile: DeviceProfile,
    pub timer: Option<Timer>,
}

/// One page of a folder: folders first, then objects, each in byte order of their names.
#[derive(Debug, Clone, PartialEq)]
pub struct ListBatch {
    pub items: Vec<Item>,
    /// Opaque position to continue from; `None` on the last page.
    pub next: Option<String>,
}

/// One page of the change journal.
#[derive(Debug, Clone, PartialEq)]
pub struct ChangeBatch {
    pub rows: Vec<ChangedRow>,
    pub cursor: i64,
    pub has_more: bool,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct GcReport {
    pub tombstones_purged: u64,
    pub blobs_removed: u64,
    pub bytes_freed: u64,
}

#[derive(Debug, Clone)]
pub struct StoreSettings {
    /// How long tombstones are kept; a cursor older than the oldest purged one must resync.
    pub tombstone_retention: Duration,
    /// How long an uploaded blob may wait for the object that names it before it is collected.
    pub blob_grace: Duration,
}

impl Default for StoreSettings {
    fn default() -> Self {
        Self { tombstone_retention: Duration::from_secs(30 * 24 * 3600), blob_grace: Duration::from_secs(3600) }
    }
}

pub trait Store: Send + Sync + 'static {
    // Users, devices and tokens.
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId>;
    fn users(&self) -> Result<Vec<UserSummary>>;
    /// The user's id and password hash, for a login check.
    fn credentials(&self, user: &str) -> Result<(UserId, String)>;
    fn add_token(&self, user: UserId, token_hash: &str) -> Result<()>;
    fn register_device(
        &self,
        user: UserId,
        name: &Name,
        class: &str,
        time_zone: Option<&str>,
        token_hash: &str,
    ) -> Result<DeviceRecord>;
    /// Registers a device in place of one of the user's (revoked, or revoked now), with the old
    /// one's preferences: the same directory under a new token. All of it or nothing.
    fn replace_device(
        &self,
        user: UserId,
        replaced: &str,
        name: &Name,
        class: &str,
        time_zone: Option<&str>,
        token_hash: &str,
    ) -> Result<DeviceRecord>;
    fn authenticate(&self, token_hash: &str) -> Result<Principal>;
    fn devices(&self, user: UserId) -> Result<Vec<DeviceRecord>>;
    fn revoke_device(&self, user: UserId, name: &str) -> Result<DeviceRecord>;

    /// A device's class, zone, preferences and their revision.
    fn device_profile(&self, user: UserId, device_id: &str) -> Result<DeviceProfile>;
    /// Sets a device's preferences (a JSON object of profile keys); returns the new revision.
    fn set_device_profile(&self, user: UserId, device_id: &str, profile: &str) -> Result<i64>;
    /// Every live device of every user, with its profile and periodic sync timer.
    fn device_timers(&self) -> Result<Vec<DeviceTimer>>;
    /// Stores timers, all together or none.
    fn save_timers(&self, timers: &[(String, Timer)]) -> Result<()>;
    /// Notes that a device reads its sync feed now (kept to the minute).
    fn record_sync(&self, device_id: &str) -> Result<()>;
    /// Marks that a device has synced since its last fired instant.
    fn settle_timer(&self, device_id: &str) -> Result<()>;
    /// Bytes the user's live objects take.
    fn bytes_used(&self, user: UserId) -> Result<u64>;

    // The tree.
    fn resolve(&self, user: UserId, path: &StorePath) -> Result<Item>;
    fn item(&self, user: UserId, id: &str) -> Result<Item>;
    fn folder_path(&self, user: UserId, folder_id: &str) -> Result<StorePath>;
    /// Every live folder and object below a folder, at any depth.
    fn descendants(&self, user: UserId, folder_id: &str) -> Result<Vec<Item>>;
    fn list(&self, user: UserId, folder_id: &str, after: Option<&str>, limit: usize) -> Result<ListBatch>;
    fn create_folder(&self, user: UserId, path: &StorePath, parents: bool) -> Result<Folder>;
    fn create_object(&self, user: UserId, object: NewObject) -> Result<Object>;
    /// Moves (and with `name`, renames) entries in one transaction: all of them or none.
    fn move_items(&self, user: UserId, ids: &[String], to: Option<&str>, name: Option<&Name>) -> Result<Vec<Item>>;
    fn set_flags(&self, user: UserId, id: &str, flags: &[String]) -> Result<Object>;
    /// Deletes an entry; with `base_modseq`, only if it has not changed since (else conflict).
    fn delete(&self, user: UserId, id: &str, recursive: bool, base_modseq: Option<i64>) -> Result<()>;

    // The change journal.
    fn changes(&self, user: UserId, since: i64, limit: usize) -> Result<ChangeBatch>;
    /// Live objects last modified in `(after, until]`, oldest first, at most `limit`: those
    /// whose age crossed a boundary while time moved on.
    fn objects_modified_between(
        &self,
        user: UserId,
        after: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Object>>;
    /// The earliest last-modified instant of a live object after `after`.
    fn next_modified_after(&self, user: UserId, after: Timestamp) -> Result<Option<Timestamp>>;
    /// The live object holding `hash` elsewhere, when a move in the store took that content
    /// away from `path` (the latest such object): a copy at that place is a stale one of it.
    fn moved_away(&self, user: UserId, path: &str, hash: &str) -> Result<Option<Object>>;
    /// The deleted object (its tombstone still kept) that held `hash` at `path`, the latest one.
    fn deleted_at(&self, user: UserId, path: &str, hash: &str) -> Result<Option<String>>;
    /// Brings a deleted object back, with its id, content and details, as `name` in
    /// `folder_id`; refused when its content is no longer kept or the name is taken.
    fn revive(&self, user: UserId, id: &str, folder_id: &str, name: &Name, quota_bytes: Option<u64>) -> Result<Object>;
    /// Whether a live object of the user holds this content.
    fn holds_content(&self, user: UserId, hash: &str) -> Result<bool>;

    // Blobs.
    fn has_blob(&self, user: UserId, hash: &str) -> Result<bool>;
    fn blobs(&self) -> &BlobDir;
    fn commit_blob(&self, user: UserId, blob: VerifiedBlob) -> Result<()>;
    fn blob_path(&self, hash: &str) -> PathBuf;
    fn collect_garbage(&self) -> Result<GcReport>;
}
