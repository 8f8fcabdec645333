//! The audit trail (issue 7): every FHIR interaction on patient data, every sign-in, sign-out,
//! failed sign-in and 2FA change, and every access denial becomes a FHIR `AuditEvent`.
//!
//! Decisions:
//! - **Where events come from.** FHIR requests pass a middleware that hands the request an
//!   [`AuditSlip`]; the caller extractor fills in who is asking, and the store view of that caller
//!   ([`hearth_store::Guarded`], where data is read and authorized) tells the slip every version
//!   it returned or wrote. After the handler, the slip becomes one event: one request, one
//!   event, naming every patient whose record it touched (a `Patient`, or any resource with a
//!   `"reference":"Patient/…"`), up to [`MAX_ENTITIES`] resources, and the *names* of the search
//!   parameters. Values of search parameters (codes, names) are clinical or identifying, so
//!   they are not recorded; nor is any resource content. Authentication events come from the
//!   auth routes. Requests refused before authentication (`401`) and refusals (`403`) are events
//!   with a failure outcome; a `404` for a record outside the caller's reach looks like any
//!   `404` on purpose, and is recorded like one.
//! - **Queued for a group commit, then indexed in bulk.** A request queues its event for the
//!   writer task, which journals whatever queued while its previous commit ran — the chain
//!   links with the events' stored JSON (`audit_chain`), one conditional multi-row insert per
//!   commit. By default the request is answered once its event is queued: waiting for the
//!   commit too serialised every request behind one writer and its connection thread, and cut
//!   read throughput by two thirds under load (docs/PERFORMANCE.md, "Audit trail"). The price:
//!   a crash or power loss can lose the events of requests answered in the last moments before
//!   it (a graceful stop journals everything first), and the trail fails closed: after a
//!   failed commit every request waits for its own and answers `503` until a commit succeeds.
//!   `[audit] wait_for_commit = true` answers only after the commit, for deployments that need
//!   that guarantee more than throughput. An indexer task then stores journaled events as
//!   searchable `AuditEvent` resources (version, current and index rows, one multi-row insert
//!   per table) in large batches: when thousands are waiting, when the server is quiet, and at
//!   once when anyone reads the audit store. Readers get the store as a [`Trail`], which flushes
//!   the queue through the writer and the indexer before every read, so a read never misses an
//!   event of a request that has been answered. Events a stopped or crashed process left in
//!   the journal are indexed by the next indexer, or by [`verify`].
//! - **Tamper-evident.** Each event is stored as an `AuditEvent` resource (searchable through
//!   `/fhir/AuditEvent` by admins) and appended to `audit_chain` with
//!   `hash = SHA-256(previous hash ‖ "\n" ‖ stored JSON)`, under a lock on the chain head, in the
//!   same transaction (the journal's). `hearth admin verify-audit` recomputes the chain ([`verify`]). The FHIR API
//!   refuses to create, change or delete `AuditEvent`s for everyone (grants, `auth`).
//! - CLI commands that work on the database directly (`hearth import`, `hearth export`) are
//!   operator actions on the machine and are not audited here.

use std::collections::BTreeSet;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, SecondsFormat, Utc};
use hearth_store::{
    Access, AuditLink, Current, EverythingRequest, ExportJob, ExportScan, HistoryPage, HistoryQuery, IndexedEvent,
    JobKind, JobStatus, PoolStats, ResourceStore, SearchPage, SearchQuery, SearchRequest, StoreError, Version, Witness,
};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};
use tokio::sync::{mpsc, oneshot};

use hearth_store_sql::Db;
use hearth_workflow::error::{FhirError, Issue};
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{AuditHook, Caller, Clock, Ctx, Mount, RecordAudit, Workflow};

/// At most this many resources are named in one event (patients are always all named).
pub const MAX_ENTITIES: usize = 50;
/// The hash before the first link.
pub const GENESIS: &str = "0000000000000000000000000000000000000000000000000000000000000000";
/// Events queued beyond this make new requests wait for room (back-pressure, not loss).
const QUEUE: usize = 4096;
/// At most this many events are journaled in one transaction.
const BATCH: usize = 512;
/// The indexer looks at the journal this often. It indexes when [`INDEX_AFTER`] events are
/// waiting, when none arrived during the last look (the server is quiet), and at once when
/// someone reads the trail — large batches, because indexing costs far less per event in bulk
/// (index pages are written once for many events), [`INDEX_BATCH`] events per transaction.
const INDEX_EVERY: Duration = Duration::from_millis(100);
const INDEX_AFTER: usize = 2048;
const INDEX_BATCH: u32 = 1024;

enum Msg {
    /// An event to journal; `done` is told when it is committed (if the request waits).
    Record { id: String, body: String, done: Option<oneshot::Sender<Result<(), String>>> },
    /// A reader of the trail: everything queued before it is journaled, then indexed, then it
    /// is answered.
    Flush(Flush),
}

/// A reader of the trail waiting until everything recorded before is searchable.
type Flush = oneshot::Sender<Result<(), String>>;

/// The queues to the audit writer (journal) and indexer.
pub struct Auditor {
    tx: mpsc::Sender<Msg>,
    rx: Mutex<Option<mpsc::Receiver<Msg>>>,
    flush_tx: mpsc::Sender<Flush>,
    flush_rx: Mutex<Option<mpsc::Receiver<Flush>>>,
    /// Events this process has journaled (a running count the indexer compares).
    journaled: Arc<AtomicUsize>,
    /// Whether this process runs the writer and indexer (a server; command-line tasks do not).
    running: Arc<AtomicBool>,
    /// The last journal commit failed: requests wait for their own commit until one succeeds
    /// (fail closed: they answer `503` while the trail cannot be written).
    failing: AtomicBool,
    clock: Arc<dyn Clock>,
    /// `[audit] wait_for_commit`: every request waits for its event's commit.
    wait_for_commit: bool,
}

