//! What a user asks of one entry here: fetch a stub's content, or evict it back to a stub.

use super::Device;
use super::pull::write_stub;
use crate::error::{SyncError, SyncResult};
use crate::fs::LocalFs;
use crate::index::Index;
use crate::naming::STUB_SUFFIX;
use crate::plan::{LocalState, Record, Tree};
use crate::remote::Remote;
use crate::scan::hash_file;

impl<R: Remote, F: LocalFs> Device<R, F> {
    /// Fetches a stub's content through its link: the stub becomes the file.
    pub async fn fetch(&self, path: &str) -> SyncResult<u64> {
        let _lock = self.lock().await?;
        let (mut index, mut tree, id) = self.record_at(path)?;
        let record =
            tree.records.get(&id).cloned().ok_or_else(|| SyncError::Invalid(format!("no record at {path}")))?;
        match record.state {
            LocalState::Stub => {}
            LocalState::File => return Err(SyncError::Invalid(format!("{path} is already here"))),
            LocalState::Folder => return Err(SyncError::Invalid(format!("{path} is a folder"))),
        }
        let stub = tree.path_of(&id).unwrap_or_default();
        let fetched = Record { state: LocalState::File, local_name: None, ..record.clone() };
        let file = match stub.rsplit_once('/') {
            Some((folder, _)) => format!("{folder}/{}", fetched.file_name()),
            None => fetched.file_name(),
        };
        let (bytes, local, hash) = self.download_one(&record.entry, &file).await?;
        self.fs
            .remove_file(&stub)
            .map_err(|error| SyncError::local(format!("cannot remove the stub /{stub}"), error))?;
        tree.records.insert(id.clone(), Record { hash: Some(hash), local: Some(local), ..fetched });
        index.put(&tree, &id)?;
        Ok(bytes)
    }

    /// Drops a fetched file's content, leaving its stub.
    pub async fn evict(&self, path: &str) -> SyncResult<()> {
        let _lock = self.lock().await?;
        let (mut index, mut tree, id) = self.record_at(path)?;
        if index.meta("content")?.as_deref() != Some("stub") {
            return Err(SyncError::Invalid(
                "this device keeps content (its profile says content = download); evict is for stub devices".into(),
            ));
        }
        let record =
            tree.records.get(&id).cloned().ok_or_else(|| SyncError::Invalid(format!("no record at {path}")))?;
        if record.state != LocalState::File {
            return Err(SyncError::Invalid(format!("{path} holds no content here")));
        }
        let relative = tree.path_of(&id).unwrap_or_default();
        let meta = self.fs.metadata(&relative).ok().flatten();
        let unchanged = meta.is_some_and(|meta| record.local.is_some_and(|local| local.same_file(&meta.stamp)))
            || hash_file(&self.fs, &relative).ok().map(|(hash, _)| hash) == record.hash;
        if !unchanged {
            return Err(SyncError::Invalid(format!(
                "{path} was changed here; sync it first, so the change is not lost"
            )));
        }
        let stubbed = Record { state: LocalState::Stub, local: None, local_name: None, ..record };
        let stub = match relative.rsplit_once('/') {
            Some((folder, _)) => format!("{folder}/{}", stubbed.file_name()),
            None => stubbed.file_name(),
        };
        write_stub(&self.fs, &stub, &stubbed.entry, None)
            .map_err(|error| SyncError::local(format!("cannot write the stub /{stub}"), error))?;
        self.fs
            .remove_file(&relative)
            .map_err(|error| SyncError::local(format!("cannot remove /{relative}"), error))?;
        tree.records.insert(id.clone(), stubbed);
        index.put(&tree, &id)
    }

    /// The index, and the id of the record at a store path (`/a/b.mp3`, with or without `.cpmlink`).
    fn record_at(&self, path: &str) -> SyncResult<(Index, Tree, String)> {
        let index = Index::open(&self.fs.index_dir())?;
        let tree = index.load()?;
        let wanted = path.trim_start_matches('/').trim_end_matches(STUB_SUFFIX);
        let id = tree
            .paths()
            .into_iter()
            .find(|(_, local)| local.trim_end_matches(STUB_SUFFIX) == wanted)
            .map(|(id, _)| id)
            .ok_or_else(|| {
                SyncError::Invalid(format!("{path} is not on this device (sync first, or check its profile)"))
            })?;
        Ok((index, tree, id))
    }
}
