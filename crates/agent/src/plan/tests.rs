use super::*;
use cpm_core::ObjectKind;
use cpm_core::profile::ContentPolicy;
use cpm_proto::Change;
use jiff::Timestamp;

const ROOT: &str = "froot";

fn entry(id: &str, kind: EntryKind, parent: &str, name: &str, hash: Option<&str>, modseq: i64) -> Entry {
    Entry {
        kind,
        id: id.into(),
        name: name.into(),
        path: None,
        parent_id: Some(parent.into()),
        modseq,
        created: Some(Timestamp::UNIX_EPOCH),
        modified: Some(Timestamp::UNIX_EPOCH),
        size: hash.map(|_| 3),
        content_type: None,
        hash: hash.map(str::to_owned),
        link: (kind != EntryKind::Folder).then(|| format!("http://store/v1/objects/{id}/content")),
        flags: None,
        from: None,
        to: None,
        cc: None,
        subject: None,
        date: None,
        message_id: None,
        conversation_id: None,
        attachments: None,
    }
}

fn record(entry: Entry, state: LocalState) -> Record {
    let local = (state == LocalState::File).then_some(FileStamp { size: 3, mtime_ns: entry.modseq, ino: 0 });
    Record::new(entry, state, local)
}

fn upsert(entry: Entry) -> Change {
    Change { modseq: entry.modseq, kind: entry.kind, id: entry.id.clone(), deleted: false, entry: Some(entry) }
}

fn removal(id: &str, kind: EntryKind, modseq: i64) -> Change {
    Change { modseq, kind, id: id.into(), deleted: true, entry: None }
}

/// A PC with /music/a.mp3 (hash "A") and /photos/p.jpg (hash "P"), in sync.
fn pc() -> (Tree, Scan) {
    let mut tree = Tree { root_id: ROOT.into(), records: HashMap::default() };
    for record in [
        record(entry("fmusic", EntryKind::Folder, ROOT, "music", None, 1), LocalState::Folder),
        record(entry("fphotos", EntryKind::Folder, ROOT, "photos", None, 2), LocalState::Folder),
        record(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("A"), 3), LocalState::File),
        record(entry("op", EntryKind::File, "fphotos", "p.jpg", Some("P"), 4), LocalState::File),
    ] {
        tree.records.insert(record.id.clone(), record);
    }
    let mut scan = Scan::default();
    scan.dirs.extend(["music".to_owned(), "photos".to_owned()]);
    scan.files
        .insert("music/a.mp3".into(), LocalFile { stamp: FileStamp { size: 3, mtime_ns: 3, ino: 0 }, hash: None });
    scan.files
        .insert("photos/p.jpg".into(), LocalFile { stamp: FileStamp { size: 3, mtime_ns: 4, ino: 0 }, hash: None });
    (tree, scan)
}

fn today() -> jiff::civil::Date {
    jiff::civil::date(2026, 11, 25)
}

fn pc_here() -> Here<'static> {
    Here { device: "pc", today: today(), case_insensitive: false }
}

fn phone_here() -> Here<'static> {
    Here { device: "phone", today: today(), case_insensitive: false }
}

fn pull_plan(tree: &Tree, scan: &Scan, remote: &[Change]) -> PullPlan {
    plan_pull(tree.clone(), scan, remote, ContentPolicy::Download, pc_here(), Listing::Delta)
}

fn edited(scan: &mut Scan, path: &str, hash: &str) {
    scan.files
        .insert(path.into(), LocalFile { stamp: FileStamp { size: 9, mtime_ns: 99, ino: 0 }, hash: Some(hash.into()) });
}

#[test]
fn nothing_changed_means_nothing_to_do() {
    let (tree, scan) = pc();
    assert!(plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta).is_empty());
    assert!(pull_plan(&tree, &scan, &[]).actions.is_empty());
}

