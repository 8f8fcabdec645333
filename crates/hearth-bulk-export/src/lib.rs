//! Bulk Data export (FHIR Bulk Data Access IG v2): `$export` at system, `Patient` and
//! `Group/{id}` level, asynchronous.
//!
//! Kick-off (`Prefer: respond-async`) stores a job row and answers `202` with the status URL in
//! `Content-Location`. A worker in every serving process claims pending jobs from the database
//! (one claim per job across processes, with a lease it renews while it runs; a job whose worker
//! died is claimed again when its lease expires and restarts from the beginning). The worker
//! pages through the store in `rid` order ([`ResourceStore::export_scan`], batches of
//! [`BATCH`]) and appends each resource to `<data_dir>/exports/<job>/<Type>.ndjson`, so memory
//! stays flat whatever the data size. The status URL answers `202` + `X-Progress` while the job
//! runs and `200` with the manifest when it is done; `DELETE` removes the job and its files.
//! Files are served from `$export-file/<job>/<Type>.ndjson` as `application/fhir+ndjson`.
//! With an encryption key configured the files hold PHI only encrypted: each is an encrypted
//! stream (`hearth_store_sql::crypt::StreamSealer`, AES-256-GCM in 64 KiB chunks under a key
//! wrapped by the master key) and is decrypted while it is served.

use std::collections::BTreeMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_store::{Current, ExportJob, ExportScan, JobKind, JobStatus, Patients, ResourceStore, StoreError};
use hearth_store_sql::crypt::{KeyRing, StreamOpener, StreamSealer};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use tokio::io::AsyncWriteExt;

use hearth_store_sql::crypt::KeySource;
use hearth_workflow::error::{FHIR_JSON, FhirError, Issue, operation_outcome};
use hearth_workflow::fhir::{check_id, check_type, pairs, parse_instant, valid_id};
use hearth_workflow::{Caller, Ctx, Mount, Workflow};

/// The Bulk Data export workflow's state: the shared context, where job files go, the
/// encryption keys' source (read again for every file: a key file may have been rotated), and
/// the wake-up of this process's worker.
pub struct BulkExport {
    ctx: Arc<Ctx>,
    data_dir: PathBuf,
    keys: Option<KeySource>,
    /// Wakes this process's export worker when a job is queued here.
    pub wakeup: tokio::sync::Notify,
}

impl BulkExport {
    pub fn new(ctx: Arc<Ctx>, data_dir: PathBuf, keys: Option<KeySource>) -> BulkExport {
        BulkExport { ctx, data_dir, keys, wakeup: tokio::sync::Notify::new() }
    }
}

