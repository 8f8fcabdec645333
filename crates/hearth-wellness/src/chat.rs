//! Care-team chat (issue 19, item 4): messages between a patient (or caregiver) and the care team
//! as FHIR `Communication`s in the patient's thread, read receipts, live delivery over a
//! WebSocket, and red-flag screening of what the patient's side writes through the intake's
//! engine (`hearth_intake::Engine`).
//!
//! - `POST /api/v1/chat/message`: the message is written through the caller's guarded store view
//!   (who reaches the patient may write in their thread). A message from the patient or a
//!   caregiver is screened in its language (`en`, `hi`, `hi-Latn`; Devanagari text is Hindi,
//!   other text is read as English and as Hinglish and the more urgent reading wins). An
//!   emergency answers at once: the intake's safety message is stored as Hearth's reply
//!   (`inResponseTo` the message, priority `stat`) and the care team is alerted through the
//!   outbox (category `emergency`, template `emergency-alert`, which says only that something
//!   urgent waits), all in the message's transaction.
//! - Read receipts: `POST /api/v1/chat/read` records that the caller has read the thread up to
//!   now (one row per patient and account, `wellness_chat_reads`); a message lists who read it.
//! - `GET /api/v1/chat/ws?patient=`: every message and receipt of the thread, as JSON text frames,
//!   while the socket is open (this process's; other processes' show in the history).
//!
//! The care team is the accounts of the patient's `generalPractitioner`s and the clinicians of
//! their `managingOrganization`; without either, the administrators.

use std::collections::BTreeSet;
use std::sync::Arc;

use axum::Json;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Query, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Utc};
use hearth_intake::{Engine, Facts, Intake, Language, SafetyConfig, Urgency};
use hearth_notifications::Notice;
use hearth_notify::Category;
use hearth_store::{Guarded, interactions};
use hearth_store_sql::identity;
use hearth_store_sql::notify::TxDb;
use hearth_store_sql::wellness as sql;
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, AuditHook};

use crate::Wellness;
use crate::catalog::WELLNESS_SYSTEM;
use crate::entry::instant;
use crate::logs::{bad, body_of, patient_of, search_page};

/// The Communication category of the chat.
pub const CHAT_CATEGORY: &str = "care-team-chat";
/// The identifier system naming the account that wrote a message.
pub const SENDER_SYSTEM: &str = "urn:hearth:wellness:chat-sender";
/// The longest message (characters).
pub const MAX_TEXT: usize = 2000;
/// Most care-team accounts one emergency alerts.
const MAX_TEAM: usize = 500;

pub(crate) fn router() -> axum::Router<Arc<Wellness>> {
    axum::Router::new()
        .route("/api/v1/chat/message", axum::routing::post(send))
        .route("/api/v1/chat/history", axum::routing::get(history))
        .route("/api/v1/chat/read", axum::routing::post(read))
        .route("/api/v1/chat/ws", axum::routing::get(socket))
}

/// A message to send.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChatMessageIn, example = json!({"text": "mujhe seene mein tez dard ho raha hai", "language": "hi-Latn"}))]
pub(crate) struct MessageIn {
    /// The Patient id of the thread; default the caller's own record (a patient).
    #[serde(default)]
    patient: Option<String>,
    /// 1–2000 characters; line breaks allowed, no other control characters.
    text: String,
    /// `en`, `hi` or `hi-Latn` (Hinglish); default from the script.
    #[serde(default)]
    language: Option<String>,
}

/// Someone who read a message.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ChatReader)]
pub(crate) struct Reader {
    account: String,
    /// patient, caregiver, clinician or admin.
    role: String,
    /// When they last read the thread (RFC 3339).
    at: String,
}

