//! The sync agent with the real `cpm` binary: a PC (full, with content), a phone (partial,
//! stubs, field-filtered) and a PDA, following use case 7.1 and then the harder cases.

mod support;

use serde_json::Value;
use support::{World, entry, eventually, files_under};

fn stub(world: &World, path: &str) -> Value {
    serde_json::from_slice(&world.read(path)).expect("a stub is JSON")
}

fn world_with_three_devices() -> (World, Vec<u8>) {
    let world = World::new();
    world.register("pda", &[]);
    for (name, class) in [("pc", "pc"), ("phone", "phone")] {
        world.register_as(name, class, &[]);
    }
    let song1: Vec<u8> = (0..200_000u32).map(|i| (i % 253) as u8).collect();
    world.write("song1.mp3", &song1);
    world.write("song2.mp3", b"the second song");
    world.write("photo.jpg", b"a picture");
    world.write("clip.mp4", b"a video");
    world.pda(&["put", "song1.mp3", "song2.mp3", "photo.jpg", "clip.mp4", "/content/"]);
    world.on("phone", &[&["prefs", "set"], support::PHONE_PROFILE.as_slice()].concat());
    (world, song1)
}

#[test]
fn use_case_7_1_the_phone_follows_the_move_with_stubs_and_the_pc_without_downloading_again() {
    let (world, song1) = world_with_three_devices();
    let first = world.sync("pc");
    assert_eq!(first["downloaded"], 4);
    assert_eq!(
        files_under(&world.path("pc")),
        ["content/clip.mp4", "content/photo.jpg", "content/song1.mp3", "content/song2.mp3"]
    );
    assert_eq!(world.read("pc/content/song1.mp3"), song1);
    world.sync("phone");
    assert_eq!(files_under(&world.path("phone")), ["content/song1.mp3.cpmlink", "content/song2.mp3.cpmlink"]);
    let before = stub(&world, "phone/content/song1.mp3.cpmlink");
    let mut keys: Vec<&str> = before.as_object().expect("object").keys().map(String::as_str).collect();
    keys.sort();
    assert_eq!(
        keys,
        ["content_type", "hash", "id", "kind", "link", "modified", "modseq", "name", "parent_id", "size"],
        "exactly the kept details"
    );

    // Steps 4-6: a new folder and a move on the PDA; the phone follows.
    world.pda(&["mkdir", "/content/favourite song"]);
    world.pda(&["mv", "/content/*.mp3", "/content/favourite song/"]);
    let phone = world.sync("phone");
    assert_eq!(phone["bytes_downloaded"], 0);
    assert_eq!(
        files_under(&world.path("phone")),
        ["content/favourite song/song1.mp3.cpmlink", "content/favourite song/song2.mp3.cpmlink"]
    );
    let after = stub(&world, "phone/content/favourite song/song1.mp3.cpmlink");
    assert_eq!((&after["id"], &after["link"]), (&before["id"], &before["link"]));
    assert_ne!(after["parent_id"], before["parent_id"]);
    let listing = world.on("phone", &["ls", "--local", "-l", "/content/favourite song"]);
    assert!(listing.contains("stub") && listing.contains("song1.mp3.cpmlink"), "{listing}");
    // The link still works: fetch hydrates the stub through it.
    world.on("phone", &["fetch", "/content/favourite song/song1.mp3"]);
    assert_eq!(world.read("phone/content/favourite song/song1.mp3"), song1);
    world.on("phone", &["evict", "/content/favourite song/song1.mp3"]);
    assert!(world.path("phone/content/favourite song/song1.mp3.cpmlink").is_file());
    assert!(!world.path("phone/content/favourite song/song1.mp3").exists());

    // Step 7: the PC moves its files; no content crosses the wire.
    let pc = world.sync("pc");
    assert_eq!((pc["bytes_downloaded"].as_u64(), pc["renamed"].as_u64()), (Some(0), Some(2)), "{pc}");
    assert_eq!(
        files_under(&world.path("pc")),
        [
            "content/clip.mp4",
            "content/favourite song/song1.mp3",
            "content/favourite song/song2.mp3",
            "content/photo.jpg"
        ]
    );
    assert_eq!(world.read("pc/content/favourite song/song1.mp3"), song1);
    let quiet = world.sync("pc");
    assert_eq!(
        (quiet["downloaded"].as_u64(), quiet["uploaded"].as_u64(), quiet["renamed"].as_u64()),
        (Some(0), Some(0), Some(0))
    );
}

