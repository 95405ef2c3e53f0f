//! Shared state of the running server: configuration prepared for use, and the store.

use std::collections::HashMap;
use std::sync::Arc;

use axum::http::HeaderMap;
use keyplex_store::KeyStore;
use keyplex_types::TenantId;

use crate::auth::{PackagerAuth, Presented, Principal, presented_credentials};
use crate::config::{Config, TenantConfig};
use crate::error::ApiError;

/// One tenant, ready to serve.
pub struct Tenant {
    pub id: TenantId,
    pub config: TenantConfig,
    pub auth: PackagerAuth,
    /// What `signaling::probe` found per (system, scheme): it depends only on this tenant's
    /// settings, and every key request asks it before touching the store.
    pub(crate) probes: crate::signaling::ProbeCache,
    /// URLs written into signaling that point back at keyplex.
    pub urls: crate::signaling::TenantUrls,
    /// The player side: entitlement token keys, products, replay protection, CORS origins.
    pub licence: crate::entitlement::LicenceAuth,
}

#[derive(Clone)]
pub struct AppState {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    tenants: HashMap<TenantId, Tenant>,
    max_body_bytes: usize,
    public_url: String,
    /// The folder served at `/players/` (see [`crate::players::locate`]).
    players_dir: std::path::PathBuf,
    /// The licence proxy's one HTTP client to upstream licence servers (connection pool).
    upstream_client: reqwest::Client,
}

impl AppState {
    pub fn new(config: &Config, store: Arc<dyn KeyStore>) -> Result<Self, String> {
        let public_url = config
            .server
            .public_url
            .clone()
            .unwrap_or_else(|| format!("http://{}", config.server.listen))
            .trim_end_matches('/')
            .to_owned();
        let mut tenants = HashMap::new();
        for (name, tc) in &config.tenants {
            let id = TenantId::parse(name).map_err(|e| e.to_string())?;
            let auth = PackagerAuth::from_config(tc).map_err(|e| format!("tenant {name}: {e}"))?;
            let licence = crate::entitlement::LicenceAuth::from_config(tc.licence.as_ref())
                .map_err(|e| format!("tenant {name}: {e}"))?;
            tenants.insert(
                id.clone(),
                Tenant {
                    id: id.clone(),
                    config: tc.clone(),
                    auth,
                    probes: crate::signaling::ProbeCache::default(),
                    urls: crate::signaling::TenantUrls::new(&public_url, &id, tc),
                    licence,
                },
            );
        }
        Ok(Self {
            inner: Arc::new(Inner {
                store,
                tenants,
                max_body_bytes: config.server.max_body_bytes,
                public_url,
                players_dir: crate::players::locate(config.server.players_dir.as_deref()),
                upstream_client: crate::licence_proxy::upstream_client()?,
            }),
        })
    }

    pub fn store(&self) -> &dyn KeyStore {
        self.inner.store.as_ref()
    }

    pub fn max_body_bytes(&self) -> usize {
        self.inner.max_body_bytes
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

    /// The tenant named in a URL path segment.
    pub fn tenant(&self, name: &str) -> Result<&Tenant, ApiError> {
        TenantId::parse(name)
            .ok()
            .and_then(|id| self.inner.tenants.get(&id))
            .ok_or_else(|| ApiError::NotFound(format!("unknown tenant {:?}", truncate(name))))
    }

    /// Every configured tenant (for credentials checked outside [`Self::authenticate_packager`],
    /// such as the GET-CPIX token, which must still tell "another tenant's" (403) from "wrong" (401)).
    pub fn tenants(&self) -> impl Iterator<Item = &Tenant> {
        self.inner.tenants.values()
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
            return Ok(principal);
        }
        if self.belongs_to_another_tenant(&tenant.id, &presented) {
            return Err(ApiError::Forbidden(format!(
                "these credentials are not valid for tenant {}",
                tenant.id
            )));
        }
        Err(ApiError::Unauthorized("invalid credentials".into()))
    }

    fn belongs_to_another_tenant(&self, this: &TenantId, presented: &Presented) -> bool {
        self.inner
            .tenants
            .values()
            .filter(|t| &t.id != this)
            .any(|t| matches!(t.auth.check(presented), Ok(Some(_)) | Err(_)))
    }
}

fn truncate(s: &str) -> String {
    s.chars().take(64).collect()
}
