//! keyplex configuration: the TOML file of `keyplex serve --config FILE`, with defaults.
//!
//! Key names are the public contract (`shared/design/contract.md`): add, never rename.
//! Unknown keys are rejected so that a typo never silently disables a setting.
//! Secrets in here have redacted `Debug` output.

use std::collections::BTreeMap;
use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;

use keyplex_types::{ContentId, TenantId};
use serde::Deserialize;

/// The whole configuration file.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Config {
    #[serde(default)]
    pub server: ServerConfig,
    #[serde(default)]
    pub admin: AdminConfig,
    #[serde(default)]
    pub tenants: BTreeMap<String, TenantConfig>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ServerConfig {
    #[serde(default = "default_listen")]
    pub listen: SocketAddr,
    #[serde(default = "default_data_dir")]
    pub data_dir: PathBuf,
    /// Several nodes share one PostgreSQL (a later release); SQLite in `data_dir` otherwise.
    #[serde(default)]
    pub database_url: Option<Secret>,
    /// A file holding the master key as 64 hex characters (mode 0600). Default:
    /// `<data_dir>/master.key`, created on first start. `KEYPLEX_MASTER_KEY` overrides both.
    #[serde(default)]
    pub master_key_file: Option<PathBuf>,
    /// Largest request body accepted, in bytes (larger → 413).
    #[serde(default = "default_max_body_bytes")]
    pub max_body_bytes: usize,
    /// The base URL players and packagers reach keyplex at (used in signaling that points
    /// back at keyplex: ClearKey licence URL, HLS AES-128 key URL). Default: `http://<listen>`.
    #[serde(default)]
    pub public_url: Option<String>,
    /// The folder of the reference players served at `/players/` (built by
    /// `players/build.sh`). Default: `players/` beside the keyplex binary, else
    /// `./players/dist`.
    #[serde(default)]
    pub players_dir: Option<PathBuf>,
    /// A request must be received and answered within this many seconds: a body still
    /// arriving at the deadline is answered 408, a handler still working 503.
    #[serde(default = "default_request_timeout_seconds")]
    pub request_timeout_seconds: u64,
    /// A connection must deliver a request's headers within this many seconds of being
    /// opened or of its previous response (idle keep-alive connections included), or it is
    /// closed. Slow-header clients (slowloris) hold a connection at most this long.
    #[serde(default = "default_header_timeout_seconds")]
    pub header_timeout_seconds: u64,
    /// Most header fields one request may carry (more → 431).
    #[serde(default = "default_max_headers")]
    pub max_headers: usize,
    /// Largest request line plus headers, in bytes (larger → 431).
    #[serde(default = "default_max_header_bytes")]
    pub max_header_bytes: usize,
    /// Open connections served at once; further clients wait in the listen backlog.
    #[serde(default = "default_max_connections")]
    pub max_connections: usize,
    /// HTTPS on the listener (rustls). Without it, plain HTTP (behind a TLS-terminating proxy).
    #[serde(default)]
    pub tls: Option<TlsConfig>,
}

/// `[server.tls]`: PEM files, re-read on SIGHUP and when either file changes, so that a
/// renewed certificate is served without a restart (a broken renewal keeps the old one).
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TlsConfig {
    /// The certificate chain, leaf first (PEM).
    pub cert_file: PathBuf,
    /// The private key (PEM: PKCS#8, PKCS#1 RSA or SEC1 EC).
    pub key_file: PathBuf,
}

impl Default for ServerConfig {
    fn default() -> Self {
        Self {
            listen: default_listen(),
            data_dir: default_data_dir(),
            database_url: None,
            master_key_file: None,
            max_body_bytes: default_max_body_bytes(),
            public_url: None,
            players_dir: None,
            request_timeout_seconds: default_request_timeout_seconds(),
            header_timeout_seconds: default_header_timeout_seconds(),
            max_headers: default_max_headers(),
            max_header_bytes: default_max_header_bytes(),
            max_connections: default_max_connections(),
            tls: None,
        }
    }
}

