//! Packager authentication: HTTP Basic, JWT header tokens and (on the CPIX and SPEKE routes,
//! which see the whole request) AWS SigV4 with static credentials.
//!
//! A request names its tenant in the URL. Credentials that belong to that tenant pass;
//! credentials that belong to another tenant get 403 (they are genuine, but not for this
//! URL); anything else gets 401. Secrets are compared in constant time.

use axum::http::HeaderMap;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

use crate::config::{JwtConfig, Secret, SigV4Credential, TenantConfig};
use crate::http::error::ApiError;
use crate::sigv4::{self, SignedRequest};
use crate::state::{AppState, Tenant};

/// Who made an authenticated request (for logs and, later, the audit trail).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Principal {
    /// e.g. `basic:packager`, `jwt:sub=encoder-1`.
    pub credential: String,
}

/// Credentials found on a request. The secret parts are [`Secret`]s: redacted in `Debug`,
/// zeroized when the request is done with them.
#[derive(Debug)]
pub enum Presented {
    Basic { user: String, password: Secret },
    Bearer(Secret),
}

/// Reads the credentials a request carries: `Authorization: Basic|Bearer` or `nv-authorizations`.
pub fn presented_credentials(headers: &HeaderMap) -> Result<Option<Presented>, ApiError> {
    if let Some(value) = headers.get("nv-authorizations") {
        let token = value.to_str().map_err(|_| {
            ApiError::Unauthorized("nv-authorizations header is not valid text".into())
        })?;
        return Ok(Some(Presented::Bearer(Secret::new(token.trim()))));
    }
    let authorization = authorization(headers)?;
    if let Bearer::Token(token) = Bearer::of(authorization) {
        return Ok(Some(Presented::Bearer(Secret::new(token))));
    }
    let Some((scheme, rest)) = authorization else {
        return Ok(None);
    };
    if scheme.eq_ignore_ascii_case("basic") {
        let decoded = B64
            .decode(rest.trim())
            .ok()
            .and_then(|b| String::from_utf8(b).ok())
            .map(zeroize::Zeroizing::new)
            .ok_or_else(|| {
                ApiError::Unauthorized(
                    "Basic credentials are not valid base64 user:password".into(),
                )
            })?;
        let (user, password) = decoded.split_once(':').ok_or_else(|| {
            ApiError::Unauthorized("Basic credentials must be user:password".into())
        })?;
        return Ok(Some(Presented::Basic {
            user: user.to_owned(),
            password: Secret::new(password),
        }));
    }
    // Other schemes (e.g. AWS4-HMAC-SHA256) are handled by their own verifiers.
    Ok(None)
}

/// A tenant's packager credentials, prepared once at start-up.
pub struct PackagerAuth {
    /// (user, SHA-256 of password): hashing both sides first makes the comparison
    /// constant-time regardless of length.
    basic: Vec<(String, [u8; 32])>,
    jwt: Option<JwtVerifier>,
    sigv4: Vec<SigV4Credential>,
}

impl PackagerAuth {
    pub fn from_config(tenant: &TenantConfig) -> Result<Self, String> {
        let basic = tenant
            .basic
            .iter()
            .map(|b| (b.user.clone(), sha256(b.password.expose().as_bytes())))
            .collect();
        let keys: Vec<&JwtConfig> = tenant.jwt_keys().collect();
        let jwt = if keys.is_empty() {
            None
        } else {
            Some(JwtVerifier::from_configs(&keys, &[])?)
        };
        Ok(Self {
            basic,
            jwt,
            sigv4: tenant.sigv4.clone(),
        })
    }

    /// The tenant's SigV4 credential with this access key id (not a secret).
    pub fn sigv4_credential(&self, access_key_id: &str) -> Option<&SigV4Credential> {
        self.sigv4.iter().find(|c| c.access_key_id == access_key_id)
    }

