//! Hearth's FHIRPath engine (N1 / FHIR R4 flavour) over `serde_json::Value`.
//!
//! Used for search-parameter indexing, Questionnaire `enableWhenExpression` /
//! `calculatedExpression`, invariants and FHIRPath Patch.
//!
//! # Shape
//!
//! * [`parse`] compiles source text once into an [`Expression`] (tokens →
//!   Pratt parser → AST with resolved function names, checked arities,
//!   precompiled literal regexes). Malformed input is a [`ParseError`] with a
//!   byte position. Nesting deeper than 64 levels is rejected, so parsing,
//!   evaluating and dropping a tree stay within a 2 MiB stack.
//! * [`Expression::evaluate`] walks the AST over borrowed JSON. Results are a
//!   [`Collection`] of [`Item`]s; FHIR data stays borrowed as [`Node`]s.
//!   Runtime type errors are an [`EvalError`], never a panic.
//! * [`Context`] carries what an evaluation may consult: a [`ModelInfo`] for
//!   FHIR types JSON cannot tell, a [`Resolver`] for `resolve()`, a
//!   [`Terminology`] for `memberOf()`, a [`TraceSink`], `%variables`, and the
//!   clock (`now()` is a parameter; the engine never reads the system clock).
//!
//! ```
//! use hearth_fhirpath::{Context, DateTime, parse};
//!
//! let expr = parse("Patient.name.where(use = 'official').family").unwrap();
//! let ctx = Context::new(DateTime::parse("2024-05-01T12:00:00Z").unwrap());
//! let patient = serde_json::json!({
//!     "resourceType": "Patient",
//!     "name": [{"use": "official", "family": "Doe"}, {"use": "nickname", "family": "Jo"}]
//! });
//! let out = expr.evaluate(&ctx, &patient).unwrap();
//! assert_eq!(out[0].to_json(), "Doe");
//! ```
//!
//! # FHIR types
//!
//! * Resources are typed by `resourceType`; `Patient.name` at the start of a
//!   path selects the input when it is a `Patient`.
//! * Choice elements: `Observation.value` finds `valueQuantity`,
//!   `valueString`, ... and types them from the suffix (`Quantity`, `string`).
//! * Primitive extensions: `_birthDate` supplies `id` / `extension` of
//!   `birthDate` (also for repeating primitives and value-less ones).
//! * Declared types (`Patient.birthDate` is a `date`) come from the
//!   [`ModelInfo`]; the default [`JsonModel`] knows only the R4 type
//!   hierarchy and infers the rest from JSON (strings stay strings).
//! * A FHIR `Quantity` compares and computes as a System quantity using its
//!   UCUM code; UCUM `a` / `mo` from data also act as calendar years/months.
//! * `resolve()` resolves `#id` inside `%rootResource` / `%resource` / the
//!   input, then asks the [`Resolver`]; failing that, a `Type/id` reference
//!   yields a value-less node of that type, enough for
//!   `where(resolve() is Patient)` when indexing.
//! * `conformsTo()` is unsupported (an error); `htmlChecks()` is true.
//! * [`Node::json_pointer`] locates a result inside the input, for
//!   FHIRPath Patch.
//! * [`Context::strict_paths`] turns steps the model says cannot exist
//!   (`name.given1`) into errors, for checking authored expressions.
//!
//! # Conformance
//!
//! `tests/conformance.rs` runs the fhirpath.js suite (3,646 cases including
//! the 935 HL7 R4 tests; see `tests-data/fhirpath/README.md`). Deliberate
//! deviations from fhirpath.js are listed with reasons in
//! `tests-data/fhirpath/known-failures.txt`; the main ones: its `%factory`
//! extension API is not implemented, FHIR primitives are not their System
//! types (`Patient.active is System.Boolean` is false, as the HL7 tests
//! require), and `children()` follows JSON key order, which serde_json sorts.
//! By default `is` / `as` on several items is an error, as specified; search
//! indexing and invariant checking should use
//! [`Context::lenient_type_operators`] (R4's own search parameters and its
//! `dom-3` invariant apply `as` to collections).
//!
//! **Architecture Invariant:** this crate does no I/O, reads no clock and
//! holds no global mutable state; the same expression, input and context
//! always give the same result.

#![forbid(unsafe_code)]

