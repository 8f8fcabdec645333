//! Medications (issue 18, items 3 and 4): a patient on warfarin who adds ibuprofen is warned
//! and their acknowledgement recorded; a clinician's order meeting a dangerous pair needs an
//! override with a reason (a final DetectedIssue); allergies are checked; a list is checked
//! without saving; dose logs (taken, late, skipped) are MedicationAdministrations; another
//! patient reaches none of it.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, assert_valid_r4};
use crate::scheduling::{call, clinician, patient_account};

fn schedule(name: &str, rxnorm: Option<&str>) -> Value {
    let mut m = json!({"name": name});
    if let Some(c) = rxnorm {
        m["rxnorm"] = json!(c);
    }
    json!({"medication": m, "dose": {"value": 5, "unit": "mg"}, "route": "oral", "times": ["08:00"], "start": "2026-12-01"})
}

fn rules(v: &Value) -> Vec<String> {
    v["findings"].as_array().unwrap().iter().map(|f| f["rule"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_patient_on_warfarin_who_adds_ibuprofen_is_warned_and_the_acknowledgement_is_recorded() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Warfarin").await;
    let (s, w) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/medication/schedules",
        Some(schedule("Warfarin 5 mg tablet", Some("855332"))),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    assert_eq!(w["findings"], json!([]));
    let warfarin = w["schedule"]["reference"].as_str().unwrap().to_owned();
    assert!(warfarin.starts_with("MedicationStatement/"), "{w}");
    let stmt = t.get(&format!("/fhir/{warfarin}")).await.json();
    assert_valid_r4(&stmt);
    assert_eq!(stmt["subject"]["reference"], format!("Patient/{pa}"));
    assert_eq!(stmt["dosage"][0]["timing"]["repeat"]["timeOfDay"], json!(["08:00:00"]));

    // Ibuprofen by name: warned, nothing written.
    let (s, v) =
        call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(schedule("Ibuprofen 400 mg tablet", None)))
            .await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "interaction_warning");
    let found = rules(&v);
    assert!(found.contains(&"pddi-warfarin-nsaids".to_owned()), "{found:?}");
    assert!(found.contains(&"curated-2".to_owned()), "{found:?}");
    assert_eq!(v["findings"][0]["severity"], "danger");
    let (_, list) = call(&t, &a, Method::GET, "/api/v1/medication/schedules", None).await;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 1, "{list}");

    // Acknowledged: added, each finding a preliminary DetectedIssue naming both schedules.
    let mut ack = schedule("Ibuprofen 400 mg tablet", None);
    ack["acknowledge"] = json!(true);
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(ack)).await;
    assert_eq!(s, 201, "{v}");
    let ibuprofen = v["schedule"]["reference"].as_str().unwrap().to_owned();
    let issues = v["detected_issues"].as_array().unwrap();
    assert_eq!(issues.len(), v["findings"].as_array().unwrap().len());
    assert!(!issues.is_empty());
    let issue = t.get(&format!("/fhir/{}", issues[0].as_str().unwrap())).await.json();
    assert_valid_r4(&issue);
    assert_eq!(issue["status"], "preliminary");
    assert_eq!(issue["severity"], "high");
    assert_eq!(issue["patient"]["reference"], format!("Patient/{pa}"));
    let implicated: Vec<&str> =
        issue["implicated"].as_array().unwrap().iter().map(|r| r["reference"].as_str().unwrap()).collect();
    assert_eq!(implicated, [ibuprofen.as_str(), warfarin.as_str()]);
    let (_, list) = call(&t, &a, Method::GET, "/api/v1/medication/schedules", None).await;
    assert_eq!(list["schedules"].as_array().unwrap().len(), 2, "{list}");

    // A patient cannot override.
    let mut over = schedule("Naproxen", None);
    over["override_reason"] = json!("I know");
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(over)).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("override_forbidden")), "{v}");
}

#[tokio::test]
async fn a_clinicians_order_meeting_a_dangerous_pair_needs_an_override_with_a_reason() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Override").await;
    let (doc, c) = clinician(&t, "Prescriber").await;
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(schedule("Coumadin", None))).await;
    assert_eq!(s, 201, "{v}");
    let mut order = schedule("Naproxen 250 mg tablet", Some("198013"));
    order["patient"] = json!(pa);
    let (s, v) = call(&t, &c, Method::POST, "/api/v1/medication/schedules", Some(order.clone())).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(v["error"]["code"], "override_required");
    order["override_reason"] = json!("Short course for gout flare; INR checked in 3 days");
    let (s, v) = call(&t, &c, Method::POST, "/api/v1/medication/schedules", Some(order)).await;
    assert_eq!(s, 201, "{v}");
    let reference = v["schedule"]["reference"].as_str().unwrap();
    assert!(reference.starts_with("MedicationRequest/"), "{v}");
    let req = t.get(&format!("/fhir/{reference}")).await.json();
    assert_valid_r4(&req);
    assert_eq!(req["requester"]["reference"], format!("Practitioner/{doc}"));
    assert_eq!(req["intent"], "order");
    let issue = t.get(&format!("/fhir/{}", v["detected_issues"][0].as_str().unwrap())).await.json();
    assert_valid_r4(&issue);
    assert_eq!(issue["status"], "final");
    assert_eq!(issue["author"]["reference"], format!("Practitioner/{doc}"));
    assert!(issue["mitigation"][0]["action"]["text"].as_str().unwrap().contains("gout flare"), "{issue}");
    assert_eq!(issue["code"]["coding"][0]["code"], "DRG");
}