impl Auditor {
    pub fn new(clock: Arc<dyn Clock>, wait_for_commit: bool) -> Self {
        let (tx, rx) = mpsc::channel(QUEUE);
        let (flush_tx, flush_rx) = mpsc::channel(QUEUE);
        Auditor {
            tx,
            rx: Mutex::new(Some(rx)),
            flush_tx,
            flush_rx: Mutex::new(Some(flush_rx)),
            journaled: Arc::new(AtomicUsize::new(0)),
            running: Arc::new(AtomicBool::new(false)),
            failing: AtomicBool::new(false),
            clock,
            wait_for_commit,
        }
    }
}

fn take<T>(slot: &Mutex<Option<T>>) -> Option<T> {
    match slot.lock() {
        Ok(mut slot) => slot.take(),
        Err(poisoned) => poisoned.into_inner().take(),
    }
}

impl Auditor {
    /// Whether the last journal commit failed (the trail is failing closed: audited requests
    /// wait for a commit that does not come and answer `503`). For the metrics endpoint.
    pub fn is_failing(&self) -> bool {
        self.failing.load(Ordering::SeqCst)
    }

    /// Records `event`: queues it for the next group commit and, with `[audit] wait_for_commit`
    /// or while the trail is failing, waits until it is committed.
    pub async fn record(&self, event: Value) -> Result<(), String> {
        let id = uuid::Uuid::now_v7().to_string();
        let body = hearth_store::stamp(event, &id, 1, self.clock.now());
        let wait = self.wait_for_commit || self.failing.load(Ordering::SeqCst);
        let (done, committed) = if wait {
            let (done, committed) = oneshot::channel();
            (Some(done), Some(committed))
        } else {
            (None, None)
        };
        let stopped = || "the audit writer has stopped".to_owned();
        self.tx.send(Msg::Record { id, body, done }).await.map_err(|_| stopped())?;
        match committed {
            Some(committed) => committed.await.map_err(|_| stopped())?,
            None => Ok(()),
        }
    }

    /// Waits until every event recorded before the call is journaled and searchable (a no-op
    /// in a process without a writer: a command-line task records nothing).
    pub async fn flush(&self) -> Result<(), StoreError> {
        flush_through(&self.tx, &self.running).await
    }

    /// The audit store as readers see it: indexed up to date before every read.
    pub fn trail(&self, store: Arc<dyn ResourceStore>) -> Trail {
        Trail { inner: store, tx: self.tx.clone(), running: Arc::clone(&self.running) }
    }
}

#[async_trait::async_trait]
impl RecordAudit for Auditor {
    async fn record(&self, event: Value) -> Result<(), String> {
        Auditor::record(self, event).await
    }
}

async fn flush_through(tx: &mpsc::Sender<Msg>, running: &AtomicBool) -> Result<(), StoreError> {
    if !running.load(Ordering::SeqCst) {
        return Ok(());
    }
    let unavailable = |m: String| StoreError::Unavailable(m.into());
    let (done, indexed) = oneshot::channel();
    tx.send(Msg::Flush(done)).await.map_err(|_| unavailable("the audit writer has stopped".into()))?;
    indexed.await.map_err(|_| unavailable("the audit writer has stopped".into()))?.map_err(unavailable)
}

/// The writer task (started by `serve`): journals queued events in batches (group commit) until
/// the queue closes, and passes readers' flushes on to the indexer once what was queued before
/// them is journaled.
pub async fn writer(app: Arc<AuditTrail>) {
    let Some(mut rx) = take(&app.auditor.rx) else { return };
    let mut batch = Vec::with_capacity(BATCH);
    // The chain's last link as this writer last saw it (`None`: not known yet).
    let mut head: Option<(i64, String)> = None;
    while rx.recv_many(&mut batch, BATCH).await > 0 {
        let mut events = Vec::with_capacity(batch.len());
        let mut waiting = Vec::new();
        let mut flushes = Vec::new();
        for msg in batch.drain(..) {
            match msg {
                Msg::Record { id, body, done } => {
                    events.push((id, body));
                    waiting.extend(done);
                }
                Msg::Flush(done) => flushes.push(done),
            }
        }
        let n = events.len();
        let result = if events.is_empty() {
            Ok(())
        } else {
            // One more try, from a freshly read head and after a pause, before this batch's
            // waiting requests are refused: a connection the pool had to replace (say, after an
            // online key rotation) then costs the first attempt only.
            let mut outcome = journal(&app, head.take(), &events).await;
            if let Err(e) = &outcome {
                // Requests wait for their own commit from now on, retry or not.
                app.auditor.failing.store(true, Ordering::SeqCst);
                tracing::warn!(error = %e, events = n, "audit journal failed; trying once more");
                tokio::time::sleep(Duration::from_millis(50)).await;
                outcome = journal(&app, None, &events).await;
            }
            match outcome {
                Ok(last) => {
                    head = Some(last);
                    app.auditor.journaled.fetch_add(n, Ordering::SeqCst);
                    app.auditor.failing.store(false, Ordering::SeqCst);
                    Ok(())
                }
                Err(e) => {
                    // These events are lost (their requests were answered, unless they waited):
                    // said loudly, and from now on requests wait for their own commit.
                    app.auditor.failing.store(true, Ordering::SeqCst);
                    tracing::error!(error = %e, events = n, "cannot write the audit trail");
                    Err(e.to_string())
                }
            }
        };
        for done in waiting {
            let _ = done.send(result.clone());
        }
        for done in flushes {
            if result.is_err() {
                let _ = done.send(result.clone());
            } else if let Err(mpsc::error::SendError(done)) = app.auditor.flush_tx.send(done).await {
                let _ = done.send(Err("the audit indexer has stopped".into()));
            }
        }
    }
}

