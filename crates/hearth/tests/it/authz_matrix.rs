//! The authorization matrix: every FHIR interaction and app endpoint, for each role (anonymous,
//! patient A, patient B, caregiver of A, clinician, admin), answers exactly the expected status;
//! and on Synthea data, patient A's searches (includes, revincludes, chains, `_has`, system
//! search, paging) never return anything outside A's record and the shared directory types.

use std::collections::BTreeSet;

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, load_synthea};

const PASSWORD: &str = "matrix-pelican-harbour-77";
const ROLES: [&str; 6] = ["anonymous", "patient A", "patient B", "caregiver of A", "clinician", "admin"];
/// Types anyone signed in may read (hearth_server::auth::SHARED_TYPES).
const SHARED: [&str; 6] = ["Organization", "Practitioner", "PractitionerRole", "Location", "Medication", "ValueSet"];

/// (what, method, path, body, expected status per role in `ROLES` order; 0 = not tried)
type Row = (&'static str, Method, String, Option<Value>, [u16; 6]);

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

async fn json_req(t: &TestApp, c: &reqwest::Client, method: Method, path: &str, body: &Value) -> (u16, Value) {
    let r =
        t.send(c.request(method, t.url(path)).header("content-type", "application/json").body(body.to_string())).await;
    let v = serde_json::from_str(&r.text).unwrap_or(Value::Null);
    (r.status, v)
}

/// Creates an account as the admin and logs it in.
async fn account(t: &TestApp, email: &str, role: &str, fhir_user: Option<&str>) -> (String, reqwest::Client) {
    let mut body = json!({"email": email, "password": PASSWORD, "role": role});
    if let Some(u) = fhir_user {
        body["fhirUser"] = json!(u);
    }
    let (s, v) = json_req(t, &t.client, Method::POST, "/api/v1/admin/accounts", &body).await;
    assert_eq!(s, 201, "{v}");
    let (s, l) =
        json_req(t, &t.anonymous(), Method::POST, "/api/v1/auth/login", &json!({"email": email, "password": PASSWORD}))
            .await;
    assert_eq!(s, 200, "{l}");
    (v["id"].as_str().unwrap().to_owned(), bearer(l["access_token"].as_str().unwrap()))
}

/// A multipart upload of a small PDF for `patient`: (content type, body).
fn pdf_form(patient: &str) -> (String, Vec<u8>) {
    let b = "matrix-boundary";
    let mut body = format!(
        "--{b}\r\nContent-Disposition: form-data; name=\"patient\"\r\n\r\n{patient}\r\n\
         --{b}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"m.pdf\"\r\n\r\n%PDF-1.4\nmatrix\n"
    )
    .into_bytes();
    body.extend(format!("\r\n--{b}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={b}"), body)
}

/// A document of `patient` uploaded by the admin; its id.
async fn document_of(t: &TestApp, patient: &str) -> String {
    let (ct, body) = pdf_form(patient);
    let r = t.send(t.client.post(t.url("/api/v1/documents")).header("content-type", ct).body(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_owned()
}

fn observation(patient: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

/// The number of audit events and the newest one.
async fn audit_state(t: &TestApp) -> (i64, Option<Value>) {
    let n = {
        t.app.auditor.flush().await.unwrap();
        hearth_store_sql::audit::chain_length(&*t.app.audit_db).await.unwrap()
    };
    let last = hearth_store_sql::audit::links(&*t.app.audit_db, n - 1, 1).await.unwrap();
    let event = match last.first() {
        Some(link) => match t.app.audit_store.read("AuditEvent", &link.event_id).await.unwrap() {
            hearth_store::Current::Found(v) => Some(serde_json::from_str(v.body.as_deref().unwrap()).unwrap()),
            _ => None,
        },
        None => None,
    };
    (n, event)
}

/// Checks that exactly one AuditEvent was written since `before`, naming `who` (an account id,
/// `None` for an anonymous caller) and the answer `status`; describes any difference.
async fn audited_once(t: &TestApp, before: i64, who: Option<&str>, status: u16) -> Option<String> {
    let (n, event) = audit_state(t).await;
    if n != before + 1 {
        return Some(format!("{} audit events instead of 1", n - before));
    }
    // Second-factor events carry the error code rather than the status (auth::mfa).
    let security = event.as_ref().is_some_and(|e| e["type"]["code"] != "rest");
    let e = event?;
    let agent = &e["agent"][0]["who"];
    let named = match who {
        Some(id) => agent["identifier"]["value"] == id,
        None => agent["display"] == "unauthenticated client",
    };
    let outcome = if status < 400 { "0" } else { "4" };
    let status_ok = security || e["outcomeDesc"].as_str() == Some(status.to_string().as_str());
    if !named || !status_ok || e["outcome"] != outcome {
        return Some(format!("the audit event does not match: {e}"));
    }
    None
}

/// Every resource of a search, following `next` links; `Type/id` strings.
async fn all_pages(t: &TestApp, c: &reqwest::Client, path: &str) -> Vec<String> {
    let mut out = Vec::new();
    let mut url = t.url(path);
    loop {
        let r = t.send(c.get(&url)).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let b = r.json();
        for e in b["entry"].as_array().into_iter().flatten() {
            out.push(format!(
                "{}/{}",
                e["resource"]["resourceType"].as_str().unwrap(),
                e["resource"]["id"].as_str().unwrap()
            ));
        }
        match b["link"].as_array().unwrap().iter().find(|l| l["relation"] == "next") {
            Some(next) => url = next["url"].as_str().unwrap().to_owned(),
            None => break,
        }
    }
    out
}

#[tokio::test]
async fn every_role_gets_exactly_the_expected_status_and_patient_a_never_sees_b() {
    let t = TestApp::spawn().await;
    let syn = load_synthea(&t).await;
    let patients: Vec<String> = syn.of_type("Patient").map(|p| syn.server_id(p)).collect();
    let (pa, pb) = (patients[0].clone(), patients[1].clone());
    let (a_id, a) = account(&t, "pa@example.org", "patient", Some(&format!("Patient/{pa}"))).await;
    let (b_id, b) = account(&t, "pb@example.org", "patient", Some(&format!("Patient/{pb}"))).await;
    let (carer_id, carer) = account(&t, "carer@example.org", "caregiver", None).await;
    let (s, _) = json_req(
        &t,
        &t.client,
        Method::POST,
        "/api/v1/admin/caregivers",
        &json!({"caregiver": carer_id, "patient": pa}),
    )
    .await;
    assert_eq!(s, 204);
    let (doc_id, clinician) = account(&t, "doc@example.org", "clinician", None).await;
    let clients = [t.anonymous(), a.clone(), b.clone(), carer, clinician, t.client.clone()];
    let (s, me) = json_req(&t, &t.client, Method::GET, "/api/v1/auth/me", &Value::Null).await;
    assert_eq!(s, 200);
    let admin_id = me["id"].as_str().unwrap().to_owned();
    // Who each client is in the audit trail.
    let ids: [Option<&str>; 6] = [None, Some(&a_id), Some(&b_id), Some(&carer_id), Some(&doc_id), Some(&admin_id)];
    // How many audit events a request writes: one per FHIR interaction (not the capability
    // statement or SMART discovery), per consent request, per second-factor request, and per
    // refusal anywhere else; none for other app-API calls that succeed.
    let events = |path: &str, status: u16| -> i64 {
        let fhir = path.starts_with("/fhir") && !path.starts_with("/fhir/metadata") && !path.contains("well-known");
        let always = path.starts_with("/api/v1/me/consents")
            || path.starts_with("/api/v1/auth/totp/")
            || path.starts_with("/api/v1/patients")
            || path.starts_with("/api/v1/intake/")
            // (the tus discovery is an OPTIONS request, which the audit middleware never records)
            || (path.starts_with("/api/v1/documents") && !(path == "/api/v1/documents/uploads" && status == 204))
            || path.starts_with("/api/v1/phr/")
            || path.starts_with("/api/v1/health")
            || path.starts_with("/api/v1/medication/")
            || path.starts_with("/api/v1/emergency")
            || path.starts_with("/api/v1/alarms")
            || path.starts_with("/api/v1/journal/")
            || path.starts_with("/api/v1/tracking/")
            || path.starts_with("/api/v1/meditation/")
            || path.starts_with("/api/v1/goals")
            || path.starts_with("/api/v1/summaries/")
            || path.starts_with("/api/v1/chat/")
            || path.starts_with("/api/v1/telehealth/rooms")
            || path.starts_with("/api/v1/profile")
            || path == "/api/v1/notifications/send"
            || path == "/api/push/send"
            // An administrator's 2FA reset is a security event on the account.
            || (path.ends_with("/totp/reset") && status == 200);
        i64::from(fhir || always || (!path.starts_with("/fhir") && (status == 401 || status == 403)))
    };
    let obs_a = t.create(&observation(&pa)).await;
    // A's self-care alert: a complete set scoring NEWS2 7 or more, recorded by A.
    let at = "2026-12-07T08:00:00Z";
    let set = json!({"readings": [
        {"kind": "respiratory_rate", "value": 25, "effective": at},
        {"kind": "spo2", "value": 91, "effective": at},
        {"kind": "supplemental_oxygen", "code": "air", "effective": at},
        {"kind": "blood_pressure", "systolic": 95, "diastolic": 60, "effective": at},
        {"kind": "heart_rate", "value": 115, "effective": at},
        {"kind": "consciousness", "code": "A", "effective": at},
        {"kind": "body_temperature", "value": 38.5, "effective": at},
    ]});
    let (s, raised) = json_req(&t, &a, Method::POST, "/api/v1/health/vitals", &set).await;
    assert_eq!(s, 201, "{raised}");
    let alert_a = raised["alerts"][0]["id"].as_str().unwrap().to_owned();
    // A's own medication schedule (a MedicationStatement), for the edit and stop rows.
    let (s, added) = json_req(
        &t,
        &a,
        Method::POST,
        "/api/v1/medication/schedules",
        &json!({"medication": {"name": "metformin"}, "dose": {"value": 500, "unit": "mg"}, "times": ["08:00"], "start": "2026-12-01"}),
    )
    .await;
    assert_eq!(s, 201, "{added}");
    let sched_a =
        added["schedule"]["reference"].as_str().unwrap().trim_start_matches("MedicationStatement/").to_owned();
    let (s, intake) = json_req(
        &t,
        &t.client,
        Method::POST,
        "/api/v1/intake/sessions",
        &json!({"patient": pa, "language": "en", "consent": true}),
    )
    .await;
    assert_eq!(s, 201, "{intake}");
    let intake_a = intake["id"].as_str().unwrap().to_owned();
    // A's own alarm (alarms are the account's: nobody else reaches it, not even staff).
    let (s, alarm) = json_req(
        &t,
        &a,
        Method::POST,
        "/api/v1/alarms",
        &json!({"label": "Matrix", "kind": "custom", "at": "2099-01-01T08:00", "rrule": "FREQ=DAILY"}),
    )
    .await;
    assert_eq!(s, 201, "{alarm}");
    let alarm_a = alarm["id"].as_str().unwrap().to_owned();
    // A's virtual visit with a practitioner none of the matrix's accounts is (its video room).
    let prac = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Matrix"}]})).await;
    let visit_a = t
        .create(&json!({"resourceType": "Appointment", "status": "booked",
            "extension": [{"url": "urn:hearth:extension:appointment-virtual", "valueBoolean": true}],
            "start": "2026-12-07T10:00:00Z", "end": "2026-12-07T10:30:00Z",
            "participant": [{"actor": {"reference": format!("Patient/{pa}")}, "status": "accepted"},
                            {"actor": {"reference": format!("Practitioner/{prac}")}, "status": "accepted"}]}))
        .await;

    // (what, method, path, body, expected status per role in ROLES order)
    let mut rows: Vec<Row> = vec![
        ("capabilities", Method::GET, "/fhir/metadata".into(), None, [200, 200, 200, 200, 200, 200]),
        ("JWKS", Method::GET, "/.well-known/jwks.json".into(), None, [200, 200, 200, 200, 200, 200]),
        // The web screens hold no record (the script fills them through the API): the same page for all.
        ("web: clinic", Method::GET, "/".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: sign-in", Method::GET, "/signin".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: chart of A", Method::GET, format!("/patients/{pa}"), None, [200, 200, 200, 200, 200, 200]),
        ("web: patient app", Method::GET, "/app".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: intake summary", Method::GET, format!("/intake/{intake_a}"), None, [200, 200, 200, 200, 200, 200]),
        ("web: alerts inbox", Method::GET, "/alerts".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: admin console", Method::GET, "/admin".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: app manifest", Method::GET, "/app/manifest.webmanifest".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: service worker", Method::GET, "/app/sw.js".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: script", Method::GET, "/web/web.js".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: styles", Method::GET, "/web/app.css".into(), None, [200, 200, 200, 200, 200, 200]),
        ("web: icon", Method::GET, "/web/icon.svg".into(), None, [200, 200, 200, 200, 200, 200]),
        ("read A", Method::GET, format!("/fhir/Patient/{pa}"), None, [401, 200, 404, 200, 200, 200]),
        ("vread A", Method::GET, format!("/fhir/Patient/{pa}/_history/1"), None, [401, 200, 404, 200, 200, 200]),
        ("history of A", Method::GET, format!("/fhir/Patient/{pa}/_history"), None, [401, 200, 404, 200, 200, 200]),
        (
            "read A's Observation",
            Method::GET,
            format!("/fhir/Observation/{obs_a}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "search",
            Method::GET,
            format!("/fhir/Observation?subject=Patient/{pa}"),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        ("compartment", Method::GET, format!("/fhir/Patient/{pa}/*"), None, [401, 200, 200, 200, 200, 200]),
        (
            "$everything of A",
            Method::GET,
            format!("/fhir/Patient/{pa}/$everything"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        ("directory read", Method::GET, "/fhir/Practitioner?_count=1".into(), None, [401, 200, 200, 200, 200, 200]),
        ("type history", Method::GET, "/fhir/Observation/_history".into(), None, [401, 403, 403, 403, 200, 200]),
        ("system history", Method::GET, "/fhir/_history".into(), None, [401, 403, 403, 403, 200, 200]),
        (
            "create for A",
            Method::POST,
            "/fhir/Observation".into(),
            Some(observation(&pa)),
            [401, 201, 403, 201, 201, 201],
        ),
        (
            "update A's",
            Method::PUT,
            format!("/fhir/Observation/{obs_a}"),
            Some({
                let mut o = observation(&pa);
                o["id"] = json!(obs_a);
                o
            }),
            [401, 200, 403, 200, 200, 200],
        ),
        (
            "create directory entry",
            Method::POST,
            "/fhir/Practitioner".into(),
            Some(json!({"resourceType": "Practitioner", "name": [{"family": "New"}]})),
            [401, 403, 403, 403, 201, 201],
        ),
        (
            "transaction for A",
            Method::POST,
            "/fhir".into(),
            Some(json!({"resourceType": "Bundle", "type": "transaction",
            "entry": [{"resource": observation(&pa), "request": {"method": "POST", "url": "Observation"}}]})),
            [401, 200, 403, 200, 200, 200],
        ),
        ("me", Method::GET, "/api/v1/auth/me".into(), None, [401, 200, 200, 200, 200, 200]),
        ("start TOTP enrolment", Method::POST, "/api/v1/auth/totp/enroll".into(), None, [401, 200, 200, 200, 200, 200]),
        (
            "confirm TOTP with a wrong code",
            Method::POST,
            "/api/v1/auth/totp/confirm".into(),
            Some(json!({"code": "000000"})),
            [401, 400, 400, 400, 400, 400],
        ),
        (
            "A's intake session",
            Method::GET,
            format!("/api/v1/intake/sessions/{intake_a}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "A's intake summary (staff only)",
            Method::GET,
            format!("/api/v1/intake/sessions/{intake_a}/summary"),
            None,
            [401, 403, 403, 403, 200, 200],
        ),
        ("intake queue (staff only)", Method::GET, "/api/v1/intake/queue".into(), None, [401, 403, 403, 403, 200, 200]),
        (
            "a voice answer to A's intake that is not audio",
            Method::POST,
            format!("/api/v1/intake/sessions/{intake_a}/voice"),
            Some(json!({"text": "not audio"})),
            [401, 415, 404, 415, 415, 415],
        ),
        (
            "start A's intake without consent",
            Method::POST,
            "/api/v1/intake/sessions".into(),
            Some(json!({"patient": pa, "language": "en"})),
            [401, 422, 403, 403, 422, 422],
        ),
        (
            "own consents (patients only)",
            Method::GET,
            "/api/v1/me/consents".into(),
            None,
            [401, 200, 200, 403, 403, 403],
        ),
        (
            "give a consent without a kind",
            Method::POST,
            "/api/v1/me/consents".into(),
            Some(json!({})),
            [401, 400, 400, 403, 403, 403],
        ),
        (
            "revoke a consent that is not there",
            Method::DELETE,
            "/api/v1/me/consents/none-such".into(),
            None,
            [401, 404, 404, 403, 403, 403],
        ),
        (
            "own access log (patients only)",
            Method::GET,
            "/api/v1/me/access-log".into(),
            None,
            [401, 200, 200, 403, 403, 403],
        ),
        (
            "disable TOTP that is not on",
            Method::POST,
            "/api/v1/auth/totp/disable".into(),
            Some(json!({"password": PASSWORD, "code": "000000"})),
            [401, 409, 409, 409, 409, 409],
        ),
        (
            "delete an OAuth client",
            Method::DELETE,
            "/api/v1/admin/oauth/clients/no-such-client".into(),
            None,
            [401, 403, 403, 403, 403, 404],
        ),
        (
            "SMART discovery",
            Method::GET,
            "/.well-known/smart-configuration".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        ("list OAuth clients", Method::GET, "/api/v1/admin/oauth/clients".into(), None, [401, 403, 403, 403, 403, 200]),
        // RFC 7662: a signed-in caller; without a `token` parameter, invalid_request.
        ("introspect a token", Method::POST, "/oauth/introspect".into(), None, [401, 400, 400, 400, 400, 400]),
        // RFC 7009: anyone holding a token may revoke it; without one, invalid_request.
        ("revoke a token", Method::POST, "/oauth/revoke".into(), None, [400, 400, 400, 400, 400, 400]),
        (
            "register an OAuth client",
            Method::POST,
            "/api/v1/admin/oauth/clients".into(),
            Some(
                json!({"name": "App", "redirect_uris": ["https://app.example/cb"], "confidential": false, "scope": "launch/patient patient/*.rs"}),
            ),
            [401, 403, 403, 403, 403, 201],
        ),
        (
            "grant a caregiver",
            Method::POST,
            "/api/v1/admin/caregivers".into(),
            Some(json!({"caregiver": carer_id, "patient": pb})),
            [401, 403, 403, 403, 403, 204],
        ),
        ("list own notifications", Method::GET, "/api/v1/notifications".into(), None, [401, 200, 200, 200, 200, 200]),
        (
            "mark a notification read that is not one's own",
            Method::POST,
            "/api/v1/notifications/no-such-notification/read".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "notification WebSocket without an upgrade",
            Method::GET,
            "/api/v1/notifications/ws".into(),
            None,
            [401, 426, 426, 426, 426, 426],
        ),
        (
            "notification preferences",
            Method::GET,
            "/api/v1/notifications/preferences".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "set notification preferences",
            Method::PUT,
            "/api/v1/notifications/preferences".into(),
            Some(json!({"language": "hi", "quiet_hours": {"start": "22:00", "end": "07:00"}})),
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "register a push device",
            Method::POST,
            "/api/push/register".into(),
            Some(json!({"kind": "fcm", "token": "matrix-device-token"})),
            [401, 201, 201, 201, 201, 201],
        ),
        ("VAPID public key", Method::GET, "/api/push/vapid-public-key".into(), None, [200, 200, 200, 200, 200, 200]),
        (
            "failed notifications (admin view)",
            Method::GET,
            "/api/v1/admin/notifications?status=failed".into(),
            None,
            [401, 403, 403, 403, 403, 200],
        ),
        ("accounts (admin view)", Method::GET, "/api/v1/admin/accounts".into(), None, [401, 403, 403, 403, 403, 200]),
        (
            "reset the carer's 2FA (admins only)",
            Method::POST,
            format!("/api/v1/admin/accounts/{carer_id}/totp/reset"),
            None,
            [401, 403, 403, 403, 403, 200],
        ),
        ("registry: read A", Method::GET, format!("/api/v1/patients/{pa}"), None, [401, 200, 404, 200, 200, 200]),
        (
            "registry: A's demographics",
            Method::GET,
            format!("/api/v1/patients/{pa}/demographics"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        ("registry: search", Method::GET, "/api/v1/patients?q=zz".into(), None, [401, 403, 403, 403, 200, 200]),
        (
            "registry: create patient (invalid name: staff get as far as validation)",
            Method::POST,
            "/api/v1/patients".into(),
            Some(json!({"given": []})),
            [401, 403, 403, 403, 400, 400],
        ),
        (
            "selfcare: record A's vitals (impossible value: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/health/vitals".into(),
            Some(
                json!({"patient": pa, "readings": [{"kind": "spo2", "value": 104, "effective": "2026-12-07T08:00:00Z"}]}),
            ),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "selfcare: A's latest vitals",
            Method::GET,
            format!("/api/v1/health?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "selfcare: A's vitals history",
            Method::GET,
            format!("/api/v1/health/history?patient={pa}&kind=heart_rate"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "medication: check a list (no patient)",
            Method::GET,
            "/api/v1/medication/interactions?drug=warfarin&drug=ibuprofen".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "medication: check a list against A's medications and allergies",
            Method::GET,
            format!("/api/v1/medication/interactions?drug=warfarin&patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "medication: A's schedules",
            Method::GET,
            format!("/api/v1/medication/schedules?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "medication: add a schedule for A (no timing: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/medication/schedules".into(),
            Some(
                json!({"patient": pa, "medication": {"name": "metformin"}, "dose": {"value": 500, "unit": "mg"}, "start": "2026-12-01"}),
            ),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "medication: change A's schedule (bad times: A and their caregiver get as far as validation; staff do not change the patient's own statement)",
            Method::PUT,
            format!("/api/v1/medication/schedules/{sched_a}"),
            Some(
                json!({"medication": {"name": "metformin"}, "dose": {"value": 500, "unit": "mg"}, "times": ["25:00"], "start": "2026-12-01"}),
            ),
            [401, 400, 404, 400, 403, 403],
        ),
        (
            "medication: stop A's schedule (empty reason: A and their caregiver get as far as validation)",
            Method::POST,
            format!("/api/v1/medication/schedules/{sched_a}/stop"),
            Some(json!({"reason": ""})),
            [401, 400, 404, 400, 403, 403],
        ),
        (
            "medication: sign a prescription for A (only a clinician with a Practitioner record signs; this one has none)",
            Method::POST,
            "/api/v1/medication/prescriptions".into(),
            Some(json!({"patient": pa, "orders": []})),
            [401, 403, 403, 403, 403, 403],
        ),
        (
            "medication: a prescription that does not exist (reach to a real one is in it::medication)",
            Method::GET,
            "/api/v1/medication/prescriptions/no-such-prescription".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "medication: A's dose logs",
            Method::GET,
            format!("/api/v1/medication/logs?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "medication: log a dose for A (bad status: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/medication/logs".into(),
            Some(json!({"patient": pa, "schedule": "MedicationStatement/x", "status": "eaten"})),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "medication: adherence of one of A's schedules (bad reference: those who reach A get as far as validation)",
            Method::GET,
            format!("/api/v1/medication/adherence?patient={pa}&schedule=x"),
            None,
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "selfcare: A's alerts",
            Method::GET,
            format!("/api/v1/health/alerts?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        ("selfcare: my alerts", Method::GET, "/api/v1/health/alerts".into(), None, [401, 200, 200, 200, 200, 200]),
        (
            "selfcare: acknowledge A's alert (not A: a caregiver or the care team)",
            Method::POST,
            format!("/api/v1/health/alerts/{alert_a}/acknowledge"),
            None,
            [401, 403, 404, 200, 200, 200],
        ),
        (
            "selfcare: A's alert settings",
            Method::GET,
            format!("/api/v1/health/alerts/settings?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "selfcare: set A's alert settings (staff only)",
            Method::PUT,
            format!("/api/v1/health/alerts/settings?patient={pa}"),
            Some(json!({"spo2_scale2": false, "thresholds": [{"parameter": "systolic_bp", "above": 160}]})),
            [401, 403, 404, 403, 200, 200],
        ),
        (
            "emergency: A's contacts",
            Method::GET,
            format!("/api/v1/emergency/contacts?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "emergency: add a contact for A (invalid phone: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/emergency/contacts".into(),
            Some(json!({"patient": pa, "name": "Matrix", "phone": "12345", "relationship": "friend"})),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "emergency: alert for A (invalid position: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/emergency/alert".into(),
            Some(json!({"patient": pa, "position": {"latitude": 91.0, "longitude": 0.0}})),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "emergency: cancel an alert that does not exist",
            Method::POST,
            "/api/v1/emergency/alert/none-such/cancel".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        // A video room is for the booked patient, the visit's practitioners and invited accounts only.
        (
            "telehealth: A's video room",
            Method::GET,
            format!("/api/v1/telehealth/rooms/{visit_a}"),
            None,
            [401, 200, 404, 403, 403, 403],
        ),
        (
            "telehealth: a room that does not exist",
            Method::GET,
            "/api/v1/telehealth/rooms/none-such".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "telehealth: invite into A's room (only the visit's practitioners invite)",
            Method::POST,
            format!("/api/v1/telehealth/rooms/{visit_a}/invites"),
            Some(json!({"account": "none-such", "role": "caregiver"})),
            [401, 403, 404, 403, 403, 403],
        ),
        (
            "telehealth: the signaling socket, asked without an upgrade (the ticket is the credential)",
            Method::GET,
            format!("/api/v1/telehealth/ws/{visit_a}?ticket=none"),
            None,
            [426, 426, 426, 426, 426, 426],
        ),
        ("telehealth: test page", Method::GET, "/telehealth/test".into(), None, [200, 200, 200, 200, 200, 200]),
        (
            "telehealth: test page script",
            Method::GET,
            "/telehealth/test.js".into(),
            None,
            [200, 200, 200, 200, 200, 200],
        ),
        ("alarms: the caller's own", Method::GET, "/api/v1/alarms".into(), None, [401, 200, 200, 200, 200, 200]),
        (
            "alarms: create one (bad rule: everyone signed in gets as far as validation)",
            Method::POST,
            "/api/v1/alarms".into(),
            Some(json!({"label": "Matrix", "kind": "custom", "at": "2099-01-01T08:00", "rrule": "FREQ=YEARLY"})),
            [401, 400, 400, 400, 400, 400],
        ),
        ("alarms: A's alarm", Method::GET, format!("/api/v1/alarms/{alarm_a}"), None, [401, 200, 404, 404, 404, 404]),
        (
            "alarms: replace A's alarm (bad kind: A gets as far as validation)",
            Method::PUT,
            format!("/api/v1/alarms/{alarm_a}"),
            Some(json!({"label": "Matrix", "kind": "coffee", "at": "2099-01-01T08:00"})),
            [401, 400, 404, 404, 404, 404],
        ),
        (
            "alarms: delete an alarm that does not exist",
            Method::DELETE,
            "/api/v1/alarms/none-such".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "alarms: the caller's rings",
            Method::GET,
            "/api/v1/alarms/notifications".into(),
            None,
            [401, 200, 200, 200, 200, 200],
        ),
        (
            "alarms: mark a ring that does not exist read",
            Method::POST,
            "/api/v1/alarms/notifications/none-such/read".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "wellness: log A's water (bad volume: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/tracking/water".into(),
            Some(json!({"patient": pa, "volume_ml": 0})),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "wellness: A's water log",
            Method::GET,
            format!("/api/v1/tracking/water?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "wellness: log A's meditation (no duration: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/meditation/sessions".into(),
            Some(json!({"patient": pa})),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "wellness: A's meditation sessions",
            Method::GET,
            format!("/api/v1/meditation/sessions?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "wellness: set a goal for A (unknown metric: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/goals".into(),
            Some(json!({"patient": pa, "metric": "none-such", "target": 1})),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "wellness: A's goals",
            Method::GET,
            format!("/api/v1/goals?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "wellness: A's daily summary",
            Method::GET,
            format!("/api/v1/summaries/daily?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "wellness: A's summary settings",
            Method::GET,
            format!("/api/v1/summaries/settings?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "wellness: set A's summary time (bad time: A and A's caregiver get as far as validation)",
            Method::PUT,
            "/api/v1/summaries/settings".into(),
            Some(json!({"patient": pa, "time": "25:00"})),
            [401, 400, 404, 400, 403, 403],
        ),
        (
            "wellness: write in A's chat (blank text: those who reach A get as far as validation)",
            Method::POST,
            "/api/v1/chat/message".into(),
            Some(json!({"patient": pa, "text": " "})),
            [401, 400, 404, 400, 400, 400],
        ),
        (
            "wellness: A's chat history",
            Method::GET,
            format!("/api/v1/chat/history?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "wellness: mark A's chat read",
            Method::POST,
            "/api/v1/chat/read".into(),
            Some(json!({"patient": pa})),
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "wellness: A's chat socket (not an upgrade: those who reach A get as far as the upgrade)",
            Method::GET,
            format!("/api/v1/chat/ws?patient={pa}"),
            None,
            [401, 426, 404, 426, 426, 426],
        ),
        ("profile: A's", Method::GET, format!("/api/v1/profile?patient={pa}"), None, [401, 200, 404, 200, 200, 200]),
        (
            "profile: change one's own (bad zone: only a patient gets as far as validation)",
            Method::PUT,
            "/api/v1/profile".into(),
            Some(json!({"timeZone": "Mars/Base"})),
            [401, 400, 400, 403, 403, 403],
        ),
        ("registry: provider directory", Method::GET, "/api/v1/providers".into(), None, [401, 200, 200, 200, 200, 200]),
        (
            "registry: create provider",
            Method::POST,
            "/api/v1/providers".into(),
            Some(json!({"family": "Matrix", "specialty": {"system": "snomed", "code": "394801008"}})),
            [401, 403, 403, 403, 403, 201],
        ),
        (
            "staff message to patient A",
            Method::POST,
            "/api/v1/notifications/send".into(),
            Some(json!({"to": {"patient": pa}, "category": "announcement", "title": "Matrix", "message": "Hello."})),
            [401, 403, 403, 403, 202, 202],
        ),
        (
            "staff message to patient A (replaced system's path)",
            Method::POST,
            "/api/push/send".into(),
            Some(json!({"to": {"patient": pa}, "category": "results", "title": "Matrix", "message": "Hello."})),
            [401, 403, 403, 403, 202, 202],
        ),
        (
            "Twilio status callback (not configured here)",
            Method::POST,
            "/api/v1/notifications/twilio/status".into(),
            None,
            [404, 404, 404, 404, 404, 404],
        ),
    ];
    // A's journal entry, written by A.
    let (s, entry) =
        json_req(&t, &a, Method::POST, "/api/v1/journal/entries", &json!({"text": "Matrix day.", "mood": 3})).await;
    assert_eq!(s, 201, "{entry}");
    let entry_a = entry["id"].as_str().unwrap().to_owned();
    rows.extend([
        (
            "journal: write an entry (bad mood: refused before any record is named)",
            Method::POST,
            "/api/v1/journal/entries".into(),
            Some(json!({"patient": pa, "text": "x", "mood": 9})),
            [401, 400, 400, 400, 400, 400],
        ),
        (
            "journal: A's entries",
            Method::GET,
            format!("/api/v1/journal/entries?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "journal: A's entry",
            Method::GET,
            format!("/api/v1/journal/entries/{entry_a}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "journal: edit A's entry (bad mood: refused before it is read)",
            Method::PUT,
            format!("/api/v1/journal/entries/{entry_a}"),
            Some(json!({"text": "x", "mood": 0})),
            [401, 400, 400, 400, 400, 400],
        ),
        (
            "journal: delete an entry that does not exist",
            Method::DELETE,
            "/api/v1/journal/entries/none-such".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "journal: A's entry's history",
            Method::GET,
            format!("/api/v1/journal/entries/{entry_a}/history"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "journal: A's trends",
            Method::GET,
            format!("/api/v1/journal/trends?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "journal: A's export",
            Method::GET,
            format!("/api/v1/journal/export?patient={pa}&format=csv"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
    ]);
    let doc_a = document_of(&t, &pa).await;
    rows.extend([
        (
            "documents: list A's",
            Method::GET,
            format!("/api/v1/documents?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "documents: A's content",
            Method::GET,
            format!("/api/v1/documents/{doc_a}/content"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "documents: results read from A's",
            Method::GET,
            format!("/api/v1/documents/{doc_a}/results"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "documents: review a result A's document does not have",
            Method::POST,
            format!("/api/v1/documents/{doc_a}/results/none-such"),
            Some(json!({"action": "confirm"})),
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "PHR: A's summary",
            Method::GET,
            format!("/api/v1/phr/summary?patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "PHR: A's HbA1c history",
            Method::GET,
            format!("/api/v1/phr/results?code=4548-4&patient={pa}"),
            None,
            [401, 200, 404, 200, 200, 200],
        ),
        (
            "documents: an upload that is not multipart",
            Method::POST,
            "/api/v1/documents".into(),
            Some(json!({})),
            [401, 415, 415, 415, 415, 415],
        ),
        (
            "documents: delete one that is not there",
            Method::DELETE,
            "/api/v1/documents/none-such".into(),
            None,
            [401, 404, 404, 404, 404, 404],
        ),
        (
            "documents: tus discovery",
            Method::OPTIONS,
            "/api/v1/documents/uploads".into(),
            None,
            [204, 204, 204, 204, 204, 204],
        ),
        (
            "documents: tus creation without Tus-Resumable",
            Method::POST,
            "/api/v1/documents/uploads".into(),
            None,
            [401, 412, 412, 412, 412, 412],
        ),
        (
            "documents: tus HEAD without Tus-Resumable",
            Method::HEAD,
            "/api/v1/documents/uploads/00000000-0000-4000-8000-000000000000".into(),
            None,
            [401, 412, 412, 412, 412, 412],
        ),
        (
            "documents: tus PATCH without Tus-Resumable",
            Method::PATCH,
            "/api/v1/documents/uploads/00000000-0000-4000-8000-000000000000".into(),
            None,
            [401, 412, 412, 412, 412, 412],
        ),
        (
            "documents: tus termination without Tus-Resumable",
            Method::DELETE,
            "/api/v1/documents/uploads/00000000-0000-4000-8000-000000000000".into(),
            None,
            [401, 412, 412, 412, 412, 412],
        ),
    ]);
    // Deletes: a fresh document of A for each role.
    for (i, _) in ROLES.iter().enumerate() {
        let id = document_of(&t, &pa).await;
        let mut expected = [0; 6];
        expected[i] = [401, 204, 404, 204, 204, 204][i];
        rows.push(("documents: delete A's", Method::DELETE, format!("/api/v1/documents/{id}"), None, expected));
    }
    // Deletes: a fresh Observation of A for each role.
    for (i, _) in ROLES.iter().enumerate() {
        let id = t.create(&observation(&pa)).await;
        let mut expected = [0; 6];
        expected[i] = [401, 204, 403, 204, 204, 204][i];
        rows.push(("delete A's", Method::DELETE, format!("/fhir/Observation/{id}"), None, expected));
    }
    let mut mismatches = Vec::new();
    for (what, method, path, body, expected) in &rows {
        for (i, client) in clients.iter().enumerate() {
            if expected[i] == 0 {
                continue;
            }
            let mut req = client.request(method.clone(), t.url(path));
            if let Some(body) = body {
                let ct = if path.starts_with("/api") { "application/json" } else { "application/fhir+json" };
                req = req.header("content-type", ct).body(body.to_string());
            }
            let before = audit_state(&t).await.0;
            let r = t.send(req).await;
            if r.status != expected[i] {
                mismatches
                    .push(format!("{what} ({method} {path}) as {}: {} expected {}", ROLES[i], r.status, expected[i]));
            }
            let problem = if events(path, r.status) == 1 {
                audited_once(&t, before, ids[i], r.status).await
            } else {
                let n = audit_state(&t).await.0;
                (n != before).then(|| format!("{} audit events instead of none", n - before))
            };
            if let Some(problem) = problem {
                mismatches.push(format!("{what} ({method} {path}) as {}: {problem}", ROLES[i]));
            }
            if r.status == 401 && path.starts_with("/fhir") {
                r.outcome_issue();
            }
        }
    }
    // Interactions with their own content types and headers, role by role in order.
    let mut conditional = observation(&pa);
    conditional["identifier"] = json!([{"system": "urn:matrix", "value": "once"}]);
    for (i, client) in clients.iter().enumerate() {
        let (form_type, form) = pdf_form(&pa);
        let checks: [(&str, reqwest::RequestBuilder, u16); 6] = [
            (
                "documents: upload for A (multipart)",
                client.post(t.url("/api/v1/documents")).header("content-type", form_type).body(form),
                [401, 201, 404, 201, 201, 201][i],
            ),
            (
                "documents: tus creation for A",
                client
                    .post(t.url("/api/v1/documents/uploads"))
                    .header("tus-resumable", "1.0.0")
                    .header("upload-length", "100")
                    .header("upload-metadata", format!("patient {}", data_encoding::BASE64.encode(pa.as_bytes()))),
                [401, 201, 404, 201, 201, 201][i],
            ),
            (
                "JSON Patch of A's Observation",
                client
                    .patch(t.url(&format!("/fhir/Observation/{obs_a}")))
                    .header("content-type", "application/json-patch+json")
                    .body(json!([{"op": "replace", "path": "/status", "value": "amended"}]).to_string()),
                [401, 200, 404, 200, 200, 200][i],
            ),
            (
                "POST _search",
                client
                    .post(t.url("/fhir/Observation/_search"))
                    .header("content-type", "application/x-www-form-urlencoded")
                    .body(format!("subject=Patient/{pa}")),
                [401, 200, 200, 200, 200, 200][i],
            ),
            (
                // A creates it; B may not write into A's record; the others find A's and create nothing.
                "conditional create for A",
                client
                    .post(t.url("/fhir/Observation"))
                    .header("content-type", "application/fhir+json")
                    .header("if-none-exist", "identifier=urn:matrix|once")
                    .body(conditional.to_string()),
                [401, 201, 403, 200, 200, 200][i],
            ),
            ("$reindex", client.post(t.url("/fhir/Observation/$reindex")), [401, 403, 403, 403, 403, 202][i]),
        ];
        for (what, req, want) in checks {
            let before = audit_state(&t).await.0;
            let r = t.send(req).await;
            if r.status != want {
                mismatches.push(format!("{what} as {}: {} expected {want}: {}", ROLES[i], r.status, r.text));
            }
            if let Some(problem) = audited_once(&t, before, ids[i], r.status).await {
                mismatches.push(format!("{what} as {}: {problem}", ROLES[i]));
            }
        }
    }
    // Population-level operations: admins (unrestricted) only.
    for (i, client) in clients.iter().enumerate() {
        let before = audit_state(&t).await.0;
        let r = t.send(client.get(t.url("/fhir/$export")).header("prefer", "respond-async")).await;
        let want = [401, 403, 403, 403, 202, 202][i];
        if r.status != want {
            mismatches.push(format!("$export as {}: {} expected {want}", ROLES[i], r.status));
        }
        if let Some(problem) = audited_once(&t, before, ids[i], r.status).await {
            mismatches.push(format!("$export as {}: {problem}", ROLES[i]));
        }
        // Patient code login is public (and never says whether the address has an account).
        let (s, _) = json_req(
            &t,
            client,
            Method::POST,
            "/api/v1/auth/otp/request",
            &json!({"email": format!("otp{i}@example.org")}),
        )
        .await;
        if s != 202 {
            mismatches.push(format!("otp/request as {}: {s} expected 202", ROLES[i]));
        }
        let body = json!({"email": format!("new{i}@example.org"), "password": PASSWORD, "role": "clinician"});
        let (s, _) = json_req(&t, client, Method::POST, "/api/v1/admin/accounts", &body).await;
        let want = [401, 403, 403, 403, 403, 201][i];
        if s != want {
            mismatches.push(format!("create account as {}: {s} expected {want}", ROLES[i]));
        }
    }
    // Last: logging out everywhere (revokes refresh tokens; the access tokens above stay valid).
    for (i, client) in clients.iter().enumerate() {
        let (s, _) = json_req(&t, client, Method::POST, "/api/v1/auth/logout", &json!({"everywhere": true})).await;
        let want = [401, 204, 204, 204, 204, 204][i];
        if s != want {
            mismatches.push(format!("logout everywhere as {}: {s} expected {want}", ROLES[i]));
        }
    }
    assert!(mismatches.is_empty(), "{} mismatches:\n{}", mismatches.len(), mismatches.join("\n"));

    // What patient A may see: A's compartment (as the admin sees it), A, and shared types.
    let mut allowed: BTreeSet<String> =
        all_pages(&t, &t.client, &format!("/fhir/Patient/{pa}/*?_count=500")).await.into_iter().collect();
    allowed.insert(format!("Patient/{pa}"));
    let queries = [
        "/fhir/Observation?_include=Observation:subject&_include=Observation:performer&_include=Observation:encounter&_count=500".to_owned(),
        "/fhir/Patient?_revinclude=Observation:subject&_revinclude=Condition:subject&_revinclude=Encounter:subject&_count=500".to_owned(),
        "/fhir/Encounter?_include=Encounter:participant&_include=Encounter:service-provider&_revinclude=Observation:encounter&_count=500".to_owned(),
        "/fhir/Encounter?_include:iterate=*&_revinclude:iterate=Provenance:target&_count=200".to_owned(),
        "/fhir/Condition?subject:Patient.gender=male,female&_include=Condition:subject&_count=500".to_owned(),
        "/fhir/Patient?_has:Encounter:patient:status=finished".to_owned(),
        "/fhir?_type=Patient,Observation,Condition,Encounter,Claim,Provenance&_count=500".to_owned(),
        format!("/fhir/Patient/{pb}/*?_count=500"),
        format!("/fhir/Observation?subject=Patient/{pb}&_count=500"),
        "/fhir/Provenance?_include=Provenance:target&_count=500".to_owned(),
    ];
    let mut seen_by_a = 0;
    for q in &queries {
        let got = all_pages(&t, &a, q).await;
        for id in &got {
            let ty = id.split('/').next().unwrap();
            assert!(allowed.contains(id) || SHARED.contains(&ty), "patient A saw {id} through {q}");
        }
        seen_by_a += got.len();
        // The same query as the admin sees B's data too: the narrowing is real.
        if q.contains("_type=") {
            let admin = all_pages(&t, &t.client, q).await;
            assert!(admin.len() > got.len(), "{q}: admin {} vs A {}", admin.len(), got.len());
        }
    }
    assert!(seen_by_a > 50, "patient A should see their own Synthea record ({seen_by_a})");
}
