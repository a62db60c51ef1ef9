//! Use case 7.1 played with the real `cpm` binary against a real `cpm serve` process on a
//! loopback port: steps 1–5 on the PDA in detail, then steps 1–7 end to end with a PC, a PDA and
//! a phone whose agents run on their own.

mod support;

use jiff::{SignedDuration, Timestamp};
use serde_json::Value;
use std::time::Duration;
use support::{World, entry, eventually, files_under};

#[test]
fn use_case_7_1_steps_1_to_5_on_the_pda() {
    let world = World::new();
    let registered = world.register("pda", &["--tz", "Europe/Paris"]);
    assert!(registered.contains("registered pda"), "{registered}");
    assert!(world.path("pda/.cpm/token").is_file());

    let song1: Vec<u8> = (0..300_000u32).map(|i| (i * 7 % 251) as u8).collect();
    world.write("song1.mp3", &song1);
    world.write("song2.mp3", b"second song");
    world.write("tune.ogg", b"an ogg tune");
    world.write("photo.jpg", b"a picture");
    world.write("clip.mp4", b"a video");
    world.write(
        "note.eml",
        b"From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Concert tonight\r\n\
Date: Wed, 25 Nov 2026 18:00:00 +0100\r\nMessage-ID: <n1@example.com>\r\n\r\nSee you there.\r\n",
    );
    world.pda(&["put", "song1.mp3", "song2.mp3", "tune.ogg", "photo.jpg", "clip.mp4", "/content/"]);
    world.pda(&["put", "--message", "note.eml", "/inbox/"]);

    // Steps 1-3: the list of content files, with details.
    let content = world.listing("/content");
    assert_eq!(world.names("/content"), ["clip.mp4", "photo.jpg", "song1.mp3", "song2.mp3", "tune.ogg"]);
    let first = entry(&content, "song1.mp3");
    assert_eq!(first["kind"], "file");
    assert_eq!(first["path"], "/content/song1.mp3");
    assert_eq!(first["size"], 300_000);
    assert_eq!(first["content_type"], "audio/mpeg");
    assert_eq!(first["hash"], blake3::hash(&song1).to_hex().as_str());
    for field in ["id", "modified", "link"] {
        assert!(first[field].is_string(), "{field} in {first}");
    }
    let link_before = first["link"].clone();
    let id_before = first["id"].clone();
    let long = world.pda(&["ls", "-l", "/content"]);
    assert!(long.lines().next().is_some_and(|header| header.starts_with("KIND")), "{long}");
    assert!(long.contains("song1.mp3") && long.contains("300000") && long.contains("audio/mpeg"), "{long}");
    let inbox = world.listing("/inbox");
    let note = entry(&inbox, "note.eml");
    assert_eq!(note["kind"], "message");
    assert_eq!(note["subject"], "Concert tonight");
    assert_eq!(note["from"], "Bob <bob@example.com>");
    assert_eq!(note["message_id"], "n1@example.com");
    assert!(note["to"].is_array() && note["date"].is_string() && note["conversation_id"].is_string());

    // A new version keeps the object's id; without --replace the clash is an error.
    let clash = world.pda_fails(&["put", "song2.mp3", "/content/"]);
    assert!(clash.contains("/content/song2.mp3 already exists") && clash.contains("--replace"), "{clash}");
    world.write("song2.mp3", b"second song, remastered");
    let song2_id = entry(&world.listing("/content"), "song2.mp3")["id"].clone();
    world.pda(&["put", "--replace", "song2.mp3", "/content/"]);
    let replaced = world.listing("/content");
    assert_eq!(entry(&replaced, "song2.mp3")["id"], song2_id);
    assert_eq!(entry(&replaced, "song2.mp3")["size"], 23);

    // Step 4: a new folder, shown beside the pictures and videos.
    world.pda(&["mkdir", "/content/favourite song"]);
    assert!(world.pda_fails(&["mkdir", "/content/favourite song"]).contains("already exists"));
    assert_eq!(
        world.names("/content"),
        ["favourite song", "clip.mp4", "photo.jpg", "song1.mp3", "song2.mp3", "tune.ogg"]
    );

    // Step 5: the music moves, by name pattern and by content type; the view is refreshed.
    let moved = world.pda(&["mv", "/content/*.mp3", "/content/favourite song/"]);
    assert!(moved.contains("moved 2 entries"), "{moved}");
    // Moving what is there already into its own folder moves nothing, and says so.
    let again = world.pda(&["mv", "/content/favourite song/*", "/content/favourite song/"]);
    assert!(again.contains("nothing to move: 2 entries already in /content/favourite song"), "{again}");
    world.pda(&["mv", "--type", "audio/*", "/content", "/content/favourite song/"]);
    assert_eq!(world.names("/content"), ["favourite song", "clip.mp4", "photo.jpg"]);
    let favourites = world.listing("/content/favourite song");
    assert_eq!(world.names("/content/favourite song"), ["song1.mp3", "song2.mp3", "tune.ogg"]);
    let moved_song = entry(&favourites, "song1.mp3");
    assert_eq!(moved_song["path"], "/content/favourite song/song1.mp3");
    assert_eq!((&moved_song["id"], &moved_song["link"]), (&id_before, &link_before), "a move keeps id and link");

    world.pda(&["get", "/content/favourite song/song1.mp3", "out.mp3"]);
    assert_eq!(std::fs::read(world.path("out.mp3")).expect("downloaded"), song1);
    assert!(world.pda_fails(&["get", "/content/favourite song/song1.mp3", "out.mp3"]).contains("exists"));

    // Renames, deletes.
    world.pda(&["mv", "/content/photo.jpg", "/content/beach.jpg"]);
    world.pda(&["mkdir", "-p", "/content/old stuff/deeper"]);
    world.pda(&["mv", "/content/old stuff", "/content/older stuff"]);
    world.pda(&["rm", "/content/clip.mp4"]);
    assert!(world.pda_fails(&["rm", "/content/older stuff"]).contains("rm -r"));
    world.pda(&["rm", "-r", "/content/older stuff"]);
    assert_eq!(world.names("/content"), ["favourite song", "beach.jpg"]);

    let devices = world.pda(&["devices"]);
    assert!(devices.contains("pda") && devices.contains("this device"), "{devices}");
}

