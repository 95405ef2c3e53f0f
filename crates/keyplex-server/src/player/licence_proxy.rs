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
//! One adapter per DRM ([`LicenceAdapter`]), each speaking the protocols its upstream may
//! (`protocol = …` in the upstream's table, `config::UpstreamProtocol`; a plain URL is
//! keyplex's own JSON form for an operator's gateway):
//! * [`WidevineStyle`] (Widevine and PRM): `keyplex-json`, or Google's signed
//!   `widevine-cloud` licence proxy API; the CDM's service certificate request is answered
//!   from `service_certificate` or the upstream, without a token;
//! * [`PlayReadySoap`]: the SOAP challenge unchanged, keys beside it (`keyplex-json`), in the
//!   test server's `cfg=` query (`playready-test-server`) or in a `CustomData` SOAP header
//!   (`playready-customdata`); SOAP faults pass back unchanged;
//! * [`FairPlaySpc`]: the SPC with the one key + IV, as keyplex JSON, hosted-service JSON
//!   (`fairplay-json`) or bytes (`fairplay-binary`); the CKC comes back.
//!
//! The licence rules come from `licence_policy`: the content's (or tenant's) policy
//! narrowed by the token's, recorded in the audit event. A tenant with `require_session`
//! refuses a direct licence without a live secure session for the user and content.
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

use crate::config::{Upstream, UpstreamProtocol};
use crate::entitlement;
use crate::http::error::ApiError;
use crate::licence_policy::{AppliedPolicy, Hdcp};
use crate::state::{AppState, Tenant};

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

/// The query of every proxy route, for the OpenAPI document (read by [`licence_query`]).
#[derive(utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
#[allow(dead_code)]
struct LicenceQueryDoc {
    /// The entitlement token, for players that cannot send `Authorization: Bearer`.
    token: Option<String>,
    /// Key id(s) of the licence (UUID or 32 hex digits), repeatable, at most 64.
    #[param(style = Form, explode)]
    kid: Option<Vec<String>>,
    /// The content of the licence.
    content_id: Option<String>,
}

/// The answers every proxy route of a built-in DRM documents (PlayReady adds its SOAP fault).
struct BuiltInDrmAnswers;

impl utoipa::IntoResponses for BuiltInDrmAnswers {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        proxy_answers(
            "Malformed challenge or query, or keys that do not fit this DRM's licence",
            "A token covering nothing or not the named content, a key not covered (unknown ones \
             included), another tenant's token, or a disabled tenant",
            "Unknown tenant, a tenant without licence keys, or no upstream for this DRM",
        )
    }
}

/// The answers of `/{tenant}/licences/{name}`.
struct DefinedDrmAnswers;

impl utoipa::IntoResponses for DefinedDrmAnswers {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        proxy_answers(
            "Malformed challenge or query",
            "A token covering nothing or not the named content, a key not covered (unknown ones \
             included), another tenant's token, a disabled tenant, or no live secure session \
             where the tenant requires one",
            "Unknown tenant, a tenant without licence keys, a DRM the tenant does not define, or \
             no upstream for it",
        )
    }
}

/// The proxy routes' answers, written once: the upstream's licence, and keyplex's refusals as
/// problem+json (the three whose reasons differ by route are given).
fn proxy_answers(
    bad_request: &str,
    forbidden: &str,
    not_found: &str,
) -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
    use utoipa::openapi::{ContentBuilder, Ref, ResponseBuilder};
    let problem = |description: &str| {
        let content = ContentBuilder::new()
            .schema(Some(Ref::from_schema_name("Problem")))
            .build();
        ResponseBuilder::new()
            .description(description)
            .content("application/problem+json", content)
            .build()
            .into()
    };
    let licence = ResponseBuilder::new()
        .description(
            "The upstream licence server's answer, passed back unchanged (its 2xx status, body \
             and `Content-Type`)",
        )
        .content("application/octet-stream", ContentBuilder::new().build())
        .build();
    [
        ("200", licence.into()),
        ("400", problem(bad_request)),
        ("401", problem("No valid entitlement token")),
        ("403", problem(forbidden)),
        ("404", problem(not_found)),
        ("413", problem("Body too large")),
        ("502", problem("The upstream licence server failed")),
        ("503", problem("Key store unavailable")),
    ]
    .into_iter()
    .map(|(status, response)| (status.to_owned(), response))
    .collect()
}

#[utoipa::path(
    post,
    path = "/{tenant}/wvls/contentlicenseservice/v1/licenses",
    operation_id = "widevine_licence",
    tag = "licence",
    summary = "Widevine licence proxy",
    description = "Checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the licence rules (the content's or tenant's, narrowed by the \
        token's policy) to the tenant's upstream licence service for Widevine (`[tenants.x.licence] upstream`), in that \
        service's protocol (see docs/licences.md); the licence goes back, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        LicenceQueryDoc,
    ),
    request_body(content = inline(crate::http::doc::Binary), content_type = "application/octet-stream", description = "The CDM's licence challenge (a signed Widevine protobuf; the two bytes `08 04` ask for the service certificate, answered without a token); sent upstream base64 in the Widevine licence message, signed for `widevine-cloud`"),
    responses(BuiltInDrmAnswers),
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
        WidevineStyle::WIDEVINE,
        state,
        tenant.0,
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
        challenge with the keys and the licence rules (the content's or tenant's, narrowed by the \
        token's policy) to the tenant's upstream licence service for PlayReady (`[tenants.x.licence] upstream`), in that \
        service's protocol (see docs/licences.md); the licence goes back, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        LicenceQueryDoc,
        ("SOAPAction" = Option<String>, Header, description = "Passed upstream (default: the AcquireLicense action)"),
    ),
    request_body(content = String, content_type = "text/xml", description = "The `AcquireLicense` SOAP envelope; its signed `<LA>` is forwarded byte for byte, the keys travel in the test server's `cfg=`, a `CustomData` SOAP header or `X-Keyplex-Content-Keys` (by protocol). SOAP faults come back unchanged with their status"),
    responses(
        BuiltInDrmAnswers,
        (status = 500, description = "The upstream's SOAP fault, passed back unchanged", content(("text/xml"))),
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
    proxy(PlayReadySoap, state, tenant.0, query, headers, body).await
}

#[utoipa::path(
    post,
    path = "/{tenant}/fpls/contentlicenseservice/v1/licenses",
    operation_id = "fairplay_licence",
    tag = "licence",
    summary = "FairPlay licence proxy (SPC/CKC)",
    description = "Checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the licence rules (the content's or tenant's, narrowed by the \
        token's policy) to the tenant's upstream licence service for FairPlay (`[tenants.x.licence] upstream`), in that \
        service's protocol (see docs/licences.md); the licence goes back, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        LicenceQueryDoc,
    ),
    request_body(description = "The SPC: raw bytes, the form field `spc=<base64>`, or JSON `{\"spc\": \"<base64>\"}`; the CKC comes back", content((inline(crate::http::doc::Binary) = "application/octet-stream"), (SpcJson = "application/json"), (SpcForm = "application/x-www-form-urlencoded"))),
    responses(BuiltInDrmAnswers),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_fairplay(
    state: State<AppState>,
    tenant: Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    proxy(FairPlaySpc, state, tenant.0, query, headers, body).await
}

