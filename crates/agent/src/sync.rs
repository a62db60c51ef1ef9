//! One sync of a device with its store: gather the inputs, run the planner, execute its plans.
//!
//! Order: read the store's changes (changing nothing), push the device's own changes, pull the
//! store's, then push what the pull set aside. The pull's index updates and the new cursor
//! commit in one transaction after its files are in place; every step can be replayed.

use crate::index::Index;
use crate::naming::{META_DIR, STUB_SUFFIX, conflict_name, is_stub, join, split, store_path};
use crate::plan::{LocalState, Pull, Push, Record, Scan, Tree, plan_pull, plan_push};
use crate::scan::{CleanStamps, now_ns, scan, stamp};
use anyhow::{Context, Result, anyhow, bail};
use cpm_client::{Client, ClientError};
use cpm_core::profile::{ContentPolicy, Holding};
use cpm_core::{EntryKind, ObjectKind};
use cpm_proto::{Change, CreateObjectRequest, Entry, MoveRequest};
use futures_util::StreamExt;
use serde::Serialize;
use std::collections::BTreeSet;
use std::path::{Path, PathBuf};

const PAGE: u32 = 1000;
/// Payloads up to this size travel in bundles, many to a request.
const BUNDLED_UP_TO: u64 = 1 << 20;
/// The most payload bytes one bundle asks for: enough that request costs fade, few enough that
/// bundles in flight together keep both sides busy.
const BUNDLE_BYTES: u64 = 4 << 20;

