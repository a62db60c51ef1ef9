//! Payloads: content-addressed uploads and ranged downloads through an object's link.

use crate::error::{ApiError, ApiJson, ApiPath};
use crate::state::{Auth, SharedState};
use axum::Json;
use axum::body::Body;
use axum::extract::State;
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use cpm_proto::{BlobReceipt, ContentsRequest, ErrorBody};
use cpm_store::StoreError;
use futures_util::StreamExt;
use std::io::SeekFrom;
use tokio::io::{AsyncReadExt, AsyncSeekExt};
use tokio_util::io::ReaderStream;

/// Read size for streamed downloads: large enough that 1 GiB is a few thousand reads.
const DOWNLOAD_CHUNK: usize = 256 * 1024;
/// Payloads up to this size are read whole, in one call.
const READ_WHOLE_UP_TO: u64 = 1024 * 1024;

#[utoipa::path(head, path = "/v1/blobs/{hash}", tag = "content", security(("bearer" = [])),
    params(("hash" = String, Path, description = "BLAKE3 of the content, lowercase hex")),
    responses((status = 200, description = "this user's store has the content: no need to upload it"),
        (status = 404, description = "upload it")))]
pub async fn has_blob(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(hash): ApiPath<String>,
) -> Result<StatusCode, ApiError> {
    let found = state.call(move |service| service.has_blob(principal.user_id, &hash)).await?;
    Ok(if found { StatusCode::OK } else { StatusCode::NOT_FOUND })
}

#[utoipa::path(put, path = "/v1/blobs/{hash}", tag = "content", security(("bearer" = [])),
    params(("hash" = String, Path, description = "BLAKE3 of the content, lowercase hex")),
    request_body(content = Vec<u8>, content_type = "application/octet-stream"),
    responses((status = 201, body = BlobReceipt), (status = 200, body = BlobReceipt, description = "already stored"),
        (status = 400, body = ErrorBody, description = "the bytes do not match the hash or the length"),
        (status = 411, body = ErrorBody), (status = 413, body = ErrorBody)))]
pub async fn upload_blob(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(hash): ApiPath<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<(StatusCode, Json<BlobReceipt>), ApiError> {
    let declared = headers
        .get(header::CONTENT_LENGTH)
        .and_then(|value| value.to_str().ok())
        .and_then(|value| value.parse::<u64>().ok())
        .ok_or_else(|| {
            ApiError::new(StatusCode::LENGTH_REQUIRED, "length_required", "an upload needs a Content-Length")
        })?;
    let user = principal.user_id;
    let asked = hash.clone();
    if !state.call(move |service| service.blob_wanted(user, &asked, declared)).await? {
        state.metrics.deduplicated_uploads.inc();
        return Ok((StatusCode::OK, Json(BlobReceipt { hash, size: declared })));
    }
    let metrics = state.metrics.clone();
    let chunks = body.into_data_stream().inspect(move |chunk| {
        if let Ok(chunk) = chunk {
            metrics.upload_bytes.inc_by(chunk.len() as u64);
        }
    });
    let verified = state.service.receive_blob(&hash, declared, chunks).await?;
    let size = verified.size;
    state.call(move |service| service.commit_blob(user, verified)).await?;
    Ok((StatusCode::CREATED, Json(BlobReceipt { hash, size })))
}

/// What a `Range` header asks of a payload of `size` bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum ByteRange {
    /// No usable range: serve the whole payload (multiple ranges and bad syntax are ignored, as
    /// RFC 9110 allows).
    Whole,
    /// Inclusive first and last offsets.
    Part(u64, u64),
    /// A well-formed range past the end (416).
    Unsatisfiable,
}

pub fn byte_range(header: &str, size: u64) -> ByteRange {
    let Some(spec) = header.trim().strip_prefix("bytes=") else { return ByteRange::Whole };
    if spec.contains(',') {
        return ByteRange::Whole;
    }
    let Some((first, last)) = spec.trim().split_once('-') else { return ByteRange::Whole };
    let (first, last) = (first.trim(), last.trim());
    let range = match (first.parse::<u64>(), last.parse::<u64>()) {
        (Ok(first), Ok(last)) if first <= last => (first, last.min(size.saturating_sub(1))),
        (Ok(first), Err(_)) if last.is_empty() => (first, size.saturating_sub(1)),
        (Err(_), Ok(suffix)) if first.is_empty() && suffix > 0 => (size.saturating_sub(suffix), size.saturating_sub(1)),
        _ => return ByteRange::Whole,
    };
    if size == 0 || range.0 >= size { ByteRange::Unsatisfiable } else { ByteRange::Part(range.0, range.1) }
}

