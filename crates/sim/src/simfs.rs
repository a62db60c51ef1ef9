//! A simulated file system for one device: an in-memory tree that knows which of the engine's
//! writes are durable, so that a simulated power cut drops what was not flushed (as ext4 may:
//! a prefix of the namespace changes survives, and a file whose data was never flushed comes
//! back empty). It can fold case as a case-insensitive file system does, fail a chosen
//! operation with ENOSPC, EIO or EACCES, run a user's action just before a chosen engine
//! operation, and crash the engine at one.

use cpm_agent::fs::{DirEntry, Kind, LocalFs, Locked, Meta, TempFile};
use cpm_agent::plan::FileStamp;
use std::collections::{BTreeMap, BTreeSet, HashMap};
use std::ffi::OsString;
use std::io;
use std::path::PathBuf;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use unicode_normalization::UnicodeNormalization;

/// The panic a simulated crash unwinds with.
pub const CRASH: &str = "simulated crash";

/// A namespace change, replayable on an older tree.
#[derive(Debug, Clone)]
enum NsOp {
    Link { path: String, node: Node },
    Unlink { path: String },
    Rename { from: String, to: String },
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Node {
    Dir,
    File(u64),
}

#[derive(Debug, Clone)]
struct Entry {
    /// The full path as it was given, each name in its own case.
    shown: String,
    node: Node,
    mtime: i64,
}

#[derive(Debug, Clone, Default)]
struct Namespace {
    /// By folded path (each name folded when the file system folds case).
    entries: BTreeMap<String, Entry>,
}

#[derive(Debug, Clone)]
struct Inode {
    data: Arc<Vec<u8>>,
    mtime: i64,
    /// What survives a power cut: the data as last flushed.
    durable: Option<(Arc<Vec<u8>>, i64)>,
}

/// Which engine operations an injected fault hits.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum FaultOn {
    Write,
    Rename,
    Mkdir,
    Remove,
    Flush,
}

impl std::fmt::Debug for FaultOn {
    // As Rust source: regression tests print operations this way.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let name = match self {
            FaultOn::Write => "Write",
            FaultOn::Rename => "Rename",
            FaultOn::Mkdir => "Mkdir",
            FaultOn::Remove => "Remove",
            FaultOn::Flush => "Flush",
        };
        write!(f, "FaultOn::{name}")
    }
}

/// A user's action on the device's directory.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum UserAction {
    /// Creates the file (and its folders) or overwrites it in place.
    Write {
        path: String,
        bytes: Arc<Vec<u8>>,
    },
    Delete {
        path: String,
    },
    Rename {
        from: String,
        to: String,
    },
    Mkdir {
        path: String,
    },
    RemoveTree {
        path: String,
    },
}

struct State {
    tree: Namespace,
    durable: Namespace,
    journal: Vec<NsOp>,
    inodes: HashMap<u64, Inode>,
    next_ino: u64,
    clock: i64,
    boot: u64,
    case_insensitive: bool,
    lock_enabled: bool,
    lock: Option<u32>,
    /// Processes running on the device; a dead one's calls fail.
    alive: BTreeSet<u32>,
    engine_ops: u64,
    crash_at: Option<u64>,
    hooks: Vec<(u64, UserAction)>,
    faults: Vec<(FaultOn, i32)>,
    readonly: BTreeSet<String>,
    index_dir: PathBuf,
    /// Every user action carried out, with the contents it removed or overwrote.
    user_log: Vec<(UserAction, Vec<Arc<Vec<u8>>>)>,
}

/// One process's view of a device's simulated file system; processes of one device share it.
#[derive(Clone)]
pub struct SimFs {
    state: Arc<Mutex<State>>,
    pid: u32,
}

fn lock(state: &Mutex<State>) -> MutexGuard<'_, State> {
    state.lock().unwrap_or_else(PoisonError::into_inner)
}

fn errno(code: i32) -> io::Error {
    io::Error::from_raw_os_error(code)
}

const ENOENT: i32 = 2;
const EACCES: i32 = 13;
const EEXIST: i32 = 17;
const ENOTDIR: i32 = 20;
const EISDIR: i32 = 21;
const ENAMETOOLONG: i32 = 36;
const ENOTEMPTY: i32 = 39;

fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

