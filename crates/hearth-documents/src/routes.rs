//! The documents API: multipart upload, list, download with ranges, delete. Resumable uploads
//! are in `tus.rs` and end in [`keep_document`] like a multipart upload.

use hearth_workflow::openapi::ErrorEnvelope;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Multipart, Path, RawQuery, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use bytes::Bytes;
use futures_util::{Stream, StreamExt};
use hearth_store::{Current, Deleted, Guarded};
use hearth_store_sql::documents::{self as sql, DocumentRow};
use hearth_store_sql::notify::TxDb;
use hearth_workflow::error::ApiError;
use hearth_workflow::{ApiCaller, Caller};
use serde::Serialize;
use serde_json::{Value, json};

use crate::Documents;
use crate::blob::{BlobError, ByteStream, Staged};

const LOINC: &str = "http://loinc.org";
/// Room for the multipart framing and the small metadata fields beside the file.
const MULTIPART_OVERHEAD: u64 = 64 * 1024;

/// A document as the app API shows it (built from its DocumentReference).
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(example = json!({"id": "0190c1d2-7a6b-7c3d-9e8f-0a1b2c3d4e5f", "patient": "p1", "type": "11502-2",
    "title": "Lipid panel", "date": "2026-11-30", "content_type": "application/pdf", "size": 48213,
    "url": "https://hearth.example/api/v1/documents/0190c1d2-7a6b-7c3d-9e8f-0a1b2c3d4e5f/content",
    "created": "2026-12-01T09:30:00.000Z"}))]
pub struct Document {
    /// The DocumentReference id.
    pub id: String,
    /// The Patient id.
    pub patient: String,
    /// The LOINC document type code, when given.
    #[serde(rename = "type", skip_serializing_if = "Option::is_none")]
    pub doc_type: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub title: Option<String>,
    /// The document's own date (when it was written), when given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub date: Option<String>,
    /// Known from the bytes.
    pub content_type: String,
    pub size: u64,
    /// The download route.
    pub url: String,
    /// When it was uploaded.
    pub created: String,
    /// Where reading its text stands: `pending`, `reading`, `done`, `no_text`, `unsupported`,
    /// `tools_missing` or `failed` (lists only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub text_status: Option<String>,
}

/// One page of documents.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct DocumentList {
    pub documents: Vec<Document>,
    /// The cursor of the next page (`?cursor=`), when there is one.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub next: Option<String>,
}

/// The multipart form of an upload: metadata fields first, then `file`.
#[derive(Debug, utoipa::ToSchema)]
#[allow(dead_code)]
pub struct UploadForm {
    /// The Patient id (a patient's own record when omitted by a patient).
    patient: Option<String>,
    /// LOINC document type code (e.g. `11502-2` laboratory report, `18842-5` discharge summary).
    #[schema(rename = "type")]
    doc_type: Option<String>,
    title: Option<String>,
    /// The document's date: `YYYY-MM-DD` or an RFC 3339 date-time.
    date: Option<String>,
    /// The file (PDF, JPEG, PNG, HEIC/HEIF, TIFF or DICOM).
    #[schema(format = Binary, value_type = String)]
    file: Vec<u8>,
}

/// What describes an upload besides its bytes.
#[derive(Debug, Clone, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
pub(crate) struct Meta {
    pub patient: Option<String>,
    #[serde(rename = "type")]
    pub doc_type: Option<String>,
    pub title: Option<String>,
    pub date: Option<String>,
}

pub(crate) fn bad(code: &'static str, msg: impl Into<String>) -> ApiError {
    ApiError::new(StatusCode::BAD_REQUEST, code, msg)
}

pub(crate) fn not_found(what: &str) -> ApiError {
    ApiError::new(StatusCode::NOT_FOUND, "not_found", format!("no such {what}"))
}

pub(crate) fn too_large(max: u64) -> ApiError {
    ApiError::new(StatusCode::PAYLOAD_TOO_LARGE, "too_large", format!("a document may be at most {max} bytes"))
}

