//! SMART on FHIR scopes (App Launch v1 and v2), parsed into types, and the permission check.
//!
//! ## Grammar
//! - Clinical scopes: `<context>/<resource>.<permissions>[?<query>]` where context is `patient`, `user`
//!   or `system`; resource is a FHIR resource type or `*`; permissions are either v1 (`read` = r+s,
//!   `write` = c+u+d, `*` = all) or v2 (a non-empty subset of `c r u d s`, in that order, each at most
//!   once, e.g. `rs`, `cruds`). A v2 scope may narrow itself with a query (`?category=…&…`), which is
//!   parsed into name/value pairs and kept verbatim; v1 scopes have no query syntax.
//! - Launch and identity scopes: `launch`, `launch/patient`, `launch/encounter`, `openid`, `fhirUser`,
//!   `offline_access`, `online_access`.
//!
//! Anything else is reported as an error and never turned into a permission: an unknown context, a
//! permission like `readwrite` or `rsc`, a lowercase resource type, an empty query parameter. Callers
//! that may grant a subset (an authorization request) use [`ScopeSet::parse_lenient`] and tell the
//! client what was dropped; callers that must not (a token being verified) use [`ScopeSet::parse`].
//!
//! ## Permission check
//! [`ScopeSet::access`] answers for one context, resource type and [`Interaction`]: [`Access::Full`]
//! if some scope without a query grants it, [`Access::Restricted`] with the queries if only narrowed
//! scopes grant it (the caller must apply one of them, e.g. as extra search criteria, or refuse), and
//! [`Access::Denied`] otherwise. [`ScopeSet::permits`] is the yes/no form and only says yes for `Full`,
//! so a forgotten query can never widen access. Which *patient* a `patient/` scope means, and whether
//! a `user/` scope's user may see a record at all, is decided by the authorization layer, not here.

use core::fmt;

/// Whose data a clinical scope reaches.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum ScopeContext {
    /// The patient in the launch context (`patient/`).
    Patient,
    /// Whatever the signed-in user may see (`user/`).
    User,
    /// A backend service, no user (`system/`).
    System,
}

impl ScopeContext {
    pub fn as_str(self) -> &'static str {
        match self {
            ScopeContext::Patient => "patient",
            ScopeContext::User => "user",
            ScopeContext::System => "system",
        }
    }

    fn parse(text: &str) -> Option<Self> {
        match text {
            "patient" => Some(ScopeContext::Patient),
            "user" => Some(ScopeContext::User),
            "system" => Some(ScopeContext::System),
            _ => None,
        }
    }
}

/// The resource part of a clinical scope.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum ResourceScope {
    /// `*`: every resource type.
    Any,
    /// One resource type, e.g. `Observation`.
    Type(String),
}

impl ResourceScope {
    fn covers(&self, resource_type: &str) -> bool {
        match self {
            ResourceScope::Any => true,
            ResourceScope::Type(name) => name == resource_type,
        }
    }
}

/// A set of the five SMART v2 permissions.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Default)]
pub struct Permissions(u8);

impl Permissions {
    pub const CREATE: Permissions = Permissions(1);
    pub const READ: Permissions = Permissions(2);
    pub const UPDATE: Permissions = Permissions(4);
    pub const DELETE: Permissions = Permissions(8);
    pub const SEARCH: Permissions = Permissions(16);
    pub const NONE: Permissions = Permissions(0);
    pub const ALL: Permissions = Permissions(31);
    /// SMART v1 `read`: read and search.
    pub const V1_READ: Permissions = Permissions(2 | 16);
    /// SMART v1 `write`: create, update and delete.
    pub const V1_WRITE: Permissions = Permissions(1 | 4 | 8);

    /// The letters in canonical order, with their permission.
    const LETTERS: [(char, Permissions); 5] = [
        ('c', Permissions::CREATE),
        ('r', Permissions::READ),
        ('u', Permissions::UPDATE),
        ('d', Permissions::DELETE),
        ('s', Permissions::SEARCH),
    ];

    pub fn contains(self, other: Permissions) -> bool {
        self.0 & other.0 == other.0
    }

    pub fn union(self, other: Permissions) -> Permissions {
        Permissions(self.0 | other.0)
    }

    pub fn is_empty(self) -> bool {
        self.0 == 0
    }

