//! The audit trail's hash chain (`audit_chain`), for both backends.

use std::collections::HashMap;

use chrono::DateTime;
use hearth_store::{AuditLink, IndexedEvent, StoreError, Version};

use crate::{Builder, Col, Dialect, Exec, Sql, Val, insert_index_many};

/// Any constant: the key of the PostgreSQL advisory lock that serialises chain appends.
const CHAIN_LOCK: i64 = 0x4845_4152_5448_4155; // "HEARTHAU"
/// The key of the PostgreSQL advisory lock that keeps indexers of the journal apart.
const INDEX_LOCK: i64 = 0x4845_4152_5448_4149; // "HEARTHAI"

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

/// Rows per multi-row insert (at most 7 bound values each: far below both backends' limits).
const ROWS_PER_INSERT: usize = 400;

/// What a backend stores for a journaled body (sealed by a backend that encrypts bodies).
pub type StoredBody<'a> = &'a (dyn Fn(&AuditLink) -> Result<String, StoreError> + Sync);

/// The multi-row insert of `links` into the chain; with `if_head`, the rows are inserted only if
/// the chain still ends at `if_head` (else none is: the caller's idea of the head is stale).
fn insert_links(
    dialect: Dialect,
    links: &[AuditLink],
    body: StoredBody,
    if_head: Option<i64>,
) -> Result<Sql, StoreError> {
    let mut b = Builder::new(dialect);
    b.push("INSERT INTO audit_chain (seq, event_id, hash, last_updated, body) ");
    match if_head {
        None => b.push("VALUES "),
        Some(_) if dialect == Dialect::Sqlite => {
            b.push("SELECT column1, column2, column3, column4, column5 FROM (VALUES ")
        }
        Some(_) => b.push("SELECT v.seq, v.event_id, v.hash, v.last_updated, v.body FROM (VALUES "),
    };
    for (i, l) in links.iter().enumerate() {
        b.push(if i == 0 { "(" } else { ", (" }).int(l.seq).push(", ").text(&l.event_id);
        b.push(", ").text(&l.hash).push(", ").int(l.last_updated.timestamp_millis());
        b.push(", ").bind(Val::Text(Some(body(l)?))).push(")");
    }
    if let Some(head) = if_head {
        b.push(if dialect == Dialect::Sqlite { ")" } else { ") AS v (seq, event_id, hash, last_updated, body)" });
        b.push(" WHERE (SELECT COALESCE(MAX(seq), 0) FROM audit_chain) = ").int(head);
    }
    Ok(b.finish())
}

/// Journals `links` inside the caller's transaction (which holds the chain head: [`head`]).
pub async fn journal(exec: &mut dyn Exec, links: &[AuditLink], body: StoredBody<'_>) -> Result<(), StoreError> {
    for chunk in links.chunks(ROWS_PER_INSERT) {
        exec.execute(&insert_links(exec.dialect(), chunk, body, None)?).await?;
    }
    Ok(())
}

/// Journals `links` in one statement (its own transaction: one round trip) if the chain still
/// ends just before the first of them; false, changing nothing, if it has moved on (another
/// process appended) — the caller then journals under the head's lock ([`head`], [`journal`]).
/// The primary key on `seq` makes a fork impossible either way.
pub async fn journal_if_head(
    db: &dyn crate::Db,
    links: &[AuditLink],
    body: StoredBody<'_>,
) -> Result<bool, StoreError> {
    let Some(first) = links.first() else { return Ok(true) };
    if links.len() > ROWS_PER_INSERT {
        return Ok(false);
    }
    let inserted = db.execute(&insert_links(db.dialect(), links, body, Some(first.seq - 1))?).await?;
    Ok(inserted == links.len() as u64)
}

/// The last link `(seq, hash)`, read without any lock (a starting point for [`journal_if_head`]).
pub async fn last_link(db: &dyn crate::Db) -> Result<Option<(i64, String)>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT seq, hash FROM audit_chain ORDER BY seq DESC LIMIT 1");
    let rows = db.fetch_write(&b.finish(), &[Col::Int, Col::Text]).await?;
    Ok(rows.first().and_then(|r| match (r.first().and_then(Val::as_int), r.get(1).and_then(Val::as_text)) {
        (Some(seq), Some(hash)) => Some((seq, hash.to_owned())),
        _ => None,
    }))
}

/// The oldest journaled links not yet indexed, bodies as stored (sealed on an encrypting
/// backend). On PostgreSQL an advisory lock keeps indexers of several processes apart; SQLite's
/// writer is exclusive already.
pub async fn pending(exec: &mut dyn Exec, limit: u32) -> Result<Vec<AuditLink>, StoreError> {
    if exec.dialect() == Dialect::Postgres {
        let mut b = Builder::new(Dialect::Postgres);
        b.push("SELECT pg_advisory_xact_lock(").int(INDEX_LOCK).push(")::text");
        exec.fetch(&b.finish(), &[Col::Text]).await?;
    }
    let mut b = Builder::new(exec.dialect());
    b.push("SELECT seq, event_id, hash, last_updated, body FROM audit_chain WHERE body IS NOT NULL ");
    b.push("ORDER BY seq LIMIT ").int(i64::from(limit));
    let rows = exec.fetch(&b.finish(), &[Col::Int, Col::Text, Col::Text, Col::Int, Col::Text]).await?;
    rows.into_iter()
        .map(|r| {
            let mut it = r.into_iter();
            let mut next = || it.next().ok_or_else(|| StoreError::Corrupt("a short audit journal row".into()));
            let (seq, event_id, hash, ms, body) = (next()?, next()?, next()?, next()?, next()?);
            let corrupt = || StoreError::Corrupt("an audit journal row with missing values".into());
            let ms = ms.as_int().ok_or_else(corrupt)?;
            Ok(AuditLink {
                seq: seq.as_int().ok_or_else(corrupt)?,
                event_id: event_id.as_text().ok_or_else(corrupt)?.to_owned(),
                hash: hash.as_text().ok_or_else(corrupt)?.to_owned(),
                last_updated: DateTime::from_timestamp_millis(ms).ok_or_else(corrupt)?,
                body: body.as_text().ok_or_else(corrupt)?.into(),
            })
        })
        .collect()
}

