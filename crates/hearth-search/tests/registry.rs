//! The registry: every official R4 parameter is loaded with a compiled expression, applies to the
//! right types, and API-created SearchParameters are validated.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

mod common;

use hearth_search::{Modifier, ParamType, Prefix, Registry};
use serde_json::{Value, json};

#[test]
fn every_r4_parameter_is_loaded_with_a_compiled_expression() {
    let reg = common::registry();
    let all: Vec<_> = reg.all().collect();
    assert_eq!(all.len(), 1375, "official R4 parameters");
    let without: Vec<&str> = all.iter().filter(|p| p.expression.is_none()).map(|p| p.code.as_str()).collect();
    let mut without_sorted = without.clone();
    without_sorted.sort_unstable();
    assert_eq!(without_sorted, ["_content", "_query", "_text"], "only these have no expression in R4");
    // Every expression compiled (add() refuses otherwise); the sources are the official ones.
    let compiled = all.iter().filter(|p| p.expression.is_some()).count();
    println!("search parameters: {} registered, {compiled} expressions compiled", all.len());
    assert_eq!(compiled, 1372);
    for p in &all {
        if p.kind == ParamType::Composite {
            assert!(p.components.len() >= 2, "{}", p.url);
            for c in &p.components {
                let target = reg.by_url(&c.definition).unwrap_or_else(|| panic!("{}: {}", p.url, c.definition));
                assert_eq!(target.kind, c.kind);
                assert!(!c.expression.source().is_empty());
            }
        }
        if p.kind == ParamType::Reference {
            assert!(p.chainable);
        }
        assert_eq!(p.kind.takes_prefix(), !p.comparators.is_empty(), "{}", p.url);
    }
}

#[test]
fn registry_and_query_are_shareable_across_threads() {
    fn shareable<T: Send + Sync + 'static>() {}
    shareable::<Registry>();
    shareable::<hearth_search::SearchQuery>();
    shareable::<hearth_search::IndexEntry>();
    assert!(format!("{:?}", common::registry()).len() < 100, "Debug does not dump the registry");
}

#[test]
fn resource_level_parameters_apply_to_every_type() {
    let reg = common::registry();
    assert_eq!(reg.resource_types().len(), 147);
    for ty in reg.resource_types() {
        for code in ["_id", "_lastUpdated", "_tag", "_profile", "_security", "_source", "_content", "_query"] {
            assert!(reg.get(ty, code).is_some(), "{ty} lacks {code}");
        }
    }
    // `_text` is a DomainResource parameter: not on Bundle, Binary, Parameters.
    assert!(reg.get("Patient", "_text").is_some());
    for ty in ["Bundle", "Binary", "Parameters"] {
        assert!(reg.get(ty, "_text").is_none(), "{ty}");
    }
    assert_eq!(reg.get("Patient", "_id").unwrap().kind, ParamType::Token);
    assert_eq!(reg.get("Patient", "_lastUpdated").unwrap().kind, ParamType::Date);
    assert_eq!(reg.get("Patient", "_profile").unwrap().kind, ParamType::Uri);
    assert_eq!(reg.get("Patient", "_text").unwrap().kind, ParamType::String);
}

