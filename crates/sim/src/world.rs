//! A simulated world: one user's store (the real store on a temporary SQLite, the real service
//! layer, a manual clock) and her devices, each the real engine on a simulated file system.

use crate::ledger::{Ledger, content};
use crate::ops::Op;
use crate::remote::{Gate, SimRemote};
use crate::simfs::{CRASH, SimFs, UserAction};
use cpm_agent::naming::META_DIR;
use cpm_agent::{Device, LocalFs, Report, Silent, SyncError, SyncResult};
use cpm_core::{Clock, Item, ManualClock};
use cpm_proto::CreateObjectRequest;
use cpm_service::{Limits, Service};
use cpm_store::{Principal, SqliteStore, StoreSettings, UserId};
use std::path::PathBuf;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

/// The zone devices date their conflict copies in; the clock starts shortly before its
/// daylight-saving time ends.
pub const ZONE: &str = "Europe/Paris";
const START: &str = "2026-10-24T23:40:00Z";

/// Profiles a device may be given: (name, preferences as the API takes them).
pub const PRESETS: [(&str, &str); 5] = [
    ("full", r#"{"mode":"full","include":null,"filter":null,"fields":null,"content":"download"}"#),
    ("small", r#"{"mode":"partial","include":null,"filter":"size < 40","fields":null,"content":"download"}"#),
    (
        "recent stubs",
        r#"{"mode":"partial","include":["/a/**"],"filter":"age < 2h","fields":["name","size","modified"],"content":"stub"}"#,
    ),
    ("stubs", r#"{"mode":"full","include":null,"filter":null,"fields":null,"content":"stub"}"#),
    ("text", r#"{"mode":"partial","include":null,"filter":"type ~ \"text/*\"","fields":null,"content":"download"}"#),
];

/// The devices of every world: (name, first profile, case-insensitive file system).
pub const DEVICES: [(&str, usize, bool); 4] =
    [("pc", 0, false), ("tablet", 1, false), ("phone", 2, false), ("mac", 0, true)];

/// Which invariant a violation breaks; shrinking keeps to one kind.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Broken {
    /// A content no user let go is nowhere.
    Lost,
    /// A content is in the store twice.
    Duplicated,
    /// The store holds a content no user wrote (a stub or a torn file taken for the user's).
    Junk,
    /// Once quiet, a device does not hold its view.
    Diverged,
    /// Syncs never become quiet, or fail once all is well.
    Stuck,
    /// A sync failed with no fault to blame.
    Failed,
    /// The engine panicked.
    Panicked,
    /// The simulation itself could not go on.
    Harness,
}

/// Something that must not happen happened.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    pub broken: Broken,
    pub message: String,
}

impl Violation {
    pub fn new(broken: Broken, message: impl Into<String>) -> Self {
        Self { broken, message: message.into() }
    }
}

impl std::fmt::Display for Violation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{:?}: {}", self.broken, self.message)
    }
}

pub type Checked<T = ()> = Result<T, Violation>;

pub(crate) struct Running {
    pub pid: u32,
    pub gate: Arc<Gate>,
    pub task: tokio::task::JoinHandle<SyncResult<Report>>,
}

pub(crate) struct SimDevice {
    pub name: String,
    pub id: String,
    pub fs: SimFs,
    pub index_dir: PathBuf,
    pub running: Vec<Running>,
    /// A fault or crash was injected since the last settling: a sync may fail.
    pub excused: bool,
    pub preset: usize,
    /// The index was lost while writes it knew of may not have reached the disk yet: a power
    /// cut may still tear them into empty files no index knows.
    pub unflushed_unknown: bool,
}

impl SimDevice {
    pub fn fs_case_insensitive(&self) -> bool {
        self.fs.case_insensitive()
    }
}

/// Counts of what a run did.
#[derive(Debug, Clone, Copy, Default)]
pub struct Stats {
    pub operations: u64,
    pub syncs: u64,
    pub crashes: u64,
    pub conflicts: u64,
    pub skipped: u64,
}

