-- Patient intake (see hearth-store-sql/src/intake.rs and crates/hearth-intake). Times are Unix
-- milliseconds. The FHIR record (Consent, QuestionnaireResponse, Observations, Flags,
-- RiskAssessment, Conditions, Composition) is written through the guarded store; this row is
-- where an interview stands, so a reconnect or a restart resumes exactly.
--
-- state: the interview as JSON (answers per pack and item, passed items, facts, snapshots of
-- the clinic's own Questionnaires); turns: the patient's free-text turns as a JSON array;
-- red_flags: the red-flag codes raised so far (JSON array). urgency_rank orders the clinicians'
-- queue (4 emergency, 3 urgent, 2 soon, 1 routine, 0 self_care). version is incremented by every
-- change; a change names the version it read, so two writers cannot both apply a turn.
CREATE TABLE intake_sessions (
    id           TEXT    PRIMARY KEY,
    patient      TEXT    NOT NULL,
    appointment  TEXT,
    practitioner TEXT,
    language     TEXT    NOT NULL,
    packs        TEXT    NOT NULL,
    state        TEXT    NOT NULL,
    turns        TEXT    NOT NULL,
    status       TEXT    NOT NULL,
    urgency      TEXT    NOT NULL,
    urgency_rank INTEGER NOT NULL,
    red_flags    TEXT    NOT NULL,
    consent      TEXT    NOT NULL,
    composition  TEXT,
    created_by   TEXT    NOT NULL,
    reviewed_by  TEXT,
    reviewed_at  INTEGER,
    created_at   INTEGER NOT NULL,
    updated_at   INTEGER NOT NULL,
    version      INTEGER NOT NULL
);
CREATE INDEX intake_sessions_queue ON intake_sessions (urgency_rank, created_at);
CREATE INDEX intake_sessions_by_patient ON intake_sessions (patient, created_at);
