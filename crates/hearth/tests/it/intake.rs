//! Patient intake (issue 17): the interview over HTTP and WebSocket, consent first, sessions
//! that survive reconnects and restarts, the emergency path (safety message, Flag +
//! RiskAssessment, the clinic's critical alert, no routine self-booking), the clinician's
//! summary and queue, and bad input.

use std::sync::Arc;
use std::time::Duration;

use futures_util::SinkExt;
use hearth_server::{App, Clock};
use reqwest::Method;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

use crate::common::{TestApp, TestClock};
use crate::scheduling::{at, book, call, call_at, clinician, every_day, patient_account, schedule};

const FIXTURE: &str = include_str!("../../../hearth-intake/tests/fixtures/intake-fixture.json");

fn no_worker(c: &mut hearth_server::Config) {
    c.notify.worker = false;
}

/// Stores the fixture Questionnaire (every feature the runner reads) and answers its pack name.
async fn fixture_pack(t: &TestApp) -> String {
    let q: Value = serde_json::from_str(FIXTURE).unwrap();
    format!("Questionnaire/{}", t.create(&q).await)
}

async fn walk_in(t: &TestApp, c: &reqwest::Client, language: &str, pack: &str) -> Value {
    let (s, v) = call(
        t,
        c,
        Method::POST,
        "/api/v1/intake/sessions",
        Some(json!({"language": language, "consent": true, "packs": [pack]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    v
}

async fn say(t: &TestApp, c: &reqwest::Client, id: &str, body: Value) -> (u16, Value) {
    call(t, c, Method::POST, &format!("/api/v1/intake/sessions/{id}/messages"), Some(body)).await
}

async fn resources(t: &TestApp, query: &str) -> Vec<Value> {
    let r = t.get(&format!("/fhir/{query}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["entry"].as_array().cloned().unwrap_or_default().into_iter().map(|e| e["resource"].clone()).collect()
}

use crate::common::{Ws, frame, send, until};

async fn connect(addr: &str, id: &str, token: &str, subprotocol: bool) -> Ws {
    let mut req = format!("{}/api/v1/intake/ws/{id}", addr.replace("http://", "ws://")).into_client_request().unwrap();
    if subprotocol {
        req.headers_mut().insert("sec-websocket-protocol", format!("hearth.bearer, {token}").parse().unwrap());
    } else {
        req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    }
    tokio_tungstenite::connect_async(req).await.unwrap().0
}

async fn token_of(t: &TestApp, role: &str, fhir_user: Option<String>) -> (String, String) {
    static N: std::sync::atomic::AtomicUsize = std::sync::atomic::AtomicUsize::new(0);
    let id = format!("intake-{}-{}", std::process::id(), N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let token = crate::common::seed_account(&t.app, &id, role, fhir_user, Some(format!("{id}@example.org"))).await;
    (id, token)
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

#[tokio::test]
async fn hindi_patient_typing_hinglish_is_stopped_as_an_emergency_and_the_clinic_is_alerted() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let pack = fixture_pack(&t).await;
    let (doc, dc) = clinician(&t, "Saxena").await;
    schedule(&t, &dc, every_day(&doc, "Asia/Kolkata", "09:00", "12:00")).await;
    let (pid, _, me) = patient_account(&t, "Verma").await;
    let (s, appt) = book(&t, &me, &doc, "2026-06-03T03:30:00Z").await;
    assert_eq!(s, 201, "{appt}");
    let appt = appt["id"].as_str().unwrap().to_owned();

    // Hindi, consent first.
    let (s, v) = call(
        &t,
        &me,
        Method::POST,
        &format!("/api/v1/intake/sessions/{appt}/start"),
        Some(json!({"language": "hi", "consent": true, "packs": [pack]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let id = v["id"].as_str().unwrap().to_owned();
    assert_eq!((v["status"].as_str(), v["appointment"].as_str()), (Some("active"), Some(appt.as_str())));
    assert_eq!(v["question"]["text"], "आपकी मुख्य तकलीफ़ क्या है?");
    let consents = resources(&t, &format!("Consent?patient=Patient/{pid}")).await;
    assert_eq!(consents.len(), 1);
    assert_eq!(consents[0]["scope"]["coding"][0]["code"], "treatment");
    assert_eq!(consents[0]["language"], "hi");
    assert_eq!(consents[0]["provision"]["purpose"][0]["code"], "TREAT");
    assert_eq!(v["consent"], format!("Consent/{}", consents[0]["id"].as_str().unwrap()));

    // Hinglish free text at every turn.
    let (s, v) = say(&t, &me, &id, json!({"text": "kamar me bahut dard hai"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["question"]["text"], "दर्द कहाँ है?");
    assert_eq!(v["question"]["options"][0]["display"], "कमर");
    let (s, v) = say(&t, &me, &id, json!({"text": "saddle area sunn ho gaya hai aur pishab nahi ho raha"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "emergency");
    assert_eq!(v["urgency"], "emergency");
    assert!(v["question"].is_null());
    assert_eq!(v["done"], true);
    assert!(v["red_flags"].as_array().unwrap().contains(&json!("cauda_equina")), "{v}");
    let message = v["alert"]["message"].as_str().unwrap();
    assert!(message.contains("112") && message.contains("108") && message.contains("एम्बुलेंस"), "{message}");
    // The interview is over.
    let (s, e) = say(&t, &me, &id, json!({"text": "aur kya bataun"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("session_finished")));

    // The record: Flag + RiskAssessment, Observations with the patient's words, a provisional Condition.
    let flags = resources(&t, &format!("Flag?patient=Patient/{pid}")).await;
    let cauda = flags.iter().find(|f| f["code"]["coding"][0]["code"] == "cauda_equina").expect("the Flag");
    assert_eq!(cauda["code"]["coding"][0]["system"], "urn:hearth:red-flag");
    assert_eq!(cauda["status"], "active");
    assert_eq!(cauda["extension"][0]["valueCode"], "emergency");
    assert_eq!(cauda["identifier"][0]["value"], id.as_str());
    let risks = resources(&t, &format!("RiskAssessment?patient=Patient/{pid}")).await;
    assert_eq!(risks.len(), 1);
    assert!(
        risks[0]["prediction"].as_array().unwrap().iter().any(|p| p["outcome"]["coding"][0]["code"] == "cauda_equina")
    );
    assert_eq!(risks[0]["prediction"][0]["qualitativeRisk"]["coding"][0]["code"], "high");
    let observations = resources(&t, &format!("Observation?patient=Patient/{pid}")).await;
    assert!(!risks[0]["basis"].as_array().unwrap().is_empty());
    assert!(
        observations.iter().any(|o| o["valueString"].as_str().unwrap_or_default().contains("sunn")),
        "{observations:?}"
    );
    let conditions = resources(&t, &format!("Condition?patient=Patient/{pid}")).await;
    let c = conditions.iter().find(|c| c["code"]["coding"][0]["code"] == "cauda_equina").unwrap();
    assert_eq!(c["verificationStatus"]["coding"][0]["code"], "provisional");
    for r in flags.iter().chain(&risks).chain(&observations).chain(&conditions) {
        crate::common::assert_valid_r4(r);
    }
    assert_eq!(resources(&t, &format!("QuestionnaireResponse?patient=Patient/{pid}")).await[0]["status"], "stopped");

    // The practitioner's critical notification, queued with the session change.
    let doc_accounts =
        hearth_store_sql::identity::accounts_of(&*t.app.db, &format!("Practitioner/{doc}")).await.unwrap();
    let rows = hearth_store_sql::notify::list_by_status(&*t.app.db, None, 500).await.unwrap();
    let alerts: Vec<_> = rows.iter().filter(|r| r.idem_key.starts_with(&format!("intake-emergency:{id}:"))).collect();
    assert!(!alerts.is_empty(), "{rows:?}");
    for r in &alerts {
        assert_eq!((r.category.as_str(), r.template.as_str()), ("emergency", "emergency-alert"));
        assert!(doc_accounts.contains(r.account_id.as_ref().unwrap()));
    }

    // No routine self-booking now; the clinic can still book for the patient.
    let (s, e) = book(&t, &me, &doc, "2026-06-03T04:30:00Z").await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("urgent_care_required")), "{e}");
    let (s, e) = call(
        &t,
        &dc,
        Method::POST,
        "/api/v1/appointments",
        Some(json!({"practitioner": doc, "start": "2026-06-03T04:30:00Z", "type": "ROUTINE", "patient": pid})),
    )
    .await;
    assert_eq!(s, 201, "{e}");

    // The clinician's English summary: the red flag first, with evidence and source.
    let (s, sum) = call(&t, &dc, Method::GET, &format!("/api/v1/intake/sessions/{id}/summary"), None).await;
    assert_eq!(s, 200, "{sum}");
    assert_eq!(sum["urgency"], "emergency");
    assert_eq!(sum["red_flags"][0]["code"], "cauda_equina");
    let evidence = sum["red_flags"][0]["evidence"].to_string();
    assert!(evidence.contains("sunn") || evidence.contains("pishab"), "{evidence}");
    assert!(sum["red_flags"][0]["source"]["url"].as_str().unwrap().starts_with("https://"));
    assert!(sum["patient_words"][1]["gloss"].as_str().unwrap().contains("Numbness"), "{sum}");
    assert_eq!(sum["patient_words"][1]["language"], "hi");
    // Patients do not read the clinician's summary; the queue is the clinic's.
    let (s, _) = call(&t, &me, Method::GET, &format!("/api/v1/intake/sessions/{id}/summary"), None).await;
    assert_eq!(s, 403);
    let (s, q) = call(&t, &dc, Method::GET, "/api/v1/intake/queue", None).await;
    assert_eq!(s, 200, "{q}");
    assert_eq!(
        (q["sessions"][0]["id"].as_str(), q["sessions"][0]["urgency"].as_str()),
        (Some(id.as_str()), Some("emergency"))
    );
    let (s, r) = call(&t, &dc, Method::POST, &format!("/api/v1/intake/sessions/{id}/review"), None).await;
    assert_eq!(s, 200, "{r}");
    assert!(r["reviewed_by"].is_string());
    let (_, q) = call(&t, &dc, Method::GET, "/api/v1/intake/queue", None).await;
    assert!(q["sessions"].as_array().unwrap().iter().all(|s| s["id"] != id.as_str()), "reviewed leaves the queue");
}

#[tokio::test]
async fn the_queue_orders_by_urgency_then_time() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let (_, _, a) = patient_account(&t, "Routine").await;
    let (_, _, b) = patient_account(&t, "Urgent").await;
    let first = walk_in(&t, &a, "en", &pack).await["id"].as_str().unwrap().to_owned();
    t.clock.set(t.clock.now() + chrono::Duration::minutes(5));
    let second = walk_in(&t, &b, "en", &pack).await["id"].as_str().unwrap().to_owned();
    let (s, v) = say(&t, &b, &second, json!({"text": "severe chest pain and sweating since an hour"})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["status"], "emergency", "{v}");
    let (_, q) = call(&t, &t.client, Method::GET, "/api/v1/intake/queue", None).await;
    let ids: Vec<&str> = q["sessions"].as_array().unwrap().iter().map(|s| s["id"].as_str().unwrap()).collect();
    assert_eq!(ids, [second.as_str(), first.as_str()]);
}

#[tokio::test]
async fn a_full_websocket_interview_with_two_sockets_and_a_reconnect() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let pid = t.create(&crate::common::patient("Sockets")).await;
    let (_, token) = token_of(&t, "patient", Some(format!("Patient/{pid}"))).await;
    let me = bearer(&token);
    let id = walk_in(&t, &me, "hi-Latn", &pack).await["id"].as_str().unwrap().to_owned();

    let mut one = connect(&t.addr, &id, &token, false).await;
    assert_eq!(frame(&mut one).await["type"], "progress");
    let q = frame(&mut one).await;
    assert_eq!(
        (q["type"].as_str(), q["question"]["text"].as_str()),
        (Some("question"), Some("Aapki mukhya takleef kya hai?"))
    );
    let mut two = connect(&t.addr, &id, &token, true).await;
    assert_eq!(until(&mut two, "question").await["question"]["link_id"], "complaint");

    // A turn on one socket reaches both.
    send(&mut one, json!({"type": "text", "text": "ghutne me dard hai"})).await;
    for ws in [&mut one, &mut two] {
        assert_eq!(until(ws, "turn").await["text"], "ghutne me dard hai");
        assert_eq!(until(ws, "progress").await["progress"]["answered"], 1);
        let q = until(ws, "question").await;
        assert_eq!(q["question"]["link_id"], "where");
        assert_eq!(q["question"]["options"][2]["display"], "Ghutna");
    }
    send(&mut two, json!({"type": "answer", "answer": "knee"})).await;
    for ws in [&mut one, &mut two] {
        assert_eq!(until(ws, "question").await["question"]["link_id"], "saddle");
    }
    // Ping/pong at the application level.
    send(&mut one, json!({"type": "ping"})).await;
    assert_eq!(until(&mut one, "pong").await["type"], "pong");

    // The first socket drops; a reconnect resumes at the same question.
    drop(one);
    let mut one = connect(&t.addr, &id, &token, false).await;
    assert_eq!(until(&mut one, "question").await["question"]["link_id"], "saddle");
    for (text, next) in
        [("nahi", "worse"), ("1 aur 2", "temperature"), ("37.8", "meds"), ("koi nahi", "allergy"), ("nahi", "onset")]
    {
        send(&mut one, json!({"type": "text", "text": text})).await;
        assert_eq!(until(&mut one, "question").await["question"]["link_id"], next, "after {text}");
    }
    send(&mut one, json!({"type": "text", "text": "2026-05-20"})).await;
    for ws in [&mut one, &mut two] {
        let done = until(ws, "done").await;
        assert_eq!(done["status"], "finished");
        assert_eq!(done["message"], "Dhanyavaad. Aapke jawab aapke doctor ko bhej diye gaye hain.");
        assert_eq!(frame(ws).await["close"], 4410);
    }
    // A socket on a finished session says so and closes.
    let mut late = connect(&t.addr, &id, &token, false).await;
    assert_eq!(until(&mut late, "done").await["status"], "finished");
    assert_eq!(frame(&mut late).await["close"], 4410);

    let (s, v) = call(&t, &me, Method::GET, &format!("/api/v1/intake/sessions/{id}"), None).await;
    assert_eq!((s, v["status"].as_str(), v["progress"]["percent"].as_u64()), (200, Some("finished"), Some(100)));
    let qr = resources(&t, &format!("QuestionnaireResponse?patient=Patient/{pid}")).await;
    assert_eq!(qr.len(), 1);
    crate::common::assert_valid_r4(&qr[0]);
    assert_eq!(qr[0]["status"], "completed");
    let pain = qr[0]["item"].as_array().unwrap().iter().find(|i| i["linkId"] == "pain").unwrap();
    let worse = pain["item"].as_array().unwrap().iter().find(|i| i["linkId"] == "worse").unwrap();
    let codes: Vec<&str> =
        worse["answer"].as_array().unwrap().iter().map(|a| a["valueCoding"]["code"].as_str().unwrap()).collect();
    assert_eq!(codes, ["walking", "sitting"]);
    let composition = resources(&t, &format!("Composition?patient=Patient/{pid}")).await;
    assert_eq!(composition.len(), 1);
    crate::common::assert_valid_r4(&composition[0]);
    assert_eq!(composition[0]["type"]["coding"][0]["code"], "34117-2");
    assert_eq!(v["composition"], format!("Composition/{}", composition[0]["id"].as_str().unwrap()));
}

#[tokio::test]
async fn a_restart_mid_interview_resumes_where_the_patient_was() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let pid = t.create(&crate::common::patient("Restart")).await;
    let (_, token) = token_of(&t, "patient", Some(format!("Patient/{pid}"))).await;
    let me = bearer(&token);
    let id = walk_in(&t, &me, "en", &pack).await["id"].as_str().unwrap().to_owned();
    assert_eq!(say(&t, &me, &id, json!({"text": "neck pain for a week"})).await.0, 200);
    let (s, v) = say(&t, &me, &id, json!({"answer": 2})).await;
    assert_eq!((s, v["question"]["link_id"].as_str()), (200, Some("saddle")), "{v}");

    // The server stops; a new one starts on the same database.
    let mut config = t.app.config.clone();
    config.notify.worker = false;
    t.app.store.close().await;
    let clock = Arc::new(TestClock::now());
    clock.set(t.clock.now());
    let restarted = Arc::new(App::start(config, clock).await.unwrap());
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = format!("http://{}", listener.local_addr().unwrap());
    let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(hearth_server::serve(restarted.clone(), listener, async move {
        let _ = stopped.await;
    }));
    let mut ws = connect(&addr, &id, &token, false).await;
    let q = until(&mut ws, "question").await;
    assert_eq!(q["question"]["link_id"], "saddle");
    assert_eq!(q["question"]["progress"]["answered"], 2);
    send(&mut ws, json!({"type": "answer", "answer": false})).await;
    assert_eq!(until(&mut ws, "question").await["question"]["link_id"], "worse");
    let (s, v) = call_at(&addr, &me, Method::GET, &format!("/api/v1/intake/sessions/{id}"), None).await;
    assert_eq!((s, v["question"]["link_id"].as_str(), v["version"].as_i64()), (200, Some("worse"), Some(4)));
    let _ = stop.send(());
}

#[tokio::test]
async fn another_patients_session_is_refused_and_the_refusal_is_audited() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let (_, _, a) = patient_account(&t, "Owner").await;
    let b_pid = t.create(&crate::common::patient("Intruder")).await;
    let (b_account, b_token) = token_of(&t, "patient", Some(format!("Patient/{b_pid}"))).await;
    let b = bearer(&b_token);
    let id = walk_in(&t, &a, "en", &pack).await["id"].as_str().unwrap().to_owned();

    let (s, e) = call(&t, &b, Method::GET, &format!("/api/v1/intake/sessions/{id}"), None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")));
    let (s, _) = say(&t, &b, &id, json!({"text": "hello"})).await;
    assert_eq!(s, 404);
    let mut ws = connect(&t.addr, &id, &b_token, false).await;
    assert_eq!(frame(&mut ws).await["close"], 4403);
    let mut ws = connect(&t.addr, "0190aaaa-0000-7000-8000-000000000000", &b_token, false).await;
    assert_eq!(frame(&mut ws).await["close"], 4404);
    // The owner's session did not move.
    let (_, v) = call(&t, &a, Method::GET, &format!("/api/v1/intake/sessions/{id}"), None).await;
    assert_eq!(v["progress"]["answered"], 0);

    // Each refusal is an audit event naming the intruder.
    let events = resources(&t, "AuditEvent?_count=500").await;
    let mine: Vec<&Value> = events
        .iter()
        .filter(|e| e["agent"][0]["who"]["identifier"]["value"] == b_account.as_str() && e["outcome"] == "4")
        .collect();
    let descs: Vec<String> = mine.iter().map(|e| e["outcomeDesc"].as_str().unwrap_or_default().to_owned()).collect();
    assert!(descs.iter().filter(|d| d.as_str() == "404").count() >= 2, "{descs:?}");
    assert!(descs.iter().any(|d| d == "4403 not_yours"), "{descs:?}");
    for e in mine {
        crate::common::assert_valid_r4(e);
    }
}

#[tokio::test]
async fn oversize_and_malformed_frames_get_the_documented_answers() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let pid = t.create(&crate::common::patient("Frames")).await;
    let (_, token) = token_of(&t, "patient", Some(format!("Patient/{pid}"))).await;
    let me = bearer(&token);
    let id = walk_in(&t, &me, "en", &pack).await["id"].as_str().unwrap().to_owned();
    let mut ws = connect(&t.addr, &id, &token, false).await;
    until(&mut ws, "question").await;
    ws.send(Message::Text("this is not json".into())).await.unwrap();
    assert_eq!(until(&mut ws, "error").await["code"], "malformed_message");
    send(&mut ws, json!({"type": "shout", "text": "x"})).await;
    assert_eq!(until(&mut ws, "error").await["code"], "malformed_message");
    send(&mut ws, json!({"type": "answer", "answer": ["a", "b"]})).await;
    assert_eq!(until(&mut ws, "error").await["code"], "invalid_answer");
    // Still open.
    send(&mut ws, json!({"type": "ping"})).await;
    until(&mut ws, "pong").await;
    send(&mut ws, json!({"type": "text", "text": "x".repeat(9000)})).await;
    assert_eq!(frame(&mut ws).await["close"], 1009);
    let mut ws = connect(&t.addr, &id, &token, false).await;
    until(&mut ws, "question").await;
    ws.send(Message::Binary(vec![1u8, 2, 3].into())).await.unwrap();
    assert_eq!(frame(&mut ws).await["close"], 1003);
    // Without a token there is no socket, and a plain GET is told to upgrade.
    assert_eq!(t.send(t.anonymous().get(t.url(&format!("/api/v1/intake/ws/{id}")))).await.status, 401);
    assert_eq!(t.send(me.get(t.url(&format!("/api/v1/intake/ws/{id}")))).await.status, 426);
}

#[tokio::test]
async fn the_summary_of_a_fixed_session_field_by_field_and_escaped_in_html() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let (pid, _, me) = patient_account(&t, "Summary").await;
    let id = walk_in(&t, &me, "en", &pack).await["id"].as_str().unwrap().to_owned();
    for body in [
        json!({"text": "pain in my knee <script>alert(1)</script>, no fever"}),
        json!({"answer": "knee"}),
        json!({"text": "no"}),
        json!({"answer": ["walking"]}),
        json!({"answer": 37.2}),
        json!({"text": "Paracetamol 500 mg"}),
        json!({"answer": "yes"}),
        json!({"text": "penicillin"}),
        json!({"text": "2026-05-01"}),
    ] {
        let (s, v) = say(&t, &me, &id, body.clone()).await;
        assert_eq!(s, 200, "{body}: {v}");
    }
    let (s, v) = call(&t, &me, Method::GET, &format!("/api/v1/intake/sessions/{id}"), None).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("finished")), "{v}");
    let (s, sum) = call(&t, &t.client, Method::GET, &format!("/api/v1/intake/sessions/{id}/summary"), None).await;
    assert_eq!(s, 200, "{sum}");
    assert_eq!(sum["session"], id.as_str());
    assert_eq!(sum["patient"], format!("Patient/{pid}"));
    assert_eq!(sum["appointment"], Value::Null);
    assert_eq!(sum["status"], "finished");
    assert_eq!(sum["language"], "en");
    assert_eq!(sum["urgency"], "routine");
    assert_eq!(sum["red_flags"], json!([]));
    assert_eq!(
        sum["presenting_complaint"],
        "pain in my knee <script>alert(1)</script>, no fever [Pain (Knee region structure); no Fever]"
    );
    assert_eq!(
        sum["history"],
        json!([
            {"question": "What is your main problem?", "answer": "pain in my knee <script>alert(1)</script>, no fever"},
            {"question": "Where is the pain?", "answer": "Knee"},
            {"question": "Is there numbness between your legs or around your bottom, or new trouble passing urine?", "answer": "no"},
            {"question": "What makes it worse?", "answer": "Walking"},
            {"question": "Your temperature, if measured?", "answer": "37.2"},
            {"question": "Which medicines do you take?", "answer": "Paracetamol 500 mg"},
            {"question": "Are you allergic to any medicine?", "answer": "Yes"},
            {"question": "To which medicine?", "answer": "penicillin"},
            {"question": "When did it start (date)?", "answer": "2026-05-01"},
        ])
    );
    assert_eq!(sum["medications"], json!(["Paracetamol 500 mg"]));
    assert_eq!(sum["allergies"], json!(["Are you allergic to any medicine? Yes", "To which medicine? penicillin"]));
    let positives: Vec<(&str, Option<&str>)> = sum["pertinent_positives"]
        .as_array()
        .unwrap()
        .iter()
        .map(|f| (f["display"].as_str().unwrap(), f["body_site"].as_str()))
        .collect();
    assert_eq!(positives, [("Pain", Some("Knee region structure"))]);
    let negatives: Vec<&str> =
        sum["pertinent_negatives"].as_array().unwrap().iter().map(|f| f["display"].as_str().unwrap()).collect();
    assert_eq!(negatives, ["Numbness", "Fever"]);
    assert_eq!(sum["patient_words"].as_array().unwrap().len(), 5, "every typed turn");
    assert_eq!(sum["patient_words"][0]["gloss"], "Pain (Knee region structure); no Fever");
    assert_eq!(sum["patient_words"][1], json!({"text": "no", "language": "en", "gloss": ""}));

    // HTML: every string escaped.
    let r = t
        .send(t.client.get(t.url(&format!("/api/v1/intake/sessions/{id}/summary"))).header("accept", "text/html"))
        .await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/html"));
    assert!(r.text.contains("&lt;script&gt;alert(1)&lt;/script&gt;"), "{}", r.text);
    assert!(!r.text.contains("<script>"), "{}", r.text);
    let r = t
        .send(t.client.get(t.url(&format!("/api/v1/intake/sessions/{id}/summary"))).header("accept", "text/plain"))
        .await;
    assert!(r.header("content-type").unwrap().starts_with("text/plain"));
    assert!(r.text.contains("URGENCY: ROUTINE") && r.text.contains("Paracetamol 500 mg"), "{}", r.text);
    // The stored Composition's narrative is escaped XHTML.
    let c = resources(&t, &format!("Composition?patient=Patient/{pid}")).await;
    let text = c[0].to_string();
    assert!(text.contains("&lt;script&gt;") && !text.contains("<script>"), "{text}");
}

#[tokio::test]
async fn bad_input_gets_stable_codes_never_a_500() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let (_, _, me) = patient_account(&t, "Careless").await;
    let (other, _, _) = patient_account(&t, "Other").await;
    let post = |path: &'static str, body: Value| call(&t, &me, Method::POST, path, Some(body));
    let code = |v: &Value| v["error"]["code"].as_str().unwrap_or_default().to_owned();

    let (s, v) = post("/api/v1/intake/sessions", json!({"language": "fr", "consent": true})).await;
    assert_eq!((s, code(&v)), (400, "unknown_language".into()));
    let (s, v) = post("/api/v1/intake/sessions", json!({"language": "hi"})).await;
    assert_eq!((s, code(&v)), (422, "consent_required".into()));
    let (s, v) = post("/api/v1/intake/sessions", json!({"language": "hi", "consent": false})).await;
    assert_eq!((s, code(&v)), (422, "consent_required".into()));
    let (s, v) = post("/api/v1/intake/sessions", json!({"language": "hi", "consent": true, "packs": ["nope"]})).await;
    assert_eq!((s, code(&v)), (400, "unknown_pack".into()));
    let (s, v) = post("/api/v1/intake/sessions", json!({"language": "hi", "consent": true, "mood": "good"})).await;
    assert_eq!((s, code(&v)), (400, "invalid_body".into()));
    let (s, v) = post("/api/v1/intake/sessions", json!({"patient": other, "language": "en", "consent": true})).await;
    assert_eq!((s, code(&v)), (403, "forbidden".into()));
    let (s, v) =
        post("/api/v1/intake/sessions/no-such-appointment/start", json!({"language": "en", "consent": true})).await;
    assert_eq!((s, code(&v)), (404, "not_found".into()));
    let r =
        t.send(me.post(t.url("/api/v1/intake/sessions")).header("content-type", "application/json").body("{")).await;
    assert_eq!((r.status, code(&r.json())), (400, "invalid_body".into()));
    // Without consent nothing was recorded.
    let (_, v) = post("/api/v1/intake/sessions", json!({"language": "en", "consent": true, "packs": [pack]})).await;
    let id = v["id"].as_str().unwrap().to_owned();
    let (s, v) = say(&t, &me, &id, json!({"text": "back pain", "answer": "x"})).await;
    assert_eq!((s, code(&v)), (400, "invalid_message".into()));
    let (s, v) = say(&t, &me, &id, json!({})).await;
    assert_eq!((s, code(&v)), (400, "invalid_message".into()));
    let (s, v) = say(&t, &me, &id, json!({"text": "   "})).await;
    assert_eq!((s, code(&v)), (400, "invalid_message".into()));
    assert_eq!(say(&t, &me, &id, json!({"text": "back pain"})).await.0, 200);
    let (s, v) = say(&t, &me, &id, json!({"answer": "elbow"})).await;
    assert_eq!((s, code(&v)), (422, "unknown_option".into()));
    let (s, v) = say(&t, &me, &id, json!({"answer": 9})).await;
    assert_eq!((s, code(&v)), (422, "unknown_option".into()));
    // Free text that fits no option is kept and the question is asked again.
    let (s, v) = say(&t, &me, &id, json!({"text": "I am not sure"})).await;
    assert_eq!((s, v["question"]["link_id"].as_str()), (200, Some("where")), "{v}");
    assert!(v["hint"].is_string());
    let (s, v) = call(&t, &me, Method::GET, "/api/v1/intake/sessions/not-a-session", None).await;
    assert_eq!((s, code(&v)), (404, "not_found".into()));
    let (s, v) = call(&t, &me, Method::GET, "/api/v1/intake/queue", None).await;
    assert_eq!((s, code(&v)), (403, "forbidden".into()));
    let (s, _) = call(&t, &t.anonymous(), Method::GET, "/api/v1/intake/queue", None).await;
    assert_eq!(s, 401);
    // An answer to a finished session.
    for body in [json!({"answer": "back"}), json!({"answer": true})] {
        assert_eq!(say(&t, &me, &id, body).await.0, 200);
    }
    let (_, v) = call(&t, &me, Method::GET, &format!("/api/v1/intake/sessions/{id}"), None).await;
    assert_eq!(v["status"], "emergency", "a yes to the screening question: {v}");
    let (s, v) = say(&t, &me, &id, json!({"answer": 3})).await;
    assert_eq!((s, code(&v)), (409, "session_finished".into()));
}

#[tokio::test]
async fn a_routine_self_booking_is_refused_only_while_an_emergency_flag_is_active() {
    let t = TestApp::spawn_with(no_worker).await;
    t.clock.set(at("2026-06-01T08:00:00Z"));
    let (doc, dc) = clinician(&t, "Flagged").await;
    schedule(&t, &dc, every_day(&doc, "UTC", "09:00", "12:00")).await;
    let (pid, _, me) = patient_account(&t, "Flagged").await;
    let flag = |status: &str, urgency: &str| {
        json!({"resourceType": "Flag", "status": status,
            "extension": [{"url": "urn:hearth:extension:intake-urgency", "valueCode": urgency}],
            "code": {"coding": [{"system": "urn:hearth:red-flag", "code": "cauda_equina"}]},
            "subject": {"reference": format!("Patient/{pid}")}})
    };
    // An urgent (not emergency) flag does not block.
    t.create(&flag("active", "urgent")).await;
    assert_eq!(book(&t, &me, &doc, "2026-06-02T09:00:00Z").await.0, 201);
    let id = t.create(&flag("active", "emergency")).await;
    let (s, e) = book(&t, &me, &doc, "2026-06-02T09:30:00Z").await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("urgent_care_required")));
    // The patient cannot lift it: a Flag is the care team's to change or delete (or create).
    let mut closed = flag("inactive", "emergency");
    closed["id"] = json!(id);
    let fhir = |m: Method, path: String, body: Option<Value>| {
        let mut r = me.request(m, t.url(&path)).header("content-type", "application/fhir+json");
        if let Some(b) = body {
            r = r.body(b.to_string());
        }
        r
    };
    assert_eq!(t.send(fhir(Method::PUT, format!("/fhir/Flag/{id}"), Some(closed.clone()))).await.status, 403);
    assert_eq!(t.send(fhir(Method::DELETE, format!("/fhir/Flag/{id}"), None)).await.status, 403);
    assert_eq!(t.send(fhir(Method::POST, "/fhir/Flag".into(), Some(flag("active", "routine")))).await.status, 403);
    assert_eq!(t.send(fhir(Method::GET, format!("/fhir/Flag/{id}"), None)).await.status, 200, "but reads it");
    let (s, _) = book(&t, &me, &doc, "2026-06-02T09:30:00Z").await;
    assert_eq!(s, 422, "still blocked");
    // Once a clinician closes the flag, the patient books again.
    assert_eq!(t.put(&format!("/fhir/Flag/{id}"), &closed).await.status, 200);
    assert_eq!(book(&t, &me, &doc, "2026-06-02T09:30:00Z").await.0, 201);
}

#[tokio::test]
async fn erasing_the_patient_removes_their_intake_sessions() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let (_, _, me) = patient_account(&t, "Forgotten").await;
    let id = walk_in(&t, &me, "hi-Latn", &pack).await["id"].as_str().unwrap().to_owned();
    assert_eq!(say(&t, &me, &id, json!({"text": "kamar dard"})).await.0, 200);
    assert!(hearth_store_sql::intake::get(&*t.app.db, &id).await.unwrap().is_some());
    let (s, request) = call(&t, &me, Method::POST, "/api/v1/me/erasure", None).await;
    assert_eq!(s, 202, "{request}");
    let rid = request["id"].as_str().unwrap();
    let r = t.post(&format!("/api/v1/admin/erasure-requests/{rid}/execute"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(hearth_store_sql::intake::get(&*t.app.db, &id).await.unwrap().is_none(), "the patient's words are gone");
}

/// A shipped pack, in Hindi, answered the way a patient taps: the low-back pack's questions come
/// in Devanagari, structured answers in Hindi words are understood, and a "हाँ" to its saddle
/// numbness screen ends the interview as a cauda equina emergency.
#[tokio::test]
async fn the_shipped_low_back_pack_screens_in_hindi_and_a_yes_to_saddle_numbness_is_an_emergency() {
    let t = TestApp::spawn_with(no_worker).await;
    let (_, _, me) = patient_account(&t, "Lowback").await;
    let v = walk_in(&t, &me, "hi", "ortho-low-back").await;
    let id = v["id"].as_str().unwrap().to_owned();
    let mut q = v["question"].clone();
    let mut asked = Vec::new();
    let last = loop {
        assert!(asked.len() < 80, "the interview never reached the saddle question: {asked:?}");
        let link = q["link_id"].as_str().unwrap().to_owned();
        let text = q["text"].as_str().unwrap();
        assert!(text.chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c)), "{link} is not asked in Hindi: {text}");
        let answer = match (link.as_str(), q["input"].as_str().unwrap()) {
            ("lb-saddle", _) => json!({"text": "हाँ"}),
            (_, "boolean") => json!({"text": "नहीं"}),
            (_, "integer" | "decimal") => json!({"text": "42"}),
            (_, "choice" | "open-choice") => json!({"text": "1"}),
            _ => json!({"text": "कुछ नहीं"}),
        };
        asked.push(link);
        let (s, v) = say(&t, &me, &id, answer).await;
        assert_eq!(s, 200, "{v}");
        if v["status"] != "active" {
            break v;
        }
        assert_eq!(v["red_flags"], json!([]), "no flag before the saddle question: {v}");
        q = v["question"].clone();
    };
    assert_eq!(asked.last().map(String::as_str), Some("lb-saddle"), "{asked:?}");
    assert_eq!((last["status"].as_str(), last["urgency"].as_str()), (Some("emergency"), Some("emergency")));
    assert!(last["red_flags"].as_array().unwrap().contains(&json!("cauda_equina")), "{last}");
    assert!(last["alert"]["message"].as_str().unwrap().contains("112"), "{last}");
}

/// The clinician's live queue (Server-Sent Events): the queue at once, then again when a
/// patient's interview turns into an emergency and when the session is reviewed.
#[tokio::test]
async fn the_live_queue_tells_the_clinician_of_an_emergency_at_once() {
    let t = TestApp::spawn_with(no_worker).await;
    let pack = fixture_pack(&t).await;
    let (_, _, me) = patient_account(&t, "Live").await;
    let id = walk_in(&t, &me, "en", &pack).await["id"].as_str().unwrap().to_owned();
    // A patient may not listen.
    let r = me.get(t.url("/api/v1/intake/queue/live")).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 403);
    let mut live = t.client.get(t.url("/api/v1/intake/queue/live")).send().await.unwrap();
    assert_eq!(live.status().as_u16(), 200);
    assert!(live.headers()["content-type"].to_str().unwrap().starts_with("text/event-stream"));
    // Reads events until one satisfies `want`, answering its queue.
    async fn next_queue(live: &mut reqwest::Response, buf: &mut String, want: impl Fn(&Value) -> bool) -> Value {
        let deadline = tokio::time::Instant::now() + Duration::from_secs(15);
        loop {
            while let Some(end) = buf.find("\n\n") {
                let event: String = buf.drain(..end + 2).collect();
                if let Some(data) = event.lines().find_map(|l| l.strip_prefix("data: ")) {
                    let queue: Value = serde_json::from_str(data).unwrap();
                    if want(&queue) {
                        return queue;
                    }
                }
            }
            let chunk = tokio::time::timeout_at(deadline, live.chunk()).await.expect("an event in time").unwrap();
            buf.push_str(&String::from_utf8_lossy(&chunk.expect("the stream stays open")));
        }
    }
    let mut buf = String::new();
    let session = |q: &Value| q["sessions"].as_array().unwrap().iter().find(|s| s["id"] == id.as_str()).cloned();
    let first = next_queue(&mut live, &mut buf, |_| true).await;
    assert_eq!(session(&first).unwrap()["status"], "active", "{first}");
    let (s, v) = say(&t, &me, &id, json!({"text": "severe chest pain and sweating since an hour"})).await;
    assert_eq!((s, v["status"].as_str()), (200, Some("emergency")), "{v}");
    let urgent = next_queue(&mut live, &mut buf, |q| session(q).is_some_and(|s| s["status"] == "emergency")).await;
    assert_eq!(session(&urgent).unwrap()["urgency"], "emergency");
    let (s, _) = call(&t, &t.client, Method::POST, &format!("/api/v1/intake/sessions/{id}/review"), None).await;
    assert_eq!(s, 200);
    let reviewed = next_queue(&mut live, &mut buf, |q| session(q).is_none()).await;
    assert!(session(&reviewed).is_none(), "a reviewed session leaves the queue: {reviewed}");
}
