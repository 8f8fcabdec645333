//! The patient and provider registry (issue 17, part 1): creating patients with duplicate checks,
//! search with paging, reach, demographics with optimistic concurrency, the provider directory,
//! Indian identifier validation over the API, and invitations to claim a record end to end.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use hearth_server::{App, Clock};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::scheduling::{account, call};

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// A clinician account bound to `organization` (straight in the database, a non-expiring token).
async fn org_clinician(app: &App, organization: &str) -> reqwest::Client {
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!("reg-doc-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let row = hearth_store_sql::identity::AccountRow {
        id: id.clone(),
        email: Some(format!("{id}@example.org")),
        phone: None,
        phone_pending: None,
        password_hash: None,
        role: "clinician".into(),
        fhir_user: None,
        organization: Some(organization.to_owned()),
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: 0,
    };
    hearth_store_sql::identity::insert_account(&*app.db, &row).await.unwrap();
    let claims = hearth_auth::token::AccessClaims {
        iss: app.auth.settings.issuer.clone(),
        sub: id.clone(),
        aud: app.auth.settings.audience.clone(),
        iat: 0,
        exp: i64::from(i32::MAX) * 4,
        jti: format!("{id}-jti"),
        role: "clinician".parse().unwrap(),
        scope: hearth_server::auth::DEFAULT_SCOPE.into(),
        patient: None,
        fhir_user: None,
        client_id: None,
    };
    bearer(app.auth.keys().sign(&claims).unwrap().expose())
}

async fn clinician(t: &TestApp) -> reqwest::Client {
    account(&t.app, "clinician", None, true).await.1
}

/// Sends `body` with `If-Match`, answering status, JSON and ETag.
async fn put_if(
    t: &TestApp,
    c: &reqwest::Client,
    path: &str,
    version: Option<&str>,
    body: Value,
) -> (u16, Value, Option<String>) {
    let mut req = c.put(t.url(path)).header("content-type", "application/json").body(body.to_string());
    if let Some(v) = version {
        req = req.header("if-match", format!("W/\"{v}\""));
    }
    let r = t.send(req).await;
    let etag = r.header("etag");
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null), etag)
}

fn asha() -> Value {
    json!({"given": ["Asha"], "family": "Rao", "birthDate": "1984-03-07", "gender": "female",
           "phone": "98765 43210", "abhaNumber": "12345678901234", "abhaAddress": "Asha.Rao84@abdm", "language": "hi",
           "address": {"line": ["12 MG Road"], "city": "Bengaluru", "state": "Karnataka", "postalCode": "560001"}})
}

#[tokio::test]
async fn registry_creates_patients_and_answers_probable_duplicates_with_candidates() {
    let t = TestApp::spawn().await;
    let doc = clinician(&t).await;
    let (s, p) = call(&t, &doc, Method::POST, "/api/v1/patients", Some(asha())).await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["phone"], "+919876543210");
    assert_eq!(p["abhaNumber"], "12-3456-7890-1234");
    assert_eq!(p["abhaAddress"], "asha.rao84@abdm");
    assert_eq!(
        (p["version"].as_str(), p["language"].as_str(), p["name"].as_str()),
        (Some("1"), Some("hi"), Some("Asha Rao"))
    );
    let id = p["id"].as_str().unwrap().to_owned();
    // The record is FHIR: the ABHA number is an identifier with the documented system.
    let fhir = t.get(&format!("/fhir/Patient/{id}")).await.json();
    crate::common::assert_valid_r4(&fhir);
    assert!(
        fhir["identifier"]
            .as_array()
            .unwrap()
            .iter()
            .any(|i| i["system"] == "https://healthid.ndhm.gov.in" && i["value"] == "12-3456-7890-1234")
    );
    assert_eq!(fhir["telecom"][0]["value"], "+919876543210");

    let dup = |body: Value| {
        let doc = doc.clone();
        let t = &t;
        async move { call(t, &doc, Method::POST, "/api/v1/patients", Some(body)).await }
    };
    // Same name (folded) and birth date.
    let (s, e) =
        dup(json!({"given": [" ASHA "], "family": "rao", "birthDate": "1984-03-07", "phone": "9123456780"})).await;
    assert_eq!(s, 409, "{e}");
    assert_eq!(e["error"]["code"], "probable_duplicate");
    assert_eq!(
        e["error"]["candidates"],
        json!([{"id": id, "name": "Asha Rao", "birthDate": "1984-03-07", "reasons": ["name_birthdate"]}])
    );
    // Same phone, however written.
    let (s, e) = dup(json!({"given": ["Meena"], "family": "Das", "phone": "+91-98765-43210"})).await;
    assert_eq!((s, e["error"]["candidates"][0]["reasons"].clone()), (409, json!(["phone"])), "{e}");
    assert_eq!(e["error"]["candidates"][0]["id"], id.as_str());
    // Same ABHA number.
    let (s, e) = dup(json!({"given": ["Ravi"], "family": "Iyer", "abhaNumber": "12-3456-7890-1234"})).await;
    assert_eq!((s, e["error"]["candidates"][0]["reasons"].clone()), (409, json!(["abha_number"])), "{e}");
    // All three at once name one candidate with three reasons.
    let (s, e) = dup(asha()).await;
    assert_eq!(
        (s, e["error"]["candidates"][0]["reasons"].clone()),
        (409, json!(["name_birthdate", "phone", "abha_number"]))
    );
    // A name that only starts the same, or another birth date, is not a duplicate.
    let (s, _) = dup(json!({"given": ["Asha"], "family": "Raob", "birthDate": "1984-03-07"})).await;
    assert_eq!(s, 201);
    let (s, _) = dup(json!({"given": ["Asha"], "family": "Rao", "birthDate": "1990-01-01"})).await;
    assert_eq!(s, 201);
    // force creates anyway.
    let mut forced = asha();
    forced["force"] = json!(true);
    let (s, p2) = dup(forced).await;
    assert_eq!(s, 201, "{p2}");
    assert_ne!(p2["id"], id.as_str());
}

