//! Structural validation of R4 JSON resources against the [`Model`].
//!
//! One pass over the JSON, driven by the model: every property is resolved in its [`Scope`]
//! (choice types, backbone elements, `contentReference`), checked for cardinality and JSON shape,
//! and primitives are checked lexically. Unknown properties are reported, never descended into.
//! The location is kept in one reusable `String`, so a valid resource allocates nothing per element.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use crate::model::{Child, ElementDef, Max, Model, Scope, TypeKind};
use crate::primitive;
use crate::{Issue, IssueCode, Severity};

/// Deepest JSON object nesting the validator follows. Real resources stay far below this
/// (a Bundle entry's Questionnaire with ten levels of items is about 25); the limit keeps stack
/// use bounded for hostile input.
pub(crate) const MAX_DEPTH: usize = 64;

/// After this many issues the validator stops; enough to explain any real mistake, and it bounds
/// the size of the OperationOutcome built from them.
pub(crate) const MAX_ISSUES: usize = 100;

/// Property names are echoed in expressions and messages; cut absurd ones.
const MAX_NAME_ECHO: usize = 64;

type Object = Map<String, Value>;

pub(crate) fn validate(model: &Model, resource: &Value) -> Vec<Issue> {
    let mut v = Validator { model, issues: Vec::new(), path: String::with_capacity(128), depth: 0, stopped: false };
    match resource {
        Value::Object(obj) => v.resource(obj, None, Severity::Fatal),
        _ => v.push_at(Severity::Fatal, IssueCode::Invalid, "", "a resource must be a JSON object"),
    }
    v.issues
}

struct Validator<'m> {
    model: &'m Model,
    issues: Vec<Issue>,
    /// The current location, e.g. `Bundle.entry[2].resource.name[0]`.
    path: String,
    depth: usize,
    stopped: bool,
}

impl<'m> Validator<'m> {
    fn push_at(&mut self, severity: Severity, code: IssueCode, expression: &str, message: &str) {
        if self.stopped {
            return;
        }
        if self.issues.len() >= MAX_ISSUES {
            self.stopped = true;
            self.issues.push(Issue {
                severity: Severity::Error,
                code: IssueCode::TooCostly,
                expression: String::new(),
                message: format!("validation stopped after {MAX_ISSUES} issues"),
            });
            return;
        }
        self.issues.push(Issue { severity, code, expression: expression.to_owned(), message: message.to_owned() });
    }

    /// An issue at the current location.
    fn push(&mut self, code: IssueCode, message: &str) {
        let path = std::mem::take(&mut self.path);
        self.push_at(Severity::Error, code, &path, message);
        self.path = path;
    }

    /// An issue at `<current location>.<name>`.
    fn push_child(&mut self, name: &str, code: IssueCode, message: &str) {
        let mark = self.enter(name);
        self.push(code, message);
        self.leave(mark);
    }

    fn enter(&mut self, name: &str) -> usize {
        let mark = self.path.len();
        if !self.path.is_empty() {
            self.path.push('.');
        }
        self.path.push_str(echo(name));
        mark
    }

    fn enter_index(&mut self, index: usize) -> usize {
        let mark = self.path.len();
        // Writing to a String cannot fail.
        let _ = write!(self.path, "[{index}]");
        mark
    }

    fn leave(&mut self, mark: usize) {
        self.path.truncate(mark);
    }

    /// A resource at the current location: the root (`expected` = None) or a nested one
    /// (`contained`, `Bundle.entry.resource`, ...), whose element type is `expected`.
    fn resource(&mut self, obj: &Object, expected: Option<&str>, severity: Severity) {
        let type_name = match obj.get("resourceType") {
            Some(Value::String(s)) => s.as_str(),
            Some(_) => {
                return self.resource_type_issue(severity, IssueCode::Invalid, "resourceType must be a string");
            }
            None => {
                return self.resource_type_issue(severity, IssueCode::Invalid, "missing resourceType");
            }
        };
        let Some(ty) = self.model.type_def(type_name) else {
            let message = format!("unknown resource type `{}`", echo(type_name));
            return self.resource_type_issue(severity, IssueCode::NotSupported, &message);
        };
        if ty.kind() != TypeKind::Resource {
            let message = format!("`{}` is not a resource type", echo(type_name));
            return self.resource_type_issue(severity, IssueCode::NotSupported, &message);
        }
        if ty.is_abstract() {
            let message = format!("`{type_name}` is abstract; use a concrete resource type");
            return self.resource_type_issue(severity, IssueCode::Invalid, &message);
        }
        if let Some(expected) = expected.filter(|e| self.model.is_resource_type(e))
            && expected != type_name
        {
            let message = format!("expected a {expected} resource here");
            return self.resource_type_issue(severity, IssueCode::Invalid, &message);
        }
        let Some(scope) = self.model.scope(type_name) else {
            return;
        };
        let root = self.path.is_empty();
        if root {
            self.path.push_str(type_name);
        }
        self.object(obj, scope, true);
        if root {
            self.path.clear();
        }
    }

