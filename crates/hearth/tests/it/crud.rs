//! Create, read, vread, update, delete, optimistic locking and `Prefer`.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, count, patient, race};

#[tokio::test]
async fn create_assigns_id_and_answers_201_with_location_etag_last_modified() {
    let t = TestApp::spawn().await;
    let mut body = patient("Okafor");
    body["id"] = json!("client-chosen");
    body["meta"] = json!({"versionId": "99", "lastUpdated": "2001-01-01T00:00:00Z", "tag": [{"code": "keep-me"}]});
    let r = t.post("/fhir/Patient", &body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let created = r.json();
    let id = created["id"].as_str().unwrap();
    assert_ne!(id, "client-chosen", "the server assigns ids on create");
    assert_eq!(created["meta"]["versionId"], "1");
    assert_eq!(created["meta"]["tag"][0]["code"], "keep-me", "client meta other than version/lastUpdated is kept");
    assert_ne!(created["meta"]["lastUpdated"], "2001-01-01T00:00:00Z");
    assert_eq!(r.header("etag").as_deref(), Some("W/\"1\""));
    assert!(r.header("last-modified").unwrap().ends_with(" GMT"));
    assert_eq!(r.header("location").unwrap(), format!("{}/fhir/Patient/{id}/_history/1", t.addr));
    assert!(r.header("content-type").unwrap().starts_with("application/fhir+json"));

    let read = t.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(read.status, 200);
    assert_eq!(read.json(), created, "a read returns exactly what the create returned");
    assert_eq!(read.header("etag").as_deref(), Some("W/\"1\""));
    assert_eq!(read.header("last-modified"), r.header("last-modified"));
}

#[tokio::test]
async fn accepts_plain_application_json() {
    let t = TestApp::spawn().await;
    let r = t
        .send(
            t.request(Method::POST, "/fhir/Patient")
                .header("content-type", "application/json")
                .header("accept", "application/json")
                .body(patient("Json").to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn update_creates_versions_and_vread_returns_each() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("First")).await;
    let mut v2 = patient("Second");
    v2["id"] = json!(id);
    let r = t.put(&format!("/fhir/Patient/{id}"), &v2).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.header("etag").as_deref(), Some("W/\"2\""));
    assert_eq!(r.json()["meta"]["versionId"], "2");
    assert!(r.header("location").is_none(), "Location only accompanies a create");

    let old = t.get(&format!("/fhir/Patient/{id}/_history/1")).await;
    assert_eq!(old.status, 200);
    assert_eq!(old.json()["name"][0]["family"], "First");
    assert_eq!(old.header("etag").as_deref(), Some("W/\"1\""));
    let cur = t.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(cur.json()["name"][0]["family"], "Second");
    assert_eq!(t.get(&format!("/fhir/Patient/{id}/_history/3")).await.status, 404);
    assert_eq!(t.get(&format!("/fhir/Patient/{id}/_history/x")).await.status, 404);
}

#[tokio::test]
async fn update_as_create_uses_the_client_id() {
    let t = TestApp::spawn().await;
    let mut p = patient("Chosen");
    p["id"] = json!("my-id-1");
    let r = t.put("/fhir/Patient/my-id-1", &p).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.header("location").unwrap(), format!("{}/fhir/Patient/my-id-1/_history/1", t.addr));
    assert_eq!(r.json()["id"], "my-id-1");
    assert_eq!(t.get("/fhir/Patient/my-id-1").await.status, 200);
}

#[tokio::test]
async fn update_id_must_match_url() {
    let t = TestApp::spawn().await;
    let mut p = patient("X");
    p["id"] = json!("other");
    let r = t.put("/fhir/Patient/mine", &p).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.outcome_issue()["expression"][0], "id");
    let r = t.put("/fhir/Patient/mine", &patient("X")).await;
    assert_eq!(r.status, 400, "an update without id is refused");
    assert_eq!(t.get("/fhir/Patient/mine").await.status, 404, "nothing was written");
}

