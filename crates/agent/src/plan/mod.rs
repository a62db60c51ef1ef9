//! The sync planner: pure functions from what the device knows (its index), what its directory
//! holds now (a scan), and what changed in the store (the device's view of the journal) to a
//! list of actions. A thin executor applies them; nothing here touches the disk or the network.
//!
//! Rules (DESIGN.md, sync rules 2–5):
//! - Moves are moves: a record that changed only its folder or name is renamed locally, and a
//!   local file that vanished while an untracked file with its hash appeared is sent as a move.
//! - A conflict never loses data: when both sides changed an object's content, the store's version
//!   keeps the name and the device's version is set aside as `NAME (conflict DEVICE DATE).EXT`
//!   and uploaded; a modification beats a deletion on either side; a local file in the way of an
//!   incoming one is set aside, never overwritten.
//! - Replaying a journal page is harmless: content already in place is adopted, not fetched again,
//!   and local files an interrupted pull left behind are recognized, not uploaded as new.

use crate::naming::{STUB_SUFFIX, join, local_name, maps, unmapped};
use cpm_core::EntryKind;
use cpm_proto::Entry;
use std::collections::{BTreeMap, BTreeSet};

/// Maps whose iteration order depends only on what was put in them: a plan made twice from the
/// same inputs is the same plan, so a simulated run replays exactly.
pub type HashMap<K, V> = std::collections::HashMap<K, V, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;
pub type HashSet<K> = std::collections::HashSet<K, std::hash::BuildHasherDefault<std::hash::DefaultHasher>>;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalState {
    Folder,
    /// The content is on the device.
    File,
    /// Only the details and the link are, in a `.cpmlink` placeholder.
    Stub,
}

/// Size, modification time and inode of a local file: when they match the index, it is
/// unchanged. (Size and time alone miss two files of one size written in one tick and swapped.)
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
    /// The file's inode number; 0 when not known (a stamp an older index kept).
    pub ino: u64,
}

impl FileStamp {
    /// Whether `found` is the file this stamp was taken of, unchanged: an inode either side
    /// does not know is not compared.
    pub fn same_file(&self, found: &FileStamp) -> bool {
        // Invariant: a file is unchanged only when its size, time and inode match.
        self.size == found.size
            && self.mtime_ns == found.mtime_ns
            && (self.ino == 0 || found.ino == 0 || self.ino == found.ino)
    }
}

/// One record of the index: the state the device and the store last agreed on.
#[derive(Debug, Clone, PartialEq)]
pub struct Record {
    pub id: String,
    pub kind: EntryKind,
    pub parent_id: Option<String>,
    pub name: String,
    pub modseq: i64,
    pub hash: Option<String>,
    pub state: LocalState,
    pub local: Option<FileStamp>,
    /// The details the device keeps, as received.
    pub entry: Entry,
    /// The name it has here when that is not the one it would be given (the store's name was
    /// too long for this device, clashed here, or came from here in another Unicode form).
    pub local_name: Option<String>,
}

impl Record {
    /// A record holding `entry`, in `state`, with the stamp of its local file when it has one.
    pub fn new(entry: Entry, state: LocalState, local: Option<FileStamp>) -> Self {
        Self {
            id: entry.id.clone(),
            kind: entry.kind,
            parent_id: entry.parent_id.clone(),
            name: entry.name.clone(),
            modseq: entry.modseq,
            hash: entry.hash.clone(),
            state,
            local,
            entry,
            local_name: None,
        }
    }

    /// The name of its file (or folder) here.
    pub fn file_name(&self) -> String {
        self.local_name.clone().unwrap_or_else(|| local_name(self.kind, &self.name, self.state == LocalState::Stub))
    }
}

/// An entry a sync left alone, and why: it is retried by every sync.
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
pub struct Skipped {
    /// Its path here (or in the store, for what could not be placed here).
    pub path: String,
    pub reason: String,
    /// What the user can do about it.
    pub fix: String,
}

impl Skipped {
    pub fn new(path: &str, reason: &str, fix: &str) -> Self {
        Self { path: path.to_owned(), reason: reason.to_owned(), fix: fix.to_owned() }
    }

    /// Its path as the store spells it, with control characters shown escaped (a name that
    /// holds one is often why it was skipped, and would otherwise print as nothing, or worse).
    pub fn shown_path(&self) -> String {
        let path = self.path.strip_prefix('/').unwrap_or(&self.path);
        let mut shown = String::with_capacity(path.len() + 1);
        shown.push('/');
        for c in path.chars() {
            if c.is_control() { shown.extend(c.escape_default()) } else { shown.push(c) }
        }
        shown
    }
}

