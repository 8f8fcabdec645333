//! Index extraction: what one resource contributes to the search indexes.
//!
//! [`crate::Registry::index`] evaluates every parameter that applies to the resource's type and
//! turns each FHIRPath result into [`IndexValue`]s according to the parameter's type. This module
//! holds the output types (the contract with the storage backend) and the conversions.

use std::borrow::Cow;

use hearth_fhirpath::{Decimal, Item};
use serde_json::Value;

use crate::date::parse_date_range;
use crate::number::parse_number;
use crate::param::ParamType;
use crate::text::normalize;
use crate::ucum;

/// The UCUM code system URL.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// The ISO 4217 currency code system, used as the system of `Money` quantities.
pub const ISO_4217: &str = "urn:iso:std:iso:4217";

/// One row of the search index of a resource: parameter code and one value.
///
/// A resource yields any number of entries per parameter (one per value found), none for a
/// parameter with no value. Entries of the same parameter are distinct.
#[derive(Debug, Clone, PartialEq)]
pub struct IndexEntry {
    /// The parameter's `code` (`name`, `_id`, `value-quantity`), unique per resource type.
    pub param: String,
    pub value: IndexValue,
}

/// A value quantity converted to the canonical unit of [`crate::ucum`] (e.g. `m-3.g` for every
/// mass concentration, `K` for temperatures), so that `185 [lb_av]` and `83.9 kg` compare.
#[derive(Debug, Clone, PartialEq)]
pub struct CanonicalQuantity {
    /// The canonical unit (see the `ucum` module docs for its spelling).
    pub unit: String,
    /// The converted `[low, high)` (same meaning as [`IndexValue::Quantity`]'s).
    pub low: f64,
    pub high: f64,
}

