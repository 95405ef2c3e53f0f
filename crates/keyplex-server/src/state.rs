//! Shared state of the running server: configuration prepared for use, and the store.

use std::collections::HashMap;
use std::sync::atomic::{AtomicI64, Ordering};
use std::sync::{Arc, RwLock};

use axum::http::HeaderMap;
use keyplex_store::KeyStore;
use keyplex_types::TenantId;

use crate::auth::{PackagerAuth, Principal, presented_credentials};
use crate::config::{Config, TenantConfig};
use crate::http::error::ApiError;
use crate::registry::{CredentialInfo, Source, TenantParts};

/// One tenant, ready to serve.
pub struct Tenant {
    pub id: TenantId,
    pub config: TenantConfig,
    pub auth: PackagerAuth,
    /// What `signaling::probe` found per (system, scheme): it depends only on this tenant's
    /// settings, and every key request asks it before touching the store.
    pub(crate) probes: crate::signaling::ProbeCache,
    /// Signaling built for this tenant's stored keys ([`crate::signaling::SignalCache`]).
    pub(crate) signals: crate::signaling::SignalCache,
    /// URLs written into signaling that point back at keyplex.
    pub urls: crate::signaling::TenantUrls,
    /// The DRM systems this tenant defines, and how it resolves system ids.
    pub drm_systems: crate::drm_systems::DrmCatalog,
    /// The player side: entitlement token keys, products, replay protection, CORS origins.
    pub licence: crate::entitlement::LicenceAuth,
    /// Where the tenant is defined, whether it is disabled, its credentials (no secrets).
    pub source: Source,
    pub disabled: bool,
    pub created_at: Option<time::OffsetDateTime>,
    pub credentials: Vec<CredentialInfo>,
    /// `rate_limit`, per credential (`None`: unlimited).
    pub rate_limiter: Option<crate::http::rate_limit::CredentialLimiter>,
    /// `auth_failure_limit`, per client address.
    pub auth_failures: crate::http::rate_limit::CredentialLimiter,
}

impl Tenant {
    /// Prepares a tenant for serving; `Err` says why its settings cannot be used.
    pub fn build(id: TenantId, parts: TenantParts, public_url: &str) -> Result<Self, String> {
        let tc = parts.config;
        tc.validate()?;
        let auth = PackagerAuth::from_config(&tc)?;
        let licence = crate::entitlement::LicenceAuth::from_config(tc.licence.as_ref())?;
        let rate_limiter = tc
            .rate_limit
            .map(crate::http::rate_limit::CredentialLimiter::new)
            .transpose()?;
        let auth_failures = crate::http::rate_limit::CredentialLimiter::per_minute(
            tc.auth_failure_limit
                .map_or(crate::config::DEFAULT_AUTH_FAILURES_PER_MINUTE, |l| {
                    l.per_minute
                }),
        )?;
        Ok(Self {
            rate_limiter,
            auth_failures,
            urls: crate::signaling::TenantUrls::new(public_url, &id, &tc)?,
            drm_systems: crate::drm_systems::DrmCatalog::build(&tc)?,
            id,
            config: tc,
            auth,
            probes: crate::signaling::ProbeCache::default(),
            signals: crate::signaling::SignalCache::default(),
            licence,
            source: parts.source,
            disabled: parts.disabled,
            created_at: parts.created_at,
            credentials: parts.credentials,
        })
    }
}

/// The tenants being served: replaced whole when the registry changes.
pub type TenantMap = HashMap<TenantId, Arc<Tenant>>;

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    /// The configuration file as loaded (the static layer of the tenants).
    config: Config,
    tenants: RwLock<Arc<TenantMap>>,
    /// The store's registry version the current `tenants` were built from.
    registry_version: AtomicI64,
    /// Serializes rebuilds, so that an older registry never replaces a newer one.
    reload_lock: tokio::sync::Mutex<()>,
    max_body_bytes: usize,
    public_url: String,
    /// The folder served at `/players/` (see [`crate::setup::players_dir`]).
    players_dir: std::path::PathBuf,
    /// The licence proxy's one HTTP client to upstream licence servers (connection pool).
    upstream_client: reqwest::Client,
    admin: crate::auth::AdminAuth,
    audit: crate::audit::AuditLog,
    telemetry: crate::http::telemetry::Telemetry,
    master_key: crate::setup::MasterKeySource,
}

