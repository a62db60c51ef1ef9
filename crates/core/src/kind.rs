//! What an entry of the store is.

use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// The kind of an object: a content file or a CPM message.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ObjectKind {
    File,
    Message,
}

/// The kind of any entry in a folder listing.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum EntryKind {
    Folder,
    File,
    Message,
}

impl ObjectKind {
    pub fn as_str(self) -> &'static str {
        match self {
            ObjectKind::File => "file",
            ObjectKind::Message => "message",
        }
    }
}

impl From<ObjectKind> for EntryKind {
    fn from(kind: ObjectKind) -> Self {
        match kind {
            ObjectKind::File => EntryKind::File,
            ObjectKind::Message => EntryKind::Message,
        }
    }
}

impl fmt::Display for ObjectKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for ObjectKind {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        match raw {
            "file" => Ok(ObjectKind::File),
            "message" => Ok(ObjectKind::Message),
            other => Err(format!(
                "unknown object kind {other:?} (expected file or message)"
            )),
        }
    }
}

impl fmt::Display for EntryKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(match self {
            EntryKind::Folder => "folder",
            EntryKind::File => "file",
            EntryKind::Message => "message",
        })
    }
}
