//! Content-addressed payloads on the local file system: `blobs/<first two hex>/<blake3 hex>`.
//!
//! Invariant: a file under `blobs/` always holds exactly the bytes its name hashes to. Bytes are
//! streamed into `tmp/`, hashed on the way, fsynced, compared with what the client declared, and
//! only then renamed into place; an upload that fails or is cut off leaves nothing behind.

use crate::error::{Result, StoreError};
use std::path::{Path, PathBuf};
use tokio::io::{AsyncWriteExt, BufWriter};

/// Bytes gathered before each write to disk, so a 1 GiB upload is a thousand writes, not a
/// hundred thousand.
const WRITE_BUFFER: usize = 1 << 20;

#[derive(Debug, Clone)]
pub struct BlobDir {
    blobs: PathBuf,
    tmp: PathBuf,
}

/// A payload being received. Dropping it before [`BlobWriter::finish`] removes the partial file.
pub struct BlobWriter {
    file: BufWriter<tokio::fs::File>,
    temp: TempFile,
    hasher: blake3::Hasher,
    len: u64,
    limit: u64,
}

/// Bytes that were received in full and match their declared hash, waiting to be installed.
#[derive(Debug)]
pub struct VerifiedBlob {
    temp: TempFile,
    pub hash: String,
    pub size: u64,
}

/// A file in `tmp/` that is removed when dropped unless it was moved into place.
#[derive(Debug)]
struct TempFile(Option<PathBuf>);

impl Drop for TempFile {
    fn drop(&mut self) {
        if let Some(path) = self.0.take() {
            let _ = std::fs::remove_file(path);
        }
    }
}

/// True for a lowercase hex BLAKE3 digest: the only shape a blob key may have.
pub fn is_valid_hash(hash: &str) -> bool {
    hash.len() == 64 && hash.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

impl BlobDir {
    /// Opens (creating) the blob directories under `data`.
    pub fn open(data: &Path) -> Result<Self> {
        let dir = Self { blobs: data.join("blobs"), tmp: data.join("tmp") };
        std::fs::create_dir_all(&dir.blobs)?;
        std::fs::create_dir_all(&dir.tmp)?;
        Ok(dir)
    }

    /// Removes partial uploads left by a crash. Only the serving process calls this, when it
    /// starts: nothing in `tmp/` is referenced by anything, but a running server may be writing
    /// there, so an admin command opening the same store must not.
    pub fn remove_partial_uploads(&self) -> Result<()> {
        for file in std::fs::read_dir(&self.tmp)? {
            std::fs::remove_file(file?.path())?;
        }
        Ok(())
    }

    pub fn path(&self, hash: &str) -> PathBuf {
        self.blobs.join(&hash[..2]).join(hash)
    }

    pub fn contains(&self, hash: &str) -> bool {
        is_valid_hash(hash) && self.path(hash).is_file()
    }

    /// Starts receiving a payload of at most `limit` bytes.
    pub async fn writer(&self, limit: u64) -> Result<BlobWriter> {
        let name = format!("upload-{}", crate::secret::new_id('u')?);
        let path = self.tmp.join(name);
        let file = tokio::fs::File::create(&path).await?;
        Ok(BlobWriter {
            file: BufWriter::with_capacity(WRITE_BUFFER, file),
            temp: TempFile(Some(path)),
            hasher: blake3::Hasher::new(),
            len: 0,
            limit,
        })
    }

    /// Moves a verified payload into place. When the same content is already stored the new copy
    /// is simply dropped: content is stored once.
    pub fn install(&self, mut blob: VerifiedBlob) -> Result<()> {
        let target = self.path(&blob.hash);
        if target.is_file() {
            return Ok(());
        }
        let Some(temp) = blob.temp.0.take() else {
            return Err(StoreError::Internal("verified blob without a file".into()));
        };
        let parent = self.blobs.join(&blob.hash[..2]);
        std::fs::create_dir_all(&parent)?;
        if let Err(error) = std::fs::rename(&temp, &target) {
            let _ = std::fs::remove_file(&temp);
            return Err(error.into());
        }
        // The rename is durable only once the directory entry is on disk.
        std::fs::File::open(&parent)?.sync_all()?;
        Ok(())
    }

    pub fn remove(&self, hash: &str) -> Result<()> {
        match std::fs::remove_file(self.path(hash)) {
            Err(error) if error.kind() != std::io::ErrorKind::NotFound => Err(error.into()),
            _ => Ok(()),
        }
    }

    /// Every stored hash, for sweeping files that no metadata names (left by a crash between a
    /// collection's commit and its file removals).
    pub fn hashes(&self) -> Result<Vec<String>> {
        let mut hashes = Vec::new();
        for shard in std::fs::read_dir(&self.blobs)? {
            for file in std::fs::read_dir(shard?.path())? {
                let name = file?.file_name().to_string_lossy().into_owned();
                if is_valid_hash(&name) {
                    hashes.push(name);
                }
            }
        }
        Ok(hashes)
    }
}

impl BlobWriter {
    pub async fn write(&mut self, chunk: &[u8]) -> Result<()> {
        self.len += chunk.len() as u64;
        if self.len > self.limit {
            return Err(StoreError::TooLarge(format!("the payload is larger than the {} bytes allowed", self.limit)));
        }
        self.hasher.update(chunk);
        self.file.write_all(chunk).await?;
        Ok(())
    }

    /// Ends the upload: the bytes must be exactly `expected_len` long (when given) and hash to
    /// `expected_hash`, and are on disk before this returns.
    pub async fn finish(mut self, expected_hash: &str, expected_len: Option<u64>) -> Result<VerifiedBlob> {
        if let Some(expected) = expected_len.filter(|expected| *expected != self.len) {
            return Err(StoreError::HashMismatch(format!("received {} bytes but {expected} were declared", self.len)));
        }
        let hash = self.hasher.finalize().to_hex().to_string();
        if hash != expected_hash {
            return Err(StoreError::HashMismatch(format!(
                "the bytes received hash to {hash}, not to the declared {expected_hash}"
            )));
        }
        self.file.flush().await?;
        self.file.get_mut().sync_all().await?;
        Ok(VerifiedBlob { temp: TempFile(self.temp.0.take()), hash, size: self.len })
    }
}
