use std::sync::Arc;

use axum::Router;

/// What a workflow hands the edge: its routes, already given their state, and their OpenAPI
/// description. The edge mounts both in one line and adds the cross-cutting layers (request id,
/// rate limits, metrics, security headers).
#[derive(Default)]
pub struct Mount {
    /// Routes that read or change someone's record: each request is one audit event (who, what
    /// was touched, the outcome), written by the edge's audit middleware.
    pub audited: Router,
    /// Routes on no one's record (settings, devices, directories): only refusals (`401`/`403`)
    /// are audit events.
    pub refusals_audited: Router,
    /// FHIR operations the workflow adds under `/fhir` (such as `Appointment/$find`): errors are
    /// `OperationOutcome`s and every request is audited, like the rest of the FHIR API.
    pub fhir_operations: Router,
    /// Every path in `audited` and `refusals_audited`, for `/api/openapi.json` (a test checks
    /// that each routed endpoint is documented).
    pub openapi: utoipa::openapi::OpenApi,
}

/// A care workflow, as the edge sees it.
pub trait Workflow: Send + Sync + 'static {
    /// The workflow's routes and their description.
    fn mount(self: Arc<Self>) -> Mount;
}
