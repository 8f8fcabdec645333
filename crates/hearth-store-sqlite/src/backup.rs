//! Online backup and restore of the SQLite database.
//!
//! Backup: `VACUUM INTO` on a read connection copies one consistent snapshot (a WAL read
//! transaction: every write committed before it started, none after) while the server goes on
//! writing; with a key the copy is a SQLCipher database under the same key. The copy is checked
//! (`PRAGMA integrity_check`, and `cipher_integrity_check` when encrypted) and wrapped in the
//! backup container (`hearth_store_sql::backup`). Restore checks the container's checksum while
//! unpacking next to the database, opens and checks the copy, brings it under the configured key
//! (re-key, or `sqlcipher_export` for a plaintext backup), and only then replaces the database.
//! The server must be stopped for a restore.

use std::path::{Path, PathBuf};

use hearth_store::StoreError;
use hearth_store_sql::backup::{BackupReader, BackupWriter, Manifest};
use hearth_store_sql::crypt::{CryptError, KeyRing, MasterKey};
use sqlx::sqlite::{SqliteConnectOptions, SqliteConnection};
use sqlx::{AssertSqlSafe, ConnectOptions, Connection, Row};

use crate::keys::{find_key, keyed, refused};
use crate::{MIGRATOR, db_error};

fn crypt(e: CryptError) -> StoreError {
    refused(e)
}

fn io(path: &Path) -> impl Fn(std::io::Error) -> StoreError {
    let path = path.display().to_string();
    move |e| refused(CryptError(format!("{path}: {e}")))
}

async fn connect(path: &Path, key: Option<&MasterKey>, read_only: bool) -> Result<SqliteConnection, StoreError> {
    keyed(SqliteConnectOptions::new().filename(path).read_only(read_only), key).connect().await.map_err(db_error)
}

/// `integrity_check` (and `cipher_integrity_check` with a key) on a database file.
async fn check(conn: &mut SqliteConnection, encrypted: bool) -> Result<(), StoreError> {
    let rows = sqlx::query("PRAGMA integrity_check").fetch_all(&mut *conn).await.map_err(db_error)?;
    let first: String = rows.first().and_then(|r| r.try_get(0).ok()).unwrap_or_default();
    if rows.len() != 1 || first != "ok" {
        return Err(refused(CryptError(format!("the backup copy fails PRAGMA integrity_check: {first}"))));
    }
    if encrypted {
        let rows = sqlx::query("PRAGMA cipher_integrity_check").fetch_all(&mut *conn).await.map_err(db_error)?;
        if !rows.is_empty() {
            return Err(refused(CryptError("the backup copy fails PRAGMA cipher_integrity_check".into())));
        }
    }
    Ok(())
}

async fn count(conn: &mut SqliteConnection, table: &str) -> i64 {
    sqlx::query_scalar::<_, i64>(AssertSqlSafe(format!("SELECT count(*) FROM {table}")))
        .fetch_one(&mut *conn)
        .await
        .unwrap_or(0)
}

pub(crate) fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let mut name = path.as_os_str().to_owned();
    name.push(suffix);
    PathBuf::from(name)
}

fn remove(path: &Path) {
    let _ = std::fs::remove_file(path);
}

/// The latest migration this binary knows.
fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Backs up the database at `path` (opened with `ring`, or plaintext) into `out` while other
/// connections keep writing. Returns the manifest written.
pub async fn backup(path: &Path, ring: Option<&KeyRing>, out: &Path, now_ms: i64) -> Result<Manifest, StoreError> {
    let key = match ring {
        Some(ring) => Some(find_key(path, ring).await?),
        None => {
            crate::keys::check_plaintext(path)?;
            None
        }
    };
    let copy = sibling(out, ".db-partial");
    remove(&copy);
    let result = async {
        let mut conn = connect(path, key.as_ref(), true).await?;
        sqlx::query("VACUUM INTO ?1")
            .bind(copy.to_string_lossy().into_owned())
            .execute(&mut conn)
            .await
            .map_err(db_error)?;
        conn.close().await.map_err(db_error)?;
        let mut conn = connect(&copy, key.as_ref(), true).await?;
        check(&mut conn, key.is_some()).await?;
        let mut counts = serde_json::Map::new();
        for table in ["resources", "resource_versions", "accounts"] {
            counts.insert(table.into(), count(&mut conn, table).await.into());
        }
        let schema: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
            .fetch_one(&mut conn)
            .await
            .map_err(db_error)?;
        conn.close().await.map_err(db_error)?;
        let mut writer = BackupWriter::create(out).map_err(crypt)?;
        let written = (|| {
            use std::io::Read;
            let mut file = std::fs::File::open(&copy).map_err(io(&copy))?;
            let mut buf = vec![0u8; 256 * 1024];
            loop {
                let n = file.read(&mut buf).map_err(io(&copy))?;
                if n == 0 {
                    return Ok::<(), StoreError>(());
                }
                writer.write(buf.get(..n).unwrap_or_default()).map_err(crypt)?;
            }
        })();
        if let Err(e) = written {
            writer.abandon();
            return Err(e);
        }
        let manifest = Manifest {
            backend: "sqlite".into(),
            schema_version: schema,
            created_at_ms: now_ms,
            key_id: key.as_ref().map(|k| k.id().to_owned()),
            payload_bytes: 0,
            payload_sha256: String::new(),
            counts,
        };
        writer.finish(manifest).map_err(crypt)
    }
    .await;
    remove(&copy);
    result
}

