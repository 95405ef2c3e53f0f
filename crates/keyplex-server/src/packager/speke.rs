//! AWS SPEKE: `POST /{tenant}/speke/v1`, `POST /{tenant}/speke/v2`, and the CPIX routes when
//! the request carries `X-Speke-Version` (AWS encryptors pointed at the CPIX URL).
//!
//! SPEKE is a profile of CPIX, so the answer comes from the CPIX engine
//! ([`crate::packager::cpix::exchange_with`]); this module adds what the profile says:
//!
//! * **v1** (no `X-Speke-Version`, or `1.0`): the content id is `CPIX@id`; the `speke:`
//!   elements (`KeyFormat`, `KeyFormatVersions`, `ProtectionHeader`) and `URIExtXKey` are
//!   answered; an output the DRM does not have is left out (AWS's own v1 requests for HLS
//!   AES-128 ask for `PSSH` too). Response header `Speke-User-Agent`.
//! * **v2.0 / v2.1** (`X-Speke-Version: 2.0|2.1`; any other value is refused before the
//!   document is read): the document must follow AWS's v2 constraints and encryption contract
//!   ([`keyplex_cpix::speke::validate_v2`]); the scheme must suit each DRM (FairPlay `cbcs`;
//!   Widevine and PlayReady `cenc` or `cbcs`; Clear Key AES-128 `cbc1`); every output the
//!   request names is answered or the request is refused, and ISO-BMFF DRMs always answer
//!   `PSSH`. Response headers `X-Speke-Version` (the request's) and `X-Speke-User-Agent`.
//!
//! Errors are `text/plain`: the exact AWS message with 422 for a request that breaks the
//! profile (and for any other semantic error of the document); 400 only for a body that is
//! not a readable CPIX document; 401/403/404/409/413/503 as on the CPIX route.

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{OriginalUri, Path, State};
use axum::http::{HeaderMap, HeaderName, HeaderValue, Method};
use axum::response::{IntoResponse, Response};
use keyplex_cpix::model::CpixDocument;
use keyplex_cpix::speke::{SpekeError, SpekeVersion, document_scheme, validate_v2};
use keyplex_drm::system::DrmSystem;
use keyplex_types::EncryptionScheme;

use crate::auth::authenticate_packager_request;
use crate::http::error::{ApiError, PlainText};
use crate::packager::cpix::{ExchangeProfile, KidSource, exchange_with, xml_response};
use crate::state::{AppState, Tenant};

/// The request header that names the SPEKE version (HTTP header names are case-insensitive).
pub const SPEKE_VERSION_HEADER: &str = "x-speke-version";

/// What keyplex answers in `Speke-User-Agent` / `X-Speke-User-Agent`.
pub const USER_AGENT: &str = concat!("keyplex/", env!("CARGO_PKG_VERSION"));

/// The answers of both SPEKE URLs, for the OpenAPI document.
struct SpekeAnswers;

impl utoipa::IntoResponses for SpekeAnswers {
    fn responses()
    -> std::collections::BTreeMap<String, utoipa::openapi::RefOr<utoipa::openapi::Response>> {
        crate::http::doc::xml_or_plain_text_answers(
            "The CPIX document with keys and signaling",
            crate::packager::cpix::KEY_EXCHANGE_REFUSALS
                .into_iter()
                .chain([(
                    422,
                    "The request breaks the SPEKE profile (the exact AWS message)",
                )]),
        )
    }
}

/// `POST /{tenant}/speke/v1`.
#[utoipa::path(
    post,
    path = "/{tenant}/speke/v1",
    operation_id = "speke_v1",
    tag = "packager",
    summary = "AWS SPEKE v1 key exchange",
    description = "SPEKE v1: the content id is `CPIX@id`; the `speke:` elements and \
        `URIExtXKey` are answered. Response header `Speke-User-Agent`.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("X-Speke-Version" = Option<String>, Header, description = "Absent or `1.0`"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A SPEKE \
        (CPIX) request document"),
    responses(SpekeAnswers),
    security(("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = []), ("sigv4" = [])),
)]
pub async fn post_speke_v1(
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
    // An explicit 1.0 is v1; a v2 version on the v1 URL is a misconfiguration.
    let version = header_version(&headers)?;
    if version != SpekeVersion::V1 {
        return Err(unsupported_version(format!(
            "X-Speke-Version {} sent to the SPEKE v1 URL",
            version.header_value()
        ))
        .into());
    }
    Ok(answer(&state, tenant, version, body).await)
}

