//! The tree-walking evaluator: paths, operators and collection semantics.
//! The function library lives in `functions.rs`.

use rust_decimal::Decimal;
use rust_decimal::Decimal as Dec;
use rust_decimal::prelude::ToPrimitive;
use serde_json::Value;
use std::borrow::Cow;
use std::cmp::Ordering;
use std::collections::{HashMap, HashSet};
use std::fmt;
use std::hash::{Hash, Hasher};

use crate::ast::{BinOp, Expr, TypeSpec};
use crate::context::Context;
use crate::model::ElementInfo;
use crate::quantity::Quantity;
use crate::value::{Collection, Item, NULL, Node};

/// A runtime failure (type error, a multi-item collection where one item is
/// required, an unsupported operation). Never a panic.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct EvalError {
    pub message: String,
}

impl fmt::Display for EvalError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for EvalError {}

pub(crate) fn fail<T>(message: impl Into<String>) -> Result<T, EvalError> {
    Err(EvalError { message: message.into() })
}

pub(crate) type R<T> = Result<T, EvalError>;

/// Guards against runaway recursion in deeply nested expressions and data.
const MAX_DEPTH: usize = 400;
/// Upper bound on the items `repeat()` may produce (its input is an
/// expression, so it need not terminate on its own).
pub(crate) const MAX_ITEMS: usize = 200_000;

/// A set of items under FHIRPath equality, for `distinct()`, `|` and
/// `repeat()`. Strings, booleans and numbers hash exactly; complex elements
/// hash structurally into buckets that are then compared properly; other
/// values (dates, quantities) are compared with each other one by one.
pub(crate) struct Dedup<'a> {
    hashed: HashSet<String>,
    buckets: HashMap<u64, Vec<Item<'a>>>,
    others: Vec<Item<'a>>,
}

impl<'a> Dedup<'a> {
    pub fn new() -> Self {
        Dedup { hashed: HashSet::new(), buckets: HashMap::new(), others: Vec::new() }
    }

    fn key(item: &Item<'a>) -> Option<String> {
        if let Item::Node(n) = item
            && (n.value.is_object() || n.value.is_null())
        {
            return None;
        }
        match item.to_system()? {
            Item::String(s) => Some(format!("s{s}")),
            Item::Boolean(b) => Some(format!("b{b}")),
            Item::Integer(i) | Item::Long(i) => Some(format!("n{i}")),
            Item::Decimal(d) => Some(format!("n{}", d.normalize())),
            _ => None,
        }
    }

    /// Adds `item`; false if an equal item was already present.
    pub fn insert(&mut self, ev: &Evaluator<'_, 'a>, item: &Item<'a>) -> bool {
        if let Some(k) = Self::key(item) {
            return self.hashed.insert(k);
        }
        let list = match item {
            Item::Node(n) if n.value.is_object() => {
                let mut h = std::collections::hash_map::DefaultHasher::new();
                hash_json(n.value, &mut h);
                self.buckets.entry(h.finish()).or_default()
            }
            _ => &mut self.others,
        };
        if ev.contains_item(list, item) {
            false
        } else {
            list.push(item.clone());
            true
        }
    }
}

/// A structural hash consistent with [`json_equal`]: numbers by value,
/// object members independent of key order.
fn hash_json(v: &Value, h: &mut impl Hasher) {
    match v {
        Value::Null => 0u8.hash(h),
        Value::Bool(b) => b.hash(h),
        Value::Number(n) => {
            let f = n.as_f64().unwrap_or(0.0);
            // -0.0 == 0.0 must hash alike.
            (if f == 0.0 { 0.0f64 } else { f }).to_bits().hash(h);
        }
        Value::String(s) => s.hash(h),
        Value::Array(a) => {
            a.len().hash(h);
            for x in a {
                hash_json(x, h);
            }
        }
        Value::Object(m) => {
            let mut acc: u64 = 0;
            for (k, x) in m {
                let mut eh = std::collections::hash_map::DefaultHasher::new();
                k.hash(&mut eh);
                hash_json(x, &mut eh);
                acc = acc.wrapping_add(eh.finish());
            }
            m.len().hash(h);
            acc.hash(h);
        }
    }
}

/// Lambda bindings: `$this`, `$index`, `$total`.
#[derive(Clone, Default)]
pub(crate) struct Scope<'a> {
    pub this: Option<Item<'a>>,
    pub index: Option<usize>,
    pub total: Option<Collection<'a>>,
    /// Variables from `defineVariable()`, innermost last.
    pub defined: Vec<(String, Collection<'a>)>,
}

pub(crate) struct Evaluator<'c, 'a> {
    pub ctx: &'c Context<'a>,
    /// The evaluation input, for `%resource` / `%context` defaults.
    pub input: Collection<'a>,
    pub depth: std::cell::Cell<usize>,
    pub default_offset: i16,
}

