-- The audit trail's hash chain (issue 7). Every audit record is a FHIR AuditEvent stored like any
-- resource (so /fhir/AuditEvent searches it); this table orders them and keeps, per event, the
-- SHA-256 of the previous link's hash and the event's stored JSON. Rows are only ever appended;
-- `hearth admin verify-audit` recomputes the chain and names the first link that does not match.
CREATE TABLE audit_chain (
    seq      INTEGER PRIMARY KEY,
    event_id TEXT NOT NULL UNIQUE,
    hash     TEXT NOT NULL
);
