-- The audit trail's journal (issue 7, "audit writes must not halve throughput"). A request waits
-- only until its event's chain link, carrying the event's stored JSON, is committed: one
-- multi-row insert per group commit. The server's audit indexer then stores journaled events
-- as AuditEvent resources with their index rows, in large batches, and clears `body` here
-- (the resource holds it from then on). Every read of the audit store first indexes whatever
-- is pending, so a search never misses a recorded event.
ALTER TABLE audit_chain ADD COLUMN last_updated INTEGER;
ALTER TABLE audit_chain ADD COLUMN body TEXT;
CREATE INDEX audit_chain_unindexed ON audit_chain (seq) WHERE body IS NOT NULL;
