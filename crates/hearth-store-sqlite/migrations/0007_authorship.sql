-- Who wrote each version: the account id of the person (or app acting for them); NULL for the
-- system itself (imports on the machine, background jobs). Clinical writes by admins are thus
-- attributed to a person; the audit trail reads it from here.
ALTER TABLE resource_versions ADD COLUMN author TEXT;