impl std::ops::Deref for BulkExport {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for BulkExport {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

impl Workflow for BulkExport {
    /// `$export` at system, type (`Patient`) and instance (`Group/{id}`) level, the status and
    /// file URLs: FHIR operations under `/fhir`, audited like the rest of it. (Documented in the
    /// CapabilityStatement, not the app API's OpenAPI.)
    fn mount(self: Arc<Self>) -> Mount {
        use axum::routing::get;
        Mount {
            fhir_operations: axum::Router::new()
                .route("/$export", get(kickoff_system))
                .route("/$export-status/{job}", get(status).delete(cancel))
                .route("/$export-file/{job}/{file}", get(file))
                .route("/{type}/$export", get(kickoff_type))
                .route("/{type}/{id}/$export", get(kickoff_instance))
                .with_state(self),
            ..Mount::default()
        }
    }
}

/// Resources read from the store per batch.
pub const BATCH: u32 = 1000;
/// How long a claimed job stays with its worker without a heartbeat.
const LEASE: Duration = Duration::from_secs(30);
/// How often an idle worker looks for jobs (a kick-off in the same process wakes it at once).
const POLL: Duration = Duration::from_secs(1);

#[derive(Debug, thiserror::Error)]
pub enum ExportError {
    #[error(transparent)]
    Store(#[from] StoreError),
    #[error("cannot write the export files: {0}")]
    Io(#[from] std::io::Error),
    #[error("cannot encrypt the export files: {0}")]
    Crypt(#[from] hearth_store_sql::crypt::CryptError),
}

/// One NDJSON file of an export.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct OutputFile {
    #[serde(rename = "type")]
    pub resource_type: String,
    pub file: String,
    pub count: u64,
}

/// Streams export batches into one NDJSON file per resource type under a directory. The caller
/// drives it with [`Exporter::step`] (so it can report progress and renew a lease in between).
pub struct Exporter {
    dir: PathBuf,
    scan: ExportScan,
    files: BTreeMap<String, OpenFile>,
    ring: Option<KeyRing>,
    pub exported: u64,
}

struct OpenFile {
    writer: tokio::io::BufWriter<tokio::fs::File>,
    count: u64,
    sealer: Option<StreamSealer>,
}

impl Exporter {
    pub async fn new(dir: &FsPath, mut scan: ExportScan) -> Result<Exporter, ExportError> {
        // Exports are health data: the job's directory 0700 and its files 0600 (issue 26).
        tokio::fs::DirBuilder::new().recursive(true).mode(0o700).create(dir).await?;
        scan.after = 0;
        if scan.limit == 0 {
            scan.limit = BATCH;
        }
        Ok(Exporter { dir: dir.to_owned(), scan, files: BTreeMap::new(), ring: None, exported: 0 })
    }

    /// Encrypts the files under `ring`'s current key (see the module docs).
    pub fn encrypted(mut self, ring: Option<KeyRing>) -> Exporter {
        self.ring = ring;
        self
    }

    /// Writes the next batch; false when everything has been written.
    pub async fn step(&mut self, store: &dyn ResourceStore) -> Result<bool, ExportError> {
        let batch = store.export_scan(&self.scan).await?;
        let more = batch.len() >= self.scan.limit as usize;
        for (rid, v) in batch {
            self.scan.after = rid;
            let Some(body) = v.body else { continue };
            let slot = match self.files.get_mut(&v.resource_type) {
                Some(slot) => slot,
                None => {
                    let path = self.dir.join(format!("{}.ndjson", v.resource_type));
                    let file = tokio::fs::OpenOptions::new()
                        .write(true)
                        .create(true)
                        .truncate(true)
                        .mode(0o600)
                        .open(&path)
                        .await?;
                    let mut writer = tokio::io::BufWriter::new(file);
                    let sealer = match &self.ring {
                        Some(ring) => {
                            let (sealer, header) = StreamSealer::new(ring)?;
                            writer.write_all(&header).await?;
                            Some(sealer)
                        }
                        None => None,
                    };
                    self.files.entry(v.resource_type.clone()).or_insert(OpenFile { writer, count: 0, sealer })
                }
            };
            match &mut slot.sealer {
                Some(sealer) => {
                    let mut line = Vec::with_capacity(body.len() + 1);
                    line.extend_from_slice(body.as_bytes());
                    line.push(b'\n');
                    slot.writer.write_all(&sealer.update(&line)?).await?;
                }
                None => {
                    slot.writer.write_all(body.as_bytes()).await?;
                    slot.writer.write_all(b"\n").await?;
                }
            }
            slot.count += 1;
            self.exported += 1;
        }
        Ok(more)
    }

    /// Flushes and syncs every file; the files written, by type.
    pub async fn finish(self) -> Result<Vec<OutputFile>, ExportError> {
        let mut out = Vec::with_capacity(self.files.len());
        for (ty, OpenFile { writer: mut w, count, sealer }) in self.files {
            if let Some(sealer) = sealer {
                w.write_all(&sealer.finish()?).await?;
            }
            w.flush().await?;
            w.get_ref().sync_all().await?;
            out.push(OutputFile { file: format!("{ty}.ndjson"), resource_type: ty, count });
        }
        Ok(out)
    }
}

/// What a job exports, kept as the job row's `request` JSON.
#[derive(Debug, Clone, Serialize, Deserialize)]
struct JobRequest {
    /// The kick-off URL, for the manifest.
    url: String,
    /// `system`, `patient` or `group`.
    level: String,
    /// Group members (group level).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patients: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    types: Option<Vec<String>>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    since_ms: Option<i64>,
}

fn job_dir(app: &BulkExport, id: &str) -> PathBuf {
    app.data_dir.join("exports").join(id)
}

fn scan_of(app: &BulkExport, req: &JobRequest) -> ExportScan {
    let params = || {
        app.compartments
            .members("Patient")
            .map(|m| m.iter().map(|(t, ps)| (t.clone(), ps.clone())).collect::<Vec<_>>())
            .unwrap_or_default()
    };
    let patients = match (req.level.as_str(), &req.patients) {
        ("patient", _) => Some((Patients::All, params())),
        ("group", Some(ids)) => Some((Patients::Ids(ids.clone()), params())),
        ("group", None) => Some((Patients::Ids(Vec::new()), params())),
        _ => None,
    };
    ExportScan {
        types: req.types.clone(),
        since: req.since_ms.and_then(DateTime::from_timestamp_millis),
        patients,
        after: 0,
        limit: BATCH,
    }
}

/// Bulk export spans every patient: only for callers who reach every record and may read and
/// search every type (admins; SMART backend services with `system/*.read` or `system/*.rs`). A
/// patient's own data comes through `Patient/{id}/$everything` (and, with the data-rights work,
/// a download of their record).
fn require_bulk(caller: &Caller) -> Result<(), FhirError> {
    let a = &caller.access;
    let all = hearth_store::TypeGrant::All;
    if a.reach == hearth_store::Reach::All && a.grants.read == all && a.grants.search == all {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::FORBIDDEN,
            Issue::error("forbidden", "bulk export needs an administrator or a system client with unrestricted access"),
        ))
    }
}

// ---- kick-off ------------------------------------------------------------------------------

pub async fn kickoff_system(
    State(app): State<Arc<BulkExport>>,
    caller: Caller,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    require_bulk(&caller)?;
    kickoff(&app, &headers, q.as_deref(), "system", None, "$export").await
}

pub async fn kickoff_type(
    State(app): State<Arc<BulkExport>>,
    caller: Caller,
    Path(ty): Path<String>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    require_bulk(&caller)?;
    check_type(&app, &ty)?;
    if ty != "Patient" {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            Issue::error("not-supported", "type-level $export is defined for Patient only"),
        ));
    }
    kickoff(&app, &headers, q.as_deref(), "patient", None, "Patient/$export").await
}

