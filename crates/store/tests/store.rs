//! The embedded store against real SQLite files and blob directories in temp dirs.

use cpm_core::{ChangedRow, EntryKind, Item, ManualClock, Name, ObjectKind, StorePath};
use cpm_store::{NewObject, SqliteStore, Store, StoreError, StoreSettings, UserId, secret};
use jiff::{SignedDuration, Timestamp};
use std::sync::Arc;
use std::time::Duration;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct Fixture {
    _dir: tempfile::TempDir,
    store: SqliteStore,
    clock: Arc<ManualClock>,
    alice: UserId,
}

fn fixture() -> Fixture {
    fixture_with(StoreSettings::default())
}

fn fixture_with(settings: StoreSettings) -> Fixture {
    let dir = tempfile::tempdir().expect("temp dir");
    let clock = Arc::new(ManualClock::new(Timestamp::from_second(1_800_000_000).expect("valid time")));
    let store = SqliteStore::open(dir.path(), clock.clone(), settings).expect("store opens");
    let alice = store.create_user("alice", "$argon2id$placeholder").expect("user");
    Fixture { _dir: dir, store, clock, alice }
}

fn path(raw: &str) -> StorePath {
    StorePath::parse(raw).expect("valid path")
}

fn name(raw: &str) -> Name {
    Name::parse(raw).expect("valid name")
}

fn upload(store: &SqliteStore, user: UserId, bytes: &[u8]) -> String {
    let runtime = tokio::runtime::Builder::new_current_thread().build().expect("runtime");
    let hash = blake3::hash(bytes).to_hex().to_string();
    let verified = runtime.block_on(async {
        let mut writer = store.blobs().writer(u64::MAX).await.expect("writer");
        writer.write(bytes).await.expect("write");
        writer.finish(&hash, Some(bytes.len() as u64)).await.expect("verified")
    });
    store.commit_blob(user, verified).expect("commit");
    hash
}

fn put(store: &SqliteStore, user: UserId, folder: &str, file: &str, bytes: &[u8]) -> cpm_core::Object {
    let hash = upload(store, user, bytes);
    let folder = store.create_folder(user, &path(folder), true).expect("folder");
    store
        .create_object(
            user,
            NewObject {
                folder_id: folder.id,
                name: name(file),
                kind: ObjectKind::File,
                hash,
                content_type: "application/octet-stream".into(),
                message: None,
                modified: None,
                replace: false,
                base_modseq: None,
                quota_bytes: None,
            },
        )
        .expect("object")
}

fn listing(store: &SqliteStore, user: UserId, folder: &str) -> Vec<String> {
    let Item::Folder(folder) = store.resolve(user, &path(folder)).expect("resolves") else {
        panic!("{folder} is not a folder")
    };
    store.list(user, &folder.id, None, 10_000).expect("lists").items.iter().map(|item| item.name().to_owned()).collect()
}

#[test]
fn users_tokens_and_devices() -> TestResult {
    let f = fixture();
    assert!(matches!(f.store.create_user("alice", "x"), Err(StoreError::AlreadyExists(_))));
    assert!(matches!(f.store.create_user("Bad Name", "x"), Err(StoreError::Invalid(_))));
    assert!(matches!(f.store.credentials("nobody"), Err(StoreError::BadCredentials)));
    assert_eq!(f.store.credentials("alice")?.0, f.alice);

    let token = secret::new_token()?;
    let pda =
        f.store.register_device(f.alice, &name("pda"), "pda", Some("Europe/Paris"), &secret::token_hash(&token))?;
    let principal = f.store.authenticate(&secret::token_hash(&token))?;
    assert_eq!((principal.user_id, principal.device_id.as_deref()), (f.alice, Some(pda.id.as_str())));
    assert!(f.store.devices(f.alice)?[0].last_seen.is_some());
    assert!(matches!(
        f.store.register_device(f.alice, &name("pda"), "pda", None, "other"),
        Err(StoreError::AlreadyExists(_))
    ));

    f.store.revoke_device(f.alice, "pda")?;
    assert!(matches!(f.store.authenticate(&secret::token_hash(&token)), Err(StoreError::Unauthorized)));
    assert!(matches!(f.store.authenticate("unknown"), Err(StoreError::Unauthorized)));
    assert!(f.store.devices(f.alice)?[0].revoked);
    // The name is free again once revoked.
    f.store.register_device(f.alice, &name("pda"), "pda", None, "fresh")?;
    Ok(())
}

