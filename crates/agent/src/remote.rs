//! The store as a device reaches it. [`cpm_client::Client`] is the real one (HTTP); a simulation
//! calls the service layer in-process. Either way the same codes come back.

pub use cpm_client::PayloadSink;
use cpm_client::{Client, ClientError};
use cpm_proto::{ChangesPage, ChangesQuery, CreateObjectRequest, Entry, MoveRequest, MoveResult, ProfileState};
use std::future::Future;
use std::io::Read;

/// Why a call to the store did not do what was asked.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum RemoteError {
    /// The store answered no: its status, code and sentence.
    #[error("{message}")]
    Refused { status: u16, code: String, message: String },
    /// The store could not be reached, did not answer in time, or broke off; later may work.
    #[error("{0}")]
    Unavailable(String),
}

impl RemoteError {
    pub fn code(&self) -> Option<&str> {
        match self {
            RemoteError::Refused { code, .. } => Some(code),
            RemoteError::Unavailable(_) => None,
        }
    }

    pub fn is(&self, code: &str) -> bool {
        self.code() == Some(code)
    }

    /// The device's credentials no longer work: it was revoked, or its token is unknown.
    pub fn is_unauthorized(&self) -> bool {
        matches!(self, RemoteError::Refused { status: 401, .. })
    }

    /// Trying again later may succeed.
    pub fn is_transient(&self) -> bool {
        match self {
            RemoteError::Refused { status, .. } => *status >= 500 || *status == 429,
            RemoteError::Unavailable(_) => true,
        }
    }
}

impl From<ClientError> for RemoteError {
    fn from(error: ClientError) -> Self {
        match error {
            ClientError::Api { status, code, message } => RemoteError::Refused { status, code, message },
            other => RemoteError::Unavailable(other.to_string()),
        }
    }
}

pub type RemoteResult<T> = Result<T, RemoteError>;

/// What the sync engine asks of the store.
pub trait Remote: Send + Sync {
    /// Where the store is, for messages.
    fn server(&self) -> &str;
    fn profile(&self) -> impl Future<Output = RemoteResult<ProfileState>> + Send;
    /// One page of the device's view of the journal.
    fn feed(&self, query: &ChangesQuery) -> impl Future<Output = RemoteResult<ChangesPage>> + Send;
    /// How entries stand in the device's view now, read at `at`: an upsert or a removal each.
    fn view_of(
        &self,
        ids: &[String],
        at: Option<jiff::Timestamp>,
        view: Option<&str>,
    ) -> impl Future<Output = RemoteResult<Vec<cpm_proto::Change>>> + Send;
    fn resolve(&self, path: &str) -> impl Future<Output = RemoteResult<Entry>> + Send;
    /// Creates a folder and any missing parents; an existing folder is returned as it is.
    fn create_folder(&self, path: &str) -> impl Future<Output = RemoteResult<Entry>> + Send;
    fn has_blob(&self, hash: &str) -> impl Future<Output = RemoteResult<bool>> + Send;
    fn put_blob(
        &self,
        hash: &str,
        size: u64,
        source: Box<dyn Read + Send>,
    ) -> impl Future<Output = RemoteResult<()>> + Send;
    fn create_object(&self, request: &CreateObjectRequest) -> impl Future<Output = RemoteResult<Entry>> + Send;
    fn move_entries(&self, request: &MoveRequest) -> impl Future<Output = RemoteResult<MoveResult>> + Send;
    /// Deletes an object if it is still at `base_modseq` (else `conflict`).
    fn delete_object(&self, id: &str, base_modseq: i64) -> impl Future<Output = RemoteResult<()>> + Send;
    /// Deletes an empty folder (else `folder_not_empty`).
    fn delete_folder(&self, id: &str) -> impl Future<Output = RemoteResult<()>> + Send;
    /// The payloads of `entries`, in order, into `sink`.
    fn fetch(
        &self,
        entries: &[&Entry],
        sink: &mut (dyn PayloadSink + Send),
    ) -> impl Future<Output = RemoteResult<()>> + Send;
}

impl Remote for Client {
    fn server(&self) -> &str {
        self.base()
    }

    async fn profile(&self) -> RemoteResult<ProfileState> {
        Ok(Client::profile(self).await?)
    }

    async fn feed(&self, query: &ChangesQuery) -> RemoteResult<ChangesPage> {
        Ok(self.sync_changes(query).await?)
    }

    async fn view_of(
        &self,
        ids: &[String],
        at: Option<jiff::Timestamp>,
        view: Option<&str>,
    ) -> RemoteResult<Vec<cpm_proto::Change>> {
        let mut changes = Vec::with_capacity(ids.len());
        for chunk in ids.chunks(cpm_proto::MAX_VIEW_IDS) {
            let request = cpm_proto::ViewRequest { ids: chunk.to_vec(), at, view: view.map(str::to_owned) };
            changes.extend(self.sync_entries(&request).await?.changes);
        }
        Ok(changes)
    }

    async fn resolve(&self, path: &str) -> RemoteResult<Entry> {
        Ok(Client::resolve(self, path).await?)
    }

    async fn create_folder(&self, path: &str) -> RemoteResult<Entry> {
        Ok(Client::create_folder(self, path, true).await?)
    }

    async fn has_blob(&self, hash: &str) -> RemoteResult<bool> {
        Ok(Client::has_blob(self, hash).await?)
    }

    async fn put_blob(&self, hash: &str, size: u64, source: Box<dyn Read + Send>) -> RemoteResult<()> {
        Ok(Client::put_blob(self, hash, size, source).await?)
    }

    async fn create_object(&self, request: &CreateObjectRequest) -> RemoteResult<Entry> {
        Ok(Client::create_object(self, request).await?)
    }

    async fn move_entries(&self, request: &MoveRequest) -> RemoteResult<MoveResult> {
        Ok(Client::move_entries(self, request).await?)
    }

    async fn delete_object(&self, id: &str, base_modseq: i64) -> RemoteResult<()> {
        Ok(self.delete_object_at(id, base_modseq).await?)
    }

    async fn delete_folder(&self, id: &str) -> RemoteResult<()> {
        Ok(Client::delete_folder(self, id, false).await?)
    }

    async fn fetch(&self, entries: &[&Entry], sink: &mut (dyn PayloadSink + Send)) -> RemoteResult<()> {
        Ok(Client::fetch(self, entries, sink).await?)
    }
}
