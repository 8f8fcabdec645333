//! [`Guarded`]: the store as a caller with a given [`Access`] sees it. Every resource read,
//! search and write of the application goes through here; the raw [`ResourceStore`] is for
//! internal jobs that act for the system (reindex, export workers).
//!
//! Decisions:
//! - A resource outside the caller's reach answers like a resource that does not exist (`404`):
//!   to a patient, the existence of another patient's record is itself private. An interaction
//!   the caller's grants do not allow on a type at all is `Forbidden` (`403`).
//! - Searches never fail for reach or grants: they are narrowed (types the caller may not search
//!   drop out, matches and includes outside the reach are never returned).
//! - Type- and system-level history span every record of a type, so they need an unrestricted
//!   reach; instance history needs the resource to be in reach now.
//! - A write by a restricted caller is allowed when the current version (if any) is in reach and
//!   every patient the new version names through its Patient-compartment references is in reach
//!   (so a patient cannot file data into someone else's record), and it names at least one.

use std::sync::Arc;

use hearth_search::IndexValue;

use crate::{
    Access, Current, CurrentState, EverythingRequest, HistoryPage, HistoryQuery, HistoryScope, IndexEntry, Op,
    PatientSet, Reach, ResourceStore, SearchPage, SearchQuery, SearchRequest, StoreError, StoreTx, Version,
};

/// Is told every version a caller's interactions returned or wrote: how the audit trail
/// learns whose records a request touched, at the one place data is read.
pub trait Witness: Send + Sync {
    fn saw(&self, version: &Version);
}

/// The store seen through an [`Access`].
#[derive(Clone)]
pub struct Guarded {
    store: Arc<dyn ResourceStore>,
    access: Access,
    witness: Option<Arc<dyn Witness>>,
    /// Where `AuditEvent`s live, when apart from the clinical record (see [`Guarded::with_audit`]).
    audit: Option<Arc<dyn ResourceStore>>,
}

/// The resource type kept in the audit store.
pub const AUDIT_TYPE: &str = "AuditEvent";

/// The resource type only the scheduling workflow writes ([`GuardedTx::scheduling`]): booking
/// claims the clinician's time in the same transaction, and an Appointment written any other way
/// would hold time nobody claimed (a double booking).
pub const BOOKED_TYPE: &str = "Appointment";

/// Safety alerts on a record (`Flag`: a red flag an intake raised, an allergy warning) are the
/// care team's: callers on the patient's side ([`PatientSet::Ids`]) may read them but never
/// create, change or delete one, so a patient cannot lift what a red flag blocks (a routine
/// self-booking after an emergency). The intake workflow records the red flags a patient's own
/// answers raised through that patient's transaction marked [`GuardedTx::safety_record`].
pub const SAFETY_TYPE: &str = "Flag";

/// Unfinished clinical documents — a `preliminary` Composition or DocumentReference, a letter or
/// note still in draft — are the clinician's, not yet the patient's: callers on the patient's
/// side (a patient, a caregiver, an app in a patient's context: [`PatientSet::Ids`]) do not see
/// them, in any version, through any interaction. (Judged on each version's body after the
/// query, so a search's `total` may still count a draft the page leaves out.)
fn hidden_draft(access: &Access, v: &Version) -> bool {
    if !matches!(&access.reach, Reach::Patients { set: PatientSet::Ids(_), .. }) {
        return false;
    }
    let field = match v.resource_type.as_str() {
        "Composition" => "status",
        "DocumentReference" => "docStatus",
        _ => return false,
    };
    let Some(body) = v.body.as_deref() else { return false };
    serde_json::from_str::<serde_json::Value>(body)
        .ok()
        .is_some_and(|b| b.get(field).and_then(serde_json::Value::as_str) == Some("preliminary"))
}

fn tell(witness: Option<&Arc<dyn Witness>>, versions: &[Version]) {
    if let Some(w) = witness {
        versions.iter().for_each(|v| w.saw(v));
    }
}

fn forbidden(op: Op, resource_type: &str) -> StoreError {
    let what = match op {
        Op::Create => "create",
        Op::Read => "read",
        Op::Update => "update",
        Op::Delete => "delete",
        Op::Search => "search",
    };
    StoreError::Forbidden(format!("not allowed to {what} {resource_type} resources"))
}

