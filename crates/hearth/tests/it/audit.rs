//! The audit trail (issue 7): events for FHIR interactions and sign-ins, the hash chain and
//! `hearth admin verify-audit`, admins-only search, and a patient's own access log.
//! (That every interaction of the authorization matrix writes exactly one matching event is
//! checked in `authz_matrix.rs`.)

use std::process::Stdio;

use hearth_server::audit::{Verdict, verify};
use hearth_store_sql::{Sql, Val};
use serde_json::{Value, json};
use tokio::process::Command;

use crate::common::{TestApp, patient};

const BIN: &str = env!("CARGO_BIN_EXE_hearth");
const PASSWORD: &str = "ledger-otter-canyon-31";

async fn login(t: &TestApp, email: &str) -> reqwest::Client {
    let r = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body(json!({"email": email, "password": PASSWORD}).to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

async fn account(t: &TestApp, email: &str, role: &str, fhir_user: Option<String>) -> (String, reqwest::Client) {
    let mut body = json!({"email": email, "password": PASSWORD, "role": role});
    if let Some(u) = fhir_user {
        body["fhirUser"] = json!(u);
    }
    let r = t.post("/api/v1/admin/accounts", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    (r.json()["id"].as_str().unwrap().to_owned(), login(t, email).await)
}

/// Every event on record, oldest first, as an admin searches them.
async fn events(t: &TestApp, query: &str) -> Vec<Value> {
    let r = t.get(&format!("/fhir/AuditEvent?_sort=date&_count=500{query}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
}

async fn run_verify_audit(t: &TestApp) -> (bool, String) {
    let mut c = Command::new(BIN);
    c.env_clear()
        .args(["admin", "verify-audit"])
        .env("HEARTH_DATA_DIR", &t.app.config.data_dir)
        .env("HEARTH_LOG_LEVEL", "warn")
        .stdout(Stdio::piped())
        .stderr(Stdio::piped());
    if let Some(url) = &t.app.config.database_url {
        c.env("HEARTH_DATABASE_URL", url.expose());
    }
    let out = c.output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    (out.status.success(), text)
}

#[tokio::test]
async fn interactions_and_sign_ins_are_recorded_in_a_chain_that_exposes_tampering() {
    let t = TestApp::spawn().await;
    let pid = t.create(&patient("Audited")).await;
    let obs = t
        .create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{pid}")}}))
        .await;
    assert_eq!(t.get(&format!("/fhir/Observation/{obs}")).await.status, 200);
    assert_eq!(t.get(&format!("/fhir/Observation?subject=Patient/{pid}&code=8867-4")).await.status, 200);
    // A failed sign-in and a good one.
    let (doc_id, doc) = account(&t, "rao@example.org", "clinician", None).await;
    let r = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body(json!({"email": "rao@example.org", "password": "nope"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 401);

    // The admin finds them through FHIR search.
    let all = events(&t, "").await;
    for e in &all {
        crate::common::assert_valid_r4(e);
    }
    let subtype = |e: &Value| e["subtype"][0]["code"].as_str().unwrap_or_default().to_owned();
    let interactions: Vec<String> = all.iter().map(subtype).collect();
    for want in ["create", "read", "search-type", "110122"] {
        assert!(interactions.contains(&want.to_owned()), "{want} missing from {interactions:?}");
    }
    let read = all.iter().find(|e| subtype(e) == "read").unwrap();
    assert_eq!(read["action"], "R");
    assert_eq!(read["outcome"], "0");
    assert_eq!(read["agent"][0]["network"]["address"], "127.0.0.1");
    let what: Vec<&str> =
        read["entity"].as_array().unwrap().iter().filter_map(|e| e["what"]["reference"].as_str()).collect();
    assert!(what.contains(&format!("Patient/{pid}").as_str()) && what.contains(&format!("Observation/{obs}").as_str()));
    // The search is recorded with its parameter names, never their values.
    let search = all.iter().find(|e| subtype(e) == "search-type").unwrap().to_string();
    assert!(search.contains("parameters: code,subject"), "{search}");
    assert!(!search.contains("8867-4"), "a searched value leaked into the trail: {search}");
    let logins: Vec<&Value> = all.iter().filter(|e| subtype(e) == "110122").collect();
    let failed = logins.iter().find(|e| e["outcome"] == "4").expect("the failed sign-in");
    assert_eq!(failed["agent"][0]["who"]["identifier"]["value"], doc_id.as_str());
    assert_eq!(failed["outcomeDesc"], "invalid_credentials");
    assert!(
        logins.iter().any(|e| e["outcome"] == "0" && e["agent"][0]["who"]["identifier"]["value"] == doc_id.as_str())
    );
    // Search by patient: the events that touched this record.
    let about = events(&t, &format!("&patient=Patient/{pid}")).await;
    assert!(about.len() >= 3, "create, create, read, search: {}", about.len());

    // Only admins read the trail; nobody writes it through the API.
    assert_eq!(t.send(doc.get(t.url("/fhir/AuditEvent"))).await.status, 403);
    assert_eq!(t.send(doc.get(t.url(&format!("/fhir/AuditEvent/{}", read["id"].as_str().unwrap())))).await.status, 403);
    let forged = json!({"resourceType": "AuditEvent", "type": {"code": "rest"}, "recorded": "2020-01-01T00:00:00Z",
        "agent": [{"requestor": true}], "source": {"observer": {"display": "x"}}});
    assert_eq!(t.post("/fhir/AuditEvent", &forged).await.status, 403);
    let mut altered = read.clone();
    altered["outcome"] = json!("8");
    assert_eq!(t.put(&format!("/fhir/AuditEvent/{}", read["id"].as_str().unwrap()), &altered).await.status, 403);
    // Nor do AuditEvents mix into the clinical record.
    let everything = t.get(&format!("/fhir/Patient/{pid}/$everything")).await.json();
    assert!(!everything.to_string().contains("\"AuditEvent\""));

    // The capability statement holds no one's data: not recorded. Event names carry the full path.
    let before = {
        t.app.auditor.flush().await.unwrap();
        hearth_store_sql::audit::chain_length(&*t.app.audit_db).await.unwrap()
    };
    assert_eq!(t.get("/fhir/metadata").await.status, 200);
    assert_eq!(
        {
            t.app.auditor.flush().await.unwrap();
            hearth_store_sql::audit::chain_length(&*t.app.audit_db).await.unwrap()
        },
        before
    );
    assert!(read.to_string().contains(&format!("GET /fhir/Observation/{obs}")), "{read}");

    // The chain is intact, in process and from the command line.
    let n = match verify(&t.app.trail).await.unwrap() {
        Verdict::Intact(n) => n,
        broken => panic!("{broken:?}"),
    };
    assert!(n as usize >= all.len());
    let (ok, out) = run_verify_audit(&t).await;
    assert!(ok, "{out}");
    assert!(out.contains("audit trail intact"), "{out}");

    // Editing one stored event breaks the chain at exactly that link.
    let target = hearth_store_sql::audit::links(&*t.app.audit_db, 2, 1).await.unwrap().remove(0);
    assert_eq!(target.seq, 3);
    let edit = Sql {
        text: "UPDATE resource_versions SET body = replace(body, '\"outcome\":\"0\"', '\"outcome\":\"4\"') \
               WHERE res_type = 'AuditEvent' AND res_id = "
            .to_owned()
            + if hearth_store_sql::Db::dialect(&*t.app.audit_db) == hearth_store_sql::Dialect::Postgres {
                "$1"
            } else {
                "?"
            },
        binds: vec![Val::text(&target.event_id)],
    };
    assert_eq!(t.app.audit_db.execute(&edit).await.unwrap(), 1);
    match verify(&t.app.trail).await.unwrap() {
        Verdict::Broken { seq, event_id, .. } => {
            assert_eq!(seq, 3);
            assert_eq!(event_id, target.event_id);
        }
        intact => panic!("tampering went unnoticed: {intact:?}"),
    }
    let (ok, out) = run_verify_audit(&t).await;
    assert!(!ok, "verify-audit must fail: {out}");
    assert!(out.contains("broken at link 3") && out.contains(&target.event_id), "{out}");
}

#[tokio::test]
async fn a_removed_link_is_named() {
    let t = TestApp::spawn().await;
    for i in 0..4 {
        t.create(&patient(&format!("P{i}"))).await;
    }
    assert!(matches!(verify(&t.app.trail).await.unwrap(), Verdict::Intact(n) if n >= 4));
    let p =
        if hearth_store_sql::Db::dialect(&*t.app.audit_db) == hearth_store_sql::Dialect::Postgres { "$1" } else { "?" };
    let delete = Sql { text: format!("DELETE FROM audit_chain WHERE seq = {p}"), binds: vec![Val::int(2)] };
    assert_eq!(t.app.audit_db.execute(&delete).await.unwrap(), 1);
    match verify(&t.app.trail).await.unwrap() {
        Verdict::Broken { seq, reason, .. } => {
            assert_eq!(seq, 2, "{reason}");
            assert!(reason.contains("missing"), "{reason}");
        }
        intact => panic!("{intact:?}"),
    }
}

#[tokio::test]
async fn concurrent_requests_each_get_one_event_and_the_chain_stays_linear() {
    let t = TestApp::spawn().await;
    let pid = t.create(&patient("Busy")).await;
    let before = {
        t.app.auditor.flush().await.unwrap();
        hearth_store_sql::audit::chain_length(&*t.app.audit_db).await.unwrap()
    };
    let mut reads = tokio::task::JoinSet::new();
    for _ in 0..40 {
        let (client, url) = (t.client.clone(), t.url(&format!("/fhir/Patient/{pid}")));
        reads.spawn(async move { client.get(url).send().await.unwrap().status().as_u16() });
    }
    while let Some(status) = reads.join_next().await {
        assert_eq!(status.unwrap(), 200);
    }
    let after = {
        t.app.auditor.flush().await.unwrap();
        hearth_store_sql::audit::chain_length(&*t.app.audit_db).await.unwrap()
    };
    assert_eq!(after - before, 40);
    assert_eq!(verify(&t.app.trail).await.unwrap(), Verdict::Intact(after));
}

#[tokio::test]
async fn a_patient_sees_who_accessed_their_record() {
    let t = TestApp::spawn().await;
    let pid = t.create(&patient("Kaur")).await;
    let (_, me) = account(&t, "kaur@example.org", "patient", Some(format!("Patient/{pid}"))).await;
    let (_, doc) = account(&t, "dr.mehta@example.org", "clinician", None).await;
    let other = t.create(&patient("Else")).await;
    assert_eq!(t.send(doc.get(t.url(&format!("/fhir/Patient/{pid}")))).await.status, 200);
    assert_eq!(t.send(doc.get(t.url(&format!("/fhir/Patient/{other}")))).await.status, 200);

    let r = t.send(me.get(t.url("/api/v1/me/access-log?count=100"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let log = r.json();
    let entries = log["entries"].as_array().unwrap();
    let by_doctor: Vec<&Value> = entries.iter().filter(|e| e["by"]["name"] == "dr.mehta@example.org").collect();
    assert_eq!(by_doctor.len(), 1, "the clinician's read of this record, not of the other one: {log}");
    assert_eq!(by_doctor[0]["interaction"], "read");
    assert_eq!(by_doctor[0]["by"]["role"], "clinician");
    assert_eq!(by_doctor[0]["outcome"], "success");
    // Newest first.
    let times: Vec<&str> = entries.iter().map(|e| e["recorded"].as_str().unwrap()).collect();
    assert!(times.windows(2).all(|w| w[0] >= w[1]), "{times:?}");
    // Paging and bad input.
    let first = t.send(me.get(t.url("/api/v1/me/access-log?count=1"))).await.json();
    assert_eq!(first["entries"].as_array().unwrap().len(), 1);
    let cursor = first["next"].as_str().expect("a next page");
    let second = t.send(me.get(t.url(&format!("/api/v1/me/access-log?count=1&cursor={cursor}")))).await.json();
    assert_ne!(second["entries"][0], first["entries"][0]);
    let bad = t.send(me.get(t.url("/api/v1/me/access-log?count=0"))).await;
    assert_eq!(bad.status, 400);
    assert_eq!(bad.json()["error"]["code"], "invalid_query");
    assert_eq!(t.send(doc.get(t.url("/api/v1/me/access-log"))).await.status, 403);
}

/// Answers go out once an event is queued; when a commit of the trail fails, the server fails
/// closed: every later request waits for its own commit and is refused while the trail cannot
/// be written, and serves again once it can.
#[tokio::test]
async fn a_trail_that_cannot_be_written_refuses_requests_until_it_can() {
    let t = TestApp::spawn().await;
    let pid = t.create(&patient("Closed")).await;
    let read = format!("/fhir/Patient/{pid}");
    assert_eq!(t.get(&read).await.status, 200);
    let statements: Vec<&str> = if crate::common::backend() == "postgres" {
        vec![
            "CREATE FUNCTION refuse_audit() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_chain FOR EACH ROW EXECUTE FUNCTION refuse_audit()",
        ]
    } else {
        vec![
            "CREATE TRIGGER refuse_audit BEFORE INSERT ON audit_chain BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ]
    };
    for s in statements {
        t.app.audit_db.execute(&Sql { text: s.into(), binds: Vec::new() }).await.unwrap();
    }
    // The first request after the failure may have been answered from the queue; within a few
    // requests the failure is known and every request waits for its own commit and is refused.
    // (The writer's failing commit may come late on a loaded machine: keep asking a while.)
    let mut refused = 0;
    for _ in 0..500 {
        match t.get(&read).await.status {
            503 => refused += 1,
            200 if refused == 0 => tokio::time::sleep(std::time::Duration::from_millis(10)).await,
            other => panic!("after a refusal every request must be refused, got {other}"),
        }
        if refused >= 3 {
            break;
        }
    }
    assert_eq!(refused, 3, "the server kept answering although its audit trail could not be written");
    // Monitoring sees it (the metrics endpoint reads no PHI and is not audited).
    let m = t.get("/metrics").await;
    assert_eq!(m.status, 200);
    assert!(m.text.lines().any(|l| l == "hearth_audit_failing 1"), "{}", m.text);
    let drop = if crate::common::backend() == "postgres" {
        "DROP TRIGGER refuse_audit ON audit_chain"
    } else {
        "DROP TRIGGER refuse_audit"
    };
    t.app.audit_db.execute(&Sql { text: drop.into(), binds: Vec::new() }).await.unwrap();
    assert_eq!(t.get(&read).await.status, 200);
    assert_eq!(t.get(&read).await.status, 200);
    assert!(t.get("/metrics").await.text.lines().any(|l| l == "hearth_audit_failing 0"));
    // What was committed is still one unbroken chain (the lost events never got a link).
    assert!(matches!(verify(&t.app.trail).await.unwrap(), Verdict::Intact(_)));
}
