//! The identity tables (accounts, refresh tokens, signing keys, caregiver grants), written once
//! over [`Db`] for both backends. The decisions (password policy, token rotation, reuse
//! detection) live in `hearth-auth`; this module only stores and fetches, each call one
//! statement, atomic on its own (`UPDATE … RETURNING` where a read must not race a write).

use async_trait::async_trait;
use hearth_store::StoreError;

use crate::{Builder, Col, Dialect, Sql, Val};

/// Statements on a backend's connection pool, each in its own implicit transaction.
#[async_trait]
pub trait Db: Send + Sync {
    fn dialect(&self) -> Dialect;
    /// A read-only query (may run on a read replica/connection).
    async fn fetch(&self, sql: &Sql, cols: &[Col]) -> Result<Vec<Vec<Val>>, StoreError>;
    /// A writing statement with `RETURNING` (runs on the writer).
    async fn fetch_write(&self, sql: &Sql, cols: &[Col]) -> Result<Vec<Vec<Val>>, StoreError>;
    /// A writing statement; answers the number of rows it changed.
    async fn execute(&self, sql: &Sql) -> Result<u64, StoreError>;
    /// A write transaction on the writer (SQLite `BEGIN IMMEDIATE`): statements that must commit
    /// together, such as a change and the notification it causes (see `notify::TxDb`).
    async fn begin_tx(&self) -> Result<Box<dyn DbTx>, StoreError>;
}

/// One open write transaction; dropped without [`DbTx::commit`], it rolls back.
#[async_trait]
pub trait DbTx: Send {
    fn dialect(&self) -> Dialect;
    async fn fetch(&mut self, sql: &Sql, cols: &[Col]) -> Result<Vec<Vec<Val>>, StoreError>;
    /// Answers the number of rows changed.
    async fn execute(&mut self, sql: &Sql) -> Result<u64, StoreError>;
    async fn commit(self: Box<Self>) -> Result<(), StoreError>;
}

/// One account row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccountRow {
    pub id: String,
    pub email: Option<String>,
    /// The verified phone (E.164; signs in by OTP, receives SMS). Unique.
    pub phone: Option<String>,
    /// A phone the user typed and has not yet confirmed with a code (not unique, never used).
    pub phone_pending: Option<String>,
    pub password_hash: Option<String>,
    pub role: String,
    pub fhir_user: Option<String>,
    pub organization: Option<String>,
    pub totp_secret: Option<String>,
    pub totp_enabled: bool,
    pub totp_last_step: Option<i64>,
    pub failed_logins: i64,
    pub locked_until: Option<i64>,
    pub created_at: i64,
}

const ACCOUNT_COLUMNS: &str = "id, email, phone, phone_pending, password_hash, role, fhir_user, organization, totp_secret, \
     totp_enabled, totp_last_step, failed_logins, locked_until, created_at";
const ACCOUNT_COLS: [Col; 14] = [
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
    Col::Int,
    Col::Int,
];

// Row helpers shared by the identity, two-factor and OAuth tables.

pub(crate) fn corrupt() -> StoreError {
    StoreError::Corrupt("unexpected identity row".into())
}

pub(crate) fn text(v: Option<Val>) -> Result<Option<String>, StoreError> {
    match v {
        Some(Val::Text(t)) => Ok(t),
        _ => Err(corrupt()),
    }
}

pub(crate) fn int(v: Option<Val>) -> Result<Option<i64>, StoreError> {
    match v {
        Some(Val::Int(i)) => Ok(i),
        _ => Err(corrupt()),
    }
}

fn decode_account(row: Vec<Val>) -> Result<AccountRow, StoreError> {
    let mut it = row.into_iter();
    Ok(AccountRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        email: text(it.next())?,
        phone: text(it.next())?,
        phone_pending: text(it.next())?,
        password_hash: text(it.next())?,
        role: text(it.next())?.ok_or_else(corrupt)?,
        fhir_user: text(it.next())?,
        organization: text(it.next())?,
        totp_secret: text(it.next())?,
        totp_enabled: int(it.next())?.unwrap_or(0) != 0,
        totp_last_step: int(it.next())?,
        failed_logins: int(it.next())?.unwrap_or(0),
        locked_until: int(it.next())?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
    })
}