#[utoipa::path(
    post,
    path = "/{tenant}/prmls/contentlicenseservice/v1/licenses",
    operation_id = "prm_licence",
    tag = "licence",
    summary = "NAGRA PRM licence proxy",
    description = "Checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the licence rules (the content's or tenant's, narrowed by the \
        token's policy) to the tenant's upstream licence service for NAGRA PRM (`[tenants.x.licence] upstream`), in that \
        service's protocol (see docs/licences.md); the licence goes back, never cached. The keys are named by `kid` \
        and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        LicenceQueryDoc,
    ),
    request_body(content = inline(crate::http::doc::Binary), content_type = "application/octet-stream", description = "The PRM CDM's licence challenge; sent upstream base64 in a Widevine-style JSON request"),
    responses(BuiltInDrmAnswers),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_prm(
    state: State<AppState>,
    tenant: Path<String>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    proxy(WidevineStyle::PRM, state, tenant.0, query, headers, body).await
}

#[utoipa::path(
    post,
    path = "/{tenant}/licences/{name}",
    operation_id = "defined_drm_licence",
    tag = "licence",
    summary = "Licence proxy of a tenant-defined DRM system",
    description = "For a DRM the tenant defines (`[[tenants.x.drm_systems]]`, e.g. Irdeto or \
        Conax): checks the entitlement, finds the content's keys and forwards the player's \
        challenge with the keys and the licence rules (the content's or tenant's, narrowed by the \
        token's policy) to `[tenants.x.licence] upstream.<name>` as keyplex's JSON licence \
        request; the upstream's 2xx answer goes back unchanged, never cached. The keys are named \
        by `kid` and/or `content_id`; with neither, the one content the token covers.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("name" = String, Path, description = "The defined DRM system's `name`"),
        LicenceQueryDoc,
    ),
    request_body(content = inline(crate::http::doc::Binary), content_type = "application/octet-stream", description = "The DRM client's licence challenge, sent upstream base64"),
    responses(DefinedDrmAnswers),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_defined(
    state: State<AppState>,
    Path((tenant_id, name)): Path<(String, String)>,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant_id)?;
    let Some(system) = tenant.drm_systems.by_name(&name) else {
        return Err(ApiError::NotFound(format!(
            "tenant {} defines no DRM system {:?} ([[tenants.{}.drm_systems]])",
            tenant.id,
            keyplex_types::truncate_for_message(&name),
            tenant.id
        )));
    };
    let adapter = DefinedDrm {
        name: system.config.name.clone(),
        system_id: system.definition.system_id().to_string(),
    };
    drop(tenant);
    proxy(adapter, state, tenant_id, query, headers, body).await
}

// ---------------------------------------------------------------------------------------------
// Adapters

/// What an adapter knows when it builds the upstream request: entitlement passed, keys found.
pub struct LicenceContext<'a> {
    pub tenant: &'a Tenant,
    /// keyplex's public base URL (renewals are sent back through keyplex).
    pub public_url: &'a str,
    pub content_id: &'a ContentId,
    /// Every key the licence carries, all of `content_id`, each covered by the entitlement.
    pub keys: &'a [ContentKey],
    pub policy: &'a AppliedPolicy,
    /// The entitlement's user (`sub`).
    pub user: &'a str,
}

/// The request keyplex sends upstream. Holds key material: no `Debug`.
pub struct UpstreamRequest {
    /// The upstream URL with what the protocol adds to it (the PlayReady test server's
    /// `cfg=`); `None`: the configured URL.
    pub url: Option<String>,
    pub content_type: HeaderValue,
    pub headers: Vec<(HeaderName, HeaderValue)>,
    pub body: Bytes,
}

/// What came back from the upstream (any status but a retried 502/503/504).
pub struct RawAnswer {
    pub status: StatusCode,
    pub content_type: Option<HeaderValue>,
    pub body: Bytes,
}

/// One DRM's licence route: how its players send challenges, and how each protocol its
/// upstream may speak (`config::UpstreamProtocol`) carries the challenge, keys and policy,
/// and answers.
pub trait LicenceAdapter {
    /// The player's challenge, as this DRM's players send it.
    type Challenge;
    /// The `[tenants.x.licence] upstream` entry of this DRM.
    fn upstream_name(&self) -> &str;
    /// Reads the challenge from the player's request; 400 when it is not one. Runs before the
    /// entitlement is checked (a malformed request must not spend a single-use token).
    fn challenge(&self, headers: &HeaderMap, body: Bytes) -> Result<Self::Challenge, ApiError>;
    /// A request that needs neither entitlement nor keys (Widevine's service certificate
    /// request): its answer, from the configuration or the upstream.
    fn keyless(&self, _challenge: &Self::Challenge) -> bool {
        false
    }
    /// The request for the upstream; 400 when the keys do not fit this DRM's licence. With
    /// `ctx` `None` (a [`Self::keyless`] challenge) no keys are sent.
    fn upstream_request(
        &self,
        upstream: &Upstream,
        ctx: Option<&LicenceContext<'_>>,
        challenge: &Self::Challenge,
    ) -> Result<UpstreamRequest, ApiError>;
    /// The player's answer from the upstream's.
    fn answer(
        &self,
        upstream: &Upstream,
        challenge: &Self::Challenge,
        answer: RawAnswer,
    ) -> Result<UpstreamAnswer, ApiError> {
        let _ = (upstream, challenge);
        pass_2xx(answer)
    }
}

/// A 2xx answer unchanged; anything else is the upstream's failure (502).
fn pass_2xx(answer: RawAnswer) -> Result<UpstreamAnswer, ApiError> {
    if answer.status.is_success() {
        Ok(UpstreamAnswer {
            status: answer.status,
            content_type: answer.content_type,
            body: answer.body,
        })
    } else {
        Err(ApiError::BadGateway(format!(
            "HTTP {}",
            answer.status.as_u16()
        )))
    }
}

fn octets(body: impl Into<Bytes>) -> UpstreamAnswer {
    UpstreamAnswer {
        status: StatusCode::OK,
        content_type: Some(HeaderValue::from_static("application/octet-stream")),
        body: body.into(),
    }
}

/// The CDM's service certificate request: a `SignedMessage` of type
/// `SERVICE_CERTIFICATE_REQUEST` (field 1, varint 4) and nothing else — the two bytes
/// `08 04` every Widevine CDM sends before its first licence request when the player has
/// no certificate configured.
pub const WIDEVINE_CERTIFICATE_REQUEST: [u8; 2] = [0x08, 0x04];

