//! Executing a pull plan: the store's changes placed in the device's directory.
//!
//! An action that fails for one entry (a name the file system refuses, a folder made read-only,
//! a file that appeared where a download was to land) is reported and left for the next sync;
//! the rest goes on. Whatever lies in a folder whose own action failed waits with it.

use super::{Device, Report};
use crate::error::{SyncError, SyncResult};
use crate::fs::{LocalFs, TempFile};
use crate::index::Index;
use crate::naming::store_path;
use crate::plan::{FileStamp, LocalState, Pull, PullPlan, Skipped, Tree};
use crate::remote::{PayloadSink, Remote};
use cpm_proto::Entry;
use futures_util::StreamExt;
use std::collections::BTreeSet;
use std::io::Read as _;

/// Payloads up to this size travel in bundles, many to a request.
const BUNDLED_UP_TO: u64 = 1 << 20;
/// The most payload bytes one bundle asks for: enough that request costs fade, few enough that
/// bundles in flight together keep both sides busy.
const BUNDLE_BYTES: u64 = 4 << 20;
/// Downloads in flight at once: enough to hide round trips, few enough to stay gentle.
const CONCURRENT_DOWNLOADS: usize = 8;

/// A download: the record, where it lands, and what the store said of it.
struct Job {
    action: usize,
    id: String,
    path: String,
    entry: Entry,
    /// The stamp of the record's own older version there, which gives way.
    replacing: Option<FileStamp>,
}

/// Where a file giving way to another waits until that one is in place, with a note of where it
/// came from: after a crash the next sync puts it back.
const ASIDE_DIR: &str = ".cpm/aside";

/// What became of a file that was to give way.
enum Retired {
    /// Nothing was there.
    Gone,
    /// Moved out of the way, to be removed once its successor is placed.
    Aside(String),
    /// It changed since it was last seen: it is the user's now, and stays where it was.
    Changed,
}

/// Groups downloads into requests: small payloads many to a bundle, the rest one each.
fn bundles(jobs: Vec<Job>) -> Vec<Vec<Job>> {
    let mut groups = Vec::new();
    let mut bundle = Vec::new();
    let mut bytes = 0;
    for job in jobs {
        match job.entry.size.filter(|size| *size <= BUNDLED_UP_TO) {
            Some(size) => {
                if !bundle.is_empty() && (bytes + size > BUNDLE_BYTES || bundle.len() == cpm_proto::MAX_BUNDLE_OBJECTS)
                {
                    groups.push(std::mem::take(&mut bundle));
                    bytes = 0;
                }
                bytes += size;
                bundle.push(job);
            }
            None => groups.push(vec![job]),
        }
    }
    if !bundle.is_empty() {
        groups.push(bundle);
    }
    groups
}

/// Fault injection for crash tests: with `CPM_FAULT_AFTER_ACTIONS=N`, the process aborts right
/// after applying its N-th action (push or pull), as a kill -9 at that point would leave it.
pub(super) fn applied() {
    static REMAINING: std::sync::OnceLock<std::sync::atomic::AtomicI64> = std::sync::OnceLock::new();
    let remaining = REMAINING.get_or_init(|| {
        let after = std::env::var("CPM_FAULT_AFTER_ACTIONS").ok().and_then(|raw| raw.parse().ok()).unwrap_or(-1);
        std::sync::atomic::AtomicI64::new(after)
    });
    if remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
        eprintln!("cpm: fault injected (CPM_FAULT_AFTER_ACTIONS): aborting");
        std::process::abort();
    }
}

fn unplaced(path: &str, error: &std::io::Error) -> Skipped {
    let fix = match error.kind() {
        std::io::ErrorKind::InvalidFilename => {
            "its path is too long for this file system: shorten a folder's name on the way in the store"
        }
        std::io::ErrorKind::AlreadyExists => "the next sync tries again",
        _ => "check this folder's permissions and free space; the next sync tries again",
    };
    Skipped::new(&store_path(path), &format!("cannot be placed here: {error}"), fix)
}

/// True when `path` is `folder` or lies below it.
fn under(path: &str, folder: &str) -> bool {
    path == folder || path.strip_prefix(folder).is_some_and(|rest| rest.starts_with('/'))
}