#[test]
fn parameters_carry_type_targets_modifiers_and_comparators() {
    let reg = common::registry();
    let name = reg.get("Patient", "name").unwrap();
    assert_eq!((name.kind, name.url.as_str()), (ParamType::String, "http://hl7.org/fhir/SearchParameter/Patient-name"));
    assert_eq!(name.modifiers, [Modifier::Missing, Modifier::Exact, Modifier::Contains]);
    assert!(name.comparators.is_empty());

    let subject = reg.get("Observation", "subject").unwrap();
    assert_eq!(subject.kind, ParamType::Reference);
    let mut targets = subject.targets.clone();
    targets.sort();
    assert_eq!(targets, ["Device", "Group", "Location", "Patient"]);
    assert!(subject.allows_type_modifier("Patient"));
    assert!(!subject.allows_type_modifier("Practitioner"));
    assert!(subject.allows(Modifier::Identifier));
    assert!(!subject.allows(Modifier::Exact));

    let code = reg.get("Observation", "code").unwrap();
    assert_eq!(code.base.len(), 14, "the shared clinical `code` parameter");
    for m in [
        Modifier::Not,
        Modifier::Text,
        Modifier::In,
        Modifier::NotIn,
        Modifier::Above,
        Modifier::Below,
        Modifier::OfType,
    ] {
        assert!(code.allows(m), "{m}");
    }
    let vq = reg.get("Observation", "value-quantity").unwrap();
    assert_eq!(vq.comparators, Prefix::ALL);
    let cvq = reg.get("Observation", "code-value-quantity").unwrap();
    assert_eq!(cvq.kind, ParamType::Composite);
    let parts: Vec<(&str, ParamType)> = cvq.components.iter().map(|c| (c.code.as_str(), c.kind)).collect();
    assert_eq!(parts, [("code", ParamType::Token), ("value-quantity", ParamType::Quantity)]);
    // The corrected erratum: component types fit their expressions.
    let rel = reg.get("DocumentReference", "relationship").unwrap();
    let parts: Vec<(&str, ParamType)> = rel.components.iter().map(|c| (c.expression.source(), c.kind)).collect();
    assert_eq!(parts, [("code", ParamType::Token), ("target", ParamType::Reference)]);

    // Open target list (`Resource`): any type.
    let instantiates = reg.get("RequestGroup", "instantiates-canonical").unwrap();
    assert!(instantiates.targets.is_empty() && instantiates.allows_type_modifier("PlanDefinition"));

    let near = reg.get("Location", "near").unwrap();
    assert_eq!(near.kind, ParamType::Special);
    // CapabilityStatement listing: sorted by code.
    let codes: Vec<&str> = reg.params("Patient").map(|p| p.code.as_str()).collect();
    let mut sorted = codes.clone();
    sorted.sort_unstable();
    assert_eq!(codes, sorted);
    assert!(codes.len() > 30, "{}", codes.len());
    assert_eq!(reg.params("NoSuchType").count(), 0);
}

fn custom(code: &str, base: &[&str], ty: &str, expression: &str) -> Value {
    json!({"resourceType": "SearchParameter", "url": format!("http://example.org/sp/{code}"), "name": code,
        "status": "active", "description": "test", "code": code, "base": base, "type": ty, "expression": expression})
}

#[test]
fn custom_parameters_from_the_vector_fixtures_are_accepted() {
    let mut reg = common::own_registry();
    for f in ["searchparameter-patient-multiplebirth.json", "searchparameter-patient-name-use.json"] {
        reg.add(&common::fixture(f)).unwrap();
    }
    assert_eq!(reg.get("Patient", "multiplebirth").unwrap().kind, ParamType::Number);
    assert_eq!(reg.get("Patient", "name-use").unwrap().kind, ParamType::Token);
    assert!(reg.get("Practitioner", "name-use").is_none());
    assert_eq!(
        common::registry().get("Patient", "multiplebirth").map(|p| p.code.clone()),
        None,
        "the shared one is untouched"
    );
}

#[test]
fn add_replaces_by_url_and_remove_unregisters() {
    let mut reg = common::own_registry();
    reg.add(&custom("nickname", &["Patient", "Person"], "string", "Patient.name.where(use='nickname').given")).unwrap();
    assert!(reg.get("Person", "nickname").is_some());
    // Same URL, new definition (an update of the SearchParameter resource): replaced, old bases dropped.
    reg.add(&custom("nickname", &["Patient"], "string", "Patient.name.given")).unwrap();
    assert!(reg.get("Person", "nickname").is_none());
    assert_eq!(reg.get("Patient", "nickname").unwrap().expression.as_ref().unwrap().source(), "Patient.name.given");
    assert!(reg.remove("http://example.org/sp/nickname"));
    assert!(reg.get("Patient", "nickname").is_none());
    assert!(!reg.remove("http://example.org/sp/nickname"));
    // An everywhere parameter.
    reg.add(&custom("any-ext", &["Resource"], "uri", "Resource.meta.source")).unwrap();
    assert!(reg.get("Bundle", "any-ext").is_some() && reg.get("Patient", "any-ext").is_some());
    // A custom composite over registered parameters.
    let mut composite = custom("name-birth", &["Patient"], "composite", "Patient");
    composite["component"] = json!([
        {"definition": "http://hl7.org/fhir/SearchParameter/individual-given", "expression": "name.given"},
        {"definition": "http://hl7.org/fhir/SearchParameter/individual-birthdate", "expression": "birthDate"}]);
    reg.add(&composite).unwrap();
    let kinds: Vec<ParamType> = reg.get("Patient", "name-birth").unwrap().components.iter().map(|c| c.kind).collect();
    assert_eq!(kinds, [ParamType::String, ParamType::Date]);
}

