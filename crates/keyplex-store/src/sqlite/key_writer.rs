//! The key writer: one thread of its own with its own SQLite connection (rusqlite), which
//! creates content keys for every request that needs them, with group commit, and appends
//! the audit trail's batches (one transaction for every append waiting).
//!
//! Why a thread rather than the async pool: through sqlx every statement is a round trip to
//! the connection's worker thread (two context switches), and a key creation is a handful
//! of statements. Measured on a 2-core VM, those switches cost more than everything else a
//! new-content request does, and the request tasks reached the single writer connection one
//! at a time, so batches never formed. Here a request hands its job over once, the thread
//! takes every job waiting at that moment (see [`MAX_JOBS_PER_BATCH`]), plans them all
//! against one read of what is stored, inserts the new rows with a few multi-row statements
//! in one `BEGIN IMMEDIATE` transaction, commits once (one fsync for the whole batch) and
//! only then answers every job. The more requests arrive while a batch commits, the larger
//! the next batch: durability is paid once per batch, not once per request.
//!
//! The thread owns its connection; nothing else writes keys or audit events in this process.
//! Other processes on the same file (and this process's other writes: sessions, tenants) are
//! serialized with it by SQLite's write lock. A job whose caller went away is still committed and answered into
//! the void: creation cannot be cancelled half-way.

use std::collections::BTreeMap;
use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Duration;

use keyplex_types::{ContentId, ContentKey, KeyId, KeySlot, TenantId};
use rusqlite::types::Value;
use rusqlite::{Connection, OpenFlags, TransactionBehavior};
use tokio::sync::mpsc;

use crate::columns::{
    KeyRow, hex_of, key_ids_column, origin_column, period_column, slot_period_column, unix_ms,
};
use crate::rules::{self, KeySealer};
use crate::{AuditEvent, EnsuredKey, KeyRequest, Result, StoreError};

/// Jobs one batch takes at most: bounds the size of a transaction (and of its statements)
/// under a flood, while still sharing one fsync among many requests.
const MAX_JOBS_PER_BATCH: usize = 1024;

/// Messages waiting for the thread at most. A key job beyond it is refused at once
/// ([`StoreError::Busy`], 503 with `Retry-After`) rather than queued: an unbounded queue
/// under a flood holds every waiting request's memory and answers them all late, past their
/// deadlines, whichever tenant sent the flood. Four full batches drain in a few group
/// commits. Audit appends wait for room instead (they come from background flushes).
pub(super) const QUEUE_CAPACITY: usize = 4 * MAX_JOBS_PER_BATCH;

/// What a refused request is told to wait before retrying: the time a few batches take.
const RETRY_AFTER_SECONDS: u64 = 1;

/// A request for the writer thread.
enum Message {
    Job(Box<WriteJob>),
    /// Audit events to append (deliveries, licence decisions, admin actions): committed in
    /// one transaction with every other audit job waiting, answered after the commit.
    Audit(AuditJob),
    /// Commit what was queued before, close the connection, answer, and end the thread.
    Stop(tokio::sync::oneshot::Sender<()>),
}

/// The handle of the writer thread; dropping it ends the thread once its queue is done.
pub(super) struct KeyWriter {
    jobs: std::sync::Mutex<Option<mpsc::Sender<Message>>>,
    /// Batches the thread has finished (committed or answered from its read); read by the
    /// tests that check concurrent jobs share batches.
    #[cfg_attr(not(test), allow(dead_code))]
    batches: Arc<AtomicU64>,
}

