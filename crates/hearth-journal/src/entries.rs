//! `/api/v1/journal/entries`: write, read, edit (with history), delete, list and search a
//! patient's journal. Every resource is read and written through the caller's guarded store
//! view, so who may do what is the store's access rule, and every touch is on the audit slip.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, RawQuery, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, NaiveDate, SecondsFormat, Utc};
use hearth_store::{Current, Deleted, Guarded, HistoryQuery, HistoryScope, StoreError, Version};
use hearth_store_sql::journal as sql;
use hearth_store_sql::notify::TxDb;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};

use crate::Journal;
use crate::nlp::{ANALYSER_VERSION, JournalMention, JournalSentiment};

pub(crate) const LOINC: &str = "http://loinc.org";
/// LOINC 51855-5 "Patient Note": the document type of every entry.
pub(crate) const PATIENT_NOTE: &str = "51855-5";
pub(crate) const CATEGORY: &str = "urn:hearth:journal";
pub(crate) const TAG_SYSTEM: &str = "urn:hearth:journal-tag";
pub(crate) const MOOD_EXTENSION: &str = "urn:hearth:extension:journal-mood";
/// On the audio attachment: what became of its transcription (`valueCode`).
pub(crate) const TRANSCRIPT_EXTENSION: &str = "urn:hearth:extension:journal-transcript";
/// The longest entry text, in characters.
pub const MAX_TEXT: usize = 20_000;
/// Most tags on one entry.
pub const MAX_TAGS: usize = 10;

pub(crate) fn router() -> axum::Router<Arc<Journal>> {
    axum::Router::new()
        .route("/api/v1/journal/entries", axum::routing::post(create).get(list))
        .route("/api/v1/journal/entries/{id}", axum::routing::get(read).put(update).delete(delete))
        .route("/api/v1/journal/entries/{id}/history", axum::routing::get(history))
}

pub(crate) fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

fn not_found() -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", "no such journal entry")
}

fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Millis, true)
}

/// Dictated audio, sent inline.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JournalAudioIn {
    /// `audio/webm`, `audio/ogg`, `audio/mpeg`, `audio/mp4`, `audio/wav` or `audio/aac`.
    content_type: String,
    /// The bytes, base64.
    data: String,
}

const AUDIO_TYPES: &[&str] = &["audio/webm", "audio/ogg", "audio/mpeg", "audio/mp4", "audio/wav", "audio/aac"];

/// A new entry, or an edit (which replaces text, date, mood and tags; the audio stays).
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub(crate) struct JournalEntryIn {
    /// The Patient id; default the caller's own record (a patient). Ignored on an edit.
    #[serde(default)]
    patient: Option<String>,
    /// What the patient wrote (up to 20,000 characters). An entry has text, audio or both.
    #[serde(default)]
    text: Option<String>,
    /// Dictated audio (new entries only).
    #[serde(default)]
    audio: Option<JournalAudioIn>,
    /// The day the entry is about, `YYYY-MM-DD`; default today (UTC).
    #[serde(default)]
    date: Option<String>,
    /// 1 (very low) to 5 (very good).
    #[serde(default)]
    mood: Option<i64>,
    /// Up to 10 tags: letters, digits, `-` and `_`, 1–40 characters, kept in lower case.
    #[serde(default)]
    tags: Vec<String>,
}

/// The entry's audio.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalAudio {
    content_type: String,
    size: u64,
    /// The FHIR `Media` holding the bytes (`Media/<id>`).
    media: String,
    /// `done` (the transcript is the entry's text), `not_configured` (no transcription
    /// provider: the entry is kept as audio), `failed` (the provider did not answer with a
    /// transcript: kept as audio) or `not_needed` (the patient wrote the text too).
    transcript: String,
}

/// What the NLP job found.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalAnalysis {
    /// `done`, or `pending` (the job has not analysed this version yet).
    status: &'static str,
    analyser_version: Option<String>,
    /// `en`, `hi` or `hi-Latn`.
    language: Option<String>,
    /// `scored` or `not_scored` (Hindi and Hinglish: VADER's lexicon is English).
    sentiment_status: Option<String>,
    sentiment: Option<JournalSentiment>,
    symptoms: Vec<JournalMention>,
    medications: Vec<JournalMention>,
    auto_tags: Vec<String>,
}

