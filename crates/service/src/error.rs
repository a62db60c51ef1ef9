//! What the service layer refuses or fails with, in words every front can translate: the HTTP API
//! into a status and a JSON body, the device simulation into the same codes.

use cpm_store::StoreError;

/// The kind of a refusal, which each front maps to its own way of saying it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ErrorKind {
    /// The request is malformed or names something impossible.
    Invalid,
    /// No valid credentials.
    Unauthorized,
    /// Valid credentials, but not allowed (a device token is needed, a payload is over the
    /// device's limit).
    Forbidden,
    NotFound,
    /// A name clash, a stale base version, a folder not empty.
    Conflict,
    /// The cursor is older than what the journal keeps.
    Gone,
    TooLarge,
    QuotaExceeded,
    Internal,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ServiceError {
    pub kind: ErrorKind,
    /// Stable and machine-readable, e.g. `already_exists`.
    pub code: &'static str,
    pub message: String,
}

pub type Result<T, E = ServiceError> = std::result::Result<T, E>;

impl ServiceError {
    pub fn new(kind: ErrorKind, code: &'static str, message: impl Into<String>) -> Self {
        Self { kind, code, message: message.into() }
    }

    pub fn invalid(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, "invalid_input", message)
    }

    pub fn invalid_name(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Invalid, "invalid_name", message)
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::NotFound, "not_found", message)
    }

    pub fn internal(message: impl Into<String>) -> Self {
        Self::new(ErrorKind::Internal, "internal", message)
    }
}

impl std::fmt::Display for ServiceError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for ServiceError {}

impl From<StoreError> for ServiceError {
    fn from(error: StoreError) -> Self {
        let kind = match &error {
            StoreError::NotFound(_) => ErrorKind::NotFound,
            StoreError::AlreadyExists(_)
            | StoreError::NotEmpty(_)
            | StoreError::BlobMissing(_)
            | StoreError::Conflict(_) => ErrorKind::Conflict,
            StoreError::Invalid(_) | StoreError::MoveIntoItself(_) | StoreError::HashMismatch(_) => ErrorKind::Invalid,
            StoreError::Unauthorized | StoreError::BadCredentials => ErrorKind::Unauthorized,
            StoreError::TooLarge(_) => ErrorKind::TooLarge,
            StoreError::QuotaExceeded(_) => ErrorKind::QuotaExceeded,
            StoreError::ResyncRequired { .. } => ErrorKind::Gone,
            StoreError::Internal(_) | StoreError::Io(_) => ErrorKind::Internal,
        };
        Self::new(kind, error.code(), error.to_string())
    }
}
