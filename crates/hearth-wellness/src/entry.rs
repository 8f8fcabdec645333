//! A log entry (pure): what a request gives, checked against the catalogue's choices and
//! limits, turned into a FHIR `Observation`, and read back from one. Every refusal has a
//! stable code.

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Map, Value, json};

use crate::catalog::{Catalog, Code, MOOD_TAG_SYSTEM, UCUM};

/// The kinds of log.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
#[schema(as = WellnessKind)]
pub enum Kind {
    Food,
    Water,
    Sleep,
    Exercise,
    Mood,
    Meditation,
}

impl Kind {
    pub const ALL: [Kind; 6] = [Kind::Food, Kind::Water, Kind::Sleep, Kind::Exercise, Kind::Mood, Kind::Meditation];

    pub fn as_str(self) -> &'static str {
        match self {
            Kind::Food => "food",
            Kind::Water => "water",
            Kind::Sleep => "sleep",
            Kind::Exercise => "exercise",
            Kind::Mood => "mood",
            Kind::Meditation => "meditation",
        }
    }

    pub fn parse(s: &str) -> Option<Kind> {
        Kind::ALL.into_iter().find(|k| k.as_str() == s)
    }

    /// The Observation category (R4 observation-category).
    fn category(self) -> &'static str {
        match self {
            Kind::Mood => "survey",
            _ => "activity",
        }
    }
}

/// A refusal: a stable code and a message.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Refusal {
    pub code: &'static str,
    pub message: String,
}

fn refuse(code: &'static str, message: impl Into<String>) -> Refusal {
    Refusal { code, message: message.into() }
}

/// One entry as a request gives it. Which fields a kind takes is listed per field; a field of
/// another kind is refused (`field_not_allowed`).
#[derive(Debug, Clone, Default, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
#[schema(example = json!({"volume_ml": 250, "effective": "2027-01-14T09:30:00+05:30"}))]
#[schema(as = WellnessEntryIn)]
pub struct EntryIn {
    /// The Patient id; default the caller's own record (a patient).
    #[serde(default)]
    pub patient: Option<String>,
    /// When (RFC 3339 with an offset); default now. Not for sleep, which has `start` and `end`.
    #[serde(default)]
    pub effective: Option<String>,
    /// Sleep: when it began (RFC 3339).
    #[serde(default)]
    pub start: Option<String>,
    /// Sleep: when it ended (RFC 3339), after `start`, at most 24 hours later. A night counts
    /// for the day it ends on.
    #[serde(default)]
    pub end: Option<String>,
    /// Any kind: a note (1–500 characters, no control characters).
    #[serde(default)]
    pub note: Option<String>,
    /// Food: what was eaten (1–500 characters).
    #[serde(default)]
    pub description: Option<String>,
    /// Food: breakfast, lunch, dinner or snack.
    #[serde(default)]
    pub meal: Option<String>,
    /// Food: energy eaten; exercise: energy burned (kcal).
    #[serde(default)]
    pub energy_kcal: Option<f64>,
    /// Food (g).
    #[serde(default)]
    pub carbohydrate_g: Option<f64>,
    /// Food (g).
    #[serde(default)]
    pub protein_g: Option<f64>,
    /// Food (g).
    #[serde(default)]
    pub fat_g: Option<f64>,
    /// Food (g).
    #[serde(default)]
    pub fiber_g: Option<f64>,
    /// Water: the amount drunk (mL, 1–5000).
    #[serde(default)]
    pub volume_ml: Option<f64>,
    /// Sleep: time asleep (min); default the sum of the stages, else `end - start` less `awake_minutes`.
    #[serde(default)]
    pub asleep_minutes: Option<f64>,
    /// Sleep stage (min).
    #[serde(default)]
    pub deep_minutes: Option<f64>,
    /// Sleep stage (min).
    #[serde(default)]
    pub light_minutes: Option<f64>,
    /// Sleep stage (min).
    #[serde(default)]
    pub rem_minutes: Option<f64>,
    /// Sleep: time awake in bed (min).
    #[serde(default)]
    pub awake_minutes: Option<f64>,
    /// Exercise: walking, running, cycling, swimming, yoga, strength, dance, sports or other.
    #[serde(default)]
    pub activity: Option<String>,
    /// Exercise and meditation (min, 1–1440; required).
    #[serde(default)]
    pub duration_minutes: Option<f64>,
    /// Exercise (m).
    #[serde(default)]
    pub distance_m: Option<f64>,
    /// Mood: 1 (very low) to 5 (very good); required.
    #[serde(default)]
    pub score: Option<i64>,
    /// Mood: up to 10 tags of `a-z`, digits and `-` (1–30 characters each), e.g. `calm`, `tired`.
    #[serde(default)]
    pub tags: Option<Vec<String>>,
    /// Meditation: mindfulness, breathing, body-scan, guided, mantra, yoga-nidra or other.
    #[serde(default)]
    pub technique: Option<String>,
}

