//! The public API: context services, variables, the clock, error values.

#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic, clippy::indexing_slicing)]

use hearth_fhirpath::{Context, DateTime, Item, Terminology, TraceSink, parse};
use serde_json::{Value, json};
use std::cell::RefCell;

fn now() -> DateTime {
    DateTime::parse("2024-05-01T22:30:00.000+02:00").unwrap()
}

struct Vitals;

impl Terminology for Vitals {
    fn member_of(&self, code: &Value, value_set: &str) -> Option<bool> {
        if value_set != "http://example.org/vs/vitals" {
            return None;
        }
        let codes: Vec<&str> = match code {
            Value::String(s) => vec![s.as_str()],
            Value::Object(o) if o.contains_key("coding") => {
                o["coding"].as_array().into_iter().flatten().filter_map(|c| c["code"].as_str()).collect()
            }
            Value::Object(o) => o.get("code").and_then(Value::as_str).into_iter().collect(),
            _ => vec![],
        };
        Some(codes.contains(&"8867-4"))
    }
}

#[test]
fn member_of_goes_through_the_terminology_service() {
    let obs = json!({"resourceType": "Observation",
        "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}});
    let e = parse("Observation.code.memberOf('http://example.org/vs/vitals')").unwrap();
    // No service: unknown, i.e. empty.
    assert!(e.evaluate(&Context::new(now()), &obs).unwrap().is_empty());
    let ctx = Context::new(now()).with_terminology(&Vitals);
    assert_eq!(e.evaluate_bool(&ctx, &obs).unwrap(), Some(true));
    let e = parse("Observation.code.memberOf('http://example.org/vs/other')").unwrap();
    assert!(e.evaluate(&ctx, &obs).unwrap().is_empty());
}

#[derive(Default)]
struct Recorder(RefCell<Vec<(String, usize)>>);

impl TraceSink for Recorder {
    fn trace(&self, name: &str, values: &[Item<'_>]) {
        self.0.borrow_mut().push((name.to_string(), values.len()));
    }
}

#[test]
fn trace_reports_to_the_sink_and_passes_input_through() {
    let rec = Recorder::default();
    let ctx = Context::new(now()).with_tracer(&rec);
    let p = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}]});
    let out = parse("Patient.name.given.trace('g').count()").unwrap().evaluate(&ctx, &p).unwrap();
    assert_eq!(out[0].to_json(), json!(2));
    assert_eq!(rec.0.borrow().as_slice(), &[("g".to_string(), 2)]);
}

#[test]
fn clock_is_the_callers() {
    let ctx = Context::new(now());
    let v = json!({});
    let e = parse("today() = @2024-05-01 and now() = @2024-05-01T22:30:00.000+02:00 and timeOfDay() = @T22:30:00.000")
        .unwrap();
    assert_eq!(e.evaluate_bool(&ctx, &v).unwrap(), Some(true));
    // Date/times without an offset are read in the clock's timezone.
    let e = parse("@2024-05-01T22:30:00.000 = now()").unwrap();
    assert_eq!(e.evaluate_bool(&ctx, &v).unwrap(), Some(true));
}

#[test]
fn variables_and_environment() {
    let qr = json!({"resourceType": "QuestionnaireResponse",
        "item": [{"linkId": "weight", "answer": [{"valueDecimal": 72.5}]},
                 {"linkId": "height", "answer": [{"valueDecimal": 1.8}]}]});
    let threshold = json!(20);
    let ctx = Context::new(now()).with_resource(&qr).with_json_var("threshold", &threshold);
    // A calculatedExpression-style BMI.
    let e = parse(
        "(%resource.item.where(linkId='weight').answer.value / \
          %resource.item.where(linkId='height').answer.value.power(2)).round(1)",
    )
    .unwrap();
    assert_eq!(e.evaluate(&ctx, &qr).unwrap()[0].to_json(), json!(22.4));
    let e = parse("%resource.item.answer.value.first() > %threshold").unwrap();
    assert_eq!(e.evaluate_bool(&ctx, &qr).unwrap(), Some(true));
    assert_eq!(parse("%loinc").unwrap().evaluate(&ctx, &qr).unwrap()[0].to_json(), json!("http://loinc.org"));
    assert_eq!(
        parse("%`vs-administrative-gender`").unwrap().evaluate(&ctx, &qr).unwrap()[0].to_json(),
        json!("http://hl7.org/fhir/ValueSet/administrative-gender")
    );
    assert!(parse("%nope").unwrap().evaluate(&ctx, &qr).is_err());
}

#[test]
fn runtime_type_errors_are_values_not_panics() {
    let ctx = Context::new(now());
    let p = json!({"resourceType": "Patient", "name": [{"given": ["a", "b"]}], "active": true});
    for src in [
        "Patient.name.given + 1",
        "Patient.name.given.single()",
        "'a' < 1",
        "Patient.name.given.substring(0)",
        "conformsTo('http://hl7.org/fhir/StructureDefinition/Patient')",
        "Patient.active.is(NoSuchType)",
        "(1 | 2) = (1 | 2).not()",
    ] {
        let e = parse(src).unwrap();
        let err = e.evaluate(&ctx, &p).unwrap_err();
        assert!(!err.message.is_empty(), "{src}");
    }
}

#[test]
fn parse_errors_carry_positions() {
    for (src, pos) in [("Patient.name.", 13), ("1 + ", 4), ("foo(", 4), ("'unterminated", 0), ("a.nosuch()", 2)] {
        let err = parse(src).unwrap_err();
        assert_eq!(err.position, pos, "{src}: {err}");
    }
}

#[test]
fn expressions_are_shareable_across_threads() {
    fn assert_send_sync<T: Send + Sync>() {}
    assert_send_sync::<hearth_fhirpath::Expression>();
    let e = std::sync::Arc::new(parse("Patient.id").unwrap());
    let handles: Vec<_> = (0..4)
        .map(|i| {
            let e = e.clone();
            std::thread::spawn(move || {
                let p = json!({"resourceType": "Patient", "id": format!("p{i}")});
                let ctx = Context::new(now());
                e.evaluate(&ctx, &p).unwrap()[0].to_json()
            })
        })
        .collect();
    for (i, h) in handles.into_iter().enumerate() {
        assert_eq!(h.join().unwrap(), json!(format!("p{i}")));
    }
}

#[test]
fn result_nodes_can_be_located_for_patch() {
    let p = json!({"resourceType": "Patient",
        "name": [{"given": ["a"]}, {"given": ["b", null], "_given": [null, {"id": "x"}]}]});
    let ctx = Context::new(now());
    let out = parse("Patient.name.given").unwrap().evaluate(&ctx, &p).unwrap();
    let pointers: Vec<String> = out
        .iter()
        .map(|i| match i {
            Item::Node(n) => n.json_pointer(&p).unwrap(),
            other => panic!("not a node: {other:?}"),
        })
        .collect();
    assert_eq!(pointers, ["/name/0/given/0", "/name/1/given/0", "/name/1/given/1"]);
    assert_eq!(p.pointer(&pointers[1]), Some(&json!("b")));
}

#[test]
fn replace_matches_uses_numbered_groups() {
    let ctx = Context::new(now());
    let v = json!({});
    let e = parse(r"'2024-05-01'.replaceMatches('(\\d+)-(\\d+)-(\\d+)', '$3.$2.$1x')").unwrap();
    assert_eq!(e.evaluate(&ctx, &v).unwrap()[0].to_json(), json!("01.05.2024x"));
}
