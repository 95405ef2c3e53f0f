//! Widevine common-encryption key API: `POST /{tenant}/widevine/getcontentkey`, the signed
//! JSON protocol Shaka Packager speaks with `--enable_widevine_encryption` (Shaka Packager's `widevine_key_source.cc` and `request_signer.cc`).
//!
//! The packager posts `{"request": base64(JSON CommonEncryptionRequest), "signature": …,
//! "signer": …}`; keyplex answers `{"response": base64(JSON CommonEncryptionResponse)}` with
//! one key, IV and Widevine pssh per requested track type (and per crypto period when keys
//! rotate). Every error is a non-OK `status` inside that envelope (see
//! [`WidevineJson`] for why it travels in an HTTP 200).
//!
//! Authentication: a tenant with `widevine_signers` accepts only requests signed by one of
//! them (AES-256-CBC of the SHA-1 of the exact `request` bytes, compared in constant time).
//! A tenant without signers accepts its packager credentials (HTTP Basic or JWT) instead,
//! for clients that can send headers. RSA-PSS signatures (`--rsa_signing_key_path`) are not
//! supported: they need a public key per signer in the configuration.
//!
//! Key identity: keyplex chooses the key ids, so each key is the slot (content id, track
//! type, period): `Vod` without rotation, `Index(crypto_period_index)` with it. The same
//! content and track type therefore get the same key here as through NAGRA JSON, GET CPIX or
//! a `kid_override` CPIX request. The request's `content_id` bytes become the keyplex content
//! id as they are when they already are one (`[A-Za-z0-9_.:-]{1,200}`, e.g. Shaka's
//! `--content_id $(printf movie-1 | xxd -p)` is content `movie-1`), and as lower-case hex of
//! the bytes otherwise.
//!
//! `pssh_data` instead of `content_id` (Shaka's `--enable_widevine_decryption`) looks the keys
//! up by the key ids in that Widevine pssh data (or, without key ids, by its content id, as a
//! content request). Accepted and ignored: `policy` (keyplex keeps no Widevine policies),
//! `crypto_period_seconds` (periods are identified by index), `group_id`. `video_feature`
//! (e.g. `HDR`) selects separate video keys, as Widevine does: slot track type `HD_HDR` for
//! an `HD` track; audio keys are shared. Refused: `asset_id` (Widevine Classic) and
//! `enable_entitlement_license`.

use std::collections::HashSet;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use keyplex_drm::PsshBox;
use keyplex_drm::signal::SignalForms;
use keyplex_drm::system::DrmSystem;
use keyplex_drm::widevine::WidevinePsshData;
use keyplex_types::{
    ContentId, ContentKey, EncryptionScheme, KeyId, KeyPeriod, KeySlot, TrackType,
};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq as _;

use crate::http::error::ApiError;
use crate::keys;
use crate::signaling::{self, SignalEntry};
use crate::state::{AppState, Tenant};

/// Most crypto periods one request may ask for (Shaka asks for 10 at a time).
pub const MAX_CRYPTO_PERIOD_COUNT: u32 = 100;

// ---- Errors ----

/// This interface's error format, for the route table: [`WidevineJson`] with the status that
/// follows the error.
pub fn error_response(error: ApiError) -> Response {
    WidevineJson::from(error).into_response()
}

/// The answer of the Widevine API (`SignedModularDrmResponse` as JSON): always HTTP 200.
/// `response` is base64 of the JSON `CommonEncryptionResponse`, or, for a refused request, of
/// `{"status", "status_message"}` (`WidevineStatus`), whose two fields are then repeated in
/// clear beside it.
#[derive(serde::Serialize, utoipa::ToSchema)]
pub struct SignedResponse {
    /// base64 of the JSON `CommonEncryptionResponse` (schema `CommonEncryptionResponse`) or,
    /// on errors, of `WidevineStatus`.
    #[schema(content_encoding = "base64", content_media_type = "application/json")]
    pub response: String,
    /// On errors only: the non-OK `CommonEncryptionResponse.Status` (`SIGNATURE_FAILED`,
    /// `ACCESS_DENIED`, `MALFORMED_REQUEST`, `TRACK_TYPE_MISSING`, `INTERNAL_ERROR`, …).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status: Option<&'static str>,
    /// On errors only: what is wrong, for a person.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub status_message: Option<String>,
}