/// How a new entry at `path` shows: its folder as that shows, then its own name as given.
fn shown_in(namespace: &Namespace, path: &str, fold: &impl Fn(&str) -> String) -> String {
    let (parent, name) = path.rsplit_once('/').unwrap_or(("", path));
    match namespace.entries.get(&fold(parent)).map(|entry| entry.shown.as_str()) {
        Some(folder) if !folder.is_empty() => format!("{folder}/{name}"),
        _ => name.to_owned(),
    }
}

impl Namespace {
    fn children<'a>(&'a self, key: &'a str) -> impl Iterator<Item = (&'a String, &'a Entry)> + 'a {
        let prefix = if key.is_empty() { String::new() } else { format!("{key}/") };
        let length = prefix.len();
        let start = prefix.clone();
        self.entries
            .range(start..)
            .take_while(move |(child, _)| child.starts_with(&prefix))
            .filter(move |(child, _)| !child.is_empty() && !child[length..].contains('/'))
    }

    fn below(&self, key: &str) -> Vec<String> {
        let prefix = format!("{key}/");
        self.entries
            .range(prefix.clone()..)
            .take_while(|(child, _)| child.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }
}

impl State {
    fn fold(&self, path: &str) -> String {
        if self.case_insensitive {
            path.split('/')
                .map(|name| name.nfc().flat_map(char::to_lowercase).collect::<String>())
                .collect::<Vec<_>>()
                .join("/")
        } else {
            path.to_owned()
        }
    }

    fn tick(&mut self) -> i64 {
        self.clock += 1_000;
        self.clock
    }

    fn get(&self, path: &str) -> Option<&Entry> {
        self.tree.entries.get(&self.fold(path))
    }

    fn is_dir(&self, path: &str) -> bool {
        self.get(path).is_some_and(|entry| entry.node == Node::Dir)
    }

    fn touch_dir(&mut self, path: &str) {
        let now = self.tick();
        let key = self.fold(path);
        if let Some(entry) = self.tree.entries.get_mut(&key) {
            entry.mtime = now;
        }
    }

    fn check_name(path: &str) -> io::Result<()> {
        if path.split('/').any(|name| name.len() > 255) || path.len() > 4095 {
            return Err(errno(ENAMETOOLONG));
        }
        Ok(())
    }

    /// May a new entry be made at `path`: a name that fits, nothing there yet, in a folder that
    /// exists and takes changes?
    fn creatable(&self, path: &str) -> io::Result<()> {
        Self::check_name(path)?;
        if self.get(path).is_some() {
            return Err(errno(EEXIST));
        }
        if !self.is_dir(parent_of(path)) {
            return Err(errno(ENOENT));
        }
        self.writable(path)
    }

    /// May the engine add or remove an entry in `path`'s folder?
    fn writable(&self, path: &str) -> io::Result<()> {
        let folder = self.fold(parent_of(path));
        if self.readonly.iter().any(|readonly| self.fold(readonly) == folder) { Err(errno(EACCES)) } else { Ok(()) }
    }

    fn apply(&mut self, op: NsOp, engine: bool) {
        let now = self.tick();
        Self::apply_to(&mut self.tree, &op, now, self.case_insensitive);
        if engine {
            self.journal.push(op);
        }
    }

    fn apply_to(namespace: &mut Namespace, op: &NsOp, now: i64, case_insensitive: bool) {
        let fold = |path: &str| {
            if case_insensitive {
                path.split('/')
                    .map(|name| name.nfc().flat_map(char::to_lowercase).collect::<String>())
                    .collect::<Vec<_>>()
                    .join("/")
            } else {
                path.to_owned()
            }
        };
        let touch = |namespace: &mut Namespace, path: &str| {
            if let Some(entry) = namespace.entries.get_mut(&fold(parent_of(path))) {
                entry.mtime = now;
            }
        };
        match op {
            NsOp::Link { path, node } => {
                let shown = shown_in(namespace, path, &fold);
                namespace.entries.insert(fold(path), Entry { shown, node: *node, mtime: now });
                touch(namespace, path);
            }
            NsOp::Unlink { path } => {
                let key = fold(path);
                for below in namespace.below(&key) {
                    namespace.entries.remove(&below);
                }
                namespace.entries.remove(&key);
                touch(namespace, path);
            }
            NsOp::Rename { from, to } => {
                let (from_key, to_key) = (fold(from), fold(to));
                let moved: Vec<String> = std::iter::once(from_key.clone()).chain(namespace.below(&from_key)).collect();
                let mut entries = Vec::new();
                for key in moved {
                    if let Some(entry) = namespace.entries.remove(&key) {
                        entries.push((key, entry));
                    }
                }
                let (from_shown, to_shown) = (
                    entries.first().map(|(_, entry)| entry.shown.clone()).unwrap_or_default(),
                    shown_in(namespace, to, &fold),
                );
                for (key, mut entry) in entries {
                    let rest = &key[from_key.len()..];
                    let shown_rest = entry.shown.get(from_shown.len()..).unwrap_or_default().to_owned();
                    entry.shown = format!("{to_shown}{shown_rest}");
                    namespace.entries.insert(format!("{to_key}{rest}"), entry);
                }
                touch(namespace, from);
                touch(namespace, to);
            }
        }
    }

