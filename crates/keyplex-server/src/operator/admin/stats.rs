//! `/admin/v1/stats`: the dashboard's counts.

use axum::Json;
use axum::extract::{Query, State};
use axum::response::{IntoResponse, Response};
use serde::{Deserialize, Serialize};

use crate::http::error::{ApiError, Problem};
use crate::http::telemetry::{StatsView, Window};
use crate::state::AppState;

use super::query;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct StatsParams {
    /// One tenant (default: all tenants together).
    tenant: Option<String>,
    /// Seconds: 300, 900 (default), 3600, 21600 or 86400.
    window: Option<u64>,
}

/// `GET /admin/v1/stats`: this node's counts since it started.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = Stats)]
pub(crate) struct StatsJson {
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
pub(crate) async fn stats(
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
