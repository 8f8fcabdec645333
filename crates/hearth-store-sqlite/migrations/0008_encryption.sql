-- Same table as on PostgreSQL, where it holds the wrapped data keys of the resource bodies. On
-- SQLite the whole database file is encrypted by SQLCipher with the configured key (page level,
-- WAL included), so Hearth seals nothing itself and this table stays empty; it exists so both
-- backends keep one schema.
CREATE TABLE encryption_keys (
    id          TEXT    PRIMARY KEY,
    master_id   TEXT    NOT NULL,
    wrapped     TEXT    NOT NULL,
    created_at  INTEGER NOT NULL  -- milliseconds since the Unix epoch, UTC
);
