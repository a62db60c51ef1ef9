//! The one seam through which the engine reaches the device's directory. [`crate::DiskFs`] is the
//! real one; a simulated one (an in-memory tree that knows which writes are durable) lets the
//! whole engine run through crashes and faults in a test.
//!
//! Paths are relative to the device's root, with `/` between names; `""` is the root.

use crate::plan::FileStamp;
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Kind {
    File,
    Dir,
    /// A symbolic link, a socket…: never synced.
    Other,
}

/// What a path holds, without following links.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Meta {
    pub kind: Kind,
    pub stamp: FileStamp,
}

/// One entry of a folder, with the stamp of a file (read with the listing where that is cheap).
#[derive(Debug, Clone)]
pub struct DirEntry {
    pub name: OsString,
    pub kind: Kind,
    pub stamp: Option<FileStamp>,
}

/// A file being written in the device's own temporary folder, invisible until placed.
pub trait TempFile: Send {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()>;
    /// Makes what was written durable.
    fn sync(&mut self) -> io::Result<()>;
}

/// The device's lock: held, or held by another process (its pid when known).
pub enum Locked {
    Held(Box<dyn Send>),
    Busy { pid: Option<u32> },
}

/// What the engine may do to the device's directory.
///
/// Invariant: nothing here replaces an existing path; every placement fails with
/// [`io::ErrorKind::AlreadyExists`] rather than overwrite what is there (a stub is rewritten only
/// once the old one is moved out of the user's reach and checked).
pub trait LocalFs: Send + Sync {
    type Temp: TempFile;

    fn metadata(&self, path: &str) -> io::Result<Option<Meta>>;
    fn read_dir(&self, path: &str) -> io::Result<Vec<DirEntry>>;
    fn open(&self, path: &str) -> io::Result<Box<dyn io::Read + Send>>;
    /// Creates a folder and the missing ones above it; an existing folder is no error.
    fn create_dir_all(&self, path: &str) -> io::Result<()>;
    fn remove_file(&self, path: &str) -> io::Result<()>;
    /// Removes a folder only when it is empty.
    fn remove_dir(&self, path: &str) -> io::Result<()>;
    /// Moves a file or folder; fails when `to` exists.
    fn rename_noreplace(&self, from: &str, to: &str) -> io::Result<()>;
    /// A new temporary file, on the same file system as the directory.
    fn temp_file(&self) -> io::Result<Self::Temp>;
    /// Puts a temporary file at `to`, its modification time set to `modified` when given; fails
    /// when `to` exists. Returns the stamp it has there.
    fn place(&self, temp: Self::Temp, to: &str, modified: Option<jiff::Timestamp>) -> io::Result<FileStamp>;
    /// Removes what earlier runs left in the temporary folder (called under the lock).
    fn clear_temp(&self) -> io::Result<()>;
    /// Writes a small new file in place; fails when `path` exists.
    fn write_new(&self, path: &str, bytes: &[u8]) -> io::Result<()>;
    /// Makes every change so far durable.
    fn sync_all(&self) -> io::Result<()>;
    /// Takes the device's lock without waiting.
    fn try_lock(&self) -> io::Result<Locked>;
    /// Where the device's index lives.
    fn index_dir(&self) -> PathBuf;
    /// This boot of the machine, when the system tells it; a change means unflushed writes may
    /// have been lost.
    fn boot_id(&self) -> Option<String>;
    /// Now, in the nanoseconds of file stamps.
    fn now_ns(&self) -> i64;
    /// How close to the moment it was read a stamp may be shared by a later change.
    fn stamp_margin(&self) -> std::time::Duration;
    /// True when names that differ only in case are one file here.
    fn case_insensitive(&self) -> bool;
    /// True when modification times carry fractions of a second.
    fn fine_mtime(&self) -> bool;
    /// How many threads may write small files here at once.
    fn threads(&self) -> usize;
}
