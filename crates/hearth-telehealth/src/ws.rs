//! Signaling: `GET /api/v1/telehealth/ws/{room}?ticket=` upgraded to a WebSocket of JSON text
//! frames. The ticket (from `GET /api/v1/telehealth/rooms/{room}`) is the credential, spent on
//! use, because a browser cannot put a bearer token on a WebSocket; it names the account and its
//! part in the room.
//!
//! Client → server: `signal {to, data}` (SDP or an ICE candidate for one participant), `state
//! {muted?, camera?, hand?}`, `chat {text}`, `admit {participant}`, `decline {participant}`,
//! `late {minutes}` (the care team), `leave`, `ping`. Server → client: `welcome`, `lobby`
//! (care team: who waits), `admitted`, `declined`, `late`, `presence {event: joined |
//! reconnected | away | left}`, `signal {from, seq, data}`, `state`, `chat {from, seq, text}`,
//! `error {code, message}` (the socket stays open), `pong`. Close codes: 4409 the room is full
//! (a mesh of 4), 4403 declined by the care team, 4404 the appointment is gone, 4000 replaced by
//! a newer connection of the same participant, 1009 a frame over 64 KiB, 1003 a binary frame,
//! 1001 idle for 90 s (the page pings every 20 s).
//!
//! A dropped socket keeps its participant's place for the reconnect grace; a new ticket and
//! socket within it resume (same participant id and status; the others are told `reconnected`
//! and renegotiate, an ICE restart). After the grace the participant has left. Each connect
//! and each leave is an audit event (a join that cannot be audited is refused), and so is a
//! socket refused for a full room or a declined participant. Chat text and
//! SDP are relayed, never stored or logged.

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{CloseFrame, Message, WebSocket, WebSocketUpgrade};
use axum::extract::{Path, RawQuery, State};
use axum::http::StatusCode;
use axum::response::Response;
use hearth_store::Current;
use hearth_store_sql::telehealth as sql;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use serde_json::{Value, json};

use crate::hub::{CLOSE_DECLINED, CLOSE_FULL, Left, Out, Refused};
use crate::rooms::{api, participant_id, rfc3339, ticket_hash};
use crate::{Part, Telehealth};

/// Largest frame a client may send (an SDP with many codecs fits well).
pub const MAX_FRAME: usize = 64 * 1024;
/// Close code: the room's appointment is gone.
pub const CLOSE_GONE: u16 = 4404;
const IDLE: Duration = Duration::from_secs(90);

pub(crate) fn router() -> axum::Router<Arc<Telehealth>> {
    axum::Router::new().route("/api/v1/telehealth/ws/{room}", axum::routing::get(socket))
}

fn ticket_of(query: Option<&str>) -> Option<&str> {
    query?.split('&').filter_map(|p| p.split_once('=')).find(|(k, _)| *k == "ticket").map(|(_, v)| v)
}

#[utoipa::path(get, path = "/api/v1/telehealth/ws/{room}", tag = "telehealth",
    params(("room" = String, Path, description = "The room: the virtual appointment's id"),
           ("ticket" = String, Query, description = "A single-use join ticket from GET /api/v1/telehealth/rooms/{id}")),
    responses(
        (status = 101, description = "WebSocket of JSON text frames. Client: signal {to, data} (SDP description or ICE candidate for one participant), state {muted?, camera?, hand?}, chat {text}, admit {participant}, decline {participant}, late {minutes} (care team), leave, ping. Server: welcome {you, role, status, participants, waiting?, late?}, lobby {waiting} (care team), admitted {participants}, declined, late {minutes}, presence {event: joined|reconnected|away|left, participant}, signal {from, seq, data} (in order per sender), state, chat {from, seq, text}, error {code, message} (codes not_admitted, not_care_team, unknown_participant, peer_unavailable, invalid_chat, invalid_late, malformed_message, not_in_room; the socket stays open), pong. Close codes: 4409 room full (a mesh of 4), 4403 declined by the care team, 4404 appointment gone, 4000 replaced by a newer connection, 1009 frame over 64 KiB, 1003 binary frame, 1001 idle 90 s. A dropped participant may come back with a new ticket within the reconnect grace"),
        (status = 401, description = "invalid_ticket: no ticket, or one that is unknown, used, expired or for another room", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_ticket", "message": "the ticket is unknown, used or expired: ask GET /api/v1/telehealth/rooms/{id} for another"}})),
        (status = 426, description = "upgrade_required: not a WebSocket upgrade request (the ticket is not spent)", body = ErrorEnvelope, example = json!({"error": {"code": "upgrade_required", "message": "this endpoint is a WebSocket (GET with Upgrade: websocket)"}})),
    ),
    security(()))]