impl<'a> Evaluator<'_, 'a> {
    pub fn eval(&self, e: &Expr, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Collection<'a>> {
        let d = self.depth.get();
        if d > MAX_DEPTH {
            return fail("expression evaluation nested too deeply");
        }
        self.depth.set(d + 1);
        let r = self.eval_inner(e, focus, scope);
        self.depth.set(d);
        r
    }

    fn eval_inner(&self, e: &Expr, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Collection<'a>> {
        match e {
            Expr::Literal(item) => Ok(vec![item.clone()]),
            Expr::Empty => Ok(Vec::new()),
            Expr::Ident(full) => {
                let name = full.as_str();
                let mut out = Vec::new();
                let type_like = name.starts_with(|c: char| c.is_ascii_uppercase());
                for item in focus {
                    // `Patient.name`: a leading type name selects the focus
                    // when it is of that type (unless it has such a child).
                    if type_like
                        && let Item::Node(n) = item
                        && let Some(t) = n.type_name
                        && (t == name || self.ctx.model.is_subtype_of(t, name))
                        && n.value.get(name).is_none()
                    {
                        out.push(item.clone());
                        continue;
                    }
                    if self.ctx.strict_paths {
                        self.check_step(item, name, true)?;
                    }
                    self.child_keyed(item, name, full.ext_key(), &mut out);
                }
                Ok(out)
            }
            Expr::Member(..) | Expr::Call(_) | Expr::Index(..) => Ok(self.eval_chain(e, focus, scope)?.0),
            Expr::This => Ok(match &scope.this {
                Some(t) => vec![t.clone()],
                None => focus.to_vec(),
            }),
            Expr::IndexVar => Ok(scope.index.map(|i| Item::Integer(i as i64)).into_iter().collect()),
            Expr::Total => Ok(scope.total.clone().unwrap_or_default()),
            Expr::Env(name) => self.env(name, scope),
            Expr::Neg(inner) => {
                let v = self.eval(inner, focus, scope)?;
                match singleton(&v, "unary minus")? {
                    None => Ok(Vec::new()),
                    Some(i) => match i.to_system() {
                        Some(Item::Integer(n)) => Ok(vec![Item::Integer(-n)]),
                        Some(Item::Long(n)) => Ok(vec![Item::Long(-n)]),
                        Some(Item::Decimal(d)) => Ok(vec![Item::Decimal(-d)]),
                        Some(Item::Quantity(mut q)) => {
                            q.value = -q.value;
                            Ok(vec![Item::Quantity(q)])
                        }
                        _ => fail("unary minus needs a number or quantity"),
                    },
                }
            }
            Expr::Binary(op, l, r) => self.binary(*op, l, r, focus, scope),
            Expr::Is(inner, ty) => {
                let v = self.eval(inner, focus, scope)?;
                if self.ctx.lenient_type_ops && v.len() > 1 {
                    let mut out = Vec::with_capacity(v.len());
                    for i in &v {
                        out.push(Item::Boolean(self.is_type(i, ty)?));
                    }
                    return Ok(out);
                }
                match singleton(&v, "'is'")? {
                    None => Ok(Vec::new()),
                    Some(i) => Ok(vec![Item::Boolean(self.is_type(i, ty)?)]),
                }
            }
            Expr::As(inner, ty) => {
                let v = self.eval(inner, focus, scope)?;
                if v.len() > 1 && !self.ctx.lenient_type_ops {
                    return fail("'as' requires a single item");
                }
                self.check_type(ty)?;
                let mut out = Vec::new();
                for i in v {
                    if self.is_type(&i, ty)? {
                        out.push(i);
                    }
                }
                Ok(out)
            }
        }
    }

    /// Evaluates an invocation chain (`a.b().c[0]`). Returns the scope as
    /// extended by any `defineVariable()` in the chain, so that later links
    /// (and their arguments) see the variable; `None` if unchanged.
    pub(crate) fn eval_chain(
        &self,
        e: &Expr,
        focus: &[Item<'a>],
        scope: &Scope<'a>,
    ) -> R<(Collection<'a>, Option<Scope<'a>>)> {
        match e {
            Expr::Member(target, name) => {
                let (input, sc) = self.eval_chain(target, focus, scope)?;
                // Strict mode: an error only when no item could have the
                // element. Collections of mixed types (`descendants()`,
                // unions, projections) are not checked: the data decides.
                if self.ctx.strict_paths && single_typed(target) {
                    let mut first_err = None;
                    for i in &input {
                        match self.check_step(i, name.as_str(), false) {
                            Ok(()) => {
                                first_err = None;
                                break;
                            }
                            Err(e) => {
                                first_err.get_or_insert(e);
                            }
                        }
                    }
                    if let Some(e) = first_err {
                        return Err(e);
                    }
                }
                let mut out = Vec::new();
                for item in &input {
                    self.child_keyed(item, name.as_str(), name.ext_key(), &mut out);
                }
                Ok((out, sc))
            }
            Expr::Call(call) => self.call(call, focus, scope),
            Expr::Index(target, index) => {
                let (input, sc) = self.eval_chain(target, focus, scope)?;
                let idx = self.eval(index, focus, sc.as_ref().unwrap_or(scope))?;
                let out = match singleton(&idx, "indexer")? {
                    None => Vec::new(),
                    Some(i) => match i.to_system() {
                        Some(Item::Integer(n)) => {
                            usize::try_from(n).ok().and_then(|n| input.into_iter().nth(n)).into_iter().collect()
                        }
                        _ => return fail("indexer must be an integer"),
                    },
                };
                Ok((out, sc))
            }
            other => Ok((self.eval(other, focus, scope)?, None)),
        }
    }

    fn env(&self, name: &str, scope: &Scope<'a>) -> R<Collection<'a>> {
        if let Some((_, v)) = scope.defined.iter().rev().find(|(n, _)| n == name) {
            return Ok(v.clone());
        }
        if let Some(v) = self.ctx.vars.get(name) {
            return Ok(v.clone());
        }
        let s = |v: &str| Ok(vec![Item::string(v)]);
        match name {
            "resource" | "rootResource" | "context" => Ok(self.input.clone()),
            "ucum" => s("http://unitsofmeasure.org"),
            "sct" => s("http://snomed.info/sct"),
            "loinc" => s("http://loinc.org"),
            _ => {
                if let Some(rest) = name.strip_prefix("vs-") {
                    return s(&format!("http://hl7.org/fhir/ValueSet/{rest}"));
                }
                if let Some(rest) = name.strip_prefix("ext-") {
                    return s(&format!("http://hl7.org/fhir/StructureDefinition/{rest}"));
                }
                fail(format!("undefined environment variable %{name}"))
            }
        }
    }

    // -----------------------------------------------------------------
    // Navigation

    /// In strict mode: fails when the model knows the item's type and says
    /// it has no element `name` (a leading type name is always allowed).
    fn check_step(&self, item: &Item<'a>, name: &str, leading: bool) -> R<()> {
        let Item::Node(n) = item else { return Ok(()) };
        let Some(parent) = n.children_of else { return Ok(()) };
        let model = self.ctx.model;
        if !(model.is_type(parent) || parent.contains('.')) || model.element(parent, name).is_some() {
            return Ok(());
        }
        // A leading type name that does not match selects nothing: shared
        // expressions (`AllergyIntolerance.code | Condition.code`) rely on it.
        if leading && model.is_type(name) {
            return Ok(());
        }
        fail(format!("{parent} has no element '{name}'"))
    }

    /// Appends the children called `name` of `item` to `out`.
    pub(crate) fn child(&self, item: &Item<'a>, name: &str, out: &mut Collection<'a>) {
        self.child_keyed(item, name, &format!("_{name}"), out);
    }

    /// [`Self::child`] with the `_name` key precomputed.
    fn child_keyed(&self, item: &Item<'a>, name: &str, ext_key: &str, out: &mut Collection<'a>) {
        let node = match item {
            Item::Node(n) => n,
            Item::Quantity(q) => {
                match name {
                    "value" => out.push(Item::Decimal(q.value)),
                    "unit" | "code" => out.push(Item::string(q.unit.clone())),
                    _ => {}
                }
                return;
            }
            Item::TypeInfo(ns, n) => {
                match name {
                    "namespace" => out.push(Item::String(Cow::Borrowed(ns))),
                    "name" => out.push(Item::String(n.clone())),
                    _ => {}
                }
                return;
            }
            _ => return,
        };
        let obj = match node.value {
            Value::Object(m) => m,
            _ => {
                // A primitive: only its `id` and `extension` live in `_name`.
                if let Some(Value::Object(ext)) = node.ext
                    && let Some(v) = ext.get(name)
                {
                    let ty = match name {
                        "extension" => Some("Extension"),
                        "id" => Some("System.String"),
                        _ => None,
                    };
                    push_values(v, None, ty, ty, out);
                }
                return;
            }
        };
        let info: Option<ElementInfo<'a>> = node.children_of.and_then(|p| self.ctx.model.element(p, name));
        match info {
            Some(info) if info.is_choice => self.choice_children(obj, name, out),
            Some(info) => {
                let v = obj.get(name);
                let ext = obj.get(ext_key);
                if v.is_some() || ext.is_some() {
                    push_values(v.unwrap_or(&NULL), ext, Some(info.type_name), Some(info.children_of), out);
                }
            }
            None => {
                let v = obj.get(name);
                let ext = obj.get(ext_key);
                if v.is_some() || ext.is_some() {
                    push_values(v.unwrap_or(&NULL), ext, None, None, out);
                } else {
                    // Unknown element: maybe a choice element (`value` →
                    // `valueQuantity`), recognised by a known type suffix.
                    self.choice_children(obj, name, out);
                }
            }
        }
    }

    fn choice_children(&self, obj: &'a serde_json::Map<String, Value>, name: &str, out: &mut Collection<'a>) {
        for (key, v) in obj {
            let Some(suffix) = key.strip_prefix(name) else {
                continue;
            };
            if !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            let Some(ty) = self.choice_type(suffix) else {
                continue;
            };
            let ext = obj.get(&format!("_{key}") as &str);
            push_values(v, ext, Some(ty), Some(ty), out);
        }
        // A primitive choice with only an extension (`_valueString`).
        for (key, ext) in obj {
            let Some(rest) = key.strip_prefix('_') else {
                continue;
            };
            let Some(suffix) = rest.strip_prefix(name) else {
                continue;
            };
            if obj.contains_key(rest) || !suffix.starts_with(|c: char| c.is_ascii_uppercase()) {
                continue;
            }
            if let Some(ty) = self.choice_type(suffix) {
                push_values(&NULL, Some(ext), Some(ty), Some(ty), out);
            }
        }
    }

    /// Type named by a choice suffix: `Quantity` → `Quantity`, `String` → `string`.
    fn choice_type(&self, suffix: &'a str) -> Option<&'a str> {
        if let Some((p, _)) =
            crate::model::PRIMITIVES.iter().find(|(p, _)| p.len() == suffix.len() && first_upper_eq(p, suffix))
        {
            return Some(p);
        }
        self.ctx.model.is_type(suffix).then_some(suffix)
    }

    /// All child nodes of `item` (for `children()` / `descendants()`).
    pub(crate) fn children(&self, item: &Item<'a>, out: &mut Collection<'a>) {
        let Item::Node(node) = item else { return };
        let Value::Object(obj) = node.value else {
            // A primitive's children are the `id` and `extension` of `_name`.
            self.child(item, "id", out);
            self.child(item, "extension", out);
            return;
        };
        for (key, v) in obj {
            if key == "resourceType" {
                continue;
            }
            if let Some(rest) = key.strip_prefix('_') {
                if !obj.contains_key(rest) {
                    self.child(item, rest, out);
                }
                continue;
            }
            let before = out.len();
            self.child(item, key, out);
            if out.len() == before {
                // A choice instance (`valueQuantity`): type from the suffix.
                let ty = key
                    .char_indices()
                    .find(|(_, c)| c.is_ascii_uppercase())
                    .and_then(|(i, _)| key.get(i..))
                    .and_then(|s| self.choice_type(s));
                let ext = obj.get(&format!("_{key}") as &str);
                push_values(v, ext, ty, ty, out);
            }
        }
    }

    // -----------------------------------------------------------------
    // Types

    /// Fails for a type name that neither System nor the model knows.
    pub(crate) fn check_type(&self, ty: &TypeSpec) -> R<()> {
        let known_system = SYSTEM_TYPES.contains(&ty.name.as_str());
        let known = match ty.namespace.as_deref() {
            Some("System") => known_system,
            Some("FHIR") => self.ctx.model.is_type(&ty.name),
            Some(_) => false,
            None => known_system || self.ctx.model.is_type(&ty.name),
        };
        if known { Ok(()) } else { fail(format!("unknown type '{}'", ty.name)) }
    }

    pub(crate) fn is_type(&self, item: &Item<'a>, ty: &TypeSpec) -> R<bool> {
        self.check_type(ty)?;
        let (ns, name) = item.type_info();
        let model = self.ctx.model;
        let fhir_match = |name: &str| name == ty.name || model.is_subtype_of(name, &ty.name);
        // A FHIR primitive is not its System counterpart: `Patient.active
        // is Boolean` is false (HL7 R4 tests), `is boolean` is true.
        Ok(match ty.namespace.as_deref() {
            Some("System") => ns == "System" && system_name_matches(name, &ty.name),
            Some("FHIR") => ns == "FHIR" && fhir_match(name),
            _ => {
                if ns == "FHIR" {
                    fhir_match(name)
                } else {
                    system_name_matches(name, &ty.name)
                }
            }
        })
    }

    // -----------------------------------------------------------------
    // Operators

    fn binary(&self, op: BinOp, l: &Expr, r: &Expr, focus: &[Item<'a>], scope: &Scope<'a>) -> R<Collection<'a>> {
        // Boolean operators short-circuit where three-valued logic allows.
        match op {
            BinOp::And | BinOp::Or | BinOp::Implies | BinOp::Xor => {
                let a = logic_operand(&self.eval(l, focus, scope)?)?;
                match (op, a) {
                    (BinOp::And, Some(false)) => return Ok(vec![Item::Boolean(false)]),
                    (BinOp::Or, Some(true)) => return Ok(vec![Item::Boolean(true)]),
                    (BinOp::Implies, Some(false)) => return Ok(vec![Item::Boolean(true)]),
                    _ => {}
                }
                let b = logic_operand(&self.eval(r, focus, scope)?)?;
                let res = match op {
                    BinOp::And => match (a, b) {
                        (_, Some(false)) => Some(false),
                        (Some(true), Some(true)) => Some(true),
                        _ => None,
                    },
                    BinOp::Or => match (a, b) {
                        (_, Some(true)) => Some(true),
                        (Some(false), Some(false)) => Some(false),
                        _ => None,
                    },
                    BinOp::Xor => match (a, b) {
                        (Some(x), Some(y)) => Some(x != y),
                        _ => None,
                    },
                    _ => match (a, b) {
                        (_, Some(true)) => Some(true),
                        (Some(true), Some(false)) => Some(false),
                        _ => None,
                    },
                };
                return Ok(res.map(Item::Boolean).into_iter().collect());
            }
            _ => {}
        }
        let a = self.eval(l, focus, scope)?;
        let b = self.eval(r, focus, scope)?;
        self.apply_binary(op, a, b)
    }

    pub(crate) fn apply_binary(&self, op: BinOp, a: Collection<'a>, b: Collection<'a>) -> R<Collection<'a>> {
        let bool_out = |v: Option<bool>| Ok(v.map(Item::Boolean).into_iter().collect());
        match op {
            BinOp::Union => {
                let mut seen = Dedup::new();
                let mut out: Collection<'a> = Vec::with_capacity(a.len() + b.len());
                for item in a.into_iter().chain(b) {
                    if seen.insert(self, &item) {
                        out.push(item);
                    }
                }
                Ok(out)
            }
            BinOp::Eq | BinOp::Ne => {
                let eq = self.collections_equal(&a, &b);
                bool_out(if op == BinOp::Ne { eq.map(|x| !x) } else { eq })
            }
            BinOp::Equiv | BinOp::NotEquiv => {
                let eq = self.collections_equivalent(&a, &b);
                bool_out(Some(if op == BinOp::NotEquiv { !eq } else { eq }))
            }
            BinOp::Lt | BinOp::Le | BinOp::Gt | BinOp::Ge => {
                let (Some(x), Some(y)) = (singleton(&a, "comparison")?, singleton(&b, "comparison")?) else {
                    return Ok(Vec::new());
                };
                let ord = self.compare(x, y)?;
                bool_out(ord.map(|o| match op {
                    BinOp::Lt => o == Ordering::Less,
                    BinOp::Le => o != Ordering::Greater,
                    BinOp::Gt => o == Ordering::Greater,
                    _ => o != Ordering::Less,
                }))
            }
            BinOp::In | BinOp::Contains => {
                let (needle, hay) = if op == BinOp::In { (&a, &b) } else { (&b, &a) };
                match singleton(needle, "membership")? {
                    None => Ok(Vec::new()),
                    Some(n) => bool_out(Some(hay.iter().any(|h| self.items_equal(n, h) == Some(true)))),
                }
            }
            BinOp::Concat => {
                let s = |c: &Collection<'a>| -> R<String> {
                    match singleton(c, "'&'")? {
                        None => Ok(String::new()),
                        Some(i) => match i.to_system() {
                            Some(Item::String(s)) => Ok(s.into_owned()),
                            None => Ok(String::new()),
                            _ => fail("'&' needs strings"),
                        },
                    }
                };
                Ok(vec![Item::string(s(&a)? + &s(&b)?)])
            }
            _ => {
                let (Some(x), Some(y)) = (singleton(&a, "arithmetic")?, singleton(&b, "arithmetic")?) else {
                    return Ok(Vec::new());
                };
                let (Some(x), Some(y)) = (x.to_system(), y.to_system()) else {
                    return Ok(Vec::new());
                };
                arithmetic(op, x, y).map(|o| o.into_iter().collect())
            }
        }
    }

    // -----------------------------------------------------------------
    // Equality, equivalence, ordering

    pub(crate) fn contains_item(&self, coll: &[Item<'a>], item: &Item<'a>) -> bool {
        coll.iter().any(|c| self.items_equal(c, item) == Some(true))
    }

    pub(crate) fn collections_equal(&self, a: &[Item<'a>], b: &[Item<'a>]) -> Option<bool> {
        if a.is_empty() || b.is_empty() {
            return None;
        }
        if a.len() != b.len() {
            return Some(false);
        }
        let mut unknown = false;
        for (x, y) in a.iter().zip(b) {
            match self.items_equal(x, y) {
                Some(false) => return Some(false),
                None => unknown = true,
                Some(true) => {}
            }
        }
        if unknown { None } else { Some(true) }
    }

    pub(crate) fn items_equal(&self, a: &Item<'a>, b: &Item<'a>) -> Option<bool> {
        match (null_valued(a), null_valued(b)) {
            (Some(x), Some(y)) => return Some(std::ptr::eq(x, y) || x == y),
            (Some(_), None) | (None, Some(_)) => return Some(false),
            _ => {}
        }
        if let (Item::Node(x), Item::Node(y)) = (a, b)
            && (x.value.is_object() || y.value.is_object())
        {
            // Complex FHIR values: structural equality of the JSON. Quantities
            // first try unit-aware comparison.
            if let (Some(Item::Quantity(p)), Some(Item::Quantity(q))) = (a.to_system(), b.to_system()) {
                return p.equals(&q);
            }
            return Some(json_equal(x.value, y.value));
        }
        let (Some(x), Some(y)) = (self.coerce(a, b), self.coerce(b, a)) else {
            return None;
        };
        match (&x, &y) {
            (Item::Boolean(p), Item::Boolean(q)) => Some(p == q),
            (Item::String(p), Item::String(q)) => Some(p == q),
            (Item::Quantity(p), Item::Quantity(q)) => p.equals(q),
            (Item::Quantity(p), n) | (n, Item::Quantity(p)) if number(n).is_some() => {
                let q = Quantity::new(number(n).unwrap_or_default(), "1");
                p.equals(&q)
            }
            (Item::Date(_) | Item::DateTime(_), Item::Date(_) | Item::DateTime(_)) | (Item::Time(_), Item::Time(_)) => {
                self.compare_temporal(&x, &y).map(|o| o == Ordering::Equal)
            }
            (Item::TypeInfo(a1, a2), Item::TypeInfo(b1, b2)) => Some(a1 == b1 && a2 == b2),
            _ => match (number(&x), number(&y)) {
                (Some(p), Some(q)) => Some(p == q),
                _ => Some(false),
            },
        }
    }

    /// System value of `a`, parsing an untyped JSON string as a date/time
    /// when the other operand is one (JSON cannot say a string is a date).
    fn coerce(&self, a: &Item<'a>, other: &Item<'a>) -> Option<Item<'a>> {
        let sys = a.to_system()?;
        if let (Item::Node(n), Item::String(s)) = (a, &sys)
            && n.type_name.is_none()
        {
            let parsed = match other.to_system() {
                Some(Item::Date(_)) => crate::datetime::Date::parse(s).map(Item::Date),
                Some(Item::DateTime(_)) => crate::datetime::DateTime::parse(s).map(Item::DateTime),
                Some(Item::Time(_)) => crate::datetime::Time::parse(s).map(Item::Time),
                _ => None,
            };
            if let Some(p) = parsed {
                return Some(p);
            }
        }
        Some(sys)
    }

    fn compare_temporal(&self, x: &Item<'a>, y: &Item<'a>) -> Option<Ordering> {
        match (x, y) {
            (Item::Date(p), Item::Date(q)) => p.compare(q),
            (Item::Date(p), Item::DateTime(q)) => p.to_datetime().compare(q, self.default_offset),
            (Item::DateTime(p), Item::Date(q)) => p.compare(&q.to_datetime(), self.default_offset),
            (Item::DateTime(p), Item::DateTime(q)) => p.compare(q, self.default_offset),
            (Item::Time(p), Item::Time(q)) => p.compare(q),
            _ => None,
        }
    }

    pub(crate) fn collections_equivalent(&self, a: &[Item<'a>], b: &[Item<'a>]) -> bool {
        if a.len() != b.len() {
            return false;
        }
        let mut used = vec![false; b.len()];
        'outer: for x in a {
            for (j, y) in b.iter().enumerate() {
                if used.get(j) == Some(&false) && self.items_equivalent(x, y) {
                    if let Some(u) = used.get_mut(j) {
                        *u = true;
                    }
                    continue 'outer;
                }
            }
            return false;
        }
        true
    }

    pub(crate) fn items_equivalent(&self, a: &Item<'a>, b: &Item<'a>) -> bool {
        match (null_valued(a), null_valued(b)) {
            (Some(_), Some(_)) => return true,
            (Some(_), None) | (None, Some(_)) => return false,
            _ => {}
        }
        if let (Item::Node(x), Item::Node(y)) = (a, b)
            && (x.value.is_object() || y.value.is_object())
        {
            if let (Some(Item::Quantity(p)), Some(Item::Quantity(q))) = (a.to_system(), b.to_system()) {
                return quantity_equivalent(&p, &q);
            }
            return json_equivalent(x.value, y.value);
        }
        let (Some(x), Some(y)) = (self.coerce(a, b), self.coerce(b, a)) else {
            return false;
        };
        match (&x, &y) {
            (Item::String(p), Item::String(q)) => normalize_ws(p) == normalize_ws(q),
            (Item::Boolean(p), Item::Boolean(q)) => p == q,
            (Item::Quantity(p), Item::Quantity(q)) => quantity_equivalent(p, q),
            (Item::Quantity(p), n) | (n, Item::Quantity(p)) if number(n).is_some() => {
                quantity_equivalent(p, &Quantity::new(number(n).unwrap_or_default(), "1"))
            }
            (Item::Date(_) | Item::DateTime(_), Item::Date(_) | Item::DateTime(_)) | (Item::Time(_), Item::Time(_)) => {
                self.compare_temporal(&x, &y) == Some(Ordering::Equal)
            }
            (Item::TypeInfo(a1, a2), Item::TypeInfo(b1, b2)) => a1 == b1 && a2 == b2,
            _ => match (number(&x), number(&y)) {
                (Some(p), Some(q)) => decimal_equivalent(p, q),
                _ => false,
            },
        }
    }

    /// Ordering for `<`, `>`, `sort()`, `min()`: `Ok(None)` when unknown
    /// (date precision), an error for incomparable types.
    pub(crate) fn compare(&self, a: &Item<'a>, b: &Item<'a>) -> R<Option<Ordering>> {
        if null_valued(a).is_some() || null_valued(b).is_some() {
            return Ok(None);
        }
        let (Some(x), Some(y)) = (self.coerce(a, b), self.coerce(b, a)) else {
            return fail("cannot compare values without a primitive value");
        };
        match (&x, &y) {
            (Item::String(p), Item::String(q)) => Ok(Some(p.cmp(q))),
            (Item::Quantity(p), Item::Quantity(q)) => match p.compare(q) {
                Some(o) => Ok(Some(o)),
                None => Ok(None),
            },
            (Item::Quantity(p), n) if number(n).is_some() => {
                Ok(p.compare(&Quantity::new(number(n).unwrap_or_default(), "1")))
            }
            (n, Item::Quantity(p)) if number(n).is_some() => {
                Ok(Quantity::new(number(n).unwrap_or_default(), "1").compare(p))
            }
            (Item::Date(_) | Item::DateTime(_), Item::Date(_) | Item::DateTime(_)) | (Item::Time(_), Item::Time(_)) => {
                Ok(self.compare_temporal(&x, &y))
            }
            _ => match (number(&x), number(&y)) {
                (Some(p), Some(q)) => Ok(Some(p.cmp(&q))),
                _ => fail(format!("cannot compare {} with {}", x.type_info().1, y.type_info().1)),
            },
        }
    }
}

