-- Content keys, one row per (tenant, key id), never updated or deleted.
-- The key bytes are stored only sealed (AES-256-GCM under the master key, bound to tenant,
-- key id and content id); `master_key_id` is the fingerprint of the master key that sealed them.
CREATE TABLE content_keys (
    tenant        TEXT    NOT NULL,
    kid           BLOB    NOT NULL CHECK (length(kid) = 16),
    content_id    TEXT    NOT NULL,
    sealed_key    BLOB    NOT NULL,
    iv            BLOB    NOT NULL CHECK (length(iv) = 16),
    track_type    TEXT,
    -- Key period index; NULL for VOD.
    period        INTEGER CHECK (period IS NULL OR period >= 0),
    origin        TEXT    NOT NULL CHECK (origin IN ('generated', 'supplied')),
    master_key_id TEXT    NOT NULL,
    -- Unix seconds.
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (tenant, kid)
);

CREATE INDEX content_keys_by_content ON content_keys (tenant, content_id, created_at);

-- Keys whose id keyplex chose: the slot (content, track type, period) is their identity.
-- Every column is NOT NULL because SQLite treats NULLs as distinct in unique indexes: VOD is
-- stored as period -1.
CREATE TABLE key_slots (
    tenant     TEXT    NOT NULL,
    content_id TEXT    NOT NULL,
    track_type TEXT    NOT NULL,
    period     INTEGER NOT NULL CHECK (period >= -1),
    kid        BLOB    NOT NULL,
    PRIMARY KEY (tenant, content_id, track_type, period),
    UNIQUE (tenant, kid),
    FOREIGN KEY (tenant, kid) REFERENCES content_keys (tenant, kid)
);
