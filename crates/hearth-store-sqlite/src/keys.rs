//! SQLCipher keys: which configured key opens the file, clear refusals, re-keying, and pools
//! that follow a re-key made by another process.
//!
//! A key is passed raw (`PRAGMA key = "x'…'"`: 256 random bits need no passphrase derivation,
//! so opening a pooled connection stays cheap). sqlx runs the `key` pragma before every other
//! pragma of a connection. Statement logging is off on keyed connections, so the pragma never
//! reaches a log.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};

use hearth_store::StoreError;
use hearth_store_sql::crypt::{CryptError, KeyRing, KeySource, MasterKey};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection, SqlitePool};
use sqlx::{ConnectOptions, Connection, Row};

use crate::db_error;

const SQLITE_HEADER: &[u8; 16] = b"SQLite format 3\0";

/// A refusal to open, said plainly (it reaches the operator through `hearth serve`'s error).
pub(crate) fn refused(e: CryptError) -> StoreError {
    StoreError::Database(Box::new(e))
}

fn refuse(msg: String) -> StoreError {
    refused(CryptError(msg))
}

/// `Some(true)`: the file starts with SQLite's plaintext header; `Some(false)`: it holds data
/// that does not (an encrypted database); `None`: missing or empty (a new database).
fn is_plaintext(path: &Path) -> Result<Option<bool>, StoreError> {
    use std::io::Read;
    let mut file = match std::fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(StoreError::Unavailable(Box::new(e))),
    };
    let mut head = Vec::with_capacity(16);
    file.by_ref().take(16).read_to_end(&mut head).map_err(|e| StoreError::Unavailable(Box::new(e)))?;
    if head.is_empty() {
        return Ok(None);
    }
    Ok(Some(head.as_slice() == SQLITE_HEADER))
}

/// Without a key, the database must not be encrypted.
pub(crate) fn check_plaintext(path: &Path) -> Result<(), StoreError> {
    if is_plaintext(path)? == Some(false) {
        return Err(refuse(format!(
            "the database {} is encrypted and no encryption key is configured (set encryption_key_file or \
             HEARTH_ENCRYPTION_KEY)",
            path.display()
        )));
    }
    Ok(())
}

/// Connection options with the key set (first pragma), or unchanged without one.
pub(crate) fn keyed(options: SqliteConnectOptions, key: Option<&MasterKey>) -> SqliteConnectOptions {
    match key {
        // SQLCipher would also print a failed decryption (a probe with another key) to stderr.
        Some(key) => options
            .pragma("key", key.sqlcipher_pragma().to_string())
            .pragma("cipher_log_level", "NONE")
            .disable_statement_logging(),
        None => options,
    }
}

/// Whether `key` opens the database (reads its schema).
async fn opens(path: &Path, key: &MasterKey) -> bool {
    let options = keyed(SqliteConnectOptions::new().filename(path).read_only(true), Some(key));
    let Ok(mut conn) = options.connect().await else { return false };
    let ok = sqlx::query("SELECT count(*) FROM sqlite_master").fetch_one(&mut conn).await.is_ok();
    let _ = conn.close().await;
    ok
}

/// The key of `ring` that opens the database at `path` (the current key for a new database).
pub(crate) async fn find_key(path: &Path, ring: &KeyRing) -> Result<MasterKey, StoreError> {
    match is_plaintext(path)? {
        None => return Ok(ring.current().clone()),
        Some(true) => {
            return Err(refuse(format!(
                "the database {} is not encrypted but an encryption key is configured; to encrypt it, take a backup \
                 without the key and restore it with the key (README, \"Backup and restore\")",
                path.display()
            )));
        }
        Some(false) => {}
    }
    for key in ring.keys() {
        if opens(path, key).await {
            return Ok(key.clone());
        }
    }
    Err(refuse(format!(
        "the database {} is encrypted and the configured key does not open it (key ids tried: {})",
        path.display(),
        ring.ids()
    )))
}