    /// Parses v2 letters: non-empty, in `cruds` order, no repeats.
    fn parse_v2(text: &str) -> Option<Permissions> {
        let mut permissions = Permissions::NONE;
        let mut next = 0;
        for letter in text.chars() {
            let position = Self::LETTERS.iter().skip(next).position(|(l, _)| *l == letter)? + next;
            let (_, permission) = Self::LETTERS.get(position)?;
            permissions = permissions.union(*permission);
            next = position + 1;
        }
        (!permissions.is_empty()).then_some(permissions)
    }
}

impl fmt::Display for Permissions {
    /// The v2 letters, e.g. `rs`.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (letter, permission) in Self::LETTERS {
            if self.contains(permission) {
                write!(f, "{letter}")?;
            }
        }
        Ok(())
    }
}

/// How the permissions were written, so a scope prints back as it was granted.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum ScopeSyntax {
    /// `read`, `write` or `*`.
    V1,
    /// `c r u d s` letters.
    V2,
}

/// The `?name=value&…` part of a v2 scope, kept verbatim.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Default)]
pub struct ScopeQuery(Vec<(String, String)>);

impl ScopeQuery {
    pub fn params(&self) -> &[(String, String)] {
        &self.0
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    fn parse(text: &str) -> Option<ScopeQuery> {
        let mut params = Vec::new();
        for pair in text.split('&') {
            let (name, value) = pair.split_once('=')?;
            if name.is_empty() || value.is_empty() {
                return None;
            }
            params.push((name.to_owned(), value.to_owned()));
        }
        Some(ScopeQuery(params))
    }
}

/// A clinical-data scope such as `patient/Observation.rs?category=laboratory`.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct ClinicalScope {
    pub context: ScopeContext,
    pub resource: ResourceScope,
    pub permissions: Permissions,
    pub syntax: ScopeSyntax,
    /// Empty unless the scope narrowed itself with `?…` (v2 only).
    pub query: ScopeQuery,
}

/// One scope token.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub enum Scope {
    Clinical(ClinicalScope),
    /// `launch`: EHR launch with a launch context.
    Launch,
    /// `launch/patient`: ask for a patient to be chosen at standalone launch.
    LaunchPatient,
    /// `launch/encounter`: ask for an encounter context at standalone launch.
    LaunchEncounter,
    /// `openid`: an OpenID Connect id token.
    OpenId,
    /// `fhirUser`: the user's FHIR resource in the id token.
    FhirUser,
    /// `offline_access`: a refresh token that outlives the session.
    OfflineAccess,
    /// `online_access`: a refresh token valid while the user is online.
    OnlineAccess,
}

/// Why a scope token was not accepted.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{kind} scope: {scope:?}")]
pub struct ScopeError {
    /// The token as presented.
    pub scope: String,
    pub kind: ScopeErrorKind,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum ScopeErrorKind {
    /// Not a clinical scope and not one of the known launch/identity scopes.
    #[error("unknown")]
    Unknown,
    /// Looks like a clinical scope but breaks its grammar.
    #[error("malformed")]
    Malformed,
    /// Well-formed, but the resource type is not one the server knows.
    #[error("unknown resource type in")]
    UnknownResourceType,
}

impl ScopeErrorKind {
    pub fn code(&self) -> &'static str {
        match self {
            ScopeErrorKind::Unknown => "scope_unknown",
            ScopeErrorKind::Malformed => "scope_malformed",
            ScopeErrorKind::UnknownResourceType => "scope_unknown_resource_type",
        }
    }
}

impl Scope {
    /// Parses one scope token. Resource types are checked for shape only (an uppercase ASCII letter
    /// followed by ASCII letters and digits); use [`Scope::parse_with`] to check them against a model.
    pub fn parse(text: &str) -> Result<Scope, ScopeError> {
        Scope::parse_with(text, &|_: &str| true)
    }

