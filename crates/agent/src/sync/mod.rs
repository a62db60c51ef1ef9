//! One sync of a device with its store: gather the inputs, run the planner, execute its plans.
//!
//! Order: read the store's changes (changing nothing), push the device's own changes, pull the
//! store's, then push what the pull set aside. The pull's index updates and the new cursor
//! commit in one transaction after its files are in place; every step can be replayed.

mod folders;
mod local;
mod pull;
mod push;

use crate::error::{SyncError, SyncResult};
use crate::fs::{LocalFs, Locked};
use crate::index::Index;
use crate::plan::{
    HashMap, HashSet, Here, Listing, LocalState, Pull, Push, Scan, Skipped, Tree, missing_folders, plan_pull, plan_push,
};
use crate::remote::{Remote, RemoteError};
use crate::scan::{CleanStamps, scan};
use cpm_core::profile::{ContentPolicy, Holding};
use cpm_proto::{Change, ChangesQuery};
use serde::Serialize;

const PAGE: u32 = 1000;

/// Hears how far a sync has got: what it plans, then each action done with its bytes.
pub trait Progress: Send + Sync {
    fn planned(&self, actions: u64, bytes: u64);
    fn done(&self, bytes: u64);
    /// Another process holds the device's lock; the sync waits for it.
    fn waiting(&self, _pid: Option<u32>) {}
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

/// A device directory and the store that speaks for it.
pub struct Device<R, F> {
    pub name: String,
    pub remote: R,
    pub fs: F,
    pub progress: Box<dyn Progress>,
    /// Dates conflict copies and the last sync; file-system stamps are compared with the file
    /// system's own clock, whatever this one says.
    pub clock: std::sync::Arc<dyn cpm_core::Clock>,
    /// The zone the dates of conflict copies are read in.
    pub zone: jiff::tz::TimeZone,
    /// When another process syncs this device: wait for it (true) or refuse at once.
    pub wait_for_lock: bool,
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
    pub folders_deleted_up: u64,
    pub downloaded: u64,
    pub bytes_downloaded: u64,
    pub stubs_written: u64,
    pub renamed: u64,
    pub removed: u64,
    pub conflicts: Vec<String>,
    /// Entries left alone, with why and what to do; every sync tries them again.
    pub skipped: Vec<Skipped>,
    /// Objects this sync deleted in the store, with the version each was deleted at.
    #[serde(skip)]
    deleted_ids: std::collections::HashMap<String, i64>,
    /// Records this sync's pushes made or changed: how each stands in the view is asked after.
    #[serde(skip)]
    pushed: std::collections::BTreeSet<String>,
    /// A push set something aside here: what it became goes up in a second pass.
    #[serde(skip)]
    again: bool,
    /// Folders a push renamed here to a conflict name (from, to): the pushes of what is in them
    /// follow them there.
    #[serde(skip)]
    set_aside: Vec<(String, String)>,
    /// The pull left records to ask after once it is done (a name its own removals free): the
    /// sync runs once more for them.
    #[serde(skip)]
    recheck: bool,
}

impl Report {
    /// What the sync did, as counts with the words that tell them.
    fn counts(&self) -> [(u64, &'static str); 9] {
        [
            (self.uploaded, "uploaded"),
            (self.moved_up, "moved in the store"),
            (self.deleted_up, "deleted in the store"),
            (self.folders_up, "folders created in the store"),
            (self.folders_deleted_up, "folders deleted in the store"),
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
        let skipped = if self.skipped.is_empty() {
            String::new()
        } else {
            let each: Vec<String> =
                self.skipped.iter().map(|skipped| format!("{} ({})", skipped.shown_path(), skipped.reason)).collect();
            format!("; {} skipped: {}", self.skipped.len(), each.join(", "))
        };
        format!(
            "{what} (cursor {}, {} bytes up, {} bytes down{}){conflicts}{skipped}",
            self.cursor,
            self.bytes_uploaded,
            self.bytes_downloaded,
            if self.full { ", full reconcile" } else { "" }
        )
    }
}

/// Index key: the boot in which a pull last wrote stubs or folders without flushing them.
const UNFLUSHED_BOOT: &str = "unflushed_boot";
/// Index key: the instant the device's view was last read at.
const VIEW_TIME: &str = "view_time";
/// Index key: what the last sync skipped, for `cpm status`.
pub const SKIPPED: &str = "skipped";

/// The store's changes for one sync, and where they leave the device.
struct Feed {
    changes: Vec<Change>,
    cursor: i64,
    time: Option<jiff::Timestamp>,
    full: bool,
}

impl<R: Remote, F: LocalFs> Device<R, F> {
    /// The date on this device, for the names of conflict copies.
    fn today(&self) -> jiff::civil::Date {
        self.clock.now().to_zoned(self.zone.clone()).date()
    }

    /// This device, for the planner: its name, its day, its file system's rules.
    fn here(&self) -> Here<'_> {
        Here { device: &self.name, today: self.today(), case_insensitive: self.fs.case_insensitive() }
    }

    fn remote_error(&self, error: RemoteError) -> SyncError {
        SyncError::remote(error, self.remote.server())
    }

    /// Takes the device's lock, waiting (or not) for another process that holds it.
    ///
    /// Invariant: one engine at a time per device directory; syncs, fetches and evictions of
    /// one device never interleave.
    async fn lock(&self) -> SyncResult<Box<dyn Send>> {
        let mut told = false;
        loop {
            match self.fs.try_lock().map_err(|error| SyncError::local("cannot lock the device", error))? {
                Locked::Held(guard) => return Ok(guard),
                Locked::Busy { pid } if self.wait_for_lock => {
                    if !told {
                        self.progress.waiting(pid);
                        told = true;
                    }
                    tokio::time::sleep(std::time::Duration::from_millis(100)).await;
                }
                Locked::Busy { pid } => return Err(SyncError::Busy { pid }),
            }
        }
    }

    /// The store's changes since `since` (every page, read at one instant); `None` when the
    /// cursor has expired.
    async fn changes_since(
        &self,
        since: i64,
        seen_at: Option<jiff::Timestamp>,
        view: &str,
    ) -> SyncResult<Option<Feed>> {
        let mut changes = Vec::new();
        let mut query = ChangesQuery { since, limit: Some(PAGE), at: None, seen_at, view: Some(view.to_owned()) };
        loop {
            let page = match self.remote.feed(&query).await {
                Ok(page) => page,
                Err(error) if error.is("resync_required") => return Ok(None),
                Err(error) => return Err(self.remote_error(error)),
            };
            changes.extend(page.changes);
            query.since = page.cursor;
            query.at = query.at.or(page.time);
            if !page.has_more {
                return Ok(Some(Feed { changes, cursor: page.cursor, time: query.at, full: false }));
            }
        }
    }

    /// The whole view, from the start of the journal.
    async fn everything(&self, view: &str) -> SyncResult<Feed> {
        let feed = self
            .changes_since(0, None, view)
            .await?
            .ok_or_else(|| SyncError::Inconsistent("the store refused cursor 0".into()))?;
        Ok(Feed { full: true, ..feed })
    }

    pub async fn sync(&self) -> SyncResult<Report> {
        let _lock = self.lock().await?;
        let mut report = Report::default();
        let (mut attempts, mut rechecks) = (0, 0);
        loop {
            // The profile changed while the sync read its view: it reads it again through the new
            // one, keeping the count of what it already did. So it does for what its pull left to
            // ask after.
            match self.sync_locked(&mut report).await {
                Err(SyncError::Refused(error)) if error.is("profile_changed") && attempts < 3 => attempts += 1,
                Ok(()) if std::mem::take(&mut report.recheck) && rechecks < 2 => rechecks += 1,
                result => return result.map(|()| report),
            }
        }
    }

    async fn sync_locked(&self, report: &mut Report) -> SyncResult<()> {
        self.fs.clear_temp().map_err(|error| SyncError::local("cannot clear the device's temporary folder", error))?;
        let mut phases = Phases::start();
        let mut index = Index::open(&self.fs.index_dir())?;
        self.restore_asides(&index)?;
        let profile = self.remote.profile().await.map_err(|error| self.remote_error(error))?;
        let content = Holding {
            content: profile.profile.content,
            max_download: profile.profile.max_download_bytes().map_err(SyncError::Inconsistent)?,
        };
        // What the device holds depends on the profile's view, not on its triggers.
        let view = profile.profile.view_key();
        let tag = profile.profile.view_tag();
        // A new profile re-scopes the device: it reads its whole view again.
        let rescoped = index.meta("profile_view")?.as_deref() != Some(view.as_str());
        // Stubs and folders written without a flush may have been lost to a restart since: the
        // device then reads its whole view again and writes back whatever is missing.
        let boot = self.fs.boot_id();
        let unflushed_before = index.meta(UNFLUSHED_BOOT)?.unwrap_or_default();
        let restarted = !unflushed_before.is_empty() && Some(&unflushed_before) != boot.as_ref();
        // Cursor 0 (the store was empty when the device last read it) is no position in the
        // journal: a delta from it is the whole journal, which misses deletions whose
        // tombstones were collected since. The device reads its whole view instead.
        let cursor = index.cursor()?.filter(|since| *since > 0 && !rescoped && !restarted);
        let seen_at = index.meta(VIEW_TIME)?.and_then(|time| time.parse().ok());
        let feed = match cursor {
            Some(since) => match self.changes_since(since, seen_at, &tag).await? {
                Some(feed) => feed,
                None => self.everything(&tag).await?,
            },
            None => self.everything(&tag).await?,
        };
        let full = feed.full;
        report.full |= full;
        report.cursor = feed.cursor;
        report.skipped.clear();
        let view_time = feed.time.map(|time| time.to_string()).unwrap_or_default();
        phases.done("read changes");

        let inflight = index.inflight()?;
        let removed = index.removing()?;
        let clean = index.clean()?;
        let recheck = index.rechecks()?;
        // Every stamp of the last clean scan holding: the directory is as the index says.
        let unchanged_here = !full && inflight.is_empty() && removed.is_empty() && clean.hold(&self.fs);
        // Nothing new in the store either: nothing to do, found without reading the index or
        // every folder.
        if unchanged_here && feed.changes.is_empty() && recheck.is_empty() {
            index.set_metas(&[
                ("cursor", feed.cursor.to_string()),
                ("last_sync", self.clock.now().to_string()),
                (VIEW_TIME, view_time),
            ])?;
            phases.done("check stamps");
            return Ok(());
        }
        let mut tree = index.load()?;
        let forgotten = if restarted { self.forget_lost_placeholders(&mut tree) } else { Vec::new() };
        if tree.root_id.is_empty() {
            tree.root_id = self.remote.resolve("/").await.map_err(|error| self.remote_error(error))?.id;
            index.set_meta("root_id", &tree.root_id)?;
        }
        phases.done("load index");
        let mut local = if unchanged_here {
            Scan::as_indexed(&tree, self.fs.now_ns(), clean.dirs.iter().cloned().collect())
        } else {
            self.scan(&tree, &inflight, restarted)?
        };
        local.removed = removed;
        report.skipped.extend(local.skipped.iter().cloned());
        if !inflight.is_empty() {
            tracing::debug!(device = self.name, ?inflight, ours = ?local.ours, moved = ?local.ours_moved, "unfinished pulls");
        }
        tracing::trace!(device = self.name, files = ?local.files.keys().collect::<Vec<_>>(), paths = ?tree.paths(), "scanned");
        phases.done("scan");
        let here = self.here();
        let listing = if full { Listing::Full { cursor: feed.cursor } } else { Listing::Delta };
        let pushes = plan_push(&tree, &local, &feed.changes, content, here, listing);
        phases.done("plan push");
        tracing::debug!(device = self.name, ?pushes, "push plan");
        let pushed = !pushes.is_empty();
        let upload_bytes: u64 = pushes
            .iter()
            .filter_map(|action| match action {
                Push::Upload { path, .. } => local.files.get(path).map(|file| file.stamp.size),
                _ => None,
            })
            .sum();
        self.progress.planned(pushes.len() as u64, upload_bytes);
        self.push(pushes, &mut index, &mut tree, report).await?;
        phases.done("push");
        // What the push changed is pulled in its state after the push, as the view has it now,
        // not the one read before: a record moved here in its moved state, one deleted here not
        // at all, a folder it used or an object it put outside the view as a removal.
        // An object deleted here that another device brought back since (moving its copy) is
        // no longer the version deleted: it is pulled.
        let mut changes = feed.changes;
        changes.retain(|change| {
            change.deleted || report.deleted_ids.get(&change.id).is_none_or(|deleted_at| change.modseq > *deleted_at)
        });
        let mut asked: std::collections::BTreeSet<String> = report.pushed.iter().cloned().chain(recheck).collect();
        // The push made or found folders: the listing's folders may be stale by now (one deleted
        // and made again under a new id), and are asked after too.
        if report.pushed.iter().any(|id| tree.records.get(id).is_some_and(|record| record.state == LocalState::Folder))
        {
            asked.extend(
                changes
                    .iter()
                    .filter(|change| !change.deleted && change.kind == cpm_core::EntryKind::Folder)
                    .map(|change| change.id.clone()),
            );
        }
        // What was in a folder that has gone meanwhile is asked after too, down the tree: its
        // listed state would name a folder the device no longer has. So are entries in folders
        // the device neither holds nor receives, with their folders (a chain of such folders
        // takes a round each).
        let mut asked_before: HashSet<String> = HashSet::default();
        loop {
            if asked.is_empty() {
                let folders = missing_folders(&tree, &changes, listing);
                asked.extend(
                    changes
                        .iter()
                        .filter(|change| {
                            let parent = change.entry.as_ref().and_then(|entry| entry.parent_id.as_ref());
                            !change.deleted && parent.is_some_and(|parent| folders.contains(parent))
                        })
                        .map(|change| change.id.clone())
                        .chain(folders.iter().cloned())
                        .filter(|id| !asked_before.contains(id)),
                );
                if asked.is_empty() {
                    break;
                }
            }
            let asking: Vec<String> = std::mem::take(&mut asked).into_iter().collect();
            asked_before.extend(asking.iter().cloned());
            let fresh =
                self.remote.view_of(&asking, feed.time, Some(&tag)).await.map_err(|error| self.remote_error(error))?;
            let gone: HashSet<&str> = fresh
                .iter()
                .filter(|change| change.deleted && change.kind == cpm_core::EntryKind::Folder)
                .map(|change| change.id.as_str())
                .collect();
            let fresh_ids: HashSet<&str> = fresh.iter().map(|change| change.id.as_str()).collect();
            changes.retain(|change| !fresh_ids.contains(change.id.as_str()));
            asked.extend(
                changes
                    .iter()
                    .filter(|change| !asked_before.contains(&change.id))
                    .filter(|change| {
                        let parent = change.entry.as_ref().and_then(|entry| entry.parent_id.as_deref());
                        parent.is_some_and(|parent| gone.contains(parent))
                    })
                    .map(|change| change.id.clone()),
            );
            changes.extend(fresh);
        }
        report.pushed.clear();

        tracing::debug!(device = self.name, ?changes, "changes to pull");
        let local = if pushed {
            let mut after = self.scan(&tree, &inflight, restarted)?;
            after.vanished = local.files.keys().filter(|path| !after.files.contains_key(*path)).cloned().collect();
            after
        } else {
            local
        };
        let mut plan = plan_pull(tree, &local, &changes, content, here, listing);
        tracing::debug!(device = self.name, actions = ?plan.actions, orphans = ?plan.orphans, "pull plan");
        // What the restart lost leaves the index too, unless the listing brought it back.
        plan.dropped.extend(forgotten.into_iter().filter(|id| !plan.tree.records.contains_key(id)));
        phases.done("plan pull");
        if !plan.orphans.is_empty() {
            return Err(SyncError::Inconsistent(format!(
                "the store's changes name {} entries whose folders this device does not hold; nothing was applied",
                plan.orphans.len()
            )));
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
        let removing = removing(&plan.actions, &local.ours);
        if !placing.is_empty() || !removing.is_empty() {
            index.set_inflight(&placing, &removing)?;
        }
        phases.done("record intent");
        let failed = self.pull(&plan.actions, &mut plan.tree, &mut plan.changed, report).await?;
        if !failed.is_empty() {
            tracing::debug!(device = self.name, ?failed, "not placed");
        }
        phases.done("pull");
        // Invariant: content the pull placed, moved or removed is on disk before the index records
        // it, and so is what an unfinished pull placed and this one adopts (its flush may have
        // failed). Stubs and folders alone may wait for the kernel: after a restart that could
        // have lost them, the next sync re-reads the view and writes them again.
        let unflushed = if !local.ours.is_empty() || !local.ours_moved.is_empty() {
            self.flush(&mut index, &plan, &failed)?;
            String::new()
        } else if plan.actions.is_empty() {
            // Nothing written: an earlier pull's stubs stay pending, unless this was the re-read.
            if restarted { String::new() } else { unflushed_before.clone() }
        } else if let (false, Some(boot)) = (plan.actions.iter().any(|action| needs_flush(action, &plan.tree)), &boot) {
            boot.clone()
        } else {
            self.flush(&mut index, &plan, &failed)?;
            String::new()
        };
        // The re-read after a restart that could not write back all it lost is not done: the
        // next sync re-reads again (the records of what failed are put back as they were, so
        // nothing else would tell it what is still torn).
        let unflushed = if restarted && !failed.is_empty() { unflushed_before } else { unflushed };
        phases.done("flush");
        let mut meta = vec![
            ("profile_summary", profile.summary.clone()),
            ("content", if content.content == ContentPolicy::Stub { "stub" } else { "download" }.to_owned()),
            ("last_sync", self.clock.now().to_string()),
            (UNFLUSHED_BOOT, unflushed),
        ];
        let failed_any = !failed.is_empty();
        if failed.is_empty() {
            meta.push(("cursor", feed.cursor.to_string()));
            meta.push(("profile_view", view));
            meta.push((VIEW_TIME, view_time));
        } else {
            // What could not be placed keeps its old record, and the cursor and the instant the
            // view was read at stay where they were: the next sync brings those changes again,
            // those time alone made too (what did apply comes back as no change).
            self.keep_unplaced(&index, &mut plan, &failed)?;
            report.skipped.extend(failed.into_iter().map(|(_, skipped)| skipped));
            report.cursor = cursor.unwrap_or(0);
            // The rest of a new profile's view did apply (what left it is gone from here): the
            // old cursor no longer describes what the device holds under either profile, and
            // the next sync reads the whole view again, whichever profile it then has.
            if rescoped {
                meta.push(("profile_view", String::new()));
            }
        }
        index.commit(&plan.tree, &plan.changed, &plan.dropped, &meta)?;
        for id in &plan.recheck {
            index.recheck(id)?;
        }
        report.recheck = !plan.recheck.is_empty();
        phases.done("commit");
        let plan_push_after = plan.push_after || report.again;
        let wrote_here = pushed || plan_push_after || !plan.actions.is_empty();
        tree = plan.tree;

        // What an unfinished pull placed stays its own until a cursor follows it.
        let inflight = if failed_any { index.inflight()? } else { Vec::new() };
        if plan_push_after {
            let mut local = self.scan(&tree, &inflight, restarted)?;
            local.removed = removing.into_iter().map(|(_, id)| id).collect();
            let pushes = plan_push(&tree, &local, &[], content, here, Listing::Delta);
            self.push(pushes, &mut index, &mut tree, report).await?;
        }
        index.set_meta(SKIPPED, &serde_json::to_string(&report.skipped)?)?;
        if report.skipped.is_empty() && inflight.is_empty() {
            self.remember_clean(&mut index, &tree, (!wrote_here).then_some(local)).await?;
        }
        phases.done("stamps");
        Ok(())
    }

    /// Flushes what the pull wrote. When the flush fails, what the pull removed is gone here all
    /// the same: those records leave the index before the sync fails, lest the next sync take
    /// the removals for the user's and delete the objects from the store.
    fn flush(&self, index: &mut Index, plan: &crate::plan::PullPlan, failed: &[(usize, Skipped)]) -> SyncResult<()> {
        let Err(error) = self.fs.sync_all() else { return Ok(()) };
        // Invariant: a record never outlives a file the engine removed.
        let unplaced: HashSet<&String> = failed
            .iter()
            .filter_map(|(at, _)| match plan.actions.get(*at) {
                Some(Pull::RemoveFile { id: Some(id), .. }) => Some(id),
                _ => None,
            })
            .collect();
        let removed: std::collections::BTreeSet<String> =
            plan.dropped.iter().filter(|id| !unplaced.contains(*id)).cloned().collect();
        index.commit(&plan.tree, &std::collections::BTreeSet::new(), &removed, &[])?;
        Err(SyncError::local("cannot flush the device's file system", error))
    }

    /// Records the stamps that let the next sync see that nothing changed here. `unchanged` is
    /// this sync's scan when the sync changed nothing here; otherwise the directory is read again,
    /// once the stamps of the sync's own writes are old enough to tell later changes apart.
    async fn remember_clean(&self, index: &mut Index, tree: &Tree, unchanged: Option<Scan>) -> SyncResult<()> {
        let found = match unchanged {
            Some(found) => found,
            None => {
                let margin = self.fs.stamp_margin();
                if !margin.is_zero() {
                    tokio::time::sleep(margin).await;
                }
                self.scan(tree, &[], false)?
            }
        };
        if let Some(clean) = CleanStamps::of(tree, &found, &self.fs) {
            index.set_clean(&clean)?;
        }
        Ok(())
    }

    /// After a restart that may have lost unflushed writes: drops from the index the folders and
    /// stubs that are missing here, and marks the stubs left empty as stale, so that the full
    /// listing that follows writes them all again (an empty stub is the engine's own torn write,
    /// not a file of the user's).
    fn forget_lost_placeholders(&self, tree: &mut Tree) -> Vec<String> {
        let paths = tree.paths();
        let before: Vec<String> = tree.records.keys().cloned().collect();
        tree.records.retain(|id, record| {
            let Some(path) = paths.get(id) else { return true };
            let found = self.fs.metadata(path).ok().flatten();
            match record.state {
                LocalState::File => true,
                LocalState::Folder => path.is_empty() || found.is_some_and(|meta| meta.kind == crate::fs::Kind::Dir),
                LocalState::Stub => match found {
                    Some(meta) if meta.kind == crate::fs::Kind::File => {
                        // Torn, or an older stub the lost writes left (put back from aside, or
                        // never replaced): written again by the re-read.
                        if !crate::scan::holds_stub_of(&self.fs, path, &record.entry) {
                            record.modseq = 0;
                            record.entry.modseq = 0;
                        }
                        true
                    }
                    _ => false,
                },
            }
        });
        before.into_iter().filter(|id| !tree.records.contains_key(id)).collect()
    }

    /// Reads the directory, marking what an unfinished pull placed and still holds its content.
    /// With `restarted`, the machine went down since stubs were written without a flush: an
    /// empty `.cpmlink` file no record holds is one of them, torn (and perhaps moved with its
    /// folder by the user since), not a file of the user's to send up.
    fn scan(&self, tree: &Tree, inflight: &[(String, String, Option<String>)], restarted: bool) -> SyncResult<Scan> {
        let mut local = scan(&self.fs, tree).map_err(|error| SyncError::Inconsistent(format!("{error:#}")))?;
        if restarted {
            let tracked: HashSet<String> = tree.paths().into_values().collect();
            let torn: Vec<String> = local
                .files
                .iter()
                .filter(|(path, file)| {
                    file.stamp.size == 0 && path.ends_with(crate::naming::STUB_SUFFIX) && !tracked.contains(*path)
                })
                .map(|(path, _)| path.clone())
                .collect();
            for path in torn {
                local.stray_stubs.entry(path).or_default();
            }
        }
        if inflight.is_empty() {
            return Ok(local);
        }
        // The latest intent for a path or a record wins; one a later pull replaced is older news.
        let mut claimed: HashSet<&String> = HashSet::default();
        let stubs = tree.stub_paths();
        let recorded: HashMap<String, &Option<String>> =
            tree.paths().into_iter().filter_map(|(id, path)| Some((path, &tree.records.get(&id)?.hash))).collect();
        for (path, id, hash) in inflight {
            if local.ours.contains_key(id) || claimed.contains(path) {
                continue;
            }
            // Invariant: only what the pull was placing is taken for its own: a folder or a stub
            // where it made one (whole, or torn by a power cut), its content (unread because its record says so), or an empty file
            // where it wrote content, torn by a power cut before the data reached the disk. A user's
            // file there is the user's.
            let holds = match hash {
                None => {
                    local.dirs.contains(path)
                        || local.stray_stubs.contains_key(path)
                        || stubs.contains(path.as_str())
                        || (path.ends_with(crate::naming::STUB_SUFFIX)
                            && local.files.contains_key(path)
                            && crate::scan::still_stub(&self.fs, path, Some(id)))
                }
                Some(_) => local.files.get(path).is_some_and(|file| {
                    let content = file.hash.as_ref().or(recorded.get(path).and_then(|hash| hash.as_ref()));
                    content == hash.as_ref() || file.stamp.size == 0
                }),
            };
            if holds {
                claimed.insert(path);
                local.ours.insert(id.clone(), path.clone());
            }
        }
        let tracked: HashSet<String> = tree.paths().into_values().collect();
        let intended: HashSet<&String> = inflight.iter().map(|(path, _, _)| path).collect();
        let here = self.here();
        for (path, id, hash) in inflight {
            if hash.is_none() || local.ours.contains_key(id) || local.ours_moved.contains_key(id) {
                continue;
            }
            // Renamed by the user in case alone, on a file system that folds case: moved where
            // she put it, like a file of a finished pull would be.
            let renamed = here.case_insensitive && !local.files.contains_key(path);
            let case_variant = renamed
                .then(|| {
                    local.files.iter().find(|(other, file)| {
                        file.hash == *hash
                            && *other != path
                            && here.fold(other) == here.fold(path)
                            && !tracked.contains(*other)
                            && !intended.contains(other)
                    })
                })
                .flatten();
            if let Some((other, _)) = case_variant {
                local.ours_moved.insert(id.clone(), other.clone());
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
}

/// True when losing the action's effect to a power cut could cost data. Stubs and folders the
/// agent writes are restored by the re-read after a restart; content, and moves or removals of
/// anything but stubs, must be on disk first.
fn needs_flush(action: &Pull, tree: &Tree) -> bool {
    let stub =
        |id: Option<&String>| id.and_then(|id| tree.records.get(id)).is_some_and(|r| r.state == LocalState::Stub);
    match action {
        Pull::WriteStub { .. } | Pull::MakeDir { .. } => false,
        Pull::Rename { id, .. } => !stub(Some(id)),
        Pull::RemoveFile { expected, .. } => expected.is_some(),
        Pull::Download { .. } | Pull::SetAside { .. } | Pull::RemoveDir { .. } => true,
    }
}

/// The files of content a pull plan removes, by path, with the record each was: its own, or the
/// one an unfinished pull placed it for (`ours`, a leftover there).
fn removing(actions: &[Pull], ours: &std::collections::BTreeMap<String, String>) -> Vec<(String, String)> {
    let placed_for = |path: &str| ours.iter().find(|(_, placed)| *placed == path).map(|(id, _)| id.clone());
    actions
        .iter()
        .filter_map(|action| match action {
            Pull::RemoveFile { path, expected: Some(_), id } => {
                Some((path.clone(), id.clone().or_else(|| placed_for(path))?))
            }
            _ => None,
        })
        .collect()
}

/// The files, stubs and folders a pull plan places, by path, with the record and content each
/// holds (none for folders and stubs).
fn placing(actions: &[Pull], tree: &Tree) -> Vec<(String, String, Option<String>)> {
    let content = |id: &str| {
        let record = tree.records.get(id)?;
        Some(if record.state == LocalState::File { record.hash.clone() } else { None })
    };
    // Paths are worked out only for the folders a folder creation can be about.
    let mut owners: Option<crate::plan::HashMap<String, String>> = None;
    let mut owner_of = |path: &str| {
        owners
            .get_or_insert_with(|| {
                tree.records
                    .values()
                    .filter(|record| record.state == LocalState::Folder)
                    .filter_map(|record| Some((tree.path_of(&record.id)?, record.id.clone())))
                    .collect()
            })
            .get(path)
            .cloned()
    };
    actions
        .iter()
        .filter_map(|action| match action {
            Pull::Download { id, path, .. } | Pull::WriteStub { id, path, .. } | Pull::Rename { id, to: path, .. } => {
                Some((path.clone(), id.clone(), content(id)?))
            }
            Pull::MakeDir { path } => {
                let id = owner_of(path)?;
                Some((path.clone(), id, None))
            }
            _ => None,
        })
        .collect()
}
