//! What every Hearth care workflow builds on, and nothing else.
//!
//! A workflow crate (scheduling, consent, data rights, notifications, and the ones to come) is
//! mounted by the HTTP edge (`hearth-server`) and never imports it. Everything it needs from the
//! edge is here:
//!
//! - [`Ctx`]: the request context shared by every handler — the guarded store
//!   ([`Ctx::store_for`] a [`Caller`], [`Ctx::system`]), the identity tables, the R4 model and the
//!   search registry in force, the [`Clock`], and the audit hook ([`Ctx::audit`]).
//! - [`Caller`] / [`ApiCaller`]: the authenticated principal and its [`hearth_store::Access`], as
//!   axum extractors for any state that is [`AsRef<Ctx>`]. How a bearer token becomes a caller is
//!   the edge's business ([`Authenticate`]); a workflow only sees the result.
//! - [`error`]: the two error envelopes — FHIR `OperationOutcome` and the app API's
//!   `{"error": {"code", "message"}}` with a stable code.
//! - [`fhir`]: the small FHIR helpers a workflow writing resources needs (id syntax, instants,
//!   validation against the R4 model, a write with its search index).
//! - [`openapi`]: the shared schemas of the app API's description (the error envelope, a FHIR
//!   resource) and [`openapi::problems`], the rule every app operation's description keeps.
//! - [`page`]: collecting every page of a store search, bounded.
//! - [`Mount`] / [`Workflow`]: how a workflow hands the edge its routes (audited or not) and its
//!   OpenAPI paths.
//!
//! Rule: a workflow reaches another workflow only through that crate's named, documented API
//! (scheduling enqueues reminders through `hearth-notifications`, never its tables).

#![forbid(unsafe_code)]

mod caller;
mod clock;
mod ctx;
pub mod edge;
pub mod error;
pub mod fhir;
pub mod openapi;
pub mod page;
pub mod pdf;
pub mod refs;
mod secret;
mod workflow;

pub use caller::{
    ApiCaller, AuditHook, AuthFailure, Authenticate, Caller, EnrolCaller, SERVICE_SUBJECT, TokenCaller, client_ip,
    require_admin,
};
pub use clock::{Clock, SystemClock};
pub use ctx::{Ctx, CtxParts, RecordAudit};
pub use error::{ApiError, FhirError, Issue};
pub use secret::Secret;
pub use workflow::{Mount, Workflow};
