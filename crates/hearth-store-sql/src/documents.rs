//! The documents tables (migration `0017_documents.sql`), written once over [`Db`] for both
//! backends: which blob holds a DocumentReference's content, the blobs themselves (for
//! de-duplication and the sweeper), and resumable uploads under way. Only `hearth-documents`
//! calls this module; erasure ([`crate::erase`]) removes a patient's rows in its own transaction.
//!
//! A document row is written and removed in the same transaction as its DocumentReference
//! (a [`crate::notify::TxDb`] made from the `GuardedTx`).

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db, Exec};

/// One document's content.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DocumentRow {
    /// The DocumentReference id.
    pub id: String,
    pub patient: String,
    pub sha256: String,
    pub content_type: String,
    pub size: i64,
    pub created_at: i64,
}

/// One stored blob.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlobRow {
    pub sha256: String,
    pub size: i64,
    pub encrypted: bool,
}

/// Records a document and its blob (the blob row is shared by identical content); a blob that
/// was waiting to be swept is referenced again.
pub async fn insert(db: &dyn Db, doc: &DocumentRow, encrypted: bool) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO document_blobs (sha256, size, encrypted, created_at, unreferenced_at) VALUES (")
        .text(&doc.sha256)
        .push(", ")
        .int(doc.size)
        .push(", ")
        .int(i64::from(encrypted))
        .push(", ")
        .int(doc.created_at)
        .push(", NULL) ON CONFLICT (sha256) DO UPDATE SET unreferenced_at = NULL");
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO documents (id, patient, sha256, content_type, size, created_at) VALUES (")
        .text(&doc.id)
        .push(", ")
        .text(&doc.patient)
        .push(", ")
        .text(&doc.sha256)
        .push(", ")
        .text(&doc.content_type)
        .push(", ")
        .int(doc.size)
        .push(", ")
        .int(doc.created_at)
        .push(")");
    db.execute(&b.finish()).await?;
    Ok(())
}

const DOC_COLUMNS: &str = "d.id, d.patient, d.sha256, d.content_type, d.size, d.created_at, b.encrypted";

/// The document `id` with whether its blob is encrypted.
pub async fn get(db: &dyn Db, id: &str) -> Result<Option<(DocumentRow, bool)>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ")
        .push(DOC_COLUMNS)
        .push(" FROM documents d JOIN document_blobs b ON b.sha256 = d.sha256 WHERE d.id = ")
        .text(id);
    let cols = [Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Int, Col::Int];
    let Some(row) = db.fetch(&b.finish(), &cols).await?.into_iter().next() else { return Ok(None) };
    let mut it = row.into_iter();
    let doc = DocumentRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?.ok_or_else(corrupt)?,
        sha256: text(it.next())?.ok_or_else(corrupt)?,
        content_type: text(it.next())?.ok_or_else(corrupt)?,
        size: int(it.next())?.ok_or_else(corrupt)?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
    };
    let encrypted = int(it.next())?.ok_or_else(corrupt)? != 0;
    Ok(Some((doc, encrypted)))
}

/// Marks every blob no document names any more as unreferenced since `now`.
async fn mark_unreferenced(db: &dyn Db, now: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE document_blobs SET unreferenced_at = ").int(now).push(
        " WHERE unreferenced_at IS NULL AND NOT EXISTS \
             (SELECT 1 FROM documents d WHERE d.sha256 = document_blobs.sha256)",
    );
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Removes the document row `id` (its DocumentReference is deleted in the same transaction)
/// and its text; its blob becomes unreferenced when no other document names it. False: no such
/// row.
pub async fn remove(db: &dyn Db, id: &str, now: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM documents_text WHERE id = ").text(id);
    db.execute(&b.finish()).await?;
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM documents WHERE id = ").text(id);
    let n = db.execute(&b.finish()).await?;
    mark_unreferenced(db, now).await?;
    Ok(n > 0)
}

/// Blobs unreferenced since before `before`, at most `limit`.
pub async fn sweepable(db: &dyn Db, before: i64, limit: i64) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT sha256 FROM document_blobs WHERE unreferenced_at IS NOT NULL AND unreferenced_at <= ")
        .int(before)
        .push(" ORDER BY unreferenced_at LIMIT ")
        .int(limit);
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

/// Forgets a swept blob's row if it is still unreferenced; true when the caller should now
/// remove the object.
pub async fn forget_blob(db: &dyn Db, sha256: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM document_blobs WHERE sha256 = ").text(sha256).push(
        " AND unreferenced_at IS NOT NULL AND NOT EXISTS \
             (SELECT 1 FROM documents d WHERE d.sha256 = document_blobs.sha256)",
    );
    Ok(db.execute(&b.finish()).await? > 0)
}

