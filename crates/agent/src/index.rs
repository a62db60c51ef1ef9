//! The device's index, `.cpm/index.db`: every record it holds (id, folder, name, kept details,
//! link, content hash, local state and stamp) and the cursor it has applied.
//!
//! Invariant: the records and the cursor change in one transaction, so the index never claims
//! a journal position whose changes it has not recorded.

use crate::error::{SyncError, SyncResult as Result};
use crate::plan::HashMap;
use crate::plan::{FileStamp, LocalState, Record, Tree};
use crate::scan::CleanStamps;
use cpm_core::EntryKind;
use rusqlite::{Connection, OptionalExtension, params};
use std::collections::BTreeSet;
use std::path::Path;

const SCHEMA: &str = "
CREATE TABLE IF NOT EXISTS records (
    id          TEXT PRIMARY KEY,
    kind        TEXT NOT NULL,
    parent_id   TEXT,
    name        TEXT NOT NULL,
    modseq      INTEGER NOT NULL,
    hash        TEXT,
    state       TEXT NOT NULL,
    local_size  INTEGER,
    local_mtime INTEGER,
    -- The file's inode when the record's stamp was taken (absent in older indexes).
    local_ino   INTEGER,
    entry       TEXT NOT NULL,
    -- The record's name here when it is not the one it would be given.
    local_name  TEXT
);
CREATE TABLE IF NOT EXISTS meta (key TEXT PRIMARY KEY, value TEXT NOT NULL);
-- What pulls are about to place or remove (written before each starts, cleared with the cursor
-- that follows them): after a crash, files found there holding this content are the agent's own
-- work, and files missing where it was removing them went by its hand, not the user's.
-- Every unfinished pull's intent is kept, so a second crash does not forget what the first placed.
CREATE TABLE IF NOT EXISTS intents (
    path     TEXT NOT NULL,
    id       TEXT NOT NULL,
    hash     TEXT NOT NULL DEFAULT '',
    removing INTEGER NOT NULL DEFAULT 0,
    PRIMARY KEY (path, id, hash)
);
-- Records the device changed in the store, whose place in its view is asked after at the next
-- pull (a folder it used that was outside its view, say); cleared with the cursor that follows.
CREATE TABLE IF NOT EXISTS recheck (id TEXT PRIMARY KEY);
-- The directory's stamps when a scan last found it in agreement with the records (folders with
-- size NULL): while they hold, nothing here changed. Cleared whenever the records change.
CREATE TABLE IF NOT EXISTS clean (path TEXT PRIMARY KEY, size INTEGER, mtime_ns INTEGER NOT NULL);
";

/// Bumped with every change to the tables or columns (see [`Index::migrate`]).
const INDEX_VERSION: i64 = 1;

pub struct Index {
    connection: Connection,
}

fn state_name(state: LocalState) -> &'static str {
    match state {
        LocalState::Folder => "folder",
        LocalState::File => "file",
        LocalState::Stub => "stub",
    }
}

impl Index {
    pub fn open(meta_dir: &Path) -> Result<Self> {
        let path = meta_dir.join("index.db");
        let connection = Connection::open(&path)
            .map_err(|error| SyncError::Index(format!("cannot open {}: {error}", path.display())))?;
        let _mode: String = connection.query_row("PRAGMA journal_mode = WAL", [], |row| row.get(0))?;
        connection.execute_batch("PRAGMA synchronous = FULL;")?;
        // An index this version of the engine wrote has its tables and columns already.
        let version: i64 = connection.query_row("PRAGMA user_version", [], |row| row.get(0))?;
        if version < INDEX_VERSION {
            Self::migrate(&connection)?;
            connection.execute_batch(&format!("PRAGMA user_version = {INDEX_VERSION};"))?;
        }
        Ok(Self { connection })
    }

