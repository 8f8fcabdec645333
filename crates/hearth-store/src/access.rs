//! Authorization as part of the storage API: the [`Access`] value every read, search and write
//! of resources needs (see [`crate::Guarded`]).
//!
//! The HTTP edge resolves *who* is calling (token, role, SMART scopes, caregiver grants) into an
//! `Access`; the store decides *what* that reaches, in the same SQL that reads the data, so a
//! handler cannot forget a check and a search cannot return a row the caller may not see.
//!
//! Two independent limits, both must allow:
//! - [`Reach`]: whose data. `All` (staff of a single-organisation deployment, admins, internal
//!   jobs), or the Patient compartments of a set of patients (a patient, a caregiver, a clinician
//!   limited to one organisation's patients, a SMART `patient/` launch). A resource is in reach
//!   when it is one of those `Patient`s or lies in one of their compartments (the official R4
//!   Patient CompartmentDefinition); resource types outside every patient's compartment that
//!   hold no one's clinical record (directories, terminology, definitions: [`Reach::Patients`]'s
//!   `shared` list) are readable but never writable.
//! - [`Grants`]: which interactions on which resource types (from SMART scopes or the role).

use std::collections::BTreeSet;
use std::sync::Arc;

/// The interactions grants distinguish (SMART v2's `c r u d s`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Op {
    Create,
    Read,
    Update,
    Delete,
    Search,
}

/// Resource types an interaction is granted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TypeGrant {
    All,
    Only(BTreeSet<String>),
}

impl TypeGrant {
    pub fn none() -> TypeGrant {
        TypeGrant::Only(BTreeSet::new())
    }

    pub fn allows(&self, resource_type: &str) -> bool {
        match self {
            TypeGrant::All => true,
            TypeGrant::Only(types) => types.contains(resource_type),
        }
    }
}

/// Per interaction, the resource types it is granted on.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grants {
    pub create: TypeGrant,
    pub read: TypeGrant,
    pub update: TypeGrant,
    pub delete: TypeGrant,
    pub search: TypeGrant,
}

impl Grants {
    pub fn all() -> Grants {
        Grants {
            create: TypeGrant::All,
            read: TypeGrant::All,
            update: TypeGrant::All,
            delete: TypeGrant::All,
            search: TypeGrant::All,
        }
    }

    pub fn get(&self, op: Op) -> &TypeGrant {
        match op {
            Op::Create => &self.create,
            Op::Read => &self.read,
            Op::Update => &self.update,
            Op::Delete => &self.delete,
            Op::Search => &self.search,
        }
    }

    pub fn allows(&self, op: Op, resource_type: &str) -> bool {
        self.get(op).allows(resource_type)
    }
}

/// Which patients a [`Reach::Patients`] covers.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PatientSet {
    /// These `Patient` ids (a patient's own, a caregiver's grants, a SMART launch context).
    Ids(Vec<String>),
    /// Every `Patient` whose `managingOrganization` is `org`, and the patients `also` (who
    /// consented to share their record with the caller).
    Organization { org: String, also: Vec<String> },
}

/// The Patient CompartmentDefinition and the list of shared types, as the store needs them.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatientScheme {
    /// Per resource type, the reference parameters that place a resource in a Patient's
    /// compartment (`Observation` → `subject`, `performer`).
    pub compartment: Vec<(String, Vec<String>)>,
    /// Types that are no one's record and may be read by anyone authenticated.
    pub shared: BTreeSet<String>,
}

impl PatientScheme {
    pub fn params_of(&self, resource_type: &str) -> Option<&[String]> {
        self.compartment.iter().find(|(t, _)| t == resource_type).map(|(_, p)| p.as_slice())
    }
}

/// Whose data a caller reaches.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reach {
    All,
    Patients { set: PatientSet, scheme: Arc<PatientScheme> },
}

/// The authorization proof a caller hands to the store.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Access {
    pub reach: Reach,
    pub grants: Grants,
    /// The account acting, to which writes are attributed; `None` for the system itself.
    pub actor: Option<String>,
    /// May read and search the audit trail (`AuditEvent`s): admins and the system. Nobody
    /// writes it through the store's interactions but the server itself.
    pub audit: bool,
}

impl Access {
    /// Everything: internal jobs (reindex, export workers) and admins.
    pub fn system() -> Access {
        Access { reach: Reach::All, grants: Grants::all(), actor: None, audit: true }
    }

    /// Whether the caller may perform `op` on resources of `resource_type` at all (before looking
    /// at which resource).
    pub fn allows(&self, op: Op, resource_type: &str) -> bool {
        if !self.grants.allows(op, resource_type) {
            return false;
        }
        match &self.reach {
            Reach::All => true,
            Reach::Patients { scheme, .. } => {
                resource_type == "Patient"
                    || scheme.params_of(resource_type).is_some()
                    || (matches!(op, Op::Read | Op::Search) && scheme.shared.contains(resource_type))
            }
        }
    }

    /// Unrestricted reach and every grant (whoever the actor is).
    pub fn is_unrestricted(&self) -> bool {
        self.reach == Reach::All && self.grants == Grants::all()
    }
}
