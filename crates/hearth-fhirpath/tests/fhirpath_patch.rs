//! FHIRPath Patch: the official FHIR test cases (converted to
//! `tests-data/fhirpath-patch/cases.json` by `convert.py`) and the error
//! messages.

// Test code: a panic is a failed test.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use hearth_fhirpath::patch::{self, PatchError};
use hearth_fhirpath::{DateTime, ElementInfo, ModelInfo, PatchModel};
use serde_json::{Value, json};
use std::collections::HashSet;
use std::path::PathBuf;

/// Prints a pass-rate line straight to the process's stderr, so it shows in the test run even
/// when the test passes (libtest captures only the print macros).
macro_rules! report {
    ($($arg:tt)*) => {{
        use std::io::Write as _;
        let _ = writeln!(std::io::stderr(), $($arg)*);
    }};
}

fn patch_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/fhirpath-patch")
}

/// The test `ModelInfo` (R4 element types) plus R4 cardinalities from
/// `repeating-r4.tsv`.
struct R4 {
    types: common::TableModel,
    repeating: HashSet<(String, String)>,
}

impl R4 {
    fn load() -> R4 {
        let text = std::fs::read_to_string(patch_dir().join("repeating-r4.tsv")).expect("repeating-r4.tsv");
        let repeating = text
            .lines()
            .filter(|l| !l.starts_with('#'))
            .map(|l| {
                let (parent, name) = l.split_once('\t').expect("two columns");
                (parent.to_string(), name.to_string())
            })
            .collect();
        R4 { types: common::TableModel::load(), repeating }
    }
}

impl ModelInfo for R4 {
    fn element(&self, parent: &str, element: &str) -> Option<ElementInfo<'_>> {
        self.types.element(parent, element)
    }
    fn base_type(&self, type_name: &str) -> Option<&str> {
        self.types.base_type(type_name)
    }
    fn is_type(&self, name: &str) -> bool {
        self.types.is_type(name)
    }
}

impl PatchModel for R4 {
    fn repeats(&self, parent: &str, element: &str) -> Option<bool> {
        let mut current = parent;
        for _ in 0..16 {
            if self.repeating.contains(&(current.to_string(), element.to_string())) {
                return Some(true);
            }
            current = if current.contains('.') { "BackboneElement" } else { self.base_type(current)? };
        }
        self.element(parent, element).map(|_| false)
    }
}

fn now() -> DateTime {
    DateTime::parse("2024-05-01T12:00:00Z").unwrap()
}

/// Official cases that do not pass, with the reason. Keep it short.
const KNOWN_FAILURES: &[(&str, &str)] = &[];

#[test]
fn official_cases() {
    let text = std::fs::read_to_string(patch_dir().join("cases.json")).unwrap();
    let cases: Vec<Value> = serde_json::from_str(&text).unwrap();
    assert!(cases.len() >= 30, "expected the full suite, got {} cases", cases.len());
    let model = R4::load();
    let mut passed = 0;
    let mut failures = Vec::new();
    for case in &cases {
        let name = case["name"].as_str().unwrap();
        let result = patch::apply(&case["input"], &case["patch"], &model, now());
        let outcome = match (case.get("output"), result) {
            (Some(want), Ok(got)) if &got == want => Ok(()),
            (Some(want), Ok(got)) => Err(format!("\n  want {want}\n  got  {got}")),
            (Some(_), Err(e)) => Err(format!("unexpected error: {e}")),
            (None, Err(_)) => Ok(()),
            (None, Ok(got)) => Err(format!("expected error `{}`, got {got}", case["error"])),
        };
        let known = KNOWN_FAILURES.iter().any(|(n, _)| *n == name);
        match (outcome, known) {
            (Ok(()), false) => passed += 1,
            (Ok(()), true) => failures.push(format!("{name}: passes now; remove it from KNOWN_FAILURES")),
            (Err(_), true) => {}
            (Err(why), false) => failures.push(format!("{name}: {why}")),
        }
    }
    let errors = cases.iter().filter(|c| c.get("error").is_some()).count();
    report!(
        "FHIRPath Patch: {passed}/{} official cases pass ({} with an expected output, {errors} expecting an error; {} known failures)",
        cases.len(),
        cases.len() - errors,
        KNOWN_FAILURES.len()
    );
    assert!(failures.is_empty(), "{} failing cases:\n{}", failures.len(), failures.join("\n"));
}

