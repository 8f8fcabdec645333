//! The patient journal (issue 20): entries with history, the NLP job after the write (VADER,
//! symptoms with negation, medications, "not scored" Hindi), full-text search in English and
//! Hindi with filters, trends and exports, and who may read a journal (the patient, and a
//! clinician of another clinic only after the patient shares through a Consent).

use serde_json::{Value, json};

use crate::common::TestApp;
use crate::consent::{account, json_req};
use crate::documents::{bearer, patient_account, wait_until};

fn journal_app() -> impl FnOnce(&mut hearth_server::config::Config) {
    |c| c.journal.nlp_interval_secs = 1
}

async fn spawn() -> TestApp {
    let t = TestApp::spawn_with(journal_app()).await;
    t.clock.set("2026-12-07T10:00:00Z".parse().unwrap());
    t
}

async fn post(t: &TestApp, c: &reqwest::Client, body: Value) -> (u16, Value) {
    json_req(t, c, reqwest::Method::POST, "/api/v1/journal/entries", Some(&body)).await
}

async fn get(t: &TestApp, c: &reqwest::Client, path: &str) -> (u16, Value) {
    json_req(t, c, reqwest::Method::GET, path, None).await
}

/// Waits until the NLP job has analysed the entry's current version; answers the entry.
async fn analysed(t: &TestApp, c: &reqwest::Client, id: &str) -> Value {
    let mut entry = Value::Null;
    wait_until("the entry is analysed", async || {
        entry = get(t, c, &format!("/api/v1/journal/entries/{id}")).await.1;
        entry["analysis"]["status"] == "done"
    })
    .await;
    entry
}

fn ids(list: &Value) -> Vec<String> {
    list["entries"].as_array().unwrap().iter().map(|e| e["id"].as_str().unwrap().to_owned()).collect()
}

