//! History at instance, type and system level, with `_since`, `_count` and paging.

use chrono::{Duration, Utc};
use serde_json::{Value, json};

use crate::common::{TestApp, patient};

fn entries(bundle: &Value) -> Vec<Value> {
    bundle["entry"].as_array().cloned().unwrap_or_default()
}

fn link(bundle: &Value, rel: &str) -> Option<String> {
    bundle["link"].as_array()?.iter().find(|l| l["relation"] == rel).map(|l| l["url"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn instance_history_lists_every_version_newest_first() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("H1")).await;
    let mut p = patient("H2");
    p["id"] = json!(id);
    t.put(&format!("/fhir/Patient/{id}"), &p).await;
    t.delete(&format!("/fhir/Patient/{id}")).await;

    let r = t.get(&format!("/fhir/Patient/{id}/_history")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    crate::common::assert_valid_r4(&b);
    assert_eq!(b["resourceType"], "Bundle");
    assert_eq!(b["type"], "history");
    let e = entries(&b);
    assert_eq!(e.len(), 3);
    assert_eq!(e[0]["request"]["method"], "DELETE");
    assert!(e[0].get("resource").is_none(), "a deletion has no resource");
    assert_eq!(e[0]["response"]["etag"], "W/\"3\"");
    assert_eq!(e[1]["request"]["method"], "PUT");
    assert_eq!(e[1]["request"]["url"], format!("Patient/{id}"));
    assert_eq!(e[1]["resource"]["name"][0]["family"], "H2");
    assert_eq!(e[2]["request"]["method"], "POST");
    assert_eq!(e[2]["response"]["status"], "201 Created");
    assert_eq!(e[2]["fullUrl"], format!("{}/fhir/Patient/{id}", t.addr));
    assert_eq!(t.get("/fhir/Patient/nope/_history").await.status, 404);
    let r = t.get(&format!("/fhir/Patient/{id}/_history?_since=2999-01-01T00:00:00Z")).await;
    assert_eq!(r.status, 200, "filtered to nothing is still an existing resource: {}", r.text);
    assert!(r.json().get("entry").is_none());
    crate::common::assert_valid_r4(&r.json());
}

#[tokio::test]
async fn type_and_system_history() {
    let t = TestApp::spawn().await;
    t.create(&patient("A")).await;
    t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Rao"}]})).await;
    let ty = t.get("/fhir/Patient/_history").await.json();
    assert_eq!(entries(&ty).len(), 1);
    let sys = t.get("/fhir/_history").await.json();
    let types: Vec<String> =
        entries(&sys).iter().map(|e| e["resource"]["resourceType"].as_str().unwrap().to_owned()).collect();
    assert_eq!(types, vec!["Practitioner", "Patient"]);
    assert_eq!(t.get("/fhir/Nonsense/_history").await.status, 404);
}

#[tokio::test]
async fn since_filters_by_last_updated() {
    let t = TestApp::spawn().await;
    let past = Utc::now() - Duration::days(30);
    t.clock.set(past);
    t.create(&patient("Old")).await;
    t.clock.set(past + Duration::days(10));
    t.create(&patient("New")).await;
    let since = (past + Duration::days(5)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let r = t.get(&format!("/fhir/Patient/_history?_since={since}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = entries(&r.json());
    assert_eq!(e.len(), 1);
    assert_eq!(e[0]["resource"]["name"][0]["family"], "New");
    // The same, at system level, with the '+' of an offset sent unencoded.
    let since_offset = (past + Duration::days(5)).format("%Y-%m-%dT%H:%M:%S+00:00").to_string();
    let e = entries(&t.get(&format!("/fhir/_history?_since={since_offset}")).await.json());
    assert_eq!(e.len(), 1);
    assert_eq!(t.get("/fhir/_history?_since=last-week").await.status, 400);
    assert_eq!(t.get("/fhir/_history?_sort=x").await.status, 400);
}

#[tokio::test]
async fn paging_with_count_is_complete_and_stable_under_writes() {
    let t = TestApp::spawn().await;
    for i in 0..7 {
        t.create(&patient(&format!("P{i}"))).await;
    }
    let first = t.get("/fhir/Patient/_history?_count=3").await.json();
    assert_eq!(entries(&first).len(), 3);
    assert!(link(&first, "self").unwrap().contains("_count=3"));
    let mut seen: Vec<String> = entries(&first).iter().map(|e| e["fullUrl"].as_str().unwrap().to_owned()).collect();
    let mut next = link(&first, "next");
    // New writes between pages must not shift what the next pages contain.
    t.create(&patient("Late")).await;
    while let Some(url) = next {
        let page = t.send(t.client.get(&url)).await.json();
        seen.extend(entries(&page).iter().map(|e| e["fullUrl"].as_str().unwrap().to_owned()));
        next = link(&page, "next");
    }
    assert_eq!(seen.len(), 7, "{seen:?}");
    let mut dedup = seen.clone();
    dedup.sort();
    dedup.dedup();
    assert_eq!(dedup.len(), 7, "no entry repeated across pages");
    assert_eq!(t.get("/fhir/_history?_count=abc").await.status, 400);
    assert_eq!(t.get("/fhir/_history?_cursor=abc").await.status, 400);
}