impl Guarded {
    pub fn new(store: Arc<dyn ResourceStore>, access: Access) -> Guarded {
        Guarded { store, access, witness: None, audit: None }
    }

    /// The same view, reading `AuditEvent`s from `audit`: the audit trail is kept apart from the
    /// clinical record, so it never appears in its history, `$everything`, exports or system
    /// searches, and its writes never wait for the clinical writer.
    pub fn with_audit(mut self, audit: Arc<dyn ResourceStore>) -> Guarded {
        self.audit = Some(audit);
        self
    }

    /// The store holding `resource_type`; reading the audit trail needs [`Access::audit`].
    fn store_of(&self, resource_type: &str, op: Op) -> Result<&Arc<dyn ResourceStore>, StoreError> {
        if resource_type != AUDIT_TYPE {
            return Ok(&self.store);
        }
        if !self.access.audit {
            return Err(forbidden(op, resource_type));
        }
        Ok(self.audit.as_ref().unwrap_or(&self.store))
    }

    /// The same view, reporting what it returns and writes to `witness`.
    pub fn witnessed(mut self, witness: Arc<dyn Witness>) -> Guarded {
        self.witness = Some(witness);
        self
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    fn restricted(&self) -> bool {
        self.access.reach != Reach::All
    }

    /// The current version, if the caller may read it.
    pub async fn read(&self, resource_type: &str, id: &str) -> Result<Current, StoreError> {
        if !self.access.allows(Op::Read, resource_type) {
            return Err(forbidden(Op::Read, resource_type));
        }
        let store = self.store_of(resource_type, Op::Read)?;
        if self.restricted() && !store.in_reach(&self.access, resource_type, id).await? {
            return Ok(Current::NotFound);
        }
        let current = store.read(resource_type, id).await?;
        if let Current::Found(v) = &current
            && hidden_draft(&self.access, v)
        {
            return Ok(Current::NotFound);
        }
        if let Current::Found(v) | Current::Deleted(v) = &current {
            tell(self.witness.as_ref(), std::slice::from_ref(v));
        }
        Ok(current)
    }

    /// A specific version, if the caller may read the resource (judged on its current version).
    pub async fn read_version(
        &self,
        resource_type: &str,
        id: &str,
        version_id: u64,
    ) -> Result<Option<Version>, StoreError> {
        if !self.access.allows(Op::Read, resource_type) {
            return Err(forbidden(Op::Read, resource_type));
        }
        let store = self.store_of(resource_type, Op::Read)?;
        if self.restricted() && !store.in_reach(&self.access, resource_type, id).await? {
            return Ok(None);
        }
        let version =
            store.read_version(resource_type, id, version_id).await?.filter(|v| !hidden_draft(&self.access, v));
        tell(self.witness.as_ref(), version.as_slice());
        Ok(version)
    }

    pub async fn history(&self, query: &HistoryQuery) -> Result<HistoryPage, StoreError> {
        match &query.scope {
            HistoryScope::Instance { resource_type, id } => {
                if !self.access.allows(Op::Read, resource_type) {
                    return Err(forbidden(Op::Read, resource_type));
                }
                let store = self.store_of(resource_type, Op::Read)?;
                if self.restricted() && !store.in_reach(&self.access, resource_type, id).await? {
                    return Ok(HistoryPage::default());
                }
            }
            HistoryScope::Type(resource_type) => {
                if self.restricted() || !self.access.allows(Op::Search, resource_type) {
                    return Err(forbidden(Op::Search, &format!("the history of all {resource_type}")));
                }
            }
            HistoryScope::System => {
                if !self.access.is_unrestricted() {
                    return Err(StoreError::Forbidden("not allowed to read the history of the whole server".into()));
                }
            }
        }
        let store = match &query.scope {
            HistoryScope::Instance { resource_type, .. } | HistoryScope::Type(resource_type) => {
                self.store_of(resource_type, Op::Read)?
            }
            HistoryScope::System => &self.store,
        };
        let mut page = store.history(query).await?;
        page.entries.retain(|v| !hidden_draft(&self.access, v));
        tell(self.witness.as_ref(), &page.entries);
        Ok(page)
    }

    /// One page of a search, narrowed to what the caller may search and reach.
    pub async fn search(&self, mut request: SearchRequest) -> Result<SearchPage, StoreError> {
        request.access = self.access.clone();
        if !narrow_types(&self.access, &mut request.query) {
            let total = request.count_total.then_some(0);
            return Ok(SearchPage { total, ..SearchPage::default() });
        }
        // Several types (a system search) search the clinical record, which holds no AuditEvent.
        let store = match request.query.resource_types.as_slice() {
            [only] => self.store_of(only, Op::Search)?,
            _ => &self.store,
        };
        let mut page = store.search(&request).await?;
        page.matches.retain(|v| !hidden_draft(&self.access, v));
        page.included.retain(|v| !hidden_draft(&self.access, v));
        tell(self.witness.as_ref(), &page.matches);
        tell(self.witness.as_ref(), &page.included);
        Ok(page)
    }

    /// One page of `Patient/$everything`, every phase narrowed to the caller's reach.
    pub async fn everything(&self, mut request: EverythingRequest) -> Result<SearchPage, StoreError> {
        request.access = self.access.clone();
        let mut page = self.store.everything(&request).await?;
        page.matches.retain(|v| !hidden_draft(&self.access, v));
        page.included.retain(|v| !hidden_draft(&self.access, v));
        tell(self.witness.as_ref(), &page.matches);
        tell(self.witness.as_ref(), &page.included);
        Ok(page)
    }

    /// Live resources matching `query`'s clauses within reach (conditional interactions).
    pub async fn find(&self, query: &SearchQuery, limit: u32) -> Result<Vec<Version>, StoreError> {
        let mut query = query.clone();
        if !narrow_types(&self.access, &mut query) {
            return Ok(Vec::new());
        }
        let mut found = self.store.find(&self.access, &query, limit).await?;
        found.retain(|v| !hidden_draft(&self.access, v));
        tell(self.witness.as_ref(), &found);
        Ok(found)
    }

    /// Starts a write transaction in which every write is checked against the access.
    pub async fn begin(&self) -> Result<GuardedTx, StoreError> {
        Ok(GuardedTx {
            tx: self.store.begin().await?,
            access: self.access.clone(),
            witness: self.witness.clone(),
            scheduling: false,
            safety_record: false,
            booked: None,
        })
    }
}

/// Drops the types the caller may not search from a query; false when none is left.
fn narrow_types(access: &Access, query: &mut SearchQuery) -> bool {
    if access.is_unrestricted() {
        return true;
    }
    let all = query.resource_types.len();
    query.resource_types.retain(|t| access.allows(Op::Search, t));
    if query.resource_types.len() != all && query.type_filter.is_empty() && all > 1 {
        // A system search without `_type` became a search over the allowed types: name them, so
        // the store restricts to them rather than searching every type.
        query.type_filter = query.resource_types.clone();
    }
    !query.resource_types.is_empty()
}

/// A write transaction seen through an [`Access`]. Dropping it without `commit` rolls back.
pub struct GuardedTx {
    tx: Box<dyn StoreTx>,
    access: Access,
    witness: Option<Arc<dyn Witness>>,
    /// May write Appointments (see [`BOOKED_TYPE`]).
    scheduling: bool,
    /// May create Flags for a patient-side caller (see [`SAFETY_TYPE`]).
    safety_record: bool,
    /// The Appointment versions written so far when the transaction is a `/fhir` write that the
    /// scheduling workflow commits ([`GuardedTx::booking_on_commit`]).
    booked: Option<Vec<Version>>,
}

impl GuardedTx {
    /// The same transaction as the scheduling workflow's: it may write Appointments, because it
    /// claims (or releases) the clinician's time in this transaction before committing. Every
    /// other caller but the system itself (`hearth import`) is refused Appointment writes.
    pub fn scheduling(mut self) -> GuardedTx {
        self.scheduling = true;
        self
    }