fn default_listen() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], 8080))
}
fn default_data_dir() -> PathBuf {
    PathBuf::from("./keyplex-data")
}
const fn default_max_body_bytes() -> usize {
    1024 * 1024
}
const fn default_request_timeout_seconds() -> u64 {
    30
}
const fn default_header_timeout_seconds() -> u64 {
    20
}
const fn default_max_headers() -> usize {
    64
}
const fn default_max_header_bytes() -> usize {
    16 * 1024
}
const fn default_max_connections() -> usize {
    4096
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminConfig {
    /// Bearer token for `/admin/v1`.
    #[serde(default)]
    pub token: Option<Secret>,
    /// Keys that verify admin JWTs (`exp` required), as an alternative to `token`.
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// `GET /metrics` requires the admin token too (it names tenants).
    #[serde(default)]
    pub protect_metrics: bool,
    /// Audit events older than this many days are deleted (hourly); 0 keeps them for ever.
    #[serde(default = "default_audit_retention_days")]
    pub audit_retention_days: u32,
}

const fn default_audit_retention_days() -> u32 {
    90
}

impl Default for AdminConfig {
    fn default() -> Self {
        Self {
            token: None,
            jwt: None,
            protect_metrics: false,
            audit_retention_days: default_audit_retention_days(),
        }
    }
}

/// One tenant (operator). Every key route lives under `/{tenant}/…`.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TenantConfig {
    /// HTTP Basic credentials for packagers.
    #[serde(default)]
    pub basic: Vec<BasicCredential>,
    /// JWT header tokens for packagers (`nv-authorizations` or `Authorization: Bearer`).
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    /// AWS SigV4 static credentials (SPEKE).
    #[serde(default)]
    pub sigv4: Vec<SigV4Credential>,
    /// Widevine common-encryption API signers (Shaka Packager `--signer`).
    #[serde(default)]
    pub widevine_signers: Vec<WidevineSigner>,
    /// Token for the GET-style CPIX API.
    #[serde(default)]
    pub get_token: Option<Secret>,
    /// Whether `get_token` may also be sent as a path segment (ends up in access logs).
    #[serde(default)]
    pub get_token_in_path: bool,
    /// keyplex chooses key ids for CPIX/SPEKE requests too (SPEKE "KID override").
    #[serde(default)]
    pub kid_override: bool,
    /// Length of a key period for time-based key rotation.
    #[serde(default)]
    pub crypto_period_seconds: Option<u32>,
    /// PlayReady licence acquisition URL written into PlayReady headers.
    #[serde(default)]
    pub playready_la_url: Option<String>,
    /// Widevine `provider` written into Widevine PSSH data.
    #[serde(default)]
    pub widevine_provider: Option<String>,
    /// ClearKey licence URL for DASH signaling (`dashif:Laurl`). Default: keyplex's own
    /// `/{tenant}/clearkey/v1/licenses`.
    #[serde(default)]
    pub clearkey_la_url: Option<String>,
    /// HLS AES-128 key URL, `{kid}` replaced by the key id. Default: keyplex's own
    /// `/{tenant}/hls/v1/keys/{kid}`.
    #[serde(default)]
    pub hls_key_url: Option<String>,
    /// Nagra PRM signaling override (see [`PrmTemplate`]). Without one keyplex writes the
    /// PRM pssh data the public parsers read (`keyplex_drm::nagra`).
    #[serde(default)]
    pub prm_template: Option<PrmTemplate>,
    /// DRM systems the tenant defines (`[[tenants.X.drm_systems]]`): Irdeto, Conax, …, or
    /// an override of a built-in system's signaling ([`crate::drm_systems`]).
    #[serde(default)]
    pub drm_systems: Vec<crate::drm_systems::DrmSystemConfig>,
    /// The FairPlay key URI written into HLS signaling by every interface: a template with
    /// `{kid}`, `{kid_hex}`, `{kid_base64}`, `{content_id}` and `{period}`. Default
    /// `skd://{kid}`. A KSM expects its own form (PallyCon's: `skd://{kid_base64}`).
    #[serde(default)]
    pub fairplay_uri_template: Option<String>,
    /// PallyCon-style token (`/v1|v2/cpix/pallycon/getKey/{enc_token}`,
    /// `/cpix/getKey?enc-token=`, `/cpix/anevia/{format}/{enc_token}/{cid}`).
    #[serde(default)]
    pub enc_token: Option<Secret>,
    /// How far ahead (and back) of now a NAGRA `scheduledKey.timestamp` may ask for a key
    /// when keys rotate, in days. Default 31.
    #[serde(default)]
    pub max_key_lead_days: Option<u32>,
    #[serde(default)]
    pub rate_limit: Option<RateLimit>,
    /// Failed authentications one client address may make per minute on this tenant's routes
    /// before it gets 429 (default [`DEFAULT_AUTH_FAILURES_PER_MINUTE`]).
    #[serde(default)]
    pub auth_failure_limit: Option<AuthFailureLimit>,
    #[serde(default)]
    pub licence: Option<LicenceConfig>,
    /// Packager JWT keys added through the admin API (beside `jwt`); never in the file.
    #[serde(skip)]
    pub extra_jwt: Vec<JwtConfig>,
    /// GET-style CPIX tokens added through the admin API (beside `get_token`).
    #[serde(skip)]
    pub extra_get_tokens: Vec<Secret>,
    /// PallyCon-style tokens added through the admin API (beside `enc_token`).
    #[serde(skip)]
    pub extra_enc_tokens: Vec<Secret>,
    /// DRM systems defined through the admin API (beside `drm_systems`).
    #[serde(skip)]
    pub extra_drm_systems: Vec<crate::drm_systems::DrmSystemConfig>,
}

/// `max_key_lead_days` when the tenant does not set it.
pub const DEFAULT_MAX_KEY_LEAD_DAYS: u32 = 31;

impl TenantConfig {
    /// Every packager JWT key set: the file's and the admin API's.
    pub fn jwt_keys(&self) -> impl Iterator<Item = &JwtConfig> {
        self.jwt.iter().chain(&self.extra_jwt)
    }

    /// Every GET-style CPIX token.
    pub fn get_tokens(&self) -> impl Iterator<Item = &Secret> {
        self.get_token.iter().chain(&self.extra_get_tokens)
    }

    /// Every PallyCon-style `enc_token`.
    pub fn enc_tokens(&self) -> impl Iterator<Item = &Secret> {
        self.enc_token.iter().chain(&self.extra_enc_tokens)
    }

    /// The FairPlay key URI template, checked.
    pub fn fairplay_uri(&self) -> Result<Option<keyplex_drm::template::Template>, String> {
        self.fairplay_uri_template
            .as_deref()
            .map(|t| {
                keyplex_drm::template::Template::parse(
                    t,
                    keyplex_drm::template::FAIRPLAY_URI_PLACEHOLDERS,
                )
                .map_err(|e| format!("fairplay_uri_template: {e}"))
            })
            .transpose()
    }

    /// `max_key_lead_days`, or its default.
    pub fn max_key_lead(&self) -> time::Duration {
        time::Duration::days(i64::from(
            self.max_key_lead_days.unwrap_or(DEFAULT_MAX_KEY_LEAD_DAYS),
        ))
    }

    /// Whether any packager credential is configured in the fields the file has (the admin
    /// API refuses them in a new tenant's settings: credentials go through `/credentials`).
    pub fn has_file_credentials(&self) -> bool {
        !self.basic.is_empty()
            || self.jwt.is_some()
            || !self.sigv4.is_empty()
            || !self.widevine_signers.is_empty()
            || self.get_token.is_some()
            || self.enc_token.is_some()
            || self.licence.as_ref().is_some_and(|l| {
                l.jwt.is_some() || l.upstream.values().any(|u| u.signing_key.is_some())
            })
    }

