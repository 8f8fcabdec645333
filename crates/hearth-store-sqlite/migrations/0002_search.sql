-- Search: every resource gets an integer key (`rid`) that the index tables refer to, and one
-- index table per search value type replaces the identifier-only token_index. The index design
-- is explained in hearth-store-sql (crate docs) and docs/ARCHITECTURE.md ("Search").
-- Resources stored before this migration have no index rows until `POST /fhir/$reindex` runs.
DROP TABLE token_index;

CREATE TABLE resources_v2 (
    rid          INTEGER PRIMARY KEY,
    res_type     TEXT    NOT NULL,
    res_id       TEXT    NOT NULL,
    version      INTEGER NOT NULL,
    seq          INTEGER NOT NULL REFERENCES resource_versions (seq),
    deleted      INTEGER NOT NULL CHECK (deleted IN (0, 1)),
    last_updated INTEGER NOT NULL,
    UNIQUE (res_type, res_id)
);
INSERT INTO resources_v2 (res_type, res_id, version, seq, deleted, last_updated)
    SELECT res_type, res_id, version, seq, deleted, last_updated FROM resources ORDER BY seq;
DROP TABLE resources;
ALTER TABLE resources_v2 RENAME TO resources;
CREATE INDEX resources_type_updated ON resources (res_type, last_updated);

-- Index rows: (rid, res_type, param, grp) + typed columns; grp > 0 groups the components of one
-- composite value. Lookups go (res_type, param, value); deletes and sort keys go (rid, param).
CREATE TABLE search_string (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    norm TEXT NOT NULL, exact TEXT NOT NULL
);
CREATE INDEX search_string_value ON search_string (res_type, param, norm);
CREATE INDEX search_string_rid ON search_string (rid, param);

CREATE TABLE search_text (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    content TEXT NOT NULL
);
CREATE INDEX search_text_rid ON search_text (rid, param);
CREATE INDEX search_text_param ON search_text (res_type, param);

CREATE TABLE search_token (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    system TEXT, code TEXT, text TEXT, type_system TEXT, type_code TEXT
);
CREATE INDEX search_token_value ON search_token (res_type, param, code, system);
CREATE INDEX search_token_system ON search_token (res_type, param, system);
CREATE INDEX search_token_rid ON search_token (rid, param);

CREATE TABLE search_reference (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    target_type TEXT, target_id TEXT, version TEXT, url TEXT, id_system TEXT, id_value TEXT
);
CREATE INDEX search_reference_value ON search_reference (res_type, param, target_id, target_type);
CREATE INDEX search_reference_target ON search_reference (target_type, target_id);
CREATE INDEX search_reference_url ON search_reference (res_type, param, url);
CREATE INDEX search_reference_identifier ON search_reference (res_type, param, id_value);
CREATE INDEX search_reference_rid ON search_reference (rid, param);

CREATE TABLE search_date (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    start_ms INTEGER NOT NULL, end_ms INTEGER NOT NULL
);
CREATE INDEX search_date_start ON search_date (res_type, param, start_ms);
CREATE INDEX search_date_end ON search_date (res_type, param, end_ms);
CREATE INDEX search_date_rid ON search_date (rid, param);

CREATE TABLE search_number (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    low REAL NOT NULL, high REAL NOT NULL
);
CREATE INDEX search_number_value ON search_number (res_type, param, low);
CREATE INDEX search_number_rid ON search_number (rid, param);

CREATE TABLE search_quantity (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    low REAL NOT NULL, high REAL NOT NULL, system TEXT, code TEXT, unit TEXT,
    canon_unit TEXT, canon_low REAL, canon_high REAL
);
CREATE INDEX search_quantity_value ON search_quantity (res_type, param, code, low);
CREATE INDEX search_quantity_canonical ON search_quantity (res_type, param, canon_unit, canon_low);
CREATE INDEX search_quantity_rid ON search_quantity (rid, param);

CREATE TABLE search_uri (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    value TEXT NOT NULL
);
CREATE INDEX search_uri_value ON search_uri (res_type, param, value);
CREATE INDEX search_uri_rid ON search_uri (rid, param);