    /// A `/fhir` write transaction that may write Appointments on the condition that the
    /// scheduling workflow commits it: every Appointment version written is kept
    /// ([`GuardedTx::take_booked`]), and [`GuardedTx::commit`] refuses while one is kept, so the
    /// only way such a transaction commits is after the workflow has claimed (or released) the
    /// clinician's time in it.
    pub fn booking_on_commit(mut self) -> GuardedTx {
        self.booked = Some(Vec::new());
        self
    }

    /// The Appointment versions written since [`GuardedTx::booking_on_commit`], in order (taken:
    /// the one who takes them commits for them).
    pub fn take_booked(&mut self) -> Vec<Version> {
        self.booked.as_mut().map(std::mem::take).unwrap_or_default()
    }

    /// The same transaction as the intake workflow's when it records the red flags a patient's
    /// own answers raised: it may create `Flag`s even for a caller on the patient's side
    /// (creating only: changing or deleting one stays the care team's).
    pub fn safety_record(mut self) -> GuardedTx {
        self.safety_record = true;
        self
    }

    pub fn access(&self) -> &Access {
        &self.access
    }

    /// The version facts of a resource (ids are not secret: they are random).
    pub async fn current(&mut self, resource_type: &str, id: &str) -> Result<Option<CurrentState>, StoreError> {
        self.tx.current(resource_type, id).await
    }