pub struct World {
    pub(crate) runtime: tokio::runtime::Runtime,
    _dir: tempfile::TempDir,
    pub(crate) clock: Arc<ManualClock>,
    pub(crate) service: Arc<Service>,
    pub(crate) user: UserId,
    pub(crate) devices: Vec<SimDevice>,
    next_pid: u32,
    pub(crate) ledger: Ledger,
    pub stats: Stats,
    /// What happened, in order, for the report of a failure.
    pub trace: Vec<String>,
    /// The device lock works (turned off only to show what it is for).
    pub lock: bool,
}

/// Where scratch files go: memory when the machine has a RAM file system.
fn scratch() -> std::io::Result<tempfile::TempDir> {
    let shm = std::path::Path::new("/dev/shm");
    let builder = tempfile::Builder::new().prefix("cpm-sim-").to_owned();
    if shm.is_dir() { builder.tempdir_in(shm).or_else(|_| builder.tempdir()) } else { builder.tempdir() }
}

fn fail(what: impl std::fmt::Display) -> Violation {
    Violation::new(Broken::Harness, format!("the simulation itself failed: {what}"))
}

impl World {
    pub fn new() -> Checked<Self> {
        let runtime = tokio::runtime::Builder::new_current_thread().enable_time().build().map_err(fail)?;
        let dir = scratch().map_err(fail)?;
        let start: jiff::Timestamp = START.parse().map_err(fail)?;
        let clock = Arc::new(ManualClock::new(start));
        let settings = StoreSettings {
            tombstone_retention: std::time::Duration::from_secs(24 * 3600),
            blob_grace: std::time::Duration::from_secs(3600),
        };
        let counter = Arc::new(AtomicU64::new(0));
        let ids: cpm_store::IdSource =
            Arc::new(move |kind| Ok(format!("{kind}{:06}", counter.fetch_add(1, Ordering::Relaxed))));
        let store = SqliteStore::open(&dir.path().join("store"), Arc::clone(&clock) as Arc<dyn Clock>, settings)
            .map_err(fail)?
            .with_ids(ids);
        let limits = Limits { max_object_bytes: 1 << 20, max_message_bytes: 1 << 20 };
        let service = Arc::new(Service::new(
            Arc::new(store),
            Arc::clone(&clock) as Arc<dyn Clock>,
            limits,
            "http://store.sim",
            Default::default(),
            None,
        ));
        // Nobody logs in: the password is never checked.
        let user = service.store.create_user("alice", "not-a-password-hash").map_err(fail)?;
        let mut world = World {
            runtime,
            _dir: dir,
            clock,
            service,
            user,
            devices: Vec::new(),
            next_pid: 1,
            ledger: Ledger::default(),
            stats: Stats::default(),
            trace: Vec::new(),
            lock: true,
        };
        for (name, preset, case_insensitive) in DEVICES {
            world.add_device(name, preset, case_insensitive)?;
        }
        Ok(world)
    }

    fn add_device(&mut self, name: &str, preset: usize, case_insensitive: bool) -> Checked {
        let device_name = cpm_core::Name::parse(name).map_err(fail)?;
        let record = self
            .service
            .store
            .register_device(self.user, &device_name, "other", Some(ZONE), &format!("token of {name}"))
            .map_err(fail)?;
        let index_dir = self._dir.path().join(format!("index-{name}"));
        std::fs::create_dir_all(&index_dir).map_err(fail)?;
        let now = i64::try_from(self.clock.now().as_nanosecond()).unwrap_or(0);
        let fs = SimFs::new(index_dir.clone(), case_insensitive, now);
        self.devices.push(SimDevice {
            name: name.to_owned(),
            id: record.id,
            fs,
            index_dir,
            running: Vec::new(),
            excused: false,
            unflushed_unknown: false,
            preset,
        });
        let device = self.devices.len() - 1;
        self.set_profile(device, preset)
    }

    fn set_profile(&mut self, device: usize, preset: usize) -> Checked {
        let Some((_, json)) = PRESETS.get(preset) else { return Ok(()) };
        let patch: serde_json::Map<String, serde_json::Value> = serde_json::from_str(json).map_err(fail)?;
        let id = self.devices[device].id.clone();
        self.service.set_preferences(self.user, &id, &patch).map_err(fail)?;
        self.devices[device].preset = preset;
        Ok(())
    }

