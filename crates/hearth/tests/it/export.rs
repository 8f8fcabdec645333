//! `Patient/$everything` and Bulk Data `$export` (kick-off, polling, manifest, files, `_type`,
//! `_since`, Patient and Group level, delete, job claiming and resumption).

use std::collections::{BTreeMap, HashSet};
use std::time::Duration;

use chrono::Utc;
use serde_json::{Value, json};

use crate::common::{Resp, TestApp, patient};

struct Fixture {
    p: String,
    other: String,
    org: String,
    prac: String,
    med: String,
    obs: Vec<String>,
}

async fn fixture(t: &TestApp) -> Fixture {
    let org = t.create(&json!({"resourceType": "Organization", "name": "Clinic"})).await;
    let prac = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Doc"}]})).await;
    let _unrelated = t.create(&json!({"resourceType": "Practitioner", "name": [{"family": "Other"}]})).await;
    let med = t.create(&json!({"resourceType": "Medication", "code": {"text": "aspirin"}})).await;
    let mut pb = patient("Everything");
    pb["managingOrganization"] = json!({"reference": format!("Organization/{org}")});
    pb["generalPractitioner"] = json!([{"reference": format!("Practitioner/{prac}")}]);
    let p = t.create(&pb).await;
    let other = t.create(&patient("Other")).await;
    let obs_of = |subject: &str| {
        json!({"resourceType": "Observation", "status": "final", "code": {"text": "hr"},
               "subject": {"reference": format!("Patient/{subject}")},
               "performer": [{"reference": format!("Practitioner/{prac}")}]})
    };
    let mut obs = Vec::new();
    for _ in 0..3 {
        obs.push(t.create(&obs_of(&p)).await);
    }
    t.create(&obs_of(&other)).await;
    t.create(&json!({"resourceType": "Encounter", "status": "finished",
        "class": {"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "AMB"},
        "subject": {"reference": format!("Patient/{p}")},
        "serviceProvider": {"reference": format!("Organization/{org}")}}))
        .await;
    t.create(&json!({"resourceType": "MedicationRequest", "status": "active", "intent": "order",
        "subject": {"reference": format!("Patient/{p}")},
        "medicationReference": {"reference": format!("Medication/{med}")}}))
        .await;
    Fixture { p, other, org, prac, med, obs }
}

fn keys(bundle: &Value) -> Vec<String> {
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

fn next_link(bundle: &Value) -> Option<String> {
    bundle["link"].as_array()?.iter().find(|l| l["relation"] == "next").map(|l| l["url"].as_str().unwrap().to_owned())
}

#[tokio::test]
async fn everything_returns_the_compartment_and_its_references_once_across_pages() {
    let t = TestApp::spawn().await;
    let f = fixture(&t).await;
    let r = t.get(&format!("/fhir/Patient/{}/$everything", f.p)).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let b = r.json();
    crate::common::assert_valid_r4(&b);
    assert_eq!(b["type"], "searchset");
    let all = keys(&b);
    // patient + 3 Observations + Encounter + MedicationRequest + Organization, Practitioner, Medication
    assert_eq!(b["total"], 9, "{all:?}");
    assert_eq!(all.len(), 9);
    assert_eq!(all[0], format!("Patient/{}", f.p));
    for k in [format!("Organization/{}", f.org), format!("Practitioner/{}", f.prac), format!("Medication/{}", f.med)] {
        assert!(all.contains(&k), "{k} missing from {all:?}");
    }
    for o in &f.obs {
        assert!(all.contains(&format!("Observation/{o}")));
    }
    assert!(!all.contains(&format!("Patient/{}", f.other)));
    assert_eq!(all.iter().filter(|k| k.starts_with("Practitioner/")).count(), 1, "unrelated practitioner: {all:?}");

    // Paging with _count=2 visits every resource exactly once.
    let mut seen = Vec::new();
    let mut url = t.url(&format!("/fhir/Patient/{}/$everything?_count=2", f.p));
    let mut pages = 0;
    loop {
        let page = t.send(t.client.get(&url)).await.json();
        assert_eq!(page["total"], 9);
        let ks = keys(&page);
        assert!(ks.len() <= 2);
        seen.extend(ks);
        pages += 1;
        match next_link(&page) {
            Some(n) => url = n,
            None => break,
        }
    }
    assert_eq!(pages, 5);
    assert_eq!(seen.len(), 9, "{seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>().len(), 9, "duplicates: {seen:?}");
    assert_eq!(seen.iter().collect::<HashSet<_>>(), all.iter().collect::<HashSet<_>>());

    // _type narrows.
    let b = t.get(&format!("/fhir/Patient/{}/$everything?_type=Observation,Patient", f.p)).await.json();
    assert_eq!(b["total"], 4);
    let b = t.get(&format!("/fhir/Patient/{}/$everything?_type=Organization", f.p)).await.json();
    assert_eq!(keys(&b), vec![format!("Organization/{}", f.org)]);

    // _since: only what changed at or after the instant.
    let later = Utc::now() + chrono::Duration::days(1);
    t.clock.set(later);
    let mut changed = t.get(&format!("/fhir/Observation/{}", f.obs[0])).await.json();
    changed["status"] = json!("amended");
    assert_eq!(t.put(&format!("/fhir/Observation/{}", f.obs[0]), &changed).await.status, 200);
    let since = (later - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let b = t.get(&format!("/fhir/Patient/{}/$everything?_since={since}", f.p)).await.json();
    assert_eq!(keys(&b), vec![format!("Observation/{}", f.obs[0])]);

    // POST with a Parameters body.
    let params = json!({"resourceType": "Parameters", "parameter": [{"name": "_count", "valueInteger": 3}]});
    let r = t.post(&format!("/fhir/Patient/{}/$everything", f.p), &params).await;
    assert_eq!(r.status, 200, "{}", r.text);
    assert_eq!(keys(&r.json()).len(), 3);
    assert!(next_link(&r.json()).is_some());

    // Errors are OperationOutcomes.
    let r = t.get("/fhir/Patient/nobody/$everything").await;
    assert_eq!(r.status, 404);
    assert_eq!(r.outcome_issue()["code"], "not-found");
    let r = t.get(&format!("/fhir/Patient/{}/$everything?_type=Nope", f.p)).await;
    assert_eq!(r.status, 400);
    r.outcome_issue();
    let r = t.get(&format!("/fhir/Patient/{}/$everything?_cursor=zz", f.p)).await;
    assert_eq!(r.status, 400);
    r.outcome_issue();
}

async fn kickoff(t: &TestApp, path: &str) -> Resp {
    t.send(
        t.request(reqwest::Method::GET, path)
            .header("prefer", "respond-async")
            .header("accept", "application/fhir+json"),
    )
    .await
}

/// Polls a status URL until the manifest arrives.
async fn manifest(t: &TestApp, status_url: &str) -> Value {
    for _ in 0..300 {
        let r = t.send(t.client.get(status_url)).await;
        match r.status {
            202 => {
                assert!(r.header("x-progress").is_some(), "202 without X-Progress");
                tokio::time::sleep(Duration::from_millis(100)).await;
            }
            200 => {
                assert!(r.header("content-type").unwrap().starts_with("application/json"));
                return r.json();
            }
            s => panic!("status {s}: {}", r.text),
        }
    }
    panic!("export did not finish");
}

/// type → the ids in its file, checking content type, line count and resource types.
async fn files(t: &TestApp, manifest: &Value) -> BTreeMap<String, Vec<String>> {
    let mut out = BTreeMap::new();
    for o in manifest["output"].as_array().unwrap() {
        let ty = o["type"].as_str().unwrap().to_owned();
        let r = t.send(t.client.get(o["url"].as_str().unwrap())).await;
        assert_eq!(r.status, 200);
        assert_eq!(r.header("content-type").unwrap(), "application/fhir+ndjson");
        let ids: Vec<String> = r
            .text
            .lines()
            .map(|l| {
                let v: Value = serde_json::from_str(l).unwrap();
                assert_eq!(v["resourceType"], ty.as_str());
                v["id"].as_str().unwrap().to_owned()
            })
            .collect();
        assert_eq!(o["count"], ids.len());
        out.insert(ty, ids);
    }
    out
}

async fn export(t: &TestApp, path: &str) -> (String, Value) {
    let r = kickoff(t, path).await;
    assert_eq!(r.status, 202, "{}", r.text);
    let status_url = r.header("content-location").unwrap();
    let m = manifest(t, &status_url).await;
    (status_url, m)
}

#[tokio::test]
async fn bulk_export_kickoff_poll_manifest_files_type_since_group_and_delete() {
    let t = TestApp::spawn().await;
    let f = fixture(&t).await;

    // The CapabilityStatement names the operations.
    let cs = t.get("/fhir/metadata").await.json();
    crate::common::assert_valid_r4(&cs);
    assert_eq!(cs["rest"][0]["operation"][0]["name"], "export");
    let resource = |ty: &str| cs["rest"][0]["resource"].as_array().unwrap().iter().find(|r| r["type"] == ty).cloned();
    let ops = |ty: &str| -> Vec<String> {
        resource(ty).unwrap()["operation"]
            .as_array()
            .unwrap()
            .iter()
            .map(|o| o["name"].as_str().unwrap().to_owned())
            .collect()
    };
    assert_eq!(ops("Patient"), vec!["everything".to_owned(), "export".to_owned()]);
    assert_eq!(ops("Group"), vec!["export".to_owned()]);

    // Kick-off errors.
    let r = t.get("/fhir/$export").await;
    assert_eq!(r.status, 400);
    r.outcome_issue();
    let r = kickoff(&t, "/fhir/$export?_outputFormat=text/csv").await;
    assert_eq!(r.status, 400);
    r.outcome_issue();
    let r = kickoff(&t, "/fhir/$export?_type=Nope").await;
    assert_eq!(r.status, 400);
    let r = kickoff(&t, "/fhir/Group/none/$export").await;
    assert_eq!(r.status, 404);
    r.outcome_issue();

    // System level: everything, one file per type.
    let (status_url, m) = export(&t, "/fhir/$export?_outputFormat=application/fhir%2Bndjson").await;
    assert_eq!(m["requiresAccessToken"], true);
    // The files need the token too.
    let file_url = m["output"][0]["url"].as_str().unwrap().to_owned();
    assert_eq!(t.send(t.anonymous().get(&file_url)).await.status, 401);
    assert!(m["transactionTime"].as_str().is_some());
    assert!(m["request"].as_str().unwrap().ends_with("/fhir/$export?_outputFormat=application/fhir%2Bndjson"));
    assert_eq!(m["error"], json!([]));
    let got = files(&t, &m).await;
    let counts: BTreeMap<&str, usize> = got.iter().map(|(k, v)| (k.as_str(), v.len())).collect();
    assert_eq!(
        counts,
        BTreeMap::from([
            ("Encounter", 1),
            ("Medication", 1),
            ("MedicationRequest", 1),
            ("Observation", 4),
            ("Organization", 1),
            ("Patient", 2),
            ("Practitioner", 2)
        ])
    );

    // DELETE removes the job and its files.
    let job = status_url.rsplit('/').next().unwrap().to_owned();
    let dir = t.app.config.data_dir.join("exports").join(&job);
    assert!(dir.exists());
    let file_url = m["output"][0]["url"].as_str().unwrap().to_owned();
    let r = t.send(t.client.delete(&status_url)).await;
    assert_eq!(r.status, 202, "{}", r.text);
    assert_eq!(t.send(t.client.get(&status_url)).await.status, 404);
    assert_eq!(t.send(t.client.get(&file_url)).await.status, 404);
    assert_eq!(t.send(t.client.delete(&status_url)).await.status, 404);
    assert!(!dir.exists());

    // _type
    let (_, m) = export(&t, "/fhir/$export?_type=Observation,Patient").await;
    let got = files(&t, &m).await;
    assert_eq!(got.keys().cloned().collect::<Vec<_>>(), vec!["Observation".to_owned(), "Patient".to_owned()]);

    // _since
    let later = Utc::now() + chrono::Duration::days(2);
    t.clock.set(later);
    let mut changed = t.get(&format!("/fhir/Patient/{}", f.other)).await.json();
    changed["gender"] = json!("male");
    assert_eq!(t.put(&format!("/fhir/Patient/{}", f.other), &changed).await.status, 200);
    let since = (later - chrono::Duration::hours(1)).to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let (_, m) = export(&t, &format!("/fhir/$export?_since={since}")).await;
    let got = files(&t, &m).await;
    assert_eq!(got, BTreeMap::from([("Patient".to_owned(), vec![f.other.clone()])]));

    // Patient level: patients and their compartments, not Organizations or Medications.
    let (_, m) = export(&t, "/fhir/Patient/$export").await;
    let got = files(&t, &m).await;
    assert_eq!(got["Patient"].len(), 2);
    assert_eq!(got["Observation"].len(), 4);
    assert!(!got.contains_key("Organization") && !got.contains_key("Medication"), "{got:?}");

    // Group level: only the members.
    let group = t
        .create(&json!({"resourceType": "Group", "type": "person", "actual": true,
                        "member": [{"entity": {"reference": format!("Patient/{}", f.p)}}]}))
        .await;
    let (_, m) = export(&t, &format!("/fhir/Group/{group}/$export?_type=Patient,Observation")).await;
    let got = files(&t, &m).await;
    assert_eq!(got["Patient"], vec![f.p.clone()]);
    let mut obs = got["Observation"].clone();
    obs.sort();
    let mut want = f.obs.clone();
    want.sort();
    assert_eq!(obs, want);
}

#[tokio::test]
async fn an_export_job_is_claimed_once_and_a_dead_workers_job_is_resumed() {
    let t = TestApp::spawn().await;
    t.create(&patient("Resumed")).await;
    let store = &t.app.store;
    let now = t.app.clock.now();
    let request = json!({"url": "http://x/fhir/$export", "level": "system"}).to_string();

    // A job claimed by a worker whose lease is still valid cannot be claimed by another.
    // (The server's own worker may be the first claimer: either way exactly one claim wins.)
    store.export_job_create(hearth_store::JobKind::Export, "claim-once", &request, now, now).await.unwrap();
    let far = now + chrono::Duration::hours(1);
    let first = store.export_job_claim(hearth_store::JobKind::Export, "worker-a", now, far).await.unwrap();
    let second = store.export_job_claim(hearth_store::JobKind::Export, "worker-b", now, far).await.unwrap();
    assert!(
        !(first.as_ref().is_some_and(|j| j.id == "claim-once")
            && second.as_ref().is_some_and(|j| j.id == "claim-once"))
    );

    // A job whose worker died (its lease expired) is claimed again and finished by the server.
    store.export_job_create(hearth_store::JobKind::Export, "orphan", &request, now, now).await.unwrap();
    for _ in 0..50 {
        // Claim as a worker that then "dies": its lease has already ended.
        let claimed = store
            .export_job_claim(hearth_store::JobKind::Export, "dead-worker", now, now - chrono::Duration::seconds(1))
            .await
            .unwrap();
        if claimed.is_some_and(|j| j.id == "orphan")
            || store.export_job("orphan").await.unwrap().unwrap().status != hearth_store::JobStatus::Pending
        {
            break;
        }
    }
    let base = t.url("/fhir");
    let m = manifest(&t, &format!("{base}/$export-status/orphan")).await;
    let got = files(&t, &m).await;
    assert_eq!(got["Patient"].len(), 1);
}

/// Every directory and file under `dir` with its mode bits (recursively).
fn modes(dir: &std::path::Path, out: &mut Vec<(std::path::PathBuf, u32, bool)>) {
    use std::os::unix::fs::PermissionsExt;
    let m = std::fs::metadata(dir).unwrap();
    out.push((dir.to_path_buf(), m.permissions().mode() & 0o777, true));
    for e in std::fs::read_dir(dir).unwrap() {
        let path = e.unwrap().path();
        let m = std::fs::metadata(&path).unwrap();
        if m.is_dir() {
            modes(&path, out);
        } else {
            out.push((path, m.permissions().mode() & 0o777, false));
        }
    }
}

#[tokio::test]
async fn the_data_directory_and_every_file_in_it_are_private_to_the_service_account() {
    let t = TestApp::spawn().await;
    fixture(&t).await;
    // An export writes files of health data under the data directory.
    let (_, m) = export(&t, "/fhir/$export").await;
    assert!(!m["output"].as_array().unwrap().is_empty());
    let dir = t.app.config.data_dir.clone();
    let mut found = Vec::new();
    modes(&dir, &mut found);
    let names: Vec<String> =
        found.iter().filter_map(|(p, _, _)| p.file_name().map(|n| n.to_string_lossy().into_owned())).collect();
    for must in ["auth-pepper", "exports"] {
        assert!(names.iter().any(|n| n == must), "{must} not in {names:?}");
    }
    assert!(names.iter().any(|n| n.ends_with(".ndjson")), "no export file in {names:?}");
    if crate::common::backend() == "sqlite" {
        for must in ["hearth.db", "hearth.db-wal", "hearth.db-shm", "hearth-audit.db", "hearth-audit.db-wal"] {
            assert!(names.iter().any(|n| n == must), "{must} not in {names:?}");
        }
    }
    let open: Vec<String> = found
        .iter()
        .filter(|(_, mode, is_dir)| if *is_dir { *mode != 0o700 } else { *mode != 0o600 })
        .map(|(p, mode, _)| format!("{} {mode:o}", p.display()))
        .collect();
    assert!(open.is_empty(), "not private to the account: {open:?}");
}