    /// [`StoreTx::current_many`]: which of `ids` exist (as `current`, no content is read).
    pub async fn current_many(
        &mut self,
        resource_type: &str,
        ids: &[String],
    ) -> Result<std::collections::HashMap<String, CurrentState>, StoreError> {
        self.tx.current_many(resource_type, ids).await
    }

    pub async fn read(&mut self, resource_type: &str, id: &str) -> Result<Current, StoreError> {
        if !self.access.allows(Op::Read, resource_type) {
            return Err(forbidden(Op::Read, resource_type));
        }
        if self.access.reach != Reach::All && !self.tx.in_reach(&self.access, resource_type, id).await? {
            return Ok(Current::NotFound);
        }
        let current = self.tx.read(resource_type, id).await?;
        if let Current::Found(v) = &current
            && hidden_draft(&self.access, v)
        {
            return Ok(Current::NotFound);
        }
        if let Current::Found(v) | Current::Deleted(v) = &current {
            tell(self.witness.as_ref(), std::slice::from_ref(v));
        }
        Ok(current)
    }

    pub async fn find(&mut self, query: &SearchQuery, limit: u32) -> Result<Vec<Version>, StoreError> {
        let mut query = query.clone();
        if !narrow_types(&self.access, &mut query) {
            return Ok(Vec::new());
        }
        let mut found = self.tx.find(&self.access, &query, limit).await?;
        found.retain(|v| !hidden_draft(&self.access, v));
        tell(self.witness.as_ref(), &found);
        Ok(found)
    }

    /// The audit chain's last link, locked until commit (system access only).
    pub async fn audit_head(&mut self) -> Result<Option<(i64, String)>, StoreError> {
        self.system_only()?;
        self.tx.audit_head().await
    }

    /// Journals audit events and their chain links (system access only).
    pub async fn audit_journal(&mut self, links: &[crate::AuditLink]) -> Result<(), StoreError> {
        self.system_only()?;
        self.tx.audit_journal(links).await
    }

    /// Journaled events not yet indexed, locked against other indexers (system access only).
    pub async fn audit_pending(&mut self, limit: u32) -> Result<Vec<crate::AuditLink>, StoreError> {
        self.system_only()?;
        self.tx.audit_pending(limit).await
    }

    /// Makes journaled events searchable (system access only; each must be a new AuditEvent at
    /// version 1, which the trail's readers rely on).
    pub async fn audit_index(&mut self, events: &[crate::IndexedEvent], through_seq: i64) -> Result<(), StoreError> {
        self.system_only()?;
        if let Some(bad) = events
            .iter()
            .find(|e| e.version.resource_type != AUDIT_TYPE || e.version.version_id != 1 || e.version.body.is_none())
        {
            return Err(StoreError::Forbidden(format!(
                "only new AuditEvents go on the audit trail, not {}/{} version {}",
                bad.version.resource_type, bad.version.id, bad.version.version_id
            )));
        }
        self.tx.audit_index(events, through_seq).await
    }

    fn system_only(&self) -> Result<(), StoreError> {
        if self.access == Access::system() {
            Ok(())
        } else {
            Err(StoreError::Forbidden("only the server itself writes the audit trail".into()))
        }
    }

