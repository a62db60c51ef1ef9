//! What every handler shares, and the bridge from async handlers to the blocking store.

use crate::config::ServerConfig;
use crate::error::ApiError;
use crate::metrics::Metrics;
use cpm_core::Clock;
use cpm_store::{Principal, Store, StoreError, secret};
use std::sync::Arc;

pub struct AppState {
    pub store: Arc<dyn Store>,
    pub config: ServerConfig,
    /// The operator's class settings, replaced whole when the settings are reloaded.
    pub classes: std::sync::RwLock<Arc<Classes>>,
    /// Rings after every change the store accepts: connected devices then look for news.
    pub journal: tokio::sync::broadcast::Sender<()>,
    /// Event sockets open now, by device id.
    pub online: std::sync::Mutex<std::collections::HashMap<String, usize>>,
    /// Base of object links, without a trailing slash.
    pub public_url: String,
    pub metrics: Metrics,
    pub clock: Arc<dyn Clock>,
}

pub type SharedState = Arc<AppState>;

/// The operator's defaults and bounds, by device class name.
pub type Classes = std::collections::BTreeMap<String, cpm_core::policy::ClassPolicy>;

impl AppState {
    /// Counts an event socket of `device` opening (`+1`) or closing (`-1`).
    pub fn connected(&self, device: &str, opened: bool) {
        let mut online = self.online.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let count = online.entry(device.to_owned()).or_default();
        *count = if opened { *count + 1 } else { count.saturating_sub(1) };
        if *count == 0 {
            online.remove(device);
        }
    }

    pub fn is_online(&self, device: &str) -> bool {
        self.online.lock().unwrap_or_else(std::sync::PoisonError::into_inner).contains_key(device)
    }

    /// The class settings in force now.
    pub fn classes(&self) -> Arc<Classes> {
        match self.classes.read() {
            Ok(classes) => Arc::clone(&classes),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts new class settings in force for every request that starts from now on.
    pub fn set_classes(&self, classes: Classes) {
        let fresh = Arc::new(classes);
        match self.classes.write() {
            Ok(mut current) => *current = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
    }

    /// Runs a store call on a blocking thread.
    pub async fn run<T: Send + 'static>(
        &self,
        call: impl FnOnce(&dyn Store) -> Result<T, StoreError> + Send + 'static,
    ) -> Result<T, ApiError> {
        let store = Arc::clone(&self.store);
        tokio::task::spawn_blocking(move || call(store.as_ref()))
            .await
            .map_err(|error| ApiError::from(StoreError::Internal(format!("store task failed: {error}"))))?
            .map_err(ApiError::from)
    }

    /// The device a request comes from; profiles and the sync feed belong to a device.
    pub fn device_of(principal: &Principal) -> Result<String, ApiError> {
        principal.device_id.clone().ok_or_else(|| {
            ApiError::new(
                axum::http::StatusCode::FORBIDDEN,
                "device_required",
                "this needs a device token: register a device (cpm device register)",
            )
        })
    }

    pub fn link(&self, object_id: &str) -> String {
        format!("{}/v1/objects/{object_id}/content", self.public_url)
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
        state.run(move |store| store.authenticate(&hash)).await.map(Auth)
    }
}
