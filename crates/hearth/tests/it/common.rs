//! `TestApp`: the real server on a random port against a fresh database in a temp directory.

use std::sync::Arc;
use std::sync::atomic::{AtomicI64, Ordering};

use chrono::{DateTime, Utc};
use hearth_server::{App, Clock, Config};
use reqwest::header::HeaderMap;
use serde_json::Value;
use tempfile::TempDir;
use tokio::sync::oneshot;

/// A clock tests can pin and move. Starts at the real current time.
pub struct TestClock(AtomicI64);

impl TestClock {
    /// A clock at the real current time.
    pub fn now() -> TestClock {
        TestClock(AtomicI64::new(Utc::now().timestamp_millis()))
    }

    pub fn set(&self, t: DateTime<Utc>) {
        self.0.store(t.timestamp_millis(), Ordering::SeqCst);
    }
}

impl Clock for TestClock {
    fn now(&self) -> DateTime<Utc> {
        DateTime::from_timestamp_millis(self.0.load(Ordering::SeqCst)).unwrap()
    }
}

pub struct TestApp {
    /// `http://127.0.0.1:PORT`
    pub addr: String,
    /// Sends the bearer token of the admin account every TestApp starts with (not expiring, so
    /// tests may move the clock); other identities log in through the API.
    pub client: reqwest::Client,
    /// That admin's token itself (for the `hearth` binary's `--token`).
    pub admin_token: String,
    pub app: Arc<App>,
    pub clock: Arc<TestClock>,
    /// Every e-mail and SMS the notification worker sent (login codes included): the app's
    /// e-mail and SMS channels deliver to this memory.
    pub outbox: Arc<hearth_notify::MemoryChannel>,
    shutdown: Option<oneshot::Sender<()>>,
    _dir: TempDir,
}

pub struct Resp {
    pub status: u16,
    pub headers: HeaderMap,
    pub text: String,
}

impl Resp {
    pub fn json(&self) -> Value {
        serde_json::from_str(&self.text).unwrap_or_else(|e| panic!("not JSON ({e}): {}", self.text))
    }
    pub fn header(&self, name: &str) -> Option<String> {
        self.headers.get(name).map(|v| v.to_str().unwrap().to_owned())
    }
    /// Asserts the body is an OperationOutcome and returns its first issue.
    pub fn outcome_issue(&self) -> Value {
        assert!(
            self.header("content-type").unwrap_or_default().starts_with("application/fhir+json"),
            "content-type {:?} for {}",
            self.header("content-type"),
            self.text
        );
        let v = self.json();
        assert_eq!(v["resourceType"], "OperationOutcome", "{}", self.text);
        assert_valid_r4(&v);
        v["issue"][0].clone()
    }
}

impl TestApp {
    pub async fn spawn() -> TestApp {
        TestApp::spawn_with(|_| {}).await
    }

    pub async fn spawn_with(configure: impl FnOnce(&mut Config)) -> TestApp {
        TestApp::spawn_channels(configure, true).await
    }

    /// `memory`: e-mail and SMS go to [`TestApp::outbox`]; otherwise through the configured
    /// channels (real peers, or the local file outbox).
    pub async fn spawn_channels(configure: impl FnOnce(&mut Config), memory: bool) -> TestApp {
        let dir = tempfile::tempdir().unwrap();
        let mut config = Config::load(None, &[]).unwrap();
        config.data_dir = dir.path().join("data");
        config.listen = "127.0.0.1:0".parse().unwrap();
        if let Some(url) = fresh_postgres_database().await {
            config.database_url = Some(hearth_server::config::Secret::new(url));
        }
        // Rate limits are off unless a test turns them on: the suite makes many requests a minute.
        config.auth.api_requests_per_minute = 1_000_000;
        config.auth.auth_attempts_per_minute = 1_000_000;
        configure(&mut config);
        let clock = Arc::new(TestClock(AtomicI64::new(Utc::now().timestamp_millis())));
        let app = Arc::new(App::start(config, clock.clone()).await.unwrap());
        let outbox = Arc::new(hearth_notify::MemoryChannel::default());
        if memory {
            for kind in [hearth_notify::ChannelKind::Email, hearth_notify::ChannelKind::Sms] {
                app.notify.set_channel(kind, outbox.as_channel(kind));
            }
        }
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let addr = format!("http://{}", listener.local_addr().unwrap());
        let (tx, rx) = oneshot::channel::<()>();
        tokio::spawn(hearth_server::serve(app.clone(), listener, async move {
            let _ = rx.await;
        }));
        let admin_token = seed_admin(&app).await;
        let mut headers = HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {admin_token}").parse().unwrap());
        let client = reqwest::Client::builder().default_headers(headers).build().unwrap();
        TestApp { addr, client, admin_token, app, clock, outbox, shutdown: Some(tx), _dir: dir }
    }

