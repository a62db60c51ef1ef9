//! Payloads: content-addressed uploads, and the checks a download passes before any byte goes out.

use crate::tree::{checked_hash, expect_kind};
use crate::{ErrorKind, Result, Service, ServiceError};
use cpm_core::{Item, Object};
use cpm_proto::{BundlePart, MAX_BUNDLE_BYTES, MAX_BUNDLE_OBJECTS};
use cpm_store::{Principal, StoreError, UserId, VerifiedBlob};
use futures_util::{Stream, StreamExt};

impl Service {
    pub fn has_blob(&self, user: UserId, hash: &str) -> Result<bool> {
        checked_hash(hash)?;
        Ok(self.store.has_blob(user, hash)?)
    }

    /// Whether an upload of `declared` bytes hashing to `hash` must send its bytes: false when
    /// the user's store has them already. Refuses what no object may hold.
    pub fn blob_wanted(&self, user: UserId, hash: &str, declared: u64) -> Result<bool> {
        checked_hash(hash)?;
        let max = self.limits.max_object_bytes;
        if declared > max {
            return Err(StoreError::TooLarge(format!(
                "{declared} bytes is over the {max} bytes allowed for one object"
            ))
            .into());
        }
        Ok(!self.store.has_blob(user, hash)?)
    }

    /// Receives a payload streamed in `chunks`: it is verified only when every one of its
    /// `declared` bytes arrived and they hash to `hash`. Nothing is kept until
    /// [`Service::commit_blob`]; a failure leaves nothing.
    pub async fn receive_blob<B, E>(
        &self,
        hash: &str,
        declared: u64,
        chunks: impl Stream<Item = std::result::Result<B, E>>,
    ) -> Result<VerifiedBlob>
    where
        B: AsRef<[u8]>,
        E: std::fmt::Display,
    {
        checked_hash(hash)?;
        let mut writer = self.store.blobs().writer(declared).await?;
        let mut chunks = std::pin::pin!(chunks);
        while let Some(chunk) = chunks.next().await {
            let chunk = chunk.map_err(|error| ServiceError::invalid(format!("the upload was cut off: {error}")))?;
            writer.write(chunk.as_ref()).await?;
        }
        Ok(writer.finish(hash, Some(declared)).await?)
    }

    /// Keeps a verified payload for `user`.
    pub fn commit_blob(&self, user: UserId, blob: VerifiedBlob) -> Result<()> {
        Ok(self.store.commit_blob(user, blob)?)
    }

    /// The object whose payload a caller asks for, once it may have it: a device gets nothing
    /// over its download limit.
    pub fn payload(&self, principal: &Principal, id: &str) -> Result<Object> {
        expect_kind(id, 'o', "object")?;
        let Item::Object(object) = self.store.item(principal.user_id, id)? else {
            return Err(ServiceError::not_found(format!("no object with id {id}")));
        };
        if let Some(device) = &principal.device_id {
            within(&object, self.download_limit(principal.user_id, device)?)?;
        }
        Ok(object)
    }

    /// The parts of a bundle of payloads, in the order asked, once each may be sent.
    pub fn bundle(&self, principal: &Principal, ids: &[String]) -> Result<Vec<BundlePart>> {
        if ids.is_empty() || ids.len() > MAX_BUNDLE_OBJECTS {
            return Err(ServiceError::invalid(format!("ask for 1 to {MAX_BUNDLE_OBJECTS} objects at a time")));
        }
        let limit = match &principal.device_id {
            Some(device) => self.download_limit(principal.user_id, device)?,
            None => None,
        };
        let mut parts = Vec::with_capacity(ids.len());
        for id in ids {
            let Item::Object(object) = self.store.item(principal.user_id, id)? else {
                return Err(ServiceError::not_found(format!("no object with id {id}")));
            };
            within(&object, limit)?;
            parts.push(BundlePart { id: object.id, hash: object.hash, size: object.size });
        }
        let payload: u64 = parts.iter().map(|part| part.size).sum();
        if payload > MAX_BUNDLE_BYTES {
            return Err(ServiceError::invalid(format!(
                "these objects hold {payload} bytes; ask for at most {MAX_BUNDLE_BYTES} at a time"
            )));
        }
        Ok(parts)
    }
}

/// Refuses a payload larger than the asking device's `limit`.
///
/// Invariant: a device never downloads a payload larger than its profile allows.
fn within(object: &Object, limit: Option<u64>) -> Result<()> {
    match limit.filter(|limit| object.size > *limit) {
        Some(limit) => Err(ServiceError::new(
            ErrorKind::Forbidden,
            "too_large_for_device",
            format!(
                "{} is {} bytes; this device downloads at most {limit} (its profile's max_download)",
                object.id, object.size
            ),
        )),
        None => Ok(()),
    }
}