/// Widevine (and PRM, whose licence services take the same JSON): `keyplex-json` posts the
/// licence message unsigned; `widevine-cloud` signs it as Google's cloud licence proxy API
/// requires.
///
/// Widevine cloud licence proxy (`https://license.widevine.com/cenc/getlicense/<provider>`,
/// test `https://license.uat.widevine.com/cenc/getlicense/widevine_test`): the body is
/// `{"request": base64(message JSON), "signature": base64(AES-256-CBC(SHA-1(message JSON))),
/// "signer": provider}` — the signature scheme of the Widevine key API (Shaka Packager's
/// `request_signer.cc`), shared with the Widevine key API (`config::WidevineSigner::signature`). The message's
/// fields (`payload`, `content_id`, `provider`, `allowed_track_types`, `content_key_specs`,
/// `policy_overrides`, `session_init`) are those of Widevine's licence proxy integration
/// guide, as also documented publicly in Microsoft's "Widevine license template overview"
/// (Azure Media Services). The answer is JSON `{"status": "OK", "license": base64, …}`; any
/// other status is mapped by [`widevine_status`].
pub struct WidevineStyle {
    upstream_name: &'static str,
}

impl WidevineStyle {
    pub const WIDEVINE: Self = Self {
        upstream_name: "widevine",
    };
    pub const PRM: Self = Self {
        upstream_name: "prm",
    };
}

#[derive(Serialize)]
struct WidevineMessage<'a> {
    /// The CDM's challenge, base64.
    payload: String,
    /// The content id's UTF-8 bytes, base64.
    content_id: String,
    provider: &'a str,
    /// keyplex-json only: Widevine's guide allows either `allowed_track_types` or
    /// `content_key_specs`, never both, and the keys are what keyplex sends.
    #[serde(skip_serializing_if = "Option::is_none")]
    allowed_track_types: Option<&'static str>,
    content_key_specs: Vec<ContentKeySpec>,
    policy_overrides: PolicyOverrides,
    #[serde(skip_serializing_if = "Option::is_none")]
    session_init: Option<SessionInit>,
}

/// The service certificate request: the challenge and who asks, nothing else (an operator's
/// gateway, `keyplex-json`, knows its own provider).
#[derive(Serialize)]
struct WidevineCertificateMessage<'a> {
    payload: String,
    #[serde(skip_serializing_if = "str::is_empty")]
    provider: &'a str,
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
    playback_duration_seconds: Option<u64>,
    /// Seconds from the licence's start until the CDM renews.
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_delay_seconds: Option<u64>,
    /// Where the CDM sends renewals: back through keyplex.
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_server_url: Option<String>,
    /// keyplex-json only (its older name for the renewal period).
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_interval_seconds: Option<u64>,
}

/// Who the licence is for: the entitlement's user, so that the service's reports and the
/// licence's identification name them.
#[derive(Serialize)]
struct SessionInit {
    provider_client_token: String,
}

/// The signed envelope of the cloud API.
#[derive(Serialize)]
struct SignedWidevineRequest<'a> {
    request: String,
    signature: String,
    signer: &'a str,
}

/// The cloud API's answer.
#[derive(Deserialize)]
struct WidevineCloudAnswer {
    status: String,
    #[serde(default)]
    status_message: Option<String>,
    #[serde(default)]
    license: Option<String>,
}

impl WidevineStyle {
    fn provider<'a>(&self, upstream: &'a Upstream, tenant_provider: &'a str) -> &'a str {
        upstream.provider.as_deref().unwrap_or(tenant_provider)
    }

    fn message<'a>(
        &self,
        upstream: &'a Upstream,
        ctx: &'a LicenceContext<'a>,
        challenge: &Bytes,
    ) -> WidevineMessage<'a> {
        let policy = ctx.policy;
        let cloud = upstream.protocol == UpstreamProtocol::WidevineCloud;
        let content_key_specs = ctx
            .keys
            .iter()
            .map(|k| ContentKeySpec {
                key_id: B64.encode(k.kid.as_bytes()),
                key: B64.encode(k.key.expose()),
                iv: k.iv.to_base64(),
                track_type: k.track_type.as_ref().and_then(widevine_track_type),
                security_level: policy.widevine_robustness(k.track_type.as_ref()),
                required_output_protection: policy
                    .hdcp
                    .map(|h| OutputProtection { hdcp: h.name() }),
            })
            .collect();
        let renewal_server_url = policy.renews().then(|| {
            format!(
                "{}/{}/{}/contentlicenseservice/v1/licenses",
                ctx.public_url.trim_end_matches('/'),
                ctx.tenant.id,
                if self.upstream_name == "prm" {
                    "prmls"
                } else {
                    "wvls"
                }
            )
        });
        let tenant_provider = ctx
            .tenant
            .config
            .widevine_provider
            .as_deref()
            .unwrap_or(ctx.tenant.id.as_str());
        WidevineMessage {
            payload: B64.encode(challenge),
            content_id: B64.encode(ctx.content_id.as_str()),
            provider: self.provider(upstream, tenant_provider),
            allowed_track_types: (!cloud).then(|| allowed_track_types(ctx.keys)),
            content_key_specs,
            policy_overrides: PolicyOverrides {
                can_play: true,
                can_persist: policy.persistent,
                can_renew: policy.renews(),
                license_duration_seconds: policy.licence_duration_seconds,
                playback_duration_seconds: policy.playback_duration_seconds,
                renewal_delay_seconds: policy.renewal_interval_seconds,
                renewal_server_url,
                renewal_interval_seconds: policy.renewal_interval_seconds.filter(|_| !cloud),
            },
            session_init: (!ctx.user.is_empty()).then(|| SessionInit {
                provider_client_token: B64.encode(ctx.user),
            }),
        }
    }
}

impl LicenceAdapter for WidevineStyle {
    type Challenge = Bytes;

    fn upstream_name(&self) -> &str {
        self.upstream_name
    }

    fn challenge(&self, _headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
        crate::http::body::require_body(body, "the CDM's licence challenge")
    }

    fn keyless(&self, challenge: &Bytes) -> bool {
        self.upstream_name == "widevine" && challenge[..] == WIDEVINE_CERTIFICATE_REQUEST
    }

    fn upstream_request(
        &self,
        upstream: &Upstream,
        ctx: Option<&LicenceContext<'_>>,
        challenge: &Bytes,
    ) -> Result<UpstreamRequest, ApiError> {
        let message = match ctx {
            Some(ctx) => serde_json::to_vec(&self.message(upstream, ctx, challenge)),
            None => serde_json::to_vec(&WidevineCertificateMessage {
                payload: B64.encode(challenge),
                provider: upstream.provider.as_deref().unwrap_or_default(),
            }),
        }
        .map_err(|e| ApiError::Internal(format!("upstream request JSON: {e}")))?;
        if upstream.protocol != UpstreamProtocol::WidevineCloud {
            return Ok(json_request(message));
        }
        let signer = upstream.widevine_signer().ok_or_else(|| {
            ApiError::Internal("widevine-cloud upstream without its signing key".into())
        })?;
        let signature = signer.signature(&message)?;
        let signed = SignedWidevineRequest {
            request: B64.encode(&message),
            signature: B64.encode(signature),
            signer: &signer.name,
        };
        let body = serde_json::to_vec(&signed)
            .map_err(|e| ApiError::Internal(format!("upstream request JSON: {e}")))?;
        Ok(json_request(body))
    }

