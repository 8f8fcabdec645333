//! The intake's HTTP routes (all on patient data: mounted `audited`).

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use hearth_auth::Role;
use hearth_store::Current;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::interview::{Input, Question};
use crate::service::{Intakes, Queue, SafetyAlert, SessionView, Start, api, is_staff};
use crate::session::Status;

pub(crate) fn router() -> axum::Router<Arc<Intakes>> {
    axum::Router::new()
        .route("/api/v1/intake/sessions", axum::routing::post(start_walk_in))
        .route("/api/v1/intake/sessions/{id}/start", axum::routing::post(start_for_appointment))
        .route("/api/v1/intake/sessions/{id}", axum::routing::get(get_one))
        .route("/api/v1/intake/sessions/{id}/messages", axum::routing::post(message))
        .route("/api/v1/intake/sessions/{id}/voice", axum::routing::post(voice))
        .route("/api/v1/intake/sessions/{id}/summary", axum::routing::get(summary))
        .route("/api/v1/intake/sessions/{id}/review", axum::routing::post(review))
        .route("/api/v1/intake/queue", axum::routing::get(queue))
        .route("/api/v1/intake/queue/live", axum::routing::get(queue_live))
        .route("/api/v1/intake/ws/{id}", axum::routing::get(crate::ws::socket))
}

fn body<T: serde::de::DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(bytes).map_err(|e| api(StatusCode::BAD_REQUEST, "invalid_body", e.to_string()))
}

fn staff_only(caller: &Caller) -> Result<(), ApiError> {
    if is_staff(caller) {
        Ok(())
    } else {
        Err(api(StatusCode::FORBIDDEN, "forbidden", "this is for clinicians and administrators"))
    }
}

/// How to start an interview.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct StartBody {
    /// Walk-in only: the patient's id (a patient may leave it out).
    patient: Option<String>,
    /// The patient's language: `en`, `hi` or `hi-Latn`.
    #[schema(example = "hi")]
    language: String,
    /// `true`: the patient agreed to the interview (recorded as a FHIR Consent first).
    consent: Option<bool>,
    /// Question packs by name (the built-in ones, or configured); the general history when absent.
    packs: Option<Vec<String>>,
}

const SESSION_EXAMPLE: &str = r#"{"id": "0193a1b2-…", "patient": "0193a0…", "appointment": null, "language": "hi", "packs": ["general-history"], "status": "active", "urgency": "routine", "red_flags": [], "progress": {"answered": 0, "total": 7, "percent": 0}, "question": {"pack": "general-history", "link_id": "complaint", "text": "आपकी मुख्य तकलीफ़ क्या है?", "input": "text", "required": true, "repeats": false, "options": [], "progress": {"answered": 0, "total": 7, "percent": 0}}, "alert": null, "done": false, "consent": "Consent/0193a1b1-…", "composition": null, "reviewed_by": null, "reviewed_at": null, "created_at": "2026-11-29T10:00:00.000Z", "updated_at": "2026-11-29T10:00:00.000Z", "version": 1}"#;

fn session_example() -> Value {
    serde_json::from_str(SESSION_EXAMPLE).unwrap_or(Value::Null)
}

