//! The notification tables (migration `0009_notifications.sql`), written once over [`Db`] for
//! both backends: the outbox and its attempts, the in-app inbox, preferences and settings, push
//! subscriptions. The decisions (channels, quiet hours, backoff) live in `hearth-server::notify`.
//!
//! Every function takes `&dyn Db`, so it runs either on the pool (each statement its own
//! transaction) or inside a caller's transaction through [`TxDb`]: an enqueue commits with the
//! change that causes it or not at all.
//!
//! Claiming follows the export jobs: one `UPDATE … WHERE id IN (SELECT … LIMIT n) RETURNING`,
//! with `FOR UPDATE SKIP LOCKED` on PostgreSQL so concurrent workers take disjoint rows; SQLite
//! has a single writer, so the statement is atomic by itself. A claim sets a lease; a row whose
//! lease expired (its worker died mid-send) is claimable again. Results are written only by
//! the lease holder of that attempt (`lease_owner` and `attempts` must still match), so a late
//! worker cannot overwrite what its successor recorded.

use async_trait::async_trait;
use hearth_store::{GuardedTx, StoreError, StoreTx};
use tokio::sync::Mutex;

use crate::identity::{corrupt, int, opt_text, text};
use crate::{Builder, Col, Db, DbTx, Dialect, Sql, Val};

/// [`Db`] over one open transaction: the identity and notification helpers run inside it.
pub struct TxDb {
    dialect: Dialect,
    tx: Mutex<Option<Box<dyn DbTx>>>,
}

fn closed() -> StoreError {
    StoreError::Corrupt("the transaction is already committed".into())
}

impl TxDb {
    pub async fn begin(db: &dyn Db) -> Result<TxDb, StoreError> {
        let tx = db.begin_tx().await?;
        Ok(TxDb { dialect: tx.dialect(), tx: Mutex::new(Some(tx)) })
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        match self.tx.into_inner() {
            Some(tx) => tx.commit().await,
            None => Err(closed()),
        }
    }
}

/// A backend transaction that is both a resource transaction and a [`DbTx`] (both SQL
/// backends' transactions are): what `StoreTx::into_any` boxes.
pub trait SqlTx: StoreTx + DbTx {}

impl<T: StoreTx + DbTx> SqlTx for T {}

impl TxDb {
    /// The transaction of `tx` as a [`TxDb`]: the resource writes already made through it and
    /// the rows written here (reminders, booking claims) commit together, or not at all. The
    /// guarded view ends here: finish the resource writes first.
    pub fn from_guarded(tx: GuardedTx) -> Result<TxDb, StoreError> {
        match tx.into_inner().into_any().downcast::<Box<dyn SqlTx>>() {
            Ok(sql) => {
                let tx: Box<dyn DbTx> = *sql;
                Ok(TxDb { dialect: tx.dialect(), tx: Mutex::new(Some(tx)) })
            }
            Err(_) => Err(StoreError::Corrupt("this backend's transactions have no SQL side".into())),
        }
    }
}

#[async_trait]
impl Db for TxDb {
    fn dialect(&self) -> Dialect {
        self.dialect
    }
    async fn fetch(&self, sql: &Sql, cols: &[Col]) -> Result<Vec<Vec<Val>>, StoreError> {
        self.tx.lock().await.as_mut().ok_or_else(closed)?.fetch(sql, cols).await
    }
    async fn fetch_write(&self, sql: &Sql, cols: &[Col]) -> Result<Vec<Vec<Val>>, StoreError> {
        self.tx.lock().await.as_mut().ok_or_else(closed)?.fetch(sql, cols).await
    }
    async fn execute(&self, sql: &Sql) -> Result<u64, StoreError> {
        self.tx.lock().await.as_mut().ok_or_else(closed)?.execute(sql).await
    }
    async fn begin_tx(&self) -> Result<Box<dyn DbTx>, StoreError> {
        Err(StoreError::Corrupt("nested transactions are not supported".into()))
    }
}

