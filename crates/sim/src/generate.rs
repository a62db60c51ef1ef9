//! Seeded random operations, chosen from what the world holds now so that they meet: edits of
//! files that exist, moves of objects that exist, syncs while others are parked, and names that
//! are hard to hold (control characters, both Unicode forms of one name, case-only twins, 255
//! bytes, `.cpmlink`).

use crate::ops::{FaultOn, Op};
use crate::world::{DEVICES, PRESETS, World};

/// xorshift64*: small, seedable, the same everywhere.
pub struct Rng(u64);

impl Rng {
    pub fn new(seed: u64) -> Self {
        Self(seed.wrapping_mul(0x9E37_79B9_7F4A_7C15) | 1)
    }

    pub fn next_u64(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    pub fn below(&mut self, n: usize) -> usize {
        (self.next_u64() % n.max(1) as u64) as usize
    }

    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { items.get(self.below(items.len())) }
    }

    pub fn chance(&mut self, percent: u64) -> bool {
        self.next_u64() % 100 < percent
    }
}

const FOLDERS: [&str; 5] = ["", "a", "a/b", "c", "C"];

/// Names that are hard to hold, beside ordinary ones.
fn names() -> Vec<String> {
    vec![
        "f.txt".into(),
        "g.txt".into(),
        "F.txt".into(),
        "caf\u{e9}.txt".into(),
        "cafe\u{301}.txt".into(),
        "x.cpmlink".into(),
        "song.mp3".into(),
        "pic.jpg".into(),
        "h".into(),
        format!("{}.txt", "l".repeat(244)),
        format!("{}.txt", "m".repeat(251)),
        "bell\u{7}.txt".into(),
    ]
}

pub struct Generator {
    rng: Rng,
    next_content: u32,
    names: Vec<String>,
}

fn join(folder: &str, name: &str) -> String {
    if folder.is_empty() { name.to_owned() } else { format!("{folder}/{name}") }
}

impl Generator {
    pub fn new(seed: u64) -> Self {
        Self { rng: Rng::new(seed), next_content: 1, names: names() }
    }

    fn content(&mut self) -> u32 {
        self.next_content += 1;
        self.next_content
    }

    fn fresh_path(&mut self) -> String {
        let folder = self.rng.pick(&FOLDERS).copied().unwrap_or_default();
        let name = self.rng.pick(&self.names).cloned().unwrap_or_default();
        join(folder, &name)
    }

    fn folder(&mut self) -> String {
        self.rng.pick(&FOLDERS).copied().unwrap_or_default().to_owned()
    }

