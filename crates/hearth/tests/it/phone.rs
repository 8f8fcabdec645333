//! Phone numbers on accounts: set unverified at registration, verified with a code sent by SMS,
//! set verified by staff; OTP sign-in only for verified phones; `503 sms_unavailable` without an
//! SMS channel. The SMS leaves through a real local Twilio-protocol server.

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use hearth_notify::ChannelKind;
use hearth_server::config::{Secret, SmsConfig};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::{Resp, TestApp};
use crate::notify_peers::{Seen, eventually, serve};

const PASSWORD: &str = "lantern-pebble-marigold-71";
const PHONE: &str = "+919876543210";

pub(crate) type Log = Arc<Mutex<Vec<Seen>>>;

/// The Twilio Messages API as far as the SMS channel uses it: records each message, answers 201.
async fn twilio(
    State(log): State<Log>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let mut l = log.lock().unwrap();
    l.push(Seen { path: format!("/2010-04-01/Accounts/{sid}/Messages.json"), headers, body: body.to_vec() });
    (StatusCode::CREATED, axum::Json(json!({"sid": format!("SM{:032}", l.len()), "status": "queued"})))
}

/// A test app whose SMS channel is a real local Twilio-protocol server; the log of what it got.
pub(crate) async fn with_sms_peer() -> (TestApp, Log) {
    with_sms_peer_and(|_| {}).await
}

/// [`with_sms_peer`] with more configuration of the app.
pub(crate) async fn with_sms_peer_and(more: impl FnOnce(&mut hearth_server::config::Config)) -> (TestApp, Log) {
    let log: Log = Arc::default();
    let peer = serve(
        axum::Router::new().route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio)).with_state(log.clone()),
    )
    .await;
    let t = TestApp::spawn_channels(
        |c| {
            c.notify.poll_interval_ms = 50;
            c.notify.sms = Some(SmsConfig {
                api_base: peer,
                account_sid: "ACphone".into(),
                auth_token: Secret::new("phone-token".into()),
                messaging_service_sid: Some("MGphone".into()),
                from: None,
                status_callback_url: None,
            });
            more(c);
        },
        false,
    )
    .await;
    (t, log)
}

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

async fn sign_in(t: &TestApp, email: &str) -> reqwest::Client {
    let body = json!({"email": email, "password": PASSWORD});
    let l = api(t, &t.anonymous(), Method::POST, "/api/v1/auth/login", Some(body)).await;
    assert_eq!(l.status, 200, "{}", l.text);
    bearer(l.json()["access_token"].as_str().unwrap())
}

async fn register(t: &TestApp, email: &str, phone: Option<&str>) -> Resp {
    let mut body = json!({"email": email, "password": PASSWORD, "given": "Asha", "family": "Rao"});
    if let Some(p) = phone {
        body["phone"] = json!(p);
    }
    api(t, &t.anonymous(), Method::POST, "/api/v1/auth/register", Some(body)).await
}

async fn otp_request(t: &TestApp, phone: &str) -> Resp {
    api(t, &t.anonymous(), Method::POST, "/api/v1/auth/otp/request", Some(json!({"phone": phone}))).await
}

async fn otp_verify(t: &TestApp, phone: &str, code: &str) -> Resp {
    api(t, &t.anonymous(), Method::POST, "/api/v1/auth/otp/verify", Some(json!({"phone": phone, "code": code}))).await
}

/// The six digits of the `n`th message (0-based) the peer received for `to`.
async fn code_of(log: &Log, to: &str, n: usize) -> String {
    let sms = eventually("the SMS", || async {
        log.lock().unwrap().iter().filter(|m| m.form_value("To").as_deref() == Some(to)).nth(n).cloned()
    })
    .await;
    let body = sms.form_value("Body").unwrap();
    let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();
    assert_eq!(code.len(), 6, "{body}");
    code
}

fn other_code(code: &str) -> &'static str {
    if code == "000000" { "111111" } else { "000000" }
}

