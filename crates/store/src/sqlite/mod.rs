//! The embedded store: SQLite in WAL mode beside a blob directory.
//!
//! One writer connection serializes every change (so the name checks below are race-free and
//! the modseq counter has no gaps within a transaction); readers use their own connections and
//! see a consistent snapshot per call.

use crate::blobs::{BlobDir, VerifiedBlob};
use crate::error::{Result, StoreError};
use crate::{
    ChangeBatch, DeviceProfile, DeviceRecord, DeviceTimer, GcReport, ListBatch, NewObject, Principal, Store,
    StoreSettings, UserId, UserSummary, secret,
};
use cpm_core::schedule::Timer;
use cpm_core::{ChangedRow, Clock, EntryKind, Folder, Item, Name, Object, StorePath};
use jiff::Timestamp;
use rusqlite::{Connection, OptionalExtension, Row, Transaction, TransactionBehavior, params};
use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use std::time::Duration;

/// Each step takes the schema from version `index` to `index + 1`.
const MIGRATIONS: [&str; 6] = [
    include_str!("schema.sql"),
    include_str!("v2.sql"),
    include_str!("v3.sql"),
    include_str!("v4.sql"),
    include_str!("v5.sql"),
    include_str!("v6.sql"),
];
/// The migration after which every name is in NFC.
const NFC_NAMES: usize = 4;
const SCHEMA_VERSION: i64 = MIGRATIONS.len() as i64;
const FOLDER_COLUMNS: &str = "id, parent_id, name, created_ms, modified_ms, modseq";
const OBJECT_COLUMNS: &str =
    "id, folder_id, name, kind, content_type, size, hash, flags, attributes, created_ms, modified_ms, modseq";
/// Readers kept open between calls; more are opened under load and closed after.
const IDLE_READERS: usize = 8;
/// A device's `last_seen` and `last_sync` are written at most this often, so that authenticating
/// and reading the sync feed are pure reads.
const LAST_SEEN_RESOLUTION_MS: i64 = 60_000;
pub const MAX_PAGE: usize = 10_000;

/// Makes the ids of new folders, objects and devices from the letter of their kind.
pub type IdSource = Arc<dyn Fn(char) -> Result<String> + Send + Sync>;

pub struct SqliteStore {
    db_path: PathBuf,
    writer: Mutex<Connection>,
    readers: Mutex<Vec<Connection>>,
    blobs: BlobDir,
    clock: Arc<dyn Clock>,
    settings: StoreSettings,
    ids: IdSource,
}

impl SqliteStore {
    /// Opens (creating when new) the store kept under `data`.
    pub fn open(data: &Path, clock: Arc<dyn Clock>, settings: StoreSettings) -> Result<Self> {
        std::fs::create_dir_all(data)?;
        let db_path = data.join("cpm.db");
        let mut writer = open_connection(&db_path)?;
        migrate(&mut writer)?;
        let blobs = BlobDir::open(data)?;
        Ok(Self {
            db_path,
            writer: Mutex::new(writer),
            readers: Mutex::new(Vec::new()),
            blobs,
            clock,
            settings,
            ids: Arc::new(secret::new_id),
        })
    }

    /// The same store, naming new entries by `ids` instead of at random: for simulations that
    /// must replay exactly.
    pub fn with_ids(self, ids: IdSource) -> Self {
        Self { ids, ..self }
    }

    fn now_ms(&self) -> i64 {
        self.clock.now().as_millisecond()
    }

