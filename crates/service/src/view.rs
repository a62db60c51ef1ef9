//! A device's view of the change journal: every changed row as an upsert of what the device may
//! hold (projected to the details it keeps) or as a removal, plus what time moved into or out of
//! a view whose filter reads an object's age.

use crate::entries::child_path_text;
use crate::{ErrorKind, Result, Service, ServiceError};
use cpm_core::filter::ObjectFacts;
use cpm_core::profile::CompiledProfile;
use cpm_core::{ChangedRow, EntryKind, Item, Object};
use cpm_proto::{Change, ChangesPage, Entry};
use cpm_store::{StoreError, UserId};
use jiff::{SignedDuration, Timestamp};
use std::collections::{HashMap, HashSet};

/// The most objects one sync may learn entered or left its view with time; past it the device
/// reads its whole view again.
pub const MAX_TIME_CROSSINGS: usize = 10_000;

/// What a device asks of its feed.
#[derive(Debug, Clone, Default)]
pub struct FeedRequest {
    pub since: i64,
    pub limit: usize,
    /// The instant every page of one sync is read at; now when absent (the first page).
    pub at: Option<Timestamp>,
    /// The instant the device's view was last read at: objects whose age crossed a boundary of
    /// its filter between then and `at` come in the last page.
    pub seen_at: Option<Timestamp>,
    /// The view tag of the profile the device plans with.
    pub view: Option<String>,
}

impl Service {
    /// One page of the journal as a device's profile sees it.
    pub fn device_feed(&self, user: UserId, device: &str, request: FeedRequest) -> Result<ChangesPage> {
        let profile = self.planned_profile(user, device, request.view.as_deref())?;
        let at = request.at.unwrap_or_else(|| self.clock.now());
        let mut page = self.view_page(user, &profile, request.since, request.limit, at, None)?;
        if let Some(seen_at) = request.seen_at.filter(|_| !page.has_more && request.since > 0) {
            let crossed = self.time_crossings(user, &profile, request.since, seen_at, at)?;
            page.changes.extend(crossed);
        }
        page.time = Some(at);
        Ok(page)
    }

    /// How each of `ids` stands in a device's view now: an upsert of what the device may hold, or
    /// a removal (for what it may not hold, or what is gone). A device asks after what it has
    /// just changed, which the journal since its cursor may not bring (a folder it used that
    /// existed, an object it put outside its view).
    pub fn device_entries(
        &self,
        user: UserId,
        device: &str,
        ids: &[String],
        at: Option<Timestamp>,
        planned: Option<&str>,
    ) -> Result<Vec<Change>> {
        let profile = self.planned_profile(user, device, planned)?;
        let mut view = DeviceView::new(self, user, &profile, at.unwrap_or_else(|| self.clock.now()), None);
        for id in ids {
            match self.store.item(user, id) {
                Ok(item) => view.evaluate(&item)?,
                Err(StoreError::NotFound(_)) => {
                    let kind = if id.starts_with('f') { EntryKind::Folder } else { EntryKind::File };
                    view.remove(kind, id, 0);
                }
                Err(error) => return Err(error.into()),
            }
        }
        Ok(view.changes)
    }

    /// The device's profile, worked out; refused when the sync planned with another view.
    fn planned_profile(&self, user: UserId, device: &str, planned: Option<&str>) -> Result<CompiledProfile> {
        let view = self.device_profile(user, device)?;
        // Invariant: every page of one sync is read through the view it planned with; pages of
        // two views would name records the device's plan cannot place.
        if let Some(planned) = planned
            && planned != view.effective.profile.view_tag()
        {
            return Err(ServiceError::new(
                ErrorKind::Conflict,
                "profile_changed",
                "the device's profile changed during its sync; sync again",
            ));
        }
        view.effective.profile.compile().map_err(ServiceError::internal)
    }

