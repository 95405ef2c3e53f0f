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
//! * `persistent-license` needs a licence policy that allows persistence (the content's or
//!   tenant's rules narrowed by the token's, `licence_policy`), else 403.
//! * A tenant with `require_session` answers only users with a live secure session covering
//!   the keys' contents (403 otherwise).
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
use crate::http::error::{ApiError, Problem};
use crate::player::licence_proxy::Via;
use crate::state::{AppState, Tenant};
use keyplex_types::ContentId;

#[utoipa::path(
    post,
    path = "/{tenant}/clearkey/v1/licenses",
    operation_id = "clearkey_licence",
    tag = "licence",
    summary = "W3C Clear Key licence",
    description = "The licence request a Clear Key CDM produced, forwarded unchanged; the answer \
        is the JSON Web Key set of the requested keys the entitlement token covers (others are \
        left out). Never cached.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("token" = Option<String>, Query, description = "The entitlement token, for players \
            that cannot send `Authorization: Bearer`"),
    ),
    request_body(content = doc::ClearKeyLicenceRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The licence (JSON Web Key set)",
            body = doc::ClearKeyLicence, content_type = "application/json"),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid entitlement token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not entitled to any requested key id, a persistent licence \
            the policy does not allow, another tenant's token, or a disabled tenant",
            body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, or a tenant without licence keys", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_licence(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let body = crate::http::body::read_body_bytes(&state, body)?;
    // Parsed before the token is verified, so that a malformed request does not spend a
    // single-use token.
    let request = ClearKeyLicenseRequest::parse(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid Clear Key licence request: {e}")))?;
    let token =
        entitlement::presented_token(&headers, entitlement::query_token(query)?.as_deref())?;
    let entitlement =
        entitlement::verify(&state, tenant, token.as_deref(), entitlement::now_unix()).await?;
    let licence = licence_for(&state, tenant, &entitlement, &request, Via::Direct).await?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        crate::http::body::secret(licence),
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
    via: Via,
) -> Result<String, ApiError> {
    let persistent = request.session_type == SessionType::PersistentLicense;
    let refuse_persistent = || {
        ApiError::Forbidden(
            "the licence policy does not allow persistent licences (persistence)".into(),
        )
    };
    // Decided before the store is read when the token alone already forbids it.
    if persistent && entitlement.policy.persistence == Some(false) {
        return Err(refuse_persistent());
    }
    let keys = entitlement::covered_keys(state, tenant, entitlement, &request.kids).await?;
    let user = || keyplex_types::truncate_for_message(&entitlement.user);
    if keys.is_empty() {
        tracing::info!(tenant = %tenant.id, user = %user(), requested = request.kids.len(), "clearkey licence refused: no requested key id is covered");
        return Err(ApiError::Forbidden(
            "not entitled to any of the requested key ids".into(),
        ));
    }
    let contents: std::collections::BTreeSet<&ContentId> =
        keys.iter().map(|k| &k.content_id).collect();
    for content in contents {
        if via == Via::Direct {
            crate::player::ssm::require_live_session(state, tenant, &entitlement.user, content)
                .await?;
        }
        // A JSON Web Key set can express persistence only; the other rules do not apply.
        if persistent {
            let policy =
                crate::licence_policy::applied(state, tenant, content, &entitlement.policy).await?;
            crate::scope::note_detail(&format!("policy {}", policy.audit_text()));
            if !policy.persistent {
                return Err(refuse_persistent());
            }
        }
    }
    // Debug, not info: one line per licence would be a write(2) per request on the hottest
    // path (~8 % of a licence's CPU); the audit trail records every delivery. (The macro
    // evaluates its fields only when the line is enabled.)
    tracing::debug!(
        tenant = %tenant.id,
        user = %user(),
        requested = request.kids.len(),
        delivered = ?keys.iter().map(|k| k.kid.to_string()).collect::<Vec<_>>(),
        "clearkey licence delivered"
    );
    let pairs: Vec<_> = keys.iter().map(|k| (k.kid, &k.key)).collect();
    let licence = clearkey_license_response(&pairs, request.session_type);
    Ok(licence)
}

/// The wire shapes of this route, for the OpenAPI document only: the request is parsed and the
/// licence written by `keyplex_drm::clearkey` (a crate without HTTP). The tests below check
/// that these shapes match what that code reads and writes.
pub mod doc {
    use serde::{Deserialize, Serialize};

    /// An EME Clear Key licence request (EME §9.1.3).
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[schema(example = json!({"kids": ["nrQFDeRLSAKTLifXUIPiZg"], "type": "temporary"}))]
    pub struct ClearKeyLicenceRequest {
        /// Key ids, base64url (padded or not; standard base64 tolerated), 1 to 256.
        pub kids: Vec<String>,
        /// The session type (default `temporary`).
        #[serde(rename = "type", default, skip_serializing_if = "Option::is_none")]
        pub session_type: Option<SessionType>,
    }

    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "kebab-case")]
    #[schema(as = ClearKeySessionType)]
    pub enum SessionType {
        Temporary,
        PersistentLicense,
    }

    /// A Clear Key licence: a JSON Web Key set (EME §9.1.4).
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    pub struct ClearKeyLicence {
        pub keys: Vec<Jwk>,
        /// The request's session type, echoed.
        #[serde(rename = "type")]
        pub session_type: SessionType,
    }

    /// One symmetric key.
    #[derive(Serialize, Deserialize, utoipa::ToSchema)]
    #[serde(deny_unknown_fields)]
    #[schema(as = ClearKeyJwk)]
    pub struct Jwk {
        /// `oct`.
        pub kty: String,
        /// The key id, base64url without padding.
        pub kid: String,
        /// The key, base64url without padding.
        pub k: String,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use keyplex_drm::clearkey::{ClearKeyLicenseRequest, clearkey_license_response};
    use keyplex_types::{ContentKeyValue, KeyId};

    use super::doc;

    #[test]
    fn the_documented_shapes_are_the_wire_shapes() {
        let kid: KeyId = "9eb4050d-e44b-4802-932e-27d75083e266".parse().unwrap();
        let key = ContentKeyValue::from_slice(&[7; 16]).unwrap();
        for session_type in [
            keyplex_drm::clearkey::SessionType::Temporary,
            keyplex_drm::clearkey::SessionType::PersistentLicense,
        ] {
            let licence = clearkey_license_response(&[(kid, &key)], session_type);
            let parsed: doc::ClearKeyLicence = serde_json::from_str(&licence).unwrap();
            assert_eq!(parsed.keys.len(), 1);
            assert_eq!(parsed.keys[0].kty, "oct");
            let request = doc::ClearKeyLicenceRequest {
                kids: vec![parsed.keys[0].kid.clone()],
                session_type: Some(parsed.session_type),
            };
            let read =
                ClearKeyLicenseRequest::parse(&serde_json::to_vec(&request).unwrap()).unwrap();
            assert_eq!(read.kids, [kid]);
            assert_eq!(read.session_type, session_type);
        }
    }
}
