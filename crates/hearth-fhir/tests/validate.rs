//! One test per validation rule, asserting the exact expression and code of each issue.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]

use std::sync::OnceLock;

use hearth_fhir::{Issue, IssueCode, Model, Severity};
use serde_json::{Value, json};

fn model() -> &'static Model {
    static MODEL: OnceLock<Model> = OnceLock::new();
    MODEL.get_or_init(|| Model::r4().unwrap())
}

/// `(expression, code)` of every issue.
fn issues(resource: Value) -> Vec<(String, IssueCode)> {
    model().validate(&resource).into_iter().map(|i| (i.expression, i.code)).collect()
}

fn one(expression: &str, code: IssueCode) -> Vec<(String, IssueCode)> {
    vec![(expression.to_owned(), code)]
}

fn valid(resource: Value) {
    let found = model().validate(&resource);
    assert!(found.is_empty(), "unexpected issues: {found:#?}");
}

// --- root -------------------------------------------------------------------------------------

#[test]
fn root_must_be_an_object() {
    for v in [json!([]), json!("Patient"), json!(null), json!(1)] {
        let found = model().validate(&v);
        assert_eq!(found.len(), 1);
        assert_eq!(found[0].severity, Severity::Fatal);
        assert_eq!(found[0].code, IssueCode::Invalid);
        assert_eq!(found[0].expression, "");
    }
}

#[test]
fn root_needs_a_string_resource_type() {
    assert_eq!(issues(json!({"id": "a"})), one("resourceType", IssueCode::Invalid));
    assert_eq!(issues(json!({"resourceType": 1})), one("resourceType", IssueCode::Invalid));
    let found = model().validate(&json!({"resourceType": "Patient2"}));
    assert_eq!(found[0].severity, Severity::Fatal);
    assert_eq!(found[0].code, IssueCode::NotSupported);
    assert_eq!(found[0].expression, "resourceType");
}

#[test]
fn root_resource_type_must_be_concrete_resource() {
    assert_eq!(issues(json!({"resourceType": "DomainResource"})), one("resourceType", IssueCode::Invalid));
    assert_eq!(issues(json!({"resourceType": "Resource"})), one("resourceType", IssueCode::Invalid));
    assert_eq!(issues(json!({"resourceType": "HumanName"})), one("resourceType", IssueCode::NotSupported));
    assert_eq!(issues(json!({"resourceType": "patient"})), one("resourceType", IssueCode::NotSupported));
}

#[test]
fn minimal_resources_are_valid() {
    valid(json!({"resourceType": "Patient"}));
    valid(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}}));
    valid(json!({
        "resourceType": "Patient",
        "id": "pat-1.A",
        "meta": {"lastUpdated": "2024-01-02T03:04:05.678Z", "versionId": "1"},
        "text": {"status": "generated", "div": "<div xmlns=\"http://www.w3.org/1999/xhtml\">x</div>"},
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]}],
        "birthDate": "1970-01-01",
        "deceasedBoolean": false,
        "multipleBirthInteger": 2,
        "contact": [{"name": {"text": "Mom"}, "telecom": [{"system": "phone", "value": "1"}]}],
        "managingOrganization": {"reference": "Organization/1"}
    }));
}

// --- unknown elements -------------------------------------------------------------------------

#[test]
fn unknown_elements_are_structure_errors() {
    assert_eq!(issues(json!({"resourceType": "Patient", "foo": 1})), one("Patient.foo", IssueCode::Structure));
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"family": "x"}, {"famly": "y"}]})),
        one("Patient.name[1].famly", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "contact": [{"nme": {"text": "x"}}]})),
        one("Patient.contact[0].nme", IssueCode::Structure)
    );
    // Elements of other resources are not elements of this one.
    assert_eq!(
        issues(json!({"resourceType": "Patient", "status": "final"})),
        one("Patient.status", IssueCode::Structure)
    );
    let found = model().validate(&json!({"resourceType": "Patient", "contact": [{"x": 1}]}));
    assert!(found[0].message.contains("Patient.contact"), "{}", found[0]);
}

#[test]
fn resource_type_only_at_resource_roots() {
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"resourceType": "HumanName", "family": "x"}]})),
        one("Patient.name[0].resourceType", IssueCode::Structure)
    );
}