#[tokio::test]
async fn an_allergy_is_checked_and_a_list_is_checked_without_saving() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Allergic").await;
    t.create(&json!({"resourceType": "AllergyIntolerance",
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/allergyintolerance-clinical", "code": "active"}]},
        "code": {"coding": [{"system": "http://www.nlm.nih.gov/research/umls/rxnorm", "code": "5640", "display": "Ibuprofen"}]},
        "criticality": "high", "patient": {"reference": format!("Patient/{pa}")}}))
    .await;
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(schedule("Advil", None))).await;
    assert_eq!(s, 409, "{v}");
    assert_eq!(rules(&v), ["allergy-substance"]);

    // A list checked by name and code, without saving.
    let (s, v) =
        call(&t, &a, Method::GET, "/api/v1/medication/interactions?drug=warfarin&drug=rxnorm:153010", None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["highest"], "danger");
    assert_eq!(v["drugs"][1]["ingredients"], json!(["ibuprofen"]));
    assert!(rules(&v).contains(&"pddi-warfarin-nsaids".to_owned()));
    let (s, v) =
        call(&t, &a, Method::GET, "/api/v1/medication/interactions?drug=metformin&drug=amlodipine", None).await;
    assert_eq!((s, v["findings"].clone()), (200, json!([])), "{v}");
    // With the patient: the allergy is met.
    let (s, v) =
        call(&t, &a, Method::GET, &format!("/api/v1/medication/interactions?drug=Motrin&patient={pa}"), None).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(rules(&v), ["allergy-substance"]);
    let (_, list) = call(&t, &a, Method::GET, "/api/v1/medication/schedules", None).await;
    assert_eq!(list["schedules"], json!([]));
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/medication/interactions?drugs=x", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (s, _) = call(&t, &a, Method::GET, "/api/v1/medication/interactions", None).await;
    assert_eq!(s, 400);
}

#[tokio::test]
async fn dose_logs_are_administrations_taken_late_or_skipped_and_another_patient_reaches_none() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Logger").await;
    let (_, _, b) = patient_account(&t, "Stranger").await;
    let (s, v) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "UTC"}))).await;
    assert_eq!(s, 200, "{v}");
    let mut metformin = schedule("Metformin 500 mg tablet", Some("6809"));
    metformin["quantity"] = json!(30);
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(metformin)).await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["schedule"]["quantity"].as_f64(), Some(30.0));
    let sched = v["schedule"]["reference"].as_str().unwrap().to_owned();
    let log = |status: &str, at: &str| json!({"schedule": sched, "status": status, "at": at, "scheduled_for": "2026-12-01T08:00:00Z"});
    let (s, v) =
        call(&t, &a, Method::POST, "/api/v1/medication/logs", Some(log("taken", "2026-12-01T08:10:00Z"))).await;
    assert_eq!((s, v["status"].as_str()), (201, Some("taken")), "{v}");
    let admin = t.get(&format!("/fhir/{}", v["reference"].as_str().unwrap())).await.json();
    assert_valid_r4(&admin);
    assert_eq!(admin["status"], "completed");
    assert_eq!(admin["medicationCodeableConcept"]["coding"][0]["code"], "6809");
    let (s, v) =
        call(&t, &a, Method::POST, "/api/v1/medication/logs", Some(log("taken", "2026-12-01T10:00:00Z"))).await;
    assert_eq!((s, v["status"].as_str()), (201, Some("late")), "{v}");
    let (s, v) =
        call(&t, &a, Method::POST, "/api/v1/medication/logs", Some(log("skipped", "2026-12-01T09:00:00Z"))).await;
    assert_eq!((s, v["status"].as_str()), (201, Some("skipped")), "{v}");
    let skipped = t.get(&format!("/fhir/{}", v["reference"].as_str().unwrap())).await.json();
    assert_eq!(skipped["status"], "not-done");
    let (s, v) =
        call(&t, &a, Method::POST, "/api/v1/medication/logs", Some(log("eaten", "2026-12-01T09:00:00Z"))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_status")));

    let (s, v) = call(&t, &a, Method::GET, "/api/v1/medication/logs?from=2026-12-01T00:00:00Z", None).await;
    assert_eq!(s, 200, "{v}");
    let statuses: Vec<&str> = v["logs"].as_array().unwrap().iter().map(|l| l["status"].as_str().unwrap()).collect();
    assert_eq!(statuses, ["taken", "skipped", "late"]);

    // Adherence over two days: the first dose's newest log says late, the second has none.
    let (s, v) = call(
        &t,
        &a,
        Method::GET,
        &format!("/api/v1/medication/adherence?schedule={sched}&from=2026-12-01T00:00:00Z&to=2026-12-03T00:00:00Z"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["time_zone"], "UTC");
    assert_eq!(
        v["adherence"],
        json!({"due": 2, "on_time": 0, "late": 1, "skipped": 0, "missed": 1, "proportion_on_time": 0.0,
               "days_due": 2, "days_covered": 1, "pdc": 0.5})
    );
    // 30 mg in hand, 5 mg a day, none taken since it was added: six doses, out on the seventh.
    assert_eq!(v["refill"]["remaining"].as_f64(), Some(30.0), "{v}");
    let runs_out = at(v["refill"]["runs_out"].as_str().unwrap());
    let now = hearth_server::Clock::now(&*t.clock);
    assert!(runs_out > now + chrono::TimeDelta::days(5) && runs_out <= now + chrono::TimeDelta::days(7), "{v}");
    let (s, v) = call(&t, &b, Method::GET, &format!("/api/v1/medication/adherence?schedule={sched}"), None).await;
    assert_eq!(s, 404, "{v}");

    // Another patient: neither the schedules, the logs nor logging against A's schedule.
    for path in [format!("/api/v1/medication/schedules?patient={pa}"), format!("/api/v1/medication/logs?patient={pa}")]
    {
        let (s, _) = call(&t, &b, Method::GET, &path, None).await;
        assert_eq!(s, 404, "{path}");
    }
    let (s, _) =
        call(&t, &b, Method::POST, "/api/v1/medication/logs", Some(log("taken", "2026-12-01T08:10:00Z"))).await;
    assert_eq!(s, 404);
}

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc)
}

