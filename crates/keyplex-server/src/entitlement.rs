//! Entitlements: the licence JWT a player presents, signed by the operator's portal with the
//! tenant's licence key (`[tenants.x.licence] jwt`), and the one gateway from an entitlement
//! to content keys.
//!
//! The order of checks is the security property of every licence route:
//! 1. the token is verified (signature, `exp` required, `nbf`, `iss`/`aud` when configured,
//!    claims well-formed, `jti` unused) — failing that, 401 (403 for a token another tenant
//!    signed) and **the store is not touched**;
//! 2. a token that covers no content at all is refused (403) without touching the store;
//! 3. only then is each requested key id looked up, and a key is handed to the route only
//!    when its content is covered. Unknown key ids and keys of uncovered contents are
//!    indistinguishable to the caller (both "not entitled", 403), so a token for one content
//!    cannot probe which key ids exist elsewhere.
//!
//! Step 3 asks the store for the key's content only (`KeyStore::key_content`, which never
//! opens the key); the key itself is read only once its content is known to be covered.
//! Requests without a valid token never reach the store at all.

use std::collections::{BTreeSet, HashMap};
use std::sync::Arc;

use axum::http::HeaderMap;
use keyplex_types::{ContentId, ContentKey, KeyId};
use serde::Deserialize;

use crate::auth::JwtVerifier;
use crate::config::LicenceConfig;
use crate::http::cors::CorsOrigins;
use crate::http::error::ApiError;
use crate::licence_policy::TokenPolicy;
use crate::state::{AppState, Tenant};

/// A tenant's licence side, prepared once at start-up.
pub struct LicenceAuth {
    /// `None` when the tenant configured no licence token keys: it delivers no licences.
    verifier: Option<JwtVerifier>,
    products: HashMap<String, Vec<ContentId>>,
    /// `replay_protection = true`: every token needs a `jti`, spent in the store on first use.
    single_use: bool,
    cors: CorsOrigins,
    /// Entitlements of tokens verified before (see [`VerifiedTokens`]); `None` for tenants
    /// that deliver no licences or spend each token on first use, which could not reuse one.
    verified: Option<VerifiedTokens>,
}

impl LicenceAuth {
    pub fn from_config(config: Option<&LicenceConfig>) -> Result<Self, String> {
        let Some(config) = config else {
            return Ok(Self {
                verifier: None,
                products: HashMap::new(),
                single_use: false,
                cors: CorsOrigins::default(),
                verified: None,
            });
        };
        let keys: Vec<_> = config.jwt_keys().collect();
        let verifier = if keys.is_empty() {
            None
        } else {
            Some(
                JwtVerifier::from_configs(&keys, &["exp", "sub"])
                    .map_err(|e| format!("licence.jwt: {e}"))?,
            )
        };
        let products = config
            .products
            .iter()
            .map(|(product, contents)| {
                let contents = contents
                    .iter()
                    .map(|c| ContentId::parse(c))
                    .collect::<Result<Vec<_>, _>>()
                    .map_err(|e| format!("licence.products.{product}: {e}"))?;
                Ok((product.clone(), contents))
            })
            .collect::<Result<_, String>>()?;
        Ok(Self {
            products,
            single_use: config.replay_protection,
            cors: CorsOrigins::from_config(&config.cors_origins),
            verified: (verifier.is_some() && !config.replay_protection)
                .then(VerifiedTokens::default),
            verifier,
        })
    }

    /// The origins allowed to call this tenant's licence and key URLs from a browser.
    pub fn cors(&self) -> &CorsOrigins {
        &self.cors
    }
}