pub(crate) async fn socket(
    State(app): State<Arc<Telehealth>>,
    Path(room): Path<String>,
    RawQuery(query): RawQuery,
    upgrade: Result<WebSocketUpgrade, axum::extract::ws::rejection::WebSocketUpgradeRejection>,
) -> Result<Response, ApiError> {
    let upgrade = upgrade.map_err(|_| {
        api(
            StatusCode::UPGRADE_REQUIRED,
            "upgrade_required",
            "this endpoint is a WebSocket (GET with Upgrade: websocket)",
        )
    })?;
    let invalid = || {
        api(
            StatusCode::UNAUTHORIZED,
            "invalid_ticket",
            "the ticket is unknown, used or expired: ask GET /api/v1/telehealth/rooms/{id} for another",
        )
    };
    let ticket = ticket_of(query.as_deref()).filter(|t| !t.is_empty() && t.len() <= 128).ok_or_else(invalid)?;
    let now = app.clock.now().timestamp_millis();
    let row = sql::spend_ticket(&*app.db, &ticket_hash(ticket), &room, now).await?.ok_or_else(invalid)?;
    let part = Part::parse(&row.role).ok_or_else(invalid)?;
    let patient = match app.system().read("Appointment", &room).await? {
        Current::Found(v) => {
            serde_json::from_str::<Value>(v.body.as_deref().unwrap_or("null")).ok().and_then(|a| patient_of(&a))
        }
        _ => None,
    };
    let upgrade = upgrade.max_message_size(1 << 20).max_frame_size(1 << 20);
    Ok(match patient {
        Some(patient) => {
            let who = Who {
                participant: participant_id(&room, &row.account_id),
                account: row.account_id,
                part,
                patient,
                room,
            };
            upgrade.on_upgrade(move |ws| run(app, who, ws))
        }
        None => upgrade.on_upgrade(|ws| close(ws, CLOSE_GONE, "the appointment is gone")),
    })
}

fn patient_of(a: &Value) -> Option<String> {
    a.get("participant")?
        .as_array()?
        .iter()
        .find_map(|p| p.get("actor")?.get("reference")?.as_str()?.strip_prefix("Patient/").map(str::to_owned))
}

/// Who is on a socket.
#[derive(Debug, Clone)]
struct Who {
    room: String,
    participant: String,
    account: String,
    part: Part,
    patient: String,
}

async fn close(mut ws: WebSocket, code: u16, reason: &'static str) {
    let _ = ws.send(Message::Close(Some(CloseFrame { code, reason: reason.into() }))).await;
}

async fn send(ws: &mut WebSocket, v: &Value) -> bool {
    ws.send(Message::Text(v.to_string().into())).await.is_ok()
}

/// An audit event for a participant entering or leaving a room.
async fn audit(
    app: &Telehealth,
    room: &str,
    account: &str,
    part: Part,
    patient: &str,
    what: &str,
) -> Result<(), String> {
    let event = json!({
        "resourceType": "AuditEvent",
        "type": {"system": "urn:hearth:audit-event-type", "code": "telehealth", "display": "Telehealth room"},
        "subtype": [{"system": "urn:hearth:telehealth", "code": what}],
        "action": "E",
        "recorded": rfc3339(app.clock.now()),
        "outcome": "0",
        "agent": [{
            "who": {"identifier": {"system": "urn:hearth:account", "value": account}},
            "role": [{"coding": [{"system": "urn:hearth:telehealth-part", "code": part.as_str()}], "text": part.as_str()}],
            "requestor": true,
        }],
        "source": {"observer": {"display": "Hearth"},
                   "type": [{"system": "http://terminology.hl7.org/CodeSystem/security-source-type", "code": "4", "display": "Application Server"}]},
        "entity": [
            {"what": {"reference": format!("Appointment/{room}")},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "2"},
             "description": format!("telehealth room {what}")},
            {"what": {"reference": format!("Patient/{patient}")},
             "type": {"system": "http://terminology.hl7.org/CodeSystem/audit-entity-type", "code": "1"},
             "role": {"system": "http://terminology.hl7.org/CodeSystem/object-role", "code": "1", "display": "Patient"}},
        ],
    });
    app.audit.record(event).await
}

