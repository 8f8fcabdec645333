//! Online backup, restore and master-key rotation on PostgreSQL, without extra binaries.
//!
//! Backup: one `REPEATABLE READ READ ONLY` transaction (one snapshot: every write committed
//! before it began, none after) streams each of Hearth's tables with `COPY … TO STDOUT` into the
//! backup container (`hearth_store_sql::backup`); with a key, the payload is an encrypted
//! stream. Restore checks the checksum, then in one transaction empties the tables, `COPY`s the
//! rows back, moves the identity sequences past them and re-wraps data keys under the
//! configured master key. Rotation re-wraps every data key under the new master key, makes a new
//! data key and re-encrypts every body under it in batches of [`BATCH`] rows, each its own short
//! transaction, so servers keep serving (they open bodies under the old or the new data key).

use std::io::Read;
use std::path::Path;

use futures_util::StreamExt;
use hearth_store::{StoreError, Version};
use hearth_store_sql::backup::{BackupReader, BackupWriter, Manifest};
use hearth_store_sql::crypt::{self, BodyCipher, CryptError, KeyRing, StreamOpener, StreamSealer};
use sqlx::{AssertSqlSafe, Row};

use crate::{Conn, MIGRATOR, PostgresStore, VERSION_COLUMNS, db_error, decode_version};

/// Rows re-encrypted per transaction by a rotation.
pub const BATCH: i64 = 500;

fn refused(msg: String) -> StoreError {
    crypt::key_refused_plain(CryptError(msg))
}

fn crypt_err(e: CryptError) -> StoreError {
    crypt::key_refused_plain(e)
}

fn quote(ident: &str) -> String {
    format!("\"{}\"", ident.replace('"', "\"\""))
}

const TABLES: &str = "SELECT table_name::text FROM information_schema.tables WHERE table_schema = current_schema() \
                      AND table_type = 'BASE TABLE' AND table_name <> '_sqlx_migrations' ORDER BY table_name";

fn schema_version() -> i64 {
    MIGRATOR.iter().map(|m| m.version).max().unwrap_or(0)
}

/// Writes a consistent backup of every Hearth table to `out` while the database keeps serving.
pub async fn backup(store: &PostgresStore, out: &Path, now_ms: i64) -> Result<Manifest, StoreError> {
    let mut tx = store.pool.begin_with("BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY").await.map_err(db_error)?;
    let tables: Vec<String> = sqlx::query_scalar(TABLES).fetch_all(&mut *tx).await.map_err(db_error)?;
    let schema: i64 = sqlx::query_scalar("SELECT COALESCE(MAX(version), 0) FROM _sqlx_migrations")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    let mut writer = BackupWriter::create(out).map_err(crypt_err)?;
    let mut sealer = None;
    let mut key_id = None;
    if let Some(cipher) = &store.cipher {
        let ring = cipher.ring();
        let (s, header) = StreamSealer::new(&ring).map_err(crypt_err)?;
        writer.write(&header).map_err(crypt_err)?;
        sealer = Some(s);
        key_id = Some(ring.current().id().to_owned());
    }
    let mut emit = |writer: &mut BackupWriter, data: &[u8]| -> Result<(), StoreError> {
        match &mut sealer {
            Some(s) => writer.write(&s.update(data).map_err(crypt_err)?).map_err(crypt_err),
            None => writer.write(data).map_err(crypt_err),
        }
    };
    let mut counts = serde_json::Map::new();
    let result: Result<(), StoreError> = async {
        for table in &tables {
            let cols: Vec<String> = sqlx::query_scalar(
                "SELECT column_name::text FROM information_schema.columns WHERE table_schema = current_schema() \
                 AND table_name = $1 ORDER BY ordinal_position",
            )
            .bind(table)
            .fetch_all(&mut *tx)
            .await
            .map_err(db_error)?;
            emit(&mut writer, format!("table\t{table}\t{}\n", cols.join(",")).as_bytes())?;
            let list = cols.iter().map(|c| quote(c)).collect::<Vec<_>>().join(", ");
            let statement = format!("COPY {} ({list}) TO STDOUT", quote(table));
            let mut rows = 0u64;
            let mut stream = tx.copy_out_raw(&statement).await.map_err(db_error)?;
            while let Some(chunk) = stream.next().await {
                let chunk = chunk.map_err(db_error)?;
                rows += chunk.iter().filter(|b| **b == b'\n').count() as u64;
                emit(&mut writer, &chunk)?;
            }
            drop(stream);
            emit(&mut writer, b"\\.\n")?;
            counts.insert(table.clone(), rows.into());
        }
        Ok(())
    }
    .await;
    if let Err(e) = result {
        writer.abandon();
        return Err(e);
    }
    if let Some(s) = sealer.take() {
        writer.write(&s.finish().map_err(crypt_err)?).map_err(crypt_err)?;
    }
    tx.commit().await.map_err(db_error)?;
    let manifest = Manifest {
        backend: "postgres".into(),
        schema_version: schema,
        created_at_ms: now_ms,
        key_id,
        payload_bytes: 0,
        payload_sha256: String::new(),
        counts,
    };
    writer.finish(manifest).map_err(crypt_err)
}

