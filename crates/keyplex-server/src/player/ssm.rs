//! Secure session management (SSM): `/{tenant}/ssm/v1/sessions…`, for players that acquire
//! licences through the application (the "customer SSM" mode of player SDKs, whose
//! `getLicence(keySystem, payload, requestType)` resolves with `{licence, heartbeat}`).
//!
//! * `POST sessions/setup` with the entitlement token (Bearer or `?token=`) → 201
//!   `{"sessionId", "heartbeat", "expiresAt"}`. 403 when the user (`sub`) already has
//!   `max_streams` live sessions (claim; unlimited when absent).
//! * `POST sessions/{id}/licence` `{"keySystem", "payload", "requestType", "kid"?, "contentId"?}`
//!   → `{"licence", "heartbeat"}` (licence and payload base64). ClearKey: the payload is the
//!   EME Clear Key request, the licence the JSON Web Key set. Widevine, PlayReady, FairPlay:
//!   the payload is the CDM's challenge, forwarded through the licence proxy's adapter; the
//!   licence is the upstream's answer.
//! * `POST sessions/{id}/heartbeat` → `{"heartbeat", "expiresAt"}`.
//! * `DELETE sessions/{id}` → 204.
//!
//! The session id (128 random bits, base64url) in the path is the bearer secret of every call
//! after setup: the entitlement verified at setup (user, contents, policy) is stored with the
//! session and checked for each licence; the token is not presented again and its `exp` only
//! limits setup. Heartbeat period: policy `renewal_interval`, else the tenant's
//! `heartbeat_seconds` (default 60). A session expires when neither heartbeat nor licence
//! arrives within 2 × heartbeat. Unknown, expired or torn-down sessions → 404.
//! `license-renewal` needs a prior licence of the same key system in the session → 409.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::{STANDARD as B64, URL_SAFE_NO_PAD};
use keyplex_drm::clearkey::ClearKeyLicenseRequest;
use keyplex_store::{NewSession, Session, SessionOpen};
use keyplex_types::{ContentId, KeyId};
use serde::{Deserialize, Serialize};

use crate::entitlement::{self, Entitlement, TokenQuery};
use crate::http::error::{ApiError, Problem};
use crate::licence_policy::TokenPolicy;
use crate::player::licence_proxy::{
    self, FairPlaySpc, LicenceAdapter, PlayReadySoap, WidevineStyle,
};
use crate::state::{AppState, Tenant};

/// Default of `[tenants.x.licence] heartbeat_seconds`.
pub const DEFAULT_HEARTBEAT_SECONDS: u64 = 60;
/// A session lives this many heartbeat periods after its last heartbeat or licence.
const MISSED_HEARTBEATS: u64 = 2;
/// Longest session id accepted in a path (ours are 22 characters).
const MAX_SESSION_ID_CHARS: usize = 64;
const MAX_REQUEST_KIDS: usize = 64;

/// The DRM systems a session delivers licences for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum KeySystem {
    ClearKey,
    Widevine,
    PlayReady,
    FairPlay,
}

impl KeySystem {
    /// DASH ContentProtection system ids (with or without `urn:uuid:`, any case) or EME names.
    fn parse(text: &str) -> Option<Self> {
        let text = text.trim().to_ascii_lowercase();
        let id = text.strip_prefix("urn:uuid:").unwrap_or(&text);
        Some(match id {
            "e2719d58-a985-b3c9-781a-b030af78d30e"
            | "1077efec-c0b2-4d02-ace3-3c1e52e2fb4b"
            | "org.w3.clearkey" => Self::ClearKey,
            "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed" | "com.widevine.alpha" => Self::Widevine,
            "9a04f079-9840-4286-ab92-e65be0885f95" | "com.microsoft.playready" => Self::PlayReady,
            "94ce86fb-07ff-4f43-adb8-93d2fa968ca2" | "com.apple.fps" | "com.apple.fps.1_0" => {
                Self::FairPlay
            }
            _ => return None,
        })
    }

    /// The name recorded in the session's store row.
    fn name(self) -> &'static str {
        match self {
            Self::ClearKey => "clearkey",
            Self::Widevine => "widevine",
            Self::PlayReady => "playready",
            Self::FairPlay => "fairplay",
        }
    }
}