/// A new outbox row.
#[derive(Debug, Clone)]
pub struct NewOutbox {
    pub id: String,
    pub idem_key: String,
    pub account_id: Option<String>,
    pub channel: String,
    /// A fixed address (an OTP's e-mail/phone) or a push subscription id; `None`: the account's.
    pub destination: Option<String>,
    pub category: String,
    pub template: String,
    pub args: String,
    pub max_attempts: i64,
    pub not_before: i64,
    pub now: i64,
    /// The language to render in (a BCP-47 tag), when the cause knows it (migration `0018`);
    /// `None`: the account's settings, else the server's default.
    pub language: Option<String>,
}

/// One outbox row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRow {
    pub id: String,
    pub idem_key: String,
    pub account_id: Option<String>,
    pub channel: String,
    pub destination: Option<String>,
    pub category: String,
    pub template: String,
    pub args: String,
    pub status: String,
    pub attempts: i64,
    pub max_attempts: i64,
    pub not_before: i64,
    pub lease_owner: Option<String>,
    pub provider: Option<String>,
    pub provider_id: Option<String>,
    pub last_error: Option<String>,
    pub created_at: i64,
    pub updated_at: i64,
    pub language: Option<String>,
}

const OUTBOX_COLUMNS: &str = "id, idem_key, account_id, channel, destination, category, template, args, status, \
     attempts, max_attempts, not_before, lease_owner, provider, provider_id, last_error, created_at, updated_at, language";
const OUTBOX_COLS: [Col; 19] = [
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Text,
];

fn decode_outbox(row: Vec<Val>) -> Result<OutboxRow, StoreError> {
    let mut it = row.into_iter();
    Ok(OutboxRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        idem_key: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?,
        channel: text(it.next())?.ok_or_else(corrupt)?,
        destination: text(it.next())?,
        category: text(it.next())?.ok_or_else(corrupt)?,
        template: text(it.next())?.ok_or_else(corrupt)?,
        args: text(it.next())?.ok_or_else(corrupt)?,
        status: text(it.next())?.ok_or_else(corrupt)?,
        attempts: int(it.next())?.ok_or_else(corrupt)?,
        max_attempts: int(it.next())?.ok_or_else(corrupt)?,
        not_before: int(it.next())?.ok_or_else(corrupt)?,
        lease_owner: text(it.next())?,
        provider: text(it.next())?,
        provider_id: text(it.next())?,
        last_error: text(it.next())?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
        updated_at: int(it.next())?.ok_or_else(corrupt)?,
        language: text(it.next())?,
    })
}

/// Inserts a row unless one with the same key, channel and destination exists; true if inserted.
pub async fn enqueue(db: &dyn Db, n: &NewOutbox) -> Result<bool, StoreError> {
    let dedupe = format!("{}\u{1f}{}\u{1f}{}", n.idem_key, n.channel, n.destination.as_deref().unwrap_or(""));
    let mut b = Builder::new(db.dialect());
    b.push(
        "INSERT INTO notification_outbox (id, idem_key, dedupe, account_id, channel, destination, category, \
         template, args, status, attempts, max_attempts, not_before, created_at, updated_at, language) VALUES (",
    );
    b.text(&n.id).push(", ").text(&n.idem_key).push(", ").text(&dedupe).push(", ");
    opt_text(&mut b, n.account_id.as_deref());
    b.push(", ").text(&n.channel).push(", ");
    opt_text(&mut b, n.destination.as_deref());
    b.push(", ").text(&n.category).push(", ").text(&n.template).push(", ").text(&n.args);
    b.push(", 'queued', 0, ").int(n.max_attempts).push(", ").int(n.not_before);
    b.push(", ").int(n.now).push(", ").int(n.now).push(", ");
    opt_text(&mut b, n.language.as_deref());
    b.push(") ON CONFLICT DO NOTHING");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// The channel of a row addressed to a patient rather than an account: the worker expands it,
/// when due, into the rows of the accounts the patient (and their caregivers) then have. Its
/// `destination` is `Patient/<id>`; it never reaches a provider.
pub const FANOUT_CHANNEL: &str = "patient";

/// What joins a fan-out row's key and an account in the keys of its expansions
/// (`<key>#<account>`), so cancelling the key finds them.
pub const EXPANSION_SEPARATOR: char = '#';

/// What may still be cancelled: queued rows, and fan-out rows being expanded (the expansion
/// commits only if the row is still `sending`, so it then adds nothing).
fn cancellable(b: &mut Builder) {
    b.push(" AND (status = 'queued' OR (status = 'sending' AND channel = ").text(FANOUT_CHANNEL).push("))");
}

/// `substr(idem_key, 1, len(prefix)) = prefix`, on both backends.
fn key_prefix(b: &mut Builder, prefix: &str) -> Result<(), StoreError> {
    let len = i64::try_from(prefix.chars().count()).map_err(|_| corrupt())?;
    // The cast: PostgreSQL's substr takes an integer, and binds are 64-bit.
    b.push("substr(idem_key, 1, CAST(").int(len).push(" AS INTEGER)) = ").text(prefix);
    Ok(())
}

/// Cancels what is still queued under an idempotency key, and the expansions of a fan-out row
/// of that key (`<key>#…`); answers how many rows.
pub async fn cancel(db: &dyn Db, idem_key: &str, now: i64) -> Result<u64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE notification_outbox SET status = 'cancelled', args = '{}', updated_at = ")
        .int(now)
        .push(" WHERE (idem_key = ")
        .text(idem_key)
        .push(" OR ");
    key_prefix(&mut b, &format!("{idem_key}{EXPANSION_SEPARATOR}"))?;
    b.push(")");
    cancellable(&mut b);
    db.execute(&b.finish()).await
}