impl Meta {
    /// Sets one field from a form or `Upload-Metadata` key.
    pub(crate) fn set(&mut self, key: &str, value: String) -> Result<(), ApiError> {
        let value = value.trim().to_owned();
        let plain = |v: &str, max: usize| !v.is_empty() && v.len() <= max && !v.chars().any(char::is_control);
        match key {
            "patient" if hearth_workflow::fhir::valid_id(&value) => self.patient = Some(value),
            "patient" => return Err(not_found("patient record")),
            "type"
                if plain(&value, 32) && value.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'.') =>
            {
                self.doc_type = Some(value)
            }
            "type" => return Err(bad("invalid_type", "type is a LOINC code such as 11502-2")),
            "title" if plain(&value, 200) => self.title = Some(value),
            "title" => return Err(bad("invalid_title", "title is text of at most 200 characters")),
            "date" if valid_date(&value) => self.date = Some(value),
            "date" => return Err(bad("invalid_date", "date is YYYY-MM-DD or an RFC 3339 date-time")),
            // tus clients send the file's name and type; the type is known from the bytes.
            "filename" | "filetype" | "name" => {}
            other => {
                return Err(bad(
                    "invalid_field",
                    format!("unknown field '{other}' (patient, type, title, date, file)"),
                ));
            }
        }
        Ok(())
    }
}

fn valid_date(s: &str) -> bool {
    chrono::NaiveDate::parse_from_str(s, "%Y-%m-%d").is_ok() || chrono::DateTime::parse_from_rfc3339(s).is_ok()
}

/// The patient an upload is for: a patient's own record, or the named one (reach is the store's
/// to check, which it does when the Patient is read through the caller's view).
pub(crate) async fn subject(store: &Guarded, caller: &Caller, asked: Option<&str>) -> Result<String, ApiError> {
    let patient = match (caller.role, caller.own_patient()) {
        (hearth_auth::Role::Patient, Some(own)) => match asked {
            Some(p) if p != own => return Err(not_found("patient record")),
            _ => own.to_owned(),
        },
        _ => asked
            .ok_or_else(|| bad("missing_patient", "name the patient the document belongs to (patient)"))?
            .to_owned(),
    };
    match store.read("Patient", &patient).await? {
        Current::Found(_) => Ok(patient),
        Current::Deleted(_) => Err(ApiError::new(StatusCode::GONE, "gone", "this patient record was deleted")),
        Current::NotFound => Err(not_found("patient record")),
    }
}

