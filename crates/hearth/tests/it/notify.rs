//! Notifications end to end, against real local peers: an SMTP server on loopback, loopback HTTP
//! servers standing in for Twilio, FCM and a Web Push service (they record each request; the
//! tests then check its shape, credentials and signatures as the provider would), the in-app
//! list and its WebSocket; retries, a worker dropped mid-send, quiet hours across time zones on
//! the injectable clock, preferences, and the outbox API (transactional, idempotent, cancellable).

use std::sync::atomic::{AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Path, State};
use axum::http::{HeaderMap, StatusCode};
use axum::response::IntoResponse;
use axum::routing::post;
use chrono::{DateTime, TimeDelta, Utc};
use data_encoding::{BASE64, BASE64URL_NOPAD};
use hearth_notify::{Category, ChannelKind};
use hearth_server::Clock;
use hearth_server::config::{EmailConfig, Secret, SmsConfig};
use hearth_server::notify::{self, Notice};
use hearth_store_sql::notify::{self as sql, OutboxRow};
use reqwest::Method;
use serde_json::{Value, json};

use crate::common::TestApp;
use crate::notify_peers::{Seen, SmtpServer, eventually, serve, url_form};

const PASSWORD: &str = "notify-heron-lantern-42";
const CALLBACK: &str = "https://hearth.example/api/v1/notifications/twilio/status";

fn fast(c: &mut hearth_server::Config) {
    c.notify.poll_interval_ms = 50;
}

fn at(s: &str) -> DateTime<Utc> {
    DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc)
}

/// A patient account straight in the database, its phone verified (as if staff had set it).
async fn account(t: &TestApp, email: Option<&str>, phone: Option<&str>) -> String {
    static N: AtomicUsize = AtomicUsize::new(0);
    let id = format!("notify-{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst));
    let row = hearth_store_sql::identity::AccountRow {
        id: id.clone(),
        email: email.map(str::to_owned),
        phone: phone.map(str::to_owned),
        phone_pending: None,
        password_hash: None,
        role: "patient".into(),
        fhir_user: None,
        organization: None,
        totp_secret: None,
        totp_enabled: false,
        totp_last_step: None,
        failed_logins: 0,
        locked_until: None,
        created_at: 0,
    };
    hearth_store_sql::identity::insert_account(&*t.app.db, &row).await.unwrap();
    id
}

fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// A self-registered, logged-in patient: (account id, client, access token).
async fn patient(t: &TestApp, email: &str) -> (String, reqwest::Client, String) {
    let body = json!({"email": email, "password": PASSWORD, "given": "Asha", "family": "Rao"});
    let r = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/auth/register"))
                .header("content-type", "application/json")
                .body(body.to_string()),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let id = r.json()["id"].as_str().unwrap().to_owned();
    let l = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/auth/login"))
                .header("content-type", "application/json")
                .body(json!({"email": email, "password": PASSWORD}).to_string()),
        )
        .await;
    assert_eq!(l.status, 200, "{}", l.text);
    let token = l.json()["access_token"].as_str().unwrap().to_owned();
    (id, bearer(&token), token)
}

fn notice(key: &str, account: &str, category: Category, template: &str, args: Value) -> Notice {
    Notice {
        key: key.into(),
        account_id: account.into(),
        category,
        template: template.into(),
        args: args.as_object().unwrap().clone(),
        not_before: None,
    }
}

async fn row_on(t: &TestApp, key: &str, channel: ChannelKind) -> Option<OutboxRow> {
    sql::by_key(&*t.app.db, key).await.unwrap().into_iter().find(|r| r.channel == channel.as_str())
}

async fn wait_status(t: &TestApp, key: &str, channel: ChannelKind, status: &str) -> OutboxRow {
    eventually(&format!("{key} on {} to be {status}", channel.as_str()), || async {
        row_on(t, key, channel).await.filter(|r| r.status == status)
    })
    .await
}

async fn json_call(t: &TestApp, c: &reqwest::Client, method: Method, path: &str, body: Option<Value>) -> (u16, Value) {
    let mut req = c.request(method, t.url(path));
    if let Some(b) = body {
        req = req.header("content-type", "application/json").body(b.to_string());
    }
    let r = t.send(req).await;
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

// ---------------------------------------------------------------- MIME reading (the test's side)

fn unfold(headers: &str) -> String {
    headers.replace("\r\n ", " ").replace("\r\n\t", " ")
}

fn decode_qp(s: &str) -> Vec<u8> {
    let s = s.replace("=\r\n", "");
    let b = s.as_bytes();
    let mut out = Vec::new();
    let mut i = 0;
    while i < b.len() {
        let hex = b.get(i + 1..i + 3).and_then(|h| u8::from_str_radix(std::str::from_utf8(h).ok()?, 16).ok());
        match (b[i], hex) {
            (b'=', Some(v)) => {
                out.push(v);
                i += 3;
            }
            (c, _) => {
                out.push(c);
                i += 1;
            }
        }
    }
    out
}

/// The decoded parts of a multipart message: (content type, text).
fn mime_parts(data: &str) -> (String, Vec<(String, String)>) {
    let (head, body) = data.split_once("\r\n\r\n").unwrap();
    let head = unfold(head);
    let ct = head.lines().find(|l| l.to_ascii_lowercase().starts_with("content-type:")).unwrap().to_owned();
    let boundary = ct.split("boundary=").nth(1).unwrap().trim_matches('"').split('"').next().unwrap().to_owned();
    let mut parts = Vec::new();
    for part in body.split(&format!("--{boundary}")).skip(1) {
        if part.starts_with("--") {
            break;
        }
        let (ph, pb) = part.trim_start_matches("\r\n").split_once("\r\n\r\n").unwrap();
        let ph = unfold(ph).to_ascii_lowercase();
        let pct = ph.lines().find(|l| l.starts_with("content-type:")).unwrap().to_owned();
        let pb = pb.trim_end_matches("\r\n");
        let text = if ph.contains("content-transfer-encoding: base64") {
            String::from_utf8(BASE64.decode(pb.replace("\r\n", "").as_bytes()).unwrap()).unwrap()
        } else if ph.contains("content-transfer-encoding: quoted-printable") {
            String::from_utf8(decode_qp(pb)).unwrap()
        } else {
            pb.to_owned()
        };
        parts.push((pct, text));
    }
    (ct, parts)
}

/// `Subject:` with RFC 2047 encoded words decoded.
fn subject(data: &str) -> String {
    let head = unfold(data.split_once("\r\n\r\n").unwrap().0);
    let raw = head.lines().find_map(|l| l.strip_prefix("Subject: ")).unwrap().to_owned();
    let mut out = String::new();
    for word in raw.split(' ') {
        let lower = word.to_ascii_lowercase();
        if lower.starts_with("=?utf-8?b?") && word.ends_with("?=") {
            out.push_str(&String::from_utf8(BASE64.decode(&word.as_bytes()[10..word.len() - 2]).unwrap()).unwrap());
        } else if lower.starts_with("=?utf-8?q?") && word.ends_with("?=") {
            out.push_str(&String::from_utf8(decode_qp(&word[10..word.len() - 2].replace('_', " "))).unwrap());
        } else {
            if !out.is_empty() {
                out.push(' ');
            }
            out.push_str(word);
        }
    }
    out
}

/// The test SMTP server on loopback as the e-mail provider (plaintext: it is local).
fn loopback_smtp(port: u16) -> EmailConfig {
    EmailConfig {
        host: "127.0.0.1".into(),
        port,
        security: "none".into(),
        username: None,
        password: None,
        from: "Hearth <no-reply@hearth.test>".into(),
    }
}

#[tokio::test]
async fn email_reaches_a_real_smtp_server_as_multipart_text_and_html() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let t = TestApp::spawn_channels(
        |c| {
            fast(c);
            c.notify.email = Some(loopback_smtp(port));
        },
        false,
    )
    .await;
    let en = account(&t, Some("asha@example.org"), None).await;
    let hi = account(&t, Some("ravi@example.org"), None).await;
    for (id, lang) in [(&en, "en"), (&hi, "hi")] {
        let s = sql::SettingsRow {
            time_zone: "Asia/Kolkata".into(),
            language: lang.into(),
            quiet_start: None,
            quiet_end: None,
        };
        sql::set_settings(&*t.app.db, id, &s).await.unwrap();
    }
    let when = json!({"when": "2026-03-01T04:30:00Z"});
    notify::send(
        &t.app.notifications,
        &notice("appt-en", &en, Category::Appointment, "appointment-reminder", when.clone()),
    )
    .await
    .unwrap();
    notify::send(&t.app.notifications, &notice("appt-hi", &hi, Category::Appointment, "appointment-reminder", when))
        .await
        .unwrap();
    let mails = eventually("two e-mails", || async { Some(smtp.mails()).filter(|m| m.len() == 2) }).await;
    let mail = mails.iter().find(|m| m.to == ["asha@example.org"]).unwrap();
    assert!(mail.from.contains("no-reply@hearth.test"), "{}", mail.from);
    let row = wait_status(&t, "appt-en", ChannelKind::Email, "sent").await;
    assert_eq!(row.provider.as_deref(), Some("smtp"));
    assert_eq!(row.provider_id, Some(format!("<{}@hearth.test>", row.id)));
    assert!(unfold(&mail.data).contains(&format!("Message-ID: <{}@hearth.test>", row.id)));
    assert_eq!(subject(&mail.data), "Appointment reminder");
    let (ct, parts) = mime_parts(&mail.data);
    assert!(ct.to_ascii_lowercase().contains("multipart/alternative"), "{ct}");
    assert_eq!(parts.len(), 2, "{parts:?}");
    let text = &parts.iter().find(|(c, _)| c.contains("text/plain")).unwrap().1;
    let html = &parts.iter().find(|(c, _)| c.contains("text/html")).unwrap().1;
    // 04:30 UTC is 10:00 in Kolkata: the time is the recipient's.
    assert_eq!(
        text.trim(),
        "You have an appointment on Sun 1 Mar 2026, 10:00 IST (Asia/Kolkata). Open Hearth for the details."
    );
    assert!(
        html.contains("<html lang=\"en\">")
            && html.contains("<p>You have an appointment on Sun 1 Mar 2026, 10:00 IST (Asia/Kolkata)."),
        "{html}"
    );
    // The Hindi reader gets Hindi.
    let mail = mails.iter().find(|m| m.to == ["ravi@example.org"]).unwrap();
    assert_eq!(subject(&mail.data), "अपॉइंटमेंट रिमाइंडर");
    let (_, parts) = mime_parts(&mail.data);
    assert!(
        parts.iter().any(|(c, t)| c.contains("text/plain")
            && t.contains("रविवार, 1 मार्च 2026, 10:00 IST (Asia/Kolkata) को आपका अपॉइंटमेंट है")),
        "{parts:?}"
    );
    // The template arguments are gone once the row is final.
    assert_eq!(row.args, "{}");
}

