//! Medication schedules and dose logs as FHIR (pure: parse, check, build, read back).
//!
//! A schedule is a `MedicationStatement` (what the patient or their caregiver says they take)
//! or a `MedicationRequest` (a clinician's order), its `dosage` (statement) or
//! `dosageInstruction` (request) holding the timing: times of day or every N hours, days of
//! week, start and end, tapering steps (one `Dosage` per step, in `sequence`, each with its own
//! bounds and dose) and as-needed. A dose log is a `MedicationAdministration`.

use chrono::{DateTime, NaiveDate, NaiveTime, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::interactions::{Drug, RXNORM, Severity};

/// Tag system on every resource this workflow writes.
pub const TAG_SYSTEM: &str = "urn:hearth:medication";
/// Extension holding the dose time a log answers.
pub const SCHEDULED_FOR_URL: &str = "urn:hearth:medication:scheduled-for";
/// Extension holding the quantity in hand a patient's statement was added with (in the dose's
/// unit); a clinician's order keeps it in `dispenseRequest.quantity`.
pub const QUANTITY_URL: &str = "urn:hearth:medication:quantity";
/// Extension holding when the quantity in hand was last counted, when that is not when the
/// schedule was added (an edit that gives a new `quantity`: a refill starts a new supply cycle).
pub const QUANTITY_COUNTED_URL: &str = "urn:hearth:medication:quantity-counted";
/// A dose taken more than this many minutes after its time is `late`.
pub const LATE_AFTER_MINUTES: i64 = 60;
/// Most tapering steps.
pub const MAX_STEPS: usize = 20;
/// Most times of day.
pub const MAX_TIMES: usize = 12;

const DAYS: [&str; 7] = ["mon", "tue", "wed", "thu", "fri", "sat", "sun"];

/// A refusal: a stable code and a sentence.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Invalid {
    pub code: &'static str,
    pub message: String,
}

/// Sets a member of a JSON object (a no-op on anything else, which the builders never pass).
fn set(v: &mut Value, key: &str, value: Value) {
    if let Some(o) = v.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

fn invalid(code: &'static str, message: impl Into<String>) -> Invalid {
    Invalid { code, message: message.into() }
}

/// The medication: a name (shown to people) and, where known, its RxNorm code.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct MedicationIn {
    /// As the patient or prescriber writes it (`Ibuprofen 400 mg tablet`), 1–200 characters.
    pub name: String,
    /// RxNorm code (ingredient, product or brand), digits only.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rxnorm: Option<String>,
}

impl MedicationIn {
    pub fn check(&self) -> Result<(), Invalid> {
        if !hearth_workflow::fhir::is_display_text(&self.name, 200) {
            return Err(invalid("invalid_medication", "`medication.name`: 1 to 200 printable characters"));
        }
        if let Some(c) = &self.rxnorm
            && (c.is_empty() || c.len() > 12 || !c.bytes().all(|b| b.is_ascii_digit()))
        {
            return Err(invalid("invalid_medication", "`medication.rxnorm`: an RxNorm code is 1 to 12 digits"));
        }
        Ok(())
    }
    pub fn drug(&self) -> Drug {
        Drug { code: self.rxnorm.clone(), name: Some(self.name.clone()) }
    }
    fn concept(&self) -> Value {
        match &self.rxnorm {
            Some(code) => json!({"coding": [{"system": RXNORM, "code": code}], "text": self.name}),
            None => json!({"text": self.name}),
        }
    }
}

/// An amount of medicine per dose.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct DoseIn {
    /// Greater than 0.
    pub value: f64,
    /// `mg`, `mL`, `tablet`, `puff`, … (1–20 characters).
    pub unit: String,
}

