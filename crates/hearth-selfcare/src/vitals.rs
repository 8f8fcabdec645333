//! Vital signs and wearable readings (pure: no I/O, no clock): the catalogue of kinds
//! (`data/vitals.json`: LOINC code, UCUM unit, accepted input units, plausible and possible
//! ranges, each with its source), a reading parsed into canonical units, refused when it cannot
//! be a living person's and flagged when it is implausible, its FHIR vital-signs `Observation`,
//! the identity that makes a re-sent reading a duplicate, and the per-minute/hour/day
//! aggregation of a history.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use chrono::{DateTime, DurationRound, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};
use sha2::{Digest, Sha256};

/// The shipped catalogue.
pub const VITALS_JSON: &str = include_str!("../data/vitals.json");
/// LOINC.
pub const LOINC: &str = "http://loinc.org";
/// UCUM.
pub const UCUM: &str = "http://unitsofmeasure.org";
/// The tag system of readings flagged as implausible.
pub const FLAG_SYSTEM: &str = "urn:hearth:selfcare:flag";

/// A refused reading: a stable code and a message (no values in it: it may be logged).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{code}: {message}")]
pub struct VitalError {
    /// `unknown_kind`, `unknown_unit`, `invalid_value`, `impossible_value`, `invalid_time`.
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> VitalError {
    VitalError { code, message: message.into() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct UnitIn {
    unit: String,
    #[serde(default = "one")]
    factor: f64,
    #[serde(default)]
    offset: f64,
}

fn one() -> f64 {
    1.0
}

/// One kind of single-valued reading.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct KindDef {
    pub kind: String,
    pub loinc: String,
    #[serde(default)]
    pub also: Vec<String>,
    pub display: String,
    /// The canonical UCUM unit readings are stored in.
    pub unit: String,
    pub vital_sign: bool,
    units: Vec<UnitIn>,
    /// Kept but flagged outside this range (canonical unit).
    pub plausible: (f64, f64),
    /// Refused outside this range (canonical unit).
    pub possible: (f64, f64),
}

/// A panel of several kinds in one Observation (blood pressure).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct PanelDef {
    pub kind: String,
    pub loinc: String,
    pub display: String,
    pub components: Vec<String>,
}

/// One answer of a coded kind.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AnswerDef {
    /// What the app API sends (`A`, `air`).
    pub value: String,
    pub system: String,
    pub code: String,
    pub display: String,
}

/// A kind whose reading is one of a few coded answers (ACVPU, air or oxygen).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CodedDef {
    pub kind: String,
    /// The system of the Observation's code.
    pub system: String,
    pub code: String,
    pub display: String,
    /// The key of its citation in `sources`.
    pub source: String,
    pub answers: Vec<AnswerDef>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Src {
    title: String,
    url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct CatalogFile {
    format: String,
    version: String,
    #[allow(dead_code)]
    notes: String,
    sources: BTreeMap<String, Src>,
    panels: Vec<PanelDef>,
    coded: Vec<CodedDef>,
    kinds: Vec<KindDef>,
}

/// The checked catalogue.
#[derive(Debug, Clone)]
pub struct Catalog {
    pub version: String,
    kinds: Vec<KindDef>,
    panels: Vec<PanelDef>,
    coded: Vec<CodedDef>,
}

/// A reading as the app API takes it.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct ReadingIn {
    /// `heart_rate`, `respiratory_rate`, `spo2`, `body_temperature`, `blood_pressure`,
    /// `blood_glucose`, `body_weight`, `body_height`, `steps`, `consciousness`,
    /// `supplemental_oxygen`.
    pub kind: String,
    /// The answer of a coded kind: `consciousness` is `A`, `C`, `V`, `P` or `U` (ACVPU);
    /// `supplemental_oxygen` is `air` or `oxygen`.
    #[serde(default)]
    pub code: Option<String>,
    /// The value (every kind but `blood_pressure`).
    #[serde(default)]
    pub value: Option<f64>,
    /// Blood pressure: systolic.
    #[serde(default)]
    pub systolic: Option<f64>,
    /// Blood pressure: diastolic.
    #[serde(default)]
    pub diastolic: Option<f64>,
    /// UCUM unit of the value; default the kind's canonical unit. Converted on input:
    /// `[degF]`→`Cel`, `mmol/L`→`mg/dL`, `[lb_av]`/`g`→`kg`, `m`/`[in_i]`→`cm`.
    #[serde(default)]
    pub unit: Option<String>,
    /// When it was measured (RFC 3339).
    pub effective: String,
    /// The device's own id of this reading, if it has one (makes a re-send a duplicate even
    /// when a value was corrected).
    #[serde(default)]
    pub reading_id: Option<String>,
}