// ---------------------------------------------------------------- SMS through a Twilio-compatible API

type Log = Arc<Mutex<Vec<Seen>>>;

async fn record(log: &Log, path: String, headers: HeaderMap, body: axum::body::Bytes) -> usize {
    let mut l = log.lock().unwrap();
    l.push(Seen { path, headers, body: body.to_vec() });
    l.len()
}

async fn twilio_peer(
    State(log): State<Log>,
    Path(sid): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> impl IntoResponse {
    let n = record(&log, format!("/2010-04-01/Accounts/{sid}/Messages.json"), headers.clone(), body).await;
    let want = format!("Basic {}", BASE64.encode(b"ACtest:twilio-token"));
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some(want.as_str()) {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"code": 20003, "message": "Authenticate"})));
    }
    (StatusCode::CREATED, axum::Json(json!({"sid": format!("SM{n:032}"), "status": "queued"})))
}

#[tokio::test]
async fn a_patients_refusal_of_e_mail_contact_holds_back_routine_mail_but_not_critical_alerts() {
    let smtp = SmtpServer::start().await;
    let port = smtp.port;
    let t = TestApp::spawn_channels(
        |c| {
            fast(c);
            c.notify.email = Some(loopback_smtp(port));
        },
        false,
    )
    .await;
    let (me, client, _) = patient(&t, "refuses@example.org").await;
    let (s, v) = json_call(
        &t,
        &client,
        Method::POST,
        "/api/v1/me/consents",
        Some(json!({"kind": "contact", "channel": "email", "allow": false})),
    )
    .await;
    assert_eq!(s, 201, "{v}");
    let when = json!({"when": "2026-03-01T04:30:00Z"});
    notify::send(&t.app.notifications, &notice("routine", &me, Category::Appointment, "appointment-reminder", when))
        .await
        .unwrap();
    let held = wait_status(&t, "routine", ChannelKind::Email, "cancelled").await;
    assert_eq!(held.last_error.as_deref(), Some("the patient refused contact by email"));
    notify::send(&t.app.notifications, &notice("alert", &me, Category::Security, "emergency-alert", json!({})))
        .await
        .unwrap();
    wait_status(&t, "alert", ChannelKind::Email, "sent").await;
    let mails = smtp.mails();
    assert_eq!(mails.len(), 1, "only the critical alert went out");
}