/// One journal entry.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalEntry {
    /// The DocumentReference id.
    id: String,
    patient: String,
    /// The DocumentReference versionId (send it as `If-Match` to edit safely).
    version: u64,
    /// `text` or `audio`.
    kind: String,
    text: Option<String>,
    audio: Option<JournalAudio>,
    date: String,
    mood: Option<i64>,
    tags: Vec<String>,
    /// When this version was written.
    updated: String,
    /// Absent in an entry's history.
    #[serde(skip_serializing_if = "Option::is_none")]
    analysis: Option<JournalAnalysis>,
}

/// A page of entries.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalEntryList {
    entries: Vec<JournalEntry>,
    /// The cursor of the next page, if any.
    next: Option<String>,
}

/// One version in an entry's history.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalEntryVersion {
    version: u64,
    /// True for the version that deleted the entry.
    deleted: bool,
    /// The entry as it was (absent for a deletion).
    entry: Option<JournalEntry>,
}

/// An entry's versions, newest first.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct JournalEntryHistory {
    versions: Vec<JournalEntryVersion>,
}

/// An input checked: what goes into the DocumentReference and the rows.
pub(crate) struct Checked {
    pub text: Option<String>,
    pub date: String,
    pub mood: Option<i64>,
    pub tags: Vec<String>,
}

fn check(input: &JournalEntryIn, today: NaiveDate) -> Result<Checked, ApiError> {
    let text = input.text.as_deref().map(str::trim).filter(|t| !t.is_empty()).map(str::to_owned);
    if let Some(t) = &text {
        if t.chars().count() > MAX_TEXT {
            return Err(bad("text_too_long", format!("text is at most {MAX_TEXT} characters")));
        }
        if t.chars().any(|c| c.is_control() && !matches!(c, '\n' | '\r' | '\t')) {
            return Err(bad("invalid_text", "text holds control characters"));
        }
    }
    let date = match input.date.as_deref() {
        None => today,
        Some(d) => NaiveDate::parse_from_str(d, "%Y-%m-%d")
            .ok()
            .filter(|_| d.len() == 10)
            .ok_or_else(|| bad("invalid_date", "date is YYYY-MM-DD"))?,
    };
    if date > today.succ_opt().unwrap_or(today) {
        return Err(bad("invalid_date", "date is not in the future"));
    }
    if let Some(m) = input.mood
        && !(1..=5).contains(&m)
    {
        return Err(bad("invalid_mood", "mood is 1 (very low) to 5 (very good)"));
    }
    if input.tags.len() > MAX_TAGS {
        return Err(bad("invalid_tag", format!("at most {MAX_TAGS} tags")));
    }
    let mut tags: Vec<String> = Vec::new();
    for t in &input.tags {
        let t = t.trim().to_lowercase();
        let ok = (1..=40).contains(&t.chars().count())
            && t.chars().all(|c| c.is_alphanumeric() || c == '-' || c == '_' || c.is_mark());
        if !ok {
            return Err(bad("invalid_tag", "a tag is 1–40 letters, digits, '-' or '_'"));
        }
        if !tags.contains(&t) {
            tags.push(t);
        }
    }
    Ok(Checked { text, date: date.format("%Y-%m-%d").to_string(), mood: input.mood, tags })
}

/// Combining marks (Devanagari vowel signs) count as letters of a tag.
trait Mark {
    fn is_mark(&self) -> bool;
}

impl Mark for char {
    fn is_mark(&self) -> bool {
        ('\u{0900}'..='\u{097F}').contains(self) || ('\u{0300}'..='\u{036F}').contains(self)
    }
}

/// The DocumentReference of an entry.
pub(crate) fn document(
    patient: &str,
    c: &Checked,
    audio: Option<&Value>,
    author: Option<&str>,
    now: DateTime<Utc>,
) -> Value {
    let mut category = vec![json!({"coding": [{"system": CATEGORY, "code": "entry", "display": "Journal entry"}]})];
    for t in &c.tags {
        category.push(json!({"coding": [{"system": TAG_SYSTEM, "code": t}], "text": t}));
    }
    let mut content = Vec::new();
    if let Some(text) = &c.text {
        content.push(json!({"attachment": {
            "contentType": "text/plain; charset=utf-8",
            "language": crate::nlp::language_of(text),
            "data": data_encoding::BASE64.encode(text.as_bytes()),
            "title": "Journal entry",
        }}));
    }
    if let Some(a) = audio {
        content.push(json!({"attachment": a}));
    }
    let mut body = json!({
        "resourceType": "DocumentReference",
        "status": "current",
        "type": {"coding": [{"system": LOINC, "code": PATIENT_NOTE, "display": "Patient Note"}], "text": "Journal entry"},
        "category": category,
        "subject": {"reference": format!("Patient/{patient}")},
        "date": instant(now),
        "description": "Journal entry",
        "content": content,
        "context": {"period": {"start": c.date, "end": c.date}},
    });
    if let Some(o) = body.as_object_mut() {
        if let Some(m) = c.mood {
            o.insert("extension".into(), json!([{"url": MOOD_EXTENSION, "valueInteger": m}]));
        }
        if let Some(a) = author {
            o.insert("author".into(), json!([{"reference": a}]));
        }
    }
    body
}

