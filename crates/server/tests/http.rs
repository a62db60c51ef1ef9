//! The HTTP API against a real server on a random loopback port, with a real SQLite store and
//! blob directory in a temp dir, driven by the typed client and by raw requests.

use cpm_client::{Client, ClientError};
use cpm_core::{EntryKind, ManualClock, ObjectKind};
use cpm_proto::{ChangesPage, CreateObjectRequest, Entry, MoveRequest, RegisterDeviceRequest};
use cpm_server::{Server, ServerConfig};
use cpm_store::{SqliteStore, Store, secret};
use jiff::{SignedDuration, Timestamp};
use reqwest::StatusCode;
use serde_json::Value;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::io::AsyncWriteExt;

type TestResult = Result<(), Box<dyn std::error::Error>>;

struct TestServer {
    dir: tempfile::TempDir,
    url: String,
    clock: Arc<ManualClock>,
    _stop: tokio::sync::oneshot::Sender<()>,
}

impl TestServer {
    async fn start() -> Self {
        Self::start_with(ServerConfig::default()).await
    }

    async fn start_with(mut config: ServerConfig) -> Self {
        let dir = tempfile::tempdir().expect("temp dir");
        config.listen = "127.0.0.1:0".parse().expect("address");
        let clock = Arc::new(ManualClock::new(Timestamp::now()));
        let server = Server::bind(dir.path(), config, clock.clone()).await.expect("binds");
        let url = format!("http://{}", server.local_addr().expect("address"));
        let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
        tokio::spawn(server.run(async move {
            let _ = stopped.await;
        }));
        for user in ["alice", "bob"] {
            let store = SqliteStore::open(dir.path(), clock.clone(), Default::default()).expect("store");
            store.create_user(user, &secret::hash_password("pw").expect("hash")).expect("user");
        }
        Self { dir, url, clock, _stop: stop }
    }

    async fn device(&self, user: &str, name: &str) -> Client {
        Client::new(&self.url, Some(self.device_token(user, name).await)).expect("client")
    }

    async fn device_token(&self, user: &str, name: &str) -> String {
        let anonymous = Client::new(&self.url, None).expect("client");
        let request = RegisterDeviceRequest {
            user: user.into(),
            password: "pw".into(),
            name: name.into(),
            class: "pda".into(),
            time_zone: Some("Europe/Paris".into()),
            replaces: None,
        };
        anonymous.register_device(&request).await.expect("registers").token
    }

    fn data(&self) -> &Path {
        self.dir.path()
    }
}

fn file(dir: &Path, name: &str, bytes: &[u8]) -> PathBuf {
    let path = dir.join(name);
    std::fs::write(&path, bytes).expect("write");
    path
}

async fn put(client: &Client, folder: &str, name: &str, bytes: &[u8]) -> Entry {
    let scratch = tempfile::tempdir().expect("temp dir");
    let uploaded = client.upload_file(&file(scratch.path(), name, bytes)).await.expect("uploads");
    let folder = client.create_folder(folder, true).await.expect("folder");
    client
        .create_object(&CreateObjectRequest {
            folder_id: folder.id,
            name: name.into(),
            kind: ObjectKind::File,
            hash: uploaded.hash,
            content_type: Some("audio/mpeg".into()),
            replace: false,
            base_modseq: None,
            modified: None,
            unless_held: false,
        })
        .await
        .expect("creates")
}

fn api_error(result: Result<impl std::fmt::Debug, ClientError>) -> (u16, String, String) {
    match result {
        Err(ClientError::Api { status, code, message }) => (status, code, message),
        other => panic!("expected an API error, got {other:?}"),
    }
}

async fn cursor(client: &Client) -> i64 {
    client.changes(0, 10_000).await.expect("changes").cursor
}

#[tokio::test]
async fn health_openapi_and_metrics() -> TestResult {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    let health: Value = http.get(format!("{}/health", server.url)).send().await?.json().await?;
    assert_eq!(health["status"], "ok");
    let doc: Value = http.get(format!("{}/v1/openapi.json", server.url)).send().await?.json().await?;
    for path in ["/v1/changes", "/v1/move", "/v1/blobs/{hash}", "/v1/objects/{id}/content", "/v1/folders/{id}/children"]
    {
        assert!(doc["paths"][path].is_object(), "{path} is described");
    }
    assert!(doc["components"]["schemas"]["Entry"].is_object());
    let metrics = http.get(format!("{}/metrics", server.url)).send().await?.text().await?;
    assert!(
        metrics.contains("cpm_http_requests_total{method=\"GET\",route=\"/health\",status=\"200\"} 1"),
        "{metrics}"
    );
    Ok(())
}