impl SignedResponse {
    /// The JSON of a successful answer carrying `inner` — what serializing
    /// `SignedResponse { response: base64(inner), status: None, status_message: None }` gives,
    /// written straight into one buffer: base64 needs no JSON escaping, and serde_json would
    /// scan the whole text for characters to escape (several KB per answer).
    pub fn ok_json(inner: &[u8]) -> String {
        use base64::Engine as _;
        let mut out = String::with_capacity(inner.len().div_ceil(3) * 4 + 16);
        out.push_str(r#"{"response":""#);
        base64::engine::general_purpose::STANDARD.encode_string(inner, &mut out);
        out.push_str(r#""}"#);
        out
    }
}

/// The `CommonEncryptionResponse` of a refused request (base64 in `SignedResponse.response`).
#[derive(serde::Serialize, utoipa::ToSchema)]
#[schema(as = WidevineStatus)]
pub struct StatusJson {
    pub status: &'static str,
    pub status_message: String,
}

/// Renders an [`ApiError`] as a Widevine common-encryption response (`/{tenant}/widevine/…`):
/// HTTP 200 with `{"response": "<base64 of {\"status\": …, \"status_message\": …}>",
/// "status": …, "status_message": …}`.
///
/// Why 200: Shaka Packager fetches with curl's fail-on-error, so an HTTP error reaches the
/// operator only as "Response code: 4xx" without the body, while a non-OK `status` is logged
/// with the raw body ("Received non-OK license response: …"). The message is therefore also
/// written in clear beside the base64 `response` (extra fields the packager's protobuf parser
/// ignores). `INTERNAL_ERROR` is the one status Shaka retries (store unavailable, internal
/// faults); every other status stops the packager.
#[derive(Debug)]
pub struct WidevineJson {
    pub error: ApiError,
    /// A `CommonEncryptionResponse.Status` name.
    pub status: &'static str,
}

impl WidevineJson {
    pub fn new(error: ApiError, status: &'static str) -> Self {
        Self { error, status }
    }

    /// The status for an error that has no more precise one.
    pub fn default_status(error: &ApiError) -> &'static str {
        match error {
            ApiError::Unauthorized(_) => "SIGNATURE_FAILED",
            ApiError::Forbidden(_) | ApiError::NotFound(_) => "ACCESS_DENIED",
            ApiError::BadRequest(_)
            | ApiError::Unprocessable(_)
            | ApiError::PayloadTooLarge { .. } => "MALFORMED_REQUEST",
            // INTERNAL_ERROR is the status Shaka Packager retries.
            ApiError::Conflict(_)
            | ApiError::Unavailable { .. }
            | ApiError::StoreBusy { .. }
            | ApiError::TooManyRequests { .. }
            | ApiError::RequestTimeout { .. }
            | ApiError::Deadline { .. }
            | ApiError::Internal(_)
            | ApiError::BadGateway(_) => "INTERNAL_ERROR",
        }
    }
}

impl From<ApiError> for WidevineJson {
    fn from(error: ApiError) -> Self {
        let status = Self::default_status(&error);
        Self { error, status }
    }
}

impl IntoResponse for WidevineJson {
    fn into_response(self) -> Response {
        use base64::Engine as _;
        let err = self.error;
        err.log();
        let message = err.client_message();
        let inner = StatusJson {
            status: self.status,
            status_message: message.clone(),
        };
        let inner = serde_json::to_string(&inner).unwrap_or_default();
        let body = SignedResponse {
            response: base64::engine::general_purpose::STANDARD.encode(inner),
            status: Some(self.status),
            status_message: Some(message),
        };
        let mut response = (
            StatusCode::OK,
            [(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/json"),
            )],
            serde_json::to_string(&body).unwrap_or_default(),
        )
            .into_response();
        // Still 200 (see above), but a client that reads headers learns when to retry.
        if let Some(seconds) = err.retry_after() {
            response
                .headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
        }
        response
    }
}

/// The track types of the Widevine API, plus keyplex's `ALL` (one key for every track,
/// shared with the one-key-per-content interfaces).
const TRACK_TYPES: [&str; 6] = ["SD", "HD", "UHD1", "UHD2", "AUDIO", "ALL"];

/// `POST /{tenant}/widevine/getcontentkey`.
#[utoipa::path(
    post,
    path = "/{tenant}/widevine/getcontentkey",
    operation_id = "widevine_get_content_key",
    tag = "packager",
    summary = "Widevine common-encryption key request (Shaka Packager)",
    description = "The signed JSON protocol of Shaka Packager's `--enable_widevine_encryption`: \
        `request` is base64 of a JSON `CommonEncryptionRequest`, signed by one of the tenant's \
        `widevine_signers` (AES-256-CBC of the SHA-1 of the `request` bytes). A tenant without \
        signers takes its packager credentials (Basic or JWT) instead. Every answer is HTTP 200: \
        errors are a non-OK `status` inside the envelope.",
    params(("tenant" = String, Path, description = "Tenant id")),
    request_body(content = RawSignedRequest, content_type = "application/json",
        description = "`SignedModularDrmRequest` as JSON"),
    responses(
        (status = 200, description = "A `CommonEncryptionResponse` (base64 in `response`); \
            errors too, with `status` and `status_message` beside it",
            body = SignedResponse, content_type = "application/json"),
    ),
    security((), ("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = [])),
)]
pub async fn post_get_content_key(
    State(state): State<AppState>,
    Path(tenant): Path<String>,
    headers: HeaderMap,
    body: Result<Bytes, BytesRejection>,
) -> Result<Response, WidevineJson> {
    let tenant = state.tenant(&tenant)?;
    let tenant = &*tenant;
    let body = read_body(&state, body)?;
    let envelope = SignedRequest::parse(&body)?;
    authenticate(&state, tenant, &headers, &envelope)?;
    let request = CommonEncryptionRequest::parse(&envelope.request)?;
    let response = answer(&state, tenant, &request).await?;
    let inner = response.to_json();
    let body = SignedResponse::ok_json(&inner);
    Ok((
        StatusCode::OK,
        [(
            header::CONTENT_TYPE,
            HeaderValue::from_static("application/json"),
        )],
        crate::http::body::secret(body),
    )
        .into_response())
}

/// The route's work on `body` up to authentication and the store, for [`crate::fuzzing`],
/// which must run the route's own parsers: the signed envelope, the signature
/// `authenticate` would compare (with the tenant's first signer), then
/// [`check_request_for_fuzzing`] on the request it carries.
pub(crate) fn check_body_for_fuzzing(tenant: &Tenant, body: &[u8]) -> Result<(), WidevineJson> {
    let envelope = SignedRequest::parse(body)?;
    if let Some(signer) = tenant.config.widevine_signers.first() {
        signer.signature(&envelope.request)?;
    }
    check_request_for_fuzzing(tenant, &envelope.request)
}

/// A bare `CommonEncryptionRequest`: parsed, preflighted, and signaled as `answer` would for
/// each key of a content request, with fixed key material where the store's would be.
pub(crate) fn check_request_for_fuzzing(tenant: &Tenant, json: &[u8]) -> Result<(), WidevineJson> {
    let request = CommonEncryptionRequest::parse(json)?;
    signaling::preflight(tenant, &DrmSystem::Widevine.into(), request.scheme)?;
    let Subject::Content { id, .. } = &request.subject else {
        return Ok(());
    };
    let indexes: Vec<Option<u32>> = match request.periods {
        None => vec![None],
        // One period is enough: the others differ only in the index.
        Some((first, count)) => vec![Some(first), Some(first.saturating_add(count - 1))],
    };
    for index in indexes {
        for track in &request.tracks {
            let key = ContentKey {
                kid: KeyId::from_bytes([1; 16]),
                content_id: id.clone(),
                key: keyplex_types::ContentKeyValue::from_bytes([2; 16]),
                iv: keyplex_types::Iv::from_bytes([3; 16]),
                track_type: Some(track.slot_type.clone()),
                period: index.map_or(KeyPeriod::Vod, |i| KeyPeriod::Index(u64::from(i))),
                origin: keyplex_types::KeyOrigin::Generated,
            };
            widevine_pssh(tenant, &key, request.scheme)?;
        }
    }
    Ok(())
}

/// The key's Widevine signaling (from the tenant's signal cache) with its pssh box read
/// back: the preflight and the answer take the same steps, so what the preflight accepts the
/// answer can build.
fn widevine_pssh(
    tenant: &Tenant,
    key: &ContentKey,
    scheme: EncryptionScheme,
) -> Result<(std::sync::Arc<SignalEntry>, PsshBox), ApiError> {
    let signal = signaling::entry(
        tenant,
        &DrmSystem::Widevine.into(),
        key,
        scheme,
        SignalForms::ALL,
    )?;
    let boxes = signal
        .signal
        .pssh
        .as_deref()
        .ok_or_else(|| ApiError::Internal("Widevine signaling without a pssh box".into()))?;
    let (parsed, _) = PsshBox::parse(boxes)
        .map_err(|e| ApiError::Internal(format!("re-reading our Widevine pssh: {e}")))?;
    Ok((signal, parsed))
}

/// A refusal with the `CommonEncryptionResponse.Status` that says what is wrong.
fn refuse(status: &'static str, message: impl Into<String>) -> WidevineJson {
    let error = match status {
        "SIGNATURE_FAILED" => ApiError::Unauthorized(message.into()),
        "ACCESS_DENIED" => ApiError::Forbidden(message.into()),
        _ => ApiError::BadRequest(message.into()),
    };
    WidevineJson::new(error, status)
}

fn read_body(state: &AppState, body: Result<Bytes, BytesRejection>) -> Result<Bytes, WidevineJson> {
    let body = crate::http::body::read_body_bytes(state, body)?;
    if body.is_empty() {
        return Err(refuse(
            "MALFORMED_REQUEST",
            "empty request body: expected {\"request\": …, \"signature\": …, \"signer\": …}",
        ));
    }
    Ok(body)
}

// ---------------------------------------------------------------------------------------------
// The envelope and its signature

/// `SignedModularDrmRequest`, decoded.
struct SignedRequest {
    /// The exact bytes the signature covers: the JSON text of the request.
    request: Vec<u8>,
    signature: Option<Vec<u8>>,
    signer: Option<String>,
}

/// `SignedModularDrmRequest` as JSON.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = WidevineSignedRequest)]
struct RawSignedRequest {
    /// base64 of the JSON `CommonEncryptionRequest` (schema `CommonEncryptionRequest`): the
    /// exact bytes the signature covers.
    #[serde(default)]
    #[schema(content_encoding = "base64", content_media_type = "application/json")]
    request: Option<String>,
    /// base64 of AES-256-CBC(SHA-1(`request` bytes)) under the signer's key and IV.
    #[serde(default)]
    signature: Option<String>,
    /// The name of one of the tenant's `widevine_signers`.
    #[serde(default)]
    signer: Option<String>,
}

impl SignedRequest {
    fn parse(body: &[u8]) -> Result<Self, WidevineJson> {
        let raw: RawSignedRequest = serde_json::from_slice(body).map_err(|e| {
            refuse(
                "MALFORMED_REQUEST",
                format!("the body is not a signed request {{\"request\", \"signature\", \"signer\"}}: {e}"),
            )
        })?;
        let request = raw
            .request
            .as_deref()
            .filter(|r| !r.is_empty())
            .ok_or_else(|| refuse("MALFORMED_REQUEST", "the signed request has no `request`"))?;
        let request = keyplex_types::decode_base64_lenient(request)
            .ok_or_else(|| refuse("MALFORMED_REQUEST", "`request` is not base64"))?;
        let signature = match raw.signature.as_deref().filter(|s| !s.is_empty()) {
            None => None,
            Some(s) => Some(
                keyplex_types::decode_base64_lenient(s)
                    .ok_or_else(|| refuse("SIGNATURE_FAILED", "`signature` is not base64"))?,
            ),
        };
        Ok(Self {
            request,
            signature,
            signer: raw.signer.filter(|s| !s.is_empty()),
        })
    }
}

/// Signers when the tenant has them; its packager credentials otherwise.
fn authenticate(
    state: &AppState,
    tenant: &Tenant,
    headers: &HeaderMap,
    envelope: &SignedRequest,
) -> Result<(), WidevineJson> {
    let signers = &tenant.config.widevine_signers;
    if signers.is_empty() {
        if let Some(name) = &envelope.signer {
            return Err(refuse(
                "SIGNATURE_FAILED",
                format!(
                    "unknown signer {:?}: tenant {} has no widevine_signers configured",
                    keyplex_types::truncate_for_message(name),
                    tenant.id
                ),
            ));
        }
        return state
            .authenticate_packager(tenant, headers)
            .map(|_| ())
            .map_err(|e| {
                let message = format!(
                    "{e} (tenant {} has no widevine_signers: unsigned requests need its packager credentials)",
                    tenant.id
                );
                refuse("ACCESS_DENIED", message)
            });
    }
    let Some(name) = &envelope.signer else {
        return Err(refuse(
            "SIGNATURE_FAILED",
            format!(
                "unsigned request: tenant {} accepts only requests signed by one of its widevine_signers (Shaka Packager: --signer, --aes_signing_key, --aes_signing_iv)",
                tenant.id
            ),
        ));
    };
    let signer = signers.iter().find(|s| &s.name == name).ok_or_else(|| {
        refuse(
            "SIGNATURE_FAILED",
            format!(
                "unknown signer {:?} for tenant {}",
                keyplex_types::truncate_for_message(name),
                tenant.id
            ),
        )
    })?;
    let Some(signature) = &envelope.signature else {
        return Err(refuse(
            "SIGNATURE_FAILED",
            format!("signer {name:?} is named but the request has no `signature`"),
        ));
    };
    let expected = signer.signature(&envelope.request)?;
    if bool::from(expected.as_slice().ct_eq(signature.as_slice())) {
        crate::http::rate_limit::admit(
            tenant,
            &format!(
                "widevine_signer:{}",
                keyplex_types::truncate_for_message(name)
            ),
        )?;
        Ok(())
    } else {
        Err(refuse(
            "SIGNATURE_FAILED",
            format!(
                "the signature does not verify for signer {name:?} (check --aes_signing_key and --aes_signing_iv)"
            ),
        ))
    }
}

// ---------------------------------------------------------------------------------------------
// The request

/// `CommonEncryptionRequest` as JSON, field names in snake_case or lowerCamelCase (what the
/// protobuf JSON parser accepts); unknown fields are ignored, `null` means absent.
#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CommonEncryptionRequest)]
pub(crate) struct RawRequest {
    #[serde(default, alias = "contentId")]
    content_id: Option<String>,
    #[serde(default)]
    tracks: Option<Vec<RawTrack>>,
    #[serde(default, alias = "drmTypes")]
    drm_types: Option<Vec<Option<NumberOrText>>>,
    #[serde(default, alias = "firstCryptoPeriodIndex")]
    first_crypto_period_index: Option<NumberOrText>,
    #[serde(default, alias = "cryptoPeriodCount")]
    crypto_period_count: Option<NumberOrText>,
    #[serde(default, alias = "psshData")]
    pssh_data: Option<String>,
    #[serde(default, alias = "assetId")]
    asset_id: Option<NumberOrText>,
    #[serde(default, alias = "protectionScheme")]
    protection_scheme: Option<NumberOrText>,
    #[serde(default, alias = "enableEntitlementLicense")]
    enable_entitlement_license: Option<bool>,
    #[serde(default, alias = "videoFeature")]
    video_feature: Option<String>,
}

#[derive(Deserialize, utoipa::ToSchema)]
#[schema(as = CommonEncryptionRequestTrack)]
struct RawTrack {
    /// `SD`, `HD`, `UHD1`, `UHD2`, `AUDIO` (or keyplex's `ALL`).
    #[serde(default, rename = "type")]
    track_type: Option<String>,
}

/// Protobuf JSON writes integers as numbers and accepts them as strings too; enums come as
/// names or numbers.
enum NumberOrText {
    Number(serde_json::Number),
    Text(String),
}

/// By the JSON token's type: `#[serde(untagged)]` buffered each value and built an error (a
/// formatted message) for every variant it tried that did not fit.
impl<'de> Deserialize<'de> for NumberOrText {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Visitor;
        impl serde::de::Visitor<'_> for Visitor {
            type Value = NumberOrText;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a number or a string")
            }
            fn visit_u64<E>(self, v: u64) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Number(v.into()))
            }
            fn visit_i64<E>(self, v: i64) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Number(v.into()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<NumberOrText, E> {
                serde_json::Number::from_f64(v)
                    .map(NumberOrText::Number)
                    .ok_or_else(|| E::custom("not a finite number"))
            }
            fn visit_str<E>(self, v: &str) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Text(v.to_owned()))
            }
            fn visit_string<E>(self, v: String) -> Result<NumberOrText, E> {
                Ok(NumberOrText::Text(v))
            }
        }
        deserializer.deserialize_any(Visitor)
    }
}

