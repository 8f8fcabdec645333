-- Bulk export jobs ($export): rows claimed by one worker at a time through a lease, so several
-- processes never run one job twice and a job whose worker died is claimed again once its lease
-- has expired. `request` and `result` are JSON texts owned by the server.
CREATE TABLE export_jobs (
    id               TEXT    PRIMARY KEY,
    status           TEXT    NOT NULL CHECK (status IN ('pending', 'running', 'done', 'failed')),
    request          TEXT    NOT NULL,
    created_at       BIGINT  NOT NULL, -- milliseconds since the Unix epoch, UTC
    transaction_time BIGINT  NOT NULL,
    lease_owner      TEXT,
    lease_until      BIGINT,
    progress         TEXT,
    result           TEXT,
    error            TEXT
);
CREATE INDEX export_jobs_claim ON export_jobs (status, created_at);