/// One entry as answered (fields of its kind only).
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = WellnessEntry)]
pub struct EntryOut {
    /// The Observation id.
    pub id: String,
    pub kind: Option<Kind>,
    /// RFC 3339 (UTC); for sleep, its end.
    pub effective: String,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub start: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub end: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub note: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub meal: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub energy_kcal: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub carbohydrate_g: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub protein_g: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fat_g: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub fiber_g: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub volume_ml: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub asleep_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub deep_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub light_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub rem_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub awake_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub activity: Option<String>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub duration_minutes: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub distance_m: Option<f64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub score: Option<i64>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub tags: Option<Vec<String>>,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub technique: Option<String>,
}

/// An instant as Hearth writes it (UTC, milliseconds).
pub fn instant(t: DateTime<Utc>) -> String {
    t.format("%Y-%m-%dT%H:%M:%S%.3fZ").to_string()
}

fn time(name: &str, value: &str) -> Result<DateTime<Utc>, Refusal> {
    DateTime::parse_from_rfc3339(value).map(|t| t.with_timezone(&Utc)).map_err(|_| {
        refuse("invalid_time", format!("`{name}` must be RFC 3339 with an offset, e.g. 2027-01-14T09:30:00+05:30"))
    })
}

/// A checked entry: the resolved times and the request's values.
#[derive(Debug, Clone)]
pub struct Checked {
    pub kind: Kind,
    pub effective: DateTime<Utc>,
    pub start: Option<DateTime<Utc>>,
    pub values: EntryIn,
}

fn fields_given(e: &EntryIn) -> Vec<(&'static str, bool)> {
    vec![
        ("effective", e.effective.is_some()),
        ("start", e.start.is_some()),
        ("end", e.end.is_some()),
        ("description", e.description.is_some()),
        ("meal", e.meal.is_some()),
        ("energy_kcal", e.energy_kcal.is_some()),
        ("carbohydrate_g", e.carbohydrate_g.is_some()),
        ("protein_g", e.protein_g.is_some()),
        ("fat_g", e.fat_g.is_some()),
        ("fiber_g", e.fiber_g.is_some()),
        ("volume_ml", e.volume_ml.is_some()),
        ("asleep_minutes", e.asleep_minutes.is_some()),
        ("deep_minutes", e.deep_minutes.is_some()),
        ("light_minutes", e.light_minutes.is_some()),
        ("rem_minutes", e.rem_minutes.is_some()),
        ("awake_minutes", e.awake_minutes.is_some()),
        ("activity", e.activity.is_some()),
        ("duration_minutes", e.duration_minutes.is_some()),
        ("distance_m", e.distance_m.is_some()),
        ("score", e.score.is_some()),
        ("tags", e.tags.is_some()),
        ("technique", e.technique.is_some()),
    ]
}

fn allowed(kind: Kind) -> &'static [&'static str] {
    match kind {
        Kind::Food => {
            &["effective", "description", "meal", "energy_kcal", "carbohydrate_g", "protein_g", "fat_g", "fiber_g"]
        }
        Kind::Water => &["effective", "volume_ml"],
        Kind::Sleep => {
            &["start", "end", "asleep_minutes", "deep_minutes", "light_minutes", "rem_minutes", "awake_minutes"]
        }
        Kind::Exercise => &["effective", "activity", "duration_minutes", "energy_kcal", "distance_m"],
        Kind::Mood => &["effective", "score", "tags"],
        Kind::Meditation => &["effective", "duration_minutes", "technique"],
    }
}

