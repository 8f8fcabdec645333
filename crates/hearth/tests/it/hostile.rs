//! What a hostile (or just unusual) client found, each kept as a regression test: huge value
//! lists and repeated parameters in searches, invalid cursors, error bodies from the HTTP layer,
//! resources with very many repeated elements, and input that is invalid but used to be stored.

use reqwest::Method;
use serde_json::json;

use crate::common::{TestApp, patient, seed_account};

/// The documented maxima of one search (`hearth_search::MAX_VALUES`, `MAX_PARAMETERS`).
const MAX_VALUES: usize = 1000;
const MAX_PARAMETERS: usize = 100;

/// `n` ids that do not exist, then `real`.
fn id_list(n: usize, real: &[String]) -> String {
    let mut ids: Vec<String> = (0..n).map(|i| format!("nonexistent-{i:04}")).collect();
    ids.extend(real.iter().cloned());
    ids.join(",")
}

fn match_ids(bundle: &serde_json::Value) -> Vec<String> {
    let mut ids: Vec<String> = bundle["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default();
    ids.sort();
    ids
}

#[tokio::test]
async fn a_search_for_a_thousand_ids_is_answered_on_get_and_post() {
    let t = TestApp::spawn().await;
    let mut real = vec![t.create(&patient("Alpha")).await, t.create(&patient("Beta")).await];
    real.sort();
    // 998 + 2 = 1,000 values: the documented maximum (MAX_VALUES), all answered.
    let list = id_list(MAX_VALUES - 2, &real);
    let r = t.get(&format!("/fhir/Patient?_id={list}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(match_ids(&r.json()), real);
    // The same as a form body.
    let r = t
        .send(
            t.request(Method::POST, "/fhir/Patient/_search")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("_id={list}")),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(match_ids(&r.json()), real);
    // A long token list (OR-ed codes of one system) and a long string list go the same way.
    let mut p = patient("Gamma");
    p["identifier"] = json!([{"system": "http://hosp.example/mrn", "value": "mrn-0500"}]);
    let gamma = t.create(&p).await;
    let tokens: Vec<String> = (0..600).map(|i| format!("http://hosp.example/mrn|mrn-{i:04}")).collect();
    let r = t.get(&format!("/fhir/Patient?identifier={}", tokens.join(","))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(match_ids(&r.json()), vec![gamma.clone()]);
    let names: Vec<String> = (0..600).map(|i| format!("nobody{i}")).chain(["Gamma".to_owned()]).collect();
    let r = t.get(&format!("/fhir/Patient?family={}", names.join(","))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(match_ids(&r.json()), vec![gamma]);
}

#[tokio::test]
async fn too_many_values_or_parameters_are_refused_as_too_costly() {
    let t = TestApp::spawn().await;
    let real = vec![t.create(&patient("Alpha")).await];
    // One value over the maximum.
    let list = id_list(MAX_VALUES, &real);
    let r = t.get(&format!("/fhir/Patient?_id={list}")).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "too-costly");
    let r = t
        .send(
            t.request(Method::POST, "/fhir/Patient/_search")
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("_id={list}")),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "too-costly");
    // Repeated parameters (AND-ed): the maximum is answered, one more is refused.
    let repeated = |n: usize| vec![format!("_id={}", real[0]); n].join("&");
    let r = t.get(&format!("/fhir/Patient?{}", repeated(MAX_PARAMETERS))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(match_ids(&r.json()), real);
    let r = t.get(&format!("/fhir/Patient?{}", repeated(MAX_PARAMETERS + 1))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "too-costly");
    // What the finding sent: a thousand repeated parameters.
    let r = t.get(&format!("/fhir/Patient?{}", repeated(1000))).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "too-costly");
    // Many AND-ed clauses of different kinds, each with a value list, still compile and run.
    let mut q: Vec<String> = Vec::new();
    for i in 0..(MAX_PARAMETERS / 2) {
        q.push(format!("family=Alpha,x{i},y{i}"));
        q.push(format!("birthdate=lt2100-01-01,gt1800-0{}-01", i % 9 + 1));
    }
    let r = t.get(&format!("/fhir/Patient?{}", q.join("&"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A client with the bearer token of a new patient account linked to `Patient/pid`.
async fn patient_client(t: &TestApp, pid: &str) -> reqwest::Client {
    let token = seed_account(&t.app, &format!("acct-{pid}"), "patient", Some(format!("Patient/{pid}")), None).await;
    let mut headers = reqwest::header::HeaderMap::new();
    headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(headers).build().unwrap()
}

#[tokio::test]
async fn an_invalid_access_log_cursor_is_400_not_500() {
    let t = TestApp::spawn().await;
    let pid = t.create(&patient("Kaur")).await;
    let me = patient_client(&t, &pid).await;
    // Something to page through: two reads of the record.
    for _ in 0..2 {
        assert_eq!(t.get(&format!("/fhir/Patient/{pid}")).await.status, 200);
    }
    t.app.auditor.flush().await.unwrap();
    let good = t.send(me.get(t.url("/api/v1/me/access-log?count=1"))).await;
    assert_eq!(good.status, 200, "{}", good.text);
    let next = good.json()["next"].as_str().expect("a next page").to_owned();
    // Not hex, odd length, hex of non-JSON, a valid cursor cut short, one of another shape.
    let other_shape: String = "[\"n\",1,[1,2,3]]".bytes().map(|b| format!("{b:02x}")).collect();
    for bad in ["abc", "zz", "00", &next[..next.len() - 2], &other_shape, "%C3%A9%C3%A9"] {
        let r = t.send(me.get(t.url(&format!("/api/v1/me/access-log?cursor={bad}")))).await;
        assert_eq!(r.status, 400, "cursor {bad}: {}", r.text);
        assert!(r.header("content-type").unwrap_or_default().starts_with("application/json"), "{bad}");
        assert_eq!(r.json()["error"]["code"], "invalid_cursor", "{bad}");
    }
}

/// Asserts an app-API error envelope with `code`.
fn envelope(r: &crate::common::Resp, code: &str) {
    assert!(
        r.header("content-type").unwrap_or_default().starts_with("application/json"),
        "content-type {:?}: {}",
        r.header("content-type"),
        r.text
    );
    let v = r.json();
    assert_eq!(v["error"]["code"], code, "{}", r.text);
    assert!(v["error"]["message"].as_str().is_some_and(|m| !m.is_empty()), "{}", r.text);
}

#[tokio::test]
async fn framework_refusals_answer_the_envelope_or_an_operation_outcome() {
    let t = TestApp::spawn().await;
    // A query string the endpoint's extractor cannot decode (a required field missing).
    let r = t.get("/api/v1/appointments/slots/available").await;
    assert_eq!(r.status, 400, "{}", r.text);
    envelope(&r, "invalid_query");
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("practitioner"), "{}", r.text);
    // An unknown app path, and a method the path does not take (its Allow header kept).
    let r = t.get("/api/v1/no-such-thing").await;
    assert_eq!(r.status, 404);
    envelope(&r, "not_found");
    let r = t.send(t.request(Method::PATCH, "/api/v1/me/access-log")).await;
    assert_eq!(r.status, 405);
    envelope(&r, "method_not_allowed");
    assert!(r.header("allow").is_some_and(|a| a.contains("GET")), "{:?}", r.headers);
    // An app JSON body that does not decode.
    let r = t
        .send(
            t.request(Method::POST, "/api/v1/admin/accounts")
                .header("content-type", "application/json")
                .body("{\"email\": 3"),
        )
        .await;
    assert!(r.status == 400 || r.status == 422, "{}", r.text);
    envelope(&r, "invalid_body");
    // HEAD keeps its empty body.
    let r = t.send(t.request(Method::HEAD, "/api/v1/no-such-thing")).await;
    assert_eq!(r.status, 404);
    assert!(r.text.is_empty());
}

#[tokio::test]
async fn a_very_long_url_is_414_in_the_form_of_its_api() {
    let t = TestApp::spawn().await;
    // Over MAX_URI_BYTES (48 KiB), under the HTTP library's own 64 KiB limit.
    let long = "x".repeat(50 * 1024);
    let r = t.get(&format!("/fhir/Patient?family={long}")).await;
    assert_eq!(r.status, 414, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "too-long");
    let r = t.get(&format!("/api/v1/me/access-log?cursor={long}")).await;
    assert_eq!(r.status, 414, "{}", r.text);
    envelope(&r, "uri_too_long");
    // Just under the limit is served (here: an unknown family, no match).
    let under = "x".repeat(40 * 1024);
    let r = t.get(&format!("/fhir/Patient?family={under}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
}

/// A Patient with `n` names `Family{i}`.
fn patient_with_names(n: usize) -> serde_json::Value {
    let mut p = patient("Many");
    p["name"] = json!((0..n).map(|i| json!({"family": format!("Family{i}"), "given": ["Pat"]})).collect::<Vec<_>>());
    p
}

#[tokio::test]
async fn repeated_elements_are_bounded_with_422_and_a_large_record_under_the_bound_is_indexed() {
    let t = TestApp::spawn().await;
    // Over the bound (MAX_REPEATS = 10,000 items in one array): refused, nothing stored.
    let r = t.post("/fhir/Patient", &patient_with_names(10_001)).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let issue = r.outcome_issue();
    assert_eq!(issue["code"], "too-costly");
    assert_eq!(issue["expression"][0], "Patient.name");
    let r = t
        .put("/fhir/Patient/many", &{
            let mut p = patient_with_names(10_001);
            p["id"] = json!("many");
            p
        })
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    // Under it: stored and every name indexed (the last one is found).
    let id = t.create(&patient_with_names(5_000)).await;
    let r = t.get("/fhir/Patient?family:exact=Family4999").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(match_ids(&r.json()), vec![id]);
}

#[tokio::test]
async fn an_empty_patch_is_refused_and_writes_no_version() {
    let t = TestApp::spawn().await;
    let id = t.create(&patient("Still")).await;
    let path = format!("/fhir/Patient/{id}");
    let r =
        t.send(t.request(Method::PATCH, &path).header("content-type", "application/json-patch+json").body("[]")).await;
    assert_eq!(r.status, 422, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "processing");
    let empty_parameters = json!({"resourceType": "Parameters"});
    let r = t.send(t.with_body(Method::PATCH, &path, &empty_parameters)).await;
    assert_eq!(r.status, 422, "{}", r.text);
    let r = t.get(&path).await;
    assert_eq!(r.json()["meta"]["versionId"], "1", "no new version: {}", r.text);
    // A patch with an operation still works.
    let op = json!([{"op": "replace", "path": "/gender", "value": "female"}]);
    let r = t
        .send(
            t.request(Method::PATCH, &path).header("content-type", "application/json-patch+json").body(op.to_string()),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(t.get(&path).await.json()["meta"]["versionId"], "2");
}

#[tokio::test]
async fn a_decimal_beyond_the_range_of_a_double_is_refused() {
    let t = TestApp::spawn().await;
    let pid = t.create(&patient("Big")).await;
    for value in ["1e400", "-1e400", "1E+309"] {
        let body = format!(
            r#"{{"resourceType": "Observation", "status": "final", "code": {{"text": "weight"}},
                "subject": {{"reference": "Patient/{pid}"}}, "valueQuantity": {{"value": {value}, "unit": "kg"}}}}"#
        );
        let r = t
            .send(
                t.request(Method::POST, "/fhir/Observation").header("content-type", "application/fhir+json").body(body),
            )
            .await;
        assert_eq!(r.status, 400, "{value}: {}", r.text);
        let issue = r.outcome_issue();
        assert_eq!(issue["code"], "value", "{value}");
    }
    // Large and tiny finite decimals are kept as written.
    let body = format!(
        r#"{{"resourceType": "Observation", "status": "final", "code": {{"text": "weight"}},
            "subject": {{"reference": "Patient/{pid}"}}, "valueQuantity": {{"value": 1.5e300, "unit": "kg"}}}}"#
    );
    let r = t
        .send(t.request(Method::POST, "/fhir/Observation").header("content-type", "application/fhir+json").body(body))
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let r = t.get("/fhir/Observation").await;
    assert_eq!(r.json()["total"], 1, "only the finite one was stored");
}

#[tokio::test]
async fn duplicate_full_urls_and_bad_contained_resources_are_refused() {
    let t = TestApp::spawn().await;
    let entry = |url: &str, family: &str| json!({"fullUrl": url, "resource": patient(family), "request": {"method": "POST", "url": "Patient"}});
    for kind in ["transaction", "batch"] {
        let bundle = json!({"resourceType": "Bundle", "type": kind, "entry": [
            entry("urn:uuid:6f1a2b3c-0000-4000-8000-000000000001", "One"),
            entry("urn:uuid:6f1a2b3c-0000-4000-8000-000000000001", "Two"),
        ]});
        let r = t.post("/fhir", &bundle).await;
        assert_eq!(r.status, 400, "{kind}: {}", r.text);
        let issue = r.outcome_issue();
        assert_eq!(issue["code"], "invalid");
        assert_eq!(issue["expression"][0], "Bundle.entry[1].fullUrl");
    }
    assert_eq!(t.get("/fhir/Patient").await.json()["total"], 0, "nothing written");
    // Distinct fullUrls are fine.
    let bundle = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        entry("urn:uuid:6f1a2b3c-0000-4000-8000-000000000001", "One"),
        entry("urn:uuid:6f1a2b3c-0000-4000-8000-000000000002", "Two"),
    ]});
    assert_eq!(t.post("/fhir", &bundle).await.status, 200);

    // dom-2: a contained resource containing resources; and two contained resources with one id.
    let org = |id: &str| json!({"resourceType": "Organization", "id": id, "name": "Clinic"});
    let mut nested = patient("Nested");
    let mut inner = org("o1");
    inner["contained"] = json!([org("o2")]);
    nested["contained"] = json!([inner]);
    nested["managingOrganization"] = json!({"reference": "#o1"});
    let r = t.post("/fhir/Patient", &nested).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "invariant");
    let mut twice = patient("Twice");
    twice["contained"] = json!([org("o1"), org("o1")]);
    twice["managingOrganization"] = json!({"reference": "#o1"});
    let r = t.post("/fhir/Patient", &twice).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "invariant");
    // One contained resource, referenced: fine.
    let mut once = patient("Once");
    once["contained"] = json!([org("o1")]);
    once["managingOrganization"] = json!({"reference": "#o1"});
    assert_eq!(t.post("/fhir/Patient", &once).await.status, 201);
}

