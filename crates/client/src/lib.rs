//! A typed client for cpm's native HTTP/JSON API.
//!
//! Payloads stream in both directions and are checked against their BLAKE3 hash: an upload
//! sends its hash first and no bytes when the store already has them; a download lands in a
//! temporary file that is renamed into place only once its hash matches.

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
/// Downloaded content is written in pieces of this size.
const WRITE_BATCH: usize = 1024 * 1024;

#[derive(Debug, thiserror::Error)]
pub enum ClientError {
    /// The server refused: its status, code and sentence.
    #[error("{message}")]
    Api { status: u16, code: String, message: String },
    #[error("cannot reach the server at {url}: {reason}")]
    Unreachable { url: String, reason: String },
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
}

impl Client {
    pub fn new(base: &str, token: Option<String>) -> Result<Self> {
        let base = base.trim_end_matches('/').to_owned();
        if !(base.starts_with("http://") || base.starts_with("https://")) {
            return Err(ClientError::Transport(format!("bad server URL {base:?}: expected http://HOST:PORT")));
        }
        let http = reqwest::Client::builder()
            .user_agent(concat!("cpm/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|error| ClientError::Transport(error.to_string()))?;
        Ok(Self { http, base, token })
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
        Err(match serde_json::from_str::<ErrorBody>(&text) {
            Ok(body) => ClientError::Api { status: status.as_u16(), code: body.code, message: body.message },
            Err(_) => ClientError::Api {
                status: status.as_u16(),
                code: format!("http_{}", status.as_u16()),
                message: format!(
                    "the server answered {status}{}",
                    if text.is_empty() { String::new() } else { format!(": {text}") }
                ),
            },
        })
    }

    fn transport(&self, error: reqwest::Error) -> ClientError {
        if error.is_connect() {
            ClientError::Unreachable { url: self.base.clone(), reason: root_cause(&error) }
        } else {
            ClientError::Transport(format!("request failed: {}", root_cause(&error)))
        }
    }

    async fn json<T: DeserializeOwned>(&self, request: RequestBuilder) -> Result<T> {
        let response = self.send(request).await?;
        response.json().await.map_err(|error| ClientError::Transport(format!("unexpected answer: {error}")))
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
        let (socket, _) = tokio_tungstenite::connect_async(request)
            .await
            .map_err(|error| ClientError::Transport(format!("cannot open the hint channel: {error}")))?;
        Ok(Hints { socket })
    }

    /// The journal since `since` as this device's profile sees it.
    pub async fn sync_changes(&self, since: i64, limit: u32) -> Result<ChangesPage> {
        self.json(self.request(Method::GET, "/v1/sync").query(&[("since", since), ("limit", i64::from(limit))])).await
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

    /// Stores a file's content in the store: hashes it, and sends the bytes only when the store
    /// does not have them yet.
    pub async fn upload_file(&self, path: &Path) -> Result<Uploaded> {
        let (hash, size) = hash_file(path).await?;
        if self.has_blob(&hash).await? {
            return Ok(Uploaded { hash, size, sent: false });
        }
        let file = tokio::fs::File::open(path).await?;
        let body = reqwest::Body::wrap_stream(tokio_util::io::ReaderStream::with_capacity(file, UPLOAD_CHUNK));
        let request = self
            .request(Method::PUT, &format!("/v1/blobs/{hash}"))
            .header(reqwest::header::CONTENT_LENGTH, size)
            .header(reqwest::header::CONTENT_TYPE, "application/octet-stream")
            .body(body);
        match self.json::<BlobReceipt>(request).await {
            Ok(_) => Ok(Uploaded { hash, size, sent: true }),
            Err(ClientError::Api { code, .. }) if code == "hash_mismatch" => Err(ClientError::Integrity(format!(
                "{} changed while it was being uploaded; nothing was stored",
                path.display()
            ))),
            Err(error) => Err(error),
        }
    }

    /// Downloads an object's payload through its link into `dest`, verifying its hash; `dest`
    /// is replaced only by complete, verified content, on disk before this returns.
    pub async fn download(&self, entry: &Entry, dest: &Path) -> Result<u64> {
        self.download_to(entry, dest, true).await
    }

    /// As [`Client::download`]; with `durable` false the file is not fsynced, for a caller that
    /// makes a whole batch durable at once before it records it.
    pub async fn download_to(&self, entry: &Entry, dest: &Path, durable: bool) -> Result<u64> {
        let Some(link) = entry.link.as_deref() else {
            return Err(ClientError::Transport(format!("{} has no content to download", entry.name)));
        };
        let response = self.send(self.request_url(Method::GET, link)).await?;
        // A device whose field filter leaves out the hash still verifies: the ETag is the hash.
        let etag = response
            .headers()
            .get(reqwest::header::ETAG)
            .and_then(|value| value.to_str().ok())
            .map(|value| value.trim_matches('"').to_owned());
        let Some(expected) = entry.hash.clone().or(etag) else {
            return Err(ClientError::Integrity(format!("no hash to verify {} against", entry.name)));
        };
        let temp = partial_path(dest);
        // The file is written from this task, in large pieces: a write into the page cache costs
        // less than handing each network chunk to a blocking thread and back.
        let mut file = std::fs::File::create(&temp)?;
        let result = async {
            let mut hasher = blake3::Hasher::new();
            let mut received = 0u64;
            let mut pending = Vec::with_capacity(WRITE_BATCH);
            let mut stream = response.bytes_stream();
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|error| ClientError::Transport(format!("download cut off: {error}")))?;
                hasher.update(&chunk);
                received += chunk.len() as u64;
                pending.extend_from_slice(&chunk);
                if pending.len() >= WRITE_BATCH {
                    file.write_all(&pending)?;
                    pending.clear();
                }
            }
            file.write_all(&pending)?;
            let actual = hasher.finalize().to_hex().to_string();
            if actual != expected {
                return Err(ClientError::Integrity(format!(
                    "the content received for {} hashes to {actual}, not {expected}",
                    entry.name
                )));
            }
            if durable {
                file.sync_all()?;
            } else {
                start_writeback(&file);
            }
            std::fs::rename(&temp, dest)?;
            Ok(received)
        }
        .await;
        if result.is_err() {
            let _ = std::fs::remove_file(&temp);
        }
        result
    }
}

/// A payload of a bundle being written to its temporary file.
struct Receiving {
    file: std::fs::File,
    temp: PathBuf,
    dest: PathBuf,
    hasher: blake3::Hasher,
    expected: String,
    left: u64,
    size: u64,
}

impl Receiving {
    /// Checks the payload against its hash and puts it in place.
    fn finish(self) -> Result<u64> {
        let actual = self.hasher.finalize().to_hex().to_string();
        if actual != self.expected {
            let _ = std::fs::remove_file(&self.temp);
            return Err(ClientError::Integrity(format!(
                "the content received for {} hashes to {actual}, not {}",
                self.dest.display(),
                self.expected
            )));
        }
        start_writeback(&self.file);
        std::fs::rename(&self.temp, &self.dest)?;
        Ok(self.size)
    }
}

impl Client {
    /// Downloads the payloads of many small objects in one request (`POST /v1/contents`), each
    /// into its destination, verified against its hash. A payload is put in place once complete
    /// and verified, not fsynced; the sizes come back in the order asked.
    pub async fn download_bundle(&self, items: &[(&Entry, &Path)]) -> Result<Vec<u64>> {
        let ids = items.iter().map(|(entry, _)| entry.id.clone()).collect();
        let response =
            self.send(self.request(Method::POST, "/v1/contents").json(&cpm_proto::ContentsRequest { ids })).await?;
        let mut stream = response.bytes_stream();
        let mut sizes = Vec::with_capacity(items.len());
        let mut header = Vec::new();
        let mut current: Option<Receiving> = None;
        let result = async {
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(|error| ClientError::Transport(format!("download cut off: {error}")))?;
                let mut rest: &[u8] = &chunk;
                while !rest.is_empty() {
                    match current.as_mut() {
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
                            let Some((entry, dest)) = items.get(sizes.len()) else {
                                return Err(ClientError::Transport("more payloads than asked for".into()));
                            };
                            if part.id != entry.id {
                                return Err(ClientError::Transport(format!("got {} instead of {}", part.id, entry.id)));
                            }
                            let temp = partial_path(dest);
                            current = Some(Receiving {
                                file: std::fs::File::create(&temp)?,
                                temp,
                                dest: dest.to_path_buf(),
                                hasher: blake3::Hasher::new(),
                                // A field filter may leave out the hash: the server's word is checked then.
                                expected: entry.hash.clone().unwrap_or(part.hash),
                                left: part.size,
                                size: part.size,
                            });
                        }
                        Some(receiving) => {
                            let take = usize::try_from(receiving.left).unwrap_or(usize::MAX).min(rest.len());
                            receiving.hasher.update(&rest[..take]);
                            receiving.file.write_all(&rest[..take])?;
                            receiving.left -= take as u64;
                            rest = &rest[take..];
                        }
                    }
                    if current.as_ref().is_some_and(|receiving| receiving.left == 0)
                        && let Some(done) = current.take()
                    {
                        sizes.push(done.finish()?);
                    }
                }
            }
            if current.is_some() || sizes.len() != items.len() {
                return Err(ClientError::Transport("download cut off".into()));
            }
            Ok(())
        }
        .await;
        if let Err(error) = result {
            if let Some(receiving) = current {
                let _ = std::fs::remove_file(&receiving.temp);
            }
            return Err(error);
        }
        Ok(sizes)
    }
}