#[test]
fn the_pc_sends_its_own_changes_as_uploads_moves_and_deletes() {
    let (world, _) = world_with_three_devices();
    world.sync("pc");
    let clip_id = entry(&world.listing("/content"), "clip.mp4")["id"].clone();
    std::fs::write(world.path("pc/content/photo.jpg"), b"a better picture").expect("edit");
    std::fs::write(world.path("pc/content/new.txt"), b"written on the pc").expect("create");
    std::fs::rename(world.path("pc/content/clip.mp4"), world.path("pc/content/movie.mp4")).expect("rename");
    std::fs::remove_file(world.path("pc/content/song2.mp3")).expect("delete");
    std::fs::create_dir_all(world.path("pc/notes/2026")).expect("mkdir");
    std::fs::write(world.path("pc/notes/2026/todo.txt"), b"buy milk").expect("create");
    let status = world.on("pc", &["status"]);
    assert!(status.contains("pending:   7 local changes"), "{status}");

    let report = world.sync("pc");
    assert_eq!(
        (report["uploaded"].as_u64(), report["moved_up"].as_u64(), report["deleted_up"].as_u64()),
        (Some(3), Some(1), Some(1)),
        "{report}"
    );
    assert_eq!(report["bytes_uploaded"], 16 + 17 + 8);
    let content = world.listing("/content");
    assert_eq!(world.names("/content"), ["movie.mp4", "new.txt", "photo.jpg", "song1.mp3"]);
    assert_eq!(entry(&content, "movie.mp4")["id"], clip_id, "a rename goes up as a move");
    assert_eq!(world.names("/notes/2026"), ["todo.txt"]);
    world.pda(&["get", "/content/photo.jpg", "photo-now.jpg"]);
    assert_eq!(world.read("photo-now.jpg"), b"a better picture");
    assert!(world.on("pc", &["status"]).contains("pending:   0 local changes"));
}

#[test]
fn when_both_sides_change_a_file_the_store_keeps_the_name_and_the_pc_a_conflict_copy() {
    let (world, _) = world_with_three_devices();
    world.sync("pc");
    world.write("photo.jpg", b"edited on the pda");
    world.pda(&["put", "--replace", "photo.jpg", "/content/"]);
    std::fs::write(world.path("pc/content/photo.jpg"), b"edited on the pc").expect("edit");
    let report = world.sync("pc");
    let conflicts = report["conflicts"].as_array().expect("list");
    assert_eq!(conflicts.len(), 1, "{report}");
    let copy = conflicts[0].as_str().expect("path");
    assert!(copy.starts_with("/content/photo (conflict pc ") && copy.ends_with(").jpg"), "{copy}");
    assert_eq!(world.read("pc/content/photo.jpg"), b"edited on the pda", "the store's version keeps the name");
    assert_eq!(world.read(&format!("pc{copy}")), b"edited on the pc");
    world.pda(&["get", copy, "copy.jpg"]);
    assert_eq!(world.read("copy.jpg"), b"edited on the pc", "the device's version is in the store too");
}

#[test]
fn a_partial_device_follows_objects_into_and_out_of_its_subset() {
    let (world, _) = world_with_three_devices();
    world.sync("phone");
    world.pda(&["mkdir", "/music"]);
    world.pda(&["mv", "/content/song2.mp3", "/music/"]);
    world.sync("phone");
    assert_eq!(files_under(&world.path("phone")), ["content/song1.mp3.cpmlink"]);
    world.pda(&["mv", "/music/song2.mp3", "/content/"]);
    world.sync("phone");
    assert_eq!(files_under(&world.path("phone")), ["content/song1.mp3.cpmlink", "content/song2.mp3.cpmlink"]);
    // A new profile re-scopes the device: now the pictures, with content.
    world.on("phone", &["prefs", "set", "--type", "image/*", "--content", "download", "--fields", "all"]);
    let report = world.sync("phone");
    assert_eq!(report["full"], true);
    assert_eq!(files_under(&world.path("phone")), ["content/photo.jpg"]);
    assert_eq!(world.read("phone/content/photo.jpg"), b"a picture");
}

#[test]
fn a_device_that_lost_its_index_reuses_every_file_it_has() {
    let (world, _) = world_with_three_devices();
    world.sync("pc");
    for name in ["index.db", "index.db-wal", "index.db-shm"] {
        let _ = std::fs::remove_file(world.path(&format!("pc/.cpm/{name}")));
    }
    let report = world.sync("pc");
    assert_eq!(report["full"], true);
    assert_eq!((report["downloaded"].as_u64(), report["uploaded"].as_u64()), (Some(0), Some(0)), "{report}");
    assert_eq!(world.names("/content"), ["clip.mp4", "photo.jpg", "song1.mp3", "song2.mp3"], "nothing duplicated");
}

