//! DASH-IF CPIX 2.3/2.4 key exchange: `POST /{tenant}/nks/v1/cpix` and `POST /{tenant}/cpix`.
//!
//! The packager sends a CPIX document naming the keys (by kid) and the signaling it wants;
//! keyplex answers the same document with keys (in clear, or encrypted to the recipient
//! certificates of `DeliveryDataList`) and DRM signaling filled in.
//!
//! Order of work matters for "nothing is stored for a rejected request": the whole document
//! is parsed and checked (ids, references, DRM systems, schemes, certificates) before the
//! store is asked for keys; after that only infallible-by-construction steps remain.

use hashbrown::HashMap;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderValue, Method, StatusCode, header};
use axum::response::{IntoResponse, Response};
use keyplex_cpix::model::{
    ContentKeyEntry, CpixDocument, CpixVersion, DrmSystemEntry, HlsSignaling, KeyValue, Kid,
    Playlist, UsageRule, VideoFilter,
};
use keyplex_crypto::delivery::{DocumentKeys, RecipientKey};
use keyplex_drm::define::DrmIdentity;
use keyplex_drm::signal::SignalForms;
use keyplex_drm::system::DrmSystem;
use keyplex_types::{
    ContentId, ContentKey, EncryptionScheme, KeyId, KeyPeriod, KeySlot, TrackType,
};

use crate::auth::authenticate_packager_request;
use crate::http::body::require_body;
use crate::http::error::{ApiError, PlainText};
use crate::keys;
use crate::signaling::{self, SignalEntry};
use crate::state::{AppState, Tenant};

/// The error format of the CPIX family — CPIX, SPEKE, GET CPIX, Harmonic, PallyCon and
/// ATEME's forms — for the route table: the message as `text/plain` ([`PlainText`]), what
/// AWS SPEKE and packagers expect.
pub fn error_response(error: ApiError) -> Response {
    PlainText(error).into_response()
}

/// The refusals CPIX and SPEKE document alike (the OpenAPI document; each adds its 422).
pub(crate) const KEY_EXCHANGE_REFUSALS: [(u16, &str); 7] = [
    (400, "Not a readable CPIX document"),
    (401, "No valid packager credentials"),
    (403, "Another tenant's credentials, or a disabled tenant"),
    (404, "Unknown tenant"),
    (409, "A key id that exists with another key"),
    (413, "Body too large"),
    (503, "Key store unavailable"),
];

/// The answers of both CPIX URLs, for the OpenAPI document.
struct CpixAnswers;

impl utoipa::IntoResponses for CpixAnswers {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        crate::http::doc::xml_or_plain_text_answers(
            "The CPIX document with keys and DRM signaling",
            KEY_EXCHANGE_REFUSALS.into_iter().chain([(
                422,
                "A SPEKE request (with `X-Speke-Version`) that breaks the profile",
            )]),
        )
    }
}

