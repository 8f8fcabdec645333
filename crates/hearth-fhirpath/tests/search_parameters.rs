//! Every FHIRPath expression of the R4 SearchParameters must compile, and
//! must evaluate without error on a resource of each of its base types.
//! Focused tests cover each expression style search indexing relies on.

// Test code: a panic is a failed test (clippy.toml allows this only inside
// #[test] functions, not in the helpers around them).
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use hearth_fhirpath::{Context, DateTime, Item, Resolver, parse};
use serde_json::{Value, json};

fn now() -> DateTime {
    DateTime::parse("2024-05-01T12:00:00Z").unwrap()
}

fn rows() -> Vec<(String, String, Vec<String>, String)> {
    let text = std::fs::read_to_string(common::data_dir().join("search-parameter-expressions.tsv"))
        .expect("search-parameter-expressions.tsv");
    text.lines()
        .map(|l| {
            let cols: Vec<&str> = l.split('\t').collect();
            assert_eq!(cols.len(), 4, "bad line {l}");
            (
                cols[0].to_string(),
                cols[1].to_string(),
                cols[2].split(',').map(str::to_string).collect(),
                cols[3].to_string(),
            )
        })
        .collect()
}

#[test]
fn every_r4_search_parameter_expression_parses() {
    let rows = rows();
    assert!(rows.len() > 1300, "expected the full R4 list, got {}", rows.len());
    let failures: Vec<String> =
        rows.iter().filter_map(|(id, _, _, expr)| parse(expr).err().map(|e| format!("{id}: {e}"))).collect();
    println!("search parameters: {}/{} expressions parse", rows.len() - failures.len(), rows.len());
    assert!(failures.is_empty(), "unparseable: {failures:#?}");
}

#[test]
fn every_r4_search_parameter_expression_evaluates_on_its_bases() {
    let model = common::TableModel::load();
    // Strict paths as well: every step must exist in the R4 model.
    let ctx = Context::new(now()).with_model(&model).lenient_type_operators(true).strict_paths(true);
    let mut failures = Vec::new();
    let mut runs = 0;
    for (id, _, bases, expr) in rows() {
        let e = parse(&expr).unwrap();
        for base in bases {
            let resource = json!({"resourceType": base, "id": "x"});
            runs += 1;
            if let Err(err) = e.evaluate(&ctx, &resource) {
                failures.push(format!("{id} on {base}: {err}"));
            }
        }
    }
    assert!(runs > 1300);
    assert!(failures.is_empty(), "evaluation errors: {failures:#?}");
}

fn typed_ctx(model: &common::TableModel) -> Context<'_> {
    Context::new(now()).with_model(model).lenient_type_operators(true)
}

fn strings(out: &[Item<'_>]) -> Vec<String> {
    out.iter()
        .map(|i| match i.to_json() {
            Value::String(s) => s,
            other => other.to_string(),
        })
        .collect()
}

#[test]
fn choice_element_with_as() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let obs = json!({"resourceType": "Observation", "status": "final",
        "valueQuantity": {"value": 5.4, "unit": "mmol/L", "system": "http://unitsofmeasure.org", "code": "mmol/L"}});
    let e = parse("(Observation.value as Quantity)").unwrap();
    let out = e.evaluate(&ctx, &obs).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to_json()["code"], "mmol/L");
    let e = parse("(Observation.value as CodeableConcept)").unwrap();
    assert!(e.evaluate(&ctx, &obs).unwrap().is_empty());
    let e = parse("Observation.value.as(Quantity).value").unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &obs).unwrap()), vec!["5.4"]);

    let cond = json!({"resourceType": "Condition", "onsetDateTime": "2020-01-02T03:04:05Z"});
    let e = parse("(Condition.onset as dateTime) | Condition.onset.as(Period)").unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &cond).unwrap()), vec!["2020-01-02T03:04:05Z"]);
}

#[test]
fn repeating_choice_with_lenient_as() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let lib = json!({"resourceType": "Library", "useContext": [
        {"code": {"code": "age"}, "valueQuantity": {"value": 3}},
        {"code": {"code": "focus"}, "valueCodeableConcept": {"text": "x"}},
        {"code": {"code": "age"}, "valueRange": {"low": {"value": 1}}}]});
    let e = parse("(Library.useContext.value as Quantity) | (Library.useContext.value as Range)").unwrap();
    assert_eq!(e.evaluate(&ctx, &lib).unwrap().len(), 2);
    // Strict mode follows the specification: `as` on many items is an error.
    let strict = Context::new(now()).with_model(&model);
    assert!(e.evaluate(&strict, &lib).is_err());
}

#[test]
fn where_filters_and_unions() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let p = json!({"resourceType": "Patient",
        "name": [{"use": "official", "family": "Doe"}, {"use": "nickname", "family": "Jo"}],
        "telecom": [{"system": "phone", "value": "555"}, {"system": "email", "value": "a@b.c"}]});
    let e = parse("Patient.name.where(use='official').family").unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &p).unwrap()), vec!["Doe"]);
    let e = parse("Patient.telecom.where(system='phone') | Person.telecom.where(system='phone')").unwrap();
    assert_eq!(e.evaluate(&ctx, &p).unwrap().len(), 1);
    let e = parse("Patient.name.family | Patient.name.family").unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &p).unwrap()), vec!["Doe", "Jo"]);
}