#[test]
fn folders_objects_and_name_rules() -> TestResult {
    let f = fixture();
    let song = put(&f.store, f.alice, "/content", "song1.mp3", b"la la la");
    assert_eq!(song.size, 8);
    assert!(matches!(f.store.create_folder(f.alice, &path("/content"), false), Err(StoreError::AlreadyExists(_))));
    assert!(matches!(f.store.create_folder(f.alice, &path("/a/b"), false), Err(StoreError::NotFound(_))));
    f.store.create_folder(f.alice, &path("/a/b"), true)?;
    let clash = f.store.create_folder(f.alice, &path("/content/song1.mp3"), false);
    let Err(StoreError::AlreadyExists(message)) = clash else { panic!("expected a clash, got {clash:?}") };
    assert_eq!(message, "/content/song1.mp3 already exists");

    // Without replace a name clash is refused; with it the same object gets the new payload.
    let again = NewObject {
        folder_id: song.folder_id.clone(),
        name: name("song1.mp3"),
        kind: ObjectKind::File,
        hash: upload(&f.store, f.alice, b"la la la la"),
        content_type: "audio/mpeg".into(),
        message: None,
        modified: None,
        replace: false,
        base_modseq: None,
        quota_bytes: None,
    };
    assert!(matches!(f.store.create_object(f.alice, again.clone()), Err(StoreError::AlreadyExists(_))));
    let replaced = f.store.create_object(f.alice, NewObject { replace: true, ..again.clone() })?;
    assert_eq!((replaced.id.as_str(), replaced.size), (song.id.as_str(), 11));
    assert!(replaced.modseq > song.modseq);

    let missing = NewObject { hash: "0".repeat(64), name: name("x"), ..again };
    assert!(matches!(f.store.create_object(f.alice, missing), Err(StoreError::BlobMissing(_))));
    Ok(())
}

#[test]
fn listing_pages_folders_first_then_objects() -> TestResult {
    let f = fixture();
    for file in ["b.txt", "a.txt", "c.txt"] {
        put(&f.store, f.alice, "/docs", file, file.as_bytes());
    }
    f.store.create_folder(f.alice, &path("/docs/zz"), false)?;
    f.store.create_folder(f.alice, &path("/docs/aa"), false)?;
    let Item::Folder(docs) = f.store.resolve(f.alice, &path("/docs"))? else { panic!("folder") };
    let mut names = Vec::new();
    let mut after = None;
    loop {
        let page = f.store.list(f.alice, &docs.id, after.as_deref(), 2)?;
        assert!(page.items.len() <= 2);
        names.extend(page.items.iter().map(|item| item.name().to_owned()));
        match page.next {
            Some(next) => after = Some(next),
            None => break,
        }
    }
    assert_eq!(names, ["aa", "zz", "a.txt", "b.txt", "c.txt"]);
    assert!(matches!(f.store.list(f.alice, &docs.id, Some("bogus"), 2), Err(StoreError::Invalid(_))));
    Ok(())
}