/// `POST /{tenant}/nks/v1/cpix` and `POST /{tenant}/cpix`. With an `X-Speke-Version` header
/// the request is SPEKE (AWS encryptors configured with this URL) and answered as such.
#[utoipa::path(
    post,
    path = "/{tenant}/nks/v1/cpix",
    operation_id = "cpix",
    tag = "packager",
    summary = "CPIX key exchange",
    description = "DASH-IF CPIX 2.3/2.4: the packager sends a CPIX document naming its keys and the \
        signaling it wants; keyplex answers the same document with keys (in clear, or encrypted \
        to the `DeliveryDataList` certificates) and DRM signaling. Nothing is stored for a \
        rejected request.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("X-Speke-Version" = Option<String>, Header, description = "When present (`1.0`, `2.0`, \
            `2.1`), the request is SPEKE and answered as on `/speke/v1` or `/speke/v2`"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A CPIX \
        document naming the keys (by kid) and the signaling wanted"),
    responses(CpixAnswers),
    security(("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = []), ("sigv4" = [])),
)]
pub async fn post_cpix(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    method: Method,
    OriginalUri(uri): OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PlainText> {
    let (tenant, body) =
        authenticate_packager_request(&state, &tenant, &method, &uri, &headers, body)?;
    let tenant = &*tenant;
    if let Some(value) = headers.get(crate::packager::speke::SPEKE_VERSION_HEADER) {
        return Ok(
            crate::packager::speke::answer_header_version(&state, tenant, value, body).await,
        );
    }
    let body = require_body(body, "a CPIX document")?;
    let request = read_request(body).await?;
    let response = exchange(&state, tenant, request).await?;
    Ok(xml_response(response).await?)
}

/// The OpenAPI entry of the second URL of [`post_cpix`] (this function is never called).
#[utoipa::path(
    post,
    path = "/{tenant}/cpix",
    operation_id = "cpix_short",
    tag = "packager",
    summary = "CPIX key exchange (short URL)",
    description = "The same handler as `POST /{tenant}/nks/v1/cpix`.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("X-Speke-Version" = Option<String>, Header, description = "When present (`1.0`, `2.0`, \
            `2.1`), the request is SPEKE and answered as on `/speke/v1` or `/speke/v2`"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A CPIX \
        document naming the keys (by kid) and the signaling wanted"),
    responses(CpixAnswers),
    security(("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = []), ("sigv4" = [])),
)]
pub async fn post_cpix_short_url(
    state: State<AppState>,
    tenant: Path<String>,
    method: Method,
    uri: OriginalUri,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, PlainText> {
    post_cpix(state, tenant, method, uri, headers, body).await
}

/// A CPIX request body, read into the typed document (400 for what is not CPIX). Large
/// bodies are parsed off the async workers ([`crate::http::body::off_async_workers`]).
pub async fn read_request(body: Bytes) -> Result<CpixDocument, ApiError> {
    crate::http::body::off_async_workers(body.len(), move || keyplex_cpix::read_document(&body))
        .await?
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// 200 with the CPIX document; a large answer is written off the async workers. It carries
/// keys (in clear, or encrypted for one recipient): no shared cache may keep it.
pub async fn xml_response(doc: CpixDocument) -> Result<Response, ApiError> {
    // About 1.5 KB per DRMSystem with every form of signaling.
    let estimate = doc.drm_systems.as_ref().map_or(0, Vec::len) * 1536
        + doc.content_keys.as_ref().map_or(0, Vec::len) * 256;
    let xml =
        crate::http::body::off_async_workers(estimate, move || keyplex_cpix::write_document(&doc))
            .await?;
    Ok((
        StatusCode::OK,
        [
            (
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/xml; charset=utf-8"),
            ),
            (header::CACHE_CONTROL, HeaderValue::from_static("no-store")),
        ],
        crate::http::body::secret(xml),
    )
        .into_response())
}

/// Where the content id of a document comes from.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ContentIdSource {
    /// `CPIX@contentId`, else `CPIX@id` (DASH-IF CPIX as packagers send it).
    ContentIdThenId,
    /// `CPIX@id`, else `CPIX@contentId` (SPEKE v1, whose documents predate `contentId`).
    IdThenContentId,
    /// `CPIX@contentId` only (SPEKE v2: `CPIX@id` is ignored).
    ContentIdOnly,
}

/// How a profile of CPIX is answered.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ExchangeProfile {
    pub content_id: ContentIdSource,
    /// SPEKE v2: every DRM that has a pssh box answers `PSSH`, asked or not (mandatory for
    /// ISO-BMFF output).
    pub answer_everything_asked: bool,
    /// Who chooses the key ids.
    pub kids: KidSource,
    /// Which signaling elements each `DRMSystem` gets.
    pub fill: Fill,
}

/// Who chooses the key ids of a document.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum KidSource {
    /// The packager's kids are the identities, unless the tenant sets `kid_override`.
    Request,
    /// keyplex chooses (PallyCon's dialect): the request's kids are labels that tie
    /// `DRMSystem`s and usage rules to a key; the slot (content, track type, period) is
    /// the identity.
    Server,
}

/// What a `DRMSystem` of the answer holds.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Fill {
    /// What the `DRMSystem` asks for, by its empty elements (DASH-IF CPIX, SPEKE). One
    /// that asks for nothing gets every form its DRM has. An element the DRM cannot have
    /// is left empty, as AWS's reference server does, and the rest is answered.
    AsAsked,
    /// PallyCon's dialect: every form the DRM has in that API version, whatever the
    /// request asks for (the guide's samples answer elements they did not ask for and
    /// leave out what the DRM lacks); `ContentProtectionData` is the pssh box's data
    /// without the box header.
    Pallycon(PallyconVersion),
}

