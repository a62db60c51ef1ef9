//! Planning the store's changes to the device.

use super::{FileStamp, HashMap, HashSet, LocalState, Record, Scan, Tree, same};
use crate::naming::{conflict_name, join, local_name, split};
use cpm_core::EntryKind;
use cpm_core::profile::Holding;
use cpm_proto::Change;
use std::collections::BTreeSet;

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
    /// The device's side of a conflict, or a file in the way: kept under a new name, and uploaded.
    SetAside {
        from: String,
        to: String,
    },
    /// With `expected`, a file of content removed only if it still has this stamp; without, a
    /// stub of the engine's own.
    RemoveFile {
        path: String,
        expected: Option<FileStamp>,
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
        claimed: HashSet::default(),
        removed_dirs: Vec::new(),
        folder_paths: HashMap::default(),
    };
    let mut seen: HashSet<&str> = HashSet::default();
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
    // What an interrupted pull placed for records that are no longer here goes.
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
        let expected = scan.files.get(&path).map(|file| file.stamp);
        puller.plan.actions.push(Pull::RemoveFile { path, expected });
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
        puller.plan.actions.push(Pull::WriteStub { id, path, replace: false });
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
        // A name mapped here stays while the record keeps its name, folder and state.
        let mapped = existing
            .as_ref()
            .filter(|record| record.name == entry.name && record.state == state)
            .and_then(|record| record.local_name.clone());
        let target = join(
            &parent_path,
            &mapped.clone().unwrap_or_else(|| local_name(entry.kind, &entry.name, state == LocalState::Stub)),
        );
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
            local_name: mapped,
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
                    self.plan.actions.push(Pull::Rename { id: record.id.clone(), from: placed, to: target.clone() });
                    self.claimed.insert(target);
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
                // A file of the user's in the way is kept aside: only recorded stubs are ours.
                if self.scan.files.contains_key(&target) && !self.claimed.contains(&target) {
                    self.set_aside(&target);
                }
                self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: target.clone(), replace: false });
                record.local = None;
            }
            LocalState::File => match self.scan.files.get(&target).filter(|_| !self.claimed.contains(&target)) {
                Some(file) if file.hash.is_some() && file.hash == record.hash => record.local = Some(file.stamp),
                occupant => {
                    if occupant.is_some() {
                        self.set_aside(&target);
                    }
                    let (id, path) = (record.id.clone(), target.clone());
                    self.plan.actions.push(Pull::Download { id, path, replacing: None });
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
                let expected = local.map(|file| file.stamp);
                self.plan.actions.push(Pull::RemoveFile { path: current.clone(), expected });
            }
            self.plan.actions.push(Pull::WriteStub { id: record.id.clone(), path: target.clone(), replace: false });
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
            self.plan.actions.push(Pull::Rename { id: old.id.clone(), from: current.clone(), to: target.clone() });
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
                LocalState::Stub => self.plan.actions.push(Pull::RemoveFile { path, expected: None }),
                // A file edited here outlives its record: it stays, and is uploaded as new.
                LocalState::File => match self.scan.files.get(&path) {
                    Some(file) if !same(&record, file) => self.plan.push_after = true,
                    Some(file) => self.plan.actions.push(Pull::RemoveFile { path, expected: Some(file.stamp) }),
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

    /// Keeps the file at `path` under a conflict name free here, to be uploaded after the pull.
    fn set_aside(&mut self, path: &str) {
        self.plan.push_after = true;
        let (folder, name) = split(path);
        let taken = |candidate: &String| {
            self.scan.files.contains_key(candidate)
                || self.scan.dirs.contains(candidate)
                || self.claimed.contains(candidate)
        };
        let aside = (1..)
            .map(|attempt| join(folder, &conflict_name(name, self.device, self.today, attempt)))
            .find(|candidate| !taken(candidate))
            .unwrap_or_default();
        self.plan.actions.push(Pull::SetAside { from: path.to_owned(), to: aside.clone() });
        self.claimed.insert(aside);
    }
}
