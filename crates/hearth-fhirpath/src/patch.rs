//! FHIRPath Patch (FHIR R4, `fhirpatch.html`): a `Parameters` resource whose
//! `operation` parameters add, insert, delete, replace or move elements
//! located by FHIRPath expressions.
//!
//! Pure, like the JSON Patch module of `hearth-fhir`: [`apply`] patches a copy
//! and returns it, so a failing patch leaves nothing half-applied. Each path is
//! evaluated with this crate's engine against the resource as the earlier
//! operations left it; [`Node::json_pointer`](crate::Node::json_pointer) maps
//! the selected elements back to JSON locations.
//!
//! The rules applied (the spec's, made precise where it is terse):
//!
//! * `add` (`path`, `name`, `value`): `path` selects exactly one element (or
//!   the resource); `name` is added to it. A repeating element gets the value
//!   appended; a non-repeating one must not have a value yet. Adding `id` /
//!   `extension` to a primitive writes its `_name` sibling.
//! * `insert` (`path`, `value`, `index`): `path` selects one whole list (every
//!   item of one repeating element, in order); `index` ≤ its length. An empty
//!   list is addressed by a path ending in the element name whose parent
//!   selects exactly one element (`Patient.identifier` on a Patient without
//!   identifiers).
//! * `delete` (`path`): no match is not an error; more than one match is.
//!   Elements left empty by the deletion are removed too.
//! * `replace` (`path`, `value`): exactly one match. A choice element may
//!   change type (`valueQuantity` → `valueString`).
//! * `move` (`path`, `source`, `destination`): `path` selects one whole list;
//!   the item at `source` is taken out and put back at `destination`.
//!
//! Values are a `value[x]` (its `_value[x]` carries a primitive's
//! extensions), a `resource`, or `part`s naming the children of a complex
//! value (needed for backbone elements, which have no `value[x]` form). Where
//! the model knows an element's type the value must fit it: a primitive for a
//! primitive (with the same JSON kind: string, number or boolean), a
//! compatible data type for a data type, a resource for a resource.
//!
//! Whether an element repeats (and so is a JSON array) is not part of
//! [`ModelInfo`]; [`PatchModel`] adds it. Where the model does not know, the
//! JSON decides: an existing array repeats, anything else is taken as a
//! single value.

use serde_json::{Map, Value};

use crate::ast::Expr;
use crate::datetime::DateTime;
use crate::model::{JsonModel, ModelInfo, is_primitive_type};
use crate::value::Item;
use crate::{Context, Expression, parse};

/// The FHIR model knowledge FHIRPath Patch needs: element types (as for
/// evaluation) and whether an element repeats.
pub trait PatchModel: ModelInfo {
    /// Whether `element` on a value whose definition key is `parent` (see
    /// [`ModelInfo::element`]) has max cardinality `*`. `None` when unknown.
    fn repeats(&self, parent: &str, element: &str) -> Option<bool>;
}

/// The JSON-only model knows no cardinalities: the JSON decides (see the
/// module documentation).
impl PatchModel for JsonModel {
    fn repeats(&self, _parent: &str, _element: &str) -> Option<bool> {
        None
    }
}

/// Why a FHIRPath Patch could not be applied.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PatchError {
    /// Index of the failing `operation` parameter; `None` when the patch as a
    /// whole is malformed (not a `Parameters` resource).
    pub operation: Option<usize>,
    pub message: String,
}

impl std::fmt::Display for PatchError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.operation {
            Some(i) => write!(f, "FHIRPath Patch operation {i}: {}", self.message),
            None => write!(f, "FHIRPath Patch: {}", self.message),
        }
    }
}

impl std::error::Error for PatchError {}

/// Applies a FHIRPath Patch (`patch`, a `Parameters` resource) to `resource`
/// and returns the patched copy.
///
/// `model` types the paths and tells which elements repeat; `now` is the
/// clock value for `now()` / `today()` in paths (the engine reads no clock).
///
/// ```
/// use hearth_fhirpath::{DateTime, JsonModel, patch};
/// use serde_json::json;
///
/// let patient = json!({"resourceType": "Patient", "birthDate": "1920-01-01"});
/// let patch = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
///     {"name": "type", "valueCode": "replace"},
///     {"name": "path", "valueString": "Patient.birthDate"},
///     {"name": "value", "valueDate": "1930-01-01"}]}]});
/// let now = DateTime::parse("2024-05-01T12:00:00Z").unwrap();
/// let out = patch::apply(&patient, &patch, &JsonModel, now).unwrap();
/// assert_eq!(out["birthDate"], "1930-01-01");
/// ```
pub fn apply(resource: &Value, patch: &Value, model: &dyn PatchModel, now: DateTime) -> Result<Value, PatchError> {
    let operations = parse_patch(patch)?;
    if resource.get("resourceType").and_then(Value::as_str).is_none() {
        return Err(PatchError { operation: None, message: "the patched value is not a FHIR resource".into() });
    }
    let patcher = Patcher { model, now };
    let mut doc = resource.clone();
    for (i, op) in operations.iter().enumerate() {
        patcher
            .run(&mut doc, op)
            .map_err(|m| PatchError { operation: Some(i), message: format!("{}: {m}", op.kind.name()) })?;
    }
    Ok(doc)
}

