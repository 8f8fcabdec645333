//! Documents (issue 22): uploads (multipart and tus 1.0), the blob store on local files and on
//! a real S3-compatible server (moto), encryption at rest, the size limit, ranges, deletion,
//! erasure, and a patient refused another patient's document (audited).

use std::path::{Path, PathBuf};
use std::time::Duration;

use serde_json::Value;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::common::{TestApp, patient, seed_account};

const KEY: &str = "5a5b5c5d5e5f505152535455565758595a5b5c5d5e5f50515253545556575859";

pub(crate) fn bearer(token: &str) -> reqwest::Client {
    let mut h = reqwest::header::HeaderMap::new();
    h.insert(reqwest::header::AUTHORIZATION, format!("Bearer {token}").parse().unwrap());
    reqwest::Client::builder().default_headers(h).build().unwrap()
}

/// A patient record and a patient account linked to it: (patient id, account id, token).
pub(crate) async fn patient_account(t: &TestApp, family: &str) -> (String, String, String) {
    let pid = t.create(&patient(family)).await;
    let account = format!("doc-{family}-{}", std::process::id());
    let token = seed_account(&t.app, &account, "patient", Some(format!("Patient/{pid}")), None).await;
    (pid, account, token)
}

/// A PDF-looking file of `n` bytes (the type is known from its first bytes).
fn pdf(n: usize) -> Vec<u8> {
    let mut v = b"%PDF-1.7\n".to_vec();
    v.extend((0..n.saturating_sub(9)).map(|i| (i * 7 % 251) as u8));
    v
}

/// A multipart/form-data body: text fields, then `file`.
fn multipart(fields: &[(&str, &str)], file: &[u8]) -> (String, Vec<u8>) {
    let boundary = "hearth-test-boundary-7d1f";
    let mut body = Vec::new();
    for (k, v) in fields {
        body.extend(format!("--{boundary}\r\nContent-Disposition: form-data; name=\"{k}\"\r\n\r\n{v}\r\n").as_bytes());
    }
    body.extend(
        format!(
            "--{boundary}\r\nContent-Disposition: form-data; name=\"file\"; filename=\"scan.pdf\"\r\n\
             Content-Type: application/octet-stream\r\n\r\n"
        )
        .as_bytes(),
    );
    body.extend_from_slice(file);
    body.extend(format!("\r\n--{boundary}--\r\n").as_bytes());
    (format!("multipart/form-data; boundary={boundary}"), body)
}

pub(crate) async fn upload(t: &TestApp, c: &reqwest::Client, fields: &[(&str, &str)], file: &[u8]) -> (u16, Value) {
    let (ct, body) = multipart(fields, file);
    let r = t.send(c.post(t.url("/api/v1/documents")).header("content-type", ct).body(body)).await;
    (r.status, serde_json::from_str(&r.text).unwrap_or(Value::Null))
}

async fn download(
    t: &TestApp,
    c: &reqwest::Client,
    id: &str,
    range: Option<&str>,
) -> (u16, reqwest::header::HeaderMap, Vec<u8>) {
    let mut req = c.get(t.url(&format!("/api/v1/documents/{id}/content")));
    if let Some(r) = range {
        req = req.header("range", r);
    }
    let r = req.send().await.unwrap();
    let status = r.status().as_u16();
    let headers = r.headers().clone();
    (status, headers, r.bytes().await.unwrap().to_vec())
}

/// Every regular file under `dir` (none when it does not exist).
fn files_under(dir: &Path) -> Vec<PathBuf> {
    let mut out = Vec::new();
    let Ok(entries) = std::fs::read_dir(dir) else { return out };
    for e in entries.flatten() {
        let p = e.path();
        if p.is_dir() {
            out.extend(files_under(&p));
        } else {
            out.push(p);
        }
    }
    out
}

/// The stored blobs (not the staging and reading work files beside them).
fn blob_files(t: &TestApp) -> Vec<PathBuf> {
    let blobs = t.app.config.data_dir.join("blobs");
    files_under(&blobs).into_iter().filter(|p| !p.starts_with(blobs.join(".staging"))).collect()
}

/// The newest audit event.
pub(crate) async fn last_audit_event(t: &TestApp) -> Value {
    t.app.auditor.flush().await.unwrap();
    let n = hearth_store_sql::audit::chain_length(&*t.app.audit_db).await.unwrap();
    let link = hearth_store_sql::audit::links(&*t.app.audit_db, n - 1, 1).await.unwrap().remove(0);
    match t.app.audit_store.read("AuditEvent", &link.event_id).await.unwrap() {
        hearth_store::Current::Found(v) => serde_json::from_str(v.body.as_deref().unwrap()).unwrap(),
        other => panic!("no audit event: {other:?}"),
    }
}

