//! FHIR interoperability (issue 27): what stock FHIR clients and scenario suites send.

use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{TestApp, patient};

/// `[base]/` and `[base]` are one endpoint for every interaction: a transaction posted to
/// `/fhir/` commits, and a trailing slash after a type, an id or an operation changes nothing.
/// Every 404 and 405 under `/fhir` is an OperationOutcome.
#[tokio::test]
async fn a_trailing_slash_is_the_same_endpoint_and_refusals_are_outcomes() {
    let t = TestApp::spawn().await;
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"fullUrl": "urn:uuid:0d6c9b5e-2f4a-4c61-9a57-6f0e8f1d2a01", "resource": patient("Slash"),
         "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Observation", "status": "final",
                      "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
                      "subject": {"reference": "urn:uuid:0d6c9b5e-2f4a-4c61-9a57-6f0e8f1d2a01"},
                      "valueQuantity": {"value": 72, "unit": "/min"}},
         "request": {"method": "POST", "url": "Observation"}}]});
    let r = t.post("/fhir/", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let resp = r.json();
    assert_eq!(resp["type"], "transaction-response");
    let location = resp["entry"][0]["response"]["location"].as_str().unwrap().to_owned();
    let pid = location.split('/').nth(1).unwrap().to_owned();

    // The same with and without the slash, each interaction.
    for (plain, slashed) in [
        ("/fhir/metadata".to_owned(), "/fhir/metadata/".to_owned()),
        (format!("/fhir/Patient/{pid}"), format!("/fhir/Patient/{pid}/")),
        ("/fhir/Patient?family=Slash".to_owned(), "/fhir/Patient/?family=Slash".to_owned()),
        (format!("/fhir/Patient/{pid}/_history"), format!("/fhir/Patient/{pid}/_history/")),
        (format!("/fhir/Patient/{pid}/$everything"), format!("/fhir/Patient/{pid}/$everything/")),
        ("/fhir?_type=Patient&family=Slash".to_owned(), "/fhir/?_type=Patient&family=Slash".to_owned()),
    ] {
        let a = t.get(&plain).await;
        let b = t.get(&slashed).await;
        assert_eq!(a.status, 200, "{plain}: {}", a.text);
        assert_eq!(b.status, 200, "{slashed}: {}", b.text);
        let (a, b) = (a.json(), b.json());
        assert_eq!(a["resourceType"], b["resourceType"], "{slashed}");
        if a["resourceType"] == "Bundle" {
            assert_eq!(a["total"], b["total"], "{slashed}");
            assert_eq!(a["entry"].as_array().map(Vec::len), b["entry"].as_array().map(Vec::len), "{slashed}");
        }
    }
    assert_eq!(t.get("/fhir/Patient?family=Slash").await.json()["total"], 1);
    // Create, update and delete through a slashed URL.
    let r = t.post("/fhir/Patient/", &patient("Slashed")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let mut body = r.json();
    body["gender"] = json!("female");
    let r = t.put(&format!("/fhir/Patient/{id}/"), &body).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["gender"], "female");
    let r = t.delete(&format!("/fhir/Patient/{id}/")).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(t.get(&format!("/fhir/Patient/{id}")).await.status, 410);

    // Refusals are OperationOutcomes, never bare status lines.
    for (method, path, status) in [
        (Method::GET, "/fhir/Nonsense/x/y/z/w", 404),
        (Method::GET, "/fhir/Patient/x/y/z/w/v", 404),
        (Method::GET, "/fhir/Patient/does-not-exist", 404),
        (Method::GET, "/fhir/Patient/does-not-exist/", 404),
        (Method::DELETE, "/fhir/metadata", 405),
        (Method::DELETE, "/fhir/metadata/", 405),
        (Method::PATCH, "/fhir/", 405),
        (Method::PUT, "/fhir/Patient/_history", 405),
    ] {
        let r = t.send(t.request(method.clone(), path)).await;
        assert_eq!(r.status, status, "{method} {path}: {}", r.text);
        let issue: Value = r.outcome_issue();
        assert!(issue["code"].is_string(), "{method} {path}: {issue}");
    }
}