    /// Commits the journal, as a flush or another process's fsync does: the namespace as it is
    /// now survives a power cut (file data only where it was flushed).
    fn commit(&mut self) {
        self.durable = self.tree.clone();
        self.journal.clear();
    }

    /// The contents of the files at and below `path`.
    fn contents_below(&self, path: &str) -> Vec<Arc<Vec<u8>>> {
        let key = self.fold(path);
        std::iter::once(key.clone())
            .chain(self.tree.below(&key))
            .filter_map(|key| match self.tree.entries.get(&key)?.node {
                Node::File(ino) => self.inodes.get(&ino).map(|inode| Arc::clone(&inode.data)),
                Node::Dir => None,
            })
            .collect()
    }

    /// Carries out a user's action, if it can be done, and logs it with what it replaced.
    fn user(&mut self, action: &UserAction) {
        if let Some(replaced) = self.try_user(action) {
            self.user_log.push((action.clone(), replaced));
            // The user's program flushes what it wrote, and with it the journal so far.
            self.commit();
        }
    }

    fn try_user(&mut self, action: &UserAction) -> Option<Vec<Arc<Vec<u8>>>> {
        match action {
            UserAction::Write { path, bytes } => {
                let mut folder = String::new();
                for name in parent_of(path).split('/').filter(|name| !name.is_empty()) {
                    folder = if folder.is_empty() { name.to_owned() } else { format!("{folder}/{name}") };
                    match self.get(&folder).map(|entry| entry.node) {
                        Some(Node::Dir) => {}
                        Some(Node::File(_)) => return None,
                        None => self.apply(NsOp::Link { path: folder.clone(), node: Node::Dir }, false),
                    }
                }
                let now = self.tick();
                match self.get(path).map(|entry| entry.node) {
                    Some(Node::File(ino)) => {
                        let replaced = self.contents_below(path);
                        if let Some(inode) = self.inodes.get_mut(&ino) {
                            inode.data = Arc::clone(bytes);
                            inode.mtime = now;
                            inode.durable = Some((Arc::clone(bytes), now));
                        }
                        self.touch_dir(parent_of(path));
                        Some(replaced)
                    }
                    Some(Node::Dir) => None,
                    None => {
                        let ino = self.new_inode(Arc::clone(bytes), now);
                        if let Some(inode) = self.inodes.get_mut(&ino) {
                            inode.durable = Some((Arc::clone(bytes), now));
                        }
                        self.apply(NsOp::Link { path: path.clone(), node: Node::File(ino) }, false);
                        Some(Vec::new())
                    }
                }
            }
            UserAction::Delete { path } => {
                let file = matches!(self.get(path), Some(entry) if entry.node != Node::Dir);
                file.then(|| {
                    let replaced = self.contents_below(path);
                    self.apply(NsOp::Unlink { path: path.clone() }, false);
                    replaced
                })
            }
            UserAction::RemoveTree { path } => self.get(path).is_some().then(|| {
                let replaced = self.contents_below(path);
                self.apply(NsOp::Unlink { path: path.clone() }, false);
                replaced
            }),
            UserAction::Rename { from, to } => {
                let free = self.get(to).is_none() || self.fold(from) == self.fold(to);
                let inside = self.fold(to).starts_with(&format!("{}/", self.fold(from)));
                let possible = self.get(from).is_some() && free && !inside && self.is_dir(parent_of(to));
                possible.then(|| {
                    self.apply(NsOp::Rename { from: from.clone(), to: to.clone() }, false);
                    Vec::new()
                })
            }
            UserAction::Mkdir { path } => (self.get(path).is_none() && self.is_dir(parent_of(path))).then(|| {
                self.apply(NsOp::Link { path: path.clone(), node: Node::Dir }, false);
                Vec::new()
            }),
        }
    }

