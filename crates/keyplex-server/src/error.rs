//! The one place where errors become HTTP.
//!
//! Every interface returns [`ApiError`]. How it is rendered depends on the protocol: JSON
//! routes answer `application/problem+json`; CPIX/SPEKE routes answer a plain-text message
//! (what AWS SPEKE and packagers expect), through [`PlainText`]. Internal details are logged
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
    #[error("{0}")]
    Unavailable(String),
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
            Self::Unavailable(_) => StatusCode::SERVICE_UNAVAILABLE,
            Self::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }

    /// The message for the client.
    pub fn client_message(&self) -> String {
        self.to_string()
    }

    fn log(&self) {
        match self {
            Self::Internal(detail) => tracing::error!(%detail, "internal error"),
            Self::Unavailable(detail) => tracing::error!(%detail, "store unavailable"),
            other => {
                tracing::info!(status = other.status().as_u16(), message = %other, "request rejected")
            }
        }
    }

    fn with_auth_header(&self, mut response: Response) -> Response {
        if matches!(self, Self::Unauthorized(_)) {
            response.headers_mut().insert(
                header::WWW_AUTHENTICATE,
                HeaderValue::from_static("Basic realm=\"keyplex\", Bearer"),
            );
        }
        response
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        match e {
            StoreError::Conflict { .. } => Self::Conflict(e.to_string()),
            StoreError::Unavailable(_) => {
                Self::Unavailable("key store unavailable, try again".into())
            }
            StoreError::Corrupt { .. } | StoreError::Internal(_) => Self::Internal(e.to_string()),
        }
    }
}

impl From<keyplex_crypto::CryptoError> for ApiError {
    fn from(e: keyplex_crypto::CryptoError) -> Self {
        Self::Internal(e.to_string())
    }
}

/// RFC 9457 problem details.
impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        self.log();
        let status = self.status();
        let body = serde_json::json!({
            "type": "about:blank",
            "title": status.canonical_reason().unwrap_or("error"),
            "status": status.as_u16(),
            "detail": self.client_message(),
        });
        let response = (
            status,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/problem+json"),
            )],
            body.to_string(),
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