    fn answer(
        &self,
        upstream: &Upstream,
        _challenge: &Bytes,
        answer: RawAnswer,
    ) -> Result<UpstreamAnswer, ApiError> {
        if upstream.protocol != UpstreamProtocol::WidevineCloud {
            return pass_2xx(answer);
        }
        if !answer.status.is_success() {
            return Err(ApiError::BadGateway(format!(
                "the Widevine licence service answered HTTP {}",
                answer.status.as_u16()
            )));
        }
        let parsed: WidevineCloudAnswer = serde_json::from_slice(&answer.body).map_err(|e| {
            ApiError::BadGateway(format!(
                "the Widevine licence service's answer is not its JSON: {e}"
            ))
        })?;
        if parsed.status == "OK" {
            let licence = parsed
                .license
                .as_deref()
                .and_then(|l| B64.decode(l.trim()).ok())
                .filter(|l| !l.is_empty())
                .ok_or_else(|| {
                    ApiError::BadGateway(
                        "the Widevine licence service answered OK without a licence".into(),
                    )
                })?;
            return Ok(octets(licence));
        }
        Err(widevine_status(
            &parsed.status,
            parsed.status_message.as_deref(),
        ))
    }
}

/// A Widevine cloud status other than `OK` as keyplex's answer: the player's fault (400 a
/// challenge the service cannot read, 403 a device or client the service refuses), else
/// keyplex's or the service's (502: signature, provider, keys, policy, internal).
fn widevine_status(status: &str, message: Option<&str>) -> ApiError {
    let status = keyplex_types::truncate_for_message(status);
    let text = match message.map(|m| keyplex_types::truncate_chars(m, 200)) {
        Some(m) if !m.is_empty() => format!("the Widevine licence service answered {status}: {m}"),
        _ => format!("the Widevine licence service answered {status}"),
    };
    match status.as_str() {
        "INVALID_LICENSE_CHALLENGE" | "INVALID_SERVICE_CERTIFICATE" | "MISSING_CLIENT_ID" => {
            ApiError::BadRequest(text)
        }
        "ACCESS_DENIED"
        | "INVALID_DRM_DEVICE_CERTIFICATE"
        | "DRM_DEVICE_CERTIFICATE_REVOKED"
        | "DRM_DEVICE_CERTIFICATE_UNKNOWN"
        | "DEVICE_CAPABILITIES_TOO_LOW"
        | "INVALID_DRM_DEVICE_CERTIFICATE_SERIAL_NUMBER" => ApiError::Forbidden(text),
        _ => ApiError::BadGateway(text),
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

fn json_request(body: Vec<u8>) -> UpstreamRequest {
    UpstreamRequest {
        url: None,
        content_type: HeaderValue::from_static("application/json"),
        headers: Vec::new(),
        body: body.into(),
    }
}

fn json_body(value: &impl Serialize) -> Result<UpstreamRequest, ApiError> {
    serde_json::to_vec(value)
        .map(json_request)
        .map_err(|e| ApiError::Internal(format!("upstream request JSON: {e}")))
}

/// PlayReady: the player's `AcquireLicense` SOAP envelope is forwarded byte for byte as
/// `text/xml; charset=utf-8` with the player's `SOAPAction` (the client signs the `<LA>`
/// element, so not a byte of it may change). The keys and rules travel as the upstream
/// takes them:
///
/// * `keyplex-json` (a plain URL): `X-Keyplex-Content-Keys`, base64 of [`KeyDelivery`]
///   JSON, for an operator's own licence server plug-in;
/// * `playready-test-server`: the `cfg=` query of Microsoft's PlayReady test server
///   (<https://testweb.playready.microsoft.com/Server/ServiceQueryStringSyntax>), see
///   [`playready_cfg`];
/// * `playready-customdata`: keyplex's `CustomData` JSON ([`CustomData`]) for a licence server
///   built on the PlayReady Server SDK, in a SOAP header block
///   `<CustomData xmlns="urn:keyplex:playready:customdata:1">` — outside `<LA>`, because the
///   challenge's own `<CustomData>` sits inside the signed `<LA>` and a proxy cannot write
///   there without breaking the client's signature.
///
/// SOAP faults (HTTP 500, `text/xml`) come back to the player unchanged with their status:
/// PlayReady clients read the fault's status code.
pub struct PlayReadySoap;

pub struct SoapChallenge {
    envelope: Bytes,
    soap_action: HeaderValue,
}

/// The keys and policy beside a pass-through challenge (`keyplex-json`).
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
    #[serde(skip_serializing_if = "Option::is_none")]
    iv: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    track_type: Option<String>,
}

#[derive(Serialize)]
struct DeliveredPolicy {
    persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    license_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    playback_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    security_level: Option<u16>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdcp: Option<&'static str>,
}

/// keyplex's `CustomData` for PlayReady Server SDK licence servers (`playready-customdata`),
/// documented in docs/licences.md.
#[derive(Serialize)]
struct CustomData<'a> {
    version: u8,
    content_id: &'a str,
    #[serde(skip_serializing_if = "str::is_empty")]
    user: &'a str,
    keys: Vec<DeliveredKey>,
    policy: CustomDataPolicy,
}

#[derive(Serialize)]
struct CustomDataPolicy {
    #[serde(skip_serializing_if = "Option::is_none")]
    security_level: Option<u16>,
    persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    licence_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    playback_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    renewal_interval_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdcp: Option<&'static str>,
}

/// The namespace of keyplex's PlayReady `CustomData` SOAP header block.
pub const CUSTOM_DATA_NAMESPACE: &str = "urn:keyplex:playready:customdata:1";

fn delivered_keys(ctx: &LicenceContext<'_>, with_iv: bool) -> Vec<DeliveredKey> {
    ctx.keys
        .iter()
        .map(|k| DeliveredKey {
            kid: k.kid.to_string(),
            kid_guid_le: B64.encode(k.kid.to_guid_le_bytes()),
            key: B64.encode(k.key.expose()),
            iv: with_iv.then(|| k.iv.to_base64()),
            track_type: k.track_type.as_ref().map(|t| t.as_str().to_owned()),
        })
        .collect()
}

fn playready_level(ctx: &LicenceContext<'_>) -> Option<u16> {
    ctx.policy
        .playready_security_level(ctx.keys.iter().map(|k| k.track_type.as_ref()))
}

/// The PlayReady test server's `cfg=` value for the keys and policy: one
/// `(kid:…,contentkey:…,…)` group per key (the test server's syntax for several licences in
/// one answer), the key id as a registry-format GUID (which reads as keyplex's UUID) and the
/// key in base64, the security level as `sl:`, persistence as `persist:`, the licence's end
/// as `expiration:` (`yyyymmddhhmmss`, UTC) and the playback window after first play as
/// `firstexp:` (seconds) — see the test server's query-string syntax page.
pub fn playready_cfg(ctx: &LicenceContext<'_>, now_unix: u64) -> String {
    let sl = playready_level(ctx);
    let policy = ctx.policy;
    ctx.keys
        .iter()
        .map(|k| {
            let mut fields = vec![
                format!("kid:{}", k.kid),
                format!("contentkey:{}", B64.encode(k.key.expose())),
            ];
            if let Some(sl) = sl {
                fields.push(format!("sl:{sl}"));
            }
            fields.push(format!("persist:{}", policy.persistent));
            if let Some(end) = policy
                .licence_duration_seconds
                .and_then(|s| test_server_date(now_unix.saturating_add(s)))
            {
                fields.push(format!("expiration:{end}"));
            }
            if let Some(seconds) = policy.playback_duration_seconds {
                fields.push(format!("firstexp:{seconds}"));
            }
            format!("({})", fields.join(","))
        })
        .collect::<Vec<_>>()
        .join(",")
}

