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
            other => Err(format!("unknown object kind {other:?} (expected file or message)")),
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

/// The class of a device; the operator sets defaults and bounds per class.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DeviceClass {
    Pc,
    Pda,
    Phone,
    Tablet,
    Other,
}

impl DeviceClass {
    pub const ALL: [DeviceClass; 5] =
        [DeviceClass::Pc, DeviceClass::Pda, DeviceClass::Phone, DeviceClass::Tablet, DeviceClass::Other];

    pub fn as_str(self) -> &'static str {
        match self {
            DeviceClass::Pc => "pc",
            DeviceClass::Pda => "pda",
            DeviceClass::Phone => "phone",
            DeviceClass::Tablet => "tablet",
            DeviceClass::Other => "other",
        }
    }
}

impl fmt::Display for DeviceClass {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for DeviceClass {
    type Err = String;

    fn from_str(raw: &str) -> Result<Self, Self::Err> {
        Self::ALL
            .into_iter()
            .find(|class| class.as_str() == raw)
            .ok_or_else(|| format!("unknown device class {raw:?} (expected pc, pda, phone, tablet or other)"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn kinds_and_classes_round_trip_through_their_names() {
        for class in DeviceClass::ALL {
            assert_eq!(class.as_str().parse::<DeviceClass>(), Ok(class));
        }
        assert!("laptop".parse::<DeviceClass>().is_err());
        for kind in [ObjectKind::File, ObjectKind::Message] {
            assert_eq!(kind.as_str().parse::<ObjectKind>(), Ok(kind));
        }
        assert_eq!(EntryKind::from(ObjectKind::Message).to_string(), "message");
    }
}