#[test]
fn indexer_into_bundle() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let b = json!({"resourceType": "Bundle", "type": "document", "entry": [
        {"resource": {"resourceType": "Composition", "id": "c"}},
        {"resource": {"resourceType": "Patient", "id": "p"}}]});
    let e = parse("Bundle.entry[0].resource").unwrap();
    let out = e.evaluate(&ctx, &b).unwrap();
    assert_eq!(out.len(), 1);
    assert_eq!(out[0].to_json()["id"], "c");
    assert!(parse("Bundle.entry[0].resource is Composition").unwrap().evaluate_bool(&ctx, &b).unwrap().unwrap());
}

struct OneResolver(Value);

impl Resolver for OneResolver {
    fn resolve(&self, reference: &str) -> Option<&Value> {
        (reference == "Patient/1").then_some(&self.0)
    }
}

#[test]
fn resolve_is_type_for_references() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let obs = json!({"resourceType": "Observation",
        "subject": {"reference": "Patient/1"},
        "performer": [{"reference": "Practitioner/2"}, {"reference": "#org"}],
        "contained": [{"resourceType": "Organization", "id": "org", "name": "Lab"}]});
    // Without a resolver the reference's type still answers `is`.
    let e = parse("Observation.subject.where(resolve() is Patient)").unwrap();
    assert_eq!(e.evaluate(&ctx, &obs).unwrap().len(), 1);
    let e = parse("Observation.subject.where(resolve() is Group)").unwrap();
    assert!(e.evaluate(&ctx, &obs).unwrap().is_empty());
    // Contained references resolve inside the resource.
    let e = parse("Observation.performer.resolve().ofType(Organization).name").unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &obs).unwrap()), vec!["Lab"]);
    // A resolver supplies real targets.
    let resolver = OneResolver(json!({"resourceType": "Patient", "id": "1", "gender": "female"}));
    let ctx = typed_ctx(&model).with_resolver(&resolver);
    let e = parse("Observation.subject.resolve().gender").unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &obs).unwrap()), vec!["female"]);
}

#[test]
fn extension_by_url_on_elements_and_primitives() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let p = json!({"resourceType": "Patient",
        "extension": [{"url": "http://example.org/race", "valueCode": "x"}],
        "birthDate": "1970-01-01",
        "_birthDate": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/patient-birthTime",
                                      "valueDateTime": "1970-01-01T10:00:00Z"}]}});
    let e = parse("Patient.extension('http://example.org/race').value").unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &p).unwrap()), vec!["x"]);
    let e = parse("Patient.birthDate.extension('http://hl7.org/fhir/StructureDefinition/patient-birthTime').value")
        .unwrap();
    assert_eq!(strings(&e.evaluate(&ctx, &p).unwrap()), vec!["1970-01-01T10:00:00Z"]);
    let e = parse("Patient.birthDate is date").unwrap();
    assert_eq!(e.evaluate_bool(&ctx, &p).unwrap(), Some(true));
    let e = parse("Patient.birthDate < @2000-01-01").unwrap();
    assert_eq!(e.evaluate_bool(&ctx, &p).unwrap(), Some(true));
}

#[test]
fn of_type_and_boolean_search_expressions() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let p = json!({"resourceType": "Patient", "deceasedDateTime": "2020-01-01"});
    let e = parse("Patient.deceased.exists() and Patient.deceased != false").unwrap();
    assert_eq!(e.evaluate_bool(&ctx, &p).unwrap(), Some(true));
    let alive = json!({"resourceType": "Patient", "deceasedBoolean": false});
    assert_eq!(e.evaluate_bool(&ctx, &alive).unwrap(), Some(false));
    let e = parse("Patient.deceased.ofType(dateTime)").unwrap();
    assert_eq!(e.evaluate(&ctx, &p).unwrap().len(), 1);
    let e = parse("Patient.deceased.ofType(boolean)").unwrap();
    assert!(e.evaluate(&ctx, &p).unwrap().is_empty());
}

#[test]
fn compile_once_evaluate_many() {
    let model = common::TableModel::load();
    let ctx = typed_ctx(&model);
    let e = parse("Patient.name.where(use = 'official').given.first()").unwrap();
    for i in 0..1000 {
        let p = json!({"resourceType": "Patient", "name": [{"use": "official", "given": [format!("n{i}")]}]});
        let out = e.evaluate(&ctx, &p).unwrap();
        assert_eq!(strings(&out), vec![format!("n{i}")]);
    }
}

#[test]
fn strict_paths_reject_impossible_steps() {
    let model = common::TableModel::load();
    let strict = Context::new(now()).with_model(&model).strict_paths(true);
    let lenient = Context::new(now()).with_model(&model);
    let p = json!({"resourceType": "Patient", "name": [{"given": ["a"]}]});
    let obs = json!({"resourceType": "Observation", "valueQuantity": {"value": 1, "unit": "kg"}});
    for (src, input) in
        [("name.given1", &p), ("Observation.valueQuantity.unit", &obs), ("Observation.valueQuantity.exists()", &obs)]
    {
        let e = parse(src).unwrap();
        assert!(e.evaluate(&strict, input).is_err(), "{src} should fail in strict mode");
        assert!(e.evaluate(&lenient, input).is_ok(), "{src} should be empty by default");
    }
    for (src, input) in [
        ("Patient.name.given", &p),
        ("Patient.name.given.extension.url", &p),
        ("Patient.contact.name.family", &p),
        ("Observation.value.unit", &obs),
        ("Observation.component.value.code", &obs),
        ("Encounter.class | Patient.name.given", &p),
    ] {
        let e = parse(src).unwrap();
        assert!(e.evaluate(&strict, input).is_ok(), "{src} is a valid path");
    }
}