impl DoseIn {
    fn check(&self, at: &str) -> Result<(), Invalid> {
        if !self.value.is_finite() || self.value <= 0.0 || self.value > 1.0e6 {
            return Err(invalid("invalid_dose", format!("`{at}.value` must be a number above 0")));
        }
        if !hearth_workflow::fhir::is_display_text(&self.unit, 20) {
            return Err(invalid("invalid_dose", format!("`{at}.unit`: 1 to 20 printable characters")));
        }
        Ok(())
    }
    fn quantity(&self) -> Value {
        json!({"value": self.value, "unit": self.unit})
    }
}

/// One tapering step: from `start` (to `end`) the dose is `dose`.
#[derive(Debug, Clone, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StepIn {
    /// `YYYY-MM-DD`.
    pub start: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    pub dose: DoseIn,
}

/// A schedule to add.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ScheduleIn {
    /// The Patient id; default the caller's own record.
    #[serde(default)]
    pub patient: Option<String>,
    pub medication: MedicationIn,
    pub dose: DoseIn,
    /// `oral`, `inhaled`, `topical`, … (free text, up to 40 characters).
    #[serde(default)]
    pub route: Option<String>,
    /// Times of day, `HH:MM`, in the patient's time zone (give these or `every_hours`).
    #[serde(default)]
    pub times: Vec<String>,
    /// Every N hours (1–24) from `start`.
    #[serde(default)]
    pub every_hours: Option<u32>,
    /// `mon` … `sun`; empty means every day.
    #[serde(default)]
    pub days_of_week: Vec<String>,
    /// First day, `YYYY-MM-DD`.
    pub start: String,
    /// Last day, `YYYY-MM-DD`.
    #[serde(default)]
    pub end: Option<String>,
    /// Taken when needed, not at set times (no reminders).
    #[serde(default)]
    pub as_needed: bool,
    /// How to take it, for the patient (`after food`, `with a full glass of water`), up to 200 characters.
    #[serde(default)]
    pub instructions: Option<String>,
    /// Tapering: later steps with their own dose (the first step is `dose` from `start`).
    #[serde(default)]
    pub taper: Vec<StepIn>,
    /// Units in hand, in the dose's unit (for refill prediction), counted from when it is added.
    #[serde(default)]
    pub quantity: Option<f64>,
    /// A patient or caregiver has read the interaction or allergy warning and adds the
    /// medication anyway (the finding is recorded for their clinician).
    #[serde(default)]
    pub acknowledge: bool,
    /// A clinician's reason for overriding a `danger` finding (recorded on the `DetectedIssue`).
    #[serde(default)]
    pub override_reason: Option<String>,
}

fn date(s: &str, at: &str) -> Result<NaiveDate, Invalid> {
    NaiveDate::parse_from_str(s, "%Y-%m-%d")
        .map_err(|_| invalid("invalid_date", format!("`{at}` is not a date (YYYY-MM-DD)")))
}

/// A checked schedule.
#[derive(Debug, Clone)]
pub struct Schedule {
    pub medication: MedicationIn,
    pub route: Option<String>,
    pub times: Vec<NaiveTime>,
    pub every_hours: Option<u32>,
    pub days: Vec<&'static str>,
    pub as_needed: bool,
    pub instructions: Option<String>,
    /// (start, end, dose), the first from `start` with `dose`.
    pub steps: Vec<(NaiveDate, Option<NaiveDate>, DoseIn)>,
    pub quantity: Option<f64>,
    /// When `quantity` was counted, if not when the resource was first written (set by an edit).
    pub quantity_counted: Option<DateTime<Utc>>,
}