/// `POST /{tenant}/speke/v2`.
#[utoipa::path(
    post,
    path = "/{tenant}/speke/v2",
    operation_id = "speke_v2",
    tag = "packager",
    summary = "AWS SPEKE v2 key exchange",
    description = "SPEKE v2.0 / v2.1: the document must follow AWS's v2 constraints and \
        encryption contract; every output it names is answered or the request is refused. Response \
        headers `X-Speke-Version` and `X-Speke-User-Agent`.",
    params(
        ("tenant" = String, Path, description = "Tenant id"),
        ("X-Speke-Version" = String, Header, description = "`2.0` or `2.1`"),
    ),
    request_body(content = String, content_type = "application/xml", description = "A SPEKE \
        (CPIX) request document"),
    responses(SpekeAnswers),
    security(("packager_basic" = []), ("packager_jwt" = []), ("nv_authorizations" = []), ("sigv4" = [])),
)]
pub async fn post_speke_v2(
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
    if !headers.contains_key(SPEKE_VERSION_HEADER) {
        return Err(ApiError::Unprocessable(
            "Missing X-Speke-Version header: SPEKE v2 requests send X-Speke-Version 2.0 or 2.1"
                .into(),
        )
        .into());
    }
    let version = header_version(&headers)?;
    if !version.is_v2() {
        return Err(
            unsupported_version("X-Speke-Version 1.0 sent to the SPEKE v2 URL".into()).into(),
        );
    }
    Ok(answer(&state, tenant, version, body).await)
}

/// The CPIX routes' SPEKE branch: the request (already authenticated) carried
/// `X-Speke-Version: value`.
pub async fn answer_header_version(
    state: &AppState,
    tenant: &Tenant,
    value: &HeaderValue,
    body: Bytes,
) -> Response {
    let version = value
        .to_str()
        .map_err(|_| unsupported_version("X-Speke-Version is not text".into()))
        .and_then(|v| SpekeVersion::from_header(Some(v)).map_err(speke_error));
    match version {
        Ok(version) => answer(state, tenant, version, body).await,
        Err(e) => PlainText(e).into_response(),
    }
}

/// Answers a SPEKE request of `version` whose body is `body`.
pub async fn answer(
    state: &AppState,
    tenant: &Tenant,
    version: SpekeVersion,
    body: Bytes,
) -> Response {
    answer_as(state, tenant, version, body, KidSource::Request).await
}

/// A SPEKE request on another vendor's URL (PallyCon's `/cpix/getKey`): the version from
/// `X-Speke-Version` (absent: v1), the kids from `kids`.
pub async fn answer_with_kids(
    state: &AppState,
    tenant: &Tenant,
    headers: &HeaderMap,
    body: Bytes,
    kids: KidSource,
) -> Response {
    match header_version(headers) {
        Ok(version) => answer_as(state, tenant, version, body, kids).await,
        Err(e) => PlainText(e).into_response(),
    }
}

async fn answer_as(
    state: &AppState,
    tenant: &Tenant,
    version: SpekeVersion,
    body: Bytes,
    kids: KidSource,
) -> Response {
    match exchange_speke(state, tenant, version, body, kids).await {
        Ok(doc) => {
            let mut response = match xml_response(doc).await {
                Ok(response) => response,
                Err(e) => return PlainText(e).into_response(),
            };
            let headers = response.headers_mut();
            let agent = HeaderValue::from_static(USER_AGENT);
            if version.is_v2() {
                headers.insert(
                    HeaderName::from_static("x-speke-version"),
                    HeaderValue::from_static(version.header_value()),
                );
                headers.insert(HeaderName::from_static("x-speke-user-agent"), agent);
            } else {
                headers.insert(HeaderName::from_static("speke-user-agent"), agent);
            }
            response
        }
        Err(e) => PlainText(e).into_response(),
    }
}

