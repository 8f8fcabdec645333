//! `hearth import` and `hearth export` (the real binary): a Synthea subset without duplicated
//! shared resources, the export → re-import round trip, kill -9 in the middle of an import,
//! import over HTTP with failures reported.

use std::collections::{BTreeMap, BTreeSet};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::Command;

use crate::common::{TestApp, fresh_postgres_database};

const BIN: &str = env!("CARGO_BIN_EXE_hearth");

fn synthea_dir() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../../tests-data/synthea-import")
}

/// A database of its own: a data directory and, on PostgreSQL, a fresh database.
struct Db {
    env: Vec<(String, String)>,
}

async fn db(dir: &Path) -> Db {
    let mut env = vec![
        ("HEARTH_DATA_DIR".to_owned(), dir.join("data").display().to_string()),
        ("HEARTH_LOG_LEVEL".to_owned(), "warn".to_owned()),
    ];
    if let Some(url) = fresh_postgres_database().await {
        env.push(("HEARTH_DATABASE_URL".to_owned(), url));
    }
    Db { env }
}

fn hearth(db: &Db, cwd: &Path, args: &[&str]) -> Command {
    let mut c = Command::new(BIN);
    c.current_dir(cwd).env_clear().args(args).stdout(Stdio::piped()).stderr(Stdio::piped()).kill_on_drop(true);
    for (k, v) in &db.env {
        c.env(k, v);
    }
    c
}

async fn run(db: &Db, cwd: &Path, args: &[&str]) -> (bool, String) {
    let out = hearth(db, cwd, args).output().await.unwrap();
    (out.status.success(), String::from_utf8_lossy(&out.stderr).into_owned())
}

/// `hearth export` into `out`, then the resources per type (type → ids).
async fn export_ids(db: &Db, cwd: &Path, out: &Path) -> BTreeMap<String, Vec<String>> {
    let (ok, err) = run(db, cwd, &["export", "--dir", out.to_str().unwrap()]).await;
    assert!(ok, "export failed: {err}");
    assert!(err.contains("export done"), "{err}");
    let mut by_type = BTreeMap::new();
    for e in std::fs::read_dir(out).unwrap() {
        let p = e.unwrap().path();
        let ty = p.file_stem().unwrap().to_str().unwrap().to_owned();
        let ids: Vec<String> = std::fs::read_to_string(&p)
            .unwrap()
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["resourceType"], ty.as_str());
                v["id"].as_str().unwrap().to_owned()
            })
            .collect();
        by_type.insert(ty, ids);
    }
    by_type
}

/// What the vendored subset must load to: every entry once, except shared Organizations and
/// Practitioners, once per identifier.
fn expected_synthea_counts() -> BTreeMap<String, usize> {
    let mut counts = BTreeMap::new();
    let mut shared: BTreeMap<String, BTreeSet<String>> = BTreeMap::new();
    for e in std::fs::read_dir(synthea_dir()).unwrap() {
        let p = e.unwrap().path();
        if p.extension().and_then(|x| x.to_str()) != Some("json") {
            continue;
        }
        let b: Value = serde_json::from_slice(&std::fs::read(&p).unwrap()).unwrap();
        for entry in b["entry"].as_array().unwrap() {
            let r = &entry["resource"];
            let ty = r["resourceType"].as_str().unwrap().to_owned();
            if ty == "Organization" || ty == "Practitioner" {
                let ident = &r["identifier"][0];
                shared.entry(ty).or_default().insert(format!("{}|{}", ident["system"], ident["value"]));
            } else {
                *counts.entry(ty).or_insert(0) += 1;
            }
        }
    }
    for (ty, ids) in shared {
        counts.insert(ty, ids.len());
    }
    counts
}

fn counts(ids: &BTreeMap<String, Vec<String>>) -> BTreeMap<String, usize> {
    ids.iter().map(|(k, v)| (k.clone(), v.len())).collect()
}

