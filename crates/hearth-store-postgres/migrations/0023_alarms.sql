-- Alarms (issue 18, item 6; see hearth-store-sql/src/alarms.rs and hearth-alarms). An alarm is the
-- account's own (any role), one-off or recurring by an RFC 5545 RRULE from a local start time in a
-- time zone (its own, or NULL: the account's zone as the notification settings hold it).
-- Deliveries are outbox rows written ahead by the planner under the key
-- alarm:<id>:r<revision>:<instant ms>; revision goes up on every edit (and when the account's zone
-- changes), so a replan never collides with the cancelled keys of the one before.
CREATE TABLE alarms (
    id            TEXT    PRIMARY KEY,
    account_id    TEXT    NOT NULL,
    kind          TEXT    NOT NULL,
    label         TEXT    NOT NULL,
    enabled       BIGINT NOT NULL,
    -- The first occurrence as a local wall-clock time, YYYY-MM-DDTHH:MM:SS (DTSTART).
    start_local   TEXT    NOT NULL,
    -- NULL: one-off.
    rrule         TEXT,
    time_zone     TEXT,
    revision      BIGINT NOT NULL,
    -- The zone the pending deliveries were written for, and how far ahead (Unix ms).
    planned_zone  TEXT,
    planned_until BIGINT NOT NULL,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX alarms_account ON alarms (account_id, created_at);
CREATE INDEX alarms_planned ON alarms (enabled, planned_until);

-- One row per occurrence the planner wrote to the outbox (the same transaction). An occurrence
-- whose instant has passed is a fired one: the alarms' notifications list. Edit, disable and
-- delete remove the pending ones (instant still ahead) with their outbox rows; fired ones stay,
-- with the label and kind they rang with.
CREATE TABLE alarm_occurrences (
    id          TEXT    PRIMARY KEY,
    alarm_id    TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    revision    BIGINT NOT NULL,
    at          BIGINT NOT NULL,
    kind        TEXT    NOT NULL,
    label       TEXT    NOT NULL,
    read_at     BIGINT,
    UNIQUE (alarm_id, revision, at)
);
CREATE INDEX alarm_occurrences_account ON alarm_occurrences (account_id, at);
