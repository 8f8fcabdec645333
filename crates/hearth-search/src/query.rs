//! The typed search query: what [`crate::Registry::parse_query`] produces and a storage backend
//! compiles to SQL.
//!
//! A [`SearchQuery`] is an AND of [`Clause`]s. A clause reaches a resource through zero or more
//! [`Hop`]s (chains and `_has`) and applies one [`Test`] to one parameter of it; the values of a
//! test are OR-ed. Every value is already normalised the way [`crate::IndexValue`] is, so a
//! backend compares columns without further processing. The matching rule of each test is stated
//! on it, and implemented for one index entry by the `matches` methods, which are the executable
//! form of this contract (a backend's tests can compare against them).

use std::fmt::Write as _;

use crate::index::{CanonicalQuantity, IndexValue};
use crate::param::{Modifier, ParamType, Prefix};

/// How to treat unknown or unsupported parameters (`Prefer: handling=...`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Handling {
    /// An unknown or unsupported parameter is an error (the default, and always the case for
    /// conditional interactions, which must never ignore a criterion).
    #[default]
    Strict,
    /// Unknown and unsupported parameters are dropped and listed in [`SearchQuery::ignored`].
    /// Malformed values of known parameters are still errors.
    Lenient,
}

/// A parsed search.
#[derive(Debug, Clone, PartialEq)]
pub struct SearchQuery {
    /// The resource types searched: the type of a type-level search; for a system-level search
    /// the `_type` list, or every resource type when `_type` is absent.
    pub resource_types: Vec<String>,
    /// The `_type` parameter as given (empty when absent), kept for the self link.
    pub type_filter: Vec<String>,
    /// All must hold (AND).
    pub clauses: Vec<Clause>,
    /// `_sort`, in priority order.
    pub sort: Vec<SortKey>,
    /// `_count`: page size, default [`DEFAULT_COUNT`], capped at [`MAX_COUNT`]; 0 asks for the
    /// total only.
    pub count: u32,
    /// `_total`, if given.
    pub total: Option<Total>,
    /// `_summary`, if given.
    pub summary: Option<Summary>,
    /// `_elements`: top-level element names to return (empty = all).
    pub elements: Vec<String>,
    /// `_include` (with `:iterate` where given).
    pub include: Vec<Include>,
    /// `_revinclude` (with `:iterate` where given).
    pub revinclude: Vec<Include>,
    /// Parameters dropped under [`Handling::Lenient`], as `name` or `name:modifier` as written.
    /// They are not in [`SearchQuery::to_query_string`], so the self link shows what was used.
    pub ignored: Vec<String>,
}

/// `_count` when absent.
pub const DEFAULT_COUNT: u32 = 50;
/// The largest page served; a larger `_count` is reduced to it.
pub const MAX_COUNT: u32 = 1000;

/// At most this many `name=value` pairs in one search (a repeated parameter counts each time;
/// `_format`/`_pretty` too). Each filter parameter is one more condition on every candidate, so
/// the bound keeps a query's cost and the SQL compiled from it (whose nesting SQLite limits)
/// in reach; more is refused with 400 `too-costly`.
pub const MAX_PARAMETERS: usize = 100;

/// At most this many values in one search, counted over every parameter (`_id=a,b,c` is three).
/// A "fetch these ids" search of up to this many ids is answered; more is refused with 400
/// `too-costly`.
pub const MAX_VALUES: usize = 1000;

/// One AND-ed condition.
///
/// `param` belongs to the resources reached by `path`: for an empty path the query's
/// [`SearchQuery::resource_types`], else the last hop's `target_types` ([`Hop::Chain`]) or
/// `source_type` ([`Hop::Has`]); it is defined (with type `kind`) on every one of them.
#[derive(Debug, Clone, PartialEq)]
pub struct Clause {
    /// How to get from the searched resource to the resource the test is about: empty for a
    /// plain parameter, one hop per chain link or `_has`.
    pub path: Vec<Hop>,
    /// The parameter's code on the resource reached (`name`, `_id`, `code-value-quantity`), or
    /// `_list` for [`Test::List`].
    pub param: String,
    /// The parameter's type.
    pub kind: ParamType,
    pub test: Test,
    /// The value exactly as the query wrote it (escapes included), for links and messages.
    pub value: String,
}

