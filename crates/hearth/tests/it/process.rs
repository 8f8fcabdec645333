//! Tests of the real `hearth` binary: zero-config start, durability across kill -9, graceful
//! shutdown, the migrate subcommand, configuration errors and PHI-free structured logs.

use std::path::Path;
use std::process::Stdio;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncReadExt, AsyncWriteExt, BufReader};
use tokio::process::{Child, Command};

use crate::common::{count, race};

const BIN: &str = env!("CARGO_BIN_EXE_hearth");

pub(crate) struct Proc {
    child: Child,
    pub(crate) base: String,
    lines: Arc<Mutex<Vec<String>>>,
    /// An admin's access token (the admin is created with `hearth admin create-admin`).
    token: String,
}

impl Proc {
    /// A client that sends the admin's token.
    pub(crate) fn client(&self) -> reqwest::Client {
        let mut headers = reqwest::header::HeaderMap::new();
        headers.insert(reqwest::header::AUTHORIZATION, format!("Bearer {}", self.token).parse().unwrap());
        reqwest::Client::builder().default_headers(headers).build().unwrap()
    }
}

const ADMIN_PASSWORD: &str = "tea-kettle-lighthouse-93";

async fn post_json(base: &str, path: &str, token: Option<&str>, body: Value) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .post(format!("{base}{path}"))
        .header("content-type", "application/json")
        .body(body.to_string());
    if let Some(t) = token {
        req = req.header("authorization", format!("Bearer {t}"));
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    (status, r.json_text().await)
}

/// Creates an admin account (a new one per call), enrols its TOTP as an authenticator app would
/// (codes computed with `hearth_auth::totp` on this machine's clock) and logs it in with a code.
async fn admin_token(cwd: &Path, env: &[(&str, &str)], base: &str) -> String {
    static N: std::sync::atomic::AtomicU64 = std::sync::atomic::AtomicU64::new(0);
    let email = format!("admin{}@example.org", N.fetch_add(1, std::sync::atomic::Ordering::SeqCst));
    let mut env = env.to_vec();
    env.push(("HEARTH_ADMIN_PASSWORD", ADMIN_PASSWORD));
    let out = command(cwd, &env, &["admin", "create-admin", "--email", &email]).output().await.unwrap();
    assert!(out.status.success(), "create-admin: {}", String::from_utf8_lossy(&out.stderr));
    // Without 2FA an admin's password login only allows enrolment.
    let login = json!({"email": email, "password": ADMIN_PASSWORD});
    let (status, v) = post_json(base, "/api/v1/auth/login", None, login).await;
    assert_eq!(status, 200, "{v}");
    assert_eq!(v["scope"], "hearth/mfa-setup", "{v}");
    let setup = v["access_token"].as_str().unwrap().to_owned();
    let (status, v) = post_json(base, "/api/v1/auth/totp/enroll", Some(&setup), json!({})).await;
    assert_eq!(status, 200, "{v}");
    let secret = hearth_auth::totp::TotpSecret::from_base32(v["secret"].as_str().unwrap()).unwrap();
    let step = hearth_auth::totp::time_step(chrono::Utc::now());
    let code = hearth_auth::totp::code_at_step(&secret, step);
    let (status, v) = post_json(base, "/api/v1/auth/totp/confirm", Some(&setup), json!({"code": code.expose()})).await;
    assert_eq!(status, 200, "{v}");
    // The confirming code is spent: log in with the next step's (inside the ±1 step window).
    let code = hearth_auth::totp::code_at_step(&secret, step + 1);
    let login = json!({"email": email, "password": ADMIN_PASSWORD, "code": code.expose()});
    let (status, v) = post_json(base, "/api/v1/auth/login", None, login).await;
    assert_eq!(status, 200, "{v}");
    v["access_token"].as_str().unwrap().to_owned()
}

pub(crate) fn command(cwd: &Path, env: &[(&str, &str)], args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd).env_clear().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (k, v) in env {
        c.env(k, v);
    }
    c
}