impl KeyWriter {
    /// Opens a connection to the (already migrated) database at `path` and starts the
    /// thread that owns it.
    pub(super) fn start(
        path: &Path,
        busy_timeout: Duration,
        sealer: Arc<KeySealer>,
        queue_capacity: usize,
    ) -> Result<Self> {
        let conn = Connection::open_with_flags(
            path,
            OpenFlags::SQLITE_OPEN_READ_WRITE | OpenFlags::SQLITE_OPEN_NO_MUTEX,
        )
        .map_err(|e| sqlite_error(&format!("cannot open {}", path.display()), &e))?;
        // Per connection (journal_mode = WAL is a property of the file, set when it was
        // opened for migration). synchronous = FULL: a key is durable before the answer that
        // hands it out.
        conn.busy_timeout(busy_timeout)
            .and_then(|()| conn.pragma_update(None, "synchronous", "FULL"))
            .and_then(|()| conn.pragma_update(None, "foreign_keys", "ON"))
            .map_err(|e| sqlite_error("cannot configure the key writer's connection", &e))?;
        // Room for the audit chunks' statements beside the key inserts, whose SQL varies
        // with the batch's size: evicting a statement means parsing it again.
        conn.set_prepared_statement_cache_capacity(64);
        let (sender, receiver) = mpsc::channel(queue_capacity.max(1));
        let batches = Arc::new(AtomicU64::new(0));
        let counted = batches.clone();
        std::thread::Builder::new()
            .name("keyplex-key-writer".to_owned())
            .spawn(move || run(conn, &sealer, receiver, &counted))
            .map_err(|e| StoreError::Internal(format!("cannot start the key writer: {e}")))?;
        Ok(Self {
            jobs: std::sync::Mutex::new(Some(sender)),
            batches,
        })
    }

    /// Hands a job to the thread and waits for its answer (after the batch's commit).
    pub(super) async fn submit(
        &self,
        tenant: &TenantId,
        requests: &[KeyRequest],
        audit: Option<&AuditEvent>,
    ) -> Result<Vec<EnsuredKey>> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        let job = WriteJob {
            tenant: tenant.clone(),
            requests: requests.to_vec(),
            audit: audit.cloned(),
            reply,
        };
        self.try_send(Message::Job(Box::new(job)))?;
        answer.await.map_err(|_| stopped())?
    }

    /// Appends audit events on the thread (after the key batch it is working on), durable
    /// when this returns. Here rather than through sqlx's write connection so that key
    /// batches and audit batches do not take turns at SQLite's write lock through its busy
    /// handler.
    pub(super) async fn append_audit(&self, events: Arc<[AuditEvent]>) -> Result<()> {
        let (reply, answer) = tokio::sync::oneshot::channel();
        self.sender()?
            .send(Message::Audit(AuditJob { events, reply }))
            .await
            .map_err(|_| stopped())?;
        answer.await.map_err(|_| stopped())?
    }

    /// Lets the thread commit what is queued, then closes its connection.
    pub(super) async fn stop(&self) {
        let (done, stopped) = tokio::sync::oneshot::channel();
        if let Ok(sender) = self.sender()
            && sender.send(Message::Stop(done)).await.is_ok()
        {
            let _ = stopped.await;
        }
        if let Ok(mut jobs) = self.jobs.lock() {
            jobs.take();
        }
    }

    /// Batches finished so far (tests check that concurrent jobs share them).
    #[cfg(test)]
    pub(super) fn batches(&self) -> u64 {
        self.batches.load(Ordering::Relaxed)
    }

    /// Queues `message` if there is room, else refuses it ([`StoreError::Busy`]).
    fn try_send(&self, message: Message) -> Result<()> {
        let jobs = self.jobs.lock().map_err(|_| stopped())?;
        match jobs.as_ref().ok_or_else(stopped)?.try_send(message) {
            Ok(()) => Ok(()),
            Err(mpsc::error::TrySendError::Full(_)) => Err(StoreError::Busy {
                retry_after_seconds: RETRY_AFTER_SECONDS,
            }),
            Err(mpsc::error::TrySendError::Closed(_)) => Err(stopped()),
        }
    }

    /// A handle to queue messages that wait for room (not held across the wait: the lock is
    /// a std mutex).
    fn sender(&self) -> Result<mpsc::Sender<Message>> {
        let jobs = self.jobs.lock().map_err(|_| stopped())?;
        jobs.clone().ok_or_else(stopped)
    }
}

fn stopped() -> StoreError {
    StoreError::Unavailable("the key writer has stopped".into())
}

