//! The one place where errors become HTTP.
//!
//! Every interface returns [`ApiError`]. How it is rendered depends on the protocol: JSON
//! routes answer `application/problem+json`; CPIX/SPEKE routes answer a plain-text message
//! (what AWS SPEKE and packagers expect), through [`PlainText`]; the NAGRA-style JSON routes
//! answer `{status, errorMessage}` through [`NagraJson`]. Internal details are logged
//! here, once, and never sent to the client; no message ever contains key material.

use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyplex_store::StoreError;

#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    #[error("{0}")]
    BadRequest(String),
    #[error("{0}")]
    Unauthorized(String),
    #[error("{0}")]
    Forbidden(String),
    #[error("{0}")]
    NotFound(String),
    #[error("{0}")]
    Conflict(String),
    #[error("request body is larger than the limit of {limit} bytes")]
    PayloadTooLarge { limit: usize },
    #[error("{0}")]
    Unprocessable(String),
    /// The key store failed (→ 503). The client gets only the generic message; `cause`, the
    /// store's own account (what it was doing, the database's error; never key material),
    /// is logged once, when the error is rendered, so that an outage can be diagnosed.
    #[error("key store unavailable, try again")]
    Unavailable { cause: String },
    /// Too many requests are waiting for the key store (→ 503 with `Retry-After`): refused at
    /// once instead of queued, and counted in /metrics (`keyplex_store_queue_full_total`).
    #[error("key store busy, retry after {retry_after_seconds} s")]
    StoreBusy { retry_after_seconds: u64 },
    /// The credential's rate limit is used up (→ 429 with `Retry-After`).
    #[error("rate limit of this credential exceeded; retry after {retry_after_seconds} s")]
    TooManyRequests { retry_after_seconds: u64 },
    /// The request body did not arrive within `[server] request_timeout_seconds` (→ 408).
    #[error("request body not received within {seconds} s")]
    RequestTimeout { seconds: u64 },
    /// The request was received but not answered within its deadline (→ 503): the store or
    /// an upstream is too slow; retrying later is the right reaction.
    #[error("request not answered within {seconds} s, try again")]
    Deadline { seconds: u64 },
    /// The licence proxy's upstream licence server failed (→ 502). The message names what
    /// failed (status, timeout, connection), never the request it was sent.
    #[error("upstream licence server failed: {0}")]
    BadGateway(String),
    /// Logged with its detail; the client sees only a generic message.
    #[error("internal error")]
    Internal(String),
}

impl ApiError {
    pub fn status(&self) -> StatusCode {
        match self {
            Self::BadRequest(_) => StatusCode::BAD_REQUEST,
            Self::Unauthorized(_) => StatusCode::UNAUTHORIZED,
            Self::Forbidden(_) => StatusCode::FORBIDDEN,
            Self::NotFound(_) => StatusCode::NOT_FOUND,
            Self::Conflict(_) => StatusCode::CONFLICT,
            Self::PayloadTooLarge { .. } => StatusCode::PAYLOAD_TOO_LARGE,
            Self::Unprocessable(_) => StatusCode::UNPROCESSABLE_ENTITY,
            Self::Unavailable { .. } | Self::StoreBusy { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::TooManyRequests { .. } => StatusCode::TOO_MANY_REQUESTS,
            Self::RequestTimeout { .. } => StatusCode::REQUEST_TIMEOUT,
            Self::Deadline { .. } => StatusCode::SERVICE_UNAVAILABLE,
            Self::BadGateway(_) => StatusCode::BAD_GATEWAY,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message for the client.
    pub fn client_message(&self) -> String {
        self.to_string()
    }

    fn log(&self) {
        // The request's audit event and metrics say why it failed (messages carry no keys).
        crate::scope::note_error(&self.client_message());
        match self {
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            Self::Unavailable { cause } => tracing::error!(%cause, "store unavailable"),
            Self::StoreBusy { .. } => {
                crate::scope::note_store_busy();
                // Under a flood this is every refused request: the metric counts them, the
                // log keeps quiet.
                tracing::debug!("key store busy: request refused");
            }
            Self::BadGateway(detail) => tracing::warn!(%detail, "upstream licence server failed"),
            Self::Deadline { seconds } => tracing::error!(seconds, "request deadline passed"),
            other => {
                tracing::info!(status = other.status().as_u16(), message = %other, "request rejected")
            }
        }
    }

    fn with_auth_header(&self, mut response: Response) -> Response {
        if let Self::Unauthorized(_) = self {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"keyplex\", Bearer"),
            );
        }
        if let Some(seconds) = self.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }

    /// Seconds the client should wait before retrying, when the error says so.
    fn retry_after(&self) -> Option<u64> {
        match self {
            Self::TooManyRequests {
                retry_after_seconds,
            }
            | Self::StoreBusy {
                retry_after_seconds,
            } => Some(*retry_after_seconds),
            _ => None,
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::Conflict(e.to_string()),
            StoreError::Unavailable(cause) => Self::Unavailable { cause },
            StoreError::Busy {
                retry_after_seconds,
            } => Self::StoreBusy {
                retry_after_seconds,
            },
            StoreError::Corrupt { .. } | StoreError::Internal(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<keyplex_crypto::CryptoError> for ApiError {
    fn from(e: keyplex_crypto::CryptoError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// An RFC 9457 problem details object: the body of every error of the JSON routes
/// (`application/problem+json`), except the NAGRA-style and Widevine routes.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[schema(example = json!({"type": "about:blank", "title": "Unauthorized", "status": 401,
    "detail": "invalid admin token"}))]
pub struct Problem {
    /// Always `about:blank`: the HTTP status says what kind of error it is.
    #[serde(rename = "type")]
    #[schema(example = "about:blank")]
    pub kind: &'static str,
    /// The reason phrase of the HTTP status.
    pub title: &'static str,
    /// The HTTP status code.
    pub status: u16,
    /// What is wrong, for a person (never key material nor internal details).
    pub detail: String,
}

/// RFC 9457 problem details.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let body = Problem {
            kind: "about:blank",
            title: status.canonical_reason().unwrap_or("error"),
            status: status.as_u16(),
            detail: self.client_message(),
        };
        let response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        self.with_auth_header(response)
    }
}

