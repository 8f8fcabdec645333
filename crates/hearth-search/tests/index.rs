//! Index extraction on real resources (official R4 examples, the search-vector fixtures,
//! Synthea) and on small hand-made ones for the edge cases.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::float_cmp)]

mod common;

use common::{ms, strings, tokens, values};
use hearth_search::{IndexValue, ParamType};
use serde_json::json;

fn s(v: &str) -> Option<String> {
    Some(v.to_string())
}

#[test]
fn patient_example_strings_tokens_dates_references() {
    let entries = common::registry().index(&common::example("Patient-example.json"));
    // HumanName: every part of every name, normalized and exact.
    let mut names = strings(&entries, "name");
    names.sort();
    assert_eq!(names, ["Chalmers", "James", "Jim", "Peter", "Windsor"]);
    assert!(
        values(&entries, "family")
            .contains(&&IndexValue::String { normalized: "chalmers".into(), exact: "Chalmers".into() })
    );
    assert_eq!(strings(&entries, "given").len(), 3, "Peter, James, Jim (duplicates folded)");
    // Address parts.
    let mut city = strings(&entries, "address-city");
    city.sort();
    assert_eq!(city, ["PleasantVille"]);
    let address = strings(&entries, "address");
    for part in
        ["534 Erewhon St", "PleasantVille", "Rainbow", "Vic", "3999", "534 Erewhon St PeasantVille, Rainbow, Vic  3999"]
    {
        assert!(address.iter().any(|a| a == part), "{part} in {address:?}");
    }
    assert!(values(&entries, "address").iter().any(|v| matches!(v, IndexValue::String { normalized, .. } if normalized == "534 erewhon st peasantville, rainbow, vic 3999")));
    // Tokens: code primitive, boolean, id, Identifier with type, ContactPoint.
    assert_eq!(tokens(&entries, "gender"), [(None, s("male"))]);
    assert_eq!(tokens(&entries, "active"), [(None, s("true"))]);
    assert_eq!(tokens(&entries, "_id"), [(None, s("example"))]);
    assert_eq!(
        values(&entries, "identifier"),
        [&IndexValue::Token {
            system: s("urn:oid:1.2.36.146.595.217.0.1"),
            code: s("12345"),
            text: None,
            of_type: Some((s("http://terminology.hl7.org/CodeSystem/v2-0203"), "MR".into())),
        }]
    );
    let phones = tokens(&entries, "phone");
    assert!(phones.contains(&(s("phone"), s("(03) 5555 6473"))), "{phones:?}");
    assert!(phones.contains(&(None, s("(03) 5555 6473"))), "and without the system");
    assert_eq!(
        tokens(&entries, "telecom").len(),
        6,
        "three values, each with and without its system; none for the telecom without a value"
    );
    // Date: birthDate is a whole day in UTC.
    assert_eq!(
        values(&entries, "birthdate"),
        [&IndexValue::Date { start: ms("1974-12-25T00:00:00Z"), end: ms("1974-12-25T23:59:59.999Z") }]
    );
    // Reference.
    assert_eq!(
        values(&entries, "organization"),
        [&IndexValue::Reference {
            target_type: s("Organization"),
            target_id: s("1"),
            version: None,
            url: None,
            identifier: None
        }]
    );
    // Narrative and content as full text.
    let text = values(&entries, "_text");
    assert!(matches!(text.as_slice(), [IndexValue::String { normalized, .. }] if normalized.contains("peter james")));
    let content = values(&entries, "_content");
    assert!(
        matches!(content.as_slice(), [IndexValue::String { normalized, .. }] if normalized.contains("benedicte") && normalized.contains("pleasantville"))
    );
    // Nothing for params without values (no deceased, no general practitioner).
    assert!(values(&entries, "death-date").is_empty());
}

#[test]
fn accents_are_removed_for_default_matching_but_kept_for_exact() {
    let p = json!({"resourceType": "Patient", "id": "x", "name": [{"family": "du Marché", "given": ["Bénédicte"]}]});
    let entries = common::registry().index(&p);
    assert!(
        values(&entries, "family")
            .contains(&&IndexValue::String { normalized: "du marche".into(), exact: "du Marché".into() })
    );
    assert!(
        values(&entries, "name")
            .contains(&&IndexValue::String { normalized: "benedicte".into(), exact: "Bénédicte".into() })
    );
}