#[test]
fn the_local_listing_works_with_the_store_down() {
    let (mut world, _) = world_with_three_devices();
    world.sync("phone");
    let _ = world.server.child.kill();
    let _ = world.server.child.wait();
    let listing = world.on("phone", &["ls", "--local", "/content"]);
    assert_eq!(listing.lines().collect::<Vec<_>>(), ["song1.mp3.cpmlink", "song2.mp3.cpmlink"]);
    let line = world.fails(&["-C", "phone", "sync"]);
    assert!(line.contains("cannot reach the server"), "{line}");
}

#[test]
fn an_expired_cursor_leads_to_a_full_reconcile_that_reuses_local_files() {
    let world =
        World::with_operator_settings(Some("[server]\ntombstone_retention = \"1s\"\ngc_interval = \"200ms\"\n"));
    world.register("pda", &[]);
    world.register_as("pc", "pc", &[]);
    for name in ["a.txt", "b.txt", "c.txt"] {
        world.write(name, name.as_bytes());
    }
    world.pda(&["put", "a.txt", "b.txt", "c.txt", "/docs/"]);
    world.sync("pc");
    world.pda(&["rm", "/docs/a.txt"]);
    world.write("d.txt", b"new while the pc was away");
    world.pda(&["put", "d.txt", "/docs/"]);
    // Long enough for the tombstone of a.txt to expire and be collected.
    std::thread::sleep(std::time::Duration::from_millis(2500));
    let report = world.sync("pc");
    assert_eq!(report["full"], true, "{report}");
    assert_eq!(report["downloaded"], 1, "only the new file is fetched: {report}");
    assert_eq!(files_under(&world.path("pc")), ["docs/b.txt", "docs/c.txt", "docs/d.txt"]);
}

#[test]
fn after_a_restart_the_stubs_and_folders_a_pull_left_to_the_kernel_are_checked_and_written_again() {
    let (world, _) = world_with_three_devices();
    world.pda(&["mkdir", "/content/albums"]);
    world.sync("phone");
    assert!(world.path("phone/content/albums").is_dir());
    // What a power cut can do to files the kernel had not written yet: an empty stub, a missing
    // one, a folder that never reached the disk. The machine then starts a new boot.
    std::fs::write(world.path("phone/content/song1.mp3.cpmlink"), b"").expect("empty the stub");
    std::fs::remove_file(world.path("phone/content/song2.mp3.cpmlink")).expect("remove the stub");
    std::fs::remove_dir(world.path("phone/content/albums")).expect("remove the folder");
    let index = rusqlite::Connection::open(world.path("phone/.cpm/index.db")).expect("open the index");
    let updated = index
        .execute("UPDATE meta SET value = 'an earlier boot' WHERE key = 'unflushed_boot'", [])
        .expect("set the boot");
    assert_eq!(updated, 1, "the stub-only pull left its writes to the kernel");
    drop(index);

    let report = world.sync("phone");
    assert_eq!(report["full"], true, "{report}");
    for song in ["song1", "song2"] {
        let stub: serde_json::Value =
            serde_json::from_slice(&world.read(&format!("phone/content/{song}.mp3.cpmlink"))).expect("a whole stub");
        assert_eq!(stub["name"], format!("{song}.mp3"));
    }
    assert!(world.path("phone/content/albums").is_dir(), "the folder is made again");
    assert_eq!(
        world.names("/content"),
        ["albums", "clip.mp4", "photo.jpg", "song1.mp3", "song2.mp3"],
        "nothing deleted"
    );
}

#[test]
fn what_a_killed_pull_placed_stays_its_own_through_a_second_killed_pull() {
    let world = World::new();
    world.register("pda", &[]);
    world.register_as("pc", "pc", &[]);
    world.write("a.txt", b"placed by the first pull");
    world.pda(&["put", "a.txt", "/docs/"]);
    // The first pull makes the folder, downloads a.txt, and dies before recording either.
    world.sync_killed_after("pc", 2);
    assert_eq!(world.read("pc/docs/a.txt"), b"placed by the first pull");
    // The second pull has only b.txt to place, and dies too.
    world.write("b.txt", b"placed by the second pull");
    world.pda(&["put", "b.txt", "/docs/"]);
    world.sync_killed_after("pc", 1);
    // Meanwhile a.txt moves in the store: the file the first pull left must follow it.
    world.pda(&["mkdir", "/moved"]);
    world.pda(&["mv", "/docs/a.txt", "/moved/"]);
    let report = world.sync("pc");
    assert_eq!(report["uploaded"], 0, "nothing the pulls placed goes up as new: {report}");
    assert_eq!(world.names("/docs"), ["b.txt"]);
    assert_eq!(world.names("/moved"), ["a.txt"]);
    assert_eq!(files_under(&world.path("pc")), ["docs/b.txt", "moved/a.txt"]);
}

