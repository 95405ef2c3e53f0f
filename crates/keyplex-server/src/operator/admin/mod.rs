//! The admin API, `/admin/v1/…`: tenants and credentials (effective at once, kept in the
//! store), contents and key metadata, the audit trail, the dashboard's stats, key export and
//! import, and master key rotation. `docs/operators.md` is its reference.
//!
//! Authentication: `Authorization: Bearer` with `[admin] token`, or a JWT verified by
//! `[admin] jwt` (which must carry `exp`). Answers and errors are JSON (problem+json).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Query, State};
use axum::response::Response;
use keyplex_store::{AuditAction, AuditEvent};
use keyplex_types::ContentId;
use time::OffsetDateTime;

use crate::http::error::ApiError;
use crate::state::AppState;

pub mod audit;
pub mod backup;
pub mod contents;
pub mod credentials;
pub mod drm_systems;
pub mod licence_policy;
pub mod rotation;
pub mod stats;
pub mod tenants;

pub use backup::KeyBundle;

/// Who called an admin route (`admin`, `admin-jwt:sub=…`), as the admin layer found it.
#[derive(Clone, Debug)]
pub struct AdminCaller(pub String);

/// 401 unless the request carries the admin token (or an admin JWT); the caller's name goes
/// into the request for the handler's audit records.
pub(crate) async fn require_admin(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let who = state.admin_auth().check(request.headers())?;
    request.extensions_mut().insert(AdminCaller(who));
    Ok(next.run(request).await)
}

/// Admin 401s challenge for a Bearer token only: a Basic challenge would make browsers pop
/// their own login box over the dashboard's.
pub(crate) async fn bearer_challenge(mut response: Response) -> Response {
    if let Some(value) = response
        .headers_mut()
        .get_mut(axum::http::header::WWW_AUTHENTICATE)
    {
        *value = axum::http::HeaderValue::from_static("Bearer realm=\"keyplex-admin\"");
    }
    response
}

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text())))
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
}

/// Records an admin change durably (before the answer), naming the caller.
pub(crate) async fn audit_change(
    state: &AppState,
    who: &str,
    tenant: &str,
    action: AuditAction,
    detail: String,
) -> Result<(), ApiError> {
    audit_change_of(state, who, tenant, None, action, detail).await
}

/// An admin change, recorded durably before the answer; `content` when it concerns one.
pub(crate) async fn audit_change_of(
    state: &AppState,
    who: &str,
    tenant: &str,
    content: Option<&ContentId>,
    action: AuditAction,
    detail: String,
) -> Result<(), ApiError> {
    let client = crate::scope::who().map_or_else(|| "-".to_owned(), |(_, _, client)| client);
    state
        .audit()
        .record_durable(vec![AuditEvent {
            id: 0,
            at: OffsetDateTime::now_utc(),
            tenant: tenant.to_owned(),
            action,
            interface: "admin".to_owned(),
            credential: who.to_owned(),
            client,
            content_id: content.cloned(),
            key_ids: Vec::new(),
            outcome: "ok".to_owned(),
            detail: Some(detail),
        }])
        .await?;
    Ok(())
}

/// Request shapes of this API that are read through configuration types (which stay free of
/// OpenAPI derives), for the OpenAPI document only. The tests below check them against the
/// types that really read them.
pub mod doc {
    use serde::Serialize;

