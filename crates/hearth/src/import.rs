//! `hearth import`: loads NDJSON files (one resource per line) and Bundles (`transaction` as one
//! transaction, `batch`/`collection` entry by entry) from files or directories, into the
//! configured database directly or into a server over HTTP (`--url`).
//!
//! Shared resources that every Synthea patient file repeats (Organization, Practitioner,
//! Location posted without `ifNoneExist`) get a conditional create on their first identifier,
//! so loading many files does not duplicate them. Failures go to an NDJSON file with reasons.

use std::io::IsTerminal;
use std::path::{Path, PathBuf};
use std::sync::Arc;
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
    bundles: u64,
    created: u64,
    updated: u64,
    existing: u64,
    failed: u64,
}

impl Counts {
    fn resources(&self) -> u64 {
        self.created + self.updated + self.existing + self.failed
    }
}

struct Importer {
    target: Target,
    dedupe: bool,
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

/// Adds `ifNoneExist` on the first identifier to plain POSTs of shared resource types.
fn dedupe_shared(bundle: &mut Value) {
    let Some(entries) = bundle.get_mut("entry").and_then(Value::as_array_mut) else { return };
    for e in entries {
        let ty = e.pointer("/resource/resourceType").and_then(Value::as_str).unwrap_or_default();
        if !SHARED_TYPES.contains(&ty) || e.pointer("/request/method").and_then(Value::as_str) != Some("POST") {
            continue;
        }
        if e.pointer("/request/ifNoneExist").is_some() {
            continue;
        }
        let ident = e.pointer("/resource/identifier/0");
        let (Some(system), Some(value)) = (
            ident.and_then(|i| i.get("system")).and_then(Value::as_str),
            ident.and_then(|i| i.get("value")).and_then(Value::as_str),
        ) else {
            continue;
        };
        let cond = format!("identifier={}%7C{}", query_value(system), query_value(value));
        if let Some(req) = e.get_mut("request").and_then(Value::as_object_mut) {
            req.insert("ifNoneExist".into(), Value::String(cond));
        }
    }
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
        let result = match &self.target {
            Target::Direct(app) => bundle::import_resource(app, resource).await.unwrap_or_else(EntryResult::Failed),
            Target::Http { client, base } => http_resource(client, base, &resource).await,
        };
        match &result {
            EntryResult::Failed(e) => self.fail(file, at, &e.describe()).await?,
            r => self.tally(r),
        }
        Ok(())
    }

    async fn bundle(&mut self, file: &Path, mut body: Value) -> Result<(), String> {
        self.counts.bundles += 1;
        if self.dedupe {
            dedupe_shared(&mut body);
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

/// Runs the import; `Ok(true)` when nothing failed.
pub async fn run(target: Target, paths: &[PathBuf], failures: PathBuf, dedupe: bool) -> Result<bool, String> {
    let files = collect(paths)?;
    let mut imp = Importer {
        target,
        dedupe,
        counts: Counts::default(),
        failures_path: failures,
        failures: None,
        started: Instant::now(),
        last_report: Instant::now(),
        tty: std::io::stderr().is_terminal(),
    };
    for f in &files {
        imp.file(f).await?;
    }
    if let Some(mut w) = imp.failures.take() {
        w.flush().await.map_err(|e| format!("cannot write the failures file: {e}"))?;
    }
    imp.report(true);
    if imp.tty {
        eprintln!();
    }
    if let Target::Direct(app) = &imp.target {
        // A bulk load changes the tables' shape at once: give the planner fresh statistics now
        // rather than when autovacuum next looks (PostgreSQL; nothing to do on SQLite). The data
        // is in either way: a failure here is said, not turned into a failed import (a running
        // server's statistics keeper tries again).
        if let Err(e) = app.store.refresh_statistics(true).await {
            eprintln!("warning: cannot refresh the planner statistics after the import: {e}");
        }
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
    if c.failed > 0 {
        eprintln!("failures and their reasons: {}", imp.failures_path.display());
    }
    Ok(c.failed == 0)
}