#[test]
fn triggers_are_set_with_prefs_checked_and_leave_the_local_storage_as_it_is() {
    let (world, _) = world_with_three_devices();
    let set = world.on("pc", &["prefs", "set", "--daily", "24:00", "--tz", "Europe/Paris", "--auto", "off"]);
    assert!(set.contains("syncs daily 24:00 (Europe/Paris)"), "{set}");
    world.sync("pc");
    let set = world.on("pc", &["prefs", "set", "--auto", "on", "--schedule", "0 */6 * * *"]);
    assert!(set.contains("syncs when the store changes; syncs 0 */6 * * * (Europe/Paris)"), "{set}");
    let report = world.sync("pc");
    assert_eq!(report["full"], false, "new triggers do not re-read the view: {report}");

    let before = world.on("pc", &["prefs", "show"]);
    for (args, says) in [
        (&["--daily", "25:00"][..], "bad time of day \"25:00\""),
        (&["--schedule", "0 0 * *"][..], "bad schedule \"0 0 * *\""),
        (&["--tz", "Mars/Olympus"][..], "unknown time zone \"Mars/Olympus\""),
    ] {
        let mut command = vec!["-C", "pc", "prefs", "set"];
        command.extend_from_slice(args);
        let line = world.fails(&command);
        assert!(line.contains(says), "{line}");
    }
    assert_eq!(world.on("pc", &["prefs", "show"]), before, "a refused preference changes nothing");
    let set = world.on("pc", &["prefs", "set", "--no-schedule", "--auto", "off"]);
    assert!(!set.contains("syncs"), "{set}");
}

#[test]
fn operator_settings_give_defaults_hold_bounds_and_say_what_decided_each_field() {
    let world = World::with_operator_settings(Some(
        "[class.phone.default]\nmode = \"partial\"\ncontent = \"stub\"\nauto = true\n\
         [class.phone.bound]\ncontent = [\"stub\"]\nmin_schedule_interval = \"1h\"\n",
    ));
    world.register("pda", &[]);
    world.register_as("phone", "phone", &[]);
    world.register_as("pc", "pc", &[]);
    world.write("song.mp3", b"a song");
    world.pda(&["put", "song.mp3", "/content/"]);

    // Nothing set: the phone gets the operator's defaults, the PC cpm's own.
    assert!(world.on("phone", &["prefs", "show"]).starts_with("partial, stub"));
    assert!(world.on("pc", &["prefs", "show"]).starts_with("full, download"));
    world.sync("phone");
    assert_eq!(files_under(&world.path("phone")), ["content/song.mp3.cpmlink"]);

    // Outside the bounds: refused, naming the rule, and nothing changes.
    let before = world.on("phone", &["prefs", "show"]);
    let line = world.fails(&["-C", "phone", "prefs", "set", "--content", "download"]);
    assert!(line.contains("content must be one of stub for phone devices (class.phone.bound.content)"), "{line}");
    let line = world.fails(&["-C", "phone", "prefs", "set", "--schedule", "*/10 * * * *"]);
    assert!(line.contains("class.phone.bound.min_schedule_interval"), "{line}");
    assert_eq!(world.on("phone", &["prefs", "show"]), before);

    world.on("phone", &["prefs", "set", "--auto", "off", "--daily", "24:00", "--tz", "Europe/Paris"]);
    let effective = world.on("phone", &["prefs", "show", "--effective"]);
    for line in [
        "auto      false  (your preference)",
        "content   stub  (operator default)",
        "mode      partial  (operator default)",
        "schedule  daily 24:00  (your preference)",
        "fields    none  (built-in default)",
    ] {
        assert!(effective.lines().any(|shown| shown == line), "{line:?} not in\n{effective}");
    }
}

#[test]
fn the_operator_settings_reload_on_sighup_and_a_broken_file_keeps_the_old_ones() {
    let mut world = World::with_operator_settings(Some("[class.phone.default]\ncontent = \"stub\"\n"));
    world.register_as("phone", "phone", &[]);
    assert!(world.on("phone", &["prefs", "show"]).starts_with("full, stub"));
    let hang_up = |text: &str| {
        std::fs::write(world.path("operator.toml"), text).expect("rewrite the settings");
        let pid = world.server.child.id().to_string();
        assert!(std::process::Command::new("kill").args(["-HUP", &pid]).status().expect("kill").success());
    };
    let shows = |start: &str| {
        (0..50).any(|_| {
            std::thread::sleep(std::time::Duration::from_millis(100));
            world.on("phone", &["prefs", "show"]).starts_with(start)
        })
    };
    hang_up("[class.phone.default]\nmode = \"partial\"\ncontent = \"stub\"\n");
    assert!(shows("partial, stub"), "the new defaults are in force");
    hang_up("[class.phone.default]\nmode = \"sometimes\"\n");
    std::thread::sleep(std::time::Duration::from_millis(500));
    assert!(world.on("phone", &["prefs", "show"]).starts_with("partial, stub"), "a broken file changes nothing");
    assert!(world.server.child.try_wait().expect("status").is_none(), "and the server keeps running");
}