/// The outbox rows under one reminder key: (status, not_before).
async fn reminder(t: &TestApp, schedule: &str, generation: i64, due: &str) -> Vec<(String, i64)> {
    let key = hearth_server::medication::reminders::key(schedule, generation, at(due));
    hearth_store_sql::notify::by_key(&*t.app.ctx().db, &key)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.status, r.not_before))
        .collect()
}

#[tokio::test]
async fn an_8am_metformin_reminder_is_due_at_8am_local_across_dst_and_a_move_and_is_written_once() {
    use hearth_server::medication::{Medication, reminders};
    let t = TestApp::spawn().await;
    t.clock.set(at("2027-03-12T12:00:00Z"));
    let (_, _, a) = patient_account(&t, "Reminded").await;
    let (s, v) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "America/New_York"})))
            .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/medication/schedules",
        Some(json!({
        "medication": {"name": "Metformin 500 mg tablet", "rxnorm": "6809"}, "dose": {"value": 500, "unit": "mg"},
        "times": ["08:00"], "start": "2027-03-12"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let sched = v["schedule"]["reference"].as_str().unwrap().to_owned();

    // New York springs forward on 14 March 2027: 08:00 is 13:00Z the day before, 12:00Z that day.
    let now = at("2027-03-13T00:00:00Z");
    t.clock.set(now);
    let planner = Medication::new(std::sync::Arc::clone(t.app.ctx()), std::sync::Arc::clone(&t.app.notify));
    let first = reminders::plan(&planner, &t.app.notify, now).await.unwrap();
    assert_eq!(first.written, 2, "{first:?}");
    let ms = |s: &str| at(s).timestamp_millis();
    assert_eq!(
        reminder(&t, &sched, 1, "2027-03-13T13:00:00Z").await,
        [("queued".to_owned(), ms("2027-03-13T13:00:00Z"))]
    );
    assert_eq!(
        reminder(&t, &sched, 1, "2027-03-14T12:00:00Z").await,
        [("queued".to_owned(), ms("2027-03-14T12:00:00Z"))]
    );

    // A restarted planner (a new instance over the same database) writes nothing again.
    let restarted = Medication::new(std::sync::Arc::clone(t.app.ctx()), std::sync::Arc::clone(&t.app.notify));
    assert_eq!(reminders::plan(&restarted, &t.app.notify, now).await.unwrap(), reminders::Planned::default());
    assert_eq!(reminder(&t, &sched, 1, "2027-03-13T13:00:00Z").await.len(), 1);

    // Not sent before 08:00 local; sent at 08:00 local.
    t.clock.set(at("2027-03-13T12:59:00Z"));
    assert_eq!(hearth_server::notify::worker::run_once(&t.app.notifications, "med-a").await.unwrap(), 0);
    t.clock.set(at("2027-03-13T13:00:00Z"));
    assert!(hearth_server::notify::worker::run_once(&t.app.notifications, "med-a").await.unwrap() >= 1);
    assert_ne!(reminder(&t, &sched, 1, "2027-03-13T13:00:00Z").await[0].0, "queued");

    // The patient moves to Kolkata: the pending New York reminder is cancelled, the next doses are
    // at 08:00 IST (02:30Z), under the next generation.
    let now = at("2027-03-13T20:00:00Z");
    t.clock.set(now);
    let (s, v) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "Asia/Kolkata"})))
            .await;
    assert_eq!(s, 200, "{v}");
    let moved = reminders::plan(&planner, &t.app.notify, now).await.unwrap();
    assert_eq!((moved.replanned, moved.written), (1, 2), "{moved:?}");
    assert_eq!(reminder(&t, &sched, 1, "2027-03-14T12:00:00Z").await[0].0, "cancelled");
    assert_eq!(
        reminder(&t, &sched, 2, "2027-03-14T02:30:00Z").await,
        [("queued".to_owned(), ms("2027-03-14T02:30:00Z"))]
    );
    assert_eq!(reminder(&t, &sched, 2, "2027-03-15T02:30:00Z").await.len(), 1);

    // The schedule is stopped (through the FHIR API): its pending reminders are cancelled.
    let mut stmt = t.get(&format!("/fhir/{sched}")).await.json();
    stmt["status"] = json!("stopped");
    let r = t
        .send(
            t.client
                .put(t.url(&format!("/fhir/{sched}")))
                .header("content-type", "application/fhir+json")
                .body(stmt.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let ended = reminders::plan(&planner, &t.app.notify, now).await.unwrap();
    assert_eq!(ended.ended, 1, "{ended:?}");
    assert_eq!(reminder(&t, &sched, 2, "2027-03-14T02:30:00Z").await[0].0, "cancelled");
}

/// The rows of any outbox key: (status, template).
async fn outbox(t: &TestApp, key: &str) -> Vec<(String, String)> {
    hearth_store_sql::notify::by_key(&*t.app.ctx().db, key)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.status, r.template))
        .collect()
}

