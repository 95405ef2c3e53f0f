//! Per-thread shards for the state every request updates (its counters, its queued audit
//! event). One global mutex per such state made the two worker threads of a small machine
//! take turns at it and bounce its cache line between cores on every request; with a shard
//! per thread each worker locks only its own, uncontended, and whoever reads the totals (a
//! scrape, a flush) visits every shard.

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Mutex, MutexGuard};

/// Shards per sharded value: more than the worker threads of the machines keyplex runs on,
/// so that threads rarely share one.
pub const SHARDS: usize = 16;

static NEXT_THREAD: AtomicUsize = AtomicUsize::new(0);

thread_local! {
    /// This thread's shard, dealt round robin as threads first ask.
    static INDEX: usize = NEXT_THREAD.fetch_add(1, Ordering::Relaxed) % SHARDS;
}

/// `T` once per shard.
pub struct Sharded<T> {
    shards: Box<[Mutex<T>]>,
}

impl<T: Default> Default for Sharded<T> {
    fn default() -> Self {
        Self {
            shards: (0..SHARDS).map(|_| Mutex::new(T::default())).collect(),
        }
    }
}

/// Locks `m` whether or not a panic poisoned it: what these mutexes guard (counts, queued
/// events) is never left with broken invariants, only half-updated counts.
pub fn lock<T>(m: &Mutex<T>) -> MutexGuard<'_, T> {
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<T> Sharded<T> {
    /// The calling thread's shard.
    pub fn local(&self) -> MutexGuard<'_, T> {
        let index = INDEX.with(|i| *i);
        lock(&self.shards[index % self.shards.len()])
    }

    /// Every shard in turn.
    pub fn each(&self, mut f: impl FnMut(&mut T)) {
        for shard in &*self.shards {
            f(&mut lock(shard));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_thread_writes_its_shard_and_each_sees_all() {
        let counts = std::sync::Arc::new(Sharded::<u64>::default());
        let threads: Vec<_> = (0..4)
            .map(|_| {
                let counts = counts.clone();
                std::thread::spawn(move || {
                    for _ in 0..1_000 {
                        *counts.local() += 1;
                    }
                })
            })
            .collect();
        for t in threads {
            t.join().unwrap();
        }
        let mut total = 0;
        counts.each(|n| total += *n);
        assert_eq!(total, 4_000);
    }
}
