//! Validation findings, shaped like `OperationOutcome.issue` so the HTTP edge can map them 1:1.

use std::fmt;

/// `OperationOutcome.issue.severity` (value set `issue-severity`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Severity {
    /// The content could not be processed at all (not a resource).
    Fatal,
    Error,
    Warning,
    Information,
}

impl Severity {
    /// The FHIR code: `fatal`, `error`, `warning`, `information`.
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Fatal => "fatal",
            Severity::Error => "error",
            Severity::Warning => "warning",
            Severity::Information => "information",
        }
    }
}

/// `OperationOutcome.issue.code` (value set `issue-type`, FHIR R4): the complete list, so the rest
/// of the server can use it for its own outcomes too.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum IssueCode {
    Invalid,
    /// Wrong JSON shape: unknown element, array where a single value belongs, `null`, ...
    Structure,
    /// A required element is missing.
    Required,
    /// A primitive value is of the wrong JSON kind or does not match its type's format.
    Value,
    Invariant,
    Security,
    Login,
    Unknown,
    Expired,
    Forbidden,
    Suppressed,
    Processing,
    /// E.g. an unknown resource type.
    NotSupported,
    Duplicate,
    MultipleMatches,
    NotFound,
    Deleted,
    TooLong,
    CodeInvalid,
    Extension,
    /// The validator gave up: nesting too deep or too many issues.
    TooCostly,
    BusinessRule,
    Conflict,
    Transient,
    LockError,
    NoStore,
    Exception,
    Timeout,
    Incomplete,
    Throttled,
    Informational,
}

impl IssueCode {
    /// The FHIR code, e.g. `structure`, `not-supported`.
    pub fn as_str(self) -> &'static str {
        match self {
            IssueCode::Invalid => "invalid",
            IssueCode::Structure => "structure",
            IssueCode::Required => "required",
            IssueCode::Value => "value",
            IssueCode::Invariant => "invariant",
            IssueCode::Security => "security",
            IssueCode::Login => "login",
            IssueCode::Unknown => "unknown",
            IssueCode::Expired => "expired",
            IssueCode::Forbidden => "forbidden",
            IssueCode::Suppressed => "suppressed",
            IssueCode::Processing => "processing",
            IssueCode::NotSupported => "not-supported",
            IssueCode::Duplicate => "duplicate",
            IssueCode::MultipleMatches => "multiple-matches",
            IssueCode::NotFound => "not-found",
            IssueCode::Deleted => "deleted",
            IssueCode::TooLong => "too-long",
            IssueCode::CodeInvalid => "code-invalid",
            IssueCode::Extension => "extension",
            IssueCode::TooCostly => "too-costly",
            IssueCode::BusinessRule => "business-rule",
            IssueCode::Conflict => "conflict",
            IssueCode::Transient => "transient",
            IssueCode::LockError => "lock-error",
            IssueCode::NoStore => "no-store",
            IssueCode::Exception => "exception",
            IssueCode::Timeout => "timeout",
            IssueCode::Incomplete => "incomplete",
            IssueCode::Throttled => "throttled",
            IssueCode::Informational => "informational",
        }
    }
}

/// One finding of [`Model::validate`](crate::Model::validate).
///
/// `expression` is a FHIRPath-style location using JSON property names:
/// `Patient.name[0].given[1]`, `Observation.valueQuantity.value`,
/// `Bundle.entry[2].resource.birthDate`. Findings about an `_name` companion are reported at
/// `name` (FHIRPath has no `_`): `Patient.birthDate.extension[0].url`. For the root document the
/// expression is `resourceType` (missing or unknown type) or empty (not a JSON object).
///
/// `message` never contains values from the resource (they may be PHI), only element and type names.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Issue {
    pub severity: Severity,
    pub code: IssueCode,
    pub expression: String,
    pub message: String,
}

impl fmt::Display for Issue {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} at `{}`: {}", self.severity.as_str(), self.code.as_str(), self.expression, self.message)
    }
}