    /// `Ok(Some)` when the credentials are this tenant's, `Ok(None)` when they are not,
    /// `Err` for a token that is this tenant's but unusable (expired, not yet valid).
    pub fn check(&self, presented: &Presented) -> Result<Option<Principal>, ApiError> {
        match presented {
            Presented::Basic { user, password } => {
                let digest = sha256(password.expose().as_bytes());
                let mut matched = None;
                for (u, p) in &self.basic {
                    // Evaluate every entry so timing does not reveal which user exists.
                    let ok = bool::from(u.as_bytes().ct_eq(user.as_bytes()) & p.ct_eq(&digest));
                    if ok {
                        matched = Some(Principal {
                            credential: format!("basic:{u}"),
                        });
                    }
                }
                Ok(matched)
            }
            Presented::Bearer(token) => match &self.jwt {
                Some(v) => v.verify(token.expose()),
                None => Ok(None),
            },
        }
    }
}

fn sha256(b: &[u8]) -> [u8; 32] {
    Sha256::digest(b).into()
}

/// Verifies JWTs with the keys a tenant configured. Only the configured algorithms pass
/// (no `alg: none`, no HS/RS confusion).
pub struct JwtVerifier {
    keys: Vec<(DecodingKey, Validation)>,
}

impl JwtVerifier {
    /// Packager tokens: `exp` is checked when present (they are sometimes long-lived).
    pub fn from_config(c: &JwtConfig) -> Result<Self, String> {
        Self::from_configs(&[c], &[])
    }

    /// Tokens verified by any of several key sets (the file's and those added through the
    /// admin API), each carrying the named registered claims, e.g. `["exp"]` for entitlement
    /// tokens, which must always expire.
    pub fn from_configs(configs: &[&JwtConfig], required: &[&str]) -> Result<Self, String> {
        let mut keys = Vec::new();
        for c in configs {
            Self::add_keys(&mut keys, c, required)?;
        }
        Ok(Self { keys })
    }

    fn add_keys(
        keys: &mut Vec<(DecodingKey, Validation)>,
        c: &JwtConfig,
        required: &[&str],
    ) -> Result<(), String> {
        let validation = |alg: Algorithm| {
            let mut v = Validation::new(alg);
            v.set_required_spec_claims(required);
            v.validate_exp = true;
            v.validate_nbf = true;
            v.leeway = 30;
            if let Some(iss) = &c.issuer {
                v.set_issuer(&[iss]);
            }
            match &c.audience {
                Some(aud) => v.set_audience(&[aud]),
                None => v.validate_aud = false,
            }
            v
        };
        if let Some(secret) = &c.hs256_secret {
            keys.push((
                DecodingKey::from_secret(secret.expose().as_bytes()),
                validation(Algorithm::HS256),
            ));
        }
        if let Some(pem) = &c.rs256_public_key_pem {
            let key = DecodingKey::from_rsa_pem(pem.as_bytes())
                .map_err(|e| format!("rs256_public_key_pem: {e}"))?;
            keys.push((key, validation(Algorithm::RS256)));
        }
        if let Some(pem) = &c.es256_public_key_pem {
            let key = DecodingKey::from_ec_pem(pem.as_bytes())
                .map_err(|e| format!("es256_public_key_pem: {e}"))?;
            keys.push((key, validation(Algorithm::ES256)));
        }
        Ok(())
    }

    /// A packager token: who it names.
    pub fn verify(&self, token: &str) -> Result<Option<Principal>, ApiError> {
        Ok(self.verify_claims(token)?.map(|claims| {
            let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("-");
            let sub = keyplex_types::truncate_for_message(sub);
            Principal {
                credential: format!("jwt:sub={sub}"),
            }
        }))
    }

    /// The claims of a token signed by one of these keys, with `exp`/`nbf`/`iss`/`aud`
    /// checked. `Ok(None)` when no key verifies it (not this verifier's token);
    /// `Err(Unauthorized)` for a genuine token that cannot be used (expired, not yet valid,
    /// wrong issuer or audience, a required claim missing).
    pub fn verify_claims(&self, token: &str) -> Result<Option<serde_json::Value>, ApiError> {
        match self.verify_raw(token)? {
            Some(raw) => Ok(serde_json::from_str(raw.get()).ok()),
            None => Ok(None),
        }
    }

