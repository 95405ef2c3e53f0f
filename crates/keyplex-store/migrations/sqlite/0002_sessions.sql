-- Secure sessions of players (SSM): one row per open session. A session is live while
-- `expires_at` (Unix seconds) is in the future; each heartbeat or licence moves it on.
-- Teardown deletes the row; expired rows are deleted lazily when a session is opened.
-- `entitlement` is the verified entitlement at setup (user, contents, policy) as JSON text;
-- `key_systems` the DRM systems (canonical names, space separated) a licence was issued for.
CREATE TABLE sessions (
    tenant            TEXT    NOT NULL,
    session_id        TEXT    NOT NULL,
    user_id           TEXT    NOT NULL,
    entitlement       TEXT    NOT NULL,
    heartbeat_seconds INTEGER NOT NULL CHECK (heartbeat_seconds > 0),
    key_systems       TEXT    NOT NULL DEFAULT '',
    created_at        INTEGER NOT NULL,
    expires_at        INTEGER NOT NULL,
    PRIMARY KEY (tenant, session_id)
);

CREATE INDEX sessions_by_user ON sessions (tenant, user_id, expires_at);
