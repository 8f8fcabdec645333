//! Encounters, clinical notes and letters (issue 8), and the whole story through the API: a
//! patient finds a slot, books it, gets reminders, checks in, and reads the clinician's final
//! letter; letter amendments keep the original; every read of a letter is audited.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::scheduling::{at, call, clinician, patient_account, schedule};

fn no_worker(c: &mut hearth_server::Config) {
    c.notify.worker = false;
}

async fn events_about(t: &TestApp, account: &str, patient: &str) -> usize {
    let r = t.get("/fhir/AuditEvent?_count=1000").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"]
        .as_array()
        .cloned()
        .unwrap_or_default()
        .iter()
        .map(|e| e["resource"].to_string())
        .filter(|e| e.contains(account) && e.contains(&format!("Patient/{patient}")))
        .count()
}

#[tokio::test]
async fn encounter_lifecycle_rejects_invalid_transitions_and_records_diagnoses() {
    let t = TestApp::spawn().await;
    let (doc, dc) = clinician(&t, "Lifecycle").await;
    let (pid, _, me) = patient_account(&t, "Visited").await;
    let condition = t
        .create(&json!({"resourceType": "Condition", "subject": {"reference": format!("Patient/{pid}")},
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}]}}))
        .await;
    // Patients do not record encounters.
    let (s, _) = call(&t, &me, Method::POST, "/api/v1/encounters", Some(json!({"patient": pid}))).await;
    assert_eq!(s, 403);
    let (s, e) = call(
        &t,
        &dc,
        Method::POST,
        "/api/v1/encounters",
        Some(json!({"patient": pid, "virtual": true,
            "reason": [{"system": "http://snomed.info/sct", "code": "38341003", "display": "Hypertensive disorder"}]})),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let id = e["id"].as_str().unwrap();
    assert_eq!(
        (e["status"].as_str(), e["class"].as_str(), e["virtual"].as_bool()),
        (Some("planned"), Some("VR"), Some(true))
    );
    assert_eq!(e["practitioners"], json!([doc]));
    assert_eq!(e["videoRoom"], Value::Null);
    let path = format!("/api/v1/encounters/{id}");
    // planned → finished skips the visit itself.
    let (s, v) = call(&t, &dc, Method::PUT, &path, Some(json!({"status": "finished"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("invalid_transition")), "{v}");
    for step in ["arrived", "in-progress"] {
        let (s, v) = call(&t, &dc, Method::PUT, &path, Some(json!({"status": step}))).await;
        assert_eq!((s, v["status"].as_str()), (200, Some(step)), "{v}");
    }
    // Back is not a step either.
    let (s, _) = call(&t, &dc, Method::PUT, &path, Some(json!({"status": "arrived"}))).await;
    assert_eq!(s, 409);
    let (s, v) = call(&t, &dc, Method::PUT, &path, Some(json!({"videoRoom": "https://video.example/room/1", "diagnoses": [{"condition": condition, "use": "DD", "rank": 1}]}))).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["videoRoom"], "https://video.example/room/1");
    assert_eq!(v["diagnoses"], json!([{"condition": condition, "use": "DD", "rank": 1}]));
    let (s, v) =
        call(&t, &dc, Method::PUT, &path, Some(json!({"diagnoses": [{"condition": "no-such-condition"}]}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("unknown_condition")));
    let (s, v) = call(&t, &dc, Method::PUT, &path, Some(json!({"status": "finished"}))).await;
    assert_eq!(s, 200, "{v}");
    assert!(v["period"]["start"].is_string() && v["period"]["end"].is_string());
    // Closed now.
    let (s, v) = call(&t, &dc, Method::PUT, &path, Some(json!({"status": "cancelled"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("encounter_closed")));
    // The record: valid R4, the states it went through in statusHistory.
    let r = t.get(&format!("/fhir/Encounter/{id}")).await.json();
    crate::common::assert_valid_r4(&r);
    let history: Vec<&str> =
        r["statusHistory"].as_array().unwrap().iter().map(|h| h["status"].as_str().unwrap()).collect();
    assert_eq!(history, ["planned", "arrived", "in-progress"]);
    // The patient reads it and lists it.
    let (s, mine) = call(&t, &me, Method::GET, "/api/v1/encounters", None).await;
    assert_eq!((s, mine["encounters"].as_array().unwrap().len()), (200, 1));
}

#[tokio::test]
async fn a_letter_amendment_keeps_the_original_and_patients_read_final_letters_only() {
    let t = TestApp::spawn().await;
    let (writer, dc) = clinician(&t, "Writer").await;
    let (amender, colleague) = clinician(&t, "Colleague").await;
    let (pid, account, me) = patient_account(&t, "Reader").await;
    let base = format!("/api/patients/{pid}/letters");
    // Only clinicians write.
    let (s, _) = call(&t, &me, Method::POST, &base, Some(json!({"title": "Mine", "text": "x"}))).await;
    assert_eq!(s, 403);
    let (s, _) = call(&t, &t.client, Method::POST, &base, Some(json!({"title": "Admin", "text": "x"}))).await;
    assert_eq!(s, 403);
    let (s, draft) = call(
        &t,
        &dc,
        Method::POST,
        &base,
        Some(json!({"kind": "summary", "title": "Draft summary", "text": "Not yet."})),
    )
    .await;
    assert_eq!((s, draft["status"].as_str()), (201, Some("draft")), "{draft}");
    let (s, letter) = call(
        &t,
        &dc,
        Method::POST,
        &base,
        Some(json!({"kind": "consult", "title": "Clinic letter", "text": "Dear Dr Rao,\n\nStart amlodipine 10 mg <daily>.", "status": "final"})),
    )
    .await;
    assert_eq!(s, 201, "{letter}");
    let id = letter["id"].as_str().unwrap();
    // Composition and DocumentReference share the id; the document renders the text as HTML.
    let c = t.get(&format!("/fhir/Composition/{id}")).await.json();
    crate::common::assert_valid_r4(&c);
    assert_eq!((c["status"].as_str(), c["type"]["coding"][0]["code"].as_str()), (Some("final"), Some("11488-4")));
    let d = t.get(&format!("/fhir/DocumentReference/{id}")).await.json();
    crate::common::assert_valid_r4(&d);
    let html = String::from_utf8(
        data_encoding::BASE64.decode(d["content"][0]["attachment"]["data"].as_str().unwrap().as_bytes()).unwrap(),
    )
    .unwrap();
    assert!(html.contains("10 mg &lt;daily&gt;.") && html.contains("<h1>Clinic letter</h1>"), "{html}");
    // ... and as a PDF.
    let pdf = d["content"].as_array().unwrap().iter().find(|c| c["attachment"]["contentType"] == "application/pdf");
    let pdf = data_encoding::BASE64.decode(pdf.unwrap()["attachment"]["data"].as_str().unwrap().as_bytes()).unwrap();
    let pdf = String::from_utf8_lossy(&pdf);
    assert!(pdf.starts_with("%PDF-1.4") && pdf.ends_with("%%EOF\n"));
    assert!(pdf.contains("(Start amlodipine 10 mg <daily>.) Tj"), "{pdf}");

    // The patient sees the final letter, not the draft.
    let (s, list) = call(&t, &me, Method::GET, &base, None).await;
    assert_eq!(s, 200, "{list}");
    let titles: Vec<&str> = list["letters"].as_array().unwrap().iter().map(|l| l["title"].as_str().unwrap()).collect();
    assert_eq!(titles, ["Clinic letter"]);
    let (s, _) = call(&t, &me, Method::GET, &format!("{base}/{}", draft["id"].as_str().unwrap()), None).await;
    assert_eq!(s, 404);
    let (_, staff_list) = call(&t, &dc, Method::GET, &base, None).await;
    assert_eq!(staff_list["letters"].as_array().unwrap().len(), 2);
    // Nor does the generic FHIR API show the patient the draft, by any interaction; the writer
    // sees it.
    let did = draft["id"].as_str().unwrap();
    for path in [
        format!("/fhir/Composition/{did}"),
        format!("/fhir/DocumentReference/{did}"),
        format!("/fhir/Composition/{did}/_history/1"),
    ] {
        let (s, _) = call(&t, &me, Method::GET, &path, None).await;
        assert_eq!(s, 404, "{path}");
        let (s, _) = call(&t, &dc, Method::GET, &path, None).await;
        assert_eq!(s, 200, "{path}");
    }
    for path in [
        format!("/fhir/Composition?subject=Patient/{pid}"),
        format!("/fhir/DocumentReference?subject=Patient/{pid}"),
        format!("/fhir/Patient/{pid}/$everything"),
        format!("/fhir/Patient?_id={pid}&_revinclude=Composition:subject"),
    ] {
        let (s, bundle) = call(&t, &me, Method::GET, &path, None).await;
        assert_eq!(s, 200, "{path}: {bundle}");
        assert!(!bundle.to_string().contains(did), "{path} shows the patient the draft: {bundle}");
        let (_, staff) = call(&t, &dc, Method::GET, &path, None).await;
        assert!(staff.to_string().contains(did), "{path} hides the draft from its writer: {staff}");
    }
    assert!(bundle_has(
        &call(&t, &me, Method::GET, &format!("/fhir/Composition?subject=Patient/{pid}"), None).await.1,
        id
    ));

    // Amend: a new version; the original stays readable.
    let (s, v) = call(&t, &dc, Method::PUT, &format!("{base}/{id}"), Some(json!({"status": "draft"}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("invalid_transition")));
    // A colleague amends it: they join the authors, the writer stays first.
    let (s, amended) = call(
        &t,
        &colleague,
        Method::PUT,
        &format!("{base}/{id}"),
        Some(json!({"text": "Dear Dr Rao,\n\nStart amlodipine 5 mg daily."})),
    )
    .await;
    assert_eq!(s, 200, "{amended}");
    assert_eq!((amended["status"].as_str(), amended["version"].as_u64()), (Some("amended"), Some(2)));
    assert_eq!(amended["authors"], json!([writer, amender]));
    let (s, versions) = call(&t, &me, Method::GET, &format!("{base}/{id}/versions"), None).await;
    assert_eq!(s, 200, "{versions}");
    let texts: Vec<(&str, &str)> = versions["versions"]
        .as_array()
        .unwrap()
        .iter()
        .map(|v| (v["status"].as_str().unwrap(), v["text"].as_str().unwrap()))
        .collect();
    assert_eq!(
        texts,
        [
            ("amended", "Dear Dr Rao,\n\nStart amlodipine 5 mg daily."),
            ("final", "Dear Dr Rao,\n\nStart amlodipine 10 mg <daily>.")
        ]
    );
    let v1 = t.get(&format!("/fhir/Composition/{id}/_history/1")).await.json();
    assert_eq!(v1["status"], "final");
    assert_eq!(v1["author"], json!([{"reference": format!("Practitioner/{writer}")}]));
    let (_, current) = call(&t, &me, Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(current["text"], "Dear Dr Rao,\n\nStart amlodipine 5 mg daily.");

    // Every read of the letter by the patient is one AuditEvent naming them.
    let before = events_about(&t, &account, &pid).await;
    let (s, _) = call(&t, &me, Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(s, 200);
    assert_eq!(events_about(&t, &account, &pid).await, before + 1);
    // Another patient reaches neither the list nor the letter.
    let (_, _, stranger) = patient_account(&t, "Stranger").await;
    let (s, _) = call(&t, &stranger, Method::GET, &format!("{base}/{id}"), None).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &stranger, Method::GET, &base, None).await;
    assert_eq!(s, 404);
}

#[tokio::test]
async fn story_a_patient_finds_books_is_reminded_checks_in_and_reads_the_final_letter() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-10-20T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Story").await;
    // Weekdays 09:00–12:00 in Delhi, 20-minute follow-ups with a 10-minute buffer.
    schedule(
        &t,
        &dc,
        json!({"practitioner": doc, "timeZone": "Asia/Kolkata",
               "hours": [{"days": ["mon", "tue", "wed", "thu", "fri"], "start": "09:00", "end": "12:00"}],
               "types": [{"code": "FOLLOWUP", "minutes": 20, "buffer": 10}],
               "rules": {"maxDaysAhead": 30, "minNoticeMinutes": 60}}),
    )
    .await;
    let (pid, account, me) = patient_account(&t, "Story").await;

    // 1. Find a slot (Thursday 22 October, 09:00 IST = 03:30Z).
    let (s, found) = call(
        &t,
        &me,
        Method::GET,
        &format!("/api/v1/appointments/slots/available?practitioner={doc}&from=2026-10-22T00:00:00Z&to=2026-10-23T00:00:00Z&type=FOLLOWUP"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{found}");
    let first = &found["slots"][0];
    assert_eq!(
        (first["start"].as_str(), first["end"].as_str()),
        (Some("2026-10-22T03:30:00Z"), Some("2026-10-22T03:50:00Z"))
    );
    assert_eq!(found["slots"].as_array().unwrap().len(), 6, "every 30 minutes from 09:00 to 11:30");

    // 2. Book it through the FHIR operation.
    let r = t
        .send(
            me.post(t.url("/fhir/Appointment/$book")).header("content-type", "application/fhir+json").body(
                json!({"resourceType": "Parameters", "parameter": [{"name": "appointment", "resource": {
                    "resourceType": "Appointment", "status": "proposed", "start": "2026-10-22T03:30:00Z",
                    "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "FOLLOWUP"}]},
                    "participant": [{"actor": {"reference": format!("Patient/{pid}")}, "status": "needs-action"},
                                    {"actor": {"reference": format!("Practitioner/{doc}")}, "status": "needs-action"}]}}]})
                .to_string(),
            ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let appointment = r.json();
    crate::common::assert_valid_r4(&appointment);
    assert_eq!(appointment["status"], "booked");
    let aid = appointment["id"].as_str().unwrap().to_owned();
    // Booking the same slot again is a conflict with an OperationOutcome.
    let r = t.send(me.post(t.url("/fhir/Appointment/$book")).header("content-type", "application/fhir+json").body(
        json!({"resourceType": "Appointment", "status": "proposed", "start": "2026-10-22T03:30:00Z",
               "appointmentType": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v2-0276", "code": "FOLLOWUP"}]},
               "participant": [{"actor": {"reference": format!("Practitioner/{doc}")}, "status": "needs-action"}]}).to_string())).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "conflict");
    // The slot is gone from the search (and its buffer with it: the next starts at 04:00Z).
    let (_, after) = call(
        &t,
        &me,
        Method::GET,
        &format!("/api/v1/appointments/slots/available?practitioner={doc}&from=2026-10-22T00:00:00Z&to=2026-10-23T00:00:00Z&type=FOLLOWUP"),
        None,
    )
    .await;
    assert_eq!(after["slots"].as_array().unwrap().len(), 5);
    assert_eq!(after["slots"][0]["start"], "2026-10-22T04:00:00Z");
    let (_, mine) = call(&t, &me, Method::GET, "/api/v1/appointments", None).await;
    assert_eq!(mine["appointments"][0]["id"], aid.as_str());

    // 3. Reminders: the day before and two hours before, by e-mail, with the local time only.
    let mail = format!("{account}@example.org");
    for (now, expected) in [("2026-10-21T04:00:00Z", 1), ("2026-10-22T02:00:00Z", 2)] {
        t.clock.set(at(now));
        while hearth_server::notify::worker::run_once(&t.app.notifications, "story").await.unwrap() > 0 {}
        let got: Vec<_> =
            t.outbox.messages().into_iter().filter(|m| m.to == mail && m.subject == "Appointment reminder").collect();
        assert_eq!(got.len(), expected, "{got:?}");
        assert!(got.iter().all(|m| m.text.contains("Thu 22 Oct 2026, 03:30 UTC")), "{got:?}");
    }

    // 4. Check in (an hour early is fine): the appointment arrives, its encounter is created.
    t.clock.set(at("2026-10-22T03:10:00Z"));
    let (s, checked) = call(&t, &me, Method::POST, &format!("/api/v1/appointments/{aid}/check-in"), None).await;
    assert_eq!(s, 200, "{checked}");
    assert_eq!(checked["appointment"]["status"], "arrived");
    let eid = checked["encounter"]["id"].as_str().unwrap().to_owned();
    assert_eq!(
        (checked["encounter"]["status"].as_str(), checked["encounter"]["class"].as_str()),
        (Some("arrived"), Some("AMB"))
    );
    assert_eq!(checked["encounter"]["appointment"], aid.as_str());
    let (s, _) = call(&t, &me, Method::POST, &format!("/api/v1/appointments/{aid}/check-in"), None).await;
    assert_eq!(s, 409, "checked in already");

    // 5. The visit: in progress, a note, finished; the appointment is fulfilled.
    let epath = format!("/api/v1/encounters/{eid}");
    let (s, _) = call(&t, &dc, Method::PUT, &epath, Some(json!({"status": "in-progress"}))).await;
    assert_eq!(s, 200);
    let (s, note) = call(
        &t,
        &dc,
        Method::POST,
        &format!("{epath}/notes"),
        Some(json!({"text": "BP 150/95. Start amlodipine.", "status": "final"})),
    )
    .await;
    assert_eq!(s, 201, "{note}");
    assert_eq!((note["kind"].as_str(), note["encounter"].as_str()), (Some("note"), Some(eid.as_str())));
    let (s, _) = call(&t, &dc, Method::PUT, &epath, Some(json!({"status": "finished"}))).await;
    assert_eq!(s, 200);
    let (_, a) = call(&t, &me, Method::GET, &format!("/api/v1/appointments/{aid}"), None).await;
    assert_eq!(a["status"], "fulfilled");

    // 6. The clinician's letter: draft (invisible to the patient), then final.
    let base = format!("/api/patients/{pid}/letters");
    let (s, letter) = call(&t, &dc, Method::POST, &base, Some(json!({"title": "After your visit", "text": "Your blood pressure was high. Take amlodipine 5 mg daily.", "encounter": eid}))).await;
    assert_eq!(s, 201, "{letter}");
    let lid = letter["id"].as_str().unwrap();
    let (_, seen) = call(&t, &me, Method::GET, &base, None).await;
    assert!(seen["letters"].as_array().unwrap().is_empty());
    let (s, _) = call(&t, &dc, Method::PUT, &format!("{base}/{lid}"), Some(json!({"status": "final"}))).await;
    assert_eq!(s, 200);
    let (s, read) = call(&t, &me, Method::GET, &format!("{base}/{lid}"), None).await;
    assert_eq!(s, 200, "{read}");
    assert_eq!((read["status"].as_str(), read["encounter"].as_str()), (Some("final"), Some(eid.as_str())));
    assert_eq!(read["text"], "Your blood pressure was high. Take amlodipine 5 mg daily.");
    let (_, notes) = call(&t, &me, Method::GET, &format!("{epath}/notes"), None).await;
    assert_eq!(notes["notes"].as_array().unwrap().len(), 1);
}

#[tokio::test]
async fn text_that_cannot_be_a_fhir_string_is_a_clear_400_never_a_500() {
    let t = TestApp::spawn().await;
    t.clock.set(at("2026-06-01T00:00:00Z"));
    let (doc, dc) = clinician(&t, "Strict").await;
    let (pid, _, me) = patient_account(&t, "Strict").await;
    schedule(&t, &dc, crate::scheduling::every_day(&doc, "UTC", "09:00", "10:00")).await;
    let (s, v) = call(
        &t,
        &me,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": "2026-06-02T09:00:00Z", "type": "ROUTINE", "reason": "pain\u{0}"})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_booking")), "{v}");
    let base = format!("/api/patients/{pid}/letters");
    for body in [
        json!({"title": "A\u{7}", "text": "x"}),
        json!({"title": "Two\nlines", "text": "x"}),
        json!({"title": "T", "text": "  "}),
    ] {
        let (s, v) = call(&t, &dc, Method::POST, &base, Some(body)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_letter")), "{v}");
    }
    let (s, v) = call(
        &t,
        &dc,
        Method::POST,
        "/api/v1/encounters",
        Some(json!({"patient": pid, "reason": [{"system": "http://snomed.info/sct", "code": " 38341003"}]})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_encounter")), "{v}");
    let (s, e) =
        call(&t, &dc, Method::POST, "/api/v1/encounters", Some(json!({"patient": pid, "virtual": true}))).await;
    assert_eq!(s, 201);
    let (s, v) = call(
        &t,
        &dc,
        Method::PUT,
        &format!("/api/v1/encounters/{}", e["id"].as_str().unwrap()),
        Some(json!({"videoRoom": "https://video.example/a room"})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_encounter")), "{v}");
    // Unknown fields and malformed JSON are refused with the body code.
    let (s, v) = call(
        &t,
        &me,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": "2026-06-02T09:00:00Z", "type": "ROUTINE", "priority": 1})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_body")), "{v}");
    let (s, v) = call(
        &t,
        &me,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": "tomorrow", "type": "ROUTINE"})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_time")), "{v}");
}

/// Whether a search Bundle has a resource with this id.
fn bundle_has(bundle: &Value, id: &str) -> bool {
    bundle["entry"].as_array().is_some_and(|e| e.iter().any(|e| e["resource"]["id"] == id))
}
