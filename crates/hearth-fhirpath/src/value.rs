//! Evaluation values: [`Item`] (one value) and [`Collection`] (what every
//! FHIRPath expression yields).
//!
//! FHIR data stays borrowed: a [`Node`] points into the caller's
//! `serde_json::Value` together with its FHIR type, so navigating a large
//! resource copies nothing. System values (literals, results of operators and
//! functions) are owned.

use rust_decimal::Decimal;
use serde_json::Value;
use std::borrow::Cow;

use crate::datetime::{Date, DateTime, Time};
use crate::quantity::Quantity;

/// The result of evaluating an expression: an ordered collection of items.
pub type Collection<'a> = Vec<Item<'a>>;

/// A JSON `null`, used as the value of a primitive that has only an
/// extension (`"_given": [{"extension": [...]}]`) or of a reference target
/// known only by type.
pub(crate) static NULL: Value = Value::Null;

/// A FHIR element inside the input JSON, with its FHIR type.
#[derive(Clone, Copy, Debug)]
pub struct Node<'a> {
    /// The element's JSON (`Value::Null` for a primitive with only an extension).
    pub(crate) value: &'a Value,
    /// For primitives, the matching `_name` object holding `id` / `extension`.
    pub(crate) ext: Option<&'a Value>,
    /// FHIR type name (`HumanName`, `date`, `Patient`, `System.String`), if known.
    pub(crate) type_name: Option<&'a str>,
    /// Definition key for child lookups (see `ElementInfo::children_of`).
    pub(crate) children_of: Option<&'a str>,
}

impl<'a> Node<'a> {
    /// A node for a whole JSON value (a resource, or any JSON): the type is
    /// taken from `resourceType` when present.
    pub fn root(value: &'a Value) -> Node<'a> {
        let ty = value.get("resourceType").and_then(Value::as_str);
        Node { value, ext: None, type_name: ty, children_of: ty }
    }

    /// The JSON of this element.
    pub fn json(&self) -> &'a Value {
        self.value
    }

    /// The FHIR type name, when known.
    pub fn type_name(&self) -> Option<&'a str> {
        self.type_name
    }

    /// The extension sibling of a primitive (`_birthDate`'s object), if any.
    pub fn primitive_extension(&self) -> Option<&'a Value> {
        self.ext
    }

    /// Where this element sits inside `root`, as an RFC 6901 JSON Pointer
    /// (`/name/0/given/1`), found by identity: `root` must be the value the
    /// expression was evaluated on. For FHIRPath Patch. A primitive that has
    /// only an extension is located by its `_name` entry. `None` if the
    /// node is not inside `root` (e.g. it came from a resolver). A `null`
    /// slot in a repeating primitive array is located as that slot.
    pub fn json_pointer(&self, root: &Value) -> Option<String> {
        let target: &Value = if std::ptr::eq(self.value, &NULL) { self.ext? } else { self.value };
        let mut path = Vec::new();
        find_path(root, target, &mut path)
            .then(|| path.iter().map(|seg| format!("/{}", seg.replace('~', "~0").replace('/', "~1"))).collect())
    }
}