/// Cancels every queued row whose idempotency key starts with `prefix` (e.g. all the reminders
/// of an appointment, whatever offsets were in force when they were written, and their
/// expansions); answers how many rows.
pub async fn cancel_prefix(db: &dyn Db, prefix: &str, now: i64) -> Result<u64, StoreError> {
    if prefix.is_empty() {
        return Ok(0);
    }
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE notification_outbox SET status = 'cancelled', args = '{}', updated_at = ").int(now).push(" WHERE ");
    key_prefix(&mut b, prefix)?;
    cancellable(&mut b);
    db.execute(&b.finish()).await
}

pub async fn get(db: &dyn Db, id: &str) -> Result<Option<OutboxRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(OUTBOX_COLUMNS).push(" FROM notification_outbox WHERE id = ").text(id);
    db.fetch_write(&b.finish(), &OUTBOX_COLS).await?.into_iter().next().map(decode_outbox).transpose()
}

/// The rows of an idempotency key, oldest first.
pub async fn by_key(db: &dyn Db, idem_key: &str) -> Result<Vec<OutboxRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ")
        .push(OUTBOX_COLUMNS)
        .push(" FROM notification_outbox WHERE idem_key = ")
        .text(idem_key)
        .push(" ORDER BY created_at, id");
    db.fetch_write(&b.finish(), &OUTBOX_COLS).await?.into_iter().map(decode_outbox).collect()
}

