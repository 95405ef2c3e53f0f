//! `/admin/v1/tenants`: list, show, create, disable and enable tenants.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplex_store::{AuditAction, StoredTenant};
use keyplex_types::TenantId;
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;

use crate::config::TenantConfig;
use crate::http::error::{ApiError, Problem};
use crate::registry::{CredentialInfo, Source, TenantParts};
use crate::state::{AppState, Tenant};

use super::{AdminCaller, audit_change, json_body};

/// A tenant as the admin API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Tenant)]
pub(crate) struct TenantJson {
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
pub(crate) struct TenantList {
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
pub(crate) async fn list_tenants(State(state): State<AppState>) -> Result<Response, ApiError> {
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
pub(crate) async fn get_tenant(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    Ok(Json(TenantJson::from(&*tenant)).into_response())
}

#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"id": "acme", "settings": {"crypto_period_seconds": 60}}))]
pub(crate) struct NewTenant {
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
pub(crate) async fn create_tenant(
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
pub(crate) struct TenantPatch {
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
pub(crate) async fn patch_tenant(
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