/// The thread: waits for a job, takes every other job already waiting, commits them as one
/// batch; until told to stop or every handle is gone.
fn run(
    mut conn: Connection,
    sealer: &KeySealer,
    mut jobs: mpsc::Receiver<Message>,
    batches: &AtomicU64,
) {
    // A thread of its own, outside the runtime: blocking here blocks no task.
    while let Some(first) = jobs.blocking_recv() {
        let mut batch = Vec::new();
        let mut audits = Vec::new();
        let mut stop = None;
        let mut next = Some(first);
        while let Some(message) = next.take() {
            match message {
                Message::Job(job) => batch.push(*job),
                Message::Audit(job) => audits.push(job),
                Message::Stop(done) => {
                    stop = Some(done);
                    break;
                }
            }
            if batch.len() + audits.len() < MAX_JOBS_PER_BATCH {
                next = jobs.try_recv().ok();
            }
        }
        if !batch.is_empty() {
            commit_batch(&mut conn, sealer, batch);
            batches.fetch_add(1, Ordering::Relaxed);
        }
        if !audits.is_empty() {
            commit_audit(&mut conn, audits);
        }
        if let Some(done) = stop {
            drop(conn);
            let _ = done.send(());
            return;
        }
    }
}

/// Answers a batch of jobs: reads what they refer to in one deferred (read) transaction,
/// plans every job against it plus what the jobs before it will insert ([`PendingWrites`]),
/// and when nothing is missing answers from that alone, without taking SQLite's write lock
/// (re-requests of stored keys go on while another process writes). When keys are missing
/// it takes the write lock (`BEGIN IMMEDIATE`); if another connection committed since the
/// read (`PRAGMA data_version` moved: the audit trail, an import, another process), it plans
/// again against that authoritative view, else the plan stands. It then inserts every new row
/// of the batch and the `key.created` events of the jobs that created keys, commits once, and
/// only then answers every job: a key and its event are durable before anyone sees it.
///
/// A job whose requests conflict with stored keys fails alone (its planned rows are dropped
/// before anything is written), and so does a job holding a value no column can take
/// ([`storable`]). Once every job is planned the inserts cannot conflict (the batch holds
/// the write lock and planned against it), so an insert that fails anyway fails the whole
/// batch, which is rolled back: when the database is unavailable (I/O, disk full, busy)
/// every job gets that answer; any other failure is one job's doing, so the jobs are
/// committed again one by one and only the job that fails alone gets an error. A batch
/// mixes tenants: one tenant's bad request must not cost the others theirs.
fn commit_batch(conn: &mut Connection, sealer: &KeySealer, jobs: Vec<WriteJob>) {
    let mut batch = Vec::with_capacity(jobs.len());
    for job in jobs {
        match storable(&job) {
            Ok(()) => batch.push(job),
            Err(e) => {
                let _ = job.reply.send(Err(e));
            }
        }
    }
    if batch.is_empty() {
        return;
    }
    let started = std::time::Instant::now();
    let mut read = || -> Result<(BatchPlan, i64)> {
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Deferred)
            .map_err(|e| sqlite_error("cannot start a read transaction", &e))?;
        let plan = plan_batch(&tx, sealer, &batch)?;
        let version = data_version(&tx)?;
        tx.commit()
            .map_err(|e| sqlite_error("cannot end a read transaction", &e))?;
        Ok((plan, version))
    };
    let outcome = read().and_then(|(plan, read_version)| {
        if plan.pending.rows.is_empty() {
            return Ok(plan);
        }
        let tx = conn
            .transaction_with_behavior(TransactionBehavior::Immediate)
            .map_err(|e| sqlite_error("cannot start a write transaction", &e))?;
        let plan = if data_version(&tx)? == read_version {
            plan
        } else {
            plan_batch(&tx, sealer, &batch)?
        };
        insert_planned(&tx, sealer, &plan.pending, &plan.events)?;
        // Dropping the transaction on an error above rolled it back: nothing is stored.
        tx.commit()
            .map_err(|e| sqlite_error("cannot commit new keys", &e))?;
        Ok(plan)
    });
    match outcome {
        Ok(plan) => {
            tracing::debug!(
                jobs = batch.len(),
                new_keys = plan.pending.rows.len(),
                elapsed_us = started.elapsed().as_micros() as u64,
                "write batch"
            );
            for row in &plan.pending.rows {
                tracing::debug!(kid = %row.key.kid, content_id = %row.key.content_id, slotted = row.slot.is_some(), "created content key");
            }
            for (job, outcome) in batch.into_iter().zip(plan.outcomes) {
                let _ = job.reply.send(outcome);
            }
        }
        Err(e) if batch.len() > 1 && !matches!(e, StoreError::Unavailable(_)) => {
            tracing::warn!(jobs = batch.len(), error = %e, "write batch failed; committing its jobs one by one");
            for job in batch {
                commit_batch(conn, sealer, vec![job]);
            }
        }
        Err(e) => {
            tracing::warn!(jobs = batch.len(), error = %e, "write batch failed");
            if batch.len() == 1 {
                // A job alone gets the store's own error (a 500 stays a 500).
                if let Some(job) = batch.into_iter().next() {
                    let _ = job.reply.send(Err(e));
                }
                return;
            }
            let message = e.to_string();
            for job in batch {
                let _ = job
                    .reply
                    .send(Err(StoreError::Unavailable(message.clone())));
            }
        }
    }
}

