//! Failures the simulation found, shrunk to the operations that show them, kept so that each
//! stays fixed. Each test replays its operations on a fresh world, checking every invariant.

use cpm_sim::{FaultOn, Op, World};

#[allow(unused)]
fn holds(ops: &[Op]) {
    if let Err(failure) = cpm_sim::replay(ops) {
        let kept = std::path::Path::new(env!("CARGO_TARGET_TMPDIR")).join("regression-trace.txt");
        let _ = std::fs::write(&kept, failure.trace.join("\n"));
        panic!("{failure}\n(the whole trace is in {})", kept.display());
    }
    let _ = FaultOn::Write;
}

#[test]
fn a_long_name_outside_a_stub_devices_view_goes_up() {
    holds(&[Op::Sync { device: 2 }, Op::Write { device: 2, path: format!("C/{}.txt", "l".repeat(244)), content: 36 }]);
}

#[test]
fn a_folder_deleted_and_made_again_elsewhere_is_followed() {
    holds(&[
        Op::StorePut { path: "/c/g.txt".into(), content: 45 },
        Op::Sync { device: 1 },
        Op::Write { device: 2, path: "c/café.txt".into(), content: 52 },
        Op::StoreDeleteTree { path: "/c".into() },
        Op::Sync { device: 2 },
    ]);
}

#[test]
fn a_stub_device_that_starts_downloading_replaces_its_stubs_with_content() {
    holds(&[
        Op::Write { device: 0, path: "a/g.txt".into(), content: 42 },
        Op::Sync { device: 0 },
        Op::Sync { device: 2 },
        Op::SetProfile { device: 2, preset: 1 },
    ]);
}

/// A pull placed a download and then could not flush: the next sync found the file as the
/// pull's own and took it, and must not remove it first (that led to a delete in the store).
#[test]
fn a_download_placed_before_a_failed_flush_is_kept() {
    holds(&[
        Op::StorePut { path: "/a/b/f.txt".into(), content: 350 },
        Op::Fault { device: 0, on: FaultOn::Flush, errno: 13 },
        Op::Sync { device: 0 },
    ]);
}

#[test]
fn a_seed_replays_exactly() {
    let (_, first) = cpm_sim::run_traced(1, 2000);
    let (_, second) = cpm_sim::run_traced(1, 2000);
    let differs = first.iter().zip(&second).position(|(a, b)| a != b);
    assert!(
        differs.is_none() && first.len() == second.len(),
        "runs part at {differs:?}: {:?} / {:?}",
        differs.map(|at| &first[at]),
        differs.map(|at| &second[at])
    );
}

/// On a case-insensitive device, `F.txt` and `f.txt` of the store cannot both keep their names:
/// one gets a mapped name here. Its edits, moves and conflict copies go up under its store name,
/// never under the mapped one.
#[test]
fn a_name_mapped_here_stays_here() {
    const MAC: usize = 3;
    let mut world = World::new().expect("a world");
    let step = |world: &mut World, op: Op| {
        world.apply(&op).and_then(|()| world.check_nothing_lost()).unwrap_or_else(|broken| panic!("{op:?}: {broken}"))
    };
    step(&mut world, Op::StorePut { path: "/docs/F.txt".into(), content: 1 });
    step(&mut world, Op::StorePut { path: "/docs/f.txt".into(), content: 2 });
    step(&mut world, Op::Sync { device: MAC });
    let (files, _) = world.local_paths(MAC);
    let mapped = files.iter().find(|path| path.contains('~')).expect("one of the twins is mapped").clone();
    step(&mut world, Op::Write { device: MAC, path: mapped.clone(), content: 3 });
    step(&mut world, Op::Sync { device: MAC });
    step(&mut world, Op::StoreReplace { path: "/docs/F.txt".into(), content: 4 });
    step(&mut world, Op::StoreReplace { path: "/docs/f.txt".into(), content: 5 });
    step(&mut world, Op::Write { device: MAC, path: mapped.clone(), content: 6 });
    step(&mut world, Op::Sync { device: MAC });
    step(&mut world, Op::Rename { device: MAC, from: mapped, to: "moved/F.txt".into() });
    step(&mut world, Op::Sync { device: MAC });
    world.settle().and_then(|()| world.check_quiet()).unwrap_or_else(|broken| panic!("{broken}"));
    let (store, _) = world.store_paths();
    assert!(store.iter().all(|path| !path.contains('~')), "a mapped name reached the store: {store:?}");
    assert_eq!(store.len(), 3, "the two objects and one conflict copy: {store:?}");
}

/// A stub the user writes over with a file of their own: the file is theirs and goes up (it was
/// never read: the engine took it for its stub), and the stub comes back beside it.
#[test]
fn a_stub_written_over_by_the_user_is_their_file() {
    holds(&[
        Op::Write { device: 0, path: "a/b/cafe\u{301}.txt".into(), content: 96 },
        Op::Sync { device: 0 },
        Op::Sync { device: 2 },
        Op::Write { device: 2, path: "a/b/café.txt.cpmlink".into(), content: 117 },
    ]);
}

/// A case-insensitive device that lost its index, after its profile changed, over case twins.
#[test]
fn case_twins_read_again_after_the_index_is_lost_are_not_doubled() {
    holds(&[
        Op::StorePut { path: "/C/café.txt".into(), content: 136 },
        Op::StorePut { path: "/c/f.txt".into(), content: 138 },
        Op::Sync { device: 3 },
        Op::SetProfile { device: 3, preset: 2 },
        Op::LoseIndex { device: 3 },
    ]);
}

/// On a case-insensitive device, a folder the user makes under the name of a store folder this
/// device already shows under a mapped name is another folder: kept beside it, no endless moves.
#[test]
fn a_folder_made_here_under_a_name_the_store_holds_for_a_case_twin_is_kept_beside_it() {
    holds(&[
        Op::Write { device: 2, path: "C/cafe\u{301}.txt".into(), content: 22 },
        Op::Sync { device: 2 },
        Op::Write { device: 0, path: "c/F.txt".into(), content: 42 },
        Op::Sync { device: 0 },
        Op::SyncPartly { device: 3, calls: 6 },
        Op::Write { device: 1, path: "c/g.txt".into(), content: 83 },
        Op::RemoveTree { device: 3, path: "c".into() },
        Op::Mkdir { device: 3, path: "c".into() },
    ]);
}

