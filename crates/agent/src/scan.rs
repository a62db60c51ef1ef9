//! Reads the device's directory: every folder and file, with the hash of each file that is new
//! or whose size or modification time differs from its record.

use crate::fs::{Kind, LocalFs};
use crate::naming::{META_DIR, STUB_SUFFIX, join};
use crate::plan::{FileStamp, LocalFile, LocalState, Scan, Skipped, Tree};
use anyhow::{Context, Result};
use std::collections::HashMap;

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
    pub fn of(tree: &Tree, found: &Scan, fs: &impl LocalFs) -> Option<Self> {
        if !crate::plan::agrees(tree, found) {
            return None;
        }
        let margin = i64::try_from(fs.stamp_margin().as_nanos()).unwrap_or(i64::MAX);
        let fine = fs.fine_mtime();
        let trusted = |mtime_ns: i64| mtime_ns < found.started_ns - margin && (fine || mtime_ns % 1_000_000_000 != 0);
        let dirs: Vec<(String, i64)> = found.dir_mtimes.iter().map(|(path, mtime)| (path.clone(), *mtime)).collect();
        let stubs = tree.stub_paths();
        let contents = tree.records.values().filter(|record| record.state == LocalState::File).count();
        let files: Vec<(String, FileStamp)> = found
            .files
            .iter()
            .filter(|(path, _)| !stubs.contains(path.as_str()))
            .map(|(path, file)| (path.clone(), file.stamp))
            .collect();
        let all_trusted =
            dirs.iter().all(|(_, mtime)| trusted(*mtime)) && files.iter().all(|(_, stamp)| trusted(stamp.mtime_ns));
        (all_trusted && files.len() == contents).then_some(Self { dirs, files })
    }

    /// True when every stamp still holds: nothing was added, removed, renamed or rewritten.
    pub fn hold(&self, fs: &impl LocalFs) -> bool {
        !self.dirs.is_empty()
            && self.dirs.iter().all(|(path, mtime)| {
                fs.metadata(path)
                    .ok()
                    .flatten()
                    .is_some_and(|meta| meta.kind == Kind::Dir && meta.stamp.mtime_ns == *mtime)
            })
            && self.files.iter().all(|(path, recorded)| {
                fs.metadata(path)
                    .ok()
                    .flatten()
                    .is_some_and(|meta| meta.kind == Kind::File && recorded.same_file(&meta.stamp))
            })
    }
}

/// The BLAKE3 hash of a local file, and its size as read.
pub fn hash_file(fs: &impl LocalFs, path: &str) -> std::io::Result<(String, u64)> {
    let mut file = fs.open(path)?;
    let mut hasher = blake3::Hasher::new();
    let mut buffer = vec![0u8; 256 * 1024];
    let mut size = 0u64;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            break;
        }
        size += read as u64;
        hasher.update(&buffer[..read]);
    }
    Ok((hasher.finalize().to_hex().to_string(), size))
}

use std::io::Read as _;

/// A stub's bytes: the object's id, link and exactly the details the device keeps, as JSON.
pub(crate) fn stub_json(entry: &cpm_proto::Entry) -> serde_json::Result<Vec<u8>> {
    serde_json::to_vec_pretty(entry)
}

/// What a file that may be a stub holds (a stub is small: what lies past 64 KiB is no stub's).
fn read_stub(fs: &impl LocalFs, path: &str) -> std::io::Result<Vec<u8>> {
    let mut bytes = Vec::new();
    fs.open(path)?.take(64 * 1024).read_to_end(&mut bytes)?;
    Ok(bytes)
}

/// The record a stub stands for, when the file at `path` is one of the engine's: exactly the
/// JSON the engine writes for an entry whose link is the store's link to that entry's payload.
/// A file of the user's is not, whatever its name: one she edited (a note added to a copy of a
/// stub, say) is hers, and goes up.
fn stub_of(fs: &impl LocalFs, path: &str) -> Option<String> {
    let bytes = read_stub(fs, path).ok()?;
    let entry: cpm_proto::Entry = serde_json::from_slice(&bytes).ok()?;
    let link = entry.link.as_deref()?;
    let as_written = stub_json(&entry).is_ok_and(|json| json == bytes);
    (as_written && link.ends_with(&format!("/v1/objects/{}/content", entry.id))).then_some(entry.id)
}

/// Whether the file at `path` is exactly the stub the engine writes for `entry`.
pub(crate) fn holds_stub_of(fs: &impl LocalFs, path: &str, entry: &cpm_proto::Entry) -> bool {
    stub_json(entry).is_ok_and(|expected| read_stub(fs, path).is_ok_and(|found| found == expected))
}