    fn resource_type_issue(&mut self, severity: Severity, code: IssueCode, message: &str) {
        let mark = self.enter("resourceType");
        let path = std::mem::take(&mut self.path);
        self.push_at(severity, code, &path, message);
        self.path = path;
        self.leave(mark);
    }

    /// The properties of one JSON object whose children are defined by `scope`.
    fn object(&mut self, obj: &Object, scope: Scope<'m>, resource_root: bool) {
        if self.depth >= MAX_DEPTH {
            return self.push(IssueCode::TooCostly, "nested too deeply; validation stopped here");
        }
        if obj.is_empty() {
            return self
                .push(IssueCode::Structure, "an object must not be empty (it needs a value, children or extensions)");
        }
        self.depth += 1;
        for (key, value) in obj {
            if self.stopped {
                break;
            }
            if resource_root && key == "resourceType" {
                continue;
            }
            if let Some(name) = key.strip_prefix('_') {
                match scope.child(name) {
                    Some(child) if child.kind == Some(TypeKind::PrimitiveType) && child.type_code != "xhtml" => {
                        self.companion(obj, name, value, &child);
                    }
                    _ => self.unknown(key, scope),
                }
                continue;
            }
            match scope.child(key) {
                Some(child) => {
                    if child.element.is_choice() && !first_of_choice(obj, key, child.element) {
                        let message = format!("only one type of `{}[x]` may be present", child.element.name());
                        self.push_child(key, IssueCode::Structure, &message);
                        continue;
                    }
                    self.property(obj, key, value, &child);
                }
                None if key == "resourceType" => {
                    self.push_child(key, IssueCode::Structure, "resourceType is only allowed at the root of a resource")
                }
                None => self.unknown(key, scope),
            }
        }
        if !self.stopped {
            for element in scope.required() {
                if !is_present(obj, element) {
                    let message = format!("missing required element `{}` (min {})", element.path(), element.min());
                    self.push_child(element.name(), IssueCode::Required, &message);
                }
            }
        }
        self.depth -= 1;
    }

    fn unknown(&mut self, key: &str, scope: Scope<'m>) {
        let owner = scope.type_def().name();
        let message = match scope.path() {
            "" => format!("unknown element `{}` in {owner}", echo(key)),
            path => format!("unknown element `{}` in {owner}.{path}", echo(key)),
        };
        self.push_child(key, IssueCode::Structure, &message);
    }

    /// A property `key` (not `_key`) with its resolved element.
    fn property(&mut self, obj: &Object, key: &str, value: &Value, child: &Child<'m>) {
        let mark = self.enter(key);
        let element = child.element;
        if element.is_array() {
            match value {
                Value::Array(items) if items.is_empty() => {
                    self.push(IssueCode::Structure, "an array must not be empty");
                }
                Value::Array(items) => {
                    if let Max::Bounded(n) = element.max()
                        && items.len() > n as usize
                    {
                        let message = format!("at most {n} items allowed");
                        self.push(IssueCode::Structure, &message);
                    }
                    for (i, item) in items.iter().enumerate() {
                        let mark = self.enter_index(i);
                        if item.is_null() {
                            if child.kind != Some(TypeKind::PrimitiveType) || !companion_has_item(obj, key, i) {
                                self.push(
                                    IssueCode::Structure,
                                    "null is only allowed in a primitive array whose `_` companion has an entry at the same index",
                                );
                            }
                        } else {
                            self.value(item, child);
                        }
                        self.leave(mark);
                    }
                }
                _ => {
                    let message = format!(
                        "`{}` must be a JSON array (max cardinality {})",
                        element.name(),
                        max_str(element.max())
                    );
                    self.push(IssueCode::Structure, &message);
                }
            }
        } else if value.is_array() {
            let message = format!("`{}` must not be an array (max cardinality 1)", element.name());
            self.push(IssueCode::Structure, &message);
        } else {
            self.value(value, child);
        }
        self.leave(mark);
    }