    /// Runs `read` on one snapshot of the database.
    fn read<T>(&self, read: impl FnOnce(&Transaction<'_>) -> Result<T>) -> Result<T> {
        let pooled = lock(&self.readers).pop();
        let mut connection = match pooled {
            Some(connection) => connection,
            None => open_connection(&self.db_path)?,
        };
        let result = (|| {
            let tx = connection.transaction()?;
            let value = read(&tx)?;
            tx.finish()?;
            Ok(value)
        })();
        let mut idle = lock(&self.readers);
        if idle.len() < IDLE_READERS {
            idle.push(connection);
        }
        result
    }

    /// Runs `write` in one transaction: every change it makes commits together or not at all.
    fn write<T>(&self, write: impl FnOnce(&Transaction<'_>, i64) -> Result<T>) -> Result<T> {
        let mut connection = lock(&self.writer);
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        let value = write(&tx, self.now_ms())?;
        tx.commit()?;
        Ok(value)
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

fn open_connection(path: &Path) -> Result<Connection> {
    let connection = Connection::open(path)?;
    connection.busy_timeout(Duration::from_secs(10))?;
    // WAL lets readers run beside the writer; FULL makes every commit durable before it is
    // acknowledged, so a device never advances past a change that a power loss could undo.
    let _mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
    connection.execute_batch("PRAGMA synchronous = FULL; PRAGMA foreign_keys = ON;")?;
    connection.set_prepared_statement_cache_capacity(64);
    Ok(connection)
}

fn migrate(connection: &mut Connection) -> Result<()> {
    let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
    if version > SCHEMA_VERSION {
        return Err(StoreError::Internal(format!(
            "the database has schema version {version}, newer than this cpm understands ({SCHEMA_VERSION})"
        )));
    }
    for (step, statements) in MIGRATIONS.iter().enumerate().skip(usize::try_from(version).unwrap_or(0)) {
        let tx = connection.transaction_with_behavior(TransactionBehavior::Exclusive)?;
        tx.execute_batch(statements)?;
        if step == NFC_NAMES {
            normalize_names(&tx)?;
        }
        tx.execute_batch(&format!("PRAGMA user_version = {}", step + 1))?;
        tx.commit()?;
    }
    Ok(())
}

/// Renames every live name not in NFC to its NFC form; one that then equals a sibling's takes
/// the first free `NAME (2).EXT`, `NAME (3).EXT`… Each rename is a change in the journal, so
/// devices follow it.
fn normalize_names(tx: &Transaction<'_>) -> Result<()> {
    for (table, parent) in [("folders", "parent_id"), ("objects", "folder_id")] {
        let rows: Vec<(String, UserId, String, String)> = tx
            .prepare(&format!(
                "SELECT id, user_id, {parent}, name FROM {table} WHERE deleted_ms IS NULL AND {parent} IS NOT NULL"
            ))?
            .query_map([], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?, row.get(3)?)))?
            .collect::<rusqlite::Result<_>>()?;
        for (id, user, folder, name) in rows {
            let Ok(normal) = Name::parse(&name) else { continue };
            if normal.as_str() == name {
                continue;
            }
            let taken = |candidate: &str| -> Result<bool> {
                Ok(tx
                    .prepare_cached(
                        "SELECT EXISTS (SELECT 1 FROM folders WHERE parent_id = ?1 AND name = ?2 AND deleted_ms IS NULL)
                             OR EXISTS (SELECT 1 FROM objects WHERE folder_id = ?1 AND name = ?2 AND deleted_ms IS NULL)",
                    )?
                    .query_row(params![folder, candidate], |row| row.get(0))?)
            };
            let mut candidate = normal.as_str().to_owned();
            let mut number = 2;
            while taken(&candidate)? {
                candidate = numbered(normal.as_str(), number);
                number += 1;
            }
            let modseq = next_modseq(tx, user)?;
            tx.execute(
                &format!("UPDATE {table} SET name = ?1, modseq = ?2 WHERE id = ?3"),
                params![candidate, modseq, id],
            )?;
        }
    }
    Ok(())
}

/// `STEM (n).EXT`, the stem shortened to keep it a valid name.
fn numbered(name: &str, number: u32) -> String {
    let (stem, extension) = match name.rfind('.') {
        Some(at) if at > 0 => name.split_at(at),
        _ => (name, ""),
    };
    let tag = format!(" ({number})");
    let mut room = cpm_core::name::MAX_NAME_BYTES.saturating_sub(tag.len() + extension.len()).min(stem.len());
    while !stem.is_char_boundary(room) {
        room -= 1;
    }
    format!("{}{tag}{extension}", &stem[..room])
}

fn bytes_used(tx: &Transaction<'_>, user: UserId) -> Result<u64> {
    let used: i64 =
        tx.prepare_cached("SELECT bytes_used FROM users WHERE id = ?1")?.query_row(params![user], |row| row.get(0))?;
    Ok(u64::try_from(used).unwrap_or(0))
}

/// The size of content the user has uploaded; `None` when the store does not keep it for her.
fn blob_size(tx: &Transaction<'_>, user: UserId, hash: &str) -> Result<Option<i64>> {
    Ok(tx
        .prepare_cached("SELECT size FROM blobs WHERE user_id = ?1 AND hash = ?2")?
        .query_row(params![user, hash], |row| row.get(0))
        .optional()?)
}

/// Refuses what the write in progress did when it takes the user over her quota; returning the
/// error rolls the whole transaction back, so nothing was stored. `doing` names the write.
fn ensure_within_quota(
    tx: &Transaction<'_>,
    user: UserId,
    quota: Option<u64>,
    doing: impl FnOnce() -> String,
) -> Result<()> {
    let Some(quota) = quota else { return Ok(()) };
    let used = bytes_used(tx, user)?;
    if used > quota {
        return Err(StoreError::QuotaExceeded(format!(
            "{} would take the account to {used} bytes, over its quota of {quota} bytes",
            doing()
        )));
    }
    Ok(())
}

fn timestamp(ms: i64) -> Timestamp {
    Timestamp::from_millisecond(ms).unwrap_or(Timestamp::UNIX_EPOCH)
}

fn conversion_error(index: usize, message: String) -> rusqlite::Error {
    rusqlite::Error::FromSqlConversionFailure(index, rusqlite::types::Type::Text, message.into())
}

fn folder_row(row: &Row<'_>) -> rusqlite::Result<Folder> {
    Ok(Folder {
        id: row.get(0)?,
        parent_id: row.get(1)?,
        name: row.get(2)?,
        created: timestamp(row.get(3)?),
        modified: timestamp(row.get(4)?),
        modseq: row.get(5)?,
    })
}

fn object_row(row: &Row<'_>) -> rusqlite::Result<Object> {
    let kind: String = row.get(3)?;
    let flags: String = row.get(7)?;
    let attributes: Option<String> = row.get(8)?;
    let message = attributes
        .map(|json| serde_json::from_str(&json).map_err(|error| conversion_error(8, error.to_string())))
        .transpose()?;
    Ok(Object {
        id: row.get(0)?,
        folder_id: row.get(1)?,
        name: row.get(2)?,
        kind: kind.parse().map_err(|error| conversion_error(3, error))?,
        content_type: row.get(4)?,
        size: u64::try_from(row.get::<_, i64>(5)?).unwrap_or(0),
        hash: row.get(6)?,
        flags: flags.split(',').filter(|flag| !flag.is_empty()).map(str::to_owned).collect(),
        message,
        created: timestamp(row.get(9)?),
        modified: timestamp(row.get(10)?),
        modseq: row.get(11)?,
    })
}

fn root_folder(conn: &Connection, user: UserId) -> Result<Folder> {
    conn.prepare_cached(&format!(
        "SELECT {FOLDER_COLUMNS} FROM folders WHERE user_id = ?1 AND parent_id IS NULL AND deleted_ms IS NULL"
    ))?
    .query_row(params![user], folder_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("user {user} has no store")))
}

fn live_folder(conn: &Connection, user: UserId, id: &str) -> Result<Folder> {
    conn.prepare_cached(&format!(
        "SELECT {FOLDER_COLUMNS} FROM folders WHERE id = ?1 AND user_id = ?2 AND deleted_ms IS NULL"
    ))?
    .query_row(params![id, user], folder_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no folder with id {id}")))
}

fn live_object(conn: &Connection, user: UserId, id: &str) -> Result<Object> {
    conn.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS} FROM objects WHERE id = ?1 AND user_id = ?2 AND deleted_ms IS NULL"
    ))?
    .query_row(params![id, user], object_row)
    .optional()?
    .ok_or_else(|| StoreError::NotFound(format!("no object with id {id}")))
}

/// Notes that a move takes `object`'s content away from the place it has now.
fn note_moved_away(tx: &Transaction<'_>, user: UserId, object: &Object, now: i64) -> Result<()> {
    tx.prepare_cached("INSERT OR REPLACE INTO moved_away (user_id, path, hash, moved_ms) VALUES (?1, ?2, ?3, ?4)")?
        .execute(params![user, entry_path(tx, &object.folder_id, &object.name), object.hash, now])?;
    Ok(())
}

/// Ids carry their kind in their first letter, so a lookup by id needs one query.
fn live_item(conn: &Connection, user: UserId, id: &str) -> Result<Item> {
    match id.as_bytes().first() {
        Some(b'f') => live_folder(conn, user, id).map(Item::Folder),
        Some(b'o') => live_object(conn, user, id).map(Item::Object),
        _ => Err(StoreError::NotFound(format!("no folder or object with id {id:?}"))),
    }
}

fn child_folder(conn: &Connection, parent_id: &str, name: &str) -> Result<Option<Folder>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE parent_id = ?1 AND name = ?2 AND deleted_ms IS NULL"
        ))?
        .query_row(params![parent_id, name], folder_row)
        .optional()?)
}

fn child_object(conn: &Connection, folder_id: &str, name: &str) -> Result<Option<Object>> {
    Ok(conn
        .prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE folder_id = ?1 AND name = ?2 AND deleted_ms IS NULL"
        ))?
        .query_row(params![folder_id, name], object_row)
        .optional()?)
}

fn parent_of(conn: &Connection, folder_id: &str) -> Result<(Option<String>, String)> {
    conn.prepare_cached("SELECT parent_id, name FROM folders WHERE id = ?1")?
        .query_row(params![folder_id], |row| Ok((row.get(0)?, row.get(1)?)))
        .optional()?
        .ok_or_else(|| StoreError::NotFound(format!("no folder with id {folder_id}")))
}

fn path_of(conn: &Connection, folder_id: &str) -> Result<StorePath> {
    let mut names = Vec::new();
    let mut cursor = folder_id.to_owned();
    loop {
        let (parent, name) = parent_of(conn, &cursor)?;
        let Some(parent) = parent else { break };
        names.push(name);
        cursor = parent;
    }
    let mut path = StorePath::root();
    for name in names.iter().rev() {
        let name = Name::parse(name).map_err(|error| StoreError::Internal(format!("stored name {name:?}: {error}")))?;
        path = path.join(&name);
    }
    Ok(path)
}

