//! The search request the store answers and the page it returns.

use hearth_search::SearchQuery;

use crate::{Access, Version};

/// A search to run: the parsed query (after the caller resolved terminology and hierarchy tests,
/// see [`hearth_search::Test`]), an optional compartment, and paging state.
#[derive(Debug, Clone)]
pub struct SearchRequest {
    pub query: SearchQuery,
    /// Whose data and which types the caller reaches; the store narrows matches and includes to
    /// it (set by [`crate::Guarded::search`]).
    pub access: Access,
    pub compartment: Option<Compartment>,
    /// The opaque cursor of a `next`/`previous` link, as the store produced it.
    pub cursor: Option<String>,
    /// Whether to count all matches (`Bundle.total`).
    pub count_total: bool,
}

/// A compartment (`GET /fhir/Patient/123/Observation`): only resources that reference the owner
/// through one of the compartment's parameters for their type.
#[derive(Debug, Clone)]
pub struct Compartment {
    pub owner_type: String,
    pub owner_id: String,
    /// Per resource type, the reference parameters that place a resource in the compartment.
    pub params: Vec<(String, Vec<String>)>,
}

/// One page of results.
#[derive(Debug, Clone, Default)]
pub struct SearchPage {
    /// The matches of this page, in result order.
    pub matches: Vec<Version>,
    /// Resources added by `_include`/`_revinclude` (not among the matches).
    pub included: Vec<Version>,
    /// All matches (not only this page), when counted.
    pub total: Option<u64>,
    /// Cursor of the next page, if any.
    pub next: Option<String>,
    /// Cursor of the previous page, if any.
    pub previous: Option<String>,
    /// True when includes were cut at the include limit.
    pub includes_truncated: bool,
}