/// `NumberOrText` in the OpenAPI document: an integer, or a string (digits or an enum name).
impl utoipa::PartialSchema for NumberOrText {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        use utoipa::openapi::schema::{ObjectBuilder, OneOfBuilder, Type};
        OneOfBuilder::new()
            .item(ObjectBuilder::new().schema_type(Type::Integer))
            .item(ObjectBuilder::new().schema_type(Type::String))
            .description(Some(
                "Protobuf JSON: an integer as a number or a string; an enum as its name or number",
            ))
            .into()
    }
}

impl utoipa::ToSchema for NumberOrText {
    fn name() -> std::borrow::Cow<'static, str> {
        "ProtobufNumberOrText".into()
    }
}

impl NumberOrText {
    fn as_u32(&self) -> Option<u32> {
        match self {
            Self::Number(n) => n.as_u64().and_then(|v| u32::try_from(v).ok()),
            Self::Text(t) => t.trim().parse().ok(),
        }
    }
    fn describe(&self) -> String {
        match self {
            Self::Number(n) => n.to_string(),
            Self::Text(t) => format!("{:?}", keyplex_types::truncate_for_message(t)),
        }
    }
}

/// What the keys are asked for.
enum Subject {
    /// A content: one key per (track type, period).
    Content {
        id: ContentId,
        /// The `content_id` bytes as received, echoed in the response.
        raw: Vec<u8>,
    },
    /// Existing keys, by the key ids of a Widevine pssh (decryption).
    KeyIds {
        kids: Vec<KeyId>,
        content: Option<(ContentId, Vec<u8>)>,
    },
}