    /// Persists a version built by [`crate::interactions`] after checking the caller may write it.
    pub async fn persist(&mut self, version: &Version, index: &[IndexEntry]) -> Result<(), StoreError> {
        let rt = &version.resource_type;
        if rt == AUDIT_TYPE && self.access != Access::system() {
            return Err(StoreError::Forbidden("AuditEvents are written by the server only and never changed".into()));
        }
        if rt == BOOKED_TYPE && !self.scheduling && self.booked.is_none() && self.access != Access::system() {
            return Err(StoreError::Forbidden(
                "Appointments are booked, changed and cancelled through Appointment/$book and /api/v1/appointments, \
                 which keep a clinician's time free of double bookings"
                    .into(),
            ));
        }
        if rt == SAFETY_TYPE && matches!(&self.access.reach, Reach::Patients { set: PatientSet::Ids(_), .. }) {
            let creating = version.version_id == 1 && version.body.is_some();
            if !(creating && self.safety_record) {
                return Err(StoreError::Forbidden(
                    "Flags are the care team's safety alerts: a patient or caregiver may read them but not \
                     create, change or delete them"
                        .into(),
                ));
            }
        }
        // A first version needs no look-up (one statement per created resource saved): the
        // database refuses a version 1 of a resource that already has one (`UNIQUE (res_type,
        // res_id, version)`), so nothing is written over an existing resource by claiming it
        // is new, and the caller that numbered it has already read its current state.
        let previous =
            if version.version_id == 1 { None } else { self.tx.current(rt, &version.id).await?.filter(|c| !c.deleted) };
        let op = match (&version.body, previous) {
            (None, _) => Op::Delete,
            (Some(_), Some(_)) => Op::Update,
            (Some(_), None) => Op::Create,
        };
        if !self.access.allows(op, rt) {
            return Err(forbidden(op, rt));
        }
        if let Reach::Patients { set, scheme } = &self.access.reach {
            if previous.is_some() && !self.tx.in_reach(&self.access, rt, &version.id).await? {
                return Err(forbidden(op, rt));
            }
            if version.body.is_some() {
                let named = if rt == "Patient" {
                    vec![version.id.clone()]
                } else {
                    patients_named(scheme.params_of(rt).unwrap_or(&[]), index)
                };
                if named.is_empty() {
                    return Err(StoreError::Forbidden(format!(
                        "a {rt} written by this caller must belong to a patient record it may write"
                    )));
                }
                for patient in &named {
                    let ok = match set {
                        PatientSet::Ids(ids) => ids.contains(patient),
                        PatientSet::Organization { .. } => self.tx.in_reach(&self.access, "Patient", patient).await?,
                    };
                    if !ok {
                        return Err(StoreError::Forbidden(format!(
                            "this {rt} names a patient whose record this caller may not write"
                        )));
                    }
                }
            }
        }
        self.tx.persist(version, index, self.access.actor.as_deref()).await?;
        tell(self.witness.as_ref(), std::slice::from_ref(version));
        if let (true, Some(booked)) = (rt == BOOKED_TYPE, self.booked.as_mut()) {
            booked.push(version.clone());
        }
        Ok(())
    }

    pub async fn commit(self) -> Result<(), StoreError> {
        if self.booked.as_ref().is_some_and(|b| !b.is_empty()) {
            return Err(StoreError::Forbidden(
                "Appointments written through FHIR are committed by the scheduling workflow, which claims the \
                 clinician's time"
                    .into(),
            ));
        }
        self.tx.commit().await
    }

    /// Erases a patient's record (see [`crate::ErasurePlan`]): irreversible, so only an
    /// administrator's access (unrestricted, with the audit trail) or the system's may.
    pub async fn erase_patient(&mut self, plan: &crate::ErasurePlan) -> Result<crate::Erasure, StoreError> {
        if !self.access.is_unrestricted() || !self.access.audit {
            return Err(StoreError::Forbidden("only an administrator may erase a patient's record".into()));
        }
        self.tx.erase_patient(plan, self.access.actor.as_deref()).await
    }

    /// The transaction itself, for a backend family's extension of it (see
    /// [`StoreTx::into_any`]): what is written through it from here on is not checked against
    /// the access, so callers hand it on only for rows outside the resource store.
    pub fn into_inner(self) -> Box<dyn StoreTx> {
        self.tx
    }
}

/// The ids of the Patients a resource references through its compartment parameters.
fn patients_named(params: &[String], index: &[IndexEntry]) -> Vec<String> {
    let mut out: Vec<String> = Vec::new();
    for entry in index.iter().filter(|e| params.contains(&e.param)) {
        if let IndexValue::Reference { target_type: Some(t), target_id: Some(id), .. } = &entry.value
            && t == "Patient"
            && !out.contains(id)
        {
            out.push(id.clone());
        }
    }
    out
}
