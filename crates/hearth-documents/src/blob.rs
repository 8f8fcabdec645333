//! The blob store: content-addressed bytes behind one trait ([`BlobStore`]: local files or an
//! S3-compatible bucket), and [`Blobs`], which stages an incoming stream (hashing, sealing and
//! counting it on the way to a private temporary file) before anything is stored.
//!
//! A blob is named by the SHA-256 of its plaintext (`ab/abcdef…`), so the same bytes uploaded
//! twice are stored once. With an encryption key the stored bytes are a Hearth encrypted stream
//! (`hearth_store_sql::crypt::StreamSealer`: a random key per blob wrapped by the master key,
//! AES-256-GCM in 64 KiB chunks), the same scheme as export files and backups.

use std::path::{Path, PathBuf};
use std::pin::Pin;
use std::sync::Arc;

use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hearth_store_sql::crypt::{KeySource, StreamOpener, StreamSealer};
use sha2::{Digest, Sha256};
use tokio::io::AsyncWriteExt;

/// Bytes arriving or leaving, chunk by chunk.
pub type ByteStream = Pin<Box<dyn Stream<Item = Result<Bytes, std::io::Error>> + Send>>;

/// How many plaintext bytes of a blob's start are kept for content sniffing.
pub const HEAD_BYTES: usize = 512;

#[derive(Debug, thiserror::Error)]
pub enum BlobError {
    /// The stream went over the size limit (nothing was stored).
    #[error("the content is larger than {0} bytes")]
    TooLarge(u64),
    /// The client's stream broke off or was malformed.
    #[error("the upload was interrupted: {0}")]
    Input(String),
    #[error("blob storage I/O: {0}")]
    Io(#[from] std::io::Error),
    #[error("blob encryption: {0}")]
    Crypt(String),
    #[error("object storage: {0}")]
    Remote(String),
}

impl From<hearth_store_sql::crypt::CryptError> for BlobError {
    fn from(e: hearth_store_sql::crypt::CryptError) -> BlobError {
        BlobError::Crypt(e.to_string())
    }
}

/// Where blobs live. Keys are `ab/<64 hex digits>`; what is stored is opaque to the store.
#[async_trait::async_trait]
pub trait BlobStore: Send + Sync {
    /// Stores the file at `path` (`len` bytes, already sealed when encrypted) under `key`. The
    /// file is the store's to move or read; the caller removes what is left of it.
    async fn put(&self, key: &str, path: &Path, len: u64, sha256_hex: &str) -> Result<(), BlobError>;
    /// Whether `key` is stored.
    async fn exists(&self, key: &str) -> Result<bool, BlobError>;
    /// The stored bytes of `key` from byte `from` to the end; `None` when it is not stored.
    async fn get(&self, key: &str, from: u64) -> Result<Option<ByteStream>, BlobError>;
    /// Removes `key` (absent is fine).
    async fn delete(&self, key: &str) -> Result<(), BlobError>;
}

/// The object key of a blob.
pub fn key_of(sha256_hex: &str) -> String {
    format!("{}/{sha256_hex}", sha256_hex.get(..2).unwrap_or("00"))
}

/// Whether `s` is a blob name (64 lower-case hex digits).
pub fn valid_sha(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}

/// Creates `dir` (and its parents) readable by this user only.
pub async fn private_dir(dir: &Path) -> std::io::Result<()> {
    tokio::fs::create_dir_all(dir).await?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        tokio::fs::set_permissions(dir, std::fs::Permissions::from_mode(0o700)).await?;
    }
    Ok(())
}

/// Creates (or truncates) `path` as a file only this user can read.
pub async fn private_file(path: &Path) -> std::io::Result<tokio::fs::File> {
    let mut options = tokio::fs::OpenOptions::new();
    options.write(true).create(true).truncate(true);
    #[cfg(unix)]
    options.mode(0o600);
    options.open(path).await
}

/// Blobs as files under a directory (`<data_dir>/blobs` by default): 0700 directories, 0600 files,
/// written to a temporary file and renamed into place (never seen half-written).
pub struct LocalBlobs {
    root: PathBuf,
}

impl LocalBlobs {
    pub fn new(root: PathBuf) -> LocalBlobs {
        LocalBlobs { root }
    }

    fn path(&self, key: &str) -> PathBuf {
        self.root.join(key)
    }
}

