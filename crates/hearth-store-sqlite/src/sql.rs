//! Every SQL statement of the SQLite backend. Values are always bound, never interpolated.

use std::sync::Arc;

use hearth_store::{Current, CurrentState, HistoryPage, HistoryQuery, HistoryScope, Method, StoreError, Version};
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

/// [`hearth_store::StoreTx::current_many`]: one statement, the ids passed as one JSON array.
pub(crate) async fn current_many(
    conn: &mut SqliteConnection,
    resource_type: &str,
    ids: &[String],
) -> Result<std::collections::HashMap<String, CurrentState>, StoreError> {
    let list = serde_json::to_string(ids).map_err(|e| StoreError::Database(Box::new(e)))?;
    let rows = sqlx::query(
        "SELECT res_id, version, deleted FROM resources \
         WHERE res_type = ?1 AND res_id IN (SELECT value FROM json_each(?2))",
    )
    .bind(resource_type)
    .bind(list)
    .fetch_all(conn)
    .await
    .map_err(db_error)?;
    let mut out = std::collections::HashMap::with_capacity(rows.len());
    for row in rows {
        let state = CurrentState {
            version: to_u64(row.try_get(1).map_err(db_error)?)?,
            deleted: row.try_get::<i64, _>(2).map_err(db_error)? != 0,
        };
        out.insert(row.try_get(0).map_err(db_error)?, state);
    }
    Ok(out)
}

pub(crate) async fn insert_version(
    conn: &mut SqliteConnection,
    v: &Version,
    author: Option<&str>,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body, author) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6, ?7) RETURNING seq",
    )
    .bind(&v.resource_type)
    .bind(&v.id)
    .bind(to_i64(v.version_id)?)
    .bind(v.last_updated.timestamp_millis())
    .bind(v.method.as_str())
    .bind(v.body.as_deref())
    .bind(author)
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
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO resources (res_type, res_id, version, seq, deleted, last_updated) \
         VALUES (?1, ?2, ?3, ?4, ?5, ?6) \
         ON CONFLICT (res_type, res_id) DO UPDATE SET version = excluded.version, seq = excluded.seq, \
         deleted = excluded.deleted, last_updated = excluded.last_updated RETURNING rid",
    )
    .bind(resource_type)
    .bind(id)
    .bind(to_i64(version)?)
    .bind(seq)
    .bind(i64::from(deleted))
    .bind(last_updated_ms)
    .fetch_one(conn)
    .await
    .map_err(db_error)?
    .try_get(0)
    .map_err(db_error)
}

/// The key and current version of a resource, for a reindex.
pub(crate) async fn rid_of(
    conn: &mut SqliteConnection,
    resource_type: &str,
    id: &str,
) -> Result<Option<(i64, u64, bool)>, StoreError> {
    let row = sqlx::query("SELECT rid, version, deleted FROM resources WHERE res_type = ?1 AND res_id = ?2")
        .bind(resource_type)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some((
            row.try_get(0).map_err(db_error)?,
            to_u64(row.try_get(1).map_err(db_error)?)?,
            row.try_get::<i64, _>(2).map_err(db_error)? != 0,
        ))),
    }
}