mod ast;
mod boundary;
mod context;
mod datetime;
mod encoding;
mod eval;
mod functions;
mod lexer;
mod model;
mod parser;
pub mod patch;
mod quantity;
mod roots;
mod value;

use serde_json::Value;

pub use context::{Context, Resolver, Terminology, TraceSink, json_to_collection};
pub use datetime::{Date, DateTime, Precision, Time};
pub use eval::EvalError;
pub use lexer::ParseError;
pub use model::{ElementInfo, JsonModel, ModelInfo, is_primitive_type};
pub use patch::{PatchError, PatchModel};
pub use quantity::Quantity;
pub use rust_decimal::Decimal;
pub use value::{Collection, Item, Node};

/// A compiled FHIRPath expression. `Send + Sync`: compile once, share it
/// (e.g. in an `Arc`) and evaluate it as often as needed.
#[derive(Clone, Debug)]
pub struct Expression {
    source: String,
    ast: ast::Expr,
    /// See [`Expression::may_select`]: `None` when the expression is not a plain path.
    roots: Option<Vec<roots::Root>>,
}

/// Compiles a FHIRPath expression.
pub fn parse(src: &str) -> Result<Expression, ParseError> {
    let ast = parser::parse_expr(src)?;
    Ok(Expression { source: src.to_string(), roots: roots::of(&ast), ast })
}

impl Expression {
    /// Whether evaluating this expression on `resource` (a resource of type `resource_type`)
    /// can select anything: `false` only when the expression is a path, or a union of paths,
    /// from the resource's top-level elements (through filters such as `where`, `ofType`,
    /// `as`, `first`, `resolve()`, which select nothing from nothing) and the resource has
    /// none of those elements. A search index asks this before evaluating each of the dozens
    /// of parameters of a type, most of which find nothing in any one resource.
    pub fn may_select(&self, resource: &serde_json::Value, resource_type: &str) -> bool {
        match (&self.roots, resource.as_object()) {
            (Some(roots), Some(fields)) => roots.iter().any(|r| r.present(fields, resource_type)),
            _ => true,
        }
    }

    /// The source text this expression was compiled from.
    pub fn source(&self) -> &str {
        &self.source
    }

    /// Evaluates against `input` (typically a resource). `%resource`,
    /// `%rootResource` and `%context` default to `input` unless bound in
    /// `ctx`.
    pub fn evaluate<'a>(&self, ctx: &Context<'a>, input: &'a Value) -> Result<Collection<'a>, EvalError> {
        self.evaluate_items(ctx, vec![Item::Node(Node::root(input))])
    }

    /// Evaluates against an arbitrary input collection (e.g. an element
    /// selected by an earlier expression).
    pub fn evaluate_items<'a>(&self, ctx: &Context<'a>, input: Collection<'a>) -> Result<Collection<'a>, EvalError> {
        let default_offset = ctx.now.offset().unwrap_or(0);
        let ev = eval::Evaluator { ctx, input: input.clone(), depth: std::cell::Cell::new(0), default_offset };
        let scope = eval::Scope { this: None, index: None, total: None, defined: Vec::new() };
        ev.eval(&self.ast, &input, &scope)
    }

    /// Evaluates and applies FHIRPath's singleton Boolean evaluation:
    /// `Ok(None)` for empty, an error for more than one item.
    pub fn evaluate_bool(&self, ctx: &Context<'_>, input: &Value) -> Result<Option<bool>, EvalError> {
        let out = self.evaluate(ctx, input)?;
        eval::to_bool(&out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use serde_json::json;

    fn ctx() -> Context<'static> {
        Context::new(DateTime::parse("2024-05-01T12:00:00Z").unwrap())
    }

    #[test]
    fn smoke() {
        let p = json!({"resourceType": "Patient", "name": [{"given": ["A", "B"]}]});
        let e = parse("Patient.name.given.count() = 2").unwrap();
        assert_eq!(e.evaluate_bool(&ctx(), &p).unwrap(), Some(true));
    }

    #[test]
    fn parse_errors_have_positions() {
        let e = parse("Patient.name.where(").unwrap_err();
        assert_eq!(e.position, 19);
        assert!(parse("1 +").is_err());
        assert!(parse("nosuchfunction()").is_err());
    }
}
