//! `batch` and `transaction` Bundles at `POST /fhir`.

use serde_json::{Value, json};

use crate::common::{TestApp, patient};

fn tx(entries: Vec<Value>) -> Value {
    json!({"resourceType": "Bundle", "type": "transaction", "entry": entries})
}

fn post(full_url: &str, resource: Value) -> Value {
    let rt = resource["resourceType"].as_str().unwrap().to_owned();
    json!({"fullUrl": full_url, "resource": resource, "request": {"method": "POST", "url": rt}})
}

fn observation(subject: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
           "code": {"coding": [{"system": "http://loinc.org", "code": "8867-4"}]},
           "subject": {"reference": subject},
           "valueQuantity": {"value": 72, "unit": "/min", "system": "http://unitsofmeasure.org", "code": "/min"}})
}

async fn type_count(t: &TestApp, rt: &str) -> usize {
    t.get(&format!("/fhir/{rt}/_history?_count=1000")).await.json()["entry"].as_array().map_or(0, Vec::len)
}

#[tokio::test]
async fn transaction_resolves_urn_uuid_references() {
    let t = TestApp::spawn().await;
    let pid = "urn:uuid:7f9c2a52-8c1e-4a8e-9a43-0d5c8f1b2e11";
    // The Observation comes first in the Bundle but refers to the Patient after it.
    let b = tx(vec![post("urn:uuid:0b0e4a52-1111-4a8e-9a43-0d5c8f1b2e11", observation(pid)), post(pid, patient("Tx"))]);
    let r = t.post("/fhir", &b).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    crate::common::assert_valid_r4(&body);
    assert_eq!(body["type"], "transaction-response");
    let e = body["entry"].as_array().unwrap();
    assert_eq!(e.len(), 2);
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[1]["response"]["status"], "201 Created");
    assert!(e[1]["response"]["location"].as_str().unwrap().starts_with("Patient/"));
    let patient_id = e[1]["resource"]["id"].as_str().unwrap();
    assert_eq!(e[0]["resource"]["subject"]["reference"], format!("Patient/{patient_id}"));
    let obs_id = e[0]["resource"]["id"].as_str().unwrap();
    let stored = t.get(&format!("/fhir/Observation/{obs_id}")).await.json();
    assert_eq!(stored["subject"]["reference"], format!("Patient/{patient_id}"));
    assert_eq!(stored["valueQuantity"]["value"], json!(72));
}

#[tokio::test]
async fn a_failing_entry_rolls_back_the_whole_transaction() {
    let t = TestApp::spawn().await;
    let existing = t.create(&patient("Before")).await;
    let mut changed = patient("Changed");
    changed["id"] = json!(existing);
    let b = tx(vec![
        post("urn:uuid:aaaaaaaa-0000-4000-8000-000000000001", patient("New1")),
        json!({"resource": changed, "request": {"method": "PUT", "url": format!("Patient/{existing}")}}),
        post("urn:uuid:aaaaaaaa-0000-4000-8000-000000000002", patient("New2")),
        // Fails: the resource does not exist. Processed first (DELETE), after nothing, but the
        // whole transaction must vanish anyway.
        json!({"request": {"method": "DELETE", "url": "Patient/not-there"}}),
    ]);
    let r = t.post("/fhir", &b).await;
    assert_eq!(r.status, 404, "{}", r.text);
    assert!(r.outcome_issue()["expression"][0].as_str().unwrap().starts_with("Bundle.entry[3]"));
    assert_eq!(type_count(&t, "Patient").await, 1, "nothing from the failed transaction is visible");
    assert_eq!(t.get(&format!("/fhir/Patient/{existing}")).await.json()["name"][0]["family"], "Before");

    // A stale ifMatch in the last-processed entry also undoes the earlier ones.
    let mut stale = patient("Stale");
    stale["id"] = json!(existing);
    let b = tx(vec![
        post("urn:uuid:aaaaaaaa-0000-4000-8000-000000000003", patient("New3")),
        json!({"resource": stale, "request": {"method": "PUT", "url": format!("Patient/{existing}"), "ifMatch": "W/\"9\""}}),
    ]);
    let r = t.post("/fhir", &b).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(type_count(&t, "Patient").await, 1);
}