    /// A client without credentials.
    pub fn anonymous(&self) -> reqwest::Client {
        reqwest::Client::new()
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.addr, path)
    }

    pub async fn send(&self, req: reqwest::RequestBuilder) -> Resp {
        let r = req.send().await.unwrap();
        let status = r.status().as_u16();
        let headers = r.headers().clone();
        let text = r.text().await.unwrap();
        Resp { status, headers, text }
    }

    pub fn request(&self, method: reqwest::Method, path: &str) -> reqwest::RequestBuilder {
        self.client.request(method, self.url(path))
    }

    pub fn with_body(&self, method: reqwest::Method, path: &str, body: &Value) -> reqwest::RequestBuilder {
        self.request(method, path).header("content-type", "application/fhir+json").body(body.to_string())
    }

    pub async fn get(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::GET, path)).await
    }

    pub async fn post(&self, path: &str, body: &Value) -> Resp {
        self.send(self.with_body(reqwest::Method::POST, path, body)).await
    }

    pub async fn put(&self, path: &str, body: &Value) -> Resp {
        self.send(self.with_body(reqwest::Method::PUT, path, body)).await
    }

    pub async fn delete(&self, path: &str) -> Resp {
        self.send(self.request(reqwest::Method::DELETE, path)).await
    }

    /// Creates a resource and returns its server-assigned id.
    pub async fn create(&self, body: &Value) -> String {
        let rt = body["resourceType"].as_str().unwrap();
        let r = self.post(&format!("/fhir/{rt}"), body).await;
        assert_eq!(r.status, 201, "{}", r.text);
        r.json()["id"].as_str().unwrap().to_owned()
    }
}

impl Drop for TestApp {
    fn drop(&mut self) {
        if let Some(tx) = self.shutdown.take() {
            let _ = tx.send(());
        }
    }
}

/// Asserts that a resource the server produced is valid R4 (our own responses must be as strict as
/// what we accept).
pub fn assert_valid_r4(resource: &Value) {
    let issues = hearth_fhir::Model::r4().unwrap().validate(resource);
    assert!(issues.is_empty(), "server output is not valid R4: {issues:?}\n{resource}");
}

/// Sends all requests at once and returns their statuses in request order.
pub async fn race(requests: Vec<reqwest::RequestBuilder>) -> Vec<u16> {
    let tasks: Vec<_> = requests
        .into_iter()
        .map(|req| tokio::spawn(async move { req.send().await.unwrap().status().as_u16() }))
        .collect();
    let mut statuses = Vec::with_capacity(tasks.len());
    for task in tasks {
        statuses.push(task.await.unwrap());
    }
    statuses
}

/// How many of `statuses` equal `status`.
pub fn count(statuses: &[u16], status: u16) -> usize {
    statuses.iter().filter(|s| **s == status).count()
}

/// The backend the story tests run on: `sqlite` (default) or `postgres` when
/// `HEARTH_TEST_BACKEND=postgres` (then `HEARTH_TEST_POSTGRES_URL` names a server, see
/// `scripts/with-postgres`).
pub fn backend() -> &'static str {
    if std::env::var("HEARTH_TEST_BACKEND").as_deref() == Ok("postgres") { "postgres" } else { "sqlite" }
}