#[tokio::test]
async fn tokens_are_required_checked_and_revocable() -> TestResult {
    let server = TestServer::start().await;
    let http = reqwest::Client::new();
    for auth in [None, Some("Bearer nope"), Some("Basic YWxpY2U6cHc=")] {
        let mut request = http.get(format!("{}/v1/changes", server.url));
        if let Some(auth) = auth {
            request = request.header("authorization", auth);
        }
        let response = request.send().await?;
        assert_eq!(response.status(), StatusCode::UNAUTHORIZED);
        let body: Value = response.json().await?;
        assert_eq!(body["code"], "unauthorized");
    }
    let anonymous = Client::new(&server.url, None)?;
    let wrong = anonymous.login("alice", "wrong").await;
    assert_eq!(api_error(wrong).1, "bad_credentials");
    assert_eq!(api_error(anonymous.login("nobody", "pw").await).1, "bad_credentials");
    let session = Client::new(&server.url, Some(anonymous.login("alice", "pw").await?.token))?;

    let phone = server.device("alice", "phone").await;
    phone.resolve("/").await?;
    let bad_zone = RegisterDeviceRequest {
        user: "alice".into(),
        password: "pw".into(),
        name: "pc".into(),
        class: "pc".into(),
        time_zone: Some("Mars/Olympus".into()),
        replaces: None,
    };
    assert_eq!(api_error(anonymous.register_device(&bad_zone).await).0, 400);
    let bad_class = RegisterDeviceRequest { class: "toaster".into(), time_zone: None, ..bad_zone };
    assert_eq!(api_error(anonymous.register_device(&bad_class).await).0, 400);

    let devices = session.devices().await?;
    assert_eq!(devices.len(), 1);
    assert!(devices[0].last_seen.is_some());
    session.revoke_device("phone").await?;
    assert_eq!(api_error(phone.resolve("/").await).0, 401);
    assert_eq!(api_error(session.revoke_device("phone").await).0, 404);
    Ok(())
}

#[tokio::test]
async fn one_user_cannot_reach_anothers_entries_links_or_content() -> TestResult {
    let server = TestServer::start().await;
    let alice = server.device("alice", "pda").await;
    let bob = server.device("bob", "pda").await;
    let song = put(&alice, "/content", "song.mp3", b"alice's song").await;
    let folder = alice.resolve("/content").await?;
    let http = reqwest::Client::new();
    let bob_token = {
        let anonymous = Client::new(&server.url, None)?;
        anonymous.login("bob", "pw").await?.token
    };
    let link = song.link.clone().expect("link");
    let response = http.get(&link).bearer_auth(&bob_token).send().await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(api_error(bob.entry(&song.id).await).0, 404);
    assert_eq!(api_error(bob.list_page(&folder.id, None, 10).await).0, 404);
    assert_eq!(api_error(bob.delete_object(&song.id).await).0, 404);
    assert_eq!(api_error(bob.delete_folder(&folder.id, true).await).0, 404);
    let bobs = bob.create_folder("/mine", false).await?;
    let steal = MoveRequest { ids: vec![song.id.clone()], to: Some(bobs.id.clone()), name: None, revive: false };
    assert_eq!(api_error(bob.move_entries(&steal).await).0, 404);
    let push = MoveRequest { ids: vec![song.id.clone()], to: Some(bobs.id), name: None, revive: false };
    assert_eq!(api_error(alice.move_entries(&push).await).0, 404);
    // Bob cannot learn that alice stores this content, nor name it in an object of his own.
    let hash = song.hash.clone().expect("hash");
    assert!(!bob.has_blob(&hash).await?);
    let claim = CreateObjectRequest {
        folder_id: bob.resolve("/mine").await?.id,
        name: "song.mp3".into(),
        kind: ObjectKind::File,
        hash,
        content_type: None,
        replace: false,
        base_modseq: None,
        modified: None,
        unless_held: false,
    };
    assert_eq!(api_error(bob.create_object(&claim).await).1, "blob_missing");
    assert_eq!(alice.entry(&song.id).await?.path.as_deref(), Some("/content/song.mp3"));
    Ok(())
}

