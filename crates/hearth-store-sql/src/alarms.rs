//! The alarm tables (migration `0023_alarms.sql`), written once over [`Db`] for both backends:
//! each account's alarms with their delivery plan (revision, zone, how far ahead), and the
//! occurrences the planner wrote to the outbox (the fired ones are the alarms' notifications).
//! The decisions live in `hearth-alarms`; only that crate calls this module. Every query names
//! the account: another account's alarm is never read or changed.

use hearth_store::StoreError;

use crate::identity::{corrupt, int, opt_text, text};
use crate::{Builder, Col, Db, Val};

/// One alarm.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlarmRow {
    pub id: String,
    pub account_id: String,
    /// `medication`, `water` or `custom`.
    pub kind: String,
    pub label: String,
    pub enabled: bool,
    /// The first occurrence, local wall-clock `YYYY-MM-DDTHH:MM:SS`.
    pub start_local: String,
    /// `None`: one-off.
    pub rrule: Option<String>,
    /// `None`: the account's zone.
    pub time_zone: Option<String>,
    /// Part of the deliveries' idempotency keys; raised on every edit and zone change.
    pub revision: i64,
    /// The zone the pending deliveries were written for.
    pub planned_zone: Option<String>,
    /// Deliveries are in the outbox up to this instant (Unix ms).
    pub planned_until: i64,
    pub created_at: i64,
    pub updated_at: i64,
}

const COLUMNS: &str = "id, account_id, kind, label, enabled, start_local, rrule, time_zone, revision, planned_zone, \
                       planned_until, created_at, updated_at";
const COLS: [Col; 13] = [
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
];

fn decode(row: Vec<Val>) -> Result<AlarmRow, StoreError> {
    let mut it = row.into_iter();
    Ok(AlarmRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        kind: text(it.next())?.ok_or_else(corrupt)?,
        label: text(it.next())?.ok_or_else(corrupt)?,
        enabled: int(it.next())?.ok_or_else(corrupt)? != 0,
        start_local: text(it.next())?.ok_or_else(corrupt)?,
        rrule: text(it.next())?,
        time_zone: text(it.next())?,
        revision: int(it.next())?.ok_or_else(corrupt)?,
        planned_zone: text(it.next())?,
        planned_until: int(it.next())?.ok_or_else(corrupt)?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
        updated_at: int(it.next())?.ok_or_else(corrupt)?,
    })
}

/// Inserts a new alarm.
pub async fn insert(db: &dyn Db, a: &AlarmRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO alarms (").push(COLUMNS).push(") VALUES (");
    b.text(&a.id).push(", ").text(&a.account_id).push(", ").text(&a.kind).push(", ").text(&a.label).push(", ");
    b.int(i64::from(a.enabled)).push(", ").text(&a.start_local).push(", ");
    opt_text(&mut b, a.rrule.as_deref());
    b.push(", ");
    opt_text(&mut b, a.time_zone.as_deref());
    b.push(", ").int(a.revision).push(", ");
    opt_text(&mut b, a.planned_zone.as_deref());
    b.push(", ").int(a.planned_until).push(", ").int(a.created_at).push(", ").int(a.updated_at).push(")");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Replaces what the user set (kind, label, enabled, start, rule, zone) of `a.id` if it is
/// `a.account_id`'s and still at `a.revision - 1` (the version the caller read), and resets its
/// plan (`a.revision`, nothing planned from `a.planned_until`). False: no such alarm of that
/// account at that revision.
pub async fn update(db: &dyn Db, a: &AlarmRow) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE alarms SET kind = ").text(&a.kind).push(", label = ").text(&a.label);
    b.push(", enabled = ").int(i64::from(a.enabled)).push(", start_local = ").text(&a.start_local);
    b.push(", rrule = ");
    opt_text(&mut b, a.rrule.as_deref());
    b.push(", time_zone = ");
    opt_text(&mut b, a.time_zone.as_deref());
    b.push(", revision = ").int(a.revision).push(", planned_zone = NULL, planned_until = ").int(a.planned_until);
    b.push(", updated_at = ").int(a.updated_at);
    b.push(" WHERE id = ").text(&a.id).push(" AND account_id = ").text(&a.account_id);
    b.push(" AND revision = ").int(a.revision - 1);
    Ok(db.execute(&b.finish()).await? > 0)
}

/// One of `account`'s alarms.
pub async fn get(db: &dyn Db, account: &str, id: &str) -> Result<Option<AlarmRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM alarms WHERE id = ").text(id).push(" AND account_id = ").text(account);
    db.fetch(&b.finish(), &COLS).await?.into_iter().next().map(decode).transpose()
}

/// `account`'s alarms, oldest first, at most `limit`.
pub async fn of_account(db: &dyn Db, account: &str, limit: i64) -> Result<Vec<AlarmRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM alarms WHERE account_id = ").text(account);
    b.push(" ORDER BY created_at, id LIMIT ").int(limit);
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// How many alarms `account` has.
pub async fn count(db: &dyn Db, account: &str) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COUNT(*) FROM alarms WHERE account_id = ").text(account);
    let rows = db.fetch(&b.finish(), &[Col::Int]).await?;
    int(rows.into_iter().next().and_then(|r| r.into_iter().next()))?.ok_or_else(corrupt)
}