/// Entitlements of tokens this tenant verified before, by the token's exact text: a player
/// presents the same token for every licence of a playback (each key session, renewals,
/// retries, the secure-session calls), and verifying it again — base64, JSON, HMAC or RSA —
/// was half of a ClearKey licence's CPU. (Envoy's `jwt_authn` keeps such a cache too.)
///
/// A hit is the same bytes the tenant's key verified, so only what changes with time is
/// checked again: an entry is used while `now < exp` and only tokens already valid (`nbf`
/// passed) are kept; anything else goes through full verification, which applies the
/// leeway and gives the precise error. Tenants with replay protection have none (each token
/// is spent on first use); refusals are never kept. A tenant whose settings or credentials
/// change is rebuilt with an empty cache. Bounded by bytes, like the signaling cache.
pub struct VerifiedTokens(quick_cache::sync::Cache<String, Arc<Entitlement>, TokenWeight>);

/// Bytes of verified tokens one tenant keeps (token text plus what the entitlement holds).
const VERIFIED_TOKEN_BYTES: u64 = 2 * 1024 * 1024;

impl Default for VerifiedTokens {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::with_weighter(
            4096,
            VERIFIED_TOKEN_BYTES,
            TokenWeight,
        ))
    }
}

impl VerifiedTokens {
    fn get(&self, token: &str, now_unix: u64) -> Option<Arc<Entitlement>> {
        let entitlement = self.0.get(token)?;
        if now_unix < entitlement.expires_at {
            Some(entitlement)
        } else {
            self.0.remove(token);
            None
        }
    }

    /// Keeps a freshly verified token unless it was accepted only thanks to the `nbf`
    /// leeway. True when kept.
    fn keep(
        &self,
        token: &str,
        entitlement: &Arc<Entitlement>,
        not_before: Option<u64>,
        now_unix: u64,
    ) -> bool {
        let keep = not_before.is_none_or(|nbf| nbf <= now_unix);
        if keep {
            self.0.insert(token.to_owned(), entitlement.clone());
        }
        keep
    }
}

#[derive(Clone)]
struct TokenWeight;

impl quick_cache::Weighter<String, Arc<Entitlement>> for TokenWeight {
    fn weight(&self, token: &String, e: &Arc<Entitlement>) -> u64 {
        let contents: usize = e.contents.iter().map(|c| c.as_str().len() + 48).sum();
        let bytes = token.len() + e.user.len() + e.token_id.as_ref().map_or(0, String::len);
        // Plus the entry itself (struct, Arc, cache slot).
        u64::try_from(bytes + contents)
            .unwrap_or(u64::MAX)
            .saturating_add(300)
    }
}

/// What a verified entitlement token allows.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Entitlement {
    /// `sub`: the user id.
    pub user: String,
    /// `contents` plus the contents of the configured `products` the token names.
    pub contents: BTreeSet<ContentId>,
    /// `exp`, Unix seconds.
    pub expires_at: u64,
    /// `jti`, when the token has one.
    pub token_id: Option<String>,
    /// `max_streams`: concurrent streams of this user (enforced by sessions, a later part).
    pub max_streams: Option<u32>,
    pub policy: TokenPolicy,
}

impl Entitlement {
    pub fn covers(&self, content: &ContentId) -> bool {
        self.contents.contains(content)
    }
}

/// The claims as the portal writes them. Registered claims other than these (`iat`, `iss`,
/// `aud`, …) and the portal's own claims are ignored.
#[derive(Deserialize)]
struct LicenceClaims {
    sub: String,
    exp: u64,
    #[serde(default)]
    contents: Vec<String>,
    #[serde(default)]
    products: Vec<String>,
    #[serde(default)]
    jti: Option<String>,
    #[serde(default)]
    max_streams: Option<u32>,
    #[serde(default)]
    policy: TokenPolicy,
    /// Checked by the verifier; kept to know when a verified token may be cached.
    #[serde(default)]
    nbf: Option<u64>,
}

const MAX_JTI_CHARS: usize = 256;

/// The query string of a licence route: only `token` matters; other parameters (a player's
/// cache busters, say) are ignored.
#[derive(Debug, Default, Deserialize)]
pub struct TokenQuery {
    #[serde(default)]
    token: Option<String>,
}