/// Renders an [`ApiError`] as `text/plain` (CPIX and SPEKE routes).
#[derive(Debug)]
pub struct PlainText(pub ApiError);

impl From<ApiError> for PlainText {
    fn from(e: ApiError) -> Self {
        Self(e)
    }
}

impl IntoResponse for PlainText {
    fn into_response(self) -> Response {
        let err = self.0;
        err.log();
        let response = (
            err.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("text/plain; charset=utf-8"),
            )],
            err.client_message(),
        )
            .into_response();
        err.with_auth_header(response)
    }
}

/// Renders an [`ApiError`] in the NAGRA key-and-signalization shape (`/cks-ws-keyAndSignalization/…`):
/// `{"status": "<CODE>", "errorMessage": "<message>"}` with the HTTP status of the error, no
/// `contentKey` and no `drmSignalization`. `code` is the machine-readable status; by default
/// it follows the HTTP status ([`NagraJson::default_code`]), and the interface may name a
/// more precise one (e.g. `UNSUPPORTED_DRM`, `UNSUPPORTED_EMI`).
#[derive(Debug)]
pub struct NagraJson {
    pub error: ApiError,
    pub code: &'static str,
}

impl NagraJson {
    pub fn new(error: ApiError, code: &'static str) -> Self {
        Self { error, code }
    }

    /// The `status` code for an error that has no more precise one.
    pub fn default_code(error: &ApiError) -> &'static str {
        match error {
            ApiError::BadRequest(_) | ApiError::Unprocessable(_) => "INVALID_REQUEST",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "KEY_CONFLICT",
            ApiError::PayloadTooLarge { .. } => "REQUEST_TOO_LARGE",
            ApiError::Unavailable { .. } | ApiError::StoreBusy { .. } => "SERVICE_UNAVAILABLE",
            ApiError::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            ApiError::RequestTimeout { .. } => "REQUEST_TIMEOUT",
            ApiError::Deadline { .. } => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
            ApiError::BadGateway(_) => "BAD_GATEWAY",
        }
    }
}

impl From<ApiError> for NagraJson {
    fn from(error: ApiError) -> Self {
        let code = Self::default_code(&error);
        Self { error, code }
    }
}

/// The body of a NAGRA-style error, `application/json`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"status": "UNSUPPORTED_DRM",
    "errorMessage": "unknown DRM system id 00000000-0000-0000-0000-000000000000 in drmList"}))]
pub struct NagraError {
    /// A machine-readable code: `INVALID_REQUEST`, `UNSUPPORTED_DRM`, `UNSUPPORTED_EMI`,
    /// `TIMESTAMP_OUT_OF_RANGE`, `UNAUTHORIZED`, `FORBIDDEN`, `NOT_FOUND`, `KEY_CONFLICT`,
    /// `REQUEST_TOO_LARGE`, `REQUEST_TIMEOUT`, `TOO_MANY_REQUESTS`, `SERVICE_UNAVAILABLE`, `INTERNAL_ERROR`.
    pub status: &'static str,
    /// What is wrong, for a person.
    pub error_message: String,
}

