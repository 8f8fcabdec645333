//! The PostgreSQL backend of the [`ResourceStore`]: the same contract as the embedded SQLite
//! backend, for several `hearth serve` processes sharing one database.
//!
//! Concurrency between processes (and tasks) is decided inside PostgreSQL, never in memory:
//! - every write transaction runs at READ COMMITTED and takes transaction-scoped advisory locks:
//!   one per resource (`type/id`) before its current version is read, so version checks and
//!   version numbering cannot race (no lost updates, no duplicate versions), and one per resource
//!   type before a conditional match, so two conditional creates with the same criteria serialise
//!   and the second sees the first (no duplicates);
//! - a lock-order deadlock between two multi-resource transactions is detected by PostgreSQL,
//!   which aborts one of them; that surfaces as `StoreError::Unavailable` (HTTP 503, retryable);
//! - commits are durable with the server's `synchronous_commit` (on by default).
//!
//! All SQL of this backend is in this file. Values are always bound, never interpolated.

#![forbid(unsafe_code)]

use std::sync::Arc;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_store::{
    Clause, Criteria, Current, CurrentState, HistoryPage, HistoryQuery, HistoryScope, Method, PoolStats, ResourceStore,
    StoreError, StoreTx, TokenIndex, TokenMatch, Version,
};
use sqlx::postgres::{PgConnectOptions, PgConnection, PgPool, PgPoolOptions, PgRow};
use sqlx::{Postgres, QueryBuilder, Row, Transaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

#[derive(Debug, Clone)]
pub struct PostgresOptions {
    pub max_connections: u32,
    pub acquire_timeout: Duration,
}

impl Default for PostgresOptions {
    fn default() -> Self {
        PostgresOptions { max_connections: 16, acquire_timeout: Duration::from_secs(10) }
    }
}

pub struct PostgresStore {
    pool: PgPool,
}

impl PostgresStore {
    /// Connects to `url` (`postgres://user:password@host:port/db`). Does not apply migrations.
    pub async fn connect(url: &str, options: &PostgresOptions) -> Result<PostgresStore, StoreError> {
        let connect: PgConnectOptions = url.parse().map_err(|e| StoreError::Unavailable(Box::new(e)))?;
        let pool = PgPoolOptions::new()
            .max_connections(options.max_connections)
            .acquire_timeout(options.acquire_timeout)
            .connect_with(connect)
            .await
            .map_err(db_error)?;
        Ok(PostgresStore { pool })
    }

    /// Applies pending migrations. Safe to run from several processes at once: sqlx takes a
    /// PostgreSQL advisory lock around migrating.
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.pool).await.map_err(|e| StoreError::Database(Box::new(e)))
    }
}

/// Maps a sqlx error: connection/pool trouble, deadlocks and serialisation failures are
/// "unavailable" (retryable, 503); the rest is internal.
fn db_error(e: sqlx::Error) -> StoreError {
    let transient = match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => matches!(
            d.code().as_deref(),
            Some("40P01" | "40001" | "55P03" | "57P01" | "57P03" | "53300" | "08006" | "08003")
        ),
        _ => false,
    };
    if transient { StoreError::Unavailable(Box::new(e)) } else { StoreError::Database(Box::new(e)) }
}

fn to_i64(v: u64) -> Result<i64, StoreError> {
    i64::try_from(v).map_err(|_| StoreError::Corrupt(format!("version out of range: {v}")))
}

fn to_u64(v: i64) -> Result<u64, StoreError> {
    u64::try_from(v).map_err(|_| StoreError::Corrupt(format!("negative version: {v}")))
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {ms}")))
}

