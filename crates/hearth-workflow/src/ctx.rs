use std::net::SocketAddr;
use std::sync::{Arc, RwLock};

use axum::http::{HeaderMap, header};
use hearth_fhir::Model;
use hearth_search::{Compartments, Registry};
use hearth_store::{Guarded, ResourceStore, StoreError, Version};
use hearth_store_sql::Db;
use serde_json::Value;

use crate::caller::{AuthFailure, Authenticate, Caller};
use crate::clock::Clock;

/// The audit trail as a workflow sees it: it records an event (an `AuditEvent` body; the trail
/// stamps id, version and time).
#[async_trait::async_trait]
pub trait RecordAudit: Send + Sync {
    /// Records `event`; an error means the trail could not take it (fail closed).
    async fn record(&self, event: Value) -> Result<(), String>;
}

/// The request context every handler of every workflow works with: built once by the edge at
/// start-up, shared by reference. A workflow's own state holds an `Arc<Ctx>` beside its own
/// settings and implements `AsRef<Ctx>`, which is all the [`Caller`] extractor needs.
pub struct Ctx {
    /// The raw store: for work done for the system. Request handlers use [`Ctx::store_for`].
    pub store: Arc<dyn ResourceStore>,
    /// The same database, for the tables beside the resources (identity, outbox, claims).
    pub db: Arc<dyn Db>,
    /// The audit trail's own store (AuditEvents), read through guarded views.
    pub audit_store: Arc<dyn ResourceStore>,
    pub model: Arc<Model>,
    pub compartments: Compartments,
    pub clock: Arc<dyn Clock>,
    /// Turns a request's bearer token into a [`Caller`] (the edge's identity code).
    pub authenticator: Arc<dyn Authenticate>,
    /// Records audit events (the edge's trail writer).
    pub audit: Arc<dyn RecordAudit>,
    /// This app's metrics registry (served on `/metrics` by the edge).
    pub metrics: Arc<dyn metrics::Recorder + Send + Sync>,
    /// The public base URL (`base_url` setting), else links are built from the `Host` header.
    pub base_url: Option<String>,
    /// The listening address, the last resort for links.
    pub listen: SocketAddr,
    /// The search parameters in force: the R4 ones plus stored SearchParameters. Replaced as a
    /// whole (copy on write) when a SearchParameter is written; never held across an await.
    registry: RwLock<Arc<Registry>>,
}

/// The parts of a [`Ctx`], for the edge that builds it.
pub struct CtxParts {
    pub store: Arc<dyn ResourceStore>,
    pub db: Arc<dyn Db>,
    pub audit_store: Arc<dyn ResourceStore>,
    pub model: Arc<Model>,
    pub registry: Registry,
    pub compartments: Compartments,
    pub clock: Arc<dyn Clock>,
    pub authenticator: Arc<dyn Authenticate>,
    pub audit: Arc<dyn RecordAudit>,
    pub metrics: Arc<dyn metrics::Recorder + Send + Sync>,
    pub base_url: Option<String>,
    pub listen: SocketAddr,
}

impl AsRef<Ctx> for Ctx {
    fn as_ref(&self) -> &Ctx {
        self
    }
}

impl Ctx {
    pub fn new(p: CtxParts) -> Ctx {
        Ctx {
            store: p.store,
            db: p.db,
            audit_store: p.audit_store,
            model: p.model,
            compartments: p.compartments,
            clock: p.clock,
            authenticator: p.authenticator,
            audit: p.audit,
            metrics: p.metrics,
            base_url: p.base_url,
            listen: p.listen,
            registry: RwLock::new(Arc::new(p.registry)),
        }
    }

    /// The store as the system sees it (everything): internal work, and definitional lookups
    /// (ValueSets, CodeSystems) that hold no one's record.
    pub fn system(&self) -> Guarded {
        Guarded::new(Arc::clone(&self.store), hearth_store::Access::system()).with_audit(Arc::clone(&self.audit_store))
    }

    /// The store as `caller` may see it; what it touches is told to the request's audit slip.
    pub fn store_for(&self, caller: &Caller) -> Guarded {
        let store =
            Guarded::new(Arc::clone(&self.store), caller.access.clone()).with_audit(Arc::clone(&self.audit_store));
        match &caller.audit {
            Some(slip) => store.witnessed(Arc::clone(slip) as Arc<dyn hearth_store::Witness>),
            None => store,
        }
    }

    /// Resolves the bearer token in `headers`; `allow_setup` admits enrolment-only tokens.
    pub async fn authenticate(&self, headers: &HeaderMap, allow_setup: bool) -> Result<Caller, AuthFailure> {
        self.authenticator.authenticate(self, headers, allow_setup).await
    }

    /// The search parameters in force now.
    pub fn registry(&self) -> Arc<Registry> {
        match self.registry.read() {
            Ok(r) => Arc::clone(&r),
            Err(poisoned) => Arc::clone(&poisoned.into_inner()),
        }
    }

    /// Replaces the registry (after a SearchParameter write committed).
    pub fn set_registry(&self, registry: Registry) {
        let mut guard = match self.registry.write() {
            Ok(g) => g,
            Err(poisoned) => poisoned.into_inner(),
        };
        *guard = Arc::new(registry);
    }

    /// Every live match (at least `limit` when there are that many) of the search
    /// `resource_type?pairs` that the store view `store` may see. The pairs are the workflow's
    /// own, so one that does not parse is a bug reported as an invalid search.
    pub async fn search_all(
        &self,
        store: &Guarded,
        resource_type: &str,
        pairs: &[(String, String)],
        limit: usize,
    ) -> Result<Vec<Version>, StoreError> {
        let query = self
            .registry()
            .parse_query(&[resource_type], pairs, hearth_search::Handling::Strict)
            .map_err(|e| StoreError::InvalidSearch(format!("{resource_type} search does not parse: {e:?}")))?;
        crate::page::search_all(store, &query, limit).await
    }

    /// The base of this server's FHIR API (`…/fhir`), for links: the `base_url` setting, else
    /// the request's `Host` (when it is a plain host name), else the listening address.
    pub fn fhir_base(&self, headers: &HeaderMap) -> String {
        if let Some(base) = &self.base_url {
            return format!("{base}/fhir");
        }
        let host = headers
            .get(header::HOST)
            .and_then(|h| h.to_str().ok())
            .filter(|h| h.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | ':' | '[' | ']')))
            .map_or_else(|| self.listen.to_string(), str::to_owned);
        format!("http://{host}/fhir")
    }
}