#[tokio::test]
async fn a_patient_writes_edits_and_deletes_entries_and_every_version_stays_in_the_history() {
    let t = spawn().await;
    let (pa, _, token) = patient_account(&t, "Journal").await;
    let a = bearer(&token);

    let (s, e) = post(
        &t,
        &a,
        json!({"text": "No headache today, but my back pain is worse. Took my warfarin.", "date": "2026-12-06", "mood": 2, "tags": ["Sleep", "back"]}),
    )
    .await;
    assert_eq!(s, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_owned();
    assert_eq!((e["patient"].as_str(), e["version"].as_u64()), (Some(pa.as_str()), Some(1)));
    assert_eq!(
        (e["kind"].as_str(), e["date"].as_str(), e["mood"].as_i64()),
        (Some("text"), Some("2026-12-06"), Some(2))
    );
    assert_eq!(e["tags"], json!(["sleep", "back"]));
    assert_eq!(e["analysis"]["status"], "pending");

    // The NLP job runs after the write: sentiment, the negated headache is a mention only.
    let e = analysed(&t, &a, &id).await;
    let an = &e["analysis"];
    assert_eq!((an["language"].as_str(), an["sentiment_status"].as_str()), (Some("en"), Some("scored")), "{e}");
    assert!(an["sentiment"]["compound"].as_f64().is_some(), "{e}");
    let symptoms = an["symptoms"].as_array().unwrap();
    let headache = symptoms.iter().find(|s| s["name"].as_str().unwrap().to_lowercase().contains("headache")).unwrap();
    assert_eq!(headache["negated"], true, "{e}");
    assert!(symptoms.iter().any(|s| s["negated"] == false), "back pain is present: {e}");
    assert!(!an["auto_tags"].as_array().unwrap().iter().any(|t| t.as_str().unwrap().contains("headache")), "{e}");
    assert!(
        an["medications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|m| m["name"].as_str().unwrap().eq_ignore_ascii_case("warfarin"))
    );

    // The FHIR record a clinician sees: a DocumentReference holding the text.
    let doc = t.get(&format!("/fhir/DocumentReference/{id}")).await.json();
    crate::common::assert_valid_r4(&doc);
    assert_eq!(doc["type"]["coding"][0]["code"], "51855-5");
    assert_eq!(doc["context"]["period"]["start"], "2026-12-06");

    // An edit is a new version; the analysis runs again for it.
    let (s, e2) = json_req(
        &t,
        &a,
        reqwest::Method::PUT,
        &format!("/api/v1/journal/entries/{id}"),
        Some(&json!({"text": "Feeling great today, walked 5k!", "date": "2026-12-06", "mood": 5, "tags": ["walk"]})),
    )
    .await;
    assert_eq!(s, 200, "{e2}");
    assert_eq!(e2["version"], 2);
    let e2 = analysed(&t, &a, &id).await;
    assert!(e2["analysis"]["sentiment"]["compound"].as_f64().unwrap() > 0.5, "{e2}");
    assert_eq!(e2["analysis"]["symptoms"], json!([]), "{e2}");
    // A stale If-Match is refused.
    let r = t
        .send(
            a.put(t.url(&format!("/api/v1/journal/entries/{id}")))
                .header("if-match", "W/\"1\"")
                .header("content-type", "application/json")
                .body(json!({"text": "late edit"}).to_string()),
        )
        .await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (412, Some("version_conflict")));

    let (s, h) = get(&t, &a, &format!("/api/v1/journal/entries/{id}/history")).await;
    assert_eq!(s, 200, "{h}");
    let versions = h["versions"].as_array().unwrap();
    assert_eq!(versions.len(), 2, "{h}");
    assert_eq!(versions[1]["entry"]["text"], "No headache today, but my back pain is worse. Took my warfarin.");
    assert_eq!(versions[0]["entry"]["mood"], 5);

    // Bad input: a stable code, nothing written.
    for (body, code) in [
        (json!({"text": "x", "mood": 9}), "invalid_mood"),
        (json!({"text": "x", "date": "07/12/2026"}), "invalid_date"),
        (json!({"text": "x", "date": "2027-01-01"}), "invalid_date"),
        (json!({"text": "x", "tags": ["no spaces"]}), "invalid_tag"),
        (json!({"text": "   "}), "empty_entry"),
        (json!({"text": "x", "colour": "red"}), "invalid_body"),
        (json!({"audio": {"content_type": "video/mp4", "data": "AAAA"}}), "invalid_audio"),
        (json!({"audio": {"content_type": "audio/webm", "data": "***"}}), "invalid_audio"),
    ] {
        let (s, e) = post(&t, &a, body.clone()).await;
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some(code)), "{body}: {e}");
    }
    let (s, e) = get(&t, &a, "/api/v1/journal/entries?mood_min=x").await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (_, list) = get(&t, &a, "/api/v1/journal/entries").await;
    assert_eq!(ids(&list), vec![id.clone()], "nothing else was written");

    // Delete: gone, out of the list, its history stays.
    let r = t.send(a.delete(t.url(&format!("/api/v1/journal/entries/{id}")))).await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Out of the patient's compartment now: not found to her, gone to staff who reach everything.
    assert_eq!(get(&t, &a, &format!("/api/v1/journal/entries/{id}")).await.0, 404);
    assert_eq!(get(&t, &t.client, &format!("/api/v1/journal/entries/{id}")).await.0, 410);
    assert_eq!(ids(&get(&t, &a, "/api/v1/journal/entries").await.1), Vec::<String>::new());
    let (s, h) = get(&t, &t.client, &format!("/api/v1/journal/entries/{id}/history")).await;
    assert_eq!((s, h["versions"].as_array().unwrap().len()), (200, 3), "{h}");
    assert_eq!(h["versions"][0]["deleted"], true);
}