/// One indexed value, by parameter type. Every field's normalisation is stated; the query side
/// ([`crate::SearchQuery`]) produces values normalised the same way, so a backend compares columns
/// directly.
#[derive(Debug, Clone, PartialEq)]
pub enum IndexValue {
    /// A `string` parameter value (one per string, and one per part of a `HumanName` —
    /// `family`, each `given`, `prefix`, `suffix`, `text` — or of an `Address` — each `line`,
    /// `city`, `district`, `state`, `postalCode`, `country`, `text`). Also `_text` (the narrative
    /// as plain text) and `_content` (all text of the resource), see [`crate::Registry::index`].
    String {
        /// [`crate::normalize`]d: lower case, accents removed, whitespace collapsed. Default
        /// search is "starts with", `:contains` is "contains", both on this column.
        normalized: String,
        /// The value exactly as written, for `:exact` (case- and accent-sensitive equality).
        exact: String,
    },
    /// A `token` parameter value.
    ///
    /// - `Coding`: `system`, `code`, `text` = its `display`.
    /// - `CodeableConcept`: one entry per coding as above, plus, when it has `text` that no
    ///   coding's display already reads (normalized), one entry with only `text` (so `:text`
    ///   finds either the concept text or any display).
    /// - `Identifier`: `system`, `code` = `value`, `text` = `type.text`, `of_type` = one
    ///   `(type coding system, type coding code)`; an identifier with several type codings gives
    ///   one entry per type coding.
    /// - `ContactPoint`: `system` = `ContactPoint.system` (`phone`, `email`), `code` = `value`;
    ///   plus the same value without a system, because `ContactPoint.system` is a kind of
    ///   contact rather than a code system: `telecom=phone|555`, `telecom=|555` and
    ///   `telecom=555` all find it (as the fhir-candle search tests expect).
    /// - `code`, `string`, `id`, `uri` and `boolean` (`true`/`false`) primitives: `code` only.
    Token {
        /// As written (case-sensitive), `None` when absent.
        system: Option<String>,
        /// As written (case-sensitive), `None` when absent (a coding with only a display, or
        /// the text-only entry of a CodeableConcept).
        code: Option<String>,
        /// [`crate::normalize`]d display / concept text / identifier type text, for `:text`
        /// (which matches like a default string search: "starts with").
        text: Option<String>,
        /// For identifiers: the identifier type coding, for `:of-type`.
        of_type: Option<(Option<String>, String)>,
    },
    /// A `reference` parameter value (one per `Reference`, canonical or resource found).
    ///
    /// - Relative `Type/id` (or `Type/id/_history/v`): `target_type`, `target_id` (`version`).
    /// - Absolute URL: `url` is the whole URL (without `/_history/v`); when it ends in
    ///   `Type/id[/_history/v]` with a known resource type, `target_type`/`target_id`/`version`
    ///   are filled too (the backend may match them against its own base URL).
    /// - `urn:uuid:` / `urn:oid:` references, and any other text that is not `Type/id` with a
    ///   known resource type: `url` only (the text as written).
    /// - `canonical` values: `url` = the part before `|`, `version` = the part after it.
    /// - `Reference.identifier`: `identifier` = `(system, value)`; with no `reference`, the
    ///   entry carries `target_type` from `Reference.type` if given.
    /// - A resource (e.g. `Bundle.entry[0].resource` for `Bundle.composition`): its type and id.
    ///
    /// Contained references (`#id`) and references with only a `display` are not indexed.
    Reference {
        target_type: Option<String>,
        target_id: Option<String>,
        version: Option<String>,
        url: Option<String>,
        identifier: Option<(Option<String>, String)>,
    },
    /// A `date` parameter value: the inclusive range `[start, end]` of UTC milliseconds the
    /// value covers at its precision (`2020` = the whole year; see [`crate::parse_date_range`]; values
    /// without a time zone are taken as UTC). `Period`: from the start of `start` to the end of
    /// `end`, `i64::MIN`/`i64::MAX` for a missing one. `Timing`: one entry per `event`.
    Date { start: i64, end: i64 },
    /// A `number` parameter value: the value as written and its implicit precision range
    /// `[low, high)` (`100` → `[99.5, 100.5)`, see [`crate::parse_number`]).
    Number { value: Decimal, low: f64, high: f64 },
    /// A `quantity` parameter value.
    ///
    /// - `Quantity` (and `Age`, `Duration`, ...): `[low, high)` is the implicit precision range
    ///   of `value`; `system`, `code`, `unit` as written.
    /// - `Range`: `low` = the low end of `low.value`'s range, `high` = the high end of
    ///   `high.value`'s (±infinity when absent); units from `low` (else `high`).
    /// - `Money`: `system` = [`ISO_4217`], `code` = the currency.
    /// - a bare number: no units.
    ///
    /// `canonical` is set when `system` is UCUM and `code` is in the supported UCUM subset.
    Quantity {
        low: f64,
        high: f64,
        system: Option<String>,
        code: Option<String>,
        unit: Option<String>,
        canonical: Option<CanonicalQuantity>,
    },
    /// A `uri` parameter value, exactly as written (`:below`/`:above` are prefix tests on it).
    Uri { value: String },
    /// A `composite` parameter value: one entry per combination of component values taken from
    /// the same focus element (`Observation.component` with its own code and value), the
    /// components in the parameter's order, each extracted by its component parameter's type.
    Composite { components: Vec<IndexValue> },
    /// A `special` `near` value (`Location.position`): WGS84 degrees, both present and in range
    /// (a position without either is not indexed). See [`crate::geo`].
    Position { lat: f64, lon: f64 },
}

/// The largest `_text` / `_content` value kept, in bytes (cut at a character boundary).
pub const FULL_TEXT_LIMIT: usize = 64 * 1024;

/// At most this many combinations are indexed per focus element of a composite parameter.
pub const COMPOSITE_LIMIT: usize = 64;

/// A FHIRPath result item, reduced to its FHIR type and JSON.
pub(crate) struct Typed<'a> {
    /// FHIR type with subtypes folded (`Age` → `Quantity`, `positiveInt` → `integer`), or a
    /// best guess from the JSON when the model did not say.
    pub ty: &'static str,
    pub json: Cow<'a, Value>,
}

