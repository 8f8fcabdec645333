-- SMART on FHIR / OAuth 2.0 (see hearth-store-sql/src/oauth.rs). Times are Unix milliseconds.

-- Third-party apps registered by an admin.
CREATE TABLE oauth_clients (
    id             TEXT    PRIMARY KEY,      -- client_id
    name           TEXT    NOT NULL,
    redirect_uris  TEXT    NOT NULL,         -- JSON array, matched exactly
    confidential   BIGINT NOT NULL DEFAULT 0,
    secret_hash    TEXT,                     -- SHA-256 (hex) of a 256-bit random secret; NULL for public clients
    scope          TEXT    NOT NULL,         -- the scopes the client may ever be granted
    created_by     TEXT    NOT NULL,
    created_at     BIGINT NOT NULL
);

-- One-time authorization codes: only the SHA-256 (hex) of each is kept.
CREATE TABLE oauth_codes (
    hash            TEXT    PRIMARY KEY,
    client_id       TEXT    NOT NULL,
    redirect_uri    TEXT    NOT NULL,
    code_challenge  TEXT    NOT NULL,        -- PKCE S256
    scope           TEXT    NOT NULL,        -- granted (requested ∩ allowed)
    account_id      TEXT    NOT NULL REFERENCES accounts (id),
    patient         TEXT,                    -- launch/patient context
    nonce           TEXT,                    -- OpenID Connect nonce, echoed in the id_token
    expires_at      BIGINT NOT NULL,
    used            BIGINT NOT NULL DEFAULT 0,
    family          TEXT,                    -- refresh family issued from it (revoked on replay)
    created_at      BIGINT NOT NULL
);
CREATE INDEX oauth_codes_client ON oauth_codes (client_id);

-- Refresh-token families (refresh_tokens.family) issued to a client: a client's refresh token
-- only works for that client, and deleting a client revokes them.
CREATE TABLE oauth_families (
    family      TEXT    PRIMARY KEY,
    client_id   TEXT    NOT NULL,
    created_at  BIGINT NOT NULL
);
CREATE INDEX oauth_families_client ON oauth_families (client_id);
