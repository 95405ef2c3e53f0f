//! What every backend shares: how a stored key answers a [`KeyRequest`], and how key bytes are
//! sealed at rest. Backends only differ in how they look rows up and serialize writers.

use keyplex_crypto::master::MasterKey;
use keyplex_types::{ContentId, ContentKey, ContentKeyValue, KeyId, KeyOrigin, KeySlot, TenantId};

use crate::{KeyMaterial, KeyRequest, Result, StoreError};

/// Seals and opens content keys (and credential secrets) under the master key, bound to the
/// row they belong to. It holds a keyring: the current master key, which seals, and during a
/// rotation the previous ones, which still open rows not yet re-sealed.
pub(crate) struct KeySealer {
    ring: std::sync::RwLock<std::sync::Arc<Keyring>>,
}

struct Keyring {
    current: MasterKey,
    /// Cached [`MasterKey::fingerprint`] of `current`, recorded with every row it seals.
    current_fingerprint: String,
    previous: Vec<(String, MasterKey)>,
}

impl Keyring {
    fn key_for(&self, fingerprint: &str) -> Option<&MasterKey> {
        if fingerprint == self.current_fingerprint {
            return Some(&self.current);
        }
        self.previous
            .iter()
            .find(|(fp, _)| fp == fingerprint)
            .map(|(_, key)| key)
    }
}

/// A value sealed under the current master key, with that key's fingerprint.
pub(crate) struct Sealed {
    pub(crate) bytes: Vec<u8>,
    pub(crate) sealed_by: String,
}

impl KeySealer {
    pub(crate) fn new(master: MasterKey) -> Self {
        let current_fingerprint = master.fingerprint();
        Self {
            ring: std::sync::RwLock::new(std::sync::Arc::new(Keyring {
                current: master,
                current_fingerprint,
                previous: Vec::new(),
            })),
        }
    }