/// A Unix time as the test server's `yyyymmddhhmmss` (UTC).
fn test_server_date(unix: u64) -> Option<String> {
    let at = time::OffsetDateTime::from_unix_timestamp(i64::try_from(unix).ok()?).ok()?;
    Some(format!(
        "{:04}{:02}{:02}{:02}{:02}{:02}",
        at.year(),
        u8::from(at.month()),
        at.day(),
        at.hour(),
        at.minute(),
        at.second()
    ))
}

/// `url` with `cfg=<value>` added to its query, percent-encoded.
fn with_cfg(url: &str, cfg: &str) -> String {
    let query = serde_urlencoded::to_string([("cfg", cfg)]).unwrap_or_default();
    let separator = if url.contains('?') { '&' } else { '?' };
    format!("{url}{separator}{query}")
}

/// The envelope with keyplex's `CustomData` block in its SOAP header (added before the
/// `Body`, with the envelope's own SOAP prefix, or into its `Header` when it has one). The
/// `<LA>` element and everything else stay byte for byte as the client signed them.
pub fn with_custom_data_header(envelope: &[u8], json: &str) -> Result<Vec<u8>, ApiError> {
    let invalid =
        |what: &str| ApiError::BadRequest(format!("invalid PlayReady licence challenge: {what}"));
    let text = std::str::from_utf8(envelope).map_err(|_| invalid("not UTF-8"))?;
    let document = roxmltree::Document::parse_with_options(
        text,
        roxmltree::ParsingOptions {
            allow_dtd: false,
            ..Default::default()
        },
    )
    .map_err(|e| invalid(&e.to_string()))?;
    let root = document.root_element();
    if root.tag_name().name() != "Envelope" {
        return Err(invalid("the document is not a SOAP Envelope"));
    }
    let soap_ns = root.tag_name().namespace().unwrap_or_default().to_owned();
    let block = format!(
        "<CustomData xmlns=\"{CUSTOM_DATA_NAMESPACE}\">{}</CustomData>",
        xml_escape(json)
    );
    let child = |name: &str| {
        root.children()
            .find(|n| n.is_element() && n.tag_name().name() == name)
    };
    let (at, insert) = if let Some(header) = child("Header") {
        let range = header.range();
        let element = &text[range.clone()];
        if element.ends_with("/>") {
            // `<soap:Header/>`: written out as a start and an end tag around the block.
            let name = element
                .trim_start_matches('<')
                .split(|c: char| c.is_whitespace() || c == '/' || c == '>')
                .next()
                .unwrap_or_default();
            let open = element.trim_end_matches("/>").trim_end();
            let mut out = Vec::with_capacity(envelope.len() + block.len() + name.len() + 3);
            out.extend_from_slice(&envelope[..range.start]);
            out.extend_from_slice(format!("{open}>{block}</{name}>").as_bytes());
            out.extend_from_slice(&envelope[range.end..]);
            return Ok(out);
        }
        // Before the header's end tag.
        let close = element
            .rfind("</")
            .map(|i| range.start + i)
            .ok_or_else(|| invalid("a SOAP Header without an end tag"))?;
        (close, block)
    } else {
        let body = child("Body").ok_or_else(|| invalid("no SOAP Body"))?;
        let start = body.range().start;
        // The Body's own prefix (`soap:Body` → `soap`), so the header is in the same namespace.
        let tag = &text[start + 1..];
        let name_end = tag
            .find(|c: char| c.is_whitespace() || c == '>' || c == '/')
            .unwrap_or(tag.len());
        let qname = &tag[..name_end];
        let header = match qname.split_once(':') {
            Some((prefix, _)) => format!("<{prefix}:Header>{block}</{prefix}:Header>"),
            None => format!("<Header xmlns=\"{soap_ns}\">{block}</Header>"),
        };
        (start, header)
    };
    let mut out = Vec::with_capacity(envelope.len() + insert.len());
    out.extend_from_slice(&envelope[..at]);
    out.extend_from_slice(insert.as_bytes());
    out.extend_from_slice(&envelope[at..]);
    Ok(out)
}

fn xml_escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '&' => out.push_str("&amp;"),
            _ => out.push(c),
        }
    }
    out
}

impl LicenceAdapter for PlayReadySoap {
    type Challenge = SoapChallenge;

    fn upstream_name(&self) -> &str {
        "playready"
    }

    fn challenge(&self, headers: &HeaderMap, body: Bytes) -> Result<SoapChallenge, ApiError> {
        let envelope = crate::http::body::require_body(body, "a PlayReady SOAP licence challenge")?;
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
        upstream: &Upstream,
        ctx: Option<&LicenceContext<'_>>,
        challenge: &SoapChallenge,
    ) -> Result<UpstreamRequest, ApiError> {
        let ctx =
            ctx.ok_or_else(|| ApiError::Internal("a PlayReady licence without keys".into()))?;
        let policy = ctx.policy;
        let mut request = UpstreamRequest {
            url: None,
            content_type: HeaderValue::from_static("text/xml; charset=utf-8"),
            headers: vec![(
                HeaderName::from_static("soapaction"),
                challenge.soap_action.clone(),
            )],
            body: challenge.envelope.clone(),
        };
        match upstream.protocol {
            UpstreamProtocol::PlayreadyTestServer => {
                request.url = Some(with_cfg(
                    &upstream.url,
                    &playready_cfg(ctx, entitlement::now_unix()),
                ));
            }
            UpstreamProtocol::PlayreadyCustomdata => {
                let custom = CustomData {
                    version: 1,
                    content_id: ctx.content_id.as_str(),
                    user: ctx.user,
                    keys: delivered_keys(ctx, false),
                    policy: CustomDataPolicy {
                        security_level: playready_level(ctx),
                        persistent: policy.persistent,
                        licence_duration_seconds: policy.licence_duration_seconds,
                        playback_duration_seconds: policy.playback_duration_seconds,
                        renewal_interval_seconds: policy.renewal_interval_seconds,
                        hdcp: policy.hdcp.map(Hdcp::name),
                    },
                };
                let json = serde_json::to_string(&custom)
                    .map_err(|e| ApiError::Internal(format!("CustomData JSON: {e}")))?;
                request.body = with_custom_data_header(&challenge.envelope, &json)?.into();
            }
            _ => {
                let delivery = KeyDelivery {
                    content_id: ctx.content_id.as_str(),
                    keys: delivered_keys(ctx, true),
                    policy: DeliveredPolicy {
                        persistent: policy.persistent,
                        license_duration_seconds: policy.licence_duration_seconds,
                        playback_duration_seconds: policy.playback_duration_seconds,
                        renewal_interval_seconds: policy.renewal_interval_seconds,
                        security_level: playready_level(ctx),
                        hdcp: policy.hdcp.map(Hdcp::name),
                    },
                };
                let json = serde_json::to_vec(&delivery)
                    .map_err(|e| ApiError::Internal(format!("key delivery JSON: {e}")))?;
                let keys_header = HeaderValue::from_str(&B64.encode(json)).map_err(|_| {
                    ApiError::Internal("key delivery header is not a header value".into())
                })?;
                request
                    .headers
                    .push((HeaderName::from_static(CONTENT_KEYS_HEADER), keys_header));
            }
        }
        Ok(request)
    }