/// The entitlement as stored with a session (JSON text in the store).
#[derive(Serialize, Deserialize)]
struct StoredEntitlement {
    user: String,
    contents: Vec<String>,
    expires_at: u64,
    max_streams: Option<u32>,
    policy: TokenPolicy,
}

impl StoredEntitlement {
    fn of(e: &Entitlement) -> Self {
        Self {
            user: e.user.clone(),
            contents: e.contents.iter().map(|c| c.as_str().to_owned()).collect(),
            expires_at: e.expires_at,
            max_streams: e.max_streams,
            policy: e.policy.clone(),
        }
    }

    fn entitlement(session: &Session) -> Result<Entitlement, ApiError> {
        let corrupt = |e: String| ApiError::Internal(format!("stored session entitlement: {e}"));
        let stored: Self =
            serde_json::from_str(&session.entitlement).map_err(|e| corrupt(e.to_string()))?;
        let contents = stored
            .contents
            .iter()
            .map(|c| ContentId::parse(c))
            .collect::<Result<_, _>>()
            .map_err(|e| corrupt(e.to_string()))?;
        Ok(Entitlement {
            user: stored.user,
            contents,
            expires_at: stored.expires_at,
            token_id: None,
            max_streams: stored.max_streams,
            policy: stored.policy,
        })
    }
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SsmSetupAnswer)]
struct SetupAnswer {
    /// The session id (base64url): the bearer secret of the session's later calls.
    session_id: String,
    /// Seconds between heartbeats.
    heartbeat: u64,
    /// Unix seconds: when the session expires without a heartbeat or licence.
    expires_at: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(as = SsmHeartbeatAnswer)]
struct HeartbeatAnswer {
    /// Seconds between heartbeats.
    heartbeat: u64,
    /// Unix seconds: the session's new expiry.
    expires_at: u64,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = SsmLicenceAnswer)]
struct LicenceAnswer {
    /// base64 of the licence: for ClearKey the JSON Web Key set, otherwise the upstream
    /// licence server's answer.
    #[schema(content_encoding = "base64")]
    licence: String,
    /// Seconds between heartbeats.
    heartbeat: u64,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
#[schema(as = SsmLicenceRequest, example = json!({"keySystem": "org.w3.clearkey",
    "payload": "eyJraWRzIjpbIm5yUUZEZVJMU0FLVExpZlhVSVBpWmciXSwidHlwZSI6InRlbXBvcmFyeSJ9",
    "requestType": "license-request"}))]
struct LicenceRequestJson {
    /// A DRM system id (with or without `urn:uuid:`) or EME key system name:
    /// `org.w3.clearkey`, `com.widevine.alpha`, `com.microsoft.playready`, `com.apple.fps`.
    key_system: String,
    /// base64 (or base64url) of the CDM's licence request.
    #[schema(content_encoding = "base64")]
    payload: String,
    /// `license-request` or `license-renewal`.
    request_type: String,
    /// Key id(s) the licence is for (UUID or 32 hex digits), for DRMs whose challenge
    /// keyplex cannot read.
    #[serde(default)]
    kid: Option<KidField>,
    /// The content the licence is for.
    #[serde(default)]
    content_id: Option<String>,
}

/// One key id, or a list of them.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(untagged)]
#[schema(as = SsmKid)]
enum KidField {
    One(String),
    Many(Vec<String>),
}

#[derive(Clone, Copy, PartialEq, Eq)]
enum RequestType {
    Request,
    Renewal,
}

fn no_store(status: StatusCode, body: impl Serialize) -> Result<Response, ApiError> {
    let json = serde_json::to_vec(&body).map_err(|e| ApiError::Internal(e.to_string()))?;
    Ok((
        status,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        json,
    )
        .into_response())
}

fn tenant_heartbeat(tenant: &Tenant) -> u64 {
    tenant
        .config
        .licence
        .as_ref()
        .and_then(|l| l.heartbeat_seconds)
        .unwrap_or(DEFAULT_HEARTBEAT_SECONDS)
}

fn expiry(now: u64, heartbeat: u64) -> u64 {
    now.saturating_add(heartbeat.saturating_mul(MISSED_HEARTBEATS))
}