/// The `token` query parameter, 400 for a query string that cannot be decoded.
pub fn query_token(
    query: Result<axum::extract::Query<TokenQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Option<String>, ApiError> {
    query
        .map(|q| q.0.token)
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))
}

/// The token a licence request carries: `Authorization: Bearer <jwt>` or `?token=<jwt>`
/// (for players that cannot set headers). Both at once must agree.
pub fn presented_token(
    headers: &HeaderMap,
    query_token: Option<&str>,
) -> Result<Option<String>, ApiError> {
    let header_token = match crate::auth::bearer(headers)? {
        crate::auth::Bearer::Absent => None,
        crate::auth::Bearer::Token(token) => Some(token.to_owned()),
        crate::auth::Bearer::OtherScheme => {
            return Err(ApiError::Unauthorized(
                "licence requests take an entitlement token as Authorization: Bearer".into(),
            ));
        }
    };
    let query_token = query_token.map(|t| t.trim().to_owned());
    match (header_token, query_token) {
        (Some(h), Some(q)) if h != q => Err(ApiError::BadRequest(
            "two different entitlement tokens: send it once, as Authorization: Bearer or ?token="
                .into(),
        )),
        (Some(t), _) | (None, Some(t)) if !t.is_empty() => Ok(Some(t)),
        _ => Ok(None),
    }
}

/// Verifies the entitlement token of a request for `tenant` (step 1 of the module's order):
/// 404 when the tenant delivers no licences, 401 for a missing, forged, expired, not yet
/// valid, malformed or replayed token, 403 for a token signed with another tenant's licence
/// key. Reads nothing from the store, but records the `jti` of a single-use token there (so
/// that every node sharing the store refuses its replay).
pub async fn verify(
    state: &AppState,
    tenant: &Tenant,
    token: Option<&str>,
    now_unix: u64,
) -> Result<Arc<Entitlement>, ApiError> {
    let licence = &tenant.licence;
    let Some(verifier) = &licence.verifier else {
        return Err(ApiError::NotFound(format!(
            "tenant {} delivers no licences (no [tenants.{}.licence] jwt)",
            tenant.id, tenant.id
        )));
    };
    let Some(token) = token else {
        return Err(ApiError::Unauthorized(
            "entitlement token required: Authorization: Bearer <token> or ?token=<token>".into(),
        ));
    };
    let Some(entitlement) = licence.verified_entitlement(verifier, token, now_unix)? else {
        return Err(crate::http::rate_limit::refuse(
            state,
            tenant,
            |t| {
                t.licence
                    .verifier
                    .as_ref()
                    .is_some_and(|v| matches!(v.verify_raw(token), Ok(Some(_)) | Err(_)))
            },
            ApiError::Unauthorized("invalid entitlement token".into()),
        ));
    };
    crate::http::rate_limit::admit(
        tenant,
        &format!(
            "entitlement:sub={}",
            keyplex_types::truncate_for_message(&entitlement.user)
        ),
    )?;
    if licence.single_use {
        let Some(jti) = &entitlement.token_id else {
            return Err(ApiError::Unauthorized(
                "this tenant accepts single-use entitlement tokens only: the token needs a jti"
                    .into(),
            ));
        };
        let forget_after = entitlement.expires_at.saturating_add(REPLAY_LEEWAY_SECONDS);
        if !state
            .store()
            .spend_token_id(&tenant.id, jti, forget_after, now_unix)
            .await?
        {
            return Err(ApiError::Unauthorized(
                "entitlement token already used (single use)".into(),
            ));
        }
    }
    Ok(entitlement)
}