#[test]
fn bad_input_gets_one_clear_line_and_changes_nothing() {
    let world = World::new();
    world.register("pda", &[]);
    world.write("a.txt", b"a");
    world.pda(&["put", "a.txt", "/docs/"]);
    world.pda(&["mkdir", "/docs/inner"]);
    let before = world.listing("/docs");

    for (args, says) in [
        (vec!["ls", "/nowhere"], "no such file or folder: /nowhere"),
        (vec!["ls", "relative"], "must start with '/'"),
        (vec!["mkdir", "/docs/a\tb"], "control characters"),
        (vec!["mkdir", "/x/y"], "no such folder: /x"),
        (vec!["mv", "/docs", "/docs/inner/"], "into itself"),
        (vec!["mv", "/docs/*.pdf", "/docs/inner/"], "nothing matches /docs/*.pdf"),
        (vec!["mv", "/docs/a.txt", "/docs/inner", "/nope/"], "no such folder: /nope/"),
        (vec!["mv", "/docs/inner", "/docs/a.txt"], "/docs/a.txt already exists"),
        (vec!["rm", "/docs"], "not empty"),
        (vec!["get", "/docs", "out"], "is a folder"),
        (vec!["put", "missing.txt", "/docs/"], "cannot read missing.txt"),
        (vec!["put", "--message", "a.txt", "/inbox/"], "not a MIME message"),
    ] {
        let line = world.pda_fails(&args);
        assert!(line.contains(says), "cpm {args:?}: expected {says:?} in {line:?}");
    }
    assert_eq!(world.listing("/docs"), before, "refused commands changed nothing");

    assert!(world.fails(&["ls", "/"]).contains("not inside a device directory"));
    assert!(
        world
            .fails(&world.registration("pda", "pda", "pda2").iter().map(String::as_str).collect::<Vec<_>>())
            .contains("already registered")
    );
    assert!(
        world
            .fails(&world.registration("x", "toaster", "x").iter().map(String::as_str).collect::<Vec<_>>())
            .contains("unknown device class")
    );
    assert!(
        world
            .fails(&[
                "device",
                "register",
                "--server",
                "http://127.0.0.1:1",
                "--user",
                "alice",
                "--name",
                "y",
                "--class",
                "pc",
                "--dir",
                "y"
            ])
            .contains("cannot reach the server")
    );
    let revoked = world.pda(&["devices", "revoke", "pda", "--yes"]);
    assert!(revoked.contains("revoked pda"), "{revoked}");
    assert!(world.pda_fails(&["ls", "/"]).contains("token"));
}