    /// Parses one scope token, accepting only resource types for which `is_resource_type` is true.
    pub fn parse_with(text: &str, is_resource_type: &dyn Fn(&str) -> bool) -> Result<Scope, ScopeError> {
        let error = |kind| ScopeError { scope: text.to_owned(), kind };
        let simple = match text {
            "launch" => Some(Scope::Launch),
            "launch/patient" => Some(Scope::LaunchPatient),
            "launch/encounter" => Some(Scope::LaunchEncounter),
            "openid" => Some(Scope::OpenId),
            "fhirUser" => Some(Scope::FhirUser),
            "offline_access" => Some(Scope::OfflineAccess),
            "online_access" => Some(Scope::OnlineAccess),
            _ => None,
        };
        if let Some(scope) = simple {
            return Ok(scope);
        }
        let Some((context, rest)) = text.split_once('/') else {
            return Err(error(ScopeErrorKind::Unknown));
        };
        let Some(context) = ScopeContext::parse(context) else {
            return Err(error(ScopeErrorKind::Unknown));
        };
        let (body, query) = match rest.split_once('?') {
            Some((body, query)) => (body, Some(query)),
            None => (rest, None),
        };
        let Some((resource, permissions)) = body.split_once('.') else {
            return Err(error(ScopeErrorKind::Malformed));
        };
        let resource = if resource == "*" {
            ResourceScope::Any
        } else if is_resource_type_shaped(resource) {
            if !is_resource_type(resource) {
                return Err(error(ScopeErrorKind::UnknownResourceType));
            }
            ResourceScope::Type(resource.to_owned())
        } else {
            return Err(error(ScopeErrorKind::Malformed));
        };
        let (permissions, syntax) = match permissions {
            "read" => (Permissions::V1_READ, ScopeSyntax::V1),
            "write" => (Permissions::V1_WRITE, ScopeSyntax::V1),
            "*" => (Permissions::ALL, ScopeSyntax::V1),
            letters => {
                (Permissions::parse_v2(letters).ok_or_else(|| error(ScopeErrorKind::Malformed))?, ScopeSyntax::V2)
            }
        };
        let query = match query {
            None => ScopeQuery::default(),
            Some(_) if syntax == ScopeSyntax::V1 => return Err(error(ScopeErrorKind::Malformed)),
            Some(query) => ScopeQuery::parse(query).ok_or_else(|| error(ScopeErrorKind::Malformed))?,
        };
        Ok(Scope::Clinical(ClinicalScope { context, resource, permissions, syntax, query }))
    }
}

fn is_resource_type_shaped(text: &str) -> bool {
    let mut chars = text.chars();
    chars.next().is_some_and(|c| c.is_ascii_uppercase()) && chars.all(|c| c.is_ascii_alphanumeric())
}

impl fmt::Display for Scope {
    /// The canonical text (v1 scopes print as v1, v2 as v2), which parses back to the same value.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Scope::Launch => f.write_str("launch"),
            Scope::LaunchPatient => f.write_str("launch/patient"),
            Scope::LaunchEncounter => f.write_str("launch/encounter"),
            Scope::OpenId => f.write_str("openid"),
            Scope::FhirUser => f.write_str("fhirUser"),
            Scope::OfflineAccess => f.write_str("offline_access"),
            Scope::OnlineAccess => f.write_str("online_access"),
            Scope::Clinical(scope) => {
                write!(f, "{}/", scope.context.as_str())?;
                match &scope.resource {
                    ResourceScope::Any => f.write_str("*")?,
                    ResourceScope::Type(name) => f.write_str(name)?,
                }
                f.write_str(".")?;
                match scope.syntax {
                    ScopeSyntax::V1 if scope.permissions == Permissions::ALL => f.write_str("*")?,
                    ScopeSyntax::V1 if scope.permissions == Permissions::V1_WRITE => f.write_str("write")?,
                    ScopeSyntax::V1 => f.write_str("read")?,
                    ScopeSyntax::V2 => write!(f, "{}", scope.permissions)?,
                }
                for (index, (name, value)) in scope.query.params().iter().enumerate() {
                    f.write_str(if index == 0 { "?" } else { "&" })?;
                    write!(f, "{name}={value}")?;
                }
                Ok(())
            }
        }
    }
}

/// A FHIR interaction, as far as scopes are concerned.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Interaction {
    Create,
    Read,
    /// Reading a specific version: needs `r`.
    Vread,
    /// `_history` of one resource: needs `r`.
    HistoryInstance,
    /// `_history` of a whole type: a search over versions, needs `s` (SMART v2).
    HistoryType,
    Update,
    /// Needs `u`.
    Patch,
    Delete,
    Search,
}

impl Interaction {
    /// The permission an interaction needs.
    pub fn required(self) -> Permissions {
        match self {
            Interaction::Create => Permissions::CREATE,
            Interaction::Read | Interaction::Vread | Interaction::HistoryInstance => Permissions::READ,
            Interaction::Update | Interaction::Patch => Permissions::UPDATE,
            Interaction::Delete => Permissions::DELETE,
            Interaction::Search | Interaction::HistoryType => Permissions::SEARCH,
        }
    }
}

