//! The tenants keyplex serves: those of the configuration file and those the admin API
//! stored, with the credentials of both, merged into one ready-to-serve map.
//!
//! The file is the static layer; the store holds what the API changed (new tenants, added
//! credentials, the disabled flag). Every change rebuilds the whole map and swaps it in, so a
//! request sees either the old tenants or the new ones, never half of a change.

use std::collections::HashMap;
use std::sync::Arc;

use keyplex_store::{Registry, StoredCredential, StoredDrmSystem};
use keyplex_types::TenantId;
use serde::Deserialize;
use time::OffsetDateTime;

use crate::config::{
    BasicCredential, Config, JwtConfig, LicenceConfig, Secret, SigV4Credential, TenantConfig,
    Upstream, WidevineSigner,
};
use crate::state::Tenant;

/// Where a tenant or credential is defined.
#[derive(Clone, Copy, Debug, PartialEq, Eq, serde::Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Source {
    /// The configuration file: change it there.
    Config,
    /// The admin API (stored in the database).
    Admin,
}

/// A credential as listings show it: no secret.
#[derive(Clone, Debug, serde::Serialize, utoipa::ToSchema)]
pub struct CredentialInfo {
    /// `cred_…` (admin API) or `config:<type>:<n>` (configuration file, cannot be deleted
    /// through the API).
    pub id: String,
    /// `basic`, `jwt`, `sigv4`, `widevine_signer`, `get_token`, `licence_jwt`, `enc_token` or
    /// `licence_upstream`.
    #[serde(rename = "type")]
    pub kind: String,
    /// The non-secret part: user name, access key id, signer name, key algorithm.
    pub label: String,
    pub source: Source,
    /// When the admin API added it (`null` for credentials of the configuration file).
    #[serde(with = "time::serde::rfc3339::option")]
    pub created_at: Option<OffsetDateTime>,
}

/// A credential as the admin API takes it (`POST …/credentials`) and the store keeps it.
#[derive(Clone, Debug, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum CredentialSpec {
    Basic(BasicCredential),
    Jwt(JwtConfig),
    Sigv4(SigV4Credential),
    WidevineSigner(WidevineSigner),
    GetToken {
        token: Secret,
    },
    LicenceJwt(JwtConfig),
    EncToken {
        token: Secret,
    },
    /// A licence upstream with its signing secrets (`[tenants.x.licence] upstream.<drm>`):
    /// sealed in the store like every credential, replacing the file's entry for that DRM.
    LicenceUpstream(LicenceUpstream),
}

/// `{"type": "licence_upstream", "drm": "widevine", "url": …, "protocol": …, …}`.
#[derive(Clone, Debug, Deserialize)]
pub struct LicenceUpstream {
    pub drm: String,
    #[serde(flatten)]
    pub upstream: Upstream,
}

impl CredentialSpec {
    pub const KINDS: [&str; 8] = [
        "basic",
        "jwt",
        "sigv4",
        "widevine_signer",
        "get_token",
        "licence_jwt",
        "enc_token",
        "licence_upstream",
    ];

    pub fn kind(&self) -> &'static str {
        match self {
            Self::Basic(_) => "basic",
            Self::Jwt(_) => "jwt",
            Self::Sigv4(_) => "sigv4",
            Self::WidevineSigner(_) => "widevine_signer",
            Self::GetToken { .. } => "get_token",
            Self::LicenceJwt(_) => "licence_jwt",
            Self::EncToken { .. } => "enc_token",
            Self::LicenceUpstream(_) => "licence_upstream",
        }
    }

    /// The public part: what an operator recognises the credential by.
    pub fn label(&self) -> String {
        match self {
            Self::Basic(b) => b.user.clone(),
            Self::Jwt(j) | Self::LicenceJwt(j) => jwt_label(j),
            Self::Sigv4(c) => c.access_key_id.clone(),
            Self::WidevineSigner(w) => w.name.clone(),
            Self::GetToken { .. } | Self::EncToken { .. } => "token".to_owned(),
            Self::LicenceUpstream(u) => {
                format!(
                    "{} {} {}",
                    u.drm,
                    u.upstream.protocol.name(),
                    u.upstream.url
                )
            }
        }
    }

    /// Adds this credential to a tenant's settings.
    fn apply(self, tenant: &mut TenantConfig) {
        match self {
            Self::Basic(b) => tenant.basic.push(b),
            Self::Jwt(j) => tenant.extra_jwt.push(j),
            Self::Sigv4(c) => tenant.sigv4.push(c),
            Self::WidevineSigner(w) => tenant.widevine_signers.push(w),
            Self::GetToken { token } => tenant.extra_get_tokens.push(token),
            Self::EncToken { token } => tenant.extra_enc_tokens.push(token),
            Self::LicenceJwt(j) => tenant
                .licence
                .get_or_insert_with(LicenceConfig::default)
                .extra_jwt
                .push(j),
            Self::LicenceUpstream(u) => {
                tenant
                    .licence
                    .get_or_insert_with(LicenceConfig::default)
                    .upstream
                    .insert(u.drm, u.upstream);
            }
        }
    }
}

