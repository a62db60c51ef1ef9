//! The operator's settings: `cpm serve --config operator.toml`.
//!
//! ```toml
//! [server]
//! listen = "127.0.0.1:7373"
//! public_url = "https://cpm.example.net"   # base of every object link; default: http://<listen>
//! max_object_bytes = "4GiB"                # larger uploads get 413
//! max_message_bytes = "64MiB"              # messages are parsed whole, so they have their own cap
//! tombstone_retention = "30d"              # older cursors get 410 resync_required
//! blob_grace = "1h"                        # how long uploaded content may wait for its object
//! gc_interval = "10m"
//!
//! [class.phone.default]                    # profile keys used where the user set nothing
//! mode = "partial"
//! content = "stub"
//! [class.phone.bound]                      # what the user cannot go past
//! content = ["stub"]
//! min_schedule_interval = "1h"
//! max_object_bytes = "20MB"                # payloads over this are never downloaded
//!
//! [user]
//! quota_bytes = "10GB"                     # what each user's live objects may take
//! ```

use cpm_core::DeviceClass;
use cpm_core::policy::{Bounds, ClassPolicy, merge_preferences};
use cpm_core::profile::{ContentPolicy, Mode};
use cpm_store::StoreSettings;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

pub const DEFAULT_LISTEN: &str = "127.0.0.1:7373";

#[derive(Debug, Clone)]
pub struct ServerConfig {
    pub listen: SocketAddr,
    pub public_url: Option<String>,
    pub max_object_bytes: u64,
    pub max_message_bytes: u64,
    pub tombstone_retention: Duration,
    pub blob_grace: Duration,
    pub gc_interval: Duration,
    /// The operator's defaults and bounds for device profiles, by class name.
    pub classes: BTreeMap<String, ClassPolicy>,
    /// What each user's live objects may take; no limit when absent.
    pub quota_bytes: Option<u64>,
}

