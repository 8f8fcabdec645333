//! Everything an evaluation may consult besides its input: the FHIR model,
//! reference and terminology services, environment variables and the clock.

use serde_json::Value;
use std::collections::HashMap;

use crate::datetime::DateTime;
use crate::model::{JsonModel, ModelInfo};
use crate::value::{Collection, Item, Node};

/// Resolves references for `resolve()`.
///
/// Contained references (`#id`) are resolved by the engine inside the
/// current resource and never reach the resolver. The returned JSON must
/// live as long as the evaluation's input (e.g. a Bundle being indexed, or a
/// cache owned by the caller).
pub trait Resolver {
    /// The resource a reference string (`Patient/123`, an absolute URL, a
    /// canonical) points at, if the caller can find it.
    fn resolve(&self, reference: &str) -> Option<&Value>;
}

/// Terminology operations for `memberOf()`.
pub trait Terminology {
    /// Whether `code` (the JSON of a `code`, `Coding` or `CodeableConcept`
    /// element, or a plain string) is in the value set `value_set` (a
    /// canonical URL). `None` when unknown: `memberOf()` then yields empty.
    fn member_of(&self, code: &Value, value_set: &str) -> Option<bool>;
}

/// Receives `trace()` output; by default it is dropped (never logged: traced
/// values may hold PHI).
pub trait TraceSink {
    fn trace(&self, name: &str, values: &[Item<'_>]);
}

static DEFAULT_MODEL: JsonModel = JsonModel;

/// The evaluation context. Build it once per request or per batch and reuse
/// it across evaluations; it is immutable during evaluation.
///
/// ```
/// use hearth_fhirpath::{Context, DateTime, parse};
/// let now = DateTime::parse("2024-05-01T12:00:00Z").unwrap();
/// let ctx = Context::new(now);
/// let patient = serde_json::json!({"resourceType": "Patient", "active": true});
/// let expr = parse("Patient.active").unwrap();
/// let out = expr.evaluate(&ctx, &patient).unwrap();
/// assert_eq!(out.len(), 1);
/// ```
pub struct Context<'a> {
    pub(crate) model: &'a dyn ModelInfo,
    pub(crate) resolver: Option<&'a dyn Resolver>,
    pub(crate) terminology: Option<&'a dyn Terminology>,
    pub(crate) tracer: Option<&'a dyn TraceSink>,
    pub(crate) vars: HashMap<String, Collection<'a>>,
    pub(crate) now: DateTime,
    pub(crate) lenient_type_ops: bool,
    pub(crate) strict_paths: bool,
}

impl<'a> Context<'a> {
    /// A context with the JSON-only model and the given clock value, which
    /// `now()`, `today()` and `timeOfDay()` return (their timezone is the
    /// offset of `now`; date/times without an offset are compared in it).
    pub fn new(now: DateTime) -> Context<'a> {
        Context {
            model: &DEFAULT_MODEL,
            resolver: None,
            terminology: None,
            tracer: None,
            vars: HashMap::new(),
            now,
            lenient_type_ops: false,
            strict_paths: false,
        }
    }

    /// Lets `is` / `as` (operator and function) apply to every item of a
    /// multi-item collection instead of failing, as servers do when
    /// indexing: `(Library.useContext.value as Quantity)` on a resource with
    /// two `useContext`s, or R4's `dom-3` invariant
    /// (`%resource.descendants().as(canonical)`). The specification (and the
    /// default) is an error.
    pub fn lenient_type_operators(mut self, lenient: bool) -> Self {
        self.lenient_type_ops = lenient;
        self
    }

    /// Makes a path step that the model says cannot exist an error instead
    /// of an empty result: `name.given1`, `Observation.valueQuantity` (the
    /// element is `value`). A leading type name that is not the input's type
    /// still just selects nothing (`AllergyIntolerance.code |
    /// Condition.code` is a normal shared expression). Meant for checking authored
    /// expressions (questionnaires, invariants); indexing should stay
    /// lenient. Needs a model that knows the types involved.
    pub fn strict_paths(mut self, strict: bool) -> Self {
        self.strict_paths = strict;
        self
    }

    /// Uses a FHIR model for element types.
    pub fn with_model(mut self, model: &'a dyn ModelInfo) -> Self {
        self.model = model;
        self
    }

    pub fn with_resolver(mut self, resolver: &'a dyn Resolver) -> Self {
        self.resolver = Some(resolver);
        self
    }

    pub fn with_terminology(mut self, terminology: &'a dyn Terminology) -> Self {
        self.terminology = Some(terminology);
        self
    }

    pub fn with_tracer(mut self, tracer: &'a dyn TraceSink) -> Self {
        self.tracer = Some(tracer);
        self
    }

    /// Binds `%name` to a collection. `resource`, `rootResource` and
    /// `context` default to the evaluation input when not bound.
    pub fn with_var(mut self, name: impl Into<String>, value: Collection<'a>) -> Self {
        self.vars.insert(name.into(), value);
        self
    }

    /// Binds `%name` to a JSON value: arrays become collections, `null`
    /// the empty collection, objects nodes (typed by `resourceType`), and
    /// JSON primitives System values.
    pub fn with_json_var(self, name: impl Into<String>, value: &'a Value) -> Self {
        let items = json_to_collection(value);
        self.with_var(name, items)
    }

    /// Binds `%resource` and `%rootResource` (the resource containing the
    /// evaluated element; contained references are resolved inside it).
    pub fn with_resource(self, resource: &'a Value) -> Self {
        self.with_var("resource", vec![Item::Node(Node::root(resource))])
            .with_var("rootResource", vec![Item::Node(Node::root(resource))])
    }

    /// The clock value supplied at construction.
    pub fn now(&self) -> DateTime {
        self.now
    }
}

/// JSON → collection, as used for variables.
pub fn json_to_collection(value: &Value) -> Collection<'_> {
    match value {
        Value::Null => Vec::new(),
        Value::Array(a) => a.iter().flat_map(json_to_collection).collect(),
        other => vec![Item::Node(Node::root(other))],
    }
}