/// Claims up to `limit` due rows (queued and due, or sending with an expired lease) for `owner`
/// until `lease_until`, counting an attempt on each, and records the attempt rows.
pub async fn claim(
    db: &dyn Db,
    owner: &str,
    now: i64,
    lease_until: i64,
    limit: i64,
) -> Result<Vec<OutboxRow>, StoreError> {
    let dialect = db.dialect();
    let mut b = Builder::new(dialect);
    b.push("UPDATE notification_outbox SET status = 'sending', attempts = attempts + 1, lease_owner = ")
        .text(owner)
        .push(", lease_until = ")
        .int(lease_until)
        .push(", updated_at = ")
        .int(now)
        .push(" WHERE id IN (SELECT id FROM notification_outbox WHERE (status = 'queued' AND not_before <= ")
        .int(now)
        .push(") OR (status = 'sending' AND lease_until < ")
        .int(now)
        .push(") ORDER BY not_before, id LIMIT ")
        .int(limit);
    if dialect == Dialect::Postgres {
        b.push(" FOR UPDATE SKIP LOCKED");
    }
    b.push(") RETURNING ").push(OUTBOX_COLUMNS);
    let rows: Vec<OutboxRow> =
        db.fetch_write(&b.finish(), &OUTBOX_COLS).await?.into_iter().map(decode_outbox).collect::<Result<_, _>>()?;
    for r in &rows {
        // An earlier attempt still open was abandoned by a worker whose lease ran out.
        let mut b = Builder::new(dialect);
        b.push("UPDATE notification_attempts SET status = 'abandoned', error = 'lease expired', finished_at = ")
            .int(now)
            .push(" WHERE notification_id = ")
            .text(&r.id)
            .push(" AND finished_at IS NULL");
        db.execute(&b.finish()).await?;
        let mut b = Builder::new(dialect);
        b.push("INSERT INTO notification_attempts (notification_id, attempt, worker, status, started_at) VALUES (")
            .text(&r.id)
            .push(", ")
            .int(r.attempts)
            .push(", ")
            .text(owner)
            .push(", 'sending', ")
            .int(now)
            .push(") ON CONFLICT DO NOTHING");
        db.execute(&b.finish()).await?;
    }
    Ok(rows)
}

/// What became of one attempt.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Outcome {
    /// Final: `sent`, `delivered`, `failed`, `bounced` or `cancelled`.
    Final { status: &'static str, provider: Option<String>, provider_id: Option<String>, error: Option<String> },
    /// Try again at `not_before`.
    Retry { not_before: i64, error: String },
    /// Not an attempt (quiet hours): back to the queue until `not_before`.
    Defer { not_before: i64 },
}

/// Records the outcome of attempt `attempt` if `owner` still holds it; false when it does not
/// (the lease expired and another worker took the row). The row and its attempt change in one
/// transaction, so nobody sees a final row with its attempt still `sending`.
pub async fn finish(
    db: &dyn Db,
    id: &str,
    owner: &str,
    attempt: i64,
    outcome: &Outcome,
    now: i64,
) -> Result<bool, StoreError> {
    let tx = TxDb::begin(db).await?;
    if !finish_in(&tx, id, owner, attempt, outcome, now).await? {
        return Ok(false);
    }
    tx.commit().await?;
    Ok(true)
}

/// [`finish`] inside the caller's transaction (a fan-out row is marked done in the transaction
/// that writes its expansions); false: the lease was lost, roll back.
pub async fn finish_in(
    db: &dyn Db,
    id: &str,
    owner: &str,
    attempt: i64,
    outcome: &Outcome,
    now: i64,
) -> Result<bool, StoreError> {
    let dialect = db.dialect();
    let mut b = Builder::new(dialect);
    b.push("UPDATE notification_outbox SET lease_owner = NULL, lease_until = NULL, updated_at = ").int(now);
    let (attempt_status, attempt_provider_id, attempt_error): (&str, Option<&str>, Option<&str>) = match outcome {
        Outcome::Final { status, provider, provider_id, error } => {
            b.push(", status = ").text(status).push(", args = '{}', provider = ");
            opt_text(&mut b, provider.as_deref());
            b.push(", provider_id = ");
            opt_text(&mut b, provider_id.as_deref());
            b.push(", last_error = ");
            opt_text(&mut b, error.as_deref());
            (status, provider_id.as_deref(), error.as_deref())
        }
        Outcome::Retry { not_before, error } => {
            b.push(", status = 'queued', not_before = ").int(*not_before).push(", last_error = ").text(error);
            ("retry", None, Some(error.as_str()))
        }
        Outcome::Defer { not_before } => {
            b.push(", status = 'queued', attempts = attempts - 1, not_before = ").int(*not_before);
            ("deferred", None, None)
        }
    };
    b.push(" WHERE id = ")
        .text(id)
        .push(" AND lease_owner = ")
        .text(owner)
        .push(" AND attempts = ")
        .int(attempt)
        .push(" AND status = 'sending'");
    if db.execute(&b.finish()).await? != 1 {
        return Ok(false);
    }
    let mut b = Builder::new(dialect);
    b.push("UPDATE notification_attempts SET status = ").text(attempt_status).push(", provider_id = ");
    opt_text(&mut b, attempt_provider_id);
    b.push(", error = ");
    opt_text(&mut b, attempt_error);
    b.push(", finished_at = ").int(now).push(" WHERE notification_id = ").text(id).push(" AND attempt = ").int(attempt);
    db.execute(&b.finish()).await?;
    Ok(true)
}