fn jwt_label(j: &JwtConfig) -> String {
    let mut algs = Vec::new();
    if j.hs256_secret.is_some() {
        algs.push("HS256");
    }
    if j.rs256_public_key_pem.is_some() {
        algs.push("RS256");
    }
    if j.es256_public_key_pem.is_some() {
        algs.push("ES256");
    }
    algs.join("+")
}

/// The credentials written in a tenant's file section, with stable ids
/// (`config:<type>:<n>`).
fn file_credentials(tc: &TenantConfig) -> Vec<CredentialInfo> {
    let mut out = Vec::new();
    let mut push = |kind: &str, n: usize, label: String| {
        out.push(CredentialInfo {
            id: format!("config:{kind}:{n}"),
            kind: kind.to_owned(),
            label,
            source: Source::Config,
            created_at: None,
        });
    };
    for (n, b) in tc.basic.iter().enumerate() {
        push("basic", n, b.user.clone());
    }
    if let Some(j) = &tc.jwt {
        push("jwt", 0, jwt_label(j));
    }
    for (n, c) in tc.sigv4.iter().enumerate() {
        push("sigv4", n, c.access_key_id.clone());
    }
    for (n, w) in tc.widevine_signers.iter().enumerate() {
        push("widevine_signer", n, w.name.clone());
    }
    if tc.get_token.is_some() {
        push("get_token", 0, "token".to_owned());
    }
    if let Some(j) = tc.licence.as_ref().and_then(|l| l.jwt.as_ref()) {
        push("licence_jwt", 0, jwt_label(j));
    }
    if tc.enc_token.is_some() {
        push("enc_token", 0, "token".to_owned());
    }
    let upstreams = tc.licence.iter().flat_map(|l| &l.upstream);
    for (n, (drm, u)) in upstreams
        .filter(|(_, u)| u.signing_key.is_some())
        .enumerate()
    {
        push(
            "licence_upstream",
            n,
            format!("{drm} {} {}", u.protocol.name(), u.url),
        );
    }
    out
}

/// What a tenant is made of before it is prepared for serving.
pub struct TenantParts {
    pub config: TenantConfig,
    pub source: Source,
    pub disabled: bool,
    pub created_at: Option<OffsetDateTime>,
    pub credentials: Vec<CredentialInfo>,
}

impl TenantParts {
    /// Adds a stored credential to the tenant (its spec parsed again: it was checked when it
    /// was added, so a failure here means the row was written by something else).
    pub fn add_stored(&mut self, credential: &StoredCredential) -> Result<(), String> {
        let spec: CredentialSpec = serde_json::from_str(&credential.spec)
            .map_err(|e| format!("credential {}: {e}", credential.id))?;
        self.credentials.push(CredentialInfo {
            id: credential.id.clone(),
            kind: spec.kind().to_owned(),
            label: credential.label.clone(),
            source: Source::Admin,
            created_at: Some(credential.created_at),
        });
        spec.apply(&mut self.config);
        Ok(())
    }

