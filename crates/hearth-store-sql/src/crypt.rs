//! Encryption at rest that Hearth does itself (SQLite's page-level encryption is SQLCipher's):
//! master keys and their key ring, AES-256-GCM sealing, envelope data keys for resource bodies
//! on PostgreSQL, and the chunked stream format of export files and backups.
//!
//! # Keys
//! A master key is 256 bits, written as 64 hex digits. A *key ring* is the text of a key file
//! (or `HEARTH_ENCRYPTION_KEY`): one key per line, `#` comments and blank lines ignored. The
//! first key is the current one (new data is encrypted under it); the others are older keys that
//! still open data during a rotation. A key is named by its *id*, the first 16 hex digits of
//! SHA-256(`hearth master key id` ‖ key): stored next to what it wraps, safe to print.
//!
//! # Resource bodies on PostgreSQL (envelope encryption)
//! A *data key* (random, 256 bits) encrypts bodies; it is stored in `encryption_keys` only
//! wrapped (sealed) by a master key, with that master key's id. A body is stored as
//! `enc1:<data key id>:<base64 of nonce ‖ ciphertext ‖ tag>` with the associated data
//! `<type>/<id>/<version>`, so a ciphertext cannot be moved to another row. Rotating the master
//! key re-wraps the data keys (and, on request, re-encrypts rows under a new data key).
//!
//! # Streams (export files, backups)
//! `HRTHENC1`, the master key id and the stream's own random key wrapped by it, then chunks of
//! at most [`CHUNK`] plaintext bytes: a flag byte (1 = final), the ciphertext length (u32 BE)
//! and the ciphertext. The nonce of chunk `n` is `n` (u64 BE) ‖ 3 zero bytes ‖ flag, so chunks
//! cannot be reordered, dropped or the stream cut short without the reader noticing.

use std::collections::HashMap;
use std::fmt;
use std::sync::{Arc, RwLock};

use aes_gcm::aead::{Aead, KeyInit, Payload};
use aes_gcm::{Aes256Gcm, Nonce};
use hearth_store::{StoreError, Version};
use sha2::{Digest, Sha256};
use zeroize::Zeroizing;

use crate::{Builder, Col, Exec, Val};

/// Length of every key, in bytes.
pub const KEY_LEN: usize = 32;
const NONCE_LEN: usize = 12;
const TAG_LEN: usize = 16;
/// Plaintext bytes per stream chunk.
pub const CHUNK: usize = 64 * 1024;
const STREAM_MAGIC: &[u8; 8] = b"HRTHENC1";
const BODY_PREFIX: &str = "enc1:";

/// An encryption failure. The message names keys by id and never holds data or key material.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CryptError(pub String);

impl fmt::Display for CryptError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

impl std::error::Error for CryptError {}

fn err(msg: impl Into<String>) -> CryptError {
    CryptError(msg.into())
}

impl From<CryptError> for StoreError {
    fn from(e: CryptError) -> StoreError {
        StoreError::Corrupt(e.0)
    }
}

fn random<const N: usize>() -> Result<[u8; N], CryptError> {
    let mut out = [0u8; N];
    getrandom::fill(&mut out).map_err(|e| err(format!("the operating system's random source failed: {e}")))?;
    Ok(out)
}

/// A 256-bit master key. `Debug` shows only its id.
#[derive(Clone)]
pub struct MasterKey {
    id: String,
    bytes: Zeroizing<[u8; KEY_LEN]>,
}

impl fmt::Debug for MasterKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "MasterKey({})", self.id)
    }
}

impl MasterKey {
    fn from_bytes(bytes: [u8; KEY_LEN]) -> MasterKey {
        let bytes = Zeroizing::new(bytes);
        let mut h = Sha256::new();
        h.update(b"hearth master key id");
        h.update(bytes.as_slice());
        let digest = h.finalize();
        let id = data_encoding::HEXLOWER.encode(digest.get(..8).unwrap_or_default());
        MasterKey { id, bytes }
    }