/// Restores `from` into the (migrated) database of `store`. `old_keys` open a backup made under
/// a master key that is no longer configured. Refuses a database holding data unless `force`.
/// Servers should be stopped: the tables are emptied and refilled in one transaction.
pub async fn restore(
    store: &PostgresStore,
    old_keys: Option<&KeyRing>,
    from: &Path,
    force: bool,
) -> Result<Manifest, StoreError> {
    let reader = BackupReader::open(from).map_err(crypt_err)?;
    let m = reader.manifest.clone();
    if m.backend != "postgres" {
        return Err(refused(format!(
            "{} is a backup of a {} database; this server uses PostgreSQL",
            from.display(),
            m.backend
        )));
    }
    if m.schema_version != schema_version() {
        return Err(refused(format!(
            "the backup's schema version is {} and this Hearth's is {}; restore it with the Hearth version that made it",
            m.schema_version,
            schema_version()
        )));
    }
    reader.verify().map_err(crypt_err)?;
    let configured = store.cipher.as_ref().map(|c| c.ring());
    let mut opener = match &m.key_id {
        None => None,
        Some(id) => {
            let Some(ring) = &configured else {
                return Err(refused("the backup is encrypted; configure an encryption key to restore it".into()));
            };
            let ring = match old_keys {
                Some(old) => ring.and(old),
                None => ring.clone(),
            };
            if ring.find(id).is_none() {
                return Err(refused(format!(
                    "the backup is encrypted under key {id}, which is not configured; pass its key file with --key-file"
                )));
            }
            Some((StreamOpener::new(ring.clone()), ring))
        }
    };
    let mut tx = store.pool.begin().await.map_err(db_error)?;
    let held: i64 = sqlx::query_scalar("SELECT (SELECT count(*) FROM resources) + (SELECT count(*) FROM accounts)")
        .fetch_one(&mut *tx)
        .await
        .map_err(db_error)?;
    if held > 0 && !force {
        return Err(refused("the database is not empty; pass --force to replace it with the backup".into()));
    }
    let tables: Vec<String> = sqlx::query_scalar(TABLES).fetch_all(&mut *tx).await.map_err(db_error)?;
    let list = tables.iter().map(|t| quote(t)).collect::<Vec<_>>().join(", ");
    if !list.is_empty() {
        sqlx::query(AssertSqlSafe(format!("TRUNCATE {list} RESTART IDENTITY CASCADE")))
            .execute(&mut *tx)
            .await
            .map_err(db_error)?;
    }
    let mut lines = Lines {
        payload: Box::new(reader.payload().map_err(crypt_err)?),
        opener: opener.take().map(|(o, _)| o),
        pending: Vec::new(),
        start: 0,
        eof: false,
    };
    while let Some(header) = lines.next_line()? {
        let text = String::from_utf8_lossy(&header).into_owned();
        let mut fields = text.trim_end_matches('\n').split('\t');
        let (Some("table"), Some(table), Some(cols)) = (fields.next(), fields.next(), fields.next()) else {
            return Err(refused("the backup's payload is malformed (expected a table header)".into()));
        };
        if !tables.iter().any(|t| t == table) {
            return Err(refused(format!("the backup holds a table {table} this database does not have")));
        }
        let cols = cols.split(',').map(quote).collect::<Vec<_>>().join(", ");
        let statement = format!("COPY {} ({cols}) FROM STDIN", quote(table));
        let mut copy = tx.copy_in_raw(&statement).await.map_err(db_error)?;
        let mut rows: Vec<u8> = Vec::new();
        loop {
            let line = lines
                .next_line()?
                .ok_or_else(|| refused("the backup's payload ends in the middle of a table".into()))?;
            if line == b"\\.\n" {
                break;
            }
            rows.extend_from_slice(&line);
            if rows.len() > 1024 * 1024 {
                copy.send(std::mem::take(&mut rows)).await.map_err(db_error)?;
            }
        }
        if !rows.is_empty() {
            copy.send(rows).await.map_err(db_error)?;
        }
        copy.finish().await.map_err(db_error)?;
    }
    if let Some(o) = lines.opener.take() {
        o.finish().map_err(crypt_err)?;
    }
    // Identity columns continue after the restored rows.
    let identities: Vec<(String, String)> = sqlx::query_as(
        "SELECT table_name::text, column_name::text FROM information_schema.columns \
         WHERE table_schema = current_schema() AND is_identity = 'YES'",
    )
    .fetch_all(&mut *tx)
    .await
    .map_err(db_error)?;
    for (table, col) in identities {
        let sql = format!(
            "SELECT setval(pg_get_serial_sequence($1, $2), COALESCE((SELECT MAX({c}) FROM {t}), 0) + 1, false)",
            c = quote(&col),
            t = quote(&table)
        );
        sqlx::query(AssertSqlSafe(sql)).bind(&table).bind(&col).execute(&mut *tx).await.map_err(db_error)?;
    }
    // Data keys under the configured master key (or, without one, none may exist).
    match &configured {
        Some(ring) => {
            let ring = match old_keys {
                Some(old) => ring.and(old),
                None => ring.clone(),
            };
            crypt::rewrap_data_keys(&mut Conn(&mut tx, None), &ring).await?;
        }
        None => {
            if crypt::has_data_keys(&mut Conn(&mut tx, None)).await? {
                return Err(refused("the backup holds encrypted resources; configure the encryption key".into()));
            }
        }
    }
    tx.commit().await.map_err(db_error)?;
    Ok(m)
}

