//! Executing a push plan: the device's changes sent to the store, each recorded in the index as
//! soon as the store has it.
//!
//! An entry the store refuses (a name it does not take, a quota reached, a file that changed
//! while it was read) is reported and left for the next sync; the rest goes on. Only a store
//! that cannot be reached, or no longer knows the device, stops the sync.

use super::{Device, Report};
use crate::error::SyncResult;
use crate::fs::LocalFs;
use crate::index::Index;
use crate::naming::{conflict_name, join, split, store_path};
use crate::plan::{FileStamp, LocalState, Push, Record, Skipped, Tree};
use crate::remote::{Remote, RemoteError};
use crate::scan::hash_file;
use cpm_core::{EntryKind, ObjectKind};
use cpm_proto::{CreateObjectRequest, Entry, MoveRequest};
use unicode_normalization::UnicodeNormalization;

/// How many conflict names are tried before the entry waits for the next sync.
pub(super) const CONFLICT_ATTEMPTS: u32 = 100;

/// The store path of what is at `relative` here, named `name` in the store.
fn in_store(tree: &Tree, relative: &str, name: &str) -> String {
    format!("{}/{name}", tree.store_path_of(split(relative).0).trim_end_matches('/'))
}

/// Whether the store's answer to a create is an object at the place asked for (the store keeps
/// names in NFC).
fn is_at(entry: &Entry, folder_id: &str, name: &str) -> bool {
    entry.parent_id.as_deref() == Some(folder_id) && entry.name.chars().eq(name.nfc())
}

/// Drops a folder's record and every record below it.
fn drop_below(id: &str, index: &mut Index, tree: &mut Tree) -> SyncResult<()> {
    let mut gone = vec![id.to_owned()];
    let mut next = 0;
    while next < gone.len() {
        let parent = gone[next].clone();
        gone.extend(
            tree.records
                .values()
                .filter(|record| record.parent_id.as_deref() == Some(parent.as_str()))
                .map(|record| record.id.clone()),
        );
        next += 1;
    }
    for id in gone {
        tree.records.remove(&id);
        index.drop_record(&id)?;
    }
    Ok(())
}

/// A push of something under a folder set aside, made where that folder is now.
fn followed(mut action: Push, set_aside: &[(String, String)]) -> Push {
    if let Push::CreateFolder { path }
    | Push::Upload { path, .. }
    | Push::Move { path, .. }
    | Push::MoveStub { path, .. } = &mut action
    {
        for (from, to) in set_aside {
            if let Some(rest) = path.strip_prefix(from.as_str()).filter(|rest| rest.starts_with('/')) {
                *path = format!("{to}{rest}");
            }
        }
    }
    action
}

/// The kind of object a record is, to upload it again as that.
fn object_kind(tree: &Tree, id: &str) -> ObjectKind {
    tree.records.get(id).map_or(ObjectKind::File, |record| {
        if record.kind == EntryKind::Message { ObjectKind::Message } else { ObjectKind::File }
    })
}

/// What the user can do about a refusal.
fn fix_for(code: Option<&str>) -> &'static str {
    match code {
        Some("invalid_name") => "rename it: the store does not take this name",
        Some("quota_exceeded") => "free some room in the store, or ask for a larger quota",
        Some("too_large") => "the store does not take payloads this large",
        Some("hash_mismatch") => "it changed while it was uploaded; the next sync sends it again",
        _ => "the next sync tries again",
    }
}

impl<R: Remote, F: LocalFs> Device<R, F> {
    /// A refusal of one entry is reported and skipped; one that stops everything is returned.
    fn entry_refused(&self, path: &str, error: RemoteError, report: &mut Report) -> SyncResult<()> {
        if error.is_unauthorized() || error.is_transient() {
            return Err(self.remote_error(error));
        }
        report.skipped.push(Skipped::new(&store_path(path), &error.to_string(), fix_for(error.code())));
        Ok(())
    }