pub(crate) fn opt_text(b: &mut Builder, v: Option<&str>) {
    b.bind(Val::Text(v.map(str::to_owned)));
}

fn opt_int(b: &mut Builder, v: Option<i64>) {
    b.bind(Val::Int(v));
}

/// Inserts an account; `Conflict` when the email or phone is taken.
pub async fn insert_account(db: &dyn Db, a: &AccountRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO accounts (").push(ACCOUNT_COLUMNS).push(") VALUES (").text(&a.id).push(", ");
    opt_text(&mut b, a.email.as_deref());
    b.push(", ");
    opt_text(&mut b, a.phone.as_deref());
    b.push(", ");
    opt_text(&mut b, a.phone_pending.as_deref());
    b.push(", ");
    opt_text(&mut b, a.password_hash.as_deref());
    b.push(", ").text(&a.role).push(", ");
    opt_text(&mut b, a.fhir_user.as_deref());
    b.push(", ");
    opt_text(&mut b, a.organization.as_deref());
    b.push(", ");
    opt_text(&mut b, a.totp_secret.as_deref());
    b.push(", ").int(i64::from(a.totp_enabled)).push(", ");
    opt_int(&mut b, a.totp_last_step);
    b.push(", ").int(a.failed_logins).push(", ");
    opt_int(&mut b, a.locked_until);
    b.push(", ").int(a.created_at).push(") ON CONFLICT DO NOTHING");
    match db.execute(&b.finish()).await? {
        0 => Err(StoreError::Conflict),
        _ => Ok(()),
    }
}

async fn account_where(db: &dyn Db, column: &str, value: &str) -> Result<Option<AccountRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(ACCOUNT_COLUMNS).push(" FROM accounts WHERE ").push(column).push(" = ").text(value);
    db.fetch(&b.finish(), &ACCOUNT_COLS).await?.into_iter().next().map(decode_account).transpose()
}

pub async fn account_by_id(db: &dyn Db, id: &str) -> Result<Option<AccountRow>, StoreError> {
    account_where(db, "id", id).await
}

/// Every account, by e-mail (at most `limit`; the admin console's list).
pub async fn list_accounts(db: &dyn Db, limit: i64) -> Result<Vec<AccountRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(ACCOUNT_COLUMNS).push(" FROM accounts ORDER BY email, id LIMIT ").int(limit);
    db.fetch(&b.finish(), &ACCOUNT_COLS).await?.into_iter().map(decode_account).collect()
}

/// By e-mail (give it lower-cased).
pub async fn account_by_email(db: &dyn Db, email: &str) -> Result<Option<AccountRow>, StoreError> {
    account_where(db, "email", email).await
}

/// By *verified* phone (give it E.164); a pending phone is never found here.
pub async fn account_by_phone(db: &dyn Db, phone: &str) -> Result<Option<AccountRow>, StoreError> {
    account_where(db, "phone", phone).await
}

/// Records the phone an account wants to verify (replacing an earlier pending one).
pub async fn set_phone_pending(db: &dyn Db, id: &str, phone: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET phone_pending = ").text(phone).push(" WHERE id = ").text(id);
    db.execute(&b.finish()).await.map(|_| ())
}

/// Makes the account's pending phone `phone` its verified phone, unless another account has it
/// verified already (`false`, nothing changed). One conditional statement; two accounts racing
/// for one number meet the unique index, and the loser's failed statement is answered `false`
/// once the number is seen on the other account (any other failure is the error it was).
pub async fn verify_phone(db: &dyn Db, id: &str, phone: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET phone = ")
        .text(phone)
        .push(", phone_pending = NULL WHERE id = ")
        .text(id)
        .push(" AND phone_pending = ")
        .text(phone)
        .push(" AND NOT EXISTS (SELECT 1 FROM accounts other WHERE other.phone = ")
        .text(phone)
        .push(" AND other.id <> ")
        .text(id)
        .push(")");
    match db.execute(&b.finish()).await {
        Ok(n) => Ok(n == 1),
        Err(e) => match account_by_phone(db, phone).await? {
            Some(other) if other.id != id => Ok(false),
            _ => Err(e),
        },
    }
}

/// How many accounts have `role` (to know whether the first admin exists).
pub async fn count_role(db: &dyn Db, role: &str) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COUNT(*) FROM accounts WHERE role = ").text(role);
    let rows = db.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()).and_then(|v| v.as_int()).unwrap_or(0))
}

