//! Consent (issue 7): a patient shares their record with a practitioner, an organisation or a
//! caregiver account for a period, and revokes it; access follows at once. Contact and research
//! consents are recorded and read back.

use chrono::Duration;
use hearth_server::app::Clock;
use serde_json::{Value, json};

use crate::common::{TestApp, patient};

const PASSWORD: &str = "consent-heron-meadow-52";

pub(crate) async fn json_req(
    t: &TestApp,
    c: &reqwest::Client,
    method: reqwest::Method,
    path: &str,
    body: Option<&Value>,
) -> (u16, Value) {
    let mut req = c.request(method, t.url(path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = t.send(req).await;
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

pub(crate) async fn account(t: &TestApp, email: &str, body: Value) -> (String, reqwest::Client) {
    let mut body = body;
    body["email"] = json!(email);
    body["password"] = json!(PASSWORD);
    let r = t.post("/api/v1/admin/accounts", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let (s, l) = json_req(
        t,
        &t.anonymous(),
        reqwest::Method::POST,
        "/api/v1/auth/login",
        Some(&json!({"email": email, "password": PASSWORD})),
    )
    .await;
    assert_eq!(s, 200, "{l}");
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(
        reqwest::header::AUTHORIZATION,
        format!("Bearer {}", l["access_token"].as_str().unwrap()).parse().unwrap(),
    );
    (r.json()["id"].as_str().unwrap().to_owned(), reqwest::Client::builder().default_headers(h).build().unwrap())
}

async fn status_of(t: &TestApp, c: &reqwest::Client, path: &str) -> u16 {
    t.send(c.get(t.url(path))).await.status
}

#[tokio::test]
async fn sharing_grants_access_for_its_period_and_revoking_ends_it_at_once() {
    let t = TestApp::spawn().await;
    let org = t.create(&json!({"resourceType": "Organization", "name": "Elsewhere Clinic"})).await;
    let practitioner = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Rao"}]})).await;
    let pid = t.create(&patient("Sharer")).await;
    let obs = t
        .create(&json!({"resourceType": "Observation", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
            "subject": {"reference": format!("Patient/{pid}")}}))
        .await;
    let (_, me) =
        account(&t, "sharer@example.org", json!({"role": "patient", "fhirUser": format!("Patient/{pid}")})).await;
    let (_, doc) = account(
        &t,
        "rao@elsewhere.example",
        json!({"role": "clinician", "fhirUser": format!("Practitioner/{practitioner}"), "organization": org}),
    )
    .await;
    let (carer_id, carer) = account(&t, "carer@example.org", json!({"role": "caregiver"})).await;
    let read_patient = format!("/fhir/Patient/{pid}");
    let read_obs = format!("/fhir/Observation/{obs}");

    // Not this clinic's patient: invisible.
    assert_eq!(status_of(&t, &doc, &read_patient).await, 404);
    assert_eq!(status_of(&t, &carer, &read_obs).await, 404);

    // Share with Dr Rao.
    let (s, shared) = json_req(
        &t,
        &me,
        reqwest::Method::POST,
        "/api/v1/me/consents",
        Some(&json!({"kind": "share", "with": format!("Practitioner/{practitioner}")})),
    )
    .await;
    assert_eq!(s, 201, "{shared}");
    assert_eq!(shared["kind"], "share");
    assert_eq!(shared["inForce"], true);
    assert_eq!(status_of(&t, &doc, &read_patient).await, 200);
    assert_eq!(status_of(&t, &doc, &read_obs).await, 200);
    let found = t.send(doc.get(t.url(&format!("/fhir/Observation?subject=Patient/{pid}")))).await.json();
    assert_eq!(found["entry"].as_array().map(Vec::len), Some(1));
    // The stored Consent is valid R4 and in the patient's record.
    let stored = t.get(&format!("/fhir/Consent/{}", shared["id"].as_str().unwrap())).await;
    assert_eq!(stored.status, 200);
    crate::common::assert_valid_r4(&stored.json());

    // Revoke: effective on the next request.
    let (s, revoked) = json_req(
        &t,
        &me,
        reqwest::Method::DELETE,
        &format!("/api/v1/me/consents/{}", shared["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 200, "{revoked}");
    assert_eq!(revoked["status"], "inactive");
    assert_eq!(revoked["inForce"], false);
    assert_eq!(status_of(&t, &doc, &read_patient).await, 404);
    assert_eq!(status_of(&t, &doc, &read_obs).await, 404);

    // Share with the whole organisation, for a period that has not begun, then has.
    // (Instants a few minutes ahead: moving the clock by days would expire the access tokens.)
    let at = |minutes| (t.clock.now() + Duration::minutes(minutes)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (start, end) = (at(2), at(6));
    let (s, later) = json_req(
        &t,
        &me,
        reqwest::Method::POST,
        "/api/v1/me/consents",
        Some(&json!({"kind": "share", "with": format!("Organization/{org}"), "start": start, "end": end})),
    )
    .await;
    assert_eq!(s, 201, "{later}");
    assert_eq!(later["inForce"], false);
    assert_eq!(status_of(&t, &doc, &read_patient).await, 404);
    t.clock.set(t.clock.now() + Duration::minutes(3));
    assert_eq!(status_of(&t, &doc, &read_patient).await, 200);
    t.clock.set(t.clock.now() + Duration::minutes(5));
    assert_eq!(status_of(&t, &doc, &read_patient).await, 404, "the period is over");

    // Share with a caregiver account.
    let (s, _) = json_req(
        &t,
        &me,
        reqwest::Method::POST,
        "/api/v1/me/consents",
        Some(&json!({"kind": "share", "with": format!("account:{carer_id}")})),
    )
    .await;
    assert_eq!(s, 201);
    assert_eq!(status_of(&t, &carer, &read_obs).await, 200);

    // The list, newest first, with every consent and whether it is in force.
    let (s, list) = json_req(&t, &me, reqwest::Method::GET, "/api/v1/me/consents", None).await;
    assert_eq!(s, 200);
    let kinds: Vec<(&str, bool)> = list["consents"]
        .as_array()
        .unwrap()
        .iter()
        .map(|c| (c["with"].as_str().unwrap(), c["inForce"].as_bool().unwrap()))
        .collect();
    assert_eq!(
        kinds,
        [
            (format!("account:{carer_id}").as_str(), true),
            (format!("Organization/{org}").as_str(), false),
            (format!("Practitioner/{practitioner}").as_str(), false),
        ]
    );
    // Consent changes are audited like any access to the record.
    let audit = t.get(&format!("/fhir/AuditEvent?patient=Patient/{pid}&_count=200")).await.json().to_string();
    assert!(audit.contains("/api/v1/me/consents"), "consent changes are in the audit trail");
}

#[tokio::test]
async fn contact_and_research_consents_and_bad_input() {
    let t = TestApp::spawn().await;
    let pid = t.create(&patient("Contact")).await;
    let (_, me) =
        account(&t, "contact@example.org", json!({"role": "patient", "fhirUser": format!("Patient/{pid}")})).await;
    let (doc_id, doc) = account(&t, "doc@example.org", json!({"role": "clinician"})).await;
    let org = t.create(&json!({"resourceType": "Organization", "name": "Some Clinic"})).await;
    let now = t.clock.now();
    let allowed = |channel: &'static str| {
        let app = t.app.clone();
        let pid = pid.clone();
        async move { hearth_server::consent::contact_allowed(&app, &pid, channel, now).await.unwrap() }
    };
    assert!(allowed("sms").await, "without a consent, contact is allowed");
    let give = |body: Value| {
        let (t, me) = (&t, &me);
        async move { json_req(t, me, reqwest::Method::POST, "/api/v1/me/consents", Some(&body)).await }
    };
    let (s, v) = give(json!({"kind": "contact", "channel": "sms", "allow": false})).await;
    assert_eq!(s, 201, "{v}");
    assert!(!allowed("sms").await);
    assert!(allowed("email").await);
    t.clock.set(now + Duration::seconds(5));
    let (s, _) = give(json!({"kind": "contact", "channel": "sms", "allow": true})).await;
    assert_eq!(s, 201);
    let later = now + Duration::seconds(5);
    assert!(hearth_server::consent::contact_allowed(&t.app, &pid, "sms", later).await.unwrap(), "the newest decides");
    let (s, research) = give(json!({"kind": "research", "allow": false})).await;
    assert_eq!(s, 201);
    assert_eq!(research["kind"], "research");
    assert_eq!(research["allow"], false);

    for (body, why) in [
        (json!({"kind": "gossip"}), "unknown kind"),
        (json!({"kind": "share"}), "share without with"),
        (json!({"kind": "share", "with": "Patient/x"}), "a share with a patient"),
        (json!({"kind": "contact", "channel": "pigeon", "allow": true}), "unknown channel"),
        (json!({"kind": "research"}), "no allow"),
        (
            json!({"kind": "share", "with": "Practitioner/p", "start": "2026-05-01", "end": "2026-04-01"}),
            "end before start",
        ),
        (json!({"kind": "share", "with": "Practitioner/p", "start": "soon"}), "bad date"),
        // A share names someone who is there (issue 26): not a made-up id, nor a non-caregiver account.
        (json!({"kind": "share", "with": "Practitioner/nobody"}), "no such practitioner"),
        (json!({"kind": "share", "with": "Organization/nowhere"}), "no such organization"),
        (json!({"kind": "share", "with": format!("Practitioner/{org}")}), "an organization's id as a practitioner"),
        (json!({"kind": "share", "with": "account:no-such-account"}), "no such account"),
        (json!({"kind": "share", "with": format!("account:{doc_id}")}), "a clinician's account is no caregiver"),
    ] {
        let (s, v) = give(body).await;
        assert_eq!(s, 400, "{why}: {v}");
        assert_eq!(v["error"]["code"], "invalid_consent", "{why}");
    }
    let (s, v) = give(json!({"kind": "share", "with": "Practitioner/p", "extra": 1})).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_body")));
    let (s, _) = json_req(&t, &doc, reqwest::Method::GET, "/api/v1/me/consents", None).await;
    assert_eq!(s, 403, "consents belong to patient accounts");
    let (s, _) = json_req(&t, &me, reqwest::Method::DELETE, "/api/v1/me/consents/not-there", None).await;
    assert_eq!(s, 404);
    // Another patient's consent is not found either.
    let other = t.create(&patient("Other")).await;
    let (_, them) =
        account(&t, "other@example.org", json!({"role": "patient", "fhirUser": format!("Patient/{other}")})).await;
    let (s, theirs) = json_req(
        &t,
        &them,
        reqwest::Method::POST,
        "/api/v1/me/consents",
        Some(&json!({"kind": "research", "allow": true})),
    )
    .await;
    assert_eq!(s, 201);
    let (s, _) = json_req(
        &t,
        &me,
        reqwest::Method::DELETE,
        &format!("/api/v1/me/consents/{}", theirs["id"].as_str().unwrap()),
        None,
    )
    .await;
    assert_eq!(s, 404);
}