/// One step from a resource to related resources.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Hop {
    /// Forward chain (`subject:Patient.name`): the resources that the current resource's
    /// reference parameter `param` points at (by `target_type`/`target_id` of its reference
    /// entries), restricted to `target_types`. Always non-empty: the type modifier, or the
    /// parameter's targets that define the next parameter.
    Chain { param: String, target_types: Vec<String> },
    /// Reverse chain (`_has:Observation:patient`): the resources of `source_type` whose
    /// reference parameter `param` points at the current resource.
    Has { source_type: String, param: String },
}

/// The test a clause applies; the `Vec`s are OR-ed alternatives (never empty).
#[derive(Debug, Clone, PartialEq)]
pub enum Test {
    /// `:missing=true`: the resource has no index entry for the parameter; `:missing=false`:
    /// it has at least one. (Any parameter type.)
    Missing(bool),
    /// string, default: some entry's `normalized` starts with a value (values are normalized).
    StartsWith(Vec<String>),
    /// string `:contains`: some entry's `normalized` contains a value (values normalized).
    Contains(Vec<String>),
    /// string `:exact`: some entry's `exact` equals a value (case- and accent-sensitive).
    Exact(Vec<String>),
    /// token, default: some entry matches a value (see [`TokenValue::matches`]).
    Token(Vec<TokenValue>),
    /// token `:not`: **no** entry matches any of the values (resources without the parameter
    /// match).
    NotToken(Vec<TokenValue>),
    /// token `:text`: some entry's `text` starts with a value (values normalized).
    TokenText(Vec<String>),
    /// token `:of-type` (identifiers): some entry has `of_type == (type_system, type_code)`
    /// and `code == value` (see [`OfType::matches`]).
    OfType(Vec<OfType>),
    /// token `:in`: some entry's `(system, code)` is in one of the ValueSets (canonical URLs;
    /// expanding them is the backend's job).
    In(Vec<String>),
    /// token `:not-in`: no entry's `(system, code)` is in any of the ValueSets.
    NotIn(Vec<String>),
    /// token `:above` / `:below`: subsumption in the code system of the value (needs
    /// terminology; a backend without it may answer an error). `Above`: the entry's code
    /// subsumes the value; `Below`: the value subsumes the entry's code.
    TokenAbove(Vec<TokenValue>),
    TokenBelow(Vec<TokenValue>),
    /// reference: some entry matches a value (see [`ReferenceValue::matches`]); with a type
    /// modifier (`subject:Patient=123`) the entry's `target_type` must also equal
    /// `type_modifier`.
    Reference {
        type_modifier: Option<String>,
        values: Vec<ReferenceValue>,
    },
    /// reference `:identifier`: some entry's `identifier` matches a token value
    /// (`system|value`, `|value`, `value`; see [`TokenValue::matches_pair`]).
    ReferenceIdentifier(Vec<TokenValue>),
    /// reference `:above` / `:below`: hierarchical references (e.g. `Location.partOf`):
    /// `Below`: the referenced resource is the value or a descendant of it along the same
    /// parameter; `Above`: an ancestor. Values as in [`Test::Reference`].
    ReferenceAbove(Vec<ReferenceValue>),
    ReferenceBelow(Vec<ReferenceValue>),
    /// date: some entry matches a value (see [`DateValue::matches`]).
    Date(Vec<DateValue>),
    /// number: some entry matches a value (see [`NumberValue::matches`]).
    Number(Vec<NumberValue>),
    /// quantity: some entry matches a value (see [`QuantityValue::matches`]).
    Quantity(Vec<QuantityValue>),
    /// uri, default: some entry's `value` equals a value exactly.
    Uri(Vec<String>),
    /// uri `:below`: some entry's `value` starts with a value (`http://acme.org/fhir/` finds
    /// everything under it). `:above`: a value starts with some entry's `value`.
    UriBelow(Vec<String>),
    UriAbove(Vec<String>),
    /// composite: some entry matches a value component by component (see
    /// [`CompositeValue::matches`]).
    Composite(Vec<CompositeValue>),
    /// `_text` / `_content`: full text over the narrative (`_text`) or all text of the
    /// resource (`_content`), as indexed under those codes. Each value is a list of normalized
    /// words; a value matches when the indexed `normalized` text contains every word.
    Text(Vec<Vec<String>>),
    /// `_list`: the resource is an entry (`List.entry.item`) of one of these List ids.
    List(Vec<String>),
    /// `near` (`Location.position`): some entry's position is within a value's distance of its
    /// point, great-circle (see [`crate::geo::NearValue::matches_position`]).
    Near(Vec<crate::geo::NearValue>),
}

