//! Query parsing: every prefix, modifier, token form, chain, reverse chain, composite, include,
//! sort and result parameter, the error cases, and the meaning of each test checked end to end
//! against entries indexed from real resources.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing, clippy::float_cmp)]

mod common;

use common::ms;
use hearth_search::{
    Clause, ComponentValue, DateValue, Handling, Hop, Include, IndexEntry, ParamType, Prefix, ReferenceValue, Registry,
    SearchErrorKind, SearchQuery, SortKey, Summary, Test, TokenSystem, TokenValue, Total,
};
use serde_json::{Value, json};

fn pairs(q: &str) -> Vec<(String, String)> {
    q.split('&')
        .filter(|p| !p.is_empty())
        .map(|p| {
            let (k, v) = p.split_once('=').unwrap_or((p, ""));
            (k.to_string(), v.to_string())
        })
        .collect()
}

fn parse_on(reg: &Registry, ty: &str, q: &str) -> SearchQuery {
    let types: Vec<&str> = if ty.is_empty() { vec![] } else { vec![ty] };
    reg.parse_query(&types, &pairs(q), Handling::Strict).unwrap_or_else(|e| panic!("{ty}?{q}: {e}"))
}

fn parse(ty: &str, q: &str) -> SearchQuery {
    parse_on(common::registry(), ty, q)
}

fn clause(ty: &str, q: &str) -> Clause {
    let mut query = parse(ty, q);
    assert_eq!(query.clauses.len(), 1, "{q}");
    query.clauses.remove(0)
}

fn test(ty: &str, q: &str) -> Test {
    clause(ty, q).test
}

fn error(ty: &str, q: &str) -> SearchErrorKind {
    let types: Vec<&str> = if ty.is_empty() { vec![] } else { vec![ty] };
    match common::registry().parse_query(&types, &pairs(q), Handling::Strict) {
        Ok(query) => panic!("{ty}?{q} should fail, got {query:?}"),
        Err(e) => {
            assert!(!e.message.is_empty());
            e.kind
        }
    }
}

fn token(system: TokenSystem, code: Option<&str>) -> TokenValue {
    TokenValue { system, code: code.map(str::to_string) }
}

/// Whether `resource` matches every plain (hop-free) clause of `ty?q`, by the reference rules.
fn matches_on(reg: &Registry, resource: &Value, q: &str) -> bool {
    let ty = resource["resourceType"].as_str().unwrap();
    let query = parse_on(reg, ty, q);
    let entries = reg.index(resource);
    query.clauses.iter().all(|c| {
        assert!(c.path.is_empty(), "only plain clauses here");
        let mine: Vec<&hearth_search::IndexValue> =
            entries.iter().filter(|e: &&IndexEntry| e.param == c.param).map(|e| &e.value).collect();
        c.test.matches(&mine).unwrap_or_else(|| panic!("{q}: no reference semantics"))
    })
}

fn matches(resource: &Value, q: &str) -> bool {
    matches_on(common::registry(), resource, q)
}

#[test]
fn string_default_contains_exact() {
    assert_eq!(test("Patient", "name=Pé%20ter"), Test::StartsWith(vec!["pe%20ter".into()]));
    assert_eq!(test("Patient", "name=  Peter   James "), Test::StartsWith(vec!["peter james".into()]));
    assert_eq!(test("Patient", "name:contains=ETER"), Test::Contains(vec!["eter".into()]));
    assert_eq!(test("Patient", "name:exact=Peter"), Test::Exact(vec!["Peter".into()]));
    assert_eq!(test("Patient", "name=a,b"), Test::StartsWith(vec!["a".into(), "b".into()]));
    let p = common::example("Patient-example.json");
    assert!(matches(&p, "name=peter"));
    assert!(matches(&p, "name=PET"));
    assert!(!matches(&p, "name=eter"));
    assert!(matches(&p, "name:contains=eter"));
    assert!(matches(&p, "name:exact=Peter"));
    assert!(!matches(&p, "name:exact=peter"));
    assert!(matches(&p, "name=not-there,chalm"));
    assert!(!matches(&p, "name=peter&name=zzz"));
    assert!(matches(&p, "address=rainbow"));
    assert!(matches(&p, "family=CHALMERS"));
    let accented = json!({"resourceType": "Patient", "id": "a", "name": [{"family": "Núñez"}]});
    assert!(matches(&accented, "family=nunez"));
    assert!(matches(&accented, "family=NÚÑ"));
    assert!(matches(&accented, "family:exact=Núñez"));
    assert!(!matches(&accented, "family:exact=Nunez"));
}