#[test]
fn bulk_move_is_atomic_metadata_only_and_checked() -> TestResult {
    let f = fixture();
    let songs: Vec<_> = (0..5)
        .map(|i| put(&f.store, f.alice, "/content", &format!("song{i}.mp3"), format!("song {i}").as_bytes()))
        .collect();
    put(&f.store, f.alice, "/content", "photo.jpg", b"jpeg");
    let favourite = f.store.create_folder(f.alice, &path("/content/favourite song"), false)?;
    // A clash on the last entry leaves every entry where it was.
    put(&f.store, f.alice, "/content/favourite song", "song4.mp3", b"other song 4");
    let ids: Vec<String> = songs.iter().map(|song| song.id.clone()).collect();
    let before = f.store.changes(f.alice, 0, 1000)?.cursor;
    let clash = f.store.move_items(f.alice, &ids, Some(&favourite.id), None);
    let Err(StoreError::AlreadyExists(message)) = clash else { panic!("expected a clash, got {clash:?}") };
    assert_eq!(message, "/content/favourite song/song4.mp3 already exists");
    assert_eq!(f.store.changes(f.alice, 0, 1000)?.cursor, before, "a refused move changes nothing");
    assert_eq!(listing(&f.store, f.alice, "/content").len(), 7);

    let Item::Object(other) = f.store.resolve(f.alice, &path("/content/favourite song/song4.mp3"))? else { panic!() };
    f.store.delete(f.alice, &other.id, false, None)?;
    let moved = f.store.move_items(f.alice, &ids, Some(&favourite.id), None)?;
    assert_eq!(moved.len(), 5);
    assert_eq!(listing(&f.store, f.alice, "/content"), ["favourite song", "photo.jpg"]);
    let Item::Object(moved_song) = f.store.resolve(f.alice, &path("/content/favourite song/song0.mp3"))? else {
        panic!()
    };
    assert_eq!((moved_song.id.as_str(), moved_song.hash.as_str()), (songs[0].id.as_str(), songs[0].hash.as_str()));

    // Rename, and folders never move into themselves.
    f.store.move_items(f.alice, std::slice::from_ref(&moved_song.id), None, Some(&name("first.mp3")))?;
    assert!(f.store.resolve(f.alice, &path("/content/favourite song/first.mp3")).is_ok());
    let content = f.store.resolve(f.alice, &path("/content"))?;
    let inner = f.store.create_folder(f.alice, &path("/content/favourite song/inner"), false)?;
    for target in [&inner.id, &favourite.id] {
        let refused = f.store.move_items(f.alice, &[content.id().to_owned()], Some(target), None);
        assert!(matches!(refused, Err(StoreError::MoveIntoItself(_))), "{refused:?}");
    }
    assert!(matches!(f.store.move_items(f.alice, &ids, None, Some(&name("x"))), Err(StoreError::Invalid(_))));
    Ok(())
}

#[test]
fn changes_are_current_state_in_modseq_order_with_tombstones_and_pages() -> TestResult {
    let f = fixture();
    let a = put(&f.store, f.alice, "/content", "a.mp3", b"a");
    let b = put(&f.store, f.alice, "/content", "b.mp3", b"b");
    let music = f.store.create_folder(f.alice, &path("/music"), false)?;
    f.store.move_items(f.alice, std::slice::from_ref(&a.id), Some(&music.id), None)?;
    f.store.move_items(f.alice, std::slice::from_ref(&a.id), None, Some(&name("renamed.mp3")))?;
    f.store.delete(f.alice, &b.id, false, None)?;

    let all = f.store.changes(f.alice, 0, 100)?;
    assert!(!all.has_more);
    let modseqs: Vec<i64> = all.rows.iter().map(ChangedRow::modseq).collect();
    assert!(modseqs.windows(2).all(|pair| pair[0] < pair[1]), "{modseqs:?}");
    assert_eq!(all.cursor, *modseqs.last().expect("rows"));
    // a.mp3 appears once, in its current state: renamed, in /music.
    let a_rows: Vec<_> =
        all.rows.iter().filter(|row| matches!(row, ChangedRow::Live(item) if item.id() == a.id)).collect();
    assert_eq!(a_rows.len(), 1);
    let ChangedRow::Live(Item::Object(a_now)) = a_rows[0] else { panic!() };
    assert_eq!((a_now.name.as_str(), a_now.folder_id.as_str()), ("renamed.mp3", music.id.as_str()));
    assert!(
        all.rows.iter().any(|row| matches!(row, ChangedRow::Deleted { id, kind: EntryKind::File, .. } if *id == b.id))
    );

    // Paged, the same rows come in the same order.
    let mut paged = Vec::new();
    let mut since = 0;
    loop {
        let page = f.store.changes(f.alice, since, 2)?;
        paged.extend(page.rows.iter().map(ChangedRow::modseq));
        since = page.cursor;
        if !page.has_more {
            break;
        }
    }
    assert_eq!(paged, modseqs);
    assert!(f.store.changes(f.alice, since, 10)?.rows.is_empty());
    assert!(matches!(f.store.changes(f.alice, since + 1, 10), Err(StoreError::ResyncRequired { .. })));
    assert!(matches!(f.store.changes(f.alice, -1, 10), Err(StoreError::Invalid(_))));
    Ok(())
}