impl ScheduleIn {
    /// Parses and checks everything; nothing is half-accepted.
    pub fn check(&self) -> Result<Schedule, Invalid> {
        self.medication.check()?;
        self.dose.check("dose")?;
        if let Some(r) = &self.route
            && !hearth_workflow::fhir::is_display_text(r, 40)
        {
            return Err(invalid("invalid_route", "`route`: 1 to 40 printable characters"));
        }
        if let Some(i) = &self.instructions
            && !hearth_workflow::fhir::is_display_text(i, 200)
        {
            return Err(invalid("invalid_instructions", "`instructions`: 1 to 200 printable characters"));
        }
        if self.times.len() > MAX_TIMES {
            return Err(invalid("invalid_timing", format!("at most {MAX_TIMES} `times`")));
        }
        let mut times = Vec::with_capacity(self.times.len());
        for t in &self.times {
            let parsed = NaiveTime::parse_from_str(t, "%H:%M")
                .map_err(|_| invalid("invalid_timing", format!("`times`: {t:?} is not HH:MM")))?;
            if !times.contains(&parsed) {
                times.push(parsed);
            }
        }
        times.sort();
        if let Some(h) = self.every_hours
            && !(1..=24).contains(&h)
        {
            return Err(invalid("invalid_timing", "`every_hours` is 1 to 24"));
        }
        match (times.is_empty(), self.every_hours.is_some(), self.as_needed) {
            (false, true, _) => return Err(invalid("invalid_timing", "give `times` or `every_hours`, not both")),
            (true, false, false) => {
                return Err(invalid("invalid_timing", "give `times` or `every_hours`, or set `as_needed`"));
            }
            _ => {}
        }
        let mut days = Vec::new();
        for d in &self.days_of_week {
            let day = DAYS
                .iter()
                .find(|x| x.eq_ignore_ascii_case(d))
                .ok_or_else(|| invalid("invalid_timing", format!("`days_of_week`: {d:?} is not mon … sun")))?;
            if !days.contains(day) {
                days.push(*day);
            }
        }
        let start = date(&self.start, "start")?;
        let end = self.end.as_deref().map(|e| date(e, "end")).transpose()?;
        if end.is_some_and(|e| e < start) {
            return Err(invalid("invalid_date", "`end` is before `start`"));
        }
        if self.taper.len() > MAX_STEPS {
            return Err(invalid("invalid_taper", format!("at most {MAX_STEPS} tapering steps")));
        }
        let mut steps: Vec<(NaiveDate, Option<NaiveDate>, DoseIn)> = Vec::with_capacity(self.taper.len() + 1);
        let mut previous = start;
        for (i, s) in self.taper.iter().enumerate() {
            s.dose.check(&format!("taper[{i}].dose"))?;
            let from = date(&s.start, &format!("taper[{i}].start"))?;
            let to = s.end.as_deref().map(|e| date(e, &format!("taper[{i}].end"))).transpose()?;
            if from <= previous || to.is_some_and(|t| t < from) || end.is_some_and(|e| from > e) {
                return Err(invalid(
                    "invalid_taper",
                    format!("taper[{i}]: steps follow one another after `start`, within `end`"),
                ));
            }
            steps.push((from, to.or(end), s.dose.clone()));
            previous = from;
        }
        // Each step ends the day before the next begins.
        let mut all = vec![(start, end, self.dose.clone())];
        all.extend(steps);
        let next_starts: Vec<Option<NaiveDate>> = all.iter().skip(1).map(|s| Some(s.0)).chain([None]).collect();
        for (step, next) in all.iter_mut().zip(next_starts) {
            if let Some(n) = next.and_then(|n| n.pred_opt()) {
                step.1 = Some(step.1.map_or(n, |e| e.min(n)));
            }
        }
        if let Some(q) = self.quantity
            && (!q.is_finite() || !(0.0..=1.0e6).contains(&q))
        {
            return Err(invalid("invalid_quantity", "`quantity` is a number from 0"));
        }
        if let Some(r) = &self.override_reason
            && !hearth_workflow::fhir::is_display_text(r, 1000)
        {
            return Err(invalid("invalid_override", "`override_reason`: 1 to 1000 printable characters"));
        }
        Ok(Schedule {
            medication: self.medication.clone(),
            route: self.route.clone(),
            times,
            every_hours: self.every_hours,
            days,
            as_needed: self.as_needed,
            instructions: self.instructions.clone(),
            steps: all,
            quantity: self.quantity,
            quantity_counted: None,
        })
    }
}

