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

use crate::naming::{conflict_name, is_stub, join, local_name, split};
use cpm_core::profile::Holding;
use cpm_core::{EntryKind, ObjectKind};
use cpm_proto::{Change, Entry};
use std::collections::{BTreeMap, BTreeSet, HashMap, HashSet};

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum LocalState {
    Folder,
    /// The content is on the device.
    File,
    /// Only the details and the link are, in a `.cpmlink` placeholder.
    Stub,
}

/// Size and modification time of a local file: when both match the index, it is unchanged.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct FileStamp {
    pub size: u64,
    pub mtime_ns: i64,
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
        }
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
    /// Each folder's modification time (ns), taken before the folder was read.
    pub dir_mtimes: BTreeMap<String, i64>,
    /// When the scan began (ns since the epoch).
    pub started_ns: i64,
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
                LocalState::Stub => FileStamp { size: 0, mtime_ns: 0 },
                LocalState::File => record.local.unwrap_or(FileStamp { size: 0, mtime_ns: 0 }),
            };
            scan.files.insert(path, LocalFile { stamp, hash: None });
        }
        scan
    }
}

/// True when the directory holds exactly what the index says and every content file is as
/// recorded: with no change from the store, the planners then have nothing to do.
pub fn agrees(tree: &Tree, scan: &Scan) -> bool {
    if !scan.ours.is_empty() || !scan.ours_moved.is_empty() {
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
                scan.files.get(path).is_some_and(|file| record.local == Some(file.stamp))
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
            names.push(local_name(record.kind, &record.name, record.state == LocalState::Stub));
            cursor = record.parent_id.as_deref()?;
            if names.len() > self.records.len() {
                return None;
            }
        }
        names.reverse();
        Some(names.join("/"))
    }

    /// Every record's path, by id.
    pub fn paths(&self) -> HashMap<String, String> {
        // Each folder's path is worked out once; a record's is its folder's and its own name.
        let mut folders: HashMap<&str, Option<String>> = HashMap::new();
        self.records
            .iter()
            .filter_map(|(id, record)| {
                if *id == self.root_id {
                    return Some((id.clone(), String::new()));
                }
                let parent = record.parent_id.as_deref()?;
                let folder = folders.entry(parent).or_insert_with(|| self.path_of(parent)).as_deref()?;
                let name = local_name(record.kind, &record.name, record.state == LocalState::Stub);
                Some((id.clone(), join(folder, &name)))
            })
            .collect()
    }

    /// Ids of every record below a folder, deepest last.
    fn below(&self, folder: &str) -> Vec<String> {
        let mut found = Vec::new();
        let mut queue = vec![folder.to_owned()];
        while let Some(parent) = queue.pop() {
            for record in self.records.values().filter(|record| record.parent_id.as_deref() == Some(parent.as_str())) {
                found.push(record.id.clone());
                if record.kind == EntryKind::Folder {
                    queue.push(record.id.clone());
                }
            }
        }
        found
    }
}

/// True when the local file still holds what the record says.
fn same(record: &Record, file: &LocalFile) -> bool {
    record.local == Some(file.stamp) || (file.hash.is_some() && file.hash == record.hash)
}

fn object_kind(kind: EntryKind) -> ObjectKind {
    if kind == EntryKind::Message { ObjectKind::Message } else { ObjectKind::File }
}

/// A change the device makes to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Push {
    CreateFolder {
        path: String,
    },
    /// A new object, or with `replace` a new version of one (refused if it changed since `base`).
    Upload {
        path: String,
        hash: String,
        kind: ObjectKind,
        replace: Option<(String, i64)>,
    },
    Move {
        id: String,
        path: String,
    },
    Delete {
        id: String,
        base_modseq: i64,
    },
    DeleteFolder {
        id: String,
    },
}

/// The device's changes since its last sync, leaving out what the store's changes decide.
/// The records the store's changes touch: removals, and upserts newer than what the device has
/// (the echo of the device's own change, at the modseq it already holds, is no change).
fn touched<'a>(tree: &Tree, remote: &'a [Change]) -> HashSet<&'a str> {
    remote
        .iter()
        .filter(|change| {
            change.deleted || tree.records.get(&change.id).is_none_or(|record| change.modseq > record.modseq)
        })
        .map(|change| change.id.as_str())
        .collect()
}