/// The two versions of PallyCon's CPIX API (`/v1/…`, `/v2/…`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum PallyconVersion {
    /// `PSSH` (Widevine, PlayReady) and `URIExtXKey` (FairPlay).
    V1,
    /// V1 plus `ContentProtectionData` and the media and master `HLSSignalingData`.
    V2,
}

impl ExchangeProfile {
    pub const CPIX: Self = Self {
        content_id: ContentIdSource::ContentIdThenId,
        answer_everything_asked: false,
        kids: KidSource::Request,
        fill: Fill::AsAsked,
    };
    pub const SPEKE_V1: Self = Self {
        content_id: ContentIdSource::IdThenContentId,
        answer_everything_asked: false,
        ..Self::CPIX
    };
    pub const SPEKE_V2: Self = Self {
        content_id: ContentIdSource::ContentIdOnly,
        answer_everything_asked: true,
        ..Self::CPIX
    };
}

/// What the document asks of one `ContentKey`, resolved from its usage rules.
struct KeyPlan {
    track_type: Option<TrackType>,
    period: KeyPeriod,
}

/// Answers a parsed CPIX request: the document with keys and signaling filled in.
pub async fn exchange(
    state: &AppState,
    tenant: &Tenant,
    doc: CpixDocument,
) -> Result<CpixDocument, ApiError> {
    exchange_with(state, tenant, doc, &ExchangeProfile::CPIX).await
}

/// [`exchange`] for a profile of CPIX (SPEKE v1, SPEKE v2).
pub async fn exchange_with(
    state: &AppState,
    tenant: &Tenant,
    mut doc: CpixDocument,
    profile: &ExchangeProfile,
) -> Result<CpixDocument, ApiError> {
    // 1. Everything that can be wrong with the document is checked first.
    if let Some(CpixVersion::Other(v)) = &doc.version {
        return Err(ApiError::BadRequest(format!(
            "unsupported CPIX@version {v:?}: keyplex speaks 2.3 and 2.4"
        )));
    }
    let content_id = document_content_id(&doc, profile.content_id)?;
    doc.validate_references()
        .map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let entries = match doc.content_keys.as_deref() {
        Some(list) if !list.is_empty() => list,
        _ => {
            return Err(ApiError::BadRequest(
                "the document has no ContentKey: nothing to answer".into(),
            ));
        }
    };
    let plans = entries
        .iter()
        .map(|entry| plan_key(&doc, entry, tenant))
        .collect::<Result<Vec<_>, _>>()?;
    let schemes: HashMap<KeyId, Option<EncryptionScheme>> = entries
        .iter()
        .map(|e| (e.kid.id, e.common_encryption_scheme))
        .collect();
    // PallyCon's HLS requests name no scheme; FairPlay content is cbcs, and so is every
    // other DRM's signaling of the same HLS output.
    let unnamed_scheme = match profile.fill {
        Fill::Pallycon(_) if names_fairplay(&doc) => Some(EncryptionScheme::Cbcs),
        _ => None,
    };
    let mut systems = Vec::new();
    for drm in doc.drm_systems.iter().flatten() {
        let system = drm_system(tenant, drm)?;
        let scheme = schemes
            .get(&drm.kid.id)
            .copied()
            .flatten()
            .or(unnamed_scheme)
            .unwrap_or_else(|| signaling::default_scheme(&system));
        signaling::preflight(tenant, &system, scheme)?;
        systems.push((system, scheme));
    }
    let recipients = doc
        .delivery_data
        .iter()
        .flatten()
        .map(|d| {
            RecipientKey::from_certificate_der(&d.certificate_der)
                .map_err(|e| ApiError::BadRequest(format!("DeliveryKey certificate: {e}")))
        })
        .collect::<Result<Vec<_>, _>>()?;

    // 2. One atomic, durable store call for every key of the document.
    let server_kids = profile.kids == KidSource::Server || tenant.config.kid_override;
    let requests = entries
        .iter()
        .zip(&plans)
        .map(|(entry, plan)| key_request(server_kids, &content_id, entry, plan))
        .collect::<Result<Vec<_>, _>>()?;
    let stored = keys::resolve(state, tenant, &content_id, &requests).await?;

    // 3. Fill in the answer.
    let renames = kid_renames(entries, &stored)?;
    let by_kid: HashMap<KeyId, &ContentKey> = stored.iter().map(|k| (k.kid, k)).collect();
    rename_kids(&mut doc, &renames);
    let document_keys = if recipients.is_empty() {
        None
    } else {
        Some(DocumentKeys::generate()?)
    };
    for (entry, key) in doc.content_keys.iter_mut().flatten().zip(&stored) {
        entry.explicit_iv = Some(key.iv);
        entry.value = Some(match &document_keys {
            None => KeyValue::Plain(key.key.clone()),
            Some(dk) => {
                let enc = dk.encrypt_content_key(&key.key)?;
                KeyValue::Encrypted {
                    cipher_value: enc.cipher_value,
                    value_mac: enc.value_mac,
                }
            }
        });
    }
    if let Some(dk) = &document_keys {
        for (delivery, recipient) in doc.delivery_data.iter_mut().flatten().zip(&recipients) {
            let wrapped = dk.wrap_for(recipient)?;
            delivery.wrapped = Some(keyplex_cpix::model::WrappedDeliveryKeys {
                document_key_cipher: wrapped.document_key_cipher,
                mac_key_cipher: wrapped.mac_key_cipher,
            });
        }
    }
    let version = doc.version.clone();
    for (drm, (system, scheme)) in doc.drm_systems.iter_mut().flatten().zip(systems) {
        let key = by_kid.get(&drm.kid.id).ok_or_else(|| {
            ApiError::Internal(format!("no stored key for DRMSystem kid {}", drm.kid.id))
        })?;
        match profile.fill {
            Fill::AsAsked => {
                let signal = signaling::entry(tenant, &system, key, scheme, wanted_forms(drm))?;
                if profile.answer_everything_asked
                    && !asked_nothing(drm)
                    && signal.signal.pssh.is_some()
                {
                    drm.pssh.get_or_insert_with(String::new);
                }
                fill_drm_system(drm, &signal, version.as_ref());
            }
            Fill::Pallycon(api) => {
                let signal = signaling::entry(tenant, &system, key, scheme, SignalForms::ALL)?;
                fill_pallycon(drm, &signal, api);
            }
        }
    }
    Ok(doc)
}