/// The indexer task (started by `serve`): every [`INDEX_EVERY`] while events were journaled, and
/// at once for a reader, stores journaled events as searchable AuditEvents. Events a stopped or
/// crashed process left in the journal are indexed when the next indexer starts (or by
/// [`verify`]).
pub async fn indexer(app: Arc<AuditTrail>) {
    let Some(mut flushes) = take(&app.auditor.flush_rx) else { return };
    app.auditor.running.store(true, Ordering::SeqCst);
    // Events journaled and not indexed yet (this process's; a previous process's leftovers count
    // as one so that they are indexed at the first quiet moment).
    let mut unindexed = 1usize;
    let mut seen = app.auditor.journaled.load(Ordering::SeqCst);
    loop {
        let mut waiting = Vec::new();
        tokio::select! {
            flush = flushes.recv() => match flush {
                Some(flush) => {
                    waiting.push(flush);
                    while let Ok(flush) = flushes.try_recv() {
                        waiting.push(flush);
                    }
                }
                None => break,
            },
            () = tokio::time::sleep(INDEX_EVERY) => {}
        }
        let journaled = app.auditor.journaled.load(Ordering::SeqCst);
        let arrived = journaled.wrapping_sub(seen);
        seen = journaled;
        unindexed += arrived;
        let quiet = arrived == 0 && unindexed > 0;
        if waiting.is_empty() && unindexed < INDEX_AFTER && !quiet {
            continue;
        }
        let result = index_pending(&app).await.map_err(|e| {
            tracing::error!(error = %e, "cannot index the audit trail");
            e.to_string()
        });
        if result.is_ok() {
            unindexed = 0;
        }
        for done in waiting {
            let _ = done.send(result.clone());
        }
    }
    app.auditor.running.store(false, Ordering::SeqCst);
}

/// Chains `events` after `head` (the link `prev` hashes into, `GENESIS` before the first).
fn chain(head: &(i64, String), events: &[(String, String)], now: DateTime<Utc>) -> Vec<AuditLink> {
    let (mut seq, mut prev) = head.clone();
    events
        .iter()
        .map(|(event_id, body)| {
            seq += 1;
            let hash = link_hash(&prev, body);
            prev.clone_from(&hash);
            AuditLink { seq, event_id: event_id.clone(), hash, last_updated: now, body: body.as_str().into() }
        })
        .collect()
}

/// Journals `events` after the chain's last link and answers the new last link. The common case
/// is one statement, after the head this writer saw last; if the chain has moved on (another
/// process appended) or the head is unknown, the head is read under its lock and the events
/// journaled in that transaction.
async fn journal(
    app: &AuditTrail,
    head: Option<(i64, String)>,
    events: &[(String, String)],
) -> Result<(i64, String), StoreError> {
    let now = app.clock.now();
    let head = match head {
        Some(head) => head,
        None => hearth_store_sql::audit::last_link(&*app.audit_db).await?.unwrap_or_else(|| (0, GENESIS.to_owned())),
    };
    let links = chain(&head, events, now);
    // A failure here (say, another process inserted the same `seq` first on PostgreSQL) is
    // settled by the locked path below.
    if app.audit_store.audit_journal_if_head(&links).await.unwrap_or(false) {
        return Ok(links.last().map_or(head, |l| (l.seq, l.hash.clone())));
    }
    // Under the head's lock. Another process's one-statement journal does not take that lock,
    // so this can still lose a race for the next `seq` (a key violation, never a fork): then
    // it reads the head again.
    let mut attempt = 1;
    loop {
        match journal_locked(app, events, now).await {
            Err(e) if attempt < JOURNAL_ATTEMPTS => {
                tracing::debug!(error = %e, attempt, "audit journal raced another process; retrying");
                attempt += 1;
            }
            done => return done,
        }
    }
}

/// Attempts of the locked journal path before the request is refused (`503`).
const JOURNAL_ATTEMPTS: u32 = 5;

async fn journal_locked(
    app: &AuditTrail,
    events: &[(String, String)],
    now: DateTime<Utc>,
) -> Result<(i64, String), StoreError> {
    let mut tx =
        hearth_store::Guarded::new(Arc::clone(&app.audit_store), hearth_store::Access::system()).begin().await?;
    let head = tx.audit_head().await?.unwrap_or((0, GENESIS.to_owned()));
    let links = chain(&head, events, now);
    tx.audit_journal(&links).await?;
    tx.commit().await?;
    Ok(links.last().map_or(head, |l| (l.seq, l.hash.clone())))
}

/// Stores every journaled event as a searchable AuditEvent, [`INDEX_BATCH`] per transaction.
pub async fn index_pending(app: &AuditTrail) -> Result<(), StoreError> {
    let guarded = hearth_store::Guarded::new(Arc::clone(&app.audit_store), hearth_store::Access::system());
    loop {
        let mut tx = guarded.begin().await?;
        let links = tx.audit_pending(INDEX_BATCH).await?;
        let Some(through) = links.last().map(|l| l.seq) else { return Ok(()) };
        let registry = app.registry();
        let mut events = Vec::with_capacity(links.len());
        for link in links {
            let resource: Value = serde_json::from_str(&link.body)
                .map_err(|e| StoreError::Corrupt(format!("journaled audit event {} is not JSON: {e}", link.seq)))?;
            let version = Version {
                resource_type: hearth_store::AUDIT_TYPE.to_owned(),
                id: link.event_id,
                version_id: 1,
                last_updated: link.last_updated,
                method: hearth_store::Method::Post,
                body: Some(link.body),
            };
            events.push(IndexedEvent { version, index: registry.index(&resource) });
        }
        tx.audit_index(&events, through).await?;
        tx.commit().await?;
    }
}

/// The audit store as everyone but the writer reads it: before each read, whatever is journaled
/// is indexed (through the writer, when this process runs one), so reads never miss an event
/// that a finished request recorded.
pub struct Trail {
    inner: Arc<dyn ResourceStore>,
    tx: mpsc::Sender<Msg>,
    running: Arc<AtomicBool>,
}

impl Trail {
    async fn caught_up(&self) -> Result<(), StoreError> {
        flush_through(&self.tx, &self.running).await
    }
}

