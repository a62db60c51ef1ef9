//! Device profiles as they apply: a user's preferences over the operator's defaults for the
//! device's class, held within the operator's bounds; the zone it registered in when none is set.

use crate::{Classes, ErrorKind, Result, Service, ServiceError};
use cpm_core::policy::{ClassPolicy, Effective, merge_preferences};
use cpm_proto::ProfileState;
use cpm_store::{DeviceProfile, UserId};
use jiff::Timestamp;
use serde_json::{Map, Value};

/// A device's profile as it applies, with what makes it up.
pub struct DeviceProfileView {
    pub effective: Effective,
    pub revision: i64,
    pub policy: ClassPolicy,
    /// The keys its user set.
    pub preferences: Map<String, Value>,
}

impl DeviceProfileView {
    pub fn state(self) -> ProfileState {
        let Effective { profile, sources } = self.effective;
        ProfileState { summary: profile.to_string(), profile, revision: self.revision, sources }
    }
}

/// The profile of a device record already read.
pub fn profile_of(record: DeviceProfile, classes: &Classes, now: Timestamp) -> Result<DeviceProfileView> {
    let preferences = match record.preferences {
        Some(json) => serde_json::from_str(&json)
            .map_err(|error| ServiceError::internal(format!("stored preferences do not parse: {error}")))?,
        None => Map::new(),
    };
    let policy = classes
        .get(&record.class)
        .cloned()
        .unwrap_or_else(|| ClassPolicy { class: record.class.clone(), ..ClassPolicy::default() });
    let mut effective = policy.effective(&preferences, now).map_err(ServiceError::internal)?;
    if effective.profile.zone.is_none() {
        effective.profile.zone = record.time_zone;
    }
    Ok(DeviceProfileView { effective, revision: record.revision, policy, preferences })
}

fn refused(code: &'static str, message: String) -> ServiceError {
    ServiceError::new(ErrorKind::Invalid, code, message)
}

impl Service {
    /// The profile a device syncs by.
    pub fn device_profile(&self, user: UserId, device: &str) -> Result<DeviceProfileView> {
        profile_of(self.store.device_profile(user, device)?, &self.classes(), self.clock.now())
    }

    /// Changes a device's preferences: each key of `patch` replaces the stored one, `null`
    /// gives it back to the operator's default. A result outside the class's bounds, or one
    /// that does not compile, is refused and nothing changes.
    pub fn set_preferences(&self, user: UserId, device: &str, patch: &Map<String, Value>) -> Result<ProfileState> {
        let now = self.clock.now();
        let view = self.device_profile(user, device)?;
        let mut preferences = view.preferences;
        merge_preferences(&mut preferences, patch).map_err(|error| refused("invalid_profile", error))?;
        view.policy.check(&preferences, now).map_err(|error| refused("outside_bounds", error))?;
        let effective = view.policy.effective(&preferences, now).map_err(|error| refused("invalid_profile", error))?;
        effective.profile.compile_new().map_err(|error| refused("invalid_profile", error))?;
        let json = serde_json::to_string(&preferences).map_err(|error| ServiceError::internal(error.to_string()))?;
        self.store.set_device_profile(user, device, &json)?;
        Ok(self.device_profile(user, device)?.state())
    }

    /// The largest payload a device may download, when it has a limit.
    pub fn download_limit(&self, user: UserId, device: &str) -> Result<Option<u64>> {
        let record = self.store.device_profile(user, device)?;
        let classes = self.classes();
        let policy = classes.get(&record.class);
        // Downloads are the hot path: most devices have no limit, and that is told without merging.
        let limited = policy
            .is_some_and(|policy| policy.bounds.max_download.is_some() || policy.defaults.contains_key("max_download"))
            || record.preferences.as_deref().is_some_and(|json| json.contains("\"max_download\""));
        if !limited {
            return Ok(None);
        }
        let view = profile_of(record, &classes, self.clock.now())?;
        view.effective.profile.max_download_bytes().map_err(ServiceError::internal)
    }
}