/// The paths an action touches here.
fn paths(action: &Pull) -> Vec<&str> {
    match action {
        Pull::MakeDir { path }
        | Pull::Download { path, .. }
        | Pull::WriteStub { path, .. }
        | Pull::RemoveFile { path, .. }
        | Pull::RemoveDir { path } => vec![path],
        Pull::Rename { from, to, .. } | Pull::SetAside { from, to } => vec![from, to],
    }
}

/// Writes downloaded payloads into temporary files and places each once its hash is checked.
struct Placer<'a, F: LocalFs> {
    fs: &'a F,
    jobs: &'a [Job],
    current: Option<Receiving<F::Temp>>,
    /// For each job: its size and stamp here, or why it is not here.
    results: Vec<Option<Result<(u64, FileStamp), String>>>,
    /// The hash of the last payload that arrived whole.
    hash: Option<String>,
    naming: Naming<'a>,
}

struct Receiving<T> {
    job: usize,
    temp: Option<T>,
    hasher: blake3::Hasher,
    expected: String,
    size: u64,
    failure: Option<String>,
}

impl<F: LocalFs> PayloadSink for Placer<'_, F> {
    fn begin(&mut self, index: usize, hash: &str, size: u64) {
        let Some(job) = self.jobs.get(index) else { return };
        // A field filter may leave out the hash: the store's word is checked then.
        let expected = job.entry.hash.clone().unwrap_or_else(|| hash.to_owned());
        let (temp, failure) = match self.fs.temp_file() {
            Ok(temp) => (Some(temp), None),
            Err(error) => (None, Some(format!("cannot be written here: {error}"))),
        };
        self.current = Some(Receiving { job: index, temp, hasher: blake3::Hasher::new(), expected, size, failure });
    }

    fn write(&mut self, bytes: &[u8]) {
        let Some(receiving) = self.current.as_mut() else { return };
        receiving.hasher.update(bytes);
        if let Some(temp) = receiving.temp.as_mut()
            && let Err(error) = temp.write(bytes)
        {
            receiving.failure = Some(format!("cannot be written here: {error}"));
            receiving.temp = None;
        }
    }

    fn end(&mut self) {
        let Some(receiving) = self.current.take() else { return };
        let job = &self.jobs[receiving.job];
        let actual = receiving.hasher.finalize().to_hex().to_string();
        self.hash = Some(actual.clone());
        let result = match (receiving.failure, receiving.temp) {
            (Some(failure), _) => Err(failure),
            (None, _) if actual != receiving.expected => {
                Err(format!("the content received hashes to {actual}, not {}", receiving.expected))
            }
            (None, Some(temp)) => place(self.fs, temp, &job.path, job.entry.modified, job.replacing, self.naming)
                .map(|stamp| (receiving.size, stamp)),
            (None, None) => Err("cannot be written here".to_owned()),
        };
        if let Some(slot) = self.results.get_mut(receiving.job) {
            *slot = Some(result);
        }
    }
}

