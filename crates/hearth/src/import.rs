//! `hearth import`: loads NDJSON files (one resource per line) and Bundles (`transaction` as one
//! transaction, `batch`/`collection` entry by entry) from files or directories, into the
//! configured database directly or into a server over HTTP (`--url`).
//!
//! Shared resources that every Synthea patient file repeats (Organization, Practitioner,
//! Location posted without `ifNoneExist`) get a conditional create on their first identifier,
//! so loading many files does not duplicate them. Failures go to an NDJSON file with reasons.
//!
//! **Importing again never duplicates** (decision): a resource keeps an id that comes from the
//! data itself, so a second load updates what the first created.
//! - NDJSON lines and `collection` entries with an `id` are written to that id (update-as-create).
//! - A Bundle entry that POSTs without `ifNoneExist` and whose `fullUrl` is a `urn:uuid:` (Synthea,
//!   most generators) becomes a PUT to `Type/<that uuid>`; references to the `fullUrl` follow it
//!   (the Bundle code maps a PUT's `fullUrl` to its `Type/id`).
//! - Any other POST with a business identifier (`identifier[0]` with system and value) becomes a
//!   conditional create on it; shared types (above) always do, so two files naming one
//!   Organization under different uuids still make one.
//! - Only a POST with neither (no stable uuid, no identifier) creates a new resource each time;
//!   the summary says how many there were. `--no-dedupe` turns the rewriting off.
//!
//! **Stopping and resuming**: a progress file (`--progress`, default `import-progress.ndjson`)
//! records each finished file (path, size, modification time) as it goes; Ctrl-C (or SIGTERM)
//! lets the current file finish, prints the summary and exits with status 130; running the same
//! command again skips the finished files (`--restart` ignores them) and the file is removed
//! once a run completes. Even without it a re-run would be correct, only slower.
//!
//! Over HTTP (`--url`), a `401` or `403` stops the import at once: every further request would
//! be refused the same way.

use std::collections::HashSet;
use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::{Duration, Instant};

use hearth_server::App;
use hearth_server::fhir::bundle::{self, EntryResult};
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt, BufReader};

/// Types whose plain POSTs become conditional creates on their first identifier.
const SHARED_TYPES: [&str; 3] = ["Organization", "Practitioner", "Location"];

pub enum Target {
    Direct(Arc<App>),
    Http { client: reqwest::Client, base: String },
}

#[derive(Default)]
struct Counts {
    files: u64,
    /// Files skipped because an earlier, interrupted run finished them.
    skipped: u64,
    bundles: u64,
    created: u64,
    updated: u64,
    existing: u64,
    failed: u64,
    /// POSTs with neither a stable uuid nor an identifier: new each time they are imported.
    unkeyed: u64,
}

impl Counts {
    fn resources(&self) -> u64 {
        self.created + self.updated + self.existing + self.failed
    }
}

struct Importer {
    target: Target,
    dedupe: bool,
    /// Set by Ctrl-C / SIGTERM: finish the current file, then stop.
    stop: Arc<AtomicBool>,
    counts: Counts,
    failures_path: PathBuf,
    failures: Option<tokio::io::BufWriter<tokio::fs::File>>,
    started: Instant,
    last_report: Instant,
    tty: bool,
}

/// Every importable file under `paths` (directories recursively, in name order).
fn collect(paths: &[PathBuf]) -> Result<Vec<PathBuf>, String> {
    fn walk(dir: &Path, out: &mut Vec<PathBuf>) -> Result<(), String> {
        let mut entries: Vec<PathBuf> = std::fs::read_dir(dir)
            .map_err(|e| format!("cannot read {}: {e}", dir.display()))?
            .filter_map(|e| e.ok().map(|e| e.path()))
            .collect();
        entries.sort();
        for p in entries {
            if p.is_dir() {
                walk(&p, out)?;
            } else if matches!(p.extension().and_then(|e| e.to_str()), Some("json" | "ndjson")) {
                out.push(p);
            }
        }
        Ok(())
    }
    let mut out = Vec::new();
    for p in paths {
        if p.is_dir() {
            walk(p, &mut out)?;
        } else if p.is_file() {
            out.push(p.clone());
        } else {
            return Err(format!("{} does not exist", p.display()));
        }
    }
    Ok(out)
}