// ---------------------------------------------------------------------------
// The patch document

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Add,
    Insert,
    Delete,
    Replace,
    Move,
}

impl Kind {
    fn name(self) -> &'static str {
        match self {
            Kind::Add => "add",
            Kind::Insert => "insert",
            Kind::Delete => "delete",
            Kind::Replace => "replace",
            Kind::Move => "move",
        }
    }
}

struct Operation<'p> {
    kind: Kind,
    path: &'p str,
    name: Option<&'p str>,
    /// The `value` part itself (holding `value[x]`, `resource` or `part`s).
    value: Option<&'p Value>,
    index: Option<usize>,
    source: Option<usize>,
    destination: Option<usize>,
}

fn parse_patch(patch: &Value) -> Result<Vec<Operation<'_>>, PatchError> {
    let whole = |message: String| PatchError { operation: None, message };
    let obj = patch.as_object().ok_or_else(|| whole("the patch must be a Parameters resource".into()))?;
    match obj.get("resourceType").and_then(Value::as_str) {
        Some("Parameters") => {}
        Some(other) => return Err(whole(format!("the patch must be a Parameters resource, not {other}"))),
        None => return Err(whole("the patch has no resourceType; it must be a Parameters resource".into())),
    }
    let params = match obj.get("parameter") {
        None => return Ok(Vec::new()),
        Some(Value::Array(a)) => a,
        Some(_) => return Err(whole("`parameter` must be an array".into())),
    };
    params
        .iter()
        .enumerate()
        .map(|(i, p)| parse_operation(p).map_err(|message| PatchError { operation: Some(i), message }))
        .collect()
}

fn parse_operation(p: &Value) -> Result<Operation<'_>, String> {
    let name = p.get("name").and_then(Value::as_str);
    if name != Some("operation") {
        return Err(format!("parameter `{}` is not an `operation`", name.unwrap_or("(unnamed)")));
    }
    let parts = match p.get("part") {
        Some(Value::Array(a)) => a,
        _ => return Err("an operation needs `part`s (type, path, ...)".into()),
    };
    let mut kind = None;
    let mut path = None;
    let mut elem_name = None;
    let mut value = None;
    let mut index = None;
    let mut source = None;
    let mut destination = None;
    for part in parts {
        let pname = part.get("name").and_then(Value::as_str).ok_or("every part of an operation needs a `name`")?;
        let duplicate = match pname {
            "type" => kind.replace(string_part(part, pname, &["valueCode", "valueString"])?).is_some(),
            "path" => path.replace(string_part(part, pname, &["valueString"])?).is_some(),
            "name" => elem_name.replace(string_part(part, pname, &["valueString"])?).is_some(),
            "value" => value.replace(part).is_some(),
            "index" => index.replace(integer_part(part, pname)?).is_some(),
            "source" => source.replace(integer_part(part, pname)?).is_some(),
            "destination" => destination.replace(integer_part(part, pname)?).is_some(),
            other => return Err(format!("unknown part `{other}`")),
        };
        if duplicate {
            return Err(format!("part `{pname}` is given twice"));
        }
    }
    let kind = match kind {
        Some("add") => Kind::Add,
        Some("insert") => Kind::Insert,
        Some("delete") => Kind::Delete,
        Some("replace") => Kind::Replace,
        Some("move") => Kind::Move,
        Some(other) => {
            return Err(format!("unknown operation type `{other}` (expected add, insert, delete, replace or move)"));
        }
        None => return Err("the operation has no `type` part".into()),
    };
    let path = path.ok_or_else(|| format!("{}: the operation has no `path` part", kind.name()))?;
    let given = [
        ("name", elem_name.is_some()),
        ("value", value.is_some()),
        ("index", index.is_some()),
        ("source", source.is_some()),
        ("destination", destination.is_some()),
    ];
    let needed: &[&str] = match kind {
        Kind::Add => &["name", "value"],
        Kind::Insert => &["value", "index"],
        Kind::Delete => &[],
        Kind::Replace => &["value"],
        Kind::Move => &["source", "destination"],
    };
    for (part, present) in given {
        match (needed.contains(&part), present) {
            (true, false) => return Err(format!("{}: the operation needs a `{part}` part", kind.name())),
            (false, true) => return Err(format!("{}: a `{part}` part does not belong to this operation", kind.name())),
            _ => {}
        }
    }
    Ok(Operation { kind, path, name: elem_name, value, index, source, destination })
}

fn string_part<'p>(part: &'p Value, name: &str, keys: &[&str]) -> Result<&'p str, String> {
    keys.iter()
        .find_map(|k| part.get(*k))
        .and_then(Value::as_str)
        .ok_or_else(|| format!("part `{name}` must have a {}", keys.join(" or ")))
}

fn integer_part(part: &Value, name: &str) -> Result<usize, String> {
    ["valueInteger", "valueUnsignedInt", "valuePositiveInt"]
        .iter()
        .find_map(|k| part.get(*k))
        .and_then(Value::as_u64)
        .and_then(|n| usize::try_from(n).ok())
        .ok_or_else(|| format!("part `{name}` must have a non-negative valueInteger"))
}

