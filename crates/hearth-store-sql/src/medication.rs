//! The medication tables (migration `0020_medication.sql`), written once over [`Db`] for both
//! backends: one reminder plan per schedule (how far ahead its reminders are in the outbox, for
//! which schedule version and time zone). The decisions live in `hearth-medication`; only that
//! crate calls this module.

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db, Val};

/// One schedule's reminder plan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PlanRow {
    /// `MedicationStatement/{id}` or `MedicationRequest/{id}`.
    pub schedule: String,
    pub patient: String,
    /// What the reminders were written for (schedule version and time zone).
    pub fingerprint: String,
    /// Part of the reminders' idempotency keys; raised on every replan.
    pub generation: i64,
    /// Reminders are in the outbox up to this instant (Unix ms).
    pub planned_until: i64,
}

const COLUMNS: &str = "schedule, patient, fingerprint, generation, planned_until";
const COLS: [Col; 5] = [Col::Text, Col::Text, Col::Text, Col::Int, Col::Int];

fn decode(row: Vec<Val>) -> Result<PlanRow, StoreError> {
    let mut it = row.into_iter();
    Ok(PlanRow {
        schedule: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?.ok_or_else(corrupt)?,
        fingerprint: text(it.next())?.ok_or_else(corrupt)?,
        generation: int(it.next())?.ok_or_else(corrupt)?,
        planned_until: int(it.next())?.ok_or_else(corrupt)?,
    })
}

/// The plan of one schedule.
pub async fn plan(db: &dyn Db, schedule: &str) -> Result<Option<PlanRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM medication_reminder_plans WHERE schedule = ").text(schedule);
    db.fetch(&b.finish(), &COLS).await?.into_iter().next().map(decode).transpose()
}

/// Every plan.
pub async fn plans(db: &dyn Db) -> Result<Vec<PlanRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM medication_reminder_plans ORDER BY schedule");
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// Writes a plan (insert or replace).
pub async fn put_plan(db: &dyn Db, row: &PlanRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO medication_reminder_plans (").push(COLUMNS).push(") VALUES (");
    b.text(&row.schedule).push(", ").text(&row.patient).push(", ").text(&row.fingerprint).push(", ");
    b.int(row.generation).push(", ").int(row.planned_until).push(")");
    b.push(" ON CONFLICT (schedule) DO UPDATE SET patient = excluded.patient, fingerprint = excluded.fingerprint,");
    b.push(" generation = excluded.generation, planned_until = excluded.planned_until");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Forgets a plan (its schedule ended).
pub async fn delete_plan(db: &dyn Db, schedule: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM medication_reminder_plans WHERE schedule = ").text(schedule);
    Ok(db.execute(&b.finish()).await? > 0)
}
