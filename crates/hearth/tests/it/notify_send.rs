//! Notifications find their people at send time, and staff can send (issue 28, items 6 and 7):
//! reminders reach accounts created after the booking, instants are shown in each recipient's
//! zone with the zone named, and a staff message to a Group reaches each member in reach (and
//! their caregivers) once on their enabled channels.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use chrono::TimeDelta;
use hearth_notify::Category;
use hearth_server::App;
use hearth_server::notify::{self, PatientNotice};
use hearth_store_sql::notify::{self as sql, OutboxRow};
use reqwest::Method;
use serde_json::{Map, Value, json};

use crate::common::{TestApp, patient, seed_account};
use crate::scheduling::{at, call, clinician, every_day, schedule};

fn no_worker(c: &mut hearth_server::Config) {
    c.notify.worker = false;
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

fn next_id(prefix: &str) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    format!("{prefix}-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

/// An account of `role` linked to `fhir_user`, with e-mail `<id>@example.org`: (id, client).
async fn account(t: &TestApp, role: &str, fhir_user: Option<String>) -> (String, reqwest::Client) {
    let id = next_id(role);
    let token = seed_account(&t.app, &id, role, fhir_user, Some(format!("{id}@example.org"))).await;
    (id, bearer(&token))
}

/// A clinician bound to organisation `org` (reaching its patients only), with a token that does
/// not expire.
async fn org_clinician(t: &TestApp, org: &str) -> reqwest::Client {
    let id = next_id("org-doc");
    let row = hearth_store_sql::identity::AccountRow {
        id: id.clone(),
        email: None,
        phone: None,
        phone_pending: None,
        password_hash: None,
        role: "clinician".into(),
        fhir_user: None,
        organization: Some(org.to_owned()),
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: 0,
    };
    hearth_store_sql::identity::insert_account(&*t.app.db, &row).await.unwrap();
    let claims = hearth_auth::token::AccessClaims {
        iss: t.app.auth.settings.issuer.clone(),
        sub: id.clone(),
        aud: t.app.auth.settings.audience.clone(),
        iat: 0,
        exp: i64::from(i32::MAX) * 4,
        jti: next_id("jti"),
        role: "clinician".parse().unwrap(),
        scope: hearth_server::auth::DEFAULT_SCOPE.into(),
        patient: None,
        fhir_user: None,
        client_id: None,
    };
    bearer(t.app.auth.keys().sign(&claims).unwrap().expose())
}

async fn settings(t: &TestApp, account: &str, tz: &str, lang: &str) {
    let s = sql::SettingsRow { time_zone: tz.into(), language: lang.into(), quiet_start: None, quiet_end: None };
    sql::set_settings(&*t.app.db, account, &s).await.unwrap();
}

async fn link_caregiver(t: &TestApp, caregiver: &str, patient: &str) {
    let (s, v) = call(
        t,
        &t.client,
        Method::POST,
        "/api/v1/admin/caregivers",
        Some(json!({"caregiver": caregiver, "patient": patient})),
    )
    .await;
    assert_eq!(s, 204, "{v}");
}

/// Runs the worker until nothing is due.
async fn drain(app: &Arc<App>) {
    while hearth_server::notify::worker::run_once(&app.notifications, "send-test-worker").await.unwrap() > 0 {}
}

fn mails_to(t: &TestApp, account: &str) -> Vec<hearth_notify::MemoryMessage> {
    let to = format!("{account}@example.org");
    t.outbox.messages().into_iter().filter(|m| m.to == to).collect()
}

async fn rows_with_prefix(t: &TestApp, prefix: &str) -> Vec<OutboxRow> {
    sql::list_by_status(&*t.app.db, None, 100_000)
        .await
        .unwrap()
        .into_iter()
        .filter(|r| r.idem_key.starts_with(prefix))
        .collect()
}

#[tokio::test]
async fn reminders_reach_accounts_created_after_the_booking_and_cancelling_cancels_the_fan_out() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Later").await;
    schedule(&t, &dc, every_day(&doc, "Asia/Kolkata", "09:00", "12:00")).await;
    // A patient with no account at all books (through the clinic) two appointments.
    let pid = t.create(&patient("Latecomer")).await;
    let mut ids = Vec::new();
    for start in ["2026-06-03T03:30:00Z", "2026-06-04T03:30:00Z"] {
        let body = json!({"practitioner": doc, "start": start, "type": "ROUTINE", "patient": pid});
        let (s, a) = call(&t, &dc, Method::POST, "/api/v1/appointments", Some(body)).await;
        assert_eq!(s, 201, "{a}");
        ids.push(a["id"].as_str().unwrap().to_owned());
    }
    let first = rows_with_prefix(&t, &format!("appointment-reminder:{}:", ids[0])).await;
    assert_eq!(first.len(), 2, "one patient-addressed row per offset: {first:?}");
    assert!(first.iter().all(|r| r.channel == "patient" && r.account_id.is_none()), "{first:?}");

    // After the booking the patient signs up and an admin links a caregiver.
    let (me, _) = account(&t, "patient", Some(format!("Patient/{pid}"))).await;
    settings(&t, &me, "Asia/Kolkata", "en").await;
    let (carer, _) = account(&t, "caregiver", None).await;
    settings(&t, &carer, "Europe/London", "en").await;
    link_caregiver(&t, &carer, &pid).await;

    // The first appointment is cancelled before any reminder is due: its fan-out rows go.
    let (s, v) = call(&t, &dc, Method::POST, &format!("/api/v1/appointments/{}/cancel", ids[0]), None).await;
    assert_eq!(s, 200, "{v}");
    let first = rows_with_prefix(&t, &format!("appointment-reminder:{}:", ids[0])).await;
    assert!(first.iter().all(|r| r.status == "cancelled"), "{first:?}");

    // 24 h before the second: both accounts get it, each in their own zone, named.
    t.clock.set(at("2026-06-03T03:30:00Z"));
    drain(&t.app).await;
    let mine: Vec<_> = mails_to(&t, &me).into_iter().filter(|m| m.subject == "Appointment reminder").collect();
    let theirs: Vec<_> = mails_to(&t, &carer).into_iter().filter(|m| m.subject == "Appointment reminder").collect();
    assert_eq!((mine.len(), theirs.len()), (1, 1), "{mine:?} {theirs:?}");
    assert!(mine[0].text.contains("Thu 4 Jun 2026, 09:00 IST (Asia/Kolkata)"), "{}", mine[0].text);
    assert!(theirs[0].text.contains("Thu 4 Jun 2026, 04:30 BST (Europe/London)"), "{}", theirs[0].text);
    let second = rows_with_prefix(&t, &format!("appointment-reminder:{}:", ids[1])).await;
    let fan: Vec<_> = second.iter().filter(|r| r.channel == "patient").collect();
    assert_eq!(fan.iter().filter(|r| r.status == "delivered").count(), 1, "{second:?}");
    let done = fan.iter().find(|r| r.status == "delivered").unwrap();
    assert_eq!(done.provider_id.as_deref(), Some("2 accounts, 4 messages"), "e-mail and in-app each: {done:?}");
    // Nothing for the cancelled appointment, whose two reminder times have passed by now.
    assert!(rows_with_prefix(&t, &format!("appointment-reminder:{}:", ids[0])).await.len() == 2);

    // Expanded but not yet sent: cancelling the second appointment cancels the expansions too.
    t.clock.set(at("2026-06-04T01:30:00Z"));
    assert!(hearth_server::notify::worker::run_once(&t.app.notifications, "one-pass").await.unwrap() >= 1);
    let queued = rows_with_prefix(&t, &format!("appointment-reminder:{}:", ids[1])).await;
    assert!(queued.iter().any(|r| r.channel != "patient" && r.status == "queued"), "expanded: {queued:?}");
    let (s, v) = call(&t, &dc, Method::POST, &format!("/api/v1/appointments/{}/cancel", ids[1]), None).await;
    assert_eq!(s, 200, "{v}");
    drain(&t.app).await;
    let after = rows_with_prefix(&t, &format!("appointment-reminder:{}:", ids[1])).await;
    assert!(!after.iter().any(|r| r.status == "queued" || r.status == "sending"), "{after:?}");
    assert_eq!(mails_to(&t, &me).iter().filter(|m| m.subject == "Appointment reminder").count(), 1);
    assert_eq!(mails_to(&t, &carer).iter().filter(|m| m.subject == "Appointment reminder").count(), 1);

    // A patient with no account and no caregiver: recorded once, not retried.
    let lonely = t.create(&patient("Alone")).await;
    let notice = PatientNotice {
        key: "lonely-1".into(),
        patient_id: lonely,
        category: Category::Appointment,
        template: "appointment-reminder".into(),
        args: json!({"when": "2026-06-05T03:30:00Z"}).as_object().unwrap().clone(),
        not_before: None,
        channels: None,
        include_caregivers: true,
    };
    let tx = sql::TxDb::begin(&*t.app.db).await.unwrap();
    assert!(notify::enqueue_for_patient(&t.app.notify, &tx, &notice, t.app.clock.now()).await.unwrap());
    assert!(!notify::enqueue_for_patient(&t.app.notify, &tx, &notice, t.app.clock.now()).await.unwrap());
    tx.commit().await.unwrap();
    drain(&t.app).await;
    let rows = sql::by_key(&*t.app.db, "lonely-1").await.unwrap();
    assert_eq!(rows.len(), 1, "{rows:?}");
    assert_eq!((rows[0].status.as_str(), rows[0].attempts), ("cancelled", 1), "{rows:?}");
    assert!(rows[0].last_error.as_deref().unwrap_or_default().contains("no account"), "{rows:?}");
}

#[tokio::test]
async fn a_reminder_shows_the_same_instant_in_each_recipients_zone_and_language_named() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-12-01T00:00:00Z"));
    let pid = t.create(&patient("Zones")).await;
    let mut accounts = Vec::new();
    for (tz, lang) in [("Asia/Kolkata", "en"), ("Europe/London", "en"), ("Asia/Kolkata", "hi")] {
        let (id, _) = account(&t, "patient", Some(format!("Patient/{pid}"))).await;
        settings(&t, &id, tz, lang).await;
        accounts.push(id);
    }
    let mut args = Map::new();
    args.insert("when".into(), json!("2026-12-10T04:40:00Z"));
    let notice = PatientNotice {
        key: "zones-1".into(),
        patient_id: pid,
        category: Category::Appointment,
        template: "appointment-reminder".into(),
        args,
        not_before: None,
        channels: Some(vec![hearth_notify::ChannelKind::Email]),
        include_caregivers: false,
    };
    let tx = sql::TxDb::begin(&*t.app.db).await.unwrap();
    notify::enqueue_for_patient(&t.app.notify, &tx, &notice, t.app.clock.now()).await.unwrap();
    tx.commit().await.unwrap();
    drain(&t.app).await;
    let text = |a: &str| {
        let m = mails_to(&t, a);
        assert_eq!(m.len(), 1, "only e-mail was asked for: {m:?}");
        m[0].text.clone()
    };
    assert_eq!(
        text(&accounts[0]).trim(),
        "You have an appointment on Thu 10 Dec 2026, 10:10 IST (Asia/Kolkata). Open Hearth for the details."
    );
    assert_eq!(
        text(&accounts[1]).trim(),
        "You have an appointment on Thu 10 Dec 2026, 04:40 GMT (Europe/London). Open Hearth for the details."
    );
    assert!(text(&accounts[2]).contains("गुरुवार, 10 दिसंबर 2026, 10:10 IST (Asia/Kolkata) को"), "{}", text(&accounts[2]));
    // The channel subset held: no in-app rows.
    assert!(sql::list_by_status(&*t.app.db, None, 1000).await.unwrap().iter().all(|r| r.channel != "in_app"));
}

