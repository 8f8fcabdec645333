//! Conditional create, update and delete (criteria are any search; mostly `identifier` here).

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, count, patient, race};

fn with_identifier(system: &str, value: &str) -> Value {
    let mut p = patient("Ident");
    p["identifier"] = json!([{"system": system, "value": value}]);
    p
}

async fn count_of_type(t: &TestApp, rt: &str) -> usize {
    let h = t.get(&format!("/fhir/{rt}/_history?_count=1000")).await.json();
    let mut ids: Vec<String> = h["entry"]
        .as_array()
        .map(|e| e.iter().map(|e| e["fullUrl"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids.dedup();
    ids.len()
}

#[tokio::test]
async fn if_none_exist_with_zero_one_and_two_matches() {
    let t = TestApp::spawn().await;
    let post = |body: Value, cond: &'static str| {
        t.with_body(Method::POST, "/fhir/Patient", &body).header("if-none-exist", cond)
    };

    // 0 matches: created.
    let r = t.send(post(with_identifier("urn:mrn", "1"), "identifier=urn:mrn|1")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let first_id = r.json()["id"].as_str().unwrap().to_owned();

    // 1 match: 200, the existing resource, nothing new.
    let r = t.send(post(with_identifier("urn:mrn", "1"), "identifier=urn:mrn|1")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["id"], first_id.as_str());
    assert_eq!(count_of_type(&t, "Patient").await, 1);

    // 2 matches: 412 and nothing written.
    t.create(&with_identifier("urn:dup", "x")).await;
    t.create(&with_identifier("urn:dup", "x")).await;
    let r = t.send(post(with_identifier("urn:dup", "x"), "identifier=urn:dup|x")).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "multiple-matches");
    assert_eq!(count_of_type(&t, "Patient").await, 3);

    // Token forms: code only, |code (no system), system|.
    let r = t.send(post(with_identifier("urn:mrn", "1"), "identifier=1")).await;
    assert_eq!(r.status, 200, "code-only matches any system");
    let mut no_system = patient("NoSystem");
    no_system["identifier"] = json!([{"value": "1"}]);
    let r = t.send(post(no_system.clone(), "identifier=|1")).await;
    assert_eq!(r.status, 201, "|code matches only tokens without a system");
    let r = t.send(post(no_system, "identifier=|1")).await;
    assert_eq!(r.status, 200, "and now it matches the one without a system");
    let r = t.send(post(with_identifier("urn:mrn", "1"), "identifier=urn:mrn|")).await;
    assert_eq!(r.status, 200, "system| matches any code in the system");

    // A full URL form is accepted too.
    let r = t.send(post(with_identifier("urn:mrn", "1"), "Patient?identifier=urn:mrn|1")).await;
    assert_eq!(r.status, 200);
    // Unknown criteria are refused, never ignored.
    let r = t.send(post(with_identifier("urn:mrn", "1"), "nickname=Ident")).await;
    assert_eq!(r.status, 400);
    assert!(r.outcome_issue()["diagnostics"].as_str().unwrap().contains("nickname"));
    // Any search parameter works as a criterion, not only identifiers.
    let mut named = with_identifier("urn:mrn", "77");
    named["name"] = json!([{"family": "Criterion"}]);
    named.as_object_mut().unwrap().remove("birthDate");
    assert_eq!(t.send(post(named.clone(), "family=criterion&birthdate:missing=true")).await.status, 201);
    assert_eq!(t.send(post(named, "family=criterion&birthdate:missing=true")).await.status, 200);
}

#[tokio::test]
async fn concurrent_conditional_creates_make_exactly_one() {
    let t = TestApp::spawn().await;
    let requests = (0..12)
        .map(|_| {
            t.with_body(Method::POST, "/fhir/Patient", &with_identifier("urn:race", "42"))
                .header("if-none-exist", "identifier=urn:race|42")
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 11, "{statuses:?}");
    assert_eq!(count_of_type(&t, "Patient").await, 1);
}

#[tokio::test]
async fn conditional_update_zero_one_many() {
    let t = TestApp::spawn().await;
    // 0 matches → create.
    let r = t.put("/fhir/Patient?identifier=urn:cu|1", &with_identifier("urn:cu", "1")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    // 1 match → update that resource.
    let mut changed = with_identifier("urn:cu", "1");
    changed["gender"] = json!("male");
    let r = t.put("/fhir/Patient?identifier=urn:cu|1", &changed).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["id"], id.as_str());
    assert_eq!(r.json()["meta"]["versionId"], "2");
    // A body id that differs from the match is refused.
    changed["id"] = json!("someone-else");
    let r = t.put("/fhir/Patient?identifier=urn:cu|1", &changed).await;
    assert_eq!(r.status, 400);
    // Many matches → 412.
    t.create(&with_identifier("urn:cu", "2")).await;
    t.create(&with_identifier("urn:cu", "2")).await;
    let r = t.put("/fhir/Patient?identifier=urn:cu|2", &with_identifier("urn:cu", "2")).await;
    assert_eq!(r.status, 412);
    // _id works as criteria as well.
    let mut by_id = with_identifier("urn:cu", "1");
    by_id["gender"] = json!("other");
    let r = t.put(&format!("/fhir/Patient?_id={id}"), &by_id).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["meta"]["versionId"], "3");
    // Criteria are required.
    assert_eq!(t.put("/fhir/Patient", &by_id).await.status, 400);
}

#[tokio::test]
async fn conditional_delete_zero_one_many() {
    let t = TestApp::spawn().await;
    let id = t.create(&with_identifier("urn:cd", "1")).await;
    assert_eq!(t.delete("/fhir/Patient?identifier=urn:cd|nobody").await.status, 404);
    let r = t.delete("/fhir/Patient?identifier=urn:cd|1").await;
    assert_eq!(r.status, 204);
    assert_eq!(t.get(&format!("/fhir/Patient/{id}")).await.status, 410);
    // A deleted resource no longer matches.
    assert_eq!(t.delete("/fhir/Patient?identifier=urn:cd|1").await.status, 404);

    let a = t.create(&with_identifier("urn:cd", "2")).await;
    let b = t.create(&with_identifier("urn:cd", "2")).await;
    let r = t.delete("/fhir/Patient?identifier=urn:cd|2").await;
    assert_eq!(r.status, 412);
    assert_eq!(t.get(&format!("/fhir/Patient/{a}")).await.status, 200, "nothing deleted on 412");
    assert_eq!(t.get(&format!("/fhir/Patient/{b}")).await.status, 200);
    assert_eq!(t.delete("/fhir/Patient?nickname=x").await.status, 400);
    assert_eq!(t.delete("/fhir/Patient?_count=5").await.status, 400, "criteria need at least one filter");
}