/// True when the file at a recorded stub's path is still the engine's: the stub of `id` (of any
/// record, without one), or one torn by a power cut as it was written (empty, or JSON cut
/// short). Anything else there was written by the user.
pub(crate) fn still_stub(fs: &impl LocalFs, path: &str, id: Option<&str>) -> bool {
    let Ok(bytes) = read_stub(fs, path) else { return true };
    if bytes.is_empty() {
        return true;
    }
    match serde_json::from_slice::<cpm_proto::Entry>(&bytes) {
        Ok(entry) => id.is_none_or(|id| entry.id == id),
        Err(error) => bytes.first() == Some(&b'{') && error.is_eof(),
    }
}

/// Reads the whole directory. Stubs the index records are not read (their presence is what
/// counts); every other file is hashed unless its stamp is the one its record has.
pub fn scan(fs: &impl LocalFs, tree: &Tree) -> Result<Scan> {
    let paths = tree.paths();
    let mut known: HashMap<&str, Option<FileStamp>> = HashMap::new();
    for (id, path) in &paths {
        match tree.records.get(id).map(|record| (record.state, record.local)) {
            Some((LocalState::File, local)) => known.insert(path.as_str(), local),
            Some((LocalState::Stub, _)) => known.insert(path.as_str(), None),
            _ => None,
        };
    }
    // Each recorded stub, with its record and the size of what the engine wrote there.
    let stubs: HashMap<&str, (&str, Option<u64>)> = paths
        .iter()
        .filter_map(|(id, path)| {
            let record = tree.records.get(id).filter(|record| record.state == LocalState::Stub)?;
            let size = stub_json(&record.entry).ok().map(|json| json.len() as u64);
            Some((path.as_str(), (id.as_str(), size)))
        })
        .collect();
    let mut found = Scan { started_ns: fs.now_ns(), ..Scan::default() };
    let mut queue = vec![String::new()];
    while let Some(relative) = queue.pop() {
        // Invariant: a folder's stamp is taken before it is read, so a change made while or after
        // it is read shows as a newer stamp (see `CleanStamps::of` for the granularity margin).
        match fs.metadata(&relative) {
            Ok(Some(meta)) if meta.kind == Kind::Dir => found.dir_mtimes.insert(relative.clone(), meta.stamp.mtime_ns),
            // Removed (or replaced by a file) while being read: it is simply not there.
            Ok(_) => continue,
            Err(error) => return Err(error).with_context(|| format!("cannot read /{relative}")),
        };
        let entries = match fs.read_dir(&relative) {
            Ok(entries) => entries,
            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
            Err(error) => return Err(error).with_context(|| format!("cannot read /{relative}")),
        };
        for entry in entries {
            let Some(name) = entry.name.to_str().map(str::to_owned) else {
                let shown = join(&relative, &entry.name.to_string_lossy());
                found.skipped.push(Skipped::new(&shown, "its name is not valid UTF-8", "rename it"));
                continue;
            };
            if relative.is_empty() && name == META_DIR {
                continue;
            }
            let path = join(&relative, &name);
            match entry.kind {
                Kind::Dir => {
                    found.dirs.insert(path.clone());
                    queue.push(path);
                }
                // A stub is a view of the store: only its presence matters, so it is not read,
                // unless its size is not what the engine wrote and it is no stub of the engine's
                // at all (another record's, left stale by a power cut, is still no file of the
                // user's: it is written again, never sent up).
                Kind::File
                    if stubs.get(path.as_str()).is_some_and(|(_, size)| {
                        *size == entry.stamp.map(|stamp| stamp.size) || still_stub(fs, &path, None)
                    }) =>
                {
                    found.files.insert(path, LocalFile { stamp: FileStamp::default(), hash: None });
                }
                Kind::File => {
                    let Some(stamp) = entry.stamp else { continue };
                    if let Some((id, _)) = stubs.get(path.as_str()) {
                        // Written over by the user: theirs now.
                        found.replaced_stubs.insert(path.clone(), (*id).to_owned());
                    } else if name.ends_with(STUB_SUFFIX)
                        && let Some(id) = stub_of(fs, &path)
                    {
                        found.stray_stubs.insert(path.clone(), id);
                        found.files.insert(path, LocalFile { stamp, hash: None });
                        continue;
                    }
                    let unchanged =
                        known.get(path.as_str()).is_some_and(|recorded| recorded.is_some_and(|r| r.same_file(&stamp)));
                    let hash = if unchanged {
                        None
                    } else {
                        match hash_file(fs, &path) {
                            Ok((hash, _)) => Some(hash),
                            // Gone while it was read: not there.
                            Err(error) if error.kind() == std::io::ErrorKind::NotFound => continue,
                            // Kept as found, unhashed: neither uploaded nor taken for deleted.
                            Err(error) => {
                                let reason = format!("cannot be read: {error}");
                                found.skipped.push(Skipped::new(&path, &reason, "check its permissions"));
                                None
                            }
                        }
                    };
                    found.files.insert(path, LocalFile { stamp, hash });
                }
                Kind::Other => {}
            }
        }
    }
    Ok(found)
}
