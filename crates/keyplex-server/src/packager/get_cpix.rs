//! GET-style CPIX for encoders that can only GET: `GET /{tenant}/cpix/{dash|hls}/{content_id}`
//! (and `…/{content_id}/{token}` when the tenant sets `get_token_in_path = true`).
//!
//! Authentication is the tenant's `get_token`, sent as `Authorization: Bearer <token>` (or,
//! if allowed, as the last path segment — such URLs end up in access logs and proxies, which
//! is why it is off by default). Tokens are compared in constant time; a token of another
//! tenant gets 403, anything else 401.
//!
//! The answer is a complete CPIX 2.3 document with one key: keyplex chooses the kid, so the
//! identity is the slot (content, track type `ALL`, period) — the same key NAGRA `/key`, the
//! Widevine API and CPIX/SPEKE with kid override give for that content. The period is VOD,
//! or `?period=N` for live. DASH answers Widevine, PlayReady, DASH-IF Clear Key and the W3C
//! common pssh (scheme cenc); HLS answers FairPlay and Widevine (scheme cbcs); `?scheme=`
//! overrides the scheme. Signaling comes from the same code as every other interface
//! (`signaling::entry`).

use crate::auth::TokenKind;
use crate::http::error::{ApiError, PlainText};
use crate::keys;
use crate::signaling;
use crate::state::{AppState, Tenant};
use axum::extract::rejection::QueryRejection;
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keyplex_cpix::model::{
    ContentKeyEntry, ContentKeyPeriod, CpixDocument, CpixVersion, DrmSystemEntry, HlsSignaling,
    KeyPeriodFilter, KeyValue, Kid, Playlist, UsageRule,
};
use keyplex_drm::define::DrmIdentity;
use keyplex_drm::signal::SignalForms;
use keyplex_drm::system::DrmSystem;
use keyplex_types::{ContentId, EncryptionScheme, KeyPeriod, KeySlot, TrackType};
use serde::Deserialize;

/// Optional query parameters.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct GetCpixQuery {
    /// `cenc` or `cbcs` (also `cens`, `cbc1`): overrides the format's default scheme.
    pub scheme: Option<String>,
    /// Key period index for live content; absent = VOD.
    pub period: Option<String>,
}

/// `GET /{tenant}/cpix/{format}/{content_id}` with `Authorization: Bearer <get_token>`.
#[utoipa::path(
    get,
    path = "/{tenant}/cpix/{format}/{content_id}",
    operation_id = "get_cpix",
    tag = "packager",
    summary = "GET-style CPIX (encoders that can only GET)",
    description = "keyplex chooses the key id: the key of the slot (content, track type `ALL`, \
        period) — the same key NAGRA `/key`, the Widevine API and CPIX with kid override give.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("format" = String, Path, description = "`dash` (Widevine, PlayReady, Clear Key, W3C common pssh; cenc) or `hls` (FairPlay, Widevine; cbcs)"),
        ("content_id" = String, Path, description = "Content id"),
        GetCpixQuery,
    ),
    responses(
        (status = 200, description = "A CPIX 2.3 document with one key and its signaling. Never cached.", body = String, content_type = "application/xml"),
        (status = 400, description = "Unknown format, malformed content id, scheme or period", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid get_token", body = String, content_type = "text/plain"),
        (status = 403, description = "Another tenant's token, or a disabled tenant", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown tenant", body = String, content_type = "text/plain"),
        (status = 503, description = "Key store unavailable", body = String, content_type = "text/plain"),
    ),
    security(("get_token" = [])),
)]
pub async fn get_cpix(
    State(state): State<AppState>,
    Path((tenant, format, content_id)): Path<(String, String, String)>,
    query: Result<Query<GetCpixQuery>, QueryRejection>,
    headers: HeaderMap,
) -> Result<Response, PlainText> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let token = bearer_token(&headers)?;
    authenticate(&state, tenant, &token)?;
    answer(&state, tenant, &format, &content_id, query).await
}