#[test]
fn the_store_runs_on_a_simulated_clock_when_told_to() {
    let mut world = World::new();
    let data = world.dir.path().join("simulated-data");
    world.server = support::ServeProcess::start_with_args(
        &data,
        &["--clock-start", "2026-11-25T23:59:50+01:00", "--clock-speed", "60"],
    );
    let time: jiff::Timestamp =
        world.get_json("/health")["time"].as_str().expect("a time").parse().expect("an instant");
    let start: jiff::Timestamp = "2026-11-25T23:59:50+01:00".parse().expect("an instant");
    assert!(time >= start && time < start + jiff::SignedDuration::from_mins(2), "{time}");
    std::thread::sleep(std::time::Duration::from_millis(500));
    let later: jiff::Timestamp =
        world.get_json("/health")["time"].as_str().expect("a time").parse().expect("an instant");
    assert!(later >= time + jiff::SignedDuration::from_secs(25), "half a second at 60× is 30 s: {time} → {later}");

    let line =
        world.fails(&["serve", "--data", "x", "--clock-start", "2026-11-25T23:59:50+01:00", "--clock-speed", "0"]);
    assert!(line.contains("bad clock speed 0"), "{line}");
}

/// The store's clock, as `/health` tells it.
fn server_time(world: &World) -> Timestamp {
    world.get_json("/health")["time"].as_str().expect("a time").parse().expect("an instant")
}

/// The next sync report of an agent.
fn next_report(reports: &std::sync::mpsc::Receiver<Value>, device: &str) -> Value {
    reports.recv_timeout(Duration::from_secs(60)).unwrap_or_else(|_| panic!("the {device} agent did not sync"))
}

