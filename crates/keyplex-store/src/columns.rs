//! Rows as both backends read them, and their decoding into domain values.
//!
//! SQLite and PostgreSQL store the same columns with the same meaning (see the two
//! `migrations/` folders); only the SQL around them differs. Each row type here derives
//! `sqlx::FromRow` for any database, and its decoder checks every column: a row that does not
//! decode is [`StoreError::Corrupt`], never a panic or a wrong value.

use keyplex_types::{ContentId, ContentKey, Iv, KeyId, KeyOrigin, KeyPeriod, TenantId, TrackType};
use time::OffsetDateTime;
use zeroize::Zeroizing;

use crate::rules::KeySealer;
use crate::{
    AuditAction, AuditEvent, KeyInfo, Result, Session, StoreError, StoredCredential, StoredTenant,
};

/// `key_slots.period` for VOD: NULL would not be unique in SQLite's unique indexes.
pub(crate) const VOD_SLOT_PERIOD: i64 = -1;

pub(crate) fn corrupt(what: &str, reason: impl std::fmt::Display) -> StoreError {
    StoreError::Corrupt {
        kid: what.to_owned(),
        reason: reason.to_string(),
    }
}

/// The columns of `content_keys` that make a [`ContentKey`] (with the key id known).
#[derive(sqlx::FromRow)]
pub(crate) struct KeyRow {
    pub content_id: String,
    pub sealed_key: Vec<u8>,
    pub iv: Vec<u8>,
    pub track_type: Option<String>,
    pub period: Option<i64>,
    pub origin: String,
    pub master_key_id: String,
}

impl KeyRow {
    /// Opens the sealed key (bound to tenant, key id and content id) and checks every column.
    pub(crate) fn decode(
        self,
        sealer: &KeySealer,
        tenant: &TenantId,
        kid: KeyId,
    ) -> Result<ContentKey> {
        let corrupt = |reason: String| StoreError::Corrupt {
            kid: kid.to_string(),
            reason,
        };
        let content_id = ContentId::parse(&self.content_id).map_err(|e| corrupt(e.to_string()))?;
        let key = sealer.open(
            tenant,
            &kid,
            &content_id,
            &self.sealed_key,
            &self.master_key_id,
        )?;
        Ok(ContentKey {
            kid,
            content_id,
            key,
            iv: Iv::from_slice(&self.iv).map_err(|e| corrupt(e.to_string()))?,
            track_type: decode_track_type(self.track_type).map_err(corrupt)?,
            period: decode_period(self.period).map_err(corrupt)?,
            origin: decode_origin(&self.origin).map_err(corrupt)?,
        })
    }
}

/// A [`KeyRow`] with its tenant and key id (rotation and export read many keys at once).
#[derive(sqlx::FromRow)]
pub(crate) struct FullKeyRow {
    pub tenant: String,
    pub kid: Vec<u8>,
    #[sqlx(flatten)]
    pub key: KeyRow,
    pub created_at: i64,
    pub slotted: bool,
}

impl FullKeyRow {
    pub(crate) fn tenant(&self) -> Result<TenantId> {
        TenantId::parse(&self.tenant).map_err(|e| corrupt(&self.tenant, e))
    }

    pub(crate) fn kid(&self) -> Result<KeyId> {
        decode_kid(&self.kid)
    }
}

pub(crate) fn decode_kid(bytes: &[u8]) -> Result<KeyId> {
    KeyId::from_slice(bytes).map_err(|e| corrupt(&hex_of(bytes), e))
}

/// Metadata of a key (listings).
#[derive(sqlx::FromRow)]
pub(crate) struct InfoRow {
    pub kid: Vec<u8>,
    pub track_type: Option<String>,
    pub period: Option<i64>,
    pub origin: String,
    pub created_at: i64,
    pub slotted: bool,
}

