//! Two-factor authentication (TOTP against the RFC 6238 vectors, recovery codes, replay, the
//! admin enrolment-only token), patient OTP login (brute force, no enumeration), browser cookie
//! mode with the CSRF double submit, rate limits, CORS and security headers.

use std::time::Duration;

use chrono::{DateTime, TimeDelta, Utc};
use hearth_auth::totp::{self, TotpSecret};
use hearth_server::Clock;
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

async fn post(t: &TestApp, path: &str, token: Option<&str>, body: Value) -> Resp {
    let mut req = t.anonymous().post(t.url(path)).header("content-type", "application/json").body(body.to_string());
    if let Some(tok) = token {
        req = req.header("authorization", format!("Bearer {tok}"));
    }
    t.send(req).await
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

fn at(unix: i64) -> DateTime<Utc> {
    DateTime::from_timestamp(unix, 0).unwrap()
}

/// Registers a patient; answers the account id.
async fn register(t: &TestApp, email: &str) -> String {
    // Born before 1970: the RFC 6238 vectors set the clock to 1970, and a birth date after the
    // clock's now is refused.
    let body =
        json!({"email": email, "password": PASSWORD, "given": "Ann", "family": "Mfa", "birthDate": "1950-02-03"});
    let r = post(t, "/api/v1/auth/register", None, body).await;
    assert_eq!(r.status, 201, "{}", r.text);
    r.json()["id"].as_str().unwrap().to_owned()
}

async fn login(t: &TestApp, email: &str, code: Option<&str>) -> Resp {
    let mut body = json!({"email": email, "password": PASSWORD});
    if let Some(c) = code {
        body["code"] = json!(c);
    }
    post(t, "/api/v1/auth/login", None, body).await
}

fn error_code(r: &Resp) -> String {
    r.json()["error"]["code"].as_str().unwrap_or_default().to_owned()
}

/// Enrols TOTP with `token` and confirms it with the current code; answers the secret and the
/// recovery codes.
async fn enrol(t: &TestApp, token: &str) -> (TotpSecret, Vec<String>) {
    let r = post(t, "/api/v1/auth/totp/enroll", Some(token), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(v["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/Hearth:"), "{v}");
    assert!(v["qr_svg"].as_str().unwrap().starts_with("<svg"), "{v}");
    let secret = TotpSecret::from_base32(v["secret"].as_str().unwrap()).unwrap();
    let code = totp::code_at_step(&secret, totp::time_step(t.clock.now()));
    let r = post(t, "/api/v1/auth/totp/confirm", Some(token), json!({"code": code.expose()})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let codes = r.json()["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    (secret, codes)
}

/// RFC 6238 Appendix B (SHA-1 seed "12345678901234567890"): Unix time and the 8-digit TOTP, whose
/// last six digits are the 6-digit code.
const RFC6238_SHA1: [(i64, &str); 6] = [
    (59, "94287082"),
    (1_111_111_109, "07081804"),
    (1_111_111_111, "14050471"),
    (1_234_567_890, "89005924"),
    (2_000_000_000, "69279037"),
    (20_000_000_000, "65353130"),
];

#[tokio::test]
async fn totp_login_follows_the_rfc6238_vectors_refuses_replay_and_spends_recovery_codes() {
    let t = TestApp::spawn().await;
    t.clock.set(at(59));
    let id = register(&t, "totp@example.org").await;
    let l = login(&t, "totp@example.org", None).await;
    assert_eq!(l.status, 200, "{}", l.text);
    let token = l.json()["access_token"].as_str().unwrap().to_owned();
    let r = post(&t, "/api/v1/auth/totp/enroll", Some(&token), json!({})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The authenticator holds the RFC's seed: put the same secret where enrolment stored its own.
    let seed = TotpSecret::from_base32("GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ").unwrap();
    assert!(hearth_store_sql::mfa::totp_begin_enrolment(&*t.app.db, &id, seed.to_base32().expose()).await.unwrap());
    for (unix, eight) in RFC6238_SHA1 {
        assert_eq!(totp::code_at_step(&seed, totp::time_step(at(unix))).expose(), &eight[2..], "T = {unix}");
    }
    // Confirm at T = 59 with that vector's code; a wrong code first is refused.
    let r = post(&t, "/api/v1/auth/totp/confirm", Some(&token), json!({"code": "000000"})).await;
    assert_eq!((r.status, error_code(&r).as_str()), (400, "totp_invalid"), "{}", r.text);
    let r = post(&t, "/api/v1/auth/totp/confirm", Some(&token), json!({"code": &RFC6238_SHA1[0].1[2..]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let recovery: Vec<String> =
        r.json()["recovery_codes"].as_array().unwrap().iter().map(|c| c.as_str().unwrap().to_owned()).collect();
    assert_eq!(recovery.len(), 10);
    // The confirming code cannot log in again at the same time.
    let r = login(&t, "totp@example.org", Some(&RFC6238_SHA1[0].1[2..])).await;
    assert_eq!((r.status, error_code(&r).as_str()), (401, "totp_replayed"), "{}", r.text);
    for (unix, eight) in &RFC6238_SHA1[1..] {
        t.clock.set(at(*unix));
        let code = &eight[2..];
        let r = login(&t, "totp@example.org", None).await;
        assert_eq!((r.status, error_code(&r).as_str()), (401, "mfa_required"), "T = {unix}: {}", r.text);
        assert!(r.json().get("access_token").is_none());
        let r = login(&t, "totp@example.org", Some(code)).await;
        assert_eq!(r.status, 200, "T = {unix}: {}", r.text);
        assert!(r.json()["refresh_token"].is_string());
        // The same step again is a replay.
        let r = login(&t, "totp@example.org", Some(code)).await;
        assert_eq!((r.status, error_code(&r).as_str()), (401, "totp_replayed"), "T = {unix}: {}", r.text);
    }
    // A wrong code and a malformed body never reach a 500.
    let r = login(&t, "totp@example.org", Some("123")).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = post(&t, "/api/v1/auth/totp/confirm", Some(&token), json!({"code": 5})).await;
    assert!(r.status == 400 || r.status == 401, "{}", r.text);
    // Recovery codes work once each (any case, dashes optional).
    let r = login(&t, "totp@example.org", Some(&recovery[0])).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let r = login(&t, "totp@example.org", Some(&recovery[0])).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = login(&t, "totp@example.org", Some(&recovery[1].replace('-', "").to_uppercase())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let token = r.json()["access_token"].as_str().unwrap().to_owned();
    // Disable needs the password and a code.
    let r = post(
        &t,
        "/api/v1/auth/totp/disable",
        Some(&token),
        json!({"password": "wrong-password-123", "code": recovery[2]}),
    )
    .await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = post(&t, "/api/v1/auth/totp/disable", Some(&token), json!({"password": PASSWORD, "code": "999999"})).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r =
        post(&t, "/api/v1/auth/totp/disable", Some(&token), json!({"password": PASSWORD, "code": recovery[2]})).await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = login(&t, "totp@example.org", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["scope"], hearth_server::auth::DEFAULT_SCOPE);
}

#[tokio::test]
async fn an_admin_without_totp_may_only_enrol() {
    let t = TestApp::spawn().await;
    let body = json!({"email": "boss@example.org", "password": PASSWORD, "role": "admin"});
    assert_eq!(api(&t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await.status, 201);
    let l = login(&t, "boss@example.org", None).await;
    assert_eq!(l.status, 200, "{}", l.text);
    let v = l.json();
    assert_eq!(v["scope"], "hearth/mfa-setup");
    assert_eq!(v["mfa_enrollment_required"], true);
    assert!(v.get("refresh_token").is_none(), "{v}");
    let setup = v["access_token"].as_str().unwrap().to_owned();
    let c = bearer(&setup);
    let r = api(&t, &c, Method::GET, "/fhir/Patient", None).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert!(r.outcome_issue()["diagnostics"].as_str().unwrap().starts_with("mfa_enrollment_required"));
    let r = api(&t, &c, Method::POST, "/api/v1/admin/accounts", Some(json!({}))).await;
    assert_eq!((r.status, error_code(&r).as_str()), (403, "mfa_enrollment_required"), "{}", r.text);
    let r =
        api(&t, &c, Method::POST, "/api/v1/auth/totp/disable", Some(json!({"password": PASSWORD, "code": "1"}))).await;
    assert_eq!(r.status, 403, "{}", r.text);
    assert_eq!(api(&t, &c, Method::GET, "/api/v1/auth/me", None).await.status, 200);
    let (secret, _) = enrol(&t, &setup).await;
    // Now the password alone is not enough, and password + code is a full session.
    let r = login(&t, "boss@example.org", None).await;
    assert_eq!((r.status, error_code(&r).as_str()), (401, "mfa_required"), "{}", r.text);
    let next = totp::code_at_step(&secret, totp::time_step(t.clock.now()) + 1);
    let r = login(&t, "boss@example.org", Some(next.expose())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    let full = bearer(v["access_token"].as_str().unwrap());
    assert_eq!(api(&t, &full, Method::GET, "/fhir/Patient", None).await.status, 200);
    // The seeded admin token of the test app (signed directly) keeps full access.
    assert_eq!(api(&t, &t.client, Method::GET, "/fhir/Patient", None).await.status, 200);
    // Disabling 2FA ends the admin's sessions: the refresh token no longer works.
    t.clock.set(t.clock.now() + TimeDelta::seconds(90));
    let code = totp::code_at_step(&secret, totp::time_step(t.clock.now()));
    let r = api(
        &t,
        &full,
        Method::POST,
        "/api/v1/auth/totp/disable",
        Some(json!({"password": PASSWORD, "code": code.expose()})),
    )
    .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let r = post(&t, "/api/v1/auth/refresh", None, json!({"refresh_token": v["refresh_token"]})).await;
    assert_eq!(r.status, 401, "{}", r.text);

    // Clinicians: optional by default, mandatory when configured.
    let body = json!({"email": "doc@example.org", "password": PASSWORD, "role": "clinician"});
    assert_eq!(api(&t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body.clone())).await.status, 201);
    assert_eq!(login(&t, "doc@example.org", None).await.json()["scope"], hearth_server::auth::DEFAULT_SCOPE);
    let strict = TestApp::spawn_with(|c| c.auth.require_mfa_for_clinicians = true).await;
    assert_eq!(api(&strict, &strict.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await.status, 201);
    let r = login(&strict, "doc@example.org", None).await;
    assert_eq!(r.json()["scope"], "hearth/mfa-setup", "{}", r.text);
}

async fn code_for(t: &TestApp, to: &str) -> String {
    for _ in 0..100 {
        if let Some(code) = t.outbox.last_code(to) {
            return code;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
    panic!("no code was sent to {to}");
}

#[tokio::test]
async fn patient_otp_login_stops_brute_force_and_never_reveals_accounts() {
    let t = TestApp::spawn().await;
    register(&t, "otp@example.org").await;
    let body = json!({"email": "staff@example.org", "password": PASSWORD, "role": "clinician"});
    assert_eq!(api(&t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await.status, 201);
    // Same answer for an account, no account, and a staff account.
    let known = post(&t, "/api/v1/auth/otp/request", None, json!({"email": "OTP@example.org"})).await;
    let unknown = post(&t, "/api/v1/auth/otp/request", None, json!({"email": "nobody@example.org"})).await;
    let staff = post(&t, "/api/v1/auth/otp/request", None, json!({"email": "staff@example.org"})).await;
    for r in [&known, &unknown, &staff] {
        assert_eq!(r.status, 202, "{}", r.text);
        assert_eq!(r.text, known.text);
    }
    let right = code_for(&t, "otp@example.org").await;
    assert_eq!(right.len(), 6);
    // Five wrong codes, then even the right one is refused: the code is used up.
    let wrong = if right == "123456" { "654321" } else { "123456" };
    for _ in 0..5 {
        let r = post(&t, "/api/v1/auth/otp/verify", None, json!({"email": "otp@example.org", "code": wrong})).await;
        assert_eq!((r.status, error_code(&r).as_str()), (401, "otp_invalid"), "{}", r.text);
    }
    let r = post(&t, "/api/v1/auth/otp/verify", None, json!({"email": "otp@example.org", "code": right})).await;
    assert_eq!((r.status, error_code(&r).as_str()), (401, "otp_invalid"), "{}", r.text);
    // A new code logs in once.
    assert_eq!(post(&t, "/api/v1/auth/otp/request", None, json!({"email": "otp@example.org"})).await.status, 202);
    let mut code = code_for(&t, "otp@example.org").await;
    for _ in 0..100 {
        if code != right {
            break;
        }
        tokio::time::sleep(Duration::from_millis(50)).await;
        code = code_for(&t, "otp@example.org").await;
    }
    let r = post(&t, "/api/v1/auth/otp/verify", None, json!({"email": "otp@example.org", "code": code})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let v = r.json();
    assert!(v["refresh_token"].is_string());
    let me = api(&t, &bearer(v["access_token"].as_str().unwrap()), Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(me.json()["role"], "patient");
    let r = post(&t, "/api/v1/auth/otp/verify", None, json!({"email": "otp@example.org", "code": code})).await;
    assert_eq!(r.status, 401, "used once: {}", r.text);
    // An expired code is refused.
    assert_eq!(post(&t, "/api/v1/auth/otp/request", None, json!({"email": "otp@example.org"})).await.status, 202);
    tokio::time::sleep(Duration::from_millis(300)).await;
    let last = code_for(&t, "otp@example.org").await;
    t.clock.set(t.clock.now() + TimeDelta::minutes(11));
    let r = post(&t, "/api/v1/auth/otp/verify", None, json!({"email": "otp@example.org", "code": last})).await;
    assert_eq!(r.status, 401, "{}", r.text);
    // Nothing was ever sent for the unknown or the staff address; the same refusal for them.
    assert!(t.outbox.messages().iter().all(|m| m.to == "otp@example.org"));
    let r = post(&t, "/api/v1/auth/otp/verify", None, json!({"email": "nobody@example.org", "code": "123456"})).await;
    assert_eq!((r.status, error_code(&r).as_str()), (401, "otp_invalid"), "{}", r.text);
    // Bad input is a 400, never a 500.
    for body in [json!({}), json!({"email": "a@b.c", "phone": "+4420794609"}), json!({"phone": "12"}), json!([1])] {
        let r = post(&t, "/api/v1/auth/otp/request", None, body).await;
        assert_eq!(r.status, 400, "{}", r.text);
    }
}

fn set_cookies(r: &Resp) -> Vec<String> {
    r.headers.get_all("set-cookie").iter().map(|v| v.to_str().unwrap().to_owned()).collect()
}

fn cookie_value(cookies: &[String], name: &str) -> String {
    cookies
        .iter()
        .find_map(|c| c.strip_prefix(&format!("{name}=")))
        .map(|rest| rest.split(';').next().unwrap().to_owned())
        .unwrap_or_else(|| panic!("no {name} in {cookies:?}"))
}

async fn cookie_post(t: &TestApp, path: &str, cookie: &str, csrf: Option<&str>) -> Resp {
    let mut req = t.anonymous().post(t.url(path)).header("cookie", cookie);
    if let Some(c) = csrf {
        req = req.header("x-csrf-token", c);
    }
    t.send(req).await
}

#[tokio::test]
async fn cookie_sessions_need_the_csrf_double_submit() {
    let t = TestApp::spawn().await;
    register(&t, "web@example.org").await;
    let r =
        post(&t, "/api/v1/auth/login", None, json!({"email": "web@example.org", "password": PASSWORD, "cookie": true}))
            .await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json().get("refresh_token").is_none(), "{}", r.text);
    assert!(r.json()["access_token"].is_string());
    let cookies = set_cookies(&r);
    let refresh_cookie = cookies.iter().find(|c| c.starts_with("__Secure-hearth-refresh=")).unwrap();
    for attr in ["HttpOnly", "Secure", "SameSite=Strict", "Path=/api/v1/auth"] {
        assert!(refresh_cookie.contains(attr), "{refresh_cookie}");
    }
    let csrf_cookie = cookies.iter().find(|c| c.starts_with("__Host-hearth-csrf=")).unwrap();
    assert!(!csrf_cookie.contains("HttpOnly") && csrf_cookie.contains("Path=/;"), "{csrf_cookie}");
    let refresh = cookie_value(&cookies, "__Secure-hearth-refresh");
    let csrf = cookie_value(&cookies, "__Host-hearth-csrf");
    let jar = format!("__Secure-hearth-refresh={refresh}; __Host-hearth-csrf={csrf}");
    // Missing, wrong, or without the CSRF cookie: 403 csrf_failed (and the token is not spent).
    let other = hearth_auth::csrf::generate(&mut hearth_server::auth::rng());
    for (cookie, header) in [
        (jar.clone(), None),
        (jar.clone(), Some(other.as_str())),
        (format!("__Secure-hearth-refresh={refresh}"), Some(csrf.as_str())),
    ] {
        let r = cookie_post(&t, "/api/v1/auth/refresh", &cookie, header).await;
        assert_eq!((r.status, error_code(&r).as_str()), (403, "csrf_failed"), "{}", r.text);
        let r = cookie_post(&t, "/api/v1/auth/logout", &cookie, header).await;
        assert_eq!((r.status, error_code(&r).as_str()), (403, "csrf_failed"), "{}", r.text);
    }
    // Right: rotated, in new cookies.
    let r = cookie_post(&t, "/api/v1/auth/refresh", &jar, Some(&csrf)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json().get("refresh_token").is_none());
    let cookies = set_cookies(&r);
    let refresh2 = cookie_value(&cookies, "__Secure-hearth-refresh");
    let csrf2 = cookie_value(&cookies, "__Host-hearth-csrf");
    assert_ne!(refresh2, refresh);
    let jar2 = format!("__Secure-hearth-refresh={refresh2}; __Host-hearth-csrf={csrf2}");
    // Logout by cookie ends the session and clears the cookies.
    let r = cookie_post(&t, "/api/v1/auth/logout", &jar2, Some(&csrf2)).await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert!(set_cookies(&r).iter().all(|c| c.contains("Max-Age=0")), "{:?}", set_cookies(&r));
    let r = cookie_post(&t, "/api/v1/auth/refresh", &jar2, Some(&csrf2)).await;
    assert_eq!(r.status, 401, "{}", r.text);
    // Bearer clients (refresh token in the body) need no CSRF token.
    let l = login(&t, "web@example.org", None).await;
    let r = post(&t, "/api/v1/auth/refresh", None, json!({"refresh_token": l.json()["refresh_token"]})).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(r.json()["refresh_token"].is_string());
}

#[tokio::test]
async fn rate_limits_answer_429_with_retry_after() {
    let t = TestApp::spawn_with(|c| {
        c.auth.api_requests_per_minute = 3;
        c.auth.auth_attempts_per_minute = 2;
    })
    .await;
    // The general limit, per user.
    for _ in 0..3 {
        assert_eq!(api(&t, &t.client, Method::GET, "/fhir/Patient", None).await.status, 200);
    }
    let r = api(&t, &t.client, Method::GET, "/fhir/Patient", None).await;
    assert_eq!(r.status, 429, "{}", r.text);
    assert_eq!(r.outcome_issue()["code"], "throttled");
    let wait: u64 = r.header("retry-after").unwrap().parse().unwrap();
    assert!((1..=20).contains(&wait), "{wait}");
    // Login attempts, per IP and account.
    for _ in 0..2 {
        assert_eq!(login(&t, "nobody@example.org", None).await.status, 401);
    }
    let r = login(&t, "nobody@example.org", None).await;
    assert_eq!((r.status, error_code(&r).as_str()), (429, "rate_limited"), "{}", r.text);
    assert!(r.header("retry-after").unwrap().parse::<u64>().unwrap() >= 1);
}

#[tokio::test]
async fn security_headers_cors_and_hsts() {
    let t = TestApp::spawn_with(|c| {
        c.base_url = Some("https://hearth.example".into());
        c.auth.cors_allowed_origins = vec!["https://app.example".into()];
    })
    .await;
    let r = t.get("/fhir/metadata").await;
    assert_eq!(r.header("x-content-type-options").as_deref(), Some("nosniff"));
    assert_eq!(r.header("referrer-policy").as_deref(), Some("no-referrer"));
    assert_eq!(r.header("x-frame-options").as_deref(), Some("DENY"));
    assert!(r.header("strict-transport-security").unwrap().starts_with("max-age="));
    let docs = t.get("/api/docs").await;
    assert!(docs.header("content-security-policy").unwrap().contains("frame-ancestors 'none'"));
    let preflight = |origin: &'static str| {
        t.anonymous()
            .request(Method::OPTIONS, t.url("/fhir/Patient"))
            .header("origin", origin)
            .header("access-control-request-method", "GET")
            .header("access-control-request-headers", "authorization")
    };
    let ok = t.send(preflight("https://app.example")).await;
    assert_eq!(ok.header("access-control-allow-origin").as_deref(), Some("https://app.example"));
    assert_eq!(ok.header("access-control-allow-credentials").as_deref(), Some("true"));
    let other = t.send(preflight("https://evil.example")).await;
    assert_eq!(other.header("access-control-allow-origin"), None);
    // Plain http base: no HSTS.
    let plain = TestApp::spawn().await;
    assert_eq!(plain.get("/fhir/metadata").await.header("strict-transport-security"), None);
}

#[tokio::test]
async fn concurrent_reuse_of_a_totp_code_or_otp_guesses_cannot_beat_the_guards() {
    let t = TestApp::spawn().await;
    register(&t, "race@example.org").await;
    let token = login(&t, "race@example.org", None).await.json()["access_token"].as_str().unwrap().to_owned();
    let (secret, _) = enrol(&t, &token).await;
    // Ten logins at once with the same fresh code: exactly one wins.
    let code = totp::code_at_step(&secret, totp::time_step(t.clock.now()) + 1);
    let body = json!({"email": "race@example.org", "password": PASSWORD, "code": code.expose()}).to_string();
    let requests = (0..10)
        .map(|_| {
            t.anonymous()
                .post(t.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .collect();
    let statuses = crate::common::race(requests).await;
    assert_eq!(crate::common::count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(crate::common::count(&statuses, 401), 9, "{statuses:?}");

    // Twenty parallel wrong guesses on a login code, then the right one: refused.
    register(&t, "guess@example.org").await;
    assert_eq!(post(&t, "/api/v1/auth/otp/request", None, json!({"email": "guess@example.org"})).await.status, 202);
    let right = code_for(&t, "guess@example.org").await;
    let wrong = if right == "123456" { "654321" } else { "123456" };
    let body = json!({"email": "guess@example.org", "code": wrong}).to_string();
    let requests = (0..20)
        .map(|_| {
            t.anonymous()
                .post(t.url("/api/v1/auth/otp/verify"))
                .header("content-type", "application/json")
                .body(body.clone())
        })
        .collect();
    let statuses = crate::common::race(requests).await;
    assert_eq!(crate::common::count(&statuses, 401), 20, "{statuses:?}");
    let r = post(&t, "/api/v1/auth/otp/verify", None, json!({"email": "guess@example.org", "code": right})).await;
    assert_eq!(r.status, 401, "{}", r.text);
}

#[tokio::test]
async fn an_admin_resets_a_lost_second_factor_ending_the_accounts_sessions() {
    let t = TestApp::spawn().await;
    let id = register(&t, "lost-phone@example.org").await;
    let token = login(&t, "lost-phone@example.org", None).await.json()["access_token"].as_str().unwrap().to_owned();
    let (secret, recovery) = enrol(&t, &token).await;
    t.clock.set(t.clock.now() + TimeDelta::seconds(30));
    let code = totp::code_at_step(&secret, totp::time_step(t.clock.now()));
    let r = login(&t, "lost-phone@example.org", Some(code.expose())).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let refresh = r.json()["refresh_token"].as_str().unwrap().to_owned();

    // The list shows the account with 2FA on, and nothing secret.
    let r = api(&t, &t.client, Method::GET, "/api/v1/admin/accounts", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = r.json()["accounts"].as_array().unwrap().iter().find(|a| a["id"] == id.as_str()).cloned().unwrap();
    assert_eq!(listed["totpEnabled"], true, "{listed}");
    assert!(!r.text.contains("totp_secret") && !r.text.contains("password"), "{}", r.text);
    // Only an administrator resets; an unknown or malformed account is 404.
    let r = post(&t, &format!("/api/v1/admin/accounts/{id}/totp/reset"), Some(&token), json!({})).await;
    assert_eq!(r.status, 403, "{}", r.text);
    for bad in ["no-such-account", "a%20b"] {
        let r = api(&t, &t.client, Method::POST, &format!("/api/v1/admin/accounts/{bad}/totp/reset"), None).await;
        assert_eq!((r.status, error_code(&r).as_str()), (404, "not_found"), "{}", r.text);
    }
    let r = api(&t, &t.client, Method::POST, &format!("/api/v1/admin/accounts/{id}/totp/reset"), None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(r.json()["totpEnabled"], false);
    // The old session cannot be renewed, the recovery codes are gone, the password alone signs in.
    let r = post(&t, "/api/v1/auth/refresh", None, json!({"refresh_token": refresh})).await;
    assert_eq!(r.status, 401, "{}", r.text);
    let r = login(&t, "lost-phone@example.org", None).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert!(!recovery.is_empty());
    assert!(hearth_store_sql::mfa::recovery_hashes(&*t.app.db, &id).await.unwrap().is_empty());
    // The audit trail: the administrator changed this account's security attributes.
    t.app.auditor.flush().await.unwrap();
    let r = t.get("/fhir/AuditEvent?_count=500").await;
    let reset = r.json()["entry"]
        .as_array()
        .unwrap()
        .iter()
        .map(|e| e["resource"].clone())
        .find(|e| e["outcomeDesc"].as_str().is_some_and(|d| d.contains(&id) && d.contains("reset")))
        .unwrap_or_else(|| panic!("no reset event: {}", r.text));
    assert_eq!(reset["type"]["code"], "110137", "{reset}");
    assert_ne!(reset["agent"][0]["who"]["identifier"]["value"], id.as_str(), "the agent is the administrator");
}
