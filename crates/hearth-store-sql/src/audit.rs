//! The audit trail's hash chain (`audit_chain`), for both backends.

use hearth_store::StoreError;

use crate::{Builder, Col, Dialect, Exec, Val};

/// Any constant: the key of the PostgreSQL advisory lock that serialises chain appends.
const CHAIN_LOCK: i64 = 0x4845_4152_5448_4155; // "HEARTHAU"

/// The last link, locked for the rest of the transaction (SQLite's writer is exclusive already).
pub async fn head(exec: &mut dyn Exec) -> Result<Option<(i64, String)>, StoreError> {
    if exec.dialect() == Dialect::Postgres {
        let mut b = Builder::new(Dialect::Postgres);
        b.push("SELECT pg_advisory_xact_lock(").int(CHAIN_LOCK).push(")::text");
        exec.fetch(&b.finish(), &[Col::Text]).await?;
    }
    let mut b = Builder::new(exec.dialect());
    b.push("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1");
    let rows = exec.fetch(&b.finish(), &[Col::Int, Col::Text]).await?;
    Ok(rows.first().and_then(|r| match (r.first().and_then(Val::as_int), r.get(1).and_then(Val::as_text)) {
        (Some(seq), Some(hash)) => Some((seq, hash.to_owned())),
        _ => None,
    }))
}

pub async fn append(exec: &mut dyn Exec, seq: i64, event_id: &str, hash: &str) -> Result<(), StoreError> {
    let mut b = Builder::new(exec.dialect());
    b.push("INSERT INTO audit_chain (seq, event_id, hash) VALUES (").int(seq).push(", ").text(event_id);
    b.push(", ").text(hash).push(")");
    exec.execute(&b.finish()).await
}

/// One link of the chain (the event's body is read through the store, which decrypts it).
#[derive(Debug, Clone)]
pub struct Link {
    pub seq: i64,
    pub event_id: String,
    pub hash: String,
}

/// Links after `after` in chain order, at most `limit`.
pub async fn links(db: &dyn crate::Db, after: i64, limit: u32) -> Result<Vec<Link>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT seq, event_id, hash FROM audit_chain WHERE seq > ")
        .int(after)
        .push(" ORDER BY seq LIMIT ")
        .int(i64::from(limit));
    let rows = db.fetch(&b.finish(), &[Col::Int, Col::Text, Col::Text]).await?;
    Ok(rows
        .into_iter()
        .filter_map(|r| {
            let mut it = r.into_iter();
            let seq = it.next()?.as_int()?;
            let event_id = it.next()?.as_text()?.to_owned();
            let hash = it.next()?.as_text()?.to_owned();
            Some(Link { seq, event_id, hash })
        })
        .collect())
}

/// How many AuditEvents are stored (live or not): more than chain links means some were added
/// outside the chain.
pub async fn stored_events(db: &dyn crate::Db) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COUNT(*) FROM resources WHERE res_type = 'AuditEvent'");
    let rows = db.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.first().and_then(|r| r.first()).and_then(Val::as_int).unwrap_or(0))
}
