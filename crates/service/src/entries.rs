//! From store records to the entries the fronts hand out.

use crate::{Result, Service};
use cpm_core::{ChangedRow, Item, StorePath};
use cpm_proto::{Change, Entry};
use cpm_store::UserId;
use std::collections::HashMap;

impl Service {
    /// The entry of an item; `path` is given where it is known to be current.
    pub fn entry(&self, item: &Item, path: Option<String>) -> Entry {
        match item {
            Item::Folder(folder) => Entry {
                kind: item.kind(),
                id: folder.id.clone(),
                name: folder.name.clone(),
                path,
                parent_id: folder.parent_id.clone(),
                modseq: folder.modseq,
                created: Some(folder.created),
                modified: Some(folder.modified),
                size: None,
                content_type: None,
                hash: None,
                link: None,
                flags: None,
                from: None,
                to: None,
                cc: None,
                subject: None,
                date: None,
                message_id: None,
                conversation_id: None,
                attachments: None,
            },
            Item::Object(object) => {
                let message = object.message.as_deref().cloned().unwrap_or_default();
                let is_message = object.message.is_some();
                Entry {
                    kind: item.kind(),
                    id: object.id.clone(),
                    name: object.name.clone(),
                    path,
                    parent_id: Some(object.folder_id.clone()),
                    modseq: object.modseq,
                    created: Some(object.created),
                    modified: Some(object.modified),
                    size: Some(object.size),
                    content_type: Some(object.content_type.clone()),
                    hash: Some(object.hash.clone()),
                    link: Some(self.link(&object.id)),
                    flags: Some(object.flags.clone()),
                    from: message.from,
                    to: is_message.then_some(message.to),
                    cc: is_message.then_some(message.cc),
                    subject: message.subject,
                    date: message.date,
                    message_id: message.message_id,
                    conversation_id: message.conversation_id,
                    attachments: is_message.then_some(message.attachments),
                }
            }
        }
    }

    /// A journal row as a change: its current state, or a tombstone.
    pub fn change(&self, row: &ChangedRow) -> Change {
        match row {
            ChangedRow::Live(item) => Change {
                modseq: item.modseq(),
                kind: item.kind(),
                id: item.id().to_owned(),
                deleted: false,
                entry: Some(self.entry(item, None)),
            },
            ChangedRow::Deleted { kind, id, modseq } => {
                Change { modseq: *modseq, kind: *kind, id: id.clone(), deleted: true, entry: None }
            }
        }
    }

    /// Entries of items from anywhere in the tree, with their paths. A folder among the items
    /// gives its own path (from its parent's); any other folder's is looked up once.
    pub fn located(&self, user: UserId, items: Vec<Item>) -> Result<Vec<Entry>> {
        let listed: HashMap<&str, (Option<&str>, &str)> = items
            .iter()
            .filter_map(|item| match item {
                Item::Folder(folder) => Some((folder.id.as_str(), (folder.parent_id.as_deref(), folder.name.as_str()))),
                Item::Object(_) => None,
            })
            .collect();
        let mut folder_paths: HashMap<String, String> = HashMap::new();
        let mut path_of = |id: &str| -> Result<String> {
            // The folders up to one whose path is known, then their paths back down.
            let mut chain: Vec<(&str, &str)> = Vec::new();
            let mut at = id;
            let mut known = loop {
                if let Some(path) = folder_paths.get(at) {
                    break path.clone();
                }
                match listed.get(at) {
                    Some((None, _)) => break "/".to_owned(),
                    Some((Some(parent), name)) if !chain.iter().any(|(seen, _)| seen == parent) => {
                        chain.push((at, name));
                        at = parent;
                    }
                    _ => break self.store.folder_path(user, at)?.to_string(),
                }
            };
            folder_paths.insert(at.to_owned(), known.clone());
            for (folder, name) in chain.into_iter().rev() {
                known = child_path_text(&known, name);
                folder_paths.insert(folder.to_owned(), known.clone());
            }
            Ok(known)
        };
        let mut paths = Vec::with_capacity(items.len());
        for item in &items {
            paths.push(match item {
                Item::Folder(folder) if folder.parent_id.is_none() => "/".to_owned(),
                Item::Folder(folder) => path_of(&folder.id)?,
                Item::Object(object) => child_path_text(&path_of(&object.folder_id)?, &object.name),
            });
        }
        Ok(items.iter().zip(paths).map(|(item, path)| self.entry(item, Some(path))).collect())
    }

    /// The entry of one item, with its path.
    pub fn located_one(&self, user: UserId, item: Item) -> Result<Entry> {
        self.located(user, vec![item])?
            .pop()
            .ok_or_else(|| crate::ServiceError::internal("an entry vanished while its path was looked up"))
    }
}

pub fn child_path(folder: &StorePath, name: &str) -> String {
    child_path_text(&folder.to_string(), name)
}

/// The path of `name` in the folder whose path is `folder`.
pub fn child_path_text(folder: &str, name: &str) -> String {
    if folder == "/" { format!("/{name}") } else { format!("{folder}/{name}") }
}
