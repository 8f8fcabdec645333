//! The pure half of FHIR R4 search: which parameters exist, what a resource contributes to the
//! search indexes, and what a query means. No I/O, no SQL, no clock, no global state.
//!
//! # What this crate owns
//! - [`Registry`]: the 1,375 official R4 SearchParameters (embedded from
//!   `data/r4-search-parameters.json`, see `data/README.md`), per resource type, including the
//!   ones every resource has (`_id`, `_lastUpdated`, `_tag`, `_profile`, `_security`,
//!   `_source`, `_text`, `_content`), each with its compiled FHIRPath expression, targets,
//!   composite components and the modifiers/prefixes/chains it allows ([`SearchParam`]).
//!   SearchParameter resources created through the API are validated and added with
//!   [`Registry::add`] (and dropped with [`Registry::remove`]).
//! - Index extraction, [`Registry::index`]: a resource → [`IndexEntry`]s (parameter code +
//!   [`IndexValue`]), every value normalised for comparison (strings lower-cased and
//!   accent-free, dates as UTC millisecond ranges, numbers and quantities as precision ranges,
//!   quantities also in canonical UCUM units, references split into type/id/url/version).
//! - Query parsing, [`Registry::parse_query`]: `name=value` pairs → [`SearchQuery`], a typed
//!   AST (AND of [`Clause`]s, each an OR of values of one [`Test`], reached through chain and
//!   `_has` [`Hop`]s) plus the result parameters, and [`SearchQuery::to_query_string`] for links.
//!   Every rule a backend must apply is stated on the AST types and implemented for one
//!   resource's entries by [`Test::matches`] (the executable specification of the contract).
//!
//! # What it leaves to the storage backend
//! - storing the entries (replace a resource's rows on every write, drop them on delete) and
//!   compiling [`SearchQuery`] to SQL over them, using indexes so that a selective query does
//!   not scan resources;
//! - following references for chains, `_has`, `_include`/`_revinclude` (including `:iterate`)
//!   and `:above`/`:below` on references;
//! - terminology: `:in`/`:not-in` (expanding stored ValueSets) and `:above`/`:below` on tokens;
//! - `_list` (reading the List), `_text`/`_content` matching (the entries are provided),
//!   sorting, paging cursors, `_total` counting, `_summary`/`_elements` shaping, and the base
//!   URL of absolute references to itself.
//!
//! # Example
//!
//! ```
//! use hearth_search::{Handling, IndexValue, Registry, Test};
//!
//! let model = hearth_fhir::Model::r4().unwrap();
//! let registry = Registry::r4(&model).unwrap();
//! let patient = serde_json::json!({"resourceType": "Patient", "id": "p1",
//!     "name": [{"family": "Núñez", "given": ["José"]}], "birthDate": "1982-01-23"});
//! let entries = registry.index(&patient);
//! assert!(entries.iter().any(|e| e.param == "family"
//!     && e.value == IndexValue::String { normalized: "nunez".into(), exact: "Núñez".into() }));
//!
//! let params = vec![("family".to_string(), "NUN".to_string()), ("birthdate".to_string(), "ge1982".to_string())];
//! let query = registry.parse_query(&["Patient"], &params, Handling::Strict).unwrap();
//! assert_eq!(query.clauses[0].test, Test::StartsWith(vec!["nun".into()]));
//! // Every clause holds for the patient's entries (the reference semantics a backend implements).
//! for clause in &query.clauses {
//!     let mine: Vec<&IndexValue> = entries.iter().filter(|e| e.param == clause.param).map(|e| &e.value).collect();
//!     assert_eq!(clause.test.matches(&mine), Some(true));
//! }
//! assert_eq!(query.to_query_string(), "birthdate=ge1982&family=NUN&_count=50");
//! ```
//!
//! **Architecture Invariant:** the same registry, resource and query always give the same
//! entries and AST; nothing here reads a clock, a file or the network.

#![forbid(unsafe_code)]

mod date;
mod error;
pub mod geo;
mod index;
mod model;
mod number;
mod param;
mod parse;
mod query;
mod registry;
mod text;
pub mod ucum;

pub use date::{DatePrecision, DateRange, parse_date_range};
pub use error::{SearchError, SearchErrorKind};
pub use index::{
    COMPOSITE_LIMIT, CanonicalQuantity, FULL_TEXT_LIMIT, ISO_4217, IndexEntry, IndexValue, UCUM, content_text,
    narrative_text,
};
pub use number::{NumberRange, parse_number};
pub use param::{Component, Modifier, ParamType, Prefix, SearchParam};
pub use parse::UNSUPPORTED;
pub use query::{
    Clause, ComponentValue, CompositeValue, DEFAULT_COUNT, DateValue, Handling, Hop, Include, MAX_COUNT,
    MAX_PARAMETERS, MAX_VALUES, NumberValue, OfType, QuantityValue, ReferenceValue, SearchQuery, SortKey, Summary,
    Test, TokenSystem, TokenValue, Total, escape, exact_bounds, range_matches,
};
pub use registry::{DefinitionError, Registry};
pub use text::normalize;

/// The R4 compartments Hearth knows (today: `Patient`): per owner type, the member resource types
/// and the reference parameters that place a resource in the owner's compartment.
#[derive(Debug, Clone)]
pub struct Compartments {
    by_owner: std::collections::BTreeMap<String, Vec<(String, Vec<String>)>>,
}

impl Compartments {
    pub fn r4() -> Result<Compartments, DefinitionError> {
        let raw: std::collections::BTreeMap<String, std::collections::BTreeMap<String, Vec<String>>> =
            serde_json::from_str(include_str!("../data/r4-compartments.json"))
                .map_err(|e| DefinitionError { parameter: "compartments".into(), message: e.to_string() })?;
        Ok(Compartments { by_owner: raw.into_iter().map(|(k, v)| (k, v.into_iter().collect())).collect() })
    }

    /// The members of `owner_type`'s compartment, or `None` when no such compartment is known.
    pub fn members(&self, owner_type: &str) -> Option<&[(String, Vec<String>)]> {
        self.by_owner.get(owner_type).map(Vec::as_slice)
    }
}