/// The templates of an outbox key's rows (whatever their status: a notice due now may already
/// be on its way).
async fn templates(t: &TestApp, key: &str) -> Vec<String> {
    outbox(t, key).await.into_iter().map(|(_, tpl)| tpl).collect()
}

#[tokio::test]
async fn an_edit_moves_tomorrows_reminder_and_a_stop_cancels_every_pending_one() {
    use hearth_server::medication::{Medication, reminders};
    let t = TestApp::spawn().await;
    t.clock.set(at("2027-03-01T00:00:00Z"));
    let (pa, account, a) = patient_account(&t, "Edited").await;
    let (_, _, b) = patient_account(&t, "Other").await;
    let (_, c) = clinician(&t, "Editor").await;
    let (s, v) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "UTC"}))).await;
    assert_eq!(s, 200, "{v}");
    let body = |times: &[&str]| {
        json!({"medication": {"name": "Metformin 500 mg tablet", "rxnorm": "6809"}, "dose": {"value": 500, "unit": "mg"},
               "times": times, "start": "2027-03-01"})
    };
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(body(&["08:00"]))).await;
    assert_eq!(s, 201, "{v}");
    let sched = v["schedule"]["reference"].as_str().unwrap().to_owned();
    let id = sched.strip_prefix("MedicationStatement/").unwrap().to_owned();
    let planner = Medication::new(std::sync::Arc::clone(t.app.ctx()), std::sync::Arc::clone(&t.app.notify));
    let now = at("2027-03-01T09:00:00Z");
    t.clock.set(now);
    assert_eq!(reminders::plan(&planner, &t.app.notify, now).await.unwrap().written, 2);
    let tomorrow_8 = reminders::key(&sched, 1, at("2027-03-02T08:00:00Z"));
    assert_eq!(outbox(&t, &tomorrow_8).await, [("queued".to_owned(), "medication-reminder".to_owned())]);

    // Bad bodies: 400 with a code, nothing changed.
    let path = format!("/api/v1/medication/schedules/{id}");
    for (bad, code) in [
        (body(&["25:00"]), "invalid_timing"),
        (json!({"medication": {"name": "Metformin"}}), "invalid_body"),
        (
            json!({"medication": {"name": ""}, "dose": {"value": 1, "unit": "mg"}, "times": ["08:00"], "start": "2027-03-01"}),
            "invalid_medication",
        ),
        (
            json!({"patient": "someone-else", "medication": {"name": "Metformin"}, "dose": {"value": 1, "unit": "mg"}, "times": ["08:00"], "start": "2027-03-01"}),
            "patient_mismatch",
        ),
    ] {
        let (s, v) = call(&t, &a, Method::PUT, &path, Some(bad)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    // Another patient does not reach it; a clinician does not rewrite the patient's own statement.
    let (s, _) = call(&t, &b, Method::PUT, &path, Some(body(&["09:00"]))).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &b, Method::POST, &format!("{path}/stop"), Some(json!({"reason": "mine now"}))).await;
    assert_eq!(s, 404);
    let (s, v) = call(&t, &c, Method::PUT, &path, Some(body(&["09:00"]))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("not_changeable")), "{v}");
    assert_eq!(outbox(&t, &tomorrow_8).await[0].0, "queued");

    // The patient moves the dose to 09:00: tomorrow's 08:00 reminder is cancelled at once and a
    // 09:00 one written under the next generation.
    let (s, v) = call(&t, &a, Method::PUT, &path, Some(body(&["09:00"]))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["schedule"]["times"], json!(["09:00"]));
    let stmt = t.get(&format!("/fhir/{sched}")).await.json();
    assert_valid_r4(&stmt);
    assert_eq!(stmt["dosage"][0]["timing"]["repeat"]["timeOfDay"], json!(["09:00:00"]));
    assert_eq!(stmt["meta"]["versionId"], "2");
    assert_eq!(outbox(&t, &tomorrow_8).await[0].0, "cancelled");
    let tomorrow_9 = reminders::key(&sched, 2, at("2027-03-02T09:00:00Z"));
    assert_eq!(
        reminder(&t, &sched, 2, "2027-03-02T09:00:00Z").await,
        [("queued".to_owned(), at("2027-03-02T09:00:00Z").timestamp_millis())]
    );
    // The worker's next pass finds nothing more to do.
    let again = reminders::plan(&planner, &t.app.notify, now).await.unwrap();
    assert_eq!((again.written, again.replanned), (0, 0), "{again:?}");

    // 08:00 tomorrow: the old reminder is never sent (today's 09:00 one, due since the edit, is).
    t.clock.set(at("2027-03-02T08:00:00Z"));
    hearth_server::notify::worker::run_once(&t.app.notifications, "med-edit").await.unwrap();
    assert_eq!(outbox(&t, &tomorrow_8).await[0].0, "cancelled");
    assert!(outbox(&t, &format!("{tomorrow_8}#{account}")).await.is_empty());
    t.clock.set(at("2027-03-02T09:00:00Z"));
    // Sent (by this worker or the test app's own, whichever claims it first).
    let sent_9 = format!("{tomorrow_9}#{account}");
    crate::documents::wait_until("the 09:00 reminder is sent", async || {
        hearth_server::notify::worker::run_once(&t.app.notifications, "med-edit").await.unwrap();
        !outbox(&t, &sent_9).await.is_empty()
    })
    .await;

    // Stopping (with a reason) cancels every pending reminder and writes none again.
    let now = at("2027-03-02T10:00:00Z");
    t.clock.set(now);
    assert_eq!(reminders::plan(&planner, &t.app.notify, now).await.unwrap().written, 2);
    let pending =
        [reminders::key(&sched, 2, at("2027-03-03T09:00:00Z")), reminders::key(&sched, 2, at("2027-03-04T09:00:00Z"))];
    for k in &pending {
        assert_eq!(outbox(&t, k).await[0].0, "queued", "{k}");
    }
    for (bad, code) in [(json!({}), "invalid_body"), (json!({"reason": ""}), "invalid_reason")] {
        let (s, v) = call(&t, &a, Method::POST, &format!("{path}/stop"), Some(bad)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{v}");
    }
    let (s, v) = call(&t, &a, Method::POST, &format!("{path}/stop"), Some(json!({"reason": "Stomach upset"}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["schedule"]["status"], "stopped");
    let stmt = t.get(&format!("/fhir/{sched}")).await.json();
    assert_valid_r4(&stmt);
    assert_eq!(
        (stmt["status"].as_str(), stmt["statusReason"][0]["text"].as_str()),
        (Some("stopped"), Some("Stomach upset"))
    );
    for k in &pending {
        assert_eq!(outbox(&t, k).await[0].0, "cancelled", "{k}");
    }
    assert_eq!(reminders::plan(&planner, &t.app.notify, now).await.unwrap(), reminders::Planned::default());
    let (s, v) = call(&t, &a, Method::POST, &format!("{path}/stop"), Some(json!({"reason": "again"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("not_active")), "{v}");
    let (s, v) = call(&t, &a, Method::PUT, &path, Some(body(&["10:00"]))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("not_active")), "{v}");
    let (_, list) = call(&t, &a, Method::GET, &format!("/api/v1/medication/schedules?patient={pa}"), None).await;
    assert_eq!(list["schedules"], json!([]));
}

#[tokio::test]
async fn a_clinicians_order_is_changed_by_a_clinician_and_a_new_drug_is_checked_again() {
    let t = TestApp::spawn().await;
    let (pa, _, a) = patient_account(&t, "Ordered").await;
    let (_, c) = clinician(&t, "Orderer").await;
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/medication/schedules",
        Some(schedule("Warfarin 5 mg tablet", Some("855332"))),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let mut order = schedule("Paracetamol 500 mg tablet", None);
    order["patient"] = json!(pa);
    let (s, v) = call(&t, &c, Method::POST, "/api/v1/medication/schedules", Some(order.clone())).await;
    assert_eq!(s, 201, "{v}");
    let reference = v["schedule"]["reference"].as_str().unwrap().to_owned();
    let path = format!("/api/v1/medication/schedules/{}", reference.strip_prefix("MedicationRequest/").unwrap());
    // The patient does not rewrite or stop the clinician's order.
    let (s, v) = call(&t, &a, Method::PUT, &path, Some(order.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("not_changeable")), "{v}");
    let (s, v) = call(&t, &a, Method::POST, &format!("{path}/stop"), Some(json!({"reason": "no"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("not_changeable")), "{v}");
    // A new dose is not checked again; a new drug (an NSAID with warfarin) is.
    order["dose"] = json!({"value": 1000, "unit": "mg"});
    let (s, v) = call(&t, &c, Method::PUT, &path, Some(order.clone())).await;
    assert_eq!((s, v["findings"].clone()), (200, json!([])), "{v}");
    order["medication"] = json!({"name": "Ibuprofen 400 mg tablet"});
    let (s, v) = call(&t, &c, Method::PUT, &path, Some(order.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("override_required")), "{v}");
    assert!(rules(&v).contains(&"pddi-warfarin-nsaids".to_owned()), "{v}");
    order["override_reason"] = json!("Three days only; INR on Friday");
    let (s, v) = call(&t, &c, Method::PUT, &path, Some(order)).await;
    assert_eq!(s, 200, "{v}");
    let issue = t.get(&format!("/fhir/{}", v["detected_issues"][0].as_str().unwrap())).await.json();
    assert_eq!(issue["status"], "final");
    assert_eq!(issue["implicated"][0]["reference"], reference);
    let req = t.get(&format!("/fhir/{reference}")).await.json();
    assert_valid_r4(&req);
    assert_eq!(req["medicationCodeableConcept"]["text"], "Ibuprofen 400 mg tablet");
    // The clinician stops it: the request is stopped with the reason.
    let (s, v) = call(&t, &c, Method::POST, &format!("{path}/stop"), Some(json!({"reason": "Pain resolved"}))).await;
    assert_eq!(s, 200, "{v}");
    let req = t.get(&format!("/fhir/{reference}")).await.json();
    assert_valid_r4(&req);
    assert_eq!(
        (req["status"].as_str(), req["statusReason"]["text"].as_str()),
        (Some("stopped"), Some("Pain resolved"))
    );
}

#[tokio::test]
async fn a_refill_notice_goes_out_once_per_supply_cycle_across_a_worker_restart() {
    use hearth_server::medication::{Medication, reminders};
    let t = TestApp::spawn().await;
    t.clock.set(at("2027-03-01T00:00:00Z"));
    let (_, account, a) = patient_account(&t, "Refill").await;
    let (s, v) =
        call(&t, &a, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"time_zone": "UTC"}))).await;
    assert_eq!(s, 200, "{v}");
    let body = json!({"medication": {"name": "Metformin 500 mg tablet"}, "dose": {"value": 1, "unit": "tablet"},
                      "times": ["08:00", "20:00"], "start": "2027-03-01", "quantity": 10});
    let (s, v) = call(&t, &a, Method::POST, "/api/v1/medication/schedules", Some(body.clone())).await;
    assert_eq!(s, 201, "{v}");
    let sched = v["schedule"]["reference"].as_str().unwrap().to_owned();
    let first_cycle = reminders::refill_key(&sched, at("2027-03-01T00:00:00Z"));
    let planner = || Medication::new(std::sync::Arc::clone(t.app.ctx()), std::sync::Arc::clone(&t.app.notify));

    // Ten tablets twice a day from 1 March, none logged yet: on 2 March they last beyond 3 days
    // (the default), no notice.
    let now = at("2027-03-02T09:00:00Z");
    t.clock.set(now);
    assert_eq!(reminders::plan(&planner(), &t.app.notify, now).await.unwrap().refills, 0);
    assert!(outbox(&t, &first_cycle).await.is_empty());
    // Six doses taken by 4 March: four left, the last covering 6 March 08:00: one notice, now.
    let now = at("2027-03-04T09:00:00Z");
    t.clock.set(now);
    for dose in [
        "2027-03-01T08:00:00Z",
        "2027-03-01T20:00:00Z",
        "2027-03-02T08:00:00Z",
        "2027-03-02T20:00:00Z",
        "2027-03-03T08:00:00Z",
        "2027-03-03T20:00:00Z",
    ] {
        let (s, v) = call(
            &t,
            &a,
            Method::POST,
            "/api/v1/medication/logs",
            Some(json!({"schedule": sched, "status": "taken", "at": dose, "scheduled_for": dose})),
        )
        .await;
        assert_eq!(s, 201, "{v}");
    }
    assert_eq!(reminders::plan(&planner(), &t.app.notify, now).await.unwrap().refills, 1);
    assert_eq!(templates(&t, &first_cycle).await, ["medication-refill"]);
    // A restarted worker (a new planner over the same database), and later passes, write none again.
    assert_eq!(reminders::plan(&planner(), &t.app.notify, now).await.unwrap().refills, 0);
    // Sent (by this worker or the test app's own, whichever claims it first).
    let expansions = format!("{first_cycle}#{account}");
    crate::documents::wait_until("the refill notice is sent", async || {
        hearth_server::notify::worker::run_once(&t.app.notifications, "med-refill").await.unwrap();
        !outbox(&t, &expansions).await.is_empty()
    })
    .await;
    assert_ne!(outbox(&t, &first_cycle).await[0].0, "queued");
    let sent = outbox(&t, &expansions).await;
    assert!(!sent.is_empty() && sent.iter().all(|(_, tpl)| tpl == "medication-refill"), "{sent:?}");
    let now = at("2027-03-05T09:00:00Z");
    t.clock.set(now);
    assert_eq!(reminders::plan(&planner(), &t.app.notify, now).await.unwrap().refills, 0);
    assert_eq!(outbox(&t, &first_cycle).await.len(), 1);

    // A refill is logged (the supply counted again: 60 tablets): a new cycle, nothing due.
    let path = format!("/api/v1/medication/schedules/{}", sched.strip_prefix("MedicationStatement/").unwrap());
    let mut refilled = body.clone();
    refilled["quantity"] = json!(60);
    let (s, v) = call(&t, &a, Method::PUT, &path, Some(refilled)).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["schedule"]["quantity_since"], "2027-03-05T09:00:00Z");
    assert_eq!(reminders::plan(&planner(), &t.app.notify, now).await.unwrap().refills, 0);
    // An edit without a quantity keeps the count; a count of five (out on 8 March 08:00, within
    // 3 days) is the next cycle's notice.
    let now = at("2027-03-05T10:00:00Z");
    t.clock.set(now);
    let (s, v) = call(
        &t,
        &a,
        Method::PUT,
        &path,
        Some(body.as_object().unwrap().clone().into_iter().filter(|(k, _)| k != "quantity").collect()),
    )
    .await;
    assert_eq!(
        (s, v["schedule"]["quantity"].as_f64(), v["schedule"]["quantity_since"].as_str()),
        (200, Some(60.0), Some("2027-03-05T09:00:00Z")),
        "{v}"
    );
    let mut low = body.clone();
    low["quantity"] = json!(5);
    let (s, v) = call(&t, &a, Method::PUT, &path, Some(low)).await;
    assert_eq!(s, 200, "{v}");
    let second_cycle = reminders::refill_key(&sched, now);
    assert_eq!(templates(&t, &second_cycle).await, ["medication-refill"]);
    assert_eq!(reminders::plan(&planner(), &t.app.notify, now).await.unwrap().refills, 0);
    assert_eq!(outbox(&t, &first_cycle).await.len(), 1);
}

/// The text layer of a PDF, by poppler's `pdftotext` (what a person copying from the PDF gets).
pub(crate) fn pdf_text(pdf: &[u8]) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("rx.pdf");
    std::fs::write(&file, pdf).unwrap();
    let out = std::process::Command::new("pdftotext").arg("-layout").arg(&file).arg("-").output().unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8(out.stdout).unwrap()
}

