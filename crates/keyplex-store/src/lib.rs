//! Durable storage of content keys, behind one trait per role ([`Keys`], [`Sessions`],
//! [`Tenants`], [`Audit`], [`Stats`], [`Custody`]; [`KeyStore`] is all of them, see
//! [`roles`]).
//!
//! **Invariants** (checked by the conformance suite, `conformance`, run against every
//! backend):
//! * A key id maps to exactly one (content id, key, IV) for ever, per tenant.
//! * A key slot (content id, track type, key period) maps to exactly one key id for ever.
//! * [`Keys::ensure_keys_audited`] is atomic: either every request of the batch is satisfied
//!   and durable (committed with a synchronous fsync) before it returns, or nothing is written.
//! * Racing identical batches produce one key, never two.
//! * Key bytes are stored only sealed under the master key (AES-256-GCM, bound to tenant, key
//!   id and content id); they never appear in errors or logs.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use keyplex_types::{
    ContentId, ContentKey, ContentKeyValue, Iv, KeyId, KeyOrigin, KeyPeriod, KeySlot, TenantId,
    TrackType,
};

mod cache;
mod columns;
#[cfg(any(test, feature = "conformance"))]
pub mod conformance;
mod copy;
pub mod postgres;
mod records;
pub mod roles;
mod rules;
pub mod sqlite;

pub use copy::{CopyReport, copy_store};
pub use keyplex_crypto::master::MasterKey;
pub use postgres::PostgresStore;
pub use records::{
    AuditAction, AuditEvent, AuditQuery, ContentSummary, ExportedKey, ImportOutcome, Registry,
    RotationReport, StatsCount, StoredCredential, StoredDrmSystem, StoredTenant,
};
#[cfg(any(test, feature = "conformance"))]
pub use roles::UnauditedKeys;
pub use roles::{Audit, Custody, KeyStore, Keys, Sessions, Stats, Tenants};
pub use sqlite::SqliteStore;

/// The role traits, unnamed: `use keyplex_store::prelude::*;` puts the methods of every role
/// in scope (to call them on a `dyn KeyStore`) without taking the traits' names.
pub mod prelude {
    pub use crate::roles::{
        Audit as _, Custody as _, KeyStore as _, Keys as _, Sessions as _, Stats as _, Tenants as _,
    };
}

/// Where a store lives: `postgres://…` (several nodes) or a SQLite file. `Debug` prints
/// [`Self::redacted`]: the URL's password must not reach a log through `{:?}`.
#[derive(Clone, PartialEq, Eq)]
pub enum StoreLocation {
    Sqlite(std::path::PathBuf),
    /// The URL (with its password): never print it whole.
    Postgres(String),
}

impl std::fmt::Debug for StoreLocation {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        let variant = match self {
            Self::Sqlite(_) => "Sqlite",
            Self::Postgres(_) => "Postgres",
        };
        f.debug_tuple(variant).field(&self.redacted()).finish()
    }
}

impl StoreLocation {
    /// Reads `postgres://…`, `postgresql://…`, `sqlite://PATH` or `sqlite:PATH`.
    pub fn parse(url: &str) -> Result<Self> {
        if url.starts_with("postgres://") || url.starts_with("postgresql://") {
            return Ok(Self::Postgres(url.to_owned()));
        }
        if let Some(path) = url
            .strip_prefix("sqlite://")
            .or_else(|| url.strip_prefix("sqlite:"))
            && !path.is_empty()
        {
            return Ok(Self::Sqlite(std::path::PathBuf::from(path)));
        }
        Err(StoreError::Internal(
            "a store URL is postgres://… or sqlite://PATH".to_owned(),
        ))
    }

    /// The location without credentials, for logs and messages.
    pub fn redacted(&self) -> String {
        match self {
            Self::Sqlite(path) => format!("sqlite://{}", path.display()),
            Self::Postgres(url) => {
                let (scheme, rest) = url.split_once("://").unwrap_or(("postgres", url));
                let host = rest.rsplit_once('@').map_or(rest, |(_, host)| host);
                let host = host.split_once('?').map_or(host, |(h, _)| h);
                format!("{scheme}://{host}")
            }
        }
    }

