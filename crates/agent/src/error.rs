//! Why a sync stopped, told apart so that callers know what to do: stop and ask the user,
//! wait and try again, or report.

use crate::remote::RemoteError;

#[derive(Debug, thiserror::Error)]
pub enum SyncError {
    /// The store no longer knows this device's token.
    #[error(
        "the store at {server} no longer accepts this device (it was revoked, or its token is unknown); \
         register this directory again with `cpm device register --replace`"
    )]
    Revoked { server: String },
    /// Another sync, fetch or eviction of this device is running.
    #[error("another sync of this device is running{}", .pid.map(|pid| format!(" (pid {pid})")).unwrap_or_default())]
    Busy { pid: Option<u32> },
    /// The store could not be reached or failed; trying again later may work.
    #[error("{0}")]
    Unavailable(RemoteError),
    /// The store refused something the whole sync rests on.
    #[error("{0}")]
    Refused(RemoteError),
    /// The device's own storage failed for the whole sync (its index, its root folder).
    #[error("{what}: {source}")]
    Local {
        what: String,
        #[source]
        source: std::io::Error,
    },
    #[error("the device's index: {0}")]
    Index(String),
    /// What the store sent cannot be applied (a broken view); nothing was.
    #[error("{0}")]
    Inconsistent(String),
    /// What was asked of the device cannot be done (fetch a folder, evict an edited file…).
    #[error("{0}")]
    Invalid(String),
}

impl SyncError {
    /// Trying again later may succeed without anyone doing anything.
    pub fn is_transient(&self) -> bool {
        match self {
            SyncError::Unavailable(_) | SyncError::Busy { .. } => true,
            SyncError::Revoked { .. } => false,
            SyncError::Refused(error) => error.is_transient(),
            SyncError::Local { .. } | SyncError::Index(_) | SyncError::Inconsistent(_) => true,
            SyncError::Invalid(_) => false,
        }
    }

    pub fn local(what: impl Into<String>, source: std::io::Error) -> Self {
        SyncError::Local { what: what.into(), source }
    }

    /// A failure of a call the whole sync needs.
    pub fn remote(error: RemoteError, server: &str) -> Self {
        if error.is_unauthorized() {
            SyncError::Revoked { server: server.to_owned() }
        } else if error.is_transient() {
            SyncError::Unavailable(error)
        } else {
            SyncError::Refused(error)
        }
    }
}

impl From<rusqlite::Error> for SyncError {
    fn from(error: rusqlite::Error) -> Self {
        SyncError::Index(error.to_string())
    }
}

impl From<serde_json::Error> for SyncError {
    fn from(error: serde_json::Error) -> Self {
        SyncError::Index(error.to_string())
    }
}

pub type SyncResult<T> = Result<T, SyncError>;
