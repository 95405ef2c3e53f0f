//! The audit trail's writer. Events of key creation are committed by the store in the same
//! transaction as the keys (`KeyStore::ensure_keys_audited`, see `keys::resolve`); admin
//! actions are committed before their answer ([`AuditLog::record_durable`]); deliveries and
//! licence decisions are queued ([`AuditLog::record`]) and committed in batches by
//! [`AuditLog::run_flusher`] every [`FLUSH_INTERVAL`], so the hot paths never wait for a disk
//! write of their own. Concurrent durable records share commits.
//!
//! A commit runs on a task of its own: a request that is dropped while it waits (its client
//! went away) cannot cancel a commit half way, which would lose the batch it had taken from
//! the queue, other requests' events included.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use keyplex_store::{AuditEvent, KeyStore};

use crate::http::shard::{SHARDS, Sharded, lock};

/// How long a queued event waits at most before it is committed.
pub const FLUSH_INTERVAL: Duration = Duration::from_millis(100);
/// Queued events kept while the store cannot take them; beyond this the oldest are dropped
/// (and counted), so that a long store outage cannot exhaust memory. Each shard and the
/// retry batch are bounded on their own.
const MAX_PENDING: usize = 1_000_000;
const MAX_PENDING_PER_SHARD: usize = MAX_PENDING / SHARDS;

pub struct AuditLog {
    inner: Arc<Inner>,
}

struct Inner {
    store: Arc<dyn KeyStore>,
    /// Queued events, per worker thread: queuing one takes only the thread's own lock.
    pending: Sharded<Vec<AuditEvent>>,
    /// A batch the store refused, committed first by the next flush.
    retry: Mutex<Vec<AuditEvent>>,
    /// Held by whoever is committing; a durable record waits for it, then commits what is
    /// queued (its own events included, unless a commit before took them).
    commit: tokio::sync::Mutex<()>,
    dropped: std::sync::atomic::AtomicU64,
}

impl AuditLog {
    pub fn new(store: Arc<dyn KeyStore>) -> Self {
        Self {
            inner: Arc::new(Inner {
                store,
                pending: Sharded::default(),
                retry: Mutex::new(Vec::new()),
                commit: tokio::sync::Mutex::new(()),
                dropped: std::sync::atomic::AtomicU64::new(0),
            }),
        }
    }

    /// Queues an event; it is committed within [`FLUSH_INTERVAL`].
    pub fn record(&self, event: AuditEvent) {
        self.inner.push([event]);
    }

    /// Commits the events (and whatever is queued) before returning.
    pub async fn record_durable(
        &self,
        events: Vec<AuditEvent>,
    ) -> Result<(), keyplex_store::StoreError> {
        self.inner.push(events);
        self.flush().await
    }

    /// Commits everything queued, on a task of its own (see the module's documentation): if
    /// this future is dropped, the commit goes on. On failure the events stay queued for the
    /// next attempt.
    pub async fn flush(&self) -> Result<(), keyplex_store::StoreError> {
        let inner = self.inner.clone();
        tokio::spawn(async move { inner.flush().await })
            .await
            .unwrap_or_else(|e| {
                Err(keyplex_store::StoreError::Internal(format!(
                    "audit trail: the commit task failed: {e}"
                )))
            })
    }

    /// Events dropped because the store was unavailable for too long.
    pub fn dropped(&self) -> u64 {
        self.inner
            .dropped
            .load(std::sync::atomic::Ordering::Relaxed)
    }

    /// Commits queued events every [`FLUSH_INTERVAL`] until `stop` resolves, then once more.
    pub async fn run_flusher(&self, stop: impl Future<Output = ()>) {
        let mut stop = std::pin::pin!(stop);
        let mut tick = tokio::time::interval(FLUSH_INTERVAL);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                () = &mut stop => break,
                _ = tick.tick() => {
                    if let Err(e) = self.flush().await {
                        tracing::error!(error = %e, "audit trail: cannot write events; will retry");
                    }
                }
            }
        }
        if let Err(e) = self.flush().await {
            tracing::error!(error = %e, "audit trail: events lost at shutdown");
        }
    }
}

impl Inner {
    fn push(&self, events: impl IntoIterator<Item = AuditEvent>) {
        let mut pending = self.pending.local();
        pending.extend(events);
        self.bound(&mut pending, MAX_PENDING_PER_SHARD);
    }

    /// Drops the oldest events beyond `max`, counted.
    fn bound(&self, pending: &mut Vec<AuditEvent>, max: usize) {
        if pending.len() > max {
            let excess = pending.len() - max;
            pending.drain(..excess);
            self.dropped
                .fetch_add(excess as u64, std::sync::atomic::Ordering::Relaxed);
            tracing::error!(
                dropped = excess,
                "audit trail: the store has not taken events for too long; oldest dropped"
            );
        }
    }

    /// Commits everything queued. On failure the events stay queued for the next attempt.
    /// Cancelling this future after it took the batch would lose it: only
    /// [`AuditLog::flush`]'s task runs it.
    async fn flush(&self) -> Result<(), keyplex_store::StoreError> {
        let _committing = self.commit.lock().await;
        let mut batch = std::mem::take(&mut *lock(&self.retry));
        self.pending.each(|shard| batch.append(shard));
        if batch.is_empty() {
            return Ok(());
        }
        // Shards interleave in time; ids follow the order of the batch, so it is put back in
        // the order the events happened (stable: one thread's events keep theirs).
        batch.sort_by_key(|e| e.at);
        // Shared with the store's writer, which takes the events to its thread without
        // copying their strings (one copy per event was ~2 % of a licence).
        let batch: Arc<[AuditEvent]> = batch.into();
        match self.store.append_audit(batch.clone()).await {
            Ok(()) => Ok(()),
            Err(e) => {
                let mut batch = batch.to_vec();
                let mut retry = lock(&self.retry);
                self.bound(&mut batch, MAX_PENDING);
                *retry = batch;
                Err(e)
            }
        }
    }
}