    /// Adds a DRM system the admin API defined, if the tenant stays servable with it (a
    /// definition the file now contradicts is left out rather than the whole tenant).
    pub fn add_stored_drm_system(&mut self, system: &StoredDrmSystem) -> Result<(), String> {
        let mut config: crate::drm_systems::DrmSystemConfig = serde_json::from_str(&system.spec)
            .map_err(|e| format!("DRM system {}: {e}", system.name))?;
        config.name.clone_from(&system.name);
        self.config.extra_drm_systems.push(config);
        if let Err(e) = crate::drm_systems::DrmCatalog::build(&self.config) {
            self.config.extra_drm_systems.pop();
            return Err(e);
        }
        Ok(())
    }

    /// Adds a credential that is not stored yet (to check it before storing it).
    pub fn add_new(&mut self, spec: CredentialSpec) {
        spec.apply(&mut self.config);
    }
}

/// Every tenant: the file's, then the store's rows over them. A stored credential or tenant
/// that cannot be used is logged and left out rather than taking every tenant down.
pub fn merge(config: &Config, registry: &Registry) -> HashMap<TenantId, TenantParts> {
    let mut parts: HashMap<TenantId, TenantParts> = HashMap::new();
    for (name, tc) in &config.tenants {
        // Names were checked when the file was loaded.
        let Ok(id) = TenantId::parse(name) else {
            continue;
        };
        parts.insert(
            id,
            TenantParts {
                credentials: file_credentials(tc),
                config: tc.clone(),
                source: Source::Config,
                disabled: false,
                created_at: None,
            },
        );
    }
    for row in &registry.tenants {
        match (parts.get_mut(&row.id), &row.settings) {
            (Some(file_tenant), _) => file_tenant.disabled = row.disabled,
            (None, Some(settings)) => match serde_json::from_str::<TenantConfig>(settings) {
                Ok(config) => {
                    parts.insert(
                        row.id.clone(),
                        TenantParts {
                            config,
                            source: Source::Admin,
                            disabled: row.disabled,
                            created_at: Some(row.created_at),
                            credentials: Vec::new(),
                        },
                    );
                }
                Err(e) => {
                    tracing::error!(tenant = %row.id, error = %e, "stored tenant settings are unusable; tenant left out")
                }
            },
            // A row for a file tenant that the file no longer has: nothing to serve.
            (None, None) => {}
        }
    }
    for credential in &registry.credentials {
        let Some(tenant) = parts.get_mut(&credential.tenant) else {
            continue;
        };
        if let Err(e) = tenant.add_stored(credential) {
            tracing::error!(tenant = %credential.tenant, error = %e, "stored credential is unusable; left out");
        }
    }
    for system in &registry.drm_systems {
        let Some(tenant) = parts.get_mut(&system.tenant) else {
            continue;
        };
        if let Err(e) = tenant.add_stored_drm_system(system) {
            tracing::error!(tenant = %system.tenant, drm_system = %system.name, error = %e, "stored DRM system definition is unusable; left out");
        }
    }
    parts
}

/// Prepares every tenant for serving. A tenant whose merged settings cannot be used is left
/// out with an error in the log (a file tenant cannot get here: the file was checked).
pub fn build(
    parts: HashMap<TenantId, TenantParts>,
    public_url: &str,
) -> HashMap<TenantId, Arc<Tenant>> {
    let mut tenants = HashMap::with_capacity(parts.len());
    for (id, part) in parts {
        match Tenant::build(id.clone(), part, public_url) {
            Ok(tenant) => {
                // A definition an upstream named was removed (or a stored tenant names one not
                // defined yet): the tenant stays served, that licence route answers 404.
                let licence = tenant.config.licence.as_ref();
                for drm in tenant.drm_systems.undefined_upstreams(licence) {
                    tracing::warn!(tenant = %id, upstream = drm, "licence.upstream names no DRM system of the tenant (built in or defined): /{id}/licences/{drm} answers 404 until it is defined");
                }
                tenants.insert(id, Arc::new(tenant));
            }
            Err(e) => {
                tracing::error!(tenant = %id, error = %e, "tenant cannot be served; left out")
            }
        }
    }
    tenants
}