/// The device a batch came from.
#[derive(Debug, Clone, Deserialize, Serialize, utoipa::ToSchema, PartialEq, Eq)]
#[serde(deny_unknown_fields)]
pub struct DeviceIn {
    /// Manufacturer, e.g. "Omron".
    #[serde(default)]
    pub manufacturer: Option<String>,
    /// Model, e.g. "HEM-7120".
    #[serde(default)]
    pub model: Option<String>,
    /// Serial number.
    #[serde(default)]
    pub serial: Option<String>,
    /// The app that sent it, e.g. "Google Health Connect".
    #[serde(default)]
    pub source_app: Option<String>,
}

/// A parsed reading in canonical units.
#[derive(Debug, Clone, PartialEq)]
pub struct Reading {
    /// The kind (a single kind or a panel).
    pub kind: String,
    /// `(kind, canonical value)`: one for a single kind, the components for a panel.
    pub values: Vec<(String, f64)>,
    /// The answer of a coded kind (`A`, `air`); `values` is then empty.
    pub coded: Option<String>,
    pub effective: DateTime<Utc>,
    /// Outside the plausible range: kept, flagged.
    pub implausible: bool,
    pub reading_id: Option<String>,
}

/// Converted values are kept to this many decimals (a °F reading is not more precise in °C).
fn round2(v: f64) -> f64 {
    (v * 100.0).round() / 100.0
}

fn text_ok(s: &str, max: usize) -> bool {
    !s.trim().is_empty() && s.len() <= max && !s.chars().any(char::is_control)
}