fn in_range(name: &str, v: Option<f64>, [low, high]: [f64; 2], unit: &str) -> Result<(), Refusal> {
    match v {
        Some(x) if !x.is_finite() || x < low || x > high => {
            Err(refuse("invalid_value", format!("`{name}` must be {low} to {high} {unit}")))
        }
        _ => Ok(()),
    }
}

fn text_ok(name: &str, v: Option<&str>, max: f64) -> Result<(), Refusal> {
    let max = usize::try_from(max as i64).unwrap_or(500);
    match v {
        Some(s) if !hearth_workflow::fhir::is_display_text(s, max) => Err(refuse(
            "invalid_value",
            format!("`{name}` must be 1 to {max} characters of text without control characters"),
        )),
        _ => Ok(()),
    }
}

fn choice(cat: &Catalog, name: &str, field: &str, v: Option<&str>) -> Result<(), Refusal> {
    match v {
        Some(s) if !cat.choices(name).iter().any(|c| c == s) => {
            Err(refuse("invalid_value", format!("`{field}` is one of {}", cat.choices(name).join(", "))))
        }
        _ => Ok(()),
    }
}

/// Checks `e` as an entry of `kind` at `now` (nothing is in the future by more than 5 minutes).
pub fn check(cat: &Catalog, kind: Kind, e: &EntryIn, now: DateTime<Utc>) -> Result<Checked, Refusal> {
    let ok = allowed(kind);
    if let Some((name, _)) = fields_given(e).into_iter().find(|(n, given)| *given && !ok.contains(n)) {
        return Err(refuse("field_not_allowed", format!("`{name}` is not a field of a {} entry", kind.as_str())));
    }
    let l = &cat.limits;
    text_ok("note", e.note.as_deref(), l.text_chars[1])?;
    let latest = now + TimeDelta::minutes(5);
    let (effective, start) = if kind == Kind::Sleep {
        let (Some(s), Some(en)) = (e.start.as_deref(), e.end.as_deref()) else {
            return Err(refuse("missing_field", "a sleep entry needs `start` and `end`"));
        };
        let (s, en) = (time("start", s)?, time("end", en)?);
        if en <= s || en - s > TimeDelta::hours(24) {
            return Err(refuse("invalid_time", "`end` must be after `start`, at most 24 hours later"));
        }
        (en, Some(s))
    } else {
        (e.effective.as_deref().map(|v| time("effective", v)).transpose()?.unwrap_or(now), None)
    };
    if effective > latest {
        return Err(refuse("invalid_time", "an entry cannot be in the future"));
    }
    match kind {
        Kind::Food => {
            text_ok("description", e.description.as_deref(), l.text_chars[1])?;
            choice(cat, "meal", "meal", e.meal.as_deref())?;
            in_range("energy_kcal", e.energy_kcal, l.energy_kcal, "kcal")?;
            for (n, v) in [
                ("carbohydrate_g", e.carbohydrate_g),
                ("protein_g", e.protein_g),
                ("fat_g", e.fat_g),
                ("fiber_g", e.fiber_g),
            ] {
                in_range(n, v, l.nutrient_g, "g")?;
            }
            if e.description.is_none() && e.energy_kcal.is_none() {
                return Err(refuse("missing_field", "a food entry needs `description` or `energy_kcal`"));
            }
        }
        Kind::Water => {
            if e.volume_ml.is_none() {
                return Err(refuse("missing_field", "a water entry needs `volume_ml`"));
            }
            in_range("volume_ml", e.volume_ml, l.volume_ml, "mL")?;
        }
        Kind::Sleep => {
            for (n, v) in [
                ("asleep_minutes", e.asleep_minutes),
                ("deep_minutes", e.deep_minutes),
                ("light_minutes", e.light_minutes),
                ("rem_minutes", e.rem_minutes),
                ("awake_minutes", e.awake_minutes),
            ] {
                in_range(n, v, l.sleep_stage_minutes, "min")?;
            }
            let span = start.map_or(0.0, |s| (effective - s).num_seconds() as f64 / 60.0);
            let asleep = asleep_of(e, span);
            if asleep + e.awake_minutes.unwrap_or(0.0) > span + 0.5 {
                return Err(refuse("invalid_value", "the sleep stages add up to more than `end - start`"));
            }
        }
        Kind::Exercise => {
            if e.duration_minutes.is_none() {
                return Err(refuse("missing_field", "an exercise entry needs `duration_minutes`"));
            }
            choice(cat, "activity", "activity", e.activity.as_deref())?;
            in_range("duration_minutes", e.duration_minutes, l.duration_minutes, "min")?;
            in_range("energy_kcal", e.energy_kcal, l.energy_kcal, "kcal")?;
            in_range("distance_m", e.distance_m, l.distance_m, "m")?;
        }
        Kind::Mood => {
            let Some(score) = e.score else { return Err(refuse("missing_field", "a mood entry needs `score`")) };
            in_range("score", Some(score as f64), l.score, "")?;
            let tags = e.tags.as_deref().unwrap_or_default();
            if tags.len() as f64 > l.tags[1] {
                return Err(refuse("invalid_value", format!("at most {} tags", l.tags[1])));
            }
            if let Some(t) = tags.iter().find(|t| {
                t.is_empty()
                    || t.len() > 30
                    || !t.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            }) {
                return Err(refuse("invalid_value", format!("tag `{t}`: 1 to 30 characters of a-z, 0-9 and `-`")));
            }
        }
        Kind::Meditation => {
            if e.duration_minutes.is_none() {
                return Err(refuse("missing_field", "a meditation entry needs `duration_minutes`"));
            }
            in_range("duration_minutes", e.duration_minutes, l.duration_minutes, "min")?;
            choice(cat, "meditation_kind", "technique", e.technique.as_deref())?;
        }
    }
    Ok(Checked { kind, effective, start, values: e.clone() })
}

