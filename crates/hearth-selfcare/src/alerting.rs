//! Alerts from a batch of readings (the I/O around [`crate::alerts`]): the patient's latest
//! readings (stored, merged with the batch), what the rules decide against the live alerts,
//! and the writes, all on the batch's transaction: each new alert's `Flag` (through the
//! caller's guarded transaction), then on the same transaction as a `TxDb` the alert rows and
//! the notifications.
//!
//! Who is told:
//! - first wave, at once: the patient and the caregivers linked to them (one patient-addressed
//!   outbox row, expanded when sent), and the care team: the accounts of the practitioners in
//!   `Patient.generalPractitioner` and the clinician who set the patient's alert settings;
//! - second wave, `escalate_after_minutes` later unless someone acknowledges it first: the
//!   clinicians of the patient's `managingOrganization` and every admin. These rows are queued
//!   now with that `not_before` and cancelled (by key prefix) on acknowledgement, so the outbox
//!   worker that sends every other notification sends them; no other loop is needed.
//!
//! Every message is category `emergency` (critical: quiet hours do not hold it and it cannot be
//! turned off) with the `emergency-alert` template, which says only that something urgent
//! waits in Hearth, never what.

use std::collections::BTreeSet;

use chrono::{DateTime, TimeDelta, Utc};
use hearth_notifications::{self as notify, Notice, PatientNotice};
use hearth_notify::Category;
use hearth_store::{Guarded, GuardedTx, StoreError, interactions};
use hearth_store_sql::identity;
use hearth_store_sql::notify::TxDb;
use hearth_store_sql::selfcare::{self as sql, AlertRow, SettingsRow};
use serde_json::{Map, Value, json};

use hearth_workflow::error::ApiError;

use crate::Selfcare;
use crate::alerts::{Finding, Latest, Outcome, Point, Threshold, evaluate};
use crate::scores::EarlyWarning;
use crate::vitals::{Catalog, Reading, instant};

/// The code system of a self-care alert's `Flag` (code: the rule).
pub const ALERT_SYSTEM: &str = "urn:hearth:selfcare:alert";
/// The identifier system of a Flag's alert id.
pub const ALERT_ID_SYSTEM: &str = "urn:hearth:selfcare:alert-id";

/// The reading kinds the rules read (the blood pressure panel gives `systolic_bp` and
/// `diastolic_bp`).
const SCORE_KINDS: [&str; 7] = [
    "respiratory_rate",
    "spo2",
    "supplemental_oxygen",
    "blood_pressure",
    "heart_rate",
    "consciousness",
    "body_temperature",
];

/// The notification key prefix of an alert's messages.
pub fn key_prefix(alert: &str) -> String {
    format!("selfcare-alert:{alert}:")
}

/// The key prefix of an alert's second wave (cancelled on acknowledgement).
pub fn escalation_prefix(alert: &str) -> String {
    format!("selfcare-alert:{alert}:escalation:")
}

/// A patient's settings as the rules take them.
pub struct Settings {
    pub spo2_scale2: bool,
    pub thresholds: Vec<Threshold>,
    pub set_by: Option<String>,
}

pub fn settings_of(row: Option<&SettingsRow>) -> Settings {
    match row {
        Some(r) => Settings {
            spo2_scale2: r.spo2_scale2,
            thresholds: serde_json::from_str(&r.thresholds).unwrap_or_default(),
            set_by: Some(r.set_by.clone()),
        },
        None => Settings { spo2_scale2: false, thresholds: Vec::new(), set_by: None },
    }
}

fn body_of(v: &hearth_store::Version) -> Option<Value> {
    v.body.as_deref().and_then(|b| serde_json::from_str(b).ok())
}

/// Puts a reading's parameters into `latest` unless a later one is there.
fn merge(
    latest: &mut Latest,
    cat: &Catalog,
    kind: &str,
    at: DateTime<Utc>,
    values: &[(String, f64)],
    code: Option<&str>,
) {
    let mut put = |k: &str, p: Point| {
        if latest.get(k).is_none_or(|old| old.at <= p.at) {
            latest.insert(k.to_owned(), p);
        }
    };
    if cat.coded(kind).is_some() {
        put(kind, Point { at, value: None, code: code.map(str::to_owned) });
    } else {
        for (k, v) in values {
            put(k, Point { at, value: Some(*v), code: None });
        }
    }
}