impl InfoRow {
    pub(crate) fn decode(self, content_id: &ContentId) -> Result<KeyInfo> {
        let corrupt = |reason: String| StoreError::Corrupt {
            kid: hex_of(&self.kid),
            reason,
        };
        let kid = KeyId::from_slice(&self.kid).map_err(|e| corrupt(e.to_string()))?;
        Ok(KeyInfo {
            kid,
            content_id: content_id.clone(),
            track_type: decode_track_type(self.track_type.clone()).map_err(corrupt)?,
            period: decode_period(self.period).map_err(corrupt)?,
            origin: decode_origin(&self.origin).map_err(corrupt)?,
            slotted: self.slotted,
            created_at: OffsetDateTime::from_unix_timestamp(self.created_at)
                .map_err(|e| corrupt(e.to_string()))?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct SessionRow {
    pub session_id: String,
    pub user_id: String,
    pub entitlement: String,
    pub heartbeat_seconds: i64,
    pub key_systems: String,
    pub created_at: i64,
    pub expires_at: i64,
}

impl SessionRow {
    pub(crate) fn decode(self) -> Result<Session> {
        // The session id is a bearer secret: errors do not name it.
        let unsigned = |value: i64, column: &str| -> Result<u64> {
            u64::try_from(value).map_err(|_| corrupt("a session", format!("negative {column}")))
        };
        Ok(Session {
            heartbeat_seconds: unsigned(self.heartbeat_seconds, "heartbeat_seconds")?,
            key_systems: self
                .key_systems
                .split_whitespace()
                .map(str::to_owned)
                .collect(),
            created_at: unsigned(self.created_at, "created_at")?,
            expires_at: unsigned(self.expires_at, "expires_at")?,
            user: self.user_id,
            entitlement: self.entitlement,
            id: self.session_id,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct TenantRow {
    pub id: String,
    pub settings: Option<String>,
    pub disabled: bool,
    pub created_at: i64,
}

impl TenantRow {
    pub(crate) fn decode(self) -> Result<StoredTenant> {
        Ok(StoredTenant {
            id: TenantId::parse(&self.id)
                .map_err(|e| corrupt(&format!("tenant {}", self.id), e))?,
            settings: self.settings,
            disabled: self.disabled,
            created_at: from_unix(self.created_at, "tenant")?,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct DrmSystemRow {
    pub tenant: String,
    pub name: String,
    pub spec: String,
    pub created_at: i64,
    pub updated_at: i64,
}

impl DrmSystemRow {
    pub(crate) fn decode(self) -> Result<crate::StoredDrmSystem> {
        Ok(crate::StoredDrmSystem {
            tenant: TenantId::parse(&self.tenant)
                .map_err(|e| corrupt(&format!("DRM system {}", self.name), e))?,
            created_at: from_unix(self.created_at, "DRM system")?,
            updated_at: from_unix(self.updated_at, "DRM system")?,
            name: self.name,
            spec: self.spec,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct CredentialRow {
    pub id: String,
    pub tenant: String,
    pub kind: String,
    pub label: String,
    pub sealed_spec: Vec<u8>,
    pub master_key_id: String,
    pub created_at: i64,
}

impl CredentialRow {
    /// Opens the sealed spec (bound to tenant and credential id).
    pub(crate) fn decode(self, sealer: &KeySealer) -> Result<StoredCredential> {
        let what = format!("credential {}", self.id);
        let tenant = TenantId::parse(&self.tenant).map_err(|e| corrupt(&what, e))?;
        let spec = sealer.open_secret(&tenant, &self.id, &self.sealed_spec, &self.master_key_id)?;
        let spec =
            String::from_utf8(spec.to_vec()).map_err(|_| corrupt(&what, "spec is not UTF-8"))?;
        Ok(StoredCredential {
            created_at: from_unix(self.created_at, "credential")?,
            kind: self.kind,
            label: self.label,
            spec: Zeroizing::new(spec),
            tenant,
            id: self.id,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct AuditRow {
    pub id: i64,
    pub at_ms: i64,
    pub tenant: String,
    pub action: String,
    pub interface: String,
    pub credential: String,
    pub client: String,
    pub content_id: Option<String>,
    pub key_ids: String,
    pub outcome: String,
    pub detail: Option<String>,
}

impl AuditRow {
    pub(crate) fn decode(self) -> Result<AuditEvent> {
        let what = format!("audit event {}", self.id);
        Ok(AuditEvent {
            id: self.id,
            at: OffsetDateTime::from_unix_timestamp_nanos(i128::from(self.at_ms) * 1_000_000)
                .map_err(|e| corrupt(&what, e))?,
            action: AuditAction::parse(&self.action)
                .ok_or_else(|| corrupt(&what, format!("unknown action {:?}", self.action)))?,
            content_id: self
                .content_id
                .map(|c| ContentId::parse(&c).map_err(|e| corrupt(&what, e)))
                .transpose()?,
            key_ids: self
                .key_ids
                .split_whitespace()
                .map(|k| k.parse::<KeyId>().map_err(|e| corrupt(&what, e)))
                .collect::<Result<_>>()?,
            tenant: self.tenant,
            interface: self.interface,
            credential: self.credential,
            client: self.client,
            outcome: self.outcome,
            detail: self.detail,
        })
    }
}

#[derive(sqlx::FromRow)]
pub(crate) struct StatsRow {
    pub tenant: String,
    pub bucket_start: i64,
    pub measure: String,
    pub name: String,
    pub slot: i32,
    pub count: i64,
}

impl StatsRow {
    pub(crate) fn decode(self) -> Result<crate::StatsCount> {
        let negative = |what: &str| corrupt("a stats row", format!("negative {what}"));
        Ok(crate::StatsCount {
            bucket_start: u64::try_from(self.bucket_start).map_err(|_| negative("bucket"))?,
            count: u64::try_from(self.count).map_err(|_| negative("count"))?,
            tenant: self.tenant,
            measure: self.measure,
            name: self.name,
            slot: self.slot,
        })
    }
}

/// `stats_counts.count` of an addition.
pub(crate) fn count_column(count: u64) -> Result<i64> {
    i64::try_from(count).map_err(|_| StoreError::Internal(format!("count {count} out of range")))
}

/// `audit_events.key_ids`.
pub(crate) fn key_ids_column(key_ids: &[KeyId]) -> String {
    // Written into one buffer: formatting each kid through `Display` and joining them was
    // the largest part of building an audit row outside SQLite.
    let mut column = String::with_capacity(key_ids.len() * 37);
    let mut kid = [0u8; uuid::fmt::Hyphenated::LENGTH];
    for (i, id) in key_ids.iter().enumerate() {
        if i > 0 {
            column.push(' ');
        }
        column.push_str(id.uuid().hyphenated().encode_lower(&mut kid));
    }
    column
}

pub(crate) fn origin_column(origin: KeyOrigin) -> &'static str {
    match origin {
        KeyOrigin::Generated => "generated",
        KeyOrigin::Supplied => "supplied",
    }
}

pub(crate) fn decode_track_type(value: Option<String>) -> Result<Option<TrackType>, String> {
    value
        .map(|t| TrackType::parse(&t).map_err(|e| e.to_string()))
        .transpose()
}

pub(crate) fn decode_period(value: Option<i64>) -> Result<KeyPeriod, String> {
    match value {
        None => Ok(KeyPeriod::Vod),
        Some(index) => u64::try_from(index)
            .map(KeyPeriod::Index)
            .map_err(|_| format!("negative key period {index}")),
    }
}

pub(crate) fn decode_origin(value: &str) -> Result<KeyOrigin, String> {
    match value {
        "generated" => Ok(KeyOrigin::Generated),
        "supplied" => Ok(KeyOrigin::Supplied),
        other => Err(format!("unknown key origin {other:?}")),
    }
}

/// `content_keys.period`: NULL for VOD, else the index (both databases: signed 64-bit).
pub(crate) fn period_column(period: KeyPeriod) -> Result<Option<i64>> {
    period
        .index()
        .map(|index| {
            i64::try_from(index).map_err(|_| {
                StoreError::Internal(format!(
                    "key period index {index} is beyond the storable range (2^63 - 1)"
                ))
            })
        })
        .transpose()
}

/// `key_slots.period`: [`VOD_SLOT_PERIOD`] for VOD, else the index.
pub(crate) fn slot_period_column(period: KeyPeriod) -> Result<i64> {
    Ok(period_column(period)?.unwrap_or(VOD_SLOT_PERIOD))
}

pub(crate) fn hex_of(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

pub(crate) fn unix_column(seconds: u64) -> Result<i64> {
    i64::try_from(seconds).map_err(|_| StoreError::Internal(format!("time {seconds} out of range")))
}

pub(crate) fn from_unix(seconds: i64, what: &str) -> Result<OffsetDateTime> {
    OffsetDateTime::from_unix_timestamp(seconds).map_err(|e| corrupt(what, e))
}

pub(crate) fn unix_ms(at: OffsetDateTime) -> Result<i64> {
    i64::try_from(at.unix_timestamp_nanos() / 1_000_000)
        .map_err(|_| StoreError::Internal(format!("time {at} out of range")))
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn key_ids_column_is_the_display_forms_joined() {
        for n in 0..4 {
            let kids: Vec<KeyId> = (0..n)
                .map(|_| keyplex_crypto::random::new_key_id().unwrap())
                .collect();
            let joined = kids
                .iter()
                .map(KeyId::to_string)
                .collect::<Vec<_>>()
                .join(" ");
            assert_eq!(key_ids_column(&kids), joined);
        }
    }

    #[test]
    fn period_columns() {
        assert_eq!(period_column(KeyPeriod::Vod).unwrap(), None);
        assert_eq!(period_column(KeyPeriod::Index(0)).unwrap(), Some(0));
        assert_eq!(slot_period_column(KeyPeriod::Vod).unwrap(), VOD_SLOT_PERIOD);
        assert_eq!(slot_period_column(KeyPeriod::Index(7)).unwrap(), 7);
        assert!(period_column(KeyPeriod::Index(u64::MAX)).is_err());
        assert_eq!(decode_period(None).unwrap(), KeyPeriod::Vod);
        assert_eq!(decode_period(Some(9)).unwrap(), KeyPeriod::Index(9));
        assert!(decode_period(Some(-1)).is_err());
    }
}