pub async fn kickoff_instance(
    State(app): State<Arc<BulkExport>>,
    caller: Caller,
    Path((ty, id)): Path<(String, String)>,
    headers: HeaderMap,
    RawQuery(q): RawQuery,
) -> Result<Response, FhirError> {
    require_bulk(&caller)?;
    check_type(&app, &ty)?;
    if ty != "Group" {
        return Err(FhirError::new(
            StatusCode::NOT_FOUND,
            Issue::error("not-supported", "instance-level $export is defined for Group only"),
        ));
    }
    check_id(&id)?;
    let group = match app.store.read("Group", &id).await? {
        Current::Found(v) => v,
        Current::Deleted(_) => {
            return Err(FhirError::new(StatusCode::GONE, Issue::error("deleted", format!("Group/{id} was deleted"))));
        }
        Current::NotFound => return Err(FhirError::not_found(format!("Group/{id} does not exist"))),
    };
    let body: Value = serde_json::from_str(group.body.as_deref().unwrap_or("{}")).map_err(FhirError::internal)?;
    let mut members = Vec::new();
    for m in body.get("member").and_then(Value::as_array).into_iter().flatten() {
        let Some(reference) = m.pointer("/entity/reference").and_then(Value::as_str) else { continue };
        let mut parts = reference.rsplit('/');
        if let (Some(pid), Some("Patient")) = (parts.next(), parts.next())
            && valid_id(pid)
            && !members.iter().any(|x| x == pid)
        {
            members.push(pid.to_owned());
        }
    }
    kickoff(&app, &headers, q.as_deref(), "group", Some(members), &format!("Group/{id}/$export")).await
}