/// Which system a token value asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TokenSystem {
    /// `code`: any system (or none).
    Any,
    /// `|code`: the entry must have no system.
    Absent,
    /// `system|code` or `system|`.
    Is(String),
}

/// One token search value: `code`, `system|code`, `|code` or `system|`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenValue {
    pub system: TokenSystem,
    /// `None` only for `system|` (any code in the system).
    pub code: Option<String>,
}

impl TokenValue {
    /// The matching rule: system per [`TokenSystem`]; code equal (case-sensitive) when given.
    pub fn matches_pair(&self, system: Option<&str>, code: Option<&str>) -> bool {
        let system_ok = match &self.system {
            TokenSystem::Any => true,
            TokenSystem::Absent => system.is_none(),
            TokenSystem::Is(s) => system == Some(s.as_str()),
        };
        let code_ok = match &self.code {
            Some(c) => code == Some(c.as_str()),
            None => true,
        };
        system_ok && code_ok
    }

    /// Whether a token index entry matches.
    pub fn matches(&self, entry: &IndexValue) -> bool {
        match entry {
            IndexValue::Token { system, code, .. } => {
                code.is_some() && self.matches_pair(system.as_deref(), code.as_deref())
            }
            _ => false,
        }
    }
}

/// One `:of-type` value: `type-system|type-code|value`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OfType {
    pub type_system: Option<String>,
    pub type_code: String,
    pub value: String,
}

impl OfType {
    /// The entry's `of_type` equals `(type_system, type_code)` (an absent system matches only
    /// an absent one) and its `code` equals `value`.
    pub fn matches(&self, entry: &IndexValue) -> bool {
        match entry {
            IndexValue::Token { code, of_type: Some((sys, ty)), .. } => {
                sys.as_deref() == self.type_system.as_deref()
                    && *ty == self.type_code
                    && code.as_deref() == Some(self.value.as_str())
            }
            _ => false,
        }
    }
}

/// One reference search value.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ReferenceValue {
    /// `Type/id`, `id` or `Type/id/_history/v`: the entry's `target_id` equals `id`, its
    /// `target_type` equals `target_type` when given (`None` for a bare id: any of the
    /// parameter's targets), and its `version` equals `version` when given.
    Local { target_type: Option<String>, id: String, version: Option<String> },
    /// An absolute URL or canonical (`http://…`, `urn:uuid:…`, `url|version`): the entry's
    /// `url` equals `url`, and its `version` equals `version` when given. A backend that knows
    /// its own base URL should turn `base/Type/id` into [`ReferenceValue::Local`] before
    /// matching.
    Url { url: String, version: Option<String> },
}

impl ReferenceValue {
    pub fn matches(&self, entry: &IndexValue) -> bool {
        let IndexValue::Reference { target_type, target_id, version, url, .. } = entry else { return false };
        let version_ok = |want: &Option<String>| want.is_none() || want == version;
        match self {
            ReferenceValue::Local { target_type: ty, id, version: v } => {
                target_id.as_deref() == Some(id.as_str()) && (ty.is_none() || ty == target_type) && version_ok(v)
            }
            ReferenceValue::Url { url: u, version: v } => url.as_deref() == Some(u.as_str()) && version_ok(v),
        }
    }
}