    /// One (non-array) value of an element at the current location.
    fn value(&mut self, value: &Value, child: &Child<'m>) {
        if value.is_null() {
            return self.push(IssueCode::Structure, "null is not allowed here");
        }
        match child.kind {
            None | Some(TypeKind::PrimitiveType) => {
                if let Err((code, message)) = primitive::check(child.type_code, value) {
                    self.push(code, message);
                } else if let (Some(url), Some(code)) = (child.element.binding(), value.as_str())
                    && self.model.value_set_contains(url, code) == Some(false)
                {
                    let message = format!("`{code}` is not a code of the required value set {url}");
                    self.push(IssueCode::CodeInvalid, &message);
                }
            }
            Some(TypeKind::Resource) => match value {
                Value::Object(obj) => {
                    if self.depth >= MAX_DEPTH {
                        return self.push(IssueCode::TooCostly, "nested too deeply; validation stopped here");
                    }
                    self.depth += 1;
                    self.resource(obj, Some(child.type_code), Severity::Error);
                    self.depth -= 1;
                }
                _ => self.push(IssueCode::Structure, "a resource must be a JSON object with a resourceType"),
            },
            Some(TypeKind::ComplexType) => match (value, child.scope) {
                (Value::Object(obj), Some(scope)) => self.object(obj, scope, false),
                (Value::Object(_), None) => {
                    self.push(IssueCode::NotSupported, "element type has no definition");
                }
                _ => {
                    let message = format!("expected a JSON object ({})", child.type_code);
                    self.push(IssueCode::Structure, &message);
                }
            },
        }
    }

    /// `_name`: the id/extensions of primitive `name`, a single object or an array aligned
    /// with the value array.
    fn companion(&mut self, obj: &Object, name: &str, value: &Value, child: &Child<'m>) {
        let mark = self.enter(name);
        let Some(scope) = self.model.element_scope() else {
            self.leave(mark);
            return;
        };
        if child.element.is_array() {
            match value {
                Value::Array(items) if items.is_empty() => {
                    self.push(IssueCode::Structure, "an array must not be empty");
                }
                Value::Array(items) => {
                    let values = obj.get(name);
                    if let Some(Value::Array(values)) = values
                        && values.len() != items.len()
                    {
                        let message = format!(
                            "`_{}` must have as many items as `{}`",
                            child.element.name(),
                            child.element.name()
                        );
                        self.push(IssueCode::Structure, &message);
                    }
                    for (i, item) in items.iter().enumerate() {
                        let mark = self.enter_index(i);
                        match item {
                            Value::Object(o) => self.object(o, scope, false),
                            // Alignment padding; the value array reports a null at the same index.
                            Value::Null if matches!(values, Some(Value::Array(_))) => {}
                            Value::Null => {
                                self.push(IssueCode::Structure, "null in `_` array without a value at the same index")
                            }
                            _ => self.push(IssueCode::Structure, "items of a `_` array must be JSON objects or null"),
                        }
                        self.leave(mark);
                    }
                }
                _ => {
                    let message =
                        format!("`_{}` must be a JSON array like `{}`", child.element.name(), child.element.name());
                    self.push(IssueCode::Structure, &message);
                }
            }
        } else {
            match value {
                Value::Object(o) => self.object(o, scope, false),
                _ => self.push(IssueCode::Structure, "a `_` companion must be a JSON object with id and/or extension"),
            }
        }
        self.leave(mark);
    }
}

/// Whether `_key[index]` exists and is not null (so `key[index]` may be null).
fn companion_has_item(obj: &Object, key: &str, index: usize) -> bool {
    obj.iter()
        .find(|(k, _)| k.strip_prefix('_') == Some(key))
        .and_then(|(_, v)| v.as_array())
        .and_then(|a| a.get(index))
        .is_some_and(|v| !v.is_null())
}

/// For a choice property: whether it is the first property of `obj` for that choice element
/// (so a second type of the same `value[x]` is reported once).
fn first_of_choice(obj: &Object, key: &str, element: &ElementDef) -> bool {
    for k in obj.keys() {
        if k == key {
            return true;
        }
        if element.choice_type_of(k).is_some() {
            return false;
        }
    }
    true
}

/// Whether a required element is present as `name`, `_name` or, for a choice, any `nameType`.
fn is_present(obj: &Object, element: &ElementDef) -> bool {
    let name = element.name();
    if !element.is_choice() && obj.contains_key(name) {
        return true;
    }
    obj.keys().any(|k| {
        let k = k.strip_prefix('_').unwrap_or(k);
        if element.is_choice() { element.choice_type_of(k).is_some() } else { k == name }
    })
}

fn max_str(max: Max) -> String {
    match max {
        Max::Unbounded => "*".to_owned(),
        Max::Bounded(n) => n.to_string(),
    }
}

/// A property name, cut to a sane length (at a char boundary) for expressions and messages.
fn echo(name: &str) -> &str {
    if name.len() <= MAX_NAME_ECHO {
        return name;
    }
    let mut end = MAX_NAME_ECHO;
    while !name.is_char_boundary(end) {
        end -= 1;
    }
    name.get(..end).unwrap_or_default()
}