/// `n` GETs of `url`, eight at a time, as fast as the server answers: (status, Retry-After, body).
async fn hammer(client: &reqwest::Client, url: &str, n: usize) -> Vec<(u16, Option<String>, String)> {
    use futures_util::StreamExt;
    futures_util::stream::iter((0..n).map(|_| {
        let req = client.get(url);
        async move {
            let r = req.send().await.unwrap();
            let status = r.status().as_u16();
            let retry = r.headers().get("retry-after").map(|v| v.to_str().unwrap().to_owned());
            (status, retry, r.text().await.unwrap())
        }
    }))
    .buffer_unordered(8)
    .collect()
    .await
}

/// The default API limits (issue 27 item 8): a loader making 1,000 FHIR requests as fast as it
/// can gets no `429`; a flood past the bucket does, as an OperationOutcome with `Retry-After`,
/// and only for that user.
#[tokio::test]
async fn a_loader_gets_no_429_under_the_default_limits_and_a_flood_does() {
    let t = TestApp::spawn_with(|c| {
        let defaults = hearth_server::config::AuthConfig::default();
        c.auth.api_requests_per_minute = defaults.api_requests_per_minute;
        c.auth.api_burst = defaults.api_burst;
    })
    .await;
    let pid = t.create(&patient("Loader")).await;
    let token = crate::common::seed_account(&t.app, "bulk-loader", "clinician", None, None).await;
    let loader = crate::documents::bearer(&token);
    let url = t.url(&format!("/fhir/Patient/{pid}"));
    let first = hammer(&loader, &url, 1_000).await;
    assert_eq!(first.iter().filter(|(s, _, _)| *s == 429).count(), 0, "a loader's 1,000 requests");
    assert!(first.iter().all(|(s, _, _)| *s == 200));
    // The same user goes on far past the bucket (1,200, refilled at 20 a second): refused, with a
    // time to come back (2,500 requests in all would need more than a minute to pass).
    let flood = hammer(&loader, &url, 1_500).await;
    let throttled: Vec<_> = flood.iter().filter(|(s, _, _)| *s == 429).collect();
    assert!(!throttled.is_empty(), "a flood of 1,500 more was never refused");
    let (_, retry, body) = throttled[0];
    assert!(retry.as_deref().is_some_and(|r| r.parse::<u64>().unwrap() >= 1), "{retry:?}");
    let outcome: Value = serde_json::from_str(body).unwrap();
    assert_eq!(outcome["resourceType"], "OperationOutcome");
    assert_eq!(outcome["issue"][0]["code"], "throttled");
    // Another user is not affected.
    assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 200);
}

/// A resource of `ty` for the CapabilityStatement self-test, with an identifier to find it by.
fn sample(ty: &str, pid: &str, tag: &str) -> Value {
    let ident = json!([{"system": "urn:hearth:selftest", "value": tag}]);
    let subject = json!({"reference": format!("Patient/{pid}")});
    match ty {
        "Patient" => json!({"resourceType": "Patient", "identifier": ident, "name": [{"family": "Selftest"}]}),
        "Observation" => json!({"resourceType": "Observation", "identifier": ident, "status": "final",
            "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]}, "subject": subject,
            "valueQuantity": {"value": 70, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}}),
        "Condition" => json!({"resourceType": "Condition", "identifier": ident, "subject": subject,
            "code": {"coding": [{"system": "http://snomed.info/sct", "code": "44054006"}]}}),
        "Encounter" => {
            json!({"resourceType": "Encounter", "identifier": ident, "status": "finished", "subject": subject,
            "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"}})
        }
        "Appointment" => json!({"resourceType": "Appointment", "identifier": ident, "status": "booked",
            "start": "2030-01-07T09:00:00Z", "end": "2030-01-07T09:15:00Z",
            "participant": [{"actor": subject, "status": "accepted"}]}),
        "AuditEvent" => json!({"resourceType": "AuditEvent", "recorded": "2030-01-07T09:00:00Z",
            "type": {"system": "http://dicom.nema.org/resources/ontology/DCM", "code": "110110"},
            "agent": [{"requestor": true}], "source": {"observer": {"display": "selftest"}}}),
        other => panic!("no sample {other}"),
    }
}