    /// Checks what serde cannot: key lengths, sensible numbers, usable credentials.
    pub fn validate(&self) -> Result<(), String> {
        if self.crypto_period_seconds == Some(0) {
            return Err("crypto_period_seconds must be at least 1".into());
        }
        if self.max_key_lead_days == Some(0) || self.max_key_lead_days > Some(3660) {
            return Err("max_key_lead_days must be between 1 and 3660".into());
        }
        self.fairplay_uri()?;
        for token in self.enc_tokens() {
            if token.expose().len() < 16 {
                return Err("enc_token must be at least 16 characters".into());
            }
        }
        if self.auth_failure_limit.is_some_and(|l| l.per_minute == 0) {
            return Err("auth_failure_limit.per_minute must be at least 1".into());
        }
        if let Some(limit) = self.rate_limit
            && (limit.requests_per_second == 0 || limit.burst == 0)
        {
            return Err("rate_limit needs requests_per_second and burst of at least 1".into());
        }
        for signer in &self.widevine_signers {
            let key_ok = hex::decode(signer.aes_key.expose()).is_ok_and(|k| k.len() == 32);
            let iv_ok = hex::decode(&signer.aes_iv).is_ok_and(|k| k.len() == 16);
            if signer.name.is_empty() || !key_ok || !iv_ok {
                return Err(format!(
                    "widevine signer {:?}: needs a name, aes_key must be 64 hex characters and aes_iv 32",
                    signer.name
                ));
            }
        }
        // Every definition (and prm_template, their alias) checked as it will be served.
        crate::drm_systems::DrmCatalog::build(self)?;
        for b in &self.basic {
            if b.user.is_empty() || b.user.contains(':') || b.password.expose().is_empty() {
                return Err("basic credentials need a user without ':' and a password".into());
            }
        }
        for sigv4 in &self.sigv4 {
            if sigv4.access_key_id.is_empty() || sigv4.secret_access_key.expose().is_empty() {
                return Err(
                    "sigv4 credentials need an access_key_id and a secret_access_key".into(),
                );
            }
        }
        for jwt in self.jwt_keys() {
            check_jwt_keys(jwt)?;
        }
        if let Some(licence) = &self.licence {
            licence.validate()?;
            // Only the form here: whether a name is one of the tenant's DRM systems depends on
            // the definitions the admin API stored too, so it is checked once they are merged
            // (`AppState::check_file_upstreams` at start-up, a warning on a later rebuild).
            for drm in licence.upstream.keys() {
                if !UPSTREAM_NAMES.contains(&drm.as_str())
                    && !keyplex_drm::define::is_valid_name(drm)
                {
                    return Err(format!(
                        "licence.upstream: {:?} is neither one of {} nor a DRM system name \
                         ([a-z0-9][a-z0-9_-]*, the name of one of the tenant's drm_systems)",
                        keyplex_types::truncate_for_message(drm),
                        UPSTREAM_NAMES.join(", ")
                    ));
                }
            }
        }
        Ok(())
    }
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct BasicCredential {
    pub user: String,
    pub password: Secret,
}

/// Keys that verify JWTs. Exactly the algorithms configured are accepted.
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct JwtConfig {
    #[serde(default)]
    pub hs256_secret: Option<Secret>,
    #[serde(default)]
    pub rs256_public_key_pem: Option<String>,
    #[serde(default)]
    pub es256_public_key_pem: Option<String>,
    /// Required `iss`, if set.
    #[serde(default)]
    pub issuer: Option<String>,
    /// Required `aud`, if set.
    #[serde(default)]
    pub audience: Option<String>,
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SigV4Credential {
    pub access_key_id: String,
    pub secret_access_key: Secret,
    #[serde(default = "default_region")]
    pub region: String,
    #[serde(default = "default_service")]
    pub service: String,
}
fn default_region() -> String {
    "us-east-1".to_owned()
}
fn default_service() -> String {
    "execute-api".to_owned()
}

#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct WidevineSigner {
    pub name: String,
    /// 64 hex characters (AES-256 key).
    pub aes_key: Secret,
    /// 32 hex characters.
    pub aes_iv: String,
}

impl WidevineSigner {
    /// The signature of a Widevine request or licence message: AES-256-CBC (PKCS#7) of
    /// SHA-1(message bytes) under the signer's key and IV — Shaka Packager's
    /// `request_signer.cc`, and Widevine's cloud licence proxy API. Verifies the Widevine key
    /// API's requests and signs the licence proxy's.
    pub fn signature(&self, message: &[u8]) -> Result<Vec<u8>, crate::http::error::ApiError> {
        use crate::http::error::ApiError;
        use sha1::Digest as _;
        // Both were checked when the configuration was loaded; a failure here is ours.
        let key = zeroize::Zeroizing::new(
            hex::decode(self.aes_key.expose())
                .map_err(|_| ApiError::Internal("widevine signer aes_key is not hex".into()))?,
        );
        let iv: [u8; 16] = hex::decode(&self.aes_iv)
            .ok()
            .and_then(|iv| iv.try_into().ok())
            .ok_or_else(|| {
                ApiError::Internal("widevine signer aes_iv is not 16 hex bytes".into())
            })?;
        let digest = sha1::Sha1::digest(message);
        Ok(keyplex_crypto::block::aes_cbc_encrypt_pkcs7(
            &key, &iv, &digest,
        )?)
    }
}

/// How keyplex writes Nagra PRM (`adb41c24-2dbf-4a6d-958b-4457c0d27b95`) signaling for a
/// tenant. The PRM payload is proprietary, so it comes from the operator (as NAGRA provides
/// it) rather than from keyplex. An alias of a `drm_systems` entry overriding PRM
/// ([`crate::drm_systems::DrmSystemConfig::from_prm_template`]). Placeholders in the text
/// fields: those of `drm_systems` templates, among them `{kid}` (key id, 8-4-4-4-12 lower
/// case), `{kid_hex}` (32 hex digits), `{content_id}`, `{pssh}` (base64 of the whole PRM
/// pssh box) and `{pssh_data}` (base64 of `pssh_data_base64`'s bytes); another name is
/// refused when the configuration is loaded.
#[derive(Clone, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PrmTemplate {
    /// base64 of the data of the PRM pssh box (a v0 box with the PRM system id).
    pub pssh_data_base64: String,
    /// The DASH `<ContentProtection …>` element. Default: the standard element with the
    /// pssh box in `cenc:pssh`.
    #[serde(default)]
    pub content_protection: Option<String>,
    /// The HLS `EXT-X-KEY` URI. Default: the PRM pssh box as a data URI.
    #[serde(default)]
    pub hls_key_uri: Option<String>,
    /// The HLS `KEYFORMAT`. Default: `urn:uuid:adb41c24-2dbf-4a6d-958b-4457c0d27b95`.
    #[serde(default)]
    pub hls_keyformat: Option<String>,
}