impl Catalog {
    /// The shipped catalogue, parsed and checked once.
    pub fn builtin() -> Result<&'static Catalog, String> {
        static CATALOG: OnceLock<Result<Catalog, String>> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog::from_json(VITALS_JSON)).as_ref().map_err(Clone::clone)
    }

    /// Parses and checks a catalogue.
    pub fn from_json(json: &str) -> Result<Catalog, String> {
        let file: CatalogFile = serde_json::from_str(json).map_err(|e| format!("vitals catalogue: {e}"))?;
        if file.format != "hearth-selfcare-vitals/1" {
            return Err(format!("vitals catalogue: unknown format {:?}", file.format));
        }
        for key in ["codes", "plausible", "possible"] {
            match file.sources.get(key) {
                Some(s) if !s.title.trim().is_empty() && s.url.starts_with("https://") => {}
                _ => return Err(format!("vitals catalogue: source `{key}` missing")),
            }
        }
        for k in &file.kinds {
            let (pl, ph) = k.plausible;
            let (xl, xh) = k.possible;
            if !(xl <= pl && pl < ph && ph <= xh) {
                return Err(format!("vitals catalogue: {}: plausible must lie inside possible", k.kind));
            }
            if !k.units.iter().any(|u| u.unit == k.unit && u.factor == 1.0 && u.offset == 0.0) {
                return Err(format!("vitals catalogue: {}: the canonical unit must be accepted as is", k.kind));
            }
        }
        for c in &file.coded {
            if !file.sources.contains_key(&c.source) || c.answers.is_empty() {
                return Err(format!("vitals catalogue: {}: a coded kind needs answers and a source", c.kind));
            }
        }
        for p in &file.panels {
            if p.components.iter().any(|c| !file.kinds.iter().any(|k| &k.kind == c)) {
                return Err(format!("vitals catalogue: panel {} names an unknown kind", p.kind));
            }
        }
        Ok(Catalog { version: file.version, kinds: file.kinds, panels: file.panels, coded: file.coded })
    }

    /// A single kind.
    pub fn kind(&self, kind: &str) -> Option<&KindDef> {
        self.kinds.iter().find(|k| k.kind == kind)
    }

    /// A panel.
    pub fn panel(&self, kind: &str) -> Option<&PanelDef> {
        self.panels.iter().find(|p| p.kind == kind)
    }

    /// A coded kind.
    pub fn coded(&self, kind: &str) -> Option<&CodedDef> {
        self.coded.iter().find(|c| c.kind == kind)
    }

    /// The kinds a reading may have (single kinds that are not only panel parts, panels, and
    /// coded kinds).
    pub fn reading_kinds(&self) -> Vec<&str> {
        let parts: Vec<&str> = self.panels.iter().flat_map(|p| p.components.iter().map(String::as_str)).collect();
        self.kinds
            .iter()
            .map(|k| k.kind.as_str())
            .filter(|k| !parts.contains(k))
            .chain(self.panels.iter().map(|p| p.kind.as_str()))
            .chain(self.coded.iter().map(|c| c.kind.as_str()))
            .collect()
    }

    /// The code of a reading kind's Observation: `(system, code)` (LOINC but for a coded kind
    /// LOINC has no code for).
    pub fn code_of(&self, kind: &str) -> Option<(&str, &str)> {
        self.panel(kind)
            .map(|p| (LOINC, p.loinc.as_str()))
            .or_else(|| self.kind(kind).map(|k| (LOINC, k.loinc.as_str())))
            .or_else(|| self.coded(kind).map(|c| (c.system.as_str(), c.code.as_str())))
    }

    /// One value of `def` in `unit`, converted and checked.
    fn value(def: &KindDef, value: Option<f64>, unit: Option<&str>) -> Result<(f64, bool), VitalError> {
        let v = value.ok_or_else(|| refuse("invalid_value", format!("{}: a value is required", def.kind)))?;
        if !v.is_finite() {
            return Err(refuse("invalid_value", format!("{}: the value is not a number", def.kind)));
        }
        let unit = unit.unwrap_or(&def.unit);
        let conv = def.units.iter().find(|u| u.unit == unit).ok_or_else(|| {
            let known: Vec<&str> = def.units.iter().map(|u| u.unit.as_str()).collect();
            refuse("unknown_unit", format!("{}: unit `{unit}` is not one of {}", def.kind, known.join(", ")))
        })?;
        let canonical =
            if conv.factor == 1.0 && conv.offset == 0.0 { v } else { round2(v * conv.factor + conv.offset) };
        let (lo, hi) = def.possible;
        if !(lo..=hi).contains(&canonical) {
            return Err(refuse(
                "impossible_value",
                format!("{}: the value is outside what a living person can have ({lo}–{hi} {})", def.kind, def.unit),
            ));
        }
        let (pl, ph) = def.plausible;
        Ok((canonical, !(pl..=ph).contains(&canonical)))
    }

    /// Parses, converts and checks one reading.
    pub fn parse(&self, r: &ReadingIn) -> Result<Reading, VitalError> {
        let effective = DateTime::parse_from_rfc3339(&r.effective)
            .map_err(|_| refuse("invalid_time", "effective must be an RFC 3339 date-time with an offset"))?
            .with_timezone(&Utc);
        if let Some(id) = &r.reading_id
            && !text_ok(id, 128)
        {
            return Err(refuse("invalid_value", "reading_id must be 1–128 printable characters"));
        }
        let unit = r.unit.as_deref();
        if let Some(c) = self.coded(&r.kind) {
            if r.value.is_some() || r.systolic.is_some() || r.diastolic.is_some() || r.unit.is_some() {
                return Err(refuse("invalid_value", format!("{}: send `code`, not a value", r.kind)));
            }
            let answers: Vec<&str> = c.answers.iter().map(|a| a.value.as_str()).collect();
            let given = r.code.as_deref().unwrap_or_default();
            let Some(a) = c.answers.iter().find(|a| a.value == given) else {
                return Err(refuse("invalid_value", format!("{}: `code` is one of {}", r.kind, answers.join(", "))));
            };
            return Ok(Reading {
                kind: r.kind.clone(),
                values: Vec::new(),
                coded: Some(a.value.clone()),
                effective,
                implausible: false,
                reading_id: r.reading_id.clone(),
            });
        }
        if r.code.is_some() {
            return Err(refuse("invalid_value", format!("{}: `code` is only for coded kinds", r.kind)));
        }
        let (values, implausible) = if let Some(panel) = self.panel(&r.kind) {
            if r.value.is_some() {
                return Err(refuse("invalid_value", format!("{}: send systolic and diastolic, not value", r.kind)));
            }
            let mut values = Vec::new();
            let mut implausible = false;
            for (component, given) in panel.components.iter().zip([r.systolic, r.diastolic]) {
                let def = self.kind(component).ok_or_else(|| refuse("unknown_kind", component.clone()))?;
                let (v, flag) = Catalog::value(def, given, unit)?;
                implausible |= flag;
                values.push((component.clone(), v));
            }
            if let [(_, sys), (_, dia)] = values.as_slice()
                && dia >= sys
            {
                return Err(refuse("impossible_value", "blood_pressure: diastolic must be below systolic"));
            }
            (values, implausible)
        } else if let Some(def) = self.kind(&r.kind).filter(|_| self.reading_kinds().contains(&r.kind.as_str())) {
            if r.systolic.is_some() || r.diastolic.is_some() {
                return Err(refuse("invalid_value", format!("{}: systolic/diastolic are for blood_pressure", r.kind)));
            }
            let (v, flag) = Catalog::value(def, r.value, unit)?;
            (vec![(def.kind.clone(), v)], flag)
        } else {
            return Err(refuse("unknown_kind", format!("unknown kind; one of {}", self.reading_kinds().join(", "))));
        };
        Ok(Reading {
            kind: r.kind.clone(),
            values,
            coded: None,
            effective,
            implausible,
            reading_id: r.reading_id.clone(),
        })
    }

    /// The identity of a reading of `patient`: the device's own reading id when it gave one,
    /// else the hash of what makes two readings the same (kind, time, values, device).
    pub fn identity(&self, patient: &str, reading: &Reading, device: Option<&DeviceIn>) -> String {
        let mut h = Sha256::new();
        h.update(patient.as_bytes());
        h.update([0]);
        match &reading.reading_id {
            Some(id) => {
                h.update(b"id\0");
                h.update(id.as_bytes());
            }
            None => {
                h.update(reading.kind.as_bytes());
                h.update([0]);
                h.update(reading.effective.timestamp_millis().to_be_bytes());
                for (k, v) in &reading.values {
                    h.update(k.as_bytes());
                    h.update(v.to_bits().to_be_bytes());
                }
                if let Some(c) = &reading.coded {
                    h.update(b"code\0");
                    h.update(c.as_bytes());
                }
            }
        }
        h.update([0]);
        if let Some(d) = device {
            for part in [&d.manufacturer, &d.model, &d.serial, &d.source_app] {
                h.update(part.as_deref().unwrap_or("").as_bytes());
                h.update([0]);
            }
        }
        data_encoding::HEXLOWER.encode(&h.finalize())
    }

    /// The Observation id of a reading whose identity is `identity`: the identity itself when
    /// the device named the reading (its id names one reading whatever time is sent with it),
    /// else the reading's time in milliseconds as 12 hex digits, `-`, and the first 40 hex
    /// digits of the identity. Both are deterministic, so a re-sent reading lands on the same
    /// id; the time-ordered form makes the store's id indexes grow at their end, as device
    /// streams arrive in time order, instead of at a random page per reading (which made
    /// ingest slow down as the store grew: 0.8 s per 1,000 readings at 20,000 stored, 3.9 s
    /// at 100,000).
    pub fn reading_id(reading: &Reading, identity: &str) -> String {
        if reading.reading_id.is_some() {
            return identity.chars().take(64).collect();
        }
        let ms = reading.effective.timestamp_millis().max(0);
        format!("{ms:012x}-{}", identity.get(..40).unwrap_or(identity))
    }

    fn coding(&self, code: &str, display: &str) -> Value {
        json!({"system": LOINC, "code": code, "display": display})
    }

    fn quantity(def: &KindDef, v: f64) -> Value {
        json!({"value": v, "unit": def.unit, "system": UCUM, "code": def.unit})
    }

    /// The FHIR `Observation` of a reading (vital-signs category where the profile has the code).
    pub fn observation(
        &self,
        patient: &str,
        reading: &Reading,
        device: Option<&DeviceIn>,
        performer: Option<&str>,
    ) -> Result<Value, VitalError> {
        let unknown = || refuse("unknown_kind", reading.kind.clone());
        let (category, coding, display) = if let Some(c) = self.coded(&reading.kind) {
            let category = if c.kind == "supplemental_oxygen" { "therapy" } else { "exam" };
            (category, vec![json!({"system": c.system, "code": c.code, "display": c.display})], c.display.clone())
        } else if let Some(p) = self.panel(&reading.kind) {
            ("vital-signs", vec![self.coding(&p.loinc, &p.display)], p.display.clone())
        } else {
            let def = self.kind(&reading.kind).ok_or_else(unknown)?;
            let mut coding = vec![self.coding(&def.loinc, &def.display)];
            coding.extend(def.also.iter().map(|c| json!({"system": LOINC, "code": c})));
            let category = if def.vital_sign {
                "vital-signs"
            } else if def.kind == "blood_glucose" {
                "laboratory"
            } else {
                "activity"
            };
            (category, coding, def.display.clone())
        };
        let mut obs = json!({
            "resourceType": "Observation",
            "status": "final",
            "category": [{"coding": [{
                "system": "http://terminology.hl7.org/CodeSystem/observation-category",
                "code": category,
            }]}],
            "code": {"coding": coding, "text": display},
            "subject": {"reference": format!("Patient/{patient}")},
            "effectiveDateTime": instant(reading.effective),
        });
        if let (Some(c), Some(given)) = (self.coded(&reading.kind), &reading.coded) {
            let a = c.answers.iter().find(|a| &a.value == given).ok_or_else(unknown)?;
            set(
                &mut obs,
                "valueCodeableConcept",
                json!({"coding": [{"system": a.system, "code": a.code, "display": a.display}], "text": a.value}),
            );
        } else if self.panel(&reading.kind).is_some() {
            let mut components = Vec::new();
            for (k, v) in &reading.values {
                let def = self.kind(k).ok_or_else(unknown)?;
                components.push(json!({
                    "code": {"coding": [self.coding(&def.loinc, &def.display)]},
                    "valueQuantity": Catalog::quantity(def, *v),
                }));
            }
            set(&mut obs, "component", Value::Array(components));
        } else if let Some((k, v)) = reading.values.first() {
            let def = self.kind(k).ok_or_else(unknown)?;
            set(&mut obs, "valueQuantity", Catalog::quantity(def, *v));
        }
        if reading.implausible {
            set(
                &mut obs,
                "meta",
                json!({"tag": [{"system": FLAG_SYSTEM, "code": "implausible",
                "display": "Outside the plausible range: check the device or measure again"}]}),
            );
        }
        if let Some(p) = performer {
            set(&mut obs, "performer", json!([{"reference": p}]));
        }
        if let Some(d) = device {
            set(&mut obs, "device", json!({"reference": format!("Device/{}", device_id(patient, d))}));
        }
        Ok(obs)
    }
}

