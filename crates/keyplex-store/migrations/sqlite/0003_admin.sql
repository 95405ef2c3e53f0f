-- What the admin API manages. Tenants of the configuration file get a row only when the API
-- changes them (settings NULL: the file has their settings).
CREATE TABLE tenants (
    id         TEXT    PRIMARY KEY,
    settings   TEXT,
    disabled   INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),
    created_at INTEGER NOT NULL
);

-- Credentials added through the admin API. The JSON spec (with its secrets) is sealed under
-- the master key like content keys; `label` is the public part.
CREATE TABLE credentials (
    id            TEXT    PRIMARY KEY,
    tenant        TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    sealed_spec   BLOB    NOT NULL,
    master_key_id TEXT    NOT NULL,
    created_at    INTEGER NOT NULL
);

CREATE INDEX credentials_by_tenant ON credentials (tenant);

-- Bumped by every change to tenants or credentials: nodes poll it to reload.
CREATE TABLE registry_version (
    singleton INTEGER PRIMARY KEY CHECK (singleton = 1),
    version   INTEGER NOT NULL
);
INSERT INTO registry_version (singleton, version) VALUES (1, 0);

-- The audit trail: append-only. `at_ms` is Unix milliseconds; `key_ids` space-separated UUIDs.
CREATE TABLE audit_events (
    id         INTEGER PRIMARY KEY AUTOINCREMENT,
    at_ms      INTEGER NOT NULL,
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