/// A message of the thread.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = ChatMessage)]
pub(crate) struct MessageOut {
    /// The Communication id.
    id: String,
    patient: String,
    /// The account that wrote it; absent for Hearth's own replies.
    sender_account: Option<String>,
    /// patient, caregiver, clinician, admin, or `hearth` (the emergency guidance).
    sender_role: String,
    /// The writer's FHIR resource (`Patient/…`, `Practitioner/…`), when they have one.
    sender: Option<String>,
    text: String,
    sent: String,
    /// `routine`, or `stat` for an emergency and its guidance.
    priority: String,
    /// The message this one answers (Hearth's guidance).
    in_response_to: Option<String>,
    /// Those other than the writer who have read the thread since it was sent.
    read_by: Vec<Reader>,
}

/// The answer to a message.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ChatSent)]
pub(crate) struct SentOut {
    message: MessageOut,
    /// The screening found an emergency.
    emergency: bool,
    /// The emergency guidance Hearth answered with (also in the thread).
    guidance: Option<MessageOut>,
    /// Care-team accounts alerted.
    team_alerted: usize,
}

/// The screening's language of a text: the one given, else Hindi for Devanagari, else both
/// English and Hinglish.
fn languages(text: &str, given: Option<&str>) -> Result<Vec<Language>, ApiError> {
    Ok(match given {
        Some("en") => vec![Language::En],
        Some("hi") => vec![Language::Hi],
        Some("hi-Latn") => vec![Language::HiLatn],
        Some(_) => return Err(bad("invalid_language", "`language` is en, hi or hi-Latn")),
        None if text.chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c)) => vec![Language::Hi],
        // Latin script: both readings, Hinglish first when Hindi's commonest function words
        // are there (the guidance then comes in Hinglish); the more urgent reading wins.
        None if text
            .split(|c: char| !c.is_alphanumeric())
            .any(|w| HINGLISH_MARKERS.contains(&w.to_lowercase().as_str())) =>
        {
            vec![Language::HiLatn, Language::En]
        }
        None => vec![Language::En, Language::HiLatn],
    })
}

/// Words of romanised Hindi that English text does not use (language identification only).
const HINGLISH_MARKERS: [&str; 14] =
    ["hai", "hain", "mein", "mujhe", "mera", "meri", "raha", "rahi", "nahi", "nahin", "aur", "kya", "ho", "ka"];

/// The most urgent reading of `text`: whether it is an emergency, and the safety message in its
/// language.
pub fn screen(text: &str, langs: &[Language]) -> Result<Option<String>, String> {
    let engine = Engine::builtin().map_err(|e| format!("{e:?}"))?;
    for lang in langs {
        let a = engine.assess(&Intake { language: *lang, text: text.to_owned(), facts: Facts::default() });
        if a.urgency == Urgency::Emergency {
            return Ok(a.safety_message(&SafetyConfig::default()));
        }
    }
    Ok(None)
}

/// What a stored message says.
struct Draft<'a> {
    patient: &'a str,
    text: &'a str,
    /// The writer's FHIR resource.
    sender: Option<&'a str>,
    /// The writer's account.
    account: Option<&'a str>,
    role: &'a str,
    priority: &'a str,
    in_response_to: Option<&'a str>,
}

fn communication(d: &Draft<'_>, now: DateTime<Utc>) -> Value {
    let Draft { patient, text, sender, account, role, priority, in_response_to } = *d;
    let mut c = Map::new();
    c.insert("resourceType".into(), json!("Communication"));
    c.insert("status".into(), json!("completed"));
    c.insert("category".into(), json!([{"coding": [{"system": WELLNESS_SYSTEM, "code": CHAT_CATEGORY}]}]));
    c.insert("priority".into(), json!(priority));
    c.insert("subject".into(), json!({"reference": format!("Patient/{patient}")}));
    c.insert("sent".into(), json!(instant(now)));
    c.insert("payload".into(), json!([{"contentString": text}]));
    if let Some(a) = account {
        c.insert("identifier".into(), json!([{"system": SENDER_SYSTEM, "value": a}]));
    }
    match sender {
        Some(s) => c.insert("sender".into(), json!({"reference": s, "display": role})),
        None => c.insert("sender".into(), json!({"display": role})),
    };
    if let Some(r) = in_response_to {
        c.insert("inResponseTo".into(), json!([{"reference": format!("Communication/{r}")}]));
    }
    Value::Object(c)
}

