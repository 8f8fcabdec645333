//! Self-care alerts (issue 18, item 2): a patient's set of readings that scores NEWS2 ≥ 7
//! raises an alert that reaches their caregiver by SMS (through a real local Twilio-protocol
//! server) and their clinician in the app, at once; a second high set does not send again; an
//! unacknowledged alert escalates to the organisation's clinicians when the (pinned) clock
//! passes its time, an acknowledged one does not; a later calm set resolves it; personal
//! thresholds and SpO2 scale 2 set by a clinician; another patient sees and acknowledges nothing;
//! and (item 1) a batch sent again with its Idempotency-Key is answered the same, not applied twice.

use chrono::{DateTime, TimeDelta, Utc};
use hearth_server::App;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::notify_peers::eventually;
use crate::phone::Log;
use crate::scheduling::{bearer, call, patient_account};

const CAREGIVER_PHONE: &str = "+919800000101";

async fn with_sms_peer() -> (TestApp, Log) {
    crate::phone::with_sms_peer_and(|c| c.selfcare.escalate_after_minutes = 10).await
}

/// An account with a verified phone and an organisation where given (the common seed has
/// neither), and a long-lived token for it.
async fn seed(
    app: &App,
    role: &str,
    fhir_user: Option<String>,
    phone: Option<&str>,
    org: Option<&str>,
) -> (String, reqwest::Client) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!("alerts-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let row = hearth_store_sql::identity::AccountRow {
        id: id.clone(),
        email: None,
        phone: phone.map(str::to_owned),
        phone_pending: None,
        password_hash: None,
        role: role.into(),
        fhir_user: fhir_user.clone(),
        organization: org.map(str::to_owned),
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: 0,
    };
    hearth_store_sql::identity::insert_account(&*app.db, &row).await.unwrap();
    let claims = hearth_auth::token::AccessClaims {
        iss: app.auth.settings.issuer.clone(),
        sub: id.clone(),
        aud: app.auth.settings.audience.clone(),
        iat: 0,
        exp: i64::from(i32::MAX) * 4,
        jti: format!("{id}-jti"),
        role: role.parse().unwrap(),
        scope: hearth_server::auth::DEFAULT_SCOPE.into(),
        patient: None,
        fhir_user,
        client_id: None,
    };
    let token = app.auth.keys().sign(&claims).unwrap().expose().clone();
    (id, bearer(&token))
}

/// A complete set at `t`: RR 25 (3), SpO2 91 on air (3), SBP 95 (2), HR 115 (2), alert (0),
/// 38.5 °C (1): NEWS2 11, high; qSOFA 2 (RR ≥ 22, SBP ≤ 100).
fn sick_set(t: DateTime<Utc>) -> Value {
    let at = |m: i64| (t + TimeDelta::minutes(m)).to_rfc3339();
    json!({"readings": [
        {"kind": "respiratory_rate", "value": 25, "effective": at(0)},
        {"kind": "spo2", "value": 91, "effective": at(0)},
        {"kind": "supplemental_oxygen", "code": "air", "effective": at(0)},
        {"kind": "blood_pressure", "systolic": 95, "diastolic": 60, "effective": at(1)},
        {"kind": "heart_rate", "value": 115, "effective": at(1)},
        {"kind": "consciousness", "code": "A", "effective": at(2)},
        {"kind": "body_temperature", "value": 38.5, "effective": at(2)},
    ]})
}

/// A calm set: NEWS2 0, qSOFA 0.
fn calm_set(t: DateTime<Utc>) -> Value {
    let at = t.to_rfc3339();
    json!({"readings": [
        {"kind": "respiratory_rate", "value": 16, "effective": at},
        {"kind": "spo2", "value": 97, "effective": at},
        {"kind": "supplemental_oxygen", "code": "air", "effective": at},
        {"kind": "blood_pressure", "systolic": 125, "diastolic": 80, "effective": at},
        {"kind": "heart_rate", "value": 72, "effective": at},
        {"kind": "consciousness", "code": "A", "effective": at},
        {"kind": "body_temperature", "value": 36.8, "effective": at},
    ]})
}