#[tokio::test]
async fn bad_names_and_bodies_are_refused_and_change_nothing() -> TestResult {
    let server = TestServer::start().await;
    let alice = server.device("alice", "pda").await;
    let song = put(&alice, "/content", "song.mp3", b"song").await;
    let long = "x".repeat(256);
    for bad in ["a/b", "a\0b", "tab\there", ".", "..", "", long.as_str()] {
        let rename = MoveRequest { ids: vec![song.id.clone()], to: None, name: Some(bad.into()), revive: false };
        let (status, code, _) = api_error(alice.move_entries(&rename).await);
        assert_eq!((status, code.as_str()), (400, "invalid_name"), "{bad:?}");
    }
    for bad in ["a\0b", "tab\there", ".", "..", long.as_str()] {
        let (status, code, _) = api_error(alice.create_folder(&format!("/content/{bad}"), true).await);
        assert_eq!((status, code.as_str()), (400, "invalid_name"), "{bad:?}");
    }
    // The store keeps names in NFC: `café` with a combining accent is the same name.
    let cafe = put(&alice, "/content", "café.mp3", b"composed").await;
    assert_eq!(cafe.name, "café.mp3");
    let decomposed = CreateObjectRequest {
        folder_id: cafe.parent_id.clone().unwrap_or_default(),
        name: "cafe\u{301}.mp3".into(),
        kind: ObjectKind::File,
        hash: cafe.hash.clone().unwrap_or_default(),
        content_type: None,
        replace: false,
        base_modseq: None,
        modified: None,
        unless_held: false,
    };
    assert_eq!(api_error(alice.create_object(&decomposed).await).1, "already_exists");
    let before = cursor(&alice).await;
    let http = reqwest::Client::new();
    let token = Client::new(&server.url, None)?.login("alice", "pw").await?.token;
    for (path, body) in [("/v1/folders", "{not json"), ("/v1/move", "{\"ids\": 5}"), ("/v1/objects", "{}")] {
        let response = http
            .post(format!("{}{path}", server.url))
            .bearer_auth(&token)
            .header("content-type", "application/json")
            .body(body)
            .send()
            .await?;
        assert!(response.status().is_client_error(), "{path}: {}", response.status());
        let error: Value = response.json().await?;
        assert!(error["code"].is_string() && error["message"].is_string(), "{path}: {error}");
    }
    let response = http.get(format!("{}/v1/changes?since=abc", server.url)).bearer_auth(&token).send().await?;
    assert_eq!(response.status(), StatusCode::BAD_REQUEST);
    let response = http.get(format!("{}/v1/nowhere", server.url)).send().await?;
    assert_eq!(response.status(), StatusCode::NOT_FOUND);
    assert_eq!(response.json::<Value>().await?["code"], "not_found");
    assert_eq!(cursor(&alice).await, before, "refused requests changed nothing");
    Ok(())
}

/// Input built to exhaust the stack (a filter of 50,000 `not`s, JSON 50,000 levels deep) is
/// refused with a clear error, and the server goes on serving.
#[tokio::test]
async fn deeply_nested_filters_and_bodies_are_refused_and_the_server_lives() -> TestResult {
    let server = TestServer::start().await;
    let token = server.device_token("alice", "phone").await;
    let phone = Client::new(&server.url, Some(token.clone()))?;
    let before = phone.profile().await?;
    for filter in [format!("{}kind = file", "not ".repeat(50_000)), format!("{}kind = file", "not ".repeat(65))] {
        let mut preferences = serde_json::Map::new();
        preferences.insert("mode".into(), "partial".into());
        preferences.insert("filter".into(), filter.into());
        let (status, _, message) = api_error(phone.set_profile(&preferences).await);
        assert_eq!(status, 400, "{message}");
        assert!(message.contains("column"), "{message}");
    }
    let deep = format!("{{\"filter\": {}1{}}}", "[".repeat(50_000), "]".repeat(50_000));
    let response = reqwest::Client::new()
        .put(format!("{}/v1/profile", server.url))
        .bearer_auth(&token)
        .header("content-type", "application/json")
        .body(deep)
        .send()
        .await?;
    assert!(response.status().is_client_error(), "{}", response.status());
    assert!(response.json::<Value>().await?["message"].is_string());
    assert_eq!(phone.profile().await?.revision, before.revision, "nothing changed");
    Ok(())
}

#[tokio::test]
async fn moves_are_checked_atomic_and_keep_links() -> TestResult {
    let server = TestServer::start().await;
    let alice = server.device("alice", "pda").await;
    let a = put(&alice, "/content", "a.mp3", b"a").await;
    let b = put(&alice, "/content", "b.mp3", b"b").await;
    let target = alice.create_folder("/content/favourite song", false).await?;
    put(&alice, "/content/favourite song", "b.mp3", b"other b").await;
    let before = cursor(&alice).await;
    let both =
        MoveRequest { ids: vec![a.id.clone(), b.id.clone()], to: Some(target.id.clone()), name: None, revive: false };
    let (status, code, message) = api_error(alice.move_entries(&both).await);
    assert_eq!((status, code.as_str()), (409, "already_exists"));
    assert!(message.contains("/content/favourite song/b.mp3"), "{message}");
    assert_eq!(cursor(&alice).await, before);
    assert_eq!(alice.entry(&a.id).await?.path.as_deref(), Some("/content/a.mp3"), "nothing moved");

    let content = alice.resolve("/content").await?;
    let into_itself =
        MoveRequest { ids: vec![content.id.clone()], to: Some(target.id.clone()), name: None, revive: false };
    assert_eq!(api_error(alice.move_entries(&into_itself).await).1, "move_into_itself");

    let one = MoveRequest { ids: vec![a.id.clone()], to: Some(target.id.clone()), name: None, revive: false };
    let moved = alice.move_entries(&one).await?;
    assert_eq!(moved.entries[0].path.as_deref(), Some("/content/favourite song/a.mp3"));
    assert_eq!(moved.entries[0].link, a.link, "links name the object, not its path");
    let http = reqwest::Client::new();
    let token = Client::new(&server.url, None)?.login("alice", "pw").await?.token;
    let fetched = http.get(a.link.clone().expect("link")).bearer_auth(&token).send().await?.bytes().await?;
    assert_eq!(&fetched[..], b"a");

    alice.delete_object(&a.id).await?;
    let gone = http.get(a.link.clone().expect("link")).bearer_auth(&token).send().await?;
    assert_eq!(gone.status(), StatusCode::NOT_FOUND);
    Ok(())
}