/// The answer of [`ScopeSet::access`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Access<'a> {
    /// No scope grants the interaction.
    Denied,
    /// Some scope grants it without restriction.
    Full,
    /// Only scopes narrowed by a query grant it: the request must satisfy at least one of these.
    Restricted(Vec<&'a ScopeQuery>),
}

/// The scopes of a token or request, without duplicates, in the order first given.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ScopeSet {
    scopes: Vec<Scope>,
}

impl ScopeSet {
    /// Parses a space-separated scope string; any unknown or malformed token fails the whole string,
    /// and every bad token is reported.
    pub fn parse(text: &str) -> Result<ScopeSet, Vec<ScopeError>> {
        Self::parse_with(text, &|_: &str| true)
    }

    /// Like [`ScopeSet::parse`], also refusing resource types for which `is_resource_type` is false.
    pub fn parse_with(text: &str, is_resource_type: &dyn Fn(&str) -> bool) -> Result<ScopeSet, Vec<ScopeError>> {
        let (set, errors) = Self::parse_lenient_with(text, is_resource_type);
        if errors.is_empty() { Ok(set) } else { Err(errors) }
    }

    /// Keeps the good tokens and reports the bad ones (for authorization requests, where the server may
    /// grant fewer scopes than asked, RFC 6749 §3.3).
    pub fn parse_lenient(text: &str) -> (ScopeSet, Vec<ScopeError>) {
        Self::parse_lenient_with(text, &|_: &str| true)
    }

    pub fn parse_lenient_with(text: &str, is_resource_type: &dyn Fn(&str) -> bool) -> (ScopeSet, Vec<ScopeError>) {
        let mut set = ScopeSet::default();
        let mut errors = Vec::new();
        for token in text.split(' ').filter(|t| !t.is_empty()) {
            match Scope::parse_with(token, is_resource_type) {
                Ok(scope) => set.insert(scope),
                Err(error) => errors.push(error),
            }
        }
        (set, errors)
    }

    /// Adds a scope unless it is already present.
    pub fn insert(&mut self, scope: Scope) {
        if !self.scopes.contains(&scope) {
            self.scopes.push(scope);
        }
    }

    pub fn contains(&self, scope: &Scope) -> bool {
        self.scopes.contains(scope)
    }

    pub fn iter(&self) -> impl Iterator<Item = &Scope> {
        self.scopes.iter()
    }

    pub fn is_empty(&self) -> bool {
        self.scopes.is_empty()
    }

    pub fn len(&self) -> usize {
        self.scopes.len()
    }

    /// Which clinical scopes grant `interaction` on `resource_type` in `context`, and how.
    pub fn access(&self, context: ScopeContext, resource_type: &str, interaction: Interaction) -> Access<'_> {
        let needed = interaction.required();
        let mut restrictions = Vec::new();
        for scope in &self.scopes {
            let Scope::Clinical(scope) = scope else { continue };
            if scope.context != context || !scope.resource.covers(resource_type) || !scope.permissions.contains(needed)
            {
                continue;
            }
            if scope.query.is_empty() {
                return Access::Full;
            }
            restrictions.push(&scope.query);
        }
        if restrictions.is_empty() { Access::Denied } else { Access::Restricted(restrictions) }
    }

    /// True only when some scope grants the interaction without a query restriction.
    pub fn permits(&self, context: ScopeContext, resource_type: &str, interaction: Interaction) -> bool {
        self.access(context, resource_type, interaction) == Access::Full
    }
}

