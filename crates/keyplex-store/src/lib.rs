//! Durable storage of content keys, behind one trait ([`KeyStore`]).
//!
//! **Invariants** (checked by the conformance suite in [`conformance`], run against every
//! backend):
//! * A key id maps to exactly one (content id, key, IV) for ever, per tenant.
//! * A key slot (content id, track type, key period) maps to exactly one key id for ever.
//! * [`KeyStore::ensure_keys`] is atomic: either every request of the batch is satisfied and
//!   durable (committed with a synchronous fsync) before it returns, or nothing is written.
//! * Racing identical batches produce one key, never two.
//! * Key bytes are stored only sealed under the master key (AES-256-GCM, bound to tenant, key
//!   id and content id); they never appear in errors or logs.
#![deny(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use async_trait::async_trait;
use keyplex_types::{
    ContentId, ContentKey, ContentKeyValue, Iv, KeyId, KeyOrigin, KeyPeriod, KeySlot, TenantId,
    TrackType,
};

mod cache;
pub mod conformance;
mod rules;
pub mod sqlite;

pub use sqlite::SqliteStore;

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
    /// A stored record cannot be read back (wrong master key, tampering, bad row).
    #[error("key store record for {kid} is unreadable: {reason}")]
    Corrupt { kid: String, reason: String },
    #[error("key store error: {0}")]
    Internal(String),
}

pub type Result<T, E = StoreError> = std::result::Result<T, E>;

/// Storage of content keys. One implementation per database; all pass [`conformance::run`].
#[async_trait]
pub trait KeyStore: Send + Sync + 'static {
    /// Resolves every request of the batch to its one key, creating what is new, atomically
    /// and durably. The result has one `ContentKey` per request, in request order.
    async fn ensure_keys(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
    ) -> Result<Vec<ContentKey>>;

    /// The key with this id, if this tenant has one.
    async fn get_key(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentKey>>;

    /// The content a key id belongs to, without opening the key: licence paths decide
    /// entitlement on this before any key bytes are read.
    async fn key_content(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentId>>;

    /// Metadata of a content's keys (never key bytes), oldest first.
    async fn list_keys(&self, tenant: &TenantId, content_id: &ContentId) -> Result<Vec<KeyInfo>>;

    /// Cheap liveness check for `/healthz`.
    async fn ping(&self) -> Result<()>;

    /// Opens `session` unless its user already has `max_streams` live sessions (`None`:
    /// unlimited). Counting and inserting are one atomic step, so concurrent openings never
    /// exceed the limit. A session is live while `expires_at > now`.
    async fn open_session(
        &self,
        tenant: &TenantId,
        session: &NewSession,
        max_streams: Option<u32>,
        now: u64,
    ) -> Result<SessionOpen>;

    /// The live session with this id (`None` when unknown, closed or expired at `now`).
    async fn get_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<Option<Session>>;

    /// Moves a live session's expiry to `expires_at` and, with `licensed`, records that a
    /// licence of that key system was issued in it. `None` when the session is not live.
    async fn touch_session(
        &self,
        tenant: &TenantId,
        id: &str,
        now: u64,
        expires_at: u64,
        licensed: Option<&str>,
    ) -> Result<Option<Session>>;

    /// Ends a session (teardown). True when a live session was closed.
    async fn close_session(&self, tenant: &TenantId, id: &str, now: u64) -> Result<bool>;
}

/// A session to open.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct NewSession {
    /// Random, unguessable: the session id is the bearer secret of the session's calls.
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

/// A stored live session.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Session {
    pub id: String,
    pub user: String,
    pub entitlement: String,
    pub heartbeat_seconds: u64,
    /// Key systems a licence was issued for in this session, in issue order.
    pub key_systems: Vec<String>,
    pub created_at: u64,
    pub expires_at: u64,
}

/// The outcome of [`KeyStore::open_session`].
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SessionOpen {
    Opened,
    /// The user already has `active` live sessions, at least `max_streams`.
    LimitReached {
        active: u32,
    },
}