fn is_ndjson(path: &Path) -> bool {
    path.extension().and_then(|e| e.to_str()) == Some("ndjson")
}

/// Percent-encodes a query value (search-escaped first).
fn query_value(v: &str) -> String {
    let escaped = v.replace('\\', "\\\\").replace(',', "\\,").replace('$', "\\$").replace('|', "\\|");
    let mut out = String::with_capacity(escaped.len());
    for b in escaped.bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~' | b':' | b'/') {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
    out
}

/// The id a `urn:uuid:` full URL names, when it is a valid FHIR id.
fn uuid_of(full_url: Option<&str>) -> Option<String> {
    let id = full_url?.strip_prefix("urn:uuid:")?;
    hearth_server::workflow::fhir::valid_id(id).then(|| id.to_owned())
}

/// `identifier=system|value` of a resource's first identifier, escaped for a query.
fn identifier_condition(resource: &Value) -> Option<String> {
    let ident = resource.pointer("/identifier/0");
    let system = ident.and_then(|i| i.get("system")).and_then(Value::as_str)?;
    let value = ident.and_then(|i| i.get("value")).and_then(Value::as_str)?;
    Some(format!("identifier={}%7C{}", query_value(system), query_value(value)))
}

/// Gives every entry of a Bundle a stable target so that importing it again updates instead of
/// duplicating (see the module docs); answers how many entries could not be given one.
fn keyed(bundle: &mut Value) -> u64 {
    let collection = bundle.get("type").and_then(Value::as_str) == Some("collection");
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else { return 0 };
    let mut unkeyed = 0;
    for e in entries {
        let full = e.get("fullUrl").and_then(Value::as_str).map(str::to_owned);
        let ty = e.pointer("/resource/resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
        if collection {
            // Converted to PUT-by-id or POST later: an id from the uuid makes it a PUT.
            if e.pointer("/resource/id").is_none()
                && let Some(id) = uuid_of(full.as_deref())
                && let Some(r) = e.get_mut("resource").and_then(Value::as_object_mut)
            {
                r.insert("id".into(), Value::String(id));
            } else if e.pointer("/resource/id").is_none() {
                unkeyed += 1;
            }
            continue;
        }
        if e.pointer("/request/method").and_then(Value::as_str) != Some("POST")
            || e.pointer("/request/ifNoneExist").is_some()
        {
            continue;
        }
        let resource = e.get("resource").cloned().unwrap_or(Value::Null);
        let condition = identifier_condition(&resource);
        let request = if SHARED_TYPES.contains(&ty.as_str()) && condition.is_some() {
            condition.map(|c| json!({"method": "POST", "url": ty, "ifNoneExist": c}))
        } else if let Some(id) = uuid_of(full.as_deref()) {
            if let Some(r) = e.get_mut("resource").and_then(Value::as_object_mut) {
                r.insert("id".into(), Value::String(id.clone()));
            }
            Some(json!({"method": "PUT", "url": format!("{ty}/{id}")}))
        } else {
            condition.map(|c| json!({"method": "POST", "url": ty, "ifNoneExist": c}))
        };
        match (request, e.as_object_mut()) {
            (Some(request), Some(map)) => {
                map.insert("request".into(), request);
            }
            _ => unkeyed += 1,
        }
    }
    unkeyed
}

/// What one finished file is known by in the progress file.
fn fingerprint(path: &Path) -> Option<String> {
    let meta = std::fs::metadata(path).ok()?;
    let modified = meta.modified().ok()?.duration_since(std::time::UNIX_EPOCH).ok()?.as_nanos();
    let absolute = std::path::absolute(path).ok()?;
    Some(
        json!({"file": absolute.display().to_string(), "size": meta.len(), "modified": modified.to_string()})
            .to_string(),
    )
}

/// The progress file of an interrupted run of the same import (same target and inputs): the
/// files it finished. Anything else (no file, another import, unreadable) starts afresh.
fn finished_before(progress: &Path, header: &str) -> HashSet<String> {
    let Ok(text) = std::fs::read_to_string(progress) else { return HashSet::new() };
    let mut lines = text.lines();
    if lines.next() != Some(header) {
        return HashSet::new();
    }
    lines.map(str::to_owned).collect()
}

impl Importer {
    async fn fail(&mut self, file: &Path, at: Value, reason: &str) -> Result<(), String> {
        self.counts.failed += 1;
        if self.failures.is_none() {
            let f = tokio::fs::File::create(&self.failures_path)
                .await
                .map_err(|e| format!("cannot create {}: {e}", self.failures_path.display()))?;
            self.failures = Some(tokio::io::BufWriter::new(f));
        }
        let line = json!({"file": file.display().to_string(), "at": at, "reason": reason}).to_string() + "\n";
        if let Some(w) = self.failures.as_mut() {
            w.write_all(line.as_bytes()).await.map_err(|e| format!("cannot write the failures file: {e}"))?;
        }
        Ok(())
    }

    fn report(&mut self, force: bool) {
        let every = if self.tty { Duration::from_millis(200) } else { Duration::from_secs(1) };
        if !force && self.last_report.elapsed() < every {
            return;
        }
        self.last_report = Instant::now();
        let secs = self.started.elapsed().as_secs_f64().max(0.001);
        let c = &self.counts;
        let line = format!(
            "import: {} files, {} bundles, {} resources ({} created, {} updated, {} existing, {} failed), {:.0} resources/s",
            c.files,
            c.bundles,
            c.resources(),
            c.created,
            c.updated,
            c.existing,
            c.failed,
            c.resources() as f64 / secs
        );
        if self.tty {
            eprint!("\r{line}\x1b[K");
        } else {
            eprintln!("{line}");
        }
    }

    fn tally(&mut self, r: &EntryResult) {
        match r {
            EntryResult::Created => self.counts.created += 1,
            EntryResult::Updated => self.counts.updated += 1,
            EntryResult::Existing => self.counts.existing += 1,
            EntryResult::Failed(_) => {}
        }
    }

    async fn resource(&mut self, file: &Path, at: Value, resource: Value) -> Result<(), String> {
        if resource.get("id").is_none() {
            self.counts.unkeyed += 1;
        }
        let result = match &self.target {
            Target::Direct(app) => bundle::import_resource(app, resource).await.unwrap_or_else(EntryResult::Failed),
            Target::Http { client, base } => http_resource(client, base, &resource).await,
        };
        match &result {
            EntryResult::Failed(e) => {
                refused(&self.target, e)?;
                self.fail(file, at, &e.describe()).await?;
            }
            r => self.tally(r),
        }
        Ok(())
    }

    async fn bundle(&mut self, file: &Path, mut body: Value) -> Result<(), String> {
        self.counts.bundles += 1;
        if self.dedupe {
            self.counts.unkeyed += keyed(&mut body);
        }
        let entries = body.get("entry").and_then(Value::as_array).map_or(0, Vec::len);
        let results = match &self.target {
            Target::Direct(app) => bundle::import_bundle(app, &body, "urn:hearth:import").await,
            Target::Http { client, base } => http_bundle(client, base, &body).await,
        };
        match results {
            Ok(results) => {
                for (i, r) in results.iter().enumerate() {
                    match r {
                        EntryResult::Failed(e) => self.fail(file, json!({"entry": i}), &e.describe()).await?,
                        r => self.tally(r),
                    }
                }
            }
            Err(e) => {
                refused(&self.target, &e)?;
                // A refused transaction wrote nothing: every entry failed with the same reason.
                let reason = e.describe();
                self.fail(file, json!({"bundle": true}), &reason).await?;
                self.counts.failed += entries.saturating_sub(1) as u64;
            }
        }
        Ok(())
    }

    async fn file(&mut self, path: &Path) -> Result<(), String> {
        self.counts.files += 1;
        if is_ndjson(path) {
            let f = tokio::fs::File::open(path).await.map_err(|e| format!("cannot open {}: {e}", path.display()))?;
            let mut lines = BufReader::new(f).lines();
            let mut n = 0u64;
            loop {
                let line = match lines.next_line().await {
                    Ok(Some(l)) => l,
                    Ok(None) => break,
                    Err(e) => {
                        self.fail(path, json!({"line": n + 1}), &format!("unreadable line: {e}")).await?;
                        break;
                    }
                };
                n += 1;
                if line.trim().is_empty() {
                    continue;
                }
                match serde_json::from_str::<Value>(&line) {
                    Ok(v) => self.resource(path, json!({"line": n}), v).await?,
                    Err(e) => self.fail(path, json!({"line": n}), &format!("not JSON: {e}")).await?,
                }
                self.report(false);
                if self.stop.load(Ordering::SeqCst) {
                    // An NDJSON file is resumed from its start: its lines carry their ids.
                    return Ok(());
                }
            }
        } else {
            let bytes = tokio::fs::read(path).await.map_err(|e| format!("cannot read {}: {e}", path.display()))?;
            match serde_json::from_slice::<Value>(&bytes) {
                Ok(v) if v.get("resourceType").and_then(Value::as_str) == Some("Bundle") => {
                    self.bundle(path, v).await?;
                }
                Ok(v) => self.resource(path, json!({"file": true}), v).await?,
                Err(e) => self.fail(path, json!({"file": true}), &format!("not JSON: {e}")).await?,
            }
        }
        self.report(false);
        Ok(())
    }
}

/// Over HTTP, a refusal of the token stops the import: every further request would be refused.
fn refused(target: &Target, e: &hearth_server::error::FhirError) -> Result<(), String> {
    let status = e.status.as_u16();
    if matches!(target, Target::Http { .. }) && matches!(status, 401 | 403) {
        return Err(format!(
            "the server refused the request ({}); check --token (an access token of an account allowed to write \
             what is imported; tokens expire after 15 minutes). Stopped: nothing more was sent",
            e.describe()
        ));
    }
    Ok(())
}

fn error_from_outcome(status: u16, text: &str) -> hearth_server::error::FhirError {
    let diagnostics = serde_json::from_str::<Value>(text)
        .ok()
        .and_then(|v| {
            v.get("issue").and_then(Value::as_array).map(|issues| {
                issues
                    .iter()
                    .filter_map(|i| i.get("diagnostics").and_then(Value::as_str))
                    .collect::<Vec<_>>()
                    .join("; ")
            })
        })
        .unwrap_or_else(|| format!("HTTP {status}"));
    let code = axum_status(status);
    hearth_server::error::FhirError::new(code, hearth_server::error::Issue::error("exception", diagnostics))
}

fn axum_status(status: u16) -> hearth_server::error::StatusCode {
    hearth_server::error::StatusCode::from_u16(status).unwrap_or(hearth_server::error::StatusCode::BAD_GATEWAY)
}

async fn http_resource(client: &reqwest::Client, base: &str, resource: &Value) -> EntryResult {
    let ty = resource.get("resourceType").and_then(Value::as_str).unwrap_or_default();
    let req = match resource.get("id").and_then(Value::as_str) {
        Some(id) => client.put(format!("{base}/{ty}/{id}")),
        None => client.post(format!("{base}/{ty}")),
    };
    let sent = req.header("content-type", "application/fhir+json").body(resource.to_string()).send().await;
    match sent {
        Ok(r) => {
            let status = r.status().as_u16();
            match status {
                201 => EntryResult::Created,
                200 => EntryResult::Updated,
                _ => EntryResult::Failed(error_from_outcome(status, &r.text().await.unwrap_or_default())),
            }
        }
        Err(e) => EntryResult::Failed(error_from_outcome(502, &format!("request failed: {e}"))),
    }
}

async fn http_bundle(
    client: &reqwest::Client,
    base: &str,
    body: &Value,
) -> Result<Vec<EntryResult>, hearth_server::error::FhirError> {
    let mut body = body.clone();
    if body.get("type").and_then(Value::as_str) == Some("collection")
        && let Some(entries) = body.get_mut("entry").and_then(Value::as_array_mut)
    {
        for e in entries.iter_mut() {
            let ty = e.pointer("/resource/resourceType").and_then(Value::as_str).unwrap_or_default().to_owned();
            let request = match e.pointer("/resource/id").and_then(Value::as_str) {
                Some(id) => json!({"method": "PUT", "url": format!("{ty}/{id}")}),
                None => json!({"method": "POST", "url": ty}),
            };
            if let Some(map) = e.as_object_mut() {
                map.insert("request".into(), request);
            }
        }
        if let Some(map) = body.as_object_mut() {
            map.insert("type".into(), json!("batch"));
        }
    }
    let r = client
        .post(base.to_owned())
        .header("content-type", "application/fhir+json")
        .header("prefer", "return=minimal")
        .body(body.to_string())
        .send()
        .await
        .map_err(|e| error_from_outcome(502, &format!("request failed: {e}")))?;
    let status = r.status().as_u16();
    let text = r.text().await.unwrap_or_default();
    if status != 200 {
        return Err(error_from_outcome(status, &text));
    }
    let response: Value = serde_json::from_str(&text).map_err(|_| error_from_outcome(502, "response is not JSON"))?;
    let methods: Vec<String> = body
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .map(|e| e.pointer("/request/method").and_then(Value::as_str).unwrap_or_default().to_owned())
        .collect();
    Ok(response
        .get("entry")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .enumerate()
        .map(|(i, e)| {
            let status = e.pointer("/response/status").and_then(Value::as_str).unwrap_or_default();
            let code: u16 = status.split(' ').next().and_then(|s| s.parse().ok()).unwrap_or(0);
            match code {
                201 => EntryResult::Created,
                200 if methods.get(i).is_some_and(|m| m == "POST") => EntryResult::Existing,
                200..=299 => EntryResult::Updated,
                _ => EntryResult::Failed(error_from_outcome(
                    code,
                    &e.pointer("/response/outcome").map(Value::to_string).unwrap_or_default(),
                )),
            }
        })
        .collect())
}

/// How a run ended.
pub enum Outcome {
    /// Every file was imported and nothing failed.
    Done,
    /// Every file was imported; some resources failed (see the failures file).
    Failures,
    /// Stopped by a signal; running the same command again resumes.
    Interrupted,
}

/// Runs the import. `progress` is the progress file; `restart` ignores an earlier run's.
pub async fn run(
    target: Target,
    paths: &[PathBuf],
    failures: PathBuf,
    dedupe: bool,
    progress: PathBuf,
    restart: bool,
) -> Result<Outcome, String> {
    let files = collect(paths)?;
    let stop = Arc::new(AtomicBool::new(false));
    let watcher = tokio::spawn(stop_on_signal(Arc::clone(&stop)));
    let destination = match &target {
        Target::Direct(app) => format!("database:{}", crate::describe_database(&app.config)),
        Target::Http { base, .. } => format!("url:{base}"),
    };
    let inputs: Vec<String> =
        paths.iter().map(|p| std::path::absolute(p).unwrap_or_else(|_| p.clone()).display().to_string()).collect();
    let header = json!({"hearth-import": 1, "to": destination, "paths": inputs, "dedupe": dedupe}).to_string();
    let done = if restart { HashSet::new() } else { finished_before(&progress, &header) };
    let mut imp = Importer {
        target,
        dedupe,
        stop: Arc::clone(&stop),
        counts: Counts::default(),
        failures_path: failures,
        failures: None,
        started: Instant::now(),
        last_report: Instant::now(),
        tty: std::io::stderr().is_terminal(),
    };
    if !done.is_empty() {
        eprintln!(
            "import: resuming an interrupted run ({} files finished then are skipped; --restart imports everything again)",
            done.len()
        );
    }
    let mut log = open_progress(&progress, &header, &done).await?;
    let mut interrupted = false;
    let mut finished = 0usize;
    for f in &files {
        if stop.load(Ordering::SeqCst) {
            interrupted = true;
            break;
        }
        let print = fingerprint(f);
        if print.as_ref().is_some_and(|p| done.contains(p)) {
            imp.counts.skipped += 1;
            finished += 1;
            continue;
        }
        let result = imp.file(f).await;
        if let Err(e) = result {
            summary(&mut imp).await?;
            return Err(e);
        }
        if stop.load(Ordering::SeqCst) && is_ndjson(f) {
            // Stopped inside an NDJSON file: it is not finished.
            interrupted = true;
            break;
        }
        finished += 1;
        if let Some(p) = print {
            log.write_all(format!("{p}\n").as_bytes()).await.map_err(|e| progress_error(&progress, &e))?;
            log.flush().await.map_err(|e| progress_error(&progress, &e))?;
        }
    }
    watcher.abort();
    drop(log);
    if !interrupted {
        // A finished run leaves nothing to resume: the next run of the same command imports
        // everything again (updating what is there).
        let _ = tokio::fs::remove_file(&progress).await;
    }
    if !interrupted && let Target::Direct(app) = &imp.target {
        // A bulk load changes the tables' shape at once: give the planner fresh statistics now
        // rather than when autovacuum next looks (PostgreSQL; nothing to do on SQLite). The data
        // is in either way: a failure here is said, not turned into a failed import (a running
        // server's statistics keeper tries again).
        if let Err(e) = app.store.refresh_statistics(true).await {
            eprintln!("warning: cannot refresh the planner statistics after the import: {e}");
        }
    }
    summary(&mut imp).await?;
    if interrupted {
        eprintln!(
            "import interrupted: {} of {} files finished; run the same command again to resume ({})",
            finished,
            files.len(),
            progress.display()
        );
        return Ok(Outcome::Interrupted);
    }
    Ok(if imp.counts.failed == 0 { Outcome::Done } else { Outcome::Failures })
}

fn progress_error(progress: &Path, e: &std::io::Error) -> String {
    format!("cannot write the progress file {}: {e}", progress.display())
}

/// The progress file, rewritten with `header` and the files already finished.
async fn open_progress(
    progress: &Path,
    header: &str,
    done: &HashSet<String>,
) -> Result<tokio::io::BufWriter<tokio::fs::File>, String> {
    let f = tokio::fs::File::create(progress).await.map_err(|e| progress_error(progress, &e))?;
    let mut w = tokio::io::BufWriter::new(f);
    let mut text = format!("{header}\n");
    for line in done {
        text.push_str(line);
        text.push('\n');
    }
    w.write_all(text.as_bytes()).await.map_err(|e| progress_error(progress, &e))?;
    w.flush().await.map_err(|e| progress_error(progress, &e))?;
    Ok(w)
}

/// Sets `stop` on Ctrl-C or SIGTERM; a second Ctrl-C leaves at once.
async fn stop_on_signal(stop: Arc<AtomicBool>) {
    #[cfg(unix)]
    let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()).ok();
    loop {
        #[cfg(unix)]
        let terminated = async {
            match term.as_mut() {
                Some(t) => {
                    t.recv().await;
                }
                None => std::future::pending::<()>().await,
            }
        };
        #[cfg(not(unix))]
        let terminated = std::future::pending::<()>();
        tokio::select! {
            r = tokio::signal::ctrl_c() => if r.is_err() { return },
            () = terminated => {}
        }
        if stop.swap(true, Ordering::SeqCst) {
            eprintln!("\nimport: stopped without finishing the current file");
            std::process::exit(130);
        }
        eprintln!("\nimport: stopping after the current file (Ctrl-C again to stop at once)");
    }
}

async fn summary(imp: &mut Importer) -> Result<(), String> {
    if let Some(mut w) = imp.failures.take() {
        w.flush().await.map_err(|e| format!("cannot write the failures file: {e}"))?;
    }
    imp.report(true);
    if imp.tty {
        eprintln!();
    }
    let secs = imp.started.elapsed().as_secs_f64();
    let c = &imp.counts;
    eprintln!(
        "import done: {} files, {} bundles; {} created, {} updated, {} already present (conditional create), {} failed; {} resources in {:.1} s ({:.0} resources/s)",
        c.files,
        c.bundles,
        c.created,
        c.updated,
        c.existing,
        c.failed,
        c.resources(),
        secs,
        c.resources() as f64 / secs.max(0.001)
    );
    if c.skipped > 0 {
        eprintln!("{} files were skipped: an earlier run had finished them", c.skipped);
    }
    if c.unkeyed > 0 {
        eprintln!(
            "note: {} resources had neither an id, a urn:uuid fullUrl nor an identifier; importing them again would create them again",
            c.unkeyed
        );
    }
    if c.failed > 0 {
        eprintln!("failures and their reasons: {}", imp.failures_path.display());
    }
    Ok(())
}
