//! Sync profiles: which objects a device holds (record filter), which of their details
//! (field filter), whether it keeps their content or only a stub with a link, and what starts
//! its syncs besides the user (the store changing, a schedule).

use crate::filter::{Filter, ObjectFacts, parse_size};
use crate::pattern::Pattern;
use crate::schedule::{Schedule, ScheduleError};
use jiff::Timestamp;
use serde::{Deserialize, Serialize};
use std::collections::BTreeSet;
use std::fmt;

/// Details every device keeps of every object, whatever its field filter. The hash is what a
/// device recognizes an object's content by when it meets it on its own disk (an index lost, a
/// file moved), so even a stub keeps it.
pub const ALWAYS_KEPT: [&str; 7] = ["id", "kind", "folder", "name", "modseq", "link", "hash"];

/// Details a field filter may name (the names of `Entry` in the API and in `ls --json`).
pub const FIELDS: [&str; 13] = [
    "content_type",
    "size",
    "created",
    "modified",
    "flags",
    "from",
    "to",
    "cc",
    "subject",
    "date",
    "message_id",
    "conversation_id",
    "attachments",
];

/// Details a `download` device keeps whatever its field filter: it checks content against them.
pub const KEPT_WITH_CONTENT: [&str; 1] = ["size"];

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Mode {
    #[default]
    Full,
    Partial,
}

#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ContentPolicy {
    #[default]
    Download,
    Stub,
}

/// A device's sync profile, as kept on the server.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct SyncProfile {
    #[serde(default)]
    pub mode: Mode,
    /// Folder subtrees (globs over store paths) the device holds; all when empty.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub include: Vec<String>,
    /// Subtrees it never holds.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub exclude: Vec<String>,
    /// A record filter expression over the objects' attributes (see [`crate::filter`]).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub filter: Option<String>,
    /// The details kept of each object, from [`FIELDS`]; all when absent.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub fields: Option<Vec<String>>,
    #[serde(default)]
    pub content: ContentPolicy,
    /// Sync whenever the store changes in a way that matters to this device (R3).
    #[serde(default)]
    pub auto: bool,
    /// Periodic sync (R2): a 5-field cron pattern, or `daily HH:MM`; none when absent or empty
    /// (empty: the user asked for none, whatever the operator's default).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub schedule: Option<String>,
    /// The IANA zone the schedule is read in.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub zone: Option<String>,
    /// The largest payload a `download` device downloads (`20MB`); larger objects stay stubs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max_download: Option<String>,
}

/// How a device holds payloads: whether it downloads them, and up to what size.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Holding {
    pub content: ContentPolicy,
    pub max_download: Option<u64>,
}

impl Holding {
    /// Whether an object of `size` bytes (unknown: `None`) is downloaded rather than stubbed.
    pub fn downloads(&self, size: Option<u64>) -> bool {
        self.content == ContentPolicy::Download
            && self.max_download.is_none_or(|max| size.is_some_and(|size| size <= max))
    }
}

impl From<ContentPolicy> for Holding {
    fn from(content: ContentPolicy) -> Self {
        Self { content, max_download: None }
    }
}

/// A profile checked and ready to apply.
#[derive(Debug, Clone)]
pub struct CompiledProfile {
    profile: SyncProfile,
    include: Vec<Pattern>,
    include_roots: Vec<String>,
    exclude: Vec<Pattern>,
    filter: Option<Filter>,
    fields: Option<BTreeSet<String>>,
    max_download: Option<u64>,
}

/// A subtree glob: `/music` alone means the folder and everything below it.
fn subtree_patterns(raw: &str) -> Result<Vec<Pattern>, String> {
    if !raw.starts_with('/') {
        return Err(format!("{raw:?}: folder globs are absolute store paths, like /content/**"));
    }
    let trimmed = raw.trim_end_matches('/');
    let trimmed = if trimmed.is_empty() { "/" } else { trimmed };
    if Pattern::is_pattern(trimmed) {
        Ok(vec![Pattern::parse(trimmed)?])
    } else {
        let below = if trimmed == "/" { "/**".to_owned() } else { format!("{trimmed}/**") };
        Ok(vec![Pattern::parse(trimmed)?, Pattern::parse(&below)?])
    }
}