#[utoipa::path(post, path = "/api/v1/intake/sessions", tag = "intake",
    request_body(content = StartBody, description = "A walk-in interview: `patient` (staff name one; a patient may leave it out), `language` (`en`, `hi`, `hi-Latn`), `consent: true` (recorded as a FHIR Consent first), optional `packs` (built-in names or `Questionnaire/<id>`; default general-history, else a free-text question)",
        example = json!({"patient": "0193a0…", "language": "hi", "consent": true, "packs": ["ortho-low-back"]})),
    responses(
        (status = 201, description = "Started: the session with its first question", body = SessionView, example = json!(session_example())),
        (status = 400, description = "Unknown language or pack, malformed body (`invalid_packs`, `unknown_pack`, `invalid_questionnaire`)", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_language", "message": "language must be en, hi or hi-Latn"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "A patient starting for someone else, or a caregiver", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "patients start their own intake"}})),
        (status = 404, description = "No such patient the caller reaches", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 422, description = "No consent, or a Questionnaire the interview cannot run", body = ErrorEnvelope, example = json!({"error": {"code": "consent_required", "message": "the patient must consent to the intake's purpose first"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn start_walk_in(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: StartBody = body(&bytes)?;
    let patient = match caller.role {
        Role::Patient => {
            let own = caller
                .own_patient()
                .ok_or_else(|| api(StatusCode::FORBIDDEN, "forbidden", "this account has no patient record"))?;
            if b.patient.as_deref().is_some_and(|p| p != own) {
                return Err(api(StatusCode::FORBIDDEN, "forbidden", "patients start their own intake"));
            }
            own.to_owned()
        }
        Role::Clinician | Role::Admin => match b.patient {
            Some(p) if hearth_workflow::fhir::valid_id(&p) => p,
            Some(_) => return Err(api(StatusCode::BAD_REQUEST, "invalid_body", "`patient` must be a resource id")),
            None => return Err(api(StatusCode::BAD_REQUEST, "invalid_body", "name the `patient`")),
        },
        Role::Caregiver => {
            return Err(api(StatusCode::FORBIDDEN, "forbidden", "the patient or the clinic starts an intake"));
        }
    };
    let start = Start {
        patient,
        appointment: None,
        practitioner: None,
        language: b.language,
        consent: b.consent,
        packs: b.packs,
    };
    let s = app.start(&caller, start).await?;
    Ok((StatusCode::CREATED, Json(app.view(&s)?)).into_response())
}

#[utoipa::path(post, path = "/api/v1/intake/sessions/{id}/start", tag = "intake",
    params(("id" = String, Path, description = "The Appointment the interview prepares")),
    request_body(content = StartBody, description = "`language` (`en`, `hi`, `hi-Latn`), `consent: true`, optional `packs`",
        example = json!({"language": "hi-Latn", "consent": true})),
    responses(
        (status = 201, description = "Started for the appointment's patient", body = SessionView, example = json!(session_example())),
        (status = 400, description = "Unknown language or pack, malformed body (`invalid_packs`, `unknown_pack`, `invalid_questionnaire`)", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_language", "message": "language must be en, hi or hi-Latn"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "A caregiver", body = ErrorEnvelope),
        (status = 404, description = "No such appointment the caller reaches", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such appointment"}})),
        (status = 409, description = "The appointment is cancelled or over", body = ErrorEnvelope, example = json!({"error": {"code": "appointment_closed", "message": "the appointment is cancelled"}})),
        (status = 422, description = "No consent", body = ErrorEnvelope, example = json!({"error": {"code": "consent_required", "message": "the patient must consent to the intake's purpose first"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn start_for_appointment(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
    Path(appointment): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let b: StartBody = body(&bytes)?;
    if b.patient.is_some() {
        return Err(api(StatusCode::BAD_REQUEST, "invalid_body", "the appointment names the patient"));
    }
    if caller.role == Role::Caregiver {
        return Err(api(StatusCode::FORBIDDEN, "forbidden", "the patient or the clinic starts an intake"));
    }
    let missing = || api(StatusCode::NOT_FOUND, "not_found", "no such appointment");
    if !hearth_workflow::fhir::valid_id(&appointment) {
        return Err(missing());
    }
    let Current::Found(v) = app.store_for(&caller).read("Appointment", &appointment).await? else {
        return Err(missing());
    };
    let a: Value = v.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).ok_or_else(missing)?;
    if let Some(status @ ("cancelled" | "noshow" | "entered-in-error" | "fulfilled")) =
        a.get("status").and_then(Value::as_str)
    {
        return Err(api(StatusCode::CONFLICT, "appointment_closed", format!("the appointment is {status}")));
    }
    let actor = |prefix: &str| {
        a.get("participant").and_then(Value::as_array).and_then(|ps| {
            ps.iter().find_map(|p| {
                p.pointer("/actor/reference")
                    .and_then(Value::as_str)
                    .and_then(|r| r.strip_prefix(prefix))
                    .map(str::to_owned)
            })
        })
    };
    let patient = actor("Patient/").ok_or_else(missing)?;
    if caller.role == Role::Patient && caller.own_patient() != Some(patient.as_str()) {
        return Err(missing());
    }
    let start = Start {
        patient,
        appointment: Some(appointment),
        practitioner: actor("Practitioner/"),
        language: b.language,
        consent: b.consent,
        packs: b.packs,
    };
    let s = app.start(&caller, start).await?;
    Ok((StatusCode::CREATED, Json(app.view(&s)?)).into_response())
}

#[utoipa::path(get, path = "/api/v1/intake/sessions/{id}", tag = "intake",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The session as it stands: the open question (resume here), or the alert, or done", body = SessionView, example = json!(session_example())),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such session of a patient the caller reaches (another patient's session answers the same)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such intake session"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn get_one(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    let s = app.load(&caller, &id).await?;
    Ok(Json(app.view(&s)?))
}

/// One turn of the patient: exactly one of `text` and `answer`.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
struct MessageBody {
    /// Free text in the patient's words (any turn).
    #[schema(example = "kamar me dard hai")]
    text: Option<String>,
    /// An answer to the open question: an option code or number, a boolean, a number, a date or
    /// text; an array for a repeating question.
    answer: Option<Value>,
}

#[utoipa::path(post, path = "/api/v1/intake/sessions/{id}/messages", tag = "intake",
    params(("id" = String, Path, description = "The session id")),
    request_body(content = MessageBody, description = "Exactly one of `text` (free text, accepted at every turn: matched to an option by number, code, display in any language or yes/no words, else kept as the patient's words) or `answer` (an option code or number, a boolean, a number, a date, text; an array for a repeating question)",
        example = json!({"text": "saddle area sunn ho gaya hai aur pishab nahi ho raha"})),
    responses(
        (status = 200, description = "The session after the turn: the next question (with `hint` when free text did not answer a required question), or the safety `alert` of an emergency (the interview stops), or `done`", body = SessionView,
         example = json!({"id": "0193a1b2-…", "status": "emergency", "urgency": "emergency", "red_flags": ["cauda_equina"], "question": null, "alert": {"type": "alert", "urgency": "emergency", "message": "आपके जवाबों से लगता है … अभी 112 पर कॉल करें (एम्बुलेंस के लिए 108) …", "numbers": {"emergency": "112", "ambulance": "108"}, "red_flags": ["cauda_equina"]}, "done": true, "hint": null})),
        (status = 400, description = "Neither or both of text and answer, empty or too long text", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_message", "message": "send either text or answer"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such session of a patient the caller reaches", body = ErrorEnvelope),
        (status = 409, description = "The session is over (emergency or finished), or changed meanwhile (`session_changed`)", body = ErrorEnvelope, example = json!({"error": {"code": "session_finished", "message": "this session is over (emergency)"}})),
        (status = 422, description = "A structured answer that fits no option or type", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_option", "message": "not an option of this question; answer one of: back, neck, knee"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn message(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    bytes: axum::body::Bytes,
) -> Result<Json<Value>, ApiError> {
    let b: MessageBody = body(&bytes)?;
    let input = match (b.text, b.answer) {
        (Some(t), None) => Input::Text(t),
        (None, Some(a)) if !a.is_null() => Input::Answer(a),
        _ => return Err(api(StatusCode::BAD_REQUEST, "invalid_message", "send either text or answer")),
    };
    let answer = app.turn(&caller, &id, input).await?;
    let mut view = answer.view;
    if let Some(o) = view.as_object_mut() {
        o.insert("hint".into(), json!(answer.asked_again));
    }
    Ok(Json(view))
}

/// The session fields a voice answer reports (as in the session view).
#[derive(Debug, Deserialize)]
struct ViewPart {
    id: String,
    status: Status,
    urgency: String,
    red_flags: Vec<String>,
    question: Option<Question>,
    alert: Option<SafetyAlert>,
    done: bool,
    version: i64,
}

/// What a voice answer did, and the session after it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct VoiceAnswer {
    /// `transcribed`: the transcript was the turn's free text (the same path as typed text);
    /// `kept`: stored as a FHIR `Media` for the clinician and the interview moved on.
    pub handled: String,
    /// The transcription service's text (`transcribed` only).
    pub transcript: Option<String>,
    /// `Media/<id>` of the stored audio (`kept` only).
    pub media: Option<String>,
    /// The session id.
    pub id: String,
    pub status: Status,
    /// `emergency`, `urgent`, `soon`, `routine` or `self_care`.
    pub urgency: String,
    pub red_flags: Vec<String>,
    /// The next question (none once the interview is over).
    pub question: Option<Question>,
    /// The safety alert of an emergency (the interview stops).
    pub alert: Option<SafetyAlert>,
    pub done: bool,
    /// Said again when a transcript did not answer a required question.
    pub hint: Option<String>,
    pub version: i64,
}

#[utoipa::path(post, path = "/api/v1/intake/sessions/{id}/voice", tag = "intake",
    params(("id" = String, Path, description = "The session id")),
    request_body(content = Vec<u8>, content_type = "audio/webm",
        description = "The voice answer to the open question: the audio bytes with their content type (`audio/webm`, `audio/ogg`, `audio/mpeg`, `audio/mp4`, `audio/wav`, `audio/x-wav`, `audio/flac`; parameters such as `;codecs=opus` allowed), at most `intake.voice_max_bytes` (5 MiB by default). With a transcription provider the transcript is taken as the turn's free text; without one (or when it fails) the audio is stored as a FHIR `Media` for the clinician and the interview moves on."),
    responses(
        (status = 200, description = "The voice answer was taken", body = VoiceAnswer),
        (status = 400, description = "An empty body", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_voice", "message": "the voice answer is empty"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 404, description = "No such session of a patient the caller reaches", body = ErrorEnvelope),
        (status = 409, description = "The session is over, or changed meanwhile", body = ErrorEnvelope),
        (status = 413, description = "Larger than `intake.voice_max_bytes`", body = ErrorEnvelope, example = json!({"error": {"code": "voice_too_large", "message": "a voice answer may have at most 5242880 bytes"}})),
        (status = 415, description = "Not one of the audio content types", body = ErrorEnvelope, example = json!({"error": {"code": "unsupported_audio", "message": "send the audio with one of the content types audio/webm, …"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn voice(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Result<Json<VoiceAnswer>, ApiError> {
    let content_type = headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()).unwrap_or_default();
    // Read up to one byte past the limit ourselves (the default body limit of the byte
    // extractors is smaller than a voice answer may be); `voice` refuses what is over.
    let limit = app.config.voice_max_bytes;
    let bytes = axum::body::to_bytes(body, limit.saturating_add(1)).await.map_err(|_| {
        api(StatusCode::PAYLOAD_TOO_LARGE, "voice_too_large", format!("a voice answer may have at most {limit} bytes"))
    })?;
    let taken = app.voice(&caller, &id, content_type, &bytes).await?;
    let part: ViewPart = serde_json::from_value(taken.answer.view)
        .map_err(|e| ApiError::internal(format!("the session view lacks a field: {e}")))?;
    Ok(Json(VoiceAnswer {
        handled: if taken.transcript.is_some() { "transcribed" } else { "kept" }.to_owned(),
        transcript: taken.transcript,
        media: taken.media,
        id: part.id,
        status: part.status,
        urgency: part.urgency,
        red_flags: part.red_flags,
        question: part.question,
        alert: part.alert,
        done: part.done,
        hint: taken.answer.asked_again,
        version: part.version,
    }))
}

/// `json` (default), `text/html` or `text/plain`, by `Accept`.
fn wanted(headers: &HeaderMap) -> &'static str {
    let accept = headers.get(header::ACCEPT).and_then(|v| v.to_str().ok()).unwrap_or("");
    for part in accept.split(',') {
        let media = part.split(';').next().unwrap_or("").trim().to_ascii_lowercase();
        match media.as_str() {
            "application/json" | "*/*" | "application/*" => return "json",
            "text/html" => return "html",
            "text/plain" | "text/*" => return "text",
            _ => {}
        }
    }
    "json"
}

#[utoipa::path(get, path = "/api/v1/intake/sessions/{id}/summary", tag = "intake",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "The clinician's summary in English, red flags first. JSON by default; `Accept: text/html` gives a page (every string escaped), `text/plain` plain text", body = crate::summary::Summary,
         example = json!({"session": "0193a1b2-…", "patient": "Patient/0193a0…", "appointment": null, "status": "emergency", "language": "hi", "urgency": "emergency",
            "red_flags": [{"code": "cauda_equina", "title": "Suspected cauda equina syndrome", "urgency": "emergency", "evidence": ["saddle area sunn", "pishab nahi ho raha"], "source": {"title": "NICE CKS: Back pain - low (without radiculopathy), red flags for cauda equina syndrome", "url": "https://cks.nice.org.uk/topics/back-pain-low-without-radiculopathy/"}, "findings": ["Numbness", "Retention of urine"]}],
            "presenting_complaint": "kamar me dard hai [Low back pain]", "history": [{"question": "What is your main problem?", "answer": "kamar me dard hai"}],
            "pertinent_positives": [{"code": "279039007", "display": "Low back pain", "body_site": null, "when": "current", "severe": false, "evidence": "kamar me dard"}], "pertinent_negatives": [],
            "medications": [], "allergies": [], "patient_words": [{"text": "kamar me dard hai", "language": "hi", "gloss": "Low back pain"}], "reviewed_by": null, "reviewed_at": null})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or administrator", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "this is for clinicians and administrators"}})),
        (status = 404, description = "No such session of a patient the caller reaches", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn summary(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    staff_only(&caller)?;
    let s = app.load(&caller, &id).await?;
    let summary = app.summary(&s)?;
    let (body, content_type) = match wanted(&headers) {
        "html" => (summary.to_html(), "text/html; charset=utf-8"),
        "text" => (summary.to_text(), "text/plain; charset=utf-8"),
        _ => return Ok(Json(summary).into_response()),
    };
    let mut resp = body.into_response();
    resp.headers_mut().insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    Ok(resp)
}

#[utoipa::path(post, path = "/api/v1/intake/sessions/{id}/review", tag = "intake",
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 200, description = "Marked reviewed by the caller (a second review keeps the first); it leaves the queue", body = SessionView, example = json!(session_example())),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or administrator", body = ErrorEnvelope),
        (status = 404, description = "No such session of a patient the caller reaches", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn review(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<Value>, ApiError> {
    staff_only(&caller)?;
    Ok(Json(app.review(&caller, &id).await?))
}

/// How often a live queue looks again without a change in this process (a change made by
/// another server process sharing the database is seen within this time).
const LIVE_QUEUE_EVERY: std::time::Duration = std::time::Duration::from_secs(5);

#[utoipa::path(get, path = "/api/v1/intake/queue/live", tag = "intake",
    responses(
        (status = 200, description = "The queue as Server-Sent Events (`text/event-stream`): an event `queue` with the same JSON as `GET /api/v1/intake/queue` at once, then again whenever it changes (at once for changes in this process, within 5 s for others); comments keep the connection alive", body = String,
         example = "event: queue\ndata: {\"sessions\": [{\"id\": \"0193a1b2-…\", \"status\": \"emergency\", \"urgency\": \"emergency\", \"red_flags\": [\"cauda_equina\"]}]}\n\n"),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or administrator", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn queue_live(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
) -> Result<axum::response::Response, ApiError> {
    use axum::response::sse::{Event, KeepAlive, Sse};
    staff_only(&caller)?;
    let first = json!({"sessions": app.queue(&caller).await?}).to_string();
    let changes = app.queue_changes.subscribe();
    // State: (app, caller, change receiver, what was sent last, the first event still to send).
    let state = (app, caller, changes, first.clone(), Some(first));
    let stream = futures_util::stream::unfold(state, |(app, caller, mut changes, last, first)| async move {
        if let Some(text) = first {
            let event = Event::default().event("queue").data(text);
            return Some((Ok::<Event, std::convert::Infallible>(event), (app, caller, changes, last, None)));
        }
        loop {
            tokio::select! {
                changed = changes.changed() => if changed.is_err() { return None },
                () = tokio::time::sleep(LIVE_QUEUE_EVERY) => {}
            }
            // A failed look (a busy database) is tried again at the next change or tick.
            let Ok(sessions) = app.queue(&caller).await else { continue };
            let text = json!({"sessions": sessions}).to_string();
            if text != last {
                let event = Event::default().event("queue").data(text.clone());
                return Some((Ok(event), (app, caller, changes, text, None)));
            }
        }
    });
    Ok(Sse::new(stream).keep_alive(KeepAlive::default()).into_response())
}

#[utoipa::path(get, path = "/api/v1/intake/queue", tag = "intake",
    responses(
        (status = 200, description = "Sessions not yet reviewed of the patients the caller reaches, most urgent first, then oldest first (at most 200)", body = Queue,
         example = json!({"sessions": [{"id": "0193a1b2-…", "patient": "0193a0…", "appointment": null, "status": "emergency", "urgency": "emergency", "red_flags": ["cauda_equina"], "language": "hi", "created_at": "2026-11-29T10:00:00.000Z", "updated_at": "2026-11-29T10:02:00.000Z"}]})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope),
        (status = 403, description = "Not a clinician or administrator", body = ErrorEnvelope),
    ),
    security(("bearer" = [])))]
pub(crate) async fn queue(
    State(app): State<Arc<Intakes>>,
    ApiCaller(caller): ApiCaller,
) -> Result<Json<Queue>, ApiError> {
    staff_only(&caller)?;
    Ok(Json(Queue { sessions: app.queue(&caller).await? }))
}
