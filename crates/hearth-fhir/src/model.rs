//! The R4 structure model: every primitive type, complex data type and resource type with its
//! elements, loaded once from the embedded `data/r4-model.json`.
//!
//! Two ways to look things up:
//! - by spec path: [`Model::element`]`("Patient", "contact.name")`, [`Model::type_def`]`("HumanName")`;
//! - by walking JSON property names, as the validator, the FHIRPath engine and the search indexer do:
//!   start at [`Model::scope`]`("Observation")` and call [`Scope::child`]`("valueQuantity")`, which
//!   resolves choice elements (`value[x]` as `Quantity`), backbone elements and `contentReference`
//!   (`Questionnaire.item.item` has the children of `Questionnaire.item`).

use std::collections::HashMap;
use std::fmt;

use serde_json::{Map, Value};

const EMBEDDED: &str = include_str!("../data/r4-model.json");

/// The model could not be parsed. Only possible if `data/r4-model.json` was edited by hand.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ModelError {
    message: String,
}

impl ModelError {
    fn new(message: impl Into<String>) -> Self {
        Self { message: message.into() }
    }
}

impl fmt::Display for ModelError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "invalid FHIR model: {}", self.message)
    }
}

impl std::error::Error for ModelError {}

/// What a [`TypeDef`] describes.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum TypeKind {
    /// `boolean`, `string`, `dateTime`, ...: a JSON scalar plus an optional `_name` companion.
    PrimitiveType,
    /// `HumanName`, `Quantity`, `Extension`, ... and the abstract `Element` and `BackboneElement`.
    ComplexType,
    /// A resource, including the abstract `Resource` and `DomainResource`.
    Resource,
}

impl TypeKind {
    /// The StructureDefinition.kind code.
    pub fn as_str(self) -> &'static str {
        match self {
            TypeKind::PrimitiveType => "primitive-type",
            TypeKind::ComplexType => "complex-type",
            TypeKind::Resource => "resource",
        }
    }
}

/// Maximum cardinality of an element.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Max {
    /// At most this many (the base spec only uses 1).
    Bounded(u32),
    /// `*`.
    Unbounded,
}

/// One allowed type of an element.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeRef {
    code: Box<str>,
    targets: Vec<Box<str>>,
    index: Option<u32>,
}

impl TypeRef {
    /// The type code: `string`, `HumanName`, `Reference`, `BackboneElement`, `Resource`, ...
    pub fn code(&self) -> &str {
        &self.code
    }

    /// For `Reference` and `canonical`: the allowed target resource types (`Patient`, `Group`).
    /// Empty means any.
    pub fn targets(&self) -> impl Iterator<Item = &str> {
        self.targets.iter().map(|t| &**t)
    }
}

/// One element of a type, as in the StructureDefinition snapshot.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ElementDef {
    path: Box<str>,
    name_start: usize,
    name_end: usize,
    min: u32,
    max: Max,
    types: Vec<TypeRef>,
    content_reference: Option<Box<str>>,
    system: bool,
    summary: bool,
    modifier: bool,
    /// The ValueSet of a required binding the model can enforce (plain `code` elements only).
    binding: Option<Box<str>>,
    /// Scope (in the owning type) holding this element's inline children, or for a
    /// `contentReference` the scope of the referenced element.
    scope: Option<u32>,
    /// For a `contentReference`: the referenced element's index in the owning type.
    referenced: Option<u32>,
}

impl ElementDef {
    /// Path below the type, as in the spec: `contact.name`, `value[x]`, `item.item`.
    pub fn path(&self) -> &str {
        &self.path
    }

    /// The last path segment without `[x]`: `name`, `value`, `item`.
    pub fn name(&self) -> &str {
        self.path.get(self.name_start..self.name_end).unwrap_or_default()
    }

    pub fn min(&self) -> u32 {
        self.min
    }

    pub fn max(&self) -> Max {
        self.max
    }

    /// The ValueSet url of the element's required binding, when the model enforces it.
    pub fn binding(&self) -> Option<&str> {
        self.binding.as_deref()
    }

