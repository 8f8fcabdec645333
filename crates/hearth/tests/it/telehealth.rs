//! Telehealth (issue 21, items 1–4 and 9): rooms bound to virtual appointments (tickets only to
//! the booked patient, the appointment's practitioners and invited accounts; opened before the
//! start, closed after the end or on cancellation), signaling over the room's WebSocket (lobby,
//! admission, late notice, relay in order per sender, chat, state, the fifth refused, a ticket
//! spent once, a dropped socket resumed within the grace, joins and leaves audited), and two
//! headless Chromium instances with fake camera and microphone on `/telehealth/test` that reach
//! `connectionState == "connected"` with video frames decoded on both sides, after the patient
//! waited in the lobby and the clinician admitted them; a third, unauthorised browser is refused.

use std::time::Duration;

use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{TestApp, patient, seed_account};
use crate::scheduling::{at, bearer, call, every_day, schedule};

use crate::common::{Ws, frame, send, until};

/// An account of `role` linked to `fhir_user`: (account id, token, client).
async fn person(t: &TestApp, role: &str, fhir_user: Option<String>) -> (String, String, reqwest::Client) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!("tele-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let token = seed_account(&t.app, &id, role, fhir_user, Some(format!("{id}@example.org"))).await;
    let client = bearer(&token);
    (id, token, client)
}

/// A virtual visit booked by a patient with a clinician.
struct Visit {
    room: String,
    doc: (String, String, reqwest::Client),
    pat: (String, String, reqwest::Client),
    patient_id: String,
    practitioner: String,
}