#[tokio::test]
async fn registry_search_by_name_phone_identifier_pages_with_a_cursor() {
    let t = TestApp::spawn().await;
    let doc = clinician(&t).await;
    let mut ids = Vec::new();
    for (i, given) in ["Priya", "Rahul", "Sunita", "Vikram", "Anil"].iter().enumerate() {
        let body = json!({"given": [given], "family": "Kumar", "birthDate": format!("199{i}-01-01"),
                          "phone": format!("98765000{i:02}"), "abhaNumber": format!("9100000000000{i}"), "abhaAddress": format!("{}kumar9{i}@sbx", given.to_lowercase())});
        let (s, p) = call(&t, &doc, Method::POST, "/api/v1/patients", Some(body)).await;
        assert_eq!(s, 201, "{p}");
        ids.push(p["id"].as_str().unwrap().to_owned());
    }
    let (s, _) =
        call(&t, &doc, Method::POST, "/api/v1/patients", Some(json!({"given": ["Other"], "family": "Person"}))).await;
    assert_eq!(s, 201);
    // Paging by cursor visits every Kumar exactly once.
    let mut seen = Vec::new();
    let mut path = "/api/v1/patients?q=kumar&count=2".to_owned();
    loop {
        let (s, page) = call(&t, &doc, Method::GET, &path, None).await;
        assert_eq!(s, 200, "{page}");
        let n = page["patients"].as_array().unwrap().len();
        assert!(n <= 2);
        seen.extend(page["patients"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()));
        match page["next"].as_str() {
            Some(next) => {
                path = format!("/api/v1/patients?q=kumar&count=2&cursor={}", urlencode(next));
            }
            None => break,
        }
    }
    let mut sorted = seen.clone();
    sorted.sort();
    let mut want = ids.clone();
    want.sort();
    assert_eq!(sorted, want, "every Kumar once: {seen:?}");
    // Every word must start a name part.
    let found = |path: String| {
        let doc = doc.clone();
        let t = &t;
        async move {
            let (s, v) = call(t, &doc, Method::GET, &path, None).await;
            assert_eq!(s, 200, "{v}");
            v["patients"].as_array().unwrap().iter().map(|p| p["id"].as_str().unwrap().to_owned()).collect::<Vec<_>>()
        }
    };
    assert_eq!(found("/api/v1/patients?q=pri%20kum".into()).await, vec![ids[0].clone()]);
    assert_eq!(found("/api/v1/patients?phone=0987650%200003".into()).await, vec![ids[3].clone()]);
    assert_eq!(found("/api/v1/patients?phone=%2B91-98765-00001".into()).await, vec![ids[1].clone()]);
    assert_eq!(found("/api/v1/patients?identifier=91-0000-0000-0004".into()).await, vec![ids[4].clone()]);
    assert_eq!(found("/api/v1/patients?identifier=SunitaKumar92@sbx".into()).await, vec![ids[2].clone()]);
    assert_eq!(found("/api/v1/patients?q=kumar&phone=9876500002".into()).await, vec![ids[2].clone()]);
    assert!(found("/api/v1/patients?q=nobody".into()).await.is_empty());
    let (s, e) = call(&t, &doc, Method::GET, "/api/v1/patients?phone=12345", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_phone")));
    let (s, e) = call(&t, &doc, Method::GET, "/api/v1/patients?count=0", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));
    let (s, e) = call(&t, &doc, Method::GET, "/api/v1/patients?nope=1", None).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_query")));
}