/// Time asleep: as given, else the stages' sum, else the span less time awake.
fn asleep_of(e: &EntryIn, span: f64) -> f64 {
    if let Some(a) = e.asleep_minutes {
        return a;
    }
    let stages: Vec<f64> = [e.deep_minutes, e.light_minutes, e.rem_minutes].into_iter().flatten().collect();
    if stages.is_empty() { (span - e.awake_minutes.unwrap_or(0.0)).max(0.0) } else { stages.iter().sum() }
}

fn coding(c: &Code) -> Value {
    json!({"system": c.system, "code": c.code, "display": c.display})
}

/// A UCUM quantity; whole numbers are written as integers.
fn quantity(value: f64, unit: &str) -> Value {
    let v = if value.fract() == 0.0 && value.abs() < 1e15 { json!(value as i64) } else { json!(value) };
    json!({"value": v, "unit": unit, "system": UCUM, "code": unit})
}

fn qty_component(c: &Code, value: f64) -> Value {
    json!({"code": {"coding": [coding(c)]}, "valueQuantity": quantity(value, &c.unit)})
}

fn coded_component(c: &Code, system: &str, value: &str) -> Value {
    json!({"code": {"coding": [coding(c)]}, "valueCodeableConcept": {"coding": [{"system": system, "code": value}], "text": value}})
}

/// The code of a kind's Observation.
pub fn code_of(cat: &Catalog, kind: Kind) -> Result<&Code, String> {
    cat.code(kind.as_str())
}

