-- SMART Backend Services, token introspection and revocation (issue 27 item 5; see
-- hearth-store-sql/src/oauth.rs). Times are Unix milliseconds.

-- A backend-services client's public keys: its JWK Set by value, or the URL it is fetched from.
CREATE TABLE oauth_client_keys (
    client_id  TEXT PRIMARY KEY,
    jwks       TEXT,
    jwks_uri   TEXT
);

-- The `jti` of every client assertion accepted, until it expires: a replay conflicts here.
CREATE TABLE oauth_assertion_jtis (
    client_id   TEXT    NOT NULL,
    jti         TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    PRIMARY KEY (client_id, jti)
);

-- Access tokens revoked (RFC 7009) before their expiry, by `jti`.
CREATE TABLE oauth_revoked (
    jti         TEXT    PRIMARY KEY,
    expires_at  INTEGER NOT NULL
);
