//! Deterministic randomized sync: random changes in the store and in devices' directories,
//! syncs killed at random points, then syncs until quiet. Afterwards every device holds exactly
//! the store seen through its profile, no content is duplicated, and every content a device wrote
//! and synced is in the store (under its name or in a conflict copy).
//!
//! Among the changes: names in NFD, with spaces and near the length limit, the same file changed
//! on both sides again and again on one day, two syncs of one device at once, and an agent that
//! keeps the tablet in sync while all this happens.
//!
//! `CPM_SEED=N` replays a run (the seed is printed); `CPM_RANDOM_STEPS=N` makes it longer
//! (CI runs a short one; e.g. `CPM_RANDOM_STEPS=2000 cargo test -p cpm --test random_sync`).

mod support;

use serde_json::Value;
use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use support::World;
use unicode_normalization::UnicodeNormalization;

/// xorshift64*: small, seedable, and the same everywhere.
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }

    fn pick<'a, T>(&mut self, items: &'a [T]) -> Option<&'a T> {
        if items.is_empty() { None } else { items.get(self.below(items.len())) }
    }
}

const FOLDERS: [&str; 4] = ["docs", "docs/old", "media", "media/best"];
/// The tablet holds only small objects: its filter is `size < 40`.
const SMALL: usize = 40;

fn hash(bytes: &[u8]) -> String {
    blake3::hash(bytes).to_hex().to_string()
}

/// Files (relative path → content hash) and folders under a device directory.
fn local_tree(root: &Path) -> (BTreeMap<String, String>, BTreeSet<String>) {
    let (mut files, mut dirs) = (BTreeMap::new(), BTreeSet::new());
    let mut queue = vec![root.to_owned()];
    while let Some(dir) = queue.pop() {
        for item in std::fs::read_dir(&dir).expect("readable") {
            let path = item.expect("entry").path();
            // The store keeps names in NFC; a device may keep the form they were written in.
            let relative: String = path.strip_prefix(root).expect("inside").to_string_lossy().nfc().collect();
            if relative == ".cpm" || relative.ends_with(".cpm-partial") {
                continue;
            }
            if path.is_dir() {
                dirs.insert(relative);
                queue.push(path);
            } else {
                files.insert(relative, hash(&std::fs::read(&path).expect("readable")));
            }
        }
    }
    (files, dirs)
}

/// The store's objects (path → (hash, size)) and folders, walked with `cpm ls --json`.
fn store_tree(world: &World) -> (BTreeMap<String, (String, u64)>, BTreeSet<String>) {
    let (mut objects, mut folders) = (BTreeMap::new(), BTreeSet::new());
    let mut queue = vec!["/".to_owned()];
    while let Some(folder) = queue.pop() {
        for entry in world.listing(&folder) {
            let path = entry["path"].as_str().expect("path").trim_start_matches('/').to_owned();
            if entry["kind"] == "folder" {
                folders.insert(path.clone());
                queue.push(format!("/{path}"));
            } else {
                let content = entry["hash"].as_str().expect("hash").to_owned();
                objects.insert(path, (content, entry["size"].as_u64().expect("size")));
            }
        }
    }
    (objects, folders)
}

struct Run {
    world: World,
    rng: Rng,
    serial: u64,
    /// Per device, the files written since its last successful sync: path → content.
    pending: BTreeMap<&'static str, BTreeMap<String, String>>,
    log: Vec<String>,
}

impl Run {
    /// The store's objects now. Content that reached it is delivered, whoever sent it up (the
    /// tablet's agent syncs on its own, between any two steps): from then on, deleting or
    /// replacing it in the store is someone's choice, not a loss. The store's blob files say what
    /// reached it even when a replace came right after.
    fn store_now(&mut self) -> BTreeMap<String, (String, u64)> {
        let (objects, _) = store_tree(&self.world);
        let stored: BTreeSet<&String> = objects.values().map(|(content, _)| content).collect();
        let blobs = self.world.path("cpm-data/blobs");
        let reached = |content: &String| stored.contains(content) || blobs.join(&content[..2]).join(content).exists();
        for pending in self.pending.values_mut() {
            pending.retain(|_, content| !reached(content));
        }
        objects
    }

    fn content(&mut self) -> Vec<u8> {
        self.serial += 1;
        let size = if self.rng.below(3) == 0 { 60 } else { 12 };
        let mut text = format!("content {} ", self.serial);
        while text.len() < size {
            text.push('x');
        }
        text.into_bytes()
    }