    /// One page of the journal through a profile already worked out, read at `at`. What was
    /// created after `unseen_after` outside the view never reached the device, so its being
    /// outside is no news (for hints only; the feed itself reports every removal).
    pub fn view_page(
        &self,
        user: UserId,
        profile: &CompiledProfile,
        since: i64,
        limit: usize,
        at: Timestamp,
        unseen_after: Option<Timestamp>,
    ) -> Result<ChangesPage> {
        let batch = self.store.changes(user, since, limit)?;
        let mut view = DeviceView::new(self, user, profile, at, unseen_after);
        for row in &batch.rows {
            view.push(row)?;
        }
        view.finish()?;
        Ok(ChangesPage { changes: view.changes, cursor: batch.cursor, has_more: batch.has_more, time: Some(at) })
    }

    /// Objects the journal did not bring (their last change is at or before `since`) that
    /// entered or left the view because time passed from `from` to `to`: an age boundary of the
    /// filter lies between the two for them.
    fn time_crossings(
        &self,
        user: UserId,
        profile: &CompiledProfile,
        since: i64,
        from: Timestamp,
        to: Timestamp,
    ) -> Result<Vec<Change>> {
        let (early, late) = if from <= to { (from, to) } else { (to, from) };
        let mut candidates: HashMap<String, Object> = HashMap::new();
        for age in profile.ages() {
            let (after, until) = (early - age, late - age);
            for object in self.store.objects_modified_between(user, after, until, MAX_TIME_CROSSINGS + 1)? {
                candidates.insert(object.id.clone(), object);
            }
            if candidates.len() > MAX_TIME_CROSSINGS {
                return Err(StoreError::ResyncRequired { since, oldest: since }.into());
            }
        }
        let mut ids: Vec<&String> = candidates.keys().collect();
        ids.sort();
        let mut before = DeviceView::new(self, user, profile, from, None);
        let mut after = DeviceView::new(self, user, profile, to, None);
        let mut crossed = Vec::new();
        for id in ids {
            let Some(object) = candidates.get(id).filter(|object| object.modseq <= since) else { continue };
            let item = Item::Object(object.clone());
            let (was, is) = (before.wanted(&item)?, after.wanted(&item)?);
            if was != is {
                crossed.push(if is {
                    after.upsert(&item)
                } else {
                    Change {
                        modseq: object.modseq,
                        kind: item.kind(),
                        id: object.id.clone(),
                        deleted: true,
                        entry: None,
                    }
                });
            }
        }
        Ok(crossed)
    }

    /// When the view next changes with time alone: the first instant after `now` at which an
    /// object's age crosses a boundary of the filter.
    pub fn next_time_crossing(
        &self,
        user: UserId,
        profile: &CompiledProfile,
        now: Timestamp,
    ) -> Result<Option<Timestamp>> {
        let mut next: Option<Timestamp> = None;
        for age in profile.ages() {
            if let Some(modified) = self.store.next_modified_after(user, now - age)? {
                // The boundary itself still counts as one side of it: just past it is the other.
                let crossing = modified + age + SignedDuration::from_millis(1);
                next = Some(next.map_or(crossing, |next| next.min(crossing)));
            }
        }
        Ok(next)
    }
}

/// The journal seen through one device's profile.
///
/// Invariant: a device never receives a record outside its record filter, nor a detail outside
/// its field filter; each changed row reaches it as an upsert of what it may hold or a removal.
struct DeviceView<'a> {
    service: &'a Service,
    user: UserId,
    profile: &'a CompiledProfile,
    now: Timestamp,
    folder_paths: HashMap<String, String>,
    changes: Vec<Change>,
    /// Each record goes out once per page: rows and a moved folder's descendants overlap.
    sent: HashSet<String>,
    unseen_after: Option<Timestamp>,
    /// Folders whose rows changed, whose contents are seen again after the page's own rows.
    moved: Vec<String>,
}

impl<'a> DeviceView<'a> {
    fn new(
        service: &'a Service,
        user: UserId,
        profile: &'a CompiledProfile,
        now: Timestamp,
        unseen_after: Option<Timestamp>,
    ) -> Self {
        Self {
            service,
            user,
            profile,
            now,
            folder_paths: HashMap::new(),
            changes: Vec::new(),
            sent: HashSet::new(),
            unseen_after,
            moved: Vec::new(),
        }
    }

