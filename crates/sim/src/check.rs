//! What must hold: after every step, and once the world is quiet.
//!
//! 1. Nothing lost: every content a user wrote is in the store, or on some device, unless a
//!    user's own action (a delete, an overwrite) let a copy of it go.
//! 2. Nothing duplicated: no two live objects hold one content, and none holds a content no user
//!    wrote (an engine's stub or a torn file taken for the user's).
//! 3. Convergence: once quiet, every device holds exactly the store seen through its profile,
//!    under the names it should, and nothing else but files whose names the store refuses.
//! 4. Progress: every sync ends, and once faults are lifted no sync fails (see
//!    [`crate::World::settle`]).

use crate::ledger::hash;
use crate::world::{Broken, Checked, PRESETS, Violation, World};
use cpm_agent::index::Index;
use cpm_agent::naming::{META_DIR, local_name};
use cpm_agent::plan::LocalState;
use cpm_core::{Item, Name};
use cpm_proto::Entry;
use cpm_service::view::FeedRequest;
use std::collections::{BTreeMap, BTreeSet};
use unicode_normalization::UnicodeNormalization;

fn fail(what: impl std::fmt::Display) -> Violation {
    Violation::new(Broken::Harness, format!("the check itself failed: {what}"))
}

impl World {
    /// Every live object of the store: (its path with its id, its hash).
    fn store_objects(&self) -> Checked<Vec<(String, String)>> {
        let items = self.store_items()?;
        let paths = self.service.located(self.user, items.clone()).map_err(fail)?;
        Ok(items
            .into_iter()
            .zip(paths)
            .filter_map(|(item, entry)| match item {
                Item::Object(object) => {
                    Some((format!("{} ({})", entry.path.unwrap_or_default(), object.id), object.hash))
                }
                Item::Folder(_) => None,
            })
            .collect())
    }

    /// Invariant 1, after every step.
    pub fn check_nothing_lost(&self) -> Checked {
        let mut found: BTreeSet<String> = (self.store_items()?.into_iter())
            .filter_map(|item| match item {
                Item::Object(object) => Some(object.hash),
                Item::Folder(_) => None,
            })
            .collect();
        for device in &self.devices {
            let (files, _) = device.fs.contents();
            found.extend(files.values().map(|bytes| hash(bytes)));
        }
        match self.ledger.kept().find(|kept| !found.contains(*kept)) {
            Some(lost) => Err(Violation::new(
                Broken::Lost,
                format!("content {} ({lost}) is lost: it is nowhere, and no user let it go", self.ledger.label(lost)),
            )),
            None => Ok(()),
        }
    }

    /// Invariants 2 and 3, once the world is quiet.
    pub fn check_quiet(&self) -> Checked {
        self.check_nothing_lost()?;
        let objects = self.store_objects()?;
        let mut holders: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
        for (path, content) in &objects {
            if !self.ledger.is_users(content) {
                return Err(Violation::new(Broken::Junk, format!("{path} holds a content no user wrote")));
            }
            holders.entry(content).or_default().push(path);
        }
        if let Some((_, paths)) =
            holders.iter().find(|(content, paths)| paths.len() > 1 && !self.ledger.may_repeat(content))
        {
            return Err(Violation::new(Broken::Duplicated, format!("one content is in the store twice: {paths:?}")));
        }
        let kept: BTreeSet<&String> = self.ledger.kept().collect();
        for content in kept {
            if !holders.contains_key(content) && !self.unsyncable_holds(content) {
                return Err(Violation::new(Broken::Lost, format!("content {content} never reached the store")));
            }
        }
        for device in 0..self.devices.len() {
            self.check_device(device)?;
        }
        Ok(())
    }

    /// True when a device holds this content in a file the store cannot take.
    fn unsyncable_holds(&self, content: &str) -> bool {
        self.devices.iter().any(|device| {
            let (files, _) = device.fs.contents();
            files.iter().any(|(path, bytes)| hash(bytes) == content && unsyncable(path, &files))
        })
    }

    /// The device's view, as the store would send it from scratch.
    fn view(&self, device: usize) -> Checked<BTreeMap<String, Entry>> {
        let id = &self.devices[device].id;
        let mut view = BTreeMap::new();
        let mut since = 0;
        let at = Some(cpm_core::Clock::now(self.clock.as_ref()));
        loop {
            let request = FeedRequest { since, limit: 10_000, at, ..FeedRequest::default() };
            let page = self.service.device_feed(self.user, id, request).map_err(fail)?;
            for change in page.changes {
                match change.entry {
                    Some(entry) if !change.deleted => view.insert(change.id, entry),
                    _ => view.remove(&change.id),
                };
            }
            since = page.cursor;
            if !page.has_more {
                return Ok(view);
            }
        }
    }

