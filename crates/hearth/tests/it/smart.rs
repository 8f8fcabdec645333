//! SMART on FHIR: discovery, client registration, and the authorization-code flow with PKCE driven
//! by a real OAuth 2.0 client library (`oauth2`), with the login form submitted like a browser.

use oauth2::basic::{
    BasicErrorResponse, BasicErrorResponseType, BasicRevocationErrorResponse, BasicTokenIntrospectionResponse,
    BasicTokenType,
};
use oauth2::url::Url;
use oauth2::{
    AuthType, AuthUrl, AuthorizationCode, Client, ClientId, ClientSecret, CsrfToken, EndpointNotSet, EndpointSet,
    ExtraTokenFields, PkceCodeChallenge, PkceCodeVerifier, RedirectUrl, RequestTokenError, Scope,
    StandardRevocableToken, StandardTokenResponse, TokenResponse, TokenUrl,
};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Resp, TestApp};

const PASSWORD: &str = "harbour-violet-canyon-58";
const REDIRECT: &str = "http://127.0.0.1:9/callback";

/// The SMART token response's extra field.
#[derive(Debug, Clone, serde::Deserialize, serde::Serialize)]
struct SmartFields {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    patient: Option<String>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    id_token: Option<String>,
}
impl ExtraTokenFields for SmartFields {}

type SmartToken = StandardTokenResponse<SmartFields, BasicTokenType>;
type SmartClient = Client<
    BasicErrorResponse,
    SmartToken,
    BasicTokenIntrospectionResponse,
    StandardRevocableToken,
    BasicRevocationErrorResponse,
    EndpointSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointNotSet,
    EndpointSet,
>;
type TokenError = RequestTokenError<reqwest::Error, BasicErrorResponse>;

/// The library's HTTP client: the workspace's reqwest, handed over as a closure.
async fn http(req: oauth2::HttpRequest) -> Result<oauth2::HttpResponse, reqwest::Error> {
    let client = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build()?;
    let (parts, body) = req.into_parts();
    let mut r = client.request(parts.method, parts.uri.to_string()).body(body);
    for (k, v) in &parts.headers {
        r = r.header(k, v);
    }
    let resp = r.send().await?;
    let mut out = oauth2::HttpResponse::new(Vec::new());
    *out.status_mut() = resp.status();
    *out.headers_mut() = resp.headers().clone();
    *out.body_mut() = resp.bytes().await?.to_vec();
    Ok(out)
}