impl Schedule {
    fn dosages(&self) -> Vec<Value> {
        self.steps
            .iter()
            .enumerate()
            .map(|(i, (start, end, dose))| {
                let mut bounds = json!({"start": start.to_string()});
                if let Some(e) = end {
                    set(&mut bounds, "end", json!(e.to_string()));
                }
                let mut repeat = json!({"boundsPeriod": bounds});
                if !self.times.is_empty() {
                    set(
                        &mut repeat,
                        "timeOfDay",
                        json!(self.times.iter().map(|t| t.format("%H:%M:%S").to_string()).collect::<Vec<_>>()),
                    );
                }
                if let Some(h) = self.every_hours {
                    set(&mut repeat, "frequency", json!(1));
                    set(&mut repeat, "period", json!(h));
                    set(&mut repeat, "periodUnit", json!("h"));
                }
                if !self.days.is_empty() {
                    set(&mut repeat, "dayOfWeek", json!(self.days));
                }
                let mut d = json!({
                    "sequence": i + 1,
                    "timing": {"repeat": repeat},
                    "asNeededBoolean": self.as_needed,
                    "doseAndRate": [{"doseQuantity": dose.quantity()}],
                });
                if let Some(r) = &self.route {
                    set(&mut d, "route", json!({"text": r}));
                }
                if let Some(i) = &self.instructions {
                    set(&mut d, "patientInstruction", json!(i));
                }
                d
            })
            .collect()
    }

    fn period(&self) -> Value {
        let start = self.steps.first().map(|s| s.0.to_string());
        let end = self.steps.last().and_then(|s| s.1).map(|e| e.to_string());
        let mut p = json!({"start": start});
        if let Some(e) = end {
            set(&mut p, "end", json!(e));
        }
        p
    }

    /// The patient's own (or their caregiver's) statement of what they take.
    pub fn statement(&self, patient: &str, source: Option<&str>, now: DateTime<Utc>) -> Value {
        let mut r = json!({
            "resourceType": "MedicationStatement",
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": "schedule"}]},
            "status": "active",
            "medicationCodeableConcept": self.medication.concept(),
            "subject": {"reference": format!("Patient/{patient}")},
            "effectivePeriod": self.period(),
            "dateAsserted": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "dosage": self.dosages(),
        });
        if let Some(s) = source {
            set(&mut r, "informationSource", json!({"reference": s}));
        }
        if let Some(q) = self.quantity {
            let mut ext = vec![json!({"url": QUANTITY_URL, "valueQuantity": self.in_hand(q)})];
            ext.extend(self.counted());
            set(&mut r, "extension", json!(ext));
        }
        r
    }

    /// The `quantity-counted` extension, when an edit recounted the supply.
    fn counted(&self) -> Option<Value> {
        let at = self.quantity_counted.filter(|_| self.quantity.is_some())?;
        Some(
            json!({"url": QUANTITY_COUNTED_URL, "valueDateTime": at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}),
        )
    }

    fn in_hand(&self, q: f64) -> Value {
        let unit = self.steps.first().map(|s| s.2.unit.clone()).unwrap_or_default();
        json!({"value": q, "unit": unit})
    }

    /// A clinician's order.
    pub fn request(&self, patient: &str, requester: Option<&str>, now: DateTime<Utc>) -> Value {
        let mut r = json!({
            "resourceType": "MedicationRequest",
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": "schedule"}]},
            "status": "active",
            "intent": "order",
            "medicationCodeableConcept": self.medication.concept(),
            "subject": {"reference": format!("Patient/{patient}")},
            "authoredOn": now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "dosageInstruction": self.dosages(),
        });
        if let Some(q) = self.quantity {
            set(&mut r, "dispenseRequest", json!({"quantity": self.in_hand(q)}));
        }
        if let Some(c) = self.counted() {
            set(&mut r, "extension", json!([c]));
        }
        if let Some(p) = requester {
            set(&mut r, "requester", json!({"reference": p}));
        }
        r
    }
}

