//! The operator's word on device profiles: per device class, defaults where the user has set
//! nothing and bounds the user cannot pass. Merged here, without I/O: a device's stored
//! preferences (only the keys its user set) over its class's defaults, held within the bounds.

use crate::profile::{ContentPolicy, Mode, SyncProfile};
use jiff::{SignedDuration, Timestamp};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value};
use std::collections::BTreeMap;

/// The keys of a profile, as preferences and defaults name them.
pub const PROFILE_KEYS: [&str; 10] =
    ["mode", "include", "exclude", "filter", "fields", "content", "auto", "schedule", "zone", "max_download"];

/// Where a field of an effective profile came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The user's preference.
    User,
    /// The operator's default for the device's class.
    OperatorDefault,
    /// cpm's own default: neither the user nor the operator said anything.
    BuiltIn,
    /// The user's preference (or a default) was outside the operator's bounds and was held to them.
    OperatorBound,
}

/// Limits a class of devices cannot pass.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Bounds {
    pub mode: Option<Vec<Mode>>,
    pub content: Option<Vec<ContentPolicy>>,
    /// `false`: automatic sync is not allowed.
    pub auto: Option<bool>,
    pub min_schedule_interval: Option<SignedDuration>,
    /// The largest payload a device of the class may download (`max_object_bytes`).
    pub max_download: Option<u64>,
}

/// The operator's settings for one device class.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct ClassPolicy {
    /// The class name, for messages (`phone`).
    pub class: String,
    /// Profile keys and values used where the user has set nothing.
    pub defaults: Map<String, Value>,
    pub bounds: Bounds,
}

/// A device's profile as applied, and where each of its fields came from.
#[derive(Debug, Clone, PartialEq)]
pub struct Effective {
    pub profile: SyncProfile,
    pub sources: BTreeMap<String, Source>,
}

/// Applies a patch of preferences: each key replaces the stored one, `null` removes it (the
/// operator's default applies again). Unknown keys are refused.
pub fn merge_preferences(stored: &mut Map<String, Value>, patch: &Map<String, Value>) -> Result<(), String> {
    for (key, value) in patch {
        if !PROFILE_KEYS.contains(&key.as_str()) {
            return Err(format!("unknown profile key {key:?} (keys: {})", PROFILE_KEYS.join(", ")));
        }
        if value.is_null() {
            stored.remove(key);
        } else {
            stored.insert(key.clone(), value.clone());
        }
    }
    Ok(())
}

fn profile_of(merged: &Map<String, Value>) -> Result<SyncProfile, String> {
    serde_json::from_value(Value::Object(merged.clone())).map_err(|error| format!("bad profile: {error}"))
}

fn names<T: Serialize>(values: &[T]) -> String {
    values
        .iter()
        .filter_map(|value| serde_json::to_value(value).ok())
        .map(|value| value.as_str().map_or_else(|| value.to_string(), str::to_owned))
        .collect::<Vec<_>>()
        .join(", ")
}

impl ClassPolicy {
    /// The first bound `profile` passes, as a message naming the rule; `None` when within all.
    fn violation(&self, profile: &SyncProfile, now: Timestamp) -> Option<(&'static str, String)> {
        let class = &self.class;
        let rule = |key: &str| format!("class.{class}.bound.{key}");
        if let Some(allowed) = &self.bounds.mode
            && !allowed.contains(&profile.mode)
        {
            let message = format!("mode must be one of {} for {class} devices ({})", names(allowed), rule("mode"));
            return Some(("mode", message));
        }
        if let Some(allowed) = &self.bounds.content
            && !allowed.contains(&profile.content)
        {
            let message =
                format!("content must be one of {} for {class} devices ({})", names(allowed), rule("content"));
            return Some(("content", message));
        }
        if self.bounds.auto == Some(false) && profile.auto {
            return Some(("auto", format!("automatic sync is not allowed for {class} devices ({})", rule("auto"))));
        }
        if let Some(shortest) = self.bounds.min_schedule_interval
            && let Ok(Some(schedule)) = profile.periodic()
            && schedule.shortest_interval(now).is_some_and(|interval| interval < shortest)
        {
            let message = format!(
                "schedule {schedule} runs more often than every {shortest:#} allowed for {class} devices ({})",
                rule("min_schedule_interval")
            );
            return Some(("schedule", message));
        }
        if let Some(bound) = self.bounds.max_download
            && profile.max_download_bytes().ok().flatten().is_some_and(|max| max > bound)
        {
            let message =
                format!("max_download may be at most {bound} bytes for {class} devices ({})", rule("max_object_bytes"));
            return Some(("max_download", message));
        }
        None
    }