    /// Whether the element is a JSON array (max is not 1).
    pub fn is_array(&self) -> bool {
        self.max != Max::Bounded(1)
    }

    /// A choice element (`value[x]`): the JSON name carries the type, `valueQuantity`.
    pub fn is_choice(&self) -> bool {
        self.name_end != self.path.len()
    }

    /// For a choice element: which of its types the JSON property `json_name` stands for
    /// (`valueQuantity` → `Quantity`, `valueDateTime` → `dateTime`); `None` if it is not a variant
    /// of this element. Lets a caller find the polymorphic `Observation.value` among an object's keys.
    pub fn choice_type_of(&self, json_name: &str) -> Option<&TypeRef> {
        if !self.is_choice() {
            return None;
        }
        let suffix = json_name.strip_prefix(self.name())?;
        self.types.iter().find(|t| choice_suffix_is(suffix, &t.code))
    }

    /// The allowed types. Empty only for `contentReference` elements, whose types are those of the
    /// referenced element (see [`Scope::child`], which resolves this).
    pub fn types(&self) -> &[TypeRef] {
        &self.types
    }

    /// For `Questionnaire.item.item`: `item` (path below the same type).
    pub fn content_reference(&self) -> Option<&str> {
        self.content_reference.as_deref()
    }

    /// A FHIRPath System type (`Element.id`, `Extension.url`, `Resource.id`): a bare JSON value
    /// without an `_name` companion.
    pub fn is_system(&self) -> bool {
        self.system
    }

    /// Part of the `_summary=true` view.
    pub fn is_summary(&self) -> bool {
        self.summary
    }

    /// `isModifier` in the spec.
    pub fn is_modifier(&self) -> bool {
        self.modifier
    }
}

/// A set of sibling elements: the root of a type, or the children of one backbone element.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
struct ScopeData {
    /// Path of the backbone element below the type; empty for the root.
    path: Box<str>,
    /// Non-choice children, sorted by name.
    by_name: Vec<u32>,
    /// Choice children (`value[x]`).
    choices: Vec<u32>,
    /// Children with min >= 1.
    required: Vec<u32>,
    /// All children in snapshot order.
    all: Vec<u32>,
}

/// A primitive type, complex data type or resource type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TypeDef {
    name: Box<str>,
    kind: TypeKind,
    is_abstract: bool,
    base: Option<Box<str>>,
    regex: Option<Box<str>>,
    fhir_version: Box<str>,
    elements: Vec<ElementDef>,
    /// `scopes[0]` is the root of the type.
    scopes: Vec<ScopeData>,
    by_path: HashMap<Box<str>, u32>,
}

impl TypeDef {
    pub fn name(&self) -> &str {
        &self.name
    }

    pub fn kind(&self) -> TypeKind {
        self.kind
    }

    pub fn is_abstract(&self) -> bool {
        self.is_abstract
    }

    /// The base type (`DomainResource` for `Patient`, `Quantity` for `Age`); `None` for `Element`
    /// and `Resource`.
    pub fn base(&self) -> Option<&str> {
        self.base.as_deref()
    }

    /// For primitive types: the value regex from the spec (informational; the validator uses
    /// hand-written checks that accept the same language).
    pub fn regex(&self) -> Option<&str> {
        self.regex.as_deref()
    }

    /// The FHIR version the definition comes from: `4.0.1`, or `4.3.0` for `SubscriptionStatus`.
    pub fn fhir_version(&self) -> &str {
        &self.fhir_version
    }

    /// All elements in snapshot order (inherited ones included).
    pub fn elements(&self) -> &[ElementDef] {
        &self.elements
    }

    fn elem(&self, index: u32) -> Option<&ElementDef> {
        self.elements.get(index as usize)
    }
}