async fn exchange_speke(
    state: &AppState,
    tenant: &Tenant,
    version: SpekeVersion,
    body: Bytes,
    kids: KidSource,
) -> Result<CpixDocument, ApiError> {
    if body.is_empty() {
        return Err(ApiError::BadRequest(
            "empty request body: expected a SPEKE CPIX document".into(),
        ));
    }
    let doc = crate::packager::cpix::read_request(body).await?;
    let profile = if version.is_v2() {
        validate_v2(&doc, version).map_err(speke_error)?;
        check_scheme_compatibility(&doc).map_err(speke_error)?;
        ExchangeProfile::SPEKE_V2
    } else {
        ExchangeProfile::SPEKE_V1
    };
    let profile = ExchangeProfile { kids, ..profile };
    exchange_with(state, tenant, doc, &profile)
        .await
        .map_err(|e| match e {
            // The document was readable: what the engine refuses is a semantic error.
            ApiError::BadRequest(message) => ApiError::Unprocessable(message),
            other => other,
        })
}

/// The schemes AWS allows per DRM in SPEKE v2 (AWS's SPEKE v2 documentation, "encryption contract"); `None` = no SPEKE rule,
/// the CPIX engine decides.
pub fn speke_v2_schemes(system: DrmSystem) -> Option<&'static [EncryptionScheme]> {
    use EncryptionScheme::{Cbc1, Cbcs, Cenc};
    match system {
        DrmSystem::FairPlay | DrmSystem::FairPlayLegacy | DrmSystem::ClearKeySampleAes => {
            Some(&[Cbcs])
        }
        DrmSystem::Widevine | DrmSystem::PlayReady => Some(&[Cenc, Cbcs]),
        DrmSystem::ClearKeyAes128 | DrmSystem::AwsHlsAes128 => Some(&[Cbc1]),
        DrmSystem::ClearKeyDashIf
        | DrmSystem::CommonPssh
        | DrmSystem::Marlin
        | DrmSystem::NagraPrm => None,
    }
}

fn check_scheme_compatibility(doc: &CpixDocument) -> Result<(), SpekeError> {
    let Some(scheme) = document_scheme(doc)? else {
        return Ok(());
    };
    for drm in doc.drm_systems.iter().flatten() {
        let id = uuid::Uuid::from_bytes(drm.system_id.uuid);
        let Some(system) = DrmSystem::from_system_id(&id) else {
            continue; // refused by the engine as an unknown DRM system
        };
        if let Some(allowed) = speke_v2_schemes(system)
            && !allowed.contains(&scheme)
        {
            return Err(SpekeError::SchemeNotCompatible {
                system_id: keyplex_types::truncate_for_message(&drm.system_id.as_written),
                detail: format!(
                    "{} does not support {} (allowed: {})",
                    system.name(),
                    scheme.as_str(),
                    allowed
                        .iter()
                        .map(|s| s.as_str())
                        .collect::<Vec<_>>()
                        .join(", ")
                ),
            });
        }
    }
    Ok(())
}

/// Tenant, body (413 over the limit) and authentication (which may need the body: SigV4).
fn header_version(headers: &HeaderMap) -> Result<SpekeVersion, ApiError> {
    match headers.get(SPEKE_VERSION_HEADER) {
        None => Ok(SpekeVersion::V1),
        Some(v) => {
            let text = v
                .to_str()
                .map_err(|_| unsupported_version("X-Speke-Version is not text".into()))?;
            SpekeVersion::from_header(Some(text)).map_err(speke_error)
        }
    }
}

fn unsupported_version(detail: String) -> ApiError {
    speke_error(SpekeError::UnsupportedSpekeVersion { detail })
}

/// 422 with AWS's message; the detail (which AWS's fixed messages leave out) goes to the log.
fn speke_error(e: SpekeError) -> ApiError {
    if let Some(detail) = e.detail() {
        tracing::info!(message = %e, %detail, "SPEKE request refused");
    }
    ApiError::Unprocessable(e.to_string())
}