/// One date search value: prefix and the inclusive UTC millisecond range of the value's
/// precision (`2020` → the whole year). For `ap` the range is already widened (see below).
///
/// With the entry's range `[s, e]` (see [`IndexValue::Date`]) and this range `[start, end]`:
///
/// | prefix | matches when |
/// |---|---|
/// | `eq` | `start <= s && e <= end` (the search range contains the entry) |
/// | `ne` | not `eq` |
/// | `gt` | `e > end` (part of the entry lies after the search range) |
/// | `lt` | `s < start` |
/// | `ge` | `gt` or `eq` |
/// | `le` | `lt` or `eq` |
/// | `sa` | `s > end` (the entry starts after the search range) |
/// | `eb` | `e < start` (the entry ends before the search range) |
/// | `ap` | `s <= end && e >= start` (overlap with the widened range) |
///
/// `ap` widens the value's range on each side by 10% of its width, and by at least one day
/// (the specification suggests 10% of the distance to now; the query parser has no clock, so
/// the result would not be reproducible in a link).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct DateValue {
    pub prefix: Prefix,
    pub start: i64,
    pub end: i64,
}

impl DateValue {
    pub fn matches(&self, entry: &IndexValue) -> bool {
        let IndexValue::Date { start: s, end: e } = *entry else { return false };
        let eq = self.start <= s && e <= self.end;
        match self.prefix {
            Prefix::Eq => eq,
            Prefix::Ne => !eq,
            Prefix::Gt => e > self.end,
            Prefix::Lt => s < self.start,
            Prefix::Ge => e > self.end || eq,
            Prefix::Le => s < self.start || eq,
            Prefix::Sa => s > self.end,
            Prefix::Eb => e < self.start,
            Prefix::Ap => s <= self.end && e >= self.start,
        }
    }
}

/// One number search value: prefix, the value as written and its implicit range `[low, high)`
/// (`100` → `[99.5, 100.5)`). For `ap` the range is widened to at least ±10% of the value.
///
/// With the entry's `[l, h)` (see [`IndexValue::Number`]), both half-open:
///
/// | prefix | matches when |
/// |---|---|
/// | `eq` | `low <= l && h <= high` (the search range contains the entry's range) |
/// | `ne` | not `eq` |
/// | `gt` | the entry's value (`(l + h) / 2`) is greater than exactly the search value |
/// | `lt` | … less than exactly the search value |
/// | `ge` | … greater than or equal to exactly the search value |
/// | `le` | … less than or equal to exactly the search value |
/// | `sa` | `l >= high` |
/// | `eb` | `h <= low` |
/// | `ap` | `l < high && h > low` (overlap with the widened range) |
///
/// So `multiplebirth=3` finds 3, `le3` finds 3 and 2, `lt3` finds 2 but not 3; and because
/// both sides carry their precision, `100` finds a stored `100.2` but `100.0` does not find a
/// stored `100` (which might have been 100.4). The four ordering prefixes ignore the implicit
/// precision, as R4's number examples say ("gt100: values that are greater than exactly 100"):
/// `gt7` finds a stored `7.02` (which the range rule, comparing with 7.5, would miss). Values
/// within a relative 1e-12 of each other count as equal (both sides come from decimals through
/// `f64`).
#[derive(Debug, Clone, PartialEq)]
pub struct NumberValue {
    pub prefix: Prefix,
    pub value: hearth_fhirpath::Decimal,
    pub low: f64,
    pub high: f64,
}

/// Twice the exact search value (the middle of its implicit range), widened by a relative 1e-12
/// either way: an entry's `l + h` above the first is greater than the value, below the second
/// less than it; in between, equal.
pub fn exact_bounds(low: f64, high: f64) -> (f64, f64) {
    let twice = low + high;
    let tolerance = 1e-12 * twice.abs().max(1.0);
    (twice + tolerance, twice - tolerance)
}

/// The range rule shared by numbers and quantities (see [`NumberValue`]).
pub fn range_matches(prefix: Prefix, low: f64, high: f64, l: f64, h: f64) -> bool {
    let eq = low <= l && h <= high;
    let (above, below) = exact_bounds(low, high);
    match prefix {
        Prefix::Eq => eq,
        Prefix::Ne => !eq,
        Prefix::Gt => l + h > above,
        Prefix::Lt => l + h < below,
        Prefix::Ge => l + h >= below,
        Prefix::Le => l + h <= above,
        Prefix::Sa => l >= high,
        Prefix::Eb => h <= low,
        Prefix::Ap => l < high && h > low,
    }
}

