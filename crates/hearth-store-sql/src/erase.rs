//! Data rights (issue 7) in SQL both backends share: erasing a patient's record inside a store
//! transaction ([`erase_patient`], what it removes is stated on [`hearth_store::ErasurePlan`]'s
//! module), and the rows of erasure requests and legal holds (`0011_rights.sql`).
//!
//! The erasure reads everything it will change first (holds, members, deleted resources,
//! Binaries, the newest activity), then changes it in sets of at most [`CHUNK`] resources with
//! set-based statements (no statement per version), all in the caller's one transaction.

use std::sync::Arc;

use chrono::DateTime;
use hearth_store::{Erased, Erasure, ErasurePlan, Hold, Method, StoreError, Version};

use crate::identity::{Db, corrupt, int, text};
use crate::index::TABLES;
use crate::{Builder, Col, Exec, Val};

/// Resources per set-based statement.
const CHUNK: usize = 500;

fn one_int(rows: &[Vec<Val>]) -> Option<i64> {
    rows.first().and_then(|r| r.first()).and_then(Val::as_int)
}

/// `(a.res_type = ? AND a.param IN (…)) OR …` over the compartment parameters, on alias `a`.
fn in_compartment(b: &mut Builder, alias: &str, plan: &ErasurePlan) {
    b.push("(");
    for (i, (ty, params)) in plan.params.iter().enumerate() {
        if i > 0 {
            b.push(" OR ");
        }
        b.push(&format!("({alias}.res_type = ")).text(ty);
        b.push(&format!(" AND {alias}.param IN ")).text_list(params.iter().map(String::as_str));
        b.push(")");
    }
    if plan.params.is_empty() {
        b.push("1 = 0");
    }
    b.push(")");
}

/// The live members of the compartment (the Patient itself, other Patients and AuditEvents
/// excepted); with `sole`, only those naming no other patient through a compartment parameter.
async fn live_members(exec: &mut dyn Exec, plan: &ErasurePlan, sole: bool) -> Result<Vec<i64>, StoreError> {
    let mut b = Builder::new(exec.dialect());
    b.push("SELECT DISTINCT a.rid FROM search_reference a WHERE a.target_type = 'Patient' AND a.target_id = ")
        .text(&plan.patient)
        .push(" AND a.grp = 0 AND a.res_type NOT IN ('Patient', 'AuditEvent') AND ");
    in_compartment(&mut b, "a", plan);
    if sole {
        b.push(" AND NOT EXISTS (SELECT 1 FROM search_reference o WHERE o.rid = a.rid AND o.target_type = 'Patient' AND o.target_id <> ")
            .text(&plan.patient)
            .push(" AND ");
        in_compartment(&mut b, "o", plan);
        b.push(")");
    }
    b.push(" ORDER BY a.rid");
    let rows = exec.fetch(&b.finish(), &[Col::Int]).await?;
    Ok(rows.iter().filter_map(|r| r.first().and_then(Val::as_int)).collect())
}

/// The patients a stored body references (`"reference":"Patient/<id>"`; stored bodies are
/// compact JSON).
fn patients_in(body: &str) -> impl Iterator<Item = &str> {
    const NEEDLE: &str = "\"reference\":\"Patient/";
    body.match_indices(NEEDLE).filter_map(|(at, _)| {
        let rest = body.get(at + NEEDLE.len()..)?;
        rest.get(..rest.find(['"', '/'])?)
    })
}

