//! Harmonic-style key endpoint: `POST /{tenant}/cks-ws-ikey/key` (the "Harmonic KMS" URL of
//! NAGRA's integration guide, `shared/seeds/000_…`).
//!
//! There is no public specification of this protocol. What is public (key vendors that
//! document a Harmonic endpoint, e.g. Axinom's) shows it is CPIX in, CPIX out: the encoder
//! sends a CPIX document naming its keys (`ContentKey@kid`, usually without
//! `commonEncryptionScheme`), empty `DRMSystem` elements for FairPlay, PlayReady and Widevine,
//! and for live a `ContentKeyPeriodList` with `@index` plus usage rules with
//! `KeyPeriodFilter`; the key server answers the same document with keys and signaling. So
//! this endpoint is the CPIX engine ([`crate::cpix::exchange`]) behind Harmonic's URL:
//!
//! * authentication is the packager's (JWT in `nv-authorizations` — NAGRA's "SSP AuthN
//!   token" — `Authorization: Bearer`, or Basic);
//! * key identity is CPIX's: the encoder's kid, unless the tenant sets `kid_override`, in
//!   which case (content, track type, period) is the identity and the answer carries
//!   keyplex's kids (key servers with a Harmonic endpoint derive kids themselves, which
//!   suggests Harmonic encoders take the kid from the answer — not verified with an encoder);
//! * an empty `DRMSystem` gets every form of signaling its DRM has;
//! * errors are CPIX's: `text/plain` with the HTTP status (400/401/403/404/409/413/503).

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};

use crate::error::{ApiError, PlainText};
use crate::state::AppState;

/// `POST /{tenant}/cks-ws-ikey/key`.
pub async fn post_key(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PlainText> {
    let tenant = state.tenant(&tenant)?;
    state.authenticate_packager(tenant, &headers)?;
    let body = body.map_err(|e| {
        if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
            ApiError::PayloadTooLarge {
                limit: state.max_body_bytes(),
            }
        } else {
            ApiError::BadRequest(format!("cannot read request body: {e}"))
        }
    })?;
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "empty request body: expected a CPIX document (Harmonic key request)".into(),
        )
        .into());
    }
    let request =
        keyplex_cpix::read_document(&body).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let response = crate::cpix::exchange(&state, tenant, request).await?;
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/xml; charset=utf-8"),
        )],
        keyplex_cpix::write_document(&response),
    )
        .into_response())
}