    /// A key from its 64 hex digits. The error never repeats the input.
    pub fn from_hex(s: &str) -> Result<MasterKey, CryptError> {
        let s = s.trim();
        let bad = || err("an encryption key must be 64 hex digits (256 bits)");
        if s.len() != 2 * KEY_LEN {
            return Err(bad());
        }
        let mut bytes = Zeroizing::new([0u8; KEY_LEN]);
        data_encoding::HEXLOWER_PERMISSIVE.decode_mut(s.as_bytes(), bytes.as_mut_slice()).map_err(|_| bad())?;
        Ok(MasterKey::from_bytes(*bytes))
    }

    /// A new random key.
    pub fn generate() -> Result<MasterKey, CryptError> {
        Ok(MasterKey::from_bytes(random()?))
    }

    /// The key's public name (see the module docs).
    pub fn id(&self) -> &str {
        &self.id
    }

    /// The key as 64 lower-case hex digits (for writing a new key file).
    pub fn to_hex(&self) -> Zeroizing<String> {
        Zeroizing::new(data_encoding::HEXLOWER.encode(self.bytes.as_slice()))
    }

    /// The value of SQLCipher's `PRAGMA key`/`rekey` for this raw key (no passphrase
    /// derivation: the key is already 256 random bits).
    pub fn sqlcipher_pragma(&self) -> Zeroizing<String> {
        Zeroizing::new(format!("\"x'{}'\"", data_encoding::HEXUPPER.encode(self.bytes.as_slice())))
    }

    fn cipher(&self) -> Aes256Gcm {
        cipher(&self.bytes)
    }
}

fn cipher(key: &[u8; KEY_LEN]) -> Aes256Gcm {
    Aes256Gcm::new(&(*key).into())
}

/// Seals `plain` with a random nonce: `nonce ‖ ciphertext ‖ tag`.
fn seal(c: &Aes256Gcm, aad: &[u8], plain: &[u8]) -> Result<Vec<u8>, CryptError> {
    let nonce: [u8; NONCE_LEN] = random()?;
    let ct = c
        .encrypt(&Nonce::from(nonce), Payload { msg: plain, aad })
        .map_err(|_| err("encryption failed (message too long)"))?;
    let mut out = Vec::with_capacity(NONCE_LEN + ct.len());
    out.extend_from_slice(&nonce);
    out.extend_from_slice(&ct);
    Ok(out)
}

/// Opens what [`seal`] made; `None` when the key is wrong or the data was altered.
fn open(c: &Aes256Gcm, aad: &[u8], sealed: &[u8]) -> Option<Vec<u8>> {
    let nonce: [u8; NONCE_LEN] = sealed.get(..NONCE_LEN)?.try_into().ok()?;
    let ct = sealed.get(NONCE_LEN..)?;
    c.decrypt(&Nonce::from(nonce), Payload { msg: ct, aad }).ok()
}

/// The configured master keys: the first encrypts, all of them open (see the module docs).
#[derive(Clone, Debug)]
pub struct KeyRing {
    current: MasterKey,
    older: Vec<MasterKey>,
}

impl KeyRing {
    /// Parses a key file's text. Errors name the line, never its content.
    pub fn parse(text: &str) -> Result<KeyRing, CryptError> {
        let mut keys: Vec<MasterKey> = Vec::new();
        for (n, line) in text.lines().enumerate() {
            let line = line.trim();
            if line.is_empty() || line.starts_with('#') {
                continue;
            }
            let key = MasterKey::from_hex(line).map_err(|e| err(format!("line {}: {e}", n + 1)))?;
            if !keys.iter().any(|k| k.id == key.id) {
                keys.push(key);
            }
        }
        let mut keys = keys.into_iter();
        let current = keys.next().ok_or_else(|| err("no encryption key found (expected 64 hex digits on a line)"))?;
        Ok(KeyRing { current, older: keys.collect() })
    }

    pub fn single(key: MasterKey) -> KeyRing {
        KeyRing { current: key, older: Vec::new() }
    }

    /// The key new data is encrypted under.
    pub fn current(&self) -> &MasterKey {
        &self.current
    }

    /// Every key, the current one first.
    pub fn keys(&self) -> impl Iterator<Item = &MasterKey> {
        std::iter::once(&self.current).chain(self.older.iter())
    }

    pub fn find(&self, id: &str) -> Option<&MasterKey> {
        self.keys().find(|k| k.id == id)
    }

