-- Licence rules stored with a content; see migrations/sqlite/0007_content_policies.sql.
CREATE TABLE content_policies (
    tenant     TEXT   NOT NULL,
    content_id TEXT   NOT NULL,
    policy     TEXT   NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, content_id)
);