#[test]
fn observation_quantity_with_canonical_units_and_composites() {
    let entries = common::registry().index(&common::fixture("Observation-example.json"));
    let code = tokens(&entries, "code");
    assert!(code.contains(&(s("http://loinc.org"), s("29463-7"))));
    assert_eq!(code.len(), 4);
    assert!(
        values(&entries, "code")
            .iter()
            .any(|v| matches!(v, IndexValue::Token { text: Some(t), .. } if t == "body weight"))
    );
    let vq = values(&entries, "value-quantity");
    let [IndexValue::Quantity { low, high, system, code, unit, canonical: Some(c) }] = vq.as_slice() else {
        panic!("{vq:?}")
    };
    assert_eq!((*low, *high), (184.5, 185.5));
    assert_eq!(
        (system.as_deref(), code.as_deref(), unit.as_deref()),
        (Some("http://unitsofmeasure.org"), Some("[lb_av]"), Some("lbs"))
    );
    assert_eq!(c.unit, "g");
    assert!((c.low - 184.5 * 453.592_37).abs() < 1e-6 && (c.high - 185.5 * 453.592_37).abs() < 1e-6);
    assert_eq!(
        values(&entries, "date"),
        [&IndexValue::Date { start: ms("2016-03-28T00:00:00Z"), end: ms("2016-03-28T23:59:59.999Z") }]
    );
    assert_eq!(
        values(&entries, "subject")[0],
        &IndexValue::Reference {
            target_type: s("Patient"),
            target_id: s("example"),
            version: None,
            url: None,
            identifier: None
        }
    );
    // `patient` is `subject.where(resolve() is Patient)`: decided from the reference text.
    assert_eq!(values(&entries, "patient").len(), 1);
    // code-value-quantity: one composite per coding, each with the value.
    let cvq = values(&entries, "code-value-quantity");
    assert_eq!(cvq.len(), 4);
    let IndexValue::Composite { components } = cvq[0] else { panic!() };
    assert!(matches!(&components[0], IndexValue::Token { code: Some(c), .. } if c == "29463-7"));
    assert!(matches!(&components[1], IndexValue::Quantity { low, .. } if *low == 184.5));
    assert_eq!(
        tokens(&entries, "category"),
        [(s("http://terminology.hl7.org/CodeSystem/observation-category"), s("vital-signs"))]
    );
}

#[test]
fn blood_pressure_components_profile_and_last_updated() {
    let entries = common::registry().index(&common::fixture("Observation-blood-pressure.json"));
    let cvq = values(&entries, "component-code-value-quantity");
    assert_eq!(cvq.len(), 4, "systolic and diastolic, each LOINC + SNOMED coded: {cvq:?}");
    let mmhg = values(&entries, "component-value-quantity");
    assert!(mmhg.iter().all(|v| matches!(v, IndexValue::Quantity { canonical: Some(c), .. } if c.unit == "m-1.g.s-2")));
    assert!(
        values(&entries, "_profile")
            .contains(&&IndexValue::Uri { value: "http://hl7.org/fhir/StructureDefinition/vitalsigns".into() })
    );
    let stored = json!({"resourceType": "Patient", "id": "p", "meta": {"versionId": "1", "lastUpdated": "2024-05-01T10:00:00.123Z",
        "tag": [{"system": "http://example.org/tags", "code": "vip"}], "security": [{"system": "http://terminology.hl7.org/CodeSystem/v3-Confidentiality", "code": "R"}],
        "source": "http://example.org/app#1"}});
    let entries = common::registry().index(&stored);
    assert_eq!(
        values(&entries, "_lastUpdated"),
        [&IndexValue::Date { start: ms("2024-05-01T10:00:00.123Z"), end: ms("2024-05-01T10:00:00.123Z") }]
    );
    assert_eq!(tokens(&entries, "_tag"), [(s("http://example.org/tags"), s("vip"))]);
    assert_eq!(
        tokens(&entries, "_security"),
        [(s("http://terminology.hl7.org/CodeSystem/v3-Confidentiality"), s("R"))]
    );
    assert_eq!(values(&entries, "_source"), [&IndexValue::Uri { value: "http://example.org/app#1".into() }]);
}

