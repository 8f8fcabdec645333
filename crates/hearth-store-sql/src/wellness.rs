//! The wellness tables (migration `0027_wellness.sql`), written once over [`Db`] for both
//! backends: which patients get a daily summary, at what local time, the last day summarised and
//! when the planner looks again; and who read each patient's care-team chat up to when. The decisions live in `hearth-wellness`; only that crate calls
//! this module.

use hearth_store::StoreError;

use crate::identity::{corrupt, int, opt_text, text};
use crate::{Builder, Col, Db, Val};

/// One patient's daily-summary plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    pub patient_id: String,
    /// `HH:MM` local; `None`: the server's default.
    pub summary_time: Option<String>,
    pub enabled: bool,
    /// The last local day summarised (`YYYY-MM-DD`).
    pub last_day: Option<String>,
    /// When the planner looks again (Unix ms).
    pub next_due: i64,
}

const COLUMNS: &str = "patient_id, summary_time, enabled, last_day, next_due";
const COLS: [Col; 5] = [Col::Text, Col::Text, Col::Int, Col::Text, Col::Int];

fn decode(row: Vec<Val>) -> Result<PlanRow, StoreError> {
    let mut it = row.into_iter();
    Ok(PlanRow {
        patient_id: text(it.next())?.ok_or_else(corrupt)?,
        summary_time: text(it.next())?,
        enabled: int(it.next())?.ok_or_else(corrupt)? != 0,
        last_day: text(it.next())?,
        next_due: int(it.next())?.ok_or_else(corrupt)?,
    })
}

/// Enrols `patient` (due at once) unless they are already.
pub async fn enrol(db: &dyn Db, patient: &str, now: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO wellness_summary_plans (patient_id, summary_time, enabled, last_day, next_due, created_at, updated_at) VALUES (");
    b.text(patient).push(", NULL, 1, NULL, ").int(now).push(", ").int(now).push(", ").int(now);
    b.push(") ON CONFLICT (patient_id) DO NOTHING");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Sets `patient`'s time and whether summaries go out (enrolling them); due at once.
pub async fn set(db: &dyn Db, patient: &str, time: Option<&str>, enabled: bool, now: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO wellness_summary_plans (patient_id, summary_time, enabled, last_day, next_due, created_at, updated_at) VALUES (");
    b.text(patient).push(", ");
    opt_text(&mut b, time);
    b.push(", ").int(i64::from(enabled)).push(", NULL, ").int(now).push(", ").int(now).push(", ").int(now);
    b.push(
        ") ON CONFLICT (patient_id) DO UPDATE SET summary_time = excluded.summary_time, enabled = excluded.enabled, ",
    );
    b.push("next_due = excluded.next_due, updated_at = excluded.updated_at");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// `patient`'s plan.
pub async fn get(db: &dyn Db, patient: &str) -> Result<Option<PlanRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM wellness_summary_plans WHERE patient_id = ").text(patient);
    db.fetch(&b.finish(), &COLS).await?.into_iter().next().map(decode).transpose()
}

/// Enabled plans due at `now`, earliest first, at most `limit`.
pub async fn due(db: &dyn Db, now: i64, limit: i64) -> Result<Vec<PlanRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM wellness_summary_plans WHERE enabled = 1 AND next_due <= ").int(now);
    b.push(" ORDER BY next_due, patient_id LIMIT ").int(limit);
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// Records the last day summarised and when to look again.
pub async fn mark(db: &dyn Db, patient: &str, last_day: Option<&str>, next_due: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE wellness_summary_plans SET last_day = ");
    opt_text(&mut b, last_day);
    b.push(", next_due = ").int(next_due).push(" WHERE patient_id = ").text(patient);
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Who read a patient's chat thread, and up to when.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChatRead {
    pub account_id: String,
    pub role: String,
    /// Unix ms.
    pub read_at: i64,
}

/// Records that `account` read `patient`'s thread up to `at` (never moves back).
pub async fn chat_read(db: &dyn Db, patient: &str, account: &str, role: &str, at: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO wellness_chat_reads (patient_id, account_id, role, read_at) VALUES (");
    b.text(patient).push(", ").text(account).push(", ").text(role).push(", ").int(at);
    b.push(") ON CONFLICT (patient_id, account_id) DO UPDATE SET read_at = excluded.read_at ");
    b.push("WHERE wellness_chat_reads.read_at < excluded.read_at");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Everyone who read `patient`'s thread.
pub async fn chat_reads(db: &dyn Db, patient: &str) -> Result<Vec<ChatRead>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT account_id, role, read_at FROM wellness_chat_reads WHERE patient_id = ").text(patient);
    b.push(" ORDER BY account_id");
    db.fetch(&b.finish(), &[Col::Text, Col::Text, Col::Int])
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            Ok(ChatRead {
                account_id: text(it.next())?.ok_or_else(corrupt)?,
                role: text(it.next())?.ok_or_else(corrupt)?,
                read_at: int(it.next())?.ok_or_else(corrupt)?,
            })
        })
        .collect()
}