/// A stored reading: its time, its values (canonical units) and its coded answer.
type StoredPoint = (DateTime<Utc>, Vec<(String, f64)>, Option<String>);

/// The parameters of a stored Observation of `kind`.
fn stored_point(cat: &Catalog, kind: &str, body: &Value) -> Option<StoredPoint> {
    let at = body.get("effectiveDateTime").and_then(Value::as_str).and_then(hearth_workflow::fhir::parse_instant)?;
    if cat.coded(kind).is_some() {
        let code = body.pointer("/valueCodeableConcept/text")?.as_str()?.to_owned();
        return Some((at, Vec::new(), Some(code)));
    }
    if let Some(p) = cat.panel(kind) {
        let mut values = Vec::new();
        for c in &p.components {
            let def = cat.kind(c)?;
            let v = body.get("component")?.as_array()?.iter().find_map(|x| {
                let coded = x
                    .pointer("/code/coding")?
                    .as_array()?
                    .iter()
                    .any(|cc| cc.get("code").and_then(Value::as_str) == Some(def.loinc.as_str()));
                if coded { x.pointer("/valueQuantity/value")?.as_f64() } else { None }
            })?;
            values.push((c.clone(), v));
        }
        return Some((at, values, None));
    }
    let v = body.pointer("/valueQuantity/value")?.as_f64()?;
    Some((at, vec![(kind.to_owned(), v)], None))
}

/// The reading kinds whose latest stored reading the rules need, given the settings.
fn needed_kinds(cat: &Catalog, settings: &Settings) -> BTreeSet<String> {
    let mut kinds: BTreeSet<String> = SCORE_KINDS.iter().map(|k| (*k).to_owned()).collect();
    for t in &settings.thresholds {
        // A threshold names a measured kind; blood pressure's parts come from the panel.
        let kind = if cat.panel("blood_pressure").is_some_and(|p| p.components.contains(&t.parameter)) {
            "blood_pressure".to_owned()
        } else {
            t.parameter.clone()
        };
        kinds.insert(kind);
    }
    kinds
}

/// Whether a batch can change what the rules decide.
pub fn batch_matters(cat: &Catalog, settings: &Settings, readings: &[&Reading]) -> bool {
    let kinds = needed_kinds(cat, settings);
    readings.iter().any(|r| kinds.contains(&r.kind))
}

/// The patient's latest readings of what the rules read: stored (as `store` sees them), then
/// the batch's own.
pub async fn latest(
    app: &Selfcare,
    store: &Guarded,
    cat: &Catalog,
    patient: &str,
    settings: &Settings,
    batch: &[&Reading],
) -> Result<Latest, ApiError> {
    let mut latest = Latest::new();
    for kind in needed_kinds(cat, settings) {
        let Some((system, code)) = cat.code_of(&kind) else { continue };
        let mut pairs: Vec<(String, String)> = vec![
            ("subject".into(), format!("Patient/{patient}")),
            ("code".into(), format!("{system}|{code}")),
            ("_sort".into(), "-date".into()),
            ("_count".into(), "1".into()),
        ];
        // When the batch has readings of the kind, only a stored one after the batch's latest
        // can be the latest (the batch's wins a tie, see `merge`): a device's next batch asks
        // for a few rows of the date index instead of sorting every reading of the kind.
        if let Some(newest) = batch.iter().filter(|r| r.kind == kind).map(|r| r.effective).max() {
            pairs.push(("date".into(), format!("gt{}", crate::vitals::instant(newest))));
        }
        let found = app.search_all(store, "Observation", &pairs, 1).await?;
        if let Some((at, values, code)) = found.first().and_then(body_of).and_then(|b| stored_point(cat, &kind, &b)) {
            merge(&mut latest, cat, &kind, at, &values, code.as_deref());
        }
    }
    for r in batch {
        merge(&mut latest, cat, &r.kind, r.effective, &r.values, r.coded.as_deref());
    }
    Ok(latest)
}

/// What to do about one rule.
#[derive(Debug)]
pub enum Action {
    /// A new alert (and, if a lower one of the same rule is live, that one resolved).
    Raise { rule: String, finding: Finding, id: String, flag: String, supersedes: Option<String> },
    /// The live alert still holds: remember when it was last seen; no message.
    Touch { rule: String, id: String },
    /// The live alert holds no more.
    Resolve { rule: String, id: String, flag: String },
}