fn names_fairplay(doc: &CpixDocument) -> bool {
    doc.drm_systems.iter().flatten().any(|d| {
        matches!(
            DrmSystem::from_system_id(&uuid::Uuid::from_bytes(d.system_id.uuid)),
            Some(DrmSystem::FairPlay | DrmSystem::FairPlayLegacy)
        )
    })
}

/// The content id: `CPIX@contentId` (CPIX 2.3+, SPEKE v2) and/or `CPIX@id` (SPEKE v1 and many
/// packagers), in the order the profile says.
fn document_content_id(doc: &CpixDocument, source: ContentIdSource) -> Result<ContentId, ApiError> {
    let content_id = doc.content_id.as_deref().filter(|s| !s.is_empty());
    let id = doc.id.as_deref().filter(|s| !s.is_empty());
    let raw = match source {
        ContentIdSource::ContentIdThenId => content_id.or(id),
        ContentIdSource::IdThenContentId => id.or(content_id),
        ContentIdSource::ContentIdOnly => content_id,
    }
    .ok_or_else(|| {
        ApiError::BadRequest(match source {
            ContentIdSource::ContentIdOnly => "Missing CPIX@contentId".into(),
            _ => "the document has no content id: set CPIX@contentId or CPIX@id".into(),
        })
    })?;
    ContentId::parse(raw).map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// The system a `DRMSystem` names: one the tenant defined, else one keyplex builds in.
fn drm_system(tenant: &Tenant, drm: &DrmSystemEntry) -> Result<DrmIdentity, ApiError> {
    tenant
        .drm_systems
        .resolve(&uuid::Uuid::from_bytes(drm.system_id.uuid))
        .ok_or_else(|| {
            ApiError::BadRequest(format!(
                "unknown DRM system id {}",
                keyplex_types::truncate_for_message(&drm.system_id.as_written)
            ))
        })
}

/// Track type, key period and scheme of a key, from the rules that name it.
fn plan_key(
    doc: &CpixDocument,
    entry: &ContentKeyEntry,
    tenant: &Tenant,
) -> Result<KeyPlan, ApiError> {
    let rules: Vec<&UsageRule> = doc
        .usage_rules
        .iter()
        .flatten()
        .filter(|r| r.kid.id == entry.kid.id)
        .collect();
    for rule in &rules {
        if let Some(unknown) = rule.unknown_children.first() {
            return Err(ApiError::BadRequest(format!(
                "ContentKeyUsageRule for kid {} has a filter keyplex does not understand ({}); CPIX forbids mapping its key",
                rule.kid.as_written,
                keyplex_types::truncate_for_message(unknown)
            )));
        }
    }
    let track_type = rules
        .iter()
        .find_map(|r| rule_track_type(r).transpose())
        .transpose()?;
    let mut period = KeyPeriod::Vod;
    if let Some(period_id) = rules
        .iter()
        .flat_map(|r| r.key_period_filters.iter())
        .map(|f| &f.period_id)
        .next()
    {
        let p = doc
            .periods
            .iter()
            .flatten()
            .find(|p| p.id.as_deref() == Some(period_id.as_str()))
            .ok_or_else(|| {
                ApiError::BadRequest(format!(
                    "KeyPeriodFilter names unknown period {period_id:?}"
                ))
            })?;
        period = match (p.index, &p.start, tenant.config.crypto_period_seconds) {
            // CPIX period indexes are 32-bit (they wrap at MAX_UINT32), as are Widevine's.
            (Some(i), _, _) => KeyPeriod::from_index(i).map_err(|_| {
                ApiError::BadRequest(format!(
                    "ContentKeyPeriod {period_id:?} @index {i} is larger than {}",
                    KeyPeriod::MAX_INDEX
                ))
            })?,
            // SPEKE v2.1 / CPIX 2.4 live periods by time: the tenant's period length when it
            // rotates by time (the same periods as the NAGRA and Widevine APIs), else the
            // period is named by its start (a key per distinct start).
            (None, Some(start), secs) => {
                let t = time::OffsetDateTime::parse(
                    start,
                    &time::format_description::well_known::Rfc3339,
                )
                .map_err(|_| {
                    ApiError::BadRequest(format!(
                        "ContentKeyPeriod@start {start:?} is not an xs:dateTime"
                    ))
                })?;
                KeyPeriod::for_time(t.unix_timestamp(), secs.unwrap_or(1))
            }
            // A period without index or start (CPIX 2.4 VOD offsets): the key's period is
            // not needed where the packager names the kid; where keyplex chooses, keys of
            // one track type then share a slot, which kid_renames reports.
            (None, None, _) => KeyPeriod::Vod,
        };
    }
    Ok(KeyPlan { track_type, period })
}

/// `@intendedTrackType`, or else what the filters say (Shaka Packager's pixel buckets).
fn rule_track_type(rule: &UsageRule) -> Result<Option<TrackType>, ApiError> {
    if let Some(t) = rule
        .intended_track_type
        .as_deref()
        .filter(|t| !t.is_empty())
    {
        return TrackType::parse(t)
            .map(Some)
            .map_err(|e| ApiError::BadRequest(e.to_string()));
    }
    let derived = match (rule.video_filters.first(), rule.audio_filters.is_empty()) {
        (Some(_), false) => TrackType::ALL,
        (Some(v), true) => video_bucket(v),
        (None, false) => TrackType::AUDIO,
        (None, true) => return Ok(None),
    };
    TrackType::parse(derived)
        .map(Some)
        .map_err(|e| ApiError::BadRequest(e.to_string()))
}

/// Pixel-count buckets of Shaka Packager's defaults (`--max_sd_pixels` 442368,
/// `--max_hd_pixels` 2073600, `--max_uhd1_pixels` 8847360).
fn video_bucket(v: &VideoFilter) -> &'static str {
    let Some(pixels) = v.max_pixels.or(v.min_pixels) else {
        return "VIDEO";
    };
    match pixels {
        0..=442_368 => TrackType::SD,
        442_369..=2_073_600 => TrackType::HD,
        2_073_601..=8_847_360 => TrackType::UHD1,
        _ => TrackType::UHD2,
    }
}

