//! Harmonic-style key endpoint: `POST /{tenant}/cks-ws-ikey/key` (the "Harmonic KMS" URL of
//! NAGRA's integration guide, `shared/seeds/000_…`).
//!
//! There is no public specification of this protocol. What is public (key vendors that
//! document a Harmonic endpoint, e.g. Axinom's) shows it is CPIX in, CPIX out: the encoder
//! sends a CPIX document naming its keys (`ContentKey@kid`, usually without
//! `commonEncryptionScheme`), empty `DRMSystem` elements for FairPlay, PlayReady and Widevine,
//! and for live a `ContentKeyPeriodList` with `@index` plus usage rules with
//! `KeyPeriodFilter`; the key server answers the same document with keys and signaling. So
//! this endpoint is the CPIX engine ([`crate::packager::cpix::exchange`]) behind Harmonic's URL:
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
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, Method};
use axum::response::Response;

use crate::auth::authenticate_packager_request;
use crate::http::body::require_body;
use crate::http::error::PlainText;
use crate::state::AppState;

/// `POST /{tenant}/cks-ws-ikey/key`.
#[utoipa::path(
    post,
    path = "/{tenant}/cks-ws-ikey/key",
    operation_id = "harmonic_key",
    tag = "packager",
    summary = "Harmonic-style key request (CPIX)",
    description = "The CPIX engine behind Harmonic's URL: a CPIX document naming the encoder's \
        keys in, the same document with keys and signaling out; an empty `DRMSystem` gets every \
        form of signaling its DRM has.",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(content = String, content_type = "application/xml", description = "A CPIX document"),
    responses(
        (status = 200, description = "The CPIX document with keys and signaling", body = String, content_type = "application/xml"),
        (status = 400, description = "Not a readable CPIX document", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid packager credentials", body = String, content_type = "text/plain"),
        (status = 403, description = "Another tenant's credentials, or a disabled tenant", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown tenant", body = String, content_type = "text/plain"),
        (status = 409, description = "A key id that exists with another key", body = String, content_type = "text/plain"),
        (status = 413, description = "Body too large", body = String, content_type = "text/plain"),
        (status = 503, description = "Key store unavailable", body = String, content_type = "text/plain"),
    ),
    security(("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = [])),
)]
pub async fn post_key(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PlainText> {
    let (tenant, body) =
        authenticate_packager_request(&state, &tenant, &method, &uri, &headers, body)?;
    let tenant = &*tenant;
    let body = require_body(body, "a CPIX document (Harmonic key request)")?;
    let request = crate::packager::cpix::read_request(body).await?;
    let response = crate::packager::cpix::exchange(&state, tenant, request).await?;
    Ok(crate::packager::cpix::xml_response(response).await?)
}