/// Deleted resources of compartment types whose stored versions reference the patient and no
/// other patient (their index rows went with the deletion, so the bodies are read). Returns
/// `(erase, kept)`.
async fn deleted_members(exec: &mut dyn Exec, plan: &ErasurePlan) -> Result<(Vec<i64>, u64), StoreError> {
    use std::collections::BTreeMap;
    // rid → (names the patient, names another)
    let mut seen: BTreeMap<i64, (bool, bool)> = BTreeMap::new();
    let types: Vec<&str> =
        plan.params.iter().map(|(t, _)| t.as_str()).filter(|t| *t != "Patient" && *t != "AuditEvent").collect();
    let mut after = 0i64;
    loop {
        let mut b = Builder::new(exec.dialect());
        b.push(
            "SELECT v.seq, r.rid, v.res_type, v.res_id, v.version, v.last_updated, v.method, v.body \
             FROM resources r JOIN resource_versions v ON v.res_type = r.res_type AND v.res_id = r.res_id \
             WHERE r.deleted = TRUE AND v.body IS NOT NULL AND r.res_type IN ",
        )
        .text_list(types.iter().copied())
        .push(" AND v.seq > ")
        .int(after)
        .push(" ORDER BY v.seq LIMIT ")
        .int(CHUNK as i64);
        let cols = [Col::Int, Col::Int, Col::Text, Col::Text, Col::Int, Col::Int, Col::Text, Col::Text];
        let rows = exec.fetch(&b.finish(), &cols).await?;
        let Some(last) = rows.last() else { break };
        after = last.first().and_then(Val::as_int).ok_or_else(corrupt)?;
        let mut rids = Vec::with_capacity(rows.len());
        let mut versions = Vec::with_capacity(rows.len());
        for row in rows {
            let mut it = row.into_iter().skip(1);
            rids.push(int(it.next())?.ok_or_else(corrupt)?);
            let resource_type = text(it.next())?.ok_or_else(corrupt)?;
            let id = text(it.next())?.ok_or_else(corrupt)?;
            let version_id = u64::try_from(int(it.next())?.ok_or_else(corrupt)?).map_err(|_| corrupt())?;
            let last_updated = int(it.next())?.and_then(DateTime::from_timestamp_millis).ok_or_else(corrupt)?;
            let method = text(it.next())?.as_deref().and_then(Method::parse).ok_or_else(corrupt)?;
            let body = text(it.next())?.map(Arc::from);
            versions.push(Version { resource_type, id, version_id, last_updated, method, body });
        }
        if let Some(cipher) = exec.bodies() {
            crate::crypt::reveal(exec, &cipher, &mut versions).await?;
        }
        for (rid, v) in rids.into_iter().zip(&versions) {
            let body = v.body.as_deref().unwrap_or_default();
            let entry = seen.entry(rid).or_default();
            for p in patients_in(body) {
                if p == plan.patient {
                    entry.0 = true;
                } else {
                    entry.1 = true;
                }
            }
        }
    }
    let erase = seen.iter().filter(|(_, (mine, other))| *mine && !*other).map(|(rid, _)| *rid).collect();
    let kept = seen.values().filter(|(mine, other)| *mine && *other).count() as u64;
    Ok((erase, kept))
}

/// The `Binary` resources that `rids` reference (as a reference or a `Binary/<id>` URL).
async fn binaries(exec: &mut dyn Exec, rids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let mut out = Vec::new();
    for chunk in rids.chunks(CHUNK) {
        let mut b = Builder::new(exec.dialect());
        b.push(
            "SELECT t.rid FROM search_reference a JOIN resources t ON t.res_type = 'Binary' AND t.res_id = a.target_id \
             WHERE a.target_type = 'Binary' AND a.rid IN ",
        )
        .int_list(chunk)
        .push(
            " UNION SELECT t.rid FROM search_uri u JOIN resources t ON t.res_type = 'Binary' \
             AND u.value = 'Binary/' || t.res_id WHERE u.rid IN ",
        )
        .int_list(chunk);
        let rows = exec.fetch(&b.finish(), &[Col::Int]).await?;
        out.extend(rows.iter().filter_map(|r| r.first().and_then(Val::as_int)));
    }
    Ok(out)
}