#[test]
fn long_unknown_names_are_cut_in_expressions() {
    let key = "k".repeat(10_000);
    let found = model().validate(&json!({"resourceType": "Patient", key: 1}));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].expression, format!("Patient.{}", "k".repeat(64)));
    assert!(found[0].message.len() < 200);
}

// --- choice, backbone, contentReference -------------------------------------------------------

#[test]
fn choice_elements_resolve_by_type_suffix() {
    valid(json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueQuantity": {"value": 1.5, "unit": "mg"},
        "effectiveDateTime": "2020-01-01T00:00:00Z"
    }));
    assert_eq!(
        issues(json!({
            "resourceType": "Observation", "status": "final", "code": {"text": "x"},
            "valueQuantity": {"value": "1.5"}
        })),
        one("Observation.valueQuantity.value", IssueCode::Value)
    );
    assert_eq!(
        issues(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valueFoo": 1})),
        one("Observation.valueFoo", IssueCode::Structure)
    );
    // The type suffix is case-sensitive and required.
    assert_eq!(
        issues(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "valuestring": "a"})),
        one("Observation.valuestring", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}, "value": "a"})),
        one("Observation.value", IssueCode::Structure)
    );
}

#[test]
fn only_one_type_per_choice() {
    // serde_json keeps keys sorted unless preserve_order is on; either way exactly one is reported.
    let found = issues(json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueString": "a", "valueBoolean": true
    }));
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].1, IssueCode::Structure);
    assert!(found[0].0 == "Observation.valueString" || found[0].0 == "Observation.valueBoolean", "{found:?}");
}

#[test]
fn content_reference_children_are_checked() {
    let q = |nested: Value| {
        json!({
            "resourceType": "Questionnaire", "status": "draft",
            "item": [{"linkId": "1", "type": "group", "item": [nested]}]
        })
    };
    valid(q(json!({"linkId": "1.1", "type": "string", "item": [
        {"linkId": "1.1.1", "type": "boolean"}
    ]})));
    assert_eq!(
        issues(q(json!({"linkId": "1.1", "type": "string", "bogus": true}))),
        one("Questionnaire.item[0].item[0].bogus", IssueCode::Structure)
    );
    assert_eq!(issues(q(json!({"type": "string"}))), one("Questionnaire.item[0].item[0].linkId", IssueCode::Required));
    assert_eq!(
        issues(q(json!({"linkId": "1.1", "type": "string", "item": [{"linkId": "x"}]}))),
        one("Questionnaire.item[0].item[0].item[0].type", IssueCode::Required)
    );
}

// --- cardinality and JSON shape ---------------------------------------------------------------

#[test]
fn max_star_must_be_an_array() {
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": {"family": "x"}})),
        one("Patient.name", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"given": "Jane"}]})),
        one("Patient.name[0].given", IssueCode::Structure)
    );
}

#[test]
fn max_one_must_not_be_an_array() {
    assert_eq!(
        issues(json!({"resourceType": "Patient", "gender": ["female"]})),
        one("Patient.gender", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"family": ["x"]}]})),
        one("Patient.name[0].family", IssueCode::Structure)
    );
}

#[test]
fn arrays_and_objects_must_not_be_empty() {
    assert_eq!(issues(json!({"resourceType": "Patient", "name": []})), one("Patient.name", IssueCode::Structure));
    assert_eq!(issues(json!({"resourceType": "Patient", "name": [{}]})), one("Patient.name[0]", IssueCode::Structure));
    assert_eq!(
        issues(json!({"resourceType": "Patient", "maritalStatus": {}})),
        one("Patient.maritalStatus", IssueCode::Structure)
    );
}

#[test]
fn missing_required_elements() {
    assert_eq!(
        issues(json!({"resourceType": "Observation"})),
        vec![
            ("Observation.status".to_owned(), IssueCode::Required),
            ("Observation.code".to_owned(), IssueCode::Required)
        ]
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "link": [{"type": "seealso"}]})),
        one("Patient.link[0].other", IssueCode::Required)
    );
    // A required primitive that only carries extensions is present.
    valid(json!({
        "resourceType": "Observation", "code": {"text": "x"},
        "_status": {"extension": [{"url": "http://hl7.org/fhir/StructureDefinition/data-absent-reason", "valueCode": "unknown"}]}
    }));
}

