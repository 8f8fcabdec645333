//! Crash consistency (issue 26, item 3). The real `hearth` binary runs four workloads at once —
//! FHIR ingest (single PUTs and three-entry transactions), booking (patients racing for a
//! practitioner's slots), staff messages delivered by e-mail to a real local SMTP peer, and the
//! audit trail every request writes — and is killed with SIGKILL at a random moment, again and
//! again. After every restart:
//! - every write that was acknowledged (a `2xx` answer reached the client) is there;
//! - no transaction is half-applied: each batch's three Observations are all there or none is,
//!   whether or not its answer arrived;
//! - no slot holds two booked appointments, and every acknowledged booking is booked;
//! - the audit chain verifies (`hearth admin verify-audit`), and (with
//!   `HEARTH_AUDIT_WAIT_FOR_COMMIT`) every acknowledged write has its audit event.
//!
//! At the end every acknowledged staff message has reached the SMTP peer. Delivery is at least
//! once: a kill between the SMTP server's acceptance and the outbox recording it sends that
//! message again after the restart, with the same `Message-ID` (the outbox id), so a receiver
//! can tell. The test requires every acknowledged message delivered, never two different
//! `Message-ID`s for one message, and at most one outbox claim's worth of repeats per kill.
//!
//! The number of kills is `HEARTH_CRASH_KILLS` (10 by default, in the README's test command;
//! `scripts/prove` runs at least 100) and the moments come from a seeded generator:
//! `HEARTH_CRASH_SEED=<n>` replays a run, `random` explores. Runs on SQLite, and on PostgreSQL in
//! the PostgreSQL pass (there the server process is killed, not PostgreSQL itself).

use std::collections::{BTreeMap, BTreeSet};
use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};

use crate::common::Rng;
use crate::notify_peers::SmtpServer;
use crate::process::{Proc, command, kill9, sigterm, start, wait_exit};

const PASSWORD: &str = "quartz-harbour-violin-meadow-58";
const PATIENTS: usize = 4;

#[derive(Default)]
struct Ledger {
    /// Patient ids whose PUT was answered 201.
    puts: Vec<String>,
    /// Transaction batches answered 200, and every batch sent.
    batches_acked: BTreeSet<String>,
    batches_sent: BTreeSet<String>,
    /// Appointment ids answered 201, with their start.
    bookings: Vec<(String, String)>,
    /// Staff message titles answered 202.
    messages: Vec<String>,
}

type Shared = Arc<Mutex<Ledger>>;

async fn send(req: reqwest::RequestBuilder) -> Option<(u16, Value)> {
    let r = req.send().await.ok()?;
    let status = r.status().as_u16();
    let text = r.text().await.ok()?;
    Some((status, serde_json::from_str(&text).unwrap_or(Value::Null)))
}

fn fhir(c: &reqwest::Client, method: reqwest::Method, url: String, body: &Value) -> reqwest::RequestBuilder {
    c.request(method, url).header("content-type", "application/fhir+json").body(body.to_string())
}

