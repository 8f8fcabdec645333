//! The interview over a WebSocket: `GET /api/v1/intake/ws/{session_id}`.
//!
//! The token comes as `Authorization: Bearer …` or, from browsers, as the subprotocols
//! `hearth.bearer, <token>` (the answer names only `hearth.bearer`), as for notifications.
//! Frames are JSON text. From the client: `{"type":"text","text":…}`, `{"type":"answer",
//! "answer":…}`, `{"type":"ping"}`. From the server: `question`, `turn` (what someone said on
//! the session, to every socket of it), `progress`, `alert` (the emergency safety message),
//! `done`, `error` (`{code, message}`, the socket stays open), `pong`. On connect the socket gets
//! where the session stands, so a reconnect resumes there. Close codes: 4404 unknown session,
//! 4403 a session of a patient the caller does not reach (an audit event records the refusal),
//! 4410 the session is over (after its `alert` or `done`), 1009 a frame over 8 KiB (over 1 MiB
//! the protocol layer drops the connection), 1003 a binary frame; malformed JSON or an unknown type is an `error` message with code
//! `malformed_message`.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::Response;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{AuditHook, Caller};
use serde_json::{Value, json};
use tokio::sync::broadcast::error::RecvError;

use crate::interview::Input;
use crate::service::{Intakes, Refusal, api, instant};
use crate::session::Status;

/// The WebSocket subprotocol that carries a bearer token.
const BEARER_PROTOCOL: &str = "hearth.bearer";
/// Largest frame a client may send (bytes).
pub const MAX_FRAME: usize = 8 * 1024;
pub const CLOSE_UNKNOWN: u16 = 4404;
pub const CLOSE_NOT_YOURS: u16 = 4403;
pub const CLOSE_FINISHED: u16 = 4410;

#[utoipa::path(get, path = "/api/v1/intake/ws/{id}", tag = "intake", security(("bearer" = [])),
    params(("id" = String, Path, description = "The session id")),
    responses(
        (status = 101, description = "WebSocket of JSON text frames. Client: {\"type\":\"text\",\"text\":…} (free text, any turn), {\"type\":\"answer\",\"answer\":…}, {\"type\":\"ping\"}. Server: question {question}, turn {text|answer} (to every socket of the session), progress {progress}, alert {message, numbers, red_flags} (emergency: the interview stops), done {status, urgency, message}, error {code, message} (the socket stays open; malformed JSON or an unknown type is code malformed_message), pong. On connect: where the session stands (a reconnect resumes). Close codes: 4404 unknown session, 4403 not a patient the caller reaches (audited), 4410 session over (after its alert or done), 1009 frame over 8 KiB, 1003 binary frame. The token comes as Authorization: Bearer, or as the subprotocols `hearth.bearer, <token>`"),
        (status = 401, description = "No valid token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 426, description = "Not a WebSocket upgrade request", body = ErrorEnvelope, example = json!({"error": {"code": "upgrade_required", "message": "this endpoint is a WebSocket (GET with Upgrade: websocket)"}})),
    ))]
pub(crate) async fn socket(
    State(app): State<Arc<Intakes>>,
    Path(id): Path<String>,
    headers: HeaderMap,
    slip: Option<axum::Extension<Arc<dyn AuditHook>>>,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let offered = headers.get("sec-websocket-protocol").and_then(|v| v.to_str().ok()).unwrap_or("");
    let mut protocols = offered.split(',').map(str::trim);
    let via_protocol = match (protocols.next(), protocols.next()) {
        (Some(BEARER_PROTOCOL), Some(token)) if !headers.contains_key(axum::http::header::AUTHORIZATION) => {
            Some(format!("Bearer {token}"))
        }
        _ => None,
    };
    let mut caller = match via_protocol {
        Some(value) => {
            let mut h = HeaderMap::new();
            let value = axum::http::HeaderValue::from_str(&value)
                .map_err(|_| api(StatusCode::BAD_REQUEST, "invalid_token", "the token is not a header value"))?;
            h.insert(axum::http::header::AUTHORIZATION, value);
            app.authenticate(&h, false).await
        }
        None => app.authenticate(&headers, false).await,
    }
    .map_err(ApiError::from)?;
    if let Some(axum::Extension(slip)) = &slip {
        slip.identify(&caller);
        caller.audit = Some(Arc::clone(slip));
    }
    let upgrade = upgrade.map_err(|_| {
        api(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint is a WebSocket (GET with Upgrade: websocket)",
        )
    })?;
    let found = app.load_for(&caller, &id).await?;
    // The socket's own turns are not this request's: its audit event is written at the upgrade.
    caller.audit = None;
    // The protocol layer's own limit is far above ours, so a big frame meets the check in `run`
    // (close 1009) rather than a dropped connection.
    let upgrade = upgrade.protocols([BEARER_PROTOCOL]).max_message_size(1 << 20).max_frame_size(1 << 20);
    Ok(match found {
        Ok(_) => upgrade.on_upgrade(move |ws| run(app, caller, id, ws)),
        Err(Refusal::Unknown) => upgrade.on_upgrade(|ws| close(ws, CLOSE_UNKNOWN, "unknown session")),
        Err(Refusal::NotYours) => {
            record_refusal(&app, &caller, &id).await?;
            upgrade.on_upgrade(|ws| close(ws, CLOSE_NOT_YOURS, "not your session"))
        }
    })
}