#[test]
fn required_choice_is_satisfied_by_any_type() {
    // Extension.value[x] is optional; SubstanceAmount-free example: Timing.repeat.bounds[x] too.
    // Use a required choice: MedicationAdministration.medication[x] (1..1).
    let base = json!({
        "resourceType": "MedicationAdministration", "status": "completed",
        "subject": {"reference": "Patient/1"}, "effectiveDateTime": "2020-01-01"
    });
    let mut with = base.clone();
    with["medicationCodeableConcept"] = json!({"text": "aspirin"});
    valid(with);
    assert_eq!(issues(base), one("MedicationAdministration.medication", IssueCode::Required));
}

#[test]
fn null_is_not_a_value() {
    assert_eq!(issues(json!({"resourceType": "Patient", "gender": null})), one("Patient.gender", IssueCode::Structure));
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [null]})),
        one("Patient.name[0]", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"given": ["a", null]}]})),
        one("Patient.name[0].given[1]", IssueCode::Structure)
    );
}

// --- primitives -------------------------------------------------------------------------------

#[test]
fn primitive_json_kinds() {
    for (resource, expression) in [
        (json!({"resourceType": "Patient", "active": "true"}), "Patient.active"),
        (json!({"resourceType": "Patient", "birthDate": 2020}), "Patient.birthDate"),
        (json!({"resourceType": "Patient", "multipleBirthInteger": 1.5}), "Patient.multipleBirthInteger"),
        (json!({"resourceType": "Patient", "multipleBirthInteger": "2"}), "Patient.multipleBirthInteger"),
        (json!({"resourceType": "Patient", "name": [{"family": 7}]}), "Patient.name[0].family"),
        (json!({"resourceType": "Patient", "photo": [{"size": -1}]}), "Patient.photo[0].size"),
        (json!({"resourceType": "Patient", "photo": [{"size": 4294967296u64}]}), "Patient.photo[0].size"),
        (json!({"resourceType": "Patient", "contact": [{"name": {"text": true}}]}), "Patient.contact[0].name.text"),
        (json!({"resourceType": "Patient", "name": [{"family": {"value": "x"}}]}), "Patient.name[0].family"),
    ] {
        assert_eq!(issues(resource), one(expression, IssueCode::Value), "{expression}");
    }
}

#[test]
fn primitive_formats() {
    let ext = |k: &str, v: Value| {
        let mut e = json!({"url": "http://example.org/x"});
        e[k] = v;
        json!({"resourceType": "Patient", "extension": [e]})
    };
    let obs = |k: &str, v: Value| {
        let mut o = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
        o[k] = v;
        o
    };
    for (resource, expression) in [
        (json!({"resourceType": "Patient", "birthDate": "2020-13-01"}), "Patient.birthDate"),
        (json!({"resourceType": "Patient", "birthDate": "2021-02-29"}), "Patient.birthDate"),
        (json!({"resourceType": "Patient", "id": "a_b"}), "Patient.id"),
        (json!({"resourceType": "Patient", "id": "x".repeat(65)}), "Patient.id"),
        (json!({"resourceType": "Patient", "gender": "fe  male"}), "Patient.gender"),
        (json!({"resourceType": "Patient", "gender": " female"}), "Patient.gender"),
        (json!({"resourceType": "Patient", "name": [{"family": ""}]}), "Patient.name[0].family"),
        (json!({"resourceType": "Patient", "name": [{"family": "  "}]}), "Patient.name[0].family"),
        (json!({"resourceType": "Patient", "meta": {"lastUpdated": "2020-01-01T10:00Z"}}), "Patient.meta.lastUpdated"),
        (json!({"resourceType": "Patient", "meta": {"lastUpdated": "2020-01-01"}}), "Patient.meta.lastUpdated"),
        (json!({"resourceType": "Patient", "implicitRules": "http://a b"}), "Patient.implicitRules"),
        (json!({"resourceType": "Patient", "photo": [{"data": "abc"}]}), "Patient.photo[0].data"),
        (ext("valueOid", json!("urn:oid:1.02")), "Patient.extension[0].valueOid"),
        (ext("valueUuid", json!("urn:uuid:ABC")), "Patient.extension[0].valueUuid"),
        (ext("valueCanonical", json!("http://x|1 0")), "Patient.extension[0].valueCanonical"),
        (ext("valueBase64Binary", json!("aGVsbG8")), "Patient.extension[0].valueBase64Binary"),
        (ext("valuePositiveInt", json!(0)), "Patient.extension[0].valuePositiveInt"),
        (ext("valueUnsignedInt", json!(-1)), "Patient.extension[0].valueUnsignedInt"),
        (ext("valueDecimal", json!("1.0")), "Patient.extension[0].valueDecimal"),
        (ext("valueMarkdown", json!("\u{b}")), "Patient.extension[0].valueMarkdown"),
        (ext("valueId", json!("a b")), "Patient.extension[0].valueId"),
        (obs("effectiveDateTime", json!("2020-01-01T10:00:00")), "Observation.effectiveDateTime"),
        (obs("valueTime", json!("10:00")), "Observation.valueTime"),
        (obs("valueInteger", json!(2147483648i64)), "Observation.valueInteger"),
        (json!({"resourceType": "Patient", "text": {"status": "generated", "div": "hello"}}), "Patient.text.div"),
    ] {
        assert_eq!(issues(resource), one(expression, IssueCode::Value), "{expression}");
    }
    valid(obs("effectiveDateTime", json!("2020-02-29")));
    valid(obs("effectiveDateTime", json!("2020-02")));
    valid(obs("effectiveDateTime", json!("2020")));
    valid(obs("effectiveInstant", json!("2020-02-29T23:59:59.999+14:00")));
    valid(obs("valueTime", json!("23:59:59")));
    valid(json!({"resourceType": "Patient", "photo": [{"data": "aGVs bG8=", "size": 0}]}));
    valid(ext("valueOid", json!("urn:oid:2.16.840.1")));
    valid(ext("valueUuid", json!("urn:uuid:c757873d-ec9a-4326-a141-556f43239520")));
    valid(ext("valueUnsignedInt", json!(0)));
    valid(ext("valueDecimal", json!(-1.5e3)));
}