#[async_trait::async_trait]
impl ResourceStore for Trail {
    fn backend(&self) -> &'static str {
        self.inner.backend()
    }
    async fn begin(&self) -> Result<Box<dyn hearth_store::StoreTx>, StoreError> {
        self.inner.begin().await
    }
    async fn read(&self, resource_type: &str, id: &str) -> Result<Current, StoreError> {
        self.caught_up().await?;
        self.inner.read(resource_type, id).await
    }
    async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: u64,
    ) -> Result<Option<Version>, StoreError> {
        self.caught_up().await?;
        self.inner.read_version(resource_type, id, version_id).await
    }
    async fn find(&self, access: &Access, query: &SearchQuery, limit: u32) -> Result<Vec<Version>, StoreError> {
        self.caught_up().await?;
        self.inner.find(access, query, limit).await
    }
    async fn in_reach(&self, access: &Access, resource_type: &str, id: &str) -> Result<bool, StoreError> {
        self.caught_up().await?;
        self.inner.in_reach(access, resource_type, id).await
    }
    async fn search(&self, request: &SearchRequest) -> Result<SearchPage, StoreError> {
        self.caught_up().await?;
        self.inner.search(request).await
    }
    async fn explain_search(&self, request: &SearchRequest) -> Result<Vec<String>, StoreError> {
        self.inner.explain_search(request).await
    }
    async fn scan(&self, types: Option<&[String]>, after: i64, limit: u32) -> Result<Vec<(i64, Version)>, StoreError> {
        self.caught_up().await?;
        self.inner.scan(types, after, limit).await
    }
    async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        self.caught_up().await?;
        self.inner.history(query).await
    }
    async fn everything(&self, request: &EverythingRequest) -> Result<SearchPage, StoreError> {
        self.caught_up().await?;
        self.inner.everything(request).await
    }
    async fn export_scan(&self, scan: &ExportScan) -> Result<Vec<(i64, Version)>, StoreError> {
        self.caught_up().await?;
        self.inner.export_scan(scan).await
    }
    async fn export_job_create(
        &self,
        kind: JobKind,
        id: &str,
        request: &str,
        now: DateTime<Utc>,
        transaction_time: DateTime<Utc>,
    ) -> Result<(), StoreError> {
        self.inner.export_job_create(kind, id, request, now, transaction_time).await
    }
    async fn export_job(&self, id: &str) -> Result<Option<ExportJob>, StoreError> {
        self.inner.export_job(id).await
    }
    async fn export_job_outstanding(&self, kind: JobKind) -> Result<bool, StoreError> {
        self.inner.export_job_outstanding(kind).await
    }
    async fn export_job_claim(
        &self,
        kind: JobKind,
        owner: &str,
        now: DateTime<Utc>,
        lease_until: DateTime<Utc>,
    ) -> Result<Option<ExportJob>, StoreError> {
        self.inner.export_job_claim(kind, owner, now, lease_until).await
    }
    async fn export_job_heartbeat(
        &self,
        id: &str,
        owner: &str,
        lease_until: DateTime<Utc>,
        progress: &str,
    ) -> Result<bool, StoreError> {
        self.inner.export_job_heartbeat(id, owner, lease_until, progress).await
    }
    async fn export_job_finish(
        &self,
        id: &str,
        owner: &str,
        status: JobStatus,
        result: Option<&str>,
        error: Option<&str>,
    ) -> Result<bool, StoreError> {
        self.inner.export_job_finish(id, owner, status, result, error).await
    }
    async fn export_job_delete(&self, id: &str) -> Result<bool, StoreError> {
        self.inner.export_job_delete(id).await
    }
    async fn audit_journal_if_head(&self, links: &[AuditLink]) -> Result<bool, StoreError> {
        self.inner.audit_journal_if_head(links).await
    }
    async fn ping(&self) -> Result<(), StoreError> {
        self.inner.ping().await
    }
    fn pool_stats(&self) -> PoolStats {
        self.inner.pool_stats()
    }
    async fn refresh_statistics(&self, force: bool) -> Result<u32, StoreError> {
        self.inner.refresh_statistics(force).await
    }
    async fn close(&self) {
        self.inner.close().await;
    }
}

/// `SHA-256(prev ‖ "\n" ‖ body)` in lowercase hex.
pub fn link_hash(prev: &str, body: &str) -> String {
    let mut h = Sha256::new();
    h.update(prev.as_bytes());
    h.update(b"\n");
    h.update(body.as_bytes());
    h.finalize().iter().map(|b| format!("{b:02x}")).collect()
}

/// What [`verify`] found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Verdict {
    /// Every link matches; the number of events.
    Intact(i64),
    /// The first link that does not match, and why.
    Broken { seq: i64, event_id: String, reason: String },
}

/// Recomputes the whole chain from the stored events (read through the store, so encrypted
/// bodies are checked as written). Events this process has queued are journaled and everything
/// in the journal indexed first; links a running server appends meanwhile are left for the next
/// check.
pub async fn verify(app: &AuditTrail) -> Result<Verdict, StoreError> {
    // In a serving process, first everything this process has recorded so far.
    app.auditor.flush().await?;
    let upto = hearth_store_sql::audit::last_seq(&*app.audit_db).await?;
    index_pending(app).await?;
    let mut prev = GENESIS.to_owned();
    let mut expected_seq = 1;
    while expected_seq <= upto {
        let links = hearth_store_sql::audit::links(&*app.audit_db, expected_seq - 1, 1000).await?;
        if links.is_empty() {
            break;
        }
        for link in links.into_iter().take_while(|l| l.seq <= upto) {
            let broken = |reason: String| Verdict::Broken { seq: link.seq, event_id: link.event_id.clone(), reason };
            if link.seq != expected_seq {
                return Ok(Verdict::Broken {
                    seq: expected_seq,
                    event_id: String::new(),
                    reason: format!("link {expected_seq} is missing (the next one is {})", link.seq),
                });
            }
            let body = match app.audit_store.read("AuditEvent", &link.event_id).await? {
                Current::Found(v) if v.version_id == 1 => v.body.map(|b| b.to_string()),
                Current::Found(_) => return Ok(broken("the AuditEvent has been changed since it was written".into())),
                Current::Deleted(_) | Current::NotFound => None,
            };
            let Some(body) = body else { return Ok(broken("the AuditEvent is gone".into())) };
            if link_hash(&prev, &body) != link.hash {
                return Ok(broken("the stored event or its link hash has been altered".into()));
            }
            prev = link.hash;
            expected_seq += 1;
        }
    }
    let links = expected_seq - 1;
    if links < upto {
        return Ok(Verdict::Broken {
            seq: expected_seq,
            event_id: String::new(),
            reason: format!("link {expected_seq} is missing (the chain ends at {upto})"),
        });
    }
    let outside = hearth_store_sql::audit::events_outside_chain(&*app.audit_db).await?;
    if outside > 0 {
        return Ok(Verdict::Broken {
            seq: links + 1,
            event_id: String::new(),
            reason: format!("{outside} stored AuditEvents are not on the chain"),
        });
    }
    Ok(Verdict::Intact(links))
}

