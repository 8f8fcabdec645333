-- Wellness (issue 19; see hearth-store-sql/src/wellness.rs and hearth-wellness). One row per
-- patient enrolled in daily summaries (by their first log or goal, or by choosing the time):
-- the local time chosen (NULL: [wellness] summary_time), whether summaries go out, the last
-- local day summarised and when the planner looks again (Unix ms). The summaries themselves are
-- Compositions; their delivery is the notification outbox's.
CREATE TABLE wellness_summary_plans (
    patient_id   TEXT    PRIMARY KEY,
    summary_time TEXT,
    enabled      BIGINT NOT NULL,
    last_day     TEXT,
    next_due     BIGINT NOT NULL,
    created_at   BIGINT NOT NULL,
    updated_at   BIGINT NOT NULL
);
CREATE INDEX wellness_summary_plans_due ON wellness_summary_plans (enabled, next_due);

-- Care-team chat read receipts: who read a patient's thread (the messages are Communications) up
-- to when (Unix ms); a message sent before read_at is read by that account.
CREATE TABLE wellness_chat_reads (
    patient_id TEXT    NOT NULL,
    account_id TEXT    NOT NULL,
    role       TEXT    NOT NULL,
    read_at    BIGINT NOT NULL,
    PRIMARY KEY (patient_id, account_id)
);