#[tokio::test]
async fn sms_goes_to_a_twilio_compatible_api_and_status_callbacks_must_be_signed() {
    let log: Log = Arc::default();
    let peer = serve(
        axum::Router::new()
            .route("/2010-04-01/Accounts/{sid}/Messages.json", post(twilio_peer))
            .with_state(log.clone()),
    )
    .await;
    let t = TestApp::spawn_channels(
        |c| {
            fast(c);
            c.notify.sms = Some(SmsConfig {
                api_base: peer.clone(),
                account_sid: "ACtest".into(),
                auth_token: Secret::new("twilio-token".into()),
                messaging_service_sid: Some("MGtest".into()),
                from: None,
                status_callback_url: Some(CALLBACK.into()),
            });
        },
        false,
    )
    .await;
    // A patient login code by SMS goes through the outbox to the peer, and it is the real code.
    let id = account(&t, None, Some("+919876543210")).await;
    let s = sql::SettingsRow {
        time_zone: "Asia/Kolkata".into(),
        language: "hi".into(),
        quiet_start: None,
        quiet_end: None,
    };
    sql::set_settings(&*t.app.db, &id, &s).await.unwrap();
    let r = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/auth/otp/request"))
                .header("content-type", "application/json")
                .body(json!({"phone": "+91 98765 43210"}).to_string()),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let sms = eventually("the SMS", || async { log.lock().unwrap().first().cloned() }).await;
    assert_eq!(sms.path, "/2010-04-01/Accounts/ACtest/Messages.json");
    assert_eq!(sms.form_value("To").as_deref(), Some("+919876543210"));
    assert_eq!(sms.form_value("MessagingServiceSid").as_deref(), Some("MGtest"));
    assert_eq!(sms.form_value("StatusCallback").as_deref(), Some(CALLBACK));
    let body = sms.form_value("Body").unwrap();
    assert!(body.starts_with("Hearth कोड: "), "{body}");
    assert!(!body.chars().any(|c| matches!(c, '\u{2066}'..='\u{2069}' | '\u{200e}' | '\u{200f}')), "{body:?}");
    let code: String = body.chars().filter(char::is_ascii_digit).take(6).collect();
    let v = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/auth/otp/verify"))
                .header("content-type", "application/json")
                .body(json!({"phone": "+919876543210", "code": code}).to_string()),
        )
        .await;
    assert_eq!(v.status, 200, "the code the peer got logs in: {}", v.text);

    // Delivery reports: only with Twilio's signature over the configured URL and the form.
    let row = eventually("the OTP row sent", || async {
        sql::list_by_status(&*t.app.db, Some("sent"), 10).await.unwrap().into_iter().find(|r| r.channel == "sms")
    })
    .await;
    let sid = row.provider_id.clone().unwrap();
    assert!(sid.starts_with("SM"));
    let form = vec![("MessageSid".to_owned(), sid.clone()), ("MessageStatus".to_owned(), "delivered".to_owned())];
    let encoded: String = form.iter().map(|(k, v)| format!("{k}={v}")).collect::<Vec<_>>().join("&");
    let callback = |sig: Option<String>| {
        let mut req = t
            .anonymous()
            .post(t.url("/api/v1/notifications/twilio/status"))
            .header("content-type", "application/x-www-form-urlencoded")
            .body(encoded.clone());
        if let Some(s) = sig {
            req = req.header("x-twilio-signature", s);
        }
        req
    };
    let forged = hearth_notify::twilio::signature("not-the-token", CALLBACK, &form);
    for bad in [None, Some(forged), Some("!!".to_owned())] {
        let r = t.send(callback(bad)).await;
        assert_eq!(
            (r.status, r.json()["error"]["code"].as_str().unwrap().to_owned()),
            (403, "invalid_signature".to_owned())
        );
    }
    assert_eq!(sql::get(&*t.app.db, &row.id).await.unwrap().unwrap().status, "sent");
    let good = hearth_notify::twilio::signature("twilio-token", CALLBACK, &form);
    assert_eq!(t.send(callback(Some(good))).await.status, 204);
    assert_eq!(sql::get(&*t.app.db, &row.id).await.unwrap().unwrap().status, "delivered");

    // An undelivered report is a bounce, visible to admins with Twilio's error code.
    notify::send(
        &t.app.notifications,
        &notice(
            "appt-sms",
            &id,
            Category::Appointment,
            "appointment-reminder",
            json!({"when": "2026-03-01T04:30:00Z"}),
        ),
    )
    .await
    .unwrap();
    let row = wait_status(&t, "appt-sms", ChannelKind::Sms, "sent").await;
    let form = vec![
        ("ErrorCode".to_owned(), "30003".to_owned()),
        ("MessageSid".to_owned(), row.provider_id.clone().unwrap()),
        ("MessageStatus".to_owned(), "undelivered".to_owned()),
    ];
    let sig = hearth_notify::twilio::signature("twilio-token", CALLBACK, &form);
    let r = t
        .send(
            t.anonymous()
                .post(t.url("/api/v1/notifications/twilio/status"))
                .header("content-type", "application/x-www-form-urlencoded")
                .header("x-twilio-signature", sig)
                .body(
                    "ErrorCode=30003&MessageSid=".to_owned()
                        + row.provider_id.as_deref().unwrap()
                        + "&MessageStatus=undelivered",
                ),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    let (s, v) = json_call(&t, &t.client, Method::GET, "/api/v1/admin/notifications?status=bounced", None).await;
    assert_eq!(s, 200);
    let listed = &v["notifications"][0];
    assert_eq!((listed["id"].as_str(), listed["channel"].as_str()), (Some(row.id.as_str()), Some("sms")));
    assert_eq!(listed["last_error"], "Twilio error 30003");
    assert_eq!(listed["attempt_log"][0]["status"], "sent");
    assert!(listed.get("args").is_none() && listed.get("destination").is_none(), "no content or address: {listed}");
    let (s, v) = json_call(&t, &t.client, Method::GET, "/api/v1/admin/notifications?status=lost", None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")));
}

// ---------------------------------------------------------------- Web Push

/// A browser's push subscription keys.
struct Browser {
    secret: p256::SecretKey,
    auth: [u8; 16],
}

impl Browser {
    fn new() -> Browser {
        let rng = ring::rand::SystemRandom::new();
        let mut k = [0u8; 32];
        let secret = loop {
            ring::rand::SecureRandom::fill(&rng, &mut k).unwrap();
            if let Ok(s) = p256::SecretKey::from_slice(&k) {
                break s;
            }
        };
        let mut auth = [0u8; 16];
        ring::rand::SecureRandom::fill(&rng, &mut auth).unwrap();
        Browser { secret, auth }
    }

    fn subscription(&self, endpoint: &str) -> Value {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let public = self.secret.public_key().to_encoded_point(false);
        json!({"endpoint": endpoint, "expirationTime": null,
               "keys": {"p256dh": BASE64URL_NOPAD.encode(public.as_bytes()), "auth": BASE64URL_NOPAD.encode(&self.auth)}})
    }

    /// RFC 8291 decryption, as a user agent does it.
    fn decrypt(&self, body: &[u8]) -> Value {
        use p256::elliptic_curve::sec1::ToEncodedPoint;
        let hmac = |key: &[u8], parts: &[&[u8]]| {
            let key = ring::hmac::Key::new(ring::hmac::HMAC_SHA256, key);
            let mut ctx = ring::hmac::Context::with_key(&key);
            for p in parts {
                ctx.update(p);
            }
            ctx.sign().as_ref().to_vec()
        };
        let salt = &body[..16];
        assert_eq!(u32::from_be_bytes(body[16..20].try_into().unwrap()), 4096, "record size");
        assert_eq!(body[20], 65, "keyid is the sender's P-256 key");
        let sender = p256::PublicKey::from_sec1_bytes(&body[21..86]).unwrap();
        let shared = p256::ecdh::diffie_hellman(self.secret.to_nonzero_scalar(), sender.as_affine());
        let ua = self.secret.public_key().to_encoded_point(false);
        let shared: &[u8] = shared.raw_secret_bytes();
        let prk_key = hmac(&self.auth, &[shared]);
        let ikm = hmac(&prk_key, &[b"WebPush: info\0", ua.as_bytes(), &body[21..86], &[1]]);
        let prk = hmac(salt, &[&ikm]);
        let cek = hmac(&prk, &[b"Content-Encoding: aes128gcm\0", &[1]]);
        let nonce = hmac(&prk, &[b"Content-Encoding: nonce\0", &[1]]);
        let key =
            ring::aead::LessSafeKey::new(ring::aead::UnboundKey::new(&ring::aead::AES_128_GCM, &cek[..16]).unwrap());
        let mut data = body[86..].to_vec();
        let nonce = ring::aead::Nonce::assume_unique_for_key(nonce[..12].try_into().unwrap());
        let plain = key.open_in_place(nonce, ring::aead::Aad::empty(), &mut data).unwrap();
        assert_eq!(plain.last(), Some(&2), "the last record's delimiter");
        serde_json::from_slice(&plain[..plain.len() - 1]).unwrap()
    }
}

/// What a push service checks: a VAPID JWT signed by the key in `k=`, for its own origin.
fn check_vapid(seen: &Seen, origin: &str, public_key: &str, now: DateTime<Utc>) {
    let auth = seen.header("authorization");
    let (t, k) = auth.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
    assert_eq!(k, public_key);
    let (input, sig) = t.rsplit_once('.').unwrap();
    let key = ring::signature::UnparsedPublicKey::new(
        &ring::signature::ECDSA_P256_SHA256_FIXED,
        BASE64URL_NOPAD.decode(k.as_bytes()).unwrap(),
    );
    key.verify(input.as_bytes(), &BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap()).expect("VAPID signature");
    let header: Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(input.split('.').next().unwrap().as_bytes()).unwrap()).unwrap();
    assert_eq!(header["alg"], "ES256");
    let claims: Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(input.split('.').nth(1).unwrap().as_bytes()).unwrap()).unwrap();
    assert_eq!(claims["aud"], origin);
    let exp = claims["exp"].as_i64().unwrap();
    assert!(exp > now.timestamp() && exp <= now.timestamp() + 24 * 3600, "exp within 24 h: {claims}");
    assert!(
        claims["sub"].as_str().unwrap().starts_with("mailto:") || claims["sub"].as_str().unwrap().starts_with("https:")
    );
}

