//! What every handler shares, and the bridge from async handlers to the blocking store.

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use cpm_service::{Service, ServiceError};
use cpm_store::{Principal, StoreError, UserId, secret};
use std::collections::{HashMap, HashSet};
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};
use tokio::sync::watch;

pub struct AppState {
    /// The store with the operator's settings in force: every rule the handlers apply.
    pub service: Arc<Service>,
    pub config: ServerConfig,
    /// Rings with the user's id after every change the store accepts for that user: the user's
    /// connected devices then look for news.
    pub journal: tokio::sync::broadcast::Sender<UserId>,
    /// Devices with an event socket open now.
    pub online: Mutex<HashMap<String, Presence>>,
    /// Devices told (or due to be told) to sync by their schedule, that have not synced since.
    pub owed: Mutex<HashSet<String>>,
    /// Rings when what decides the schedules may have changed: a profile, a device, the settings.
    pub timers_changed: tokio::sync::Notify,
    pub metrics: Metrics,
}

pub type SharedState = Arc<AppState>;

/// A device's open event sockets, and the bell that tells them all to sync now.
pub struct Presence {
    sockets: usize,
    nudge: watch::Sender<()>,
}

/// One open event socket; counted as online until dropped.
pub struct Attached {
    state: SharedState,
    device: String,
    /// Changes when the device must sync now.
    pub nudges: watch::Receiver<()>,
}

impl Drop for Attached {
    fn drop(&mut self) {
        let mut online = lock(&self.state.online);
        if let Some(presence) = online.get_mut(&self.device) {
            presence.sockets = presence.sockets.saturating_sub(1);
            if presence.sockets == 0 {
                online.remove(&self.device);
            }
        }
        self.state.metrics.connected_devices.dec();
    }
}

fn lock<T>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex.lock().unwrap_or_else(PoisonError::into_inner)
}

impl AppState {
    /// Counts an event socket of `device` as open until the returned value is dropped.
    pub fn attach(self: &Arc<Self>, device: &str) -> Attached {
        let mut online = lock(&self.online);
        let presence =
            online.entry(device.to_owned()).or_insert_with(|| Presence { sockets: 0, nudge: watch::channel(()).0 });
        presence.sockets += 1;
        let nudges = presence.nudge.subscribe();
        drop(online);
        self.metrics.connected_devices.inc();
        Attached { state: Arc::clone(self), device: device.to_owned(), nudges }
    }

    pub fn is_online(&self, device: &str) -> bool {
        lock(&self.online).contains_key(device)
    }

    /// Tells the connected ones of `devices` to sync now; returns how many were connected.
    pub fn nudge<'a>(&self, devices: impl IntoIterator<Item = &'a str>) -> usize {
        let online = lock(&self.online);
        devices
            .into_iter()
            .filter_map(|device| online.get(device))
            .map(|presence| presence.nudge.send_replace(()))
            .count()
    }

    /// Adds `devices` to those owed a scheduled sync.
    pub fn owe(&self, devices: impl IntoIterator<Item = String>) {
        lock(&self.owed).extend(devices);
    }

    /// Replaces the whole owed list (read afresh from the store).
    pub fn set_owed(&self, devices: impl IntoIterator<Item = String>) {
        let mut owed = lock(&self.owed);
        owed.clear();
        owed.extend(devices);
    }

    pub fn is_owed(&self, device: &str) -> bool {
        lock(&self.owed).contains(device)
    }

    /// Takes a device off the owed list; true when it was on it.
    pub fn settle(&self, device: &str) -> bool {
        lock(&self.owed).remove(device)
    }

    /// Runs a service call on a blocking thread.
    pub async fn call<T: Send + 'static>(
        &self,
        call: impl FnOnce(&Service) -> Result<T, ServiceError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let service = Arc::clone(&self.service);
        tokio::task::spawn_blocking(move || call(&service))
            .await
            .map_err(|error| ApiError::from(ServiceError::internal(format!("store task failed: {error}"))))?
            .map_err(ApiError::from)
    }

    /// The device a request comes from; profiles and the sync feed belong to a device.
    pub fn device_of(principal: &Principal) -> Result<String, ApiError> {
        Ok(Service::device_of(principal)?.to_owned())
    }
}

/// The authenticated caller.
///
/// Invariant: every request that touches a store carries one, and every store call it makes is
/// scoped to `principal.user_id`; the store's queries filter by that user, so another user's ids
/// answer 404 exactly as ids that never existed.
pub struct Auth(pub Principal);

impl axum::extract::FromRequestParts<SharedState> for Auth {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut axum::http::request::Parts, state: &SharedState) -> Result<Self, ApiError> {
        let token = parts
            .headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|value| value.to_str().ok())
            .and_then(|value| value.strip_prefix("Bearer "))
            .map(str::trim)
            .filter(|token| !token.is_empty())
            .ok_or_else(|| ApiError::from(StoreError::Unauthorized))?;
        let hash = secret::token_hash(token);
        let principal = state.call(move |service| Ok(service.store.authenticate(&hash)?)).await?;
        if let Some(Acting(user)) = parts.extensions.get::<Acting>() {
            // Set once per request; a second extractor finds it set to the same user.
            let _ = user.set(principal.user_id);
        }
        Ok(Auth(principal))
    }
}

/// Filled with the user a request acts for once it is authenticated, so that what runs after the
/// handler knows whose store changed.
#[derive(Clone, Default)]
pub struct Acting(pub Arc<std::sync::OnceLock<UserId>>);