/// `GET /{tenant}/cpix/{format}/{content_id}/{token}`: only for tenants with
/// `get_token_in_path = true`.
#[utoipa::path(
    get,
    path = "/{tenant}/cpix/{format}/{content_id}/{token}",
    operation_id = "get_cpix_token_in_path",
    tag = "packager",
    summary = "GET-style CPIX with the token in the path",
    description = "As `GET /{tenant}/cpix/{format}/{content_id}`, for tenants that set \
        `get_token_in_path = true` (such URLs end up in access logs).",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("format" = String, Path, description = "`dash` or `hls`"),
        ("content_id" = String, Path, description = "Content id"),
        ("token" = String, Path, description = "The tenant's get_token"),
        GetCpixQuery,
    ),
    responses(
        (status = 200, description = "A CPIX 2.3 document with one key and its signaling. Never cached.", body = String, content_type = "application/xml"),
        (status = 400, description = "Unknown format, malformed content id, scheme or period", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid get_token, or tokens in the path not allowed", body = String, content_type = "text/plain"),
        (status = 403, description = "Another tenant's token, or a disabled tenant", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown tenant", body = String, content_type = "text/plain"),
        (status = 503, description = "Key store unavailable", body = String, content_type = "text/plain"),
    ),
    security(()),
)]
pub async fn get_cpix_token_in_path(
    State(state): State<AppState>,
    Path((tenant, format, content_id, token)): Path<(String, String, String, String)>,
    query: Result<Query<GetCpixQuery>, QueryRejection>,
) -> Result<Response, PlainText> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    if !tenant.config.get_token_in_path {
        return Err(ApiError::Unauthorized(
            "this tenant does not accept the token in the URL path (get_token_in_path is off): send Authorization: Bearer <get_token>".into(),
        )
        .into());
    }
    authenticate(&state, tenant, &token)?;
    answer(&state, tenant, &format, &content_id, query).await
}

fn bearer_token(headers: &HeaderMap) -> Result<String, ApiError> {
    match crate::auth::bearer(headers)? {
        crate::auth::Bearer::Token(token) if !token.is_empty() => Ok(token.to_owned()),
        _ => Err(ApiError::Unauthorized(
            "GET-style CPIX needs the tenant's get_token as Authorization: Bearer <token>".into(),
        )),
    }
}

fn authenticate(state: &AppState, tenant: &Tenant, presented: &str) -> Result<(), ApiError> {
    crate::auth::authenticate_token(state, tenant, presented, TokenKind::Get)
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub(crate) enum Format {
    Dash,
    Hls,
}

impl Format {
    fn parse(s: &str) -> Result<Self, ApiError> {
        match s {
            "dash" => Ok(Self::Dash),
            "hls" => Ok(Self::Hls),
            other => Err(ApiError::BadRequest(format!(
                "unknown format {:?}: use /cpix/dash/… or /cpix/hls/…",
                keyplex_types::truncate_chars(other, 32)
            ))),
        }
    }

    const fn name(self) -> &'static str {
        match self {
            Self::Dash => "dash",
            Self::Hls => "hls",
        }
    }

    /// The built-in systems of the format, then those the tenant lists for it
    /// (`drm_systems` entries with `formats`).
    fn systems(self, tenant: &Tenant) -> Vec<DrmIdentity> {
        let builtin: &[DrmSystem] = match self {
            Self::Dash => &[
                DrmSystem::Widevine,
                DrmSystem::PlayReady,
                DrmSystem::ClearKeyDashIf,
                DrmSystem::CommonPssh,
            ],
            Self::Hls => &[DrmSystem::FairPlay, DrmSystem::Widevine],
        };
        builtin
            .iter()
            .map(|s| DrmIdentity::BuiltIn(*s))
            .chain(tenant.drm_systems.for_format(self.name(), builtin))
            .collect()
    }

    fn default_scheme(self) -> EncryptionScheme {
        match self {
            Self::Dash => EncryptionScheme::Cenc,
            Self::Hls => EncryptionScheme::Cbcs,
        }
    }
}