    /// A ring whose current key is `key`, keeping the others as older keys.
    pub fn with_current(&self, key: MasterKey) -> KeyRing {
        let older = self.keys().filter(|k| k.id != key.id).cloned().collect();
        KeyRing { current: key, older }
    }

    /// This ring plus the keys of `other` as older keys (for opening old data).
    pub fn and(&self, other: &KeyRing) -> KeyRing {
        let mut ring = self.clone();
        for k in other.keys() {
            if ring.find(&k.id).is_none() {
                ring.older.push(k.clone());
            }
        }
        ring
    }

    /// Wraps a data key (or a stream key) under the current master key.
    pub fn wrap(&self, label: &str, key: &[u8; KEY_LEN]) -> Result<(String, String), CryptError> {
        let master = self.current();
        let sealed = seal(&master.cipher(), label.as_bytes(), key)?;
        Ok((master.id.clone(), data_encoding::BASE64.encode(&sealed)))
    }

    /// Unwraps a key wrapped by the master key `master_id`.
    pub fn unwrap_key(&self, master_id: &str, label: &str, wrapped: &str) -> Result<[u8; KEY_LEN], CryptError> {
        let master = self.find(master_id).ok_or_else(|| {
            err(format!(
                "the data is encrypted under master key {master_id}, which is not among the configured keys ({})",
                self.ids()
            ))
        })?;
        let sealed =
            data_encoding::BASE64.decode(wrapped.as_bytes()).map_err(|_| err("a wrapped key is not base64"))?;
        let plain = Zeroizing::new(
            open(&master.cipher(), label.as_bytes(), &sealed)
                .ok_or_else(|| err(format!("a data key does not open with master key {master_id}")))?,
        );
        <[u8; KEY_LEN]>::try_from(plain.as_slice()).map_err(|_| err("a wrapped key has the wrong length"))
    }

    /// The ids of the keys, comma-separated (for messages).
    pub fn ids(&self) -> String {
        self.keys().map(|k| k.id.as_str()).collect::<Vec<_>>().join(", ")
    }
}

/// Where the master keys come from: a key file (read again when a rotation is detected, so a
/// running server follows `hearth admin rotate-key`) or a fixed ring (`HEARTH_ENCRYPTION_KEY`).
#[derive(Clone, Debug)]
pub enum KeySource {
    File(std::path::PathBuf),
    Fixed(KeyRing),
}

impl KeySource {
    pub fn load(&self) -> Result<KeyRing, CryptError> {
        match self {
            KeySource::Fixed(ring) => Ok(ring.clone()),
            KeySource::File(path) => {
                let text = Zeroizing::new(
                    std::fs::read_to_string(path)
                        .map_err(|e| err(format!("cannot read the encryption key file {}: {e}", path.display())))?,
                );
                KeyRing::parse(&text).map_err(|e| err(format!("encryption key file {}: {e}", path.display())))
            }
        }
    }
}

/// A data key: random, used for resource bodies, never stored unwrapped.
pub struct DataKey {
    pub id: String,
    key: Zeroizing<[u8; KEY_LEN]>,
}

fn data_key_label(id: &str) -> String {
    format!("hearth data key {id}")
}

impl DataKey {
    fn new() -> Result<DataKey, CryptError> {
        let id: [u8; 8] = random()?;
        Ok(DataKey { id: data_encoding::HEXLOWER.encode(&id), key: Zeroizing::new(random()?) })
    }
}

/// The body cipher of a PostgreSQL store: the key ring, the data keys it has unwrapped, and the
/// one new bodies are sealed with.
pub struct BodyCipher {
    source: KeySource,
    ring: RwLock<KeyRing>,
    keys: RwLock<HashMap<String, Arc<DataKey>>>,
    active: RwLock<Option<Arc<DataKey>>>,
}

impl fmt::Debug for BodyCipher {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "BodyCipher({})", self.ring().ids())
    }
}

fn body_aad(resource_type: &str, id: &str, version: u64) -> String {
    format!("{resource_type}/{id}/{version}")
}