/// Whether every value of `job` that becomes a column fits it (a key period index within
/// the signed 64-bit range, the audit event's time in milliseconds), checked before the
/// job joins a batch so that it fails alone. The routes refuse such values already
/// (`KeyPeriod::from_index`); this is the store's own line.
fn storable(job: &WriteJob) -> Result<()> {
    for request in &job.requests {
        match request {
            KeyRequest::ByKid { period, .. } => {
                period_column(*period)?;
            }
            KeyRequest::BySlot { slot, .. } => {
                slot_period_column(slot.period)?;
            }
        }
    }
    if let Some(event) = &job.audit {
        unix_ms(event.at)?;
    }
    Ok(())
}

/// Appends the events of every audit job in one transaction (in the order the jobs came),
/// then answers them all.
fn commit_audit(conn: &mut Connection, jobs: Vec<AuditJob>) {
    let outcome = conn
        .transaction_with_behavior(TransactionBehavior::Immediate)
        .map_err(|e| sqlite_error("cannot start a write transaction", &e))
        .and_then(|tx| {
            for job in &jobs {
                insert_events(&tx, &job.events)?;
            }
            tx.commit()
                .map_err(|e| sqlite_error("cannot commit audit events", &e))
        });
    let failed = outcome.err().map(|e| {
        tracing::warn!(jobs = jobs.len(), error = %e, "audit append failed");
        e.to_string()
    });
    for job in jobs {
        let answer = match &failed {
            None => Ok(()),
            Some(message) => Err(StoreError::Unavailable(message.clone())),
        };
        let _ = job.reply.send(answer);
    }
}

/// Rows per multi-row audit `INSERT`, largest first: a batch is inserted in chunks of these
/// sizes (its binary decomposition), so at most one statement of each size runs per batch.
/// SQLite's per-statement work (the VDBE's set-up and halt, and `AUTOINCREMENT`'s
/// `sqlite_sequence` read and update) is paid once per chunk instead of once per event: with
/// one single-row statement per event it was a quarter of the row's cost.
const AUDIT_CHUNKS: [usize; 6] = [32, 16, 8, 4, 2, 1];
/// Values of one audit row.
const AUDIT_COLUMNS: usize = 10;

/// Inserts `events` (inside the caller's transaction) with prepared multi-row statements
/// ([`AUDIT_CHUNKS`]) bound to the events' own strings: no SQL built per batch, no copies of
/// the values.
fn insert_events(conn: &Connection, events: &[AuditEvent]) -> Result<()> {
    static SQL: std::sync::OnceLock<[String; AUDIT_CHUNKS.len()]> = std::sync::OnceLock::new();
    let sql = SQL.get_or_init(|| {
        AUDIT_CHUNKS.map(|rows| {
            format!(
                "INSERT INTO audit_events (at_ms, tenant, action, interface, credential, client, \
                 content_id, key_ids, outcome, detail) VALUES {}",
                placeholders(rows, &format!("({})", placeholders(AUDIT_COLUMNS, "?")))
            )
        })
    });
    let fail = |e: rusqlite::Error| sqlite_error("cannot append audit events", &e);
    let mut rest = events;
    for (rows, sql) in AUDIT_CHUNKS.iter().zip(sql) {
        while rest.len() >= *rows {
            let (chunk, after) = rest.split_at(*rows);
            rest = after;
            let mut statement = conn.prepare_cached(sql).map_err(fail)?;
            for (row, event) in chunk.iter().enumerate() {
                let at_ms = unix_ms(event.at)?;
                let content_id = event.content_id.as_ref().map(ContentId::as_str);
                let key_ids = key_ids_column(&event.key_ids);
                // In the order of the statement's columns.
                let values: [&dyn rusqlite::ToSql; AUDIT_COLUMNS] = [
                    &at_ms,
                    &event.tenant,
                    &event.action.as_str(),
                    &event.interface,
                    &event.credential,
                    &event.client,
                    &content_id,
                    &key_ids,
                    &event.outcome,
                    &event.detail,
                ];
                for (column, value) in values.into_iter().enumerate() {
                    // Parameters are numbered from 1.
                    let parameter = row * AUDIT_COLUMNS + column + 1;
                    statement
                        .raw_bind_parameter(parameter, value)
                        .map_err(fail)?;
                }
            }
            statement.raw_execute().map_err(fail)?;
        }
    }
    Ok(())
}

