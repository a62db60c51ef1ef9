//! The real file system under a device directory.

use crate::fs::{DirEntry, Kind, LocalFs, Locked, Meta, TempFile};
use crate::naming::META_DIR;
use crate::plan::FileStamp;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{SystemTime, UNIX_EPOCH};

/// File systems stamp with a clock that advances in ticks (a jiffy, at most 10 ms on Linux): a
/// stamp closer than this to the moment it was read could be shared by a change made just after.
const STAMP_MARGIN: std::time::Duration = std::time::Duration::from_millis(20);
const TEMP_DIR: &str = "tmp";
const LOCK_FILE: &str = "lock";

fn nanos(time: SystemTime) -> i64 {
    time.duration_since(UNIX_EPOCH).map_or(0, |since| i64::try_from(since.as_nanos()).unwrap_or(i64::MAX))
}

fn stamp(metadata: &std::fs::Metadata) -> FileStamp {
    use std::os::unix::fs::MetadataExt as _;
    FileStamp { size: metadata.len(), mtime_ns: metadata.modified().map_or(0, nanos), ino: metadata.ino() }
}

fn kind(file_type: std::fs::FileType) -> Kind {
    if file_type.is_file() {
        Kind::File
    } else if file_type.is_dir() {
        Kind::Dir
    } else {
        Kind::Other
    }
}

/// A device directory on disk, with what its file system can tell apart.
pub struct DiskFs {
    root: PathBuf,
    temp: PathBuf,
    case_insensitive: bool,
    fine_mtime: bool,
    temps: AtomicU64,
    own: OwnWrites,
}

/// The paths the engine itself changed lately, so that a watcher of the directory can tell its
/// writes from the user's.
#[derive(Clone, Default)]
pub struct OwnWrites(std::sync::Arc<std::sync::Mutex<Remembered>>);

#[derive(Default)]
struct Remembered {
    paths: std::collections::HashMap<PathBuf, std::time::Instant>,
    /// How many paths are kept before the old ones are forgotten: twice what was left at the
    /// last forgetting, so that a pull writing 100,000 stubs forgets now and then, not at every
    /// write.
    limit: usize,
}

/// How long a change the engine made is taken for its own when the watcher hears of it.
const OWN_WRITE_MEMORY: std::time::Duration = std::time::Duration::from_secs(5);
const OWN_WRITES_KEPT: usize = 4096;

impl OwnWrites {
    fn note(&self, path: PathBuf) {
        let now = std::time::Instant::now();
        let mut remembered = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if remembered.paths.len() > remembered.limit.max(OWN_WRITES_KEPT) {
            remembered.paths.retain(|_, at| now.duration_since(*at) < OWN_WRITE_MEMORY);
            remembered.limit = remembered.paths.len() * 2;
        }
        remembered.paths.insert(path, now);
    }

    /// True when the engine changed `path` lately.
    pub fn made(&self, path: &Path) -> bool {
        let remembered = self.0.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        remembered.paths.get(path).is_some_and(|at| at.elapsed() < OWN_WRITE_MEMORY)
    }
}

pub struct DiskTemp {
    file: std::fs::File,
    path: PathBuf,
}

impl TempFile for DiskTemp {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        self.file.write_all(bytes)
    }

    fn sync(&mut self) -> io::Result<()> {
        self.file.sync_all()
    }
}

impl DiskFs {
    /// The directory at `root`, whose `.cpm/` folder exists; finds out (once) whether its file
    /// system folds case and keeps fractions of a second.
    pub fn open(root: &Path) -> io::Result<Self> {
        let temp = root.join(META_DIR).join(TEMP_DIR);
        std::fs::create_dir_all(&temp)?;
        // Each process probes with its own name, outside the temporary folder a running sync
        // clears: two opening the directory at once (an agent and a manual sync) must not
        // remove each other's probe.
        let pid = std::process::id();
        let meta = root.join(META_DIR);
        let probe = meta.join(format!("Case-Probe-{pid}"));
        let file = std::fs::File::create(&probe)?;
        let fine_mtime = file.metadata()?.modified().map_or(0, nanos) % 1_000_000_000 != 0;
        drop(file);
        let case_insensitive = meta.join(format!("case-probe-{pid}")).exists();
        std::fs::remove_file(&probe)?;
        Ok(Self {
            root: root.to_owned(),
            temp,
            case_insensitive,
            fine_mtime,
            temps: AtomicU64::new(0),
            own: OwnWrites::default(),
        })
    }