/// Live current versions after position `after` (by `rid`), for reindexing.
pub(crate) async fn scan(
    conn: &mut SqliteConnection,
    types: Option<&[String]>,
    after: i64,
    limit: u32,
) -> Result<Vec<(i64, Version)>, StoreError> {
    let mut qb = QueryBuilder::<Sqlite>::new(format!(
        "SELECT {VERSION_COLUMNS}, r.rid FROM resources r JOIN resource_versions v ON v.seq = r.seq \
         WHERE r.deleted = 0 AND r.rid > "
    ));
    qb.push_bind(after);
    if let Some(types) = types {
        qb.push(" AND r.res_type IN (");
        let mut sep = qb.separated(", ");
        for t in types {
            sep.push_bind(t.clone());
        }
        qb.push(")");
    }
    qb.push(" ORDER BY r.rid LIMIT ").push_bind(i64::from(limit));
    let rows = qb.build().fetch_all(conn).await.map_err(db_error)?;
    rows.iter().map(|row| Ok((row.try_get(6).map_err(db_error)?, decode_version(row)?))).collect()
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

/// The first versions of resources created in a write transaction, held back and inserted
/// together: one multi-row statement for their versions and one for their current rows per
/// [`PendingCreates::CHUNK`] resources, instead of two statements each (a batch of 1,000 device
/// readings made 2,000 round trips to the connection's thread). Their `seq` and `rid` are
/// allocated here, after the largest in the tables: SQLite has one writer, this transaction, and
/// everything else it runs inserts the held rows first ([`PendingCreates::flush`]) and then
/// allocates anew, so the numbers are the ones SQLite itself would have chosen.
#[derive(Default)]
pub(crate) struct PendingCreates {
    /// The next `(seq, rid)` to hand out; `None` until the first create after a flush.
    next: Option<(i64, i64)>,
    held: Vec<Held>,
}

struct Held {
    seq: i64,
    rid: i64,
    version: Version,
    author: Option<String>,
}

impl PendingCreates {
    /// Rows per multi-row statement (8 bound values each, well under SQLite's 32,766).
    const CHUNK: usize = 256;

    /// Holds the first version of a new resource; answers its `rid`.
    pub(crate) async fn create(
        &mut self,
        conn: &mut SqliteConnection,
        version: &Version,
        author: Option<&str>,
    ) -> Result<i64, StoreError> {
        let (seq, rid) = match self.next {
            Some(next) => next,
            None => {
                let row = sqlx::query(
                    "SELECT (SELECT coalesce(max(seq), 0) FROM resource_versions), \
                            (SELECT coalesce(max(rid), 0) FROM resources)",
                )
                .fetch_one(&mut *conn)
                .await
                .map_err(db_error)?;
                let (seq, rid): (i64, i64) = (row.try_get(0).map_err(db_error)?, row.try_get(1).map_err(db_error)?);
                (seq + 1, rid + 1)
            }
        };
        self.next = Some((seq + 1, rid + 1));
        self.held.push(Held { seq, rid, version: version.clone(), author: author.map(str::to_owned) });
        if self.held.len() >= Self::CHUNK * 4 {
            self.flush(conn).await?;
        }
        Ok(rid)
    }

    /// Inserts what is held (nothing to do when empty); the next create allocates anew.
    pub(crate) async fn flush(&mut self, conn: &mut SqliteConnection) -> Result<(), StoreError> {
        self.next = None;
        if self.held.is_empty() {
            return Ok(());
        }
        let held = std::mem::take(&mut self.held);
        for chunk in held.chunks(Self::CHUNK) {
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO resource_versions (seq, res_type, res_id, version, last_updated, method, body, author) ",
            );
            qb.push_values(chunk, |mut row, h| {
                let v = &h.version;
                row.push_bind(h.seq)
                    .push_bind(v.resource_type.as_str())
                    .push_bind(v.id.as_str())
                    .push_bind(i64::try_from(v.version_id).unwrap_or(i64::MAX))
                    .push_bind(v.last_updated.timestamp_millis())
                    .push_bind(v.method.as_str())
                    .push_bind(v.body.as_deref())
                    .push_bind(h.author.as_deref());
            });
            qb.build().execute(&mut *conn).await.map_err(db_error)?;
            let mut qb = QueryBuilder::<Sqlite>::new(
                "INSERT INTO resources (rid, res_type, res_id, version, seq, deleted, last_updated) ",
            );
            qb.push_values(chunk, |mut row, h| {
                let v = &h.version;
                row.push_bind(h.rid)
                    .push_bind(v.resource_type.as_str())
                    .push_bind(v.id.as_str())
                    .push_bind(i64::try_from(v.version_id).unwrap_or(i64::MAX))
                    .push_bind(h.seq)
                    .push_bind(0_i64)
                    .push_bind(v.last_updated.timestamp_millis());
            });
            qb.build().execute(&mut *conn).await.map_err(db_error)?;
        }
        Ok(())
    }
}