    pub(super) async fn push(
        &self,
        actions: Vec<Push>,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> SyncResult<()> {
        for action in actions {
            let before = report.bytes_uploaded;
            let action = followed(action, &report.set_aside);
            let asides = report.set_aside.len();
            self.push_one(action.clone(), index, tree, report).await?;
            // A folder on its way was set aside by this very push: it goes where the folder is
            // now (once; otherwise it would stay behind in the folder it leaves, and go up again
            // as new from the folder set aside).
            let again = followed(action.clone(), &report.set_aside[asides..]);
            if again != action {
                self.push_one(again, index, tree, report).await?;
            }
            self.progress.done(report.bytes_uploaded - before);
            super::pull::applied();
        }
        Ok(())
    }

    /// Records a move the store made: the object is where the file is here, under the name it
    /// has here (`here`, which is `asked` unless a conflict name had to be taken).
    #[allow(clippy::too_many_arguments)]
    fn moved(
        &self,
        mut moved: cpm_proto::MoveResult,
        id: &str,
        here: &str,
        asked: &str,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> SyncResult<()> {
        let Some(entry) = moved.entries.pop() else { return Ok(()) };
        // The record describes the file here: if the store holds a newer version by now, the
        // pull must still see this one as older.
        // Likewise its stamp: a move keeps a file's size and time, and one taken now would hide
        // an edit made since the scan (the record's hash is the old content's).
        let (kept, stamp, seen) = match tree.records.get(id) {
            Some(record) => (record.hash.clone(), record.local, Some(record.modseq)),
            None => (
                hash_file(&self.fs, here).ok().map(|(hash, _)| hash),
                self.fs.metadata(here).ok().flatten().map(|meta| meta.stamp),
                None,
            ),
        };
        let newer = entry.hash.is_some() && entry.hash != kept;
        self.remember(index, tree, report, entry, here, LocalState::File, stamp)?;
        if let Some(record) = tree.records.get_mut(id) {
            record.hash = kept;
            // And so is the version it was based on: an edit made here goes up against that
            // one, and meets the newer version as a conflict instead of replacing it unseen.
            if let Some(seen) = seen.filter(|_| newer) {
                record.modseq = seen;
            }
        }
        index.put(tree, id)?;
        report.moved_up += 1;
        if here != asked {
            report.conflicts.push(store_path(here));
        }
        Ok(())
    }

    #[allow(clippy::too_many_arguments)]
    pub(super) fn remember(
        &self,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
        entry: Entry,
        path: &str,
        state: LocalState,
        local: Option<FileStamp>,
    ) -> SyncResult<()> {
        let mut record = Record::new(entry, state, local);
        let here = split(path).1;
        if here != record.file_name() {
            record.local_name = Some(here.to_owned());
        }
        let id = record.id.clone();
        tree.records.insert(id.clone(), record);
        report.pushed.insert(id.clone());
        index.put_pushed(tree, &id)
    }

    async fn upload(
        &self,
        relative: &str,
        kind: ObjectKind,
        replace: Option<(String, i64)>,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> SyncResult<()> {
        let folder_id = match self.folder_for(relative, index, tree, report).await {
            Ok(Some(folder_id)) => folder_id,
            Ok(None) => return Ok(()),
            Err(error) => return self.entry_refused(relative, error, report),
        };
        // Invariant: the stamp is taken before the bytes are read, so an edit made while they
        // are read and sent shows at the next sync as a change of its own.
        let Some(before) = self.fs.metadata(relative).ok().flatten() else { return Ok(()) };
        let (hash, size) = match hash_file(&self.fs, relative) {
            Ok(read) => read,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
            Err(error) => {
                report.skipped.push(Skipped::new(
                    &store_path(relative),
                    &format!("cannot be read: {error}"),
                    "check its permissions",
                ));
                return Ok(());
            }
        };
        let sent = match self.remote.has_blob(&hash).await {
            Ok(true) => false,
            Ok(false) => {
                let source = match self.fs.open(relative) {
                    Ok(source) => source,
                    Err(_) => return Ok(()),
                };
                if let Err(error) = self.remote.put_blob(&hash, size, source).await {
                    return self.entry_refused(relative, error, report);
                }
                true
            }
            Err(error) => return self.entry_refused(relative, error, report),
        };
        if sent {
            report.bytes_uploaded += size;
        }
        let (_, here) = split(relative);
        // Invariant: a name mapped here stays here; the store keeps the object's own.
        let name = match &replace {
            Some((id, _)) => tree.store_name(id, here),
            None => match self.mapped_here(relative, EntryKind::File, tree).await {
                Some(entry) => entry.name,
                None => here.to_owned(),
            },
        };
        let content_type = match kind {
            ObjectKind::Message => None,
            ObjectKind::File => mime_guess::from_path(&name).first().map(|mime| mime.essence_str().to_owned()),
        };
        let modified = jiff::Timestamp::from_nanosecond(i128::from(before.stamp.mtime_ns)).ok();
        let request = CreateObjectRequest {
            folder_id,
            name,
            kind,
            hash: hash.clone(),
            content_type,
            replace: replace.is_some(),
            base_modseq: replace.as_ref().map(|(_, base)| *base),
            modified,
            // Re-reading its whole view, the device cannot tell a file it held before from a new
            // one: what its view leaves out and the store holds already is not stored twice.
            unless_held: report.full && replace.is_none(),
        };
        let mut created = self.remote.create_object(&request).await;
        let mut placed_in = request.folder_id.clone();
        if created.as_ref().is_err_and(|error| error.is("not_found")) {
            // The folder went from the store meanwhile: the file makes it again.
            match self.fresh_folders(split(relative).0, index, tree, report).await {
                Ok(folder_id) => {
                    placed_in.clone_from(&folder_id);
                    let request = CreateObjectRequest { folder_id, ..request.clone() };
                    created = self.remote.create_object(&request).await;
                }
                Err(error) => created = Err(error),
            }
        }
        match created {
            // A move in the store took this content away from here while the device had lost
            // track of it: the file is that object at its old place, and the pull takes it where
            // the object went.
            Ok(mut entry) if !is_at(&entry, &placed_in, &request.name) => {
                entry.path = Some(in_store(tree, relative, &request.name));
                entry.parent_id = Some(placed_in);
                entry.name = request.name.nfc().collect();
                self.remember(index, tree, report, entry, relative, LocalState::File, Some(before.stamp))
            }
            // Left out of the view, and its content is in the store: it leaves here, as every
            // object outside the view does, without being stored again.
            Err(error) if error.is("held") => {
                match self.remove_unchanged(relative, before.stamp) {
                    Ok(true) => report.removed += 1,
                    Ok(false) => {}
                    Err(error) => report.skipped.push(Skipped::new(
                        &store_path(relative),
                        &format!("cannot be removed here: {error}"),
                        "check its permissions",
                    )),
                }
                Ok(())
            }
            Ok(entry) => {
                report.uploaded += 1;
                self.remember(index, tree, report, entry, relative, LocalState::File, Some(before.stamp))
            }
            // Changed in the store meanwhile, or its name taken: this version is kept beside it,
            // unless the name holds this very content (put there by this device before it lost
            // track of it): then the object is this file's, and no conflict.
            Err(error) if error.is("conflict") || error.is("already_exists") => {
                if error.is("already_exists")
                    && replace.is_none()
                    && let Some(entry) = self.holds_same(&in_store(tree, relative, &request.name), &hash).await?
                {
                    return self.remember(index, tree, report, entry, relative, LocalState::File, Some(before.stamp));
                }
                self.upload_aside(relative, request, before.stamp, index, tree, report).await
            }
            Err(error) => self.entry_refused(relative, error, report),
        }
    }

    /// The store's object at a relative path, when it holds exactly `hash`.
    async fn holds_same(&self, path: &str, hash: &str) -> SyncResult<Option<Entry>> {
        match self.remote.resolve(path).await {
            Ok(entry) => Ok((entry.kind != EntryKind::Folder && entry.hash.as_deref() == Some(hash)).then_some(entry)),
            Err(error) if error.is_unauthorized() || error.is_transient() => Err(self.remote_error(error)),
            Err(_) => Ok(None),
        }
    }

    /// Keeps a version the store would not take under its name as a conflict copy, here and in
    /// the store, under a name free in both.
    async fn upload_aside(
        &self,
        relative: &str,
        request: CreateObjectRequest,
        stamp: FileStamp,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> SyncResult<()> {
        let (folder, _) = split(relative);
        // The copy is named after the object's store name, not a name mapped here.
        let name = request.name.clone();
        let mut here = relative.to_owned();
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let aside = join(folder, &conflict_name(&name, &self.name, self.today(), attempt));
            match self.fs.rename_noreplace(&here, &aside) {
                Ok(()) => here = aside.clone(),
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                // Gone or unreadable meanwhile: the next sync sees what is there.
                Err(_) => return Ok(()),
            }
            let request = CreateObjectRequest {
                name: split(&aside).1.to_owned(),
                replace: false,
                base_modseq: None,
                ..request.clone()
            };
            match self.remote.create_object(&request).await {
                Ok(entry) => {
                    report.uploaded += 1;
                    report.conflicts.push(store_path(&aside));
                    return self.remember(index, tree, report, entry, &aside, LocalState::File, Some(stamp));
                }
                Err(error) if error.is("already_exists") => continue,
                Err(error) => return self.entry_refused(&aside, error, report),
            }
        }
        report.skipped.push(Skipped::new(&store_path(&here), "no free name for its conflict copy", "rename it"));
        Ok(())
    }

    /// Moves the object of a stub the user renamed or moved here to where the stub now is. The
    /// record keeps the version it had, so that the pull writes the stub anew for the moved
    /// entry; a move the store refuses leaves the stub to be put back where it was.
    async fn move_stub(
        &self,
        id: &str,
        path: &str,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> SyncResult<()> {
        let Some(seen) = tree.records.get(id).map(|record| record.modseq) else { return Ok(()) };
        let folder_id = match self.folder_for(path, index, tree, report).await {
            Ok(Some(folder_id)) => folder_id,
            Ok(None) => return Ok(()),
            Err(error) => return self.entry_refused(path, error, report),
        };
        let request = MoveRequest {
            ids: vec![id.to_owned()],
            to: Some(folder_id),
            name: Some(tree.stub_store_name(id, split(path).1)),
            revive: false,
        };
        match self.remote.move_entries(&request).await {
            Ok(mut moved) => {
                let Some(entry) = moved.entries.pop() else { return Ok(()) };
                self.remember(index, tree, report, entry, path, LocalState::Stub, None)?;
                if let Some(record) = tree.records.get_mut(id) {
                    record.modseq = seen;
                }
                index.put(tree, id)?;
                report.moved_up += 1;
                Ok(())
            }
            Err(error) if error.is("not_found") => Ok(()),
            Err(error) => self.entry_refused(path, error, report),
        }
    }

    async fn push_one(&self, action: Push, index: &mut Index, tree: &mut Tree, report: &mut Report) -> SyncResult<()> {
        match action {
            Push::CreateFolder { path } => match self.new_folder(&path, index, tree, report).await {
                // The store's folder of that name is here already, under another name (mapped
                // for a case twin): this one is another folder, kept beside it.
                Ok(entry) if self.recorded_elsewhere(tree, &entry.id, &path) => self.folder_aside(&path, report)?,
                Ok(entry) => {
                    // A folder the store had already (outside this device's view) is no change.
                    if entry.modseq > report.cursor {
                        report.folders_up += 1;
                    }
                    self.remember(index, tree, report, entry, &path, LocalState::Folder, None)?;
                }
                // An object holds the name in the store: the folder here is kept beside it, and
                // what is in it goes up from there.
                Err(error) if error.is("already_exists") => self.folder_aside(&path, report)?,
                Err(error) => self.entry_refused(&path, error, report)?,
            },
            Push::Upload { path, kind, replace, .. } => self.upload(&path, kind, replace, index, tree, report).await?,
            Push::Move { id, path } => {
                let folder_id = match self.folder_for(&path, index, tree, report).await {
                    Ok(Some(folder_id)) => folder_id,
                    Ok(None) => return Ok(()),
                    Err(error) => return self.entry_refused(&path, error, report),
                };
                let (folder, name) = split(&path);
                let mut here = path.clone();
                for attempt in 0..=CONFLICT_ATTEMPTS {
                    if attempt > 0 {
                        // The name is taken in the store: the object moves under a conflict
                        // name instead, here and there (one object still, not two).
                        let aside = join(folder, &conflict_name(name, &self.name, self.today(), attempt));
                        match self.fs.rename_noreplace(&here, &aside) {
                            Ok(()) => here = aside,
                            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                            // Gone meanwhile: the next sync sees what is there.
                            Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
                            // The move waits, told, for the next sync to try again.
                            Err(error) => {
                                report.skipped.push(Skipped::new(
                                    &store_path(&here),
                                    &format!("cannot be renamed to {aside:?} here: {error}"),
                                    "check free space and permissions",
                                ));
                                return Ok(());
                            }
                        }
                    }
                    let request = MoveRequest {
                        ids: vec![id.clone()],
                        to: Some(folder_id.clone()),
                        name: Some(tree.store_name(&id, split(&here).1)),
                        // Deleted in the store meanwhile, the object comes back where the user
                        // moved it: her move keeps it, and a second device moving its copy
                        // moves the same object, not another.
                        revive: true,
                    };
                    match self.remote.move_entries(&request).await {
                        Ok(moved) => return self.moved(moved, &id, &here, &path, index, tree, report),
                        Err(error) if error.is("already_exists") => continue,
                        // The folder it moves to went from the store meanwhile, and is made
                        // again; or the object itself went for good (its tombstone or content
                        // collected), and the file is uploaded as new where it now is.
                        Err(error) if error.is("not_found") => {
                            let retried = match self.fresh_folders(split(&here).0, index, tree, report).await {
                                Ok(fresh) if fresh != folder_id => {
                                    let request = MoveRequest { to: Some(fresh), ..request };
                                    self.remote.move_entries(&request).await
                                }
                                Ok(_) => Err(error),
                                Err(error) => return self.entry_refused(&here, error, report),
                            };
                            return match retried {
                                Ok(moved) => self.moved(moved, &id, &here, &path, index, tree, report),
                                Err(error) if error.is("not_found") => {
                                    let kind = object_kind(tree, &id);
                                    tree.records.remove(&id);
                                    index.drop_record(&id)?;
                                    self.upload(&here, kind, None, index, tree, report).await
                                }
                                Err(error) => self.entry_refused(&here, error, report),
                            };
                        }
                        Err(error) => return self.entry_refused(&here, error, report),
                    }
                }
                report.skipped.push(Skipped::new(&store_path(&here), "no free name to move it to", "rename it"));
            }
            Push::Delete { id, base_modseq } => match self.remote.delete_object(&id, base_modseq).await {
                Ok(()) => {
                    tree.records.remove(&id);
                    index.drop_record(&id)?;
                    report.deleted_up += 1;
                    report.deleted_ids.insert(id, base_modseq);
                }
                Err(error) if error.is("not_found") => {
                    tree.records.remove(&id);
                    index.drop_record(&id)?;
                }
                // Changed in the store since: the modification wins; the pull brings it back, as
                // it is now (moved, perhaps, out of a folder this push deletes).
                Err(error) if error.is("conflict") => {
                    report.pushed.insert(id);
                }
                Err(error) => {
                    let path = tree.path_of(&id).unwrap_or_default();
                    self.entry_refused(&path, error, report)?
                }
            },
            Push::MoveStub { id, path } => self.move_stub(&id, &path, index, tree, report).await?,
            Push::Forget { id } => {
                tree.records.remove(&id);
                index.forget(&id)?;
                report.pushed.insert(id);
            }
            Push::DeleteFolder { id } => match self.remote.delete_folder(&id).await {
                // Its records go with it: what was in it is gone here too, and the store's
                // changes bring whatever the store had moved out of it.
                // Asked after too: what the listing has in it is then asked after as well.
                Ok(()) => {
                    drop_below(&id, index, tree)?;
                    report.folders_deleted_up += 1;
                    report.pushed.insert(id);
                }
                Err(error) if error.is("not_found") => drop_below(&id, index, tree)?,
                Err(error) if error.is("folder_not_empty") => {}
                Err(error) => {
                    let path = tree.path_of(&id).unwrap_or_default();
                    self.entry_refused(&path, error, report)?
                }
            },
        }
        Ok(())
    }
}
