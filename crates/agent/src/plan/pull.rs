//! Planning the store's changes to the device.

use super::{FileStamp, HashMap, HashSet, LocalFile, LocalState, Record, Scan, Tree, same};
use crate::naming::{META_DIR, STUB_SUFFIX, conflict_name, join, local_name, mapped_name, split};
use cpm_core::EntryKind;
use cpm_core::name::MAX_NAME_BYTES;
use cpm_core::profile::Holding;
use cpm_proto::Change;
use std::collections::BTreeSet;
use unicode_normalization::UnicodeNormalization;

/// A change the device makes to its own directory.
#[derive(Debug, Clone, PartialEq)]
pub enum Pull {
    MakeDir {
        path: String,
    },
    /// A file, stub or folder follows its record to a new folder or name.
    Rename {
        id: String,
        from: String,
        to: String,
    },
    /// Fetch the record's content through its link into `path`; with `replacing`, the record's
    /// own older version is there, with this stamp, and gives way to it.
    Download {
        id: String,
        path: String,
        replacing: Option<FileStamp>,
    },
    /// With `replace`, the record's own stub is there already and is rewritten.
    WriteStub {
        id: String,
        path: String,
        replace: bool,
    },
    /// The device's side of a conflict, or a file or folder in the way: kept under a new name,
    /// and uploaded.
    SetAside {
        from: String,
        to: String,
    },
    /// With `expected`, a file of content removed only if it still has this stamp; without, a
    /// stub of the engine's own. `id` is the record whose change it belongs to (which keeps its
    /// old state when the file cannot be removed); none for the engine's leftovers.
    RemoveFile {
        path: String,
        expected: Option<FileStamp>,
        id: Option<String>,
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
    /// Records whose own name here frees up only once this plan is done (a twin's folder it
    /// removes last): the next sync asks after them, and gives them their names back.
    pub recheck: BTreeSet<String>,
    /// Changes whose folder the device does not hold (a broken view); the sync stops on them.
    pub orphans: Vec<String>,
    /// Local changes survive this pull (a conflict copy, an edit that followed a move, a file
    /// whose record was dropped): they must go up after it.
    pub push_after: bool,
}

/// The device a plan is for: its name and day (for conflict copies) and its file system's rules.
#[derive(Debug, Clone, Copy)]
pub struct Here<'a> {
    pub device: &'a str,
    pub today: jiff::civil::Date,
    /// Names that differ only in case (or Unicode form) are one file here.
    pub case_insensitive: bool,
}

impl Here<'_> {
    /// A path as this file system compares it.
    pub fn fold(&self, path: &str) -> String {
        if self.case_insensitive { path.nfc().flat_map(char::to_lowercase).collect() } else { path.to_owned() }
    }
}

/// What the store's changes are: what changed since the device's cursor, or its whole view as
/// read at `cursor` (records it does not mention are gone, unless the device made them since).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Listing {
    Delta,
    Full { cursor: i64 },
}

/// What a record's name here must not meet in its folder, beside other records' names.
#[derive(Clone, Copy)]
enum Avoid<'a> {
    Nothing,
    /// Anything found there (a folder made again where a file now is).
    Anything(&'a str),
    /// What is found under another case on a file system that folds case: it keeps its name.
    CaseTwins(&'a str),
}

struct Puller<'a> {
    plan: PullPlan,
    scan: &'a Scan,
    content: Holding,
    here: Here<'a>,
    /// Paths (folded) the plan has given a new occupant or set aside.
    claimed: HashSet<String>,
    /// Paths (folded) whose file or folder the plan removes.
    removed: HashSet<String>,
    removed_dirs: Vec<String>,
    /// Paths of folders worked out so far; forgotten whenever a folder moves or goes.
    folder_paths: HashMap<String, String>,
    /// The scan's files and folders by folded path (on a file system that folds names).
    folded: Option<HashMap<String, String>>,
    /// Which record holds each name in each folder (folded), made when first needed.
    names: Option<HashMap<(String, String), String>>,
    /// The paths (folded) of the records as they were, made when first needed.
    tracked: Option<HashSet<String>>,
    /// Records the store's changes bring to the device (not removals).
    arriving: HashSet<String>,
    /// Folders this plan removes, kept in the tree until the end so that the paths of what is
    /// moved out of them later in the batch can still be worked out.
    doomed: Vec<String>,
    listing: Listing,
    /// On a whole listing: files here that no record holds, by content, made when first needed.
    unclaimed: Option<HashMap<String, Vec<String>>>,
    /// The store names of what had names mapped here, by their paths here as the sync found them.
    store_names: HashMap<String, String>,
    /// The content the store's changes say it holds, and which objects hold it.
    stored: HashMap<String, Vec<String>>,
}

