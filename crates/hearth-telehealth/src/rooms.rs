//! Rooms bound to care: who may join a room, and `GET /api/v1/telehealth/rooms/{id}` (the join
//! ticket, ICE servers and state) and `POST /api/v1/telehealth/rooms/{id}/invites`.
//!
//! The room is the virtual `Appointment` with that id. The caller's own store view reads it
//! first (so the request's audit slip records it, and a patient reaches only their own); an
//! account the care team invited may not reach the patient's record at all (an interpreter),
//! so for an invited account the appointment is read by the system view, witnessed by the slip.
//! Then the part is decided: the appointment's patient, one of its practitioners (the care
//! team), or an invited caregiver/interpreter; anyone else is `403 not_a_participant`.

use std::sync::Arc;

use axum::Json;
use axum::extract::{Path, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use chrono::{DateTime, Duration, SecondsFormat, Utc};
use hearth_store::{Current, StoreError, Witness};
use hearth_store_sql::telehealth as sql;
use hearth_workflow::error::ApiError;
use hearth_workflow::openapi::ErrorEnvelope;
use hearth_workflow::{ApiCaller, Caller};
use serde::{Deserialize, Serialize};
use serde_json::Value;
use sha2::{Digest, Sha256};

use crate::{Part, Telehealth, turn};

pub(crate) fn router() -> axum::Router<Arc<Telehealth>> {
    axum::Router::new()
        .route("/api/v1/telehealth/rooms/{id}", axum::routing::get(room))
        .route("/api/v1/telehealth/rooms/{id}/invites", axum::routing::post(invite))
}

pub(crate) fn api(status: StatusCode, code: &'static str, message: impl Into<String>) -> ApiError {
    ApiError::new(status, code, message)
}

pub(crate) fn rfc3339(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(SecondsFormat::Secs, true)
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

/// The hash a ticket is stored and looked up by.
pub(crate) fn ticket_hash(ticket: &str) -> String {
    hex(&Sha256::digest(ticket.as_bytes()))
}

/// A participant's id in a room: stable for an account in a room (so a reconnect is the same
/// participant), unrelated across rooms, and revealing neither the account nor the patient.
pub(crate) fn participant_id(room: &str, account: &str) -> String {
    let digest = Sha256::digest(format!("hearth-telehealth\n{room}\n{account}").as_bytes());
    format!("p{}", hex(digest.get(..8).unwrap_or_default()))
}

/// What a room needs of its appointment.
#[derive(Debug, Clone)]
pub(crate) struct Appointment {
    pub patient: String,
    pub practitioners: Vec<String>,
    pub start: DateTime<Utc>,
    pub end: DateTime<Utc>,
    pub status: String,
    pub is_virtual: bool,
}

fn parse_appointment(v: &Value) -> Option<Appointment> {
    let time = |k: &str| {
        v.get(k)
            .and_then(Value::as_str)
            .and_then(|s| DateTime::parse_from_rfc3339(s).ok())
            .map(|t| t.with_timezone(&Utc))
    };
    let actors = v
        .get("participant")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter_map(|p| p.get("actor").and_then(|a| a.get("reference")).and_then(Value::as_str));
    let mut patient = None;
    let mut practitioners = Vec::new();
    for r in actors {
        if let Some(id) = r.strip_prefix("Patient/") {
            patient = Some(id.to_owned());
        } else if let Some(id) = r.strip_prefix("Practitioner/") {
            practitioners.push(id.to_owned());
        }
    }
    let is_virtual = v.get("extension").and_then(Value::as_array).into_iter().flatten().any(|x| {
        x.get("url").and_then(Value::as_str) == Some("urn:hearth:extension:appointment-virtual")
            && x.get("valueBoolean") == Some(&Value::Bool(true))
    });
    let start = time("start")?;
    Some(Appointment {
        patient: patient?,
        practitioners,
        start,
        end: time("end").unwrap_or(start),
        status: v.get("status").and_then(Value::as_str).unwrap_or("").to_owned(),
        is_virtual,
    })
}

/// A caller's place in a room.
#[derive(Debug, Clone)]
pub(crate) struct Seat {
    pub part: Part,
    pub participant: String,
    pub appointment: Appointment,
}

fn valid_id(id: &str) -> bool {
    !id.is_empty() && id.len() <= 64 && id.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn unknown_room() -> ApiError {
    api(StatusCode::NOT_FOUND, "unknown_room", "no video room with this id")
}

async fn read_appointment(store: &hearth_store::Guarded, id: &str) -> Result<Option<Value>, ApiError> {
    match store.read("Appointment", id).await {
        Ok(Current::Found(v)) => {
            let body = v.body.as_deref().unwrap_or("null");
            Ok(serde_json::from_str(body).ok())
        }
        Ok(_) | Err(StoreError::Forbidden(_)) => Ok(None),
        Err(e) => Err(e.into()),
    }
}

impl Telehealth {
    /// The caller's seat in room `room`: `404 unknown_room` (no such appointment the caller may
    /// see, or not a video visit), `403 not_a_participant`.
    pub(crate) async fn seat(&self, caller: &Caller, room: &str) -> Result<Seat, ApiError> {
        if !valid_id(room) {
            return Err(unknown_room());
        }
        let account = &caller.account.id;
        let mut found = read_appointment(&self.store_for(caller), room).await?;
        let invited = sql::invited_role(&*self.db, room, account).await?.and_then(|r| Part::parse(&r));
        if found.is_none() && invited.is_some() {
            let mut system = self.system();
            if let Some(slip) = &caller.audit {
                system = system.witnessed(Arc::clone(slip) as Arc<dyn Witness>);
            }
            found = read_appointment(&system, room).await?;
        }
        let appointment = found.as_ref().and_then(parse_appointment).ok_or_else(unknown_room)?;
        if !appointment.is_virtual {
            return Err(api(StatusCode::NOT_FOUND, "unknown_room", "this appointment is not a video visit"));
        }
        let fhir_user = caller.account.fhir_user.as_deref().unwrap_or("");
        let part = if caller.own_patient() == Some(appointment.patient.as_str()) {
            Part::Patient
        } else if caller.role == hearth_auth::Role::Clinician
            && fhir_user.strip_prefix("Practitioner/").is_some_and(|p| appointment.practitioners.iter().any(|x| x == p))
        {
            Part::Clinician
        } else if let Some(part) = invited {
            part
        } else {
            return Err(api(
                StatusCode::FORBIDDEN,
                "not_a_participant",
                "only the booked patient, the appointment's practitioners and people they invited join this room",
            ));
        };
        Ok(Seat { part, participant: participant_id(room, account), appointment })
    }

    /// When the room opens and closes.
    fn window(&self, a: &Appointment) -> (DateTime<Utc>, DateTime<Utc>) {
        (
            a.start - Duration::minutes(i64::from(self.config.open_minutes_before)),
            a.end + Duration::minutes(i64::from(self.config.close_minutes_after)),
        )
    }

    /// The ICE servers for `participant`: the STUN URLs, and the TURN URLs with a REST credential.
    fn ice_servers(&self, participant: &str, now: DateTime<Utc>) -> Vec<IceServer> {
        let mut out = Vec::new();
        if !self.config.stun_urls.is_empty() {
            out.push(IceServer { urls: self.config.stun_urls.clone(), username: None, credential: None });
        }
        if let (false, Some(secret)) = (self.config.turn_urls.is_empty(), &self.config.turn_secret) {
            let c = turn::credential(secret.expose().trim(), participant, now, self.config.turn_ttl_secs);
            out.push(IceServer {
                urls: self.config.turn_urls.clone(),
                username: Some(c.username),
                credential: Some(c.password),
            });
        }
        out
    }
}

/// One entry of `RTCConfiguration.iceServers`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct IceServer {
    urls: Vec<String>,
    /// TURN only: `<expiry>:<participant>` (coturn's `use-auth-secret`).
    #[serde(skip_serializing_if = "Option::is_none")]
    username: Option<String>,
    /// TURN only: base64(HMAC-SHA1(secret, username)).
    #[serde(skip_serializing_if = "Option::is_none")]
    credential: Option<String>,
}

/// A participant present in the room now.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct Present {
    participant: String,
    /// patient, clinician, caregiver or interpreter.
    role: String,
    /// `waiting` (in the lobby) or `admitted`.
    status: String,
    muted: bool,
    camera: bool,
    hand: bool,
    /// False while the participant is within the reconnect grace.
    connected: bool,
}

/// A room as one participant sees it.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
#[schema(example = json!({"room": "0193…", "appointment": "Appointment/0193…", "state": "open", "start": "2026-12-08T10:00:00Z", "end": "2026-12-08T10:30:00Z", "opensAt": "2026-12-08T09:45:00Z", "closesAt": "2026-12-08T11:30:00Z", "you": {"participant": "p3f9a…", "role": "patient"}, "ticket": "Qk2…", "ticketExpiresAt": "2026-12-08T09:51:00Z", "socket": "/api/v1/telehealth/ws/0193…", "iceServers": [{"urls": ["stun:turn.example.org:3478"]}, {"urls": ["turn:turn.example.org:3478?transport=udp"], "username": "1796637060:p3f9a…", "credential": "b64…"}], "participants": [], "mesh": 4}))]
pub(crate) struct RoomOut {
    room: String,
    appointment: String,
    /// `scheduled` (not open yet), `open`, or `closed` (over, or the appointment is no longer booked).
    state: String,
    start: String,
    end: String,
    opens_at: String,
    closes_at: String,
    you: You,
    /// Single use, for the socket's `?ticket=`; only while the room is open.
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    ticket_expires_at: Option<String>,
    /// The signaling socket's path.
    socket: String,
    ice_servers: Vec<IceServer>,
    /// Who is present now (on this server).
    participants: Vec<Present>,
    /// The care team's "running N minutes late" notice, if one was sent.
    #[serde(skip_serializing_if = "Option::is_none")]
    late_minutes: Option<u64>,
    /// The most participants the room holds.
    mesh: usize,
}

/// The caller in the room.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub(crate) struct You {
    participant: String,
    /// patient, clinician, caregiver or interpreter.
    role: String,
}

