-- Two-factor recovery codes and patient login codes (see hearth-store-sql/src/mfa.rs).
-- Times are Unix milliseconds.

-- One-time 2FA recovery codes: only their keyed hashes (HMAC-SHA256 under the server pepper, hex).
-- A code is spent by deleting its row; confirming a new TOTP enrolment replaces all of them.
CREATE TABLE recovery_codes (
    account_id  TEXT    NOT NULL REFERENCES accounts (id),
    hash        TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (account_id, hash)
);

-- Outstanding patient login codes, one per destination (a lower-cased e-mail or an E.164 phone).
-- Only the code's keyed hash is kept; a new request replaces the previous code.
CREATE TABLE login_otps (
    destination      TEXT    PRIMARY KEY,
    code_hash        TEXT    NOT NULL,
    expires_at       INTEGER NOT NULL,
    failed_attempts  INTEGER NOT NULL DEFAULT 0,
    created_at       INTEGER NOT NULL
);
