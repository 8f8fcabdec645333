//! Search criteria the store can answer from its indexes.
//!
//! This is the store-level form of a parsed FHIR query: the HTTP edge parses and validates query
//! strings; the store only ever sees these values, so no handler builds SQL.

/// All clauses must hold (FHIR AND across parameters); each clause is an OR of its values.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Criteria {
    pub resource_type: String,
    pub clauses: Vec<Clause>,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Clause {
    /// `_id=a,b`
    Id(Vec<String>),
    /// A token parameter (e.g. `identifier=system|value`).
    Token { param: String, any_of: Vec<TokenMatch> },
}

/// The FHIR token forms: `code`, `system|code`, `|code`, `system|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenMatch {
    /// `code`: any system.
    Code(String),
    /// `system|code`
    SystemCode { system: String, code: String },
    /// `|code`: the token has no system.
    NoSystemCode(String),
    /// `system|`: any code in the system.
    System(String),
}
