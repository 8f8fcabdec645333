//! Hearth alarms (issue 18, item 6): an account's own alarms (any role), one-off or recurring
//! by an RFC 5545 rule in the user's time zone, rung through the notification outbox.
//!
//! - [`rrule`]: the RRULE subset, parsed by our own small parser and expanded DST-correctly (pure).
//! - [`model`]: an alarm as a request gives it, checked, every refusal with a stable code (pure).
//! - [`planner`]: rings written to the outbox a horizon ahead, one key per occurrence, cancelled
//!   and rewritten on edit; the worker runs [`Alarms::run_planner`].
//! - `routes.rs`: `GET/POST /api/v1/alarms`, `GET/PUT/DELETE /api/v1/alarms/{id}`,
//!   `GET /api/v1/alarms/notifications`, `POST /api/v1/alarms/notifications/{id}/read`.
//!
//! Its tables (`alarms`, `alarm_occurrences`, migration 0023) are reached only through
//! `hearth_store_sql::alarms`; notifications only through `hearth-notifications`.
#![forbid(unsafe_code)]

pub mod model;
pub mod planner;
mod routes;
pub mod rrule;

use std::sync::Arc;

use hearth_workflow::{Ctx, Mount, Workflow};

pub use routes::MAX_ALARMS;

/// The alarms workflow's state.
pub struct Alarms {
    ctx: Arc<Ctx>,
    /// The notifications API rings are enqueued through (and accounts' time zones read).
    pub notifier: Arc<hearth_notifications::Notifier>,
}

impl Alarms {
    pub fn new(ctx: Arc<Ctx>, notifier: Arc<hearth_notifications::Notifier>) -> Alarms {
        Alarms { ctx, notifier }
    }

    /// The planner over this state, every [`planner::PLAN_EVERY`] until dropped (the worker runs
    /// it beside the notification worker).
    pub async fn run_planner(self: Arc<Self>) {
        planner::run(self).await;
    }
}

impl std::ops::Deref for Alarms {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Alarms {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    routes::list,
    routes::create,
    routes::one,
    routes::replace,
    routes::remove,
    routes::notifications,
    routes::read
))]
struct Api;

impl Workflow for Alarms {
    /// An alarm's label may be clinical ("insulin before dinner"): every route is `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: routes::router().with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}