/// A requested track: the label the packager uses, and the track type of its key slot.
struct TrackPlan {
    label: String,
    slot_type: TrackType,
}

/// A validated `CommonEncryptionRequest`.
struct CommonEncryptionRequest {
    subject: Subject,
    tracks: Vec<TrackPlan>,
    /// (first index, count) when keys rotate.
    periods: Option<(u32, u32)>,
    scheme: EncryptionScheme,
}

impl CommonEncryptionRequest {
    fn parse(json: &[u8]) -> Result<Self, WidevineJson> {
        let raw: RawRequest = serde_json::from_slice(json).map_err(|e| {
            refuse(
                "MALFORMED_REQUEST",
                format!("`request` is not a CommonEncryptionRequest JSON object: {e}"),
            )
        })?;
        if raw.asset_id.is_some() {
            return Err(refuse(
                "ASSET_NOT_FOUND",
                "asset_id (Widevine Classic) is not supported: ask by content_id or pssh_data",
            ));
        }
        if raw.enable_entitlement_license == Some(true) {
            return Err(refuse(
                "MALFORMED_REQUEST",
                "enable_entitlement_license is not supported by keyplex: package without --enable_entitlement_license",
            ));
        }
        let content_id = raw.content_id.as_deref().filter(|c| !c.is_empty());
        let pssh_data = raw.pssh_data.as_deref().filter(|c| !c.is_empty());
        let subject = match (content_id, pssh_data) {
            (Some(_), Some(_)) => {
                return Err(refuse(
                    "TOO_MANY_CONTENT_SPECIFIERS",
                    "send content_id or pssh_data, not both",
                ));
            }
            (None, None) => {
                return Err(refuse(
                    "CONTENT_ID_MISSING",
                    "the request has neither content_id nor pssh_data",
                ));
            }
            (Some(c), None) => {
                let raw_id = keyplex_types::decode_base64_lenient(c)
                    .ok_or_else(|| refuse("MALFORMED_REQUEST", "content_id is not base64"))?;
                let id = content_id_from_bytes(&raw_id)?;
                Subject::Content { id, raw: raw_id }
            }
            (None, Some(p)) => subject_from_pssh_data(p)?,
        };
        for drm in raw.drm_types.iter().flatten().flatten() {
            let widevine = match drm {
                NumberOrText::Number(n) => n.as_u64() == Some(0),
                NumberOrText::Text(t) => t == "WIDEVINE" || t.trim() == "0",
            };
            if !widevine {
                return Err(refuse(
                    "MALFORMED_REQUEST",
                    format!(
                        "unknown drm_type {}: the only ModularDrmType is WIDEVINE",
                        drm.describe()
                    ),
                ));
            }
        }
        let scheme = match &raw.protection_scheme {
            None => EncryptionScheme::Cenc,
            Some(value) => protection_scheme(value)?,
        };
        let periods = crypto_periods(&raw)?;
        if periods.is_some() && matches!(subject, Subject::KeyIds { .. }) {
            return Err(refuse(
                "MALFORMED_REQUEST",
                "key rotation (crypto_period_count) applies to content_id requests, not to pssh_data key lookups",
            ));
        }
        let video_feature = raw
            .video_feature
            .as_deref()
            .map(str::trim)
            .filter(|v| !v.is_empty())
            .map(video_feature_suffix)
            .transpose()?;
        let tracks = match &subject {
            // A key lookup answers the keys the pssh names, whatever the tracks say.
            Subject::KeyIds { .. } => Vec::new(),
            Subject::Content { .. } => {
                track_plans(raw.tracks.as_deref(), video_feature.as_deref())?
            }
        };
        Ok(Self {
            subject,
            tracks,
            periods,
            scheme,
        })
    }
}

