//! The registry's invitation table (migration `0015_registry.sql`), written once over [`Db`] for
//! both backends. The decisions (who may invite, what a claim creates) live in `hearth-registry`;
//! only that crate calls this module.
//!
//! A code is found by its keyed hash (`code_hash`, unique). A claim spends the invitation with
//! [`spend`], a conditional update that only one request can win, in the transaction that creates
//! the account; [`state`] then tells a refused claim why (used or expired) for a code that exists.

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db, Val};

/// One invitation row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct InviteRow {
    pub id: String,
    pub patient: String,
    /// Hex of the keyed hash of the code.
    pub code_hash: String,
    /// `sms` or `email`.
    pub channel: String,
    /// The inviting account.
    pub created_by: String,
    pub created_at: i64,
    pub expires_at: i64,
    pub used_at: Option<i64>,
    /// The account the claim created.
    pub account_id: Option<String>,
}

const COLUMNS: &str = "id, patient, code_hash, channel, created_by, created_at, expires_at, used_at, account_id";
const COLS: [Col; 9] = [Col::Text, Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Int, Col::Int, Col::Text];

fn decode(row: Vec<Val>) -> Result<InviteRow, StoreError> {
    let mut it = row.into_iter();
    Ok(InviteRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?.ok_or_else(corrupt)?,
        code_hash: text(it.next())?.ok_or_else(corrupt)?,
        channel: text(it.next())?.ok_or_else(corrupt)?,
        created_by: text(it.next())?.ok_or_else(corrupt)?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
        expires_at: int(it.next())?.ok_or_else(corrupt)?,
        used_at: int(it.next())?,
        account_id: text(it.next())?,
    })
}

/// Records a new invitation, ending every earlier unspent one of the same patient at `created_at`
/// (one outstanding invitation per patient: the newest message is the one that works).
pub async fn insert(db: &dyn Db, row: &InviteRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE registry_invites SET expires_at = ")
        .int(row.created_at)
        .push(" WHERE patient = ")
        .text(&row.patient)
        .push(" AND used_at IS NULL AND expires_at > ")
        .int(row.created_at);
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO registry_invites (").push(COLUMNS).push(") VALUES (");
    b.text(&row.id).push(", ").text(&row.patient).push(", ").text(&row.code_hash).push(", ");
    b.text(&row.channel).push(", ").text(&row.created_by).push(", ");
    b.int(row.created_at).push(", ").int(row.expires_at).push(", ");
    b.bind(Val::Int(row.used_at)).push(", ").bind(Val::Text(row.account_id.clone())).push(")");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// The invitation whose code hashes to `code_hash`, whatever its state.
pub async fn by_hash(db: &dyn Db, code_hash: &str) -> Result<Option<InviteRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM registry_invites WHERE code_hash = ").text(code_hash);
    db.fetch(&b.finish(), &COLS).await?.into_iter().next().map(decode).transpose()
}

/// Spends the invitation `id` for `account_id` at `now`: true for the one caller whose update
/// found it unspent and unexpired (run it in the transaction that creates the account).
pub async fn spend(db: &dyn Db, id: &str, account_id: &str, now: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE registry_invites SET used_at = ")
        .int(now)
        .push(", account_id = ")
        .text(account_id)
        .push(" WHERE id = ")
        .text(id)
        .push(" AND used_at IS NULL AND expires_at > ")
        .int(now);
    Ok(db.execute(&b.finish()).await? == 1)
}

/// The invitations of `patient`, newest first (at most `limit`).
pub async fn of_patient(db: &dyn Db, patient: &str, limit: i64) -> Result<Vec<InviteRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ")
        .push(COLUMNS)
        .push(" FROM registry_invites WHERE patient = ")
        .text(patient)
        .push(" ORDER BY created_at DESC, id DESC LIMIT ")
        .int(limit);
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// The accounts linked to `fhir_user` (`Patient/<id>`): whether a record is already claimed.
pub async fn accounts_linked(db: &dyn Db, fhir_user: &str) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id FROM accounts WHERE fhir_user = ").text(fhir_user).push(" ORDER BY id LIMIT 10");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}
