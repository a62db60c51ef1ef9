//! What can happen in a simulated world, one step at a time. Every operation names its targets
//! concretely, so a run replays from its list alone; one whose target is not there does nothing,
//! so a shortened list still replays.

/// Which engine operations an injected fault hits (see [`crate::simfs::FaultOn`]).
pub use crate::simfs::FaultOn;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Op {
    // In the store, by the user from elsewhere (a web page, another client).
    /// A new object (folders created as needed).
    StorePut {
        path: String,
        content: u32,
    },
    /// A new version of the object at `path`.
    StoreReplace {
        path: String,
        content: u32,
    },
    /// Moves (and renames) an object or folder.
    StoreMove {
        from: String,
        to: String,
    },
    StoreDelete {
        path: String,
    },
    /// Deletes a folder with everything in it.
    StoreDeleteTree {
        path: String,
    },
    StoreMkdir {
        path: String,
    },
    StoreFlags {
        path: String,
        flags: Vec<String>,
    },
    /// Gives a device another profile (by index into the presets).
    SetProfile {
        device: usize,
        preset: usize,
    },

    // In a device's directory, by its user.
    /// Creates the file, or overwrites it in place.
    Write {
        device: usize,
        path: String,
        content: u32,
    },
    Delete {
        device: usize,
        path: String,
    },
    Rename {
        device: usize,
        from: String,
        to: String,
    },
    Mkdir {
        device: usize,
        path: String,
    },
    RemoveTree {
        device: usize,
        path: String,
    },
    /// A folder replaced by a file of the same name.
    DirToFile {
        device: usize,
        path: String,
        content: u32,
    },
    /// Writes the file just before the engine's `at`-th next file operation on the device:
    /// a change made while a sync runs.
    WriteDuringSync {
        device: usize,
        at: u16,
        path: String,
        content: u32,
    },
    /// The device's index is lost (a directory registered again over the files it holds).
    LoseIndex {
        device: usize,
    },

    // The engine.
    /// A sync of the device, to its end.
    Sync {
        device: usize,
    },
    /// A sync that stops after `calls` calls to the store, until resumed or killed.
    SyncPartly {
        device: usize,
        calls: u8,
    },
    /// Lets the device's parked syncs run to their end.
    Resume {
        device: usize,
    },
    /// Another sync of the device while one is parked (a second `cpm sync`, an agent beside a
    /// manual sync).
    SecondSync {
        device: usize,
    },
    /// kill -9 of the device's running syncs.
    Kill {
        device: usize,
    },
    /// A sync that crashes at its `at`-th file operation; with `power`, the machine loses what
    /// was not flushed, keeping that many of the namespace changes made since the last flush.
    CrashAt {
        device: usize,
        at: u16,
        power: Option<u8>,
    },
    /// The machine loses power (whatever runs dies; what was not flushed is lost).
    PowerCut {
        device: usize,
        kept: u8,
    },
    /// The next engine operation of this kind fails with `errno`.
    Fault {
        device: usize,
        on: FaultOn,
        errno: i32,
    },
    /// A folder the engine cannot change (a permission the user set); `false` lifts it.
    ReadOnly {
        device: usize,
        path: String,
        readonly: bool,
    },

    // Time.
    /// The clock moves by `seconds` (backwards too).
    ClockJump {
        seconds: i64,
    },
    /// The store purges tombstones past their retention.
    ExpireTombstones,

    // The harness.
    /// Every sync run to its end and every fault lifted, every device synced until quiet; then
    /// the checks of a quiet world. A generated run settles every few hundred operations; the
    /// settling is kept in its list, so that a shrunk list settles where the run did.
    Settle,
}

impl Op {
    /// The device the operation acts on, if one.
    pub fn device(&self) -> Option<usize> {
        match self {
            Op::SetProfile { device, .. }
            | Op::Write { device, .. }
            | Op::Delete { device, .. }
            | Op::Rename { device, .. }
            | Op::Mkdir { device, .. }
            | Op::RemoveTree { device, .. }
            | Op::DirToFile { device, .. }
            | Op::WriteDuringSync { device, .. }
            | Op::LoseIndex { device }
            | Op::Sync { device }
            | Op::SyncPartly { device, .. }
            | Op::Resume { device }
            | Op::SecondSync { device }
            | Op::Kill { device }
            | Op::CrashAt { device, .. }
            | Op::PowerCut { device, .. }
            | Op::Fault { device, .. }
            | Op::ReadOnly { device, .. } => Some(*device),
            Op::StorePut { .. }
            | Op::StoreReplace { .. }
            | Op::StoreMove { .. }
            | Op::StoreDelete { .. }
            | Op::StoreDeleteTree { .. }
            | Op::StoreMkdir { .. }
            | Op::StoreFlags { .. }
            | Op::ClockJump { .. }
            | Op::ExpireTombstones
            | Op::Settle => None,
        }
    }

    /// The operation as Rust source, for a regression test.
    pub fn rust(&self) -> String {
        let debug = format!("{self:?}");
        // Every string literal becomes a `String`.
        let mut out = String::with_capacity(debug.len() + 16);
        let mut chars = debug.chars().peekable();
        let mut in_string = false;
        while let Some(c) = chars.next() {
            out.push(c);
            match (in_string, c) {
                (false, '"') => in_string = true,
                (true, '\\') => {
                    if let Some(escaped) = chars.next() {
                        out.push(escaped);
                    }
                }
                (true, '"') => {
                    in_string = false;
                    out.push_str(".into()");
                }
                _ => {}
            }
        }
        format!("Op::{}", out.replace("flags: [", "flags: vec!["))
    }
}