/// The path parameters and query of a GET-CPIX request, checked against the tenant before
/// any key exists (also run by the `url_parameters` fuzz target).
pub(crate) fn check_request(
    tenant: &Tenant,
    format: &str,
    content_id: &str,
    query: &GetCpixQuery,
) -> Result<(Format, ContentId, EncryptionScheme, KeyPeriod), ApiError> {
    let format = Format::parse(format)?;
    let content_id =
        ContentId::parse(content_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let scheme = match query.scheme.as_deref() {
        None | Some("") => format.default_scheme(),
        Some(s) => s
            .parse::<EncryptionScheme>()
            .map_err(|e| ApiError::BadRequest(e.to_string()))?,
    };
    let period = match query.period.as_deref() {
        None | Some("") => KeyPeriod::Vod,
        Some(p) => p
            .parse::<u64>()
            .ok()
            .and_then(|i| KeyPeriod::from_index(i).ok())
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "period {:?} is not a key period index (an integer from 0 to {})",
                    keyplex_types::truncate_chars(p, 32),
                    KeyPeriod::MAX_INDEX
                ))
            })?,
    };
    for system in format.systems(tenant) {
        signaling::preflight(tenant, &system, scheme)?;
    }
    Ok((format, content_id, scheme, period))
}

async fn answer(
    state: &AppState,
    tenant: &Tenant,
    format: &str,
    content_id: &str,
    query: Result<Query<GetCpixQuery>, QueryRejection>,
) -> Result<Response, PlainText> {
    // 1. Check everything before a key exists.
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let (format, content_id, scheme, period) = check_request(tenant, format, content_id, &query)?;

    // 2. The slot's key: one atomic, durable store call.
    let slot = KeySlot {
        content_id: content_id.clone(),
        track_type: TrackType::all(),
        period,
    };
    let stored = keys::resolve(state, tenant, &content_id, &[keys::by_slot(slot)?]).await?;
    let key = stored
        .first()
        .ok_or_else(|| ApiError::Internal("the store answered no key for one request".into()))?;

    // 3. The document.
    let kid = Kid::new(key.kid);
    let systems = format.systems(tenant);
    let mut drm_systems = Vec::with_capacity(systems.len());
    for system in systems {
        let signal = signaling::entry(tenant, &system, key, scheme, SignalForms::ALL)?;
        let b64 = &signal.base64;
        let mut entry = DrmSystemEntry {
            name: system.dash_value().map(str::to_owned),
            pssh: b64.pssh.clone(),
            ..DrmSystemEntry::new(*system.system_id().as_bytes(), kid.clone())
        };
        match format {
            Format::Dash => {
                entry
                    .content_protection_data
                    .clone_from(&b64.content_protection_data);
            }
            Format::Hls => {
                // CPIX 2.3 readers that predate HLSSignalingData take FairPlay's URI here.
                if system == DrmIdentity::BuiltIn(DrmSystem::FairPlay) {
                    entry.uri_ext_x_key.clone_from(&b64.hls_key_uri);
                }
                let playlists = [
                    (Playlist::Media, &b64.hls_media),
                    (Playlist::Master, &b64.hls_master),
                ];
                entry.hls_signaling = playlists
                    .into_iter()
                    .filter_map(|(playlist, line)| {
                        line.clone().map(|value| HlsSignaling {
                            playlist: Some(playlist),
                            value,
                        })
                    })
                    .collect();
            }
        }
        drm_systems.push(entry);
    }
    let period_id = key.period.index().map(|i| format!("keyPeriod_{i}"));
    let doc = CpixDocument {
        version: Some(CpixVersion::V2_3),
        content_id: Some(content_id.as_str().to_owned()),
        content_keys: Some(vec![ContentKeyEntry {
            id: None,
            kid: kid.clone(),
            explicit_iv: Some(key.iv),
            common_encryption_scheme: Some(scheme),
            content_id: None,
            depends_on_key: None,
            value: Some(KeyValue::Plain(key.key.clone())),
        }]),
        drm_systems: Some(drm_systems),
        periods: period_id.as_ref().map(|id| {
            vec![ContentKeyPeriod {
                id: Some(id.clone()),
                index: key.period.index(),
                ..ContentKeyPeriod::default()
            }]
        }),
        usage_rules: Some(vec![UsageRule {
            id: None,
            kid,
            intended_track_type: Some(TrackType::ALL.to_owned()),
            key_period_filters: period_id
                .into_iter()
                .map(|period_id| KeyPeriodFilter { period_id })
                .collect(),
            label_filters: Vec::new(),
            video_filters: Vec::new(),
            audio_filters: Vec::new(),
            bitrate_filters: Vec::new(),
            unknown_children: Vec::new(),
        }]),
        ..CpixDocument::default()
    };
    Ok(crate::packager::cpix::xml_response(doc).await?)
}