/// New content, as the `value` part gives it.
enum NewValue<'p> {
    /// `value[x]`: the FHIR type named by the suffix, the JSON (`None` for a
    /// primitive with only extensions) and the `_value[x]` sibling.
    Typed {
        type_name: String,
        json: Option<&'p Value>,
        ext: Option<&'p Value>,
    },
    Resource(&'p Value),
    Parts(&'p [Value]),
}

impl NewValue<'_> {
    fn type_name(&self) -> Option<&str> {
        match self {
            NewValue::Typed { type_name, .. } => Some(type_name),
            NewValue::Resource(r) => r.get("resourceType").and_then(Value::as_str),
            NewValue::Parts(_) => None,
        }
    }
}

fn decode_value(part: &Value) -> Result<NewValue<'_>, String> {
    let obj = part.as_object().ok_or("a value part must be an object")?;
    let mut found: Option<NewValue<'_>> = None;
    for (k, v) in obj {
        let candidate = match k.as_str() {
            "name" | "id" | "extension" | "modifierExtension" => continue,
            "resource" => {
                if v.get("resourceType").and_then(Value::as_str).is_none() {
                    return Err("the `resource` of a value part has no resourceType".into());
                }
                NewValue::Resource(v)
            }
            "part" => NewValue::Parts(v.as_array().ok_or("`part` must be an array")?),
            _ => {
                let (json, ext, suffix) = match k.strip_prefix('_') {
                    // `_valueX` alone: a primitive with only extensions.
                    Some(plain) if !obj.contains_key(plain) => (None, Some(v), plain.strip_prefix("value")),
                    Some(_) => continue,
                    None => (Some(v), obj.get(&format!("_{k}")), k.strip_prefix("value")),
                };
                let suffix = suffix
                    .filter(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
                    .ok_or_else(|| format!("unexpected `{k}` in a value part"))?;
                let type_name = type_from_suffix(suffix);
                if let Some(j) = json {
                    check_json_kind(&type_name, j)?;
                }
                NewValue::Typed { type_name, json, ext }
            }
        };
        if found.replace(candidate).is_some() {
            return Err("a value part has more than one value".into());
        }
    }
    found.ok_or_else(|| "a value part has no value (`value[x]`, `resource` or `part`)".into())
}

/// `String` → `string`, `HumanName` → `HumanName`.
fn type_from_suffix(suffix: &str) -> String {
    let mut chars = suffix.chars();
    let lowered: String = chars.next().map(|c| c.to_ascii_lowercase()).into_iter().chain(chars).collect();
    if is_primitive_type(&lowered) { lowered } else { suffix.to_string() }
}

/// `string` → `String`: the suffix of a choice element's JSON key.
fn suffix_for(type_name: &str) -> String {
    let mut chars = type_name.chars();
    chars.next().map(|c| c.to_ascii_uppercase()).into_iter().chain(chars).collect()
}

#[derive(Clone, Copy, PartialEq, Eq, Debug)]
enum JsonKind {
    Bool,
    Number,
    Str,
}

/// How FHIR JSON writes a primitive type (`System.*` types as FHIRPath names them).
fn json_kind(primitive: &str) -> JsonKind {
    match primitive {
        "boolean" | "System.Boolean" => JsonKind::Bool,
        "integer" | "positiveInt" | "unsignedInt" | "decimal" | "System.Integer" | "System.Decimal" => JsonKind::Number,
        _ => JsonKind::Str,
    }
}

fn check_json_kind(type_name: &str, json: &Value) -> Result<(), String> {
    let ok = if is_primitive_type(type_name) {
        match json_kind(type_name) {
            JsonKind::Bool => json.is_boolean(),
            JsonKind::Number => json.is_number(),
            JsonKind::Str => json.is_string(),
        }
    } else {
        json.is_object()
    };
    if ok { Ok(()) } else { Err(format!("the value{} is not a valid {type_name}", suffix_for(type_name))) }
}

// ---------------------------------------------------------------------------
// Locations in the document

/// An element of the document: the key `key` (without `_`) of the object at
/// `parent`, and the position in its list for a repeating element.
#[derive(Clone, Debug, PartialEq, Eq)]
struct Loc {
    parent: Vec<String>,
    key: String,
    index: Option<usize>,
}

#[derive(Clone, Debug, PartialEq, Eq)]
enum Target {
    /// The resource itself.
    Root,
    Elem(Loc),
}

fn pointer_tokens(pointer: &str) -> Vec<String> {
    pointer.split('/').skip(1).map(|t| t.replace("~1", "/").replace("~0", "~")).collect()
}

fn get_at<'v>(doc: &'v Value, tokens: &[String]) -> Option<&'v Value> {
    tokens.iter().try_fold(doc, |cur, tok| match cur {
        Value::Object(m) => m.get(tok),
        Value::Array(a) => a.get(tok.parse::<usize>().ok()?),
        _ => None,
    })
}