#[tokio::test]
async fn a_registered_phone_signs_in_by_sms_only_after_it_is_verified_through_a_real_sms_peer() {
    let (t, log) = with_sms_peer().await;
    let r = register(&t, "asha.phone@example.org", Some("098765 43210")).await;
    assert_eq!(r.status, 201, "{}", r.text);
    let account = r.json();
    assert_eq!(account["phone"], PHONE);
    assert_eq!(account["phoneVerified"], false);
    let me_client = sign_in(&t, "asha.phone@example.org").await;
    let me = api(&t, &me_client, Method::GET, "/api/v1/auth/me", None).await.json();
    assert_eq!((me["phone"].as_str(), me["phoneVerified"].as_bool()), (Some(PHONE), Some(false)));

    // Unverified: the usual answer, the same as for a number nobody has, and no SMS, no code.
    let asked = otp_request(&t, PHONE).await;
    let unknown = otp_request(&t, "+919812345678").await;
    assert_eq!((asked.status, unknown.status), (202, 202), "{}", asked.text);
    assert_eq!(asked.json(), unknown.json());
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(log.lock().unwrap().is_empty(), "no SMS for an unverified phone");
    let outbox = hearth_store_sql::notify::list_by_status(&*t.app.db, None, 100).await.unwrap();
    assert!(outbox.iter().all(|r| r.channel != "sms"), "nothing queued either");
    for code in ["000000", "123456"] {
        let v = otp_verify(&t, PHONE, code).await;
        assert_eq!((v.status, v.json()["error"]["code"].as_str()), (401, Some("otp_invalid")), "{}", v.text);
    }

    // The owner verifies it with the code that reaches the peer (written another usual way).
    let s = api(&t, &me_client, Method::POST, "/api/v1/auth/phone", Some(json!({"phone": "+91-98765-43210"}))).await;
    assert_eq!(s.status, 202, "{}", s.text);
    let code = code_of(&log, PHONE, 0).await;
    // A verification code is not a sign-in code.
    assert_eq!(otp_verify(&t, PHONE, &code).await.status, 401);
    let wrong =
        api(&t, &me_client, Method::POST, "/api/v1/auth/phone/verify", Some(json!({"code": other_code(&code)}))).await;
    assert_eq!((wrong.status, wrong.json()["error"]["code"].as_str()), (401, Some("otp_invalid")));
    let ok = api(&t, &me_client, Method::POST, "/api/v1/auth/phone/verify", Some(json!({"code": code}))).await;
    assert_eq!(ok.status, 200, "{}", ok.text);
    assert_eq!(ok.json(), json!({"phone": PHONE, "phoneVerified": true}));
    let again = api(&t, &me_client, Method::POST, "/api/v1/auth/phone/verify", Some(json!({"code": code}))).await;
    assert_eq!(again.status, 401, "a code verifies once");
    let me = api(&t, &me_client, Method::GET, "/api/v1/auth/me", None).await.json();
    assert_eq!((me["phone"].as_str(), me["phoneVerified"].as_bool()), (Some(PHONE), Some(true)));

    // Now a sign-in code goes out, and it gives tokens for this account.
    assert_eq!(otp_request(&t, "98765 43210").await.status, 202);
    let sign_in_code = code_of(&log, PHONE, 1).await;
    let v = otp_verify(&t, PHONE, &sign_in_code).await;
    assert_eq!(v.status, 200, "{}", v.text);
    let by_code = bearer(v.json()["access_token"].as_str().unwrap());
    let me = api(&t, &by_code, Method::GET, "/api/v1/auth/me", None).await.json();
    assert_eq!(me["id"], account["id"]);
    assert_eq!(log.lock().unwrap().len(), 2, "the two codes and nothing else");
}