/// A push service: `/push/ok*` accept (201), `/push/gone410` and `/push/gone404` are gone,
/// `/push/flaky` answers 500, then stalls past the send timeout, then accepts, `/push/down`
/// always answers 500, `/push/hang` never answers its first request.
type Counts = Arc<Mutex<std::collections::HashMap<String, usize>>>;

async fn push_peer(
    State((log, counts)): State<(Log, Counts)>,
    Path(name): Path<String>,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    record(&log, format!("/push/{name}"), headers, body).await;
    let n = {
        let mut c = counts.lock().unwrap();
        let e = c.entry(name.clone()).or_insert(0);
        *e += 1;
        *e
    };
    let created = || (StatusCode::CREATED, [("location", format!("/msg/{name}/{n}"))]).into_response();
    match name.as_str() {
        "gone410" => StatusCode::GONE.into_response(),
        "gone404" => StatusCode::NOT_FOUND.into_response(),
        "down" => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "flaky" if n == 1 => StatusCode::INTERNAL_SERVER_ERROR.into_response(),
        "flaky" if n == 2 => {
            tokio::time::sleep(Duration::from_secs(3)).await;
            created()
        }
        "hang" if n == 1 => std::future::pending().await,
        _ => created(),
    }
}

async fn push_service() -> (String, Log) {
    let log: Log = Arc::default();
    let addr =
        serve(axum::Router::new().route("/push/{name}", post(push_peer)).with_state((log.clone(), Arc::default())))
            .await;
    (addr, log)
}

fn seen_at(log: &Log, path: &str) -> Vec<Seen> {
    log.lock().unwrap().iter().filter(|s| s.path == path).cloned().collect()
}

#[tokio::test]
async fn web_push_is_encrypted_and_vapid_signed_and_gone_subscriptions_are_deleted() {
    let (push, log) = push_service().await;
    let t = TestApp::spawn_with(|c| {
        fast(c);
        c.notify.allow_insecure_push_endpoints = true;
    })
    .await;
    let (me, client, _) = patient(&t, "push@example.org").await;
    let (ok, g410, g404) = (Browser::new(), Browser::new(), Browser::new());
    let mut ids = Vec::new();
    for (b, path) in [(&ok, "ok"), (&g410, "gone410"), (&g404, "gone404")] {
        let (s, v) = json_call(
            &t,
            &client,
            Method::POST,
            "/api/push/register",
            Some(b.subscription(&format!("{push}/push/{path}"))),
        )
        .await;
        assert_eq!(s, 201, "{v}");
        ids.push(v["id"].as_str().unwrap().to_owned());
    }
    // Registering again moves nothing and duplicates nothing.
    let (s, v) =
        json_call(&t, &client, Method::POST, "/api/push/register", Some(ok.subscription(&format!("{push}/push/ok"))))
            .await;
    assert_eq!((s, v["id"].as_str()), (201, Some(ids[0].as_str())));
    // Bad subscriptions are refused with a stable code.
    let mut bad_key = ok.subscription(&format!("{push}/push/ok"));
    bad_key["keys"]["p256dh"] = json!(BASE64URL_NOPAD.encode(&[4u8; 65]));
    let mut short_auth = ok.subscription(&format!("{push}/push/ok"));
    short_auth["keys"]["auth"] = json!("AAAA");
    for body in [
        bad_key,
        short_auth,
        ok.subscription("ftp://push.example/x"),
        json!({"endpoint": format!("{push}/push/ok")}),
        json!({"kind": "apns"}),
        json!([1]),
    ] {
        let (s, v) = json_call(&t, &client, Method::POST, "/api/push/register", Some(body.clone())).await;
        assert_eq!(s, 400, "{body}: {v}");
        assert!(matches!(v["error"]["code"].as_str(), Some("invalid_subscription" | "invalid_body")), "{v}");
    }
    assert_eq!(
        json_call(&t, &t.anonymous(), Method::POST, "/api/push/register", Some(ok.subscription("https://x.example/p")))
            .await
            .0,
        401
    );

    let now = t.clock.now();
    notify::send(
        &t.app.notifications,
        &notice("push-1", &me, Category::Medication, "medication-reminder", json!({"count": 2})),
    )
    .await
    .unwrap();
    let got = eventually("the push", || async { seen_at(&log, "/push/ok").into_iter().next() }).await;
    let public = t.get("/api/push/vapid-public-key").await.json()["publicKey"].as_str().unwrap().to_owned();
    check_vapid(&got, &push, &public, now);
    assert_eq!(got.header("content-encoding"), "aes128gcm");
    assert_eq!(got.header("urgency"), "normal");
    assert!(got.header("ttl").parse::<u32>().unwrap() > 0);
    let topic = got.header("topic");
    assert!(!topic.is_empty() && topic.len() <= 32 && topic.chars().all(|c| c.is_ascii_alphanumeric()), "{topic}");
    let payload = ok.decrypt(&got.body);
    assert_eq!(payload["title"], "Medication reminder");
    assert_eq!(payload["body"], "You have 2 doses to take now.");
    assert_eq!(payload["category"], "medication");
    // 410 and 404 from the push service delete those subscriptions; the good one stays.
    eventually("gone subscriptions deleted", || async {
        let a = sql::subscription(&*t.app.db, &ids[1]).await.unwrap();
        let b = sql::subscription(&*t.app.db, &ids[2]).await.unwrap();
        (a.is_none() && b.is_none()).then_some(())
    })
    .await;
    assert!(sql::subscription(&*t.app.db, &ids[0]).await.unwrap().is_some());
    let rows = sql::by_key(&*t.app.db, "push-1").await.unwrap();
    let push_rows: Vec<_> = rows.iter().filter(|r| r.channel == "webpush").collect();
    assert_eq!(push_rows.len(), 3);
    let sent = push_rows.iter().find(|r| r.status == "sent").unwrap();
    assert_eq!(sent.provider_id.as_deref(), Some("/msg/ok/1"));
    let failed: Vec<_> = sql::list_by_status(&*t.app.db, Some("failed"), 10).await.unwrap();
    assert_eq!(failed.len(), 2, "{failed:?}");
    assert!(failed.iter().all(|r| r.last_error.as_deref().unwrap().contains("subscription gone")));
    // The next notification goes only to the subscription left.
    notify::send(&t.app.notifications, &notice("push-2", &me, Category::Security, "emergency-alert", json!({})))
        .await
        .unwrap();
    let second = eventually("the second push", || async { seen_at(&log, "/push/ok").get(1).cloned() }).await;
    assert_eq!(second.header("urgency"), "high");
    assert_eq!(sql::by_key(&*t.app.db, "push-2").await.unwrap().iter().filter(|r| r.channel == "webpush").count(), 1);
    assert_eq!(seen_at(&log, "/push/gone410").len(), 1);
}

// ---------------------------------------------------------------- FCM HTTP v1

async fn fcm_peer(
    State(log): State<Log>,
    uri: axum::http::Uri,
    headers: HeaderMap,
    body: axum::body::Bytes,
) -> axum::response::Response {
    let path = uri.path().to_owned();
    record(&log, path.clone(), headers.clone(), body.clone()).await;
    if path == "/token" {
        return axum::Json(json!({"access_token": "ya29.peer-token", "expires_in": 3599, "token_type": "Bearer"}))
            .into_response();
    }
    if headers.get("authorization").and_then(|v| v.to_str().ok()) != Some("Bearer ya29.peer-token") {
        return (StatusCode::UNAUTHORIZED, axum::Json(json!({"error": {"status": "UNAUTHENTICATED"}}))).into_response();
    }
    let msg: Value = serde_json::from_slice(&body).unwrap();
    if msg["message"]["token"] == "gone-device" {
        return (StatusCode::NOT_FOUND, axum::Json(json!({"error": {"code": 404, "status": "NOT_FOUND",
            "details": [{"@type": "type.googleapis.com/google.firebase.fcm.v1.FcmError", "errorCode": "UNREGISTERED"}]}})))
            .into_response();
    }
    axum::Json(json!({"name": "projects/hearth-test/messages/0:1700000000000000%31bd1c9631bd1c96"})).into_response()
}