#[tokio::test]
async fn delete_then_read_is_gone_and_history_survives() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Gone")).await;
    let r = t.delete(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("etag").as_deref(), Some("W/\"2\""));
    let r = t.get(&format!("/fhir/Patient/{id}")).await;
    assert_eq!(r.status, 410);
    assert_eq!(r.outcome_issue()["code"], "deleted");
    assert_eq!(t.get(&format!("/fhir/Patient/{id}/_history/1")).await.status, 200, "old versions stay readable");
    assert_eq!(t.get(&format!("/fhir/Patient/{id}/_history/2")).await.status, 410);
    assert_eq!(t.delete(&format!("/fhir/Patient/{id}")).await.status, 204, "deleting again is harmless");
    assert_eq!(t.delete("/fhir/Patient/never-existed").await.status, 404);

    // An update after a delete brings the resource back with the next version.
    let mut again = patient("Back");
    again["id"] = json!(id);
    let r = t.put(&format!("/fhir/Patient/{id}"), &again).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["meta"]["versionId"], "3");
}

#[tokio::test]
async fn if_match_guards_updates_and_deletes() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Locked")).await;
    let mut p = patient("Locked2");
    p["id"] = json!(id);
    let path = format!("/fhir/Patient/{id}");

    let stale = t.send(t.with_body(Method::PUT, &path, &p).header("if-match", "W/\"7\"")).await;
    assert_eq!(stale.status, 412, "{}", stale.text);
    assert_eq!(stale.outcome_issue()["code"], "conflict");

    let ok = t.send(t.with_body(Method::PUT, &path, &p).header("if-match", "W/\"1\"")).await;
    assert_eq!(ok.status, 200, "{}", ok.text);

    let again = t.send(t.with_body(Method::PUT, &path, &p).header("if-match", "W/\"1\"")).await;
    assert_eq!(again.status, 412, "version 1 is stale now");

    let bad = t.send(t.with_body(Method::PUT, &path, &p).header("if-match", "banana")).await;
    assert_eq!(bad.status, 400);

    let del = t.send(t.request(Method::DELETE, &path).header("if-match", "W/\"1\"")).await;
    assert_eq!(del.status, 412);
    let del = t.send(t.request(Method::DELETE, &path).header("if-match", "\"2\"")).await;
    assert_eq!(del.status, 204);
}

#[tokio::test]
async fn concurrent_if_match_writers_exactly_one_wins() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Race")).await;
    let path = format!("/fhir/Patient/{id}");
    let requests = (0..16)
        .map(|i| {
            let mut p = patient(&format!("Writer{i}"));
            p["id"] = json!(id);
            t.with_body(Method::PUT, &path, &p).header("if-match", "W/\"1\"")
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 412), 15, "{statuses:?}");
}

#[tokio::test]
async fn concurrent_writers_never_lose_an_update() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Many")).await;
    let path = format!("/fhir/Patient/{id}");
    let requests = (0..20)
        .map(|i| {
            let mut p = patient(&format!("W{i}"));
            p["id"] = json!(id);
            t.with_body(Method::PUT, &path, &p)
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!(count(&statuses, 200), 20, "{statuses:?}");
    let r = t.get(&path).await;
    assert_eq!(r.json()["meta"]["versionId"], "21");
    let h = t.get(&format!("{path}/_history?_count=100")).await.json();
    let versions: std::collections::BTreeSet<String> = h["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"]["meta"]["versionId"].as_str().unwrap().to_owned())
        .collect();
    assert_eq!(versions.len(), 21, "every write kept its own version");
}

