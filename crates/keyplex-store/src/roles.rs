//! The store's interface, one trait per role, so that each caller sees what it relies on:
//!
//! * [`Keys`] — content keys, as the packager and player interfaces ask for them;
//! * [`Sessions`] — player sessions and single-use token ids (player-side state that expires);
//! * [`Tenants`] — what operators configure: tenants, credentials, DRM systems (the versioned
//!   [`Registry`]) and the licence policies stored with contents;
//! * [`Audit`] — the audit trail;
//! * [`Stats`] — the dashboard's time series;
//! * [`Custody`] — keys as a whole: backup (export, import, copying a store) and the master key
//!   that seals them at rest (rotation).
//!
//! A backend implements every role; [`KeyStore`] is all of them, so the server holds one
//! `Arc<dyn KeyStore>`. To call a role's methods its trait must be in scope:
//! `use keyplex_store::prelude::*;` brings them all, without taking their names.

use std::sync::Arc;

use async_trait::async_trait;
use keyplex_types::{ContentId, ContentKey, KeyId, TenantId};

use crate::{
    AuditEvent, AuditQuery, ContentSummary, EnsuredKey, ExportedKey, ImportOutcome, KeyInfo,
    KeyRequest, MasterKey, NewSession, Registry, Result, RotationReport, Session, SessionOpen,
    StatsCount, StoredContentPolicy, StoredCredential, StoredDrmSystem, StoredTenant,
};

/// Every role of a store: what the server holds (`Arc<dyn KeyStore>`). Implemented for
/// whatever implements the roles; every backend passes the conformance suite
/// (`conformance`, feature `conformance`).
pub trait KeyStore: Keys + Sessions + Tenants + Audit + Stats + Custody + 'static {}

impl<T: Keys + Sessions + Tenants + Audit + Stats + Custody + 'static + ?Sized> KeyStore for T {}

/// Content keys, as the packager and player interfaces ask for them.
///
/// **Invariants:** a kid maps to one (content, key, IV) for ever and a slot to one kid for
/// ever, per tenant; [`Keys::ensure_keys_audited`] is atomic and durable before it returns;
/// racing identical batches create one key.
#[async_trait]
pub trait Keys: Send + Sync {
    /// Resolves every request of the batch to its one key, creating what is new, atomically
    /// and durably. The result has one entry per request, in request order, saying whether
    /// that request created its key (for the audit trail and metrics).
    ///
    /// When the batch creates any key, `created` (its `key_ids` set to the kids this batch
    /// created, in request order) is appended to the audit trail in the same transaction as
    /// the keys. A key is thus never stored without its `key.created` event, whatever happens
    /// to the caller after the commit, and one commit makes both durable. Nothing is recorded
    /// when every key was stored before.
    async fn ensure_keys_audited(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
        created: AuditEvent,
    ) -> Result<Vec<EnsuredKey>>;

    /// The key with this id, if this tenant has one.
    async fn get_key(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentKey>>;

    /// The content a key id belongs to, without opening the key: licence paths decide
    /// entitlement on this before any key bytes are read.
    async fn key_content(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<ContentId>>;

    /// Metadata of a content's keys (never key bytes), oldest first.
    async fn list_keys(&self, tenant: &TenantId, content_id: &ContentId) -> Result<Vec<KeyInfo>>;

    /// A tenant's contents in content id order: those whose id contains `search`
    /// (case-insensitive) and sorts after `after`, at most `limit`.
    async fn list_contents(
        &self,
        tenant: &TenantId,
        search: Option<&str>,
        after: Option<&ContentId>,
        limit: u32,
    ) -> Result<Vec<ContentSummary>>;

    /// Cheap liveness check for `/healthz`.
    async fn ping(&self) -> Result<()>;
}

/// Player sessions and single-use token ids: player-side state that expires.
///
/// **Invariants:** a session limit holds under concurrent openings (on every node sharing the
/// store); a token id is spent once until it expires; session ids are kept only hashed.
#[async_trait]
pub trait Sessions: Send + Sync {
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

    /// A user's live sessions at `now` (at most [`crate::MAX_USER_SESSIONS_LISTED`], newest
    /// first): licence routes of a tenant with `require_session` look for one covering the
    /// content.
    async fn live_sessions_of(
        &self,
        tenant: &TenantId,
        user: &str,
        now: u64,
    ) -> Result<Vec<Session>>;

    /// How many sessions are live at `now`, of one tenant or of all.
    async fn count_live_sessions(&self, tenant: Option<&TenantId>, now: u64) -> Result<u64>;

    /// Records that an entitlement token id was presented: true the first time (or once the
    /// id's earlier use has expired), false for a replay. Atomic across every node sharing
    /// the store. `expires_at` (Unix seconds) is when the id may be forgotten.
    async fn spend_token_id(
        &self,
        tenant: &TenantId,
        jti: &str,
        expires_at: u64,
        now: u64,
    ) -> Result<bool>;

    /// Forgets token ids that expired before `now`; the count.
    async fn purge_token_ids(&self, now: u64) -> Result<u64>;
}

/// What operators configure through the admin API: tenants, credentials and DRM systems (the
/// [`Registry`], versioned so that nodes notice each other's changes), and the licence
/// policies stored with contents.
///
/// **Invariants:** every registry change bumps the version; credential specs are stored only
/// sealed under the master key.
#[async_trait]
pub trait Tenants: Send + Sync {
    /// Every stored tenant and credential (secrets opened), with the registry version.
    async fn registry(&self) -> Result<Registry>;

    /// The registry version alone: cheap enough to poll every few seconds.
    async fn registry_version(&self) -> Result<i64>;

    /// Stores a new tenant; false (and nothing written) when a row with its id exists.
    async fn create_tenant(&self, tenant: &StoredTenant) -> Result<bool>;

    /// Disables or re-enables a tenant, creating its row (settings `None`) if it has none.
    async fn set_tenant_disabled(
        &self,
        tenant: &TenantId,
        disabled: bool,
        now: time::OffsetDateTime,
    ) -> Result<()>;

    /// Stores a credential, its spec sealed under the master key.
    async fn add_credential(&self, credential: &StoredCredential) -> Result<()>;

    /// Deletes a credential; false when this tenant has none with this id.
    async fn revoke_credential(&self, tenant: &TenantId, id: &str) -> Result<bool>;

    /// Stores a tenant's DRM system definition under its name, replacing one of the same
    /// name (whose `created_at` stays); true when it is new.
    async fn put_drm_system(&self, system: &StoredDrmSystem) -> Result<bool>;

    /// Deletes a tenant's DRM system definition; false when the tenant has none of this name.
    async fn remove_drm_system(&self, tenant: &TenantId, name: &str) -> Result<bool>;

    /// Stores (or replaces) a content's licence policy: JSON text the server validated, opaque
    /// to the store. `at` is when it changed.
    async fn put_content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
        policy: &str,
        at: time::OffsetDateTime,
    ) -> Result<()>;

    /// A content's licence policy (JSON text), `None` when it has none.
    async fn content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
    ) -> Result<Option<String>>;