/// Starts `hearth serve` and waits for its "listening on" line.
pub(crate) async fn start(cwd: &Path, env: &[(&str, &str)]) -> Proc {
    let mut env = env.to_vec();
    env.push(("HEARTH_LISTEN", "127.0.0.1:0"));
    let mut child = command(cwd, &env, &["serve"]).spawn().unwrap();
    let stdout = child.stdout.take().unwrap();
    let lines = Arc::new(Mutex::new(Vec::new()));
    let (tx, rx) = tokio::sync::oneshot::channel::<String>();
    let sink = lines.clone();
    tokio::spawn(async move {
        let mut tx = Some(tx);
        let mut reader = BufReader::new(stdout).lines();
        while let Ok(Some(line)) = reader.next_line().await {
            if let Some(pos) = line.find("listening on http://") {
                let rest = &line[pos + "listening on http://".len()..];
                let addr: String = rest.chars().take_while(|c| c.is_ascii_digit() || *c == '.' || *c == ':').collect();
                if let Some(tx) = tx.take() {
                    let _ = tx.send(addr);
                }
            }
            sink.lock().unwrap().push(line);
        }
    });
    let addr = tokio::time::timeout(Duration::from_secs(30), rx).await.expect("server did not start").unwrap();
    let base = format!("http://{addr}");
    let token = admin_token(cwd, &env, &base).await;
    Proc { child, base, lines, token }
}

pub(crate) async fn sigterm(p: &Proc) {
    let pid = p.child.id().unwrap().to_string();
    let status = Command::new("kill").args(["-TERM", &pid]).status().await.unwrap();
    assert!(status.success());
}

/// SIGKILL: no chance to flush or finish anything.
pub(crate) async fn kill9(p: &mut Proc) {
    p.child.start_kill().unwrap();
    wait_exit(p).await;
}

pub(crate) async fn wait_exit(p: &mut Proc) -> std::process::ExitStatus {
    tokio::time::timeout(Duration::from_secs(30), p.child.wait()).await.expect("did not exit").unwrap()
}

async fn put(p: &Proc, rt: &str, id: &str, body: &Value) -> u16 {
    p.client()
        .put(format!("{}/fhir/{rt}/{id}", p.base))
        .header("content-type", "application/fhir+json")
        .body(body.to_string())
        .send()
        .await
        .unwrap()
        .status()
        .as_u16()
}

#[tokio::test]
async fn zero_config_start_keeps_data_under_hearth_data() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), &[]).await;
    assert!(dir.path().join("hearth-data").join("hearth.db").exists());
    let r = p.client().get(format!("{}/readyz", p.base)).send().await.unwrap();
    assert_eq!(r.status().as_u16(), 200);
    sigterm(&p).await;
    assert!(wait_exit(&mut p).await.success());
}

#[tokio::test]
async fn a_write_acknowledged_before_kill_9_survives() {
    let dir = tempfile::tempdir().unwrap();
    // With `wait_for_commit` an answer means the request's audit event is committed too.
    let env = [("HEARTH_AUDIT_WAIT_FOR_COMMIT", "true")];
    let mut p = start(dir.path(), &env).await;
    for i in 0..25 {
        let body = json!({"resourceType": "Patient", "id": format!("p{i}"), "gender": "male"});
        assert_eq!(put(&p, "Patient", &format!("p{i}"), &body).await, 201);
    }
    // The last acknowledged write, then SIGKILL at once: no chance to flush anything.
    let last = json!({"resourceType": "Patient", "id": "p0", "gender": "female"});
    assert_eq!(put(&p, "Patient", "p0", &last).await, 200);
    p.child.start_kill().unwrap();
    wait_exit(&mut p).await;

    // The audit events of those writes were journaled before each answer; the killed process
    // had no time to index them, so the new one does before anyone reads the trail.
    let mut p = start(dir.path(), &env).await;
    let url = format!("{}/fhir/AuditEvent?patient=Patient/p0&_summary=count", p.base);
    let events: Value = p.client().get(url).send().await.unwrap().json_text().await;
    assert_eq!(events["total"], 2, "{events}");
    for i in 0..25 {
        let r = p.client().get(format!("{}/fhir/Patient/p{i}", p.base)).send().await.unwrap();
        assert_eq!(r.status().as_u16(), 200, "p{i} lost");
    }
    let r: Value = p.client().get(format!("{}/fhir/Patient/p0", p.base)).send().await.unwrap().json_text().await;
    assert_eq!(r["gender"], "female");
    assert_eq!(r["meta"]["versionId"], "2");
    sigterm(&p).await;
    wait_exit(&mut p).await;
}

