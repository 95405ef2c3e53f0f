-- DRM systems a tenant defined through the admin API (Irdeto, Conax, …): the definition as
-- JSON text (no secrets; opaque to the store), one per (tenant, name). Changes bump the
-- registry version, so that every node rebuilds its tenants.
CREATE TABLE drm_systems (
    tenant     TEXT    NOT NULL,
    name       TEXT    NOT NULL,
    spec       TEXT    NOT NULL,
    created_at INTEGER NOT NULL,
    updated_at INTEGER NOT NULL,
    PRIMARY KEY (tenant, name)
);