#[test]
fn token_forms_and_modifiers() {
    use TokenSystem::*;
    assert_eq!(test("Observation", "code=1234-5"), Test::Token(vec![token(Any, Some("1234-5"))]));
    assert_eq!(
        test("Observation", "code=http://loinc.org|1234-5"),
        Test::Token(vec![token(Is("http://loinc.org".into()), Some("1234-5"))])
    );
    assert_eq!(test("Observation", "code=|1234-5"), Test::Token(vec![token(Absent, Some("1234-5"))]));
    assert_eq!(
        test("Observation", "code=http://loinc.org|"),
        Test::Token(vec![token(Is("http://loinc.org".into()), None)])
    );
    assert_eq!(test("Observation", r"code=a\|b"), Test::Token(vec![token(Any, Some("a|b"))]));
    assert_eq!(test("Observation", "code:not=x"), Test::NotToken(vec![token(Any, Some("x"))]));
    assert_eq!(test("Observation", "code:text=Body  Wéight"), Test::TokenText(vec!["body weight".into()]));
    assert_eq!(
        test("Observation", "code:in=http://vs/a,http://vs/b"),
        Test::In(vec!["http://vs/a".into(), "http://vs/b".into()])
    );
    assert_eq!(test("Observation", "code:not-in=http://vs/a"), Test::NotIn(vec!["http://vs/a".into()]));
    assert_eq!(
        test("Observation", "code:above=http://snomed.info/sct|123"),
        Test::TokenAbove(vec![token(Is("http://snomed.info/sct".into()), Some("123"))])
    );
    assert_eq!(
        test("Observation", "code:below=http://snomed.info/sct|123"),
        Test::TokenBelow(vec![token(Is("http://snomed.info/sct".into()), Some("123"))])
    );
    let Test::OfType(v) = test("Patient", "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345")
    else {
        panic!()
    };
    assert_eq!(
        (v[0].type_system.as_deref(), v[0].type_code.as_str(), v[0].value.as_str()),
        (Some("http://terminology.hl7.org/CodeSystem/v2-0203"), "MR", "12345")
    );
    assert_eq!(test("Patient", "active:missing=true"), Test::Missing(true));
    assert_eq!(test("Patient", "_id=example"), Test::Token(vec![token(Any, Some("example"))]));

    let p = common::example("Patient-example.json");
    assert!(matches(&p, "identifier=urn:oid:1.2.36.146.595.217.0.1|12345"));
    assert!(matches(&p, "identifier=12345"));
    assert!(!matches(&p, "identifier=|12345"), "the identifier has a system");
    assert!(matches(&p, "identifier=urn:oid:1.2.36.146.595.217.0.1|"));
    assert!(matches(&p, "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|MR|12345"));
    assert!(!matches(&p, "identifier:of-type=http://terminology.hl7.org/CodeSystem/v2-0203|EXT|12345"));
    assert!(matches(&p, "gender=male"));
    assert!(matches(&p, "gender=|male"), "code primitives have no system");
    assert!(!matches(&p, "gender:not=male"));
    assert!(matches(&p, "gender:not=female"));
    assert!(matches(&p, "active=true"));
    assert!(!matches(&p, "active=garbage"));
    assert!(matches(&p, "telecom=phone|(03) 5555 6473"));
    assert!(matches(&p, "telecom=|(03) 5555 6473"), "contact points are indexed with and without their system");
    assert!(!matches(&p, "telecom=email|(03) 5555 6473"));
    assert!(matches(&p, "telecom=phone|"));
    assert!(matches(&p, "active:missing=false"));
    assert!(matches(&p, "death-date:missing=true"));
    assert!(!matches(&p, "death-date:missing=false"));
    let c = json!({"resourceType": "Condition", "id": "c", "subject": {"reference": "Patient/1"},
        "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006", "display": "Diabetes mellitus type 2"}], "text": "T2DM"}});
    assert!(matches(&c, "code:text=diabetes"));
    assert!(matches(&c, "code:text=t2d"));
    assert!(!matches(&c, "code:text=mellitus"));
    assert!(matches(&c, "code=http://snomed.info/sct|44054006"));
    assert!(!matches(&c, "code=http://loinc.org|44054006"));
    assert!(matches(&c, "code:not=http://loinc.org|44054006"));
}