    pub fn root(&self) -> &Path {
        &self.root
    }

    /// What the engine wrote lately, for a watcher of the directory.
    pub fn own_writes(&self) -> OwnWrites {
        self.own.clone()
    }

    fn at(&self, relative: &str) -> PathBuf {
        if relative.is_empty() { self.root.clone() } else { self.root.join(relative) }
    }

    /// The absolute path of `relative`, noted as the engine's own change.
    fn changing(&self, relative: &str) -> PathBuf {
        let path = self.at(relative);
        self.own.note(path.clone());
        path
    }
}

/// Renames `from` to `to` unless `to` exists, atomically where the kernel can.
fn rename_noreplace(from: &Path, to: &Path) -> io::Result<()> {
    #[cfg(target_os = "linux")]
    {
        use std::ffi::CString;
        use std::os::unix::ffi::OsStrExt;
        let (source, target) = (CString::new(from.as_os_str().as_bytes())?, CString::new(to.as_os_str().as_bytes())?);
        // SAFETY: both strings are NUL-terminated and outlive the call.
        let done = unsafe {
            libc::renameat2(libc::AT_FDCWD, source.as_ptr(), libc::AT_FDCWD, target.as_ptr(), libc::RENAME_NOREPLACE)
        };
        if done == 0 {
            return Ok(());
        }
        let error = io::Error::last_os_error();
        // File systems without RENAME_NOREPLACE fall back below; every other failure is final.
        if !matches!(error.raw_os_error(), Some(libc::EINVAL | libc::ENOSYS | libc::ENOTSUP)) {
            return Err(error);
        }
    }
    if std::fs::symlink_metadata(from)?.is_dir() {
        if std::fs::symlink_metadata(to).is_ok() {
            return Err(io::Error::new(io::ErrorKind::AlreadyExists, format!("{} exists", to.display())));
        }
        return std::fs::rename(from, to);
    }
    // A hard link fails when the target exists: the file is never replaced.
    std::fs::hard_link(from, to)?;
    std::fs::remove_file(from)
}

impl LocalFs for DiskFs {
    type Temp = DiskTemp;