/// Folds an item to the types the converters know.
pub(crate) fn typed<'a>(item: &Item<'a>) -> Option<Typed<'a>> {
    let (ty, json): (Option<&str>, Cow<'a, Value>) = match item {
        Item::Node(n) => {
            let json = n.json();
            if json.is_null() {
                return None;
            }
            (n.type_name(), Cow::Borrowed(json))
        }
        Item::String(s) => (Some("string"), Cow::Owned(Value::String(s.to_string()))),
        Item::Boolean(b) => (Some("boolean"), Cow::Owned(Value::Bool(*b))),
        Item::Integer(_) | Item::Long(_) => (Some("integer"), Cow::Owned(item.to_json())),
        Item::Decimal(d) => (Some("decimal"), Cow::Owned(Value::String(d.to_string()))),
        Item::Date(_) | Item::DateTime(_) => (Some("dateTime"), Cow::Owned(item.to_json())),
        Item::Quantity(_) => (Some("Quantity"), Cow::Owned(item.to_json())),
        Item::Time(_) | Item::TypeInfo(..) => return None,
    };
    let ty = match ty.map(|t| t.strip_prefix("System.").unwrap_or(t)) {
        Some(t) => fold_type(t).or_else(|| guess_type(&json)),
        None => guess_type(&json),
    }?;
    Some(Typed { ty, json })
}

fn fold_type(t: &str) -> Option<&'static str> {
    Some(match t {
        "string" | "String" | "code" | "id" | "markdown" | "xhtml" | "base64Binary" => "string",
        "uri" | "url" | "canonical" | "oid" | "uuid" => "uri",
        "boolean" | "Boolean" => "boolean",
        "integer" | "Integer" | "positiveInt" | "unsignedInt" | "integer64" | "Long" => "integer",
        "decimal" | "Decimal" => "decimal",
        "date" | "Date" | "dateTime" | "DateTime" | "instant" => "dateTime",
        "Quantity" | "Age" | "Count" | "Distance" | "Duration" | "SimpleQuantity" | "MoneyQuantity" => "Quantity",
        "Coding" => "Coding",
        "CodeableConcept" => "CodeableConcept",
        "Identifier" => "Identifier",
        "ContactPoint" => "ContactPoint",
        "HumanName" => "HumanName",
        "Address" => "Address",
        "Reference" => "Reference",
        "Period" => "Period",
        "Timing" => "Timing",
        "Range" => "Range",
        "Money" => "Money",
        _ => return None,
    })
}

/// The type of untyped JSON (a value the model could not type, e.g. inside an extension whose
/// value key was not a choice the engine recognised).
fn guess_type(v: &Value) -> Option<&'static str> {
    match v {
        Value::String(_) => Some("string"),
        Value::Bool(_) => Some("boolean"),
        Value::Number(_) => Some("decimal"),
        Value::Object(o) => {
            if o.contains_key("resourceType") {
                Some("Resource")
            } else if o.contains_key("coding") {
                Some("CodeableConcept")
            } else if o.contains_key("reference") {
                Some("Reference")
            } else if o.contains_key("family") || o.contains_key("given") {
                Some("HumanName")
            } else if o.contains_key("line") || o.contains_key("city") || o.contains_key("postalCode") {
                Some("Address")
            } else if o.contains_key("start") || o.contains_key("end") {
                Some("Period")
            } else if o.contains_key("low") || o.contains_key("high") {
                Some("Range")
            } else if o.get("value").is_some_and(Value::is_number) {
                Some(if o.contains_key("currency") { "Money" } else { "Quantity" })
            } else if o.contains_key("event") || o.contains_key("repeat") {
                Some("Timing")
            } else if o.contains_key("code") {
                Some("Coding")
            } else if o.contains_key("value") {
                let cp = o
                    .get("system")
                    .and_then(Value::as_str)
                    .is_some_and(|s| matches!(s, "phone" | "fax" | "email" | "pager" | "url" | "sms" | "other"));
                Some(if cp { "ContactPoint" } else { "Identifier" })
            } else if o.contains_key("text") {
                Some("CodeableConcept")
            } else {
                None
            }
        }
        _ => None,
    }
}

