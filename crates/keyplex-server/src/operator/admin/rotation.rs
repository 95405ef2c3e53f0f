//! `/admin/v1/master-key/rotate`: a new master key, every key and credential re-sealed online.

use axum::Json;
use axum::extract::{Extension, State};
use axum::response::{IntoResponse, Response};
use keyplex_store::AuditAction;
use serde::Serialize;

use crate::http::error::{ApiError, Problem};
use crate::state::AppState;

use super::{AdminCaller, audit_change};

static ROTATING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

#[derive(Serialize, utoipa::ToSchema)]
pub(crate) struct RotationAnswer {
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
pub(crate) async fn rotate_master_key(
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