    /// Every stored content licence policy of every tenant, with when it last changed (for
    /// copying a store).
    async fn all_content_policies(&self) -> Result<Vec<StoredContentPolicy>>;

    /// Removes a content's licence policy; true when there was one.
    async fn delete_content_policy(
        &self,
        tenant: &TenantId,
        content_id: &ContentId,
    ) -> Result<bool>;
}

/// The audit trail. Key creation records its `key.created` events itself
/// ([`Keys::ensure_keys_audited`]); everything else is appended here.
#[async_trait]
pub trait Audit: Send + Sync {
    /// Appends events in one transaction (durable when it returns). Shared rather than
    /// borrowed: a store that commits on another thread takes them there without copying
    /// every event's strings, and the caller keeps them for a retry.
    async fn append_audit(&self, events: Arc<[AuditEvent]>) -> Result<()>;

    /// Events matching `query`, newest first, at most `query.limit`.
    async fn query_audit(&self, query: &AuditQuery) -> Result<Vec<AuditEvent>>;

    /// Deletes events older than `before` (retention), in small transactions; the count.
    async fn purge_audit(&self, before: time::OffsetDateTime) -> Result<u64>;
}

/// The dashboard's time series: counts per (tenant, bucket, measure, name, slot), added to by
/// every node.
#[async_trait]
pub trait Stats: Send + Sync {
    /// Adds `counts` to the stored counts (rows with the same tenant, bucket, measure, name
    /// and slot add up), in one transaction. Several nodes add to the same rows.
    async fn add_stats(&self, counts: &[StatsCount]) -> Result<()>;

    /// The stored counts of buckets starting in `[from, until)` (Unix seconds), of one tenant
    /// or of all.
    async fn read_stats(
        &self,
        tenant: Option<&str>,
        from: u64,
        until: u64,
    ) -> Result<Vec<StatsCount>>;

    /// Deletes counts of buckets that started before `before`; the count of rows.
    async fn purge_stats(&self, before: u64) -> Result<u64>;
}

/// Keys as a whole: backup (export, import, copying a store) and the master key that seals
/// them at rest.
///
/// **Invariants:** an import never changes a stored key (a kid or slot already stored must
/// hold the identical key); during a rotation every row opens, under the previous key until it
/// is re-sealed.
#[async_trait]
pub trait Custody: Send + Sync {
    /// Every tenant that has at least one stored key (for copying a store).
    async fn tenants_with_keys(&self) -> Result<Vec<TenantId>>;

    /// Every key of a tenant, opened, with what restores it exactly (for backups).
    async fn export_keys(&self, tenant: &TenantId) -> Result<Vec<ExportedKey>>;

    /// Restores exported keys atomically: new key ids are stored as they were (origin,
    /// creation time, slot binding); a key id or slot already stored must hold the identical
    /// key, else [`crate::StoreError::Conflict`] and nothing is written.
    async fn import_keys(&self, tenant: &TenantId, keys: &[ExportedKey]) -> Result<ImportOutcome>;

    /// Fingerprints of the master keys that sealed stored rows (keys and credentials): a node
    /// whose keyring lacks one of them must not serve (it would answer "corrupt").
    async fn sealing_fingerprints(&self) -> Result<Vec<String>>;

    /// Makes `new` the master key: every content key and credential is re-sealed under it,
    /// in small transactions, while the store keeps serving (rows not yet re-sealed still
    /// open with the previous key).
    async fn rotate_master_key(&self, new: MasterKey) -> Result<RotationReport>;
}

/// Key creation without an audit event: what the store's own tests and the bench filler use.
/// The server never creates keys this way (every key it creates is audited with it), so this
/// is not part of [`Keys`].
#[cfg(any(test, feature = "conformance"))]
#[async_trait]
pub trait UnauditedKeys: Send + Sync {
    /// [`Keys::ensure_keys_audited`] without the audit event.
    async fn ensure_keys_reporting(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
    ) -> Result<Vec<EnsuredKey>>;

    /// [`Self::ensure_keys_reporting`] without the created flags.
    async fn ensure_keys(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
    ) -> Result<Vec<ContentKey>> {
        Ok(self
            .ensure_keys_reporting(tenant, requests)
            .await?
            .into_iter()
            .map(|e| e.key)
            .collect())
    }
}
