//! The JSON Patch cases of the FHIR test suite (`tests-data/fhir-patch/json-patch-tests.json`,
//! Apache-2.0, from FHIR/fhir-test-cases): every case must give its expected document or fail.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing, clippy::panic)]

use hearth_fhir::json_patch::apply;
use serde_json::Value;

#[test]
fn fhir_json_patch_cases() {
    let text = std::fs::read_to_string(concat!(
        env!("CARGO_MANIFEST_DIR"),
        "/../../tests-data/fhir-patch/json-patch-tests.json"
    ))
    .unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert_eq!(cases.len(), 16);
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["comment"].as_str().unwrap();
        let got = apply(&case["doc"], &case["patch"]);
        match (case.get("expected"), got) {
            (Some(expected), Ok(doc)) if &doc == expected => {}
            (None, Err(_)) if case.get("error").is_some() => {}
            (expected, got) => failures.push(format!("{name}: expected {expected:?}, got {got:?}")),
        }
    }
    println!("JSON Patch cases: {} of {} pass", cases.len() - failures.len(), cases.len());
    assert!(failures.is_empty(), "{failures:#?}");
}

#[test]
fn failed_patches_leave_the_input_untouched_and_name_the_operation() {
    let doc = serde_json::json!({"a": [1, 2]});
    let patch = serde_json::json!([
        {"op": "add", "path": "/a/-", "value": 3},
        {"op": "remove", "path": "/missing"}
    ]);
    let err = apply(&doc, &patch).unwrap_err();
    assert_eq!(err.operation, 1);
    assert_eq!(doc, serde_json::json!({"a": [1, 2]}));
    assert!(apply(&doc, &serde_json::json!({"op": "add"})).is_err());
    assert!(apply(&doc, &serde_json::json!([{"op": "add", "path": "a", "value": 1}])).is_err(), "pointer without /");
    assert!(apply(&doc, &serde_json::json!([{"op": "add", "path": "/a/01", "value": 1}])).is_err(), "leading zero");
    assert!(apply(&doc, &serde_json::json!([{"op": "move", "from": "/a", "path": "/a/0"}])).is_err());
    let moved = apply(&doc, &serde_json::json!([{"op": "move", "from": "/a/0", "path": "/b"}])).unwrap();
    assert_eq!(moved, serde_json::json!({"a": [2], "b": 1}));
}