#[test]
fn a_move_in_the_store_is_a_local_rename_without_download() {
    let (tree, scan) = pc();
    let remote = [
        upsert(entry("ffav", EntryKind::Folder, "fmusic", "favourite song", None, 10)),
        upsert(entry("oa", EntryKind::File, "ffav", "a.mp3", Some("A"), 11)),
    ];
    let plan = pull_plan(&tree, &scan, &remote);
    assert_eq!(
        plan.actions,
        [
            Pull::MakeDir { path: "music/favourite song".into() },
            Pull::Rename { id: "oa".into(), from: "music/a.mp3".into(), to: "music/favourite song/a.mp3".into() },
        ]
    );
    assert_eq!(plan.tree.path_of("oa").as_deref(), Some("music/favourite song/a.mp3"));
    assert!(plan_push(&tree, &scan, &remote, ContentPolicy::Download, pc_here(), Listing::Delta).is_empty());
}

#[test]
fn a_folder_moved_in_the_store_moves_with_its_contents() {
    let (tree, scan) = pc();
    let remote = [upsert(entry("fphotos", EntryKind::Folder, "fmusic", "pictures", None, 10))];
    let plan = pull_plan(&tree, &scan, &remote);
    assert_eq!(
        plan.actions,
        [Pull::Rename { id: "fphotos".into(), from: "photos".into(), to: "music/pictures".into() }]
    );
    assert_eq!(plan.tree.path_of("op").as_deref(), Some("music/pictures/p.jpg"));
}

#[test]
fn new_content_in_the_store_is_downloaded() {
    let (tree, scan) = pc();
    let plan = pull_plan(&tree, &scan, &[upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("A2"), 10))]);
    let own = Some(FileStamp { size: 3, mtime_ns: 3, ino: 0 });
    assert_eq!(plan.actions, [Pull::Download { id: "oa".into(), path: "music/a.mp3".into(), replacing: own }]);
}

#[test]
fn when_both_sides_edit_the_store_keeps_the_name_and_the_device_keeps_a_conflict_copy() {
    let (tree, mut scan) = pc();
    edited(&mut scan, "music/a.mp3", "A-local");
    let remote = [upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("A-store"), 10))];
    assert!(
        plan_push(&tree, &scan, &remote, ContentPolicy::Download, pc_here(), Listing::Delta).is_empty(),
        "the pull decides"
    );
    let plan = pull_plan(&tree, &scan, &remote);
    assert_eq!(
        plan.actions,
        [
            Pull::SetAside { from: "music/a.mp3".into(), to: "music/a (conflict pc 2026-11-25).mp3".into() },
            Pull::Download { id: "oa".into(), path: "music/a.mp3".into(), replacing: None },
        ]
    );
}

#[test]
fn local_edits_go_up_as_new_versions_based_on_what_was_seen() {
    let (tree, mut scan) = pc();
    edited(&mut scan, "music/a.mp3", "A2");
    assert_eq!(
        plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Upload {
            path: "music/a.mp3".into(),
            hash: "A2".into(),
            kind: ObjectKind::File,
            replace: Some(("oa".into(), 3))
        }]
    );
}

#[test]
fn a_local_rename_or_move_goes_up_as_a_move() {
    let (tree, mut scan) = pc();
    scan.files.remove("music/a.mp3");
    scan.files.insert(
        "photos/renamed.mp3".into(),
        LocalFile { stamp: FileStamp { size: 3, mtime_ns: 50, ino: 0 }, hash: Some("A".into()) },
    );
    assert_eq!(
        plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Move { id: "oa".into(), path: "photos/renamed.mp3".into() }]
    );
}

/// `mv music/a.mp3 photos/p.jpg`: the file there went, and the moved one took its name. Taken for
/// an edit of photos/p.jpg, a.mp3's content would be in the store twice.
#[test]
fn a_file_renamed_onto_another_ones_name_deletes_that_one_and_moves() {
    let (tree, mut scan) = pc();
    scan.files.remove("music/a.mp3");
    edited(&mut scan, "photos/p.jpg", "A");
    assert_eq!(
        plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Delete { id: "op".into(), base_modseq: 4 }, Push::Move { id: "oa".into(), path: "photos/p.jpg".into() }]
    );
    // Copied rather than moved (`cp`), or deleted in the store meanwhile: an edit, as before.
    edited(&mut scan, "music/a.mp3", "A");
    let copied = plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta);
    assert!(matches!(copied.as_slice(), [Push::Upload { replace: Some(_), .. }, ..]), "{copied:?}");
}

