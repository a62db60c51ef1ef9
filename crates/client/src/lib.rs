//! A typed client for cpm's native HTTP/JSON API.
//!
//! Payloads stream in both directions and are checked against their BLAKE3 hash: an upload
//! sends its hash first and no bytes when the store already has them; downloads hand each
//! payload's bytes to a [`PayloadSink`], which checks them before anything is kept.
//!
//! No call waits forever: connecting and every read have a timeout ([`Timeouts`]).

use cpm_proto::{
    BlobReceipt, ChangesPage, CreateFolderRequest, CreateObjectRequest, Device, Entry, ErrorBody, Health, ListPage,
    LoginRequest, MoveRequest, MoveResult, ProfileState, RegisterDeviceRequest, RegisteredDevice, SetFlagsRequest,
    TokenResponse,
};
use futures_util::StreamExt;
use reqwest::{Method, RequestBuilder, Response, StatusCode};
use serde::de::DeserializeOwned;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};

/// Bytes per read when streaming a file up.
const UPLOAD_CHUNK: usize = 256 * 1024;
const PAGE: u32 = 1000;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused: its status, code and sentence.
    #[error("{message}")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
    #[error("the server at {url} did not answer within {seconds} s")]
    Timeout { url: String, seconds: u64 },
    #[error("{0}")]
    Transport(String),
    #[error("{0}")]
    Io(#[from] std::io::Error),
    #[error("{0}")]
    Integrity(String),
}

impl ClientError {
    pub fn code(&self) -> Option<&str> {
        match self {
            ClientError::Api { code, .. } => Some(code),
            _ => None,
        }
    }

    /// True when trying again later may succeed: the server was unreachable, slow, cut the
    /// answer off, or failed on its side.
    pub fn is_transient(&self) -> bool {
        match self {
            ClientError::Api { status, .. } => *status >= 500 || *status == 429,
            ClientError::Unreachable { .. } | ClientError::Timeout { .. } | ClientError::Transport(_) => true,
            ClientError::Io(_) | ClientError::Integrity(_) => false,
        }
    }
}

/// How long the client waits: for a connection, and for each read of an answer.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Timeouts {
    pub connect: std::time::Duration,
    pub read: std::time::Duration,
}

impl Default for Timeouts {
    fn default() -> Self {
        Self { connect: std::time::Duration::from_secs(10), read: std::time::Duration::from_secs(60) }
    }
}

/// Where downloaded payloads go, one after the other: each is announced with the hash and size
/// the server gives it, then its bytes, then its end. The sink checks and keeps them.
pub trait PayloadSink {
    /// The payload of the `index`-th entry asked for begins.
    fn begin(&mut self, index: usize, hash: &str, size: u64);
    fn write(&mut self, bytes: &[u8]);
    fn end(&mut self);
}

pub type Result<T, E = ClientError> = std::result::Result<T, E>;

/// An upload's outcome: the content's hash and size, and whether bytes had to be sent.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Uploaded {
    pub hash: String,
    pub size: u64,
    pub sent: bool,
}