impl BodyCipher {
    pub fn new(source: KeySource) -> Result<BodyCipher, CryptError> {
        let ring = source.load()?;
        Ok(BodyCipher { source, ring: RwLock::new(ring), keys: RwLock::new(HashMap::new()), active: RwLock::new(None) })
    }

    /// The master keys in force.
    pub fn ring(&self) -> KeyRing {
        match self.ring.read() {
            Ok(r) => r.clone(),
            Err(poisoned) => poisoned.into_inner().clone(),
        }
    }

    /// Reads the key source again (after a rotation another process made: a data key wrapped
    /// under a master key this process does not know yet). Whether the ring changed.
    fn reload(&self) -> bool {
        let Ok(ring) = self.source.load() else { return false };
        let changed = ring.ids() != self.ring().ids();
        if changed && let Ok(mut r) = self.ring.write() {
            *r = ring;
        }
        changed
    }

    fn unwrap_data_key(&self, id: &str, master: &str, wrapped: &str) -> Result<[u8; KEY_LEN], CryptError> {
        let label = data_key_label(id);
        match self.ring().unwrap_key(master, &label, wrapped) {
            Ok(k) => Ok(k),
            Err(e) => {
                if self.reload() {
                    self.ring().unwrap_key(master, &label, wrapped)
                } else {
                    Err(e)
                }
            }
        }
    }

    fn get(&self, id: &str) -> Option<Arc<DataKey>> {
        self.keys.read().ok().and_then(|m| m.get(id).cloned())
    }

    fn add(&self, key: DataKey, active: bool) -> Arc<DataKey> {
        let key = Arc::new(key);
        if let Ok(mut m) = self.keys.write() {
            m.insert(key.id.clone(), key.clone());
        }
        if active && let Ok(mut a) = self.active.write() {
            *a = Some(key.clone());
        }
        key
    }

    /// The id of the data key new bodies are sealed with.
    pub fn active_id(&self) -> Option<String> {
        self.active.read().ok().and_then(|a| a.as_ref().map(|k| k.id.clone()))
    }

    /// Seals a body for the row `type/id/version`.
    pub fn seal_body(&self, resource_type: &str, id: &str, version: u64, body: &str) -> Result<String, CryptError> {
        let key = self
            .active
            .read()
            .ok()
            .and_then(|a| a.clone())
            .ok_or_else(|| err("no active data key (the store was not opened with its keys)"))?;
        let sealed = seal(&cipher(&key.key), body_aad(resource_type, id, version).as_bytes(), body.as_bytes())?;
        Ok(format!("{BODY_PREFIX}{}:{}", key.id, data_encoding::BASE64.encode(&sealed)))
    }

    /// The data key id of a sealed body (`None` for a plaintext one).
    pub fn sealed_with(body: &str) -> Option<&str> {
        body.strip_prefix(BODY_PREFIX).and_then(|rest| rest.split_once(':')).map(|(id, _)| id)
    }

    /// Opens a sealed body (a plaintext one, written before encryption was turned on, is
    /// returned as it is). `Ok(None)`: its data key is not loaded yet.
    fn open_body(&self, v: &Version, body: &str) -> Result<Option<String>, CryptError> {
        let Some(rest) = body.strip_prefix(BODY_PREFIX) else {
            return Ok(Some(body.to_owned()));
        };
        let (kid, b64) = rest.split_once(':').ok_or_else(|| err("a sealed body is malformed"))?;
        let Some(key) = self.get(kid) else {
            return Ok(None);
        };
        let sealed = data_encoding::BASE64.decode(b64.as_bytes()).map_err(|_| err("a sealed body is not base64"))?;
        let plain = open(&cipher(&key.key), body_aad(&v.resource_type, &v.id, v.version_id).as_bytes(), &sealed)
            .ok_or_else(|| {
                err(format!(
                    "the body of {}/{} version {} does not open with data key {kid} (altered or moved)",
                    v.resource_type, v.id, v.version_id
                ))
            })?;
        String::from_utf8(plain).map(Some).map_err(|_| err("a decrypted body is not UTF-8"))
    }
}