impl fmt::Display for ScopeSet {
    /// Space-separated canonical scopes.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        for (index, scope) in self.scopes.iter().enumerate() {
            if index > 0 {
                f.write_str(" ")?;
            }
            write!(f, "{scope}")?;
        }
        Ok(())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use ScopeContext::{Patient, System, User};

    fn clinical(text: &str) -> ClinicalScope {
        match Scope::parse(text).unwrap() {
            Scope::Clinical(scope) => scope,
            other => panic!("{text} parsed as {other:?}"),
        }
    }

    fn kind(text: &str) -> ScopeErrorKind {
        Scope::parse(text).unwrap_err().kind
    }

    #[test]
    fn v1_forms() {
        let s = clinical("patient/Observation.read");
        assert_eq!(s.context, Patient);
        assert_eq!(s.resource, ResourceScope::Type("Observation".to_owned()));
        assert_eq!(s.permissions, Permissions::READ.union(Permissions::SEARCH));
        assert_eq!(s.syntax, ScopeSyntax::V1);
        assert!(s.query.is_empty());

        let s = clinical("user/*.write");
        assert_eq!((s.context, s.resource), (User, ResourceScope::Any));
        assert_eq!(s.permissions, Permissions::CREATE.union(Permissions::UPDATE).union(Permissions::DELETE));

        let s = clinical("system/*.*");
        assert_eq!((s.context, s.resource, s.permissions), (System, ResourceScope::Any, Permissions::ALL));
        let s = clinical("user/Patient.*");
        assert_eq!(s.permissions, Permissions::ALL);
    }

    #[test]
    fn v2_forms() {
        let s = clinical("patient/Observation.rs");
        assert_eq!(s.permissions, Permissions::V1_READ);
        assert_eq!(s.syntax, ScopeSyntax::V2);
        let s = clinical("user/*.cruds");
        assert_eq!((s.resource, s.permissions), (ResourceScope::Any, Permissions::ALL));
        assert_eq!(clinical("system/Encounter.c").permissions, Permissions::CREATE);
        assert_eq!(clinical("user/Appointment.cud").permissions, Permissions::V1_WRITE);
        assert_eq!(clinical("patient/Patient.r").permissions, Permissions::READ);
        assert_eq!(clinical("patient/Condition.s").permissions, Permissions::SEARCH);
        assert_eq!(clinical("patient/Condition.ds").permissions, Permissions::DELETE.union(Permissions::SEARCH));
    }

    #[test]
    fn v2_query_is_parsed_and_kept() {
        let s = clinical(
            "patient/Observation.rs?category=http://terminology.hl7.org/CodeSystem/observation-category|laboratory",
        );
        assert_eq!(
            s.query.params(),
            [(
                "category".to_owned(),
                "http://terminology.hl7.org/CodeSystem/observation-category|laboratory".to_owned()
            )]
        );
        let s = clinical("user/Observation.rs?category=vital-signs&status=final");
        assert_eq!(s.query.params().len(), 2);
        assert_eq!(s.query.params()[1], ("status".to_owned(), "final".to_owned()));
    }

    #[test]
    fn launch_and_identity_scopes() {
        for (text, scope) in [
            ("launch", Scope::Launch),
            ("launch/patient", Scope::LaunchPatient),
            ("launch/encounter", Scope::LaunchEncounter),
            ("openid", Scope::OpenId),
            ("fhirUser", Scope::FhirUser),
            ("offline_access", Scope::OfflineAccess),
            ("online_access", Scope::OnlineAccess),
        ] {
            assert_eq!(Scope::parse(text), Ok(scope.clone()), "{text}");
            assert_eq!(scope.to_string(), text);
        }
    }

    #[test]
    fn unknown_scopes_are_reported() {
        for text in [
            "profile",
            "email",
            "admin",
            "launch/practitioner",
            "doctor/Observation.read",
            "Patient/Observation.read",
            "fhiruser",
            "OPENID",
            "*",
        ] {
            assert_eq!(kind(text), ScopeErrorKind::Unknown, "{text}");
        }
    }

    #[test]
    fn malformed_clinical_scopes_are_reported_not_widened() {
        for text in [
            "patient/Observation",
            "patient/Observation.",
            "patient/.read",
            "patient/observation.read",
            "patient/Observation.readwrite",
            "patient/Observation.rsc",
            "patient/Observation.rr",
            "patient/Observation.CRUDS",
            "patient/Observation.x",
            "patient/Observation.read?category=laboratory",
            "patient/Observation.rs?",
            "patient/Observation.rs?category",
            "patient/Observation.rs?=laboratory",
            "patient/Observation.rs?category=",
            "patient/Observation.rs?category=a&&status=b",
            "patient/Obs-ervation.rs",
            "patient/Observation.r.s",
            "patient/**.rs",
            "patient/Observation .rs",
        ] {
            assert_eq!(kind(text), ScopeErrorKind::Malformed, "{text}");
        }
    }

    #[test]
    fn resource_types_can_be_checked_against_a_model() {
        let known = |name: &str| matches!(name, "Observation" | "Patient");
        assert!(Scope::parse_with("patient/Observation.rs", &known).is_ok());
        assert!(Scope::parse_with("patient/*.rs", &known).is_ok());
        let error = Scope::parse_with("patient/Foo.rs", &known).unwrap_err();
        assert_eq!(error.kind, ScopeErrorKind::UnknownResourceType);
        assert_eq!(error.kind.code(), "scope_unknown_resource_type");
        assert!(Scope::parse("patient/Foo.rs").is_ok(), "shape-only parsing accepts it");
    }

    #[test]
    fn display_round_trips() {
        for text in [
            "patient/Observation.read",
            "user/*.write",
            "system/*.*",
            "patient/Observation.rs",
            "user/*.cruds",
            "patient/Observation.rs?category=laboratory&status=final",
        ] {
            let scope = Scope::parse(text).unwrap();
            assert_eq!(scope.to_string(), text);
            assert_eq!(Scope::parse(&scope.to_string()), Ok(scope));
        }
    }

    #[test]
    fn set_parsing_is_strict_or_lenient() {
        let set = ScopeSet::parse("openid fhirUser  launch/patient patient/*.rs patient/*.rs offline_access").unwrap();
        assert_eq!(set.len(), 5, "double spaces tolerated, duplicates dropped");
        assert_eq!(set.to_string(), "openid fhirUser launch/patient patient/*.rs offline_access");
        assert!(set.contains(&Scope::OfflineAccess));
        assert!(ScopeSet::parse("").unwrap().is_empty());

        let errors = ScopeSet::parse("openid profile patient/Observation.rx").unwrap_err();
        assert_eq!(errors.len(), 2);
        assert_eq!(errors[0].scope, "profile");
        assert_eq!(errors[1].kind, ScopeErrorKind::Malformed);
        assert_eq!(errors[1].to_string(), "malformed scope: \"patient/Observation.rx\"");

        let (set, errors) = ScopeSet::parse_lenient("openid profile patient/Observation.rs");
        assert_eq!(set.to_string(), "openid patient/Observation.rs");
        assert_eq!(errors.len(), 1);
    }

    #[test]
    fn permits_by_context_type_and_interaction() {
        let set = ScopeSet::parse("patient/Observation.read user/*.write system/Patient.s").unwrap();
        assert!(set.permits(Patient, "Observation", Interaction::Read));
        assert!(set.permits(Patient, "Observation", Interaction::Search));
        assert!(!set.permits(Patient, "Observation", Interaction::Create));
        assert!(!set.permits(Patient, "Condition", Interaction::Read));
        assert!(!set.permits(User, "Observation", Interaction::Read), "contexts do not mix");
        assert!(set.permits(User, "Condition", Interaction::Create));
        assert!(set.permits(User, "Condition", Interaction::Update));
        assert!(set.permits(User, "Condition", Interaction::Patch));
        assert!(set.permits(User, "Condition", Interaction::Delete));
        assert!(!set.permits(User, "Condition", Interaction::Read));
        assert!(!set.permits(User, "Condition", Interaction::Search));
        assert!(set.permits(System, "Patient", Interaction::Search));
        assert!(!set.permits(System, "Patient", Interaction::Read));
        assert!(!ScopeSet::default().permits(User, "Patient", Interaction::Read));
        assert!(!ScopeSet::parse("openid fhirUser launch").unwrap().permits(User, "Patient", Interaction::Read));
    }

    #[test]
    fn history_and_vread_count_as_read() {
        let read_only = ScopeSet::parse("user/Observation.r").unwrap();
        assert!(read_only.permits(User, "Observation", Interaction::Vread));
        assert!(read_only.permits(User, "Observation", Interaction::HistoryInstance));
        assert!(!read_only.permits(User, "Observation", Interaction::Search));
        assert!(!read_only.permits(User, "Observation", Interaction::HistoryType), "type history is a search");
        let search_only = ScopeSet::parse("user/Observation.s").unwrap();
        assert!(search_only.permits(User, "Observation", Interaction::HistoryType));
        assert!(!search_only.permits(User, "Observation", Interaction::Vread));
    }

    #[test]
    fn query_restricted_scopes_never_grant_full_access() {
        let set =
            ScopeSet::parse("patient/Observation.rs?category=laboratory patient/Observation.rs?category=vital-signs")
                .unwrap();
        assert!(!set.permits(Patient, "Observation", Interaction::Search));
        let Access::Restricted(queries) = set.access(Patient, "Observation", Interaction::Search) else {
            panic!("expected a restricted grant");
        };
        assert_eq!(queries.len(), 2);
        assert_eq!(queries[0].params()[0].1, "laboratory");
        assert_eq!(set.access(Patient, "Observation", Interaction::Create), Access::Denied);

        let mut widened = set.clone();
        widened.insert(Scope::parse("patient/*.rs").unwrap());
        assert_eq!(widened.access(Patient, "Observation", Interaction::Search), Access::Full);
    }
}