/// A folder moved elsewhere and a new one made under its old name, with a file of the same name:
/// the old file's content is at the new place, so the record moves there, and the file at its
/// old path is new. Taken for an edit, the content went up twice.
#[test]
fn a_file_whose_content_moved_away_and_whose_name_was_taken_again_is_a_move_and_a_new_file() {
    let (tree, mut scan) = pc();
    scan.files.insert(
        "elsewhere/a.mp3".into(),
        LocalFile { stamp: FileStamp { size: 3, mtime_ns: 50, ino: 0 }, hash: Some("A".into()) },
    );
    scan.dirs.insert("elsewhere".into());
    edited(&mut scan, "music/a.mp3", "NEW");
    assert_eq!(
        plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta),
        [
            Push::CreateFolder { path: "elsewhere".into() },
            Push::Move { id: "oa".into(), path: "elsewhere/a.mp3".into() },
            Push::Upload { path: "music/a.mp3".into(), hash: "NEW".into(), kind: ObjectKind::File, replace: None },
        ]
    );
}

#[test]
fn local_creations_and_deletions_go_up_folders_first() {
    let (tree, mut scan) = pc();
    scan.files.remove("photos/p.jpg");
    scan.dirs.insert("new".into());
    scan.files.insert(
        "new/n.txt".into(),
        LocalFile { stamp: FileStamp { size: 1, mtime_ns: 1, ino: 0 }, hash: Some("N".into()) },
    );
    scan.files.insert(
        "note.eml".into(),
        LocalFile { stamp: FileStamp { size: 1, mtime_ns: 1, ino: 0 }, hash: Some("M".into()) },
    );
    assert_eq!(
        plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta),
        [
            Push::CreateFolder { path: "new".into() },
            Push::Upload { path: "new/n.txt".into(), hash: "N".into(), kind: ObjectKind::File, replace: None },
            Push::Upload { path: "note.eml".into(), hash: "M".into(), kind: ObjectKind::Message, replace: None },
            Push::Delete { id: "op".into(), base_modseq: 4 },
        ]
    );
}

#[test]
fn a_modification_beats_a_deletion_on_either_side() {
    // Deleted here, changed in the store: it comes back.
    let (tree, mut scan) = pc();
    scan.files.remove("music/a.mp3");
    let remote = [upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("A2"), 10))];
    assert!(plan_push(&tree, &scan, &remote, ContentPolicy::Download, pc_here(), Listing::Delta).is_empty());
    assert_eq!(
        pull_plan(&tree, &scan, &remote).actions,
        [Pull::Download { id: "oa".into(), path: "music/a.mp3".into(), replacing: None }]
    );
    // Changed here, deleted in the store: the file stays, unlinked, and goes up as new.
    let (tree, mut scan) = pc();
    edited(&mut scan, "music/a.mp3", "A-local");
    let plan = pull_plan(&tree, &scan, &[removal("oa", EntryKind::File, 10)]);
    assert!(plan.actions.is_empty(), "{:?}", plan.actions);
    assert!(plan.dropped.contains("oa"));
    assert_eq!(
        plan_push(&plan.tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Upload { path: "music/a.mp3".into(), hash: "A-local".into(), kind: ObjectKind::File, replace: None }]
    );
}

#[test]
fn a_deletion_in_the_store_removes_unchanged_files_and_empty_folders_last() {
    let (tree, scan) = pc();
    let remote = [removal("oa", EntryKind::File, 10), removal("fmusic", EntryKind::Folder, 11)];
    let plan = pull_plan(&tree, &scan, &remote);
    assert_eq!(
        plan.actions,
        [
            Pull::RemoveFile {
                path: "music/a.mp3".into(),
                expected: Some(FileStamp { size: 3, mtime_ns: 3, ino: 0 }),
                id: Some("oa".into())
            },
            Pull::RemoveDir { path: "music".into() }
        ]
    );
    // A folder leaving a partial view takes what is below it along.
    let plan = pull_plan(&tree, &scan, &[removal("fphotos", EntryKind::Folder, 10)]);
    assert_eq!(
        plan.actions,
        [
            Pull::RemoveFile {
                path: "photos/p.jpg".into(),
                expected: Some(FileStamp { size: 3, mtime_ns: 4, ino: 0 }),
                id: Some("op".into())
            },
            Pull::RemoveDir { path: "photos".into() }
        ]
    );
    assert!(plan.dropped.contains("op"));
}