/// Books a virtual visit on 2026-12-09 at 10:00 UTC (the clock then stands at 2026-12-08 08:00).
async fn visit(t: &TestApp) -> Visit {
    t.clock.set(at("2026-12-08T08:00:00Z"));
    let prac = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Okafor"}]})).await;
    let doc = person(t, "clinician", Some(format!("Practitioner/{prac}"))).await;
    schedule(t, &doc.2, every_day(&prac, "UTC", "09:00", "17:00")).await;
    let patient_id = t.create(&patient("Rao")).await;
    let pat = person(t, "patient", Some(format!("Patient/{patient_id}"))).await;
    let (s, v) = call(
        t,
        &pat.2,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": prac, "start": "2026-12-09T10:00:00Z", "type": "ROUTINE", "virtual": true})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    Visit { room: v["id"].as_str().unwrap().to_owned(), doc, pat, patient_id, practitioner: prac }
}

async fn room(t: &TestApp, c: &reqwest::Client, id: &str) -> (u16, Value) {
    call(t, c, Method::GET, &format!("/api/v1/telehealth/rooms/{id}"), None).await
}

/// A fresh ticket for the holder of `c`.
async fn ticket(t: &TestApp, c: &reqwest::Client, id: &str) -> String {
    let (s, v) = room(t, c, id).await;
    assert_eq!(s, 200, "{v}");
    v["ticket"].as_str().unwrap_or_else(|| panic!("no ticket: {v}")).to_owned()
}

async fn connect(t: &TestApp, id: &str, ticket: &str) -> Result<Ws, u16> {
    let url = format!("{}/api/v1/telehealth/ws/{id}?ticket={ticket}", t.addr.replace("http://", "ws://"));
    match tokio_tungstenite::connect_async(url.into_client_request().unwrap()).await {
        Ok((ws, _)) => Ok(ws),
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => Err(r.status().as_u16()),
        Err(e) => panic!("{e}"),
    }
}

async fn join(t: &TestApp, c: &reqwest::Client, id: &str) -> Ws {
    let ticket = ticket(t, c, id).await;
    connect(t, id, &ticket).await.unwrap()
}

/// The close code, after any frames before it.
async fn close_code(ws: &mut Ws) -> Option<u64> {
    for _ in 0..50 {
        let f = frame(ws).await;
        if let Some(c) = f.get("close") {
            return c.as_u64();
        }
    }
    panic!("no close");
}

async fn audit_events(t: &TestApp) -> Vec<Value> {
    t.app.auditor.flush().await.unwrap();
    let r = t.get("/fhir/AuditEvent?_count=500").await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
}

fn telehealth_events(events: &[Value], what: &str) -> usize {
    events.iter().filter(|e| e["type"]["code"] == "telehealth" && e["subtype"][0]["code"] == what).count()
}

#[tokio::test]
async fn a_room_answers_only_the_booked_patient_and_care_team_and_only_while_open() {
    let t = TestApp::spawn().await;
    let v = visit(&t).await;
    // A day ahead: the room exists but is not open yet; no ticket.
    let (s, r) = room(&t, &v.pat.2, &v.room).await;
    assert_eq!((s, r["state"].as_str()), (200, Some("scheduled")), "{r}");
    assert!(r.get("ticket").is_none(), "{r}");
    assert_eq!(r["opensAt"], "2026-12-09T09:45:00Z");
    assert_eq!(r["closesAt"], "2026-12-09T11:30:00Z");
    assert_eq!((r["you"]["role"].as_str(), r["mesh"].as_u64()), (Some("patient"), Some(4)));

    t.clock.set(at("2026-12-09T09:50:00Z"));
    let (s, r) = room(&t, &v.pat.2, &v.room).await;
    assert_eq!((s, r["state"].as_str()), (200, Some("open")), "{r}");
    assert!(r["ticket"].as_str().is_some_and(|t| t.len() >= 32), "{r}");
    assert_eq!(r["socket"], format!("/api/v1/telehealth/ws/{}", v.room));
    let (s, d) = room(&t, &v.doc.2, &v.room).await;
    assert_eq!((s, d["you"]["role"].as_str()), (200, Some("clinician")), "{d}");
    assert_ne!(d["you"]["participant"], r["you"]["participant"]);
    // The participant id is stable for an account in a room and says nothing about either.
    let (_, again) = room(&t, &v.pat.2, &v.room).await;
    assert_eq!(again["you"]["participant"], r["you"]["participant"]);
    assert!(!r["you"]["participant"].as_str().unwrap().contains(&v.pat.0));
    assert_ne!(again["ticket"], r["ticket"]);

    // Another patient cannot see the appointment; another clinician sees it but is not its care
    // team; an admin neither; no token at all is 401.
    let other_pid = t.create(&patient("Other")).await;
    let other = person(&t, "patient", Some(format!("Patient/{other_pid}"))).await;
    let (s, e) = room(&t, &other.2, &v.room).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("unknown_room")), "{e}");
    let prac2 = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Stranger"}]})).await;
    let stranger = person(&t, "clinician", Some(format!("Practitioner/{prac2}"))).await;
    let (s, e) = room(&t, &stranger.2, &v.room).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("not_a_participant")), "{e}");
    let (s, e) = room(&t, &t.client, &v.room).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("not_a_participant")), "{e}");
    let (s, _) = room(&t, &t.anonymous(), &v.room).await;
    assert_eq!(s, 401);
    let (s, e) = room(&t, &v.pat.2, "no-such-room").await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("unknown_room")), "{e}");

    // Only the care team invites; an invited account gets its own ticket (an interpreter who
    // cannot read the patient's record still reaches the room).
    let interp = person(&t, "caregiver", None).await;
    let (s, e) = room(&t, &interp.2, &v.room).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("unknown_room")), "{e}");
    let path = format!("/api/v1/telehealth/rooms/{}/invites", v.room);
    let body = json!({"account": interp.0, "role": "interpreter"});
    let (s, e) = call(&t, &v.pat.2, Method::POST, &path, Some(body.clone())).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("not_care_team")), "{e}");
    let (s, e) = call(&t, &v.doc.2, Method::POST, &path, Some(json!({"account": interp.0, "role": "surgeon"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_role")), "{e}");
    let (s, e) = call(&t, &v.doc.2, Method::POST, &path, Some(json!({"account": "nobody", "role": "caregiver"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("unknown_account")), "{e}");
    let (s, e) = call(&t, &v.doc.2, Method::POST, &path, Some(json!({"account": interp.0}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_body")), "{e}");
    let (s, e) = call(&t, &v.doc.2, Method::POST, &path, Some(body)).await;
    assert_eq!(s, 201, "{e}");
    let (s, r) = room(&t, &interp.2, &v.room).await;
    assert_eq!((s, r["you"]["role"].as_str(), r["state"].as_str()), (200, Some("interpreter"), Some("open")), "{r}");

    // A visit in person has no room.
    let (s, a) = call(
        &t,
        &v.pat.2,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": v.practitioner, "start": "2026-12-09T14:00:00Z", "type": "ROUTINE"})),
    )
    .await;
    assert_eq!(s, 201, "{a}");
    let (s, e) = room(&t, &v.pat.2, a["id"].as_str().unwrap()).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("unknown_room")), "{e}");

    // After the end and the grace the room is closed; no ticket.
    t.clock.set(at("2026-12-09T11:31:00Z"));
    let (s, r) = room(&t, &v.pat.2, &v.room).await;
    assert_eq!((s, r["state"].as_str()), (200, Some("closed")), "{r}");
    assert!(r.get("ticket").is_none(), "{r}");
}

#[tokio::test]
async fn a_cancelled_visit_closes_its_room() {
    let t = TestApp::spawn().await;
    let v = visit(&t).await;
    let (s, e) =
        call(&t, &v.pat.2, Method::POST, &format!("/api/v1/appointments/{}/cancel", v.room), Some(json!({}))).await;
    assert!(s == 200 || s == 204, "{s} {e}");
    t.clock.set(at("2026-12-09T09:50:00Z"));
    let (s, r) = room(&t, &v.pat.2, &v.room).await;
    assert_eq!((s, r["state"].as_str()), (200, Some("closed")), "{r}");
    assert!(r.get("ticket").is_none(), "{r}");
}

#[tokio::test]
async fn the_lobby_admits_signals_relay_in_order_and_the_fifth_is_refused() {
    let t = TestApp::spawn().await;
    let v = visit(&t).await;
    t.clock.set(at("2026-12-09T09:50:00Z"));

    // A ticket opens one socket: spent on use, and only for its room.
    let spent = ticket(&t, &v.doc.2, &v.room).await;
    assert_eq!(connect(&t, "other-room", &spent).await.err(), Some(401));
    let mut doc = connect(&t, &v.room, &spent).await.unwrap();
    assert_eq!(connect(&t, &v.room, &spent).await.err(), Some(401));
    assert_eq!(connect(&t, &v.room, "forged").await.err(), Some(401));
    let w = until(&mut doc, "welcome").await;
    assert_eq!((w["role"].as_str(), w["status"].as_str()), (Some("clinician"), Some("admitted")), "{w}");
    assert_eq!(w["waiting"], json!([]));
    let doc_id = w["you"].as_str().unwrap().to_owned();

    // The patient waits in the lobby; the clinician sees them there.
    let mut pat = join(&t, &v.pat.2, &v.room).await;
    let w = until(&mut pat, "welcome").await;
    assert_eq!((w["status"].as_str(), w["participants"].clone()), (Some("waiting"), json!([])), "{w}");
    let pat_id = w["you"].as_str().unwrap().to_owned();
    let lobby = until(&mut doc, "lobby").await;
    assert_eq!(lobby["waiting"][0]["participant"], pat_id.as_str());
    assert_eq!(lobby["waiting"][0]["role"], "patient");
    let (_, r) = room(&t, &v.doc.2, &v.room).await;
    let waiting: Vec<&Value> =
        r["participants"].as_array().unwrap().iter().filter(|p| p["status"] == "waiting").collect();
    assert_eq!(waiting.len(), 1, "{r}");

    // Waiting, the patient can neither signal nor admit anyone.
    send(&mut pat, json!({"type": "signal", "to": doc_id, "data": {"description": {"type": "offer", "sdp": "v=0"}}}))
        .await;
    let e = until(&mut pat, "error").await;
    assert_eq!(e["code"], "not_admitted");
    send(&mut pat, json!({"type": "admit", "participant": pat_id})).await;
    assert_eq!(until(&mut pat, "error").await["code"], "not_admitted");
    send(&mut pat, json!("not an object")).await;
    assert_eq!(until(&mut pat, "error").await["code"], "not_admitted");

    // The clinician is running late, then admits.
    send(&mut doc, json!({"type": "late", "minutes": 0})).await;
    assert_eq!(until(&mut doc, "error").await["code"], "invalid_late");
    send(&mut doc, json!({"type": "late", "minutes": 10})).await;
    let late = until(&mut pat, "late").await;
    assert_eq!(late["minutes"], 10);
    send(&mut doc, json!({"type": "admit", "participant": pat_id})).await;
    let a = until(&mut pat, "admitted").await;
    assert_eq!(a["participants"][0]["participant"], doc_id.as_str());
    let p = until(&mut doc, "presence").await;
    assert_eq!(
        (p["event"].as_str(), p["participant"]["participant"].as_str()),
        (Some("joined"), Some(pat_id.as_str()))
    );

    // Offer, answer and trickle ICE in order, numbered per sender.
    for n in 0..5 {
        let data = if n == 0 {
            json!({"description": {"type": "offer", "sdp": "v=0 offer"}})
        } else {
            json!({"candidate": {"candidate": format!("candidate:{n} 1 udp 1 192.0.2.2 {n} typ host"), "sdpMid": "0"}})
        };
        send(&mut pat, json!({"type": "signal", "to": doc_id, "data": data})).await;
    }
    for n in 0..5u64 {
        let s = until(&mut doc, "signal").await;
        assert_eq!((s["from"].as_str(), s["seq"].as_u64()), (Some(pat_id.as_str()), Some(n + 1)), "{s}");
        if n == 0 {
            assert_eq!(s["data"]["description"]["type"], "offer");
        } else {
            assert!(s["data"]["candidate"]["candidate"].as_str().unwrap().starts_with(&format!("candidate:{n} ")));
        }
    }
    send(
        &mut doc,
        json!({"type": "signal", "to": pat_id, "data": {"description": {"type": "answer", "sdp": "v=0 answer"}}}),
    )
    .await;
    assert_eq!(until(&mut pat, "signal").await["data"]["description"]["type"], "answer");
    send(&mut doc, json!({"type": "signal", "to": "p0000", "data": {}})).await;
    assert_eq!(until(&mut doc, "error").await["code"], "unknown_participant");

    // Chat to everyone (the sender too), mute and hand state to the others.
    send(&mut pat, json!({"type": "chat", "text": "Can you hear me?"})).await;
    for ws in [&mut doc, &mut pat] {
        let c = until(ws, "chat").await;
        assert_eq!((c["text"].as_str(), c["from"].as_str()), (Some("Can you hear me?"), Some(pat_id.as_str())));
    }
    send(&mut pat, json!({"type": "chat", "text": "x".repeat(2001)})).await;
    assert_eq!(until(&mut pat, "error").await["code"], "invalid_chat");
    send(&mut pat, json!({"type": "state", "muted": true, "hand": true})).await;
    let s = until(&mut doc, "state").await;
    assert_eq!(
        (s["muted"].as_bool(), s["hand"].as_bool(), s["camera"].as_bool()),
        (Some(true), Some(true), Some(true))
    );

    // Invited: a caregiver and two interpreters. The room holds four; the fifth is refused.
    let mut invited = Vec::new();
    for role in ["caregiver", "interpreter", "interpreter"] {
        let p = person(&t, "caregiver", None).await;
        let (s, e) = call(
            &t,
            &v.doc.2,
            Method::POST,
            &format!("/api/v1/telehealth/rooms/{}/invites", v.room),
            Some(json!({"account": p.0, "role": role})),
        )
        .await;
        assert_eq!(s, 201, "{e}");
        invited.push(p);
    }
    let mut care = join(&t, &invited[0].2, &v.room).await;
    let w = until(&mut care, "welcome").await;
    assert_eq!((w["role"].as_str(), w["status"].as_str()), (Some("caregiver"), Some("waiting")));
    let care_id = w["you"].as_str().unwrap().to_owned();
    let mut interp = join(&t, &invited[1].2, &v.room).await;
    let interp_id = until(&mut interp, "welcome").await["you"].as_str().unwrap().to_owned();
    let mut fifth = join(&t, &invited[2].2, &v.room).await;
    assert_eq!(frame(&mut fifth).await, json!({"close": 4409}));

    // Declined from the lobby: told, closed, and kept out.
    send(&mut doc, json!({"type": "decline", "participant": care_id})).await;
    assert_eq!(until(&mut care, "declined").await["type"], "declined");
    assert_eq!(frame(&mut care).await, json!({"close": 4403}));
    let mut care_again = join(&t, &invited[0].2, &v.room).await;
    assert_eq!(frame(&mut care_again).await, json!({"close": 4403}));
    send(&mut doc, json!({"type": "admit", "participant": interp_id})).await;
    let a = until(&mut interp, "admitted").await;
    assert_eq!(a["participants"].as_array().unwrap().len(), 2, "{a}");

    // The patient leaves; the others are told; every join and leave is in the audit trail.
    send(&mut pat, json!({"type": "leave"})).await;
    assert_eq!(close_code(&mut pat).await, Some(1000));
    let mut p = until(&mut doc, "presence").await;
    while p["event"] == "joined" {
        p = until(&mut doc, "presence").await;
    }
    assert_eq!((p["event"].as_str(), p["participant"].as_str()), (Some("left"), Some(pat_id.as_str())));
    let events = audit_events(&t).await;
    assert_eq!(telehealth_events(&events, "join"), 4, "doctor, patient, caregiver, interpreter");
    assert_eq!(telehealth_events(&events, "leave-left"), 1);
    assert_eq!(telehealth_events(&events, "leave-declined"), 1);
    assert_eq!(telehealth_events(&events, "refused-full"), 1);
    assert_eq!(telehealth_events(&events, "refused-declined"), 1);
    let join = events.iter().find(|e| e["subtype"][0]["code"] == "join").unwrap();
    let entities: Vec<&str> =
        join["entity"].as_array().unwrap().iter().filter_map(|e| e["what"]["reference"].as_str()).collect();
    assert!(entities.contains(&format!("Appointment/{}", v.room).as_str()), "{join}");
    assert!(entities.contains(&format!("Patient/{}", v.patient_id).as_str()), "{join}");
}

#[tokio::test]
async fn a_dropped_socket_resumes_within_the_grace_and_a_non_socket_request_keeps_its_ticket() {
    // A grace no slow machine outlasts: the test is about resuming, not about the clock.
    let t = TestApp::spawn_with(|c| c.telehealth.reconnect_grace_secs = 600).await;
    let v = visit(&t).await;
    t.clock.set(at("2026-12-09T09:50:00Z"));
    let mut doc = join(&t, &v.doc.2, &v.room).await;
    until(&mut doc, "welcome").await;
    let mut pat = join(&t, &v.pat.2, &v.room).await;
    let pat_id = until(&mut pat, "welcome").await["you"].as_str().unwrap().to_owned();
    send(&mut doc, json!({"type": "admit", "participant": pat_id})).await;
    until(&mut pat, "admitted").await;
    assert_eq!(until(&mut doc, "presence").await["event"], "joined");

    // The patient's connection drops (no leave): the others see them away, not gone.
    drop(pat);
    let p = until(&mut doc, "presence").await;
    assert_eq!((p["event"].as_str(), p["participant"].as_str()), (Some("away"), Some(pat_id.as_str())));
    let (_, r) = room(&t, &v.pat.2, &v.room).await;
    let me = r["participants"].as_array().unwrap().iter().find(|p| p["participant"] == pat_id.as_str()).cloned();
    assert_eq!(me.map(|m| (m["status"].clone(), m["connected"].clone())), Some((json!("admitted"), json!(false))));

    // Back with a new ticket: the same participant, still admitted, no second trip to the lobby.
    let mut pat = join(&t, &v.pat.2, &v.room).await;
    let w = until(&mut pat, "welcome").await;
    assert_eq!((w["you"].as_str(), w["status"].as_str()), (Some(pat_id.as_str()), Some("admitted")), "{w}");
    assert_eq!(w["participants"].as_array().unwrap().len(), 1);
    let p = until(&mut doc, "presence").await;
    assert_eq!(p["event"], "reconnected");

    // A plain GET with a ticket is told to upgrade, and does not spend it.
    let ticket = ticket(&t, &v.doc.2, &v.room).await;
    let r =
        t.anonymous().get(t.url(&format!("/api/v1/telehealth/ws/{}?ticket={ticket}", v.room))).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 426);
    let body: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(body["error"]["code"], "upgrade_required");
    let mut second = connect(&t, &v.room, &ticket).await.unwrap();
    // The same clinician again: the older socket is replaced.
    assert_eq!(until(&mut second, "welcome").await["status"], "admitted");
    assert_eq!(close_code(&mut doc).await, Some(4000));
    let events = audit_events(&t).await;
    assert_eq!(telehealth_events(&events, "rejoin"), 2);
}

#[tokio::test]
async fn after_the_grace_a_dropped_participant_has_left() {
    // No grace at all: the drop is a leave as soon as the timer runs.
    let t = TestApp::spawn_with(|c| c.telehealth.reconnect_grace_secs = 0).await;
    let v = visit(&t).await;
    t.clock.set(at("2026-12-09T09:50:00Z"));
    let mut doc = join(&t, &v.doc.2, &v.room).await;
    until(&mut doc, "welcome").await;
    let mut pat = join(&t, &v.pat.2, &v.room).await;
    let pat_id = until(&mut pat, "welcome").await["you"].as_str().unwrap().to_owned();
    send(&mut doc, json!({"type": "admit", "participant": pat_id})).await;
    until(&mut pat, "admitted").await;
    assert_eq!(until(&mut doc, "presence").await["event"], "joined");
    drop(pat);
    assert_eq!(until(&mut doc, "presence").await["event"], "away");
    let p = until(&mut doc, "presence").await;
    assert_eq!((p["event"].as_str(), p["participant"].as_str()), (Some("left"), Some(pat_id.as_str())));
    // Coming back now is a new entrance: through the lobby again.
    let mut pat = join(&t, &v.pat.2, &v.room).await;
    assert_eq!(until(&mut pat, "welcome").await["status"], "waiting");
    let events = audit_events(&t).await;
    assert_eq!(telehealth_events(&events, "leave-timed-out"), 1);
    assert_eq!(telehealth_events(&events, "join"), 3);
}

#[tokio::test]
async fn the_test_page_is_served_with_a_strict_policy_and_its_script_as_a_file() {
    let t = TestApp::spawn().await;
    let r = t.anonymous().get(t.url("/telehealth/test")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    let csp = r.headers()["content-security-policy"].to_str().unwrap().to_owned();
    assert!(csp.contains("script-src 'self'") && !csp.contains("unsafe"), "{csp}");
    let html = r.text().await.unwrap();
    assert!(html.contains(r#"<script src="/telehealth/test.js" defer></script>"#));
    let js = t.anonymous().get(t.url("/telehealth/test.js")).send().await.unwrap();
    assert_eq!(js.status().as_u16(), 200);
    assert!(js.headers()["content-type"].to_str().unwrap().starts_with("text/javascript"));
    assert!(js.text().await.unwrap().contains("RTCPeerConnection"));
}

/// Chromium switches for a call without a camera, a microphone or a person to click "allow".
const FAKE_MEDIA: [&str; 3] = [
    "--use-fake-device-for-media-stream",
    "--use-fake-ui-for-media-stream",
    "--disable-features=WebRtcHideLocalIpsWithMdns",
];

/// Video frames the page decoded from its peers, once there are some (or 0 after 10 s).
async fn frames(tab: &mut crate::web::Tab) -> u64 {
    for _ in 0..100 {
        let n = tab.eval("hearthCall.framesReceived()").await.as_u64().unwrap_or(0);
        if n > 0 {
            return n;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    0
}

#[tokio::test]
async fn two_browsers_meet_after_the_lobby_and_a_third_is_refused() {
    let t = TestApp::spawn_with(|c| c.telehealth.reconnect_grace_secs = 600).await;
    let v = visit(&t).await;
    t.clock.set(at("2026-12-09T09:50:00Z"));
    let Some(patient_browser) = crate::web::Browser::start_with(&FAKE_MEDIA).await else { return };
    let Some(doctor_browser) = crate::web::Browser::start_with(&FAKE_MEDIA).await else { return };
    let Some(stranger_browser) = crate::web::Browser::start_with(&FAKE_MEDIA).await else { return };
    let page = |token: &str| format!("{}/telehealth/test#room={}&token={token}", t.addr, v.room);

    // The patient arrives first and waits.
    let mut pat = patient_browser.tab("telehealth-patient", 800, 700, false).await;
    pat.goto(&page(&v.pat.1)).await;
    pat.wait_for("window.hearthCall && hearthCall.state === 'waiting'").await;
    assert_eq!(pat.text("#status").await, "Waiting for the clinician to admit you");

    // The clinician joins, sees them waiting, tells them about a delay and admits them.
    let mut doc = doctor_browser.tab("telehealth-doctor", 800, 700, false).await;
    doc.goto(&page(&v.doc.1)).await;
    doc.wait_for("window.hearthCall && hearthCall.state === 'admitted' && document.querySelector('[data-admit]')")
        .await;
    doc.click("#late").await;
    pat.wait_for("document.querySelector('#notice').textContent.includes('5 minutes late')").await;
    doc.click("[data-admit]").await;

    // Both reach "connected" and decode the other's video.
    for tab in [&mut pat, &mut doc] {
        tab.wait_for("hearthCall.state === 'admitted' && hearthCall.connectionStates().join() === 'connected'").await;
    }
    for tab in [&mut pat, &mut doc] {
        assert!(frames(tab).await > 0, "no video frames decoded");
        assert_eq!(tab.eval("hearthCall.errors").await, json!([]));
    }

    // The patient's socket drops: the page comes back with a new ticket within the grace, still
    // admitted, and both sides connect again (new connections: an ICE restart).
    pat.eval("hearthCall.dropSocket(), true").await;
    pat.wait_for("hearthCall.reconnects === 1 && hearthCall.state === 'admitted' && hearthCall.connectionStates().join() === 'connected'").await;
    doc.wait_for("hearthCall.connectionStates().join() === 'connected'").await;
    for tab in [&mut pat, &mut doc] {
        assert!(frames(tab).await > 0, "no video frames decoded after the reconnect");
    }

    // A clinician who is not this visit's is refused before any socket.
    let prac2 = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Stranger"}]})).await;
    let stranger = person(&t, "clinician", Some(format!("Practitioner/{prac2}"))).await;
    let mut third = stranger_browser.tab("telehealth-stranger", 800, 700, false).await;
    third.goto(&page(&stranger.1)).await;
    third.wait_for("window.hearthCall && hearthCall.state === 'error'").await;
    let errors = third.eval("hearthCall.errors").await;
    assert!(errors.to_string().contains("not_a_participant"), "{errors}");
    assert_eq!(doc.eval("hearthCall.peers.size").await, json!(1));

    for tab in [pat, doc, third] {
        tab.passed();
    }
}

const TURN_SECRET: &str = "telehealth-test-turn-secret";

/// A local coturn with the TURN REST secret, killed on drop.
struct Turn {
    child: tokio::process::Child,
    port: u16,
    _dir: tempfile::TempDir,
}

impl Drop for Turn {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

/// Starts `turnserver` on a free loopback port, or answers `None` (after saying so loudly) when
/// this machine has none (`scripts/prepare` installs Debian's coturn; with `CI=true` a missing
/// one is a failure).
async fn turnserver() -> Option<Turn> {
    let found = std::env::var_os("PATH")
        .map(|p| std::env::split_paths(&p).map(|d| d.join("turnserver")).any(|p| p.is_file()))
        .unwrap_or(false);
    if !found {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "coturn is missing in CI: scripts/prepare installs it");
        eprintln!("\n!!! SKIPPED: the relay test needs coturn (apt-get install coturn, or run scripts/prepare) !!!\n");
        return None;
    }
    let port = std::net::UdpSocket::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    // Relay ports of its own, apart from other tests' servers.
    let min = 20_000 + (port % 400) * 100;
    let dir = tempfile::tempdir().unwrap();
    let mut child = tokio::process::Command::new("turnserver")
        .args(["-n", "--log-file=stdout", "--no-cli", "--no-tls", "--no-dtls", "--fingerprint"])
        .args(["--listening-ip=127.0.0.1", "--relay-ip=127.0.0.1", "--allow-loopback-peers", "--realm=hearth.test"])
        .arg(format!("--listening-port={port}"))
        .arg(format!("--min-port={min}"))
        .arg(format!("--max-port={}", min + 99))
        .args(["--use-auth-secret", &format!("--static-auth-secret={TURN_SECRET}")])
        .arg(format!("--pidfile={}", dir.path().join("pid").display()))
        .arg(format!("--userdb={}", dir.path().join("turndb").display()))
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    use tokio::io::AsyncBufReadExt;
    let mut lines = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    loop {
        let line = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
            .await
            .expect("turnserver did not start within 30 s")
            .unwrap()
            .expect("turnserver exited while starting");
        if line.contains("Total General servers") {
            break;
        }
    }
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    Some(Turn { child, port, _dir: dir })
}

#[tokio::test]
async fn two_browsers_meet_over_a_relay_only_connection_through_coturn_with_rest_credentials() {
    let Some(turn) = turnserver().await else { return };
    let t = TestApp::spawn_with(|c| {
        c.telehealth.turn_urls = vec![format!("turn:127.0.0.1:{}?transport=udp", turn.port)];
        c.telehealth.turn_secret = Some(hearth_server::config::Secret::new(TURN_SECRET.to_owned()));
    })
    .await;
    let v = visit(&t).await;
    t.clock.set(at("2026-12-09T09:50:00Z"));
    // The room hands out the REST credential: `<expiry>:<participant>`, valid for the TTL.
    let (_, r) = room(&t, &v.pat.2, &v.room).await;
    let ice = &r["iceServers"][0];
    let user = ice["username"].as_str().unwrap();
    let (expiry, who) = user.split_once(':').unwrap();
    assert_eq!(who, r["you"]["participant"].as_str().unwrap());
    assert_eq!(expiry.parse::<i64>().unwrap(), at("2026-12-09T10:50:00Z").timestamp());
    assert!(ice["credential"].as_str().is_some_and(|c| c.len() == 28), "{ice}");

    let Some(patient_browser) = crate::web::Browser::start_with(&FAKE_MEDIA).await else { return };
    let Some(doctor_browser) = crate::web::Browser::start_with(&FAKE_MEDIA).await else { return };
    let page = |token: &str| format!("{}/telehealth/test#room={}&token={token}&relay=1", t.addr, v.room);
    let mut doc = doctor_browser.tab("telehealth-relay-doctor", 800, 700, false).await;
    doc.goto(&page(&v.doc.1)).await;
    doc.wait_for("window.hearthCall && hearthCall.state === 'admitted'").await;
    let mut pat = patient_browser.tab("telehealth-relay-patient", 800, 700, false).await;
    pat.goto(&page(&v.pat.1)).await;
    pat.wait_for("window.hearthCall && hearthCall.state === 'waiting'").await;
    doc.wait_for("document.querySelector('[data-admit]')").await;
    doc.click("[data-admit]").await;
    for tab in [&mut pat, &mut doc] {
        tab.wait_for("hearthCall.connectionStates().join() === 'connected'").await;
        assert!(frames(tab).await > 0, "no video frames decoded over the relay");
        // Only relayed candidates were allowed, so the pair in use is relay to relay.
        let pairs = tab.eval("hearthCall.candidateTypes()").await;
        assert_eq!(pairs, json!(["relay/relay"]), "{pairs}");
        assert_eq!(tab.eval("hearthCall.errors").await, json!([]));
    }
    pat.passed();
    doc.passed();
}

#[tokio::test]
async fn a_patient_signed_in_on_the_web_joins_the_lobby_without_pasting_a_token() {
    let t = TestApp::spawn().await;
    let v = visit(&t).await;
    t.clock.set(at("2026-12-09T09:50:00Z"));
    // A second account of the same patient, with a password, signs in on the web screens.
    let email = "telehealth.rao@example.org";
    crate::web::account(&t, email, "patient", &format!("Patient/{}", v.patient_id)).await;
    let Some(browser) = crate::web::Browser::start_with(&FAKE_MEDIA).await else { return };
    let mut tab = browser.tab("telehealth-session", 800, 700, false).await;
    tab.goto(&t.url("/app")).await;
    crate::web::sign_in(&mut tab, email, None).await;
    tab.wait_for("location.pathname === '/app'").await;
    tab.goto(&format!("{}/telehealth/test#room={}", t.addr, v.room)).await;
    tab.wait_for("window.hearthCall && hearthCall.state === 'waiting'").await;
    assert_eq!(tab.eval("hearthCall.role").await, json!("patient"));
    // The clinician sees them in the lobby.
    let mut doc = join(&t, &v.doc.2, &v.room).await;
    let w = until(&mut doc, "welcome").await;
    assert_eq!(w["waiting"][0]["role"], "patient", "{w}");
    tab.passed();
}