/// Issue 27 item 7: every interaction the CapabilityStatement advertises for a sample of types is
/// performed and works, every one it leaves out for a type is refused, and `conditionalRead`,
/// `updateCreate`, `conditionalCreate`, `conditionalUpdate` and `conditionalDelete` are what the
/// server does. An advertised-but-refused case fails here.
#[tokio::test]
async fn the_capability_statement_tells_the_truth_for_a_sample_of_types() {
    let t = TestApp::spawn().await;
    let cs = t.get("/fhir/metadata").await.json();
    let pid = t.create(&patient("Capable")).await;
    let rest = &cs["rest"][0];
    for ty in ["Patient", "Observation", "Condition", "Encounter", "Appointment", "AuditEvent"] {
        let entry = rest["resource"].as_array().unwrap().iter().find(|r| r["type"] == ty).unwrap();
        let has = |code: &str| entry["interaction"].as_array().unwrap().iter().any(|i| i["code"] == code);
        let body = sample(ty, &pid, &format!("{ty}-1"));
        // create
        let r = t.post(&format!("/fhir/{ty}"), &body).await;
        assert_eq!(has("create"), r.status == 201, "{ty} create: {} {}", r.status, r.text);
        // Something to read: the created one, or one written as the system would.
        let id = if r.status == 201 {
            r.json()["id"].as_str().unwrap().to_owned()
        } else if ty == "AuditEvent" {
            // The trail's own events (every request above left one).
            t.app.auditor.flush().await.unwrap();
            let r = t.get("/fhir/AuditEvent?_count=1").await;
            r.json()["entry"][0]["resource"]["id"].as_str().unwrap_or_else(|| panic!("{}", r.text)).to_owned()
        } else {
            let mut b = body.clone();
            b["id"] = json!(format!("{}-seed", ty.to_lowercase()));
            let write = hearth_server::fhir::write_of(&t.app, ty, b["id"].as_str().unwrap().to_owned(), b);
            hearth_store::interactions::ResourceStoreExt::create(&t.app.system(), write, chrono::Utc::now())
                .await
                .unwrap();
            format!("{}-seed", ty.to_lowercase())
        };
        let r = t.get(&format!("/fhir/{ty}/{id}")).await;
        assert_eq!(has("read"), r.status == 200, "{ty} read: {}", r.text);
        let current = r.json();
        let etag = r.header("etag").unwrap();
        let r = t.get(&format!("/fhir/{ty}/{id}/_history/1")).await;
        assert_eq!(has("vread"), r.status == 200, "{ty} vread: {}", r.text);
        let r = t.get(&format!("/fhir/{ty}/{id}/_history")).await;
        assert_eq!(has("history-instance"), r.status == 200, "{ty} history-instance: {}", r.text);
        let r = t.get(&format!("/fhir/{ty}/_history")).await;
        assert_eq!(has("history-type"), r.status == 200, "{ty} history-type: {}", r.text);
        let r = t.get(&format!("/fhir/{ty}?_id={id}")).await;
        assert_eq!(has("search-type"), r.status == 200, "{ty} search-type: {}", r.text);
        // conditionalRead: full-support means If-None-Match and If-Modified-Since.
        assert_eq!(entry["conditionalRead"], "full-support");
        let r = t.send(t.request(Method::GET, &format!("/fhir/{ty}/{id}")).header("if-none-match", &etag)).await;
        assert_eq!(r.status, 304, "{ty} If-None-Match");
        let later = (chrono::Utc::now() + chrono::TimeDelta::hours(1)).format("%a, %d %b %Y %H:%M:%S GMT").to_string();
        let r = t.send(t.request(Method::GET, &format!("/fhir/{ty}/{id}")).header("if-modified-since", later)).await;
        assert_eq!(r.status, 304, "{ty} If-Modified-Since");
        // update and patch
        let mut changed = current.clone();
        changed["meta"] = json!({"tag": [{"system": "urn:hearth:selftest", "code": "updated"}]});
        let r = t.put(&format!("/fhir/{ty}/{id}"), &changed).await;
        assert_eq!(has("update"), r.status == 200, "{ty} update: {} {}", r.status, r.text);
        let patch = json!([{"op": "add", "path": "/language", "value": "en"}]);
        let r = t
            .send(
                t.request(Method::PATCH, &format!("/fhir/{ty}/{id}"))
                    .header("content-type", "application/json-patch+json")
                    .body(patch.to_string()),
            )
            .await;
        assert_eq!(has("patch"), r.status == 200, "{ty} patch: {} {}", r.status, r.text);
        // updateCreate: PUT to a new id creates it.
        let mut fresh = sample(ty, &pid, &format!("{ty}-2"));
        fresh["id"] = json!(format!("{}-put", ty.to_lowercase()));
        let r = t.put(&format!("/fhir/{ty}/{}-put", ty.to_lowercase()), &fresh).await;
        assert_eq!(entry["updateCreate"] == json!(true), r.status == 201, "{ty} updateCreate: {} {}", r.status, r.text);
        // conditionalCreate: If-None-Exist creates when nothing matches, and finds the match (200).
        if ty != "AuditEvent" {
            let conditional = |tag: &str| {
                t.with_body(Method::POST, &format!("/fhir/{ty}"), &sample(ty, &pid, tag))
                    .header("if-none-exist", format!("identifier=urn:hearth:selftest|{tag}"))
            };
            let r = t.send(conditional(&format!("{ty}-4"))).await;
            assert_eq!(entry["conditionalCreate"] == json!(true), r.status == 201, "{ty} If-None-Exist: {}", r.text);
            if entry["conditionalCreate"] == json!(true) {
                let r = t.send(conditional(&format!("{ty}-4"))).await;
                assert_eq!(r.status, 200, "{ty} If-None-Exist, matched: {}", r.text);
            }
            // conditionalUpdate by identifier.
            let r = t
                .put(
                    &format!("/fhir/{ty}?identifier=urn:hearth:selftest|{ty}-3"),
                    &sample(ty, &pid, &format!("{ty}-3")),
                )
                .await;
            assert_eq!(
                entry["conditionalUpdate"] == json!(true),
                r.status == 201,
                "{ty} conditional update: {}",
                r.text
            );
            // conditionalDelete single.
            let r = t.delete(&format!("/fhir/{ty}?identifier=urn:hearth:selftest|{ty}-3")).await;
            let single = entry["conditionalDelete"] == "single";
            assert_eq!(single, r.status == 204 || r.status == 200, "{ty} conditional delete: {} {}", r.status, r.text);
        }
        // delete (last)
        let r = t.delete(&format!("/fhir/{ty}/{id}")).await;
        assert_eq!(has("delete"), r.status == 204 || r.status == 200, "{ty} delete: {} {}", r.status, r.text);
    }
    // System interactions and the Patient operations.
    let codes: Vec<&str> =
        rest["interaction"].as_array().unwrap().iter().map(|i| i["code"].as_str().unwrap()).collect();
    assert!(codes.contains(&"transaction") && codes.contains(&"batch"));
    for kind in ["transaction", "batch"] {
        let b = json!({"resourceType": "Bundle", "type": kind, "entry": [
            {"resource": patient("Bundled"), "request": {"method": "POST", "url": "Patient"}}]});
        let r = t.post("/fhir", &b).await;
        assert_eq!(r.status, 200, "{kind}: {}", r.text);
    }
    assert!(codes.contains(&"history-system") && t.get("/fhir/_history").await.status == 200);
    assert!(codes.contains(&"search-system") && t.get("/fhir?_type=Patient").await.status == 200);
    let r = t.get(&format!("/fhir/Patient/{pid}/$everything")).await;
    assert_eq!(r.status, 200, "$everything: {}", r.text);
}