fn urlencode(s: &str) -> String {
    s.bytes()
        .map(|b| {
            if b.is_ascii_alphanumeric() || b"-._~".contains(&b) {
                (b as char).to_string()
            } else {
                format!("%{b:02X}")
            }
        })
        .collect()
}

#[tokio::test]
async fn registry_reach_keeps_other_organisations_patients_out() {
    let t = TestApp::spawn().await;
    let org_a = t.create(&json!({"resourceType": "Organization", "name": "Clinic A"})).await;
    let org_b = t.create(&json!({"resourceType": "Organization", "name": "Clinic B"})).await;
    let doc_a = org_clinician(&t.app, &org_a).await;
    let doc_b = org_clinician(&t.app, &org_b).await;
    let (s, p) = call(&t, &doc_a, Method::POST, "/api/v1/patients", Some(asha())).await;
    assert_eq!(s, 201, "{p}");
    assert_eq!(p["organization"], org_a.as_str());
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, _) = call(&t, &doc_a, Method::GET, &format!("/api/v1/patients/{id}"), None).await;
    assert_eq!(s, 200);
    // Clinic B sees nothing of it, and cannot write into it.
    for path in [format!("/api/v1/patients/{id}"), format!("/api/v1/patients/{id}/demographics")] {
        let (s, e) = call(&t, &doc_b, Method::GET, &path, None).await;
        assert_eq!((s, e["error"]["code"].as_str()), (404, Some("not_found")), "{path}");
    }
    let (s, v) = call(&t, &doc_b, Method::GET, "/api/v1/patients?q=asha", None).await;
    assert_eq!((s, v["patients"].as_array().map(Vec::len)), (200, Some(0)));
    let (s, _, _) =
        put_if(&t, &doc_b, &format!("/api/v1/patients/{id}/demographics"), Some("1"), json!({"language": "en"})).await;
    assert_eq!(s, 404);
    let (s, _) =
        call(&t, &doc_b, Method::POST, &format!("/api/v1/patients/{id}/invite"), Some(json!({"channel": "sms"}))).await;
    assert_eq!(s, 404);
    // Creating into clinic A's reach is refused; its duplicate is not revealed to clinic B.
    let mut into_a = json!({"given": ["New"], "family": "Person", "organization": org_a});
    let (s, e) = call(&t, &doc_b, Method::POST, "/api/v1/patients", Some(into_a.clone())).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")), "{e}");
    into_a["organization"] = json!(org_b);
    let (s, _) = call(&t, &doc_b, Method::POST, "/api/v1/patients", Some(into_a)).await;
    assert_eq!(s, 201);
    let (s, p) = call(&t, &doc_b, Method::POST, "/api/v1/patients", Some(asha())).await;
    assert_eq!((s, p["organization"].as_str()), (201, Some(org_b.as_str())), "{p}");
    // A patient may not list, search or create patients.
    let (_, me) = account(&t.app, "patient", Some(format!("Patient/{id}")), true).await;
    for (method, path, body) in [
        (Method::GET, "/api/v1/patients", None),
        (Method::GET, "/api/v1/patients?q=asha", None),
        (Method::POST, "/api/v1/patients", Some(asha())),
    ] {
        let (s, e) = call(&t, &me, method, path, body).await;
        assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")), "{path}");
    }
    let (s, _) = call(&t, &me, Method::GET, &format!("/api/v1/patients/{id}"), None).await;
    assert_eq!(s, 200);
    let (s, _) = call(&t, &t.anonymous(), Method::GET, "/api/v1/patients", None).await;
    assert_eq!(s, 401);
}

