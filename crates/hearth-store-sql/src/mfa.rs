//! Two-factor and one-time-code state, written once over [`Db`] for both backends: the TOTP
//! columns of `accounts`, the `recovery_codes` and `login_otps` tables (migration
//! `0005_mfa_otp.sql`). The decisions live in `hearth-auth` (`totp`, `recovery`, `otp`); each
//! function here is one statement, and every "use once" step is a conditional write whose row
//! count says whether this caller won, so concurrent requests cannot both use one code.

use hearth_store::StoreError;

use crate::identity::{Db, corrupt};
use crate::{Builder, Col, Val};

/// Stores a new, unconfirmed TOTP secret; false when TOTP is already enabled (disable it first).
pub async fn totp_begin_enrolment(db: &dyn Db, account_id: &str, secret: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET totp_secret = ")
        .text(secret)
        .push(", totp_last_step = NULL WHERE id = ")
        .text(account_id)
        .push(" AND totp_enabled = 0");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Enables TOTP for the secret the code was checked against, recording the code's step; false
/// when it is already enabled or the secret changed meanwhile (a concurrent enrolment).
pub async fn totp_confirm(db: &dyn Db, account_id: &str, secret: &str, step: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET totp_enabled = 1, totp_last_step = ")
        .int(step)
        .push(" WHERE id = ")
        .text(account_id)
        .push(" AND totp_enabled = 0 AND totp_secret = ")
        .text(secret);
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Records `step` as used if it is after the last used one: true for the one request that may
/// accept a code of that step (the RFC 6238 replay guard, atomic on its own).
pub async fn totp_use_step(db: &dyn Db, account_id: &str, step: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET totp_last_step = ")
        .int(step)
        .push(" WHERE id = ")
        .text(account_id)
        .push(" AND totp_enabled = 1 AND (totp_last_step IS NULL OR totp_last_step < ")
        .int(step)
        .push(")");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Turns TOTP off and forgets the secret and the recovery codes.
pub async fn totp_disable(db: &dyn Db, account_id: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE accounts SET totp_enabled = 0, totp_secret = NULL, totp_last_step = NULL WHERE id = ")
        .text(account_id);
    db.execute(&b.finish()).await?;
    delete_recovery_codes(db, account_id).await
}

async fn delete_recovery_codes(db: &dyn Db, account_id: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM recovery_codes WHERE account_id = ").text(account_id);
    db.execute(&b.finish()).await.map(|_| ())
}

/// Replaces an account's recovery codes with `hashes` (hex keyed hashes).
pub async fn replace_recovery_codes(
    db: &dyn Db,
    account_id: &str,
    hashes: &[String],
    now: i64,
) -> Result<(), StoreError> {
    delete_recovery_codes(db, account_id).await?;
    if hashes.is_empty() {
        return Ok(());
    }
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO recovery_codes (account_id, hash, created_at) VALUES ");
    for (i, hash) in hashes.iter().enumerate() {
        if i > 0 {
            b.push(", ");
        }
        b.push("(").text(account_id).push(", ").text(hash).push(", ").int(now).push(")");
    }
    b.push(" ON CONFLICT DO NOTHING");
    db.execute(&b.finish()).await.map(|_| ())
}

/// The hex hashes of an account's unused recovery codes.
pub async fn recovery_hashes(db: &dyn Db, account_id: &str) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT hash FROM recovery_codes WHERE account_id = ").text(account_id).push(" ORDER BY hash");
    db.fetch_write(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|r| match r.into_iter().next() {
            Some(Val::Text(Some(t))) => Ok(t),
            _ => Err(corrupt()),
        })
        .collect()
}

/// Spends a recovery code: true for the one caller whose delete removed it.
pub async fn consume_recovery_code(db: &dyn Db, account_id: &str, hash: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM recovery_codes WHERE account_id = ").text(account_id).push(" AND hash = ").text(hash);
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Stores the code for `destination`, replacing any earlier one (and its attempt count).
pub async fn otp_put(
    db: &dyn Db,
    destination: &str,
    code_hash: &str,
    expires_at: i64,
    now: i64,
) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO login_otps (destination, code_hash, expires_at, failed_attempts, created_at) VALUES (")
        .text(destination)
        .push(", ")
        .text(code_hash)
        .push(", ")
        .int(expires_at)
        .push(", 0, ")
        .int(now)
        .push(
            ") ON CONFLICT (destination) DO UPDATE SET code_hash = excluded.code_hash, \
             expires_at = excluded.expires_at, failed_attempts = 0, created_at = excluded.created_at",
        );
    db.execute(&b.finish()).await.map(|_| ())
}

/// A code's record as an attempt sees it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpAttempt {
    pub code_hash: String,
    pub expires_at: i64,
    /// Attempts made *before* this one.
    pub earlier_attempts: i64,
}

/// Reserves one attempt on the code for `destination`, atomically: the counter goes up before
/// the code is compared, and only while fewer than `max_attempts` were made, so parallel
/// guesses cannot exceed the limit. `None`: no code, or no attempts left.
pub async fn otp_reserve_attempt(
    db: &dyn Db,
    destination: &str,
    max_attempts: i64,
) -> Result<Option<OtpAttempt>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE login_otps SET failed_attempts = failed_attempts + 1 WHERE destination = ")
        .text(destination)
        .push(" AND failed_attempts < ")
        .int(max_attempts)
        .push(" RETURNING code_hash, expires_at, failed_attempts");
    let rows = db.fetch_write(&b.finish(), &[Col::Text, Col::Int, Col::Int]).await?;
    let Some(row) = rows.into_iter().next() else { return Ok(None) };
    let mut it = row.into_iter();
    match (it.next(), it.next(), it.next()) {
        (Some(Val::Text(Some(code_hash))), Some(Val::Int(Some(expires_at))), Some(Val::Int(Some(n)))) => {
            Ok(Some(OtpAttempt { code_hash, expires_at, earlier_attempts: n - 1 }))
        }
        _ => Err(corrupt()),
    }
}

/// Consumes the code (it logs in once): true for the one caller whose delete removed it.
pub async fn otp_consume(db: &dyn Db, destination: &str, code_hash: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM login_otps WHERE destination = ").text(destination).push(" AND code_hash = ").text(code_hash);
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Forgets the code for `destination` (expired).
pub async fn otp_delete(db: &dyn Db, destination: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM login_otps WHERE destination = ").text(destination);
    db.execute(&b.finish()).await.map(|_| ())
}
