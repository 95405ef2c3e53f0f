//! PallyCon (DoveRunner) compatible CPIX routes, so that a packager configured for PallyCon's
//! KMS only changes the host and the token (`shared/seeds/003_…`, PallyCon's "CPIX API
//! Guide"):
//!
//! * `POST /{tenant}/v1/cpix/pallycon/getKey/{enc_token}` and `…/v2/…`: PallyCon's own CPIX
//!   API (Flussonic and others);
//! * `POST /{tenant}/cpix/getKey?enc-token={enc_token}`: its SPEKE form (AWS Elemental);
//! * `GET /{tenant}/cpix/anevia/{dash|hls}/{enc_token}/{cid}`: the ATEME (Anevia) NEA-DVR form.
//!
//! The token is the tenant's `enc_token` (config, or an `enc_token` credential of the admin
//! API); it is redacted from the request span like the GET-CPIX token.
//!
//! keyplex chooses the key ids on every one of these routes, as PallyCon does: the request's
//! kid is a label that ties `DRMSystem`s and usage rules to a key, and the key's identity is
//! (tenant, content, track type, period) — shared with the NAGRA JSON API, the Widevine API
//! and GET CPIX. The content id is `CPIX@id`. A `ContentKeyPeriod@index` rotates the key. A
//! `DRMSystem` whose kid is not in `ContentKeyList` (the guide's DASH-live sample) belongs to
//! the request's only key when it has one. Each `DRMSystem` gets everything its DRM has in
//! that version of the API ([`Fill::Pallycon`]); the SPEKE form answers as SPEKE does
//! (v2 with `X-Speke-Version`, else v1) with keyplex's kids (SPEKE allows the key provider
//! to override the kid). Errors are `text/plain` with the HTTP status, as on the CPIX route.

use axum::body::Bytes;
use axum::extract::rejection::{BytesRejection, QueryRejection};
use axum::extract::{Path, Query, State};
use axum::http::HeaderMap;
use axum::response::Response;
use keyplex_cpix::model::{ContentKeyEntry, CpixDocument, DrmSystemEntry, Kid};
use keyplex_drm::system::DrmSystem;
use keyplex_types::KeyId;
use serde::Deserialize;

use crate::auth::{TokenKind, authenticate_token};
use crate::http::error::{ApiError, PlainText};
use crate::packager::cpix::{
    ContentIdSource, ExchangeProfile, Fill, KidSource, PallyconVersion, exchange_with,
    read_request, xml_response,
};
use crate::state::AppState;

/// The profile of PallyCon's own CPIX API.
fn profile(api: PallyconVersion) -> ExchangeProfile {
    ExchangeProfile {
        content_id: ContentIdSource::IdThenContentId,
        answer_everything_asked: false,
        kids: KidSource::Server,
        fill: Fill::Pallycon(api),
    }
}

/// The answers of both PallyCon CPIX URLs, for the OpenAPI document.
struct PallyconCpixAnswers;

impl utoipa::IntoResponses for PallyconCpixAnswers {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        crate::http::doc::xml_or_plain_text_answers(
            "The CPIX document with keyplex's kids, keys and signaling",
            [
                (
                    400,
                    "Not a readable CPIX document, or one that cannot be answered",
                ),
                (401, "No valid enc_token"),
                (403, "Another tenant's token, or a disabled tenant"),
                (404, "Unknown tenant"),
                (413, "Body too large"),
                (503, "Key store unavailable"),
            ],
        )
    }
}