/// A schedule as read back from a `MedicationStatement` or `MedicationRequest`.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct ScheduleOut {
    /// `MedicationStatement/{id}` or `MedicationRequest/{id}`.
    pub reference: String,
    /// `statement` (the patient's own) or `request` (a clinician's order).
    pub kind: &'static str,
    pub status: String,
    pub medication: MedicationIn,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub route: Option<String>,
    /// `HH:MM`.
    pub times: Vec<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub every_hours: Option<u32>,
    pub days_of_week: Vec<String>,
    pub as_needed: bool,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub instructions: Option<String>,
    /// The dose steps in order (one unless tapering).
    pub steps: Vec<StepIn>,
    /// Units in hand when the schedule was added (the dose's unit), if given.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity: Option<f64>,
    /// When that quantity was counted (`dateAsserted` or `authoredOn`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub quantity_since: Option<String>,
}

fn s(v: &Value, p: &str) -> Option<String> {
    v.pointer(p).and_then(Value::as_str).map(str::to_owned)
}

/// The medication a statement, request or administration names.
pub fn medication_of(r: &Value) -> Option<MedicationIn> {
    let c = r.get("medicationCodeableConcept")?;
    let codings = c.get("coding").and_then(Value::as_array);
    let rxnorm = codings.and_then(|cs| {
        cs.iter()
            .find(|x| x.get("system").and_then(Value::as_str) == Some(RXNORM))
            .and_then(|x| x.get("code").and_then(Value::as_str))
            .map(str::to_owned)
    });
    let name = s(c, "/text").or_else(|| codings.and_then(|cs| cs.iter().find_map(|x| s(x, "/display"))));
    match (name, rxnorm) {
        (Some(name), rxnorm) => Some(MedicationIn { name, rxnorm }),
        (None, Some(code)) => Some(MedicationIn { name: format!("RxNorm {code}"), rxnorm: Some(code) }),
        (None, None) => None,
    }
}

/// Reads a schedule back; `None` for one without a medication.
pub fn schedule_out(resource_type: &str, id: &str, r: &Value) -> Option<ScheduleOut> {
    let medication = medication_of(r)?;
    let key = if resource_type == "MedicationRequest" { "dosageInstruction" } else { "dosage" };
    let dosages: Vec<&Value> = r.get(key).and_then(Value::as_array).map(|a| a.iter().collect()).unwrap_or_default();
    let first = dosages.first().copied().cloned().unwrap_or(Value::Null);
    let repeat = first.pointer("/timing/repeat").cloned().unwrap_or(Value::Null);
    let list = |v: &Value, k: &str| -> Vec<String> {
        v.get(k)
            .and_then(Value::as_array)
            .map(|a| a.iter().filter_map(Value::as_str).map(str::to_owned).collect())
            .unwrap_or_default()
    };
    let times = list(&repeat, "timeOfDay").into_iter().map(|t| t.chars().take(5).collect()).collect();
    let every_hours = (repeat.get("periodUnit").and_then(Value::as_str) == Some("h"))
        .then(|| repeat.get("period").and_then(Value::as_f64))
        .flatten()
        .map(|p| p.round() as u32);
    let steps = dosages
        .iter()
        .filter_map(|d| {
            let q = d.pointer("/doseAndRate/0/doseQuantity")?;
            Some(StepIn {
                start: s(d, "/timing/repeat/boundsPeriod/start")?,
                end: s(d, "/timing/repeat/boundsPeriod/end"),
                dose: DoseIn { value: q.get("value")?.as_f64()?, unit: s(q, "/unit").unwrap_or_default() },
            })
        })
        .collect();
    let quantity = if resource_type == "MedicationRequest" {
        r.pointer("/dispenseRequest/quantity/value").and_then(Value::as_f64)
    } else {
        r.get("extension").and_then(Value::as_array).and_then(|e| {
            e.iter()
                .find(|x| x.get("url").and_then(Value::as_str) == Some(QUANTITY_URL))
                .and_then(|x| x.pointer("/valueQuantity/value"))
                .and_then(Value::as_f64)
        })
    };
    let counted = r.get("extension").and_then(Value::as_array).and_then(|e| {
        e.iter()
            .find(|x| x.get("url").and_then(Value::as_str) == Some(QUANTITY_COUNTED_URL))
            .and_then(|x| s(x, "/valueDateTime"))
    });
    let quantity_since = quantity.and(counted.or_else(|| s(r, "/authoredOn")).or_else(|| s(r, "/dateAsserted")));
    Some(ScheduleOut {
        reference: format!("{resource_type}/{id}"),
        kind: if resource_type == "MedicationRequest" { "request" } else { "statement" },
        status: s(r, "/status").unwrap_or_default(),
        medication,
        route: s(&first, "/route/text"),
        times,
        every_hours,
        days_of_week: list(&repeat, "dayOfWeek"),
        as_needed: first.get("asNeededBoolean").and_then(Value::as_bool).unwrap_or(false),
        instructions: s(&first, "/patientInstruction"),
        steps,
        quantity,
        quantity_since,
    })
}

