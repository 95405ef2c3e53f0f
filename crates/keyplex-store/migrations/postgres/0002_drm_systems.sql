-- DRM systems a tenant defined through the admin API; see migrations/sqlite/0006_drm_systems.sql.
CREATE TABLE drm_systems (
    tenant     TEXT   NOT NULL,
    name       TEXT   NOT NULL,
    spec       TEXT   NOT NULL,
    created_at BIGINT NOT NULL,
    updated_at BIGINT NOT NULL,
    PRIMARY KEY (tenant, name)
);