    pub(crate) fn principal(&self, device: Option<usize>) -> Principal {
        Principal {
            user_id: self.user,
            user: "alice".into(),
            device_id: device.map(|device| self.devices[device].id.clone()),
        }
    }

    /// Carries out one operation.
    pub fn apply(&mut self, op: &Op) -> Checked {
        self.stats.operations += 1;
        self.trace.push(format!("{op:?}"));
        match op {
            Op::StorePut { path, content: n } => self.store_put(path, *n),
            Op::StoreReplace { path, content: n } => self.store_replace(path, *n),
            Op::StoreMove { from, to } => self.store_move(from, to),
            Op::StoreDelete { path } => self.store_delete(path, false),
            Op::StoreDeleteTree { path } => self.store_delete(path, true),
            Op::StoreMkdir { path } => {
                let _ = self.service.create_folder(self.user, path, true);
                Ok(())
            }
            Op::StoreFlags { path, flags } => {
                if let Ok(entry) = self.service.resolve(self.user, path) {
                    let _ = self.service.set_flags(self.user, &entry.id, flags);
                }
                Ok(())
            }
            Op::SetProfile { device, preset } => self.on(*device, |world, device| world.set_profile(device, *preset)),
            Op::Write { device, path, content: n } => {
                let bytes = Arc::new(content(*n));
                self.user_does(*device, UserAction::Write { path: path.clone(), bytes })
            }
            Op::Delete { device, path } => self.user_does(*device, UserAction::Delete { path: path.clone() }),
            Op::Rename { device, from, to } => {
                self.adopt_renamed(*device, from);
                self.user_does(*device, UserAction::Rename { from: from.clone(), to: to.clone() })
            }
            Op::Mkdir { device, path } => self.user_does(*device, UserAction::Mkdir { path: path.clone() }),
            Op::RemoveTree { device, path } => self.user_does(*device, UserAction::RemoveTree { path: path.clone() }),
            Op::DirToFile { device, path, content: n } => {
                if !self.devices.get(*device).is_some_and(|simulated| simulated.fs.is_dir(path)) {
                    return Ok(());
                }
                self.user_does(*device, UserAction::RemoveTree { path: path.clone() })?;
                let bytes = Arc::new(content(*n));
                self.user_does(*device, UserAction::Write { path: path.clone(), bytes })
            }
            Op::WriteDuringSync { device, at, path, content: n } => self.on(*device, |world, device| {
                let bytes = Arc::new(content(*n));
                world.devices[device]
                    .fs
                    .user_before_op(u64::from(*at), UserAction::Write { path: path.clone(), bytes });
                let outcome = world.sync(device, None);
                world.devices[device].fs.disarm();
                world.take_user_log(device);
                outcome
            }),
            Op::LoseIndex { device } => self.on(*device, |world, device| {
                world.kill(device);
                // A download a power cut tore is an empty file, known for the engine's own only
                // by the index; without it, it is as good as one the user made.
                world.adopt_empty_files(device);
                world.devices[device].unflushed_unknown = true;
                let _ = std::fs::remove_dir_all(&world.devices[device].index_dir);
                std::fs::create_dir_all(&world.devices[device].index_dir).map_err(fail)
            }),
            Op::Sync { device } => self.on(*device, |world, device| world.sync(device, None)),
            Op::SyncPartly { device, calls } => {
                self.on(*device, |world, device| world.sync(device, Some(u32::from(*calls))))
            }
            Op::Resume { device } => self.on(*device, |world, device| world.resume(device)),
            Op::SecondSync { device } => self.on(*device, |world, device| world.sync(device, None)),
            Op::Kill { device } => self.on(*device, |world, device| {
                world.kill(device);
                Ok(())
            }),
            Op::CrashAt { device, at, power } => self.on(*device, |world, device| {
                world.devices[device].excused = true;
                world.devices[device].fs.crash_before_op(u64::from(*at));
                let outcome = world.sync(device, None);
                world.devices[device].fs.disarm();
                if let Some(kept) = power {
                    world.power_cut(device, usize::from(*kept));
                }
                outcome
            }),
            Op::PowerCut { device, kept } => self.on(*device, |world, device| {
                world.power_cut(device, usize::from(*kept));
                Ok(())
            }),
            Op::Fault { device, on, errno } => self.on(*device, |world, device| {
                world.devices[device].excused = true;
                world.devices[device].fs.fail_next(*on, *errno);
                Ok(())
            }),
            Op::ReadOnly { device, path, readonly } => self.on(*device, |world, device| {
                world.devices[device].excused = true;
                world.devices[device].fs.set_readonly(path, *readonly);
                Ok(())
            }),
            Op::ClockJump { seconds } => {
                self.clock.advance(jiff::SignedDuration::from_secs(*seconds));
                let now = i64::try_from(self.clock.now().as_nanosecond()).unwrap_or(0);
                for device in &self.devices {
                    device.fs.clock_at(now);
                }
                Ok(())
            }
            Op::Settle => self.settle().and_then(|()| self.check_quiet()),
            Op::ExpireTombstones => {
                self.service.store.collect_garbage().map_err(fail)?;
                Ok(())
            }
        }
    }