/// `auth_failure_limit = { per_minute = N }`: failed authentications per client address.
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AuthFailureLimit {
    pub per_minute: u32,
}

/// Failed authentications a client address may make per minute when the tenant sets none:
/// generous for a misconfigured packager retrying, a wall for guessing.
pub const DEFAULT_AUTH_FAILURES_PER_MINUTE: u32 = 300;

/// `rate_limit = { requests_per_second = N, burst = M }`: per credential (`rate_limit.rs`).
#[derive(Clone, Copy, Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RateLimit {
    pub requests_per_second: u32,
    pub burst: u32,
}

/// The player side of a tenant (licences).
#[derive(Clone, Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LicenceConfig {
    #[serde(default)]
    pub jwt: Option<JwtConfig>,
    #[serde(default)]
    pub cors_origins: Vec<String>,
    /// The licence proxy's upstream licence server per DRM (`widevine`, `playready`,
    /// `fairplay`, `prm`): a plain `http(s)://` URL (keyplex's own JSON form, for an
    /// operator's gateway) or a table naming the service's real protocol ([`Upstream`]).
    #[serde(default)]
    pub upstream: BTreeMap<String, Upstream>,
    /// The licence rules of contents that have none of their own
    /// (`PUT /admin/v1/tenants/{t}/contents/{cid}/licence-policy`).
    #[serde(default)]
    pub policy: Option<crate::licence_policy::ContentPolicy>,
    /// The licence routes refuse a licence unless the user has a live secure session
    /// (`/{tenant}/ssm/v1/`) covering the content.
    #[serde(default)]
    pub require_session: bool,
    /// How long the licence proxy waits for one upstream attempt (default 10, 1 to 120).
    #[serde(default)]
    pub upstream_timeout_seconds: Option<u64>,
    #[serde(default)]
    pub replay_protection: bool,
    /// Heartbeat period of secure sessions (`/{tenant}/ssm/v1/`) when the entitlement's
    /// policy has no `renewal_interval` (default 60, 1 to 86400).
    #[serde(default)]
    pub heartbeat_seconds: Option<u64>,
    /// Product ids an entitlement token may name in its `products` claim, each with the
    /// content ids it covers: `[tenants.acme.licence.products] gold = ["movie-1", "movie-2"]`.
    #[serde(default)]
    pub products: BTreeMap<String, Vec<String>>,
    /// Entitlement token keys added through the admin API (beside `jwt`).
    #[serde(skip)]
    pub extra_jwt: Vec<JwtConfig>,
}

impl LicenceConfig {
    /// Every entitlement token key set: the file's and the admin API's.
    pub fn jwt_keys(&self) -> impl Iterator<Item = &JwtConfig> {
        self.jwt.iter().chain(&self.extra_jwt)
    }

    /// What serde cannot check: usable token keys, origins, content ids of products.
    fn validate(&self) -> Result<(), String> {
        for jwt in self.jwt_keys() {
            check_jwt_keys(jwt).map_err(|m| format!("licence.{m}"))?;
        }
        for origin in &self.cors_origins {
            if !is_cors_origin(origin) {
                return Err(format!(
                    "licence.cors_origins: {origin:?} is not \"*\" or an origin such as \
                     \"https://player.example\" (scheme and host, optional port, no path)"
                ));
            }
        }
        for (drm, upstream) in &self.upstream {
            upstream
                .validate(drm)
                .map_err(|e| format!("licence.upstream.{drm}: {e}"))?;
        }
        if let Some(policy) = &self.policy {
            policy
                .validate()
                .map_err(|e| format!("licence.policy: {e}"))?;
        }
        if let Some(seconds) = self.heartbeat_seconds
            && !(1..=86_400).contains(&seconds)
        {
            return Err("licence.heartbeat_seconds must be 1 to 86400".into());
        }
        if let Some(seconds) = self.upstream_timeout_seconds
            && !(1..=120).contains(&seconds)
        {
            return Err("licence.upstream_timeout_seconds must be 1 to 120".into());
        }
        for (product, contents) in &self.products {
            for content in contents {
                ContentId::parse(content)
                    .map_err(|e| format!("licence.products.{product}: {e}"))?;
            }
        }
        Ok(())
    }
}

/// The built-in names `[tenants.x.licence] upstream` accepts, one per proxied DRM; a
/// tenant-defined DRM system's `name` is accepted too (`/{tenant}/licences/{name}`).
pub const UPSTREAM_NAMES: [&str; 4] = ["widevine", "playready", "fairplay", "prm"];