fn operation(parts: Value) -> Value {
    json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": parts}]})
}

fn run(resource: &Value, parts: Value) -> Result<Value, PatchError> {
    patch::apply(resource, &operation(parts), &R4::load(), now())
}

fn patient() -> Value {
    json!({"resourceType": "Patient", "name": [{"family": "A"}, {"family": "B"}], "birthDate": "1920-01-01"})
}

#[test]
fn bad_operation_type_is_named() {
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "upsert"},
            {"name": "path", "valueString": "Patient.birthDate"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.operation, Some(0));
    assert!(err.message.contains("unknown operation type `upsert`"), "{err}");
    assert_eq!(
        err.to_string(),
        "FHIRPath Patch operation 0: unknown operation type `upsert` (expected add, insert, delete, replace or move)"
    );
}

#[test]
fn missing_path_is_an_error() {
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "delete"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.operation, Some(0));
    assert_eq!(err.message, "delete: the operation has no `path` part");
}

#[test]
fn replace_needs_exactly_one_match() {
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.name.family"},
            {"name": "value", "valueString": "C"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "replace: path `Patient.name.family` matches 2 elements; it must select exactly one");
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.gender"},
            {"name": "value", "valueCode": "male"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "replace: no content found at `Patient.gender`");
}

#[test]
fn the_operation_index_is_reported() {
    let patch = json!({"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.gender"}]},
        {"name": "operation", "part": [
            {"name": "type", "valueCode": "add"}, {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "birthDate"}, {"name": "value", "valueDate": "1930-01-01"}]}
    ]});
    let err = patch::apply(&patient(), &patch, &R4::load(), now()).unwrap_err();
    assert_eq!(err.operation, Some(1));
    assert_eq!(err.message, "add: `birthDate` already has a value and does not repeat; use replace");
}

#[test]
fn only_parameters_patches_are_accepted() {
    let model = R4::load();
    let err = patch::apply(&patient(), &json!([{"op": "remove", "path": "/birthDate"}]), &model, now()).unwrap_err();
    assert_eq!(err.operation, None);
    let err = patch::apply(&patient(), &json!({"resourceType": "Patient"}), &model, now()).unwrap_err();
    assert_eq!(err.message, "the patch must be a Parameters resource, not Patient");
    let err = patch::apply(
        &patient(),
        &json!({"resourceType": "Parameters", "parameter": [{"name": "op", "valueString": "x"}]}),
        &model,
        now(),
    )
    .unwrap_err();
    assert_eq!(err.to_string(), "FHIRPath Patch operation 0: parameter `op` is not an `operation`");
}

#[test]
fn misplaced_and_missing_parts() {
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.birthDate"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "replace: the operation needs a `value` part");
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.birthDate"},
            {"name": "index", "valueInteger": 0}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "delete: a `index` part does not belong to this operation");
}

#[test]
fn delete_of_nothing_is_not_an_error_but_of_two_is() {
    let p = patient();
    let out = run(
        &p,
        json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.gender"}
        ]),
    )
    .unwrap();
    assert_eq!(out, p);
    let err = run(
        &p,
        json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.name"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "delete: path `Patient.name` matches 2 elements; only one can be deleted");
}

#[test]
fn types_are_checked() {
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Patient.birthDate"},
            {"name": "value", "valueBoolean": true}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "replace: `birthDate` is a date; a boolean value does not fit");
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient"},
            {"name": "name", "valueString": "birthdate"},
            {"name": "value", "valueDate": "1930-01-01"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "add: `Patient` has no element `birthdate`");
}