fn entry_path(conn: &Connection, folder_id: &str, name: &str) -> String {
    match path_of(conn, folder_id) {
        Ok(folder) if folder.is_root() => format!("/{name}"),
        Ok(folder) => format!("{folder}/{name}"),
        Err(_) => name.to_owned(),
    }
}

/// Invariant: within one folder a name is held by at most one live entry, folder or object
/// alike, so that every folder can be mirrored as a directory on a device. Same-kind clashes are
/// also refused by the partial unique indexes; this check covers the cross-kind ones.
fn ensure_name_free(conn: &Connection, folder_id: &str, name: &str, moving: Option<&str>) -> Result<()> {
    let holder = match child_folder(conn, folder_id, name)? {
        Some(folder) => Some(folder.id),
        None => child_object(conn, folder_id, name)?.map(|object| object.id),
    };
    match holder {
        Some(holder) if Some(holder.as_str()) != moving => {
            Err(StoreError::AlreadyExists(format!("{} already exists", entry_path(conn, folder_id, name))))
        }
        _ => Ok(()),
    }
}

/// Invariant: every change of a folder or object row takes a fresh modseq from its user's
/// counter, in the same transaction as the change, so the journal is totally ordered.
fn next_modseq(conn: &Connection, user: UserId) -> Result<i64> {
    Ok(conn
        .prepare_cached("UPDATE users SET highest_modseq = highest_modseq + 1 WHERE id = ?1 RETURNING highest_modseq")?
        .query_row(params![user], |row| row.get(0))?)
}

fn insert_folder(conn: &Connection, user: UserId, parent_id: &str, name: &str, now: i64, id: String) -> Result<Folder> {
    ensure_name_free(conn, parent_id, name, None)?;
    let modseq = next_modseq(conn, user)?;
    conn.prepare_cached(
        "INSERT INTO folders (id, user_id, parent_id, name, created_ms, modified_ms, modseq) VALUES (?1, ?2, ?3, ?4, ?5, ?5, ?6)",
    )?
    .execute(params![id, user, parent_id, name, now, modseq])?;
    Ok(Folder {
        id,
        parent_id: Some(parent_id.to_owned()),
        name: name.to_owned(),
        created: timestamp(now),
        modified: timestamp(now),
        modseq,
    })
}

/// Invariant: a change based on a modseq the entry has moved past is refused, so a device never
/// overwrites or deletes a version it has not seen.
fn ensure_unchanged(id: &str, modseq: i64, base: Option<i64>) -> Result<()> {
    match base {
        Some(base) if base != modseq => Err(StoreError::Conflict(format!(
            "{id} changed in the store (modseq {modseq}) since the version this change was based on ({base})"
        ))),
        _ => Ok(()),
    }
}

fn tombstone_object(conn: &Connection, user: UserId, id: &str, now: i64) -> Result<()> {
    let modseq = next_modseq(conn, user)?;
    conn.prepare_cached("UPDATE objects SET deleted_ms = ?1, modseq = ?2 WHERE id = ?3")?
        .execute(params![now, modseq, id])?;
    Ok(())
}

fn child_ids(conn: &Connection, table: &str, parent_column: &str, parent_id: &str) -> Result<Vec<String>> {
    let mut statement = conn.prepare_cached(&format!(
        "SELECT id FROM {table} WHERE {parent_column} = ?1 AND deleted_ms IS NULL ORDER BY name"
    ))?;
    let ids = statement.query_map(params![parent_id], |row| row.get(0))?.collect::<rusqlite::Result<_>>()?;
    Ok(ids)
}

/// Walks up from `target` to the root; refuses when `moving` is met on the way.
fn ensure_not_inside(conn: &Connection, target: &str, moving: &Folder) -> Result<()> {
    let mut cursor = Some(target.to_owned());
    while let Some(id) = cursor {
        if id == moving.id {
            return Err(StoreError::MoveIntoItself(format!(
                "cannot move {} into itself or one of its subfolders",
                entry_path(conn, moving.parent_id.as_deref().unwrap_or_default(), &moving.name)
            )));
        }
        cursor = parent_of(conn, &id)?.0;
    }
    Ok(())
}

fn list_page(conn: &Connection, folder_id: &str, after: Option<&str>, limit: usize) -> Result<ListBatch> {
    let limit = limit.clamp(1, MAX_PAGE);
    // Position tokens are `f:NAME` (after this folder) or `o:NAME` (after this object).
    let (folders_after, objects_after) = match after {
        None => (Some(""), ""),
        Some(token) => match token.split_at_checked(2) {
            Some(("f:", name)) => (Some(name), ""),
            Some(("o:", name)) => (None, name),
            _ => {
                return Err(StoreError::Invalid(format!("bad listing position {token:?}")));
            }
        },
    };
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let mut items: Vec<Item> = Vec::new();
    if let Some(after_name) = folders_after {
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {FOLDER_COLUMNS} FROM folders WHERE parent_id = ?1 AND deleted_ms IS NULL AND name > ?2 ORDER BY name LIMIT ?3"
        ))?;
        for folder in statement.query_map(params![folder_id, after_name, fetch], folder_row)? {
            items.push(Item::Folder(folder?));
        }
    }
    if items.len() <= limit {
        let remaining = i64::try_from(limit + 1 - items.len()).unwrap_or(i64::MAX);
        let mut statement = conn.prepare_cached(&format!(
            "SELECT {OBJECT_COLUMNS} FROM objects WHERE folder_id = ?1 AND deleted_ms IS NULL AND name > ?2 ORDER BY name LIMIT ?3"
        ))?;
        for object in statement.query_map(params![folder_id, objects_after, remaining], object_row)? {
            items.push(Item::Object(object?));
        }
    }
    let next = if items.len() > limit {
        items.truncate(limit);
        items.last().map(|last| match last {
            Item::Folder(folder) => format!("f:{}", folder.name),
            Item::Object(object) => format!("o:{}", object.name),
        })
    } else {
        None
    };
    Ok(ListBatch { items, next })
}

fn journal_page(conn: &Connection, user: UserId, since: i64, limit: usize) -> Result<Vec<ChangedRow>> {
    let fetch = i64::try_from(limit + 1).unwrap_or(i64::MAX);
    let mut rows = Vec::new();
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {FOLDER_COLUMNS}, deleted_ms FROM folders WHERE user_id = ?1 AND modseq > ?2 ORDER BY modseq LIMIT ?3"
    ))?;
    let folders = statement.query_map(params![user, since, fetch], |row| {
        let folder = folder_row(row)?;
        Ok(match row.get::<_, Option<i64>>(6)? {
            Some(_) => ChangedRow::Deleted { kind: EntryKind::Folder, id: folder.id, modseq: folder.modseq },
            None => ChangedRow::Live(Item::Folder(folder)),
        })
    })?;
    for row in folders {
        rows.push(row?);
    }
    let mut statement = conn.prepare_cached(&format!(
        "SELECT {OBJECT_COLUMNS}, deleted_ms FROM objects WHERE user_id = ?1 AND modseq > ?2 ORDER BY modseq LIMIT ?3"
    ))?;
    let objects = statement.query_map(params![user, since, fetch], |row| {
        let object = object_row(row)?;
        Ok(match row.get::<_, Option<i64>>(12)? {
            Some(_) => ChangedRow::Deleted { kind: object.kind.into(), id: object.id, modseq: object.modseq },
            None => ChangedRow::Live(Item::Object(object)),
        })
    })?;
    for row in objects {
        rows.push(row?);
    }
    rows.sort_by_key(ChangedRow::modseq);
    Ok(rows)
}