impl Action {
    /// `(alert id, rule, change)` as the batch's answer names it.
    pub fn describe(&self) -> (&str, &str, &'static str) {
        match self {
            Action::Raise { id, rule, .. } => (id, rule, "raised"),
            Action::Touch { id, rule } => (id, rule, "ongoing"),
            Action::Resolve { id, rule, .. } => (id, rule, "resolved"),
        }
    }
}

/// Decides against the live alerts.
pub fn plan(
    rules: &EarlyWarning,
    latest: &Latest,
    settings: &Settings,
    live: &[AlertRow],
) -> Result<Vec<Action>, ApiError> {
    let outcomes = evaluate(rules, latest, settings.spo2_scale2, &settings.thresholds).map_err(ApiError::internal)?;
    let mut actions = Vec::new();
    for (rule, outcome) in outcomes {
        let current = live.iter().find(|a| a.rule == rule);
        match (outcome, current) {
            (Outcome::Raise(f), Some(a)) if a.severity >= f.severity => {
                actions.push(Action::Touch { rule, id: a.id.clone() })
            }
            (Outcome::Raise(finding), a) => actions.push(Action::Raise {
                rule,
                finding,
                id: uuid::Uuid::now_v7().to_string(),
                flag: uuid::Uuid::now_v7().to_string(),
                supersedes: a.map(|a| a.id.clone()),
            }),
            (Outcome::Clear, Some(a)) => actions.push(Action::Resolve { rule, id: a.id.clone(), flag: a.flag.clone() }),
            (Outcome::Clear, None) => {}
        }
    }
    Ok(actions)
}

/// The `Flag` of a new alert.
pub fn flag(patient: &str, id: &str, rule: &str, f: &Finding, at: DateTime<Utc>) -> Value {
    json!({
        "resourceType": "Flag",
        "identifier": [{"system": ALERT_ID_SYSTEM, "value": id}],
        "status": "active",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "clinical", "display": "Clinical"}]}],
        "code": {"coding": [{"system": ALERT_SYSTEM, "code": rule, "display": f.summary}], "text": f.summary},
        "subject": {"reference": format!("Patient/{patient}")},
        "period": {"start": instant(at)},
        "author": {"display": "Hearth self-care early-warning rules"},
    })
}

/// Writes the Flags of new alerts through the caller's transaction (before it becomes a TxDb).
pub async fn write_flags(
    app: &Selfcare,
    tx: &mut GuardedTx,
    patient: &str,
    actions: &[Action],
    now: DateTime<Utc>,
) -> Result<(), ApiError> {
    for a in actions {
        if let Action::Raise { rule, finding, id, flag: fid, .. } = a {
            let body = flag(patient, id, rule, finding, now);
            hearth_workflow::fhir::validate(app, "Flag", &body).map_err(|e| ApiError::internal(e.describe()))?;
            interactions::create(tx, hearth_workflow::fhir::write_of(app, "Flag", fid.clone(), body), now).await?;
        }
    }
    Ok(())
}

fn enqueue_error(e: notify::EnqueueError) -> ApiError {
    match e {
        notify::EnqueueError::Store(s) => s.into(),
        other => ApiError::internal(other.to_string()),
    }
}

/// The care team told at once, and the wider audience of the second wave.
async fn audiences(
    db: &TxDb,
    patient_body: &Value,
    settings: &Settings,
) -> Result<(Vec<String>, Vec<String>), StoreError> {
    let mut team = BTreeSet::new();
    for r in patient_body.get("generalPractitioner").and_then(Value::as_array).into_iter().flatten() {
        if let Some(p) = r.get("reference").and_then(Value::as_str).filter(|p| p.starts_with("Practitioner/")) {
            team.extend(identity::accounts_of(db, p).await?);
        }
    }
    if let Some(a) = &settings.set_by {
        team.insert(a.clone());
    }
    let mut wider = BTreeSet::new();
    if let Some(org) = patient_body
        .pointer("/managingOrganization/reference")
        .and_then(Value::as_str)
        .and_then(|r| r.strip_prefix("Organization/"))
    {
        wider.extend(identity::accounts_with_role(db, "clinician", Some(org)).await?);
    }
    wider.extend(identity::accounts_with_role(db, "admin", None).await?);
    Ok((team.into_iter().collect(), wider.into_iter().collect()))
}

