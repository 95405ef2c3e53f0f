//! The admin API, `/admin/v1/…`: tenants and credentials (effective at once, kept in the
//! store), contents and key metadata, the audit trail, the dashboard's stats, key export and
//! import, and master key rotation. `docs/operators.md` is its reference.
//!
//! Authentication: `Authorization: Bearer` with `[admin] token`, or a JWT verified by
//! `[admin] jwt` (which must carry `exp`). Answers and errors are JSON (problem+json).

use axum::Json;
use axum::Router;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use keyplex_store::{
    AuditAction, AuditEvent, AuditQuery, ExportedKey, StoredCredential, StoredTenant,
};
use keyplex_types::{
    ContentId, ContentKey, ContentKeyValue, Iv, KeyId, KeyOrigin, KeyPeriod, TenantId, TrackType,
};
use serde::{Deserialize, Serialize};
use sha2::{Digest as _, Sha256};
use subtle::ConstantTimeEq as _;
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;
use zeroize::Zeroizing;

use crate::auth::JwtVerifier;
use crate::config::{AdminConfig, TenantConfig};
use crate::http::error::{ApiError, Problem};
use crate::http::telemetry::{StatsView, Window};
use crate::registry::{CredentialInfo, CredentialSpec, Source, TenantParts};
use crate::state::{AppState, Tenant};

/// How the admin API knows its callers.
pub struct AdminAuth {
    /// SHA-256 of `[admin] token` (compared in constant time).
    token: Option<[u8; 32]>,
    jwt: Option<JwtVerifier>,
}

impl AdminAuth {
    pub fn from_config(config: &AdminConfig) -> Result<Self, String> {
        Ok(Self {
            token: config
                .token
                .as_ref()
                .map(|t| Sha256::digest(t.expose().as_bytes()).into()),
            jwt: config
                .jwt
                .as_ref()
                .map(|j| JwtVerifier::from_configs(&[j], &["exp"]))
                .transpose()
                .map_err(|e| format!("[admin] jwt: {e}"))?,
        })
    }

    /// Who the caller is (`admin`, `admin-jwt:sub=…`), or 401.
    pub fn check(&self, headers: &HeaderMap) -> Result<String, ApiError> {
        if self.token.is_none() && self.jwt.is_none() {
            return Err(ApiError::Unauthorized(
                "the admin API is not configured: set [admin] token (or [admin] jwt)".into(),
            ));
        }
        let presented = headers
            .get(axum::http::header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| {
                let (scheme, token) = v.trim().split_once(' ')?;
                scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
            })
            .filter(|t| !t.is_empty())
            .ok_or_else(|| {
                ApiError::Unauthorized("admin API: send Authorization: Bearer <admin token>".into())
            })?;
        if let Some(expected) = &self.token {
            let digest: [u8; 32] = Sha256::digest(presented.as_bytes()).into();
            if bool::from(expected.ct_eq(&digest)) {
                return Ok("admin".to_owned());
            }
        }
        if let Some(jwt) = &self.jwt
            && let Some(claims) = jwt.verify_claims(presented)?
        {
            let sub = claims.get("sub").and_then(|s| s.as_str()).unwrap_or("-");
            return Ok(format!(
                "admin-jwt:sub={}",
                sub.chars().take(64).collect::<String>()
            ));
        }
        Err(ApiError::Unauthorized("invalid admin token".into()))
    }
}

/// Who called an admin route (`admin`, `admin-jwt:sub=…`), as the admin layer found it.
#[derive(Clone, Debug)]
pub struct AdminCaller(pub String);

/// Every `/admin/v1` route, behind [`require_admin`]: authentication is a layer of the admin
/// router, so a route added here is protected without its handler doing anything.
pub fn router(state: &AppState) -> Router<AppState> {
    routes()
        .route_layer(axum::middleware::from_fn_with_state(
            state.clone(),
            require_admin,
        ))
        .layer(axum::middleware::map_response(bearer_challenge))
}

/// 401 unless the request carries the admin token (or an admin JWT); the caller's name goes
/// into the request for the handler's audit records.
async fn require_admin(
    State(state): State<AppState>,
    mut request: axum::extract::Request,
    next: axum::middleware::Next,
) -> Result<Response, ApiError> {
    let who = state.admin_auth().check(request.headers())?;
    request.extensions_mut().insert(AdminCaller(who));
    Ok(next.run(request).await)
}

fn routes() -> Router<AppState> {
    Router::new()
        .route("/admin/v1/tenants", get(list_tenants).post(create_tenant))
        .route(
            "/admin/v1/tenants/{id}",
            get(get_tenant).patch(patch_tenant),
        )
        .route(
            "/admin/v1/tenants/{id}/credentials",
            get(list_credentials).post(add_credential),
        )
        .route(
            "/admin/v1/tenants/{id}/credentials/{cred}",
            axum::routing::delete(revoke_credential),
        )
        .route("/admin/v1/tenants/{id}/contents", get(list_contents))
        .route(
            "/admin/v1/tenants/{id}/contents/{content_id}/keys",
            get(content_keys),
        )
        .route(
            "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
            get(crate::operator::admin_licence_policy::get_policy)
                .put(crate::operator::admin_licence_policy::put_policy)
                .delete(crate::operator::admin_licence_policy::delete_policy),
        )
        .route("/admin/v1/tenants/{id}/export", post(export_keys))
        .route("/admin/v1/tenants/{id}/import", post(import_keys))
        .route("/admin/v1/master-key/rotate", post(rotate_master_key))
        .route("/admin/v1/audit", get(audit))
        .route("/admin/v1/stats", get(stats))
        .merge(crate::drm_systems::admin_routes())
}