fn str_of<'v>(v: &'v Value, key: &str) -> Option<&'v str> {
    v.get(key).and_then(Value::as_str).filter(|s| !s.is_empty())
}

fn strs_of<'v>(v: &'v Value, key: &str) -> impl Iterator<Item = &'v str> {
    let items: &'v [Value] = match v.get(key) {
        Some(Value::Array(a)) => a,
        Some(single) => std::slice::from_ref(single),
        None => &[],
    };
    items.iter().filter_map(Value::as_str).filter(|s| !s.is_empty())
}

fn owned(s: Option<&str>) -> Option<String> {
    s.map(str::to_string)
}

/// The text of a JSON primitive (numbers as written, thanks to `arbitrary_precision`).
fn primitive_text(v: &Value) -> Option<Cow<'_, str>> {
    match v {
        Value::String(s) if !s.is_empty() => Some(Cow::Borrowed(s)),
        Value::Bool(b) => Some(Cow::Borrowed(if *b { "true" } else { "false" })),
        Value::Number(n) => Some(Cow::Owned(n.to_string())),
        _ => None,
    }
}

/// Converts one result item into index values of `kind` (composites are handled by the caller).
pub(crate) fn convert(
    kind: ParamType,
    item: &Item<'_>,
    is_resource_type: &dyn Fn(&str) -> bool,
    out: &mut Vec<IndexValue>,
) {
    if kind == ParamType::Special {
        out.extend(position_value(item));
        return;
    }
    let Some(t) = typed(item) else { return };
    let json = t.json.as_ref();
    match kind {
        ParamType::String => string_values(t.ty, json, out),
        ParamType::Token => token_values(t.ty, json, out),
        ParamType::Reference => reference_values(t.ty, json, is_resource_type, out),
        ParamType::Date => date_values(t.ty, json, out),
        ParamType::Number => number_values(t.ty, json, out),
        ParamType::Quantity => quantity_values(t.ty, json, out),
        ParamType::Uri => {
            if matches!(t.ty, "uri" | "string")
                && let Some(s) = primitive_text(json)
            {
                out.push(IndexValue::Uri { value: s.into_owned() });
            }
        }
        ParamType::Composite | ParamType::Special => {}
    }
}

/// `Location.position` (or anything with `latitude` and `longitude` numbers) as a position.
fn position_value(item: &Item<'_>) -> Option<IndexValue> {
    let Item::Node(n) = item else { return None };
    let json = n.json();
    let lat = json.get("latitude")?.as_f64()?;
    let lon = json.get("longitude")?.as_f64()?;
    crate::geo::valid_position(lat, lon).then_some(IndexValue::Position { lat, lon })
}

pub(crate) fn string_value(s: &str) -> Option<IndexValue> {
    let normalized = normalize(s);
    (!normalized.is_empty()).then(|| IndexValue::String { normalized, exact: s.to_string() })
}

fn string_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    let keys: &[&str] = match ty {
        "HumanName" => &["family", "given", "prefix", "suffix", "text"],
        "Address" => &["line", "city", "district", "state", "postalCode", "country", "text"],
        "string" | "uri" => {
            out.extend(v.as_str().and_then(string_value));
            return;
        }
        _ => return,
    };
    for key in keys {
        out.extend(strs_of(v, key).filter_map(string_value));
    }
}

fn token(system: Option<&str>, code: Option<&str>, text: Option<&str>) -> IndexValue {
    IndexValue::Token {
        system: owned(system),
        code: owned(code),
        text: text.map(normalize).filter(|t| !t.is_empty()),
        of_type: None,
    }
}

fn coding_token(c: &Value) -> Option<IndexValue> {
    let (system, code, display) = (str_of(c, "system"), str_of(c, "code"), str_of(c, "display"));
    (system.is_some() || code.is_some() || display.is_some()).then(|| token(system, code, display))
}