fn get_at_mut<'v>(doc: &'v mut Value, tokens: &[String]) -> Option<&'v mut Value> {
    tokens.iter().try_fold(doc, |cur, tok| match cur {
        Value::Object(m) => m.get_mut(tok),
        Value::Array(a) => a.get_mut(tok.parse::<usize>().ok()?),
        _ => None,
    })
}

fn object_at_mut<'v>(doc: &'v mut Value, tokens: &[String]) -> Result<&'v mut Map<String, Value>, String> {
    get_at_mut(doc, tokens).and_then(Value::as_object_mut).ok_or_else(|| "internal: lost track of an element".into())
}

fn locate(doc: &Value, pointer: &str) -> Result<Target, String> {
    let tokens = pointer_tokens(pointer);
    let Some((last, before)) = tokens.split_last() else { return Ok(Target::Root) };
    let container = get_at(doc, before).ok_or("internal: an element pointer does not resolve")?;
    let (parent, key, index) = if container.is_array() {
        let index = last.parse::<usize>().map_err(|_| "internal: bad list index in a pointer")?;
        let (key, parent) = before.split_last().ok_or("internal: a list without a name")?;
        (parent, key, Some(index))
    } else {
        (before, last, None)
    };
    let key = key.strip_prefix('_').unwrap_or(key).to_string();
    Ok(Target::Elem(Loc { parent: parent.to_vec(), key, index }))
}

fn tokens_of(loc: &Loc) -> Vec<String> {
    let mut t = loc.parent.clone();
    t.push(loc.key.clone());
    if let Some(i) = loc.index {
        t.push(i.to_string());
    }
    t
}

// ---------------------------------------------------------------------------
// Lists of (possibly primitive) values with their aligned `_name` arrays

fn ext_key(key: &str) -> String {
    format!("_{key}")
}

fn list_len(obj: &Map<String, Value>, key: &str) -> Result<usize, String> {
    match obj.get(key) {
        None => Ok(0),
        Some(Value::Array(a)) => Ok(a.len()),
        Some(_) => Err(format!("`{key}` is not a list")),
    }
}

fn list_insert(
    obj: &mut Map<String, Value>,
    key: &str,
    at: usize,
    value: Value,
    ext: Option<Value>,
) -> Result<(), String> {
    let len = list_len(obj, key)?;
    if at > len {
        return Err(format!("index {at} is beyond the end of `{key}` (length {len})"));
    }
    let ek = ext_key(key);
    let has_ext = match obj.get(&ek) {
        None => false,
        Some(Value::Array(_)) => true,
        Some(_) => return Err(format!("`{ek}` is not a list")),
    };
    if let Value::Array(a) = obj.entry(key).or_insert_with(|| Value::Array(Vec::new())) {
        a.insert(at, value);
    }
    if (ext.is_some() || has_ext)
        && let Value::Array(e) = obj.entry(ek).or_insert_with(|| Value::Array(Vec::new()))
    {
        e.resize(len, Value::Null);
        e.insert(at, ext.unwrap_or(Value::Null));
    }
    tidy_list(obj, key);
    Ok(())
}

fn list_remove(obj: &mut Map<String, Value>, key: &str, at: usize) -> Result<(Value, Option<Value>), String> {
    let len = list_len(obj, key)?;
    if at >= len {
        return Err(format!("index {at} is out of range for `{key}` (length {len})"));
    }
    let value = match obj.get_mut(key) {
        Some(Value::Array(a)) => a.remove(at),
        _ => Value::Null,
    };
    let ext = match obj.get_mut(&ext_key(key)) {
        Some(Value::Array(e)) => {
            e.resize(len, Value::Null);
            Some(e.remove(at)).filter(|v| !v.is_null())
        }
        _ => None,
    };
    tidy_list(obj, key);
    Ok((value, ext))
}

fn list_set(
    obj: &mut Map<String, Value>,
    key: &str,
    at: usize,
    value: Value,
    ext: Option<Value>,
) -> Result<(), String> {
    let len = list_len(obj, key)?;
    let slot = match obj.get_mut(key) {
        Some(Value::Array(a)) => a.get_mut(at),
        _ => None,
    };
    let slot = slot.ok_or_else(|| format!("index {at} is out of range for `{key}` (length {len})"))?;
    *slot = value;
    let ek = ext_key(key);
    if (ext.is_some() || obj.contains_key(&ek))
        && let Value::Array(e) = obj.entry(ek).or_insert_with(|| Value::Array(Vec::new()))
    {
        e.resize(len, Value::Null);
        if let Some(s) = e.get_mut(at) {
            *s = ext.unwrap_or(Value::Null);
        }
    }
    tidy_list(obj, key);
    Ok(())
}

/// Drops an empty list and an `_name` list that holds only nulls.
fn tidy_list(obj: &mut Map<String, Value>, key: &str) {
    let ek = ext_key(key);
    if obj.get(&ek).and_then(Value::as_array).is_some_and(|e| e.iter().all(Value::is_null)) {
        obj.remove(&ek);
    }
    if obj.get(key).and_then(Value::as_array).is_some_and(|a| a.is_empty()) && !obj.contains_key(&ek) {
        obj.remove(key);
    }
}

