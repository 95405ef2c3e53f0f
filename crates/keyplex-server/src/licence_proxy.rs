//! The licence proxy per DRM: `POST /{tenant}/{wvls|prls|fpls|prmls}/contentlicenseservice/v1/licenses`.
//!
//! A player's licence request comes here instead of going to the DRM's licence server. keyplex
//! checks the entitlement, finds the content's keys, and forwards the player's challenge to the
//! tenant's upstream licence server for that DRM (`[tenants.x.licence] upstream`) together with
//! the keys and the token's licence policy, in the form that upstream takes. The upstream's
//! answer (status 2xx, body, `Content-Type`) goes back to the player unchanged.
//!
//! DRM challenges are opaque to keyplex (a signed Widevine protobuf, a PlayReady SOAP envelope
//! with an encrypted header inside, an encrypted FairPlay SPC), so the keys are named by the
//! URL the page configures the player with: `?kid=<uuid>` (repeatable) and/or
//! `?content_id=<id>`; with neither, the one content the token covers.
//!
//! One adapter per upstream wire shape, behind [`LicenceAdapter`]:
//! * [`WidevineStyleJson`] (Widevine and PRM): a JSON licence request with the challenge in
//!   `payload` and the keys in `content_key_specs`;
//! * [`PlayReadySoap`]: the SOAP challenge unchanged, the keys in `X-Keyplex-Content-Keys`;
//! * [`FairPlaySpc`]: the SPC and the one key + IV as JSON; the CKC comes back.
//!
//! Order of checks (as every licence route, see `entitlement`): unknown tenant 404; request
//! shape 400 / 413; no upstream for this DRM 404; token 401 / 403 (the store is not touched);
//! token covering nothing or not the named content 403; keys looked up, any requested key not
//! covered (unknown ones included) 403; then the upstream. Upstream failures are 502; key
//! material never appears in a message or a log line.

use std::collections::BTreeSet;
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_types::{ContentId, ContentKey, KeyId, TrackType};
use serde::{Deserialize, Serialize};

use crate::entitlement::{self, Hdcp, LicencePolicy};
use crate::error::{ApiError, Problem};
use crate::state::{AppState, Tenant};

/// The names `[tenants.x.licence] upstream` accepts, one per proxied DRM.
pub const UPSTREAM_NAMES: [&str; 4] = ["widevine", "playready", "fairplay", "prm"];

/// Default of `upstream_timeout_seconds`: one upstream attempt, connection to last byte.
const DEFAULT_UPSTREAM_TIMEOUT_SECONDS: u64 = 10;
/// Pauses before the retries of an attempt that certainly did not produce a licence
/// (connection refused, 502/503/504): two retries.
const RETRY_BACKOFF: [Duration; 2] = [Duration::from_millis(100), Duration::from_millis(300)];
/// Largest upstream answer passed on (licences are a few KiB).
const MAX_UPSTREAM_ANSWER_BYTES: usize = 1024 * 1024;
/// Most keys one licence carries (`?kid=` parameters, or a content's keys).
const MAX_LICENCE_KEYS: usize = 64;

/// The header the PlayReady pass-through adds: base64 of the [`KeyDelivery`] JSON.
pub const CONTENT_KEYS_HEADER: &str = "x-keyplex-content-keys";
const DEFAULT_SOAP_ACTION: &str =
    "\"http://schemas.microsoft.com/DRM/2007/03/protocols/AcquireLicense\"";

/// The HTTP client for upstreams: no redirects, because the request carries content keys and
/// must reach only the configured URL.
pub fn upstream_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(Duration::from_secs(5))
        .build()
        .map_err(|e| format!("licence proxy HTTP client: {e}"))
}

