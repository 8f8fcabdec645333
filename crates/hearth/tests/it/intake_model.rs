//! The intake's optional language model and speech (issue 17 item 8) against a real local peer
//! speaking the OpenAI-compatible chat-completions and audio-transcriptions shapes
//! (`peers/openai_peer.py`, Python standard library), which records what it received so the
//! tests can see what left the server. Without providers: a voice answer kept as `Media`.

use std::time::{Duration, Instant};

use reqwest::Method;
use serde_json::{Value, json};
use tokio::io::AsyncBufReadExt;

use crate::common::TestApp;
use crate::scheduling::{account, call, clinician};

const FIXTURE: &str = include_str!("../../../hearth-intake/tests/fixtures/intake-fixture.json");
const PHONE: &str = "+919812345678";

/// The peer process; killed when dropped (the journal's transcription tests use it too).
pub(crate) struct Peer {
    pub(crate) base: String,
    _child: tokio::process::Child,
}

impl Peer {
    pub(crate) async fn start() -> Peer {
        let script = concat!(env!("CARGO_MANIFEST_DIR"), "/tests/it/peers/openai_peer.py");
        let mut child = tokio::process::Command::new("python3")
            .arg(script)
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::piped())
            .kill_on_drop(true)
            .spawn()
            .expect("python3 runs the peer");
        let stdout = child.stdout.take().unwrap();
        let mut line = String::new();
        tokio::time::timeout(Duration::from_secs(10), tokio::io::BufReader::new(stdout).read_line(&mut line))
            .await
            .expect("the peer prints its port")
            .unwrap();
        let port: u16 = line.trim().parse().expect("a port");
        Peer { base: format!("http://127.0.0.1:{port}"), _child: child }
    }

    pub(crate) async fn script(&self, script: Value) {
        let r = reqwest::Client::new()
            .put(format!("{}/_script", self.base))
            .header("content-type", "application/json")
            .body(script.to_string())
            .send()
            .await
            .unwrap();
        assert_eq!(r.status(), 200);
    }

    pub(crate) async fn requests(&self) -> Vec<Value> {
        let r = reqwest::get(format!("{}/_requests", self.base)).await.unwrap();
        serde_json::from_str(&r.text().await.unwrap()).unwrap()
    }

    async fn chat_requests(&self) -> Vec<Value> {
        self.requests().await.into_iter().filter(|r| r["path"] == "/v1/chat/completions").collect()
    }
}

fn with_chat(peer: &Peer, timeout_ms: u64) -> impl FnOnce(&mut hearth_server::Config) {
    let base = format!("{}/v1", peer.base);
    move |c| {
        c.notify.worker = false;
        c.intake.chat.base_url = base;
        c.intake.chat.model = "peer-chat".into();
        c.intake.chat.api_key = "sk-test-chat".into();
        c.intake.chat.timeout_ms = timeout_ms;
    }
}