/// A client like a browser's, but that does not follow redirects (we read `Location`).
fn browser() -> reqwest::Client {
    reqwest::Client::builder().redirect(reqwest::redirect::Policy::none()).build().unwrap()
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

async fn api(t: &TestApp, client: &reqwest::Client, method: Method, path: &str, body: Option<Value>) -> Resp {
    let mut req = client.request(method, t.url(path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    t.send(req).await
}

async fn account(t: &TestApp, email: &str, role: &str, extra: Value) -> Value {
    let mut body = json!({"email": email, "password": PASSWORD, "role": role});
    for (k, v) in extra.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = api(t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

/// Registers a client; answers the registration (with `client_secret` when confidential).
async fn register(t: &TestApp, scope: &str, confidential: bool) -> Value {
    let body = json!({"name": "Growth <Chart> & Co", "redirect_uris": [REDIRECT, "https://app.example/cb"],
        "confidential": confidential, "scope": scope});
    let r = api(t, &t.client, Method::POST, "/api/v1/admin/oauth/clients", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()
}

fn library(t: &TestApp, registration: &Value, secret: Option<&str>) -> SmartClient {
    let mut c = Client::new(ClientId::new(registration["client_id"].as_str().unwrap().to_owned()))
        .set_auth_uri(AuthUrl::new(t.url("/oauth/authorize")).unwrap())
        .set_token_uri(TokenUrl::new(t.url("/oauth/token")).unwrap())
        .set_redirect_uri(RedirectUrl::new(REDIRECT.to_owned()).unwrap());
    if let Some(s) = secret {
        c = c.set_client_secret(ClientSecret::new(s.to_owned()));
    }
    c
}

/// The authorize URL the library builds, with its PKCE verifier and state.
fn authorize_url(t: &TestApp, client: &SmartClient, scopes: &str) -> (Url, PkceCodeVerifier, CsrfToken) {
    let (challenge, verifier) = PkceCodeChallenge::new_random_sha256();
    let (url, state) = client
        .authorize_url(CsrfToken::new_random)
        .add_scopes(scopes.split(' ').map(|s| Scope::new(s.to_owned())))
        .add_extra_param("aud", t.url("/fhir"))
        .set_pkce_challenge(challenge)
        .url();
    (url, verifier, state)
}

/// The consent page: its hidden fields and the CSRF cookie it set.
struct Page {
    resp: Resp,
    fields: Vec<(String, String)>,
    cookie: Option<String>,
}

fn unescape(s: &str) -> String {
    s.replace("&quot;", "\"").replace("&#39;", "'").replace("&lt;", "<").replace("&gt;", ">").replace("&amp;", "&")
}

async fn open_page(t: &TestApp, url: &str) -> Page {
    let resp = t.send(browser().get(url)).await;
    let mut fields = Vec::new();
    for chunk in resp.text.split("<input type=\"hidden\" name=\"").skip(1) {
        let (name, rest) = chunk.split_once('"').unwrap();
        let value = rest.split_once("value=\"").unwrap().1.split_once('"').unwrap().0;
        fields.push((name.to_owned(), unescape(value)));
    }
    let cookie = resp.header("set-cookie").map(|c| c.split(';').next().unwrap().to_owned());
    Page { resp, fields, cookie }
}

/// Submits the page's form like a browser: hidden fields, the cookie, plus `extra`.
async fn submit(t: &TestApp, page: &Page, extra: &[(&str, &str)]) -> Resp {
    let mut form = oauth2::url::form_urlencoded::Serializer::new(String::new());
    for (k, v) in &page.fields {
        form.append_pair(k, v);
    }
    for (k, v) in extra {
        form.append_pair(k, v);
    }
    let mut req = browser()
        .post(t.url("/oauth/authorize"))
        .header("content-type", "application/x-www-form-urlencoded")
        .body(form.finish());
    if let Some(c) = &page.cookie {
        req = req.header("cookie", c.clone());
    }
    t.send(req).await
}

/// The query parameters of a redirect's `Location`.
fn location_params(resp: &Resp) -> (String, Vec<(String, String)>) {
    let location = resp.header("location").unwrap_or_else(|| panic!("no Location: {} {}", resp.status, resp.text));
    let url = Url::parse(&location).unwrap();
    let base = format!("{}://{}{}", url.scheme(), url.host_str().unwrap(), url.path());
    let base = match url.port() {
        Some(p) => base.replacen(url.host_str().unwrap(), &format!("{}:{p}", url.host_str().unwrap()), 1),
        None => base,
    };
    (base, url.query_pairs().map(|(k, v)| (k.into_owned(), v.into_owned())).collect())
}

fn param<'a>(params: &'a [(String, String)], name: &str) -> Option<&'a str> {
    params.iter().find(|(k, _)| k == name).map(|(_, v)| v.as_str())
}

/// Runs the browser part of the flow; answers the code and the library's verifier.
async fn get_code(
    t: &TestApp,
    client: &SmartClient,
    scopes: &str,
    email: &str,
    patient: Option<&str>,
) -> (String, PkceCodeVerifier) {
    let (url, verifier, state) = authorize_url(t, client, scopes);
    let page = open_page(t, url.as_str()).await;
    assert_eq!(page.resp.status, 200, "{}", page.resp.text);
    let mut extra = vec![("email", email), ("password", PASSWORD), ("decision", "allow")];
    if let Some(p) = patient {
        extra.push(("patient", p));
    }
    let r = submit(t, &page, &extra).await;
    assert_eq!(r.status, 303, "{}", r.text);
    let (base, params) = location_params(&r);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&params, "state"), Some(state.secret().as_str()));
    (param(&params, "code").unwrap().to_owned(), verifier)
}

async fn exchange(client: &SmartClient, code: &str, verifier: PkceCodeVerifier) -> Result<SmartToken, TokenError> {
    client.exchange_code(AuthorizationCode::new(code.to_owned())).set_pkce_verifier(verifier).request_async(&http).await
}

fn oauth_error(result: Result<SmartToken, TokenError>) -> BasicErrorResponseType {
    match result {
        Err(RequestTokenError::ServerResponse(e)) => e.error().clone(),
        Err(other) => panic!("not an OAuth error response: {other:?}"),
        Ok(t) => panic!("unexpected success: scope {:?}", t.scopes()),
    }
}

fn scope_string(token: &SmartToken) -> String {
    token.scopes().unwrap().iter().map(|s| s.as_str().to_owned()).collect::<Vec<_>>().join(" ")
}

fn observation(patient: &str, code: &str) -> Value {
    json!({"resourceType": "Observation", "status": "final",
        "code": {"coding": [{"system": "http://loinc.org", "code": code}]},
        "subject": {"reference": format!("Patient/{patient}")}})
}

fn entry_ids(bundle: &Value) -> Vec<String> {
    bundle["entry"]
        .as_array()
        .map(|es| es.iter().map(|e| e["resource"]["id"].as_str().unwrap().to_owned()).collect())
        .unwrap_or_default()
}

#[tokio::test]
async fn smart_configuration_and_capability_statement() {
    let t = TestApp::spawn().await;
    for path in ["/.well-known/smart-configuration", "/fhir/.well-known/smart-configuration"] {
        let r = t.send(t.anonymous().get(t.url(path))).await;
        assert_eq!(r.status, 200, "{path}: {}", r.text);
        let c = r.json();
        assert_eq!(c["authorization_endpoint"], t.url("/oauth/authorize"));
        assert_eq!(c["token_endpoint"], t.url("/oauth/token"));
        assert_eq!(c["jwks_uri"], t.url("/.well-known/jwks.json"));
        assert_eq!(c["code_challenge_methods_supported"], json!(["S256"]));
        assert_eq!(c["grant_types_supported"], json!(["authorization_code", "refresh_token", "client_credentials"]));
        assert_eq!(c["token_endpoint_auth_signing_alg_values_supported"], json!(["RS384", "ES384"]));
        assert_eq!(c["introspection_endpoint"], t.url("/oauth/introspect"));
        assert_eq!(c["revocation_endpoint"], t.url("/oauth/revoke"));
        let caps: Vec<&str> = c["capabilities"].as_array().unwrap().iter().map(|v| v.as_str().unwrap()).collect();
        for cap in [
            "launch-standalone",
            "client-public",
            "client-confidential-symmetric",
            "context-standalone-patient",
            "permission-patient",
            "permission-user",
            "permission-v1",
            "permission-v2",
            "sso-openid-connect",
        ] {
            assert!(caps.contains(&cap), "{cap} missing from {caps:?}");
        }
        let scopes = c["scopes_supported"].as_array().unwrap();
        assert!(scopes.contains(&json!("launch/patient")) && scopes.contains(&json!("offline_access")));
    }
    let jwks = t.send(t.anonymous().get(t.url("/.well-known/jwks.json"))).await;
    assert_eq!(jwks.status, 200);
    let meta = t.get("/fhir/metadata").await.json();
    crate::common::assert_valid_r4(&meta);
    let security = &meta["rest"][0]["security"];
    assert_eq!(security["service"][0]["coding"][0]["code"], "SMART-on-FHIR");
    let ext = &security["extension"][0];
    assert_eq!(ext["url"], "http://fhir-registry.smarthealthit.org/StructureDefinition/oauth-uris");
    let uris: Vec<(String, String)> = ext["extension"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| (e["url"].as_str().unwrap().to_owned(), e["valueUri"].as_str().unwrap().to_owned()))
        .collect();
    assert!(uris.contains(&("authorize".into(), t.url("/oauth/authorize"))), "{uris:?}");
    assert!(uris.contains(&("token".into(), t.url("/oauth/token"))), "{uris:?}");
}

#[tokio::test]
async fn authorization_code_round_trip_with_pkce_sees_only_the_launch_patient() {
    let t = TestApp::spawn().await;
    let a = t.create(&crate::common::patient("Alpha")).await;
    let b = t.create(&crate::common::patient("Beta")).await;
    let obs_a = t.create(&observation(&a, "1234-5")).await;
    t.create(&observation(&b, "1234-5")).await;
    account(&t, "doc@example.org", "clinician", json!({})).await;
    let reg = register(&t, "launch/patient patient/*.rs offline_access", false).await;
    assert!(reg.get("client_secret").is_none(), "a public client has no secret");
    let client = library(&t, &reg, None);

    // The consent page names the app (escaped) and the requested scopes.
    let (url, _, _) = authorize_url(&t, &client, "launch/patient patient/Observation.rs offline_access");
    let page = open_page(&t, url.as_str()).await;
    assert_eq!(page.resp.status, 200, "{}", page.resp.text);
    assert!(page.resp.header("content-type").unwrap().starts_with("text/html"));
    assert!(page.resp.text.contains("Growth &lt;Chart&gt; &amp; Co"), "{}", page.resp.text);
    assert!(page.resp.text.contains("patient/Observation.rs"));
    assert!(page.cookie.as_deref().unwrap().starts_with("__Host-hearth-oauth-csrf="));
    assert_eq!(page.resp.header("x-frame-options").as_deref(), Some("DENY"));

    let (code, verifier) =
        get_code(&t, &client, "launch/patient patient/Observation.rs offline_access", "doc@example.org", Some(&a))
            .await;
    let token = exchange(&client, &code, verifier).await.unwrap();
    assert_eq!(token.token_type(), &BasicTokenType::Bearer);
    assert_eq!(scope_string(&token), "launch/patient patient/Observation.rs offline_access");
    assert_eq!(token.extra_fields().patient.as_deref(), Some(a.as_str()));
    assert!(token.expires_in().is_some());
    let refresh = token.refresh_token().expect("offline_access gives a refresh token").clone();

    // The token reaches the launch patient's Observations only, and nothing else.
    let app = bearer(token.access_token().secret());
    let r = t.send(app.get(t.url("/fhir/Observation"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(entry_ids(&r.json()), vec![obs_a.clone()]);
    let r = t.send(app.get(t.url(&format!("/fhir/Observation?subject=Patient/{b}")))).await;
    assert_eq!(entry_ids(&r.json()), Vec::<String>::new());
    assert!(matches!(t.send(app.get(t.url(&format!("/fhir/Patient/{a}")))).await.status, 403 | 404));
    // Out-of-scope types: searches are narrowed to nothing.
    let r = t.send(app.get(t.url("/fhir/Condition"))).await;
    assert_eq!((r.status, r.json()["total"].as_i64()), (200, Some(0)), "{}", r.text);
    let r = t
        .send(
            app.post(t.url("/fhir/Observation"))
                .header("content-type", "application/fhir+json")
                .body(observation(&a, "9-9").to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "read-only scope: {}", r.text);

    // The refresh grant rotates through the library; the old refresh token is spent.
    let refreshed = client.exchange_refresh_token(&refresh).request_async(&http).await.unwrap();
    assert_eq!(scope_string(&refreshed), "launch/patient patient/Observation.rs offline_access");
    assert_eq!(refreshed.extra_fields().patient.as_deref(), Some(a.as_str()));
    let second = refreshed.refresh_token().unwrap().clone();
    assert_ne!(second.secret(), refresh.secret());
    // A SMART refresh token does not work on the app's own refresh endpoint.
    let r =
        api(&t, &t.anonymous(), Method::POST, "/api/v1/auth/refresh", Some(json!({"refresh_token": second.secret()})))
            .await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Replaying the code is refused and revokes the tokens issued from it.
    let (_, fresh_verifier) = PkceCodeChallenge::new_random_sha256();
    let replay = exchange(&client, &code, fresh_verifier).await;
    assert_eq!(oauth_error(replay), BasicErrorResponseType::InvalidGrant);
    let revoked = client.exchange_refresh_token(&second).request_async(&http).await;
    assert_eq!(oauth_error(revoked), BasicErrorResponseType::InvalidGrant);
    let reused = client.exchange_refresh_token(&refresh).request_async(&http).await;
    assert_eq!(oauth_error(reused), BasicErrorResponseType::InvalidGrant);

    // A patient signing in shares their own record, whatever the form says; no offline_access, no
    // refresh token.
    let reg_p = api(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/register",
        Some(json!({"email": "pat@example.org", "password": PASSWORD, "given": "Pat", "family": "Own"})),
    )
    .await
    .json();
    let own = reg_p["fhirUser"].as_str().unwrap().strip_prefix("Patient/").unwrap().to_owned();
    let (code, verifier) = get_code(&t, &client, "launch/patient patient/*.rs", "pat@example.org", Some(&a)).await;
    let token = exchange(&client, &code, verifier).await.unwrap();
    assert_eq!(token.extra_fields().patient.as_deref(), Some(own.as_str()));
    assert!(token.refresh_token().is_none());
    let app = bearer(token.access_token().secret());
    assert_eq!(t.send(app.get(t.url(&format!("/fhir/Patient/{own}")))).await.status, 200);
    assert_eq!(entry_ids(&t.send(app.get(t.url("/fhir/Observation"))).await.json()), Vec::<String>::new());
}

#[tokio::test]
async fn authorization_errors_wrong_verifier_redirect_mismatch_scopes_and_csrf() {
    let t = TestApp::spawn().await;
    let a = t.create(&crate::common::patient("Alpha")).await;
    account(&t, "doc@example.org", "clinician", json!({"organization": "org-1"})).await;
    account(&t, "admin2@example.org", "admin", json!({})).await;
    let reg = register(&t, "launch/patient patient/Observation.rs", false).await;
    let client = library(&t, &reg, None);

    // A wrong PKCE verifier: invalid_grant (and the code is spent).
    let (code, verifier) =
        get_code(&t, &client, "launch/patient patient/Observation.rs", "admin2@example.org", Some(&a)).await;
    let (_, wrong) = PkceCodeChallenge::new_random_sha256();
    assert_eq!(oauth_error(exchange(&client, &code, wrong).await), BasicErrorResponseType::InvalidGrant);
    assert_eq!(oauth_error(exchange(&client, &code, verifier).await), BasicErrorResponseType::InvalidGrant);
    // A code that never existed.
    let (_, v) = PkceCodeChallenge::new_random_sha256();
    assert_eq!(oauth_error(exchange(&client, "0123abcd", v).await), BasicErrorResponseType::InvalidGrant);

    // Scopes the client may not have are dropped; what is left is granted.
    let (code, verifier) = get_code(
        &t,
        &client,
        "launch/patient patient/Observation.rs patient/Condition.rs user/*.cruds offline_access nonsense",
        "admin2@example.org",
        Some(&a),
    )
    .await;
    let token = exchange(&client, &code, verifier).await.unwrap();
    assert_eq!(scope_string(&token), "launch/patient patient/Observation.rs");
    assert!(token.refresh_token().is_none());
    // Nothing allowed at all: the app is told so by redirect.
    let (url, _, state) = authorize_url(&t, &client, "user/*.cruds");
    let r = t.send(browser().get(url.as_str())).await;
    assert_eq!(r.status, 303);
    let (base, params) = location_params(&r);
    assert_eq!(base, REDIRECT);
    assert_eq!(param(&params, "error"), Some("invalid_scope"));
    assert_eq!(param(&params, "state"), Some(state.secret().as_str()));

    // A redirect_uri the client did not register never redirects (shown on the page).
    let (url, _, _) = authorize_url(&t, &client, "patient/Observation.rs");
    let evil = url.as_str().replace("127.0.0.1%3A9%2Fcallback", "127.0.0.1%3A9%2Fcallback%2Fevil");
    assert_ne!(evil, url.as_str());
    let r = t.send(browser().get(&evil)).await;
    assert_eq!(r.status, 400, "{}", r.text);
    assert!(r.header("location").is_none());
    assert!(r.text.contains("redirect_uri"), "{}", r.text);
    // An unknown client: the page too.
    let unknown = url.as_str().replace(reg["client_id"].as_str().unwrap(), "no-such-client");
    let r = t.send(browser().get(&unknown)).await;
    assert_eq!((r.status, r.header("location")), (400, None));

    // Missing PKCE or a foreign audience: redirected back with invalid_request.
    let no_pkce = format!(
        "{}?response_type=code&client_id={}&redirect_uri={}&scope=patient%2FObservation.rs&state=s1&aud={}",
        t.url("/oauth/authorize"),
        reg["client_id"].as_str().unwrap(),
        "http%3A%2F%2F127.0.0.1%3A9%2Fcallback",
        t.url("/fhir")
    );
    let r = t.send(browser().get(&no_pkce)).await;
    let (_, params) = location_params(&r);
    assert_eq!((param(&params, "error"), param(&params, "state")), (Some("invalid_request"), Some("s1")));
    let other_aud = url.as_str().replace("%2Ffhir", "%2Fother");
    let r = t.send(browser().get(&other_aud)).await;
    let (_, params) = location_params(&r);
    assert_eq!(param(&params, "error"), Some("invalid_request"));

    // The form without its cookie, or with another cookie: refused on the page, no redirect.
    let (url, _, _) = authorize_url(&t, &client, "launch/patient patient/Observation.rs");
    let mut page = open_page(&t, url.as_str()).await;
    let creds = [("email", "admin2@example.org"), ("password", PASSWORD), ("patient", a.as_str())];
    page.cookie = None;
    let r = submit(&t, &page, &creds).await;
    assert_eq!((r.status, r.header("location")), (400, None), "{}", r.text);
    page.cookie = Some(format!("__Host-hearth-oauth-csrf={}", "A".repeat(43)));
    let r = submit(&t, &page, &creds).await;
    assert_eq!((r.status, r.header("location")), (400, None), "{}", r.text);

    // Wrong password: the form again, no redirect. A clinician of another organisation cannot
    // launch with a patient outside it. "Deny" sends access_denied back.
    let page = open_page(&t, url.as_str()).await;
    let r =
        submit(&t, &page, &[("email", "doc@example.org"), ("password", "wrong-password-123"), ("patient", &a)]).await;
    assert_eq!((r.status, r.header("location")), (401, None));
    assert!(r.text.contains("Wrong e-mail or password"));
    let r = submit(&t, &page, &[("email", "doc@example.org"), ("password", PASSWORD), ("patient", &a)]).await;
    assert_eq!((r.status, r.header("location")), (403, None), "{}", r.text);
    let r = submit(&t, &page, &[("decision", "deny")]).await;
    let (_, params) = location_params(&r);
    assert_eq!(param(&params, "error"), Some("access_denied"));

    // The code must be exchanged with the redirect_uri it was issued for.
    let (code, verifier) =
        get_code(&t, &client, "launch/patient patient/Observation.rs", "admin2@example.org", Some(&a)).await;
    let other = client.clone().set_redirect_uri(RedirectUrl::new("https://app.example/cb".into()).unwrap());
    assert_eq!(oauth_error(exchange(&other, &code, verifier).await), BasicErrorResponseType::InvalidGrant);

    // Token endpoint hygiene: not a form, unknown grant type.
    let r = t.send(t.anonymous().post(t.url("/oauth/token")).body("{}")).await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("invalid_request")));
    let r = t
        .send(
            t.anonymous()
                .post(t.url("/oauth/token"))
                .header("content-type", "application/x-www-form-urlencoded")
                .body(format!("grant_type=password&client_id={}", reg["client_id"].as_str().unwrap())),
        )
        .await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("unsupported_grant_type")));
    assert_eq!(r.header("cache-control").as_deref(), Some("no-store"));

    // A code lives 60 seconds.
    let (code, verifier) =
        get_code(&t, &client, "launch/patient patient/Observation.rs", "admin2@example.org", Some(&a)).await;
    t.clock.set(chrono::Utc::now() + chrono::Duration::seconds(61));
    assert_eq!(oauth_error(exchange(&client, &code, verifier).await), BasicErrorResponseType::InvalidGrant);
}

#[tokio::test]
async fn confidential_clients_authenticate_and_admins_manage_clients() {
    let t = TestApp::spawn().await;
    let a = t.create(&crate::common::patient("Alpha")).await;
    account(&t, "admin2@example.org", "admin", json!({})).await;
    let reg = register(&t, "launch/patient patient/*.cruds user/*.rs", true).await;
    let secret = reg["client_secret"].as_str().unwrap().to_owned();
    assert_eq!(secret.len(), 64);
    let scopes = "launch/patient patient/Observation.rs";

    // No secret, or a wrong one: invalid_client.
    let (code, verifier) = get_code(&t, &library(&t, &reg, None), scopes, "admin2@example.org", Some(&a)).await;
    let r = exchange(&library(&t, &reg, None), &code, verifier).await;
    assert_eq!(oauth_error(r), BasicErrorResponseType::InvalidClient);
    let (code, verifier) = get_code(&t, &library(&t, &reg, None), scopes, "admin2@example.org", Some(&a)).await;
    let v = || PkceCodeVerifier::new(verifier.secret().clone());
    let r = exchange(&library(&t, &reg, Some("0".repeat(64).as_str())), &code, v()).await;
    assert_eq!(oauth_error(r), BasicErrorResponseType::InvalidClient);
    // The code survived the failed client authentication: the right secret (HTTP Basic) works.
    let token = exchange(&library(&t, &reg, Some(&secret)), &code, v()).await.unwrap();
    assert_eq!(scope_string(&token), scopes);
    // …and as form fields (client_secret_post).
    let (code, verifier) = get_code(&t, &library(&t, &reg, None), scopes, "admin2@example.org", Some(&a)).await;
    let post = library(&t, &reg, Some(&secret)).set_auth_type(AuthType::RequestBody);
    assert!(exchange(&post, &code, verifier).await.is_ok());

    // Registration is for admins; the list never shows secrets; bad input is a 400.
    account(&t, "doc@example.org", "clinician", json!({})).await;
    let login = api(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/login",
        Some(json!({"email": "doc@example.org", "password": PASSWORD})),
    )
    .await
    .json();
    let doc = bearer(login["access_token"].as_str().unwrap());
    let body = json!({"name": "x", "redirect_uris": [REDIRECT], "scope": "patient/*.rs"});
    assert_eq!(api(&t, &doc, Method::POST, "/api/v1/admin/oauth/clients", Some(body.clone())).await.status, 403);
    assert_eq!(api(&t, &doc, Method::GET, "/api/v1/admin/oauth/clients", None).await.status, 403);
    assert_eq!(api(&t, &t.anonymous(), Method::GET, "/api/v1/admin/oauth/clients", None).await.status, 401);
    for (bad, code) in [
        (
            json!({"name": "x", "redirect_uris": ["http://evil.example/cb"], "scope": "patient/*.rs"}),
            "invalid_redirect_uri",
        ),
        (
            json!({"name": "x", "redirect_uris": ["https://a.example/cb#frag"], "scope": "patient/*.rs"}),
            "invalid_redirect_uri",
        ),
        (json!({"name": "x", "redirect_uris": [], "scope": "patient/*.rs"}), "invalid_redirect_uri"),
        (json!({"name": "x", "redirect_uris": [REDIRECT], "scope": "patient/Nope.rs"}), "invalid_scope"),
        (json!({"name": "x", "redirect_uris": [REDIRECT], "scope": "system/*.rs"}), "unsupported_scope"),
        (json!({"name": " ", "redirect_uris": [REDIRECT], "scope": "patient/*.rs"}), "invalid_name"),
        (json!({"name": "x", "redirect_uris": [REDIRECT]}), "invalid_body"),
    ] {
        let r = api(&t, &t.client, Method::POST, "/api/v1/admin/oauth/clients", Some(bad.clone())).await;
        assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some(code)), "{bad}: {}", r.text);
    }
    let list = api(&t, &t.client, Method::GET, "/api/v1/admin/oauth/clients", None).await;
    assert_eq!(list.status, 200);
    let list = list.json();
    assert_eq!(list["clients"].as_array().unwrap().len(), 1);
    assert_eq!(list["clients"][0]["client_id"], reg["client_id"]);
    assert!(!list.to_string().contains(&secret));

    // Deleting the client ends its flows.
    let path = format!("/api/v1/admin/oauth/clients/{}", reg["client_id"].as_str().unwrap());
    let (code, verifier) = get_code(&t, &library(&t, &reg, None), scopes, "admin2@example.org", Some(&a)).await;
    assert_eq!(api(&t, &t.client, Method::DELETE, &path, None).await.status, 204);
    assert_eq!(api(&t, &t.client, Method::DELETE, &path, None).await.status, 404);
    let r = exchange(&library(&t, &reg, Some(&secret)), &code, verifier).await;
    assert_eq!(oauth_error(r), BasicErrorResponseType::InvalidClient);
    let (url, _, _) = authorize_url(&t, &library(&t, &reg, None), scopes);
    assert_eq!(t.send(browser().get(url.as_str())).await.status, 400);
}