#[utoipa::path(
    post,
    path = "/{tenant}/wvls/contentlicenseservice/v1/licenses",
    operation_id = "widevine_licence",
    tag = "licence",
    summary = "Widevine licence proxy",
    description = "Checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the token's licence policy to the tenant's upstream licence \
        server for Widevine (`[tenants.x.licence] upstream`). The upstream's answer (2xx status, \
        body, `Content-Type`) goes back unchanged, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("token" = Option<String>, Query, description = "The entitlement token, for players \
            that cannot send `Authorization: Bearer`"),
        ("kid" = Option<Vec<String>>, Query, style = Form, explode, description = "Key id(s) \
            of the licence (UUID or 32 hex digits), repeatable, at most 64"),
        ("content_id" = Option<String>, Query, description = "The content of the licence"),
    ),
    request_body(content = inline(crate::openapi::Binary), content_type = "application/octet-stream", description = "The CDM's licence challenge (a signed Widevine protobuf); sent upstream base64 in a Widevine-style JSON request"),
    responses(
        (status = 200, description = "The upstream licence server's answer, passed back \
            unchanged (its 2xx status, body and `Content-Type`)",
            content(("application/octet-stream"))),
        (status = 400, description = "Malformed challenge or query, or keys that do not fit \
            this DRM's licence", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid entitlement token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A token covering nothing or not the named content, a key \
            not covered (unknown ones included), another tenant's token, or a disabled tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, a tenant without licence keys, or no \
            upstream for this DRM", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The upstream licence server failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_widevine(
    state: State<AppState>,
    tenant: Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    proxy(
        WidevineStyleJson::WIDEVINE,
        state,
        tenant,
        query,
        headers,
        body,
    )
    .await
}

#[utoipa::path(
    post,
    path = "/{tenant}/prls/contentlicenseservice/v1/licenses",
    operation_id = "playready_licence",
    tag = "licence",
    summary = "PlayReady licence proxy",
    description = "Checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the token's licence policy to the tenant's upstream licence \
        server for PlayReady (`[tenants.x.licence] upstream`). The upstream's answer (2xx status, \
        body, `Content-Type`) goes back unchanged, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("token" = Option<String>, Query, description = "The entitlement token, for players \
            that cannot send `Authorization: Bearer`"),
        ("kid" = Option<Vec<String>>, Query, style = Form, explode, description = "Key id(s) \
            of the licence (UUID or 32 hex digits), repeatable, at most 64"),
        ("content_id" = Option<String>, Query, description = "The content of the licence"),
        ("SOAPAction" = Option<String>, Header, description = "Passed upstream (default: the AcquireLicense action)"),
    ),
    request_body(content = String, content_type = "text/xml", description = "The `AcquireLicense` SOAP envelope, forwarded byte for byte; the keys travel beside it in `X-Keyplex-Content-Keys`"),
    responses(
        (status = 200, description = "The upstream licence server's answer, passed back \
            unchanged (its 2xx status, body and `Content-Type`)",
            content(("application/octet-stream"))),
        (status = 400, description = "Malformed challenge or query, or keys that do not fit \
            this DRM's licence", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid entitlement token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A token covering nothing or not the named content, a key \
            not covered (unknown ones included), another tenant's token, or a disabled tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, a tenant without licence keys, or no \
            upstream for this DRM", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The upstream licence server failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_playready(
    state: State<AppState>,
    tenant: Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    proxy(PlayReadySoap, state, tenant, query, headers, body).await
}

#[utoipa::path(
    post,
    path = "/{tenant}/fpls/contentlicenseservice/v1/licenses",
    operation_id = "fairplay_licence",
    tag = "licence",
    summary = "FairPlay licence proxy (SPC/CKC)",
    description = "Checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the token's licence policy to the tenant's upstream licence \
        server for FairPlay (`[tenants.x.licence] upstream`). The upstream's answer (2xx status, \
        body, `Content-Type`) goes back unchanged, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("token" = Option<String>, Query, description = "The entitlement token, for players \
            that cannot send `Authorization: Bearer`"),
        ("kid" = Option<Vec<String>>, Query, style = Form, explode, description = "Key id(s) \
            of the licence (UUID or 32 hex digits), repeatable, at most 64"),
        ("content_id" = Option<String>, Query, description = "The content of the licence"),
    ),
    request_body(description = "The SPC: raw bytes, the form field `spc=<base64>`, or JSON `{\"spc\": \"<base64>\"}`; the CKC comes back", content((inline(crate::openapi::Binary) = "application/octet-stream"), (SpcJson = "application/json"), (SpcForm = "application/x-www-form-urlencoded"))),
    responses(
        (status = 200, description = "The upstream licence server's answer, passed back \
            unchanged (its 2xx status, body and `Content-Type`)",
            content(("application/octet-stream"))),
        (status = 400, description = "Malformed challenge or query, or keys that do not fit \
            this DRM's licence", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid entitlement token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A token covering nothing or not the named content, a key \
            not covered (unknown ones included), another tenant's token, or a disabled tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, a tenant without licence keys, or no \
            upstream for this DRM", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The upstream licence server failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_fairplay(
    state: State<AppState>,
    tenant: Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    proxy(FairPlaySpc, state, tenant, query, headers, body).await
}

#[utoipa::path(
    post,
    path = "/{tenant}/prmls/contentlicenseservice/v1/licenses",
    operation_id = "prm_licence",
    tag = "licence",
    summary = "NAGRA PRM licence proxy",
    description = "Checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the token's licence policy to the tenant's upstream licence \
        server for NAGRA PRM (`[tenants.x.licence] upstream`). The upstream's answer (2xx status, \
        body, `Content-Type`) goes back unchanged, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("token" = Option<String>, Query, description = "The entitlement token, for players \
            that cannot send `Authorization: Bearer`"),
        ("kid" = Option<Vec<String>>, Query, style = Form, explode, description = "Key id(s) \
            of the licence (UUID or 32 hex digits), repeatable, at most 64"),
        ("content_id" = Option<String>, Query, description = "The content of the licence"),
    ),
    request_body(content = inline(crate::openapi::Binary), content_type = "application/octet-stream", description = "The PRM CDM's licence challenge; sent upstream base64 in a Widevine-style JSON request"),
    responses(
        (status = 200, description = "The upstream licence server's answer, passed back \
            unchanged (its 2xx status, body and `Content-Type`)",
            content(("application/octet-stream"))),
        (status = 400, description = "Malformed challenge or query, or keys that do not fit \
            this DRM's licence", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid entitlement token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A token covering nothing or not the named content, a key \
            not covered (unknown ones included), another tenant's token, or a disabled tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, a tenant without licence keys, or no \
            upstream for this DRM", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The upstream licence server failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_prm(
    state: State<AppState>,
    tenant: Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    proxy(WidevineStyleJson::PRM, state, tenant, query, headers, body).await
}

// ---------------------------------------------------------------------------------------------
// Adapters

/// What an adapter knows when it builds the upstream request: entitlement passed, keys found.
pub struct LicenceContext<'a> {
    pub tenant: &'a Tenant,
    pub content_id: &'a ContentId,
    /// Every key the licence carries, all of `content_id`, each covered by the entitlement.
    pub keys: &'a [ContentKey],
    pub policy: &'a LicencePolicy,
}

