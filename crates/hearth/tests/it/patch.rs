//! FHIRPath Patch over HTTP: `PATCH` with a `Parameters` body, `If-Match`, bad patches.

use serde_json::json;

use crate::common::{TestApp, patient};

fn patch(t: &TestApp, path: &str, body: &serde_json::Value) -> reqwest::RequestBuilder {
    t.request(reqwest::Method::PATCH, path).header("content-type", "application/fhir+json").body(body.to_string())
}

#[tokio::test]
async fn fhirpath_patch_with_if_match_and_bad_patches() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Patchy")).await;
    let path = format!("/fhir/Patient/{id}");
    let replace = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.gender"},
        {"name": "value", "valueCode": "male"}]}]});
    let r = t.send(patch(&t, &path, &replace).header("if-match", "W/\"1\"")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["gender"], "male");
    assert_eq!(r.header("etag").unwrap(), "W/\"2\"");
    assert_eq!(t.get(&path).await.json()["gender"], "male");

    // A stale If-Match: 412, nothing changed.
    let r = t.send(patch(&t, &path, &replace).header("if-match", "W/\"1\"")).await;
    assert_eq!(r.status, 412, "{}", r.text);
    r.outcome_issue();

    // Add an element.
    let add = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "add"},
        {"name": "path", "valueString": "Patient"},
        {"name": "name", "valueString": "active"},
        {"name": "value", "valueBoolean": true}]}]});
    let r = t.send(patch(&t, &path, &add)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.get(&path).await.json()["active"], true);

    // Bad patches: an unknown operation type, a path that does not parse, a result that is not
    // valid R4. Each is a 4xx OperationOutcome and the resource is unchanged.
    let bad_type = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "explode"}, {"name": "path", "valueString": "Patient.gender"}]}]});
    let bad_path = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "delete"}, {"name": "path", "valueString": "Patient.((("}]}]});
    let invalid_result = json!({"resourceType": "Parameters", "parameter": [{"name": "operation", "part": [
        {"name": "type", "valueCode": "replace"},
        {"name": "path", "valueString": "Patient.birthDate"},
        {"name": "value", "valueString": "yesterday"}]}]});
    for bad in [bad_type, bad_path, invalid_result, json!({"resourceType": "Patient"})] {
        let r = t.send(patch(&t, &path, &bad)).await;
        assert!(r.status == 400 || r.status == 422, "{} {}", r.status, r.text);
        r.outcome_issue();
    }
    let now = t.get(&path).await.json();
    assert_eq!(now["meta"]["versionId"], "3");
    assert_eq!(now["gender"], "male");
    let r = t.send(patch(&t, "/fhir/Patient/missing", &replace)).await;
    assert_eq!(r.status, 404);
    r.outcome_issue();
}