fn instant(t: chrono::DateTime<chrono::Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

pub(crate) fn api_root(app: &Documents, headers: &HeaderMap) -> String {
    let base = app.fhir_base(headers);
    base.strip_suffix("/fhir").unwrap_or(&base).to_owned()
}

fn blob_error(e: BlobError, max: u64) -> ApiError {
    match e {
        BlobError::TooLarge(_) => too_large(max),
        BlobError::Input(m) => bad("upload_interrupted", format!("the upload did not arrive whole: {m}")),
        other => ApiError::unavailable(other.to_string()),
    }
}

/// Checks a staged upload's type and scan, stores its blob and records the DocumentReference
/// with its row in one transaction.
pub(crate) async fn keep_document(
    app: &Documents,
    store: &Guarded,
    headers: &HeaderMap,
    patient: &str,
    meta: &Meta,
    staged: Staged,
) -> Result<Document, ApiError> {
    let Some(content_type) = crate::sniff::sniff(&staged.head) else {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_type",
            "a document is a PDF, JPEG, PNG, HEIC/HEIF, TIFF or DICOM file",
        ));
    };
    if let Some(addr) = &app.config.clamd {
        let addr = crate::clamd::Address::parse(addr).map_err(ApiError::internal)?;
        let plain = app.blobs.read_staged(&staged).await.map_err(|e| ApiError::internal(e.to_string()))?;
        match crate::clamd::scan(&addr, plain, std::time::Duration::from_secs(120)).await {
            Ok(crate::clamd::Verdict::Clean) => {}
            Ok(crate::clamd::Verdict::Infected(name)) => {
                tracing::warn!(signature = %name, "an upload was refused by the virus scan");
                return Err(ApiError::new(
                    StatusCode::UNPROCESSABLE_ENTITY,
                    "infected",
                    "the virus scan found malware in this file; it was not stored",
                ));
            }
            Err(e) => return Err(ApiError::unavailable(e)),
        }
    }
    let now = app.clock.now();
    let id = uuid::Uuid::now_v7().to_string();
    let url = format!("{}/api/v1/documents/{id}/content", api_root(app, headers));
    let mut attachment = serde_json::Map::new();
    attachment.insert("contentType".into(), json!(content_type));
    attachment.insert("url".into(), json!(url));
    attachment.insert("size".into(), json!(staged.size));
    attachment.insert("creation".into(), json!(instant(now)));
    if let Some(title) = &meta.title {
        attachment.insert("title".into(), json!(title));
    }
    let mut body = serde_json::Map::new();
    body.insert("resourceType".into(), json!("DocumentReference"));
    body.insert("status".into(), json!("current"));
    body.insert("subject".into(), json!({"reference": format!("Patient/{patient}")}));
    body.insert("date".into(), json!(instant(now)));
    body.insert("content".into(), json!([{"attachment": attachment}]));
    if let Some(code) = &meta.doc_type {
        body.insert("type".into(), json!({"coding": [{"system": LOINC, "code": code}]}));
    }
    if let Some(title) = &meta.title {
        body.insert("description".into(), json!(title));
    }
    if let Some(date) = &meta.date {
        body.insert("context".into(), json!({"period": {"start": date}}));
    }
    let body = Value::Object(body);
    hearth_workflow::fhir::validate(app, "DocumentReference", &body).map_err(|e| {
        ApiError::internal(format!(
            "the DocumentReference built for an upload does not validate: {:?}",
            e.issues.first().map(|i| &i.diagnostics)
        ))
    })?;
    let row = DocumentRow {
        id: id.clone(),
        patient: patient.to_owned(),
        sha256: staged.sha256.clone(),
        content_type: content_type.to_owned(),
        size: i64::try_from(staged.size).unwrap_or(i64::MAX),
        created_at: now.timestamp_millis(),
    };
    {
        // A sweep does not run between "the blob is there" and the commit of the row naming it.
        let _sweep = app.sweep_lock.read().await;
        app.blobs.keep(&staged).await.map_err(|e| blob_error(e, app.config.max_upload_bytes))?;
        let mut tx = store.begin().await?;
        let version = hearth_store::interactions::create(
            &mut tx,
            hearth_workflow::fhir::write_of(app, "DocumentReference", id.clone(), body),
            now,
        )
        .await?;
        let db = TxDb::from_guarded(tx)?;
        sql::insert(&db, &row, staged.encrypted).await?;
        db.commit().await?;
        let stored: Value = version.body.as_deref().and_then(|b| serde_json::from_str(b).ok()).unwrap_or(Value::Null);
        tracing::info!(document = %id, size = staged.size, "document stored");
        app.reader_wake.notify_one();
        document_of(&stored).ok_or_else(|| ApiError::internal("a stored DocumentReference does not read back"))
    }
}

/// The app's view of a DocumentReference.
pub(crate) fn document_of(r: &Value) -> Option<Document> {
    let attachment = r.pointer("/content/0/attachment")?;
    Some(Document {
        id: r.get("id")?.as_str()?.to_owned(),
        patient: r.pointer("/subject/reference")?.as_str()?.strip_prefix("Patient/")?.to_owned(),
        doc_type: r.pointer("/type/coding/0/code").and_then(Value::as_str).map(str::to_owned),
        title: r.get("description").and_then(Value::as_str).map(str::to_owned),
        date: r.pointer("/context/period/start").and_then(Value::as_str).map(str::to_owned),
        content_type: attachment.get("contentType").and_then(Value::as_str).unwrap_or_default().to_owned(),
        size: attachment.get("size").and_then(Value::as_u64).unwrap_or(0),
        url: attachment.get("url").and_then(Value::as_str).unwrap_or_default().to_owned(),
        created: r.get("date").and_then(Value::as_str).unwrap_or_default().to_owned(),
        text_status: None,
    })
}

