-- Documents (see hearth-store-sql/src/documents.rs and crates/hearth-documents). Times are Unix
-- milliseconds. The FHIR record is the DocumentReference, written through the guarded store;
-- these rows say which stored blob holds its content and what uploads are under way.
--
-- document_blobs: one row per stored blob, named by the SHA-256 of its plaintext (hex);
-- encrypted = 1 when the stored bytes are a Hearth encrypted stream. unreferenced_at is set when
-- the last document naming the blob goes (deletion, erasure): the sweeper then removes the
-- object and the row once it has stayed unreferenced for the grace period.
CREATE TABLE document_blobs (
    sha256          TEXT   PRIMARY KEY,
    size            BIGINT NOT NULL,
    encrypted       BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    unreferenced_at BIGINT
);
CREATE INDEX document_blobs_unreferenced ON document_blobs (unreferenced_at);

-- documents: one row per live DocumentReference made by the documents workflow (its id).
-- text_status: where reading its text stands (pending, reading, done, no_text, unsupported,
-- tools_missing, failed); text_claimed_at: when a reader took it (a reader that died leaves it to
-- be taken again); text_detail: JSON, per page how the text was read and the OCR confidence.
CREATE TABLE documents (
    id              TEXT   PRIMARY KEY,
    patient         TEXT   NOT NULL,
    sha256          TEXT   NOT NULL,
    content_type    TEXT   NOT NULL,
    size            BIGINT NOT NULL,
    created_at      BIGINT NOT NULL,
    text_status     TEXT   NOT NULL DEFAULT 'pending',
    text_claimed_at BIGINT,
    text_detail     TEXT
);
CREATE INDEX documents_by_text_status ON documents (text_status, created_at);
CREATE INDEX documents_by_patient ON documents (patient);
CREATE INDEX documents_by_blob ON documents (sha256);

-- document_uploads: resumable (tus 1.0) uploads under way. received counts the bytes kept so
-- far, in segments (one file per PATCH, <data_dir>/uploads/<id>/<segment>); metadata is the
-- document's JSON metadata from Upload-Metadata.
CREATE TABLE document_uploads (
    id         TEXT   PRIMARY KEY,
    account_id TEXT   NOT NULL,
    patient    TEXT   NOT NULL,
    length     BIGINT NOT NULL,
    received   BIGINT NOT NULL,
    segments   BIGINT NOT NULL,
    metadata   TEXT   NOT NULL,
    created_at BIGINT NOT NULL
);
CREATE INDEX document_uploads_by_patient ON document_uploads (patient);

-- The text read from each document, full-text searchable (FTS5; the database file is encrypted
-- as a whole with a key).
CREATE VIRTUAL TABLE documents_text USING fts5(id UNINDEXED, body, tokenize = 'unicode61');