/// Admin 401s challenge for a Bearer token only: a Basic challenge would make browsers pop
/// their own login box over the dashboard's.
async fn bearer_challenge(mut response: Response) -> Response {
    if let Some(value) = response
        .headers_mut()
        .get_mut(axum::http::header::WWW_AUTHENTICATE)
    {
        *value = axum::http::HeaderValue::from_static("Bearer realm=\"keyplex-admin\"");
    }
    response
}

pub(crate) fn json_body<T>(body: Result<Json<T>, JsonRejection>) -> Result<T, ApiError> {
    body.map(|Json(v)| v)
        .map_err(|e| ApiError::BadRequest(format!("invalid JSON body: {}", e.body_text())))
}

fn query<T>(q: Result<Query<T>, axum::extract::rejection::QueryRejection>) -> Result<T, ApiError> {
    q.map(|Query(v)| v)
        .map_err(|e| ApiError::BadRequest(format!("invalid query: {}", e.body_text())))
}

/// Records an admin change durably (before the answer), naming the caller.
pub(crate) async fn audit_change(
    state: &AppState,
    who: &str,
    tenant: &str,
    action: AuditAction,
    detail: String,
) -> Result<(), ApiError> {
    audit_change_of(state, who, tenant, None, action, detail).await
}

/// An admin change, recorded durably before the answer; `content` when it concerns one.
pub(crate) async fn audit_change_of(
    state: &AppState,
    who: &str,
    tenant: &str,
    content: Option<&ContentId>,
    action: AuditAction,
    detail: String,
) -> Result<(), ApiError> {
    let client = crate::scope::who().map_or_else(|| "-".to_owned(), |(_, _, client)| client);
    state
        .audit()
        .record_durable(vec![AuditEvent {
            id: 0,
            at: OffsetDateTime::now_utc(),
            tenant: tenant.to_owned(),
            action,
            interface: "admin".to_owned(),
            credential: who.to_owned(),
            client,
            content_id: content.cloned(),
            key_ids: Vec::new(),
            outcome: "ok".to_owned(),
            detail: Some(detail),
        }])
        .await?;
    Ok(())
}

// ---- Tenants ----