fn declared_length(headers: &HeaderMap) -> Option<u64> {
    headers.get(header::CONTENT_LENGTH).and_then(|v| v.to_str().ok()).and_then(|v| v.parse().ok())
}

#[utoipa::path(post, path = "/api/v1/documents", tag = "documents",
    request_body(content = UploadForm, content_type = "multipart/form-data",
        description = "Metadata fields (`patient`, `type`, `title`, `date`) first, then `file`. The content type is \
            taken from the bytes."),
    responses(
        (status = 201, description = "Stored; the DocumentReference is in the record", body = Document),
        (status = 400, description = "A malformed form or field (invalid_form, invalid_field, invalid_type, invalid_date, missing_file, upload_interrupted)", body = ErrorEnvelope),
        (status = 404, description = "No such patient within the caller's reach", body = ErrorEnvelope),
        (status = 413, description = "Larger than `max_upload_bytes`, refused before anything is stored (too_large)", body = ErrorEnvelope),
        (status = 415, description = "Not `multipart/form-data` (invalid_content_type), or not a PDF, JPEG, PNG, HEIC/HEIF, TIFF or DICOM file (unsupported_type)", body = ErrorEnvelope),
        (status = 422, description = "The virus scan found malware (infected): nothing is stored", body = ErrorEnvelope),
        (status = 503, description = "The virus scanner is configured but unreachable (unavailable): nothing is stored", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn upload(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    headers: HeaderMap,
    form: Result<Multipart, axum::extract::multipart::MultipartRejection>,
) -> Result<Response, ApiError> {
    let mut form = form.map_err(|_| {
        ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            "an upload is multipart/form-data (or a tus upload at /api/v1/documents/uploads)",
        )
    })?;
    let max = app.config.max_upload_bytes;
    if declared_length(&headers).is_some_and(|n| n > max.saturating_add(MULTIPART_OVERHEAD)) {
        return Err(too_large(max));
    }
    let store = app.store_for(&caller);
    let mut meta = Meta::default();
    let malformed =
        |e: axum::extract::multipart::MultipartError| bad("invalid_form", format!("malformed multipart body: {e}"));
    while let Some(mut field) = form.next_field().await.map_err(malformed)? {
        let name = field.name().unwrap_or_default().to_owned();
        if name != "file" {
            // Read as it comes and refused past 1 KiB: a metadata field never holds a file.
            let mut value = Vec::new();
            while let Some(chunk) = field.chunk().await.map_err(malformed)? {
                value.extend_from_slice(&chunk);
                if value.len() > 1024 {
                    return Err(bad("invalid_field", format!("field '{name}' is too long")));
                }
            }
            let value =
                String::from_utf8(value).map_err(|_| bad("invalid_field", format!("field '{name}' is not UTF-8")))?;
            meta.set(&name, value)?;
            continue;
        }
        let patient = subject(&store, &caller, meta.patient.as_deref()).await?;
        let input = field.map(|chunk| chunk.map_err(|e| BlobError::Input(e.to_string())));
        let staged = app.blobs.stage(input, max).await.map_err(|e| blob_error(e, max))?;
        let doc = keep_document(&app, &store, &headers, &patient, &meta, staged).await?;
        return Ok((StatusCode::CREATED, axum::Json(doc)).into_response());
    }
    Err(bad("missing_file", "the form has no 'file' field"))
}

#[utoipa::path(get, path = "/api/v1/documents", tag = "documents",
    params(
        ("patient" = Option<String>, Query, description = "The Patient id (a patient's own record when omitted by a patient)"),
        ("type" = Option<String>, Query, description = "LOINC document type code"),
        ("date" = Option<String>, Query, description = "The document's date, FHIR date search syntax (`ge2026-01-01`); repeatable"),
        ("_count" = Option<u32>, Query, description = "Page size (default 20, at most 100)"),
        ("text" = Option<String>, Query, description = "Words the document's text (its own or read by OCR) holds, all of them"),
        ("cursor" = Option<String>, Query, description = "The `next` cursor of the previous page"),
    ),
    responses(
        (status = 200, description = "Newest upload first", body = DocumentList),
        (status = 400, description = "An unknown or malformed parameter (invalid_query)", body = ErrorEnvelope),
        (status = 404, description = "No such patient within the caller's reach", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn list(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    RawQuery(raw): RawQuery,
) -> Result<axum::Json<DocumentList>, ApiError> {
    let mut asked = None;
    let mut pairs: Vec<(String, String)> = Vec::new();
    let mut count = 20u32;
    let mut cursor = None;
    let mut text: Option<Vec<String>> = None;
    for (k, v) in hearth_workflow::fhir::pairs(raw.as_deref()) {
        match k.as_str() {
            "patient" => {
                if !hearth_workflow::fhir::valid_id(&v) {
                    return Err(not_found("patient record"));
                }
                asked = Some(v);
            }
            "type" => {
                let mut m = Meta::default();
                m.set("type", v)?;
                pairs.push(("type".into(), format!("{LOINC}|{}", m.doc_type.unwrap_or_default())));
            }
            "date" => pairs.push(("period".into(), v)),
            "_count" => {
                count = v
                    .parse()
                    .ok()
                    .filter(|n| (1..=100).contains(n))
                    .ok_or_else(|| bad("invalid_query", "_count is a number from 1 to 100"))?
            }
            "cursor" => cursor = Some(v),
            "text" => {
                let words: Vec<String> = v.split_whitespace().map(str::to_owned).collect();
                if words.is_empty() || words.len() > 8 || words.iter().any(|w| w.len() > 100) {
                    return Err(bad("invalid_query", "text is one to eight words"));
                }
                text = Some(words);
            }
            other => {
                return Err(bad(
                    "invalid_query",
                    format!("unknown parameter '{other}' (patient, type, date, text, _count, cursor)"),
                ));
            }
        }
    }
    let store = app.store_for(&caller);
    let patient = subject(&store, &caller, asked.as_deref()).await?;
    pairs.push(("subject".into(), format!("Patient/{patient}")));
    if let Some(words) = &text {
        // The text index answers which of the patient's documents hold the words; the store
        // search (through the caller's view) then pages and filters them like any other list.
        let ids = sql::search_text(&*app.db, &patient, words, 100).await?;
        if ids.is_empty() {
            return Ok(axum::Json(DocumentList { documents: Vec::new(), next: None }));
        }
        pairs.push(("_id".into(), ids.join(",")));
    }
    pairs.push(("_sort".into(), "-date,-_id".into()));
    pairs.push(("_count".into(), count.to_string()));
    let query = app
        .registry()
        .parse_query(&["DocumentReference"], &pairs, hearth_search::Handling::Strict)
        .map_err(|e| bad("invalid_query", format!("{e:?}")))?;
    let request = hearth_store::SearchRequest {
        query,
        access: store.access().clone(),
        compartment: None,
        cursor,
        count_total: false,
    };
    let page = store.search(request).await.map_err(|e| match e {
        hearth_store::StoreError::InvalidSearch(m) => bad("invalid_query", m),
        other => other.into(),
    })?;
    let mut documents: Vec<Document> = page
        .matches
        .iter()
        .filter_map(|v| v.body.as_deref().and_then(|b| serde_json::from_str::<Value>(b).ok()))
        .filter_map(|r| document_of(&r))
        .collect();
    let ids: Vec<String> = documents.iter().map(|d| d.id.clone()).collect();
    let statuses: std::collections::HashMap<String, String> =
        sql::text_statuses(&*app.db, &ids).await?.into_iter().collect();
    for d in &mut documents {
        d.text_status = statuses.get(&d.id).cloned();
    }
    Ok(axum::Json(DocumentList { documents, next: page.next }))
}

/// A single byte range of a `size`-byte file: `Ok(None)` to send it whole (no range, or a form
/// this server does not serve such as several ranges), `Err` when it cannot be satisfied.
pub fn parse_range(value: &str, size: u64) -> Result<Option<(u64, u64)>, ()> {
    let Some(spec) = value.trim().strip_prefix("bytes=") else { return Ok(None) };
    if spec.contains(',') {
        return Ok(None);
    }
    let (a, b) = spec.split_once('-').ok_or(())?;
    let (a, b) = (a.trim(), b.trim());
    let range = if a.is_empty() {
        let n: u64 = b.parse().map_err(|_| ())?;
        if n == 0 || size == 0 {
            return Err(());
        }
        (size.saturating_sub(n), size - 1)
    } else {
        let start: u64 = a.parse().map_err(|_| ())?;
        let end: u64 = if b.is_empty() {
            size.saturating_sub(1)
        } else {
            b.parse::<u64>().map_err(|_| ())?.min(size.saturating_sub(1))
        };
        if start >= size || end < start {
            return Err(());
        }
        (start, end)
    };
    Ok(Some(range))
}

/// At most `len` bytes of `inner`.
fn limited(inner: ByteStream, len: u64) -> impl Stream<Item = Result<Bytes, std::io::Error>> + Send {
    futures_util::stream::unfold((inner, len), |(mut inner, left)| async move {
        if left == 0 {
            return None;
        }
        match inner.next().await? {
            Ok(chunk) => {
                let take = usize::try_from(left).unwrap_or(usize::MAX).min(chunk.len());
                Some((Ok(chunk.slice(..take)), (inner, left - take as u64)))
            }
            Err(e) => Some((Err(e), (inner, 0))),
        }
    })
}

/// The DocumentReference `id` as the caller may see it.
pub(crate) async fn reference(store: &Guarded, id: &str) -> Result<Value, ApiError> {
    if !hearth_workflow::fhir::valid_id(id) {
        return Err(not_found("document"));
    }
    match store.read("DocumentReference", id).await? {
        Current::Found(v) => v
            .body
            .as_deref()
            .and_then(|b| serde_json::from_str(b).ok())
            .ok_or_else(|| ApiError::internal("stored DocumentReference is not JSON")),
        Current::Deleted(_) => Err(ApiError::new(StatusCode::GONE, "gone", "this document was deleted")),
        Current::NotFound => Err(not_found("document")),
    }
}

#[utoipa::path(get, path = "/api/v1/documents/{id}/content", tag = "documents",
    params(("id" = String, Path, description = "The DocumentReference id"),
        ("Range" = Option<String>, Header, description = "One byte range (`bytes=0-1023`, `bytes=1024-`, `bytes=-500`)")),
    responses(
        (status = 200, description = "The whole file", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 206, description = "The range asked for (`Content-Range`)", content_type = "application/octet-stream", body = Vec<u8>),
        (status = 404, description = "No such document within the caller's reach (the attempt is audited)", body = ErrorEnvelope),
        (status = 410, description = "The document was deleted", body = ErrorEnvelope),
        (status = 416, description = "The range is outside the file (range_not_satisfiable)", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn content(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    let store = app.store_for(&caller);
    reference(&store, &id).await?;
    let (row, encrypted) =
        sql::get(&*app.db, &id).await?.ok_or_else(|| not_found("stored content for this document"))?;
    let size = u64::try_from(row.size).unwrap_or(0);
    let range = match headers.get(header::RANGE).and_then(|v| v.to_str().ok()) {
        Some(v) => match parse_range(v, size) {
            Ok(r) => r,
            Err(()) => {
                let mut resp = ApiError::new(
                    StatusCode::RANGE_NOT_SATISFIABLE,
                    "range_not_satisfiable",
                    format!("the file has {size} bytes"),
                )
                .into_response();
                if let Ok(v) = HeaderValue::from_str(&format!("bytes */{size}")) {
                    resp.headers_mut().insert(header::CONTENT_RANGE, v);
                }
                return Ok(resp);
            }
        },
        None => None,
    };
    let (from, len) = range.map_or((0, size), |(a, b)| (a, b - a + 1));
    let stream = app
        .blobs
        .open(&row.sha256, encrypted, from)
        .await
        .map_err(|e| ApiError::unavailable(e.to_string()))?
        .ok_or_else(|| ApiError::internal(format!("the blob of document {id} is missing from storage")))?;
    let status = if range.is_some() { StatusCode::PARTIAL_CONTENT } else { StatusCode::OK };
    let mut resp = (status, Body::from_stream(limited(stream, len))).into_response();
    let h = resp.headers_mut();
    if let Ok(v) = HeaderValue::from_str(&row.content_type) {
        h.insert(header::CONTENT_TYPE, v);
    }
    h.insert(header::CONTENT_LENGTH, HeaderValue::from(len));
    h.insert(header::ACCEPT_RANGES, HeaderValue::from_static("bytes"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("private, no-store"));
    h.insert(header::CONTENT_DISPOSITION, HeaderValue::from_static("attachment"));
    if let Ok(v) = HeaderValue::from_str(&format!("\"{}\"", row.sha256)) {
        h.insert(header::ETAG, v);
    }
    if let Some((a, b)) = range
        && let Ok(v) = HeaderValue::from_str(&format!("bytes {a}-{b}/{size}"))
    {
        h.insert(header::CONTENT_RANGE, v);
    }
    Ok(resp)
}

#[utoipa::path(delete, path = "/api/v1/documents/{id}", tag = "documents",
    params(("id" = String, Path, description = "The DocumentReference id")),
    responses(
        (status = 204, description = "Deleted (the DocumentReference's history stays; the file goes once no document names it)"),
        (status = 403, description = "The caller may read but not change this record", body = ErrorEnvelope),
        (status = 404, description = "No such document within the caller's reach", body = ErrorEnvelope),
        (status = 410, description = "Already deleted", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn delete(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
) -> Result<StatusCode, ApiError> {
    let store = app.store_for(&caller);
    reference(&store, &id).await?;
    let now = app.clock.now();
    let mut tx = store.begin().await?;
    match hearth_store::interactions::delete(&mut tx, "DocumentReference", &id, None, now).await? {
        Deleted::Deleted(_) => {}
        Deleted::AlreadyDeleted => return Err(ApiError::new(StatusCode::GONE, "gone", "this document was deleted")),
        Deleted::NotFound => return Err(not_found("document")),
    }
    let db = TxDb::from_guarded(tx)?;
    sql::remove(&db, &id, now.timestamp_millis()).await?;
    db.commit().await?;
    tracing::info!(document = %id, "document deleted");
    if let Err(e) = app.sweep().await {
        tracing::warn!(error = %e, "sweeping after a document deletion failed; the sweeper tries again");
    }
    Ok(StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn ranges() {
        assert_eq!(parse_range("bytes=0-9", 100), Ok(Some((0, 9))));
        assert_eq!(parse_range("bytes=90-", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-10", 100), Ok(Some((90, 99))));
        assert_eq!(parse_range("bytes=-1000", 100), Ok(Some((0, 99))));
        assert_eq!(parse_range("bytes=50-1000", 100), Ok(Some((50, 99))));
        assert_eq!(parse_range("bytes=0-1,5-6", 100), Ok(None));
        assert_eq!(parse_range("items=0-1", 100), Ok(None));
        assert_eq!(parse_range("bytes=100-", 100), Err(()));
        assert_eq!(parse_range("bytes=9-3", 100), Err(()));
        assert_eq!(parse_range("bytes=x-3", 100), Err(()));
        assert_eq!(parse_range("bytes=-0", 100), Err(()));
    }

    #[test]
    fn metadata_fields_are_checked() {
        let mut m = Meta::default();
        m.set("type", "11502-2".into()).unwrap();
        m.set("date", "2026-11-30".into()).unwrap();
        m.set("title", " Lipid panel ".into()).unwrap();
        m.set("filename", "scan.pdf".into()).unwrap();
        assert_eq!(m.title.as_deref(), Some("Lipid panel"));
        assert!(m.set("date", "30/11/2026".into()).is_err());
        assert!(m.set("type", "a b".into()).is_err());
        assert!(m.set("title", "a\u{7}".into()).is_err());
        assert!(m.set("colour", "red".into()).is_err());
    }
}
