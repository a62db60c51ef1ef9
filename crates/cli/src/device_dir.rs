//! A device's local directory: like a git checkout, it is found from the current directory
//! upwards (or from `-C DIR`) by its `.cpm/` folder, which holds the device's settings and token.

use anyhow::{Context, Result, bail};
use serde::{Deserialize, Serialize};
use std::path::{Path, PathBuf};

const META_DIR: &str = ".cpm";
const CONFIG_FILE: &str = "config.toml";
const TOKEN_FILE: &str = "token";

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct DeviceConfig {
    pub server: String,
    pub user: String,
    pub device: String,
    pub device_id: String,
    pub class: String,
    /// How long to wait for a connection to the server (`10s` when absent; `$CPM_CONNECT_TIMEOUT`
    /// overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub connect_timeout: Option<String>,
    /// How long to wait for each read of an answer (`60s` when absent; `$CPM_READ_TIMEOUT`
    /// overrides).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub read_timeout: Option<String>,
}

pub struct DeviceDir {
    pub root: PathBuf,
    pub config: DeviceConfig,
    pub token: String,
}

impl DeviceDir {
    /// The device directory holding `start`, searching upwards.
    pub fn find(start: &Path) -> Result<Self> {
        let start = std::path::absolute(start).with_context(|| format!("bad directory {}", start.display()))?;
        let mut cursor = Some(start.as_path());
        while let Some(dir) = cursor {
            if dir.join(META_DIR).join(CONFIG_FILE).is_file() {
                return Self::open(dir);
            }
            cursor = dir.parent();
        }
        bail!(
            "{} is not inside a device directory (register one with `cpm device register`, or name it with -C DIR)",
            start.display()
        )
    }

    /// The device directory at `root` itself.
    pub fn open(root: &Path) -> Result<Self> {
        let meta = root.join(META_DIR);
        let text = std::fs::read_to_string(meta.join(CONFIG_FILE))
            .with_context(|| format!("cannot read {}", meta.join(CONFIG_FILE).display()))?;
        let config: DeviceConfig = toml::from_str(&text)
            .with_context(|| format!("bad device settings in {}", meta.join(CONFIG_FILE).display()))?;
        let token = std::fs::read_to_string(meta.join(TOKEN_FILE))
            .with_context(|| format!("cannot read the device token in {}", meta.display()))?
            .trim()
            .to_owned();
        Ok(Self { root: root.to_owned(), config, token })
    }

    /// Writes a new device directory's settings; the token file is readable by its owner only.
    pub fn create(root: &Path, config: DeviceConfig, token: &str) -> Result<Self> {
        let meta = root.join(META_DIR);
        std::fs::create_dir_all(&meta).with_context(|| format!("cannot create {}", meta.display()))?;
        let token_path = meta.join(TOKEN_FILE);
        write_private(&token_path, token).with_context(|| format!("cannot write {}", token_path.display()))?;
        let text = toml::to_string(&config).context("cannot encode the device settings")?;
        std::fs::write(meta.join(CONFIG_FILE), text)
            .with_context(|| format!("cannot write {}", meta.join(CONFIG_FILE).display()))?;
        Ok(Self { root: root.to_owned(), config, token: token.to_owned() })
    }

    /// The timeouts this device's commands use: the environment's, else its settings', else
    /// the defaults.
    pub fn timeouts(&self) -> Result<cpm_client::Timeouts> {
        timeouts(&self.config.connect_timeout, &self.config.read_timeout)
    }

    pub fn is_registered(root: &Path) -> bool {
        root.join(META_DIR).join(CONFIG_FILE).exists()
    }
}

#[cfg(unix)]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new().write(true).create(true).truncate(true).mode(0o600).open(path)?;
    file.write_all(text.as_bytes())?;
    file.sync_all()
}

#[cfg(not(unix))]
fn write_private(path: &Path, text: &str) -> std::io::Result<()> {
    std::fs::write(path, text)
}

/// Timeouts from the environment (`CPM_CONNECT_TIMEOUT`, `CPM_READ_TIMEOUT`), else from these
/// settings, else the defaults.
pub fn timeouts(connect: &Option<String>, read: &Option<String>) -> Result<cpm_client::Timeouts> {
    let defaults = cpm_client::Timeouts::default();
    let pick = |variable: &str, setting: &Option<String>, default: std::time::Duration| -> Result<_> {
        let raw = std::env::var(variable).ok().or_else(|| setting.clone());
        match raw {
            None => Ok(default),
            Some(raw) => {
                let span: jiff::Span = raw.parse().with_context(|| format!("bad timeout {raw:?} (e.g. 10s)"))?;
                let duration = jiff::SignedDuration::try_from(span)
                    .ok()
                    .and_then(|duration| std::time::Duration::try_from(duration).ok())
                    .filter(|duration| !duration.is_zero())
                    .with_context(|| format!("bad timeout {raw:?} (e.g. 10s)"))?;
                Ok(duration)
            }
        }
    };
    Ok(cpm_client::Timeouts {
        connect: pick("CPM_CONNECT_TIMEOUT", connect, defaults.connect)?,
        read: pick("CPM_READ_TIMEOUT", read, defaults.read)?,
    })
}