#[test]
fn folder_delete_needs_recursive_and_tombstones_contents_first() -> TestResult {
    let f = fixture();
    put(&f.store, f.alice, "/old stuff/deep", "x.txt", b"x");
    let old = f.store.resolve(f.alice, &path("/old stuff"))?;
    assert!(matches!(f.store.delete(f.alice, old.id(), false, None), Err(StoreError::NotEmpty(_))));
    let since = f.store.changes(f.alice, 0, 100)?.cursor;
    f.store.delete(f.alice, old.id(), true, None)?;
    let kinds: Vec<EntryKind> = f
        .store
        .changes(f.alice, since, 100)?
        .rows
        .iter()
        .map(|row| match row {
            ChangedRow::Deleted { kind, .. } => *kind,
            ChangedRow::Live(item) => panic!("unexpected live row {item:?}"),
        })
        .collect();
    assert_eq!(kinds, [EntryKind::File, EntryKind::Folder, EntryKind::Folder]);
    assert!(matches!(f.store.resolve(f.alice, &path("/old stuff")), Err(StoreError::NotFound(_))));
    let root = f.store.resolve(f.alice, &StorePath::root())?;
    assert!(matches!(f.store.delete(f.alice, root.id(), true, None), Err(StoreError::Invalid(_))));
    Ok(())
}

#[test]
fn cursors_older_than_the_tombstone_window_must_resync() -> TestResult {
    let f = fixture_with(StoreSettings { tombstone_retention: Duration::from_secs(3600), ..StoreSettings::default() });
    let doomed = put(&f.store, f.alice, "/", "doomed.txt", b"bye");
    let early = f.store.changes(f.alice, 0, 100)?.cursor;
    f.store.delete(f.alice, &doomed.id, false, None)?;
    put(&f.store, f.alice, "/", "kept.txt", b"kept");
    f.clock.advance(SignedDuration::from_hours(2));
    let report = f.store.collect_garbage()?;
    assert_eq!(report.tombstones_purged, 1);
    let refused = f.store.changes(f.alice, early, 100);
    assert!(matches!(refused, Err(StoreError::ResyncRequired { .. })), "{refused:?}");
    // A fresh device (cursor 0) needs no tombstones and is always served.
    let full = f.store.changes(f.alice, 0, 100)?;
    assert!(full.rows.iter().all(|row| matches!(row, ChangedRow::Live(_))));
    Ok(())
}

/// A clock that went back dates a folder's deletion before that of what was in it: collecting
/// tombstones must not drop the folder while a tombstone still names it (it once failed on a
/// foreign key and collected nothing, ever again).
#[test]
fn tombstones_are_collected_whatever_order_the_clock_gave_them() -> TestResult {
    let f = fixture_with(StoreSettings { tombstone_retention: Duration::from_secs(3600), ..StoreSettings::default() });
    f.store.create_folder(f.alice, &path("/old/deeper"), true)?;
    let song = put(&f.store, f.alice, "/old/deeper", "song.mp3", b"la");
    f.store.delete(f.alice, &song.id, false, None)?;
    f.clock.advance(SignedDuration::from_hours(-2));
    let old = f.store.resolve(f.alice, &path("/old"))?;
    f.store.delete(f.alice, old.id(), true, None)?;
    // The folders' tombstones are past the window, the song's is not: the folders stay.
    f.clock.advance(SignedDuration::from_mins(150));
    assert_eq!(f.store.collect_garbage()?.tombstones_purged, 0);
    f.clock.advance(SignedDuration::from_hours(1));
    let report = f.store.collect_garbage()?;
    assert_eq!(report.tombstones_purged, 3, "{report:?}");
    assert!(f.store.changes(f.alice, 0, 100)?.rows.is_empty());
    Ok(())
}

/// A store written before names were kept in NFC: opening it renames every name to NFC, and
/// one that then equals its sibling's takes a free name beside it; devices see both renames.
#[test]
fn names_written_before_nfc_are_normalized_when_the_store_opens() -> TestResult {
    let f = fixture();
    let composed = put(&f.store, f.alice, "/docs", "café.txt", b"composed");
    let decomposed = put(&f.store, f.alice, "/docs", "other.txt", b"decomposed");
    let folder = f.store.create_folder(f.alice, &path("/docs/fold"), false)?;
    let cursor = f.store.changes(f.alice, 0, 100)?.cursor;
    let db = f._dir.path().join("cpm.db");
    {
        let raw = rusqlite::Connection::open(&db)?;
        raw.execute("UPDATE objects SET name = ?1 WHERE id = ?2", rusqlite::params!["cafe\u{301}.txt", decomposed.id])?;
        raw.execute("UPDATE folders SET name = ?1 WHERE id = ?2", rusqlite::params!["Pe\u{301}pe\u{301}", folder.id])?;
        raw.execute_batch("DROP TABLE moved_away; PRAGMA user_version = 4;")?;
    }
    let Fixture { _dir: dir, store, clock, alice } = f;
    drop(store);
    let store = SqliteStore::open(dir.path(), clock, StoreSettings::default())?;
    let name_of = |id: &str| store.item(alice, id).map(|item| item.name().to_owned());
    assert_eq!(name_of(&composed.id)?, "café.txt");
    assert_eq!(name_of(&decomposed.id)?, "café (2).txt");
    assert_eq!(name_of(&folder.id)?, "Pépé");
    let renamed = store.changes(alice, cursor, 100)?.rows.len();
    assert_eq!(renamed, 2, "both renames are in the journal");
    Ok(())
}