#[derive(Clone)]
pub struct Client {
    http: reqwest::Client,
    base: String,
    token: Option<String>,
    timeouts: Timeouts,
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        Self::with_timeouts(base, token, Timeouts::default())
    }

    pub fn with_timeouts(base: &str, token: Option<String>, timeouts: Timeouts) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Transport(format!("bad server URL {base:?}: expected http://HOST:PORT")));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("cpm/", env!("CARGO_PKG_VERSION")))
            .connect_timeout(timeouts.connect)
            .read_timeout(timeouts.read)
            .build()
            .map_err(|error| ClientError::Transport(error.to_string()))?;
        Ok(Self { http, base, token, timeouts })
    }

    pub fn base(&self) -> &str {
        &self.base
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_url(method, &format!("{}{path}", self.base))
    }

    fn request_url(&self, method: Method, url: &str) -> RequestBuilder {
        let request = self.http.request(method, url);
        match &self.token {
            Some(token) => request.bearer_auth(token),
            None => request,
        }
    }

    async fn send(&self, request: RequestBuilder) -> Result<Response> {
        let response = request.send().await.map_err(|error| self.transport(error))?;
        if response.status().is_success() {
            return Ok(response);
        }
        let status = response.status();
        let text = response.text().await.unwrap_or_default();
        Err(refusal(status.as_u16(), &text))
    }

    fn transport(&self, error: reqwest::Error) -> ClientError {
        if error.is_timeout() {
            let seconds = if error.is_connect() { self.timeouts.connect } else { self.timeouts.read }.as_secs();
            ClientError::Timeout { url: self.base.clone(), seconds }
        } else if error.is_connect() {
            ClientError::Unreachable { url: self.base.clone(), reason: root_cause(&error) }
        } else {
            ClientError::Transport(format!("request failed: {}", root_cause(&error)))
        }
    }

    /// An answer that failed while its body was read.
    fn body_error(&self, error: reqwest::Error, what: &str) -> ClientError {
        if error.is_timeout() { self.transport(error) } else { ClientError::Transport(format!("{what}: {error}")) }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        response.json().await.map_err(|error| self.body_error(error, "unexpected answer"))
    }

    pub async fn health(&self) -> Result<Health> {
        self.json(self.request(Method::GET, "/health")).await
    }

    pub async fn login(&self, user: &str, password: &str) -> Result<TokenResponse> {
        let body = LoginRequest { user: user.to_owned(), password: password.to_owned() };
        self.json(self.request(Method::POST, "/v1/login").json(&body)).await
    }

    pub async fn register_device(&self, request: &RegisterDeviceRequest) -> Result<RegisteredDevice> {
        self.json(self.request(Method::POST, "/v1/devices").json(request)).await
    }

    pub async fn devices(&self) -> Result<Vec<Device>> {
        self.json(self.request(Method::GET, "/v1/devices")).await
    }

    pub async fn revoke_device(&self, name: &str) -> Result<Device> {
        self.json(self.request(Method::DELETE, &format!("/v1/devices/{}", encode_segment(name)))).await
    }

    pub async fn resolve(&self, path: &str) -> Result<Entry> {
        self.json(self.request(Method::GET, "/v1/entries").query(&[("path", path)])).await
    }

    pub async fn entry(&self, id: &str) -> Result<Entry> {
        self.json(self.request(Method::GET, &format!("/v1/entries/{}", encode_segment(id)))).await
    }

    pub async fn list_page(&self, folder_id: &str, after: Option<&str>, limit: u32) -> Result<ListPage> {
        let mut request = self
            .request(Method::GET, &format!("/v1/folders/{}/children", encode_segment(folder_id)))
            .query(&[("limit", limit)]);
        if let Some(after) = after {
            request = request.query(&[("after", after)]);
        }
        self.json(request).await
    }

    /// Every entry of a folder, page after page.
    pub async fn list_all(&self, folder_id: &str) -> Result<Vec<Entry>> {
        let mut entries = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let page = self.list_page(folder_id, after.as_deref(), PAGE).await?;
            entries.extend(page.entries);
            match page.next {
                Some(next) => after = Some(next),
                None => return Ok(entries),
            }
        }
    }

    pub async fn create_folder(&self, path: &str, parents: bool) -> Result<Entry> {
        let body = CreateFolderRequest { path: path.to_owned(), parents };
        self.json(self.request(Method::POST, "/v1/folders").json(&body)).await
    }

    pub async fn delete_folder(&self, id: &str, recursive: bool) -> Result<()> {
        let request = self
            .request(Method::DELETE, &format!("/v1/folders/{}", encode_segment(id)))
            .query(&[("recursive", recursive)]);
        self.send(request).await.map(drop)
    }

    pub async fn create_object(&self, request: &CreateObjectRequest) -> Result<Entry> {
        self.json(self.request(Method::POST, "/v1/objects").json(request)).await
    }

    pub async fn delete_object(&self, id: &str) -> Result<()> {
        self.send(self.request(Method::DELETE, &format!("/v1/objects/{}", encode_segment(id)))).await.map(drop)
    }

    /// Deletes an object only if it is still at `base_modseq` (else an API error `conflict`).
    pub async fn delete_object_at(&self, id: &str, base_modseq: i64) -> Result<()> {
        let request = self
            .request(Method::DELETE, &format!("/v1/objects/{}", encode_segment(id)))
            .query(&[("base_modseq", base_modseq)]);
        self.send(request).await.map(drop)
    }

    pub async fn set_flags(&self, id: &str, flags: Vec<String>) -> Result<Entry> {
        let body = SetFlagsRequest { flags };
        self.json(self.request(Method::PUT, &format!("/v1/objects/{}/flags", encode_segment(id))).json(&body)).await
    }

    pub async fn move_entries(&self, request: &MoveRequest) -> Result<MoveResult> {
        self.json(self.request(Method::POST, "/v1/move").json(request)).await
    }

    pub async fn changes(&self, since: i64, limit: u32) -> Result<ChangesPage> {
        self.json(self.request(Method::GET, "/v1/changes").query(&[("since", since), ("limit", i64::from(limit))]))
            .await
    }

    /// This device's sync profile.
    pub async fn profile(&self) -> Result<ProfileState> {
        self.json(self.request(Method::GET, "/v1/profile")).await
    }

    /// Changes this device's preferences: each key given replaces the stored one; `null` gives
    /// it back to the operator's default.
    pub async fn set_profile(&self, preferences: &serde_json::Map<String, serde_json::Value>) -> Result<ProfileState> {
        self.json(self.request(Method::PUT, "/v1/profile").json(preferences)).await
    }

    /// Opens the hint channel: the server says when the store has changed in a way that matters
    /// to this device, starting with anything after `since`.
    pub async fn hints(&self, since: i64) -> Result<Hints> {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let url = format!("{}/v1/events?since={since}", self.base.replacen("http", "ws", 1));
        let mut request =
            url.as_str().into_client_request().map_err(|error| ClientError::Transport(error.to_string()))?;
        if let Some(token) = &self.token {
            let value = format!("Bearer {token}")
                .parse()
                .map_err(|_| ClientError::Transport("the token is not a valid header".into()))?;
            request.headers_mut().insert("authorization", value);
        }
        let connecting = tokio_tungstenite::connect_async(request);
        let (socket, _) = tokio::time::timeout(self.timeouts.connect + self.timeouts.read, connecting)
            .await
            .map_err(|_| ClientError::Timeout { url: self.base.clone(), seconds: self.timeouts.read.as_secs() })?
            .map_err(|error| match error {
                // Refused before the upgrade (a revoked token, say): the refusal, as any other.
                tokio_tungstenite::tungstenite::Error::Http(response) => refusal(
                    response.status().as_u16(),
                    &String::from_utf8_lossy(response.body().as_deref().unwrap_or_default()),
                ),
                error => ClientError::Transport(format!("cannot open the hint channel: {error}")),
            })?;
        Ok(Hints { socket, quiet: self.timeouts.read / 2 })
    }

    /// How entries stand in this device's view now.
    pub async fn sync_entries(&self, request: &cpm_proto::ViewRequest) -> Result<cpm_proto::ViewAnswer> {
        self.json(self.request(Method::POST, "/v1/sync/entries").json(request)).await
    }

    /// The journal as this device's profile sees it.
    pub async fn sync_changes(&self, query: &cpm_proto::ChangesQuery) -> Result<ChangesPage> {
        self.json(self.request(Method::GET, "/v1/sync").query(query)).await
    }

    pub async fn has_blob(&self, hash: &str) -> Result<bool> {
        let response = self
            .request(Method::HEAD, &format!("/v1/blobs/{hash}"))
            .send()
            .await
            .map_err(|error| self.transport(error))?;
        match response.status() {
            StatusCode::OK => Ok(true),
            StatusCode::NOT_FOUND => Ok(false),
            status => Err(ClientError::Api {
                status: status.as_u16(),
                code: format!("http_{}", status.as_u16()),
                message: format!("the server answered {status} when asked for content {hash}"),
            }),
        }
    }

    /// Sends content the store does not have yet, streamed from `source`: `size` bytes hashing
    /// to `hash`. The store keeps nothing unless every byte arrives and matches.
    pub async fn put_blob(&self, hash: &str, size: u64, source: Box<dyn Read + Send>) -> Result<()> {
        let chunks = futures_util::stream::unfold(Some(source), |source| async move {
            let mut source = source?;
            let mut buffer = vec![0u8; UPLOAD_CHUNK];
            match source.read(&mut buffer) {
                Ok(0) => None,
                Ok(read) => {
                    buffer.truncate(read);
                    Some((Ok::<_, std::io::Error>(buffer), Some(source)))
                }
                Err(error) => Some((Err(error), None)),
            }
        });
        let request = self
            .request(Method::PUT, &format!("/v1/blobs/{hash}"))
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(reqwest::Body::wrap_stream(chunks));
        self.json::<BlobReceipt>(request).await.map(drop)
    }

    /// Stores a file's content in the store: hashes it, and sends the bytes only when the store
    /// does not have them yet.
    pub async fn upload_file(&self, path: &Path) -> Result<Uploaded> {
        let (hash, size) = hash_file(path).await?;
        if self.has_blob(&hash).await? {
            return Ok(Uploaded { hash, size, sent: false });
        }
        let file = std::fs::File::open(path)?;
        match self.put_blob(&hash, size, Box::new(file)).await {
            Ok(()) => Ok(Uploaded { hash, size, sent: true }),
            Err(ClientError::Api { code, .. }) if code == "hash_mismatch" => Err(ClientError::Integrity(format!(
                "{} changed while it was being uploaded; nothing was stored",
                path.display()
            ))),
            Err(error) => Err(error),
        }
    }

    /// Fetches the payloads of `entries` into `sink`, in order: one through its link, several
    /// in one bundle (`POST /v1/contents`). Fails when the answer is cut off before every
    /// payload came.
    pub async fn fetch(&self, entries: &[&Entry], sink: &mut (dyn PayloadSink + Send)) -> Result<()> {
        match entries {
            [] => Ok(()),
            [entry] => self.fetch_one(entry, sink).await,
            _ => self.fetch_bundle(entries, sink).await,
        }
    }

    async fn fetch_one(&self, entry: &Entry, sink: &mut (dyn PayloadSink + Send)) -> Result<()> {
        let Some(link) = entry.link.as_deref() else {
            return Err(ClientError::Transport(format!("{} has no content to download", entry.name)));
        };
        let response = self.send(self.request_url(Method::GET, link)).await?;
        // A device whose field filter leaves out the hash still verifies: the ETag is the hash.
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim_matches('"').to_owned())
            .unwrap_or_default();
        let Some(size) = response.content_length() else {
            return Err(ClientError::Transport(format!("no length given for {}", entry.name)));
        };
        sink.begin(0, &etag, size);
        let mut received = 0u64;
        let mut stream = response.bytes_stream();
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| self.body_error(error, "download cut off"))?;
            received += chunk.len() as u64;
            sink.write(&chunk);
        }
        if received != size {
            return Err(ClientError::Transport(format!("download of {} cut off", entry.name)));
        }
        sink.end();
        Ok(())
    }

    async fn fetch_bundle(&self, entries: &[&Entry], sink: &mut (dyn PayloadSink + Send)) -> Result<()> {
        let ids = entries.iter().map(|entry| entry.id.clone()).collect();
        let response =
            self.send(self.request(Method::POST, "/v1/contents").json(&cpm_proto::ContentsRequest { ids })).await?;
        let mut stream = response.bytes_stream();
        let mut header = Vec::new();
        let (mut begun, mut left): (usize, Option<u64>) = (0, None);
        while let Some(chunk) = stream.next().await {
            let chunk = chunk.map_err(|error| self.body_error(error, "download cut off"))?;
            let mut rest: &[u8] = &chunk;
            while !rest.is_empty() {
                match left {
                    None => {
                        let Some(end) = rest.iter().position(|byte| *byte == b'\n') else {
                            header.extend_from_slice(rest);
                            if header.len() > 4096 {
                                return Err(ClientError::Transport("a bundle header runs on".into()));
                            }
                            break;
                        };
                        header.extend_from_slice(&rest[..end]);
                        rest = &rest[end + 1..];
                        let part: cpm_proto::BundlePart = serde_json::from_slice(&header)
                            .map_err(|error| ClientError::Transport(format!("bad bundle header: {error}")))?;
                        header.clear();
                        let Some(entry) = entries.get(begun) else {
                            return Err(ClientError::Transport("more payloads than asked for".into()));
                        };
                        if part.id != entry.id {
                            return Err(ClientError::Transport(format!("got {} instead of {}", part.id, entry.id)));
                        }
                        sink.begin(begun, &part.hash, part.size);
                        begun += 1;
                        left = Some(part.size);
                    }
                    Some(remaining) => {
                        let take = usize::try_from(remaining).unwrap_or(usize::MAX).min(rest.len());
                        sink.write(&rest[..take]);
                        left = Some(remaining - take as u64);
                        rest = &rest[take..];
                    }
                }
                if left == Some(0) {
                    sink.end();
                    left = None;
                }
            }
        }
        if left.is_some() || begun != entries.len() {
            return Err(ClientError::Transport("download cut off".into()));
        }
        Ok(())
    }

    /// Downloads an object's payload through its link into `dest`, verifying its hash; `dest`
    /// is replaced only by complete, verified content, on disk before this returns.
    pub async fn download(&self, entry: &Entry, dest: &Path) -> Result<u64> {
        Ok(self.download_bundle(&[(entry, dest)]).await?.remove(0))
    }

    /// Downloads the payloads of several objects, each into its destination, verified and on
    /// disk; the sizes come back in the order asked.
    pub async fn download_bundle(&self, items: &[(&Entry, &Path)]) -> Result<Vec<u64>> {
        let entries: Vec<&Entry> = items.iter().map(|(entry, _)| *entry).collect();
        let mut sink = FileSink { items, current: None, done: Vec::new(), failure: None };
        let fetched = self.fetch(&entries, &mut sink).await;
        if let Some(current) = sink.current.take() {
            let _ = std::fs::remove_file(&current.temp);
        }
        fetched?;
        match sink.failure {
            Some(error) => Err(error),
            None => Ok(sink.done),
        }
    }
}