fn first_upper_eq(prim: &str, suffix: &str) -> bool {
    let mut p = prim.chars();
    let mut s = suffix.chars();
    match (p.next(), s.next()) {
        (Some(a), Some(b)) => a.to_ascii_uppercase() == b && p.as_str() == s.as_str(),
        _ => false,
    }
}

const SYSTEM_TYPES: &[&str] =
    &["Any", "Boolean", "Integer", "Long", "Integer64", "Decimal", "String", "Date", "DateTime", "Time", "Quantity"];

fn system_name_matches(actual: &str, wanted: &str) -> bool {
    if wanted == "Any" {
        return true;
    }
    actual == wanted || (actual == "Long" && wanted == "Integer64") || (wanted == "Long" && actual == "Integer64")
}

/// Pushes the JSON `v` (one value or an array) as nodes; `ext` is the
/// matching `_name` sibling for primitives.
fn push_values<'a>(
    v: &'a Value,
    ext: Option<&'a Value>,
    type_name: Option<&'a str>,
    children_of: Option<&'a str>,
    out: &mut Collection<'a>,
) {
    let node = |value: &'a Value, ext: Option<&'a Value>| {
        let rt = value.get("resourceType").and_then(Value::as_str);
        Item::Node(Node {
            value,
            ext: ext.filter(|e| !e.is_null()),
            type_name: rt.or(type_name),
            children_of: rt.or(children_of),
        })
    };
    match v {
        Value::Array(items) => {
            let exts = ext.and_then(Value::as_array);
            let n = items.len().max(exts.map_or(0, Vec::len));
            for i in 0..n {
                let value = items.get(i).unwrap_or(&NULL);
                let e = exts.and_then(|x| x.get(i));
                if value.is_null() && e.is_none_or(Value::is_null) {
                    continue;
                }
                out.push(node(value, e));
            }
        }
        Value::Null => {
            if let Some(e) = ext.filter(|e| !e.is_null()) {
                match e {
                    Value::Array(es) => {
                        for e in es.iter().filter(|e| !e.is_null()) {
                            out.push(node(&NULL, Some(e)));
                        }
                    }
                    _ => out.push(node(&NULL, Some(e))),
                }
            }
        }
        _ => out.push(node(v, ext)),
    }
}

