//! DRM signaling for one content key, with the tenant's settings. Every key interface goes
//! through here so that all of them describe a key identically. A built-in system the
//! tenant redefined (a `drm_systems` entry with `override`, or `prm_template` for Nagra PRM)
//! gets the tenant's definition here ([`crate::drm_systems::DrmCatalog::apply`]).

use hashbrown::HashMap;
use std::sync::Arc;

use keyplex_drm::define::DrmIdentity;
use keyplex_drm::signal::{DrmSignaling, SignalForms, SignalKey, SignalOptions, signal_drm};
use keyplex_drm::system::DrmSystem;
use keyplex_types::{ContentKey, EncryptionScheme, TenantId};

use crate::config::TenantConfig;
use crate::http::error::ApiError;
use crate::state::Tenant;

/// URLs that point back at keyplex (or where the tenant configured them). Built once per
/// tenant at start-up (`Tenant::urls`): they depend only on configuration.
pub struct TenantUrls {
    pub clearkey_la_url: String,
    pub hls_key_url: String,
    /// `fairplay_uri_template`, checked.
    pub fairplay_uri: Option<keyplex_drm::template::Template>,
}

impl TenantUrls {
    /// The defaults are written out here rather than taken from the handlers' paths: they
    /// are URLs handed to players inside signaling (a contract: players and manifests keep
    /// them), and the core names no role's handler. `routes::tests::
    /// default_licence_urls_are_routes_of_their_interfaces` checks that they are routes of the
    /// ClearKey and HLS interfaces; `tests/it/hls_keys.rs` fetches a key through the URL.
    pub fn new(public_url: &str, id: &TenantId, config: &TenantConfig) -> Result<Self, String> {
        Ok(Self {
            fairplay_uri: config.fairplay_uri()?,
            clearkey_la_url: config
                .clearkey_la_url
                .clone()
                .unwrap_or_else(|| format!("{public_url}/{id}/clearkey/v1/licenses")),
            hls_key_url: config
                .hls_key_url
                .clone()
                .unwrap_or_else(|| format!("{public_url}/{id}/hls/v1/keys/{{kid}}")),
        })
    }
}

/// The scheme a DRM system gets when the request does not say: FairPlay only does cbcs.
pub fn default_scheme(drm: &DrmIdentity) -> EncryptionScheme {
    match drm.builtin() {
        Some(DrmSystem::FairPlay | DrmSystem::FairPlayLegacy) => EncryptionScheme::Cbcs,
        _ => EncryptionScheme::Cenc,
    }
}

/// Checks, before any key is created, that `system` can be signaled with `scheme` for this
/// tenant, so that a request that will fail stores nothing.
pub fn preflight(
    tenant: &Tenant,
    drm: &DrmIdentity,
    scheme: EncryptionScheme,
) -> Result<(), ApiError> {
    probe(tenant, drm, scheme).map(|_| ())
}

/// A probe's outcome: the signaling forms, or the client-facing reason there are none.
type ProbeResult = Result<Arc<DrmSignaling>, String>;

/// Memo of [`probe`] results for one tenant, by system id (one system per id in a tenant:
/// its definition, else the built-in one).
#[derive(Default)]
pub struct ProbeCache(std::sync::Mutex<HashMap<(uuid::Uuid, EncryptionScheme), ProbeResult>>);

/// The signaling `system` would get with `scheme` for this tenant, built for an all-zero
/// probe key: tells an interface which forms (pssh, DASH, HLS) a system has before any key
/// exists. Errors are the client's (400): unknown to keyplex, wrong scheme, no template.
/// Memoized per tenant: the answer depends only on the tenant's settings.
pub fn probe(
    tenant: &Tenant,
    drm: &DrmIdentity,
    scheme: EncryptionScheme,
) -> Result<Arc<DrmSignaling>, ApiError> {
    let drm = tenant.drm_systems.apply(drm);
    let id = (drm.system_id(), scheme);
    let cached = tenant
        .probes
        .0
        .lock()
        .ok()
        .and_then(|m| m.get(&id).cloned());
    let result = match cached {
        Some(result) => result,
        None => {
            let result = probe_uncached(tenant, &drm, scheme).map(Arc::new);
            if let Ok(mut m) = tenant.probes.0.lock() {
                m.insert(id, result.clone());
            }
            result
        }
    };
    result.map_err(ApiError::BadRequest)
}