pub fn plan_push(tree: &Tree, scan: &Scan, remote: &[Change], content: impl Into<Holding>) -> Vec<Push> {
    let content = content.into();
    let touched = touched(tree, remote);
    let paths = tree.paths();
    let tracked: HashSet<&str> = paths.values().map(String::as_str).collect();
    let tracked_dirs: HashSet<&str> = tree
        .records
        .values()
        .filter(|record| record.state == LocalState::Folder)
        .filter_map(|record| paths.get(&record.id).map(String::as_str))
        .collect();
    let leftovers: HashSet<&str> = scan.ours.values().chain(scan.ours_moved.values()).map(String::as_str).collect();
    let new_files: Vec<(&String, &LocalFile)> = scan
        .files
        .iter()
        .filter(|(path, _)| !tracked.contains(path.as_str()) && !is_stub(path) && !leftovers.contains(path.as_str()))
        .collect();
    let new_dirs: Vec<&String> = scan
        .dirs
        .iter()
        .filter(|dir| !tracked_dirs.contains(dir.as_str()) && !scan.ours.values().any(|placed| placed == *dir))
        .collect();
    // Where the store's changes will put files and folders: what is already there is the work of
    // an interrupted pull, not the user's. Only worth working out when something is new here.
    let (arriving, arriving_dirs) = if remote.is_empty() || (new_files.is_empty() && new_dirs.is_empty()) {
        (HashSet::new(), HashSet::new())
    } else {
        let future =
            plan_pull(tree.clone(), &Scan::default(), remote, content, "", jiff::civil::Date::default(), false).tree;
        let files: HashSet<(String, Option<String>)> = remote
            .iter()
            .filter(|change| !change.deleted && change.kind != EntryKind::Folder)
            .filter_map(|change| Some((future.path_of(&change.id)?, future.records.get(&change.id)?.hash.clone())))
            .collect();
        let dirs: HashSet<String> = remote
            .iter()
            .filter(|change| !change.deleted && change.kind == EntryKind::Folder)
            .filter_map(|change| future.path_of(&change.id))
            .collect();
        (files, dirs)
    };
    let mut untracked: BTreeMap<&str, &LocalFile> = new_files
        .into_iter()
        .filter(|(path, file)| !arriving.contains(&((*path).clone(), file.hash.clone())))
        .map(|(path, file)| (path.as_str(), file))
        .collect();

    let (mut moves, mut uploads, mut deletes, mut folder_deletes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut records: Vec<(&String, &Record)> =
        tree.records.values().filter_map(|record| Some((paths.get(&record.id)?, record))).collect();
    records.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (path, record) in records {
        // Moved by an interrupted pull, not by the user: the pull finishes the job.
        if !scan.files.contains_key(path) && scan.ours.contains_key(&record.id) {
            continue;
        }
        if touched.contains(record.id.as_str()) {
            // The store's change decides this record, but a move made here still goes up as a
            // move: its file must not look like a new one.
            if record.state == LocalState::File
                && !scan.files.contains_key(path)
                && let Some(new_path) = moved_here(&untracked, record, path)
            {
                untracked.remove(new_path.as_str());
                moves.push(Push::Move { id: record.id.clone(), path: new_path });
            }
            continue;
        }
        match record.state {
            LocalState::File => match scan.files.get(path) {
                Some(file) if same(record, file) => {}
                Some(file) => {
                    if let Some(hash) = &file.hash {
                        let replace = Some((record.id.clone(), record.modseq));
                        uploads.push(Push::Upload {
                            path: path.clone(),
                            hash: hash.clone(),
                            kind: object_kind(record.kind),
                            replace,
                        });
                    }
                }
                None => match moved_here(&untracked, record, path) {
                    Some(new_path) => {
                        untracked.remove(new_path.as_str());
                        moves.push(Push::Move { id: record.id.clone(), path: new_path });
                    }
                    None => deletes.push(Push::Delete { id: record.id.clone(), base_modseq: record.modseq }),
                },
            },
            LocalState::Folder if !scan.dirs.contains(path) => {
                folder_deletes.push((path.matches('/').count(), Push::DeleteFolder { id: record.id.clone() }));
            }
            LocalState::Folder | LocalState::Stub => {}
        }
    }
    let mut actions: Vec<Push> = new_dirs
        .into_iter()
        .filter(|dir| !arriving_dirs.contains(dir.as_str()))
        .map(|dir| Push::CreateFolder { path: dir.clone() })
        .collect();
    // What a dead pull placed and the user moved since: the record goes where the user put it.
    for (id, path) in &scan.ours_moved {
        if !tree.records.contains_key(id) {
            moves.push(Push::Move { id: id.clone(), path: path.clone() });
        }
    }
    actions.extend(moves);
    for (path, file) in untracked {
        if let Some(hash) = &file.hash {
            let kind = if path.ends_with(".eml") { ObjectKind::Message } else { ObjectKind::File };
            uploads.push(Push::Upload { path: path.to_owned(), hash: hash.clone(), kind, replace: None });
        }
    }
    actions.extend(uploads);
    actions.extend(deletes);
    folder_deletes.sort_by_key(|(depth, _)| std::cmp::Reverse(*depth));
    actions.extend(folder_deletes.into_iter().map(|(_, action)| action));
    actions
}

/// Where a record's vanished file went, if anywhere: an untracked file with its content,
/// preferably under the same name.
fn moved_here(untracked: &BTreeMap<&str, &LocalFile>, record: &Record, path: &str) -> Option<String> {
    let (_, name) = split(path);
    untracked
        .iter()
        .filter(|(_, file)| file.hash.is_some() && file.hash == record.hash)
        .map(|(candidate, _)| *candidate)
        .min_by_key(|candidate| split(candidate).1 != name)
        .map(str::to_owned)
}

/// A change the device makes to its own directory.
#[derive(Debug, Clone, PartialEq)]
pub enum Pull {
    MakeDir {
        path: String,
    },
    /// A file, stub or folder follows its record to a new folder or name.
    Rename {
        from: String,
        to: String,
    },
    /// Fetch the record's content through its link into `path`.
    Download {
        id: String,
        path: String,
    },
    WriteStub {
        id: String,
        path: String,
    },
    /// The device's side of a conflict, or a file in the way: kept under a new name, and uploaded.
    SetAside {
        from: String,
        to: String,
    },
    RemoveFile {
        path: String,
    },
    /// Removed only when empty: anything left in it is the user's and will be uploaded.
    RemoveDir {
        path: String,
    },
}

#[derive(Debug, Clone, Default)]
pub struct PullPlan {
    pub actions: Vec<Pull>,
    /// The index after the actions (local stamps of rewritten files are set by the executor).
    pub tree: Tree,
    /// Records whose row changed, and records dropped.
    pub changed: BTreeSet<String>,
    pub dropped: BTreeSet<String>,
    /// Changes whose folder the device does not hold (a broken view); the sync stops on them.
    pub orphans: Vec<String>,
    /// Local changes survive this pull (a conflict copy, an edit that followed a move, a file
    /// whose record was dropped): they must go up after it.
    pub push_after: bool,
}

struct Puller<'a> {
    plan: PullPlan,
    scan: &'a Scan,
    content: Holding,
    device: &'a str,
    today: jiff::civil::Date,
    /// Paths the plan has already given a new occupant or set aside.
    claimed: HashSet<String>,
    removed_dirs: Vec<String>,
    /// Paths of folders worked out so far; forgotten whenever a folder moves or goes.
    folder_paths: HashMap<String, String>,
}