/// Applies the store's changes to the device.
pub fn plan_pull(
    tree: Tree,
    scan: &Scan,
    remote: &[Change],
    content: impl Into<Holding>,
    here: Here<'_>,
    listing: Listing,
) -> PullPlan {
    let store_names = tree
        .records
        .values()
        .filter(|record| record.local_name.is_some())
        .filter_map(|record| Some((tree.path_of(&record.id)?, record.name.clone())))
        .collect();
    let folded = here
        .case_insensitive
        .then(|| scan.files.keys().chain(scan.dirs.iter()).map(|path| (here.fold(path), path.clone())).collect());
    let mut puller = Puller {
        plan: PullPlan { tree, ..PullPlan::default() },
        scan,
        content: content.into(),
        here,
        claimed: HashSet::default(),
        removed: HashSet::default(),
        removed_dirs: Vec::new(),
        folder_paths: HashMap::default(),
        folded,
        names: None,
        tracked: None,
        arriving: remote.iter().filter(|change| !change.deleted).map(|change| change.id.clone()).collect(),
        doomed: Vec::new(),
        listing,
        unclaimed: None,
        store_names,
        stored: HashMap::default(),
    };
    for change in remote {
        if let Some(hash) = change.entry.as_ref().and_then(|entry| entry.hash.clone()) {
            puller.stored.entry(hash).or_default().push(change.id.clone());
        }
    }
    puller.restore_folders();
    // Content files missing here that nothing moved or deleted in the store (a move the store
    // refused, say) come back, like the store's every other record.
    let missing: Vec<String> = {
        let tree = &puller.plan.tree;
        let content: Vec<&String> =
            tree.records.values().filter(|record| record.state == LocalState::File).map(|record| &record.id).collect();
        if content.is_empty() {
            Vec::new()
        } else {
            let paths = tree.paths();
            let gone: Vec<&String> = content
                .into_iter()
                .filter(|id| {
                    paths.get(*id).is_some_and(|path| !scan.files.contains_key(path) && !scan.vanished.contains(path))
                })
                .filter(|id| !scan.ours.contains_key(*id) && !scan.ours_moved.contains_key(*id))
                .collect();
            // One whose content is elsewhere here was moved by the user: it goes up as a move.
            // Where the store cannot take the name it went to, the move waits (reported) for the
            // user to choose another: brought back, the file would be a second copy here, and
            // go up as one once she renamed hers.
            let tracked: HashSet<&String> = paths.values().collect();
            let elsewhere: HashSet<&String> = if gone.is_empty() {
                HashSet::default()
            } else {
                scan.files
                    .iter()
                    .filter(|(path, _)| !tracked.contains(path))
                    .filter_map(|(_, file)| file.hash.as_ref())
                    .collect()
            };
            gone.into_iter()
                .filter(|id| {
                    tree.records
                        .get(*id)
                        .and_then(|record| record.hash.as_ref())
                        .is_none_or(|hash| !elsewhere.contains(hash))
                })
                .cloned()
                .collect()
        }
    };
    if let Listing::Full { cursor } = listing {
        // What the listing does not mention is gone, unless this sync made it after the listing
        // was read. It goes first, so that what arrives finds its names free.
        let seen: HashSet<&str> = remote.iter().map(|change| change.id.as_str()).collect();
        let gone: Vec<String> = puller
            .plan
            .tree
            .records
            .values()
            .filter(|record| record.id != puller.plan.tree.root_id && !seen.contains(record.id.as_str()))
            .filter(|record| record.modseq <= cursor)
            .map(|record| record.id.clone())
            .collect();
        for id in gone {
            puller.remove(&id);
        }
    }
    let mut pending: Vec<&Change> = Vec::new();
    for change in remote {
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
    puller.finish(remote, &missing)
}

/// The folders that live entries of `remote` name as theirs, where the device has no such folder
/// and none arrives: the store answered about those entries later than about their folders (a
/// folder moved, deleted or made while a listing was read in pages, or while the push ran).
/// Asking after both again settles it; planning first would leave them orphans.
/// Invariant: a sync asks again about what its answer cannot place before it gives up.
pub fn missing_folders(tree: &Tree, remote: &[Change], listing: Listing) -> BTreeSet<String> {
    let arriving: HashSet<&str> = remote
        .iter()
        .filter(|change| !change.deleted && change.kind == EntryKind::Folder)
        .map(|change| change.id.as_str())
        .collect();
    let listed: HashSet<&str> = remote.iter().map(|change| change.id.as_str()).collect();
    let held = |folder: &str| {
        folder == tree.root_id
            || tree.records.get(folder).is_some_and(|record| match listing {
                // A whole listing that does not name a folder says it is gone, unless this
                // sync made it after the listing was read.
                Listing::Full { cursor } => listed.contains(folder) || record.modseq > cursor,
                Listing::Delta => true,
            })
    };
    remote
        .iter()
        .filter(|change| !change.deleted)
        .filter_map(|change| change.entry.as_ref()?.parent_id.as_deref())
        .filter(|folder| !arriving.contains(folder) && !held(folder))
        .map(str::to_owned)
        .collect()
}

impl Puller<'_> {
    /// Makes again, first, the device's folders that are missing here (deleted here while the
    /// store kept something in them, or put back after being in the way), for what arrives in
    /// them. One whose name something else took here meanwhile gets another.
    fn restore_folders(&mut self) {
        let tree = &self.plan.tree;
        let mut missing: Vec<(usize, String)> = tree
            .records
            .values()
            .filter(|record| record.state == LocalState::Folder && record.id != tree.root_id)
            .filter_map(|record| tree.path_of(&record.id).map(|path| (path, record.id.clone())))
            .filter(|(path, _)| !self.scan.dirs.contains(path))
            .map(|(path, id)| (path.matches('/').count(), id))
            .collect();
        missing.sort();
        for (_, id) in missing {
            let (Some(record), Some(path)) = (self.plan.tree.records.get(&id).cloned(), self.plan.tree.path_of(&id))
            else {
                continue;
            };
            let mut target = path.clone();
            if self.found(&path).is_some() {
                let (folder, _) = split(&path);
                let folder = folder.to_owned();
                let mut moved = record.clone();
                moved.local_name = self.name_here(&record, record.file_name(), Avoid::Anything(&folder));
                self.take_name(Some(&record), &moved);
                target = join(&folder, &moved.file_name());
                self.plan.tree.records.insert(id.clone(), moved);
                self.plan.changed.insert(id);
                self.folder_paths.clear();
            }
            self.claim(&target);
            self.plan.actions.push(Pull::MakeDir { path: target });
        }
    }

    /// After the changes: what interrupted pulls left, stubs the user deleted, folders to remove.
    fn finish(mut self, remote: &[Change], missing: &[String]) -> PullPlan {
        for id in std::mem::take(&mut self.doomed) {
            self.plan.tree.records.remove(&id);
        }
        self.unmap();
        let scan = self.scan;
        let touched: HashSet<&str> = remote.iter().map(|change| change.id.as_str()).collect();
        for id in missing.iter().filter(|id| !touched.contains(id.as_str())) {
            let Some(path) = self
                .plan
                .tree
                .records
                .get(id)
                .filter(|record| record.state == LocalState::File)
                .and(self.plan.tree.path_of(id))
            else {
                continue;
            };
            self.make_room(&path, false);
            if let Some(found) = self.in_the_way(&path, id) {
                self.set_aside(&found);
            }
            self.claim(&path);
            if let Some(record) = self.plan.tree.records.get_mut(id) {
                record.local = None;
            }
            self.plan.changed.insert(id.clone());
            self.plan.actions.push(Pull::Download { id: id.clone(), path, replacing: None });
        }
        // What an interrupted pull placed for records that are no longer here goes.
        let paths = self.plan.tree.paths();
        let mut final_paths: HashSet<&str> = paths.values().map(String::as_str).collect();
        // Paths this plan renames away are accounted for.
        final_paths.extend(self.plan.actions.iter().filter_map(|action| match action {
            Pull::Rename { from, .. } | Pull::SetAside { from, .. } => Some(from.as_str()),
            _ => None,
        }));
        // Where a path is once this plan's renames of folders have moved what is in them.
        let folder_moves: Vec<(String, &str)> = self
            .plan
            .actions
            .iter()
            .filter_map(|action| match action {
                Pull::Rename { from, to, .. } if scan.dirs.contains(from) => Some((format!("{from}/"), to.as_str())),
                _ => None,
            })
            .collect();
        let moved = |path: &str| {
            folder_moves.iter().fold(path.to_owned(), |path, (from, to)| match path.strip_prefix(from.as_str()) {
                Some(rest) => format!("{to}/{rest}"),
                None => path,
            })
        };
        // What an unfinished pull placed is a leftover unless its record ends up there, or its
        // folder takes it there.
        let leftover = |(id, path): (&String, &String)| {
            !final_paths.contains(path.as_str())
                && paths.get(id) != Some(path)
                && paths.get(id).is_none_or(|end| *end != moved(path))
        };
        // A leftover whose record this plan places nowhere (its place here changed meanwhile,
        // with nothing there yet) was its only copy here: the record goes with it, and is asked
        // after, to be placed anew. Kept, the next sync would take the removal for the user's.
        let placed: HashSet<&str> = self
            .plan
            .actions
            .iter()
            .filter_map(|action| match action {
                Pull::Download { id, .. } | Pull::WriteStub { id, .. } | Pull::Rename { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let unplaced: Vec<String> = scan
            .ours
            .iter()
            .filter(|entry| leftover(*entry) && scan.files.contains_key(entry.1))
            .filter(|(id, _)| !placed.contains(id.as_str()))
            .filter(|(id, _)| {
                self.plan.tree.records.get(*id).is_some_and(|record| record.state == LocalState::File)
                    && paths.get(*id).is_some_and(|end| !scan.files.contains_key(end))
            })
            .map(|(id, _)| id.clone())
            .collect();
        for id in unplaced {
            self.plan.tree.records.remove(&id);
            self.plan.changed.remove(&id);
            self.plan.dropped.insert(id.clone());
            self.plan.recheck.insert(id);
        }
        let mut strays: Vec<String> = scan
            .ours
            .iter()
            .filter(|entry| leftover(*entry))
            .map(|(_, path)| path.clone())
            .chain(scan.stray_stubs.keys().cloned())
            .filter(|path| scan.files.contains_key(path) && !self.claimed.contains(&self.here.fold(path)))
            .collect();
        strays.sort();
        strays.dedup();
        let stray_dirs: Vec<String> = scan
            .ours
            .iter()
            .filter(|entry| leftover(*entry) && scan.dirs.contains(entry.1))
            .map(|(_, path)| path.clone())
            .collect();
        for path in strays {
            let expected =
                (!scan.stray_stubs.contains_key(&path)).then(|| scan.files.get(&path).map(|file| file.stamp)).flatten();
            self.plan.actions.push(Pull::RemoveFile { path, expected, id: None });
        }
        self.removed_dirs.extend(stray_dirs);
        // Stubs the user deleted come back: they are views of the store, not copies to delete from.
        // One this plan moves or writes already is not missing.
        let acted: HashSet<&str> = self
            .plan
            .actions
            .iter()
            .filter_map(|action| match action {
                Pull::Rename { id, .. } | Pull::WriteStub { id, .. } => Some(id.as_str()),
                _ => None,
            })
            .collect();
        let mut restore: Vec<(String, String)> = self
            .plan
            .tree
            .records
            .values()
            .filter(|record| record.state == LocalState::Stub && !touched.contains(record.id.as_str()))
            .filter(|record| !acted.contains(record.id.as_str()))
            .filter_map(|record| Some((record.id.clone(), paths.get(&record.id)?)))
            .filter(|(_, path)| !scan.files.contains_key(*path))
            .map(|(id, path)| (id, path.clone()))
            .collect();
        restore.sort();
        for (id, path) in restore {
            self.plan.actions.push(Pull::WriteStub { id, path, replace: false });
        }
        self.removed_dirs.sort_by_key(|path| std::cmp::Reverse(path.matches('/').count()));
        let dirs = std::mem::take(&mut self.removed_dirs);
        self.plan.actions.extend(dirs.into_iter().map(|path| Pull::RemoveDir { path }));
        self.plan
    }

    /// The scan's file or folder at `path`, as this file system finds it.
    fn found(&self, path: &str) -> Option<String> {
        match &self.folded {
            Some(folded) => folded.get(&self.here.fold(path)).cloned(),
            None => (self.scan.files.contains_key(path) || self.scan.dirs.contains(path)).then(|| path.to_owned()),
        }
    }

    /// Whether what is at `path` here, under another case, is another record's.
    fn held_by_another_case(&self, path: &str, record: &str) -> bool {
        let Some(found) = self.found(path).filter(|found| found != path) else { return false };
        self.plan
            .tree
            .records
            .keys()
            .any(|id| id != record && self.plan.tree.path_of(id).as_deref() == Some(found.as_str()))
    }

    /// Whether a file here that no record holds has this content.
    fn held_untracked(&self, hash: Option<&str>) -> bool {
        let Some(hash) = hash else { return false };
        let tracked: HashSet<String> = self.plan.tree.paths().into_values().collect();
        self.scan.files.iter().any(|(path, file)| file.hash.as_deref() == Some(hash) && !tracked.contains(path))
    }

    /// What of the user's is in the way at `path`: a file or folder found there that no record
    /// owns, which the plan neither gave to another nor removes. (A record's own file in the way
    /// moves on in this plan; a placement that comes too early waits for the next sync.)
    fn in_the_way(&mut self, path: &str, record: &str) -> Option<String> {
        let found = self.found(path)?;
        let key = self.here.fold(path);
        if self.claimed.contains(&key) || self.removed.contains(&key) {
            return None;
        }
        // What an unfinished pull left there is the engine's own: this record's is for it to
        // take; another's goes, it is not kept aside.
        if self.scan.ours.get(record) == Some(&found) {
            return None;
        }
        // Another record's, which arrives in this batch too: it moves on from there, or this
        // placement waits for the next sync; it is not removed.
        if self.placed_for_another_arrival(&found, record) {
            return None;
        }
        if let Some(file) =
            self.scan.files.get(&found).filter(|_| self.scan.ours.values().any(|placed| *placed == found))
        {
            return self.let_go(found, file.stamp, key);
        }
        let (tree, here) = (&self.plan.tree, self.here);
        let tracked =
            self.tracked.get_or_insert_with(|| tree.paths().into_values().map(|path| here.fold(&path)).collect());
        if tracked.contains(&key) {
            return None;
        }
        // A file no record holds whose content the store has already (a conflict copy another
        // device sent up, of the same old version this one kept), or that holds nothing at all
        // (a download a power cut tore, once the index that knew it is gone): nothing of it can
        // be lost, and keeping it aside would only store the same content twice, or junk.
        // Invariant: a file whose content is the arriving record's own is that record's to adopt,
        // however many other objects hold the same bytes: only content held by others alone goes.
        let elsewhere = |hash: &String| {
            self.stored.get(hash).is_some_and(|ids| !ids.is_empty() && !ids.iter().any(|id| id == record))
        };
        if let Some(file) = self.scan.files.get(&found).filter(|file| {
            (file.stamp.size == 0 || file.hash.as_ref().is_some_and(elsewhere))
                && !self.scan.stray_stubs.contains_key(&found)
        }) {
            return self.let_go(found, file.stamp, key);
        }
        Some(found)
    }

    /// True when what is at `path` is what an unfinished pull placed for a record other than
    /// `record` that this batch brings too.
    fn placed_for_another_arrival(&self, path: &str, record: &str) -> bool {
        self.scan.ours.iter().any(|(id, placed)| placed == path && id != record && self.arriving.contains(id))
    }

    /// Removes a file in the way that no one loses (still as it was found): nothing is in the way.
    fn let_go(&mut self, found: String, stamp: FileStamp, key: String) -> Option<String> {
        self.plan.actions.push(Pull::RemoveFile { path: found, expected: Some(stamp), id: None });
        self.removed.insert(key);
        None
    }

    fn claim(&mut self, path: &str) {
        let key = self.here.fold(path);
        self.claimed.insert(key);
    }

    /// Readies `path` for a record that arrives there: a folder this plan removes (at the end,
    /// once emptied) stays when a folder arrives in its place, and goes now when a file does.
    fn make_room(&mut self, path: &str, folder: bool) {
        let key = self.here.fold(path);
        let here = self.here;
        if folder {
            self.removed_dirs.retain(|dir| here.fold(dir) != key);
            return;
        }
        let below = format!("{key}/");
        let (mut now, later): (Vec<String>, Vec<String>) =
            std::mem::take(&mut self.removed_dirs).into_iter().partition(|dir| {
                let dir = here.fold(dir);
                dir == key || dir.starts_with(&below)
            });
        self.removed_dirs = later;
        now.sort_by_key(|path| std::cmp::Reverse(path.matches('/').count()));
        self.plan.actions.extend(now.into_iter().map(|path| Pull::RemoveDir { path }));
    }

    /// Which record holds each name in each folder, from the tree as planned so far.
    fn names(&mut self) -> &mut HashMap<(String, String), String> {
        let (tree, here) = (&self.plan.tree, self.here);
        self.names.get_or_insert_with(|| {
            tree.records
                .values()
                .filter_map(|record| {
                    Some(((record.parent_id.clone()?, here.fold(&record.file_name())), record.id.clone()))
                })
                .collect()
        })
    }

    /// The name a record gets here: its own, unless that is too long for this file system or
    /// another record in its folder holds it (by this file system's rules), or what is found in
    /// the record's folder here rules it out (see [`Avoid`]).
    ///
    /// Invariant: every record has a name here that fits and that no other record in its folder
    /// has; a record whose own name cannot be that is given a unique one, kept in the index.
    fn name_here(&mut self, record: &Record, wanted: String, avoid: Avoid<'_>) -> Option<String> {
        let parent = record.parent_id.clone()?;
        let suffix = if record.state == LocalState::Stub { STUB_SUFFIX } else { "" };
        let base = local_name(record.kind, &record.name, false);
        let mut attempt = 0;
        let name = loop {
            let candidate =
                if attempt == 0 { wanted.clone() } else { mapped_name(&base, &record.id, suffix, attempt - 1) };
            let key = (parent.clone(), self.here.fold(&candidate));
            let taken = self.names().get(&key).is_some_and(|holder| *holder != record.id);
            let occupied = match avoid {
                Avoid::Nothing => false,
                Avoid::Anything(folder) => self.found(&join(folder, &candidate)).is_some(),
                Avoid::CaseTwins(folder) => {
                    self.found(&join(folder, &candidate)).is_some_and(|found| split(&found).1 != candidate)
                }
            };
            // The device's own folder is no place for the store's entries.
            let reserved = parent == self.plan.tree.root_id && self.here.fold(&candidate) == self.here.fold(META_DIR);
            if (candidate.len() <= MAX_NAME_BYTES && !taken && !occupied && !reserved) || attempt > 100 {
                break candidate;
            }
            attempt += 1;
        };
        let own = local_name(record.kind, &record.name, record.state == LocalState::Stub);
        Some(name).filter(|name| *name != own)
    }

    /// On a file system that folds case, a new record whose name is found here under another
    /// case: the very file (same content) is adopted under the name it has here; anything else
    /// keeps its name, and the record takes another.
    fn meet_case_twin(&mut self, record: &mut Record, parent_path: &str) {
        let target = join(parent_path, &record.file_name());
        let Some(found) = self.found(&target).filter(|found| *found != target) else { return };
        let key = self.here.fold(&found);
        if self.claimed.contains(&key) {
            return;
        }
        if self.removed.contains(&key) {
            // A folder this plan removes stays until the plan's end, in the way of its twin: the
            // record takes a name of its own for now, and its own at the next sync.
            if !self.scan.dirs.contains(&found) {
                return;
            }
            self.plan.recheck.insert(record.id.clone());
        }
        let same = record.state == LocalState::File
            && self.scan.files.get(&found).is_some_and(|file| file.hash.is_some() && file.hash == record.hash);
        record.local_name = if same {
            Some(split(&found).1.to_owned())
        } else {
            self.name_here(record, record.file_name(), Avoid::CaseTwins(parent_path))
        };
    }

    /// A record the engine gave a name of its own here takes its own name back once nothing
    /// stands in its way any more. (A name kept in the form the user gave it here stays.)
    fn unmap(&mut self) {
        let mapped: Vec<Record> = self
            .plan
            .tree
            .records
            .values()
            .filter(|record| {
                let Some(given) = &record.local_name else { return false };
                let own = local_name(record.kind, &record.name, record.state == LocalState::Stub);
                let same_name = given.nfc().collect::<String>() == own.nfc().collect::<String>()
                    || self.here.fold(given) == self.here.fold(&own);
                !same_name && own.len() <= MAX_NAME_BYTES
            })
            .cloned()
            .collect();
        for record in mapped {
            let (Some(parent), Some(from)) = (record.parent_id.clone(), self.plan.tree.path_of(&record.id)) else {
                continue;
            };
            let own = local_name(record.kind, &record.name, record.state == LocalState::Stub);
            let to = join(split(&from).0, &own);
            // Not here yet: this plan places it, and then it can as well go under its own name.
            let placing = self.plan.actions.iter().position(|action| match action {
                Pull::Download { id, path, .. }
                | Pull::WriteStub { id, path, .. }
                | Pull::Rename { id, to: path, .. } => *id == record.id && *path == from,
                _ => false,
            });
            let here = self.scan.files.contains_key(&from) || self.scan.dirs.contains(&from);
            // An unfinished pull gave it back its own name already: that is adopted, not taken
            // for a leftover.
            if !here && placing.is_none() && self.scan.ours.get(&record.id) == Some(&to) {
                let local = self.scan.files.get(&to).map(|file| file.stamp);
                self.give_name_back(&record, Record { local_name: None, local, ..record.clone() }, &to);
                continue;
            }
            // A folder this plan makes beside a twin it removes: the twin goes only after the
            // folder is made, under a name of its own; the next pass gives it its own.
            let making = record.state == LocalState::Folder
                && self.plan.actions.iter().any(|action| matches!(action, Pull::MakeDir { path } if *path == from));
            if !here && making && self.removed.contains(&self.here.fold(&to)) {
                self.plan.recheck.insert(record.id.clone());
                continue;
            }
            if !here && (placing.is_none() || record.state == LocalState::Folder) {
                continue;
            }
            let key = (parent, self.here.fold(&own));
            let taken = self.names().get(&key).is_some_and(|holder| *holder != record.id);
            let vacated = self.removed.contains(&self.here.fold(&to));
            if taken || (self.found(&to).is_some() && !vacated) || self.claimed.contains(&self.here.fold(&to)) {
                continue;
            }
            // A folder this plan removes is there until the plan's end: its name frees up after.
            if self.found(&to).is_some_and(|found| self.scan.dirs.contains(&found)) && from != to {
                self.plan.recheck.insert(record.id.clone());
                continue;
            }
            match placing.filter(|_| !here).and_then(|at| self.plan.actions.get_mut(at)) {
                Some(Pull::Download { path, .. } | Pull::WriteStub { path, .. } | Pull::Rename { to: path, .. }) => {
                    path.clone_from(&to);
                }
                _ => self.plan.actions.push(Pull::Rename { id: record.id.clone(), from, to: to.clone() }),
            }
            self.give_name_back(&record, Record { local_name: None, ..record.clone() }, &to);
        }
    }

    /// `record` goes back to its own name, at `to`, as `back`.
    fn give_name_back(&mut self, record: &Record, back: Record, to: &str) {
        self.take_name(Some(record), &back);
        self.claim(to);
        self.plan.changed.insert(back.id.clone());
        self.plan.tree.records.insert(back.id.clone(), back);
    }

    /// When the whole view is read again (an index lost, a cursor expired), a file here that no
    /// record holds and that has a record's content is that record's: it is moved into place,
    /// not fetched again (and not uploaded as new).
    fn reusable(&mut self, record: &Record) -> Option<(String, FileStamp)> {
        let hash = record.hash.clone()?;
        if self.listing == Listing::Delta {
            return None;
        }
        let (scan, tree) = (self.scan, &self.plan.tree);
        let unclaimed = self.unclaimed.get_or_insert_with(|| {
            let tracked: HashSet<String> = tree.paths().into_values().collect();
            let mut unclaimed: HashMap<String, Vec<String>> = HashMap::default();
            for (path, file) in &scan.files {
                if let Some(hash) = &file.hash
                    && !tracked.contains(path)
                    && !scan.stray_stubs.contains_key(path)
                {
                    unclaimed.entry(hash.clone()).or_default().push(path.clone());
                }
            }
            unclaimed
        });
        let candidates = unclaimed.get_mut(&hash)?;
        let from = candidates.pop()?;
        let key = self.here.fold(&from);
        if self.claimed.contains(&key) || self.removed.contains(&key) {
            return None;
        }
        self.claimed.insert(key.clone());
        self.removed.insert(key);
        let stamp = self.scan.files.get(&from)?.stamp;
        Some((from, stamp))
    }

    /// Notes that a record no longer holds its name here.
    fn drop_name(&mut self, old: &Record) {
        let here = self.here;
        let names = self.names();
        if let Some(parent) = &old.parent_id {
            let key = (parent.clone(), here.fold(&old.file_name()));
            if names.get(&key) == Some(&old.id) {
                names.remove(&key);
            }
        }
    }

    /// Notes the name a record takes here, giving up the one it had.
    fn take_name(&mut self, old: Option<&Record>, new: &Record) {
        if let Some(old) = old {
            self.drop_name(old);
        }
        let here = self.here;
        if let Some(parent) = &new.parent_id {
            self.names().insert((parent.clone(), here.fold(&new.file_name())), new.id.clone());
        }
    }

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
        let mut record = Record {
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
            local_name: None,
        };
        // A name given here stays while the record keeps its name, folder and state.
        let kept = existing
            .as_ref()
            .filter(|old| old.name == record.name && old.parent_id == record.parent_id && old.state == state)
            .and_then(|old| old.local_name.clone());
        let wanted = kept.unwrap_or_else(|| local_name(entry.kind, &entry.name, state == LocalState::Stub));
        record.local_name = self.name_here(&record, wanted, Avoid::Nothing);
        // A new record meets its case twins here; so does one whose name another record's file
        // took meanwhile under another case (placed there, it would fail for good).
        if self.here.case_insensitive
            && (existing.is_none() || self.held_by_another_case(&join(&parent_path, &record.file_name()), &record.id))
        {
            self.meet_case_twin(&mut record, &parent_path);
        }
        self.take_name(existing.as_ref(), &record);
        let target = join(&parent_path, &record.file_name());
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
                    self.plan.actions.push(Pull::Rename { id: record.id.clone(), from: placed, to: target.clone() });
                    self.claim(&target);
                    self.plan.tree.records.insert(record.id.clone(), record);
                    return;
                }
            } else {
                let file = self.scan.files.get(&placed);
                let usable = record.state == LocalState::Stub
                    || file.is_some_and(|file| file.hash.is_some() && file.hash == record.hash);
                if usable {
                    self.plan.actions.push(Pull::Rename { id: record.id.clone(), from: placed, to: target.clone() });
                    record.local = if record.state == LocalState::File { file.map(|file| file.stamp) } else { None };
                    if record.state == LocalState::Stub {
                        let (id, path) = (record.id.clone(), target.clone());
                        self.plan.actions.push(Pull::WriteStub { id, path, replace: true });
                    }
                    self.claim(&target);
                    self.plan.tree.records.insert(record.id.clone(), record);
                    return;
                }
            }
        }
        if record.state == LocalState::Stub
            && let Some((from, stamp)) = self.reusable(&record)
        {
            // Re-reading the whole view, a stub device finds the content here already: it keeps it.
            let mut kept = Record { state: LocalState::File, local_name: None, local: Some(stamp), ..record.clone() };
            kept.local_name = self.name_here(&kept, local_name(kept.kind, &kept.name, false), Avoid::Nothing);
            self.take_name(Some(&record), &kept);
            let target = join(split(&target).0, &kept.file_name());
            self.make_room(&target, false);
            if let Some(found) = self.in_the_way(&target, &kept.id) {
                self.set_aside(&found);
            }
            self.plan.actions.push(Pull::Rename { id: kept.id.clone(), from, to: target.clone() });
            self.claim(&target);
            self.plan.tree.records.insert(kept.id.clone(), kept);
            return;
        }
        self.make_room(&target, record.state == LocalState::Folder);
        let occupant = self.in_the_way(&target, &record.id);
        match record.state {
            LocalState::Folder => match occupant {
                Some(found) if self.scan.dirs.contains(&found) && found == target => {}
                Some(found) => {
                    self.set_aside(&found);
                    self.plan.actions.push(Pull::MakeDir { path: target.clone() });
                }
                None => self.plan.actions.push(Pull::MakeDir { path: target.clone() }),
            },
            LocalState::Stub => {
                // A stub of the engine's own there is rewritten; a file of the user's in the way
                // is kept aside: only the engine's stubs are ever replaced.
                let own = occupant.as_ref().is_some_and(|found| self.scan.stray_stubs.contains_key(found))
                    || (self.scan.ours.get(&record.id) == Some(&target) && self.found(&target).is_some());
                match occupant {
                    Some(found) if !own => self.set_aside(&found),
                    _ => {}
                }
                self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: target.clone(), replace: own });
                record.local = None;
            }
            LocalState::File => {
                let exact = self.scan.files.get(&target);
                // What an interrupted pull left there (torn by a power cut, or an older version)
                // is the engine's own, and gives way.
                let leftover = exact.filter(|_| {
                    self.scan.ours.values().any(|placed| *placed == target)
                        && !self.placed_for_another_arrival(&target, &record.id)
                });
                match (exact, leftover) {
                    // The content is here already, under its name: adopted, not fetched again.
                    (Some(file), _) if file.hash.is_some() && file.hash == record.hash => {
                        record.local = Some(file.stamp)
                    }
                    (_, Some(file)) => {
                        let (id, path) = (record.id.clone(), target.clone());
                        self.plan.actions.push(Pull::Download { id, path, replacing: Some(file.stamp) });
                        record.local = None;
                    }
                    _ => {
                        if let Some(found) = occupant {
                            self.set_aside(&found);
                        }
                        match self.reusable(&record) {
                            // Re-reading the whole view: the content is here already, elsewhere.
                            Some((from, stamp)) => {
                                self.plan.actions.push(Pull::Rename {
                                    id: record.id.clone(),
                                    from,
                                    to: target.clone(),
                                });
                                record.local = Some(stamp);
                            }
                            None => {
                                let (id, path) = (record.id.clone(), target.clone());
                                self.plan.actions.push(Pull::Download { id, path, replacing: None });
                                record.local = None;
                            }
                        }
                    }
                }
            }
        }
        self.claim(&target);
        self.plan.tree.records.insert(record.id.clone(), record);
    }

    /// Places a record at `target` by `placing` (its stub or its content, written anew), what
    /// is in the way kept aside first.
    fn place_anew(&mut self, mut record: Record, target: String, placing: Pull) {
        self.make_room(&target, false);
        if let Some(found) = self.in_the_way(&target, &record.id) {
            self.set_aside(&found);
        }
        self.plan.actions.push(placing);
        record.local = None;
        self.claim(&target);
        self.plan.tree.records.insert(record.id.clone(), record);
    }

    fn update(&mut self, old: Record, mut record: Record, target: String) {
        let Some(mut current) = self.plan.tree.path_of(&old.id).or_else(|| self.scan.ours.get(&old.id).cloned()) else {
            // Invariant: a record with no path here is placed anew, never moved from the top.
            return self.create(record, target);
        };
        if !self.scan.files.contains_key(&current)
            && let Some(placed) = self.scan.ours.get(&old.id)
        {
            current = placed.clone();
        }
        // An interrupted run may have moved the file already: then it is found at the target.
        let already_moved = !self.scan.files.contains_key(&current)
            && current != target
            && self.scan.files.get(&target).is_some_and(|file| file.hash.is_some() && file.hash == old.hash);
        let local: Option<&LocalFile> =
            if already_moved { self.scan.files.get(&target) } else { self.scan.files.get(&current) };
        // What an unfinished pull of this record placed where it is now is no edit of the user's:
        // the new version whole (adopted) or torn by a power cut (placed again).
        let ours_here = self.scan.ours.get(&old.id) == Some(&current) && !already_moved;
        if ours_here
            && current == target
            && record.state == LocalState::File
            && let Some(file) = local.filter(|file| file.hash.is_some() && file.hash == record.hash)
        {
            record.local = Some(file.stamp);
            self.claim(&target);
            self.plan.tree.records.insert(record.id.clone(), record);
            return;
        }
        let modified_here = old.state == LocalState::File && !ours_here && local.is_some_and(|file| !same(&old, file));
        let content_changed = record.hash.is_some() && record.hash != old.hash;
        // An unfinished pull (or one that could not move the old version) placed the new version
        // at the target already: it is adopted, and the version where the record was gives way.
        let placed = self
            .scan
            .ours
            .get(&old.id)
            .filter(|placed| **placed == target && current != target && record.state == LocalState::File)
            .and_then(|placed| self.scan.files.get(placed))
            .filter(|file| file.hash.is_some() && file.hash == record.hash);
        if let Some(file) = placed {
            match local {
                Some(old_file) if !modified_here => {
                    // A stub's stamp is not read (its presence is what counts): it goes if it
                    // is still a stub.
                    let expected = (old.state != LocalState::Stub).then_some(old_file.stamp);
                    let (path, id) = (current.clone(), Some(old.id.clone()));
                    self.plan.actions.push(Pull::RemoveFile { path, expected, id });
                    self.removed.insert(self.here.fold(&current));
                }
                Some(_) => self.set_aside(&current),
                None => {}
            }
            record.local = Some(file.stamp);
            self.claim(&target);
            self.plan.tree.records.insert(record.id.clone(), record);
            return;
        }
        // What an unfinished pull left at the target that is not the new version (a download
        // torn by a power cut) goes first.
        if current != target
            && self.scan.ours.get(&old.id) == Some(&target)
            && let Some(file) = self.scan.files.get(&target)
        {
            self.plan.actions.push(Pull::RemoveFile { path: target.clone(), expected: Some(file.stamp), id: None });
        }
        // Moved or removed by the user while this sync ran, and only moved in the store: the
        // record takes the store's place and the next sync sends up what the user did. Fetched
        // again here, the file the user moved would go up as a second copy.
        if self.scan.vanished.contains(&current)
            && old.state == LocalState::File
            && record.state == LocalState::File
            && !content_changed
        {
            record.local = old.local;
            self.claim(&target);
            self.plan.tree.records.insert(record.id.clone(), record);
            return;
        }
        let mut at = current.clone();
        if old.state != record.state && old.state == LocalState::File && record.state == LocalState::Stub {
            // A fetched file whose content changed in the store goes back to being a stub,
            // unless it was edited here: then it is kept aside and uploaded.
            if modified_here {
                self.set_aside(&current);
            } else {
                let expected = local.map(|file| file.stamp);
                self.plan.actions.push(Pull::RemoveFile { path: current.clone(), expected, id: Some(old.id.clone()) });
                self.removed.insert(self.here.fold(&current));
            }
            let write = Pull::WriteStub { id: record.id.clone(), path: target.clone(), replace: false };
            self.place_anew(record, target, write);
            return;
        }
        if old.state == LocalState::Stub && record.state == LocalState::File {
            // The device now downloads what it held as a stub: the stub goes, the content comes.
            if self.scan.files.contains_key(&current) {
                self.plan.actions.push(Pull::RemoveFile {
                    path: current.clone(),
                    expected: None,
                    id: Some(old.id.clone()),
                });
                self.removed.insert(self.here.fold(&current));
            }
            let download = Pull::Download { id: record.id.clone(), path: target.clone(), replacing: None };
            self.place_anew(record, target, download);
            return;
        }
        if current != target {
            self.make_room(&target, record.state == LocalState::Folder);
            // Something else where the record goes is set aside, unless it is the record's own
            // file there already (moved by an interrupted run) or the same file under another
            // case on a file system that folds names.
            let same_file = self.here.fold(&current) == self.here.fold(&target);
            if !already_moved
                && !same_file
                && let Some(found) = self.in_the_way(&target, &record.id)
            {
                self.set_aside(&found);
            }
            self.plan.actions.push(Pull::Rename { id: old.id.clone(), from: current.clone(), to: target.clone() });
            self.removed.remove(&self.here.fold(&target));
            if !same_file {
                self.removed.insert(self.here.fold(&current));
            }
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
                    // The version here gives way: set aside when edited here, replaced when not.
                    let replacing = if modified_here {
                        self.set_aside(&at);
                        None
                    } else {
                        local.map(|file| file.stamp)
                    };
                    self.plan.actions.push(Pull::Download { id: record.id.clone(), path: at.clone(), replacing });
                    record.local = None;
                }
            }
            LocalState::File if local.is_none() && !modified_here => {
                // Deleted here while the store changed it: the modification wins.
                self.plan.actions.push(Pull::Download { id: record.id.clone(), path: at.clone(), replacing: None });
                record.local = None;
            }
            LocalState::Stub if record.entry != old.entry || !self.scan.files.contains_key(&current) => {
                // The stub there (moved with the record, if it moved) is this record's own.
                let replace = self.scan.files.contains_key(&current);
                self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: at.clone(), replace });
                record.local = None;
            }
            _ => {}
        }
        self.claim(&at);
        self.plan.tree.records.insert(record.id.clone(), record);
    }

    /// Drops a record (and, for a folder, everything below it) from the device. What the store's
    /// changes bring elsewhere later in the batch (an object moved out of a folder that then
    /// went) is left to those changes.
    fn remove(&mut self, id: &str) {
        if !self.plan.tree.records.contains_key(id) {
            return;
        }
        self.folder_paths.clear();
        let mut gone = vec![id.to_owned()];
        let mut queue = vec![id.to_owned()];
        while let Some(parent) = queue.pop() {
            let children: Vec<(String, bool)> = self
                .plan
                .tree
                .records
                .values()
                .filter(|record| record.parent_id.as_deref() == Some(parent.as_str()))
                .filter(|record| !self.arriving.contains(&record.id))
                .map(|record| (record.id.clone(), record.state == LocalState::Folder))
                .collect();
            for (child, folder) in children {
                gone.push(child.clone());
                if folder {
                    queue.push(child);
                }
            }
        }
        // Deepest first: contents before their folders.
        gone.reverse();
        // Folders kept for a record kept in them: asked after at the sync's next pass, which
        // lets them go once nothing of theirs waits to go up.
        let mut keeping: HashSet<String> = HashSet::default();
        for id in &gone {
            let Some(record) = self.plan.tree.records.get(id).cloned() else { continue };
            if keeping.contains(id) {
                keeping.extend(record.parent_id.clone());
                self.plan.recheck.insert(id.clone());
                continue;
            }
            // A record whose folder is not known has no file here to remove.
            let Some(path) = self.plan.tree.path_of(id) else {
                self.plan.tree.records.remove(id);
                self.plan.changed.remove(id);
                self.plan.dropped.insert(id.clone());
                continue;
            };
            match record.state {
                LocalState::Folder => {
                    self.removed.insert(self.here.fold(&path));
                    self.removed_dirs.push(path);
                }
                LocalState::Stub => {
                    self.removed.insert(self.here.fold(&path));
                    self.plan.actions.push(Pull::RemoveFile { path, expected: None, id: Some(id.clone()) });
                }
                // A file edited here outlives its record: it stays, and is uploaded as new.
                LocalState::File => match self.scan.files.get(&path) {
                    Some(file) if !same(&record, file) => self.plan.push_after = true,
                    Some(file) => {
                        self.removed.insert(self.here.fold(&path));
                        let id = Some(id.clone());
                        self.plan.actions.push(Pull::RemoveFile { path, expected: Some(file.stamp), id });
                    }
                    // Moved by the user while this sync ran (its content is in a file no record
                    // holds): the record stays, with the folders it is in, for the next pass to
                    // send the move up. Dropped, the moved file would go up as a second copy.
                    None if self.scan.vanished.contains(&path) && self.held_untracked(record.hash.as_deref()) => {
                        keeping.extend(record.parent_id.clone());
                        continue;
                    }
                    None => {}
                },
            }
            self.drop_name(&record);
            if record.state == LocalState::Folder {
                self.doomed.push(id.clone());
            } else {
                self.plan.tree.records.remove(id);
            }
            self.plan.changed.remove(id);
            self.plan.dropped.insert(id.clone());
        }
    }

    /// Keeps the file or folder at `path` under a conflict name free here, to be uploaded after
    /// the pull.
    fn set_aside(&mut self, path: &str) {
        self.plan.push_after = true;
        let (folder, name) = split(path);
        // The copy goes up as a new object: named after the store's name, not one mapped here.
        let name = self.store_names.get(path).map_or(name, String::as_str);
        let aside = (1..)
            .map(|attempt| join(folder, &conflict_name(name, self.here.device, self.here.today, attempt)))
            .find(|candidate| self.found(candidate).is_none() && !self.claimed.contains(&self.here.fold(candidate)))
            .unwrap_or_default();
        self.plan.actions.push(Pull::SetAside { from: path.to_owned(), to: aside.clone() });
        self.claim(&aside);
    }
}