/// Waits up to a generous bound for `done`; the latency itself belongs to the benchmark.
#[test]
fn the_agent_follows_a_move_on_the_pda_without_being_asked_and_ignores_what_is_outside_its_view() {
    let (world, _) = world_with_three_devices();
    world.on("phone", &["prefs", "set", "--auto", "on"]);
    let (mut agent, heard) = world.agent("phone");
    let phone = world.path("phone");
    assert!(eventually(|| files_under(&phone) == ["content/song1.mp3.cpmlink", "content/song2.mp3.cpmlink"]));

    // Step 6: a move on the PDA reaches the phone with no sync started by hand.
    world.pda(&["mkdir", "/content/favourite song"]);
    world.pda(&["mv", "/content/song1.mp3", "/content/favourite song/"]);
    assert!(
        eventually(|| files_under(&phone) == ["content/favourite song/song1.mp3.cpmlink", "content/song2.mp3.cpmlink"]),
        "{:?}",
        files_under(&phone)
    );
    let stub: Value =
        serde_json::from_slice(&world.read("phone/content/favourite song/song1.mp3.cpmlink")).expect("a stub");
    assert!(stub["link"].as_str().is_some_and(|link| link.ends_with("/content")));

    // A change outside the phone's view wakes nothing.
    while heard.recv_timeout(std::time::Duration::from_millis(300)).is_ok() {}
    world.write("photo2.jpg", b"another picture");
    world.pda(&["put", "photo2.jpg", "/content/"]);
    assert!(
        heard.recv_timeout(std::time::Duration::from_millis(1500)).is_err(),
        "a sync for a photo the phone does not hold"
    );

    let phone_online = || {
        let devices: Value = serde_json::from_str(&world.pda(&["devices", "--json"])).expect("json");
        devices
            .as_array()
            .and_then(|all| all.iter().find(|device| device["name"] == "phone"))
            .map(|d| d["online"] == true)
    };
    assert_eq!(phone_online(), Some(true), "the server sees the agent connected");
    let devices: Value = serde_json::from_str(&world.pda(&["devices", "--json"])).expect("json");
    let last_sync = |name: &str| {
        devices
            .as_array()
            .and_then(|all| all.iter().find(|device| device["name"] == name))
            .map(|d| d["last_sync"].is_string())
    };
    assert_eq!((last_sync("phone"), last_sync("pc")), (Some(true), Some(false)), "{devices}");
    assert!(world.pda(&["devices"]).contains("LAST SYNC"));
    let pid = agent.0.id().to_string();
    assert!(std::process::Command::new("kill").args(["-TERM", &pid]).status().expect("kill").success());
    assert!(agent.0.wait().expect("the agent stops").success(), "SIGTERM stops the agent cleanly");
    assert!(eventually(|| phone_online() == Some(false)), "and then gone");
}

/// The running agent hears the user's own changes: a new file, an edit, a move and a delete on
/// the PC each reach the store with no sync started by hand and no change in the store to wake
/// it; what the agent writes itself (a download) wakes nothing more.
#[test]
fn the_running_agent_sends_local_changes_up_and_ignores_its_own_writes() {
    let (world, _) = world_with_three_devices();
    world.on("pc", &["prefs", "set", "--auto", "on"]);
    let (_agent, heard) = world.agent("pc");
    heard.recv_timeout(std::time::Duration::from_secs(30)).expect("the agent's first sync");
    let in_store = |name: &str| world.names("/content").iter().any(|listed| listed == name);

    world.write("pc/content/notes.txt", b"written on the pc");
    assert!(eventually(|| in_store("notes.txt")), "a new file goes up");
    world.write("pc/content/notes.txt", b"edited on the pc, longer now");
    let size_in_store = || {
        let listing = world.listing("/content");
        listing.iter().find(|entry| entry["name"] == "notes.txt").and_then(|entry| entry["size"].as_u64())
    };
    assert!(eventually(|| size_in_store() == Some(28)), "an edit goes up");
    std::fs::rename(world.path("pc/content/notes.txt"), world.path("pc/content/renamed.txt")).expect("renames");
    assert!(eventually(|| in_store("renamed.txt") && !in_store("notes.txt")), "a move goes up");
    std::fs::remove_file(world.path("pc/content/renamed.txt")).expect("removes");
    assert!(eventually(|| !in_store("renamed.txt")), "a delete goes up");

    while heard.recv_timeout(std::time::Duration::from_millis(500)).is_ok() {}
    world.write("song3.mp3", b"a third song");
    world.pda(&["put", "song3.mp3", "/content/"]);
    let download = heard.recv_timeout(std::time::Duration::from_secs(10)).expect("the hint wakes the agent");
    assert_eq!(download["downloaded"], 1, "{download}");
    let mut after = Vec::new();
    while let Ok(report) = heard.recv_timeout(std::time::Duration::from_millis(1500)) {
        after.push(report);
    }
    // At most the check of a write heard after its own sync ended; never one that did anything.
    assert!(
        after.len() <= 1 && after.iter().all(|report| report["uploaded"] == 0 && report["downloaded"] == 0),
        "the agent's own download woke it: {after:?}"
    );
}