/// A failed password: counts it and, past `lock_after` failures, locks until `lock_until_ms`
/// (progressive: the caller computes the lock length from the count it gets back).
pub async fn record_login_failure(db: &dyn Db, id: &str) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET failed_logins = failed_logins + 1 WHERE id = ")
        .text(id)
        .push(" RETURNING failed_logins");
    let rows = db.fetch_write(&b.finish(), &[Col::Int]).await?;
    Ok(rows.into_iter().next().and_then(|r| r.into_iter().next()).and_then(|v| v.as_int()).unwrap_or(0))
}

pub async fn lock_account(db: &dyn Db, id: &str, until_ms: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET locked_until = ").int(until_ms).push(" WHERE id = ").text(id);
    db.execute(&b.finish()).await.map(|_| ())
}

pub async fn record_login_success(db: &dyn Db, id: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET failed_logins = 0, locked_until = NULL WHERE id = ").text(id);
    db.execute(&b.finish()).await.map(|_| ())
}

/// One refresh-token row.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRow {
    pub hash: String,
    pub family: String,
    pub account_id: String,
    pub scope: String,
    pub patient: Option<String>,
    pub expires_at: i64,
    pub used: bool,
    pub revoked: bool,
    pub created_at: i64,
}

const REFRESH_COLUMNS: &str = "hash, family, account_id, scope, patient, expires_at, used, revoked, created_at";
const REFRESH_COLS: [Col; 9] =
    [Col::Text, Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Int, Col::Int, Col::Int];

fn decode_refresh(row: Vec<Val>) -> Result<RefreshRow, StoreError> {
    let mut it = row.into_iter();
    Ok(RefreshRow {
        hash: text(it.next())?.ok_or_else(corrupt)?,
        family: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        scope: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?,
        expires_at: int(it.next())?.ok_or_else(corrupt)?,
        used: int(it.next())?.unwrap_or(0) != 0,
        revoked: int(it.next())?.unwrap_or(0) != 0,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
    })
}

pub async fn insert_refresh(db: &dyn Db, r: &RefreshRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO refresh_tokens (").push(REFRESH_COLUMNS).push(") VALUES (");
    b.text(&r.hash).push(", ").text(&r.family).push(", ").text(&r.account_id).push(", ").text(&r.scope).push(", ");
    opt_text(&mut b, r.patient.as_deref());
    b.push(", ").int(r.expires_at).push(", ").int(i64::from(r.used)).push(", ").int(i64::from(r.revoked));
    b.push(", ").int(r.created_at).push(")");
    db.execute(&b.finish()).await.map(|_| ())
}

pub async fn refresh_by_hash(db: &dyn Db, hash: &str) -> Result<Option<RefreshRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(REFRESH_COLUMNS).push(" FROM refresh_tokens WHERE hash = ").text(hash);
    db.fetch_write(&b.finish(), &REFRESH_COLS).await?.into_iter().next().map(decode_refresh).transpose()
}

/// Marks an unused, unrevoked token used; true only for the one caller that did it (so two
/// concurrent refreshes with one token cannot both rotate).
pub async fn mark_refresh_used(db: &dyn Db, hash: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE refresh_tokens SET used = 1 WHERE hash = ").text(hash).push(" AND used = 0 AND revoked = 0");
    Ok(db.execute(&b.finish()).await? == 1)
}

pub async fn revoke_family(db: &dyn Db, family: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE refresh_tokens SET revoked = 1 WHERE family = ").text(family);
    db.execute(&b.finish()).await.map(|_| ())
}

pub async fn revoke_account_refresh(db: &dyn Db, account_id: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE refresh_tokens SET revoked = 1 WHERE account_id = ").text(account_id);
    db.execute(&b.finish()).await.map(|_| ())
}

/// Every signing key `(kid, pkcs8 base64)`, oldest first.
pub async fn signing_keys(db: &dyn Db) -> Result<Vec<(String, String)>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT kid, pkcs8 FROM signing_keys ORDER BY created_at, kid");
    db.fetch_write(&b.finish(), &[Col::Text, Col::Text])
        .await?
        .into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            Ok((text(it.next())?.ok_or_else(corrupt)?, text(it.next())?.ok_or_else(corrupt)?))
        })
        .collect()
}