/// Verifies a compact JWS with the server's JWKS (Ed25519) and answers (header, claims).
async fn verify_with_jwks(t: &TestApp, jws: &str) -> (Value, Value) {
    use ed25519_dalek::{Signature, VerifyingKey};
    let b64 = data_encoding::BASE64URL_NOPAD;
    let parts: Vec<&str> = jws.split('.').collect();
    assert_eq!(parts.len(), 3, "{jws}");
    let header: Value = serde_json::from_slice(&b64.decode(parts[0].as_bytes()).unwrap()).unwrap();
    let claims: Value = serde_json::from_slice(&b64.decode(parts[1].as_bytes()).unwrap()).unwrap();
    let jwks = t.send(t.anonymous().get(t.url("/.well-known/jwks.json"))).await.json();
    let jwk = jwks["keys"].as_array().unwrap().iter().find(|k| k["kid"] == header["kid"]).expect("kid in the JWKS");
    assert_eq!((jwk["kty"].as_str(), jwk["crv"].as_str()), (Some("OKP"), Some("Ed25519")));
    let x: [u8; 32] = b64.decode(jwk["x"].as_str().unwrap().as_bytes()).unwrap().try_into().unwrap();
    let sig: [u8; 64] = b64.decode(parts[2].as_bytes()).unwrap().try_into().unwrap();
    let signed = format!("{}.{}", parts[0], parts[1]);
    VerifyingKey::from_bytes(&x)
        .unwrap()
        .verify_strict(signed.as_bytes(), &Signature::from_bytes(&sig))
        .expect("signature");
    (header, claims)
}

