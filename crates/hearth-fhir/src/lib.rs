//! Pure FHIR R4 knowledge for Hearth: the structure model of every R4 type and a structural
//! validator for resources in the R4 JSON format. No I/O, no async, no global state.
//!
//! # What this crate owns
//! - [`Model`]: the 147 resource types Hearth serves (the 146 of FHIR 4.0.1 plus the R4B
//!   `SubscriptionStatus`), all complex data types and all primitive types, with every element's
//!   cardinality, types (with `Reference`/`canonical` targets), choice elements, `contentReference`,
//!   `isSummary`/`isModifier`, and the primitive regexes. It is generated from the official
//!   StructureDefinitions by `scripts/gen-r4-model.py` into `data/r4-model.json` (see
//!   `data/README.md` for sources and licences) and embedded in the binary. Parse it once with
//!   [`Model::r4`] and share it by reference (the server keeps it in an `Arc`).
//! - Type lookup for the FHIRPath engine and the search indexer: [`Model::type_def`],
//!   [`Model::element`] (by spec path), [`Model::scope`] / [`Scope::child`] (by JSON property
//!   name, resolving `valueQuantity` to `value[x]` of type `Quantity`, backbone elements and
//!   `contentReference`).
//! - [`Model::validate`]: strict structural validation of one resource (and every resource nested
//!   in it: `contained`, `Bundle.entry.resource`, `Parameters.parameter.resource`, ...):
//!   - the root is an object whose `resourceType` names a concrete resource type;
//!   - every property is a known element; `resourceType` only at a resource root;
//!   - cardinality and JSON shape: max 1 is never an array, max `*` always is, arrays are never
//!     empty, objects are never empty, `null` only as alignment padding in primitive arrays,
//!     required elements (min >= 1) are present (as `name`, `_name` or a choice variant);
//!   - at most one type per choice element;
//!   - primitives: JSON kind (boolean, number for integer/decimal/positiveInt/unsignedInt with
//!     32-bit ranges, string otherwise) and the spec's lexical rules for id, code, uri, oid, uuid,
//!     base64Binary, date, dateTime, instant, time (hand-written, equivalent to the spec regexes,
//!     plus real calendar dates); strings are not empty or all whitespace and at most 1 MB;
//!     narrative is an XHTML `<div>` string;
//!   - `_name` companions: an object with `id`/`extension`, or for arrays an array aligned with
//!     the values; `extension`/`modifierExtension` items need `url` (Extension.url is required).
//!
//!   It never panics, allocates nothing per element for a valid resource, stops after
//!   100 issues and does not follow JSON nested deeper than 64 objects.
//!
//! # What it deliberately does not do
//! - **No invariants**: the FHIRPath constraints of the spec (`ele-1` beyond non-empty objects,
//!   `dom-2`..`dom-6`, `ext-1`, `txt-1`/`txt-2` XHTML content rules, resource-specific rules) are not
//!   evaluated; that needs the FHIRPath engine.
//! - **No terminology**: bindings are not checked (a `code` only has to be lexically valid).
//! - **No profiles**: only the base R4 definitions; `meta.profile` is not followed, extensions are
//!   not checked against their definitions, and `SimpleQuantity`-style constraint profiles are not
//!   applied.
//! - **No reference resolution**: `Reference.reference` is not resolved or checked for its target
//!   type.
//! - **No duplicate-key detection**: it works on a parsed `serde_json::Value`, where a repeated key
//!   has already been collapsed; the HTTP edge must reject duplicates while parsing if it cares.
//! - No I/O, no XML format.

#![forbid(unsafe_code)]

mod issue;
pub mod json_patch;
mod model;
mod primitive;
pub mod strict_json;
mod validate;

pub use issue::{Issue, IssueCode, Severity};
pub use model::{Child, ElementDef, Max, Model, ModelError, Scope, TypeDef, TypeKind, TypeRef};

impl Model {
    /// Validates one resource in R4 JSON form. An empty result means valid.
    ///
    /// All issues found are returned (up to 100), in document order; see [`Issue`] for the
    /// expression format. Never panics, whatever the input.
    pub fn validate(&self, resource: &serde_json::Value) -> Vec<Issue> {
        validate::validate(self, resource)
    }
}
