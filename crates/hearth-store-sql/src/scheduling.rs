//! The scheduling tables (migration `0012_scheduling.sql`), written once over [`Db`] for both
//! backends: booking claims (a practitioner's booked time in 5-minute cells, one primary key so
//! that overlapping bookings cannot both commit) and the waitlist. The decisions (which cells a
//! slot covers, who is offered a freed slot) live in `hearth-server::scheduling`.
//!
//! Claims are written inside the booking's transaction (a [`crate::notify::TxDb`] made from its
//! `GuardedTx`), so the Appointment, its claims and its reminders commit together.

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db, Val};

/// Length of one claim cell in milliseconds (5 minutes): durations and buffers are multiples.
pub const CELL_MS: i64 = 5 * 60 * 1000;

/// Claims `cells` (cell start times in ms) of `practitioner` for `appointment`. Answers false,
/// having claimed nothing that will commit, when any cell is already taken: the caller must
/// roll back its transaction. (`ON CONFLICT DO NOTHING` waits, on PostgreSQL, for a concurrent
/// uncommitted claim of the same cell to commit or roll back, so the count is exact.)
pub async fn claim(db: &dyn Db, practitioner: &str, cells: &[i64], appointment: &str) -> Result<bool, StoreError> {
    if cells.is_empty() {
        return Ok(true);
    }
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO sched_claims (practitioner, cell, appointment) VALUES ");
    for (i, cell) in cells.iter().enumerate() {
        if i > 0 {
            b.push(", ");
        }
        b.push("(").text(practitioner).push(", ").int(*cell).push(", ").text(appointment).push(")");
    }
    b.push(" ON CONFLICT DO NOTHING");
    let inserted = db.execute(&b.finish()).await?;
    Ok(usize::try_from(inserted).is_ok_and(|n| n == cells.len()))
}

/// Releases every cell of `appointment` (cancelled, or moved by a reschedule).
pub async fn release(db: &dyn Db, appointment: &str) -> Result<u64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM sched_claims WHERE appointment = ").text(appointment);
    db.execute(&b.finish()).await
}

/// The cells `appointment` holds: `(practitioner, cell)`, in order.
pub async fn held(db: &dyn Db, appointment: &str) -> Result<Vec<(String, i64)>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT practitioner, cell FROM sched_claims WHERE appointment = ")
        .text(appointment)
        .push(" ORDER BY practitioner, cell");
    db.fetch(&b.finish(), &[Col::Text, Col::Int])
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            let practitioner = text(it.next())?.ok_or_else(corrupt)?;
            let cell = int(it.next())?.ok_or_else(corrupt)?;
            Ok((practitioner, cell))
        })
        .collect()
}

/// The claimed cells of `practitioner` in `[from, to)`: `(cell, appointment)`, in time order.
pub async fn claimed(db: &dyn Db, practitioner: &str, from: i64, to: i64) -> Result<Vec<(i64, String)>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT cell, appointment FROM sched_claims WHERE practitioner = ")
        .text(practitioner)
        .push(" AND cell >= ")
        .int(from)
        .push(" AND cell < ")
        .int(to)
        .push(" ORDER BY cell");
    db.fetch(&b.finish(), &[Col::Int, Col::Text])
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            let cell = int(it.next())?.ok_or_else(corrupt)?;
            let appointment = text(it.next())?.ok_or_else(corrupt)?;
            Ok((cell, appointment))
        })
        .collect()
}

/// One waitlist entry.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct WaitRow {
    pub id: String,
    pub practitioner: String,
    pub patient: String,
    pub account_id: Option<String>,
    pub earliest: i64,
    pub latest: i64,
    pub created_at: i64,
    pub offered_at: Option<i64>,
    pub offered_start: Option<i64>,
}

const WAIT_COLUMNS: &str =
    "id, practitioner, patient, account_id, earliest, latest, created_at, offered_at, offered_start";
const WAIT_COLS: [Col; 9] =
    [Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Int, Col::Int, Col::Int, Col::Int];