/// The literal folder a subtree glob starts from: `/content/**` → `/content`.
fn literal_root(raw: &str) -> String {
    let literal = raw.find(['*', '?', '[']).map_or(raw, |at| &raw[..at]);
    let root = if Pattern::is_pattern(raw) { literal.rsplit_once('/').map_or("", |(root, _)| root) } else { literal };
    let root = root.trim_end_matches('/');
    if root.is_empty() { "/".to_owned() } else { root.to_owned() }
}

/// True when `path` is `root` or below it, comparing whole names.
fn within(path: &str, root: &str) -> bool {
    root == "/" || path == root || path.strip_prefix(root).is_some_and(|rest| rest.starts_with('/'))
}

/// How a profile writes a daily schedule.
const DAILY: &str = "daily ";

impl SyncProfile {
    /// The periodic schedule, read in the profile's zone (UTC when it names none).
    pub fn periodic(&self) -> Result<Option<Schedule>, ScheduleError> {
        let zone = self.zone.as_deref().unwrap_or("UTC");
        self.schedule
            .as_deref()
            .filter(|spec| !spec.is_empty())
            .map(|spec| match spec.strip_prefix(DAILY) {
                Some(time) => Schedule::daily(time, zone),
                None => Schedule::cron(spec, zone),
            })
            .transpose()
    }

    /// Sets a daily schedule at `HH:MM` (checked by [`Self::compile`]).
    pub fn set_daily(&mut self, time: &str) {
        self.schedule = Some(format!("{DAILY}{}", time.trim()));
    }

    /// What decides the records and details a device holds: profiles with equal keys give the
    /// same view, whatever their triggers.
    pub fn view_key(&self) -> String {
        let view = Self { auto: false, schedule: None, zone: None, ..self.clone() };
        serde_json::to_string(&view).unwrap_or_default()
    }

    /// A short fingerprint of [`Self::view_key`]: a sync names the view it planned with, so the
    /// store can refuse pages read through a profile changed since.
    pub fn view_tag(&self) -> String {
        blake3::hash(self.view_key().as_bytes()).to_hex()[..16].to_owned()
    }

    /// [`Self::compile`], for a profile being set: its zone must be one too, even before a
    /// schedule reads it. (A profile stored before zones were checked still compiles, so its
    /// device keeps syncing.)
    pub fn compile_new(&self) -> Result<CompiledProfile, String> {
        if let Some(zone) = self.zone.as_deref()
            && jiff::tz::TimeZone::get(zone).is_err()
        {
            return Err(format!("unknown time zone {zone:?} (an IANA name, e.g. Europe/Paris)"));
        }
        self.compile()
    }

    pub fn compile(&self) -> Result<CompiledProfile, String> {
        self.periodic().map_err(|error| error.to_string())?;
        let filtered = !self.include.is_empty() || !self.exclude.is_empty() || self.filter.is_some();
        if self.mode == Mode::Full && filtered {
            return Err("a full profile holds every object: set mode partial to filter records".into());
        }
        let mut include = Vec::new();
        for raw in &self.include {
            include.extend(subtree_patterns(raw)?);
        }
        let mut exclude = Vec::new();
        for raw in &self.exclude {
            exclude.extend(subtree_patterns(raw)?);
        }
        let filter = self.filter.as_deref().map(Filter::parse).transpose().map_err(|error| error.to_string())?;
        let max_download = self.max_download_bytes()?;
        let fields = match &self.fields {
            None => None,
            Some(names) => {
                let mut kept = BTreeSet::new();
                for name in names {
                    if ALWAYS_KEPT.contains(&name.as_str()) {
                        continue;
                    }
                    if !FIELDS.contains(&name.as_str()) {
                        return Err(format!(
                            "unknown field {name:?} (fields: {}; always kept: {})",
                            FIELDS.join(", "),
                            ALWAYS_KEPT.join(", ")
                        ));
                    }
                    kept.insert(name.clone());
                }
                if self.content == ContentPolicy::Download {
                    kept.extend(KEPT_WITH_CONTENT.map(str::to_owned));
                }
                Some(kept)
            }
        };
        Ok(CompiledProfile {
            include_roots: self.include.iter().map(|raw| literal_root(raw)).collect(),
            profile: self.clone(),
            include,
            exclude,
            filter,
            fields,
            max_download,
        })
    }

    /// [`Self::max_download`] in bytes.
    pub fn max_download_bytes(&self) -> Result<Option<u64>, String> {
        self.max_download
            .as_deref()
            .map(|raw| parse_size(raw).map_err(|error| format!("max_download: {error}")))
            .transpose()
    }
}

impl CompiledProfile {
    pub fn profile(&self) -> &SyncProfile {
        &self.profile
    }

