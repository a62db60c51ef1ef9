//! What a user trusts the real binary with, beyond the sync engine's rules: a server that stops
//! answering never hangs a command, and downloads keep the dates of what they copy.

mod support;

use std::time::{Duration, SystemTime};
use support::World;

/// Sends a signal to the server (stopping or continuing it, as `kill -STOP` and `kill -CONT`).
fn signal(world: &World, name: &str) {
    let pid = world.server.child.id().to_string();
    let status = std::process::Command::new("kill").args([name, &pid]).status().expect("kill runs");
    assert!(status.success(), "kill {name} {pid}");
}

/// How a command ended, if it did within `limit`; killed otherwise. A watchdog, not a speed
/// target: a hung command would otherwise hang the suite.
fn ended_within(child: &mut std::process::Child, limit: Duration) -> Option<std::process::ExitStatus> {
    let started = std::time::Instant::now();
    loop {
        if let Some(status) = child.try_wait().expect("cpm waits") {
            return Some(status);
        }
        if started.elapsed() > limit {
            let _ = child.kill();
            return None;
        }
        std::thread::sleep(Duration::from_millis(50));
    }
}

#[test]
fn a_server_that_stops_answering_makes_commands_fail_with_one_line_not_hang() {
    let world = World::new();
    world.register("pda", &[]);
    signal(&world, "-STOP");
    let mut child = world
        .command(&["-C", "pda", "ls", "/"])
        .env("CPM_READ_TIMEOUT", "2s")
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cpm runs");
    let ended = ended_within(&mut child, Duration::from_secs(60));
    signal(&world, "-CONT");
    let status = ended.expect("cpm ls hung on a stopped server");
    let output = child.wait_with_output().expect("cpm output");
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(!status.success(), "a stopped server cannot answer");
    assert_eq!(stderr.trim().lines().count(), 1, "one line: {stderr}");
    assert!(stderr.starts_with("cpm: ") && stderr.contains(&world.server.url), "names the server: {stderr}");
    // Once the server answers again, so does the command.
    world.on("pda", &["ls", "/"]);
}

#[test]
fn downloads_keep_the_modified_time_of_the_objects_they_copy() {
    let world = World::new();
    world.register("pda", &[]);
    world.write("old.txt", b"written in 2020");
    let in_2020 = SystemTime::UNIX_EPOCH + Duration::from_secs(1_577_934_245);
    std::fs::File::options()
        .write(true)
        .open(world.path("old.txt"))
        .and_then(|file| file.set_modified(in_2020))
        .expect("sets the mtime");
    world.pda(&["put", "old.txt", "/docs/"]);
    let listed: serde_json::Value =
        serde_json::from_str(&world.pda(&["ls", "--json", "/docs"])).expect("ls --json prints JSON");
    let modified: jiff::Timestamp =
        listed[0]["modified"].as_str().and_then(|raw| raw.parse().ok()).expect("the object's modified");
    assert_eq!(modified, jiff::Timestamp::try_from(in_2020).expect("a timestamp"), "put keeps the file's date");

    world.register_as("pc", "pc", &[]);
    world.sync("pc");
    let copied = std::fs::metadata(world.path("pc/docs/old.txt")).and_then(|meta| meta.modified()).expect("mtime");
    assert_eq!(copied, in_2020, "the download carries the object's modified time");
}

#[test]
fn files_with_the_same_content_survive_a_lost_index() {
    let world = World::new();
    world.register_as("pc", "pc", &[]);
    std::fs::create_dir_all(world.path("pc/music")).expect("mkdir");
    for name in ["a.mp3", "b.mp3"] {
        std::fs::write(world.path(&format!("pc/music/{name}")), b"the same song twice").expect("write");
    }
    world.sync("pc");
    std::fs::remove_file(world.path("pc/.cpm/index.db")).expect("the index goes");
    for _ in 0..2 {
        let report = world.sync("pc");
        assert_eq!((report["removed"].as_u64(), report["deleted_up"].as_u64()), (Some(0), Some(0)), "{report}");
    }
    for name in ["a.mp3", "b.mp3"] {
        assert_eq!(world.read(&format!("pc/music/{name}")), b"the same song twice");
    }
    let listed: serde_json::Value =
        serde_json::from_str(&world.on("pc", &["ls", "--json", "/music"])).expect("ls --json prints JSON");
    assert_eq!(listed.as_array().map(Vec::len), Some(2), "both objects stay in the store: {listed}");
}

#[test]
fn a_store_folder_named_cpm_lives_beside_the_devices_own_folder() {
    let world = World::new();
    world.register("pda", &[]);
    world.write("note.txt", b"hello");
    world.pda(&["put", "note.txt", "/.cpm/"]);
    world.register_as("pc", "pc", &[]);
    for _ in 0..2 {
        world.sync("pc");
    }
    assert!(!world.path("pc/.cpm/note.txt").exists(), "nothing of the store's goes into the device's own folder");
    let beside: Vec<String> = std::fs::read_dir(world.path("pc"))
        .expect("reads pc")
        .filter_map(Result::ok)
        .map(|entry| entry.file_name().to_string_lossy().into_owned())
        .filter(|name| name.starts_with(".cpm ~"))
        .collect();
    assert_eq!(beside.len(), 1, "a folder of its own name here: {beside:?}");
    assert_eq!(world.read(&format!("pc/{}/note.txt", beside[0])), b"hello");
    world.pda(&["ls", "/.cpm/note.txt"]);
}

#[test]
fn registering_against_a_stopped_server_fails_within_the_read_timeout() {
    let world = World::new();
    signal(&world, "-STOP");
    let args = world.registration("pda", "pda", "pda");
    let mut child = world
        .command(&args.iter().map(String::as_str).collect::<Vec<_>>())
        .env("CPM_READ_TIMEOUT", "2s")
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("cpm runs");
    // Well above the 2 s asked for, well below the 60 s default.
    let ended = ended_within(&mut child, Duration::from_secs(30));
    signal(&world, "-CONT");
    let status = ended.expect("register waited past its read timeout");
    let output = child.wait_with_output().expect("cpm output");
    assert!(!status.success());
    let stderr = String::from_utf8_lossy(&output.stderr);
    assert!(stderr.contains("2 s"), "{stderr}");
}
