//! Documents (issue 22, items 1–3): patients and clinicians upload discharge letters, lab
//! reports and photos; Hearth keeps the bytes in a blob store and the record as a FHIR
//! `DocumentReference` whose attachment URL is the download route.
//!
//! Decisions:
//! - **One blob store trait** ([`blob::BlobStore`]): local files under `<data_dir>/blobs`
//!   (default; 0700 directories, 0600 files) or an S3-compatible bucket (`[documents] storage =
//!   "s3"` with a `[documents.s3]` table). Blobs are named by the SHA-256 of their plaintext, so
//!   identical content is stored once (a row per blob in `document_blobs`, one per document in
//!   `documents`, migration `0017`).
//! - **S3 without `object_store`.** `object_store` 0.12 with its `aws` feature resolves about 190
//!   packages on its own and would add a second `reqwest` (0.12 beside the tree's 0.13), `h2`,
//!   `quick-xml`, `md-5` and `rustls-native-certs` to a build that already takes minutes; the four
//!   calls Hearth needs (PUT, HEAD, ranged GET, DELETE) are a page of AWS Signature V4 over the
//!   hyper + rustls (ring) client the tree already has ([`s3`]). Requests are path-style
//!   (`<endpoint>/<bucket>/<key>`), which AWS and the S3-compatible servers (MinIO, Ceph, moto)
//!   accept; one PUT per blob, so a document is at most 5 GiB. Signatures use the real time of
//!   the wire, not the app's clock (a signature is checked against the server's clock).
//! - **Encrypted at rest with the database's key.** With an encryption key configured, a blob is
//!   stored as a Hearth encrypted stream (`hearth_store_sql::crypt::StreamSealer`): a random
//!   256-bit key per blob, wrapped by the current master key of the same key ring that encrypts
//!   the database, AES-256-GCM in 64 KiB chunks whose nonces carry their position and a final
//!   flag (so no chunk can be dropped, reordered or cut off unnoticed) — the scheme of export
//!   files and backups. Rotating the master key leaves blobs readable while the old key stays in
//!   the ring. The blob's *name* is the plaintext's SHA-256: someone who can list the bucket
//!   learns which blobs are equal and can confirm a file they already hold, nothing else.
//! - **Streamed, never whole in memory.** An upload is written chunk by chunk to a private
//!   staging file (hashed, counted and sealed on the way), checked, then moved (local) or PUT
//!   from the file (S3); downloads stream. A range of an encrypted blob is decrypted from its
//!   start and the bytes before the range skipped (chunks authenticate in order).
//! - **Size limit before storing** (`max_upload_bytes`): refused with `413` from the declared
//!   `Content-Length`/`Upload-Length` at once, and while streaming as soon as the count passes
//!   it; nothing is kept.
//! - **Content type from the bytes** ([`sniff`]): PDF, JPEG, PNG, HEIC/HEIF, TIFF, DICOM
//!   Part 10 (kept as is); anything else `415`. The client's type is ignored.
//! - **Virus scan hook** ([`clamd`]): with `[documents] clamd = "tcp:host:port"` or
//!   `"unix:/path"`, each upload is streamed to clamd (`INSTREAM`) before it is stored; a finding
//!   is `422 infected`, clamd unreachable `503` (fail closed).
//! - **Resumable uploads: tus 1.0** (core, creation, termination) under
//!   `/api/v1/documents/uploads`. Each `PATCH` is kept as one segment file under
//!   `<data_dir>/uploads/<id>/` (sealed like blobs), whatever arrived before the connection
//!   dropped included, so `HEAD` answers the offset to resume from. When the last byte arrives the
//!   segments become a document like a multipart upload. Segments are local files: behind a load
//!   balancer, one upload's requests must reach the same node (or the nodes share the data dir).
//!   Abandoned uploads are removed after `upload_expiry_hours`.
//! - **The record.** A `DocumentReference` (subject, type, description, `context.period`, the
//!   attachment's content type, size, title and URL) is written through the caller's guarded store
//!   view in the same transaction as its `documents` row, so who may upload, list, fetch or delete
//!   is the store's decision (the patient, their caregivers, and the clinicians with access), and
//!   every route is audited: a patient fetching another patient's document gets `404` and the
//!   attempt is an audit event naming them.
//! - **Deletion keeps history, blobs go when unreferenced.** `DELETE` deletes the
//!   DocumentReference (its versions stay, as for every FHIR delete) and the `documents` row; a
//!   blob no document names any more is marked, and the sweeper (every `sweep_interval_secs`, and
//!   right after a delete) removes it once it has stayed unreferenced for `sweep_grace_secs`
//!   (which covers an upload of the same bytes that found the blob present just before). Data-rights
//!   erasure removes the patient's rows in its own transaction (`hearth_store_sql::erase`), so the
//!   next sweep removes their blobs.
//! - **Reading documents** ([`read`]): a background reader extracts each document's text (a PDF's
//!   own, Tesseract OCR for scans and photos) into a full-text index searched by `?text=`;
//!   missing tools are a status, never an error.

