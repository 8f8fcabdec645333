//! Alarms (issue 18, item 6): a daily 08:00 alarm in New York rings at 08:00 local on both
//! sides of both clock changes, through quiet hours, once across a restarted planner; an edit
//! and a delete cancel the pending rings; the rings that came due are listed newest first with
//! read state; another account reaches none of it; bad rules are refused with their codes.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::scheduling::{call, patient_account};

fn at(s: &str) -> chrono::DateTime<chrono::Utc> {
    chrono::DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&chrono::Utc)
}

/// The outbox rows of one ring: (channel, status, not_before).
async fn ring(t: &TestApp, alarm: &str, revision: i64, due: &str) -> Vec<(String, String, i64)> {
    let key = hearth_server::alarms::planner::key(alarm, revision, at(due));
    hearth_store_sql::notify::by_key(&*t.app.ctx().db, &key)
        .await
        .unwrap()
        .into_iter()
        .map(|r| (r.channel, r.status, r.not_before))
        .collect()
}

/// Runs the outbox worker once at `now`.
async fn deliver_at(t: &TestApp, now: &str) {
    t.clock.set(at(now));
    hearth_server::notify::worker::run_once(&t.app.notifications, "alarms-test").await.unwrap();
}

/// A server without its own outbox worker and planners: the test runs them, so what it sees
/// processed was processed by its own call.
async fn quiet_app() -> TestApp {
    TestApp::spawn_with(|c| c.notify.worker = false).await
}

fn planner(t: &TestApp) -> hearth_server::alarms::Alarms {
    hearth_server::alarms::Alarms::new(std::sync::Arc::clone(t.app.ctx()), std::sync::Arc::clone(&t.app.notify))
}