/// The request keyplex sends upstream. Holds key material: no `Debug`.
pub struct UpstreamRequest {
    pub content_type: HeaderValue,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// One upstream wire shape.
pub trait LicenceAdapter {
    /// The player's challenge, as this DRM's players send it.
    type Challenge;
    /// The `[tenants.x.licence] upstream` entry of this DRM.
    fn upstream_name(&self) -> &'static str;
    /// Reads the challenge from the player's request; 400 when it is not one. Runs before the
    /// entitlement is checked (a malformed request must not spend a single-use token).
    fn challenge(&self, headers: &HeaderMap, body: Bytes) -> Result<Self::Challenge, ApiError>;
    /// The request for the upstream; 400 when the keys do not fit this DRM's licence.
    fn upstream_request(
        &self,
        ctx: &LicenceContext<'_>,
        challenge: Self::Challenge,
    ) -> Result<UpstreamRequest, ApiError>;
}

/// Widevine-style JSON licence request (Widevine's licence proxy API; also the PRM template):
/// `{"payload", "provider", "content_id", "content_key_specs", "policy_overrides",
/// "allowed_track_types"}`, `application/json`.
pub struct WidevineStyleJson {
    upstream_name: &'static str,
}

impl WidevineStyleJson {
    pub const WIDEVINE: Self = Self {
        upstream_name: "widevine",
    };
    pub const PRM: Self = Self {
        upstream_name: "prm",
    };
}

#[derive(Serialize)]
struct WidevineStyleRequest<'a> {
    /// The CDM's challenge, base64.
    payload: String,
    provider: &'a str,
    /// The content id's UTF-8 bytes, base64.
    content_id: String,
    content_key_specs: Vec<ContentKeySpec>,
    policy_overrides: PolicyOverrides,
    allowed_track_types: &'static str,
}

#[derive(Serialize)]
struct ContentKeySpec {
    key_id: String,
    key: String,
    iv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    track_type: Option<&'static str>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_level: Option<u8>,
    #[serde(skip_serializing_if = "Option::is_none")]
    required_output_protection: Option<OutputProtection>,
}

#[derive(Serialize)]
struct OutputProtection {
    hdcp: &'static str,
}

#[derive(Serialize)]
struct PolicyOverrides {
    can_play: bool,
    can_persist: bool,
    can_renew: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    license_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_interval_seconds: Option<u64>,
}

impl LicenceAdapter for WidevineStyleJson {
    type Challenge = Bytes;

    fn upstream_name(&self) -> &'static str {
        self.upstream_name
    }

    fn challenge(&self, _headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
        crate::body::require_body(body, "the CDM's licence challenge")
    }

    fn upstream_request(
        &self,
        ctx: &LicenceContext<'_>,
        challenge: Bytes,
    ) -> Result<UpstreamRequest, ApiError> {
        let policy = ctx.policy;
        let content_key_specs = ctx
            .keys
            .iter()
            .map(|k| ContentKeySpec {
                key_id: B64.encode(k.kid.as_bytes()),
                key: B64.encode(k.key.expose()),
                iv: k.iv.to_base64(),
                track_type: k.track_type.as_ref().and_then(widevine_track_type),
                security_level: policy.widevine_security_level.map(|l| l.get()),
                required_output_protection: policy
                    .hdcp
                    .map(|h| OutputProtection { hdcp: hdcp_name(h) }),
            })
            .collect();
        let request = WidevineStyleRequest {
            payload: B64.encode(&challenge),
            provider: ctx
                .tenant
                .config
                .widevine_provider
                .as_deref()
                .unwrap_or(ctx.tenant.id.as_str()),
            content_id: B64.encode(ctx.content_id.as_str()),
            content_key_specs,
            policy_overrides: PolicyOverrides {
                can_play: true,
                can_persist: policy.persistence,
                can_renew: policy.renewal_interval.is_some(),
                license_duration_seconds: policy.licence_duration,
                renewal_interval_seconds: policy.renewal_interval,
            },
            allowed_track_types: allowed_track_types(ctx.keys),
        };
        json_request(&request)
    }
}