pub async fn insert_signing_key(db: &dyn Db, kid: &str, pkcs8_b64: &str, created_at: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO signing_keys (kid, pkcs8, created_at) VALUES (")
        .text(kid)
        .push(", ")
        .text(pkcs8_b64)
        .push(", ")
        .int(created_at)
        .push(") ON CONFLICT DO NOTHING");
    db.execute(&b.finish()).await.map(|_| ())
}

pub async fn setting(db: &dyn Db, name: &str) -> Result<Option<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT value FROM auth_settings WHERE name = ").text(name);
    let rows = db.fetch_write(&b.finish(), &[Col::Text]).await?;
    match rows.into_iter().next() {
        Some(r) => text(r.into_iter().next()),
        None => Ok(None),
    }
}

/// Sets `name` unless it is set already (first writer wins); answers the value in force.
pub async fn setting_init(db: &dyn Db, name: &str, value: &str) -> Result<String, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO auth_settings (name, value) VALUES (")
        .text(name)
        .push(", ")
        .text(value)
        .push(") ON CONFLICT DO NOTHING");
    db.execute(&b.finish()).await?;
    setting(db, name).await?.ok_or_else(corrupt)
}

pub async fn setting_set(db: &dyn Db, name: &str, value: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO auth_settings (name, value) VALUES (")
        .text(name)
        .push(", ")
        .text(value)
        .push(") ON CONFLICT (name) DO UPDATE SET value = excluded.value");
    db.execute(&b.finish()).await.map(|_| ())
}

/// The patients a caregiver account may act for.
pub async fn caregiver_patients(db: &dyn Db, caregiver_id: &str) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT patient_id FROM caregiver_grants WHERE caregiver_id = ")
        .text(caregiver_id)
        .push(" ORDER BY patient_id");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|r| text(r.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

/// The caregiver accounts an admin linked to `patient` (they are told what the patient is told:
/// reminders, staff messages).
pub async fn caregivers_of(db: &dyn Db, patient: &str) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT caregiver_id FROM caregiver_grants WHERE patient_id = ")
        .text(patient)
        .push(" ORDER BY caregiver_id");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

/// The accounts of `role`, only those of `organization` when one is named (`None`: every one
/// of the role), by id (self-care alerts escalate to a patient's organisation's clinicians).
pub async fn accounts_with_role(
    db: &dyn Db,
    role: &str,
    organization: Option<&str>,
) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id FROM accounts WHERE role = ").text(role);
    if let Some(o) = organization {
        b.push(" AND organization = ").text(o);
    }
    b.push(" ORDER BY id");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

/// The accounts linked to a FHIR resource (`Patient/…`, `Practitioner/…`), oldest id first.
pub async fn accounts_of(db: &dyn Db, fhir_user: &str) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id FROM accounts WHERE fhir_user = ").text(fhir_user).push(" ORDER BY id");
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

pub async fn grant_caregiver(db: &dyn Db, caregiver_id: &str, patient_id: &str, now: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO caregiver_grants (caregiver_id, patient_id, created_at) VALUES (")
        .text(caregiver_id)
        .push(", ")
        .text(patient_id)
        .push(", ")
        .int(now)
        .push(") ON CONFLICT DO NOTHING");
    db.execute(&b.finish()).await.map(|_| ())
}

pub async fn revoke_caregiver(db: &dyn Db, caregiver_id: &str, patient_id: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM caregiver_grants WHERE caregiver_id = ")
        .text(caregiver_id)
        .push(" AND patient_id = ")
        .text(patient_id);
    db.execute(&b.finish()).await.map(|_| ())
}

/// The account that wrote a version of a resource (`None`: the system, or no such version).
pub async fn version_author(
    db: &dyn Db,
    resource_type: &str,
    id: &str,
    version: u64,
) -> Result<Option<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT author FROM resource_versions WHERE res_type = ")
        .text(resource_type)
        .push(" AND res_id = ")
        .text(id)
        .push(" AND version = ")
        .int(i64::try_from(version).unwrap_or(i64::MAX));
    match db.fetch(&b.finish(), &[Col::Text]).await?.into_iter().next() {
        Some(row) => text(row.into_iter().next()),
        None => Ok(None),
    }
}