    /// `POST /admin/v1/tenants/{id}/credentials`: a credential, by `type`.
    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[schema(as = Credential, example = json!({"type": "basic", "user": "packager"}))]
    pub enum CredentialRequest {
        /// HTTP Basic for packagers; the password is generated (and returned once) when left
        /// out.
        Basic {
            user: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            password: Option<String>,
        },
        /// Keys that verify packagers' JWTs.
        Jwt(JwtKeys),
        /// AWS SigV4 static credentials (CPIX and SPEKE routes).
        Sigv4 {
            access_key_id: String,
            secret_access_key: String,
            /// Default `us-east-1`.
            #[serde(skip_serializing_if = "Option::is_none")]
            region: Option<String>,
            /// Default `execute-api`.
            #[serde(skip_serializing_if = "Option::is_none")]
            service: Option<String>,
        },
        /// A Widevine API signer (Shaka Packager's `--signer`).
        WidevineSigner {
            name: String,
            /// 64 hex characters (AES-256 key).
            aes_key: String,
            /// 32 hex characters.
            aes_iv: String,
        },
        /// The token of GET-style CPIX (at least 16 characters); generated when left out.
        GetToken {
            #[serde(skip_serializing_if = "Option::is_none")]
            token: Option<String>,
        },
        /// Keys that verify players' entitlement tokens.
        LicenceJwt(JwtKeys),
        /// The PallyCon-style token (`enc_token`, at least 16 characters) of the PallyCon and
        /// ATEME routes; generated when left out.
        EncToken {
            #[serde(skip_serializing_if = "Option::is_none")]
            token: Option<String>,
        },
        /// A licence upstream with its signing secrets (sealed like every credential):
        /// replaces the configuration's `[tenants.x.licence] upstream.<drm>`.
        LicenceUpstream {
            /// `widevine`, `playready`, `fairplay` or `prm`.
            drm: String,
            /// The upstream's `http(s)://` URL.
            url: String,
            /// `keyplex-json`, `widevine-cloud`, `playready-test-server`,
            /// `playready-customdata`, `fairplay-json` or `fairplay-binary`.
            #[serde(skip_serializing_if = "Option::is_none")]
            protocol: Option<String>,
            /// widevine-cloud: the provider name.
            #[serde(skip_serializing_if = "Option::is_none")]
            provider: Option<String>,
            /// widevine-cloud: 64 hex digits.
            #[serde(skip_serializing_if = "Option::is_none")]
            signing_key: Option<String>,
            /// widevine-cloud: 32 hex digits.
            #[serde(skip_serializing_if = "Option::is_none")]
            signing_iv: Option<String>,
            /// Widevine: base64 of the service certificate answered locally.
            #[serde(skip_serializing_if = "Option::is_none")]
            service_certificate: Option<String>,
        },
    }

    /// JWT verification keys: at least one; exactly the algorithms given are accepted.
    #[derive(Serialize, utoipa::ToSchema)]
    pub struct JwtKeys {
        /// HS256 shared secret (at least 32 bytes).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hs256_secret: Option<String>,
        /// RS256 public key, PEM.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub rs256_public_key_pem: Option<String>,
        /// ES256 public key, PEM.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub es256_public_key_pem: Option<String>,
        /// Required `iss`, if set.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub issuer: Option<String>,
        /// Required `aud`, if set.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub audience: Option<String>,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::doc::{CredentialRequest, JwtKeys};
    use crate::registry::CredentialSpec;

    fn jwt() -> JwtKeys {
        JwtKeys {
            hs256_secret: Some("a-long-shared-secret-for-the-tests".into()),
            rs256_public_key_pem: Some("-----BEGIN PUBLIC KEY-----".into()),
            es256_public_key_pem: Some("-----BEGIN PUBLIC KEY-----".into()),
            issuer: Some("portal".into()),
            audience: Some("keyplex".into()),
        }
    }

    #[test]
    fn credential_request_strings_are_wiped() {
        let mut body = serde_json::json!({
            "type": "sigv4",
            "access_key_id": "AKID",
            "secret_access_key": "wipe-me-0123456789",
            "nested": [{"secret": "wipe-me-too"}],
        });
        super::credentials::wipe_strings(&mut body);
        let text = body.to_string();
        assert!(!text.contains("wipe-me"), "{text}");
        assert_eq!(body["secret_access_key"], "");
        assert_eq!(body["nested"][0]["secret"], "");
    }

    /// Every documented credential, with every field, is what the admin API reads.
    #[test]
    fn documented_credentials_are_credential_specs() {
        let documented = [
            CredentialRequest::Basic {
                user: "packager".into(),
                password: Some("secret".into()),
            },
            CredentialRequest::Jwt(jwt()),
            CredentialRequest::Sigv4 {
                access_key_id: "AKID".into(),
                secret_access_key: "secret".into(),
                region: Some("eu-west-1".into()),
                service: Some("execute-api".into()),
            },
            CredentialRequest::WidevineSigner {
                name: "widevine_test".into(),
                aes_key: "00".repeat(32),
                aes_iv: "00".repeat(16),
            },
            CredentialRequest::GetToken {
                token: Some("a-token-of-sixteen-chars".into()),
            },
            CredentialRequest::LicenceJwt(jwt()),
            CredentialRequest::EncToken {
                token: Some("an-enc-token-of-sixteen-chars".into()),
            },
            CredentialRequest::LicenceUpstream {
                drm: "widevine".into(),
                url: "https://license.uat.widevine.com/cenc/getlicense/widevine_test".into(),
                protocol: Some("widevine-cloud".into()),
                provider: Some("widevine_test".into()),
                signing_key: Some("00".repeat(32)),
                signing_iv: Some("00".repeat(16)),
                service_certificate: None,
            },
        ];
        let mut kinds = Vec::new();
        for credential in documented {
            let json = serde_json::to_value(&credential).unwrap();
            let spec: CredentialSpec =
                serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(json["type"], spec.kind());
            kinds.push(spec.kind());
        }
        assert_eq!(kinds, CredentialSpec::KINDS);
    }
}
