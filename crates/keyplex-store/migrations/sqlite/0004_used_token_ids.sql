-- Entitlement token ids (`jti`) already presented, for tenants with single-use tokens: kept
-- until the token has expired (a replay after that fails on `exp` anyway), shared by every
-- process on the store.
CREATE TABLE used_token_ids (
    tenant     TEXT    NOT NULL,
    jti        TEXT    NOT NULL,
    -- Unix seconds after which the id may be forgotten.
    expires_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, jti)
);

CREATE INDEX used_token_ids_by_expiry ON used_token_ids (expires_at);