/// One licence upstream: `"https://…"` (keyplex's own JSON form) or
/// `{ url = "…", protocol = "widevine-cloud", … }`.
#[derive(Clone, Debug)]
pub struct Upstream {
    pub url: String,
    pub protocol: UpstreamProtocol,
    /// Widevine cloud: the provider name Google issued (`signer`, and `provider` in the
    /// request).
    pub provider: Option<String>,
    /// Widevine cloud: the provider's AES-256 signing key, 64 hex digits.
    pub signing_key: Option<Secret>,
    /// Widevine cloud: the signing IV, 32 hex digits.
    pub signing_iv: Option<String>,
    /// Widevine: the service certificate (base64 of the signed `DrmCertificate`) answered
    /// to a CDM's certificate request without asking the upstream.
    pub service_certificate: Option<String>,
}

/// The wire protocol of a licence upstream (`protocol = "…"`).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum UpstreamProtocol {
    /// keyplex's own JSON form (a plain URL), for an operator's gateway.
    KeyplexJson,
    /// Google's Widevine cloud licence proxy API (`…/cenc/getlicense/<provider>`).
    WidevineCloud,
    /// Microsoft's PlayReady test server: keys and rules in the `cfg=` query.
    PlayreadyTestServer,
    /// A PlayReady Server SDK licence server reading keyplex's `CustomData` JSON.
    PlayreadyCustomdata,
    /// A hosted FairPlay key service: JSON `{spc, assetId, key, iv}` → `{ckc}`.
    FairplayJson,
    /// A FairPlay key service taking the SPC as bytes and answering the CKC as bytes.
    FairplayBinary,
}

impl UpstreamProtocol {
    pub fn name(self) -> &'static str {
        match self {
            Self::KeyplexJson => "keyplex-json",
            Self::WidevineCloud => "widevine-cloud",
            Self::PlayreadyTestServer => "playready-test-server",
            Self::PlayreadyCustomdata => "playready-customdata",
            Self::FairplayJson => "fairplay-json",
            Self::FairplayBinary => "fairplay-binary",
        }
    }

    /// The protocols an upstream of `drm` may speak.
    fn allowed_for(drm: &str) -> &'static [UpstreamProtocol] {
        match drm {
            "widevine" => &[Self::KeyplexJson, Self::WidevineCloud],
            "playready" => &[
                Self::KeyplexJson,
                Self::PlayreadyTestServer,
                Self::PlayreadyCustomdata,
            ],
            "fairplay" => &[Self::KeyplexJson, Self::FairplayJson, Self::FairplayBinary],
            _ => &[Self::KeyplexJson],
        }
    }
}

/// The table form, as written.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct UpstreamTable {
    url: String,
    #[serde(default)]
    protocol: Option<UpstreamProtocol>,
    #[serde(default)]
    provider: Option<String>,
    #[serde(default)]
    signing_key: Option<Secret>,
    #[serde(default)]
    signing_iv: Option<String>,
    #[serde(default)]
    service_certificate: Option<String>,
}

impl<'de> Deserialize<'de> for Upstream {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct UpstreamVisitor;
        impl<'de> serde::de::Visitor<'de> for UpstreamVisitor {
            type Value = Upstream;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an http(s):// URL or a table { url, protocol, … }")
            }
            fn visit_str<E: serde::de::Error>(self, url: &str) -> Result<Upstream, E> {
                Ok(Upstream::plain(url))
            }
            fn visit_map<A: serde::de::MapAccess<'de>>(self, map: A) -> Result<Upstream, A::Error> {
                // Through the derived table type, so that errors name the field at fault.
                let table =
                    UpstreamTable::deserialize(serde::de::value::MapAccessDeserializer::new(map))?;
                Ok(Upstream {
                    url: table.url,
                    protocol: table.protocol.unwrap_or(UpstreamProtocol::KeyplexJson),
                    provider: table.provider,
                    signing_key: table.signing_key,
                    signing_iv: table.signing_iv,
                    service_certificate: table.service_certificate,
                })
            }
        }
        deserializer.deserialize_any(UpstreamVisitor)
    }
}

impl Upstream {
    pub fn plain(url: &str) -> Self {
        Self {
            url: url.to_owned(),
            protocol: UpstreamProtocol::KeyplexJson,
            provider: None,
            signing_key: None,
            signing_iv: None,
            service_certificate: None,
        }
    }

    /// What serde cannot check: the URL, the protocol for this DRM, the signing material.
    fn validate(&self, drm: &str) -> Result<(), String> {
        let url = &self.url;
        let scheme_ok = url.starts_with("https://") || url.starts_with("http://");
        if !scheme_ok || url.parse::<axum::http::Uri>().is_err() {
            return Err(format!("{url:?} is not an http(s):// URL"));
        }
        let allowed = UpstreamProtocol::allowed_for(drm);
        if !allowed.contains(&self.protocol) {
            return Err(format!(
                "protocol {:?} is not one for {drm}: {}",
                self.protocol.name(),
                allowed
                    .iter()
                    .map(|p| p.name())
                    .collect::<Vec<_>>()
                    .join(", ")
            ));
        }
        let cloud = self.protocol == UpstreamProtocol::WidevineCloud;
        if cloud {
            match &self.provider {
                Some(p) if !p.trim().is_empty() && p.len() <= 128 => {}
                _ => return Err("widevine-cloud needs provider (the name Google issued)".into()),
            }
            let key_ok = self
                .signing_key
                .as_ref()
                .is_some_and(|k| k.expose().len() == 64 && hex::decode(k.expose()).is_ok());
            if !key_ok {
                return Err("widevine-cloud needs signing_key, 64 hex digits".into());
            }
            let iv_ok = self
                .signing_iv
                .as_ref()
                .is_some_and(|iv| iv.len() == 32 && hex::decode(iv).is_ok());
            if !iv_ok {
                return Err("widevine-cloud needs signing_iv, 32 hex digits".into());
            }
        } else if self.provider.is_some() || self.signing_key.is_some() || self.signing_iv.is_some()
        {
            return Err(format!(
                "provider, signing_key and signing_iv belong to protocol \"widevine-cloud\", not {:?}",
                self.protocol.name()
            ));
        }
        if let Some(certificate) = &self.service_certificate {
            if drm != "widevine" {
                return Err("service_certificate is Widevine's".into());
            }
            use base64::Engine as _;
            if base64::engine::general_purpose::STANDARD
                .decode(certificate.trim())
                .map_or(true, |c| c.is_empty())
            {
                return Err("service_certificate is not base64 of a certificate".into());
            }
        }
        Ok(())
    }