fn find_path(current: &Value, target: &Value, path: &mut Vec<String>) -> bool {
    if std::ptr::eq(current, target) {
        return true;
    }
    match current {
        Value::Object(m) => {
            for (k, v) in m {
                path.push(k.clone());
                if find_path(v, target, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
        Value::Array(a) => {
            for (i, v) in a.iter().enumerate() {
                path.push(i.to_string());
                if find_path(v, target, path) {
                    return true;
                }
                path.pop();
            }
            false
        }
        _ => false,
    }
}

/// One FHIRPath value.
#[derive(Clone, Debug)]
pub enum Item<'a> {
    Boolean(bool),
    /// System.Integer (FHIRPath integers are 32-bit; we keep 64 bits and
    /// report overflow past that as empty).
    Integer(i64),
    /// System.Long (`5L`, FHIR `integer64`).
    Long(i64),
    Decimal(Decimal),
    String(Cow<'a, str>),
    Date(Date),
    DateTime(DateTime),
    Time(Time),
    Quantity(Box<Quantity>),
    /// A FHIR element (resource, complex type or primitive) in the input.
    Node(Node<'a>),
    /// The result of `type()`: namespace and name.
    TypeInfo(&'a str, Cow<'a, str>),
}

impl<'a> Item<'a> {
    pub fn string(s: impl Into<String>) -> Item<'a> {
        Item::String(Cow::Owned(s.into()))
    }

    /// FHIR primitive node → the System value it carries; System values are
    /// returned as they are. `None` for complex nodes and for primitives
    /// without a value.
    pub fn to_system(&self) -> Option<Item<'a>> {
        match self {
            Item::Node(n) => node_to_system(n),
            other => Some(other.clone()),
        }
    }

    /// `(namespace, name)` of the item's type.
    pub fn type_info(&self) -> (&'a str, &'a str) {
        match self {
            Item::Boolean(_) => ("System", "Boolean"),
            Item::Integer(_) => ("System", "Integer"),
            Item::Long(_) => ("System", "Long"),
            Item::Decimal(_) => ("System", "Decimal"),
            Item::String(_) => ("System", "String"),
            Item::Date(_) => ("System", "Date"),
            Item::DateTime(_) => ("System", "DateTime"),
            Item::Time(_) => ("System", "Time"),
            Item::Quantity(_) => ("System", "Quantity"),
            Item::TypeInfo(..) => ("System", "TypeInfo"),
            Item::Node(n) => match n.type_name {
                Some(t) => match t.strip_prefix("System.") {
                    Some(s) => ("System", s),
                    None => ("FHIR", t),
                },
                None => match n.value {
                    Value::Bool(_) => ("System", "Boolean"),
                    Value::Number(num) if num.is_i64() || num.is_u64() => ("System", "Integer"),
                    Value::Number(_) => ("System", "Decimal"),
                    Value::String(_) => ("System", "String"),
                    _ => ("FHIR", ""),
                },
            },
        }
    }

    /// The item as JSON, in the shape FHIR uses: primitives as JSON
    /// primitives, dates as strings, quantities as FHIR `Quantity` objects,
    /// nodes as the JSON they point at.
    pub fn to_json(&self) -> Value {
        match self {
            Item::Boolean(b) => Value::Bool(*b),
            Item::Integer(i) | Item::Long(i) => Value::from(*i),
            Item::Decimal(d) => decimal_to_json(d),
            Item::String(s) => Value::String(s.to_string()),
            Item::Date(d) => Value::String(d.to_string()),
            Item::DateTime(d) => Value::String(d.to_string()),
            Item::Time(t) => Value::String(t.to_string()),
            Item::Quantity(q) => {
                let mut m = serde_json::Map::new();
                m.insert("value".into(), decimal_to_json(&q.value));
                let code = crate::quantity::ucum_for_calendar(&q.unit).unwrap_or(&q.unit);
                m.insert("unit".into(), Value::String(q.unit.clone()));
                m.insert("system".into(), Value::String("http://unitsofmeasure.org".into()));
                m.insert("code".into(), Value::String(code.to_string()));
                Value::Object(m)
            }
            Item::Node(n) => n.value.clone(),
            Item::TypeInfo(ns, name) => serde_json::json!({"namespace": ns, "name": name}),
        }
    }
}

/// A decimal as a JSON number (exact when it fits an f64's shortest form).
pub(crate) fn decimal_to_json(d: &Decimal) -> Value {
    let s = d.normalize().to_string();
    if let Ok(i) = s.parse::<i64>() {
        return Value::from(i);
    }
    s.parse::<f64>().ok().and_then(serde_json::Number::from_f64).map(Value::Number).unwrap_or(Value::Null)
}

/// Parses a JSON number into a Decimal, keeping the digits serde_json shows.
pub(crate) fn json_number_to_decimal(n: &serde_json::Number) -> Option<Decimal> {
    if let Some(i) = n.as_i64() {
        return Some(Decimal::from(i));
    }
    let s = n.to_string();
    s.parse::<Decimal>().ok().or_else(|| Decimal::from_scientific(&s).ok())
}

fn node_to_system<'a>(n: &Node<'a>) -> Option<Item<'a>> {
    let ty = n.type_name.map(|t| t.strip_prefix("System.").unwrap_or(t));
    match n.value {
        Value::Bool(b) => Some(Item::Boolean(*b)),
        Value::Number(num) => match ty {
            Some("decimal" | "Decimal") => json_number_to_decimal(num).map(Item::Decimal),
            Some("integer64" | "Long") => num.as_i64().map(Item::Long),
            _ => match num.as_i64() {
                Some(i) if !num.is_f64() => Some(Item::Integer(i)),
                _ => json_number_to_decimal(num).map(Item::Decimal),
            },
        },
        Value::String(s) => Some(match ty {
            Some("date" | "Date") => Date::parse(s).map(Item::Date).unwrap_or_else(|| Item::String(Cow::Borrowed(s))),
            Some("dateTime" | "instant" | "DateTime") => {
                DateTime::parse(s).map(Item::DateTime).unwrap_or_else(|| Item::String(Cow::Borrowed(s)))
            }
            Some("time" | "Time") => Time::parse(s).map(Item::Time).unwrap_or_else(|| Item::String(Cow::Borrowed(s))),
            Some("integer64" | "Long") => {
                s.parse::<i64>().map(Item::Long).unwrap_or_else(|_| Item::String(Cow::Borrowed(s)))
            }
            Some("decimal") => {
                s.parse::<Decimal>().map(Item::Decimal).unwrap_or_else(|_| Item::String(Cow::Borrowed(s)))
            }
            _ => Item::String(Cow::Borrowed(s)),
        }),
        Value::Object(_) => match ty {
            Some("Quantity" | "Age" | "Count" | "Distance" | "Duration" | "SimpleQuantity" | "MoneyQuantity") => {
                fhir_quantity(n.value).map(|q| Item::Quantity(Box::new(q)))
            }
            _ => None,
        },
        _ => None,
    }
}

/// A FHIR `Quantity` object → System.Quantity, using the UCUM code.
///
/// `None` for a quantity with a `comparator` (`<5 mg` is not the quantity
/// 5 mg) or with a code from a unit system other than UCUM. A UCUM year or
/// month (`a`, `mo`) from FHIR data also acts as the calendar duration
/// (`Observation.value = 1 year`, `@2025 + Observation.value`).
pub(crate) fn fhir_quantity(v: &Value) -> Option<Quantity> {
    if v.get("comparator").is_some() {
        return None;
    }
    let value = match v.get("value")? {
        Value::Number(n) => json_number_to_decimal(n)?,
        Value::String(s) => s.parse().ok()?,
        _ => return None,
    };
    let system = v.get("system").and_then(Value::as_str);
    let code = v.get("code").and_then(Value::as_str);
    let unit = v.get("unit").and_then(Value::as_str);
    let (unit, ucum) = match (system, code, unit) {
        (Some("http://unitsofmeasure.org") | None, Some(c), _) => (c, true),
        (Some(_), Some(_), _) => return None,
        (_, None, Some(u)) => (u, false),
        _ => ("1", true),
    };
    let mut q = Quantity::new(value, unit);
    if ucum && matches!(unit, "a" | "mo") {
        q = q.with_calendar_alias();
    }
    Some(q)
}
