//! Store folders for paths here: found through the records, made (with every folder on the way)
//! when missing, made anew when the store deleted them meanwhile, and a folder of the user's set
//! aside when an object holds its name in the store.

use super::push::CONFLICT_ATTEMPTS;
use super::{Device, Report};
use crate::error::SyncResult;
use crate::fs::LocalFs;
use crate::index::Index;
use crate::naming::{conflict_name, join, maps, split, store_path, unmapped};
use crate::plan::{LocalState, Skipped, Tree};
use crate::remote::{Remote, RemoteError};
use cpm_core::EntryKind;
use cpm_proto::Entry;

impl<R: Remote, F: LocalFs> Device<R, F> {
    /// The store folder holding a relative path's parent, created (with every missing ancestor,
    /// each recorded) when missing; `None` when a folder on the way was set aside here, for the
    /// sync's next pass to send up.
    pub(super) async fn folder_for(
        &self,
        relative: &str,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> Result<Option<String>, RemoteError> {
        let (folder, _) = split(relative);
        let mut parent = tree.root_id.clone();
        let mut walked = String::new();
        for name in folder.split('/').filter(|name| !name.is_empty()) {
            walked = join(&walked, name);
            let known = tree.folders_named(&parent, name).next().map(|record| record.id.clone());
            parent = match known {
                Some(id) => id,
                None => {
                    let entry = self.make_folder(&walked, tree).await?;
                    // The store's folder of that name is here already under another (mapped
                    // for a case twin, or in another Unicode form on a file system that tells
                    // the forms apart): the folder here is another one, kept beside it, and
                    // what is in it goes up from there. Recorded as the store's, it would take
                    // that folder's place here, and its contents would look deleted.
                    if self.recorded_elsewhere(tree, &entry.id, &walked) {
                        self.folder_aside(&walked, report)
                            .map_err(|error| RemoteError::Unavailable(error.to_string()))?;
                        return Ok(None);
                    }
                    if entry.parent_id.as_deref() != Some(parent.as_str()) {
                        // A folder on the way went from the store meanwhile and was made again
                        // with this one: every folder on the way is recorded anew.
                        return self.fresh_folders(split(relative).0, index, tree, report).await.map(Some);
                    }
                    let id = entry.id.clone();
                    self.remember(index, tree, report, entry, &walked, LocalState::Folder, None)
                        .map_err(|error| RemoteError::Unavailable(error.to_string()))?;
                    id
                }
            };
        }
        Ok(Some(parent))
    }

    /// Whether the store's folder `id` is recorded here at a path other than `path` (as this
    /// file system compares paths).
    pub(super) fn recorded_elsewhere(&self, tree: &Tree, id: &str, path: &str) -> bool {
        let here = self.here();
        tree.path_of(id).is_some_and(|at| here.fold(&at) != here.fold(path))
    }

    /// Makes the store folder for a new folder here; when a folder on its way went from the store
    /// meanwhile (and was made again with it), every folder on the way is recorded anew.
    pub(super) async fn new_folder(
        &self,
        path: &str,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> Result<Entry, RemoteError> {
        let entry = self.make_folder(path, tree).await?;
        let parent = split(path).0;
        let expected = if parent.is_empty() { Some(tree.root_id.clone()) } else { tree.id_at(parent) };
        if entry.parent_id.is_some() && entry.parent_id != expected {
            self.fresh_folders(parent, index, tree, report).await?;
        }
        Ok(entry)
    }

    /// Makes the store folder for a folder here (the one it was mapped from, if it was).
    pub(super) async fn make_folder(&self, relative: &str, tree: &Tree) -> Result<Entry, RemoteError> {
        match self.mapped_here(relative, EntryKind::Folder, tree).await {
            Some(entry) => Ok(entry),
            None => self.remote.create_folder(&tree.store_path_of(relative)).await,
        }
    }

    /// The store entry a file or folder here is named after, when its name is one this device
    /// maps that entry to (known again after the index that said so was lost).
    pub(super) async fn mapped_here(&self, relative: &str, kind: EntryKind, tree: &Tree) -> Option<Entry> {
        let (folder, here) = split(relative);
        let name = unmapped(here)?;
        let path = tree.store_path_of(&join(folder, &name));
        let entry = self.remote.resolve(&path).await.ok()?;
        let same_kind = (entry.kind == EntryKind::Folder) == (kind == EntryKind::Folder);
        (same_kind && maps(here, &name, &entry.id, "")).then_some(entry)
    }

    /// The store folder of a relative folder path made anew: the one its records name was
    /// deleted in the store meanwhile (a modification here beats that deletion). Every folder on
    /// the way is made (or found) and recorded, so that what the pull learns of them has a
    /// known parent; a record the store no longer has there is asked after.
    pub(super) async fn fresh_folders(
        &self,
        folder: &str,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> Result<String, RemoteError> {
        let mut id = tree.root_id.clone();
        let mut walked = String::new();
        for name in folder.split('/').filter(|name| !name.is_empty()) {
            walked = join(&walked, name);
            let entry = self.remote.create_folder(&tree.store_path_of(&walked)).await?;
            let stale: Vec<String> = tree
                .folders_named(&id, name)
                .filter(|record| record.id != entry.id)
                .map(|record| record.id.clone())
                .collect();
            report.pushed.extend(stale);
            id = entry.id.clone();
            self.remember(index, tree, report, entry, &walked, LocalState::Folder, None)
                .map_err(|error| RemoteError::Unavailable(error.to_string()))?;
        }
        Ok(id)
    }

    /// Renames a folder here whose name an object holds in the store to a conflict name free
    /// here; the next pass of the sync sends it up.
    pub(super) fn folder_aside(&self, path: &str, report: &mut Report) -> SyncResult<()> {
        let (folder, name) = split(path);
        for attempt in 1..=CONFLICT_ATTEMPTS {
            let aside = join(folder, &conflict_name(name, &self.name, self.today(), attempt));
            match self.fs.rename_noreplace(path, &aside) {
                Ok(()) => {
                    report.conflicts.push(store_path(&aside));
                    report.set_aside.push((path.to_owned(), aside));
                    report.again = true;
                    return Ok(());
                }
                Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
                Err(_) => return Ok(()),
            }
        }
        report.skipped.push(Skipped::new(&store_path(path), "no free name for its conflict copy", "rename it"));
        Ok(())
    }
}