/// Whether an expression yields elements of one declared type (a path, or
/// a filter of one), so that strict mode may judge steps after it.
fn single_typed(e: &Expr) -> bool {
    use crate::ast::Func as F;
    match e {
        Expr::Ident(_) | Expr::This => true,
        Expr::Member(t, _) | Expr::Index(t, _) => single_typed(t),
        Expr::Call(c) => {
            matches!(
                c.func,
                F::Where
                    | F::First
                    | F::Last
                    | F::Tail
                    | F::Skip
                    | F::Take
                    | F::Single
                    | F::Distinct
                    | F::OfType
                    | F::As
                    | F::Extension
            ) && c.target.as_ref().is_none_or(single_typed)
        }
        Expr::As(t, _) => single_typed(t),
        _ => false,
    }
}

/// The single item of a collection, `None` if empty, an error if more.
pub(crate) fn singleton<'x, 'a>(c: &'x [Item<'a>], what: &str) -> R<Option<&'x Item<'a>>> {
    match c {
        [] => Ok(None),
        [one] => Ok(Some(one)),
        _ => fail(format!("{what} expects a single item, got {}", c.len())),
    }
}

/// Singleton evaluation of a collection as a Boolean (FHIRPath §4.5).
pub(crate) fn to_bool(c: &[Item<'_>]) -> R<Option<bool>> {
    match singleton(c, "boolean operator")? {
        None => Ok(None),
        Some(i) => match i.to_system() {
            Some(Item::Boolean(b)) => Ok(Some(b)),
            _ => Ok(Some(true)),
        },
    }
}

/// Operand of `and` / `or` / `xor` / `implies`: singleton evaluation, where
/// a primitive without a value (only an extension) counts as empty.
fn logic_operand(c: &[Item<'_>]) -> R<Option<bool>> {
    match singleton(c, "boolean operator")? {
        None => Ok(None),
        Some(i) => match i.to_system() {
            Some(Item::Boolean(b)) => Ok(Some(b)),
            Some(_) => Ok(Some(true)),
            None if matches!(i, Item::Node(n) if !n.value.is_object()) => Ok(None),
            None => Ok(Some(true)),
        },
    }
}

/// A `where` / `exists` / `all` criterion: empty is false, a single Boolean
/// is itself, anything else counts as true.
pub(crate) fn criterion(c: &[Item<'_>]) -> bool {
    match c {
        [] => false,
        [one] => !matches!(one.to_system(), Some(Item::Boolean(false))),
        _ => true,
    }
}

pub(crate) fn number(i: &Item<'_>) -> Option<Decimal> {
    match i {
        Item::Integer(n) | Item::Long(n) => Some(Decimal::from(*n)),
        Item::Decimal(d) => Some(*d),
        _ => None,
    }
}

/// String equivalence ignores case, and treats every whitespace character
/// as a plain space (runs are not collapsed, ends are not trimmed).
fn normalize_ws(s: &str) -> String {
    s.chars().map(|c| if c.is_whitespace() { ' ' } else { c }).collect::<String>().to_lowercase()
}

/// Decimal equivalence: equal after rounding to the less precise scale.
pub(crate) fn decimal_equivalent(a: Decimal, b: Decimal) -> bool {
    let scale = a.normalize().scale().min(b.normalize().scale());
    a.round_dp(scale) == b.round_dp(scale)
}

fn quantity_equivalent(p: &Quantity, q: &Quantity) -> bool {
    // Time-valued quantities are equivalent as calendar durations, whichever
    // way they are written: `1 year ~ 1 'a'`, `30 days ~ 1 'mo'`.
    if let (Some(a), Some(b)) = (calendar_form(p), calendar_form(q))
        && (p.is_calendar() != q.is_calendar())
    {
        return quantity_equivalent(&a, &b);
    }
    // Compare in the finer unit, at the precision of the less precise value.
    let one = |q: &Quantity| Quantity::new(Dec::ONE, q.unit.clone());
    let unit = match one(p).compare(&one(q)) {
        Some(Ordering::Greater) => q.unit.clone(),
        Some(_) => p.unit.clone(),
        None => return false,
    };
    match (p.convert_to(&unit), q.convert_to(&unit)) {
        (Some(a), Some(b)) => decimal_equivalent(a.value, b.value),
        _ => false,
    }
}

fn calendar_form(q: &Quantity) -> Option<Quantity> {
    if q.is_calendar() {
        return Some(q.clone());
    }
    let unit = match q.unit.as_str() {
        "a" => "year",
        "mo" => "month",
        "wk" => "week",
        "d" => "day",
        "h" => "hour",
        "min" => "minute",
        "s" => "second",
        "ms" => "millisecond",
        _ => return None,
    };
    Some(Quantity::new(q.value, unit))
}

/// For a FHIR primitive that has only an extension (JSON `null` value):
/// its `_name` object, which stands in for identity.
fn null_valued<'x>(i: &'x Item<'_>) -> Option<&'x Value> {
    match i {
        Item::Node(n) if n.value.is_null() => Some(n.ext.unwrap_or(&NULL)),
        _ => None,
    }
}

/// Equality of complex values: every property equal, recursively
/// (numbers by value, so `1.0` equals `1`).
pub(crate) fn json_equal(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::Number(x), Value::Number(y)) => x.as_f64() == y.as_f64(),
        (Value::Array(x), Value::Array(y)) => x.len() == y.len() && x.iter().zip(y).all(|(p, q)| json_equal(p, q)),
        (Value::Object(x), Value::Object(y)) => {
            x.len() == y.len() && x.iter().all(|(k, v)| y.get(k).is_some_and(|w| json_equal(v, w)))
        }
        _ => a == b,
    }
}

fn json_equivalent(a: &Value, b: &Value) -> bool {
    match (a, b) {
        (Value::String(x), Value::String(y)) => normalize_ws(x) == normalize_ws(y),
        (Value::Number(x), Value::Number(y)) => {
            match (crate::value::json_number_to_decimal(x), crate::value::json_number_to_decimal(y)) {
                (Some(p), Some(q)) => decimal_equivalent(p, q),
                _ => false,
            }
        }
        (Value::Array(x), Value::Array(y)) => {
            x.len() == y.len() && x.iter().all(|p| y.iter().any(|q| json_equivalent(p, q)))
        }
        (Value::Object(x), Value::Object(y)) => {
            let keys = |m: &serde_json::Map<String, Value>| m.iter().filter(|(k, _)| k.as_str() != "id").count();
            keys(x) == keys(y)
                && x.iter()
                    .filter(|(k, _)| k.as_str() != "id")
                    .all(|(k, v)| y.get(k).is_some_and(|w| json_equivalent(v, w)))
        }
        _ => a == b,
    }
}

// ---------------------------------------------------------------------------
// Arithmetic

fn int_result(v: Option<i64>) -> R<Option<Item<'static>>> {
    // FHIRPath Integer is 32-bit: overflow yields empty.
    Ok(v.filter(|n| i32::try_from(*n).is_ok()).map(Item::Integer))
}