/// Every job's answer against what `conn` holds ([`prefetch`]) and what the jobs before it
/// planned, with the rows to insert and the `key.created` events to record.
fn plan_batch(conn: &Connection, sealer: &KeySealer, batch: &[WriteJob]) -> Result<BatchPlan> {
    let mut pending = PendingWrites {
        stored: prefetch(conn, sealer, batch)?,
        ..PendingWrites::default()
    };
    let mut outcomes = Vec::with_capacity(batch.len());
    let mut events = Vec::new();
    for job in batch {
        let outcome = plan_job(&mut pending, job);
        if let (Ok(ensured), Some(template)) = (&outcome, &job.audit) {
            events.extend(rules::created_event(template, ensured));
        }
        outcomes.push(outcome);
    }
    Ok(BatchPlan {
        pending,
        outcomes,
        events,
    })
}

/// `PRAGMA data_version`: changes when another connection commits to the database.
fn data_version(conn: &Connection) -> Result<i64> {
    conn.query_row("PRAGMA data_version", [], |row| row.get(0))
        .map_err(|e| sqlite_error("cannot read the data version", &e))
}

/// `?, ?, …` with `n` placeholders.
fn placeholders(n: usize, each: &str) -> String {
    vec![each; n].join(", ")
}

/// One multi-row `INSERT INTO table (columns) VALUES (…), (…)` of `values` (a whole number
/// of rows, `columns.len()` values each).
fn insert_rows(
    conn: &Connection,
    table: &str,
    columns: &[&str],
    values: Vec<Value>,
    what: &str,
) -> Result<()> {
    let row = format!("({})", placeholders(columns.len(), "?"));
    let sql = format!(
        "INSERT INTO {table} ({}) VALUES {}",
        columns.join(", "),
        placeholders(values.len() / columns.len(), &row)
    );
    conn.prepare_cached(&sql)
        .and_then(|mut statement| statement.execute(rusqlite::params_from_iter(values)))
        .map(|_| ())
        .map_err(|e| sqlite_error(what, &e))
}