    /// Opens the store (creating a SQLite file's database, bringing the schema up to date).
    pub async fn open(&self, master: MasterKey) -> Result<std::sync::Arc<dyn KeyStore>> {
        Ok(match self {
            Self::Sqlite(path) => std::sync::Arc::new(SqliteStore::open(path, master).await?),
            Self::Postgres(url) => std::sync::Arc::new(PostgresStore::connect(url, master).await?),
        })
    }

    /// Brings the schema up to date and returns (safe from several nodes at once).
    pub async fn migrate(&self) -> Result<()> {
        match self {
            Self::Sqlite(path) => SqliteStore::migrate_path(path).await,
            Self::Postgres(url) => PostgresStore::migrate_url(url).await,
        }
    }
}

/// A candidate key: what keyplex will store if the identity it is asked under is new.
/// Generated keys come from `keyplex_crypto::random`; supplied keys from the packager.
#[derive(Clone, Debug)]
pub struct KeyMaterial {
    pub kid: KeyId,
    pub key: ContentKeyValue,
    pub iv: Iv,
}

/// One key a request needs.
#[derive(Clone, Debug)]
pub enum KeyRequest {
    /// The packager named the key id (CPIX, SPEKE): the kid is the identity.
    ///
    /// * kid unknown → `candidate` is stored under `content_id`.
    /// * kid known under another content id → [`StoreError::Conflict`].
    /// * kid known, `key_supplied` and the stored key differs → Conflict.
    /// * kid known, `iv_supplied` and the stored IV differs → Conflict.
    /// * otherwise the stored key is returned unchanged (retries, re-requests).
    ByKid {
        content_id: ContentId,
        candidate: KeyMaterial,
        key_supplied: bool,
        iv_supplied: bool,
        /// Metadata recorded with a new key (not part of the identity).
        track_type: Option<TrackType>,
        period: KeyPeriod,
    },
    /// keyplex chooses the key id (NAGRA JSON, Widevine API, GET CPIX, kid override): the
    /// slot is the identity, shared by every interface.
    ///
    /// * slot empty → `candidate` is stored and bound to the slot (its kid must be new,
    ///   else Conflict).
    /// * slot taken, `supplied` is false → the stored key is returned.
    /// * slot taken, `supplied` is true and the stored kid or key differ → Conflict; so does
    ///   the IV when `iv_supplied` (an IV keyplex generated never conflicts).
    BySlot {
        slot: KeySlot,
        candidate: KeyMaterial,
        supplied: bool,
        iv_supplied: bool,
    },
}

/// A key [`Keys::ensure_keys_audited`] resolved a request to.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EnsuredKey {
    pub key: ContentKey,
    /// True when this request created the key (it was new); false when it was stored before.
    pub created: bool,
}

impl EnsuredKey {
    fn stored(key: ContentKey) -> Self {
        Self {
            key,
            created: false,
        }
    }
}

/// Metadata of a stored key: everything but the key bytes (for listings and audits).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct KeyInfo {
    pub kid: KeyId,
    pub content_id: ContentId,
    pub track_type: Option<TrackType>,
    pub period: KeyPeriod,
    pub origin: KeyOrigin,
    /// True when the key is bound to its (content, track, period) slot.
    pub slotted: bool,
    pub created_at: time::OffsetDateTime,
}

#[derive(Debug, thiserror::Error)]
pub enum StoreError {
    /// The request contradicts a key handed out before (→ HTTP 409).
    #[error("key id {kid} conflict: {reason}")]
    Conflict { kid: KeyId, reason: String },
    /// The database cannot be reached or is busy beyond its timeout (→ HTTP 503).
    #[error("key store unavailable: {0}")]
    Unavailable(String),
    /// Too many requests are waiting for the store's writer (→ HTTP 503 with `Retry-After`):
    /// load is shed at once rather than queued without bound.
    #[error("key store busy: too many requests waiting, retry after {retry_after_seconds} s")]
    Busy { retry_after_seconds: u64 },
    /// A stored record cannot be read back (wrong master key, tampering, bad row).
    #[error("key store record for {kid} is unreadable: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error("key store error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// A content's licence policy as the store keeps it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct StoredContentPolicy {
    pub tenant: TenantId,
    pub content_id: ContentId,
    /// JSON text, validated by the server when it was written.
    pub policy: String,
    pub updated_at: time::OffsetDateTime,
}

