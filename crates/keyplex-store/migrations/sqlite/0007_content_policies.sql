-- Licence rules stored with a content (`PUT /admin/v1/tenants/{t}/contents/{cid}/licence-policy`):
-- the policy's JSON text, as the server validated it. A content without a row takes the
-- tenant's default policy.
CREATE TABLE content_policies (
    tenant     TEXT    NOT NULL,
    content_id TEXT    NOT NULL,
    policy     TEXT    NOT NULL,
    -- Unix milliseconds of the last change.
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, content_id)
);