    fn new_inode(&mut self, data: Arc<Vec<u8>>, mtime: i64) -> u64 {
        self.next_ino += 1;
        self.inodes.insert(self.next_ino, Inode { data, mtime, durable: None });
        self.next_ino
    }
}

impl SimFs {
    /// An empty device directory whose clock starts at `now_ns`.
    pub fn new(index_dir: PathBuf, case_insensitive: bool, now_ns: i64) -> Self {
        let mut tree = Namespace::default();
        // The device's root folder, whose stamp changes like any folder's.
        tree.entries.insert(String::new(), Entry { shown: String::new(), node: Node::Dir, mtime: now_ns });
        let state = State {
            durable: tree.clone(),
            tree,
            journal: Vec::new(),
            inodes: HashMap::new(),
            next_ino: 0,
            clock: now_ns,
            boot: 1,
            case_insensitive,
            lock_enabled: true,
            lock: None,
            alive: BTreeSet::new(),
            engine_ops: 0,
            crash_at: None,
            hooks: Vec::new(),
            faults: Vec::new(),
            readonly: BTreeSet::new(),
            index_dir,
            user_log: Vec::new(),
        };
        Self { state: Arc::new(Mutex::new(state)), pid: 0 }
    }

    /// The same file system as a new process sees it.
    pub fn process(&self, pid: u32) -> Self {
        lock(&self.state).alive.insert(pid);
        Self { state: Arc::clone(&self.state), pid }
    }

    /// Starts an engine operation: runs what is due before it, crashes or fails when told to.
    fn begin(&self, on: Option<FaultOn>) -> io::Result<MutexGuard<'_, State>> {
        let mut state = lock(&self.state);
        if !state.alive.contains(&self.pid) {
            return Err(io::Error::other("this process is dead"));
        }
        state.engine_ops += 1;
        let now = state.engine_ops;
        let due: Vec<UserAction> =
            state.hooks.iter().filter(|(at, _)| *at <= now).map(|(_, action)| action.clone()).collect();
        state.hooks.retain(|(at, _)| *at > now);
        for action in &due {
            state.user(action);
        }
        if state.crash_at.is_some_and(|at| at <= now) {
            state.crash_at = None;
            state.alive.remove(&self.pid);
            if state.lock == Some(self.pid) {
                state.lock = None;
            }
            drop(state);
            std::panic::panic_any(CRASH);
        }
        if let Some(on) = on
            && let Some(at) = state.faults.iter().position(|(kind, _)| *kind == on)
        {
            let (_, code) = state.faults.remove(at);
            return Err(errno(code));
        }
        Ok(state)
    }

    // What the world does to the device, outside the engine.

    pub fn user(&self, action: &UserAction) {
        lock(&self.state).user(action);
    }

    /// Runs `action` just before the engine's `after`-th next operation.
    pub fn user_before_op(&self, after: u64, action: UserAction) {
        let mut state = lock(&self.state);
        let at = state.engine_ops + after.max(1);
        state.hooks.push((at, action));
    }

    /// Crashes whichever engine process makes the `after`-th next operation.
    pub fn crash_before_op(&self, after: u64) {
        let mut state = lock(&self.state);
        state.crash_at = Some(state.engine_ops + after.max(1));
    }

    pub fn fail_next(&self, on: FaultOn, code: i32) {
        lock(&self.state).faults.push((on, code));
    }

    pub fn set_readonly(&self, folder: &str, readonly: bool) {
        let mut state = lock(&self.state);
        if readonly {
            state.readonly.insert(folder.to_owned());
        } else {
            state.readonly.remove(folder);
        }
    }

    /// The system clock moved on to `now_ns`; the file system's stamps follow (never back: a
    /// stamp shared by chance with an older one is no test of the engine).
    pub fn clock_at(&self, now_ns: i64) {
        let mut state = lock(&self.state);
        state.clock = state.clock.max(now_ns);
    }