/// The SQL of the data key table (`encryption_keys`, migration `0008`).
fn select_keys(exec_dialect: crate::Dialect, ids: Option<&[String]>) -> crate::Sql {
    let mut b = Builder::new(exec_dialect);
    b.push("SELECT id, master_id, wrapped FROM encryption_keys");
    if let Some(ids) = ids {
        b.push(" WHERE id IN ").text_list(ids.iter().map(String::as_str));
    }
    b.push(" ORDER BY created_at, id");
    b.finish()
}

/// Loads the data keys `ids` (all when `None`) into the cipher, unwrapping each with the ring.
/// Returns how many rows there were.
pub async fn load_data_keys(
    exec: &mut dyn Exec,
    cipher: &BodyCipher,
    ids: Option<&[String]>,
) -> Result<usize, StoreError> {
    let rows = exec.fetch(&select_keys(exec.dialect(), ids), &[Col::Text, Col::Text, Col::Text]).await?;
    let n = rows.len();
    for row in rows {
        let mut it = row.into_iter();
        let mut next = || it.next().and_then(|v| v.as_text().map(str::to_owned));
        let (Some(id), Some(master), Some(wrapped)) = (next(), next(), next()) else {
            return Err(StoreError::Corrupt("unexpected encryption_keys row".into()));
        };
        let key = cipher.unwrap_data_key(&id, &master, &wrapped).map_err(key_refused)?;
        cipher.add(DataKey { id, key: Zeroizing::new(key) }, false);
    }
    Ok(n)
}

/// The error for "the configured key does not open this database": said plainly, at start-up.
pub fn key_refused(e: CryptError) -> StoreError {
    StoreError::Database(Box::new(CryptError(format!(
        "the database is encrypted and the configured key does not open it: {e}"
    ))))
}

/// A refusal (restore, rotation) said as it is.
pub fn key_refused_plain(e: CryptError) -> StoreError {
    StoreError::Database(Box::new(e))
}

/// Creates a data key wrapped under the current master key, stores it and makes it active.
pub async fn new_data_key(exec: &mut dyn Exec, cipher: &BodyCipher, now_ms: i64) -> Result<String, StoreError> {
    let key = DataKey::new()?;
    let (master, wrapped) = cipher.ring().wrap(&data_key_label(&key.id), &key.key)?;
    let mut b = Builder::new(exec.dialect());
    b.push("INSERT INTO encryption_keys (id, master_id, wrapped, created_at) VALUES (")
        .text(&key.id)
        .push(", ")
        .text(&master)
        .push(", ")
        .text(&wrapped)
        .push(", ")
        .int(now_ms)
        .push(")");
    exec.execute(&b.finish()).await?;
    let id = key.id.clone();
    cipher.add(key, true);
    Ok(id)
}

/// Opens the store's keys at start-up: every data key must unwrap with the ring; the newest one
/// under the current master key becomes active, or a new one is made.
pub async fn open_data_keys(exec: &mut dyn Exec, cipher: &BodyCipher, now_ms: i64) -> Result<(), StoreError> {
    load_data_keys(exec, cipher, None).await?;
    let rows = exec.fetch(&select_keys(exec.dialect(), None), &[Col::Text, Col::Text, Col::Text]).await?;
    let current = cipher.ring().current().id().to_owned();
    let active = rows
        .iter()
        .rev()
        .find(|r| r.get(1).and_then(Val::as_text) == Some(current.as_str()))
        .and_then(|r| r.first().and_then(Val::as_text).map(str::to_owned));
    match active.and_then(|id| cipher.get(&id)) {
        Some(key) => {
            if let Ok(mut a) = cipher.active.write() {
                *a = Some(key);
            }
        }
        None => {
            new_data_key(exec, cipher, now_ms).await?;
        }
    }
    Ok(())
}

/// Whether the database holds wrapped data keys (it was used with encryption).
pub async fn has_data_keys(exec: &mut dyn Exec) -> Result<bool, StoreError> {
    let rows = exec.fetch(&select_keys(exec.dialect(), None), &[Col::Text, Col::Text, Col::Text]).await?;
    Ok(!rows.is_empty())
}