    /// Brings an index of any earlier version (or none) to this one's tables and columns.
    fn migrate(connection: &Connection) -> Result<()> {
        connection.execute_batch(SCHEMA)?;
        // Indexes written before names could be mapped, before a file's inode was kept, or before
        // removals were intents, have no column for them.
        for (table, column, declared) in [
            ("records", "local_name", "TEXT"),
            ("records", "local_ino", "INTEGER"),
            ("intents", "removing", "INTEGER NOT NULL DEFAULT 0"),
        ] {
            let present: bool = connection.query_row(
                "SELECT EXISTS (SELECT 1 FROM pragma_table_info(?1) WHERE name = ?2)",
                [table, column],
                |row| row.get(0),
            )?;
            if !present {
                connection.execute_batch(&format!("ALTER TABLE {table} ADD COLUMN {column} {declared};"))?;
            }
        }
        // Indexes written before intents accumulated kept one per path, in `inflight`.
        let single: bool = connection.query_row(
            "SELECT EXISTS (SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'inflight')",
            [],
            |row| row.get(0),
        )?;
        if single {
            connection.execute_batch(
                "BEGIN;
                 INSERT OR IGNORE INTO intents (path, id, hash) SELECT path, id, COALESCE(hash, '') FROM inflight;
                 DROP TABLE inflight;
                 COMMIT;",
            )?;
        }
        Ok(())
    }

    pub fn meta(&self, key: &str) -> Result<Option<String>> {
        Ok(self
            .connection
            .query_row("SELECT value FROM meta WHERE key = ?1", params![key], |row| row.get(0))
            .optional()?)
    }

    pub fn set_meta(&mut self, key: &str, value: &str) -> Result<()> {
        self.set_metas(&[(key, value.to_owned())])
    }

    pub fn set_metas(&mut self, meta: &[(&str, String)]) -> Result<()> {
        self.commit(&Tree::default(), &BTreeSet::new(), &BTreeSet::new(), meta)
    }

    /// The next sync reads the device's whole view again (the directory now syncs as another
    /// device, or under another profile), keeping every record to match the files against.
    pub fn read_again(&mut self) -> Result<()> {
        self.connection.execute("DELETE FROM meta WHERE key IN ('cursor', 'profile_view')", [])?;
        Ok(())
    }

    pub fn cursor(&self) -> Result<Option<i64>> {
        Ok(self.meta("cursor")?.and_then(|cursor| cursor.parse().ok()))
    }

    pub fn load(&self) -> Result<Tree> {
        let mut statement = self.connection.prepare(
            "SELECT id, kind, parent_id, name, modseq, hash, state, local_size, local_mtime, entry, local_name, local_ino FROM records",
        )?;
        let mut records = HashMap::default();
        let rows = statement.query_map([], |row| {
            Ok((
                row.get::<_, String>(0)?,
                row.get::<_, String>(1)?,
                row.get::<_, Option<String>>(2)?,
                row.get::<_, String>(3)?,
                row.get::<_, i64>(4)?,
                row.get::<_, Option<String>>(5)?,
                row.get::<_, String>(6)?,
                row.get::<_, Option<i64>>(7)?,
                row.get::<_, Option<i64>>(8)?,
                row.get::<_, String>(9)?,
                row.get::<_, Option<String>>(10)?,
                row.get::<_, Option<i64>>(11)?,
            ))
        })?;
        for row in rows {
            let (id, kind, parent_id, name, modseq, hash, state, size, mtime, entry, local_name, ino) = row?;
            let kind = match kind.as_str() {
                "folder" => EntryKind::Folder,
                "message" => EntryKind::Message,
                _ => EntryKind::File,
            };
            let state = match state.as_str() {
                "folder" => LocalState::Folder,
                "stub" => LocalState::Stub,
                _ => LocalState::File,
            };
            let local = match (size, mtime) {
                (Some(size), Some(mtime_ns)) => Some(FileStamp {
                    size: u64::try_from(size).unwrap_or(0),
                    mtime_ns,
                    ino: ino.and_then(|ino| u64::try_from(ino).ok()).unwrap_or(0),
                }),
                _ => None,
            };
            let entry = serde_json::from_str(&entry)
                .map_err(|error| SyncError::Index(format!("the index entry of {id} is damaged: {error}")))?;
            records.insert(
                id.clone(),
                Record { id, kind, parent_id, name, modseq, hash, state, local, entry, local_name },
            );
        }
        Ok(Tree { root_id: self.meta("root_id")?.unwrap_or_default(), records })
    }

