//! Which top-level elements of a resource an expression can select from (see
//! [`crate::Expression::may_select`]).
//!
//! Worked out once, when the expression is compiled, for the shapes search parameters use:
//! `Type.element…`, `element…`, unions of those (`|`), and steps that select nothing from
//! nothing (`where`, `select`, `ofType`, `as`, `first`, `last`, `tail`, `skip`, `take`, `single`,
//! `distinct`, `extension`, `resolve`, indexing). Anything else (`exists()`, `iif`, literals,
//! `%resource`, arithmetic, a bare type name) makes the answer "unknown", and the expression is
//! always evaluated.

use serde_json::{Map, Value};

use crate::ast::{BinOp, Expr, Func};

/// One top-level element a path starts from, possibly behind a leading type name.
#[derive(Clone, Debug)]
pub(crate) struct Root {
    /// `Patient` in `Patient.name`: the path selects only from a resource of this type (or,
    /// for `Resource`/`DomainResource`, of any type). `None` for a path without one.
    of_type: Option<String>,
    /// The element: `name`; a choice element `value` also matches `valueQuantity` etc.
    element: String,
}

impl Root {
    /// Whether a resource of `resource_type` with these top-level `fields` has the element.
    pub(crate) fn present(&self, fields: &Map<String, Value>, resource_type: &str) -> bool {
        if let Some(t) = &self.of_type
            && t != resource_type
            && t != "Resource"
            && t != "DomainResource"
        {
            return false;
        }
        let e = self.element.as_str();
        fields.keys().any(|k| {
            let k = k.strip_prefix('_').unwrap_or(k);
            k.strip_prefix(e).is_some_and(|rest| rest.is_empty() || rest.starts_with(|c: char| c.is_ascii_uppercase()))
        })
    }
}

fn type_like(name: &str) -> bool {
    name.starts_with(|c: char| c.is_ascii_uppercase())
}

/// The roots of `e`, or `None` when it is not a plain path (see the module).
pub(crate) fn of(e: &Expr) -> Option<Vec<Root>> {
    let mut out = Vec::new();
    collect(e, &mut out).then_some(out)
}

fn collect(e: &Expr, out: &mut Vec<Root>) -> bool {
    match e {
        // `name` at the start: a child of the resource. A bare type name selects the resource
        // itself: unknown.
        Expr::Ident(n) if !type_like(n.as_str()) => {
            out.push(Root { of_type: None, element: n.as_str().to_owned() });
            true
        }
        Expr::Member(target, n) => match target.as_ref() {
            Expr::Ident(t) if type_like(t.as_str()) => {
                out.push(Root { of_type: Some(t.as_str().to_owned()), element: n.as_str().to_owned() });
                true
            }
            other => collect(other, out),
        },
        Expr::Call(c) => {
            let filters = matches!(
                c.func,
                Func::Where
                    | Func::Select
                    | Func::OfType
                    | Func::As
                    | Func::First
                    | Func::Last
                    | Func::Tail
                    | Func::Skip
                    | Func::Take
                    | Func::Single
                    | Func::Distinct
                    | Func::Extension
                    | Func::Resolve
            );
            match (&c.target, filters) {
                (Some(target), true) => collect(target, out),
                _ => false,
            }
        }
        Expr::As(target, _) | Expr::Index(target, _) => collect(target, out),
        Expr::Binary(BinOp::Union, a, b) => collect(a, out) && collect(b, out),
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]

    use serde_json::json;

    use crate::parse;

    #[test]
    fn paths_need_their_first_element() {
        let obs = json!({"resourceType": "Observation", "code": {"text": "x"}, "valueQuantity": {"value": 1},
                         "_effectiveDateTime": {"extension": []}});
        let may = |src: &str| parse(src).unwrap().may_select(&obs, "Observation");
        assert!(may("Observation.code"));
        assert!(may("Observation.value.ofType(Quantity)"));
        assert!(may("(Observation.value as Quantity)"));
        assert!(may("Observation.effective"), "a primitive's extension sibling counts");
        assert!(may("Observation.subject.where(resolve() is Patient) | Observation.code"));
        assert!(!may("Observation.subject.where(resolve() is Patient)"));
        assert!(!may("Observation.component.code"));
        assert!(!may("Condition.code | Procedure.code"), "other types' paths select nothing");
        assert!(may("Resource.code"), "Resource and DomainResource paths apply to every type");
        assert!(!may("Observation.codeable"), "a longer name is another element");
        // Not plain paths: always evaluated.
        assert!(may("Observation.component.exists()"));
        assert!(may("Observation"));
        assert!(may("iif(Observation.component.exists(), 1, 2)"));
    }

    #[test]
    fn the_answer_agrees_with_evaluation() {
        let ctx = crate::Context::new(crate::DateTime::parse("2024-01-01T00:00:00Z").unwrap());
        let resources = [
            json!({"resourceType": "Observation", "status": "final"}),
            json!({"resourceType": "Observation", "component": [{"code": {"text": "a"}}], "valueString": "v"}),
            json!({"resourceType": "Patient", "name": [{"family": "F"}]}),
        ];
        let exprs = [
            "Observation.component.code",
            "Observation.value.ofType(string)",
            "Patient.name | Practitioner.name",
            "Observation.status",
            "Observation.subject.where(resolve() is Patient)",
            "name.first()",
        ];
        for r in &resources {
            let ty = r["resourceType"].as_str().unwrap();
            for src in exprs {
                let e = parse(src).unwrap();
                if !e.may_select(r, ty) {
                    assert!(e.evaluate(&ctx, r).unwrap().is_empty(), "{src} on {r}");
                }
            }
        }
    }
}
