//! Scheduling (issue 8): availability as Schedules, slot search across DST changes and time
//! zones, atomic booking under concurrency (one server and two servers on one database),
//! reminders written with the booking (cancelled with it, sent exactly once across a restart),
//! reschedule, cancel, no-show, check-in and the waitlist.

use std::collections::BTreeSet;
use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::{DateTime, Utc};
use hearth_server::{App, Clock};
use hearth_store_sql::notify as outbox;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, TestClock, count, patient, race};

pub fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

pub fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// An account of `role` linked to `fhir_user`, straight in the database, and a client holding a
/// token for it (signed with the server's keys, not expiring, so tests may move the clock).
pub async fn account(app: &App, role: &str, fhir_user: Option<String>, email: bool) -> (String, reqwest::Client) {
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!("sched-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let token =
        crate::common::seed_account(app, &id, role, fhir_user, email.then(|| format!("{id}@example.org"))).await;
    (id, bearer(&token))
}

pub async fn call(t: &TestApp, c: &reqwest::Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    call_at(&t.addr, c, method, path, body).await
}

pub async fn call_at(addr: &str, c: &reqwest::Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = c.request(method, format!("{addr}{path}"));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let text = r.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

/// A clinician with a Practitioner record: (practitioner id, client).
pub async fn clinician(t: &TestApp, family: &str) -> (String, reqwest::Client) {
    let p = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": family}]})).await;
    let (_, c) = account(&t.app, "clinician", Some(format!("Practitioner/{p}")), true).await;
    (p, c)
}

/// A patient with a record and an account with an e-mail address: (patient id, account, client).
pub async fn patient_account(t: &TestApp, family: &str) -> (String, String, reqwest::Client) {
    let p = t.create(&patient(family)).await;
    let (a, c) = account(&t.app, "patient", Some(format!("Patient/{p}")), true).await;
    (p, a, c)
}

/// Weekly hours every day in `tz`, 30-minute routine visits.
pub fn every_day(practitioner: &str, tz: &str, start: &str, end: &str) -> Value {
    json!({
        "practitioner": practitioner,
        "timeZone": tz,
        "hours": [{"days": ["mon", "tue", "wed", "thu", "fri", "sat", "sun"], "start": start, "end": end}],
        "types": [{"code": "ROUTINE", "minutes": 30, "buffer": 0}],
        "rules": {"maxDaysAhead": 365, "minNoticeMinutes": 0},
    })
}

pub async fn schedule(t: &TestApp, c: &reqwest::Client, body: Value) -> String {
    let (s, v) = call(t, c, Method::POST, "/api/v1/schedules", Some(body)).await;
    assert_eq!(s, 201, "{v}");
    v["id"].as_str().unwrap().to_owned()
}

pub async fn slots(t: &TestApp, c: &reqwest::Client, practitioner: &str, from: &str, to: &str) -> Vec<String> {
    let (s, v) = call(
        t,
        c,
        Method::GET,
        &format!("/api/v1/appointments/slots/available?practitioner={practitioner}&from={from}&to={to}&type=ROUTINE"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    v["slots"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn slots_keep_local_hours_across_a_dst_change_and_across_time_zones() {
    let t = TestApp::spawn().await;
    t.clock.set(at("2026-03-20T12:00:00Z"));
    let (london, doc) = clinician(&t, "Khan").await;
    let (kolkata, doc2) = clinician(&t, "Iyer").await;
    schedule(&t, &doc, every_day(&london, "Europe/London", "09:00", "10:00")).await;
    schedule(&t, &doc2, every_day(&kolkata, "Asia/Kolkata", "09:00", "10:00")).await;
    let (_, _, me) = patient_account(&t, "Finder").await;

    // London moves to BST on 29 March 2026: 09:00 local is 09:00Z before, 08:00Z after.
    assert_eq!(
        slots(&t, &me, &london, "2026-03-28T00:00:00Z", "2026-03-30T00:00:00Z").await,
        ["2026-03-28T09:00:00Z", "2026-03-28T09:30:00Z", "2026-03-29T08:00:00Z", "2026-03-29T08:30:00Z"]
    );
    // Kolkata (UTC+05:30, no DST): the same wall-clock hours.
    assert_eq!(
        slots(&t, &me, &kolkata, "2026-03-28T00:00:00Z", "2026-03-29T00:00:00Z").await,
        ["2026-03-28T03:30:00Z", "2026-03-28T04:00:00Z"]
    );
    // The FHIR operation answers the same slots as Slot resources.
    let r = t
        .send(me.get(t.url(&format!(
            "/fhir/Appointment/$find?practitioner={london}&start=2026-03-29T00:00:00Z&end=2026-03-30T00:00:00Z"
        ))))
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    crate::common::assert_valid_r4(&b);
    let starts: Vec<&str> =
        b["entry"].as_array().unwrap().iter().map(|e| e["resource"]["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-03-29T08:00:00Z", "2026-03-29T08:30:00Z"]);
    // The operations are in the CapabilityStatement.
    let cs = t.get("/fhir/metadata").await.json();
    let appointment =
        cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == "Appointment").unwrap().clone();
    let ops: Vec<&str> =
        appointment["operation"].as_array().unwrap().iter().map(|o| o["name"].as_str().unwrap()).collect();
    assert_eq!(ops, ["find", "book"]);
    // A range that is inverted, or too long, is refused clearly.
    let (s, v) = call(
        &t,
        &me,
        Method::GET,
        &format!("/api/v1/appointments/slots/available?practitioner={london}&from=2026-03-29T00:00:00Z&to=2026-03-28T00:00:00Z"),
        None,
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_range")));
    let r = t
        .send(me.get(t.url(&format!(
            "/fhir/Appointment/$find?practitioner={london}&start=2026-01-01T00:00:00Z&end=2027-01-01T00:00:00Z"
        ))))
        .await;
    assert_eq!(r.status, 400);
    r.outcome_issue();
}

#[tokio::test]
async fn availability_is_a_schedule_only_its_practitioner_or_an_admin_manages() {
    let t = TestApp::spawn().await;
    let (me, doc) = clinician(&t, "Owner").await;
    let (_, other) = clinician(&t, "Other").await;
    let mut body = every_day(&me, "Europe/Berlin", "08:00", "12:00");
    body["exceptions"] = json!([{"date": "2026-12-24", "available": false}, {"date": "2026-12-27", "available": true, "start": "10:00", "end": "11:00"}]);
    body["rules"] = json!({"maxDaysAhead": 30, "minNoticeMinutes": 120, "maxPerDay": 6});
    let (s, v) = call(&t, &other, Method::POST, "/api/v1/schedules", Some(body.clone())).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")));
    let id = schedule(&t, &doc, body.clone()).await;
    // Stored as a valid FHIR Schedule naming the practitioner; read back as given.
    let r = t.get(&format!("/fhir/Schedule/{id}")).await;
    let s = r.json();
    crate::common::assert_valid_r4(&s);
    assert_eq!(s["actor"][0]["reference"], format!("Practitioner/{me}"));
    // The same availability in FHIR's own elements, on a PractitionerRole the Schedule names.
    let role_ref = s["actor"][1]["reference"].as_str().unwrap().to_owned();
    assert!(role_ref.starts_with("PractitionerRole/"), "{s}");
    let role = t.get(&format!("/fhir/{role_ref}")).await.json();
    crate::common::assert_valid_r4(&role);
    assert_eq!(role["availableTime"][0]["availableStartTime"], "08:00:00");
    assert_eq!(role["availableTime"][0]["daysOfWeek"].as_array().unwrap().len(), 7);
    // Closed all of 24 December in Berlin (UTC+1).
    assert_eq!(
        role["notAvailable"][0]["during"],
        json!({"start": "2026-12-23T23:00:00Z", "end": "2026-12-24T23:00:00Z"})
    );
    let (_, got) = call(&t, &doc, Method::GET, &format!("/api/v1/schedules/{id}"), None).await;
    assert_eq!(got["exceptions"], body["exceptions"]);
    assert_eq!(got["rules"]["maxPerDay"], 6);
    assert_eq!(got["hours"][0]["start"], "08:00");
    // Admins manage it too; bad input is a clear 400.
    body["hours"][0]["end"] = json!("13:00");
    let (s, v) = call(&t, &t.client, Method::PUT, &format!("/api/v1/schedules/{id}"), Some(body.clone())).await;
    assert_eq!(s, 200, "{v}");
    let role = t.get(&format!("/fhir/{role_ref}")).await.json();
    assert_eq!(
        (role["meta"]["versionId"].as_str(), role["availableTime"][0]["availableEndTime"].as_str()),
        (Some("2"), Some("13:00:00"))
    );
    for (field, value) in [
        ("timeZone", json!("Mars/Olympus")),
        ("types", json!([{"code": "ROUTINE", "minutes": 7}])),
        ("types", json!([{"code": "LUNCH", "minutes": 30}])),
    ] {
        let mut b = body.clone();
        b[field] = value;
        let (s, v) = call(&t, &doc, Method::POST, "/api/v1/schedules", Some(b)).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_schedule")), "{v}");
    }
    let (s, list) = call(&t, &doc, Method::GET, &format!("/api/v1/schedules?practitioner={me}"), None).await;
    assert_eq!((s, list["schedules"].as_array().unwrap().len()), (200, 1));
}

/// Books `start` for the patient behind `c`.
pub async fn book(t: &TestApp, c: &reqwest::Client, practitioner: &str, start: &str) -> (u16, Value) {
    call(
        t,
        c,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": practitioner, "start": start, "type": "ROUTINE"})),
    )
    .await
}

/// The practitioner's booked appointments, as the admin sees them.
async fn booked(addr: &str, admin: &reqwest::Client, practitioner: &str) -> Vec<Value> {
    let (s, v) =
        call_at(addr, admin, Method::GET, &format!("/api/v1/appointments?practitioner={practitioner}"), None).await;
    assert_eq!(s, 200, "{v}");
    v["appointments"].as_array().unwrap().iter().filter(|a| a["status"] == "booked").cloned().collect()
}

/// Ten slots (09:00–14:00 UTC, 30 minutes) and fifty patients each with a client.
async fn ten_slots_fifty_patients(t: &TestApp) -> (String, Vec<String>, Vec<(String, reqwest::Client)>) {
    t.clock.set(at("2026-06-01T00:00:00Z"));
    let (doc, dc) = clinician(t, "Busy").await;
    schedule(t, &dc, every_day(&doc, "UTC", "09:00", "14:00")).await;
    let starts = slots(t, &dc, &doc, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await;
    assert_eq!(starts.len(), 10);
    let mut patients = Vec::new();
    for i in 0..50 {
        let (p, _, c) = patient_account(t, &format!("Racer{i}")).await;
        patients.push((p, c));
    }
    (doc, starts, patients)
}

fn check_no_double_booking(appointments: &[Value], starts: &[String]) {
    assert_eq!(appointments.len(), 10, "{appointments:?}");
    let distinct: BTreeSet<&str> = appointments.iter().map(|a| a["start"].as_str().unwrap()).collect();
    assert_eq!(distinct.len(), 10, "a slot was booked twice: {appointments:?}");
    assert_eq!(distinct, starts.iter().map(String::as_str).collect());
}

#[tokio::test]
async fn fifty_concurrent_bookings_of_ten_slots_make_exactly_ten_appointments() {
    let t = TestApp::spawn().await;
    let (doc, starts, patients) = ten_slots_fifty_patients(&t).await;
    let requests = patients
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            c.post(t.url("/api/v1/appointments"))
                .header("content-type", "application/json")
                .body(json!({"practitioner": doc, "start": starts[i % 10], "type": "ROUTINE"}).to_string())
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!((count(&statuses, 201), count(&statuses, 409)), (10, 40), "{statuses:?}");
    check_no_double_booking(&booked(&t.addr, &t.client, &doc).await, &starts);
    // Nothing is free any more; a late comer gets 409 with (no) alternatives, never a 500.
    assert!(slots(&t, &t.client, &doc, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await.is_empty());
    let (s, v) = book(&t, &patients[0].1, &doc, &starts[0]).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("slot_taken")), "{v}");
    assert!(v["error"]["alternatives"].is_array());
    // Nor can the generic FHIR API, even an admin's, write around the claims: an Appointment
    // created there claims the time in its own transaction, and a taken time is a 409 naming
    // the appointment that holds it (issue 27 item 4; more in the fhir_* tests below).
    let taken = json!({"resourceType": "Appointment", "status": "booked", "start": starts[0],
        "end": "2026-06-02T23:00:00Z",
        "participant": [{"actor": {"reference": format!("Practitioner/{doc}")}, "status": "accepted"}]});
    let r = t.post("/fhir/Appointment", &taken).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    assert!(r.text.contains("Appointment/"), "{}", r.text);
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": taken, "request": {"method": "POST", "url": "Appointment"}}]});
    assert_eq!(t.post("/fhir", &bundle).await.status, 409);
    check_no_double_booking(&booked(&t.addr, &t.client, &doc).await, &starts);
}

#[tokio::test]
async fn two_servers_on_one_database_book_each_slot_once() {
    let t = TestApp::spawn().await;
    let (doc, starts, patients) = ten_slots_fifty_patients(&t).await;
    // A second server on the same database (the same SQLite file, or the same PostgreSQL
    // database), with its own pools, writer connection and clock.
    let mut config = t.app.config.clone();
    config.notify.worker = false;
    let clock = Arc::new(TestClock::now());
    clock.set(t.clock.now());
    let second = Arc::new(App::start(config, clock).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr2 = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hearth_server::serve(second.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let requests = patients
        .iter()
        .enumerate()
        .map(|(i, (_, c))| {
            let addr = if i % 2 == 0 { &t.addr } else { &addr2 };
            c.post(format!("{addr}/api/v1/appointments"))
                .header("content-type", "application/json")
                .body(json!({"practitioner": doc, "start": starts[(i / 2) % 10], "type": "ROUTINE"}).to_string())
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!((count(&statuses, 201), count(&statuses, 409)), (10, 40), "{statuses:?}");
    check_no_double_booking(&booked(&addr2, &t.client, &doc).await, &starts);
    let _ = stop.send(());
}

/// The outbox rows of the reminders of `appointment`.
async fn reminders(app: &App, appointment: &str) -> Vec<outbox::OutboxRow> {
    let mut rows = outbox::list_by_status(&*app.db, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.idem_key.starts_with(&format!("appointment-reminder:{appointment}:")))
        .collect::<Vec<_>>();
    rows.sort_by_key(|r| r.not_before);
    rows
}

/// Runs the notification worker of `app` until nothing is due.
async fn drain(app: &Arc<App>) {
    while hearth_server::notify::worker::run_once(&app.notifications, "sched-test-worker").await.unwrap() > 0 {}
}

fn no_worker(c: &mut hearth_server::Config) {
    c.notify.worker = false;
}

fn reminder_mails(t: &TestApp, to: &str) -> Vec<hearth_notify::MemoryMessage> {
    t.outbox.messages().into_iter().filter(|m| m.to == to && m.subject == "Appointment reminder").collect()
}

#[tokio::test]
async fn a_booking_queues_two_reminders_that_cancelling_cancels() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Remind").await;
    schedule(&t, &dc, every_day(&doc, "Asia/Kolkata", "09:00", "12:00")).await;
    let (pid, account_id, me) = patient_account(&t, "Reminded").await;
    // 09:00 in Kolkata on 3 June is 03:30Z.
    let (s, a) = book(&t, &me, &doc, "2026-06-03T03:30:00Z").await;
    assert_eq!(s, 201, "{a}");
    let id = a["id"].as_str().unwrap();
    let rows = reminders(&t.app, id).await;
    let keys: BTreeSet<&str> = rows.iter().map(|r| r.idem_key.as_str()).collect();
    assert_eq!((keys.len(), rows.len()), (2, 2), "{rows:?}");
    // One row per reminder, addressed to the patient (the accounts are found when it is due),
    // due 24 h and 2 h before.
    let due: BTreeSet<i64> = rows.iter().map(|r| r.not_before).collect();
    assert_eq!(
        due,
        [at("2026-06-02T03:30:00Z").timestamp_millis(), at("2026-06-03T01:30:00Z").timestamp_millis()].into()
    );
    let patient_ref = format!("Patient/{pid}");
    assert!(rows.iter().all(|r| r.status == "queued"
        && r.channel == "patient"
        && r.destination.as_deref() == Some(patient_ref.as_str())
        && r.account_id.is_none()));
    // The text names a time only: no practitioner, no reason.
    assert!(rows.iter().all(|r| r.template == "appointment-reminder" && !r.args.contains(&doc)));

    // The clinic was told about the booking.
    let doc_account =
        hearth_store_sql::identity::accounts_of(&*t.app.db, &format!("Practitioner/{doc}")).await.unwrap();
    let clinic: Vec<_> = outbox::list_by_status(&*t.app.db, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| {
            r.template == "appointment-change" && r.account_id.as_deref() == doc_account.first().map(String::as_str)
        })
        .collect();
    assert!(!clinic.is_empty() && clinic.iter().all(|r| r.args.contains("booked")));

    // Cancelled: nothing queued stays, and nothing is sent when the time comes.
    let (s, c) =
        call(&t, &me, Method::POST, &format!("/api/v1/appointments/{id}/cancel"), Some(json!({"reason": "pat-swl"})))
            .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!(c["status"], "cancelled");
    assert_eq!(c["cancellation"]["code"], "pat-swl");
    assert_eq!(c["cancellation"]["late"], false);
    assert!(reminders(&t.app, id).await.iter().all(|r| r.status == "cancelled"));
    t.clock.set(at("2026-06-03T03:00:00Z"));
    drain(&t.app).await;
    assert!(reminder_mails(&t, &format!("{account_id}@example.org")).is_empty());
    // The time is free again; cancelling twice is a conflict.
    assert!(slots(&t, &me, &doc, "2026-06-03T03:30:00Z", "2026-06-03T03:31:00Z").await.len() == 1);
    let (s, _) = call(&t, &me, Method::POST, &format!("/api/v1/appointments/{id}/cancel"), None).await;
    assert_eq!(s, 409);
}

#[tokio::test]
async fn reminders_survive_a_restart_and_are_sent_exactly_once() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Restart").await;
    schedule(&t, &dc, every_day(&doc, "Europe/London", "09:00", "12:00")).await;
    let (_, account_id, me) = patient_account(&t, "Patient").await;
    // 10:00 BST on 4 June is 09:00Z.
    let (s, a) = book(&t, &me, &doc, "2026-06-04T09:00:00Z").await;
    assert_eq!(s, 201, "{a}");
    let id = a["id"].as_str().unwrap().to_owned();
    drain(&t.app).await; // the clinic's notice; the reminders are not due
    let mail = format!("{account_id}@example.org");
    assert!(reminder_mails(&t, &mail).is_empty());

    // The server stops; a new one starts on the same database after the first reminder time.
    let mut config = t.app.config.clone();
    config.notify.worker = false;
    t.app.store.close().await;
    let clock = Arc::new(TestClock::now());
    clock.set(at("2026-06-03T09:30:00Z"));
    let restarted = Arc::new(App::start(config, clock.clone()).await.unwrap());
    let memory = Arc::new(hearth_notify::MemoryChannel::default());
    restarted
        .notify
        .set_channel(hearth_notify::ChannelKind::Email, memory.as_channel(hearth_notify::ChannelKind::Email));
    let sent = |m: &Arc<hearth_notify::MemoryChannel>| {
        m.messages().into_iter().filter(|x| x.to == mail && x.subject == "Appointment reminder").count()
    };
    drain(&restarted).await;
    drain(&restarted).await;
    assert_eq!(sent(&memory), 1, "the 24-hour reminder, once");
    // The 2-hour reminder, once, however often the worker runs.
    clock.set(at("2026-06-04T07:30:00Z"));
    drain(&restarted).await;
    drain(&restarted).await;
    assert_eq!(sent(&memory), 2);
    let rows = reminders(&restarted, &id).await;
    assert!(rows.iter().all(|r| r.status == "sent" || r.status == "delivered"), "{rows:?}");
    let texts: Vec<String> = memory.messages().into_iter().filter(|x| x.to == mail).map(|x| x.text).collect();
    // 09:00Z shown in the patient's (default UTC) zone; nothing but the time.
    assert!(texts.iter().all(|x| x.contains("Thu 4 Jun 2026, 09:00 UTC") && !x.contains("Restart")), "{texts:?}");
}

#[tokio::test]
async fn reschedule_moves_reminders_and_offers_the_freed_slot_to_the_waitlist() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Move").await;
    schedule(&t, &dc, every_day(&doc, "UTC", "09:00", "10:00")).await;
    let (_, _, me) = patient_account(&t, "Mover").await;
    let (_, waiting_account, waiter) = patient_account(&t, "Waiter").await;
    let (s, a) = book(&t, &me, &doc, "2026-06-05T09:00:00Z").await;
    assert_eq!(s, 201, "{a}");
    let id = a["id"].as_str().unwrap();
    let (s, w) = call(
        &t,
        &waiter,
        Method::POST,
        "/api/v1/waitlist",
        Some(json!({"practitioner": doc, "earliest": "2026-06-05T00:00:00Z", "latest": "2026-06-06T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    // Onto the other slot of that day: the old one is freed and offered.
    let (s, moved) = call(
        &t,
        &me,
        Method::POST,
        &format!("/api/v1/appointments/{id}/reschedule"),
        Some(json!({"start": "2026-06-05T09:30:00Z"})),
    )
    .await;
    assert_eq!(s, 200, "{moved}");
    assert_eq!((moved["start"].as_str(), moved["version"].as_u64()), (Some("2026-06-05T09:30:00Z"), Some(2)));
    let rows = reminders(&t.app, id).await;
    let live: BTreeSet<i64> = rows.iter().filter(|r| r.status == "queued").map(|r| r.not_before).collect();
    assert_eq!(
        live,
        [at("2026-06-04T09:30:00Z").timestamp_millis(), at("2026-06-05T07:30:00Z").timestamp_millis()].into()
    );
    assert_eq!(
        rows.iter().filter(|r| r.status == "cancelled").count(),
        rows.len() - rows.iter().filter(|r| r.status == "queued").count()
    );
    let offers: Vec<_> = outbox::list_by_status(&*t.app.db, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.template == "appointment-offer")
        .collect();
    assert!(!offers.is_empty() && offers.iter().all(|r| r.account_id.as_deref() == Some(waiting_account.as_str())));
    let (_, list) = call(&t, &waiter, Method::GET, "/api/v1/waitlist", None).await;
    assert_eq!(list["waitlist"][0]["offered"], "2026-06-05T09:00:00Z");
    // The waiting patient takes it; the taken slot cannot be moved onto.
    let (s, _) = book(&t, &waiter, &doc, "2026-06-05T09:00:00Z").await;
    assert_eq!(s, 201);
    let (s, v) = call(
        &t,
        &me,
        Method::POST,
        &format!("/api/v1/appointments/{id}/reschedule"),
        Some(json!({"start": "2026-06-05T09:00:00Z"})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("slot_taken")), "{v}");
    // Not a slot at all.
    let (s, v) = call(
        &t,
        &me,
        Method::POST,
        &format!("/api/v1/appointments/{id}/reschedule"),
        Some(json!({"start": "2026-06-05T13:00:00Z"})),
    )
    .await;
    assert_eq!((s, v["error"]["code"].as_str()), (422, Some("not_a_slot")));
}

#[tokio::test]
async fn who_books_for_whom_late_cancels_no_shows_and_series() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Rules").await;
    schedule(&t, &dc, every_day(&doc, "America/New_York", "09:00", "11:00")).await;
    let (me_p, me_account, me) = patient_account(&t, "Self").await;
    let (other_p, _, _) = patient_account(&t, "Other").await;
    // 09:00 EDT = 13:00Z. A patient cannot book for someone else (nor see their record).
    let (s, _) = call(
        &t,
        &me,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": "2026-06-02T13:00:00Z", "type": "ROUTINE", "patient": other_p})),
    )
    .await;
    assert_eq!(s, 403);
    // A clinician books for anyone; a caregiver for the patients linked to them.
    let (s, a) = call(&t, &dc, Method::POST, "/api/v1/appointments", Some(json!({"practitioner": doc, "start": "2026-06-02T13:00:00Z", "type": "ROUTINE", "patient": other_p, "reason": "knee pain"}))).await;
    assert_eq!(s, 201, "{a}");
    assert_eq!(a["patient"], other_p.as_str());
    let (carer_id, carer) = account(&t.app, "caregiver", None, true).await;
    let (s, _) = call(
        &t,
        &carer,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": "2026-06-02T13:30:00Z", "type": "ROUTINE", "patient": me_p})),
    )
    .await;
    assert_eq!(s, 404, "not linked yet");
    let (s, v) = call(
        &t,
        &t.client,
        Method::POST,
        "/api/v1/admin/caregivers",
        Some(json!({"caregiver": carer_id, "patient": me_p})),
    )
    .await;
    assert!(s == 201 || s == 200 || s == 204, "{s} {v}");
    let (s, mine) = call(
        &t,
        &carer,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": "2026-06-02T13:30:00Z", "type": "ROUTINE", "patient": me_p})),
    )
    .await;
    assert_eq!(s, 201, "{mine}");
    // Reminders go to the patient and to the linked caregiver: one patient-addressed row per
    // offset, resolved to both accounts when it is due.
    let rows = reminders(&t.app, mine["id"].as_str().unwrap()).await;
    assert!(rows.len() == 2 && rows.iter().all(|r| r.channel == "patient"), "{rows:?}");
    t.clock.set(at("2026-06-01T13:30:00Z"));
    drain(&t.app).await;
    let reminded: BTreeSet<String> =
        reminders(&t.app, mine["id"].as_str().unwrap()).await.into_iter().filter_map(|r| r.account_id).collect();
    assert_eq!(reminded, [carer_id.clone(), me_account.clone()].into(), "{reminded:?}");
    // A weekly series of four at 09:00 local, across no DST change here; all or nothing.
    let (s, series) = call(&t, &me, Method::POST, "/api/v1/appointments", Some(json!({"practitioner": doc, "start": "2026-06-03T13:00:00Z", "type": "ROUTINE", "repeat": {"count": 4, "intervalDays": 7}}))).await;
    assert_eq!(s, 201, "{series}");
    let occ = series["occurrences"].as_array().unwrap();
    assert_eq!(occ.len(), 4);
    assert_eq!(occ[3]["start"], "2026-06-24T13:00:00Z");
    assert!(occ.iter().all(|o| o["series"] == series["series"]));
    for o in occ {
        // Two offsets, each one row for the patient (and, when due, the linked caregiver).
        let rows = reminders(&t.app, o["id"].as_str().unwrap()).await;
        assert_eq!(rows.iter().map(|r| &r.idem_key).collect::<BTreeSet<_>>().len(), 2);
        assert_eq!(rows.iter().map(|r| r.not_before).collect::<BTreeSet<_>>().len(), 2);
    }
    let (s, v) = call(&t, &dc, Method::POST, "/api/v1/appointments", Some(json!({"practitioner": doc, "start": "2026-06-10T13:00:00Z", "type": "ROUTINE", "patient": other_p, "repeat": {"count": 2, "intervalDays": 7}}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (409, Some("slot_taken")), "{v}");
    // Cancelling within 24 hours of the start is recorded as late.
    t.clock.set(at("2026-06-02T01:00:00Z"));
    let (s, c) =
        call(&t, &me, Method::POST, &format!("/api/v1/appointments/{}/cancel", mine["id"].as_str().unwrap()), None)
            .await;
    assert_eq!(s, 200, "{c}");
    assert_eq!((c["cancellation"]["code"].as_str(), c["cancellation"]["late"].as_bool()), (Some("pat"), Some(true)));
    // No-show: staff only, after the start.
    let aid = a["id"].as_str().unwrap();
    let (s, _) = call(&t, &dc, Method::POST, &format!("/api/v1/appointments/{aid}/no-show"), None).await;
    assert_eq!(s, 409, "not started yet");
    t.clock.set(at("2026-06-02T13:40:00Z"));
    let (s, _) = call(&t, &me, Method::POST, &format!("/api/v1/appointments/{aid}/no-show"), None).await;
    assert_eq!(s, 403);
    let (s, n) = call(&t, &dc, Method::POST, &format!("/api/v1/appointments/{aid}/no-show"), None).await;
    assert_eq!((s, n["status"].as_str()), (200, Some("noshow")), "{n}");
    // The record is valid FHIR.
    let r = t.get(&format!("/fhir/Appointment/{aid}")).await;
    crate::common::assert_valid_r4(&r.json());
    assert_eq!(r.json()["reasonCode"][0]["text"], "knee pain");
}

/// Two real `hearth serve` processes on one database — the same SQLite file (their writers
/// serialise on `BEGIN IMMEDIATE`) or the same PostgreSQL database — and 50 racing bookings of
/// 10 slots spread over both: exactly 10 appointments, none overlapping.
#[tokio::test]
async fn two_server_processes_book_each_slot_once() {
    use crate::process::{sigterm, start, wait_exit};
    let dir = tempfile::tempdir().unwrap();
    let url = crate::common::fresh_postgres_database().await;
    let mut env = vec![("HEARTH_AUTH_API_REQUESTS_PER_MINUTE", "1000000")];
    if let Some(u) = &url {
        env.push(("HEARTH_DATABASE_URL", u.as_str()));
    }
    let mut a = start(dir.path(), &env).await;
    let mut b = start(dir.path(), &env).await;
    let admin = a.client();
    let post = |base: &str, path: &str, body: Value| {
        admin.post(format!("{base}{path}")).header("content-type", "application/json").body(body.to_string())
    };
    let r = admin
        .post(format!("{}/fhir/Practitioner", a.base))
        .header("content-type", "application/fhir+json")
        .body(json!({"resourceType": "Practitioner", "name": [{"family": "Shared"}]}).to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status(), 201);
    let doc = serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["id"].as_str().unwrap().to_owned();
    // The real clock: ten slots on a day well ahead.
    let day = (Utc::now() + chrono::Duration::days(3)).format("%Y-%m-%d").to_string();
    let r = post(&b.base, "/api/v1/schedules", every_day(&doc, "UTC", "09:00", "14:00")).send().await.unwrap();
    assert_eq!(r.status(), 201);
    let (s, v) = call_at(
        &a.base,
        &admin,
        Method::GET,
        &format!("/api/v1/appointments/slots/available?practitioner={doc}&from={day}T00:00:00Z&to={day}T23:59:59Z"),
        None,
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let starts: Vec<String> =
        v["slots"].as_array().unwrap().iter().map(|s| s["start"].as_str().unwrap().to_owned()).collect();
    assert_eq!(starts.len(), 10, "{v}");
    let mut patients = Vec::new();
    for i in 0..50 {
        let r = admin
            .post(format!("{}/fhir/Patient", a.base))
            .header("content-type", "application/fhir+json")
            .body(patient(&format!("Process{i}")).to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 201);
        patients
            .push(serde_json::from_str::<Value>(&r.text().await.unwrap()).unwrap()["id"].as_str().unwrap().to_owned());
    }
    let requests = patients
        .iter()
        .enumerate()
        .map(|(i, p)| {
            let base = if i % 2 == 0 { &a.base } else { &b.base };
            post(
                base,
                "/api/v1/appointments",
                json!({"practitioner": doc, "patient": p, "start": starts[(i / 2) % 10], "type": "ROUTINE"}),
            )
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!((count(&statuses, 201), count(&statuses, 409)), (10, 40), "{statuses:?}");
    for base in [&a.base, &b.base] {
        check_no_double_booking(&booked(base, &admin, &doc).await, &starts);
    }
    sigterm(&a).await;
    sigterm(&b).await;
    wait_exit(&mut a).await;
    wait_exit(&mut b).await;
}

#[tokio::test]
async fn the_per_day_limit_holds_under_concurrent_bookings_of_different_slots() {
    let t = TestApp::spawn().await;
    t.clock.set(at("2026-06-01T00:00:00Z"));
    let (doc, dc) = clinician(&t, "Limited").await;
    let mut body = every_day(&doc, "UTC", "09:00", "14:00");
    body["rules"]["maxPerDay"] = json!(3);
    schedule(&t, &dc, body).await;
    let starts = slots(&t, &dc, &doc, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await;
    assert_eq!(starts.len(), 10);
    let mut requests = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let (_, _, c) = patient_account(&t, &format!("Limit{i}")).await;
        requests.push(
            c.post(t.url("/api/v1/appointments"))
                .header("content-type", "application/json")
                .body(json!({"practitioner": doc, "start": start, "type": "ROUTINE"}).to_string()),
        );
    }
    let statuses = race(requests).await;
    assert_eq!((count(&statuses, 201), count(&statuses, 409)), (3, 7), "{statuses:?}");
    assert_eq!(booked(&t.addr, &t.client, &doc).await.len(), 3);
    assert!(slots(&t, &dc, &doc, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await.is_empty());
    // The next day is not affected; cancelling one frees a place of that day.
    assert_eq!(slots(&t, &dc, &doc, "2026-06-03T00:00:00Z", "2026-06-04T00:00:00Z").await.len(), 10);
    let one = booked(&t.addr, &t.client, &doc).await[0]["id"].as_str().unwrap().to_owned();
    let (s, _) = call(&t, &t.client, Method::POST, &format!("/api/v1/appointments/{one}/cancel"), None).await;
    assert_eq!(s, 200);
    let free = slots(&t, &dc, &doc, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await;
    assert_eq!(free.len(), 8);
    let (_, _, late) = patient_account(&t, "LateComer").await;
    let (s, v) = book(&t, &late, &doc, &free[0]).await;
    assert_eq!(s, 201, "{v}");
}

/// Ids in scheduling bodies and queries are taken bare or as the FHIR references consents use
/// (`Practitioner/<id>`, `Patient/<id>`); another type's reference is refused.
#[tokio::test]
async fn scheduling_takes_ids_bare_or_as_references() {
    let t = TestApp::spawn().await;
    t.clock.set(at("2026-06-01T00:00:00Z"));
    let (doc, dc) = clinician(&t, "Typed").await;
    let typed = format!("Practitioner/{doc}");
    schedule(&t, &dc, every_day(&typed, "UTC", "09:00", "12:00")).await;
    let (pid, _, me) = patient_account(&t, "Typed").await;
    let free = slots(&t, &me, &typed, "2026-06-02T00:00:00Z", "2026-06-03T00:00:00Z").await;
    assert!(!free.is_empty(), "the slot search takes a typed practitioner");
    let (s, v) = call(
        &t,
        &me,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": typed, "patient": format!("Patient/{pid}"), "start": "2026-06-02T09:00:00Z", "type": "ROUTINE"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!((v["practitioner"].as_str(), v["patient"].as_str()), (Some(doc.as_str()), Some(pid.as_str())));
    let (s, v) =
        call(&t, &dc, Method::GET, &format!("/api/v1/appointments?practitioner=Practitioner%2F{doc}"), None).await;
    assert_eq!((s, v["appointments"].as_array().map(Vec::len)), (200, Some(1)), "{v}");
    let (s, v) = book(&t, &me, &format!("Patient/{pid}"), "2026-06-02T10:00:00Z").await;
    assert_eq!(s, 400, "a patient reference is not a practitioner: {v}");
}

// ------------------------------------------------------------ issue 27 item 4: FHIR writes

/// A booked FHIR Appointment of `patient` with `practitioner` for 30 minutes from `start`.
fn fhir_appointment(practitioner: &str, patient: &str, start: &str) -> Value {
    let end = at(start) + chrono::Duration::minutes(30);
    json!({"resourceType": "Appointment", "status": "booked", "start": start,
        "end": end.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
        "participant": [
            {"actor": {"reference": format!("Practitioner/{practitioner}")}, "status": "accepted"},
            {"actor": {"reference": format!("Patient/{patient}")}, "status": "accepted"}]})
}

/// Each of ten slots is booked at once by a patient through the app and by an EMR through
/// `POST /fhir/Appointment`: exactly one of the two wins every slot, the other gets `409`.
#[tokio::test]
async fn fhir_creates_racing_app_bookings_for_the_same_slots_let_exactly_one_win_each() {
    let t = TestApp::spawn_with(no_worker).await;
    let (doc, starts, patients) = ten_slots_fifty_patients(&t).await;
    let mut requests = Vec::new();
    for (i, start) in starts.iter().enumerate() {
        let (pid, c) = &patients[i];
        requests.push(
            c.post(t.url("/api/v1/appointments"))
                .header("content-type", "application/json")
                .body(json!({"practitioner": doc, "start": start, "type": "ROUTINE"}).to_string()),
        );
        requests.push(t.with_body(Method::POST, "/fhir/Appointment", &fhir_appointment(&doc, pid, start)));
    }
    let statuses = race(requests).await;
    assert_eq!((count(&statuses, 201), count(&statuses, 409)), (10, 10), "{statuses:?}");
    for pair in statuses.chunks(2) {
        assert!(pair.contains(&201) && pair.contains(&409), "{statuses:?}");
    }
    check_no_double_booking(&booked(&t.addr, &t.client, &doc).await, &starts);
}

/// An update through FHIR that moves the time releases the old cells and claims the new ones,
/// moves the reminders, and is refused (409 naming the holder) onto a taken time.
#[tokio::test]
async fn a_fhir_update_moving_the_time_claims_it_again() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Mover").await;
    let mut hours = every_day(&doc, "UTC", "09:00", "11:00");
    // A per-day limit: app bookings also hold a day place, which a FHIR edit must not upset.
    hours["rules"]["maxPerDay"] = json!(8);
    schedule(&t, &dc, hours).await;
    let (pid, _, me) = patient_account(&t, "Moved").await;
    let r = t.post("/fhir/Appointment", &fhir_appointment(&doc, &pid, "2026-06-05T09:00:00Z")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let due = |rows: &[outbox::OutboxRow]| -> BTreeSet<i64> {
        rows.iter().filter(|r| r.status == "queued").map(|r| r.not_before).collect()
    };
    assert_eq!(
        due(&reminders(&t.app, &id).await),
        [at("2026-06-04T09:00:00Z").timestamp_millis(), at("2026-06-05T07:00:00Z").timestamp_millis()].into()
    );
    // Taken: the app cannot book it.
    assert_eq!(book(&t, &me, &doc, "2026-06-05T09:00:00Z").await.0, 409);
    // Moved to 09:30 with a PUT.
    let mut moved = t.get(&format!("/fhir/Appointment/{id}")).await.json();
    moved["start"] = json!("2026-06-05T09:30:00Z");
    moved["end"] = json!("2026-06-05T10:00:00Z");
    let r = t.put(&format!("/fhir/Appointment/{id}"), &moved).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(
        due(&reminders(&t.app, &id).await),
        [at("2026-06-04T09:30:00Z").timestamp_millis(), at("2026-06-05T07:30:00Z").timestamp_millis()].into()
    );
    // The old time is free, the new one is not.
    let (s, other) = book(&t, &me, &doc, "2026-06-05T09:00:00Z").await;
    assert_eq!(s, 201, "{other}");
    assert_eq!(book(&t, &me, &doc, "2026-06-05T09:30:00Z").await.0, 409);
    // A FHIR edit of the app's booking that keeps its time keeps its claims and reminders.
    let other_id = other["id"].as_str().unwrap().to_owned();
    let mut app_booked = t.get(&format!("/fhir/Appointment/{other_id}")).await.json();
    app_booked["comment"] = json!("interpreter needed");
    let r = t.put(&format!("/fhir/Appointment/{other_id}"), &app_booked).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(due(&reminders(&t.app, &other_id).await).len(), 2);
    assert_eq!(book(&t, &me, &doc, "2026-06-05T09:00:00Z").await.0, 409);
    // A change that keeps the time (a comment) keeps the claims and reminders.
    let mut noted = t.get(&format!("/fhir/Appointment/{id}")).await.json();
    noted["comment"] = json!("bring the glucose diary");
    assert_eq!(t.put(&format!("/fhir/Appointment/{id}"), &noted).await.status, 200);
    assert_eq!(due(&reminders(&t.app, &id).await).len(), 2);
    // Moving onto the app booking's time: 409 naming it, and nothing changed.
    let mut clash = t.get(&format!("/fhir/Appointment/{id}")).await.json();
    clash["start"] = json!("2026-06-05T09:15:00Z");
    clash["end"] = json!("2026-06-05T09:45:00Z");
    let r = t.put(&format!("/fhir/Appointment/{id}"), &clash).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    assert!(r.text.contains(&format!("Appointment/{other_id}")), "{}", r.text);
    let now = t.get(&format!("/fhir/Appointment/{id}")).await.json();
    assert_eq!((now["start"].as_str(), now["meta"]["versionId"].as_str()), (Some("2026-06-05T09:30:00Z"), Some("3")));
    // A JSON Patch moving it to 10:00 works the same way.
    let patch = json!([{"op": "replace", "path": "/start", "value": "2026-06-05T10:00:00Z"},
                       {"op": "replace", "path": "/end", "value": "2026-06-05T10:30:00Z"}]);
    let r = t
        .send(
            t.request(Method::PATCH, &format!("/fhir/Appointment/{id}"))
                .header("content-type", "application/json-patch+json")
                .body(patch.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(book(&t, &me, &doc, "2026-06-05T09:30:00Z").await.0, 201);
    assert_eq!(book(&t, &me, &doc, "2026-06-05T10:00:00Z").await.0, 409);
}

/// Deleting (or cancelling) a FHIR-booked appointment frees its time, cancels its reminders and
/// offers the time to the waitlist in the same transaction.
#[tokio::test]
async fn a_fhir_delete_frees_the_slot_and_the_waitlist_is_offered_it() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Freed").await;
    schedule(&t, &dc, every_day(&doc, "UTC", "09:00", "10:00")).await;
    let (pid, _, _) = patient_account(&t, "Leaving").await;
    let (_, waiting_account, waiter) = patient_account(&t, "Waiting").await;
    let r = t.post("/fhir/Appointment", &fhir_appointment(&doc, &pid, "2026-06-05T09:00:00Z")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    assert!(slots(&t, &dc, &doc, "2026-06-05T09:00:00Z", "2026-06-05T09:01:00Z").await.is_empty());
    let (s, w) = call(
        &t,
        &waiter,
        Method::POST,
        "/api/v1/waitlist",
        Some(json!({"practitioner": doc, "earliest": "2026-06-05T00:00:00Z", "latest": "2026-06-06T00:00:00Z"})),
    )
    .await;
    assert_eq!(s, 201, "{w}");
    assert_eq!(t.delete(&format!("/fhir/Appointment/{id}")).await.status, 204);
    assert!(reminders(&t.app, &id).await.iter().all(|r| r.status == "cancelled"));
    let offers: Vec<_> = outbox::list_by_status(&*t.app.db, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.template == "appointment-offer")
        .collect();
    assert!(!offers.is_empty() && offers.iter().all(|r| r.account_id.as_deref() == Some(waiting_account.as_str())));
    let (_, list) = call(&t, &waiter, Method::GET, "/api/v1/waitlist", None).await;
    assert_eq!(list["waitlist"][0]["offered"], "2026-06-05T09:00:00Z");
    assert_eq!(slots(&t, &dc, &doc, "2026-06-05T09:00:00Z", "2026-06-05T09:01:00Z").await.len(), 1);
    // Cancelling through a status change frees the time the same way.
    let r = t.post("/fhir/Appointment", &fhir_appointment(&doc, &pid, "2026-06-05T09:30:00Z")).await;
    let mut a = r.json();
    a["status"] = json!("cancelled");
    let r = t.put(&format!("/fhir/Appointment/{}", a["id"].as_str().unwrap()), &a).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(slots(&t, &dc, &doc, "2026-06-05T09:30:00Z", "2026-06-05T09:31:00Z").await.len(), 1);
}

/// A transaction whose Appointment conflicts rolls back entirely (the Patient beside it is not
/// created); two Appointments of one transaction that overlap each other conflict too.
#[tokio::test]
async fn a_transaction_with_a_conflicting_appointment_rolls_back_entirely() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Tx").await;
    schedule(&t, &dc, every_day(&doc, "UTC", "09:00", "11:00")).await;
    let (_, _, me) = patient_account(&t, "First").await;
    assert_eq!(book(&t, &me, &doc, "2026-06-05T09:00:00Z").await.0, 201);
    let tagged = |tag: &str| {
        let mut p = patient("Bundled");
        p["identifier"] = json!([{"system": "urn:hearth:test", "value": tag}]);
        p
    };
    let with_patient = |tag: &str, starts: &[&str]| {
        let mut entry = vec![json!({"fullUrl": "urn:uuid:6a8e1c2e-0b7d-4d0e-9f57-1f7a3f1e0001",
            "resource": tagged(tag), "request": {"method": "POST", "url": "Patient"}})];
        for s in starts {
            let mut a = fhir_appointment(&doc, "x", s);
            a["participant"][1]["actor"]["reference"] = json!("urn:uuid:6a8e1c2e-0b7d-4d0e-9f57-1f7a3f1e0001");
            entry.push(json!({"resource": a, "request": {"method": "POST", "url": "Appointment"}}));
        }
        json!({"resourceType": "Bundle", "type": "transaction", "entry": entry})
    };
    let found = |tag: String| {
        let t = &t;
        async move { t.get(&format!("/fhir/Patient?identifier=urn:hearth:test|{tag}")).await.json()["total"].clone() }
    };
    // One free, one taken: nothing at all is written.
    let r = t.post("/fhir", &with_patient("clash", &["2026-06-05T10:00:00Z", "2026-06-05T09:00:00Z"])).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(r.json()["resourceType"], "OperationOutcome");
    assert_eq!(found("clash".into()).await, 0);
    assert_eq!(book(&t, &me, &doc, "2026-06-05T10:00:00Z").await.0, 201, "10:00 stayed free");
    // Overlapping each other.
    let r = t.post("/fhir", &with_patient("self", &["2026-06-05T10:30:00Z", "2026-06-05T10:30:00Z"])).await;
    assert_eq!(r.status, 409, "{}", r.text);
    assert_eq!(found("self".into()).await, 0);
    // Free: both commit and hold their time.
    let r = t.post("/fhir", &with_patient("fine", &["2026-06-05T09:30:00Z"])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(found("fine".into()).await, 1);
    assert_eq!(book(&t, &me, &doc, "2026-06-05T09:30:00Z").await.0, 409);
}