#[test]
fn insert_into_an_empty_list_and_move() {
    let p = json!({"resourceType": "Patient"});
    let out = run(
        &p,
        json!([
            {"name": "type", "valueCode": "insert"},
            {"name": "path", "valueString": "Patient.identifier"},
            {"name": "value", "valueIdentifier": {"value": "1"}},
            {"name": "index", "valueInteger": 0}
        ]),
    )
    .unwrap();
    assert_eq!(out, json!({"resourceType": "Patient", "identifier": [{"value": "1"}]}));
    let err = run(
        &p,
        json!([
            {"name": "type", "valueCode": "insert"},
            {"name": "path", "valueString": "Patient.identifier"},
            {"name": "value", "valueIdentifier": {"value": "1"}},
            {"name": "index", "valueInteger": 1}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "insert: index 1 is beyond the end of `identifier` (length 0)");
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "move"},
            {"name": "path", "valueString": "Patient.name"},
            {"name": "source", "valueInteger": 0},
            {"name": "destination", "valueInteger": 2}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "move: source 0 and destination 2 must both be below the length of `name` (2)");
    let err = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "move"},
            {"name": "path", "valueString": "Patient.name.where(family = 'A')"},
            {"name": "source", "valueInteger": 0},
            {"name": "destination", "valueInteger": 0}
        ]),
    )
    .unwrap_err();
    assert!(err.message.contains("must select one whole list"), "{err}");
}

#[test]
fn primitives_keep_their_extensions_aligned() {
    let p = json!({"resourceType": "Patient", "name": [{
        "given": ["A", "B", "C"],
        "_given": [null, {"extension": [{"url": "http://x", "valueString": "b"}]}, null]
    }]});
    let out = run(
        &p,
        json!([
            {"name": "type", "valueCode": "move"},
            {"name": "path", "valueString": "Patient.name.given"},
            {"name": "source", "valueInteger": 1},
            {"name": "destination", "valueInteger": 2}
        ]),
    )
    .unwrap();
    assert_eq!(out["name"][0]["given"], json!(["A", "C", "B"]));
    assert_eq!(out["name"][0]["_given"], json!([null, null, {"extension": [{"url": "http://x", "valueString": "b"}]}]));
    let out = run(
        &p,
        json!([
            {"name": "type", "valueCode": "delete"},
            {"name": "path", "valueString": "Patient.name.given[1]"}
        ]),
    )
    .unwrap();
    assert_eq!(out["name"][0], json!({"given": ["A", "C"]}));
    // Adding an extension to a primitive goes into its `_name` sibling.
    let out = run(
        &patient(),
        json!([
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Patient.birthDate"},
            {"name": "name", "valueString": "extension"},
            {"name": "value", "part": [
                {"name": "url", "valueUri": "http://hl7.org/fhir/StructureDefinition/patient-birthTime"},
                {"name": "value", "valueDateTime": "1920-01-01T10:00:00Z"}]}
        ]),
    )
    .unwrap();
    assert_eq!(
        out["_birthDate"],
        json!({"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
            "valueDateTime": "1920-01-01T10:00:00Z"}]})
    );
}

#[test]
fn replace_can_change_the_type_of_a_choice() {
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueQuantity": {"value": 1, "unit": "mg"}});
    let out = run(
        &obs,
        json!([
            {"name": "type", "valueCode": "replace"},
            {"name": "path", "valueString": "Observation.value"},
            {"name": "value", "valueString": "trace"}
        ]),
    )
    .unwrap();
    assert_eq!(out.get("valueQuantity"), None);
    assert_eq!(out["valueString"], "trace");
    let err = run(
        &obs,
        json!([
            {"name": "type", "valueCode": "add"},
            {"name": "path", "valueString": "Observation"},
            {"name": "name", "valueString": "value"},
            {"name": "value", "valueString": "trace"}
        ]),
    )
    .unwrap_err();
    assert_eq!(err.message, "add: `value` already has a value and does not repeat; use replace");
}
