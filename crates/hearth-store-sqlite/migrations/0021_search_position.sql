-- FHIR `near` (R4 Location.position): one row per indexed position. `lat`/`lon` in WGS84
-- degrees for the bounding-box range scan; `x, y, z` the unit vector for the exact great-circle
-- test without trigonometry in SQL (see hearth_search::geo). Existing Locations gain rows on
-- their next write or a `$reindex`.
CREATE TABLE search_position (
    rid INTEGER NOT NULL, res_type TEXT NOT NULL, param TEXT NOT NULL, grp INTEGER NOT NULL,
    lat REAL NOT NULL, lon REAL NOT NULL, x REAL NOT NULL, y REAL NOT NULL, z REAL NOT NULL
);
CREATE INDEX search_position_value ON search_position (res_type, param, lat, lon);
CREATE INDEX search_position_rid ON search_position (rid, param);
