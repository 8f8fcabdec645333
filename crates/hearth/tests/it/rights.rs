//! Data rights (issue 7): a patient downloads their record (FHIR Bundle and HTML summary) and
//! asks for erasure; an administrator executes or refuses it, subject to legal holds; erasure
//! leaves no content (not in the API, not in the raw data) and an audit record.

use chrono::Duration;
use hearth_server::app::Clock;
use hearth_server::audit::{Verdict, verify};
use hearth_store_sql::{Sql, Val};
use serde_json::{Value, json};

use crate::common::{TestApp, assert_valid_r4, backend, load_synthea, patient};
use crate::encryption::{K1, encrypted_app, holds, key_file, raw_data};

const PASSWORD: &str = "rights-kestrel-harbour-84";
/// Text only the erased patient's record holds.
const FAMILY: &str = "Wrenhollowby";
const NOTE: &str = "mentions a zeppelin-shaped birthmark";
const OLD_NOTE: &str = "deleted note about a quokka bite";
const FIRST_NOTE: &str = "first draft about a narwhal allergy";

async fn login(t: &TestApp, email: &str) -> (u16, reqwest::Client) {
    let r = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body(json!({"email": email, "password": PASSWORD}).to_string()),
        )
        .await;
    let mut h = reqwest::header::HeaderMap::new();
    if r.status == 200 {
        let token = r.json()["access_token"].as_str().unwrap().to_owned();
        h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    }
    (r.status, reqwest::Client::builder().default_headers(h).build().unwrap())
}