#[tokio::test]
async fn fcm_gets_a_service_account_jwt_and_http_v1_messages() {
    let log: Log = Arc::default();
    let peer = serve(axum::Router::new().fallback(fcm_peer).with_state(log.clone())).await;
    // A throwaway RSA key made for this test (openssl genpkey); it is no real service account's.
    let pem = include_str!("fixtures/fcm-test-only-key.pem");
    let dir = tempfile::tempdir().unwrap();
    let key_file = dir.path().join("service-account.json");
    let account_json = json!({"type": "service_account", "project_id": "hearth-test", "private_key_id": "k1",
        "private_key": pem, "client_email": "notify@hearth-test.iam.gserviceaccount.com",
        "client_id": "1", "token_uri": format!("{peer}/token")});
    std::fs::write(&key_file, account_json.to_string()).unwrap();
    let (kf, base) = (key_file.clone(), peer.clone());
    let t = TestApp::spawn_with(move |c| {
        fast(c);
        c.notify.fcm = Some(hearth_server::config::FcmConfig { service_account_file: kf, api_base: base });
    })
    .await;
    let (me, client, _) = patient(&t, "fcm@example.org").await;
    for token in ["device-1", "gone-device"] {
        let (s, v) =
            json_call(&t, &client, Method::POST, "/api/push/register", Some(json!({"kind": "fcm", "token": token})))
                .await;
        assert_eq!(s, 201, "{v}");
    }
    let (s, _) =
        json_call(&t, &client, Method::POST, "/api/push/register", Some(json!({"kind": "fcm", "token": "a b"}))).await;
    assert_eq!(s, 400);
    let now = t.clock.now();
    notify::send(&t.app.notifications, &notice("fcm-1", &me, Category::Emergency, "emergency-alert", json!({})))
        .await
        .unwrap();
    let sends = eventually("two FCM sends", || async {
        Some(seen_at(&log, "/v1/projects/hearth-test/messages:send")).filter(|s| s.len() == 2)
    })
    .await;
    // One token exchange, cached for both sends; the assertion is RS256 by the service account.
    let tokens = seen_at(&log, "/token");
    assert_eq!(tokens.len(), 1);
    let form = url_form(&tokens[0].body);
    let get = |k: &str| form.iter().find(|(a, _)| a == k).map(|(_, v)| v.clone()).unwrap();
    assert_eq!(get("grant_type"), "urn:ietf:params:oauth:grant-type:jwt-bearer");
    let jwt = get("assertion");
    let (input, sig) = jwt.rsplit_once('.').unwrap();
    let der = hearth_notify::fcm::pem_der(pem).unwrap();
    let pair = ring::signature::RsaKeyPair::from_pkcs8(&der).unwrap();
    let public = ring::signature::UnparsedPublicKey::new(
        &ring::signature::RSA_PKCS1_2048_8192_SHA256,
        ring::signature::KeyPair::public_key(&pair).as_ref().to_vec(),
    );
    public.verify(input.as_bytes(), &BASE64URL_NOPAD.decode(sig.as_bytes()).unwrap()).expect("RS256 signature");
    let claims: Value =
        serde_json::from_slice(&BASE64URL_NOPAD.decode(input.split('.').nth(1).unwrap().as_bytes()).unwrap()).unwrap();
    assert_eq!(claims["iss"], "notify@hearth-test.iam.gserviceaccount.com");
    assert_eq!(claims["aud"], format!("{peer}/token"));
    assert_eq!(claims["scope"], "https://www.googleapis.com/auth/firebase.messaging");
    assert_eq!(claims["iat"], now.timestamp());
    assert_eq!(claims["exp"], now.timestamp() + 3600);
    let good = sends
        .iter()
        .map(|s| serde_json::from_slice::<Value>(&s.body).unwrap())
        .find(|m| m["message"]["token"] == "device-1")
        .unwrap();
    assert_eq!(good["message"]["notification"]["title"], "Urgent: please open Hearth");
    assert_eq!(good["message"]["android"]["priority"], "high");
    assert_eq!(good["message"]["apns"]["headers"]["apns-priority"], "10");
    let rows = sql::by_key(&*t.app.db, "fcm-1").await.unwrap();
    let rows: Vec<_> = rows.into_iter().filter(|r| r.channel == "fcm").collect();
    eventually("both FCM rows final", || async {
        let rows = sql::by_key(&*t.app.db, "fcm-1").await.unwrap();
        let fcm: Vec<_> = rows.into_iter().filter(|r| r.channel == "fcm").collect();
        (fcm.iter().any(|r| r.status == "sent") && fcm.iter().any(|r| r.status == "failed")).then_some(fcm)
    })
    .await;
    assert_eq!(rows.len(), 2);
    // The unregistered token was deleted.
    let left = sql::subscriptions_of(&*t.app.db, &me).await.unwrap();
    assert_eq!(left.iter().map(|s| s.endpoint.as_str()).collect::<Vec<_>>(), ["device-1"]);
}

// ---------------------------------------------------------------- retries, a dropped worker

#[tokio::test]
async fn retries_back_off_after_500_and_timeouts_then_give_up() {
    let (push, log) = push_service().await;
    let t = TestApp::spawn_with(|c| {
        fast(c);
        c.notify.allow_insecure_push_endpoints = true;
        c.notify.send_timeout_ms = 300;
        c.notify.lease_secs = 5;
        c.notify.retry_base_secs = 60;
        c.notify.max_attempts = 3;
    })
    .await;
    let (flaky, c1, _) = patient(&t, "flaky@example.org").await;
    let (down, c2, _) = patient(&t, "down@example.org").await;
    let b = Browser::new();
    assert_eq!(
        json_call(&t, &c1, Method::POST, "/api/push/register", Some(b.subscription(&format!("{push}/push/flaky"))))
            .await
            .0,
        201
    );
    assert_eq!(
        json_call(&t, &c2, Method::POST, "/api/push/register", Some(b.subscription(&format!("{push}/push/down"))))
            .await
            .0,
        201
    );
    notify::send(
        &t.app.notifications,
        &notice(
            "r-flaky",
            &flaky,
            Category::Appointment,
            "appointment-reminder",
            json!({"when": "2026-03-01T04:30:00Z"}),
        ),
    )
    .await
    .unwrap();
    notify::send(
        &t.app.notifications,
        &notice(
            "r-down",
            &down,
            Category::Appointment,
            "appointment-reminder",
            json!({"when": "2026-03-01T04:30:00Z"}),
        ),
    )
    .await
    .unwrap();

    // Attempt 1: HTTP 500, back in the queue 30 to 60 s later (base 60 s, equal jitter).
    let start = t.clock.now();
    let r = eventually("a retry after 500", || async {
        row_on(&t, "r-flaky", ChannelKind::WebPush).await.filter(|r| r.status == "queued" && r.attempts == 1)
    })
    .await;
    assert_eq!(r.last_error.as_deref(), Some("HTTP 500"));
    let wait = r.not_before - start.timestamp_millis();
    assert!((30_000..=60_000).contains(&wait), "{wait} ms");
    // Not due yet: nothing happens while the clock stands still.
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(seen_at(&log, "/push/flaky").len(), 1);

    // Attempt 2: the peer stalls past the 300 ms send timeout; the backoff doubles.
    t.clock.set(start + TimeDelta::seconds(61));
    t.app.notify.wake();
    let r = eventually("a retry after a timeout", || async {
        row_on(&t, "r-flaky", ChannelKind::WebPush).await.filter(|r| r.status == "queued" && r.attempts == 2)
    })
    .await;
    assert_eq!(r.last_error.as_deref(), Some("timed out"));
    let wait = r.not_before - (start + TimeDelta::seconds(61)).timestamp_millis();
    assert!((60_000..=120_000).contains(&wait), "{wait} ms");

    // Attempt 3 is accepted; the other row gives up after its third 500.
    t.clock.set(start + TimeDelta::seconds(200));
    t.app.notify.wake();
    let r = wait_status(&t, "r-flaky", ChannelKind::WebPush, "sent").await;
    assert_eq!(r.attempts, 3);
    let d = wait_status(&t, "r-down", ChannelKind::WebPush, "failed").await;
    assert_eq!(d.last_error.as_deref(), Some("gave up after 3 attempts: HTTP 500"));
    assert_eq!(seen_at(&log, "/push/flaky").len(), 3);
    assert_eq!(seen_at(&log, "/push/down").len(), 3);
    let log_rows = sql::attempts(&*t.app.db, &r.id).await.unwrap();
    let statuses: Vec<&str> = log_rows.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(statuses, ["retry", "retry", "sent"]);
    let (s, v) = json_call(&t, &t.client, Method::GET, "/api/v1/admin/notifications?status=failed", None).await;
    assert_eq!(s, 200);
    assert!(
        v["notifications"]
            .as_array()
            .unwrap()
            .iter()
            .any(|n| n["id"] == d.id.as_str() && n["attempt_log"].as_array().unwrap().len() == 3)
    );
    let metrics = t.get("/metrics").await.text;
    assert!(metrics.contains("hearth_notifications_total{channel=\"webpush\",status=\"retry\"}"), "{metrics}");
    assert!(metrics.contains("hearth_notifications_total{channel=\"webpush\",status=\"failed\"}"));
}