trait JsonText {
    async fn json_text(self) -> Value;
}

impl JsonText for reqwest::Response {
    async fn json_text(self) -> Value {
        serde_json::from_str(&self.text().await.unwrap()).unwrap()
    }
}

#[tokio::test]
async fn sigterm_lets_an_in_flight_request_finish() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), &[]).await;
    let body = json!({"resourceType": "Patient", "gender": "other"}).to_string();
    let addr = p.base.trim_start_matches("http://").to_owned();
    let mut stream = tokio::net::TcpStream::connect(&addr).await.unwrap();
    let head = format!(
        "POST /fhir/Patient HTTP/1.1\r\nHost: {addr}\r\nAuthorization: Bearer {}\r\nContent-Type: application/fhir+json\r\nContent-Length: {}\r\nConnection: close\r\n\r\n",
        p.token,
        body.len()
    );
    stream.write_all(head.as_bytes()).await.unwrap();
    let (first, rest) = body.split_at(10);
    stream.write_all(first.as_bytes()).await.unwrap();
    stream.flush().await.unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;

    sigterm(&p).await;
    tokio::time::sleep(Duration::from_millis(300)).await;
    // New connections are no longer accepted while the old request drains.
    assert!(reqwest::Client::new().get(format!("{}/healthz", p.base)).send().await.is_err());

    stream.write_all(rest.as_bytes()).await.unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    assert!(response.starts_with("HTTP/1.1 201"), "{response}");
    assert!(wait_exit(&mut p).await.success());
}

#[tokio::test]
async fn migrate_is_idempotent() {
    let dir = tempfile::tempdir().unwrap();
    let env = [("HEARTH_DATA_DIR", "state")];
    for _ in 0..2 {
        let out = command(dir.path(), &env, &["migrate"]).output().await.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    assert!(dir.path().join("state").join("hearth.db").exists());
}

#[tokio::test]
async fn configuration_errors_fail_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let out = command(dir.path(), &[("HEARTH_LISTN", "1")], &["serve"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("HEARTH_LISTN"));
    let out =
        command(dir.path(), &[("HEARTH_DATABASE_URL", "mysql://u:hunter2@db/x")], &["serve"]).output().await.unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("database_url"), "{stderr}");
    assert!(!stderr.contains("hunter2"), "secrets never printed: {stderr}");
    std::fs::write(dir.path().join("h.toml"), "listen = 5\n").unwrap();
    let out = command(dir.path(), &[], &["--config", "h.toml", "serve"]).output().await.unwrap();
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("h.toml"));
    // Addresses say the form they want, whether from the variable or --listen.
    for (env, args) in [(&[("HEARTH_LISTEN", "localhost")][..], &["serve"][..]), (&[], &["serve", "--listen", "80800"])]
    {
        let out = command(dir.path(), env, args).output().await.unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success() && stderr.contains("HOST:PORT") && stderr.contains("127.0.0.1:8080"), "{stderr}");
    }
    // A data directory that cannot be one is named.
    std::fs::write(dir.path().join("not-a-dir"), "x").unwrap();
    let out = command(dir.path(), &[("HEARTH_DATA_DIR", "not-a-dir")], &["migrate"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success() && stderr.contains("not-a-dir"), "{stderr}");
}