/// Everything the batch's requests can refer to that is stored already: the keys of every
/// kid they name and the kids bound to every slot they name (with those kids' keys), read
/// with a few `IN (…)` statements. Inside the write transaction, what is not found here does
/// not exist: planning needs no further reads.
fn prefetch(conn: &Connection, sealer: &KeySealer, batch: &[WriteJob]) -> Result<Stored> {
    let mut wanted: BTreeMap<&TenantId, (Vec<KeyId>, Vec<&KeySlot>)> = BTreeMap::new();
    for job in batch {
        let (kids, slots) = wanted.entry(&job.tenant).or_default();
        for request in &job.requests {
            match request {
                KeyRequest::ByKid { candidate, .. } => kids.push(candidate.kid),
                KeyRequest::BySlot {
                    slot, candidate, ..
                } => {
                    kids.push(candidate.kid);
                    slots.push(slot);
                }
            }
        }
    }
    let read_error = |e: rusqlite::Error| sqlite_error("cannot read keys", &e);
    let mut stored = Stored::default();
    for (tenant, (mut kids, slots)) in wanted {
        for chunk in slots.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "SELECT content_id, track_type, period, kid FROM key_slots WHERE tenant = ? \
                 AND (content_id, track_type, period) IN (VALUES {})",
                placeholders(chunk.len(), "(?, ?, ?)")
            );
            let mut params = vec![Value::Text(tenant.as_str().to_owned())];
            for slot in chunk {
                params.push(Value::Text(slot.content_id.as_str().to_owned()));
                params.push(Value::Text(slot.track_type.as_str().to_owned()));
                params.push(Value::Integer(slot_period_column(slot.period)?));
            }
            let mut statement = conn.prepare_cached(&sql).map_err(read_error)?;
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .map_err(read_error)?;
            while let Some(row) = rows.next().map_err(read_error)? {
                let content_id: String = row.get(0).map_err(read_error)?;
                let track_type: String = row.get(1).map_err(read_error)?;
                let period: i64 = row.get(2).map_err(read_error)?;
                let kid_bytes: Vec<u8> = row.get(3).map_err(read_error)?;
                let kid = KeyId::from_slice(&kid_bytes).map_err(|e| StoreError::Corrupt {
                    kid: hex_of(&kid_bytes),
                    reason: e.to_string(),
                })?;
                // The slot as the request spelled it (the row matched its columns).
                if let Some(slot) = chunk.iter().find(|s| {
                    s.content_id.as_str() == content_id
                        && s.track_type.as_str() == track_type
                        && slot_period_column(s.period).ok() == Some(period)
                }) {
                    stored.slots.insert((tenant.clone(), (*slot).clone()), kid);
                }
                kids.push(kid);
            }
        }
        kids.sort_unstable();
        kids.dedup();
        for chunk in kids.chunks(ROWS_PER_INSERT) {
            let sql = format!(
                "SELECT kid, content_id, sealed_key, iv, track_type, period, origin, master_key_id \
                 FROM content_keys WHERE tenant = ? AND kid IN ({})",
                placeholders(chunk.len(), "?")
            );
            let mut params = vec![Value::Text(tenant.as_str().to_owned())];
            params.extend(chunk.iter().map(|kid| Value::Blob(kid.as_bytes().to_vec())));
            let mut statement = conn.prepare_cached(&sql).map_err(read_error)?;
            let mut rows = statement
                .query(rusqlite::params_from_iter(params))
                .map_err(read_error)?;
            while let Some(row) = rows.next().map_err(read_error)? {
                let kid_bytes: Vec<u8> = row.get(0).map_err(read_error)?;
                let kid = KeyId::from_slice(&kid_bytes).map_err(|e| StoreError::Corrupt {
                    kid: hex_of(&kid_bytes),
                    reason: e.to_string(),
                })?;
                let key_row = KeyRow {
                    content_id: row.get(1).map_err(read_error)?,
                    sealed_key: row.get(2).map_err(read_error)?,
                    iv: row.get(3).map_err(read_error)?,
                    track_type: row.get(4).map_err(read_error)?,
                    period: row.get(5).map_err(read_error)?,
                    origin: row.get(6).map_err(read_error)?,
                    master_key_id: row.get(7).map_err(read_error)?,
                };
                // A row that does not open is that job's answer (corrupt), not the batch's.
                match key_row.decode(sealer, tenant, kid) {
                    Ok(key) => {
                        stored.keys.insert((tenant.clone(), kid), key);
                    }
                    Err(StoreError::Corrupt { kid: k, reason }) => {
                        stored.corrupt.insert((tenant.clone(), kid), (k, reason));
                    }
                    Err(e) => return Err(e),
                }
            }
        }
    }
    Ok(stored)
}

