-- The export job table becomes the table of every durable background job: `kind` says which
-- worker claims a row ('export' for $export, 'reindex' for $reindex and SearchParameter changes),
-- so a reindex is resumed after a restart or by another process, as exports already are.
ALTER TABLE export_jobs ADD COLUMN kind TEXT NOT NULL DEFAULT 'export' CHECK (kind IN ('export', 'reindex'));
DROP INDEX export_jobs_claim;
CREATE INDEX export_jobs_claim ON export_jobs (kind, status, created_at);