#[async_trait::async_trait]
impl BlobStore for LocalBlobs {
    async fn put(&self, key: &str, path: &Path, _len: u64, _sha: &str) -> Result<(), BlobError> {
        let target = self.path(key);
        if let Some(dir) = target.parent() {
            private_dir(dir).await?;
        }
        // The staging directory is on the same file system (see `Blobs::local`), so this is atomic;
        // otherwise copy.
        if tokio::fs::rename(path, &target).await.is_err() {
            let tmp = target.with_extension("part");
            let mut out = private_file(&tmp).await?;
            let mut input = tokio::fs::File::open(path).await?;
            tokio::io::copy(&mut input, &mut out).await?;
            out.sync_all().await?;
            tokio::fs::rename(&tmp, &target).await?;
        }
        Ok(())
    }

    async fn exists(&self, key: &str) -> Result<bool, BlobError> {
        Ok(tokio::fs::try_exists(self.path(key)).await?)
    }

    async fn get(&self, key: &str, from: u64) -> Result<Option<ByteStream>, BlobError> {
        let mut file = match tokio::fs::File::open(self.path(key)).await {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(None),
            Err(e) => return Err(e.into()),
        };
        if from > 0 {
            tokio::io::AsyncSeekExt::seek(&mut file, std::io::SeekFrom::Start(from)).await?;
        }
        Ok(Some(Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024))))
    }

    async fn delete(&self, key: &str) -> Result<(), BlobError> {
        match tokio::fs::remove_file(self.path(key)).await {
            Ok(()) => Ok(()),
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(()),
            Err(e) => Err(e.into()),
        }
    }
}

/// An incoming stream written to a private temporary file: its plaintext's SHA-256 and size, its
/// first bytes (for sniffing), and whether the file is sealed. Dropping it removes the file.
pub struct Staged {
    path: PathBuf,
    pub sha256: String,
    pub size: u64,
    pub head: Vec<u8>,
    pub encrypted: bool,
    stored_len: u64,
    stored_sha256: String,
}

impl Drop for Staged {
    fn drop(&mut self) {
        // Already moved into the store, or never written: either way nothing to keep.
        let _ = std::fs::remove_file(&self.path);
    }
}

/// The blob store with staging and encryption around it.
pub struct Blobs {
    store: Arc<dyn BlobStore>,
    staging: PathBuf,
    keys: Option<KeySource>,
}

impl Blobs {
    /// `staging` holds temporary files (for local storage, a directory on the same file system).
    pub fn new(store: Arc<dyn BlobStore>, staging: PathBuf, keys: Option<KeySource>) -> Blobs {
        Blobs { store, staging, keys }
    }

    /// The private directory for temporary files.
    pub fn staging_dir(&self) -> &Path {
        &self.staging
    }

    pub fn store(&self) -> &Arc<dyn BlobStore> {
        &self.store
    }