#[test]
fn token_errors() {
    assert_eq!(error("Observation", "code=|"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "code=a|b|c"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "code="), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "code=a,,b"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Patient", "identifier:of-type=MR|123"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Patient", "active:missing=maybe"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Patient", "gender:exact=male"), SearchErrorKind::InvalidModifier);
    assert_eq!(error("Patient", "gender:fuzzy=male"), SearchErrorKind::UnknownModifier);
    assert_eq!(error("Patient", "name:not=x"), SearchErrorKind::InvalidModifier);
}

#[test]
fn date_prefixes_and_precision() {
    let Test::Date(v) = test("Patient", "birthdate=1982") else { panic!() };
    assert_eq!(
        v,
        [DateValue { prefix: Prefix::Eq, start: ms("1982-01-01T00:00:00Z"), end: ms("1982-12-31T23:59:59.999Z") }]
    );
    for prefix in Prefix::ALL {
        let Test::Date(v) = test("Observation", &format!("date={prefix}2020-03-04T10:15")) else { panic!() };
        assert_eq!(v[0].prefix, prefix);
        if prefix != Prefix::Ap {
            assert_eq!((v[0].start, v[0].end), (ms("2020-03-04T10:15:00Z"), ms("2020-03-04T10:15:59.999Z")));
        }
    }
    let Test::Date(v) = test("Observation", "date=ap2020-03-04") else { panic!() };
    assert_eq!((v[0].start, v[0].end), (ms("2020-03-03T00:00:00Z"), ms("2020-03-05T23:59:59.999Z")), "±1 day at least");
    let Test::Date(v) = test("Observation", "date=ap2020") else { panic!() };
    let tenth = (ms("2021-01-01T00:00:00Z") - ms("2020-01-01T00:00:00Z")) / 10;
    assert_eq!(
        (v[0].start, v[0].end),
        (ms("2020-01-01T00:00:00Z") - tenth, ms("2020-12-31T23:59:59.999Z") + tenth),
        "±10% of a year"
    );
    let Test::Date(v) = test("Observation", "date=ge2020-03-04T10:15:00 01:00") else { panic!() };
    assert_eq!(v[0].start, ms("2020-03-04T09:15:00Z"), "a decoded `+` (space) still reads as an offset");
    assert_eq!(error("Patient", "birthdate=yesterday"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Patient", "birthdate=xx2020"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Patient", "birthdate=2020-13"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Patient", "birthdate:exact=2020"), SearchErrorKind::InvalidModifier);

    // Semantics against a stored day (1974-12-25) and an open period.
    let p = common::example("Patient-example.json");
    let cases = [
        ("birthdate=1974", true),
        ("birthdate=1974-12", true),
        ("birthdate=1974-12-25", true),
        ("birthdate=1974-12-26", false),
        ("birthdate=1974-12-25T10:00", false),
        ("birthdate=ne1974-12-25", false),
        ("birthdate=ne1975", true),
        ("birthdate=gt1974-12-24", true),
        ("birthdate=gt1974-12-25", false),
        ("birthdate=ge1974-12-25", true),
        ("birthdate=ge1974-12-26", false),
        ("birthdate=lt1974-12-26", true),
        ("birthdate=lt1974-12-25", false),
        ("birthdate=le1974-12-25", true),
        ("birthdate=le1974-12-24", false),
        ("birthdate=sa1974-12-24", true),
        ("birthdate=sa1974-12-25", false),
        ("birthdate=eb1974-12-26", true),
        ("birthdate=eb1974-12", false),
        ("birthdate=ap1974-12-24", true),
        ("birthdate=ap1974-12-20", false),
        ("birthdate=gt1974-12-25T12:00", true),
    ];
    for (q, want) in cases {
        assert_eq!(matches(&p, q), want, "{q}");
    }
    let enc = json!({"resourceType": "Encounter", "id": "e", "status": "in-progress", "class": {"code": "AMB"}, "period": {"start": "2020-03-04T10:00:00Z"}});
    assert!(matches(&enc, "date=gt2021"), "an open period extends after any date");
    assert!(!matches(&enc, "date=lt2020-03-04"));
    assert!(!matches(&enc, "date=eq2020-03-04"), "not contained: it goes on");
    assert!(matches(&enc, "date=ap2020-03-04"));
}

#[test]
fn number_prefixes_and_precision() {
    let Test::Number(v) = test("RiskAssessment", "probability=0.5") else { panic!() };
    assert_eq!((v[0].prefix, v[0].low, v[0].high, v[0].value.to_string()), (Prefix::Eq, 0.45, 0.55, "0.5".to_string()));
    let Test::Number(v) = test("RiskAssessment", "probability=ap100") else { panic!() };
    assert_eq!((v[0].low, v[0].high), (90.0, 110.0));
    assert_eq!(error("RiskAssessment", "probability=abc"), SearchErrorKind::InvalidValue);
    let mut reg = common::own_registry();
    reg.add(&common::fixture("searchparameter-patient-multiplebirth.json")).unwrap();
    let p = json!({"resourceType": "Patient", "id": "t", "multipleBirthInteger": 3});
    let cases = [
        ("multiplebirth=3", true),
        ("multiplebirth=3.0", false),
        ("multiplebirth=4", false),
        ("multiplebirth=ne3", false),
        ("multiplebirth=le3", true),
        ("multiplebirth=lt3", false),
        ("multiplebirth=ge3", true),
        ("multiplebirth=gt3", false),
        ("multiplebirth=gt2", true),
        ("multiplebirth=lt4", true),
        ("multiplebirth=sa2", true),
        ("multiplebirth=sa3", false),
        ("multiplebirth=eb4", true),
        ("multiplebirth=eb3", false),
        ("multiplebirth=ap3.2", true),
        ("multiplebirth=1e1", false),
        ("multiplebirth=2,3", true),
    ];
    for (q, want) in cases {
        assert_eq!(matches_on(&reg, &p, q), want, "{q}");
    }
}

#[test]
fn quantity_values_units_and_canonical_comparison() {
    let Test::Quantity(v) = test("Observation", "value-quantity=ge5.4|http://unitsofmeasure.org|mmol/L") else {
        panic!()
    };
    assert_eq!(
        (v[0].prefix, v[0].system.as_deref(), v[0].code.as_deref()),
        (Prefix::Ge, Some("http://unitsofmeasure.org"), Some("mmol/L"))
    );
    assert_eq!(v[0].canonical.as_ref().unwrap().unit, "m-3.mol");
    let Test::Quantity(v) = test("Observation", "value-quantity=5.4||mg") else { panic!() };
    assert!(v[0].system.is_none() && v[0].canonical.is_some(), "no system: the code is read as UCUM when it is one");
    let Test::Quantity(v) = test("Observation", "value-quantity=5.4") else { panic!() };
    assert!(v[0].code.is_none() && v[0].canonical.is_none());
    assert_eq!(error("Observation", "value-quantity=5.4|mg"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "value-quantity=kg"), SearchErrorKind::InvalidValue);

    let weight = common::fixture("Observation-example.json"); // 185 [lb_av], unit "lbs"
    let flow = common::fixture("Observation-656.json"); // 820 cL/s, code 265201 (not UCUM)
    let cases = [
        ("value-quantity=185|http://unitsofmeasure.org|[lb_av]", true, false),
        ("value-quantity=185|http://unitsofmeasure.org|lbs", true, false),
        ("value-quantity=185||[lb_av]", true, false),
        ("value-quantity=185||lbs", true, false),
        ("value-quantity=185", true, false),
        ("value-quantity=ge185", true, true),
        ("value-quantity=gt185", false, true),
        ("value-quantity=gt185||lbs", false, false),
        ("value-quantity=84|http://unitsofmeasure.org|kg", true, false),
        ("value-quantity=83914|http://unitsofmeasure.org|g", false, false),
        ("value-quantity=84.1|http://unitsofmeasure.org|[kg]", false, false),
        ("value-quantity=820|urn:iso:std:iso:11073:10101|265201", false, true),
        ("value-quantity=820|urn:iso:std:iso:11073:10101|cL/s", false, true),
        ("value-quantity=820|urn:iso:std:iso:11073:10101|cl/s", false, true),
        ("value-quantity=820||265201", false, true),
        ("value-quantity=lt100|http://unitsofmeasure.org|kg", true, false),
        ("value-quantity=ap180||lbs", true, false),
    ];
    for (q, w, f) in cases {
        assert_eq!((matches(&weight, q), matches(&flow, q)), (w, f), "{q}");
    }
    let temp = json!({"resourceType": "Observation", "id": "t", "status": "final", "code": {"text": "t"},
        "valueQuantity": {"value": 37.0, "unit": "°C", "system": "http://unitsofmeasure.org", "code": "Cel"}});
    assert!(matches(&temp, "value-quantity=99|http://unitsofmeasure.org|[degF]"));
    // 37.0 °C stands for 36.95..37.05 °C, wider than 98.6 °F (98.55..98.65 °F): not contained,
    // so not `eq`; `ap` finds it.
    assert!(!matches(&temp, "value-quantity=98.6|http://unitsofmeasure.org|[degF]"));
    assert!(matches(&temp, "value-quantity=ap98.6|http://unitsofmeasure.org|[degF]"));
    assert!(matches(&temp, "value-quantity=gt98|http://unitsofmeasure.org|[degF]"));
    assert!(!matches(&temp, "value-quantity=gt99|http://unitsofmeasure.org|[degF]"));
}

#[test]
fn reference_values_type_modifiers_and_identifier() {
    let t = test("Observation", "subject=Patient/example");
    assert_eq!(
        t,
        Test::Reference {
            type_modifier: None,
            values: vec![ReferenceValue::Local {
                target_type: Some("Patient".into()),
                id: "example".into(),
                version: None
            }]
        }
    );
    assert_eq!(
        test("Observation", "subject=example"),
        Test::Reference {
            type_modifier: None,
            values: vec![ReferenceValue::Local { target_type: None, id: "example".into(), version: None }]
        }
    );
    assert_eq!(
        test("Observation", "subject:Patient=example"),
        Test::Reference {
            type_modifier: Some("Patient".into()),
            values: vec![ReferenceValue::Local { target_type: None, id: "example".into(), version: None }]
        }
    );
    assert_eq!(
        test("Observation", "subject=Patient/1/_history/2,http://x.org/fhir/Patient/3"),
        Test::Reference {
            type_modifier: None,
            values: vec![
                ReferenceValue::Local {
                    target_type: Some("Patient".into()),
                    id: "1".into(),
                    version: Some("2".into())
                },
                ReferenceValue::Url { url: "http://x.org/fhir/Patient/3".into(), version: None },
            ]
        }
    );
    assert_eq!(
        test("PlanDefinition", "depends-on=http://x.org/Library/lib|1.0"),
        Test::Reference {
            type_modifier: None,
            values: vec![ReferenceValue::Url { url: "http://x.org/Library/lib".into(), version: Some("1.0".into()) }]
        }
    );
    assert_eq!(
        test("Observation", "subject:identifier=urn:mrn|123"),
        Test::ReferenceIdentifier(vec![token(TokenSystem::Is("urn:mrn".into()), Some("123"))])
    );
    assert!(matches!(test("Location", "partof:below=Location/1"), Test::ReferenceBelow(_)));
    assert!(matches!(test("Location", "partof:above=Location/1"), Test::ReferenceAbove(_)));
    assert_eq!(test("Observation", "subject:missing=true"), Test::Missing(true));
    assert_eq!(error("Observation", "subject=Nope/1"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "subject=Patient/1/2"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "subject=bad id"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "subject:Practitioner=1"), SearchErrorKind::InvalidModifier);
    assert_eq!(error("Observation", "subject:Nope=1"), SearchErrorKind::UnknownModifier);
    assert_eq!(error("Observation", "subject:exact=1"), SearchErrorKind::InvalidModifier);

    let obs = common::fixture("Observation-example.json");
    assert!(matches(&obs, "subject=Patient/example"));
    assert!(matches(&obs, "subject=example"));
    assert!(matches(&obs, "subject:Patient=example"));
    assert!(matches(&obs, "subject:Patient=Patient/example"));
    assert!(!matches(&obs, "subject:Device=Patient/example"), "type modifier and value disagree: nothing");
    assert!(!matches(&obs, "subject=Patient/other"));
    assert!(!matches(&obs, "subject=Group/example"));
    let with_ident = json!({"resourceType": "Observation", "id": "o", "status": "final", "code": {"text": "x"},
        "subject": {"identifier": {"system": "urn:mrn", "value": "123"}}});
    assert!(matches(&with_ident, "subject:identifier=urn:mrn|123"));
    assert!(matches(&with_ident, "subject:identifier=123"));
    assert!(!matches(&with_ident, "subject:identifier=|123"));
}

#[test]
fn uri_and_composite_values() {
    assert_eq!(test("ValueSet", "url=http://x.org/vs"), Test::Uri(vec!["http://x.org/vs".into()]));
    assert_eq!(test("ValueSet", "url:below=http://x.org/"), Test::UriBelow(vec!["http://x.org/".into()]));
    assert_eq!(test("ValueSet", "url:above=http://x.org/a/b"), Test::UriAbove(vec!["http://x.org/a/b".into()]));
    assert_eq!(error("ValueSet", "url:contains=x"), SearchErrorKind::InvalidModifier);
    let vs = common::example("ValueSet-example-extensional.json");
    let url = vs["url"].as_str().unwrap().to_string();
    assert!(matches(&vs, &format!("url={url}")));
    assert!(matches(&vs, "url:below=http://hl7.org/fhir/"));
    assert!(!matches(&vs, "url=http://hl7.org/fhir/"));
    assert!(matches(&vs, &format!("url:above={url}/sub")));

    let Test::Composite(v) =
        test("Observation", "code-value-quantity=http://loinc.org|29463-7$gt180|http://unitsofmeasure.org|[lb_av]")
    else {
        panic!()
    };
    assert_eq!(v.len(), 1);
    assert!(matches!(&v[0].0[0], ComponentValue::Token(t) if t.code.as_deref() == Some("29463-7")));
    assert!(matches!(&v[0].0[1], ComponentValue::Quantity(q) if q.prefix == Prefix::Gt));
    let weight = common::fixture("Observation-example.json");
    let bp = common::fixture("Observation-blood-pressure.json");
    let flow = common::fixture("Observation-656.json");
    let cases = [
        ("code-value-quantity=http://loinc.org|29463-7$185|http://unitsofmeasure.org|[lb_av]", [true, false, false]),
        ("code-value-quantity=http://loinc.org|29463-7$186|http://unitsofmeasure.org|[lb_av]", [false, false, false]),
        ("code-value-quantity=http://loinc.org|29463-7", [true, false, false]),
        // Per-component OR lists (fhir-candle's reading) expand to every combination.
        (
            "code-value-quantity=http://loinc.org|29463-7,http://example.org|testing$185|http://unitsofmeasure.org|[lb_av]",
            [true, false, false],
        ),
        (
            "code-value-quantity=http://loinc.org|29463-7,urn:iso:std:iso:11073:10101|152584$185|http://unitsofmeasure.org|[lb_av],820|urn:iso:std:iso:11073:10101|265201",
            [true, false, true],
        ),
        ("component-code-value-quantity=http://loinc.org|8480-6$gt100", [false, true, false]),
        ("component-code-value-quantity=http://loinc.org|8480-6$gt200", [false, false, false]),
    ];
    for (q, want) in cases {
        assert_eq!([matches(&weight, q), matches(&bp, q), matches(&flow, q)], want, "{q}");
    }
    let Test::Composite(v) = test("Observation", "code-value-quantity=a,b$1,2") else { panic!() };
    assert_eq!(v.len(), 4);
    assert_eq!(error("Observation", "code-value-quantity=a$1$2"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "code-value-quantity=a$"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "code-value-quantity:exact=a$1"), SearchErrorKind::InvalidModifier);
    // Escaped `$` stays inside a part.
    let Test::Composite(v) = test("Observation", r"code-value-string=x$a\$b") else { panic!() };
    assert_eq!(v[0].0[1], ComponentValue::String("a$b".into()));
}

#[test]
fn chains_resolve_target_types() {
    let c = clause("Observation", "subject:Patient.name=peter");
    assert_eq!(c.path, [Hop::Chain { param: "subject".into(), target_types: vec!["Patient".into()] }]);
    assert_eq!((c.param.as_str(), c.kind), ("name", ParamType::String));
    // Without a type: the targets that define `name` (with one type for it).
    let c = clause("Observation", "subject.name=peter");
    assert_eq!(
        c.path,
        [Hop::Chain { param: "subject".into(), target_types: vec!["Location".into(), "Patient".into()] }]
    );
    let c = clause("Observation", "subject._id=example");
    assert_eq!(
        c.path,
        [Hop::Chain {
            param: "subject".into(),
            target_types: vec!["Device".into(), "Group".into(), "Location".into(), "Patient".into()]
        }]
    );
    // Several levels, modifiers on the last link.
    let c = clause("Observation", "subject:Patient.organization.name:exact=Acme");
    assert_eq!(
        c.path,
        [
            Hop::Chain { param: "subject".into(), target_types: vec!["Patient".into()] },
            Hop::Chain { param: "organization".into(), target_types: vec!["Organization".into()] },
        ]
    );
    assert_eq!(c.test, Test::Exact(vec!["Acme".into()]));
    let c = clause("Encounter", "patient.general-practitioner:Practitioner.name=smith");
    assert_eq!(c.path.len(), 2);
    assert_eq!(c.key(), "patient:Patient.general-practitioner:Practitioner.name");
    // Ambiguous: `type` is a token on some targets of AuditEvent.entity and a uri on others.
    assert_eq!(error("AuditEvent", "entity.type=x"), SearchErrorKind::AmbiguousChain);
    assert!(parse("AuditEvent", "entity:Patient._id=x").clauses.len() == 1);
    assert_eq!(error("Observation", "subject.nosuch=x"), SearchErrorKind::UnknownParameter);
    assert_eq!(error("Observation", "code.name=x"), SearchErrorKind::InvalidParameter);
    assert_eq!(error("Observation", "subject:Practitioner.name=x"), SearchErrorKind::InvalidModifier);
    assert_eq!(error("Observation", "subject:Nope.name=x"), SearchErrorKind::UnknownResourceType);
    assert_eq!(error("Observation", "a.b.c.d.e.f.g=x"), SearchErrorKind::UnknownParameter);
}

#[test]
fn reverse_chains_including_nested() {
    let c = clause("Patient", "_has:Observation:patient:code=1234-5");
    assert_eq!(c.path, [Hop::Has { source_type: "Observation".into(), param: "patient".into() }]);
    assert_eq!((c.param.as_str(), c.kind), ("code", ParamType::Token));
    let c = clause("Patient", "_has:Observation:subject:_id=blood-pressure");
    assert_eq!(c.path, [Hop::Has { source_type: "Observation".into(), param: "subject".into() }]);
    let c = clause("Patient", "_has:Observation:patient:_has:AuditEvent:entity:agent=Practitioner/1");
    assert_eq!(
        c.path,
        [
            Hop::Has { source_type: "Observation".into(), param: "patient".into() },
            Hop::Has { source_type: "AuditEvent".into(), param: "entity".into() },
        ]
    );
    assert_eq!(c.param, "agent");
    let c = clause("Patient", "_has:Observation:patient:performer:Practitioner.name=smith");
    assert_eq!(c.path[1], Hop::Chain { param: "performer".into(), target_types: vec!["Practitioner".into()] });
    assert_eq!(c.key(), "_has:Observation:patient:performer:Practitioner.name");
    let c = clause("Patient", "_has:Observation:patient:code:not=x");
    assert!(matches!(c.test, Test::NotToken(_)));
    assert_eq!(error("Patient", "_has:Observation:patient=x"), SearchErrorKind::InvalidParameter);
    assert_eq!(error("Patient", "_has:Nope:patient:code=x"), SearchErrorKind::UnknownResourceType);
    assert_eq!(error("Patient", "_has:Observation:code:code=x"), SearchErrorKind::InvalidParameter);
    assert_eq!(error("Patient", "_has:Observation:nosuch:code=x"), SearchErrorKind::UnknownParameter);
    assert!(
        parse("Patient", "_has:Observation:performer:code=x").clauses.len() == 1,
        "performer may point at a Patient"
    );
    assert_eq!(
        error("Patient", "_has:Observation:encounter:code=x"),
        SearchErrorKind::InvalidParameter,
        "encounter never points at a Patient"
    );
}

#[test]
fn result_parameters() {
    let q = parse(
        "Observation",
        "_sort=-date,status,_lastUpdated&_count=10&_total=accurate&_summary=count&_elements=code,subject,code",
    );
    assert_eq!(
        q.sort,
        [
            SortKey { param: "date".into(), kind: ParamType::Date, descending: true },
            SortKey { param: "status".into(), kind: ParamType::Token, descending: false },
            SortKey { param: "_lastUpdated".into(), kind: ParamType::Date, descending: false },
        ]
    );
    assert_eq!((q.count, q.total, q.summary), (10, Some(Total::Accurate), Some(Summary::Count)));
    assert_eq!(q.elements, ["code", "subject"]);
    assert!(q.clauses.is_empty());
    let q = parse("Observation", "");
    assert_eq!((q.count, q.total, q.summary), (50, None, None));
    assert_eq!(parse("Observation", "_count=5000").count, 1000);
    assert_eq!(parse("Observation", "_count=0").count, 0);
    for s in ["true", "text", "data", "count", "false"] {
        assert_eq!(parse("Observation", &format!("_summary={s}")).summary.unwrap().as_str(), s);
    }
    for t in ["none", "estimate", "accurate"] {
        assert_eq!(parse("Observation", &format!("_total={t}")).total.unwrap().as_str(), t);
    }
    assert_eq!(error("Observation", "_count=-1"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_count=ten"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_count=1&_count=2"), SearchErrorKind::InvalidParameter);
    assert_eq!(error("Observation", "_total=some"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_summary=yes"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_sort=code-value-quantity"), SearchErrorKind::InvalidParameter);
    assert_eq!(error("Observation", "_sort=nosuch"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_sort=subject.name"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_sort=date,"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_elements=a b"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_count:exact=1"), SearchErrorKind::InvalidModifier);
    // Ignored: handled by the HTTP layer.
    let q = parse("Observation", "_format=json&_pretty=true");
    assert!(q.clauses.is_empty() && q.ignored.is_empty());
}

#[test]
fn includes_and_revincludes() {
    let q = parse(
        "Observation",
        "_include=Observation:patient&_include=Observation:subject:Patient&_include:iterate=Patient:general-practitioner&_include=*&_include=Observation:*",
    );
    assert_eq!(
        q.include,
        [
            Include {
                source_type: Some("Observation".into()),
                param: Some("patient".into()),
                target_type: None,
                iterate: false
            },
            Include {
                source_type: Some("Observation".into()),
                param: Some("subject".into()),
                target_type: Some("Patient".into()),
                iterate: false
            },
            Include {
                source_type: Some("Patient".into()),
                param: Some("general-practitioner".into()),
                target_type: None,
                iterate: true
            },
            Include { source_type: None, param: None, target_type: None, iterate: false },
            Include { source_type: Some("Observation".into()), param: None, target_type: None, iterate: false },
        ]
    );
    let q = parse(
        "Patient",
        "_revinclude=Observation:patient&_revinclude:iterate=Provenance:target&_revinclude:recurse=Observation:has-member",
    );
    assert_eq!(q.revinclude.len(), 3);
    assert!(q.revinclude[1].iterate && q.revinclude[2].iterate);
    assert_eq!(error("Observation", "_include=Observation:code"), SearchErrorKind::InvalidParameter);
    assert_eq!(error("Observation", "_include=Observation:nosuch"), SearchErrorKind::InvalidValue);
    assert_eq!(
        error("Observation", "_include=Patient:organization"),
        SearchErrorKind::InvalidValue,
        "not a searched type without :iterate"
    );
    assert_eq!(error("Observation", "_include=Observation:subject:Practitioner"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_include=Nope:subject"), SearchErrorKind::UnknownResourceType);
    assert_eq!(error("Observation", "_include=Observation"), SearchErrorKind::InvalidValue);
    assert_eq!(error("Observation", "_include:deep=Observation:subject"), SearchErrorKind::UnknownModifier);
    assert_eq!(
        error("Patient", "_revinclude=Observation:encounter"),
        SearchErrorKind::InvalidValue,
        "encounter never points at a Patient"
    );
}

#[test]
fn system_level_type_list_text_and_content() {
    let q = parse("", "_type=Patient,Observation&_id=example");
    assert_eq!(q.resource_types, ["Patient", "Observation"]);
    assert_eq!(q.type_filter, ["Patient", "Observation"]);
    let q = parse("", "_lastUpdated=gt2020");
    assert_eq!(q.resource_types.len(), 147);
    assert_eq!(error("", "name=x"), SearchErrorKind::UnknownParameter, "not every type has `name`");
    assert!(parse("", "_type=Patient,Practitioner&name=x").clauses.len() == 1);
    assert_eq!(error("", "_type=Patient,Observation&code=x"), SearchErrorKind::UnknownParameter);
    assert_eq!(error("", "_type=Nope"), SearchErrorKind::UnknownResourceType);
    assert_eq!(error("Patient", "_type=Observation"), SearchErrorKind::InvalidValue);
    assert!(common::registry().parse_query(&["Nope"], &[], Handling::Strict).is_err());

    let c = clause("Patient", "_list=42,$current-allergies");
    assert_eq!(
        (c.param.as_str(), c.kind, c.test),
        ("_list", ParamType::Special, Test::List(vec!["42".into(), "$current-allergies".into()]))
    );
    assert_eq!(error("Patient", "_list:missing=true"), SearchErrorKind::InvalidModifier);

    assert_eq!(
        test("Patient", "_text=Peter  Chalmers,jim"),
        Test::Text(vec![vec!["peter".into(), "chalmers".into()], vec!["jim".into()]])
    );
    let p = common::example("Patient-example.json");
    assert!(matches(&p, "_text=chalmers peter"));
    assert!(!matches(&p, "_text=chalmers zebra"));
    assert!(matches(&p, "_content=pleasantville"));
    assert!(matches(&p, "_content=benedicte"));
    assert_eq!(error("Patient", "_query=everything"), SearchErrorKind::UnsupportedParameter);
    // `near` (issue 18): Location-1 stands at 42.2547548 N, 83.6945691 W.
    let loc = common::example("Location-1.json");
    assert!(matches(&loc, "near=42.25|-83.69|11.2|km"));
    assert!(matches(&loc, "near=42.26|-83.70|2000|m"));
    assert!(!matches(&loc, "near=42.26|-83.70|100|m"));
    assert!(!matches(&loc, "near=-83.69|42.25|11.2|km"), "latitude first, as the spec says");
    error("Location", "near=91|0|1|km");
    error("Location", "near=abc");
    assert_eq!(error("Patient", "_contained=true"), SearchErrorKind::UnsupportedParameter);
}

#[test]
fn unknown_parameters_strict_and_lenient() {
    assert_eq!(error("Patient", "nosuch=1"), SearchErrorKind::UnknownParameter);
    let e = common::registry().parse_query(&["Patient"], &pairs("name=x&nosuch=1"), Handling::Strict).unwrap_err();
    assert_eq!(e.param, "nosuch");
    assert_eq!(e.kind.code(), "unknown-parameter");
    assert!(e.to_string().contains("nosuch"));
    let q = common::registry()
        .parse_query(
            &["Patient"],
            &pairs("name=x&nosuch=1&nosuch:exact=2&_contained=true&subject.x=1"),
            Handling::Lenient,
        )
        .unwrap();
    assert_eq!(q.clauses.len(), 1);
    assert_eq!(q.ignored, ["nosuch", "nosuch:exact", "_contained", "subject.x"]);
    assert!(!q.to_query_string().contains("nosuch"));
    // Malformed values of known parameters are still errors under lenient handling.
    let e = common::registry().parse_query(&["Patient"], &pairs("birthdate=soon"), Handling::Lenient).unwrap_err();
    assert_eq!((e.kind, e.param.as_str()), (SearchErrorKind::InvalidValue, "birthdate"));
    let e = common::registry().parse_query(&["Patient"], &pairs("name:fuzzy=x"), Handling::Lenient).unwrap_err();
    assert_eq!(e.kind, SearchErrorKind::UnknownModifier);
}

#[test]
fn canonical_query_string() {
    let q = parse(
        "Observation",
        "subject:Patient.name=Peter%20Pan&code=http://loinc.org|1234-5,x&_count=10&date=ge2020&_sort=-date&_include=Observation:patient&code:text=a\\,b&_summary=true&_total=none&_elements=code",
    );
    assert_eq!(
        q.to_query_string(),
        "code=http://loinc.org|1234-5,x&code:text=a%5C,b&date=ge2020&subject:Patient.name=Peter%2520Pan&_sort=-date&_count=10&_total=none&_summary=true&_elements=code&_include=Observation:patient"
    );
    let q = parse("", "_type=Patient&_revinclude:iterate=Observation:patient&_has:Observation:patient:code=x");
    assert_eq!(
        q.to_query_string(),
        "_has:Observation:patient:code=x&_type=Patient&_count=50&_revinclude:iterate=Observation:patient"
    );
    // Parsing the canonical string (decoded) gives the same query back.
    let original = parse("Observation", "date=ge2020,lt2019&subject=Patient/1&status:not=final&_sort=status&_count=7");
    let decoded: Vec<(String, String)> = pairs(&original.to_query_string());
    let again = common::registry().parse_query(&["Observation"], &decoded, Handling::Strict).unwrap();
    assert_eq!(again, SearchQuery { clauses: again.clauses.clone(), ..original.clone() });
    let mut a = again.clauses.clone();
    let mut b = original.clauses.clone();
    a.sort_by_key(Clause::key);
    b.sort_by_key(Clause::key);
    assert_eq!(a, b);
}
