//! Encryption at rest on the configured backend: no PHI in the raw data, clean refusals of a
//! wrong or missing key, and key rotation while the server serves.

use std::path::{Path, PathBuf};

use hearth_server::{App, Config};
use serde_json::{Value, json};

use crate::common::{TestApp, TestClock, backend};

pub const K1: &str = "6a1f0c2e9b8d7a65f4e3d2c1b0a99887766554433221100ffeeddccbbaa99887";
pub const K2: &str = "17e2b5c4d3a2918f7e6d5c4b3a29180f0e1d2c3b4a5968778695a4b3c2d1e0f1";

/// The PHI of the test patient, searched for in the raw data.
pub const NAME: &str = "Quixotlicue";
pub const BIRTH: &str = "1937-04-19";
pub const PHONE: &str = "+15550199123";
pub const NOTE: &str = "reports a xylophone-shaped rash";

/// A key file in its own temporary directory.
pub fn key_file(text: &str) -> (tempfile::TempDir, PathBuf) {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("hearth.key");
    std::fs::write(&path, text).unwrap();
    (dir, path)
}

pub async fn encrypted_app(key: &Path) -> TestApp {
    let key = key.to_path_buf();
    TestApp::spawn_with(move |c| c.encryption_key_file = Some(key)).await
}

/// Writes the test patient and an observation with the note; returns the patient id.
pub async fn write_phi(app: &TestApp) -> String {
    let id = app
        .create(&json!({
            "resourceType": "Patient",
            "name": [{"family": NAME, "given": ["Ximena"]}],
            "birthDate": BIRTH,
            "telecom": [{"system": "phone", "value": PHONE}]
        }))
        .await;
    app.create(&json!({
        "resourceType": "Observation",
        "status": "final",
        "code": {"text": "skin"},
        "subject": {"reference": format!("Patient/{id}")},
        "note": [{"text": NOTE}]
    }))
    .await;
    id
}

/// The raw bytes of the data at rest: the SQLite files, or the PostgreSQL resource tables read
/// with plain SQL and `COPY` (and `pg_dump` of them when it is installed).
pub async fn raw_data(config: &Config) -> Vec<u8> {
    let mut out = Vec::new();
    match config.database_url.as_ref().map(|u| u.expose().clone()) {
        None => {
            for suffix in ["", "-wal"] {
                let path = config.data_dir.join(format!("hearth.db{suffix}"));
                out.extend(std::fs::read(&path).unwrap_or_default());
            }
            assert!(out.len() > 4096, "no database files found");
        }
        Some(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            let bodies: Vec<Option<String>> =
                sqlx::query_scalar("SELECT body FROM resource_versions").fetch_all(&mut conn).await.unwrap();
            assert!(bodies.len() >= 2);
            for b in bodies.into_iter().flatten() {
                out.extend(b.into_bytes());
            }
            for table in ["resource_versions", "resources"] {
                let mut copy = conn.copy_out_raw(&format!("COPY {table} TO STDOUT")).await.unwrap();
                use futures_util::StreamExt;
                while let Some(chunk) = copy.next().await {
                    out.extend_from_slice(&chunk.unwrap());
                }
            }
            conn.close().await.unwrap();
            let dump = tokio::process::Command::new("pg_dump")
                .args(["--data-only", "-t", "resource_versions", "-t", "resources", &url])
                .output()
                .await;
            if let Ok(dump) = dump {
                assert!(dump.status.success(), "pg_dump failed: {}", String::from_utf8_lossy(&dump.stderr));
                assert!(!dump.stdout.is_empty());
                out.extend(dump.stdout);
            }
        }
    }
    out
}

