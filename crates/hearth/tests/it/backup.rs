//! `hearth admin backup` under concurrent writes and `hearth admin restore`, on the configured
//! backend, with encryption on (the plaintext path is the same code without the key).

use std::path::Path;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use hearth_server::Config;
use serde_json::json;

use crate::common::{TestApp, backend, fresh_postgres_database};
use crate::encryption::{K1, NAME, NOTE, encrypted_app, holds, key_file, start_ok, write_phi};

fn hearth(config: &Config, key: &Path, args: &[&str]) -> tokio::process::Command {
    let mut c = tokio::process::Command::new(env!("CARGO_BIN_EXE_hearth"));
    c.args(args).env_clear().env("HEARTH_DATA_DIR", &config.data_dir).env("HEARTH_ENCRYPTION_KEY_FILE", key);
    if let Some(url) = &config.database_url {
        c.env("HEARTH_DATABASE_URL", url.expose());
    }
    c
}

async fn output(mut c: tokio::process::Command) -> (bool, String) {
    let out = c.output().await.unwrap();
    (out.status.success(), format!("{}{}", String::from_utf8_lossy(&out.stdout), String::from_utf8_lossy(&out.stderr)))
}

/// The integrity checks of a restored database, run directly on it.
async fn integrity(config: &Config, key: &str) {
    match config.database_url.as_ref().map(|u| u.expose().clone()) {
        None => {
            use sqlx::{ConnectOptions, Row};
            let path = config.data_dir.join("hearth.db");
            let mut conn = sqlx::sqlite::SqliteConnectOptions::new()
                .filename(&path)
                .pragma("key", format!("\"x'{key}'\""))
                .connect()
                .await
                .unwrap();
            let rows = sqlx::query("PRAGMA integrity_check").fetch_all(&mut conn).await.unwrap();
            assert_eq!(rows.len(), 1);
            assert_eq!(rows[0].try_get::<String, _>(0).unwrap(), "ok");
            let rows = sqlx::query("PRAGMA cipher_integrity_check").fetch_all(&mut conn).await.unwrap();
            assert!(rows.is_empty(), "cipher_integrity_check reported {} problems", rows.len());
        }
        Some(url) => {
            use sqlx::Connection;
            let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
            // Every current pointer has its version, every index row its resource.
            for sql in [
                "SELECT count(*) FROM resources r LEFT JOIN resource_versions v ON v.seq = r.seq WHERE v.seq IS NULL",
                "SELECT count(*) FROM search_string s LEFT JOIN resources r ON r.rid = s.rid WHERE r.rid IS NULL",
                "SELECT count(*) FROM search_reference s LEFT JOIN resources r ON r.rid = s.rid WHERE r.rid IS NULL",
            ] {
                let n: i64 = sqlx::query_scalar(sql).fetch_one(&mut conn).await.unwrap();
                assert_eq!(n, 0, "{sql}");
            }
            conn.close().await.unwrap();
        }
    }
}