/// The FHIR R4 structure model. Build it once with [`Model::r4`] and share it by reference
/// (it is `Send + Sync`; the server keeps it in an `Arc`).
#[derive(Clone, PartialEq, Eq)]
pub struct Model {
    types: Vec<TypeDef>,
    by_name: HashMap<Box<str>, u32>,
    resource_types: Vec<u32>,
    element_type: u32,
    /// The codes of every ValueSet a required binding names (expanded by the generator from the
    /// official 4.0.1 ValueSets and CodeSystems).
    value_sets: HashMap<Box<str>, std::collections::HashSet<Box<str>>>,
}

/// Where the children of a JSON object are defined: the root of a type (`HumanName`, `Patient`) or
/// a backbone element inside a type (`Patient.contact`). Cheap to copy.
#[derive(Clone, Copy)]
pub struct Scope<'m> {
    model: &'m Model,
    ty: &'m TypeDef,
    index: u32,
}

// Hand-written so that printing a Scope, a Child or a server state holding the Model does not dump
// the whole model.
impl fmt::Debug for Model {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Model")
            .field("types", &self.types.len())
            .field("resource_types", &self.resource_types.len())
            .finish_non_exhaustive()
    }
}

impl fmt::Debug for Scope<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Scope").field("type", &self.ty.name).field("path", &self.path()).finish()
    }
}

/// A JSON property resolved against a [`Scope`].
#[derive(Debug, Clone, Copy)]
pub struct Child<'m> {
    /// The declared element (cardinality, flags). For a `contentReference` element this is the
    /// referencing element; its type comes from the referenced one.
    pub element: &'m ElementDef,
    /// The single type of this property: `Quantity` for `valueQuantity`, `BackboneElement` for
    /// `Patient.contact`, `string` for `Patient.name.given`.
    pub type_code: &'m str,
    /// For `Reference`/`canonical`: allowed targets (empty = any).
    pub type_ref: Option<&'m TypeRef>,
    /// Where this value's children are defined; `None` for System-typed elements.
    pub scope: Option<Scope<'m>>,
    /// The kind of `type_code` (`None` for System-typed elements).
    pub kind: Option<TypeKind>,
}

impl<'m> Scope<'m> {
    /// The type owning these elements (`Patient` for `Patient.contact`).
    pub fn type_def(&self) -> &'m TypeDef {
        self.ty
    }

    /// Path below the type of the backbone element whose children this is; `""` for a type root.
    pub fn path(&self) -> &'m str {
        self.data().map(|d| &*d.path).unwrap_or_default()
    }

    fn data(&self) -> Option<&'m ScopeData> {
        self.ty.scopes.get(self.index as usize)
    }

    /// The direct child elements in snapshot order.
    pub fn elements(&self) -> impl Iterator<Item = &'m ElementDef> + 'm {
        let ty = self.ty;
        self.data().into_iter().flat_map(|d| d.all.iter()).filter_map(move |i| ty.elem(*i))
    }

    /// Children with min >= 1.
    pub fn required(&self) -> impl Iterator<Item = &'m ElementDef> + 'm {
        let ty = self.ty;
        self.data().into_iter().flat_map(|d| d.required.iter()).filter_map(move |i| ty.elem(*i))
    }

    /// Resolves a JSON property name (`name`, `valueQuantity`; not `_name`) to its element and type.
    pub fn child(&self, json_name: &str) -> Option<Child<'m>> {
        let data = self.data()?;
        let ty = self.ty;
        let found = data
            .by_name
            .binary_search_by(|i| ty.elem(*i).map(ElementDef::name).unwrap_or_default().cmp(json_name))
            .ok()
            .and_then(|pos| data.by_name.get(pos))
            .and_then(|i| ty.elem(*i));
        if let Some(element) = found {
            return self.resolve(element, None);
        }
        for i in &data.choices {
            let Some(element) = ty.elem(*i) else { continue };
            if let Some(t) = element.choice_type_of(json_name) {
                return self.resolve(element, Some(t));
            }
        }
        None
    }

    fn resolve(&self, element: &'m ElementDef, chosen: Option<&'m TypeRef>) -> Option<Child<'m>> {
        let model = self.model;
        if element.content_reference.is_some() {
            // The referenced element is a backbone element of the same type.
            let scope = element.scope.map(|index| Scope { model, ty: self.ty, index });
            let target = element.referenced.and_then(|i| self.ty.elem(i));
            let type_ref = target.and_then(|t| t.types.first());
            let type_code = type_ref.map(TypeRef::code).unwrap_or("BackboneElement");
            return Some(Child { element, type_code, type_ref, scope, kind: Some(TypeKind::ComplexType) });
        }
        let type_ref = match chosen {
            Some(t) => t,
            None => element.types.first()?,
        };
        if element.system {
            return Some(Child {
                element,
                type_code: &type_ref.code,
                type_ref: Some(type_ref),
                scope: None,
                kind: None,
            });
        }
        let target = type_ref.index.and_then(|i| model.types.get(i as usize));
        let scope = match (element.scope, target) {
            // Inline children (backbone elements, and `Element`-typed groups such as Timing.repeat).
            (Some(index), _) => Some(Scope { model, ty: self.ty, index }),
            (None, Some(t)) => Some(Scope { model, ty: t, index: 0 }),
            (None, None) => None,
        };
        Some(Child {
            element,
            type_code: &type_ref.code,
            type_ref: Some(type_ref),
            scope,
            kind: target.map(|t| t.kind),
        })
    }
}