#[tokio::test]
async fn openid_and_fhiruser_give_a_signed_id_token_naming_the_user() {
    let t = TestApp::spawn().await;
    let patient = t.create(&json!({"resourceType": "Patient", "name": [{"family": "Oidc"}]})).await;
    let doc = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Rao"}]})).await;
    account(&t, "oidc.doc@example.org", "clinician", json!({"fhirUser": format!("Practitioner/{doc}")})).await;
    let registration = register(&t, "openid fhirUser launch/patient patient/*.rs", false).await;
    let client = library(&t, &registration, None);
    let (mut url, verifier, _) = authorize_url(&t, &client, "openid fhirUser launch/patient patient/*.rs");
    url.query_pairs_mut().append_pair("nonce", "n-0S6_WzA2Mj");
    let page = open_page(&t, url.as_str()).await;
    assert_eq!(page.resp.status, 200, "{}", page.resp.text);
    let r = submit(
        &t,
        &page,
        &[("email", "oidc.doc@example.org"), ("password", PASSWORD), ("decision", "allow"), ("patient", &patient)],
    )
    .await;
    assert_eq!(r.status, 303, "{}", r.text);
    let (_, params) = location_params(&r);
    let code = param(&params, "code").unwrap().to_owned();
    let token = exchange(&client, &code, verifier).await.unwrap();
    assert!(scope_string(&token).contains("openid"));
    let id_token = token.extra_fields().id_token.clone().expect("an id_token for openid");
    let (header, claims) = verify_with_jwks(&t, &id_token).await;
    assert_eq!(header["typ"], "JWT");
    assert_eq!(header["alg"], "EdDSA");
    assert_eq!(claims["iss"], t.url("/fhir"));
    assert_eq!(claims["aud"], registration["client_id"]);
    assert_eq!(claims["nonce"], "n-0S6_WzA2Mj");
    assert_eq!(claims["fhirUser"], format!("{}/Practitioner/{doc}", t.url("/fhir")));
    assert!(claims["exp"].as_i64().unwrap() > claims["iat"].as_i64().unwrap());
    // The ID token is not an access token.
    assert_eq!(t.send(bearer(&id_token).get(t.url(&format!("/fhir/Patient/{patient}")))).await.status, 401);
    // Discovery says so.
    let conf = t.send(t.anonymous().get(t.url("/.well-known/smart-configuration"))).await.json();
    assert_eq!(conf["issuer"], t.url("/fhir"));
    assert!(conf["capabilities"].as_array().unwrap().iter().any(|c| c == "sso-openid-connect"));
}