/// Groups downloads into requests: small payloads many to a bundle, the rest one each.
fn bundles(jobs: Vec<(String, String, Entry)>) -> Vec<Vec<(String, String, Entry)>> {
    let mut groups = Vec::new();
    let mut bundle = Vec::new();
    let mut bytes = 0;
    for job in jobs {
        match job.2.size.filter(|size| *size <= BUNDLED_UP_TO) {
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

/// Downloads in flight at once: enough to hide round trips, few enough to stay gentle.
const CONCURRENT_DOWNLOADS: usize = 8;

/// Fault injection for crash tests: with `CPM_FAULT_AFTER_ACTIONS=N`, the process aborts right
/// after applying its N-th action (push or pull), as a kill -9 at that point would leave it.
struct Faults {
    remaining: std::sync::atomic::AtomicI64,
}

impl Faults {
    fn from_env() -> Self {
        let after = std::env::var("CPM_FAULT_AFTER_ACTIONS").ok().and_then(|raw| raw.parse().ok()).unwrap_or(-1);
        Self { remaining: std::sync::atomic::AtomicI64::new(after) }
    }

    fn applied(&self) {
        if self.remaining.fetch_sub(1, std::sync::atomic::Ordering::SeqCst) == 1 {
            eprintln!("cpm: fault injected (CPM_FAULT_AFTER_ACTIONS): aborting");
            std::process::abort();
        }
    }
}

fn faults() -> &'static Faults {
    static FAULTS: std::sync::OnceLock<Faults> = std::sync::OnceLock::new();
    FAULTS.get_or_init(Faults::from_env)
}

/// Hears how far a sync has got: what it plans, then each action done with its bytes.
pub trait Progress: Send + Sync {
    fn planned(&self, actions: u64, bytes: u64);
    fn done(&self, bytes: u64);
}

/// Progress nobody watches.
pub struct Silent;

impl Progress for Silent {
    fn planned(&self, _actions: u64, _bytes: u64) {}
    fn done(&self, _bytes: u64) {}
}

/// Times the phases of a sync, logged at debug level (`CPM_LOG=debug cpm sync`).
struct Phases {
    last: std::time::Instant,
}

impl Phases {
    fn start() -> Self {
        Self { last: std::time::Instant::now() }
    }

    fn done(&mut self, phase: &str) {
        let now = std::time::Instant::now();
        tracing::debug!(phase, ms = format!("{:.1}", (now - self.last).as_secs_f64() * 1000.0), "sync phase");
        self.last = now;
    }
}

/// A device directory and the client that speaks for it.
pub struct Device {
    pub root: PathBuf,
    pub name: String,
    pub client: Client,
    pub progress: Box<dyn Progress>,
    /// Dates conflict copies and the last sync; file-system stamps are compared with the real
    /// clock, whatever this one says.
    pub clock: std::sync::Arc<dyn cpm_core::Clock>,
}

/// What a sync did.
#[derive(Debug, Clone, Default, Serialize)]
pub struct Report {
    pub cursor: i64,
    /// The device re-read its whole view (first sync, new profile, or an expired cursor).
    pub full: bool,
    pub uploaded: u64,
    pub bytes_uploaded: u64,
    pub moved_up: u64,
    pub deleted_up: u64,
    pub folders_up: u64,
    pub downloaded: u64,
    pub bytes_downloaded: u64,
    pub stubs_written: u64,
    pub renamed: u64,
    pub removed: u64,
    pub conflicts: Vec<String>,
    #[serde(skip)]
    deleted_ids: std::collections::HashSet<String>,
}

impl Report {
    /// What the sync did, as counts with the words that tell them.
    fn counts(&self) -> [(u64, &'static str); 8] {
        [
            (self.uploaded, "uploaded"),
            (self.moved_up, "moved in the store"),
            (self.deleted_up, "deleted in the store"),
            (self.folders_up, "folders created in the store"),
            (self.downloaded, "downloaded"),
            (self.stubs_written, "stubs written"),
            (self.renamed, "moved here"),
            (self.removed, "removed here"),
        ]
    }

    /// True when the sync changed nothing, here or in the store.
    pub fn is_quiet(&self) -> bool {
        self.counts().iter().all(|(count, _)| *count == 0)
    }

    pub fn summary(&self) -> String {
        let parts: Vec<String> = self
            .counts()
            .into_iter()
            .filter(|(count, _)| *count > 0)
            .map(|(count, what)| format!("{count} {what}"))
            .collect();
        let what = if parts.is_empty() { "up to date".to_owned() } else { parts.join(", ") };
        let conflicts = if self.conflicts.is_empty() {
            String::new()
        } else {
            format!("; {} conflict copies: {}", self.conflicts.len(), self.conflicts.join(", "))
        };
        format!(
            "{what} (cursor {}, {} bytes up, {} bytes down{}){conflicts}",
            self.cursor,
            self.bytes_uploaded,
            self.bytes_downloaded,
            if self.full { ", full reconcile" } else { "" }
        )
    }
}

fn is_code(error: &ClientError, code: &str) -> bool {
    error.code() == Some(code)
}

impl Device {
    /// The date on this device, for the names of conflict copies.
    fn today(&self) -> jiff::civil::Date {
        self.clock.now().to_zoned(jiff::tz::TimeZone::system()).date()
    }

    fn meta_dir(&self) -> PathBuf {
        self.root.join(META_DIR)
    }

    fn local(&self, relative: &str) -> PathBuf {
        self.root.join(relative)
    }

    /// The store's changes since `since`, every page; `None` when the cursor has expired.
    async fn changes_since(&self, since: i64) -> Result<Option<(Vec<Change>, i64)>> {
        let mut changes = Vec::new();
        let mut cursor = since;
        loop {
            let page = match self.client.sync_changes(cursor, PAGE).await {
                Ok(page) => page,
                Err(error) if is_code(&error, "resync_required") => return Ok(None),
                Err(error) => return Err(error.into()),
            };
            changes.extend(page.changes);
            cursor = page.cursor;
            if !page.has_more {
                return Ok(Some((changes, cursor)));
            }
        }
    }

    pub async fn sync(&self) -> Result<Report> {
        let mut phases = Phases::start();
        let mut index = Index::open(&self.meta_dir())?;
        let profile = self.client.profile().await?;
        let content = Holding {
            content: profile.profile.content,
            max_download: profile.profile.max_download_bytes().map_err(anyhow::Error::msg)?,
        };
        // What the device holds depends on the profile's view, not on its triggers.
        let view = profile.profile.view_key();
        // A new profile re-scopes the device: it reads its whole view again.
        let rescoped = index.meta("profile_view")?.as_deref() != Some(view.as_str());
        // Stubs and folders written without a flush may have been lost to a restart since: the
        // device then reads its whole view again and writes back whatever is missing.
        let boot = boot_id();
        let unflushed_before = index.meta(UNFLUSHED_BOOT)?.unwrap_or_default();
        let restarted = !unflushed_before.is_empty() && Some(&unflushed_before) != boot.as_ref();
        let cursor = index.cursor()?.filter(|_| !rescoped && !restarted);
        let (changes, new_cursor, full) = match cursor {
            Some(since) => match self.changes_since(since).await? {
                Some((changes, cursor)) => (changes, cursor, false),
                None => {
                    let (changes, cursor) =
                        self.changes_since(0).await?.ok_or_else(|| anyhow!("the store refused cursor 0"))?;
                    (changes, cursor, true)
                }
            },
            None => {
                let (changes, cursor) =
                    self.changes_since(0).await?.ok_or_else(|| anyhow!("the store refused cursor 0"))?;
                (changes, cursor, true)
            }
        };
        let mut report = Report { full, cursor: new_cursor, ..Report::default() };
        phases.done("read changes");

        let inflight = index.inflight()?;
        let clean = index.clean()?;
        // Every stamp of the last clean scan holding: the directory is as the index says.
        let unchanged_here = !full && inflight.is_empty() && clean.hold(&self.root);
        // Nothing new in the store either: nothing to do, found without reading the index or
        // every folder.
        if unchanged_here && changes.is_empty() {
            index.set_metas(&[("cursor", new_cursor.to_string()), ("last_sync", self.clock.now().to_string())])?;
            phases.done("check stamps");
            return Ok(report);
        }
        let mut tree = index.load()?;
        if restarted {
            self.forget_lost_placeholders(&mut tree);
        }
        if tree.root_id.is_empty() {
            tree.root_id = self.client.resolve("/").await?.id;
            index.set_meta("root_id", &tree.root_id)?;
        }
        phases.done("load index");
        let local = if unchanged_here {
            Scan::as_indexed(&tree, now_ns(), clean.dirs.iter().cloned().collect())
        } else {
            self.scan(&tree, &inflight)?
        };
        phases.done("scan");
        let pushes = plan_push(&tree, &local, &changes, content);
        phases.done("plan push");
        let pushed = !pushes.is_empty();
        let upload_bytes: u64 = pushes
            .iter()
            .filter_map(|action| match action {
                Push::Upload { path, .. } => local.files.get(path).map(|file| file.stamp.size),
                _ => None,
            })
            .sum();
        self.progress.planned(pushes.len() as u64, upload_bytes);
        self.push(pushes, &mut index, &mut tree, &mut report).await?;
        phases.done("push");
        // What the push changed is pulled in its state after the push, not the one read before:
        // a record moved here in its moved state, one deleted here not at all.
        let mut changes = changes;
        changes.retain(|change| change.deleted || !report.deleted_ids.contains(&change.id));
        for change in changes.iter_mut().filter(|change| !change.deleted) {
            if let Some(record) = tree.records.get(&change.id)
                && record.modseq > change.modseq
            {
                change.modseq = record.modseq;
                change.entry = Some(record.entry.clone());
            }
        }

        let local = if pushed { self.scan(&tree, &inflight)? } else { local };
        let today = self.today();
        let mut plan = plan_pull(tree, &local, &changes, content, &self.name, today, full);
        phases.done("plan pull");
        if !plan.orphans.is_empty() {
            bail!(
                "the store's changes name {} entries whose folders this device does not hold; nothing was applied",
                plan.orphans.len()
            );
        }
        let download_bytes: u64 = plan
            .actions
            .iter()
            .filter_map(|action| match action {
                Pull::Download { id, .. } => plan.tree.records.get(id).and_then(|record| record.entry.size),
                _ => None,
            })
            .sum();
        self.progress.planned(plan.actions.len() as u64, download_bytes);
        let placing = placing(&plan.actions, &plan.tree);
        if !placing.is_empty() {
            index.set_inflight(&placing)?;
        }
        phases.done("record intent");
        self.pull(&plan.actions, &mut plan.tree, &mut plan.changed, &mut report).await?;
        phases.done("pull");
        // Invariant: content the pull placed, moved or removed is on disk before the index records
        // it. Stubs and folders alone may wait for the kernel: after a restart that could have
        // lost them, the next sync re-reads the view and writes them again.
        let unflushed = if plan.actions.is_empty() {
            // Nothing written: an earlier pull's stubs stay pending, unless this was the re-read.
            if restarted { String::new() } else { unflushed_before }
        } else if let (false, Some(boot)) = (plan.actions.iter().any(needs_flush), &boot) {
            boot.clone()
        } else {
            sync_filesystem(&self.root)?;
            String::new()
        };
        phases.done("flush");
        let meta = [
            ("cursor", new_cursor.to_string()),
            ("profile_view", view),
            ("profile_summary", profile.summary.clone()),
            ("content", if content.content == ContentPolicy::Stub { "stub" } else { "download" }.to_owned()),
            ("last_sync", self.clock.now().to_string()),
            (UNFLUSHED_BOOT, unflushed),
        ];
        index.commit(&plan.tree, &plan.changed, &plan.dropped, &meta)?;
        phases.done("commit");
        let plan_push_after = plan.push_after;
        let wrote_here = pushed || plan_push_after || !plan.actions.is_empty();
        tree = plan.tree;

        if plan_push_after {
            let local = self.scan(&tree, &[])?;
            let pushes = plan_push(&tree, &local, &[], content);
            self.push(pushes, &mut index, &mut tree, &mut report).await?;
        }
        self.remember_clean(&mut index, &tree, (!wrote_here).then_some(local)).await?;
        phases.done("stamps");
        Ok(report)
    }

    /// Records the stamps that let the next sync see that nothing changed here. `unchanged` is
    /// this sync's scan when the sync changed nothing here; otherwise the directory is read again,
    /// once the stamps of the sync's own writes are old enough to tell later changes apart.
    async fn remember_clean(&self, index: &mut Index, tree: &Tree, unchanged: Option<crate::plan::Scan>) -> Result<()> {
        let found = match unchanged {
            Some(found) => found,
            None => {
                tokio::time::sleep(crate::scan::STAMP_MARGIN).await;
                scan(&self.root, tree)?
            }
        };
        if let Some(clean) = CleanStamps::of(tree, &found) {
            index.set_clean(&clean)?;
        }
        Ok(())
    }

    /// Drops from the index the folders that are missing here and the stubs that are missing or
    /// empty, so the full listing that follows writes them again.
    fn forget_lost_placeholders(&self, tree: &mut Tree) {
        let paths = tree.paths();
        tree.records.retain(|id, record| {
            let Some(path) = paths.get(id) else { return true };
            match record.state {
                LocalState::File => true,
                LocalState::Folder => path.is_empty() || self.local(path).is_dir(),
                LocalState::Stub => std::fs::metadata(self.local(path)).is_ok_and(|metadata| metadata.len() > 0),
            }
        });
    }

    /// Reads the directory, marking what an unfinished pull placed and still holds its content.
    fn scan(&self, tree: &Tree, inflight: &[(String, String, Option<String>)]) -> Result<crate::plan::Scan> {
        let mut local = scan(&self.root, tree)?;
        if inflight.is_empty() {
            return Ok(local);
        }
        // The latest intent for a path or a record wins; one a later pull replaced is older news.
        let mut claimed = std::collections::HashSet::new();
        for (path, id, hash) in inflight {
            if local.ours.contains_key(id) || claimed.contains(path) {
                continue;
            }
            let holds = local.dirs.contains(path)
                || local
                    .files
                    .get(path)
                    .is_some_and(|file| hash.is_none() || file.hash.is_none() || file.hash == *hash);
            if holds {
                claimed.insert(path);
                local.ours.insert(id.clone(), path.clone());
            }
        }
        let tracked: std::collections::HashSet<String> = tree.paths().into_values().collect();
        let intended: std::collections::HashSet<&String> = inflight.iter().map(|(path, _, _)| path).collect();
        for (_, id, hash) in inflight {
            if hash.is_none() || local.ours.contains_key(id) || local.ours_moved.contains_key(id) {
                continue;
            }
            if !tree.records.contains_key(id) {
                // Gone from where it was placed: moved by the user, if its content is elsewhere.
                let elsewhere = local
                    .files
                    .iter()
                    .find(|(other, file)| file.hash == *hash && !tracked.contains(*other) && !intended.contains(other))
                    .map(|(other, _)| other.clone());
                if let Some(other) = elsewhere {
                    local.ours_moved.insert(id.clone(), other);
                }
            }
        }
        Ok(local)
    }

    /// The store folder holding a relative path's parent, created (with every missing ancestor,
    /// each recorded) when missing.
    async fn folder_for(&self, relative: &str, index: &mut Index, tree: &mut Tree) -> Result<String> {
        let (folder, _) = split(relative);
        let mut parent = tree.root_id.clone();
        let mut walked = String::new();
        for name in folder.split('/').filter(|name| !name.is_empty()) {
            walked = join(&walked, name);
            let known = tree
                .records
                .values()
                .find(|record| {
                    record.state == LocalState::Folder
                        && record.parent_id.as_deref() == Some(parent.as_str())
                        && record.name == name
                })
                .map(|record| record.id.clone());
            parent = match known {
                Some(id) => id,
                None => {
                    let entry = self.client.create_folder(&store_path(&walked), true).await?;
                    let id = entry.id.clone();
                    self.remember(index, tree, entry, LocalState::Folder, None)?;
                    id
                }
            };
        }
        Ok(parent)
    }

    fn remember(
        &self,
        index: &mut Index,
        tree: &mut Tree,
        entry: Entry,
        state: LocalState,
        relative: Option<&str>,
    ) -> Result<()> {
        let local = relative.and_then(|path| std::fs::metadata(self.local(path)).ok()).map(|metadata| stamp(&metadata));
        let record = Record::new(entry, state, local);
        let id = record.id.clone();
        tree.records.insert(id.clone(), record);
        index.put(tree, &id)
    }

    async fn upload(
        &self,
        relative: &str,
        kind: ObjectKind,
        replace: Option<(String, i64)>,
        index: &mut Index,
        tree: &mut Tree,
        report: &mut Report,
    ) -> Result<()> {
        let folder_id = self.folder_for(relative, index, tree).await?;
        let path = self.local(relative);
        let uploaded = self.client.upload_file(&path).await.with_context(|| format!("cannot upload {relative}"))?;
        if uploaded.sent {
            report.bytes_uploaded += uploaded.size;
        }
        let (_, name) = split(relative);
        let content_type = match kind {
            ObjectKind::Message => None,
            ObjectKind::File => mime_guess::from_path(&path).first().map(|mime| mime.essence_str().to_owned()),
        };
        let request = CreateObjectRequest {
            folder_id: folder_id.clone(),
            name: name.to_owned(),
            kind,
            hash: uploaded.hash.clone(),
            content_type: content_type.clone(),
            replace: replace.is_some(),
            base_modseq: replace.as_ref().map(|(_, base)| *base),
            modified: std::fs::metadata(&path)
                .ok()
                .and_then(|m| m.modified().ok())
                .and_then(|t| jiff::Timestamp::try_from(t).ok()),
        };
        match self.client.create_object(&request).await {
            Ok(entry) => {
                report.uploaded += 1;
                self.remember(index, tree, entry, LocalState::File, Some(relative))
            }
            // Changed in the store meanwhile, or its name taken: this version is kept beside it.
            Err(error) if is_code(&error, "conflict") || is_code(&error, "already_exists") => {
                let (folder, name) = split(relative);
                let aside = join(folder, &conflict_name(name, &self.name, self.today()));
                std::fs::rename(&path, self.local(&aside)).with_context(|| format!("cannot set {relative} aside"))?;
                let request = CreateObjectRequest {
                    name: split(&aside).1.to_owned(),
                    replace: false,
                    base_modseq: None,
                    ..request
                };
                let entry = self.client.create_object(&request).await?;
                report.uploaded += 1;
                report.conflicts.push(store_path(&aside));
                self.remember(index, tree, entry, LocalState::File, Some(&aside))
            }
            Err(error) => Err(error.into()),
        }
    }

    async fn push(&self, actions: Vec<Push>, index: &mut Index, tree: &mut Tree, report: &mut Report) -> Result<()> {
        for action in actions {
            let before = report.bytes_uploaded;
            self.push_one(action, index, tree, report).await?;
            self.progress.done(report.bytes_uploaded - before);
            faults().applied();
        }
        Ok(())
    }

    async fn push_one(&self, action: Push, index: &mut Index, tree: &mut Tree, report: &mut Report) -> Result<()> {
        {
            match action {
                Push::CreateFolder { path } => {
                    let entry = self.client.create_folder(&store_path(&path), true).await?;
                    self.remember(index, tree, entry, LocalState::Folder, None)?;
                    report.folders_up += 1;
                }
                Push::Upload { path, kind, replace, .. } => {
                    self.upload(&path, kind, replace, index, tree, report).await?
                }
                Push::Move { id, path } => {
                    let folder_id = self.folder_for(&path, index, tree).await?;
                    let request = MoveRequest {
                        ids: vec![id.clone()],
                        to: Some(folder_id),
                        name: Some(split(&path).1.to_owned()),
                    };
                    match self.client.move_entries(&request).await {
                        Ok(mut moved) => {
                            if let Some(entry) = moved.entries.pop() {
                                // The record describes the file here: if the store holds a newer
                                // version by now, the pull must still see this one as older.
                                let here = match tree.records.get(&id) {
                                    Some(record) => record.hash.clone(),
                                    None => Some(crate::scan::hash_file(&self.local(&path))?),
                                };
                                self.remember(index, tree, entry, LocalState::File, Some(&path))?;
                                if let Some(record) = tree.records.get_mut(&id) {
                                    record.hash = here;
                                }
                                index.put(tree, &id)?;
                                report.moved_up += 1;
                            }
                        }
                        // The name is taken in the store, or the object was deleted there while it
                        // moved here: the file is kept, uploaded as a new object where it now is.
                        Err(error) if is_code(&error, "already_exists") || is_code(&error, "not_found") => {
                            let kind = tree.records.get(&id).map_or(ObjectKind::File, |record| {
                                if record.kind == EntryKind::Message { ObjectKind::Message } else { ObjectKind::File }
                            });
                            if is_code(&error, "not_found") {
                                tree.records.remove(&id);
                                index.drop_record(&id)?;
                            }
                            self.upload(&path, kind, None, index, tree, report).await?;
                        }
                        Err(error) => return Err(error.into()),
                    }
                }
                Push::Delete { id, base_modseq } => match self.client.delete_object_at(&id, base_modseq).await {
                    Ok(()) => {
                        tree.records.remove(&id);
                        index.drop_record(&id)?;
                        report.deleted_up += 1;
                        report.deleted_ids.insert(id);
                    }
                    Err(error) if is_code(&error, "not_found") => {
                        tree.records.remove(&id);
                        index.drop_record(&id)?;
                    }
                    // Changed in the store since: the modification wins; the next pull brings it back.
                    Err(error) if is_code(&error, "conflict") => {}
                    Err(error) => return Err(error.into()),
                },
                Push::DeleteFolder { id } => match self.client.delete_folder(&id, false).await {
                    Ok(()) => {
                        tree.records.remove(&id);
                        index.drop_record(&id)?;
                    }
                    Err(error) if is_code(&error, "not_found") => {
                        tree.records.remove(&id);
                        index.drop_record(&id)?;
                    }
                    Err(error) if is_code(&error, "folder_not_empty") => {}
                    Err(error) => return Err(error.into()),
                },
            }
        }
        Ok(())
    }

    async fn pull(
        &self,
        actions: &[Pull],
        tree: &mut Tree,
        changed: &mut BTreeSet<String>,
        report: &mut Report,
    ) -> Result<()> {
        let mut next = 0;
        while next < actions.len() {
            // A run of downloads goes out together: each has its own target, and the folders
            // they land in were made by the actions before them.
            let run = actions[next..].iter().take_while(|action| matches!(action, Pull::Download { .. })).count();
            if run > 0 {
                self.download_all(&actions[next..next + run], tree, changed, report).await?;
                next += run;
                continue;
            }
            let stubs = actions[next..].iter().take_while(|action| matches!(action, Pull::WriteStub { .. })).count();
            if stubs > 1 {
                self.write_stubs(&actions[next..next + stubs], tree, report)?;
                next += stubs;
                continue;
            }
            let before = report.bytes_downloaded;
            self.pull_one(&actions[next], tree, changed, report).await?;
            self.progress.done(report.bytes_downloaded - before);
            faults().applied();
            next += 1;
        }
        Ok(())
    }

    /// Writes a run of stubs on a few threads: each is its own small file.
    fn write_stubs(&self, writes: &[Pull], tree: &Tree, report: &mut Report) -> Result<()> {
        let jobs: Vec<(PathBuf, &Entry)> = writes
            .iter()
            .filter_map(|action| match action {
                Pull::WriteStub { id, path } => Some((self.local(path), &tree.records.get(id)?.entry)),
                _ => None,
            })
            .collect();
        let threads = std::thread::available_parallelism().map_or(2, |n| n.get()).clamp(2, 8);
        let chunk = jobs.len().div_ceil(threads).max(1);
        std::thread::scope(|scope| {
            let workers: Vec<_> = jobs
                .chunks(chunk)
                .map(|part| scope.spawn(move || part.iter().try_for_each(|(path, entry)| write_stub(path, entry))))
                .collect();
            workers.into_iter().try_for_each(|worker| worker.join().map_err(|_| anyhow!("a stub writer failed"))?)
        })?;
        for _ in &jobs {
            report.stubs_written += 1;
            self.progress.done(0);
            faults().applied();
        }
        Ok(())
    }

    async fn download_all(
        &self,
        downloads: &[Pull],
        tree: &mut Tree,
        changed: &mut BTreeSet<String>,
        report: &mut Report,
    ) -> Result<()> {
        let mut jobs = Vec::with_capacity(downloads.len());
        for action in downloads {
            if let Pull::Download { id, path } = action {
                let entry =
                    tree.records.get(id).map(|record| record.entry.clone()).context("download of an unknown record")?;
                jobs.push((id.clone(), path.clone(), entry));
            }
        }
        let mut done = futures_util::stream::iter(bundles(jobs))
            .map(|bundle| async move {
                let targets: Vec<PathBuf> = bundle.iter().map(|(_, path, _)| self.local(path)).collect();
                for parent in targets.iter().filter_map(|target| target.parent()) {
                    std::fs::create_dir_all(parent)?;
                }
                let sizes = match bundle.as_slice() {
                    [(_, path, entry)] => vec![
                        self.client
                            .download_to(entry, &targets[0], false)
                            .await
                            .with_context(|| format!("cannot download {path}"))?,
                    ],
                    _ => {
                        let items: Vec<(&Entry, &Path)> = bundle
                            .iter()
                            .zip(&targets)
                            .map(|((_, _, entry), target)| (entry, target.as_path()))
                            .collect();
                        self.client
                            .download_bundle(&items)
                            .await
                            .with_context(|| format!("cannot download {} files from {}", bundle.len(), bundle[0].1))?
                    }
                };
                let finished: Vec<_> = bundle
                    .into_iter()
                    .zip(targets)
                    .zip(sizes)
                    .map(|(((id, _, _), target), bytes)| {
                        (id, bytes, std::fs::metadata(&target).ok().map(|metadata| stamp(&metadata)))
                    })
                    .collect();
                Ok::<_, anyhow::Error>(finished)
            })
            .buffer_unordered(CONCURRENT_DOWNLOADS);
        while let Some(finished) = done.next().await {
            for (id, bytes, local) in finished? {
                report.downloaded += 1;
                report.bytes_downloaded += bytes;
                if let Some(record) = tree.records.get_mut(&id) {
                    record.local = local;
                }
                changed.insert(id);
                self.progress.done(bytes);
                faults().applied();
            }
        }
        Ok(())
    }

    async fn pull_one(
        &self,
        action: &Pull,
        tree: &mut Tree,
        changed: &mut BTreeSet<String>,
        report: &mut Report,
    ) -> Result<()> {
        match action {
            Pull::MakeDir { path } => std::fs::create_dir_all(self.local(path))?,
            Pull::Rename { from, to } => {
                let (source, target) = (self.local(from), self.local(to));
                if source.exists() {
                    if let Some(parent) = target.parent() {
                        std::fs::create_dir_all(parent)?;
                    }
                    std::fs::rename(&source, &target).with_context(|| format!("cannot move {from} to {to}"))?;
                    report.renamed += 1;
                }
            }
            // Downloads go through `download_all`, one or many.
            Pull::Download { .. } => self.download_all(std::slice::from_ref(action), tree, changed, report).await?,
            Pull::WriteStub { id, path } => {
                let entry = tree.records.get(id).map(|record| &record.entry).context("stub of an unknown record")?;
                write_stub(&self.local(path), entry)?;
                report.stubs_written += 1;
            }
            Pull::SetAside { from, to } => {
                if self.local(from).exists() {
                    std::fs::rename(self.local(from), self.local(to))?;
                    report.conflicts.push(store_path(to));
                }
            }
            Pull::RemoveFile { path } => match std::fs::remove_file(self.local(path)) {
                Ok(()) => report.removed += 1,
                Err(error) if error.kind() == std::io::ErrorKind::NotFound => {}
                Err(error) => return Err(error).with_context(|| format!("cannot remove {path}")),
            },
            // Left in place when not empty: what remains is the user's, and goes up next.
            Pull::RemoveDir { path } => {
                let _ = std::fs::remove_dir(self.local(path));
            }
        }
        Ok(())
    }

    /// Fetches a stub's content through its link: the stub becomes the file.
    pub async fn fetch(&self, path: &str) -> Result<u64> {
        let (mut index, mut tree, id) = self.record_at(path)?;
        let record = tree.records.get(&id).cloned().context("no such record")?;
        let relative = tree.path_of(&id).unwrap_or_default();
        match record.state {
            LocalState::Stub => {}
            LocalState::File => bail!("{path} is already here"),
            LocalState::Folder => bail!("{path} is a folder"),
        }
        let file = relative.trim_end_matches(STUB_SUFFIX).to_owned();
        let bytes = self.client.download(&record.entry, &self.local(&file)).await?;
        let hash = crate::scan::hash_file(&self.local(&file))?;
        std::fs::remove_file(self.local(&relative))?;
        let local = std::fs::metadata(self.local(&file)).ok().map(|metadata| stamp(&metadata));
        tree.records.insert(id.clone(), Record { state: LocalState::File, hash: Some(hash), local, ..record });
        index.put(&tree, &id)?;
        Ok(bytes)
    }

    /// Drops a fetched file's content, leaving its stub.
    pub fn evict(&self, path: &str) -> Result<()> {
        let (mut index, mut tree, id) = self.record_at(path)?;
        if index.meta("content")?.as_deref() != Some("stub") {
            bail!("this device keeps content (its profile says content = download); evict is for stub devices");
        }
        let record = tree.records.get(&id).cloned().context("no such record")?;
        if record.state != LocalState::File {
            bail!("{path} holds no content here");
        }
        let relative = tree.path_of(&id).unwrap_or_default();
        let metadata = std::fs::metadata(self.local(&relative)).with_context(|| format!("cannot read {relative}"))?;
        let unchanged = record.local == Some(stamp(&metadata))
            || record.hash.as_deref() == Some(crate::scan::hash_file(&self.local(&relative))?.as_str());
        if !unchanged {
            bail!("{path} was changed here; sync it first, so the change is not lost");
        }
        write_stub(&self.local(&format!("{relative}{STUB_SUFFIX}")), &record.entry)?;
        std::fs::remove_file(self.local(&relative))?;
        tree.records.insert(id.clone(), Record { state: LocalState::Stub, local: None, ..record });
        index.put(&tree, &id)
    }

    /// The index, and the id of the record at a store path (`/a/b.mp3`, with or without `.cpmlink`).
    fn record_at(&self, path: &str) -> Result<(Index, Tree, String)> {
        let index = Index::open(&self.meta_dir())?;
        let tree = index.load()?;
        let wanted = path.trim_start_matches('/').trim_end_matches(STUB_SUFFIX);
        let id = tree
            .paths()
            .into_iter()
            .find(|(_, local)| local.trim_end_matches(STUB_SUFFIX) == wanted)
            .map(|(id, _)| id)
            .ok_or_else(|| anyhow!("{path} is not on this device (sync first, or check its profile)"))?;
        Ok((index, tree, id))
    }
}

/// Index key: the boot in which a pull last wrote stubs or folders without flushing them.
const UNFLUSHED_BOOT: &str = "unflushed_boot";

/// True when losing the action's effect to a power cut could cost data. Stubs and folders the
/// agent writes are restored by the re-read after a restart; content, and moves or removals of
/// anything but stubs, must be on disk first.
fn needs_flush(action: &Pull) -> bool {
    match action {
        Pull::WriteStub { .. } | Pull::MakeDir { .. } => false,
        Pull::Rename { from: path, .. } | Pull::RemoveFile { path } => !is_stub(path),
        Pull::Download { .. } | Pull::SetAside { .. } | Pull::RemoveDir { .. } => true,
    }
}

/// This boot of the machine, where the system tells it (Linux); elsewhere every pull flushes.
fn boot_id() -> Option<String> {
    std::fs::read_to_string("/proc/sys/kernel/random/boot_id").ok().map(|id| id.trim().to_owned())
}

/// Flushes the device's file system: one call instead of an fsync per file.
#[cfg(target_os = "linux")]
fn sync_filesystem(root: &Path) -> Result<()> {
    use std::os::fd::AsRawFd;
    let dir = std::fs::File::open(root)?;
    // SAFETY: syncfs only reads the descriptor, which `dir` keeps open for the call.
    if unsafe { libc::syncfs(dir.as_raw_fd()) } != 0 {
        return Err(std::io::Error::last_os_error()).context("cannot flush the device's file system");
    }
    Ok(())
}

#[cfg(not(target_os = "linux"))]
fn sync_filesystem(_root: &Path) -> Result<()> {
    // Without syncfs, sync(2) flushes every file system: the same guarantee, more work.
    let status = std::process::Command::new("sync").status()?;
    if !status.success() {
        bail!("cannot flush the file systems");
    }
    Ok(())
}

/// The files and folders a pull plan places, by path, with the record and content each holds.
/// Stubs are left out: the agent alone writes them, so one is never taken for the user's.
fn placing(actions: &[Pull], tree: &Tree) -> Vec<(String, String, Option<String>)> {
    let content = |id: &str| {
        let record = tree.records.get(id)?;
        Some(if record.state == LocalState::File { record.hash.clone() } else { None })
    };
    // Paths are worked out only for the records a folder creation or a rename can be about.
    let renames = actions.iter().any(|action| matches!(action, Pull::Rename { .. }));
    let mut owners: Option<std::collections::HashMap<String, String>> = None;
    let mut owner_of = |path: &str| {
        owners
            .get_or_insert_with(|| {
                tree.records
                    .values()
                    .filter(|record| renames || record.state == LocalState::Folder)
                    .filter_map(|record| Some((tree.path_of(&record.id)?, record.id.clone())))
                    .collect()
            })
            .get(path)
            .cloned()
    };
    actions
        .iter()
        .filter_map(|action| match action {
            Pull::Download { id, path } => Some((path.clone(), id.clone(), content(id)?)),
            Pull::MakeDir { path } | Pull::Rename { to: path, .. } => {
                let id = owner_of(path)?;
                Some((path.clone(), id.clone(), content(&id)?))
            }
            _ => None,
        })
        .collect()
}

/// A stub: the object's id, link and exactly the details the device keeps, as JSON. A new stub
/// is written in place; one that exists is replaced whole, so a reader never sees half of it.
fn write_stub(path: &Path, entry: &Entry) -> Result<()> {
    let json = serde_json::to_vec_pretty(entry)?;
    let created = std::fs::OpenOptions::new().write(true).create_new(true).open(path);
    let written = match created {
        Ok(mut file) => std::io::Write::write_all(&mut file, &json),
        Err(error) if error.kind() == std::io::ErrorKind::NotFound => {
            if let Some(parent) = path.parent() {
                std::fs::create_dir_all(parent)?;
            }
            std::fs::write(path, &json)
        }
        Err(_) => {
            let temp = path.with_extension("cpm-partial");
            std::fs::write(&temp, &json).and_then(|()| std::fs::rename(&temp, path))
        }
    };
    written.with_context(|| format!("cannot write {}", path.display()))
}
