//! The registry of search parameters: the official R4 definitions plus the SearchParameter
//! resources created through the API, per resource type.

use std::collections::{BTreeMap, HashMap};
use std::fmt;
use std::sync::Arc;

use hearth_fhir::Model;
use hearth_fhirpath::{Context, DateTime, Item, parse};
use serde_json::Value;

use crate::index::{self, COMPOSITE_LIMIT, FULL_TEXT_LIMIT, IndexEntry, IndexValue};
use crate::model::FhirModel;
use crate::param::{Component, Modifier, ParamType, Prefix, SearchParam};

const R4_PARAMETERS: &str = include_str!("../data/r4-search-parameters.json");

/// A SearchParameter definition that cannot be used, with the reason.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DefinitionError {
    /// The parameter's URL (or `id`/`code` when it has none), for messages.
    pub parameter: String,
    pub message: String,
}

impl fmt::Display for DefinitionError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SearchParameter {}: {}", self.parameter, self.message)
    }
}

impl std::error::Error for DefinitionError {}

/// The search parameters that apply to each resource type, and what Hearth derives from them.
///
/// Build once with [`Registry::r4`]; add API-created parameters with [`Registry::add`]. Cloning
/// is cheap-ish (parameters are shared `Arc`s), so a server can copy, modify and swap it.
#[derive(Clone)]
pub struct Registry {
    pub(crate) model: Arc<FhirModel>,
    /// Concrete resource type → code → parameter.
    pub(crate) by_type: HashMap<String, BTreeMap<String, Arc<SearchParam>>>,
    /// Parameter URL → parameter.
    by_url: HashMap<String, Arc<SearchParam>>,
    /// Resource types whose base is `DomainResource` (everything but Bundle, Binary, Parameters).
    domain_resources: Vec<String>,
    /// The clock value handed to FHIRPath. Search parameter expressions never call `now()`;
    /// a fixed value keeps indexing deterministic.
    epoch: DateTime,
}

impl fmt::Debug for Registry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Registry").field("parameters", &self.by_url.len()).finish_non_exhaustive()
    }
}

impl Registry {
    /// The registry of the 1,375 official FHIR R4 search parameters (embedded; see
    /// `data/README.md`). Errors only if the embedded data was edited into something invalid.
    pub fn r4(model: &Model) -> Result<Registry, DefinitionError> {
        let fail = |message: String| DefinitionError { parameter: "(embedded R4 definitions)".into(), message };
        let root: Value = serde_json::from_str(R4_PARAMETERS).map_err(|e| fail(e.to_string()))?;
        let list = root.get("parameters").and_then(Value::as_array).ok_or_else(|| fail("no parameters".into()))?;
        let epoch = DateTime::parse("1970-01-01T00:00:00Z").ok_or_else(|| fail("epoch".into()))?;
        let domain_resources = model
            .resource_types()
            .filter(|t| model.type_def(t).and_then(|d| d.base()) == Some("DomainResource"))
            .map(str::to_string)
            .collect();
        let mut registry = Registry {
            model: Arc::new(FhirModel::new(model)),
            by_type: HashMap::new(),
            by_url: HashMap::new(),
            domain_resources,
            epoch,
        };
        // Composites name their components by URL: register the others first.
        let (composites, simple): (Vec<&Value>, Vec<&Value>) =
            list.iter().partition(|p| p.get("type").and_then(Value::as_str) == Some("composite"));
        for definition in simple.into_iter().chain(composites) {
            registry.add(definition)?;
        }
        Ok(registry)
    }

    /// Registers a SearchParameter resource (as created through the API), replacing the one
    /// with the same `url` if there is one. Checked: `resourceType`, `url`, `code` syntax,
    /// `base` (resource types, or `Resource`/`DomainResource`), `type`, `expression` (required
    /// except for the R4 `_text`/`_content`/`_query`; must compile), `target` (resource types),
    /// composite `component`s (registered parameters, compiling expressions), and that `code`
    /// is not already used by a different parameter on one of the base types.
    pub fn add(&mut self, resource: &Value) -> Result<(), DefinitionError> {
        let param = self.definition(resource)?;
        let types = self.types_for(&param.base);
        for ty in &types {
            if let Some(existing) = self.by_type.get(ty).and_then(|m| m.get(&param.code))
                && existing.url != param.url
            {
                return Err(DefinitionError {
                    parameter: param.url.clone(),
                    message: format!("code `{}` is already defined for {ty} by {}", param.code, existing.url),
                });
            }
        }
        self.remove(&param.url);
        let param = Arc::new(param);
        for ty in types {
            self.by_type.entry(ty).or_default().insert(param.code.clone(), Arc::clone(&param));
        }
        self.by_url.insert(param.url.clone(), param);
        Ok(())
    }