/// Applies `actions` on the batch's transaction: alert rows, resolutions, and the messages of
/// new alerts. False when another request raised the same alert at the same moment (the
/// caller rolls back and answers `409`).
#[allow(clippy::too_many_arguments)]
pub async fn apply(
    app: &Selfcare,
    db: &TxDb,
    patient: &str,
    patient_body: &Value,
    settings: &Settings,
    actions: &[Action],
    now: DateTime<Utc>,
) -> Result<bool, ApiError> {
    let at = now.timestamp_millis();
    let escalate_at = now + TimeDelta::minutes(i64::from(app.config.escalate_after_minutes));
    let mut audience: Option<(Vec<String>, Vec<String>)> = None;
    for a in actions {
        match a {
            Action::Touch { id, .. } => sql::touch_alert(db, id, at).await?,
            Action::Resolve { id, .. } => {
                sql::resolve_alert(db, id, at).await?;
                notify::cancel_prefix(db, &escalation_prefix(id), now).await?;
            }
            Action::Raise { rule, finding, id, flag, supersedes } => {
                if let Some(old) = supersedes {
                    sql::resolve_alert(db, old, at).await?;
                    notify::cancel_prefix(db, &escalation_prefix(old), now).await?;
                }
                let row = AlertRow {
                    id: id.clone(),
                    patient: patient.to_owned(),
                    rule: rule.clone(),
                    severity: finding.severity,
                    level: finding.level.clone(),
                    score: finding.score,
                    detail: json!({"summary": finding.summary, "detail": finding.detail}).to_string(),
                    flag: flag.clone(),
                    status: "open".into(),
                    raised_at: at,
                    last_seen: at,
                    escalate_at: escalate_at.timestamp_millis(),
                    acknowledged_by: None,
                    acknowledged_at: None,
                    resolved_at: None,
                };
                if !sql::insert_alert(db, &row).await? {
                    return Ok(false);
                }
                let (team, wider) = match &audience {
                    Some(a) => a.clone(),
                    None => {
                        let a = audiences(db, patient_body, settings).await?;
                        audience = Some(a.clone());
                        a
                    }
                };
                let prefix = key_prefix(id);
                let notice = PatientNotice {
                    key: format!("{prefix}patient"),
                    patient_id: patient.to_owned(),
                    category: Category::Emergency,
                    template: "emergency-alert".into(),
                    args: Map::new(),
                    not_before: None,
                    channels: None,
                    include_caregivers: true,
                };
                notify::enqueue_for_patient(&app.notifier, db, &notice, now).await.map_err(enqueue_error)?;
                for (accounts, key, when) in
                    [(&team, format!("{prefix}team:"), None), (&wider, escalation_prefix(id), Some(escalate_at))]
                {
                    for account in accounts {
                        let notice = Notice {
                            key: format!("{key}{account}"),
                            account_id: account.clone(),
                            category: Category::Emergency,
                            template: "emergency-alert".into(),
                            args: Map::new(),
                            not_before: when,
                        };
                        notify::enqueue(&app.notifier, db, &notice, now).await.map_err(enqueue_error)?;
                    }
                }
            }
        }
    }
    Ok(true)
}

/// After the commit: the Flags of resolved alerts become `inactive` (written by the system:
/// a patient's own reading may close what it opened, but a patient-side caller may not change
/// a Flag). A failure is logged; the alert row is the state, the Flag its record.
pub async fn close_flags(app: &Selfcare, actions: &[Action], now: DateTime<Utc>) {
    for a in actions {
        let id = match a {
            Action::Resolve { flag, .. } => flag.clone(),
            _ => continue,
        };
        let done = async {
            let store = app.system();
            let hearth_store::Current::Found(v) = store.read("Flag", &id).await? else {
                return Ok::<_, StoreError>(());
            };
            let Some(mut body) = body_of(&v) else { return Ok(()) };
            if let Some(o) = body.as_object_mut() {
                o.insert("status".into(), json!("inactive"));
                let start = o.get("period").and_then(|p| p.get("start")).cloned();
                o.insert("period".into(), json!({"start": start, "end": instant(now)}));
            }
            let mut tx = store.begin().await?;
            interactions::update(
                &mut tx,
                hearth_workflow::fhir::write_of(app, "Flag", id.clone(), body),
                Some(v.version_id),
                now,
            )
            .await?;
            tx.commit().await
        }
        .await;
        if let Err(e) = done {
            tracing::warn!(error = %e, "a resolved self-care alert's Flag stays active");
        }
    }
}
