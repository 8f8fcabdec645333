//! The FHIRPath lexer, parser and evaluator: the input is an expression, evaluated over a fixed
//! Observation. Parsing and evaluation may fail; they must not panic or hang.
#![no_main]

use std::sync::OnceLock;

use hearth_fhirpath::{Context, DateTime};
use libfuzzer_sys::fuzz_target;

fn resource() -> &'static serde_json::Value {
    static RESOURCE: OnceLock<serde_json::Value> = OnceLock::new();
    RESOURCE.get_or_init(|| {
        serde_json::json!({
            "resourceType": "Observation", "id": "o1", "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4", "display": "Heart rate"}]},
            "subject": {"reference": "Patient/p1"},
            "effectiveDateTime": "2024-05-01T10:00:00Z",
            "valueQuantity": {"value": 72.5, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"},
            "component": [{"code": {"text": "a"}, "valueString": "x"}, {"code": {"text": "b"}, "valueInteger": 3}]
        })
    })
}

fuzz_target!(|data: &[u8]| {
    let Ok(src) = std::str::from_utf8(data) else { return };
    let Ok(expr) = hearth_fhirpath::parse(src) else { return };
    let Some(now) = DateTime::parse("2024-05-01T22:30:00.000+02:00") else { return };
    let _ = expr.evaluate(&Context::new(now), resource());
});