impl LicenceAuth {
    /// [`Self::check_token`] through the tenant's cache of verified tokens.
    fn verified_entitlement(
        &self,
        verifier: &JwtVerifier,
        token: &str,
        now_unix: u64,
    ) -> Result<Option<Arc<Entitlement>>, ApiError> {
        if let Some(hit) = self.verified.as_ref().and_then(|v| v.get(token, now_unix)) {
            return Ok(Some(hit));
        }
        let Some((entitlement, not_before)) = self.check_token(verifier, token)? else {
            return Ok(None);
        };
        let entitlement = Arc::new(entitlement);
        if let Some(verified) = &self.verified {
            verified.keep(token, &entitlement, not_before, now_unix);
        }
        Ok(Some(entitlement))
    }

    /// Step 1 up to the store: the typed entitlement of a token one of `verifier`'s keys
    /// signed, with its `nbf`; `Ok(None)` when none did.
    fn check_token(
        &self,
        verifier: &JwtVerifier,
        token: &str,
    ) -> Result<Option<(Entitlement, Option<u64>)>, ApiError> {
        match verifier.verify_raw(token)? {
            Some(claims) => self.entitlement(claims.get()).map(Some),
            None => Ok(None),
        }
    }

    /// [`verify`] without the store (no replay check, no rate limit) and without the
    /// other-tenant lookup: for [`crate::fuzzing`], which must run the token and claim
    /// parsers of the licence routes. `Ok(None)`: not this tenant's token, or the tenant
    /// delivers no licences.
    pub(crate) fn check_token_for_fuzzing(
        &self,
        token: &str,
    ) -> Result<Option<Entitlement>, ApiError> {
        match &self.verifier {
            Some(verifier) => Ok(self.check_token(verifier, token)?.map(|(e, _)| e)),
            None => Ok(None),
        }
    }

    /// Typed claims of a verified token (its claims' JSON text) and its `nbf`; the products
    /// it names are resolved to contents. Products this tenant does not configure cover
    /// nothing.
    fn entitlement(&self, claims: &str) -> Result<(Entitlement, Option<u64>), ApiError> {
        let invalid = |detail: String| {
            ApiError::Unauthorized(format!("entitlement token claims are invalid: {detail}"))
        };
        let claims: LicenceClaims =
            serde_json::from_str(claims).map_err(|e| invalid(e.to_string()))?;
        if claims.sub.trim().is_empty() {
            return Err(invalid("sub is empty".into()));
        }
        if claims
            .jti
            .as_ref()
            .is_some_and(|j| j.is_empty() || j.chars().count() > MAX_JTI_CHARS)
        {
            return Err(invalid(format!(
                "jti must be 1 to {MAX_JTI_CHARS} characters"
            )));
        }
        let mut contents = BTreeSet::new();
        for content in &claims.contents {
            contents.insert(ContentId::parse(content).map_err(|e| invalid(e.to_string()))?);
        }
        for product in &claims.products {
            match self.products.get(product) {
                Some(covered) => contents.extend(covered.iter().cloned()),
                None => tracing::info!(
                    product = %keyplex_types::truncate_for_message(product),
                    "entitlement names a product this tenant does not configure"
                ),
            }
        }
        let entitlement = Entitlement {
            user: claims.sub,
            contents,
            expires_at: claims.exp,
            token_id: claims.jti,
            max_streams: claims.max_streams,
            policy: claims.policy,
        };
        Ok((entitlement, claims.nbf))
    }
}

