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
/// Stuck: the devices never stop changing: eight rounds of syncs were not quiet
#[test]
fn seed_9() {
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
/// Failed: a sync of tablet failed with no fault to blame: the store's changes name 1 entries whose folders this device does not hold; nothing was applied
#[test]
fn seed_10() {
    holds(&[
        Op::StoreMkdir { path: "/a/b".into() },
        Op::Write { device: 1, path: "a/b/mmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmmm.txt".into(), content: 40 },
        Op::SyncPartly { device: 1, calls: 4 },
        Op::StoreDeleteTree { path: "/a".into() },
    ]);
}
/// Junk: /c/song.mp3 (o000012) holds a content no user wrote
#[test]
fn seed_3() {
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
/// Failed: a sync of tablet failed with no fault to blame: the store's changes name 1 entries whose folders this device does not hold; nothing was applied
#[test]
fn seed_14() {
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
