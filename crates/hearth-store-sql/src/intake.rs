//! The intake tables (migration `0014_intake.sql`), written once over [`Db`] for both backends:
//! one row per interview session. The decisions (what a turn does, who may see a session) live
//! in `hearth-intake`; only that crate calls this module.
//!
//! Every change is conditional on the version it read (`… WHERE id = ? AND version = ?`), so two
//! processes (or two sockets) applying a turn to the same session cannot both win; the loser
//! reads the session again. A change that writes FHIR resources runs on the same transaction
//! (a [`crate::notify::TxDb`] made from its `GuardedTx`).

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db, Val};

/// One interview session.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SessionRow {
    pub id: String,
    pub patient: String,
    pub appointment: Option<String>,
    pub practitioner: Option<String>,
    pub language: String,
    /// JSON array of pack names.
    pub packs: String,
    /// JSON: the interview's state.
    pub state: String,
    /// JSON array of the free-text turns.
    pub turns: String,
    /// `active`, `emergency` or `finished`.
    pub status: String,
    pub urgency: String,
    pub urgency_rank: i64,
    /// JSON array of red-flag codes.
    pub red_flags: String,
    /// The id of the FHIR Consent given for the interview.
    pub consent: String,
    pub composition: Option<String>,
    pub created_by: String,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<i64>,
    pub created_at: i64,
    pub updated_at: i64,
    pub version: i64,
}

const COLUMNS: &str = "id, patient, appointment, practitioner, language, packs, state, turns, status, urgency, \
     urgency_rank, red_flags, consent, composition, created_by, reviewed_by, reviewed_at, created_at, updated_at, version";
const COLS: [Col; 20] = [
    Col::Text,
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
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Int,
];

fn decode(row: Vec<Val>) -> Result<SessionRow, StoreError> {
    let mut it = row.into_iter();
    let mut req = || text(it.next()).and_then(|v| v.ok_or_else(corrupt));
    let id = req()?;
    let patient = req()?;
    let appointment = text(it.next())?;
    let practitioner = text(it.next())?;
    let mut req = || text(it.next()).and_then(|v| v.ok_or_else(corrupt));
    let language = req()?;
    let packs = req()?;
    let state = req()?;
    let turns = req()?;
    let status = req()?;
    let urgency = req()?;
    let urgency_rank = int(it.next())?.ok_or_else(corrupt)?;
    let mut req = || text(it.next()).and_then(|v| v.ok_or_else(corrupt));
    let red_flags = req()?;
    let consent = req()?;
    let composition = text(it.next())?;
    let created_by = text(it.next())?.ok_or_else(corrupt)?;
    Ok(SessionRow {
        id,
        patient,
        appointment,
        practitioner,
        language,
        packs,
        state,
        turns,
        status,
        urgency,
        urgency_rank,
        red_flags,
        consent,
        composition,
        created_by,
        reviewed_by: text(it.next())?,
        reviewed_at: int(it.next())?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
        updated_at: int(it.next())?.ok_or_else(corrupt)?,
        version: int(it.next())?.ok_or_else(corrupt)?,
    })
}

/// Inserts a new session (version 1 is the caller's to set).
pub async fn insert(db: &dyn Db, r: &SessionRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO intake_sessions (").push(COLUMNS).push(") VALUES (");
    b.text(&r.id).push(", ").text(&r.patient).push(", ");
    b.bind(Val::Text(r.appointment.clone())).push(", ").bind(Val::Text(r.practitioner.clone())).push(", ");
    b.text(&r.language).push(", ").text(&r.packs).push(", ").text(&r.state).push(", ").text(&r.turns).push(", ");
    b.text(&r.status).push(", ").text(&r.urgency).push(", ").int(r.urgency_rank).push(", ");
    b.text(&r.red_flags).push(", ").text(&r.consent).push(", ").bind(Val::Text(r.composition.clone())).push(", ");
    b.text(&r.created_by).push(", ").bind(Val::Text(r.reviewed_by.clone())).push(", ");
    b.bind(Val::Int(r.reviewed_at)).push(", ").int(r.created_at).push(", ").int(r.updated_at).push(", ");
    b.int(r.version).push(")");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// The session `id`.
pub async fn get(db: &dyn Db, id: &str) -> Result<Option<SessionRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM intake_sessions WHERE id = ").text(id);
    db.fetch(&b.finish(), &COLS).await?.into_iter().next().map(decode).transpose()
}

/// Writes `r` over the stored session if that is still at version `read` (`r.version` is the
/// new one). False: someone changed it meanwhile, nothing was written.
pub async fn update(db: &dyn Db, r: &SessionRow, read: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE intake_sessions SET state = ").text(&r.state);
    b.push(", turns = ").text(&r.turns).push(", status = ").text(&r.status);
    b.push(", urgency = ").text(&r.urgency).push(", urgency_rank = ").int(r.urgency_rank);
    b.push(", red_flags = ").text(&r.red_flags).push(", composition = ").bind(Val::Text(r.composition.clone()));
    b.push(", reviewed_by = ").bind(Val::Text(r.reviewed_by.clone()));
    b.push(", reviewed_at = ").bind(Val::Int(r.reviewed_at));
    b.push(", updated_at = ").int(r.updated_at).push(", version = ").int(r.version);
    b.push(" WHERE id = ").text(&r.id).push(" AND version = ").int(read);
    Ok(db.execute(&b.finish()).await? == 1)
}

/// The clinicians' queue: sessions not yet reviewed, most urgent first, then oldest first
/// (`patients`: only those patients' sessions; `None`: everyone's).
pub async fn queue(db: &dyn Db, patients: Option<&[String]>, limit: i64) -> Result<Vec<SessionRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM intake_sessions WHERE reviewed_at IS NULL");
    if let Some(patients) = patients {
        if patients.is_empty() {
            return Ok(Vec::new());
        }
        b.push(" AND patient IN ").text_list(patients.iter().map(String::as_str));
    }
    b.push(" ORDER BY urgency_rank DESC, created_at, id LIMIT ").int(limit);
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// Accounts of `role` bound to `organization` (`None`: every account of the role), for clinic
/// alerts.
pub async fn staff_accounts(db: &dyn Db, role: &str, organization: Option<&str>) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id FROM accounts WHERE role = ").text(role);
    if let Some(org) = organization {
        b.push(" AND organization = ").text(org);
    }
    b.push(" ORDER BY id LIMIT 200");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

/// The accounts linked to a FHIR resource (`Practitioner/…`).
pub async fn accounts_of(db: &dyn Db, fhir_user: &str) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id FROM accounts WHERE fhir_user = ").text(fhir_user).push(" ORDER BY id");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}