#[test]
fn resource_id_must_match_the_id_regex() {
    assert_eq!(issues(json!({"resourceType": "Patient", "id": "has space"})), one("Patient.id", IssueCode::Value));
    assert_eq!(issues(json!({"resourceType": "Patient", "id": 12})), one("Patient.id", IssueCode::Value));
    // Resource.id is a System type: no `_id` companion.
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_id": {"extension": []}})),
        one("Patient._id", IssueCode::Structure)
    );
}

// --- `_name` companions -----------------------------------------------------------------------

#[test]
fn primitive_extensions_single() {
    let ext = json!({"extension": [{"url": "http://example.org/x", "valueString": "y"}]});
    valid(json!({"resourceType": "Patient", "birthDate": "1970", "_birthDate": ext}));
    // Extensions without a value are allowed.
    valid(json!({"resourceType": "Patient", "_birthDate": ext}));
    valid(json!({"resourceType": "Patient", "_birthDate": {"id": "b1"}}));
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_birthDate": "x"})),
        one("Patient.birthDate", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_birthDate": [ext]})),
        one("Patient.birthDate", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_birthDate": {}})),
        one("Patient.birthDate", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_birthDate": {"value": "1970"}})),
        one("Patient.birthDate.value", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_birthDate": {"extension": [{"valueString": "y"}]}})),
        one("Patient.birthDate.extension[0].url", IssueCode::Required)
    );
    // Choice primitives have companions too.
    valid(json!({
        "resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "valueString": "a", "_valueString": ext
    }));
}

#[test]
fn primitive_extensions_only_for_primitives() {
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_name": [{"id": "x"}]})),
        one("Patient._name", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "_nope": {"id": "x"}})),
        one("Patient._nope", IssueCode::Structure)
    );
    assert_eq!(
        issues(
            json!({"resourceType": "Patient", "text": {"status": "generated", "div": "<div>x</div>", "_div": {"id": "d"}}})
        ),
        one("Patient.text._div", IssueCode::Structure)
    );
}