#[tokio::test]
async fn a_phone_verified_on_one_account_cannot_be_verified_on_another_and_the_send_step_does_not_tell() {
    let (t, log) = with_sms_peer().await;
    // Staff set the phone: verified from the start.
    let body =
        json!({"email": "holder@example.org", "password": PASSWORD, "role": "patient", "phone": "+91 98765 43210"});
    let holder = api(&t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await;
    assert_eq!(holder.status, 201, "{}", holder.text);
    assert_eq!((holder.json()["phone"].as_str(), holder.json()["phoneVerified"].as_bool()), (Some(PHONE), Some(true)));
    let twice = json!({"email": "other@example.org", "password": PASSWORD, "role": "patient", "phone": PHONE});
    let taken = api(&t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(twice)).await;
    assert_eq!((taken.status, taken.json()["error"]["code"].as_str()), (409, Some("phone_taken")), "{}", taken.text);

    // A second account registers with the same number: allowed, since it is only a claim.
    let r = register(&t, "claimant@example.org", Some(PHONE)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    assert_eq!(r.json()["phoneVerified"], false);
    let claimant = sign_in(&t, "claimant@example.org").await;
    let free = api(&t, &claimant, Method::POST, "/api/v1/auth/phone", Some(json!({"phone": "+919812345678"}))).await;
    let held = api(&t, &claimant, Method::POST, "/api/v1/auth/phone", Some(json!({"phone": PHONE}))).await;
    assert_eq!((free.status, held.status), (202, 202), "{}", held.text);
    assert_eq!(free.json(), held.json(), "the send step answers alike");
    code_of(&log, "+919812345678", 0).await;
    let code = code_of(&log, PHONE, 0).await;
    let v = api(&t, &claimant, Method::POST, "/api/v1/auth/phone/verify", Some(json!({"code": code}))).await;
    assert_eq!((v.status, v.json()["error"]["code"].as_str()), (409, Some("phone_taken")), "{}", v.text);
    let me = api(&t, &claimant, Method::GET, "/api/v1/auth/me", None).await.json();
    assert_eq!(me["phoneVerified"], false);
    // The holder still signs in with it.
    assert_eq!(otp_request(&t, PHONE).await.status, 202);
    let sign_in_code = code_of(&log, PHONE, 1).await;
    let v = otp_verify(&t, PHONE, &sign_in_code).await;
    assert_eq!(v.status, 200, "{}", v.text);
    let me = api(&t, &bearer(v.json()["access_token"].as_str().unwrap()), Method::GET, "/api/v1/auth/me", None).await;
    assert_eq!(me.json()["id"], holder.json()["id"]);

    // The OTP request limit applies per account: five sends in 15 minutes (two spent above).
    for n in 0..3 {
        let s = api(
            &t,
            &claimant,
            Method::POST,
            "/api/v1/auth/phone",
            Some(json!({"phone": format!("+9198000000{n:02}")})),
        )
        .await;
        assert_eq!(s.status, 202, "{}", s.text);
    }
    let over = api(&t, &claimant, Method::POST, "/api/v1/auth/phone", Some(json!({"phone": "+919800000099"}))).await;
    assert_eq!(over.status, 429, "{}", over.text);
}

#[tokio::test]
async fn without_an_sms_channel_phone_codes_answer_503_for_every_number_and_bad_phones_400() {
    let t = TestApp::spawn().await;
    let body = json!({"email": "sms.less@example.org", "password": PASSWORD, "role": "patient", "phone": PHONE});
    let r = api(&t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await;
    assert_eq!(r.status, 201, "{}", r.text);
    // The default outbox (here the tests' memory channel, else the local file outbox) is a channel.
    assert!(t.app.notify.available(ChannelKind::Sms));
    assert_eq!(otp_request(&t, PHONE).await.status, 202);
    t.app.notify.remove_channel(ChannelKind::Sms);
    assert!(!t.app.notify.available(ChannelKind::Sms));
    let known = otp_request(&t, PHONE).await;
    let unknown = otp_request(&t, "+14155550100").await;
    assert_eq!((known.status, unknown.status), (503, 503), "{}", known.text);
    assert_eq!(known.json(), unknown.json(), "the same answer for every number");
    assert_eq!(known.json()["error"]["code"], "sms_unavailable");
    assert!(known.json()["error"]["message"].as_str().unwrap().contains("SMS is not configured"));
    let mail = api(
        &t,
        &t.anonymous(),
        Method::POST,
        "/api/v1/auth/otp/request",
        Some(json!({"email": "sms.less@example.org"})),
    )
    .await;
    assert_eq!(mail.status, 202, "e-mail codes are unaffected: {}", mail.text);
    let me = sign_in(&t, "sms.less@example.org").await;
    let send = api(&t, &me, Method::POST, "/api/v1/auth/phone", Some(json!({"phone": "+919812345678"}))).await;
    assert_eq!((send.status, send.json()["error"]["code"].as_str()), (503, Some("sms_unavailable")));

    // Bad phones: 400 with a stable code, wherever they are typed.
    for bad in ["5876543210", "98765 4321", "+0441234567", "9876543210 ext 5"] {
        let o = otp_request(&t, bad).await;
        assert_eq!((o.status, o.json()["error"]["code"].as_str()), (400, Some("invalid_destination")), "{bad}");
        let s = api(&t, &me, Method::POST, "/api/v1/auth/phone", Some(json!({"phone": bad}))).await;
        assert_eq!((s.status, s.json()["error"]["code"].as_str()), (400, Some("invalid_phone")), "{bad}");
    }
    let r = register(&t, "bad.phone@example.org", Some("12345")).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_phone")), "{}", r.text);
    let body = json!({"email": "bad.staff@example.org", "password": PASSWORD, "role": "clinician", "phone": "call me"});
    let a = api(&t, &t.client, Method::POST, "/api/v1/admin/accounts", Some(body)).await;
    assert_eq!((a.status, a.json()["error"]["code"].as_str()), (400, Some("invalid_phone")), "{}", a.text);
}