    /// Writes `input` to a private temporary file, sealed when a key is configured, refusing
    /// (and removing it) as soon as it passes `max` bytes. Memory holds one chunk at a time.
    pub async fn stage<S>(&self, mut input: S, max: u64) -> Result<Staged, BlobError>
    where
        S: Stream<Item = Result<Bytes, BlobError>> + Unpin + Send,
    {
        private_dir(&self.staging).await?;
        let path = self.staging.join(format!("{}.tmp", uuid::Uuid::new_v4()));
        let file = private_file(&path).await?;
        let mut staged = Staged {
            path,
            sha256: String::new(),
            size: 0,
            head: Vec::new(),
            encrypted: false,
            stored_len: 0,
            stored_sha256: String::new(),
        };
        let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, file);
        let mut plain_hash = Sha256::new();
        let mut stored_hash = Sha256::new();
        let mut sealer = match &self.keys {
            Some(source) => {
                let ring = source.load()?;
                let (sealer, header) = StreamSealer::new(&ring)?;
                out.write_all(&header).await?;
                stored_hash.update(&header);
                staged.stored_len += header.len() as u64;
                staged.encrypted = true;
                Some(sealer)
            }
            None => None,
        };
        while let Some(chunk) = input.next().await {
            let chunk = chunk?;
            staged.size += chunk.len() as u64;
            if staged.size > max {
                return Err(BlobError::TooLarge(max));
            }
            if staged.head.len() < HEAD_BYTES {
                let take = (HEAD_BYTES - staged.head.len()).min(chunk.len());
                staged.head.extend_from_slice(chunk.get(..take).unwrap_or_default());
            }
            plain_hash.update(&chunk);
            let sealed;
            let bytes: &[u8] = match &mut sealer {
                Some(s) => {
                    sealed = s.update(&chunk)?;
                    &sealed
                }
                None => &chunk,
            };
            stored_hash.update(bytes);
            staged.stored_len += bytes.len() as u64;
            out.write_all(bytes).await?;
        }
        if let Some(s) = sealer {
            let last = s.finish()?;
            stored_hash.update(&last);
            staged.stored_len += last.len() as u64;
            out.write_all(&last).await?;
        }
        out.flush().await?;
        out.get_ref().sync_all().await?;
        staged.sha256 = data_encoding::HEXLOWER.encode(&plain_hash.finalize());
        staged.stored_sha256 = data_encoding::HEXLOWER.encode(&stored_hash.finalize());
        Ok(staged)
    }

    /// Stores a staged blob unless the same content is already stored.
    pub async fn keep(&self, staged: &Staged) -> Result<(), BlobError> {
        let key = key_of(&staged.sha256);
        if self.store.exists(&key).await? {
            return Ok(());
        }
        self.store.put(&key, &staged.path, staged.stored_len, &staged.stored_sha256).await
    }

    /// Whether the blob is stored.
    pub async fn exists(&self, sha256: &str) -> Result<bool, BlobError> {
        self.store.exists(&key_of(sha256)).await
    }

    /// The plaintext of a blob from byte `from` on; `None` when it is not stored. An encrypted
    /// blob is decrypted from its start and the first `from` bytes skipped (chunks are
    /// authenticated in order, so a reader cannot start in the middle).
    pub async fn open(&self, sha256: &str, encrypted: bool, from: u64) -> Result<Option<ByteStream>, BlobError> {
        let key = key_of(sha256);
        if !encrypted {
            return self.store.get(&key, from).await;
        }
        let source = self
            .keys
            .as_ref()
            .ok_or_else(|| BlobError::Crypt("a document is encrypted and no encryption key is configured".into()))?;
        let ring = source.load()?;
        let Some(stored) = self.store.get(&key, 0).await? else { return Ok(None) };
        Ok(Some(decrypting(stored, StreamOpener::new(ring), from)))
    }

    /// A sealer and its stream header when a key is configured (for upload segments).
    pub fn sealer(&self) -> Result<Option<(StreamSealer, Vec<u8>)>, BlobError> {
        match &self.keys {
            Some(source) => Ok(Some(StreamSealer::new(&source.load()?)?)),
            None => Ok(None),
        }
    }

    /// The plaintext of a local file this module wrote (sealed or not).
    pub async fn read_file(&self, path: &Path, encrypted: bool) -> Result<ByteStream, BlobError> {
        let file = tokio::fs::File::open(path).await?;
        let stored: ByteStream = Box::pin(tokio_util::io::ReaderStream::with_capacity(file, 64 * 1024));
        if !encrypted {
            return Ok(stored);
        }
        let source = self
            .keys
            .as_ref()
            .ok_or_else(|| BlobError::Crypt("a file is encrypted and no encryption key is configured".into()))?;
        Ok(decrypting(stored, StreamOpener::new(source.load()?), 0))
    }

    /// The plaintext of a staged upload (for the virus scan).
    pub async fn read_staged(&self, staged: &Staged) -> Result<ByteStream, BlobError> {
        self.read_file(&staged.path, staged.encrypted).await
    }

    /// Removes a blob (absent is fine).
    pub async fn delete(&self, sha256: &str) -> Result<(), BlobError> {
        self.store.delete(&key_of(sha256)).await
    }
}