fn key_request(
    server_kids: bool,
    content_id: &ContentId,
    entry: &ContentKeyEntry,
    plan: &KeyPlan,
) -> Result<keyplex_store::KeyRequest, ApiError> {
    let supplied_key = match &entry.value {
        None => None,
        Some(KeyValue::Plain(k)) => Some(k.clone()),
        Some(KeyValue::Encrypted { .. }) => {
            return Err(ApiError::BadRequest(format!(
                "ContentKey {} carries an encrypted value: send packager-supplied keys as PlainValue over TLS",
                entry.kid.as_written
            )));
        }
    };
    if server_kids && supplied_key.is_none() {
        let slot = KeySlot {
            content_id: content_id.clone(),
            track_type: plan.track_type.clone().unwrap_or_else(TrackType::all),
            period: plan.period,
        };
        return keys::by_slot(slot);
    }
    keys::by_kid(
        content_id,
        entry.kid.id,
        supplied_key,
        entry.explicit_iv,
        plan.track_type.clone(),
        plan.period,
    )
}

/// With kid override, stored kids may differ from the requested ones. Two keys of one
/// document must not collapse into one (the answer would name a kid twice).
fn kid_renames(
    entries: &[ContentKeyEntry],
    stored: &[ContentKey],
) -> Result<HashMap<KeyId, KeyId>, ApiError> {
    let mut renames = HashMap::new();
    let mut seen = HashMap::new();
    for (entry, key) in entries.iter().zip(stored) {
        if let Some(other) = seen.insert(key.kid, entry.kid.id) {
            return Err(ApiError::BadRequest(format!(
                "ContentKeys {other} and {} resolve to the same track type and key period; add ContentKeyUsageRules that tell them apart",
                entry.kid.id
            )));
        }
        if key.kid != entry.kid.id {
            renames.insert(entry.kid.id, key.kid);
        }
    }
    Ok(renames)
}

