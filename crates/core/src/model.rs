//! The records of a store: folders and objects, and the rows of the change journal.

use crate::kind::{EntryKind, ObjectKind};
use crate::message::MessageInfo;
use jiff::Timestamp;

#[derive(Debug, Clone, PartialEq)]
pub struct Folder {
    pub id: String,
    /// `None` only for the user's root folder.
    pub parent_id: Option<String>,
    pub name: String,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub modseq: i64,
}

#[derive(Debug, Clone, PartialEq)]
pub struct Object {
    pub id: String,
    pub folder_id: String,
    pub name: String,
    pub kind: ObjectKind,
    pub content_type: String,
    pub size: u64,
    /// BLAKE3 of the payload, lowercase hex.
    pub hash: String,
    pub flags: Vec<String>,
    /// Attributes read from the message when `kind` is `Message`.
    pub message: Option<Box<MessageInfo>>,
    pub created: Timestamp,
    pub modified: Timestamp,
    pub modseq: i64,
}

/// A live entry of a folder.
#[derive(Debug, Clone, PartialEq)]
pub enum Item {
    Folder(Folder),
    Object(Object),
}

impl Item {
    pub fn id(&self) -> &str {
        match self {
            Item::Folder(folder) => &folder.id,
            Item::Object(object) => &object.id,
        }
    }

    pub fn name(&self) -> &str {
        match self {
            Item::Folder(folder) => &folder.name,
            Item::Object(object) => &object.name,
        }
    }

    pub fn kind(&self) -> EntryKind {
        match self {
            Item::Folder(_) => EntryKind::Folder,
            Item::Object(object) => object.kind.into(),
        }
    }

    pub fn modseq(&self) -> i64 {
        match self {
            Item::Folder(folder) => folder.modseq,
            Item::Object(object) => object.modseq,
        }
    }
}

/// One row of the change journal: the current state of a changed entry, or its tombstone.
#[derive(Debug, Clone, PartialEq)]
pub enum ChangedRow {
    Live(Item),
    Deleted { kind: EntryKind, id: String, modseq: i64 },
}

impl ChangedRow {
    pub fn modseq(&self) -> i64 {
        match self {
            ChangedRow::Live(item) => item.modseq(),
            ChangedRow::Deleted { modseq, .. } => *modseq,
        }
    }
}

/// Flags are short keywords (`seen`, `flagged`, `$Forwarded`…), kept sorted and unique.
pub fn normalize_flags(flags: &[String]) -> Result<Vec<String>, String> {
    let mut normalized = Vec::with_capacity(flags.len());
    for flag in flags {
        let valid = !flag.is_empty()
            && flag.len() <= 64
            && flag.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '$' | '-' | '_' | '.'));
        if !valid {
            return Err(format!(
                "bad flag {flag:?}: flags are 1 to 64 characters of letters, digits, '$', '-', '_' or '.'"
            ));
        }
        normalized.push(flag.clone());
    }
    normalized.sort();
    normalized.dedup();
    Ok(normalized)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn flags_are_sorted_unique_keywords() {
        let flags = ["seen".to_owned(), "flagged".to_owned(), "seen".to_owned()];
        assert_eq!(normalize_flags(&flags), Ok(vec!["flagged".to_owned(), "seen".to_owned()]));
        assert!(normalize_flags(&["has space".to_owned()]).is_err());
        assert!(normalize_flags(&[String::new()]).is_err());
    }
}
