//! The SQLite side of the dashboard's time series.

use async_trait::async_trait;

use super::{SqliteStore, db_error};
use crate::columns::{StatsRow, count_column, unix_column};
use crate::{Result, Stats, StatsCount};

/// Dashboard rows per INSERT statement (6 parameters each).
const STATS_ROWS_PER_STATEMENT: usize = 500;

#[async_trait]
impl Stats for SqliteStore {
    async fn add_stats(&self, counts: &[StatsCount]) -> Result<()> {
        if counts.is_empty() {
            return Ok(());
        }
        let mut rows = Vec::with_capacity(counts.len());
        for c in counts {
            rows.push((unix_column(c.bucket_start)?, count_column(c.count)?, c));
        }
        self.write("dashboard counts", async |conn| {
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
                    .map_err(|e| db_error("cannot add dashboard counts", e))?;
            }
            Ok(())
        })
        .await
    }

    async fn read_stats(
        &self,
        tenant: Option<&str>,
        from: u64,
        until: u64,
    ) -> Result<Vec<StatsCount>> {
        let rows: Vec<StatsRow> = sqlx::query_as(
            "SELECT tenant, bucket_start, measure, name, slot, count FROM stats_counts \
             WHERE (?1 IS NULL OR tenant = ?1) AND bucket_start >= ?2 AND bucket_start < ?3",
        )
        .bind(tenant)
        .bind(unix_column(from)?)
        .bind(unix_column(until)?)
        .fetch_all(&self.reader)
        .await
        .map_err(|e| db_error("cannot read dashboard counts", e))?;
        rows.into_iter().map(StatsRow::decode).collect()
    }

    async fn purge_stats(&self, before: u64) -> Result<u64> {
        let before = unix_column(before)?;
        self.write("a dashboard purge", async |conn| {
            sqlx::query("DELETE FROM stats_counts WHERE bucket_start < ?")
                .bind(before)
                .execute(&mut *conn)
                .await
                .map(|r| r.rows_affected())
                .map_err(|e| db_error("cannot purge dashboard counts", e))
        })
        .await
    }
}