/// The DetectedIssue recording one finding: for a clinician's override, `final` with the
/// override as mitigation; for a patient's acknowledgement, `preliminary` (for review).
pub struct IssueOf<'a> {
    pub patient: &'a str,
    pub finding: &'a crate::interactions::Finding,
    /// What the finding implicates: the new schedule, the other medication or the allergy.
    pub implicated: Vec<String>,
    pub author: Option<&'a str>,
    pub override_reason: Option<&'a str>,
    pub now: DateTime<Utc>,
}

impl IssueOf<'_> {
    pub fn resource(&self) -> Value {
        let f = self.finding;
        let (code, display) =
            if f.kind == "allergy" { ("ALGY", "Allergy Alert") } else { ("DRG", "Drug Interaction Alert") };
        let severity = match f.severity {
            Severity::Danger => "high",
            Severity::Warning => "moderate",
            Severity::Caution => "low",
        };
        let now = self.now.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
        let mut detail = format!(
            "{} Mechanism: {} Recommendation: {} Source: {}.",
            f.description, f.mechanism, f.recommendation, f.source
        );
        for m in &f.modifiers {
            detail.push(' ');
            detail.push_str(m);
        }
        let mut r = json!({
            "resourceType": "DetectedIssue",
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": f.rule}]},
            "status": if self.override_reason.is_some() { "final" } else { "preliminary" },
            "code": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": code, "display": display}]},
            "severity": severity,
            "patient": {"reference": format!("Patient/{}", self.patient)},
            "identifiedDateTime": now,
            "implicated": self.implicated.iter().map(|r| json!({"reference": r})).collect::<Vec<_>>(),
            "detail": detail,
        });
        if let Some(a) = self.author {
            set(&mut r, "author", json!({"reference": a}));
        }
        let action = match self.override_reason {
            Some(reason) => format!("Overridden by the prescriber: {reason}"),
            None => "Warning shown to the patient and acknowledged".to_owned(),
        };
        let mut mitigation = json!({"date": now, "action": {"text": action}});
        if let Some(a) = self.author {
            set(&mut mitigation, "author", json!({"reference": a}));
        }
        set(&mut r, "mitigation", json!([mitigation]));
        r
    }
}