/// Revoking the device one is on asks first (and without a terminal, refuses unless `--yes`);
/// its agent then stops with one line that says what to do, and `device register --replace`
/// registers the same directory again with the old device's preferences: its files stay, and
/// the next sync neither downloads them again nor makes a copy of any.
#[test]
fn a_revoked_device_stops_its_agent_and_registers_again_in_place() {
    let (world, _) = world_with_three_devices();
    assert_eq!(world.sync("phone")["stubs_written"], 2);
    let refused = world.fails(&["-C", "phone", "devices", "revoke", "phone"]);
    assert!(refused.contains("not revoked") && refused.contains("--yes"), "{refused}");
    assert!(world.sync("phone")["cursor"].is_i64(), "still registered");

    let mut agent = support::Running(
        world
            .command(&["-C", "phone", "agent"])
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("the agent starts"),
    );
    assert!(world.on("phone", &["devices", "revoke", "phone", "--yes"]).contains("revoked phone"));
    let stopped = agent.0.wait().expect("the agent stops by itself");
    assert!(!stopped.success());
    let mut said = String::new();
    std::io::Read::read_to_string(&mut agent.0.stderr.take().expect("stderr"), &mut said).expect("reads");
    assert!(said.contains("cpm device register --replace"), "{said}");
    let again = world.fails(&["-C", "phone", "sync"]);
    assert!(again.contains("--replace") && again.lines().count() == 1, "{again}");

    let fresh =
        world.fails(&world.registration("phone", "phone", "phone").iter().map(String::as_str).collect::<Vec<_>>());
    assert!(fresh.contains("--replace"), "{fresh}");
    let replaced = world.ok(&["device", "register", "--replace", "--dir", "phone"]);
    assert!(replaced.contains("registered again phone"), "{replaced}");
    let shown = world.on("phone", &["prefs", "show"]);
    assert!(shown.contains("/content/**"), "the old preferences carried over: {shown}");
    let report = world.sync("phone");
    assert_eq!((report["full"].as_bool(), report["uploaded"].as_u64()), (Some(true), Some(0)), "{report}");
    assert_eq!(report["stubs_written"], 0, "{report}");
    assert_eq!(files_under(&world.path("phone")), ["content/song1.mp3.cpmlink", "content/song2.mp3.cpmlink"]);
    assert_eq!(world.names("/content").len(), 4, "nothing doubled in the store");
}

/// A view bounded by age follows time: an object 40 minutes old has left a `--newer-than 30m`
/// phone, and the phone's agent is told when that boundary passes (no change in the store
/// wakes it). On a store clock that runs 300 times as fast, 30 minutes are 6 seconds.
#[test]
fn an_object_that_ages_out_of_the_view_leaves_the_device_when_the_boundary_passes() {
    let start = jiff::Timestamp::now().to_string();
    let world = World::with_server(None, &["--clock-start", &start, "--clock-speed", "300"]);
    world.register("pda", &[]);
    world.register_as("phone", "phone", &[]);
    world.on("phone", &["prefs", "set", "--mode", "partial", "--newer-than", "30m", "--auto", "on"]);
    world.write("note.txt", b"fresh news");
    world.pda(&["put", "note.txt", "/content/"]);
    let (_agent, heard) = world.agent("phone");
    let phone = world.path("phone");
    assert!(eventually(|| files_under(&phone) == ["content/note.txt"]), "{:?}", files_under(&phone));
    while heard.recv_timeout(std::time::Duration::from_millis(200)).is_ok() {}
    let left = (0..400).any(|_| {
        std::thread::sleep(std::time::Duration::from_millis(50));
        files_under(&phone).is_empty()
    });
    assert!(left, "the object aged out, and stays: {:?}", files_under(&phone));
    let report = heard.recv_timeout(std::time::Duration::from_secs(5)).expect("a sync took it away");
    assert_eq!(report["removed"], 1, "{report}");
}