/// `POST /{tenant}/v1/cpix/pallycon/getKey/{enc_token}`.
#[utoipa::path(
    post,
    path = "/{tenant}/v1/cpix/pallycon/getKey/{enc_token}",
    operation_id = "pallycon_v1",
    tag = "packager",
    summary = "PallyCon-compatible CPIX API, V1",
    description = "PallyCon's KMS URL V1: keyplex chooses the key ids (the request's kids only \
        tie DRMSystems and usage rules to keys); the content id is `CPIX@id`; each DRMSystem gets \
        `PSSH` (Widevine, PlayReady) or `URIExtXKey` (FairPlay).",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("enc_token" = String, Path, description = "The tenant's enc_token"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A CPIX document as PallyCon's guide shows it"),
    responses(PallyconCpixAnswers),
    security(()),
)]
pub async fn post_v1(
    State(state): State<AppState>,
    Path((tenant, token)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PlainText> {
    answer_pallycon(&state, &tenant, &token, body, PallyconVersion::V1).await
}

/// `POST /{tenant}/v2/cpix/pallycon/getKey/{enc_token}`.
#[utoipa::path(
    post,
    path = "/{tenant}/v2/cpix/pallycon/getKey/{enc_token}",
    operation_id = "pallycon_v2",
    tag = "packager",
    summary = "PallyCon-compatible CPIX API, V2 (multi-key)",
    description = "PallyCon's KMS URL V2: as V1, plus multi-key packaging by \
        `intendedTrackType`/`VideoFilter`, and each DRMSystem gets everything its DRM has: \
        `PSSH`, `ContentProtectionData` (the pssh box's data without its header), the media and \
        master `HLSSignalingData`, and `URIExtXKey` (FairPlay).",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("enc_token" = String, Path, description = "The tenant's enc_token"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A CPIX document as PallyCon's guide shows it"),
    responses(PallyconCpixAnswers),
    security(()),
)]
pub async fn post_v2(
    State(state): State<AppState>,
    Path((tenant, token)): Path<(String, String)>,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PlainText> {
    answer_pallycon(&state, &tenant, &token, body, PallyconVersion::V2).await
}

/// The query of the SPEKE form.
#[derive(Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
pub struct EncTokenQuery {
    /// The tenant's enc_token.
    #[serde(rename = "enc-token")]
    #[param(rename = "enc-token")]
    pub enc_token: Option<String>,
}

/// `POST /{tenant}/cpix/getKey?enc-token={enc_token}`.
#[utoipa::path(
    post,
    path = "/{tenant}/cpix/getKey",
    operation_id = "pallycon_speke",
    tag = "packager",
    summary = "PallyCon-compatible SPEKE URL",
    description = "PallyCon's SPEKE form for AWS Elemental: answered as SPEKE (v2.0/2.1 with \
        `X-Speke-Version`, else v1), authenticated by the `enc-token` query parameter, with \
        keyplex's kids (SPEKE lets the key provider override the kid).",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        EncTokenQuery,
        ("X-Speke-Version" = Option<String>, Header, description = "`2.0` or `2.1` for SPEKE v2; absent for v1"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A SPEKE (CPIX) request document"),
    responses(
        (status = 200, description = "The CPIX document with keys and signaling", body = String, content_type = "application/xml"),
        (status = 400, description = "Not a readable CPIX document", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid enc-token", body = String, content_type = "text/plain"),
        (status = 403, description = "Another tenant's token, or a disabled tenant", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown tenant", body = String, content_type = "text/plain"),
        (status = 413, description = "Body too large", body = String, content_type = "text/plain"),
        (status = 422, description = "The request breaks the SPEKE profile (the exact AWS message)", body = String, content_type = "text/plain"),
        (status = 503, description = "Key store unavailable", body = String, content_type = "text/plain"),
    ),
    security(()),
)]
pub async fn post_speke(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    query: Result<Query<EncTokenQuery>, QueryRejection>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PlainText> {
    let tenant = state.tenant(&tenant)?;
    let Query(query) =
        query.map_err(|e| ApiError::BadRequest(format!("invalid query string: {e}")))?;
    let token = query.enc_token.filter(|t| !t.is_empty()).ok_or_else(|| {
        ApiError::Unauthorized("the SPEKE URL needs ?enc-token=<the tenant's enc_token>".into())
    })?;
    authenticate_token(&state, &tenant, &token, TokenKind::Enc)?;
    let body = crate::http::body::read_body_bytes(&state, body)?;
    Ok(
        crate::packager::speke::answer_with_kids(
            &state,
            &tenant,
            &headers,
            body,
            KidSource::Server,
        )
        .await,
    )
}

/// `GET /{tenant}/cpix/anevia/{format}/{enc_token}/{cid}` (ATEME NEA-DVR).
#[utoipa::path(
    get,
    path = "/{tenant}/cpix/anevia/{format}/{enc_token}/{cid}",
    operation_id = "pallycon_anevia",
    tag = "packager",
    summary = "ATEME NEA-DVR GET form (PallyCon-compatible)",
    description = "One key for the content (the same key the POST routes give a request without \
        usage rules or periods). `dash`: Widevine and PlayReady `PSSH` (cenc). `hls`: FairPlay \
        and Widevine, and Clear Key AES-128 when the tenant sets `hls_key_url`, with \
        `URIExtXKey` and the media and master `HLSSignalingData` (cbcs).",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("format" = String, Path, description = "`dash` or `hls`"),
        ("enc_token" = String, Path, description = "The tenant's enc_token"),
        ("cid" = String, Path, description = "Content id"),
    ),
    responses(
        (status = 200, description = "A CPIX document with one key and its signaling", body = String, content_type = "application/xml"),
        (status = 400, description = "Unknown format or malformed content id", body = String, content_type = "text/plain"),
        (status = 401, description = "No valid enc_token", body = String, content_type = "text/plain"),
        (status = 403, description = "Another tenant's token, or a disabled tenant", body = String, content_type = "text/plain"),
        (status = 404, description = "Unknown tenant", body = String, content_type = "text/plain"),
        (status = 503, description = "Key store unavailable", body = String, content_type = "text/plain"),
    ),
    security(()),
)]
pub async fn get_anevia(
    State(state): State<AppState>,
    Path((tenant, format, token, cid)): Path<(String, String, String, String)>,
) -> Result<Response, PlainText> {
    let tenant = state.tenant(&tenant)?;
    authenticate_token(&state, &tenant, &token, TokenKind::Enc)?;
    let (systems, api) = anevia_format(&tenant, &format)?;
    // The request a NEA-DVR would POST if it could: one key, no rules, every DRM of the
    // format. The CPIX engine answers it, so this form gives exactly the POST routes' key.
    let label = Kid::new(KeyId::from_bytes([0; 16]));
    let request = CpixDocument {
        id: Some(cid),
        content_keys: Some(vec![ContentKeyEntry {
            id: None,
            kid: label.clone(),
            explicit_iv: None,
            common_encryption_scheme: None,
            content_id: None,
            depends_on_key: None,
            value: None,
        }]),
        drm_systems: Some(
            systems
                .iter()
                .map(|system| DrmSystemEntry::new(*system.as_bytes(), label.clone()))
                .collect(),
        ),
        ..CpixDocument::default()
    };
    let answer = exchange_with(&state, &tenant, request, &profile(api)).await?;
    Ok(xml_response(answer).await?)
}

/// The DRMs (by system id: the built-in ones of the format, then those the tenant lists for
/// it) and API version of ATEME's `{format}` (also run by the `url_parameters` fuzz target).
pub(crate) fn anevia_format(
    tenant: &crate::state::Tenant,
    format: &str,
) -> Result<(Vec<uuid::Uuid>, PallyconVersion), ApiError> {
    let (builtin, api) = match format {
        "dash" => (
            vec![DrmSystem::PlayReady, DrmSystem::Widevine],
            PallyconVersion::V1,
        ),
        "hls" => {
            let mut systems = vec![DrmSystem::FairPlay, DrmSystem::Widevine];
            // AES-128 hands the same key to whoever may fetch it from the key URL, so it is
            // signaled only where the operator configured that URL for this purpose.
            if tenant.config.hls_key_url.is_some() {
                systems.push(DrmSystem::ClearKeyAes128);
            }
            (systems, PallyconVersion::V2)
        }
        other => {
            return Err(ApiError::BadRequest(format!(
                "unknown format {:?}: use /cpix/anevia/dash/… or /cpix/anevia/hls/…",
                keyplex_types::truncate_chars(other, 32)
            )));
        }
    };
    let systems = builtin
        .iter()
        .map(|s| s.system_id())
        .chain(
            tenant
                .drm_systems
                .for_format(format, &builtin)
                .iter()
                .map(keyplex_drm::DrmIdentity::system_id),
        )
        .collect();
    Ok((systems, api))
}

async fn answer_pallycon(
    state: &AppState,
    tenant: &str,
    token: &str,
    body: Result<Bytes, BytesRejection>,
    api: PallyconVersion,
) -> Result<Response, PlainText> {
    let tenant = state.tenant(tenant)?;
    authenticate_token(state, &tenant, token, TokenKind::Enc)?;
    let body = crate::http::body::read_body_bytes(state, body)?;
    let body = crate::http::body::require_body(body, "a CPIX document")?;
    let mut request = read_request(body).await?;
    adopt_orphan_drm_systems(&mut request);
    let answer = exchange_with(state, &tenant, request, &profile(api)).await?;
    Ok(xml_response(answer).await?)
}

/// PallyCon's DASH-live sample names, in a `DRMSystem`, a kid that is not in
/// `ContentKeyList`; PallyCon answers it for the request's key. With one key that is the
/// only reading; with several the reference stays dangling and the engine says so.
fn adopt_orphan_drm_systems(doc: &mut CpixDocument) {
    let Some([only]) = doc.content_keys.as_deref() else {
        return;
    };
    let kid = only.kid.clone();
    for drm in doc.drm_systems.iter_mut().flatten() {
        if drm.kid.id != kid.id {
            drm.kid = kid.clone();
        }
    }
}