    fn answer(
        &self,
        _upstream: &Upstream,
        _challenge: &SoapChallenge,
        answer: RawAnswer,
    ) -> Result<UpstreamAnswer, ApiError> {
        let is_fault = answer.status.is_server_error()
            && answer
                .content_type
                .as_ref()
                .and_then(|v| v.to_str().ok())
                .is_some_and(|v| v.contains("xml"))
            && answer.body.windows(6).any(|w| w == b"Fault>");
        if is_fault {
            // The client reads the fault (its status code says why); it passes unchanged.
            return Ok(UpstreamAnswer {
                status: answer.status,
                content_type: answer.content_type,
                body: answer.body,
            });
        }
        pass_2xx(answer)
    }
}

/// FairPlay SPC/CKC. The SPC arrives as raw bytes, as the form field `spc=<base64>` or as JSON
/// `{"spc": "<base64>"}`, and the CKC goes back in the same form (bytes; `<ckc>base64</ckc>`
/// for the form, as Apple's sample key server answers; `{"ckc": base64}` for JSON). A
/// FairPlay licence carries one key. Upstream protocols:
///
/// * `keyplex-json` (a plain URL): `{"spc", "assetId", "kid", "key", "iv", "persistent",
///   "leaseDurationSeconds"}`; the upstream's answer passes back unchanged.
/// * `fairplay-json`: the JSON form of hosted FairPlay key services, `{"spc", "assetId",
///   "key", "iv"}` (key and IV in hex, as Apple's FPS Server SDK key-server module takes
///   them) plus the optional `leaseDurationSeconds`, `rentalDurationSeconds`, `persistent`,
///   `hdcpType` → `{"ckc": base64}`.
/// * `fairplay-binary`: the SPC as `application/octet-stream`, the asset id, key and IV in
///   `X-Asset-Id`, `X-Content-Key`, `X-Content-IV` (hex) and the rules in
///   `X-Lease-Duration-Seconds`, `X-Rental-Duration-Seconds`, `X-Persistent`, `X-HDCP-Type`;
///   the CKC comes back as bytes.
///
/// The asset id is the content id (what keyplex's `skd://` URIs carry with `{content_id}`).
pub struct FairPlaySpc;

/// How the player sent the SPC, so the CKC goes back the same way.
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum SpcCarrier {
    Raw,
    Form,
    Json,
}

pub struct SpcChallenge {
    spc: Vec<u8>,
    form: SpcCarrier,
}

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
struct KeyplexFairPlayRequest<'a> {
    spc: String,
    asset_id: &'a str,
    kid: String,
    key: String,
    iv: String,
    persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_duration_seconds: Option<u64>,
}

#[derive(Serialize)]
#[serde(rename_all = "camelCase")]
struct HostedFairPlayRequest<'a> {
    spc: String,
    asset_id: &'a str,
    key: String,
    iv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    lease_duration_seconds: Option<u64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    rental_duration_seconds: Option<u64>,
    persistent: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    hdcp_type: Option<i8>,
}

#[derive(Deserialize)]
struct HostedFairPlayAnswer {
    ckc: String,
}

impl LicenceAdapter for FairPlaySpc {
    type Challenge = SpcChallenge;

    fn upstream_name(&self) -> &str {
        "fairplay"
    }