/// `Quantity` matches suffix `Quantity`, `dateTime` matches `DateTime`.
fn choice_suffix_is(suffix: &str, code: &str) -> bool {
    let mut s = suffix.chars();
    let mut c = code.chars();
    match (s.next(), c.next()) {
        (Some(a), Some(b)) => a == b.to_ascii_uppercase() && s.as_str() == c.as_str(),
        _ => false,
    }
}

impl Model {
    /// Parses the embedded FHIR R4 model (about 0.6 MB of JSON; do it once at startup).
    pub fn r4() -> Result<Model, ModelError> {
        Self::from_json(EMBEDDED)
    }

    fn from_json(text: &str) -> Result<Model, ModelError> {
        let root: Value = serde_json::from_str(text).map_err(|e| ModelError::new(format!("not JSON: {e}")))?;
        let list = root.get("types").and_then(Value::as_array).ok_or_else(|| ModelError::new("no `types` array"))?;
        let mut types = Vec::with_capacity(list.len());
        for t in list {
            types.push(parse_type(t)?);
        }
        types.sort_by(|a, b| a.name.cmp(&b.name));
        let mut by_name = HashMap::with_capacity(types.len());
        for (i, t) in types.iter().enumerate() {
            let i = u32::try_from(i).map_err(|_| ModelError::new("too many types"))?;
            if by_name.insert(t.name.clone(), i).is_some() {
                return Err(ModelError::new(format!("duplicate type {}", t.name)));
            }
        }
        for t in &mut types {
            for e in &mut t.elements {
                for r in &mut e.types {
                    r.index = by_name.get(&r.code).copied();
                    if r.index.is_none() && !e.system {
                        return Err(ModelError::new(format!("{}.{}: unknown type {}", t.name, e.path, r.code)));
                    }
                }
            }
        }
        let resource_types = types
            .iter()
            .enumerate()
            .filter(|(_, t)| t.kind == TypeKind::Resource && !t.is_abstract)
            .filter_map(|(i, _)| u32::try_from(i).ok())
            .collect();
        let element_type = by_name.get("Element").copied().ok_or_else(|| ModelError::new("no Element type"))?;
        let mut value_sets = HashMap::new();
        if let Some(map) = root.get("valueSets").and_then(Value::as_object) {
            for (url, codes) in map {
                let codes = codes
                    .as_array()
                    .ok_or_else(|| ModelError::new(format!("valueSets {url}: not an array")))?
                    .iter()
                    .map(|c| {
                        c.as_str().map(Into::into).ok_or_else(|| ModelError::new(format!("valueSets {url}: bad code")))
                    })
                    .collect::<Result<_, _>>()?;
                value_sets.insert(url.as_str().into(), codes);
            }
        }
        for t in &types {
            for e in &t.elements {
                if let Some(b) = &e.binding
                    && !value_sets.contains_key(b)
                {
                    return Err(ModelError::new(format!("{}.{}: binding {b} has no expansion", t.name, e.path)));
                }
            }
        }
        Ok(Model { types, by_name, resource_types, element_type, value_sets })
    }