#[tokio::test]
async fn an_unrelated_clinician_sees_nothing_until_the_patient_shares_and_another_patient_never() {
    let t = spawn().await;
    let (pa, _, token) = patient_account(&t, "Sharer").await;
    let a = bearer(&token);
    let (_, _, other) = patient_account(&t, "Other").await;
    let b = bearer(&other);
    let (s, e) = post(&t, &a, json!({"text": "Dizzy after the new pills.", "mood": 3})).await;
    assert_eq!(s, 201, "{e}");
    let id = e["id"].as_str().unwrap().to_owned();

    let org = t.create(&json!({"resourceType": "Organization", "name": "Elsewhere Clinic"})).await;
    let practitioner = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Rao"}]})).await;
    let (_, doc) = account(
        &t,
        "rao@elsewhere.example",
        json!({"role": "clinician", "fhirUser": format!("Practitioner/{practitioner}"), "organization": org}),
    )
    .await;
    let paths = [
        format!("/api/v1/journal/entries/{id}"),
        format!("/api/v1/journal/entries?patient={pa}"),
        format!("/api/v1/journal/entries/{id}/history"),
        format!("/api/v1/journal/trends?patient={pa}"),
        format!("/api/v1/journal/export?patient={pa}&format=csv"),
    ];
    for p in &paths {
        assert_eq!(get(&t, &doc, p).await.0, 404, "not shared yet: {p}");
        assert_eq!(get(&t, &b, p).await.0, 404, "another patient: {p}");
    }
    assert_eq!(t.send(doc.get(t.url(&format!("/fhir/DocumentReference/{id}")))).await.status, 404);

    let (s, _) = json_req(
        &t,
        &a,
        reqwest::Method::POST,
        "/api/v1/me/consents",
        Some(&json!({"kind": "share", "with": format!("Practitioner/{practitioner}")})),
    )
    .await;
    assert_eq!(s, 201);
    for p in &paths {
        assert_eq!(get(&t, &doc, p).await.0, 200, "shared: {p}");
        assert_eq!(get(&t, &b, p).await.0, 404, "still not another patient: {p}");
    }
    let (_, e) = get(&t, &doc, &format!("/api/v1/journal/entries/{id}")).await;
    assert_eq!(e["text"], "Dizzy after the new pills.");
    assert_eq!(t.send(doc.get(t.url(&format!("/fhir/DocumentReference/{id}")))).await.status, 200);
}