    /// The file on a device whose (NFC) path is `path`, in whatever form its name has there.
    fn local_path(&self, device: &str, path: &str) -> Option<std::path::PathBuf> {
        let (folder, name) = path.rsplit_once('/').unwrap_or(("", path));
        let dir = self.world.path(&format!("{device}/{folder}"));
        std::fs::read_dir(&dir).ok()?.filter_map(Result::ok).map(|item| item.path()).find(|found| {
            found.file_name().is_some_and(|found| found.to_string_lossy().nfc().collect::<String>() == name)
        })
    }

    fn device_files(&self, device: &str) -> Vec<String> {
        local_tree(&self.world.path(device)).0.into_keys().filter(|path| !path.ends_with(".cpmlink")).collect()
    }

    /// A name for a new file: plain, in NFD, with spaces, or near the 255-byte limit.
    fn name(&mut self, prefix: &str) -> String {
        let serial = self.serial;
        match self.rng.below(6) {
            0 => format!("{prefix}{serial} cafe\u{301}.txt"),
            1 => format!("{prefix}{serial} with  spaces .txt"),
            2 => format!("{prefix}{serial}-{}.txt", "n".repeat(240)),
            _ => format!("{prefix}{serial}.txt"),
        }
    }

    /// One random change, on the PDA (through the store) or in the PC's or tablet's directory.
    fn change(&mut self) {
        let roll = self.rng.below(12);
        let device: &'static str = if self.rng.below(2) == 0 { "pc" } else { "tablet" };
        let folder = *self.rng.pick(&FOLDERS).expect("folders");
        match roll {
            0..=2 => {
                let bytes = self.content();
                let name = self.name("s");
                self.world.write(&name, &bytes);
                self.world.pda(&["put", &name, &format!("/{folder}/")]);
                self.log.push(format!("store: put /{folder}/{name}"));
            }
            3 => {
                let objects = self.store_now();
                let paths: Vec<String> = objects.into_keys().collect();
                if let Some(path) = self.rng.pick(&paths).cloned() {
                    let target = *self.rng.pick(&FOLDERS).expect("folders");
                    let output = self.world.run(&["-C", "pda", "mv", &format!("/{path}"), &format!("/{target}/")]);
                    self.log.push(format!("store: mv /{path} /{target}/ ({})", output.status));
                }
            }
            4 => {
                let objects = self.store_now();
                let paths: Vec<String> = objects.into_keys().collect();
                if let Some(path) = self.rng.pick(&paths).cloned() {
                    if self.rng.below(2) == 0 {
                        self.world.pda(&["rm", &format!("/{path}")]);
                        self.log.push(format!("store: rm /{path}"));
                    } else {
                        let bytes = self.content();
                        let name = path.rsplit('/').next().expect("name").to_owned();
                        self.world.write(&name, &bytes);
                        let folder = path.rsplit_once('/').map_or("", |(folder, _)| folder);
                        self.world.pda(&["put", "--replace", &name, &format!("/{folder}/")]);
                        self.log.push(format!("store: replace /{path}"));
                    }
                }
            }
            5 | 6 => {
                let bytes = self.content();
                let dir = self.world.path(&format!("{device}/{folder}"));
                std::fs::create_dir_all(&dir).expect("mkdir");
                let name = self.name("d");
                std::fs::write(dir.join(&name), &bytes).expect("write");
                let shown: String = format!("{folder}/{name}").nfc().collect();
                self.pending.entry(device).or_default().insert(shown, hash(&bytes));
                self.log.push(format!("{device}: create {folder}/{name}"));
            }
            7 => {
                let files = self.device_files(device);
                if let Some(path) = self.rng.pick(&files).cloned() {
                    let bytes = self.content();
                    let Some(local) = self.local_path(device, &path) else { return };
                    std::fs::write(local, &bytes).expect("edit");
                    self.pending.entry(device).or_default().insert(path.clone(), hash(&bytes));
                    self.log.push(format!("{device}: edit {path}"));
                }
            }
            8 => {
                let files = self.device_files(device);
                if let Some(path) = self.rng.pick(&files).cloned() {
                    let dir = self.world.path(&format!("{device}/{folder}"));
                    std::fs::create_dir_all(&dir).expect("mkdir");
                    let name = path.rsplit('/').next().expect("name");
                    // The prefix must still leave a name the file system can hold.
                    let mut name = format!("m{}-{name}", self.serial);
                    while name.len() > 255 {
                        let middle = (0..=name.len() / 2).rev().find(|at| name.is_char_boundary(*at)).unwrap_or(0);
                        name.remove(middle);
                    }
                    let moved = format!("{folder}/{name}");
                    let target = self.world.path(&format!("{device}/{moved}"));
                    self.serial += 1;
                    let Some(local) = self.local_path(device, &path) else { return };
                    std::fs::rename(local, &target).expect("move");
                    let pending = self.pending.entry(device).or_default();
                    if let Some(content) = pending.remove(&path) {
                        pending.insert(moved, content);
                    }
                    self.log.push(format!("{device}: move {path} → {}", target.display()));
                }
            }
            10 => {
                // The same file changed on the PC and in the store, then synced: again and again
                // on one day, each conflict keeps its own copy.
                let objects = self.store_now();
                let pc: BTreeSet<String> = self.device_files("pc").into_iter().collect();
                let both: Vec<String> = objects.into_keys().filter(|path| pc.contains(path)).collect();
                if let Some(path) = self.rng.pick(&both).cloned() {
                    let mine = self.content();
                    let Some(local) = self.local_path("pc", &path) else { return };
                    std::fs::write(&local, &mine).expect("edit");
                    self.pending.entry("pc").or_default().insert(path.clone(), hash(&mine));
                    let theirs = self.content();
                    let name = path.rsplit('/').next().expect("name").to_owned();
                    self.world.write(&name, &theirs);
                    let folder = path.rsplit_once('/').map_or("", |(folder, _)| folder);
                    self.world.pda(&["put", "--replace", &name, &format!("/{folder}/")]);
                    self.log.push(format!("both: edit {path} on the pc and in the store"));
                    self.sync("pc", None);
                }
            }
            11 => {
                // Two syncs of one device at once: one waits for the other.
                let device = *self.rng.pick(&["pc", "phone"]).expect("devices");
                let spawn = || {
                    self.world
                        .command(&["-C", device, "sync", "--json"])
                        .stdout(std::process::Stdio::piped())
                        .stderr(std::process::Stdio::piped())
                        .spawn()
                        .expect("cpm runs")
                };
                let (first, second) = (spawn(), spawn());
                for child in [first, second] {
                    let output = child.wait_with_output().expect("cpm ends");
                    assert!(output.status.success(), "{}", String::from_utf8_lossy(&output.stderr));
                }
                self.log.push(format!("two syncs of {device} at once"));
                self.store_now();
                if let Some((path, _)) = self.pending.remove(device).and_then(|pending| pending.into_iter().next()) {
                    panic!("{path} written on {device} is not in the store\n{}", self.log.join("\n"));
                }
            }
            _ => {
                let files = self.device_files(device);
                if let Some(path) = self.rng.pick(&files).cloned() {
                    let Some(local) = self.local_path(device, &path) else { return };
                    std::fs::remove_file(local).expect("delete");
                    // Deleted before it was synced: nobody can miss it.
                    self.pending.entry(device).or_default().remove(&path);
                    self.log.push(format!("{device}: delete {path}"));
                }
            }
        }
    }