/// The backlog: how many rows are due and not yet taken (`queued` with `not_before` passed) and
/// when the oldest of them fell due (Unix ms), for the metrics endpoint. One range of the
/// `(status, not_before)` index.
pub async fn backlog(db: &dyn Db, now: i64) -> Result<(i64, Option<i64>), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COUNT(*), MIN(not_before) FROM notification_outbox WHERE status = 'queued' AND not_before <= ")
        .int(now);
    let row = db.fetch(&b.finish(), &[Col::Int, Col::Int]).await?.into_iter().next();
    let count = row.as_ref().and_then(|r| r.first()).and_then(Val::as_int).unwrap_or(0);
    let oldest = row.as_ref().and_then(|r| r.get(1)).and_then(Val::as_int);
    Ok((count, oldest))
}

/// A provider's later report (Twilio status callback) on a sent message: moves `sent` to
/// `delivered`/`failed`/`bounced` (a late `sent` never moves a row back). True if a row changed.
pub async fn provider_status(
    db: &dyn Db,
    channel: &str,
    provider_id: &str,
    status: &str,
    error: Option<&str>,
    now: i64,
) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE notification_outbox SET status = ").text(status).push(", last_error = ");
    opt_text(&mut b, error);
    b.push(", updated_at = ")
        .int(now)
        .push(" WHERE channel = ")
        .text(channel)
        .push(" AND provider_id = ")
        .text(provider_id)
        .push(" AND status = 'sent'");
    Ok(db.execute(&b.finish()).await? > 0)
}

/// Rows by status, newest change first (the admin view).
pub async fn list_by_status(db: &dyn Db, status: Option<&str>, limit: i64) -> Result<Vec<OutboxRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(OUTBOX_COLUMNS).push(" FROM notification_outbox");
    if let Some(s) = status {
        b.push(" WHERE status = ").text(s);
    }
    b.push(" ORDER BY updated_at DESC, id DESC LIMIT ").int(limit);
    db.fetch(&b.finish(), &OUTBOX_COLS).await?.into_iter().map(decode_outbox).collect()
}

/// One attempt row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AttemptRow {
    pub attempt: i64,
    pub worker: String,
    pub status: String,
    pub provider_id: Option<String>,
    pub error: Option<String>,
    pub started_at: i64,
    pub finished_at: Option<i64>,
}

pub async fn attempts(db: &dyn Db, id: &str) -> Result<Vec<AttemptRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(
        "SELECT attempt, worker, status, provider_id, error, started_at, finished_at FROM notification_attempts \
         WHERE notification_id = ",
    )
    .text(id)
    .push(" ORDER BY attempt");
    let cols = [Col::Int, Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Int];
    db.fetch_write(&b.finish(), &cols)
        .await?
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            Ok(AttemptRow {
                attempt: int(it.next())?.ok_or_else(corrupt)?,
                worker: text(it.next())?.ok_or_else(corrupt)?,
                status: text(it.next())?.ok_or_else(corrupt)?,
                provider_id: text(it.next())?,
                error: text(it.next())?,
                started_at: int(it.next())?.ok_or_else(corrupt)?,
                finished_at: int(it.next())?,
            })
        })
        .collect()
}

// ---------------------------------------------------------------- in-app inbox

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InboxRow {
    pub id: String,
    pub account_id: String,
    pub category: String,
    pub title: String,
    pub body: String,
    pub created_at: i64,
    pub read_at: Option<i64>,
}

const INBOX_COLUMNS: &str = "id, account_id, category, title, body, created_at, read_at";
const INBOX_COLS: [Col; 7] = [Col::Text, Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Int];