#[tokio::test]
async fn search_finds_english_and_hindi_entries_by_words_tag_mood_sentiment_symptom_and_date() {
    let t = spawn().await;
    let (_, _, token) = patient_account(&t, "Searcher").await;
    let a = bearer(&token);
    let mut made = Vec::new();
    for body in [
        json!({"text": "Terrible headache and nausea all evening.", "date": "2026-11-02", "mood": 1, "tags": ["migraine"]}),
        json!({"text": "आज सिर में बहुत दर्द है और बुखार भी है", "date": "2026-11-10", "mood": 2, "tags": ["सिरदर्द"]}),
        json!({"text": "Slept well and woke up feeling rested, happy day.", "date": "2026-11-20", "mood": 5}),
        json!({"text": "aaj mera sir bahut dard kar raha hai", "date": "2026-12-01", "mood": 2}),
    ] {
        let (s, e) = post(&t, &a, body).await;
        assert_eq!(s, 201, "{e}");
        made.push(e["id"].as_str().unwrap().to_owned());
    }
    for id in &made {
        analysed(&t, &a, id).await;
    }
    let find = async |q: &str| {
        let (s, list) = get(&t, &a, &format!("/api/v1/journal/entries?{q}")).await;
        assert_eq!(s, 200, "{q}: {list}");
        ids(&list)
    };
    // Full text, English and Hindi (Devanagari words as written).
    assert_eq!(find("q=headache").await, vec![made[0].clone()]);
    assert_eq!(find("q=HEADACHE%20nausea").await, vec![made[0].clone()]);
    assert_eq!(find(&format!("q={}", enc("दर्द"))).await, vec![made[1].clone()]);
    assert_eq!(find(&format!("q={}", enc("बुखार दर्द"))).await, vec![made[1].clone()]);
    assert_eq!(find("q=dard").await, vec![made[3].clone()]);
    assert_eq!(find("q=nothing-like-this").await, Vec::<String>::new());
    // Filters.
    assert_eq!(find("tag=migraine").await, vec![made[0].clone()]);
    assert_eq!(find(&format!("tag={}", enc("सिरदर्द"))).await, vec![made[1].clone()]);
    assert_eq!(find("mood_max=2").await, vec![made[3].clone(), made[1].clone(), made[0].clone()]);
    assert_eq!(find("mood_min=4").await, vec![made[2].clone()]);
    assert_eq!(find("sentiment_min=0.3").await, vec![made[2].clone()]);
    assert_eq!(find("sentiment_max=-0.3").await, vec![made[0].clone()], "Hindi is not scored, so never in a range");
    assert_eq!(find("from=2026-11-05&to=2026-11-25").await, vec![made[2].clone(), made[1].clone()]);
    // Headache (SNOMED 25064002) in English, Hindi and Hinglish.
    let headache = find("symptom=25064002").await;
    assert_eq!(headache, vec![made[3].clone(), made[1].clone(), made[0].clone()]);
    // Hindi is found but not scored.
    let (_, hi) = get(&t, &a, &format!("/api/v1/journal/entries/{}", made[1])).await;
    assert_eq!(
        (hi["analysis"]["language"].as_str(), hi["analysis"]["sentiment_status"].as_str()),
        (Some("hi"), Some("not_scored"))
    );
    // Paging.
    let (_, p1) = get(&t, &a, "/api/v1/journal/entries?_count=3").await;
    assert_eq!(ids(&p1), vec![made[3].clone(), made[2].clone(), made[1].clone()]);
    let next = p1["next"].as_str().unwrap();
    let (_, p2) = get(&t, &a, &format!("/api/v1/journal/entries?_count=3&cursor={next}")).await;
    assert_eq!((ids(&p2), p2["next"].clone()), (vec![made[0].clone()], Value::Null));
    let (s, e) = get(&t, &a, "/api/v1/journal/entries?cursor=%%%").await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));
}

fn enc(s: &str) -> String {
    s.bytes().map(|b| if b.is_ascii_alphanumeric() { (b as char).to_string() } else { format!("%{b:02X}") }).collect()
}