/// Whether a DocumentReference is a journal entry.
pub(crate) fn is_entry(r: &Value) -> bool {
    r.get("category").and_then(Value::as_array).is_some_and(|cats| {
        cats.iter().any(|c| {
            c.pointer("/coding/0/system").and_then(Value::as_str) == Some(CATEGORY)
                && c.pointer("/coding/0/code").and_then(Value::as_str) == Some("entry")
        })
    })
}

/// The text of an entry's DocumentReference.
pub(crate) fn text_of(r: &Value) -> Option<String> {
    let content = r.get("content")?.as_array()?;
    content.iter().find_map(|c| {
        let a = c.get("attachment")?;
        if !a.get("contentType")?.as_str()?.starts_with("text/plain") {
            return None;
        }
        let bytes = data_encoding::BASE64.decode(a.get("data")?.as_str()?.as_bytes()).ok()?;
        String::from_utf8(bytes).ok()
    })
}

fn audio_of(r: &Value) -> Option<JournalAudio> {
    let content = r.get("content")?.as_array()?;
    let has_text = text_of(r).is_some();
    content.iter().find_map(|c| {
        let a = c.get("attachment")?;
        let content_type = a.get("contentType")?.as_str()?;
        if !content_type.starts_with("audio/") {
            return None;
        }
        let recorded = a.get("extension").and_then(Value::as_array).and_then(|exts| {
            exts.iter()
                .find(|e| e.get("url").and_then(Value::as_str) == Some(TRANSCRIPT_EXTENSION))
                .and_then(|e| e.get("valueCode").and_then(Value::as_str))
        });
        Some(JournalAudio {
            content_type: content_type.to_owned(),
            size: a.get("size").and_then(Value::as_u64).unwrap_or(0),
            media: a.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
            transcript: recorded.unwrap_or(if has_text { "done" } else { "not_configured" }).to_owned(),
        })
    })
}

fn entry_of(v: &Version, analysis: Option<JournalAnalysis>) -> Option<JournalEntry> {
    let r: Value = serde_json::from_str(v.body.as_deref()?).ok()?;
    if !is_entry(&r) {
        return None;
    }
    let tags = r
        .get("category")
        .and_then(Value::as_array)
        .map(|cats| {
            cats.iter()
                .filter(|c| c.pointer("/coding/0/system").and_then(Value::as_str) == Some(TAG_SYSTEM))
                .filter_map(|c| c.pointer("/coding/0/code").and_then(Value::as_str).map(str::to_owned))
                .collect()
        })
        .unwrap_or_default();
    let mood = r.get("extension").and_then(Value::as_array).and_then(|exts| {
        exts.iter()
            .find(|e| e.get("url").and_then(Value::as_str) == Some(MOOD_EXTENSION))
            .and_then(|e| e.get("valueInteger").and_then(Value::as_i64))
    });
    let audio = audio_of(&r);
    Some(JournalEntry {
        id: v.id.clone(),
        patient: r
            .pointer("/subject/reference")
            .and_then(Value::as_str)
            .and_then(|s| s.strip_prefix("Patient/"))
            .unwrap_or_default()
            .to_owned(),
        version: v.version_id,
        kind: if audio.is_some() { "audio" } else { "text" }.to_owned(),
        text: text_of(&r),
        audio,
        date: r.pointer("/context/period/start").and_then(Value::as_str).unwrap_or_default().to_owned(),
        mood,
        tags,
        updated: instant(v.last_updated),
        analysis,
    })
}