#[tokio::test]
async fn downloads_honour_range_and_etag() -> TestResult {
    let server = TestServer::start().await;
    let alice = server.device("alice", "pda").await;
    let bytes: Vec<u8> = (0..=255u8).cycle().take(100_000).collect();
    let song = put(&alice, "/content", "song.mp3", &bytes).await;
    let token = Client::new(&server.url, None)?.login("alice", "pw").await?.token;
    let http = reqwest::Client::new();
    let link = song.link.clone().expect("link");
    let full = http.get(&link).bearer_auth(&token).send().await?;
    assert_eq!(full.status(), StatusCode::OK);
    let etag = full.headers()["etag"].to_str()?.to_owned();
    assert_eq!(etag, format!("\"{}\"", song.hash.clone().expect("hash")));
    assert_eq!(full.bytes().await?.len(), 100_000);

    let part = http.get(&link).bearer_auth(&token).header("range", "bytes=1000-1999").send().await?;
    assert_eq!(part.status(), StatusCode::PARTIAL_CONTENT);
    assert_eq!(part.headers()["content-range"], "bytes 1000-1999/100000");
    assert_eq!(&part.bytes().await?[..], &bytes[1000..2000]);
    let past = http.get(&link).bearer_auth(&token).header("range", "bytes=200000-").send().await?;
    assert_eq!(past.status(), StatusCode::RANGE_NOT_SATISFIABLE);
    let cached = http.get(&link).bearer_auth(&token).header("if-none-match", &etag).send().await?;
    assert_eq!(cached.status(), StatusCode::NOT_MODIFIED);

    let scratch = tempfile::tempdir()?;
    let dest = scratch.path().join("song.mp3");
    assert_eq!(alice.download(&song, &dest).await?, 100_000);
    assert_eq!(std::fs::read(&dest)?, bytes);
    Ok(())
}

#[tokio::test]
async fn uploads_are_verified_deduplicated_bounded_and_leave_nothing_when_cut_off() -> TestResult {
    let config = ServerConfig { max_object_bytes: 1000, ..ServerConfig::default() };
    let server = TestServer::start_with(config).await;
    let alice = server.device("alice", "pda").await;
    let token = Client::new(&server.url, None)?.login("alice", "pw").await?.token;
    let http = reqwest::Client::new();
    let hash_of = |bytes: &[u8]| blake3::hash(bytes).to_hex().to_string();
    let before = cursor(&alice).await;

    let wrong = http
        .put(format!("{}/v1/blobs/{}", server.url, hash_of(b"declared")))
        .bearer_auth(&token)
        .body("actual")
        .send()
        .await?;
    assert_eq!(wrong.status(), StatusCode::BAD_REQUEST);
    assert_eq!(wrong.json::<Value>().await?["code"], "hash_mismatch");
    let huge = vec![7u8; 2000];
    let too_big =
        http.put(format!("{}/v1/blobs/{}", server.url, hash_of(&huge))).bearer_auth(&token).body(huge).send().await?;
    assert_eq!(too_big.status(), StatusCode::PAYLOAD_TOO_LARGE);
    let bad_hash = http.put(format!("{}/v1/blobs/XYZ", server.url)).bearer_auth(&token).body("x").send().await?;
    assert_eq!(bad_hash.status(), StatusCode::BAD_REQUEST);

    // Cut off half-way: the connection closes after 50 of 100 declared bytes.
    let half = vec![1u8; 100];
    let mut stream = tokio::net::TcpStream::connect(server.url.trim_start_matches("http://")).await?;
    let head = format!(
        "PUT /v1/blobs/{} HTTP/1.1\r\nhost: x\r\nauthorization: Bearer {token}\r\ncontent-length: 100\r\n\r\n",
        hash_of(&half)
    );
    stream.write_all(head.as_bytes()).await?;
    stream.write_all(&half[..50]).await?;
    stream.shutdown().await?;
    drop(stream);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert!(!alice.has_blob(&hash_of(&half)).await?);
    assert_eq!(std::fs::read_dir(server.data().join("tmp"))?.count(), 0, "no partial file is left");
    assert_eq!(cursor(&alice).await, before);

    let scratch = tempfile::tempdir()?;
    let path = file(scratch.path(), "a.txt", b"same content");
    let received = || async {
        let metrics = http.get(format!("{}/metrics", server.url)).send().await?.text().await?;
        let line =
            metrics.lines().find(|line| line.starts_with("cpm_upload_bytes_total ")).unwrap_or_default().to_owned();
        Ok::<_, reqwest::Error>(line.rsplit(' ').next().and_then(|n| n.parse::<u64>().ok()).unwrap_or_default())
    };
    let start = received().await?;
    assert!(alice.upload_file(&path).await?.sent);
    assert_eq!(received().await? - start, 12);
    assert!(!alice.upload_file(&path).await?.sent, "known content is not sent again");
    assert_eq!(received().await? - start, 12, "no byte of known content crosses the wire");
    Ok(())
}

