-- Envelope encryption of resource bodies (hearth-store-sql/src/crypt.rs). With an encryption key
-- configured, `resource_versions.body` holds `enc1:<data key id>:<base64 nonce‖ciphertext‖tag>`;
-- each data key is stored here only wrapped (AES-256-GCM) by a master key, which never is: the
-- master key comes from the key file or HEARTH_ENCRYPTION_KEY. `master_id` names the master key
-- (a fingerprint, not the key). The search index tables stay in clear (see the README).
CREATE TABLE encryption_keys (
    id          TEXT    PRIMARY KEY,
    master_id   TEXT    NOT NULL,
    wrapped     TEXT    NOT NULL,
    created_at  BIGINT  NOT NULL  -- milliseconds since the Unix epoch, UTC
);