impl NumberValue {
    pub fn matches(&self, entry: &IndexValue) -> bool {
        match *entry {
            IndexValue::Number { low: l, high: h, .. } => range_matches(self.prefix, self.low, self.high, l, h),
            _ => false,
        }
    }
}

/// One quantity search value: `[prefix]number|system|code` (system and code optional).
///
/// Matching an entry (see [`IndexValue::Quantity`]):
/// 1. if both this value and the entry have a `canonical` form with the same unit, the
///    canonical ranges are compared with the number rule ([`range_matches`]); units do not
///    matter further (`185|http://unitsofmeasure.org|[lb_av]` finds `83.9 kg`);
/// 2. otherwise the written ranges are compared with the number rule, and: `system`, when
///    given, equals the entry's system; `code`, when given, equals the entry's `code`, or
///    equals its `unit` ignoring ASCII case (`185||lbs` finds `"unit": "lbs"`).
#[derive(Debug, Clone, PartialEq)]
pub struct QuantityValue {
    pub prefix: Prefix,
    pub value: hearth_fhirpath::Decimal,
    /// The implicit range of the number (widened for `ap` as for numbers).
    pub low: f64,
    pub high: f64,
    pub system: Option<String>,
    pub code: Option<String>,
    /// Set when `code` is in the supported UCUM subset and `system` is UCUM or absent.
    pub canonical: Option<CanonicalQuantity>,
}

impl QuantityValue {
    pub fn matches(&self, entry: &IndexValue) -> bool {
        let IndexValue::Quantity { low: l, high: h, system, code, unit, canonical } = entry else { return false };
        if let (Some(want), Some(have)) = (&self.canonical, canonical)
            && want.unit == have.unit
        {
            return range_matches(self.prefix, want.low, want.high, have.low, have.high);
        }
        let system_ok = self.system.is_none() || self.system == *system;
        let code_ok = match &self.code {
            None => true,
            Some(c) => {
                code.as_deref() == Some(c.as_str()) || unit.as_deref().is_some_and(|u| u.eq_ignore_ascii_case(c))
            }
        };
        system_ok && code_ok && range_matches(self.prefix, self.low, self.high, *l, *h)
    }
}

/// One composite search value: `part$part[$part]`, one part per component in order. A value
/// with fewer parts than components constrains only the leading components.
#[derive(Debug, Clone, PartialEq)]
pub struct CompositeValue(pub Vec<ComponentValue>);

/// One part of a composite value, parsed by its component parameter's type.
#[derive(Debug, Clone, PartialEq)]
pub enum ComponentValue {
    /// A string component: "starts with" on `normalized`, value normalized.
    String(String),
    Token(TokenValue),
    Reference(ReferenceValue),
    Date(DateValue),
    Number(NumberValue),
    Quantity(QuantityValue),
    /// A uri component: exact.
    Uri(String),
}

impl ComponentValue {
    pub fn matches(&self, entry: &IndexValue) -> bool {
        match (self, entry) {
            (ComponentValue::String(v), IndexValue::String { normalized, .. }) => normalized.starts_with(v.as_str()),
            (ComponentValue::Token(v), e) => v.matches(e),
            (ComponentValue::Reference(v), e) => v.matches(e),
            (ComponentValue::Date(v), e) => v.matches(e),
            (ComponentValue::Number(v), e) => v.matches(e),
            (ComponentValue::Quantity(v), e) => v.matches(e),
            (ComponentValue::Uri(v), IndexValue::Uri { value }) => v == value,
            _ => false,
        }
    }
}

impl CompositeValue {
    /// Each part matches the entry's component at the same position.
    pub fn matches(&self, entry: &IndexValue) -> bool {
        let IndexValue::Composite { components } = entry else { return false };
        self.0.len() <= components.len() && self.0.iter().zip(components).all(|(part, c)| part.matches(c))
    }
}

