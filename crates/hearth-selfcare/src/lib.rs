//! Hearth self-care (issue 18): a patient's daily companion.
//!
//! Built so far: the early-warning scores ([`scores`], pure: NEWS2 and qSOFA as data with
//! their citations); the vitals catalogue and reading parser ([`vitals`], pure); and the app
//! API over them (`routes.rs`): `POST /api/v1/health/vitals`, `GET /api/v1/health`,
//! `GET /api/v1/health/history`, readings stored as FHIR `Observation`s through the caller's
//! guarded store view. See `docs/SELFCARE.md` for what is built and what is not yet.
#![forbid(unsafe_code)]

pub mod alerts;
mod routes;
pub mod scores;
pub mod vitals;

use std::sync::Arc;

use hearth_workflow::{Ctx, Mount, Workflow};

/// The self-care workflow's state.
pub struct Selfcare {
    ctx: Arc<Ctx>,
}

impl Selfcare {
    pub fn new(ctx: Arc<Ctx>) -> Selfcare {
        Selfcare { ctx }
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
#[openapi(paths(routes::record, routes::latest, routes::history))]
struct Api;

impl Workflow for Selfcare {
    /// Every route reads or records a patient's readings: all `audited`.
    fn mount(self: Arc<Self>) -> Mount {
        Mount {
            audited: routes::router().with_state(self),
            refusals_audited: axum::Router::new(),
            fhir_operations: axum::Router::new(),
            openapi: <Api as utoipa::OpenApi>::openapi(),
        }
    }
}