    /// Unregisters the parameter with this URL (a deleted SearchParameter resource). Returns
    /// whether there was one. Composites that use it as a component keep their copy of it.
    pub fn remove(&mut self, url: &str) -> bool {
        let Some(old) = self.by_url.remove(url) else { return false };
        for ty in self.types_for(&old.base) {
            if let Some(params) = self.by_type.get_mut(&ty)
                && params.get(&old.code).is_some_and(|p| p.url == url)
            {
                params.remove(&old.code);
            }
        }
        true
    }

    /// The parameter `code` of `resource_type`.
    pub fn get(&self, resource_type: &str, code: &str) -> Option<&SearchParam> {
        self.by_type.get(resource_type)?.get(code).map(AsRef::as_ref)
    }

    /// The parameters of a resource type, sorted by code (what a CapabilityStatement lists).
    pub fn params(&self, resource_type: &str) -> impl Iterator<Item = &SearchParam> {
        self.by_type.get(resource_type).into_iter().flat_map(|m| m.values()).map(AsRef::as_ref)
    }

    /// Applies a FHIRPath Patch (a `Parameters` resource) to `resource` with the R4 model's types
    /// and cardinalities (the model the registry already holds). `now` is FHIRPath's `now()`.
    pub fn fhirpath_patch(
        &self,
        resource: &Value,
        patch: &Value,
        now: DateTime,
    ) -> Result<Value, hearth_fhirpath::PatchError> {
        hearth_fhirpath::patch::apply(resource, patch, &*self.model, now)
    }

    /// A parameter by its canonical URL.
    pub fn by_url(&self, url: &str) -> Option<&SearchParam> {
        self.by_url.get(url).map(AsRef::as_ref)
    }

    /// Every registered parameter (each once), in no particular order.
    pub fn all(&self) -> impl Iterator<Item = &SearchParam> {
        self.by_url.values().map(AsRef::as_ref)
    }

    /// The concrete resource types (147), sorted.
    pub fn resource_types(&self) -> &[String] {
        self.model.resource_types()
    }

    pub fn is_resource_type(&self, name: &str) -> bool {
        self.model.is_resource_type(name)
    }

    fn types_for(&self, base: &[String]) -> Vec<String> {
        let mut out: Vec<String> = Vec::new();
        for b in base {
            match b.as_str() {
                "Resource" => out.extend(self.model.resource_types().iter().cloned()),
                "DomainResource" => out.extend(self.domain_resources.iter().cloned()),
                other => out.push(other.to_string()),
            }
        }
        out.sort();
        out.dedup();
        out
    }