    fn challenge(&self, headers: &HeaderMap, body: Bytes) -> Result<SpcChallenge, ApiError> {
        let body = crate::http::body::require_body(body, "a FairPlay SPC")?;
        let media_type = headers
            .get(header::CONTENT_TYPE)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split(';').next())
            .map(|v| v.trim().to_ascii_lowercase());
        let invalid = |what: String| ApiError::BadRequest(format!("invalid FairPlay SPC: {what}"));
        let (spc, form) = match media_type.as_deref() {
            Some("application/json") => {
                let json: SpcJson =
                    serde_json::from_slice(&body).map_err(|e| invalid(e.to_string()))?;
                let spc = keyplex_types::decode_base64_lenient(&json.spc)
                    .ok_or_else(|| invalid("spc is not base64".into()))?;
                (spc, SpcCarrier::Json)
            }
            Some("application/x-www-form-urlencoded") => {
                let form: SpcForm =
                    serde_urlencoded::from_bytes(&body).map_err(|e| invalid(e.to_string()))?;
                let spc = keyplex_types::decode_base64_lenient(&form.spc)
                    .ok_or_else(|| invalid("spc is not base64".into()))?;
                (spc, SpcCarrier::Form)
            }
            _ => (body.to_vec(), SpcCarrier::Raw),
        };
        if spc.is_empty() {
            return Err(invalid("spc is empty".into()));
        }
        Ok(SpcChallenge { spc, form })
    }

    fn upstream_request(
        &self,
        upstream: &Upstream,
        ctx: Option<&LicenceContext<'_>>,
        challenge: &SpcChallenge,
    ) -> Result<UpstreamRequest, ApiError> {
        let ctx =
            ctx.ok_or_else(|| ApiError::Internal("a FairPlay licence without keys".into()))?;
        let [key] = ctx.keys else {
            return Err(ApiError::BadRequest(format!(
                "a FairPlay licence carries one key, and {} keys were named: name the key with ?kid=",
                ctx.keys.len()
            )));
        };
        let policy = ctx.policy;
        let asset_id = ctx.content_id.as_str();
        match upstream.protocol {
            UpstreamProtocol::FairplayJson => json_body(&HostedFairPlayRequest {
                spc: B64.encode(&challenge.spc),
                asset_id,
                key: hex::encode(key.key.expose()),
                iv: key.iv.to_hex(),
                lease_duration_seconds: policy.licence_duration_seconds,
                rental_duration_seconds: policy.playback_duration_seconds,
                persistent: policy.persistent,
                hdcp_type: policy.hdcp.map(Hdcp::fairplay_type),
            }),
            UpstreamProtocol::FairplayBinary => {
                let value = |text: String| {
                    HeaderValue::from_str(&text)
                        .map_err(|_| ApiError::Internal("FairPlay header value".into()))
                };
                let mut headers = vec![
                    (
                        HeaderName::from_static("x-asset-id"),
                        value(asset_id.to_owned())?,
                    ),
                    (
                        HeaderName::from_static("x-content-key"),
                        value(hex::encode(key.key.expose()))?,
                    ),
                    (
                        HeaderName::from_static("x-content-iv"),
                        value(key.iv.to_hex())?,
                    ),
                    (
                        HeaderName::from_static("x-persistent"),
                        value(policy.persistent.to_string())?,
                    ),
                ];
                if let Some(s) = policy.licence_duration_seconds {
                    headers.push((
                        HeaderName::from_static("x-lease-duration-seconds"),
                        value(s.to_string())?,
                    ));
                }
                if let Some(s) = policy.playback_duration_seconds {
                    headers.push((
                        HeaderName::from_static("x-rental-duration-seconds"),
                        value(s.to_string())?,
                    ));
                }
                if let Some(h) = policy.hdcp {
                    headers.push((
                        HeaderName::from_static("x-hdcp-type"),
                        value(h.fairplay_type().to_string())?,
                    ));
                }
                Ok(UpstreamRequest {
                    url: None,
                    content_type: HeaderValue::from_static("application/octet-stream"),
                    headers,
                    body: challenge.spc.clone().into(),
                })
            }
            _ => json_body(&KeyplexFairPlayRequest {
                spc: B64.encode(&challenge.spc),
                asset_id,
                kid: key.kid.to_hex(),
                key: hex::encode(key.key.expose()),
                iv: key.iv.to_hex(),
                persistent: policy.persistent,
                lease_duration_seconds: policy.licence_duration_seconds,
            }),
        }
    }

    fn answer(
        &self,
        upstream: &Upstream,
        challenge: &SpcChallenge,
        answer: RawAnswer,
    ) -> Result<UpstreamAnswer, ApiError> {
        let ckc = match upstream.protocol {
            UpstreamProtocol::FairplayJson | UpstreamProtocol::FairplayBinary
                if !answer.status.is_success() =>
            {
                let detail: String = String::from_utf8_lossy(&answer.body)
                    .chars()
                    .filter(|c| !c.is_control())
                    .take(200)
                    .collect();
                return Err(ApiError::BadGateway(format!(
                    "the FairPlay key service answered HTTP {}: {detail}",
                    answer.status.as_u16()
                )));
            }
            UpstreamProtocol::FairplayJson => {
                let parsed: HostedFairPlayAnswer =
                    serde_json::from_slice(&answer.body).map_err(|e| {
                        ApiError::BadGateway(format!(
                            "the FairPlay key service's answer is not {{\"ckc\": …}}: {e}"
                        ))
                    })?;
                keyplex_types::decode_base64_lenient(&parsed.ckc).ok_or_else(|| {
                    ApiError::BadGateway("the FairPlay key service's ckc is not base64".into())
                })?
            }
            UpstreamProtocol::FairplayBinary => answer.body.to_vec(),
            _ => return pass_2xx(answer),
        };
        if ckc.is_empty() {
            return Err(ApiError::BadGateway(
                "the FairPlay key service answered an empty CKC".into(),
            ));
        }
        Ok(match challenge.form {
            SpcCarrier::Raw => octets(ckc),
            SpcCarrier::Form => UpstreamAnswer {
                status: StatusCode::OK,
                content_type: Some(HeaderValue::from_static("text/plain")),
                body: format!("<ckc>{}</ckc>", B64.encode(ckc)).into(),
            },
            SpcCarrier::Json => UpstreamAnswer {
                status: StatusCode::OK,
                content_type: Some(HeaderValue::from_static("application/json")),
                body: serde_json::json!({ "ckc": B64.encode(ckc) })
                    .to_string()
                    .into(),
            },
        })
    }
}

/// A tenant-defined DRM system (`[[tenants.x.drm_systems]]`): its challenges are opaque to
/// keyplex, and its upstream takes keyplex's JSON licence request (`keyplex-json`, the only
/// protocol for a defined DRM):
///
/// ```json
/// {"drm": "irdeto", "system_id": "80a6be7e-…", "payload": "<base64 challenge>",
///  "content_id": "movie-1", "user": "alice",
///  "keys": [{"kid": "<uuid>", "key": "<base64>", "iv": "<base64>", "track_type": "HD"}],
///  "policy": {"security_level": {"HD": 1}, "persistent": false, …}}
/// ```
///
/// `policy` is the applied licence policy as the audit event records it. The answer passes
/// back unchanged.
pub struct DefinedDrm {
    name: String,
    system_id: String,
}

#[derive(Serialize)]
struct DefinedDrmRequest<'a> {
    drm: &'a str,
    system_id: &'a str,
    payload: String,
    content_id: &'a str,
    user: &'a str,
    keys: Vec<DefinedDrmKey>,
    policy: &'a AppliedPolicy,
}

#[derive(Serialize)]
struct DefinedDrmKey {
    kid: String,
    key: String,
    iv: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    track_type: Option<String>,
}

impl LicenceAdapter for DefinedDrm {
    type Challenge = Bytes;

    fn upstream_name(&self) -> &str {
        &self.name
    }

    fn challenge(&self, _headers: &HeaderMap, body: Bytes) -> Result<Bytes, ApiError> {
        crate::http::body::require_body(body, "the DRM client's licence challenge")
    }

    fn upstream_request(
        &self,
        _upstream: &Upstream,
        ctx: Option<&LicenceContext<'_>>,
        challenge: &Bytes,
    ) -> Result<UpstreamRequest, ApiError> {
        let ctx = ctx.ok_or_else(|| ApiError::Internal("a licence without keys".into()))?;
        json_body(&DefinedDrmRequest {
            drm: &self.name,
            system_id: &self.system_id,
            payload: B64.encode(challenge),
            content_id: ctx.content_id.as_str(),
            user: ctx.user,
            keys: ctx
                .keys
                .iter()
                .map(|k| DefinedDrmKey {
                    kid: k.kid.to_string(),
                    key: B64.encode(k.key.expose()),
                    iv: k.iv.to_base64(),
                    track_type: k.track_type.as_ref().map(|t| t.as_str().to_owned()),
                })
                .collect(),
            policy: ctx.policy,
        })
    }
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
                        keyplex_types::truncate_for_message(&value)
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
    tenant: String,
    query: Result<Query<Vec<(String, String)>>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let body = crate::http::body::read_body_bytes(&state, body)?;
    let query = licence_query(query)?;
    let challenge = adapter.challenge(&headers, body)?;
    let upstream = upstream_of(&adapter, tenant)?;
    let answer = if adapter.keyless(&challenge) {
        keyless_answer(&adapter, &state, tenant, &upstream, &challenge).await?
    } else {
        let token = entitlement::presented_token(&headers, query.token.as_deref())?;
        let entitlement =
            entitlement::verify(&state, tenant, token.as_deref(), entitlement::now_unix()).await?;
        entitled_licence(
            &adapter,
            &state,
            tenant,
            &upstream,
            &entitlement,
            &query.kids,
            query.content_id.as_ref(),
            challenge,
            Via::Direct,
        )
        .await?
    };
    let mut response = (answer.status, answer.body).into_response();
    let response_headers = response.headers_mut();
    match answer.content_type {
        Some(content_type) => response_headers.insert(header::CONTENT_TYPE, content_type),
        None => response_headers.remove(header::CONTENT_TYPE),
    };
    response_headers.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    Ok(response)
}

