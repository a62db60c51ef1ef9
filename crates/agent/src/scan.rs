//! Reads the device's directory: every folder and file, with the hash of each file that is new
//! or whose size or modification time differs from its record.

use crate::naming::{META_DIR, PARTIAL_SUFFIX, is_stub, join};
use crate::plan::{FileStamp, LocalFile, LocalState, Scan, Tree};
use anyhow::{Context, Result};
use std::collections::HashMap;
use std::io::Read;
use std::path::Path;
use std::time::UNIX_EPOCH;

pub fn stamp(metadata: &std::fs::Metadata) -> FileStamp {
    let mtime_ns = metadata
        .modified()
        .ok()
        .and_then(|time| time.duration_since(UNIX_EPOCH).ok())
        .map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX));
    FileStamp { size: metadata.len(), mtime_ns }
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
    let mut found = Scan::default();
    let mut queue = vec![String::new()];
    while let Some(relative) = queue.pop() {
        let dir = if relative.is_empty() { root.to_owned() } else { root.join(&relative) };
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
