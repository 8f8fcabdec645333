//! The SMART on FHIR / OAuth 2.0 tables (registered clients, one-time authorization codes, the
//! refresh-token families issued to a client), written once over [`Db`] for both backends. Each
//! call is one statement, atomic on its own; the protocol decisions live in the server
//! (`hearth-server/src/auth/smart.rs`).

use hearth_store::StoreError;

use crate::identity::{Db, corrupt, int, opt_text, text};
use crate::{Builder, Col, Val};

/// One registered client.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientRow {
    pub id: String,
    pub name: String,
    /// A JSON array of strings.
    pub redirect_uris: String,
    pub confidential: bool,
    /// SHA-256 (hex) of the client secret; `None` for public clients.
    pub secret_hash: Option<String>,
    pub scope: String,
    pub created_by: String,
    pub created_at: i64,
}

const CLIENT_COLUMNS: &str = "id, name, redirect_uris, confidential, secret_hash, scope, created_by, created_at";
const CLIENT_COLS: [Col; 8] = [Col::Text, Col::Text, Col::Text, Col::Int, Col::Text, Col::Text, Col::Text, Col::Int];

fn decode_client(row: Vec<Val>) -> Result<ClientRow, StoreError> {
    let mut it = row.into_iter();
    Ok(ClientRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        name: text(it.next())?.ok_or_else(corrupt)?,
        redirect_uris: text(it.next())?.ok_or_else(corrupt)?,
        confidential: int(it.next())?.unwrap_or(0) != 0,
        secret_hash: text(it.next())?,
        scope: text(it.next())?.ok_or_else(corrupt)?,
        created_by: text(it.next())?.ok_or_else(corrupt)?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
    })
}

pub async fn insert_client(db: &dyn Db, c: &ClientRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO oauth_clients (").push(CLIENT_COLUMNS).push(") VALUES (");
    b.text(&c.id).push(", ").text(&c.name).push(", ").text(&c.redirect_uris).push(", ");
    b.int(i64::from(c.confidential)).push(", ");
    opt_text(&mut b, c.secret_hash.as_deref());
    b.push(", ").text(&c.scope).push(", ").text(&c.created_by).push(", ").int(c.created_at).push(")");
    b.push(" ON CONFLICT DO NOTHING");
    match db.execute(&b.finish()).await? {
        0 => Err(StoreError::Conflict),
        _ => Ok(()),
    }
}

pub async fn client_by_id(db: &dyn Db, id: &str) -> Result<Option<ClientRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(CLIENT_COLUMNS).push(" FROM oauth_clients WHERE id = ").text(id);
    db.fetch_write(&b.finish(), &CLIENT_COLS).await?.into_iter().next().map(decode_client).transpose()
}

/// Every client, oldest first.
pub async fn clients(db: &dyn Db) -> Result<Vec<ClientRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(CLIENT_COLUMNS).push(" FROM oauth_clients ORDER BY created_at, id");
    db.fetch(&b.finish(), &CLIENT_COLS).await?.into_iter().map(decode_client).collect()
}

/// Deletes a client and everything issued to it: its codes die with it, and the refresh tokens
/// of its families are revoked. Answers false when there was no such client.
pub async fn delete_client(db: &dyn Db, id: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM oauth_clients WHERE id = ").text(id);
    let deleted = db.execute(&b.finish()).await? > 0;
    // Even when the row was already gone (a concurrent delete), finish the clean-up.
    let mut b = Builder::new(db.dialect());
    b.push(
        "UPDATE refresh_tokens SET revoked = 1 WHERE family IN (SELECT family FROM oauth_families WHERE client_id = ",
    )
    .text(id)
    .push(")");
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM oauth_codes WHERE client_id = ").text(id);
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM oauth_client_keys WHERE client_id = ").text(id);
    db.execute(&b.finish()).await?;
    Ok(deleted)
}

/// One authorization code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeRow {
    /// SHA-256 (hex) of the code.
    pub hash: String,
    pub client_id: String,
    pub redirect_uri: String,
    pub code_challenge: String,
    pub scope: String,
    pub account_id: String,
    pub patient: Option<String>,
    /// The OpenID Connect `nonce` of the authorization request, if any.
    pub nonce: Option<String>,
    pub expires_at: i64,
    pub used: bool,
    pub family: Option<String>,
    pub created_at: i64,
}

const CODE_COLUMNS: &str = "hash, client_id, redirect_uri, code_challenge, scope, account_id, patient, nonce, expires_at, used, family, created_at";
const CODE_COLS: [Col; 12] = [
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
    Col::Text,
    Col::Int,
];

fn decode_code(row: Vec<Val>) -> Result<CodeRow, StoreError> {
    let mut it = row.into_iter();
    Ok(CodeRow {
        hash: text(it.next())?.ok_or_else(corrupt)?,
        client_id: text(it.next())?.ok_or_else(corrupt)?,
        redirect_uri: text(it.next())?.ok_or_else(corrupt)?,
        code_challenge: text(it.next())?.ok_or_else(corrupt)?,
        scope: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?,
        nonce: text(it.next())?,
        expires_at: int(it.next())?.ok_or_else(corrupt)?,
        used: int(it.next())?.unwrap_or(0) != 0,
        family: text(it.next())?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
    })
}