impl Test {
    /// Whether a resource whose entries for the clause's parameter are `entries` passes this
    /// test. The reference implementation of the rules above, for tests and in-memory use;
    /// [`Test::In`], [`Test::NotIn`], the `Above`/`Below` tests and [`Test::List`] need data
    /// this crate does not have and answer `None`.
    pub fn matches(&self, entries: &[&IndexValue]) -> Option<bool> {
        let any = |f: &dyn Fn(&IndexValue) -> bool| entries.iter().any(|e| f(e));
        let string = |e: &IndexValue, f: &dyn Fn(&str, &str) -> bool| match e {
            IndexValue::String { normalized, exact } => f(normalized, exact),
            _ => false,
        };
        Some(match self {
            Test::Missing(missing) => entries.is_empty() == *missing,
            Test::StartsWith(vs) => any(&|e| string(e, &|n, _| vs.iter().any(|v| n.starts_with(v.as_str())))),
            Test::Contains(vs) => any(&|e| string(e, &|n, _| vs.iter().any(|v| n.contains(v.as_str())))),
            Test::Exact(vs) => any(&|e| string(e, &|_, x| vs.iter().any(|v| x == v))),
            Test::Token(vs) => any(&|e| vs.iter().any(|v| v.matches(e))),
            Test::NotToken(vs) => !any(&|e| vs.iter().any(|v| v.matches(e))),
            Test::TokenText(vs) => any(&|e| match e {
                IndexValue::Token { text: Some(t), .. } => vs.iter().any(|v| t.starts_with(v.as_str())),
                _ => false,
            }),
            Test::OfType(vs) => any(&|e| vs.iter().any(|v| v.matches(e))),
            Test::Reference { type_modifier, values } => any(&|e| {
                let type_ok = match (type_modifier, e) {
                    (None, _) => true,
                    (Some(t), IndexValue::Reference { target_type, .. }) => target_type.as_deref() == Some(t.as_str()),
                    _ => false,
                };
                type_ok && values.iter().any(|v| v.matches(e))
            }),
            Test::ReferenceIdentifier(vs) => any(&|e| match e {
                IndexValue::Reference { identifier: Some((system, value)), .. } => {
                    vs.iter().any(|v| v.matches_pair(system.as_deref(), Some(value)))
                }
                _ => false,
            }),
            Test::Date(vs) => any(&|e| vs.iter().any(|v| v.matches(e))),
            Test::Number(vs) => any(&|e| vs.iter().any(|v| v.matches(e))),
            Test::Quantity(vs) => any(&|e| vs.iter().any(|v| v.matches(e))),
            Test::Uri(vs) => any(&|e| matches!(e, IndexValue::Uri { value } if vs.contains(value))),
            Test::UriBelow(vs) => {
                any(&|e| matches!(e, IndexValue::Uri { value } if vs.iter().any(|v| value.starts_with(v.as_str()))))
            }
            Test::UriAbove(vs) => {
                any(&|e| matches!(e, IndexValue::Uri { value } if vs.iter().any(|v| v.starts_with(value.as_str()))))
            }
            Test::Composite(vs) => any(&|e| vs.iter().any(|v| v.matches(e))),
            Test::Near(vs) => any(&|e| match e {
                IndexValue::Position { lat, lon } => vs.iter().any(|v| v.matches_position(*lat, *lon)),
                _ => false,
            }),
            Test::Text(vs) => {
                any(&|e| string(e, &|n, _| vs.iter().any(|words| words.iter().all(|w| n.contains(w.as_str())))))
            }
            Test::In(_)
            | Test::NotIn(_)
            | Test::TokenAbove(_)
            | Test::TokenBelow(_)
            | Test::ReferenceAbove(_)
            | Test::ReferenceBelow(_)
            | Test::List(_) => return None,
        })
    }