/// A patient with a name and a phone number (neither may leave the server), their client, and a
/// walk-in session on the fixture pack in `language`: (patient id, client, session id).
async fn patient_session(t: &TestApp, family: &str, language: &str) -> (String, reqwest::Client, String) {
    let pid = t
        .create(&json!({
            "resourceType": "Patient",
            "name": [{"family": family, "given": ["Sunita"]}],
            "telecom": [{"system": "phone", "value": PHONE}],
            "gender": "female",
            "birthDate": "1975-02-01"
        }))
        .await;
    let (_, client) = account(&t.app, "patient", Some(format!("Patient/{pid}")), true).await;
    let q: Value = serde_json::from_str(FIXTURE).unwrap();
    let pack = format!("Questionnaire/{}", t.create(&q).await);
    let (s, v) = call(
        t,
        &client,
        Method::POST,
        "/api/v1/intake/sessions",
        Some(json!({"language": language, "consent": true, "packs": [pack]})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    (pid, client, v["id"].as_str().unwrap().to_owned())
}

async fn say(t: &TestApp, c: &reqwest::Client, id: &str, text: &str) -> Value {
    let (s, v) =
        call(t, c, Method::POST, &format!("/api/v1/intake/sessions/{id}/messages"), Some(json!({"text": text}))).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn summary(t: &TestApp, id: &str) -> Value {
    let (s, v) = call(t, &t.client, Method::GET, &format!("/api/v1/intake/sessions/{id}/summary"), None).await;
    assert_eq!(s, 200, "{v}");
    v
}

async fn upload(c: &reqwest::Client, t: &TestApp, id: &str, content_type: &str, audio: Vec<u8>) -> (u16, Value) {
    let r = c
        .post(t.url(&format!("/api/v1/intake/sessions/{id}/voice")))
        .header("content-type", content_type)
        .body(audio)
        .send()
        .await
        .unwrap();
    let status = r.status().as_u16();
    (status, serde_json::from_str(&r.text().await.unwrap()).unwrap_or(Value::Null))
}

/// Nothing that names the patient left the server.
fn assert_no_identifiers(requests: &[Value], pid: &str, session: &str, family: &str) {
    for r in requests {
        let all = r.to_string();
        for secret in [pid, session, family, "Sunita", PHONE, "9812345678"] {
            assert!(!all.contains(secret), "{secret} left the server: {all}");
        }
    }
}

#[tokio::test]
async fn a_model_proposes_an_extra_finding_added_as_model_suggested_and_only_the_turn_text_leaves() {
    let peer = Peer::start().await;
    let proposal = json!({
        "english": "I cannot sleep at night",
        "findings": [{"code": "193462001", "display": "Insomnia", "body_site": null, "polarity": "present",
                      "temporality": "current", "experiencer": "patient", "severe": false, "evidence": null}],
        "red_flags": [],
        "urgency": "soon"
    });
    peer.script(json!({"chat": [{"contains": "neend", "content": proposal.to_string()}]})).await;
    let t = TestApp::spawn_with(with_chat(&peer, 5000)).await;
    let (pid, me, id) = patient_session(&t, "Malhotra", "hi-Latn").await;

    let text = "raat ko neend nahi aati";
    let v = say(&t, &me, &id, text).await;
    assert_eq!(v["status"], "active", "{v}");
    assert_eq!(v["urgency"], "soon", "the model may raise the urgency: {v}");

    let sum = summary(&t, &id).await;
    let insomnia = sum["pertinent_positives"].as_array().unwrap().iter().find(|f| f["code"] == "193462001");
    let insomnia = insomnia.unwrap_or_else(|| panic!("the model's finding is in the summary: {sum}"));
    assert_eq!(insomnia["model_suggested"], true, "{insomnia}");
    assert_eq!(sum["patient_words"][0]["text"], text);
    assert_eq!(sum["patient_words"][0]["model_english"], "I cannot sleep at night");
    assert_eq!(sum["urgency"], "soon");

    // What left: one chat completion, the turn's words and the language only.
    let sent = peer.chat_requests().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["headers"]["authorization"], "Bearer sk-test-chat");
    let body: Value = serde_json::from_str(sent[0]["body"].as_str().unwrap()).unwrap();
    assert_eq!(body["model"], "peer-chat");
    let user: Value = serde_json::from_str(body["messages"][1]["content"].as_str().unwrap()).unwrap();
    assert_eq!(user, json!({"language": "hi-Latn", "text": text}));
    assert_no_identifiers(&sent, &pid, &id, "Malhotra");
}

#[tokio::test]
async fn a_finished_interview_gets_a_labelled_model_summary_beside_the_deterministic_one() {
    let peer = Peer::start().await;
    let polished = "Neck pain, worse on sitting; no saddle numbness; no medicines, no allergies.";
    peer.script(json!({"chat": [{"contains": "{\"summary\":", "content": polished}]})).await;
    let t = TestApp::spawn_with(with_chat(&peer, 5000)).await;
    let (pid, me, id) = patient_session(&t, "Sethi", "en").await;
    let mut v = Value::Null;
    for text in ["neck pain since last week", "neck", "no", "2", "none", "no", "2026-11-20"] {
        v = say(&t, &me, &id, text).await;
    }
    assert_eq!(v["status"], "finished", "{v}");

    let sum = summary(&t, &id).await;
    assert_eq!(sum["model_summary"]["text"], polished);
    assert_eq!(sum["model_summary"]["model"], "peer-chat");
    assert!(sum["model_summary"]["note"].as_str().unwrap().contains("language model"));
    assert!(!sum["history"].as_array().unwrap().is_empty(), "the deterministic summary stays");
    let r = t
        .send(t.client.get(t.url(&format!("/api/v1/intake/sessions/{id}/summary"))).header("accept", "text/plain"))
        .await;
    assert!(r.text.contains("MODEL-WRITTEN SUMMARY (peer-chat)") && r.text.contains(polished), "{}", r.text);

    // The request carried the summary's clinical sections, with no identifier in it.
    let sent = peer.chat_requests().await;
    let polish: Vec<&Value> = sent.iter().filter(|r| r["body"].as_str().unwrap().contains("summary")).collect();
    assert_eq!(polish.len(), 1, "{sent:?}");
    let body: Value = serde_json::from_str(polish[0]["body"].as_str().unwrap()).unwrap();
    let user: Value = serde_json::from_str(body["messages"][1]["content"].as_str().unwrap()).unwrap();
    let text = user["summary"].as_str().unwrap();
    assert!(text.contains("URGENCY: ROUTINE") && text.contains("neck pain since last week"), "{text}");
    assert_no_identifiers(&sent, &pid, &id, "Sethi");
}

#[tokio::test]
async fn a_model_cannot_drop_a_red_flag_or_lower_urgency_and_an_emergency_never_waits_for_it() {
    let peer = Peer::start().await;
    let denial = json!({
        "english": "nothing serious",
        "findings": [{"code": "449614009", "display": "Deep venous thrombosis", "body_site": null,
                      "polarity": "absent", "temporality": "current", "experiencer": "patient"}],
        "red_flags": [{"code": "dvt_pe", "title": "Not a DVT", "urgency": "self_care", "rationale": "looks fine"}],
        "urgency": "self_care"
    });
    peer.script(json!({"chat": [{"contains": "", "content": denial.to_string()}]})).await;
    let t = TestApp::spawn_with(with_chat(&peer, 5000)).await;
    let (_, me, id) = patient_session(&t, "Kapoor", "hi-Latn").await;

    let v = say(&t, &me, &id, "bus me lambi yatra ke baad baayi pindli me sujan aur dard hai").await;
    assert_eq!((v["status"].as_str(), v["urgency"].as_str()), (Some("active"), Some("urgent")), "{v}");
    assert_eq!(v["red_flags"], json!(["dvt_pe"]));
    let sum = summary(&t, &id).await;
    assert_eq!(sum["urgency"], "urgent");
    let flag = &sum["red_flags"][0];
    assert_eq!((flag["code"].as_str(), flag["urgency"].as_str()), (Some("dvt_pe"), Some("urgent")), "{flag}");
    assert!(flag.get("model_suggested").is_none(), "the rule's flag stays the rule's: {flag}");
    assert_eq!(peer.chat_requests().await.len(), 1);

    // An emergency is answered at once: the model is not asked.
    let v = say(&t, &me, &id, "saddle area sunn ho gaya hai aur pishab nahi ho raha").await;
    assert_eq!(v["status"], "emergency", "{v}");
    assert!(v["red_flags"].as_array().unwrap().contains(&json!("cauda_equina")));
    assert_eq!(peer.chat_requests().await.len(), 1, "no model call on an emergency turn");
}

#[tokio::test]
async fn a_peer_that_times_out_or_answers_garbage_leaves_the_deterministic_result() {
    let peer = Peer::start().await;
    peer.script(json!({"chat": [
        {"contains": "ghutne", "delay_ms": 3000},
        {"contains": "haan", "content": "Sure! The patient seems to have knee pain."},
        {"contains": "3 din", "status": 500},
    ]}))
    .await;
    let t = TestApp::spawn_with(with_chat(&peer, 400)).await;
    let (_, me, id) = patient_session(&t, "Bansal", "hi-Latn").await;

    let started = Instant::now();
    let v = say(&t, &me, &id, "ghutne me dard hai").await;
    assert!(started.elapsed() < Duration::from_millis(2500), "the timeout bounds the turn: {:?}", started.elapsed());
    assert_eq!((v["status"].as_str(), v["question"]["link_id"].as_str()), (Some("active"), Some("where")), "{v}");
    let v = say(&t, &me, &id, "knee").await;
    assert_eq!(v["question"]["link_id"], "saddle");
    let v = say(&t, &me, &id, "haan").await;
    assert_eq!(v["status"], "emergency", "the screening yes decides, whatever the model: {v}");

    // Garbage and an HTTP error on another session.
    let (_, me2, id2) = patient_session(&t, "Bansal", "hi-Latn").await;
    say(&t, &me2, &id2, "haan dard hai").await;
    let v = say(&t, &me2, &id2, "3 din se").await;
    assert_eq!(v["status"], "active", "{v}");
    let sum = summary(&t, &id2).await;
    for w in sum["patient_words"].as_array().unwrap() {
        assert!(w.get("model_english").is_none(), "no model output was kept: {w}");
    }
    assert!(sum["pertinent_positives"].as_array().unwrap().iter().all(|f| f.get("model_suggested").is_none()));
    // Sent: the two free texts of session 1's first turn and session 2's two turns; not the
    // single word that picked an option ("knee").
    let sent = peer.chat_requests().await;
    let texts: Vec<String> = sent
        .iter()
        .map(|r| {
            let body: Value = serde_json::from_str(r["body"].as_str().unwrap()).unwrap();
            let user: Value = serde_json::from_str(body["messages"][1]["content"].as_str().unwrap()).unwrap();
            user["text"].as_str().unwrap().to_owned()
        })
        .collect();
    assert_eq!(texts, ["ghutne me dard hai", "haan dard hai", "3 din se"]);

    // Counted in the metrics, by outcome.
    let m = t.get("/metrics").await;
    assert_eq!(m.status, 200);
    for outcome in ["timeout", "invalid_answer", "http_status"] {
        assert!(
            m.text.lines().any(|l| l.starts_with("hearth_intake_model_calls_total")
                && l.contains("provider=\"chat\"")
                && l.contains(&format!("outcome=\"{outcome}\""))),
            "{outcome} not counted: {}",
            m.text
        );
    }
}

#[tokio::test]
async fn a_failing_transcription_keeps_the_voice_answer_as_media_and_the_interview_goes_on() {
    let peer = Peer::start().await;
    peer.script(json!({"transcription": {"status": 503}})).await;
    let base = format!("{}/v1", peer.base);
    let t = TestApp::spawn_with(move |c| {
        c.notify.worker = false;
        c.intake.transcription.base_url = base;
        c.intake.transcription.model = "peer-whisper".into();
        c.intake.transcription.api_key = "sk-test-whisper".into();
    })
    .await;
    let (_, me, id) = patient_session(&t, "Nair", "hi").await;
    let (s, v) = upload(&me, &t, &id, "audio/wav", b"RIFF\x24\x00\x00\x00WAVEfmt ".to_vec()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["handled"], "kept", "{v}");
    assert_eq!(v["question"]["link_id"], "where");
    assert!(v["media"].as_str().unwrap().starts_with("Media/"));
    let sent = peer.requests().await;
    assert_eq!(sent.len(), 1);
    assert_eq!(sent[0]["headers"]["authorization"], "Bearer sk-test-whisper");
    assert!(sent[0]["body"].as_str().unwrap().contains("name=\"language\"\r\n\r\nhi\r\n"), "Hindi is hinted");
}

#[tokio::test]
async fn a_voice_answer_transcribed_into_hinglish_triggers_cauda_equina() {
    let peer = Peer::start().await;
    peer.script(json!({"transcription": {"text": "saddle area sunn ho gaya hai aur pishab nahi ho raha"}})).await;
    let base = format!("{}/v1", peer.base);
    let t = TestApp::spawn_with(move |c| {
        c.notify.worker = false;
        c.intake.transcription.base_url = base;
        c.intake.transcription.model = "peer-whisper".into();
    })
    .await;
    let (pid, me, id) = patient_session(&t, "Chauhan", "hi-Latn").await;
    let audio = b"OggS\x00\x02fake-opus-frames".to_vec();
    let (s, v) = upload(&me, &t, &id, "audio/ogg; codecs=opus", audio.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(v["handled"], "transcribed");
    assert_eq!(v["transcript"], "saddle area sunn ho gaya hai aur pishab nahi ho raha");
    assert_eq!(v["status"], "emergency", "{v}");
    assert!(v["red_flags"].as_array().unwrap().contains(&json!("cauda_equina")), "{v}");
    assert!(v["alert"]["message"].as_str().unwrap().contains("112"), "{v}");

    let sent = peer.requests().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["path"], "/v1/audio/transcriptions");
    assert!(sent[0]["headers"]["content-type"].as_str().unwrap().starts_with("multipart/form-data; boundary="));
    assert!(sent[0].get("authorization").is_none());
    let body = sent[0]["body"].as_str().unwrap();
    assert!(body.contains("name=\"model\"\r\n\r\npeer-whisper\r\n"), "{body}");
    assert!(body.contains("Content-Type: audio/ogg\r\n\r\nOggS"), "{body}");
    assert!(!body.contains("name=\"language\""), "no language hint for Hinglish: {body}");
    assert_no_identifiers(&sent, &pid, &id, "Chauhan");

    let sum = summary(&t, &id).await;
    assert_eq!(sum["red_flags"][0]["code"], "cauda_equina");
    assert_eq!(sum["patient_words"][0]["from_voice"], true);
    assert_eq!(sum["voice_answers"][0]["transcript"], "saddle area sunn ho gaya hai aur pishab nahi ho raha");
}

#[tokio::test]
async fn without_a_provider_a_voice_answer_is_kept_as_media_for_the_clinician_and_not_another_patient() {
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    let (pid, me, id) = patient_session(&t, "Rao", "hi").await;
    let audio: Vec<u8> = (0..4096u32).map(|i| (i % 251) as u8).collect();

    // Bad uploads first: the documented codes.
    let (s, v) = upload(&me, &t, &id, "text/plain", audio.clone()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (415, Some("unsupported_audio")), "{v}");
    let (s, v) = upload(&me, &t, &id, "audio/webm", Vec::new()).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_voice")), "{v}");
    let (s, v) = upload(&me, &t, &id, "audio/webm", vec![0; 5 * 1024 * 1024 + 1]).await;
    assert_eq!((s, v["error"]["code"].as_str()), (413, Some("voice_too_large")), "{v}");

    let (s, v) = upload(&me, &t, &id, "audio/webm", audio.clone()).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!((v["handled"].as_str(), v["transcript"].as_str()), (Some("kept"), None), "{v}");
    assert_eq!(v["status"], "active");
    assert_eq!(v["question"]["link_id"], "where", "the interview goes on past the required question: {v}");
    let media = v["media"].as_str().unwrap().to_owned();

    // The clinician hears it; another patient cannot read it.
    let (_, doc) = clinician(&t, "Iyer").await;
    let r = doc.get(t.url(&format!("/fhir/{media}"))).send().await.unwrap();
    assert_eq!(r.status(), 200);
    let m: Value = serde_json::from_str(&r.text().await.unwrap()).unwrap();
    assert_eq!(m["subject"]["reference"], format!("Patient/{pid}"));
    assert_eq!(m["identifier"][0]["value"], id);
    assert_eq!(m["content"]["contentType"], "audio/webm");
    assert_eq!(m["content"]["size"], 4096);
    let data = m["content"]["data"].as_str().unwrap();
    assert_eq!(data_encoding::BASE64.decode(data.as_bytes()).unwrap(), audio);
    let (other_pid, other, _) = patient_session(&t, "Other", "en").await;
    assert_ne!(other_pid, pid);
    let r = other.get(t.url(&format!("/fhir/{media}"))).send().await.unwrap();
    assert!(matches!(r.status().as_u16(), 403 | 404), "another patient reads the voice answer: {}", r.status());
    let (s, _) = upload(&other, &t, &id, "audio/webm", audio.clone()).await;
    assert_eq!(s, 404, "nor answer into the session");

    let sum = summary(&t, &id).await;
    assert_eq!(sum["voice_answers"][0]["media"], media.as_str());
    assert_eq!(sum["voice_answers"][0]["question"], "What is your main problem?");
    assert!(sum["patient_words"].as_array().unwrap().is_empty(), "{sum}");
    let r = t
        .send(t.client.get(t.url(&format!("/api/v1/intake/sessions/{id}/summary"))).header("accept", "text/plain"))
        .await;
    assert!(r.text.contains(&format!("voice answer not transcribed, to be heard: {media}")), "{}", r.text);
}
