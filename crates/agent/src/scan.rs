//! Reads the device's directory: every folder and file, with the hash of each file that is new
//! or whose size or modification time differs from its record.

use crate::naming::{META_DIR, PARTIAL_SUFFIX, is_stub, join};
use crate::plan::{FileStamp, LocalFile, LocalState, Scan, Tree};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::{SystemTime, UNIX_EPOCH};

fn nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

pub fn stamp(metadata: &std::fs::Metadata) -> FileStamp {
    FileStamp { size: metadata.len(), mtime_ns: metadata.modified().map_or(0, nanos) }
}

/// File systems stamp with a clock that advances in ticks (a jiffy, at most 10 ms on Linux): a
/// stamp closer than this to the moment it was read could be shared by a change made just after.
pub const STAMP_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);
const STAMP_MARGIN_NS: i64 = STAMP_MARGIN.as_nanos() as i64;

/// The stamps that show the directory unchanged since a scan that agreed with the index: each
/// folder's and each content file's.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct CleanStamps {
    pub dirs: Vec<(String, i64)>,
    pub files: Vec<(String, FileStamp)>,
}

impl CleanStamps {
    /// The stamps of `found`, when it agrees with `tree` and no stamp is too recent (or too
    /// coarse: whole seconds) to tell a later change apart.
    pub fn of(tree: &Tree, found: &Scan) -> Option<Self> {
        if !crate::plan::agrees(tree, found) {
            return None;
        }
        let trusted = |mtime_ns: i64| mtime_ns < found.started_ns - STAMP_MARGIN_NS && mtime_ns % 1_000_000_000 != 0;
        let dirs: Vec<(String, i64)> = found.dir_mtimes.iter().map(|(path, mtime)| (path.clone(), *mtime)).collect();
        let contents = tree.records.values().filter(|record| record.state == LocalState::File).count();
        let files: Vec<(String, FileStamp)> = found
            .files
            .iter()
            .filter(|(path, _)| !is_stub(path))
            .map(|(path, file)| (path.clone(), file.stamp))
            .collect();
        let all_trusted =
            dirs.iter().all(|(_, mtime)| trusted(*mtime)) && files.iter().all(|(_, stamp)| trusted(stamp.mtime_ns));
        (all_trusted && files.len() == contents).then_some(Self { dirs, files })
    }

    /// True when every stamp still holds: nothing was added, removed, renamed or rewritten.
    pub fn hold(&self, root: &Path) -> bool {
        let at = |relative: &str| if relative.is_empty() { root.to_owned() } else { root.join(relative) };
        !self.dirs.is_empty()
            && self.dirs.iter().all(|(path, mtime)| {
                std::fs::metadata(at(path)).is_ok_and(|metadata| stamp(&metadata).mtime_ns == *mtime)
            })
            && self.files.iter().all(|(path, recorded)| {
                std::fs::symlink_metadata(at(path)).is_ok_and(|metadata| stamp(&metadata) == *recorded)
            })
    }
}

/// The time now, in the nanoseconds of file stamps.
pub fn now_ns() -> i64 {
    nanos(SystemTime::now())
}

pub fn hash_file(path: &Path) -> Result<String> {
    let mut file = std::fs::File::open(path).with_context(|| format!("cannot read {}", path.display()))?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 256 * 1024];
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        hasher.update(&buffer[..read]);
    }
    Ok(hasher.finalize().to_hex().to_string())
}

pub fn scan(root: &Path, tree: &Tree) -> Result<Scan> {
    let known: HashMap<String, crate::plan::FileStamp> = tree
        .paths()
        .into_iter()
        .filter_map(|(id, path)| {
            let record = tree.records.get(&id)?;
            (record.state == LocalState::File).then_some((path, record.local?))
        })
        .collect();
    let mut found = Scan { started_ns: now_ns(), ..Scan::default() };
    let mut queue = vec![String::new()];
    while let Some(relative) = queue.pop() {
        let dir = if relative.is_empty() { root.to_owned() } else { root.join(&relative) };
        // Invariant: a folder's stamp is taken before it is read, so a change made while or after
        // it is read shows as a newer stamp (see `clean_stamps` for the granularity margin).
        match std::fs::metadata(&dir) {
            Ok(metadata) => found.dir_mtimes.insert(relative.clone(), stamp(&metadata).mtime_ns),
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", dir.display())),
        };
        let entries = match std::fs::read_dir(&dir) {
            Ok(entries) => entries,
            // Removed while being read: it is simply not there.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("cannot read {}", dir.display())),
        };
        for entry in entries {
            let entry = entry?;
            let Some(name) = entry.file_name().to_str().map(str::to_owned) else { continue };
            if (relative.is_empty() && name == META_DIR) || name.ends_with(PARTIAL_SUFFIX) {
                continue;
            }
            let path = join(&relative, &name);
            let file_type = entry.file_type()?;
            if file_type.is_dir() {
                found.dirs.insert(path.clone());
                queue.push(path);
            } else if file_type.is_file() && is_stub(&path) {
                // A stub is a view of the store: only its presence matters, so no stat.
                found.files.insert(path, LocalFile { stamp: FileStamp { size: 0, mtime_ns: 0 }, hash: None });
            } else if file_type.is_file() {
                let metadata = entry.metadata()?;
                let stamp = stamp(&metadata);
                let hash = if known.get(&path) == Some(&stamp) { None } else { Some(hash_file(&entry.path())?) };
                found.files.insert(path, LocalFile { stamp, hash });
            }
        }
    }
    Ok(found)
}