impl IntoResponse for NagraJson {
    fn into_response(self) -> Response {
        let err = self.error;
        err.log();
        let body = NagraError {
            status: self.code,
            error_message: err.client_message(),
        };
        let response = (
            err.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        err.with_auth_header(response)
    }
}

/// The answer of the Widevine API (`SignedModularDrmResponse` as JSON): always HTTP 200.
/// `response` is base64 of the JSON `CommonEncryptionResponse`, or, for a refused request, of
/// `{"status", "status_message"}` (`WidevineStatus`), whose two fields are then repeated in
/// clear beside it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SignedResponse {
    /// base64 of the JSON `CommonEncryptionResponse` (schema `CommonEncryptionResponse`) or,
    /// on errors, of `WidevineStatus`.
    #[schema(content_encoding = "base64", content_media_type = "application/json")]
    pub response: String,
    /// On errors only: the non-OK `CommonEncryptionResponse.Status` (`SIGNATURE_FAILED`,
    /// `ACCESS_DENIED`, `MALFORMED_REQUEST`, `TRACK_TYPE_MISSING`, `INTERNAL_ERROR`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// On errors only: what is wrong, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

impl SignedResponse {
    /// The JSON of a successful answer carrying `inner` — what serializing
    /// `SignedResponse { response: base64(inner), status: None, status_message: None }` gives,
    /// written straight into one buffer: base64 needs no JSON escaping, and serde_json would
    /// scan the whole text for characters to escape (several KB per answer).
    pub fn ok_json(inner: &[u8]) -> String {
        use base64::Engine as _;
        let mut out = String::with_capacity(inner.len().div_ceil(3) * 4 + 16);
        out.push_str(r#"{"response":""#);
        base64::engine::general_purpose::STANDARD.encode_string(inner, &mut out);
        out.push_str(r#""}"#);
        out
    }
}

/// The `CommonEncryptionResponse` of a refused request (base64 in `SignedResponse.response`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = WidevineStatus)]
pub struct StatusJson {
    pub status: &'static str,
    pub status_message: String,
}

/// Renders an [`ApiError`] as a Widevine common-encryption response (`/{tenant}/widevine/…`):
/// HTTP 200 with `{"response": "<base64 of {\"status\": …, \"status_message\": …}>",
/// "status": …, "status_message": …}`.
///
/// Why 200: Shaka Packager fetches with curl's fail-on-error, so an HTTP error reaches the
/// operator only as "Response code: 4xx" without the body, while a non-OK `status` is logged
/// with the raw body ("Received non-OK license response: …"). The message is therefore also
/// written in clear beside the base64 `response` (extra fields the packager's protobuf parser
/// ignores). `INTERNAL_ERROR` is the one status Shaka retries (store unavailable, internal
/// faults); every other status stops the packager.
#[derive(Debug)]
pub struct WidevineJson {
    pub error: ApiError,
    /// A `CommonEncryptionResponse.Status` name.
    pub status: &'static str,
}

impl WidevineJson {
    pub fn new(error: ApiError, status: &'static str) -> Self {
        Self { error, status }
    }

    /// The status for an error that has no more precise one.
    pub fn default_status(error: &ApiError) -> &'static str {
        match error {
            ApiError::Unauthorized(_) => "SIGNATURE_FAILED",
            ApiError::Forbidden(_) | ApiError::NotFound(_) => "ACCESS_DENIED",
            ApiError::BadRequest(_)
            | ApiError::Unprocessable(_)
            | ApiError::PayloadTooLarge { .. } => "MALFORMED_REQUEST",
            // INTERNAL_ERROR is the status Shaka Packager retries.
            ApiError::Conflict(_)
            | ApiError::Unavailable { .. }
            | ApiError::StoreBusy { .. }
            | ApiError::TooManyRequests { .. }
            | ApiError::RequestTimeout { .. }
            | ApiError::Deadline { .. }
            | ApiError::Internal(_)
            | ApiError::BadGateway(_) => "INTERNAL_ERROR",
        }
    }
}

impl From<ApiError> for WidevineJson {
    fn from(error: ApiError) -> Self {
        let status = Self::default_status(&error);
        Self { error, status }
    }
}

impl IntoResponse for WidevineJson {
    fn into_response(self) -> Response {
        use base64::Engine as _;
        let err = self.error;
        err.log();
        let message = err.client_message();
        let inner = StatusJson {
            status: self.status,
            status_message: message.clone(),
        };
        let inner = serde_json::to_string(&inner).unwrap_or_default();
        let body = SignedResponse {
            response: base64::engine::general_purpose::STANDARD.encode(inner),
            status: Some(self.status),
            status_message: Some(message),
        };
        let mut response = (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        // Still 200 (see above), but a client that reads headers learns when to retry.
        if let Some(seconds) = err.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

#[cfg(test)]
mod tests {
    use std::io::Write;
    use std::sync::{Arc, Mutex};

    use super::*;

    #[test]
    fn a_written_widevine_answer_is_what_serde_writes() {
        use base64::Engine as _;
        for inner in [
            &b""[..],
            b"{}",
            b"{\"status\":\"OK\",\"tracks\":[]}",
            &[0xff; 1000],
        ] {
            let serde = serde_json::to_string(&SignedResponse {
                response: base64::engine::general_purpose::STANDARD.encode(inner),
                status: None,
                status_message: None,
            })
            .unwrap();
            assert_eq!(SignedResponse::ok_json(inner), serde);
        }
    }

    /// A log that tests can read back.
    #[derive(Clone, Default)]
    struct Log(Arc<Mutex<Vec<u8>>>);

    impl Write for Log {
        fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
            self.0.lock().unwrap().extend_from_slice(buf);
            Ok(buf.len())
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    impl Log {
        fn text(&self) -> String {
            String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
        }
    }

    /// Renders `error` through `render` with a log attached; the log and the body.
    fn render(error: ApiError, render: fn(ApiError) -> Response) -> (String, StatusCode, String) {
        let log = Log::default();
        let writer = log.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .finish();
        let response = tracing::subscriber::with_default(subscriber, || render(error));
        let status = response.status();
        let body = futures_body(response);
        (log.text(), status, body)
    }

    fn futures_body(response: Response) -> String {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .build()
            .unwrap();
        let bytes = runtime
            .block_on(axum::body::to_bytes(response.into_body(), 1 << 20))
            .unwrap();
        String::from_utf8(bytes.to_vec()).unwrap()
    }

    #[test]
    fn a_busy_store_answers_503_with_retry_after_in_each_format() {
        type Renderer = fn(ApiError) -> Response;
        let renderers: [(Renderer, StatusCode, &str); 4] = [
            (
                |e| e.into_response(),
                StatusCode::SERVICE_UNAVAILABLE,
                "application/problem+json",
            ),
            (
                |e| PlainText(e).into_response(),
                StatusCode::SERVICE_UNAVAILABLE,
                "text/plain; charset=utf-8",
            ),
            (
                |e| NagraJson::from(e).into_response(),
                StatusCode::SERVICE_UNAVAILABLE,
                "application/json",
            ),
            // 200 with the status Shaka Packager retries (see WidevineJson).
            (
                |e| WidevineJson::from(e).into_response(),
                StatusCode::OK,
                "application/json",
            ),
        ];
        for (renderer, status, content_type) in renderers {
            let error = ApiError::from(StoreError::Busy {
                retry_after_seconds: 1,
            });
            let response = renderer(error);
            assert_eq!(response.status(), status);
            assert_eq!(response.headers()[header::RETRY_AFTER], "1");
            assert_eq!(response.headers()[header::CONTENT_TYPE], content_type);
            let body = futures_body(response);
            assert!(body.contains("key store busy, retry after 1 s"), "{body}");
        }
        let nagra = futures_body(
            NagraJson::from(ApiError::StoreBusy {
                retry_after_seconds: 1,
            })
            .into_response(),
        );
        assert!(
            nagra.contains(r#""status":"SERVICE_UNAVAILABLE""#),
            "{nagra}"
        );
        let widevine = futures_body(
            WidevineJson::from(ApiError::StoreBusy {
                retry_after_seconds: 1,
            })
            .into_response(),
        );
        assert!(
            widevine.contains(r#""status":"INTERNAL_ERROR""#),
            "{widevine}"
        );
    }

    #[test]
    fn a_store_outage_logs_its_cause_once_and_tells_the_client_only_the_generic_text() {
        let cause = "cannot start a write transaction: disk I/O error";
        let renderers: [fn(ApiError) -> Response; 4] = [
            |e| e.into_response(),
            |e| PlainText(e).into_response(),
            |e| NagraJson::from(e).into_response(),
            |e| WidevineJson::from(e).into_response(),
        ];
        for renderer in renderers {
            let error = ApiError::from(StoreError::Unavailable(cause.to_owned()));
            let (log, status, body) = render(error, renderer);
            assert_eq!(log.matches(cause).count(), 1, "{log}");
            assert!(log.contains("store unavailable"), "{log}");
            assert!(!body.contains(cause), "{body}");
            assert!(body.contains("key store unavailable, try again"), "{body}");
            assert!(
                status == StatusCode::SERVICE_UNAVAILABLE || status == StatusCode::OK,
                "{status}"
            );
        }
    }
}