async fn kickoff(
    app: &BulkExport,
    headers: &HeaderMap,
    raw_query: Option<&str>,
    level: &str,
    patients: Option<Vec<String>>,
    path: &str,
) -> Result<Response, FhirError> {
    let async_requested = headers
        .get_all("prefer")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .any(|v| v.split([',', ';']).any(|p| p.trim().eq_ignore_ascii_case("respond-async")));
    if !async_requested {
        return Err(FhirError::bad_request("invalid", "$export runs asynchronously: send `Prefer: respond-async`"));
    }
    let mut types: Option<Vec<String>> = None;
    let mut since = None;
    for (k, v) in pairs(raw_query) {
        match k.as_str() {
            "_outputFormat" => {
                if !matches!(v.as_str(), "application/fhir+ndjson" | "application/ndjson" | "ndjson") {
                    return Err(FhirError::bad_request(
                        "not-supported",
                        "_outputFormat must be application/fhir+ndjson (or application/ndjson, ndjson)",
                    ));
                }
            }
            "_type" => {
                let list = types.get_or_insert_with(Vec::new);
                for t in v.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                    if !app.model.is_resource_type(t) {
                        return Err(FhirError::bad_request("invalid", format!("_type: unknown resource type `{t}`")));
                    }
                    if !list.iter().any(|x| x == t) {
                        list.push(t.to_owned());
                    }
                }
            }
            "_since" => {
                since = Some(parse_instant(&v).ok_or_else(|| {
                    FhirError::bad_request("invalid", "_since must be an instant such as 2024-01-31T10:00:00Z")
                })?);
            }
            "_format" | "_pretty" => {}
            other => {
                return Err(FhirError::bad_request(
                    "not-supported",
                    format!("$export does not support the parameter `{other}`"),
                ));
            }
        }
    }
    let base = app.fhir_base(headers);
    let url = match raw_query {
        Some(q) if !q.is_empty() => format!("{base}/{path}?{q}"),
        _ => format!("{base}/{path}"),
    };
    let request = JobRequest {
        url,
        level: level.to_owned(),
        patients,
        types,
        since_ms: since.map(|s: DateTime<Utc>| s.timestamp_millis()),
    };
    let text = serde_json::to_string(&request).map_err(FhirError::internal)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = app.clock.now();
    app.store.export_job_create(JobKind::Export, &id, &text, now, now).await?;
    app.wakeup.notify_one();
    tracing::info!(job = %id, level, "export job queued");
    let outcome = operation_outcome(&[Issue {
        severity: "information",
        ..Issue::error("informational", "export started; poll the Content-Location URL")
    }]);
    let mut resp = (StatusCode::ACCEPTED, outcome.to_string()).into_response();
    let h = resp.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    if let Ok(v) = HeaderValue::from_str(&format!("{base}/$export-status/{id}")) {
        h.insert(header::CONTENT_LOCATION, v);
    }
    Ok(resp)
}

// ---- status, delete, files -----------------------------------------------------------------

async fn job_of(app: &BulkExport, id: &str) -> Result<ExportJob, FhirError> {
    if !valid_id(id) {
        return Err(FhirError::not_found("no such export job"));
    }
    app.store
        .export_job(id)
        .await?
        .filter(|job| job.kind == JobKind::Export)
        .ok_or_else(|| FhirError::not_found("no such export job"))
}