    pub fn content(&self) -> ContentPolicy {
        self.profile.content
    }

    pub fn holding(&self) -> Holding {
        Holding { content: self.profile.content, max_download: self.max_download }
    }

    pub fn wants_object(&self, object: &ObjectFacts<'_>, now: Timestamp) -> bool {
        if self.profile.mode == Mode::Full {
            return true;
        }
        (self.include.is_empty() || self.include.iter().any(|pattern| pattern.matches_path(object.path)))
            && !self.exclude.iter().any(|pattern| pattern.matches_path(object.path))
            && self.filter.as_ref().is_none_or(|filter| filter.matches(object, now))
    }

    /// A folder is held when it lies in an included subtree or on the way to one, and is not
    /// excluded.
    pub fn wants_folder(&self, path: &str) -> bool {
        if self.profile.mode == Mode::Full {
            return true;
        }
        let on_the_way = self.include_roots.is_empty()
            || self.include_roots.iter().any(|root| within(path, root) || within(root, path));
        on_the_way && !self.exclude.iter().any(|pattern| pattern.matches_path(path))
    }

    /// True when moving a folder can move objects below it into or out of this profile.
    pub fn depends_on_paths(&self) -> bool {
        self.profile.mode == Mode::Partial
            && (!self.include.is_empty()
                || !self.exclude.is_empty()
                || self.filter.as_ref().is_some_and(Filter::reads_path))
    }

    /// The ages the record filter compares with: as time passes, objects cross them into or
    /// out of the view.
    pub fn ages(&self) -> Vec<jiff::SignedDuration> {
        match (&self.filter, self.profile.mode) {
            (Some(filter), Mode::Partial) => filter.ages(),
            _ => Vec::new(),
        }
    }

    /// Whether the device keeps this detail of its objects.
    pub fn keeps(&self, field: &str) -> bool {
        ALWAYS_KEPT.contains(&field) || self.fields.as_ref().is_none_or(|kept| kept.contains(field))
    }
}