#[test]
fn periods_timings_and_open_ends() {
    let enc = json!({"resourceType": "Encounter", "id": "e", "status": "in-progress", "class": {"code": "AMB"},
        "period": {"start": "2020-03-04T10:00:00+02:00"}});
    let entries = common::registry().index(&enc);
    assert_eq!(values(&entries, "date"), [&IndexValue::Date { start: ms("2020-03-04T08:00:00Z"), end: i64::MAX }]);
    let ended = json!({"resourceType": "Encounter", "id": "e", "status": "finished", "class": {"code": "AMB"}, "period": {"end": "2020"}});
    assert_eq!(
        values(&common::registry().index(&ended), "date"),
        [&IndexValue::Date { start: i64::MIN, end: ms("2020-12-31T23:59:59.999Z") }]
    );
    let plan = json!({"resourceType": "CarePlan", "id": "c", "status": "active", "intent": "plan", "subject": {"reference": "Patient/1"},
        "activity": [{"detail": {"status": "scheduled", "scheduledTiming": {"event": ["2021-01-01T09:00:00Z", "2021-01-02"]}}}]});
    let dates = values(&common::registry().index(&plan), "activity-date").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(
        dates,
        [
            IndexValue::Date { start: ms("2021-01-01T09:00:00Z"), end: ms("2021-01-01T09:00:00.999Z") },
            IndexValue::Date { start: ms("2021-01-02T00:00:00Z"), end: ms("2021-01-02T23:59:59.999Z") },
        ]
    );
    // A dateTime without an offset is taken as UTC.
    let obs = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"}, "effectiveDateTime": "2020-03-04T10:15:00"});
    assert_eq!(
        values(&common::registry().index(&obs), "date"),
        [&IndexValue::Date { start: ms("2020-03-04T10:15:00Z"), end: ms("2020-03-04T10:15:00.999Z") }]
    );
}

#[test]
fn numbers_money_ranges_and_custom_number_parameters() {
    let entries = common::registry().index(&common::example("RiskAssessment-riskexample.json"));
    let prob = values(&entries, "probability");
    let [IndexValue::Number { value, low, high }] = prob.as_slice() else { panic!("{prob:?}") };
    assert_eq!(value.to_string(), "0.000368");
    assert!((low - 0.000_367_5).abs() < 1e-12 && (high - 0.000_368_5).abs() < 1e-12);

    let invoice = common::registry().index(&common::example("Invoice-example.json"));
    let net = values(&invoice, "totalnet");
    assert!(
        matches!(net.as_slice(), [IndexValue::Quantity { low, system: Some(sys), code: Some(c), canonical: None, .. }]
        if *low == 39.5 && sys == "urn:iso:std:iso:4217" && c == "EUR"),
        "{net:?}"
    );

    let lib = json!({"resourceType": "Library", "id": "l", "status": "active", "type": {"text": "x"},
        "useContext": [{"code": {"code": "age"}, "valueRange": {"low": {"value": 18, "system": "http://unitsofmeasure.org", "code": "a"}, "high": {"value": 65, "system": "http://unitsofmeasure.org", "code": "a"}}},
                       {"code": {"code": "age"}, "valueQuantity": {"value": 3.5}}]});
    let q = values(&common::registry().index(&lib), "context-quantity").into_iter().cloned().collect::<Vec<_>>();
    assert_eq!(q.len(), 2, "{q:?}");
    assert!(q.iter().any(|v| matches!(v, IndexValue::Quantity { low, high, code: Some(c), canonical: Some(can), .. }
        if *low == 17.5 && *high == 65.5 && c == "a" && can.unit == "s")));
    assert!(q.iter().any(|v| matches!(v, IndexValue::Quantity { low, high, code: None, canonical: None, .. } if *low == 3.45 && *high == 3.55)));

    let mut reg = common::own_registry();
    reg.add(&common::fixture("searchparameter-patient-multiplebirth.json")).unwrap();
    let p = json!({"resourceType": "Patient", "id": "t", "multipleBirthInteger": 3});
    assert!(
        matches!(values(&reg.index(&p), "multiplebirth").as_slice(), [IndexValue::Number { low, high, .. }] if *low == 2.5 && *high == 3.5)
    );
}