pub fn holds(data: &[u8], needle: &str) -> bool {
    data.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// An app on the same database with another configuration.
pub async fn start_ok(config: &Config, change: impl FnOnce(&mut Config)) -> App {
    let mut config = config.clone();
    change(&mut config);
    App::start(config, std::sync::Arc::new(TestClock::now())).await.map_err(|e| chain(&e)).unwrap()
}

pub async fn start_err(config: &Config, change: impl FnOnce(&mut Config)) -> String {
    let mut config = config.clone();
    change(&mut config);
    match App::start(config, std::sync::Arc::new(TestClock::now())).await {
        Ok(_) => panic!("the start was not refused"),
        Err(e) => chain(&e),
    }
}

pub fn chain(e: &dyn std::error::Error) -> String {
    let mut out = e.to_string();
    let mut cause = e.source();
    while let Some(c) = cause {
        out.push_str(": ");
        out.push_str(&c.to_string());
        cause = c.source();
    }
    out
}

#[tokio::test]
async fn the_raw_data_holds_no_phi_while_search_by_name_works() {
    let (_k, key) = key_file(K1);
    let app = encrypted_app(&key).await;
    let id = write_phi(&app).await;
    let found = app.get(&format!("/fhir/Patient?name={}", NAME.to_lowercase())).await;
    assert_eq!(found.status, 200, "{}", found.text);
    let bundle = found.json();
    assert_eq!(bundle["total"], 1, "{}", found.text);
    assert_eq!(bundle["entry"][0]["resource"]["telecom"][0]["value"], PHONE);
    let everything = app.get(&format!("/fhir/Patient/{id}/$everything")).await.json();
    assert!(everything.to_string().contains(NOTE), "{everything}");
    let history = app.get(&format!("/fhir/Patient/{id}/_history/1")).await.json();
    assert_eq!(history["birthDate"], BIRTH);

    let raw = raw_data(&app.app.config).await;
    for needle in [NAME, BIRTH, PHONE, NOTE, "xylophone"] {
        assert!(!holds(&raw, needle), "{needle} is readable in the data at rest ({})", backend());
    }
}

#[tokio::test]
async fn a_wrong_or_missing_key_is_refused_cleanly() {
    let (_k, key) = key_file(K1);
    let app = encrypted_app(&key).await;
    let id = write_phi(&app).await;
    let config = app.app.config.clone();
    let (_k2, wrong) = key_file(K2);
    let e = start_err(&config, |c| c.encryption_key_file = Some(wrong)).await;
    assert!(e.contains("configured key does not open it"), "{e}");
    assert!(!e.contains(K2) && !e.contains(K1), "{e}");
    let e = start_err(&config, |c| c.encryption_key_file = None).await;
    assert!(e.contains("encrypted") && e.contains("no encryption key is configured"), "{e}");
    // Nothing was damaged: the right key still opens everything.
    let again = start_ok(&config, |_| {}).await;
    match again.store.read("Patient", &id).await.unwrap() {
        hearth_store::Current::Found(v) => assert!(v.body.unwrap().contains(NAME)),
        other => panic!("{other:?}"),
    }
}

#[tokio::test]
async fn a_key_on_a_plaintext_sqlite_database_is_refused() {
    if backend() != "sqlite" {
        return;
    }
    let app = TestApp::spawn().await;
    write_phi(&app).await;
    let (_k, key) = key_file(K1);
    let e = start_err(&app.app.config, |c| c.encryption_key_file = Some(key)).await;
    assert!(e.contains("not encrypted but an encryption key is configured"), "{e}");
}

fn hearth(config: &Config, key: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.args(args).env_clear().env("HEARTH_DATA_DIR", &config.data_dir).env("HEARTH_ENCRYPTION_KEY_FILE", key);
    if let Some(url) = &config.database_url {
        c.env("HEARTH_DATABASE_URL", url.expose());
    }
    c
}

pub async fn run(mut c: tokio::process::Command) -> String {
    let out = c.output().await.unwrap();
    let text = format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr));
    assert!(out.status.success(), "{text}");
    text
}