pub(crate) fn arithmetic<'a>(op: BinOp, x: Item<'a>, y: Item<'a>) -> R<Option<Item<'a>>> {
    use Item::*;
    // Dimensionless quantities mix with plain numbers (`3 '1' + 2`).
    let as_quantity = |i: &Item<'a>| -> Option<crate::quantity::Quantity> {
        number(i).map(|n| crate::quantity::Quantity::new(n, "1"))
    };
    match (&x, &y) {
        (Quantity(_), Integer(_) | Long(_) | Decimal(_)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let Some(q) = as_quantity(&y) else { return Ok(None) };
            return arithmetic(op, x, Quantity(Box::new(q)));
        }
        (Integer(_) | Long(_) | Decimal(_), Quantity(_)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            let Some(q) = as_quantity(&x) else { return Ok(None) };
            return arithmetic(op, Quantity(Box::new(q)), y);
        }
        (Quantity(_), _) | (_, Quantity(_)) if matches!(op, BinOp::IntDiv | BinOp::Mod) => {
            let plain = |i: &Item<'a>| match i {
                Quantity(q) => q.convert_to("1").map(|q| Decimal(q.value)),
                other => number(other).map(|_| other.clone()),
            };
            return match (plain(&x), plain(&y)) {
                (Some(a), Some(b)) => arithmetic(op, a, b),
                _ => Ok(None),
            };
        }
        _ => {}
    }
    match (&x, &y) {
        (Integer(a), Integer(b)) => match op {
            BinOp::Add => int_result(a.checked_add(*b)),
            BinOp::Sub => int_result(a.checked_sub(*b)),
            BinOp::Mul => int_result(a.checked_mul(*b)),
            BinOp::Div => Ok(decimal_div(Dec::from(*a), Dec::from(*b)).map(Decimal)),
            BinOp::IntDiv => int_result(if *b == 0 { None } else { a.checked_div(*b) }),
            BinOp::Mod => int_result(if *b == 0 { None } else { a.checked_rem(*b) }),
            _ => fail("unsupported integer operator"),
        },
        (Long(_) | Integer(_), Long(_) | Integer(_)) => {
            let (a, b) = match (&x, &y) {
                (Long(a) | Integer(a), Long(b) | Integer(b)) => (*a, *b),
                _ => return Ok(None),
            };
            Ok(match op {
                BinOp::Add => a.checked_add(b).map(Long),
                BinOp::Sub => a.checked_sub(b).map(Long),
                BinOp::Mul => a.checked_mul(b).map(Long),
                BinOp::Div => decimal_div(Dec::from(a), Dec::from(b)).map(Decimal),
                BinOp::IntDiv => (b != 0).then(|| a.checked_div(b)).flatten().map(Long),
                BinOp::Mod => (b != 0).then(|| a.checked_rem(b)).flatten().map(Long),
                _ => return fail("unsupported integer operator"),
            })
        }
        (Integer(_) | Long(_) | Decimal(_), Integer(_) | Long(_) | Decimal(_)) => {
            let (Some(a), Some(b)) = (number(&x), number(&y)) else {
                return Ok(None);
            };
            Ok(match op {
                BinOp::Add => a.checked_add(b).map(Decimal),
                BinOp::Sub => a.checked_sub(b).map(Decimal),
                BinOp::Mul => a.checked_mul(b).map(Decimal),
                BinOp::Div => decimal_div(a, b).map(Decimal),
                BinOp::IntDiv => {
                    if b.is_zero() {
                        None
                    } else {
                        a.checked_div(b).and_then(|q| q.trunc().to_i64()).map(Integer)
                    }
                }
                BinOp::Mod => {
                    if b.is_zero() {
                        None
                    } else {
                        a.checked_rem(b).map(Decimal)
                    }
                }
                _ => return fail("unsupported decimal operator"),
            })
        }
        (String(a), String(b)) if op == BinOp::Add => Ok(Some(Item::string(format!("{a}{b}")))),
        (Quantity(a), Quantity(b)) => Ok(match op {
            BinOp::Add => a.add(b, false).map(|q| Item::Quantity(Box::new(q))),
            BinOp::Sub => a.add(b, true).map(|q| Item::Quantity(Box::new(q))),
            BinOp::Mul => a.mul(b, false).map(|q| Item::Quantity(Box::new(q))),
            BinOp::Div => {
                if b.value.is_zero() {
                    None
                } else {
                    a.mul(b, true).map(|q| Item::Quantity(Box::new(q)))
                }
            }
            _ => return fail("unsupported quantity operator"),
        }),
        (Quantity(q), n) | (n, Quantity(q)) if number(n).is_some() && matches!(op, BinOp::Mul | BinOp::Div) => {
            let Some(v) = number(n) else { return Ok(None) };
            let num = crate::quantity::Quantity::new(v, "1");
            let q_first = matches!(x, Quantity(_));
            let r = match (op, q_first) {
                (BinOp::Mul, _) => q.mul(&num, false),
                (BinOp::Div, true) => {
                    if v.is_zero() {
                        None
                    } else {
                        q.mul(&num, true)
                    }
                }
                _ => {
                    if q.value.is_zero() {
                        None
                    } else {
                        num.mul(q, true)
                    }
                }
            };
            Ok(r.map(|q| Item::Quantity(Box::new(q))))
        }
        (Date(_) | DateTime(_) | Time(_), Quantity(q)) if matches!(op, BinOp::Add | BinOp::Sub) => {
            date_add(&x, q, op == BinOp::Sub)
        }
        (Quantity(q), Date(_) | DateTime(_) | Time(_)) if op == BinOp::Add => date_add(&y, q, false),
        _ => fail(format!("operator not defined for {} and {}", x.type_info().1, y.type_info().1)),
    }
}