#[test]
fn references_absolute_canonical_identifier_contained() {
    let obs = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
        "subject": {"reference": "http://other.org/fhir/Patient/42/_history/3"},
        "performer": [{"reference": "urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"}, {"identifier": {"system": "urn:npi", "value": "123"}, "type": "Practitioner"},
                      {"reference": "#contained1"}, {"display": "Dr Who"}, {"reference": "Practitioner/p1", "identifier": {"value": "777"}}],
        "hasMember": [{"reference": "Observation/m1/_history/2"}]});
    let entries = common::registry().index(&obs);
    assert_eq!(
        values(&entries, "subject"),
        [&IndexValue::Reference {
            target_type: s("Patient"),
            target_id: s("42"),
            version: s("3"),
            url: s("http://other.org/fhir/Patient/42"),
            identifier: None
        }]
    );
    assert_eq!(
        values(&entries, "performer"),
        [
            &IndexValue::Reference {
                target_type: None,
                target_id: None,
                version: None,
                url: s("urn:uuid:0c3151bd-1cbf-4d64-b04d-cd9187a4c6e0"),
                identifier: None
            },
            &IndexValue::Reference {
                target_type: s("Practitioner"),
                target_id: None,
                version: None,
                url: None,
                identifier: Some((s("urn:npi"), "123".into()))
            },
            &IndexValue::Reference {
                target_type: s("Practitioner"),
                target_id: s("p1"),
                version: None,
                url: None,
                identifier: Some((None, "777".into()))
            },
        ]
    );
    assert_eq!(
        values(&entries, "has-member"),
        [&IndexValue::Reference {
            target_type: s("Observation"),
            target_id: s("m1"),
            version: s("2"),
            url: None,
            identifier: None
        }]
    );
    // Canonical references: url and version.
    let qr = json!({"resourceType": "QuestionnaireResponse", "id": "q", "status": "completed", "questionnaire": "http://example.org/Questionnaire/phq9|3.1"});
    assert_eq!(
        values(&common::registry().index(&qr), "questionnaire"),
        [&IndexValue::Reference {
            target_type: None,
            target_id: None,
            version: s("3.1"),
            url: s("http://example.org/Questionnaire/phq9"),
            identifier: None
        }]
    );
    // A resource as the value of a reference parameter (Bundle.composition).
    let bundle = json!({"resourceType": "Bundle", "id": "b", "type": "document", "entry": [{"resource": {"resourceType": "Composition", "id": "c1"}}]});
    assert_eq!(
        values(&common::registry().index(&bundle), "composition"),
        [&IndexValue::Reference {
            target_type: s("Composition"),
            target_id: s("c1"),
            version: None,
            url: None,
            identifier: None
        }]
    );
}

#[test]
fn codeable_concept_text_and_identifier_type_text() {
    let c = json!({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}], "text": "Type II Diabète"},
        "identifier": [{"type": {"text": "Clinic Number", "coding": [{"code": "CN"}, {"system": "http://x", "code": "Y"}]}, "value": "A1"}]});
    let entries = common::registry().index(&c);
    assert_eq!(
        values(&entries, "code"),
        [
            &IndexValue::Token {
                system: s("http://snomed.info/sct"),
                code: s("44054006"),
                text: s("diabetes mellitus type 2"),
                of_type: None
            },
            &IndexValue::Token { system: None, code: None, text: s("type ii diabete"), of_type: None },
        ]
    );
    assert_eq!(
        values(&entries, "identifier"),
        [
            &IndexValue::Token {
                system: None,
                code: s("A1"),
                text: s("clinic number"),
                of_type: Some((None, "CN".into()))
            },
            &IndexValue::Token {
                system: None,
                code: s("A1"),
                text: s("clinic number"),
                of_type: Some((s("http://x"), "Y".into()))
            },
        ]
    );
}

#[test]
fn a_failing_expression_does_not_stop_the_others() {
    let mut reg = common::own_registry();
    reg.add(&json!({"resourceType": "SearchParameter", "url": "http://example.org/sp/broken", "code": "broken",
        "base": ["Patient"], "type": "string", "expression": "Patient.name.given.substring('x')"}))
        .unwrap();
    let entries = reg.index(&common::example("Patient-example.json"));
    assert!(values(&entries, "broken").is_empty());
    assert!(!values(&entries, "name").is_empty() && !values(&entries, "birthdate").is_empty());
    // Garbage in, nothing out, no panic.
    assert!(reg.index(&json!({"resourceType": "NoSuchType"})).is_empty());
    assert!(reg.index(&json!([1, 2])).is_empty());
    let odd = json!({"resourceType": "Patient", "name": "not an array", "birthDate": 12, "gender": {"x": 1}, "telecom": [null, 3]});
    let _ = reg.index(&odd);
}

#[test]
fn synthea_patients_index_with_urn_references_and_ucum_units() {
    let reg = common::registry();
    let resources = common::synthea();
    assert!(resources.len() > 100);
    let mut entries_total = 0;
    let mut canonical_quantities = 0;
    for r in &resources {
        let entries = reg.index(r);
        assert!(!values(&entries, "_id").is_empty(), "{}", r["resourceType"]);
        entries_total += entries.len();
        match r["resourceType"].as_str().unwrap() {
            "Patient" => {
                assert!(!strings(&entries, "name").is_empty());
                assert!(!values(&entries, "birthdate").is_empty());
                assert!(!tokens(&entries, "identifier").is_empty());
                assert!(!strings(&entries, "address-city").is_empty());
            }
            "Observation" => {
                assert!(!tokens(&entries, "code").is_empty());
                // Synthea references are urn:uuid: kept as URLs.
                assert!(values(&entries, "subject").iter().all(|v| matches!(v, IndexValue::Reference { url: Some(u), target_id: None, .. } if u.starts_with("urn:uuid:"))));
                canonical_quantities += values(&entries, "value-quantity")
                    .iter()
                    .filter(|v| matches!(v, IndexValue::Quantity { canonical: Some(_), .. }))
                    .count();
            }
            "Encounter" => assert!(matches!(values(&entries, "date").as_slice(), [IndexValue::Date { .. }])),
            _ => {}
        }
    }
    println!(
        "synthea: {} resources, {entries_total} index entries, {canonical_quantities} quantities in canonical units",
        resources.len()
    );
    assert!(canonical_quantities > 20);
}

