//! The self-care tables (migration `0019_selfcare.sql`), written once over [`Db`] for both
//! backends: a patient's alert settings (SpO2 scale 2, personal thresholds) and the alerts
//! raised from their readings. The decisions (what raises an alert, who is told, who may
//! acknowledge) live in `hearth-selfcare`; only that crate calls this module.
//!
//! An alert raised from a batch of readings is inserted on the batch's transaction (a
//! [`crate::notify::TxDb`] made from its `GuardedTx`), with its Flag and its notifications. At
//! most one alert per patient and rule is live (`resolved_at IS NULL`, a unique index): a second
//! insert of the same rule answers `false` and the caller treats the first as the live one.

use hearth_store::StoreError;

use crate::identity::{corrupt, int, text};
use crate::{Builder, Col, Db, Val};

/// What a patient's clinician set for their alerts.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SettingsRow {
    pub patient: String,
    pub spo2_scale2: bool,
    /// JSON array of `{parameter, above, below}`.
    pub thresholds: String,
    /// The clinician's account.
    pub set_by: String,
    pub updated_at: i64,
}

/// The settings of `patient`, if a clinician set any.
pub async fn settings(db: &dyn Db, patient: &str) -> Result<Option<SettingsRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT patient, spo2_scale2, thresholds, set_by, updated_at FROM selfcare_settings WHERE patient = ")
        .text(patient);
    let rows = db.fetch(&b.finish(), &[Col::Text, Col::Int, Col::Text, Col::Text, Col::Int]).await?;
    rows.into_iter()
        .next()
        .map(|row| {
            let mut it = row.into_iter();
            Ok(SettingsRow {
                patient: text(it.next())?.ok_or_else(corrupt)?,
                spo2_scale2: int(it.next())?.unwrap_or(0) != 0,
                thresholds: text(it.next())?.ok_or_else(corrupt)?,
                set_by: text(it.next())?.ok_or_else(corrupt)?,
                updated_at: int(it.next())?.ok_or_else(corrupt)?,
            })
        })
        .transpose()
}

/// Writes the settings of `r.patient` (insert or replace).
pub async fn put_settings(db: &dyn Db, r: &SettingsRow) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO selfcare_settings (patient, spo2_scale2, thresholds, set_by, updated_at) VALUES (")
        .text(&r.patient)
        .push(", ")
        .int(i64::from(r.spo2_scale2))
        .push(", ")
        .text(&r.thresholds)
        .push(", ")
        .text(&r.set_by)
        .push(", ")
        .int(r.updated_at)
        .push(
            ") ON CONFLICT (patient) DO UPDATE SET spo2_scale2 = excluded.spo2_scale2, \
             thresholds = excluded.thresholds, set_by = excluded.set_by, updated_at = excluded.updated_at",
        );
    db.execute(&b.finish()).await?;
    Ok(())
}

/// One alert.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AlertRow {
    pub id: String,
    pub patient: String,
    /// `news2`, `qsofa` or `threshold:<parameter>`.
    pub rule: String,
    /// Orders the levels of one rule.
    pub severity: i64,
    pub level: String,
    pub score: Option<i64>,
    /// JSON: what raised it (the scores of the set, the reading over a threshold).
    pub detail: String,
    /// The id of its FHIR `Flag`.
    pub flag: String,
    /// `open`, `acknowledged` or `resolved`.
    pub status: String,
    pub raised_at: i64,
    pub last_seen: i64,
    pub escalate_at: i64,
    pub acknowledged_by: Option<String>,
    pub acknowledged_at: Option<i64>,
    pub resolved_at: Option<i64>,
}

const COLUMNS: &str = "id, patient, rule, severity, level, score, detail, flag, status, raised_at, last_seen, \
     escalate_at, acknowledged_by, acknowledged_at, resolved_at";
const COLS: [Col; 15] = [
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Int,
    Col::Text,
    Col::Text,
    Col::Text,
    Col::Int,
    Col::Int,
    Col::Int,
    Col::Text,
    Col::Int,
    Col::Int,
];

fn decode(row: Vec<Val>) -> Result<AlertRow, StoreError> {
    let mut it = row.into_iter();
    let mut req = || text(it.next()).and_then(|v| v.ok_or_else(corrupt));
    let id = req()?;
    let patient = req()?;
    let rule = req()?;
    let severity = int(it.next())?.ok_or_else(corrupt)?;
    let level = text(it.next())?.ok_or_else(corrupt)?;
    let score = int(it.next())?;
    let mut req = || text(it.next()).and_then(|v| v.ok_or_else(corrupt));
    let detail = req()?;
    let flag = req()?;
    let status = req()?;
    Ok(AlertRow {
        id,
        patient,
        rule,
        severity,
        level,
        score,
        detail,
        flag,
        status,
        raised_at: int(it.next())?.ok_or_else(corrupt)?,
        last_seen: int(it.next())?.ok_or_else(corrupt)?,
        escalate_at: int(it.next())?.ok_or_else(corrupt)?,
        acknowledged_by: text(it.next())?,
        acknowledged_at: int(it.next())?,
        resolved_at: int(it.next())?,
    })
}