/// The plaintext of a sealed stream, skipping its first `skip` bytes; an altered or cut blob
/// ends the stream with an error rather than passing as whole.
fn decrypting(stored: ByteStream, opener: StreamOpener, skip: u64) -> ByteStream {
    let state = (stored, Some(opener), skip);
    Box::pin(futures_util::stream::try_unfold(state, |(mut stored, opener, mut skip)| async move {
        let Some(mut opener) = opener else { return Ok(None) };
        loop {
            let Some(chunk) = stored.next().await else {
                opener.finish().map_err(std::io::Error::other)?;
                return Ok(None);
            };
            let plain = opener.update(&chunk?).map_err(std::io::Error::other)?;
            let n = plain.len() as u64;
            if n <= skip {
                skip -= n;
                continue;
            }
            let start = usize::try_from(skip).unwrap_or(usize::MAX);
            let out = Bytes::from(plain).slice(start..);
            return Ok(Some((out, (stored, Some(opener), 0))));
        }
    }))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;
    use hearth_store_sql::crypt::KeyRing;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    fn chunks(data: &[u8], size: usize) -> impl Stream<Item = Result<Bytes, BlobError>> + Unpin + Send {
        let parts: Vec<Result<Bytes, BlobError>> = data.chunks(size).map(|c| Ok(Bytes::copy_from_slice(c))).collect();
        futures_util::stream::iter(parts)
    }

    async fn collect(s: ByteStream) -> Vec<u8> {
        let mut out = Vec::new();
        let mut s = s;
        while let Some(c) = s.next().await {
            out.extend_from_slice(&c.unwrap());
        }
        out
    }

    async fn round_trip(keys: Option<KeySource>) {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalBlobs::new(dir.path().join("blobs")));
        let blobs = Blobs::new(store, dir.path().join("blobs/.staging"), keys.clone());
        let data: Vec<u8> = (0..(200 * 1024 + 7)).map(|i| (i % 251) as u8).collect();
        let staged = blobs.stage(chunks(&data, 10_000), 1 << 20).await.unwrap();
        assert_eq!(staged.size, data.len() as u64);
        assert_eq!(staged.sha256, data_encoding::HEXLOWER.encode(&Sha256::digest(&data)));
        assert_eq!(staged.head, data[..HEAD_BYTES]);
        blobs.keep(&staged).await.unwrap();
        let file = dir.path().join("blobs").join(key_of(&staged.sha256));
        let raw = std::fs::read(&file).unwrap();
        assert_eq!(raw == data, keys.is_none(), "stored in clear only without a key");
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt;
            assert_eq!(std::fs::metadata(&file).unwrap().permissions().mode() & 0o777, 0o600);
            assert_eq!(std::fs::metadata(file.parent().unwrap()).unwrap().permissions().mode() & 0o777, 0o700);
        }
        for from in [0u64, 1, 65_536, 100_000, data.len() as u64 - 1] {
            let got = collect(blobs.open(&staged.sha256, staged.encrypted, from).await.unwrap().unwrap()).await;
            assert_eq!(got, data[from as usize..], "from {from}");
        }
        // The same bytes again: one blob.
        let again = blobs.stage(chunks(&data, 4096), 1 << 20).await.unwrap();
        assert_eq!(again.sha256, staged.sha256);
        blobs.keep(&again).await.unwrap();
        let files = std::fs::read_dir(file.parent().unwrap()).unwrap().count();
        assert_eq!(files, 1);
        drop(again);
        drop(staged);
        assert_eq!(std::fs::read_dir(dir.path().join("blobs/.staging")).unwrap().count(), 0, "no temporary files left");
    }

    #[tokio::test]
    async fn blobs_round_trip_in_clear_and_sealed() {
        round_trip(None).await;
        round_trip(Some(KeySource::Fixed(KeyRing::parse(K1).unwrap()))).await;
    }

    #[tokio::test]
    async fn over_the_limit_is_refused_and_nothing_stays() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalBlobs::new(dir.path().join("blobs")));
        let blobs = Blobs::new(store, dir.path().join("staging"), None);
        let data = vec![7u8; 10_000];
        let err = blobs.stage(chunks(&data, 1000), 9_999).await.err().unwrap();
        assert!(matches!(err, BlobError::TooLarge(9_999)), "{err}");
        assert_eq!(std::fs::read_dir(dir.path().join("staging")).unwrap().count(), 0);
        assert!(!dir.path().join("blobs").exists());
    }

    #[tokio::test]
    async fn an_altered_sealed_blob_does_not_pass_as_whole() {
        let dir = tempfile::tempdir().unwrap();
        let store = Arc::new(LocalBlobs::new(dir.path().join("blobs")));
        let keys = KeySource::Fixed(KeyRing::parse(K1).unwrap());
        let blobs = Blobs::new(store, dir.path().join("staging"), Some(keys));
        let data = vec![3u8; 100_000];
        let staged = blobs.stage(chunks(&data, 1000), 1 << 20).await.unwrap();
        blobs.keep(&staged).await.unwrap();
        let file = dir.path().join("blobs").join(key_of(&staged.sha256));
        let mut raw = std::fs::read(&file).unwrap();
        raw.truncate(raw.len() - 10);
        std::fs::write(&file, raw).unwrap();
        let mut s = blobs.open(&staged.sha256, true, 0).await.unwrap().unwrap();
        let mut failed = false;
        while let Some(c) = s.next().await {
            failed |= c.is_err();
        }
        assert!(failed);
    }
}