#[tokio::test]
async fn prefer_return_shapes_the_response() {
    let t = TestApp::spawn().await;
    let minimal =
        t.send(t.with_body(Method::POST, "/fhir/Patient", &patient("P")).header("prefer", "return=minimal")).await;
    assert_eq!(minimal.status, 201);
    assert!(minimal.text.is_empty(), "{}", minimal.text);
    assert!(minimal.header("location").is_some());
    assert_eq!(minimal.header("etag").as_deref(), Some("W/\"1\""));

    let oo = t
        .send(t.with_body(Method::POST, "/fhir/Patient", &patient("P")).header("prefer", "return=OperationOutcome"))
        .await;
    assert_eq!(oo.status, 201);
    assert_eq!(oo.json()["resourceType"], "OperationOutcome");
    assert_eq!(oo.json()["issue"][0]["severity"], "information");

    let rep = t
        .send(t.with_body(Method::POST, "/fhir/Patient", &patient("P")).header("prefer", "return=representation"))
        .await;
    assert_eq!(rep.json()["resourceType"], "Patient");
}

#[tokio::test]
async fn conditional_read_with_if_none_match() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Cached")).await;
    let path = format!("/fhir/Patient/{id}");
    let r = t.send(t.request(Method::GET, &path).header("if-none-match", "W/\"1\"")).await;
    assert_eq!(r.status, 304);
    let r = t.send(t.request(Method::GET, &path).header("if-none-match", "W/\"0\"")).await;
    assert_eq!(r.status, 200);
}

fn json_patch(t: &TestApp, path: &str, ops: serde_json::Value) -> reqwest::RequestBuilder {
    t.request(Method::PATCH, path).header("content-type", "application/json-patch+json").body(ops.to_string())
}

#[tokio::test]
async fn json_patch_updates_atomically_and_refuses_bad_results() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Patchy")).await;
    let path = format!("/fhir/Patient/{id}");

    let r = t.send(json_patch(&t, &path, json!([{"op": "replace", "path": "/gender", "value": "male"}]))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["gender"], "male");
    assert_eq!(r.header("etag").as_deref(), Some("W/\"2\""));

    let stale = json_patch(&t, &path, json!([{"op": "remove", "path": "/birthDate"}])).header("if-match", "W/\"1\"");
    assert_eq!(t.send(stale).await.status, 412);

    // A failing `test` op, an id change and an invalid result are all 422, and nothing is written.
    let r = t
        .send(json_patch(
            &t,
            &path,
            json!([{"op": "remove", "path": "/birthDate"}, {"op": "test", "path": "/gender", "value": "female"}]),
        ))
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    r.outcome_issue();
    let r = t.send(json_patch(&t, &path, json!([{"op": "replace", "path": "/id", "value": "other"}]))).await;
    assert_eq!(r.status, 422);
    let r = t.send(json_patch(&t, &path, json!([{"op": "add", "path": "/favouriteColour", "value": "red"}]))).await;
    assert_eq!(r.status, 422);
    assert!(r.outcome_issue()["expression"][0].as_str().unwrap().contains("favouriteColour"));
    let cur = t.get(&path).await.json();
    assert_eq!(cur["meta"]["versionId"], "2");
    assert_eq!(cur["birthDate"], "1980-04-01");

    // A FHIRPath Patch (a Parameters body) with an unknown operation type is refused, changing nothing.
    let bad = json!({"resourceType": "Parameters", "parameter": [
        {"name": "operation", "part": [{"name": "type", "valueCode": "bogus"}, {"name": "path", "valueString": "Patient"}]}
    ]});
    let r = t
        .send(t.request(Method::PATCH, &path).header("content-type", "application/fhir+json").body(bad.to_string()))
        .await;
    assert!(r.status == 400 || r.status == 422, "{} {}", r.status, r.text);
    r.outcome_issue();
    assert_eq!(t.get(&path).await.json()["meta"]["versionId"], "2");
    assert_eq!(t.send(json_patch(&t, "/fhir/Patient/nobody", json!([]))).await.status, 404);
    t.delete(&path).await;
    assert_eq!(t.send(json_patch(&t, &path, json!([]))).await.status, 410);
}