#[test]
fn primitive_extensions_in_arrays() {
    let ext = json!({"extension": [{"url": "http://example.org/x", "valueCode": "y"}]});
    valid(json!({"resourceType": "Patient", "name": [{
        "given": ["a", null, "c"], "_given": [null, ext, null]
    }]}));
    valid(json!({"resourceType": "Patient", "name": [{"_given": [ext]}]}));
    // Both sides null at one index.
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"given": ["a", null], "_given": [ext, null]}]})),
        one("Patient.name[0].given[1]", IssueCode::Structure)
    );
    // Lengths must match.
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"given": ["a", "b"], "_given": [ext]}]})),
        one("Patient.name[0].given", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"given": ["a"], "_given": ext}]})),
        one("Patient.name[0].given", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"given": ["a"], "_given": ["x"]}]})),
        one("Patient.name[0].given[0]", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"_given": [null]}]})),
        one("Patient.name[0].given[0]", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "name": [{"given": ["a"], "_given": [{"extension": [{}]}]}]})),
        one("Patient.name[0].given[0].extension[0]", IssueCode::Structure)
    );
}

// --- extensions -------------------------------------------------------------------------------

#[test]
fn extensions_need_url() {
    assert_eq!(
        issues(json!({"resourceType": "Patient", "extension": [{"valueString": "x"}]})),
        one("Patient.extension[0].url", IssueCode::Required)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "modifierExtension": [{"valueBoolean": true}]})),
        one("Patient.modifierExtension[0].url", IssueCode::Required)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "extension": [{"url": "a b", "valueString": "x"}]})),
        one("Patient.extension[0].url", IssueCode::Value)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "extension": [{"url": "http://x", "valueFoo": "x"}]})),
        one("Patient.extension[0].valueFoo", IssueCode::Structure)
    );
    // Nested extensions and extensions on backbone elements.
    valid(json!({"resourceType": "Patient", "contact": [{
        "extension": [{"url": "http://x", "extension": [{"url": "y", "valueInteger": 1}]}],
        "name": {"text": "x"}
    }]}));
}

// --- nested resources -------------------------------------------------------------------------

#[test]
fn contained_resources_are_validated_by_their_own_type() {
    valid(json!({"resourceType": "Patient", "contained": [
        {"resourceType": "Organization", "id": "o1", "name": "Acme"}
    ], "managingOrganization": {"reference": "#o1"}}));
    assert_eq!(
        issues(json!({"resourceType": "Patient", "contained": [{"resourceType": "Organization", "gender": "x"}]})),
        one("Patient.contained[0].gender", IssueCode::Structure)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "contained": [{"name": "Acme"}]})),
        one("Patient.contained[0].resourceType", IssueCode::Invalid)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "contained": [{"resourceType": "Nope"}]})),
        one("Patient.contained[0].resourceType", IssueCode::NotSupported)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "contained": ["x"]})),
        one("Patient.contained[0]", IssueCode::Structure)
    );
    let found =
        model().validate(&json!({"resourceType": "Patient", "contained": [{"resourceType": "DomainResource"}]}));
    assert_eq!(found[0].severity, Severity::Error);
    assert_eq!(found[0].code, IssueCode::Invalid);
}

#[test]
fn bundle_entries_are_validated() {
    let bundle = json!({
        "resourceType": "Bundle", "type": "collection",
        "entry": [
            {"fullUrl": "urn:uuid:c757873d-ec9a-4326-a141-556f43239520", "resource": {"resourceType": "Patient"}},
            {"resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"}}},
            {"resource": {"resourceType": "Patient", "birthDate": "1970-02-30"}}
        ]
    });
    assert_eq!(issues(bundle), one("Bundle.entry[2].resource.birthDate", IssueCode::Value));
    assert_eq!(
        issues(json!({"resourceType": "Bundle", "type": "collection", "entry": [
            {"resource": {"resourceType": "Bundle", "type": "collection", "entry": [{"resource": {"resourceType": "Observation"}}]}}
        ]})),
        vec![
            ("Bundle.entry[0].resource.entry[0].resource.status".to_owned(), IssueCode::Required),
            ("Bundle.entry[0].resource.entry[0].resource.code".to_owned(), IssueCode::Required),
        ]
    );
}

#[test]
fn parameters_resources_are_validated() {
    valid(json!({"resourceType": "Parameters", "parameter": [
        {"name": "p", "resource": {"resourceType": "Patient"}},
        {"name": "q", "part": [{"name": "r", "valueString": "x"}]}
    ]}));
    assert_eq!(
        issues(json!({"resourceType": "Parameters", "parameter": [
            {"name": "p", "resource": {"resourceType": "Patient", "active": "yes"}}
        ]})),
        one("Parameters.parameter[0].resource.active", IssueCode::Value)
    );
    assert_eq!(
        issues(json!({"resourceType": "Parameters", "parameter": [
            {"name": "q", "part": [{"valueString": "x"}]}
        ]})),
        one("Parameters.parameter[0].part[0].name", IssueCode::Required)
    );
}