impl<R: Remote, F: LocalFs> Device<R, F> {
    fn naming(&self) -> Naming<'_> {
        Naming { device: &self.name, today: self.today() }
    }

    /// Puts back what a sync that died had set aside; called under the lock, before anything.
    pub(super) fn restore_asides(&self, index: &crate::index::Index) -> SyncResult<()> {
        let tree = std::cell::OnceCell::new();
        let tree = || tree.get_or_init(|| index.load().ok()).as_ref();
        let intents = std::cell::OnceCell::new();
        let placing = |path: &str| {
            intents
                .get_or_init(|| index.inflight().unwrap_or_default())
                .iter()
                .any(|(placed, _, hash)| placed == path && hash.is_some())
        };
        let known = Known {
            recorded_at: &|hash| {
                let tree = tree()?;
                let record = tree
                    .records
                    .values()
                    .find(|record| record.state == LocalState::File && record.hash.as_deref() == Some(hash))?;
                tree.path_of(&record.id)
            },
            superseded: &|path, hash| {
                placing(path)
                    && tree().is_some_and(|tree| {
                        tree.records.values().any(|record| {
                            record.hash.as_deref() == Some(hash) && tree.path_of(&record.id).as_deref() == Some(path)
                        })
                    })
            },
        };
        restore_asides(&self.fs, self.naming(), &known)
            .map_err(|error| SyncError::local("cannot put back what an interrupted sync set aside", error))
    }

    /// Removes the file at `path` if it still has `stamp` (as the engine read it); true when it
    /// went. One the user changed since stays.
    pub(super) fn remove_unchanged(&self, path: &str, stamp: FileStamp) -> std::io::Result<bool> {
        let fs = &self.fs;
        match retire(fs, path, |aside| has_stamp(fs, aside, stamp), self.naming())? {
            Retired::Aside(aside) => {
                remove_aside(fs, &aside);
                Ok(true)
            }
            Retired::Gone | Retired::Changed => Ok(false),
        }
    }

    /// Applies a pull plan's actions; returns those that failed for their entry alone.
    pub(super) async fn pull(
        &self,
        actions: &[Pull],
        tree: &mut Tree,
        changed: &mut BTreeSet<String>,
        report: &mut Report,
    ) -> SyncResult<Vec<(usize, Skipped)>> {
        let mut failed: Vec<(usize, Skipped)> = Vec::new();
        // Folders whose own action failed: nothing is placed in them this time.
        let mut blocked: Vec<String> = Vec::new();
        let mut next = 0;
        while next < actions.len() {
            let waits =
                |action: &Pull| paths(action).iter().any(|path| blocked.iter().any(|folder| under(path, folder)));
            if waits(&actions[next]) {
                let path = paths(&actions[next])[0].to_owned();
                failed.push((
                    next,
                    Skipped::new(&store_path(&path), "its folder could not be made here", "see the folder's own entry"),
                ));
                next += 1;
                continue;
            }
            // A run of downloads goes out together: each has its own target, and the folders
            // they land in were made by the actions before them.
            let run = actions[next..]
                .iter()
                .take_while(|action| matches!(action, Pull::Download { .. }) && !waits(action))
                .count();
            if run > 0 {
                failed.extend(self.download_all(&actions[next..next + run], next, tree, changed, report).await?);
                next += run;
                continue;
            }
            let stubs = actions[next..]
                .iter()
                .take_while(|action| matches!(action, Pull::WriteStub { .. }) && !waits(action))
                .count();
            if stubs > 0 {
                failed.extend(self.write_stubs(&actions[next..next + stubs], next, tree, report));
                next += stubs;
                continue;
            }
            if let Err(error) = self.pull_one(&actions[next], tree, report) {
                let action = &actions[next];
                let folder = match action {
                    Pull::MakeDir { path } => Some(path),
                    Pull::Rename { id, to, .. }
                        if tree.records.get(id).is_some_and(|r| r.state == LocalState::Folder) =>
                    {
                        Some(to)
                    }
                    _ => None,
                };
                blocked.extend(folder.cloned());
                failed.push((next, unplaced(paths(action)[0], &error)));
            }
            self.progress.done(0);
            applied();
            next += 1;
        }
        Ok(failed)
    }

    /// Writes a run of stubs on a few threads: each is its own small file.
    fn write_stubs(&self, writes: &[Pull], first: usize, tree: &Tree, report: &mut Report) -> Vec<(usize, Skipped)> {
        let jobs: Vec<(usize, &str, &Entry, bool)> = writes
            .iter()
            .enumerate()
            .filter_map(|(at, action)| match action {
                Pull::WriteStub { id, path, replace } => {
                    Some((first + at, path.as_str(), &tree.records.get(id)?.entry, *replace))
                }
                _ => None,
            })
            .collect();
        let (fs, naming) = (&self.fs, self.naming());
        fn write<'a>(
            fs: &impl LocalFs,
            naming: Naming<'_>,
            part: &[(usize, &'a str, &Entry, bool)],
        ) -> Vec<(usize, &'a str, std::io::Result<()>)> {
            part.iter()
                .map(|(at, path, entry, replace)| (*at, *path, write_stub(fs, path, entry, replace.then_some(naming))))
                .collect()
        }
        let threads = fs.threads();
        let outcomes: Vec<(usize, &str, std::io::Result<()>)> = if threads <= 1 || jobs.len() < 2 {
            write(fs, naming, &jobs)
        } else {
            let chunk = jobs.len().div_ceil(threads).max(1);
            std::thread::scope(|scope| {
                let workers: Vec<_> =
                    jobs.chunks(chunk).map(|part| scope.spawn(move || write(fs, naming, part))).collect();
                // A writer that panicked takes the sync down with it, as it would have alone.
                workers
                    .into_iter()
                    .flat_map(|worker| worker.join().unwrap_or_else(|panic| std::panic::resume_unwind(panic)))
                    .collect()
            })
        };
        let mut failed = Vec::new();
        for (at, path, outcome) in outcomes {
            match outcome {
                Ok(()) => report.stubs_written += 1,
                Err(error) => failed.push((at, unplaced(path, &error))),
            }
            self.progress.done(0);
            applied();
        }
        failed
    }

    async fn download_all(
        &self,
        downloads: &[Pull],
        first: usize,
        tree: &mut Tree,
        changed: &mut BTreeSet<String>,
        report: &mut Report,
    ) -> SyncResult<Vec<(usize, Skipped)>> {
        let mut jobs = Vec::with_capacity(downloads.len());
        for (at, action) in downloads.iter().enumerate() {
            if let Pull::Download { id, path, replacing } = action {
                let Some(record) = tree.records.get(id) else { continue };
                let (id, path, entry) = (id.clone(), path.clone(), record.entry.clone());
                jobs.push(Job { action: first + at, id, path, entry, replacing: *replacing });
            }
        }
        let mut done = futures_util::stream::iter(bundles(jobs))
            .map(|bundle| async move {
                let entries: Vec<&Entry> = bundle.iter().map(|job| &job.entry).collect();
                let (results, naming) = (vec![None; bundle.len()], self.naming());
                let mut placer = Placer { fs: &self.fs, jobs: &bundle, current: None, results, hash: None, naming };
                let fetched = self.remote.fetch(&entries, &mut placer).await;
                let results = placer.results;
                (bundle, results, fetched)
            })
            .buffer_unordered(CONCURRENT_DOWNLOADS);
        let mut failed = Vec::new();
        while let Some((bundle, results, fetched)) = done.next().await {
            if let Err(error) = &fetched
                && (error.is_transient() || error.is_unauthorized())
            {
                return Err(self.remote_error(error.clone()));
            }
            for (job, result) in bundle.into_iter().zip(results) {
                match result {
                    Some(Ok((bytes, stamp))) => {
                        report.downloaded += 1;
                        report.bytes_downloaded += bytes;
                        if let Some(record) = tree.records.get_mut(&job.id) {
                            record.local = Some(stamp);
                        }
                        changed.insert(job.id);
                        self.progress.done(bytes);
                        applied();
                    }
                    Some(Err(reason)) => failed
                        .push((job.action, Skipped::new(&store_path(&job.path), &reason, "the next sync tries again"))),
                    None => {
                        let reason = match &fetched {
                            Err(error) => error.to_string(),
                            Ok(()) => "the store did not send it".to_owned(),
                        };
                        failed.push((
                            job.action,
                            Skipped::new(&store_path(&job.path), &reason, "the next sync tries again"),
                        ));
                    }
                }
            }
        }
        Ok(failed)
    }

    fn pull_one(&self, action: &Pull, tree: &Tree, report: &mut Report) -> std::io::Result<()> {
        match action {
            Pull::MakeDir { path } => self.fs.create_dir_all(path)?,
            Pull::Rename { from, to, .. } => {
                // Invariant: the device's directory itself is never moved.
                if from.is_empty() || to.is_empty() {
                    return Err(std::io::Error::other(
                        "a move of the device's own directory was planned; none was made",
                    ));
                }
                // Gone meanwhile: what follows (a download) puts the record's content there.
                if self.fs.metadata(from)?.is_some() {
                    if let Some((parent, _)) = to.rsplit_once('/') {
                        self.fs.create_dir_all(parent)?;
                    }
                    self.fs.rename_noreplace(from, to)?;
                    report.renamed += 1;
                }
            }
            // Downloads go through `download_all`, one or many.
            Pull::Download { .. } => {}
            Pull::WriteStub { id, path, replace } => {
                let entry = tree
                    .records
                    .get(id)
                    .map(|record| &record.entry)
                    .ok_or_else(|| std::io::Error::other("stub of an unknown record"))?;
                write_stub(&self.fs, path, entry, replace.then(|| self.naming()))?;
                report.stubs_written += 1;
            }
            Pull::SetAside { from, to } => {
                if self.fs.metadata(from)?.is_some() {
                    self.fs.rename_noreplace(from, to)?;
                    report.conflicts.push(store_path(to));
                }
            }
            Pull::RemoveFile { path, expected, id } => {
                let fs = &self.fs;
                let still_ours = |aside: &str| -> std::io::Result<bool> {
                    Ok(match expected {
                        Some(expected) => has_stamp(fs, aside, *expected)?,
                        // A stub the user wrote over since the scan is a file of hers now.
                        None => crate::scan::still_stub(fs, aside, None),
                    })
                };
                match retire(fs, path, still_ours, self.naming())? {
                    Retired::Aside(aside) => {
                        remove_aside(&self.fs, &aside);
                        report.removed += 1;
                    }
                    // Moved by the user since the scan, perhaps: the record stays, so that the
                    // next sync sends the move up rather than the file as a new one.
                    Retired::Gone if id.is_some() && expected.is_some() => {
                        return Err(std::io::Error::new(
                            std::io::ErrorKind::NotFound,
                            "it moved or went here meanwhile; the next sync sees where",
                        ));
                    }
                    Retired::Gone => {}
                    Retired::Changed => {
                        return Err(std::io::Error::other("it changed here since it was read; it stays, and goes up"));
                    }
                }
            }
            // Left in place when not empty: what remains is the user's, and goes up next.
            Pull::RemoveDir { path } => {
                let _ = self.fs.remove_dir(path);
            }
        }
        Ok(())
    }

    /// Downloads one payload to `path` (which must be free), checked against its hash.
    pub(super) async fn download_one(&self, entry: &Entry, path: &str) -> SyncResult<(u64, FileStamp, String)> {
        let jobs =
            [Job { action: 0, id: entry.id.clone(), path: path.to_owned(), entry: entry.clone(), replacing: None }];
        let naming = self.naming();
        let mut placer = Placer { fs: &self.fs, jobs: &jobs, current: None, results: vec![None], hash: None, naming };
        let fetched = self.remote.fetch(&[entry], &mut placer).await;
        let hash = placer.hash.take();
        match (placer.results.pop().flatten(), fetched) {
            (Some(Ok((bytes, stamp))), _) => Ok((bytes, stamp, hash.unwrap_or_default())),
            (Some(Err(reason)), _) => Err(SyncError::Invalid(format!("{}: {reason}", store_path(path)))),
            (None, Err(error)) => Err(self.remote_error(error)),
            (None, Ok(())) => Err(SyncError::Invalid(format!("the store did not send {}", store_path(path)))),
        }
    }

    /// Gives what could not be placed its old record back (or none, when it was new here), so
    /// the index describes the directory as it is.
    pub(super) fn keep_unplaced(
        &self,
        index: &Index,
        plan: &mut PullPlan,
        failed: &[(usize, Skipped)],
    ) -> SyncResult<()> {
        let old = index.load()?;
        let mut ids = BTreeSet::new();
        let mut new_paths: Option<crate::plan::HashMap<String, String>> = None;
        for (at, _) in failed {
            let id = match &plan.actions[*at] {
                Pull::Download { id, .. } | Pull::WriteStub { id, .. } | Pull::Rename { id, .. } => Some(id.clone()),
                Pull::MakeDir { path } => new_paths
                    .get_or_insert_with(|| plan.tree.paths().into_iter().map(|(id, path)| (path, id)).collect())
                    .get(path)
                    .cloned(),
                Pull::RemoveFile { id, .. } => id.clone(),
                Pull::SetAside { .. } | Pull::RemoveDir { .. } => None,
            };
            ids.extend(id);
        }
        for id in ids {
            match old.records.get(&id) {
                Some(record) => {
                    plan.tree.records.insert(id.clone(), record.clone());
                    // Its folders stay too, however the plan had them: the record's path is theirs.
                    let mut parent = record.parent_id.clone();
                    while let Some(folder) = parent.filter(|folder| !plan.tree.records.contains_key(folder)) {
                        let Some(kept) = old.records.get(&folder) else { break };
                        plan.tree.records.insert(folder.clone(), kept.clone());
                        plan.changed.remove(&folder);
                        plan.dropped.remove(&folder);
                        parent = kept.parent_id.clone();
                    }
                }
                None => {
                    plan.tree.records.remove(&id);
                }
            }
            plan.changed.remove(&id);
            plan.dropped.remove(&id);
        }
        Ok(())
    }
}

