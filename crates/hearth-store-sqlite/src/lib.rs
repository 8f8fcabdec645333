//! The embedded SQLite backend of the [`ResourceStore`].
//!
//! Design:
//! - one database file in WAL mode with `synchronous=FULL`, so a commit is on disk before the call
//!   returns (a response is never sent for a write that a crash could lose);
//! - a write pool of exactly one connection whose transactions start with `BEGIN IMMEDIATE`: writes
//!   are serialised, so read-check-write sequences (version checks, conditional writes) cannot race,
//!   and a second process on the same file waits on the lock instead of failing mid-transaction;
//! - a separate pool of read connections that never block the writer (WAL readers see the last
//!   committed state);
//! - SQL lives only here; callers pass typed values ([`Criteria`], [`Write`]).

#![forbid(unsafe_code)]

mod sql;

use std::path::Path;
use std::time::Duration;

use async_trait::async_trait;
use chrono::{DateTime, Utc};
use hearth_store::{
    Criteria, Current, CurrentState, HistoryPage, HistoryQuery, PoolStats, ResourceStore, StoreError, StoreTx,
    TokenIndex, Version,
};
use sqlx::sqlite::{SqliteConnectOptions, SqliteJournalMode, SqlitePool, SqlitePoolOptions, SqliteSynchronous};
use sqlx::{Sqlite, Transaction};

static MIGRATOR: sqlx::migrate::Migrator = sqlx::migrate!("./migrations");

/// Tuning knobs for the SQLite backend.
#[derive(Debug, Clone)]
pub struct SqliteOptions {
    /// Read connections (the write pool always has exactly one).
    pub read_connections: u32,
    /// How long a writer waits for the database lock held by another process.
    pub busy_timeout: Duration,
}

impl Default for SqliteOptions {
    fn default() -> Self {
        SqliteOptions { read_connections: 8, busy_timeout: Duration::from_secs(10) }
    }
}

pub struct SqliteStore {
    write: SqlitePool,
    read: SqlitePool,
}

impl SqliteStore {
    /// Opens (creating if missing) the database file at `path`. Does not apply migrations.
    pub async fn open(path: &Path, options: &SqliteOptions) -> Result<SqliteStore, StoreError> {
        let connect = SqliteConnectOptions::new()
            .filename(path)
            .create_if_missing(true)
            .journal_mode(SqliteJournalMode::Wal)
            .synchronous(SqliteSynchronous::Full)
            .foreign_keys(true)
            .busy_timeout(options.busy_timeout)
            .pragma("temp_store", "memory")
            .pragma("cache_size", "-32000");
        let write = SqlitePoolOptions::new()
            .max_connections(1)
            .min_connections(1)
            .acquire_timeout(options.busy_timeout)
            .connect_with(connect.clone())
            .await
            .map_err(db_error)?;
        let read = SqlitePoolOptions::new()
            .max_connections(options.read_connections.max(1))
            .acquire_timeout(options.busy_timeout)
            .connect_with(connect.read_only(true))
            .await
            .map_err(db_error)?;
        Ok(SqliteStore { write, read })
    }

    /// Applies pending schema migrations (idempotent).
    pub async fn migrate(&self) -> Result<(), StoreError> {
        MIGRATOR.run(&self.write).await.map_err(|e| StoreError::Database(Box::new(e)))
    }
}

/// Maps a sqlx error: lock/pool exhaustion is "unavailable" (503), the rest is internal (500).
fn db_error(e: sqlx::Error) -> StoreError {
    let busy = match &e {
        sqlx::Error::PoolTimedOut | sqlx::Error::PoolClosed | sqlx::Error::Io(_) => true,
        sqlx::Error::Database(d) => {
            matches!(d.code().as_deref(), Some("5") | Some("6") | Some("517"))
        }
        _ => false,
    };
    if busy { StoreError::Unavailable(Box::new(e)) } else { StoreError::Database(Box::new(e)) }
}

fn from_millis(ms: i64) -> Result<DateTime<Utc>, StoreError> {
    DateTime::from_timestamp_millis(ms).ok_or_else(|| StoreError::Corrupt(format!("timestamp out of range: {ms}")))
}

/// A write transaction on the single writer connection.
struct SqliteTx {
    tx: Transaction<'static, Sqlite>,
}

#[async_trait]
impl StoreTx for SqliteTx {
    async fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<CurrentState>, StoreError> {
        sql::current(&mut self.tx, resource_type, id).await
    }

    async fn read(&mut self, resource_type: &str, id: &str) -> Result<Current, StoreError> {
        sql::read_current(&mut self.tx, resource_type, id).await
    }

    async fn find(&mut self, criteria: &Criteria, limit: u32) -> Result<Vec<Version>, StoreError> {
        sql::find(&mut self.tx, criteria, limit).await
    }

    async fn persist(&mut self, version: &Version, tokens: &[TokenIndex]) -> Result<(), StoreError> {
        let tx = &mut self.tx;
        let (ty, id) = (version.resource_type.as_str(), version.id.as_str());
        let ms = version.last_updated.timestamp_millis();
        let (v, deleted) = (version.version_id, version.is_deletion());
        let seq = sql::insert_version(tx, ty, id, v, ms, version.method, version.body.as_deref()).await?;
        sql::upsert_current(tx, ty, id, v, seq, deleted, ms).await?;
        if v > 1 {
            sql::delete_tokens(tx, ty, id).await?;
        }
        sql::insert_tokens(tx, ty, id, tokens).await
    }

    async fn commit(self: Box<Self>) -> Result<(), StoreError> {
        self.tx.commit().await.map_err(db_error)
    }
}

#[async_trait]
impl ResourceStore for SqliteStore {
    fn backend(&self) -> &'static str {
        "sqlite"
    }

    async fn begin(&self) -> Result<Box<dyn StoreTx>, StoreError> {
        let tx = self.write.begin_with("BEGIN IMMEDIATE").await.map_err(db_error)?;
        Ok(Box::new(SqliteTx { tx }))
    }

    async fn read(&self, resource_type: &str, id: &str) -> Result<Current, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db_error)?;
        sql::read_current(&mut conn, resource_type, id).await
    }

    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: u64,
    ) -> Result<Option<Version>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db_error)?;
        sql::read_version(&mut conn, resource_type, id, version_id).await
    }

    async fn find(&self, criteria: &Criteria, limit: u32) -> Result<Vec<Version>, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db_error)?;
        sql::find(&mut conn, criteria, limit).await
    }

    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        let mut conn = self.read.acquire().await.map_err(db_error)?;
        sql::history(&mut conn, query).await
    }

    async fn ping(&self) -> Result<(), StoreError> {
        let mut conn = self.read.acquire().await.map_err(db_error)?;
        sql::ping(&mut conn).await
    }

    fn pool_stats(&self) -> PoolStats {
        PoolStats {
            size: self.read.size() + self.write.size(),
            idle: u32::try_from(self.read.num_idle() + self.write.num_idle()).unwrap_or(u32::MAX),
        }
    }

    async fn close(&self) {
        self.read.close().await;
        self.write.close().await;
    }
}