/// A payload being written to its temporary file beside its destination.
struct Receiving {
    file: std::fs::File,
    temp: PathBuf,
    dest: PathBuf,
    hasher: blake3::Hasher,
    expected: String,
    size: u64,
}

/// Writes payloads to files, each checked against its entry's hash (or the server's word when
/// the entry has none) before it replaces its destination.
struct FileSink<'a> {
    items: &'a [(&'a Entry, &'a Path)],
    current: Option<Receiving>,
    done: Vec<u64>,
    failure: Option<ClientError>,
}

impl FileSink<'_> {
    fn open(&mut self, index: usize, hash: &str, size: u64) -> Result<Receiving> {
        let (entry, dest) = self.items.get(index).ok_or_else(|| ClientError::Transport("unasked payload".into()))?;
        let expected = entry.hash.clone().unwrap_or_else(|| hash.to_owned());
        if expected.is_empty() {
            return Err(ClientError::Integrity(format!("no hash to verify {} against", entry.name)));
        }
        let temp = partial_path(dest);
        let file = std::fs::File::create(&temp)?;
        Ok(Receiving { file, temp, dest: dest.to_path_buf(), hasher: blake3::Hasher::new(), expected, size })
    }

    fn finish(receiving: Receiving) -> Result<u64> {
        let actual = receiving.hasher.finalize().to_hex().to_string();
        let kept = if actual == receiving.expected {
            receiving.file.sync_all().and_then(|()| std::fs::rename(&receiving.temp, &receiving.dest))
        } else {
            let _ = std::fs::remove_file(&receiving.temp);
            return Err(ClientError::Integrity(format!(
                "the content received for {} hashes to {actual}, not {}",
                receiving.dest.display(),
                receiving.expected
            )));
        };
        kept.inspect_err(|_| {
            let _ = std::fs::remove_file(&receiving.temp);
        })?;
        Ok(receiving.size)
    }
}