#![forbid(unsafe_code)]

pub mod blob;
pub mod clamd;
pub mod lab;
pub mod phr;
pub mod read;
pub mod results;
mod routes;
pub mod s3;
pub mod sniff;
mod tus;
#[doc(hidden)]
pub use tus::fuzz_upload_headers;

use std::path::PathBuf;
use std::sync::{Arc, Weak};
use std::time::Duration;

use hearth_store_sql::crypt::KeySource;
use hearth_workflow::{Ctx, Mount, Workflow};
use serde::Deserialize;

use crate::blob::{BlobStore, Blobs, LocalBlobs};

/// Where blobs are kept.
#[derive(Debug, Clone, Copy, Deserialize, PartialEq, Eq, Default)]
#[serde(rename_all = "lowercase")]
pub enum Storage {
    /// Files under `<data_dir>/blobs`.
    #[default]
    Local,
    /// The bucket of `[documents.s3]`.
    S3,
}

/// The `[documents]` table (see the crate docs).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct DocumentsConfig {
    pub storage: Storage,
    pub s3: Option<s3::S3Config>,
    /// The largest document accepted, in bytes.
    pub max_upload_bytes: u64,
    /// clamd to scan uploads with: `tcp:HOST:PORT` or `unix:/path/to/clamd.ctl`; absent: no scan.
    pub clamd: Option<String>,
    /// How often the sweeper runs (unreferenced blobs, abandoned uploads).
    pub sweep_interval_secs: u64,
    /// How long a blob stays unreferenced before it is removed.
    pub sweep_grace_secs: u64,
    /// After how long an unfinished resumable upload is removed.
    pub upload_expiry_hours: u64,
    /// Tesseract's languages for scanned pages and photos (`eng+hin`: English and Hindi).
    pub ocr_languages: String,
}

impl Default for DocumentsConfig {
    fn default() -> Self {
        DocumentsConfig {
            storage: Storage::Local,
            s3: None,
            max_upload_bytes: 64 * 1024 * 1024,
            clamd: None,
            sweep_interval_secs: 60,
            sweep_grace_secs: 600,
            upload_expiry_hours: 24,
            ocr_languages: "eng+hin".into(),
        }
    }
}

/// The largest size FHIR R4 can state in `Attachment.size` (an unsignedInt, 2^31 - 1 bytes).
pub const MAX_DESCRIBABLE_BYTES: u64 = 2_147_483_647;