/// Enabled alarms planned less far ahead than `before` (Unix ms), least planned first.
pub async fn due_for_planning(db: &dyn Db, before: i64, limit: i64) -> Result<Vec<AlarmRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM alarms WHERE enabled = 1 AND planned_until < ").int(before);
    b.push(" ORDER BY planned_until, id LIMIT ").int(limit);
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// Records that `id`'s deliveries are written up to `until` for `zone`, only if the alarm is
/// still at `revision` (false: it was edited or deleted meanwhile; the caller rolls back). On
/// PostgreSQL the row stays locked to the end of the transaction, so an edit waits for it.
pub async fn set_planned(db: &dyn Db, id: &str, revision: i64, zone: &str, until: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE alarms SET planned_zone = ").text(zone).push(", planned_until = ").int(until);
    b.push(" WHERE id = ").text(id).push(" AND revision = ").int(revision);
    Ok(db.execute(&b.finish()).await? > 0)
}

/// Raises `id`'s revision and forgets its plan (the zone it was planned in changed).
pub async fn bump_revision(db: &dyn Db, id: &str, revision: i64, now: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE alarms SET revision = ").int(revision + 1).push(", planned_zone = NULL, planned_until = ").int(now);
    b.push(" WHERE id = ").text(id).push(" AND revision = ").int(revision);
    Ok(db.execute(&b.finish()).await? > 0)
}

/// Deletes one of `account`'s alarms; false: no such alarm of theirs.
pub async fn delete(db: &dyn Db, account: &str, id: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM alarms WHERE id = ").text(id).push(" AND account_id = ").text(account);
    Ok(db.execute(&b.finish()).await? > 0)
}

/// One occurrence written to the outbox.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OccurrenceRow {
    pub id: String,
    pub alarm_id: String,
    pub account_id: String,
    pub revision: i64,
    /// Unix ms.
    pub at: i64,
    pub kind: String,
    pub label: String,
    pub read_at: Option<i64>,
}

const OCC_COLUMNS: &str = "id, alarm_id, account_id, revision, at, kind, label, read_at";
const OCC_COLS: [Col; 8] = [Col::Text, Col::Text, Col::Text, Col::Int, Col::Int, Col::Text, Col::Text, Col::Int];

fn decode_occurrence(row: Vec<Val>) -> Result<OccurrenceRow, StoreError> {
    let mut it = row.into_iter();
    Ok(OccurrenceRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        alarm_id: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        revision: int(it.next())?.ok_or_else(corrupt)?,
        at: int(it.next())?.ok_or_else(corrupt)?,
        kind: text(it.next())?.ok_or_else(corrupt)?,
        label: text(it.next())?.ok_or_else(corrupt)?,
        read_at: int(it.next())?,
    })
}

/// Records an occurrence; false if this alarm, revision and instant is there already.
pub async fn insert_occurrence(db: &dyn Db, o: &OccurrenceRow) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO alarm_occurrences (").push(OCC_COLUMNS).push(") VALUES (");
    b.text(&o.id).push(", ").text(&o.alarm_id).push(", ").text(&o.account_id).push(", ").int(o.revision);
    b.push(", ").int(o.at).push(", ").text(&o.kind).push(", ").text(&o.label).push(", NULL)");
    b.push(" ON CONFLICT (alarm_id, revision, at) DO NOTHING");
    Ok(db.execute(&b.finish()).await? > 0)
}

/// Forgets `alarm`'s occurrences still ahead of `now` (Unix ms); answers how many.
pub async fn delete_pending(db: &dyn Db, alarm: &str, now: i64) -> Result<u64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM alarm_occurrences WHERE alarm_id = ").text(alarm).push(" AND at > ").int(now);
    db.execute(&b.finish()).await
}

/// `account`'s fired occurrences (at or before `now`), newest first, from before the cursor
/// `(at, id)` when given, only unread ones if asked; at most `limit`.
pub async fn fired(
    db: &dyn Db,
    account: &str,
    now: i64,
    unread_only: bool,
    before: Option<(i64, &str)>,
    limit: i64,
) -> Result<Vec<OccurrenceRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(OCC_COLUMNS).push(" FROM alarm_occurrences WHERE account_id = ").text(account);
    b.push(" AND at <= ").int(now);
    if unread_only {
        b.push(" AND read_at IS NULL");
    }
    if let Some((at, id)) = before {
        b.push(" AND (at < ").int(at).push(" OR (at = ").int(at).push(" AND id < ").text(id).push("))");
    }
    b.push(" ORDER BY at DESC, id DESC LIMIT ").int(limit);
    db.fetch(&b.finish(), &OCC_COLS).await?.into_iter().map(decode_occurrence).collect()
}

/// Marks one of `account`'s fired occurrences read at `now` (kept if already read); the row as
/// it is then, `None` if there is no such fired occurrence of theirs.
pub async fn mark_read(db: &dyn Db, account: &str, id: &str, now: i64) -> Result<Option<OccurrenceRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE alarm_occurrences SET read_at = ").int(now);
    b.push(" WHERE id = ").text(id).push(" AND account_id = ").text(account);
    b.push(" AND at <= ").int(now).push(" AND read_at IS NULL");
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(OCC_COLUMNS).push(" FROM alarm_occurrences WHERE id = ").text(id);
    b.push(" AND account_id = ").text(account).push(" AND at <= ").int(now);
    db.fetch(&b.finish(), &OCC_COLS).await?.into_iter().next().map(decode_occurrence).transpose()
}