/// The `Provenance` resources every `target` of which is among `rids`: they say who made what of
/// the patient's record (e.g. results read from their documents) and are not in the Patient
/// compartment when they name only the patient's resources, so they go with those. A Provenance
/// that also names a resource kept stays.
async fn provenances(exec: &mut dyn Exec, rids: &[i64]) -> Result<Vec<i64>, StoreError> {
    let erased: std::collections::HashSet<i64> = rids.iter().copied().collect();
    let mut candidates = Vec::new();
    for chunk in rids.chunks(CHUNK) {
        let mut b = Builder::new(exec.dialect());
        b.push(
            "SELECT DISTINCT a.rid FROM search_reference a JOIN resources t \
             ON t.res_type = a.target_type AND t.res_id = a.target_id \
             WHERE a.res_type = 'Provenance' AND a.param = 'target' AND t.rid IN ",
        )
        .int_list(chunk);
        let rows = exec.fetch(&b.finish(), &[Col::Int]).await?;
        candidates.extend(rows.iter().filter_map(|r| r.first().and_then(Val::as_int)));
    }
    candidates.sort_unstable();
    candidates.dedup();
    let mut out = Vec::new();
    for chunk in candidates.chunks(CHUNK) {
        // Each candidate's targets; a target that is no stored resource (-1) counts as kept.
        let mut b = Builder::new(exec.dialect());
        b.push(
            "SELECT a.rid, COALESCE(t.rid, -1) FROM search_reference a LEFT JOIN resources t \
             ON t.res_type = a.target_type AND t.res_id = a.target_id \
             WHERE a.param = 'target' AND a.rid IN ",
        )
        .int_list(chunk);
        let rows = exec.fetch(&b.finish(), &[Col::Int, Col::Int]).await?;
        let mut keep = std::collections::HashSet::new();
        for row in &rows {
            let mut cols = row.iter();
            let prov = cols.next().and_then(Val::as_int);
            let target = cols.next().and_then(Val::as_int);
            if let Some(prov) = prov
                && !target.is_some_and(|t| erased.contains(&t))
            {
                keep.insert(prov);
            }
        }
        out.extend(chunk.iter().copied().filter(|p| !keep.contains(p) && !erased.contains(p)));
    }
    Ok(out)
}

/// Erases the record of `plan.patient` (see [`hearth_store::ErasurePlan`]) inside the
/// transaction `exec` runs in, attributing the tombstones to `actor`, and completes the erasure
/// request `plan.request` (`Conflict` when it is not pending: nothing is changed then either,
/// as the caller's transaction rolls back).
pub async fn erase_patient(
    exec: &mut dyn Exec,
    plan: &ErasurePlan,
    actor: Option<&str>,
) -> Result<Erasure, StoreError> {
    let dialect = exec.dialect();
    let mut b = Builder::new(dialect);
    b.push("SELECT rid FROM resources WHERE res_type = 'Patient' AND res_id = ").text(&plan.patient);
    let Some(patient_rid) = one_int(&exec.fetch(&b.finish(), &[Col::Int]).await?) else {
        return Ok(Erasure::NoSuchPatient);
    };
    let mut b = Builder::new(dialect);
    b.push("SELECT reason FROM legal_holds WHERE patient_id = ").text(&plan.patient);
    if let Some(reason) = exec.fetch(&b.finish(), &[Col::Text]).await?.into_iter().next() {
        return Ok(Erasure::Held(Hold::Legal(text(reason.into_iter().next())?.unwrap_or_default())));
    }

    let all_live = live_members(exec, plan, false).await?;
    let mut rids = live_members(exec, plan, true).await?;
    let mut kept_shared = (all_live.len() - rids.len()) as u64;
    let (deleted, kept_deleted) = deleted_members(exec, plan).await?;
    kept_shared += kept_deleted;
    rids.extend(deleted);
    rids.push(patient_rid);
    rids.extend(binaries(exec, &rids).await?);
    rids.extend(provenances(exec, &rids).await?);
    rids.sort_unstable();
    rids.dedup();

    if let Some(limit) = plan.retain_after {
        let mut newest = i64::MIN;
        for chunk in rids.chunks(CHUNK) {
            let mut b = Builder::new(dialect);
            b.push("SELECT MAX(last_updated) FROM resources WHERE rid IN ").int_list(chunk);
            newest = newest.max(one_int(&exec.fetch(&b.finish(), &[Col::Int]).await?).unwrap_or(i64::MIN));
        }
        if newest > limit.timestamp_millis()
            && let Some(at) = DateTime::from_timestamp_millis(newest)
        {
            return Ok(Erasure::Held(Hold::Retention(at)));
        }
    }

    let now = plan.now.timestamp_millis();
    let mut erased = Erased { kept_shared, ..Erased::default() };
    for chunk in rids.chunks(CHUNK) {
        let mut b = Builder::new(dialect);
        b.push(
            "SELECT COUNT(*) FROM resources r JOIN resource_versions v ON v.res_type = r.res_type \
             AND v.res_id = r.res_id WHERE r.rid IN ",
        )
        .int_list(chunk);
        erased.versions +=
            u64::try_from(one_int(&exec.fetch(&b.finish(), &[Col::Int]).await?).unwrap_or(0)).unwrap_or(0);
        erased.resources += chunk.len() as u64;
        for table in TABLES {
            let mut b = Builder::new(dialect);
            b.push("DELETE FROM ").push(table).push(" WHERE rid IN ").int_list(chunk);
            exec.execute(&b.finish()).await?;
        }
        // The tombstone: one deletion marker after the last version, which the current pointer
        // then names; every earlier version row (and its body) goes.
        let mut b = Builder::new(dialect);
        b.push(
            "INSERT INTO resource_versions (res_type, res_id, version, last_updated, method, body, author) \
             SELECT res_type, res_id, version + 1, ",
        )
        .int(now)
        .push(", 'DELETE', NULL, ")
        .bind(Val::Text(actor.map(str::to_owned)))
        .push(" FROM resources WHERE rid IN ")
        .int_list(chunk);
        exec.execute(&b.finish()).await?;
        let mut b = Builder::new(dialect);
        b.push("UPDATE resources SET version = version + 1, deleted = TRUE, last_updated = ")
            .int(now)
            .push(
                ", seq = (SELECT v.seq FROM resource_versions v WHERE v.res_type = resources.res_type \
                 AND v.res_id = resources.res_id AND v.version = resources.version + 1) WHERE rid IN ",
            )
            .int_list(chunk);
        exec.execute(&b.finish()).await?;
        let mut b = Builder::new(dialect);
        b.push(
            "DELETE FROM resource_versions WHERE seq IN (SELECT v.seq FROM resources r JOIN resource_versions v \
             ON v.res_type = r.res_type AND v.res_id = r.res_id WHERE v.seq <> r.seq AND r.rid IN ",
        )
        .int_list(chunk)
        .push(")");
        exec.execute(&b.finish()).await?;
    }

    // Uploaded documents: their rows go now, their blobs with the documents sweeper (migration 0017).
    crate::documents::erase_patient(exec, &plan.patient, now).await?;
    // Journal entries' search words and analyses (migration 0026).
    crate::journal::erase_patient(exec, &plan.patient).await?;
    erased.accounts = remove_accounts(exec, &plan.patient).await?;

    let mut b = Builder::new(dialect);
    b.push("UPDATE erasure_requests SET status = 'completed', reason = NULL, decided_at = ")
        .int(now)
        .push(", decided_by = ")
        .bind(Val::Text(actor.map(str::to_owned)))
        .push(", resources = ")
        .int(i64::try_from(erased.resources).unwrap_or(i64::MAX))
        .push(" WHERE id = ")
        .text(&plan.request)
        .push(" AND patient_id = ")
        .text(&plan.patient)
        .push(" AND status = 'requested' RETURNING id");
    if exec.fetch(&b.finish(), &[Col::Text]).await?.is_empty() {
        return Err(StoreError::Conflict);
    }
    Ok(Erasure::Done(erased))
}