fn probe_uncached(
    tenant: &Tenant,
    drm: &DrmIdentity,
    scheme: EncryptionScheme,
) -> Result<DrmSignaling, String> {
    let probe_kid = keyplex_types::KeyId::from_bytes([0; 16]);
    let probe_key = keyplex_types::ContentKeyValue::from_bytes([0; 16]);
    let probe = [SignalKey {
        kid: probe_kid,
        key: &probe_key,
        iv: keyplex_types::Iv::from_bytes([0; 16]),
    }];
    signal_drm(drm, &probe, &options(tenant, "preflight", scheme, None)).map_err(|e| e.to_string())
}

pub fn options<'a>(
    tenant: &'a Tenant,
    content_id: &'a str,
    scheme: EncryptionScheme,
    crypto_period_index: Option<u32>,
) -> SignalOptions<'a> {
    SignalOptions {
        scheme,
        content_id,
        widevine_provider: tenant.config.widevine_provider.as_deref(),
        playready_la_url: tenant.config.playready_la_url.as_deref(),
        clearkey_la_url: Some(tenant.urls.clearkey_la_url.as_str()),
        hls_aes128_key_url: Some(tenant.urls.hls_key_url.as_str()),
        crypto_period_index,
        track_type: None,
        fairplay_uri: tenant.urls.fairplay_uri.as_ref(),
        forms: SignalForms::ALL,
    }
}

/// Signaling of `system` for one stored key (Nagra PRM from the tenant's template), building
/// only the `forms` the caller will use (the PSSH box always): the tenant's cached entry, with
/// the texts the key interfaces send in base64, built (and kept) on the first request. Callers read it in place: the served path
/// copies only what goes into its answer.
pub fn entry(
    tenant: &Tenant,
    drm: &DrmIdentity,
    key: &ContentKey,
    scheme: EncryptionScheme,
    forms: SignalForms,
) -> Result<Arc<SignalEntry>, ApiError> {
    let drm = tenant.drm_systems.apply(drm);
    let id = SignalId {
        system_id: drm.system_id(),
        kid: key.kid,
        scheme,
        forms,
    };
    if let Some(cached) = tenant.signals.0.get(&id)
        && cached.key == *key
    {
        return Ok(cached);
    }
    let signal = build_for_key(tenant, &drm, key, scheme, forms)?;
    let entry = Arc::new(SignalEntry::new(key.clone(), signal));
    tenant.signals.0.insert(id, entry.clone());
    Ok(entry)
}

/// Signaling already built for this tenant's keys, by (system id, kid, scheme, forms): in a
/// tenant a system id names one system (its definition, else the built-in one).
///
/// Safe to reuse because what signaling depends on never changes for a stored key (its kid,
/// value, IV, content id and period are fixed for ever) or lives in the tenant's settings,
/// and a new [`Tenant`] (with an empty cache) replaces this one whenever those change. A hit
/// is checked against the whole key it was built for, so a caller with other material under
/// the same kid (the fuzzing harness's fixed keys) gets its own signaling. Re-requests of
/// stored content (every live packager, every segment) then skip the PSSH, PlayReady header
/// and DASH/HLS construction, ~11 % of a served CPIX request's CPU, and the base64 encoding
/// of what CPIX and NAGRA send (another ~5 % of a SPEKE answer). Bounded by bytes.
pub struct SignalCache(quick_cache::sync::Cache<SignalId, Arc<SignalEntry>, SignalWeight>);

/// Bytes of signaling one tenant keeps (entries weigh what their strings hold).
const SIGNAL_CACHE_BYTES: u64 = 4 * 1024 * 1024;

impl Default for SignalCache {
    fn default() -> Self {
        Self(quick_cache::sync::Cache::with_weighter(
            2048,
            SIGNAL_CACHE_BYTES,
            SignalWeight,
        ))
    }
}