/// The index in memory.
#[derive(Debug, Clone, Default)]
pub struct Tree {
    pub root_id: String,
    pub records: HashMap<String, Record>,
}

/// A file found in the device's directory; `hash` is computed for files that are new or whose
/// stamp differs from their record.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct LocalFile {
    pub stamp: FileStamp,
    pub hash: Option<String>,
}

/// The device's directory as it is now, by relative path.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    pub files: BTreeMap<String, LocalFile>,
    pub dirs: BTreeSet<String>,
    /// Files an interrupted pull placed (record id → path), found still holding what it put
    /// there. Invariant: the agent's own work is never taken for the user's, so a crash never
    /// leads to a second copy in the store.
    pub ours: BTreeMap<String, String>,
    /// Files an interrupted pull placed that the user then moved (record id → where they are
    /// now, found by their content): a move of that record.
    pub ours_moved: BTreeMap<String, String>,
    /// Stubs the index does not record (an index lost, a pull cut short), by path, with the id
    /// of the record each stands for (none for one a power cut tore empty): the engine's own
    /// leftovers, not files of the user's.
    pub stray_stubs: BTreeMap<String, String>,
    /// Stubs the index records that the user wrote over with a file of their own, by path, with
    /// the stub's record id: the file is the user's (it goes up), the stub is placed anew.
    pub replaced_stubs: BTreeMap<String, String>,
    /// Records whose files an unfinished pull was removing: one missing went by the engine's
    /// hand, not the user's, and is no deletion to send up (after a new profile brought it back
    /// into the view, it would delete it from the store).
    pub removed: BTreeSet<String>,
    /// Files the scan before this sync's push found that this one, after it, does not: moved
    /// or removed by the user while the sync ran. Their records wait for the next sync, which
    /// sends that up; they are not fetched again.
    pub vanished: BTreeSet<String>,
    /// Each folder's modification time (ns), taken before the folder was read.
    pub dir_mtimes: BTreeMap<String, i64>,
    /// When the scan began (ns since the epoch).
    pub started_ns: i64,
    /// What the scan could not take in (an unreadable file, a name that is not UTF-8).
    pub skipped: Vec<Skipped>,
}

impl Scan {
    /// The scan of a directory that holds exactly what `tree` records, stamps included: what
    /// reading it would find while its clean stamps hold, without reading it.
    pub fn as_indexed(tree: &Tree, started_ns: i64, dir_mtimes: BTreeMap<String, i64>) -> Self {
        let mut scan = Scan { dir_mtimes, started_ns, ..Scan::default() };
        for (id, path) in tree.paths() {
            let Some(record) = tree.records.get(&id).filter(|_| id != tree.root_id) else { continue };
            let stamp = match record.state {
                LocalState::Folder => {
                    scan.dirs.insert(path);
                    continue;
                }
                // A stub's presence is all that counts, as when it is read.
                LocalState::Stub => FileStamp::default(),
                LocalState::File => record.local.unwrap_or_default(),
            };
            scan.files.insert(path, LocalFile { stamp, hash: None });
        }
        scan
    }
}

/// True when the directory holds exactly what the index says and every content file is as
/// recorded: with no change from the store, the planners then have nothing to do.
pub fn agrees(tree: &Tree, scan: &Scan) -> bool {
    if !scan.ours.is_empty() || !scan.ours_moved.is_empty() || !scan.stray_stubs.is_empty() {
        return false;
    }
    let paths = tree.paths();
    let (mut files, mut dirs) = (0, 0);
    for (id, record) in &tree.records {
        if *id == tree.root_id {
            continue;
        }
        let Some(path) = paths.get(id) else { return false };
        let present = match record.state {
            LocalState::Folder => {
                dirs += 1;
                scan.dirs.contains(path)
            }
            LocalState::Stub => {
                files += 1;
                scan.files.contains_key(path)
            }
            LocalState::File => {
                files += 1;
                scan.files.get(path).is_some_and(|file| record.local.is_some_and(|local| local.same_file(&file.stamp)))
            }
        };
        if !present {
            return false;
        }
    }
    // Every expected entry is there; equal counts leave room for nothing else.
    scan.files.len() == files && scan.dirs.len() == dirs
}

impl Tree {
    /// The relative local path of a record (`""` for the root); `None` when its folder is unknown.
    pub fn path_of(&self, id: &str) -> Option<String> {
        let mut names = Vec::new();
        let mut cursor = id;
        while cursor != self.root_id {
            let record = self.records.get(cursor)?;
            names.push(record.file_name());
            cursor = record.parent_id.as_deref()?;
            if names.len() > self.records.len() {
                return None;
            }
        }
        names.reverse();
        Some(names.join("/"))
    }