    /// Whether `code` is in the ValueSet `url` (one a required binding names); `None` when the
    /// model has no expansion of it.
    pub fn value_set_contains(&self, url: &str, code: &str) -> Option<bool> {
        self.value_sets.get(url).map(|codes| codes.contains(code))
    }

    /// A concrete (non-abstract) resource type: `Patient` yes; `Resource`, `HumanName` no.
    pub fn is_resource_type(&self, name: &str) -> bool {
        self.type_def(name).is_some_and(|t| t.kind == TypeKind::Resource && !t.is_abstract)
    }

    /// The 147 concrete resource types, sorted.
    pub fn resource_types(&self) -> impl Iterator<Item = &str> {
        self.resource_types.iter().filter_map(|i| self.types.get(*i as usize)).map(TypeDef::name)
    }

    /// All types (primitive, complex, resource, abstract ones included), sorted by name.
    pub fn types(&self) -> impl Iterator<Item = &TypeDef> {
        self.types.iter()
    }

    /// A type by name: `Patient`, `HumanName`, `dateTime`, `BackboneElement`.
    pub fn type_def(&self, name: &str) -> Option<&TypeDef> {
        self.by_name.get(name).and_then(|i| self.types.get(*i as usize))
    }

    /// An element by spec path below its type: `element("Patient", "contact.name")`,
    /// `element("Observation", "value[x]")`. Inherited elements (`id`, `meta`, `extension`) are
    /// found too. A linear scan of the type's elements; hot paths should walk with
    /// [`Scope::child`], which also resolves JSON names such as `valueQuantity`.
    pub fn element(&self, type_name: &str, path: &str) -> Option<&ElementDef> {
        self.type_def(type_name)?.elements.iter().find(|e| &*e.path == path)
    }

    /// The root scope of a type, to resolve JSON property names from.
    pub fn scope(&self, type_name: &str) -> Option<Scope<'_>> {
        let ty = self.type_def(type_name)?;
        Some(Scope { model: self, ty, index: 0 })
    }

    /// The scope of `Element` (children `id` and `extension`): what an `_name` object may hold.
    pub(crate) fn element_scope(&self) -> Option<Scope<'_>> {
        let ty = self.types.get(self.element_type as usize)?;
        Some(Scope { model: self, ty, index: 0 })
    }

    /// Resolves a JSON property of a type's root: `child("Observation", "valueQuantity")` is
    /// element `value[x]` with type `Quantity`.
    pub fn child(&self, type_name: &str, json_name: &str) -> Option<Child<'_>> {
        self.scope(type_name)?.child(json_name)
    }
}

fn str_field<'a>(obj: &'a Map<String, Value>, key: &str, ctx: &str) -> Result<&'a str, ModelError> {
    obj.get(key).and_then(Value::as_str).ok_or_else(|| ModelError::new(format!("{ctx}: missing string `{key}`")))
}

fn bool_field(obj: &Map<String, Value>, key: &str) -> bool {
    obj.get(key).and_then(Value::as_bool).unwrap_or(false)
}

