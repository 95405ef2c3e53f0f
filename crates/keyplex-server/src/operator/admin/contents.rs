//! `/admin/v1/tenants/{id}/contents`: a tenant's contents and their keys' metadata (never
//! key bytes).

use axum::Json;
use axum::extract::{Path, Query, State};
use axum::response::{IntoResponse, Response};
use keyplex_types::{ContentId, KeyOrigin};
use serde::{Deserialize, Serialize};
use time::OffsetDateTime;
use time::format_description::well_known::Rfc3339;

use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

use super::query;

#[derive(Deserialize, utoipa::IntoParams)]
#[serde(deny_unknown_fields)]
#[into_params(parameter_in = Query)]
pub(crate) struct ContentsQuery {
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
pub(crate) struct ContentJson {
    content_id: String,
    keys: u64,
    #[schema(format = DateTime)]
    first_key_at: String,
    #[schema(format = DateTime)]
    last_key_at: String,
}

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct ContentList {
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
pub(crate) async fn list_contents(
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

pub(super) fn rfc3339(t: OffsetDateTime) -> String {
    t.format(&Rfc3339).unwrap_or_default()
}

pub(super) fn origin_name(origin: KeyOrigin) -> &'static str {
    match origin {
        KeyOrigin::Generated => "generated",
        KeyOrigin::Supplied => "supplied",
    }
}

/// A key's metadata: never key bytes.
#[derive(Serialize, utoipa::ToSchema)]
#[schema(as = KeyInfo)]
pub(crate) struct KeyInfoJson {
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
pub(crate) struct ContentKeys {
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
pub(crate) async fn content_keys(
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