/// The identifier system of a patient's device (the hash of what identifies it).
pub const DEVICE_SYSTEM: &str = "urn:hearth:selfcare:device";

/// The id of the `Device` resource of a patient's physical device: the hash of the patient and
/// what identifies the device (manufacturer, model, serial, sending app), so every batch from
/// it names the same resource.
pub fn device_id(patient: &str, d: &DeviceIn) -> String {
    let mut h = Sha256::new();
    h.update(patient.as_bytes());
    for part in [&d.manufacturer, &d.model, &d.serial, &d.source_app] {
        h.update([0]);
        h.update(part.as_deref().unwrap_or("").as_bytes());
    }
    let hex = data_encoding::HEXLOWER.encode(&h.finalize());
    format!("dev-{}", hex.chars().take(60).collect::<String>())
}

/// The `Device` resource of a patient's physical device (see [`device_id`]).
pub fn device_resource(patient: &str, d: &DeviceIn) -> Value {
    let id = device_id(patient, d);
    let mut dev = json!({
        "resourceType": "Device",
        "identifier": [{"system": DEVICE_SYSTEM, "value": id}],
        "status": "active",
        "patient": {"reference": format!("Patient/{patient}")},
    });
    let mut names = Vec::new();
    if let Some(m) = &d.model {
        names.push(json!({"name": m, "type": "model-name"}));
    }
    if let Some(a) = &d.source_app {
        names.push(json!({"name": a, "type": "user-friendly-name"}));
    }
    if !names.is_empty() {
        set(&mut dev, "deviceName", Value::Array(names));
    }
    if let Some(m) = &d.manufacturer {
        set(&mut dev, "manufacturer", json!(m));
    }
    if let Some(s) = &d.serial {
        set(&mut dev, "serialNumber", json!(s));
    }
    dev
}

