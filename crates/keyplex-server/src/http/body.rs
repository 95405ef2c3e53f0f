//! Request bodies, the same way on every interface: the configured size limit (413), read
//! before authentication because SigV4 signs the body, and empty bodies refused with a
//! message that names what the interface expected.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::http::StatusCode;

use crate::http::error::ApiError;
use crate::state::AppState;

/// The body, or 413 over the configured limit.
pub fn read_body_bytes(
    state: &AppState,
    body: Result<Bytes, BytesRejection>,
) -> Result<Bytes, ApiError> {
    body.map_err(|e| {
        if let Some(seconds) = crate::http::deadline::is_body_deadline(&e) {
            ApiError::RequestTimeout { seconds }
        } else if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.max_body_bytes(),
            }
        } else {
            ApiError::BadRequest(format!("cannot read request body: {e}"))
        }
    })
}

/// 400 for an empty body; `expected` says what the interface wanted, e.g. "a CPIX document".
pub fn require_body(body: Bytes, expected: &str) -> Result<Bytes, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(format!(
            "empty request body: expected {expected}"
        )));
    }
    Ok(body)
}

/// A response body that holds keys in clear (CPIX with plain values, NAGRA and Widevine API
/// answers, ClearKey licences, HLS keys): its buffer is zeroized when hyper is done with it,
/// so a key does not linger in freed memory after the response left. (hyper may copy small
/// bodies into its write buffer first; what it copies is not under our control.)
pub fn secret(bytes: impl Into<Vec<u8>>) -> axum::body::Body {
    axum::body::Body::from(Bytes::from_owner(zeroize::Zeroizing::new(bytes.into())))
}

/// Runs `work` — parsing or writing a document of about `size` bytes — where it cannot
/// starve other requests. Small documents (every real packager's) are handled in place: a
/// hop to another thread would cost more than the work. A large one goes to tokio's blocking
/// pool, at most [`HEAVY_AT_ONCE`] at a time, so that a few authenticated but hostile
/// packagers sending megabyte documents cannot occupy the async workers (and `/healthz` with
/// them) nor every blocking thread.
pub async fn off_async_workers<T: Send + 'static>(
    size: usize,
    work: impl FnOnce() -> T + Send + 'static,
) -> Result<T, ApiError> {
    if size < HEAVY_DOCUMENT_BYTES {
        return Ok(work());
    }
    static HEAVY: std::sync::OnceLock<tokio::sync::Semaphore> = std::sync::OnceLock::new();
    let permit = HEAVY
        .get_or_init(|| tokio::sync::Semaphore::new(HEAVY_AT_ONCE))
        .acquire()
        .await
        .map_err(|_| ApiError::Internal("the heavy-work semaphore is closed".into()))?;
    let out = tokio::task::spawn_blocking(work)
        .await
        .map_err(|e| ApiError::Internal(format!("document work failed: {e}")));
    drop(permit);
    out
}

/// Documents from this size up are parsed and written off the async workers.
pub const HEAVY_DOCUMENT_BYTES: usize = 64 * 1024;
/// How many large documents are worked on at once (the rest wait their turn).
pub const HEAVY_AT_ONCE: usize = 2;