fn app(c: &reqwest::Client, url: String, body: &Value) -> reqwest::RequestBuilder {
    c.post(url).header("content-type", "application/json").body(body.to_string())
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// Signs a patient in (a new process answers with the keys the database keeps); `None` when the
/// process is gone.
async fn patient_client(base: &str, i: usize) -> Option<reqwest::Client> {
    let login = json!({"email": format!("crash-pat{i}@example.org"), "password": PASSWORD});
    match send(app(&reqwest::Client::new(), format!("{base}/api/v1/auth/login"), &login)).await? {
        (200, v) => Some(bearer(v["access_token"].as_str().unwrap())),
        (s, v) => panic!("login of crash-pat{i}: {s} {v}"),
    }
}

/// The first start: a practitioner with hours every day, the patients with accounts, and the
/// anchor patient the transactions' Observations are about. Returns the bookable starts.
async fn set_up(p: &Proc) -> Vec<String> {
    let c = p.client();
    for (rt, body) in [
        (
            "Practitioner/crash-doc",
            json!({"resourceType": "Practitioner", "id": "crash-doc", "name": [{"family": "Crash"}]}),
        ),
        ("Patient/crash-anchor", json!({"resourceType": "Patient", "id": "crash-anchor", "gender": "other"})),
    ] {
        let (s, v) = send(fhir(&c, reqwest::Method::PUT, format!("{}/fhir/{rt}", p.base), &body)).await.unwrap();
        assert_eq!(s, 201, "{v}");
    }
    for i in 0..PATIENTS {
        let id = format!("crash-pat{i}");
        let body =
            json!({"resourceType": "Patient", "id": id, "name": [{"family": "Crash", "given": [format!("P{i}")]}]});
        let (s, v) =
            send(fhir(&c, reqwest::Method::PUT, format!("{}/fhir/Patient/{id}", p.base), &body)).await.unwrap();
        assert_eq!(s, 201, "{v}");
        let account = json!({"email": format!("{id}@example.org"), "password": PASSWORD, "role": "patient",
            "fhirUser": format!("Patient/{id}")});
        let (s, v) = send(app(&c, format!("{}/api/v1/admin/accounts", p.base), &account)).await.unwrap();
        assert_eq!(s, 201, "{v} {account}");
    }
    let hours = json!({"practitioner": "crash-doc", "timeZone": "UTC",
        "hours": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": "09:00", "end": "17:00"}],
        "types": [{"code": "ROUTINE", "minutes": 30, "buffer": 0}],
        "rules": {"maxDaysAhead": 365, "minNoticeMinutes": 0}});
    let (s, v) = send(app(&c, format!("{}/api/v1/schedules", p.base), &hours)).await.unwrap();
    assert_eq!(s, 201, "{v}");
    let from = (chrono::Utc::now() + chrono::TimeDelta::days(1)).format("%Y-%m-%dT00:00:00Z");
    let to = (chrono::Utc::now() + chrono::TimeDelta::days(8)).format("%Y-%m-%dT00:00:00Z");
    let url = format!(
        "{}/api/v1/appointments/slots/available?practitioner=crash-doc&from={from}&to={to}&type=ROUTINE",
        p.base
    );
    let (s, v) = send(c.get(url)).await.unwrap();
    assert_eq!(s, 200, "{v}");
    let starts: Vec<String> =
        v["slots"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap().into()).collect();
    assert!(starts.len() >= 100, "{v}");
    starts
}

/// One round of the four workloads against `p`, until the process dies under them (or each has
/// done its share). `round` keeps ids unique across rounds.
async fn workloads(
    base: String,
    admin: reqwest::Client,
    round: usize,
    seed: u64,
    starts: Arc<Vec<String>>,
    ledger: Shared,
) {
    let mut tasks = tokio::task::JoinSet::new();
    {
        let (base, c, l) = (base.clone(), admin.clone(), ledger.clone());
        tasks.spawn(async move {
            for i in 0..200 {
                let id = format!("crash-w{round}-{i}");
                let body = json!({"resourceType": "Patient", "id": id, "gender": "female",
                    "identifier": [{"system": "urn:hearth-crash", "value": id}]});
                match send(fhir(&c, reqwest::Method::PUT, format!("{base}/fhir/Patient/{id}"), &body)).await {
                    Some((201, _)) => l.lock().unwrap().puts.push(id),
                    Some((s, v)) => panic!("PUT {id}: {s} {v}"),
                    None => return,
                }
            }
        });
    }
    {
        let (base, c, l) = (base.clone(), admin.clone(), ledger.clone());
        tasks.spawn(async move {
            for i in 0..200 {
                let batch = format!("batch-{round}-{i}");
                let entry = |n: usize| {
                    json!({"request": {"method": "POST", "url": "Observation"}, "resource": {
                        "resourceType": "Observation", "status": "final",
                        "code": {"coding": [{"system": "urn:hearth-crash", "code": batch}]},
                        "subject": {"reference": "Patient/crash-anchor"},
                        "valueQuantity": {"value": n, "unit": "1", "system": "http://unitsofmeasure.org", "code": "1"}}})
                };
                let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [entry(1), entry(2), entry(3)]});
                l.lock().unwrap().batches_sent.insert(batch.clone());
                match send(fhir(&c, reqwest::Method::POST, format!("{base}/fhir"), &bundle)).await {
                    Some((200, _)) => {
                        l.lock().unwrap().batches_acked.insert(batch);
                    }
                    Some((s, v)) => panic!("transaction {batch}: {s} {v}"),
                    None => return,
                }
            }
        });
    }
    for n in 0..PATIENTS {
        let (base, l, starts) = (base.clone(), ledger.clone(), starts.clone());
        let mut rng = Rng(seed ^ ((n as u64 + 1) << 32));
        tasks.spawn(async move {
            let Some(c) = patient_client(&base, n).await else { return };
            for _ in 0..3 {
                let start = rng.pick(&starts).clone();
                let body = json!({"practitioner": "crash-doc", "start": start, "type": "ROUTINE"});
                match send(app(&c, format!("{base}/api/v1/appointments"), &body)).await {
                    Some((201, v)) => l.lock().unwrap().bookings.push((v["id"].as_str().unwrap().to_owned(), start)),
                    Some((409, _)) => {}
                    Some((s, v)) => panic!("booking {start}: {s} {v}"),
                    None => return,
                }
            }
        });
    }
    {
        let (c, l) = (admin.clone(), ledger.clone());
        tasks.spawn(async move {
            for i in 0..100 {
                let title = format!("crash message [{round}-{i}]");
                let body = json!({"to": {"patient": "crash-pat0"}, "include_caregivers": false, "category": "announcement",
                    "title": title, "message": "A message sent while the server may be killed.", "channels": ["email"]});
                let req = app(&c, format!("{base}/api/v1/notifications/send"), &body)
                    .header("idempotency-key", format!("crash-{round}-{i}"));
                match send(req).await {
                    Some((202, _)) => l.lock().unwrap().messages.push(title),
                    Some((s, v)) => panic!("send {title}: {s} {v}"),
                    None => return,
                }
            }
        });
    }
    while let Some(r) = tasks.join_next().await {
        r.unwrap();
    }
}