/// The keyplex content id for `content_id` bytes: the bytes when they already are a valid
/// content id, else their lower-case hex.
pub fn content_id_from_bytes(bytes: &[u8]) -> Result<ContentId, WidevineJson> {
    if let Some(id) = std::str::from_utf8(bytes)
        .ok()
        .and_then(|s| ContentId::parse(s).ok())
    {
        return Ok(id);
    }
    ContentId::parse(&hex::encode(bytes)).map_err(|_| {
        refuse(
            "MALFORMED_REQUEST",
            format!(
                "content_id of {} bytes is too long: a binary content_id may have at most {} bytes",
                bytes.len(),
                ContentId::MAX_LEN / 2
            ),
        )
    })
}

fn subject_from_pssh_data(text: &str) -> Result<Subject, WidevineJson> {
    let bytes = keyplex_types::decode_base64_lenient(text)
        .ok_or_else(|| refuse("INVALID_WIDEVINE_PSSH", "pssh_data is not base64"))?;
    let data = WidevinePsshData::decode_from(&bytes).map_err(|e| {
        refuse(
            "INVALID_WIDEVINE_PSSH",
            format!("pssh_data is not Widevine pssh data: {e}"),
        )
    })?;
    let content = match data.content_id.as_deref().filter(|c| !c.is_empty()) {
        Some(raw) => Some((content_id_from_bytes(raw)?, raw.to_vec())),
        None => None,
    };
    let kids = data.key_ids();
    if kids.len() != data.key_id.len() {
        return Err(refuse(
            "INVALID_WIDEVINE_PSSH",
            "pssh_data has a key id that is not 16 bytes",
        ));
    }
    if !kids.is_empty() {
        return Ok(Subject::KeyIds { kids, content });
    }
    match content {
        Some((id, raw)) => Ok(Subject::Content { id, raw }),
        None => Err(refuse(
            "INVALID_WIDEVINE_PSSH",
            "pssh_data names neither key ids nor a content id",
        )),
    }
}

fn protection_scheme(value: &NumberOrText) -> Result<EncryptionScheme, WidevineJson> {
    let scheme = match value {
        NumberOrText::Text(name) => match name.trim() {
            "UNSPECIFIED" | "CENC" => Some(EncryptionScheme::Cenc),
            "CBC1" => Some(EncryptionScheme::Cbc1),
            "CENS" => Some(EncryptionScheme::Cens),
            "CBCS" => Some(EncryptionScheme::Cbcs),
            _ => value.as_u32().and_then(scheme_from_number),
        },
        NumberOrText::Number(_) => value.as_u32().and_then(scheme_from_number),
    };
    scheme.ok_or_else(|| {
        refuse(
            "MALFORMED_REQUEST",
            format!(
                "unknown protection_scheme {}: expected CENC, CBC1, CENS, CBCS or UNSPECIFIED",
                value.describe()
            ),
        )
    })
}

/// The enum's numbers: 0 (UNSPECIFIED, meaning cenc) or the FourCC as an integer.
fn scheme_from_number(n: u32) -> Option<EncryptionScheme> {
    if n == 0 {
        Some(EncryptionScheme::Cenc)
    } else {
        EncryptionScheme::from_fourcc_u32(n)
    }
}

fn crypto_periods(raw: &RawRequest) -> Result<Option<(u32, u32)>, WidevineJson> {
    let number = |value: &NumberOrText, name: &str| {
        value.as_u32().ok_or_else(|| {
            refuse(
                "MALFORMED_REQUEST",
                format!("{name} {} is not a uint32", value.describe()),
            )
        })
    };
    let first = raw
        .first_crypto_period_index
        .as_ref()
        .map(|v| number(v, "first_crypto_period_index"))
        .transpose()?;
    let count = raw
        .crypto_period_count
        .as_ref()
        .map(|v| number(v, "crypto_period_count"))
        .transpose()?;
    let (first, count) = match (first, count) {
        (None, None) => return Ok(None),
        (None, Some(_)) => {
            return Err(refuse(
                "MALFORMED_REQUEST",
                "crypto_period_count needs first_crypto_period_index",
            ));
        }
        // The protobuf default of crypto_period_count is 1.
        (Some(first), count) => (first, count.unwrap_or(1)),
    };
    if count == 0 {
        return Err(refuse(
            "NO_REQUESTED_CRYPTO_PERIODS",
            "crypto_period_count is 0: no crypto period requested",
        ));
    }
    if count > MAX_CRYPTO_PERIOD_COUNT {
        return Err(refuse(
            "MALFORMED_REQUEST",
            format!(
                "crypto_period_count {count} is more than the {MAX_CRYPTO_PERIOD_COUNT} keyplex answers at once"
            ),
        ));
    }
    if first.checked_add(count - 1).is_none() {
        return Err(refuse(
            "MALFORMED_REQUEST",
            "first_crypto_period_index + crypto_period_count overflows uint32",
        ));
    }
    Ok(Some((first, count)))
}

/// `HDR` → `_HDR`, the suffix of video slot track types for that feature.
fn video_feature_suffix(feature: &str) -> Result<String, WidevineJson> {
    let ok = feature.len() <= 16 && feature.bytes().all(|b| b.is_ascii_alphanumeric());
    if ok {
        Ok(format!("_{}", feature.to_ascii_uppercase()))
    } else {
        Err(refuse(
            "MALFORMED_REQUEST",
            format!(
                "video_feature {:?} must be 1 to 16 letters or digits (e.g. HDR)",
                keyplex_types::truncate_for_message(feature)
            ),
        ))
    }
}