/// Most sessions [`Sessions::live_sessions_of`] returns: more than a user could watch at once.
pub const MAX_USER_SESSIONS_LISTED: i64 = 64;

/// A session to open. `Debug` leaves out the id (the bearer secret of the session's
/// calls) and the entitlement's claims.
#[derive(Clone, PartialEq, Eq)]
pub struct NewSession {
    /// Random, unguessable: the session id is the bearer secret of the session's calls. The
    /// store keeps and looks up only its hash.
    pub id: String,
    /// The entitlement's user (`sub`): the unit `max_streams` counts.
    pub user: String,
    /// The verified entitlement at setup, as JSON text (opaque to the store).
    pub entitlement: String,
    pub heartbeat_seconds: u64,
    /// Unix seconds.
    pub created_at: u64,
    /// Unix seconds.
    pub expires_at: u64,
}

/// A stored live session. `Debug` leaves out the id and the entitlement, like
/// [`NewSession`]'s.
#[derive(Clone, PartialEq, Eq)]
pub struct Session {
    /// What the store keeps of the session id: its SHA-256 (hex), never the id itself.
    pub id: String,
    pub user: String,
    pub entitlement: String,
    pub heartbeat_seconds: u64,
    /// Key systems a licence was issued for in this session, in issue order.
    pub key_systems: Vec<String>,
    pub created_at: u64,
    pub expires_at: u64,
}

impl std::fmt::Debug for NewSession {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NewSession")
            .field("id", &"<redacted>")
            .field("user", &self.user)
            .field("entitlement", &"<redacted>")
            .field("heartbeat_seconds", &self.heartbeat_seconds)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

impl std::fmt::Debug for Session {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Session")
            .field("id", &"<redacted>")
            .field("user", &self.user)
            .field("entitlement", &"<redacted>")
            .field("heartbeat_seconds", &self.heartbeat_seconds)
            .field("key_systems", &self.key_systems)
            .field("created_at", &self.created_at)
            .field("expires_at", &self.expires_at)
            .finish()
    }
}

/// The outcome of [`Sessions::open_session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOpen {
    Opened,
    /// The user already has `active` live sessions, at least `max_streams`.
    LimitReached {
        active: u32,
    },
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod debug_tests {
    use super::*;

    #[test]
    fn store_location_debug_hides_the_password() {
        let location = StoreLocation::parse(
            "postgres://keyplex:s3cret-pw@db.example:5432/keys?sslmode=require&password=other-pw",
        )
        .unwrap();
        let debug = format!("{location:?}");
        assert!(
            !debug.contains("s3cret-pw") && !debug.contains("other-pw"),
            "{debug}"
        );
        assert_eq!(debug, r#"Postgres("postgres://db.example:5432/keys")"#);
        let sqlite = StoreLocation::parse("sqlite:///var/lib/keyplex/keys.db").unwrap();
        assert_eq!(
            format!("{sqlite:?}"),
            r#"Sqlite("sqlite:///var/lib/keyplex/keys.db")"#
        );
        // Wrapped in something that derives Debug, still redacted.
        let debug = format!("{:?}", Some(location));
        assert!(!debug.contains("s3cret-pw"), "{debug}");
    }

    #[test]
    fn session_debug_hides_the_session_id_and_the_entitlement() {
        let new = NewSession {
            id: "session-bearer-secret-0123456789".into(),
            user: "viewer-1".into(),
            entitlement: r#"{"sub":"viewer-1","claim":"entitlement-claims"}"#.into(),
            heartbeat_seconds: 30,
            created_at: 1,
            expires_at: 31,
        };
        let session = Session {
            id: new.id.clone(),
            user: new.user.clone(),
            entitlement: new.entitlement.clone(),
            heartbeat_seconds: 30,
            key_systems: vec!["widevine".into()],
            created_at: 1,
            expires_at: 31,
        };
        for debug in [
            format!("{new:?}"),
            format!("{session:?}"),
            format!("{session:#?}"),
        ] {
            assert!(!debug.contains("session-bearer-secret"), "{debug}");
            assert!(!debug.contains("entitlement-claims"), "{debug}");
            assert!(
                debug.contains("viewer-1") && debug.contains("<redacted>"),
                "{debug}"
            );
        }
    }
}