#[utoipa::path(get, path = "/api/v1/telehealth/rooms/{id}", tag = "telehealth",
    params(("id" = String, Path, description = "The room: the virtual appointment's id")),
    responses(
        (status = 200, description = "The room as the caller sees it: while it is open, a single-use join ticket for the socket; the ICE servers (STUN, and TURN with time-limited REST credentials); who is present", body = RoomOut),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "not_a_participant: not the booked patient, a practitioner of the appointment or an invited account", body = ErrorEnvelope, example = json!({"error": {"code": "not_a_participant", "message": "only the booked patient, the appointment's practitioners and people they invited join this room"}})),
        (status = 404, description = "unknown_room: no virtual appointment with this id that the caller may see", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_room", "message": "no video room with this id"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn room(
    State(app): State<Arc<Telehealth>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<Json<RoomOut>, ApiError> {
    let seat = app.seat(&caller, &id).await?;
    let now = app.clock.now();
    let (opens, closes) = app.window(&seat.appointment);
    let booked =
        matches!(seat.appointment.status.as_str(), "booked" | "arrived" | "checked-in" | "pending" | "proposed");
    let state = if !booked || now >= closes {
        "closed"
    } else if now < opens {
        "scheduled"
    } else {
        "open"
    };
    let mut ticket = None;
    let mut ticket_expires_at = None;
    if state == "open" {
        let value = format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple());
        let expires = now + Duration::seconds(i64::from(app.config.ticket_secs));
        let row = sql::TicketRow {
            hash: ticket_hash(&value),
            room: id.clone(),
            account_id: caller.account.id.clone(),
            role: seat.part.as_str().to_owned(),
            expires_at: expires.timestamp_millis(),
        };
        sql::insert_ticket(&*app.db, &row, now.timestamp_millis()).await?;
        ticket = Some(value);
        ticket_expires_at = Some(rfc3339(expires));
    }
    let (present, late) = app.hub.snapshot(&id);
    let participants = present
        .into_iter()
        .filter_map(|p| {
            Some(Present {
                participant: p.get("participant")?.as_str()?.to_owned(),
                role: p.get("role")?.as_str()?.to_owned(),
                status: p.get("status")?.as_str()?.to_owned(),
                muted: p.get("muted")?.as_bool()?,
                camera: p.get("camera")?.as_bool()?,
                hand: p.get("hand")?.as_bool()?,
                connected: p.get("connected")?.as_bool()?,
            })
        })
        .collect();
    Ok(Json(RoomOut {
        room: id.clone(),
        appointment: format!("Appointment/{id}"),
        state: state.to_owned(),
        start: rfc3339(seat.appointment.start),
        end: rfc3339(seat.appointment.end),
        opens_at: rfc3339(opens),
        closes_at: rfc3339(closes),
        ice_servers: app.ice_servers(&seat.participant, now),
        you: You { participant: seat.participant, role: seat.part.as_str().to_owned() },
        ticket,
        ticket_expires_at,
        socket: format!("/api/v1/telehealth/ws/{id}"),
        participants,
        late_minutes: late,
        mesh: crate::hub::MESH_LIMIT,
    }))
}