fn device_row(row: &Row<'_>) -> rusqlite::Result<DeviceRecord> {
    Ok(DeviceRecord {
        id: row.get(0)?,
        name: row.get(1)?,
        class: row.get(2)?,
        time_zone: row.get(3)?,
        registered: timestamp(row.get(4)?),
        last_seen: row.get::<_, Option<i64>>(5)?.map(timestamp),
        revoked: row.get::<_, Option<i64>>(6)?.is_some(),
        last_sync: row.get::<_, Option<i64>>(7)?.map(timestamp),
    })
}

const DEVICE_COLUMNS: &str = "id, name, class, time_zone, created_ms, last_seen_ms, revoked_ms, last_sync_ms";

/// User names: 1 to 64 of lowercase letters, digits, '.', '_' or '-', starting with a letter or digit.
fn validate_user_name(name: &str) -> Result<()> {
    let valid = (1..=64).contains(&name.len())
        && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || matches!(b, b'.' | b'_' | b'-'))
        && name.bytes().next().is_some_and(|b| b.is_ascii_alphanumeric());
    if valid {
        Ok(())
    } else {
        Err(StoreError::Invalid(format!(
            "bad user name {name:?}: use 1 to 64 lowercase letters, digits, '.', '_' or '-', starting with a letter or digit"
        )))
    }
}

impl Store for SqliteStore {
    fn create_user(&self, name: &str, password_hash: &str) -> Result<UserId> {
        validate_user_name(name)?;
        self.write(|tx, now| {
            let exists = tx.query_row("SELECT 1 FROM users WHERE name = ?1", params![name], |_| Ok(())).optional()?;
            if exists.is_some() {
                return Err(StoreError::AlreadyExists(format!("user {name} already exists")));
            }
            let user: UserId = tx.query_row(
                "INSERT INTO users (name, password_hash, created_ms) VALUES (?1, ?2, ?3) RETURNING id",
                params![name, password_hash, now],
                |row| row.get(0),
            )?;
            tx.execute(
                "INSERT INTO folders (id, user_id, parent_id, name, created_ms, modified_ms, modseq) VALUES (?1, ?2, NULL, '', ?3, ?3, 0)",
                params![(self.ids)('f')?, user, now],
            )?;
            Ok(user)
        })
    }

    fn users(&self) -> Result<Vec<UserSummary>> {
        self.read(|tx| {
            let mut statement = tx.prepare(
                "SELECT u.name, u.created_ms,
                    (SELECT COUNT(*) FROM objects o WHERE o.user_id = u.id AND o.deleted_ms IS NULL),
                    (SELECT COALESCE(SUM(o.size), 0) FROM objects o WHERE o.user_id = u.id AND o.deleted_ms IS NULL),
                    (SELECT COUNT(*) FROM devices d WHERE d.user_id = u.id AND d.revoked_ms IS NULL)
                 FROM users u ORDER BY u.name",
            )?;
            let users = statement
                .query_map([], |row| {
                    Ok(UserSummary {
                        name: row.get(0)?,
                        created: timestamp(row.get(1)?),
                        objects: u64::try_from(row.get::<_, i64>(2)?).unwrap_or(0),
                        bytes: u64::try_from(row.get::<_, i64>(3)?).unwrap_or(0),
                        devices: u64::try_from(row.get::<_, i64>(4)?).unwrap_or(0),
                    })
                })?
                .collect::<rusqlite::Result<_>>()?;
            Ok(users)
        })
    }

    fn credentials(&self, user: &str) -> Result<(UserId, String)> {
        self.read(|tx| {
            tx.query_row("SELECT id, password_hash FROM users WHERE name = ?1", params![user], |row| {
                Ok((row.get(0)?, row.get(1)?))
            })
            .optional()?
            .ok_or(StoreError::BadCredentials)
        })
    }

    fn add_token(&self, user: UserId, token_hash: &str) -> Result<()> {
        self.write(|tx, now| {
            tx.execute(
                "INSERT INTO tokens (hash, user_id, device_id, created_ms) VALUES (?1, ?2, NULL, ?3)",
                params![token_hash, user, now],
            )?;
            Ok(())
        })
    }

    fn register_device(
        &self,
        user: UserId,
        name: &Name,
        class: &str,
        time_zone: Option<&str>,
        token_hash: &str,
    ) -> Result<DeviceRecord> {
        self.write(|tx, now| insert_device(tx, &self.ids, now, user, name, class, time_zone, token_hash, None))
    }

