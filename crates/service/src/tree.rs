//! Browsing and changing the tree: lookups, listings, folders, objects, moves, flags, deletes,
//! and the raw journal. Every name, hash and content type is checked here, once for every front.

use crate::{ErrorKind, Result, Service, ServiceError};
use cpm_core::message::MessageInfo;
use cpm_core::message::parse_message;
use cpm_core::{Item, Name, Object, ObjectKind, StorePath};
use cpm_proto::{ChangesPage, CreateObjectRequest, Entry, ListPage, MoveRequest, MoveResult};
use cpm_store::{NewObject, StoreError, UserId, is_valid_hash};

/// What a create answered: the object made, or (`new` false) the one that already stands for
/// the content sent.
#[derive(Debug, Clone, PartialEq)]
pub struct Created {
    pub entry: Entry,
    pub new: bool,
}

/// The most entries one move may name; a larger set is split by the client.
pub const MAX_MOVE: usize = 100_000;

pub fn store_path(raw: &str) -> Result<StorePath> {
    StorePath::parse(raw).map_err(|error| ServiceError::invalid_name(error.to_string()))
}

pub fn name(raw: &str) -> Result<Name> {
    Name::parse(raw).map_err(|error| ServiceError::invalid_name(format!("bad name {raw:?}: {error}")))
}

pub fn checked_hash(hash: &str) -> Result<()> {
    if is_valid_hash(hash) {
        Ok(())
    } else {
        Err(ServiceError::invalid(format!("bad hash {hash:?}: expected 64 lowercase hex digits of BLAKE3")))
    }
}

/// Ids name their kind; a folder call given an object id (or the reverse) finds nothing.
pub fn expect_kind(id: &str, prefix: char, what: &str) -> Result<()> {
    if id.starts_with(prefix) { Ok(()) } else { Err(ServiceError::not_found(format!("no {what} with id {id}"))) }
}

/// `type/subtype` with optional parameters, in printable ASCII.
fn valid_content_type(raw: &str) -> bool {
    let essence = raw.split(';').next().unwrap_or_default().trim();
    let shape = essence.split_once('/').is_some_and(|(kind, sub)| {
        !kind.is_empty() && !sub.is_empty() && !sub.contains('/') && !essence.contains(char::is_whitespace)
    });
    shape && raw.len() <= 255 && raw.bytes().all(|b| (b' '..=b'~').contains(&b))
}

impl Service {
    pub fn resolve(&self, user: UserId, raw: &str) -> Result<Entry> {
        let path = store_path(raw)?;
        let item = self.store.resolve(user, &path)?;
        Ok(self.entry(&item, Some(path.to_string())))
    }

    pub fn entry_by_id(&self, user: UserId, id: &str) -> Result<Entry> {
        let item = self.store.item(user, id)?;
        self.located_one(user, item)
    }

    pub fn children(&self, user: UserId, folder_id: &str, after: Option<&str>, limit: usize) -> Result<ListPage> {
        expect_kind(folder_id, 'f', "folder")?;
        let batch = self.store.list(user, folder_id, after, limit)?;
        let folder = self.store.folder_path(user, folder_id)?;
        let entries = batch
            .items
            .iter()
            .map(|item| self.entry(item, Some(crate::entries::child_path(&folder, item.name()))))
            .collect();
        Ok(ListPage { entries, next: batch.next })
    }

    pub fn create_folder(&self, user: UserId, raw: &str, parents: bool) -> Result<Entry> {
        let path = store_path(raw)?;
        let folder = self.store.create_folder(user, &path, parents)?;
        Ok(self.entry(&Item::Folder(folder), Some(path.to_string())))
    }

    pub fn delete_folder(&self, user: UserId, id: &str, recursive: bool) -> Result<()> {
        expect_kind(id, 'f', "folder")?;
        Ok(self.store.delete(user, id, recursive, None)?)
    }