    /// Forgets a crash or a user's action that no operation reached.
    pub fn disarm(&self) {
        let mut state = lock(&self.state);
        state.crash_at = None;
        state.hooks.clear();
    }

    pub fn clear_faults(&self) {
        self.disarm();
        let mut state = lock(&self.state);
        state.faults.clear();
        state.readonly.clear();
    }

    /// Without the lock, two engines may run on the device at once (to show what the lock is for).
    pub fn set_lock_enabled(&self, enabled: bool) {
        lock(&self.state).lock_enabled = enabled;
    }

    /// A process dies (kill -9): what it wrote stays, its lock goes.
    pub fn kill(&self, pid: u32) {
        let mut state = lock(&self.state);
        state.alive.remove(&pid);
        if state.lock == Some(pid) {
            state.lock = None;
        }
    }

    /// The machine loses power: what was flushed survives, with `kept` of the namespace changes
    /// made since (in order); files whose data was never flushed come back empty.
    pub fn power_cut(&self, kept: usize) {
        let mut state = lock(&self.state);
        let mut tree = state.durable.clone();
        let now = state.tick();
        let journal = std::mem::take(&mut state.journal);
        for op in journal.iter().take(kept) {
            State::apply_to(&mut tree, op, now, state.case_insensitive);
        }
        for entry in tree.entries.values_mut() {
            entry.mtime = now;
        }
        state.tree = tree;
        state.commit();
        for inode in state.inodes.values_mut() {
            let (data, mtime) = inode.durable.clone().unwrap_or_else(|| (Arc::new(Vec::new()), now));
            inode.data = data;
            inode.mtime = mtime;
        }
        state.lock = None;
        state.boot += 1;
        state.alive.clear();
    }

    /// The user actions carried out since last asked, with the contents each removed or
    /// overwrote.
    pub fn take_user_log(&self) -> Vec<(UserAction, Vec<Arc<Vec<u8>>>)> {
        std::mem::take(&mut lock(&self.state).user_log)
    }

    /// Namespace changes not flushed yet.
    pub fn unflushed(&self) -> usize {
        lock(&self.state).journal.len()
    }

    /// Every file (path → content) and folder here, the device's own folder included.
    pub fn contents(&self) -> (BTreeMap<String, Arc<Vec<u8>>>, BTreeSet<String>) {
        let state = lock(&self.state);
        let (mut files, mut dirs) = (BTreeMap::new(), BTreeSet::new());
        for entry in state.tree.entries.values().filter(|entry| !entry.shown.is_empty()) {
            match entry.node {
                Node::Dir => {
                    dirs.insert(entry.shown.clone());
                }
                Node::File(ino) => {
                    let data = state.inodes.get(&ino).map(|inode| Arc::clone(&inode.data)).unwrap_or_default();
                    files.insert(entry.shown.clone(), data);
                }
            }
        }
        (files, dirs)
    }

    pub fn exists(&self, path: &str) -> bool {
        lock(&self.state).get(path).is_some()
    }

    pub fn is_dir(&self, path: &str) -> bool {
        lock(&self.state).is_dir(path)
    }

    pub fn operations(&self) -> u64 {
        lock(&self.state).engine_ops
    }
}

/// An open file: its bytes are those it holds when first read, as an edit made between the
/// open and the read shows through a real descriptor.
struct Reader {
    fs: SimFs,
    ino: u64,
    read: Option<io::Cursor<Vec<u8>>>,
}

impl io::Read for Reader {
    fn read(&mut self, buffer: &mut [u8]) -> io::Result<usize> {
        if self.read.is_none() {
            let state = self.fs.begin(None)?;
            let data = state.inodes.get(&self.ino).map(|inode| inode.data.as_ref().clone()).unwrap_or_default();
            self.read = Some(io::Cursor::new(data));
        }
        self.read.as_mut().map_or(Ok(0), |cursor| cursor.read(buffer))
    }
}

/// A file being written by the engine, not yet in the tree.
pub struct SimTemp {
    fs: SimFs,
    ino: u64,
}