#[utoipa::path(get, path = "/v1/objects/{id}/content", tag = "content", security(("bearer" = [])),
    params(("id" = String, Path)),
    responses((status = 200, description = "the payload", content_type = "application/octet-stream"),
        (status = 206, description = "the requested byte range"), (status = 304, description = "If-None-Match matched the ETag"),
        (status = 404, body = ErrorBody), (status = 416, description = "the range is past the end")))]
pub async fn download(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiPath(id): ApiPath<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let (object, whole) = state
        .call(move |service| {
            let object = service.payload(&principal, &id)?;
            // A small payload is read in the same blocking call as its lookup: one hand-off to a
            // blocking thread per download instead of one for each open, seek and read.
            let whole = if object.size <= READ_WHOLE_UP_TO {
                let bytes = std::fs::read(service.store.blob_path(&object.hash)).map_err(StoreError::from)?;
                Some(axum::body::Bytes::from(bytes))
            } else {
                None
            };
            Ok((object, whole))
        })
        .await?;
    let etag = format!("\"{}\"", object.hash);
    let etag_header = HeaderValue::from_str(&etag).map_err(|_| StoreError::Internal("unprintable hash".into()))?;
    let if_none_match = headers.get(header::IF_NONE_MATCH).and_then(|value| value.to_str().ok());
    if if_none_match.is_some_and(|tags| tags.split(',').any(|tag| tag.trim() == etag || tag.trim() == "*")) {
        return Ok((StatusCode::NOT_MODIFIED, [(header::ETAG, etag_header)]).into_response());
    }
    // A range applies only to the representation it was computed for (If-Range).
    let range_applies =
        headers.get(header::IF_RANGE).and_then(|value| value.to_str().ok()).is_none_or(|tag| tag == etag);
    let range = match headers.get(header::RANGE).and_then(|value| value.to_str().ok()) {
        Some(spec) if range_applies => match byte_range(spec, object.size) {
            ByteRange::Whole => None,
            ByteRange::Part(first, last) => Some((first, last)),
            ByteRange::Unsatisfiable => {
                let unsatisfied = format!("bytes */{}", object.size);
                return Ok((
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    [(
                        header::CONTENT_RANGE,
                        HeaderValue::from_str(&unsatisfied).unwrap_or(HeaderValue::from_static("*")),
                    )],
                )
                    .into_response());
            }
        },
        _ => None,
    };
    let (status, first, length) = match range {
        Some((first, last)) => (StatusCode::PARTIAL_CONTENT, first, last - first + 1),
        None => (StatusCode::OK, 0, object.size),
    };
    let body = match whole {
        Some(bytes) => {
            let start = usize::try_from(first).unwrap_or(usize::MAX).min(bytes.len());
            let end = usize::try_from(first + length).unwrap_or(usize::MAX).min(bytes.len());
            Body::from(bytes.slice(start..end))
        }
        None => {
            let mut file =
                tokio::fs::File::open(state.service.store.blob_path(&object.hash)).await.map_err(StoreError::from)?;
            file.seek(SeekFrom::Start(first)).await.map_err(StoreError::from)?;
            Body::from_stream(ReaderStream::with_capacity(file.take(length), DOWNLOAD_CHUNK))
        }
    };
    state.metrics.download_bytes.inc_by(length);
    let mut response = Response::builder()
        .status(status)
        .header(header::CONTENT_TYPE, &object.content_type)
        .header(header::CONTENT_LENGTH, length)
        .header(header::ACCEPT_RANGES, "bytes")
        .header(header::ETAG, etag_header);
    if let Some((first, last)) = range {
        response = response.header(header::CONTENT_RANGE, format!("bytes {first}-{last}/{}", object.size));
    }
    response.body(body).map_err(|error| StoreError::Internal(error.to_string()).into())
}