// ---------------------------------------------------------------------------------------------
// Request slips

#[derive(Debug, Clone)]
struct Who {
    account: String,
    role: String,
    fhir_user: Option<String>,
    email: Option<String>,
}

#[derive(Debug, Default)]
struct Seen {
    who: Option<Who>,
    patients: BTreeSet<String>,
    resources: Vec<String>,
    more_resources: usize,
}

/// What one request did, collected while it runs.
#[derive(Debug, Default)]
pub struct AuditSlip {
    seen: Mutex<Seen>,
}

impl AuditSlip {
    fn with<R>(&self, f: impl FnOnce(&mut Seen) -> R) -> R {
        match self.seen.lock() {
            Ok(mut s) => f(&mut s),
            Err(poisoned) => f(&mut poisoned.into_inner()),
        }
    }

    /// Called by the caller extractor once the request is authenticated.
    pub fn identify(&self, caller: &Caller) {
        let who = Who {
            account: caller.account.id.clone(),
            role: caller.role.as_str().to_owned(),
            fhir_user: caller.account.fhir_user.clone(),
            email: caller.account.email.clone(),
        };
        self.with(|s| s.who = Some(who));
    }
}

/// The patients a stored resource is about: itself for a `Patient`, else every
/// `"reference":"Patient/<id>"` in its JSON (stored bodies are compact JSON, so the text scan
/// finds exactly the relative references).
fn patients_of(version: &Version, out: &mut BTreeSet<String>) {
    if version.resource_type == "Patient" {
        out.insert(version.id.clone());
        return;
    }
    let Some(body) = version.body.as_deref() else { return };
    const NEEDLE: &str = "\"reference\":\"Patient/";
    let mut rest = body;
    while let Some(at) = rest.find(NEEDLE) {
        rest = rest.get(at + NEEDLE.len()..).unwrap_or_default();
        let end = rest.find(['"', '/']).unwrap_or(rest.len());
        if let Some(id) = rest.get(..end)
            && hearth_workflow::fhir::valid_id(id)
        {
            out.insert(id.to_owned());
        }
    }
}

impl AuditHook for AuditSlip {
    /// Called by the caller extractor once the request is authenticated.
    fn identify(&self, caller: &Caller) {
        AuditSlip::identify(self, caller);
    }
}

impl Witness for AuditSlip {
    fn saw(&self, version: &Version) {
        self.with(|s| {
            patients_of(version, &mut s.patients);
            let name = format!("{}/{}", version.resource_type, version.id);
            if s.resources.contains(&name) {
                return;
            }
            if s.resources.len() < MAX_ENTITIES {
                s.resources.push(name);
            } else {
                s.more_resources += 1;
            }
        });
    }
}

// ---------------------------------------------------------------------------------------------
// Events

const DCM: &str = "http://dicom.nema.org/resources/ontology/DCM";

fn outcome_of(status: StatusCode) -> &'static str {
    if status.is_server_error() {
        "8"
    } else if status.is_client_error() {
        "4"
    } else {
        "0"
    }
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

fn agent(who: Option<&Who>, ip: &str) -> Value {
    let network = json!({"address": ip, "type": "2"});
    let Some(w) = who else {
        return json!({"requestor": true, "network": network, "who": {"display": "unauthenticated client"}});
    };
    let mut r = serde_json::Map::new();
    if let Some(u) = &w.fhir_user {
        r.insert("reference".into(), json!(u));
    }
    r.insert("identifier".into(), json!({"system": "urn:hearth:account", "value": w.account}));
    if let Some(e) = &w.email {
        r.insert("display".into(), json!(e));
    }
    json!({
        "who": r,
        "role": [{"coding": [{"system": "urn:hearth:role", "code": w.role}], "text": w.role}],
        "requestor": true,
        "network": network,
    })
}

fn source() -> Value {
    json!({
        "observer": {"display": "Hearth"},
        "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4",
                  "display": "Application Server"}],
    })
}

/// The FHIR restful interaction and AuditEvent action of a request on `/fhir…`.
fn interaction(method: &Method, path: &str) -> (&'static str, &'static str) {
    if !path.starts_with("/fhir") {
        // An app endpoint on patient data (consents): the method says what it did.
        return match *method {
            Method::GET => ("read", "R"),
            Method::POST => ("create", "C"),
            Method::PUT | Method::PATCH => ("update", "U"),
            Method::DELETE => ("delete", "D"),
            _ => ("operation", "E"),
        };
    }
    let segs: Vec<&str> = path.trim_start_matches("/fhir").split('/').filter(|s| !s.is_empty()).collect();
    if segs.iter().any(|s| s.starts_with('$')) {
        return ("operation", "E");
    }
    let search = segs.last() == Some(&"_search");
    match *method {
        Method::GET if segs.contains(&"_history") => match segs.len() {
            1 => ("history-system", "R"),
            2 => ("history-type", "R"),
            3 => ("history-instance", "R"),
            _ => ("vread", "R"),
        },
        Method::GET => match segs.len() {
            0 => ("search-system", "E"),
            2 => ("read", "R"),
            _ => ("search-type", "E"),
        },
        Method::POST if segs.is_empty() => ("transaction", "E"),
        Method::POST if search && segs.len() == 1 => ("search-system", "E"),
        Method::POST if search => ("search-type", "E"),
        Method::POST => ("create", "C"),
        Method::PUT => ("update", "U"),
        Method::PATCH => ("patch", "U"),
        Method::DELETE => ("delete", "D"),
        _ => ("operation", "E"),
    }
}