fn decimal_div(a: Decimal, b: Decimal) -> Option<Decimal> {
    if b.is_zero() { None } else { a.checked_div(b).map(|d| d.normalize()) }
}

fn date_add<'a>(x: &Item<'a>, q: &Quantity, negate: bool) -> R<Option<Item<'a>>> {
    use crate::datetime::CalendarUnit as U;
    if let Some(cal) = q.calendar_form() {
        return date_add(x, &cal, negate);
    }
    let Some(unit) = q.calendar_unit() else {
        return fail(format!("cannot add '{}' to a date/time", q.unit));
    };
    // UCUM years and months are not calendar durations (their length is an
    // average), so they cannot move a date.
    if matches!(q.unit.as_str(), "a" | "mo") {
        return fail(format!("cannot add '{}' to a date/time; use a calendar duration", q.unit));
    }
    if matches!(x, Item::Time(_)) && matches!(unit, U::Year | U::Month | U::Week | U::Day) {
        return fail("cannot add a date-valued quantity to a time");
    }
    let value = if negate { -q.value } else { q.value };
    // Seconds keep their fraction (as milliseconds); other units count whole
    // units only, as the specification prescribes.
    let (amount, unit) = if unit == U::Second {
        (value.checked_mul(Dec::from(1000)).and_then(|v| v.trunc().to_i64()), U::Millisecond)
    } else {
        (value.trunc().to_i64(), unit)
    };
    let Some(amount) = amount else { return Ok(None) };
    Ok(match x {
        Item::Date(d) => d.add(amount, unit).map(Item::Date),
        Item::DateTime(d) => d.add(amount, unit).map(Item::DateTime),
        Item::Time(t) => t.add(amount, unit).map(Item::Time),
        _ => None,
    })
}