    fn check_device(&self, device: usize) -> Checked {
        let simulated = &self.devices[device];
        let name = &simulated.name;
        let stubs = PRESETS[simulated.preset].1.contains("\"stub\"");
        let broken = |what: String| Err(Violation::new(Broken::Diverged, format!("{name}: {what}")));
        let index = Index::open(&simulated.index_dir).map_err(fail)?;
        let tree = index.load().map_err(fail)?;
        let view = self.view(device)?;
        let records: BTreeSet<&String> = tree.records.keys().filter(|id| **id != tree.root_id).collect();
        let wanted: BTreeSet<&String> = view.keys().filter(|id| **id != tree.root_id).collect();
        if let Some(missing) = wanted.difference(&records).next() {
            return broken(format!("holds no record of {missing} ({:?}), which its view has", view[*missing].name));
        }
        if let Some(extra) = records.difference(&wanted).next() {
            return broken(format!(
                "holds a record of {extra} ({:?}), which its view has not",
                tree.records[*extra].name
            ));
        }
        let (files, dirs) = simulated.fs.contents();
        let paths = tree.paths();
        let mut accounted: BTreeSet<String> = BTreeSet::new();
        for (id, record) in &tree.records {
            if *id == tree.root_id {
                continue;
            }
            let entry = &view[id];
            if record.name != entry.name || record.parent_id != entry.parent_id {
                return broken(format!(
                    "{id} is {:?} in {:?} here, {:?} in {:?} in the store",
                    record.name, record.parent_id, entry.name, entry.parent_id
                ));
            }
            let Some(path) = paths.get(id) else { return broken(format!("{id} has no path here")) };
            let ok = match record.state {
                LocalState::Folder => dirs.contains(path),
                // Or moved by the user to a name the store refuses: the move waits for a name
                // it takes.
                LocalState::File => {
                    let stored = self.service.entry_by_id(self.user, id).map_err(fail)?.hash;
                    match files.get(path) {
                        Some(bytes) => Some(hash(bytes)) == stored,
                        None => {
                            files.iter().any(|(other, bytes)| unsyncable(other, &files) && Some(hash(bytes)) == stored)
                        }
                    }
                }
                LocalState::Stub => {
                    let stub: Option<Entry> = files.get(path).and_then(|bytes| serde_json::from_slice(bytes).ok());
                    stubs && stub.is_some_and(|stub| stub.id == *id && stub.name == entry.name)
                }
            };
            if !ok {
                return broken(format!("{path} does not hold what its record {id} says ({:?})", record.state));
            }
            if !stubs && record.state == LocalState::Stub {
                return broken(format!("{path} is a stub on a device that downloads"));
            }
            let own = local_name(record.kind, &record.name, record.state == LocalState::Stub);
            let file_name = record.file_name();
            let siblings = || -> Vec<&str> {
                let folder = path.rsplit_once('/').map_or("", |(folder, _)| folder);
                files
                    .keys()
                    .chain(dirs.iter())
                    .filter(|other| *other != path && other.rsplit_once('/').map_or("", |(parent, _)| parent) == folder)
                    .map(|other| other.rsplit_once('/').map_or(other.as_str(), |(_, name)| name))
                    .collect()
            };
            if file_name != own
                && !justified(&own, &file_name, record, &tree, &siblings(), simulated.fs_case_insensitive())
            {
                return broken(format!("{path} has a name of its own for no reason (its name is {own:?})"));
            }
            accounted.insert(path.clone());
        }
        for path in files.keys().chain(dirs.iter()) {
            if path == META_DIR || path.starts_with(&format!("{META_DIR}/")) || accounted.contains(path) {
                continue;
            }
            // A folder holding what the store cannot take (a file, or a folder under a name it
            // refuses) stays with it.
            let below = format!("{path}/");
            let holds_unsyncable =
                files.keys().chain(dirs.iter()).any(|inner| inner.starts_with(&below) && unsyncable(inner, &files));
            if !(unsyncable(path, &files) || dirs.contains(path) && holds_unsyncable) {
                return broken(format!("{path} is here but in no record"));
            }
        }
        Ok(())
    }
}

/// A name of its own is for a record that cannot have its name here: too long with its suffix,
/// taken under this file system's rules by another record or by a file or folder of the user's
/// the store does not hold (outside the view, or with a name it refuses inside), or kept in the
/// Unicode form the user gave it here.
fn justified(
    own: &str,
    given: &str,
    record: &cpm_agent::plan::Record,
    tree: &cpm_agent::plan::Tree,
    siblings: &[&str],
    folds: bool,
) -> bool {
    let fold = |name: &str| -> String {
        let nfc: String = name.nfc().collect();
        if folds { nfc.chars().flat_map(char::to_lowercase).collect() } else { nfc }
    };
    own.len() > 255
        || fold(given) == fold(own)
        || tree.records.values().any(|other| {
            other.id != record.id && other.parent_id == record.parent_id && fold(&other.file_name()) == fold(own)
        })
        || siblings.iter().any(|sibling| *sibling != given && fold(sibling) == fold(own))
}

/// True for a local file the store can never hold: a name it refuses, or one that clashes with
/// a sibling once normalized (the user must rename one).
fn unsyncable(path: &str, files: &BTreeMap<String, std::sync::Arc<Vec<u8>>>) -> bool {
    if path.split('/').any(|name| Name::parse(name).is_err()) {
        return true;
    }
    let nfc = |text: &str| text.nfc().collect::<String>();
    let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
    files.keys().any(|other| {
        let (other_folder, other_name) = other.rsplit_once('/').unwrap_or(("", other));
        other != path && other_folder == folder && nfc(other_name) == nfc(name)
    })
}
