-- Identity and access (see hearth-store-sql/src/identity.rs). Times are Unix milliseconds.
CREATE TABLE accounts (
    id             TEXT    PRIMARY KEY,
    email          TEXT    UNIQUE,           -- lower-cased
    phone          TEXT    UNIQUE,           -- E.164
    password_hash  TEXT,                     -- Argon2id PHC string; NULL for OTP-only accounts
    role           TEXT    NOT NULL CHECK (role IN ('patient', 'clinician', 'admin', 'caregiver')),
    fhir_user      TEXT,                     -- Patient/…, Practitioner/…, RelatedPerson/…
    organization   TEXT,                     -- Organization id limiting a clinician's reach
    totp_secret    TEXT,                     -- base32; set at enrolment, confirmed by totp_enabled
    totp_enabled   INTEGER NOT NULL DEFAULT 0,
    totp_last_step INTEGER,                  -- last accepted RFC 6238 step (replay guard)
    failed_logins  INTEGER NOT NULL DEFAULT 0,
    locked_until   INTEGER,
    created_at     INTEGER NOT NULL
);

-- Refresh tokens: only the SHA-256 (hex) of each is kept.
CREATE TABLE refresh_tokens (
    hash        TEXT    PRIMARY KEY,
    family      TEXT    NOT NULL,
    account_id  TEXT    NOT NULL REFERENCES accounts (id),
    scope       TEXT    NOT NULL,
    patient     TEXT,
    expires_at  INTEGER NOT NULL,
    used        INTEGER NOT NULL DEFAULT 0,
    revoked     INTEGER NOT NULL DEFAULT 0,
    created_at  INTEGER NOT NULL
);
CREATE INDEX refresh_tokens_family ON refresh_tokens (family);
CREATE INDEX refresh_tokens_account ON refresh_tokens (account_id);

-- Access-token signing keys (Ed25519, PKCS#8 DER, base64). Every key verifies; `auth_settings`
-- names the active one, so every process signs with the same key.
CREATE TABLE signing_keys (
    kid         TEXT    PRIMARY KEY,
    pkcs8       TEXT    NOT NULL,
    created_at  INTEGER NOT NULL
);
CREATE TABLE auth_settings (
    name   TEXT PRIMARY KEY,
    value  TEXT NOT NULL
);

-- Patients a caregiver account may act for.
CREATE TABLE caregiver_grants (
    caregiver_id  TEXT    NOT NULL REFERENCES accounts (id),
    patient_id    TEXT    NOT NULL,
    created_at    INTEGER NOT NULL,
    PRIMARY KEY (caregiver_id, patient_id)
);