/// Writes the batch's planned rows (one statement per table per [`ROWS_PER_INSERT`] rows)
/// and its `key.created` events.
fn insert_planned(
    conn: &Connection,
    sealer: &KeySealer,
    pending: &PendingWrites,
    events: &[AuditEvent],
) -> Result<()> {
    let created_at = time::OffsetDateTime::now_utc().unix_timestamp();
    for chunk in pending.rows.chunks(ROWS_PER_INSERT) {
        let mut params = Vec::with_capacity(chunk.len() * 10);
        for row in chunk {
            let sealed =
                sealer.seal(&row.tenant, &row.key.kid, &row.key.content_id, &row.key.key)?;
            params.extend([
                Value::Text(row.tenant.as_str().to_owned()),
                Value::Blob(row.key.kid.as_bytes().to_vec()),
                Value::Text(row.key.content_id.as_str().to_owned()),
                Value::Blob(sealed.bytes),
                Value::Blob(row.key.iv.as_bytes().to_vec()),
                row.key
                    .track_type
                    .as_ref()
                    .map_or(Value::Null, |t| Value::Text(t.as_str().to_owned())),
                period_column(row.key.period)?.map_or(Value::Null, Value::Integer),
                Value::Text(origin_column(row.key.origin).to_owned()),
                Value::Text(sealed.sealed_by),
                Value::Integer(created_at),
            ]);
        }
        insert_rows(
            conn,
            "content_keys",
            &KEY_COLUMNS,
            params,
            "cannot store new keys",
        )?;
        let mut slotted = Vec::new();
        for row in chunk {
            if let Some(slot) = &row.slot {
                slotted.extend([
                    Value::Text(row.tenant.as_str().to_owned()),
                    Value::Text(slot.content_id.as_str().to_owned()),
                    Value::Text(slot.track_type.as_str().to_owned()),
                    Value::Integer(slot_period_column(slot.period)?),
                    Value::Blob(row.key.kid.as_bytes().to_vec()),
                ]);
            }
        }
        if !slotted.is_empty() {
            insert_rows(
                conn,
                "key_slots",
                &SLOT_COLUMNS,
                slotted,
                "cannot bind new keys to their slots",
            )?;
        }
    }
    insert_events(conn, events)
}

/// The columns [`insert_planned`] fills, in the order of its values.
const KEY_COLUMNS: [&str; 10] = [
    "tenant",
    "kid",
    "content_id",
    "sealed_key",
    "iv",
    "track_type",
    "period",
    "origin",
    "master_key_id",
    "created_at",
];
const SLOT_COLUMNS: [&str; 5] = ["tenant", "content_id", "track_type", "period", "kid"];

/// A rusqlite error as the store reports it: "not now" (busy, locked, I/O, disk full…) is
/// `Unavailable`, anything else `Internal`. The same classes as the sqlx side's `db_error`.
fn sqlite_error(context: &str, error: &rusqlite::Error) -> StoreError {
    use rusqlite::ErrorCode;
    let unavailable = matches!(
        error.sqlite_error_code(),
        Some(
            ErrorCode::DatabaseBusy
                | ErrorCode::DatabaseLocked
                | ErrorCode::OutOfMemory
                | ErrorCode::ReadOnly
                | ErrorCode::SystemIoFailure
                | ErrorCode::DiskFull
                | ErrorCode::CannotOpen
        )
    );
    if unavailable {
        StoreError::Unavailable(format!("{context}: {error}"))
    } else {
        StoreError::Internal(format!("{context}: {error}"))
    }
}

/// One `ensure_keys` batch waiting to be committed.
struct WriteJob {
    tenant: TenantId,
    requests: Vec<KeyRequest>,
    /// The `key.created` event to record if this batch creates keys.
    audit: Option<AuditEvent>,
    reply: tokio::sync::oneshot::Sender<Result<Vec<EnsuredKey>>>,
}

/// Audit events to append, and where their caller waits.
struct AuditJob {
    events: Arc<[AuditEvent]>,
    reply: tokio::sync::oneshot::Sender<Result<()>>,
}

/// Rows per multi-row statement of the writer (an `INSERT` of keys or slots, an `IN` list): at most 10 bound values each, well under SQLite's limit of 32,766 per statement.
const ROWS_PER_INSERT: usize = 500;

/// A key the current write batch will insert.
struct PlannedRow {
    tenant: TenantId,
    key: ContentKey,
    slot: Option<KeySlot>,
}

/// A batch's answers, the rows they need inserted and the events to record with them.
struct BatchPlan {
    pending: PendingWrites,
    outcomes: Vec<Result<Vec<EnsuredKey>>>,
    events: Vec<AuditEvent>,
}

/// What a write batch found stored ([`prefetch`]).
#[derive(Default)]
struct Stored {
    keys: std::collections::HashMap<(TenantId, KeyId), ContentKey>,
    /// Rows that do not open (tampered, or sealed by an unknown master key): why.
    corrupt: std::collections::HashMap<(TenantId, KeyId), (String, String)>,
    slots: std::collections::HashMap<(TenantId, KeySlot), KeyId>,
}