    /// Syncs a device, sometimes killed after a few actions; on success, checks that what the
    /// device wrote reached the store.
    fn sync(&mut self, device: &'static str, fault: Option<usize>) -> bool {
        let mut command = self.world.command(&["-C", device, "sync", "--json"]);
        if let Some(after) = fault {
            command.env("CPM_FAULT_AFTER_ACTIONS", after.to_string());
        }
        // Now and then the store crashes in the middle of the sync, and comes back.
        let crash_after = (fault.is_none() && self.rng.below(6) == 0).then(|| self.rng.below(40) as u64);
        let output = match crash_after {
            None => command.output().expect("cpm runs"),
            Some(millis) => {
                let child = command
                    .stdout(std::process::Stdio::piped())
                    .stderr(std::process::Stdio::piped())
                    .spawn()
                    .expect("cpm runs");
                std::thread::sleep(std::time::Duration::from_millis(millis));
                self.world.server.crash_and_restart();
                self.log.push(format!("store crashed {millis} ms into a sync of {device}"));
                child.wait_with_output().expect("cpm ends")
            }
        };
        let said = String::from_utf8_lossy(&output.stdout).split_whitespace().collect::<Vec<_>>().join(" ");
        self.log.push(format!("sync {device} (fault {fault:?}): {} {said}", output.status));
        // Content that reached the store is delivered, even by a sync that died afterwards.
        self.store_now();
        if !output.status.success() {
            assert!(
                fault.is_some() || crash_after.is_some(),
                "sync of {device} failed: {}\n{}",
                String::from_utf8_lossy(&output.stderr),
                self.log.join("\n")
            );
            return false;
        }
        if let Some((path, content)) = self.pending.remove(device).and_then(|pending| pending.into_iter().next()) {
            panic!("{path} written on {device} ({content}) is not in the store\n{}", self.log.join("\n"));
        }
        serde_json::from_slice::<Value>(&output.stdout).is_ok_and(|report| {
            [
                "uploaded",
                "moved_up",
                "deleted_up",
                "folders_up",
                "folders_deleted_up",
                "downloaded",
                "stubs_written",
                "renamed",
                "removed",
            ]
            .iter()
            .all(|key| report[key] == 0)
        })
    }
}