/// Applies the store's changes to the device. With `full`, `remote` is a complete listing:
/// records it does not mention are gone.
pub fn plan_pull(
    tree: Tree,
    scan: &Scan,
    remote: &[Change],
    content: impl Into<Holding>,
    device: &str,
    today: jiff::civil::Date,
    full: bool,
) -> PullPlan {
    let mut puller = Puller {
        plan: PullPlan { tree, ..PullPlan::default() },
        scan,
        content: content.into(),
        device,
        today,
        claimed: HashSet::new(),
        removed_dirs: Vec::new(),
        folder_paths: HashMap::new(),
    };
    let mut seen: HashSet<&str> = HashSet::new();
    let mut pending: Vec<&Change> = Vec::new();
    for change in remote {
        seen.insert(&change.id);
        if !puller.apply(change) {
            pending.push(change);
        }
    }
    // A record whose folder arrives later in the same batch.
    while !pending.is_empty() {
        let before = pending.len();
        pending.retain(|change| !puller.apply(change));
        if pending.len() == before {
            puller.plan.orphans = pending.iter().map(|change| change.id.clone()).collect();
            break;
        }
    }
    if full {
        let gone: Vec<String> =
            puller.plan.tree.records.keys().filter(|id| !seen.contains(id.as_str())).cloned().collect();
        for id in gone {
            puller.remove(&id);
        }
    }
    // What an interrupted pull placed for records that are no longer here goes; so does any stub
    // the index does not know (only the agent writes stubs).
    let paths = puller.plan.tree.paths();
    let mut final_paths: HashSet<&str> = paths.values().map(String::as_str).collect();
    // Paths this plan renames away are accounted for.
    final_paths.extend(puller.plan.actions.iter().filter_map(|action| match action {
        Pull::Rename { from, .. } | Pull::SetAside { from, .. } => Some(from.as_str()),
        _ => None,
    }));
    let mut strays: Vec<String> = scan
        .ours
        .iter()
        .filter(|(id, path)| !puller.plan.tree.records.contains_key(*id) && !final_paths.contains(path.as_str()))
        .map(|(_, path)| path.clone())
        .chain(scan.files.keys().filter(|path| is_stub(path) && !final_paths.contains(path.as_str())).cloned())
        .filter(|path| scan.files.contains_key(path) && !puller.claimed.contains(path))
        .collect();
    strays.sort();
    strays.dedup();
    let stray_dirs: Vec<String> = scan
        .ours
        .iter()
        .filter(|(id, path)| {
            !puller.plan.tree.records.contains_key(*id)
                && scan.dirs.contains(*path)
                && !final_paths.contains(path.as_str())
        })
        .map(|(_, path)| path.clone())
        .collect();
    for path in strays {
        puller.plan.actions.push(Pull::RemoveFile { path });
    }
    puller.removed_dirs.extend(stray_dirs);
    // Stubs the user deleted come back: they are views of the store, not copies to delete from.
    let touched: HashSet<&str> = remote.iter().map(|change| change.id.as_str()).collect();
    let mut restore: Vec<(String, String)> = puller
        .plan
        .tree
        .records
        .values()
        .filter(|record| record.state == LocalState::Stub && !touched.contains(record.id.as_str()))
        .filter_map(|record| Some((record.id.clone(), paths.get(&record.id)?)))
        .filter(|(_, path)| !scan.files.contains_key(*path))
        .map(|(id, path)| (id, path.clone()))
        .collect();
    restore.sort();
    for (id, path) in restore {
        puller.plan.actions.push(Pull::WriteStub { id, path });
    }
    puller.removed_dirs.sort_by_key(|path| std::cmp::Reverse(path.matches('/').count()));
    let dirs = std::mem::take(&mut puller.removed_dirs);
    puller.plan.actions.extend(dirs.into_iter().map(|path| Pull::RemoveDir { path }));
    puller.plan
}