fn session_id_of(id: &str) -> Result<&str, ApiError> {
    if id.is_empty()
        || id.len() > MAX_SESSION_ID_CHARS
        || !id
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
    {
        return Err(unknown_session());
    }
    Ok(id)
}

fn unknown_session() -> ApiError {
    ApiError::NotFound("unknown or expired session".into())
}

/// `POST /{tenant}/ssm/v1/sessions/setup`
#[utoipa::path(
    post,
    path = "/{tenant}/ssm/v1/sessions/setup",
    operation_id = "ssm_setup",
    tag = "licence",
    summary = "Open a secure session",
    description = "Verifies the entitlement token and opens a session bound to it. Refused when \
        the user (`sub`) already has `max_streams` live sessions.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("token" = Option<String>, Query, description = "The entitlement token, for players \
            that cannot send `Authorization: Bearer`"),
    ),
    responses(
        (status = 201, description = "Session opened", body = SetupAnswer, content_type = "application/json"),
        (status = 400, description = "Malformed query", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid entitlement token", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "A token covering no content, the concurrent stream limit \
            reached, another tenant's token, or a disabled tenant", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, or a tenant without licence keys", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("entitlement_jwt" = []), ("entitlement_query" = [])),
)]
pub async fn post_setup(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Result<Query<TokenQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let token =
        entitlement::presented_token(&headers, entitlement::query_token(query)?.as_deref())?;
    let now = entitlement::now_unix();
    let entitlement = entitlement::verify(&state, tenant, token.as_deref(), now).await?;
    if entitlement.contents.is_empty() {
        return Err(ApiError::Forbidden(
            "the entitlement token covers no content".into(),
        ));
    }
    let heartbeat = entitlement
        .policy
        .renewal_interval
        .filter(|s| *s > 0)
        .unwrap_or_else(|| tenant_heartbeat(tenant));
    let id_bytes = keyplex_crypto::random::random_bytes::<16>()
        .map_err(|e| ApiError::Internal(format!("session id: {e}")))?;
    let session = NewSession {
        id: URL_SAFE_NO_PAD.encode(id_bytes),
        user: entitlement.user.clone(),
        entitlement: serde_json::to_string(&StoredEntitlement::of(&entitlement))
            .map_err(|e| ApiError::Internal(e.to_string()))?,
        heartbeat_seconds: heartbeat,
        created_at: now,
        expires_at: expiry(now, heartbeat),
    };
    let user = keyplex_types::truncate_for_message(&entitlement.user);
    match state
        .store()
        .open_session(&tenant.id, &session, entitlement.max_streams, now)
        .await?
    {
        SessionOpen::Opened => {}
        SessionOpen::LimitReached { active } => {
            tracing::info!(tenant = %tenant.id, %user, active, "ssm setup refused: max_streams reached");
            return Err(ApiError::Forbidden(format!(
                "concurrent stream limit reached ({active} active sessions)"
            )));
        }
    }
    tracing::info!(tenant = %tenant.id, %user, heartbeat, "ssm session opened");
    no_store(
        StatusCode::CREATED,
        SetupAnswer {
            session_id: session.id,
            heartbeat,
            expires_at: session.expires_at,
        },
    )
}

