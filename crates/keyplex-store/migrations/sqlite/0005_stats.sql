-- The dashboard's time series: counts per (tenant, 10-second bucket, measure, name), added to
-- by every node (upserts that add), so that the dashboard shows the whole service however
-- many nodes serve it. `slot` is -1 for plain counts, or the latency histogram bucket for
-- measure `latency`. Rows older than a day are deleted hourly.
CREATE TABLE stats_counts (
    tenant       TEXT    NOT NULL,
    bucket_start INTEGER NOT NULL,
    measure      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    slot         INTEGER NOT NULL,
    count        INTEGER NOT NULL,
    PRIMARY KEY (tenant, bucket_start, measure, name, slot)
);

CREATE INDEX stats_counts_by_time ON stats_counts (bucket_start);
