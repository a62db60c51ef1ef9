use thiserror::Error;

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Everything the store can refuse or fail with. Each refusal carries a sentence that names what
/// was wrong (the clashing name, the missing path…), and a stable [`StoreError::code`].
#[derive(Debug, Error)]
pub enum StoreError {
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    AlreadyExists(String),
    #[error("{0}")]
    Invalid(String),
    #[error("{0}")]
    NotEmpty(String),
    /// The entry changed since the modseq the caller based its change on.
    #[error("{0}")]
    Conflict(String),
    #[error("{0}")]
    MoveIntoItself(String),
    #[error("the token is missing, unknown or revoked")]
    Unauthorized,
    #[error("wrong user name or password")]
    BadCredentials,
    #[error("{0}")]
    BlobMissing(String),
    #[error("{0}")]
    HashMismatch(String),
    #[error("{0}")]
    TooLarge(String),
    #[error("{0}")]
    QuotaExceeded(String),
    #[error("cursor {since} cannot be served: changes up to modseq {oldest} are no longer kept; sync again from 0")]
    ResyncRequired { since: i64, oldest: i64 },
    #[error("internal storage error: {0}")]
    Internal(String),
    #[error("storage I/O error: {0}")]
    Io(#[from] std::io::Error),
}

impl StoreError {
    /// The machine-readable code of the error, as sent in API error bodies.
    pub fn code(&self) -> &'static str {
        match self {
            StoreError::NotFound(_) => "not_found",
            StoreError::AlreadyExists(_) => "already_exists",
            StoreError::Invalid(_) => "invalid_input",
            StoreError::NotEmpty(_) => "folder_not_empty",
            StoreError::Conflict(_) => "conflict",
            StoreError::MoveIntoItself(_) => "move_into_itself",
            StoreError::Unauthorized => "unauthorized",
            StoreError::BadCredentials => "bad_credentials",
            StoreError::BlobMissing(_) => "blob_missing",
            StoreError::HashMismatch(_) => "hash_mismatch",
            StoreError::TooLarge(_) => "too_large",
            StoreError::QuotaExceeded(_) => "quota_exceeded",
            StoreError::ResyncRequired { .. } => "resync_required",
            StoreError::Internal(_) | StoreError::Io(_) => "internal",
        }
    }
}

impl From<rusqlite::Error> for StoreError {
    fn from(error: rusqlite::Error) -> Self {
        StoreError::Internal(error.to_string())
    }
}
