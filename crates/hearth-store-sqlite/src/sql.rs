//! Every SQL statement of the SQLite backend. Values are always bound, never interpolated.

use std::sync::Arc;

use hearth_store::{
    Clause, Criteria, Current, CurrentState, HistoryPage, HistoryQuery, HistoryScope, Method, StoreError, TokenIndex,
    TokenMatch, Version,
};
use sqlx::sqlite::SqliteRow;
use sqlx::{QueryBuilder, Row, Sqlite, SqliteConnection};

use crate::{db_error, from_millis};

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("version out of range: {v}")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative version: {v}")))
}

pub(crate) async fn current(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
) -> Result<Option<CurrentState>, StoreError> {
    let row = sqlx::query("SELECT version, deleted FROM resources WHERE res_type = ?1 AND res_id = ?2")
        .bind(resource_type)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some(CurrentState {
            version: to_u64(row.try_get(0).map_err(db_error)?)?,
            deleted: row.try_get::<i64, _>(1).map_err(db_error)? != 0,
        })),
    }
}

pub(crate) async fn insert_version(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
    version: u64,
    last_updated_ms: i64,
    method: Method,
    body: Option<&str>,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) RETURNING seq",
    )
    .bind(resource_type)
    .bind(id)
    .bind(to_i64(version)?)
    .bind(last_updated_ms)
    .bind(method.as_str())
    .bind(body)
    .fetch_one(conn)
    .await
    .map_err(db_error)?
    .try_get(0)
    .map_err(db_error)
}

pub(crate) async fn upsert_current(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
    version: u64,
    seq: i64,
    deleted: bool,
    last_updated_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO resources (res_type, res_id, version, seq, deleted, last_updated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (res_type, res_id) DO UPDATE SET version = excluded.version, seq = excluded.seq, \
         deleted = excluded.deleted, last_updated = excluded.last_updated",
    )
    .bind(resource_type)
    .bind(id)
    .bind(to_i64(version)?)
    .bind(seq)
    .bind(i64::from(deleted))
    .bind(last_updated_ms)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn delete_tokens(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM token_index WHERE res_type = ?1 AND res_id = ?2")
        .bind(resource_type)
        .bind(id)
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

pub(crate) async fn insert_tokens(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
    tokens: &[TokenIndex],
) -> Result<(), StoreError> {
    if tokens.is_empty() {
        return Ok(());
    }
    // One multi-row INSERT per chunk instead of a round trip per token (SQLite allows 32766 params).
    for chunk in tokens.chunks(1000) {
        let mut qb = QueryBuilder::<Sqlite>::new("INSERT INTO token_index (res_type, res_id, param, system, code) ");
        qb.push_values(chunk, |mut b, t| {
            b.push_bind(resource_type.to_owned())
                .push_bind(id.to_owned())
                .push_bind(t.param.clone())
                .push_bind(t.system.clone())
                .push_bind(t.code.clone());
        });
        qb.build().execute(&mut *conn).await.map_err(db_error)?;
    }
    Ok(())
}

const VERSION_COLUMNS: &str = "v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body";

fn decode_version(row: &SqliteRow) -> Result<Version, StoreError> {
    let method: String = row.try_get(4).map_err(db_error)?;
    let body: Option<String> = row.try_get(5).map_err(db_error)?;
    Ok(Version {
        resource_type: row.try_get(0).map_err(db_error)?,
        id: row.try_get(1).map_err(db_error)?,
        version_id: to_u64(row.try_get(2).map_err(db_error)?)?,
        last_updated: from_millis(row.try_get(3).map_err(db_error)?)?,
        method: Method::parse(&method).ok_or_else(|| StoreError::Corrupt(format!("unknown method {method}")))?,
        body: body.map(Arc::from),
    })
}

pub(crate) async fn read_current(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
) -> Result<Current, StoreError> {
    let row = sqlx::query(
        "SELECT v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body \
         FROM resources r JOIN resource_versions v ON v.seq = r.seq \
         WHERE r.res_type = ?1 AND r.res_id = ?2",
    )
    .bind(resource_type)
    .bind(id)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    match row {
        None => Ok(Current::NotFound),
        Some(row) => {
            let v = decode_version(&row)?;
            Ok(if v.is_deletion() { Current::Deleted(v) } else { Current::Found(v) })
        }
    }
}

pub(crate) async fn read_version(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
    version: u64,
) -> Result<Option<Version>, StoreError> {
    let Ok(version) = i64::try_from(version) else {
        return Ok(None);
    };
    let row = sqlx::query(
        "SELECT v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body \
         FROM resource_versions v WHERE v.res_type = ?1 AND v.res_id = ?2 AND v.version = ?3",
    )
    .bind(resource_type)
    .bind(id)
    .bind(version)
    .fetch_optional(conn)
    .await
    .map_err(db_error)?;
    row.as_ref().map(decode_version).transpose()
}

/// Live resources matching the criteria, driven by the token index (never a scan of all
/// resources of a type unless the criteria have no clause at all).
pub(crate) async fn find(
    conn: &mut SqliteConnection,
    criteria: &Criteria,
    limit: u32,
) -> Result<Vec<Version>, StoreError> {
    let mut qb = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {VERSION_COLUMNS} FROM resources r JOIN resource_versions v ON v.seq = r.seq \
         WHERE r.deleted = 0 AND r.res_type = "
    ));
    qb.push_bind(criteria.resource_type.clone());
    for clause in &criteria.clauses {
        match clause {
            Clause::Id(ids) => {
                qb.push(" AND r.res_id IN (");
                let mut sep = qb.separated(", ");
                for id in ids {
                    sep.push_bind(id.clone());
                }
                qb.push(")");
            }
            Clause::Token { param, any_of } => {
                qb.push(
                    " AND r.res_id IN (SELECT t.res_id FROM token_index t WHERE t.res_type = r.res_type AND t.param = ",
                );
                qb.push_bind(param.clone());
                qb.push(" AND (");
                for (i, m) in any_of.iter().enumerate() {
                    if i > 0 {
                        qb.push(" OR ");
                    }
                    match m {
                        TokenMatch::Code(code) => {
                            qb.push("t.code = ").push_bind(code.clone());
                        }
                        TokenMatch::SystemCode { system, code } => {
                            qb.push("(t.code = ").push_bind(code.clone());
                            qb.push(" AND t.system = ").push_bind(system.clone()).push(")");
                        }
                        TokenMatch::NoSystemCode(code) => {
                            qb.push("(t.code = ").push_bind(code.clone()).push(" AND t.system IS NULL)");
                        }
                        TokenMatch::System(system) => {
                            qb.push("t.system = ").push_bind(system.clone());
                        }
                    }
                }
                if any_of.is_empty() {
                    qb.push("0");
                }
                qb.push("))");
            }
        }
    }
    qb.push(" ORDER BY r.res_id LIMIT ");
    qb.push_bind(i64::from(limit));
    let rows = qb.build().fetch_all(conn).await.map_err(db_error)?;
    rows.iter().map(decode_version).collect()
}

