//! The W3C Clear Key licence server: `POST /{tenant}/clearkey/v1/licenses`.
//!
//! The body is the licence request a Clear Key CDM produced, forwarded unchanged by the
//! player: `{"kids":["<base64url>",…],"type":"temporary"|"persistent-license"}` (EME §9.1.3).
//! The answer is the JSON Web Key set of the requested keys the entitlement covers
//! (`{"keys":[{"kty":"oct","kid":…,"k":…}],"type":…}`, base64url without padding, EME
//! §9.1.4), in `application/json`, never cached.
//!
//! * Key ids the entitlement does not cover — unknown ones included — are left out of the
//!   answer: a player asks for every key id of its init data, and plays what it receives.
//!   None covered → 403.
//! * `persistent-license` needs `"persistence": true` in the token's policy, else 403.
//! * The token's `licence_duration` has no place in a JSON Web Key set: Clear Key licences
//!   do not expire on the player.
//!
//! Statuses: 400 malformed request, 401 no valid token, 403 not entitled or another tenant's
//! token, 404 unknown tenant or a tenant without licence keys, 413 body too large, 503 store
//! unavailable; errors in `application/problem+json`.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyplex_drm::clearkey::{ClearKeyLicenseRequest, SessionType, clearkey_license_response};

use crate::entitlement::{self, Entitlement, TokenQuery};
use crate::error::ApiError;
use crate::state::{AppState, Tenant};

pub async fn post_licence(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let body = crate::body::read_body_bytes(&state, body)?;
    // Parsed before the token is verified, so that a malformed request does not spend a
    // single-use token.
    let request = ClearKeyLicenseRequest::parse(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid Clear Key licence request: {e}")))?;
    let token =
        entitlement::presented_token(&headers, entitlement::query_token(query)?.as_deref())?;
    let entitlement =
        entitlement::verify(&state, tenant, token.as_deref(), entitlement::now_unix())?;
    let licence = licence_for(&state, tenant, &entitlement, &request).await?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        licence,
    )
        .into_response())
}

/// The Clear Key licence (JSON Web Key set, JSON text) of `request` under `entitlement`:
/// the covered requested keys; 403 when none is covered or a persistent licence is not
/// allowed. Shared by this route and secure sessions (`ssm`).
pub async fn licence_for(
    state: &AppState,
    tenant: &Tenant,
    entitlement: &Entitlement,
    request: &ClearKeyLicenseRequest,
) -> Result<String, ApiError> {
    if request.session_type == SessionType::PersistentLicense && !entitlement.policy.persistence {
        return Err(ApiError::Forbidden(
            "the entitlement does not allow persistent licences (policy.persistence)".into(),
        ));
    }
    let keys = entitlement::covered_keys(state, tenant, entitlement, &request.kids).await?;
    let user: String = entitlement.user.chars().take(64).collect();
    if keys.is_empty() {
        tracing::info!(tenant = %tenant.id, %user, requested = request.kids.len(), "clearkey licence refused: no requested key id is covered");
        return Err(ApiError::Forbidden(
            "not entitled to any of the requested key ids".into(),
        ));
    }
    let delivered: Vec<String> = keys.iter().map(|k| k.kid.to_string()).collect();
    tracing::info!(tenant = %tenant.id, %user, requested = request.kids.len(), ?delivered, "clearkey licence delivered");
    let pairs: Vec<_> = keys.iter().map(|k| (k.kid, &k.key)).collect();
    let licence = clearkey_license_response(&pairs, request.session_type);
    Ok(licence)
}