/// The keys among `kids` that `entitlement` covers, in request order, each once (steps 2 and
/// 3 of the module's order). Unknown key ids and keys of other contents are left out alike.
pub async fn covered_keys(
    state: &AppState,
    tenant: &Tenant,
    entitlement: &Entitlement,
    kids: &[KeyId],
) -> Result<Vec<ContentKey>, ApiError> {
    let mut covered = Vec::new();
    if entitlement.contents.is_empty() {
        return Ok(covered);
    }
    let mut seen = BTreeSet::new();
    for kid in kids {
        if !seen.insert(*kid) {
            continue;
        }
        // Entitlement is decided on the key's content alone; only covered keys are opened.
        let started = std::time::Instant::now();
        let content = state.store().key_content(&tenant.id, kid).await;
        state
            .telemetry()
            .observe_store("key_content", started.elapsed());
        let Some(content) = content? else {
            crate::scope::note_licence_keys(None, &[*kid]);
            continue;
        };
        crate::scope::note_licence_keys(Some(&content), &[*kid]);
        if !entitlement.covers(&content) {
            continue;
        }
        let started = std::time::Instant::now();
        let key = state.store().get_key(&tenant.id, kid).await;
        state
            .telemetry()
            .observe_store("get_key", started.elapsed());
        if let Some(key) = key? {
            covered.push(key);
        }
    }
    Ok(covered)
}

/// The current time for token checks.
pub fn now_unix() -> u64 {
    u64::try_from(time::OffsetDateTime::now_utc().unix_timestamp()).unwrap_or(0)
}