#[test]
fn blobs_are_verified_deduplicated_per_user_and_collected() -> TestResult {
    let f = fixture_with(StoreSettings { blob_grace: Duration::from_secs(60), ..StoreSettings::default() });
    let bob = f.store.create_user("bob", "x")?;
    let runtime = tokio::runtime::Builder::new_current_thread().build()?;
    let tmp = f._dir.path().join("tmp");
    // Wrong hash, and wrong length: refused, nothing left behind.
    for (declared_hash, declared_len) in
        [("0".repeat(64), Some(5)), (blake3::hash(b"hello").to_hex().to_string(), Some(4))]
    {
        let refused = runtime.block_on(async {
            let mut writer = f.store.blobs().writer(1024).await?;
            writer.write(b"hello").await?;
            writer.finish(&declared_hash, declared_len).await
        });
        assert!(matches!(refused, Err(StoreError::HashMismatch(_))), "{refused:?}");
    }
    let too_large = runtime.block_on(async {
        let mut writer = f.store.blobs().writer(3).await?;
        writer.write(b"hello").await
    });
    assert!(matches!(too_large, Err(StoreError::TooLarge(_))));
    assert_eq!(std::fs::read_dir(&tmp)?.count(), 0, "partial uploads are removed");

    let object = put(&f.store, f.alice, "/", "shared.txt", b"same bytes");
    assert!(f.store.has_blob(f.alice, &object.hash)?);
    assert!(!f.store.has_blob(bob, &object.hash)?, "another user's content is invisible");

    f.store.delete(f.alice, &object.id, false, None)?;
    f.clock.advance(SignedDuration::from_mins(2));
    upload(&f.store, bob, b"same bytes");
    assert!(f.store.has_blob(bob, &object.hash)?);
    let report = f.store.collect_garbage()?;
    assert_eq!(report.blobs_removed, 0, "bob's upload still names the content");
    assert!(f.store.blob_path(&object.hash).is_file());
    f.clock.advance(SignedDuration::from_mins(2));
    let report = f.store.collect_garbage()?;
    assert_eq!((report.blobs_removed, report.bytes_freed), (1, 10));
    assert!(!f.store.blob_path(&object.hash).exists());
    Ok(())
}

#[test]
fn one_users_ids_are_unreachable_for_another() -> TestResult {
    let f = fixture();
    let bob = f.store.create_user("bob", "x")?;
    let secret_file = put(&f.store, f.alice, "/private", "diary.txt", b"dear diary");
    let bob_folder = f.store.create_folder(bob, &path("/inbox"), false)?;
    assert!(matches!(f.store.item(bob, &secret_file.id), Err(StoreError::NotFound(_))));
    assert!(matches!(f.store.item(bob, &secret_file.folder_id), Err(StoreError::NotFound(_))));
    assert!(matches!(f.store.delete(bob, &secret_file.id, false, None), Err(StoreError::NotFound(_))));
    assert!(matches!(
        f.store.move_items(bob, std::slice::from_ref(&secret_file.id), Some(&bob_folder.id), None),
        Err(StoreError::NotFound(_))
    ));
    assert!(matches!(
        f.store.move_items(f.alice, std::slice::from_ref(&secret_file.id), Some(&bob_folder.id), None),
        Err(StoreError::NotFound(_))
    ));
    assert!(f.store.changes(bob, 0, 100)?.rows.iter().all(|row| match row {
        ChangedRow::Live(item) => item.id() != secret_file.id,
        ChangedRow::Deleted { id, .. } => *id != secret_file.id,
    }));
    Ok(())
}