/// How a file put back beside its old place is named when that place is taken: the device and
/// the day, as for a conflict copy.
#[derive(Clone, Copy)]
pub(super) struct Naming<'a> {
    device: &'a str,
    today: jiff::civil::Date,
}

/// A free place in the aside folder, with a note of where its file comes from.
fn reserve_aside(fs: &impl LocalFs, from: &str) -> std::io::Result<String> {
    fs.create_dir_all(ASIDE_DIR)?;
    for attempt in 0u32.. {
        let aside = format!("{ASIDE_DIR}/{}-{attempt}", fs.now_ns());
        match fs.write_new(&format!("{aside}.path"), from.as_bytes()) {
            Ok(()) => return Ok(aside),
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => continue,
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::other("no free aside name"))
}

/// Removes a retired file and its note.
fn remove_aside(fs: &impl LocalFs, aside: &str) {
    let _ = fs.remove_file(aside);
    let _ = fs.remove_file(&format!("{aside}.path"));
}

/// Moves the file at `path` out of the way if, once out of the user's reach, it is still what
/// the engine saw there (`still_ours` tells, from where it was moved); a file that changed since
/// is the user's and stays.
fn retire(
    fs: &impl LocalFs,
    path: &str,
    still_ours: impl FnOnce(&str) -> std::io::Result<bool>,
    naming: Naming<'_>,
) -> std::io::Result<Retired> {
    if fs.metadata(path)?.is_none() {
        return Ok(Retired::Gone);
    }
    let aside = reserve_aside(fs, path)?;
    match fs.rename_noreplace(path, &aside) {
        Ok(()) => {}
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            remove_aside(fs, &aside);
            return Ok(Retired::Gone);
        }
        Err(error) => {
            remove_aside(fs, &aside);
            return Err(error);
        }
    }
    // Invariant: a file or stub is replaced or removed only once it is out of the user's reach
    // and still what the engine saw there; an edit made meanwhile goes back where it was.
    if still_ours(&aside)? {
        return Ok(Retired::Aside(aside));
    }
    put_back(fs, &aside, path, naming)?;
    Ok(Retired::Changed)
}