#[tokio::test]
async fn app_bodies_must_be_objects_and_names_and_birth_dates_plausible() {
    let t = TestApp::spawn().await;
    // An array is no preferences object (serde would have read it field by field).
    let r = t
        .send(
            t.request(Method::PUT, "/api/v1/notifications/preferences")
                .header("content-type", "application/json")
                .body("[null, null]"),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    envelope(&r, "invalid_body");
    let r = t
        .send(
            t.request(Method::PUT, "/api/v1/notifications/preferences")
                .header("content-type", "application/json")
                .body(r#"{"language": "hi"}"#),
        )
        .await;
    assert_eq!(r.status, 200, "{}", r.text);

    let register = |email: &str, given: &str, birth: &str| {
        let body = json!({"email": email, "password": "correct horse battery staple 42", "given": given,
            "family": "Rao", "birthDate": birth});
        t.anonymous()
            .post(t.url("/api/v1/auth/register"))
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    let tomorrow = (chrono::Utc::now() + chrono::Duration::days(2)).format("%Y-%m-%d").to_string();
    let r = t.send(register("future@example.org", "Asha", &tomorrow)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    envelope(&r, "invalid_birth_date");
    for name in ["As\u{202E}ha", "Ash\u{2067}a", "As\u{7}ha", "As\u{0}ha", &"a".repeat(101)] {
        let r = t.send(register("odd@example.org", name, "1984-03-07")).await;
        assert_eq!(r.status, 400, "{name:?}: {}", r.text);
        envelope(&r, "invalid_name");
    }
    // Letters of any script are names.
    let r = t.send(register("asha@example.org", "आशा", "1984-03-07")).await;
    assert_eq!(r.status, 201, "{}", r.text);
}

#[tokio::test]
async fn a_hierarchy_wider_than_a_search_value_list_is_expanded() {
    let t = TestApp::spawn().await;
    // One root with MAX_VALUES + 1 children and a grandchild under the last: the second level of
    // `partof:below` looks for resources pointing at any of MAX_VALUES + 1 ids, more than one
    // search takes, so the expansion must ask in chunks (it used to answer 400 too-costly).
    let org = |id: &str, parent: Option<&str>| {
        let mut o = json!({"resourceType": "Organization", "id": id, "name": id});
        if let Some(p) = parent {
            o["partOf"] = json!({"reference": format!("Organization/{p}")});
        }
        o
    };
    let mut entries = vec![org("root", None)];
    entries.extend((0..=MAX_VALUES).map(|i| org(&format!("child-{i:04}"), Some("root"))));
    entries.push(org("grandchild", Some(&format!("child-{MAX_VALUES:04}"))));
    let bundle = json!({
        "resourceType": "Bundle",
        "type": "batch",
        "entry": entries.iter().map(|o| json!({
            "resource": o,
            "request": {"method": "PUT", "url": format!("Organization/{}", o["id"].as_str().unwrap())},
        })).collect::<Vec<_>>(),
    });
    let r = t.post("/fhir", &bundle).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let statuses: Vec<String> = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["response"]["status"].as_str().unwrap().to_owned())
        .collect();
    assert!(statuses.iter().all(|s| s.starts_with("201")), "{statuses:?}");

    let r = t.get("/fhir/Organization?partof:below=root&_summary=count").await;
    assert_eq!(r.status, 200, "{}", r.text);
    // What is part of the root: its children and the grandchild (as for org-1 in it::search).
    assert_eq!(r.json()["total"], MAX_VALUES + 2, "the children and the grandchild");
    let r = t.get("/fhir/Organization?partof:below=root&_id=grandchild").await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(match_ids(&r.json()), vec!["grandchild".to_owned()]);
}

#[tokio::test]
async fn unresolved_urn_references_are_refused_not_stored() {
    let t = TestApp::spawn().await;
    let dangling = "urn:uuid:6f1c3b0e-2d7a-4f7e-9a51-3b0d2c9e8f10";
    let mut p = patient("Dangling");
    p["managingOrganization"] = json!({"reference": dangling});
    // On its own: create, update, conditional update.
    let r = t.post("/fhir/Patient", &p).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "invalid");
    let mut with_id = p.clone();
    with_id["id"] = json!("dangling-1");
    assert_eq!(t.put("/fhir/Patient/dangling-1", &with_id).await.status, 400);
    assert_eq!(t.put("/fhir/Patient?family=Dangling", &p).await.status, 400);
    // A patch that writes one.
    let id = t.create(&patient("Patched")).await;
    let r = t
        .send(
            t.request(Method::PATCH, &format!("/fhir/Patient/{id}"))
                .header("content-type", "application/json-patch+json")
                .body(
                    json!([{"op": "add", "path": "/managingOrganization", "value": {"reference": "urn:oid:1.2.3"}}])
                        .to_string(),
                ),
        )
        .await;
    assert_eq!(r.status, 422, "{}", r.text);
    // In a transaction naming no entry's fullUrl: the whole Bundle is refused, nothing written.
    let bundle = |reference: &str| {
        json!({"resourceType": "Bundle", "type": "transaction", "entry": [
            {"fullUrl": "urn:uuid:0a6b8f4e-1111-4c2a-8d7e-5e9f00000001",
             "resource": {"resourceType": "Organization", "name": "Clinic"},
             "request": {"method": "POST", "url": "Organization"}},
            {"resource": {"resourceType": "Patient", "name": [{"family": "InBundle"}],
                          "managingOrganization": {"reference": reference}},
             "request": {"method": "POST", "url": "Patient"}},
        ]})
    };
    let r = t.post("/fhir", &bundle(dangling)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert_eq!(t.get("/fhir/Patient?family=InBundle&_summary=count").await.json()["total"], 0);
    assert_eq!(t.get("/fhir/Organization?name=Clinic&_summary=count").await.json()["total"], 0);
    // One that names an entry is rewritten to it, as before.
    let r = t.post("/fhir", &bundle("urn:uuid:0a6b8f4e-1111-4c2a-8d7e-5e9f00000001")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let found = t.get("/fhir/Patient?family=InBundle").await.json();
    let reference = found["entry"][0]["resource"]["managingOrganization"]["reference"].as_str().unwrap().to_owned();
    assert!(reference.starts_with("Organization/"), "{reference}");
    // A document Bundle stored as a resource keeps references to its own entries.
    let document = json!({"resourceType": "Bundle", "type": "collection", "entry": [
        {"fullUrl": "urn:uuid:0a6b8f4e-2222-4c2a-8d7e-5e9f00000002",
         "resource": {"resourceType": "Patient", "managingOrganization": {"reference": "urn:uuid:0a6b8f4e-3333-4c2a-8d7e-5e9f00000003"}}},
        {"fullUrl": "urn:uuid:0a6b8f4e-3333-4c2a-8d7e-5e9f00000003",
         "resource": {"resourceType": "Organization", "name": "Kept"}},
    ]});
    assert_eq!(t.post("/fhir/Bundle", &document).await.status, 201);
}

#[tokio::test]
async fn account_e_mails_must_be_addresses() {
    let t = TestApp::spawn().await;
    let register = |email: &str| {
        let body = json!({"email": email, "password": "correct horse battery staple 42", "given": "Asha",
            "family": "Rao", "birthDate": "1984-03-07"});
        t.anonymous()
            .post(t.url("/api/v1/auth/register"))
            .header("content-type", "application/json")
            .body(body.to_string())
    };
    for bad in ["a@@b.c", "a@b..c", "a@b.c.", "a@.b.c", "@b.c", "a@bc", "a@b.c\u{7}"] {
        let r = t.send(register(bad)).await;
        assert_eq!(r.status, 400, "{bad:?}: {}", r.text);
        envelope(&r, "invalid_email");
    }
    // The admin API takes the same rule.
    let r = t
        .post(
            "/api/v1/admin/accounts",
            &json!({"email": "x@@y.org", "password": "correct horse battery staple 42", "role": "clinician"}),
        )
        .await;
    assert_eq!(r.status, 400, "{}", r.text);
    envelope(&r, "invalid_email");
    let r = t.send(register("asha.rao+hearth@mail.example.org")).await;
    assert_eq!(r.status, 201, "{}", r.text);
}