#[tokio::test]
async fn registry_demographics_by_the_patient_and_staff_with_version_conflicts() {
    let t = TestApp::spawn().await;
    let doc = clinician(&t).await;
    let (_, p) = call(&t, &doc, Method::POST, "/api/v1/patients", Some(asha())).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (_, other) =
        call(&t, &doc, Method::POST, "/api/v1/patients", Some(json!({"given": ["Other"], "family": "One"}))).await;
    let other = other["id"].as_str().unwrap().to_owned();
    let (_, me) = account(&t.app, "patient", Some(format!("Patient/{id}")), true).await;
    let path = format!("/api/v1/patients/{id}/demographics");
    let r = t.send(me.get(t.url(&path))).await;
    assert_eq!((r.status, r.header("etag").as_deref()), (200, Some("W/\"1\"")));
    assert_eq!(r.json()["phone"], "+919876543210");
    // The patient changes their phone and language.
    let (s, v, etag) = put_if(
        &t,
        &me,
        &path,
        Some("1"),
        json!({"phone": "09123456789", "language": "hi-Latn", "email": "Asha@Example.org"}),
    )
    .await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["phone"].as_str(), v["language"].as_str(), v["email"].as_str()),
        (Some("+919123456789"), Some("hi-Latn"), Some("asha@example.org"))
    );
    assert_eq!((v["version"].as_str(), etag.as_deref()), (Some("2"), Some("W/\"2\"")));
    assert_eq!(v["abhaNumber"], "12-3456-7890-1234", "fields not sent keep their value");
    // Staff holding the old version lose.
    let (s, e, _) = put_if(&t, &doc, &path, Some("1"), json!({"phone": "9000000001"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (412, Some("version_conflict")), "{e}");
    let (s, e, _) = put_if(&t, &doc, &path, None, json!({"phone": "9000000001"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (428, Some("version_required")));
    let (s, e, _) = put_if(&t, &doc, &path, Some("x"), json!({})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_if_match")));
    // Staff may change names; the patient may not.
    let (s, e, _) = put_if(&t, &me, &path, Some("2"), json!({"family": "Sharma"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("field_not_allowed")));
    let (s, v, _) = put_if(&t, &doc, &path, Some("2"), json!({"family": "Sharma", "address": {"line": ["4 Park Street"], "city": "Kolkata", "postalCode": "700016"}, "email": ""})).await;
    assert_eq!(s, 200, "{v}");
    assert_eq!(
        (v["name"].as_str(), v["version"].as_str(), v["email"].clone()),
        (Some("Asha Sharma"), Some("3"), Value::Null)
    );
    assert_eq!(v["address"]["postalCode"], "700016");
    // Bad values are refused with stable codes; another patient's record is not the patient's.
    for (body, code) in [
        (json!({"language": "english"}), "invalid_language"),
        (json!({"phone": "12345"}), "invalid_phone"),
        (json!({"address": {"postalCode": "012345"}}), "invalid_address"),
        (json!({"force": true}), "invalid_body"),
        (json!({"nickname": "A"}), "invalid_body"),
    ] {
        let (s, e, _) = put_if(&t, &me, &path, Some("3"), body.clone()).await;
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some(code)), "{body}");
    }
    let (s, _, _) =
        put_if(&t, &me, &format!("/api/v1/patients/{other}/demographics"), Some("1"), json!({"language": "en"})).await;
    assert_eq!(s, 404);
    let (s, _) = call(&t, &me, Method::GET, &format!("/api/v1/patients/{other}"), None).await;
    assert_eq!(s, 404);
    // The history holds every version.
    let h = t.get(&format!("/fhir/Patient/{id}/_history")).await.json();
    assert_eq!(h["entry"].as_array().unwrap().len(), 3);
}

#[tokio::test]
async fn registry_providers_are_created_by_admins_and_listed_to_everyone() {
    let t = TestApp::spawn().await;
    let org = t.create(&json!({"resourceType": "Organization", "name": "Bone and Joint Clinic"})).await;
    let (s, ortho) = call(&t, &t.client, Method::POST, "/api/v1/providers", Some(json!({
        "prefix": ["Dr"], "given": ["Meera"], "family": "Iyer", "phone": "98450 12345",
        "specialty": {"system": "snomed", "code": "394801008", "display": "Trauma and orthopaedics"}, "organization": org}))).await;
    assert_eq!(s, 201, "{ortho}");
    assert_eq!(ortho["name"], "Dr Meera Iyer");
    assert_eq!(ortho["specialty"]["system"], "http://snomed.info/sct");
    assert_eq!(ortho["organization"], org.as_str());
    let (s, gp) = call(&t, &t.client, Method::POST, "/api/v1/providers", Some(json!({
        "given": ["Arjun"], "family": "Menon", "specialty": {"system": "nucc", "code": "207Q00000X", "display": "Family Medicine"}}))).await;
    assert_eq!(s, 201, "{gp}");
    let role = t.get(&format!("/fhir/PractitionerRole/{}", gp["roleId"].as_str().unwrap())).await.json();
    assert_eq!(role["practitioner"]["reference"], format!("Practitioner/{}", gp["id"].as_str().unwrap()));
    crate::common::assert_valid_r4(&role);
    // Only admins create; everyone signed in lists.
    let doc = clinician(&t).await;
    let (s, e) = call(
        &t,
        &doc,
        Method::POST,
        "/api/v1/providers",
        Some(json!({"family": "X", "specialty": {"system": "snomed", "code": "394801008"}})),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (403, Some("forbidden")));
    let (_, me) = account(&t.app, "patient", None, true).await;
    let (s, list) = call(&t, &me, Method::GET, "/api/v1/providers", None).await;
    assert_eq!(s, 200, "{list}");
    let names: Vec<&str> = list["providers"].as_array().unwrap().iter().map(|p| p["name"].as_str().unwrap()).collect();
    assert_eq!(names, ["Dr Meera Iyer", "Arjun Menon"]);
    assert_eq!(list["providers"][1]["specialty"]["code"], "207Q00000X");
    let (s, list) = call(&t, &me, Method::GET, "/api/v1/providers?specialty=snomed|394801008", None).await;
    assert_eq!(s, 200);
    assert_eq!(list["providers"].as_array().unwrap().len(), 1);
    assert_eq!(list["providers"][0]["id"], ortho["id"]);
    let (s, list) = call(&t, &me, Method::GET, "/api/v1/providers?count=1", None).await;
    assert_eq!((s, list["providers"].as_array().unwrap().len(), list["next"].is_string()), (200, 1, true));
    let (s, _) = call(&t, &t.anonymous(), Method::GET, "/api/v1/providers", None).await;
    assert_eq!(s, 401);
    for (body, status, code) in [
        (json!({"family": "X", "specialty": {"system": "icd10", "code": "M54.5"}}), 400, "invalid_specialty"),
        (json!({"family": "X", "specialty": {"system": "nucc", "code": "207q00000x"}}), 400, "invalid_specialty"),
        (json!({"family": "X", "specialty": {"system": "snomed", "code": "12"}}), 400, "invalid_specialty"),
        (json!({"specialty": {"system": "snomed", "code": "394801008"}}), 400, "invalid_name"),
        (
            json!({"family": "X", "phone": "555", "specialty": {"system": "snomed", "code": "394801008"}}),
            400,
            "invalid_phone",
        ),
        (
            json!({"family": "X", "organization": "nope", "specialty": {"system": "snomed", "code": "394801008"}}),
            422,
            "unknown_reference",
        ),
        (json!({"family": "X"}), 400, "invalid_body"),
    ] {
        let (s, e) = call(&t, &t.client, Method::POST, "/api/v1/providers", Some(body.clone())).await;
        assert_eq!((s, e["error"]["code"].as_str()), (status, Some(code)), "{body}");
    }
}

#[tokio::test]
async fn registry_refuses_bad_phones_and_abha_identifiers_with_stable_codes() {
    let t = TestApp::spawn().await;
    let doc = clinician(&t).await;
    let base = || json!({"given": ["Test"], "family": "Person"});
    for (field, value, code) in [
        ("phone", "12345", "invalid_phone"),
        ("phone", "5876543210", "invalid_phone"),
        ("phone", "+91 5876543210", "invalid_phone"),
        ("phone", "98765-4321O", "invalid_phone"),
        ("abhaNumber", "1234", "invalid_abha_number"),
        ("abhaNumber", "12-3456-7890-123X", "invalid_abha_number"),
        ("abhaAddress", "asha@gmail.com", "invalid_abha_address"),
        ("abhaAddress", "short@abdm", "invalid_abha_address"),
        ("abhaAddress", "asha.rao.84@abdm", "invalid_abha_address"),
        ("birthDate", "2999-01-01", "invalid_birth_date"),
        ("birthDate", "07/03/1984", "invalid_birth_date"),
        ("gender", "f", "invalid_gender"),
        ("email", "asha@", "invalid_email"),
    ] {
        let mut body = base();
        body[field] = json!(value);
        let (s, e) = call(&t, &doc, Method::POST, "/api/v1/patients", Some(body)).await;
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some(code)), "{field}={value}: {e}");
    }
    let mut foreign = base();
    foreign["phone"] = json!("+44 20 7946 0958");
    let (s, p) = call(&t, &doc, Method::POST, "/api/v1/patients", Some(foreign)).await;
    assert_eq!((s, p["phone"].as_str()), (201, Some("+442079460958")), "{p}");
    // Malformed bodies are our envelope too, never a 500.
    for raw in ["{", "[]", "{\"given\": \"Asha\"}", "{\"given\": [\"A\"], \"extra\": 1}", "{}"] {
        let r = t.send(doc.post(t.url("/api/v1/patients")).header("content-type", "application/json").body(raw)).await;
        assert_eq!(r.status, 400, "{raw}: {}", r.text);
        let code = r.json()["error"]["code"].as_str().unwrap().to_owned();
        assert!(code == "invalid_body" || code == "invalid_name", "{raw}: {code}");
    }
}

/// The claim code in a message text (`xxxx-xxxx-xxxx-xxxx`).
fn code_in(text: &str) -> String {
    text.split(|c: char| !(c.is_ascii_alphanumeric() || c == '-'))
        .find(|w| w.len() == 19 && w.matches('-').count() == 3)
        .unwrap_or_else(|| panic!("no code in {text:?}"))
        .to_owned()
}

async fn drain(app: &Arc<App>) {
    while hearth_server::notify::worker::run_once(&app.notifications, "registry-test-worker").await.unwrap() > 0 {}
}

#[tokio::test]
async fn registry_invites_are_claimed_once_and_expire() {
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    let doc = clinician(&t).await;
    let mut body = asha();
    body["email"] = json!("asha@example.org");
    let (_, p) = call(&t, &doc, Method::POST, "/api/v1/patients", Some(body)).await;
    let id = p["id"].as_str().unwrap().to_owned();
    let invite = format!("/api/v1/patients/{id}/invite");

    // Staff invite by SMS: the outbox row commits with the invitation.
    let (s, inv) = call(&t, &doc, Method::POST, &invite, Some(json!({"channel": "sms"}))).await;
    assert_eq!(s, 201, "{inv}");
    assert_eq!(inv["to"], "+91******3210");
    assert!(inv.get("code").is_none(), "the code is never shown to staff");
    let rows = hearth_store_sql::notify::list_by_status(&*t.app.db, None, 1000).await.unwrap();
    let row = rows.iter().find(|r| r.idem_key == format!("registry-invite:{}", inv["id"].as_str().unwrap())).unwrap();
    assert_eq!((row.channel.as_str(), row.template.as_str()), ("sms", "registry-invite"));
    drain(&t.app).await;
    let sms = t.outbox.messages().into_iter().find(|m| m.to == "+919876543210").expect("the invitation SMS");
    let code = code_in(&sms.sms);
    assert!(sms.sms.contains(&format!("/claim?code={code}")), "{}", sms.sms);

    // Wrong and unknown codes get the same answer; so does garbage.
    let claim = |body: Value| {
        let t = &t;
        async move { call(t, &t.anonymous(), Method::POST, "/api/v1/patients/claim", Some(body)).await }
    };
    for wrong in ["aaaa-bbbb-cccc-dddd", "zzz", ""] {
        let (s, e) = claim(json!({"code": wrong, "password": "a long passphrase of mine"})).await;
        assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invite_invalid")), "{wrong}");
    }
    let (s, e) = claim(json!({"code": code})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_claim")));
    let (s, e) = claim(json!({"code": code, "password": "short"})).await;
    assert_eq!(s, 400, "{e}");
    // The right code creates a patient account linked to the record.
    let (s, acc) = claim(json!({"code": code.to_uppercase(), "password": "a long passphrase of mine"})).await;
    assert_eq!(s, 201, "{acc}");
    assert_eq!(acc["account"]["fhirUser"], format!("Patient/{id}"));
    assert_eq!(
        (acc["account"]["role"].as_str(), acc["account"]["email"].as_str()),
        (Some("patient"), Some("asha@example.org"))
    );
    let (s, login) = call(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"email": "asha@example.org", "password": "a long passphrase of mine"})),
    )
    .await;
    assert_eq!(s, 200, "{login}");
    let me = bearer(login["access_token"].as_str().unwrap());
    let (s, mine) = call(&t, &me, Method::GET, &format!("/api/v1/patients/{id}"), None).await;
    assert_eq!((s, mine["id"].as_str()), (200, Some(id.as_str())));
    assert_eq!(t.send(me.get(t.url(&format!("/fhir/Patient/{id}")))).await.status, 200);
    // Used once only; a claimed record takes no more invitations.
    let (s, e) = claim(json!({"code": code, "password": "another long passphrase"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (410, Some("invite_used")));
    let (s, e) = call(&t, &doc, Method::POST, &invite, Some(json!({"channel": "email"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (409, Some("already_claimed")));

    // A second patient, phone only: an e-mail invitation has nowhere to go; SMS does.
    let (_, p2) = call(
        &t,
        &doc,
        Method::POST,
        "/api/v1/patients",
        Some(json!({"given": ["Gita"], "family": "Bose", "phone": "9000000007"})),
    )
    .await;
    let id2 = p2["id"].as_str().unwrap().to_owned();
    let invite2 = format!("/api/v1/patients/{id2}/invite");
    let (s, e) = call(&t, &doc, Method::POST, &invite2, Some(json!({"channel": "email"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("no_destination")));
    let (s, e) = call(&t, &doc, Method::POST, &invite2, Some(json!({"channel": "fax"}))).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_channel")));
    let (_, me_patient) = account(&t.app, "patient", None, true).await;
    let (s, _) = call(&t, &me_patient, Method::POST, &invite2, Some(json!({"channel": "sms"}))).await;
    assert_eq!(s, 403);
    let sms_code = |t: &TestApp, to: &str| {
        let mut m: Vec<_> = t.outbox.messages().into_iter().filter(|m| m.to == to).collect();
        code_in(&m.pop().unwrap().sms)
    };
    let (s, _) = call(&t, &doc, Method::POST, &invite2, Some(json!({"channel": "sms"}))).await;
    assert_eq!(s, 201);
    drain(&t.app).await;
    let first = sms_code(&t, "+919000000007");
    // A new invitation replaces the outstanding one.
    let (s, _) = call(&t, &doc, Method::POST, &invite2, Some(json!({"channel": "sms"}))).await;
    assert_eq!(s, 201);
    drain(&t.app).await;
    let second = sms_code(&t, "+919000000007");
    assert_ne!(first, second);
    let (s, e) = claim(json!({"code": first, "otp": true})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (410, Some("invite_expired")));
    // A password needs an e-mail on the record; OTP sign-in does not.
    let (s, e) = claim(json!({"code": second, "password": "a long passphrase of mine"})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("email_required")));
    // Expiry: 24 hours by default.
    let now = t.clock.now();
    t.clock.set(now + chrono::TimeDelta::hours(25));
    let (s, e) = claim(json!({"code": second, "otp": true})).await;
    assert_eq!((s, e["error"]["code"].as_str()), (410, Some("invite_expired")));
    t.clock.set(now);
    let (s, acc) = claim(json!({"code": second, "otp": true})).await;
    assert_eq!((s, acc["signIn"].as_str()), (201, Some("otp")), "{acc}");
    assert_eq!(acc["account"]["phone"], "+919000000007");
}

/// Creates a patient (201) and invites them; answers the invitation's status and body.
async fn invite_new(t: &TestApp, doc: &reqwest::Client, patient: Value, invite: Value) -> (u16, Value) {
    let (s, p) = call(t, doc, Method::POST, "/api/v1/patients", Some(patient)).await;
    assert_eq!(s, 201, "{p}");
    let id = p["id"].as_str().unwrap();
    call(t, doc, Method::POST, &format!("/api/v1/patients/{id}/invite"), Some(invite)).await
}

#[tokio::test]
async fn registry_invites_go_in_the_language_asked_else_the_patients_else_the_clinics() {
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    let doc = clinician(&t).await;
    let person = |given: &str, phone: &str, email: &str, language: Option<&str>| {
        let mut p = json!({"given": [given], "family": "Verma", "phone": phone, "email": email});
        if let Some(l) = language {
            p["language"] = json!(l);
        }
        p
    };
    let row_of = |inv: &Value| {
        let key = format!("registry-invite:{}", inv["id"].as_str().unwrap());
        let app = t.app.clone();
        async move {
            hearth_store_sql::notify::by_key(&*app.db, &key).await.unwrap().into_iter().next().expect("the outbox row")
        }
    };

    // Hindi on the record and nothing asked: the SMS arrives in Hindi.
    let (s, hindi) = invite_new(
        &t,
        &doc,
        person("Meena", "+91 98111 22233", "meena@example.org", Some("hi")),
        json!({"channel": "sms"}),
    )
    .await;
    assert_eq!((s, hindi["language"].as_str()), (201, Some("hi")), "{hindi}");
    assert_eq!(row_of(&hindi).await.language.as_deref(), Some("hi"));
    // Staff ask for English for a Hindi-speaking patient: what they ask wins.
    let (s, english) = invite_new(
        &t,
        &doc,
        person("Ravi", "+91 98111 22244", "ravi@example.org", Some("hi")),
        json!({"channel": "sms", "language": "en"}),
    )
    .await;
    assert_eq!((s, english["language"].as_str()), (201, Some("en")), "{english}");
    // Staff ask for Hindi by e-mail for a record without a language.
    let (s, asked) = invite_new(
        &t,
        &doc,
        person("Sunil", "+91 98111 22255", "sunil@example.org", None),
        json!({"channel": "email", "language": "hi"}),
    )
    .await;
    assert_eq!((s, asked["language"].as_str()), (201, Some("hi")), "{asked}");
    // Neither: the row names no language and the worker uses the clinic's default (English).
    let (s, default) =
        invite_new(&t, &doc, person("Anil", "+91 98111 22266", "anil@example.org", None), json!({"channel": "sms"}))
            .await;
    assert_eq!((s, default["language"].clone()), (201, Value::Null), "{default}");
    assert_eq!(row_of(&default).await.language, None);
    // A language that is not a BCP-47 tag is refused, and nothing is queued for it.
    let before = hearth_store_sql::notify::list_by_status(&*t.app.db, None, 1000).await.unwrap().len();
    let (s, e) = invite_new(
        &t,
        &doc,
        person("Usha", "+91 98111 22277", "usha@example.org", None),
        json!({"channel": "sms", "language": "hindi please"}),
    )
    .await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_language")), "{e}");
    assert_eq!(hearth_store_sql::notify::list_by_status(&*t.app.db, None, 1000).await.unwrap().len(), before);

    // Through the worker and the channel, as the patients receive them.
    drain(&t.app).await;
    let sent = t.outbox.messages();
    let to =
        |addr: &str| sent.iter().find(|m| m.to == addr).unwrap_or_else(|| panic!("nothing sent to {addr}")).clone();
    let meena = to("+919811122233");
    assert!(meena.sms.contains("आपका क्लिनिक आपको") && meena.sms.contains("साझा न करें"), "{}", meena.sms);
    assert!(!meena.sms.contains("invites you"), "{}", meena.sms);
    let code = code_in(&meena.sms);
    assert!(meena.sms.contains(&format!("/claim?code={code}")), "{}", meena.sms);
    let ravi = to("+919811122244");
    assert!(ravi.sms.contains("your clinic invites you to your health record"), "{}", ravi.sms);
    let sunil = to("sunil@example.org");
    assert_eq!(sunil.subject, "Hearth में आपका स्वास्थ्य रिकॉर्ड");
    assert!(sunil.text.contains("आमंत्रित करता है"), "{}", sunil.text);
    let anil = to("+919811122266");
    assert!(anil.sms.contains("your clinic invites you"), "{}", anil.sms);
    assert!(sent.iter().all(|m| m.to != "+919811122277"));

    // The Hindi code works like any other.
    let (s, acc) = call(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/patients/claim",
        Some(json!({"code": code, "password": "a long passphrase of mine"})),
    )
    .await;
    assert_eq!(s, 201, "{acc}");
}

#[tokio::test]
async fn registry_otp_claims_make_an_account_that_signs_in_by_code() {
    let t = TestApp::spawn_with(|c| c.notify.worker = false).await;
    let doc = clinician(&t).await;
    let (_, p) = call(
        &t,
        &doc,
        Method::POST,
        "/api/v1/patients",
        Some(json!({"given": ["Kiran"], "family": "Shah", "phone": "+91 91234 56780"})),
    )
    .await;
    let id = p["id"].as_str().unwrap().to_owned();
    let (s, _) =
        call(&t, &doc, Method::POST, &format!("/api/v1/patients/{id}/invite"), Some(json!({"channel": "sms"}))).await;
    assert_eq!(s, 201);
    drain(&t.app).await;
    let code = code_in(&t.outbox.messages().into_iter().find(|m| m.to == "+919123456780").unwrap().sms);
    let (s, acc) =
        call(&t, &t.anonymous(), Method::POST, "/api/v1/patients/claim", Some(json!({"code": code, "otp": true})))
            .await;
    assert_eq!(s, 201, "{acc}");
    assert_eq!((acc["signIn"].as_str(), acc["account"]["phone"].as_str()), (Some("otp"), Some("+919123456780")));
    // The OTP sign-in finds the account by its phone.
    let (s, _) =
        call(&t, &t.anonymous(), Method::POST, "/api/v1/auth/otp/request", Some(json!({"phone": "+919123456780"})))
            .await;
    assert_eq!(s, 202);
    let mut otp = None;
    for _ in 0..100 {
        drain(&t.app).await;
        otp = t.outbox.messages().into_iter().find(|m| m.to == "+919123456780" && m.sms.contains("Hearth code"));
        if otp.is_some() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(20)).await;
    }
    let otp = otp.expect("a login code");
    let digits: String = otp.sms.split(|c: char| !c.is_ascii_digit()).find(|w| w.len() == 6).unwrap().to_owned();
    let (s, login) = call(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/otp/verify",
        Some(json!({"phone": "+919123456780", "code": digits})),
    )
    .await;
    assert_eq!(s, 200, "{login}");
    let me = bearer(login["access_token"].as_str().unwrap());
    let (s, _) = call(&t, &me, Method::GET, &format!("/api/v1/patients/{id}/demographics"), None).await;
    assert_eq!(s, 200);
}