fn changes(v: &Value) -> Vec<(String, String)> {
    let mut c: Vec<(String, String)> = v["alerts"]
        .as_array()
        .unwrap()
        .iter()
        .map(|a| (a["rule"].as_str().unwrap().to_owned(), a["change"].as_str().unwrap().to_owned()))
        .collect();
    c.sort();
    c
}

fn alert_id(v: &Value, rule: &str) -> String {
    v["alerts"].as_array().unwrap().iter().find(|a| a["rule"] == rule).unwrap()["id"].as_str().unwrap().to_owned()
}

async fn outbox(t: &TestApp) -> Vec<hearth_store_sql::notify::OutboxRow> {
    hearth_store_sql::notify::list_by_status(&*t.app.db, None, 1000).await.unwrap()
}

async fn inbox(t: &TestApp, c: &reqwest::Client) -> Vec<Value> {
    let (s, v) = call(t, c, Method::GET, "/api/v1/notifications", None).await;
    assert_eq!(s, 200, "{v}");
    v["notifications"].as_array().unwrap().clone()
}

fn sms_to(log: &Log, to: &str) -> usize {
    log.lock().unwrap().iter().filter(|s| s.form_value("To").as_deref() == Some(to)).count()
}

#[tokio::test]
async fn a_news2_of_7_or_more_reaches_caregiver_by_sms_and_clinician_in_app_once_and_escalates_unless_acknowledged() {
    let (t, log) = with_sms_peer().await;
    let start = DateTime::parse_from_rfc3339("2026-12-07T08:00:00Z").unwrap().with_timezone(&Utc);
    t.clock.set(start);
    let org = t.create(&json!({"resourceType": "Organization", "name": "Alerts Clinic"})).await;
    let doc = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Rao"}]})).await;
    let pa = t
        .create(&json!({"resourceType": "Patient", "name": [{"family": "Alert"}],
            "generalPractitioner": [{"reference": format!("Practitioner/{doc}")}],
            "managingOrganization": {"reference": format!("Organization/{org}")}}))
        .await;
    let (_, patient) = seed(&t.app, "patient", Some(format!("Patient/{pa}")), None, None).await;
    let (carer_id, carer) = seed(&t.app, "caregiver", None, Some(CAREGIVER_PHONE), None).await;
    let (s, v) = call(
        &t,
        &t.client,
        Method::POST,
        "/api/v1/admin/caregivers",
        Some(json!({"caregiver": carer_id, "patient": pa})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
    let (_, clinician) = seed(&t.app, "clinician", Some(format!("Practitioner/{doc}")), None, Some(&org)).await;
    let (colleague_id, colleague) = seed(&t.app, "clinician", None, None, Some(&org)).await;
    let (_, elsewhere) = seed(&t.app, "clinician", None, None, Some("another-org")).await;
    // Quiet hours all day for the caregiver: an alert is critical and goes through anyway.
    let (s, v) = call(
        &t,
        &carer,
        Method::PUT,
        "/api/v1/notifications/preferences",
        Some(json!({"time_zone": "UTC", "quiet_hours": {"start": "00:00", "end": "23:59"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");

    // The set scores NEWS2 11 and qSOFA 2: both raised.
    let (s, v) = call(&t, &patient, Method::POST, "/api/v1/health/vitals", Some(sick_set(start))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(changes(&v), [("news2".into(), "raised".into()), ("qsofa".into(), "raised".into())]);
    let news2 = alert_id(&v, "news2");
    let qsofa = alert_id(&v, "qsofa");

    // The caregiver's SMS reaches the peer; the clinician has it in the app.
    eventually("the caregiver's SMS", || async { (sms_to(&log, CAREGIVER_PHONE) >= 2).then_some(()) }).await;
    let body = log.lock().unwrap()[0].form_value("Body").unwrap();
    assert!(body.contains("Hearth"), "{body}");
    assert!(!body.contains("NEWS2") && !body.contains("91"), "no clinical content in an SMS: {body}");
    let seen = eventually("the clinician's in-app alert", || async {
        let n = inbox(&t, &clinician).await;
        (n.len() >= 2).then_some(n)
    })
    .await;
    assert!(seen.iter().all(|n| n["category"] == "emergency"), "{seen:?}");
    // The colleague (the organisation's, not the patient's clinician) hears nothing yet.
    assert!(inbox(&t, &colleague).await.is_empty());

    // The alert is recorded as a FHIR Flag and listed for the care team.
    let (s, v) = call(&t, &clinician, Method::GET, &format!("/api/v1/health/alerts?patient={pa}"), None).await;
    assert_eq!(s, 200, "{v}");
    let listed = v["alerts"].as_array().unwrap();
    assert_eq!(listed.len(), 2, "{v}");
    let a = listed.iter().find(|a| a["id"] == news2.as_str()).unwrap();
    assert_eq!(
        (a["level"].as_str(), a["score"].as_i64(), a["status"].as_str()),
        (Some("high"), Some(11), Some("open"))
    );
    assert_eq!((a["detail"]["parts"]["spo2"].as_i64(), a["detail"]["risk"].as_str()), (Some(3), Some("high")), "{a}");
    let flag = t.get(&format!("/fhir/Flag/{}", a["flag"].as_str().unwrap())).await.json();
    crate::common::assert_valid_r4(&flag);
    assert_eq!(flag["status"], "active");
    assert_eq!(flag["subject"]["reference"], format!("Patient/{pa}"));

    // A second high set five minutes later: the alerts hold, nobody is told again.
    let before = outbox(&t).await.len();
    t.clock.set(start + TimeDelta::minutes(5));
    let (s, v) =
        call(&t, &patient, Method::POST, "/api/v1/health/vitals", Some(sick_set(start + TimeDelta::minutes(5)))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(changes(&v), [("news2".into(), "ongoing".into()), ("qsofa".into(), "ongoing".into())]);
    assert_eq!(outbox(&t).await.len(), before, "no new outbox row for a persisting alert");

    // Another patient neither sees nor acknowledges it; the patient may not acknowledge it.
    let (_, _, other) = patient_account(&t, "Other").await;
    let (s, _) = call(&t, &other, Method::GET, &format!("/api/v1/health/alerts?patient={pa}"), None).await;
    assert_eq!(s, 404);
    let (s, v) = call(&t, &other, Method::GET, "/api/v1/health/alerts", None).await;
    assert_eq!((s, v["alerts"].as_array().map(Vec::len)), (200, Some(0)), "{v}");
    let (s, _) = call(&t, &other, Method::POST, &format!("/api/v1/health/alerts/{news2}/acknowledge"), None).await;
    assert_eq!(s, 404);
    let (s, v) = call(&t, &patient, Method::POST, &format!("/api/v1/health/alerts/{news2}/acknowledge"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, _) = call(&t, &elsewhere, Method::GET, &format!("/api/v1/health/alerts?patient={pa}"), None).await;
    assert_eq!(s, 404, "a clinician of another organisation does not reach the patient");

    // The caregiver acknowledges the qSOFA alert; the NEWS2 one stays unacknowledged.
    let (s, v) = call(&t, &carer, Method::POST, &format!("/api/v1/health/alerts/{qsofa}/acknowledge"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["status"].as_str(), v["acknowledged_by"].as_str()), (Some("acknowledged"), Some(carer_id.as_str())));

    // Eleven minutes on: the NEWS2 alert escalates to the organisation's clinicians; the
    // acknowledged qSOFA alert's second wave was cancelled.
    t.clock.set(start + TimeDelta::minutes(11));
    let escalated = eventually("the colleague's escalation", || async {
        let n = inbox(&t, &colleague).await;
        (!n.is_empty()).then_some(n)
    })
    .await;
    assert_eq!(escalated.len(), 1, "one escalation (NEWS2), none for the acknowledged qSOFA: {escalated:?}");
    let rows = outbox(&t).await;
    let qsofa_wave: Vec<&str> = rows
        .iter()
        .filter(|r| r.idem_key.starts_with(&format!("selfcare-alert:{qsofa}:escalation:")))
        .map(|r| r.status.as_str())
        .collect();
    assert!(!qsofa_wave.is_empty() && qsofa_wave.iter().all(|s| *s == "cancelled"), "{qsofa_wave:?}");
    assert!(rows.iter().any(|r| r.idem_key == format!("selfcare-alert:{news2}:escalation:{colleague_id}")));
    let (_, v) = call(&t, &clinician, Method::GET, &format!("/api/v1/health/alerts?patient={pa}"), None).await;
    let status = |id: &str| v["alerts"].as_array().unwrap().iter().find(|a| a["id"] == id).unwrap()["status"].clone();
    assert_eq!((status(&news2), status(&qsofa)), (json!("escalated"), json!("acknowledged")));

    // A calm set resolves both; the Flag becomes inactive; the list of live alerts is empty.
    let (s, v) =
        call(&t, &patient, Method::POST, "/api/v1/health/vitals", Some(calm_set(start + TimeDelta::minutes(11)))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(changes(&v), [("news2".into(), "resolved".into()), ("qsofa".into(), "resolved".into())]);
    let (_, v) = call(&t, &clinician, Method::GET, &format!("/api/v1/health/alerts?patient={pa}"), None).await;
    assert_eq!(v["alerts"].as_array().unwrap().len(), 0, "{v}");
    let flag = t.get(&format!("/fhir/Flag/{}", flag["id"].as_str().unwrap())).await.json();
    assert_eq!(flag["status"], "inactive");
    let (s, v) = call(&t, &carer, Method::POST, &format!("/api/v1/health/alerts/{news2}/acknowledge"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("alert_resolved")), "{v}");
}

#[tokio::test]
async fn a_clinicians_thresholds_and_scale_2_raise_alerts_and_only_staff_set_them() {
    let t = TestApp::spawn().await;
    let (pa, _, patient) = patient_account(&t, "Thresholds").await;
    let (_, doc) = crate::scheduling::clinician(&t, "Iyer").await;
    let path = format!("/api/v1/health/alerts/settings?patient={pa}");
    let settings = json!({"spo2_scale2": true, "thresholds": [{"parameter": "systolic_bp", "above": 160}]});
    let (s, v) = call(&t, &patient, Method::PUT, &path, Some(settings.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let bad = json!({"spo2_scale2": false, "thresholds": [{"parameter": "mood", "above": 3}]});
    let (s, v) = call(&t, &doc, Method::PUT, &path, Some(bad)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_threshold")), "{v}");
    let (s, v) = call(&t, &doc, Method::PUT, &path, Some(settings)).await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(&t, &patient, Method::GET, &path, None).await;
    assert_eq!((s, v["spo2_scale2"].as_bool()), (200, Some(true)), "{v}");

    // A blood pressure alone over the threshold raises it; under it resolves it.
    let bp = |sys: i64, at: &str| json!({"readings": [{"kind": "blood_pressure", "systolic": sys, "diastolic": 90, "effective": at}]});
    let (s, v) = call(&t, &patient, Method::POST, "/api/v1/health/vitals", Some(bp(172, "2026-12-07T08:00:00Z"))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(changes(&v), [("threshold:systolic_bp".into(), "raised".into())]);
    let (_, v) = call(&t, &patient, Method::GET, "/api/v1/health/alerts", None).await;
    assert_eq!(v["alerts"][0]["level"], "above", "{v}");
    let (s, v) = call(&t, &patient, Method::POST, "/api/v1/health/vitals", Some(bp(150, "2026-12-07T09:00:00Z"))).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(changes(&v), [("threshold:systolic_bp".into(), "resolved".into())]);

    // Scale 2: 97 % on oxygen scores 3 (+2 for oxygen) → NEWS2 5, medium; on scale 1 it is 2.
    let at = "2026-12-07T10:00:00Z";
    let set = json!({"readings": [
        {"kind": "respiratory_rate", "value": 16, "effective": at},
        {"kind": "spo2", "value": 97, "effective": at},
        {"kind": "supplemental_oxygen", "code": "oxygen", "effective": at},
        {"kind": "blood_pressure", "systolic": 120, "diastolic": 80, "effective": at},
        {"kind": "heart_rate", "value": 70, "effective": at},
        {"kind": "consciousness", "code": "A", "effective": at},
        {"kind": "body_temperature", "value": 37.0, "effective": at},
    ]});
    let (s, v) = call(&t, &patient, Method::POST, "/api/v1/health/vitals", Some(set)).await;
    assert_eq!(s, 201, "{v}");
    assert!(changes(&v).contains(&("news2".into(), "raised".into())), "{v}");
    let (_, v) = call(&t, &doc, Method::GET, &format!("/api/v1/health/alerts?patient={pa}"), None).await;
    let news2 = v["alerts"].as_array().unwrap().iter().find(|a| a["rule"] == "news2").unwrap().clone();
    assert_eq!((news2["score"].as_i64(), news2["level"].as_str()), (Some(5), Some("medium")), "{news2}");
}

async fn send(t: &TestApp, c: &reqwest::Client, body: Value, key: &str) -> crate::common::Resp {
    let req = c
        .post(t.url("/api/v1/health/vitals"))
        .header("content-type", "application/json")
        .header("idempotency-key", key)
        .body(body.to_string());
    t.send(req).await
}

#[tokio::test]
async fn a_batch_sent_again_with_its_idempotency_key_is_answered_the_same_and_not_applied_twice() {
    let t = TestApp::spawn().await;
    let (pa, _, patient) = patient_account(&t, "Idempotent").await;
    let batch = json!({"readings": [{"kind": "heart_rate", "value": 72, "effective": "2026-12-07T08:00:00Z"}]});
    let first = send(&t, &patient, batch.clone(), "batch-1").await;
    assert_eq!(first.status, 201, "{}", first.text);
    assert!(first.header("idempotent-replayed").is_none());
    let again = send(&t, &patient, batch.clone(), "batch-1").await;
    assert_eq!(again.status, 201, "the first answer, replayed: {}", again.text);
    assert_eq!(again.json(), first.json());
    assert_eq!(again.header("idempotent-replayed").as_deref(), Some("true"));
    let other = json!({"readings": [{"kind": "heart_rate", "value": 90, "effective": "2026-12-07T09:00:00Z"}]});
    let reused = send(&t, &patient, other, "batch-1").await;
    assert_eq!((reused.status, reused.json()["error"]["code"].as_str()), (422, Some("idempotency_key_reused")));
    let (_, found) =
        call(&t, &t.client, Method::GET, &format!("/fhir/Observation?subject=Patient/{pa}&_summary=count"), None).await;
    assert_eq!(found["total"], 1, "{found}");
    let bad = send(&t, &patient, batch, " ").await;
    assert_eq!((bad.status, bad.json()["error"]["code"].as_str()), (400, Some("invalid_idempotency_key")));
}

#[tokio::test]
async fn aggregated_histories_come_from_buckets_kept_on_write_and_a_resent_batch_does_not_count_twice() {
    let t = TestApp::spawn().await;
    let (_, _, patient) = patient_account(&t, "Buckets").await;
    let readings: Vec<Value> =
        [("2026-12-05T23:59:30Z", 60), ("2026-12-06T00:00:10Z", 80), ("2026-12-06T12:00:00Z", 70)]
            .iter()
            .map(|(at, v)| json!({"kind": "heart_rate", "value": v, "effective": at}))
            .collect();
    let batch = json!({"readings": readings});
    for expected in [201, 200] {
        let (s, v) = call(&t, &patient, Method::POST, "/api/v1/health/vitals", Some(batch.clone())).await;
        assert_eq!(s, expected, "{v}");
    }
    let path = "/api/v1/health/history?kind=heart_rate&from=2026-12-05&to=2026-12-07&resolution=day";
    let (s, v) = call(&t, &patient, Method::GET, path, None).await;
    assert_eq!(s, 200, "{v}");
    let days: Vec<(String, f64, f64, f64, u64)> = v["series"][0]["buckets"]
        .as_array()
        .unwrap()
        .iter()
        .map(|b| {
            let f = |k: &str| b[k].as_f64().unwrap();
            (b["start"].as_str().unwrap().to_owned(), f("min"), f("mean"), f("max"), b["count"].as_u64().unwrap())
        })
        .collect();
    assert_eq!(
        days,
        [
            ("2026-12-05T00:00:00.000Z".to_owned(), 60.0, 60.0, 60.0, 1),
            ("2026-12-06T00:00:00.000Z".to_owned(), 70.0, 75.0, 80.0, 2)
        ]
    );
    let path =
        "/api/v1/health/history?kind=heart_rate&from=2026-12-05T23:00:00Z&to=2026-12-06T01:00:00Z&resolution=minute";
    let (_, v) = call(&t, &patient, Method::GET, path, None).await;
    assert_eq!(v["series"][0]["buckets"].as_array().unwrap().len(), 2, "{v}");
}