pub(crate) fn analysis_out(version: u64, row: Option<&sql::AnalysisRow>) -> JournalAnalysis {
    let current =
        row.filter(|a| u64::try_from(a.entry_version).ok() == Some(version) && a.analyser_version == ANALYSER_VERSION);
    let detail: Option<crate::nlp::Analysis> = current.and_then(|a| serde_json::from_str(&a.detail).ok());
    match (current, detail) {
        (Some(a), Some(d)) => JournalAnalysis {
            status: "done",
            analyser_version: Some(a.analyser_version.clone()),
            language: Some(d.language),
            sentiment_status: Some(a.sentiment_status.clone()),
            sentiment: d.sentiment,
            symptoms: d.symptoms,
            medications: d.medications,
            auto_tags: d.auto_tags,
        },
        _ => JournalAnalysis {
            status: "pending",
            analyser_version: None,
            language: None,
            sentiment_status: None,
            sentiment: None,
            symptoms: Vec::new(),
            medications: Vec::new(),
            auto_tags: Vec::new(),
        },
    }
}

/// The entry `id` as the caller may see it: `404` when unknown, not a journal entry or out of
/// reach; `410` when deleted.
pub(crate) async fn current_entry(store: &Guarded, id: &str) -> Result<(Version, Value), ApiError> {
    if !hearth_workflow::fhir::valid_id(id) {
        return Err(not_found());
    }
    match store.read("DocumentReference", id).await {
        Ok(Current::Found(v)) => {
            let r: Value = v.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
            if !is_entry(&r) {
                return Err(not_found());
            }
            Ok((v, r))
        }
        Ok(Current::Deleted(_)) => Err(ApiError::new(StatusCode::GONE, "gone", "this journal entry was deleted")),
        Ok(Current::NotFound) | Err(StoreError::Forbidden(_)) => Err(not_found()),
        Err(e) => Err(e.into()),
    }
}

fn author_of(caller: &Caller) -> Option<&str> {
    caller
        .account
        .fhir_user
        .as_deref()
        .filter(|u| ["Patient/", "Practitioner/", "RelatedPerson/"].iter().any(|p| u.starts_with(p)))
}

fn if_match(headers: &HeaderMap) -> Result<Option<u64>, ApiError> {
    let Some(v) = headers.get("if-match") else { return Ok(None) };
    let s = v.to_str().unwrap_or_default().trim();
    let s = s.strip_prefix("W/").unwrap_or(s).trim_matches('"');
    s.parse().map(Some).map_err(|_| bad("invalid_if_match", "If-Match is a version, e.g. W/\"2\""))
}

fn version_conflict(e: StoreError) -> ApiError {
    match e {
        StoreError::VersionConflict { .. } => ApiError::new(
            StatusCode::PRECONDITION_FAILED,
            "version_conflict",
            "the entry was changed since that version: read it again",
        ),
        other => other.into(),
    }
}

