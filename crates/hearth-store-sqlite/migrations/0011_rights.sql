-- Data rights (issue 7): patients' erasure requests and administrators' legal holds.
-- A request is `requested` until an administrator executes it (`completed`) or refuses it
-- (`refused`); the patient's free-text reason is cleared when it completes.
CREATE TABLE erasure_requests (
    id           TEXT    PRIMARY KEY,
    patient_id   TEXT    NOT NULL,
    requested_by TEXT    NOT NULL,           -- account id
    reason       TEXT,
    status       TEXT    NOT NULL CHECK (status IN ('requested', 'refused', 'completed')),
    requested_at INTEGER NOT NULL,           -- milliseconds since the Unix epoch, UTC
    decided_at   INTEGER,
    decided_by   TEXT,                       -- account id (NULL: the server, immediate mode)
    decision     TEXT,                       -- why it was refused
    resources    INTEGER                     -- resources erased
);
CREATE INDEX erasure_requests_requested ON erasure_requests (requested_at);
-- One pending request per patient.
CREATE UNIQUE INDEX erasure_requests_pending ON erasure_requests (patient_id) WHERE status = 'requested';

CREATE TABLE legal_holds (
    patient_id  TEXT    PRIMARY KEY,
    reason      TEXT    NOT NULL,
    placed_by   TEXT    NOT NULL,            -- account id
    placed_at   INTEGER NOT NULL
);
