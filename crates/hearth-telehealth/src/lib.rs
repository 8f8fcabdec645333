//! Hearth telehealth (issue 21, items 1–4 and 9): video visits that are part of the appointment.
//!
//! - A **room is its virtual `Appointment`** (room id = appointment id). It is made lazily, when a
//!   participant first asks for it, rather than by a hook in booking: scheduling then needs no
//!   edge to this crate, and the appointment already holds everything a room is (patient,
//!   practitioners, times, status: a cancelled visit closes its room). Only the invitations
//!   (caregivers, interpreters) and the join tickets are rows of ours (migration 0028, reached
//!   only through `hearth_store_sql::telehealth`).
//! - `rooms.rs`: who may join (the booked patient, the appointment's practitioners, accounts the
//!   care team invited), `GET /api/v1/telehealth/rooms/{id}` (a short-lived single-use ticket,
//!   the ICE servers with TURN REST credentials, the room's state) and
//!   `POST /api/v1/telehealth/rooms/{id}/invites`.
//! - `hub.rs` and `ws.rs`: signaling over `WS /api/v1/telehealth/ws/{room}?ticket=` within one
//!   process (SDP and trickle ICE relayed by participant id, in order per sender; presence, mute
//!   and camera, chat, raise hand; a lobby the care team admits from; reconnect within a grace;
//!   a mesh of at most four). Every join and leave is an audit event.
//! - `turn.rs`: coturn's `use-auth-secret` credentials (docs/TELEHEALTH.md).
//! - `page.rs`: `/telehealth/test`, a page that joins a room with camera and microphone (its
//!   script and styles are files, so its CSP has no `'unsafe-inline'`).
#![forbid(unsafe_code)]

pub mod hub;
mod page;
mod rooms;
pub mod turn;
mod ws;

use std::sync::Arc;

use hearth_workflow::{Ctx, Mount, Secret, Workflow};
use serde::Deserialize;

/// The part an account plays in a room.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Part {
    /// The appointment's patient.
    Patient,
    /// A practitioner of the appointment: the care team, admitted at once, admits the others.
    Clinician,
    /// Invited by the care team.
    Caregiver,
    /// Invited by the care team.
    Interpreter,
}

impl Part {
    pub fn as_str(self) -> &'static str {
        match self {
            Part::Patient => "patient",
            Part::Clinician => "clinician",
            Part::Caregiver => "caregiver",
            Part::Interpreter => "interpreter",
        }
    }

    pub fn parse(s: &str) -> Option<Part> {
        match s {
            "patient" => Some(Part::Patient),
            "clinician" => Some(Part::Clinician),
            "caregiver" => Some(Part::Caregiver),
            "interpreter" => Some(Part::Interpreter),
            _ => None,
        }
    }

    /// The care team skips the lobby and decides who leaves it.
    pub fn care_team(self) -> bool {
        self == Part::Clinician
    }
}

/// The `[telehealth]` table.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct TelehealthConfig {
    /// How long before the appointment's start its room opens (minutes; default 15).
    pub open_minutes_before: u32,
    /// How long after the appointment's end its room stays open (minutes; default 60).
    pub close_minutes_after: u32,
    /// How long a join ticket is good for (seconds; default 60).
    pub ticket_secs: u32,
    /// How long a dropped participant keeps their place before they count as gone (seconds;
    /// default 30).
    pub reconnect_grace_secs: u32,
    /// STUN servers handed to clients (`stun:host:port`).
    pub stun_urls: Vec<String>,
    /// TURN servers handed to clients with REST credentials (`turn:host:3478?transport=udp`,
    /// `turns:…`); needs `turn_secret`.
    pub turn_urls: Vec<String>,
    /// The TURN server's `static-auth-secret`.
    pub turn_secret: Option<Secret<String>>,
    /// How long TURN credentials are good for (seconds; default 3600).
    pub turn_ttl_secs: u32,
}

impl Default for TelehealthConfig {
    fn default() -> Self {
        TelehealthConfig {
            open_minutes_before: 15,
            close_minutes_after: 60,
            ticket_secs: 60,
            reconnect_grace_secs: 30,
            stun_urls: Vec::new(),
            turn_urls: Vec::new(),
            turn_secret: None,
            turn_ttl_secs: 3600,
        }
    }
}

impl TelehealthConfig {
    pub fn check(&self) -> Result<(), String> {
        if self.open_minutes_before > 24 * 60 || self.close_minutes_after > 24 * 60 {
            return Err("telehealth.open_minutes_before and close_minutes_after are at most 1440".into());
        }
        if !(5..=600).contains(&self.ticket_secs) {
            return Err("telehealth.ticket_secs is from 5 to 600".into());
        }
        if self.reconnect_grace_secs > 600 {
            return Err("telehealth.reconnect_grace_secs is at most 600".into());
        }
        if !(60..=86_400).contains(&self.turn_ttl_secs) {
            return Err("telehealth.turn_ttl_secs is from 60 to 86400".into());
        }
        let scheme =
            |u: &str, schemes: &[&str]| schemes.iter().any(|s| u.starts_with(s)) && !u.contains(char::is_whitespace);
        if let Some(u) = self.stun_urls.iter().find(|u| !scheme(u, &["stun:", "stuns:"])) {
            return Err(format!("telehealth.stun_urls: `{u}` is not a stun: or stuns: URL"));
        }
        if let Some(u) = self.turn_urls.iter().find(|u| !scheme(u, &["turn:", "turns:"])) {
            return Err(format!("telehealth.turn_urls: `{u}` is not a turn: or turns: URL"));
        }
        let secret = self.turn_secret.as_ref().map(|s| s.expose().trim().len()).unwrap_or(0);
        if !self.turn_urls.is_empty() && secret < 16 {
            return Err("telehealth.turn_urls needs telehealth.turn_secret (at least 16 characters)".into());
        }
        Ok(())
    }
}

/// The telehealth workflow's state.
pub struct Telehealth {
    ctx: Arc<Ctx>,
    config: TelehealthConfig,
    hub: hub::Hub,
}

impl Telehealth {
    pub fn new(ctx: Arc<Ctx>, config: TelehealthConfig) -> Telehealth {
        Telehealth { ctx, config, hub: hub::Hub::default() }
    }
}

impl std::ops::Deref for Telehealth {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Telehealth {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(rooms::room, rooms::invite, ws::socket))]
struct Api;

impl Workflow for Telehealth {
    /// A room is a patient's appointment: its routes are `audited`. The socket authenticates by
    /// its ticket (a browser cannot set headers on a WebSocket) and writes its own join and leave
    /// events; the test page holds no one's data.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: rooms::router().with_state(Arc::clone(&self)),
            refusals_audited: ws::router().with_state(Arc::clone(&self)).merge(page::router()),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}