async fn verify_audit(dir: &Path, env: &[(&str, &str)]) {
    let out = command(dir, env, &["admin", "verify-audit"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("intact"), "{text}{}", String::from_utf8_lossy(&out.stderr));
}

/// Every Observation about the anchor, counted per batch code (following the search's pages).
async fn batch_counts(p: &Proc) -> BTreeMap<String, usize> {
    let c = p.client();
    let mut counts = BTreeMap::new();
    let mut url = Some(format!("{}/fhir/Observation?subject=Patient/crash-anchor&_count=500&_elements=code", p.base));
    while let Some(u) = url.take() {
        let (s, v) = send(c.get(u)).await.unwrap();
        assert_eq!(s, 200, "{v}");
        for e in v["entry"].as_array().into_iter().flatten() {
            let code = e["resource"]["code"]["coding"][0]["code"].as_str().unwrap().to_owned();
            *counts.entry(code).or_insert(0) += 1;
        }
        url = v["link"]
            .as_array()
            .unwrap()
            .iter()
            .find(|l| l["relation"] == "next")
            .map(|l| l["url"].as_str().unwrap().into());
    }
    counts
}

/// Every write in `ids` is there and has its audit event (eight readers at once).
async fn check_writes(p: &Proc, ids: &[String]) {
    let mut checks = tokio::task::JoinSet::new();
    for chunk in ids.chunks(ids.len().div_ceil(8).max(1)) {
        let (c, base, chunk) = (p.client(), p.base.clone(), chunk.to_vec());
        checks.spawn(async move {
            for id in chunk {
                let (s, _) = send(c.get(format!("{base}/fhir/Patient/{id}"))).await.unwrap();
                assert_eq!(s, 200, "acknowledged Patient/{id} lost");
                let url = format!("{base}/fhir/AuditEvent?patient=Patient/{id}&_summary=count");
                let (s, v) = send(c.get(url)).await.unwrap();
                assert_eq!(s, 200, "{v}");
                assert!(v["total"].as_u64().unwrap() >= 1, "no audit event for the acknowledged write of Patient/{id}");
            }
        });
    }
    while let Some(r) = checks.join_next().await {
        r.unwrap();
    }
}

/// The checks after a restart: acknowledged writes present, transactions whole, no double
/// booking, an intact audit chain.
async fn check(p: &Proc, round: usize, ledger: &Shared, dir: &Path, env: &[(&str, &str)]) {
    let (puts, acked, sent, bookings) = {
        let l = ledger.lock().unwrap();
        // This round's writes (the earlier ones were checked after their own restart; all of them
        // again at the end).
        let round: Vec<String> =
            l.puts.iter().filter(|id| id.starts_with(&format!("crash-w{round}-"))).cloned().collect();
        (round, l.batches_acked.clone(), l.batches_sent.clone(), l.bookings.clone())
    };
    check_writes(p, &puts).await;
    let counts = batch_counts(p).await;
    for (batch, n) in &counts {
        assert_eq!(*n, 3, "transaction {batch} half-applied: {n} of 3 Observations");
        assert!(sent.contains(batch), "an Observation of a batch never sent: {batch}");
    }
    for batch in &acked {
        assert!(counts.contains_key(batch), "acknowledged transaction {batch} lost");
    }
    let c = p.client();
    let (s, v) = send(c.get(format!("{}/api/v1/appointments?practitioner=crash-doc", p.base))).await.unwrap();
    assert_eq!(s, 200, "{v}");
    let booked: Vec<&Value> =
        v["appointments"].as_array().unwrap().iter().filter(|a| a["status"] == "booked").collect();
    let starts: BTreeSet<&str> = booked.iter().map(|a| a["start"].as_str().unwrap()).collect();
    assert_eq!(starts.len(), booked.len(), "a slot holds two booked appointments: {booked:?}");
    let ids: BTreeSet<&str> = booked.iter().map(|a| a["id"].as_str().unwrap()).collect();
    for (id, start) in &bookings {
        assert!(ids.contains(id.as_str()), "acknowledged booking {id} at {start} lost");
    }
    verify_audit(dir, env).await;
}

fn message_id(mail: &str) -> Option<String> {
    mail.lines()
        .find(|l| l.to_ascii_lowercase().starts_with("message-id:"))
        .map(|l| l.split_once(':').map(|(_, v)| v.trim().to_owned()).unwrap_or_default())
}

#[tokio::test]
async fn acknowledged_work_survives_sigkill_at_random_moments() {
    let kills: usize = std::env::var("HEARTH_CRASH_KILLS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let seed: u64 = match std::env::var("HEARTH_CRASH_SEED").ok().as_deref() {
        Some("random") => chrono::Utc::now().timestamp_micros() as u64 | 1,
        Some(n) => n.parse().expect("HEARTH_CRASH_SEED is a number or `random`"),
        None => 0x5eed_c4a5_0000_0026,
    };
    let pg = crate::common::fresh_postgres_database().await;
    let smtp = SmtpServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("hearth.toml");
    std::fs::write(
        &config,
        format!(
            "[notify]\npoll_interval_ms = 100\nlease_secs = 3\nsend_timeout_ms = 2000\n\n[notify.email]\nhost = \"127.0.0.1\"\nport = {}\nsecurity = \"none\"\n\
             from = \"Hearth <no-reply@example.org>\"\n",
            smtp.port
        ),
    )
    .unwrap();
    let config = config.to_str().unwrap().to_owned();
    let mut env = vec![
        ("HEARTH_CONFIG", config.as_str()),
        ("HEARTH_AUDIT_WAIT_FOR_COMMIT", "true"),
        ("HEARTH_AUTH_API_REQUESTS_PER_MINUTE", "1000000"),
        ("HEARTH_AUTH_API_BURST", "1000000"),
        ("HEARTH_AUTH_AUTH_ATTEMPTS_PER_MINUTE", "100000"),
    ];
    if let Some(url) = &pg {
        env.push(("HEARTH_DATABASE_URL", url.as_str()));
    }
    let mut rng = Rng(seed);
    let ledger: Shared = Arc::default();
    let t_all = std::time::Instant::now();
    let mut p = start(dir.path(), &env).await;
    let starts = Arc::new(set_up(&p).await);
    for round in 0..kills {
        let delay = Duration::from_millis(50 + rng.next() % 1500);
        let mut work =
            tokio::spawn(workloads(p.base.clone(), p.client(), round, rng.next(), starts.clone(), ledger.clone()));
        // Kill at the moment, whatever is in flight; then let the workloads see the dead socket.
        let done = tokio::select! {
            r = &mut work => {
                r.unwrap();
                true
            }
            () = tokio::time::sleep(delay) => false,
        };
        kill9(&mut p).await;
        if !done {
            work.await.unwrap();
        }
        p = start(dir.path(), &env).await;
        check(&p, round, &ledger, dir.path(), &env).await;
    }
    let (puts, messages) = {
        let l = ledger.lock().unwrap();
        (l.puts.clone(), l.messages.clone())
    };
    check_writes(&p, &puts).await;
    // Every acknowledged message arrives; one Message-ID each; repeats bounded by the kills.
    let mut by_title: BTreeMap<String, Vec<String>> = BTreeMap::new();
    for _ in 0..600 {
        by_title.clear();
        for m in smtp.mails.lock().unwrap().iter() {
            if let Some(title) = messages.iter().find(|t| m.data.contains(t.as_str())) {
                by_title.entry(title.clone()).or_default().push(message_id(&m.data).unwrap_or_default());
            }
        }
        if messages.iter().all(|t| by_title.contains_key(t)) {
            break;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    let lost: Vec<&String> = messages.iter().filter(|t| !by_title.contains_key(*t)).collect();
    assert!(lost.is_empty(), "acknowledged messages never delivered: {lost:?}");
    let mut repeats = 0;
    for (title, ids) in &by_title {
        let distinct: BTreeSet<&String> = ids.iter().collect();
        assert_eq!(distinct.len(), 1, "{title} sent as two different messages: {ids:?}");
        repeats += ids.len() - 1;
    }
    // A kill can catch one claim of the outbox worker mid-send: at most that many repeats a kill.
    let bound = kills * usize::try_from(hearth_server::notify::worker::BATCH).unwrap();
    assert!(repeats <= bound, "{repeats} repeated deliveries for {kills} kills (at most {bound})");
    let summary = {
        let l = ledger.lock().unwrap();
        format!(
            "crash: seed {seed}, {kills} SIGKILLs survived on {}: {} writes, {} of {} transactions and {} bookings \
         acknowledged, {} messages delivered ({repeats} repeated after a kill), audit chain intact; {:?}",
            if pg.is_some() { "PostgreSQL" } else { "SQLite" },
            l.puts.len(),
            l.batches_acked.len(),
            l.batches_sent.len(),
            l.bookings.len(),
            messages.len(),
            t_all.elapsed(),
        )
    };
    println!("{summary}");
    sigterm(&p).await;
    wait_exit(&mut p).await;
}