/// Sets a non-repeating element (and its `_name` sibling).
fn set_single(obj: &mut Map<String, Value>, key: &str, value: Value, ext: Option<Value>) {
    let ek = ext_key(key);
    obj.remove(key);
    obj.remove(&ek);
    if !value.is_null() {
        obj.insert(key.to_string(), value);
    }
    if let Some(e) = ext {
        obj.insert(ek, e);
    }
}

/// After a deletion: removes the objects (and lists) it left empty, walking
/// up from `tokens`, never the resource itself.
fn prune(doc: &mut Value, tokens: &[String]) {
    let mut tokens = tokens.to_vec();
    while let Some((last, parent)) = tokens.split_last() {
        let is_ext_list = parent.last().is_some_and(|k| k.starts_with('_'));
        let empty = match get_at(doc, &tokens) {
            Some(Value::Object(m)) => m.is_empty(),
            Some(Value::Array(a)) => a.is_empty() || (last.starts_with('_') && a.iter().all(Value::is_null)),
            _ => false,
        };
        if !empty {
            return;
        }
        match get_at_mut(doc, parent) {
            Some(Value::Object(m)) => {
                m.remove(last);
            }
            Some(Value::Array(a)) => {
                let Ok(i) = last.parse::<usize>() else { return };
                if is_ext_list {
                    if let Some(slot) = a.get_mut(i) {
                        *slot = Value::Null;
                    }
                } else if i < a.len() {
                    a.remove(i);
                }
            }
            _ => return,
        }
        tokens.pop();
    }
}

// ---------------------------------------------------------------------------
// Applying operations

/// What the model says about one JSON key of an object.
struct Slot {
    /// The element name (`value` for `valueQuantity`).
    base: String,
    choice: bool,
    /// Declared type (for a choice element: the type in the key).
    declared: Option<String>,
    /// Definition key of the element's children.
    children_of: Option<String>,
}

struct Patcher<'m> {
    model: &'m dyn PatchModel,
    now: DateTime,
}

