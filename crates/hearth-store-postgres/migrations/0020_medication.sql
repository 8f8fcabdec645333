-- Medication reminders (see hearth-store-sql/src/medication.rs and hearth-medication/src/reminders.rs).
-- The schedules are FHIR resources (MedicationStatement, MedicationRequest); this table holds what
-- the store cannot answer by index: how far ahead each schedule's reminders are written to the
-- notification outbox, and for which version of the schedule and time zone of the patient. When
-- either changes (the fingerprint), the schedule's pending reminders are cancelled and written
-- again under the next generation (part of their idempotency key), so a replan never collides with
-- a cancelled key and a restarted planner never writes a reminder twice.
CREATE TABLE medication_reminder_plans (
    schedule      TEXT    PRIMARY KEY,
    patient       TEXT    NOT NULL,
    fingerprint   TEXT    NOT NULL,
    generation    BIGINT NOT NULL,
    planned_until BIGINT NOT NULL
);