/// The metrics endpoint exports the outbox backlog (rows due and not taken, and how long the
/// oldest has waited) and whether the audit trail is failing closed, so an alert can watch them.
#[tokio::test]
async fn metrics_show_the_outbox_backlog_and_the_audit_writers_state() {
    let t = TestApp::spawn_with(|c| {
        fast(c);
        c.notify.worker = false;
    })
    .await;
    let gauge = |text: &str, name: &str| -> f64 {
        let line =
            text.lines().find(|l| l.starts_with(&format!("{name} "))).unwrap_or_else(|| panic!("{name}: {text}"));
        line.rsplit(' ').next().unwrap().parse().unwrap()
    };
    let m = t.get("/metrics").await.text;
    assert_eq!(gauge(&m, "hearth_outbox_due"), 0.0);
    assert_eq!(gauge(&m, "hearth_outbox_oldest_due_seconds"), 0.0);
    assert_eq!(gauge(&m, "hearth_audit_failing"), 0.0);

    let (me, _, _) = patient(&t, "backlog@example.org").await;
    let start = t.clock.now();
    notify::send(
        &t.app.notifications,
        &notice("backlog-1", &me, Category::Results, "results-available", json!({"count": 1})),
    )
    .await
    .unwrap();
    t.clock.set(start + TimeDelta::seconds(90));
    let m = t.get("/metrics").await.text;
    // One row per channel the patient can be reached on (e-mail; in-app is written at once).
    assert!(gauge(&m, "hearth_outbox_due") >= 1.0, "{m}");
    let waited = gauge(&m, "hearth_outbox_oldest_due_seconds");
    assert!((90.0..91.0).contains(&waited), "{waited}");
}

/// A worker task dropped while its provider request is in flight (the task is aborted, its
/// connection closes: what a crash looks like to the database and the provider, though not a
/// separate OS process). Its row stays claimed until the lease expires, is then claimed by
/// another worker and sent once more with the same Topic (the provider-side token that makes a
/// push service keep one message); the outbox records one `sent`, and the dead attempt's late
/// result would be refused.
#[tokio::test]
async fn a_worker_dropped_mid_send_neither_loses_nor_duplicates_the_notification() {
    let (push, log) = push_service().await;
    let t = TestApp::spawn_with(|c| {
        fast(c);
        c.notify.worker = false;
        c.notify.allow_insecure_push_endpoints = true;
        c.notify.lease_secs = 60;
    })
    .await;
    let (me, client, _) = patient(&t, "crash@example.org").await;
    let b = Browser::new();
    assert_eq!(
        json_call(&t, &client, Method::POST, "/api/push/register", Some(b.subscription(&format!("{push}/push/hang"))))
            .await
            .0,
        201
    );
    notify::send(
        &t.app.notifications,
        &notice("crash-1", &me, Category::Results, "results-available", json!({"count": 1})),
    )
    .await
    .unwrap();
    let start = t.clock.now();
    let a = tokio::spawn(hearth_server::notify::worker::run(t.app.notifications.clone(), "worker-a".into()));
    eventually("worker A's request at the push service", || async { seen_at(&log, "/push/hang").into_iter().next() })
        .await;
    a.abort();
    let _ = a.await;
    let row = row_on(&t, "crash-1", ChannelKind::WebPush).await.unwrap();
    assert_eq!((row.status.as_str(), row.attempts, row.lease_owner.as_deref()), ("sending", 1, Some("worker-a")));

    // Worker B does not take it while the lease runs…
    let b_task = tokio::spawn(hearth_server::notify::worker::run(t.app.notifications.clone(), "worker-b".into()));
    tokio::time::sleep(Duration::from_millis(400)).await;
    assert_eq!(row_on(&t, "crash-1", ChannelKind::WebPush).await.unwrap().status, "sending");
    assert_eq!(seen_at(&log, "/push/hang").len(), 1);
    // …and does once it expired.
    t.clock.set(start + TimeDelta::seconds(61));
    t.app.notify.wake();
    let row = wait_status(&t, "crash-1", ChannelKind::WebPush, "sent").await;
    b_task.abort();
    assert_eq!(row.attempts, 2);
    let seen = seen_at(&log, "/push/hang");
    assert_eq!(seen.len(), 2, "sent again after the lease, not more");
    assert_eq!(seen[0].header("topic"), seen[1].header("topic"));
    assert_eq!(b.decrypt(&seen[1].body)["id"], row.id.as_str());
    let attempts = sql::attempts(&*t.app.db, &row.id).await.unwrap();
    let summary: Vec<(&str, &str)> = attempts.iter().map(|a| (a.worker.as_str(), a.status.as_str())).collect();
    assert_eq!(summary, [("worker-a", "abandoned"), ("worker-b", "sent")]);
    assert_eq!(attempts[0].error.as_deref(), Some("lease expired"));
    // Worker A's result, had it come back late, is refused.
    let late = sql::Outcome::Final { status: "failed", provider: None, provider_id: None, error: Some("late".into()) };
    assert!(!sql::finish(&*t.app.db, &row.id, "worker-a", 1, &late, t.clock.now().timestamp_millis()).await.unwrap());
    assert_eq!(sql::get(&*t.app.db, &row.id).await.unwrap().unwrap().status, "sent");
    // The in-app copy exists once, whoever delivered it.
    let (s, v) = json_call(&t, &client, Method::GET, "/api/v1/notifications", None).await;
    assert_eq!((s, v["notifications"].as_array().unwrap().len()), (200, 1), "{v}");
}

// ---------------------------------------------------------------- quiet hours