/// The SQLCipher version the binary links (empty when it is plain SQLite).
pub async fn cipher_version(conn: &mut SqliteConnection) -> Result<String, StoreError> {
    let row = sqlx::query("PRAGMA cipher_version").fetch_optional(conn).await.map_err(db_error)?;
    Ok(row.and_then(|r| r.try_get::<String, _>(0).ok()).unwrap_or_default())
}

/// Re-encrypts the database under the ring's current key (`PRAGMA rekey`: every page is
/// rewritten in one write transaction, WAL included). The database must open with one of the
/// ring's keys. A running server follows by itself (see [`Follow`]). Returns `(old id, new id)`.
pub async fn rotate_key(path: &Path, ring: &KeyRing) -> Result<(String, String), StoreError> {
    let old = find_key(path, ring).await?;
    let new = ring.current();
    if old.id() == new.id() {
        return Ok((old.id().to_owned(), new.id().to_owned()));
    }
    let options =
        keyed(SqliteConnectOptions::new().filename(path).busy_timeout(std::time::Duration::from_secs(60)), Some(&old));
    let mut conn = options.connect().await.map_err(db_error)?;
    let rekey = format!("PRAGMA rekey = {}", new.sqlcipher_pragma().as_str());
    sqlx::raw_sql(sqlx::AssertSqlSafe(rekey)).execute(&mut conn).await.map_err(db_error)?;
    // Move the re-keyed pages out of the WAL, so no frame under the old key remains.
    let _ = sqlx::query("PRAGMA wal_checkpoint(TRUNCATE)").execute(&mut conn).await;
    conn.close().await.map_err(db_error)?;
    if !opens(path, new).await || opens(path, &old).await {
        return Err(refuse(format!("re-keying the database {} to key {} failed", path.display(), new.id())));
    }
    Ok((old.id().to_owned(), new.id().to_owned()))
}

/// Makes a store's pools follow a re-key done by another process: before a pooled connection
/// is handed out it reads the schema; "not a database" means the key changed, so the key
/// source is read again, the key that now opens the file is found and both pools open their
/// new connections with it (the stale connection is dropped).
pub(crate) struct Follow {
    source: KeySource,
    path: PathBuf,
    base: SqliteConnectOptions,
    key_id: Mutex<String>,
    pools: OnceLock<(SqlitePool, SqlitePool)>,
    busy: tokio::sync::Mutex<()>,
}

type Hook = dyn for<'c> Fn(
        &'c mut SqliteConnection,
        sqlx::pool::PoolConnectionMetadata,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<bool, sqlx::Error>> + Send + 'c>>
    + Send
    + Sync;

impl Follow {
    pub(crate) fn new(source: KeySource, path: &Path, base: SqliteConnectOptions, key: MasterKey) -> Arc<Follow> {
        Arc::new(Follow {
            source,
            path: path.to_path_buf(),
            base,
            key_id: Mutex::new(key.id().to_owned()),
            pools: OnceLock::new(),
            busy: tokio::sync::Mutex::new(()),
        })
    }

    pub(crate) fn attach(&self, write: SqlitePool, read: SqlitePool) {
        let _ = self.pools.set((write, read));
    }

    pub(crate) fn hook(self: &Arc<Self>) -> Box<Hook> {
        let follow = self.clone();
        Box::new(move |conn, _meta| {
            let follow = follow.clone();
            Box::pin(async move {
                match sqlx::query("SELECT 1 FROM sqlite_master LIMIT 1").fetch_optional(&mut *conn).await {
                    Ok(_) => Ok(true),
                    Err(sqlx::Error::Database(d)) if d.code().as_deref() == Some("26") => {
                        follow.rekeyed().await;
                        Ok(false)
                    }
                    Err(e) => Err(e),
                }
            })
        })
    }