/// Whether the database at `path` holds anything (resources or accounts). A file that the
/// configured key cannot open counts as holding something.
async fn holds_data(path: &Path, ring: Option<&KeyRing>) -> bool {
    match std::fs::metadata(path) {
        Ok(m) if m.len() > 0 => {}
        _ => return false,
    }
    let key = match ring {
        Some(ring) => match find_key(path, ring).await {
            Ok(k) => Some(k),
            Err(_) => return true,
        },
        None => None,
    };
    let Ok(mut conn) = connect(path, key.as_ref(), true).await else { return true };
    let mut n = 0;
    for table in ["resources", "accounts"] {
        // A table that does not exist yet (an unmigrated file) holds nothing.
        n += count(&mut conn, table).await;
    }
    let _ = conn.close().await;
    n > 0
}

/// Restores the backup `from` as the database at `path`, under the configured `ring` (or
/// plaintext). `old_keys` open a backup made under a key that is no longer configured.
/// Refuses to replace a database holding data unless `force`. The server must be stopped.
pub async fn restore(
    path: &Path,
    ring: Option<&KeyRing>,
    old_keys: Option<&KeyRing>,
    from: &Path,
    force: bool,
) -> Result<Manifest, StoreError> {
    let reader = BackupReader::open(from).map_err(crypt)?;
    let m = reader.manifest.clone();
    if m.backend != "sqlite" {
        return Err(refused(CryptError(format!(
            "{} is a backup of a {} database; this server uses SQLite",
            from.display(),
            m.backend
        ))));
    }
    if m.schema_version > schema_version() {
        return Err(refused(CryptError(format!(
            "the backup's schema version {} is newer than this Hearth's ({}); restore it with a newer Hearth",
            m.schema_version,
            schema_version()
        ))));
    }
    let backup_key = match &m.key_id {
        None => None,
        Some(id) => {
            let found = ring.and_then(|r| r.find(id)).or_else(|| old_keys.and_then(|r| r.find(id)));
            Some(found.cloned().ok_or_else(|| {
                refused(CryptError(format!(
                    "the backup is encrypted under key {id}, which is not configured; pass its key file with --key-file"
                )))
            })?)
        }
    };
    if backup_key.is_some() && ring.is_none() {
        return Err(refused(CryptError(
            "the backup is encrypted; configure an encryption key to restore it (it is restored encrypted)".into(),
        )));
    }
    if !force && holds_data(path, ring).await {
        return Err(refused(CryptError(format!(
            "the database {} is not empty; pass --force to replace it with the backup",
            path.display()
        ))));
    }
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::create_dir_all(dir).map_err(io(dir))?;
    }
    let tmp = sibling(path, ".restoring");
    let tmp2 = sibling(path, ".restoring2");
    remove(&tmp);
    remove(&tmp2);
    let result = async {
        // 1. Unpack while checking the checksum; nothing is used before it matches.
        {
            use std::io::Write;
            // The restored database is private to this account, as the server keeps it (0600).
            let mut file = std::os::unix::fs::OpenOptionsExt::mode(
                std::fs::OpenOptions::new().write(true).create(true).truncate(true),
                0o600,
            )
            .open(&tmp)
            .map_err(io(&tmp))?;
            reader
                .for_each(|part| file.write_all(part).map_err(|e| CryptError(format!("{}: {e}", tmp.display()))))
                .map_err(crypt)?;
            file.sync_all().map_err(io(&tmp))?;
        }
        // 2. It opens with its key and passes the integrity checks.
        let mut conn = connect(&tmp, backup_key.as_ref(), false).await?;
        check(&mut conn, backup_key.is_some()).await?;
        // 3. Under the configured key.
        let target = ring.map(KeyRing::current);
        let mut source = tmp.clone();
        match (&backup_key, target) {
            (Some(old), Some(new)) if old.id() != new.id() => {
                let rekey = format!("PRAGMA rekey = {}", new.sqlcipher_pragma().as_str());
                sqlx::raw_sql(AssertSqlSafe(rekey)).execute(&mut conn).await.map_err(db_error)?;
            }
            (None, Some(new)) => {
                let attach = format!(
                    "ATTACH DATABASE '{}' AS encrypted KEY {}",
                    tmp2.to_string_lossy().replace('\'', "''"),
                    new.sqlcipher_pragma().as_str()
                );
                sqlx::raw_sql(AssertSqlSafe(attach)).execute(&mut conn).await.map_err(db_error)?;
                sqlx::query("SELECT sqlcipher_export('encrypted')").execute(&mut conn).await.map_err(db_error)?;
                sqlx::query("DETACH DATABASE encrypted").execute(&mut conn).await.map_err(db_error)?;
                source = tmp2.clone();
            }
            _ => {}
        }
        conn.close().await.map_err(db_error)?;
        let mut conn = connect(&source, target, true).await?;
        check(&mut conn, target.is_some()).await?;
        conn.close().await.map_err(db_error)?;
        // 4. Replace the database (and its WAL and shared-memory files).
        for suffix in ["-wal", "-shm"] {
            remove(&sibling(path, suffix));
        }
        std::fs::rename(&source, path).map_err(io(path))?;
        Ok(m.clone())
    }
    .await;
    for p in [&tmp, &tmp2] {
        remove(p);
        remove(&sibling(p, "-wal"));
        remove(&sibling(p, "-shm"));
    }
    result
}