#[test]
fn a_device_away_at_its_scheduled_instant_syncs_once_when_it_comes_back() {
    let midnight: jiff::Timestamp = "2026-11-26T00:00:00+01:00".parse().expect("an instant");
    let start = (midnight - jiff::SignedDuration::from_secs(30)).to_string();
    let world = World::with_server(None, &["--clock-start", &start, "--clock-speed", "10"]);
    world.register_as("pc", "pc", &["--tz", "Europe/Paris"]);
    world.on("pc", &["prefs", "set", "--daily", "24:00", "--auto", "off"]);
    let server_time = || -> jiff::Timestamp {
        world.get_json("/health")["time"].as_str().expect("a time").parse().expect("an instant")
    };
    assert!(server_time() < midnight, "set up too slowly to see 24:00 come");
    // The PC is away at 24:00.
    assert!(eventually(|| server_time() > midnight + jiff::SignedDuration::from_secs(5)));
    let (_agent, reports) = world.agent("pc");
    let first = reports.recv_timeout(std::time::Duration::from_secs(30)).expect("the agent syncs when it starts");
    assert_eq!(first["full"], true, "{first}");
    // The sync it makes on coming back is the one it was owed: no second one.
    assert!(reports.recv_timeout(std::time::Duration::from_secs(2)).is_err(), "synced twice for one instant");
}

#[test]
fn payloads_over_the_operators_bound_stay_stubs_and_are_never_downloaded() {
    let world = World::with_operator_settings(Some("[class.tablet.bound]\nmax_object_bytes = \"100KB\"\n"));
    world.register("pda", &[]);
    world.register_as("tablet", "tablet", &[]);
    let big: Vec<u8> = (0..200_000u32).map(|i| (i % 251) as u8).collect();
    world.write("film.mp4", &big);
    world.write("note.txt", b"a small note");
    world.pda(&["put", "film.mp4", "note.txt", "/content/"]);

    let report = world.sync("tablet");
    assert_eq!((report["downloaded"].as_u64(), report["stubs_written"].as_u64()), (Some(1), Some(1)), "{report}");
    assert_eq!(files_under(&world.path("tablet")), ["content/film.mp4.cpmlink", "content/note.txt"]);
    assert_eq!(world.read("tablet/content/note.txt"), b"a small note");
    let refused = world.fails(&["-C", "tablet", "fetch", "/content/film.mp4"]);
    assert!(refused.contains("downloads at most 100000"), "{refused}");
    assert!(!world.path("tablet/content/film.mp4").exists());

    let shown = world.on("tablet", &["prefs", "show", "--effective"]);
    assert!(shown.contains("max_download") && shown.contains("operator bound"), "{shown}");
    let over = world.fails(&["-C", "tablet", "prefs", "set", "--max-download", "1GB"]);
    assert!(over.contains("class.tablet.bound.max_object_bytes"), "{over}");
    let bad = world.fails(&["-C", "tablet", "prefs", "set", "--max-download", "lots"]);
    assert!(bad.contains("bad size"), "{bad}");
    world.on("tablet", &["prefs", "set", "--max-download", "50KB"]);
    assert!(world.sync("tablet")["downloaded"] == 0);
    assert_eq!(files_under(&world.path("tablet")), ["content/film.mp4.cpmlink", "content/note.txt"]);
}

#[test]
fn a_burst_of_changes_makes_a_few_syncs_not_one_each() {
    let (world, _) = world_with_three_devices();
    world.on("phone", &["prefs", "set", "--auto", "on"]);
    let songs = world.path("songs");
    std::fs::create_dir_all(&songs).expect("a folder");
    let names: Vec<String> = (0..300).map(|i| format!("songs/tune{i:03}.mp3")).collect();
    for name in &names {
        world.write(name, name.as_bytes());
    }
    let (_agent, reports) = world.agent("phone");
    reports.recv_timeout(std::time::Duration::from_secs(30)).expect("the agent's first sync");

    // 300 uploads, each its own change, then one move of all of them.
    let put: Vec<&str> = ["put"].into_iter().chain(names.iter().map(String::as_str)).chain(["/content/"]).collect();
    world.pda(&put);
    world.pda(&["mkdir", "/content/album"]);
    world.pda(&["mv", "/content/tune*.mp3", "/content/album/"]);
    let phone = world.path("phone");
    assert!(eventually(|| files_under(&phone).iter().filter(|path| path.starts_with("content/album/")).count() == 300));
    let mut syncs = 0;
    while reports.recv_timeout(std::time::Duration::from_millis(500)).is_ok() {
        syncs += 1;
    }
    // Before bursts were gathered this took about 50 syncs.
    assert!((1..=30).contains(&syncs), "{syncs} syncs for 302 changes");
}

