//! `/admin/v1/audit`: the audit trail, by tenant, content, action and time.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use keyplex_store::{AuditAction, AuditQuery};
use keyplex_types::{ContentId, KeyId, TenantId};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

use super::query;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct AuditParams {
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
pub(super) fn parse_time(what: &str, text: &str) -> Result<OffsetDateTime, ApiError> {
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
pub(crate) struct AuditEventJson {
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
pub(crate) struct AuditEvents {
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
pub(crate) async fn audit(
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