struct RequestFacts {
    method: Method,
    path: String,
    params: Vec<String>,
    ip: String,
}

fn rest_event(facts: &RequestFacts, slip: &AuditSlip, status: StatusCode, now: DateTime<Utc>) -> Value {
    let (subtype, action) = interaction(&facts.method, &facts.path);
    slip.with(|s| {
        let mut entity: Vec<Value> = s
            .patients
            .iter()
            .map(|p| {
                json!({
                    "what": {"reference": format!("Patient/{p}")},
                    "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
                    "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1"},
                })
            })
            .collect();
        for r in s.resources.iter().filter(|r| !r.starts_with("Patient/")) {
            entity.push(json!({
                "what": {"reference": r},
                "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            }));
        }
        let mut notes = Vec::new();
        if !facts.params.is_empty() {
            notes.push(format!("parameters: {}", facts.params.join(",")));
        }
        if s.more_resources > 0 {
            notes.push(format!("{} more resources not listed", s.more_resources));
        }
        let mut target = serde_json::Map::new();
        target.insert(
            "type".into(),
            json!({"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"}),
        );
        target.insert(
            "role".into(),
            json!({"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"}),
        );
        target.insert("name".into(), json!(format!("{} {}", facts.method, facts.path)));
        if !notes.is_empty() {
            target.insert("description".into(), json!(notes.join("; ")));
        }
        entity.push(Value::Object(target));
        json!({
            "resourceType": "AuditEvent",
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest",
                     "display": "RESTful Operation"},
            "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": subtype}],
            "action": action,
            "recorded": instant(now),
            "outcome": outcome_of(status),
            "outcomeDesc": status.as_u16().to_string(),
            "agent": [agent(s.who.as_ref(), &facts.ip)],
            "source": source(),
            "entity": entity,
        })
    })
}

/// The kinds of security events recorded by the auth routes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecurityEvent {
    Login,
    Logout,
    /// Enrolment, confirmation or removal of a second factor, or recovery-code use.
    SecondFactorChanged,
}

/// An authentication event: `account` (when known), the address asked from, and the outcome.
pub fn security_event(
    kind: SecurityEvent,
    account: Option<&hearth_store_sql::identity::AccountRow>,
    ip: &str,
    success: bool,
    detail: &str,
    now: DateTime<Utc>,
) -> Value {
    let (code, display, subtype) = match kind {
        SecurityEvent::Login => ("110114", "User Authentication", Some(("110122", "Login"))),
        SecurityEvent::Logout => ("110114", "User Authentication", Some(("110123", "Logout"))),
        SecurityEvent::SecondFactorChanged => ("110137", "User Security Attributes Changed", None),
    };
    let who = account.map(|a| Who {
        account: a.id.clone(),
        role: a.role.clone(),
        fhir_user: a.fhir_user.clone(),
        email: a.email.clone(),
    });
    let mut e = serde_json::Map::new();
    e.insert("resourceType".into(), json!("AuditEvent"));
    e.insert("type".into(), json!({"system": DCM, "code": code, "display": display}));
    if let Some((c, d)) = subtype {
        e.insert("subtype".into(), json!([{"system": DCM, "code": c, "display": d}]));
    }
    e.insert("action".into(), json!("E"));
    e.insert("recorded".into(), json!(instant(now)));
    e.insert("outcome".into(), json!(if success { "0" } else { "4" }));
    e.insert("outcomeDesc".into(), json!(detail));
    e.insert("agent".into(), json!([agent(who.as_ref(), ip)]));
    e.insert("source".into(), source());
    Value::Object(e)
}

/// Records a security event; a failure to record is logged, not shown to the client (the
/// sign-in itself has already been decided).
pub async fn security(auditor: &Auditor, event: Value) {
    if let Err(e) = auditor.record(event).await {
        tracing::error!(error = %e, "cannot record a security event in the audit trail");
    }
}