/// The `Provenance` of a device batch: the Observations it created, recorded `now`, by the
/// device and the account that sent it.
pub fn provenance(observations: &[String], device: &str, author: Option<&str>, now: DateTime<Utc>) -> Value {
    let mut agents = vec![json!({
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "device", "display": "Device"}]},
        "who": {"reference": format!("Device/{device}")},
    })];
    if let Some(a) = author {
        agents.push(json!({
            "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/provenance-participant-type", "code": "author", "display": "Author"}]},
            "who": {"reference": a},
        }));
    }
    json!({
        "resourceType": "Provenance",
        "target": observations.iter().map(|o| json!({"reference": format!("Observation/{o}")})).collect::<Vec<_>>(),
        "recorded": instant(now),
        "activity": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-DataOperation", "code": "CREATE", "display": "create"}],
                     "text": "readings sent by a device"},
        "agent": agents,
    })
}

impl DeviceIn {
    /// Every given field is printable text of at most 200 bytes.
    pub fn check(&self) -> Result<(), VitalError> {
        for v in [&self.manufacturer, &self.model, &self.serial, &self.source_app].into_iter().flatten() {
            if !text_ok(v, 200) {
                return Err(refuse("invalid_value", "device fields must be 1–200 printable characters"));
            }
        }
        Ok(())
    }
}

