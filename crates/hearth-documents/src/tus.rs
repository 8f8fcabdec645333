//! Resumable uploads, tus 1.0 (core protocol with the creation and termination extensions):
//! `POST` creates an upload (`Upload-Length`, `Upload-Metadata` with the document's fields),
//! `HEAD` answers how much arrived (`Upload-Offset`), `PATCH` appends from that offset,
//! `DELETE` abandons it. Only the account that created an upload sees it (others get `404`).
//!
//! Each `PATCH` body is written as one segment file (`<data_dir>/uploads/<id>/<n>.enc|raw`,
//! sealed when a key is configured) by a task of its own, so what arrived before a dropped
//! connection is kept and counted even when the request itself is gone. The segment is named
//! only after the row's offset moved (conditionally: two racing `PATCH`es cannot both append).
//! The last byte turns the upload into a document exactly like a multipart upload.

use hearth_workflow::openapi::ErrorEnvelope;
use std::path::PathBuf;
use std::sync::Arc;

use axum::body::Body;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use futures_util::StreamExt;
use hearth_store_sql::documents::{self as sql, UploadRow};
use hearth_workflow::ApiCaller;
use hearth_workflow::error::ApiError;
use tokio::io::AsyncWriteExt;

use crate::Documents;
use crate::blob::{BlobError, ByteStream, private_dir, private_file};
use crate::routes::{Meta, api_root, bad, keep_document, not_found, subject, too_large};

const TUS_VERSION: &str = "1.0.0";

fn tus_headers(resp: &mut Response) {
    resp.headers_mut().insert("tus-resumable", HeaderValue::from_static(TUS_VERSION));
    resp.headers_mut().insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
}

fn with_tus(status: StatusCode) -> Response {
    let mut resp = status.into_response();
    tus_headers(&mut resp);
    resp
}

/// The refusal of a request of another tus version (`412` naming ours), if it is one.
fn version_refusal(headers: &HeaderMap) -> Option<Response> {
    if headers.get("tus-resumable").and_then(|v| v.to_str().ok()) == Some(TUS_VERSION) {
        return None;
    }
    let mut resp = ApiError::new(
        StatusCode::PRECONDITION_FAILED,
        "tus_version",
        "this server speaks tus 1.0.0 (Tus-Resumable: 1.0.0)",
    )
    .into_response();
    resp.headers_mut().insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    Some(resp)
}

fn number(headers: &HeaderMap, name: &str) -> Result<Option<u64>, ApiError> {
    match headers.get(name) {
        None => Ok(None),
        Some(v) => v
            .to_str()
            .ok()
            .and_then(|s| s.trim().parse().ok())
            .map(Some)
            .ok_or_else(|| bad("invalid_header", format!("{name} is a non-negative integer"))),
    }
}

/// `Upload-Metadata`: `key base64value` pairs separated by commas.
fn metadata(headers: &HeaderMap) -> Result<Meta, ApiError> {
    let mut meta = Meta::default();
    let Some(raw) = headers.get("upload-metadata") else { return Ok(meta) };
    let raw = raw.to_str().map_err(|_| bad("invalid_metadata", "Upload-Metadata is not ASCII"))?;
    for pair in raw.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        let (key, value) = pair.split_once(' ').unwrap_or((pair, ""));
        let value = data_encoding::BASE64
            .decode(value.trim().as_bytes())
            .ok()
            .and_then(|v| String::from_utf8(v).ok())
            .ok_or_else(|| {
                bad("invalid_metadata", format!("Upload-Metadata: the value of '{key}' is not base64 UTF-8"))
            })?;
        meta.set(key, value)?;
    }
    Ok(meta)
}

/// The tus headers a client controls (`Tus-Resumable`, `Upload-Length`, `Upload-Offset`,
/// `Upload-Metadata`) parsed exactly as the handlers parse them; `true` when all are acceptable.
/// Public only as the entry point of the fuzz target `fuzz/fuzz_targets/upload_headers.rs`.
#[doc(hidden)]
pub fn fuzz_upload_headers(headers: &HeaderMap) -> bool {
    version_refusal(headers).is_none()
        && number(headers, "upload-length").is_ok()
        && number(headers, "upload-offset").is_ok()
        && metadata(headers).is_ok()
}

fn dir_of(app: &Documents, id: &str) -> PathBuf {
    app.uploads.join(id)
}

/// Removes an upload's row and segments.
pub(crate) async fn discard(app: &Documents, id: &str) {
    if let Err(e) = sql::remove_upload(&*app.db, id).await {
        tracing::warn!(error = %e, upload = %id, "an upload's row could not be removed");
    }
    let dir = dir_of(app, id);
    if let Err(e) = tokio::fs::remove_dir_all(&dir).await
        && e.kind() != std::io::ErrorKind::NotFound
    {
        tracing::warn!(error = %e, upload = %id, "an upload's segments could not be removed");
    }
}