async fn account(t: &TestApp, email: &str, role: &str, fhir_user: Option<String>) -> (String, reqwest::Client) {
    let mut body = json!({"email": email, "password": PASSWORD, "role": role});
    if let Some(u) = fhir_user {
        body["fhirUser"] = json!(u);
    }
    let r = t.post("/api/v1/admin/accounts", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (status, client) = login(t, email).await;
    assert_eq!(status, 200);
    (r.json()["id"].as_str().unwrap().to_owned(), client)
}

async fn call(
    t: &TestApp,
    c: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    body: Option<Value>,
) -> (u16, Value) {
    let mut req = c.request(method, t.url(path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = t.send(req).await;
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

async fn get(t: &TestApp, c: &reqwest::Client, path: &str) -> crate::common::Resp {
    t.send(c.get(t.url(path))).await
}

/// The AuditEvents naming a patient, as an admin searches them (each search is an event naming
/// the patient too).
async fn events_about(t: &TestApp, patient: &str) -> Vec<Value> {
    let r = t.get(&format!("/fhir/AuditEvent?patient=Patient/{patient}&_count=500")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
}

fn observation(patient: &str, code: &str, value: i64, unit: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code, "display": format!("Test {code}")}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "effectiveDateTime": "2026-03-01T10:00:00Z",
        "valueQuantity": {"value": value, "unit": unit, "system": "http://unitsofmeasure.org", "code": unit}})
}

fn bundle_refs(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| {
            format!("{}/{}", e["resource"]["resourceType"].as_str().unwrap(), e["resource"]["id"].as_str().unwrap())
        })
        .collect()
}

#[tokio::test]
async fn a_patient_downloads_their_own_record_and_summary_and_each_download_is_audited_once() {
    let t = TestApp::spawn().await;
    let pid = t
        .create(&json!({"resourceType": "Patient", "name": [{"use": "official", "family": FAMILY, "given": ["<script>alert(1)</script>"]}],
            "birthDate": "1971-02-03", "gender": "female"}))
        .await;
    let other = t.create(&patient("Otherperson")).await;
    let obs = t.create(&observation(&pid, "8867-4", 72, "/min")).await;
    let condition = t
        .create(&json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{pid}")},
            "code": {"text": "Seasonal <b>hay</b> fever"}, "recordedDate": "2025-05-01"}))
        .await;
    let other_obs = t.create(&observation(&other, "8867-4", 64, "/min")).await;
    let (me_id, me) = account(&t, "wren@example.org", "patient", Some(format!("Patient/{pid}"))).await;
    let (_, them) = account(&t, "other@example.org", "patient", Some(format!("Patient/{other}"))).await;

    // The events of the patient's own requests (the admin's searches of the trail name the
    // patient too).
    let mine = |events: Vec<Value>| -> Vec<Value> {
        events.into_iter().filter(|e| e["agent"][0]["who"]["identifier"]["value"] == me_id.as_str()).collect()
    };
    let before = mine(events_about(&t, &pid).await).len();
    let r = get(&t, &me, "/api/v1/me/data").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").unwrap().starts_with("application/fhir+json"));
    assert!(r.header("content-disposition").unwrap().starts_with("attachment; filename=\"hearth-record-"));
    let bundle = r.json();
    assert_eq!(bundle["resourceType"], "Bundle");
    assert_eq!(bundle["type"], "collection");
    assert_valid_r4(&bundle);
    let refs = bundle_refs(&bundle);
    for want in [format!("Patient/{pid}"), format!("Observation/{obs}"), format!("Condition/{condition}")] {
        assert!(refs.contains(&want), "{want} missing from {refs:?}");
    }
    assert!(!refs.contains(&format!("Patient/{other}")) && !refs.contains(&format!("Observation/{other_obs}")));
    assert!(!r.text.contains("Otherperson"));

    // Exactly one event for the download, naming the patient and the patient's account.
    let after = mine(events_about(&t, &pid).await);
    assert_eq!(after.len(), before + 1, "{after:#?}");
    let event = after.iter().find(|e| e["entity"].to_string().contains("/api/v1/me/data")).unwrap();
    assert_eq!(event["agent"][0]["who"]["identifier"]["value"], me_id);
    assert_eq!(event["outcome"], "0");

    let r = get(&t, &me, "/api/v1/me/data/summary").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.header("content-disposition").unwrap().starts_with("attachment;"));
    let html = &r.text;
    assert!(html.contains(FAMILY), "{html}");
    assert!(html.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{html}");
    assert!(!html.contains("<script") && !html.contains("<b>hay"), "{html}");
    assert!(html.contains("Seasonal &lt;b&gt;hay&lt;/b&gt; fever"));
    assert!(html.contains("72 /min") && html.contains("Test 8867-4"), "{html}");
    assert!(html.contains("1971-02-03"));
    assert!(!html.contains("Otherperson") && !html.contains("64 /min"));
    assert_eq!(mine(events_about(&t, &pid).await).len(), before + 2);

    // The other patient gets their own record only; asking for someone else's is a 404.
    let r = get(&t, &them, "/api/v1/me/data").await;
    assert_eq!(r.status, 200);
    let refs = bundle_refs(&r.json());
    assert!(refs.contains(&format!("Observation/{other_obs}")) && !refs.contains(&format!("Patient/{pid}")));
    assert_eq!(get(&t, &them, &format!("/api/v1/me/data?patient={pid}")).await.status, 404);
    assert_eq!(get(&t, &them, &format!("/api/v1/me/data/summary?patient={pid}")).await.status, 404);
    assert_eq!(get(&t, &me, "/api/v1/me/data?format=pdf").await.status, 400);

    // Staff are sent to $everything (where their reach applies).
    let (_, doc) = account(&t, "doc@elsewhere.example", "clinician", None).await;
    let r = get(&t, &doc, &format!("/api/v1/me/data?patient={pid}")).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "forbidden");
    assert_eq!(t.send(t.anonymous().get(t.url("/api/v1/me/data"))).await.status, 401);

    // A caregiver: nothing without a grant, the patient's record with one.
    let (carer_id, carer) = account(&t, "carer@example.org", "caregiver", None).await;
    assert_eq!(get(&t, &carer, &format!("/api/v1/me/data?patient={pid}")).await.status, 404);
    assert_eq!(get(&t, &carer, "/api/v1/me/data").await.status, 400);
    let r = t.post("/api/v1/admin/caregivers", &json!({"caregiver": carer_id, "patient": pid})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = get(&t, &carer, &format!("/api/v1/me/data?patient={pid}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(bundle_refs(&r.json()).contains(&format!("Observation/{obs}")));
    let r = get(&t, &carer, &format!("/api/v1/me/data/summary?patient={pid}")).await;
    assert_eq!(r.status, 200);
    assert!(r.text.contains(FAMILY));
    // A caregiver cannot ask for erasure.
    let (s, v) = call(&t, &carer, reqwest::Method::POST, "/api/v1/me/erasure", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
}

#[tokio::test]
async fn the_download_is_the_whole_everything_across_pages() {
    let t = TestApp::spawn().await;
    let synthea = load_synthea(&t).await;
    let p = synthea.of_type("Patient").next().unwrap();
    let pid = synthea.server_id(p);
    let (_, me) = account(&t, "synthea@example.org", "patient", Some(format!("Patient/{pid}"))).await;
    // More than one page of the download (200) in any case.
    let entries: Vec<Value> = (0..250)
        .map(|i| json!({"resource": observation(&pid, "2339-0", 90 + i, "mg/dL"), "request": {"method": "POST", "url": "Observation"}}))
        .collect();
    let r = t.post("/fhir", &json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // What $everything answers the patient over all its pages.
    let mut expected = Vec::new();
    let mut next = Some(format!("/fhir/Patient/{pid}/$everything?_count=500"));
    while let Some(path) = next {
        let page = get(&t, &me, &path).await.json();
        expected.extend(bundle_refs(&page));
        next = page["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next").map(|l| {
            let url = l["url"].as_str().unwrap();
            url[url.find("/fhir/").unwrap()..].to_owned()
        });
    }
    assert!(expected.len() > 300, "the download must span several pages: {}", expected.len());
    let r = get(&t, &me, "/api/v1/me/data").await;
    assert_eq!(r.status, 200);
    let mut got = bundle_refs(&r.json());
    let n = got.len();
    got.sort();
    got.dedup();
    assert_eq!(got.len(), n, "a resource appears twice");
    expected.sort();
    assert_eq!(got, expected);
}

/// Runs a SELECT COUNT(*) through the app's own database connection (so it works with an
/// encrypted file too); `?` marks the one text parameter.
async fn count(t: &TestApp, sql: &str, value: &str) -> i64 {
    let text = if backend() == "postgres" { sql.replace('?', "$1") } else { sql.to_owned() };
    let rows =
        t.app.db.fetch(&Sql { text, binds: vec![Val::text(value)] }, &[hearth_store_sql::Col::Int]).await.unwrap();
    rows[0][0].as_int().unwrap()
}

async fn erasure_story(t: TestApp, plaintext: bool) {
    let pid = t
        .create(&json!({"resourceType": "Patient", "name": [{"family": FAMILY, "given": ["Ida"]}], "birthDate": "1950-01-01"}))
        .await;
    let other = t.create(&patient("Keepsake")).await;
    let mut o = observation(&pid, "29463-7", 80, "kg");
    o["note"] = json!([{"text": FIRST_NOTE}]);
    let obs = t.create(&o).await;
    o["id"] = json!(obs);
    o["note"] = json!([{"text": NOTE}]);
    assert_eq!(t.put(&format!("/fhir/Observation/{obs}"), &o).await.status, 200);
    let gone = t
        .create(&json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{pid}")},
            "code": {"text": "old"}, "note": [{"text": OLD_NOTE}]}))
        .await;
    assert_eq!(t.delete(&format!("/fhir/Condition/{gone}")).await.status, 204);
    let other_obs = t.create(&observation(&other, "29463-7", 61, "kg")).await;
    // Also in the other patient's record (they performed it): kept.
    let mut shared = observation(&pid, "8310-5", 37, "Cel");
    shared["performer"] = json!([{"reference": format!("Patient/{other}")}]);
    let shared = t.create(&shared).await;
    // Who made what of her record: a Provenance naming only her Observation goes with it; one
    // that also names the other patient's stays.
    let prov = |targets: Vec<String>| {
        json!({"resourceType": "Provenance", "recorded": "2026-01-01T10:00:00Z",
            "target": targets.into_iter().map(|r| json!({"reference": r})).collect::<Vec<_>>(),
            "agent": [{"who": {"display": "Hearth"}}]})
    };
    let hers = t.create(&prov(vec![format!("Observation/{obs}")])).await;
    let both = t.create(&prov(vec![format!("Observation/{obs}"), format!("Observation/{other_obs}")])).await;
    let (me_id, me) = account(&t, "ida@example.org", "patient", Some(format!("Patient/{pid}"))).await;
    let (_, them) = account(&t, "keepsake@example.org", "patient", Some(format!("Patient/{other}"))).await;
    if plaintext {
        // The check below can fail: before the erasure the raw data does hold the text.
        let raw = raw_data(&t.app.config).await;
        assert!(holds(&raw, FAMILY) && holds(&raw, NOTE), "the raw-data probe finds nothing even before erasure");
    }

    let (s, request) =
        call(&t, &me, reqwest::Method::POST, "/api/v1/me/erasure", Some(json!({"reason": "moving abroad"}))).await;
    assert_eq!(s, 202, "{request}");
    assert_eq!(request["status"], "requested");
    assert_eq!(request["patient"], format!("Patient/{pid}"));
    let rid = request["id"].as_str().unwrap().to_owned();
    let (s, v) = call(&t, &me, reqwest::Method::POST, "/api/v1/me/erasure", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("erasure_pending")));
    let (s, v) = call(&t, &me, reqwest::Method::GET, "/api/v1/me/erasure", None).await;
    assert_eq!((s, v["requests"][0]["id"].as_str()), (200, Some(rid.as_str())));
    // Not the patient's to execute.
    let (s, _) =
        call(&t, &me, reqwest::Method::POST, &format!("/api/v1/admin/erasure-requests/{rid}/execute"), None).await;
    assert_eq!(s, 403);
    let r = t.get("/api/v1/admin/erasure-requests?status=requested").await;
    assert_eq!(r.status, 200);
    assert_eq!(r.json()["requests"][0]["reason"], "moving abroad");

    let r = t.post(&format!("/api/v1/admin/erasure-requests/{rid}/execute"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let done = r.json();
    assert_eq!(done["status"], "completed");
    assert_eq!(done["reason"], Value::Null);
    assert_eq!(done["resourcesErased"], 4, "Patient, Observation, deleted Condition, her Provenance: {done}");
    let (s, v) =
        call(&t, &t.client, reqwest::Method::POST, &format!("/api/v1/admin/erasure-requests/{rid}/execute"), None)
            .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("erasure_not_pending")));

    // Unreadable everywhere.
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 410);
    assert_eq!(t.get(&format!("/fhir/Observation/{obs}")).await.status, 410);
    assert_eq!(t.get(&format!("/fhir/Provenance/{hers}")).await.status, 410);
    assert_eq!(t.get(&format!("/fhir/Provenance/{both}")).await.status, 200);
    for path in [
        format!("/fhir/Patient/{pid}/_history/1"),
        format!("/fhir/Observation/{obs}/_history/1"),
        format!("/fhir/Observation/{obs}/_history/2"),
        format!("/fhir/Condition/{gone}/_history/1"),
    ] {
        assert_eq!(t.get(&path).await.status, 404, "{path}");
    }
    let history = t.get(&format!("/fhir/Observation/{obs}/_history")).await.json();
    assert_eq!(history["entry"].as_array().unwrap().len(), 1, "{history}");
    assert!(history["entry"][0].get("resource").is_none(), "{history}");
    assert_eq!(history["entry"][0]["request"]["method"], "DELETE");
    for path in [
        format!("/fhir/Observation?_id={obs}"),
        format!("/fhir/Patient?family={FAMILY}"),
        format!("/fhir/Condition?_id={gone}"),
    ] {
        let r = t.get(&path).await;
        assert_eq!(r.json()["entry"].as_array().map_or(0, Vec::len), 0, "{path}: {}", r.text);
    }
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}/$everything")).await.status, 410);
    let system = t.get("/fhir/_history?_count=500").await;
    assert!(!system.text.contains(FAMILY) && !system.text.contains(NOTE));
    // The other patient's record, and what is also theirs, are intact.
    assert_eq!(t.get(&format!("/fhir/Observation/{other_obs}")).await.status, 200);
    assert_eq!(t.get(&format!("/fhir/Observation/{shared}")).await.status, 200);
    assert_eq!(get(&t, &them, "/api/v1/me/data").await.status, 200);

    // Gone from the tables, and (SQLite) from the files.
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM resource_versions WHERE res_id = ? AND body IS NOT NULL", &pid).await,
        0
    );
    assert_eq!(count(&t, "SELECT COUNT(*) FROM resource_versions WHERE res_id = ?", &obs).await, 1);
    assert_eq!(
        count(&t, "SELECT COUNT(*) FROM resource_versions WHERE res_id = ? AND body IS NOT NULL", &gone).await,
        0
    );
    let index = "SELECT COUNT(*) FROM search_string s JOIN resources r ON r.rid = s.rid WHERE r.res_id = ?";
    assert_eq!(count(&t, index, &pid).await, 0);
    assert_eq!(count(&t, "SELECT COUNT(*) FROM accounts WHERE id = ?", &me_id).await, 0);
    let raw = raw_data(&t.app.config).await;
    for needle in [FAMILY, NOTE, FIRST_NOTE, OLD_NOTE] {
        assert!(!holds(&raw, needle), "{needle} is still in the raw data ({})", backend());
    }

    // The account is gone: its token and its password no longer work.
    assert_eq!(get(&t, &me, "/api/v1/me/data").await.status, 401);
    assert_eq!(login(&t, "ida@example.org").await.0, 401);

    // The erasure is on record, without content, and the chain still verifies.
    let events = events_about(&t, &pid).await;
    let erasure: Vec<&Value> = events.iter().filter(|e| e["subtype"][0]["code"] == "destroy").collect();
    assert_eq!(erasure.len(), 1, "{events:#?}");
    let e = erasure[0];
    assert_eq!(e["action"], "D");
    assert!(e["outcomeDesc"].as_str().unwrap().contains(&rid));
    assert_eq!(e["agent"][1]["who"]["identifier"]["value"], me_id);
    assert!(!e.to_string().contains(FAMILY) && !e.to_string().contains("moving abroad"));
    assert_valid_r4(e);
    assert!(matches!(verify(&t.app.trail).await.unwrap(), Verdict::Intact(_)));
}

