-- Self-care alerts (see hearth-store-sql/src/selfcare.rs and crates/hearth-selfcare). Times are
-- Unix milliseconds.
--
-- selfcare_settings: what a patient's clinician set for their alerts: SpO2 scale 2 (NEWS2) and
-- personal thresholds (JSON array of {parameter, above, below}); set_by is the clinician's
-- account, who is then also told of the patient's alerts.
CREATE TABLE selfcare_settings (
    patient     TEXT    PRIMARY KEY,
    spo2_scale2 BIGINT NOT NULL,
    thresholds  TEXT    NOT NULL,
    set_by      TEXT    NOT NULL,
    updated_at  BIGINT NOT NULL
);

-- selfcare_alerts: one row per alert; the FHIR Flag (flag) is its record in the chart. rule is
-- news2, qsofa or threshold:<parameter>; severity orders levels of one rule (a higher one
-- supersedes a live one). status: open, acknowledged, resolved. While an alert is live
-- (resolved_at IS NULL) no second one of the same rule is raised for the patient: the unique
-- index makes that hold across processes.
CREATE TABLE selfcare_alerts (
    id              TEXT    PRIMARY KEY,
    patient         TEXT    NOT NULL,
    rule            TEXT    NOT NULL,
    severity        BIGINT NOT NULL,
    level           TEXT    NOT NULL,
    score           BIGINT,
    detail          TEXT    NOT NULL,
    flag            TEXT    NOT NULL,
    status          TEXT    NOT NULL,
    raised_at       BIGINT NOT NULL,
    last_seen       BIGINT NOT NULL,
    escalate_at     BIGINT NOT NULL,
    acknowledged_by TEXT,
    acknowledged_at BIGINT,
    resolved_at     BIGINT
);
CREATE UNIQUE INDEX selfcare_alerts_live ON selfcare_alerts (patient, rule) WHERE resolved_at IS NULL;
CREATE INDEX selfcare_alerts_by_patient ON selfcare_alerts (patient, raised_at);

-- selfcare_batches: the answer to a vitals batch sent with an Idempotency-Key, per account and
-- key, so the same request sent again is answered the same without being applied twice.
-- request_hash is the SHA-256 of the body: the same key with another body is refused.
CREATE TABLE selfcare_batches (
    account      TEXT    NOT NULL,
    idem_key     TEXT    NOT NULL,
    patient      TEXT    NOT NULL,
    request_hash TEXT    NOT NULL,
    status       BIGINT NOT NULL,
    response     TEXT    NOT NULL,
    created_at   BIGINT NOT NULL,
    PRIMARY KEY (account, idem_key)
);
CREATE INDEX selfcare_batches_by_patient ON selfcare_batches (patient);

-- selfcare_buckets: per-minute/hour/day aggregates of each numeric reading kind (blood pressure
-- as systolic_bp and diastolic_bp), kept up to date in the transaction that records readings,
-- so an aggregated history reads at most one row per bucket instead of every reading.
-- resolution: minute, hour or day; start: the bucket's UTC start; lo/hi/total/n: min, max, sum
-- and count of the values (canonical units).
CREATE TABLE selfcare_buckets (
    patient    TEXT    NOT NULL,
    kind       TEXT    NOT NULL,
    resolution TEXT    NOT NULL,
    start      BIGINT NOT NULL,
    lo         DOUBLE PRECISION NOT NULL,
    hi         DOUBLE PRECISION NOT NULL,
    total      DOUBLE PRECISION NOT NULL,
    n          BIGINT NOT NULL,
    PRIMARY KEY (patient, kind, resolution, start)
);