/// Erasure (inside its transaction): the patient's document rows and uploads go, their blobs
/// become unreferenced unless another patient's document holds the same content.
pub async fn erase_patient(exec: &mut dyn Exec, patient: &str, now: i64) -> Result<(), StoreError> {
    let dialect = exec.dialect();
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM documents_text WHERE id IN (SELECT id FROM documents WHERE patient = ").text(patient).push(")");
    exec.execute(&b.finish()).await?;
    for table in ["documents", "document_uploads"] {
        let mut b = Builder::new(dialect);
        b.push("DELETE FROM ").push(table).push(" WHERE patient = ").text(patient);
        exec.execute(&b.finish()).await?;
    }
    let mut b = Builder::new(dialect);
    b.push("UPDATE document_blobs SET unreferenced_at = ").int(now).push(
        " WHERE unreferenced_at IS NULL AND NOT EXISTS \
             (SELECT 1 FROM documents d WHERE d.sha256 = document_blobs.sha256)",
    );
    exec.execute(&b.finish()).await?;
    Ok(())
}

// ---------------------------------------------------------------------------------------------
// Reading documents (the text of each, full-text searchable)

/// A document whose text is to be read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ToRead {
    pub id: String,
    pub sha256: String,
    pub content_type: String,
    pub encrypted: bool,
}

/// Takes the oldest document waiting to be read (or one whose reader took it before
/// `stale_before` and never finished), marking it `reading` since `now`. Two readers cannot take
/// the same one: the claim is conditional on the status it saw.
pub async fn next_to_read(db: &dyn Db, now: i64, stale_before: i64) -> Result<Option<ToRead>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(
        "SELECT d.id, d.sha256, d.content_type, b.encrypted, d.text_status, d.text_claimed_at FROM documents d \
         JOIN document_blobs b ON b.sha256 = d.sha256 WHERE d.text_status = 'pending' \
         OR (d.text_status = 'reading' AND d.text_claimed_at < ",
    )
    .int(stale_before)
    .push(") ORDER BY d.created_at, d.id LIMIT 1");
    let cols = [Col::Text, Col::Text, Col::Text, Col::Int, Col::Text, Col::Int];
    let Some(row) = db.fetch(&b.finish(), &cols).await?.into_iter().next() else { return Ok(None) };
    let mut it = row.into_iter();
    let found = ToRead {
        id: text(it.next())?.ok_or_else(corrupt)?,
        sha256: text(it.next())?.ok_or_else(corrupt)?,
        content_type: text(it.next())?.ok_or_else(corrupt)?,
        encrypted: int(it.next())?.ok_or_else(corrupt)? != 0,
    };
    let status = text(it.next())?.ok_or_else(corrupt)?;
    let claimed = int(it.next())?;
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE documents SET text_status = 'reading', text_claimed_at = ")
        .int(now)
        .push(" WHERE id = ")
        .text(&found.id)
        .push(" AND text_status = ")
        .text(&status);
    match claimed {
        Some(c) => b.push(" AND text_claimed_at = ").int(c),
        None => b.push(" AND text_claimed_at IS NULL"),
    };
    Ok((db.execute(&b.finish()).await? == 1).then_some(found))
}

/// Records what reading document `id` gave: its status, the per-page detail (JSON) and the text
/// (searchable from now on).
pub async fn set_text(db: &dyn Db, id: &str, status: &str, detail: &str, body: Option<&str>) -> Result<(), StoreError> {
    let dialect = db.dialect();
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM documents_text WHERE id = ").text(id);
    db.execute(&b.finish()).await?;
    if let Some(body) = body.filter(|t| !t.trim().is_empty()) {
        let mut b = Builder::new(dialect);
        match dialect {
            crate::Dialect::Sqlite => {
                b.push("INSERT INTO documents_text (id, body) SELECT ").text(id).push(", ").text(body);
            }
            crate::Dialect::Postgres => {
                b.push("INSERT INTO documents_text (id, body, tsv) SELECT ")
                    .text(id)
                    .push(", ")
                    .text(body)
                    .push(", to_tsvector('simple', ")
                    .text(body)
                    .push(")");
            }
        }
        // Only for a document still there (one deleted or erased while it was read keeps no text).
        b.push(" WHERE EXISTS (SELECT 1 FROM documents WHERE id = ").text(id).push(")");
        db.execute(&b.finish()).await?;
    }
    let mut b = Builder::new(dialect);
    b.push("UPDATE documents SET text_status = ")
        .text(status)
        .push(", text_detail = ")
        .text(detail)
        .push(" WHERE id = ")
        .text(id);
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Removes text whose document is gone (one erased in the moment its reader finished).
pub async fn forget_orphan_text(db: &dyn Db) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM documents_text WHERE id NOT IN (SELECT id FROM documents)");
    db.execute(&b.finish()).await?;
    Ok(())
}