/// Middleware on `/fhir` and the app endpoints on patient data (`/api/v1/me/consents`): one event
/// per request (the capability statement and SMART discovery, which hold no one's data, excepted).
pub async fn fhir_layer(State(app): State<Arc<AuditTrail>>, mut req: Request, next: Next) -> Response {
    // Under `nest("/fhir")` the request's URI is the nested remainder; the full path is kept in
    // `OriginalUri`.
    let path = req
        .extensions()
        .get::<axum::extract::OriginalUri>()
        .map_or_else(|| req.uri().path().to_owned(), |u| u.path().to_owned());
    if path == "/fhir/metadata" || path.starts_with("/fhir/.well-known/") || req.method() == Method::OPTIONS {
        return next.run(req).await;
    }
    let params: Vec<String> = {
        let mut names: Vec<String> = hearth_workflow::fhir::pairs(req.uri().query())
            .into_iter()
            .map(|(k, _)| k)
            .filter(|k| !k.starts_with("_cursor"))
            .collect();
        names.sort();
        names.dedup();
        names
    };
    let facts =
        RequestFacts { method: req.method().clone(), path, params, ip: hearth_workflow::client_ip(req.extensions()) };
    let slip = Arc::new(AuditSlip::default());
    req.extensions_mut().insert(Arc::clone(&slip) as Arc<dyn AuditHook>);
    let resp = next.run(req).await;
    let status = resp.status();
    let identified = slip.with(|s| s.who.is_some());
    if !identified && status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        // Refused before anyone was identified for another reason (a malformed request): no
        // data was touched and nobody to name.
        return resp;
    }
    let event = rest_event(&facts, &slip, status, app.clock.now());
    match app.auditor.record(event).await {
        Ok(()) => resp,
        Err(e) => {
            tracing::error!(error = %e, "cannot record a FHIR interaction in the audit trail");
            FhirError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                Issue::error("transient", "the audit trail cannot be written, so nothing is served; try again"),
            )
            .into_response()
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn interactions_are_classified_from_method_and_path() {
        let cases = [
            (Method::GET, "/fhir/Patient/1", "read", "R"),
            (Method::GET, "/fhir/Patient/1/_history/2", "vread", "R"),
            (Method::GET, "/fhir/Patient/1/_history", "history-instance", "R"),
            (Method::GET, "/fhir/Patient/_history", "history-type", "R"),
            (Method::GET, "/fhir/_history", "history-system", "R"),
            (Method::GET, "/fhir/Patient", "search-type", "E"),
            (Method::POST, "/fhir/Patient/_search", "search-type", "E"),
            (Method::GET, "/fhir", "search-system", "E"),
            (Method::GET, "/fhir/Patient/1/Observation", "search-type", "E"),
            (Method::POST, "/fhir", "transaction", "E"),
            (Method::POST, "/fhir/Patient", "create", "C"),
            (Method::PUT, "/fhir/Patient/1", "update", "U"),
            (Method::PATCH, "/fhir/Patient/1", "patch", "U"),
            (Method::DELETE, "/fhir/Patient/1", "delete", "D"),
            (Method::POST, "/api/v1/me/consents", "create", "C"),
            (Method::GET, "/fhir/Patient/1/$everything", "operation", "E"),
            (Method::GET, "/fhir/$export", "operation", "E"),
        ];
        for (m, p, sub, action) in cases {
            assert_eq!(interaction(&m, p), (sub, action), "{m} {p}");
        }
    }

    #[test]
    fn patients_are_found_by_their_relative_references() {
        let v = |t: &str, body: &str| Version {
            resource_type: t.into(),
            id: "x".into(),
            version_id: 1,
            last_updated: Utc::now(),
            method: hearth_store::Method::Post,
            body: Some(body.to_owned().into()),
        };
        let mut out = BTreeSet::new();
        patients_of(
            &v("Observation", r#"{"subject":{"reference":"Patient/a1"},"performer":[{"reference":"Patient/b-2"}]}"#),
            &mut out,
        );
        patients_of(&v("Observation", r#"{"subject":{"reference":"Group/g"}}"#), &mut out);
        patients_of(&v("Patient", r#"{"id":"x"}"#), &mut out);
        assert_eq!(out.into_iter().collect::<Vec<_>>(), ["a1", "b-2", "x"]);
    }

    #[test]
    fn the_chain_hash_covers_the_previous_link_and_the_body() {
        let a = link_hash(GENESIS, "{}");
        assert_eq!(a.len(), 64);
        assert_ne!(a, link_hash(GENESIS, "{ }"));
        assert_ne!(a, link_hash(&a, "{}"));
    }
}

/// The app-API endpoints that record their own outcome (sign-in by password or code).
const SIGN_IN: [&str; 2] = ["/api/v1/auth/login", "/api/v1/auth/otp/verify"];
/// Second-factor endpoints record their outcome once the caller is known (`auth::mfa`).
const SECOND_FACTOR: &str = "/api/v1/auth/totp/";

/// Middleware on the rest of the app API (accounts, SMART, notifications, the access log): every
/// refusal (`401`, `403`) is an event, unless the endpoint records its own outcome.
pub async fn denials_layer(State(app): State<Arc<AuditTrail>>, mut req: Request, next: Next) -> Response {
    let path = req.uri().path().to_owned();
    let facts = RequestFacts {
        method: req.method().clone(),
        path,
        params: Vec::new(),
        ip: hearth_workflow::client_ip(req.extensions()),
    };
    let slip = Arc::new(AuditSlip::default());
    req.extensions_mut().insert(Arc::clone(&slip) as Arc<dyn AuditHook>);
    let resp = next.run(req).await;
    let status = resp.status();
    if status != StatusCode::UNAUTHORIZED && status != StatusCode::FORBIDDEN {
        return resp;
    }
    let identified = slip.with(|s| s.who.is_some());
    if SIGN_IN.contains(&facts.path.as_str()) || (facts.path.starts_with(SECOND_FACTOR) && identified) {
        return resp;
    }
    let event = rest_event(&facts, &slip, status, app.clock.now());
    match app.auditor.record(event).await {
        Ok(()) => resp,
        Err(e) => {
            tracing::error!(error = %e, "cannot record a refusal in the audit trail");
            hearth_workflow::error::ApiError::new(
                StatusCode::SERVICE_UNAVAILABLE,
                "audit_unavailable",
                "the audit trail cannot be written; try again",
            )
            .into_response()
        }
    }
}

// ---------------------------------------------------------------------------------------------
// A patient's view

/// The audit trail's state: the shared context, the queue to the writer, and the trail's own
/// database (the chain).
pub struct AuditTrail {
    ctx: Arc<Ctx>,
    pub auditor: Arc<Auditor>,
    pub audit_db: Arc<dyn Db>,
}

impl AuditTrail {
    pub fn new(ctx: Arc<Ctx>, auditor: Arc<Auditor>, audit_db: Arc<dyn Db>) -> AuditTrail {
        AuditTrail { ctx, auditor, audit_db }
    }
}

impl std::ops::Deref for AuditTrail {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for AuditTrail {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(access_log))]
struct Api;

impl Workflow for AuditTrail {
    /// A patient's access log: refusals audited like the rest of the account API.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            refusals_audited: axum::Router::new()
                .route("/api/v1/me/access-log", axum::routing::get(access_log))
                .with_state(self),
            openapi: <Api as utoipa::OpenApi>::openapi(),
            ..Mount::default()
        }
    }
}

/// One line of a patient's access log: who touched their record, when, how, and the outcome.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AccessLogEntry {
    /// When it happened (RFC 3339).
    #[schema(example = "2026-11-29T10:00:00.000Z")]
    recorded: Option<String>,
    /// The interaction (`read`, `search-type`, `update`, …) or the event's kind.
    #[schema(example = "read")]
    interaction: String,
    /// `C`reate, `R`ead, `U`pdate, `D`elete or `E`xecute.
    #[schema(example = "R")]
    action: Option<String>,
    /// `success` or `failure`.
    #[schema(example = "success")]
    outcome: &'static str,
    /// Who did it.
    by: AccessLogActor,
    /// What of the record was touched, beyond the Patient itself (`Type/id`).
    resources: Vec<String>,
}

/// The person or client behind an access.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AccessLogActor {
    /// Their role (`patient`, `caregiver`, `clinician`, `admin`, or a client).
    #[schema(example = "clinician")]
    role: Option<String>,
    /// Their sign-in name.
    #[schema(example = "dr.rao@example.org")]
    name: Option<String>,
    /// Their FHIR user (`Practitioner/<id>`, …), if any.
    #[serde(rename = "fhirUser")]
    fhir_user: Option<String>,
}

/// A page of the access log.
#[derive(Debug, serde::Serialize, utoipa::ToSchema)]
pub struct AccessLogPage {
    /// Newest first.
    entries: Vec<AccessLogEntry>,
    /// The `cursor` of the next page; `null` on the last.
    next: Option<String>,
}

fn log_entry(event: &Value) -> AccessLogEntry {
    let text = |p: &str| event.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let how = event
        .pointer("/subtype/0/code")
        .and_then(Value::as_str)
        .or_else(|| event.pointer("/type/display").and_then(Value::as_str))
        .unwrap_or("access");
    let resources: Vec<String> = event
        .get("entity")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|e| e.pointer("/what/reference").and_then(Value::as_str))
        .filter(|r| !r.starts_with("Patient/"))
        .map(str::to_owned)
        .collect();
    AccessLogEntry {
        recorded: text("/recorded"),
        interaction: how.to_owned(),
        action: text("/action"),
        outcome: if event.get("outcome").and_then(Value::as_str) == Some("0") { "success" } else { "failure" },
        by: AccessLogActor {
            role: text("/agent/0/role/0/text"),
            name: text("/agent/0/who/display"),
            fhir_user: text("/agent/0/who/reference"),
        },
        resources,
    }
}

