//! Every bad request gets a clear OperationOutcome, never a 500, and nothing half-written.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, patient};

async fn nothing_written(t: &TestApp) {
    let h = t.get("/fhir/_history").await.json();
    assert!(h["entry"].as_array().is_none_or(|e| e.is_empty()), "something was written: {h}");
}

#[tokio::test]
async fn malformed_json_is_400() {
    let t = TestApp::spawn().await;
    let r = t
        .send(
            t.request(Method::POST, "/fhir/Patient")
                .header("content-type", "application/fhir+json")
                .body("{\"resourceType\": "),
        )
        .await;
    assert_eq!(r.status, 400);
    assert_eq!(r.outcome_issue()["code"], "structure");
    let r = t
        .send(t.request(Method::POST, "/fhir/Patient").header("content-type", "application/fhir+json").body("[1,2]"))
        .await;
    assert_eq!(r.status, 400);
    nothing_written(&t).await;
}

#[tokio::test]
async fn unknown_element_is_rejected_naming_the_path() {
    let t = TestApp::spawn().await;
    let mut p = patient("X");
    p["favouriteColour"] = json!("blue");
    let r = t.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let issue = r.outcome_issue();
    assert_eq!(issue["code"], "structure");
    assert!(issue["expression"][0].as_str().unwrap().contains("favouriteColour"), "{issue}");
    nothing_written(&t).await;
}

#[tokio::test]
async fn wrong_primitive_and_bad_format_are_rejected() {
    let t = TestApp::spawn().await;
    let mut p = patient("X");
    p["birthDate"] = json!("1980-13-45");
    let r = t.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.outcome_issue()["expression"][0].as_str().unwrap().contains("birthDate"));
    let mut p = patient("X");
    p["active"] = json!("yes");
    let r = t.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.outcome_issue()["expression"][0].as_str().unwrap().contains("active"));
    nothing_written(&t).await;
}

#[tokio::test]
async fn missing_required_element_is_rejected() {
    let t = TestApp::spawn().await;
    // Observation.status and Observation.code are 1..1.
    let r = t.post("/fhir/Observation", &json!({"resourceType": "Observation", "status": "final"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let issue = r.outcome_issue();
    assert_eq!(issue["code"], "required");
    assert!(issue["expression"][0].as_str().unwrap().contains("code"), "{issue}");
    nothing_written(&t).await;
}

#[tokio::test]
async fn resource_type_must_match_the_url_and_exist() {
    let t = TestApp::spawn().await;
    let r = t.post("/fhir/Practitioner", &patient("X")).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.outcome_issue()["expression"][0], "resourceType");
    let r = t.post("/fhir/Spaceship", &json!({"resourceType": "Spaceship"})).await;
    assert_eq!(r.status, 404);
    assert!(r.outcome_issue()["diagnostics"].as_str().unwrap().contains("Spaceship"));
    assert_eq!(t.get("/fhir/Spaceship/1").await.status, 404);
    let r = t.post("/fhir/Patient", &json!({"name": [{"family": "NoType"}]})).await;
    assert_eq!(r.status, 400);
    nothing_written(&t).await;
}

#[tokio::test]
async fn oversized_body_is_413() {
    let t = TestApp::spawn_with(|c| c.max_body_bytes = 4096).await;
    let mut p = patient("Big");
    p["name"][0]["text"] = json!("x".repeat(10_000));
    let r = t.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, 413, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "too-costly");
    // Chunked (no Content-Length) bodies are limited while reading.
    let body = reqwest::Body::from(p.to_string());
    let r = t
        .send(t.request(Method::POST, "/fhir/Patient").header("content-type", "application/fhir+json").body(body))
        .await;
    assert_eq!(r.status, 413);
    nothing_written(&t).await;
}

#[tokio::test]
async fn media_types_are_negotiated() {
    let t = TestApp::spawn().await;
    let r = t
        .send(
            t.request(Method::POST, "/fhir/Patient").header("content-type", "application/fhir+xml").body("<Patient/>"),
        )
        .await;
    assert_eq!(r.status, 415);
    r.outcome_issue();
    let r = t.send(t.request(Method::POST, "/fhir/Patient").body(patient("X").to_string())).await;
    assert_eq!(r.status, 415, "a body without Content-Type is refused");
    let r = t.send(t.request(Method::GET, "/fhir/metadata").header("accept", "application/fhir+xml")).await;
    assert_eq!(r.status, 406);
    r.outcome_issue();
    assert_eq!(t.get("/fhir/metadata?_format=xml").await.status, 406);
    assert_eq!(t.get("/fhir/metadata?_format=json").await.status, 200);
    let r = t.send(t.request(Method::GET, "/fhir/metadata").header("accept", "text/html, */*;q=0.8")).await;
    assert_eq!(r.status, 200);
}

#[tokio::test]
async fn invalid_ids_unknown_routes_and_methods_get_outcomes() {
    let t = TestApp::spawn().await;
    let r = t.get("/fhir/Patient/not%20valid!").await;
    assert_eq!(r.status, 400);
    r.outcome_issue();
    let long = "a".repeat(65);
    assert_eq!(t.get(&format!("/fhir/Patient/{long}")).await.status, 400);
    let r = t.send(t.request(Method::POST, "/fhir/Patient/1")).await;
    assert_eq!(r.status, 405);
    r.outcome_issue();
    let r = t.get("/fhir/Patient/1/_history/1/extra").await;
    assert_eq!(r.status, 404);
    r.outcome_issue();
    let r = t.send(t.request(Method::DELETE, "/fhir/metadata")).await;
    assert_eq!(r.status, 405);
    r.outcome_issue();
}

#[tokio::test]
async fn deeply_nested_json_does_not_crash_the_server() {
    let t = TestApp::spawn().await;
    let deep = format!("{}{}", "[".repeat(100_000), "]".repeat(100_000));
    let r = t
        .send(t.request(Method::POST, "/fhir/Patient").header("content-type", "application/fhir+json").body(deep))
        .await;
    assert_eq!(r.status, 400);
    let mut p = patient("Deep");
    let mut ext = json!({"url": "urn:x", "valueString": "leaf"});
    for _ in 0..200 {
        ext = json!({"url": "urn:x", "extension": [ext]});
    }
    p["extension"] = json!([ext]);
    let r = t.post("/fhir/Patient", &p).await;
    assert!(r.status == 201 || r.status == 400, "{} {}", r.status, r.text);
    assert_eq!(t.get("/healthz").await.status, 200);
}