/// A dose log to record.
#[derive(Debug, Clone, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct LogIn {
    /// The Patient id; default the caller's own record.
    #[serde(default)]
    pub patient: Option<String>,
    /// `MedicationStatement/{id}` or `MedicationRequest/{id}`.
    pub schedule: String,
    /// `taken`, `skipped` or `late`; `taken` more than 60 minutes after `scheduled_for` is recorded `late`.
    pub status: String,
    /// When it was taken (or skipped); default now.
    #[serde(default)]
    pub at: Option<String>,
    /// The dose time this answers (RFC 3339).
    #[serde(default)]
    pub scheduled_for: Option<String>,
}

/// A checked log.
pub struct Log {
    pub status: &'static str,
    pub at: DateTime<Utc>,
    pub scheduled_for: Option<DateTime<Utc>>,
}

impl LogIn {
    pub fn check(&self, now: DateTime<Utc>) -> Result<Log, Invalid> {
        let at = match &self.at {
            Some(a) => hearth_workflow::fhir::parse_instant(a)
                .ok_or_else(|| invalid("invalid_time", "`at` is not an RFC 3339 instant"))?,
            None => now,
        };
        if at > now + chrono::TimeDelta::minutes(5) {
            return Err(invalid("invalid_time", "`at` is in the future"));
        }
        let scheduled_for = self
            .scheduled_for
            .as_deref()
            .map(|s| {
                hearth_workflow::fhir::parse_instant(s)
                    .ok_or_else(|| invalid("invalid_time", "`scheduled_for` is not an RFC 3339 instant"))
            })
            .transpose()?;
        let status = match self.status.as_str() {
            "taken" if scheduled_for.is_some_and(|s| at - s > chrono::TimeDelta::minutes(LATE_AFTER_MINUTES)) => "late",
            "taken" => "taken",
            "late" => "late",
            "skipped" => "skipped",
            _ => return Err(invalid("invalid_status", "`status` is taken, skipped or late")),
        };
        Ok(Log { status, at, scheduled_for })
    }
}

impl Log {
    /// The `MedicationAdministration` of a log against a schedule.
    pub fn administration(
        &self,
        patient: &str,
        schedule: &str,
        medication: &MedicationIn,
        performer: Option<&str>,
    ) -> Value {
        let mut r = json!({
            "resourceType": "MedicationAdministration",
            "meta": {"tag": [{"system": TAG_SYSTEM, "code": self.status}]},
            "status": if self.status == "skipped" { "not-done" } else { "completed" },
            "medicationCodeableConcept": medication.concept(),
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": self.at.to_rfc3339_opts(chrono::SecondsFormat::Secs, true),
            "supportingInformation": [{"reference": schedule}],
        });
        if schedule.starts_with("MedicationRequest/") {
            set(&mut r, "request", json!({"reference": schedule}));
        }
        if self.status == "skipped" {
            set(&mut r, "statusReason", json!([{"text": "skipped"}]));
        }
        if let Some(s) = self.scheduled_for {
            set(
                &mut r,
                "extension",
                json!([{"url": SCHEDULED_FOR_URL, "valueDateTime": s.to_rfc3339_opts(chrono::SecondsFormat::Secs, true)}]),
            );
        }
        if let Some(p) = performer {
            set(&mut r, "performer", json!([{"actor": {"reference": p}}]));
        }
        r
    }
}

/// A dose log as read back.
#[derive(Debug, Clone, Serialize, utoipa::ToSchema)]
pub struct LogOut {
    /// `MedicationAdministration/{id}`.
    pub reference: String,
    /// The schedule it answers.
    pub schedule: Option<String>,
    /// `taken`, `skipped` or `late`.
    pub status: String,
    pub at: Option<String>,
    pub scheduled_for: Option<String>,
    pub medication: Option<MedicationIn>,
}