#[tokio::test]
async fn a_backup_under_concurrent_writes_restores_every_acknowledged_write() {
    let (_k, key) = key_file(K1);
    let app = Arc::new(encrypted_app(&key).await);
    let phi = write_phi(&app).await;
    let acknowledged: Arc<Mutex<Vec<String>>> = Arc::new(Mutex::new(vec![phi.clone()]));
    let stop = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let writer = {
        let (app, acknowledged, stop) = (app.clone(), acknowledged.clone(), stop.clone());
        tokio::spawn(async move {
            let mut n = 0;
            while !stop.load(std::sync::atomic::Ordering::SeqCst) && n < 2000 {
                let r = app
                    .post(
                        "/fhir/Patient",
                        &json!({"resourceType": "Patient", "name": [{"family": format!("Writer{n}")}]}),
                    )
                    .await;
                assert_eq!(r.status, 201, "{}", r.text);
                acknowledged.lock().unwrap().push(r.json()["id"].as_str().unwrap().to_owned());
                n += 1;
            }
        })
    };
    tokio::time::sleep(Duration::from_millis(300)).await;
    let before: Vec<String> = acknowledged.lock().unwrap().clone();
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearth.backup");
    let (ok, out) = output(hearth(&app.app.config, &key, &["admin", "backup", "--out", file.to_str().unwrap()])).await;
    assert!(ok, "{out}");
    tokio::time::sleep(Duration::from_millis(200)).await;
    stop.store(true, std::sync::atomic::Ordering::SeqCst);
    writer.await.unwrap();
    let after = acknowledged.lock().unwrap().len();
    assert!(
        before.len() > 1 && after > before.len(),
        "writes did not run during the backup ({} {after})",
        before.len()
    );
    let bytes = std::fs::read(&file).unwrap();
    assert!(!holds(&bytes, NAME) && !holds(&bytes, NOTE), "the backup is readable");
    use std::os::unix::fs::PermissionsExt;
    let mode = std::fs::metadata(&file).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600, "the backup file is readable by other accounts: {mode:o}");

    // Restore into a fresh database.
    let target_dir = tempfile::tempdir().unwrap();
    let mut target = app.app.config.clone();
    target.data_dir = target_dir.path().join("data");
    if backend() == "postgres" {
        let url = fresh_postgres_database().await.unwrap();
        target.database_url = Some(hearth_server::config::Secret::new(url));
    }
    let (ok, out) = output(hearth(&target, &key, &["admin", "restore", "--from", file.to_str().unwrap()])).await;
    assert!(ok, "{out}");
    integrity(&target, &K1.to_uppercase()).await;
    let restored = start_ok(&target, |_| {}).await;
    for id in &before {
        assert!(
            matches!(restored.store.read("Patient", id).await.unwrap(), hearth_store::Current::Found(_)),
            "Patient/{id}, acknowledged before the backup started, is missing"
        );
    }
    match restored.store.read("Patient", &phi).await.unwrap() {
        hearth_store::Current::Found(v) => assert!(v.body.unwrap().contains(NAME)),
        other => panic!("{other:?}"),
    }
    // The audit trail came along (FILE.audit), encrypted too, and its chain is intact.
    let audit_bytes = std::fs::read(dir.path().join("hearth.backup.audit")).unwrap();
    assert!(!holds(&audit_bytes, "urn:hearth:account"), "the audit backup is readable");
    match hearth_server::audit::verify(&restored.trail).await.unwrap() {
        hearth_server::audit::Verdict::Intact(n) => assert!(n > 0, "the audit trail was not restored"),
        broken => panic!("{broken:?}"),
    }
    // The restored database takes new writes (identity sequences continue after the rows).
    let served = TestApp::spawn_with({
        let target = target.clone();
        move |c| *c = Config { listen: c.listen, ..target }
    })
    .await;
    served.create(&json!({"resourceType": "Patient", "name": [{"family": "AfterRestore"}]})).await;
    let found = served.get(&format!("/fhir/Patient?name={}", NAME.to_lowercase())).await.json();
    assert_eq!(found["total"], 1, "{found}");
    drop(served);
    restored.store.close().await;

    // A database holding data is not replaced without --force; a damaged backup never.
    let (ok, out) = output(hearth(&target, &key, &["admin", "restore", "--from", file.to_str().unwrap()])).await;
    assert!(!ok && out.contains("not empty") && out.contains("--force"), "{out}");
    let mut damaged = bytes.clone();
    let middle = damaged.len() / 2;
    damaged[middle] ^= 0x40;
    let bad = dir.path().join("damaged.backup");
    std::fs::write(&bad, &damaged).unwrap();
    let (ok, out) =
        output(hearth(&target, &key, &["admin", "restore", "--force", "--from", bad.to_str().unwrap()])).await;
    assert!(!ok && out.contains("SHA-256"), "{out}");
}

#[tokio::test]
async fn a_backup_needs_its_key_to_restore() {
    let (_k, key) = key_file(K1);
    let app = encrypted_app(&key).await;
    write_phi(&app).await;
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("hearth.backup");
    let (ok, out) = output(hearth(&app.app.config, &key, &["admin", "backup", "--out", file.to_str().unwrap()])).await;
    assert!(ok, "{out}");
    let mut target = app.app.config.clone();
    target.data_dir = dir.path().join("other");
    if backend() == "postgres" {
        target.database_url = Some(hearth_server::config::Secret::new(fresh_postgres_database().await.unwrap()));
    }
    let (_k2, other) = key_file(crate::encryption::K2);
    let (ok, out) = output(hearth(&target, &other, &["admin", "restore", "--from", file.to_str().unwrap()])).await;
    assert!(!ok && out.contains("--key-file"), "{out}");
    // With the backup's key given, it is restored under the configured (new) key.
    let args = ["admin", "restore", "--from", file.to_str().unwrap(), "--key-file", key.to_str().unwrap()];
    let (ok, out) = output(hearth(&target, &other, &args)).await;
    assert!(ok, "{out}");
    let restored = start_ok(&target, |c| c.encryption_key_file = Some(other.clone())).await;
    let page = restored.store.scan(Some(&["Patient".to_owned()]), 0, 10).await.unwrap();
    assert!(page.iter().any(|(_, v)| v.body.as_deref().unwrap_or_default().contains(NAME)));
}