#[test]
fn a_copy_of_a_stub_the_user_edited_is_hers_and_goes_up() {
    let (world, _) = world_with_three_devices();
    world.sync("phone");
    world.sync("pc");
    let stub = world.read("phone/content/song2.mp3.cpmlink");
    let text = String::from_utf8(stub.clone()).expect("a stub is text");
    let annotated = text.replacen("\"kind\": \"file\",", "\"kind\": \"file\", \"note\": \"my text\",", 1);
    assert_ne!(annotated, text, "the stub names its kind");
    std::fs::create_dir_all(world.path("pc/misc")).expect("mkdir");
    std::fs::write(world.path("pc/misc/annotated.cpmlink"), &annotated).expect("write");
    std::fs::write(world.path("phone/content/mine.cpmlink"), &annotated).expect("write");

    let report = world.sync("pc");
    assert_eq!(report["uploaded"], 1, "{report}");
    assert_eq!(world.read("pc/misc/annotated.cpmlink"), annotated.as_bytes(), "still here");
    assert_eq!(world.names("/misc"), ["annotated.cpmlink"]);
    let report = world.sync("phone");
    assert_eq!(report["uploaded"], 1, "{report}");
    assert!(world.names("/content").contains(&"mine.cpmlink".to_owned()));
    // A stub as the engine wrote it is still the engine's.
    assert_eq!(world.read("phone/content/song2.mp3.cpmlink"), stub);
}

#[test]
fn two_files_of_one_size_and_time_swapped_are_seen_as_changed() {
    let (world, _) = world_with_three_devices();
    std::fs::create_dir_all(world.path("pc/sw")).expect("mkdir");
    let when = std::time::SystemTime::UNIX_EPOCH + std::time::Duration::from_secs(1_790_000_000);
    for (name, text) in [("a.txt", "one"), ("b.txt", "two")] {
        std::fs::write(world.path(&format!("pc/sw/{name}")), text).expect("write");
        let file = std::fs::File::options().write(true).open(world.path(&format!("pc/sw/{name}"))).expect("open");
        file.set_modified(when).expect("same time for both");
    }
    world.sync("pc");
    // Swapped: each name now holds the other's bytes, with the same size and time as before.
    std::fs::rename(world.path("pc/sw/a.txt"), world.path("pc/sw/t")).expect("rename");
    std::fs::rename(world.path("pc/sw/b.txt"), world.path("pc/sw/a.txt")).expect("rename");
    std::fs::rename(world.path("pc/sw/t"), world.path("pc/sw/b.txt")).expect("rename");
    world.sync("pc");
    world.pda(&["get", "/sw/a.txt", "a-now.txt"]);
    world.pda(&["get", "/sw/b.txt", "b-now.txt"]);
    assert_eq!((world.read("a-now.txt"), world.read("b-now.txt")), (b"two".to_vec(), b"one".to_vec()));
}

#[test]
fn a_stub_moved_on_the_phone_moves_the_object_and_the_pc_follows() {
    let (world, song1) = world_with_three_devices();
    world.sync("pc");
    world.sync("phone");
    // On the phone, with its file manager: a new folder, and the link moved into it renamed.
    std::fs::create_dir(world.path("phone/content/best")).expect("mkdir");
    std::fs::rename(world.path("phone/content/song1.mp3.cpmlink"), world.path("phone/content/best/tune.mp3.cpmlink"))
        .expect("mv");
    let phone = world.sync("phone");
    assert_eq!(phone["moved_up"], 1, "{phone}");
    assert_eq!(files_under(&world.path("phone")), ["content/best/tune.mp3.cpmlink", "content/song2.mp3.cpmlink"]);
    let moved = stub(&world, "phone/content/best/tune.mp3.cpmlink");
    assert_eq!(moved["name"], "tune.mp3");
    assert!(world.names("/content/best").contains(&"tune.mp3".to_owned()));
    assert!(!world.names("/content").contains(&"song1.mp3".to_owned()));
    // The PC renames its copy; nothing is downloaded again.
    let pc = world.sync("pc");
    assert_eq!((pc["bytes_downloaded"].as_u64(), pc["renamed"].as_u64()), (Some(0), Some(1)), "{pc}");
    assert_eq!(world.read("pc/content/best/tune.mp3"), song1);
    // Nothing more to do on the phone.
    assert_eq!(world.sync("phone")["moved_up"], 0);
}
