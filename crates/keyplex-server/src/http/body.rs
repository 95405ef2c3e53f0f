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
    axum::body::Body::from(Bytes::from_owner(WipedOnDrop(bytes.into())))
}

/// A buffer whose bytes are zeroized when it is dropped, eight at a time.
///
/// `zeroize::Zeroizing<Vec<u8>>` writes one volatile byte at a time, each followed by a
/// compiler fence, over the whole capacity: for a 29 KB SPEKE answer that was ~5 % of the
/// request's CPU (perf, 2026-12-06). This writes volatile `u64`s over the aligned middle of
/// the initialized bytes (the ends byte by byte). The spare capacity is left alone: nothing
/// was written there.
struct WipedOnDrop(Vec<u8>);

impl AsRef<[u8]> for WipedOnDrop {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Drop for WipedOnDrop {
    fn drop(&mut self) {
        wipe(&mut self.0);
    }
}

/// Zeroizes `bytes` with volatile writes (the compiler cannot drop them as dead stores).
fn wipe(bytes: &mut [u8]) {
    use zerocopy::FromBytes as _;
    use zeroize::Zeroize as _;
    let head = bytes.as_ptr().align_offset(8).min(bytes.len());
    let (start, rest) = bytes.split_at_mut(head);
    let words = rest.len() / 8 * 8;
    let (middle, end) = rest.split_at_mut(words);
    start.zeroize();
    match <[u64]>::mut_from_bytes(middle) {
        Ok(words) => words.zeroize(),
        // Aligned and a multiple of 8 by construction; should the cast ever refuse, the
        // bytes are still wiped, only slower.
        Err(_) => middle.zeroize(),
    }
    end.zeroize();
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

#[cfg(test)]
mod wipe_tests {
    #[test]
    fn every_byte_is_wiped_whatever_the_alignment_and_length() {
        let mut buffer = vec![0xa5u8; 300];
        for start in 0..9 {
            for len in [0, 1, 7, 8, 9, 15, 16, 17, 64, 255] {
                buffer.fill(0xa5);
                super::wipe(&mut buffer[start..start + len]);
                assert!(buffer[start..start + len].iter().all(|b| *b == 0));
                assert!(buffer[..start].iter().all(|b| *b == 0xa5));
                assert!(buffer[start + len..].iter().all(|b| *b == 0xa5));
            }
        }
    }
}