/// Creates an empty database on the test PostgreSQL server and returns its URL.
pub async fn fresh_postgres_database() -> Option<String> {
    use sqlx::Connection;
    static COUNTER: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    if backend() != "postgres" {
        return None;
    }
    let admin = std::env::var("HEARTH_TEST_POSTGRES_URL").expect("HEARTH_TEST_POSTGRES_URL must be set for postgres");
    let name = format!(
        "hearth_test_{}_{}_{}",
        std::process::id(),
        Utc::now().timestamp_micros(),
        COUNTER.fetch_add(1, Ordering::SeqCst)
    );
    let mut conn = sqlx::PgConnection::connect(&admin).await.unwrap();
    sqlx::raw_sql(sqlx::AssertSqlSafe(format!("CREATE DATABASE {name}"))).execute(&mut conn).await.unwrap();
    conn.close().await.unwrap();
    let base = admin.rsplit_once('/').unwrap().0;
    Some(format!("{base}/{name}"))
}

pub fn patient(family: &str) -> Value {
    serde_json::json!({
        "resourceType": "Patient",
        "name": [{"family": family, "given": ["Test"]}],
        "gender": "female",
        "birthDate": "1980-04-01"
    })
}

/// Inserts an admin account (no password: it never logs in) and signs a long-lived token for it
/// with the app's own signing key.
async fn seed_admin(app: &App) -> String {
    let id = format!("test-admin-{}", uuid_like());
    let email = format!("{id}@test.example");
    seed_account(app, &id, "admin", None, Some(email)).await
}

/// Inserts account `id` of `role` (no password: it never logs in), linked to `fhir_user`, and
/// signs a token for it with the app's own key that does not expire, so tests may move the clock.
pub async fn seed_account(app: &App, id: &str, role: &str, fhir_user: Option<String>, email: Option<String>) -> String {
    let row = hearth_store_sql::identity::AccountRow {
        id: id.to_owned(),
        email,
        phone: None,
        phone_pending: None,
        password_hash: None,
        role: role.into(),
        fhir_user: fhir_user.clone(),
        organization: None,
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
        sub: id.to_owned(),
        aud: app.auth.settings.audience.clone(),
        iat: 0,
        exp: i64::from(i32::MAX) * 4,
        jti: uuid_like(),
        role: role.parse().unwrap(),
        scope: hearth_server::auth::DEFAULT_SCOPE.into(),
        patient: None,
        fhir_user,
        client_id: None,
    };
    app.auth.keys().sign(&claims).unwrap().expose().clone()
}

fn uuid_like() -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::SeqCst))
}

// Vendored Synthea patients (tests-data/synthea)

pub struct Synthea {
    /// every resource of the vendored Bundles
    pub resources: Vec<Value>,
    /// fullUrl (`urn:uuid:…`) → server id
    pub ids: std::collections::BTreeMap<String, String>,
}

impl Synthea {
    pub fn of_type(&self, ty: &str) -> impl Iterator<Item = &Value> {
        self.resources.iter().filter(move |r| r["resourceType"] == ty)
    }
    /// The server id a `urn:uuid:` reference now has.
    pub fn id(&self, reference: &Value) -> String {
        self.ids[reference["reference"].as_str().unwrap()].clone()
    }
    pub fn server_id(&self, r: &Value) -> String {
        self.ids[&format!("urn:uuid:{}", r["id"].as_str().unwrap())].clone()
    }
}