// ------------------------------------------------- issue 27 item 5: SMART Backend Services

fn b64(bytes: &[u8]) -> String {
    data_encoding::BASE64URL_NOPAD.encode(bytes)
}

/// A signing key generated here: ES384 with ring, RS384 from a 2048-bit key `openssl` makes.
enum TestKey {
    Es(ring::signature::EcdsaKeyPair),
    Rs(ring::signature::RsaKeyPair),
}

impl TestKey {
    fn es384() -> TestKey {
        use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair};
        let rng = ring::rand::SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        TestKey::Es(EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap())
    }

    fn rs384() -> TestKey {
        let out = std::process::Command::new("openssl")
            .args(["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048", "-outform", "DER"])
            .output()
            .expect("openssl makes the test's RSA key");
        assert!(out.status.success());
        // PKCS#8 or PKCS#1, as this openssl writes it.
        let pair = ring::signature::RsaKeyPair::from_pkcs8(&out.stdout)
            .or_else(|_| ring::signature::RsaKeyPair::from_der(&out.stdout))
            .unwrap();
        TestKey::Rs(pair)
    }

    fn jwk(&self, kid: &str) -> Value {
        use ring::signature::KeyPair;
        match self {
            TestKey::Es(k) => {
                let p = k.public_key().as_ref();
                json!({"kty": "EC", "crv": "P-384", "kid": kid, "alg": "ES384", "x": b64(&p[1..49]), "y": b64(&p[49..97])})
            }
            TestKey::Rs(k) => {
                let p = ring::rsa::PublicKeyComponents::<Vec<u8>>::from(k.public());
                json!({"kty": "RSA", "kid": kid, "alg": "RS384", "n": b64(&p.n), "e": b64(&p.e)})
            }
        }
    }

    fn sign(&self, kid: &str, claims: &Value) -> String {
        let rng = ring::rand::SystemRandom::new();
        let alg = match self {
            TestKey::Es(_) => "ES384",
            TestKey::Rs(_) => "RS384",
        };
        let header = json!({"alg": alg, "kid": kid, "typ": "JWT"});
        let input = format!("{}.{}", b64(header.to_string().as_bytes()), b64(claims.to_string().as_bytes()));
        let sig = match self {
            TestKey::Es(k) => k.sign(&rng, input.as_bytes()).unwrap().as_ref().to_vec(),
            TestKey::Rs(k) => {
                let mut sig = vec![0; k.public().modulus_len()];
                k.sign(&ring::signature::RSA_PKCS1_SHA384, &rng, input.as_bytes(), &mut sig).unwrap();
                sig
            }
        };
        format!("{input}.{}", b64(&sig))
    }
}

