//! The pure core model of cpm: names, paths, object kinds, message attributes and time.
//!
//! Nothing in this crate performs I/O. Every function is a plain function of its inputs, so the
//! rules it encodes are tested without a server, a database or a file system.

pub mod clock;
pub mod filter;
pub mod kind;
pub mod message;
pub mod model;
pub mod name;
pub mod path;
pub mod pattern;
pub mod policy;
pub mod profile;
pub mod schedule;

pub use clock::{Clock, ManualClock, SimulatedClock, SystemClock};
pub use kind::{DeviceClass, EntryKind, ObjectKind};
pub use message::MessageInfo;
pub use model::{ChangedRow, Folder, Item, Object};
pub use name::{Name, NameError};
pub use path::StorePath;