impl Puller<'_> {
    /// Applies one change; false when its folder is not known yet.
    fn apply(&mut self, change: &Change) -> bool {
        let (Some(entry), false) = (&change.entry, change.deleted) else {
            self.remove(&change.id);
            return true;
        };
        if change.id == self.plan.tree.root_id {
            return true;
        }
        let parent = entry.parent_id.clone().unwrap_or_else(|| self.plan.tree.root_id.clone());
        let parent_path = match self.folder_paths.get(&parent) {
            Some(path) => path.clone(),
            None => {
                let Some(path) = self.plan.tree.path_of(&parent) else { return false };
                self.folder_paths.insert(parent.clone(), path.clone());
                path
            }
        };
        let existing = self.plan.tree.records.get(&change.id).cloned();
        if existing.as_ref().is_some_and(|record| record.state == LocalState::Folder) {
            self.folder_paths.clear();
        }

        let content_changed = |record: &Record| entry.hash.is_some() && entry.hash != record.hash;
        let state = match (entry.kind, &existing) {
            (EntryKind::Folder, _) => LocalState::Folder,
            // Content fetched on a stub device stays, until the store's version changes.
            (_, Some(record)) if record.state == LocalState::File && !content_changed(record) => LocalState::File,
            // Too large for this device, or a stub device: the link stands in for the content.
            _ if !self.content.downloads(entry.size) => LocalState::Stub,
            _ => LocalState::File,
        };
        // The echo of the device's own change: it holds this version already, as it should.
        let echo = existing.as_ref().is_some_and(|record| {
            record.modseq >= entry.modseq
                && record.state == state
                && (entry.hash.is_none() || record.hash == entry.hash)
                && record.parent_id == entry.parent_id
                && record.name == entry.name
                && (state != LocalState::Stub || record.entry == *entry)
        });
        if echo {
            return true;
        }
        let target = join(&parent_path, &local_name(entry.kind, &entry.name, state == LocalState::Stub));
        let record = Record {
            id: change.id.clone(),
            kind: entry.kind,
            parent_id: Some(parent),
            name: entry.name.clone(),
            modseq: entry.modseq,
            hash: entry
                .hash
                .clone()
                .or_else(|| existing.as_ref().filter(|r| !content_changed(r)).and_then(|r| r.hash.clone())),
            state,
            local: existing.as_ref().and_then(|record| record.local),
            entry: entry.clone(),
        };
        match existing {
            Some(old) => self.update(old, record, target),
            None => self.create(record, target),
        }
        self.plan.changed.insert(change.id.clone());
        true
    }

    fn create(&mut self, mut record: Record, target: String) {
        // An interrupted pull placed this record already, perhaps where it used to belong.
        if let Some(placed) = self.scan.ours.get(&record.id).cloned()
            && placed != target
        {
            if record.state == LocalState::Folder {
                if self.scan.dirs.contains(&placed) {
                    self.plan.actions.push(Pull::Rename { from: placed, to: target.clone() });
                    self.claimed.insert(target);
                    self.plan.tree.records.insert(record.id.clone(), record);
                    return;
                }
            } else {
                let file = self.scan.files.get(&placed);
                let usable = record.state == LocalState::Stub
                    || file.is_some_and(|file| file.hash.is_some() && file.hash == record.hash);
                if usable {
                    self.plan.actions.push(Pull::Rename { from: placed, to: target.clone() });
                    record.local = if record.state == LocalState::File { file.map(|file| file.stamp) } else { None };
                    if record.state == LocalState::Stub {
                        self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: target.clone() });
                    }
                    self.claimed.insert(target);
                    self.plan.tree.records.insert(record.id.clone(), record);
                    return;
                }
            }
        }
        match record.state {
            LocalState::Folder => {
                if !self.scan.dirs.contains(&target) {
                    self.plan.actions.push(Pull::MakeDir { path: target.clone() });
                }
            }
            LocalState::Stub => {
                self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: target.clone() });
                record.local = None;
            }
            LocalState::File => match self.scan.files.get(&target).filter(|_| !self.claimed.contains(&target)) {
                Some(file) if file.hash.is_some() && file.hash == record.hash => record.local = Some(file.stamp),
                occupant => {
                    if occupant.is_some() {
                        self.set_aside(&target);
                    }
                    self.plan.actions.push(Pull::Download { id: record.id.clone(), path: target.clone() });
                    record.local = None;
                }
            },
        }
        self.claimed.insert(target);
        self.plan.tree.records.insert(record.id.clone(), record);
    }

    fn update(&mut self, old: Record, mut record: Record, target: String) {
        let mut current = self.plan.tree.path_of(&old.id).unwrap_or_default();
        if !self.scan.files.contains_key(&current)
            && let Some(placed) = self.scan.ours.get(&old.id)
        {
            current = placed.clone();
        }
        // An interrupted run may have moved the file already: then it is found at the target.
        let already_moved = !self.scan.files.contains_key(&current)
            && current != target
            && self.scan.files.get(&target).is_some_and(|file| file.hash.is_some() && file.hash == old.hash);
        let local = if already_moved { self.scan.files.get(&target) } else { self.scan.files.get(&current) };
        let modified_here = old.state == LocalState::File && local.is_some_and(|file| !same(&old, file));
        let content_changed = record.hash.is_some() && record.hash != old.hash;
        let mut at = current.clone();
        if old.state != record.state && old.state == LocalState::File && record.state == LocalState::Stub {
            // A fetched file whose content changed in the store goes back to being a stub,
            // unless it was edited here: then it is kept aside and uploaded.
            if modified_here {
                self.set_aside(&current);
            } else {
                self.plan.actions.push(Pull::RemoveFile { path: current.clone() });
            }
            self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: target.clone() });
            record.local = None;
            self.claimed.insert(target.clone());
            self.plan.tree.records.insert(record.id.clone(), record);
            return;
        }
        if current != target {
            if self.scan.files.contains_key(&target)
                && !self.claimed.contains(&target)
                && !already_moved
                && local.is_some()
            {
                self.set_aside(&target);
            }
            self.plan.actions.push(Pull::Rename { from: current.clone(), to: target.clone() });
            at = target.clone();
        }
        if modified_here {
            self.plan.push_after = true;
        }
        match record.state {
            LocalState::File if content_changed => {
                let arrived = local.is_some_and(|file| file.hash.is_some() && file.hash == record.hash);
                if arrived {
                    record.local = local.map(|file| file.stamp);
                } else {
                    if modified_here {
                        self.set_aside(&at);
                    }
                    self.plan.actions.push(Pull::Download { id: record.id.clone(), path: at.clone() });
                    record.local = None;
                }
            }
            LocalState::File if local.is_none() && !modified_here => {
                // Deleted here while the store changed it: the modification wins.
                self.plan.actions.push(Pull::Download { id: record.id.clone(), path: at.clone() });
                record.local = None;
            }
            LocalState::Stub if record.entry != old.entry || !self.scan.files.contains_key(&current) => {
                self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: at.clone() });
                record.local = None;
            }
            _ => {}
        }
        self.claimed.insert(at);
        self.plan.tree.records.insert(record.id.clone(), record);
    }

    /// Drops a record (and, for a folder, everything below it) from the device.
    fn remove(&mut self, id: &str) {
        let Some(record) = self.plan.tree.records.get(id).cloned() else { return };
        self.folder_paths.clear();
        let mut ids = self.plan.tree.below(id);
        ids.reverse();
        ids.push(id.to_owned());
        for id in ids {
            let Some(record) = self.plan.tree.records.get(&id).cloned() else { continue };
            let path = self.plan.tree.path_of(&id).unwrap_or_default();
            match record.state {
                LocalState::Folder => self.removed_dirs.push(path),
                LocalState::Stub => self.plan.actions.push(Pull::RemoveFile { path }),
                // A file edited here outlives its record: it stays, and is uploaded as new.
                LocalState::File => match self.scan.files.get(&path) {
                    Some(file) if !same(&record, file) => self.plan.push_after = true,
                    Some(_) => self.plan.actions.push(Pull::RemoveFile { path }),
                    None => {}
                },
            }
        }
        for id in self.plan.tree.below(id).into_iter().chain([record.id]) {
            self.plan.tree.records.remove(&id);
            self.plan.changed.remove(&id);
            self.plan.dropped.insert(id);
        }
    }

    fn set_aside(&mut self, path: &str) {
        self.plan.push_after = true;
        let (folder, name) = split(path);
        let aside = join(folder, &conflict_name(name, self.device, self.today));
        self.plan.actions.push(Pull::SetAside { from: path.to_owned(), to: aside.clone() });
        self.claimed.insert(aside);
    }
}

#[cfg(test)]
mod tests;