#[tokio::test]
async fn trends_count_symptoms_per_week_and_month_and_the_exports_render() {
    let t = spawn().await;
    let (pa, _, token) = patient_account(&t, "Trender").await;
    let a = bearer(&token);
    let mut made = Vec::new();
    // Week of Mon 2026-11-23: two headaches (one negated mention does not count); week of
    // Mon 2026-11-30: one headache, one fever.
    for (text, date, mood) in [
        ("Bad headache this morning.", "2026-11-23", 2),
        ("Headache again, I feel awful.", "2026-11-25", 1),
        ("No headache today, feeling good.", "2026-11-27", 4),
        ("Headache and fever since lunch.", "2026-12-01", 2),
        ("आज अच्छा दिन था", "2026-12-02", 4),
    ] {
        let (s, e) = post(&t, &a, json!({"text": text, "date": date, "mood": mood, "tags": ["daily"]})).await;
        assert_eq!(s, 201, "{e}");
        made.push(e["id"].as_str().unwrap().to_owned());
    }
    for id in &made {
        analysed(&t, &a, id).await;
    }
    let (s, w) = get(&t, &a, "/api/v1/journal/trends?period=week").await;
    assert_eq!(s, 200, "{w}");
    assert_eq!(
        (w["patient"].as_str(), w["period"].as_str(), w["pending"].as_u64()),
        (Some(pa.as_str()), Some("week"), Some(0))
    );
    let buckets = w["buckets"].as_array().unwrap();
    assert_eq!(buckets.len(), 2, "{w}");
    assert_eq!((buckets[0]["start"].as_str(), buckets[0]["entries"].as_u64()), (Some("2026-11-23"), Some(3)));
    let count_of = |b: &Value, code: &str| {
        b["symptoms"].as_array().unwrap().iter().find(|s| s["code"] == code).map(|s| s["entries"].as_u64().unwrap())
    };
    assert_eq!(count_of(&buckets[0], "25064002"), Some(2), "the negated one does not count: {w}");
    assert_eq!(count_of(&buckets[1], "25064002"), Some(1), "{w}");
    assert_eq!(buckets[0]["mood_mean"].as_f64(), Some(2.3333));
    assert_eq!(buckets[1]["scored"], 1, "the Hindi entry is not scored: {w}");
    assert!(buckets[0]["sentiment_mean"].as_f64().is_some());
    assert_eq!(w["symptoms"][0]["code"], "25064002");
    assert_eq!(w["symptoms"][0]["entries"], 3);
    let (_, m) = get(&t, &a, "/api/v1/journal/trends?period=month").await;
    let starts: Vec<&str> = m["buckets"].as_array().unwrap().iter().map(|b| b["start"].as_str().unwrap()).collect();
    assert_eq!(starts, ["2026-11-01", "2026-12-01"]);
    let (s, e) = get(&t, &a, "/api/v1/journal/trends?period=day").await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));

    // Exports: JSON, CSV and a readable PDF.
    let (s, j) = get(&t, &a, "/api/v1/journal/export").await;
    assert_eq!(s, 200, "{j}");
    assert_eq!(j["entries"].as_array().unwrap().len(), 5);
    assert_eq!(j["entries"][0]["text"], "Bad headache this morning.");
    let r = t.send(a.get(t.url("/api/v1/journal/export?format=csv"))).await;
    assert_eq!(r.status, 200);
    assert!(r.header("content-type").unwrap().starts_with("text/csv"));
    let lines: Vec<&str> = r.text.lines().collect();
    assert_eq!(lines.len(), 6, "{}", r.text);
    assert!(lines[0].starts_with("id,date,mood,tags,sentiment"), "{}", lines[0]);
    assert!(
        lines[1].contains("\"2026-11-23\",2,\"daily\"") && lines[1].contains("Bad headache this morning."),
        "{}",
        lines[1]
    );
    assert!(lines[5].contains("आज अच्छा दिन था") && lines[5].contains("not_scored"), "{}", lines[5]);
    let r = t.send(a.get(t.url("/api/v1/journal/export?format=pdf&from=2026-11-23&to=2026-11-30"))).await;
    assert_eq!(r.status, 200);
    assert_eq!(r.header("content-type").as_deref(), Some("application/pdf"));
    let pdf = a
        .get(t.url("/api/v1/journal/export?format=pdf&from=2026-11-23&to=2026-11-30"))
        .send()
        .await
        .unwrap()
        .bytes()
        .await
        .unwrap();
    assert!(pdf.starts_with(b"%PDF-"));
    if std::process::Command::new("pdftotext").arg("-v").output().is_ok() {
        let text = crate::medication::pdf_text(&pdf);
        assert!(text.contains("Patient journal"), "{text}");
        assert!(text.contains("2026-11-25") && text.contains("mood 1/5"), "{text}");
        assert!(text.contains("Headache again, I feel awful."), "{text}");
        assert!(text.contains("Symptoms: Headache"), "{text}");
        assert!(!text.contains("2026-12-01"), "outside the range: {text}");
    } else if std::env::var("CI").as_deref() == Ok("true") {
        panic!("poppler-utils is required on CI (scripts/prepare installs it)");
    }
    let (s, e) = get(&t, &a, "/api/v1/journal/export?format=docx").await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));
}