fn decode_inbox(row: Vec<Val>) -> Result<InboxRow, StoreError> {
    let mut it = row.into_iter();
    Ok(InboxRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        category: text(it.next())?.ok_or_else(corrupt)?,
        title: text(it.next())?.ok_or_else(corrupt)?,
        body: text(it.next())?.ok_or_else(corrupt)?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
        read_at: int(it.next())?,
    })
}

/// Idempotent: a repeated delivery of the same outbox row adds nothing.
pub async fn inbox_insert(db: &dyn Db, r: &InboxRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO notification_inbox (").push(INBOX_COLUMNS).push(") VALUES (");
    b.text(&r.id).push(", ").text(&r.account_id).push(", ").text(&r.category).push(", ");
    b.text(&r.title).push(", ").text(&r.body).push(", ").int(r.created_at).push(", NULL) ON CONFLICT DO NOTHING");
    db.execute(&b.finish()).await.map(|_| ())
}

/// A user's notifications: unread first, newest first within each group.
pub async fn inbox_list(
    db: &dyn Db,
    account_id: &str,
    unread_only: bool,
    limit: i64,
) -> Result<Vec<InboxRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(INBOX_COLUMNS).push(" FROM notification_inbox WHERE account_id = ").text(account_id);
    if unread_only {
        b.push(" AND read_at IS NULL");
    }
    b.push(" ORDER BY CASE WHEN read_at IS NULL THEN 0 ELSE 1 END, created_at DESC, id DESC LIMIT ").int(limit);
    db.fetch(&b.finish(), &INBOX_COLS).await?.into_iter().map(decode_inbox).collect()
}

/// How many of the user's notifications are unread.
pub async fn inbox_unread_count(db: &dyn Db, account_id: &str) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COUNT(*) FROM notification_inbox WHERE account_id = ").text(account_id).push(" AND read_at IS NULL");
    let rows = db.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()).and_then(|v| v.as_int()).unwrap_or(0))
}

/// Marks one of the user's notifications read; false when it is not theirs or does not exist.
pub async fn inbox_mark_read(db: &dyn Db, account_id: &str, id: &str, now: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE notification_inbox SET read_at = COALESCE(read_at, ")
        .int(now)
        .push(") WHERE id = ")
        .text(id)
        .push(" AND account_id = ")
        .text(account_id);
    Ok(db.execute(&b.finish()).await? == 1)
}

// ---------------------------------------------------------------- preferences and settings

/// The stored preferences of a user: `(category, channel, enabled)`.
pub async fn preferences(db: &dyn Db, account_id: &str) -> Result<Vec<(String, String, bool)>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT category, channel, enabled FROM notification_preferences WHERE account_id = ")
        .text(account_id)
        .push(" ORDER BY category, channel");
    db.fetch(&b.finish(), &[Col::Text, Col::Text, Col::Int])
        .await?
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            Ok((
                text(it.next())?.ok_or_else(corrupt)?,
                text(it.next())?.ok_or_else(corrupt)?,
                int(it.next())?.unwrap_or(0) != 0,
            ))
        })
        .collect()
}

pub async fn set_preference(
    db: &dyn Db,
    account_id: &str,
    category: &str,
    channel: &str,
    enabled: bool,
) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO notification_preferences (account_id, category, channel, enabled) VALUES (")
        .text(account_id)
        .push(", ")
        .text(category)
        .push(", ")
        .text(channel)
        .push(", ")
        .int(i64::from(enabled))
        .push(") ON CONFLICT (account_id, category, channel) DO UPDATE SET enabled = excluded.enabled");
    db.execute(&b.finish()).await.map(|_| ())
}

/// Time zone, language and quiet hours of a user.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsRow {
    pub time_zone: String,
    pub language: String,
    pub quiet_start: Option<i64>,
    pub quiet_end: Option<i64>,
}