#[tokio::test]
async fn messages_are_parsed_and_non_messages_refused() -> TestResult {
    let server = TestServer::start().await;
    let alice = server.device("alice", "pda").await;
    let scratch = tempfile::tempdir()?;
    let inbox = alice.create_folder("/inbox", false).await?;
    let message = "From: Bob <bob@example.com>\r\nTo: alice@example.com\r\nSubject: Lunch\r\n\
Date: Wed, 25 Nov 2026 12:00:00 +0000\r\nMessage-ID: <m1@example.com>\r\nConversation-ID: c1\r\n\r\nNoon?\r\n";
    let uploaded = alice.upload_file(&file(scratch.path(), "m.eml", message.as_bytes())).await?;
    let request = CreateObjectRequest {
        folder_id: inbox.id.clone(),
        name: "lunch.eml".into(),
        kind: ObjectKind::Message,
        hash: uploaded.hash,
        content_type: None,
        replace: false,
        base_modseq: None,
        modified: None,
        unless_held: false,
    };
    let entry = alice.create_object(&request).await?;
    assert_eq!(entry.kind, EntryKind::Message);
    assert_eq!(entry.subject.as_deref(), Some("Lunch"));
    assert_eq!(entry.from.as_deref(), Some("Bob <bob@example.com>"));
    assert_eq!(entry.conversation_id.as_deref(), Some("c1"));
    assert_eq!(entry.message_id.as_deref(), Some("m1@example.com"));

    let junk = alice.upload_file(&file(scratch.path(), "junk.bin", &[0xff, 0x00, 0x13])).await?;
    let refused =
        alice.create_object(&CreateObjectRequest { name: "junk.eml".into(), hash: junk.hash, ..request }).await;
    assert_eq!(api_error(refused).0, 400);
    Ok(())
}

#[tokio::test]
async fn changes_page_in_order_and_old_cursors_get_410() -> TestResult {
    let config = ServerConfig {
        tombstone_retention: Duration::from_secs(3600),
        gc_interval: Duration::from_millis(50),
        ..ServerConfig::default()
    };
    let server = TestServer::start_with(config).await;
    let alice = server.device("alice", "pda").await;
    let mut created = Vec::new();
    for i in 0..7 {
        created.push(put(&alice, "/content", &format!("s{i}.mp3"), format!("song {i}").as_bytes()).await);
    }
    let mut seen = Vec::new();
    let mut since = 0;
    loop {
        let page: ChangesPage = alice.changes(since, 3).await?;
        assert!(page.changes.len() <= 3);
        seen.extend(page.changes.iter().map(|change| change.modseq));
        since = page.cursor;
        if !page.has_more {
            break;
        }
    }
    assert!(seen.windows(2).all(|pair| pair[0] < pair[1]));
    assert_eq!(seen.len(), 8, "one folder and seven objects");
    let old_cursor = since;
    alice.delete_object(&created[0].id).await?;
    let tombstone = alice.changes(old_cursor, 10).await?;
    assert!(tombstone.changes[0].deleted && tombstone.changes[0].entry.is_none());

    server.clock.advance(SignedDuration::from_hours(2));
    tokio::time::sleep(Duration::from_millis(300)).await;
    let (status, code, _) = api_error(alice.changes(old_cursor, 10).await);
    assert_eq!((status, code.as_str()), (410, "resync_required"));
    let fresh = alice.changes(0, 100).await?;
    assert!(fresh.changes.iter().all(|change| !change.deleted));
    Ok(())
}