#[tokio::test]
async fn a_daily_8am_alarm_rings_at_8am_local_across_both_clock_changes_once_through_quiet_hours() {
    use hearth_server::alarms::planner::plan;
    let t = quiet_app().await;
    t.clock.set(at("2027-03-12T18:00:00Z"));
    let (_, _, a) = patient_account(&t, "Alarmed").await;
    // New York, and quiet hours over the alarm's time: an alarm the user set rings through them.
    let (s, v) = call(
        &t,
        &a,
        Method::PUT,
        "/api/v1/notifications/preferences",
        Some(json!({"time_zone": "America/New_York", "quiet_hours": {"start": "22:00", "end": "09:00"}})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/alarms",
        Some(json!({"label": "Metformin after breakfast", "kind": "medication", "at": "2027-03-13T08:00", "rrule": "FREQ=DAILY"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["time_zone"], "America/New_York");
    assert_eq!(v["time_zone_source"], "account");
    assert_eq!(v["next"], "2027-03-13T13:00:00Z");
    let id = v["id"].as_str().unwrap().to_owned();

    // Written at once for the next 48 hours: 08:00 EST is 13:00Z, and after New York springs
    // forward on 14 March, 08:00 EDT is 12:00Z. One in-app row each (SMS and e-mail are off for
    // alarms unless the user turns them on).
    let ms = |s: &str| at(s).timestamp_millis();
    assert_eq!(
        ring(&t, &id, 1, "2027-03-13T13:00:00Z").await,
        [("in_app".into(), "queued".into(), ms("2027-03-13T13:00:00Z"))]
    );
    assert_eq!(
        ring(&t, &id, 1, "2027-03-14T12:00:00Z").await,
        [("in_app".into(), "queued".into(), ms("2027-03-14T12:00:00Z"))]
    );

    // A restarted planner (a new instance over the same database) writes nothing again.
    let now = at("2027-03-12T18:00:00Z");
    assert_eq!(plan(&planner(&t), now).await.unwrap().written, 0);
    assert_eq!(ring(&t, &id, 1, "2027-03-13T13:00:00Z").await.len(), 1);

    // Not before 08:00 local, then once, in quiet hours.
    deliver_at(&t, "2027-03-13T12:59:00Z").await;
    assert_eq!(ring(&t, &id, 1, "2027-03-13T13:00:00Z").await[0].1, "queued");
    deliver_at(&t, "2027-03-13T13:00:00Z").await;
    assert_eq!(ring(&t, &id, 1, "2027-03-13T13:00:00Z").await[0].1, "delivered");
    // After the change: not at 08:00 EST's instant's hour before, at 08:00 EDT.
    deliver_at(&t, "2027-03-14T11:59:00Z").await;
    assert_eq!(ring(&t, &id, 1, "2027-03-14T12:00:00Z").await[0].1, "queued");
    deliver_at(&t, "2027-03-14T12:00:00Z").await;
    assert_eq!(ring(&t, &id, 1, "2027-03-14T12:00:00Z").await[0].1, "delivered");
    // A restarted planner later on only adds the days the horizon now reaches: the rung ones
    // stay one row each, delivered once.
    assert_eq!(plan(&planner(&t), at("2027-03-14T12:00:00Z")).await.unwrap().written, 1);
    assert_eq!(
        ring(&t, &id, 1, "2027-03-14T12:00:00Z").await,
        [("in_app".into(), "delivered".into(), ms("2027-03-14T12:00:00Z"))]
    );
    assert_eq!(ring(&t, &id, 1, "2027-03-15T12:00:00Z").await[0].1, "queued");
    let inbox = hearth_store_sql::notify::by_key(
        &*t.app.ctx().db,
        &hearth_server::alarms::planner::key(&id, 1, at("2027-03-14T12:00:00Z")),
    )
    .await
    .unwrap();
    assert_eq!(inbox[0].category, "alarm");
    assert_eq!(inbox[0].template, "alarm");
    // The label (possibly clinical) is not in what leaves the server.
    assert!(!inbox[0].args.contains("Metformin"), "{}", inbox[0].args);

    // Clocks go back on 7 November 2027: 08:00 EDT (12:00Z) on the 6th, 08:00 EST (13:00Z) on the 7th.
    let now = at("2027-11-05T18:00:00Z");
    t.clock.set(now);
    plan(&planner(&t), now).await.unwrap();
    assert_eq!(ring(&t, &id, 1, "2027-11-06T12:00:00Z").await.len(), 1);
    assert_eq!(ring(&t, &id, 1, "2027-11-07T13:00:00Z").await.len(), 1);
    assert!(ring(&t, &id, 1, "2027-11-07T12:00:00Z").await.is_empty());
    deliver_at(&t, "2027-11-07T12:59:00Z").await;
    assert_eq!(ring(&t, &id, 1, "2027-11-07T13:00:00Z").await[0].1, "queued");
    deliver_at(&t, "2027-11-07T13:00:00Z").await;
    assert_eq!(ring(&t, &id, 1, "2027-11-07T13:00:00Z").await[0].1, "delivered");
}

#[tokio::test]
async fn edit_and_delete_cancel_pending_rings_and_rung_ones_are_listed_and_read() {
    let t = quiet_app().await;
    t.clock.set(at("2027-01-10T00:00:00Z"));
    let (_, _, a) = patient_account(&t, "Edited").await;
    let (_, _, b) = patient_account(&t, "Other").await;
    // Its own zone, whatever the account's.
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/alarms",
        Some(json!({"label": "Drink water", "kind": "water", "at": "2027-01-10T09:00", "rrule": "FREQ=DAILY", "time_zone": "Asia/Kolkata"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    assert_eq!(v["time_zone_source"], "alarm");
    let id = v["id"].as_str().unwrap().to_owned();
    // 09:00 IST is 03:30Z.
    assert_eq!(ring(&t, &id, 1, "2027-01-10T03:30:00Z").await[0].1, "queued");
    assert_eq!(ring(&t, &id, 1, "2027-01-11T03:30:00Z").await[0].1, "queued");

    // The first rings; then it is edited to 10:00: the pending ring is cancelled, the new
    // times written under the next revision.
    deliver_at(&t, "2027-01-10T03:30:00Z").await;
    assert_eq!(ring(&t, &id, 1, "2027-01-10T03:30:00Z").await[0].1, "delivered");
    t.clock.set(at("2027-01-10T05:00:00Z"));
    let (s, v) = call(
        &t,
        &a,
        Method::PUT,
        &format!("/api/v1/alarms/{id}"),
        Some(json!({"label": "Drink a glass of water", "kind": "water", "at": "2027-01-10T10:00", "rrule": "FREQ=DAILY", "time_zone": "Asia/Kolkata"})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["next"], "2027-01-11T04:30:00Z");
    assert_eq!(ring(&t, &id, 1, "2027-01-10T03:30:00Z").await[0].1, "delivered");
    assert_eq!(ring(&t, &id, 1, "2027-01-11T03:30:00Z").await[0].1, "cancelled");
    assert_eq!(ring(&t, &id, 2, "2027-01-11T04:30:00Z").await[0].1, "queued");

    // Disabled: pending rings cancelled, nothing written.
    let (s, v) = call(
        &t,
        &a,
        Method::PUT,
        &format!("/api/v1/alarms/{id}"),
        Some(json!({"label": "Drink a glass of water", "kind": "water", "at": "2027-01-10T10:00", "rrule": "FREQ=DAILY", "time_zone": "Asia/Kolkata", "enabled": false})),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert!(v.get("next").is_none(), "{v}");
    assert_eq!(ring(&t, &id, 2, "2027-01-11T04:30:00Z").await[0].1, "cancelled");
    assert!(ring(&t, &id, 3, "2027-01-11T04:30:00Z").await.is_empty());

    // A second alarm, rung twice, then deleted: its pending ring is cancelled.
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/alarms",
        Some(json!({"label": "Stretch", "kind": "custom", "at": "2027-01-10T12:00", "rrule": "FREQ=DAILY;COUNT=5", "time_zone": "UTC"})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let second = v["id"].as_str().unwrap().to_owned();
    deliver_at(&t, "2027-01-10T12:00:00Z").await;
    hearth_server::alarms::planner::plan(&planner(&t), at("2027-01-11T12:00:00Z")).await.unwrap();
    deliver_at(&t, "2027-01-11T12:00:00Z").await;
    assert_eq!(ring(&t, &second, 1, "2027-01-11T12:00:00Z").await[0].1, "delivered");
    let (s, _) = call(&t, &b, Method::DELETE, &format!("/api/v1/alarms/{second}"), None).await;
    assert_eq!(s, 404, "another account cannot delete it");
    let (s, _) = call(&t, &a, Method::DELETE, &format!("/api/v1/alarms/{second}"), None).await;
    assert_eq!(s, 204);
    assert_eq!(ring(&t, &second, 1, "2027-01-12T12:00:00Z").await[0].1, "cancelled");
    let (s, _) = call(&t, &a, Method::GET, &format!("/api/v1/alarms/{second}"), None).await;
    assert_eq!(s, 404);

    // What rang: three rings, newest first, all unread; pages of two.
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/alarms/notifications?limit=2", None).await;
    assert_eq!(s, 200, "{v}");
    let page: Vec<(&str, &str)> = v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["label"].as_str().unwrap(), n["at"].as_str().unwrap()))
        .collect();
    assert_eq!(page, [("Stretch", "2027-01-11T12:00:00Z"), ("Stretch", "2027-01-10T12:00:00Z")]);
    let cursor = v["next_cursor"].as_str().unwrap().to_owned();
    let (s, v) =
        call(&t, &a, Method::GET, &format!("/api/v1/alarms/notifications?limit=2&cursor={cursor}"), None).await;
    assert_eq!(s, 200, "{v}");
    let older = v["notifications"].as_array().unwrap();
    assert_eq!(older.len(), 1, "{v}");
    assert_eq!(older[0]["label"], "Drink water");
    assert_eq!(older[0]["read"], false);
    assert!(v.get("next_cursor").is_none(), "{v}");
    let water = older[0]["id"].as_str().unwrap().to_owned();

    // Read (twice: the same answer), then only the other two are unread.
    let (s, first) = call(&t, &a, Method::POST, &format!("/api/v1/alarms/notifications/{water}/read"), None).await;
    assert_eq!(s, 200, "{first}");
    assert_eq!(first["read"], true);
    t.clock.set(at("2027-01-11T13:00:00Z"));
    let (s, again) = call(&t, &a, Method::POST, &format!("/api/v1/alarms/notifications/{water}/read"), None).await;
    assert_eq!(s, 200);
    assert_eq!(again, first);
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/alarms/notifications?unread=true", None).await;
    let unread: Vec<&str> =
        v["notifications"].as_array().unwrap().iter().map(|n| n["label"].as_str().unwrap()).collect();
    assert_eq!(unread, ["Stretch", "Stretch"]);

    // Another account: none of A's alarms or rings.
    for (method, path, body) in [
        (Method::GET, format!("/api/v1/alarms/{id}"), None),
        (
            Method::PUT,
            format!("/api/v1/alarms/{id}"),
            Some(json!({"label": "Mine now", "kind": "custom", "at": "2027-02-01T08:00"})),
        ),
        (Method::DELETE, format!("/api/v1/alarms/{id}"), None),
        (Method::POST, format!("/api/v1/alarms/notifications/{water}/read"), None),
    ] {
        let (s, v) = call(&t, &b, method.clone(), &path, body).await;
        assert_eq!(s, 404, "{method} {path}: {v}");
        assert_eq!(v["error"]["code"], "not_found");
    }
    let (_, v) = call(&t, &b, Method::GET, "/api/v1/alarms", None).await;
    assert_eq!(v["alarms"], json!([]));
    let (_, v) = call(&t, &b, Method::GET, "/api/v1/alarms/notifications", None).await;
    assert_eq!(v["notifications"], json!([]));
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/alarms", None).await;
    assert_eq!(v["alarms"].as_array().unwrap().len(), 1, "{v}");
    assert_eq!(v["alarms"][0]["label"], "Drink a glass of water");
}

#[tokio::test]
async fn bad_alarms_are_refused_with_their_codes_and_nothing_written() {
    let t = quiet_app().await;
    t.clock.set(at("2027-01-10T00:00:00Z"));
    let (_, _, a) = patient_account(&t, "Refused").await;
    let base = json!({"label": "Pill", "kind": "medication", "at": "2027-01-10T08:00"});
    let with = |k: &str, v: Value| {
        let mut b = base.clone();
        b[k] = v;
        b
    };
    let cases = [
        (with("rrule", json!("FREQ=DAILY;BYHOUR=25")), "invalid_rrule", "BYHOUR"),
        (with("rrule", json!("FREQ=DAILY;COUNT=2;UNTIL=20270201")), "invalid_rrule", "COUNT"),
        (with("rrule", json!("INTERVAL=2")), "invalid_rrule", "FREQ"),
        (with("rrule", json!("FREQ=DAILY;FOO=1")), "invalid_rrule", "FOO"),
        (with("rrule", json!("FREQ=YEARLY")), "unsupported_rrule", "YEARLY"),
        (with("rrule", json!("FREQ=HOURLY")), "unsupported_rrule", "HOURLY"),
        (with("rrule", json!("FREQ=MONTHLY;BYSETPOS=-1;BYDAY=FR")), "unsupported_rrule", "BYSETPOS"),
        (with("rrule", json!("FREQ=MONTHLY;BYDAY=1MO")), "unsupported_rrule", "1MO"),
        (with("kind", json!("coffee")), "invalid_kind", "kind"),
        (with("label", json!("")), "invalid_label", "label"),
        (with("at", json!("2027-01-10T08:00:00+05:30")), "invalid_time", "at"),
        (with("time_zone", json!("Mars/Olympus_Mons")), "invalid_time_zone", "Mars"),
        (with("at", json!("2027-01-01T08:00")), "time_in_past", "passed"),
        (with("extra", json!(1)), "invalid_body", "extra"),
    ];
    for (body, code, named) in cases {
        let (s, v) = call(&t, &a, Method::POST, "/api/v1/alarms", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert_eq!(v["error"]["code"], code, "{body}: {v}");
        let message = v["error"]["message"].as_str().unwrap();
        assert!(message.contains(named), "{body}: {message}");
    }
    let (_, v) = call(&t, &a, Method::GET, "/api/v1/alarms", None).await;
    assert_eq!(v["alarms"], json!([]));
    // A one-off in the past is fine with a rule (it rings from the next occurrence).
    let (s, v) = call(
        &t,
        &a,
        Method::POST,
        "/api/v1/alarms",
        Some(
            with("at", json!("2027-01-01T08:00"))
                .as_object()
                .map(|o| {
                    let mut o = o.clone();
                    o.insert("rrule".into(), json!("FREQ=WEEKLY;BYDAY=MO,FR"));
                    Value::Object(o)
                })
                .unwrap(),
        ),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    // 10 January 2027 is a Sunday; the server's default zone is UTC.
    assert_eq!(v["next"], "2027-01-11T08:00:00Z");
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/alarms/notifications?limit=0", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (s, v) = call(&t, &a, Method::GET, "/api/v1/alarms/notifications?cursor=x", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")));
}
