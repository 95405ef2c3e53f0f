//! `/admin/v1/tenants/{id}/contents/{content_id}/licence-policy`: the licence rules stored
//! with a content (`licence_policy::ContentPolicy`). `PUT` stores or replaces them, `GET`
//! reads them, `DELETE` removes them (the tenant's default applies again). Every change is
//! in the audit trail with the policy written. Routed and authenticated by `admin`.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplex_store::AuditAction;
use keyplex_types::ContentId;
use serde::Serialize;
use time::OffsetDateTime;

use crate::http::error::{ApiError, Problem};
use crate::licence_policy::{self, ContentPolicy};
use crate::operator::admin::{AdminCaller, audit_change_of};
use crate::state::AppState;

/// A content's licence policy as the admin API shows it.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = ContentLicencePolicy)]
pub struct PolicyJson {
    tenant: String,
    content_id: String,
    /// `content`: the content's own rules; `tenant`: it has none and the tenant's default
    /// applies (`GET` only).
    source: &'static str,
    policy: ContentPolicy,
}

fn content_of(content_id: &str) -> Result<ContentId, ApiError> {
    ContentId::parse(content_id).map_err(|e| ApiError::BadRequest(format!("content id: {e}")))
}

#[utoipa::path(
    put,
    path = "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
    operation_id = "admin_put_licence_policy",
    tag = "admin",
    summary = "Store a content's licence rules",
    description = "Security level per track type (1 hardware … 3 software, Widevine's L1–L3), \
        HDCP, persistence, licence and playback durations, renewal. Every field is optional; \
        unknown fields are refused. Replaces the content's previous rules; an entitlement \
        token's `policy` can only narrow them. The content need not have keys yet.",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("content_id" = String, Path, description = "Content id"),
    ),
    request_body(content = ContentPolicy, content_type = "application/json"),
    responses(
        (status = 200, description = "The stored rules", body = PolicyJson),
        (status = 400, description = "Malformed policy or content id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub async fn put_policy(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path((id, content_id)): Path<(String, String)>,
    body: Result<Json<ContentPolicy>, JsonRejection>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let content = content_of(&content_id)?;
    let Json(policy) =
        body.map_err(|e| ApiError::BadRequest(format!("licence policy: {}", e.body_text())))?;
    policy
        .validate()
        .map_err(|e| ApiError::BadRequest(format!("licence policy: {e}")))?;
    let text = serde_json::to_string(&policy).map_err(|e| ApiError::Internal(e.to_string()))?;
    state
        .store()
        .put_content_policy(&tenant.id, &content, &text, OffsetDateTime::now_utc())
        .await?;
    audit_change_of(
        &state,
        &who,
        tenant.id.as_str(),
        Some(&content),
        AuditAction::TenantChanged,
        format!("licence policy of {content} set: {text}"),
    )
    .await?;
    Ok(Json(PolicyJson {
        tenant: tenant.id.to_string(),
        content_id: content.to_string(),
        source: "content",
        policy,
    })
    .into_response())
}

#[utoipa::path(
    get,
    path = "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
    operation_id = "admin_get_licence_policy",
    tag = "admin",
    summary = "A content's licence rules",
    description = "The content's own rules, or — with `source: tenant` — the tenant's default \
        when the content has none. 404 when neither exists.",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("content_id" = String, Path, description = "Content id"),
    ),
    responses(
        (status = 200, description = "The rules that apply", body = PolicyJson),
        (status = 400, description = "Malformed content id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, or no rules for this content and no tenant default", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub async fn get_policy(
    State(state): State<AppState>,
    Path((id, content_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let content = content_of(&content_id)?;
    let (policy, source) = match licence_policy::stored(&state, &tenant, &content).await? {
        Some(own) => (own, "content"),
        None => match tenant
            .config
            .licence
            .as_ref()
            .and_then(|l| l.policy.clone())
        {
            Some(default) => (default, "tenant"),
            None => {
                return Err(ApiError::NotFound(format!(
                    "content {content} of tenant {} has no licence policy, and the tenant no default",
                    tenant.id
                )));
            }
        },
    };
    Ok(Json(PolicyJson {
        tenant: tenant.id.to_string(),
        content_id: content.to_string(),
        source,
        policy,
    })
    .into_response())
}

#[utoipa::path(
    delete,
    path = "/admin/v1/tenants/{id}/contents/{content_id}/licence-policy",
    operation_id = "admin_delete_licence_policy",
    tag = "admin",
    summary = "Remove a content's licence rules",
    description = "The tenant's default applies to the content again.",
    params(
        ("id" = String, Path, description = "Tenant id"),
        ("content_id" = String, Path, description = "Content id"),
    ),
    responses(
        (status = 204, description = "Removed"),
        (status = 400, description = "Malformed content id", body = Problem, content_type = "application/problem+json"),
        (status = 401, description = "No valid admin token", body = Problem, content_type = "application/problem+json"),
        (status = 404, description = "Unknown tenant, or the content has no rules of its own", body = Problem, content_type = "application/problem+json"),
        (status = 503, description = "Key store unavailable", body = Problem, content_type = "application/problem+json"),
    ),
    security(("admin_bearer" = [])),
)]
pub async fn delete_policy(
    State(state): State<AppState>,
    Extension(AdminCaller(who)): Extension<AdminCaller>,
    Path((id, content_id)): Path<(String, String)>,
) -> Result<Response, ApiError> {
    let tenant = state.any_tenant(&id)?;
    let content = content_of(&content_id)?;
    if !state
        .store()
        .delete_content_policy(&tenant.id, &content)
        .await?
    {
        return Err(ApiError::NotFound(format!(
            "content {content} of tenant {} has no licence policy of its own",
            tenant.id
        )));
    }
    audit_change_of(
        &state,
        &who,
        tenant.id.as_str(),
        Some(&content),
        AuditAction::TenantChanged,
        format!("licence policy of {content} removed"),
    )
    .await?;
    Ok(StatusCode::NO_CONTENT.into_response())
}