/// An invitation into a room.
#[derive(Debug, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"account": "acc-0193…", "role": "interpreter"}))]
pub(crate) struct InviteIn {
    /// The invited account's id.
    account: String,
    /// `caregiver` or `interpreter`.
    role: String,
}

#[utoipa::path(post, path = "/api/v1/telehealth/rooms/{id}/invites", tag = "telehealth",
    params(("id" = String, Path, description = "The room: the virtual appointment's id")),
    request_body(content = InviteIn, description = "The account to invite and the part it plays"),
    responses(
        (status = 201, description = "Invited: the account may now ask for a ticket (it waits in the lobby like the patient)", body = InviteIn),
        (status = 400, description = "invalid_body, invalid_role (caregiver or interpreter), unknown_account", body = ErrorEnvelope, example = json!({"error": {"code": "invalid_role", "message": "`role` is caregiver or interpreter"}})),
        (status = 401, description = "No or an invalid access token", body = ErrorEnvelope, example = json!({"error": {"code": "unauthenticated", "message": "authentication required"}})),
        (status = 403, description = "not_a_participant (not in this room), not_care_team (only the appointment's practitioners invite)", body = ErrorEnvelope, example = json!({"error": {"code": "not_care_team", "message": "only the appointment's practitioners invite"}})),
        (status = 404, description = "unknown_room: no virtual appointment with this id that the caller may see", body = ErrorEnvelope, example = json!({"error": {"code": "unknown_room", "message": "no video room with this id"}})),
    ),
    security(("bearer" = [])))]