/// What a write batch sees: the rows it found stored and those it has planned so far,
/// indexed so that later requests of the batch resolve to them.
#[derive(Default)]
struct PendingWrites {
    stored: Stored,
    rows: Vec<PlannedRow>,
    by_kid: std::collections::HashMap<(TenantId, KeyId), usize>,
    by_slot: std::collections::HashMap<(TenantId, KeySlot), KeyId>,
}

impl PendingWrites {
    fn add(&mut self, tenant: &TenantId, key: ContentKey, slot: Option<KeySlot>) {
        self.by_kid
            .insert((tenant.clone(), key.kid), self.rows.len());
        if let Some(slot) = &slot {
            self.by_slot.insert((tenant.clone(), slot.clone()), key.kid);
        }
        self.rows.push(PlannedRow {
            tenant: tenant.clone(),
            key,
            slot,
        });
    }

    fn key(&self, tenant: &TenantId, kid: &KeyId) -> Result<Option<&ContentKey>> {
        let id = (tenant.clone(), *kid);
        if let Some(key) = self.stored.keys.get(&id) {
            return Ok(Some(key));
        }
        if let Some((kid, reason)) = self.stored.corrupt.get(&id) {
            return Err(StoreError::Corrupt {
                kid: kid.clone(),
                reason: reason.clone(),
            });
        }
        Ok(self
            .by_kid
            .get(&id)
            .and_then(|index| self.rows.get(*index))
            .map(|row| &row.key))
    }

    fn slot(&self, tenant: &TenantId, slot: &KeySlot) -> Option<KeyId> {
        let id = (tenant.clone(), slot.clone());
        self.stored
            .slots
            .get(&id)
            .or_else(|| self.by_slot.get(&id))
            .copied()
    }

    /// Takes back every row planned after the first `len`.
    fn truncate(&mut self, len: usize) {
        for row in self.rows.drain(len..) {
            self.by_kid.remove(&(row.tenant.clone(), row.key.kid));
            if let Some(slot) = row.slot {
                self.by_slot.remove(&(row.tenant, slot));
            }
        }
    }
}

/// One job's answer, planning the rows it needs into `pending` (nothing is written here).
/// On a conflict the job's planned rows are taken back out.
fn plan_job(pending: &mut PendingWrites, job: &WriteJob) -> Result<Vec<EnsuredKey>> {
    let mark = pending.rows.len();
    let mut resolved = Vec::with_capacity(job.requests.len());
    for request in &job.requests {
        match resolve_planned(pending, &job.tenant, request) {
            Ok(Some(stored)) => resolved.push(EnsuredKey {
                key: stored,
                created: false,
            }),
            Ok(None) => {
                let (key, slot) = rules::new_key(request);
                let slot = slot.cloned();
                pending.add(&job.tenant, key.clone(), slot);
                resolved.push(EnsuredKey { key, created: true });
            }
            Err(e) => {
                pending.truncate(mark);
                return Err(e);
            }
        }
    }
    Ok(resolved)
}

/// How a stored key answers a request, against what the batch prefetched plus the rows it has planned so far,
/// so that two jobs (or two requests of one) for the same kid or slot get one key.
fn resolve_planned(
    pending: &PendingWrites,
    tenant: &TenantId,
    request: &KeyRequest,
) -> Result<Option<ContentKey>> {
    match request {
        KeyRequest::ByKid { candidate, .. } => {
            let Some(stored) = pending.key(tenant, &candidate.kid)? else {
                return Ok(None);
            };
            rules::check_stored(request, stored)?;
            Ok(Some(stored.clone()))
        }
        KeyRequest::BySlot {
            slot, candidate, ..
        } => {
            let Some(slot_kid) = pending.slot(tenant, slot) else {
                if pending.key(tenant, &candidate.kid)?.is_some() {
                    return Err(rules::kid_in_use(slot, candidate.kid));
                }
                return Ok(None);
            };
            let stored = pending
                .key(tenant, &slot_kid)?
                .ok_or_else(|| StoreError::Corrupt {
                    kid: slot_kid.to_string(),
                    reason: "bound to a key slot but missing from the key table".to_owned(),
                })?;
            rules::check_stored(request, stored)?;
            Ok(Some(stored.clone()))
        }
    }
}