/// Inserts a new alert; false when one of the same rule is already live for the patient.
pub async fn insert_alert(db: &dyn Db, r: &AlertRow) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("INSERT INTO selfcare_alerts (").push(COLUMNS).push(") VALUES (");
    b.text(&r.id).push(", ").text(&r.patient).push(", ").text(&r.rule).push(", ").int(r.severity).push(", ");
    b.text(&r.level).push(", ").bind(Val::Int(r.score)).push(", ").text(&r.detail).push(", ");
    b.text(&r.flag).push(", ").text(&r.status).push(", ").int(r.raised_at).push(", ").int(r.last_seen).push(", ");
    b.int(r.escalate_at).push(", ").bind(Val::Text(r.acknowledged_by.clone())).push(", ");
    b.bind(Val::Int(r.acknowledged_at)).push(", ").bind(Val::Int(r.resolved_at)).push(")");
    b.push(" ON CONFLICT DO NOTHING");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// The alert `id`.
pub async fn alert(db: &dyn Db, id: &str) -> Result<Option<AlertRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM selfcare_alerts WHERE id = ").text(id);
    db.fetch(&b.finish(), &COLS).await?.into_iter().next().map(decode).transpose()
}

/// The live (not resolved) alerts of `patient`.
pub async fn live_alerts(db: &dyn Db, patient: &str) -> Result<Vec<AlertRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM selfcare_alerts WHERE patient = ").text(patient);
    b.push(" AND resolved_at IS NULL ORDER BY raised_at");
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// The alerts of `patient` (`Some`) or of everyone (`None`), newest first, live ones only
/// unless `all`; at most `limit`.
pub async fn list_alerts(
    db: &dyn Db,
    patient: Option<&str>,
    all: bool,
    limit: i64,
) -> Result<Vec<AlertRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT ").push(COLUMNS).push(" FROM selfcare_alerts WHERE 1 = 1");
    if let Some(p) = patient {
        b.push(" AND patient = ").text(p);
    }
    if !all {
        b.push(" AND resolved_at IS NULL");
    }
    b.push(" ORDER BY raised_at DESC, id LIMIT ").int(limit);
    db.fetch(&b.finish(), &COLS).await?.into_iter().map(decode).collect()
}

/// Records that a live alert was seen again at `at` (a later set that still raises it).
pub async fn touch_alert(db: &dyn Db, id: &str, at: i64) -> Result<(), StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE selfcare_alerts SET last_seen = ").int(at).push(" WHERE id = ").text(id);
    db.execute(&b.finish()).await?;
    Ok(())
}

/// Acknowledges an open alert; false when it is not open (acknowledged before, or resolved).
pub async fn acknowledge_alert(db: &dyn Db, id: &str, by: &str, at: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE selfcare_alerts SET status = 'acknowledged', acknowledged_by = ")
        .text(by)
        .push(", acknowledged_at = ")
        .int(at)
        .push(" WHERE id = ")
        .text(id)
        .push(" AND status = 'open'");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Resolves a live alert (the condition no longer holds, or a higher level superseded it).
pub async fn resolve_alert(db: &dyn Db, id: &str, at: i64) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("UPDATE selfcare_alerts SET status = 'resolved', resolved_at = ")
        .int(at)
        .push(" WHERE id = ")
        .text(id)
        .push(" AND resolved_at IS NULL");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// The stored answer to a batch sent with an idempotency key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchRow {
    pub account: String,
    pub idem_key: String,
    pub patient: String,
    /// SHA-256 of the request body (hex).
    pub request_hash: String,
    /// The HTTP status answered.
    pub status: i64,
    /// The JSON answered.
    pub response: String,
    pub created_at: i64,
}

/// The answer stored for `account`'s `key`.
pub async fn batch(db: &dyn Db, account: &str, key: &str) -> Result<Option<BatchRow>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(
        "SELECT account, idem_key, patient, request_hash, status, response, created_at FROM selfcare_batches \
         WHERE account = ",
    )
    .text(account)
    .push(" AND idem_key = ")
    .text(key);
    let cols = [Col::Text, Col::Text, Col::Text, Col::Text, Col::Int, Col::Text, Col::Int];
    db.fetch(&b.finish(), &cols)
        .await?
        .into_iter()
        .next()
        .map(|row| {
            let mut it = row.into_iter();
            let mut req = || text(it.next()).and_then(|v| v.ok_or_else(corrupt));
            let account = req()?;
            let idem_key = req()?;
            let patient = req()?;
            let request_hash = req()?;
            let status = int(it.next())?.ok_or_else(corrupt)?;
            let response = text(it.next())?.ok_or_else(corrupt)?;
            let created_at = int(it.next())?.ok_or_else(corrupt)?;
            Ok(BatchRow { account, idem_key, patient, request_hash, status, response, created_at })
        })
        .transpose()
}