#[tokio::test]
async fn a_partial_device_sees_only_its_records_and_details() -> TestResult {
    use cpm_core::profile::{ContentPolicy, Mode, SyncProfile};
    let server = TestServer::start().await;
    let pda = server.device("alice", "pda").await;
    let phone = server.device("alice", "phone").await;
    let song = put(&pda, "/content", "song.mp3", b"la la").await;
    let photo = {
        let scratch = tempfile::tempdir()?;
        let uploaded = pda.upload_file(&file(scratch.path(), "photo.jpg", b"jpeg")).await?;
        let content = pda.resolve("/content").await?;
        pda.create_object(&CreateObjectRequest {
            folder_id: content.id,
            name: "photo.jpg".into(),
            kind: ObjectKind::File,
            hash: uploaded.hash,
            content_type: Some("image/jpeg".into()),
            replace: false,
            base_modseq: None,
            modified: None,
            unless_held: false,
        })
        .await?
    };
    put(&pda, "/music", "elsewhere.mp3", b"elsewhere").await;

    assert_eq!(phone.profile().await?.revision, 0, "the default profile until one is set");
    let profile = SyncProfile {
        mode: Mode::Partial,
        include: vec!["/content/**".into()],
        filter: Some(r#"type ~ "audio/*""#.into()),
        fields: Some(vec!["name".into(), "size".into(), "content_type".into()]),
        content: ContentPolicy::Stub,
        ..SyncProfile::default()
    };
    let state = phone.set_profile(&preferences(&profile)).await?;
    assert_eq!(state.revision, 1);
    assert!(state.summary.starts_with("partial, stub"), "{}", state.summary);
    let bad = SyncProfile { filter: Some("size < lots".into()), ..profile.clone() };
    assert_eq!(api_error(phone.set_profile(&preferences(&bad)).await).1, "invalid_profile");
    let mut unknown = serde_json::Map::new();
    unknown.insert("colour".into(), "blue".into());
    assert_eq!(api_error(phone.set_profile(&unknown).await).1, "invalid_profile");
    assert_eq!(phone.profile().await?.revision, 1, "a refused profile changes nothing");
    let session = Client::new(&server.url, Some(Client::new(&server.url, None)?.login("alice", "pw").await?.token))?;
    assert_eq!(
        api_error(
            session.sync_changes(&cpm_proto::ChangesQuery { since: 0, limit: Some(100), ..Default::default() }).await
        )
        .1,
        "device_required"
    );

    let view =
        phone.sync_changes(&cpm_proto::ChangesQuery { since: 0, limit: Some(1000), ..Default::default() }).await?;
    let held: Vec<&Entry> = view.changes.iter().filter_map(|change| change.entry.as_ref()).collect();
    let names: Vec<&str> = held.iter().map(|entry| entry.name.as_str()).collect();
    assert!(names.contains(&"song.mp3") && names.contains(&"content"), "{names:?}");
    assert!(
        !names.contains(&"photo.jpg") && !names.contains(&"elsewhere.mp3") && !names.contains(&"music"),
        "{names:?}"
    );
    let song_view = held.iter().find(|entry| entry.id == song.id).expect("song held");
    assert_eq!((song_view.size, song_view.content_type.as_deref()), (Some(5), Some("audio/mpeg")));
    // The hash is always kept: a device tells its own files from new ones by it.
    assert!(song_view.hash.is_some() && song_view.modified.is_none() && song_view.flags.is_none(), "{song_view:?}");
    assert!(song_view.link.is_some() && song_view.parent_id.is_some());
    assert!(view.changes.iter().any(|change| change.id == photo.id && change.deleted), "outside the filter: a removal");

    // Moving /content under /music carries the song out of the subtree: it comes back as a removal.
    let cursor = view.cursor;
    let content = pda.resolve("/content").await?;
    let music = pda.resolve("/music").await?;
    pda.move_entries(&MoveRequest {
        ids: vec![content.id.clone()],
        to: Some(music.id.clone()),
        name: None,
        revive: false,
    })
    .await?;
    let moved =
        phone.sync_changes(&cpm_proto::ChangesQuery { since: cursor, limit: Some(1000), ..Default::default() }).await?;
    assert!(moved.changes.iter().any(|change| change.id == song.id && change.deleted), "{:?}", moved.changes);
    // And moving it back brings the song back, with nothing uploaded or downloaded.
    let root = pda.resolve("/").await?;
    pda.move_entries(&MoveRequest { ids: vec![content.id], to: Some(root.id), name: None, revive: false }).await?;
    let back = phone
        .sync_changes(&cpm_proto::ChangesQuery { since: moved.cursor, limit: Some(1000), ..Default::default() })
        .await?;
    assert!(back.changes.iter().any(|change| change.id == song.id && !change.deleted), "{:?}", back.changes);
    Ok(())
}

/// A whole profile as preferences: every key it sets.
fn preferences(profile: &cpm_core::profile::SyncProfile) -> serde_json::Map<String, serde_json::Value> {
    match serde_json::to_value(profile) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => serde_json::Map::new(),
    }
}

#[tokio::test]
async fn a_quota_refuses_objects_that_would_pass_it_and_stores_nothing_of_them() -> TestResult {
    let config = ServerConfig { quota_bytes: Some(1000), ..ServerConfig::default() };
    let server = TestServer::start_with(config).await;
    let alice = server.device("alice", "pda").await;
    put(&alice, "/content", "a.mp3", &[1u8; 600]).await;
    let before = cursor(&alice).await;
    let scratch = tempfile::tempdir()?;
    let uploaded = alice.upload_file(&file(scratch.path(), "b.mp3", &[2u8; 600])).await?;
    let folder = alice.resolve("/content").await?;
    let over = alice
        .create_object(&CreateObjectRequest {
            folder_id: folder.id,
            name: "b.mp3".into(),
            kind: ObjectKind::File,
            hash: uploaded.hash,
            content_type: None,
            replace: false,
            base_modseq: None,
            modified: None,
            unless_held: false,
        })
        .await;
    let (status, code, message) = api_error(over);
    assert_eq!((status, code.as_str()), (507, "quota_exceeded"));
    assert!(message.contains("/content/b.mp3") && message.contains("quota of 1000 bytes"), "{message}");
    assert_eq!(cursor(&alice).await, before, "nothing was stored");
    // Another user has a quota of their own.
    let bob = server.device("bob", "pda").await;
    put(&bob, "/content", "b.mp3", &[2u8; 600]).await;
    Ok(())
}

