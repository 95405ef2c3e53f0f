//! The one place where errors become HTTP.
//!
//! Every interface returns [`ApiError`]: its status, its message, its `Retry-After` and
//! `WWW-Authenticate` headers, and its one log line are decided here. How its body is
//! written is the interface's: JSON routes answer `application/problem+json`
//! ([`problem_json`]); the CPIX family a plain-text message (what AWS SPEKE and packagers
//! expect), through [`PlainText`]; the NAGRA-style JSON routes and the Widevine API their own
//! envelopes, which live in their interface's module. The route table names each endpoint's
//! format.
//! Internal details are logged here, once, and never sent to the client; no message ever
//! contains key material.

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

    /// Logs the error once, and notes it for the request's audit event and metrics: every
    /// renderer calls this, once.
    pub fn log(&self) {
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

    /// Adds the headers the error asks for: `WWW-Authenticate` (401) and `Retry-After`.
    pub fn with_auth_header(&self, mut response: Response) -> Response {
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
    pub fn retry_after(&self) -> Option<u64> {
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

/// The default error format: RFC 9457 problem details (see `impl IntoResponse for ApiError`).
pub fn problem_json(error: ApiError) -> Response {
    error.into_response()
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