pub async fn insert_code(db: &dyn Db, c: &CodeRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO oauth_codes (").push(CODE_COLUMNS).push(") VALUES (");
    b.text(&c.hash).push(", ").text(&c.client_id).push(", ").text(&c.redirect_uri).push(", ");
    b.text(&c.code_challenge).push(", ").text(&c.scope).push(", ").text(&c.account_id).push(", ");
    opt_text(&mut b, c.patient.as_deref());
    b.push(", ");
    opt_text(&mut b, c.nonce.as_deref());
    b.push(", ").int(c.expires_at).push(", ").int(i64::from(c.used)).push(", ");
    opt_text(&mut b, c.family.as_deref());
    b.push(", ").int(c.created_at).push(")");
    db.execute(&b.finish()).await.map(|_| ())
}

pub async fn code_by_hash(db: &dyn Db, hash: &str) -> Result<Option<CodeRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(CODE_COLUMNS).push(" FROM oauth_codes WHERE hash = ").text(hash);
    db.fetch_write(&b.finish(), &CODE_COLS).await?.into_iter().next().map(decode_code).transpose()
}

/// Marks an unused code used; true only for the one caller that did it.
pub async fn mark_code_used(db: &dyn Db, hash: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE oauth_codes SET used = 1 WHERE hash = ").text(hash).push(" AND used = 0");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Records the refresh family issued from a code (so a replay of the code can revoke it).
pub async fn set_code_family(db: &dyn Db, hash: &str, family: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE oauth_codes SET family = ").text(family).push(" WHERE hash = ").text(hash);
    db.execute(&b.finish()).await.map(|_| ())
}

/// Removes codes that expired before `before_ms` (used or not).
pub async fn purge_codes(db: &dyn Db, before_ms: i64) -> Result<u64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM oauth_codes WHERE expires_at < ").int(before_ms);
    db.execute(&b.finish()).await
}

/// Binds a refresh family to the client it was issued to.
pub async fn insert_family(db: &dyn Db, family: &str, client_id: &str, now: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO oauth_families (family, client_id, created_at) VALUES (")
        .text(family)
        .push(", ")
        .text(client_id)
        .push(", ")
        .int(now)
        .push(")");
    db.execute(&b.finish()).await.map(|_| ())
}

/// The client a refresh family was issued to (`None`: an app-login family).
pub async fn family_client(db: &dyn Db, family: &str) -> Result<Option<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT client_id FROM oauth_families WHERE family = ").text(family);
    match db.fetch_write(&b.finish(), &[Col::Text]).await?.into_iter().next() {
        Some(r) => text(r.into_iter().next()),
        None => Ok(None),
    }
}

/// A backend-services client's keys: its JWK Set (JSON) by value and/or the URL to fetch it from.
pub async fn set_client_keys(
    db: &dyn Db,
    client_id: &str,
    jwks: Option<&str>,
    jwks_uri: Option<&str>,
) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO oauth_client_keys (client_id, jwks, jwks_uri) VALUES (").text(client_id).push(", ");
    opt_text(&mut b, jwks);
    b.push(", ");
    opt_text(&mut b, jwks_uri);
    b.push(") ON CONFLICT (client_id) DO UPDATE SET jwks = excluded.jwks, jwks_uri = excluded.jwks_uri");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// The keys of a client: `(jwks, jwks_uri)`; `None` when it registered none.
pub async fn client_keys(db: &dyn Db, client_id: &str) -> Result<Option<(Option<String>, Option<String>)>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT jwks, jwks_uri FROM oauth_client_keys WHERE client_id = ").text(client_id);
    let row = db.fetch(&b.finish(), &[Col::Text, Col::Text]).await?.into_iter().next();
    row.map(|row| {
        let mut it = row.into_iter();
        Ok((text(it.next())?, text(it.next())?))
    })
    .transpose()
}

/// Records the `jti` of an accepted client assertion until `expires_at`; false when the client
/// used it before (a replay). Expired ones are forgotten first.
pub async fn spend_assertion_jti(
    db: &dyn Db,
    client_id: &str,
    jti: &str,
    expires_at: i64,
    now: i64,
) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM oauth_assertion_jtis WHERE expires_at < ").int(now);
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO oauth_assertion_jtis (client_id, jti, expires_at) VALUES (")
        .text(client_id)
        .push(", ")
        .text(jti)
        .push(", ")
        .int(expires_at)
        .push(") ON CONFLICT DO NOTHING");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Revokes the access token `jti` until it would have expired anyway.
pub async fn revoke_token(db: &dyn Db, jti: &str, expires_at: i64, now: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM oauth_revoked WHERE expires_at < ").int(now);
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO oauth_revoked (jti, expires_at) VALUES (")
        .text(jti)
        .push(", ")
        .int(expires_at)
        .push(") ON CONFLICT DO NOTHING");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Whether the access token `jti` was revoked.
pub async fn is_revoked(db: &dyn Db, jti: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT jti FROM oauth_revoked WHERE jti = ").text(jti);
    Ok(!db.fetch(&b.finish(), &[Col::Text]).await?.is_empty())
}