/// The Widevine track type of a key, for the ones Widevine names (others are left out).
fn widevine_track_type(track: &TrackType) -> Option<&'static str> {
    [
        TrackType::SD,
        TrackType::HD,
        TrackType::UHD1,
        TrackType::UHD2,
        TrackType::AUDIO,
    ]
    .into_iter()
    .find(|t| *t == track.as_str())
}

/// The widest Widevine `allowed_track_types` the keys need: the keys sent are already exactly
/// the ones entitled, so this only must not hide any of them. A key without a Widevine video
/// tier (`ALL`, no track type) may be any resolution.
fn allowed_track_types(keys: &[ContentKey]) -> &'static str {
    let tier = |k: &ContentKey| match k.track_type.as_ref().map(TrackType::as_str) {
        Some(TrackType::SD | TrackType::AUDIO) => 0,
        Some(TrackType::HD) => 1,
        Some(TrackType::UHD1) => 2,
        _ => 3,
    };
    match keys.iter().map(tier).max().unwrap_or(0) {
        0 => "SD_ONLY",
        1 => "SD_HD",
        2 => "SD_UHD1",
        _ => "SD_UHD2",
    }
}

fn hdcp_name(hdcp: Hdcp) -> &'static str {
    match hdcp {
        Hdcp::None => "HDCP_NONE",
        Hdcp::V1 => "HDCP_V1",
        Hdcp::V2 => "HDCP_V2",
        Hdcp::V2_1 => "HDCP_V2_1",
        Hdcp::V2_2 => "HDCP_V2_2",
        Hdcp::V2_3 => "HDCP_V2_3",
        Hdcp::NoDigitalOutput => "HDCP_NO_DIGITAL_OUTPUT",
    }
}

fn json_request(value: &impl Serialize) -> Result<UpstreamRequest, ApiError> {
    let body = serde_json::to_vec(value)
        .map_err(|e| ApiError::Internal(format!("upstream request JSON: {e}")))?;
    Ok(UpstreamRequest {
        content_type: HeaderValue::from_static("application/json"),
        headers: Vec::new(),
        body: body.into(),
    })
}

/// PlayReady SOAP pass-through: the player's `AcquireLicense` SOAP envelope is forwarded
/// byte for byte as `text/xml; charset=utf-8` with the player's `SOAPAction`, and the keys and
/// policy travel beside it in `X-Keyplex-Content-Keys` (base64 of [`KeyDelivery`] JSON) — a
/// keyplex convention for a licence server plug-in, since PlayReady servers take key
/// delivery through their own extension points.
pub struct PlayReadySoap;

pub struct SoapChallenge {
    envelope: Bytes,
    soap_action: HeaderValue,
}

/// The keys and policy beside a pass-through challenge.
#[derive(Serialize)]
struct KeyDelivery<'a> {
    content_id: &'a str,
    keys: Vec<DeliveredKey>,
    policy: DeliveredPolicy,
}

#[derive(Serialize)]
struct DeliveredKey {
    /// 8-4-4-4-12, UUID byte order.
    kid: String,
    /// base64 of the key id in PlayReady's little-endian GUID order (as in a WRMHEADER).
    kid_guid_le: String,
    key: String,
    iv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    track_type: Option<String>,
}

#[derive(Serialize)]
struct DeliveredPolicy {
    persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    license_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_level: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdcp: Option<&'static str>,
}

impl LicenceAdapter for PlayReadySoap {
    type Challenge = SoapChallenge;