fn token_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    match ty {
        "Coding" => out.extend(coding_token(v)),
        "CodeableConcept" => {
            let from = out.len();
            if let Some(Value::Array(codings)) = v.get("coding") {
                out.extend(codings.iter().filter_map(coding_token));
            }
            if let Some(text) = str_of(v, "text") {
                // The text-only entry exists for `:text`; when a coding's display already
                // reads the same (normalized), that coding's entry answers `:text` alike, and
                // a second row would only cost a write (and a composite group) per resource.
                let entry = token(None, None, Some(text));
                let said = |e: &IndexValue| {
                    matches!((e, &entry),
                    (IndexValue::Token { text: Some(a), .. }, IndexValue::Token { text: Some(b), .. }) if a == b)
                };
                if !out.get(from..).unwrap_or_default().iter().any(said) {
                    out.push(entry);
                }
            }
        }
        "Identifier" => {
            let (system, value) = (str_of(v, "system"), str_of(v, "value"));
            if system.is_none() && value.is_none() {
                return;
            }
            let type_text = v.get("type").and_then(|t| str_of(t, "text"));
            let base = token(system, value, type_text);
            let type_codings: Vec<(Option<String>, String)> = match v.get("type").and_then(|t| t.get("coding")) {
                Some(Value::Array(codings)) => codings
                    .iter()
                    .filter_map(|c| Some((owned(str_of(c, "system")), str_of(c, "code")?.to_string())))
                    .collect(),
                _ => Vec::new(),
            };
            if type_codings.is_empty() {
                out.push(base.clone());
            }
            for of in type_codings {
                let mut entry = base.clone();
                if let IndexValue::Token { of_type, .. } = &mut entry {
                    *of_type = Some(of);
                }
                out.push(entry);
            }
        }
        "ContactPoint" => {
            if let Some(value) = str_of(v, "value") {
                let system = str_of(v, "system");
                out.push(token(system, Some(value), None));
                if system.is_some() {
                    out.push(token(None, Some(value), None));
                }
            }
        }
        "string" | "uri" | "boolean" | "integer" | "decimal" => {
            if let Some(code) = primitive_text(v) {
                out.push(token(None, Some(&code), None));
            }
        }
        _ => {}
    }
}

/// Splits `.../Type/id[/_history/v]` into its parts when `Type` is a resource type.
pub(crate) fn split_reference<'s>(
    path: &'s str,
    is_resource_type: &dyn Fn(&str) -> bool,
) -> Option<(&'s str, &'s str, Option<&'s str>)> {
    let segments: Vec<&str> = path.trim_end_matches('/').split('/').collect();
    let (ty, id, version) = match segments.as_slice() {
        [.., ty, id, "_history", version] => (*ty, *id, Some(*version)),
        [.., ty, id] => (*ty, *id, None),
        _ => return None,
    };
    (is_resource_type(ty) && is_id(id) && version.is_none_or(is_id)).then_some((ty, id, version))
}

/// FHIR `id` syntax: 1–64 of `A-Z a-z 0-9 - .`.
pub(crate) fn is_id(s: &str) -> bool {
    (1..=64).contains(&s.len()) && s.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.')
}

fn reference_string(s: &str, is_resource_type: &dyn Fn(&str) -> bool) -> Option<IndexValue> {
    if s.starts_with('#') || s.is_empty() {
        return None;
    }
    let absolute = s.contains("://") || s.starts_with("urn:");
    let mut target_type = None;
    let mut target_id = None;
    let mut version = None;
    if let Some((ty, id, v)) = split_reference(s, is_resource_type) {
        target_type = Some(ty.to_string());
        target_id = Some(id.to_string());
        version = v.map(str::to_string);
    }
    let url = if absolute {
        Some(match s.find("/_history/") {
            Some(pos) if version.is_some() => s.get(..pos).unwrap_or(s).to_string(),
            _ => s.to_string(),
        })
    } else if target_id.is_none() {
        // Not `Type/id`: keep it so an exact search still finds it.
        Some(s.to_string())
    } else {
        None
    };
    Some(IndexValue::Reference { target_type, target_id, version, url, identifier: None })
}