    async fn rekeyed(&self) {
        let _one_at_a_time = self.busy.lock().await;
        let ring = match self.source.load() {
            Ok(ring) => ring,
            Err(e) => {
                tracing::error!(error = %e, "the database was re-keyed and the key source cannot be read");
                return;
            }
        };
        let key = match find_key(&self.path, &ring).await {
            Ok(key) => key,
            Err(e) => {
                tracing::error!(error = %e, "the database was re-keyed and no configured key opens it");
                return;
            }
        };
        let Ok(mut current) = self.key_id.lock() else { return };
        if *current == key.id() {
            return;
        }
        if let Some((write, read)) = self.pools.get() {
            write.set_connect_options(keyed(self.base.clone(), Some(&key)));
            read.set_connect_options(keyed(self.base.clone(), Some(&key)).read_only(true));
        }
        tracing::info!(key_id = key.id(), "the database was re-keyed; new connections use the new key");
        *current = key.id().to_owned();
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use crate::{SqliteOptions, SqliteStore};

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn opts(keys: &str) -> SqliteOptions {
        SqliteOptions { keys: Some(KeySource::Fixed(KeyRing::parse(keys).unwrap())), ..SqliteOptions::default() }
    }

    fn contains(path: &Path, needle: &str) -> bool {
        let bytes = std::fs::read(path).unwrap_or_default();
        bytes.windows(needle.len()).any(|w| w == needle.as_bytes())
    }

    #[tokio::test]
    async fn sqlcipher_encrypts_refuses_wrong_keys_and_rekeys_in_wal() {
        let dir = tempfile::tempdir().unwrap();
        let path = dir.path().join("h.db");
        let key_file = dir.path().join("key");
        std::fs::write(&key_file, K1).unwrap();
        let file_opts = SqliteOptions { keys: Some(KeySource::File(key_file.clone())), ..SqliteOptions::default() };
        let store = SqliteStore::open(&path, &file_opts).await.unwrap();
        let mut conn = store.write.acquire().await.unwrap();
        assert!(!cipher_version(&mut conn).await.unwrap().is_empty(), "SQLCipher is not linked");
        sqlx::query("CREATE TABLE t (v TEXT)").execute(&mut *conn).await.unwrap();
        sqlx::query("INSERT INTO t VALUES ('Zebedee Quux')").execute(&mut *conn).await.unwrap();
        drop(conn);
        assert!(!contains(&path, "Zebedee") && !contains(&crate::backup::sibling(&path, "-wal"), "Zebedee"));

        let e = SqliteStore::open(&path, &opts(K2)).await.err().unwrap();
        let msg = std::error::Error::source(&e).unwrap().to_string();
        assert!(msg.contains("configured key does not open it"), "{msg}");
        let e = SqliteStore::open(&path, &SqliteOptions::default()).await.err().unwrap();
        let msg = std::error::Error::source(&e).unwrap().to_string();
        assert!(msg.contains("no encryption key is configured"), "{msg}");

        // Re-key from another "process" while the store is open; the store follows.
        let ring = KeyRing::parse(&format!("{K2}\n{K1}")).unwrap();
        let (old, new) = rotate_key(&path, &ring).await.unwrap();
        assert_ne!(old, new);
        assert!(SqliteStore::open(&path, &opts(K1)).await.is_err());
        let reopened = SqliteStore::open(&path, &opts(K2)).await.unwrap();
        let mut c = reopened.read.acquire().await.unwrap();
        let v: String = sqlx::query_scalar("SELECT v FROM t").fetch_one(&mut *c).await.unwrap();
        assert_eq!(v, "Zebedee Quux");
        drop(c);
        reopened.close_pools().await;
        // The running store reads its key file again and reconnects.
        std::fs::write(&key_file, format!("{K2}\n{K1}\n")).unwrap();
        let mut ok = false;
        for _ in 0..3 {
            let Ok(mut c) = store.read.acquire().await else { continue };
            if sqlx::query_scalar::<_, String>("SELECT v FROM t").fetch_one(&mut *c).await.is_ok() {
                ok = true;
                break;
            }
        }
        assert!(ok, "the open store did not follow the re-key");
        store.close_pools().await;

        // A plaintext database with a key configured is refused, never corrupted.
        let plain = dir.path().join("p.db");
        let s = SqliteStore::open(&plain, &SqliteOptions::default()).await.unwrap();
        s.close_pools().await;
        let e = SqliteStore::open(&plain, &opts(K1)).await.err().unwrap();
        let msg = std::error::Error::source(&e).unwrap().to_string();
        assert!(msg.contains("not encrypted but an encryption key is configured"), "{msg}");
    }
}