#[utoipa::path(post, path = "/api/v1/journal/entries", tag = "journal",
    request_body(content = JournalEntryIn, description = "Text, dictated audio (base64) or both, with the date it is about, a mood and tags. Dictation without text is transcribed when a transcription provider is configured (the audio, its type and the model name leave the server; nothing else), else kept as audio",
        example = json!({"text": "Slept badly, headache in the morning. Took my paracetamol.", "date": "2026-12-07", "mood": 2, "tags": ["sleep"]})),
    responses(
        (status = 201, description = "Written; the NLP analysis follows (status `pending` until the job has run)", body = JournalEntry),
        (status = 400, description = "Nothing written (stable code: invalid_body, patient_required, empty_entry, text_too_long, invalid_text, invalid_date, invalid_mood, invalid_tag, invalid_audio)", body = ErrorEnvelope,
         example = json!({"error": {"code": "invalid_mood", "message": "mood is 1 (very low) to 5 (very good)"}})),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 403, description = "The caller may read but not write this patient's journal (forbidden)", body = ErrorEnvelope),
        (status = 404, description = "Unknown patient, or outside the caller's reach (not_found)", body = ErrorEnvelope),
        (status = 413, description = "The audio is larger than `max_audio_bytes` (too_large)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn create(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let input: JournalEntryIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let now = app.clock.now();
    let mut checked = check(&input, now.date_naive())?;
    let audio = match &input.audio {
        None => None,
        Some(a) => {
            let content_type = a.content_type.trim().to_ascii_lowercase();
            if !AUDIO_TYPES.contains(&content_type.as_str()) {
                return Err(bad("invalid_audio", format!("audio content_type is one of {}", AUDIO_TYPES.join(", "))));
            }
            let bytes = data_encoding::BASE64
                .decode(a.data.trim().as_bytes())
                .map_err(|_| bad("invalid_audio", "audio data is base64"))?;
            if bytes.is_empty() {
                return Err(bad("invalid_audio", "the audio is empty"));
            }
            if bytes.len() as u64 > app.config.max_audio_bytes {
                return Err(ApiError::new(
                    StatusCode::PAYLOAD_TOO_LARGE,
                    "too_large",
                    format!("audio is at most {} bytes", app.config.max_audio_bytes),
                ));
            }
            Some((content_type, bytes))
        }
    };
    if checked.text.is_none() && audio.is_none() {
        return Err(bad("empty_entry", "an entry has text, audio or both"));
    }
    let store = app.store_for(&caller);
    let (patient, _) = hearth_workflow::fhir::requested_patient(&store, &caller, input.patient.as_deref()).await?;
    // Dictation without text: transcribed when a provider is configured (before the write, so
    // the entry is stored once, with its words).
    let transcript = match (&audio, &app.transcriber) {
        (None, _) => None,
        (Some(_), _) if checked.text.is_some() => Some("not_needed"),
        (Some(_), None) => Some("not_configured"),
        (Some((content_type, bytes)), Some(t)) => match t.transcribe(bytes, content_type).await {
            Some(words) => {
                checked.text = Some(words);
                Some("done")
            }
            None => Some("failed"),
        },
    };
    let id = uuid::Uuid::now_v7().to_string();
    let mut media = None;
    let audio_attachment = audio.as_ref().map(|(content_type, bytes)| {
        let media_id = uuid::Uuid::now_v7().to_string();
        let m = json!({
            "resourceType": "Media",
            "status": "completed",
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "audio", "display": "Audio"}]},
            "subject": {"reference": format!("Patient/{patient}")},
            "createdDateTime": instant(now),
            "content": {"contentType": content_type, "data": data_encoding::BASE64.encode(bytes),
                        "size": bytes.len(), "title": "Journal dictation"},
        });
        media = Some((media_id.clone(), m));
        json!({"contentType": content_type, "url": format!("Media/{media_id}"), "size": bytes.len(), "title": "Journal dictation",
               "extension": [{"url": TRANSCRIPT_EXTENSION, "valueCode": transcript.unwrap_or("not_configured")}]})
    });
    let doc = document(&patient, &checked, audio_attachment.as_ref(), author_of(&caller), now);
    hearth_workflow::fhir::validate(&app, "DocumentReference", &doc)
        .map_err(|e| ApiError::internal(format!("a journal DocumentReference does not validate: {}", e.describe())))?;
    let mut tx = store.begin().await?;
    if let Some((media_id, m)) = media {
        hearth_workflow::fhir::validate(&app, "Media", &m)
            .map_err(|e| ApiError::internal(format!("a journal Media does not validate: {}", e.describe())))?;
        hearth_store::interactions::create(&mut tx, hearth_workflow::fhir::write_of(&app, "Media", media_id, m), now)
            .await?;
    }
    let version = hearth_store::interactions::create(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "DocumentReference", id.clone(), doc),
        now,
    )
    .await?;
    let row = sql::EntryRow {
        id: id.clone(),
        patient: patient.clone(),
        version: i64::try_from(version.version_id).unwrap_or(i64::MAX),
        kind: if audio.is_some() { "audio" } else { "text" }.to_owned(),
        entry_date: checked.date.clone(),
        mood: checked.mood,
        tags: checked.tags.clone(),
        created_at: now.timestamp_millis(),
        updated_at: now.timestamp_millis(),
    };
    let db = TxDb::from_guarded(tx)?;
    sql::save_entry(&db, &row, checked.text.as_deref().unwrap_or_default()).await?;
    db.commit().await?;
    tracing::info!(entry = %id, "journal entry written");
    app.wake.notify_one();
    let entry = entry_of(&version, Some(analysis_out(version.version_id, None)))
        .ok_or_else(|| ApiError::internal("a stored journal entry does not read back"))?;
    Ok((StatusCode::CREATED, Json(entry)).into_response())
}

#[utoipa::path(get, path = "/api/v1/journal/entries/{id}", tag = "journal",
    params(("id" = String, Path, description = "The entry (DocumentReference) id")),
    responses(
        (status = 200, description = "The entry with its analysis", body = JournalEntry),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 404, description = "No such entry within the caller's reach (not_found)", body = ErrorEnvelope),
        (status = 410, description = "The entry was deleted (gone)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn read(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<JournalEntry>, ApiError> {
    let store = app.store_for(&caller);
    let (v, _) = current_entry(&store, &id).await?;
    let row = sql::entry(&*app.db, &id).await?;
    let analysis = analysis_out(v.version_id, row.as_ref().and_then(|r| r.analysis.as_ref()));
    entry_of(&v, Some(analysis)).map(Json).ok_or_else(not_found)
}

