//! HLS AES-128 key delivery: `GET /{tenant}/hls/v1/keys/{kid}`.
//!
//! The URL the key APIs write into `#EXT-X-KEY:METHOD=AES-128,URI="…"` (the default of
//! `hls_key_url`), with the key id in 8-4-4-4-12 or 32-hex form. The answer is the 16 raw key
//! bytes (RFC 8216 §5.2), `application/octet-stream`, never cached, for a request whose
//! entitlement covers the key's content.
//!
//! Statuses: 400 malformed key id, 401 no valid token, 403 another tenant's token, or a key id
//! the entitlement does not cover — unknown key ids included, so a token cannot probe which
//! key ids exist — 404 unknown tenant or a tenant without licence keys, 503 store unavailable;
//! errors in `application/problem+json`.

use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyplex_types::KeyId;

use crate::entitlement::{self, TokenQuery};
use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

#[utoipa::path(
    get,
    path = "/{tenant}/hls/v1/keys/{kid}",
    operation_id = "hls_key",
    tag = "licence",
    summary = "HLS AES-128 key delivery",
    description = "The `#EXT-X-KEY:METHOD=AES-128,URI=…` URL: the 16 raw key bytes (RFC 8216 \
        §5.2) for a request whose entitlement covers the key's content. Never cached.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("kid" = String, Path, description = "Key id, 8-4-4-4-12 or 32 hex digits"),
        ("token" = Option<String>, Query, description = "The entitlement token, for players \
            that cannot send `Authorization: Bearer`"),
    ),
    responses(
        (status = 200, description = "The 16 key bytes", body = inline(crate::http::doc::Binary), content_type = "application/octet-stream"),
        (status = 400, description = "Malformed key id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid entitlement token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A key id the entitlement does not cover (unknown ones \
            included), another tenant's token, or a disabled tenant",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, or a tenant without licence keys", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn get_key(
    State(state): State<AppState>,
    Path((tenant, kid)): Path<(String, String)>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let kid: KeyId = kid.parse().map_err(|_| {
        ApiError::BadRequest(format!(
            "key id {:?} is not a UUID (8-4-4-4-12) or 32 hex digits",
            keyplex_types::truncate_for_message(&kid)
        ))
    })?;
    let token =
        entitlement::presented_token(&headers, entitlement::query_token(query)?.as_deref())?;
    let entitlement =
        entitlement::verify(&state, tenant, token.as_deref(), entitlement::now_unix()).await?;
    let user = keyplex_types::truncate_for_message(&entitlement.user);
    let Some(key) = entitlement::covered_keys(&state, tenant, &entitlement, &[kid])
        .await?
        .pop()
    else {
        tracing::info!(tenant = %tenant.id, %user, %kid, "hls key refused: not covered");
        return Err(ApiError::Forbidden(format!("not entitled to key id {kid}")));
    };
    // Debug: per-request success lines belong to the audit trail, not to the log.
    tracing::debug!(tenant = %tenant.id, %user, %kid, "hls key delivered");
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        crate::http::body::secret(key.key.expose().to_vec()),
    )
        .into_response())
}