#[tokio::test]
async fn quiet_hours_follow_each_users_time_zone_and_critical_messages_pass() {
    let t = TestApp::spawn_with(fast).await;
    // 17:00 UTC: 22:30 in Kolkata (quiet), noon in New York.
    t.clock.set(at("2026-01-15T17:00:00Z"));
    let (delhi, c1, _) = patient(&t, "delhi@example.org").await;
    let (ny, c2, _) = patient(&t, "ny@example.org").await;
    for (c, tz, lang) in [(&c1, "Asia/Kolkata", "hi"), (&c2, "America/New_York", "en")] {
        let body = json!({"time_zone": tz, "language": lang, "quiet_hours": {"start": "22:00", "end": "07:00"}});
        let (s, v) = json_call(&t, c, Method::PUT, "/api/v1/notifications/preferences", Some(body)).await;
        assert_eq!(s, 200, "{v}");
        assert_eq!(v["quiet_hours"], json!({"start": "22:00", "end": "07:00"}));
    }
    for id in [&delhi, &ny] {
        notify::send(
            &t.app.notifications,
            &notice(&format!("med-{id}"), id, Category::Medication, "medication-reminder", json!({"count": 1})),
        )
        .await
        .unwrap();
    }
    notify::send(&t.app.notifications, &notice("alert", &delhi, Category::Emergency, "emergency-alert", json!({})))
        .await
        .unwrap();
    // New York's reminder and Delhi's emergency alert go now; Delhi's reminder waits.
    wait_status(&t, &format!("med-{ny}"), ChannelKind::Email, "sent").await;
    wait_status(&t, "alert", ChannelKind::Email, "sent").await;
    let waiting = eventually("Delhi's reminder deferred", || async {
        row_on(&t, &format!("med-{delhi}"), ChannelKind::Email)
            .await
            .filter(|r| r.status == "queued" && r.not_before > at("2026-01-15T17:00:00Z").timestamp_millis())
    })
    .await;
    assert_eq!(waiting.not_before, at("2026-01-16T01:30:00Z").timestamp_millis(), "07:00 in Kolkata");
    assert_eq!(waiting.attempts, 0, "a deferral is not an attempt");
    let mails = t.outbox.messages();
    let to_delhi: Vec<_> = mails.iter().filter(|m| m.to == "delhi@example.org").collect();
    assert_eq!(to_delhi.len(), 1);
    assert_eq!(to_delhi[0].category, Category::Emergency);
    assert_eq!(to_delhi[0].subject, "ज़रूरी: कृपया Hearth खोलें");
    // Past 07:00 in Kolkata it goes.
    t.clock.set(at("2026-01-16T01:31:00Z"));
    t.app.notify.wake();
    wait_status(&t, &format!("med-{delhi}"), ChannelKind::Email, "sent").await;
    let m = t.outbox.messages().into_iter().rfind(|m| m.to == "delhi@example.org").unwrap();
    assert_eq!(m.text, "अभी आपको 1 खुराक लेनी है।");
}

// ---------------------------------------------------------------- in-app and WebSocket

async fn next_frame<S, E>(ws: &mut S) -> Value
where
    S: futures_util::Stream<Item = Result<tokio_tungstenite::tungstenite::Message, E>> + Unpin,
    E: std::fmt::Debug,
{
    use futures_util::StreamExt;
    let frame = tokio::time::timeout(Duration::from_secs(10), ws.next()).await.unwrap().unwrap().unwrap();
    serde_json::from_str::<Value>(frame.to_text().unwrap()).unwrap()
}