#[test]
fn replaying_an_interrupted_pull_adopts_what_arrived() {
    let (tree, mut scan) = pc();
    let remote = [
        upsert(entry("on", EntryKind::File, "fmusic", "new.mp3", Some("NEW"), 10)),
        upsert(entry("op", EntryKind::File, "fmusic", "p.jpg", Some("P"), 11)),
    ];
    // The first run downloaded new.mp3 and moved p.jpg, then died before saving its index.
    scan.files.insert(
        "music/new.mp3".into(),
        LocalFile { stamp: FileStamp { size: 3, mtime_ns: 70, ino: 0 }, hash: Some("NEW".into()) },
    );
    let moved = scan.files.remove("photos/p.jpg").expect("present");
    scan.files.insert("music/p.jpg".into(), LocalFile { hash: Some("P".into()), ..moved });
    assert!(
        plan_push(&tree, &scan, &remote, ContentPolicy::Download, pc_here(), Listing::Delta).is_empty(),
        "nothing is taken for a local change"
    );
    let plan = pull_plan(&tree, &scan, &remote);
    assert_eq!(plan.actions, [Pull::Rename { id: "op".into(), from: "photos/p.jpg".into(), to: "music/p.jpg".into() }]);
    assert_eq!(plan.tree.records["on"].local.map(|stamp| stamp.mtime_ns), Some(70));
}

#[test]
fn a_local_file_in_the_way_of_an_incoming_one_is_set_aside() {
    let (tree, mut scan) = pc();
    scan.files.insert(
        "music/b.mp3".into(),
        LocalFile { stamp: FileStamp { size: 5, mtime_ns: 5, ino: 0 }, hash: Some("MINE".into()) },
    );
    let plan = pull_plan(&tree, &scan, &[upsert(entry("ob", EntryKind::File, "fmusic", "b.mp3", Some("THEIRS"), 10))]);
    assert_eq!(
        plan.actions,
        [
            Pull::SetAside { from: "music/b.mp3".into(), to: "music/b (conflict pc 2026-11-25).mp3".into() },
            Pull::Download { id: "ob".into(), path: "music/b.mp3".into(), replacing: None },
        ]
    );
}

#[test]
fn a_case_only_rename_is_a_rename() {
    let (tree, scan) = pc();
    let plan = pull_plan(&tree, &scan, &[upsert(entry("oa", EntryKind::File, "fmusic", "A.mp3", Some("A"), 10))]);
    assert_eq!(plan.actions, [Pull::Rename { id: "oa".into(), from: "music/a.mp3".into(), to: "music/A.mp3".into() }]);
}

#[test]
fn a_stub_device_keeps_placeholders_that_follow_moves_and_come_back_when_deleted() {
    let tree = Tree { root_id: ROOT.into(), records: HashMap::default() };
    let remote = [
        upsert(entry("fmusic", EntryKind::Folder, ROOT, "music", None, 1)),
        upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", None, 2)),
        upsert(entry("om", EntryKind::Message, ROOT, "hello", None, 3)),
    ];
    let plan = plan_pull(
        tree.clone(),
        &Scan::default(),
        &remote,
        ContentPolicy::Stub,
        phone_here(),
        Listing::Full { cursor: 3 },
    );
    assert_eq!(
        plan.actions,
        [
            Pull::MakeDir { path: "music".into() },
            Pull::WriteStub { id: "oa".into(), path: "music/a.mp3.cpmlink".into(), replace: false },
            Pull::WriteStub { id: "om".into(), path: "hello.eml.cpmlink".into(), replace: false },
        ]
    );
    let mut scan = Scan::default();
    scan.dirs.insert("music".into());
    scan.files.insert(
        "music/a.mp3.cpmlink".into(),
        LocalFile { stamp: FileStamp { size: 1, mtime_ns: 1, ino: 0 }, hash: None },
    );
    let moved = plan_pull(
        plan.tree.clone(),
        &scan,
        &[upsert(entry("oa", EntryKind::File, ROOT, "a.mp3", None, 4))],
        ContentPolicy::Stub,
        phone_here(),
        Listing::Delta,
    );
    assert_eq!(
        moved.actions,
        [
            Pull::Rename { id: "oa".into(), from: "music/a.mp3.cpmlink".into(), to: "a.mp3.cpmlink".into() },
            Pull::WriteStub { id: "oa".into(), path: "a.mp3.cpmlink".into(), replace: true },
            Pull::WriteStub { id: "om".into(), path: "hello.eml.cpmlink".into(), replace: false },
        ],
        "the stub follows the move with a fresh link, and the missing message stub is restored"
    );
    assert!(
        plan_push(&moved.tree, &scan, &[], ContentPolicy::Stub, phone_here(), Listing::Delta).is_empty(),
        "stubs never go up"
    );
}