    fn replace_device(
        &self,
        user: UserId,
        replaced: &str,
        name: &Name,
        class: &str,
        time_zone: Option<&str>,
        token_hash: &str,
    ) -> Result<DeviceRecord> {
        self.write(|tx, now| {
            let preferences: Option<String> = tx
                .query_row(
                    "SELECT profile FROM devices WHERE id = ?1 AND user_id = ?2",
                    params![replaced, user],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("no device {replaced} of this user to replace")))?;
            tx.execute(
                "UPDATE devices SET revoked_ms = ?1 WHERE id = ?2 AND revoked_ms IS NULL",
                params![now, replaced],
            )?;
            tx.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE device_id = ?2 AND revoked_ms IS NULL",
                params![now, replaced],
            )?;
            insert_device(tx, &self.ids, now, user, name, class, time_zone, token_hash, preferences.as_deref())
        })
    }

    fn authenticate(&self, token_hash: &str) -> Result<Principal> {
        let found = self.read(|tx| {
            Ok(tx
                .prepare_cached(
                    "SELECT t.user_id, u.name, t.device_id, d.last_seen_ms, d.revoked_ms
                     FROM tokens t JOIN users u ON u.id = t.user_id LEFT JOIN devices d ON d.id = t.device_id
                     WHERE t.hash = ?1 AND t.revoked_ms IS NULL",
                )?
                .query_row(params![token_hash], |row| {
                    Ok((
                        row.get::<_, UserId>(0)?,
                        row.get::<_, String>(1)?,
                        row.get::<_, Option<String>>(2)?,
                        row.get::<_, Option<i64>>(3)?,
                        row.get::<_, Option<i64>>(4)?,
                    ))
                })
                .optional()?)
        })?;
        let Some((user_id, user, device_id, last_seen, revoked)) = found else {
            return Err(StoreError::Unauthorized);
        };
        if revoked.is_some() {
            return Err(StoreError::Unauthorized);
        }
        if let Some(device) = &device_id {
            let now = self.now_ms();
            if last_seen.is_none_or(|seen| now - seen >= LAST_SEEN_RESOLUTION_MS) {
                self.write(|tx, now| {
                    tx.execute("UPDATE devices SET last_seen_ms = ?1 WHERE id = ?2", params![now, device])?;
                    Ok(())
                })?;
            }
        }
        Ok(Principal { user_id, user, device_id })
    }

    fn devices(&self, user: UserId) -> Result<Vec<DeviceRecord>> {
        self.read(|tx| {
            let mut statement = tx.prepare(&format!(
                "SELECT {DEVICE_COLUMNS} FROM devices WHERE user_id = ?1 ORDER BY revoked_ms IS NOT NULL, name, created_ms"
            ))?;
            let devices = statement.query_map(params![user], device_row)?.collect::<rusqlite::Result<_>>()?;
            Ok(devices)
        })
    }

    fn revoke_device(&self, user: UserId, name: &str) -> Result<DeviceRecord> {
        self.write(|tx, now| {
            let id: String = tx
                .query_row(
                    "SELECT id FROM devices WHERE user_id = ?1 AND name = ?2 AND revoked_ms IS NULL",
                    params![user, name],
                    |row| row.get(0),
                )
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("no registered device named {name:?}")))?;
            tx.execute("UPDATE devices SET revoked_ms = ?1 WHERE id = ?2", params![now, id])?;
            tx.execute(
                "UPDATE tokens SET revoked_ms = ?1 WHERE device_id = ?2 AND revoked_ms IS NULL",
                params![now, id],
            )?;
            Ok(tx.query_row(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"), params![id], device_row)?)
        })
    }

    fn device_profile(&self, user: UserId, device_id: &str) -> Result<DeviceProfile> {
        self.read(|tx| {
            tx.query_row(
                "SELECT class, time_zone, profile, profile_revision FROM devices
                 WHERE id = ?1 AND user_id = ?2 AND revoked_ms IS NULL",
                params![device_id, user],
                |row| {
                    Ok(DeviceProfile {
                        class: row.get(0)?,
                        time_zone: row.get(1)?,
                        preferences: row.get(2)?,
                        revision: row.get(3)?,
                    })
                },
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no registered device with id {device_id}")))
        })
    }

    fn device_timers(&self) -> Result<Vec<DeviceTimer>> {
        self.read(|tx| {
            let mut statement = tx.prepare(
                "SELECT d.user_id, d.id, d.class, d.time_zone, d.profile, d.profile_revision,
                        t.schedule, t.fired_through_ms, t.owed
                 FROM devices d LEFT JOIN device_timers t ON t.device_id = d.id
                 WHERE d.revoked_ms IS NULL ORDER BY d.id",
            )?;
            let rows = statement.query_map([], |row| {
                let schedule: Option<String> = row.get(6)?;
                let timer = match schedule {
                    Some(schedule) => Some(Timer {
                        schedule,
                        fired_through: timestamp(row.get(7)?),
                        owed: row.get::<_, i64>(8)? != 0,
                    }),
                    None => None,
                };
                Ok(DeviceTimer {
                    user: row.get(0)?,
                    device_id: row.get(1)?,
                    profile: DeviceProfile {
                        class: row.get(2)?,
                        time_zone: row.get(3)?,
                        preferences: row.get(4)?,
                        revision: row.get(5)?,
                    },
                    timer,
                })
            })?;
            Ok(rows.collect::<rusqlite::Result<Vec<_>>>()?)
        })
    }

    fn save_timers(&self, timers: &[(String, Timer)]) -> Result<()> {
        self.write(|tx, _now| {
            let mut upsert = tx.prepare_cached(
                "INSERT INTO device_timers (device_id, schedule, fired_through_ms, owed) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (device_id) DO UPDATE SET schedule = excluded.schedule,
                     fired_through_ms = excluded.fired_through_ms, owed = excluded.owed",
            )?;
            for (device_id, timer) in timers {
                upsert.execute(params![
                    device_id,
                    timer.schedule,
                    timer.fired_through.as_millisecond(),
                    i64::from(timer.owed)
                ])?;
            }
            Ok(())
        })
    }

    fn record_sync(&self, device_id: &str) -> Result<()> {
        let last: Option<i64> = self.read(|tx| {
            Ok(tx
                .prepare_cached("SELECT last_sync_ms FROM devices WHERE id = ?1")?
                .query_row(params![device_id], |row| row.get(0))
                .optional()?
                .flatten())
        })?;
        if last.is_none_or(|at| self.now_ms() - at >= LAST_SEEN_RESOLUTION_MS) {
            self.write(|tx, now| {
                tx.execute("UPDATE devices SET last_sync_ms = ?1 WHERE id = ?2", params![now, device_id])?;
                Ok(())
            })?;
        }
        Ok(())
    }

    fn settle_timer(&self, device_id: &str) -> Result<()> {
        self.write(|tx, _now| {
            tx.prepare_cached("UPDATE device_timers SET owed = 0 WHERE device_id = ?1 AND owed <> 0")?
                .execute(params![device_id])?;
            Ok(())
        })
    }

    fn bytes_used(&self, user: UserId) -> Result<u64> {
        self.read(|tx| bytes_used(tx, user))
    }

    fn set_device_profile(&self, user: UserId, device_id: &str, profile: &str) -> Result<i64> {
        self.write(|tx, _now| {
            tx.query_row(
                "UPDATE devices SET profile = ?1, profile_revision = profile_revision + 1
                 WHERE id = ?2 AND user_id = ?3 AND revoked_ms IS NULL RETURNING profile_revision",
                params![profile, device_id, user],
                |row| row.get(0),
            )
            .optional()?
            .ok_or_else(|| StoreError::NotFound(format!("no registered device with id {device_id}")))
        })
    }

    fn descendants(&self, user: UserId, folder_id: &str) -> Result<Vec<Item>> {
        self.read(|tx| {
            live_folder(tx, user, folder_id)?;
            let mut items = Vec::new();
            let mut folders = vec![folder_id.to_owned()];
            while let Some(folder) = folders.pop() {
                let mut statement = tx.prepare_cached(&format!(
                    "SELECT {FOLDER_COLUMNS} FROM folders WHERE parent_id = ?1 AND deleted_ms IS NULL"
                ))?;
                for child in statement.query_map(params![folder], folder_row)? {
                    let child = child?;
                    folders.push(child.id.clone());
                    items.push(Item::Folder(child));
                }
                let mut statement = tx.prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE folder_id = ?1 AND deleted_ms IS NULL"
                ))?;
                for object in statement.query_map(params![folder], object_row)? {
                    items.push(Item::Object(object?));
                }
            }
            Ok(items)
        })
    }

    fn resolve(&self, user: UserId, path: &StorePath) -> Result<Item> {
        self.read(|tx| {
            let mut folder = root_folder(tx, user)?;
            let Some((parent, last)) = path.split_last() else {
                return Ok(Item::Folder(folder));
            };
            let missing = || StoreError::NotFound(format!("no such file or folder: {path}"));
            for name in parent.components() {
                folder = child_folder(tx, &folder.id, name.as_str())?.ok_or_else(missing)?;
            }
            if let Some(found) = child_folder(tx, &folder.id, last.as_str())? {
                return Ok(Item::Folder(found));
            }
            child_object(tx, &folder.id, last.as_str())?.map(Item::Object).ok_or_else(missing)
        })
    }

    fn item(&self, user: UserId, id: &str) -> Result<Item> {
        self.read(|tx| live_item(tx, user, id))
    }

    fn folder_path(&self, user: UserId, folder_id: &str) -> Result<StorePath> {
        self.read(|tx| {
            live_folder(tx, user, folder_id)?;
            path_of(tx, folder_id)
        })
    }

    fn list(&self, user: UserId, folder_id: &str, after: Option<&str>, limit: usize) -> Result<ListBatch> {
        self.read(|tx| {
            live_folder(tx, user, folder_id)?;
            list_page(tx, folder_id, after, limit)
        })
    }

    fn create_folder(&self, user: UserId, path: &StorePath, parents: bool) -> Result<Folder> {
        self.write(|tx, now| {
            let mut folder = root_folder(tx, user)?;
            let Some((parent, last)) = path.split_last() else {
                return if parents { Ok(folder) } else { Err(StoreError::AlreadyExists("/ already exists".into())) };
            };
            let mut walked = StorePath::root();
            for name in parent.components() {
                walked = walked.join(name);
                folder = match child_folder(tx, &folder.id, name.as_str())? {
                    Some(existing) => existing,
                    None if parents => insert_folder(tx, user, &folder.id, name.as_str(), now, (self.ids)('f')?)?,
                    None => {
                        return Err(StoreError::NotFound(format!(
                            "no such folder: {walked} (create parents too with -p)"
                        )));
                    }
                };
            }
            match child_folder(tx, &folder.id, last.as_str())? {
                Some(existing) if parents => Ok(existing),
                Some(_) => Err(StoreError::AlreadyExists(format!("{path} already exists"))),
                None => insert_folder(tx, user, &folder.id, last.as_str(), now, (self.ids)('f')?),
            }
        })
    }

    fn create_object(&self, user: UserId, new: NewObject) -> Result<Object> {
        let attributes = new
            .message
            .as_ref()
            .map(serde_json::to_string)
            .transpose()
            .map_err(|error| StoreError::Internal(error.to_string()))?;
        self.write(|tx, now| {
            let folder = live_folder(tx, user, &new.folder_id)?;
            let name = new.name.as_str();
            let size = blob_size(tx, user, &new.hash)?
                .ok_or_else(|| StoreError::BlobMissing(format!("content {} has not been uploaded yet", new.hash)))?;
            if child_folder(tx, &folder.id, name)?.is_some() {
                return Err(StoreError::AlreadyExists(format!(
                    "{} already exists as a folder",
                    entry_path(tx, &folder.id, name)
                )));
            }
            let modified = new.modified.map_or(now, |modified| modified.as_millisecond());
            let id = match child_object(tx, &folder.id, name)? {
                Some(existing) if new.replace => {
                    ensure_unchanged(&existing.id, existing.modseq, new.base_modseq)?;
                    let modseq = next_modseq(tx, user)?;
                    tx.prepare_cached(
                        "UPDATE objects SET kind = ?1, content_type = ?2, size = ?3, hash = ?4, attributes = ?5,
                         modified_ms = ?6, modseq = ?7 WHERE id = ?8",
                    )?
                    .execute(params![
                        new.kind.as_str(),
                        new.content_type,
                        size,
                        new.hash,
                        attributes,
                        modified,
                        modseq,
                        existing.id
                    ])?;
                    existing.id
                }
                Some(_) => {
                    return Err(StoreError::AlreadyExists(format!(
                        "{} already exists",
                        entry_path(tx, &folder.id, name)
                    )));
                }
                None => {
                    let id = (self.ids)('o')?;
                    let modseq = next_modseq(tx, user)?;
                    tx.prepare_cached(
                        "INSERT INTO objects (id, user_id, folder_id, name, kind, content_type, size, hash, attributes,
                         created_ms, modified_ms, modseq) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)",
                    )?
                    .execute(params![
                        id,
                        user,
                        folder.id,
                        name,
                        new.kind.as_str(),
                        new.content_type,
                        size,
                        new.hash,
                        attributes,
                        now,
                        modified,
                        modseq
                    ])?;
                    id
                }
            };
            ensure_within_quota(tx, user, new.quota_bytes, || format!("storing {}", entry_path(tx, &folder.id, name)))?;
            live_object(tx, user, &id)
        })
    }

    fn move_items(&self, user: UserId, ids: &[String], to: Option<&str>, name: Option<&Name>) -> Result<Vec<Item>> {
        if ids.is_empty() {
            return Err(StoreError::Invalid("nothing to move".into()));
        }
        if name.is_some() && ids.len() != 1 {
            return Err(StoreError::Invalid("a new name can be given only when moving one entry".into()));
        }
        self.write(|tx, now| {
            let target = to.map(|id| live_folder(tx, user, id)).transpose()?;
            let mut seen = HashSet::new();
            let mut moved = Vec::with_capacity(ids.len());
            for id in ids {
                if !seen.insert(id.as_str()) {
                    continue;
                }
                let item = live_item(tx, user, id)?;
                let new_name = name.map_or_else(|| item.name().to_owned(), |name| name.as_str().to_owned());
                match item {
                    Item::Folder(mut folder) => {
                        let Some(parent) = folder.parent_id.clone() else {
                            return Err(StoreError::Invalid("the root folder cannot be moved".into()));
                        };
                        let destination = target.as_ref().map_or(parent.clone(), |target| target.id.clone());
                        if destination == parent && new_name == folder.name {
                            moved.push(Item::Folder(folder));
                            continue;
                        }
                        if destination != parent {
                            ensure_not_inside(tx, &destination, &folder)?;
                        }
                        ensure_name_free(tx, &destination, &new_name, Some(&folder.id))?;
                        let modseq = next_modseq(tx, user)?;
                        tx.prepare_cached("UPDATE folders SET parent_id = ?1, name = ?2, modseq = ?3 WHERE id = ?4")?
                            .execute(params![destination, new_name, modseq, folder.id])?;
                        (folder.parent_id, folder.name, folder.modseq) = (Some(destination), new_name, modseq);
                        moved.push(Item::Folder(folder));
                    }
                    // Invariant: a move is metadata only. The payload, its hash and the object's
                    // id (hence its link) are untouched.
                    Item::Object(mut object) => {
                        let destination = target.as_ref().map_or(object.folder_id.clone(), |target| target.id.clone());
                        if destination == object.folder_id && new_name == object.name {
                            moved.push(Item::Object(object));
                            continue;
                        }
                        ensure_name_free(tx, &destination, &new_name, Some(&object.id))?;
                        note_moved_away(tx, user, &object, now)?;
                        let modseq = next_modseq(tx, user)?;
                        tx.prepare_cached("UPDATE objects SET folder_id = ?1, name = ?2, modseq = ?3 WHERE id = ?4")?
                            .execute(params![destination, new_name, modseq, object.id])?;
                        (object.folder_id, object.name, object.modseq) = (destination, new_name, modseq);
                        moved.push(Item::Object(object));
                    }
                }
            }
            Ok(moved)
        })
    }

    fn set_flags(&self, user: UserId, id: &str, flags: &[String]) -> Result<Object> {
        let flags = cpm_core::model::normalize_flags(flags).map_err(StoreError::Invalid)?;
        self.write(|tx, _now| {
            let object = live_object(tx, user, id)?;
            if object.flags == flags {
                return Ok(object);
            }
            let modseq = next_modseq(tx, user)?;
            tx.execute(
                "UPDATE objects SET flags = ?1, modseq = ?2 WHERE id = ?3",
                params![flags.join(","), modseq, object.id],
            )?;
            Ok(Object { flags, modseq, ..object })
        })
    }

    fn delete(&self, user: UserId, id: &str, recursive: bool, base_modseq: Option<i64>) -> Result<()> {
        self.write(|tx, now| match live_item(tx, user, id)? {
            Item::Object(object) => {
                ensure_unchanged(&object.id, object.modseq, base_modseq)?;
                tombstone_object(tx, user, &object.id, now)
            }
            Item::Folder(folder) => {
                let Some(parent) = folder.parent_id.as_deref() else {
                    return Err(StoreError::Invalid("the root folder cannot be deleted".into()));
                };
                let mut subtree = vec![folder.id.clone()];
                let mut next = 0;
                while next < subtree.len() {
                    let children = child_ids(tx, "folders", "parent_id", &subtree[next])?;
                    subtree.extend(children);
                    next += 1;
                }
                let has_objects = !child_ids(tx, "objects", "folder_id", &folder.id)?.is_empty();
                if !recursive && (subtree.len() > 1 || has_objects) {
                    return Err(StoreError::NotEmpty(format!(
                        "{} is not empty (delete it recursively to remove everything in it)",
                        entry_path(tx, parent, &folder.name)
                    )));
                }
                // Invariant: tombstones go deepest first, contents before their folder, so a
                // device applying the journal in modseq order never sees a folder vanish before
                // what was in it.
                for folder_id in subtree.iter().rev() {
                    for object_id in child_ids(tx, "objects", "folder_id", folder_id)? {
                        tombstone_object(tx, user, &object_id, now)?;
                    }
                    let modseq = next_modseq(tx, user)?;
                    tx.prepare_cached("UPDATE folders SET deleted_ms = ?1, modseq = ?2 WHERE id = ?3")?
                        .execute(params![now, modseq, folder_id])?;
                }
                Ok(())
            }
        })
    }

    fn changes(&self, user: UserId, since: i64, limit: usize) -> Result<ChangeBatch> {
        if since < 0 {
            return Err(StoreError::Invalid(format!("bad cursor {since}: cursors are not negative")));
        }
        let limit = limit.clamp(1, MAX_PAGE);
        self.read(|tx| {
            let (highest, purged): (i64, i64) = tx
                .prepare_cached("SELECT highest_modseq, purged_modseq FROM users WHERE id = ?1")?
                .query_row(params![user], |row| Ok((row.get(0)?, row.get(1)?)))?;
            // Invariant: a delta is complete or refused. A cursor inside the purged range could
            // miss deletions; a cursor beyond the counter belongs to another store's history.
            if since > highest || (since > 0 && since < purged) {
                return Err(StoreError::ResyncRequired { since, oldest: purged });
            }
            let mut rows = journal_page(tx, user, since, limit)?;
            let has_more = rows.len() > limit;
            rows.truncate(limit);
            let cursor = match rows.last() {
                Some(last) if has_more => last.modseq(),
                _ => highest,
            };
            Ok(ChangeBatch { rows, cursor, has_more })
        })
    }

    fn objects_modified_between(
        &self,
        user: UserId,
        after: Timestamp,
        until: Timestamp,
        limit: usize,
    ) -> Result<Vec<Object>> {
        let limit = i64::try_from(limit).unwrap_or(i64::MAX);
        self.read(|tx| {
            let mut statement = tx.prepare_cached(&format!(
                "SELECT {OBJECT_COLUMNS} FROM objects WHERE user_id = ?1 AND deleted_ms IS NULL
                 AND modified_ms > ?2 AND modified_ms <= ?3 ORDER BY modified_ms LIMIT ?4"
            ))?;
            let objects = statement
                .query_map(params![user, after.as_millisecond(), until.as_millisecond(), limit], object_row)?
                .collect::<rusqlite::Result<_>>()?;
            Ok(objects)
        })
    }

    fn next_modified_after(&self, user: UserId, after: Timestamp) -> Result<Option<Timestamp>> {
        self.read(|tx| {
            let first: Option<i64> = tx
                .prepare_cached(
                    "SELECT MIN(modified_ms) FROM objects WHERE user_id = ?1 AND deleted_ms IS NULL AND modified_ms > ?2",
                )?
                .query_row(params![user, after.as_millisecond()], |row| row.get(0))?;
            Ok(first.map(timestamp))
        })
    }

    fn moved_away(&self, user: UserId, path: &str, hash: &str) -> Result<Option<Object>> {
        self.read(|tx| {
            let noted = tx
                .prepare_cached("SELECT 1 FROM moved_away WHERE user_id = ?1 AND path = ?2 AND hash = ?3")?
                .exists(params![user, path, hash])?;
            if !noted {
                return Ok(None);
            }
            let mut holders = tx.prepare_cached(&format!(
                "SELECT {OBJECT_COLUMNS} FROM objects WHERE user_id = ?1 AND hash = ?2 AND deleted_ms IS NULL
                 ORDER BY modseq DESC"
            ))?;
            let holders = holders.query_map(params![user, hash], object_row)?.collect::<rusqlite::Result<Vec<_>>>()?;
            Ok(holders.into_iter().find(|object| entry_path(tx, &object.folder_id, &object.name) != path))
        })
    }

    fn deleted_at(&self, user: UserId, path: &str, hash: &str) -> Result<Option<String>> {
        self.read(|tx| {
            let mut tombstones = tx.prepare_cached(
                "SELECT id, folder_id, name FROM objects WHERE user_id = ?1 AND hash = ?2 AND deleted_ms IS NOT NULL
                 ORDER BY modseq DESC",
            )?;
            let tombstones = tombstones
                .query_map(params![user, hash], |row| Ok((row.get(0)?, row.get(1)?, row.get(2)?)))?
                .collect::<rusqlite::Result<Vec<(String, String, String)>>>()?;
            Ok(tombstones.into_iter().find(|(_, folder, name)| entry_path(tx, folder, name) == path).map(|(id, ..)| id))
        })
    }

    fn revive(&self, user: UserId, id: &str, folder_id: &str, name: &Name, quota_bytes: Option<u64>) -> Result<Object> {
        self.write(|tx, now| {
            let object = tx
                .prepare_cached(&format!(
                    "SELECT {OBJECT_COLUMNS} FROM objects WHERE id = ?1 AND user_id = ?2 AND deleted_ms IS NOT NULL"
                ))?
                .query_row(params![id, user], object_row)
                .optional()?
                .ok_or_else(|| StoreError::NotFound(format!("no deleted object with id {id}")))?;
            let folder = live_folder(tx, user, folder_id)?;
            if blob_size(tx, user, &object.hash)?.is_none() {
                return Err(StoreError::BlobMissing(format!("content {} is no longer kept", object.hash)));
            }
            ensure_name_free(tx, &folder.id, name.as_str(), None)?;
            if folder.id != object.folder_id || name.as_str() != object.name {
                note_moved_away(tx, user, &object, now)?;
            }
            let modseq = next_modseq(tx, user)?;
            tx.prepare_cached(
                "UPDATE objects SET folder_id = ?1, name = ?2, modseq = ?3, deleted_ms = NULL WHERE id = ?4",
            )?
            .execute(params![folder.id, name.as_str(), modseq, object.id])?;
            ensure_within_quota(tx, user, quota_bytes, || {
                format!("bringing back {}", entry_path(tx, &folder.id, name.as_str()))
            })?;
            live_object(tx, user, &object.id)
        })
    }

    fn holds_content(&self, user: UserId, hash: &str) -> Result<bool> {
        self.read(|tx| {
            let found = tx
                .prepare_cached(
                    "SELECT 1 FROM objects WHERE user_id = ?1 AND hash = ?2 AND deleted_ms IS NULL LIMIT 1",
                )?
                .query_row(params![user, hash], |_| Ok(()))
                .optional()?;
            Ok(found.is_some())
        })
    }

    fn has_blob(&self, user: UserId, hash: &str) -> Result<bool> {
        self.read(|tx| {
            let found = tx
                .prepare_cached("SELECT 1 FROM blobs WHERE user_id = ?1 AND hash = ?2")?
                .query_row(params![user, hash], |_| Ok(()))
                .optional()?;
            Ok(found.is_some() && self.blobs.contains(hash))
        })
    }

    fn blobs(&self) -> &BlobDir {
        &self.blobs
    }

    fn commit_blob(&self, user: UserId, blob: VerifiedBlob) -> Result<()> {
        // Under the writer lock, so a collection cannot remove the file between its install and
        // the row that keeps it alive.
        let connection = lock(&self.writer);
        let (hash, size) = (blob.hash.clone(), i64::try_from(blob.size).unwrap_or(i64::MAX));
        // Invariant: the payload is on disk before any metadata names it.
        self.blobs.install(blob)?;
        connection
            .prepare_cached(
                "INSERT INTO blobs (user_id, hash, size, created_ms) VALUES (?1, ?2, ?3, ?4)
                 ON CONFLICT (user_id, hash) DO UPDATE SET created_ms = excluded.created_ms",
            )?
            .execute(params![user, hash, size, self.now_ms()])?;
        Ok(())
    }

    fn blob_path(&self, hash: &str) -> PathBuf {
        self.blobs.path(hash)
    }

    fn collect_garbage(&self) -> Result<GcReport> {
        let mut connection = lock(&self.writer);
        let now = self.now_ms();
        let millis = |duration: Duration| i64::try_from(duration.as_millis()).unwrap_or(i64::MAX);
        let tombstone_cutoff = now.saturating_sub(millis(self.settings.tombstone_retention));
        let blob_cutoff = now.saturating_sub(millis(self.settings.blob_grace));
        let mut report = GcReport::default();
        let tx = connection.transaction_with_behavior(TransactionBehavior::Immediate)?;
        // Objects before folders: a tombstoned object may still name its tombstoned folder.
        for table in ["objects", "folders"] {
            let purged: Vec<(UserId, i64)> = tx
                .prepare(&format!(
                    "SELECT user_id, MAX(modseq) FROM {table} WHERE deleted_ms IS NOT NULL AND deleted_ms < ?1 GROUP BY user_id"
                ))?
                .query_map(params![tombstone_cutoff], |row| Ok((row.get(0)?, row.get(1)?)))?
                .collect::<rusqlite::Result<_>>()?;
            for (user, modseq) in purged {
                tx.execute(
                    "UPDATE users SET purged_modseq = CASE WHEN purged_modseq < ?1 THEN ?1 ELSE purged_modseq END WHERE id = ?2",
                    params![modseq, user],
                )?;
            }
            // Invariant: a folder goes only once nothing names it. A clock that went back can
            // date a folder's deletion before its contents'; what still names it keeps it, and
            // folders that held only folders go in the rounds that follow.
            let delete = if table == "objects" {
                "DELETE FROM objects WHERE deleted_ms IS NOT NULL AND deleted_ms < ?1"
            } else {
                "DELETE FROM folders WHERE deleted_ms IS NOT NULL AND deleted_ms < ?1
                   AND NOT EXISTS (SELECT 1 FROM objects o WHERE o.folder_id = folders.id)
                   AND NOT EXISTS (SELECT 1 FROM folders c WHERE c.parent_id = folders.id)"
            };
            loop {
                let removed = tx.execute(delete, params![tombstone_cutoff])?;
                report.tombstones_purged += removed as u64;
                if removed == 0 || table == "objects" {
                    break;
                }
            }
        }
        // A device whose index is older than the tombstones re-reads its whole view anyway; the
        // old places of moved content are kept as long.
        tx.execute("DELETE FROM moved_away WHERE moved_ms < ?1", params![tombstone_cutoff])?;
        let released: Vec<(String, i64)> = tx
            .prepare(
                "DELETE FROM blobs WHERE created_ms < ?1 AND NOT EXISTS (
                    SELECT 1 FROM objects o WHERE o.user_id = blobs.user_id AND o.hash = blobs.hash AND o.deleted_ms IS NULL
                 ) RETURNING hash, size",
            )?
            .query_map(params![blob_cutoff], |row| Ok((row.get(0)?, row.get(1)?)))?
            .collect::<rusqlite::Result<_>>()?;
        tx.commit()?;
        let mut still_named = connection.prepare("SELECT 1 FROM blobs WHERE hash = ?1 LIMIT 1")?;
        let mut seen = HashSet::new();
        for (hash, size) in released {
            if seen.insert(hash.clone()) && !still_named.exists(params![hash])? {
                self.blobs.remove(&hash)?;
                report.blobs_removed += 1;
                report.bytes_freed += u64::try_from(size).unwrap_or(0);
            }
        }
        // Files that no row names: left by a crash between a commit above and its removals.
        for hash in self.blobs.hashes()? {
            if !still_named.exists(params![hash])? {
                self.blobs.remove(&hash)?;
                report.blobs_removed += 1;
            }
        }
        Ok(report)
    }
}