/// The store deletes a folder tree while a sync that uses it is parked between calls: the
/// folders it then makes again are recorded with their parents, and the sync goes through.
#[test]
fn a_folder_deleted_while_a_sync_is_parked_is_made_again_with_its_parents() {
    holds(&[
        Op::StoreMkdir { path: "/a/b".into() },
        Op::Write { device: 1, path: "a/b/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 40 },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::StoreDeleteTree { path: "/a".into() },
    ]);
}

/// A power cut while a download replaces a file: the torn new version is the pull's own, the
/// old version set aside (its note lost with the power) is superseded, and nothing goes up.
#[test]
fn a_power_cut_during_a_download_over_a_file_leaves_no_junk() {
    holds(&[
        Op::StorePut { path: "/c/song.mp3".into(), content: 123 },
        Op::Fault { device: 3, on: FaultOn::Rename, errno: 5 },
        Op::Mkdir { device: 3, path: "C".into() },
        Op::StorePut { path: "/a/f.txt".into(), content: 124 },
        Op::Sync { device: 3 },
        Op::Write { device: 2, path: "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), content: 125 },
        Op::StoreReplace { path: "/c/song.mp3".into(), content: 126 },
        Op::DirToFile { device: 3, path: "C".into(), content: 127 },
        Op::Sync { device: 2 },
        Op::CrashAt { device: 3, at: 40, power: Some(7) },
    ]);
}

/// A folder made here on the path of a folder tree the store deleted: the store makes the
/// tree again, and the device records every folder of it.
#[test]
fn a_new_folder_on_a_path_deleted_in_the_store_is_recorded_with_its_parents() {
    holds(&[
        Op::StorePut { path: "/a/b/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), content: 27 },
        Op::StoreDeleteTree { path: "/a/b".into() },
        Op::WriteDuringSync { device: 1, at: 11, path: "a/song.mp3".into(), content: 29 },
        Op::Write { device: 1, path: "a/b/f.txt".into(), content: 39 },
        Op::Rename { device: 1, from: "a/b/f.txt".into(), to: "h".into() },
        Op::StoreDeleteTree { path: "/a".into() },
        Op::Sync { device: 1 },
    ]);
}

/// Plays `ops` on a fresh world, checking after each, and lets it settle: the world as it ends.
fn settled(ops: &[Op]) -> World {
    let mut world = World::new().expect("a world");
    for op in ops {
        world.apply(op).and_then(|()| world.check_nothing_lost()).unwrap_or_else(|broken| panic!("{op:?}: {broken}"));
    }
    world.settle().and_then(|()| world.check_quiet()).unwrap_or_else(|broken| panic!("settling: {broken}"));
    world
}

const PC: usize = 0;
const PHONE: usize = 2;
/// The date of the simulated clock's start, in the devices' zone.
const DAY: &str = "2026-10-25";

/// Defect 1: a second conflict on the same file on the same day kept both conflict copies.
#[test]
fn a_second_conflict_on_the_same_day_keeps_the_first_copy() {
    let world = settled(&[
        Op::StorePut { path: "/docs/f.txt".into(), content: 1 },
        Op::Sync { device: PC },
        Op::Write { device: PC, path: "docs/f.txt".into(), content: 2 },
        Op::StoreReplace { path: "/docs/f.txt".into(), content: 3 },
        Op::Sync { device: PC },
        Op::Write { device: PC, path: "docs/f.txt".into(), content: 4 },
        Op::StoreReplace { path: "/docs/f.txt".into(), content: 5 },
        Op::Sync { device: PC },
    ]);
    let (store, _) = world.store_paths();
    let copies = store.iter().filter(|path| path.contains("(conflict pc")).count();
    assert_eq!(copies, 2, "{store:?}");
}

/// Defect 4: two syncs of one device at once make no false conflict and delete nothing.
#[test]
fn two_syncs_of_one_device_at_once_make_no_conflict() {
    let mut ops: Vec<Op> =
        (0..30).map(|n| Op::Write { device: PC, path: format!("new/file{n}.txt"), content: 100 + n }).collect();
    ops.extend([Op::SyncPartly { device: PC, calls: 3 }, Op::SecondSync { device: PC }, Op::Resume { device: PC }]);
    let world = settled(&ops);
    let (store, _) = world.store_paths();
    assert_eq!(store.len(), 30, "{store:?}");
    assert!(store.iter().all(|path| !path.contains("conflict")), "{store:?}");
}

/// Defect 5: one name the store refuses is skipped; everything else syncs both ways.
#[test]
fn a_name_the_store_refuses_blocks_nothing_else() {
    let world = settled(&[
        Op::Write { device: PC, path: "bell\u{7}.txt".into(), content: 1 },
        Op::Write { device: PC, path: "docs/ok.txt".into(), content: 2 },
        Op::StorePut { path: "/docs/in.txt".into(), content: 3 },
        Op::Sync { device: PC },
    ]);
    let (store, _) = world.store_paths();
    assert_eq!(store, ["/docs/in.txt", "/docs/ok.txt"], "{store:?}");
    let (local, _) = world.local_paths(PC);
    assert!(local.iter().any(|path| path == "docs/in.txt") && local.iter().any(|path| path.starts_with("bell")));
}

/// Defects 6 and 15: store names of 248 to 255 bytes live on a stub device and a download
/// device alike (no suffix or temporary name makes them too long).
#[test]
fn the_longest_store_names_live_on_every_device() {
    let world = settled(&[
        Op::StorePut { path: format!("/a/{}.txt", "l".repeat(244)), content: 1 },
        Op::StorePut { path: format!("/a/{}", "m".repeat(255)), content: 2 },
        Op::Sync { device: PHONE },
        Op::Sync { device: PC },
    ]);
    assert_eq!(world.local_paths(PC).0.len(), 2);
}

/// Defect 13: a device's first sync over files it already holds keeps them, on a download
/// device and on a stub device, where the user's own file stays a file.
#[test]
fn a_first_sync_keeps_the_files_it_sends_up() {
    let world = settled(&[
        Op::Write { device: PC, path: "docs/new.txt".into(), content: 1 },
        Op::Write { device: PHONE, path: "a/mine.txt".into(), content: 2 },
        Op::Sync { device: PC },
        Op::Sync { device: PHONE },
        Op::SetProfile { device: PHONE, preset: 2 },
        Op::Sync { device: PHONE },
    ]);
    assert!(world.local_paths(PC).0.iter().any(|path| path == "docs/new.txt"));
    assert!(world.local_paths(PHONE).0.iter().any(|path| path == "a/mine.txt"), "{:?}", world.local_paths(PHONE));
}

/// Defect 14: a file edited while it is being read and sent is never stored under a hash its
/// bytes do not have, and the edit goes up at the next sync, wherever in the upload it lands.
#[test]
fn an_edit_made_during_its_upload_goes_up_next() {
    for at in 1..40 {
        holds(&[
            Op::Write { device: PC, path: "docs/f.txt".into(), content: 1 },
            Op::WriteDuringSync { device: PC, at, path: "docs/f.txt".into(), content: 2 },
        ]);
    }
}

/// Defect 17: the newest edit survives a conflict whose earlier conflict copy was deleted here
/// and renamed in the store.
#[test]
fn the_newest_edit_survives_a_conflict_over_a_renamed_conflict_copy() {
    let copy = format!("f (conflict pc {DAY}).txt");
    holds(&[
        Op::StorePut { path: "/f.txt".into(), content: 1 },
        Op::Sync { device: PC },
        Op::Write { device: PC, path: "f.txt".into(), content: 2 },
        Op::StoreReplace { path: "/f.txt".into(), content: 3 },
        Op::Sync { device: PC },
        Op::Write { device: PC, path: "f.txt".into(), content: 4 },
        Op::Delete { device: PC, path: copy.clone() },
        Op::StoreReplace { path: "/f.txt".into(), content: 5 },
        Op::StoreMove { from: format!("/{copy}"), to: "/kept.txt".into() },
        Op::Sync { device: PC },
    ]);
}

/// Defect 18: an object moved out of a folder that is then deleted whole is kept by every
/// device, and its next edit is no conflict.
#[test]
fn an_object_moved_out_of_a_folder_deleted_after_is_kept() {
    let world = settled(&[
        Op::StorePut { path: "/a/c/x.bin".into(), content: 1 },
        Op::Sync { device: PC },
        Op::Sync { device: PHONE },
        Op::StoreMove { from: "/a/c/x.bin".into(), to: "/a/x.bin".into() },
        Op::StoreDeleteTree { path: "/a/c".into() },
        Op::StoreReplace { path: "/a/x.bin".into(), content: 2 },
        Op::Sync { device: PHONE },
        Op::Sync { device: PC },
        Op::Write { device: PC, path: "a/x.bin".into(), content: 3 },
        Op::Sync { device: PC },
    ]);
    let (store, _) = world.store_paths();
    assert_eq!(store, ["/a/x.bin"], "{store:?}");
}

/// Two devices that lost their index each kept the same old version aside as a conflict copy.
#[test]
fn an_old_version_two_devices_kept_is_stored_once() {
    holds(&[
        Op::Write { device: 3, path: "c/f.txt".into(), content: 125 },
        Op::Sync { device: 3 },
        Op::Sync { device: 0 },
        Op::LoseIndex { device: 3 },
        Op::StoreReplace { path: "/c/f.txt".into(), content: 180 },
        Op::LoseIndex { device: 0 },
    ]);
}

/// A full listing read in pages while another device replaced a folder with a file.
#[test]
fn a_folder_replaced_by_a_file_while_a_listing_is_read_is_followed() {
    holds(&[
        Op::Write { device: 0, path: "c/bell\u{7}.txt".into(), content: 22 },
        Op::StorePut { path: "/a/b/café.txt".into(), content: 25 },
        Op::SetProfile { device: 2, preset: 0 },
        Op::Sync { device: 2 },
        Op::DirToFile { device: 2, path: "a/b".into(), content: 32 },
        Op::SyncPartly { device: 0, calls: 5 },
        Op::Sync { device: 2 },
    ]);
}

/// A stub device crashed with a power cut while it renamed a stub whose object had moved.
#[test]
fn a_stub_renamed_through_a_power_cut_is_not_taken_for_a_users_file() {
    let long = format!("/a/b/{}.txt", "l".repeat(244));
    holds(&[
        Op::SetProfile { device: 3, preset: 3 },
        Op::StorePut { path: long.clone(), content: 108 },
        Op::Fault { device: 3, on: FaultOn::Rename, errno: 5 },
        Op::Sync { device: 3 },
        Op::StoreMove { from: long, to: "/song.mp3".into() },
        Op::CrashAt { device: 3, at: 34, power: Some(10) },
    ]);
}

/// A file where the store puts a folder, while a parked sync's flush fails.
#[test]
fn a_file_named_like_a_store_folder_is_kept_beside_it() {
    holds(&[
        Op::SetProfile { device: 0, preset: 2 },
        Op::SyncPartly { device: 0, calls: 1 },
        Op::Fault { device: 0, on: FaultOn::Flush, errno: 5 },
        Op::Write { device: 0, path: "a".into(), content: 132 },
        Op::StorePut { path: "/a/b/pic.jpg".into(), content: 140 },
    ]);
}

#[test]
fn a_folder_the_disk_refused_to_make_is_made_once_it_can_be() {
    holds(&[
        Op::Fault { device: 2, on: FaultOn::Mkdir, errno: 13 },
        Op::Write { device: 2, path: "a/b/f.txt".into(), content: 92 },
        Op::ClockJump { seconds: 3780 },
        Op::Sync { device: 2 },
        Op::Sync { device: 2 },
        Op::ClockJump { seconds: 5160 },
        Op::Sync { device: 2 },
    ]);
}

/// A power cut on a PC that was placing files (they are left empty), its index lost after;
/// `meanwhile` happens in the store between the two.
fn torn_downloads_then_a_lost_index(meanwhile: &[Op]) -> Vec<Op> {
    let mut ops = vec![
        Op::Write { device: 2, path: "a/b/cafe\u{301}.txt".into(), content: 81 },
        Op::Write { device: 3, path: "a/café.txt".into(), content: 82 },
        Op::WriteDuringSync { device: 2, at: 3, path: "x.cpmlink".into(), content: 83 },
        Op::Sync { device: 0 },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::DirToFile { device: 1, path: "a/b".into(), content: 86 },
        Op::Write { device: 2, path: "a/F.txt".into(), content: 87 },
        Op::Mkdir { device: 0, path: "C".into() },
        Op::Rename { device: 0, from: "a/b".into(), to: "a/f.txt".into() },
        Op::WriteDuringSync { device: 2, at: 2, path: "a/b/cafe\u{301}.txt".into(), content: 95 },
        Op::Write { device: 1, path: "pic.jpg".into(), content: 96 },
        Op::Sync { device: 3 },
        Op::StoreDelete { path: "/x.cpmlink".into() },
        Op::Sync { device: 1 },
        Op::CrashAt { device: 0, at: 55, power: Some(8) },
    ];
    ops.extend_from_slice(meanwhile);
    ops.push(Op::LoseIndex { device: 0 });
    ops
}

/// The torn files give way to the store's objects at their paths (Junk: a torn file went up).
#[test]
fn a_torn_download_on_a_device_that_lost_its_index_is_not_sent_up() {
    holds(&torn_downloads_then_a_lost_index(&[]));
}

/// Their folder deleted in the store, the torn files are as good as the user's empty files.
#[test]
fn torn_downloads_on_a_device_that_lost_its_index_are_empty_files() {
    holds(&torn_downloads_then_a_lost_index(&[Op::StoreDeleteTree { path: "/a".into() }]));
}

/// A folder renamed here while a sync that re-reads the view after a profile change is parked.
#[test]
fn a_folder_renamed_during_a_rescoping_sync_moves_once() {
    holds(&[
        Op::StorePut { path: "/a/café.txt".into(), content: 93 },
        Op::Write { device: 1, path: "a/pic.jpg".into(), content: 96 },
        Op::Write { device: 1, path: "c/bell\u{7}.txt".into(), content: 101 },
        Op::Sync { device: 1 },
        Op::SetProfile { device: 1, preset: 4 },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::Rename { device: 1, from: "a".into(), to: "song.mp3".into() },
    ]);
}

/// A folder renamed by case on a case-folding device, deleted on another, and a new object under
/// its old name in the store while a placement on the first fails for want of space.
#[test]
fn a_new_object_under_a_deleted_folders_old_name_is_kept() {
    holds(&[
        Op::StorePut { path: "/a/b/cafe\u{301}.txt".into(), content: 34 },
        Op::Sync { device: 3 },
        Op::Rename { device: 3, from: "a".into(), to: "A".into() },
        Op::Sync { device: 3 },
        Op::Sync { device: 0 },
        Op::RemoveTree { device: 0, path: "A".into() },
        Op::Fault { device: 3, on: FaultOn::Rename, errno: 28 },
        Op::StorePut { path: "/a/b/cafe\u{301}.txt".into(), content: 112 },
        Op::Sync { device: 0 },
        Op::Sync { device: 3 },
    ]);
}

/// Stubs of case twins on a case-folding device, as one of them ages out of the view.
#[test]
fn stubs_of_case_twins_aging_out_settle() {
    holds(&[
        Op::SetProfile { device: 3, preset: 2 },
        Op::Write { device: 2, path: "a/F.txt".into(), content: 57 },
        Op::ClockJump { seconds: 4740 },
        Op::Sync { device: 2 },
        Op::StorePut { path: "/a/f.txt".into(), content: 65 },
        Op::Write { device: 3, path: "a/b/bell\u{7}.txt".into(), content: 77 },
        Op::Sync { device: 3 },
        Op::ClockJump { seconds: 4740 },
    ]);
}

/// A folder replaced here by a file while the store moves an object out of it, mid-sync.
#[test]
fn an_object_moved_out_of_a_folder_a_file_replaced_here_is_followed() {
    holds(&[
        Op::Write { device: 2, path: "c/pic.jpg".into(), content: 65 },
        Op::Write { device: 2, path: "C/g.txt".into(), content: 66 },
        Op::Sync { device: 2 },
        Op::Sync { device: 1 },
        Op::Rename { device: 1, from: "c".into(), to: "C/c".into() },
        Op::Sync { device: 1 },
        Op::Write { device: 1, path: "C/c/pic (conflict tablet 2026-10-25).jpg".into(), content: 101 },
        Op::Sync { device: 1 },
        Op::DirToFile { device: 1, path: "C".into(), content: 115 },
        Op::SyncPartly { device: 1, calls: 3 },
        Op::StoreMove {
            from: "/C/c/pic (conflict tablet 2026-10-25).jpg".into(),
            to: "/C/pic (conflict tablet 2026-10-25).jpg".into(),
        },
    ]);
}

/// A file moved here while a sync that began after a power cut is parked goes up as a move.
/// The object leaves the view in the same pull (its folder with it), taking the record away;
/// the file then went up again from where the user put it.
#[test]
fn a_file_moved_during_a_sync_after_a_power_cut_moves_once() {
    holds(&[
        Op::Write { device: 2, path: "a/b/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 5 },
        Op::Write { device: 2, path: "C/pic.jpg".into(), content: 6 },
        Op::SyncPartly { device: 2, calls: 5 },
        Op::PowerCut { device: 2, kept: 6 },
        Op::SyncPartly { device: 2, calls: 4 },
        Op::Rename { device: 2, from: "C/pic.jpg".into(), to: "a/g.txt".into() },
    ]);
}

/// A folder renamed here to a name another device gave a new file meanwhile, during a parked
/// sync, while a third device renamed the same folder: the store's move wins, and what the
/// folder held went up again from the folder kept aside here.
#[test]
fn a_folder_renamed_onto_a_name_a_new_file_took_keeps_both_once() {
    holds(&[
        Op::SetProfile { device: 2, preset: 0 },
        Op::StorePut { path: "/c/g.txt".into(), content: 44 },
        Op::StorePut { path: "/C/g.txt".into(), content: 91 },
        Op::Sync { device: 0 },
        Op::Sync { device: 2 },
        Op::Rename { device: 2, from: "c".into(), to: "cafe\u{301}.txt".into() },
        Op::DirToFile { device: 0, path: "C".into(), content: 102 },
        Op::SyncPartly { device: 0, calls: 6 },
        Op::Rename { device: 0, from: "c".into(), to: "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into() },
        Op::Write { device: 2, path: "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), content: 117 },
        Op::Sync { device: 2 },
    ]);
}

/// A file edited in a folder renamed here, while the sync that sends the move up is parked.
#[test]
fn an_edit_made_while_its_move_goes_up_goes_up_next() {
    holds(&[
        Op::Write { device: 1, path: "a/b/f.txt".into(), content: 11 },
        Op::Write { device: 3, path: "a/b/café.txt".into(), content: 14 },
        Op::Sync { device: 3 },
        Op::SetProfile { device: 1, preset: 4 },
        Op::Sync { device: 1 },
        Op::Rename { device: 1, from: "a/b".into(), to: "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into() },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::Write { device: 1, path: "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt/f.txt".into(), content: 33 },
    ]);
}

/// Case twins on a case-folding device: the store deletes one folder while the other has a name of
/// its own here; it takes its own name back only once the twin's folder is gone (the next sync
/// asks after it).
#[test]
fn a_case_twin_folder_takes_its_name_back_after_the_other_goes() {
    holds(&[
        Op::StorePut { path: "/C/café.txt".into(), content: 459 },
        Op::Write { device: 1, path: "c/h".into(), content: 461 },
        Op::Sync { device: 1 },
        Op::Sync { device: 3 },
        Op::Write { device: 1, path: "c/pic.jpg".into(), content: 593 },
        Op::Sync { device: 1 },
        Op::StoreDeleteTree { path: "/C".into() },
        Op::Sync { device: 3 },
        Op::Write { device: 3, path: "c/F.txt".into(), content: 607 },
    ]);
}

/// A file edited in a folder renamed here during a parked sync, then the device's profile changes.
#[test]
fn an_edit_in_a_renamed_folder_survives_a_profile_change() {
    holds(&[
        Op::Write { device: 1, path: "a/b/f.txt".into(), content: 11 },
        Op::Sync { device: 1 },
        Op::Write { device: 3, path: "a/b/café.txt".into(), content: 14 },
        Op::Sync { device: 3 },
        Op::SetProfile { device: 1, preset: 4 },
        Op::Sync { device: 1 },
        Op::Rename { device: 1, from: "a/b".into(), to: "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into() },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::Write { device: 1, path: "llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt/f.txt".into(), content: 33 },
        Op::Write { device: 3, path: "a/b/f.txt".into(), content: 34 },
        Op::SetProfile { device: 1, preset: 3 },
        Op::Sync { device: 3 },
    ]);
}
/// The user wrote her own file over a stub while a sync that turns stubs into content was under
/// way: the stub's removal took her file with it (Lost).
#[test]
fn a_file_written_over_a_stub_while_the_stub_goes_is_kept() {
    for calls in 1..=6 {
        holds(&[
            Op::StorePut { path: "/a/pic.jpg".into(), content: 1 },
            Op::Sync { device: 2 },
            Op::SetProfile { device: 2, preset: 0 },
            Op::Write { device: 2, path: "a/new.txt".into(), content: 2 },
            Op::SyncPartly { device: 2, calls },
            Op::Write { device: 2, path: "a/pic.jpg.cpmlink".into(), content: 127 },
        ]);
    }
}

/// A stub that could not be removed (a rename failed) while its content arrived beside it was
/// then checked against a stamp stubs never get, and stayed for good (Diverged).
#[test]
fn a_stub_that_could_not_go_when_its_content_came_goes_next_time() {
    holds(&[
        Op::SetProfile { device: 3, preset: 2 },
        Op::StorePut { path: "/a/h".into(), content: 227 },
        Op::Fault { device: 3, on: FaultOn::Rename, errno: 5 },
        Op::Sync { device: 3 },
        Op::SetProfile { device: 3, preset: 1 },
        Op::Sync { device: 3 },
    ]);
}

/// A stub written without a flush, then the index lost, then a power cut: the stub is an empty
/// file no index knows, as good as one the user made (the harness once called it junk).
#[test]
fn a_stub_torn_after_the_index_was_lost_is_an_empty_file_like_any_other() {
    holds(&[
        Op::Write { device: 3, path: "a/café (conflict mac 2026-10-28).txt".into(), content: 164 },
        Op::SyncPartly { device: 3, calls: 7 },
        Op::Sync { device: 2 },
        Op::LoseIndex { device: 2 },
        Op::PowerCut { device: 2, kept: 9 },
        Op::ClockJump { seconds: 43200 },
    ]);
}

/// On a case-folding device, a file kept under a mapped name went back to its own name when
/// its case twin left the view, and then the flush failed: the next sync took the renamed file for
/// a leftover of an unfinished pull, removed it and sent its deletion up (Lost).
#[test]
fn a_mapped_name_given_back_before_a_failed_flush_is_kept() {
    holds(&[
        Op::Write { device: 1, path: "C/café.txt".into(), content: 278 },
        Op::Sync { device: 1 },
        Op::Write { device: 3, path: "a/b/café (conflict pc 2026-11-02).txt".into(), content: 280 },
        Op::WriteDuringSync { device: 3, at: 28, path: "g (conflict tablet 2026-10-31) (conflict mac 2026-11-02).txt".into(), content: 283 },
        Op::Sync { device: 3 },
        Op::Sync { device: 0 },
        Op::Rename { device: 0, from: "g (conflict tablet 2026-10-31) (conflict mac 2026-11-02).txt".into(), to: "F.txt".into() },
        Op::WriteDuringSync { device: 0, at: 19, path: "f.txt".into(), content: 372 },
        Op::SetProfile { device: 3, preset: 1 },
        Op::WriteDuringSync { device: 0, at: 35, path: "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 398 },
        Op::Sync { device: 3 },
        Op::Write { device: 3, path: "f.txt".into(), content: 415 },
        Op::Fault { device: 3, on: FaultOn::Flush, errno: 5 },
        Op::Sync { device: 3 },
    ]);
}
/// While a sync ran, the user deleted one file and renamed another onto its name: the sync
/// fetched the renamed file again as missing, and the next one sent the rename up as an edit
/// (Duplicated).
#[test]
fn a_file_renamed_while_a_sync_ran_is_not_fetched_back() {
    holds(&[
        Op::Write { device: 2, path: "C/cafe\u{301}.txt".into(), content: 86 },
        Op::StorePut { path: "/C/g.txt".into(), content: 114 },
        Op::Write { device: 1, path: "a/b/bell\u{7}.txt".into(), content: 143 },
        Op::Settle,
        Op::WriteDuringSync { device: 1, at: 22, path: "bell\u{7}.txt".into(), content: 163 },
        Op::Write { device: 1, path: "C/bell\u{7}.txt".into(), content: 168 },
        Op::SetProfile { device: 1, preset: 0 },
        Op::Sync { device: 1 },
        Op::SyncPartly { device: 1, calls: 6 },
        Op::Delete { device: 1, path: "C/café.txt".into() },
        Op::Rename { device: 1, from: "C/g.txt".into(), to: "C/café.txt".into() },
    ]);
}

/// The user deleted a file and renamed another onto its name (`mv b a`) while the store moved
/// the renamed one elsewhere: taken for an edit of the first, the content went up twice
/// (Duplicated).
#[test]
fn a_file_renamed_onto_a_deleted_ones_name_moves_once() {
    holds(&[
        Op::StorePut { path: "/a/g.txt".into(), content: 225 },
        Op::StoreMove { from: "/a/g.txt".into(), to: "/c/g.txt".into() },
        Op::StorePut { path: "/c/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), content: 310 },
        Op::CrashAt { device: 1, at: 52, power: None },
        Op::Delete { device: 1, path: "c/g.txt".into() },
        Op::StoreMove { from: "/c/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), to: "/a/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into() },
        Op::Rename { device: 1, from: "c/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), to: "c/g.txt".into() },
    ]);
}

/// A download whose flush failed was adopted by the next sync, which a power cut then tore: the
/// index had recorded it without a flush, so the empty file went up as a new version (Lost).
#[test]
fn a_download_adopted_after_a_failed_flush_is_flushed_before_it_is_recorded() {
    holds(&[
        Op::Write { device: 2, path: "c/café.txt".into(), content: 424 },
        Op::CrashAt { device: 2, at: 56, power: None },
        Op::Fault { device: 3, on: FaultOn::Flush, errno: 5 },
        Op::Sync { device: 3 },
        Op::CrashAt { device: 3, at: 50, power: Some(6) },
    ]);
}

/// What an unfinished pull placed for one object, which the store then moved, was removed to make
/// room for a new object at its old name, and the move then carried the new one's file
/// (Lost).
#[test]
fn a_placement_of_an_object_that_moves_on_is_not_removed_for_a_newcomer() {
    holds(&[
        Op::SetProfile { device: 2, preset: 4 },
        Op::StorePut { path: "/c/café.txt".into(), content: 290 },
        Op::Mkdir { device: 2, path: "C".into() },
        Op::Settle,
        Op::StorePut { path: "/c/f.txt".into(), content: 295 },
        Op::Sync { device: 1 },
        Op::SyncPartly { device: 2, calls: 2 },
        Op::Rename { device: 1, from: "c".into(), to: "x.cpmlink".into() },
        Op::Fault { device: 2, on: FaultOn::Flush, errno: 13 },
        Op::SyncPartly { device: 1, calls: 7 },
        Op::Rename { device: 2, from: "C".into(), to: "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into() },
        Op::StorePut { path: "/c/f.txt".into(), content: 341 },
    ]);
}

/// On a case-folding device whose first sync could not finish, the store's `c` is kept under a
/// mapped name (`c ~…`, beside its twin `C`); the user deletes `C` and makes a folder `c` of her
/// own. Uploading into it, the push took her `c` for the store's folder (the store's answer to
/// "make /c"): the store's folder lost its mapped place here, what was in it looked deleted,
/// and went from the store (Lost, seed 72).
#[test]
fn a_mapped_folder_of_an_unfinished_pull_keeps_its_contents_when_its_twin_goes() {
    holds(&[
        Op::StorePut { path: "/a/b/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 221 },
        Op::StorePut { path: "/C/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 227 },
        Op::ReadOnly { device: 3, path: "a".into(), readonly: true },
        Op::StorePut { path: "/c/café.txt".into(), content: 266 },
        Op::Sync { device: 3 },
        Op::SyncPartly { device: 3, calls: 1 },
        Op::RemoveTree { device: 3, path: "C".into() },
        Op::Write { device: 3, path: "c/song.mp3".into(), content: 289 },
    ]);
}

/// On the case-folding device, a folder kept under a mapped name beside its twin kept that name
/// after the twin was deleted in the store: the name frees only once the sync's pull has removed
/// the twin's folder, and nothing asked again (Diverged).
#[test]
fn a_folder_takes_its_own_name_back_when_its_case_twin_is_deleted_in_the_store() {
    holds(&[
        Op::StoreMkdir { path: "/c".into() },
        Op::StoreMkdir { path: "/C".into() },
        Op::Settle,
        Op::StoreDeleteTree { path: "/c".into() },
    ]);
}

/// A stub written without a flush, its folder then renamed by the user, then a power cut: the
/// torn stub (an empty `.cpmlink` file no record holds any more) went up as the user's file
/// (Junk).
#[test]
fn a_stub_torn_by_a_power_cut_after_its_folder_moved_is_not_sent_up() {
    holds(&[
        Op::StorePut { path: "/a/b/g.txt".into(), content: 2 },
        Op::SyncPartly { device: 2, calls: 6 },
        Op::Write { device: 2, path: "café.txt".into(), content: 21 },
        Op::Rename { device: 2, from: "a/b".into(), to: "a/song.mp3".into() },
        Op::SyncPartly { device: 2, calls: 7 },
        Op::CrashAt { device: 2, at: 40, power: Some(10) },
    ]);
}

/// On the case-folding device, the user's own folder `A` (outside the view, holding a file whose
/// name the store refuses) keeps the store's `a` under a mapped name: that name has a reason
/// (the harness once said it had none).
#[test]
fn a_folder_of_the_users_outside_the_view_keeps_a_twin_mapped() {
    holds(&[
        Op::SetProfile { device: 3, preset: 2 },
        Op::Write { device: 3, path: "C/song.mp3".into(), content: 258 },
        Op::Settle,
        Op::StoreMove { from: "/C/song.mp3".into(), to: "/a/b/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into() },
        Op::Write { device: 3, path: "A/b/bell\u{7}.txt".into(), content: 631 },
    ]);
}

/// A new profile's full re-read that could not place one entry kept the old profile's cursor:
/// back on the old profile, the next sync went on from that cursor, and a file the new profile
/// had removed here never came back (Diverged).
#[test]
fn a_new_profile_applied_in_part_is_read_again_whole() {
    holds(&[
        Op::SetProfile { device: 0, preset: 1 },
        Op::Write { device: 0, path: "C/g.txt".into(), content: 56 },
        Op::Write { device: 0, path: "C/café.txt".into(), content: 68 },
        Op::Settle,
        Op::Fault { device: 0, on: FaultOn::Mkdir, errno: 28 },
        Op::SetProfile { device: 0, preset: 2 },
        Op::WriteDuringSync { device: 0, at: 33, path: "a/F.txt".into(), content: 107 },
        Op::SetProfile { device: 0, preset: 1 },
    ]);
}

/// The store moved a file (its folder renamed on the mac) while a sync of the phone was
/// parked, and the user renamed the file's folder on the phone meanwhile: the pull fetched the
/// file anew at the store's place and the user's moved copy went up as a second one
/// (Duplicated).
#[test]
fn a_file_moved_here_while_the_store_moved_it_is_not_fetched_again() {
    holds(&[
        Op::Write { device: 2, path: "c/bell\u{7}.txt".into(), content: 20 },
        Op::Write { device: 0, path: "a/b/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 21 },
        Op::SyncPartly { device: 2, calls: 7 },
        Op::Sync { device: 0 },
        Op::Sync { device: 3 },
        Op::SetProfile { device: 2, preset: 4 },
        Op::Resume { device: 2 },
        Op::Rename { device: 3, from: "a/b".into(), to: "c/café.txt".into() },
        Op::Sync { device: 3 },
        Op::SyncPartly { device: 2, calls: 3 },
        Op::Rename { device: 2, from: "a".into(), to: "x.cpmlink".into() },
    ]);
}

/// On the stub phone's recent view, a file aged out of the view while a sync was parked, and
/// the user renamed it meanwhile: the pull dropped its record (its file was gone), and the
/// renamed file went up as a second copy (Duplicated).
#[test]
fn a_file_renamed_while_it_ages_out_of_the_view_is_not_sent_up_again() {
    holds(&[
        Op::Write { device: 0, path: "C/bell\u{7}.txt".into(), content: 23 },
        Op::SetProfile { device: 0, preset: 2 },
        Op::Write { device: 0, path: "a/g.txt".into(), content: 81 },
        Op::ClockJump { seconds: 4620 },
        Op::Sync { device: 0 },
        Op::ClockJump { seconds: 5340 },
        Op::SyncPartly { device: 0, calls: 4 },
        Op::Rename { device: 0, from: "a/g.txt".into(), to: "a/x.cpmlink".into() },
    ]);
}

/// On the case-folding mac, a download an interrupted sync placed as `f.txt` was renamed by the
/// user to `F.TXT`: the next sync took `F.TXT` for a new file and sent it up, and the download
/// of `f.txt` failed on it forever (Duplicated).
#[test]
fn a_download_renamed_in_case_after_a_crash_moves_in_the_store() {
    holds(&[
        Op::Write { device: 3, path: "a/café.txt".into(), content: 3 },
        Op::Sync { device: 3 },
        Op::Write { device: 2, path: "a/x.cpmlink".into(), content: 16 },
        Op::Write { device: 3, path: "a/b/f.txt".into(), content: 19 },
        Op::Sync { device: 2 },
        Op::Write { device: 3, path: "a/g.txt".into(), content: 20 },
        Op::Write { device: 3, path: "g.txt".into(), content: 21 },
        Op::StorePut { path: "/a/f.txt".into(), content: 30 },
        Op::StoreMove { from: "/a/café.txt".into(), to: "/a/b/F.txt".into() },
        Op::Write { device: 3, path: "mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 33 },
        Op::Sync { device: 3 },
        Op::StorePut { path: "/C/pic.jpg".into(), content: 34 },
        Op::StorePut { path: "/f.txt".into(), content: 36 },
        Op::CrashAt { device: 3, at: 59, power: Some(2) },
        Op::StoreReplace { path: "/a/b/F.txt".into(), content: 42 },
        Op::Write { device: 3, path: "C/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 44 },
        Op::StoreReplace { path: "/f.txt".into(), content: 51 },
        Op::Write { device: 2, path: "a/b/f.txt".into(), content: 52 },
        Op::Sync { device: 2 },
        Op::CrashAt { device: 3, at: 53, power: None },
        Op::Rename { device: 3, from: "f.txt".into(), to: "F.TXT".into() },
    ]);
}

/// On the mac, its index lost and its profile narrowed to `/a/**`, the whole re-read sent up
/// again a file the view leaves out, though the store held its content (moved meanwhile to
/// `/c/h`): a second copy (Duplicated).
#[test]
fn a_whole_re_read_does_not_store_again_what_the_view_leaves_out() {
    holds(&[
        Op::Write { device: 3, path: "C/x.cpmlink".into(), content: 64 },
        Op::Write { device: 3, path: "F.txt/café.txt".into(), content: 70 },
        Op::WriteDuringSync { device: 3, at: 29, path: "c/café.txt".into(), content: 88 },
        Op::WriteDuringSync { device: 3, at: 29, path: "a/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll (conflict pc 2026-10-27 2).txt".into(), content: 113 },
        Op::StoreMove { from: "/C/café.txt".into(), to: "/c/h".into() },
        Op::SetProfile { device: 3, preset: 2 },
        Op::LoseIndex { device: 3 },
    ]);
}

/// A file sent up from the tablet was removed there (outside its view), and the flush after
/// the pull failed: the index kept the record of the file the pull had removed, and the next
/// sync, under a view that holds it, took the removal for the user's and deleted the object
/// from the store (Lost).
#[test]
fn a_removal_whose_flush_failed_is_not_sent_up_as_a_delete() {
    holds(&[
        Op::SetProfile { device: 1, preset: 2 },
        Op::Fault { device: 1, on: FaultOn::Flush, errno: 28 },
        Op::Write { device: 1, path: "f.txt".into(), content: 226 },
        Op::Sync { device: 1 },
        Op::SetProfile { device: 1, preset: 4 },
    ]);
}

/// On the stub phone, the user wrote her own file over a stub while a sync ran that rewrote
/// that stub (its object replaced in the store): the stub went over her file, and her content
/// was nowhere (Lost, seed 2). Every step of the sync is tried for the write.
#[test]
fn a_file_written_over_a_stub_during_a_sync_is_not_written_over() {
    for at in 1..80 {
        holds(&[
            Op::SetProfile { device: 2, preset: 3 },
            Op::StorePut { path: "/a/x.txt".into(), content: 1 },
            Op::Settle,
            Op::StoreReplace { path: "/a/x.txt".into(), content: 2 },
            Op::WriteDuringSync { device: 2, at, path: "a/x.txt.cpmlink".into(), content: 3 },
        ]);
    }
}

/// On the stub pc, after its index was lost and read again, a stub was replaced without a flush
/// (stubs may wait for the kernel) and the power went: another record's stub stood where the
/// index records this one's, and the next sync took it for a file of the user's and sent the
/// stub's own bytes up (Junk, seed 14).
#[test]
fn a_stale_stub_after_a_power_cut_is_written_again_not_sent_up() {
    holds(&[
        Op::Write { device: 2, path: "a/café (conflict phone 2026-10-25).txt".into(), content: 126 },
        Op::Write { device: 2, path: "C/cafe\u{301}.txt".into(), content: 130 },
        Op::Write { device: 2, path: "c/x.cpmlink".into(), content: 189 },
        Op::SetProfile { device: 0, preset: 1 },
        Op::Settle,
        Op::SetProfile { device: 3, preset: 4 },
        Op::SetProfile { device: 0, preset: 3 },
        Op::Rename {
            device: 3,
            from: "a/café (conflict phone 2026-10-25).txt".into(),
            to: "C/café (conflict phone 2026-10-25).txt".into(),
        },
        Op::Rename { device: 0, from: "C".into(), to: "g.txt".into() },
        Op::Sync { device: 0 },
        Op::SyncPartly { device: 3, calls: 7 },
        Op::LoseIndex { device: 0 },
        Op::Write { device: 3, path: "C/café (conflict phone 2026-10-25).txt".into(), content: 314 },
        Op::Sync { device: 0 },
        Op::StoreDelete { path: "/C/café (conflict phone 2026-10-25).txt".into() },
        Op::Settle,
        Op::CrashAt { device: 0, at: 60, power: Some(0) },
        Op::Sync { device: 0 },
        Op::LoseIndex { device: 0 },
    ]);
}

/// On the case-folding mac, the user edited `a/h` and renamed it `a/H` while the store replaced
/// `/a/h`: her file went up as the new `/a/H`, and the new version of `/a/h` could never be
/// placed (`File exists`, every sync; Diverged, seed 9).
#[test]
fn a_record_whose_name_a_case_twin_took_here_meanwhile_is_mapped() {
    holds(&[
        Op::StorePut { path: "/a/F.txt".into(), content: 12 },
        Op::StorePut { path: "/café.txt".into(), content: 13 },
        Op::StorePut { path: "/a/café.txt".into(), content: 14 },
        Op::StorePut { path: "/a/h".into(), content: 20 },
        Op::StorePut { path: "/C/song.mp3".into(), content: 44 },
        Op::StoreMove { from: "/a/café.txt".into(), to: "/a/b/café.txt".into() },
        Op::StorePut { path: "/a/g.txt".into(), content: 46 },
        Op::Write { device: 2, path: "a/b/F.txt".into(), content: 47 },
        Op::StorePut { path: "/x.cpmlink".into(), content: 48 },
        Op::Sync { device: 3 },
        Op::StorePut { path: "/a/b/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 50 },
        Op::StorePut { path: "/c/g.txt".into(), content: 56 },
        Op::Write { device: 2, path: "a/song.mp3".into(), content: 57 },
        Op::StorePut { path: "/c/f.txt".into(), content: 60 },
        Op::SyncPartly { device: 3, calls: 0 },
        Op::StorePut { path: "/c/pic.jpg".into(), content: 64 },
        Op::WriteDuringSync { device: 2, at: 32, path: "f.txt".into(), content: 65 },
        Op::StoreReplace { path: "/a/h".into(), content: 76 },
        Op::StorePut { path: "/a/cafe\u{301}.txt".into(), content: 89 },
        Op::Write { device: 3, path: "a/h".into(), content: 91 },
        Op::Rename { device: 3, from: "a/h".into(), to: "a/H".into() },
        Op::StorePut { path: "/a/x.cpmlink".into(), content: 99 },
    ]);
}

/// On the stub phone, a power cut tore an unflushed stub; the re-read after the restart could
/// not write it again (permission denied, once), and the next syncs, no longer re-reading,
/// left the torn stub for good (Diverged, seed 58).
#[test]
fn a_stub_a_restart_tore_is_written_again_after_a_failed_attempt() {
    holds(&[
        Op::Write { device: 2, path: "song.mp3".into(), content: 16 },
        Op::Sync { device: 2 },
        Op::SetProfile { device: 2, preset: 3 },
        Op::Sync { device: 2 },
        Op::Fault { device: 2, on: FaultOn::Write, errno: 13 },
        Op::CrashAt { device: 2, at: 57, power: Some(9) },
        Op::Sync { device: 2 },
    ]);
}

/// A folder renamed here onto a name an object holds in the store is set aside under a conflict
/// name; what is in it moves along with it, not left behind in the store and sent up again.
#[test]
fn what_is_in_a_folder_set_aside_moves_with_it() {
    holds(&[
        Op::Write { device: 0, path: "C/g.txt".into(), content: 87 },
        Op::Write { device: 0, path: "a/b/h".into(), content: 148 },
        Op::Sync { device: 0 },
        Op::StoreMove { from: "/C/g.txt".into(), to: "/a/café.txt".into() },
        Op::SetProfile { device: 0, preset: 2 },
        Op::Sync { device: 0 },
        Op::Rename { device: 0, from: "a/b".into(), to: "a/cafe\u{301}.txt".into() },
        Op::ClockJump { seconds: 64800 },
    ]);
}

/// A file written outside a partial device's view and moved into it while its upload ran.
#[test]
fn a_file_moved_into_the_view_while_it_went_up_is_not_sent_twice() {
    holds(&[
        Op::Write { device: 2, path: format!("a/b/{}.txt", "m".repeat(251)), content: 5 },
        Op::Write { device: 2, path: "C/pic.jpg".into(), content: 6 },
        Op::SyncPartly { device: 2, calls: 5 },
        Op::PowerCut { device: 2, kept: 6 },
        Op::SyncPartly { device: 2, calls: 4 },
        Op::Rename { device: 2, from: "C/pic.jpg".into(), to: "a/g.txt".into() },
    ]);
}

/// The engine removed files that left the view and died before it recorded that; a new profile
/// then brought them back into the view. Taken for the user's deletions, they went from the store.
#[test]
fn files_the_engine_removed_before_a_crash_are_not_deleted_from_the_store() {
    holds(&[
        Op::Write { device: 2, path: "a/bell\u{7}.txt".into(), content: 22 },
        Op::Write { device: 2, path: format!("a/{}.txt", "l".repeat(244)), content: 328 },
        Op::Write { device: 2, path: "a/b/x.cpmlink".into(), content: 337 },
        Op::ClockJump { seconds: 100800 },
        Op::CrashAt { device: 2, at: 55, power: None },
        Op::SetProfile { device: 2, preset: 4 },
    ]);
}

/// A file moved to two places here, one of them under a name the store refuses: the move goes
/// to the name the store takes (moved to the other, it was refused, and this copy went up anew).
#[test]
fn a_move_goes_to_the_copy_the_store_can_take() {
    holds(&[
        Op::SetProfile { device: 2, preset: 0 },
        Op::StorePut { path: "/a/b/x.cpmlink".into(), content: 102 },
        Op::Sync { device: 2 },
        Op::Rename { device: 2, from: "a/b".into(), to: "a/bell\u{7}.txt".into() },
        Op::Sync { device: 2 },
        Op::Rename { device: 2, from: "a/b".into(), to: "a/h".into() },
    ]);
}

/// A folder renamed to a name the store refuses, then a file in it moved out to a name it takes:
/// the file's move goes up (its old place was filled again from the store meanwhile, and the
/// moved file went up as a second copy).
#[test]
fn a_move_to_a_refused_name_waits_for_a_name_the_store_takes() {
    holds(&[
        Op::Write { device: 2, path: "a/F.txt".into(), content: 68 },
        Op::Sync { device: 2 },
        Op::Rename { device: 2, from: "a".into(), to: "bell\u{7}.txt".into() },
        Op::Sync { device: 2 },
        Op::Sync { device: 2 },
        Op::Rename { device: 2, from: "bell\u{7}.txt/F.txt".into(), to: "a/F.TXT".into() },
    ]);
}

/// On a stub device she moves her files by moving their stubs: the objects follow, and every
/// device's view with them (a stub renamed was put back, and the renamed one removed).
#[test]
fn a_stub_renamed_or_moved_here_moves_its_object() {
    let mut world = World::new().expect("a world");
    for op in [
        Op::StorePut { path: "/a/g.txt".into(), content: 3 },
        Op::StorePut { path: "/a/b/h.txt".into(), content: 4 },
        Op::Sync { device: 2 },
        Op::Rename { device: 2, from: "a/g.txt.cpmlink".into(), to: "a/f.txt.cpmlink".into() },
        Op::Mkdir { device: 2, path: "a/c".into() },
        Op::Rename { device: 2, from: "a/b/h.txt.cpmlink".into(), to: "a/c/h.txt.cpmlink".into() },
        Op::Sync { device: 2 },
    ] {
        world.apply(&op).unwrap_or_else(|violation| panic!("{op:?}: {violation:?}"));
    }
    world.settle().unwrap_or_else(|violation| panic!("settling: {violation:?}"));
    let (files, _) = world.store_paths();
    assert!(files.contains(&"/a/f.txt".to_owned()) && files.contains(&"/a/c/h.txt".to_owned()), "{files:?}");
    assert!(!files.contains(&"/a/g.txt".to_owned()) && !files.contains(&"/a/b/h.txt".to_owned()), "{files:?}");
    let here = world.stub_paths(2);
    assert!(here.contains(&"a/f.txt.cpmlink".to_owned()) && here.contains(&"a/c/h.txt.cpmlink".to_owned()), "{here:?}");
    let (pc, _) = world.local_paths(0);
    assert!(pc.contains(&"a/f.txt".to_owned()) && pc.contains(&"a/c/h.txt".to_owned()), "{pc:?}");
}

/// A stub a power cut tore (an empty file) that the user renamed before the next sync is an
/// empty file of hers: it goes up as she named it, and is no engine's junk.
#[test]
fn a_torn_stub_the_user_renamed_is_hers() {
    holds(&[
        Op::StorePut { path: "/a/b/g.txt".into(), content: 2 },
        Op::Write { device: 1, path: "c/song.mp3".into(), content: 4 },
        Op::SetProfile { device: 1, preset: 2 },
        Op::StorePut { path: "/C/f.txt".into(), content: 5 },
        Op::Write { device: 1, path: "c/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 7 },
        Op::Write { device: 2, path: "a/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 11 },
        Op::Sync { device: 1 },
        Op::StorePut { path: "/c/f.txt".into(), content: 14 },
        Op::Sync { device: 2 },
        Op::CrashAt { device: 1, at: 48, power: Some(3) },
        Op::Rename { device: 1, from: "a/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm ~c558dc5c.txt.cpmlink".into(), to: "a/f.txt".into() },
    ]);
}

/// What an unfinished pull placed for a record whose place here changed since (its folder's
/// mapped name freed) was removed as a leftover, with nothing placed where the record now is:
/// the next sync took the removal for the user's and deleted the object from the store.
#[test]
fn a_leftover_removed_for_a_record_placed_nowhere_is_fetched_again_not_deleted() {
    holds(&[
        Op::Write { device: 1, path: "a/b/café.txt".into(), content: 271 },
        Op::Sync { device: 1 },
        Op::Write { device: 1, path: "C/song.mp3".into(), content: 279 },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::DirToFile { device: 1, path: "a/b".into(), content: 289 },
        Op::Write { device: 0, path: "a/f.txt".into(), content: 291 },
        Op::Sync { device: 0 },
        Op::Write { device: 1, path: "g.txt/song.mp3".into(), content: 310 },
        Op::CrashAt { device: 1, at: 49, power: Some(4) },
        Op::StoreDeleteTree { path: "/a".into() },
        Op::Write { device: 0, path: "café.txt".into(), content: 311 },
        Op::Write { device: 0, path: "a/f.txt".into(), content: 313 },
        Op::Sync { device: 1 },
        Op::Sync { device: 3 },
        Op::SyncPartly { device: 0, calls: 4 },
        Op::Write { device: 3, path: "g.txt/song.mp3".into(), content: 322 },
        Op::Rename { device: 0, from: "a/b".into(), to: "F.txt".into() },
        Op::Sync { device: 3 },
    ]);
}

/// On a case-insensitive disk, a folder `H` arrives in the same batch that removes a file `h`:
/// it is made under a name of its own while `h` is still there, and gets its own name at the
/// sync's next pass (it kept the mapped name for good).
#[test]
fn a_folder_made_beside_a_twin_the_same_pull_removes_gets_its_own_name() {
    holds(&[
        Op::Write { device: 2, path: "c/h".into(), content: 152 },
        Op::SetProfile { device: 2, preset: 0 },
        Op::Settle,
        Op::SyncPartly { device: 1, calls: 1 },
        Op::RemoveTree { device: 2, path: "c".into() },
        Op::Write { device: 0, path: "c/H/café.txt".into(), content: 213 },
    ]);
}

/// A folder moved here under a name the store refuses keeps its parent, which leaves the view
/// (a folder holding a folder the store cannot take stays with it, as one holding such a file).
#[test]
fn a_folder_holding_a_folder_the_store_refuses_stays_here() {
    holds(&[
        Op::StorePut { path: "/c/cafe\u{301}.txt".into(), content: 353 },
        Op::SetProfile { device: 1, preset: 3 },
        Op::StorePut { path: "/a/b/song.mp3".into(), content: 411 },
        Op::Sync { device: 1 },
        Op::Rename { device: 1, from: "a/b".into(), to: "c/bell\u{7}.txt".into() },
        Op::SetProfile { device: 1, preset: 2 },
    ]);
}

/// A sync that deleted a folder in the store said "up to date": the summary said nothing of it,
/// and the other devices were taken for quiet (the PC kept its record of the folder).
#[test]
fn a_folder_deleted_in_the_store_is_told_in_the_summary() {
    holds(&[
        Op::SetProfile { device: 2, preset: 4 },
        Op::Write { device: 3, path: "c/bell\u{7}.txt".into(), content: 416 },
        Op::Write { device: 2, path: "c/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), content: 447 },
        Op::Sync { device: 2 },
        Op::ReadOnly { device: 2, path: "c".into(), readonly: true },
        Op::StoreDeleteTree { path: "/c".into() },
        Op::Sync { device: 3 },
        Op::Sync { device: 2 },
    ]);
}

/// A phone that lost its index held a file at the place the store had moved it away from: it
/// went up again from there, and the store held it twice. The copy at an object's old place is
/// that object's, and the pull takes it where the object went.
#[test]
fn a_copy_at_the_place_the_store_moved_an_object_from_is_that_object() {
    holds(&[
        Op::StorePut { path: "/a/b/pic.jpg".into(), content: 8 },
        Op::StorePut { path: "/c/F.txt".into(), content: 59 },
        Op::Sync { device: 1 },
        Op::DirToFile { device: 1, path: "c".into(), content: 122 },
        Op::Sync { device: 1 },
        Op::Sync { device: 0 },
        Op::Rename { device: 0, from: "c (conflict tablet 2026-10-25)".into(), to: "a/f.txt".into() },
        Op::Sync { device: 0 },
        Op::SetProfile { device: 2, preset: 1 },
        Op::Sync { device: 2 },
        Op::SetProfile { device: 2, preset: 4 },
        Op::StoreMove { from: "/a/f.txt".into(), to: "/a/b/f.txt".into() },
        Op::LoseIndex { device: 2 },
    ]);
}

/// Two devices that lost their indexes held one content under the names it had before and after
/// a move in the store, which then deleted it: the tablet's re-read brought it back under its
/// new name, and the mac's under its old one as a second object.
#[test]
fn content_moved_then_deleted_comes_back_once_from_two_devices_that_lost_track() {
    holds(&[
        Op::Write { device: 3, path: "g (conflict phone 2026-10-25).txt".into(), content: 259 },
        Op::Settle,
        Op::StoreMove { from: "/g (conflict phone 2026-10-25).txt".into(), to: "/song.mp3".into() },
        Op::Write { device: 1, path: "café (conflict tablet 2026-10-31).txt".into(), content: 326 },
        Op::WriteDuringSync { device: 1, at: 25, path: "C/f.txt".into(), content: 349 },
        Op::StoreDelete { path: "/song.mp3".into() },
        Op::LoseIndex { device: 1 },
        Op::LoseIndex { device: 3 },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::SyncPartly { device: 3, calls: 4 },
    ]);
}

/// A file the PC renamed while the store deleted its folder came back from the PC as a new object, and
/// a tablet that lost its index brought back its own copy under the old name: stored twice.
/// The PC's move brings the deleted object back; the tablet's copy at its old place is that object.
#[test]
fn a_file_renamed_here_while_the_store_deleted_it_comes_back_once() {
    holds(&[
        Op::Write { device: 2, path: "a/b/g.txt".into(), content: 15 },
        Op::SetProfile { device: 1, preset: 4 },
        Op::Settle,
        Op::Write { device: 0, path: "c/pic.jpg".into(), content: 336 },
        Op::SyncPartly { device: 0, calls: 2 },
        Op::StoreDeleteTree { path: "/a".into() },
        Op::Rename { device: 0, from: "a/b/g.txt".into(), to: "a/b/G.TXT".into() },
        Op::LoseIndex { device: 1 },
        Op::Sync { device: 1 },
    ]);
}

/// Two devices moved one folder, each elsewhere, while the store deleted it: each sent up what was in
/// it as new objects, and the store held every file twice. Each move brings back the same objects.
#[test]
fn two_devices_moving_a_folder_the_store_deleted_keep_one_copy() {
    holds(&[
        Op::Write { device: 0, path: "a/b/f.txt".into(), content: 304 },
        Op::SetProfile { device: 2, preset: 1 },
        Op::Settle,
        Op::Write { device: 2, path: "C/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), content: 346 },
        Op::Sync { device: 2 },
        Op::Sync { device: 1 },
        Op::StoreDeleteTree { path: "/a".into() },
        Op::Rename { device: 2, from: "a/b".into(), to: "a/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into() },
        Op::Rename { device: 1, from: "a/b".into(), to: "C/B".into() },
    ]);
}

/// The PC renamed a folder the store deleted while a phone that lost its index held a file of it:
/// both sent it up, under the new name and the old, as two objects.
#[test]
fn a_folder_renamed_while_the_store_deleted_it_and_a_lost_index_keep_one_copy() {
    holds(&[
        Op::StorePut { path: "/a/h".into(), content: 65 },
        Op::StorePut { path: "/a/g.txt".into(), content: 83 },
        Op::WriteDuringSync { device: 2, at: 11, path: "c/llllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllllll.txt".into(), content: 95 },
        Op::WriteDuringSync { device: 2, at: 6, path: "a/b/F (conflict mac 2026-11-01).txt".into(), content: 224 },
        Op::WriteDuringSync { device: 0, at: 23, path: "pic.jpg".into(), content: 232 },
        Op::LoseIndex { device: 2 },
        Op::StoreDeleteTree { path: "/a".into() },
        Op::Rename { device: 0, from: "a".into(), to: "A".into() },
    ]);
}

/// A device whose only sync began when the store was empty kept cursor 0; its next sync read the
/// journal from 0 as a delta, which no longer told of a deletion whose tombstone was collected
/// meanwhile: the Mac kept the deleted file for good.
#[test]
fn a_device_last_synced_with_an_empty_store_learns_of_deletions_collected_since() {
    holds(&[
        Op::Write { device: 3, path: "C/song.mp3".into(), content: 5 },
        Op::Sync { device: 3 },
        Op::StoreDelete { path: "/C/song.mp3".into() },
        Op::ClockJump { seconds: 129600 },
        Op::ExpireTombstones,
    ]);
}

/// The tablet deleted a file in a sync that then waited, while the Mac, holding the file, renamed
/// it and so brought the deleted object back: the tablet's sync, taking up again, dropped the
/// object brought back as the echo of its own deletion, and never held it.
#[test]
fn an_object_brought_back_after_this_sync_deleted_it_is_pulled() {
    holds(&[
        Op::Write { device: 1, path: "a/b/café.txt".into(), content: 146 },
        Op::Sync { device: 1 },
        Op::StoreMove { from: "/a/b/café.txt".into(), to: "/a/café.txt".into() },
        Op::StoreReplace { path: "/a/café.txt".into(), content: 177 },
        Op::Write { device: 1, path: "a/b/café.txt".into(), content: 185 },
        Op::Settle,
        Op::RemoveTree { device: 1, path: "a".into() },
        Op::SyncPartly { device: 1, calls: 3 },
        Op::StoreReplace { path: "/a/café.txt".into(), content: 221 },
        Op::SyncPartly { device: 3, calls: 0 },
        Op::SetProfile { device: 1, preset: 0 },
        Op::Rename { device: 3, from: "a/b/café.txt".into(), to: "a/b/CAFÉ.TXT".into() },
        Op::Resume { device: 3 },
    ]);
}
