//! NAGRA-style key-and-signalization JSON APIs (the "NAGRA Encoder KSS" interface that ATEME,
//! Broadpeak, Vecima and others speak): `POST /{tenant}/cks-ws-keyAndSignalization/key` and
//! `POST /{tenant}/cks-ws-keyAndSignalization/cmaf` (`shared/seeds/001_…`).
//!
//! keyplex chooses the key id: the identity is the slot (content = `drmContentId`, track
//! type `ALL`, key period), shared with GET-style CPIX, the Widevine API and CPIX/SPEKE with
//! kid override. The period is VOD unless the tenant sets `crypto_period_seconds`; then the
//! request's `scheduledKey.timestamp` (default: now) picks it, so a future timestamp
//! pre-delivers the key a request made at that time will get.
//!
//! `/key` signals what the streaming mode needs (DASH: cenc, HLS: cbcs; EMI 16426 = cbcs for
//! both). `/cmaf` enforces the table of section 3 of the NAGRA document: CBCS only (EMI 16426
//! or none); no streaming mode → FairPlay, PlayReady, PRM, Widevine (HLS signaling for
//! FairPlay/PRM/Widevine, DASH for PlayReady/PRM/Widevine); HLS → FairPlay, PRM, Widevine;
//! DASH → PRM, PlayReady, Widevine; anything else is rejected.
//!
//! Errors answer `{"status": CODE, "errorMessage": …}` ([`NagraJson`], [`error_response`]); the
//! codes are the `STATUS_*` constants below. Everything is checked before the store is asked, so a
//! rejected request stores nothing.

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_drm::define::DrmIdentity;
use keyplex_drm::signal::{DrmSignaling, SignalForms};
use keyplex_drm::system::DrmSystem;
use keyplex_types::{
    ContentId, ContentKey, ContentKeyValue, EncryptionScheme, Iv, KeyId, KeyPeriod, KeySlot,
    TrackType,
};
use serde_json::value::RawValue;
use time::OffsetDateTime;

use crate::http::error::ApiError;
use crate::keys;
use crate::signaling;
use crate::state::{AppState, Tenant};

/// `status` of a successful answer.
pub const STATUS_OK: &str = "OK";
/// 400: the body is not a valid request (JSON, missing fields, bad ids, bad base64…).
pub const STATUS_INVALID_REQUEST: &str = "INVALID_REQUEST";
/// 400: a DRM system id keyplex does not know, one outside the set of the streaming mode
/// (CMAF table), or one with no signaling for that mode.
pub const STATUS_UNSUPPORTED_DRM: &str = "UNSUPPORTED_DRM";
/// 400: `/cmaf` with an EMI other than 16426 (CBCS).
pub const STATUS_UNSUPPORTED_EMI: &str = "UNSUPPORTED_EMI";
/// 400: `scheduledKey.timestamp` further than the tenant's `max_key_lead_days` from now.
pub const STATUS_TIMESTAMP_OUT_OF_RANGE: &str = "TIMESTAMP_OUT_OF_RANGE";
// The others come from the HTTP status (NagraJson::default_code): UNAUTHORIZED (401),
// FORBIDDEN (403), NOT_FOUND (404, unknown tenant), KEY_CONFLICT (409), REQUEST_TOO_LARGE
// (413), SERVICE_UNAVAILABLE (503), INTERNAL_ERROR (500).

/// The NAGRA Encryption Method Indicator for CBCS (0x402A).
pub const EMI_CBCS: u32 = 16426;

// ---- Errors ----

/// This interface's error format, for the route table: [`NagraJson`] with the code that
/// follows the HTTP status.
pub fn error_response(error: ApiError) -> Response {
    NagraJson::from(error).into_response()
}

/// Renders an [`ApiError`] in the NAGRA key-and-signalization shape (`/cks-ws-keyAndSignalization/…`):
/// `{"status": "<CODE>", "errorMessage": "<message>"}` with the HTTP status of the error, no
/// `contentKey` and no `drmSignalization`. `code` is the machine-readable status; by default
/// it follows the HTTP status ([`NagraJson::default_code`]), and the interface may name a
/// more precise one (e.g. `UNSUPPORTED_DRM`, `UNSUPPORTED_EMI`).
#[derive(Debug)]
pub struct NagraJson {
    pub error: ApiError,
    pub code: &'static str,
}

impl NagraJson {
    pub fn new(error: ApiError, code: &'static str) -> Self {
        Self { error, code }
    }

    /// The `status` code for an error that has no more precise one.
    pub fn default_code(error: &ApiError) -> &'static str {
        match error {
            ApiError::BadRequest(_) | ApiError::Unprocessable(_) => "INVALID_REQUEST",
            ApiError::Unauthorized(_) => "UNAUTHORIZED",
            ApiError::Forbidden(_) => "FORBIDDEN",
            ApiError::NotFound(_) => "NOT_FOUND",
            ApiError::Conflict(_) => "KEY_CONFLICT",
            ApiError::PayloadTooLarge { .. } => "REQUEST_TOO_LARGE",
            ApiError::Unavailable { .. } | ApiError::StoreBusy { .. } => "SERVICE_UNAVAILABLE",
            ApiError::TooManyRequests { .. } => "TOO_MANY_REQUESTS",
            ApiError::RequestTimeout { .. } => "REQUEST_TIMEOUT",
            ApiError::Deadline { .. } => "SERVICE_UNAVAILABLE",
            ApiError::Internal(_) => "INTERNAL_ERROR",
            ApiError::BadGateway(_) => "BAD_GATEWAY",
        }
    }
}

impl From<ApiError> for NagraJson {
    fn from(error: ApiError) -> Self {
        let code = Self::default_code(&error);
        Self { error, code }
    }
}

/// The body of a NAGRA-style error, `application/json`.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"status": "UNSUPPORTED_DRM",
    "errorMessage": "unknown DRM system id 00000000-0000-0000-0000-000000000000 in drmList"}))]
pub struct NagraError {
    /// A machine-readable code: `INVALID_REQUEST`, `UNSUPPORTED_DRM`, `UNSUPPORTED_EMI`,
    /// `TIMESTAMP_OUT_OF_RANGE`, `UNAUTHORIZED`, `FORBIDDEN`, `NOT_FOUND`, `KEY_CONFLICT`,
    /// `REQUEST_TOO_LARGE`, `REQUEST_TIMEOUT`, `TOO_MANY_REQUESTS`, `SERVICE_UNAVAILABLE`, `INTERNAL_ERROR`.
    pub status: &'static str,
    /// What is wrong, for a person.
    pub error_message: String,
}