impl Default for ServerConfig {
    fn default() -> Self {
        let store = StoreSettings::default();
        Self {
            listen: SocketAddr::from(([127, 0, 0, 1], 7373)),
            public_url: None,
            max_object_bytes: 4 << 30,
            max_message_bytes: 64 << 20,
            tombstone_retention: store.tombstone_retention,
            blob_grace: store.blob_grace,
            gc_interval: Duration::from_secs(600),
            classes: BTreeMap::new(),
            quota_bytes: None,
        }
    }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct OperatorFile {
    #[serde(default)]
    server: ServerSection,
    #[serde(default)]
    class: BTreeMap<String, ClassSection>,
    #[serde(default)]
    user: UserSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct UserSection {
    quota_bytes: Option<String>,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ClassSection {
    #[serde(default)]
    default: toml::Table,
    #[serde(default)]
    bound: BoundSection,
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct BoundSection {
    mode: Option<Vec<Mode>>,
    content: Option<Vec<ContentPolicy>>,
    auto: Option<bool>,
    min_schedule_interval: Option<String>,
    max_object_bytes: Option<String>,
}

/// One `[class.NAME]` section, checked: a known class, default keys that make a valid profile,
/// bounds that parse.
fn class_policy(name: &str, section: ClassSection) -> Result<ClassPolicy, String> {
    if !DeviceClass::ALL.iter().any(|class| class.as_str() == name) {
        let known: Vec<&str> = DeviceClass::ALL.iter().map(|class| class.as_str()).collect();
        return Err(format!("class.{name}: unknown device class (classes: {})", known.join(", ")));
    }
    let defaults = match serde_json::to_value(&section.default) {
        Ok(serde_json::Value::Object(map)) => map,
        _ => return Err(format!("class.{name}.default: not a table")),
    };
    // Unknown keys are refused here; the values are checked with the policy below.
    merge_preferences(&mut serde_json::Map::new(), &defaults)
        .map_err(|error| format!("class.{name}.default: {error}"))?;
    let min_schedule_interval =
        duration(&format!("class.{name}.bound.min_schedule_interval"), section.bound.min_schedule_interval)?
            .map(|interval| jiff::SignedDuration::try_from(interval).map_err(|error| error.to_string()))
            .transpose()?;
    let policy = ClassPolicy {
        class: name.to_owned(),
        defaults,
        bounds: Bounds {
            mode: section.bound.mode,
            content: section.bound.content,
            auto: section.bound.auto,
            min_schedule_interval,
            max_download: bytes(&format!("class.{name}.bound.max_object_bytes"), section.bound.max_object_bytes)?,
        },
    };
    // The defaults must make a valid profile, within the bounds themselves.
    let nothing_set = serde_json::Map::new();
    let now = jiff::Timestamp::now();
    policy
        .check(&nothing_set, now)
        .and_then(|()| policy.effective(&nothing_set, now))
        .and_then(|effective| effective.profile.compile_new().map(drop))
        .map_err(|error| format!("class.{name}.default: {error}"))?;
    Ok(policy)
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
struct ServerSection {
    listen: Option<SocketAddr>,
    public_url: Option<String>,
    max_object_bytes: Option<String>,
    max_message_bytes: Option<String>,
    tombstone_retention: Option<String>,
    blob_grace: Option<String>,
    gc_interval: Option<String>,
}

impl ServerConfig {
    pub fn load(path: &Path) -> Result<Self, String> {
        let text = std::fs::read_to_string(path).map_err(|error| format!("cannot read {}: {error}", path.display()))?;
        Self::parse(&text).map_err(|error| format!("{}: {error}", path.display()))
    }

    pub fn parse(text: &str) -> Result<Self, String> {
        let file: OperatorFile = toml::from_str(text).map_err(|error| error.to_string())?;
        let classes = file
            .class
            .into_iter()
            .map(|(name, section)| Ok((name.clone(), class_policy(&name, section)?)))
            .collect::<Result<BTreeMap<_, _>, String>>()?;
        let section = file.server;
        let defaults = Self::default();
        let public_url = section.public_url.map(|url| url.trim_end_matches('/').to_owned());
        if let Some(url) = &public_url
            && !(url.starts_with("http://") || url.starts_with("https://"))
        {
            return Err(format!("server.public_url must start with http:// or https:// (got {url:?})"));
        }
        Ok(Self {
            listen: section.listen.unwrap_or(defaults.listen),
            public_url,
            max_object_bytes: bytes("server.max_object_bytes", section.max_object_bytes)?
                .unwrap_or(defaults.max_object_bytes),
            max_message_bytes: bytes("server.max_message_bytes", section.max_message_bytes)?
                .unwrap_or(defaults.max_message_bytes),
            tombstone_retention: duration("server.tombstone_retention", section.tombstone_retention)?
                .unwrap_or(defaults.tombstone_retention),
            blob_grace: duration("server.blob_grace", section.blob_grace)?.unwrap_or(defaults.blob_grace),
            gc_interval: duration("server.gc_interval", section.gc_interval)?.unwrap_or(defaults.gc_interval),
            classes,
            quota_bytes: bytes("user.quota_bytes", file.user.quota_bytes)?,
        })
    }

    pub fn store_settings(&self) -> StoreSettings {
        StoreSettings { tombstone_retention: self.tombstone_retention, blob_grace: self.blob_grace }
    }
}

fn bytes(key: &str, raw: Option<String>) -> Result<Option<u64>, String> {
    raw.map(|raw| {
        raw.parse::<bytesize::ByteSize>()
            .map(|size| size.as_u64())
            .map_err(|error| format!("{key}: bad size {raw:?}: {error}"))
    })
    .transpose()
}

fn duration(key: &str, raw: Option<String>) -> Result<Option<Duration>, String> {
    raw.map(|raw| humantime::parse_duration(&raw).map_err(|error| format!("{key}: bad duration {raw:?}: {error}")))
        .transpose()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_sizes_and_durations_and_refuses_typos() {
        let config = ServerConfig::parse(
            "[server]\nmax_object_bytes = \"20MB\"\ntombstone_retention = \"2h\"\npublic_url = \"https://x.example/\"\n",
        )
        .expect("valid");
        assert_eq!(config.max_object_bytes, 20_000_000);
        assert_eq!(config.tombstone_retention, Duration::from_secs(7200));
        assert_eq!(config.public_url.as_deref(), Some("https://x.example"));
        assert!(ServerConfig::parse("[server]\nmax_objet_bytes = \"1MB\"\n").is_err());
        assert!(ServerConfig::parse("[server]\nmax_object_bytes = \"lots\"\n").is_err());
        assert!(ServerConfig::parse("[server]\npublic_url = \"ftp://x\"\n").is_err());
        assert_eq!(
            ServerConfig::parse("[user]\nquota_bytes = \"10GB\"\n").expect("valid").quota_bytes,
            Some(10_000_000_000)
        );
        assert!(
            ServerConfig::parse("[user]\nquota_bytes = \"plenty\"\n")
                .is_err_and(|error| error.contains("user.quota_bytes"))
        );
        assert_eq!(ServerConfig::parse("").expect("empty is fine").listen.to_string(), DEFAULT_LISTEN);
    }

    #[test]
    fn class_sections_give_checked_defaults_and_bounds() {
        let config = ServerConfig::parse(
            "[class.phone.default]\nmode = \"partial\"\ncontent = \"stub\"\nauto = true\n\
             [class.phone.bound]\ncontent = [\"stub\"]\nauto = true\nmin_schedule_interval = \"1h\"\n",
        )
        .expect("valid");
        let phone = &config.classes["phone"];
        assert_eq!(phone.defaults["content"], "stub");
        assert_eq!(phone.bounds.content, Some(vec![ContentPolicy::Stub]));
        assert_eq!(phone.bounds.min_schedule_interval, Some(jiff::SignedDuration::from_hours(1)));
        let bounded = ServerConfig::parse("[class.tablet.bound]\nmax_object_bytes = \"20MB\"\n").expect("valid");
        assert_eq!(bounded.classes["tablet"].bounds.max_download, Some(20_000_000));
        for (text, says) in [
            ("[class.toaster.default]\nmode = \"full\"\n", "class.toaster: unknown device class"),
            ("[class.phone.default]\ncolour = \"blue\"\n", "class.phone.default: unknown profile key"),
            ("[class.phone.default]\nmode = \"sometimes\"\n", "class.phone.default:"),
            ("[class.phone.bound]\ncontnet = [\"stub\"]\n", "unknown field"),
            ("[class.phone.bound]\nmin_schedule_interval = \"soon\"\n", "class.phone.bound.min_schedule_interval"),
            ("[class.phone.bound]\nmax_object_bytes = \"big\"\n", "class.phone.bound.max_object_bytes"),
            (
                "[class.phone.default]\ncontent = \"download\"\n[class.phone.bound]\ncontent = [\"stub\"]\n",
                "class.phone.default: content must be one of stub",
            ),
        ] {
            let error = ServerConfig::parse(text).expect_err(text);
            assert!(error.contains(says), "{error}");
        }
    }

    #[test]
    fn the_documented_example_is_valid_and_states_the_defaults() {
        let example = ServerConfig::parse(include_str!("../../../operator.example.toml")).expect("example parses");
        let defaults = ServerConfig::default();
        assert_eq!(example.listen, defaults.listen);
        assert_eq!(example.max_object_bytes, defaults.max_object_bytes);
        assert_eq!(example.max_message_bytes, defaults.max_message_bytes);
        assert_eq!(example.tombstone_retention, defaults.tombstone_retention);
        assert_eq!(example.blob_grace, defaults.blob_grace);
        assert_eq!(example.gc_interval, defaults.gc_interval);
    }
}