fn has_stamp(fs: &impl LocalFs, path: &str, expected: FileStamp) -> std::io::Result<bool> {
    Ok(fs.metadata(path)?.is_some_and(|meta| expected.same_file(&meta.stamp)))
}

/// Puts a file set aside back at `path`, or beside it when something else is there now.
fn put_back(fs: &impl LocalFs, aside: &str, path: &str, naming: Naming<'_>) -> std::io::Result<()> {
    let (mut folder, name) = crate::naming::split(path);
    let mut target = path.to_owned();
    let mut attempt = 0;
    let mut remade = false;
    while attempt < 100 {
        match fs.rename_noreplace(aside, &target) {
            Ok(()) => {
                let _ = fs.remove_file(&format!("{aside}.path"));
                return Ok(());
            }
            Err(error) if error.kind() == std::io::ErrorKind::AlreadyExists => {
                attempt += 1;
                let beside = crate::naming::conflict_name(name, naming.device, naming.today, attempt);
                target = crate::naming::join(folder, &beside);
            }
            // Its folder went meanwhile: it is made again; where that cannot be (a file took
            // its name), the file goes back at the top of the directory.
            Err(error) if error.kind() == std::io::ErrorKind::NotFound && !folder.is_empty() => {
                if remade || fs.create_dir_all(folder).is_err() {
                    folder = "";
                    target = name.to_owned();
                }
                remade = true;
            }
            Err(error) => return Err(error),
        }
    }
    Err(std::io::Error::other("no free name to put a file back"))
}