#[tokio::test]
async fn many_payloads_come_in_one_answer_in_the_order_asked_and_only_the_owners() -> TestResult {
    let server = TestServer::start().await;
    let alice = server.device("alice", "pda").await;
    let bob = server.device("bob", "pda").await;
    let first = put(&alice, "/content", "a.mp3", b"first payload").await;
    let empty = put(&alice, "/content", "empty.mp3", b"").await;
    let second = put(&alice, "/content/deeper", "b.mp3", &[9u8; 300_000]).await;
    let scratch = tempfile::tempdir()?;
    let targets: Vec<PathBuf> = (0..3).map(|i| scratch.path().join(format!("out{i}"))).collect();
    let items = [(&second, targets[0].as_path()), (&empty, targets[1].as_path()), (&first, targets[2].as_path())];
    assert_eq!(alice.download_bundle(&items).await?, [300_000, 0, 13]);
    assert_eq!(std::fs::read(&targets[0])?, vec![9u8; 300_000]);
    assert_eq!(std::fs::read(&targets[1])?, b"");
    assert_eq!(std::fs::read(&targets[2])?, b"first payload");

    let (status, code, _) = api_error(bob.download_bundle(&[(&first, targets[0].as_path())]).await);
    assert_eq!((status, code.as_str()), (404, "not_found"), "another user's object is not there");
    let http = reqwest::Client::new();
    let token = Client::new(&server.url, None)?.login("alice", "pw").await?.token;
    let too_many: Vec<String> = (0..300).map(|_| first.id.clone()).collect();
    for body in [serde_json::json!({"ids": []}), serde_json::json!({"ids": too_many}), serde_json::json!({"id": 1})] {
        let answer = http.post(format!("{}/v1/contents", server.url)).bearer_auth(&token).json(&body).send().await?;
        assert!(answer.status().is_client_error(), "{body}: {}", answer.status());
        assert!(answer.json::<Value>().await?["message"].is_string());
    }
    let before = cursor(&alice).await;
    alice.download_bundle(&[(&first, targets[2].as_path())]).await?;
    assert_eq!(cursor(&alice).await, before, "asking for payloads changes nothing");
    Ok(())
}

#[tokio::test]
async fn a_device_re_reading_its_view_does_not_store_twice_what_its_view_leaves_out() -> TestResult {
    use cpm_core::profile::{Mode, SyncProfile};
    let server = TestServer::start().await;
    let pc = server.device("alice", "pc").await;
    let phone = server.device("alice", "phone").await;
    let held = put(&pc, "/music", "song.mp3", b"held content").await;
    let profile = SyncProfile { mode: Mode::Partial, include: vec!["/photos/**".into()], ..SyncProfile::default() };
    phone.set_profile(&preferences(&profile)).await?;
    let hash = held.hash.clone().unwrap_or_default();
    let request = |folder_id: String, unless_held: bool| CreateObjectRequest {
        folder_id,
        name: "copy.mp3".into(),
        kind: ObjectKind::File,
        hash: hash.clone(),
        content_type: None,
        replace: false,
        base_modseq: None,
        modified: None,
        unless_held,
    };
    let outside = phone.create_folder("/old", true).await?;
    let before = cursor(&pc).await;
    let (status, code, message) = api_error(phone.create_object(&request(outside.id.clone(), true)).await);
    assert_eq!((status, code.as_str()), (409, "held"), "{message}");
    assert!(message.contains("/old/copy.mp3"), "{message}");
    assert_eq!(cursor(&pc).await, before, "nothing was stored");
    assert!(pc.resolve("/old/copy.mp3").await.is_err());

    // Inside its view, or asked without `unless_held`, it is the user's copy, and stored.
    let inside = phone.create_folder("/photos", true).await?;
    phone.create_object(&request(inside.id, true)).await?;
    phone.create_object(&request(outside.id.clone(), false)).await?;
    // Content no live object holds is stored, whatever the view.
    pc.delete_object(&held.id).await?;
    pc.delete_object(&pc.resolve("/old/copy.mp3").await?.id).await?;
    pc.delete_object(&pc.resolve("/photos/copy.mp3").await?.id).await?;
    phone.create_object(&request(outside.id, true)).await?;
    Ok(())
}