fn message_of(id: &str, body: &Value, readers: &[sql::ChatRead]) -> Option<MessageOut> {
    let s = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let sent = s("/sent")?;
    let sent_at = DateTime::parse_from_rfc3339(&sent).ok()?.with_timezone(&Utc).timestamp_millis();
    let account = s("/identifier/0/value");
    let read_by = readers
        .iter()
        .filter(|r| r.read_at >= sent_at && Some(&r.account_id) != account.as_ref())
        .map(|r| Reader {
            account: r.account_id.clone(),
            role: r.role.clone(),
            at: DateTime::<Utc>::from_timestamp_millis(r.read_at).map(instant).unwrap_or_default(),
        })
        .collect();
    Some(MessageOut {
        id: id.to_owned(),
        patient: s("/subject/reference")?.strip_prefix("Patient/")?.to_owned(),
        sender_account: account,
        sender_role: s("/sender/display").unwrap_or_default(),
        sender: s("/sender/reference"),
        text: s("/payload/0/contentString")?,
        sent,
        priority: s("/priority").unwrap_or_else(|| "routine".into()),
        in_response_to: s("/inResponseTo/0/reference")
            .and_then(|r| r.strip_prefix("Communication/").map(str::to_owned)),
        read_by,
    })
}

/// The care team's accounts (see the module docs).
async fn team(db: &dyn hearth_store_sql::Db, patient_body: &Value) -> Result<Vec<String>, ApiError> {
    let mut team = BTreeSet::new();
    for r in patient_body.get("generalPractitioner").and_then(Value::as_array).into_iter().flatten() {
        if let Some(p) = r.get("reference").and_then(Value::as_str).filter(|p| p.starts_with("Practitioner/")) {
            team.extend(identity::accounts_of(db, p).await?);
        }
    }
    if let Some(org) = patient_body
        .pointer("/managingOrganization/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Organization/"))
    {
        team.extend(identity::accounts_with_role(db, "clinician", Some(org)).await?);
    }
    if team.is_empty() {
        team.extend(identity::accounts_with_role(db, "admin", None).await?);
    }
    Ok(team.into_iter().take(MAX_TEAM).collect())
}