/// The server's hints that this device has something to sync, over a WebSocket.
pub struct Hints {
    socket: tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>,
}

/// A hint to sync.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Hint {
    /// Where the journal stood when the server looked.
    pub cursor: i64,
    /// The device's schedule asks for a sync now, whatever changed.
    pub scheduled: bool,
}

impl Hints {
    /// The next hint, or `None` once the connection is gone.
    pub async fn next(&mut self) -> Option<Hint> {
        use tokio_tungstenite::tungstenite::Message;
        while let Some(message) = self.socket.next().await {
            match message.ok()? {
                Message::Text(text) => {
                    let hint: serde_json::Value = serde_json::from_str(text.as_str()).ok()?;
                    let cursor = hint.get("sync").and_then(serde_json::Value::as_i64)?;
                    let scheduled = hint.get("reason").and_then(serde_json::Value::as_str) == Some("schedule");
                    return Some(Hint { cursor, scheduled });
                }
                Message::Close(_) => return None,
                _ => {}
            }
        }
        None
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

/// Asks the kernel to start writing a file to disk now, without waiting: the flush that makes
/// a batch of downloads durable then finds most of the work done, overlapped with the transfers.
#[cfg(target_os = "linux")]
fn start_writeback(file: &std::fs::File) {
    use std::os::fd::AsRawFd;
    // SAFETY: sync_file_range only reads the descriptor, which `file` keeps open for the call.
    // A failure costs only the overlap, so it is ignored.
    let _ = unsafe { libc::sync_file_range(file.as_raw_fd(), 0, 0, libc::SYNC_FILE_RANGE_WRITE) };
}

#[cfg(not(target_os = "linux"))]
fn start_writeback(_file: &std::fs::File) {}

fn partial_path(dest: &Path) -> PathBuf {
    let name = dest.file_name().map(|name| name.to_string_lossy().into_owned()).unwrap_or_default();
    dest.with_file_name(format!(".{name}.cpm-partial"))
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