#[test]
fn a_full_listing_drops_what_it_no_longer_mentions() {
    let (tree, scan) = pc();
    let remote = [
        upsert(entry("fmusic", EntryKind::Folder, ROOT, "music", None, 1)),
        upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("A"), 3)),
    ];
    let plan =
        plan_pull(tree.clone(), &scan, &remote, ContentPolicy::Download, pc_here(), Listing::Full { cursor: 12 });
    assert_eq!(
        plan.actions,
        [
            Pull::RemoveFile {
                path: "photos/p.jpg".into(),
                expected: Some(FileStamp { size: 3, mtime_ns: 4, ino: 0 }),
                id: Some("op".into())
            },
            Pull::RemoveDir { path: "photos".into() }
        ]
    );
}

#[test]
fn a_record_whose_folder_arrives_later_in_the_batch_waits_for_it() {
    let (tree, scan) = pc();
    let remote = [
        upsert(entry("ox", EntryKind::File, "fnew", "x.txt", Some("X"), 11)),
        upsert(entry("fnew", EntryKind::Folder, ROOT, "new", None, 12)),
    ];
    let plan = pull_plan(&tree, &scan, &remote);
    assert_eq!(
        plan.actions,
        [
            Pull::MakeDir { path: "new".into() },
            Pull::Download { id: "ox".into(), path: "new/x.txt".into(), replacing: None }
        ]
    );
    let orphan = pull_plan(&tree, &scan, &[upsert(entry("oy", EntryKind::File, "fnowhere", "y", Some("Y"), 13))]);
    assert_eq!(orphan.orphans, ["oy"]);
}

#[test]
fn entries_in_folders_the_device_neither_holds_nor_receives_name_those_folders() {
    let (tree, _) = pc();
    let delta = [
        upsert(entry("ox", EntryKind::File, "fnew", "x.txt", Some("X"), 11)),
        upsert(entry("fnew", EntryKind::Folder, ROOT, "new", None, 12)),
        upsert(entry("oy", EntryKind::File, "fnowhere", "y", Some("Y"), 13)),
        upsert(entry("oz", EntryKind::File, "fmusic", "z", Some("Z"), 14)),
        removal("ow", EntryKind::File, 15),
    ];
    assert_eq!(missing_folders(&tree, &delta, Listing::Delta), BTreeSet::from(["fnowhere".to_owned()]));
    // A whole listing that no longer names a folder the device holds says it is gone.
    let full = [upsert(entry("oz", EntryKind::File, "fmusic", "z", Some("Z"), 14))];
    assert_eq!(missing_folders(&tree, &full, Listing::Full { cursor: 20 }), BTreeSet::from(["fmusic".to_owned()]));
    let listed = [full[0].clone(), upsert(entry("fmusic", EntryKind::Folder, ROOT, "music", None, 1))];
    assert!(missing_folders(&tree, &listed, Listing::Full { cursor: 20 }).is_empty());
}

/// A record whose folder the device does not know has no path here: the device's directory
/// itself was once planned to move in its place (and everything in it then looked deleted).
#[test]
fn a_record_whose_folder_is_unknown_is_placed_anew_never_moved_from_the_top() {
    let (mut tree, scan) = pc();
    let lost = record(entry("ox", EntryKind::File, "fgone", "x.mp3", Some("X"), 5), LocalState::File);
    tree.records.insert(lost.id.clone(), lost);
    let plan = pull_plan(&tree, &scan, &[upsert(entry("ox", EntryKind::File, "fmusic", "x.mp3", Some("X"), 20))]);
    assert_eq!(plan.actions, [Pull::Download { id: "ox".into(), path: "music/x.mp3".into(), replacing: None }]);
}