#[tokio::test]
async fn a_dictated_entry_is_kept_as_audio_when_no_transcription_provider_is_configured() {
    let t = TestApp::spawn_with(|c| {
        c.journal.nlp_interval_secs = 1;
        c.journal.max_audio_bytes = 2048;
    })
    .await;
    let (pa, _, token) = patient_account(&t, "Dictator").await;
    let a = bearer(&token);
    let audio: Vec<u8> = (0..1500u32).map(|i| (i * 31 % 251) as u8).collect();
    let data = data_encoding::BASE64.encode(&audio);
    let (s, e) = post(&t, &a, json!({"audio": {"content_type": "audio/webm", "data": data}, "mood": 3})).await;
    assert_eq!(s, 201, "{e}");
    assert_eq!((e["kind"].as_str(), e["text"].as_str()), (Some("audio"), None));
    assert_eq!(e["audio"]["transcript"], "not_configured");
    assert_eq!(e["audio"]["size"], 1500);
    let media = e["audio"]["media"].as_str().unwrap().to_owned();
    // No words: analysed, but not scored (a zero would read as a neutral day).
    let done = analysed(&t, &a, e["id"].as_str().unwrap()).await;
    assert_eq!(
        (done["analysis"]["sentiment_status"].as_str(), &done["analysis"]["sentiment"]),
        (Some("not_scored"), &Value::Null)
    );
    let m = t.get(&format!("/fhir/{media}")).await.json();
    assert_eq!(m["subject"]["reference"], format!("Patient/{pa}"));
    assert_eq!(data_encoding::BASE64.decode(m["content"]["data"].as_str().unwrap().as_bytes()).unwrap(), audio);
    // Too large: refused before anything is stored.
    let big = data_encoding::BASE64.encode(&vec![7u8; 4096]);
    let (s, e) = post(&t, &a, json!({"audio": {"content_type": "audio/webm", "data": big}})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (413, Some("too_large")));
    let (_, list) = get(&t, &a, "/api/v1/journal/entries").await;
    assert_eq!(list["entries"].as_array().unwrap().len(), 1, "{list}");
    // Deleting the entry deletes its dictation.
    let id = ids(&list).pop().unwrap();
    assert_eq!(t.send(a.delete(t.url(&format!("/api/v1/journal/entries/{id}")))).await.status, 204);
    assert_eq!(t.get(&format!("/fhir/{media}")).await.status, 410);
}

#[tokio::test]
async fn a_dictated_entry_is_transcribed_by_the_configured_provider_and_only_the_audio_leaves() {
    let peer = crate::intake_model::Peer::start().await;
    peer.script(json!({"transcription": {"text": "Bad headache since the morning, took my aspirin."}})).await;
    let base = format!("{}/v1", peer.base);
    let t = TestApp::spawn_with(move |c| {
        c.journal.nlp_interval_secs = 1;
        c.journal.transcription.base_url = base;
        c.journal.transcription.model = "peer-whisper".into();
        c.journal.transcription.api_key = "sk-journal-test".into();
    })
    .await;
    let (pa, _, token) = patient_account(&t, "Whisperer").await;
    let a = bearer(&token);
    let audio = b"OggS\x00\x02journal-opus-frames".to_vec();
    let data = data_encoding::BASE64.encode(&audio);
    let (s, e) = post(&t, &a, json!({"audio": {"content_type": "audio/ogg", "data": data}, "tags": ["voice"]})).await;
    assert_eq!(s, 201, "{e}");
    assert_eq!((e["kind"].as_str(), e["audio"]["transcript"].as_str()), (Some("audio"), Some("done")));
    assert_eq!(e["text"], "Bad headache since the morning, took my aspirin.");
    let id = e["id"].as_str().unwrap().to_owned();
    let e = analysed(&t, &a, &id).await;
    assert!(
        e["analysis"]["symptoms"].as_array().unwrap().iter().any(|s| s["code"] == "25064002" && s["negated"] == false),
        "{e}"
    );
    assert_eq!(ids(&get(&t, &a, "/api/v1/journal/entries?q=aspirin").await.1), vec![id.clone()]);

    let sent = peer.requests().await;
    assert_eq!(sent.len(), 1, "{sent:?}");
    assert_eq!(sent[0]["path"], "/v1/audio/transcriptions");
    assert_eq!(sent[0]["headers"]["authorization"], "Bearer sk-journal-test");
    let body = sent[0]["body"].as_str().unwrap();
    assert!(body.contains("name=\"model\"\r\n\r\npeer-whisper\r\n"), "{body}");
    assert!(body.contains("Content-Type: audio/ogg\r\n\r\nOggS"), "{body}");
    assert!(
        !body.contains(&pa) && !body.contains("Whisperer") && !body.contains("voice"),
        "only the audio leaves: {body}"
    );

    // A provider that fails: the entry is kept as audio and says so.
    peer.script(json!({"transcription": {"status": 503}})).await;
    let data = data_encoding::BASE64.encode(b"OggS\x00\x02more-frames");
    let (s, e) = post(&t, &a, json!({"audio": {"content_type": "audio/ogg", "data": data}})).await;
    assert_eq!(s, 201, "{e}");
    assert_eq!((e["audio"]["transcript"].as_str(), e["text"].as_str()), (Some("failed"), None));
    let (_, again) = get(&t, &a, &format!("/api/v1/journal/entries/{}", e["id"].as_str().unwrap())).await;
    assert_eq!(again["audio"]["transcript"], "failed");
}

