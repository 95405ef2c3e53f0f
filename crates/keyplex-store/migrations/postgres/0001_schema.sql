-- The PostgreSQL schema: the same tables as the SQLite one (see migrations/sqlite), created in
-- one step. Several keyplex nodes share these tables; every invariant that must hold across
-- nodes is a constraint here, so the database decides, not a node.

-- Content keys, one row per (tenant, key id), never deleted; only `sealed_key` and
-- `master_key_id` change, when a master key rotation re-seals the row.
CREATE TABLE content_keys (
    tenant        TEXT    NOT NULL,
    kid           BYTEA   NOT NULL CHECK (length(kid) = 16),
    content_id    TEXT    NOT NULL,
    sealed_key    BYTEA   NOT NULL,
    iv            BYTEA   NOT NULL CHECK (length(iv) = 16),
    track_type    TEXT,
    -- Key period index; NULL for VOD.
    period        BIGINT  CHECK (period IS NULL OR period >= 0),
    origin        TEXT    NOT NULL CHECK (origin IN ('generated', 'supplied')),
    master_key_id TEXT    NOT NULL,
    -- Unix seconds.
    created_at    BIGINT  NOT NULL,
    -- Insertion order (keys created in the same second keep their order in listings).
    seq           BIGINT  GENERATED ALWAYS AS IDENTITY,
    PRIMARY KEY (tenant, kid)
);

CREATE INDEX content_keys_by_content ON content_keys (tenant, content_id, created_at, seq);
CREATE INDEX content_keys_by_master_key ON content_keys (master_key_id);

-- Keys whose id keyplex chose: the slot (content, track type, period) is their identity. VOD
-- is period -1, as in SQLite. The foreign key is checked at commit, so that a node can claim
-- the slot first (the row every racing node competes for) and store the key after it.
CREATE TABLE key_slots (
    tenant     TEXT    NOT NULL,
    content_id TEXT    NOT NULL,
    track_type TEXT    NOT NULL,
    period     BIGINT  NOT NULL CHECK (period >= -1),
    kid        BYTEA   NOT NULL,
    PRIMARY KEY (tenant, content_id, track_type, period),
    UNIQUE (tenant, kid),
    FOREIGN KEY (tenant, kid) REFERENCES content_keys (tenant, kid) DEFERRABLE INITIALLY DEFERRED
);

-- Secure sessions of players (SSM); see migrations/sqlite/0002_sessions.sql.
CREATE TABLE sessions (
    tenant            TEXT    NOT NULL,
    session_id        TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,
    entitlement       TEXT    NOT NULL,
    heartbeat_seconds BIGINT  NOT NULL CHECK (heartbeat_seconds > 0),
    key_systems       TEXT    NOT NULL DEFAULT '',
    created_at        BIGINT  NOT NULL,
    expires_at        BIGINT  NOT NULL,
    PRIMARY KEY (tenant, session_id)
);

CREATE INDEX sessions_by_user ON sessions (tenant, user_id, expires_at);
CREATE INDEX sessions_by_expiry ON sessions (expires_at);

-- Tenants and credentials of the admin API; see migrations/sqlite/0003_admin.sql.
CREATE TABLE tenants (
    id         TEXT    PRIMARY KEY,
    settings   TEXT,
    disabled   BOOLEAN NOT NULL DEFAULT FALSE,
    created_at BIGINT  NOT NULL
);

CREATE TABLE credentials (
    id            TEXT    PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    sealed_spec   BYTEA   NOT NULL,
    master_key_id TEXT    NOT NULL,
    created_at    BIGINT  NOT NULL
);

CREATE INDEX credentials_by_tenant ON credentials (tenant);

-- Bumped by every change to tenants or credentials: every node polls it to reload.
CREATE TABLE registry_version (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   BIGINT  NOT NULL
);
INSERT INTO registry_version (singleton, version) VALUES (1, 0);

-- The audit trail: append-only. `at_ms` is Unix milliseconds; `key_ids` space-separated UUIDs.
CREATE TABLE audit_events (
    id         BIGINT  GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    at_ms      BIGINT  NOT NULL,
    tenant     TEXT    NOT NULL,
    action     TEXT    NOT NULL,
    interface  TEXT    NOT NULL,
    credential TEXT    NOT NULL,
    client     TEXT    NOT NULL,
    content_id TEXT,
    key_ids    TEXT    NOT NULL,
    outcome    TEXT    NOT NULL,
    detail     TEXT
);

CREATE INDEX audit_by_content ON audit_events (tenant, content_id, at_ms);
CREATE INDEX audit_by_time ON audit_events (at_ms);

-- Entitlement token ids already presented (single-use tokens), shared by every node; see
-- migrations/sqlite/0004_used_token_ids.sql.
CREATE TABLE used_token_ids (
    tenant     TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    expires_at BIGINT  NOT NULL,
    PRIMARY KEY (tenant, jti)
);

CREATE INDEX used_token_ids_by_expiry ON used_token_ids (expires_at);

-- The dashboard's time series, added to by every node; see migrations/sqlite/0005_stats.sql.
CREATE TABLE stats_counts (
    tenant       TEXT    NOT NULL,
    bucket_start BIGINT  NOT NULL,
    measure      TEXT    NOT NULL,
    name         TEXT    NOT NULL,
    slot         INTEGER NOT NULL,
    count        BIGINT  NOT NULL,
    PRIMARY KEY (tenant, bucket_start, measure, name, slot)
);

CREATE INDEX stats_counts_by_time ON stats_counts (bucket_start);