async fn advisory_lock(conn: &mut PgConnection, key: &str) -> Result<(), StoreError> {
    sqlx::query("SELECT pg_advisory_xact_lock(hashtextextended($1, 0))")
        .bind(key)
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

const VERSION_COLUMNS: &str = "v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body";

fn decode_version(row: &PgRow) -> Result<Version, StoreError> {
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

async fn current(conn: &mut PgConnection, resource_type: &str, id: &str) -> Result<Option<CurrentState>, StoreError> {
    let row = sqlx::query("SELECT version, deleted FROM resources WHERE res_type = $1 AND res_id = $2")
        .bind(resource_type)
        .bind(id)
        .fetch_optional(conn)
        .await
        .map_err(db_error)?;
    match row {
        None => Ok(None),
        Some(row) => Ok(Some(CurrentState {
            version: to_u64(row.try_get(0).map_err(db_error)?)?,
            deleted: row.try_get(1).map_err(db_error)?,
        })),
    }
}

async fn read_current(conn: &mut PgConnection, resource_type: &str, id: &str) -> Result<Current, StoreError> {
    let row = sqlx::query(
        "SELECT v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body \
         FROM resources r JOIN resource_versions v ON v.seq = r.seq WHERE r.res_type = $1 AND r.res_id = $2",
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

async fn find(conn: &mut PgConnection, criteria: &Criteria, limit: u32) -> Result<Vec<Version>, StoreError> {
    let mut qb = QueryBuilder::<Postgres>::new(format!(
        "SELECT {VERSION_COLUMNS} FROM resources r JOIN resource_versions v ON v.seq = r.seq \
         WHERE NOT r.deleted AND r.res_type = "
    ));
    qb.push_bind(criteria.resource_type.clone());
    for clause in &criteria.clauses {
        match clause {
            Clause::Id(ids) => {
                qb.push(" AND r.res_id = ANY(").push_bind(ids.clone()).push(")");
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
                    qb.push("FALSE");
                }
                qb.push("))");
            }
        }
    }
    qb.push(" ORDER BY r.res_id LIMIT ").push_bind(i64::from(limit));
    let rows = qb.build().fetch_all(conn).await.map_err(db_error)?;
    rows.iter().map(decode_version).collect()
}

async fn insert_version(
    conn: &mut PgConnection,
    resource_type: &str,
    id: &str,
    version: u64,
    last_updated_ms: i64,
    method: Method,
    body: Option<&str>,
) -> Result<i64, StoreError> {
    sqlx::query(
        "INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body) \
         VALUES ($1, $2, $3, $4, $5, $6) RETURNING seq",
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

async fn upsert_current(
    conn: &mut PgConnection,
    resource_type: &str,
    id: &str,
    version: u64,
    seq: i64,
    deleted: bool,
    last_updated_ms: i64,
) -> Result<(), StoreError> {
    sqlx::query(
        "INSERT INTO resources (res_type, res_id, version, seq, deleted, last_updated) VALUES ($1, $2, $3, $4, $5, $6) \
         ON CONFLICT (res_type, res_id) DO UPDATE SET version = EXCLUDED.version, seq = EXCLUDED.seq, \
         deleted = EXCLUDED.deleted, last_updated = EXCLUDED.last_updated",
    )
    .bind(resource_type)
    .bind(id)
    .bind(to_i64(version)?)
    .bind(seq)
    .bind(deleted)
    .bind(last_updated_ms)
    .execute(conn)
    .await
    .map_err(db_error)?;
    Ok(())
}

async fn delete_tokens(conn: &mut PgConnection, resource_type: &str, id: &str) -> Result<(), StoreError> {
    sqlx::query("DELETE FROM token_index WHERE res_type = $1 AND res_id = $2")
        .bind(resource_type)
        .bind(id)
        .execute(conn)
        .await
        .map_err(db_error)?;
    Ok(())
}

async fn insert_tokens(
    conn: &mut PgConnection,
    resource_type: &str,
    id: &str,
    tokens: &[TokenIndex],
) -> Result<(), StoreError> {
    for chunk in tokens.chunks(1000) {
        let mut qb = QueryBuilder::<Postgres>::new("INSERT INTO token_index (res_type, res_id, param, system, code) ");
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

struct PgTx {
    tx: Transaction<'static, Postgres>,
}

#[async_trait]
impl StoreTx for PgTx {
    async fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<CurrentState>, StoreError> {
        advisory_lock(&mut self.tx, &format!("resource:{resource_type}/{id}")).await?;
        current(&mut self.tx, resource_type, id).await
    }

    async fn read(&mut self, resource_type: &str, id: &str) -> Result<Current, StoreError> {
        read_current(&mut self.tx, resource_type, id).await
    }

    async fn find(&mut self, criteria: &Criteria, limit: u32) -> Result<Vec<Version>, StoreError> {
        advisory_lock(&mut self.tx, &format!("match:{}", criteria.resource_type)).await?;
        find(&mut self.tx, criteria, limit).await
    }

    async fn persist(&mut self, version: &Version, tokens: &[TokenIndex]) -> Result<(), StoreError> {
        let tx = &mut self.tx;
        let (ty, id) = (version.resource_type.as_str(), version.id.as_str());
        let ms = version.last_updated.timestamp_millis();
        let (v, deleted) = (version.version_id, version.is_deletion());
        let seq = insert_version(tx, ty, id, v, ms, version.method, version.body.as_deref()).await?;
        upsert_current(tx, ty, id, v, seq, deleted, ms).await?;
        if v > 1 {
            delete_tokens(tx, ty, id).await?;
        }
        insert_tokens(tx, ty, id, tokens).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db_error)
    }
}

#[async_trait]
impl ResourceStore for PostgresStore {
    fn backend(&self) -> &'static str {
        "postgres"
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        let tx = self.pool.begin().await.map_err(db_error)?;
        Ok(Box::new(PgTx { tx }))
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Current, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        read_current(&mut conn, resource_type, id).await
    }

    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: u64,
    ) -> Result<Option<Version>, StoreError> {
        let Ok(version) = i64::try_from(version_id) else {
            return Ok(None);
        };
        let row = sqlx::query(
            "SELECT v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body \
             FROM resource_versions v WHERE v.res_type = $1 AND v.res_id = $2 AND v.version = $3",
        )
        .bind(resource_type)
        .bind(id)
        .bind(version)
        .fetch_optional(&self.pool)
        .await
        .map_err(db_error)?;
        row.as_ref().map(decode_version).transpose()
    }

    async fn find(&self, criteria: &Criteria, limit: u32) -> Result<Vec<Version>, StoreError> {
        let mut conn = self.pool.acquire().await.map_err(db_error)?;
        find(&mut conn, criteria, limit).await
    }

    async fn history(&self, q: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let mut qb = QueryBuilder::<Postgres>::new(format!(
            "SELECT {VERSION_COLUMNS}, v.seq FROM resource_versions v WHERE TRUE"
        ));
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
            qb.push(" AND v.seq >= (SELECT COALESCE(MIN(seq), 0) FROM resource_versions WHERE last_updated >= ")
                .push_bind(ms)
                .push(")");
            qb.push(" AND v.last_updated >= ").push_bind(ms);
        }
        if let Some(before) = q.before {
            qb.push(" AND v.seq < ").push_bind(before);
        }
        qb.push(" ORDER BY v.seq DESC LIMIT ").push_bind(i64::from(q.count) + 1);
        let rows = qb.build().fetch_all(&self.pool).await.map_err(db_error)?;
        let count = q.count as usize;
        let mut entries = Vec::with_capacity(rows.len().min(count));
        let mut next = None;
        for row in rows.iter().take(count) {
            entries.push(decode_version(row)?);
            next = Some(row.try_get::<i64, _>(6).map_err(db_error)?);
        }
        if rows.len() <= count {
            next = None;
        }
        Ok(HistoryPage { entries, next })
    }

    async fn ping(&self) -> Result<(), StoreError> {
        sqlx::query("SELECT 1").execute(&self.pool).await.map_err(db_error)?;
        Ok(())
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats { size: self.pool.size(), idle: u32::try_from(self.pool.num_idle()).unwrap_or(u32::MAX) }
    }

    async fn close(&self) {
        self.pool.close().await;
    }
}