/// Removes the login accounts of the patient and everything kept for them; answers how many.
async fn remove_accounts(exec: &mut dyn Exec, patient: &str) -> Result<u64, StoreError> {
    let dialect = exec.dialect();
    let mut b = Builder::new(dialect);
    b.push("SELECT id, email, phone FROM accounts WHERE fhir_user = ")
        .text(&format!("Patient/{patient}"))
        .push(" AND role = 'patient'");
    let accounts = exec.fetch(&b.finish(), &[Col::Text, Col::Text, Col::Text]).await?;
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM caregiver_grants WHERE patient_id = ").text(patient);
    exec.execute(&b.finish()).await?;
    // The registry's invitations to claim the record (migration 0015).
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM registry_invites WHERE patient = ").text(patient);
    exec.execute(&b.finish()).await?;
    // Intake sessions hold the patient's own words.
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM intake_sessions WHERE patient = ").text(patient);
    exec.execute(&b.finish()).await?;
    // Medication reminder plans name the patient (migration 0020). A reminder still queued for
    // them fans out, when due, to the patient's accounts, which are removed below.
    let mut b = Builder::new(dialect);
    b.push("DELETE FROM medication_reminder_plans WHERE patient = ").text(patient);
    exec.execute(&b.finish()).await?;
    // Self-care alert settings and alerts (migration 0019).
    for table in ["selfcare_settings", "selfcare_alerts", "selfcare_batches", "selfcare_buckets"] {
        let mut b = Builder::new(dialect);
        b.push("DELETE FROM ").push(table).push(" WHERE patient = ").text(patient);
        exec.execute(&b.finish()).await?;
    }
    // The patient's daily-summary plan and chat read receipts (migration 0027).
    for table in ["wellness_summary_plans", "wellness_chat_reads"] {
        let mut b = Builder::new(dialect);
        b.push("DELETE FROM ").push(table).push(" WHERE patient_id = ").text(patient);
        exec.execute(&b.finish()).await?;
    }
    let mut n = 0;
    for row in accounts {
        let mut it = row.into_iter();
        let id = text(it.next())?.ok_or_else(corrupt)?;
        let destinations: Vec<String> = it.filter_map(|v| v.as_text().map(str::to_owned)).collect();
        if !destinations.is_empty() {
            let mut b = Builder::new(dialect);
            b.push("DELETE FROM login_otps WHERE destination IN ").text_list(destinations.iter().map(String::as_str));
            exec.execute(&b.finish()).await?;
        }
        let statements = [
            "DELETE FROM oauth_families WHERE family IN (SELECT family FROM refresh_tokens WHERE account_id = ",
            "DELETE FROM notification_attempts WHERE notification_id IN (SELECT id FROM notification_outbox WHERE account_id = ",
        ];
        for sql in statements {
            let mut b = Builder::new(dialect);
            b.push(sql).text(&id).push(")");
            exec.execute(&b.finish()).await?;
        }
        for (table, column) in [
            ("refresh_tokens", "account_id"),
            ("recovery_codes", "account_id"),
            ("oauth_codes", "account_id"),
            ("notification_outbox", "account_id"),
            ("notification_inbox", "account_id"),
            ("notification_preferences", "account_id"),
            ("notification_settings", "account_id"),
            ("push_subscriptions", "account_id"),
            // The account's alarms and what they rang (migration 0023): labels may be clinical.
            ("alarm_occurrences", "account_id"),
            ("alarms", "account_id"),
            ("caregiver_grants", "caregiver_id"),
            ("accounts", "id"),
        ] {
            let mut b = Builder::new(dialect);
            b.push("DELETE FROM ").push(table).push(" WHERE ").push(column).push(" = ").text(&id);
            exec.execute(&b.finish()).await?;
        }
        n += 1;
    }
    Ok(n)
}