    fn push(&mut self, row: &ChangedRow) -> Result<()> {
        match row {
            ChangedRow::Deleted { kind, id, modseq } => self.remove(*kind, id, *modseq),
            ChangedRow::Live(item) => {
                self.evaluate(item)?;
                // A moved folder can carry objects into or out of a path-based profile.
                if let Item::Folder(folder) = item
                    && self.profile.depends_on_paths()
                {
                    self.moved.push(folder.id.clone());
                }
            }
        }
        Ok(())
    }

    /// What moved folders carried into or out of the view, after every row of the page.
    ///
    /// Invariant: a page's own rows go out in modseq order; what a folder's move changed for
    /// the rows below it follows them, so no upsert comes before a removal it depends on.
    fn finish(&mut self) -> Result<()> {
        for folder in std::mem::take(&mut self.moved) {
            match self.service.store.descendants(self.user, &folder) {
                Ok(below) => {
                    for item in below {
                        self.evaluate(&item)?;
                    }
                }
                // Deleted later in the page: its contents' removals are among the rows.
                Err(StoreError::NotFound(_)) => {}
                Err(error) => return Err(error.into()),
            }
        }
        Ok(())
    }

    fn wanted(&mut self, item: &Item) -> Result<bool> {
        Ok(match item {
            Item::Folder(folder) => match &folder.parent_id {
                None => true,
                Some(parent) => {
                    let path = child_path_text(&self.folder_path(parent)?, &folder.name);
                    self.profile.wants_folder(&path)
                }
            },
            Item::Object(object) => {
                let path = child_path_text(&self.folder_path(&object.folder_id)?, &object.name);
                self.profile.wants_object(&facts(object, &path), self.now)
            }
        })
    }

    fn upsert(&self, item: &Item) -> Change {
        let entry = project(self.service.entry(item, None), self.profile);
        Change {
            modseq: item.modseq(),
            kind: item.kind(),
            id: item.id().to_owned(),
            deleted: false,
            entry: Some(entry),
        }
    }

    fn evaluate(&mut self, item: &Item) -> Result<()> {
        if !self.sent.insert(item.id().to_owned()) {
            return Ok(());
        }
        if self.wanted(item)? {
            let change = self.upsert(item);
            self.changes.push(change);
        } else {
            let created = match item {
                Item::Folder(folder) => folder.created,
                Item::Object(object) => object.created,
            };
            if self.unseen_after.is_none_or(|after| created <= after) {
                self.remove(item.kind(), item.id(), item.modseq());
            }
        }
        Ok(())
    }

    fn remove(&mut self, kind: EntryKind, id: &str, modseq: i64) {
        self.sent.insert(id.to_owned());
        self.changes.push(Change { modseq, kind, id: id.to_owned(), deleted: true, entry: None });
    }

    fn folder_path(&mut self, folder_id: &str) -> Result<String> {
        if let Some(path) = self.folder_paths.get(folder_id) {
            return Ok(path.clone());
        }
        let path = self.service.store.folder_path(self.user, folder_id)?.to_string();
        self.folder_paths.insert(folder_id.to_owned(), path.clone());
        Ok(path)
    }
}

/// What a filter reads of an object at `path`.
pub fn facts<'a>(object: &'a Object, path: &'a str) -> ObjectFacts<'a> {
    let message = object.message.as_deref();
    ObjectFacts {
        path,
        name: &object.name,
        kind: object.kind,
        content_type: &object.content_type,
        size: object.size,
        created: object.created,
        modified: object.modified,
        date: message.and_then(|message| message.date),
        flags: &object.flags,
        from: message.and_then(|message| message.from.as_deref()),
        to: message.map_or(&[], |message| message.to.as_slice()),
        subject: message.and_then(|message| message.subject.as_deref()),
    }
}

/// Drops the details the device does not keep.
fn project(mut entry: Entry, profile: &CompiledProfile) -> Entry {
    macro_rules! keep {
        ($($field:ident),*) => {
            $(if !profile.keeps(stringify!($field)) { entry.$field = None; })*
        };
    }
    keep!(
        content_type,
        size,
        hash,
        created,
        modified,
        flags,
        from,
        to,
        cc,
        subject,
        date,
        message_id,
        conversation_id,
        attachments
    );
    entry
}