#[tokio::test]
async fn serve_says_where_its_data_is_and_what_to_do_first() {
    let dir = tempfile::tempdir().unwrap();
    let mut child =
        command(dir.path(), &[("HEARTH_DATA_DIR", "state")], &["serve", "--listen", "127.0.0.1:0"]).spawn().unwrap();
    let mut stderr = BufReader::new(child.stderr.take().unwrap()).lines();
    let mut banner = Vec::new();
    let read = async {
        while let Ok(Some(line)) = stderr.next_line().await {
            let last = line.contains("next:") || line.contains("create-admin");
            banner.push(line);
            if last && banner.iter().any(|l| l.contains("create-admin")) {
                break;
            }
        }
    };
    tokio::time::timeout(Duration::from_secs(30), read).await.expect("no banner");
    let text = banner.join("\n");
    let data_dir = std::fs::canonicalize(dir.path()).unwrap().join("state");
    assert!(text.contains(&data_dir.display().to_string()), "the absolute data directory: {text}");
    assert!(text.contains("SQLite") && text.contains("hearth.db") && text.contains("hearth-audit.db"), "{text}");
    assert!(text.contains("/fhir") && text.contains("/api/docs"), "{text}");
    assert!(text.contains("hearth admin create-admin"), "the next step on a new database: {text}");
    child.kill().await.unwrap();
    // Other commands say which database they use.
    let out = command(dir.path(), &[("HEARTH_DATA_DIR", "state")], &["migrate"]).output().await.unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(out.status.success() && stderr.contains(&data_dir.join("hearth.db").display().to_string()), "{stderr}");
}

#[tokio::test]
async fn json_logs_carry_request_ids_and_no_phi() {
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), &[("HEARTH_LOG_FORMAT", "json")]).await;
    let secret_name = "Zebediah-Quixote";
    let secret_mrn = "MRN-77731";
    let body = json!({"resourceType": "Patient", "name": [{"family": secret_name}],
        "identifier": [{"system": "urn:mrn", "value": secret_mrn}]});
    let r = p
        .client()
        .post(format!("{}/fhir/Patient", p.base))
        .header("content-type", "application/fhir+json")
        .header("if-none-exist", format!("identifier=urn:mrn|{secret_mrn}"))
        .body(body.to_string())
        .send()
        .await
        .unwrap();
    assert_eq!(r.status().as_u16(), 201);
    let id = r.json_text().await["id"].as_str().unwrap().to_owned();
    p.client().get(format!("{}/fhir/Patient/{id}/_history?_since=2000-01-01", p.base)).send().await.unwrap();
    p.client().delete(format!("{}/fhir/Patient?identifier=urn:mrn|{secret_mrn}", p.base)).send().await.unwrap();
    // A failing request must not echo its body either.
    p.client()
        .post(format!("{}/fhir/Patient", p.base))
        .header("content-type", "application/fhir+json")
        .body(format!("{{\"resourceType\":\"Patient\",\"nickname\":\"{secret_name}\"}}"))
        .send()
        .await
        .unwrap();
    sigterm(&p).await;
    wait_exit(&mut p).await;
    let lines = p.lines.lock().unwrap().clone();
    assert!(lines.len() > 4, "{lines:?}");
    let mut saw_request = false;
    for line in &lines {
        let v: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("not JSON ({e}): {line}"));
        assert!(!line.contains(secret_name) && !line.contains(secret_mrn), "PHI in log: {line}");
        if line.contains("request_id") && line.contains("/fhir/{type}") {
            saw_request = true;
        }
        assert!(v.get("level").is_some());
    }
    assert!(saw_request, "{lines:?}");
}

