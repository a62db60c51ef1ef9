//! From store records to wire entries.

use crate::state::AppState;
use cpm_core::{ChangedRow, Item, StorePath};
use cpm_proto::{Change, Entry};
use cpm_store::{Store, StoreError, UserId};
use std::collections::HashMap;

/// The wire form of an item; `path` is given where it is known to be current.
pub fn entry(state: &AppState, item: &Item, path: Option<String>) -> Entry {
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
                link: Some(state.link(&object.id)),
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

pub fn change(state: &AppState, row: &ChangedRow) -> Change {
    match row {
        ChangedRow::Live(item) => Change {
            modseq: item.modseq(),
            kind: item.kind(),
            id: item.id().to_owned(),
            deleted: false,
            entry: Some(entry(state, item, None)),
        },
        ChangedRow::Deleted { kind, id, modseq } => {
            Change { modseq: *modseq, kind: *kind, id: id.clone(), deleted: true, entry: None }
        }
    }
}

pub fn child_path(folder: &StorePath, name: &str) -> String {
    child_path_text(&folder.to_string(), name)
}

/// The path of `name` in the folder whose path is `folder`.
pub fn child_path_text(folder: &str, name: &str) -> String {
    if folder == "/" { format!("/{name}") } else { format!("{folder}/{name}") }
}

/// Paths of items from anywhere in the tree; each folder's path is looked up once.
pub fn with_paths(store: &dyn Store, user: UserId, items: Vec<Item>) -> Result<Vec<(Item, String)>, StoreError> {
    let mut folder_paths: HashMap<String, StorePath> = HashMap::new();
    let mut located = Vec::with_capacity(items.len());
    for item in items {
        let parent = match &item {
            Item::Folder(folder) => folder.parent_id.clone(),
            Item::Object(object) => Some(object.folder_id.clone()),
        };
        let path = match parent {
            None => "/".to_owned(),
            Some(parent) => {
                if !folder_paths.contains_key(&parent) {
                    let path = store.folder_path(user, &parent)?;
                    folder_paths.insert(parent.clone(), path);
                }
                let folder = folder_paths.get(&parent).cloned().unwrap_or_default();
                child_path(&folder, item.name())
            }
        };
        located.push((item, path));
    }
    Ok(located)
}