/// Loads tests-data/synthea/*.json as transactions. Organizations and Practitioners are created
/// conditionally on their identifier (each patient Bundle carries its own copies).
pub async fn load_synthea(t: &TestApp) -> Synthea {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/synthea");
    let mut files: Vec<_> = std::fs::read_dir(&dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "json"))
        .collect();
    files.sort();
    assert!(files.len() >= 3, "vendored Synthea patients missing in {}", dir.display());
    let mut out = Synthea { resources: Vec::new(), ids: std::collections::BTreeMap::new() };
    for file in files {
        let mut bundle: Value = serde_json::from_str(&std::fs::read_to_string(&file).unwrap()).unwrap();
        for e in bundle["entry"].as_array_mut().unwrap() {
            let ty = e["resource"]["resourceType"].as_str().unwrap().to_owned();
            if ty == "Organization" || ty == "Practitioner" {
                let id = &e["resource"]["identifier"][0];
                let criteria =
                    format!("identifier={}|{}", id["system"].as_str().unwrap(), id["value"].as_str().unwrap());
                e["request"]["ifNoneExist"] = serde_json::json!(criteria);
            }
        }
        let r = t.post("/fhir", &bundle).await;
        assert_eq!(r.status, 200, "{}: {}", file.display(), r.text);
        let resp = r.json();
        for (e, answer) in bundle["entry"].as_array().unwrap().iter().zip(resp["entry"].as_array().unwrap()) {
            let loc = answer["response"]["location"].as_str().unwrap_or_else(|| panic!("no location: {answer}"));
            let rel = loc.split("/fhir/").last().unwrap();
            let mut parts = rel.split('/');
            let ty = parts.next().unwrap();
            let id = parts.next().unwrap();
            assert_eq!(ty, e["resource"]["resourceType"]);
            out.ids.insert(e["fullUrl"].as_str().unwrap().to_owned(), id.to_owned());
            if ty != "Organization" && ty != "Practitioner" {
                out.resources.push(e["resource"].clone());
            }
        }
    }
    out
}

/// A small seeded generator (xorshift64*) for tests that explore: the same seed, the same run.
pub struct Rng(pub u64);

impl Rng {
    pub fn next(&mut self) -> u64 {
        // xorshift64*
        self.0 ^= self.0 >> 12;
        self.0 ^= self.0 << 25;
        self.0 ^= self.0 >> 27;
        self.0.wrapping_mul(0x2545_F491_4F6C_DD1D)
    }
    pub fn below(&mut self, n: usize) -> usize {
        (self.next() % n.max(1) as u64) as usize
    }
    pub fn chance(&mut self, percent: u64) -> bool {
        self.next() % 100 < percent
    }
    pub fn pick<'a, T>(&mut self, items: &'a [T]) -> &'a T {
        &items[self.below(items.len())]
    }
}

/// A client WebSocket of the tests (intake, telehealth, wellness chat, web).
pub(crate) type Ws = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

/// The next frame: JSON of a text frame, or `{"close": code}` (`{"error": …}` on a socket error).
pub(crate) async fn frame(ws: &mut Ws) -> Value {
    use futures_util::StreamExt;
    use tokio_tungstenite::tungstenite::Message;
    loop {
        let m = tokio::time::timeout(std::time::Duration::from_secs(10), ws.next()).await.expect("a frame in time");
        match m {
            Some(Ok(Message::Text(t))) => return serde_json::from_str(t.as_str()).unwrap(),
            Some(Ok(Message::Close(c))) => return serde_json::json!({"close": c.map(|c| u16::from(c.code))}),
            Some(Ok(_)) => continue,
            None => return serde_json::json!({"close": null}),
            Some(Err(e)) => return serde_json::json!({"error": e.to_string()}),
        }
    }
}

/// Frames until one of type `kind`, returning it (failing on a close first).
pub(crate) async fn until(ws: &mut Ws, kind: &str) -> Value {
    for _ in 0..50 {
        let f = frame(ws).await;
        assert!(f.get("close").is_none(), "closed while waiting for {kind}: {f}");
        if f["type"] == kind {
            return f;
        }
    }
    panic!("no {kind} frame");
}

/// Sends `v` as a text frame.
pub(crate) async fn send(ws: &mut Ws, v: Value) {
    use futures_util::SinkExt;
    ws.send(tokio_tungstenite::tungstenite::Message::Text(v.to_string().into())).await.unwrap();
}