impl IntoResponse for NagraJson {
    fn into_response(self) -> Response {
        let err = self.error;
        err.log();
        let body = NagraError {
            status: self.code,
            error_message: err.client_message(),
        };
        let response = (
            err.status(),
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        err.with_auth_header(response)
    }
}

/// `POST /{tenant}/cks-ws-keyAndSignalization/key`.
#[utoipa::path(
    post,
    path = "/{tenant}/cks-ws-keyAndSignalization/key",
    operation_id = "nagra_key",
    tag = "packager",
    summary = "NAGRA-style key and signalization",
    description = "One key for the content (`drmContent.drmContentId`; keyplex chooses the key id \
        unless `scheduledKey` supplies it) with the signaling of each DRM of `drmList` (default: \
        every DRM keyplex can signal for the streaming mode). DASH is signaled with cenc, HLS with \
        cbcs; EMI 16426 asks for cbcs everywhere.",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(content = wire::Request, content_type = "application/json"),
    responses(
        (status = 200, description = "The key (unless the packager supplied it) and the DRM signaling, `status` `OK`",
            body = wire::Response, content_type = "application/json"),
        (status = 400, description = "`INVALID_REQUEST`, `UNSUPPORTED_DRM`, `UNSUPPORTED_EMI` or `TIMESTAMP_OUT_OF_RANGE`", body = NagraError),
        (status = 401, description = "`UNAUTHORIZED`: no valid packager credentials", body = NagraError),
        (status = 403, description = "`FORBIDDEN`: another tenant's credentials, or a disabled tenant", body = NagraError),
        (status = 404, description = "`NOT_FOUND`: unknown tenant", body = NagraError),
        (status = 409, description = "`KEY_CONFLICT`: a supplied key id exists with another key", body = NagraError),
        (status = 413, description = "`REQUEST_TOO_LARGE`", body = NagraError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the key store is unavailable", body = NagraError),
    ),
    security(("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = [])),
)]
pub async fn post_key(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, NagraJson> {
    handle(Api::Key, &state, &tenant, &headers, body).await
}

/// `POST /{tenant}/cks-ws-keyAndSignalization/cmaf`.
#[utoipa::path(
    post,
    path = "/{tenant}/cks-ws-keyAndSignalization/cmaf",
    operation_id = "nagra_cmaf",
    tag = "packager",
    summary = "NAGRA-style key and CMAF (CBCS) signalization",
    description = "As `/key`, with the CMAF table enforced: CBCS only (EMI 16426 or none); \
        no streaming mode: FairPlay, PlayReady, PRM, Widevine; HLS: FairPlay, PRM, Widevine; \
        DASH: PRM, PlayReady, Widevine.",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(content = wire::Request, content_type = "application/json"),
    responses(
        (status = 200, description = "The key (unless the packager supplied it) and the DRM signaling, `status` `OK`",
            body = wire::Response, content_type = "application/json"),
        (status = 400, description = "`INVALID_REQUEST`, `UNSUPPORTED_DRM`, `UNSUPPORTED_EMI` or `TIMESTAMP_OUT_OF_RANGE`", body = NagraError),
        (status = 401, description = "`UNAUTHORIZED`: no valid packager credentials", body = NagraError),
        (status = 403, description = "`FORBIDDEN`: another tenant's credentials, or a disabled tenant", body = NagraError),
        (status = 404, description = "`NOT_FOUND`: unknown tenant", body = NagraError),
        (status = 409, description = "`KEY_CONFLICT`: a supplied key id exists with another key", body = NagraError),
        (status = 413, description = "`REQUEST_TOO_LARGE`", body = NagraError),
        (status = 503, description = "`SERVICE_UNAVAILABLE`: the key store is unavailable", body = NagraError),
    ),
    security(("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = [])),
)]
pub async fn post_cmaf(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, NagraJson> {
    handle(Api::Cmaf, &state, &tenant, &headers, body).await
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum Api {
    Key,
    Cmaf,
}

async fn handle(
    api: Api,
    state: &AppState,
    tenant: &str,
    headers: &HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, NagraJson> {
    let tenant = state.tenant(tenant)?;
    let tenant = &*tenant;
    state.authenticate_packager(tenant, headers)?;
    let body = read_body(state, body)?;
    // 1. Everything that can be wrong is checked before a key exists.
    let Prepared {
        request,
        plan,
        key_request,
    } = prepare(api, tenant, &body, OffsetDateTime::now_utc())?;

    // 2. One atomic, durable store call.
    let stored = keys::resolve(state, tenant, &request.content_id, &[key_request]).await?;
    let key = stored
        .first()
        .ok_or_else(|| ApiError::Internal("the store answered no key for one request".into()))?;

    // 3. The answer.
    let signals = plan
        .iter()
        .map(|want| signalization(tenant, key, want))
        .collect::<Result<Vec<_>, _>>()?;
    let content_key = match &request.supplied {
        // Packager-supplied keys are not echoed (NAGRA: "omitted … if it was provided in the
        // request"); an IV keyplex generated for it is returned, since the packager needs it.
        Some(s) if s.iv.is_some() => None,
        supplied => Some(AnsweredKey {
            kid: key.kid,
            key: supplied.is_none().then_some(&key.key),
            iv: &key.iv,
        }),
    };
    let texts: Vec<SignalTexts<'_>> = signals.iter().map(Signalization::texts).collect();
    let json = answer_json(content_key.as_ref(), &texts);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        crate::http::body::secret(json),
    )
        .into_response())
}

/// The content key of an answer: its id and IV, and its value unless the packager supplied
/// it.
struct AnsweredKey<'a> {
    kid: KeyId,
    key: Option<&'a ContentKeyValue>,
    iv: &'a Iv,
}

/// One `drmSignalization` entry of an answer: the signal cache's entries it is written from.
struct Signalization {
    system_id: uuid::Uuid,
    dash: Option<Arc<signaling::SignalEntry>>,
    hls: Option<Arc<signaling::SignalEntry>>,
}

impl Signalization {
    fn texts(&self) -> SignalTexts<'_> {
        let dash = self.dash.as_ref().map(|s| &s.json);
        let hls = self.hls.as_ref().map(|s| &s.json);
        SignalTexts {
            system_id: self.system_id,
            pssh: dash.and_then(|j| j.pssh.as_deref()),
            content_protection: dash.and_then(|j| j.content_protection_element.as_deref()),
            key_uri: hls.and_then(|j| j.hls_key_uri.as_deref()),
            ext_x_key: hls.and_then(|j| j.hls_media.as_deref()),
        }
    }
}

/// A `drmSignalization` entry's members: JSON string literals, escaped once in the signal
/// cache (`signaling::JsonTexts`).
struct SignalTexts<'a> {
    system_id: uuid::Uuid,
    pssh: Option<&'a RawValue>,
    content_protection: Option<&'a RawValue>,
    key_uri: Option<&'a RawValue>,
    ext_x_key: Option<&'a RawValue>,
}

impl SignalTexts<'_> {
    /// The optional members in `wire::DrmSignalization`'s order, with their JSON names.
    fn members(&self) -> [(&'static str, Option<&RawValue>); 4] {
        [
            ("pssh", self.pssh),
            ("contentProtection", self.content_protection),
            ("keyUri", self.key_uri),
            ("extXKey", self.ext_x_key),
        ]
    }
}

/// The room [`answer_json`] needs: everything but the texts is bounded (a kid, a key and an
/// IV in base64, member names, punctuation).
fn answer_capacity(signals: &[SignalTexts<'_>]) -> usize {
    let texts: usize = signals
        .iter()
        .flat_map(SignalTexts::members)
        .map(|(name, text)| text.map_or(0, |t| name.len() + t.get().len() + 4))
        .sum();
    256 + signals.len() * 64 + texts
}

/// The 200 answer's JSON: `wire::Response` as serde_json writes it (a test holds it to
/// that), written into one buffer sized up front. The key's base64 goes straight into the
/// buffer [`crate::http::body::secret`] wipes: before, it was a `String` of its own and
/// serde's output buffer grew, both freed without being wiped. Every text is base64, a UUID
/// or a literal escaped once in the signal cache, so serde's per-byte escape scan (5 % of a
/// request) has nothing to do.
fn answer_json(key: Option<&AnsweredKey<'_>>, signals: &[SignalTexts<'_>]) -> String {
    let mut out = String::with_capacity(answer_capacity(signals));
    let mut uuid = [0u8; uuid::fmt::Hyphenated::LENGTH];
    out.push_str(r#"{"status":""#);
    out.push_str(STATUS_OK);
    out.push('"');
    if let Some(key) = key {
        out.push_str(r#","contentKey":{"keyId":""#);
        out.push_str(key.kid.uuid().hyphenated().encode_lower(&mut uuid));
        out.push('"');
        if let Some(value) = key.key {
            out.push_str(r#","keyValue":""#);
            B64.encode_string(value.expose(), &mut out);
            out.push('"');
        }
        out.push_str(r#","iv":""#);
        B64.encode_string(key.iv.as_bytes(), &mut out);
        out.push_str(r#""}"#);
    }
    out.push_str(r#","drmSignalization":["#);
    for (i, signal) in signals.iter().enumerate() {
        if i > 0 {
            out.push(',');
        }
        out.push_str(r#"{"systemId":""#);
        out.push_str(signal.system_id.hyphenated().encode_lower(&mut uuid));
        out.push('"');
        for (name, text) in signal.members() {
            if let Some(text) = text {
                out.push_str(",\"");
                out.push_str(name);
                out.push_str("\":");
                out.push_str(text.get());
            }
        }
        out.push('}');
    }
    out.push_str("]}");
    out
}

/// A request that passed every check `handle` makes before the store is asked.
struct Prepared {
    request: Request,
    plan: Vec<Wanted>,
    key_request: keyplex_store::KeyRequest,
}

/// The body parsed and checked against the tenant: the JSON, the typed request, the
/// signaling plan, the key period and the key identity. Reads nothing from the store.
fn prepare(
    api: Api,
    tenant: &Tenant,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<Prepared, NagraJson> {
    let wire: wire::Request = serde_json::from_slice(body).map_err(|e| {
        invalid(format!(
            "the body is not a NAGRA key-and-signalization request: {e}"
        ))
    })?;
    let request = Request::from_wire(wire)?;
    let plan = signaling_plan(api, tenant, &request)?;
    let period = key_period(tenant, request.timestamp, now)?;
    let key_request = match &request.supplied {
        // NAGRA: a key the encryptor provides is taken "as is and the key rotation mechanism
        // will not be applied": it is stored under its own kid, bound to no slot, so another
        // supplied key for the same content (the next live period) is fine, and the same kid
        // with another value is a conflict.
        Some(s) => keys::by_kid(
            &request.content_id,
            s.kid,
            Some(s.key.clone()),
            s.iv,
            Some(TrackType::all()),
            period,
        )?,
        None => keys::by_slot(KeySlot {
            content_id: request.content_id.clone(),
            track_type: TrackType::all(),
            period,
        })?,
    };
    if !request.drm_metadata.is_empty() {
        // NAGRA: "for future use … usage rules and access conditions": kept in the audit
        // trail, otherwise ignored.
        crate::scope::note_detail(&format!("drmList metadata: {}", request.drm_metadata));
    }
    Ok(Prepared {
        request,
        plan,
        key_request,
    })
}

/// The checks of `POST …/key` (`cmaf = false`) or `…/cmaf` on `body`, up to the store: for
/// [`crate::fuzzing`], which must run the route's own parser.
pub(crate) fn check_request_for_fuzzing(
    cmaf: bool,
    tenant: &Tenant,
    body: &[u8],
    now: OffsetDateTime,
) -> Result<(), NagraJson> {
    let api = if cmaf { Api::Cmaf } else { Api::Key };
    prepare(api, tenant, body, now).map(|_| ())
}

fn invalid(message: String) -> NagraJson {
    NagraJson::new(ApiError::BadRequest(message), STATUS_INVALID_REQUEST)
}

fn unsupported_drm(message: String) -> NagraJson {
    NagraJson::new(ApiError::BadRequest(message), STATUS_UNSUPPORTED_DRM)
}

fn read_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, NagraJson> {
    let body = crate::http::body::read_body_bytes(state, body)?;
    Ok(crate::http::body::require_body(
        body,
        "a JSON key-and-signalization request",
    )?)
}

// ---------------------------------------------------------------------------------------------
// The request, typed

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum StreamingMode {
    Hls,
    Dash,
}

/// A packager-supplied key (`scheduledKey` with `keyId` and `keyValue`).
struct SuppliedKey {
    kid: KeyId,
    key: ContentKeyValue,
    iv: Option<Iv>,
}

struct Request {
    content_id: ContentId,
    streaming_mode: Option<StreamingMode>,
    emi: Option<u32>,
    supplied: Option<SuppliedKey>,
    timestamp: Option<OffsetDateTime>,
    /// `None` (or an empty list): the defaults of the API and mode. System ids: which
    /// system each names (the tenant's definition or a built-in one) is decided with the
    /// tenant ([`requested_systems`]).
    drm_list: Option<Vec<uuid::Uuid>>,
    /// The `metadata` of `drmList` entries given as objects, as compact JSON by system id
    /// (empty when none has any).
    drm_metadata: String,
}

impl Request {
    fn from_wire(w: wire::Request) -> Result<Self, NagraJson> {
        let content = w
            .drm_content
            .ok_or_else(|| invalid("drmContent is required".into()))?;
        let raw_id = content
            .drm_content_id
            .filter(|s| !s.is_empty())
            .ok_or_else(|| invalid("drmContent.drmContentId is required".into()))?;
        let content_id = ContentId::parse(&raw_id)
            .map_err(|e| invalid(format!("drmContent.drmContentId: {e}")))?;
        let profile = content.profile.ok_or_else(|| {
            invalid("drmContent.profile is required (with distributionMode)".into())
        })?;
        // Values are free text (NAGRA lists VOD/live-style modes); keyplex only needs it set.
        if profile
            .distribution_mode
            .as_deref()
            .is_none_or(|m| m.trim().is_empty())
        {
            return Err(invalid(
                "drmContent.profile.distributionMode is required".into(),
            ));
        }
        let streaming_mode = match profile.streaming_mode.as_deref().map(str::trim) {
            None | Some("") => None,
            Some(m) if m.eq_ignore_ascii_case("HLS") => Some(StreamingMode::Hls),
            Some(m) if m.eq_ignore_ascii_case("DASH") => Some(StreamingMode::Dash),
            Some(m) => {
                return Err(invalid(format!(
                    "drmContent.profile.streamingMode {:?} is not HLS or DASH (or absent)",
                    keyplex_types::truncate_for_message(m)
                )));
            }
        };
        let emi = match profile.emi {
            None => None,
            Some(wire::Emi::Number(n)) => Some(n),
            Some(wire::Emi::Text(t)) if t.trim().is_empty() => None,
            Some(wire::Emi::Text(t)) => Some(t.trim().parse::<u32>().map_err(|_| {
                invalid(format!(
                    "drmContent.profile.emi {:?} is not a number",
                    keyplex_types::truncate_for_message(&t)
                ))
            })?),
        };

        let (supplied, timestamp) = match w.scheduled_key {
            None => (None, None),
            Some(sk) => parse_scheduled_key(sk)?,
        };

        let mut metadata = serde_json::Map::new();
        let drm_list = match w.drm_list {
            None => None,
            Some(list) if list.is_empty() => None,
            Some(list) => {
                let mut systems = Vec::with_capacity(list.len());
                for entry in &list {
                    let raw = match entry {
                        wire::DrmListEntry::Id(id) => id,
                        wire::DrmListEntry::Drm(d) => {
                            if let Some(m) = d.metadata.as_ref().filter(|m| !m.is_null()) {
                                metadata.insert(d.system_id.trim().to_owned(), m.clone());
                            }
                            &d.system_id
                        }
                    };
                    let id = uuid::Uuid::parse_str(raw.trim()).map_err(|_| {
                        invalid(format!(
                            "drmList entry {:?} is not a DRM system id (UUID)",
                            keyplex_types::truncate_for_message(raw)
                        ))
                    })?;
                    if !systems.contains(&id) {
                        systems.push(id);
                    }
                }
                Some(systems)
            }
        };
        Ok(Self {
            content_id,
            streaming_mode,
            emi,
            supplied,
            timestamp,
            drm_list,
            drm_metadata: if metadata.is_empty() {
                String::new()
            } else {
                serde_json::Value::Object(metadata)
                    .to_string()
                    .chars()
                    .take(2000)
                    .collect()
            },
        })
    }
}

fn parse_scheduled_key(
    sk: wire::ScheduledKey,
) -> Result<(Option<SuppliedKey>, Option<OffsetDateTime>), NagraJson> {
    let timestamp = match sk.timestamp {
        None => None,
        Some(wire::Timestamp::Epoch(n)) => Some(epoch_time(n)?),
        Some(wire::Timestamp::Text(t)) => parse_timestamp(t.trim())?,
    };
    let nonempty = |v: Option<String>| v.filter(|s| !s.trim().is_empty());
    let (key_id, key_value, iv) = (nonempty(sk.key_id), nonempty(sk.key_value), nonempty(sk.iv));
    let supplied = match (key_id, key_value) {
        (None, None) => {
            if iv.is_some() {
                return Err(invalid(
                    "scheduledKey.iv is only accepted with keyId and keyValue".into(),
                ));
            }
            None
        }
        (Some(_), None) | (None, Some(_)) => {
            return Err(invalid(
                "scheduledKey needs both keyId and keyValue to supply a key (or neither)".into(),
            ));
        }
        (Some(key_id), Some(key_value)) => {
            let kid: KeyId = key_id
                .parse()
                .map_err(|e| invalid(format!("scheduledKey.keyId: {e}")))?;
            // Messages never repeat the value: it is key material.
            let key = B64
                .decode(key_value.trim())
                .ok()
                .and_then(|b| ContentKeyValue::from_slice(&b).ok())
                .ok_or_else(|| {
                    invalid("scheduledKey.keyValue must be 16 bytes in base64".into())
                })?;
            let iv = iv
                .map(|iv| {
                    B64.decode(iv.trim())
                        .ok()
                        .and_then(|b| Iv::from_slice(&b).ok())
                        .ok_or_else(|| invalid("scheduledKey.iv must be 16 bytes in base64".into()))
                })
                .transpose()?;
            Some(SuppliedKey { kid, key, iv })
        }
    };
    Ok((supplied, timestamp))
}

/// `scheduledKey.timestamp` as encoders write it: RFC 3339, or epoch seconds or milliseconds
/// (as a number or a string of digits). Empty means none.
fn parse_timestamp(t: &str) -> Result<Option<OffsetDateTime>, NagraJson> {
    if t.is_empty() {
        return Ok(None);
    }
    if let Ok(n) = t.parse::<i64>() {
        return epoch_time(n).map(Some);
    }
    OffsetDateTime::parse(t, &time::format_description::well_known::Rfc3339)
        .map(Some)
        .map_err(|_| {
            invalid(format!(
                "scheduledKey.timestamp {:?} is neither an RFC 3339 date-time nor epoch seconds or milliseconds",
                keyplex_types::truncate_for_message(t)
            ))
        })
}

/// Epoch seconds, or milliseconds when the number is too large to be seconds of this era
/// (10^11 s is the year 5138; 10^11 ms is 1973).
fn epoch_time(n: i64) -> Result<OffsetDateTime, NagraJson> {
    const MILLIS_FROM: i64 = 100_000_000_000;
    let nanos = if n.abs() >= MILLIS_FROM {
        i128::from(n) * 1_000_000
    } else {
        i128::from(n) * 1_000_000_000
    };
    OffsetDateTime::from_unix_timestamp_nanos(nanos)
        .map_err(|_| invalid(format!("scheduledKey.timestamp {n} is out of range")))
}

/// VOD when the tenant does not rotate keys; otherwise the period the timestamp (default
/// now) falls in, within the tenant's `max_key_lead_days` of now.
fn key_period(
    tenant: &Tenant,
    timestamp: Option<OffsetDateTime>,
    now: OffsetDateTime,
) -> Result<KeyPeriod, NagraJson> {
    let Some(period_seconds) = tenant.config.crypto_period_seconds else {
        return Ok(KeyPeriod::Vod);
    };
    let at = timestamp.unwrap_or(now);
    // Pre-delivery and catch-up windows are minutes to days; refusing the far past and future
    // keeps a buggy or hostile packager from creating keys for arbitrary periods.
    let lead = tenant.config.max_key_lead();
    if (at - now).abs() > lead {
        return Err(NagraJson::new(
            ApiError::BadRequest(format!(
                "scheduledKey.timestamp is more than {} days from now (max_key_lead_days)",
                lead.whole_days()
            )),
            STATUS_TIMESTAMP_OUT_OF_RANGE,
        ));
    }
    Ok(KeyPeriod::for_time(at.unix_timestamp(), period_seconds))
}

// ---------------------------------------------------------------------------------------------
// Which DRMs, with which signaling

/// One `drmSignalization` entry to build: DASH signaling with one scheme and/or HLS signaling
/// with another.
#[derive(Debug)]
struct Wanted {
    system: DrmIdentity,
    dash: Option<EncryptionScheme>,
    hls: Option<EncryptionScheme>,
}

/// FairPlay under either of its system ids.
fn is_fairplay(s: &DrmIdentity) -> bool {
    matches!(
        s.builtin(),
        Some(DrmSystem::FairPlay | DrmSystem::FairPlayLegacy)
    )
}

fn mode_name(mode: Option<StreamingMode>) -> &'static str {
    match mode {
        None => "no streaming mode (HLS and DASH)",
        Some(StreamingMode::Hls) => "HLS",
        Some(StreamingMode::Dash) => "DASH",
    }
}

fn signaling_plan(api: Api, tenant: &Tenant, request: &Request) -> Result<Vec<Wanted>, NagraJson> {
    let mode = request.streaming_mode;
    let wanted: Vec<Wanted> = match api {
        Api::Cmaf => cmaf_plan(mode, tenant, request)?,
        Api::Key => key_plan(mode, tenant, request)?,
    };
    // Every (system, scheme) must signal, and give the forms asked for. In a single-mode
    // request (and on /cmaf, whose table names the forms) each form asked for must exist;
    // with no mode on /key a DRM gets the forms it has.
    let strict = mode.is_some() || api == Api::Cmaf;
    let mut checked = Vec::with_capacity(wanted.len());
    for mut w in wanted {
        let dash_ok = match w.dash {
            Some(scheme) => {
                let s = probe(tenant, &w.system, scheme)?;
                s.pssh.is_some() || s.content_protection_element.is_some()
            }
            None => false,
        };
        let hls_ok = match w.hls {
            Some(scheme) => probe(tenant, &w.system, scheme)?.hls_media.is_some(),
            None => false,
        };
        let complete = if strict {
            (w.dash.is_none() || dash_ok) && (w.hls.is_none() || hls_ok)
        } else {
            dash_ok || hls_ok
        };
        if !complete {
            let missing = if w.hls.is_some() && !hls_ok {
                "HLS"
            } else {
                "DASH"
            };
            return Err(unsupported_drm(format!(
                "keyplex has no {missing} signaling for {} ({}) with {}",
                w.system,
                w.system.system_id(),
                mode_name(mode)
            )));
        }
        if !dash_ok {
            w.dash = None;
        }
        if !hls_ok {
            w.hls = None;
        }
        checked.push(w);
    }
    Ok(checked)
}

fn probe(
    tenant: &Tenant,
    system: &DrmIdentity,
    scheme: EncryptionScheme,
) -> Result<std::sync::Arc<DrmSignaling>, NagraJson> {
    signaling::probe(tenant, system, scheme).map_err(|e| match e {
        ApiError::BadRequest(m) => unsupported_drm(m),
        other => other.into(),
    })
}

/// `/cmaf`: the table of section 3, enforced.
fn cmaf_plan(
    mode: Option<StreamingMode>,
    tenant: &Tenant,
    request: &Request,
) -> Result<Vec<Wanted>, NagraJson> {
    if let Some(emi) = request.emi.filter(|e| *e != EMI_CBCS) {
        return Err(NagraJson::new(
            ApiError::BadRequest(format!(
                "EMI {emi} is not supported on /cmaf: CMAF signaling is CBCS only (EMI {EMI_CBCS}, or none)"
            )),
            STATUS_UNSUPPORTED_EMI,
        ));
    }
    let cbcs = EncryptionScheme::Cbcs;
    // (system, HLS signaling, DASH signaling) per the table; FairPlay's legacy id is FPS too.
    // A system the tenant defines is signaled like PRM: DASH, and HLS where it has it.
    let allowed = |s: &DrmIdentity| -> Option<(bool, bool)> {
        let (hls, dash) = match (s, s.builtin()) {
            (DrmIdentity::Defined(d), None) => (d.has_hls(), true),
            _ if is_fairplay(s) => (true, false),
            (_, Some(DrmSystem::PlayReady)) => (false, true),
            (_, Some(DrmSystem::NagraPrm | DrmSystem::Widevine)) => (true, true),
            _ => return None,
        };
        match mode {
            None => Some((hls, dash)),
            Some(StreamingMode::Hls) => hls.then_some((true, false)),
            Some(StreamingMode::Dash) => dash.then_some((false, true)),
        }
    };
    let defaults: &[DrmSystem] = match mode {
        None => &[
            DrmSystem::FairPlay,
            DrmSystem::PlayReady,
            DrmSystem::NagraPrm,
            DrmSystem::Widevine,
        ],
        Some(StreamingMode::Hls) => &[
            DrmSystem::FairPlay,
            DrmSystem::NagraPrm,
            DrmSystem::Widevine,
        ],
        Some(StreamingMode::Dash) => &[
            DrmSystem::NagraPrm,
            DrmSystem::PlayReady,
            DrmSystem::Widevine,
        ],
    };
    let systems = requested_systems(tenant, request, defaults)?;
    systems
        .into_iter()
        .map(|system| {
            let (hls, dash) = allowed(&system).ok_or_else(|| {
                unsupported_drm(format!(
                    "{system} ({}) is not part of CMAF signaling for {}: allowed are {}",
                    system.system_id(),
                    mode_name(mode),
                    match mode {
                        None => "FairPlay, PlayReady, PRM, Widevine",
                        Some(StreamingMode::Hls) => "FairPlay, PRM, Widevine",
                        Some(StreamingMode::Dash) => "PRM, PlayReady, Widevine",
                    }
                ))
            })?;
            Ok(Wanted {
                system,
                dash: dash.then_some(cbcs),
                hls: hls.then_some(cbcs),
            })
        })
        .collect()
}

/// The request's `drmList` (each id the tenant's definition, else a built-in system; an
/// unknown id is refused), or the mode's `defaults` (PRM among them: the rule table lists it
/// for every mode, and keyplex signals it without a template).
fn requested_systems(
    tenant: &Tenant,
    request: &Request,
    defaults: &[DrmSystem],
) -> Result<Vec<DrmIdentity>, NagraJson> {
    match &request.drm_list {
        Some(list) => list
            .iter()
            .map(|id| {
                tenant.drm_systems.resolve(id).ok_or_else(|| {
                    unsupported_drm(format!("unknown DRM system id {id} in drmList"))
                })
            })
            .collect(),
        None => Ok(defaults.iter().map(|s| DrmIdentity::BuiltIn(*s)).collect()),
    }
}

/// `/key`: DASH is cenc, HLS cbcs (FairPlay only does cbcs); EMI 16426 asks for cbcs
/// everywhere. Other EMI values are accepted and do not change the scheme (their NAGRA
/// meaning is not public). Any DRM keyplex can signal for the mode may be listed.
fn key_plan(
    mode: Option<StreamingMode>,
    tenant: &Tenant,
    request: &Request,
) -> Result<Vec<Wanted>, NagraJson> {
    let dash_scheme = if request.emi == Some(EMI_CBCS) {
        EncryptionScheme::Cbcs
    } else {
        EncryptionScheme::Cenc
    };
    let hls_scheme = EncryptionScheme::Cbcs;
    let defaults: &[DrmSystem] = match mode {
        None => &[
            DrmSystem::Widevine,
            DrmSystem::PlayReady,
            DrmSystem::FairPlay,
            DrmSystem::NagraPrm,
        ],
        Some(StreamingMode::Hls) => &[
            DrmSystem::FairPlay,
            DrmSystem::Widevine,
            DrmSystem::NagraPrm,
        ],
        Some(StreamingMode::Dash) => &[
            DrmSystem::Widevine,
            DrmSystem::PlayReady,
            DrmSystem::NagraPrm,
        ],
    };
    let systems = requested_systems(tenant, request, defaults)?;
    Ok(systems
        .into_iter()
        .map(|system| match mode {
            Some(StreamingMode::Dash) => Wanted {
                system,
                dash: Some(dash_scheme),
                hls: None,
            },
            Some(StreamingMode::Hls) => Wanted {
                system,
                dash: None,
                hls: Some(hls_scheme),
            },
            // Both: as in the CMAF table, PlayReady is signaled on the DASH side only.
            None => Wanted {
                dash: (!is_fairplay(&system)).then_some(dash_scheme),
                hls: (system.builtin() != Some(DrmSystem::PlayReady)).then_some(hls_scheme),
                system,
            },
        })
        .collect())
}

fn signalization(
    tenant: &Tenant,
    key: &ContentKey,
    want: &Wanted,
) -> Result<Signalization, ApiError> {
    let entry = |scheme| signaling::entry(tenant, &want.system, key, scheme, SignalForms::ALL);
    Ok(Signalization {
        system_id: want.system.system_id(),
        dash: want.dash.map(entry).transpose()?,
        hls: want.hls.map(entry).transpose()?,
    })
}

/// The JSON as it travels. Only [`Request::from_wire`] reads these; nothing here derives
/// `Debug`, because `keyValue` is key material.
mod wire {
    use serde::{Deserialize, Serialize};
    use serde_json::value::RawValue;

    /// A NAGRA key-and-signalization request. Fields are optional in the JSON; the ones named
    /// required in their descriptions are refused with `INVALID_REQUEST` when missing.
    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraRequest, example = json!({
        "drmContent": {"drmContentId": "movie-1",
            "profile": {"distributionMode": "VOD", "streamingMode": "DASH"}},
        "drmList": ["edef8ba9-79d6-4ace-a3c8-27dcd51d21ed"]}))]
    pub struct Request {
        /// Required.
        pub drm_content: Option<DrmContent>,
        /// A packager-supplied key (`keyId` + `keyValue`, optional `iv`) and/or the time the
        /// key is for (when the tenant rotates keys).
        pub scheduled_key: Option<ScheduledKey>,
        /// DRM system ids (UUIDs), or objects `{"systemId": …, "metadata": …}`; absent or
        /// empty: the defaults of the API and mode. Metadata is kept in the audit trail.
        #[schema(value_type = Option<Vec<DrmListEntrySchema>>)]
        pub drm_list: Option<Vec<DrmListEntry>>,
    }

    /// A `drmList` entry: the system id, or the DRM with its metadata.
    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(untagged)]
    #[schema(as = NagraDrmListEntry)]
    #[allow(dead_code)] // The OpenAPI document's shape; requests are read as `DrmListEntry`.
    pub enum DrmListEntrySchema {
        Id(String),
        Drm(Drm),
    }

    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraDrm)]
    pub struct Drm {
        pub system_id: String,
        /// "For future use" (NAGRA): usage rules and access conditions; recorded, not used.
        #[serde(default)]
        pub metadata: Option<serde_json::Value>,
    }

    /// RFC 3339 text, or epoch seconds or milliseconds (a number or a string of digits).
    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(untagged)]
    #[schema(as = NagraTimestamp)]
    #[allow(dead_code)] // The OpenAPI document's shape; requests are read as `Timestamp`.
    pub enum TimestampSchema {
        Epoch(i64),
        Text(String),
    }

    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraDrmContent)]
    pub struct DrmContent {
        /// Required: the content id (`[A-Za-z0-9_.:-]{1,200}`).
        pub drm_content_id: Option<String>,
        /// Required, with `distributionMode`.
        pub profile: Option<Profile>,
    }

    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraProfile)]
    pub struct Profile {
        /// Required, free text (e.g. `VOD`, `LIVE`).
        pub distribution_mode: Option<String>,
        /// `HLS`, `DASH`, or absent (both).
        pub streaming_mode: Option<String>,
        /// Encryption Method Indicator; 16426 = CBCS.
        #[schema(value_type = Option<EmiSchema>)]
        pub emi: Option<Emi>,
    }

    /// A number; a string of digits is tolerated.
    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(untagged)]
    #[schema(as = NagraEmi)]
    #[allow(dead_code)] // The OpenAPI document's shape; requests are read as `Emi`.
    pub enum EmiSchema {
        Number(u32),
        Text(String),
    }

    #[derive(Deserialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraScheduledKey)]
    pub struct ScheduledKey {
        /// A supplied key's id (UUID), with `keyValue`.
        pub key_id: Option<String>,
        /// A supplied key: 16 bytes, base64.
        pub key_value: Option<String>,
        /// A supplied key's IV: 16 bytes, base64 (only with `keyId` and `keyValue`).
        pub iv: Option<String>,
        /// The time whose key period is asked for (default now): RFC 3339, or epoch
        /// seconds or milliseconds.
        #[schema(value_type = Option<TimestampSchema>)]
        pub timestamp: Option<Timestamp>,
    }

    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraResponse)]
    pub struct Response {
        /// `OK`.
        pub status: &'static str,
        #[serde(skip_serializing_if = "Option::is_none")]
        pub error_message: Option<String>,
        /// Absent when the packager supplied the key with its IV.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub content_key: Option<ContentKey>,
        pub drm_signalization: Vec<DrmSignalization>,
    }

    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraContentKey)]
    pub struct ContentKey {
        /// The key id (UUID).
        pub key_id: String,
        /// The key, base64 (absent for a supplied key).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub key_value: Option<String>,
        /// The IV, base64.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub iv: Option<String>,
    }

    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(rename_all = "camelCase")]
    #[schema(as = NagraDrmSignalization)]
    pub struct DrmSignalization {
        /// The DRM system id (UUID).
        pub system_id: String,
        // The texts are JSON strings escaped once, in the signal cache (`signaling::JsonTexts`).
        /// DASH: base64 of the whole pssh box.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        pub pssh: Option<Box<RawValue>>,
        /// DASH: the `ContentProtection` element (XML text).
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        pub content_protection: Option<Box<RawValue>>,
        /// HLS: the key URI.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        pub key_uri: Option<Box<RawValue>>,
        /// HLS: the whole `#EXT-X-KEY` line.
        #[serde(skip_serializing_if = "Option::is_none")]
        #[schema(value_type = Option<String>)]
        pub ext_x_key: Option<Box<RawValue>>,
    }

    // The three fields that are one of two JSON types are read by the token's type, as
    // `widevine_api::NumberOrText` is: `#[serde(untagged)]` buffered each value and
    // formatted an error message for every variant that did not fit. (The `…Schema` types
    // above describe them in the OpenAPI document.)

    /// `scheduledKey.timestamp`: epoch seconds or milliseconds as a number, or a text (RFC
    /// 3339 or digits).
    pub enum Timestamp {
        Epoch(i64),
        Text(String),
    }

    /// `profile.emi`: a number, or a text of digits.
    pub enum Emi {
        Number(u32),
        Text(String),
    }

    /// A `drmList` entry: the system id, or the DRM with its metadata.
    pub enum DrmListEntry {
        Id(String),
        Drm(Drm),
    }

    /// A visitor that takes a text (`text`) and what else `T` accepts.
    macro_rules! text_or {
        ($t:ty, $expecting:literal, $text:path, { $($rest:item)* }) => {
            impl<'de> Deserialize<'de> for $t {
                fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
                    struct Visitor;
                    impl<'de> serde::de::Visitor<'de> for Visitor {
                        type Value = $t;
                        fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                            f.write_str($expecting)
                        }
                        fn visit_str<E>(self, v: &str) -> Result<$t, E> {
                            Ok($text(v.to_owned()))
                        }
                        fn visit_string<E>(self, v: String) -> Result<$t, E> {
                            Ok($text(v))
                        }
                        $($rest)*
                    }
                    deserializer.deserialize_any(Visitor)
                }
            }
        };
    }

    text_or!(
        Timestamp,
        "epoch seconds or milliseconds, or an RFC 3339 time",
        Timestamp::Text,
        {
            fn visit_i64<E>(self, v: i64) -> Result<Timestamp, E> {
                Ok(Timestamp::Epoch(v))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Timestamp, E> {
                i64::try_from(v)
                    .map(Timestamp::Epoch)
                    .map_err(|_| E::custom(format!("timestamp {v} out of range")))
            }
        }
    );

    text_or!(Emi, "an EMI number", Emi::Text, {
        fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Emi, E> {
            u32::try_from(v)
                .map(Emi::Number)
                .map_err(|_| E::custom(format!("emi {v} out of range")))
        }
        fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Emi, E> {
            u32::try_from(v)
                .map(Emi::Number)
                .map_err(|_| E::custom(format!("emi {v} out of range")))
        }
    });

    text_or!(
        DrmListEntry,
        "a DRM system id or an object with a systemId",
        DrmListEntry::Id,
        {
            fn visit_map<A: serde::de::MapAccess<'de>>(
                self,
                map: A,
            ) -> Result<DrmListEntry, A::Error> {
                Drm::deserialize(serde::de::value::MapAccessDeserializer::new(map))
                    .map(DrmListEntry::Drm)
            }
        }
    );
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    /// The texts of a signal cache entry, as JSON literals (escaped as the cache escapes
    /// them), with quotes, angle brackets, a backslash and non-ASCII to be escaped.
    fn literal(text: &str) -> Box<RawValue> {
        serde_json::value::to_raw_value(text).unwrap()
    }

    /// The answer as `wire::Response` through serde_json: the form `answer_json` must write.
    fn by_serde(key: Option<&AnsweredKey<'_>>, signals: &[SignalTexts<'_>]) -> String {
        let owned = |t: Option<&RawValue>| t.map(|t| t.to_owned());
        serde_json::to_string(&wire::Response {
            status: STATUS_OK,
            error_message: None,
            content_key: key.map(|k| wire::ContentKey {
                key_id: k.kid.to_string(),
                key_value: k.key.map(|v| B64.encode(v.expose())),
                iv: Some(B64.encode(k.iv.as_bytes())),
            }),
            drm_signalization: signals
                .iter()
                .map(|s| wire::DrmSignalization {
                    system_id: s.system_id.hyphenated().to_string(),
                    pssh: owned(s.pssh),
                    content_protection: owned(s.content_protection),
                    key_uri: owned(s.key_uri),
                    ext_x_key: owned(s.ext_x_key),
                })
                .collect(),
        })
        .unwrap()
    }

    #[test]
    fn two_typed_fields_are_read_by_the_token_type() {
        let read = |json: &str| serde_json::from_str::<wire::Request>(json);
        let timestamp = |json: &str| {
            read(&format!(r#"{{"scheduledKey": {{"timestamp": {json}}}}}"#))
                .map(|r| r.scheduled_key.and_then(|k| k.timestamp))
        };
        assert!(matches!(
            timestamp("1700000000"),
            Ok(Some(wire::Timestamp::Epoch(1_700_000_000)))
        ));
        assert!(matches!(
            timestamp("-5"),
            Ok(Some(wire::Timestamp::Epoch(-5)))
        ));
        assert!(
            matches!(timestamp(r#""2026-12-06T00:00:00Z""#), Ok(Some(wire::Timestamp::Text(t))) if t == "2026-12-06T00:00:00Z")
        );
        assert!(matches!(timestamp("null"), Ok(None)));
        for bad in ["18446744073709551615", "1.5", "true", "[]", "{}"] {
            assert!(timestamp(bad).is_err(), "{bad}");
        }
        let emi = |json: &str| {
            read(&format!(
                r#"{{"drmContent": {{"profile": {{"emi": {json}}}}}}}"#
            ))
            .map(|r| r.drm_content.and_then(|c| c.profile).and_then(|p| p.emi))
        };
        assert!(matches!(emi("16426"), Ok(Some(wire::Emi::Number(16426)))));
        assert!(matches!(emi(r#""16426""#), Ok(Some(wire::Emi::Text(t))) if t == "16426"));
        for bad in ["-1", "4294967296", "1.0", "false"] {
            assert!(emi(bad).is_err(), "{bad}");
        }
        let list = read(
            r#"{"drmList": ["edef8ba9-79d6-4ace-a3c8-27dcd51d21ed",
                {"systemId": "9a04f079-9840-4286-ab92-e65be0885f95", "metadata": {"a": 1}}]}"#,
        )
        .unwrap()
        .drm_list
        .unwrap();
        assert!(
            matches!(&list[0], wire::DrmListEntry::Id(id) if id == "edef8ba9-79d6-4ace-a3c8-27dcd51d21ed")
        );
        assert!(matches!(&list[1], wire::DrmListEntry::Drm(d)
            if d.system_id == "9a04f079-9840-4286-ab92-e65be0885f95" && d.metadata.is_some()));
        for bad in [
            r#"[{"metadata": {}}]"#,
            "[1]",
            "[[]]",
            r#"[{"systemId": 5}]"#,
        ] {
            assert!(read(&format!(r#"{{"drmList": {bad}}}"#)).is_err(), "{bad}");
        }
    }

    #[test]
    fn the_answer_is_serde_json_of_the_wire_response_and_never_grows() {
        let texts = [
            literal("AAAAMnBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABISEBESEzQ="),
            literal(
                r#"<ContentProtection schemeIdUri="urn:uuid:x" value="Widevine"><cenc:pssh>AA==</cenc:pssh></ContentProtection>"#,
            ),
            literal("skd://keyplex/\u{e9}\\path"),
            literal(
                "#EXT-X-KEY:METHOD=SAMPLE-AES,URI=\"data:text/plain;base64,AA==\",KEYFORMAT=\"com.apple.streamingkeydelivery\"",
            ),
        ];
        let value = ContentKeyValue::from_bytes([0xfb; 16]);
        let iv = Iv::from_bytes([0x3e; 16]);
        let kid: KeyId = "9eb4050d-e44b-4802-932e-27d75083e266".parse().unwrap();
        let keys = [
            None,
            Some(AnsweredKey {
                kid,
                key: None,
                iv: &iv,
            }),
            Some(AnsweredKey {
                kid,
                key: Some(&value),
                iv: &iv,
            }),
        ];
        let system = |n: u128| uuid::Uuid::from_u128(0xedef_8ba9_79d6_4ace_a3c8_27dc_d51d_2100 + n);
        for key in &keys {
            for count in [0usize, 1, 2, 5] {
                // Every subset of the four optional members, across the entries.
                for members in 0..16usize {
                    let signals: Vec<SignalTexts<'_>> = (0..count)
                        .map(|i| {
                            let has = |bit: usize| ((members + i) >> bit) & 1 == 1;
                            let text = |bit: usize| has(bit).then(|| &*texts[bit]);
                            SignalTexts {
                                system_id: system(i as u128),
                                pssh: text(0),
                                content_protection: text(1),
                                key_uri: text(2),
                                ext_x_key: text(3),
                            }
                        })
                        .collect();
                    let json = answer_json(key.as_ref(), &signals);
                    assert_eq!(json, by_serde(key.as_ref(), &signals));
                    // Sized up front: the buffer that holds the key never grew (a grown
                    // buffer leaves a copy behind in freed memory).
                    assert!(json.len() <= answer_capacity(&signals));
                }
            }
        }
    }
}