pub(crate) async fn invite(
    State(app): State<Arc<Telehealth>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    body: axum::body::Bytes,
) -> Result<Response, ApiError> {
    let seat = app.seat(&caller, &id).await?;
    if !seat.part.care_team() {
        return Err(api(StatusCode::FORBIDDEN, "not_care_team", "only the appointment's practitioners invite"));
    }
    let input: InviteIn = serde_json::from_slice(&body)
        .map_err(|e| api(StatusCode::BAD_REQUEST, "invalid_body", format!("invalid request body: {e}")))?;
    if !matches!(Part::parse(&input.role), Some(Part::Caregiver | Part::Interpreter)) {
        return Err(api(StatusCode::BAD_REQUEST, "invalid_role", "`role` is caregiver or interpreter"));
    }
    if hearth_store_sql::identity::account_by_id(&*app.db, &input.account).await?.is_none() {
        return Err(api(StatusCode::BAD_REQUEST, "unknown_account", "no account with this id"));
    }
    let row = sql::InviteRow {
        room: id,
        account_id: input.account.clone(),
        role: input.role.clone(),
        invited_by: caller.account.id.clone(),
        created_at: app.clock.now().timestamp_millis(),
    };
    sql::invite(&*app.db, &row).await?;
    Ok((StatusCode::CREATED, Json(input)).into_response())
}