/// Beyond `exp`, the verifier's leeway still accepts a token for this long.
const REPLAY_LEEWAY_SECONDS: u64 = 30;
#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    fn auth(products: &[(&str, &[&str])]) -> LicenceAuth {
        let config = LicenceConfig {
            products: products
                .iter()
                .map(|(p, cs)| (p.to_string(), cs.iter().map(|c| c.to_string()).collect()))
                .collect(),
            ..LicenceConfig::default()
        };
        LicenceAuth::from_config(Some(&config)).unwrap()
    }

    #[test]
    fn claims_become_a_typed_entitlement_with_products_resolved() {
        let e = auth(&[("gold", &["movie-2", "movie-3"])])
            .entitlement(
                &serde_json::json!({
                    "sub": "user-1", "exp": 2_000_000_000u64, "iat": 1, "portal": "x",
                    "contents": ["movie-1"], "products": ["gold", "unknown-product"],
                    "jti": "t-1", "max_streams": 2,
                    "policy": {
                        "licence_duration": 3600, "persistence": true, "renewal_interval": 60,
                        "widevine_security_level": 3, "hdcp": "HDCP_V2_2",
                        "playready_security_level": 2000
                    }
                })
                .to_string(),
            )
            .unwrap()
            .0;
        assert_eq!(e.user, "user-1");
        let contents: Vec<&str> = e.contents.iter().map(ContentId::as_str).collect();
        assert_eq!(contents, ["movie-1", "movie-2", "movie-3"]);
        assert_eq!(e.token_id.as_deref(), Some("t-1"));
        assert_eq!(e.max_streams, Some(2));
        assert_eq!(e.policy.persistence, Some(true));
        assert_eq!(e.policy.licence_duration, Some(3600));
        assert_eq!(e.policy.renewal_interval, Some(60));
        assert_eq!(e.policy.widevine_security_level.unwrap().get(), 3);
        assert_eq!(e.policy.hdcp, Some(crate::licence_policy::Hdcp::V2_2));
        assert_eq!(e.policy.playready_security_level.unwrap().get(), 2000);
    }

    #[test]
    fn policy_defaults_to_temporary_without_restrictions() {
        let e = auth(&[])
            .entitlement(r#"{"sub": "u", "exp": 1}"#)
            .unwrap()
            .0;
        assert_eq!(e.policy, TokenPolicy::default());
        assert_eq!(e.policy.persistence, None);
        assert!(e.contents.is_empty());
    }

    #[test]
    fn malformed_claims_are_refused() {
        let a = auth(&[]);
        for claims in [
            serde_json::json!({"sub": "", "exp": 1}),
            serde_json::json!({"sub": "u", "exp": 1, "contents": "movie-1"}),
            serde_json::json!({"sub": "u", "exp": 1, "contents": ["bad id!"]}),
            serde_json::json!({"sub": "u", "exp": 1, "jti": ""}),
            serde_json::json!({"sub": "u", "exp": 1, "policy": {"hdpc": "HDCP_V1"}}),
            serde_json::json!({"sub": "u", "exp": 1, "policy": {"hdcp": "v9"}}),
            serde_json::json!({"sub": "u", "exp": 1, "policy": {"widevine_security_level": 6}}),
            serde_json::json!({"sub": "u", "exp": 1, "policy": {"playready_security_level": 100}}),
            serde_json::json!({"sub": "u", "exp": 1, "policy": {"persistence": "yes"}}),
            serde_json::json!({"sub": "u", "exp": 1, "max_streams": -1}),
        ] {
            let err = a.entitlement(&claims.to_string()).unwrap_err();
            assert!(
                matches!(err, ApiError::Unauthorized(_)),
                "{claims}: {err:?}"
            );
        }
    }

    #[test]
    fn verified_tokens_are_reused_only_as_the_same_text_and_only_before_exp() {
        let cache = VerifiedTokens::default();
        let entitlement = Arc::new(
            auth(&[])
                .entitlement(r#"{"sub": "u", "exp": 1000, "contents": ["movie-1"]}"#)
                .unwrap()
                .0,
        );
        assert!(cache.keep("a.b.c", &entitlement, None, 900));
        assert_eq!(cache.get("a.b.c", 999).as_deref(), Some(&*entitlement));
        // Another text is another token, whatever it decodes to.
        assert!(cache.get("a.b.C", 999).is_none());
        assert!(cache.get("a.b.c ", 999).is_none());
        // From exp on, the entry goes: full verification (with its leeway and its error)
        // decides again.
        assert!(cache.get("a.b.c", 1000).is_none());
        assert!(cache.get("a.b.c", 999).is_none());
    }

    #[test]
    fn tokens_inside_the_nbf_leeway_are_not_kept() {
        let cache = VerifiedTokens::default();
        let entitlement = Arc::new(
            auth(&[])
                .entitlement(r#"{"sub": "u", "exp": 1000}"#)
                .unwrap()
                .0,
        );
        assert!(!cache.keep("early", &entitlement, Some(910), 900));
        assert!(cache.keep("valid", &entitlement, Some(900), 900));
        assert!(cache.get("early", 950).is_none());
        assert!(cache.get("valid", 950).is_some());
    }

    #[test]
    fn tenants_that_spend_tokens_on_first_use_keep_no_verified_tokens() {
        let tenant = |replay_protection| {
            LicenceAuth::from_config(Some(&LicenceConfig {
                jwt: Some(crate::config::JwtConfig {
                    hs256_secret: Some(crate::config::Secret::new("portal-secret")),
                    ..Default::default()
                }),
                replay_protection,
                ..LicenceConfig::default()
            }))
            .unwrap()
        };
        assert!(tenant(true).verified.is_none());
        assert!(tenant(false).verified.is_some());
        // Nor a tenant without licence keys, which verifies no token at all.
        assert!(auth(&[]).verified.is_none());
    }

    #[test]
    fn token_comes_from_bearer_or_query_never_two_different_ones() {
        let mut headers = HeaderMap::new();
        assert_eq!(presented_token(&headers, None).unwrap(), None);
        assert_eq!(
            presented_token(&headers, Some("q")).unwrap().as_deref(),
            Some("q")
        );
        headers.insert("authorization", "Bearer h".parse().unwrap());
        assert_eq!(
            presented_token(&headers, None).unwrap().as_deref(),
            Some("h")
        );
        assert_eq!(
            presented_token(&headers, Some("h")).unwrap().as_deref(),
            Some("h")
        );
        assert!(matches!(
            presented_token(&headers, Some("q")),
            Err(ApiError::BadRequest(_))
        ));
        headers.insert("authorization", "Basic dTpw".parse().unwrap());
        assert!(matches!(
            presented_token(&headers, None),
            Err(ApiError::Unauthorized(_))
        ));
    }
}