pub async fn settings(db: &dyn Db, account_id: &str) -> Result<Option<SettingsRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT time_zone, language, quiet_start, quiet_end FROM notification_settings WHERE account_id = ")
        .text(account_id);
    let cols = [Col::Text, Col::Text, Col::Int, Col::Int];
    match db.fetch(&b.finish(), &cols).await?.into_iter().next() {
        Some(r) => {
            let mut it = r.into_iter();
            Ok(Some(SettingsRow {
                time_zone: text(it.next())?.ok_or_else(corrupt)?,
                language: text(it.next())?.ok_or_else(corrupt)?,
                quiet_start: int(it.next())?,
                quiet_end: int(it.next())?,
            }))
        }
        None => Ok(None),
    }
}

pub async fn set_settings(db: &dyn Db, account_id: &str, s: &SettingsRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO notification_settings (account_id, time_zone, language, quiet_start, quiet_end) VALUES (")
        .text(account_id)
        .push(", ")
        .text(&s.time_zone)
        .push(", ")
        .text(&s.language)
        .push(", ")
        .bind(Val::Int(s.quiet_start))
        .push(", ")
        .bind(Val::Int(s.quiet_end))
        .push(
            ") ON CONFLICT (account_id) DO UPDATE SET time_zone = excluded.time_zone, language = excluded.language, \
             quiet_start = excluded.quiet_start, quiet_end = excluded.quiet_end",
        );
    db.execute(&b.finish()).await.map(|_| ())
}

// ---------------------------------------------------------------- push subscriptions

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SubscriptionRow {
    pub id: String,
    pub account_id: String,
    /// `webpush` or `fcm`
    pub kind: String,
    pub endpoint: String,
    pub p256dh: Option<String>,
    pub auth: Option<String>,
    pub created_at: i64,
}

const SUB_COLUMNS: &str = "id, account_id, kind, endpoint, p256dh, auth, created_at";
const SUB_COLS: [Col; 7] = [Col::Text, Col::Text, Col::Text, Col::Text, Col::Text, Col::Text, Col::Int];

fn decode_sub(row: Vec<Val>) -> Result<SubscriptionRow, StoreError> {
    let mut it = row.into_iter();
    Ok(SubscriptionRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        kind: text(it.next())?.ok_or_else(corrupt)?,
        endpoint: text(it.next())?.ok_or_else(corrupt)?,
        p256dh: text(it.next())?,
        auth: text(it.next())?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
    })
}

/// Registers a subscription (or moves an existing endpoint to this account with new keys);
/// answers the stored row.
pub async fn subscription_upsert(db: &dyn Db, s: &SubscriptionRow) -> Result<SubscriptionRow, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO push_subscriptions (").push(SUB_COLUMNS).push(") VALUES (");
    b.text(&s.id).push(", ").text(&s.account_id).push(", ").text(&s.kind).push(", ").text(&s.endpoint).push(", ");
    opt_text(&mut b, s.p256dh.as_deref());
    b.push(", ");
    opt_text(&mut b, s.auth.as_deref());
    b.push(", ").int(s.created_at).push(
        ") ON CONFLICT (kind, endpoint) DO UPDATE SET account_id = excluded.account_id, p256dh = excluded.p256dh, \
         auth = excluded.auth RETURNING ",
    );
    b.push(SUB_COLUMNS);
    db.fetch_write(&b.finish(), &SUB_COLS).await?.into_iter().next().map(decode_sub).transpose()?.ok_or_else(corrupt)
}

pub async fn subscriptions_of(db: &dyn Db, account_id: &str) -> Result<Vec<SubscriptionRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ")
        .push(SUB_COLUMNS)
        .push(" FROM push_subscriptions WHERE account_id = ")
        .text(account_id)
        .push(" ORDER BY created_at, id");
    db.fetch(&b.finish(), &SUB_COLS).await?.into_iter().map(decode_sub).collect()
}

pub async fn subscription(db: &dyn Db, id: &str) -> Result<Option<SubscriptionRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(SUB_COLUMNS).push(" FROM push_subscriptions WHERE id = ").text(id);
    db.fetch_write(&b.finish(), &SUB_COLS).await?.into_iter().next().map(decode_sub).transpose()
}

pub async fn subscription_delete(db: &dyn Db, id: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM push_subscriptions WHERE id = ").text(id);
    Ok(db.execute(&b.finish()).await? == 1)
}