/// Stores the answer to a batch; false when the key was stored meanwhile (a concurrent send).
pub async fn insert_batch(db: &dyn Db, r: &BatchRow) -> Result<bool, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push(
        "INSERT INTO selfcare_batches (account, idem_key, patient, request_hash, status, response, created_at) VALUES (",
    );
    b.text(&r.account).push(", ").text(&r.idem_key).push(", ").text(&r.patient).push(", ");
    b.text(&r.request_hash).push(", ").int(r.status).push(", ").text(&r.response).push(", ").int(r.created_at);
    b.push(") ON CONFLICT DO NOTHING");
    Ok(db.execute(&b.finish()).await? == 1)
}

/// Values to add to one aggregate bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct BucketAdd {
    pub patient: String,
    /// A numeric kind (`heart_rate`, `systolic_bp`, …).
    pub kind: String,
    /// `minute`, `hour` or `day`.
    pub resolution: &'static str,
    /// The bucket's UTC start, Unix milliseconds.
    pub start: i64,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: i64,
}

/// Adds values to their buckets (creating them), on the recording transaction.
pub async fn add_buckets(db: &dyn Db, rows: &[BucketAdd]) -> Result<(), StoreError> {
    let (least, greatest) = match db.dialect() {
        crate::Dialect::Sqlite => ("MIN", "MAX"),
        crate::Dialect::Postgres => ("LEAST", "GREATEST"),
    };
    // Multi-row upserts (a device batch of 1,000 readings adds about 1,000 buckets: a handful of
    // statements, not a thousand). `rows` must not repeat a key within a call (PostgreSQL refuses
    // to update one row twice in a statement); `rollups` gives each key once.
    for chunk in rows.chunks(200) {
        let mut b = Builder::new(db.dialect());
        b.push("INSERT INTO selfcare_buckets (patient, kind, resolution, start, lo, hi, total, n) VALUES ");
        for (i, r) in chunk.iter().enumerate() {
            b.push(if i == 0 { "(" } else { ", (" });
            b.text(&r.patient)
                .push(", ")
                .text(&r.kind)
                .push(", ")
                .text(r.resolution)
                .push(", ")
                .int(r.start)
                .push(", ");
            b.real(r.min).push(", ").real(r.max).push(", ").real(r.sum).push(", ").int(r.count).push(")");
        }
        b.push(" ON CONFLICT (patient, kind, resolution, start) DO UPDATE SET lo = ")
            .push(least)
            .push("(selfcare_buckets.lo, excluded.lo), hi = ")
            .push(greatest)
            .push(
                "(selfcare_buckets.hi, excluded.hi), total = selfcare_buckets.total + excluded.total, \
                 n = selfcare_buckets.n + excluded.n",
            );
        db.execute(&b.finish()).await?;
    }
    Ok(())
}

/// One stored bucket: `(start, min, max, sum, count)`.
pub type Bucket = (i64, f64, f64, f64, i64);

fn real(v: Option<Val>) -> Result<f64, StoreError> {
    match v {
        Some(Val::Real(Some(r))) => Ok(r),
        Some(Val::Int(Some(i))) => Ok(i as f64),
        _ => Err(corrupt()),
    }
}

/// The buckets of `patient`'s `kind` at `resolution` starting in `[from, to)`, oldest first, at
/// most `limit`.
pub async fn buckets(
    db: &dyn Db,
    patient: &str,
    kind: &str,
    resolution: &str,
    from: i64,
    to: i64,
    limit: i64,
) -> Result<Vec<Bucket>, StoreError> {
    let mut b = Builder::new(db.dialect());
    b.push("SELECT start, lo, hi, total, n FROM selfcare_buckets WHERE patient = ").text(patient);
    b.push(" AND kind = ").text(kind).push(" AND resolution = ").text(resolution);
    b.push(" AND start >= ").int(from).push(" AND start < ").int(to).push(" ORDER BY start LIMIT ").int(limit);
    db.fetch(&b.finish(), &[Col::Int, Col::Real, Col::Real, Col::Real, Col::Int])
        .await?
        .into_iter()
        .map(|row| {
            let mut it = row.into_iter();
            let start = int(it.next())?.ok_or_else(corrupt)?;
            let (lo, hi, total) = (real(it.next())?, real(it.next())?, real(it.next())?);
            Ok((start, lo, hi, total, int(it.next())?.ok_or_else(corrupt)?))
        })
        .collect()
}