/// Adds a device and its token, refused when a live device has its name.
#[allow(clippy::too_many_arguments)]
fn insert_device(
    tx: &Transaction<'_>,
    ids: &IdSource,
    now: i64,
    user: UserId,
    name: &Name,
    class: &str,
    time_zone: Option<&str>,
    token_hash: &str,
    preferences: Option<&str>,
) -> Result<DeviceRecord> {
    let taken = tx
        .query_row(
            "SELECT 1 FROM devices WHERE user_id = ?1 AND name = ?2 AND revoked_ms IS NULL",
            params![user, name.as_str()],
            |_| Ok(()),
        )
        .optional()?;
    if taken.is_some() {
        return Err(StoreError::AlreadyExists(format!(
            "a device named {name} is already registered; revoke it first (cpm devices revoke {name})"
        )));
    }
    let id = ids('d')?;
    tx.execute(
        "INSERT INTO devices (id, user_id, name, class, time_zone, created_ms, profile) VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7)",
        params![id, user, name.as_str(), class, time_zone, now, preferences],
    )?;
    tx.execute(
        "INSERT INTO tokens (hash, user_id, device_id, created_ms) VALUES (?1, ?2, ?3, ?4)",
        params![token_hash, user, id, now],
    )?;
    Ok(tx.query_row(&format!("SELECT {DEVICE_COLUMNS} FROM devices WHERE id = ?1"), params![id], device_row)?)
}
