//! Hearth emergency (issue 18, item 5): a patient's emergency contacts and the emergency button.
//!
//! - `GET/POST /api/v1/emergency/contacts`: contacts are FHIR `RelatedPerson`s of the patient
//!   (name, phone, relationship) tagged `urn:hearth:emergency|contact`.
//! - `POST /api/v1/emergency/alert`: every contact and the care team (caregivers linked to the
//!   patient, the patient's general practitioners, else the clinicians of the managing
//!   organisation) are notified at once through the notifications outbox, category
//!   `emergency` (critical: quiet hours do not hold it). A contact with a Hearth account (a
//!   verified phone) gets every channel their account has; one without gets an SMS. The position,
//!   if given, is shared as an OpenStreetMap link, and the nearest `Location`s are answered
//!   (FHIR `near` search). Recorded as an active `Flag` and one `Communication` per contact plus
//!   one for the care team. A second press while the alert is active and within
//!   [`REPEAT_WINDOW_MINUTES`] of the last sending updates the same alert and sends nothing.
//! - `POST /api/v1/emergency/alert/{id}/cancel` ("I am safe"): the Flag becomes inactive and
//!   everyone alerted is told.
//!
//! Every read and write goes through the caller's guarded store view (the patient, their linked
//! caregivers, staff within reach); every route is audited. See `docs/EMERGENCY.md`.
#![forbid(unsafe_code)]

mod routes;

use std::sync::Arc;

use hearth_notifications::Notifier;
use hearth_workflow::{Ctx, Mount, Workflow};

pub use routes::{NEAREST, REPEAT_WINDOW_MINUTES, SEARCH_RADIUS_KM, TAG_SYSTEM, map_url};

/// The emergency workflow's state.
pub struct Emergency {
    ctx: Arc<Ctx>,
    notifier: Arc<Notifier>,
}

impl Emergency {
    pub fn new(ctx: Arc<Ctx>, notifier: Arc<Notifier>) -> Emergency {
        Emergency { ctx, notifier }
    }
}

impl std::ops::Deref for Emergency {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Emergency {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(routes::contacts, routes::add_contact, routes::alert, routes::cancel))]
struct Api;

impl Workflow for Emergency {
    /// Every route reads or writes a patient's record: all `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: routes::router().with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}