    /// [`Self::verify_claims`] with the claims left as JSON text, for callers that read them
    /// into their own type in one pass (entitlements, on every licence request) instead of
    /// through a `serde_json::Value` tree.
    pub fn verify_raw(
        &self,
        token: &str,
    ) -> Result<Option<Box<serde_json::value::RawValue>>, ApiError> {
        use jsonwebtoken::errors::ErrorKind;
        let Ok(header) = jsonwebtoken::decode_header(token) else {
            return Ok(None);
        };
        for (key, validation) in &self.keys {
            if !validation.algorithms.contains(&header.alg) {
                continue;
            }
            // jsonwebtoken checks the signature before any claim, so every error below
            // is about a token these keys signed. (The claims are read as raw JSON text,
            // which any JSON accepts, so the registered claims are checked as before.)
            match jsonwebtoken::decode::<Box<serde_json::value::RawValue>>(token, key, validation) {
                Ok(data) => return Ok(Some(data.claims)),
                Err(e) => match e.kind() {
                    ErrorKind::ExpiredSignature => {
                        return Err(ApiError::Unauthorized("token expired".into()));
                    }
                    ErrorKind::ImmatureSignature => {
                        return Err(ApiError::Unauthorized("token not valid yet (nbf)".into()));
                    }
                    ErrorKind::InvalidIssuer | ErrorKind::InvalidAudience => {
                        return Err(ApiError::Unauthorized(
                            "token issuer or audience not accepted".into(),
                        ));
                    }
                    ErrorKind::MissingRequiredClaim(claim) => {
                        return Err(ApiError::Unauthorized(format!(
                            "token has no {:?} claim",
                            keyplex_types::truncate_for_message(claim)
                        )));
                    }
                    ErrorKind::InvalidClaimFormat(claim) => {
                        return Err(ApiError::Unauthorized(format!(
                            "token claim {:?} is malformed",
                            keyplex_types::truncate_for_message(claim)
                        )));
                    }
                    _ => {}
                },
            }
        }
        Ok(None)
    }
}

/// What authentication may look at when the route has read the whole request first (CPIX and
/// SPEKE: SigV4 signs the body).
pub struct RequestView<'a> {
    pub method: &'a axum::http::Method,
    pub uri: &'a axum::http::Uri,
    pub headers: &'a HeaderMap,
    pub body: &'a [u8],
}

/// Authenticates a packager for `tenant` from the whole request: an
/// `Authorization: AWS4-HMAC-SHA256 …` header is verified as SigV4 against the tenant's static
/// credentials; anything else goes to Basic/JWT ([`AppState::authenticate_packager`]). Same
/// statuses: 401 for missing, wrong or unverifiable credentials, 403 for a valid signature by
/// another tenant's access key.
pub fn authenticate_request(
    state: &AppState,
    tenant: &Tenant,
    request: &RequestView<'_>,
    now: time::OffsetDateTime,
) -> Result<Principal, ApiError> {
    // A header that is not text is left to `authenticate_packager`, which says so (401)
    // unless `nv-authorizations` carries the credentials.
    let authorization = authorization_value(request.headers)
        .ok()
        .flatten()
        .filter(|v| sigv4::is_sigv4(v));
    let Some(authorization) = authorization else {
        return state.authenticate_packager(tenant, request.headers);
    };
    let unauthorized = |e: sigv4::SigV4Error| ApiError::Unauthorized(e.to_string());
    let headers: Vec<(&str, &[u8])> = request
        .headers
        .iter()
        .map(|(name, value)| (name.as_str(), value.as_bytes()))
        .collect();
    let signed = SignedRequest {
        method: request.method.as_str(),
        path: request.uri.path(),
        query: request.uri.query(),
        headers: &headers,
        body: request.body,
    };
    // Checked before the key lookup: a role's temporary access key is unknown here, and the
    // useful answer is why, not "unknown access key".
    if request.headers.contains_key("x-amz-security-token") {
        return Err(unauthorized(sigv4::SigV4Error::TemporaryCredentials));
    }
    let auth = sigv4::parse_authorization(authorization).map_err(unauthorized)?;
    if let Some(credential) = tenant.auth.sigv4_credential(&auth.access_key_id) {
        sigv4::verify(&signed, &auth, credential, now).map_err(unauthorized)?;
        let credential = format!(
            "sigv4:{}",
            keyplex_types::truncate_for_message(&auth.access_key_id)
        );
        crate::http::rate_limit::admit(tenant, &credential)?;
        return Ok(Principal { credential });
    }
    Err(crate::http::rate_limit::refuse(
        state,
        tenant,
        |t| {
            t.auth
                .sigv4_credential(&auth.access_key_id)
                .is_some_and(|c| sigv4::verify(&signed, &auth, c, now).is_ok())
        },
        ApiError::Unauthorized("unknown AWS access key id for this tenant".into()),
    ))
}