#[test]
fn invalid_search_parameters_are_refused_with_a_reason() {
    let reg = common::own_registry();
    let check = |mut r: Value, edit: &dyn Fn(&mut Value), want: &str| {
        edit(&mut r);
        let mut reg: Registry = reg.clone();
        let err = reg.add(&r).expect_err(want);
        assert!(err.message.contains(want), "{err} should mention {want}");
    };
    let ok = custom("x-code", &["Patient"], "token", "Patient.gender");
    check(ok.clone(), &|r| r["resourceType"] = json!("Patient"), "not a SearchParameter");
    check(ok.clone(), &|r| r.as_object_mut().unwrap().remove("url").map(drop).unwrap(), "`url` is required");
    check(ok.clone(), &|r| r.as_object_mut().unwrap().remove("code").map(drop).unwrap(), "`code` is required");
    check(ok.clone(), &|r| r["code"] = json!("a.b"), "not a valid parameter name");
    check(ok.clone(), &|r| r["code"] = json!("a b"), "not a valid parameter name");
    check(ok.clone(), &|r| r["code"] = json!("_count"), "reserved");
    check(ok.clone(), &|r| r["code"] = json!("_has"), "reserved");
    check(ok.clone(), &|r| r["base"] = json!([]), "`base` is required");
    check(ok.clone(), &|r| r["base"] = json!(["Patientx"]), "not a resource type");
    check(ok.clone(), &|r| r["base"] = json!("Patient"), "must be an array");
    check(ok.clone(), &|r| r["type"] = json!("text"), "unknown `type`");
    check(
        ok.clone(),
        &|r| r.as_object_mut().unwrap().remove("expression").map(drop).unwrap(),
        "`expression` is required",
    );
    check(ok.clone(), &|r| r["expression"] = json!("Patient.name.where("), "does not compile");
    check(ok.clone(), &|r| r["expression"] = json!("Patient.nosuchfunction()"), "does not compile");
    check(ok.clone(), &|r| r["target"] = json!(["Nope"]), "`target` `Nope`");
    let quantity = custom("x-qty", &["Observation"], "quantity", "Observation.value.as(Quantity)");
    check(quantity, &|r| r["comparator"] = json!(["eq", "xx"]), "unknown comparator `xx`");
    check(ok.clone(), &|r| r["code"] = json!("gender"), "already defined for Patient");
    let mut composite = custom("bad-composite", &["Patient"], "composite", "Patient");
    composite["component"] = json!([{"definition": "http://example.org/none", "expression": "x"}, {"definition": "http://example.org/none2", "expression": "y"}]);
    check(composite.clone(), &|_| {}, "is not a registered parameter");
    check(composite, &|r| r["component"] = json!([]), "at least two");
    // Errors name the parameter.
    let mut r2 = reg.clone();
    let err = r2.add(&custom("x", &["Patient"], "token", "(")).unwrap_err();
    assert_eq!(err.parameter, "http://example.org/sp/x");
    assert!(err.to_string().starts_with("SearchParameter http://example.org/sp/x: "));
}

#[test]
fn comparators_listed_on_a_definition_are_honoured() {
    let mut reg = common::own_registry();
    let mut r = custom("weight-ish", &["Observation"], "quantity", "Observation.value.as(Quantity)");
    r["comparator"] = json!(["eq", "gt"]);
    r["modifier"] = json!(["missing"]);
    reg.add(&r).unwrap();
    let p = reg.get("Observation", "weight-ish").unwrap();
    assert_eq!(p.comparators, [Prefix::Eq, Prefix::Gt]);
    assert_eq!(p.modifiers, [Modifier::Missing]);
    r["comparator"] = json!(["gt", "eq", "gt"]);
    reg.add(&r).unwrap();
    assert_eq!(reg.get("Observation", "weight-ish").unwrap().comparators, [Prefix::Eq, Prefix::Gt], "sorted, distinct");
}
