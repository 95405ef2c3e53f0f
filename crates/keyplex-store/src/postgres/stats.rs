//! The PostgreSQL side of the dashboard's time series: every node adds to the same rows.

use async_trait::async_trait;
use sqlx::PgConnection;

use super::{
    PostgresStore, TRANSACTION_ATTEMPTS, TxError, TxResult, classify, db_error, retry_pause,
};
use crate::columns::{StatsRow, count_column, unix_column};
use crate::{Result, Stats, StatsCount, StoreError};

/// Dashboard rows per INSERT statement (6 parameters each).
const STATS_ROWS_PER_STATEMENT: usize = 500;

#[async_trait]
impl Stats for PostgresStore {
    async fn add_stats(&self, counts: &[StatsCount]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        // Rows in one order on every node, so that concurrent additions lock them in the same
        // order.
        let mut sorted: Vec<&StatsCount> = counts.iter().collect();
        sorted.sort();
        // One row per key: `ON CONFLICT DO UPDATE` refuses a statement that names a row twice,
        // and a batch may (a node counts per worker thread). Sorted, duplicates are adjacent.
        let mut merged: Vec<(&StatsCount, u64)> = Vec::with_capacity(sorted.len());
        for c in sorted {
            match merged.last_mut() {
                Some((last, n)) if same_row(last, c) => *n = n.saturating_add(c.count),
                _ => merged.push((c, c.count)),
            }
        }
        let mut rows = Vec::with_capacity(merged.len());
        for (c, n) in merged {
            rows.push((unix_column(c.bucket_start)?, count_column(n)?, c));
        }
        in_transaction!(self, "dashboard counts", |conn| {
            for chunk in rows.chunks(STATS_ROWS_PER_STATEMENT) {
                let mut query = sqlx::QueryBuilder::new(
                    "INSERT INTO stats_counts (tenant, bucket_start, measure, name, slot, count) ",
                );
                query.push_values(chunk, |mut row, (bucket, count, c)| {
                    row.push_bind(c.tenant.clone())
                        .push_bind(*bucket)
                        .push_bind(c.measure.clone())
                        .push_bind(c.name.clone())
                        .push_bind(c.slot)
                        .push_bind(*count);
                });
                query.push(
                    " ON CONFLICT (tenant, bucket_start, measure, name, slot) \
                     DO UPDATE SET count = stats_counts.count + excluded.count",
                );
                query
                    .build()
                    .execute(&mut *conn)
                    .await
                    .map_err(|e| classify("cannot add dashboard counts", e))?;
            }
            Ok(())
        })
    }

    async fn read_stats(
        &self,
        tenant: Option<&str>,
        from: u64,
        until: u64,
    ) -> Result<Vec<StatsCount>> {
        let rows: Vec<StatsRow> = sqlx::query_as(
            "SELECT tenant, bucket_start, measure, name, slot, count FROM stats_counts \
             WHERE ($1::text IS NULL OR tenant = $1::text) AND bucket_start >= $2 AND bucket_start < $3",
        )
        .bind(tenant)
        .bind(unix_column(from)?)
        .bind(unix_column(until)?)
        .fetch_all(&self.pool)
        .await
        .map_err(|e| db_error("cannot read dashboard counts", e))?;
        rows.into_iter().map(StatsRow::decode).collect()
    }

    async fn purge_stats(&self, before: u64) -> Result<u64> {
        Ok(
            sqlx::query("DELETE FROM stats_counts WHERE bucket_start < $1")
                .bind(unix_column(before)?)
                .execute(&self.pool)
                .await
                .map_err(|e| db_error("cannot purge dashboard counts", e))?
                .rows_affected(),
        )
    }
}

/// The same `stats_counts` row (its primary key), whatever the counts.
fn same_row(a: &StatsCount, b: &StatsCount) -> bool {
    a.tenant == b.tenant
        && a.bucket_start == b.bucket_start
        && a.measure == b.measure
        && a.name == b.name
        && a.slot == b.slot
}