#[utoipa::path(post, path = "/api/v1/chat/message", tag = "wellness",
    request_body(content = MessageIn, description = "A message in the patient's thread with the care team", example = json!({"text": "My sugar was 180 this morning"})),
    responses(
        (status = 201, description = "Stored as a FHIR Communication (category urn:hearth:wellness#care-team-chat) and delivered to the thread's open sockets. A message from the patient's side that describes an emergency (the intake's red-flag rules, en/hi/Hinglish) is answered at once with the emergency guidance (`guidance`, also in the thread) and the care team is alerted",
         body = SentOut,
         example = json!({"message": {"id": "0190…", "patient": "0190…", "sender_account": "…", "sender_role": "patient", "sender": "Patient/0190…", "text": "My sugar was 180 this morning", "sent": "2027-01-15T04:00:00.000Z", "priority": "routine", "in_response_to": null, "read_by": []}, "emergency": false, "guidance": null, "team_alerted": 0})),
        (status = 400, description = "Invalid message, nothing written (stable code: invalid_body, invalid_message, invalid_language, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_message", "message": "`text` must be 1 to 2000 characters"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "The caller may read but not write in this thread (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "outside the caller's reach"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn send(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<(StatusCode, Json<SentOut>), ApiError> {
    let input: MessageIn =
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?;
    let store = app.store_for(&caller);
    let (patient, patient_version) =
        hearth_workflow::fhir::requested_patient(&store, &caller, input.patient.as_deref()).await?;
    let text = input.text.trim();
    if text.is_empty()
        || text.chars().count() > MAX_TEXT
        || text.chars().any(|c| c.is_control() && c != '\n' && c != '\r' && c != '\t')
    {
        return Err(bad(
            "invalid_message",
            format!("`text` must be 1 to {MAX_TEXT} characters without control characters"),
        ));
    }
    let langs = languages(text, input.language.as_deref())?;
    let role = caller.account.role.clone();
    let patient_side = matches!(role.as_str(), "patient" | "caregiver");
    let guidance = if patient_side { screen(text, &langs).map_err(ApiError::internal)? } else { None };
    let now = app.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let sender = caller.account.fhir_user.as_deref();
    let priority = if guidance.is_some() { "stat" } else { "routine" };
    let message = communication(
        &Draft {
            patient: &patient,
            text,
            sender,
            account: Some(&caller.account.id),
            role: &role,
            priority,
            in_response_to: None,
        },
        now,
    );
    hearth_workflow::fhir::validate(&app, "Communication", &message)
        .map_err(|e| ApiError::internal(format!("a chat Communication does not validate: {}", e.describe())))?;
    let mut tx = store.begin().await?;
    let written =
        interactions::create(&mut tx, hearth_workflow::fhir::write_of(&app, "Communication", id.clone(), message), now)
            .await?;
    let mut reply = None;
    if let Some(g) = &guidance {
        let rid = uuid::Uuid::now_v7().to_string();
        let draft = Draft {
            patient: &patient,
            text: g,
            sender: None,
            account: None,
            role: "hearth",
            priority: "stat",
            in_response_to: Some(&id),
        };
        // A millisecond after the message, so the thread's order puts the answer after it.
        let body = communication(&draft, now + chrono::TimeDelta::milliseconds(1));
        hearth_workflow::fhir::validate(&app, "Communication", &body)
            .map_err(|e| ApiError::internal(format!("a chat Communication does not validate: {}", e.describe())))?;
        reply = Some(
            interactions::create(&mut tx, hearth_workflow::fhir::write_of(&app, "Communication", rid, body), now)
                .await?,
        );
    }
    let db = TxDb::from_guarded(tx)?;
    let mut alerted = 0;
    if guidance.is_some() {
        let patient_body = body_of(&patient_version).unwrap_or(Value::Null);
        for account in team(&db, &patient_body).await? {
            let mut args = Map::new();
            args.insert("kind".into(), json!("chat"));
            let notice = Notice {
                key: format!("chat-emergency:{id}:{account}"),
                account_id: account,
                category: Category::Emergency,
                template: "emergency-alert".into(),
                args,
                not_before: None,
            };
            hearth_notifications::enqueue(&app.notifier, &db, &notice, now).await.map_err(|e| match e {
                hearth_notifications::EnqueueError::Store(s) => ApiError::from(s),
                other => ApiError::internal(other.to_string()),
            })?;
            alerted += 1;
        }
    }
    db.commit().await?;
    if alerted > 0 {
        app.notifier.wake();
    }
    let readers = sql::chat_reads(&*app.db, &patient).await?;
    let out = |v: &hearth_store::Version| body_of(v).and_then(|b| message_of(&v.id, &b, &readers));
    let message = out(&written).ok_or_else(|| ApiError::internal("a stored message is unreadable"))?;
    let guidance = reply.as_ref().and_then(out);
    // Live delivery to this process's sockets of the thread (none listening is not an error).
    let _ = app.live.send((patient.clone(), json!({"type": "message", "message": message})));
    if let Some(g) = &guidance {
        let _ = app.live.send((patient.clone(), json!({"type": "message", "message": g})));
    }
    Ok((StatusCode::CREATED, Json(SentOut { message, emergency: guidance.is_some(), guidance, team_alerted: alerted })))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct HistoryParams {
    patient: Option<String>,
    count: Option<u32>,
    cursor: Option<String>,
}

/// A page of the thread.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = ChatHistory)]
pub(crate) struct HistoryOut {
    patient: String,
    /// Newest first.
    messages: Vec<MessageOut>,
    /// Pass as `cursor` for the next (older) page; absent on the last.
    #[serde(skip_serializing_if = "Option::is_none")]
    next: Option<String>,
}

#[utoipa::path(get, path = "/api/v1/chat/history", tag = "wellness",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id of the thread; default the caller's own record"),
        ("count" = Option<u32>, Query, description = "Messages per page, 1 to 200 (default 50)"),
        ("cursor" = Option<String>, Query, description = "The `next` of the page before"),
    ),
    responses(
        (status = 200, description = "The thread, newest first, each message with who has read it", body = HistoryOut),
        (status = 400, description = "Bad parameters (stable code: invalid_query, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_query", "message": "`count` is 1 to 200"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn history(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    query: Result<Query<HistoryParams>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<HistoryOut>, ApiError> {
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let count = q.count.unwrap_or(50);
    if !(1..=200).contains(&count) {
        return Err(bad("invalid_query", "`count` is 1 to 200"));
    }
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let pairs = [
        ("subject".to_owned(), format!("Patient/{patient}")),
        ("category".to_owned(), format!("{WELLNESS_SYSTEM}|{CHAT_CATEGORY}")),
        ("_sort".to_owned(), "-sent".to_owned()),
        ("_count".to_owned(), count.to_string()),
    ];
    let page = search_page(&app, &store, "Communication", &pairs, q.cursor).await?;
    let readers = sql::chat_reads(&*app.db, &patient).await?;
    let messages = page.matches.iter().filter_map(|v| message_of(&v.id, &body_of(v)?, &readers)).collect();
    Ok(Json(HistoryOut { patient, messages, next: page.next }))
}

/// Whose thread was read.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(as = ChatReadIn)]
pub(crate) struct ReadIn {
    /// The Patient id of the thread; default the caller's own record.
    #[serde(default)]
    patient: Option<String>,
}

#[utoipa::path(post, path = "/api/v1/chat/read", tag = "wellness",
    request_body(content = ReadIn, description = "Marks the thread read by the caller up to now", example = json!({"patient": "0190…"})),
    responses(
        (status = 200, description = "The receipt, also sent to the thread's open sockets", body = Reader,
         example = json!({"account": "…", "role": "clinician", "at": "2027-01-15T04:01:00.000Z"})),
        (status = 400, description = "Invalid body (stable code: invalid_body, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn read(
    State(app): State<Arc<Wellness>>,
    ApiCaller(caller): ApiCaller,
    body: axum::body::Bytes,
) -> Result<Json<Reader>, ApiError> {
    let input: ReadIn = if body.is_empty() {
        ReadIn { patient: None }
    } else {
        serde_json::from_slice(&body).map_err(|e| bad("invalid_body", format!("invalid request body: {e}")))?
    };
    let store = app.store_for(&caller);
    let patient = patient_of(&store, &caller, input.patient.as_deref()).await?;
    let now = app.clock.now();
    sql::chat_read(&*app.db, &patient, &caller.account.id, &caller.account.role, now.timestamp_millis()).await?;
    let receipt = Reader { account: caller.account.id.clone(), role: caller.account.role.clone(), at: instant(now) };
    let _ = app.live.send((patient, json!({"type": "read", "reader": receipt})));
    Ok(Json(receipt))
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub(crate) struct SocketParams {
    patient: Option<String>,
}

/// The WebSocket subprotocol that carries a bearer token (browsers cannot set headers on a
/// WebSocket), as the intake's socket takes it.
const BEARER_PROTOCOL: &str = "hearth.bearer";

#[utoipa::path(get, path = "/api/v1/chat/ws", tag = "wellness",
    params(("patient" = Option<String>, Query, description = "The Patient id of the thread; default the caller's own record")),
    responses(
        (status = 101, description = "WebSocket of JSON text frames from the server: {\"type\":\"message\",\"message\":ChatMessage} for every new message of the thread (the guidance after an emergency too), {\"type\":\"read\",\"reader\":ChatReader} for every receipt. Frames the client sends are ignored (at most 8 KiB); closing ends it. The token comes as Authorization: Bearer, or as the subprotocols `hearth.bearer, <token>`"),
        (status = 400, description = "Bad parameters (stable code: invalid_query, invalid_token, patient_required)", body = ErrorEnvelope, example = json!({"error": {"code": "patient_required", "message": "name the patient (`patient`)"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "A backend-services token (`forbidden`)", body = ErrorEnvelope, example = json!({"error": {"code": "forbidden", "message": "a backend-services token is for the FHIR API, not the app API"}})),
        (status = 404, description = "Unknown patient, or outside the caller's reach (`not_found`)", body = ErrorEnvelope, example = json!({"error": {"code": "not_found", "message": "no such patient"}})),
        (status = 426, description = "Not a WebSocket upgrade request (`upgrade_required`)", body = ErrorEnvelope, example = json!({"error": {"code": "upgrade_required", "message": "this endpoint is a WebSocket (GET with Upgrade: websocket)"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn socket(
    State(app): State<Arc<Wellness>>,
    headers: HeaderMap,
    slip: Option<axum::Extension<Arc<dyn AuditHook>>>,
    query: Result<Query<SocketParams>, axum::extract::rejection::QueryRejection>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let offered = headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut protocols = offered.split(',').map(str::trim);
    let mut caller = match (protocols.next(), protocols.next()) {
        (Some(BEARER_PROTOCOL), Some(token)) if !headers.contains_key(axum::http::header::AUTHORIZATION) => {
            let mut h = HeaderMap::new();
            let value = axum::http::HeaderValue::from_str(&format!("Bearer {token}"))
                .map_err(|_| bad("invalid_token", "the token is not a header value"))?;
            h.insert(axum::http::header::AUTHORIZATION, value);
            app.authenticate(&h, false).await
        }
        _ => app.authenticate(&headers, false).await,
    }
    .map_err(ApiError::from)?;
    if caller.claims.sub.starts_with(hearth_workflow::SERVICE_SUBJECT) {
        return Err(ApiError::new(
            StatusCode::FORBIDDEN,
            "forbidden",
            "a backend-services token is for the FHIR API, not the app API",
        ));
    }
    if let Some(axum::Extension(slip)) = &slip {
        slip.identify(&caller);
        caller.audit = Some(Arc::clone(slip));
    }
    let Query(q) = query.map_err(|e| bad("invalid_query", e.body_text()))?;
    let store: Guarded = app.store_for(&caller);
    let patient = patient_of(&store, &caller, q.patient.as_deref()).await?;
    let upgrade = upgrade.map_err(|_| {
        ApiError::new(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint is a WebSocket (GET with Upgrade: websocket)",
        )
    })?;
    let rx = app.live.subscribe();
    let upgrade = upgrade.protocols([BEARER_PROTOCOL]).max_message_size(8 << 10).max_frame_size(8 << 10);
    Ok(upgrade.on_upgrade(move |ws| run(ws, rx, patient)).into_response())
}

async fn run(mut ws: WebSocket, mut rx: tokio::sync::broadcast::Receiver<(String, Value)>, patient: String) {
    loop {
        tokio::select! {
            got = rx.recv() => match got {
                Ok((p, frame)) if p == patient => {
                    if ws.send(Message::Text(frame.to_string().into())).await.is_err() {
                        return;
                    }
                }
                Ok(_) | Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {}
                Err(tokio::sync::broadcast::error::RecvError::Closed) => return,
            },
            incoming = ws.recv() => match incoming {
                None | Some(Err(_)) | Some(Ok(Message::Close(_))) => return,
                Some(Ok(_)) => {}
            },
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn emergencies_are_found_in_each_language_and_ordinary_messages_are_not() {
        for (text, lang) in [
            ("I have crushing chest pain and I am sweating", None),
            ("मुझे सीने में तेज़ दर्द हो रहा है और पसीना आ रहा है", None),
            ("mujhe seene mein tez dard ho raha hai aur pasina aa raha hai", None),
        ] {
            let langs = languages(text, lang).unwrap();
            assert!(screen(text, &langs).unwrap().is_some(), "{text}");
        }
        for text in ["My sugar was 180 this morning", "dawai le li, thank you"] {
            let langs = languages(text, None).unwrap();
            assert_eq!(screen(text, &langs).unwrap(), None, "{text}");
        }
    }
}