pub(crate) async fn history(conn: &mut SqliteConnection, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
    let mut qb =
        QueryBuilder::<Sqlite>::new(format!("SELECT {VERSION_COLUMNS}, v.seq FROM resource_versions v WHERE 1 = 1"));
    match &q.scope {
        HistoryScope::System => {}
        HistoryScope::Type(t) => {
            qb.push(" AND v.res_type = ").push_bind(t.clone());
        }
        HistoryScope::Instance { resource_type, id } => {
            qb.push(" AND v.res_type = ").push_bind(resource_type.clone());
            qb.push(" AND v.res_id = ").push_bind(id.clone());
        }
    }
    if let Some(since) = q.since {
        let ms = since.timestamp_millis();
        // Bound the scan by position as well as by time: versions are written in time order, so
        // everything at or after `since` lies at or after the first such position.
        qb.push(" AND v.seq >= (SELECT COALESCE(MIN(seq), 0) FROM resource_versions WHERE last_updated >= ")
            .push_bind(ms)
            .push(")");
        qb.push(" AND v.last_updated >= ").push_bind(ms);
    }
    if let Some(before) = q.before {
        qb.push(" AND v.seq < ").push_bind(before);
    }
    qb.push(" ORDER BY v.seq DESC LIMIT ").push_bind(i64::from(q.count) + 1);
    let rows = qb.build().fetch_all(conn).await.map_err(db_error)?;
    let mut entries = Vec::with_capacity(rows.len());
    let mut next = None;
    for (i, row) in rows.iter().enumerate() {
        if i >= q.count as usize {
            break;
        }
        entries.push(decode_version(row)?);
        next = Some(row.try_get::<i64, _>(6).map_err(db_error)?);
    }
    if rows.len() <= q.count as usize {
        next = None;
    }
    Ok(HistoryPage { entries, next })
}

pub(crate) async fn ping(conn: &mut SqliteConnection) -> Result<(), StoreError> {
    sqlx::query("SELECT 1").execute(conn).await.map_err(db_error)?;
    Ok(())
}