#[tokio::test]
async fn an_entry_is_analysed_again_when_its_analysis_was_made_by_another_analyser_version() {
    let t = spawn().await;
    let (_, _, token) = patient_account(&t, "Reanalysed").await;
    let a = bearer(&token);
    let (_, e) = post(&t, &a, json!({"text": "Kind of dizzy after taking the pills."})).await;
    let id = e["id"].as_str().unwrap().to_owned();
    let first = analysed(&t, &a, &id).await;
    // An older analyser's result (as after an upgrade): pending again, then redone.
    let row = hearth_store_sql::journal::AnalysisRow {
        entry_id: id.clone(),
        patient: first["patient"].as_str().unwrap().to_owned(),
        entry_version: 1,
        analyser_version: "journal-nlp/0".into(),
        sentiment_status: "scored".into(),
        compound: Some(0.9),
        symptoms: Vec::new(),
        detail: "{}".into(),
        analysed_at: 0,
    };
    assert!(hearth_store_sql::journal::save_analysis(&*t.app.db, &row).await.unwrap());
    let again = analysed(&t, &a, &id).await;
    assert_eq!(again["analysis"]["sentiment"]["compound"].as_f64(), Some(-0.2263), "{again}");
    assert_eq!(again["analysis"]["analyser_version"], first["analysis"]["analyser_version"]);
}

#[tokio::test]
async fn erasing_a_patient_removes_their_journal_rows_with_the_record() {
    let t = spawn().await;
    let (_, _, token) = patient_account(&t, "Erased").await;
    let a = bearer(&token);
    let (_, e) = post(&t, &a, json!({"text": "Headache and a private thought.", "tags": ["private"]})).await;
    let id = e["id"].as_str().unwrap().to_owned();
    analysed(&t, &a, &id).await;
    assert!(hearth_store_sql::journal::entry(&*t.app.db, &id).await.unwrap().is_some());

    let (s, request) = post_path(&t, &a, "/api/v1/me/erasure", json!({"reason": "leaving"})).await;
    assert_eq!(s, 202, "{request}");
    let rid = request["id"].as_str().unwrap();
    let r = t.post(&format!("/api/v1/admin/erasure-requests/{rid}/execute"), &json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // Rows, words and analysis are gone; the job has nothing left to do for them.
    assert_eq!(hearth_store_sql::journal::entry(&*t.app.db, &id).await.unwrap(), None);
    let left = hearth_store_sql::journal::pending(&*t.app.db, "any-version", 100).await.unwrap();
    assert!(left.iter().all(|p| p.id != id), "{left:?}");
}

async fn post_path(t: &TestApp, c: &reqwest::Client, path: &str, body: Value) -> (u16, Value) {
    json_req(t, c, reqwest::Method::POST, path, Some(&body)).await
}