    fn on(&mut self, device: usize, then: impl FnOnce(&mut Self, usize) -> Checked) -> Checked {
        if device < self.devices.len() { then(self, device) } else { Ok(()) }
    }

    fn user_does(&mut self, device: usize, action: UserAction) -> Checked {
        self.on(device, |world, device| {
            world.devices[device].fs.user(&action);
            world.take_user_log(device);
            Ok(())
        })
    }

    /// Notes in the ledger what the user's actions on a device wrote and replaced.
    pub(crate) fn take_user_log(&mut self, device: usize) {
        for (action, replaced) in self.devices[device].fs.take_user_log() {
            if let UserAction::Write { bytes, .. } = &action {
                self.ledger.wrote(bytes);
            }
            for bytes in replaced {
                self.ledger.released(&bytes);
            }
        }
    }

    /// Every folder and object of the store below the root.
    pub(crate) fn store_items(&self) -> Checked<Vec<cpm_core::Item>> {
        let store = &self.service.store;
        let root = store.resolve(self.user, &cpm_core::StorePath::root()).map_err(fail)?;
        store.descendants(self.user, root.id()).map_err(fail)
    }

    /// The store's objects and folders (below the root), by path.
    pub fn store_paths(&self) -> (Vec<String>, Vec<String>) {
        let Ok(items) = self.store_items() else { return Default::default() };
        let Ok(entries) = self.service.located(self.user, items) else { return Default::default() };
        let (mut files, mut folders) = (Vec::new(), Vec::new());
        for entry in entries {
            let path = entry.path.unwrap_or_default();
            if entry.kind == cpm_core::EntryKind::Folder { folders.push(path) } else { files.push(path) }
        }
        (files, folders)
    }

    /// What every side holds, one line each, for reading a failure: the store's objects by path
    /// and hash, each device's files by path and content (`#n#`, or `stub`).
    pub fn snapshot(&self) -> Vec<String> {
        let short = |hash: &str| hash.get(..6).unwrap_or_default().to_owned();
        let mut lines = Vec::new();
        if let Ok(items) = self.store_items()
            && let Ok(entries) = self.service.located(self.user, items)
        {
            let mut shown: Vec<String> = entries
                .into_iter()
                .map(|entry| {
                    let what = entry.hash.as_deref().map_or_else(|| "folder".to_owned(), short);
                    format!("{} {what} ({})", entry.path.unwrap_or_default(), entry.id)
                })
                .collect();
            shown.sort();
            lines.push(format!("store: {}", shown.join(" | ")));
        }
        for simulated in &self.devices {
            let (files, dirs) = simulated.fs.contents();
            let mut shown: Vec<String> = files
                .iter()
                .filter(|(path, _)| !path.starts_with(META_DIR))
                .map(|(path, bytes)| {
                    let text = String::from_utf8_lossy(bytes);
                    let what = if bytes.first() == Some(&b'{') {
                        "stub".to_owned()
                    } else {
                        text.split('#').nth(1).map_or_else(|| short(&crate::ledger::hash(bytes)), |n| format!("#{n}"))
                    };
                    format!("{path} {what}")
                })
                .chain(dirs.iter().filter(|path| !path.starts_with(META_DIR)).map(|path| format!("{path}/")))
                .collect();
            shown.sort();
            lines.push(format!("{}: {}", simulated.name, shown.join(" | ")));
        }
        lines
    }