#[test]
fn changes_based_on_a_stale_version_are_refused() -> TestResult {
    let f = fixture();
    let song = put(&f.store, f.alice, "/content", "song.mp3", b"v1");
    let stale = song.modseq;
    f.store.set_flags(f.alice, &song.id, &["seen".to_owned()])?;
    let replace = NewObject {
        folder_id: song.folder_id.clone(),
        name: name("song.mp3"),
        kind: ObjectKind::File,
        hash: upload(&f.store, f.alice, b"v2"),
        content_type: "audio/mpeg".into(),
        message: None,
        modified: None,
        replace: true,
        base_modseq: Some(stale),
        quota_bytes: None,
    };
    assert!(matches!(f.store.create_object(f.alice, replace.clone()), Err(StoreError::Conflict(_))));
    assert!(matches!(f.store.delete(f.alice, &song.id, false, Some(stale)), Err(StoreError::Conflict(_))));
    let current = match f.store.item(f.alice, &song.id)? {
        Item::Object(object) => object.modseq,
        Item::Folder(_) => panic!("an object"),
    };
    let replaced = f.store.create_object(f.alice, NewObject { base_modseq: Some(current), ..replace })?;
    assert_eq!(replaced.id, song.id);
    f.store.delete(f.alice, &song.id, false, Some(replaced.modseq))?;
    Ok(())
}

#[test]
fn the_bytes_used_follow_every_change_and_a_quota_refuses_what_would_pass_it() -> TestResult {
    let f = fixture();
    let song = put(&f.store, f.alice, "/content", "song.mp3", &[7u8; 1000]);
    put(&f.store, f.alice, "/content", "photo.jpg", &[8u8; 500]);
    assert_eq!(f.store.bytes_used(f.alice)?, 1500);
    let bigger = NewObject {
        folder_id: song.folder_id.clone(),
        name: name("song.mp3"),
        kind: ObjectKind::File,
        hash: upload(&f.store, f.alice, &[9u8; 1200]),
        content_type: "audio/mpeg".into(),
        message: None,
        modified: None,
        replace: true,
        base_modseq: None,
        quota_bytes: Some(1600),
    };
    let refused = f.store.create_object(f.alice, bigger.clone());
    let Err(StoreError::QuotaExceeded(message)) = refused else { panic!("over quota: {refused:?}") };
    assert!(message.contains("/content/song.mp3") && message.contains("1600"), "{message}");
    assert_eq!(f.store.bytes_used(f.alice)?, 1500, "a refused object changes nothing");
    assert_eq!(listing(&f.store, f.alice, "/content"), ["photo.jpg", "song.mp3"]);
    f.store.create_object(f.alice, NewObject { quota_bytes: Some(1700), ..bigger })?;
    assert_eq!(f.store.bytes_used(f.alice)?, 1700, "a new version replaces the old size");
    f.store.delete(f.alice, &song.id, false, None)?;
    assert_eq!(f.store.bytes_used(f.alice)?, 500);
    let Item::Folder(content) = f.store.resolve(f.alice, &path("/content"))? else { panic!("a folder") };
    f.store.delete(f.alice, &content.id, true, None)?;
    assert_eq!(f.store.bytes_used(f.alice)?, 0, "a recursive delete frees everything below");
    Ok(())
}

#[test]
fn timers_are_kept_per_device_and_settled() -> TestResult {
    use cpm_core::schedule::Timer;
    let f = fixture();
    let pc = f.store.register_device(f.alice, &name("pc"), "pc", Some("Europe/Paris"), "token-pc")?;
    let phone = f.store.register_device(f.alice, &name("phone"), "phone", None, "token-phone")?;
    let timers = f.store.device_timers()?;
    assert_eq!(timers.len(), 2);
    assert!(timers.iter().all(|device| device.timer.is_none() && device.user == f.alice));
    let fired = Timer {
        schedule: "daily 24:00 (Europe/Paris)".into(),
        fired_through: Timestamp::from_second(1_800_000_000)?,
        owed: true,
    };
    f.store.save_timers(&[(pc.id.clone(), fired.clone())])?;
    let read = |id: &str| -> Option<Timer> {
        f.store.device_timers().ok()?.into_iter().find(|device| device.device_id == id)?.timer
    };
    assert_eq!(read(&pc.id), Some(fired.clone()));
    assert_eq!(read(&phone.id), None);
    f.store.settle_timer(&pc.id)?;
    assert_eq!(read(&pc.id), Some(Timer { owed: false, ..fired }));
    f.store.revoke_device(f.alice, "pc")?;
    assert!(f.store.device_timers()?.iter().all(|device| device.device_id != pc.id), "revoked devices have no timers");
    Ok(())
}