    fn upstream_name(&self) -> &'static str {
        "playready"
    }

    fn challenge(&self, headers: &HeaderMap, body: Bytes) -> Result<SoapChallenge, ApiError> {
        let envelope = crate::body::require_body(body, "a PlayReady SOAP licence challenge")?;
        if !envelope.trim_ascii_start().starts_with(b"<") {
            return Err(ApiError::BadRequest(
                "a PlayReady licence challenge is a SOAP (XML) envelope".into(),
            ));
        }
        let soap_action = headers
            .get("soapaction")
            .cloned()
            .unwrap_or_else(|| HeaderValue::from_static(DEFAULT_SOAP_ACTION));
        Ok(SoapChallenge {
            envelope,
            soap_action,
        })
    }

    fn upstream_request(
        &self,
        ctx: &LicenceContext<'_>,
        challenge: SoapChallenge,
    ) -> Result<UpstreamRequest, ApiError> {
        let policy = ctx.policy;
        let delivery = KeyDelivery {
            content_id: ctx.content_id.as_str(),
            keys: ctx
                .keys
                .iter()
                .map(|k| DeliveredKey {
                    kid: k.kid.to_string(),
                    kid_guid_le: B64.encode(k.kid.to_guid_le_bytes()),
                    key: B64.encode(k.key.expose()),
                    iv: k.iv.to_base64(),
                    track_type: k.track_type.as_ref().map(|t| t.as_str().to_owned()),
                })
                .collect(),
            policy: DeliveredPolicy {
                persistent: policy.persistence,
                license_duration_seconds: policy.licence_duration,
                renewal_interval_seconds: policy.renewal_interval,
                security_level: policy.playready_security_level.map(|l| l.get()),
                hdcp: policy.hdcp.map(hdcp_name),
            },
        };
        let json = serde_json::to_vec(&delivery)
            .map_err(|e| ApiError::Internal(format!("key delivery JSON: {e}")))?;
        let keys_header = HeaderValue::from_str(&B64.encode(json))
            .map_err(|_| ApiError::Internal("key delivery header is not a header value".into()))?;
        Ok(UpstreamRequest {
            content_type: HeaderValue::from_static("text/xml; charset=utf-8"),
            headers: vec![
                (HeaderName::from_static("soapaction"), challenge.soap_action),
                (HeaderName::from_static(CONTENT_KEYS_HEADER), keys_header),
            ],
            body: challenge.envelope,
        })
    }
}

/// FairPlay SPC/CKC: the SPC arrives as raw bytes, as the form field `spc=<base64>` or as JSON
/// `{"spc": "<base64>"}`; the upstream key server module gets `{"spc", "assetId", "kid",
/// "key", "iv", "persistent", "leaseDurationSeconds"}` as JSON and answers the CKC, which is
/// passed back unchanged. A FairPlay licence carries one key.
pub struct FairPlaySpc;

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = FairPlaySpcJson)]
struct SpcJson {
    /// The SPC, base64 (standard or URL-safe, padded or not).
    #[schema(content_encoding = "base64")]
    spc: String,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = FairPlaySpcForm)]
struct SpcForm {
    /// The SPC, base64 (standard or URL-safe, padded or not).
    spc: String,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct FairPlayRequest<'a> {
    spc: String,
    asset_id: &'a str,
    kid: String,
    key: String,
    iv: String,
    persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_duration_seconds: Option<u64>,
}

impl LicenceAdapter for FairPlaySpc {
    type Challenge = Vec<u8>;

    fn upstream_name(&self) -> &'static str {
        "fairplay"
    }

    fn challenge(&self, headers: &HeaderMap, body: Bytes) -> Result<Vec<u8>, ApiError> {
        let body = crate::body::require_body(body, "a FairPlay SPC")?;
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let invalid = |what: String| ApiError::BadRequest(format!("invalid FairPlay SPC: {what}"));
        let spc = match media_type.as_deref() {
            Some("application/json") => {
                let json: SpcJson =
                    serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
                decode_spc(&json.spc).ok_or_else(|| invalid("spc is not base64".into()))?
            }
            Some("application/x-www-form-urlencoded") => {
                let form: SpcForm =
                    serde_urlencoded::from_bytes(&body).map_err(|e| invalid(e.to_string()))?;
                decode_spc(&form.spc).ok_or_else(|| invalid("spc is not base64".into()))?
            }
            _ => body.to_vec(),
        };
        if spc.is_empty() {
            return Err(invalid("spc is empty".into()));
        }
        Ok(spc)
    }

    fn upstream_request(
        &self,
        ctx: &LicenceContext<'_>,
        spc: Vec<u8>,
    ) -> Result<UpstreamRequest, ApiError> {
        let [key] = ctx.keys else {
            return Err(ApiError::BadRequest(format!(
                "a FairPlay licence carries one key, and {} keys were named: name the key with ?kid=",
                ctx.keys.len()
            )));
        };
        json_request(&FairPlayRequest {
            spc: B64.encode(spc),
            asset_id: ctx.content_id.as_str(),
            kid: key.kid.to_hex(),
            key: hex::encode(key.key.expose()),
            iv: key.iv.to_hex(),
            persistent: ctx.policy.persistence,
            lease_duration_seconds: ctx.policy.licence_duration,
        })
    }
}