/// Re-wraps every data key under the ring's current master key. Returns how many changed.
pub async fn rewrap_data_keys(exec: &mut dyn Exec, ring: &KeyRing) -> Result<usize, StoreError> {
    let rows = exec.fetch(&select_keys(exec.dialect(), None), &[Col::Text, Col::Text, Col::Text]).await?;
    let mut changed = 0;
    for row in rows {
        let mut it = row.into_iter();
        let mut next = || it.next().and_then(|v| v.as_text().map(str::to_owned));
        let (Some(id), Some(master), Some(wrapped)) = (next(), next(), next()) else {
            return Err(StoreError::Corrupt("unexpected encryption_keys row".into()));
        };
        if master == ring.current().id() {
            continue;
        }
        let label = data_key_label(&id);
        let key = Zeroizing::new(ring.unwrap_key(&master, &label, &wrapped).map_err(key_refused)?);
        let (new_master, new_wrapped) = ring.wrap(&label, &key)?;
        let mut b = Builder::new(exec.dialect());
        b.push("UPDATE encryption_keys SET master_id = ")
            .text(&new_master)
            .push(", wrapped = ")
            .text(&new_wrapped)
            .push(" WHERE id = ")
            .text(&id);
        exec.execute(&b.finish()).await?;
        changed += 1;
    }
    Ok(changed)
}

/// Replaces sealed bodies by their plaintext, loading data keys the cipher has not seen yet
/// (another process may have made one since this one started).
pub async fn reveal(exec: &mut dyn Exec, cipher: &BodyCipher, versions: &mut [Version]) -> Result<(), StoreError> {
    let mut missing: Vec<String> = Vec::new();
    for v in versions.iter() {
        if let Some(body) = v.body.as_deref()
            && let Some(kid) = BodyCipher::sealed_with(body)
            && cipher.get(kid).is_none()
            && !missing.iter().any(|m| m == kid)
        {
            missing.push(kid.to_owned());
        }
    }
    if !missing.is_empty() {
        load_data_keys(exec, cipher, Some(&missing)).await?;
    }
    for v in versions.iter_mut() {
        let Some(body) = v.body.clone() else { continue };
        match cipher.open_body(v, &body)? {
            Some(plain) => v.body = Some(Arc::from(plain)),
            None => {
                let kid = BodyCipher::sealed_with(&body).unwrap_or("?");
                return Err(StoreError::Corrupt(format!("data key {kid} of a stored body does not exist")));
            }
        }
    }
    Ok(())
}

/// Encrypts a stream under a fresh key wrapped by the ring's current master key. Push plaintext
/// with [`StreamSealer::update`], end with [`StreamSealer::finish`]; both return the bytes to
/// write.
pub struct StreamSealer {
    cipher: Aes256Gcm,
    counter: u64,
    buf: Vec<u8>,
}

fn chunk_nonce(counter: u64, last: bool) -> Nonce<aes_gcm::aead::consts::U12> {
    let mut n = [0u8; NONCE_LEN];
    if let Some(head) = n.get_mut(..8) {
        head.copy_from_slice(&counter.to_be_bytes());
    }
    if let Some(tail) = n.last_mut() {
        *tail = u8::from(last);
    }
    Nonce::from(n)
}

fn put_field(out: &mut Vec<u8>, field: &[u8]) -> Result<(), CryptError> {
    let len = u16::try_from(field.len()).map_err(|_| err("stream header field too long"))?;
    out.extend_from_slice(&len.to_be_bytes());
    out.extend_from_slice(field);
    Ok(())
}

impl StreamSealer {
    /// The sealer and the stream header.
    pub fn new(ring: &KeyRing) -> Result<(StreamSealer, Vec<u8>), CryptError> {
        let key = Zeroizing::new(random::<KEY_LEN>()?);
        let (master, wrapped) = ring.wrap("hearth stream key", &key)?;
        let mut header = STREAM_MAGIC.to_vec();
        put_field(&mut header, master.as_bytes())?;
        put_field(&mut header, wrapped.as_bytes())?;
        Ok((StreamSealer { cipher: cipher(&key), counter: 0, buf: Vec::with_capacity(CHUNK) }, header))
    }