#[tokio::test]
async fn erasure_removes_the_record_from_the_api_and_the_data_at_rest() {
    erasure_story(TestApp::spawn().await, true).await;
}

#[tokio::test]
async fn erasure_works_under_encryption_at_rest() {
    let (_dir, key) = key_file(K1);
    erasure_story(encrypted_app(&key).await, false).await;
}

/// A patient with an observation and a pending erasure request; returns (patient, request id).
async fn requested(t: &TestApp, email: &str) -> (String, String, reqwest::Client) {
    let pid = t.create(&patient(FAMILY)).await;
    t.create(&observation(&pid, "8867-4", 70, "/min")).await;
    let (_, me) = account(t, email, "patient", Some(format!("Patient/{pid}"))).await;
    let (s, v) = call(t, &me, reqwest::Method::POST, "/api/v1/me/erasure", None).await;
    assert_eq!(s, 202, "{v}");
    (pid, v["id"].as_str().unwrap().to_owned(), me)
}

#[tokio::test]
async fn legal_holds_refuse_erasure_and_change_nothing() {
    let t = TestApp::spawn().await;
    let (pid, rid, me) = requested(&t, "held@example.org").await;
    let (_, doc) = account(&t, "doc@example.org", "clinician", None).await;
    let hold = format!("/api/v1/admin/patients/{pid}/legal-hold");
    assert_eq!(call(&t, &me, reqwest::Method::POST, &hold, Some(json!({"reason": "x"}))).await.0, 403);
    assert_eq!(call(&t, &doc, reqwest::Method::POST, &hold, Some(json!({"reason": "x"}))).await.0, 403);
    assert_eq!(t.post(&hold, &json!({})).await.status, 400);
    assert_eq!(t.post("/api/v1/admin/patients/nobody/legal-hold", &json!({"reason": "x"})).await.status, 404);
    let r = t.post(&hold, &json!({"reason": "litigation 2026-17"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.get(&hold).await.json()["reason"], "litigation 2026-17");

    let execute = format!("/api/v1/admin/erasure-requests/{rid}/execute");
    let (s, _) = call(&t, &doc, reqwest::Method::POST, &execute, None).await;
    assert_eq!(s, 403);
    let r = t.post(&execute, &json!({})).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "legal_hold");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("litigation 2026-17"));
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 200);
    assert_eq!(get(&t, &me, "/api/v1/me/data").await.status, 200);
    let (_, v) = call(&t, &me, reqwest::Method::GET, "/api/v1/me/erasure", None).await;
    assert_eq!(v["requests"][0]["status"], "requested");
    let placed = events_about(&t, &pid).await.into_iter().filter(|e| e["subtype"][0]["code"] == "hold").count();
    assert_eq!(placed, 1);

    assert_eq!(t.delete(&hold).await.status, 204);
    assert_eq!(t.delete(&hold).await.status, 404);
    let r = t.post(&execute, &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 410);

    // Refusal: a reason is required, and a refused request cannot be executed.
    let (other, rid, _) = requested(&t, "refused@example.org").await;
    let refuse = format!("/api/v1/admin/erasure-requests/{rid}/refuse");
    assert_eq!(t.post(&refuse, &json!({})).await.status, 400);
    let r = t.post(&refuse, &json!({"reason": "open insurance claim"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["status"], "refused");
    assert_eq!(r.json()["decision"], "open insurance claim");
    let refusals = events_about(&t, &other).await;
    assert!(refusals.iter().any(|e| e["entity"].to_string().contains(&format!("{rid}/refuse"))), "{refusals:#?}");
    let r = t.post(&format!("/api/v1/admin/erasure-requests/{rid}/execute"), &json!({})).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (409, Some("erasure_not_pending")));
    assert_eq!(t.get(&format!("/fhir/Patient/{other}")).await.status, 200);
    assert_eq!(t.post("/api/v1/admin/erasure-requests/nope/execute", &json!({})).await.status, 404);
    assert_eq!(t.get("/api/v1/admin/erasure-requests?status=maybe").await.status, 400);
}