fn canonical_value(s: &str) -> Option<IndexValue> {
    if s.is_empty() || s.starts_with('#') {
        return None;
    }
    let (url, version) = match s.split_once('|') {
        Some((u, v)) => (u, Some(v.to_string()).filter(|v| !v.is_empty())),
        None => (s, None),
    };
    Some(IndexValue::Reference {
        target_type: None,
        target_id: None,
        version,
        url: Some(url.to_string()),
        identifier: None,
    })
}

fn reference_values(ty: &str, v: &Value, is_resource_type: &dyn Fn(&str) -> bool, out: &mut Vec<IndexValue>) {
    match ty {
        "Reference" => {
            let identifier =
                v.get("identifier").and_then(|i| Some((owned(str_of(i, "system")), str_of(i, "value")?.to_string())));
            let from_ref = str_of(v, "reference").map(|r| reference_string(r, is_resource_type));
            match from_ref {
                // A contained reference: not indexed, whatever else it carries.
                Some(None) => {}
                Some(Some(mut value)) => {
                    if let IndexValue::Reference { identifier: slot, .. } = &mut value {
                        *slot = identifier;
                    }
                    out.push(value);
                }
                None => {
                    if let Some(identifier) = identifier {
                        out.push(IndexValue::Reference {
                            target_type: owned(str_of(v, "type")),
                            target_id: None,
                            version: None,
                            url: None,
                            identifier: Some(identifier),
                        });
                    }
                }
            }
        }
        "uri" | "string" => out.extend(v.as_str().and_then(canonical_value)),
        "Resource" => {
            let ty = str_of(v, "resourceType");
            let id = str_of(v, "id");
            if let (Some(ty), Some(id)) = (ty, id) {
                out.push(IndexValue::Reference {
                    target_type: Some(ty.to_string()),
                    target_id: Some(id.to_string()),
                    version: None,
                    url: None,
                    identifier: None,
                });
            }
        }
        _ => {
            // A resource typed by its own name (`Composition`) reaches here too.
            if v.get("resourceType").is_some() {
                reference_values("Resource", v, is_resource_type, out);
            }
        }
    }
}

fn date_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    match ty {
        "dateTime" | "string" => {
            if let Some(r) = v.as_str().and_then(parse_date_range) {
                out.push(IndexValue::Date { start: r.start, end: r.end });
            }
        }
        "Period" => {
            let start = str_of(v, "start").and_then(parse_date_range);
            let end = str_of(v, "end").and_then(parse_date_range);
            if start.is_none() && end.is_none() {
                return;
            }
            out.push(IndexValue::Date {
                start: start.map_or(i64::MIN, |r| r.start),
                end: end.map_or(i64::MAX, |r| r.end),
            });
        }
        "Timing" => {
            for event in strs_of(v, "event") {
                if let Some(r) = parse_date_range(event) {
                    out.push(IndexValue::Date { start: r.start, end: r.end });
                }
            }
        }
        _ => {}
    }
}

fn number_of(v: &Value) -> Option<crate::number::NumberRange> {
    match v {
        Value::Number(n) => parse_number(&n.to_string()),
        Value::String(s) => parse_number(s),
        _ => None,
    }
}

fn number_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    let n = match ty {
        "integer" | "decimal" | "string" => number_of(v),
        "Quantity" => v.get("value").and_then(number_of),
        _ => None,
    };
    if let Some(n) = n {
        out.push(IndexValue::Number { value: n.value, low: n.low, high: n.high });
    }
}