#[derive(Clone, PartialEq, Eq, Hash)]
struct SignalId {
    system_id: uuid::Uuid,
    kid: keyplex_types::KeyId,
    scheme: EncryptionScheme,
    forms: SignalForms,
}

/// One key's signaling for one DRM system and scheme, and the key it was built for (its
/// bytes are zeroized when the entry goes).
pub struct SignalEntry {
    key: ContentKey,
    pub signal: DrmSignaling,
    /// The texts CPIX (and NAGRA's `pssh`) carry in base64, encoded once.
    pub base64: Base64Texts,
    /// The texts NAGRA's JSON answers carry, as JSON string literals, escaped once.
    pub json: JsonTexts,
}

/// JSON string literals (quoted and escaped) of the texts a NAGRA answer carries: serde_json
/// copies a `RawValue` as it is, where it would scan every string for characters to escape
/// on every answer (~7 % of a NAGRA request's CPU, perf 2026-12-06).
#[derive(Debug, Default)]
pub struct JsonTexts {
    /// `Base64Texts::pssh`.
    pub pssh: Option<Box<serde_json::value::RawValue>>,
    pub content_protection_element: Option<Box<serde_json::value::RawValue>>,
    pub hls_key_uri: Option<Box<serde_json::value::RawValue>>,
    pub hls_media: Option<Box<serde_json::value::RawValue>>,
}

impl JsonTexts {
    fn of(s: &DrmSignaling, base64: &Base64Texts) -> Self {
        // A `&str` always serializes; `None` only if serde_json could ever refuse one.
        let json = |v: &Option<String>| {
            v.as_deref()
                .and_then(|v| serde_json::value::to_raw_value(v).ok())
        };
        Self {
            pssh: json(&base64.pssh),
            content_protection_element: json(&s.content_protection_element),
            hls_key_uri: json(&s.hls_key_uri),
            hls_media: json(&s.hls_media),
        }
    }

    fn bytes(&self) -> usize {
        [
            &self.pssh,
            &self.content_protection_element,
            &self.hls_key_uri,
            &self.hls_media,
        ]
        .iter()
        .map(|v| v.as_ref().map_or(0, |r| r.get().len()))
        .sum()
    }
}

/// base64 of the [`DrmSignaling`] fields of the same names (`None` where the field is).
#[derive(Debug, Default, PartialEq, Eq)]
pub struct Base64Texts {
    pub pssh: Option<String>,
    pub content_protection_data: Option<String>,
    pub hls_key_uri: Option<String>,
    pub hls_keyformat: Option<String>,
    pub hls_keyformatversions: Option<String>,
    pub hls_media: Option<String>,
    pub hls_master: Option<String>,
}

impl Base64Texts {
    fn of(s: &DrmSignaling) -> Self {
        use base64::Engine as _;
        let b64 = |v: &Option<String>| {
            v.as_deref()
                .map(|v| base64::engine::general_purpose::STANDARD.encode(v))
        };
        Self {
            pssh: s
                .pssh
                .as_deref()
                .map(|p| base64::engine::general_purpose::STANDARD.encode(p)),
            content_protection_data: b64(&s.content_protection_data),
            hls_key_uri: b64(&s.hls_key_uri),
            hls_keyformat: b64(&s.hls_keyformat),
            hls_keyformatversions: b64(&s.hls_keyformatversions),
            hls_media: b64(&s.hls_media),
            hls_master: b64(&s.hls_master),
        }
    }

    fn bytes(&self) -> usize {
        [
            &self.pssh,
            &self.content_protection_data,
            &self.hls_key_uri,
            &self.hls_keyformat,
            &self.hls_keyformatversions,
            &self.hls_media,
            &self.hls_master,
        ]
        .iter()
        .map(|v| v.as_ref().map_or(0, String::len))
        .sum()
    }
}

impl SignalEntry {
    fn new(key: ContentKey, signal: DrmSignaling) -> Self {
        let base64 = Base64Texts::of(&signal);
        let json = JsonTexts::of(&signal, &base64);
        Self {
            key,
            signal,
            base64,
            json,
        }
    }
}

#[derive(Clone)]
struct SignalWeight;