#[test]
fn every_official_example_indexes_and_yields_the_obvious_parameters() {
    let reg = common::registry();
    let dir = common::tests_data().join("r4-examples");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|x| x == "json"))
        .collect();
    files.sort();
    let mut per_kind = std::collections::BTreeMap::<ParamType, usize>::new();
    let mut total = 0;
    for f in &files {
        let r = common::load(f.clone());
        let ty = r["resourceType"].as_str().unwrap().to_string();
        let entries = reg.index(&r);
        assert!(!values(&entries, "_id").is_empty(), "{}", f.display());
        for e in &entries {
            let p = reg.get(&ty, &e.param).unwrap();
            *per_kind.entry(p.kind).or_default() += 1;
            // Entry shape agrees with the parameter type.
            let ok = matches!(
                (p.kind, &e.value),
                (ParamType::String, IndexValue::String { .. })
                    | (ParamType::Token, IndexValue::Token { .. })
                    | (ParamType::Reference, IndexValue::Reference { .. })
                    | (ParamType::Date, IndexValue::Date { .. })
                    | (ParamType::Number, IndexValue::Number { .. })
                    | (ParamType::Quantity, IndexValue::Quantity { .. })
                    | (ParamType::Uri, IndexValue::Uri { .. })
                    | (ParamType::Composite, IndexValue::Composite { .. })
                    | (ParamType::Special, IndexValue::Position { .. })
            );
            assert!(ok, "{}: {} gave {:?}", f.display(), e.param, e.value);
            if let IndexValue::Date { start, end } = e.value {
                assert!(start <= end, "{}: {}", f.display(), e.param);
            }
        }
        total += entries.len();
        match ty.as_str() {
            "Patient" | "Practitioner" | "Person" | "RelatedPerson" if r.get("name").is_some() => {
                assert!(!values(&entries, "name").is_empty(), "{}", f.display());
            }
            "Observation" | "Condition" | "Procedure" => {
                assert!(!values(&entries, "code").is_empty(), "{}", f.display());
                assert!(!values(&entries, "status").is_empty() || ty == "Condition", "{}", f.display());
            }
            _ => {}
        }
        if hearth_search::narrative_text(&r).is_some() && ty != "Bundle" && ty != "Binary" && ty != "Parameters" {
            assert!(!values(&entries, "_text").is_empty(), "{}", f.display());
        }
    }
    println!("official examples: {} files, {total} index entries, by parameter type {per_kind:?}", files.len());
    assert_eq!(files.len(), 295);
    assert!(total > 3000);
    assert!(per_kind.len() == 9, "every indexed type occurs (Special: Location.near): {per_kind:?}");
}

/// A Patient with `n` distinct names (family and one given each).
fn patient_with_names(n: usize) -> serde_json::Value {
    let names: Vec<serde_json::Value> =
        (0..n).map(|i| json!({"family": format!("Family{i}"), "given": [format!("Given{i}")]})).collect();
    json!({"resourceType": "Patient", "id": "many", "name": names})
}

/// Many repeated elements are indexed with duplicates removed in one pass (it used to compare
/// every value with every other: a Patient with 30,000 names took 23 s of CPU). What this checks is
/// the result — each distinct value once, however often it repeats — not the time, which is the
/// bench suite's business (no timed assertions in tests).
#[test]
fn repeated_elements_are_indexed_once_each() {
    let registry = common::registry();
    let mut p = patient_with_names(20_000);
    // Every name twice more: the index must not grow with the repeats.
    let twice: Vec<serde_json::Value> = p["name"].as_array().unwrap().to_vec();
    p["name"].as_array_mut().unwrap().extend(twice.iter().cloned().chain(twice.iter().cloned()));
    let entries = registry.index(&p);
    let family = strings(&entries, "family");
    assert_eq!(family.len(), 20_000);
    let distinct: std::collections::HashSet<_> = family.iter().collect();
    assert_eq!(distinct.len(), 20_000, "each family name once");
    assert_eq!(strings(&entries, "given").len(), 20_000);
}