/// The caller's upload `id` (another account's is `404`).
async fn own_upload(app: &Documents, caller: &hearth_workflow::Caller, id: &str) -> Result<UploadRow, ApiError> {
    if uuid::Uuid::parse_str(id).is_err() {
        return Err(not_found("upload"));
    }
    match sql::upload(&*app.db, id).await? {
        Some(row) if row.account_id == caller.account.id => Ok(row),
        _ => Err(not_found("upload")),
    }
}

#[utoipa::path(options, path = "/api/v1/documents/uploads", tag = "documents",
    responses((status = 204, description = "tus discovery: `Tus-Version`, `Tus-Extension`, `Tus-Max-Size`")))]
pub async fn options(State(app): State<Arc<Documents>>) -> Response {
    let mut resp = with_tus(StatusCode::NO_CONTENT);
    let h = resp.headers_mut();
    h.insert("tus-version", HeaderValue::from_static(TUS_VERSION));
    h.insert("tus-extension", HeaderValue::from_static("creation,termination"));
    h.insert("tus-max-size", HeaderValue::from(app.config.max_upload_bytes));
    resp
}

#[utoipa::path(post, path = "/api/v1/documents/uploads", tag = "documents",
    params(
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Length" = u64, Header, description = "The file's size in bytes"),
        ("Upload-Metadata" = Option<String>, Header, description = "`patient`, `type`, `title`, `date` (and `filename`), each `key base64(value)`, comma-separated"),
    ),
    responses(
        (status = 201, description = "Created; `Location` is the upload's URL", headers(("Location" = String, description = "The upload's URL, for HEAD, PATCH and DELETE"), ("Tus-Resumable" = String, description = "`1.0.0`"))),
        (status = 400, description = "A missing or malformed header (missing_length, empty_upload, invalid_header, invalid_metadata, invalid_type, invalid_date, invalid_field)", body = ErrorEnvelope),
        (status = 404, description = "No such patient within the caller's reach (not_found)", body = ErrorEnvelope),
        (status = 410, description = "The patient record was deleted (gone)", body = ErrorEnvelope),
        (status = 412, description = "Another tus version (tus_version)", body = ErrorEnvelope),
        (status = 413, description = "`Upload-Length` over `max_upload_bytes` (too_large)", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn create(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(resp) = version_refusal(&headers) {
        return Ok(resp);
    }
    let length = number(&headers, "upload-length")?
        .ok_or_else(|| bad("missing_length", "Upload-Length is required (deferred length is not supported)"))?;
    if length > app.config.max_upload_bytes {
        return Err(too_large(app.config.max_upload_bytes));
    }
    if length == 0 {
        return Err(bad("empty_upload", "a document has at least one byte"));
    }
    let meta = metadata(&headers)?;
    let store = app.store_for(&caller);
    let patient = subject(&store, &caller, meta.patient.as_deref()).await?;
    let id = uuid::Uuid::new_v4().to_string();
    let row = UploadRow {
        id: id.clone(),
        account_id: caller.account.id.clone(),
        patient,
        length: i64::try_from(length).unwrap_or(i64::MAX),
        received: 0,
        segments: 0,
        metadata: serde_json::to_string(&meta).map_err(ApiError::internal)?,
        created_at: app.clock.now().timestamp_millis(),
    };
    private_dir(&dir_of(&app, &id)).await.map_err(ApiError::internal)?;
    sql::insert_upload(&*app.db, &row).await?;
    let mut resp = with_tus(StatusCode::CREATED);
    if let Ok(v) = HeaderValue::from_str(&format!("{}/api/v1/documents/uploads/{id}", api_root(&app, &headers))) {
        resp.headers_mut().insert(header::LOCATION, v);
    }
    Ok(resp)
}

#[utoipa::path(head, path = "/api/v1/documents/uploads/{id}", tag = "documents",
    params(("id" = String, Path, description = "The upload"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses(
        (status = 200, description = "`Upload-Offset`: the bytes kept so far; `Upload-Length`", headers(("Upload-Offset" = u64, description = "The bytes kept so far: where to resume"), ("Upload-Length" = u64, description = "The file's size"), ("Cache-Control" = String, description = "`no-store`"))),
        (status = 404, description = "No such upload of this account (not_found)", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn head(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(resp) = version_refusal(&headers) {
        return Ok(resp);
    }
    let row = own_upload(&app, &caller, &id).await?;
    let mut resp = with_tus(StatusCode::OK);
    resp.headers_mut().insert("upload-offset", HeaderValue::from(row.received));
    resp.headers_mut().insert("upload-length", HeaderValue::from(row.length));
    Ok(resp)
}

/// What a `PATCH` body left behind.
enum Segment {
    /// Kept: this many bytes, now counted in the upload's offset.
    Kept(u64),
    /// The body held more than the upload's remaining length (nothing kept).
    TooLong,
    /// Another request appended meanwhile (nothing kept).
    Raced,
}

/// Writes `body` as the next segment of `row` and records it, whether or not the body arrived
/// whole; answers what was kept and whether the body broke off.
async fn write_segment(app: Arc<Documents>, row: UploadRow, body: Body) -> Result<(Segment, bool), ApiError> {
    let remaining = u64::try_from(row.length - row.received).unwrap_or(0);
    let dir = dir_of(&app, &row.id);
    private_dir(&dir).await.map_err(ApiError::internal)?;
    let part = dir.join(format!("{}.{}.part", row.segments, uuid::Uuid::new_v4()));
    let file = private_file(&part).await.map_err(ApiError::internal)?;
    let mut out = tokio::io::BufWriter::with_capacity(64 * 1024, file);
    let mut sealer = app.blobs.sealer().map_err(|e| ApiError::internal(e.to_string()))?;
    let encrypted = sealer.is_some();
    let io = |e: std::io::Error| ApiError::internal(e);
    if let Some((_, header)) = &sealer {
        out.write_all(header).await.map_err(io)?;
    }
    let mut got = 0u64;
    let mut broke = false;
    let mut stream = body.into_data_stream();
    while let Some(chunk) = stream.next().await {
        let Ok(chunk) = chunk else {
            broke = true;
            break;
        };
        got += chunk.len() as u64;
        if got > remaining {
            drop(out);
            let _ = tokio::fs::remove_file(&part).await;
            return Ok((Segment::TooLong, false));
        }
        match &mut sealer {
            Some((s, _)) => {
                let sealed = s.update(&chunk).map_err(|e| ApiError::internal(e.to_string()))?;
                out.write_all(&sealed).await.map_err(io)?;
            }
            None => out.write_all(&chunk).await.map_err(io)?,
        }
    }
    if let Some((s, _)) = sealer {
        let last = s.finish().map_err(|e| ApiError::internal(e.to_string()))?;
        out.write_all(&last).await.map_err(io)?;
    }
    out.flush().await.map_err(io)?;
    out.get_ref().sync_all().await.map_err(io)?;
    drop(out);
    if got == 0 {
        let _ = tokio::fs::remove_file(&part).await;
        return Ok((Segment::Kept(0), broke));
    }
    let name = dir.join(format!("{}.{}", row.segments, if encrypted { "enc" } else { "raw" }));
    let added = i64::try_from(got).unwrap_or(i64::MAX);
    if !sql::advance_upload(&*app.db, &row.id, row.received, row.segments, added).await? {
        let _ = tokio::fs::remove_file(&part).await;
        return Ok((Segment::Raced, broke));
    }
    tokio::fs::rename(&part, &name).await.map_err(io)?;
    Ok((Segment::Kept(got), broke))
}

/// The plaintext of an upload's segments, in order.
fn segments(app: Arc<Documents>, row: &UploadRow) -> ByteStream {
    let dir = dir_of(&app, &row.id);
    let count = row.segments;
    let per_segment = futures_util::stream::iter(0..count).then(move |n| {
        let app = Arc::clone(&app);
        let dir = dir.clone();
        async move {
            let enc = dir.join(format!("{n}.enc"));
            let (path, encrypted) = if tokio::fs::try_exists(&enc).await.unwrap_or(false) {
                (enc, true)
            } else {
                (dir.join(format!("{n}.raw")), false)
            };
            app.blobs.read_file(&path, encrypted).await
        }
    });
    Box::pin(per_segment.flat_map(|opened| match opened {
        Ok(stream) => stream,
        Err(e) => Box::pin(futures_util::stream::once(async move { Err(std::io::Error::other(e.to_string())) })),
    }))
}

#[utoipa::path(patch, path = "/api/v1/documents/uploads/{id}", tag = "documents",
    params(
        ("id" = String, Path, description = "The upload"),
        ("Tus-Resumable" = String, Header, description = "`1.0.0`"),
        ("Upload-Offset" = u64, Header, description = "Where this body starts: the offset `HEAD` answered"),
    ),
    request_body(content = Vec<u8>, content_type = "application/offset+octet-stream"),
    responses(
        (status = 204, description = "Appended (`Upload-Offset`); when complete, `Hearth-Document-Id` names the new DocumentReference"),
        (status = 404, description = "No such upload of this account", body = ErrorEnvelope),
        (status = 400, description = "No `Upload-Offset`, or the body broke off (missing_offset, invalid_header, upload_interrupted)", body = ErrorEnvelope),
        (status = 409, description = "`Upload-Offset` is not the upload's offset (offset_mismatch)", body = ErrorEnvelope),
        (status = 413, description = "More bytes than `Upload-Length` leaves (too_large)", body = ErrorEnvelope),
        (status = 415, description = "Not `application/offset+octet-stream` (invalid_content_type), or (complete) not a supported file type (unsupported_type)", body = ErrorEnvelope),
        (status = 422, description = "Complete, and the virus scan found malware (infected): nothing is stored", body = ErrorEnvelope),
        (status = 503, description = "Complete, and the virus scanner is configured but unreachable (unavailable): nothing is stored", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn patch(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
    body: Body,
) -> Result<Response, ApiError> {
    if let Some(resp) = version_refusal(&headers) {
        return Ok(resp);
    }
    let row = own_upload(&app, &caller, &id).await?;
    if headers.get(header::CONTENT_TYPE).and_then(|v| v.to_str().ok()) != Some("application/offset+octet-stream") {
        return Err(ApiError::new(
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "invalid_content_type",
            "a tus PATCH is Content-Type: application/offset+octet-stream",
        ));
    }
    let offset =
        number(&headers, "upload-offset")?.ok_or_else(|| bad("missing_offset", "Upload-Offset is required"))?;
    if i64::try_from(offset).ok() != Some(row.received) {
        return Err(ApiError::new(
            StatusCode::CONFLICT,
            "offset_mismatch",
            format!("the upload is at offset {}; ask HEAD and resume from there", row.received),
        ));
    }
    let remaining = u64::try_from(row.length - row.received).unwrap_or(0);
    if number(&headers, "content-length")?.is_some_and(|n| n > remaining) {
        return Err(too_large(app.config.max_upload_bytes));
    }
    // Its own task: a connection that drops mid-body still leaves its bytes counted.
    let writer = tokio::spawn(write_segment(Arc::clone(&app), row.clone(), body));
    let (segment, broke) = writer.await.map_err(|e| ApiError::internal(e.to_string()))??;
    let added = match segment {
        Segment::Kept(n) => n,
        Segment::TooLong => return Err(too_large(app.config.max_upload_bytes)),
        Segment::Raced => {
            return Err(ApiError::new(StatusCode::CONFLICT, "offset_mismatch", "another request appended meanwhile"));
        }
    };
    if broke {
        return Err(bad("upload_interrupted", "the body broke off; HEAD tells where to resume"));
    }
    let received = row.received + i64::try_from(added).unwrap_or(i64::MAX);
    let mut resp = with_tus(StatusCode::NO_CONTENT);
    resp.headers_mut().insert("upload-offset", HeaderValue::from(received));
    if received < row.length {
        return Ok(resp);
    }
    let Some(done) = sql::upload(&*app.db, &id).await? else { return Err(not_found("upload")) };
    let result = finish(&app, &caller, &headers, &done).await;
    discard(&app, &id).await;
    let doc = result?;
    if let Ok(v) = HeaderValue::from_str(&doc) {
        resp.headers_mut().insert("hearth-document-id", v);
    }
    Ok(resp)
}

/// The complete upload as a document; answers its id.
async fn finish(
    app: &Arc<Documents>,
    caller: &hearth_workflow::Caller,
    headers: &HeaderMap,
    row: &UploadRow,
) -> Result<String, ApiError> {
    let meta: Meta = serde_json::from_str(&row.metadata).map_err(ApiError::internal)?;
    let store = app.store_for(caller);
    let input = segments(Arc::clone(app), row).map(|c| c.map_err(|e| BlobError::Crypt(e.to_string())));
    let max = app.config.max_upload_bytes;
    let staged = app.blobs.stage(input, max).await.map_err(|e| match e {
        BlobError::TooLarge(_) => too_large(max),
        other => ApiError::internal(other.to_string()),
    })?;
    let doc = keep_document(app, &store, headers, &row.patient, &meta, staged).await?;
    Ok(doc.id)
}

#[utoipa::path(delete, path = "/api/v1/documents/uploads/{id}", tag = "documents",
    params(("id" = String, Path, description = "The upload"), ("Tus-Resumable" = String, Header, description = "`1.0.0`")),
    responses(
        (status = 204, description = "Abandoned: its bytes are removed"),
        (status = 404, description = "No such upload of this account", body = ErrorEnvelope),
    ),
    security(("bearer" = []))
)]
pub async fn terminate(
    State(app): State<Arc<Documents>>,
    ApiCaller(caller): ApiCaller,
    Path(id): Path<String>,
    headers: HeaderMap,
) -> Result<Response, ApiError> {
    if let Some(resp) = version_refusal(&headers) {
        return Ok(resp);
    }
    own_upload(&app, &caller, &id).await?;
    discard(&app, &id).await;
    Ok(with_tus(StatusCode::NO_CONTENT))
}