async fn audit_left(app: &Telehealth, who: &Who, left: &Left) {
    let what = format!("leave-{}", left.how).replace('_', "-");
    if let Err(e) = audit(app, &who.room, &left.account, left.part, &who.patient, &what).await {
        tracing::error!(error = %e, room = %who.room, "cannot record a telehealth leave in the audit trail");
    }
}

/// The socket's life: join (or be refused), then frames both ways until it closes.
async fn run(app: Arc<Telehealth>, who: Who, mut ws: WebSocket) {
    let joined = match app.hub.join(&who.room, &who.participant, who.part, &who.account) {
        Ok(j) => j,
        Err(refused) => {
            let (code, reason, what) = match refused {
                Refused::Full => (CLOSE_FULL, "room full: a mesh holds 4 participants", "refused-full"),
                Refused::Declined => (CLOSE_DECLINED, "declined by the care team", "refused-declined"),
            };
            if let Err(e) = audit(&app, &who.room, &who.account, who.part, &who.patient, what).await {
                tracing::error!(error = %e, room = %who.room, "cannot record a refused telehealth join in the audit trail");
            }
            return close(ws, code, reason).await;
        }
    };
    let what = if joined.resumed { "rejoin" } else { "join" };
    if let Err(e) = audit(&app, &who.room, &who.account, who.part, &who.patient, what).await {
        tracing::error!(error = %e, room = %who.room, "cannot record a telehealth join in the audit trail; refused");
        if let Some(left) =
            app.hub.handle(&who.room, &who.participant, joined.epoch, &json!({"type": "leave"})).ok().flatten()
        {
            audit_left(&app, &who, &left).await;
        }
        return close(ws, 1011, "the audit trail is unavailable").await;
    }
    tracing::info!(room = %who.room, participant = %who.participant, part = who.part.as_str(), "telehealth join");
    let epoch = joined.epoch;
    let mut rx = joined.rx;
    loop {
        tokio::select! {
            out = rx.recv() => match out {
                Some(Out::Frame(v)) => {
                    if !send(&mut ws, &v).await {
                        break;
                    }
                }
                Some(Out::Close(code, reason)) => {
                    // Replaced or declined: the hub has moved on; nothing to time out.
                    return close(ws, code, reason).await;
                }
                None => break,
            },
            incoming = tokio::time::timeout(IDLE, ws.recv()) => match incoming {
                Err(_) => {
                    let _ = ws.send(Message::Close(Some(CloseFrame { code: 1001, reason: "idle".into() }))).await;
                    break;
                }
                Ok(None | Some(Err(_)) | Some(Ok(Message::Close(_)))) => break,
                Ok(Some(Ok(Message::Ping(_) | Message::Pong(_)))) => {}
                Ok(Some(Ok(Message::Binary(_)))) => {
                    let _ = ws.send(Message::Close(Some(CloseFrame { code: 1003, reason: "text frames only".into() }))).await;
                    break;
                }
                Ok(Some(Ok(Message::Text(text)))) => {
                    if text.len() > MAX_FRAME {
                        let _ = ws.send(Message::Close(Some(CloseFrame { code: 1009, reason: "message too big".into() }))).await;
                        break;
                    }
                    let msg = serde_json::from_str::<Value>(text.as_str()).unwrap_or(Value::Null);
                    match app.hub.handle(&who.room, &who.participant, epoch, &msg) {
                        Ok(None) => {}
                        Ok(Some(left)) => {
                            audit_left(&app, &who, &left).await;
                            if left.participant == who.participant {
                                return close(ws, 1000, "left").await;
                            }
                        }
                        Err(r) => {
                            if !send(&mut ws, &json!({"type": "error", "code": r.code, "message": r.message})).await {
                                break;
                            }
                        }
                    }
                }
            },
        }
    }
    // Dropped without leaving: the place is kept for the grace, then the participant has left.
    if app.hub.disconnect(&who.room, &who.participant, epoch) {
        let grace = Duration::from_secs(u64::from(app.config.reconnect_grace_secs));
        tokio::spawn(async move {
            tokio::time::sleep(grace).await;
            if let Some(left) = app.hub.expire(&who.room, &who.participant, epoch) {
                audit_left(&app, &who, &left).await;
            }
        });
    }
}
