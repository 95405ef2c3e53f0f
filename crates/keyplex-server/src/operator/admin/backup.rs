//! `/admin/v1/tenants/{id}/export` and `…/import`: a tenant's keys in an encrypted bundle
//! (AES-256-GCM payload, the bundle key wrapped to the operator's RSA key).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::response::{IntoResponse, Response};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_store::{AuditAction, ExportedKey};
use keyplex_types::{
    ContentId, ContentKey, ContentKeyValue, Iv, KeyId, KeyOrigin, KeyPeriod, TrackType,
};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

use super::contents::origin_name;
use super::{AdminCaller, audit_change, json_body};

/// The format of an encrypted key bundle.
pub(super) const BUNDLE_FORMAT: &str = "keyplex-key-bundle/1";

/// A key bundle as written to the backup file: metadata in the clear, keys encrypted.
#[derive(Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct KeyBundle {
    /// `keyplex-key-bundle/1`.
    pub format: String,
    /// The tenant the keys were exported from.
    pub tenant: String,
    #[serde(with = "time::serde::rfc3339")]
    pub created_at: OffsetDateTime,
    /// How many keys the bundle holds.
    pub keys: u64,
    /// SHA-256 of the operator key's SubjectPublicKeyInfo.
    pub recipient: String,
    /// `RSA-OAEP-256`.
    pub key_encryption: String,
    /// `A256GCM`.
    pub content_encryption: String,
    /// base64 of the AES key, encrypted to the operator's RSA key.
    pub encrypted_key: String,
    /// base64 of the 12-byte AES-GCM nonce.
    pub nonce: String,
    /// base64 of the encrypted keys (JSON).
    pub ciphertext: String,
}

/// One key inside a bundle's encrypted payload.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct BundleKey {
    kid: String,
    content_id: String,
    /// base64 of the 16 key bytes.
    key: String,
    /// base64 of the 16 IV bytes.
    iv: String,
    track_type: Option<String>,
    period: Option<u64>,
    origin: String,
    slotted: bool,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
}

impl From<&ExportedKey> for BundleKey {
    fn from(e: &ExportedKey) -> Self {
        let k = &e.key;
        Self {
            kid: k.kid.to_string(),
            content_id: k.content_id.as_str().to_owned(),
            key: B64.encode(k.key.expose()),
            iv: B64.encode(k.iv.as_bytes()),
            track_type: k.track_type.as_ref().map(|t| t.as_str().to_owned()),
            period: k.period.index(),
            origin: origin_name(k.origin).to_owned(),
            slotted: e.slotted,
            created_at: e.created_at,
        }
    }
}