/// Stores `events` (new AuditEvents, version 1) as resources — a version row, a current row and
/// index rows each, one multi-row insert per table per [`ROWS_PER_INSERT`] events — and drops
/// the journal's bodies up to `through_seq` (the resources hold them now). `stored_body` gives
/// what is stored for a version's body.
pub async fn index(
    exec: &mut dyn Exec,
    events: &[IndexedEvent],
    through_seq: i64,
    stored_body: &(dyn Fn(&Version) -> Result<Option<String>, StoreError> + Sync),
) -> Result<(), StoreError> {
    let mut seqs: HashMap<String, i64> = HashMap::with_capacity(events.len());
    let mut rids: HashMap<String, i64> = HashMap::with_capacity(events.len());
    for chunk in events.chunks(ROWS_PER_INSERT) {
        let mut b = Builder::new(exec.dialect());
        b.push("INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body, author) VALUES ");
        for (i, e) in chunk.iter().enumerate() {
            let v = &e.version;
            b.push(if i == 0 { "(" } else { ", (" }).text(&v.resource_type).push(", ").text(&v.id);
            b.push(", ").int(version_number(v)?).push(", ").int(v.last_updated.timestamp_millis());
            b.push(", ").text(v.method.as_str()).push(", ").bind(Val::Text(stored_body(v)?)).push(", NULL)");
        }
        b.push(" RETURNING res_id, seq");
        keyed(exec.fetch(&b.finish(), &[Col::Text, Col::Int]).await?, &mut seqs)?;

        let mut b = Builder::new(exec.dialect());
        b.push("INSERT INTO resources (res_type, res_id, version, seq, deleted, last_updated) VALUES ");
        for (i, e) in chunk.iter().enumerate() {
            let v = &e.version;
            let seq =
                *seqs.get(&v.id).ok_or_else(|| StoreError::Corrupt("an audit version row was not returned".into()))?;
            b.push(if i == 0 { "(" } else { ", (" }).text(&v.resource_type).push(", ").text(&v.id);
            b.push(", ").int(version_number(v)?).push(", ").int(seq).push(", FALSE, ");
            b.int(v.last_updated.timestamp_millis()).push(")");
        }
        b.push(" RETURNING res_id, rid");
        keyed(exec.fetch(&b.finish(), &[Col::Text, Col::Int]).await?, &mut rids)?;

        let mut indexed = Vec::with_capacity(chunk.len());
        for e in chunk {
            let rid =
                *rids.get(&e.version.id).ok_or_else(|| StoreError::Corrupt("an audit row was not returned".into()))?;
            indexed.push((rid, e.version.resource_type.as_str(), e.index.as_slice()));
        }
        for sql in insert_index_many(exec.dialect(), &indexed) {
            exec.execute(&sql).await?;
        }
    }
    let mut b = Builder::new(exec.dialect());
    b.push("UPDATE audit_chain SET body = NULL WHERE body IS NOT NULL AND seq <= ").int(through_seq);
    exec.execute(&b.finish()).await
}

fn version_number(v: &Version) -> Result<i64, StoreError> {
    i64::try_from(v.version_id).map_err(|_| StoreError::Corrupt(format!("version {} out of range", v.version_id)))
}

/// Collects `(key, number)` rows returned by an insert.
fn keyed(rows: Vec<Vec<Val>>, into: &mut HashMap<String, i64>) -> Result<(), StoreError> {
    for row in rows {
        match (row.first().and_then(Val::as_text), row.get(1).and_then(Val::as_int)) {
            (Some(key), Some(n)) => into.insert(key.to_owned(), n),
            _ => return Err(StoreError::Corrupt("an insert returned an unexpected row".into())),
        };
    }
    Ok(())
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

/// How many stored AuditEvents have no link in the chain (added behind the trail's back). Links
/// are journaled before their events are stored, so this is never a race with a running server.
pub async fn events_outside_chain(db: &dyn crate::Db) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COUNT(*) FROM resources r WHERE r.res_type = 'AuditEvent' ");
    b.push("AND NOT EXISTS (SELECT 1 FROM audit_chain c WHERE c.event_id = r.res_id)");
    let rows = db.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.first().and_then(|r| r.first()).and_then(Val::as_int).unwrap_or(0))
}

/// How many events the trail has recorded (chain links, indexed or not).
pub async fn chain_length(db: &dyn crate::Db) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COUNT(*) FROM audit_chain");
    let rows = db.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.first().and_then(|r| r.first()).and_then(Val::as_int).unwrap_or(0))
}

/// The last link's `seq` (0 for an empty trail).
pub async fn last_seq(db: &dyn crate::Db) -> Result<i64, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT COALESCE(MAX(seq), 0) FROM audit_chain");
    let rows = db.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.first().and_then(|r| r.first()).and_then(Val::as_int).unwrap_or(0))
}
