//! `/admin/v1/tenants/{id}/drm-systems`: the tenant-defined DRM systems, added, changed and
//! removed without a restart (the catalog itself is `crate::drm_systems`).

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplex_store::{AuditAction, StoredDrmSystem};
use serde::Serialize;
use time::OffsetDateTime;

use crate::drm_systems::*;
use crate::http::error::{ApiError, Problem};
use crate::registry::{Source, TenantParts};
use crate::state::{AppState, Tenant};

use super::{AdminCaller, audit_change, json_body};

/// A defined DRM system as the admin API shows it.
#[derive(Serialize, utoipa::ToSchema)]
pub struct DrmSystemJson {
    #[serde(flatten)]
    definition: DrmSystemConfig,
    /// `config`: the configuration file defines it (change it there); `admin`: the admin API.
    source: Source,
}

#[derive(Serialize, utoipa::ToSchema)]
pub struct DrmSystemList {
    drm_systems: Vec<DrmSystemJson>,
}

fn json_of(system: &DefinedSystem) -> DrmSystemJson {
    DrmSystemJson {
        definition: system.config.clone(),
        source: system.source,
    }
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}/drm-systems",
    operation_id = "admin_list_drm_systems",
    tag = "admin",
    summary = "A tenant's defined DRM systems",
    description = "The DRM systems the tenant defined (configuration file and admin API), \
        `prm_template` included as `nagra-prm`. Built-in systems are not listed.",
    params(
        ("id" = String, Path, description = "Tenant id"),
    ),
    responses(
        (status = 200, description = "The definitions", body = DrmSystemList),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub async fn list_drm_systems(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    Ok(Json(DrmSystemList {
        drm_systems: tenant.drm_systems.iter().map(json_of).collect(),
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}/drm-systems/{name}",
    operation_id = "admin_get_drm_system",
    tag = "admin",
    summary = "One defined DRM system",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("name" = String, Path, description = "The definition's name"),
    ),
    responses(
        (status = 200, description = "The definition", body = DrmSystemJson),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant or DRM system", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub async fn get_drm_system(
    State(state): State<AppState>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let system = tenant
        .drm_systems
        .by_name(&name)
        .ok_or_else(|| not_found(&tenant, &name))?;
    Ok(Json(json_of(system)).into_response())
}

#[utoipa::path(
    put,
    path = "/admin/v1/tenants/{id}/drm-systems/{name}",
    operation_id = "admin_put_drm_system",
    tag = "admin",
    summary = "Define or change a DRM system",
    description = "Every key interface answers the system from the next request on (on other \
        nodes within two seconds). Refused with a message: a malformed system id, a built-in \
        system id without `override`, an unknown template placeholder, a name or system id \
        the tenant already uses for another definition.",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("name" = String, Path, description = "The definition's name"),
    ),
    request_body(content = DrmSystemConfig, content_type = "application/json"),
    responses(
        (status = 201, description = "Defined", body = DrmSystemJson),
        (status = 200, description = "Changed", body = DrmSystemJson),
        (status = 400, description = "The definition cannot be used (the message says why)", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A definition of the configuration file (change it there)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub async fn put_drm_system(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path((id, name)): Path<(String, String)>,
    body: Result<Json<DrmSystemConfig>, JsonRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let mut config = json_body(body)?;
    if config.name.is_empty() {
        config.name.clone_from(&name);
    } else if config.name != name {
        return Err(ApiError::BadRequest(format!(
            "the body names {:?}, the path {:?}",
            keyplex_types::truncate_for_message(&config.name),
            keyplex_types::truncate_for_message(&name)
        )));
    }
    let existing = tenant.drm_systems.by_name(&name);
    if existing.is_some_and(|s| s.source == Source::Config) {
        return Err(ApiError::Conflict(format!(
            "DRM system {name:?} of tenant {} is written in the configuration file: change it there",
            tenant.id
        )));
    }
    // The tenant with this definition (in place of the old one) must be servable.
    let mut settings = tenant.config.clone();
    settings.extra_drm_systems.retain(|s| s.name != name);
    settings.extra_drm_systems.push(config.clone());
    let parts = TenantParts {
        config: settings,
        source: tenant.source,
        disabled: tenant.disabled,
        created_at: tenant.created_at,
        credentials: Vec::new(),
    };
    Tenant::build(tenant.id.clone(), parts, state.public_url()).map_err(ApiError::BadRequest)?;
    let now = OffsetDateTime::now_utc();
    let spec = serde_json::to_string(&config).map_err(|e| ApiError::Internal(e.to_string()))?;
    let created = state
        .store()
        .put_drm_system(&StoredDrmSystem {
            tenant: tenant.id.clone(),
            name: name.clone(),
            spec: spec.clone(),
            created_at: now,
            updated_at: now,
        })
        .await?;
    audit_change(
        &state,
        &who,
        tenant.id.as_str(),
        AuditAction::TenantChanged,
        format!(
            "drm system {name} {}: {spec}",
            if created { "defined" } else { "changed" }
        ),
    )
    .await?;
    // Answered from the next request on: the tenants are rebuilt before this answer leaves.
    state.reload_tenants(true).await?;
    let status = if created {
        StatusCode::CREATED
    } else {
        StatusCode::OK
    };
    Ok((
        status,
        Json(DrmSystemJson {
            definition: config,
            source: Source::Admin,
        }),
    )
        .into_response())
}

#[utoipa::path(
    delete,
    path = "/admin/v1/tenants/{id}/drm-systems/{name}",
    operation_id = "admin_remove_drm_system",
    tag = "admin",
    summary = "Remove a defined DRM system",
    description = "From the next request on the system id is unknown again (a clear 4xx), or, \
        for an override, the built-in system's signaling is back.",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("name" = String, Path, description = "The definition's name"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant or DRM system", body = Problem, content_type = "application/problem+json"),
        (status = 409, description = "A definition of the configuration file (remove it there)", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub async fn remove_drm_system(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    if tenant
        .drm_systems
        .by_name(&name)
        .is_some_and(|s| s.source == Source::Config)
    {
        return Err(ApiError::Conflict(format!(
            "DRM system {name:?} of tenant {} is written in the configuration file: remove it there",
            tenant.id
        )));
    }
    if !state.store().remove_drm_system(&tenant.id, &name).await? {
        return Err(not_found(&tenant, &name));
    }
    audit_change(
        &state,
        &who,
        tenant.id.as_str(),
        AuditAction::TenantChanged,
        format!("drm system {name} removed"),
    )
    .await?;
    state.reload_tenants(true).await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}

fn not_found(tenant: &Tenant, name: &str) -> ApiError {
    ApiError::NotFound(format!(
        "tenant {} has no DRM system {:?}",
        tenant.id,
        keyplex_types::truncate_for_message(name)
    ))
}
