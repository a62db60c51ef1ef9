//! The service layer: one set of rules under every front.
//!
//! The HTTP API, the scheduler, the hint sockets and the device simulation all call this layer;
//! none of them decides on its own what a device may see ([`view`]), what a profile means
//! ([`profiles`]), or how a name, an object or a payload is checked ([`tree`], [`content`]).
//! Calls are blocking (the store is); async fronts run them on a blocking thread.

pub mod content;
pub mod entries;
mod error;
pub mod profiles;
pub mod tree;
pub mod view;

pub use error::{ErrorKind, Result, ServiceError};

use cpm_core::Clock;
use cpm_core::policy::ClassPolicy;
use cpm_store::{Principal, Store};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, RwLock};

/// The operator's defaults and bounds, by device class name.
pub type Classes = std::collections::BTreeMap<String, ClassPolicy>;

/// Sizes the operator allows.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// The largest payload one object may have.
    pub max_object_bytes: u64,
    /// The largest message that is parsed for its headers.
    pub max_message_bytes: u64,
}

/// The store with the operator's settings in force.
pub struct Service {
    pub store: Arc<dyn Store>,
    pub clock: Arc<dyn Clock>,
    pub limits: Limits,
    /// Base of object links, without a trailing slash.
    public_url: String,
    /// Replaced whole when the settings are reloaded.
    classes: RwLock<Arc<Classes>>,
    /// What each user's live objects may take, in bytes; 0: no limit.
    quota_bytes: AtomicU64,
}

impl Service {
    pub fn new(
        store: Arc<dyn Store>,
        clock: Arc<dyn Clock>,
        limits: Limits,
        public_url: &str,
        classes: Classes,
        quota_bytes: Option<u64>,
    ) -> Self {
        Self {
            store,
            clock,
            limits,
            public_url: public_url.trim_end_matches('/').to_owned(),
            classes: RwLock::new(Arc::new(classes)),
            quota_bytes: AtomicU64::new(quota_bytes.unwrap_or(0)),
        }
    }

    pub fn public_url(&self) -> &str {
        &self.public_url
    }

    /// The link of an object's payload: stable across moves, for it names the object's id.
    pub fn link(&self, object_id: &str) -> String {
        format!("{}/v1/objects/{object_id}/content", self.public_url)
    }

    /// The class settings in force now.
    pub fn classes(&self) -> Arc<Classes> {
        match self.classes.read() {
            Ok(classes) => Arc::clone(&classes),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Puts new class settings and quota in force for every call that starts from now on.
    pub fn set_settings(&self, classes: Classes, quota_bytes: Option<u64>) {
        let fresh = Arc::new(classes);
        match self.classes.write() {
            Ok(mut current) => *current = fresh,
            Err(poisoned) => *poisoned.into_inner() = fresh,
        }
        self.quota_bytes.store(quota_bytes.unwrap_or(0), Ordering::Relaxed);
    }

    /// The quota in force now.
    pub fn quota_bytes(&self) -> Option<u64> {
        Some(self.quota_bytes.load(Ordering::Relaxed)).filter(|quota| *quota > 0)
    }

    /// The device a call comes from; profiles and the sync feed belong to a device.
    pub fn device_of(principal: &Principal) -> Result<&str> {
        principal.device_id.as_deref().ok_or_else(|| {
            ServiceError::new(
                ErrorKind::Forbidden,
                "device_required",
                "this needs a device token: register a device (cpm device register)",
            )
        })
    }
}