#[tokio::test]
async fn in_app_list_is_unread_first_mark_read_works_and_the_websocket_delivers_live() {
    use tokio_tungstenite::tungstenite::client::IntoClientRequest;

    let t = TestApp::spawn_with(fast).await;
    let (me, client, token) = patient(&t, "inbox@example.org").await;
    let (_, other, _) = patient(&t, "other@example.org").await;
    notify::send(
        &t.app.notifications,
        &notice("in-1", &me, Category::Results, "results-available", json!({"count": 3})),
    )
    .await
    .unwrap();
    wait_status(&t, "in-1", ChannelKind::InApp, "delivered").await;

    let mut req =
        format!("{}/api/v1/notifications/ws", t.addr.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("authorization", format!("Bearer {token}").parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req).await.unwrap();
    let first = next_frame(&mut ws).await;
    assert_eq!(first["type"], "notification");
    assert_eq!(first["notification"]["body"], "3 new results are ready in Hearth.");
    notify::send(
        &t.app.notifications,
        &notice("in-2", &me, Category::Appointment, "appointment-reminder", json!({"when": "2026-03-01T04:30:00Z"})),
    )
    .await
    .unwrap();
    let live = next_frame(&mut ws).await;
    assert_eq!(live["notification"]["title"], "Appointment reminder");
    let (first_id, second_id) = (
        first["notification"]["id"].as_str().unwrap().to_owned(),
        live["notification"]["id"].as_str().unwrap().to_owned(),
    );
    // A browser offers the token as a subprotocol instead of a header.
    let mut req =
        format!("{}/api/v1/notifications/ws", t.addr.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", format!("hearth.bearer, {token}").parse().unwrap());
    let (mut browser, resp) = tokio_tungstenite::connect_async(req).await.unwrap();
    assert_eq!(resp.headers()["sec-websocket-protocol"], "hearth.bearer");
    let mut got = [next_frame(&mut browser).await, next_frame(&mut browser).await];
    got.sort_by_key(|f| f["notification"]["id"].as_str().unwrap().to_owned());
    assert_eq!(
        got.iter().map(|f| f["notification"]["id"].as_str().unwrap()).collect::<Vec<_>>(),
        [first_id.as_str(), second_id.as_str()]
    );
    let mut req =
        format!("{}/api/v1/notifications/ws", t.addr.replace("http://", "ws://")).into_client_request().unwrap();
    req.headers_mut().insert("sec-websocket-protocol", "hearth.bearer, not-a-token".parse().unwrap());
    assert!(tokio_tungstenite::connect_async(req).await.is_err(), "a bad token gets no socket");
    // Without a token there is no socket.
    assert_eq!(t.send(t.anonymous().get(t.url("/api/v1/notifications/ws"))).await.status, 401);

    let (s, v) = json_call(&t, &client, Method::GET, "/api/v1/notifications", None).await;
    assert_eq!((s, v["unread"].as_u64()), (200, Some(2)));
    assert_eq!(v["notifications"][0]["id"], second_id.as_str(), "newest first");
    assert_eq!(
        json_call(&t, &client, Method::POST, &format!("/api/v1/notifications/{second_id}/read"), None).await.0,
        204
    );
    assert_eq!(
        json_call(&t, &client, Method::POST, &format!("/api/v1/notifications/{second_id}/read"), None).await.0,
        204
    );
    let (_, v) = json_call(&t, &client, Method::GET, "/api/v1/notifications", None).await;
    let order: Vec<(&str, bool)> = v["notifications"]
        .as_array()
        .unwrap()
        .iter()
        .map(|n| (n["id"].as_str().unwrap(), n["read"].as_bool().unwrap()))
        .collect();
    assert_eq!(order, [(first_id.as_str(), false), (second_id.as_str(), true)], "unread first");
    assert_eq!(v["unread"], 1);
    let (_, v) = json_call(&t, &client, Method::GET, "/api/v1/notifications?unread=true", None).await;
    assert_eq!(v["notifications"].as_array().unwrap().len(), 1);
    // Someone else's notification does not exist for them; bad queries are 400s.
    let (s, v) = json_call(&t, &other, Method::POST, &format!("/api/v1/notifications/{first_id}/read"), None).await;
    assert_eq!((s, v["error"]["code"].as_str()), (404, Some("not_found")));
    assert_eq!(json_call(&t, &other, Method::GET, "/api/v1/notifications", None).await.1["notifications"], json!([]));
    for q in ["limit=0", "limit=x", "colour=red", "unread=true&unread=false"] {
        let (s, v) = json_call(&t, &client, Method::GET, &format!("/api/v1/notifications?{q}"), None).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_query")), "{q}");
    }
}

// ---------------------------------------------------------------- preferences and the outbox API

#[tokio::test]
async fn preferences_are_validated_and_honoured_and_the_outbox_is_transactional_idempotent_and_cancellable() {
    let t = TestApp::spawn_with(fast).await;
    let (me, client, _) = patient(&t, "prefs@example.org").await;
    let (s, v) = json_call(&t, &client, Method::GET, "/api/v1/notifications/preferences", None).await;
    assert_eq!(s, 200);
    assert_eq!(
        (v["time_zone"].as_str(), v["language"].as_str(), &v["quiet_hours"]),
        (Some("UTC"), Some("en"), &Value::Null)
    );
    assert_eq!(v["channels"]["results"]["sms"], false, "SMS for results is off by default");
    assert_eq!(v["channels"]["appointment"]["email"], true);
    assert_eq!(v["critical"], json!(["security", "emergency"]));
    for body in [
        json!({"time_zone": "Mars/Olympus"}),
        json!({"language": "fr"}),
        json!({"quiet_hours": {"start": "25:00", "end": "07:00"}}),
        json!({"channels": {"gossip": {"email": true}}}),
        json!({"channels": {"appointment": {"pigeon": true}}}),
        json!({"channels": {"appointment": {"email": "yes"}}}),
        json!({"channels": {"security": {"in_app": false}}}),
    ] {
        let (s, v) = json_call(&t, &client, Method::PUT, "/api/v1/notifications/preferences", Some(body.clone())).await;
        assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_preferences")), "{body}: {v}");
    }
    let (s, v) =
        json_call(&t, &client, Method::PUT, "/api/v1/notifications/preferences", Some(json!({"colour": 1}))).await;
    assert_eq!((s, v["error"]["code"].as_str()), (400, Some("invalid_body")));
    let (s, v) = json_call(
        &t,
        &client,
        Method::PUT,
        "/api/v1/notifications/preferences",
        Some(json!({"channels": {"appointment": {"email": false}}})),
    )
    .await;
    assert_eq!((s, &v["channels"]["appointment"]["email"]), (200, &json!(false)));
    let appt = |key: &str| {
        notice(key, &me, Category::Appointment, "appointment-reminder", json!({"when": "2026-03-01T04:30:00Z"}))
    };
    notify::send(&t.app.notifications, &appt("p-1")).await.unwrap();
    let channels: Vec<String> = sql::by_key(&*t.app.db, "p-1").await.unwrap().into_iter().map(|r| r.channel).collect();
    assert_eq!(channels, ["in_app"], "e-mail turned off; no phone, no push subscription");

    // Transactional: rolled back with its cause, committed with it.
    let tx = sql::TxDb::begin(&*t.app.db).await.unwrap();
    assert_eq!(notify::enqueue(&t.app.notify, &tx, &appt("tx-1"), t.clock.now()).await.unwrap(), 1);
    drop(tx);
    assert!(sql::by_key(&*t.app.db, "tx-1").await.unwrap().is_empty());
    let tx = sql::TxDb::begin(&*t.app.db).await.unwrap();
    notify::enqueue(&t.app.notify, &tx, &appt("tx-1"), t.clock.now()).await.unwrap();
    tx.commit().await.unwrap();
    assert_eq!(sql::by_key(&*t.app.db, "tx-1").await.unwrap().len(), 1);
    // Idempotent: the same key adds nothing.
    assert_eq!(notify::send(&t.app.notifications, &appt("tx-1")).await.unwrap(), 0);
    // Scheduled and cancelled: a reminder for tomorrow, cancelled today, never goes.
    let mut later = appt("sched-1");
    later.not_before = Some(t.clock.now() + TimeDelta::days(1));
    assert_eq!(notify::send(&t.app.notifications, &later).await.unwrap(), 1);
    tokio::time::sleep(Duration::from_millis(300)).await;
    assert_eq!(row_on(&t, "sched-1", ChannelKind::InApp).await.unwrap().status, "queued");
    assert_eq!(notify::cancel(&*t.app.db, "sched-1", t.clock.now()).await.unwrap(), 1);
    t.clock.set(t.clock.now() + TimeDelta::days(2));
    t.app.notify.wake();
    tokio::time::sleep(Duration::from_millis(300)).await;
    let row = row_on(&t, "sched-1", ChannelKind::InApp).await.unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("cancelled", 0));
    // Unknown templates and accounts are refused.
    let mut bad = appt("bad-1");
    bad.template = "nope".into();
    assert!(matches!(notify::send(&t.app.notifications, &bad).await, Err(notify::EnqueueError::Template(_))));
    let mut bad = appt("bad-2");
    bad.account_id = "no-such-account".into();
    assert!(matches!(notify::send(&t.app.notifications, &bad).await, Err(notify::EnqueueError::Invalid(_))));
}

/// The same with a real second process: `hearth worker` (the binary, on the same database) is
/// killed with SIGKILL while its request is at the push service. The row stays claimed by the
/// dead process until its lease ends, then another worker sends it; the dead process's other
/// rows (in-app, e-mail into its local file outbox) were completed before it died or are
/// completed after.
#[tokio::test]
async fn a_killed_hearth_worker_process_does_not_lose_the_notification() {
    let (push, log) = push_service().await;
    let t = TestApp::spawn_with(|c| {
        fast(c);
        c.notify.worker = false;
        c.notify.allow_insecure_push_endpoints = true;
        c.notify.lease_secs = 6;
        c.notify.send_timeout_ms = 5000;
    })
    .await;
    let (me, client, _) = patient(&t, "killed@example.org").await;
    let b = Browser::new();
    let sub = b.subscription(&format!("{push}/push/hang"));
    assert_eq!(json_call(&t, &client, Method::POST, "/api/push/register", Some(sub)).await.0, 201);
    notify::send(
        &t.app.notifications,
        &notice("kill-1", &me, Category::Results, "results-available", json!({"count": 2})),
    )
    .await
    .unwrap();

    let dir = tempfile::tempdir().unwrap();
    let database_url = match &t.app.config.database_url {
        Some(url) => url.expose().clone(),
        None => format!("sqlite://{}", t.app.config.data_dir.join("hearth.db").display()),
    };
    let config = dir.path().join("worker.toml");
    let toml = format!(
        "data_dir = {:?}\ndatabase_url = {database_url:?}\n[notify]\npoll_interval_ms = 50\nlease_secs = 6\n\
         send_timeout_ms = 5000\nallow_insecure_push_endpoints = true\n",
        dir.path().join("data").display().to_string()
    );
    std::fs::write(&config, toml).unwrap();
    let mut worker = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"))
        .arg("--config")
        .arg(&config)
        .arg("worker")
        .env_clear()
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .unwrap();
    let pid = worker.id().unwrap();
    eventually("the worker process's request at the push service", || async {
        seen_at(&log, "/push/hang").into_iter().next()
    })
    .await;
    // The process had no e-mail provider: its local outbox has the message (offline default).
    let email = wait_status(&t, "kill-1", ChannelKind::Email, "sent").await;
    assert_eq!(email.provider.as_deref(), Some("file"));
    worker.kill().await.unwrap();
    let row = row_on(&t, "kill-1", ChannelKind::WebPush).await.unwrap();
    assert_eq!((row.status.as_str(), row.attempts), ("sending", 1));
    assert!(row.lease_owner.as_deref().unwrap().starts_with(&format!("{pid}-")), "{row:?}");
    let eml = dir.path().join("data/outbox/email").join(email.provider_id.as_deref().unwrap());
    let text = std::fs::read_to_string(&eml).unwrap();
    assert!(text.contains("To: killed@example.org") && text.contains("2 new results are ready in Hearth."), "{text}");

    // After the lease (real time: the process used the system clock), another worker sends it.
    tokio::time::sleep(Duration::from_millis(6100)).await;
    t.clock.set(Utc::now());
    let next = tokio::spawn(hearth_server::notify::worker::run(t.app.notifications.clone(), "worker-next".into()));
    let row = wait_status(&t, "kill-1", ChannelKind::WebPush, "sent").await;
    next.abort();
    let attempts = sql::attempts(&*t.app.db, &row.id).await.unwrap();
    let summary: Vec<&str> = attempts.iter().map(|a| a.status.as_str()).collect();
    assert_eq!(summary, ["abandoned", "sent"]);
    assert_eq!(attempts[1].worker, "worker-next");
    assert_eq!(seen_at(&log, "/push/hang").len(), 2);
    let (_, v) = json_call(&t, &client, Method::GET, "/api/v1/notifications", None).await;
    assert_eq!(v["notifications"].as_array().unwrap().len(), 1, "{v}");
}