impl TempFile for SimTemp {
    fn write(&mut self, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.fs.begin(Some(FaultOn::Write))?;
        let now = state.tick();
        let inode = state.inodes.get_mut(&self.ino).ok_or_else(|| errno(ENOENT))?;
        let mut data = inode.data.as_ref().clone();
        data.extend_from_slice(bytes);
        inode.data = Arc::new(data);
        inode.mtime = now;
        Ok(())
    }

    fn sync(&mut self) -> io::Result<()> {
        let mut state = self.fs.begin(Some(FaultOn::Flush))?;
        let inode = state.inodes.get_mut(&self.ino).ok_or_else(|| errno(ENOENT))?;
        inode.durable = Some((Arc::clone(&inode.data), inode.mtime));
        Ok(())
    }
}

fn meta_of(state: &State, entry: &Entry) -> Meta {
    match entry.node {
        Node::Dir => Meta { kind: Kind::Dir, stamp: FileStamp { size: 0, mtime_ns: entry.mtime, ino: 0 } },
        Node::File(ino) => {
            let (size, mtime_ns) =
                state.inodes.get(&ino).map_or((0, 0), |inode| (inode.data.len() as u64, inode.mtime));
            Meta { kind: Kind::File, stamp: FileStamp { size, mtime_ns, ino: ino + 1 } }
        }
    }
}

impl LocalFs for SimFs {
    type Temp = SimTemp;

    fn metadata(&self, path: &str) -> io::Result<Option<Meta>> {
        let state = self.begin(None)?;
        Ok(state.get(path).map(|entry| meta_of(&state, entry)))
    }

    fn read_dir(&self, path: &str) -> io::Result<Vec<DirEntry>> {
        let state = self.begin(None)?;
        if !state.is_dir(path) {
            return Err(errno(if state.get(path).is_some() { ENOTDIR } else { ENOENT }));
        }
        let key = state.fold(path);
        Ok(state
            .tree
            .children(&key)
            .map(|(_, entry)| {
                let name = entry.shown.rsplit('/').next().unwrap_or_default();
                let meta = meta_of(&state, entry);
                DirEntry {
                    name: OsString::from(name),
                    kind: meta.kind,
                    stamp: (meta.kind == Kind::File).then_some(meta.stamp),
                }
            })
            .collect())
    }

    fn open(&self, path: &str) -> io::Result<Box<dyn io::Read + Send>> {
        let state = self.begin(None)?;
        match state.get(path).map(|entry| entry.node) {
            Some(Node::File(ino)) => Ok(Box::new(Reader { fs: self.clone(), ino, read: None })),
            Some(Node::Dir) => Err(errno(EISDIR)),
            None => Err(errno(ENOENT)),
        }
    }

    fn create_dir_all(&self, path: &str) -> io::Result<()> {
        let mut state = self.begin(Some(FaultOn::Mkdir))?;
        State::check_name(path)?;
        let mut folder = String::new();
        for name in path.split('/').filter(|name| !name.is_empty()) {
            folder = if folder.is_empty() { name.to_owned() } else { format!("{folder}/{name}") };
            match state.get(&folder).map(|entry| entry.node) {
                Some(Node::Dir) => {}
                Some(Node::File(_)) => return Err(errno(ENOTDIR)),
                None => {
                    state.writable(&folder)?;
                    state.apply(NsOp::Link { path: folder.clone(), node: Node::Dir }, true);
                }
            }
        }
        Ok(())
    }

    fn remove_file(&self, path: &str) -> io::Result<()> {
        let mut state = self.begin(Some(FaultOn::Remove))?;
        match state.get(path).map(|entry| entry.node) {
            Some(Node::File(_)) => {
                state.writable(path)?;
                state.apply(NsOp::Unlink { path: path.to_owned() }, true);
                Ok(())
            }
            Some(Node::Dir) => Err(errno(EISDIR)),
            None => Err(errno(ENOENT)),
        }
    }

    fn remove_dir(&self, path: &str) -> io::Result<()> {
        let mut state = self.begin(Some(FaultOn::Remove))?;
        match state.get(path).map(|entry| entry.node) {
            Some(Node::Dir) => {
                let key = state.fold(path);
                if state.tree.children(&key).next().is_some() {
                    return Err(errno(ENOTEMPTY));
                }
                state.writable(path)?;
                state.apply(NsOp::Unlink { path: path.to_owned() }, true);
                Ok(())
            }
            Some(Node::File(_)) => Err(errno(ENOTDIR)),
            None => Err(errno(ENOENT)),
        }
    }