// --- robustness -------------------------------------------------------------------------------

/// An object from owned values. `json!` would serialize interpolated values recursively (and
/// quadratically), which deep test trees cannot afford.
fn obj(pairs: Vec<(&str, Value)>) -> Value {
    Value::Object(pairs.into_iter().map(|(k, v)| (k.to_owned(), v)).collect())
}

/// Builds `depth` levels of nested extensions: Patient.extension[0].extension[0]...
fn nested_extensions(depth: usize) -> Value {
    let mut inner = json!({"url": "x", "valueString": "leaf"});
    for _ in 0..depth {
        inner = obj(vec![("url", json!("x")), ("extension", Value::Array(vec![inner]))]);
    }
    obj(vec![("resourceType", json!("Patient")), ("extension", Value::Array(vec![inner]))])
}

// serde_json parses at most 128 levels, so the server never sees deeper JSON; the validator must
// still cope with deeper trees built in code. (Much deeper trees overflow serde_json's own
// recursive Drop, so the tests stay at a few thousand levels.)
#[test]
fn deep_nesting_is_cut_off_without_panicking() {
    valid(nested_extensions(30));
    let found = model().validate(&nested_extensions(2_000));
    assert_eq!(found.len(), 1, "{found:#?}");
    assert_eq!(found[0].code, IssueCode::TooCostly);
    assert!(found[0].expression.starts_with("Patient.extension[0].extension[0]"));

    // Through contentReference (Questionnaire.item.item).
    let mut q = json!({"linkId": "x", "type": "group"});
    for _ in 0..1_000 {
        q = obj(vec![("linkId", json!("x")), ("type", json!("group")), ("item", Value::Array(vec![q]))]);
    }
    let q = obj(vec![
        ("resourceType", json!("Questionnaire")),
        ("status", json!("draft")),
        ("item", Value::Array(vec![q])),
    ]);
    let found = model().validate(&q);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, IssueCode::TooCostly);

    // Through nested resources.
    let mut b = json!({"resourceType": "Patient"});
    for _ in 0..1_000 {
        b = obj(vec![
            ("resourceType", json!("Bundle")),
            ("type", json!("collection")),
            ("entry", Value::Array(vec![obj(vec![("resource", b)])])),
        ]);
    }
    let found = model().validate(&b);
    assert_eq!(found.len(), 1);
    assert_eq!(found[0].code, IssueCode::TooCostly);

    // Unknown subtrees are not descended into, however deep.
    let mut junk = json!(1);
    for _ in 0..3_000 {
        junk = obj(vec![("a", Value::Array(vec![junk]))]);
    }
    assert_eq!(
        issues(obj(vec![("resourceType", json!("Patient")), ("junk", junk)])),
        one("Patient.junk", IssueCode::Structure)
    );
}

#[test]
fn issues_are_capped() {
    let mut p = serde_json::Map::new();
    p.insert("resourceType".into(), json!("Patient"));
    for i in 0..1_000 {
        p.insert(format!("x{i}"), json!(i));
    }
    let found = model().validate(&Value::Object(p));
    assert_eq!(found.len(), 101);
    assert_eq!(found[100].code, IssueCode::TooCostly);
}

/// A tiny deterministic PRNG so the fuzz test is reproducible without a dependency.
struct Lcg(u64);

impl Lcg {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        self.0 >> 33
    }

    fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
}

fn weird(rng: &mut Lcg) -> Value {
    match rng.below(14) {
        0 => Value::Null,
        1 => json!(true),
        2 => json!(-1),
        3 => json!(1e300),
        4 => json!(u64::MAX),
        5 => json!(""),
        6 => json!("\u{0}\u{b}\u{fffd}😀"),
        7 => json!([]),
        8 => json!([null, null]),
        9 => json!({}),
        10 => json!({"resourceType": "Patient", "_x": [null]}),
        11 => json!({"extension": [{"url": null}]}),
        12 => json!("2020-02-30T25:61:61+15:00"),
        _ => json!([[[{"a": [{}]}]]]),
    }
}