/// A tenant as the admin API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Tenant)]
struct TenantJson {
    id: String,
    source: Source,
    /// A disabled tenant answers 403 to packagers and players alike; its keys stay.
    disabled: bool,
    /// When the admin API created it (`null` for tenants of the configuration file).
    #[serde(with = "time::serde::rfc3339::option")]
    created_at: Option<OffsetDateTime>,
    credentials: Vec<CredentialInfo>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct TenantList {
    tenants: Vec<TenantJson>,
}

impl From<&Tenant> for TenantJson {
    fn from(t: &Tenant) -> Self {
        Self {
            id: t.id.as_str().to_owned(),
            source: t.source,
            disabled: t.disabled,
            created_at: t.created_at,
            credentials: t.credentials.clone(),
        }
    }
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants",
    operation_id = "admin_list_tenants",
    tag = "admin",
    summary = "List the tenants",
    responses(
        (status = 200, description = "Every tenant, by id", body = TenantList),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn list_tenants(State(state): State<AppState>) -> Result<Response, ApiError> {
    let map = state.tenant_map();
    let mut tenants: Vec<TenantJson> = map.values().map(|t| TenantJson::from(&**t)).collect();
    tenants.sort_by(|a, b| a.id.cmp(&b.id));
    Ok(Json(TenantList { tenants }).into_response())
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}",
    operation_id = "admin_get_tenant",
    tag = "admin",
    summary = "One tenant",
    params(
        ("id" = String, Path, description = "Tenant id"),
    ),
    responses(
        (status = 200, description = "The tenant", body = TenantJson),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn get_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    Ok(Json(TenantJson::from(&*tenant)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "acme", "settings": {"crypto_period_seconds": 60}}))]
struct NewTenant {
    /// `[A-Za-z0-9_-]`, as a `[tenants.x]` table name.
    id: String,
    /// The fields of a `[tenants.x]` table of the configuration file (`kid_override`,
    /// `crypto_period_seconds`, `playready_la_url`, `licence = {…}`, …) except credentials,
    /// which are added with `POST /admin/v1/tenants/{id}/credentials`.
    #[serde(default)]
    #[schema(value_type = Option<Object>)]
    settings: Option<serde_json::Value>,
    #[serde(default)]
    disabled: bool,
}

#[utoipa::path(
    post,
    path = "/admin/v1/tenants",
    operation_id = "admin_create_tenant",
    tag = "admin",
    summary = "Create a tenant",
    request_body(content = NewTenant, content_type = "application/json"),
    responses(
        (status = 201, description = "The new tenant", body = TenantJson),
        (status = 400, description = "Malformed request, or settings that do not make a servable tenant", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant exists", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn create_tenant(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    body: Result<Json<NewTenant>, JsonRejection>,
) -> Result<Response, ApiError> {
    let new = json_body(body)?;
    let id = TenantId::parse_new(&new.id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let settings = new.settings.unwrap_or_else(|| serde_json::json!({}));
    let config: TenantConfig = serde_json::from_value(settings.clone())
        .map_err(|e| ApiError::BadRequest(format!("settings: {e}")))?;
    if config.has_file_credentials() {
        return Err(ApiError::BadRequest(
            "settings: credentials are added with POST /admin/v1/tenants/{id}/credentials, not in settings".into(),
        ));
    }
    // Definitions in settings could not be changed later (settings are not editable): they
    // go through their own routes, where they can.
    if !config.drm_systems.is_empty() {
        return Err(ApiError::BadRequest(
            "settings: DRM systems are defined with PUT /admin/v1/tenants/{id}/drm-systems/{name}, not in settings".into(),
        ));
    }
    // Settings must make a servable tenant (checked before anything is stored).
    Tenant::build(
        id.clone(),
        TenantParts {
            config,
            source: Source::Admin,
            disabled: new.disabled,
            created_at: None,
            credentials: Vec::new(),
        },
        state.public_url(),
    )
    .map_err(|e| ApiError::BadRequest(format!("settings: {e}")))?;
    if state.tenant_map().contains_key(&id) {
        return Err(ApiError::Conflict(format!("tenant {id} exists")));
    }
    let row = StoredTenant {
        id: id.clone(),
        settings: Some(settings.to_string()),
        disabled: new.disabled,
        created_at: OffsetDateTime::now_utc(),
    };
    if !state.store().create_tenant(&row).await? {
        return Err(ApiError::Conflict(format!("tenant {id} exists")));
    }
    audit_change(
        &state,
        &who,
        id.as_str(),
        AuditAction::TenantCreated,
        "created".into(),
    )
    .await?;
    state.reload_tenants(true).await?;
    let tenant = state.any_tenant(id.as_str())?;
    Ok((StatusCode::CREATED, Json(TenantJson::from(&*tenant))).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct TenantPatch {
    /// Disable (`true`) or enable (`false`) the tenant.
    disabled: Option<bool>,
}

#[utoipa::path(
    patch,
    path = "/admin/v1/tenants/{id}",
    operation_id = "admin_patch_tenant",
    tag = "admin",
    summary = "Disable or enable a tenant",
    params(
        ("id" = String, Path, description = "Tenant id"),
    ),
    request_body(content = TenantPatch, content_type = "application/json"),
    responses(
        (status = 200, description = "The tenant", body = TenantJson),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn patch_tenant(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Result<Json<TenantPatch>, JsonRejection>,
) -> Result<Response, ApiError> {
    let patch = json_body(body)?;
    let tenant = state.any_tenant(&id)?;
    if let Some(disabled) = patch.disabled {
        state
            .store()
            .set_tenant_disabled(&tenant.id, disabled, OffsetDateTime::now_utc())
            .await?;
        let what = if disabled { "disabled" } else { "enabled" };
        audit_change(
            &state,
            &who,
            tenant.id.as_str(),
            AuditAction::TenantChanged,
            what.into(),
        )
        .await?;
        state.reload_tenants(true).await?;
    }
    let tenant = state.any_tenant(&id)?;
    Ok(Json(TenantJson::from(&*tenant)).into_response())
}

// ---- Credentials ----

#[derive(Serialize, utoipa::ToSchema)]
struct CredentialList {
    credentials: Vec<CredentialInfo>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}/credentials",
    operation_id = "admin_list_credentials",
    tag = "admin",
    summary = "A tenant's credentials (no secrets)",
    params(
        ("id" = String, Path, description = "Tenant id"),
    ),
    responses(
        (status = 200, description = "The credentials, file ones first", body = CredentialList),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn list_credentials(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    Ok(Json(CredentialList {
        credentials: tenant.credentials.clone(),
    })
    .into_response())
}

#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = NewCredential)]
struct NewCredentialJson<'a> {
    id: String,
    /// The credential's type (`basic`, `jwt`, …).
    #[serde(rename = "type")]
    kind: &'static str,
    /// The non-secret part (user name, access key id, signer name, key algorithm).
    label: String,
    #[serde(with = "time::serde::rfc3339")]
    created_at: OffsetDateTime,
    /// A secret keyplex generated (shown once): the `basic` password, `get_token` or
    /// `enc_token` the request left out.
    #[serde(skip_serializing_if = "Option::is_none")]
    secret: Option<&'a str>,
}

/// Fills in a secret the caller left out: a Basic password, a GET token or an enc_token.
fn generate_missing_secret(body: &mut serde_json::Value) -> Result<Option<String>, ApiError> {
    let field = match body.get("type").and_then(|t| t.as_str()) {
        Some("basic") => "password",
        Some("get_token" | "enc_token") => "token",
        _ => return Ok(None),
    };
    let Some(object) = body.as_object_mut() else {
        return Ok(None);
    };
    if object.get(field).is_some_and(|v| !v.is_null()) {
        return Ok(None);
    }
    let secret = keyplex_crypto::random::random_token(32)?;
    object.insert(field.to_owned(), serde_json::Value::String(secret.clone()));
    Ok(Some(secret))
}

#[utoipa::path(
    post,
    path = "/admin/v1/tenants/{id}/credentials",
    operation_id = "admin_add_credential",
    tag = "admin",
    summary = "Add a credential to a tenant",
    description = "Effective at once on this node, within two seconds on the others. A `basic` password, \
        `get_token` or `enc_token` left out is generated and returned once in `secret`.",
    params(
        ("id" = String, Path, description = "Tenant id"),
    ),
    request_body(content = doc::CredentialRequest, content_type = "application/json"),
    responses(
        (status = 201, description = "The credential", body = NewCredentialJson),
        (status = 400, description = "Unknown type, missing or malformed fields", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The tenant has a credential with this access key id or signer name", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn add_credential(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path(id): Path<String>,
    body: Result<Json<serde_json::Value>, JsonRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let mut body = json_body(body)?;
    match body.get("type").and_then(|t| t.as_str()) {
        Some(kind) if CredentialSpec::KINDS.contains(&kind) => {}
        _ => {
            return Err(ApiError::BadRequest(format!(
                "type must be one of {}",
                CredentialSpec::KINDS.join(", ")
            )));
        }
    }
    // The request carries the credential's secret: every copy of it is wiped when done.
    let mut body = WipedJson(std::mem::take(&mut body));
    let generated = generate_missing_secret(&mut body.0)?.map(Zeroizing::new);
    let spec: CredentialSpec = serde_json::from_value(body.0.clone())
        .map_err(|e| ApiError::BadRequest(format!("credential: {e}")))?;
    if let CredentialSpec::GetToken { token } = &spec
        && token.expose().len() < 16
    {
        return Err(ApiError::BadRequest(
            "a get_token must be at least 16 characters".into(),
        ));
    }
    refuse_duplicate(&tenant, &spec)?;
    // The tenant with this credential must be servable (key formats, lengths).
    let mut parts = TenantParts {
        config: tenant.config.clone(),
        source: tenant.source,
        disabled: tenant.disabled,
        created_at: tenant.created_at,
        credentials: Vec::new(),
    };
    let kind = spec.kind();
    let label = spec.label();
    parts.add_new(spec);
    Tenant::build(tenant.id.clone(), parts, state.public_url())
        .map_err(|e| ApiError::BadRequest(format!("credential: {e}")))?;
    let credential = StoredCredential {
        id: format!("cred_{}", keyplex_crypto::random::random_token(16)?),
        tenant: tenant.id.clone(),
        kind: kind.to_owned(),
        label: label.clone(),
        spec: Zeroizing::new(body.0.to_string()),
        created_at: OffsetDateTime::now_utc(),
    };
    state.store().add_credential(&credential).await?;
    audit_change(
        &state,
        &who,
        tenant.id.as_str(),
        AuditAction::CredentialAdded,
        format!("{} {kind} {label}", credential.id),
    )
    .await?;
    state.reload_tenants(true).await?;
    let answer = NewCredentialJson {
        id: credential.id.clone(),
        kind,
        label,
        created_at: credential.created_at,
        secret: generated.as_deref().map(String::as_str),
    };
    // The answer may carry the generated secret: its buffer is wiped once sent.
    let json = Zeroizing::new(
        serde_json::to_string(&answer).map_err(|e| ApiError::Internal(e.to_string()))?,
    );
    Ok((
        StatusCode::CREATED,
        [(
            axum::http::header::CONTENT_TYPE,
            axum::http::HeaderValue::from_static("application/json"),
        )],
        crate::http::body::secret(json.as_bytes()),
    )
        .into_response())
}

/// A JSON request body that held a secret: every string in it is zeroized when it goes.
struct WipedJson(serde_json::Value);

impl Drop for WipedJson {
    fn drop(&mut self) {
        wipe_strings(&mut self.0);
    }
}

/// Zeroizes every string of `value` in place (object keys are names, not secrets).
fn wipe_strings(value: &mut serde_json::Value) {
    use zeroize::Zeroize as _;
    match value {
        serde_json::Value::String(s) => s.zeroize(),
        serde_json::Value::Array(items) => items.iter_mut().for_each(wipe_strings),
        serde_json::Value::Object(map) => map.values_mut().for_each(wipe_strings),
        _ => {}
    }
}

/// Credentials that would shadow one another: the same SigV4 access key id or Widevine
/// signer name twice in a tenant (only the first would ever be checked).
fn refuse_duplicate(tenant: &Tenant, spec: &CredentialSpec) -> Result<(), ApiError> {
    let taken = match spec {
        CredentialSpec::Sigv4(c) => tenant
            .config
            .sigv4
            .iter()
            .any(|s| s.access_key_id == c.access_key_id),
        CredentialSpec::WidevineSigner(w) => tenant
            .config
            .widevine_signers
            .iter()
            .any(|s| s.name == w.name),
        // One admin upstream per DRM (it replaces the file's; two would shadow each other).
        CredentialSpec::LicenceUpstream(u) => tenant.credentials.iter().any(|c| {
            c.kind == "licence_upstream"
                && c.source == Source::Admin
                && c.label.split(' ').next() == Some(u.drm.as_str())
        }),
        _ => false,
    };
    if taken {
        return Err(ApiError::Conflict(format!(
            "tenant {} already has a {} credential {:?}: revoke it first",
            tenant.id,
            spec.kind(),
            spec.label()
        )));
    }
    Ok(())
}

#[utoipa::path(
    delete,
    path = "/admin/v1/tenants/{id}/credentials/{cred}",
    operation_id = "admin_revoke_credential",
    tag = "admin",
    summary = "Revoke a credential",
    description = "Refused from the answer on. Credentials of the configuration file (`config:…`) are \
        changed there.",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("cred" = String, Path, description = "Credential id (`cred_…`)"),
    ),
    responses(
        (status = 204, description = "Revoked"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant or credential", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A credential of the configuration file", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn revoke_credential(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path((id, cred)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    if cred.starts_with("config:") {
        let demo_file = state.config().server.data_dir.join("demo-credentials");
        if tenant.id.as_str() == "demo" && cred == "config:basic:0" && demo_file.exists() {
            // No configuration file: keyplex generated this password at the first start.
            return Err(ApiError::Conflict(format!(
                "credential {cred} is the demo tenant's generated password, kept in {}: to change it, stop the server, delete that file and start again (a new password is printed once); or give keyplex a configuration file with tenants of your own",
                demo_file.display()
            )));
        }
        return Err(ApiError::Conflict(format!(
            "credential {cred} is written in the configuration file: remove it there"
        )));
    }
    if !state.store().revoke_credential(&tenant.id, &cred).await? {
        return Err(ApiError::NotFound(format!(
            "tenant {} has no credential {:?}",
            tenant.id,
            cred.chars().take(64).collect::<String>()
        )));
    }
    audit_change(
        &state,
        &who,
        tenant.id.as_str(),
        AuditAction::CredentialRevoked,
        cred,
    )
    .await?;
    // Refused from this answer on: the tenants are rebuilt before it leaves.
    state.reload_tenants(true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

// ---- Contents and keys (metadata only) ----

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct ContentsQuery {
    /// Content ids containing this text (at most 200 characters).
    search: Option<String>,
    /// The `next` of the previous page.
    after: Option<String>,
    /// Page size, 1 to 1000 (default 50).
    limit: Option<u32>,
}

/// A content and its keys, by count.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Content)]
struct ContentJson {
    content_id: String,
    keys: u64,
    #[schema(format = DateTime)]
    first_key_at: String,
    #[schema(format = DateTime)]
    last_key_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ContentList {
    contents: Vec<ContentJson>,
    /// The `after` of the next page; `null` on the last page.
    next: Option<String>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}/contents",
    operation_id = "admin_list_contents",
    tag = "admin",
    summary = "A tenant's contents",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ContentsQuery,
    ),
    responses(
        (status = 200, description = "One page of contents, by content id", body = ContentList),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn list_contents(
    State(state): State<AppState>,
    Path(id): Path<String>,
    q: Result<Query<ContentsQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let q = query(q)?;
    let limit = q.limit.unwrap_or(50).clamp(1, 1000);
    let after = q
        .after
        .as_deref()
        .map(ContentId::parse)
        .transpose()
        .map_err(|e| ApiError::BadRequest(format!("after: {e}")))?;
    let search = q.search.as_deref().map(str::trim).filter(|s| !s.is_empty());
    if search.is_some_and(|s| s.len() > 200) {
        return Err(ApiError::BadRequest(
            "search is longer than 200 characters".into(),
        ));
    }
    let contents = state
        .store()
        .list_contents(&tenant.id, search, after.as_ref(), limit)
        .await?;
    let next = (contents.len() == limit as usize)
        .then(|| contents.last().map(|c| c.content_id.as_str().to_owned()))
        .flatten();
    let contents: Vec<ContentJson> = contents
        .iter()
        .map(|c| ContentJson {
            content_id: c.content_id.as_str().to_owned(),
            keys: c.keys,
            first_key_at: rfc3339(c.first_key_at),
            last_key_at: rfc3339(c.last_key_at),
        })
        .collect();
    Ok(Json(ContentList { contents, next }).into_response())
}

fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

fn origin_name(origin: KeyOrigin) -> &'static str {
    match origin {
        KeyOrigin::Generated => "generated",
        KeyOrigin::Supplied => "supplied",
    }
}

/// A key's metadata: never key bytes.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = KeyInfo)]
struct KeyInfoJson {
    /// The key id (UUID).
    kid: String,
    track_type: Option<String>,
    /// The key period index (`null`: VOD).
    period: Option<u64>,
    /// `generated` or `supplied`.
    origin: &'static str,
    /// True when the key is bound to its (content, track, period) slot.
    slotted: bool,
    #[schema(format = DateTime)]
    created_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ContentKeys {
    content_id: String,
    keys: Vec<KeyInfoJson>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}/contents/{content_id}/keys",
    operation_id = "admin_content_keys",
    tag = "admin",
    summary = "A content's keys (metadata only)",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("content_id" = String, Path, description = "Content id"),
    ),
    responses(
        (status = 200, description = "The keys of the content", body = ContentKeys),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant or content", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn content_keys(
    State(state): State<AppState>,
    Path((id, content_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let content_id =
        ContentId::parse(&content_id).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    let keys = state.store().list_keys(&tenant.id, &content_id).await?;
    if keys.is_empty() {
        return Err(ApiError::NotFound(format!(
            "tenant {} has no content {content_id}",
            tenant.id
        )));
    }
    let keys: Vec<KeyInfoJson> = keys
        .iter()
        .map(|k| KeyInfoJson {
            kid: k.kid.to_string(),
            track_type: k.track_type.as_ref().map(|t| t.as_str().to_owned()),
            period: k.period.index(),
            origin: origin_name(k.origin),
            slotted: k.slotted,
            created_at: rfc3339(k.created_at),
        })
        .collect();
    Ok(Json(ContentKeys {
        content_id: content_id.as_str().to_owned(),
        keys,
    })
    .into_response())
}

// ---- Export and import ----

/// The format of an encrypted key bundle.
const BUNDLE_FORMAT: &str = "keyplex-key-bundle/1";

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
struct BundleKey {
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
struct ExportRequest {
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
async fn export_keys(
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
struct ImportRequest {
    bundle: KeyBundle,
    /// The operator's RSA private key (unencrypted PKCS#8 `PRIVATE KEY` PEM), used for this
    /// request only.
    private_key_pem: String,
}

#[derive(Serialize, utoipa::ToSchema)]
struct ImportAnswer {
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
async fn import_keys(
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
            bundle.format.chars().take(64).collect::<String>()
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
            bundle.tenant.chars().take(64).collect::<String>()
        ),
    )
    .await?;
    Ok(Json(ImportAnswer {
        imported: outcome.imported,
        already_present: outcome.already_present,
    })
    .into_response())
}

// ---- Master key rotation ----

static ROTATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Serialize, utoipa::ToSchema)]
struct RotationAnswer {
    old_fingerprint: String,
    new_fingerprint: String,
    /// Content keys and credentials re-sealed under the new key.
    rewrapped: u64,
    /// Where the previous key file was moved (keep it until the new key is backed up).
    retired_key_file: String,
}

#[utoipa::path(
    post,
    path = "/admin/v1/master-key/rotate",
    operation_id = "admin_rotate_master_key",
    tag = "admin",
    summary = "Rotate the master key",
    description = "Generates a new master key and re-seals every content key and credential under it while \
        the store keeps serving.",
    responses(
        (status = 200, description = "The rotation", body = RotationAnswer),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "The master key comes from KEYPLEX_MASTER_KEY, or a rotation is running", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
        (status = 500, description = "Internal error", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn rotate_master_key(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
) -> Result<Response, ApiError> {
    use crate::setup::{MasterKeySource, next_master_key_path, promote_next_master_key};
    use keyplex_crypto::master::MasterKey;
    let MasterKeySource::File(path) = state.master_key_source() else {
        return Err(ApiError::Conflict(
            "the master key comes from KEYPLEX_MASTER_KEY, which keyplex cannot change: \
             rotate by restarting with a master key file"
                .into(),
        ));
    };
    let Ok(_one_at_a_time) = ROTATING.try_lock() else {
        return Err(ApiError::Conflict(
            "a master key rotation is already running".into(),
        ));
    };
    let old = MasterKey::load(path).map_err(|e| ApiError::Internal(e.to_string()))?;
    let new = MasterKey::generate()?;
    let next = next_master_key_path(path);
    // Written (and fsynced) before anything is re-sealed: a crash mid-rotation leaves both
    // keys on disk, and the next start finishes the rotation.
    new.write_new(&next).map_err(|e| {
        ApiError::Conflict(format!(
            "cannot write {} ({e}): a rotation interrupted earlier? restart keyplex to finish it",
            next.display()
        ))
    })?;
    let report = state.store().rotate_master_key(new).await?;
    promote_next_master_key(path, &old).map_err(|e| ApiError::Internal(e.to_string()))?;
    audit_change(
        &state,
        &who,
        "-",
        AuditAction::MasterKeyRotated,
        format!(
            "{} -> {}, {} records re-sealed",
            old.fingerprint(),
            report.new_fingerprint,
            report.rewrapped
        ),
    )
    .await?;
    tracing::warn!(old = %old.fingerprint(), new = %report.new_fingerprint, rewrapped = report.rewrapped, "master key rotated: back up the new key file");
    Ok(Json(RotationAnswer {
        old_fingerprint: old.fingerprint(),
        new_fingerprint: report.new_fingerprint,
        rewrapped: report.rewrapped,
        retired_key_file: crate::setup::retired_master_key_path(path, &old.fingerprint())
            .display()
            .to_string(),
    })
    .into_response())
}

// ---- Audit trail and stats ----

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct AuditParams {
    tenant: Option<String>,
    content_id: Option<String>,
    /// An action: `key.created`, `key.delivered`, `licence.granted`, `licence.denied`,
    /// `admin.…`.
    action: Option<String>,
    /// RFC 3339 time or Unix seconds.
    since: Option<String>,
    /// RFC 3339 time or Unix seconds.
    until: Option<String>,
    /// Events older than this id (the next page).
    before_id: Option<i64>,
    /// 1 to 10 000 (default 100).
    limit: Option<u32>,
}

/// RFC 3339 or Unix seconds.
fn parse_time(what: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
    if let Ok(seconds) = text.parse::<i64>() {
        return OffsetDateTime::from_unix_timestamp(seconds)
            .map_err(|e| ApiError::BadRequest(format!("{what}: {e}")));
    }
    OffsetDateTime::parse(text, &Rfc3339).map_err(|_| {
        ApiError::BadRequest(format!("{what} must be an RFC 3339 time or Unix seconds"))
    })
}

/// An event of the audit trail (never key material).
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = AuditEvent)]
struct AuditEventJson {
    id: i64,
    #[serde(with = "time::serde::rfc3339")]
    at: OffsetDateTime,
    tenant: String,
    action: &'static str,
    interface: String,
    credential: String,
    client: String,
    content_id: Option<String>,
    key_ids: Vec<String>,
    outcome: String,
    detail: Option<String>,
}

#[derive(Serialize, utoipa::ToSchema)]
struct AuditEvents {
    /// Newest first.
    events: Vec<AuditEventJson>,
}

#[utoipa::path(
    get,
    path = "/admin/v1/audit",
    operation_id = "admin_audit",
    tag = "admin",
    summary = "Query the audit trail",
    params(
        AuditParams,
    ),
    responses(
        (status = 200, description = "The events, newest first", body = AuditEvents),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn audit(
    State(state): State<AppState>,
    q: Result<Query<AuditParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let query = AuditQuery {
        tenant: q
            .tenant
            .map(|t| TenantId::parse(&t).map(|t| t.as_str().to_owned()))
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("tenant: {e}")))?,
        content_id: q
            .content_id
            .as_deref()
            .map(ContentId::parse)
            .transpose()
            .map_err(|e| ApiError::BadRequest(format!("content_id: {e}")))?,
        action: q
            .action
            .as_deref()
            .map(|a| {
                AuditAction::parse(a).ok_or_else(|| {
                    ApiError::BadRequest(format!(
                        "action must be one of {}",
                        AuditAction::ALL.map(AuditAction::as_str).join(", ")
                    ))
                })
            })
            .transpose()?,
        since: q
            .since
            .as_deref()
            .map(|t| parse_time("since", t))
            .transpose()?,
        until: q
            .until
            .as_deref()
            .map(|t| parse_time("until", t))
            .transpose()?,
        before_id: q.before_id,
        after_id: None,
        limit: q.limit.unwrap_or(100).clamp(1, 10_000),
    };
    // What this node queued is committed first, so a query sees every answered request.
    state.audit().flush().await?;
    let events: Vec<AuditEventJson> = state
        .store()
        .query_audit(&query)
        .await?
        .into_iter()
        .map(|e| AuditEventJson {
            id: e.id,
            at: e.at,
            tenant: e.tenant,
            action: e.action.as_str(),
            interface: e.interface,
            credential: e.credential,
            client: e.client,
            content_id: e.content_id.map(|c| c.as_str().to_owned()),
            key_ids: e.key_ids.iter().map(KeyId::to_string).collect(),
            outcome: e.outcome,
            detail: e.detail,
        })
        .collect();
    Ok(Json(AuditEvents { events }).into_response())
}

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
struct StatsParams {
    /// One tenant (default: all tenants together).
    tenant: Option<String>,
    /// Seconds: 300, 900 (default), 3600, 21600 or 86400.
    window: Option<u64>,
}

/// `GET /admin/v1/stats`: this node's counts since it started.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Stats)]
struct StatsJson {
    /// The tenant asked for; `null`: all tenants.
    tenant: Option<String>,
    #[serde(flatten)]
    view: StatsView,
    /// Live secure sessions (from the store).
    active_sessions: u64,
}

#[utoipa::path(
    get,
    path = "/admin/v1/stats",
    operation_id = "admin_stats",
    tag = "admin",
    summary = "The dashboard's data",
    params(
        StatsParams,
    ),
    responses(
        (status = 200, description = "Counts per bucket and totals, latency percentiles", body = StatsJson),
        (status = 400, description = "Malformed request", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
async fn stats(
    State(state): State<AppState>,
    q: Result<Query<StatsParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let q = query(q)?;
    let window = Window::parse(q.window.unwrap_or(900)).ok_or_else(|| {
        ApiError::BadRequest(format!(
            "window must be one of {:?} seconds",
            Window::CHOICES
        ))
    })?;
    let tenant = q
        .tenant
        .filter(|t| !t.is_empty())
        .map(|t| state.any_tenant(&t))
        .transpose()?;
    let now = crate::entitlement::now_unix();
    let view = state
        .telemetry()
        .stats(
            state.store(),
            tenant.as_ref().map(|t| t.id.as_str()),
            window,
            now,
        )
        .await?;
    let sessions = state
        .store()
        .count_live_sessions(tenant.as_ref().map(|t| &t.id), now)
        .await?;
    Ok(Json(StatsJson {
        tenant: tenant.map(|t| t.id.as_str().to_owned()),
        view,
        active_sessions: sessions,
    })
    .into_response())
}

/// Request shapes of this API that are read through configuration types (which stay free of
/// OpenAPI derives), for the OpenAPI document only. The tests below check them against the
/// types that really read them.
pub mod doc {
    use serde::Serialize;

    /// `POST /admin/v1/tenants/{id}/credentials`: a credential, by `type`.
    #[derive(Serialize, utoipa::ToSchema)]
    #[serde(tag = "type", rename_all = "snake_case")]
    #[schema(as = Credential, example = json!({"type": "basic", "user": "packager"}))]
    pub enum CredentialRequest {
        /// HTTP Basic for packagers; the password is generated (and returned once) when left
        /// out.
        Basic {
            user: String,
            #[serde(skip_serializing_if = "Option::is_none")]
            password: Option<String>,
        },
        /// Keys that verify packagers' JWTs.
        Jwt(JwtKeys),
        /// AWS SigV4 static credentials (CPIX and SPEKE routes).
        Sigv4 {
            access_key_id: String,
            secret_access_key: String,
            /// Default `us-east-1`.
            #[serde(skip_serializing_if = "Option::is_none")]
            region: Option<String>,
            /// Default `execute-api`.
            #[serde(skip_serializing_if = "Option::is_none")]
            service: Option<String>,
        },
        /// A Widevine API signer (Shaka Packager's `--signer`).
        WidevineSigner {
            name: String,
            /// 64 hex characters (AES-256 key).
            aes_key: String,
            /// 32 hex characters.
            aes_iv: String,
        },
        /// The token of GET-style CPIX (at least 16 characters); generated when left out.
        GetToken {
            #[serde(skip_serializing_if = "Option::is_none")]
            token: Option<String>,
        },
        /// Keys that verify players' entitlement tokens.
        LicenceJwt(JwtKeys),
        /// The PallyCon-style token (`enc_token`, at least 16 characters) of the PallyCon and
        /// ATEME routes; generated when left out.
        EncToken {
            #[serde(skip_serializing_if = "Option::is_none")]
            token: Option<String>,
        },
        /// A licence upstream with its signing secrets (sealed like every credential):
        /// replaces the configuration's `[tenants.x.licence] upstream.<drm>`.
        LicenceUpstream {
            /// `widevine`, `playready`, `fairplay` or `prm`.
            drm: String,
            /// The upstream's `http(s)://` URL.
            url: String,
            /// `keyplex-json`, `widevine-cloud`, `playready-test-server`,
            /// `playready-customdata`, `fairplay-json` or `fairplay-binary`.
            #[serde(skip_serializing_if = "Option::is_none")]
            protocol: Option<String>,
            /// widevine-cloud: the provider name.
            #[serde(skip_serializing_if = "Option::is_none")]
            provider: Option<String>,
            /// widevine-cloud: 64 hex digits.
            #[serde(skip_serializing_if = "Option::is_none")]
            signing_key: Option<String>,
            /// widevine-cloud: 32 hex digits.
            #[serde(skip_serializing_if = "Option::is_none")]
            signing_iv: Option<String>,
            /// Widevine: base64 of the service certificate answered locally.
            #[serde(skip_serializing_if = "Option::is_none")]
            service_certificate: Option<String>,
        },
    }

    /// JWT verification keys: at least one; exactly the algorithms given are accepted.
    #[derive(Serialize, utoipa::ToSchema)]
    pub struct JwtKeys {
        /// HS256 shared secret (at least 32 bytes).
        #[serde(skip_serializing_if = "Option::is_none")]
        pub hs256_secret: Option<String>,
        /// RS256 public key, PEM.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub rs256_public_key_pem: Option<String>,
        /// ES256 public key, PEM.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub es256_public_key_pem: Option<String>,
        /// Required `iss`, if set.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub issuer: Option<String>,
        /// Required `aud`, if set.
        #[serde(skip_serializing_if = "Option::is_none")]
        pub audience: Option<String>,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::doc::{CredentialRequest, JwtKeys};
    use crate::registry::CredentialSpec;

    fn jwt() -> JwtKeys {
        JwtKeys {
            hs256_secret: Some("a-long-shared-secret-for-the-tests".into()),
            rs256_public_key_pem: Some("-----BEGIN PUBLIC KEY-----".into()),
            es256_public_key_pem: Some("-----BEGIN PUBLIC KEY-----".into()),
            issuer: Some("portal".into()),
            audience: Some("keyplex".into()),
        }
    }

    #[test]
    fn credential_request_strings_are_wiped() {
        let mut body = serde_json::json!({
            "type": "sigv4",
            "access_key_id": "AKID",
            "secret_access_key": "wipe-me-0123456789",
            "nested": [{"secret": "wipe-me-too"}],
        });
        super::wipe_strings(&mut body);
        let text = body.to_string();
        assert!(!text.contains("wipe-me"), "{text}");
        assert_eq!(body["secret_access_key"], "");
        assert_eq!(body["nested"][0]["secret"], "");
    }

    /// Every documented credential, with every field, is what the admin API reads.
    #[test]
    fn documented_credentials_are_credential_specs() {
        let documented = [
            CredentialRequest::Basic {
                user: "packager".into(),
                password: Some("secret".into()),
            },
            CredentialRequest::Jwt(jwt()),
            CredentialRequest::Sigv4 {
                access_key_id: "AKID".into(),
                secret_access_key: "secret".into(),
                region: Some("eu-west-1".into()),
                service: Some("execute-api".into()),
            },
            CredentialRequest::WidevineSigner {
                name: "widevine_test".into(),
                aes_key: "00".repeat(32),
                aes_iv: "00".repeat(16),
            },
            CredentialRequest::GetToken {
                token: Some("a-token-of-sixteen-chars".into()),
            },
            CredentialRequest::LicenceJwt(jwt()),
            CredentialRequest::EncToken {
                token: Some("an-enc-token-of-sixteen-chars".into()),
            },
            CredentialRequest::LicenceUpstream {
                drm: "widevine".into(),
                url: "https://license.uat.widevine.com/cenc/getlicense/widevine_test".into(),
                protocol: Some("widevine-cloud".into()),
                provider: Some("widevine_test".into()),
                signing_key: Some("00".repeat(32)),
                signing_iv: Some("00".repeat(16)),
                service_certificate: None,
            },
        ];
        let mut kinds = Vec::new();
        for credential in documented {
            let json = serde_json::to_value(&credential).unwrap();
            let spec: CredentialSpec =
                serde_json::from_value(json.clone()).unwrap_or_else(|e| panic!("{json}: {e}"));
            assert_eq!(json["type"], spec.kind());
            kinds.push(spec.kind());
        }
        assert_eq!(kinds, CredentialSpec::KINDS);
    }
}