#[utoipa::path(put, path = "/api/v1/journal/entries/{id}", tag = "journal",
    params(("id" = String, Path, description = "The entry (DocumentReference) id"),
           ("If-Match" = Option<String>, Header, description = "The version edited (`W/\"2\"`): refused if the entry changed since")),
    request_body(content = JournalEntryIn, description = "The new text, date, mood and tags (all replaced; the audio stays; `patient` and `audio` are ignored)"),
    responses(
        (status = 200, description = "A new version (the earlier ones stay in the history); its analysis is pending again", body = JournalEntry),
        (status = 400, description = "Nothing changed (stable code: invalid_body, empty_entry, text_too_long, invalid_text, invalid_date, invalid_mood, invalid_tag, invalid_if_match)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 403, description = "The caller may read but not change this journal (forbidden)", body = ErrorEnvelope),
        (status = 404, description = "No such entry within the caller's reach (not_found)", body = ErrorEnvelope),
        (status = 410, description = "The entry was deleted (gone)", body = ErrorEnvelope),
        (status = 412, description = "The entry changed since the If-Match version (version_conflict)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn update(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> Result<Json<JournalEntry>, ApiError> {
    let expected = if_match(&headers)?;
    let input: JournalEntryIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let now = app.clock.now();
    let checked = check(&input, now.date_naive())?;
    let store = app.store_for(&caller);
    let (current, r) = current_entry(&store, &id).await?;
    let patient = r
        .pointer("/subject/reference")
        .and_then(Value::as_str)
        .and_then(|s| s.strip_prefix("Patient/"))
        .ok_or_else(|| ApiError::internal("a journal entry without a patient"))?
        .to_owned();
    let audio = r
        .get("content")
        .and_then(Value::as_array)
        .and_then(|c| {
            c.iter().find(|c| {
                c.pointer("/attachment/contentType").and_then(Value::as_str).is_some_and(|t| t.starts_with("audio/"))
            })
        })
        .and_then(|c| c.get("attachment"))
        .cloned();
    if checked.text.is_none() && audio.is_none() {
        return Err(bad("empty_entry", "an entry has text, audio or both"));
    }
    let doc = document(&patient, &checked, audio.as_ref(), author_of(&caller), now);
    hearth_workflow::fhir::validate(&app, "DocumentReference", &doc)
        .map_err(|e| ApiError::internal(format!("a journal DocumentReference does not validate: {}", e.describe())))?;
    let mut tx = store.begin().await?;
    let written = hearth_store::interactions::update(
        &mut tx,
        hearth_workflow::fhir::write_of(&app, "DocumentReference", id.clone(), doc),
        Some(expected.unwrap_or(current.version_id)),
        now,
    )
    .await
    .map_err(version_conflict)?;
    let created_at = sql::entry(&*app.db, &id).await?.map_or(now.timestamp_millis(), |l| l.entry.created_at);
    let row = sql::EntryRow {
        id: id.clone(),
        patient,
        version: i64::try_from(written.version.version_id).unwrap_or(i64::MAX),
        kind: if audio.is_some() { "audio" } else { "text" }.to_owned(),
        entry_date: checked.date.clone(),
        mood: checked.mood,
        tags: checked.tags.clone(),
        created_at,
        updated_at: now.timestamp_millis(),
    };
    let db = TxDb::from_guarded(tx)?;
    sql::save_entry(&db, &row, checked.text.as_deref().unwrap_or_default()).await?;
    db.commit().await?;
    tracing::info!(entry = %id, version = written.version.version_id, "journal entry edited");
    app.wake.notify_one();
    entry_of(&written.version, Some(analysis_out(written.version.version_id, None)))
        .map(Json)
        .ok_or_else(|| ApiError::internal("a stored journal entry does not read back"))
}

#[utoipa::path(delete, path = "/api/v1/journal/entries/{id}", tag = "journal",
    params(("id" = String, Path, description = "The entry (DocumentReference) id")),
    responses(
        (status = 204, description = "Deleted (the DocumentReference's history stays, as for every FHIR delete; its search words and analysis go)"),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 403, description = "The caller may read but not change this journal (forbidden)", body = ErrorEnvelope),
        (status = 404, description = "No such entry within the caller's reach (not_found)", body = ErrorEnvelope),
        (status = 410, description = "Already deleted (gone)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn delete(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = app.store_for(&caller);
    let (_, r) = current_entry(&store, &id).await?;
    let now = app.clock.now();
    let mut tx = store.begin().await?;
    match hearth_store::interactions::delete(&mut tx, "DocumentReference", &id, None, now).await? {
        Deleted::Deleted(_) => {}
        Deleted::AlreadyDeleted => {
            return Err(ApiError::new(StatusCode::GONE, "gone", "this journal entry was deleted"));
        }
        Deleted::NotFound => return Err(not_found()),
    }
    // The dictation goes with its entry.
    if let Some(media) = audio_of(&r).and_then(|a| a.media.strip_prefix("Media/").map(str::to_owned)) {
        hearth_store::interactions::delete(&mut tx, "Media", &media, None, now).await?;
    }
    let db = TxDb::from_guarded(tx)?;
    sql::remove(&db, &id).await?;
    db.commit().await?;
    tracing::info!(entry = %id, "journal entry deleted");
    Ok(StatusCode::NO_CONTENT)
}

#[utoipa::path(get, path = "/api/v1/journal/entries/{id}/history", tag = "journal",
    params(("id" = String, Path, description = "The entry (DocumentReference) id")),
    responses(
        (status = 200, description = "Every version of the entry, newest first (at most 100); a deleted entry's history only for callers who reach every record", body = JournalEntryHistory),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 404, description = "No such entry within the caller's reach (not_found)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn history(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<JournalEntryHistory>, ApiError> {
    if !hearth_workflow::fhir::valid_id(&id) {
        return Err(not_found());
    }
    let store = app.store_for(&caller);
    // The store answers only what the caller may reach (nothing of another's record; for a
    // patient, nothing once the entry is deleted, as it is out of their compartment's index).
    let page = store
        .history(&HistoryQuery {
            scope: HistoryScope::Instance { resource_type: "DocumentReference".into(), id: id.clone() },
            since: None,
            before: None,
            count: 100,
        })
        .await
        .map_err(|e| match e {
            StoreError::Forbidden(_) => not_found(),
            other => other.into(),
        })?;
    let journal = page
        .entries
        .iter()
        .any(|v| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()).is_some_and(|r| is_entry(&r)));
    if !journal {
        return Err(not_found());
    }
    let versions = page
        .entries
        .iter()
        .map(|v| JournalEntryVersion { version: v.version_id, deleted: v.body.is_none(), entry: entry_of(v, None) })
        .collect();
    Ok(Json(JournalEntryHistory { versions }))
}

/// The list's query, parsed.
pub(crate) struct ListQuery {
    pub patient: Option<String>,
    pub filter: sql::Filter,
    pub count: i64,
}

fn number<T: std::str::FromStr>(k: &str, v: &str) -> Result<T, ApiError> {
    v.parse().map_err(|_| bad("invalid_query", format!("{k} is a number")))
}

fn day(k: &str, v: &str) -> Result<String, ApiError> {
    NaiveDate::parse_from_str(v, "%Y-%m-%d")
        .ok()
        .filter(|_| v.len() == 10)
        .map(|d| d.format("%Y-%m-%d").to_string())
        .ok_or_else(|| bad("invalid_query", format!("{k} is YYYY-MM-DD")))
}

pub(crate) fn parse_list(raw: Option<&str>) -> Result<ListQuery, ApiError> {
    let mut q = ListQuery { patient: None, filter: sql::Filter::default(), count: 20 };
    for (k, v) in hearth_workflow::fhir::pairs(raw) {
        match k.as_str() {
            "patient" => q.patient = Some(v),
            "q" => {
                let words: Vec<String> = v.split_whitespace().map(str::to_owned).collect();
                if words.is_empty() || words.len() > 8 || words.iter().any(|w| w.chars().count() > 100) {
                    return Err(bad("invalid_query", "q is one to eight words"));
                }
                q.filter.words = words;
            }
            "tag" => q.filter.tag = Some(v.trim().to_lowercase()),
            "mood_min" => q.filter.mood_min = Some(number(&k, &v)?),
            "mood_max" => q.filter.mood_max = Some(number(&k, &v)?),
            "sentiment_min" | "sentiment_max" => {
                let s: f64 = number(&k, &v)?;
                if !(-1.0..=1.0).contains(&s) {
                    return Err(bad("invalid_query", format!("{k} is -1 to 1")));
                }
                if k == "sentiment_min" {
                    q.filter.sentiment_min = Some(s);
                } else {
                    q.filter.sentiment_max = Some(s);
                }
            }
            "symptom" => {
                if v.is_empty() || !v.chars().all(|c| c.is_ascii_digit()) {
                    return Err(bad("invalid_query", "symptom is a SNOMED CT code"));
                }
                q.filter.symptom = Some(v);
            }
            "from" => q.filter.from = Some(day(&k, &v)?),
            "to" => q.filter.to = Some(day(&k, &v)?),
            "_count" => {
                q.count = number::<i64>(&k, &v)
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| bad("invalid_query", "_count is a number from 1 to 100"))?;
            }
            "cursor" => {
                let decoded = data_encoding::BASE64URL_NOPAD
                    .decode(v.as_bytes())
                    .ok()
                    .and_then(|b| String::from_utf8(b).ok())
                    .and_then(|s| s.split_once('|').map(|(d, i)| (d.to_owned(), i.to_owned())))
                    .ok_or_else(|| bad("invalid_query", "cursor is not one this server gave"))?;
                q.filter.before = Some(decoded);
            }
            other => {
                return Err(bad(
                    "invalid_query",
                    format!(
                        "unknown parameter '{other}' (patient, q, tag, mood_min, mood_max, sentiment_min, sentiment_max, symptom, from, to, _count, cursor)"
                    ),
                ));
            }
        }
    }
    Ok(q)
}