#[tokio::test]
async fn a_device_re_reading_its_view_gets_the_object_its_stale_copy_was_moved_to() -> TestResult {
    let server = TestServer::start().await;
    let pc = server.device("alice", "pc").await;
    let token = server.device_token("alice", "phone").await;
    let song = put(&pc, "/music", "song.mp3", b"moved content").await;
    let archive = pc.create_folder("/archive", true).await?;
    pc.move_entries(&MoveRequest { ids: vec![song.id.clone()], to: Some(archive.id), name: None, revive: false })
        .await?;
    let music = pc.resolve("/music").await?;
    let body = |unless_held: bool| {
        serde_json::json!({"folder_id": music.id, "name": "song.mp3", "kind": "file",
            "hash": song.hash, "unless_held": unless_held})
    };
    let http = reqwest::Client::new();
    let before = cursor(&pc).await;
    let answer = http.post(format!("{}/v1/objects", server.url)).bearer_auth(&token).json(&body(true)).send().await?;
    assert_eq!(answer.status(), StatusCode::OK, "nothing is made");
    let entry: Entry = answer.json().await?;
    assert_eq!((entry.id.as_str(), entry.path.as_deref()), (song.id.as_str(), Some("/archive/song.mp3")));
    assert_eq!(cursor(&pc).await, before, "nothing changed in the store");

    // Asked plainly, it is a new object the user makes at the old place.
    let answer = http.post(format!("{}/v1/objects", server.url)).bearer_auth(&token).json(&body(false)).send().await?;
    assert_eq!(answer.status(), StatusCode::CREATED);
    let copy: Entry = answer.json().await?;
    assert_ne!(copy.id, song.id);
    assert_eq!(copy.path.as_deref(), Some("/music/song.mp3"));
    Ok(())
}

#[tokio::test]
async fn an_object_deleted_meanwhile_is_brought_back_by_a_move_and_by_a_re_read_not_made_twice() -> TestResult {
    let server = TestServer::start().await;
    let pc = server.device("alice", "pc").await;
    let phone = server.device("alice", "phone").await;
    let song = put(&pc, "/music", "song.mp3", b"deleted content").await;
    pc.delete_object(&song.id).await?;
    let archive = phone.create_folder("/archive", true).await?;
    let revive = |to: &str, name: &str| MoveRequest {
        ids: vec![song.id.clone()],
        to: Some(to.to_owned()),
        name: Some(name.to_owned()),
        revive: true,
    };
    // The phone had moved its copy: the deleted object comes back where it put it.
    let back = phone.move_entries(&revive(&archive.id, "song.mp3")).await?.entries;
    assert_eq!(back.len(), 1);
    assert_eq!((back[0].id.as_str(), back[0].path.as_deref()), (song.id.as_str(), Some("/archive/song.mp3")));
    // A second device moving its copy moves the same object: one object still.
    let other = pc.create_folder("/other", true).await?;
    let moved = pc.move_entries(&revive(&other.id, "tune.mp3")).await?.entries;
    assert_eq!((moved[0].id.as_str(), moved[0].path.as_deref()), (song.id.as_str(), Some("/other/tune.mp3")));

    // Deleted again, a device re-reading its view sends its copy from that place: the same object
    // comes back, not a new one.
    pc.delete_object(&song.id).await?;
    let request = CreateObjectRequest {
        folder_id: other.id.clone(),
        name: "tune.mp3".into(),
        kind: ObjectKind::File,
        hash: song.hash.clone().unwrap_or_default(),
        content_type: None,
        replace: false,
        base_modseq: None,
        modified: None,
        unless_held: true,
    };
    let again = phone.create_object(&request).await?;
    assert_eq!((again.id.as_str(), again.path.as_deref()), (song.id.as_str(), Some("/other/tune.mp3")));

    // Once the collector freed its content, nothing comes back: the device sends the file anew.
    pc.delete_object(&song.id).await?;
    server.clock.advance(SignedDuration::from_hours(2));
    let settings = cpm_store::StoreSettings {
        tombstone_retention: Duration::from_secs(30 * 86_400),
        blob_grace: Duration::from_secs(3_600),
    };
    SqliteStore::open(server.dir.path(), server.clock.clone(), settings)?.collect_garbage()?;
    let (status, code, message) = api_error(phone.move_entries(&revive(&other.id, "tune.mp3")).await);
    assert_eq!((status, code.as_str()), (404, "not_found"), "{message}");

    // Bringing back takes one object, a folder and a name; an id never seen is not found.
    let (status, code, _) = api_error(phone.move_entries(&MoveRequest { name: None, ..revive(&other.id, "x") }).await);
    assert_eq!((status, code.as_str()), (400, "invalid_input"));
    let unknown = MoveRequest { ids: vec!["o-none".into()], ..revive(&other.id, "x.mp3") };
    assert_eq!(api_error(phone.move_entries(&unknown).await).1, "not_found");
    Ok(())
}