/// The Observation of a checked entry.
pub fn observation(cat: &Catalog, c: &Checked, patient: &str, performer: Option<&str>) -> Result<Value, String> {
    let e = &c.values;
    let code = code_of(cat, c.kind)?;
    let mut obs = Map::new();
    obs.insert("resourceType".into(), json!("Observation"));
    obs.insert("status".into(), json!("final"));
    obs.insert(
        "category".into(),
        json!([{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": c.kind.category()}]}]),
    );
    let mut concept = Map::new();
    concept.insert("coding".into(), json!([coding(code)]));
    if let (Kind::Food, Some(d)) = (c.kind, &e.description) {
        concept.insert("text".into(), json!(d));
    }
    let concept = Value::Object(concept);
    obs.insert("code".into(), concept);
    obs.insert("subject".into(), json!({"reference": format!("Patient/{patient}")}));
    match c.start {
        Some(s) => {
            obs.insert("effectivePeriod".into(), json!({"start": instant(s), "end": instant(c.effective)}));
        }
        None => {
            obs.insert("effectiveDateTime".into(), json!(instant(c.effective)));
        }
    }
    if let Some(p) = performer {
        obs.insert("performer".into(), json!([{"reference": p}]));
    }
    let mut components = Vec::new();
    let values = |obs: &mut Map<String, Value>, v: Value| {
        obs.insert("valueQuantity".into(), v);
    };
    match c.kind {
        Kind::Food => {
            if let Some(k) = e.energy_kcal {
                values(&mut obs, quantity(k, &code.unit));
            }
            for (name, v) in
                [("carbohydrate", e.carbohydrate_g), ("protein", e.protein_g), ("fat", e.fat_g), ("fiber", e.fiber_g)]
            {
                if let Some(v) = v {
                    components.push(qty_component(cat.code(name)?, v));
                }
            }
            if let Some(m) = &e.meal {
                components.push(coded_component(cat.code("meal")?, crate::catalog::WELLNESS_SYSTEM, m));
            }
        }
        Kind::Water => values(&mut obs, quantity(e.volume_ml.unwrap_or(0.0), &code.unit)),
        Kind::Sleep => {
            let span = c.start.map_or(0.0, |s| (c.effective - s).num_seconds() as f64 / 60.0);
            values(&mut obs, quantity(asleep_of(e, span), &code.unit));
            for (name, v) in [
                ("deep_sleep", e.deep_minutes),
                ("light_sleep", e.light_minutes),
                ("rem_sleep", e.rem_minutes),
                ("awake", e.awake_minutes),
            ] {
                if let Some(v) = v {
                    components.push(qty_component(cat.code(name)?, v));
                }
            }
        }
        Kind::Exercise => {
            values(&mut obs, quantity(e.duration_minutes.unwrap_or(0.0), &code.unit));
            if let Some(v) = e.energy_kcal {
                components.push(qty_component(cat.code("active_energy")?, v));
            }
            if let Some(v) = e.distance_m {
                components.push(qty_component(cat.code("distance")?, v));
            }
            if let Some(a) = &e.activity {
                components.push(coded_component(cat.code("activity")?, crate::catalog::WELLNESS_SYSTEM, a));
            }
        }
        Kind::Mood => {
            obs.insert("valueInteger".into(), json!(e.score.unwrap_or(0)));
            for t in e.tags.as_deref().unwrap_or_default() {
                components.push(coded_component(cat.code("mood_tag")?, MOOD_TAG_SYSTEM, t));
            }
        }
        Kind::Meditation => {
            values(&mut obs, quantity(e.duration_minutes.unwrap_or(0.0), &code.unit));
            if let Some(t) = &e.technique {
                components.push(coded_component(cat.code("meditation_kind")?, crate::catalog::WELLNESS_SYSTEM, t));
            }
        }
    }
    if !components.is_empty() {
        obs.insert("component".into(), Value::Array(components));
    }
    if let Some(n) = &e.note {
        obs.insert("note".into(), json!([{"text": n}]));
    }
    Ok(Value::Object(obs))
}

fn has_code(concept: Option<&Value>, c: &Code) -> bool {
    concept.and_then(|v| v.get("coding")).and_then(Value::as_array).is_some_and(|cs| {
        cs.iter().any(|x| {
            x.get("system").and_then(Value::as_str) == Some(&c.system)
                && x.get("code").and_then(Value::as_str) == Some(&c.code)
        })
    })
}

fn component_of<'a>(body: &'a Value, c: &Code) -> impl Iterator<Item = &'a Value> {
    body.get("component")
        .and_then(Value::as_array)
        .map(|cs| cs.as_slice())
        .unwrap_or_default()
        .iter()
        .filter(move |x| has_code(x.get("code"), c))
}

fn number(v: Option<&Value>) -> Option<f64> {
    v.and_then(Value::as_f64)
}

fn comp_qty(cat: &Catalog, body: &Value, name: &str) -> Option<f64> {
    let c = cat.code(name).ok()?;
    component_of(body, c).find_map(|x| number(x.pointer("/valueQuantity/value")))
}

fn comp_codes(cat: &Catalog, body: &Value, name: &str) -> Vec<String> {
    let Ok(c) = cat.code(name) else { return Vec::new() };
    component_of(body, c)
        .filter_map(|x| x.pointer("/valueCodeableConcept/coding/0/code").and_then(Value::as_str).map(str::to_owned))
        .collect()
}

/// The kind of a stored Observation, by its code.
pub fn kind_of(cat: &Catalog, body: &Value) -> Option<Kind> {
    Kind::ALL.into_iter().find(|k| code_of(cat, *k).is_ok_and(|c| has_code(body.get("code"), c)))
}

/// A stored Observation read back as an entry (`None`: not a wellness log).
pub fn entry_of(cat: &Catalog, id: &str, body: &Value) -> Option<EntryOut> {
    let kind = kind_of(cat, body)?;
    let s = |p: &str| body.pointer(p).and_then(Value::as_str).map(str::to_owned);
    let value = number(body.pointer("/valueQuantity/value"));
    let mut out = EntryOut {
        id: id.to_owned(),
        kind: Some(kind),
        effective: s("/effectiveDateTime").or_else(|| s("/effectivePeriod/end"))?,
        note: s("/note/0/text"),
        ..EntryOut::default()
    };
    match kind {
        Kind::Food => {
            out.description = s("/code/text");
            out.meal = comp_codes(cat, body, "meal").into_iter().next();
            out.energy_kcal = value;
            out.carbohydrate_g = comp_qty(cat, body, "carbohydrate");
            out.protein_g = comp_qty(cat, body, "protein");
            out.fat_g = comp_qty(cat, body, "fat");
            out.fiber_g = comp_qty(cat, body, "fiber");
        }
        Kind::Water => out.volume_ml = value,
        Kind::Sleep => {
            out.start = s("/effectivePeriod/start");
            out.end = s("/effectivePeriod/end");
            out.asleep_minutes = value;
            out.deep_minutes = comp_qty(cat, body, "deep_sleep");
            out.light_minutes = comp_qty(cat, body, "light_sleep");
            out.rem_minutes = comp_qty(cat, body, "rem_sleep");
            out.awake_minutes = comp_qty(cat, body, "awake");
        }
        Kind::Exercise => {
            out.duration_minutes = value;
            out.energy_kcal = comp_qty(cat, body, "active_energy");
            out.distance_m = comp_qty(cat, body, "distance");
            out.activity = comp_codes(cat, body, "activity").into_iter().next();
        }
        Kind::Mood => {
            out.score = body.get("valueInteger").and_then(Value::as_i64);
            let tags = comp_codes(cat, body, "mood_tag");
            out.tags = Some(tags);
        }
        Kind::Meditation => {
            out.duration_minutes = value;
            out.technique = comp_codes(cat, body, "meditation_kind").into_iter().next();
        }
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::parse_from_rfc3339("2027-01-15T12:00:00Z").unwrap().with_timezone(&Utc)
    }

    fn entry(v: Value) -> EntryIn {
        serde_json::from_value(v).unwrap()
    }

    #[test]
    fn each_kind_round_trips_through_its_observation() {
        let cat = Catalog::builtin().unwrap();
        let cases = [
            (
                Kind::Food,
                json!({"effective": "2027-01-14T13:00:00+05:30", "description": "dal and rice", "meal": "lunch", "energy_kcal": 520, "carbohydrate_g": 80.5, "protein_g": 18, "fat_g": 12}),
            ),
            (Kind::Water, json!({"effective": "2027-01-14T09:00:00Z", "volume_ml": 250})),
            (
                Kind::Sleep,
                json!({"start": "2027-01-13T23:00:00+05:30", "end": "2027-01-14T06:30:00+05:30", "deep_minutes": 90, "light_minutes": 250, "rem_minutes": 80, "awake_minutes": 20}),
            ),
            (
                Kind::Exercise,
                json!({"effective": "2027-01-14T07:00:00Z", "activity": "walking", "duration_minutes": 30, "energy_kcal": 150, "distance_m": 2500}),
            ),
            (Kind::Mood, json!({"effective": "2027-01-14T20:00:00Z", "score": 4, "tags": ["calm", "rested"]})),
            (
                Kind::Meditation,
                json!({"effective": "2027-01-14T06:45:00Z", "duration_minutes": 15, "technique": "breathing"}),
            ),
        ];
        for (kind, v) in cases {
            let c = check(cat, kind, &entry(v.clone()), now()).unwrap();
            let obs = observation(cat, &c, "p1", Some("Patient/p1")).unwrap();
            let back = entry_of(cat, "x", &obs).unwrap();
            assert_eq!(back.kind, Some(kind));
            let out = serde_json::to_value(&back).unwrap();
            for (k, want) in v.as_object().unwrap() {
                if ["effective", "start", "end"].contains(&k.as_str()) {
                    continue;
                }
                assert_eq!(
                    out[k].as_f64().map(Value::from).unwrap_or(out[k].clone()),
                    want.as_f64().map(Value::from).unwrap_or(want.clone()),
                    "{kind:?} {k}"
                );
            }
        }
        let sleep = check(cat, Kind::Sleep, &entry(json!({"start": "2027-01-13T23:00:00+05:30", "end": "2027-01-14T06:30:00+05:30", "deep_minutes": 90, "light_minutes": 250, "rem_minutes": 80})), now()).unwrap();
        let obs = observation(cat, &sleep, "p1", None).unwrap();
        assert_eq!(obs["valueQuantity"]["value"], 420);
        assert_eq!(obs["effectivePeriod"]["end"], "2027-01-14T01:00:00.000Z");
    }

    #[test]
    fn bad_entries_are_refused_with_their_codes() {
        let cat = Catalog::builtin().unwrap();
        let code = |kind, v: Value| check(cat, kind, &entry(v), now()).unwrap_err().code;
        assert_eq!(code(Kind::Water, json!({})), "missing_field");
        assert_eq!(code(Kind::Water, json!({"volume_ml": 0})), "invalid_value");
        assert_eq!(code(Kind::Water, json!({"volume_ml": 100000})), "invalid_value");
        assert_eq!(code(Kind::Water, json!({"volume_ml": 200, "score": 3})), "field_not_allowed");
        assert_eq!(code(Kind::Water, json!({"volume_ml": 200, "effective": "yesterday"})), "invalid_time");
        assert_eq!(code(Kind::Water, json!({"volume_ml": 200, "effective": "2027-02-01T00:00:00Z"})), "invalid_time");
        assert_eq!(code(Kind::Sleep, json!({"start": "2027-01-14T06:00:00Z"})), "missing_field");
        assert_eq!(
            code(Kind::Sleep, json!({"start": "2027-01-14T06:00:00Z", "end": "2027-01-14T05:00:00Z"})),
            "invalid_time"
        );
        assert_eq!(
            code(
                Kind::Sleep,
                json!({"start": "2027-01-14T00:00:00Z", "end": "2027-01-14T01:00:00Z", "deep_minutes": 90})
            ),
            "invalid_value"
        );
        assert_eq!(code(Kind::Mood, json!({"score": 6})), "invalid_value");
        assert_eq!(code(Kind::Mood, json!({"score": 3, "tags": ["Not OK"]})), "invalid_value");
        assert_eq!(code(Kind::Exercise, json!({"duration_minutes": 20, "activity": "flying"})), "invalid_value");
        assert_eq!(code(Kind::Meditation, json!({"technique": "breathing"})), "missing_field");
        assert_eq!(code(Kind::Food, json!({"meal": "lunch"})), "missing_field");
        assert_eq!(code(Kind::Food, json!({"description": "tea\u{0007}"})), "invalid_value");
    }
}