    fn definition(&self, r: &Value) -> Result<SearchParam, DefinitionError> {
        let name = r
            .get("url")
            .or_else(|| r.get("id"))
            .or_else(|| r.get("code"))
            .and_then(Value::as_str)
            .unwrap_or("(unnamed)")
            .to_string();
        let err = |message: String| DefinitionError { parameter: name.clone(), message };
        if r.get("resourceType").and_then(Value::as_str) != Some("SearchParameter") {
            return Err(err("not a SearchParameter resource".into()));
        }
        let string = |key: &str| r.get(key).and_then(Value::as_str).filter(|s| !s.trim().is_empty());
        let strings = |key: &str| -> Result<Vec<String>, DefinitionError> {
            match r.get(key) {
                None => Ok(Vec::new()),
                Some(Value::Array(items)) => items
                    .iter()
                    .map(|i| i.as_str().map(str::to_string).ok_or_else(|| err(format!("`{key}` must hold strings"))))
                    .collect(),
                Some(_) => Err(err(format!("`{key}` must be an array"))),
            }
        };
        let url = string("url").ok_or_else(|| err("`url` is required".into()))?.to_string();
        let code = string("code").ok_or_else(|| err("`code` is required".into()))?.to_string();
        if !valid_code(&code) {
            return Err(err(format!("`code` `{code}` is not a valid parameter name (letters, digits, `-`, `_`)")));
        }
        if RESERVED.contains(&code.as_str()) {
            return Err(err(format!("`code` `{code}` is reserved for a search control parameter")));
        }
        let base = strings("base")?;
        if base.is_empty() {
            return Err(err("`base` is required".into()));
        }
        for b in &base {
            if !(b == "Resource" || b == "DomainResource" || self.model.is_resource_type(b)) {
                return Err(err(format!("`base` `{b}` is not a resource type")));
            }
        }
        let type_code = string("type").ok_or_else(|| err("`type` is required".into()))?;
        let kind = ParamType::parse(type_code).ok_or_else(|| err(format!("unknown `type` `{type_code}`")))?;
        let expression = match string("expression") {
            Some(src) => Some(parse(src).map_err(|e| err(format!("`expression` does not compile: {e}")))?),
            None if matches!(code.as_str(), "_text" | "_content" | "_query") => None,
            None => return Err(err("`expression` is required".into())),
        };
        let targets = strings("target")?;
        for t in &targets {
            if !self.model.is_resource_type(t) && t != "Resource" {
                return Err(err(format!("`target` `{t}` is not a resource type")));
            }
        }
        let targets = if targets.iter().any(|t| t == "Resource") { Vec::new() } else { targets };
        let mut components = Vec::new();
        if kind == ParamType::Composite {
            let list = r.get("component").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
            if list.len() < 2 {
                return Err(err("a composite needs at least two `component`s".into()));
            }
            for c in list {
                let definition = c
                    .get("definition")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("`component.definition` is required".into()))?;
                let target = self
                    .by_url
                    .get(definition)
                    .ok_or_else(|| err(format!("component `{definition}` is not a registered parameter")))?;
                if matches!(target.kind, ParamType::Composite | ParamType::Special) {
                    return Err(err(format!("component `{definition}` is a {} parameter", target.kind)));
                }
                let src = c
                    .get("expression")
                    .and_then(Value::as_str)
                    .ok_or_else(|| err("`component.expression` is required".into()))?;
                let expression =
                    parse(src).map_err(|e| err(format!("component expression `{src}` does not compile: {e}")))?;
                components.push(Component {
                    definition: definition.to_string(),
                    code: target.code.clone(),
                    kind: target.kind,
                    expression,
                });
            }
        }
        let mut comparators: Vec<Prefix> = if kind.takes_prefix() {
            let listed = strings("comparator")?;
            if listed.is_empty() {
                Prefix::ALL.to_vec()
            } else {
                listed
                    .iter()
                    .map(|c| Prefix::parse(c).ok_or_else(|| err(format!("unknown comparator `{c}`"))))
                    .collect::<Result<_, _>>()?
            }
        } else {
            Vec::new()
        };
        comparators.sort();
        comparators.dedup();
        let listed_modifiers = strings("modifier")?;
        let modifiers = kind
            .modifiers()
            .iter()
            .copied()
            .filter(|m| {
                *m == Modifier::Missing
                    || listed_modifiers.is_empty()
                    || listed_modifiers.iter().any(|l| l == m.as_str() || (l == "ofType" && *m == Modifier::OfType))
            })
            .collect();
        Ok(SearchParam {
            url,
            code,
            base,
            kind,
            expression,
            chainable: kind == ParamType::Reference,
            targets,
            components,
            comparators,
            modifiers,
        })
    }

    /// Everything `resource` contributes to the search indexes: one [`IndexEntry`] per value of
    /// every parameter of its type (see [`IndexValue`] for how each FHIR type is converted).
    ///
    /// Evaluation is lenient: a parameter whose expression fails at run time (a type error on
    /// odd data) contributes nothing, and the others are still indexed. `is`/`as` apply item by
    /// item on collections, as indexers conventionally do. `resolve()` does not load anything:
    /// `Observation.subject.where(resolve() is Patient)` is decided from the reference's `Type/`.
    ///
    /// `_text` is the narrative as plain text and `_content` all text of the resource, each as
    /// one [`IndexValue::String`] cut to [`FULL_TEXT_LIMIT`] bytes; a backend may keep them in a
    /// full-text index instead of the string index. `_query` yields nothing; `near`
    /// (special) yields [`IndexValue::Position`].
    ///
    /// Index the resource as stored (after `id` and `meta` are stamped), so that `_id` and
    /// `_lastUpdated` are present. Unknown resource types yield nothing.
    pub fn index(&self, resource: &Value) -> Vec<IndexEntry> {
        let Some(ty) = resource.get("resourceType").and_then(Value::as_str) else { return Vec::new() };
        let Some(params) = self.by_type.get(ty) else { return Vec::new() };
        let model: &FhirModel = &self.model;
        let ctx = Context::new(self.epoch).with_model(model).lenient_type_operators(true).with_resource(resource);
        let is_type = |t: &str| model.is_resource_type(t);
        let mut entries = Vec::new();
        for param in params.values() {
            let mut values = Vec::new();
            match (&param.expression, param.code.as_str()) {
                (None, "_text") => {
                    values.extend(index::narrative_text(resource).and_then(full_text));
                }
                (None, "_content") => {
                    values.extend(full_text(index::content_text(resource)));
                }
                (None, _) => {}
                (Some(expr), _) => {
                    if !expr.may_select(resource, ty) {
                        continue;
                    }
                    let Ok(items) = expr.evaluate(&ctx, resource) else { continue };
                    if param.kind == ParamType::Composite {
                        for focus in &items {
                            composite_values(&ctx, param, focus, &is_type, &mut values);
                        }
                    } else {
                        for item in &items {
                            index::convert(param.kind, item, &is_type, &mut values);
                        }
                    }
                }
            }
            entries.extend(distinct(values).into_iter().map(|value| IndexEntry { param: param.code.clone(), value }));
        }
        entries
    }
}