pub async fn status(
    State(app): State<Arc<BulkExport>>,
    caller: Caller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    require_bulk(&caller)?;
    let job = job_of(&app, &id).await?;
    match job.status {
        JobStatus::Pending | JobStatus::Running => {
            let progress = job.progress.unwrap_or_else(|| {
                if job.status == JobStatus::Pending { "queued".to_owned() } else { "started".to_owned() }
            });
            let mut resp = StatusCode::ACCEPTED.into_response();
            let h = resp.headers_mut();
            if let Ok(v) = HeaderValue::from_str(&progress) {
                h.insert("x-progress", v);
            }
            h.insert(header::RETRY_AFTER, HeaderValue::from_static("1"));
            Ok(resp)
        }
        JobStatus::Failed => Err(FhirError::new(
            StatusCode::INTERNAL_SERVER_ERROR,
            Issue::error("exception", format!("the export failed: {}", job.error.unwrap_or_default())),
        )),
        JobStatus::Done => {
            let request: JobRequest = serde_json::from_str(&job.request).map_err(FhirError::internal)?;
            let files: Vec<OutputFile> =
                serde_json::from_str(job.result.as_deref().unwrap_or("[]")).map_err(FhirError::internal)?;
            let base = app.fhir_base(&headers);
            let output: Vec<Value> = files
                .iter()
                .map(|f| {
                    json!({"type": f.resource_type, "url": format!("{base}/$export-file/{id}/{}", f.file), "count": f.count})
                })
                .collect();
            let manifest = json!({
                "transactionTime": job.transaction_time.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
                "request": request.url,
                "requiresAccessToken": true,
                "output": output,
                "error": [],
            });
            let mut resp = (StatusCode::OK, manifest.to_string()).into_response();
            resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
            Ok(resp)
        }
    }
}

pub async fn cancel(
    State(app): State<Arc<BulkExport>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    require_bulk(&caller)?;
    job_of(&app, &id).await?;
    if !app.store.export_job_delete(&id).await? {
        return Err(FhirError::not_found("no such export job"));
    }
    remove_dir(&job_dir(&app, &id)).await;
    tracing::info!(job = %id, "export job deleted");
    let outcome = operation_outcome(&[Issue {
        severity: "information",
        ..Issue::error("informational", "the export job and its files were deleted")
    }]);
    let mut resp = (StatusCode::ACCEPTED, outcome.to_string()).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(FHIR_JSON));
    Ok(resp)
}

async fn remove_dir(dir: &FsPath) {
    if let Err(e) = tokio::fs::remove_dir_all(dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, "cannot remove export files");
    }
}

pub async fn file(
    State(app): State<Arc<BulkExport>>,
    caller: Caller,
    Path((id, name)): Path<(String, String)>,
) -> Result<Response, FhirError> {
    require_bulk(&caller)?;
    let job = job_of(&app, &id).await?;
    let ty = name.strip_suffix(".ndjson").unwrap_or_default();
    if job.status != JobStatus::Done || !app.model.is_resource_type(ty) {
        return Err(FhirError::not_found("no such export file"));
    }
    let path = job_dir(&app, &id).join(&name);
    let mut file = tokio::fs::File::open(&path).await.map_err(|_| FhirError::not_found("no such export file"))?;
    let mut head = [0u8; 8];
    let n = tokio::io::AsyncReadExt::read(&mut file, &mut head).await.map_err(FhirError::internal)?;
    let head = head.get(..n).unwrap_or_default().to_vec();
    let body = if StreamOpener::is_stream(&head) {
        let ring = encryption_ring(&app).map_err(FhirError::internal)?.ok_or_else(|| {
            FhirError::internal(ExportError::Crypt(hearth_store_sql::crypt::CryptError(
                "an export file is encrypted and no encryption key is configured".into(),
            )))
        })?;
        Body::from_stream(decrypting(file, head, StreamOpener::new(ring)))
    } else {
        let rest = tokio_util::io::ReaderStream::new(file);
        let first = futures_util::stream::iter([Ok::<_, std::io::Error>(axum::body::Bytes::from(head))]);
        Body::from_stream(futures_util::StreamExt::chain(first, rest))
    };
    let mut resp = (StatusCode::OK, body).into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static("application/fhir+ndjson"));
    Ok(resp)
}