// ---------------------------------------------------------------------------------------------
// Erasure requests and legal holds

/// One erasure request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RequestRow {
    pub id: String,
    pub patient_id: String,
    /// The account that asked.
    pub requested_by: String,
    /// The patient's reason, until the request is decided.
    pub reason: Option<String>,
    /// `requested`, `refused` or `completed`.
    pub status: String,
    pub requested_at: i64,
    pub decided_at: Option<i64>,
    pub decided_by: Option<String>,
    /// Why it was refused.
    pub decision: Option<String>,
    /// Resources erased, when completed.
    pub resources: Option<i64>,
}

const REQUEST_COLUMNS: &str =
    "id, patient_id, requested_by, reason, status, requested_at, decided_at, decided_by, decision, resources";
const REQUEST_COLS: [Col; 10] =
    [Col::Text, Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Int, Col::Text, Col::Text, Col::Int];

fn decode_request(row: Vec<Val>) -> Result<RequestRow, StoreError> {
    let mut it = row.into_iter();
    Ok(RequestRow {
        id: text(it.next())?.ok_or_else(corrupt)?,
        patient_id: text(it.next())?.ok_or_else(corrupt)?,
        requested_by: text(it.next())?.ok_or_else(corrupt)?,
        reason: text(it.next())?,
        status: text(it.next())?.ok_or_else(corrupt)?,
        requested_at: int(it.next())?.ok_or_else(corrupt)?,
        decided_at: int(it.next())?,
        decided_by: text(it.next())?,
        decision: text(it.next())?,
        resources: int(it.next())?,
    })
}

/// Records a new request; `Conflict` when the patient already has one pending.
pub async fn insert_request(db: &dyn Db, r: &RequestRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO erasure_requests (id, patient_id, requested_by, reason, status, requested_at) VALUES (")
        .text(&r.id)
        .push(", ")
        .text(&r.patient_id)
        .push(", ")
        .text(&r.requested_by)
        .push(", ")
        .bind(Val::Text(r.reason.clone()))
        .push(", ")
        .text(&r.status)
        .push(", ")
        .int(r.requested_at)
        .push(") ON CONFLICT DO NOTHING");
    match db.execute(&b.finish()).await? {
        0 => Err(StoreError::Conflict),
        _ => Ok(()),
    }
}

pub async fn request(db: &dyn Db, id: &str) -> Result<Option<RequestRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(&format!("SELECT {REQUEST_COLUMNS} FROM erasure_requests WHERE id = ")).text(id);
    db.fetch(&b.finish(), &REQUEST_COLS).await?.into_iter().next().map(decode_request).transpose()
}