#[test]
fn an_edit_that_follows_a_store_move_is_flagged_to_go_up_in_the_same_sync() {
    let (tree, mut scan) = pc();
    edited(&mut scan, "music/a.mp3", "A-local");
    let plan = pull_plan(&tree, &scan, &[upsert(entry("oa", EntryKind::File, "fphotos", "a.mp3", Some("A"), 10))]);
    assert_eq!(plan.actions, [Pull::Rename { id: "oa".into(), from: "music/a.mp3".into(), to: "photos/a.mp3".into() }]);
    assert!(plan.push_after);
    assert!(
        !pull_plan(&tree, &pc().1, &[upsert(entry("oa", EntryKind::File, "fphotos", "a.mp3", Some("A"), 10))])
            .push_after
    );
}

#[test]
fn a_file_moved_here_goes_up_as_a_move_even_when_the_store_changed_its_record() {
    let (tree, mut scan) = pc();
    scan.files.remove("music/a.mp3");
    scan.files.insert(
        "photos/a2.mp3".into(),
        LocalFile { stamp: FileStamp { size: 3, mtime_ns: 50, ino: 0 }, hash: Some("A".into()) },
    );
    for remote in
        [removal("oa", EntryKind::File, 10), upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("A"), 10))]
    {
        assert_eq!(
            plan_push(&tree, &scan, &[remote], ContentPolicy::Download, pc_here(), Listing::Delta),
            [Push::Move { id: "oa".into(), path: "photos/a2.mp3".into() }],
            "never an upload of a second copy"
        );
    }
}

#[test]
fn what_an_interrupted_pull_placed_is_moved_on_not_uploaded() {
    // The pull placed new.mp3 at music/ and died; since then the store moved it to photos/.
    let (tree, mut scan) = pc();
    scan.files.insert(
        "music/new.mp3".into(),
        LocalFile { stamp: FileStamp { size: 3, mtime_ns: 70, ino: 0 }, hash: Some("NEW".into()) },
    );
    scan.ours.insert("on".into(), "music/new.mp3".into());
    let remote = [upsert(entry("on", EntryKind::File, "fphotos", "new.mp3", Some("NEW"), 12))];
    assert!(
        plan_push(&tree, &scan, &remote, ContentPolicy::Download, pc_here(), Listing::Delta).is_empty(),
        "not a new local file"
    );
    let plan = pull_plan(&tree, &scan, &remote);
    assert_eq!(
        plan.actions,
        [Pull::Rename { id: "on".into(), from: "music/new.mp3".into(), to: "photos/new.mp3".into() }]
    );
    // And when the record has left the view meanwhile, what was placed goes.
    let gone = pull_plan(&tree, &scan, &[removal("on", EntryKind::File, 12)]);
    assert_eq!(
        gone.actions,
        [Pull::RemoveFile {
            path: "music/new.mp3".into(),
            expected: Some(FileStamp { size: 3, mtime_ns: 70, ino: 0 }),
            id: None
        }]
    );
}

#[test]
fn a_cpmlink_file_the_index_does_not_record_is_the_users_and_goes_up() {
    let (tree, mut scan) = pc();
    let mine = LocalFile { stamp: FileStamp { size: 4, mtime_ns: 7, ino: 0 }, hash: Some("MINE".into()) };
    scan.files.insert("music/notes.cpmlink".into(), mine);
    assert!(pull_plan(&tree, &scan, &[]).actions.is_empty(), "left alone");
    assert_eq!(
        plan_push(&tree, &scan, &[], ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Upload {
            path: "music/notes.cpmlink".into(),
            hash: "MINE".into(),
            kind: ObjectKind::File,
            replace: None
        }]
    );
}

#[test]
fn the_echo_of_the_devices_own_change_is_no_change() {
    // a.mp3 was uploaded by this device at modseq 3, then deleted here; the journal echoes it.
    let (tree, mut scan) = pc();
    scan.files.remove("music/a.mp3");
    let echo = [upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("A"), 3))];
    assert_eq!(
        plan_push(&tree, &scan, &echo, ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Delete { id: "oa".into(), base_modseq: 3 }],
        "the deletion goes up; nothing in the store contradicts it"
    );
    assert!(pull_plan(&tree, &scan, &echo).actions.is_empty(), "and nothing comes back");
}

