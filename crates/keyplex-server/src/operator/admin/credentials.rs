//! `/admin/v1/tenants/{id}/credentials`: list, add (secrets sealed in the store, generated
//! ones shown once) and revoke credentials.

use axum::Json;
use axum::extract::rejection::JsonRejection;
use axum::extract::{Extension, Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use keyplex_store::{AuditAction, StoredCredential};
use serde::Serialize;
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::http::error::{ApiError, Problem};
use crate::registry::{CredentialInfo, CredentialSpec, Source, TenantParts};
use crate::state::{AppState, Tenant};

use super::{AdminCaller, audit_change, doc, json_body};

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct CredentialList {
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
pub(crate) async fn list_credentials(
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
pub(crate) struct NewCredentialJson<'a> {
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
pub(super) fn generate_missing_secret(
    body: &mut serde_json::Value,
) -> Result<Option<String>, ApiError> {
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
pub(crate) async fn add_credential(
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
    // An upstream for a DRM the tenant does not have would only ever answer 404: define the
    // system first (`PUT …/drm-systems/{name}`).
    if let CredentialSpec::LicenceUpstream(u) = &spec
        && !tenant.drm_systems.names_drm(&u.drm)
    {
        return Err(ApiError::BadRequest(format!(
            "credential: licence upstream {:?} is not one of {} or the name of one of tenant {}'s DRM systems (PUT /admin/v1/tenants/{}/drm-systems/{{name}} defines one)",
            keyplex_types::truncate_for_message(&u.drm),
            crate::config::UPSTREAM_NAMES.join(", "),
            tenant.id,
            tenant.id
        )));
    }
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
pub(crate) struct WipedJson(serde_json::Value);

impl Drop for WipedJson {
    fn drop(&mut self) {
        wipe_strings(&mut self.0);
    }
}

/// Zeroizes every string of `value` in place (object keys are names, not secrets).
pub(super) fn wipe_strings(value: &mut serde_json::Value) {
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
pub(super) fn refuse_duplicate(tenant: &Tenant, spec: &CredentialSpec) -> Result<(), ApiError> {
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
pub(crate) async fn revoke_credential(
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
            keyplex_types::truncate_for_message(&cred)
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