/// The prologue of every packager POST: the tenant named in the path (404), the body within
/// the size limit (413), then the credentials (401/403) — Basic, JWT or SigV4, which signs the
/// body and so needs it first.
pub fn authenticate_packager_request(
    state: &crate::state::AppState,
    tenant: &str,
    method: &axum::http::Method,
    uri: &axum::http::Uri,
    headers: &HeaderMap,
    body: Result<axum::body::Bytes, axum::extract::rejection::BytesRejection>,
) -> Result<(std::sync::Arc<crate::state::Tenant>, axum::body::Bytes), ApiError> {
    let tenant = state.tenant(tenant)?;
    let body = crate::http::body::read_body_bytes(state, body)?;
    authenticate_request(
        state,
        &tenant,
        &RequestView {
            method,
            uri,
            headers,
            body: &body,
        },
        time::OffsetDateTime::now_utc(),
    )?;
    Ok((tenant, body))
}

/// The URL-borne tokens of a tenant: GET-style CPIX's `get_token` and PallyCon's
/// `enc_token`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenKind {
    Get,
    Enc,
}

impl TokenKind {
    /// The credential name noted for audit and rate limiting.
    pub const fn name(self) -> &'static str {
        match self {
            Self::Get => "get_token",
            Self::Enc => "enc_token",
        }
    }

    fn tokens(self, tenant: &crate::state::Tenant) -> Vec<&crate::config::Secret> {
        match self {
            Self::Get => tenant.config.get_tokens().collect(),
            Self::Enc => tenant.config.enc_tokens().collect(),
        }
    }

    /// Whether `presented_digest` (SHA-256 of the presented token) is one of `tenant`'s
    /// tokens. Hashing both sides first makes the comparison take the same time whatever the
    /// lengths, and every token is compared, so timing does not tell which one matched.
    fn matches(self, tenant: &crate::state::Tenant, presented_digest: &[u8; 32]) -> bool {
        use sha2::{Digest, Sha256};
        use subtle::ConstantTimeEq;
        self.tokens(tenant).into_iter().fold(false, |matched, t| {
            let expected: [u8; 32] = Sha256::digest(t.expose().as_bytes()).into();
            matched | bool::from(expected.ct_eq(presented_digest))
        })
    }
}

/// Authenticates a request by one of `tenant`'s tokens of `kind`: 403 for a token of
/// another tenant, 401 otherwise (with the reason when the tenant has no such token).
pub fn authenticate_token(
    state: &crate::state::AppState,
    tenant: &crate::state::Tenant,
    presented: &str,
    kind: TokenKind,
) -> Result<(), ApiError> {
    use sha2::{Digest, Sha256};
    let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
    if kind.matches(tenant, &digest) {
        crate::http::rate_limit::admit(tenant, kind.name())?;
        return Ok(());
    }
    let unauthorized = if kind.tokens(tenant).is_empty() {
        ApiError::Unauthorized(match kind {
            TokenKind::Get => {
                "GET-style CPIX is not enabled for this tenant (no get_token configured)".into()
            }
            TokenKind::Enc => {
                "PallyCon-style CPIX is not enabled for this tenant (no enc_token configured)"
                    .into()
            }
        })
    } else {
        ApiError::Unauthorized("invalid token".into())
    };
    Err(crate::http::rate_limit::refuse(
        state,
        tenant,
        |t| kind.matches(t, &digest),
        unauthorized,
    ))
}

/// The `Authorization` header, trimmed: `None` without the header, 401 when it is not text.
/// The one reader of that header (Basic, Bearer, JWT, SigV4).
pub fn authorization_value(headers: &HeaderMap) -> Result<Option<&str>, ApiError> {
    let Some(value) = headers.get(axum::http::header::AUTHORIZATION) else {
        return Ok(None);
    };
    value
        .to_str()
        .map(|v| Some(v.trim()))
        .map_err(|_| ApiError::Unauthorized("Authorization header is not valid text".into()))
}