/// The README's admin creation, 2FA enrolment and login, four FHIR curl calls and four bulk export calls, run as
/// written against a fresh server (only the address, the binary and the `<id>`/`<job>`
/// placeholders are substituted).
#[tokio::test]
async fn readme_curl_calls_work_against_a_fresh_server() {
    let readme = std::fs::read_to_string(concat!(env!("CARGO_MANIFEST_DIR"), "/../../README.md")).unwrap();
    let mut calls: Vec<String> = Vec::new();
    let mut current = String::new();
    for line in readme.lines() {
        let line = line.trim();
        if current.is_empty()
            && !["curl ", "TOKEN=", "SETUP=", "LOGIN=", "REFRESH="].iter().any(|p| line.starts_with(p))
        {
            continue;
        }
        current.push_str(line.trim_end_matches('\\'));
        current.push(' ');
        if !line.ends_with('\\') {
            let call = std::mem::take(&mut current);
            // `TOKEN=`/`REFRESH=` lines that read the login's answer run in the same shell.
            match calls.last_mut() {
                Some(login) if call.contains("\"$LOGIN\"") => {
                    login.push_str("; ");
                    login.push_str(&call);
                }
                _ => calls.push(call),
            }
        }
    }
    assert_eq!(calls.len(), 13, "{calls:?}");
    // The refresh call needs the login's refresh token: run it right after the login, below.
    let refresh_call = calls.remove(4);
    assert!(refresh_call.contains("/api/v1/auth/refresh"), "{refresh_call}");
    let create_admin = readme.lines().find(|l| l.contains("admin create-admin")).unwrap();
    let dir = tempfile::tempdir().unwrap();
    let mut p = start(dir.path(), &[]).await;
    let run = |cmd: String| {
        let cwd = dir.path().to_owned();
        async move {
            let out = Command::new("sh")
                .arg("-c")
                .arg(&cmd)
                .current_dir(cwd)
                .env_clear()
                .env("PATH", std::env::var("PATH").unwrap())
                .output()
                .await
                .unwrap();
            assert!(out.status.success(), "{cmd}: {}", String::from_utf8_lossy(&out.stderr));
            String::from_utf8(out.stdout).unwrap()
        }
    };
    // The README's admin (a different e-mail from the one `start` made, so it is really created).
    let create_admin = create_admin
        .replace("hearth admin create-admin", &format!("{BIN} admin create-admin"))
        .replace("admin@example.org", "readme-admin@example.org");
    run(create_admin).await;
    let here = |call: &str| {
        call.replace("http://127.0.0.1:8080", &p.base).replace("admin@example.org", "readme-admin@example.org")
    };
    // Password login: the enrolment-only token.
    let setup = run(format!("{}; printf %s \"$SETUP\"", here(&calls[0]))).await;
    let with_setup = |call: &str| format!("SETUP='{setup}'; {}", here(call));
    let enrolled: Value = serde_json::from_str(&run(with_setup(&calls[1])).await).unwrap();
    assert!(enrolled["otpauth_uri"].as_str().unwrap().starts_with("otpauth://totp/"), "{enrolled}");
    // The authenticator app: codes computed from the secret, on this machine's clock.
    let secret = hearth_auth::totp::TotpSecret::from_base32(enrolled["secret"].as_str().unwrap()).unwrap();
    let step = hearth_auth::totp::time_step(chrono::Utc::now());
    let now_code = hearth_auth::totp::code_at_step(&secret, step);
    let next_code = hearth_auth::totp::code_at_step(&secret, step + 1);
    let confirmed: Value =
        serde_json::from_str(&run(with_setup(&calls[2]).replace("123456", now_code.expose())).await).unwrap();
    assert_eq!(confirmed["recovery_codes"].as_array().unwrap().len(), 10, "{confirmed}");
    let login = here(&calls[3]).replace("654321", next_code.expose());
    let pair = run(format!("{login}; printf '%s\\n%s' \"$TOKEN\" \"$REFRESH\"")).await;
    let (token, refresh) = pair.split_once('\n').unwrap();
    assert!(token.split('.').count() == 3, "not a JWT: {token}");
    // The refresh call of the README trades the refresh token for a new pair.
    let renewed: Value =
        serde_json::from_str(&run(format!("REFRESH='{refresh}'; {}", here(&refresh_call))).await).unwrap();
    assert_eq!(renewed["access_token"].as_str().unwrap().split('.').count(), 3, "{renewed}");
    let token = token.to_owned();
    let with_token = |call: &str| format!("TOKEN='{token}'; {}", call.replace("http://127.0.0.1:8080", &p.base));
    let created = run(with_token(&calls[4])).await;
    assert!(created.starts_with("HTTP/1.1 201"), "{created}");
    let location = created
        .lines()
        .find_map(|l| l.strip_prefix("location: ").or_else(|| l.strip_prefix("Location: ")))
        .unwrap()
        .trim()
        .to_owned();
    let id = location.split('/').rev().nth(2).unwrap().to_owned();
    let read: Value = serde_json::from_str(&run(with_token(&calls[5]).replace("<id>", &id)).await).unwrap();
    assert_eq!(read["name"][0]["family"], "Rao");
    let history: Value = serde_json::from_str(&run(with_token(&calls[6]).replace("<id>", &id)).await).unwrap();
    assert_eq!(history["type"], "history");
    assert_eq!(history["entry"].as_array().unwrap().len(), 1);
    let found: Value = serde_json::from_str(&run(with_token(&calls[7])).await).unwrap();
    assert_eq!(found["type"], "searchset");
    assert_eq!(found["total"], 1);
    assert_eq!(found["entry"][0]["resource"]["id"], id.as_str());

    // Bulk export: kick-off, poll, download, delete.
    let kicked = run(with_token(&calls[8])).await;
    assert!(kicked.starts_with("HTTP/1.1 202"), "{kicked}");
    let job = kicked
        .lines()
        .find_map(|l| l.strip_prefix("content-location: "))
        .unwrap()
        .trim()
        .rsplit('/')
        .next()
        .unwrap()
        .to_owned();
    let with_job = |i: usize| with_token(&calls[i + 4]).replace("<job>", &job);
    let mut manifest = String::new();
    for _ in 0..100 {
        manifest = run(with_job(5)).await;
        if manifest.starts_with("HTTP/1.1 200") {
            break;
        }
        assert!(manifest.starts_with("HTTP/1.1 202"), "{manifest}");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    assert!(manifest.starts_with("HTTP/1.1 200") && manifest.contains("Patient.ndjson"), "{manifest}");
    let ndjson = run(with_job(6)).await;
    let line: Value = serde_json::from_str(ndjson.trim()).unwrap();
    assert_eq!(line["id"], id.as_str());
    assert!(run(with_job(7)).await.starts_with("HTTP/1.1 202"));
    // The job is gone: the README's calls use --fail-with-body, so the poll now fails visibly.
    let gone = Command::new("sh")
        .arg("-c")
        .arg(with_job(5))
        .current_dir(dir.path())
        .env_clear()
        .env("PATH", std::env::var("PATH").unwrap())
        .output()
        .await
        .unwrap();
    assert!(!gone.status.success(), "an error answer must fail the snippet");
    assert!(String::from_utf8_lossy(&gone.stdout).starts_with("HTTP/1.1 404"));
    // Without the token: 401 with an OperationOutcome.
    let anonymous = reqwest::Client::new().get(format!("{}/fhir/Patient/{id}", p.base)).send().await.unwrap();
    assert_eq!(anonymous.status().as_u16(), 401);
    sigterm(&p).await;
    wait_exit(&mut p).await;
}

/// Two `hearth serve` processes on one PostgreSQL database behave as one server: racing
/// `If-Match` updates have exactly one winner and racing conditional creates make exactly one
/// resource. Runs in the PostgreSQL pass of the suite (`HEARTH_TEST_BACKEND=postgres`).
#[tokio::test]
async fn two_processes_on_one_postgres_behave_as_one_server() {
    let Some(url) = crate::common::fresh_postgres_database().await else {
        return; // SQLite pass: an embedded database has one server process by design.
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [("HEARTH_DATABASE_URL", url.as_str())];
    let mut a = start(dir.path(), &env).await;
    let mut b = start(dir.path(), &env).await;

    let body = json!({"resourceType": "Patient", "id": "shared", "gender": "male"});
    assert_eq!(put(&a, "Patient", "shared", &body).await, 201);
    // Alternate the two processes so every race is between them.
    let base_for = |i: usize| if i.is_multiple_of(2) { a.base.clone() } else { b.base.clone() };
    let requests = (0..20_usize)
        .map(|i| {
            let gender = if i.is_multiple_of(2) { "female" } else { "other" };
            a.client()
                .put(format!("{}/fhir/Patient/shared", base_for(i)))
                .header("content-type", "application/fhir+json")
                .header("if-match", "W/\"1\"")
                .body(json!({"resourceType": "Patient", "id": "shared", "gender": gender}).to_string())
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!(count(&statuses, 200), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 412), 19, "{statuses:?}");

    let body = json!({"resourceType": "Patient", "identifier": [{"system": "urn:race", "value": "one"}]});
    let requests = (0..20)
        .map(|i| {
            a.client()
                .post(format!("{}/fhir/Patient", base_for(i)))
                .header("content-type", "application/fhir+json")
                .header("if-none-exist", "identifier=urn:race|one")
                .body(body.to_string())
        })
        .collect();
    let statuses = race(requests).await;
    assert_eq!(count(&statuses, 201), 1, "{statuses:?}");
    assert_eq!(count(&statuses, 200), 19, "{statuses:?}");
    // Both processes see the same single resource and the same history.
    for p in [&a, &b] {
        let h = p
            .client()
            .get(format!("{}/fhir/Patient/_history?_count=100", p.base))
            .send()
            .await
            .unwrap()
            .json_text()
            .await;
        assert_eq!(h["entry"].as_array().unwrap().len(), 3, "{h}");
    }
    // Both processes journaled audit events, racing for the chain's next link: still one
    // unbroken chain.
    let out = command(dir.path(), &env, &["admin", "verify-audit"]).output().await.unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success() && text.contains("intact"), "{text}{}", String::from_utf8_lossy(&out.stderr));
    sigterm(&a).await;
    sigterm(&b).await;
    wait_exit(&mut a).await;
    wait_exit(&mut b).await;
}

/// Two `hearth serve` processes on one PostgreSQL database (sharing a data directory, as a
/// deployment with several API nodes must for export files): export jobs queued on one are each
/// run exactly once by one of the two workers, and either process serves status and files.
#[tokio::test]
async fn two_processes_run_each_export_job_once() {
    let Some(url) = crate::common::fresh_postgres_database().await else {
        return; // SQLite pass: an embedded database has one server process by design.
    };
    let dir = tempfile::tempdir().unwrap();
    let env = [("HEARTH_DATABASE_URL", url.as_str())];
    let mut a = start(dir.path(), &env).await;
    let mut b = start(dir.path(), &env).await;
    for i in 0..30 {
        let body = json!({"resourceType": "Patient", "id": format!("x{i}"), "gender": "male"});
        assert_eq!(put(&a, "Patient", &format!("x{i}"), &body).await, 201);
    }
    let mut jobs = Vec::new();
    for i in 0..8 {
        let base = if i % 2 == 0 { &a.base } else { &b.base };
        let r = a.client().get(format!("{base}/fhir/$export")).header("prefer", "respond-async").send().await.unwrap();
        assert_eq!(r.status().as_u16(), 202);
        let location = r.headers()["content-location"].to_str().unwrap().to_owned();
        jobs.push(location.rsplit('/').next().unwrap().to_owned());
    }
    for (i, job) in jobs.iter().enumerate() {
        // Poll through the other process than the one that queued it.
        let base = if i % 2 == 0 { &b.base } else { &a.base };
        let mut manifest = Value::Null;
        for _ in 0..300 {
            let r = a.client().get(format!("{base}/fhir/$export-status/{job}")).send().await.unwrap();
            if r.status().as_u16() == 200 {
                manifest = r.json_text().await;
                break;
            }
            assert_eq!(r.status().as_u16(), 202);
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
        assert_eq!(manifest["output"][0]["count"], 30, "{manifest}");
        let file = manifest["output"][0]["url"].as_str().unwrap();
        let text = a.client().get(file).send().await.unwrap().text().await.unwrap();
        assert_eq!(text.lines().count(), 30);
    }
    // Each job was started exactly once across both processes.
    let started: Vec<String> = [&a, &b]
        .iter()
        .flat_map(|p| p.lines.lock().unwrap().clone())
        .filter(|l| l.contains("export job started"))
        .collect();
    for job in &jobs {
        assert_eq!(started.iter().filter(|l| l.contains(job.as_str())).count(), 1, "{job}: {started:?}");
    }
    sigterm(&a).await;
    sigterm(&b).await;
    wait_exit(&mut a).await;
    wait_exit(&mut b).await;
}