    /// What unfinished pulls were placing, the latest first: (path, record id, content hash).
    pub fn inflight(&self) -> Result<Vec<(String, String, Option<String>)>> {
        let mut statement =
            self.connection.prepare("SELECT path, id, hash FROM intents WHERE removing = 0 ORDER BY rowid DESC")?;
        let rows = statement.query_map([], |row| {
            let hash: String = row.get(2)?;
            Ok((row.get(0)?, row.get(1)?, Some(hash).filter(|hash| !hash.is_empty())))
        })?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// The records whose files or folders unfinished pulls were removing.
    pub fn removing(&self) -> Result<BTreeSet<String>> {
        let mut statement = self.connection.prepare("SELECT id FROM intents WHERE removing = 1")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    /// Records what a pull is about to place and remove (by path, with the record), before it
    /// changes anything, beside what earlier unfinished pulls did.
    pub fn set_inflight(
        &mut self,
        placing: &[(String, String, Option<String>)],
        removing: &[(String, String)],
    ) -> Result<()> {
        let tx = self.connection.transaction()?;
        {
            let mut insert =
                tx.prepare_cached("INSERT OR REPLACE INTO intents (path, id, hash, removing) VALUES (?1, ?2, ?3, ?4)")?;
            for (path, id, hash) in placing {
                insert.execute(params![path, id, hash.as_deref().unwrap_or_default(), false])?;
            }
            for (path, id) in removing {
                insert.execute(params![path, id, "", true])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Writes the named records of `tree`, deletes the dropped ones and sets `meta`, together;
    /// when `meta` moves the cursor, the pull is over and its intent is cleared in the same step.
    pub fn commit(
        &mut self,
        tree: &Tree,
        changed: &BTreeSet<String>,
        dropped: &BTreeSet<String>,
        meta: &[(&str, String)],
    ) -> Result<()> {
        let tx = self.connection.transaction()?;
        {
            let mut put = tx.prepare_cached(
                "INSERT INTO records (id, kind, parent_id, name, modseq, hash, state, local_size, local_mtime, entry, local_name, local_ino)
                 VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7, ?8, ?9, ?10, ?11, ?12)
                 ON CONFLICT (id) DO UPDATE SET kind = excluded.kind, parent_id = excluded.parent_id, name = excluded.name,
                   modseq = excluded.modseq, hash = excluded.hash, state = excluded.state,
                   local_size = excluded.local_size, local_mtime = excluded.local_mtime, entry = excluded.entry,
                   local_name = excluded.local_name, local_ino = excluded.local_ino",
            )?;
            for id in changed {
                let Some(record) = tree.records.get(id) else { continue };
                put.execute(params![
                    record.id,
                    record.kind.to_string(),
                    record.parent_id,
                    record.name,
                    record.modseq,
                    record.hash,
                    state_name(record.state),
                    record.local.map(|stamp| i64::try_from(stamp.size).unwrap_or(i64::MAX)),
                    record.local.map(|stamp| stamp.mtime_ns),
                    serde_json::to_string(&record.entry)?,
                    record.local_name,
                    record.local.map(|stamp| i64::try_from(stamp.ino).unwrap_or(0)),
                ])?;
            }
            let mut remove = tx.prepare_cached("DELETE FROM records WHERE id = ?1")?;
            for id in dropped {
                remove.execute(params![id])?;
            }
            let mut set = tx.prepare_cached(
                "INSERT INTO meta (key, value) VALUES (?1, ?2) ON CONFLICT (key) DO UPDATE SET value = excluded.value",
            )?;
            for (key, value) in meta {
                set.execute(params![key, value])?;
            }
            if meta.iter().any(|(key, _)| *key == "cursor") {
                tx.execute("DELETE FROM intents", [])?;
                tx.execute("DELETE FROM recheck", [])?;
            }
            // Invariant: clean stamps only ever describe the records as they are now.
            if !changed.is_empty() || !dropped.is_empty() {
                tx.execute("DELETE FROM clean", [])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// The stamps of the last scan that agreed with the records.
    pub fn clean(&self) -> Result<CleanStamps> {
        let mut statement = self.connection.prepare("SELECT path, size, mtime_ns FROM clean")?;
        let mut rows = statement.query([])?;
        let mut clean = CleanStamps::default();
        while let Some(row) = rows.next()? {
            let (path, size, mtime_ns): (String, Option<i64>, i64) = (row.get(0)?, row.get(1)?, row.get(2)?);
            match size {
                None => clean.dirs.push((path, mtime_ns)),
                Some(size) => {
                    let stamp = FileStamp { size: u64::try_from(size).unwrap_or(0), mtime_ns, ino: 0 };
                    clean.files.push((path, stamp));
                }
            }
        }
        Ok(clean)
    }

    pub fn set_clean(&mut self, clean: &CleanStamps) -> Result<()> {
        let tx = self.connection.transaction()?;
        tx.execute("DELETE FROM clean", [])?;
        {
            let mut insert = tx.prepare_cached("INSERT INTO clean (path, size, mtime_ns) VALUES (?1, ?2, ?3)")?;
            for (path, mtime_ns) in &clean.dirs {
                insert.execute(params![path, Option::<i64>::None, mtime_ns])?;
            }
            for (path, stamp) in &clean.files {
                insert.execute(params![path, i64::try_from(stamp.size).unwrap_or(i64::MAX), stamp.mtime_ns])?;
            }
        }
        tx.commit()?;
        Ok(())
    }

    /// Records one record right away (a change the device just made here).
    pub fn put(&mut self, tree: &Tree, id: &str) -> Result<()> {
        self.commit(tree, &BTreeSet::from([id.to_owned()]), &BTreeSet::new(), &[])
    }

    /// Records one record the device just changed in the store, and that the next pull must ask
    /// how it stands in the device's view.
    pub fn put_pushed(&mut self, tree: &Tree, id: &str) -> Result<()> {
        self.put(tree, id)?;
        self.recheck(id)
    }

    /// Asks after a record at the next sync, even when nothing else changed.
    pub fn recheck(&mut self, id: &str) -> Result<()> {
        self.connection.execute("INSERT OR IGNORE INTO recheck (id) VALUES (?1)", params![id])?;
        Ok(())
    }

    /// Drops a record the device no longer holds here, to be asked after at the next pull.
    pub fn forget(&mut self, id: &str) -> Result<()> {
        self.drop_record(id)?;
        self.recheck(id)
    }

    /// Records pushed since the last pull that moved the cursor.
    pub fn rechecks(&self) -> Result<Vec<String>> {
        let mut statement = self.connection.prepare("SELECT id FROM recheck ORDER BY id")?;
        let rows = statement.query_map([], |row| row.get(0))?;
        Ok(rows.collect::<rusqlite::Result<_>>()?)
    }

    pub fn drop_record(&mut self, id: &str) -> Result<()> {
        self.commit(&Tree::default(), &BTreeSet::new(), &BTreeSet::from([id.to_owned()]), &[])
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_index_that_kept_one_intent_per_path_keeps_them_when_opened() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cpm-index-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let old = Connection::open(dir.join("index.db"))?;
        old.execute_batch(
            "CREATE TABLE inflight (path TEXT PRIMARY KEY, id TEXT NOT NULL, hash TEXT);
             INSERT INTO inflight VALUES ('docs', 'fdocs', NULL), ('docs/a.txt', 'oa', 'HA');",
        )?;
        drop(old);
        let mut index = Index::open(&dir)?;
        index.set_inflight(&[("docs/b.txt".into(), "ob".into(), Some("HB".into()))], &[])?;
        let mut intents = index.inflight()?;
        intents.sort();
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(
            intents,
            [
                ("docs".to_owned(), "fdocs".to_owned(), None),
                ("docs/a.txt".to_owned(), "oa".to_owned(), Some("HA".to_owned())),
                ("docs/b.txt".to_owned(), "ob".to_owned(), Some("HB".to_owned())),
            ]
        );
        Ok(())
    }

    #[test]
    fn an_index_from_before_removal_intents_keeps_its_placements_and_records_removals() -> anyhow::Result<()> {
        let dir = std::env::temp_dir().join(format!("cpm-index-removing-{}", std::process::id()));
        std::fs::create_dir_all(&dir)?;
        let old = Connection::open(dir.join("index.db"))?;
        old.execute_batch(
            "CREATE TABLE intents (path TEXT NOT NULL, id TEXT NOT NULL, hash TEXT NOT NULL DEFAULT '',
                                   PRIMARY KEY (path, id, hash));
             INSERT INTO intents VALUES ('a.txt', 'oa', 'HA');",
        )?;
        drop(old);
        let mut index = Index::open(&dir)?;
        index.set_inflight(&[], &[("b.txt".into(), "ob".into())])?;
        let (placing, removing) = (index.inflight()?, index.removing()?);
        std::fs::remove_dir_all(&dir)?;
        assert_eq!(placing, [("a.txt".to_owned(), "oa".to_owned(), Some("HA".to_owned()))]);
        assert_eq!(removing, BTreeSet::from(["ob".to_owned()]));
        Ok(())
    }
}