/// The payload's lines (decrypted when the backup is encrypted).
struct Lines {
    payload: Box<dyn Read>,
    opener: Option<StreamOpener>,
    pending: Vec<u8>,
    start: usize,
    eof: bool,
}

impl Lines {
    fn next_line(&mut self) -> Result<Option<Vec<u8>>, StoreError> {
        loop {
            if let Some(end) = self.pending.get(self.start..).and_then(|p| p.iter().position(|b| *b == b'\n')) {
                let line = self.pending.get(self.start..self.start + end + 1).unwrap_or_default().to_vec();
                self.start += end + 1;
                return Ok(Some(line));
            }
            if self.eof {
                if self.pending.len() > self.start {
                    return Err(refused("the backup's payload ends in the middle of a line".into()));
                }
                return Ok(None);
            }
            self.pending.drain(..self.start);
            self.start = 0;
            let mut buf = vec![0u8; 256 * 1024];
            let n = self.payload.read(&mut buf).map_err(|e| refused(format!("reading the backup: {e}")))?;
            if n == 0 {
                self.eof = true;
                continue;
            }
            let part = buf.get(..n).unwrap_or_default();
            match &mut self.opener {
                Some(o) => self.pending.extend(o.update(part).map_err(crypt_err)?),
                None => self.pending.extend_from_slice(part),
            }
        }
    }
}

/// What a rotation did.
#[derive(Debug, Clone, Default)]
pub struct Rotation {
    pub rewrapped: usize,
    pub reencrypted: u64,
    pub data_key: String,
}

/// Rotates to the configured ring's current master key (the store was opened with the new key
/// first and the old key after it): re-wraps every data key, makes a new data key and
/// re-encrypts every body (also bodies written before encryption was turned on) in batches.
pub async fn rotate_key(store: &PostgresStore, now_ms: i64) -> Result<Rotation, StoreError> {
    let Some(cipher) = &store.cipher else {
        return Err(refused("no encryption key is configured".into()));
    };
    let ring = cipher.ring();
    let mut out = Rotation::default();
    {
        let mut tx = store.pool.begin().await.map_err(db_error)?;
        out.rewrapped = crypt::rewrap_data_keys(&mut Conn(&mut tx, None), &ring).await?;
        out.data_key = crypt::new_data_key(&mut Conn(&mut tx, None), cipher, now_ms).await?;
        tx.commit().await.map_err(db_error)?;
    }
    let mut after = 0i64;
    loop {
        let mut tx = store.pool.begin().await.map_err(db_error)?;
        let rows = sqlx::query(AssertSqlSafe(format!(
            "SELECT {VERSION_COLUMNS}, v.seq FROM resource_versions v WHERE v.seq > $1 AND v.body IS NOT NULL \
             ORDER BY v.seq LIMIT $2"
        )))
        .bind(after)
        .bind(BATCH)
        .fetch_all(&mut *tx)
        .await
        .map_err(db_error)?;
        if rows.is_empty() {
            break;
        }
        let mut todo: Vec<(i64, String, Version)> = Vec::new();
        for row in &rows {
            let seq: i64 = row.try_get(6).map_err(db_error)?;
            after = seq;
            let v = decode_version(row)?;
            let stored = v.body.as_deref().unwrap_or_default().to_owned();
            if BodyCipher::sealed_with(&stored) == Some(out.data_key.as_str()) {
                continue;
            }
            todo.push((seq, stored, v));
        }
        let mut versions: Vec<Version> = todo.iter().map(|(_, _, v)| v.clone()).collect();
        crypt::reveal(&mut Conn(&mut tx, None), cipher, &mut versions).await?;
        for ((seq, stored, _), v) in todo.iter().zip(versions) {
            let plain = v.body.as_deref().unwrap_or_default();
            let sealed = cipher.seal_body(&v.resource_type, &v.id, v.version_id, plain)?;
            let done = sqlx::query("UPDATE resource_versions SET body = $1 WHERE seq = $2 AND body = $3")
                .bind(&sealed)
                .bind(seq)
                .bind(stored)
                .execute(&mut *tx)
                .await
                .map_err(db_error)?;
            out.reencrypted += done.rows_affected();
        }
        tx.commit().await.map_err(db_error)?;
    }
    Ok(out)
}