/// A request that needs no keys (the Widevine service certificate): the configured
/// certificate, or the upstream's answer. No token is asked for — the certificate is public,
/// and a player asks for it before its first licence (a single-use token must survive it).
async fn keyless_answer<A: LicenceAdapter>(
    adapter: &A,
    state: &AppState,
    tenant: &Tenant,
    upstream: &Resolved<'_>,
    challenge: &A::Challenge,
) -> Result<UpstreamAnswer, ApiError> {
    if let Some(certificate) = &upstream.config.service_certificate {
        let bytes = B64
            .decode(certificate.trim())
            .map_err(|_| ApiError::Internal("service_certificate is not base64".into()))?;
        return Ok(octets(bytes));
    }
    let request = adapter.upstream_request(upstream.config, None, challenge)?;
    let raw = send_upstream(state, upstream, request).await.inspect_err(|e| {
        tracing::warn!(tenant = %tenant.id, drm = adapter.upstream_name(), error = %e, "licence proxy: service certificate request failed");
    })?;
    adapter.answer(upstream.config, challenge, raw)
}

/// Where a tenant's licences of one DRM come from: 404 when it configures no upstream.
pub struct Resolved<'a> {
    config: &'a Upstream,
    timeout: Duration,
}

pub fn upstream_of<'a, A: LicenceAdapter>(
    adapter: &A,
    tenant: &'a Tenant,
) -> Result<Resolved<'a>, ApiError> {
    let drm = adapter.upstream_name();
    let licence_config = tenant.config.licence.as_ref();
    let Some(config) = licence_config.and_then(|l| l.upstream.get(drm)) else {
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
    Ok(Resolved { config, timeout })
}

/// How a licence request arrived: on a direct licence route, or through a secure session
/// (which is the live session `require_session` asks for).
#[derive(Clone, Copy, PartialEq, Eq)]
pub enum Via {
    Direct,
    Session,
}

/// The upstream licence for a verified `entitlement` (steps 6 on of the module's order): the
/// keys named by `kids` / `content_id` (see [`licence_keys`]), the tenant's session rule, the
/// licence policy (the content's or tenant's rules narrowed by the token), the adapter's
/// request, the upstream's answer. Shared by the proxy routes and secure sessions (`ssm`).
#[allow(clippy::too_many_arguments)]
pub async fn entitled_licence<A: LicenceAdapter>(
    adapter: &A,
    state: &AppState,
    tenant: &Tenant,
    upstream: &Resolved<'_>,
    entitlement: &entitlement::Entitlement,
    kids: &[KeyId],
    content_id: Option<&ContentId>,
    challenge: A::Challenge,
    via: Via,
) -> Result<UpstreamAnswer, ApiError> {
    if kids.len() > MAX_LICENCE_KEYS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_LICENCE_KEYS} key ids per licence"
        )));
    }
    let drm = adapter.upstream_name();
    let user = keyplex_types::truncate_for_message(&entitlement.user);
    let (content_id, keys) = licence_keys(state, tenant, entitlement, kids, content_id).await?;
    if via == Via::Direct {
        crate::player::ssm::require_live_session(state, tenant, &entitlement.user, &content_id)
            .await?;
    }
    let policy =
        crate::licence_policy::applied(state, tenant, &content_id, &entitlement.policy).await?;
    crate::scope::note_detail(&format!("policy {}", policy.audit_text()));
    let kids: Vec<String> = keys.iter().map(|k| k.kid.to_string()).collect();
    let ctx = LicenceContext {
        tenant,
        public_url: state.public_url(),
        content_id: &content_id,
        keys: &keys,
        policy: &policy,
        user: &entitlement.user,
    };
    let request = adapter.upstream_request(upstream.config, Some(&ctx), &challenge)?;
    let started = std::time::Instant::now();
    let answer = send_upstream(state, upstream, request)
        .await
        .and_then(|raw| adapter.answer(upstream.config, &challenge, raw));
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

/// The answer that goes back to the player.
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
    upstream: &Resolved<'_>,
    request: UpstreamRequest,
) -> Result<RawAnswer, ApiError> {
    let url = request.url.as_deref().unwrap_or(&upstream.config.url);
    let mut last = String::new();
    for attempt in 0..=RETRY_BACKOFF.len() {
        if let Some(pause) = attempt.checked_sub(1).and_then(|i| RETRY_BACKOFF.get(i)) {
            tokio::time::sleep(*pause).await;
        }
        match attempt_upstream(state, url, upstream.timeout, &request).await {
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
) -> Result<RawAnswer, AttemptError> {
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
    Ok(RawAnswer {
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
        assert_eq!(
            keyplex_types::decode_base64_lenient(&standard).unwrap(),
            bytes
        );
        assert_eq!(
            keyplex_types::decode_base64_lenient(standard.trim_end_matches('=')).unwrap(),
            bytes
        );
        assert_eq!(
            keyplex_types::decode_base64_lenient(&standard.replace('+', " ")).unwrap(),
            bytes
        );
        let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(&bytes);
        assert_eq!(
            keyplex_types::decode_base64_lenient(&url_safe).unwrap(),
            bytes
        );
        assert!(keyplex_types::decode_base64_lenient("not base64!").is_none());
    }

    #[test]
    fn custom_data_goes_into_the_soap_header_and_leaves_the_body_alone() {
        let body =
            r#"<soap:Body><AcquireLicense><LA Id="SignedData">x</LA></AcquireLicense></soap:Body>"#;
        let ns = r#"xmlns:soap="http://schemas.xmlsoap.org/soap/envelope/""#;
        let json = r#"{"a":"<&>"}"#;
        let block = format!(
            r#"<CustomData xmlns="{CUSTOM_DATA_NAMESPACE}">{{"a":"&lt;&amp;&gt;"}}</CustomData>"#
        );
        for (envelope, expected) in [
            (
                format!("<soap:Envelope {ns}>{body}</soap:Envelope>"),
                format!(
                    "<soap:Envelope {ns}><soap:Header>{block}</soap:Header>{body}</soap:Envelope>"
                ),
            ),
            (
                format!(
                    "<soap:Envelope {ns}><soap:Header><X/></soap:Header>{body}</soap:Envelope>"
                ),
                format!(
                    "<soap:Envelope {ns}><soap:Header><X/>{block}</soap:Header>{body}</soap:Envelope>"
                ),
            ),
            (
                format!("<soap:Envelope {ns}><soap:Header/>{body}</soap:Envelope>"),
                format!(
                    "<soap:Envelope {ns}><soap:Header>{block}</soap:Header>{body}</soap:Envelope>"
                ),
            ),
        ] {
            let out = with_custom_data_header(envelope.as_bytes(), json).unwrap();
            assert_eq!(String::from_utf8(out).unwrap(), expected);
        }
        assert!(with_custom_data_header(b"<NotSoap/>", json).is_err());
        assert!(with_custom_data_header(b"not xml", json).is_err());
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