    /// A device's files (its stubs left out: a user does not edit those) and folders, outside
    /// its own folder.
    pub fn local_paths(&self, device: usize) -> (Vec<String>, Vec<String>) {
        let Some(simulated) = self.devices.get(device) else { return Default::default() };
        let (files, dirs) = simulated.fs.contents();
        let mine = |path: &String| path != META_DIR && !path.starts_with(&format!("{META_DIR}/"));
        let files =
            files.into_iter().filter(|(path, bytes)| mine(path) && bytes.first() != Some(&b'{')).map(|(path, _)| path);
        (files.collect(), dirs.into_iter().filter(mine).collect())
    }

    /// A device's stubs (outside its own folder): a user renames and moves those too.
    pub fn stub_paths(&self, device: usize) -> Vec<String> {
        let Some(simulated) = self.devices.get(device) else { return Vec::new() };
        let (files, _) = simulated.fs.contents();
        files
            .into_iter()
            .filter(|(path, bytes)| !path.starts_with(&format!("{META_DIR}/")) && bytes.first() == Some(&b'{'))
            .map(|(path, _)| path)
            .collect()
    }

    /// True when a sync of the device is parked.
    pub fn parked(&self, device: usize) -> bool {
        self.devices.get(device).is_some_and(|simulated| !simulated.running.is_empty())
    }

    // The store side.

    fn folder_of(&self, path: &str) -> Option<(String, String)> {
        let (parent, name) = path.rsplit_once('/')?;
        let parent = if parent.is_empty() { "/" } else { parent };
        let folder = self.service.create_folder(self.user, parent, true).ok()?;
        Some((folder.id, name.to_owned()))
    }

