-- The audit trail's journal (issue 7, "audit writes must not halve throughput"). A request waits
-- only until its event's chain link and body are committed here (two multi-row inserts per group
-- commit); the server's audit writer then stores journaled events as AuditEvent resources with
-- their index rows in large batches and deletes them from this table. Every read of the audit
-- store first indexes whatever is pending, so a search never misses a recorded event.
CREATE TABLE audit_pending (
    seq          INTEGER PRIMARY KEY,
    last_updated INTEGER NOT NULL,
    body         TEXT NOT NULL
);
