-- Scheduling (see hearth-store-sql/src/scheduling.rs and hearth-server/src/scheduling/).
-- Times are Unix milliseconds. The FHIR Appointment is the record; these rows make booking
-- atomic and the waitlist queryable.

-- The booked time of each practitioner in 5-minute cells: a booking inserts one row per cell
-- its appointment (duration plus buffer) covers, in the Appointment's transaction. The primary
-- key makes overlapping bookings impossible on every backend and across processes: the second
-- writer's insert conflicts (PostgreSQL waits for the first to commit or roll back), so exactly
-- one of two racing bookings wins. Cancelling deletes the appointment's cells. A schedule's limit
-- of appointments per day is claimed the same way: rows keyed '<practitioner>#<YYYY-MM-DD>' with
-- cells 0..limit-1 (the day's places), one per appointment.
CREATE TABLE sched_claims (
    practitioner TEXT   NOT NULL,
    cell         INTEGER NOT NULL,
    appointment  TEXT   NOT NULL,
    PRIMARY KEY (practitioner, cell)
);
CREATE INDEX sched_claims_by_appointment ON sched_claims (appointment);

-- Patients waiting for a slot with a practitioner between `earliest` and `latest`. A freed slot
-- is offered (a notification, in the cancellation's transaction) to the oldest waiting entry
-- whose window covers it; `offered_at` marks it so the next freed slot goes to the next patient.
CREATE TABLE sched_waitlist (
    id            TEXT   PRIMARY KEY,
    practitioner  TEXT   NOT NULL,
    patient       TEXT   NOT NULL,
    account_id    TEXT,
    earliest      INTEGER NOT NULL,
    latest        INTEGER NOT NULL,
    created_at    INTEGER NOT NULL,
    offered_at    INTEGER,
    offered_start INTEGER
);
CREATE INDEX sched_waitlist_by_practitioner ON sched_waitlist (practitioner, created_at);