fn rename_kids(doc: &mut CpixDocument, renames: &HashMap<KeyId, KeyId>) {
    if renames.is_empty() {
        return;
    }
    let rename = |kid: &mut Kid| {
        if let Some(new) = renames.get(&kid.id) {
            *kid = Kid::new(*new);
        }
    };
    for e in doc.content_keys.iter_mut().flatten() {
        rename(&mut e.kid);
    }
    for d in doc.drm_systems.iter_mut().flatten() {
        rename(&mut d.kid);
    }
    for r in doc.usage_rules.iter_mut().flatten() {
        rename(&mut r.kid);
    }
}

/// The signaling forms a `DRMSystem` asks for (all of them when it names none).
fn wanted_forms(drm: &DrmSystemEntry) -> SignalForms {
    if asked_nothing(drm) {
        return SignalForms::ALL;
    }
    let ext = |names: &[&str]| {
        drm.extensions
            .iter()
            .any(|e| names.contains(&e.local_name.as_str()))
    };
    SignalForms {
        dash: drm.content_protection_data.is_some(),
        hls: !drm.hls_signaling.is_empty()
            || drm.uri_ext_x_key.is_some()
            || ext(&["KeyFormat", "KeyFormatVersions"]),
        smooth: drm.smooth_streaming.is_some() || ext(&["ProtectionHeader"]),
    }
}

/// A `DRMSystem` that names no output: it gets every form of signaling its DRM has.
fn asked_nothing(drm: &DrmSystemEntry) -> bool {
    drm.pssh.is_none()
        && drm.content_protection_data.is_none()
        && drm.uri_ext_x_key.is_none()
        && drm.hls_signaling.is_empty()
        && drm.smooth_streaming.is_none()
        && drm.extensions.is_empty()
}