#[test]
fn what_an_interrupted_pull_placed_and_the_user_then_moved_goes_up_as_a_move() {
    let (tree, mut scan) = pc();
    scan.files.insert(
        "photos/mine.mp3".into(),
        LocalFile { stamp: FileStamp { size: 3, mtime_ns: 80, ino: 0 }, hash: Some("NEW".into()) },
    );
    scan.ours_moved.insert("on".into(), "photos/mine.mp3".into());
    let remote = [upsert(entry("on", EntryKind::File, "fmusic", "new.mp3", Some("NEW"), 12))];
    assert_eq!(
        plan_push(&tree, &scan, &remote, ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Move { id: "on".into(), path: "photos/mine.mp3".into() }]
    );
}

#[test]
fn a_rename_on_both_sides_keeps_one_object_under_the_devices_later_name() {
    let (tree, mut scan) = pc();
    scan.files.remove("music/a.mp3");
    scan.files.insert(
        "music/mine.mp3".into(),
        LocalFile { stamp: FileStamp { size: 3, mtime_ns: 3, ino: 0 }, hash: Some("A".into()) },
    );
    let theirs = [upsert(entry("oa", EntryKind::File, "fmusic", "theirs.mp3", Some("A"), 10))];
    assert_eq!(
        plan_push(&tree, &scan, &theirs, ContentPolicy::Download, pc_here(), Listing::Delta),
        [Push::Move { id: "oa".into(), path: "music/mine.mp3".into() }],
        "sent as a move: the device renamed it after the sync that showed the store's name"
    );
}

/// The directory a tree describes, exactly.
fn scan_of(tree: &Tree) -> Scan {
    Scan::as_indexed(tree, 0, BTreeMap::new())
}

#[test]
fn a_directory_that_agrees_with_the_index_needs_nothing_and_any_difference_is_seen() {
    let mut state = 0x2545_F491_4F6C_DD1Du64;
    let mut next = |bound: usize| {
        state ^= state << 13;
        state ^= state >> 7;
        state ^= state << 17;
        usize::try_from(state % bound as u64).unwrap_or(0)
    };
    for round in 0..500 {
        let mut tree = Tree { root_id: ROOT.into(), records: HashMap::default() };
        let mut folders = vec![ROOT.to_owned()];
        for i in 0..next(12) + 1 {
            let parent = folders[next(folders.len())].clone();
            let (id, name) = (format!("r{round}-{i}"), format!("n{}", next(4)));
            let state = [LocalState::Folder, LocalState::File, LocalState::Stub][next(3)];
            let kind = if state == LocalState::Folder { EntryKind::Folder } else { EntryKind::File };
            let clash = tree.records.values().any(|other| {
                other.parent_id.as_deref() == Some(parent.as_str()) && other.name == name && other.state == state
            });
            if clash {
                continue;
            }
            let hash = (kind == EntryKind::File).then_some("H");
            tree.records.insert(id.clone(), record(entry(&id, kind, &parent, &name, hash, 5), state));
            if state == LocalState::Folder {
                folders.push(id);
            }
        }
        let scan = scan_of(&tree);
        assert!(agrees(&tree, &scan), "round {round}: the tree's own directory agrees");
        for content in [ContentPolicy::Download, ContentPolicy::Stub] {
            assert!(plan_push(&tree, &scan, &[], content, pc_here(), Listing::Delta).is_empty(), "round {round}");
            let pull = plan_pull(tree.clone(), &scan, &[], content, pc_here(), Listing::Delta);
            assert!(pull.actions.is_empty() && !pull.push_after, "round {round}: {:?}", pull.actions);
        }
        // One difference of any kind, and the directory no longer agrees.
        let mut changed = scan.clone();
        let file = changed.files.keys().nth(next(changed.files.len().max(1))).cloned();
        match (next(5), file) {
            (0, Some(path)) => {
                changed.files.remove(&path);
            }
            (1, Some(path)) => {
                if let Some(found) = changed.files.get_mut(&path) {
                    found.stamp.mtime_ns += 1;
                    found.stamp.size += 1;
                }
                if tree.stub_paths().contains(&path) {
                    changed.files.insert(
                        format!("{path}.extra"),
                        LocalFile { stamp: FileStamp { size: 1, mtime_ns: 1, ino: 0 }, hash: None },
                    );
                }
            }
            (2, _) => {
                changed.dirs.insert("new-folder".into());
            }
            (3, _) => {
                changed.ours.insert("someone".into(), "placed".into());
            }
            _ => {
                changed.files.insert(
                    "new.txt".into(),
                    LocalFile { stamp: FileStamp { size: 1, mtime_ns: 1, ino: 0 }, hash: None },
                );
            }
        }
        assert!(!agrees(&tree, &changed), "round {round}: a difference goes unseen");
    }
}