/// Replaces a random node of `v` with a weird value, or adds a weird property.
fn mutate(v: &mut Value, rng: &mut Lcg) {
    match v {
        Value::Object(map) if !map.is_empty() && rng.below(3) > 0 => {
            let i = rng.below(map.len());
            let key = map.keys().nth(i).cloned().unwrap();
            if rng.below(4) == 0 {
                map.insert(format!("_{key}"), weird(rng));
            } else {
                mutate(map.get_mut(&key).unwrap(), rng);
            }
        }
        Value::Array(items) if !items.is_empty() && rng.below(3) > 0 => {
            let i = rng.below(items.len());
            mutate(&mut items[i], rng);
        }
        _ => *v = weird(rng),
    }
}

#[test]
fn mutated_examples_never_panic() {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/r4-examples");
    let mut rng = Lcg(0x5eed);
    let mut rejected = 0;
    let mut total = 0;
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    for path in files {
        let original: Value = serde_json::from_str(&std::fs::read_to_string(path).unwrap()).unwrap();
        for _ in 0..8 {
            let mut v = original.clone();
            for _ in 0..=rng.below(3) {
                mutate(&mut v, &mut rng);
            }
            total += 1;
            let found: Vec<Issue> = model().validate(&v);
            if !found.is_empty() {
                rejected += 1;
            }
            for i in &found {
                assert!(!i.message.is_empty());
            }
        }
    }
    println!("mutated examples: {total} validated, {rejected} rejected");
    // Most mutations break something; a validator that accepts everything would fail here.
    assert!(rejected * 10 > total * 7, "{rejected} of {total}");
}

#[test]
fn codes_and_severities_have_fhir_names() {
    assert_eq!(Severity::Fatal.as_str(), "fatal");
    assert_eq!(Severity::Error.as_str(), "error");
    assert_eq!(Severity::Warning.as_str(), "warning");
    assert_eq!(Severity::Information.as_str(), "information");
    assert_eq!(IssueCode::Structure.as_str(), "structure");
    assert_eq!(IssueCode::Required.as_str(), "required");
    assert_eq!(IssueCode::Value.as_str(), "value");
    assert_eq!(IssueCode::Invalid.as_str(), "invalid");
    assert_eq!(IssueCode::NotSupported.as_str(), "not-supported");
    assert_eq!(IssueCode::TooCostly.as_str(), "too-costly");
}

#[test]
fn messages_do_not_echo_values() {
    let secret = "Jane-Secret-Doe";
    let found = model().validate(&json!({
        "resourceType": "Patient",
        "birthDate": secret,
        "name": [{"family": [secret]}],
        "active": secret,
        "id": secret.repeat(10)
    }));
    assert_eq!(found.len(), 4);
    for i in found {
        assert!(!i.message.contains(secret), "{i}");
        assert!(!i.expression.contains(secret), "{i}");
    }
}

// --- required bindings --------------------------------------------------------------------------

#[test]
fn codes_outside_a_required_value_set_are_refused() {
    assert_eq!(
        issues(json!({"resourceType": "Patient", "gender": "not-a-gender"})),
        one("Patient.gender", IssueCode::CodeInvalid)
    );
    let found = model().validate(&json!({"resourceType": "Patient", "gender": "unknown2"}));
    assert!(found[0].message.contains("http://hl7.org/fhir/ValueSet/administrative-gender"), "{found:?}");
    assert_eq!(
        issues(json!({"resourceType": "Observation", "status": "finished", "code": {"text": "x"}})),
        one("Observation.status", IssueCode::CodeInvalid)
    );
    // Nested (contact.gender), in arrays (telecom[1].system), and case matters.
    assert_eq!(
        issues(json!({"resourceType": "Patient", "contact": [{"gender": "Female"}]})),
        one("Patient.contact[0].gender", IssueCode::CodeInvalid)
    );
    assert_eq!(
        issues(json!({"resourceType": "Patient", "telecom": [{"system": "phone"}, {"system": "pager2"}]})),
        one("Patient.telecom[1].system", IssueCode::CodeInvalid)
    );
    // Every code of the value set is accepted.
    for g in ["male", "female", "other", "unknown"] {
        valid(json!({"resourceType": "Patient", "gender": g}));
    }
    // Extensible or example bindings (Observation.category, a CodeableConcept) take any code.
    valid(json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"},
        "category": [{"coding": [{"system": "urn:local", "code": "anything"}]}]}));
}