    /// Creates an object (or with `replace` a new version of one) naming content already
    /// uploaded. A message is parsed for its headers from the stored bytes.
    /// `device` is the device that sends it, when one does: with `unless_held`, an object its
    /// view would leave out whose content a live object holds already is not made, and a copy
    /// of content a move in the store took away from this very place is not made either: the
    /// answer is the object that content became (`Created::new` false).
    pub fn create_object(&self, user: UserId, device: Option<&str>, request: CreateObjectRequest) -> Result<Created> {
        let name = name(&request.name)?;
        checked_hash(&request.hash)?;
        if let Some(content_type) = request.content_type.as_deref().filter(|ct| !valid_content_type(ct)) {
            return Err(ServiceError::invalid(format!("bad content type {content_type:?}: expected type/subtype")));
        }
        let (content_type, message) = match request.kind {
            ObjectKind::File => {
                (request.content_type.clone().unwrap_or_else(|| "application/octet-stream".to_owned()), None)
            }
            ObjectKind::Message => {
                if !self.store.has_blob(user, &request.hash)? {
                    return Err(
                        StoreError::BlobMissing(format!("content {} has not been uploaded yet", request.hash)).into()
                    );
                }
                let path = self.store.blob_path(&request.hash);
                let max = self.limits.max_message_bytes;
                if std::fs::metadata(&path).map_err(StoreError::from)?.len() > max {
                    return Err(StoreError::TooLarge(format!("a message may be at most {max} bytes")).into());
                }
                let bytes = std::fs::read(&path).map_err(StoreError::from)?;
                let info = parse_message(&bytes).map_err(|error| ServiceError::invalid(error.to_string()))?;
                (info.content_type.clone(), Some(Box::new(info)))
            }
        };
        // Invariant: a device re-reading its whole view stores nothing twice that its view
        // leaves out.
        if let Some(device) = device.filter(|_| request.unless_held && !request.replace) {
            let path = crate::entries::child_path(&self.store.folder_path(user, &request.folder_id)?, name.as_str());
            self.refuse_if_held(user, device, &request, &path, &content_type, message.as_deref())?;
            if let Some(known) = self.known_copy(user, &request, &name, &path)? {
                return Ok(known);
            }
        }
        let new = NewObject {
            folder_id: request.folder_id,
            name,
            kind: request.kind,
            hash: request.hash,
            content_type,
            message,
            modified: request.modified,
            replace: request.replace,
            base_modseq: request.base_modseq,
            quota_bytes: self.quota_bytes(),
        };
        let object = self.store.create_object(user, new)?;
        Ok(Created { entry: self.located_one(user, Item::Object(object))?, new: true })
    }

    /// What a copy sent up by a device re-reading its whole view already is, found by its
    /// content and place: the object a move in the store took it away to (returned, nothing
    /// made), or the deleted object it was at this very place (brought back, one object still
    /// when two devices that lost track of it both send it).
    fn known_copy(
        &self,
        user: UserId,
        request: &CreateObjectRequest,
        name: &Name,
        path: &str,
    ) -> Result<Option<Created>> {
        // Invariant: a copy of an object a device lost track of is that object, not a second.
        if let Some(moved) = self.store.moved_away(user, path, &request.hash)? {
            return Ok(Some(Created { entry: self.located_one(user, Item::Object(moved))?, new: false }));
        }
        let Some(deleted) = self.store.deleted_at(user, path, &request.hash)? else { return Ok(None) };
        match self.store.revive(user, &deleted, &request.folder_id, name, self.quota_bytes()) {
            Ok(object) => Ok(Some(Created { entry: self.located_one(user, Item::Object(object))?, new: true })),
            Err(StoreError::BlobMissing(_)) => Ok(None),
            Err(error) => Err(error.into()),
        }
    }