#[test]
fn use_case_7_1_end_to_end_the_phone_follows_at_once_and_the_pc_at_24_00() {
    let midnight: Timestamp = "2026-11-26T00:00:00+01:00".parse().expect("an instant");
    let start = (midnight - SignedDuration::from_secs(120)).to_string();
    // 120 simulated seconds before midnight at 8× real time: 24:00 comes some 15 s after the start.
    let mut world = World::with_server(None, &["--clock-start", &start, "--clock-speed", "8"]);
    for (name, class) in [("pc", "pc"), ("pda", "pda"), ("phone", "phone")] {
        world.register_as(name, class, &["--tz", "Europe/Paris"]);
    }
    world.on("pc", &["prefs", "set", "--mode", "full", "--content", "download", "--daily", "24:00", "--auto", "off"]);
    world.on("phone", &[&["prefs", "set", "--auto", "on"], support::PHONE_PROFILE.as_slice()].concat());
    let song1: Vec<u8> = (0..500_000u32).map(|i| (i * 13 % 251) as u8).collect();
    world.write("song1.mp3", &song1);
    world.write("song2.mp3", b"the second song");
    world.write("photo.jpg", b"a picture");
    world.pda(&["put", "song1.mp3", "song2.mp3", "photo.jpg", "/content/"]);
    let (_pc_agent, pc) = world.agent("pc");
    let (_phone_agent, phone) = world.agent("phone");
    assert_eq!(next_report(&pc, "pc")["downloaded"], 3, "the PC's agent backs up the store when it starts");
    assert_eq!(next_report(&phone, "phone")["stubs_written"], 2, "the phone holds the songs as stubs");
    let (pc_dir, phone_dir) = (world.path("pc"), world.path("phone"));
    assert_eq!(files_under(&pc_dir), ["content/photo.jpg", "content/song1.mp3", "content/song2.mp3"]);
    assert_eq!(files_under(&phone_dir), ["content/song1.mp3.cpmlink", "content/song2.mp3.cpmlink"]);

    // Steps 3-5 on the PDA: the list with details, a new folder, the songs moved into it.
    let listed = world.listing("/content");
    assert_eq!(entry(&listed, "song1.mp3")["size"], 500_000);
    let link = entry(&listed, "song1.mp3")["link"].clone();
    world.pda(&["mkdir", "/content/favourite song"]);
    assert_eq!(world.names("/content"), ["favourite song", "photo.jpg", "song1.mp3", "song2.mp3"]);
    world.pda(&["mv", "/content/*.mp3", "/content/favourite song/"]);
    assert_eq!(world.names("/content"), ["favourite song", "photo.jpg"]);
    assert_eq!(world.names("/content/favourite song"), ["song1.mp3", "song2.mp3"]);

    // Step 6: the phone follows without a sync started by hand, and no content crosses the wire.
    // (It may first sync for the new folder alone.)
    let moved = loop {
        let report = next_report(&phone, "phone");
        assert_eq!(report["bytes_downloaded"], 0, "{report}");
        if report["renamed"] != 0 {
            break report;
        }
    };
    assert_eq!(moved["renamed"], 2, "{moved}");
    assert_eq!(
        files_under(&phone_dir),
        ["content/favourite song/song1.mp3.cpmlink", "content/favourite song/song2.mp3.cpmlink"]
    );
    let stub: Value =
        serde_json::from_slice(&world.read("phone/content/favourite song/song1.mp3.cpmlink")).expect("a stub");
    assert_eq!(stub["link"], link, "a move keeps the link");
    world.on("phone", &["fetch", "/content/favourite song/song1.mp3"]);
    assert_eq!(world.read("phone/content/favourite song/song1.mp3"), song1, "the link downloads the moved song");

    // Step 7: not before 24:00...
    assert!(server_time(&world) < midnight, "the test ran too slowly to see the PC wait for 24:00");
    assert!(pc.try_recv().is_err(), "the PC synced before its schedule");
    assert_eq!(files_under(&pc_dir), ["content/photo.jpg", "content/song1.mp3", "content/song2.mp3"]);
    // ...and at 24:00, by the store's word alone.
    let nightly = next_report(&pc, "pc");
    assert!(server_time(&world) >= midnight);
    assert_eq!((nightly["renamed"].as_u64(), nightly["bytes_downloaded"].as_u64()), (Some(2), Some(0)), "{nightly}");
    assert_eq!(
        files_under(&pc_dir),
        ["content/favourite song/song1.mp3", "content/favourite song/song2.mp3", "content/photo.jpg"]
    );
    assert_eq!(world.read("pc/content/favourite song/song1.mp3"), song1);

    // A crash, and a store whose clock comes back to just before the same midnight: the instant
    // that fired stays fired. The PC's agent reconnects and catches up once, and that is all.
    let again = (midnight - SignedDuration::from_secs(20)).to_string();
    world.server.crash_and_restart_with(&["--clock-start", &again, "--clock-speed", "8"]);
    let caught_up = next_report(&pc, "pc");
    assert_eq!(caught_up["renamed"], 0, "{caught_up}");
    assert!(server_time(&world) < midnight, "the agent must be back before 24:00 for this to prove anything");
    assert!(eventually(|| server_time(&world) >= midnight + SignedDuration::from_secs(16)));
    assert!(pc.recv_timeout(Duration::from_secs(1)).is_err(), "24:00 fired twice");
}