/// The configured master keys, read now (a key file may have been rotated since the start).
fn encryption_ring(app: &BulkExport) -> Result<Option<KeyRing>, ExportError> {
    Ok(app.keys.as_ref().map(KeySource::load).transpose()?)
}

/// The plaintext of an encrypted export file, chunk by chunk; an altered or cut file ends the
/// response with an error instead of serving a partial file as whole.
fn decrypting(
    file: tokio::fs::File,
    head: Vec<u8>,
    opener: StreamOpener,
) -> impl futures_util::Stream<Item = Result<axum::body::Bytes, std::io::Error>> {
    let state = (file, Some(head), Some(opener));
    futures_util::stream::try_unfold(state, |(mut file, head, opener)| async move {
        let Some(mut opener) = opener else { return Ok(None) };
        let mut plain = match head {
            Some(head) => opener.update(&head).map_err(std::io::Error::other)?,
            None => Vec::new(),
        };
        let mut buf = vec![0u8; 64 * 1024];
        while plain.is_empty() {
            let n = tokio::io::AsyncReadExt::read(&mut file, &mut buf).await?;
            if n == 0 {
                opener.finish().map_err(std::io::Error::other)?;
                return Ok(None);
            }
            plain = opener.update(buf.get(..n).unwrap_or_default()).map_err(std::io::Error::other)?;
        }
        Ok(Some((axum::body::Bytes::from(plain), (file, None, Some(opener)))))
    })
}

// ---- the worker ----------------------------------------------------------------------------

fn lease_end(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::from_std(LEASE).unwrap_or_else(|_| chrono::Duration::seconds(30))
}

/// Claims and runs export jobs until the task is dropped. One per serving process.
pub async fn worker(app: Arc<BulkExport>) {
    let owner = uuid::Uuid::new_v4().to_string();
    loop {
        let now = app.clock.now();
        match app.store.export_job_claim(JobKind::Export, &owner, now, lease_end(now)).await {
            Ok(Some(job)) => run_job(&app, &owner, job).await,
            Ok(None) => {
                tokio::select! {
                    () = app.wakeup.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim export jobs");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn run_job(app: &BulkExport, owner: &str, job: ExportJob) {
    tracing::info!(job = %job.id, "export job started");
    let dir = job_dir(app, &job.id);
    // A job claimed again after its worker died starts over.
    remove_dir(&dir).await;
    let outcome = async {
        let request: JobRequest = serde_json::from_str(&job.request)
            .map_err(|e| ExportError::Store(StoreError::Corrupt(format!("export job request: {e}"))))?;
        let mut exporter = Exporter::new(&dir, scan_of(app, &request)).await?.encrypted(encryption_ring(app)?);
        loop {
            let more = exporter.step(&*app.store).await?;
            let progress = format!("{} resources exported", exporter.exported);
            let now = app.clock.now();
            if !app.store.export_job_heartbeat(&job.id, owner, lease_end(now), &progress).await? {
                return Ok(None);
            }
            if !more {
                break;
            }
        }
        Ok::<_, ExportError>(Some(exporter.finish().await?))
    }
    .await;
    let finished = match outcome {
        Ok(Some(files)) => {
            let text = serde_json::to_string(&files).unwrap_or_else(|_| "[]".to_owned());
            app.store.export_job_finish(&job.id, owner, JobStatus::Done, Some(&text), None).await
        }
        Ok(None) => Ok(false),
        Err(e) => {
            tracing::warn!(job = %job.id, error = %e, "export job failed");
            app.store.export_job_finish(&job.id, owner, JobStatus::Failed, None, Some(&e.to_string())).await
        }
    };
    match finished {
        Ok(true) => tracing::info!(job = %job.id, "export job finished"),
        // Deleted meanwhile (or taken over after a lost lease): leave no files behind.
        Ok(false) => {
            if app.store.export_job(&job.id).await.ok().flatten().is_none() {
                remove_dir(&dir).await;
            }
            tracing::info!(job = %job.id, "export job abandoned");
        }
        Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot record the end of an export job"),
    }
}