/// Fills what a `DRMSystem` asked for. A `DRMSystem` that asks for nothing gets everything
/// its DRM has; an element asked for that the DRM does not have (e.g. `PSSH` for FairPlay,
/// which MediaPackage sends and expects back) stays in the answer, empty, as AWS's
/// reference server answers it: never a wrong value, and nothing the client asked for is
/// missing from the document it gets back.
fn fill_drm_system(drm: &mut DrmSystemEntry, entry: &SignalEntry, version: Option<&CpixVersion>) {
    let (s, b64) = (&entry.signal, &entry.base64);
    let is_v24 = matches!(version, Some(CpixVersion::V2_4));
    if asked_nothing(drm) {
        drm.pssh = s.pssh.as_ref().map(|_| String::new());
        drm.content_protection_data = s.content_protection_data.as_ref().map(|_| String::new());
        drm.smooth_streaming = s.smooth_streaming_header.as_ref().map(|_| String::new());
        if !is_v24
            && s.hls_key_uri.is_some()
            && matches!(
                s.system,
                Some(DrmSystem::FairPlay | DrmSystem::FairPlayLegacy)
            )
        {
            drm.uri_ext_x_key = Some(String::new());
        }
        if s.hls_media.is_some() {
            let master = if is_v24 {
                Playlist::MultiVariant
            } else {
                Playlist::Master
            };
            drm.hls_signaling = vec![
                HlsSignaling {
                    playlist: Some(Playlist::Media),
                    value: String::new(),
                },
                HlsSignaling {
                    playlist: Some(master),
                    value: String::new(),
                },
            ];
        }
    }
    let answer = |asked: &mut Option<String>, value: &Option<String>| {
        if let Some(text) = asked {
            value.as_deref().unwrap_or_default().clone_into(text);
        }
    };
    answer(&mut drm.pssh, &b64.pssh);
    answer(
        &mut drm.content_protection_data,
        &b64.content_protection_data,
    );
    answer(&mut drm.uri_ext_x_key, &b64.hls_key_uri);
    answer(&mut drm.smooth_streaming, &s.smooth_streaming_header);
    for h in &mut drm.hls_signaling {
        let line = match h.playlist {
            Some(Playlist::Master | Playlist::MultiVariant) => &b64.hls_master,
            Some(Playlist::Media) | None => &b64.hls_media,
        };
        line.as_deref().unwrap_or_default().clone_into(&mut h.value);
    }
    // SPEKE v1 asks for HLS attributes and the MSS header with its own elements.
    for ext in &mut drm.extensions {
        let value = match ext.local_name.as_str() {
            "KeyFormat" => &b64.hls_keyformat,
            "KeyFormatVersions" => &b64.hls_keyformatversions,
            "ProtectionHeader" => &s.smooth_streaming_header,
            _ => continue,
        };
        value
            .as_deref()
            .unwrap_or_default()
            .clone_into(&mut ext.text);
    }
}

/// PallyCon's answer for one `DRMSystem` ([`Fill::Pallycon`]): every form its DRM has in
/// that version of the API, whatever was asked (as the guide's samples answer). Its
/// `ContentProtectionData` is the pssh box's data without the box header (the guide's
/// "pssh_payload_only"), not the DASH-IF descriptor XML; media `HLSSignalingData` has no
/// `playlist` attribute and the master one `playlist="master"`, as in the guide.
fn fill_pallycon(drm: &mut DrmSystemEntry, entry: &SignalEntry, api: PallyconVersion) {
    use base64::Engine as _;
    let (s, b64) = (&entry.signal, &entry.base64);
    drm.pssh.clone_from(&b64.pssh);
    // The key URI of FairPlay (`skd://…`) and of identity keys (AES-128's key URL); a data
    // URI holding a pssh box is not what PallyCon clients expect here.
    drm.uri_ext_x_key = match s.system {
        Some(
            DrmSystem::FairPlay
            | DrmSystem::FairPlayLegacy
            | DrmSystem::ClearKeyAes128
            | DrmSystem::AwsHlsAes128
            | DrmSystem::ClearKeySampleAes,
        ) => b64.hls_key_uri.clone(),
        _ => None,
    };
    drm.content_protection_data = None;
    drm.hls_signaling.clear();
    drm.smooth_streaming = None;
    drm.extensions.clear();
    if api == PallyconVersion::V2 {
        drm.content_protection_data = s.pssh.as_deref().and_then(|bytes| {
            keyplex_drm::PsshBox::parse(bytes)
                .ok()
                .map(|(pssh, _)| base64::engine::general_purpose::STANDARD.encode(&pssh.data))
        });
        let playlists = [
            (None, &b64.hls_media),
            (Some(Playlist::Master), &b64.hls_master),
        ];
        drm.hls_signaling = playlists
            .into_iter()
            .filter_map(|(playlist, line)| {
                line.clone().map(|value| HlsSignaling { playlist, value })
            })
            .collect();
    }
}
