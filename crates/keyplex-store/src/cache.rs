//! A bounded in-memory cache in front of the database, shared by every backend.
//!
//! It is safe to cache because stored keys never change: a key id, once written, maps to the
//! same (content, key, IV) for ever, and a slot to the same key id. So a cached entry can
//! never be stale, on one node or many (only rows that were committed are ever inserted).
//! Entries are plain clones of `ContentKey`, whose key bytes are zeroized when evicted.

use keyplex_types::{ContentKey, KeyId, KeySlot, TenantId};

use crate::{KeyRequest, Result, rules};

/// How many keys stay in memory: enough for the keys a busy packaging farm keeps re-requesting
/// (live channels ask for the same few keys every segment), far below the store's size. Each
/// entry costs about 290 bytes of resident memory in practice (measured: 100,000 entries
/// took ~22 MB more than 25,000); at 100,000 the server passed 100 MB under load with a
/// million stored keys (bench/README.md). A miss costs a database read.
pub(crate) const KEY_CACHE_CAPACITY: usize = 25_000;

pub(crate) struct KeyCache {
    keys: quick_cache::sync::Cache<(TenantId, KeyId), ContentKey>,
    slots: quick_cache::sync::Cache<(TenantId, KeySlot), KeyId>,
}

impl KeyCache {
    pub(crate) fn new(capacity: usize) -> Self {
        Self {
            keys: quick_cache::sync::Cache::new(capacity),
            slots: quick_cache::sync::Cache::new(capacity),
        }
    }

    pub(crate) fn get(&self, tenant: &TenantId, kid: &KeyId) -> Option<ContentKey> {
        self.keys.get(&(tenant.clone(), *kid))
    }

    /// What the cache knows about `request`: `None` if it must ask the database,
    /// `Some(Ok)` if a stored key satisfies it, `Some(Err(Conflict))` if it contradicts one.
    pub(crate) fn resolve(
        &self,
        tenant: &TenantId,
        request: &KeyRequest,
    ) -> Option<Result<ContentKey>> {
        let kid = match request {
            KeyRequest::ByKid { candidate, .. } => candidate.kid,
            KeyRequest::BySlot { slot, .. } => self.slots.get(&(tenant.clone(), slot.clone()))?,
        };
        let stored = self.get(tenant, &kid)?;
        Some(rules::check_stored(request, &stored).map(|()| stored))
    }

    /// Remembers a committed key, and its slot binding when `request` was by slot.
    pub(crate) fn remember(&self, tenant: &TenantId, request: &KeyRequest, key: &ContentKey) {
        if let KeyRequest::BySlot { slot, .. } = request {
            self.slots.insert((tenant.clone(), slot.clone()), key.kid);
        }
        self.keys.insert((tenant.clone(), key.kid), key.clone());
    }

    pub(crate) fn remember_key(&self, tenant: &TenantId, key: &ContentKey) {
        self.keys.insert((tenant.clone(), key.kid), key.clone());
    }

    /// Forgets everything (tests that tamper with rows behind the store's back).
    #[cfg(test)]
    pub(crate) fn clear(&self) {
        self.keys.clear();
        self.slots.clear();
    }
}