fn decode_wait(row: Vec<Val>) -> Result<WaitRow, StoreError> {
    let mut it = row.into_iter();
    Ok(WaitRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        practitioner: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?,
        earliest: int(it.next())?.ok_or_else(corrupt)?,
        latest: int(it.next())?.ok_or_else(corrupt)?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
        offered_at: int(it.next())?,
        offered_start: int(it.next())?,
    })
}

pub async fn wait_insert(db: &dyn Db, row: &WaitRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO sched_waitlist (").push(WAIT_COLUMNS).push(") VALUES (");
    b.text(&row.id).push(", ").text(&row.practitioner).push(", ").text(&row.patient).push(", ");
    b.bind(Val::Text(row.account_id.clone())).push(", ");
    b.int(row.earliest).push(", ").int(row.latest).push(", ").int(row.created_at).push(", ");
    b.bind(Val::Int(row.offered_at)).push(", ").bind(Val::Int(row.offered_start)).push(")");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// The waiting entries of the given patients (a caller's reach), oldest first.
pub async fn wait_list(db: &dyn Db, patients: Option<&[String]>) -> Result<Vec<WaitRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(WAIT_COLUMNS).push(" FROM sched_waitlist");
    if let Some(patients) = patients {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        b.push(" WHERE patient IN ").text_list(patients.iter().map(String::as_str));
    }
    b.push(" ORDER BY created_at, id");
    db.fetch(&b.finish(), &WAIT_COLS).await?.into_iter().map(decode_wait).collect()
}

pub async fn wait_delete(db: &dyn Db, id: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM sched_waitlist WHERE id = ").text(id);
    Ok(db.execute(&b.finish()).await? > 0)
}

/// Marks the oldest not-yet-offered entry of `practitioner` whose window holds `[start, end)`
/// as offered that slot, and answers it (`UPDATE … RETURNING`, so two freed slots at once go to
/// two different patients).
pub async fn wait_offer(
    db: &dyn Db,
    practitioner: &str,
    start: i64,
    end: i64,
    now: i64,
) -> Result<Option<WaitRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE sched_waitlist SET offered_at = ")
        .int(now)
        .push(", offered_start = ")
        .int(start)
        // Checked again outside the sub-select: PostgreSQL re-evaluates only the outer
        // condition after waiting for a concurrent offer of the same row.
        .push(" WHERE offered_at IS NULL AND id IN (SELECT id FROM sched_waitlist WHERE practitioner = ")
        .text(practitioner)
        .push(" AND offered_at IS NULL AND earliest <= ")
        .int(start)
        .push(" AND latest >= ")
        .int(end)
        .push(" ORDER BY created_at, id LIMIT 1) RETURNING ")
        .push(WAIT_COLUMNS);
    db.fetch_write(&b.finish(), &WAIT_COLS).await?.into_iter().next().map(decode_wait).transpose()
}

/// Takes one of the `max` places of `practitioner`'s local day `day` (`YYYY-MM-DD`) for
/// `appointment`: the per-day limit, exact under concurrency like the cells. The places are
/// claim rows keyed `<practitioner>#<day>` with cells `0..max`; the first free one is taken
/// (a place held by an uncommitted booking is waited for on PostgreSQL). False: the day is full.
pub async fn claim_day(
    db: &dyn Db,
    practitioner: &str,
    day: &str,
    max: u32,
    appointment: &str,
) -> Result<bool, StoreError> {
    let key = format!("{practitioner}#{day}");
    for place in 0..i64::from(max) {
        let mut b = Builder::new(db.dialect());
        b.push("INSERT INTO sched_claims (practitioner, cell, appointment) VALUES (")
            .text(&key)
            .push(", ")
            .int(place)
            .push(", ")
            .text(appointment)
            .push(") ON CONFLICT DO NOTHING");
        if db.execute(&b.finish()).await? == 1 {
            return Ok(true);
        }
    }
    Ok(false)
}