impl quick_cache::Weighter<SignalId, Arc<SignalEntry>> for SignalWeight {
    fn weight(&self, _id: &SignalId, cached: &Arc<SignalEntry>) -> u64 {
        let s = &cached.signal;
        let strings = [
            &s.content_protection_data,
            &s.content_protection_element,
            &s.hls_key_uri,
            &s.hls_keyformat,
            &s.hls_keyformatversions,
            &s.hls_media,
            &s.hls_master,
            &s.smooth_streaming_header,
        ];
        let bytes = s.pssh.as_ref().map_or(0, Vec::len)
            + strings
                .iter()
                .map(|v| v.as_ref().map_or(0, String::len))
                .sum::<usize>()
            + cached.base64.bytes()
            + cached.json.bytes();
        // Plus the entry itself (key, struct, Arc, cache slot).
        u64::try_from(bytes).unwrap_or(u64::MAX).saturating_add(400)
    }
}

fn build_for_key(
    tenant: &Tenant,
    drm: &DrmIdentity,
    key: &ContentKey,
    scheme: EncryptionScheme,
    forms: SignalForms,
) -> Result<DrmSignaling, ApiError> {
    let period = key.period.index().and_then(|i| u32::try_from(i).ok());
    let keys = [SignalKey {
        kid: key.kid,
        key: &key.key,
        iv: key.iv,
    }];
    let opts = SignalOptions {
        forms,
        track_type: key.track_type.as_ref().map(|t| t.as_str()),
        ..options(tenant, key.content_id.as_str(), scheme, period)
    };
    signal_drm(drm, &keys, &opts)
        .map_err(|e| ApiError::Internal(format!("signaling {drm} failed after preflight: {e}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use keyplex_types::{ContentId, ContentKeyValue, Iv, KeyId, KeyOrigin, KeyPeriod, TenantId};

    use super::*;
    use crate::registry::{Source, TenantParts};

    fn tenant() -> Tenant {
        let config: crate::config::TenantConfig = toml::from_str(
            r#"playready_la_url = "https://prls.example/licences"
widevine_provider = "cache-test""#,
        )
        .unwrap();
        let parts = TenantParts {
            config,
            source: Source::Config,
            disabled: false,
            created_at: None,
            credentials: Vec::new(),
        };
        Tenant::build(
            TenantId::parse("t").unwrap(),
            parts,
            "http://127.0.0.1:8080",
        )
        .unwrap()
    }

    /// A tenant that defines Irdeto and overrides Nagra PRM.
    fn defining_tenant() -> Tenant {
        let config: crate::config::TenantConfig = toml::from_str(
            r#"
[[drm_systems]]
name = "irdeto"
system_id = "80a6be7e-1448-4c37-9e70-d5aebe04c8d2"
pssh_data = "irdeto:{kid}"

[[drm_systems]]
name = "prm"
system_id = "adb41c24-2dbf-4a6d-958b-4457c0d27b95"
override = true
pssh_data = "prm:{content_id}"
"#,
        )
        .unwrap();
        let parts = TenantParts {
            config,
            source: Source::Config,
            disabled: false,
            created_at: None,
            credentials: Vec::new(),
        };
        Tenant::build(
            TenantId::parse("d").unwrap(),
            parts,
            "http://127.0.0.1:8080",
        )
        .unwrap()
    }

    /// The cache keeps one entry per system id: a defined system, a built-in one and a
    /// built-in one the tenant overrides never get each other's signaling for the same key.
    #[test]
    fn the_cache_tells_defined_built_in_and_overridden_systems_apart() {
        let defining = defining_tenant();
        let key = key(1);
        let data = |drm: DrmIdentity| {
            let entry = entry(
                &defining,
                &drm,
                &key,
                EncryptionScheme::Cenc,
                SignalForms::ALL,
            )
            .unwrap();
            let (pssh, _) =
                keyplex_drm::PsshBox::parse(entry.signal.pssh.as_deref().unwrap()).unwrap();
            (pssh.system_id, pssh.data)
        };
        let irdeto = defining
            .drm_systems
            .resolve(&"80a6be7e-1448-4c37-9e70-d5aebe04c8d2".parse().unwrap())
            .unwrap();
        for _ in 0..2 {
            let (id, payload) = data(irdeto.clone());
            assert_eq!(id.to_string(), "80a6be7e-1448-4c37-9e70-d5aebe04c8d2");
            assert_eq!(payload, format!("irdeto:{}", key.kid).into_bytes());
            let (id, payload) = data(DrmIdentity::BuiltIn(DrmSystem::NagraPrm));
            assert_eq!(id, DrmSystem::NagraPrm.system_id());
            assert_eq!(
                payload, b"prm:movie",
                "the tenant's override, not the default"
            );
            let (id, _) = data(DrmIdentity::BuiltIn(DrmSystem::Widevine));
            assert_eq!(id, DrmSystem::Widevine.system_id());
        }
        assert_eq!(defining.signals.0.len(), 3);
        // Another tenant without the override gets keyplex's default PRM data.
        let plain = tenant();
        let entry = entry(
            &plain,
            &DrmIdentity::BuiltIn(DrmSystem::NagraPrm),
            &key,
            EncryptionScheme::Cenc,
            SignalForms::ALL,
        )
        .unwrap();
        let (pssh, _) = keyplex_drm::PsshBox::parse(entry.signal.pssh.as_deref().unwrap()).unwrap();
        assert_eq!(
            pssh.data,
            keyplex_drm::nagra::prm_pssh_data("movie", &key.kid)
        );
    }

    fn key(value: u8) -> ContentKey {
        ContentKey {
            kid: KeyId::from_bytes([7; 16]),
            content_id: ContentId::parse("movie").unwrap(),
            key: ContentKeyValue::from_bytes([value; 16]),
            iv: Iv::from_bytes([9; 16]),
            track_type: None,
            period: KeyPeriod::Vod,
            origin: KeyOrigin::Generated,
        }
    }

    /// The cache answers what building afresh answers, and never another key's signaling
    /// for the same kid (the PlayReady header's checksum depends on the key value).
    #[test]
    fn cached_signaling_is_what_building_gives_and_is_bound_to_the_whole_key() {
        let tenant = tenant();
        let scheme = EncryptionScheme::Cenc;
        let cached = |system, key: &ContentKey| {
            entry(
                &tenant,
                &DrmIdentity::BuiltIn(system),
                key,
                scheme,
                SignalForms::ALL,
            )
            .unwrap()
            .signal
            .clone()
        };
        let fresh = |system, key: &ContentKey| {
            build_for_key(
                &tenant,
                &DrmIdentity::BuiltIn(system),
                key,
                scheme,
                SignalForms::ALL,
            )
            .unwrap()
        };
        for system in [
            DrmSystem::Widevine,
            DrmSystem::PlayReady,
            DrmSystem::CommonPssh,
        ] {
            assert_eq!(
                cached(system, &key(1)),
                fresh(system, &key(1)),
                "{system:?}"
            );
            assert_eq!(
                cached(system, &key(1)),
                fresh(system, &key(1)),
                "{system:?} from the cache"
            );
            let entry = entry(
                &tenant,
                &DrmIdentity::BuiltIn(system),
                &key(1),
                scheme,
                SignalForms::ALL,
            )
            .unwrap();
            assert_eq!(
                entry.base64,
                Base64Texts::of(&fresh(system, &key(1))),
                "{system:?}: the cached base64 texts are those of fresh signaling"
            );
            let decoded = |text: &Option<String>| {
                use base64::Engine as _;
                base64::engine::general_purpose::STANDARD
                    .decode(text.as_deref().unwrap())
                    .unwrap()
            };
            let built = fresh(system, &key(1));
            assert_eq!(decoded(&entry.base64.pssh), built.pssh.unwrap());
            assert_eq!(
                decoded(&entry.base64.content_protection_data),
                built.content_protection_data.unwrap().into_bytes()
            );
        }
        let other = cached(DrmSystem::PlayReady, &key(2));
        assert_eq!(other, fresh(DrmSystem::PlayReady, &key(2)));
        assert_ne!(
            other.content_protection_data,
            cached(DrmSystem::PlayReady, &key(1)).content_protection_data,
            "another key value under the same kid must not get the cached signaling"
        );
        assert!(tenant.signals.0.len() >= 3);
    }
}