#[utoipa::path(get, path = "/api/v1/me/access-log", tag = "accounts",
    params(
        ("count" = Option<u32>, Query, description = "Entries per page, 1–100 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next` value of the previous page"),
    ),
    responses(
        (status = 200, description = "Who accessed the signed-in patient's record, newest first", body = AccessLogPage,
         example = json!({"entries": [{"recorded": "2026-11-29T10:00:00.000Z", "interaction": "read", "action": "R", "outcome": "success", "by": {"role": "clinician", "name": "dr.rao@example.org", "fhirUser": "Practitioner/…"}, "resources": ["Observation/…"]}], "next": null})),
        (status = 400, description = "A bad count, an unknown parameter, or a cursor not made by this endpoint", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_cursor", "message": "the cursor is not valid for this search"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "Not a patient account", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "the access log is for patient accounts"}})),
    ),
    security(("bearer" = [])))]
pub async fn access_log(
    State(app): State<Arc<AuditTrail>>,
    hearth_workflow::ApiCaller(caller): hearth_workflow::ApiCaller,
    axum::extract::RawQuery(raw): axum::extract::RawQuery,
) -> Result<axum::Json<AccessLogPage>, hearth_workflow::error::ApiError> {
    use hearth_workflow::error::ApiError;
    let Some(patient) = caller.own_patient() else {
        return Err(ApiError::new(StatusCode::FORBIDDEN, "forbidden", "the access log is for patient accounts"));
    };
    let mut count = 50u32;
    let mut cursor = None;
    for (k, v) in hearth_workflow::fhir::pairs(raw.as_deref()) {
        match k.as_str() {
            "count" => {
                count = v.parse().ok().filter(|n| (1..=100).contains(n)).ok_or_else(|| {
                    ApiError::new(StatusCode::BAD_REQUEST, "invalid_query", "count must be a number from 1 to 100")
                })?;
            }
            "cursor" => cursor = Some(v),
            _ => {
                return Err(ApiError::new(
                    StatusCode::BAD_REQUEST,
                    "invalid_query",
                    format!("unknown parameter '{k}' (count, cursor)"),
                ));
            }
        }
    }
    let pairs = vec![
        ("patient".to_owned(), format!("Patient/{patient}")),
        ("_sort".to_owned(), "-date".to_owned()),
        ("_count".to_owned(), count.to_string()),
    ];
    let query = app
        .registry()
        .parse_query(&["AuditEvent"], &pairs, hearth_search::Handling::Strict)
        .map_err(|e| ApiError::internal(format!("the access-log query does not parse: {e:?}")))?;
    // The trail is admins' to search; a patient sees the events naming them, through this view.
    let request = hearth_store::SearchRequest {
        query,
        access: hearth_store::Access::system(),
        compartment: None,
        cursor,
        count_total: false,
    };
    let page = app.audit_store.search(&request).await.map_err(|e| match e {
        hearth_store::StoreError::InvalidSearch(_) => {
            ApiError::new(StatusCode::BAD_REQUEST, "invalid_cursor", "the cursor is not valid for this search")
        }
        other => other.into(),
    })?;
    let mut entries = Vec::with_capacity(page.matches.len());
    for v in &page.matches {
        let body: Value = serde_json::from_str(v.body.as_deref().unwrap_or("{}")).map_err(ApiError::internal)?;
        entries.push(log_entry(&body));
    }
    Ok(axum::Json(AccessLogPage { entries, next: page.next }))
}