/// The patient's documents whose text holds every word of `words`, newest first, at most `limit`.
pub async fn search_text(db: &dyn Db, patient: &str, words: &[String], limit: i64) -> Result<Vec<String>, StoreError> {
    if words.is_empty() {
        return Ok(Vec::new());
    }
    let dialect = db.dialect();
    let mut b = Builder::new(dialect);
    b.push("SELECT d.id FROM documents d JOIN documents_text t ON t.id = d.id WHERE d.patient = ").text(patient);
    match dialect {
        crate::Dialect::Sqlite => {
            // Each word a quoted FTS5 string: no query syntax reaches the parser from the caller.
            let query: Vec<String> = words.iter().map(|w| format!("\"{}\"", w.replace('"', "\"\""))).collect();
            b.push(" AND documents_text MATCH ").text(&query.join(" "));
        }
        crate::Dialect::Postgres => {
            b.push(" AND t.tsv @@ plainto_tsquery('simple', ").text(&words.join(" ")).push(")");
        }
    }
    b.push(" ORDER BY d.created_at DESC, d.id DESC LIMIT ").int(limit);
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

/// How far reading each of `ids` got: `(id, text_status)`.
pub async fn text_statuses(db: &dyn Db, ids: &[String]) -> Result<Vec<(String, String)>, StoreError> {
    if ids.is_empty() {
        return Ok(Vec::new());
    }
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id, text_status FROM documents WHERE id IN ").text_list(ids.iter().map(String::as_str));
    db.fetch(&b.finish(), &[Col::Text, Col::Text])
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            Ok((text(it.next())?.ok_or_else(corrupt)?, text(it.next())?.ok_or_else(corrupt)?))
        })
        .collect()
}

// ---------------------------------------------------------------------------------------------
// Resumable uploads

/// A resumable upload under way.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadRow {
    pub id: String,
    pub account_id: String,
    pub patient: String,
    pub length: i64,
    pub received: i64,
    pub segments: i64,
    pub metadata: String,
    pub created_at: i64,
}

const UPLOAD_COLUMNS: &str = "id, account_id, patient, length, received, segments, metadata, created_at";

pub async fn insert_upload(db: &dyn Db, u: &UploadRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO document_uploads (").push(UPLOAD_COLUMNS).push(") VALUES (");
    b.text(&u.id).push(", ").text(&u.account_id).push(", ").text(&u.patient).push(", ");
    b.int(u.length).push(", ").int(u.received).push(", ").int(u.segments).push(", ");
    b.text(&u.metadata).push(", ").int(u.created_at).push(")");
    db.execute(&b.finish()).await?;
    Ok(())
}

pub async fn upload(db: &dyn Db, id: &str) -> Result<Option<UploadRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(UPLOAD_COLUMNS).push(" FROM document_uploads WHERE id = ").text(id);
    let cols = [Col::Text, Col::Text, Col::Text, Col::Int, Col::Int, Col::Int, Col::Text, Col::Int];
    let Some(row) = db.fetch(&b.finish(), &cols).await?.into_iter().next() else { return Ok(None) };
    let mut it = row.into_iter();
    Ok(Some(UploadRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        account_id: text(it.next())?.ok_or_else(corrupt)?,
        patient: text(it.next())?.ok_or_else(corrupt)?,
        length: int(it.next())?.ok_or_else(corrupt)?,
        received: int(it.next())?.ok_or_else(corrupt)?,
        segments: int(it.next())?.ok_or_else(corrupt)?,
        metadata: text(it.next())?.ok_or_else(corrupt)?,
        created_at: int(it.next())?.ok_or_else(corrupt)?,
    }))
}

/// Records a kept segment: the upload had `received` bytes in `segments` segments before it.
/// False when another request moved it meanwhile (nothing changed).
pub async fn advance_upload(
    db: &dyn Db,
    id: &str,
    received: i64,
    segments: i64,
    added: i64,
) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE document_uploads SET received = ")
        .int(received + added)
        .push(", segments = ")
        .int(segments + 1)
        .push(" WHERE id = ")
        .text(id)
        .push(" AND received = ")
        .int(received)
        .push(" AND segments = ")
        .int(segments);
    Ok(db.execute(&b.finish()).await? == 1)
}

pub async fn remove_upload(db: &dyn Db, id: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM document_uploads WHERE id = ").text(id);
    Ok(db.execute(&b.finish()).await? > 0)
}

/// Uploads started before `before` (abandoned), at most `limit`.
pub async fn stale_uploads(db: &dyn Db, before: i64, limit: i64) -> Result<Vec<String>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT id FROM document_uploads WHERE created_at < ")
        .int(before)
        .push(" ORDER BY created_at LIMIT ")
        .int(limit);
    db.fetch(&b.finish(), &[Col::Text])
        .await?
        .into_iter()
        .map(|row| text(row.into_iter().next())?.ok_or_else(corrupt))
        .collect()
}

/// Every upload id (the sweeper removes segment directories that have no row).
pub async fn upload_exists(db: &dyn Db, id: &str) -> Result<bool, StoreError> {
    Ok(upload(db, id).await?.is_some())
}