pub(crate) async fn wait_until<F: AsyncFnMut() -> bool>(what: &str, mut check: F) {
    for _ in 0..100 {
        if check().await {
            return;
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("timed out waiting until {what}");
}

fn quick_sweeps(c: &mut hearth_server::config::Config) {
    c.documents.sweep_interval_secs = 1;
    c.documents.sweep_grace_secs = 0;
}

#[tokio::test]
async fn a_patient_uploads_lists_downloads_ranges_and_deletes_an_encrypted_document() {
    let t = TestApp::spawn_with(|c| {
        c.encryption_key = Some(hearth_server::config::Secret::new(KEY.into()));
        quick_sweeps(c);
    })
    .await;
    let (pa, _, ta) = patient_account(&t, "Upload").await;
    let a = bearer(&ta);
    let file = pdf(200_000);
    let (s, doc) =
        upload(&t, &a, &[("type", "11502-2"), ("title", "Lipid panel"), ("date", "2026-11-30")], &file).await;
    assert_eq!(s, 201, "{doc}");
    assert_eq!(doc["patient"], pa.as_str());
    assert_eq!(doc["content_type"], "application/pdf");
    assert_eq!(doc["size"], 200_000);
    assert_eq!(doc["type"], "11502-2");
    let id = doc["id"].as_str().unwrap().to_owned();
    assert!(doc["url"].as_str().unwrap().ends_with(&format!("/api/v1/documents/{id}/content")));

    // The record holds a DocumentReference the FHIR API serves too.
    let r = t.get(&format!("/fhir/DocumentReference/{id}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    crate::common::assert_valid_r4(&r.json());
    assert_eq!(r.json()["content"][0]["attachment"]["url"], doc["url"]);

    // Encrypted at rest: the one stored blob is not the file.
    let blobs = blob_files(&t);
    assert_eq!(blobs.len(), 1, "{blobs:?}");
    let stored = std::fs::read(&blobs[0]).unwrap();
    assert!(stored.starts_with(b"HRTHENC1"));
    assert!(!stored.windows(64).any(|w| w == &file[1000..1064]));

    let (s, _, bytes) = download(&t, &a, &id, None).await;
    assert_eq!(s, 200);
    assert_eq!(bytes, file);
    let (s, h, bytes) = download(&t, &a, &id, Some("bytes=70000-70099")).await;
    assert_eq!(s, 206);
    assert_eq!(h["content-range"], "bytes 70000-70099/200000");
    assert_eq!(bytes, &file[70_000..70_100]);
    let (s, _, bytes) = download(&t, &a, &id, Some("bytes=-10")).await;
    assert_eq!((s, bytes.as_slice()), (206, &file[199_990..]));
    let (s, h, _) = download(&t, &a, &id, Some("bytes=200000-")).await;
    assert_eq!((s, h["content-range"].to_str().unwrap()), (416, "bytes */200000"));

    // The same bytes again are a second document over the same blob.
    let (s, again) = upload(&t, &a, &[("title", "Lipid panel (copy)")], &file).await;
    assert_eq!(s, 201, "{again}");
    assert_eq!(blob_files(&t).len(), 1);

    let long = "x".repeat(5000);
    let (s, e) = upload(&t, &a, &[("title", long.as_str())], &file).await;
    assert_eq!((s, e["error"]["code"].as_str()), (400, Some("invalid_field")), "{e}");

    // Not a document type: refused from the bytes, whatever the client claims.
    let (s, e) = upload(&t, &a, &[], b"<html><script>alert(1)</script></html>").await;
    assert_eq!((s, e["error"]["code"].as_str()), (415, Some("unsupported_type")), "{e}");

    let r = t.send(a.get(t.url("/api/v1/documents?type=11502-2"))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    let listed = r.json()["documents"].as_array().unwrap().clone();
    assert_eq!(listed.len(), 1, "filtered by type: {}", r.text);
    assert_eq!(listed[0]["id"], id.as_str());
    // By the document's own date (FHIR date search syntax).
    let r = t.send(a.get(t.url("/api/v1/documents?date=ge2026-11-01"))).await;
    let dated = r.json()["documents"].as_array().unwrap().clone();
    assert_eq!((dated.len(), &dated[0]["id"]), (1, &Value::from(id.as_str())), "{}", r.text);
    let r = t.send(a.get(t.url("/api/v1/documents?date=lt2026-01-01"))).await;
    assert_eq!(r.json()["documents"].as_array().unwrap().len(), 0, "{}", r.text);
    let r = t.send(a.get(t.url("/api/v1/documents?colour=red"))).await;
    assert_eq!((r.status, r.json()["error"]["code"].as_str()), (400, Some("invalid_query")));
    let r = t.send(a.get(t.url("/api/v1/documents?_count=1"))).await;
    let page = r.json();
    assert_eq!(page["documents"].as_array().unwrap().len(), 1, "{page}");
    assert_eq!(page["documents"][0]["id"], again["id"], "newest first: {page}");
    let next = page["next"].as_str().unwrap();
    let r = t.send(a.get(t.url(&format!("/api/v1/documents?_count=1&cursor={next}")))).await;
    assert_eq!(r.json()["documents"][0]["id"], id.as_str(), "{}", r.text);

    // Deleting the first keeps the blob (the copy names it); deleting the copy removes it.
    let r = t.send(a.delete(t.url(&format!("/api/v1/documents/{id}")))).await;
    assert_eq!(r.status, 204, "{}", r.text);
    // Gone for staff; for the patient it is out of their record's index now, like any deleted
    // resource of theirs on the FHIR API.
    assert_eq!(download(&t, &t.client, &id, None).await.0, 410);
    assert_eq!(
        download(&t, &a, &id, None).await.0,
        t.send(a.get(t.url(&format!("/fhir/DocumentReference/{id}")))).await.status
    );
    let r = t.get(&format!("/fhir/DocumentReference/{id}/_history")).await;
    assert_eq!(r.json()["entry"].as_array().unwrap().len(), 2, "the deletion keeps the history: {}", r.text);
    assert_eq!(blob_files(&t).len(), 1);
    let copy = again["id"].as_str().unwrap();
    let r = t.send(a.delete(t.url(&format!("/api/v1/documents/{copy}")))).await;
    assert_eq!(r.status, 204, "{}", r.text);
    wait_until("the unreferenced blob is removed", async || blob_files(&t).is_empty()).await;
}

#[tokio::test]
async fn a_patient_cannot_fetch_another_patients_document_and_the_attempt_is_audited() {
    let t = TestApp::spawn().await;
    let (_, _, ta) = patient_account(&t, "Owner").await;
    let (_, b_account, tb) = patient_account(&t, "Other").await;
    let (a, b) = (bearer(&ta), bearer(&tb));
    let (s, doc) = upload(&t, &a, &[("title", "Discharge letter")], &pdf(5_000)).await;
    assert_eq!(s, 201, "{doc}");
    let id = doc["id"].as_str().unwrap();

    let (s, _, body) = download(&t, &b, id, None).await;
    assert_eq!(s, 404, "{}", String::from_utf8_lossy(&body));
    let event = last_audit_event(&t).await;
    assert_eq!(event["agent"][0]["who"]["identifier"]["value"], b_account.as_str(), "{event}");
    assert_eq!(event["outcome"], "4", "{event}");
    assert_eq!(event["outcomeDesc"], "404", "{event}");

    let r = t.send(b.delete(t.url(&format!("/api/v1/documents/{id}")))).await;
    assert_eq!(r.status, 404);
    let r = t.send(b.get(t.url(&format!("/api/v1/documents?patient={}", doc["patient"].as_str().unwrap())))).await;
    assert_eq!(r.status, 404, "{}", r.text);
    // A clinician (staff with access) reads it.
    let (s, _, body) = download(&t, &t.client, id, None).await;
    assert_eq!((s, body.len()), (200, 5_000));
}

/// Sends `head` and then `body` over a raw connection, writing at most `send` bytes of the body
/// before closing it (a dropped connection when that is less than the body).
pub(crate) async fn raw_request(t: &TestApp, head: &str, body: &[u8], send: usize) -> Option<String> {
    let addr = t.addr.trim_start_matches("http://");
    let mut conn = tokio::net::TcpStream::connect(addr).await.unwrap();
    conn.write_all(head.as_bytes()).await.unwrap();
    conn.write_all(&body[..send.min(body.len())]).await.unwrap();
    conn.flush().await.unwrap();
    if send < body.len() {
        // Give the server the bytes, then drop the connection mid-body.
        tokio::time::sleep(Duration::from_millis(300)).await;
        drop(conn);
        return None;
    }
    let mut answer = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(10), conn.read_to_end(&mut answer)).await;
    Some(String::from_utf8_lossy(&answer).into_owned())
}

pub(crate) fn tus(c: &reqwest::Client, method: reqwest::Method, url: String) -> reqwest::RequestBuilder {
    c.request(method, url).header("tus-resumable", "1.0.0")
}

pub(crate) fn b64(s: &str) -> String {
    data_encoding::BASE64.encode(s.as_bytes())
}

#[tokio::test]
async fn a_resumed_upload_after_a_dropped_connection_equals_the_original_bytes() {
    let t = TestApp::spawn_with(|c| c.encryption_key = Some(hearth_server::config::Secret::new(KEY.into()))).await;
    let (_, _, ta) = patient_account(&t, "Resume").await;
    let a = bearer(&ta);
    let file = pdf(300_000);

    let r = t.send(tus(&a, reqwest::Method::OPTIONS, t.url("/api/v1/documents/uploads"))).await;
    assert_eq!(r.status, 204);
    assert_eq!(r.header("tus-version").as_deref(), Some("1.0.0"));

    let r = t
        .send(
            tus(&a, reqwest::Method::POST, t.url("/api/v1/documents/uploads"))
                .header("upload-length", file.len().to_string())
                .header(
                    "upload-metadata",
                    format!("title {},type {},filename {}", b64("Scan"), b64("18842-5"), b64("x.pdf")),
                ),
        )
        .await;
    assert_eq!(r.status, 201, "{}", r.text);
    let location = r.header("location").unwrap();
    let path = location.split_once("/api/").map(|(_, p)| format!("/api/{p}")).unwrap();
    // Another account does not see it.
    let (_, _, tb) = patient_account(&t, "Stranger").await;
    let r = t.send(tus(&bearer(&tb), reqwest::Method::HEAD, t.url(&path))).await;
    assert_eq!(r.status, 404);

    // The first PATCH announces the whole file but the connection drops after 120,000 bytes.
    let head = format!(
        "PATCH {path} HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ta}\r\nTus-Resumable: 1.0.0\r\n\
         Upload-Offset: 0\r\nContent-Type: application/offset+octet-stream\r\nContent-Length: {}\r\n\r\n",
        t.addr.trim_start_matches("http://"),
        file.len()
    );
    assert!(raw_request(&t, &head, &file, 120_000).await.is_none());
    let mut offset = 0u64;
    wait_until("the bytes before the drop are counted", async || {
        let r = t.send(tus(&a, reqwest::Method::HEAD, t.url(&path))).await;
        offset = r.header("upload-offset").unwrap().parse().unwrap();
        r.status == 200 && offset > 0
    })
    .await;
    assert!(offset <= 120_000, "{offset}");

    // A PATCH at a wrong offset is refused; resuming from HEAD's offset completes it.
    let r = t
        .send(
            tus(&a, reqwest::Method::PATCH, t.url(&path))
                .header("upload-offset", "1")
                .header("content-type", "application/offset+octet-stream")
                .body(file[1..].to_vec()),
        )
        .await;
    assert_eq!(r.status, 409, "{}", r.text);
    let r = t
        .send(
            tus(&a, reqwest::Method::PATCH, t.url(&path))
                .header("upload-offset", offset.to_string())
                .header("content-type", "application/offset+octet-stream")
                .body(file[offset as usize..].to_vec()),
        )
        .await;
    assert_eq!(r.status, 204, "{}", r.text);
    assert_eq!(r.header("upload-offset").unwrap(), file.len().to_string());
    let id = r.header("hearth-document-id").expect("the new document's id");
    let (s, _, bytes) = download(&t, &a, &id, None).await;
    assert_eq!(s, 200);
    assert!(bytes == file, "the resumed upload differs from the original");
    // The finished upload is gone, its segments too.
    assert_eq!(t.send(tus(&a, reqwest::Method::HEAD, t.url(&path))).await.status, 404);
    assert!(files_under(&t.app.config.data_dir.join("uploads")).is_empty());
    let r = t.get(&format!("/fhir/DocumentReference/{id}")).await;
    assert_eq!(r.json()["type"]["coding"][0]["code"], "18842-5");

    // Termination.
    let r = t
        .send(tus(&a, reqwest::Method::POST, t.url("/api/v1/documents/uploads")).header("upload-length", "1000"))
        .await;
    let path = r.header("location").unwrap().split_once("/api/").map(|(_, p)| format!("/api/{p}")).unwrap();
    assert_eq!(t.send(tus(&a, reqwest::Method::DELETE, t.url(&path))).await.status, 204);
    assert_eq!(t.send(tus(&a, reqwest::Method::HEAD, t.url(&path))).await.status, 404);
}

#[tokio::test]
async fn an_upload_over_the_limit_is_refused_before_it_is_stored() {
    let t = TestApp::spawn_with(|c| c.documents.max_upload_bytes = 100_000).await;
    let (_, _, ta) = patient_account(&t, "Limit").await;
    let a = bearer(&ta);
    let big = pdf(400_000);

    // Declared too large: refused at once.
    let (s, e) = upload(&t, &a, &[], &big).await;
    assert_eq!((s, e["error"]["code"].as_str()), (413, Some("too_large")), "{e}");
    let r = t
        .send(tus(&a, reqwest::Method::POST, t.url("/api/v1/documents/uploads")).header("upload-length", "100001"))
        .await;
    assert_eq!(r.status, 413, "{}", r.text);

    // No length declared (chunked): refused while streaming, once past the limit.
    let (ct, body) = multipart(&[], &big);
    let mut chunked = Vec::new();
    for part in body.chunks(16 * 1024) {
        chunked.extend(format!("{:x}\r\n", part.len()).as_bytes());
        chunked.extend_from_slice(part);
        chunked.extend(b"\r\n");
    }
    chunked.extend(b"0\r\n\r\n");
    let head = format!(
        "POST /api/v1/documents HTTP/1.1\r\nHost: {}\r\nAuthorization: Bearer {ta}\r\nContent-Type: {ct}\r\n\
         Transfer-Encoding: chunked\r\nConnection: close\r\n\r\n",
        t.addr.trim_start_matches("http://")
    );
    let answer = raw_request(&t, &head, &chunked, chunked.len()).await.unwrap();
    assert!(answer.starts_with("HTTP/1.1 413"), "{answer}");
    assert!(answer.contains("\"too_large\""), "{answer}");

    // A tus upload cannot take more than its length.
    let r = t
        .send(tus(&a, reqwest::Method::POST, t.url("/api/v1/documents/uploads")).header("upload-length", "1000"))
        .await;
    let path = r.header("location").unwrap().split_once("/api/").map(|(_, p)| format!("/api/{p}")).unwrap();
    let r = t
        .send(
            tus(&a, reqwest::Method::PATCH, t.url(&path))
                .header("upload-offset", "0")
                .header("content-type", "application/offset+octet-stream")
                .body(big[..2000].to_vec()),
        )
        .await;
    assert_eq!(r.status, 413, "{}", r.text);

    // Nothing was stored, nothing is left in staging.
    assert!(blob_files(&t).is_empty(), "{:?}", blob_files(&t));
    let docs = t.get("/fhir/DocumentReference").await.json();
    assert_eq!(docs["total"], 0, "{docs}");
    let uploads = files_under(&t.app.config.data_dir.join("uploads"));
    assert!(uploads.is_empty(), "{uploads:?}");
}

#[tokio::test]
async fn erasure_removes_the_blobs() {
    let t = TestApp::spawn_with(|c| {
        c.rights.erasure = hearth_server::config::ErasureMode::Immediate;
        quick_sweeps(c);
    })
    .await;
    let (_, _, ta) = patient_account(&t, "Erased").await;
    let (_, _, tk) = patient_account(&t, "Kept").await;
    let (a, k) = (bearer(&ta), bearer(&tk));
    let (s, _) = upload(&t, &a, &[("title", "Mine")], &pdf(30_000)).await;
    assert_eq!(s, 201);
    let shared = pdf(12_345);
    assert_eq!(upload(&t, &a, &[], &shared).await.0, 201);
    let (s, kept) = upload(&t, &k, &[], &shared).await;
    assert_eq!(s, 201);
    assert_eq!(blob_files(&t).len(), 2);

    let r = t.send(a.post(t.url("/api/v1/me/erasure")).header("content-type", "application/json").body("{}")).await;
    assert_eq!(r.status, 200, "{}", r.text);
    // The patient's own blob goes; the one another patient's document also holds stays.
    wait_until("the erased patient's blob is removed", async || blob_files(&t).len() == 1).await;
    let (s, _, bytes) = download(&t, &k, kept["id"].as_str().unwrap(), None).await;
    assert_eq!((s, bytes == shared), (200, true));
}

/// moto's S3 server on a free port, for as long as the guard lives; `None` (loudly) when it is
/// not installed outside CI (`scripts/prepare` installs it).
struct Moto {
    child: tokio::process::Child,
    endpoint: String,
}

impl Drop for Moto {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}

async fn moto() -> Option<Moto> {
    let port = std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
    let child = tokio::process::Command::new("moto_server")
        .args(["-H", "127.0.0.1", "-p", &port.to_string()])
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("moto_server is required on CI (scripts/prepare installs it): {e}");
            }
            eprintln!("\n!!! SKIPPED the S3 test: moto_server is not installed (run scripts/prepare) !!!\n");
            return None;
        }
    };
    let endpoint = format!("http://127.0.0.1:{port}");
    let client = reqwest::Client::new();
    for _ in 0..150 {
        if client.get(format!("{endpoint}/moto-api/")).send().await.is_ok() {
            return Some(Moto { child, endpoint });
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("moto_server did not start");
}

/// An object as an independent S3 client (boto3, which moto depends on) reads it; `None` when
/// the bucket has no such key.
async fn s3_object(endpoint: &str, bucket: &str, key: &str) -> Option<Vec<u8>> {
    let script = "import sys, base64, boto3, botocore\n\
        s3 = boto3.client('s3', endpoint_url=sys.argv[1], region_name='us-east-1', \
        aws_access_key_id='testing', aws_secret_access_key='testing')\n\
        try:\n    print(base64.b64encode(s3.get_object(Bucket=sys.argv[2], Key=sys.argv[3])['Body'].read()).decode())\n\
        except s3.exceptions.NoSuchKey:\n    print('MISSING')\n";
    let out =
        tokio::process::Command::new("python3").args(["-c", script, endpoint, bucket, key]).output().await.unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let text = String::from_utf8(out.stdout).unwrap();
    let text = text.trim();
    (text != "MISSING").then(|| data_encoding::BASE64.decode(text.as_bytes()).unwrap())
}

#[tokio::test]
async fn documents_are_kept_in_s3_compatible_storage() {
    let Some(moto) = moto().await else { return };
    let client = reqwest::Client::new();
    // The bucket (moto accepts an unsigned creation).
    let r = client.put(format!("{}/hearth-docs", moto.endpoint)).send().await.unwrap();
    assert!(r.status().is_success(), "{}", r.text().await.unwrap());
    let endpoint = moto.endpoint.clone();
    let t = TestApp::spawn_with(move |c| {
        c.encryption_key = Some(hearth_server::config::Secret::new(KEY.into()));
        c.documents.storage = hearth_server::config::DocumentStorage::S3;
        c.documents.s3 = Some(hearth_server::config::DocumentsS3Config {
            endpoint,
            bucket: "hearth-docs".into(),
            region: "us-east-1".into(),
            access_key_id: "testing".into(),
            secret_access_key: hearth_server::config::Secret::new("testing".into()),
            prefix: "blobs/".into(),
        });
        quick_sweeps(c);
    })
    .await;
    let (_, _, ta) = patient_account(&t, "Bucket").await;
    let a = bearer(&ta);
    let file = pdf(150_000);
    let (s, doc) = upload(&t, &a, &[("title", "In the bucket")], &file).await;
    assert_eq!(s, 201, "{doc}");
    let id = doc["id"].as_str().unwrap();
    assert!(blob_files(&t).is_empty(), "nothing kept locally");

    let list =
        client.get(format!("{}/hearth-docs?list-type=2", moto.endpoint)).send().await.unwrap().text().await.unwrap();
    let key = list.split("<Key>").nth(1).and_then(|r| r.split("</Key>").next()).expect(&list).to_owned();
    assert!(key.starts_with("blobs/") && key.len() == "blobs/".len() + 3 + 64, "{key}");
    let object = s3_object(&moto.endpoint, "hearth-docs", &key).await.expect("the object is in the bucket");
    assert!(object.starts_with(b"HRTHENC1"), "encrypted in the bucket");
    assert!(!object.windows(64).any(|w| w == &file[1000..1064]));

    let (s, _, bytes) = download(&t, &a, id, None).await;
    assert_eq!(s, 200);
    assert!(bytes == file);
    let (s, _, bytes) = download(&t, &a, id, Some("bytes=100000-100009")).await;
    assert_eq!((s, bytes.as_slice()), (206, &file[100_000..100_010]));

    let r = t.send(a.delete(t.url(&format!("/api/v1/documents/{id}")))).await;
    assert_eq!(r.status, 204);
    wait_until("the object is removed from the bucket", async || {
        s3_object(&moto.endpoint, "hearth-docs", &key).await.is_none()
    })
    .await;
}

/// Whether the reading tools are here; outside CI their absence skips the test loudly.
pub(crate) fn reading_tools() -> bool {
    let present = ["pdftotext", "pdftoppm", "tesseract"]
        .iter()
        .all(|tool| std::process::Command::new(tool).arg("-v").output().is_ok());
    if !present {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("poppler-utils and tesseract-ocr are required on CI (scripts/prepare installs them)");
        }
        eprintln!(
            "\n!!! SKIPPED a document-reading test: pdftotext/pdftoppm/tesseract missing (run scripts/prepare) !!!\n"
        );
    }
    present
}

/// A one-page PDF with `lines` of text in Helvetica (its own text, as a word processor makes).
fn text_pdf(lines: &[&str]) -> Vec<u8> {
    let mut content = String::from("BT /F1 28 Tf 40 700 Td 36 TL\n");
    for line in lines {
        content.push_str(&format!("({line}) Tj T*\n"));
    }
    content.push_str("ET\n");
    let objects = [
        "<< /Type /Catalog /Pages 2 0 R >>".to_owned(),
        "<< /Type /Pages /Kids [3 0 R] /Count 1 >>".to_owned(),
        "<< /Type /Page /Parent 2 0 R /MediaBox [0 0 612 792] /Contents 4 0 R /Resources << /Font << /F1 5 0 R >> >> >>"
            .to_owned(),
        format!("<< /Length {} >>\nstream\n{content}endstream", content.len()),
        "<< /Type /Font /Subtype /Type1 /BaseFont /Helvetica >>".to_owned(),
    ];
    let mut pdf = b"%PDF-1.4\n".to_vec();
    let mut offsets = Vec::new();
    for (i, o) in objects.iter().enumerate() {
        offsets.push(pdf.len());
        pdf.extend(format!("{} 0 obj\n{o}\nendobj\n", i + 1).as_bytes());
    }
    let xref = pdf.len();
    pdf.extend(format!("xref\n0 {}\n0000000000 65535 f \n", objects.len() + 1).as_bytes());
    for off in offsets {
        pdf.extend(format!("{off:010} 00000 n \n").as_bytes());
    }
    pdf.extend(
        format!("trailer\n<< /Size {} /Root 1 0 R >>\nstartxref\n{xref}\n%%EOF\n", objects.len() + 1).as_bytes(),
    );
    pdf
}

/// The page of `pdf` as a PNG image, the way a phone photo or a scanner gives it (no text layer).
fn scanned(pdf: &[u8]) -> Vec<u8> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("in.pdf"), pdf).unwrap();
    let out = std::process::Command::new("pdftoppm")
        .args(["-r", "150", "-png", "-singlefile"])
        .arg(dir.path().join("in.pdf"))
        .arg(dir.path().join("page"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    std::fs::read(dir.path().join("page.png")).unwrap()
}

pub(crate) async fn listed(t: &TestApp, c: &reqwest::Client, query: &str) -> Vec<Value> {
    let r = t.send(c.get(t.url(&format!("/api/v1/documents{query}")))).await;
    assert_eq!(r.status, 200, "{}", r.text);
    r.json()["documents"].as_array().unwrap().clone()
}

#[tokio::test]
async fn a_scanned_page_and_a_pdf_are_read_and_found_by_a_word() {
    if !reading_tools() {
        return;
    }
    let t = TestApp::spawn_with(|c| c.encryption_key = Some(hearth_server::config::Secret::new(KEY.into()))).await;
    let (pa, _, ta) = patient_account(&t, "Reader").await;
    let a = bearer(&ta);
    let scan = scanned(&text_pdf(&["Haemoglobin 13.2 g/dL", "Platelets within range"]));
    assert!(scan.starts_with(b"\x89PNG"));
    let (s, photo) = upload(&t, &a, &[("title", "Photo of a report")], &scan).await;
    assert_eq!(s, 201, "{photo}");
    assert_eq!(photo["content_type"], "image/png");
    let (s, letter) =
        upload(&t, &a, &[("title", "Letter")], &text_pdf(&["Discharge summary", "Continue metformin"])).await;
    assert_eq!(s, 201, "{letter}");

    wait_until("both documents are read", async || {
        let docs = listed(&t, &a, "").await;
        docs.len() == 2 && docs.iter().all(|d| d["text_status"] == "done")
    })
    .await;
    // The text is attached to the DocumentReference too.
    let r = t.get(&format!("/fhir/DocumentReference/{}", photo["id"].as_str().unwrap())).await;
    let reference = r.json();
    crate::common::assert_valid_r4(&reference);
    let text = &reference["content"][1]["attachment"];
    assert_eq!(text["contentType"], "text/plain; charset=utf-8", "{reference}");
    assert!(text["title"].as_str().unwrap().contains("confidence"), "{text}");
    let words =
        String::from_utf8(data_encoding::BASE64.decode(text["data"].as_str().unwrap().as_bytes()).unwrap()).unwrap();
    assert!(words.contains("Haemoglobin"), "{words}");
    let found = listed(&t, &a, "?text=haemoglobin").await;
    assert_eq!(found.len(), 1, "{found:?}");
    assert_eq!(found[0]["id"], photo["id"], "the OCR'd photo: {found:?}");
    let found = listed(&t, &a, "?text=METFORMIN").await;
    assert_eq!((found.len(), &found[0]["id"]), (1, &letter["id"]), "the PDF's own text: {found:?}");
    assert!(listed(&t, &a, "?text=platelets%20haemoglobin").await.len() == 1, "every word");
    assert!(listed(&t, &a, "?text=cholesterol").await.is_empty());
    assert!(listed(&t, &a, "?text=%22%20OR%20*").await.is_empty(), "query syntax is taken as words");
    // Another patient cannot search this record.
    let (_, _, tb) = patient_account(&t, "Nosy").await;
    let r = t.send(bearer(&tb).get(t.url(&format!("/api/v1/documents?patient={pa}&text=haemoglobin")))).await;
    assert_eq!(r.status, 404);
}

/// A page of Hindi text rendered (with shaping, by Pango) to a TIFF image by Tesseract's own
/// `text2image` with the Lohit Devanagari font; `None` (loudly) outside CI when either is missing.
fn hindi_page(text: &str) -> Option<Vec<u8>> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::write(dir.path().join("page.txt"), text).unwrap();
    let out = std::process::Command::new("text2image")
        .arg(format!("--text={}", dir.path().join("page.txt").display()))
        .arg(format!("--outputbase={}", dir.path().join("page").display()))
        .args(["--font=Lohit Devanagari", "--fonts_dir=/usr/share/fonts", "--ptsize=24"])
        .output();
    match out {
        Ok(o) if o.status.success() => Some(std::fs::read(dir.path().join("page.tif")).unwrap()),
        other => {
            if std::env::var("CI").as_deref() == Ok("true") {
                panic!("text2image and fonts-lohit-deva are required on CI (scripts/prepare installs them): {other:?}");
            }
            eprintln!(
                "\n!!! SKIPPED the Hindi OCR test: text2image or the Lohit Devanagari font is missing (run scripts/prepare) !!!\n"
            );
            None
        }
    }
}

#[tokio::test]
async fn a_scanned_hindi_page_is_read_and_found_by_a_hindi_word() {
    if !reading_tools() {
        return;
    }
    let Some(page) = hindi_page("कमल जल\n") else { return };
    let t = TestApp::spawn().await;
    let (_, _, ta) = patient_account(&t, "Hindi").await;
    let a = bearer(&ta);
    let (s, doc) = upload(&t, &a, &[("title", "पर्चा")], &page).await;
    assert_eq!(s, 201, "{doc}");
    assert_eq!(doc["content_type"], "image/tiff");
    wait_until("the page is read", async || {
        listed(&t, &a, "").await.first().is_some_and(|d| d["text_status"] != "pending" && d["text_status"] != "reading")
    })
    .await;
    assert_eq!(listed(&t, &a, "").await[0]["text_status"], "done");
    let found = listed(&t, &a, &format!("?text={}", "%E0%A4%95%E0%A4%AE%E0%A4%B2")).await;
    assert_eq!(found.len(), 1, "कमल is found: {found:?}");
    assert!(listed(&t, &a, "?text=%E0%A4%98%E0%A4%B0").await.is_empty(), "घर is not on the page");
}

/// A real clamd on a unix socket with a one-signature database of its own (a marker string), for
/// as long as the guard lives; `None` (loudly) outside CI when clamd is not installed.
struct Clamd {
    child: std::process::Child,
    socket: PathBuf,
    _dir: tempfile::TempDir,
}

impl Drop for Clamd {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

const MARKER: &str = "HEARTH-TEST-MALWARE-MARKER";

async fn clamd() -> Option<Clamd> {
    let dir = tempfile::tempdir().unwrap();
    std::fs::create_dir(dir.path().join("db")).unwrap();
    let hex: String = MARKER.bytes().map(|b| format!("{b:02x}")).collect();
    std::fs::write(dir.path().join("db/hearth.ndb"), format!("Hearth.Test.Marker:0:*:{hex}\n")).unwrap();
    let socket = dir.path().join("clamd.sock");
    let conf = format!(
        "Foreground yes\nLocalSocket {}\nDatabaseDirectory {}\nLogFile {}\n",
        socket.display(),
        dir.path().join("db").display(),
        dir.path().join("clamd.log").display()
    );
    std::fs::write(dir.path().join("clamd.conf"), conf).unwrap();
    let spawned = ["clamd", "/usr/sbin/clamd"].iter().find_map(|bin| {
        std::process::Command::new(bin)
            .arg("-c")
            .arg(dir.path().join("clamd.conf"))
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::null())
            .spawn()
            .ok()
    });
    let Some(child) = spawned else {
        if std::env::var("CI").as_deref() == Ok("true") {
            panic!("clamd is required on CI (scripts/prepare installs clamav-daemon)");
        }
        eprintln!("\n!!! SKIPPED the virus-scan test: clamd is not installed (run scripts/prepare) !!!\n");
        return None;
    };
    let guard = Clamd { child, socket, _dir: dir };
    for _ in 0..300 {
        if tokio::net::UnixStream::connect(&guard.socket).await.is_ok() {
            return Some(guard);
        }
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    panic!("clamd did not start");
}

#[tokio::test]
async fn uploads_are_scanned_by_clamd_and_malware_is_never_stored() {
    let Some(mut scanner) = clamd().await else { return };
    let socket = scanner.socket.clone();
    let t = TestApp::spawn_with(move |c| c.documents.clamd = Some(format!("unix:{}", socket.display()))).await;
    let (_, _, ta) = patient_account(&t, "Scanned").await;
    let a = bearer(&ta);
    let (s, clean) = upload(&t, &a, &[], &pdf(50_000)).await;
    assert_eq!(s, 201, "{clean}");
    let mut infected = pdf(50_000);
    infected.extend_from_slice(MARKER.as_bytes());
    let (s, e) = upload(&t, &a, &[], &infected).await;
    assert_eq!((s, e["error"]["code"].as_str()), (422, Some("infected")), "{e}");
    assert_eq!(blob_files(&t).len(), 1, "only the clean file is stored");
    assert_eq!(listed(&t, &a, "").await.len(), 1);
    // The scanner gone: uploads are refused (fail closed), not stored unscanned.
    let _ = scanner.child.kill();
    let _ = scanner.child.wait();
    let (s, e) = upload(&t, &a, &[], &pdf(1_000)).await;
    assert_eq!((s, e["error"]["code"].as_str()), (503, Some("unavailable")), "{e}");
    assert_eq!(blob_files(&t).len(), 1);
}
