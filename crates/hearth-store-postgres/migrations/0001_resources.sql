-- Same logical schema as the SQLite backend (see hearth-store-sqlite/migrations).
-- Plain PostgreSQL types only (no extensions), so the schema also suits PostgreSQL-compatible
-- distributed engines; see docs/POSTGRES.md.
CREATE TABLE resource_versions (
    seq          BIGINT GENERATED ALWAYS AS IDENTITY PRIMARY KEY,
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    last_updated BIGINT  NOT NULL, -- milliseconds since the Unix epoch, UTC
    method       TEXT    NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE')),
    body         TEXT,             -- NULL marks a deletion
    UNIQUE (res_type, res_id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (res_type, seq);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);

CREATE TABLE resources (
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      BIGINT  NOT NULL,
    seq          BIGINT  NOT NULL REFERENCES resource_versions (seq),
    deleted      BOOLEAN NOT NULL,
    last_updated BIGINT  NOT NULL,
    PRIMARY KEY (res_type, res_id)
);

CREATE TABLE token_index (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    system   TEXT,
    code     TEXT NOT NULL
);
CREATE INDEX token_index_lookup ON token_index (res_type, param, code, system);
CREATE INDEX token_index_system ON token_index (res_type, param, system);
CREATE INDEX token_index_owner ON token_index (res_type, res_id);
