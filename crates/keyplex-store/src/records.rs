//! What the store keeps besides content keys and sessions: the tenants and credentials the
//! admin API manages, the audit trail, and the shapes of listings, exports and rotations.

use keyplex_types::{ContentId, ContentKey, KeyId, TenantId};
use time::OffsetDateTime;
use zeroize::Zeroizing;

/// A tenant row. Tenants written in the configuration file get a row only when the admin API
/// changes something about them (`settings` is then `None`: the file has them).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredTenant {
    pub id: TenantId,
    /// The tenant's settings as JSON text (opaque to the store); `None` for a file tenant.
    pub settings: Option<String>,
    pub disabled: bool,
    pub created_at: OffsetDateTime,
}

/// A credential added through the admin API. `spec` holds its secrets and is stored sealed
/// under the master key; `label` is the public part (a user name, an access key id).
#[derive(Clone)]
pub struct StoredCredential {
    pub id: String,
    pub tenant: TenantId,
    /// `basic`, `jwt`, `sigv4`, `widevine_signer`, `get_token`, `licence_jwt`.
    pub kind: String,
    pub label: String,
    /// The credential as JSON text, secrets included (opaque to the store).
    pub spec: Zeroizing<String>,
    pub created_at: OffsetDateTime,
}

impl std::fmt::Debug for StoredCredential {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("StoredCredential")
            .field("id", &self.id)
            .field("tenant", &self.tenant)
            .field("kind", &self.kind)
            .field("label", &self.label)
            .field("spec", &"<redacted>")
            .finish()
    }
}

/// A DRM system a tenant defined through the admin API. `spec` is its definition as JSON
/// text (no secrets; opaque to the store, checked by the server before it is stored).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredDrmSystem {
    pub tenant: TenantId,
    pub name: String,
    pub spec: String,
    pub created_at: OffsetDateTime,
    pub updated_at: OffsetDateTime,
}

/// Everything the admin API manages, read in one go; `version` changes with every change,
/// so that nodes sharing a database notice changes made elsewhere by polling it.
#[derive(Clone, Debug, Default)]
pub struct Registry {
    pub version: i64,
    pub tenants: Vec<StoredTenant>,
    pub credentials: Vec<StoredCredential>,
    /// Tenant-defined DRM systems, by tenant and name.
    pub drm_systems: Vec<StoredDrmSystem>,
}

/// What an audit event records.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum AuditAction {
    KeyCreated,
    KeyDelivered,
    LicenceGranted,
    LicenceDenied,
    TenantCreated,
    TenantChanged,
    CredentialAdded,
    CredentialRevoked,
    KeysExported,
    KeysImported,
    MasterKeyRotated,
}

impl AuditAction {
    pub const ALL: [Self; 11] = [
        Self::KeyCreated,
        Self::KeyDelivered,
        Self::LicenceGranted,
        Self::LicenceDenied,
        Self::TenantCreated,
        Self::TenantChanged,
        Self::CredentialAdded,
        Self::CredentialRevoked,
        Self::KeysExported,
        Self::KeysImported,
        Self::MasterKeyRotated,
    ];

    pub const fn as_str(self) -> &'static str {
        match self {
            Self::KeyCreated => "key.created",
            Self::KeyDelivered => "key.delivered",
            Self::LicenceGranted => "licence.granted",
            Self::LicenceDenied => "licence.denied",
            Self::TenantCreated => "admin.tenant_created",
            Self::TenantChanged => "admin.tenant_changed",
            Self::CredentialAdded => "admin.credential_added",
            Self::CredentialRevoked => "admin.credential_revoked",
            Self::KeysExported => "admin.keys_exported",
            Self::KeysImported => "admin.keys_imported",
            Self::MasterKeyRotated => "admin.master_key_rotated",
        }
    }

    pub fn parse(s: &str) -> Option<Self> {
        Self::ALL.into_iter().find(|a| a.as_str() == s)
    }
}

/// One audit event: who (tenant, credential, client address), what (action, interface,
/// content, key ids, outcome), when. Never key material.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct AuditEvent {
    /// Assigned by the store (0 before it is stored); increases with insertion order.
    pub id: i64,
    pub at: OffsetDateTime,
    /// The tenant, or `-` for node-wide admin actions (master key rotation).
    pub tenant: String,
    pub action: AuditAction,
    /// `cpix`, `speke`, `nagra`, `clearkey`, `widevine`, `admin`, …
    pub interface: String,
    /// Who: `basic:packager`, `jwt:sub=…`, `entitlement:sub=viewer-1`, `admin`.
    pub credential: String,
    /// The client's address as the server saw it.
    pub client: String,
    pub content_id: Option<ContentId>,
    pub key_ids: Vec<KeyId>,
    /// `ok`, or why not (`not_entitled`, `expired`, …).
    pub outcome: String,
    pub detail: Option<String>,
}

/// A question to the audit trail. Results are newest first.
#[derive(Clone, Debug, Default)]
pub struct AuditQuery {
    pub tenant: Option<String>,
    pub content_id: Option<ContentId>,
    pub action: Option<AuditAction>,
    pub since: Option<OffsetDateTime>,
    pub until: Option<OffsetDateTime>,
    /// Events with a smaller id only (paging backwards).
    pub before_id: Option<i64>,
    /// Events with a larger id only, oldest (smallest id) first: reading the whole trail in
    /// insertion order, as a store copy does.
    pub after_id: Option<i64>,
    pub limit: u32,
}

/// One content of a tenant, for listings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ContentSummary {
    pub content_id: ContentId,
    pub keys: u64,
    pub first_key_at: OffsetDateTime,
    pub last_key_at: OffsetDateTime,
}

/// A stored key with what an export must carry to restore it exactly.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ExportedKey {
    pub key: ContentKey,
    /// Bound to its (content, track type, period) slot.
    pub slotted: bool,
    pub created_at: OffsetDateTime,
}

impl ExportedKey {
    /// The slot the key is bound to: `None` unless `slotted` and it has a track type.
    pub fn slot(&self) -> Option<keyplex_types::KeySlot> {
        if !self.slotted {
            return None;
        }
        self.key
            .track_type
            .clone()
            .map(|track_type| keyplex_types::KeySlot {
                content_id: self.key.content_id.clone(),
                track_type,
                period: self.key.period,
            })
    }
}

/// What an import did.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub struct ImportOutcome {
    pub imported: u64,
    /// Identical keys the store already had.
    pub already_present: u64,
}

/// What a master key rotation did.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RotationReport {
    pub old_fingerprints: Vec<String>,
    pub new_fingerprint: String,
    /// Content keys and credentials re-sealed under the new key.
    pub rewrapped: u64,
}

/// One count of the dashboard's time series: how many `measure` events (key requests, keys
/// created, licences granted, …, or latency observations in histogram bucket `slot`) `name`
/// (an interface or DRM) had for `tenant` in the bucket starting at `bucket_start`.
#[derive(Clone, Debug, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct StatsCount {
    pub tenant: String,
    /// Unix seconds.
    pub bucket_start: u64,
    pub measure: String,
    pub name: String,
    /// -1 for plain counts; the latency histogram bucket otherwise.
    pub slot: i32,
    pub count: u64,
}