#[test]
fn a_device_reading_its_view_again_keeps_every_copy_of_one_content() {
    // The index is lost (or the directory registered anew) with two files of the same bytes here:
    // each is its object's own, neither is removed as held elsewhere.
    let tree = Tree { root_id: ROOT.into(), records: HashMap::default() };
    let mut scan = Scan::default();
    scan.dirs.insert("music".to_owned());
    for (path, mtime_ns) in [("music/a.mp3", 1), ("music/b.mp3", 2)] {
        scan.files.insert(
            path.into(),
            LocalFile { stamp: FileStamp { size: 5, mtime_ns, ino: 0 }, hash: Some("SAME".into()) },
        );
    }
    let remote = [
        upsert(entry("fmusic", EntryKind::Folder, ROOT, "music", None, 1)),
        upsert(entry("oa", EntryKind::File, "fmusic", "a.mp3", Some("SAME"), 2)),
        upsert(entry("ob", EntryKind::File, "fmusic", "b.mp3", Some("SAME"), 3)),
    ];
    let listing = Listing::Full { cursor: 3 };
    assert!(plan_push(&tree, &scan, &remote, ContentPolicy::Download, pc_here(), listing).is_empty());
    let plan = plan_pull(tree, &scan, &remote, ContentPolicy::Download, pc_here(), listing);
    assert!(plan.actions.is_empty(), "both files are adopted as they are: {:?}", plan.actions);
    assert_eq!(plan.tree.records["oa"].local.map(|stamp| stamp.mtime_ns), Some(1));
    assert_eq!(plan.tree.records["ob"].local.map(|stamp| stamp.mtime_ns), Some(2));
}

#[test]
fn a_store_folder_named_like_the_devices_own_gets_a_name_of_its_own_here() {
    let (tree, scan) = pc();
    let remote = [
        upsert(entry("fcpm", EntryKind::Folder, ROOT, ".cpm", None, 11)),
        upsert(entry("onote", EntryKind::File, "fcpm", "note.txt", Some("N"), 12)),
    ];
    let plan = pull_plan(&tree, &scan, &remote);
    let here = plan.tree.path_of("onote").expect("a path here");
    assert!(!here.starts_with(".cpm/"), "{here} would be inside the device's own folder");
    assert!(plan.actions.iter().all(|action| !format!("{action:?}").contains("\".cpm/")), "{:?}", plan.actions);
}

#[test]
fn a_skipped_path_shows_as_the_store_spells_it_with_control_characters_escaped() {
    assert_eq!(Skipped::new("C/bell\u{7}.txt", "bad name", "rename it").shown_path(), "/C/bell\\u{7}.txt");
    assert_eq!(Skipped::new("/C/bell\u{7}.txt", "bad name", "rename it").shown_path(), "/C/bell\\u{7}.txt");
    assert_eq!(Skipped::new("a/caf\u{e9}\n", "", "").shown_path(), "/a/caf\u{e9}\\n");
}

#[test]
fn a_name_this_device_makes_for_a_record_is_never_its_name_in_the_store() {
    let (tree, _) = pc();
    let mapped = crate::naming::mapped_name("a.mp3", "oa", "", 0);
    assert_eq!(tree.store_name("oa", &mapped), "a.mp3");
    // Another record's mark is a name like any other.
    let others = crate::naming::mapped_name("a.mp3", "op", "", 0);
    assert_eq!(tree.store_name("oa", &others), others);
    assert_eq!(tree.store_name("oa", "b.mp3"), "b.mp3");
}