fn parse_type(v: &Value) -> Result<TypeDef, ModelError> {
    let obj = v.as_object().ok_or_else(|| ModelError::new("type is not an object"))?;
    let name = str_field(obj, "name", "type")?;
    let kind = match str_field(obj, "kind", name)? {
        "primitive-type" => TypeKind::PrimitiveType,
        "complex-type" => TypeKind::ComplexType,
        "resource" => TypeKind::Resource,
        other => return Err(ModelError::new(format!("{name}: unknown kind {other}"))),
    };
    let list =
        obj.get("elements").and_then(Value::as_array).ok_or_else(|| ModelError::new(format!("{name}: no elements")))?;
    let mut elements = Vec::with_capacity(list.len());
    for e in list {
        elements.push(parse_element(e, name)?);
    }
    let mut ty = TypeDef {
        name: name.into(),
        kind,
        is_abstract: bool_field(obj, "abstract"),
        base: obj.get("base").and_then(Value::as_str).map(Into::into),
        regex: obj.get("regex").and_then(Value::as_str).map(Into::into),
        fhir_version: obj.get("fhirVersion").and_then(Value::as_str).unwrap_or("4.0.1").into(),
        elements,
        scopes: vec![ScopeData::default()],
        by_path: HashMap::new(),
    };
    build_scopes(&mut ty)?;
    Ok(ty)
}

fn parse_element(v: &Value, ty: &str) -> Result<ElementDef, ModelError> {
    let obj = v.as_object().ok_or_else(|| ModelError::new(format!("{ty}: element is not an object")))?;
    let path = str_field(obj, "path", ty)?;
    let ctx = format!("{ty}.{path}");
    let min = obj
        .get("min")
        .and_then(Value::as_u64)
        .and_then(|m| u32::try_from(m).ok())
        .ok_or_else(|| ModelError::new(format!("{ctx}: bad min")))?;
    let max = match str_field(obj, "max", &ctx)? {
        "*" => Max::Unbounded,
        n => Max::Bounded(n.parse().map_err(|_| ModelError::new(format!("{ctx}: bad max")))?),
    };
    if max == Max::Bounded(0) {
        return Err(ModelError::new(format!("{ctx}: max 0")));
    }
    let mut types = Vec::new();
    for t in obj.get("types").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default() {
        let t = t.as_str().ok_or_else(|| ModelError::new(format!("{ctx}: bad type")))?;
        types.push(parse_type_ref(t));
    }
    let content_reference: Option<Box<str>> = obj.get("contentReference").and_then(Value::as_str).map(Into::into);
    if types.is_empty() == content_reference.is_none() {
        return Err(ModelError::new(format!("{ctx}: needs exactly one of types and contentReference")));
    }
    let name_start = path.rfind('.').map_or(0, |i| i + 1);
    let name_end = path.strip_suffix("[x]").map_or(path.len(), str::len);
    if name_end <= name_start {
        return Err(ModelError::new(format!("{ctx}: bad path")));
    }
    Ok(ElementDef {
        path: path.into(),
        name_start,
        name_end,
        min,
        max,
        types,
        content_reference,
        system: bool_field(obj, "system"),
        summary: bool_field(obj, "summary"),
        modifier: bool_field(obj, "modifier"),
        binding: obj.get("binding").and_then(Value::as_str).map(Into::into),
        scope: None,
        referenced: None,
    })
}

/// `Reference(Patient|Group)` → code `Reference`, targets `Patient`, `Group`.
fn parse_type_ref(s: &str) -> TypeRef {
    match s.split_once('(') {
        Some((code, rest)) => TypeRef {
            code: code.into(),
            targets: rest.trim_end_matches(')').split('|').filter(|t| !t.is_empty()).map(Into::into).collect(),
            index: None,
        },
        None => TypeRef { code: s.into(), targets: Vec::new(), index: None },
    }
}