#[utoipa::path(post, path = "/v1/contents", tag = "content", security(("bearer" = [])),
    request_body = ContentsRequest,
    responses((status = 200, content_type = "application/octet-stream", description = "for each id in order: a \
        line of JSON (BundlePart: id, hash, size), then exactly size bytes of payload"),
        (status = 400, body = ErrorBody), (status = 403, body = ErrorBody), (status = 404, body = ErrorBody)))]
pub async fn download_many(
    State(state): State<SharedState>,
    Auth(principal): Auth,
    ApiJson(request): ApiJson<ContentsRequest>,
) -> Result<Response, ApiError> {
    let parts = state.call(move |service| service.bundle(&principal, &request.ids)).await?;
    let payload: u64 = parts.iter().map(|part| part.size).sum();
    let headers: Vec<Vec<u8>> = parts
        .iter()
        .map(|part| {
            serde_json::to_vec(part).map(|mut line| {
                line.push(b'\n');
                line
            })
        })
        .collect::<Result<_, _>>()
        .map_err(|error| StoreError::Internal(error.to_string()))?;
    let length = payload + headers.iter().map(|line| line.len() as u64).sum::<u64>();
    let (sender, receiver) = tokio::sync::mpsc::channel::<std::io::Result<axum::body::Bytes>>(4);
    let store = std::sync::Arc::clone(&state.service.store);
    // One blocking task reads the payloads in turn; the channel holds a few pieces ahead.
    tokio::task::spawn_blocking(move || {
        for (part, header) in parts.iter().zip(headers) {
            if sender.blocking_send(Ok(header.into())).is_err() {
                return;
            }
            let sent = std::fs::File::open(store.blob_path(&part.hash)).and_then(|mut file| {
                let mut left = part.size;
                while left > 0 {
                    let mut piece = vec![0u8; usize::try_from(left).unwrap_or(DOWNLOAD_CHUNK).min(DOWNLOAD_CHUNK)];
                    std::io::Read::read_exact(&mut file, &mut piece)?;
                    left -= piece.len() as u64;
                    if sender.blocking_send(Ok(piece.into())).is_err() {
                        return Ok(false);
                    }
                }
                Ok(true)
            });
            match sent {
                Ok(true) => {}
                Ok(false) => return,
                Err(error) => {
                    tracing::error!(%error, hash = part.hash, "cannot read a stored payload");
                    let _ = sender.blocking_send(Err(error));
                    return;
                }
            }
        }
    });
    let body = futures_util::stream::unfold(receiver, |mut receiver| async move {
        receiver.recv().await.map(|piece| (piece, receiver))
    });
    state.metrics.download_bytes.inc_by(payload);
    Response::builder()
        .status(StatusCode::OK)
        .header(header::CONTENT_TYPE, "application/octet-stream")
        .header(header::CONTENT_LENGTH, length)
        .body(Body::from_stream(body))
        .map_err(|error| StoreError::Internal(error.to_string()).into())
}

#[cfg(test)]
mod tests {
    use super::{ByteRange, byte_range};

    #[test]
    fn ranges_follow_rfc_9110() {
        assert_eq!(byte_range("bytes=0-9", 100), ByteRange::Part(0, 9));
        assert_eq!(byte_range("bytes=90-200", 100), ByteRange::Part(90, 99));
        assert_eq!(byte_range("bytes=95-", 100), ByteRange::Part(95, 99));
        assert_eq!(byte_range("bytes=-10", 100), ByteRange::Part(90, 99));
        assert_eq!(byte_range("bytes=-500", 100), ByteRange::Part(0, 99));
        assert_eq!(byte_range("bytes=100-", 100), ByteRange::Unsatisfiable);
        assert_eq!(byte_range("bytes=0-0", 0), ByteRange::Unsatisfiable);
        for ignored in ["bytes=5-1", "bytes=a-b", "items=0-1", "bytes=0-1,5-6", "bytes=-0"] {
            assert_eq!(byte_range(ignored, 100), ByteRange::Whole, "{ignored}");
        }
    }
}