#[utoipa::path(get, path = "/api/v1/journal/entries", tag = "journal",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id; default the caller's own record"),
        ("q" = Option<String>, Query, description = "Words that must all occur in the entry (full text; English and Hindi as written)"),
        ("tag" = Option<String>, Query, description = "One of the patient's tags"),
        ("mood_min" = Option<i64>, Query, description = "Mood at least (1–5)"),
        ("mood_max" = Option<i64>, Query, description = "Mood at most (1–5)"),
        ("sentiment_min" = Option<f64>, Query, description = "VADER compound at least (−1 to 1; entries not scored never match)"),
        ("sentiment_max" = Option<f64>, Query, description = "VADER compound at most"),
        ("symptom" = Option<String>, Query, description = "A SNOMED CT code of a symptom the entry reports (negated mentions do not count)"),
        ("from" = Option<String>, Query, description = "Entries about this day or later (YYYY-MM-DD)"),
        ("to" = Option<String>, Query, description = "Entries about this day or earlier (YYYY-MM-DD)"),
        ("_count" = Option<i64>, Query, description = "Page size, 1–100 (default 20)"),
        ("cursor" = Option<String>, Query, description = "The `next` of the previous page"),
    ),
    responses(
        (status = 200, description = "The patient's entries, newest first (by the day they are about)", body = JournalEntryList),
        (status = 400, description = "A bad parameter (invalid_query) or no patient named (patient_required)", body = ErrorEnvelope),
        (status = 401, description = "No or an invalid access token (unauthenticated)", body = ErrorEnvelope),
        (status = 404, description = "Unknown patient, or outside the caller's reach (not_found)", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn list(
    State(app): State<Arc<Journal>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<Json<JournalEntryList>, ApiError> {
    let mut q = parse_list(raw.as_deref())?;
    let store = app.store_for(&caller);
    let (patient, _) = hearth_workflow::fhir::requested_patient(&store, &caller, q.patient.as_deref()).await?;
    q.filter.patient = patient;
    let rows = sql::list(&*app.db, &q.filter, q.count + 1).await?;
    let more = rows.len() as i64 > q.count;
    let mut entries = Vec::new();
    let mut last = None;
    for row in rows.iter().take(usize::try_from(q.count).unwrap_or(20)) {
        last = Some((row.entry.entry_date.clone(), row.entry.id.clone()));
        // Each entry is read through the caller's view: the store decides, the slip records it.
        match store.read("DocumentReference", &row.entry.id).await {
            Ok(Current::Found(v)) => {
                let analysis = analysis_out(v.version_id, row.analysis.as_ref());
                if let Some(e) = entry_of(&v, Some(analysis)) {
                    entries.push(e);
                }
            }
            Ok(_) | Err(StoreError::Forbidden(_)) => {}
            Err(e) => return Err(e.into()),
        }
    }
    let next = match (more, last) {
        (true, Some((d, i))) => Some(data_encoding::BASE64URL_NOPAD.encode(format!("{d}|{i}").as_bytes())),
        _ => None,
    };
    Ok(Json(JournalEntryList { entries, next }))
}
