//! Reading documents (issue 22, item 3): a background reader, never the upload request, takes
//! each new document in turn and extracts its text — a PDF's own text with `pdftotext`
//! (poppler), and when a PDF has none (a scan) its pages rendered with `pdftoppm` and read by
//! Tesseract, as are images (PNG, JPEG, TIFF), page by page with the mean word confidence. The
//! text goes to the full-text index (`documents_text`: FTS5 on SQLite, `tsvector` on
//! PostgreSQL). Missing tools are a status of the document (`tools_missing`), not a failure;
//! HEIC/HEIF and DICOM are `unsupported` (Tesseract reads neither).

use std::path::{Path, PathBuf};
use std::time::Duration;

use futures_util::StreamExt;
use hearth_store_sql::documents::{self as sql, ToRead};
use serde::Serialize;
use tokio::io::AsyncWriteExt;

use crate::Documents;
use crate::blob::{private_dir, private_file};

/// The longest a tool may take on one file or page.
const TOOL_DEADLINE: Duration = Duration::from_secs(120);
/// A reader that took a document this long ago and never finished has died.
const STALE_CLAIM_MS: i64 = 10 * 60 * 1000;
/// A PDF whose own text has fewer letters or digits than this is treated as a scan.
const MIN_PDF_TEXT: usize = 16;

/// How one page was read.
#[derive(Debug, Clone, Serialize, PartialEq)]
pub struct Page {
    pub page: usize,
    /// `pdf-text` or `ocr`.
    pub method: &'static str,
    /// Mean Tesseract word confidence (0–100) for OCR pages.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub confidence: Option<f64>,
}

/// What reading a document gave.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// `done`, `no_text`, `unsupported`, `tools_missing` or `failed`.
    pub status: &'static str,
    pub text: String,
    pub pages: Vec<Page>,
    /// Why it is not `done` (a tool's name, never document content).
    pub note: Option<String>,
}

impl Reading {
    fn status_only(status: &'static str, note: impl Into<String>) -> Reading {
        Reading { status, text: String::new(), pages: Vec::new(), note: Some(note.into()) }
    }
}