#[tokio::test]
async fn a_clinician_signs_an_e_prescription_the_patient_fetches_it_as_fhir_and_pdf_and_another_patient_does_not() {
    use crate::scheduling::account;
    let t = TestApp::spawn().await;
    t.clock.set(at("2026-12-07T10:00:00Z"));
    // A patient whose only name is in Devanagari.
    let pa = t
        .create(&json!({"resourceType": "Patient", "name": [{"text": "आशा राव"}], "gender": "female", "birthDate": "1984-03-07"}))
        .await;
    let (_, a) = account(&t.app, "patient", Some(format!("Patient/{pa}")), true).await;
    let (_, _, b) = patient_account(&t, "Elsewhere").await;
    let (doc, c) = clinician(&t, "Mehta").await;
    let mut order = json!({"patient": pa, "medication": {"name": "Metformin 500 mg tablet", "rxnorm": "861007"},
        "dose": {"value": 500, "unit": "mg"}, "route": "oral", "instructions": "after food",
        "times": ["08:00", "20:00"], "start": "2026-12-07", "end": "2027-01-05"});
    let (s, v) = call(&t, &c, Method::POST, "/api/v1/medication/schedules", Some(order.clone())).await;
    assert_eq!(s, 201, "{v}");
    let metformin = v["schedule"]["reference"].as_str().unwrap().to_owned();
    // A second order without an end date: no duration.
    order["medication"] = json!({"name": "Atorvastatin 10 mg tablet"});
    order["times"] = json!(["21:00"]);
    order.as_object_mut().unwrap().remove("end");
    let (s, v) = call(&t, &c, Method::POST, "/api/v1/medication/schedules", Some(order)).await;
    assert_eq!(s, 201, "{v}");
    let atorvastatin = v["schedule"]["reference"].as_str().unwrap().to_owned();

    // Missing facts: a 422 naming each, nothing written.
    let rx = |orders: Vec<&str>, diagnosis: Option<&str>| {
        let mut b =
            json!({"patient": pa, "orders": orders, "advice": "Walk 30 minutes a day. Review in 4 weeks with HbA1c."});
        if let Some(d) = diagnosis {
            b["diagnosis"] = json!(d);
        }
        b
    };
    let (s, v) =
        call(&t, &c, Method::POST, "/api/v1/medication/prescriptions", Some(rx(vec![&metformin, &atorvastatin], None)))
            .await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("prescription_incomplete")), "{v}");
    let missing: Vec<&str> = v["missing"].as_array().unwrap().iter().map(|m| m.as_str().unwrap()).collect();
    for needed in ["diagnosis", "orders[1]: the duration", "qualification", "registration number", "organization"] {
        assert!(missing.iter().any(|m| m.contains(needed)), "{needed} not in {missing:?}");
    }
    assert!(!missing.iter().any(|m| m.contains("orders[0]") || m.contains("advice")), "{missing:?}");
    let (s, v) =
        call(&t, &a, Method::POST, "/api/v1/medication/prescriptions", Some(rx(vec![&metformin], Some("x")))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("prescriber_only")), "{v}");
    let (s, v) = call(&t, &c, Method::POST, "/api/v1/medication/prescriptions", Some(rx(vec![], Some("x")))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_orders")), "{v}");

    // The prescriber's qualification and registration number, and their organization.
    let mut practitioner = t.get(&format!("/fhir/Practitioner/{doc}")).await.json();
    practitioner["name"] = json!([{"prefix": ["Dr"], "given": ["Kavya"], "family": "Mehta"}]);
    practitioner["qualification"] = json!([{"code": {"text": "MBBS, MD (Internal Medicine)"},
        "identifier": [{"system": "https://www.nmc.org.in/registration", "value": "KMC-123456"}]}]);
    assert_eq!(t.put(&format!("/fhir/Practitioner/{doc}"), &practitioner).await.status, 200);
    let org = t.create(&json!({"resourceType": "Organization", "name": "Jayanagar Family Clinic"})).await;
    t.create(&json!({"resourceType": "PractitionerRole", "practitioner": {"reference": format!("Practitioner/{doc}")},
        "organization": {"reference": format!("Organization/{org}")}}))
        .await;
    let (s, signed) = call(
        &t,
        &c,
        Method::POST,
        "/api/v1/medication/prescriptions",
        Some(rx(vec![&metformin], Some("Type 2 diabetes mellitus (provisional)"))),
    )
    .await;
    assert_eq!(s, 201, "{signed}");
    let id = signed["id"].as_str().unwrap().to_owned();
    let sha = signed["sha256"].as_str().unwrap().to_owned();

    // The FHIR document, fetched by the patient: a document Bundle with every required element.
    let (s, doc_bundle) = call(&t, &a, Method::GET, &format!("/api/v1/medication/prescriptions/{id}"), None).await;
    assert_eq!(s, 200, "{doc_bundle}");
    assert_valid_r4(&doc_bundle);
    assert_eq!((doc_bundle["resourceType"].as_str(), doc_bundle["type"].as_str()), (Some("Bundle"), Some("document")));
    let entries = doc_bundle["entry"].as_array().unwrap();
    let of = |rt: &str| entries.iter().map(|e| &e["resource"]).find(|r| r["resourceType"] == rt).unwrap().clone();
    assert_eq!(entries[0]["resource"]["resourceType"], "Composition");
    let comp = of("Composition");
    assert_eq!(comp["status"], "final");
    assert_eq!(comp["type"]["coding"][0]["code"], "57833-6");
    assert_eq!(comp["subject"]["reference"], format!("Patient/{pa}"));
    assert_eq!(comp["author"][0]["reference"], format!("Practitioner/{doc}"));
    assert_eq!(comp["attester"][0]["mode"], "legal");
    assert_eq!(comp["custodian"]["reference"], format!("Organization/{org}"));
    assert_eq!(comp["date"], "2026-12-07T10:00:00Z");
    let titles: Vec<&str> = comp["section"].as_array().unwrap().iter().map(|s| s["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Diagnosis", "Medications", "Advice"]);
    assert!(comp["section"][0]["text"]["div"].as_str().unwrap().contains("Type 2 diabetes mellitus"));
    assert!(comp["section"][2]["text"]["div"].as_str().unwrap().contains("Walk 30 minutes"));
    assert_eq!(comp["section"][1]["entry"][0]["reference"], metformin);
    let patient = of("Patient");
    assert_eq!(
        (patient["name"][0]["text"].as_str(), patient["gender"].as_str(), patient["birthDate"].as_str()),
        (Some("आशा राव"), Some("female"), Some("1984-03-07"))
    );
    let prac = of("Practitioner");
    assert_eq!(prac["qualification"][0]["identifier"][0]["value"], "KMC-123456");
    assert_eq!(prac["qualification"][0]["code"]["text"], "MBBS, MD (Internal Medicine)");
    assert_eq!(of("Organization")["name"], "Jayanagar Family Clinic");
    let req = of("MedicationRequest");
    assert_eq!(req["dosageInstruction"][0]["doseAndRate"][0]["doseQuantity"]["value"].as_f64(), Some(500.0));
    assert_eq!(req["dosageInstruction"][0]["patientInstruction"], "after food");
    // The signed text is on the Composition; its SHA-256 is the one the signing answered.
    let text = comp["extension"][0]["valueString"].as_str().unwrap();
    assert_eq!(text, signed["text"].as_str().unwrap());
    assert_eq!(
        data_encoding::HEXLOWER.encode(ring::digest::digest(&ring::digest::SHA256, text.as_bytes()).as_ref()),
        sha
    );
    // The Provenance (read by the prescriber) holds the same digest as its signature.
    let prov_ref = signed["provenance"].as_str().unwrap();
    let (s, clin_bundle) = call(&t, &c, Method::GET, &format!("/api/v1/medication/prescriptions/{id}"), None).await;
    assert_eq!(s, 200);
    let prov = clin_bundle["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| &e["resource"])
        .find(|r| r["resourceType"] == "Provenance")
        .unwrap()
        .clone();
    assert_eq!(format!("Provenance/{}", prov["id"].as_str().unwrap()), prov_ref);
    assert_eq!(prov["signature"][0]["who"]["reference"], format!("Practitioner/{doc}"));
    assert_eq!(
        data_encoding::HEXLOWER
            .encode(&data_encoding::BASE64.decode(prov["signature"][0]["data"].as_str().unwrap().as_bytes()).unwrap()),
        sha
    );

    // The PDF, fetched by the patient: every field in its text layer.
    let r = a
        .get(format!("{}/api/v1/medication/prescriptions/{id}", t.addr))
        .header("accept", "application/pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 200);
    assert_eq!(r.headers()["content-type"], "application/pdf");
    let pdf = r.bytes().await.unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    let page = pdf_text(&pdf);
    for field in [
        "Prescriber: Dr Kavya Mehta",
        "Qualification: MBBS, MD (Internal Medicine)",
        "Registration number: KMC-123456",
        "Organization: Jayanagar Family Clinic",
        "Date: 2026-12-07",
        "Age: 42 years",
        "Sex: female",
        "Diagnosis: Type 2 diabetes mellitus (provisional)",
        "1. Metformin 500 mg tablet",
        "Strength: 500 mg tablet",
        "Dose: 500 mg",
        "Frequency: twice a day at 08:00, 20:00",
        "Duration: 30 days (2026-12-07 to 2027-01-05)",
        "Instructions: oral; after food",
        "Advice: Walk 30 minutes a day. Review in 4 weeks with HbA1c.",
        "Signature: signed electronically by Dr Kavya Mehta",
        "2026-12-07T10:00:00Z",
        prov_ref,
        &sha,
        "The patient's name is in a script this PDF cannot show",
    ] {
        assert!(page.contains(field), "{field:?} not in the PDF:\n{page}");
    }
    assert!(!page.contains("Atorvastatin"));

    // Another patient reaches neither form.
    let (s, _) = call(&t, &b, Method::GET, &format!("/api/v1/medication/prescriptions/{id}"), None).await;
    assert_eq!(s, 404);
    let r = b
        .get(format!("{}/api/v1/medication/prescriptions/{id}", t.addr))
        .header("accept", "application/pdf")
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 404);
}