    /// The next operation for `world` as it is now.
    pub fn next(&mut self, world: &World) -> Op {
        let device = self.rng.below(DEVICES.len());
        let (store_files, store_folders) = world.store_paths();
        let (files, dirs) = world.local_paths(device);
        let parked = world.parked(device);
        let roll = self.rng.below(1000);
        match roll {
            // The store, changed from elsewhere.
            0..=59 => Op::StorePut { path: format!("/{}", self.fresh_path()), content: self.content() },
            60..=109 => match self.rng.pick(&store_files).cloned() {
                Some(path) => Op::StoreReplace { path, content: self.content() },
                None => Op::StorePut { path: format!("/{}", self.fresh_path()), content: self.content() },
            },
            110..=149 => {
                let from = self.rng.pick(&store_files).or(self.rng.pick(&store_folders)).cloned();
                let name = self.rng.pick(&self.names).cloned().unwrap_or_default();
                let renamed = self.rng.chance(50);
                match from {
                    Some(from) => {
                        let kept = from.rsplit('/').next().unwrap_or_default().to_owned();
                        let to = format!("/{}", join(&self.folder(), if renamed { &name } else { &kept }));
                        Op::StoreMove { from, to }
                    }
                    None => Op::StoreMkdir { path: format!("/{}", self.folder()) },
                }
            }
            150..=174 => match self.rng.pick(&store_files).cloned() {
                Some(path) => Op::StoreDelete { path },
                None => Op::ClockJump { seconds: 1 },
            },
            175..=184 => match self.rng.pick(&store_folders).cloned() {
                Some(path) => Op::StoreDeleteTree { path },
                None => Op::StoreMkdir { path: "/a/b".into() },
            },
            185..=199 => Op::StoreMkdir { path: format!("/{}", self.folder()) },
            200..=209 => match self.rng.pick(&store_files).cloned() {
                Some(path) => {
                    Op::StoreFlags { path, flags: if self.rng.chance(50) { vec!["seen".into()] } else { vec![] } }
                }
                None => Op::ClockJump { seconds: 5 },
            },
            210..=224 => Op::SetProfile { device, preset: self.rng.below(PRESETS.len()) },
            // The device's directory, changed by its user.
            225..=324 => Op::Write { device, path: self.fresh_path(), content: self.content() },
            325..=414 => match self.rng.pick(&files).cloned() {
                Some(path) => Op::Write { device, path, content: self.content() },
                None => Op::Write { device, path: self.fresh_path(), content: self.content() },
            },
            415..=449 => match self.rng.pick(&files).cloned() {
                Some(path) => Op::Delete { device, path },
                None => Op::Mkdir { device, path: self.folder() },
            },
            // A stub renamed or moved, as the link it is (its suffix kept).
            450..=459 => match self.rng.pick(&world.stub_paths(device)).cloned() {
                Some(from) => {
                    let name = self.rng.pick(&self.names).cloned().unwrap_or_default();
                    let folder = if self.rng.chance(50) {
                        from.rsplit_once('/').map(|(folder, _)| folder.to_owned()).unwrap_or_default()
                    } else {
                        self.folder()
                    };
                    Op::Rename { device, from, to: join(&folder, &format!("{name}{}", cpm_agent::naming::STUB_SUFFIX)) }
                }
                None => Op::Sync { device },
            },
            460..=494 => {
                let from = if self.rng.chance(75) { self.rng.pick(&files) } else { self.rng.pick(&dirs) }.cloned();
                match from {
                    Some(from) => {
                        let name = if self.rng.chance(30) {
                            // A case-only rename, or another name.
                            let kept = from.rsplit('/').next().unwrap_or_default();
                            if self.rng.chance(50) { kept.to_uppercase() } else { kept.to_lowercase() }
                        } else {
                            self.rng.pick(&self.names).cloned().unwrap_or_default()
                        };
                        let folder = if self.rng.chance(50) {
                            from.rsplit_once('/').map(|(folder, _)| folder.to_owned()).unwrap_or_default()
                        } else {
                            self.folder()
                        };
                        Op::Rename { device, from, to: join(&folder, &name) }
                    }
                    None => Op::Mkdir { device, path: self.folder() },
                }
            }
            495..=514 => {
                let folder = self.folder();
                Op::Mkdir { device, path: if folder.is_empty() { "a".into() } else { folder } }
            }
            515..=524 => match self.rng.pick(&dirs).cloned() {
                Some(path) => Op::RemoveTree { device, path },
                None => Op::Mkdir { device, path: "c".into() },
            },
            525..=534 => match self.rng.pick(&dirs).cloned() {
                Some(path) => Op::DirToFile { device, path, content: self.content() },
                None => Op::Write { device, path: "a".into(), content: self.content() },
            },
            535..=554 => {
                let path = match self.rng.pick(&files).cloned() {
                    Some(path) if self.rng.chance(70) => path,
                    _ => self.fresh_path(),
                };
                Op::WriteDuringSync { device, at: 1 + self.rng.below(40) as u16, path, content: self.content() }
            }
            555..=559 => Op::LoseIndex { device },
            // The engine.
            560..=789 => Op::Sync { device },
            790..=829 => Op::SyncPartly { device, calls: self.rng.below(8) as u8 },
            830..=859 if parked => Op::Resume { device },
            830..=859 => Op::Sync { device },
            860..=874 if parked => Op::SecondSync { device },
            860..=874 => Op::SyncPartly { device, calls: 1 + self.rng.below(4) as u8 },
            875..=884 => Op::Kill { device },
            885..=909 => {
                let power = self.rng.chance(40).then(|| self.rng.below(12) as u8);
                Op::CrashAt { device, at: 1 + self.rng.below(60) as u16, power }
            }
            910..=914 => Op::PowerCut { device, kept: self.rng.below(12) as u8 },
            915..=929 => {
                let on = *self
                    .rng
                    .pick(&[FaultOn::Write, FaultOn::Rename, FaultOn::Mkdir, FaultOn::Remove, FaultOn::Flush])
                    .unwrap_or(&FaultOn::Write);
                let errno = *self.rng.pick(&[28, 5, 13]).unwrap_or(&5);
                Op::Fault { device, on, errno }
            }
            930..=934 => Op::ReadOnly { device, path: self.folder(), readonly: self.rng.chance(60) },
            // Time.
            935..=989 => {
                let seconds = match self.rng.below(10) {
                    0 => -(60 * (1 + self.rng.below(120) as i64)),
                    1..=4 => 1 + self.rng.below(120) as i64,
                    5..=7 => 60 * (1 + self.rng.below(90) as i64),
                    _ => 3600 * (1 + self.rng.below(40) as i64),
                };
                Op::ClockJump { seconds }
            }
            _ => Op::ExpireTombstones,
        }
    }
}