/// The `Authorization` header as (scheme, credentials), both trimmed: `None` without the
/// header, 401 when it is not text.
pub fn authorization(headers: &HeaderMap) -> Result<Option<(&str, &str)>, ApiError> {
    Ok(authorization_value(headers)?.map(|value| {
        let (scheme, rest) = value.split_once(' ').unwrap_or((value, ""));
        (scheme, rest.trim())
    }))
}

/// What an `Authorization` header says about a bearer token.
#[derive(Debug, PartialEq, Eq)]
pub enum Bearer<'a> {
    /// No `Authorization` header.
    Absent,
    /// `Bearer <token>` (the token may be empty).
    Token(&'a str),
    /// Another scheme (Basic, AWS4-HMAC-SHA256, …).
    OtherScheme,
}

/// The bearer token of a request (admin, entitlement and GET-CPIX tokens all come through
/// here); 401 for a header that is not text.
pub fn bearer(headers: &HeaderMap) -> Result<Bearer<'_>, ApiError> {
    Ok(Bearer::of(authorization(headers)?))
}

impl<'a> Bearer<'a> {
    /// What [`authorization`]'s (scheme, credentials) say about a bearer token: the one
    /// place the scheme is compared with `Bearer`.
    pub fn of(authorization: Option<(&'a str, &'a str)>) -> Self {
        match authorization {
            None => Self::Absent,
            Some((scheme, token)) if scheme.eq_ignore_ascii_case("bearer") => Self::Token(token),
            Some(_) => Self::OtherScheme,
        }
    }
}

/// How the admin API knows its callers.
pub struct AdminAuth {
    /// SHA-256 of `[admin] token` (compared in constant time).
    token: Option<[u8; 32]>,
    jwt: Option<JwtVerifier>,
}

impl AdminAuth {
    pub fn from_config(config: &crate::config::AdminConfig) -> Result<Self, String> {
        Ok(Self {
            token: config
                .token
                .as_ref()
                .map(|t| Sha256::digest(t.expose().as_bytes()).into()),
            jwt: config
                .jwt
                .as_ref()
                .map(|j| JwtVerifier::from_configs(&[j], &["exp"]))
                .transpose()
                .map_err(|e| format!("[admin] jwt: {e}"))?,
        })
    }

    /// Who the caller is (`admin`, `admin-jwt:sub=…`), or 401.
    pub fn check(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if self.token.is_none() && self.jwt.is_none() {
            return Err(ApiError::Unauthorized(
                "the admin API is not configured: set [admin] token (or [admin] jwt)".into(),
            ));
        }
        let presented = match bearer(headers) {
            Ok(Bearer::Token(token)) if !token.is_empty() => Some(token),
            _ => None,
        }
        .ok_or_else(|| {
            ApiError::Unauthorized("admin API: send Authorization: Bearer <admin token>".into())
        })?;
        if let Some(expected) = &self.token {
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            if bool::from(expected.ct_eq(&digest)) {
                return Ok("admin".to_owned());
            }
        }
        if let Some(jwt) = &self.jwt
            && let Some(claims) = jwt.verify_claims(presented)?
        {
            let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("-");
            return Ok(format!(
                "admin-jwt:sub={}",
                keyplex_types::truncate_for_message(sub)
            ));
        }
        Err(ApiError::Unauthorized("invalid admin token".into()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn presented_credentials_do_not_print_their_secrets() {
        let mut headers = HeaderMap::new();
        // packager:pa55word-basic
        headers.insert(
            axum::http::header::AUTHORIZATION,
            "Basic cGFja2FnZXI6cGE1NXdvcmQtYmFzaWM=".parse().unwrap(),
        );
        let basic = presented_credentials(&headers).unwrap().unwrap();
        let printed = format!("{basic:?}");
        assert!(
            printed.contains("packager") && !printed.contains("pa55word"),
            "{printed}"
        );
        headers.insert(
            axum::http::header::AUTHORIZATION,
            "Bearer eyJhbGciOiJIUzI1NiJ9.e30.c2lnbmF0dXJl"
                .parse()
                .unwrap(),
        );
        let bearer = presented_credentials(&headers).unwrap().unwrap();
        assert!(!format!("{bearer:?}").contains("eyJ"));
    }
}