/// Standard or URL-safe base64, padded or not. A form field's `+` that a page forgot to
/// percent-encode arrives as a space, so spaces are read as `+`.
fn decode_spc(text: &str) -> Option<Vec<u8>> {
    use base64::engine::{DecodePaddingMode, GeneralPurpose, GeneralPurposeConfig};
    let config =
        GeneralPurposeConfig::new().with_decode_padding_mode(DecodePaddingMode::Indifferent);
    let text: String = text
        .trim()
        .chars()
        .map(|c| if c == ' ' { '+' } else { c })
        .filter(|c| !c.is_ascii_whitespace())
        .collect();
    GeneralPurpose::new(&base64::alphabet::STANDARD, config)
        .decode(&text)
        .or_else(|_| GeneralPurpose::new(&base64::alphabet::URL_SAFE, config).decode(&text))
        .ok()
}

// ---------------------------------------------------------------------------------------------
// The route

/// Which keys the licence is for, from the query string.
#[derive(Default)]
struct LicenceQuery {
    token: Option<String>,
    kids: Vec<KeyId>,
    content_id: Option<ContentId>,
}

fn licence_query(
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
) -> Result<LicenceQuery, ApiError> {
    let pairs = query
        .map_err(|e| ApiError::BadRequest(format!("invalid query string: {}", e.body_text())))?
        .0;
    let mut parsed = LicenceQuery::default();
    for (name, value) in pairs {
        match name.as_str() {
            "token" if parsed.token.is_some() => {
                return Err(ApiError::BadRequest("token given twice".into()));
            }
            "token" => parsed.token = Some(value),
            "kid" => {
                let kid: KeyId = value.trim().parse().map_err(|_| {
                    ApiError::BadRequest(format!(
                        "kid {:?} is not a UUID (8-4-4-4-12) or 32 hex digits",
                        value.chars().take(64).collect::<String>()
                    ))
                })?;
                if !parsed.kids.contains(&kid) {
                    parsed.kids.push(kid);
                }
            }
            "content_id" if parsed.content_id.is_some() => {
                return Err(ApiError::BadRequest(
                    "content_id given twice: one licence is for one content".into(),
                ));
            }
            "content_id" => {
                parsed.content_id = Some(
                    ContentId::parse(&value)
                        .map_err(|e| ApiError::BadRequest(format!("content_id: {e}")))?,
                );
            }
            // Other parameters (a player's cache busters, say) are ignored.
            _ => {}
        }
    }
    if parsed.kids.len() > MAX_LICENCE_KEYS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_LICENCE_KEYS} kid parameters per licence"
        )));
    }
    Ok(parsed)
}

async fn proxy<A: LicenceAdapter>(
    adapter: A,
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let body = crate::body::read_body_bytes(&state, body)?;
    let query = licence_query(query)?;
    let challenge = adapter.challenge(&headers, body)?;
    let upstream = upstream_of(&adapter, tenant)?;
    let token = entitlement::presented_token(&headers, query.token.as_deref())?;
    let entitlement =
        entitlement::verify(&state, tenant, token.as_deref(), entitlement::now_unix()).await?;
    let answer = entitled_licence(
        &adapter,
        &state,
        tenant,
        &upstream,
        &entitlement,
        &query.kids,
        query.content_id.as_ref(),
        challenge,
    )
    .await?;
    let mut response = (answer.status, answer.body).into_response();
    let response_headers = response.headers_mut();
    match answer.content_type {
        Some(content_type) => response_headers.insert(header::CONTENT_TYPE, content_type),
        None => response_headers.remove(header::CONTENT_TYPE),
    };
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// Where a tenant's licences of one DRM come from: 404 when it configures no upstream.
pub struct Upstream<'a> {
    url: &'a str,
    timeout: Duration,
}

pub fn upstream_of<'a, A: LicenceAdapter>(
    adapter: &A,
    tenant: &'a Tenant,
) -> Result<Upstream<'a>, ApiError> {
    let drm = adapter.upstream_name();
    let licence_config = tenant.config.licence.as_ref();
    let Some(url) = licence_config.and_then(|l| l.upstream.get(drm)) else {
        return Err(ApiError::NotFound(format!(
            "tenant {} has no {drm} licence server ([tenants.{}.licence] upstream.{drm})",
            tenant.id, tenant.id
        )));
    };
    let timeout = Duration::from_secs(
        licence_config
            .and_then(|l| l.upstream_timeout_seconds)
            .unwrap_or(DEFAULT_UPSTREAM_TIMEOUT_SECONDS),
    );
    Ok(Upstream { url, timeout })
}