/// The values without repeats, first occurrence kept, in time linear in their number (a
/// resource with 30,000 names used to take seconds per parameter comparing every value with
/// every other). Values are told apart by their debug form, which differs exactly when they
/// differ but for a `-0.0` against a `0.0` bound (kept twice: harmless).
fn distinct(values: Vec<IndexValue>) -> Vec<IndexValue> {
    // Most parameters of most resources have no value or one: nothing to compare.
    if values.len() < 2 {
        return values;
    }
    let mut seen = std::collections::HashSet::with_capacity(values.len());
    values.into_iter().filter(|v| seen.insert(format!("{v:?}"))).collect()
}

fn full_text(text: String) -> Option<IndexValue> {
    let text = index::truncate(text, FULL_TEXT_LIMIT);
    let normalized = index::truncate(crate::text::normalize(&text), FULL_TEXT_LIMIT);
    (!normalized.is_empty()).then_some(IndexValue::String { normalized, exact: text })
}

fn composite_values<'a>(
    ctx: &Context<'a>,
    param: &SearchParam,
    focus: &Item<'a>,
    is_type: &dyn Fn(&str) -> bool,
    out: &mut Vec<IndexValue>,
) {
    let mut parts: Vec<Vec<IndexValue>> = Vec::with_capacity(param.components.len());
    for component in &param.components {
        let Ok(items) = component.expression.evaluate_items(ctx, vec![focus.clone()]) else { return };
        let mut values = Vec::new();
        for item in &items {
            index::convert(component.kind, item, is_type, &mut values);
        }
        if values.is_empty() {
            return;
        }
        parts.push(values);
    }
    let mut combos: Vec<Vec<IndexValue>> = vec![Vec::new()];
    for values in parts {
        let mut next = Vec::new();
        for combo in &combos {
            for v in &values {
                if next.len() >= COMPOSITE_LIMIT {
                    break;
                }
                let mut c = combo.clone();
                c.push(v.clone());
                next.push(c);
            }
        }
        combos = next;
    }
    out.extend(combos.into_iter().map(|components| IndexValue::Composite { components }));
}

/// Names the query parser handles itself: a SearchParameter with one of these codes could never
/// be used.
const RESERVED: &[&str] = &[
    "_sort",
    "_count",
    "_total",
    "_summary",
    "_elements",
    "_include",
    "_revinclude",
    "_type",
    "_list",
    "_has",
    "_format",
    "_pretty",
    "_contained",
    "_containedType",
    "_filter",
    "_score",
    "_graph",
];

/// Parameter codes: letters, digits, `-`, `_`, `.` is not allowed (it starts a chain).
fn valid_code(code: &str) -> bool {
    !code.is_empty() && code.len() <= 64 && code.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}