impl BundleKey {
    fn into_exported(self) -> Result<ExportedKey, String> {
        let kid: KeyId = self
            .kid
            .parse()
            .map_err(|e| format!("kid {:?}: {e}", self.kid))?;
        let bad = |what: &str| format!("key {kid}: {what}");
        let key_bytes = Zeroizing::new(
            B64.decode(&self.key)
                .map_err(|_| bad("key is not base64"))?,
        );
        let iv = B64.decode(&self.iv).map_err(|_| bad("iv is not base64"))?;
        Ok(ExportedKey {
            key: ContentKey {
                kid,
                content_id: ContentId::parse(&self.content_id).map_err(|e| bad(&e.to_string()))?,
                key: ContentKeyValue::from_slice(&key_bytes).map_err(|e| bad(&e.to_string()))?,
                iv: Iv::from_slice(&iv).map_err(|e| bad(&e.to_string()))?,
                track_type: self
                    .track_type
                    .as_deref()
                    .map(TrackType::parse)
                    .transpose()
                    .map_err(|e| bad(&e.to_string()))?,
                period: self
                    .period
                    .map_or(Ok(KeyPeriod::Vod), KeyPeriod::from_index)
                    .map_err(|e| bad(&e.to_string()))?,
                origin: match self.origin.as_str() {
                    "generated" => KeyOrigin::Generated,
                    "supplied" => KeyOrigin::Supplied,
                    _ => return Err(bad("origin is not generated or supplied")),
                },
            },
            slotted: self.slotted,
            created_at: self.created_at,
        })
    }
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ExportRequest {
    /// The operator's RSA public key (`PUBLIC KEY` or `CERTIFICATE` PEM, ≥ 2048 bits).
    public_key_pem: String,
}

#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{id}/export",
    operation_id = "admin_export_keys",
    tag = "admin",
    summary = "Export a tenant's keys, encrypted to an RSA key",
    params(
        ("id" = String, Path, description = "Tenant id"),
    ),
    request_body(content = ExportRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "The key bundle", body = KeyBundle),
        (status = 400, description = "Malformed request or public key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub(crate) async fn export_keys(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Result<Json<ExportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let request = json_body(body)?;
    let exported = state.store().export_keys(&tenant.id).await?;
    let payload: Vec<BundleKey> = exported.iter().map(BundleKey::from).collect();
    let mut plaintext = Zeroizing::new(Vec::with_capacity(payload.len() * 260));
    serde_json::to_writer(&mut *plaintext, &payload)
        .map_err(|e| ApiError::Internal(format!("cannot serialise the bundle: {e}")))?;
    drop(payload);
    let sealed = keyplex_crypto::backup::seal(&request.public_key_pem, &plaintext)
        .map_err(|e| ApiError::BadRequest(format!("public_key_pem: {e}")))?;
    let bundle = KeyBundle {
        format: BUNDLE_FORMAT.to_owned(),
        tenant: tenant.id.as_str().to_owned(),
        created_at: OffsetDateTime::now_utc(),
        keys: exported.len() as u64,
        recipient: sealed.recipient,
        key_encryption: "RSA-OAEP-256".to_owned(),
        content_encryption: "A256GCM".to_owned(),
        encrypted_key: B64.encode(&sealed.encrypted_key),
        nonce: B64.encode(sealed.nonce),
        ciphertext: B64.encode(&sealed.ciphertext),
    };
    audit_change(
        &state,
        &who,
        tenant.id.as_str(),
        AuditAction::KeysExported,
        format!("{} keys for recipient {}", bundle.keys, bundle.recipient),
    )
    .await?;
    Ok(Json(bundle).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct ImportRequest {
    bundle: KeyBundle,
    /// The operator's RSA private key (unencrypted PKCS#8 `PRIVATE KEY` PEM), used for this
    /// request only.
    private_key_pem: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ImportAnswer {
    /// Keys added.
    imported: u64,
    /// Identical keys the store already had.
    already_present: u64,
}

#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{id}/import",
    operation_id = "admin_import_keys",
    tag = "admin",
    summary = "Import a key bundle into a tenant",
    params(
        ("id" = String, Path, description = "Tenant id"),
    ),
    request_body(content = ImportRequest, content_type = "application/json"),
    responses(
        (status = 200, description = "What was imported", body = ImportAnswer),
        (status = 400, description = "Malformed request, or a bundle that does not open with this key", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A key id of the bundle exists with another key (nothing imported)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub(crate) async fn import_keys(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Result<Json<ImportRequest>, JsonRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let request = json_body(body)?;
    let private_key_pem = Zeroizing::new(request.private_key_pem);
    let bundle = &request.bundle;
    if bundle.format != BUNDLE_FORMAT {
        return Err(ApiError::BadRequest(format!(
            "bundle format {:?} is not {BUNDLE_FORMAT}",
            keyplex_types::truncate_for_message(&bundle.format)
        )));
    }
    let decode = |what: &str, text: &str| {
        B64.decode(text)
            .map_err(|_| ApiError::BadRequest(format!("bundle {what} is not base64")))
    };
    let nonce: [u8; 12] = decode("nonce", &bundle.nonce)?
        .try_into()
        .map_err(|_| ApiError::BadRequest("bundle nonce must be 12 bytes".into()))?;
    let sealed = keyplex_crypto::backup::SealedBundle {
        encrypted_key: decode("encrypted_key", &bundle.encrypted_key)?,
        nonce,
        ciphertext: decode("ciphertext", &bundle.ciphertext)?,
        recipient: bundle.recipient.clone(),
    };
    let plaintext = keyplex_crypto::backup::open(&private_key_pem, &sealed).map_err(|e| {
        ApiError::BadRequest(format!(
            "the bundle does not open with this private key ({e}): wrong key or modified bundle"
        ))
    })?;
    let keys: Vec<BundleKey> = serde_json::from_slice(&plaintext)
        .map_err(|e| ApiError::BadRequest(format!("bundle payload: {e}")))?;
    let keys = keys
        .into_iter()
        .map(BundleKey::into_exported)
        .collect::<Result<Vec<_>, _>>()
        .map_err(|e| ApiError::BadRequest(format!("bundle payload: {e}")))?;
    let outcome = state.store().import_keys(&tenant.id, &keys).await?;
    audit_change(
        &state,
        &who,
        tenant.id.as_str(),
        AuditAction::KeysImported,
        format!(
            "{} imported, {} already present, from a bundle of tenant {}",
            outcome.imported,
            outcome.already_present,
            keyplex_types::truncate_for_message(&bundle.tenant)
        ),
    )
    .await?;
    Ok(Json(ImportAnswer {
        imported: outcome.imported,
        already_present: outcome.already_present,
    })
    .into_response())
}
