//! SearchParameter resources stored on the server, and `$reindex`.
//!
//! A SearchParameter written through the API is checked (it must compile and not clash with an
//! existing code) before the write, and after the write commits the registry is rebuilt from the
//! R4 parameters plus every stored SearchParameter, and the resources of its base types are
//! reindexed in the background, so the parameter finds existing data too. `$reindex` (system or
//! type level) queues the same job on request; `GET /fhir/$reindex/{job}` reports its progress.
//!
//! A job is a row of the durable job table (kind `reindex`, beside `$export` jobs), claimed
//! under a lease by the worker of some process and resumed from its last batch after a restart
//! or a crash (issue 26: reindex jobs used to live in one process's memory). With several
//! processes on one PostgreSQL database, another process picks up a new parameter for its
//! searches when it restarts (documented in docs/POSTGRES.md), but every reindex job rebuilds the
//! registry from the stored parameters before it runs; the index rows themselves are shared.

use std::sync::Arc;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_search::{Handling, Registry};
use hearth_store::{ExportJob, JobKind, JobStatus, SearchRequest, StoreError};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use super::http::base_url;
use super::http::check_type;
use crate::app::App;
use crate::auth::Caller;
use crate::error::{FhirError, Issue, fhir_json};

const BATCH: u32 = 500;
/// A reindex job's lease: renewed after every batch; a job whose process died is claimed again
/// by another worker (or the restarted process) once it has expired.
const LEASE_SECS: i64 = 60;
/// How often an idle worker looks for queued jobs (a job queued in this process wakes it at once).
const POLL: std::time::Duration = std::time::Duration::from_secs(2);
/// At most this many index rows written in one reindex transaction (a resource's rows are never split).
const ROWS_PER_TX: usize = 5_000;

/// Checks a SearchParameter about to be written: it must be one the registry can honour.
pub fn check(app: &App, resource: &Value) -> Result<(), FhirError> {
    let mut registry = (*app.registry()).clone();
    registry.add(resource).map_err(|e| FhirError::bad_request("invalid", format!("SearchParameter: {e}")))
}

/// The registry of this process rebuilt from the R4 parameters plus every stored
/// SearchParameter; answers the resource types the stored parameters apply to.
async fn rebuild_registry(app: &App) -> Result<Vec<String>, StoreError> {
    let mut registry = Registry::r4(&app.model).map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let stored = super::registry::stored(&*app.store).await.map_err(|e| StoreError::Corrupt(e.to_string()))?;
    let mut types = Vec::new();
    for sp in &stored {
        if registry.add(sp).is_ok() {
            for base in sp.get("base").and_then(Value::as_array).into_iter().flatten().filter_map(Value::as_str) {
                if app.model.is_resource_type(base) && !types.iter().any(|t| t == base) {
                    types.push(base.to_owned());
                }
            }
        }
    }
    app.set_registry(registry);
    Ok(types)
}

/// After a SearchParameter write committed: rebuild the registry from the stored parameters and
/// queue a reindex of the resource types they apply to.
pub async fn changed(app: &Arc<App>) -> Result<(), FhirError> {
    let types = rebuild_registry(app).await?;
    if !types.is_empty() {
        start(app, Some(types)).await?;
    }
    Ok(())
}

/// What a reindex job was asked to do (the job row's `request`).
#[derive(Serialize, Deserialize)]
struct Request {
    /// `None`: every type.
    types: Option<Vec<String>>,
    total: Option<u64>,
}

/// How far a reindex job got (the job row's `progress`): the store position of the last
/// resource reindexed, so a job claimed again after its process died resumes there.
#[derive(Serialize, Deserialize, Default)]
struct Progress {
    after: i64,
    processed: u64,
}

/// The end of a job (the job row's `result`).
#[derive(Serialize, Deserialize)]
struct Finished {
    /// Unix milliseconds.
    finished: i64,
}

/// Queues a reindex job of `types` (every type when `None`) and answers its id.
async fn start(app: &Arc<App>, types: Option<Vec<String>>) -> Result<String, FhirError> {
    let registry = app.registry();
    let refs: Vec<&str> = types.iter().flatten().map(String::as_str).collect();
    let query = registry
        .parse_query(&refs, &[("_count".into(), "0".into())], Handling::Strict)
        .map_err(|e| FhirError::bad_request("invalid", e.to_string()))?;
    let total = app
        .system()
        .search(SearchRequest {
            query,
            access: hearth_store::Access::system(),
            compartment: None,
            cursor: None,
            count_total: true,
        })
        .await?
        .total;
    let request = serde_json::to_string(&Request { types, total }).map_err(FhirError::internal)?;
    let id = uuid::Uuid::now_v7().to_string();
    let now = app.clock.now();
    app.store.export_job_create(JobKind::Reindex, &id, &request, now, now).await?;
    app.reindex_wakeup.notify_one();
    tracing::info!(job = %id, "reindex job queued");
    Ok(id)
}