    /// The signing material of a `widevine-cloud` upstream, as a Widevine signer (the same
    /// signature as the Widevine key API's).
    pub fn widevine_signer(&self) -> Option<WidevineSigner> {
        Some(WidevineSigner {
            name: self.provider.clone()?,
            aes_key: self.signing_key.clone()?,
            aes_iv: self.signing_iv.clone()?,
        })
    }
}

/// `*`, or `http(s)://host[:port]` exactly as a browser sends it in `Origin`.
fn is_cors_origin(origin: &str) -> bool {
    if origin == "*" {
        return true;
    }
    let Some(authority) = origin
        .strip_prefix("https://")
        .or_else(|| origin.strip_prefix("http://"))
    else {
        return false;
    };
    !authority.is_empty()
        && authority
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'.' | b'-' | b':' | b'[' | b']'))
}

/// A JWT key set that can verify something: at least one key, HS256 secrets long enough.
fn check_jwt_keys(jwt: &JwtConfig) -> Result<(), String> {
    if jwt.hs256_secret.is_none()
        && jwt.rs256_public_key_pem.is_none()
        && jwt.es256_public_key_pem.is_none()
    {
        return Err("jwt needs hs256_secret, rs256_public_key_pem or es256_public_key_pem".into());
    }
    if jwt
        .hs256_secret
        .as_ref()
        .is_some_and(|s| s.expose().len() < 16)
    {
        return Err("jwt.hs256_secret must be at least 16 characters".into());
    }
    Ok(())
}

/// A configured secret string: never printed, zeroized when dropped (a configuration reload
/// drops the old one).
#[derive(Clone, Deserialize, PartialEq, Eq)]
#[serde(transparent)]
pub struct Secret(String);

impl Drop for Secret {
    fn drop(&mut self) {
        zeroize::Zeroize::zeroize(&mut self.0);
    }
}

impl Secret {
    pub fn new(s: impl Into<String>) -> Self {
        Self(s.into())
    }
    pub fn expose(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Secret {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret(<redacted>)")
    }
}

/// A configuration that cannot be used.
#[derive(Debug, thiserror::Error)]
pub enum ConfigError {
    #[error("cannot read config file {path}: {source}")]
    Read {
        path: PathBuf,
        source: std::io::Error,
    },
    #[error("invalid config file {path}: {message}")]
    Parse { path: PathBuf, message: String },
    #[error("invalid tenant {tenant:?}: {message}")]
    Tenant { tenant: String, message: String },
}

impl Config {
    pub fn from_toml(path: &std::path::Path, text: &str) -> Result<Self, ConfigError> {
        let config: Self = toml::from_str(text).map_err(|e| ConfigError::Parse {
            path: path.to_owned(),
            message: e.to_string(),
        })?;
        config.validate()?;
        Ok(config)
    }

    pub fn load(path: &std::path::Path) -> Result<Self, ConfigError> {
        let text = std::fs::read_to_string(path).map_err(|source| ConfigError::Read {
            path: path.to_owned(),
            source,
        })?;
        Self::from_toml(path, &text)
    }