pub fn log_out(id: &str, r: &Value) -> LogOut {
    let tag = r
        .pointer("/meta/tag")
        .and_then(Value::as_array)
        .and_then(|t| t.iter().find(|t| t.get("system").and_then(Value::as_str) == Some(TAG_SYSTEM)))
        .and_then(|t| s(t, "/code"));
    let status = tag.unwrap_or_else(|| {
        if s(r, "/status").as_deref() == Some("not-done") { "skipped".to_owned() } else { "taken".to_owned() }
    });
    let scheduled_for = r.get("extension").and_then(Value::as_array).and_then(|e| {
        e.iter()
            .find(|x| x.get("url").and_then(Value::as_str) == Some(SCHEDULED_FOR_URL))
            .and_then(|x| s(x, "/valueDateTime"))
    });
    LogOut {
        reference: format!("MedicationAdministration/{id}"),
        schedule: s(r, "/supportingInformation/0/reference").or_else(|| s(r, "/request/reference")),
        status,
        at: s(r, "/effectiveDateTime"),
        scheduled_for,
        medication: medication_of(r),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn base() -> ScheduleIn {
        serde_json::from_value(json!({
            "medication": {"name": "Prednisone 10 mg tablet", "rxnorm": "8640"},
            "dose": {"value": 40, "unit": "mg"}, "times": ["08:00"], "start": "2026-12-01", "end": "2026-12-20",
            "taper": [{"start": "2026-12-08", "dose": {"value": 20, "unit": "mg"}}, {"start": "2026-12-15", "dose": {"value": 10, "unit": "mg"}}]
        }))
        .unwrap_or_else(|e| panic!("{e}"))
    }

    #[test]
    fn tapering_steps_end_the_day_before_the_next() {
        let s = base().check().unwrap_or_else(|e| panic!("{e:?}"));
        let bounds: Vec<(String, Option<String>, f64)> =
            s.steps.iter().map(|(a, b, d)| (a.to_string(), b.map(|b| b.to_string()), d.value)).collect();
        assert_eq!(
            bounds,
            vec![
                ("2026-12-01".into(), Some("2026-12-07".into()), 40.0),
                ("2026-12-08".into(), Some("2026-12-14".into()), 20.0),
                ("2026-12-15".into(), Some("2026-12-20".into()), 10.0)
            ]
        );
        let back = schedule_out("MedicationStatement", "x", &s.statement("p", None, Utc::now()));
        assert_eq!(back.map(|b| b.steps.len()), Some(3));
    }

    #[test]
    fn bad_timing_is_refused_with_a_stable_code() {
        let mut b = base();
        b.times = vec!["25:00".into()];
        assert_eq!(b.check().err().map(|e| e.code), Some("invalid_timing"));
        let mut b = base();
        b.every_hours = Some(8);
        assert_eq!(b.check().err().map(|e| e.code), Some("invalid_timing"));
        let mut b = base();
        b.times.clear();
        assert_eq!(b.check().err().map(|e| e.code), Some("invalid_timing"));
        b.as_needed = true;
        assert!(b.check().is_ok());
        let mut b = base();
        b.taper[1].start = "2026-12-05".into();
        assert_eq!(b.check().err().map(|e| e.code), Some("invalid_taper"));
    }

    #[test]
    fn a_dose_taken_over_an_hour_after_its_time_is_late() {
        let now = Utc::now();
        let log = |status: &str, minutes: i64| LogIn {
            patient: None,
            schedule: "MedicationStatement/x".into(),
            status: status.into(),
            at: Some(now.to_rfc3339()),
            scheduled_for: Some((now - chrono::TimeDelta::minutes(minutes)).to_rfc3339()),
        };
        assert_eq!(log("taken", 30).check(now).map(|l| l.status), Ok("taken"));
        assert_eq!(log("taken", 61).check(now).map(|l| l.status), Ok("late"));
        assert_eq!(log("skipped", 300).check(now).map(|l| l.status), Ok("skipped"));
        assert_eq!(log("eaten", 0).check(now).err().map(|e| e.code), Some("invalid_status"));
    }
}
