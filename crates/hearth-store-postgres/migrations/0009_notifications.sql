-- Notifications (see hearth-store-sql/src/notify.rs and hearth-server/src/notify/).
-- Times are Unix milliseconds.

-- The outbox: one row per message per channel (per push subscription for push), written in the
-- transaction of the change that causes it. `idem_key` is the caller's idempotency key (also
-- what `cancel` takes); `dedupe` (key, channel, destination) makes a repeated enqueue a no-op.
-- status: queued -> sending -> sent -> delivered, or failed / bounced / cancelled.
-- A worker claims a row by setting status 'sending' with a lease; a row whose lease expired
-- (its worker died) is claimed again. `args` (template arguments, e.g. a login code) is emptied
-- once the row is final.
CREATE TABLE notification_outbox (
    id            TEXT    PRIMARY KEY,
    idem_key      TEXT    NOT NULL,
    dedupe        TEXT    NOT NULL UNIQUE,
    account_id    TEXT,
    channel       TEXT    NOT NULL,
    destination   TEXT,
    category      TEXT    NOT NULL,
    template      TEXT    NOT NULL,
    args          TEXT    NOT NULL,
    status        TEXT    NOT NULL,
    attempts      BIGINT NOT NULL DEFAULT 0,
    max_attempts  BIGINT NOT NULL,
    not_before    BIGINT NOT NULL,
    lease_owner   TEXT,
    lease_until   BIGINT,
    provider      TEXT,
    provider_id   TEXT,
    last_error    TEXT,
    created_at    BIGINT NOT NULL,
    updated_at    BIGINT NOT NULL
);
CREATE INDEX notification_outbox_due ON notification_outbox (status, not_before);
CREATE INDEX notification_outbox_key ON notification_outbox (idem_key);
CREATE INDEX notification_outbox_provider ON notification_outbox (provider_id);

-- Every delivery attempt: which worker, what happened, the provider's id or the error.
CREATE TABLE notification_attempts (
    notification_id  TEXT    NOT NULL REFERENCES notification_outbox (id) ON DELETE CASCADE,
    attempt          BIGINT NOT NULL,
    worker           TEXT    NOT NULL,
    status           TEXT    NOT NULL,
    provider_id      TEXT,
    error            TEXT,
    started_at       BIGINT NOT NULL,
    finished_at      BIGINT,
    PRIMARY KEY (notification_id, attempt)
);

-- In-app notifications (the in-app channel's deliveries): id = the outbox row's id.
CREATE TABLE notification_inbox (
    id          TEXT    PRIMARY KEY,
    account_id  TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    title       TEXT    NOT NULL,
    body        TEXT    NOT NULL,
    created_at  BIGINT NOT NULL,
    read_at     BIGINT
);
CREATE INDEX notification_inbox_account ON notification_inbox (account_id, created_at);

-- Per user x category x channel; no row means the default (see notify::default_enabled).
CREATE TABLE notification_preferences (
    account_id  TEXT    NOT NULL,
    category    TEXT    NOT NULL,
    channel     TEXT    NOT NULL,
    enabled     BIGINT NOT NULL,
    PRIMARY KEY (account_id, category, channel)
);

-- Time zone (IANA name), language and quiet hours (minutes after local midnight) per user.
CREATE TABLE notification_settings (
    account_id   TEXT    PRIMARY KEY,
    time_zone    TEXT    NOT NULL,
    language     TEXT    NOT NULL,
    quiet_start  BIGINT,
    quiet_end    BIGINT
);

-- Web Push subscriptions (endpoint + p256dh + auth) and FCM registration tokens (endpoint).
-- A device registered again by another account moves to that account.
CREATE TABLE push_subscriptions (
    id          TEXT    PRIMARY KEY,
    account_id  TEXT    NOT NULL,
    kind        TEXT    NOT NULL,
    endpoint    TEXT    NOT NULL,
    p256dh      TEXT,
    auth        TEXT,
    created_at  BIGINT NOT NULL,
    UNIQUE (kind, endpoint)
);
CREATE INDEX push_subscriptions_account ON push_subscriptions (account_id);