impl PayloadSink for FileSink<'_> {
    fn begin(&mut self, index: usize, hash: &str, size: u64) {
        if self.failure.is_none() {
            match self.open(index, hash, size) {
                Ok(receiving) => self.current = Some(receiving),
                Err(error) => self.failure = Some(error),
            }
        }
    }

    fn write(&mut self, bytes: &[u8]) {
        if let Some(receiving) = self.current.as_mut() {
            receiving.hasher.update(bytes);
            if let Err(error) = receiving.file.write_all(bytes) {
                self.failure = Some(error.into());
            }
        }
    }

    fn end(&mut self) {
        let Some(receiving) = self.current.take() else { return };
        if self.failure.is_some() {
            let _ = std::fs::remove_file(&receiving.temp);
            return;
        }
        match Self::finish(receiving) {
            Ok(size) => self.done.push(size),
            Err(error) => self.failure = Some(error),
        }
    }
}

/// The server's hints that this device has something to sync, over a WebSocket.
pub struct Hints {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
    /// After this long without a word the server is pinged; without an answer as long again,
    /// the channel is taken for dead (a server that stopped answering keeps its socket open).
    quiet: std::time::Duration,
}

/// A hint to sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    /// Where the journal stood when the server looked.
    pub cursor: i64,
    /// A sync is due now whatever the journal says: the device's schedule came round, or time
    /// carried objects across an age bound of its filter.
    pub due: bool,
}