/// The width of a history bucket.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Resolution {
    /// Every reading as recorded.
    Raw,
    Minute,
    Hour,
    Day,
}

/// One bucket of an aggregated history.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
pub struct Bucket {
    /// The start of the bucket (UTC, RFC 3339); for `raw`, the reading's time.
    pub start: String,
    pub min: f64,
    pub mean: f64,
    pub max: f64,
    /// How many readings it holds.
    pub count: u64,
}

/// Sets `key` on a JSON object (the values built here are always objects).
fn set(target: &mut Value, key: &str, value: Value) {
    if let Some(o) = target.as_object_mut() {
        o.insert(key.to_owned(), value);
    }
}

/// An instant as the API writes it.
pub fn instant(t: DateTime<Utc>) -> String {
    t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true)
}

impl Resolution {
    /// The name the API and the bucket table use.
    pub fn name(self) -> &'static str {
        match self {
            Resolution::Raw => "raw",
            Resolution::Minute => "minute",
            Resolution::Hour => "hour",
            Resolution::Day => "day",
        }
    }

    fn width(self) -> Option<TimeDelta> {
        match self {
            Resolution::Raw => None,
            Resolution::Minute => Some(TimeDelta::minutes(1)),
            Resolution::Hour => Some(TimeDelta::hours(1)),
            Resolution::Day => Some(TimeDelta::days(1)),
        }
    }
}

/// Values to add to one stored aggregate bucket.
#[derive(Debug, Clone, PartialEq)]
pub struct Rollup {
    pub kind: String,
    pub resolution: Resolution,
    pub start: DateTime<Utc>,
    pub min: f64,
    pub max: f64,
    pub sum: f64,
    pub count: u64,
}