/// An audit event for a socket refused because the session's patient is out of the caller's
/// reach (the upgrade itself answers 101, so the request's own event cannot say so).
async fn record_refusal(app: &Intakes, caller: &Caller, session: &str) -> Result<(), ApiError> {
    let mut who = serde_json::Map::new();
    if let Some(u) = &caller.account.fhir_user {
        who.insert("reference".into(), json!(u));
    }
    who.insert("identifier".into(), json!({"system": "urn:hearth:account", "value": caller.account.id}));
    let event = json!({
        "resourceType": "AuditEvent",
        "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-event-type", "code": "rest", "display": "RESTful Operation"},
        "subtype": [{"system": "http://hl7.org/fhir/restful-interaction", "code": "read"}],
        "action": "R",
        "recorded": instant(app.clock.now()),
        "outcome": "4",
        "outcomeDesc": format!("{CLOSE_NOT_YOURS} not_yours"),
        "agent": [{"who": who, "role": [{"coding": [{"system": "urn:hearth:role", "code": caller.role.as_str()}], "text": caller.role.as_str()}], "requestor": true}],
        "source": {"observer": {"display": "Hearth"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": [{
            "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
            "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "24", "display": "Query"},
            "name": format!("GET /api/v1/intake/ws/{session}"),
            "description": "intake session WebSocket refused: the session's patient is out of the caller's reach",
        }],
    });
    app.audit.record(event).await.map_err(|e| {
        tracing::error!(error = %e, "cannot record a refused intake socket in the audit trail");
        api(StatusCode::SERVICE_UNAVAILABLE, "audit_unavailable", "the audit trail is unavailable; retry later")
    })
}

async fn close(mut ws: WebSocket, code: u16, reason: &'static str) {
    let _ = ws.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

async fn send(ws: &mut WebSocket, v: &Value) -> bool {
    ws.send(Message::Text(v.to_string().into())).await.is_ok()
}

fn is_final(event: &Value) -> bool {
    matches!(event.get("type").and_then(Value::as_str), Some("alert" | "done"))
}

/// The socket's life: where the session stands, then turns in and events out.
async fn run(app: Arc<Intakes>, caller: Caller, id: String, mut ws: WebSocket) {
    let room = app.room(&id);
    let mut events = room.events.subscribe();
    // Where the session stands now (read after subscribing, so no turn falls in between).
    let now = match app.load_for(&caller, &id).await {
        Ok(Ok(s)) => s,
        Ok(Err(_)) => return close(ws, CLOSE_UNKNOWN, "unknown session").await,
        Err(_) => return close(ws, 1011, "server error").await,
    };
    let Ok(view) = app.view(&now) else { return close(ws, 1011, "server error").await };
    if !send(&mut ws, &json!({"type": "progress", "progress": view.get("progress")})).await {
        return;
    }
    for e in app.state_events(&now, &view, None) {
        if !send(&mut ws, &e).await {
            return;
        }
    }
    if now.status != Status::Active {
        return close(ws, CLOSE_FINISHED, "session finished").await;
    }
    drop(now);
    loop {
        tokio::select! {
            event = events.recv() => match event {
                Ok(e) => {
                    if !send(&mut ws, &e).await {
                        return;
                    }
                    if is_final(&e) {
                        return close(ws, CLOSE_FINISHED, "session finished").await;
                    }
                }
                Err(RecvError::Lagged(_)) => {
                    // Too far behind: send where the session stands instead.
                    match app.load_for(&caller, &id).await {
                        Ok(Ok(s)) => {
                            let Ok(view) = app.view(&s) else { return close(ws, 1011, "server error").await };
                            for e in app.state_events(&s, &view, None) {
                                if !send(&mut ws, &e).await {
                                    return;
                                }
                            }
                        }
                        _ => return close(ws, 1011, "server error").await,
                    }
                }
                Err(RecvError::Closed) => return,
            },
            incoming = tokio::time::timeout(Duration::from_secs(300), ws.recv()) => match incoming {
                Err(_) => return close(ws, 1001, "idle").await,
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => return,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(Message::Binary(_)))) => return close(ws, 1003, "text frames only").await,
                Ok(Some(Ok(Message::Text(text)))) => {
                    if text.len() > MAX_FRAME {
                        return close(ws, 1009, "message too big").await;
                    }
                    if let Some(reply) = handle(&app, &caller, &id, text.as_str()).await
                        && !send(&mut ws, &reply).await
                    {
                        return;
                    }
                }
            },
        }
    }
}

fn error(code: &str, message: impl Into<String>) -> Value {
    json!({"type": "error", "code": code, "message": message.into()})
}

/// One client frame; the reply for this socket alone (the turn's events come by broadcast).
async fn handle(app: &Intakes, caller: &Caller, id: &str, text: &str) -> Option<Value> {
    let Ok(msg) = serde_json::from_str::<Value>(text) else {
        return Some(error("malformed_message", "frames are JSON objects with a type"));
    };
    let input = match (msg.get("type").and_then(Value::as_str), msg.get("text"), msg.get("answer")) {
        (Some("ping"), _, _) => return Some(json!({"type": "pong"})),
        (Some("text"), Some(Value::String(t)), _) => Input::Text(t.clone()),
        (Some("answer"), _, Some(a)) if !a.is_null() => Input::Answer(a.clone()),
        _ => {
            return Some(error(
                "malformed_message",
                "send {\"type\":\"text\",\"text\":…}, {\"type\":\"answer\",\"answer\":…} or {\"type\":\"ping\"}",
            ));
        }
    };
    match app.turn(caller, id, input).await {
        Ok(_) => None,
        Err(e) => Some(error(e.code, e.message)),
    }
}