    /// Checks what serde cannot: tenant ids, key lengths, sensible numbers.
    pub fn validate(&self) -> Result<(), ConfigError> {
        for (name, tenant) in &self.tenants {
            let err = |message: String| ConfigError::Tenant {
                tenant: name.clone(),
                message,
            };
            TenantId::parse_new(name).map_err(|e| err(e.to_string()))?;
            tenant.validate().map_err(err)?;
        }
        if let Some(jwt) = &self.admin.jwt {
            check_jwt_keys(jwt).map_err(|message| ConfigError::Parse {
                path: PathBuf::from("[admin]"),
                message,
            })?;
        }
        if self.server.max_body_bytes < 1024 {
            return Err(ConfigError::Parse {
                path: PathBuf::from("[server]"),
                message: "max_body_bytes must be at least 1024".into(),
            });
        }
        let server = &self.server;
        let limits = [
            (
                (1..=3600).contains(&server.request_timeout_seconds),
                "request_timeout_seconds must be 1 to 3600",
            ),
            (
                (1..=3600).contains(&server.header_timeout_seconds),
                "header_timeout_seconds must be 1 to 3600",
            ),
            (
                (8..=1024).contains(&server.max_headers),
                "max_headers must be 8 to 1024",
            ),
            (
                (1024..=1024 * 1024).contains(&server.max_header_bytes),
                "max_header_bytes must be 1024 to 1048576",
            ),
            (
                server.max_connections >= 1,
                "max_connections must be at least 1",
            ),
        ];
        if let Some((_, message)) = limits.iter().find(|(ok, _)| !ok) {
            return Err(ConfigError::Parse {
                path: PathBuf::from("[server]"),
                message: (*message).into(),
            });
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Every kind of secret a configuration holds, each with a recognisable value.
    const SECRETS: [&str; 9] = [
        "postgres://keyplex:db-password-1@db/keyplex",
        "admin-token-2-long-enough",
        "basic-password-3",
        "hs256-secret-4-long-enough-for-the-rule",
        "sigv4-secret-5",
        "get-token-6-long-enough",
        "licence-hs256-secret-7-long-enough",
        "1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9",
        "00112233445566778899aabbccddeeff00112233445566778899aabbccddeeff",
    ];

    #[test]
    fn debug_output_of_a_whole_configuration_holds_no_secret() {
        let text = format!(
            r#"
            [server]
            database_url = "{}"
            [admin]
            token = "{}"
            [tenants.acme]
            basic = [{{ user = "packager", password = "{}" }}]
            jwt = {{ hs256_secret = "{}" }}
            sigv4 = [{{ access_key_id = "AKID", secret_access_key = "{}", region = "us-east-1", service = "execute-api" }}]
            get_token = "{}"
            widevine_signers = [{{ name = "widevine_test", aes_key = "{}", aes_iv = "d58ce954203b7c9a9a9d467f59839249" }}]
            [tenants.acme.licence]
            jwt = {{ hs256_secret = "{}" }}
            upstream.widevine = {{ url = "https://license.uat.widevine.com/cenc/getlicense/widevine_test", protocol = "widevine-cloud", provider = "widevine_test", signing_key = "{}", signing_iv = "d58ce954203b7c9a9a9d467f59839249" }}
            "#,
            SECRETS[0],
            SECRETS[1],
            SECRETS[2],
            SECRETS[3],
            SECRETS[4],
            SECRETS[5],
            SECRETS[7],
            SECRETS[6],
            SECRETS[8],
        );
        let config = Config::from_toml(std::path::Path::new("t.toml"), &text).unwrap();
        let printed = format!("{config:?} {config:#?}");
        for secret in SECRETS {
            assert!(!printed.contains(secret), "Debug shows a secret");
        }
        assert!(printed.contains("Secret(<redacted>)"));
        // The values are there for the code that needs them.
        assert_eq!(
            config.tenants["acme"].basic[0].password.expose(),
            SECRETS[2]
        );
    }

    #[test]
    fn licence_upstreams_are_urls_or_protocol_tables() {
        let load = |upstream: &str| {
            Config::from_toml(
                std::path::Path::new("t.toml"),
                &format!(
                    "[tenants.acme.licence]\njwt = {{ hs256_secret = \"a-long-portal-secret\" }}\n\
                     [tenants.acme.licence.upstream]\n{upstream}"
                ),
            )
        };
        let key = "ab".repeat(32);
        let iv = "cd".repeat(16);
        let ok = load(&format!(
            "widevine = {{ url = \"https://wv.example/cenc/getlicense/acme\", protocol = \"widevine-cloud\", provider = \"acme\", signing_key = \"{key}\", signing_iv = \"{iv}\" }}\n\
             playready = {{ url = \"https://pr.example\", protocol = \"playready-test-server\" }}\n\
             fairplay = {{ url = \"https://fp.example\", protocol = \"fairplay-binary\" }}\n\
             prm = \"https://prm.example\""
        ))
        .unwrap();
        let upstream = &ok.tenants["acme"].licence.as_ref().unwrap().upstream;
        assert_eq!(
            upstream["widevine"].protocol,
            UpstreamProtocol::WidevineCloud
        );
        assert_eq!(upstream["widevine"].widevine_signer().unwrap().name, "acme");
        assert_eq!(
            upstream["fairplay"].protocol,
            UpstreamProtocol::FairplayBinary
        );
        assert_eq!(upstream["prm"].protocol, UpstreamProtocol::KeyplexJson);
        for (bad, says) in [
            (
                "widevine = { url = \"https://wv.example\", protocol = \"widevine-cloud\" }"
                    .to_owned(),
                "provider",
            ),
            (
                format!(
                    "widevine = {{ url = \"https://wv.example\", protocol = \"widevine-cloud\", provider = \"p\", signing_key = \"{key}\", signing_iv = \"xyz\" }}"
                ),
                "signing_iv",
            ),
            (
                "playready = { url = \"https://pr.example\", protocol = \"fairplay-json\" }"
                    .to_owned(),
                "not one for playready",
            ),
            (
                "fairplay = { url = \"https://fp.example\", protocol = \"fairplay-xml\" }"
                    .to_owned(),
                "fairplay-xml",
            ),
            (
                "fairplay = { url = \"https://fp.example\", protcol = \"fairplay-json\" }"
                    .to_owned(),
                "protcol",
            ),
            (
                format!("playready = {{ url = \"https://pr.example\", signing_key = \"{key}\" }}"),
                "widevine-cloud",
            ),
            ("prm = \"ftp://prm.example\"".to_owned(), "http"),
        ] {
            let message = load(&bad).unwrap_err().to_string();
            assert!(message.contains(says), "{bad}: {message}");
        }
    }

    #[test]
    fn parses_the_contract_example() {
        let text = r#"
            [server]
            listen = "127.0.0.1:8080"
            data_dir = "./keyplex-data"
            [admin]
            token = "admin-token"
            [tenants.acme]
            basic = [{ user = "packager", password = "s3cret" }]
            jwt = { hs256_secret = "a-long-shared-secret" }
            playready_la_url = "https://acme.example/prls/contentlicenseservice/v1/licenses"
            widevine_provider = "acme"
            sigv4 = [{ access_key_id = "AKIDACME", secret_access_key = "x", region = "us-east-1", service = "execute-api" }]
            widevine_signers = [{ name = "acme-packager", aes_key = "1ae8ccd0e7985cc0b6203a55855a1034afc252980e970ca90e5202689f947ab9", aes_iv = "d58ce954203b7c9a9a9d467f59839249" }]
            get_token = "tok"
            kid_override = false
            crypto_period_seconds = 60
            rate_limit = { requests_per_second = 200, burst = 400 }
            [tenants.acme.licence]
            jwt = { hs256_secret = "another-long-secret" }
            cors_origins = ["https://player.acme.example"]
            upstream = { widevine = "https://wv.example" }
        "#;
        let c = Config::from_toml(std::path::Path::new("t.toml"), text).unwrap();
        let acme = &c.tenants["acme"];
        assert_eq!(acme.basic[0].user, "packager");
        assert_eq!(acme.crypto_period_seconds, Some(60));
        assert!(format!("{c:?}").contains("<redacted>"));
        assert!(!format!("{c:?}").contains("s3cret"));
    }

    #[test]
    fn prm_template_data_must_be_base64() {
        let p = std::path::Path::new("t.toml");
        let ok = Config::from_toml(
            p,
            "[tenants.acme]\nprm_template = { pssh_data_base64 = \"UFJN\", hls_key_uri = \"prm://{kid}\" }",
        )
        .unwrap();
        let prm = ok.tenants["acme"].prm_template.as_ref().unwrap();
        assert_eq!(prm.hls_key_uri.as_deref(), Some("prm://{kid}"));
        assert!(
            Config::from_toml(
                p,
                "[tenants.acme]\nprm_template = { pssh_data_base64 = \"not base64!\" }"
            )
            .is_err()
        );
        assert!(
            Config::from_toml(
                p,
                "[tenants.acme]\nprm_template = { pssh_data_base64 = \"UFJN\", typo = 1 }"
            )
            .is_err()
        );
    }

    #[test]
    fn dialect_settings_are_checked_when_loaded() {
        let p = std::path::Path::new("t.toml");
        let ok = Config::from_toml(
            p,
            "[tenants.acme]\nenc_token = \"an-enc-token-of-20-chars\"\nfairplay_uri_template = \"skd://{kid_base64}?c={content_id}\"\nmax_key_lead_days = 2",
        )
        .unwrap();
        let acme = &ok.tenants["acme"];
        assert_eq!(acme.enc_tokens().count(), 1);
        assert!(acme.fairplay_uri().unwrap().is_some());
        assert_eq!(acme.max_key_lead(), time::Duration::days(2));
        assert_eq!(
            TenantConfig::default().max_key_lead(),
            time::Duration::days(31)
        );
        for (bad, says) in [
            (
                "fairplay_uri_template = \"skd://{key}\"",
                "unknown placeholder {key}",
            ),
            ("fairplay_uri_template = \"skd://{kid\"", "unclosed"),
            ("enc_token = \"short\"", "at least 16"),
            ("max_key_lead_days = 0", "max_key_lead_days"),
        ] {
            let err = Config::from_toml(p, &format!("[tenants.acme]\n{bad}"))
                .err()
                .unwrap_or_else(|| panic!("{bad} was accepted"));
            assert!(format!("{err:#}").contains(says), "{bad}: {err:#}");
        }
    }

    #[test]
    fn licence_section_is_checked() {
        let p = std::path::Path::new("t.toml");
        let ok = Config::from_toml(
            p,
            "[tenants.acme.licence]\njwt = { hs256_secret = \"a-long-portal-secret\" }\n\
             cors_origins = [\"*\", \"https://player.acme.example\", \"http://localhost:8080\"]\n\
             replay_protection = true\n\
             [tenants.acme.licence.products]\ngold = [\"movie-1\", \"movie-2\"]",
        )
        .unwrap();
        let licence = ok.tenants["acme"].licence.as_ref().unwrap();
        assert_eq!(licence.products["gold"], ["movie-1", "movie-2"]);
        assert!(licence.replay_protection);
        for bad in [
            "[tenants.acme.licence]\njwt = { hs256_secret = \"short\" }",
            "[tenants.acme.licence]\njwt = {}",
            "[tenants.acme.licence]\ncors_origins = [\"https://player.acme.example/\"]",
            "[tenants.acme.licence]\ncors_origins = [\"player.acme.example\"]",
            "[tenants.acme.licence]\ncors_origins = [\"https://player.acme.example/path\"]",
            "[tenants.acme.licence.products]\ngold = [\"bad id!\"]",
            "[tenants.acme.licence]\nproduct = {}",
            "[tenants.acme.licence]\nupstream = { \"Wide vine\" = \"https://wv.example\" }",
            "[tenants.acme.licence]\nupstream = { widevine = \"wv.example/licence\" }",
            "[tenants.acme.licence]\nupstream_timeout_seconds = 0",
            "[tenants.acme.licence]\nheartbeat_seconds = 0",
            "[tenants.acme.licence]\nheartbeat_seconds = 86401",
        ] {
            assert!(Config::from_toml(p, bad).is_err(), "{bad}");
        }
        // A name that could be a DRM system's is checked once the admin API's definitions are
        // merged (`AppState::check_file_upstreams` stops the start): a typo is caught there.
        let typo = Config::from_toml(
            p,
            "[tenants.acme.licence]\nupstream = { widevin = \"https://wv.example\" }",
        )
        .unwrap();
        let tenant = &typo.tenants["acme"];
        let catalog = crate::drm_systems::DrmCatalog::build(tenant).unwrap();
        assert_eq!(
            catalog.undefined_upstreams(tenant.licence.as_ref()),
            ["widevin"]
        );
    }

    #[test]
    fn reserved_tenant_ids_are_refused_with_a_clear_message() {
        let p = std::path::Path::new("t.toml");
        for name in ["players", "ui", "admin", "metrics", "healthz", "-"] {
            let err = Config::from_toml(p, &format!("[tenants.{name:?}]")).unwrap_err();
            let text = err.to_string();
            assert!(
                text.contains(&format!("invalid tenant {name:?}")) && text.contains("is reserved"),
                "{text}"
            );
        }
        for name in ["openapi.json", ".hidden"] {
            let err = Config::from_toml(p, &format!("[tenants.{name:?}]")).unwrap_err();
            assert!(err.to_string().contains("is reserved"), "{err}");
        }
        assert!(Config::from_toml(p, "[tenants.admins]").is_ok());
    }

    #[test]
    fn rejects_typos_and_bad_values() {
        let p = std::path::Path::new("t.toml");
        assert!(Config::from_toml(p, "[tenants.acme]\nbasci = []").is_err());
        assert!(Config::from_toml(p, "[tenants.Acme]").is_err());
        assert!(Config::from_toml(p, "[tenants.acme]\ncrypto_period_seconds = 0").is_err());
        assert!(
            Config::from_toml(p, "[tenants.acme]\njwt = { hs256_secret = \"short\" }").is_err()
        );
    }
}