    /// Refuses (409 `held`) an object the device's view would leave out, when a live object
    /// holds its content already: a device that re-reads its whole view (its index lost, its
    /// profile changed) holds files it cannot tell from copies of objects it no longer shows, and
    /// sending them up would store the same content twice for nothing the device keeps.
    fn refuse_if_held(
        &self,
        user: UserId,
        device: &str,
        request: &CreateObjectRequest,
        path: &str,
        content_type: &str,
        message: Option<&MessageInfo>,
    ) -> Result<()> {
        if !self.store.holds_content(user, &request.hash)? {
            return Ok(());
        }
        let profile = self.device_profile(user, device)?.effective.profile.compile().map_err(ServiceError::internal)?;
        let size = std::fs::metadata(self.store.blob_path(&request.hash)).map_err(StoreError::from)?.len();
        let now = self.clock.now();
        let would_be = Object {
            id: String::new(),
            folder_id: request.folder_id.clone(),
            name: path.rsplit_once('/').map_or(path, |(_, name)| name).to_owned(),
            kind: request.kind,
            content_type: content_type.to_owned(),
            size,
            hash: request.hash.clone(),
            flags: Vec::new(),
            message: message.cloned().map(Box::new),
            created: now,
            modified: request.modified.unwrap_or(now),
            modseq: 0,
        };
        if profile.wants_object(&crate::view::facts(&would_be, path), now) {
            return Ok(());
        }
        Err(ServiceError::new(
            ErrorKind::Conflict,
            "held",
            format!("{path} would be outside this device's view, and the store holds its content already"),
        ))
    }

    pub fn set_flags(&self, user: UserId, id: &str, flags: &[String]) -> Result<Entry> {
        expect_kind(id, 'o', "object")?;
        let object = self.store.set_flags(user, id, flags)?;
        self.located_one(user, Item::Object(object))
    }

    pub fn delete_object(&self, user: UserId, id: &str, base_modseq: Option<i64>) -> Result<()> {
        expect_kind(id, 'o', "object")?;
        Ok(self.store.delete(user, id, false, base_modseq)?)
    }

    pub fn move_entries(&self, user: UserId, request: &MoveRequest) -> Result<MoveResult> {
        if request.ids.len() > MAX_MOVE {
            return Err(ServiceError::invalid(format!("one move may name at most {MAX_MOVE} entries")));
        }
        let new_name = request.name.as_deref().map(name).transpose()?;
        if request.revive {
            return self.revive(user, request, new_name.as_ref());
        }
        let moved = self.store.move_items(user, &request.ids, request.to.as_deref(), new_name.as_ref())?;
        Ok(MoveResult { entries: self.located(user, moved)? })
    }

    /// A move of one object that also brings it back when it was deleted meanwhile: a device
    /// moving its copy of an object someone deleted keeps the object, not a second one.
    fn revive(&self, user: UserId, request: &MoveRequest, new_name: Option<&Name>) -> Result<MoveResult> {
        let ([id], Some(to), Some(new_name)) = (request.ids.as_slice(), request.to.as_deref(), new_name) else {
            return Err(ServiceError::invalid("bringing back takes one object, a folder and a name"));
        };
        expect_kind(id, 'o', "object")?;
        // Live, as nearly every object a device moves is: a plain move, with no write tried first.
        if matches!(self.store.item(user, id), Err(StoreError::NotFound(_))) {
            match self.store.revive(user, id, to, new_name, self.quota_bytes()) {
                Ok(object) => return Ok(MoveResult { entries: self.located(user, vec![Item::Object(object)])? }),
                // Deleted for good once its content went: the device sends the file anew.
                Err(StoreError::BlobMissing(message)) => return Err(ServiceError::not_found(message)),
                // Brought back by another device meanwhile (or gone for good, or its folder
                // gone): the plain move says which.
                Err(StoreError::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        self.move_entries(user, &MoveRequest { revive: false, ..request.clone() })
    }

    /// The raw journal since a cursor (every row, not a device's view).
    pub fn journal(&self, user: UserId, since: i64, limit: usize) -> Result<ChangesPage> {
        let batch = self.store.changes(user, since, limit)?;
        Ok(ChangesPage {
            changes: batch.rows.iter().map(|row| self.change(row)).collect(),
            cursor: batch.cursor,
            has_more: batch.has_more,
            time: None,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::valid_content_type;

    #[test]
    fn content_types_need_a_type_and_a_subtype() {
        for ok in ["audio/mpeg", "text/plain; charset=utf-8", "application/vnd.ms-excel"] {
            assert!(valid_content_type(ok), "{ok}");
        }
        for bad in ["", "audio", "audio/", "/mpeg", "a/b/c", "audio /mpeg", "audio/mp\u{e9}g"] {
            assert!(!valid_content_type(bad), "{bad}");
        }
    }
}