/// `POST /{tenant}/ssm/v1/sessions/{id}/heartbeat`
#[utoipa::path(
    post,
    path = "/{tenant}/ssm/v1/sessions/{id}/heartbeat",
    operation_id = "ssm_heartbeat",
    tag = "licence",
    summary = "Keep a secure session alive",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "The session id setup answered")),
    responses(
        (status = 200, description = "Session extended", body = HeartbeatAnswer, content_type = "application/json"),
        (status = 404, description = "Unknown tenant, or an unknown, expired or torn-down session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn post_heartbeat(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let id = session_id_of(&id)?;
    let now = entitlement::now_unix();
    let session = live_session(&state, tenant, id, now).await?;
    let touched = state
        .store()
        .touch_session(
            &tenant.id,
            id,
            now,
            expiry(now, session.heartbeat_seconds),
            None,
        )
        .await?
        .ok_or_else(unknown_session)?;
    no_store(
        StatusCode::OK,
        HeartbeatAnswer {
            heartbeat: touched.heartbeat_seconds,
            expires_at: touched.expires_at,
        },
    )
}

/// `DELETE /{tenant}/ssm/v1/sessions/{id}`
#[utoipa::path(
    delete,
    path = "/{tenant}/ssm/v1/sessions/{id}",
    operation_id = "ssm_teardown",
    tag = "licence",
    summary = "Tear down a secure session",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "The session id setup answered")),
    responses(
        (status = 204, description = "Session closed"),
        (status = 404, description = "Unknown tenant, or an unknown, expired or torn-down session", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn delete_session(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let id = session_id_of(&id)?;
    if !state
        .store()
        .close_session(&tenant.id, id, entitlement::now_unix())
        .await?
    {
        return Err(unknown_session());
    }
    tracing::info!(tenant = %tenant.id, "ssm session torn down");
    Ok(StatusCode::NO_CONTENT.into_response())
}

async fn live_session(
    state: &AppState,
    tenant: &Tenant,
    id: &str,
    now: u64,
) -> Result<Session, ApiError> {
    state
        .store()
        .get_session(&tenant.id, id, now)
        .await?
        .ok_or_else(unknown_session)
}

/// `POST /{tenant}/ssm/v1/sessions/{id}/licence`
#[utoipa::path(
    post,
    path = "/{tenant}/ssm/v1/sessions/{id}/licence",
    operation_id = "ssm_licence",
    tag = "licence",
    summary = "A licence through a secure session",
    description = "ClearKey: the payload is the EME Clear Key request and the licence the JSON \
        Web Key set. Widevine, PlayReady, FairPlay: the payload is the CDM's challenge, forwarded \
        through the licence proxy; the licence is the upstream's answer. The entitlement is the \
        one verified at setup.",
    params(("tenant" = String, Path, description = "Tenant id"), ("id" = String, Path, description = "The session id setup answered")),
    request_body(content = LicenceRequestJson, content_type = "application/json"),
    responses(
        (status = 200, description = "The licence", body = LicenceAnswer, content_type = "application/json"),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 403, description = "Not entitled to the requested keys", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, an unknown, expired or torn-down session, \
            or no upstream licence server for this DRM", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "`license-renewal` without a prior licence of that key \
            system in the session", body = Problem, content_type = "application/problem+json"),
        (status = 413, description = "Body too large", body = Problem, content_type = "application/problem+json"),
        (status = 502, description = "The upstream licence server failed", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(()),
)]
pub async fn post_licence(
    State(state): State<AppState>,
    Path((tenant, id)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let id = session_id_of(&id)?;
    let body = crate::http::body::read_body_bytes(&state, body)?;
    let request: LicenceRequestJson = serde_json::from_slice(&body)
        .map_err(|e| ApiError::BadRequest(format!("invalid licence request: {e}")))?;
    let key_system = KeySystem::parse(&request.key_system).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "keySystem {:?} is not a supported DRM system id",
            keyplex_types::truncate_for_message(&request.key_system)
        ))
    })?;
    crate::scope::note_drm(key_system.name());
    let request_type = match request.request_type.as_str() {
        "license-request" => RequestType::Request,
        "license-renewal" => RequestType::Renewal,
        other => {
            return Err(ApiError::BadRequest(format!(
                "requestType {:?} is not \"license-request\" or \"license-renewal\"",
                keyplex_types::truncate_for_message(other)
            )));
        }
    };
    let payload = keyplex_types::decode_base64_lenient(&request.payload)
        .ok_or_else(|| ApiError::BadRequest("payload is not base64".into()))?;
    let mut kids: Vec<KeyId> = Vec::new();
    let kid_texts = match request.kid {
        None => Vec::new(),
        Some(KidField::One(k)) => vec![k],
        Some(KidField::Many(ks)) => ks,
    };
    if kid_texts.len() > MAX_REQUEST_KIDS {
        return Err(ApiError::BadRequest(format!(
            "at most {MAX_REQUEST_KIDS} kids"
        )));
    }
    for text in kid_texts {
        let kid: KeyId = text.trim().parse().map_err(|_| {
            ApiError::BadRequest(format!(
                "kid {:?} is not a UUID or 32 hex digits",
                keyplex_types::truncate_for_message(&text)
            ))
        })?;
        if !kids.contains(&kid) {
            kids.push(kid);
        }
    }
    let content_id = request
        .content_id
        .as_deref()
        .map(ContentId::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("contentId: {e}")))?;

    let now = entitlement::now_unix();
    let session = live_session(&state, tenant, id, now).await?;
    if request_type == RequestType::Renewal
        && !session.key_systems.iter().any(|s| s == key_system.name())
    {
        return Err(ApiError::Conflict(format!(
            "license-renewal without a prior {} licence in this session",
            key_system.name()
        )));
    }
    let entitlement = StoredEntitlement::entitlement(&session)?;
    let licence: Vec<u8> = match key_system {
        KeySystem::ClearKey => {
            let clearkey = ClearKeyLicenseRequest::parse(&payload).map_err(|e| {
                ApiError::BadRequest(format!("invalid Clear Key licence request: {e}"))
            })?;
            crate::player::clearkey::licence_for(
                &state,
                tenant,
                &entitlement,
                &clearkey,
                licence_proxy::Via::Session,
            )
            .await?
            .into_bytes()
        }
        KeySystem::Widevine => {
            upstream_licence(
                &WidevineStyle::WIDEVINE,
                &state,
                tenant,
                &entitlement,
                &kids,
                content_id.as_ref(),
                payload,
            )
            .await?
        }
        KeySystem::PlayReady => {
            upstream_licence(
                &PlayReadySoap,
                &state,
                tenant,
                &entitlement,
                &kids,
                content_id.as_ref(),
                payload,
            )
            .await?
        }
        KeySystem::FairPlay => {
            upstream_licence(
                &FairPlaySpc,
                &state,
                tenant,
                &entitlement,
                &kids,
                content_id.as_ref(),
                payload,
            )
            .await?
        }
    };
    // The licence extends the session and records its key system for later renewals.
    let touched = state
        .store()
        .touch_session(
            &tenant.id,
            id,
            now,
            expiry(now, session.heartbeat_seconds),
            Some(key_system.name()),
        )
        .await?
        .ok_or_else(unknown_session)?;
    no_store(
        StatusCode::OK,
        LicenceAnswer {
            licence: B64.encode(licence),
            heartbeat: touched.heartbeat_seconds,
        },
    )
}