impl Patcher<'_> {
    fn model_info(&self) -> &dyn ModelInfo {
        self.model
    }

    /// Whether the model knows the elements of definition `def` (every FHIR
    /// type has an `id`).
    fn knows(&self, def: &str) -> bool {
        self.model.element(def, "id").is_some()
    }

    fn slot(&self, def: Option<&str>, key: &str) -> Slot {
        let unknown = Slot { base: key.to_string(), choice: false, declared: None, children_of: None };
        let Some(def) = def else { return unknown };
        if let Some(info) = self.model.element(def, key).filter(|i| !i.is_choice) {
            return Slot {
                base: key.to_string(),
                choice: false,
                declared: Some(info.type_name.to_string()),
                children_of: Some(info.children_of.to_string()),
            };
        }
        for (i, _) in key.char_indices().filter(|(_, c)| c.is_ascii_uppercase()) {
            let (Some(base), Some(suffix)) = (key.get(..i), key.get(i..)) else { continue };
            if self.model.element(def, base).is_some_and(|e| e.is_choice) {
                let ty = type_from_suffix(suffix);
                return Slot {
                    base: base.to_string(),
                    choice: true,
                    declared: Some(ty.clone()),
                    children_of: Some(ty),
                };
            }
        }
        unknown
    }

    /// The definition key of the object at `tokens` (`Patient.contact` for
    /// `/contact/0`), if the model can tell.
    fn definition_at(&self, doc: &Value, tokens: &[String]) -> Option<String> {
        let mut cur = doc;
        let mut def = doc.get("resourceType").and_then(Value::as_str).map(str::to_string);
        for tok in tokens {
            cur = match cur {
                Value::Array(a) => a.get(tok.parse::<usize>().ok()?)?,
                Value::Object(m) => {
                    let name = tok.strip_prefix('_').unwrap_or(tok);
                    def = def.and_then(|d| self.slot(Some(&d), name).children_of);
                    m.get(tok)?
                }
                _ => return None,
            };
            if let Some(rt) = cur.get("resourceType").and_then(Value::as_str) {
                def = Some(rt.to_string());
            }
        }
        def
    }

    fn repeats(&self, def: Option<&str>, base: &str) -> Option<bool> {
        def.and_then(|d| self.model.repeats(d, base))
    }

    fn select(&self, doc: &Value, expr: &Expression) -> Result<Vec<Target>, String> {
        let ctx = Context::new(self.now).with_model(self.model_info());
        let items = expr.evaluate(&ctx, doc).map_err(|e| format!("path `{}` failed: {e}", expr.source()))?;
        let mut targets: Vec<Target> = Vec::with_capacity(items.len());
        for item in &items {
            let Item::Node(node) = item else {
                return Err(format!(
                    "path `{}` selects a computed value, not an element of the resource",
                    expr.source()
                ));
            };
            let pointer = node
                .json_pointer(doc)
                .ok_or_else(|| format!("path `{}` selects content outside the resource", expr.source()))?;
            let target = locate(doc, &pointer)?;
            if !targets.contains(&target) {
                targets.push(target);
            }
        }
        Ok(targets)
    }

    fn single(&self, doc: &Value, expr: &Expression) -> Result<Target, String> {
        let mut targets = self.select(doc, expr)?;
        match targets.len() {
            0 => Err(format!("no content found at `{}`", expr.source())),
            1 => targets.pop().ok_or_else(|| "internal: empty selection".into()),
            n => Err(format!("path `{}` matches {n} elements; it must select exactly one", expr.source())),
        }
    }

    /// The list `targets` make up: its parent, key and length. Every item of
    /// one repeating element must be selected, in order.
    fn whole_list(&self, doc: &Value, expr: &Expression, targets: &[Target]) -> Result<(Vec<String>, String), String> {
        let not_list = || format!("path `{}` must select one whole list", expr.source());
        let Some(Target::Elem(first)) = targets.first() else {
            return Err(format!("path `{}` selects the resource, not a list", expr.source()));
        };
        if first.index.is_none() {
            return Err(format!("`{}` is not a list (path `{}`)", first.key, expr.source()));
        }
        for (i, t) in targets.iter().enumerate() {
            match t {
                Target::Elem(l) if l.parent == first.parent && l.key == first.key && l.index == Some(i) => {}
                _ => return Err(format!("{}; it selects elements of different lists or a part of one", not_list())),
            }
        }
        let len =
            get_at(doc, &first.parent).and_then(|p| p.get(&first.key)).and_then(Value::as_array).map_or(0, Vec::len);
        if len != targets.len() {
            return Err(format!("{}; it selects {} of the {len} items of `{}`", not_list(), targets.len(), first.key));
        }
        Ok((first.parent.clone(), first.key.clone()))
    }

    fn run(&self, doc: &mut Value, op: &Operation<'_>) -> Result<(), String> {
        let expr = parse(op.path).map_err(|e| format!("invalid path `{}`: {e}", op.path))?;
        match op.kind {
            Kind::Add => self.add(doc, op, &expr),
            Kind::Insert => self.insert(doc, op, &expr),
            Kind::Delete => self.delete(doc, &expr),
            Kind::Replace => self.replace(doc, op, &expr),
            Kind::Move => self.move_item(doc, op, &expr),
        }
    }

    fn value_of<'p>(&self, op: &Operation<'p>) -> Result<NewValue<'p>, String> {
        decode_value(op.value.ok_or("the operation needs a `value` part")?)
    }

    fn add(&self, doc: &mut Value, op: &Operation<'_>, expr: &Expression) -> Result<(), String> {
        let name = op.name.ok_or("the operation needs a `name` part")?;
        let value = self.value_of(op)?;
        let target = match self.select(doc, expr)?.as_slice() {
            [] => return Err(format!("no content found at `{}` when adding", expr.source())),
            [t] => t.clone(),
            many => {
                return Err(format!("path `{}` matches {} elements; add needs exactly one", expr.source(), many.len()));
            }
        };
        // The object receiving the new element, and its definition key.
        let (container, def) = match &target {
            Target::Root => (Vec::new(), self.definition_at(doc, &[])),
            Target::Elem(loc) => {
                let tokens = tokens_of(loc);
                if get_at(doc, &tokens).is_some_and(Value::is_object) {
                    let def = self.definition_at(doc, &tokens);
                    (tokens, def)
                } else {
                    // A primitive: `id` / `extension` go into its `_name` sibling.
                    let parent_def = self.definition_at(doc, &loc.parent);
                    let def = self.slot(parent_def.as_deref(), &loc.key).declared;
                    (self.primitive_ext_object(doc, loc)?, def)
                }
            }
        };
        let def = def.as_deref();
        let (slot, key) = self.new_element(def, name, &value)?;
        self.check_type(&slot, &value)?;
        let (json, ext) = self.materialize(&value, slot.children_of.as_deref())?;
        let repeats = self.repeats(def, &slot.base);
        let obj = object_at_mut(doc, &container)?;
        let exists = obj.contains_key(&key)
            || obj.contains_key(&ext_key(&key))
            || (slot.choice && obj.keys().any(|k| self.is_choice_key(def, k, &slot.base)));
        let list = match repeats {
            Some(r) => r,
            None => obj.get(&key).is_some_and(Value::is_array),
        };
        if list {
            let len = list_len(obj, &key)?;
            list_insert(obj, &key, len, json, ext)
        } else if exists {
            Err(format!("`{name}` already has a value and does not repeat; use replace"))
        } else {
            set_single(obj, &key, json, ext);
            Ok(())
        }
    }

    /// The slot and JSON key of a new element `name` on a value whose
    /// definition key is `def`: a choice element takes its key from the
    /// value's type (`value` + `valueString` → `valueString`).
    fn new_element(&self, def: Option<&str>, name: &str, value: &NewValue<'_>) -> Result<(Slot, String), String> {
        let info = def.and_then(|d| self.model.element(d, name));
        if info.is_some_and(|i| i.is_choice) {
            let t = value
                .type_name()
                .ok_or_else(|| format!("`{name}` is a choice element; its value must be a value[x]"))?;
            let slot = Slot { base: name.to_string(), choice: true, declared: None, children_of: Some(t.to_string()) };
            return Ok((slot, format!("{name}{}", suffix_for(t))));
        }
        let slot = self.slot(def, name);
        if let Some(d) = def
            && info.is_none()
            && slot.declared.is_none()
            && self.knows(d)
        {
            return Err(format!("`{d}` has no element `{name}`"));
        }
        Ok((slot, name.to_string()))
    }

    fn is_choice_key(&self, def: Option<&str>, key: &str, base: &str) -> bool {
        let key = key.strip_prefix('_').unwrap_or(key);
        key.strip_prefix(base).is_some_and(|s| s.starts_with(|c: char| c.is_ascii_uppercase()))
            && self.slot(def, key).choice
    }

    /// The `_name` object of the primitive at `loc`, created if needed.
    fn primitive_ext_object(&self, doc: &mut Value, loc: &Loc) -> Result<Vec<String>, String> {
        let obj = object_at_mut(doc, &loc.parent)?;
        let ek = ext_key(&loc.key);
        let mut tokens = loc.parent.clone();
        tokens.push(ek.clone());
        match loc.index {
            None => {
                let e = obj.entry(ek.clone()).or_insert_with(|| Value::Object(Map::new()));
                if !e.is_object() {
                    return Err(format!("`{ek}` is not an object"));
                }
            }
            Some(i) => {
                let len = list_len(obj, &loc.key)?;
                let Value::Array(e) = obj.entry(ek.clone()).or_insert_with(|| Value::Array(Vec::new())) else {
                    return Err(format!("`{ek}` is not a list"));
                };
                e.resize(len, Value::Null);
                let slot = e.get_mut(i).ok_or_else(|| format!("`{ek}` has no item {i}"))?;
                if slot.is_null() {
                    *slot = Value::Object(Map::new());
                } else if !slot.is_object() {
                    return Err(format!("`{ek}` item {i} is not an object"));
                }
                tokens.push(i.to_string());
            }
        }
        Ok(tokens)
    }

    fn insert(&self, doc: &mut Value, op: &Operation<'_>, expr: &Expression) -> Result<(), String> {
        let index = op.index.ok_or("the operation needs an `index` part")?;
        let value = self.value_of(op)?;
        let targets = self.select(doc, expr)?;
        let (parent, key) =
            if targets.is_empty() { self.empty_list(doc, expr)? } else { self.whole_list(doc, expr, &targets)? };
        let def = self.definition_at(doc, &parent);
        let slot = self.slot(def.as_deref(), &key);
        if self.repeats(def.as_deref(), &slot.base) == Some(false) {
            return Err(format!("`{key}` does not repeat; insert needs a list"));
        }
        self.check_type(&slot, &value)?;
        let (json, ext) = self.materialize(&value, slot.children_of.as_deref())?;
        let obj = object_at_mut(doc, &parent)?;
        list_insert(obj, &key, index, json, ext)
    }

    /// For `insert` into a list with no items yet: `parent.name` where
    /// `parent` selects one element (or the path is just `name`).
    fn empty_list(&self, doc: &Value, expr: &Expression) -> Result<(Vec<String>, String), String> {
        let not_found = || format!("no content found at `{}`", expr.source());
        match &expr.ast {
            Expr::Member(target, name) => {
                let parent_expr =
                    Expression { source: expr.source().to_string(), roots: None, ast: (**target).clone() };
                match self.select(doc, &parent_expr)?.as_slice() {
                    [Target::Root] => Ok((Vec::new(), name.as_str().to_string())),
                    [Target::Elem(loc)] => {
                        let tokens = tokens_of(loc);
                        if get_at(doc, &tokens).is_some_and(Value::is_object) {
                            Ok((tokens, name.as_str().to_string()))
                        } else {
                            Err(not_found())
                        }
                    }
                    _ => Err(not_found()),
                }
            }
            Expr::Ident(name) => Ok((Vec::new(), name.as_str().to_string())),
            _ => Err(not_found()),
        }
    }

    fn delete(&self, doc: &mut Value, expr: &Expression) -> Result<(), String> {
        let loc = match self.select(doc, expr)?.as_slice() {
            [] => return Ok(()),
            [Target::Root] => return Err("cannot delete the resource itself".into()),
            [Target::Elem(loc)] => loc.clone(),
            many => {
                return Err(format!(
                    "path `{}` matches {} elements; only one can be deleted",
                    expr.source(),
                    many.len()
                ));
            }
        };
        let obj = object_at_mut(doc, &loc.parent)?;
        match loc.index {
            Some(i) => {
                list_remove(obj, &loc.key, i)?;
            }
            None => set_single(obj, &loc.key, Value::Null, None),
        }
        prune(doc, &loc.parent);
        Ok(())
    }

    fn replace(&self, doc: &mut Value, op: &Operation<'_>, expr: &Expression) -> Result<(), String> {
        let value = self.value_of(op)?;
        let Target::Elem(loc) = self.single(doc, expr)? else {
            return Err("cannot replace the resource itself".into());
        };
        let def = self.definition_at(doc, &loc.parent);
        let mut slot = self.slot(def.as_deref(), &loc.key);
        let key = if slot.choice {
            let t = value
                .type_name()
                .ok_or_else(|| format!("`{}` is a choice element; its value must be a value[x]", slot.base))?
                .to_string();
            slot.declared = None;
            slot.children_of = Some(t.clone());
            format!("{}{}", slot.base, suffix_for(&t))
        } else {
            loc.key.clone()
        };
        self.check_type(&slot, &value)?;
        let (json, ext) = self.materialize(&value, slot.children_of.as_deref())?;
        let obj = object_at_mut(doc, &loc.parent)?;
        match loc.index {
            Some(i) => list_set(obj, &loc.key, i, json, ext),
            None => {
                set_single(obj, &loc.key, Value::Null, None);
                set_single(obj, &key, json, ext);
                Ok(())
            }
        }
    }

    fn move_item(&self, doc: &mut Value, op: &Operation<'_>, expr: &Expression) -> Result<(), String> {
        let (source, destination) = match (op.source, op.destination) {
            (Some(s), Some(d)) => (s, d),
            _ => return Err("the operation needs `source` and `destination` parts".into()),
        };
        let targets = self.select(doc, expr)?;
        if targets.is_empty() {
            return Err(format!("no content found at `{}`", expr.source()));
        }
        let (parent, key) = self.whole_list(doc, expr, &targets)?;
        let len = targets.len();
        if source >= len || destination >= len {
            return Err(format!(
                "source {source} and destination {destination} must both be below the length of `{key}` ({len})"
            ));
        }
        let obj = object_at_mut(doc, &parent)?;
        let (json, ext) = list_remove(obj, &key, source)?;
        list_insert(obj, &key, destination, json, ext)
    }

    /// Checks that `value` fits the declared type of `slot` (when known).
    fn check_type(&self, slot: &Slot, value: &NewValue<'_>) -> Result<(), String> {
        let Some(declared) = slot.declared.as_deref() else { return Ok(()) };
        let name = &slot.base;
        let declared_primitive = is_primitive_type(declared) || declared.starts_with("System.");
        match value {
            NewValue::Typed { type_name, .. } => {
                let value_primitive = is_primitive_type(type_name);
                let fits = match (declared_primitive, value_primitive) {
                    (true, true) => json_kind(declared) == json_kind(type_name),
                    (false, false) => {
                        self.model.is_subtype_of(type_name, declared) || self.model.is_subtype_of(declared, type_name)
                    }
                    _ => false,
                };
                if fits { Ok(()) } else { Err(format!("`{name}` is a {declared}; a {type_name} value does not fit")) }
            }
            NewValue::Resource(r) => {
                let rt = r.get("resourceType").and_then(Value::as_str).unwrap_or_default();
                if self.model.is_subtype_of(rt, declared) || declared == "Resource" {
                    Ok(())
                } else {
                    Err(format!("`{name}` is a {declared}; a {rt} resource does not fit"))
                }
            }
            NewValue::Parts(_) if declared_primitive => {
                Err(format!("`{name}` is a {declared}; give its value as a value[x], not as parts"))
            }
            NewValue::Parts(_) => Ok(()),
        }
    }

    /// The JSON (and, for a primitive, the `_name` sibling) of new content
    /// for an element whose children are defined by `def`.
    fn materialize(&self, value: &NewValue<'_>, def: Option<&str>) -> Result<(Value, Option<Value>), String> {
        match value {
            NewValue::Typed { json, ext, .. } => Ok((json.cloned().unwrap_or(Value::Null), ext.cloned())),
            NewValue::Resource(r) => Ok(((*r).clone(), None)),
            NewValue::Parts(parts) => {
                let mut obj = Map::new();
                for part in *parts {
                    let name =
                        part.get("name").and_then(Value::as_str).ok_or("every part of a value needs a `name`")?;
                    let inner = decode_value(part).map_err(|e| format!("part `{name}`: {e}"))?;
                    let (slot, key) = self.new_element(def, name, &inner)?;
                    self.check_type(&slot, &inner)?;
                    let (json, ext) = self.materialize(&inner, slot.children_of.as_deref())?;
                    let exists = obj.contains_key(&key) || obj.contains_key(&ext_key(&key));
                    let list = match self.repeats(def, &slot.base) {
                        Some(r) => r,
                        // Unknown: a name given twice makes a list.
                        None => obj.get(&key).is_some_and(Value::is_array) || exists,
                    };
                    if list {
                        if exists && !obj.get(&key).is_some_and(Value::is_array) {
                            // Turn the single value given first into a list.
                            let first = obj.remove(&key).unwrap_or(Value::Null);
                            let first_ext = obj.remove(&ext_key(&key));
                            list_insert(&mut obj, &key, 0, first, first_ext)?;
                        }
                        let len = list_len(&obj, &key)?;
                        list_insert(&mut obj, &key, len, json, ext)?;
                    } else if exists {
                        return Err(format!("`{name}` is given twice but does not repeat"));
                    } else {
                        set_single(&mut obj, &key, json, ext);
                    }
                }
                Ok((Value::Object(obj), None))
            }
        }
    }
}