fn lease_end(now: DateTime<Utc>) -> DateTime<Utc> {
    now + chrono::Duration::seconds(LEASE_SECS)
}

/// Claims and runs reindex jobs until the task is dropped; one per serving process. A job is a
/// row of the durable job table (kind `reindex`), so one queued by another process, or left
/// half done by a process that died (its lease expires after [`LEASE_SECS`]), is run here.
pub async fn worker(app: Arc<App>) {
    let owner = uuid::Uuid::new_v4().to_string();
    loop {
        let now = app.clock.now();
        match app.store.export_job_claim(JobKind::Reindex, &owner, now, lease_end(now)).await {
            Ok(Some(job)) => run(&app, &owner, job).await,
            Ok(None) => {
                tokio::select! {
                    () = app.reindex_wakeup.notified() => {}
                    () = tokio::time::sleep(POLL) => {}
                }
            }
            Err(e) => {
                tracing::warn!(error = %e, "cannot claim reindex jobs");
                tokio::time::sleep(POLL).await;
            }
        }
    }
}

async fn run(app: &App, owner: &str, job: ExportJob) {
    tracing::info!(job = %job.id, "reindex job started");
    let outcome = async {
        let request: Request =
            serde_json::from_str(&job.request).map_err(|e| StoreError::Corrupt(format!("reindex job request: {e}")))?;
        let progress = job.progress.as_deref().and_then(|p| serde_json::from_str(p).ok()).unwrap_or_default();
        // A process that did not see the SearchParameter write that queued this job would index
        // without it: every job starts from the stored parameters.
        rebuild_registry(app).await?;
        reindex(app, owner, &job.id, request.types.as_deref(), progress).await
    }
    .await;
    let finished = match outcome {
        Ok(true) => {
            let result = serde_json::to_string(&Finished { finished: app.clock.now().timestamp_millis() }).ok();
            app.store.export_job_finish(&job.id, owner, JobStatus::Done, result.as_deref(), None).await
        }
        Ok(false) => Ok(false),
        Err(e) => {
            tracing::error!(job = %job.id, error = %e, "reindex failed");
            let result = serde_json::to_string(&Finished { finished: app.clock.now().timestamp_millis() }).ok();
            let error = "the reindex stopped on a storage error; start it again";
            app.store.export_job_finish(&job.id, owner, JobStatus::Failed, result.as_deref(), Some(error)).await
        }
    };
    match finished {
        Ok(true) => tracing::info!(job = %job.id, "reindex job finished"),
        Ok(false) => tracing::info!(job = %job.id, "reindex job taken over by another worker"),
        Err(e) => tracing::warn!(job = %job.id, error = %e, "cannot record the end of a reindex job"),
    }
}

/// Rewrites the index rows of every live resource of `types` after `progress.after`, in batches,
/// recording progress (and extending the lease) after each; answers false when the job was
/// taken over. The index of a batch (FHIRPath over every parameter: the costly part) is worked
/// out on a blocking thread before its write transaction, so the single writer is held only to
/// write rows; a transaction holds at most [`ROWS_PER_TX`] index rows, and the job yields
/// between them, so ordinary writes, the outbox worker and the export claimer get the database
/// in between (issue 26: a resource with very many elements used to hold it for seconds). A
/// resource written meanwhile keeps the rows its own write made (`reindex` changes nothing when
/// the version moved on).
async fn reindex(
    app: &App,
    owner: &str,
    id: &str,
    types: Option<&[String]>,
    mut progress: Progress,
) -> Result<bool, StoreError> {
    loop {
        let batch = app.store.scan(types, progress.after, BATCH).await?;
        let Some((last, _)) = batch.last() else { return Ok(true) };
        let last = *last;
        let n = batch.len() as u64;
        let registry = app.registry();
        let indexed = tokio::task::spawn_blocking(move || {
            batch
                .into_iter()
                .filter_map(|(_, v)| {
                    let resource = serde_json::from_str::<Value>(v.body.as_deref()?).ok()?;
                    let entries = registry.index(&resource);
                    Some((v.resource_type, v.id, v.version_id, entries))
                })
                .collect::<Vec<_>>()
        })
        .await
        .map_err(|e| StoreError::Database(Box::new(e)))?;
        let mut pending = indexed.into_iter().peekable();
        while pending.peek().is_some() {
            let mut tx = app.store.begin().await?;
            let mut rows = 0;
            while rows < ROWS_PER_TX
                && let Some((ty, id, version, entries)) = pending.next()
            {
                rows += entries.len().max(1);
                tx.reindex(&ty, &id, version, &entries).await?;
            }
            tx.commit().await?;
            tokio::task::yield_now().await;
        }
        progress.after = last;
        progress.processed += n;
        let text = serde_json::to_string(&progress).map_err(|e| StoreError::Corrupt(e.to_string()))?;
        if !app.store.export_job_heartbeat(id, owner, lease_end(app.clock.now()), &text).await? {
            return Ok(false);
        }
    }
}