enum ToolError {
    Missing(&'static str),
    Failed(String),
}

/// Runs `tool args…` and answers its standard output.
async fn run(tool: &'static str, args: &[&str]) -> Result<Vec<u8>, ToolError> {
    let child = tokio::process::Command::new(tool)
        .args(args)
        .stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .kill_on_drop(true)
        .spawn();
    let child = match child {
        Ok(c) => c,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Err(ToolError::Missing(tool)),
        Err(e) => return Err(ToolError::Failed(format!("{tool}: {e}"))),
    };
    let out = tokio::time::timeout(TOOL_DEADLINE, child.wait_with_output())
        .await
        .map_err(|_| ToolError::Failed(format!("{tool} took longer than {} s", TOOL_DEADLINE.as_secs())))?
        .map_err(|e| ToolError::Failed(format!("{tool}: {e}")))?;
    if !out.status.success() {
        return Err(ToolError::Failed(format!("{tool} exited with {}", out.status)));
    }
    Ok(out.stdout)
}

/// Words and lines from Tesseract's TSV output, with the mean confidence of its words.
pub fn parse_tsv(tsv: &str) -> (String, Option<f64>) {
    let mut text = String::new();
    let mut line_key = None;
    let (mut sum, mut n) = (0.0, 0u32);
    for row in tsv.lines().skip(1) {
        let cols: Vec<&str> = row.split('\t').collect();
        let (Some(level), Some(conf), Some(word)) = (cols.first(), cols.get(10), cols.get(11)) else { continue };
        let word = word.trim();
        if *level != "5" || word.is_empty() {
            continue;
        }
        let Ok(conf) = conf.parse::<f64>() else { continue };
        if conf < 0.0 {
            continue;
        }
        let key = (cols.get(1).copied(), cols.get(2).copied(), cols.get(3).copied(), cols.get(4).copied());
        if line_key.is_some() && line_key != Some(key) {
            text.push('\n');
        } else if !text.is_empty() {
            text.push(' ');
        }
        line_key = Some(key);
        text.push_str(word);
        sum += conf;
        n += 1;
    }
    (text, (n > 0).then(|| (sum / f64::from(n) * 10.0).round() / 10.0))
}

/// Reads one image (a page) with Tesseract.
async fn ocr(image: &Path, languages: &str) -> Result<(String, Option<f64>), ToolError> {
    let path = image.to_string_lossy();
    let out = run("tesseract", &[&path, "stdout", "-l", languages, "tsv"]).await?;
    Ok(parse_tsv(&String::from_utf8_lossy(&out)))
}

/// Reads the file at `path` (its type known from its bytes), using `work` for rendered pages.
pub async fn read_file(path: &Path, content_type: &str, work: &Path, languages: &str) -> Reading {
    let result = match content_type {
        "application/pdf" => read_pdf(path, work, languages).await,
        "image/png" | "image/jpeg" | "image/tiff" => ocr(path, languages).await.map(|(text, confidence)| Reading {
            status: "done",
            text,
            pages: vec![Page { page: 1, method: "ocr", confidence }],
            note: None,
        }),
        _ => {
            return Reading::status_only(
                "unsupported",
                format!("{content_type} is not read (Tesseract cannot open it)"),
            );
        }
    };
    match result {
        Ok(mut r) => {
            if r.text.trim().is_empty() {
                r.status = "no_text";
            }
            r
        }
        Err(ToolError::Missing(tool)) => Reading::status_only("tools_missing", format!("{tool} is not installed")),
        Err(ToolError::Failed(why)) => Reading::status_only("failed", why),
    }
}

async fn read_pdf(path: &Path, work: &Path, languages: &str) -> Result<Reading, ToolError> {
    let p = path.to_string_lossy();
    let own = String::from_utf8_lossy(&run("pdftotext", &["-layout", "-enc", "UTF-8", &p, "-"]).await?).into_owned();
    if own.chars().filter(|c| c.is_alphanumeric()).count() >= MIN_PDF_TEXT {
        let pages = own
            .split('\u{c}')
            .filter(|page| !page.trim().is_empty())
            .enumerate()
            .map(|(i, _)| Page { page: i + 1, method: "pdf-text", confidence: None })
            .collect();
        return Ok(Reading { status: "done", text: own, pages, note: None });
    }
    // A scan: render each page and read it.
    let prefix = work.join("page");
    let prefix = prefix.to_string_lossy();
    run("pdftoppm", &["-r", "200", "-png", &p, &prefix]).await?;
    let mut images: Vec<PathBuf> = Vec::new();
    let mut dir = tokio::fs::read_dir(work).await.map_err(|e| ToolError::Failed(e.to_string()))?;
    while let Ok(Some(entry)) = dir.next_entry().await {
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with("page") && name.ends_with(".png") {
            images.push(entry.path());
        }
    }
    // pdftoppm numbers pages with zero padding to the width of the last one: names sort.
    images.sort();
    let mut text = String::new();
    let mut pages = Vec::new();
    for (i, image) in images.iter().enumerate() {
        let (page_text, confidence) = ocr(image, languages).await?;
        if !text.is_empty() {
            text.push('\u{c}');
        }
        text.push_str(&page_text);
        pages.push(Page { page: i + 1, method: "ocr", confidence });
    }
    Ok(Reading { status: "done", text, pages, note: None })
}

/// Reads the next waiting document, if any; answers whether there was one.
pub(crate) async fn read_next(docs: &Documents) -> Result<bool, String> {
    let now = docs.clock.now().timestamp_millis();
    let Some(doc) = sql::next_to_read(&*docs.db, now, now - STALE_CLAIM_MS).await.map_err(|e| e.to_string())? else {
        return Ok(false);
    };
    let reading = read_document(docs, &doc).await;
    let detail = serde_json::json!({"pages": reading.pages, "note": reading.note}).to_string();
    // The DocumentReference first: once the status says `done`, the text is everywhere.
    if reading.status == "done"
        && let Err(e) = attach_text(docs, &doc.id, &reading).await
    {
        tracing::warn!(document = %doc.id, error = %e, "the read text could not be attached to its DocumentReference");
    }
    sql::set_text(&*docs.db, &doc.id, reading.status, &detail, Some(&reading.text)).await.map_err(|e| e.to_string())?;
    // A lab report's results become proposals to confirm (never counted before that).
    if reading.status == "done" {
        match crate::results::propose(docs, &doc.id, &reading.text).await {
            Ok(0) => {}
            Ok(n) => tracing::info!(document = %doc.id, results = n, "results proposed from a document"),
            Err(e) => tracing::warn!(document = %doc.id, error = %e, "results could not be proposed from a document"),
        }
    }
    tracing::info!(document = %doc.id, status = reading.status, pages = reading.pages.len(), "document read");
    Ok(true)
}

/// The most text attached to a DocumentReference (the index keeps all of it).
const ATTACHED_TEXT_MAX: usize = 1024 * 1024;

/// Attaches the text to the DocumentReference as a second `content` (`text/plain`, inline),
/// replacing an earlier reading; as the system, conditional on the version read (a concurrent
/// change wins and the text stays in the index only).
async fn attach_text(docs: &Documents, id: &str, reading: &Reading) -> Result<(), String> {
    let store = docs.system();
    let hearth_store::Current::Found(current) = store.read("DocumentReference", id).await.map_err(|e| e.to_string())?
    else {
        return Ok(());
    };
    let mut body: serde_json::Value = current
        .body
        .as_deref()
        .and_then(|b| serde_json::from_str(b).ok())
        .ok_or("stored DocumentReference is not JSON")?;
    let mut text = reading.text.as_str();
    if text.len() > ATTACHED_TEXT_MAX {
        let mut end = ATTACHED_TEXT_MAX;
        while !text.is_char_boundary(end) {
            end -= 1;
        }
        text = text.get(..end).unwrap_or_default();
    }
    let confidences: Vec<f64> = reading.pages.iter().filter_map(|p| p.confidence).collect();
    let title = if confidences.is_empty() {
        "Text of the document".to_owned()
    } else {
        let mean = confidences.iter().sum::<f64>() / confidences.len() as f64;
        format!("Text read by OCR (mean word confidence {:.0}%)", mean)
    };
    let now = docs.clock.now();
    let attachment = serde_json::json!({"attachment": {
        "contentType": "text/plain; charset=utf-8",
        "data": data_encoding::BASE64.encode(text.as_bytes()),
        "title": title,
        "creation": now.to_rfc3339_opts(chrono::SecondsFormat::Millis, true),
    }});
    let Some(content) = body.get_mut("content").and_then(serde_json::Value::as_array_mut) else {
        return Err("a DocumentReference without content".into());
    };
    content.retain(|c| {
        !c.pointer("/attachment/contentType")
            .and_then(serde_json::Value::as_str)
            .is_some_and(|t| t.starts_with("text/plain"))
    });
    content.push(attachment);
    hearth_workflow::fhir::validate(docs, "DocumentReference", &body)
        .map_err(|e| format!("{:?}", e.issues.first().map(|i| &i.diagnostics)))?;
    let mut tx = store.begin().await.map_err(|e| e.to_string())?;
    let write = hearth_workflow::fhir::write_of(docs, "DocumentReference", id.to_owned(), body);
    match hearth_store::interactions::update(&mut tx, write, Some(current.version_id), now).await {
        Ok(_) => tx.commit().await.map_err(|e| e.to_string()),
        Err(hearth_store::StoreError::VersionConflict { .. }) => Ok(()),
        Err(e) => Err(e.to_string()),
    }
}

async fn read_document(docs: &Documents, doc: &ToRead) -> Reading {
    let work = docs.blobs.staging_dir().join(format!("read-{}", uuid::Uuid::new_v4()));
    let reading = async {
        private_dir(&work).await.map_err(|e| e.to_string())?;
        let file = work.join("document");
        let mut out = private_file(&file).await.map_err(|e| e.to_string())?;
        let mut content = docs
            .blobs
            .open(&doc.sha256, doc.encrypted, 0)
            .await
            .map_err(|e| e.to_string())?
            .ok_or_else(|| "the blob is missing from storage".to_owned())?;
        while let Some(chunk) = content.next().await {
            out.write_all(&chunk.map_err(|e| e.to_string())?).await.map_err(|e| e.to_string())?;
        }
        out.flush().await.map_err(|e| e.to_string())?;
        drop(out);
        Ok::<_, String>(read_file(&file, &doc.content_type, &work, &docs.config.ocr_languages).await)
    }
    .await;
    if let Err(e) = tokio::fs::remove_dir_all(&work).await {
        tracing::warn!(error = %e, "a reader's work directory could not be removed");
    }
    reading.unwrap_or_else(|why| Reading::status_only("failed", why))
}

#[cfg(test)]
mod tests {
    #![allow(clippy::unwrap_used)]
    use super::*;

    #[test]
    fn tesseract_tsv_becomes_lines_and_a_mean_confidence() {
        let tsv = "level\tpage_num\tblock_num\tpar_num\tline_num\tword_num\tleft\ttop\twidth\theight\tconf\ttext\n\
                   1\t1\t0\t0\t0\t0\t0\t0\t100\t100\t-1\t\n\
                   5\t1\t1\t1\t1\t1\t0\t0\t10\t10\t96.5\tHaemoglobin\n\
                   5\t1\t1\t1\t1\t2\t0\t0\t10\t10\t90.5\t13.2\n\
                   5\t1\t1\t1\t2\t1\t0\t0\t10\t10\t80\tरक्त\n\
                   5\t1\t1\t1\t2\t2\t0\t0\t10\t10\t-1\t\n";
        let (text, conf) = parse_tsv(tsv);
        assert_eq!(text, "Haemoglobin 13.2\nरक्त");
        assert_eq!(conf, Some(89.0));
        assert_eq!(parse_tsv("level\n"), (String::new(), None));
    }
}