/// Places a downloaded payload at `path`; a recorded older version there gives way first (and is
/// put back if the new one cannot take its place).
fn place<F: LocalFs>(
    fs: &F,
    temp: F::Temp,
    path: &str,
    modified: Option<jiff::Timestamp>,
    replacing: Option<FileStamp>,
    naming: Naming<'_>,
) -> Result<FileStamp, String> {
    let unplaced = |error: std::io::Error| format!("cannot be placed here: {error}");
    let retired = match replacing {
        Some(expected) => retire(fs, path, |aside| has_stamp(fs, aside, expected), naming).map_err(unplaced)?,
        None => Retired::Gone,
    };
    if let Retired::Changed = retired {
        return Err("the version here changed since it was read; it stays, and the next sync sees a conflict".into());
    }
    match fs.place(temp, path, modified) {
        Ok(stamp) => {
            if let Retired::Aside(aside) = retired {
                remove_aside(fs, &aside);
            }
            Ok(stamp)
        }
        Err(error) => {
            if let Retired::Aside(aside) = retired {
                let _ = put_back(fs, &aside, path, naming);
            }
            Err(unplaced(error))
        }
    }
}

/// What the index knows of files an interrupted sync set aside.
struct Known<'a> {
    /// The path of the record whose recorded version has this hash.
    recorded_at: &'a dyn Fn(&str) -> Option<String>,
    /// True when the file at this path with this hash is the recorded version of a record an
    /// unfinished pull was placing a new version of.
    superseded: &'a dyn Fn(&str, &str) -> bool,
}

