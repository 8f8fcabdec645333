//! Why a search query was refused.

use std::fmt;

/// A stable, machine-readable reason for a [`SearchError`]. The server maps every kind to
/// `400 Bad Request` with an OperationOutcome; the code goes into its `details`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum SearchErrorKind {
    /// No such parameter for the searched type(s) (dropped under lenient handling).
    UnknownParameter,
    /// A parameter FHIR defines that Hearth does not support (`_contained`, `_filter`,
    /// `_query`, `near`, ...); dropped under lenient handling.
    UnsupportedParameter,
    /// `name:xyz` where `xyz` is no FHIR modifier (nor a resource type for a reference).
    UnknownModifier,
    /// A modifier the parameter's type does not allow (`birthdate:exact`, `subject:Device`
    /// when `Device` is not a target).
    InvalidModifier,
    /// A value that does not parse for the parameter's type (`birthdate=yesterday`), an empty
    /// value, or a prefix the parameter does not take.
    InvalidValue,
    /// A resource type that does not exist (in `_type`, `_include`, `_has`, a type modifier).
    UnknownResourceType,
    /// A chain whose target type cannot be decided (`subject.name` where the targets define
    /// `name` with different types): add a type modifier (`subject:Patient.name`).
    AmbiguousChain,
    /// A result parameter used wrongly: repeated `_count`/`_sort`/..., `_sort` on a parameter
    /// that cannot be sorted, `_include` of a non-reference parameter.
    InvalidParameter,
    /// More parameters than [`crate::MAX_PARAMETERS`] or more values in all than
    /// [`crate::MAX_VALUES`]: the query is refused before any work is done.
    TooCostly,
}

impl SearchErrorKind {
    /// The stable code (kebab-case), for OperationOutcome details and logs.
    pub fn code(self) -> &'static str {
        match self {
            SearchErrorKind::UnknownParameter => "unknown-parameter",
            SearchErrorKind::UnsupportedParameter => "unsupported-parameter",
            SearchErrorKind::UnknownModifier => "unknown-modifier",
            SearchErrorKind::InvalidModifier => "invalid-modifier",
            SearchErrorKind::InvalidValue => "invalid-value",
            SearchErrorKind::UnknownResourceType => "unknown-resource-type",
            SearchErrorKind::AmbiguousChain => "ambiguous-chain",
            SearchErrorKind::InvalidParameter => "invalid-parameter",
            SearchErrorKind::TooCostly => "too-costly",
        }
    }

    /// Whether [`crate::Handling::Lenient`] drops the parameter instead of failing.
    pub fn ignorable(self) -> bool {
        matches!(self, SearchErrorKind::UnknownParameter | SearchErrorKind::UnsupportedParameter)
    }
}

impl fmt::Display for SearchErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.code())
    }
}

/// A refused search: which parameter (as written in the query, e.g. `subject:Patient.name`)
/// and why. The message names the parameter and may quote the offending value: it is meant for
/// the client (OperationOutcome diagnostics), not for logs, which must not carry query content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SearchError {
    pub kind: SearchErrorKind,
    pub param: String,
    pub message: String,
}

impl SearchError {
    pub(crate) fn new(kind: SearchErrorKind, param: &str, message: impl Into<String>) -> SearchError {
        SearchError { kind, param: param.to_string(), message: message.into() }
    }
}

impl fmt::Display for SearchError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "search parameter `{}`: {}", self.param, self.message)
    }
}

impl std::error::Error for SearchError {}
