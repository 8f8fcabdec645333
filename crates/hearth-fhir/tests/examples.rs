//! Validates every vendored official R4 example (`tests-data/r4-examples`, see its README).
//!
//! All must pass except the short list below, each of which breaks the spec itself. The test fails
//! if any other example is rejected, or if a listed one starts passing or fails differently.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::collections::BTreeMap;
use std::path::PathBuf;

use hearth_fhir::{IssueCode, Model};

/// (file, first issue expression, first issue code, why the example is invalid per the spec).
const KNOWN_INVALID: &[(&str, &str, IssueCode, &str)] = &[
    (
        "Questionnaire-qs1.json",
        "Questionnaire.item[0].item[0].linkId",
        IssueCode::Required,
        "nested items have no linkId; Questionnaire.item.linkId is 1..1",
    ),
    (
        "SearchParameter-questionnaireresponse-extensions-QuestionnaireResponse-item-subject.json",
        "SearchParameter.id",
        IssueCode::Value,
        "the id is 67 characters; the id type allows at most 64",
    ),
    (
        "SearchParameter-valueset-extensions-ValueSet-author.json",
        "SearchParameter.base",
        IssueCode::Required,
        "no base; SearchParameter.base is 1..*",
    ),
];

fn examples_dir() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/r4-examples")
}

#[test]
fn official_examples_validate() {
    let model = Model::r4().unwrap();
    let mut files: Vec<PathBuf> = std::fs::read_dir(examples_dir())
        .expect("tests-data/r4-examples exists")
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 290, "expected the vendored examples");

    let known: BTreeMap<&str, _> = KNOWN_INVALID.iter().map(|k| (k.0, k)).collect();
    let mut types = BTreeMap::<String, usize>::new();
    let (mut passed, mut rejected) = (0, 0);
    let mut failures = Vec::new();
    for path in &files {
        let name = path.file_name().unwrap().to_str().unwrap();
        let text = std::fs::read_to_string(path).unwrap();
        let value: serde_json::Value = serde_json::from_str(&text).unwrap();
        let rt = value["resourceType"].as_str().unwrap_or("?").to_owned();
        *types.entry(rt).or_default() += 1;
        let issues = model.validate(&value);
        match (known.get(name), issues.first()) {
            (None, None) => passed += 1,
            (None, Some(_)) => {
                let list: Vec<String> = issues.iter().map(ToString::to_string).collect();
                failures.push(format!("{name} rejected:\n    {}", list.join("\n    ")));
            }
            (Some(k), None) => failures
                .push(format!("{name} is listed as invalid ({}) but now passes; remove it from KNOWN_INVALID", k.3)),
            (Some(k), Some(first)) => {
                rejected += 1;
                if first.expression != k.1 || first.code != k.2 {
                    failures.push(format!("{name} fails differently than listed: {first}"));
                }
            }
        }
    }
    println!(
        "r4 examples: {} files of {} resource types; {passed} valid, {rejected} rejected as known-invalid",
        files.len(),
        types.len()
    );
    assert_eq!(rejected + failures.len() + passed, files.len());
    assert!(failures.is_empty(), "{}", failures.join("\n"));
    assert_eq!(rejected, KNOWN_INVALID.len(), "a listed example is missing");
}