impl fmt::Display for SyncProfile {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mode = match self.mode {
            Mode::Full => "full",
            Mode::Partial => "partial",
        };
        let content = match self.content {
            ContentPolicy::Download => "download",
            ContentPolicy::Stub => "stub",
        };
        write!(f, "{mode}, {content}")?;
        if !self.include.is_empty() {
            write!(f, "; include {}", self.include.join(" "))?;
        }
        if !self.exclude.is_empty() {
            write!(f, "; exclude {}", self.exclude.join(" "))?;
        }
        if let Some(filter) = &self.filter {
            write!(f, "; filter {filter}")?;
        }
        match &self.fields {
            Some(fields) => write!(f, "; fields {}", fields.join(","))?,
            None => write!(f, "; all fields")?,
        }
        if let Some(max) = &self.max_download
            && self.content == ContentPolicy::Download
        {
            write!(f, "; downloads up to {max}")?;
        }
        if self.auto {
            write!(f, "; syncs when the store changes")?;
        }
        match self.periodic() {
            Ok(Some(schedule)) => write!(f, "; syncs {schedule}"),
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::kind::ObjectKind;

    fn facts<'a>(path: &'a str, content_type: &'a str) -> ObjectFacts<'a> {
        ObjectFacts {
            path,
            name: path.rsplit('/').next().unwrap_or_default(),
            kind: ObjectKind::File,
            content_type,
            size: 10,
            created: Timestamp::UNIX_EPOCH,
            modified: Timestamp::UNIX_EPOCH,
            date: None,
            flags: &[],
            from: None,
            to: &[],
            subject: None,
        }
    }

    fn phone() -> CompiledProfile {
        SyncProfile {
            mode: Mode::Partial,
            include: vec!["/content/**".into()],
            exclude: vec!["/content/private".into()],
            filter: Some(r#"type ~ "audio/*""#.into()),
            fields: Some(vec!["name".into(), "size".into(), "content_type".into(), "modified".into()]),
            content: ContentPolicy::Stub,
            ..SyncProfile::default()
        }
        .compile()
        .expect("valid profile")
    }

    #[test]
    fn partial_profiles_select_objects_by_subtree_and_filter() {
        let phone = phone();
        let now = Timestamp::UNIX_EPOCH;
        assert!(phone.wants_object(&facts("/content/favourite song/song1.mp3", "audio/mpeg"), now));
        assert!(phone.wants_object(&facts("/content/song1.mp3", "audio/mpeg"), now));
        assert!(!phone.wants_object(&facts("/content/photo.jpg", "image/jpeg"), now));
        assert!(!phone.wants_object(&facts("/music/song1.mp3", "audio/mpeg"), now));
        assert!(!phone.wants_object(&facts("/content/private/secret.mp3", "audio/mpeg"), now));
        assert!(phone.depends_on_paths());
        let everything = SyncProfile::default().compile().expect("valid");
        assert!(everything.wants_object(&facts("/anything", "x/y"), now) && !everything.depends_on_paths());
    }

    #[test]
    fn partial_profiles_hold_the_folders_on_the_way_to_their_subtrees() {
        let phone = phone();
        for held in ["/", "/content", "/content/favourite song", "/content/a/b"] {
            assert!(phone.wants_folder(held), "{held}");
        }
        for not_held in ["/inbox", "/contents", "/content/private", "/content/private/deeper"] {
            assert!(!phone.wants_folder(not_held), "{not_held}");
        }
    }

    #[test]
    fn field_filters_keep_the_named_details_and_the_essentials() {
        let phone = phone();
        for kept in ["id", "name", "folder", "modseq", "link", "kind", "hash", "size", "content_type", "modified"] {
            assert!(phone.keeps(kept), "{kept}");
        }
        for dropped in ["subject", "from", "created"] {
            assert!(!phone.keeps(dropped), "{dropped}");
        }
        let pc = SyncProfile { fields: Some(vec!["name".into()]), ..SyncProfile::default() }.compile().expect("valid");
        assert!(pc.keeps("hash") && pc.keeps("size"), "a download device keeps what verifies its content");
    }

    #[test]
    fn refuses_inconsistent_profiles_with_reasons() {
        let full_filtered = SyncProfile { filter: Some("kind = file".into()), ..SyncProfile::default() };
        assert!(full_filtered.compile().is_err_and(|error| error.contains("mode partial")));
        let bad_field = SyncProfile { fields: Some(vec!["colour".into()]), ..SyncProfile::default() };
        assert!(bad_field.compile().is_err_and(|error| error.contains("unknown field \"colour\"")));
        let relative = SyncProfile { mode: Mode::Partial, include: vec!["content".into()], ..SyncProfile::default() };
        assert!(relative.compile().is_err());
        let bad_filter =
            SyncProfile { mode: Mode::Partial, filter: Some("size < lots".into()), ..SyncProfile::default() };
        assert!(bad_filter.compile().is_err_and(|error| error.contains("column")));
    }

    #[test]
    fn summarizes_itself() {
        assert_eq!(
            phone().profile().to_string(),
            "partial, stub; include /content/**; exclude /content/private; filter type ~ \"audio/*\"; fields name,size,content_type,modified"
        );
    }

    #[test]
    fn triggers_are_checked_shown_and_leave_the_view_alone() {
        let mut pc = SyncProfile { auto: false, zone: Some("Europe/Paris".into()), ..SyncProfile::default() };
        pc.set_daily("24:00");
        assert!(pc.compile().is_ok());
        assert_eq!(pc.to_string(), "full, download; all fields; syncs daily 24:00 (Europe/Paris)");
        let json = serde_json::to_value(&pc).expect("json");
        assert_eq!(json["schedule"], "daily 24:00");
        assert_eq!(serde_json::from_value::<SyncProfile>(json).expect("back"), pc);

        let phone = SyncProfile { auto: true, ..SyncProfile::default() };
        assert_eq!(phone.to_string(), "full, download; all fields; syncs when the store changes");
        assert_eq!(phone.view_key(), pc.view_key(), "triggers do not change what a device holds");
        let stub = SyncProfile { content: ContentPolicy::Stub, ..SyncProfile::default() };
        assert_ne!(stub.view_key(), pc.view_key());

        for (schedule, zone) in [("daily 25:00", "UTC"), ("0 0 * *", "UTC"), ("0 0 * * *", "Nowhere/Town")] {
            let bad =
                SyncProfile { schedule: Some(schedule.into()), zone: Some(zone.into()), ..SyncProfile::default() };
            assert!(bad.compile().is_err(), "{schedule} in {zone}");
        }
        let unscheduled = SyncProfile { zone: Some("Mars/Olympus".into()), ..SyncProfile::default() };
        assert!(unscheduled.compile_new().is_err_and(|error| error.contains("unknown time zone")));
        assert!(unscheduled.compile().is_ok(), "stored before zones were checked, it still syncs");
    }
}