#[test]
fn random_changes_and_crashes_converge_without_loss_or_duplicates() {
    let seed: u64 = std::env::var("CPM_SEED").ok().and_then(|raw| raw.parse().ok()).unwrap_or_else(|| {
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(1, |since| since.as_nanos() as u64)
            | 1
    });
    let steps: usize = std::env::var("CPM_RANDOM_STEPS").ok().and_then(|raw| raw.parse().ok()).unwrap_or(40);
    println!("random sync: CPM_SEED={seed} CPM_RANDOM_STEPS={steps}");
    let world = World::new();
    world.register("pda", &[]);
    for (name, class) in [("pc", "pc"), ("tablet", "tablet"), ("phone", "phone")] {
        world.register_as(name, class, &[]);
    }
    world.on("tablet", &["prefs", "set", "--filter", &format!("size < {SMALL}")]);
    world.on("phone", &["prefs", "set", "--include", "/docs/**", "--content", "stub", "--fields", "name,size"]);
    // The tablet's agent runs all along: its syncs and the manual ones take turns.
    let agent = support::Running(
        world
            .command(&["-C", "tablet", "agent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .expect("the agent starts"),
    );
    let mut run = Run { world, rng: Rng(seed), serial: 0, pending: BTreeMap::new(), log: Vec::new() };
    for _ in 0..steps {
        if run.rng.below(3) == 0 {
            let device = *run.rng.pick(&["pc", "tablet", "phone"]).expect("devices");
            let fault = (run.rng.below(3) == 0).then(|| run.rng.below(4));
            run.sync(device, fault);
        } else {
            run.change();
        }
    }
    drop(agent);
    // Syncs until a whole round changes nothing.
    let mut quiet = false;
    for _ in 0..6 {
        // Every device syncs in each round, whatever the others reported.
        let rounds: Vec<bool> = ["pc", "tablet", "phone"].iter().map(|device| run.sync(device, None)).collect();
        quiet = rounds.iter().all(|was_quiet| *was_quiet);
        if quiet {
            break;
        }
    }
    let log = run.log.join("\n");
    let crashes = run.log.iter().filter(|line| line.starts_with("store crashed")).count();
    let killed = run.log.iter().filter(|line| line.contains("SIGABRT")).count();
    println!("random sync: {killed} agents killed mid-sync, {crashes} store crashes");
    assert!(quiet, "no quiet round after 6 (seed {seed})\n{log}");

    let (objects, folders) = store_tree(&run.world);
    let mut by_content: BTreeMap<&String, Vec<&String>> = BTreeMap::new();
    for (path, (content, _)) in &objects {
        by_content.entry(content).or_default().push(path);
    }
    let twice: Vec<&Vec<&String>> = by_content.values().filter(|paths| paths.len() > 1).collect();
    assert!(twice.is_empty(), "content stored twice, at {twice:?} (seed {seed})\n{log}");

    let (pc_files, pc_dirs) = local_tree(&run.world.path("pc"));
    let expected: BTreeMap<String, String> =
        objects.iter().map(|(path, (content, _))| (path.clone(), content.clone())).collect();
    assert_eq!(pc_files, expected, "the PC holds the whole store (seed {seed})\n{log}");
    assert_eq!(pc_dirs, folders, "the PC holds every folder (seed {seed})\n{log}");

    let (tablet_files, _) = local_tree(&run.world.path("tablet"));
    let small: BTreeMap<String, String> = objects
        .iter()
        .filter(|(_, (_, size))| (*size as usize) < SMALL)
        .map(|(path, (content, _))| (path.clone(), content.clone()))
        .collect();
    assert_eq!(tablet_files, small, "the tablet holds the small objects (seed {seed})\n{log}");

    let (phone_files, _) = local_tree(&run.world.path("phone"));
    let stubs: BTreeSet<String> = phone_files.into_keys().collect();
    let docs: Vec<&String> = objects.keys().filter(|path| path.starts_with("docs/")).collect();
    // A name too long for its stub suffix gets a shorter one of the device's own.
    let fits = |path: &&&String| path.rsplit('/').next().is_some_and(|name| name.len() + ".cpmlink".len() <= 255);
    let named: BTreeSet<String> = docs.iter().filter(fits).map(|path| format!("{path}.cpmlink")).collect();
    assert!(
        stubs.len() == docs.len() && named.is_subset(&stubs) && stubs.iter().all(|stub| stub.ends_with(".cpmlink")),
        "the phone holds stubs of /docs: {stubs:?} for {docs:?} (seed {seed})\n{log}"
    );
}