/// Requests, newest first, optionally of one status or one patient, at most `limit`.
pub async fn requests(
    db: &dyn Db,
    status: Option<&str>,
    patient: Option<&str>,
    limit: i64,
) -> Result<Vec<RequestRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(&format!("SELECT {REQUEST_COLUMNS} FROM erasure_requests WHERE 1 = 1"));
    if let Some(s) = status {
        b.push(" AND status = ").text(s);
    }
    if let Some(p) = patient {
        b.push(" AND patient_id = ").text(p);
    }
    b.push(" ORDER BY requested_at DESC, id DESC LIMIT ").int(limit);
    db.fetch(&b.finish(), &REQUEST_COLS).await?.into_iter().map(decode_request).collect()
}

/// Refuses a pending request (`decision` says why); false when it was not pending.
pub async fn refuse_request(
    db: &dyn Db,
    id: &str,
    by: Option<&str>,
    decision: &str,
    now: i64,
) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE erasure_requests SET status = 'refused', decided_at = ")
        .int(now)
        .push(", decided_by = ")
        .bind(Val::Text(by.map(str::to_owned)))
        .push(", decision = ")
        .text(decision)
        .push(" WHERE id = ")
        .text(id)
        .push(" AND status = 'requested'");
    Ok(db.execute(&b.finish()).await? > 0)
}

/// One legal hold.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct HoldRow {
    pub patient_id: String,
    pub reason: String,
    pub placed_by: String,
    pub placed_at: i64,
}

/// Places (or replaces) the hold on a patient.
pub async fn place_hold(db: &dyn Db, h: &HoldRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO legal_holds (patient_id, reason, placed_by, placed_at) VALUES (")
        .text(&h.patient_id)
        .push(", ")
        .text(&h.reason)
        .push(", ")
        .text(&h.placed_by)
        .push(", ")
        .int(h.placed_at)
        .push(
            ") ON CONFLICT (patient_id) DO UPDATE SET reason = excluded.reason, placed_by = excluded.placed_by, \
             placed_at = excluded.placed_at",
        );
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Lifts the hold; false when there was none.
pub async fn lift_hold(db: &dyn Db, patient: &str) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("DELETE FROM legal_holds WHERE patient_id = ").text(patient);
    Ok(db.execute(&b.finish()).await? > 0)
}

pub async fn hold(db: &dyn Db, patient: &str) -> Result<Option<HoldRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT patient_id, reason, placed_by, placed_at FROM legal_holds WHERE patient_id = ").text(patient);
    let cols = [Col::Text, Col::Text, Col::Text, Col::Int];
    let Some(row) = db.fetch(&b.finish(), &cols).await?.into_iter().next() else { return Ok(None) };
    let mut it = row.into_iter();
    Ok(Some(HoldRow {
        patient_id: text(it.next())?.ok_or_else(corrupt)?,
        reason: text(it.next())?.ok_or_else(corrupt)?,
        placed_by: text(it.next())?.ok_or_else(corrupt)?,
        placed_at: int(it.next())?.ok_or_else(corrupt)?,
    }))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::Dialect;

    #[test]
    fn patients_are_read_from_relative_references_only() {
        let body = r#"{"subject":{"reference":"Patient/a1"},"performer":[{"reference":"Patient/b-2/_history/3"}],"x":"Patient/zz"}"#;
        assert_eq!(patients_in(body).collect::<Vec<_>>(), ["a1", "b-2"]);
    }

    #[test]
    fn the_compartment_clause_is_empty_safe() {
        let plan = ErasurePlan {
            patient: "p".into(),
            params: Vec::new(),
            retain_after: None,
            request: "r".into(),
            now: chrono::Utc::now(),
        };
        let mut b = Builder::new(Dialect::Sqlite);
        in_compartment(&mut b, "a", &plan);
        assert_eq!(b.finish().text, "(1 = 0)");
    }
}