/// Registers a backend service with `keys` (a JWK Set by value, or `{"jwks_uri": …}`).
async fn register_backend(t: &TestApp, keys: Value, scope: &str) -> String {
    let mut body = json!({"name": "Nightly export", "redirect_uris": [], "scope": scope});
    for (k, v) in keys.as_object().unwrap() {
        body[k] = v.clone();
    }
    let r = api(t, &t.client, Method::POST, "/api/v1/admin/oauth/clients", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["client_id"].as_str().unwrap().to_owned()
}

fn assertion_claims(t: &TestApp, client: &str, jti: &str, lifetime: i64) -> Value {
    let now = chrono::Utc::now().timestamp();
    json!({"iss": client, "sub": client, "aud": t.url("/oauth/token"), "exp": now + lifetime, "jti": jti})
}

/// `POST /oauth/token` with `grant_type=client_credentials` and the assertion.
async fn backend_token(t: &TestApp, assertion: &str, scope: &str) -> Resp {
    let body = oauth2::url::form_urlencoded::Serializer::new(String::new())
        .append_pair("grant_type", "client_credentials")
        .append_pair("client_assertion_type", "urn:ietf:params:oauth:client-assertion-type:jwt-bearer")
        .append_pair("client_assertion", assertion)
        .append_pair("scope", scope)
        .finish();
    t.send(
        t.anonymous()
            .post(t.url("/oauth/token"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(body),
    )
    .await
}

async fn form(t: &TestApp, client: &reqwest::Client, path: &str, pairs: &[(&str, &str)]) -> Resp {
    let body = oauth2::url::form_urlencoded::Serializer::new(String::new()).extend_pairs(pairs).finish();
    t.send(client.post(t.url(path)).header("content-type", "application/x-www-form-urlencoded").body(body)).await
}

/// A backend service signs an ES384 assertion with a key made here, gets a `system/*.read`
/// token and runs a Bulk export to completion; a replayed `jti`, a wrong key, a long-lived
/// assertion, another audience and a scope it was not registered for are refused.
#[tokio::test]
async fn a_backend_service_with_a_signed_assertion_runs_a_bulk_export() {
    let t = TestApp::spawn().await;
    let pid = t.create(&crate::common::patient("Exported")).await;
    t.create(&observation(&pid, "8867-4")).await;
    let key = TestKey::es384();
    let client = register_backend(&t, json!({"jwks": {"keys": [key.jwk("k1")]}}), "system/*.read").await;
    let good = key.sign("k1", &assertion_claims(&t, &client, "jti-1", 240));
    let r = backend_token(&t, &good, "system/*.read system/Patient.write").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let answer = r.json();
    assert_eq!(answer["scope"], "system/*.read", "only what the client may have");
    assert_eq!(answer["token_type"], "Bearer");
    assert!(answer.get("refresh_token").is_none());
    let token = answer["access_token"].as_str().unwrap().to_owned();
    // The same assertion again: its jti is spent.
    let r = backend_token(&t, &good, "system/*.read").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "{}", r.text);
    // Signed by another key; living more than five minutes; for another endpoint.
    let other = TestKey::es384();
    let r = backend_token(&t, &other.sign("k1", &assertion_claims(&t, &client, "jti-2", 60)), "system/*.read").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "{}", r.text);
    let r = backend_token(&t, &key.sign("k1", &assertion_claims(&t, &client, "jti-3", 600)), "system/*.read").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "{}", r.text);
    let mut wrong_aud = assertion_claims(&t, &client, "jti-4", 60);
    wrong_aud["aud"] = json!("https://elsewhere.example/token");
    let r = backend_token(&t, &key.sign("k1", &wrong_aud), "system/*.read").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "{}", r.text);
    let r =
        backend_token(&t, &key.sign("k1", &assertion_claims(&t, &client, "jti-5", 60)), "system/Patient.write").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (400, Some("invalid_scope")), "{}", r.text);

    // The token reads but does not write, and runs a system-level export that completes.
    let service = bearer(&token);
    assert_eq!(t.send(service.get(t.url(&format!("/fhir/Patient/{pid}")))).await.status, 200);
    let r = t
        .send(
            service
                .post(t.url("/fhir/Patient"))
                .header("content-type", "application/fhir+json")
                .body(crate::common::patient("Nope").to_string()),
        )
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    // The app API decides by role, which a service has none of: refused there, whatever it reads.
    let r = t.send(service.get(t.url(&format!("/api/v1/appointments?patient={pid}")))).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (403, Some("forbidden")), "{}", r.text);
    let r = t
        .send(service.post(t.url("/api/v1/notifications/send")).header("content-type", "application/json").body(
            json!({"to": {"patient": pid}, "category": "announcement", "title": "Hi", "message": "x"}).to_string(),
        ))
        .await;
    assert_eq!(r.status, 403, "{}", r.text);
    let r = t
        .send(
            service
                .get(t.url("/fhir/$export"))
                .header("prefer", "respond-async")
                .header("accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let status_url = r.header("content-location").unwrap();
    let mut manifest = Value::Null;
    for _ in 0..300 {
        let r = t.send(service.get(&status_url)).await;
        if r.status == 200 {
            manifest = r.json();
            break;
        }
        assert_eq!(r.status, 202, "{}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let outputs = manifest["output"].as_array().unwrap_or_else(|| panic!("export did not finish: {manifest}"));
    let types: Vec<&str> = outputs.iter().map(|o| o["type"].as_str().unwrap()).collect();
    assert!(types.contains(&"Patient") && types.contains(&"Observation"), "{types:?}");
    let file = t.send(service.get(outputs[0]["url"].as_str().unwrap())).await;
    assert_eq!(file.status, 200);
}

/// RS384 with the client's JWK Set served at a URL (a real local HTTP server, fetched once and
/// cached); then introspection and revocation of the token.
#[tokio::test]
async fn rs384_keys_by_url_and_introspection_and_revocation() {
    let t = TestApp::spawn().await;
    let key = TestKey::rs384();
    let jwks = json!({"keys": [key.jwk("r1")]});
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let served = jwks.clone();
    tokio::spawn(async move {
        let app =
            axum::Router::new().route("/jwks.json", axum::routing::get(move || async move { axum::Json(served) }));
        axum::serve(listener, app).await.unwrap();
    });
    let client = register_backend(&t, json!({"jwks_uri": format!("http://{addr}/jwks.json")}), "system/*.rs").await;
    let r = backend_token(&t, &key.sign("r1", &assertion_claims(&t, &client, "r-1", 120)), "system/*.rs").await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    // A corrupted signature is refused.
    // (A character inside the signature: the last one carries padding bits a decoder may ignore,
    // and the old way could even put back the same character.)
    let good = key.sign("r1", &assertion_claims(&t, &client, "r-2", 120));
    let at = good.rfind('.').unwrap() + 10;
    let flipped = if &good[at..=at] == "A" { "B" } else { "A" };
    let bad = format!("{}{flipped}{}", &good[..at], &good[at + 1..]);
    assert_ne!(bad, good);
    let r = backend_token(&t, &bad, "system/*.rs").await;
    assert_eq!((r.status, r.json()["error"].as_str()), (401, Some("invalid_client")), "{}", r.text);

    // Introspection needs an authenticated caller.
    let r = form(&t, &t.anonymous(), "/oauth/introspect", &[("token", &token)]).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = form(&t, &t.client, "/oauth/introspect", &[("token", &token)]).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let i = r.json();
    assert_eq!(
        (i["active"].as_bool(), i["scope"].as_str(), i["client_id"].as_str()),
        (Some(true), Some("system/*.rs"), Some(client.as_str()))
    );
    let r = form(&t, &t.client, "/oauth/introspect", &[("token", "not-a-token")]).await;
    assert_eq!(r.json(), json!({"active": false}));
    // Revoked: always 200, then inactive and refused.
    assert_eq!(form(&t, &t.anonymous(), "/oauth/revoke", &[("token", "not-a-token")]).await.status, 200);
    assert_eq!(form(&t, &t.anonymous(), "/oauth/revoke", &[("token", &token)]).await.status, 200);
    let r = form(&t, &t.client, "/oauth/introspect", &[("token", &token)]).await;
    assert_eq!(r.json(), json!({"active": false}));
    assert_eq!(t.send(bearer(&token).get(t.url("/fhir/Patient"))).await.status, 401);
}