impl DocumentsConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.max_upload_bytes == 0 {
            return Err("documents.max_upload_bytes must be at least 1".into());
        }
        // R4's Attachment.size is an unsignedInt: a larger document could be stored but not
        // described by its DocumentReference.
        if self.max_upload_bytes > MAX_DESCRIBABLE_BYTES {
            return Err(format!(
                "documents.max_upload_bytes may be at most {MAX_DESCRIBABLE_BYTES} (FHIR R4 Attachment.size is an unsignedInt)"
            ));
        }
        if self.sweep_interval_secs == 0 {
            return Err("documents.sweep_interval_secs must be at least 1".into());
        }
        match (self.storage, &self.s3) {
            (Storage::S3, None) => return Err("documents.storage = \"s3\" needs a [documents.s3] table".into()),
            (_, Some(s3)) => s3.check()?,
            (Storage::Local, None) => {}
        }
        let ok_lang =
            |l: &str| !l.is_empty() && l.len() <= 32 && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'_');
        if !self.ocr_languages.split('+').all(ok_lang) {
            return Err("documents.ocr_languages is Tesseract's form, e.g. eng+hin".into());
        }
        if let Some(addr) = &self.clamd {
            clamd::Address::parse(addr)?;
        }
        Ok(())
    }
}

/// The documents workflow's state.
pub struct Documents {
    ctx: Arc<Ctx>,
    pub config: DocumentsConfig,
    blobs: Blobs,
    /// `<data_dir>/uploads`: resumable uploads' segments.
    uploads: PathBuf,
    /// Serialises a sweep against the moment an upload decides its blob is already stored and
    /// commits its row (within this process; across processes `sweep_grace_secs` covers it).
    sweep_lock: tokio::sync::RwLock<()>,
    /// Wakes the reader when a document was stored.
    reader_wake: tokio::sync::Notify,
}

impl std::ops::Deref for Documents {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Documents {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

impl Documents {
    /// The workflow over `data_dir`, encrypting with `keys` when set.
    pub fn new(
        ctx: Arc<Ctx>,
        config: DocumentsConfig,
        data_dir: &std::path::Path,
        keys: Option<KeySource>,
    ) -> Result<Documents, String> {
        config.check()?;
        let (store, staging): (Arc<dyn BlobStore>, PathBuf) = match (&config.storage, &config.s3) {
            (Storage::S3, Some(s3)) => (Arc::new(s3::S3Blobs::new(s3.clone())?), data_dir.join("staging")),
            _ => {
                let root = data_dir.join("blobs");
                // Staging beside the blobs: a finished upload is renamed into place.
                (Arc::new(LocalBlobs::new(root.clone())), root.join(".staging"))
            }
        };
        Ok(Documents {
            ctx,
            blobs: Blobs::new(store, staging, keys),
            uploads: data_dir.join("uploads"),
            config,
            sweep_lock: tokio::sync::RwLock::new(()),
            reader_wake: tokio::sync::Notify::new(),
        })
    }

    /// The blob store (for tests and tools).
    pub fn blobs(&self) -> &Blobs {
        &self.blobs
    }