fn track_plans(
    tracks: Option<&[RawTrack]>,
    video_feature: Option<&str>,
) -> Result<Vec<TrackPlan>, WidevineJson> {
    let tracks = tracks.filter(|t| !t.is_empty()).ok_or_else(|| {
        refuse(
            "TRACK_TYPE_MISSING",
            "the request has no tracks: ask for SD, HD, UHD1, UHD2 and/or AUDIO",
        )
    })?;
    let mut seen = HashSet::new();
    let mut plans = Vec::with_capacity(tracks.len());
    for track in tracks {
        let label = track
            .track_type
            .as_deref()
            .filter(|t| !t.is_empty())
            .ok_or_else(|| refuse("TRACK_TYPE_MISSING", "a track has no type"))?;
        if !TRACK_TYPES.contains(&label) {
            return Err(refuse(
                "TRACK_TYPE_UNKNOWN",
                format!(
                    "unknown track type {:?}: expected SD, HD, UHD1, UHD2, AUDIO (or ALL)",
                    keyplex_types::truncate_for_message(label)
                ),
            ));
        }
        if !seen.insert(label) {
            return Err(refuse(
                "MALFORMED_REQUEST",
                format!("track type {label} is asked for twice"),
            ));
        }
        let slot_label = match video_feature {
            Some(suffix) if label != TrackType::AUDIO => format!("{label}{suffix}"),
            _ => label.to_owned(),
        };
        let slot_type = TrackType::parse(&slot_label)
            .map_err(|e| refuse("MALFORMED_REQUEST", e.to_string()))?;
        plans.push(TrackPlan {
            label: label.to_owned(),
            slot_type,
        });
    }
    Ok(plans)
}

// ---------------------------------------------------------------------------------------------
// The answer

/// `CommonEncryptionResponse`, fields in field-number order, names as the packager's
/// protobuf JSON printer writes them.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CommonEncryptionResponse)]
pub(crate) struct ResponseJson {
    status: &'static str,
    drm: Vec<DrmJson>,
    tracks: Vec<TrackJson>,
    content_id: String,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CommonEncryptionResponseDrm)]
struct DrmJson {
    #[serde(rename = "type")]
    drm_type: &'static str,
    system_id: String,
}

/// One track's key. Not `Debug`: it holds the key.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CommonEncryptionResponseTrack)]
struct TrackJson {
    #[serde(rename = "type")]
    track_type: String,
    key_id: String,
    key: String,
    iv: String,
    pssh: Vec<PsshJson>,
    #[serde(skip_serializing_if = "Option::is_none")]
    crypto_period_index: Option<u32>,
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = CommonEncryptionResponsePssh)]
struct PsshJson {
    drm_type: &'static str,
    /// The Widevine pssh data only (no box header).
    data: String,
    /// The whole pssh box.
    boxes: String,
}