fn kicked_off(app: &App, headers: &HeaderMap, job: &str) -> Response {
    let url = format!("{}/$reindex/{job}", base_url(app, headers));
    let outcome = crate::error::operation_outcome(&[Issue {
        severity: "information",
        ..Issue::error("informational", "reindex started; poll the Content-Location URL for progress")
    }]);
    let mut resp = fhir_json(StatusCode::ACCEPTED, &outcome);
    if let Ok(v) = HeaderValue::from_str(&url) {
        resp.headers_mut().insert(header::CONTENT_LOCATION, v);
    }
    resp
}

/// Reindexing touches every record and costs the whole server: administrators with unrestricted
/// access only (a clinician without an organisation reaches everything, but runs no server jobs).
fn require_system(caller: &Caller) -> Result<(), FhirError> {
    if caller.role == hearth_auth::Role::Admin && caller.access.is_unrestricted() {
        Ok(())
    } else {
        Err(FhirError::new(
            StatusCode::FORBIDDEN,
            crate::error::Issue::error("forbidden", "$reindex needs an administrator with unrestricted access"),
        ))
    }
}

/// `POST /fhir/$reindex`
pub async fn reindex_system(
    State(app): State<Arc<App>>,
    caller: Caller,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    require_system(&caller)?;
    let job = start(&app, None).await?;
    Ok(kicked_off(&app, &headers, &job))
}

/// `POST /fhir/{type}/$reindex`
pub async fn reindex_type(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(resource_type): Path<String>,
    headers: HeaderMap,
) -> Result<Response, FhirError> {
    require_system(&caller)?;
    check_type(&app, &resource_type)?;
    let job = start(&app, Some(vec![resource_type])).await?;
    Ok(kicked_off(&app, &headers, &job))
}

/// `GET /fhir/$reindex/{job}`: `202` with `X-Progress` while queued or running, then `200` with
/// a Parameters summary (status `completed` or `failed: …`). Any process sharing the database
/// answers for any job.
pub async fn reindex_status(
    State(app): State<Arc<App>>,
    caller: Caller,
    Path(id): Path<String>,
) -> Result<Response, FhirError> {
    require_system(&caller)?;
    let job = app
        .store
        .export_job(&id)
        .await?
        .filter(|job| job.kind == JobKind::Reindex)
        .ok_or_else(|| FhirError::not_found("no such reindex job"))?;
    let total = serde_json::from_str::<Request>(&job.request).ok().and_then(|r| r.total);
    let processed =
        job.progress.as_deref().and_then(|p| serde_json::from_str::<Progress>(p).ok()).unwrap_or_default().processed;
    let finished = job
        .result
        .as_deref()
        .and_then(|r| serde_json::from_str::<Finished>(r).ok())
        .and_then(|f| DateTime::<Utc>::from_timestamp_millis(f.finished));
    let progress = match total {
        Some(t) => format!("{processed} of {t} resources"),
        None => format!("{processed} resources"),
    };
    let (status, state) = match job.status {
        JobStatus::Pending | JobStatus::Running => (StatusCode::ACCEPTED, "in-progress".to_owned()),
        JobStatus::Done => (StatusCode::OK, "completed".to_owned()),
        JobStatus::Failed => (StatusCode::OK, format!("failed: {}", job.error.as_deref().unwrap_or("unknown error"))),
    };
    let mut parameter = vec![
        json!({"name": "status", "valueString": state}),
        json!({"name": "processed", "valueInteger": processed}),
        json!({"name": "started", "valueInstant": job.created_at.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}),
    ];
    if let Some(t) = total {
        parameter.push(json!({"name": "total", "valueInteger": t}));
    }
    if let Some(f) = finished {
        parameter
            .push(json!({"name": "finished", "valueInstant": f.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)}));
    }
    let mut resp = fhir_json(status, &json!({"resourceType": "Parameters", "parameter": parameter}));
    if let Ok(v) = HeaderValue::from_str(&progress) {
        resp.headers_mut().insert("x-progress", v);
    }
    Ok(resp.into_response())
}
