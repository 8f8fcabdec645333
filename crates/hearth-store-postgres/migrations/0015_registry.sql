-- Registry invitations (see hearth-store-sql/src/registry.rs and crates/hearth-registry).
-- Times are Unix milliseconds. A staff member invites a patient to claim the record the clinic
-- keeps; the code is never stored, only its keyed hash (HMAC-SHA256 under the server pepper, hex),
-- which is also how a presented code is found. A claim spends the row with a conditional update
-- (used_at IS NULL AND expires_at > now) that only one request can win, in the transaction that
-- creates the account.
CREATE TABLE registry_invites (
    id          TEXT   PRIMARY KEY,
    patient     TEXT   NOT NULL,
    code_hash   TEXT   NOT NULL UNIQUE,
    channel     TEXT   NOT NULL,
    created_by  TEXT   NOT NULL,
    created_at  BIGINT NOT NULL,
    expires_at  BIGINT NOT NULL,
    used_at     BIGINT,
    account_id  TEXT
);
CREATE INDEX registry_invites_by_patient ON registry_invites (patient, created_at);
