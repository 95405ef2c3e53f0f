//! DRM signaling for one content key, with the tenant's settings. Every key interface goes
//! through here so that all of them describe a key identically.

use keyplex_drm::signal::{DrmSignaling, SignalKey, SignalOptions, signal};
use keyplex_drm::system::DrmSystem;
use keyplex_types::{ContentKey, EncryptionScheme};

use crate::error::ApiError;
use crate::state::{AppState, Tenant};

/// URLs that point back at keyplex (or where the tenant configured them).
pub struct TenantUrls {
    pub clearkey_la_url: String,
    pub hls_key_url: String,
}

impl TenantUrls {
    pub fn new(state: &AppState, tenant: &Tenant) -> Self {
        let base = state.public_url();
        Self {
            clearkey_la_url: tenant
                .config
                .clearkey_la_url
                .clone()
                .unwrap_or_else(|| format!("{base}/{}/clearkey/v1/licenses", tenant.id)),
            hls_key_url: tenant
                .config
                .hls_key_url
                .clone()
                .unwrap_or_else(|| format!("{base}/{}/hls/v1/keys/{{kid}}", tenant.id)),
        }
    }
}

/// The scheme a DRM system gets when the request does not say: FairPlay only does cbcs.
pub fn default_scheme(system: DrmSystem) -> EncryptionScheme {
    match system {
        DrmSystem::FairPlay | DrmSystem::FairPlayLegacy => EncryptionScheme::Cbcs,
        _ => EncryptionScheme::Cenc,
    }
}

/// Checks, before any key is created, that `system` can be signaled with `scheme` for this
/// tenant, so that a request that will fail stores nothing.
pub fn preflight(
    tenant: &Tenant,
    urls: &TenantUrls,
    system: DrmSystem,
    scheme: EncryptionScheme,
) -> Result<(), ApiError> {
    let probe_key = keyplex_types::ContentKeyValue::from_bytes([0; 16]);
    let probe = [SignalKey {
        kid: keyplex_types::KeyId::from_bytes([0; 16]),
        key: &probe_key,
        iv: keyplex_types::Iv::from_bytes([0; 16]),
    }];
    signal(
        system,
        &probe,
        &options(tenant, urls, "preflight", scheme, None),
    )
    .map(|_| ())
    .map_err(|e| ApiError::BadRequest(e.to_string()))
}

pub fn options<'a>(
    tenant: &'a Tenant,
    urls: &'a TenantUrls,
    content_id: &'a str,
    scheme: EncryptionScheme,
    crypto_period_index: Option<u32>,
) -> SignalOptions<'a> {
    SignalOptions {
        scheme,
        content_id,
        widevine_provider: tenant.config.widevine_provider.as_deref(),
        playready_la_url: tenant.config.playready_la_url.as_deref(),
        clearkey_la_url: Some(urls.clearkey_la_url.as_str()),
        hls_aes128_key_url: Some(urls.hls_key_url.as_str()),
        crypto_period_index,
    }
}

/// Signaling of `system` for one stored key.
pub fn for_key(
    tenant: &Tenant,
    urls: &TenantUrls,
    system: DrmSystem,
    key: &ContentKey,
    scheme: EncryptionScheme,
) -> Result<DrmSignaling, ApiError> {
    let period = key.period.index().and_then(|i| u32::try_from(i).ok());
    let keys = [SignalKey {
        kid: key.kid,
        key: &key.key,
        iv: key.iv,
    }];
    signal(
        system,
        &keys,
        &options(tenant, urls, key.content_id.as_str(), scheme, period),
    )
    .map_err(|e| ApiError::Internal(format!("signaling {system:?} failed after preflight: {e}")))
}