/// For a tenant with `require_session`: a direct licence route's refusal (403) unless `user`
/// has a live secure session whose entitlement covers `content`.
pub async fn require_live_session(
    state: &AppState,
    tenant: &Tenant,
    user: &str,
    content: &ContentId,
) -> Result<(), ApiError> {
    if !tenant
        .config
        .licence
        .as_ref()
        .is_some_and(|l| l.require_session)
    {
        return Ok(());
    }
    let sessions = state
        .store()
        .live_sessions_of(&tenant.id, user, entitlement::now_unix())
        .await?;
    let covered = sessions
        .iter()
        .any(|session| StoredEntitlement::entitlement(session).is_ok_and(|e| e.covers(content)));
    if covered {
        Ok(())
    } else {
        Err(ApiError::Forbidden(format!(
            "tenant {} licenses content {content} only within a secure session: open one with \
             POST /{}/ssm/v1/sessions/setup and ask for the licence there",
            tenant.id, tenant.id
        )))
    }
}

async fn upstream_licence<A: LicenceAdapter>(
    adapter: &A,
    state: &AppState,
    tenant: &Tenant,
    entitlement: &Entitlement,
    kids: &[KeyId],
    content_id: Option<&ContentId>,
    payload: Vec<u8>,
) -> Result<Vec<u8>, ApiError> {
    let upstream = licence_proxy::upstream_of(adapter, tenant)?;
    let challenge = adapter.challenge(&HeaderMap::new(), Bytes::from(payload))?;
    let answer = licence_proxy::entitled_licence(
        adapter,
        state,
        tenant,
        &upstream,
        entitlement,
        kids,
        content_id,
        challenge,
        licence_proxy::Via::Session,
    )
    .await?;
    Ok(answer.body.to_vec())
}