impl Hints {
    /// The next hint, or `None` once the connection is gone (or the server stopped answering).
    pub async fn next(&mut self) -> Option<Hint> {
        use futures_util::SinkExt;
        use tokio_tungstenite::tungstenite::Message;
        let mut pinged = false;
        loop {
            let message = match tokio::time::timeout(self.quiet, self.socket.next()).await {
                Err(_) if pinged => return None,
                Err(_) => {
                    self.socket.send(Message::Ping(Vec::new().into())).await.ok()?;
                    pinged = true;
                    continue;
                }
                Ok(message) => message?.ok()?,
            };
            pinged = false;
            match message {
                Message::Text(text) => {
                    let hint: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
                    let cursor = hint.get("sync").and_then(serde_json::Value::as_i64)?;
                    let reason = hint.get("reason").and_then(serde_json::Value::as_str);
                    return Some(Hint { cursor, due: matches!(reason, Some("schedule" | "time")) });
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
    }
}

/// BLAKE3 and length of a file, read on a blocking thread.
pub async fn hash_file(path: &Path) -> Result<(String, u64)> {
    let path = path.to_owned();
    tokio::task::spawn_blocking(move || {
        let mut file = std::fs::File::open(&path)?;
        let mut hasher = blake3::Hasher::new();
        let mut buffer = vec![0u8; UPLOAD_CHUNK];
        let mut size = 0u64;
        loop {
            let read = file.read(&mut buffer)?;
            if read == 0 {
                break;
            }
            hasher.update(&buffer[..read]);
            size += read as u64;
        }
        Ok((hasher.finalize().to_hex().to_string(), size))
    })
    .await
    .map_err(|error| ClientError::Transport(format!("hashing failed: {error}")))?
}

/// A short temporary name beside `dest`: the destination's own name may already take all the
/// 255 bytes a name may have.
fn partial_path(dest: &Path) -> PathBuf {
    static NEXT: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let number = NEXT.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
    dest.with_file_name(format!(".cpm-{}-{number}.cpm-partial", std::process::id()))
}

/// Percent-encodes one URL path segment.
fn encode_segment(raw: &str) -> String {
    let mut encoded = String::with_capacity(raw.len());
    for byte in raw.bytes() {
        if byte.is_ascii_alphanumeric() || matches!(byte, b'-' | b'_' | b'.' | b'~') {
            encoded.push(byte as char);
        } else {
            encoded.push_str(&format!("%{byte:02X}"));
        }
    }
    encoded
}

fn root_cause(error: &(dyn std::error::Error + 'static)) -> String {
    let mut cause = error;
    while let Some(source) = cause.source() {
        cause = source;
    }
    cause.to_string()
}

/// A server's refusal from its status and body: its JSON `{code, message}`, or the status alone.
fn refusal(status: u16, text: &str) -> ClientError {
    match serde_json::from_str::<ErrorBody>(text) {
        Ok(body) => ClientError::Api { status, code: body.code, message: body.message },
        Err(_) => ClientError::Api {
            status,
            code: format!("http_{status}"),
            message: format!(
                "the server answered {status}{}",
                if text.is_empty() { String::new() } else { format!(": {text}") }
            ),
        },
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn segments_are_percent_encoded() {
        assert_eq!(encode_segment("my phone/ü"), "my%20phone%2F%C3%BC");
        assert_eq!(encode_segment("pda-1.x"), "pda-1.x");
    }

    #[test]
    fn refuses_urls_without_a_scheme() {
        assert!(Client::new("127.0.0.1:7373", None).is_err());
        assert!(
            Client::new("http://127.0.0.1:7373/", None).is_ok_and(|client| client.base() == "http://127.0.0.1:7373")
        );
    }
}
