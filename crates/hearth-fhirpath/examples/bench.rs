//! Rough throughput check: `cargo run --release -p hearth-fhirpath --example bench`.
//! Compiles a few search-parameter style expressions once and evaluates
//! them many times against one resource.

use hearth_fhirpath::{Context, DateTime, parse};
use serde_json::json;
use std::time::Instant;

fn main() {
    let Some(now) = DateTime::parse("2024-05-01T12:00:00Z") else {
        return;
    };
    let ctx = Context::new(now);
    let patient = json!({
        "resourceType": "Patient", "id": "p1", "active": true, "gender": "female",
        "birthDate": "1980-02-03",
        "name": [{"use": "official", "family": "Doe", "given": ["Jane", "Q"]},
                 {"use": "nickname", "given": ["JJ"]}],
        "telecom": [{"system": "phone", "value": "555-1234"}, {"system": "email", "value": "j@x.org"}],
        "identifier": [{"system": "urn:mrn", "value": "123"}],
        "generalPractitioner": [{"reference": "Practitioner/9"}]
    });
    let exprs = [
        "Patient.name.where(use='official').family",
        "Patient.telecom.where(system='phone') | Person.telecom.where(system='phone')",
        "Patient.generalPractitioner.where(resolve() is Practitioner)",
        "Patient.birthDate < @2000-01-01 and Patient.active",
        "Patient.name.given.count() > 2",
    ];
    let n = 200_000;
    for src in exprs {
        let Ok(e) = parse(src) else { continue };
        let start = Instant::now();
        let mut total = 0;
        for _ in 0..n {
            total += e.evaluate(&ctx, &patient).map(|c| c.len()).unwrap_or(0);
        }
        let per = start.elapsed().as_nanos() as f64 / f64::from(n);
        println!("{per:>8.0} ns/eval  ({total} items)  {src}");
    }
    let start = Instant::now();
    for _ in 0..n {
        let _ = parse("Patient.name.where(use='official').family");
    }
    let per = start.elapsed().as_nanos() as f64 / f64::from(n);
    println!("{per:>8.0} ns/parse");
}