#[tokio::test]
async fn conditional_create_and_conditional_references_inside_a_transaction() {
    let t = TestApp::spawn().await;
    let mut org = json!({"resourceType": "Organization", "name": "Clinic",
        "identifier": [{"system": "urn:org", "value": "c1"}]});
    let bundle = |org: &Value| {
        tx(vec![
            json!({"fullUrl": "urn:uuid:00000000-0000-4000-8000-00000000000a", "resource": org,
                   "request": {"method": "POST", "url": "Organization", "ifNoneExist": "identifier=urn:org|c1"}}),
            post("urn:uuid:00000000-0000-4000-8000-00000000000b", {
                let mut p = patient("Member");
                p["managingOrganization"] = json!({"reference": "urn:uuid:00000000-0000-4000-8000-00000000000a"});
                p
            }),
        ])
    };
    let first = t.post("/fhir", &bundle(&org)).await;
    assert_eq!(first.status, 200, "{}", first.text);
    let org_id = first.json()["entry"][0]["resource"]["id"].as_str().unwrap().to_owned();
    org["name"] = json!("Clinic (again)");
    let second = t.post("/fhir", &bundle(&org)).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let s = second.json();
    assert_eq!(s["entry"][0]["response"]["status"], "200 OK", "the existing Organization is reused");
    assert_eq!(s["entry"][0]["resource"]["id"], org_id.as_str());
    assert_eq!(s["entry"][1]["resource"]["managingOrganization"]["reference"], format!("Organization/{org_id}"));
    assert_eq!(type_count(&t, "Organization").await, 1, "shared resources are not duplicated");

    // Conditional references: exactly one match is rewritten; none or many fail the transaction.
    let with_ref = |r: &str| tx(vec![post("urn:uuid:00000000-0000-4000-8000-00000000000c", observation(r))]);
    let mut p = patient("Ref");
    p["identifier"] = json!([{"system": "urn:mrn", "value": "r1"}]);
    let pid = t.create(&p).await;
    let r = t.post("/fhir", &with_ref("Patient?identifier=urn:mrn|r1")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["entry"][0]["resource"]["subject"]["reference"], format!("Patient/{pid}"));
    let r = t.post("/fhir", &with_ref("Patient?identifier=urn:mrn|nobody")).await;
    assert_eq!(r.status, 412, "{}", r.text);
    t.create(&p).await;
    let r = t.post("/fhir", &with_ref("Patient?identifier=urn:mrn|r1")).await;
    assert_eq!(r.status, 412, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "multiple-matches");
    assert_eq!(type_count(&t, "Observation").await, 1);
}

#[tokio::test]
async fn a_conditional_update_finds_what_the_same_transaction_created() {
    // POSTs run before PUTs, so the conditional PUT matches the Patient the POST has just
    // created: the new resource's index rows must be searchable inside the transaction (they
    // are written in bulk, before the transaction searches).
    let t = TestApp::spawn().await;
    let identifier = json!([{"system": "urn:test:mrn", "value": "same-tx-1"}]);
    let mut created = patient("Early");
    created["identifier"] = identifier.clone();
    let mut update = patient("Later");
    update["identifier"] = identifier;
    let b = tx(vec![
        json!({"resource": update, "request": {"method": "PUT", "url": "Patient?identifier=urn:test:mrn|same-tx-1"}}),
        post("urn:uuid:bbbbbbbb-0000-4000-8000-000000000001", created),
    ]);
    let r = t.post("/fhir", &b).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let e = r.json()["entry"].as_array().unwrap().clone();
    assert_eq!(e[1]["response"]["status"], "201 Created");
    assert_eq!(e[0]["response"]["status"], "200 OK", "the PUT must update the new Patient, not create another");
    assert_eq!(e[0]["resource"]["id"], e[1]["resource"]["id"]);
    let found = t.get("/fhir/Patient?identifier=urn:test:mrn|same-tx-1").await.json();
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["name"][0]["family"], "Later");
    assert_eq!(found["entry"][0]["resource"]["meta"]["versionId"], "2");
}

#[tokio::test]
async fn batch_entries_succeed_or_fail_on_their_own() {
    let t = TestApp::spawn().await;
    let b = json!({"resourceType": "Bundle", "type": "batch", "entry": [
        {"resource": patient("Good"), "request": {"method": "POST", "url": "Patient"}},
        {"resource": {"resourceType": "Patient", "bogus": true}, "request": {"method": "POST", "url": "Patient"}},
        {"request": {"method": "GET", "url": "Patient/missing"}},
        {"request": {"method": "PATCH", "url": "Patient/x"}}
    ]});
    let r = t.post("/fhir", &b).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let body = r.json();
    crate::common::assert_valid_r4(&body);
    assert_eq!(body["type"], "batch-response");
    let e = body["entry"].as_array().unwrap();
    assert_eq!(e[0]["response"]["status"], "201 Created");
    assert_eq!(e[1]["response"]["status"], "400 Bad Request");
    assert_eq!(e[1]["response"]["outcome"]["resourceType"], "OperationOutcome");
    assert_eq!(e[2]["response"]["status"], "404 Not Found");
    assert_eq!(e[3]["response"]["status"], "400 Bad Request");
    assert_eq!(type_count(&t, "Patient").await, 1);
}

#[tokio::test]
async fn only_batch_and_transaction_bundles_are_accepted_at_the_base() {
    let t = TestApp::spawn().await;
    let r = t.post("/fhir", &json!({"resourceType": "Bundle", "type": "collection"})).await;
    assert_eq!(r.status, 400);
    assert_eq!(r.outcome_issue()["expression"][0], "Bundle.type");
    let r = t.post("/fhir", &patient("NotABundle")).await;
    assert_eq!(r.status, 400);
    let r = t.post("/fhir", &tx(vec![json!({"request": {"method": "POST", "url": "Patient"}})])).await;
    assert_eq!(r.status, 400, "a POST entry needs a resource: {}", r.text);
    let r = t.post("/fhir", &tx(vec![])).await;
    assert_eq!(r.status, 400, "an empty array is not valid FHIR JSON");
    let r = t.post("/fhir", &json!({"resourceType": "Bundle", "type": "transaction"})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["type"], "transaction-response");
    crate::common::assert_valid_r4(&r.json());
}
