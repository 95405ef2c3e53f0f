//! Turning "this request needs a key" into store requests, with fresh candidate material.
//! Shared by every key interface, so that they all resolve identities the same way.

use keyplex_crypto::random;
use keyplex_store::{AuditAction, AuditEvent, KeyMaterial, KeyRequest};
use keyplex_types::{
    ContentId, ContentKey, ContentKeyValue, Iv, KeyId, KeyPeriod, KeySlot, TrackType,
};

use crate::http::error::ApiError;
use crate::state::{AppState, Tenant};

/// Resolves the keys a packager request needs for `content_id`: one atomic, durable store
/// call. Keys it creates are committed together with their `key.created` audit event (the
/// store writes both in one transaction), so no new key is stored, let alone reaches a
/// packager, without a durable record of who asked for it — even if the client goes away
/// while the call is in flight.
pub async fn resolve(
    state: &AppState,
    tenant: &Tenant,
    content_id: &ContentId,
    requests: &[KeyRequest],
) -> Result<Vec<ContentKey>, ApiError> {
    let (interface, credential, client) = crate::scope::who().unwrap_or((
        crate::scope::Interface::Other,
        "-".to_owned(),
        "-".to_owned(),
    ));
    // The store fills in the kids it created (and records nothing if it created none).
    let created_event = AuditEvent {
        id: 0,
        at: time::OffsetDateTime::now_utc(),
        tenant: tenant.id.as_str().to_owned(),
        action: AuditAction::KeyCreated,
        interface: interface.as_str().to_owned(),
        credential,
        client,
        content_id: Some(content_id.clone()),
        key_ids: Vec::new(),
        outcome: "ok".to_owned(),
        detail: None,
    };
    let started = std::time::Instant::now();
    let ensured = state
        .store()
        .ensure_keys_audited(&tenant.id, requests, created_event)
        .await;
    state
        .telemetry()
        .observe_store("ensure_keys", started.elapsed());
    let ensured = ensured?;
    let created = ensured.iter().filter(|e| e.created).count();
    crate::scope::note_keys(
        content_id,
        ensured.iter().map(|e| e.key.kid),
        created as u64,
    );
    Ok(ensured.into_iter().map(|e| e.key).collect())
}

/// The packager named the kid (CPIX/SPEKE): the kid is the identity. A supplied key or IV
/// is stored as-is; otherwise fresh ones are generated (and used only if the kid is new).
pub fn by_kid(
    content_id: &ContentId,
    kid: KeyId,
    supplied_key: Option<ContentKeyValue>,
    supplied_iv: Option<Iv>,
    track_type: Option<TrackType>,
    period: KeyPeriod,
) -> Result<KeyRequest, ApiError> {
    checked_period(period)?;
    let key_supplied = supplied_key.is_some();
    let iv_supplied = supplied_iv.is_some();
    let key = match supplied_key {
        Some(k) => k,
        None => random::new_key_value()?,
    };
    let iv = match supplied_iv {
        Some(iv) => iv,
        None => random::new_iv()?,
    };
    Ok(KeyRequest::ByKid {
        content_id: content_id.clone(),
        candidate: KeyMaterial { kid, key, iv },
        key_supplied,
        iv_supplied,
        track_type,
        period,
    })
}

/// Every key request passes here, whichever route built it: a period index beyond
/// [`KeyPeriod::MAX_INDEX`] is the client's error (400), never the store's. Routes parse
/// the period with [`KeyPeriod::from_index`] already; this keeps a route that forgets from
/// handing the store a value it cannot hold.
fn checked_period(period: KeyPeriod) -> Result<(), ApiError> {
    match period {
        KeyPeriod::Index(i) => KeyPeriod::from_index(i)
            .map(|_| ())
            .map_err(|e| ApiError::BadRequest(e.to_string())),
        KeyPeriod::Vod => Ok(()),
    }
}

/// keyplex chooses the kid: (content, track type, period) is the identity.
pub fn by_slot(slot: KeySlot) -> Result<KeyRequest, ApiError> {
    checked_period(slot.period)?;
    let (kid, key, iv) = random::new_key_material()?;
    let candidate = KeyMaterial { kid, key, iv };
    Ok(KeyRequest::BySlot {
        slot,
        candidate,
        supplied: false,
        iv_supplied: false,
    })
}