/// Groups elements by parent path and gives every element with inline children its own scope.
fn build_scopes(ty: &mut TypeDef) -> Result<(), ModelError> {
    // Every parent path that has children gets a scope.
    for e in &ty.elements {
        if let Some(dot) = e.path.rfind('.') {
            let parent = e.path.get(..dot).unwrap_or_default();
            if !ty.by_path.contains_key(parent) {
                let index = u32::try_from(ty.scopes.len()).map_err(|_| ModelError::new("too many scopes"))?;
                ty.by_path.insert(parent.into(), index);
                ty.scopes.push(ScopeData { path: parent.into(), ..ScopeData::default() });
            }
        }
    }
    let paths: HashMap<Box<str>, u32> =
        ty.elements.iter().enumerate().filter_map(|(i, e)| Some((e.path.clone(), u32::try_from(i).ok()?))).collect();
    for (i, e) in ty.elements.iter_mut().enumerate() {
        let i = u32::try_from(i).map_err(|_| ModelError::new("too many elements"))?;
        let parent = e.path.rfind('.').map_or("", |dot| e.path.get(..dot).unwrap_or_default());
        let parent_scope = if parent.is_empty() {
            0
        } else {
            *ty.by_path
                .get(parent)
                .ok_or_else(|| ModelError::new(format!("{}.{}: no parent scope", ty.name, e.path)))?
        };
        let own = match &e.content_reference {
            Some(target) => Some(*ty.by_path.get(&**target).ok_or_else(|| {
                ModelError::new(format!("{}.{}: contentReference {target} has no children", ty.name, e.path))
            })?),
            None => ty.by_path.get(&*e.path).copied(),
        };
        e.scope = own;
        e.referenced = e.content_reference.as_deref().and_then(|t| paths.get(t).copied());
        let data = ty.scopes.get_mut(parent_scope as usize).ok_or_else(|| ModelError::new("scope index"))?;
        data.all.push(i);
        if e.min > 0 {
            data.required.push(i);
        }
        if e.name_end != e.path.len() {
            data.choices.push(i);
        } else {
            data.by_name.push(i);
        }
    }
    let elements = &ty.elements;
    for data in &mut ty.scopes {
        data.by_name.sort_by(|a, b| {
            let name = |i: &u32| elements.get(*i as usize).map(ElementDef::name);
            name(a).cmp(&name(b))
        });
        let names: Vec<_> =
            data.by_name.iter().filter_map(|i| elements.get(*i as usize).map(ElementDef::name)).collect();
        if names.windows(2).any(|w| w.first() == w.get(1)) {
            return Err(ModelError::new(format!("{}: duplicate element", ty.name)));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

    use super::*;

    fn model() -> Model {
        Model::r4().unwrap()
    }

    #[test]
    fn r4_has_147_concrete_resource_types_sorted() {
        let m = model();
        let names: Vec<&str> = m.resource_types().collect();
        assert_eq!(names.len(), 147);
        let mut sorted = names.clone();
        sorted.sort_unstable();
        assert_eq!(names, sorted);
        assert!(names.contains(&"Patient"));
        assert!(names.contains(&"SubscriptionStatus"));
        assert!(!names.contains(&"Resource"));
        assert!(!names.contains(&"DomainResource"));
    }

    #[test]
    fn is_resource_type_only_for_concrete_resources() {
        let m = model();
        assert!(m.is_resource_type("Patient"));
        assert!(m.is_resource_type("Bundle"));
        assert!(!m.is_resource_type("Resource"));
        assert!(!m.is_resource_type("DomainResource"));
        assert!(!m.is_resource_type("HumanName"));
        assert!(!m.is_resource_type("string"));
        assert!(!m.is_resource_type("patient"));
        assert!(!m.is_resource_type(""));
    }

    #[test]
    fn official_definitions_win_over_medplum_edits() {
        let m = model();
        assert!(m.element("Meta", "project").is_none());
        assert!(m.element("Binary", "url").is_none());
        assert!(m.element("ResearchStudy", "site").is_some());
        assert_eq!(m.type_def("Patient").unwrap().fhir_version(), "4.0.1");
        assert_eq!(m.type_def("SubscriptionStatus").unwrap().fhir_version(), "4.3.0");
    }

    #[test]
    fn element_lookup_by_spec_path() {
        let m = model();
        let e = m.element("Patient", "contact.name").unwrap();
        assert_eq!(e.name(), "name");
        assert_eq!(e.types()[0].code(), "HumanName");
        assert_eq!(e.max(), Max::Bounded(1));
        let v = m.element("Observation", "value[x]").unwrap();
        assert!(v.is_choice());
        assert_eq!(v.name(), "value");
        let r = m.element("Observation", "subject").unwrap();
        let targets: Vec<&str> = r.types()[0].targets().collect();
        assert_eq!(targets, ["Patient", "Group", "Device", "Location"]);
        let s = m.element("Observation", "status").unwrap();
        assert_eq!((s.min(), s.is_summary(), s.is_modifier()), (1, true, true));
        let id = m.element("Patient", "id").unwrap();
        assert!(id.is_system());
        assert_eq!(id.types()[0].code(), "id");
    }

    #[test]
    fn child_resolves_choice_backbone_and_content_reference() {
        let m = model();
        let c = m.child("Observation", "valueQuantity").unwrap();
        assert_eq!(c.element.path(), "value[x]");
        assert_eq!(c.type_code, "Quantity");
        assert_eq!(c.kind, Some(TypeKind::ComplexType));
        let unit = c.scope.unwrap().child("unit").unwrap();
        assert_eq!(unit.type_code, "string");
        assert_eq!(unit.kind, Some(TypeKind::PrimitiveType));

        let value = m.element("Observation", "value[x]").unwrap();
        assert_eq!(value.choice_type_of("valueString").unwrap().code(), "string");
        assert!(value.choice_type_of("valueFoo").is_none());
        assert!(value.choice_type_of("value").is_none());
        let dt = m.child("Observation", "effectiveDateTime").unwrap();
        assert_eq!(dt.type_code, "dateTime");
        assert!(m.child("Observation", "valueFoo").is_none());
        assert!(m.child("Observation", "value").is_none());
        assert!(m.child("Observation", "valuequantity").is_none());

        let contact = m.child("Patient", "contact").unwrap();
        assert_eq!(contact.type_code, "BackboneElement");
        let scope = contact.scope.unwrap();
        assert_eq!(scope.type_def().name(), "Patient");
        assert_eq!(scope.path(), "contact");
        assert_eq!(scope.child("name").unwrap().type_code, "HumanName");

        let item = m.child("Questionnaire", "item").unwrap();
        let nested = item.scope.unwrap().child("item").unwrap();
        assert_eq!(nested.element.path(), "item.item");
        assert_eq!(nested.element.content_reference(), Some("item"));
        assert_eq!(nested.type_code, "BackboneElement");
        let deeper = nested.scope.unwrap().child("linkId").unwrap();
        assert_eq!(deeper.element.path(), "item.linkId");

        let repeat = m.child("Timing", "repeat").unwrap();
        assert_eq!(repeat.type_code, "Element");
        assert!(repeat.scope.unwrap().child("boundsPeriod").is_some());

        let url = m.child("Extension", "url").unwrap();
        assert!(url.scope.is_none());
        assert_eq!(url.type_code, "uri");
    }

    #[test]
    fn required_children() {
        let m = model();
        let req: Vec<&str> = m.scope("Observation").unwrap().required().map(ElementDef::path).collect();
        assert_eq!(req, ["status", "code"]);
    }

    #[test]
    fn primitive_regex_is_kept() {
        let m = model();
        let date = m.type_def("date").unwrap();
        assert_eq!(date.kind(), TypeKind::PrimitiveType);
        assert!(date.regex().unwrap().starts_with("([0-9]([0-9]([0-9][1-9]"));
        assert!(m.type_def("xhtml").unwrap().regex().is_none());
    }

    #[test]
    fn model_is_shareable_and_debug_is_short() {
        fn shareable<T: Send + Sync + 'static>() {}
        shareable::<Model>();
        let m = model();
        assert!(format!("{m:?}").len() < 100);
        let c = m.child("Patient", "contact").unwrap();
        assert!(format!("{c:?}").len() < 2_000);
    }

    #[test]
    fn bad_model_is_an_error_not_a_panic() {
        assert!(Model::from_json("").is_err());
        assert!(Model::from_json("{}").is_err());
        assert!(Model::from_json(r#"{"types":[{"name":"X"}]}"#).is_err());
    }
}
