//! Identity and access: accounts, tokens, refresh rotation and reuse detection, lockout, and the
//! patient-compartment reach enforced by the store (reads, searches, includes, writes).

use chrono::Duration;
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Resp, TestApp};

const PASSWORD: &str = "harbour-violet-canyon-58";

async fn api(t: &TestApp, client: &reqwest::Client, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut req = client.request(method, t.url(path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    t.send(req).await
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

async fn login(t: &TestApp, email: &str, extra: Value) -> Resp {
    let mut body = json!({"email": email, "password": PASSWORD});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    api(t, &t.anonymous(), Method::POST, "/api/v1/auth/login", Some(body)).await
}

/// Registers a patient; answers (account, client with its token, Patient id).
async fn patient(t: &TestApp, email: &str, family: &str) -> (Value, reqwest::Client, String) {
    let r = api(
        t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/register",
        Some(
            json!({"email": email, "password": PASSWORD, "given": "Ann", "family": family, "birthDate": "1990-02-03"}),
        ),
    )
    .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let account = r.json();
    let pid = account["fhirUser"].as_str().unwrap().strip_prefix("Patient/").unwrap().to_owned();
    let l = login(t, email, json!({})).await;
    assert_eq!(l.status, 200, "{}", l.text);
    (account, bearer(l.json()["access_token"].as_str().unwrap()), pid)
}

/// An account made by the admin; answers its logged-in client.
async fn staff(t: &TestApp, email: &str, role: &str, extra: Value) -> reqwest::Client {
    let mut body = json!({"email": email, "password": PASSWORD, "role": role});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = api(t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let l = login(t, email, json!({})).await;
    assert_eq!(l.status, 200, "{}", l.text);
    bearer(l.json()["access_token"].as_str().unwrap())
}

fn observation(patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

async fn status(t: &TestApp, c: &reqwest::Client, method: Method, path: &str, body: Option<&Value>) -> u16 {
    let mut req = c.request(method, t.url(path));
    if let Some(b) = body {
        req = req.header("content-type", "application/fhir+json").body(b.to_string());
    }
    t.send(req).await.status
}

fn ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|es| {
            es.iter()
                .map(|e| {
                    format!(
                        "{}/{}",
                        e["resource"]["resourceType"].as_str().unwrap(),
                        e["resource"]["id"].as_str().unwrap()
                    )
                })
                .collect()
        })
        .unwrap_or_default()
}

#[tokio::test]
async fn register_login_refresh_rotation_reuse_and_logout() {
    let t = TestApp::spawn().await;
    let (account, client, pid) = patient(&t, "Ann.Lee@Example.org", "Lee").await;
    assert_eq!(account["email"], "ann.lee@example.org");
    assert_eq!(account["role"], "patient");
    // The Patient was created and is the account's own record.
    let me = api(&t, &client, Method::GET, "/api/v1/auth/me", None).await.json();
    assert_eq!(me["fhirUser"], format!("Patient/{pid}"));
    assert_eq!(t.send(client.get(t.url(&format!("/fhir/Patient/{pid}")))).await.json()["name"][0]["family"], "Lee");

    // Same e-mail again: 409; weak password: 400 with a reason.
    let again = json!({"email": "ann.lee@example.org", "password": PASSWORD, "given": "A", "family": "B"});
    let r = api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/register", Some(again)).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (409, Some("email_taken")));
    let weak = json!({"email": "x@example.org", "password": "short", "given": "A", "family": "B"});
    let r = api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/register", Some(weak)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    let r = api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/register", Some(json!({"email": 5}))).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_body")));

    // Refresh rotates: the old token is spent, the new one works once.
    let first = login(&t, "ann.lee@example.org", json!({})).await.json();
    assert_eq!(first["token_type"], "Bearer");
    assert_eq!(first["expires_in"], 900);
    let r1 = first["refresh_token"].as_str().unwrap();
    let second =
        api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/refresh", Some(json!({"refresh_token": r1}))).await;
    assert_eq!(second.status, 200, "{}", second.text);
    let r2 = second.json()["refresh_token"].as_str().unwrap().to_owned();
    assert_ne!(r1, r2);
    // Reuse of the spent token: refused, and the whole family (r2 too) is revoked.
    let reuse = api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/refresh", Some(json!({"refresh_token": r1}))).await;
    assert_eq!((reuse.status, reuse.json()["error"]["code"].as_str()), (401, Some("invalid_grant")));
    let r = api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/refresh", Some(json!({"refresh_token": r2}))).await;
    assert_eq!(r.status, 401);
    let r =
        api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/refresh", Some(json!({"refresh_token": "nonsense"}))).await;
    assert_eq!(r.status, 401);

    // Logout revokes the session's refresh token.
    let third = login(&t, "ann.lee@example.org", json!({})).await.json();
    let c3 = bearer(third["access_token"].as_str().unwrap());
    let r3 = third["refresh_token"].as_str().unwrap();
    assert_eq!(api(&t, &c3, Method::POST, "/api/v1/auth/logout", Some(json!({"refresh_token": r3}))).await.status, 204);
    let r = api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/refresh", Some(json!({"refresh_token": r3}))).await;
    assert_eq!(r.status, 401);
}

#[tokio::test]
async fn bad_tokens_get_401_and_expiry_is_enforced() {
    let t = TestApp::spawn().await;
    let (_, client, pid) = patient(&t, "tok@example.org", "Tok").await;
    let path = format!("/fhir/Patient/{pid}");
    assert_eq!(status(&t, &client, Method::GET, &path, None).await, 200);

    let anon = t.send(t.anonymous().get(t.url(&path))).await;
    assert_eq!(anon.status, 401);
    assert_eq!(anon.outcome_issue()["code"], "login");
    // RFC 6750: no token, a challenge without an error code.
    assert_eq!(anon.header("www-authenticate").as_deref(), Some(r#"Bearer realm="hearth""#));
    let r = api(&t, &t.anonymous(), Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("unauthenticated")));

    let token = login(&t, "tok@example.org", json!({})).await.json()["access_token"].as_str().unwrap().to_owned();
    let parts: Vec<&str> = token.split('.').collect();
    // Tampered payload (signature no longer matches).
    let mut payload = parts[1].to_owned();
    payload.replace_range(5..6, if &payload[5..6] == "A" { "B" } else { "A" });
    let tampered = format!("{}.{}.{}", parts[0], payload, parts[2]);
    // alg: none, and an unknown key id.
    use base64_like::encode;
    let none = format!("{}.{}.", encode(br#"{"alg":"none","typ":"at+jwt"}"#), parts[1]);
    let wrong_kid = format!("{}.{}.{}", encode(br#"{"alg":"EdDSA","typ":"at+jwt","kid":"nope"}"#), parts[1], parts[2]);
    for bad in [tampered, none, wrong_kid, "not-a-jwt".to_owned()] {
        let r = t.send(bearer(&bad).get(t.url(&path))).await;
        assert_eq!(r.status, 401, "{bad}");
        let challenge = r.header("www-authenticate").unwrap_or_default();
        assert!(challenge.contains(r#"error="invalid_token""#) && !challenge.contains("expired"), "{challenge}");
        let r = api(&t, &bearer(&bad), Method::GET, "/api/v1/auth/me", None).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("invalid_token")), "{bad}");
    }
    // 15 minutes later the access token has expired: told apart from a bad one, on both APIs.
    t.clock.set(chrono::Utc::now() + Duration::minutes(16));
    let r = t.send(bearer(&token).get(t.url(&path))).await;
    assert_eq!((r.status, r.outcome_issue()["code"].as_str()), (401, Some("expired")));
    let challenge = r.header("www-authenticate").unwrap_or_default();
    assert!(challenge.contains(r#"error="invalid_token""#) && challenge.contains("expired"), "{challenge}");
    let r = api(&t, &bearer(&token), Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("token_expired")));
    assert!(r.json()["error"]["message"].as_str().unwrap().contains("/api/v1/auth/refresh"));
    // A forged token whose time is also up is still just invalid (the signature is checked first).
    let r =
        api(&t, &bearer(&format!("{}.{}.{}", parts[0], payload, parts[2])), Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(r.json()["error"]["code"], "invalid_token");
}

/// Minimal base64url (no padding) for forging test headers.
mod base64_like {
    pub fn encode(bytes: &[u8]) -> String {
        const A: &[u8; 64] = b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";
        let mut out = String::new();
        for chunk in bytes.chunks(3) {
            let b = [chunk[0], *chunk.get(1).unwrap_or(&0), *chunk.get(2).unwrap_or(&0)];
            let n = (u32::from(b[0]) << 16) | (u32::from(b[1]) << 8) | u32::from(b[2]);
            for i in 0..=chunk.len() {
                out.push(A[((n >> (18 - 6 * i)) & 63) as usize] as char);
            }
        }
        out
    }
}

#[tokio::test]
async fn repeated_failed_logins_lock_the_account() {
    let t = TestApp::spawn().await;
    patient(&t, "lock@example.org", "Lock").await;
    for _ in 0..5 {
        let r = api(
            &t,
            &t.anonymous(),
            Method::POST,
            "/api/v1/auth/login",
            Some(json!({"email": "lock@example.org", "password": "wrong-password-123"})),
        )
        .await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("invalid_credentials")));
    }
    // Locked now, even with the right password.
    let r = login(&t, "lock@example.org", json!({})).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
    // An unknown e-mail gets the same answer as a wrong password.
    let r = api(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"email": "nobody@example.org", "password": PASSWORD})),
    )
    .await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (401, Some("invalid_credentials")));
    t.clock.set(chrono::Utc::now() + Duration::minutes(2));
    assert_eq!(login(&t, "lock@example.org", json!({})).await.status, 200);
}

#[tokio::test]
async fn a_patient_reaches_only_their_own_record_in_reads_searches_includes_and_writes() {
    let t = TestApp::spawn().await;
    let (_, a, pa) = patient(&t, "a@example.org", "Alpha").await;
    let (_, b, pb) = patient(&t, "b@example.org", "Beta").await;
    let doc = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Rao"}]})).await;
    // Staff write one observation for each, performed by the practitioner.
    let mut oa = observation(&pa, "8867-4");
    oa["performer"] = json!([{"reference": format!("Practitioner/{doc}")}]);
    let oa = t.create(&oa).await;
    let ob = t.create(&observation(&pb, "8867-4")).await;

    // Reads: own yes, other's 404 (existence is private), shared directory types yes.
    assert_eq!(status(&t, &a, Method::GET, &format!("/fhir/Patient/{pa}"), None).await, 200);
    assert_eq!(status(&t, &a, Method::GET, &format!("/fhir/Observation/{oa}"), None).await, 200);
    assert_eq!(status(&t, &a, Method::GET, &format!("/fhir/Patient/{pb}"), None).await, 404);
    assert_eq!(status(&t, &a, Method::GET, &format!("/fhir/Observation/{ob}"), None).await, 404);
    assert_eq!(status(&t, &a, Method::GET, &format!("/fhir/Observation/{ob}/_history/1"), None).await, 404);
    assert_eq!(status(&t, &a, Method::GET, &format!("/fhir/Practitioner/{doc}"), None).await, 200);

    // Searches are narrowed, including every path that could leak.
    let s = |q: &str| t.send(a.get(t.url(q)));
    let r = s("/fhir/Observation").await.json();
    assert_eq!((r["total"].as_u64(), ids(&r)), (Some(1), vec![format!("Observation/{oa}")]));
    let r = s(&format!("/fhir/Observation?subject=Patient/{pb}")).await.json();
    assert_eq!(r["total"], 0);
    let r = s("/fhir/Patient?_revinclude=Observation:subject").await.json();
    let mut got = ids(&r);
    got.sort();
    let mut want = vec![format!("Patient/{pa}"), format!("Observation/{oa}")];
    want.sort();
    assert_eq!(got, want);
    let r = s("/fhir/Observation?_include=Observation:subject&_include=Observation:performer").await.json();
    assert!(ids(&r).contains(&format!("Practitioner/{doc}")), "{r}");
    assert!(!ids(&r).iter().any(|i| i.contains(&pb) || i.contains(&ob)), "{r}");
    let r = s("/fhir/Patient?_has:Observation:subject:code=8867-4").await.json();
    assert_eq!(ids(&r), vec![format!("Patient/{pa}")]);
    let r = s("/fhir/Observation?subject:Patient.family=beta").await.json();
    assert_eq!(r["total"], 0);
    let r = s(&format!("/fhir/Patient/{pb}/Observation")).await.json();
    assert_eq!(r["total"], 0);
    let r = s("/fhir?_type=Patient,Observation").await.json();
    assert_eq!(r["total"], 2);
    // $everything: own record (and the practitioner it references), never another's.
    let r = s(&format!("/fhir/Patient/{pa}/$everything")).await.json();
    let mut got = ids(&r);
    got.sort();
    let mut want = vec![format!("Patient/{pa}"), format!("Observation/{oa}"), format!("Practitioner/{doc}")];
    want.sort();
    assert_eq!(got, want);
    assert_eq!(status(&t, &a, Method::GET, &format!("/fhir/Patient/{pb}/$everything"), None).await, 404);
    // Bulk export spans every patient: refused.
    let r = t.send(a.get(t.url("/fhir/$export")).header("prefer", "respond-async")).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(status(&t, &a, Method::GET, "/fhir/Observation/_history", None).await, 403);
    assert_eq!(status(&t, &a, Method::GET, "/fhir/_history", None).await, 403);
    assert_eq!(status(&t, &a, Method::POST, "/fhir/$reindex", None).await, 403);

    // Writes: into the own record yes; into another's, or of shared types, no.
    assert_eq!(status(&t, &a, Method::POST, "/fhir/Observation", Some(&observation(&pa, "29463-7"))).await, 201);
    assert_eq!(status(&t, &a, Method::POST, "/fhir/Observation", Some(&observation(&pb, "29463-7"))).await, 403);
    let orphan = json!({"resourceType": "Observation", "status": "final", "code": {"text": "x"}});
    assert_eq!(status(&t, &a, Method::POST, "/fhir/Observation", Some(&orphan)).await, 403);
    let moved = {
        let mut o = observation(&pb, "8867-4");
        o["id"] = json!(oa);
        o
    };
    assert_eq!(status(&t, &a, Method::PUT, &format!("/fhir/Observation/{oa}"), Some(&moved)).await, 403);
    assert_eq!(status(&t, &a, Method::DELETE, &format!("/fhir/Observation/{ob}"), None).await, 403);
    let practitioner = json!({"resourceType": "Practitioner", "name": [{"family": "Fake"}]});
    assert_eq!(status(&t, &a, Method::POST, "/fhir/Practitioner", Some(&practitioner)).await, 403);
    assert_eq!(status(&t, &a, Method::POST, "/api/v1/admin/accounts", Some(&json!({}))).await, 403);
    // A transaction writing into B's record is refused as a whole.
    let tx = json!({"resourceType": "Bundle", "type": "transaction", "entry": [
        {"resource": observation(&pa, "1-8"), "request": {"method": "POST", "url": "Observation"}},
        {"resource": observation(&pb, "1-8"), "request": {"method": "POST", "url": "Observation"}}]});
    assert_eq!(status(&t, &a, Method::POST, "/fhir", Some(&tx)).await, 403);
    let r = t.send(t.client.get(t.url("/fhir/Observation?code=1-8"))).await.json();
    assert_eq!(r["total"], 0, "nothing of the refused transaction is visible");
    // B still sees only B's.
    let r = t.send(b.get(t.url("/fhir/Observation"))).await.json();
    assert_eq!(ids(&r), vec![format!("Observation/{ob}")]);
}

#[tokio::test]
async fn caregivers_and_organisation_clinicians_reach_exactly_their_patients() {
    let t = TestApp::spawn().await;
    let (_, _, pa) = patient(&t, "ca@example.org", "Carer").await;
    let (_, _, pb) = patient(&t, "cb@example.org", "Other").await;
    let org = t.create(&json!({"resourceType": "Organization", "name": "North Clinic"})).await;
    // B is a patient of the North Clinic.
    let mut pb_res = t.get(&format!("/fhir/Patient/{pb}")).await.json();
    pb_res["managingOrganization"] = json!({"reference": format!("Organization/{org}")});
    assert_eq!(t.put(&format!("/fhir/Patient/{pb}"), &pb_res).await.status, 200);
    let oa = t.create(&observation(&pa, "8867-4")).await;
    let ob = t.create(&observation(&pb, "8867-4")).await;

    let carer = staff(&t, "carer@example.org", "caregiver", json!({})).await;
    let me = api(&t, &carer, Method::GET, "/api/v1/auth/me", None).await.json();
    // Before a grant: nothing.
    assert_eq!(t.send(carer.get(t.url("/fhir/Observation"))).await.json()["total"], 0);
    let grant = json!({"caregiver": me["id"], "patient": pa});
    assert_eq!(api(&t, &t.client, Method::POST, "/api/v1/admin/caregivers", Some(grant)).await.status, 204);
    // The grant takes effect at once, with the same token.
    let r = t.send(carer.get(t.url("/fhir/Observation"))).await.json();
    assert_eq!(ids(&r), vec![format!("Observation/{oa}")]);
    assert_eq!(status(&t, &carer, Method::GET, &format!("/fhir/Observation/{ob}"), None).await, 404);

    let doc = staff(&t, "doc@example.org", "clinician", json!({"organization": org})).await;
    let r = t.send(doc.get(t.url("/fhir/Observation"))).await.json();
    assert_eq!(ids(&r), vec![format!("Observation/{ob}")]);
    assert_eq!(status(&t, &doc, Method::GET, &format!("/fhir/Patient/{pa}"), None).await, 404);
    assert_eq!(status(&t, &doc, Method::POST, "/fhir/Observation", Some(&observation(&pb, "29463-7"))).await, 201);
    assert_eq!(status(&t, &doc, Method::POST, "/fhir/Observation", Some(&observation(&pa, "29463-7"))).await, 403);
    // A clinician without an organisation reaches everyone (single-clinic deployment).
    let any = staff(&t, "any@example.org", "clinician", json!({})).await;
    assert_eq!(t.send(any.get(t.url("/fhir/Observation"))).await.json()["total"], 3);
}

#[tokio::test]
async fn narrower_scopes_and_a_patient_launch_context_narrow_access() {
    let t = TestApp::spawn().await;
    let (_, _, pa) = patient(&t, "sa@example.org", "Scope").await;
    let (_, _, pb) = patient(&t, "sb@example.org", "Other").await;
    t.create(&observation(&pa, "8867-4")).await;
    t.create(&observation(&pb, "8867-4")).await;
    staff(&t, "root@example.org", "clinician", json!({})).await;
    // A clinician without organisation launching for patient A with patient/*.read sees only A, and cannot write.
    let l = login(&t, "root@example.org", json!({"scope": "patient/*.read launch/patient", "patient": pa})).await;
    assert_eq!(l.status, 200, "{}", l.text);
    assert_eq!(l.json()["patient"], pa.as_str());
    let c = bearer(l.json()["access_token"].as_str().unwrap());
    assert_eq!(t.send(c.get(t.url("/fhir/Observation"))).await.json()["total"], 1);
    assert_eq!(status(&t, &c, Method::GET, &format!("/fhir/Patient/{pb}"), None).await, 404);
    assert_eq!(status(&t, &c, Method::POST, "/fhir/Observation", Some(&observation(&pa, "1-8"))).await, 403);
    // patient/Patient.read only: Observations are out of scope (searches narrowed, reads 403).
    let l = login(&t, "root@example.org", json!({"scope": "patient/Patient.read", "patient": pa})).await;
    let c = bearer(l.json()["access_token"].as_str().unwrap());
    assert_eq!(t.send(c.get(t.url("/fhir/Observation"))).await.json()["total"], 0);
    assert_eq!(t.send(c.get(t.url("/fhir/Patient"))).await.json()["total"], 1);
    // A patient cannot launch for someone else, and bad scopes are refused.
    let r = login(&t, "sa@example.org", json!({"scope": "patient/*.read", "patient": pb})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = login(&t, "sa@example.org", json!({"scope": "patient/Nonsense.zz"})).await;
    assert_eq!(r.status, 400, "{}", r.text);
}

#[tokio::test]
async fn every_write_is_attributed_to_the_account_that_made_it() {
    let t = TestApp::spawn().await;
    let (account, a, pa) = patient(&t, "writer@example.org", "Writer").await;
    let r = t
        .send(
            a.post(t.url("/fhir/Observation"))
                .header("content-type", "application/fhir+json")
                .body(observation(&pa, "8867-4").to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let author = |v: u64| {
        let (db, id) = (t.app.db.clone(), id.clone());
        async move { hearth_store_sql::identity::version_author(&*db, "Observation", &id, v).await.unwrap() }
    };
    assert_eq!(author(1).await.as_deref(), account["id"].as_str());
    // The admin's update is attributed to the admin, not lost as "the system".
    let me = api(&t, &t.client, Method::GET, "/api/v1/auth/me", None).await.json();
    let mut o = observation(&pa, "8867-4");
    o["id"] = json!(id);
    assert_eq!(t.put(&format!("/fhir/Observation/{id}"), &o).await.status, 200);
    assert_eq!(author(2).await.as_deref(), me["id"].as_str());
    assert!(me["id"].as_str().is_some_and(|s| !s.is_empty()));
    // Work the system does for itself carries no person.
    let write = hearth_server::fhir::write_of(&t.app, "Observation", "sys-1".into(), observation(&pa, "1-8"));
    hearth_store::interactions::ResourceStoreExt::create(&t.app.system(), write, chrono::Utc::now()).await.unwrap();
    let none = hearth_store_sql::identity::version_author(&*t.app.db, "Observation", "sys-1", 1).await.unwrap();
    assert_eq!(none, None);
}
