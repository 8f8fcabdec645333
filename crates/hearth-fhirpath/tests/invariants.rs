//! The R4 core invariants (constraint expressions of the StructureDefinitions)
//! must compile, and those on a resource root must evaluate without error
//! on a minimal resource. R4's own invariants apply `as()` to collections
//! (dom-3), so invariant checking runs with lenient type operators.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use hearth_fhirpath::{Context, DateTime, ModelInfo, parse};
use serde_json::json;

fn rows() -> Vec<(String, String, String)> {
    let text = std::fs::read_to_string(common::data_dir().join("invariant-expressions.tsv")).unwrap();
    text.lines()
        .map(|l| {
            let c: Vec<&str> = l.splitn(3, '\t').collect();
            (c[0].to_string(), c[1].to_string(), c[2].to_string())
        })
        .collect()
}

#[test]
fn every_r4_invariant_parses() {
    let rows = rows();
    assert!(rows.len() > 150);
    let bad: Vec<String> =
        rows.iter().filter_map(|(k, _, e)| parse(e).err().map(|err| format!("{k}: {err}"))).collect();
    assert!(bad.is_empty(), "{bad:#?}");
}

#[test]
fn resource_level_invariants_evaluate_on_minimal_resources() {
    let model = common::TableModel::load();
    // Strict paths too: every step of a core invariant must exist in the model.
    let ctx = Context::new(DateTime::parse("2024-05-01T12:00:00Z").unwrap())
        .with_model(&model)
        .lenient_type_operators(true)
        .strict_paths(true);
    let mut errors = Vec::new();
    let mut evaluated = 0;
    for (key, path, expr) in rows() {
        if path.contains('.') || !model.is_subtype_of(&path, "Resource") {
            continue;
        }
        let resource = json!({"resourceType": path, "id": "x"});
        let e = parse(&expr).unwrap();
        evaluated += 1;
        // Some invariants demand content (`rest.exists() or ...`), so false
        // is a fine answer here; an error is not.
        if let Err(err) = e.evaluate_bool(&ctx, &resource) {
            errors.push(format!("{key}: {err}"));
        }
    }
    assert!(evaluated > 50, "only {evaluated} evaluated");
    assert!(errors.is_empty(), "{errors:#?}");
}

#[test]
fn narrative_and_extension_invariants() {
    let model = common::TableModel::load();
    let ctx =
        Context::new(DateTime::parse("2024-05-01T12:00:00Z").unwrap()).with_model(&model).lenient_type_operators(true);
    // ext-1: an extension has either nested extensions or a value, not both.
    let ext1 = parse("extension.exists() != value.exists()").unwrap();
    let good = json!({"url": "http://x", "valueString": "a"});
    let bad = json!({"url": "http://x", "valueString": "a", "extension": [{"url": "y", "valueInteger": 1}]});
    assert_eq!(ext1.evaluate_bool(&ctx, &good).unwrap(), Some(true));
    assert_eq!(ext1.evaluate_bool(&ctx, &bad).unwrap(), Some(false));
    // dom-3 style: every contained resource is referenced from the container.
    let dom3 = parse(
        "contained.where((('#'+id in (%resource.descendants().reference | %resource.descendants().as(canonical) | \
         %resource.descendants().as(uri) | %resource.descendants().as(url))) or descendants().where(reference = '#')\
         .exists() or descendants().where(as(canonical) = '#').exists() or descendants().where(as(canonical) = '#')\
         .exists()).not()).trace('unmatched', id).empty()",
    )
    .unwrap();
    let obs = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "p"}], "subject": {"reference": "#p"}});
    assert_eq!(dom3.evaluate_bool(&ctx, &obs).unwrap(), Some(true));
    let orphan = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "contained": [{"resourceType": "Patient", "id": "p"}]});
    assert_eq!(dom3.evaluate_bool(&ctx, &orphan).unwrap(), Some(false));
}
