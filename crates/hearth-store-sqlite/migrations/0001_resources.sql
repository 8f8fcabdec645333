-- Every version of every resource, in write order. `seq` is the global write position used for
-- system/type history ordering and as the stable paging cursor.
CREATE TABLE resource_versions (
    seq          INTEGER PRIMARY KEY,
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    last_updated INTEGER NOT NULL, -- milliseconds since the Unix epoch, UTC
    method       TEXT    NOT NULL CHECK (method IN ('POST', 'PUT', 'DELETE')),
    body         TEXT,             -- NULL marks a deletion
    UNIQUE (res_type, res_id, version)
);
CREATE INDEX resource_versions_type_seq ON resource_versions (res_type, seq);
CREATE INDEX resource_versions_updated ON resource_versions (last_updated);

-- The current version of each resource (one row per type+id, including deleted ones so that a
-- read can answer 410 and a later update continues the version sequence).
CREATE TABLE resources (
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    seq          INTEGER NOT NULL REFERENCES resource_versions (seq),
    deleted      INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    last_updated INTEGER NOT NULL,
    PRIMARY KEY (res_type, res_id)
) WITHOUT ROWID;

-- Token search index over current, live versions only. Rows are replaced on every write.
CREATE TABLE token_index (
    res_type TEXT NOT NULL,
    res_id   TEXT NOT NULL,
    param    TEXT NOT NULL,
    system   TEXT,              -- NULL: the token has no system
    code     TEXT NOT NULL
);
CREATE INDEX token_index_lookup ON token_index (res_type, param, code, system);
CREATE INDEX token_index_system ON token_index (res_type, param, system);
CREATE INDEX token_index_owner ON token_index (res_type, res_id);