/// A quantity value from its range and units, with the canonical form when UCUM allows.
pub(crate) fn quantity(
    low: f64,
    high: f64,
    system: Option<String>,
    code: Option<String>,
    unit: Option<String>,
) -> IndexValue {
    let canonical = match (&system, &code) {
        (Some(s), Some(c)) if s == UCUM => canonical_range(c, low, high),
        _ => None,
    };
    IndexValue::Quantity { low, high, system, code, unit, canonical }
}

pub(crate) fn canonical_range(code: &str, low: f64, high: f64) -> Option<CanonicalQuantity> {
    let conv = ucum::canonical(code)?;
    Some(CanonicalQuantity { low: conv.apply(low), high: conv.apply(high), unit: conv.unit })
}

fn quantity_values(ty: &str, v: &Value, out: &mut Vec<IndexValue>) {
    let units = |q: &Value| (owned(str_of(q, "system")), owned(str_of(q, "code")), owned(str_of(q, "unit")));
    match ty {
        "Quantity" => {
            let Some(n) = v.get("value").and_then(number_of) else { return };
            let (system, code, unit) = units(v);
            out.push(quantity(n.low, n.high, system, code, unit));
        }
        "Money" => {
            let Some(n) = v.get("value").and_then(number_of) else { return };
            let currency = owned(str_of(v, "currency"));
            let system = currency.as_ref().map(|_| ISO_4217.to_string());
            out.push(quantity(n.low, n.high, system, currency, None));
        }
        "Range" => {
            let low_q = v.get("low");
            let high_q = v.get("high");
            let low = low_q.and_then(|q| q.get("value")).and_then(number_of);
            let high = high_q.and_then(|q| q.get("value")).and_then(number_of);
            if low.is_none() && high.is_none() {
                return;
            }
            let (system, code, unit) = match low_q.filter(|_| low.is_some()).or(high_q) {
                Some(q) => units(q),
                None => (None, None, None),
            };
            out.push(quantity(
                low.map_or(f64::NEG_INFINITY, |n| n.low),
                high.map_or(f64::INFINITY, |n| n.high),
                system,
                code,
                unit,
            ));
        }
        "integer" | "decimal" => {
            if let Some(n) = number_of(v) {
                out.push(quantity(n.low, n.high, None, None, None));
            }
        }
        _ => {}
    }
}

/// The narrative of a resource as plain text: the XHTML of `text.div` without tags, with the
/// common entities decoded.
pub fn narrative_text(resource: &Value) -> Option<String> {
    let div = resource.get("text")?.get("div")?.as_str()?;
    let plain = strip_xhtml(div);
    (!plain.trim().is_empty()).then_some(plain)
}

/// All the text of a resource: every JSON string value (and the narrative as plain text), in
/// document order, separated by spaces. Left out: `resourceType`, base64 `data`, and the raw
/// XHTML (its text is included instead).
pub fn content_text(resource: &Value) -> String {
    let mut out = String::new();
    collect_text(resource, &mut out, 0);
    out
}

fn collect_text(v: &Value, out: &mut String, depth: usize) {
    if depth > 64 || out.len() > FULL_TEXT_LIMIT {
        return;
    }
    match v {
        Value::String(s) => push_word(out, s),
        Value::Array(items) => items.iter().for_each(|i| collect_text(i, out, depth + 1)),
        Value::Object(map) => {
            for (key, value) in map {
                match key.as_str() {
                    "resourceType" | "data" => {}
                    "div" => {
                        if let Some(s) = value.as_str() {
                            push_word(out, &strip_xhtml(s));
                        }
                    }
                    _ => collect_text(value, out, depth + 1),
                }
            }
        }
        _ => {}
    }
}

fn push_word(out: &mut String, s: &str) {
    if s.trim().is_empty() {
        return;
    }
    if !out.is_empty() {
        out.push(' ');
    }
    out.push_str(s);
}