    /// The modifier this test stands for in a query string.
    pub(crate) fn modifier(&self) -> Option<Modifier> {
        Some(match self {
            Test::Missing(_) => Modifier::Missing,
            Test::Contains(_) => Modifier::Contains,
            Test::Exact(_) => Modifier::Exact,
            Test::NotToken(_) => Modifier::Not,
            Test::TokenText(_) => Modifier::Text,
            Test::OfType(_) => Modifier::OfType,
            Test::In(_) => Modifier::In,
            Test::NotIn(_) => Modifier::NotIn,
            Test::TokenAbove(_) | Test::ReferenceAbove(_) | Test::UriAbove(_) => Modifier::Above,
            Test::TokenBelow(_) | Test::ReferenceBelow(_) | Test::UriBelow(_) => Modifier::Below,
            Test::ReferenceIdentifier(_) => Modifier::Identifier,
            _ => return None,
        })
    }
}

/// A `_sort` key.
///
/// A resource sorts by its entries of `param`: ascending by its smallest value, descending by
/// its largest, where values order as follows: string by `normalized`; token by `code` (then
/// `system`); date by `start` ascending and `end` descending; number and quantity by `low`
/// ascending and `high` descending (quantities by their canonical range when they have one);
/// reference by `target_type`/`target_id`, else `url`; uri by `value`. Resources without an
/// entry sort last in both directions. Ties keep the next key's order, then the backend's
/// stable order (e.g. id).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SortKey {
    /// The parameter code (`date`, `_lastUpdated`).
    pub param: String,
    pub kind: ParamType,
    /// Written with a leading `-`.
    pub descending: bool,
}

/// `_total`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Total {
    None,
    Estimate,
    Accurate,
}

impl Total {
    pub fn as_str(self) -> &'static str {
        match self {
            Total::None => "none",
            Total::Estimate => "estimate",
            Total::Accurate => "accurate",
        }
    }
}

/// `_summary`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Summary {
    /// Only the elements marked as summary.
    True,
    /// Only the text, `id`, `meta` and top-level mandatory elements.
    Text,
    /// Everything but the text.
    Data,
    /// Only the count (no entries).
    Count,
    /// Everything (as if absent).
    False,
}

impl Summary {
    pub fn as_str(self) -> &'static str {
        match self {
            Summary::True => "true",
            Summary::Text => "text",
            Summary::Data => "data",
            Summary::Count => "count",
            Summary::False => "false",
        }
    }
}

/// An `_include` or `_revinclude`.
///
/// `_include=Observation:subject:Patient` → `source_type: Some("Observation")`,
/// `param: Some("subject")`, `target_type: Some("Patient")`: add the resources that matched
/// resources of `source_type` reference through `param` (of `target_type` only, when given).
/// `_revinclude=Observation:subject` adds the `Observation`s whose `subject` references a
/// matched resource. `*` (`_include=*`) leaves `source_type` and `param` `None`: every
/// reference parameter of every type; `Observation:*` leaves only `param` `None`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Include {
    pub source_type: Option<String>,
    pub param: Option<String>,
    pub target_type: Option<String>,
    /// `:iterate` (or the R4-era `:recurse`): apply again to the included resources.
    pub iterate: bool,
}

impl Include {
    fn to_value(&self) -> String {
        match (&self.source_type, &self.param, &self.target_type) {
            (None, _, _) => "*".to_string(),
            (Some(s), None, _) => format!("{s}:*"),
            (Some(s), Some(p), None) => format!("{s}:{p}"),
            (Some(s), Some(p), Some(t)) => format!("{s}:{p}:{t}"),
        }
    }
}

/// Characters kept as they are in the query string; everything else is percent-encoded
/// (`\` escapes included, so `a\,b` travels as `a%5C,b`).
fn encode(s: &str, out: &mut String) {
    for b in s.bytes() {
        if b.is_ascii_alphanumeric() || b"-._~:|,$*/".contains(&b) {
            out.push(char::from(b));
        } else {
            let _ = write!(out, "%{b:02X}");
        }
    }
}