    fn chunk(&mut self, last: bool, out: &mut Vec<u8>) -> Result<(), CryptError> {
        let take = self.buf.len().min(CHUNK);
        let plain: Vec<u8> = self.buf.drain(..take).collect();
        let ct = self
            .cipher
            .encrypt(&chunk_nonce(self.counter, last), plain.as_slice())
            .map_err(|_| err("stream encryption failed"))?;
        self.counter += 1;
        out.push(u8::from(last));
        let len = u32::try_from(ct.len()).map_err(|_| err("stream chunk too long"))?;
        out.extend_from_slice(&len.to_be_bytes());
        out.extend_from_slice(&ct);
        Ok(())
    }

    /// Adds plaintext; returns the whole chunks it completed, sealed.
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, CryptError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        // Keep at least one byte back so the final chunk is never empty by accident of size.
        while self.buf.len() > CHUNK {
            self.chunk(false, &mut out)?;
        }
        Ok(out)
    }

    /// Seals what is left as the final chunk.
    pub fn finish(mut self) -> Result<Vec<u8>, CryptError> {
        let mut out = Vec::new();
        while self.buf.len() > CHUNK {
            self.chunk(false, &mut out)?;
        }
        self.chunk(true, &mut out)?;
        Ok(out)
    }
}

/// Decrypts a stream made by [`StreamSealer`]: feed bytes as they come with
/// [`StreamOpener::update`]; [`StreamOpener::finish`] checks the final chunk was seen.
pub struct StreamOpener {
    ring: KeyRing,
    cipher: Option<Aes256Gcm>,
    counter: u64,
    buf: Vec<u8>,
    done: bool,
    /// The master key id the stream was wrapped with (known once the header is read).
    pub master_id: Option<String>,
}

fn take_field(buf: &[u8], at: usize) -> Option<(&[u8], usize)> {
    let len = u16::from_be_bytes(buf.get(at..at + 2)?.try_into().ok()?) as usize;
    Some((buf.get(at + 2..at + 2 + len)?, at + 2 + len))
}

impl StreamOpener {
    pub fn new(ring: KeyRing) -> StreamOpener {
        StreamOpener { ring, cipher: None, counter: 0, buf: Vec::new(), done: false, master_id: None }
    }

    /// Whether `prefix` (the first bytes of a file) starts an encrypted stream.
    pub fn is_stream(prefix: &[u8]) -> bool {
        prefix.starts_with(STREAM_MAGIC)
    }

    /// Adds ciphertext; returns the plaintext of every chunk it completed.
    pub fn update(&mut self, data: &[u8]) -> Result<Vec<u8>, CryptError> {
        self.buf.extend_from_slice(data);
        let mut out = Vec::new();
        if self.cipher.is_none() {
            if self.buf.len() < STREAM_MAGIC.len() {
                return Ok(out);
            }
            if !self.buf.starts_with(STREAM_MAGIC) {
                return Err(err("not an encrypted Hearth stream"));
            }
            let Some((master, at)) = take_field(&self.buf, STREAM_MAGIC.len()) else { return Ok(out) };
            let Some((wrapped, at)) = take_field(&self.buf, at) else { return Ok(out) };
            let master = String::from_utf8_lossy(master).into_owned();
            let wrapped = String::from_utf8_lossy(wrapped).into_owned();
            let key = Zeroizing::new(self.ring.unwrap_key(&master, "hearth stream key", &wrapped)?);
            self.master_id = Some(master);
            self.cipher = Some(cipher(&key));
            self.buf.drain(..at);
        }
        while let Some(flag) = self.buf.first().copied() {
            let Some(len) = self.buf.get(1..5).and_then(|b| <[u8; 4]>::try_from(b).ok()) else { break };
            let len = u32::from_be_bytes(len) as usize;
            if len > CHUNK + TAG_LEN {
                return Err(err("an encrypted stream chunk is too long (altered data)"));
            }
            let Some(ct) = self.buf.get(5..5 + len) else { break };
            if self.done {
                return Err(err("data after the final chunk of an encrypted stream"));
            }
            let last = flag == 1;
            let Some(c) = &self.cipher else { break };
            let plain = c
                .decrypt(&chunk_nonce(self.counter, last), ct)
                .map_err(|_| err("an encrypted stream does not decrypt (wrong key, or altered data)"))?;
            out.extend_from_slice(&plain);
            self.counter += 1;
            self.done = last;
            self.buf.drain(..5 + len);
        }
        Ok(out)
    }