    /// Removes blobs unreferenced for the grace period and abandoned uploads; answers how many
    /// blobs were removed.
    pub async fn sweep(&self) -> Result<usize, String> {
        let now = self.clock.now().timestamp_millis();
        let grace = i64::try_from(self.config.sweep_grace_secs.saturating_mul(1000)).unwrap_or(i64::MAX);
        let mut removed = 0;
        {
            let _guard = self.sweep_lock.write().await;
            let due = hearth_store_sql::documents::sweepable(&*self.db, now.saturating_sub(grace), 500)
                .await
                .map_err(|e| e.to_string())?;
            for sha in due {
                if hearth_store_sql::documents::forget_blob(&*self.db, &sha).await.map_err(|e| e.to_string())? {
                    self.blobs.delete(&sha).await.map_err(|e| e.to_string())?;
                    removed += 1;
                }
            }
        }
        hearth_store_sql::documents::forget_orphan_text(&*self.db).await.map_err(|e| e.to_string())?;
        let expiry = i64::try_from(self.config.upload_expiry_hours.saturating_mul(3_600_000)).unwrap_or(i64::MAX);
        let stale = hearth_store_sql::documents::stale_uploads(&*self.db, now.saturating_sub(expiry), 500)
            .await
            .map_err(|e| e.to_string())?;
        for id in stale {
            tus::discard(self, &id).await;
        }
        // Segments whose upload row is gone (erased with the patient's record).
        if let Ok(mut dirs) = tokio::fs::read_dir(&self.uploads).await {
            while let Ok(Some(entry)) = dirs.next_entry().await {
                let name = entry.file_name().to_string_lossy().into_owned();
                if !hearth_store_sql::documents::upload_exists(&*self.db, &name).await.map_err(|e| e.to_string())? {
                    tus::discard(self, &name).await;
                }
            }
        }
        if removed > 0 {
            tracing::info!(blobs = removed, "unreferenced document blobs removed");
        }
        Ok(removed)
    }
}

/// Runs the sweeper every `sweep_interval_secs` while the workflow lives.
fn start_sweeper(docs: &Arc<Documents>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let weak: Weak<Documents> = Arc::downgrade(docs);
    let every = Duration::from_secs(docs.config.sweep_interval_secs);
    runtime.spawn(async move {
        let mut tick = tokio::time::interval(every);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(docs) = weak.upgrade() else { return };
            if let Err(e) = docs.sweep().await {
                tracing::warn!(error = %e, "the documents sweeper failed; it tries again");
            }
        }
    });
}

/// Reads new documents' text, one at a time, as they arrive (woken by each stored document, and
/// every `sweep_interval_secs` for documents another process stored or a reader left behind).
fn start_reader(docs: &Arc<Documents>) {
    let Ok(runtime) = tokio::runtime::Handle::try_current() else { return };
    let weak: Weak<Documents> = Arc::downgrade(docs);
    let every = Duration::from_secs(docs.config.sweep_interval_secs);
    runtime.spawn(async move {
        loop {
            let Some(docs) = weak.upgrade() else { return };
            loop {
                match read::read_next(&docs).await {
                    Ok(true) => continue,
                    Ok(false) => break,
                    Err(e) => {
                        tracing::warn!(error = %e, "the document reader failed; it tries again");
                        break;
                    }
                }
            }
            // Holds the state for at most one interval after the app is gone; then the upgrade fails.
            let _ = tokio::time::timeout(every, docs.reader_wake.notified()).await;
        }
    });
}

#[derive(utoipa::OpenApi)]
#[openapi(
    paths(
        routes::upload,
        routes::list,
        routes::content,
        routes::delete,
        tus::options,
        tus::create,
        tus::head,
        tus::patch,
        tus::terminate,
        results::list,
        results::review,
        phr::summary,
        phr::results,
    ),
    components(schemas(
        routes::Document,
        routes::DocumentList,
        routes::UploadForm,
        results::LabResult,
        results::LabResults,
        results::ReviewBody
    ))
)]
struct Api;

impl Workflow for Documents {
    /// Every route reads or changes someone's record: each request is an audit event.
    fn mount(self: Arc<Self>) -> Mount {
        start_sweeper(&self);
        start_reader(&self);
        use axum::routing::{get, post};
        let audited = axum::Router::new()
            .route("/api/v1/documents", get(routes::list).post(routes::upload))
            .route("/api/v1/documents/uploads", post(tus::create).options(tus::options))
            .route(
                "/api/v1/documents/uploads/{id}",
                axum::routing::head(tus::head).patch(tus::patch).delete(tus::terminate),
            )
            .route("/api/v1/documents/{id}", axum::routing::delete(routes::delete))
            .route("/api/v1/documents/{id}/content", get(routes::content))
            .route("/api/v1/documents/{id}/results", get(results::list))
            .route("/api/v1/documents/{id}/results/{result}", post(results::review))
            .route("/api/v1/phr/summary", get(phr::summary))
            .route("/api/v1/phr/results", get(phr::results))
            // Uploads are streamed and limited by `max_upload_bytes` here, not by axum's default.
            .layer(axum::extract::DefaultBodyLimit::disable())
            .with_state(self);
        Mount { audited, openapi: <Api as utoipa::OpenApi>::openapi(), ..Mount::default() }
    }
}