    fn metadata(&self, path: &str) -> io::Result<Option<Meta>> {
        match std::fs::symlink_metadata(self.at(path)) {
            Ok(metadata) => Ok(Some(Meta { kind: kind(metadata.file_type()), stamp: stamp(&metadata) })),
            Err(error) if error.kind() == io::ErrorKind::NotFound => Ok(None),
            Err(error) => Err(error),
        }
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        let mut entries = Vec::new();
        for entry in std::fs::read_dir(self.at(path))? {
            let entry = entry?;
            let kind = kind(entry.file_type()?);
            let stamp = match kind {
                Kind::File => match entry.metadata() {
                    Ok(metadata) => Some(stamp(&metadata)),
                    // Removed while the folder was read: it is simply not there.
                    Err(error) if error.kind() == io::ErrorKind::NotFound => continue,
                    Err(error) => return Err(error),
                },
                _ => None,
            };
            entries.push(DirEntry { name: entry.file_name(), kind, stamp });
        }
        Ok(entries)
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn Read + Send>> {
        Ok(Box::new(std::fs::File::open(self.at(path))?))
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let mut folder = path;
        while !folder.is_empty() {
            self.own.note(self.at(folder));
            folder = crate::naming::split(folder).0;
        }
        std::fs::create_dir_all(self.at(path))
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        std::fs::remove_file(self.changing(path))
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        std::fs::remove_dir(self.changing(path))
    }

    fn rename_noreplace(&self, from: &str, to: &str) -> io::Result<()> {
        rename_noreplace(&self.changing(from), &self.changing(to))
    }

    fn temp_file(&self) -> io::Result<DiskTemp> {
        let number = self.temps.fetch_add(1, Ordering::Relaxed);
        let path = self.temp.join(format!("{}-{number}", std::process::id()));
        let file = std::fs::OpenOptions::new().write(true).create_new(true).open(&path)?;
        Ok(DiskTemp { file, path })
    }

    fn place(&self, temp: DiskTemp, to: &str, modified: Option<jiff::Timestamp>) -> io::Result<FileStamp> {
        if let Some(modified) = modified {
            temp.file.set_modified(SystemTime::from(modified))?;
        }
        let placed = stamp(&temp.file.metadata()?);
        drop(temp.file);
        match rename_noreplace(&temp.path, &self.changing(to)) {
            Ok(()) => Ok(placed),
            Err(error) => {
                let _ = std::fs::remove_file(&temp.path);
                Err(error)
            }
        }
    }

    fn clear_temp(&self) -> io::Result<()> {
        for entry in std::fs::read_dir(&self.temp)? {
            match std::fs::remove_file(entry?.path()) {
                Err(error) if error.kind() != io::ErrorKind::NotFound => return Err(error),
                _ => {}
            }
        }
        Ok(())
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        std::fs::OpenOptions::new().write(true).create_new(true).open(self.changing(path))?.write_all(bytes)
    }

    fn sync_all(&self) -> io::Result<()> {
        sync_filesystem(&self.root)
    }

    fn try_lock(&self) -> io::Result<Locked> {
        let path = self.root.join(META_DIR).join(LOCK_FILE);
        let mut file = std::fs::OpenOptions::new().read(true).write(true).create(true).truncate(false).open(&path)?;
        if !flock_exclusive(&file)? {
            let mut text = String::new();
            let _ = file.read_to_string(&mut text);
            return Ok(Locked::Busy { pid: text.trim().parse().ok() });
        }
        file.set_len(0)?;
        write!(file, "{}", std::process::id())?;
        Ok(Locked::Held(Box::new(file)))
    }

    fn index_dir(&self) -> PathBuf {
        self.root.join(META_DIR)
    }

    fn boot_id(&self) -> Option<String> {
        std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
    }

    fn now_ns(&self) -> i64 {
        nanos(SystemTime::now())
    }

    fn stamp_margin(&self) -> std::time::Duration {
        STAMP_MARGIN
    }

    fn case_insensitive(&self) -> bool {
        self.case_insensitive
    }

    fn fine_mtime(&self) -> bool {
        self.fine_mtime
    }

    fn threads(&self) -> usize {
        std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8)
    }
}

/// Takes an exclusive advisory lock on `file` without waiting; false when another holds it. The
/// lock goes with the process: a killed sync leaves none behind.
#[cfg(unix)]
fn flock_exclusive(file: &std::fs::File) -> io::Result<bool> {
    use std::os::fd::AsRawFd;
    // SAFETY: flock only reads the descriptor, which `file` keeps open for the call.
    if unsafe { libc::flock(file.as_raw_fd(), libc::LOCK_EX | libc::LOCK_NB) } == 0 {
        return Ok(true);
    }
    let error = io::Error::last_os_error();
    if error.raw_os_error() == Some(libc::EWOULDBLOCK) { Ok(false) } else { Err(error) }
}

#[cfg(not(unix))]
fn flock_exclusive(_file: &std::fs::File) -> io::Result<bool> {
    Ok(true)
}

/// Flushes the device's file system: one call instead of an fsync per file.
#[cfg(target_os = "linux")]
fn sync_filesystem(root: &Path) -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(root)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(io::Error::last_os_error());
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_root: &Path) -> io::Result<()> {
    // Without syncfs, sync(2) flushes every file system: the same guarantee, more work.
    let status = std::process::Command::new("sync").status()?;
    if status.success() { Ok(()) } else { Err(io::Error::other("cannot flush the file systems")) }
}