    fn put_blob(&self, bytes: &[u8]) -> Checked<String> {
        let hash = blake3::hash(bytes).to_hex().to_string();
        let size = bytes.len() as u64;
        if self.service.blob_wanted(self.user, &hash, size).map_err(fail)? {
            let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes.to_vec())]);
            let verified = self.runtime.block_on(self.service.receive_blob(&hash, size, chunks)).map_err(fail)?;
            self.service.commit_blob(self.user, verified).map_err(fail)?;
        }
        Ok(hash)
    }

    fn create(&mut self, folder_id: String, name: &str, n: u32, replace: bool) -> Checked {
        let bytes = content(n);
        let hash = self.put_blob(&bytes)?;
        let content_type = mime_for(name);
        let request = CreateObjectRequest {
            folder_id,
            name: name.to_owned(),
            kind: cpm_core::ObjectKind::File,
            hash,
            content_type,
            replace,
            base_modseq: None,
            modified: None,
            unless_held: false,
        };
        if self.service.create_object(self.user, None, request).is_ok() {
            self.ledger.wrote(&bytes);
        }
        Ok(())
    }

    fn store_put(&mut self, path: &str, n: u32) -> Checked {
        let Some((folder, name)) = self.folder_of(path) else { return Ok(()) };
        if self.service.resolve(self.user, path).is_ok() {
            return Ok(());
        }
        self.create(folder, &name, n, false)
    }

    fn store_replace(&mut self, path: &str, n: u32) -> Checked {
        let Ok(entry) = self.service.resolve(self.user, path) else { return Ok(()) };
        let (Some(folder), Some(old)) = (entry.parent_id.clone(), entry.hash.clone()) else { return Ok(()) };
        self.ledger.released_hash(&old);
        self.create(folder, &entry.name, n, true)
    }

    fn store_move(&mut self, from: &str, to: &str) -> Checked {
        let Ok(entry) = self.service.resolve(self.user, from) else { return Ok(()) };
        let Some((folder, name)) = self.folder_of(to) else { return Ok(()) };
        let request = cpm_proto::MoveRequest { ids: vec![entry.id], to: Some(folder), name: Some(name), revive: false };
        let _ = self.service.move_entries(self.user, &request);
        Ok(())
    }

    fn store_delete(&mut self, path: &str, tree: bool) -> Checked {
        let Ok(entry) = self.service.resolve(self.user, path) else { return Ok(()) };
        let store = Arc::clone(&self.service.store);
        if entry.kind == cpm_core::EntryKind::Folder {
            if !tree || entry.parent_id.is_none() {
                return Ok(());
            }
            for item in store.descendants(self.user, &entry.id).map_err(fail)? {
                if let Item::Object(object) = item {
                    self.ledger.released_hash(&object.hash);
                }
            }
            let _ = self.service.delete_folder(self.user, &entry.id, true);
        } else {
            if let Some(hash) = &entry.hash {
                self.ledger.released_hash(hash);
            }
            let _ = self.service.delete_object(self.user, &entry.id, None);
        }
        Ok(())
    }

    // The engine.

    fn spawn(&mut self, device: usize, budget: Option<u32>) -> Running {
        let pid = self.next_pid;
        self.next_pid += 1;
        let gate = Gate::new(budget);
        let simulated = &self.devices[device];
        simulated.fs.set_lock_enabled(self.lock);
        let engine = Device {
            name: simulated.name.clone(),
            remote: SimRemote {
                service: Arc::clone(&self.service),
                principal: self.principal(Some(device)),
                gate: Arc::clone(&gate),
            },
            fs: simulated.fs.process(pid),
            progress: Box::new(Silent),
            clock: Arc::clone(&self.clock) as Arc<dyn Clock>,
            zone: jiff::tz::TimeZone::get(ZONE).unwrap_or(jiff::tz::TimeZone::UTC),
            wait_for_lock: false,
        };
        let task = self.runtime.spawn(async move { engine.sync().await });
        Running { pid, gate, task }
    }

    /// Runs a sync until it ends or parks at its gate; true when it ended.
    fn drive(&mut self, device: usize, at: usize) -> Checked<bool> {
        let running = &mut self.devices[device].running[at];
        let ended = self.runtime.block_on(async {
            tokio::select! {
                biased;
                result = &mut running.task => Some(result),
                () = running.gate.parked() => None,
            }
        });
        let Some(result) = ended else { return Ok(false) };
        let running = self.devices[device].running.remove(at);
        self.ended(device, running.pid, result)?;
        Ok(true)
    }

    fn ended(
        &mut self,
        device: usize,
        pid: u32,
        result: Result<SyncResult<Report>, tokio::task::JoinError>,
    ) -> Checked {
        self.stats.syncs += 1;
        let name = self.devices[device].name.clone();
        match result {
            Ok(Ok(report)) => {
                self.stats.conflicts += report.conflicts.len() as u64;
                self.stats.skipped += report.skipped.len() as u64;
                self.trace.push(format!("  {name}: {}", report.summary()));
                Ok(())
            }
            // Another engine holds the device: this one did nothing, as it should.
            Ok(Err(SyncError::Busy { .. })) => {
                self.trace.push(format!("  {name}: busy"));
                Ok(())
            }
            Ok(Err(error)) => {
                self.trace.push(format!("  {name}: failed: {error}"));
                if self.devices[device].excused {
                    Ok(())
                } else {
                    Err(Violation::new(
                        Broken::Failed,
                        format!("a sync of {name} failed with no fault to blame: {error}"),
                    ))
                }
            }
            Err(join) if join.is_panic() => {
                let panic = join.into_panic();
                let message = panic
                    .downcast_ref::<&str>()
                    .map(|text| (*text).to_owned())
                    .or_else(|| panic.downcast_ref::<String>().cloned())
                    .unwrap_or_default();
                if message == CRASH {
                    self.stats.crashes += 1;
                    self.devices[device].fs.kill(pid);
                    self.trace.push(format!("  {name}: crashed"));
                    Ok(())
                } else {
                    Err(Violation::new(Broken::Panicked, format!("the engine panicked on {name}: {message}")))
                }
            }
            Err(_) => Ok(()),
        }
    }

    /// Starts a sync and runs it until it ends, or until it has made `budget` store calls.
    fn sync(&mut self, device: usize, budget: Option<u32>) -> Checked {
        let running = self.spawn(device, budget);
        self.devices[device].running.push(running);
        let at = self.devices[device].running.len() - 1;
        let outcome = self.drive(device, at);
        self.take_user_log(device);
        outcome.map(drop)
    }

    /// Lets every parked sync of the device run to its end.
    fn resume(&mut self, device: usize) -> Checked {
        while let Some(running) = self.devices[device].running.last() {
            running.gate.open(None);
            let at = self.devices[device].running.len() - 1;
            self.drive(device, at)?;
            self.take_user_log(device);
        }
        Ok(())
    }

    /// Kills every running sync of the device, wherever it is.
    fn kill(&mut self, device: usize) {
        for running in std::mem::take(&mut self.devices[device].running) {
            running.task.abort();
            let _ = self.runtime.block_on(running.task);
            self.devices[device].fs.kill(running.pid);
            self.stats.crashes += 1;
        }
    }

    fn power_cut(&mut self, device: usize, kept: usize) {
        self.kill(device);
        self.devices[device].excused = true;
        self.devices[device].fs.power_cut(kept);
        if std::mem::take(&mut self.devices[device].unflushed_unknown) {
            self.adopt_empty_files(device);
        }
    }

    /// Empty files on a device that no index knows for torn writes of the engine's are as good
    /// as ones the user made.
    /// A file the user renames (or moves with its folder) is hers, whatever is in it, unless it
    /// is an engine's intact stub (a link, which moves its object): a stub a power cut tore is an
    /// empty or broken file to her, and goes up as she named it.
    fn adopt_renamed(&mut self, device: usize, from: &str) {
        let Some(simulated) = self.devices.get(device) else { return };
        let (files, _) = simulated.fs.contents();
        let below = format!("{from}/");
        for (path, bytes) in files {
            let moved = path == from || path.starts_with(&below);
            let stub = serde_json::from_slice::<cpm_proto::Entry>(&bytes).is_ok();
            if moved && !stub && !path.starts_with(&format!("{META_DIR}/")) {
                if bytes.is_empty() { self.ledger.adopt_empty() } else { self.ledger.wrote(&bytes) }
            }
        }
    }

    fn adopt_empty_files(&mut self, device: usize) {
        if self.devices[device].fs.contents().0.values().any(|bytes| bytes.is_empty()) {
            self.ledger.adopt_empty();
        }
    }

    /// Ends every sync, lifts every fault, then syncs every device until a whole round changes
    /// nothing (or fails: no state may keep a device from converging).
    pub fn settle(&mut self) -> Checked {
        for device in 0..self.devices.len() {
            self.resume(device)?;
            self.devices[device].fs.clear_faults();
            self.devices[device].excused = false;
        }
        for _round in 0..8 {
            let mut quiet = true;
            for device in 0..self.devices.len() {
                let running = self.spawn(device, None);
                self.devices[device].running.push(running);
                let report = self.run_to_end(device)?;
                quiet &= report.is_quiet();
            }
            if quiet {
                return Ok(());
            }
        }
        Err(Violation::new(Broken::Stuck, "the devices never stop changing: eight rounds of syncs were not quiet"))
    }

    fn run_to_end(&mut self, device: usize) -> Checked<Report> {
        let Some(running) = self.devices[device].running.pop() else { return Ok(Report::default()) };
        let name = self.devices[device].name.clone();
        self.stats.syncs += 1;
        let result = self.runtime.block_on(running.task);
        match result {
            Ok(Ok(report)) => {
                self.trace.push(format!("  settle {name}: {}", report.summary()));
                Ok(report)
            }
            Ok(Err(error)) => {
                Err(Violation::new(Broken::Stuck, format!("{name} cannot sync once all is well again: {error}")))
            }
            Err(join) => Err(Violation::new(Broken::Panicked, format!("the engine panicked on {name}: {join}"))),
        }
    }
}

/// The content type the store is told for a name.
fn mime_for(name: &str) -> Option<String> {
    let extension = name.rsplit_once('.').map(|(_, extension)| extension.to_ascii_lowercase());
    match extension.as_deref() {
        Some("txt") => Some("text/plain".into()),
        Some("mp3") => Some("audio/mpeg".into()),
        Some("jpg") => Some("image/jpeg".into()),
        _ => None,
    }
}
