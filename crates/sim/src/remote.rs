//! The store as a simulated device reaches it: the real service layer, called in-process, with
//! a gate before every call at which the simulation may park the sync and act meanwhile.

use cpm_agent::remote::{PayloadSink, Remote, RemoteError, RemoteResult};
use cpm_proto::{ChangesPage, ChangesQuery, CreateObjectRequest, Entry, MoveRequest, MoveResult, ProfileState};
use cpm_service::view::FeedRequest;
use cpm_service::{ErrorKind, Service, ServiceError};
use cpm_store::Principal;
use std::io::Read;
use std::sync::{Arc, Mutex, PoisonError};
use tokio::sync::Notify;

/// The most store calls one sync may make before it is taken to loop for ever.
const MOST_CALLS: u64 = 20_000;

#[derive(Default)]
struct GateState {
    /// Calls the sync may still make before it parks; unlimited when `None`.
    budget: Option<u32>,
    parked: bool,
    calls: u64,
}

/// Where a simulated sync waits between its calls to the store, when told to.
#[derive(Default)]
pub struct Gate {
    state: Mutex<GateState>,
    to_world: Notify,
    to_sync: Notify,
}

impl Gate {
    pub fn new(budget: Option<u32>) -> Arc<Self> {
        Arc::new(Self { state: Mutex::new(GateState { budget, ..GateState::default() }), ..Self::default() })
    }

    async fn pass(&self) {
        loop {
            {
                let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
                if state.budget != Some(0) {
                    if let Some(budget) = state.budget.as_mut() {
                        *budget -= 1;
                    }
                    state.calls += 1;
                    state.parked = false;
                    assert!(state.calls <= MOST_CALLS, "a sync made {MOST_CALLS} store calls: it does not end");
                    return;
                }
                state.parked = true;
            }
            self.to_world.notify_one();
            self.to_sync.notified().await;
        }
    }

    /// Lets the sync make `budget` more calls (all it wants when `None`).
    pub fn open(&self, budget: Option<u32>) {
        let mut state = self.state.lock().unwrap_or_else(PoisonError::into_inner);
        state.budget = budget;
        state.parked = false;
        drop(state);
        self.to_sync.notify_one();
    }

    /// Waits until the sync parks.
    pub async fn parked(&self) {
        loop {
            if self.state.lock().unwrap_or_else(PoisonError::into_inner).parked {
                return;
            }
            self.to_world.notified().await;
        }
    }
}

/// One simulated device process's way to the store.
pub struct SimRemote {
    pub service: Arc<Service>,
    pub principal: Principal,
    pub gate: Arc<Gate>,
}

/// A refusal as the HTTP API would send it.
fn refused(error: ServiceError) -> RemoteError {
    let status = match error.kind {
        ErrorKind::Invalid => 400,
        ErrorKind::Unauthorized => 401,
        ErrorKind::Forbidden => 403,
        ErrorKind::NotFound => 404,
        ErrorKind::Conflict => 409,
        ErrorKind::Gone => 410,
        ErrorKind::TooLarge => 413,
        ErrorKind::QuotaExceeded => 507,
        ErrorKind::Internal => 500,
    };
    RemoteError::Refused { status, code: error.code.to_owned(), message: error.message }
}

impl SimRemote {
    fn user(&self) -> cpm_store::UserId {
        self.principal.user_id
    }

    fn device(&self) -> &str {
        self.principal.device_id.as_deref().unwrap_or_default()
    }
}

impl Remote for SimRemote {
    fn server(&self) -> &str {
        "sim://store"
    }

    async fn profile(&self) -> RemoteResult<ProfileState> {
        self.gate.pass().await;
        self.service.device_profile(self.user(), self.device()).map(|view| view.state()).map_err(refused)
    }

    async fn feed(&self, query: &ChangesQuery) -> RemoteResult<ChangesPage> {
        self.gate.pass().await;
        let request = FeedRequest {
            since: query.since,
            limit: query.limit.unwrap_or(1000) as usize,
            at: query.at,
            seen_at: query.seen_at,
            view: query.view.clone(),
        };
        self.service.device_feed(self.user(), self.device(), request).map_err(refused)
    }

    async fn view_of(
        &self,
        ids: &[String],
        at: Option<jiff::Timestamp>,
        view: Option<&str>,
    ) -> RemoteResult<Vec<cpm_proto::Change>> {
        self.gate.pass().await;
        self.service.device_entries(self.user(), self.device(), ids, at, view).map_err(refused)
    }

    async fn resolve(&self, path: &str) -> RemoteResult<Entry> {
        self.gate.pass().await;
        self.service.resolve(self.user(), path).map_err(refused)
    }

    async fn create_folder(&self, path: &str) -> RemoteResult<Entry> {
        self.gate.pass().await;
        self.service.create_folder(self.user(), path, true).map_err(refused)
    }

    async fn has_blob(&self, hash: &str) -> RemoteResult<bool> {
        self.gate.pass().await;
        self.service.has_blob(self.user(), hash).map_err(refused)
    }

    async fn put_blob(&self, hash: &str, size: u64, mut source: Box<dyn Read + Send>) -> RemoteResult<()> {
        self.gate.pass().await;
        let mut bytes = Vec::new();
        source.read_to_end(&mut bytes).map_err(|error| RemoteError::Unavailable(error.to_string()))?;
        if !self.service.blob_wanted(self.user(), hash, size).map_err(refused)? {
            return Ok(());
        }
        let chunks = futures_util::stream::iter([Ok::<_, std::io::Error>(bytes)]);
        let verified = self.service.receive_blob(hash, size, chunks).await.map_err(refused)?;
        self.service.commit_blob(self.user(), verified).map_err(refused)
    }

    async fn create_object(&self, request: &CreateObjectRequest) -> RemoteResult<Entry> {
        self.gate.pass().await;
        self.service
            .create_object(self.user(), Some(self.device()), request.clone())
            .map(|created| created.entry)
            .map_err(refused)
    }

    async fn move_entries(&self, request: &MoveRequest) -> RemoteResult<MoveResult> {
        self.gate.pass().await;
        self.service.move_entries(self.user(), request).map_err(refused)
    }

    async fn delete_object(&self, id: &str, base_modseq: i64) -> RemoteResult<()> {
        self.gate.pass().await;
        self.service.delete_object(self.user(), id, Some(base_modseq)).map_err(refused)
    }

    async fn delete_folder(&self, id: &str) -> RemoteResult<()> {
        self.gate.pass().await;
        self.service.delete_folder(self.user(), id, false).map_err(refused)
    }

    async fn fetch(&self, entries: &[&Entry], sink: &mut (dyn PayloadSink + Send)) -> RemoteResult<()> {
        self.gate.pass().await;
        let mut parts = Vec::new();
        for entry in entries {
            let object = self.service.payload(&self.principal, &entry.id).map_err(refused)?;
            let bytes = std::fs::read(self.service.store.blob_path(&object.hash))
                .map_err(|error| RemoteError::Unavailable(error.to_string()))?;
            parts.push((object.hash, bytes));
        }
        for (index, (hash, bytes)) in parts.into_iter().enumerate() {
            sink.begin(index, &hash, bytes.len() as u64);
            sink.write(&bytes);
            sink.end();
        }
        Ok(())
    }
}