impl SearchQuery {
    /// The canonical query string (without the leading `?`) for `self`/`next` links: the
    /// filter clauses sorted by name and value, each as `name[:modifier]=value` with the values
    /// as written; then `_type`, `_sort`, `_count` (always), `_total`, `_summary`,
    /// `_elements`, `_include`, `_revinclude`. Percent-encoded (RFC 3986 unreserved characters
    /// and the search syntax characters `: | , $ * /` stay as they are). Ignored parameters and
    /// `_format`/`_pretty` are left out.
    pub fn to_query_string(&self) -> String {
        let mut pairs: Vec<(String, String)> = self.clauses.iter().map(|c| (c.key(), c.value.clone())).collect();
        pairs.sort();
        if !self.type_filter.is_empty() {
            pairs.push(("_type".into(), self.type_filter.join(",")));
        }
        if !self.sort.is_empty() {
            let keys: Vec<String> =
                self.sort.iter().map(|k| format!("{}{}", if k.descending { "-" } else { "" }, k.param)).collect();
            pairs.push(("_sort".into(), keys.join(",")));
        }
        pairs.push(("_count".into(), self.count.to_string()));
        if let Some(t) = self.total {
            pairs.push(("_total".into(), t.as_str().into()));
        }
        if let Some(s) = self.summary {
            pairs.push(("_summary".into(), s.as_str().into()));
        }
        if !self.elements.is_empty() {
            pairs.push(("_elements".into(), self.elements.join(",")));
        }
        for (name, list) in [("_include", &self.include), ("_revinclude", &self.revinclude)] {
            for inc in list {
                let key = if inc.iterate { format!("{name}:iterate") } else { name.to_string() };
                pairs.push((key, inc.to_value()));
            }
        }
        let mut out = String::new();
        for (i, (k, v)) in pairs.iter().enumerate() {
            if i > 0 {
                out.push('&');
            }
            encode(k, &mut out);
            out.push('=');
            encode(v, &mut out);
        }
        out
    }
}

impl Clause {
    /// The parameter name as a query would write it: hops, parameter, modifier.
    pub fn key(&self) -> String {
        let mut key = String::new();
        for hop in &self.path {
            match hop {
                Hop::Chain { param, target_types } => {
                    key.push_str(param);
                    if let [only] = target_types.as_slice() {
                        key.push(':');
                        key.push_str(only);
                    }
                    key.push('.');
                }
                Hop::Has { source_type, param } => {
                    let _ = write!(key, "_has:{source_type}:{param}:");
                }
            }
        }
        key.push_str(&self.param);
        if let Test::Reference { type_modifier: Some(t), .. } = &self.test {
            key.push(':');
            key.push_str(t);
        } else if let Some(m) = self.test.modifier() {
            key.push(':');
            key.push_str(m.as_str());
        }
        key
    }
}

/// Escapes the search syntax characters `\ , | $`.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        if matches!(c, '\\' | ',' | '|' | '$') {
            out.push('\\');
        }
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use super::range_matches;
    use crate::Prefix;

    /// `[value - half, value + half)`: a value's implicit range.
    fn r(value: f64, half: f64) -> (f64, f64) {
        (value - half, value + half)
    }

    #[test]
    fn ordering_prefixes_compare_with_exactly_the_search_value() {
        let seven = r(7.0, 0.5);
        let stored = |v: f64| r(v, 5e-17_f64.max(v.abs() * 1e-16));
        let matches = |p, (l, h): (f64, f64)| range_matches(p, seven.0, seven.1, l, h);
        // gt7 finds 7.0197 (the range rule compared with 7.5 and missed it), not 7 itself.
        assert!(matches(Prefix::Gt, stored(7.019_664_308_943_962_5)));
        assert!(!matches(Prefix::Gt, r(7.0, 0.5)));
        assert!(!matches(Prefix::Gt, stored(6.99)));
        assert!(matches(Prefix::Ge, r(7.0, 0.5)));
        assert!(matches(Prefix::Ge, r(7.0, 0.05)));
        assert!(!matches(Prefix::Ge, stored(6.999)));
        assert!(matches(Prefix::Lt, stored(6.98)));
        assert!(!matches(Prefix::Lt, r(7.0, 0.5)));
        assert!(matches(Prefix::Le, r(7.0, 0.005)));
        assert!(!matches(Prefix::Le, stored(7.001)));
        // eq keeps the implicit precision: 7 means [6.5, 7.5).
        assert!(matches(Prefix::Eq, stored(7.2)));
        assert!(!matches(Prefix::Eq, stored(7.6)));
    }
}