#[tokio::test]
async fn synthea_subset_imports_without_duplicates_and_round_trips_through_export() {
    let tmp = tempfile::tempdir().unwrap();
    let first = db(&tmp.path().join("a")).await;
    let synthea = synthea_dir();
    let (ok, err) = run(&first, tmp.path(), &["import", synthea.to_str().unwrap()]).await;
    assert!(ok, "import failed: {err}");
    assert!(err.contains("import done: 4 files, 4 bundles"), "{err}");
    assert!(err.contains("resources/s"), "{err}");
    assert!(err.contains("0 failed"), "{err}");

    let exported = export_ids(&first, tmp.path(), &tmp.path().join("out1")).await;
    let want = expected_synthea_counts();
    assert_eq!(counts(&exported), want, "per-type counts (shared resources must not be duplicated)");
    assert_eq!(want["Organization"], 102);
    assert_eq!(want["Practitioner"], 102);

    // Importing the same files again duplicates nothing: shared resources by identifier, every
    // other entry by the id of its urn:uuid fullUrl.
    let (ok, err) = run(&first, tmp.path(), &["import", synthea.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(err.contains("; 0 created"), "{err}");
    let again = export_ids(&first, tmp.path(), &tmp.path().join("out1b")).await;
    assert_eq!(counts(&again), want, "a second import of the same files changes no count");

    // Export → import into a fresh database: the same resources, by type and id.
    let second = db(&tmp.path().join("b")).await;
    let out1 = tmp.path().join("out1");
    let (ok, err) = run(&second, tmp.path(), &["import", out1.to_str().unwrap()]).await;
    assert!(ok, "re-import failed: {err}");
    let total: usize = want.values().sum();
    assert!(err.contains(&format!("{total} created")), "{err}");
    let round = export_ids(&second, tmp.path(), &tmp.path().join("out2")).await;
    assert_eq!(counts(&round), want);
    let sorted = |m: &BTreeMap<String, Vec<String>>| -> BTreeMap<String, BTreeSet<String>> {
        m.iter().map(|(k, v)| (k.clone(), v.iter().cloned().collect())).collect()
    };
    assert_eq!(sorted(&round), sorted(&exported));

    // --types and --since
    let out3 = tmp.path().join("out3");
    let (ok, err) =
        run(&second, tmp.path(), &["export", "--dir", out3.to_str().unwrap(), "--types", "Patient,Encounter"]).await;
    assert!(ok, "{err}");
    let mut names: Vec<String> =
        std::fs::read_dir(&out3).unwrap().map(|e| e.unwrap().file_name().to_string_lossy().into_owned()).collect();
    names.sort();
    assert_eq!(names, vec!["Encounter.ndjson".to_owned(), "Patient.ndjson".to_owned()]);
    let out4 = tmp.path().join("out4");
    let (ok, err) =
        run(&second, tmp.path(), &["export", "--dir", out4.to_str().unwrap(), "--since", "2999-01-01"]).await;
    assert!(ok, "{err}");
    assert_eq!(std::fs::read_dir(&out4).unwrap().count(), 0);
}

/// Transaction Bundles whose entries carry their ids, so each Bundle can be checked whole.
fn write_bundles(dir: &Path, bundles: usize, per_bundle: usize) {
    std::fs::create_dir_all(dir).unwrap();
    for k in 0..bundles {
        let mut entries = vec![json!({
            "resource": {"resourceType": "Patient", "id": format!("k{k}"), "gender": "female"},
            "request": {"method": "PUT", "url": format!("Patient/k{k}")}
        })];
        for j in 1..per_bundle {
            entries.push(json!({
                "resource": {"resourceType": "Observation", "id": format!("k{k}-{j}"), "status": "final",
                             "code": {"text": "x"}, "subject": {"reference": format!("Patient/k{k}")}},
                "request": {"method": "PUT", "url": format!("Observation/k{k}-{j}")}
            }));
        }
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        std::fs::write(dir.join(format!("b{k:05}.json")), b.to_string()).unwrap();
    }
}

/// Reads the import's stderr until a progress line says at least two files are done.
async fn wait_for_progress(lines: &mut tokio::io::Lines<BufReader<tokio::process::ChildStderr>>) {
    let progressed = tokio::time::timeout(Duration::from_secs(120), async {
        while let Some(line) = lines.next_line().await.unwrap() {
            if let Some(rest) = line.strip_prefix("import: ")
                && rest.split(" files").next().and_then(|n| n.parse::<u64>().ok()).is_some_and(|n| n >= 2)
            {
                return true;
            }
        }
        false
    })
    .await
    .unwrap();
    assert!(progressed, "no progress line");
}

#[tokio::test]
async fn kill_9_during_import_leaves_only_whole_bundles() {
    let tmp = tempfile::tempdir().unwrap();
    let d = db(&tmp.path().join("a")).await;
    let (bundles, per) = (1500, 10);
    let input = tmp.path().join("in");
    write_bundles(&input, bundles, per);
    // Migrate first so the import starts writing at once.
    assert!(run(&d, tmp.path(), &["migrate"]).await.0);

    let mut child = hearth(&d, tmp.path(), &["import", input.to_str().unwrap()]).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    // Wait for a progress line showing committed bundles, then SIGKILL.
    wait_for_progress(&mut lines).await;
    assert!(child.try_wait().unwrap().is_none(), "the import finished before it could be killed");
    child.start_kill().unwrap();
    child.wait().await.unwrap();

    let ids = export_ids(&d, tmp.path(), &tmp.path().join("out")).await;
    let present: BTreeSet<String> = ids.values().flatten().cloned().collect();
    let mut complete = 0;
    for k in 0..bundles {
        let mut members = vec![format!("k{k}")];
        members.extend((1..per).map(|j| format!("k{k}-{j}")));
        let n = members.iter().filter(|m| present.contains(*m)).count();
        assert!(n == 0 || n == per, "bundle {k} is partial: {n} of {per} entries");
        if n == per {
            complete += 1;
        }
    }
    assert!(complete >= 1, "nothing was committed before the kill");
    assert!(complete < bundles, "the import was not interrupted");

    // Running the same command again resumes and completes: every bundle whole, once.
    let (ok, err) = run(&d, tmp.path(), &["import", input.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(err.contains("resuming"), "{err}");
    let ids = export_ids(&d, tmp.path(), &tmp.path().join("out2")).await;
    assert_eq!(ids["Patient"].len(), bundles);
    assert_eq!(ids["Observation"].len(), bundles * (per - 1));
}

/// Transaction Bundles as generators write them: POSTs with `urn:uuid:` fullUrls, the
/// Observations referring to their Patient by its fullUrl.
fn write_uuid_bundles(dir: &Path, bundles: usize, per_bundle: usize) {
    std::fs::create_dir_all(dir).unwrap();
    let uuid = |k: usize, j: usize| format!("00000000-0000-4000-8000-{:012}", k * 1000 + j);
    for k in 0..bundles {
        let mut entries = vec![json!({
            "fullUrl": format!("urn:uuid:{}", uuid(k, 0)),
            "resource": {"resourceType": "Patient", "gender": "female"},
            "request": {"method": "POST", "url": "Patient"}
        })];
        for j in 1..per_bundle {
            entries.push(json!({
                "fullUrl": format!("urn:uuid:{}", uuid(k, j)),
                "resource": {"resourceType": "Observation", "status": "final", "code": {"text": "x"},
                             "subject": {"reference": format!("urn:uuid:{}", uuid(k, 0))}},
                "request": {"method": "POST", "url": "Observation"}
            }));
        }
        let b = json!({"resourceType": "Bundle", "type": "transaction", "entry": entries});
        std::fs::write(dir.join(format!("u{k:05}.json")), b.to_string()).unwrap();
    }
}

#[tokio::test]
async fn an_interrupted_import_resumes_and_importing_again_duplicates_nothing() {
    let tmp = tempfile::tempdir().unwrap();
    let d = db(&tmp.path().join("a")).await;
    let (bundles, per) = (1500, 5);
    let input = tmp.path().join("in");
    write_uuid_bundles(&input, bundles, per);
    assert!(run(&d, tmp.path(), &["migrate"]).await.0);

    let mut child = hearth(&d, tmp.path(), &["import", input.to_str().unwrap()]).spawn().unwrap();
    let mut lines = BufReader::new(child.stderr.take().unwrap()).lines();
    wait_for_progress(&mut lines).await;
    assert!(child.try_wait().unwrap().is_none(), "the import finished before it could be interrupted");
    let pid = child.id().unwrap().to_string();
    assert!(Command::new("kill").args(["-INT", &pid]).status().await.unwrap().success());
    let mut rest = String::new();
    while let Ok(Some(line)) = lines.next_line().await {
        rest.push_str(&line);
        rest.push('\n');
    }
    let status = child.wait().await.unwrap();
    assert_eq!(status.code(), Some(130), "{rest}");
    assert!(
        rest.contains("import done:") && rest.contains("import interrupted"),
        "a summary, then how to resume: {rest}"
    );
    assert!(tmp.path().join("import-progress.ndjson").exists());

    let (ok, err) = run(&d, tmp.path(), &["import", input.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(err.contains("resuming") && err.contains("files were skipped"), "{err}");
    assert!(!tmp.path().join("import-progress.ndjson").exists(), "a finished run leaves nothing to resume");
    let once = export_ids(&d, tmp.path(), &tmp.path().join("out1")).await;
    assert_eq!(once["Patient"].len(), bundles);
    assert_eq!(once["Observation"].len(), bundles * (per - 1));
    assert!(once["Patient"].contains(&"00000000-0000-4000-8000-000000001000".to_owned()), "ids come from the fullUrls");
    // References to a fullUrl follow it to the id it gave.
    let obs = std::fs::read_to_string(tmp.path().join("out1/Observation.ndjson")).unwrap();
    let first: Value = serde_json::from_str(obs.lines().next().unwrap()).unwrap();
    let subject = first["subject"]["reference"].as_str().unwrap();
    assert!(subject.starts_with("Patient/00000000-0000-4000-8000-"), "{subject}");

    // The whole directory once more: the same counts, nothing created.
    let (ok, err) = run(&d, tmp.path(), &["import", input.to_str().unwrap()]).await;
    assert!(ok, "{err}");
    assert!(err.contains("; 0 created") && !err.contains("resuming"), "{err}");
    let twice = export_ids(&d, tmp.path(), &tmp.path().join("out2")).await;
    assert_eq!(counts(&twice), counts(&once));
}

#[tokio::test]
async fn import_over_http_reports_failures_and_exits_non_zero() {
    let t = TestApp::spawn().await;
    let tmp = tempfile::tempdir().unwrap();
    let file = tmp.path().join("mixed.ndjson");
    let lines = [
        json!({"resourceType": "Patient", "id": "h1", "gender": "female"}).to_string(),
        json!({"resourceType": "Patient", "gender": "male"}).to_string(),
        json!({"resourceType": "Patient", "id": "h2", "birthDate": "yesterday"}).to_string(),
        "{not json".to_owned(),
        String::new(),
        json!({"resourceType": "Observation", "id": "h3", "status": "final", "code": {"text": "x"},
               "subject": {"reference": "Patient/h1"}})
        .to_string(),
    ];
    std::fs::write(&file, lines.join("\n")).unwrap();
    let failures = tmp.path().join("failures.ndjson");
    let d = Db { env: vec![("HEARTH_LOG_LEVEL".to_owned(), "warn".to_owned())] };
    let url = t.url("/fhir");
    let out = hearth(
        &d,
        tmp.path(),
        &[
            "import",
            "--url",
            &url,
            "--token",
            &t.admin_token,
            "--failures",
            failures.to_str().unwrap(),
            file.to_str().unwrap(),
        ],
    )
    .output()
    .await
    .unwrap();
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success(), "{err}");
    assert!(err.contains("3 created") && err.contains("2 failed"), "{err}");
    let reported: Vec<Value> =
        std::fs::read_to_string(&failures).unwrap().lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    assert_eq!(reported.len(), 2);
    assert_eq!(reported[0]["at"]["line"], 3);
    assert!(reported[0]["reason"].as_str().unwrap().starts_with("400"), "{reported:?}");
    assert_eq!(reported[1]["at"]["line"], 4);
    assert_eq!(t.get("/fhir/Patient/h1").await.status, 200);
    assert_eq!(t.get("/fhir/Observation/h3").await.status, 200);
    assert_eq!(t.get("/fhir/Patient/h2").await.status, 404);

    // A Synthea patient Bundle over HTTP: its shared Organization is not duplicated on reload.
    let patient_file = synthea_dir().join("Buster_Hoeger_ad2e3fc5-2b5d-4cb9-8d03-9ea0f4ac8423.json");
    for _ in 0..2 {
        let out = hearth(
            &d,
            tmp.path(),
            &["import", "--url", &url, "--token", &t.admin_token, patient_file.to_str().unwrap()],
        )
        .output()
        .await
        .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }
    // Without a token the server refuses (401): the import stops at once and says why.
    let out =
        hearth(&d, tmp.path(), &["import", "--url", &url, file.to_str().unwrap(), patient_file.to_str().unwrap()])
            .output()
            .await
            .unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused") && err.contains("--token") && err.contains("Stopped"), "{err}");
    assert!(err.contains("import done: 1 files, 0 bundles"), "nothing after the first refusal: {err}");
    let orgs = t.get("/fhir/Organization?_summary=count").await.json();
    assert_eq!(orgs["total"], 1);
    let patients = t.get("/fhir/Patient?_summary=count").await.json();
    assert_eq!(patients["total"], 1 + 1 + 1, "h1, the id-less one, and Buster once however often he is imported");
}