/// The upstream licence for a verified `entitlement` (steps 6 on of the module's order): the
/// keys named by `kids` / `content_id` (see [`licence_keys`]), the adapter's request, the
/// upstream's 2xx answer. Shared by the proxy routes and secure sessions (`ssm`).
#[allow(clippy::too_many_arguments)]
pub async fn entitled_licence<A: LicenceAdapter>(
    adapter: &A,
    state: &AppState,
    tenant: &Tenant,
    upstream: &Upstream<'_>,
    entitlement: &entitlement::Entitlement,
    kids: &[KeyId],
    content_id: Option<&ContentId>,
    challenge: A::Challenge,
) -> Result<UpstreamAnswer, ApiError> {
    if kids.len() > MAX_LICENCE_KEYS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_LICENCE_KEYS} key ids per licence"
        )));
    }
    let drm = adapter.upstream_name();
    let user: String = entitlement.user.chars().take(64).collect();
    let (content_id, keys) = licence_keys(state, tenant, entitlement, kids, content_id).await?;
    let kids: Vec<String> = keys.iter().map(|k| k.kid.to_string()).collect();
    let request = adapter.upstream_request(
        &LicenceContext {
            tenant,
            content_id: &content_id,
            keys: &keys,
            policy: &entitlement.policy,
        },
        challenge,
    )?;
    let started = std::time::Instant::now();
    let answer = send_upstream(state, upstream.url, upstream.timeout, request).await;
    state.telemetry().observe_upstream(
        drm,
        if answer.is_ok() { "ok" } else { "error" },
        started.elapsed(),
    );
    let answer = answer.inspect_err(|e| {
            tracing::warn!(tenant = %tenant.id, %user, %drm, content = %content_id, ?kids, error = %e, "licence proxy: upstream failed");
        })?;
    // Debug: per-request success lines belong to the audit trail, not to the log.
    tracing::debug!(tenant = %tenant.id, %user, %drm, content = %content_id, ?kids, status = answer.status.as_u16(), "licence proxy: upstream licence passed on");
    Ok(answer)
}

/// The content and keys of the licence (steps 6 and 7 of the order): the named key ids, or the
/// named content's keys, or the keys of the one content the token covers. Every key must be
/// covered; an unknown key id is refused exactly like a key of another content.
async fn licence_keys(
    state: &AppState,
    tenant: &Tenant,
    entitlement: &entitlement::Entitlement,
    kids: &[KeyId],
    content_id: Option<&ContentId>,
) -> Result<(ContentId, Vec<ContentKey>), ApiError> {
    if entitlement.contents.is_empty() {
        return Err(ApiError::Forbidden(
            "the entitlement token covers no content".into(),
        ));
    }
    if let Some(content) = content_id
        && !entitlement.covers(content)
    {
        return Err(ApiError::Forbidden(format!(
            "not entitled to content {content}"
        )));
    }
    if !kids.is_empty() {
        let keys = entitlement::covered_keys(state, tenant, entitlement, kids).await?;
        if keys.len() != kids.len() {
            return Err(ApiError::Forbidden(
                "not entitled to every requested key id".into(),
            ));
        }
        let contents: Vec<&ContentId> = keys
            .iter()
            .map(|k| &k.content_id)
            .collect::<BTreeSet<_>>()
            .into_iter()
            .collect();
        let content = match (contents.as_slice(), content_id) {
            ([one], None) => (*one).clone(),
            ([one], Some(named)) if *one == named => (*one).clone(),
            ([_], Some(named)) => {
                return Err(ApiError::Forbidden(format!(
                    "the requested key ids are not keys of content {named}"
                )));
            }
            _ => {
                return Err(ApiError::BadRequest(
                    "the requested key ids belong to several contents: one licence is for one content"
                        .into(),
                ));
            }
        };
        return Ok((content, keys));
    }
    let content = match content_id {
        Some(content) => content.clone(),
        None => {
            let mut covered = entitlement.contents.iter();
            match (covered.next(), covered.next()) {
                (Some(only), None) => only.clone(),
                _ => {
                    return Err(ApiError::BadRequest(format!(
                        "the entitlement covers {} contents: name the content with ?content_id= or the keys with ?kid=",
                        entitlement.contents.len()
                    )));
                }
            }
        }
    };
    let content_kids: Vec<KeyId> = state
        .store()
        .list_keys(&tenant.id, &content)
        .await?
        .into_iter()
        .map(|info| info.kid)
        .collect();
    if content_kids.is_empty() {
        return Err(ApiError::NotFound(format!("content {content} has no keys")));
    }
    if content_kids.len() > MAX_LICENCE_KEYS {
        return Err(ApiError::Unprocessable(format!(
            "content {content} has {} keys, more than one licence carries ({MAX_LICENCE_KEYS}): name the keys with ?kid=",
            content_kids.len()
        )));
    }
    let keys = entitlement::covered_keys(state, tenant, entitlement, &content_kids).await?;
    Ok((content, keys))
}