#[tokio::test]
async fn the_retention_period_holds_recent_records() {
    let t = TestApp::spawn_with(|c| c.rights.retention_days = 30).await;
    let (pid, rid, _) = requested(&t, "recent@example.org").await;
    let execute = format!("/api/v1/admin/erasure-requests/{rid}/execute");
    let r = t.post(&execute, &json!({})).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "legal_hold");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("retention period of 30 days"));
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 200);
    t.clock.set(t.clock.now() + Duration::days(31));
    let r = t.post(&execute, &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 410);
}

#[tokio::test]
async fn immediate_mode_erases_at_once_unless_held() {
    let t = TestApp::spawn_with(|c| c.rights.erasure = hearth_server::config::ErasureMode::Immediate).await;
    let pid = t.create(&patient(FAMILY)).await;
    let (_, me) = account(&t, "now@example.org", "patient", Some(format!("Patient/{pid}"))).await;
    let held = t.create(&patient("Heldback")).await;
    let (_, them) = account(&t, "held2@example.org", "patient", Some(format!("Patient/{held}"))).await;
    let r = t.post(&format!("/api/v1/admin/patients/{held}/legal-hold"), &json!({"reason": "court order"})).await;
    assert_eq!(r.status, 200);

    let (s, v) = call(&t, &me, reqwest::Method::POST, "/api/v1/me/erasure", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "completed");
    assert_eq!(v["decidedBy"], Value::Null, "decided by the server itself: {v}");
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 410);
    assert_eq!(get(&t, &me, "/api/v1/me/data").await.status, 401);

    let (s, v) = call(&t, &them, reqwest::Method::POST, "/api/v1/me/erasure", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("legal_hold")), "{v}");
    assert_eq!(t.get(&format!("/fhir/Patient/{held}")).await.status, 200);
    let (_, v) = call(&t, &them, reqwest::Method::GET, "/api/v1/me/erasure", None).await;
    assert_eq!(v["requests"][0]["status"], "refused");
    assert!(v["requests"][0]["decision"].as_str().unwrap().contains("court order"));
}