    fn rename_noreplace(&self, from: &str, to: &str) -> io::Result<()> {
        let mut state = self.begin(Some(FaultOn::Rename))?;
        State::check_name(to)?;
        if state.get(from).is_none() {
            return Err(errno(ENOENT));
        }
        let same = state.fold(from) == state.fold(to);
        if state.get(to).is_some() && !same {
            return Err(errno(EEXIST));
        }
        if !state.is_dir(parent_of(to)) {
            return Err(errno(ENOENT));
        }
        if state.fold(to).starts_with(&format!("{}/", state.fold(from))) {
            return Err(io::Error::other("cannot move a folder into itself"));
        }
        state.writable(from)?;
        state.writable(to)?;
        state.apply(NsOp::Rename { from: from.to_owned(), to: to.to_owned() }, true);
        Ok(())
    }

    fn temp_file(&self) -> io::Result<SimTemp> {
        let mut state = self.begin(Some(FaultOn::Write))?;
        let now = state.tick();
        let ino = state.new_inode(Arc::new(Vec::new()), now);
        Ok(SimTemp { fs: self.clone(), ino })
    }

    fn place(&self, temp: SimTemp, to: &str, modified: Option<jiff::Timestamp>) -> io::Result<FileStamp> {
        let mut state = self.begin(Some(FaultOn::Write))?;
        state.creatable(to)?;
        let mtime = modified.map(|at| i64::try_from(at.as_nanosecond()).unwrap_or(0));
        let inode = state.inodes.get_mut(&temp.ino).ok_or_else(|| errno(ENOENT))?;
        if let Some(mtime) = mtime {
            inode.mtime = mtime;
        }
        let stamp = FileStamp { size: inode.data.len() as u64, mtime_ns: inode.mtime, ino: temp.ino + 1 };
        state.apply(NsOp::Link { path: to.to_owned(), node: Node::File(temp.ino) }, true);
        Ok(stamp)
    }

    fn clear_temp(&self) -> io::Result<()> {
        Ok(())
    }

    fn write_new(&self, path: &str, bytes: &[u8]) -> io::Result<()> {
        let mut state = self.begin(Some(FaultOn::Write))?;
        state.creatable(path)?;
        let now = state.tick();
        let ino = state.new_inode(Arc::new(bytes.to_vec()), now);
        state.apply(NsOp::Link { path: path.to_owned(), node: Node::File(ino) }, true);
        Ok(())
    }

    fn sync_all(&self) -> io::Result<()> {
        let mut state = self.begin(Some(FaultOn::Flush))?;
        state.commit();
        for inode in state.inodes.values_mut() {
            inode.durable = Some((Arc::clone(&inode.data), inode.mtime));
        }
        Ok(())
    }

    fn try_lock(&self) -> io::Result<Locked> {
        let mut state = self.begin(None)?;
        if !state.lock_enabled {
            return Ok(Locked::Held(Box::new(())));
        }
        match state.lock {
            Some(holder) if holder != self.pid && state.alive.contains(&holder) => {
                Ok(Locked::Busy { pid: Some(holder) })
            }
            _ => {
                state.lock = Some(self.pid);
                Ok(Locked::Held(Box::new(LockGuard { fs: self.clone() })))
            }
        }
    }

    fn index_dir(&self) -> PathBuf {
        lock(&self.state).index_dir.clone()
    }

    fn boot_id(&self) -> Option<String> {
        Some(format!("boot-{}", lock(&self.state).boot))
    }

    fn now_ns(&self) -> i64 {
        lock(&self.state).tick()
    }

    fn stamp_margin(&self) -> std::time::Duration {
        std::time::Duration::ZERO
    }

    fn case_insensitive(&self) -> bool {
        lock(&self.state).case_insensitive
    }

    fn fine_mtime(&self) -> bool {
        true
    }

    fn threads(&self) -> usize {
        1
    }
}

/// Holds the device's lock for one process until dropped.
struct LockGuard {
    fs: SimFs,
}

impl Drop for LockGuard {
    fn drop(&mut self) {
        let mut state = lock(&self.fs.state);
        if state.lock == Some(self.fs.pid) {
            state.lock = None;
        }
    }
}
