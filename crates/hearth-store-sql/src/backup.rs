//! The backup file container both backends write (`hearth admin backup`) and read back
//! (`hearth admin restore`).
//!
//! ```text
//! HEARTH-BACKUP 1\n          16 bytes
//! payload                    the backend's data (see below)
//! manifest                   one JSON object
//! manifest length            u64, big-endian
//! ```
//! The manifest (backend, schema version, creation time, the id of the master key the payload
//! is encrypted under, payload size and SHA-256, row counts) comes last so the payload can be
//! streamed; a restore reads it first and checks size and checksum before touching the
//! database. The file is written as `FILE.partial` and renamed when complete, so a backup that
//! did not finish never has the name asked for.
//!
//! Payloads: SQLite, the database file made by `VACUUM INTO` (itself a SQLCipher database under
//! the configured key when there is one). PostgreSQL, each table as
//! `table\t<name>\t<col>,<col>…\n`, its rows in `COPY … TO STDOUT` text format, `\.\n`; with a
//! key, that text is an encrypted stream ([`crate::crypt::StreamSealer`]).

use std::fs::File;
use std::io::{Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use serde_json::{Map, Value, json};
use sha2::{Digest, Sha256};

use crate::crypt::CryptError;

const MAGIC: &[u8; 16] = b"HEARTH-BACKUP 1\n";

fn err(msg: impl Into<String>) -> CryptError {
    CryptError(msg.into())
}

fn io(path: &Path, what: &str) -> impl Fn(std::io::Error) -> CryptError {
    let path = path.display().to_string();
    let what = what.to_owned();
    move |e| err(format!("cannot {what} {path}: {e}"))
}

/// What a backup holds, as recorded in its manifest.
#[derive(Debug, Clone, PartialEq)]
pub struct Manifest {
    /// `sqlite` or `postgres`.
    pub backend: String,
    /// The highest migration applied to the database backed up.
    pub schema_version: i64,
    pub created_at_ms: i64,
    /// The master key id the payload is encrypted under; `None`: not encrypted.
    pub key_id: Option<String>,
    pub payload_bytes: u64,
    pub payload_sha256: String,
    /// Row counts per table (informational).
    pub counts: Map<String, Value>,
}

impl Manifest {
    fn to_json(&self) -> Value {
        json!({
            "format": 1,
            "backend": self.backend,
            "schema_version": self.schema_version,
            "created_at_ms": self.created_at_ms,
            "key_id": self.key_id,
            "payload_bytes": self.payload_bytes,
            "payload_sha256": self.payload_sha256,
            "counts": self.counts,
        })
    }

    fn from_json(v: &Value) -> Result<Manifest, CryptError> {
        let bad = || err("the backup's manifest is malformed");
        if v.get("format").and_then(Value::as_i64) != Some(1) {
            return Err(err("the backup has an unknown format version"));
        }
        Ok(Manifest {
            backend: v.get("backend").and_then(Value::as_str).ok_or_else(bad)?.to_owned(),
            schema_version: v.get("schema_version").and_then(Value::as_i64).ok_or_else(bad)?,
            created_at_ms: v.get("created_at_ms").and_then(Value::as_i64).ok_or_else(bad)?,
            key_id: v.get("key_id").and_then(Value::as_str).map(str::to_owned),
            payload_bytes: v.get("payload_bytes").and_then(Value::as_u64).ok_or_else(bad)?,
            payload_sha256: v.get("payload_sha256").and_then(Value::as_str).ok_or_else(bad)?.to_owned(),
            counts: v.get("counts").and_then(Value::as_object).cloned().unwrap_or_default(),
        })
    }
}

/// Writes a backup file: [`BackupWriter::write`] the payload, then [`BackupWriter::finish`].
pub struct BackupWriter {
    file: File,
    partial: PathBuf,
    path: PathBuf,
    hash: Sha256,
    bytes: u64,
}

impl BackupWriter {
    pub fn create(path: &Path) -> Result<BackupWriter, CryptError> {
        let mut name = path.as_os_str().to_owned();
        name.push(".partial");
        let partial = PathBuf::from(name);
        // A backup holds the whole record: private to the service account from its first byte,
        // whatever the umask (the data directory's files are too).
        let mut options = std::fs::OpenOptions::new();
        options.write(true).create(true).truncate(true);
        #[cfg(unix)]
        std::os::unix::fs::OpenOptionsExt::mode(&mut options, 0o600);
        let mut file = options.open(&partial).map_err(io(&partial, "create"))?;
        file.write_all(MAGIC).map_err(io(&partial, "write"))?;
        Ok(BackupWriter { file, partial, path: path.to_path_buf(), hash: Sha256::new(), bytes: 0 })
    }

    pub fn write(&mut self, data: &[u8]) -> Result<(), CryptError> {
        self.hash.update(data);
        self.bytes += data.len() as u64;
        self.file.write_all(data).map_err(io(&self.partial, "write"))
    }

    /// Appends the manifest (payload size and checksum filled in), syncs and renames the file
    /// to its final name.
    pub fn finish(mut self, mut manifest: Manifest) -> Result<Manifest, CryptError> {
        manifest.payload_bytes = self.bytes;
        manifest.payload_sha256 = data_encoding::HEXLOWER.encode(&self.hash.finalize_reset());
        let json = manifest.to_json().to_string();
        self.file.write_all(json.as_bytes()).map_err(io(&self.partial, "write"))?;
        self.file.write_all(&(json.len() as u64).to_be_bytes()).map_err(io(&self.partial, "write"))?;
        self.file.sync_all().map_err(io(&self.partial, "sync"))?;
        std::fs::rename(&self.partial, &self.path).map_err(io(&self.path, "rename the backup to"))?;
        Ok(manifest)
    }

    /// Removes the partial file after a failure.
    pub fn abandon(self) {
        let _ = std::fs::remove_file(&self.partial);
    }
}

/// A backup file opened for restoring: the manifest is read, the payload not yet.
pub struct BackupReader {
    path: PathBuf,
    pub manifest: Manifest,
}

impl BackupReader {
    pub fn open(path: &Path) -> Result<BackupReader, CryptError> {
        let mut file = File::open(path).map_err(io(path, "open"))?;
        let not_backup = || err(format!("{} is not a Hearth backup (or it is truncated)", path.display()));
        let mut magic = [0u8; 16];
        file.read_exact(&mut magic).map_err(|_| not_backup())?;
        if &magic != MAGIC {
            return Err(not_backup());
        }
        let size = file.metadata().map_err(io(path, "read"))?.len();
        if size < 24 {
            return Err(not_backup());
        }
        file.seek(SeekFrom::End(-8)).map_err(io(path, "read"))?;
        let mut len = [0u8; 8];
        file.read_exact(&mut len).map_err(io(path, "read"))?;
        let len = u64::from_be_bytes(len);
        if len > 1 << 20 || len + 24 > size {
            return Err(not_backup());
        }
        let start = size - 8 - len;
        file.seek(SeekFrom::Start(start)).map_err(io(path, "read"))?;
        let mut json = vec![0u8; usize::try_from(len).map_err(|_| not_backup())?];
        file.read_exact(&mut json).map_err(io(path, "read"))?;
        let value: Value = serde_json::from_slice(&json).map_err(|_| not_backup())?;
        let manifest = Manifest::from_json(&value)?;
        if manifest.payload_bytes != start - MAGIC.len() as u64 {
            return Err(err(format!(
                "{}: the payload size does not match the manifest (truncated or altered)",
                path.display()
            )));
        }
        Ok(BackupReader { path: path.to_path_buf(), manifest })
    }

    /// A reader of the payload bytes.
    pub fn payload(&self) -> Result<impl Read + use<>, CryptError> {
        let mut file = File::open(&self.path).map_err(io(&self.path, "open"))?;
        file.seek(SeekFrom::Start(MAGIC.len() as u64)).map_err(io(&self.path, "read"))?;
        Ok(file.take(self.manifest.payload_bytes))
    }

    /// Reads the whole payload, handing each piece to `each`, and checks its SHA-256 against the
    /// manifest at the end.
    pub fn for_each(&self, mut each: impl FnMut(&[u8]) -> Result<(), CryptError>) -> Result<(), CryptError> {
        let mut reader = self.payload()?;
        let mut hash = Sha256::new();
        let mut buf = vec![0u8; 256 * 1024];
        loop {
            let n = reader.read(&mut buf).map_err(io(&self.path, "read"))?;
            if n == 0 {
                break;
            }
            let part = buf.get(..n).unwrap_or_default();
            hash.update(part);
            each(part)?;
        }
        if data_encoding::HEXLOWER.encode(&hash.finalize()) != self.manifest.payload_sha256 {
            return Err(err(format!(
                "{}: the payload's SHA-256 does not match the manifest (the file is damaged or altered); nothing \
                 was restored",
                self.path.display()
            )));
        }
        Ok(())
    }

    /// Checks the payload checksum without using the data.
    pub fn verify(&self) -> Result<(), CryptError> {
        self.for_each(|_| Ok(()))
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    #[test]
    fn round_trip_and_damage_is_detected() {
        let dir = std::env::temp_dir().join(format!("hearth-backup-test-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("b.hbk");
        let mut w = BackupWriter::create(&path).unwrap();
        w.write(b"hello ").unwrap();
        w.write(b"world").unwrap();
        let m = Manifest {
            backend: "sqlite".into(),
            schema_version: 8,
            created_at_ms: 1,
            key_id: None,
            payload_bytes: 0,
            payload_sha256: String::new(),
            counts: Map::new(),
        };
        w.finish(m).unwrap();
        let r = BackupReader::open(&path).unwrap();
        assert_eq!(r.manifest.payload_bytes, 11);
        let mut all = Vec::new();
        r.for_each(|p| {
            all.extend_from_slice(p);
            Ok(())
        })
        .unwrap();
        assert_eq!(all, b"hello world");

        let mut bytes = std::fs::read(&path).unwrap();
        bytes[20] ^= 1;
        std::fs::write(&path, &bytes).unwrap();
        let e = BackupReader::open(&path).unwrap().verify().unwrap_err();
        assert!(e.0.contains("SHA-256"), "{e}");
        std::fs::write(&path, &bytes[..bytes.len() - 3]).unwrap();
        assert!(BackupReader::open(&path).is_err());
        std::fs::remove_dir_all(&dir).unwrap();
    }
}