#[tokio::test]
async fn a_failed_erasure_changes_nothing() {
    let t = TestApp::spawn().await;
    let (pid, rid, me) = requested(&t, "atomic@example.org").await;
    let condition = t
        .create(&json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{pid}")}, "code": {"text": "x"}}))
        .await;
    // A trigger makes the last step (removing the Condition's old versions) fail.
    let statements: Vec<&str> = if backend() == "postgres" {
        vec![
            "CREATE FUNCTION refuse_erasure() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'refused by the test'; END $$",
            "CREATE TRIGGER refuse_erasure BEFORE DELETE ON resource_versions FOR EACH ROW WHEN (OLD.res_type = 'Condition') EXECUTE FUNCTION refuse_erasure()",
        ]
    } else {
        vec![
            "CREATE TRIGGER refuse_erasure BEFORE DELETE ON resource_versions WHEN OLD.res_type = 'Condition' \
             BEGIN SELECT RAISE(ABORT, 'refused by the test'); END",
        ]
    };
    for s in statements {
        t.app.db.execute(&Sql { text: s.into(), binds: Vec::new() }).await.unwrap();
    }
    let execute = format!("/api/v1/admin/erasure-requests/{rid}/execute");
    let r = t.post(&execute, &json!({})).await;
    assert_eq!(r.status, 500, "{}", r.text);
    assert_eq!(r.json()["error"]["code"], "internal");
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 200);
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}/_history/1")).await.status, 200);
    assert_eq!(t.get(&format!("/fhir/Condition/{condition}")).await.status, 200);
    assert_eq!(t.get(&format!("/fhir/Patient?family={FAMILY}")).await.json()["entry"].as_array().unwrap().len(), 1);
    assert_eq!(get(&t, &me, "/api/v1/me/data").await.status, 200);
    let (_, v) = call(&t, &me, reqwest::Method::GET, "/api/v1/me/erasure", None).await;
    assert_eq!(v["requests"][0]["status"], "requested");
    assert!(events_about(&t, &pid).await.iter().all(|e| e["subtype"][0]["code"] != "destroy"));

    let drop = if backend() == "postgres" {
        "DROP TRIGGER refuse_erasure ON resource_versions"
    } else {
        "DROP TRIGGER refuse_erasure"
    };
    t.app.db.execute(&Sql { text: drop.into(), binds: Vec::new() }).await.unwrap();
    let r = t.post(&execute, &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.get(&format!("/fhir/Condition/{condition}")).await.status, 410);
}

#[tokio::test]
async fn the_data_rights_endpoints_are_documented() {
    let t = TestApp::spawn().await;
    let spec = t.get("/api/openapi.json").await.json();
    for (method, p) in [
        ("get", "/api/v1/me/data"),
        ("get", "/api/v1/me/data/summary"),
        ("get", "/api/v1/me/erasure"),
        ("post", "/api/v1/me/erasure"),
        ("get", "/api/v1/admin/erasure-requests"),
        ("post", "/api/v1/admin/erasure-requests/{id}/execute"),
        ("post", "/api/v1/admin/erasure-requests/{id}/refuse"),
        ("get", "/api/v1/admin/patients/{id}/legal-hold"),
        ("post", "/api/v1/admin/patients/{id}/legal-hold"),
        ("delete", "/api/v1/admin/patients/{id}/legal-hold"),
    ] {
        let op = &spec["paths"][p][method];
        assert!(op.is_object(), "{method} {p} missing from OpenAPI");
        assert!(op["security"].is_array(), "{method} {p}");
    }
}
