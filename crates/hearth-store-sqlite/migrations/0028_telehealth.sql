-- Telehealth (issue 21; see hearth-store-sql/src/telehealth.rs and hearth-telehealth). A video room
-- is its virtual Appointment (the room id is the appointment id), so it has no row of its own; what
-- is stored is who the care team invited into a room beyond the appointment's patient and
-- practitioners, and the join tickets: short-lived and single-use, kept by their SHA-256 so a copy
-- of the table opens no room.
CREATE TABLE telehealth_invites (
    room        TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    -- caregiver or interpreter.
    role        TEXT    NOT NULL,
    invited_by  TEXT    NOT NULL,
    created_at  INTEGER NOT NULL,
    PRIMARY KEY (room, account_id)
);

CREATE TABLE telehealth_tickets (
    -- Hex SHA-256 of the ticket the participant was given.
    hash        TEXT    PRIMARY KEY,
    room        TEXT    NOT NULL,
    account_id  TEXT    NOT NULL,
    -- patient, clinician, caregiver or interpreter: the part the account plays in the room.
    role        TEXT    NOT NULL,
    expires_at  INTEGER NOT NULL,
    -- Set when a socket used it; a used ticket never opens a second one.
    used_at     INTEGER
);
CREATE INDEX telehealth_tickets_expiry ON telehealth_tickets (expires_at);