    /// Refuses preferences the bounds do not allow, with a message that names the rule.
    pub fn check(&self, preferences: &Map<String, Value>, now: Timestamp) -> Result<(), String> {
        let mut merged = self.defaults.clone();
        merged.extend(preferences.clone());
        let profile = profile_of(&merged)?;
        match self.violation(&profile, now) {
            Some((_, message)) => Err(message),
            None => Ok(()),
        }
    }

    /// The profile a device gets: its preferences over the class defaults, held within the
    /// bounds (which an operator may have tightened since the preferences were set).
    pub fn effective(&self, preferences: &Map<String, Value>, now: Timestamp) -> Result<Effective, String> {
        let mut sources = BTreeMap::new();
        let mut merged = Map::new();
        for key in PROFILE_KEYS {
            let (value, source) = match (preferences.get(key), self.defaults.get(key)) {
                (Some(value), _) => (Some(value), Source::User),
                (None, Some(value)) => (Some(value), Source::OperatorDefault),
                (None, None) => (None, Source::BuiltIn),
            };
            if let Some(value) = value {
                merged.insert(key.to_owned(), value.clone());
            }
            sources.insert(key.to_owned(), source);
        }
        let mut profile = profile_of(&merged)?;
        // Invariant: the profile a device gets lies within its class's bounds, whatever was
        // stored before the operator changed them. Each pass holds one field to its bound.
        for _ in 0..PROFILE_KEYS.len() {
            let Some((key, _)) = self.violation(&profile, now) else { break };
            match key {
                "mode" => {
                    profile.mode =
                        self.bounds.mode.as_ref().and_then(|allowed| allowed.first().copied()).unwrap_or_default()
                }
                "content" => {
                    profile.content =
                        self.bounds.content.as_ref().and_then(|allowed| allowed.first().copied()).unwrap_or_default();
                }
                "auto" => profile.auto = false,
                "max_download" => profile.max_download = None,
                _ => profile.schedule = None,
            }
            sources.insert(key.to_owned(), Source::OperatorBound);
        }
        // A device that set no limit of its own gets the operator's.
        if let Some(bound) = self.bounds.max_download
            && profile.max_download.is_none()
        {
            profile.max_download = Some(bound.to_string());
            sources.insert("max_download".to_owned(), Source::OperatorBound);
        }
        Ok(Effective { profile, sources })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn phone_policy() -> ClassPolicy {
        let defaults = serde_json::json!({"mode": "partial", "content": "stub", "auto": true});
        ClassPolicy {
            class: "phone".into(),
            defaults: defaults.as_object().cloned().unwrap_or_default(),
            bounds: Bounds {
                content: Some(vec![ContentPolicy::Stub]),
                min_schedule_interval: Some(SignedDuration::from_hours(1)),
                ..Bounds::default()
            },
        }
    }

    fn prefs(json: Value) -> Map<String, Value> {
        json.as_object().cloned().unwrap_or_default()
    }

    fn now() -> Timestamp {
        "2026-11-25T12:00:00Z".parse().expect("an instant")
    }

    #[test]
    fn defaults_fill_what_the_user_left_and_each_field_says_where_it_came_from() {
        let effective = phone_policy().effective(&prefs(serde_json::json!({"auto": false})), now()).expect("merges");
        assert_eq!(effective.profile.mode, Mode::Partial);
        assert_eq!(effective.profile.content, ContentPolicy::Stub);
        assert!(!effective.profile.auto);
        assert_eq!(effective.sources["auto"], Source::User);
        assert_eq!(effective.sources["content"], Source::OperatorDefault);
        assert_eq!(effective.sources["fields"], Source::BuiltIn);
    }

    #[test]
    fn a_preference_outside_the_bounds_is_refused_naming_the_rule() {
        let policy = phone_policy();
        let error = policy.check(&prefs(serde_json::json!({"content": "download"})), now()).expect_err("refused");
        assert_eq!(error, "content must be one of stub for phone devices (class.phone.bound.content)");
        let error = policy
            .check(&prefs(serde_json::json!({"schedule": "*/10 * * * *", "zone": "UTC"})), now())
            .expect_err("refused");
        assert!(error.ends_with("(class.phone.bound.min_schedule_interval)"), "{error}");
        assert!(policy.check(&prefs(serde_json::json!({"schedule": "daily 24:00", "zone": "UTC"})), now()).is_ok());
    }

    #[test]
    fn bounds_tightened_later_hold_stored_preferences() {
        let mut policy = phone_policy();
        policy.bounds.auto = Some(false);
        let stored = prefs(serde_json::json!({"content": "download", "auto": true}));
        let effective = policy.effective(&stored, now()).expect("merges");
        assert_eq!(effective.profile.content, ContentPolicy::Stub);
        assert!(!effective.profile.auto);
        assert_eq!(effective.sources["content"], Source::OperatorBound);
        assert_eq!(effective.sources["auto"], Source::OperatorBound);
    }

    #[test]
    fn the_largest_download_is_bounded_and_given_where_the_user_set_none() {
        let policy = ClassPolicy {
            class: "tablet".into(),
            bounds: Bounds { max_download: Some(20_000_000), ..Bounds::default() },
            ..ClassPolicy::default()
        };
        let unset = policy.effective(&Map::new(), now()).expect("merges");
        assert_eq!(unset.profile.max_download.as_deref(), Some("20000000"));
        assert_eq!(unset.sources["max_download"], Source::OperatorBound);
        let smaller = prefs(serde_json::json!({"max_download": "5MB"}));
        policy.check(&smaller, now()).expect("within the bound");
        let effective = policy.effective(&smaller, now()).expect("merges");
        assert_eq!(
            (effective.profile.max_download.as_deref(), effective.sources["max_download"]),
            (Some("5MB"), Source::User)
        );
        let larger = prefs(serde_json::json!({"max_download": "1GB"}));
        let error = policy.check(&larger, now()).expect_err("refused");
        assert_eq!(
            error,
            "max_download may be at most 20000000 bytes for tablet devices (class.tablet.bound.max_object_bytes)"
        );
        let held = policy.effective(&larger, now()).expect("merges");
        assert_eq!(held.profile.compile().expect("compiles").holding().max_download, Some(20_000_000));
        let holding = held.profile.compile().expect("compiles").holding();
        assert!(
            holding.downloads(Some(20_000_000)) && !holding.downloads(Some(20_000_001)) && !holding.downloads(None)
        );
    }

    #[test]
    fn preferences_are_patched_key_by_key() {
        let mut stored = prefs(serde_json::json!({"content": "stub", "auto": true}));
        merge_preferences(&mut stored, &prefs(serde_json::json!({"auto": null, "mode": "partial"}))).expect("merges");
        assert_eq!(Value::Object(stored.clone()), serde_json::json!({"content": "stub", "mode": "partial"}));
        let error = merge_preferences(&mut stored, &prefs(serde_json::json!({"colour": "blue"}))).expect_err("refused");
        assert!(error.starts_with("unknown profile key \"colour\""), "{error}");
    }
}