/// The per-minute, per-hour and per-day buckets `(kind, time, value)` points add to, one entry
/// per bucket touched.
pub fn rollups(points: &[(String, DateTime<Utc>, f64)]) -> Vec<Rollup> {
    let mut out: BTreeMap<(String, &'static str, DateTime<Utc>), Rollup> = BTreeMap::new();
    for res in [Resolution::Minute, Resolution::Hour, Resolution::Day] {
        let Some(w) = res.width() else { continue };
        for (kind, t, v) in points {
            let start = t.duration_trunc(w).unwrap_or(*t);
            let e = out.entry((kind.clone(), res.name(), start)).or_insert_with(|| Rollup {
                kind: kind.clone(),
                resolution: res,
                start,
                min: f64::INFINITY,
                max: f64::NEG_INFINITY,
                sum: 0.0,
                count: 0,
            });
            e.min = e.min.min(*v);
            e.max = e.max.max(*v);
            e.sum += *v;
            e.count += 1;
        }
    }
    out.into_values().collect()
}

/// Aggregates `(time, value)` points into buckets of `resolution` (UTC-aligned), in time order.
/// `Raw` gives one bucket per point.
pub fn aggregate(points: &[(DateTime<Utc>, f64)], resolution: Resolution) -> Vec<Bucket> {
    let width = match resolution {
        Resolution::Raw => None,
        Resolution::Minute => Some(TimeDelta::minutes(1)),
        Resolution::Hour => Some(TimeDelta::hours(1)),
        Resolution::Day => Some(TimeDelta::days(1)),
    };
    let mut buckets: BTreeMap<DateTime<Utc>, (f64, f64, f64, u64)> = BTreeMap::new();
    if width.is_none() {
        let mut sorted = points.to_vec();
        sorted.sort_by_key(|p| p.0);
        return sorted
            .into_iter()
            .map(|(t, v)| Bucket { start: instant(t), min: v, mean: v, max: v, count: 1 })
            .collect();
    }
    for (t, v) in points {
        let start = width.and_then(|w| t.duration_trunc(w).ok()).unwrap_or(*t);
        let e = buckets.entry(start).or_insert((f64::INFINITY, 0.0, f64::NEG_INFINITY, 0));
        e.0 = e.0.min(*v);
        e.1 += *v;
        e.2 = e.2.max(*v);
        e.3 += 1;
    }
    buckets
        .into_iter()
        .map(|(start, (min, sum, max, count))| Bucket {
            start: instant(start),
            min,
            mean: sum / count as f64,
            max,
            count,
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn reading(kind: &str, value: f64, unit: Option<&str>) -> ReadingIn {
        ReadingIn {
            kind: kind.into(),
            value: Some(value),
            systolic: None,
            diastolic: None,
            unit: unit.map(Into::into),
            effective: "2026-12-07T08:00:00+05:30".into(),
            reading_id: None,
            code: None,
        }
    }

    #[test]
    fn units_are_converted_on_input() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.parse(&reading("body_temperature", 98.6, Some("[degF]"))).unwrap().values[0].1, 37.0);
        assert_eq!(c.parse(&reading("blood_glucose", 5.5, Some("mmol/L"))).unwrap().values[0].1, 99.08);
        assert_eq!(c.parse(&reading("blood_glucose", 99.0, None)).unwrap().values[0].1, 99.0);
        assert_eq!(c.parse(&reading("body_weight", 154.0, Some("[lb_av]"))).unwrap().values[0].1, 69.85);
        assert_eq!(c.parse(&reading("body_height", 1.72, Some("m"))).unwrap().values[0].1, 172.0);
        assert_eq!(c.parse(&reading("body_weight", 70.0, Some("stone"))).unwrap_err().code, "unknown_unit");
    }

    #[test]
    fn impossible_values_are_refused_and_implausible_ones_flagged() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.parse(&reading("spo2", 101.0, None)).unwrap_err().code, "impossible_value");
        assert_eq!(c.parse(&reading("heart_rate", 0.0, None)).unwrap_err().code, "impossible_value");
        assert_eq!(c.parse(&reading("body_temperature", 212.0, Some("[degF]"))).unwrap_err().code, "impossible_value");
        assert_eq!(c.parse(&reading("heart_rate", f64::NAN, None)).unwrap_err().code, "invalid_value");
        assert!(c.parse(&reading("heart_rate", 220.0, None)).unwrap().implausible);
        assert!(!c.parse(&reading("heart_rate", 72.0, None)).unwrap().implausible);
        let mut bp = reading("blood_pressure", 0.0, None);
        bp.value = None;
        bp.systolic = Some(80.0);
        bp.diastolic = Some(90.0);
        assert_eq!(c.parse(&bp).unwrap_err().code, "impossible_value");
        bp.systolic = Some(128.0);
        bp.diastolic = Some(84.0);
        let r = c.parse(&bp).unwrap();
        assert_eq!(r.values, vec![("systolic_bp".into(), 128.0), ("diastolic_bp".into(), 84.0)]);
        assert_eq!(c.parse(&reading("systolic_bp", 120.0, None)).unwrap_err().code, "unknown_kind");
        assert_eq!(c.parse(&reading("mood", 3.0, None)).unwrap_err().code, "unknown_kind");
    }

    #[test]
    fn the_same_reading_has_the_same_identity() {
        let c = Catalog::builtin().unwrap();
        let a = c.parse(&reading("heart_rate", 72.0, None)).unwrap();
        let mut other = reading("heart_rate", 72.0, None);
        other.effective = "2026-12-07T02:30:00Z".into();
        let b = c.parse(&other).unwrap();
        assert_eq!(c.identity("p1", &a, None), c.identity("p1", &b, None), "same instant, other offset");
        assert_ne!(c.identity("p1", &a, None), c.identity("p2", &a, None));
        let c2 = c.parse(&reading("heart_rate", 73.0, None)).unwrap();
        assert_ne!(c.identity("p1", &a, None), c.identity("p1", &c2, None));
    }

    #[test]
    fn the_catalogue_agrees_with_devicecodex() {
        let c = Catalog::builtin().unwrap();
        let dc: Value = serde_json::from_str(include_str!("../data/devicecodex-vitals-loinc.json")).unwrap();
        let ranges = &dc["tables"]["devicecodex.validation.LOINC_VALID_RANGES"];
        for k in &c.kinds {
            let r = &ranges[&k.loinc];
            assert_eq!(
                (r[0].as_f64().unwrap(), r[1].as_f64().unwrap()),
                k.plausible,
                "{}: plausible range differs from devicecodex",
                k.kind
            );
        }
    }

    #[test]
    fn consciousness_and_oxygen_are_coded_readings() {
        let c = Catalog::builtin().unwrap();
        let mut r = reading("consciousness", 0.0, None);
        r.value = None;
        r.code = Some("V".into());
        let parsed = c.parse(&r).unwrap();
        assert_eq!(parsed.coded.as_deref(), Some("V"));
        let obs = c.observation("p1", &parsed, None, None).unwrap();
        assert_eq!(obs["code"]["coding"][0]["code"], "67775-7");
        assert_eq!(obs["valueCodeableConcept"]["coding"][0]["code"], "300202002");
        r.code = Some("X".into());
        assert_eq!(c.parse(&r).unwrap_err().code, "invalid_value");
        let mut o = reading("supplemental_oxygen", 0.0, None);
        o.value = None;
        o.code = Some("oxygen".into());
        let parsed = c.parse(&o).unwrap();
        let obs = c.observation("p1", &parsed, None, None).unwrap();
        assert_eq!(obs["valueCodeableConcept"]["coding"][0]["code"], "371825009");
        o.value = Some(1.0);
        assert_eq!(c.parse(&o).unwrap_err().code, "invalid_value");
        let mut hr = reading("heart_rate", 70.0, None);
        hr.code = Some("A".into());
        assert_eq!(c.parse(&hr).unwrap_err().code, "invalid_value");
        let air = c.parse(&{
            let mut a = o.clone();
            a.value = None;
            a.code = Some("air".into());
            a
        });
        assert_ne!(c.identity("p1", &air.unwrap(), None), c.identity("p1", &parsed, None));
    }

    #[test]
    fn rollups_agree_with_the_aggregation() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let pts = vec![
            ("heart_rate".to_string(), t("2026-12-07T08:10:00Z"), 60.0),
            ("heart_rate".to_string(), t("2026-12-07T08:10:30Z"), 80.0),
            ("heart_rate".to_string(), t("2026-12-07T09:00:00Z"), 70.0),
        ];
        let r = rollups(&pts);
        let of = |res: Resolution| r.iter().filter(|x| x.resolution == res).count();
        assert_eq!((of(Resolution::Minute), of(Resolution::Hour), of(Resolution::Day)), (2, 2, 1));
        let day = r.iter().find(|x| x.resolution == Resolution::Day).unwrap();
        assert_eq!((day.min, day.max, day.sum, day.count), (60.0, 80.0, 210.0, 3));
        let plain: Vec<(DateTime<Utc>, f64)> = pts.iter().map(|p| (p.1, p.2)).collect();
        let b = aggregate(&plain, Resolution::Hour);
        let hours: Vec<&Rollup> = r.iter().filter(|x| x.resolution == Resolution::Hour).collect();
        assert_eq!(b[0].mean, hours[0].sum / hours[0].count as f64);
    }

    #[test]
    fn histories_aggregate_per_hour() {
        let t = |s: &str| DateTime::parse_from_rfc3339(s).unwrap().with_timezone(&Utc);
        let pts = vec![
            (t("2026-12-07T08:10:00Z"), 60.0),
            (t("2026-12-07T08:50:00Z"), 80.0),
            (t("2026-12-07T09:00:00Z"), 70.0),
        ];
        let b = aggregate(&pts, Resolution::Hour);
        assert_eq!(b.len(), 2);
        assert_eq!((b[0].min, b[0].mean, b[0].max, b[0].count), (60.0, 70.0, 80.0, 2));
        assert_eq!(b[1].start, "2026-12-07T09:00:00.000Z");
        assert_eq!(aggregate(&pts, Resolution::Raw).len(), 3);
        assert_eq!(aggregate(&pts, Resolution::Day).len(), 1);
    }
}
