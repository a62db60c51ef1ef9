//! Failures the simulation found, shrunk to the operations that show them, kept so that each
//! stays fixed. Each test replays its operations on a fresh world, checking every invariant.

use cpm_sim::{FaultOn, Op};

#[allow(unused)]
fn holds(ops: &[Op]) {
    if let Err(failure) = cpm_sim::replay(ops) {
        panic!("{failure}");
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