/// The upstream's answer, passed on unchanged.
pub struct UpstreamAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// Why one attempt failed, and whether another attempt may be made: only when the upstream
/// certainly produced no licence (the connection was never made, or it answered 502/503/504).
enum AttemptError {
    Retryable(String),
    Final(String),
}

async fn send_upstream(
    state: &AppState,
    url: &str,
    timeout: Duration,
    request: UpstreamRequest,
) -> Result<UpstreamAnswer, ApiError> {
    let mut last = String::new();
    for attempt in 0..=RETRY_BACKOFF.len() {
        if let Some(pause) = attempt.checked_sub(1).and_then(|i| RETRY_BACKOFF.get(i)) {
            tokio::time::sleep(*pause).await;
        }
        match attempt_upstream(state, url, timeout, &request).await {
            Ok(answer) => return Ok(answer),
            Err(AttemptError::Final(message)) => return Err(ApiError::BadGateway(message)),
            Err(AttemptError::Retryable(message)) => last = message,
        }
    }
    Err(ApiError::BadGateway(format!(
        "{last} ({} attempts)",
        RETRY_BACKOFF.len() + 1
    )))
}

async fn attempt_upstream(
    state: &AppState,
    url: &str,
    timeout: Duration,
    request: &UpstreamRequest,
) -> Result<UpstreamAnswer, AttemptError> {
    let mut builder = state
        .upstream_client()
        .post(url)
        .timeout(timeout)
        .header(header::CONTENT_TYPE, request.content_type.clone());
    for (name, value) in &request.headers {
        builder = builder.header(name, value);
    }
    // reqwest's error text names the URL only; the request body is never part of it.
    let describe = |e: &reqwest::Error| {
        if e.is_timeout() {
            format!("no answer within {} s", timeout.as_secs())
        } else if e.is_connect() {
            "cannot connect".to_owned()
        } else {
            "the exchange failed".to_owned()
        }
    };
    let mut response = match builder.body(request.body.clone()).send().await {
        Ok(response) => response,
        Err(e) if e.is_connect() && !e.is_timeout() => {
            return Err(AttemptError::Retryable(describe(&e)));
        }
        Err(e) => return Err(AttemptError::Final(describe(&e))),
    };
    let status = response.status();
    if matches!(status.as_u16(), 502..=504) {
        return Err(AttemptError::Retryable(format!("HTTP {}", status.as_u16())));
    }
    if !status.is_success() {
        return Err(AttemptError::Final(format!("HTTP {}", status.as_u16())));
    }
    let content_type = response.headers().get(header::CONTENT_TYPE).cloned();
    let mut body = Vec::new();
    while let Some(chunk) = response
        .chunk()
        .await
        .map_err(|e| AttemptError::Final(describe(&e)))?
    {
        if body.len() + chunk.len() > MAX_UPSTREAM_ANSWER_BYTES {
            return Err(AttemptError::Final(format!(
                "answer larger than {MAX_UPSTREAM_ANSWER_BYTES} bytes"
            )));
        }
        body.extend_from_slice(&chunk);
    }
    Ok(UpstreamAnswer {
        status,
        content_type,
        body: body.into(),
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn spc_is_read_from_either_base64_alphabet_with_or_without_padding() {
        let bytes: Vec<u8> = (0u8..=255).collect();
        let standard = B64.encode(&bytes);
        assert!(standard.contains('+') && standard.contains('/'));
        assert_eq!(decode_spc(&standard).unwrap(), bytes);
        assert_eq!(decode_spc(standard.trim_end_matches('=')).unwrap(), bytes);
        assert_eq!(decode_spc(&standard.replace('+', " ")).unwrap(), bytes);
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(decode_spc(&url_safe).unwrap(), bytes);
        assert!(decode_spc("not base64!").is_none());
    }

    #[test]
    fn query_names_keys_and_content() {
        let q = licence_query(Ok(Query(vec![
            ("kid".into(), "0123456789abcdef0123456789abcdef".into()),
            ("kid".into(), "01234567-89ab-cdef-0123-456789abcdef".into()),
            ("content_id".into(), "movie-1".into()),
            ("cb".into(), "123".into()),
        ])))
        .unwrap();
        assert_eq!(q.kids.len(), 1, "the same kid in both forms counts once");
        assert_eq!(q.content_id.unwrap().as_str(), "movie-1");
        for bad in [
            vec![("kid".to_owned(), "nope".to_owned())],
            vec![("content_id".into(), "bad id!".into())],
            vec![
                ("content_id".into(), "a".into()),
                ("content_id".into(), "b".into()),
            ],
        ] {
            assert!(matches!(
                licence_query(Ok(Query(bad))),
                Err(ApiError::BadRequest(_))
            ));
        }
    }
}