    /// The records along a local path, from the root down, as far as the records know it.
    fn walk<'a>(&'a self, local: &'a str) -> impl Iterator<Item = (&'a str, Option<&'a Record>)> + 'a {
        let mut parent = Some(self.root_id.as_str());
        local.split('/').filter(|name| !name.is_empty()).map(move |name| {
            let known = parent.and_then(|parent| {
                self.records
                    .values()
                    .find(|record| record.parent_id.as_deref() == Some(parent) && record.file_name() == name)
            });
            parent = known.map(|record| record.id.as_str());
            (name, known)
        })
    }

    /// The store path of a local one: each folder the records know by its name here is named as
    /// the store names it (a mapped name stays on this device); the rest is as it is here.
    pub fn store_path_of(&self, local: &str) -> String {
        let names: Vec<&str> =
            self.walk(local).map(|(name, known)| known.map_or(name, |record| record.name.as_str())).collect();
        format!("/{}", names.join("/"))
    }

    /// The record at a local path, found by walking its names from the root.
    pub fn id_at(&self, local: &str) -> Option<String> {
        let mut found = Some(self.root_id.clone());
        for (_, known) in self.walk(local) {
            found = Some(known?.id.clone());
        }
        found
    }

    /// The name a record keeps in the store when its file here is named `here`: its store name
    /// while it keeps the name it was given here, `here` once the user renamed it. A name this
    /// device makes for the record (for a twin, say, known again by its mark after the index
    /// that said so was lost) is never the store's.
    pub fn store_name(&self, id: &str, here: &str) -> String {
        self.stored_name(id, here, "")
    }

    /// The name in the store of the object whose stub is named `here`: as [`Tree::store_name`],
    /// for the name without the stub's suffix.
    pub fn stub_store_name(&self, id: &str, here: &str) -> String {
        self.stored_name(id, here, STUB_SUFFIX)
    }

    fn stored_name(&self, id: &str, here: &str, suffix: &str) -> String {
        match self.records.get(id) {
            Some(record) if record.file_name() == here => record.name.clone(),
            _ => {
                let bare = here.strip_suffix(suffix).unwrap_or(here);
                match unmapped(bare) {
                    Some(name) if maps(here, &name, id, suffix) => name,
                    _ => bare.to_owned(),
                }
            }
        }
    }

    /// The folder records in `parent` named `name` here.
    pub fn folders_named<'a>(&'a self, parent: &'a str, name: &'a str) -> impl Iterator<Item = &'a Record> + 'a {
        self.records.values().filter(move |record| {
            record.state == LocalState::Folder
                && record.parent_id.as_deref() == Some(parent)
                && record.file_name() == name
        })
    }

    /// Every record's path, by id.
    pub fn paths(&self) -> HashMap<String, String> {
        // Each folder's path is worked out once; a record's is its folder's and its own name.
        let mut folders: HashMap<&str, Option<String>> = HashMap::default();
        self.records
            .iter()
            .filter_map(|(id, record)| {
                if *id == self.root_id {
                    return Some((id.clone(), String::new()));
                }
                let parent = record.parent_id.as_deref()?;
                let folder = folders.entry(parent).or_insert_with(|| self.path_of(parent)).as_deref()?;
                Some((id.clone(), join(folder, &record.file_name())))
            })
            .collect()
    }

    /// The paths of the stubs the index records: only these are stubs; any other file is the
    /// user's, whatever its name.
    pub fn stub_paths(&self) -> HashSet<String> {
        let stubs: Vec<&String> =
            self.records.values().filter(|record| record.state == LocalState::Stub).map(|record| &record.id).collect();
        if stubs.is_empty() {
            return HashSet::default();
        }
        let paths = self.paths();
        stubs.into_iter().filter_map(|id| paths.get(id).cloned()).collect()
    }
}

/// True when the local file still holds what the record says.
pub(crate) fn same(record: &Record, file: &LocalFile) -> bool {
    record.local.is_some_and(|local| local.same_file(&file.stamp)) || (file.hash.is_some() && file.hash == record.hash)
}

pub(crate) fn object_kind(kind: EntryKind) -> cpm_core::ObjectKind {
    if kind == EntryKind::Message { cpm_core::ObjectKind::Message } else { cpm_core::ObjectKind::File }
}

mod pull;
mod push;

pub use pull::{Here, Listing, Pull, PullPlan, missing_folders, plan_pull};
pub use push::{Push, plan_push};

#[cfg(test)]
mod tests;