async fn send(t: &TestApp, c: &reqwest::Client, path: &str, key: Option<&str>, body: Value) -> (u16, Value) {
    let mut req =
        c.request(Method::POST, t.url(path)).header("content-type", "application/json").body(body.to_string());
    if let Some(k) = key {
        req = req.header("idempotency-key", k);
    }
    let r = t.send(req).await;
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn a_staff_send_to_a_group_reaches_each_member_in_reach_once_on_their_channels() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-12-01T06:00:00Z"));
    let org = t.create(&json!({"resourceType": "Organization", "name": "North clinic"})).await;
    let other = t.create(&json!({"resourceType": "Organization", "name": "South clinic"})).await;
    let managed = |family: &str, o: &str| {
        let mut p = patient(family);
        p["managingOrganization"] = json!({"reference": format!("Organization/{o}")});
        p
    };
    let a = t.create(&managed("Alpha", &org)).await;
    let b = t.create(&managed("Beta", &org)).await;
    let c = t.create(&managed("Gamma", &other)).await;
    let (a_acct, a_client) = account(&t, "patient", Some(format!("Patient/{a}"))).await;
    let (b_acct, _) = account(&t, "patient", Some(format!("Patient/{b}"))).await;
    let (c_acct, _) = account(&t, "patient", Some(format!("Patient/{c}"))).await;
    let (carer, _) = account(&t, "caregiver", None).await;
    link_caregiver(&t, &carer, &a).await;
    // Beta does not want announcements in the app.
    sql::set_preference(&*t.app.db, &b_acct, "announcement", "in_app", false).await.unwrap();
    let group = t
        .create(&json!({"resourceType": "Group", "type": "person", "actual": true, "member": [
            {"entity": {"reference": format!("Patient/{a}")}},
            {"entity": {"reference": format!("Patient/{b}")}},
            {"entity": {"reference": format!("Patient/{c}")}},
            {"entity": {"reference": format!("Patient/{a}")}, "inactive": true},
        ]}))
        .await;
    let doc = org_clinician(&t, &org).await;
    let message = json!({"to": {"group": group}, "category": "announcement", "title": "Clinic closed Monday",
        "message": "The clinic is closed on Monday.\nYour appointments will be moved."});

    let (s, v) = send(&t, &doc, "/api/v1/notifications/send", Some("closure-1"), message.clone()).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!((v["patients"].as_u64(), v["skipped_out_of_reach"].as_u64()), (Some(2), Some(1)), "{v}");
    assert_eq!((v["queued"].as_u64(), v["already_queued"].as_u64()), (Some(2), Some(0)), "{v}");
    // Retried with the same key: nothing new.
    let (s, again) = send(&t, &doc, "/api/push/send", Some("closure-1"), message.clone()).await;
    assert_eq!(s, 202, "{again}");
    assert_eq!((again["queued"].as_u64(), again["already_queued"].as_u64()), (Some(0), Some(2)), "{again}");
    drain(&t.app).await;
    drain(&t.app).await;

    for (who, n) in [(&a_acct, 1), (&carer, 1), (&b_acct, 1), (&c_acct, 0)] {
        let got = mails_to(&t, who);
        assert_eq!(got.len(), n, "{who}: {got:?}");
        if n == 1 {
            assert_eq!(got[0].subject, "Clinic closed Monday");
            assert!(got[0].text.starts_with("The clinic is closed on Monday.\nYour appointments"), "{}", got[0].text);
        }
    }
    let rows = rows_with_prefix(&t, v["key"].as_str().unwrap()).await;
    let on = |acct: &str| {
        let mut ch: Vec<String> =
            rows.iter().filter(|r| r.account_id.as_deref() == Some(acct)).map(|r| r.channel.clone()).collect();
        ch.sort();
        ch
    };
    assert_eq!(on(&a_acct), ["email", "in_app"]);
    assert_eq!(on(&carer), ["email", "in_app"]);
    assert_eq!(on(&b_acct), ["email"], "in-app turned off for announcements");
    assert!(on(&c_acct).is_empty());
    assert!(rows.iter().all(|r| r.status != "queued" && r.status != "failed"), "{rows:?}");
    // The send is in the audit trail under each patient addressed.
    let audit = t.get(&format!("/fhir/AuditEvent?patient=Patient/{a}&_count=200")).await.json().to_string();
    assert!(audit.contains("/api/v1/notifications/send"), "{audit}");

    // One patient out of reach is not found; a patient account may not send at all.
    let one = |to: Value| json!({"to": to, "category": "results", "title": "Results", "message": "Ready."});
    let (s, v) = send(&t, &doc, "/api/v1/notifications/send", None, one(json!({"patient": c}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")), "{v}");
    let (s, v) = send(&t, &a_client, "/api/v1/notifications/send", None, one(json!({"patient": a}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (403, Some("forbidden")), "{v}");
    let (s, _) = send(&t, &a_client, "/api/push/send", None, one(json!({"patient": a}))).await;
    assert_eq!(s, 403);

    // Scheduled: nothing before its time, then once. To an organisation, caregivers left out.
    let later = "2026-12-02T06:00:00Z";
    let body = json!({"to": {"organization": org}, "include_caregivers": false, "category": "appointment",
        "title": "Flu clinic", "message": "Flu shots on Saturday.", "channels": ["email"], "not_before": later});
    let (s, v) = send(&t, &doc, "/api/v1/notifications/send", None, body).await;
    assert_eq!(s, 202, "{v}");
    assert_eq!((v["patients"].as_u64(), v["not_before"].as_str()), (Some(2), Some(later)), "{v}");
    drain(&t.app).await;
    let flu = |who: &str| mails_to(&t, who).into_iter().filter(|m| m.subject == "Flu clinic").count();
    assert_eq!((flu(&a_acct), flu(&b_acct)), (0, 0));
    t.clock.set(at(later) + TimeDelta::minutes(1));
    drain(&t.app).await;
    drain(&t.app).await;
    assert_eq!((flu(&a_acct), flu(&b_acct), flu(&carer), flu(&c_acct)), (1, 1, 0, 0));

    // Bad input: stable codes.
    let base = json!({"to": {"patient": a}, "category": "announcement", "title": "T", "message": "M"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let many: Vec<String> = (0..501).map(|i| format!("p{i}")).collect();
    for (body, code) in [
        (with("category", json!("gossip")), "invalid_category"),
        (with("category", json!("emergency")), "category_not_allowed"),
        (with("message", json!("  ")), "invalid_message"),
        (with("message", json!("bell\u{7}")), "invalid_message"),
        (with("title", json!("a\nb")), "invalid_title"),
        (with("to", json!({"patients": many})), "too_many_patients"),
        (with("to", json!({"patients": []})), "invalid_recipients"),
        (with("to", json!({"ward": "x"})), "invalid_body"),
        (with("channels", json!(["pigeon"])), "invalid_channels"),
        (with("not_before", json!("tomorrow")), "invalid_time"),
    ] {
        let (s, v) = send(&t, &t.client, "/api/v1/notifications/send", None, body.clone()).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some(code)), "{body}: {v}");
    }
    let (s, v) = send(&t, &t.client, "/api/v1/notifications/send", Some("bad key!"), base.clone()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_idempotency_key")), "{v}");
    // An admin reaches everyone: a single patient works.
    let (s, v) = send(&t, &t.client, "/api/v1/notifications/send", None, base).await;
    assert_eq!((s, v["patients"].as_u64(), v["queued"].as_u64()), (202, Some(1), Some(1)), "{v}");
}