#[tokio::test]
async fn rotate_key_keeps_serving_and_retires_the_old_key() {
    let (_k, key) = key_file(K1);
    let app = encrypted_app(&key).await;
    let id = write_phi(&app).await;
    // The operator puts the new key first, the old one after it, then rotates.
    std::fs::write(&key, format!("{K2}\n{K1}\n")).unwrap();
    let out = run(hearth(&app.app.config, &key, &["admin", "rotate-key"])).await;
    assert!(out.contains("re-"), "{out}");
    // The running server keeps reading and writing.
    let mut status = 0;
    for _ in 0..3 {
        status = app.get(&format!("/fhir/Patient/{id}")).await.status;
        if status == 200 {
            break;
        }
    }
    assert_eq!(status, 200);
    let later = app.create(&json!({"resourceType": "Patient", "name": [{"family": "Aftermath"}]})).await;
    let found: Value = app.get(&format!("/fhir/Patient?name={}", NAME.to_lowercase())).await.json();
    assert_eq!(found["total"], 1);
    // The old key alone no longer opens the data; the new one alone does.
    let config = app.app.config.clone();
    let (_o, old) = key_file(K1);
    let e = start_err(&config, |c| c.encryption_key_file = Some(old)).await;
    assert!(e.contains("does not open it"), "{e}");
    let (_n, new) = key_file(K2);
    let again = start_ok(&config, |c| c.encryption_key_file = Some(new)).await;
    for (ty, id) in [("Patient", id.as_str()), ("Patient", later.as_str())] {
        assert!(matches!(again.store.read(ty, id).await.unwrap(), hearth_store::Current::Found(_)));
    }
    let raw = raw_data(&config).await;
    assert!(!holds(&raw, NAME) && !holds(&raw, NOTE));
}

#[tokio::test]
async fn sqlite_is_sqlcipher() {
    if backend() != "sqlite" {
        return;
    }
    use sqlx::{ConnectOptions, Row};
    let mut conn = sqlx::sqlite::SqliteConnectOptions::new().in_memory(true).connect().await.unwrap();
    let row = sqlx::query("PRAGMA cipher_version").fetch_one(&mut conn).await.unwrap();
    let version: String = row.try_get(0).unwrap();
    assert!(version.starts_with('4'), "{version}");
}

#[tokio::test]
async fn export_files_are_encrypted_on_disk_and_served_decrypted() {
    let (_k, key) = key_file(K1);
    let app = encrypted_app(&key).await;
    write_phi(&app).await;
    let r = app
        .send(
            app.request(reqwest::Method::GET, "/fhir/$export?_type=Patient,Observation")
                .header("prefer", "respond-async")
                .header("accept", "application/fhir+json"),
        )
        .await;
    assert_eq!(r.status, 202, "{}", r.text);
    let status_url = r.header("content-location").unwrap();
    let mut manifest = Value::Null;
    for _ in 0..300 {
        let r = app.send(app.client.get(&status_url)).await;
        if r.status == 200 {
            manifest = r.json();
            break;
        }
        assert_eq!(r.status, 202, "{}", r.text);
        tokio::time::sleep(std::time::Duration::from_millis(100)).await;
    }
    let outputs = manifest["output"].as_array().expect("the export did not finish");
    let mut served = String::new();
    for o in outputs {
        let r = app.send(app.client.get(o["url"].as_str().unwrap())).await;
        assert_eq!(r.status, 200);
        served.push_str(&r.text);
    }
    assert!(served.contains(NAME) && served.contains(NOTE) && served.contains(PHONE), "{served}");
    let job = status_url.rsplit('/').next().unwrap();
    let dir = app.app.config.data_dir.join("exports").join(job);
    let mut on_disk = Vec::new();
    for entry in std::fs::read_dir(&dir).unwrap() {
        on_disk.extend(std::fs::read(entry.unwrap().path()).unwrap());
    }
    assert!(on_disk.len() > 100);
    for needle in [NAME, BIRTH, PHONE, NOTE, "resourceType"] {
        assert!(!holds(&on_disk, needle), "{needle} is readable in an export file");
    }
}
