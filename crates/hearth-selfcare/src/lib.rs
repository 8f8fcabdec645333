//! Hearth self-care (issue 18): a patient's daily companion.
//!
//! Built so far: the early-warning scores ([`scores`], pure: NEWS2 and qSOFA as data with
//! their citations); the vitals catalogue and reading parser ([`vitals`], pure); and the app
//! API over them (`routes.rs`): `POST /api/v1/health/vitals`, `GET /api/v1/health`,
//! `GET /api/v1/health/history`, readings stored as FHIR `Observation`s through the caller's
//! guarded store view. See `docs/SELFCARE.md` for what is built and what is not yet.
#![forbid(unsafe_code)]

mod alert_routes;
mod alerting;
pub mod alerts;
mod routes;
pub mod scores;
pub mod vitals;

use std::sync::Arc;

use hearth_notifications::Notifier;
use hearth_workflow::{Ctx, Mount, Workflow};
use serde::Deserialize;

/// The `[selfcare]` table.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, default)]
pub struct SelfcareConfig {
    /// Minutes an alert may stay unacknowledged before its second wave goes out (to the
    /// clinicians of the patient's organisation and the admins), 1 to 1440.
    pub escalate_after_minutes: u32,
}

impl Default for SelfcareConfig {
    fn default() -> Self {
        SelfcareConfig { escalate_after_minutes: 15 }
    }
}

impl SelfcareConfig {
    /// Checks the values (the configuration's `validate` calls it).
    pub fn validate(&self) -> Result<(), String> {
        if !(1..=1440).contains(&self.escalate_after_minutes) {
            return Err("selfcare.escalate_after_minutes must be 1 to 1440".into());
        }
        Ok(())
    }
}

/// The self-care workflow's state: the shared context, its settings, and the notifications API
/// alerts go out through.
pub struct Selfcare {
    ctx: Arc<Ctx>,
    pub config: SelfcareConfig,
    pub notifier: Arc<Notifier>,
}

impl Selfcare {
    pub fn new(ctx: Arc<Ctx>, config: SelfcareConfig, notifier: Arc<Notifier>) -> Selfcare {
        Selfcare { ctx, config, notifier }
    }
}

impl std::ops::Deref for Selfcare {
    type Target = Ctx;
    fn deref(&self) -> &Ctx {
        &self.ctx
    }
}

impl AsRef<Ctx> for Selfcare {
    fn as_ref(&self) -> &Ctx {
        &self.ctx
    }
}

#[derive(utoipa::OpenApi)]
#[openapi(paths(
    routes::record,
    routes::latest,
    routes::history,
    alert_routes::list,
    alert_routes::acknowledge,
    alert_routes::get_settings,
    alert_routes::put_settings
))]
struct Api;

impl Workflow for Selfcare {
    /// Every route reads or records a patient's readings: all `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: routes::router().merge(alert_routes::router()).with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}