fn strip_xhtml(div: &str) -> String {
    let mut out = String::with_capacity(div.len());
    let mut in_tag = false;
    let mut rest = div;
    while let Some(c) = rest.chars().next() {
        let len = c.len_utf8();
        match c {
            '<' => {
                in_tag = true;
                out.push(' ');
            }
            '>' if in_tag => in_tag = false,
            '&' if !in_tag => {
                if let Some(end) = rest.find(';').filter(|e| *e <= 10)
                    && let Some(decoded) = rest.get(1..end).and_then(entity)
                {
                    out.push(decoded);
                    rest = rest.get(end + 1..).unwrap_or_default();
                    continue;
                }
                out.push('&');
            }
            _ if !in_tag => out.push(c),
            _ => {}
        }
        rest = rest.get(len..).unwrap_or_default();
    }
    out
}

fn entity(name: &str) -> Option<char> {
    Some(match name {
        "amp" => '&',
        "lt" => '<',
        "gt" => '>',
        "quot" => '"',
        "apos" => '\'',
        "nbsp" => ' ',
        _ => {
            let num = name.strip_prefix('#')?;
            let code = match num.strip_prefix(['x', 'X']) {
                Some(hex) => u32::from_str_radix(hex, 16).ok()?,
                None => num.parse().ok()?,
            };
            char::from_u32(code)?
        }
    })
}

/// Cuts `s` to at most `limit` bytes at a character boundary.
pub(crate) fn truncate(mut s: String, limit: usize) -> String {
    if s.len() > limit {
        let mut cut = limit;
        while !s.is_char_boundary(cut) {
            cut -= 1;
        }
        s.truncate(cut);
    }
    s
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use super::*;
    use serde_json::json;

    #[test]
    fn a_concept_text_a_display_already_reads_adds_no_entry() {
        let texts = |concept: serde_json::Value| {
            let mut out = Vec::new();
            token_values("CodeableConcept", &concept, &mut out);
            out.iter()
                .map(|e| match e {
                    IndexValue::Token { code, text, .. } => (code.clone(), text.clone()),
                    _ => (None, None),
                })
                .collect::<Vec<_>>()
        };
        let hr = json!({"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "Heart  RATE"});
        assert_eq!(texts(hr), vec![(Some("8867-4".to_owned()), Some("heart rate".to_owned()))]);
        let other = json!({"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}], "text": "Pulse"});
        assert_eq!(
            texts(other),
            vec![(Some("8867-4".to_owned()), Some("heart rate".to_owned())), (None, Some("pulse".to_owned()))]
        );
        assert_eq!(texts(json!({"text": "Pulse"})), vec![(None, Some("pulse".to_owned()))]);
    }

    #[test]
    fn xhtml_to_text() {
        let div = "<div xmlns=\"http://www.w3.org/1999/xhtml\"><p>Peter &amp; <b>James</b>&#160;Chalmers &lt;3 &foo;</p></div>";
        let text = narrative_text(&json!({"text": {"div": div}})).unwrap();
        assert_eq!(normalize(&text), "peter & james chalmers <3 &foo;");
        assert!(narrative_text(&json!({"text": {"div": "<div></div>"}})).is_none());
    }

    #[test]
    fn content_collects_strings() {
        let r = json!({"resourceType": "Patient", "name": [{"family": "Doe"}], "photo": [{"data": "AAAA", "title": "me"}],
            "text": {"status": "generated", "div": "<div>Hi</div>"}});
        let c = normalize(&content_text(&r));
        assert_eq!(c, "doe me generated hi");
    }

    #[test]
    fn truncation_is_on_char_boundaries() {
        assert_eq!(truncate("aé".to_string(), 2), "a");
        assert_eq!(truncate("abc".to_string(), 5), "abc");
    }

    #[test]
    fn reference_splitting() {
        let known = |t: &str| matches!(t, "Patient" | "Observation");
        assert_eq!(split_reference("Patient/1", &known), Some(("Patient", "1", None)));
        assert_eq!(split_reference("http://x/fhir/Patient/1/_history/2", &known), Some(("Patient", "1", Some("2"))));
        assert_eq!(split_reference("Foo/1", &known), None);
        assert_eq!(split_reference("Patient/a b", &known), None);
        assert_eq!(split_reference("1", &known), None);
    }
}