    /// Checks the stream ended with its final chunk and nothing after it.
    pub fn finish(self) -> Result<(), CryptError> {
        if self.done && self.buf.is_empty() { Ok(()) } else { Err(err("the encrypted stream is truncated")) }
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]
    use super::*;

    const K1: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
    const K2: &str = "ff0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";

    #[test]
    fn key_files_parse_and_errors_never_echo() {
        let ring = KeyRing::parse(&format!("# current\n{K1}\n\n{K2}\n")).unwrap();
        assert_eq!(ring.keys().count(), 2);
        assert_eq!(ring.current().id(), MasterKey::from_hex(K1).unwrap().id());
        assert_eq!(ring.current().id().len(), 16);
        assert!(!format!("{ring:?}").contains("0a0b"));
        let e = KeyRing::parse("abcdef").unwrap_err().to_string();
        assert!(e.contains("line 1") && !e.contains("abcdef"), "{e}");
        assert!(KeyRing::parse("# nothing\n").is_err());
        assert!(MasterKey::from_hex(&"zz".repeat(32)).is_err());
    }

    #[test]
    fn wrapped_keys_open_only_with_their_master() {
        let r1 = KeyRing::parse(K1).unwrap();
        let r2 = KeyRing::parse(K2).unwrap();
        let (m, w) = r1.wrap("label", &[7u8; 32]).unwrap();
        assert_eq!(r1.unwrap_key(&m, "label", &w).unwrap(), [7u8; 32]);
        assert!(r1.unwrap_key(&m, "other label", &w).is_err());
        assert!(r2.unwrap_key(&m, "label", &w).unwrap_err().to_string().contains("not among"));
    }

    #[test]
    fn bodies_are_bound_to_their_row() {
        let c = BodyCipher::new(KeySource::Fixed(KeyRing::parse(K1).unwrap())).unwrap();
        c.add(DataKey::new().unwrap(), true);
        let sealed = c.seal_body("Patient", "p1", 1, r#"{"name":"Ada"}"#).unwrap();
        assert!(!sealed.contains("Ada"));
        let v = |id: &str| Version {
            resource_type: "Patient".into(),
            id: id.into(),
            version_id: 1,
            last_updated: chrono::DateTime::from_timestamp_millis(0).unwrap(),
            method: hearth_store::Method::Post,
            body: None,
        };
        assert_eq!(c.open_body(&v("p1"), &sealed).unwrap().unwrap(), r#"{"name":"Ada"}"#);
        assert!(c.open_body(&v("p2"), &sealed).is_err());
        assert_eq!(c.open_body(&v("p1"), "{}").unwrap().unwrap(), "{}");
    }

    #[test]
    fn streams_round_trip_and_detect_tampering() {
        let ring = KeyRing::parse(K1).unwrap();
        let data: Vec<u8> = (0..(3 * CHUNK + 17)).map(|i| (i % 251) as u8).collect();
        let (mut s, mut file) = StreamSealer::new(&ring).unwrap();
        for part in data.chunks(1000) {
            file.extend(s.update(part).unwrap());
        }
        file.extend(s.finish().unwrap());
        let mut o = StreamOpener::new(ring.clone());
        let mut plain = Vec::new();
        for part in file.chunks(777) {
            plain.extend(o.update(part).unwrap());
        }
        o.finish().unwrap();
        assert_eq!(plain, data);

        // Cut short: the final chunk is missing.
        let mut o = StreamOpener::new(ring.clone());
        o.update(&file[..file.len() - 100]).unwrap();
        assert!(o.finish().is_err());
        // A flipped bit.
        let mut bad = file.clone();
        let n = bad.len() - 20;
        bad[n] ^= 1;
        assert!(StreamOpener::new(ring.clone()).update(&bad).is_err());
        // Another key.
        assert!(StreamOpener::new(KeyRing::parse(K2).unwrap()).update(&file).is_err());
        // Empty streams work too.
        let (s, mut file) = StreamSealer::new(&ring).unwrap();
        file.extend(s.finish().unwrap());
        let mut o = StreamOpener::new(ring);
        assert!(o.update(&file).unwrap().is_empty());
        o.finish().unwrap();
    }
}