impl ResponseJson {
    /// The JSON serde writes for this answer (a test compares the two), written into one
    /// buffer sized up front, which is wiped on drop (it holds keys; a growing `Vec` would
    /// leave copies behind). Every text but the packager's track labels is base64, a UUID or
    /// a fixed name, none of which JSON escapes, so they are copied as they are: serde_json
    /// scanned each of them for characters to escape, a tenth of a Widevine API request.
    fn to_json(&self) -> zeroize::Zeroizing<Vec<u8>> {
        let tracks: usize = self
            .tracks
            .iter()
            .map(|t| {
                let pssh: usize = t
                    .pssh
                    .iter()
                    .map(|p| 48 + p.data.len() + p.boxes.len())
                    .sum();
                // A label escaped by serde is at most six bytes per byte (`\u0001`).
                128 + 6 * t.track_type.len() + t.key_id.len() + t.key.len() + t.iv.len() + pssh
            })
            .sum();
        let size = 64 + self.content_id.len() + 64 * self.drm.len() + tracks;
        let mut out = zeroize::Zeroizing::new(Vec::with_capacity(size));
        let o = &mut *out;
        let quoted = |o: &mut Vec<u8>, text: &str| {
            o.push(b'"');
            o.extend_from_slice(text.as_bytes());
            o.push(b'"');
        };
        o.extend_from_slice(br#"{"status":"#);
        quoted(o, self.status);
        o.extend_from_slice(br#","drm":["#);
        for (i, drm) in self.drm.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            o.extend_from_slice(br#"{"type":"#);
            quoted(o, drm.drm_type);
            o.extend_from_slice(br#","system_id":"#);
            quoted(o, &drm.system_id);
            o.push(b'}');
        }
        o.extend_from_slice(br#"],"tracks":["#);
        for (i, track) in self.tracks.iter().enumerate() {
            if i > 0 {
                o.push(b',');
            }
            o.extend_from_slice(br#"{"type":"#);
            // The packager's label (anything it sent: a few characters), escaped by serde.
            // (Writing a `&str` into a `Vec` cannot fail.)
            let _ = serde_json::to_writer(&mut *o, &track.track_type);
            o.extend_from_slice(br#","key_id":"#);
            quoted(o, &track.key_id);
            o.extend_from_slice(br#","key":"#);
            quoted(o, &track.key);
            o.extend_from_slice(br#","iv":"#);
            quoted(o, &track.iv);
            o.extend_from_slice(br#","pssh":["#);
            for (j, pssh) in track.pssh.iter().enumerate() {
                if j > 0 {
                    o.push(b',');
                }
                o.extend_from_slice(br#"{"drm_type":"#);
                quoted(o, pssh.drm_type);
                o.extend_from_slice(br#","data":"#);
                quoted(o, &pssh.data);
                o.extend_from_slice(br#","boxes":"#);
                quoted(o, &pssh.boxes);
                o.push(b'}');
            }
            o.push(b']');
            if let Some(index) = track.crypto_period_index {
                o.extend_from_slice(br#","crypto_period_index":"#);
                o.extend_from_slice(index.to_string().as_bytes());
            }
            o.push(b'}');
        }
        o.extend_from_slice(br#"],"content_id":"#);
        quoted(o, &self.content_id);
        o.push(b'}');
        out
    }
}

/// A stored key and how the answer names it: the packager's track label and the crypto
/// period (when keys rotate).
struct LabelledKey {
    label: String,
    key: ContentKey,
    period: Option<u32>,
}

async fn answer(
    state: &AppState,
    tenant: &Tenant,
    request: &CommonEncryptionRequest,
) -> Result<ResponseJson, WidevineJson> {
    signaling::preflight(tenant, &DrmSystem::Widevine.into(), request.scheme)?;
    let (labelled, content_id): (Vec<LabelledKey>, Vec<u8>) = match &request.subject {
        Subject::Content { id, raw } => (
            content_keys(state, tenant, id, &request.tracks, request.periods).await?,
            raw.clone(),
        ),
        Subject::KeyIds { kids, content } => {
            let found = keys_by_id(state, tenant, kids, content.as_ref()).await?;
            let raw = match (content, found.first()) {
                (Some((_, raw)), _) => raw.clone(),
                (None, Some(first)) => first.key.content_id.as_str().as_bytes().to_vec(),
                (None, None) => Vec::new(),
            };
            (found, raw)
        }
    };
    let mut tracks = Vec::with_capacity(labelled.len());
    for LabelledKey { label, key, period } in labelled {
        let (signal, parsed) = widevine_pssh(tenant, &key, request.scheme)?;
        // Present whenever the box is (the entry encodes every field it holds).
        let boxes_base64 = signal.base64.pssh.clone().unwrap_or_default();
        tracks.push(TrackJson {
            track_type: label,
            key_id: STANDARD.encode(key.kid.as_bytes()),
            key: STANDARD.encode(key.key.expose()),
            iv: STANDARD.encode(key.iv.as_bytes()),
            pssh: vec![PsshJson {
                drm_type: "WIDEVINE",
                data: STANDARD.encode(&parsed.data),
                boxes: boxes_base64,
            }],
            crypto_period_index: period,
        });
    }
    Ok(ResponseJson {
        status: "OK",
        drm: vec![DrmJson {
            drm_type: "WIDEVINE",
            system_id: DrmSystem::Widevine.system_id().hyphenated().to_string(),
        }],
        tracks,
        content_id: STANDARD.encode(content_id),
    })
}

/// Every (period, track) key of a content request, in one store call: grouped by period,
/// tracks in request order within a period (the order the packager expects).
async fn content_keys(
    state: &AppState,
    tenant: &Tenant,
    content_id: &ContentId,
    tracks: &[TrackPlan],
    periods: Option<(u32, u32)>,
) -> Result<Vec<LabelledKey>, ApiError> {
    let indexes: Vec<Option<u32>> = match periods {
        None => vec![None],
        Some((first, count)) => (0..count).map(|i| Some(first + i)).collect(),
    };
    let mut plan = Vec::with_capacity(indexes.len() * tracks.len());
    let mut requests = Vec::with_capacity(plan.capacity());
    for index in &indexes {
        for track in tracks {
            let period = index.map_or(KeyPeriod::Vod, |i| KeyPeriod::Index(u64::from(i)));
            requests.push(keys::by_slot(KeySlot {
                content_id: content_id.clone(),
                track_type: track.slot_type.clone(),
                period,
            })?);
            plan.push((track.label.clone(), *index));
        }
    }
    let stored = keys::resolve(state, tenant, content_id, &requests).await?;
    if stored.len() != plan.len() {
        return Err(ApiError::Internal(format!(
            "the store answered {} keys for {} requests",
            stored.len(),
            plan.len()
        )));
    }
    Ok(plan
        .into_iter()
        .zip(stored)
        .map(|((label, period), key)| LabelledKey { label, key, period })
        .collect())
}

/// The stored keys a Widevine pssh names. Labelled with the track type each key was made
/// for (`ALL` when none was recorded).
async fn keys_by_id(
    state: &AppState,
    tenant: &Tenant,
    kids: &[KeyId],
    content: Option<&(ContentId, Vec<u8>)>,
) -> Result<Vec<LabelledKey>, WidevineJson> {
    let mut found = Vec::with_capacity(kids.len());
    for kid in kids {
        let key = state
            .store()
            .get_key(&tenant.id, kid)
            .await
            .map_err(ApiError::from)?
            .ok_or_else(|| {
                refuse(
                    "ASSET_MISSING_KEY",
                    format!("tenant {} has no key with id {kid}", tenant.id),
                )
            })?;
        if let Some((id, _)) = content
            && &key.content_id != id
        {
            return Err(refuse(
                "CONTENT_ID_MISMATCH",
                format!("key {kid} belongs to another content than the pssh's content id {id}"),
            ));
        }
        let label = key
            .track_type
            .as_ref()
            .map_or_else(|| TrackType::ALL.to_owned(), |t| t.as_str().to_owned());
        let period = key.period.index().and_then(|i| u32::try_from(i).ok());
        crate::scope::note_keys(&key.content_id, [key.kid], 0);
        found.push(LabelledKey { label, key, period });
    }
    Ok(found)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;
    use crate::config::Secret;
    use crate::config::WidevineSigner;

    #[test]
    fn a_written_widevine_answer_is_what_serde_writes() {
        use base64::Engine as _;
        for inner in [
            &b""[..],
            b"{}",
            b"{\"status\":\"OK\",\"tracks\":[]}",
            &[0xff; 1000],
        ] {
            let serde = serde_json::to_string(&SignedResponse {
                response: base64::engine::general_purpose::STANDARD.encode(inner),
                status: None,
                status_message: None,
            })
            .unwrap();
            assert_eq!(SignedResponse::ok_json(inner), serde);
        }
    }

    #[test]
    fn a_written_answer_is_what_serde_writes() {
        let track = |label: &str, period| TrackJson {
            track_type: label.into(),
            key_id: "ABEiM0RVZneImaq7zN3u/w==".into(),
            key: "q83vASNFZ4mrze8BI0VniQ==".into(),
            iv: "EBESExQVFhcYGRobHB0eHw==".into(),
            pssh: vec![PsshJson {
                drm_type: "WIDEVINE",
                data: "EhAAESIzRFVmd4iZqrvM3e7/".into(),
                boxes: "AAAAMnBzc2gAAAAA7e+LqXnWSs6jyCfc1R0h7QAAABISEAARIjNEVWZ3iJmqu8zd7v8="
                    .into(),
            }],
            crypto_period_index: period,
        };
        let drm = || DrmJson {
            drm_type: "WIDEVINE",
            system_id: DrmSystem::Widevine.system_id().hyphenated().to_string(),
        };
        let answers = [
            ResponseJson {
                status: "OK",
                drm: vec![drm()],
                tracks: vec![track("SD", None), track("HD", None)],
                content_id: "bW92aWUtMQ==".into(),
            },
            ResponseJson {
                status: "OK",
                drm: vec![drm(), drm()],
                tracks: vec![
                    track("AUDIO", Some(0)),
                    track("a \"label\" with \\ and \u{1}\n, é", Some(4_294_967_295)),
                ],
                content_id: String::new(),
            },
            ResponseJson {
                status: "OK",
                drm: Vec::new(),
                tracks: Vec::new(),
                content_id: String::new(),
            },
        ];
        for answer in answers {
            assert_eq!(
                String::from_utf8(answer.to_json().to_vec()).unwrap(),
                serde_json::to_string(&answer).unwrap()
            );
        }
    }

    fn widevine_test_signer() -> WidevineSigner {
        WidevineSigner {
            name: "widevine_test".into(),
            aes_key: Secret::new(
                "1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9",
            ),
            aes_iv: "d58ce954203b7c9a9a9d467f59839249".into(),
        }
    }

    /// The request Shaka Packager signs for content "ContentFoo" with the public `widevine_test`
    /// credentials (its `widevine_key_source_unittest.cc` inputs).
    const KAT_REQUEST: &str = r#"{"content_id":"Q29udGVudEZvbw==","policy":"PolicyFoo","tracks":[{"type":"SD"},{"type":"HD"},{"type":"UHD1"},{"type":"UHD2"},{"type":"AUDIO"}],"drm_types":["WIDEVINE"],"protection_scheme":"CENC"}"#;

    #[test]
    fn signature_matches_known_answer() {
        let sig = widevine_test_signer()
            .signature(KAT_REQUEST.as_bytes())
            .unwrap();
        assert_eq!(
            STANDARD.encode(sig),
            "7eCWoKs8d3ah0ugpd4yyi+6Y7lxfjcDIWtKUf95/9A4="
        );
    }

    #[test]
    fn parses_the_shaka_request_and_camel_case() {
        let r = CommonEncryptionRequest::parse(KAT_REQUEST.as_bytes())
            .ok()
            .unwrap();
        assert!(matches!(&r.subject, Subject::Content { id, .. } if id.as_str() == "ContentFoo"));
        let labels: Vec<_> = r.tracks.iter().map(|t| t.label.as_str()).collect();
        assert_eq!(labels, ["SD", "HD", "UHD1", "UHD2", "AUDIO"]);
        assert_eq!(r.scheme, EncryptionScheme::Cenc);
        assert!(r.periods.is_none());

        let camel = r#"{"contentId":"AAEC/w==","tracks":[{"type":"HD"}],"firstCryptoPeriodIndex":"7","cryptoPeriodCount":2,"protectionScheme":1667392371,"videoFeature":"hdr","unknownField":{"x":1}}"#;
        let r = CommonEncryptionRequest::parse(camel.as_bytes())
            .ok()
            .unwrap();
        assert!(matches!(&r.subject, Subject::Content { id, .. } if id.as_str() == "000102ff"));
        assert_eq!(r.periods, Some((7, 2)));
        assert_eq!(r.scheme, EncryptionScheme::Cbcs);
        assert_eq!(r.tracks[0].slot_type.as_str(), "HD_HDR");
        assert_eq!(r.tracks[0].label, "HD");
    }

    #[test]
    fn content_id_mapping() {
        assert_eq!(
            content_id_from_bytes(b"movie-1").ok().unwrap().as_str(),
            "movie-1"
        );
        assert_eq!(
            content_id_from_bytes(b"a b").ok().unwrap().as_str(),
            "612062"
        );
        assert_eq!(
            content_id_from_bytes(&[0xff; 100])
                .ok()
                .unwrap()
                .as_str()
                .len(),
            200
        );
        assert!(content_id_from_bytes(&[0xff; 101]).is_err());
    }

    #[test]
    fn rejections_carry_the_right_status() {
        let status = |json: &str| match CommonEncryptionRequest::parse(json.as_bytes()) {
            Ok(_) => "OK",
            Err(e) => e.status,
        };
        assert_eq!(
            status(r#"{"tracks":[{"type":"SD"}]}"#),
            "CONTENT_ID_MISSING"
        );
        assert_eq!(status(r#"{"content_id":"eA=="}"#), "TRACK_TYPE_MISSING");
        assert_eq!(
            status(r#"{"content_id":"eA==","tracks":[]}"#),
            "TRACK_TYPE_MISSING"
        );
        assert_eq!(
            status(r#"{"content_id":"eA==","tracks":[{"type":"XL"}]}"#),
            "TRACK_TYPE_UNKNOWN"
        );
        assert_eq!(
            status(r#"{"content_id":"eA==","tracks":[{"type":"SD"},{"type":"SD"}]}"#),
            "MALFORMED_REQUEST"
        );
        assert_eq!(
            status(r#"{"content_id":"eA==","pssh_data":"CAE=","tracks":[{"type":"SD"}]}"#),
            "TOO_MANY_CONTENT_SPECIFIERS"
        );
        assert_eq!(
            status(
                r#"{"content_id":"eA==","tracks":[{"type":"SD"}],"first_crypto_period_index":1,"crypto_period_count":0}"#
            ),
            "NO_REQUESTED_CRYPTO_PERIODS"
        );
        assert_eq!(
            status(r#"{"content_id":"eA==","tracks":[{"type":"SD"}],"drm_types":["PLAYREADY"]}"#),
            "MALFORMED_REQUEST"
        );
        assert_eq!(
            status(r#"{"content_id":"eA==","tracks":[{"type":"SD"}],"protection_scheme":"AES"}"#),
            "MALFORMED_REQUEST"
        );
        assert_eq!(status(r#"{"asset_id":5}"#), "ASSET_NOT_FOUND");
        assert_eq!(
            status(r#"{"pssh_data":"not base64!","tracks":[{"type":"SD"}]}"#),
            "INVALID_WIDEVINE_PSSH"
        );
        assert_eq!(
            status(
                r#"{"content_id":"eA==","tracks":[{"type":"SD"}],"first_crypto_period_index":4294967295,"crypto_period_count":2}"#
            ),
            "MALFORMED_REQUEST"
        );
        assert_eq!(status("[1,2]"), "MALFORMED_REQUEST");
    }
}