    fn ring(&self) -> std::sync::Arc<Keyring> {
        // A poisoned lock still holds a consistent keyring (it is replaced whole).
        match self.ring.read() {
            Ok(ring) => ring.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// The fingerprint of the master key that seals new rows.
    pub(crate) fn fingerprint(&self) -> String {
        self.ring().current_fingerprint.clone()
    }

    /// Makes `new` the sealing key, keeping the previous keys for opening. Returns the
    /// fingerprints of the keys now only kept for opening.
    pub(crate) fn begin_rotation(&self, new: MasterKey) -> Vec<String> {
        let mut guard = match self.ring.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let old = guard.clone();
        let new_fingerprint = new.fingerprint();
        let mut previous: Vec<(String, MasterKey)> = old
            .previous
            .iter()
            .filter(|(fp, _)| *fp != new_fingerprint)
            .cloned()
            .collect();
        if old.current_fingerprint != new_fingerprint {
            previous.push((old.current_fingerprint.clone(), old.current.clone()));
        }
        let retired = previous.iter().map(|(fp, _)| fp.clone()).collect();
        *guard = std::sync::Arc::new(Keyring {
            current: new,
            current_fingerprint: new_fingerprint,
            previous,
        });
        retired
    }

    /// Forgets every key but the current one (every row is sealed under it now).
    pub(crate) fn finish_rotation(&self) {
        let mut guard = match self.ring.write() {
            Ok(guard) => guard,
            Err(poisoned) => poisoned.into_inner(),
        };
        let current = guard.current.clone();
        let current_fingerprint = guard.current_fingerprint.clone();
        *guard = std::sync::Arc::new(Keyring {
            current,
            current_fingerprint,
            previous: Vec::new(),
        });
    }

    pub(crate) fn seal(
        &self,
        tenant: &TenantId,
        kid: &KeyId,
        content_id: &ContentId,
        key: &ContentKeyValue,
    ) -> Result<Sealed> {
        let ring = self.ring();
        let bytes = ring
            .current
            .seal(&key_aad(tenant, kid, content_id), key.expose())
            .map_err(|e| StoreError::Internal(format!("cannot seal key {kid}: {e}")))?;
        Ok(Sealed {
            bytes,
            sealed_by: ring.current_fingerprint.clone(),
        })
    }

    /// Opens a sealed key. `sealed_by` is the fingerprint recorded with the row: a mismatch is
    /// reported as a wrong master key rather than as tampering, which is what it almost
    /// always is.
    pub(crate) fn open(
        &self,
        tenant: &TenantId,
        kid: &KeyId,
        content_id: &ContentId,
        sealed: &[u8],
        sealed_by: &str,
    ) -> Result<ContentKeyValue> {
        let ring = self.ring();
        let Some(master) = ring.key_for(sealed_by) else {
            return Err(StoreError::Corrupt {
                kid: kid.to_string(),
                reason: format!(
                    "sealed under master key {sealed_by}, but the configured master key is {}",
                    ring.current_fingerprint
                ),
            });
        };
        let plaintext = master
            .open(&key_aad(tenant, kid, content_id), sealed)
            .map_err(|e| StoreError::Corrupt {
                kid: kid.to_string(),
                reason: e.to_string(),
            })?;
        ContentKeyValue::from_slice(&plaintext).map_err(|_| StoreError::Corrupt {
            kid: kid.to_string(),
            reason: format!("sealed key has {} bytes instead of 16", plaintext.len()),
        })
    }

    /// Seals a credential's secrets, bound to its tenant and id.
    pub(crate) fn seal_secret(&self, tenant: &TenantId, id: &str, secret: &[u8]) -> Result<Sealed> {
        let ring = self.ring();
        let bytes = ring
            .current
            .seal(&secret_aad(tenant, id), secret)
            .map_err(|e| StoreError::Internal(format!("cannot seal credential {id}: {e}")))?;
        Ok(Sealed {
            bytes,
            sealed_by: ring.current_fingerprint.clone(),
        })
    }

    pub(crate) fn open_secret(
        &self,
        tenant: &TenantId,
        id: &str,
        sealed: &[u8],
        sealed_by: &str,
    ) -> Result<zeroize::Zeroizing<Vec<u8>>> {
        let ring = self.ring();
        let corrupt = |reason: String| StoreError::Corrupt {
            kid: format!("credential {id}"),
            reason,
        };
        let master = ring.key_for(sealed_by).ok_or_else(|| {
            corrupt(format!(
                "sealed under master key {sealed_by}, but the configured master key is {}",
                ring.current_fingerprint
            ))
        })?;
        master
            .open(&secret_aad(tenant, id), sealed)
            .map_err(|e| corrupt(e.to_string()))
    }
}

/// `"keyplex/credential/v1/" || tenant || 0x00 || credential id`.
fn secret_aad(tenant: &TenantId, id: &str) -> Vec<u8> {
    let mut aad = Vec::with_capacity(22 + tenant.as_str().len() + 1 + id.len());
    aad.extend_from_slice(b"keyplex/credential/v1/");
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(id.as_bytes());
    aad
}

/// `"keyplex/v1/" || tenant || 0x00 || kid (16 bytes) || content id`. Tenant ids cannot contain
/// NUL and key ids have a fixed length, so the encoding is unambiguous. Binding the content id
/// too means a sealed key moved to another content's row (by someone with write access to
/// the database but not the master key) does not open.
fn key_aad(tenant: &TenantId, kid: &KeyId, content_id: &ContentId) -> Vec<u8> {
    let mut aad =
        Vec::with_capacity(11 + tenant.as_str().len() + 1 + 16 + content_id.as_str().len());
    aad.extend_from_slice(b"keyplex/v1/");
    aad.extend_from_slice(tenant.as_str().as_bytes());
    aad.push(0);
    aad.extend_from_slice(kid.as_bytes());
    aad.extend_from_slice(content_id.as_str().as_bytes());
    aad
}

/// Decides whether the key already stored for `request` satisfies it (`Ok`) or contradicts
/// it (`Conflict`), following the rules documented on [`KeyRequest`]. For `BySlot`, `stored`
/// is the key bound to the slot.
pub(crate) fn check_stored(request: &KeyRequest, stored: &ContentKey) -> Result<()> {
    match request {
        KeyRequest::ByKid {
            content_id,
            candidate,
            key_supplied,
            iv_supplied,
            ..
        } => {
            if stored.content_id != *content_id {
                return Err(conflict(
                    candidate.kid,
                    format!(
                        "already used for content {:?}, not {:?}",
                        stored.content_id.as_str(),
                        content_id.as_str()
                    ),
                ));
            }
            if *key_supplied && stored.key != candidate.key {
                return Err(conflict(
                    candidate.kid,
                    "the supplied key differs from the stored key".to_owned(),
                ));
            }
            if *iv_supplied && stored.iv != candidate.iv {
                return Err(conflict(
                    candidate.kid,
                    "the supplied IV differs from the stored IV".to_owned(),
                ));
            }
            Ok(())
        }
        KeyRequest::BySlot {
            slot,
            candidate,
            supplied,
            iv_supplied,
        } => {
            if !supplied {
                return Ok(());
            }
            if stored.kid != candidate.kid {
                return Err(conflict(
                    candidate.kid,
                    format!(
                        "{} already holds key id {}",
                        describe_slot(slot),
                        stored.kid
                    ),
                ));
            }
            if stored.key != candidate.key {
                return Err(conflict(
                    candidate.kid,
                    "the supplied key differs from the stored key".to_owned(),
                ));
            }
            if *iv_supplied && stored.iv != candidate.iv {
                return Err(conflict(
                    candidate.kid,
                    "the supplied IV differs from the stored IV".to_owned(),
                ));
            }
            Ok(())
        }
    }
}

/// The conflict of a `BySlot` request for an empty slot whose candidate key id is already in
/// use: a key id belongs to one key for ever, so it cannot also become the slot's.
pub(crate) fn kid_in_use(slot: &KeySlot, kid: KeyId) -> StoreError {
    conflict(
        kid,
        format!(
            "already used by another key, so it cannot be bound to {}",
            describe_slot(slot)
        ),
    )
}

/// What importing one exported key must do, given what the store holds for its key id and
/// (when the key is slotted) for its slot.
#[derive(Debug, PartialEq, Eq)]
pub(crate) enum ImportStep {
    /// Store the key (bound to the slot, if any).
    Insert(Option<KeySlot>),
    /// The identical key is stored; bind it to `Some(slot)` if it is not bound yet.
    Present(Option<KeySlot>),
}

/// Decides an import: a key id or slot already stored must hold the identical key.
pub(crate) fn import_step(
    exported: &crate::ExportedKey,
    stored: Option<&ContentKey>,
    slot_kid: Option<KeyId>,
) -> Result<ImportStep> {
    let key = &exported.key;
    let slot = exported.slot();
    if exported.slotted && slot.is_none() {
        return Err(conflict(
            key.kid,
            "marked as bound to a key slot but has no track type".into(),
        ));
    }
    if let (Some(slot), Some(slot_kid)) = (&slot, slot_kid)
        && slot_kid != key.kid
    {
        return Err(conflict(
            key.kid,
            format!("{} already holds key id {slot_kid}", describe_slot(slot)),
        ));
    }
    match stored {
        None => Ok(ImportStep::Insert(slot)),
        Some(stored) => {
            let same =
                stored.content_id == key.content_id && stored.key == key.key && stored.iv == key.iv;
            if !same {
                return Err(conflict(
                    key.kid,
                    "already stored with another content, key or IV".into(),
                ));
            }
            Ok(ImportStep::Present(slot.filter(|_| slot_kid.is_none())))
        }
    }
}

/// The key to store for a request that found nothing, and the slot to bind it to (if any).
pub(crate) fn new_key(request: &KeyRequest) -> (ContentKey, Option<&KeySlot>) {
    match request {
        KeyRequest::ByKid {
            content_id,
            candidate,
            key_supplied,
            track_type,
            period,
            ..
        } => (
            content_key(
                candidate,
                content_id.clone(),
                track_type.clone(),
                *period,
                *key_supplied,
            ),
            None,
        ),
        KeyRequest::BySlot {
            slot,
            candidate,
            supplied,
            ..
        } => (
            content_key(
                candidate,
                slot.content_id.clone(),
                Some(slot.track_type.clone()),
                slot.period,
                *supplied,
            ),
            Some(slot),
        ),
    }
}

fn content_key(
    candidate: &KeyMaterial,
    content_id: ContentId,
    track_type: Option<keyplex_types::TrackType>,
    period: keyplex_types::KeyPeriod,
    supplied: bool,
) -> ContentKey {
    ContentKey {
        kid: candidate.kid,
        content_id,
        key: candidate.key.clone(),
        iv: candidate.iv,
        track_type,
        period,
        origin: if supplied {
            KeyOrigin::Supplied
        } else {
            KeyOrigin::Generated
        },
    }
}

fn describe_slot(slot: &KeySlot) -> String {
    let period = match slot.period.index() {
        Some(index) => format!("period {index}"),
        None => "VOD".to_owned(),
    };
    format!(
        "the {} slot of content {:?} ({period})",
        slot.track_type,
        slot.content_id.as_str()
    )
}

fn conflict(kid: KeyId, reason: String) -> StoreError {
    StoreError::Conflict { kid, reason }
}

/// The `key.created` event of a batch: `template` with the kids the batch created, or `None`
/// when it created none. Shared by the backends' [`crate::Keys::ensure_keys_audited`].
pub(crate) fn created_event(
    template: &crate::AuditEvent,
    ensured: &[crate::EnsuredKey],
) -> Option<crate::AuditEvent> {
    let created: Vec<KeyId> = ensured
        .iter()
        .filter(|e| e.created)
        .map(|e| e.key.kid)
        .collect();
    (!created.is_empty()).then(|| crate::AuditEvent {
        key_ids: created,
        ..template.clone()
    })
}

/// What the store keeps of a session id: its SHA-256, hex. The id is the bearer secret of a
/// player's session calls, so a copy of the database (a backup, a replica, a leaked dump)
/// must not be enough to take over live sessions; lookups hash the presented id the same
/// way. Both backends store and look up sessions through this.
pub(crate) fn session_key(id: &str) -> String {
    use sha2::{Digest, Sha256};
    hex::encode(Sha256::digest(format!("keyplex session id v1\n{id}")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use keyplex_types::{Iv, KeyPeriod, TrackType};

    use super::*;

    fn tenant() -> TenantId {
        TenantId::parse("acme").unwrap()
    }

    fn kid() -> KeyId {
        "b4c3188b-eddd-453d-9bc2-1cbca7566239".parse().unwrap()
    }

    #[test]
    fn aad_layout() {
        let content = ContentId::parse("movie").unwrap();
        let mut expected = b"keyplex/v1/acme\0".to_vec();
        expected.extend_from_slice(kid().as_bytes());
        expected.extend_from_slice(b"movie");
        assert_eq!(key_aad(&tenant(), &kid(), &content), expected);
    }

    #[test]
    fn sealed_keys_are_bound_to_tenant_kid_and_content() {
        let sealer = KeySealer::new(MasterKey::from_hex(&"ab".repeat(32)).unwrap());
        let content = ContentId::parse("movie").unwrap();
        let key = ContentKeyValue::from_bytes([9; 16]);
        let sealed = sealer
            .seal(&tenant(), &kid(), &content, &key)
            .unwrap()
            .bytes;
        let fp = sealer.fingerprint();
        assert_eq!(
            sealer
                .open(&tenant(), &kid(), &content, &sealed, &fp)
                .unwrap(),
            key
        );

        let other_tenant = TenantId::parse("other").unwrap();
        let other_kid = KeyId::from_bytes([1; 16]);
        let other_content = ContentId::parse("movie2").unwrap();
        for result in [
            sealer.open(&other_tenant, &kid(), &content, &sealed, &fp),
            sealer.open(&tenant(), &other_kid, &content, &sealed, &fp),
            sealer.open(&tenant(), &kid(), &other_content, &sealed, &fp),
        ] {
            assert!(matches!(result, Err(StoreError::Corrupt { .. })));
        }
        let err = sealer
            .open(&tenant(), &kid(), &content, &sealed, "0000000000000000")
            .unwrap_err();
        assert!(err.to_string().contains("0000000000000000"), "{err}");
        assert!(err.to_string().contains(&kid().to_string()), "{err}");
    }

    #[test]
    fn slot_conflict_messages_name_the_slot() {
        let slot = KeySlot {
            content_id: ContentId::parse("live").unwrap(),
            track_type: TrackType::parse("hd").unwrap(),
            period: KeyPeriod::Index(7),
        };
        let err = kid_in_use(&slot, kid()).to_string();
        assert!(
            err.contains("HD slot of content \"live\" (period 7)"),
            "{err}"
        );
        let request = KeyRequest::BySlot {
            slot,
            candidate: KeyMaterial {
                kid: kid(),
                key: ContentKeyValue::from_bytes([1; 16]),
                iv: Iv::from_bytes([2; 16]),
            },
            supplied: true,
            iv_supplied: true,
        };
        let (stored, bound) = new_key(&request);
        assert!(bound.is_some());
        assert_eq!(stored.origin, KeyOrigin::Supplied);
        let mut other = stored.clone();
        other.iv = Iv::from_bytes([3; 16]);
        assert!(check_stored(&request, &stored).is_ok());
        assert!(matches!(
            check_stored(&request, &other),
            Err(StoreError::Conflict { .. })
        ));
    }
}
