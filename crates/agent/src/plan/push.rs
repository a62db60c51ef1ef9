//! Planning the device's changes to the store.

use super::{
    HashMap, HashSet, Here, Listing, LocalFile, LocalState, Pull, Record, Scan, Tree, object_kind, plan_pull, same,
};
use crate::naming::{split, storable};
use cpm_core::EntryKind;
use cpm_core::ObjectKind;
use cpm_core::profile::Holding;
use cpm_proto::Change;
use std::collections::BTreeMap;

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
    /// A stub the user renamed or moved to `path` here: its object moves in the store.
    MoveStub {
        id: String,
        path: String,
    },
    /// A stub the user wrote over: its record leaves the index and is asked after, so that the
    /// pull places the stub anew beside the user's file.
    Forget {
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

/// `here` says how the pull that follows names what it places, so that what it will adopt is not
/// taken for new.
pub fn plan_push(
    tree: &Tree,
    scan: &Scan,
    remote: &[Change],
    content: impl Into<Holding>,
    here: Here<'_>,
    listing: Listing,
) -> Vec<Push> {
    let content = content.into();
    let touched = touched(tree, remote);
    let paths = tree.paths();
    // A file where a folder record is (or a folder where a file's is) is new: what a record's
    // path holds counts only when it is what the record is.
    let (mut tracked, mut tracked_dirs): (HashSet<&str>, HashSet<&str>) = Default::default();
    for record in tree.records.values() {
        if let Some(path) = paths.get(&record.id) {
            if scan.replaced_stubs.contains_key(path) {
                continue;
            }
            if record.state == LocalState::Folder {
                tracked_dirs.insert(path)
            } else {
                tracked.insert(path)
            };
        }
    }
    let leftovers: HashSet<&str> =
        scan.ours.values().chain(scan.ours_moved.values()).chain(scan.stray_stubs.keys()).map(String::as_str).collect();
    let new_files: Vec<(&String, &LocalFile)> = scan
        .files
        .iter()
        .filter(|(path, _)| !tracked.contains(path.as_str()) && !leftovers.contains(path.as_str()))
        .collect();
    let new_dirs: Vec<&String> = scan
        .dirs
        .iter()
        .filter(|dir| !tracked_dirs.contains(dir.as_str()) && !scan.ours.values().any(|placed| placed == *dir))
        .collect();
    // Where the store's changes will put files and folders: what is already there is the work of
    // an interrupted pull, not the user's. Only worth working out when something is new here.
    let (arriving, arriving_dirs, reused) = if remote.is_empty() || (new_files.is_empty() && new_dirs.is_empty()) {
        (HashSet::default(), HashSet::default(), HashSet::default())
    } else {
        let future = plan_pull(tree.clone(), scan, remote, content, here, listing);
        // What the pull moves into place (content reused on a whole listing) is not new either,
        // nor what it lets go because the store holds its content already.
        let reused: HashSet<String> = future
            .actions
            .iter()
            .filter_map(|action| match action {
                Pull::Rename { from: path, .. } | Pull::RemoveFile { path, id: None, .. }
                    if scan.files.contains_key(path) && !tracked.contains(path.as_str()) =>
                {
                    Some(path.clone())
                }
                _ => None,
            })
            .collect();
        let future = future.tree;
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
        (files, dirs, reused)
    };
    let mut untracked: BTreeMap<&str, &LocalFile> = new_files
        .into_iter()
        .filter(|(path, file)| !arriving.contains(&((*path).clone(), file.hash.clone())) && !reused.contains(*path))
        .map(|(path, file)| (path.as_str(), file))
        .collect();

    let (mut moves, mut uploads, mut deletes, mut folder_deletes) = (Vec::new(), Vec::new(), Vec::new(), Vec::new());
    let mut forgets = Vec::new();
    let onto = renamed_onto(tree, scan, &paths, &touched, remote, &untracked);
    let paired: HashSet<&str> = onto.iter().flat_map(|(taken, moved)| [taken.as_str(), moved.as_str()]).collect();
    let mut records: Vec<(&String, &Record)> = tree
        .records
        .values()
        .filter(|record| !paired.contains(record.id.as_str()))
        .filter_map(|record| Some((paths.get(&record.id)?, record)))
        .collect();
    records.sort_unstable_by(|a, b| a.0.cmp(b.0));
    for (path, record) in records {
        // Moved by an interrupted pull, not by the user: the pull finishes the job. Placed by
        // one and moved by the user since: it goes where she put it (below).
        if !scan.files.contains_key(path)
            && (scan.ours.contains_key(&record.id) || scan.ours_moved.contains_key(&record.id))
        {
            continue;
        }
        if touched.contains(record.id.as_str()) {
            // The store's change decides this record, but a move made here still goes up as a
            // move: its file must not look like a new one.
            let here = scan.files.get(path);
            if record.state == LocalState::File
                && here.is_none_or(|file| !same(record, file))
                && let Some(new_path) = moved_here(&untracked, record, path)
            {
                untracked.remove(new_path.as_str());
                if let Some(file) = here.filter(|_| !leftovers.contains(path.as_str())) {
                    untracked.insert(path.as_str(), file);
                }
                moves.push(Push::Move { id: record.id.clone(), path: new_path });
            }
            continue;
        }
        match record.state {
            LocalState::File => match scan.files.get(path) {
                Some(file) if same(record, file) => {}
                // Its content went elsewhere and something new took its place: the file moved
                // (a folder moved, say, and another made under the old name), and what is at its
                // path is new. Taken for an edit, the content would go up twice.
                Some(file) if let Some(new_path) = moved_here(&untracked, record, path) => {
                    untracked.remove(new_path.as_str());
                    if !leftovers.contains(path.as_str()) {
                        untracked.insert(path.as_str(), file);
                    }
                    moves.push(Push::Move { id: record.id.clone(), path: new_path });
                }
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
                    // Invariant: a file the engine removed is never taken for one the user deleted.
                    None if scan.removed.contains(&record.id) => forgets.push(Push::Forget { id: record.id.clone() }),
                    None => deletes.push(Push::Delete { id: record.id.clone(), base_modseq: record.modseq }),
                },
            },
            LocalState::Folder if !scan.dirs.contains(path) => {
                folder_deletes.push((path.matches('/').count(), Push::DeleteFolder { id: record.id.clone() }));
            }
            LocalState::Folder | LocalState::Stub => {}
        }
    }
    // Invariant: a stub the user moves moves its object. The engine's very bytes found
    // elsewhere, gone from their place, are a move of the link: its object moves in the store, as
    // a file's would. Put back, her move would be undone, and the stub she moved removed as a
    // stray.
    let mut stubs_moved: HashSet<&str> = HashSet::default();
    for (found, id) in &scan.stray_stubs {
        let stub = tree.records.get(id).is_some_and(|record| record.state == LocalState::Stub);
        let gone = paths.get(id).is_some_and(|at| !scan.files.contains_key(at));
        if stub && gone && !touched.contains(id.as_str()) && stubs_moved.insert(id) {
            moves.push(Push::MoveStub { id: id.clone(), path: found.clone() });
        }
    }
    let mut actions: Vec<Push> = scan.replaced_stubs.values().map(|id| Push::Forget { id: id.clone() }).collect();
    actions.extend(forgets);
    actions.extend(
        new_dirs
            .into_iter()
            .filter(|dir| !arriving_dirs.contains(dir.as_str()))
            .map(|dir| Push::CreateFolder { path: dir.clone() }),
    );
    // What a dead pull placed and the user moved since: the record goes where the user put it.
    for (id, path) in &scan.ours_moved {
        let placed_here = paths.get(id).is_some_and(|at| scan.files.contains_key(at));
        if !placed_here {
            moves.push(Push::Move { id: id.clone(), path: path.clone() });
        }
    }
    // The file the user deleted goes before the one she renamed onto its name takes it.
    for (taken, moved) in &onto {
        let (Some(record), Some(path)) = (tree.records.get(taken), paths.get(taken)) else { continue };
        actions.push(Push::Delete { id: record.id.clone(), base_modseq: record.modseq });
        actions.push(Push::Move { id: moved.clone(), path: path.clone() });
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

/// Files renamed here onto the name of another file that was deleted (`mv b a`): a record whose
/// file is gone and whose content is now at another record's path, with that record, as (record
/// whose name was taken, record moved onto it). Taken for an edit of the file there, the
/// content would go up twice. Records the store's changes touch are left to them, unless the
/// store only moved the one renamed here (the rename here then wins, as every later move does).
fn renamed_onto(
    tree: &Tree,
    scan: &Scan,
    paths: &HashMap<String, String>,
    touched: &HashSet<&str>,
    remote: &[Change],
    untracked: &BTreeMap<&str, &LocalFile>,
) -> Vec<(String, String)> {
    let mut changed: Vec<(&Record, &str)> = tree
        .records
        .values()
        .filter(|record| record.state == LocalState::File && !touched.contains(record.id.as_str()))
        .filter_map(|record| {
            let file = scan.files.get(paths.get(&record.id)?)?;
            let hash = file.hash.as_deref().filter(|_| !same(record, file))?;
            Some((record, hash))
        })
        .collect();
    if changed.is_empty() {
        return Vec::new();
    }
    changed.sort_by(|a, b| a.0.id.cmp(&b.0.id));
    let deleted: HashSet<&str> =
        remote.iter().filter(|change| change.deleted).map(|change| change.id.as_str()).collect();
    let mut vanished: HashMap<&str, Vec<&Record>> = HashMap::default();
    for record in tree.records.values() {
        let gone = paths.get(&record.id).is_some_and(|path| !scan.files.contains_key(path));
        if record.state == LocalState::File
            && gone
            && !deleted.contains(record.id.as_str())
            && !scan.ours.contains_key(&record.id)
            && !scan.ours_moved.contains_key(&record.id)
            && let Some(hash) = record.hash.as_deref()
            // One whose content is also in a new file here moved there.
            && !untracked.values().any(|file| file.hash.as_deref() == Some(hash))
        {
            vanished.entry(hash).or_default().push(record);
        }
    }
    for records in vanished.values_mut() {
        records.sort_by(|a, b| b.id.cmp(&a.id));
    }
    let mut pairs = Vec::new();
    for (taken, hash) in changed {
        if let Some(moved) = vanished.get_mut(hash).and_then(Vec::pop) {
            pairs.push((taken.id.clone(), moved.id.clone()));
        }
    }
    pairs.sort();
    pairs
}

/// Where a record's vanished file went, if anywhere: an untracked file with its content,
/// preferably one the store can take (a copy under a name it refuses would be the one moved,
/// and the other go up as a second object), and under the same name.
fn moved_here(untracked: &BTreeMap<&str, &LocalFile>, record: &Record, path: &str) -> Option<String> {
    let (_, name) = split(path);
    untracked
        .iter()
        .filter(|(_, file)| file.hash.is_some() && file.hash == record.hash)
        .map(|(candidate, _)| *candidate)
        .min_by_key(|candidate| (!storable(candidate), split(candidate).1 != name))
        .map(str::to_owned)
}