/// Puts back what a sync that died had set aside (called under the lock, before anything else).
///
/// A note whose data a power cut lost leaves the file's place unknown; the file set aside is
/// then the recorded version of a record (it was checked as such before anything else), which
/// goes back to that record's path. One no record claims stays where it is: nothing is lost.
/// The recorded version of a file a pull was replacing is superseded, and goes.
fn restore_asides(fs: &impl LocalFs, naming: Naming<'_>, known: &Known<'_>) -> std::io::Result<()> {
    let entries = match fs.read_dir(ASIDE_DIR) {
        Ok(entries) => entries,
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => return Ok(()),
        Err(error) => return Err(error),
    };
    for entry in entries {
        let Some(name) = entry.name.to_str() else { continue };
        let Some(aside) = name.strip_suffix(".path") else { continue };
        let aside = format!("{ASIDE_DIR}/{aside}");
        let note = format!("{aside}.path");
        let mut from = String::new();
        fs.open(&note)?.read_to_string(&mut from)?;
        if fs.metadata(&aside)?.is_none() {
            fs.remove_file(&note)?;
            continue;
        }
        let hash = crate::scan::hash_file(fs, &aside).ok().map(|(hash, _)| hash);
        tracing::debug!(aside, from, ?hash, "restoring what an interrupted sync set aside");
        if from.is_empty() {
            match hash.as_deref().and_then(known.recorded_at) {
                Some(path) => from = path,
                None => {
                    tracing::warn!(aside, "a file an interrupted sync set aside has no known place; kept in .cpm");
                    continue;
                }
            }
        }
        if hash.as_deref().is_some_and(|hash| (known.superseded)(&from, hash)) {
            fs.remove_file(&aside)?;
            fs.remove_file(&note)?;
            continue;
        }
        put_back(fs, &aside, &from, naming)?;
    }
    Ok(())
}

/// Writes a record's stub (its id, link and exactly the details the device keeps, as JSON) at
/// `path`; with `replace`, over what is there, if that is still one of the engine's stubs (or
/// the record's own content, which the store holds).
pub(super) fn write_stub(
    fs: &impl LocalFs,
    path: &str,
    entry: &Entry,
    replace: Option<Naming<'_>>,
) -> std::io::Result<()> {
    let json = crate::scan::stub_json(entry).map_err(std::io::Error::other)?;
    if let Some(naming) = replace {
        // Invariant: what the user wrote over a stub is never written over: the file there is
        // moved out of her reach first, and checked.
        let ours = |aside: &str| {
            Ok(crate::scan::still_stub(fs, aside, None)
                || entry
                    .hash
                    .as_deref()
                    .is_some_and(|hash| crate::scan::hash_file(fs, aside).is_ok_and(|(found, _)| found == hash)))
        };
        match retire(fs, path, ours, naming)? {
            Retired::Aside(aside) => remove_aside(fs, &aside),
            Retired::Gone => {}
            Retired::Changed => {
                return Err(std::io::Error::other("it changed here since it was read; it stays, and goes up"));
            }
        }
    }
    match fs.write_new(path, &json) {
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some((parent, _)) = path.rsplit_once('/') {
                fs.create_dir_all(parent)?;
            }
            fs.write_new(path, &json)
        }
        other => other,
    }
}

#[cfg(test)]
mod tests {
    #[test]
    fn a_path_too_long_for_the_file_system_is_told_as_such() {
        let too_long = super::unplaced("a/b", &std::io::Error::from_raw_os_error(36));
        assert!(too_long.fix.contains("path is too long"), "{too_long:?}");
        let denied = super::unplaced("a/b", &std::io::Error::from_raw_os_error(13));
        assert!(denied.fix.contains("permissions"), "{denied:?}");
    }
}