impl AppState {
    /// The state for `config` with the file's tenants; [`Self::reload_tenants`] adds what the
    /// store's registry holds.
    pub fn new(
        config: &Config,
        store: Arc<dyn KeyStore>,
        master_key: crate::setup::MasterKeySource,
    ) -> Result<Self, String> {
        let public_url = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| {
                let scheme = if config.server.tls.is_some() {
                    "https"
                } else {
                    "http"
                };
                format!("{scheme}://{}", config.server.listen)
            })
            .trim_end_matches('/')
            .to_owned();
        // The file's tenants must all be usable: a typo fails the start, not a request.
        let parts = crate::registry::merge(config, &keyplex_store::Registry::default());
        let mut tenants = TenantMap::new();
        for (id, part) in parts {
            let tenant = Tenant::build(id.clone(), part, &public_url)
                .map_err(|e| format!("tenant {id}: {e}"))?;
            tenants.insert(id, Arc::new(tenant));
        }
        Ok(Self {
            inner: Arc::new(Inner {
                audit: crate::audit::AuditLog::new(store.clone()),
                store,
                config: config.clone(),
                tenants: RwLock::new(Arc::new(tenants)),
                registry_version: AtomicI64::new(i64::MIN),
                reload_lock: tokio::sync::Mutex::new(()),
                max_body_bytes: config.server.max_body_bytes,
                public_url,
                players_dir: crate::setup::players_dir(config.server.players_dir.as_deref()),
                upstream_client: upstream_client()?,
                admin: crate::auth::AdminAuth::from_config(&config.admin)?,
                telemetry: crate::http::telemetry::Telemetry::new(),
                master_key,
            }),
        })
    }

    pub fn store(&self) -> &dyn KeyStore {
        self.inner.store.as_ref()
    }

    pub fn config(&self) -> &Config {
        &self.inner.config
    }

    pub fn audit(&self) -> &crate::audit::AuditLog {
        &self.inner.audit
    }

    pub fn telemetry(&self) -> &crate::http::telemetry::Telemetry {
        &self.inner.telemetry
    }

    pub fn admin_auth(&self) -> &crate::auth::AdminAuth {
        &self.inner.admin
    }

    pub fn master_key_source(&self) -> &crate::setup::MasterKeySource {
        &self.inner.master_key
    }

    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
    }

    /// `[server] request_timeout_seconds` (see [`crate::http::deadline`]).
    pub fn request_timeout(&self) -> std::time::Duration {
        std::time::Duration::from_secs(self.inner.config.server.request_timeout_seconds)
    }

    /// The base URL keyplex is reached at, without a trailing slash.
    pub fn public_url(&self) -> &str {
        &self.inner.public_url
    }

    /// The folder of the reference players.
    pub fn players_dir(&self) -> &std::path::Path {
        &self.inner.players_dir
    }

    /// The client the licence proxy calls upstream licence servers with.
    pub fn upstream_client(&self) -> &reqwest::Client {
        &self.inner.upstream_client
    }

    /// The tenants as they are now (a snapshot: later changes do not show in it).
    pub fn tenant_map(&self) -> Arc<TenantMap> {
        match self.inner.tenants.read() {
            Ok(map) => map.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Rebuilds the tenants from the file and the store's registry, if the registry changed
    /// since the last rebuild (or always, with `force`).
    pub async fn reload_tenants(&self, force: bool) -> Result<(), ApiError> {
        let _one_at_a_time = self.inner.reload_lock.lock().await;
        if !force {
            let version = self.store().registry_version().await?;
            if version == self.inner.registry_version.load(Ordering::Acquire) {
                return Ok(());
            }
        }
        let registry = self.store().registry().await?;
        let parts = crate::registry::merge(&self.inner.config, &registry);
        let tenants = crate::registry::build(parts, &self.inner.public_url);
        match self.inner.tenants.write() {
            Ok(mut map) => *map = Arc::new(tenants),
            Err(poisoned) => *poisoned.into_inner() = Arc::new(tenants),
        }
        self.inner
            .registry_version
            .store(registry.version, Ordering::Release);
        Ok(())
    }

    /// Start-up, once the store's definitions are merged: every `[tenants.x.licence]
    /// upstream` the configuration file names must be one of its tenant's DRM systems (built
    /// in, or defined in the file or through the admin API), so that a typo stops the start
    /// rather than leaving a licence route that answers 404. (A later rebuild that loses such
    /// a definition only warns: see [`crate::registry::build`].)
    pub fn check_file_upstreams(&self) -> Result<(), String> {
        let tenants = self.tenant_map();
        for (name, file_tenant) in &self.inner.config.tenants {
            let Some(tenant) = TenantId::parse(name).ok().and_then(|id| tenants.get(&id)) else {
                continue;
            };
            let undefined = tenant
                .drm_systems
                .undefined_upstreams(file_tenant.licence.as_ref());
            if let Some(drm) = undefined.first() {
                return Err(format!(
                    "tenant {name}: licence.upstream: {drm:?} is not one of {} or the name of one \
                     of the tenant's drm_systems (defined in the configuration file or through \
                     the admin API)",
                    crate::config::UPSTREAM_NAMES.join(", ")
                ));
            }
        }
        Ok(())
    }

    /// The tenant named in a URL path segment, for packager and player routes: 404 when
    /// unknown, 403 when disabled.
    pub fn tenant(&self, name: &str) -> Result<Arc<Tenant>, ApiError> {
        let tenant = self.any_tenant(name)?;
        if tenant.disabled {
            return Err(ApiError::Forbidden(format!(
                "tenant {} is disabled",
                tenant.id
            )));
        }
        Ok(tenant)
    }

    /// The tenant with this name, disabled or not (admin routes).
    pub fn any_tenant(&self, name: &str) -> Result<Arc<Tenant>, ApiError> {
        TenantId::parse(name)
            .ok()
            .and_then(|id| self.tenant_map().get(&id).cloned())
            .ok_or_else(|| {
                ApiError::NotFound(format!(
                    "unknown tenant {:?}",
                    keyplex_types::truncate_for_message(name)
                ))
            })
    }

    /// Every tenant (for credentials checked outside [`Self::authenticate_packager`],
    /// such as the GET-CPIX token, which must still tell "another tenant's" (403) from "wrong" (401)).
    pub fn tenants(&self) -> Arc<TenantMap> {
        self.tenant_map()
    }

    /// Authenticates a packager for `tenant`: 401 for missing or wrong credentials, 403 for
    /// another tenant's credentials.
    pub fn authenticate_packager(
        &self,
        tenant: &Tenant,
        headers: &HeaderMap,
    ) -> Result<Principal, ApiError> {
        let Some(presented) = presented_credentials(headers)? else {
            return Err(ApiError::Unauthorized(
                "credentials required: HTTP Basic, or a token in nv-authorizations or Authorization: Bearer".into(),
            ));
        };
        if let Some(principal) = tenant.auth.check(&presented)? {
            crate::http::rate_limit::admit(tenant, &principal.credential)?;
            return Ok(principal);
        }
        Err(crate::http::rate_limit::refuse(
            self,
            tenant,
            |t| matches!(t.auth.check(&presented), Ok(Some(_)) | Err(_)),
            ApiError::Unauthorized("invalid credentials".into()),
        ))
    }
}

/// The HTTP client for licence upstreams: no redirects, because the request carries content
/// keys and must reach only the configured URL.
fn upstream_client() -> Result<reqwest::Client, String> {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .connect_timeout(std::time::Duration::from_secs(5))
        .build()
        .map_err(|e| format!("licence proxy HTTP client: {e}"))
}
