//! The daily summary (pure): a local day's figures from the patient's entries and readings, the
//! personal baseline of the days before, goals met and streaks, the insights, the plain-language
//! sections in en or hi, and the `Composition` that keeps what was sent.

use std::collections::BTreeMap;

use chrono::{DateTime, NaiveDate, TimeDelta, Utc};
use chrono_tz::Tz;
use serde::Serialize;
use serde_json::{Value, json};

use crate::catalog::{Catalog, GOAL_CATEGORY, UCUM, WELLNESS_SYSTEM};
use crate::entry::{EntryOut, Kind, instant};

/// What a goal or an insight measures per day.
pub const METRICS: [&str; 7] =
    ["sleep_minutes", "steps", "exercise_minutes", "water_ml", "mood", "meditation_minutes", "energy_kcal"];

/// The catalogue code a metric is measured by, and its UCUM unit.
pub fn metric_code(metric: &str) -> Option<(&'static str, &'static str)> {
    Some(match metric {
        "sleep_minutes" => ("sleep", "min"),
        "steps" => ("steps", "{steps}"),
        "exercise_minutes" => ("exercise", "min"),
        "water_ml" => ("water", "mL"),
        "mood" => ("mood", "{score}"),
        "meditation_minutes" => ("meditation", "min"),
        "energy_kcal" => ("food", "kcal"),
        _ => return None,
    })
}

/// One day's sums (means for mood).
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DayMetrics {
    sums: BTreeMap<&'static str, f64>,
    mood_count: u32,
}

impl DayMetrics {
    fn add(&mut self, metric: &'static str, v: f64) {
        *self.sums.entry(metric).or_insert(0.0) += v;
    }

    /// The day's value of `metric`, when anything was recorded.
    pub fn get(&self, metric: &str) -> Option<f64> {
        let v = *self.sums.get(metric)?;
        if metric == "mood" { (self.mood_count > 0).then(|| v / f64::from(self.mood_count)) } else { Some(v) }
    }
}

/// The local day an instant falls on in `tz`.
pub fn local_day(t: DateTime<Utc>, tz: Tz) -> NaiveDate {
    t.with_timezone(&tz).date_naive()
}

fn parse(t: &str) -> Option<DateTime<Utc>> {
    DateTime::parse_from_rfc3339(t).ok().map(|t| t.with_timezone(&Utc))
}

/// Each local day's metrics from entries (a night counts on the day it ends) and step counts.
pub fn by_day(entries: &[EntryOut], steps: &[(DateTime<Utc>, f64)], tz: Tz) -> BTreeMap<NaiveDate, DayMetrics> {
    let mut days: BTreeMap<NaiveDate, DayMetrics> = BTreeMap::new();
    for e in entries {
        let (Some(kind), Some(t)) = (e.kind, parse(&e.effective)) else { continue };
        let d = days.entry(local_day(t, tz)).or_default();
        match kind {
            Kind::Food => d.add("energy_kcal", e.energy_kcal.unwrap_or(0.0)),
            Kind::Water => d.add("water_ml", e.volume_ml.unwrap_or(0.0)),
            Kind::Sleep => d.add("sleep_minutes", e.asleep_minutes.unwrap_or(0.0)),
            Kind::Exercise => d.add("exercise_minutes", e.duration_minutes.unwrap_or(0.0)),
            Kind::Mood => {
                d.add("mood", e.score.map_or(0.0, |s| s as f64));
                d.mood_count += 1;
            }
            Kind::Meditation => d.add("meditation_minutes", e.duration_minutes.unwrap_or(0.0)),
        }
    }
    for (t, v) in steps {
        days.entry(local_day(*t, tz)).or_default().add("steps", *v);
    }
    days
}

/// The mean of `metric` over the `days` days before `day` that have it, when at least
/// `min_days` do.
pub fn baseline(days: &BTreeMap<NaiveDate, DayMetrics>, metric: &str, day: NaiveDate, cat: &Catalog) -> Option<f64> {
    let first = day - TimeDelta::days(cat.baseline.days);
    let values: Vec<f64> = days.range(first..day).filter_map(|(_, m)| m.get(metric)).collect();
    (values.len() >= cat.baseline.min_days).then(|| values.iter().sum::<f64>() / values.len() as f64)
}

/// A measurable goal.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = WellnessGoal)]
pub struct GoalDef {
    /// The Goal id.
    pub id: String,
    /// sleep_minutes, steps, exercise_minutes, water_ml, mood, meditation_minutes or energy_kcal.
    pub metric: String,
    pub target: f64,
    /// UCUM.
    pub unit: String,
    /// `at_least` (default) or `at_most` (food energy, for example).
    pub direction: String,
    /// What the goal is, in words.
    pub description: String,
    /// FHIR `Goal.lifecycleStatus`.
    pub status: String,
}

/// Whether a day's value meets the goal (an `at_most` goal needs something recorded that day).
pub fn met(goal: &GoalDef, value: Option<f64>) -> bool {
    match (goal.direction.as_str(), value) {
        ("at_most", Some(v)) => v <= goal.target,
        (_, Some(v)) => v >= goal.target,
        _ => false,
    }
}

/// Consecutive days ending on `day` that met the goal.
pub fn streak(goal: &GoalDef, days: &BTreeMap<NaiveDate, DayMetrics>, day: NaiveDate, max: i64) -> u32 {
    let mut n = 0;
    let mut d = day;
    while i64::from(n) < max && met(goal, days.get(&d).and_then(|m| m.get(&goal.metric))) {
        n += 1;
        d -= TimeDelta::days(1);
    }
    n
}

/// The Goal resource of a goal (id and status aside).
pub fn goal_resource(cat: &Catalog, g: &GoalDef, patient: &str, start: NaiveDate) -> Result<Value, String> {
    let (name, unit) = metric_code(&g.metric).ok_or_else(|| format!("unknown metric {}", g.metric))?;
    let code = cat.code(name)?;
    Ok(json!({
        "resourceType": "Goal",
        "lifecycleStatus": g.status,
        "category": [{"coding": [{"system": WELLNESS_SYSTEM, "code": GOAL_CATEGORY, "display": "Wellness goal"}]}],
        "description": {"text": g.description},
        "subject": {"reference": format!("Patient/{patient}")},
        "startDate": start.to_string(),
        "target": [{
            "measure": {"coding": [{"system": code.system, "code": code.code, "display": code.display}], "text": g.metric},
            "detailQuantity": {"value": number(g.target), "comparator": if g.direction == "at_most" { "<=" } else { ">=" },
                               "unit": unit, "system": UCUM, "code": unit}
        }]
    }))
}

/// A stored Goal read back (`None`: not a wellness goal).
pub fn goal_of(id: &str, body: &Value) -> Option<GoalDef> {
    let t = body.pointer("/target/0")?;
    let metric = t.pointer("/measure/text")?.as_str()?;
    let (_, unit) = metric_code(metric)?;
    let q = t.get("detailQuantity")?;
    Some(GoalDef {
        id: id.to_owned(),
        metric: metric.to_owned(),
        target: q.get("value")?.as_f64()?,
        unit: unit.to_owned(),
        direction: if q.get("comparator").and_then(Value::as_str) == Some("<=") { "at_most" } else { "at_least" }
            .to_owned(),
        description: body.pointer("/description/text").and_then(Value::as_str).unwrap_or_default().to_owned(),
        status: body.get("lifecycleStatus").and_then(Value::as_str).unwrap_or("active").to_owned(),
    })
}

/// A number as JSON: whole numbers as integers, else two decimals at most.
pub fn number(v: f64) -> Value {
    let r = (v * 100.0).round() / 100.0;
    if r.fract() == 0.0 && r.abs() < 1e15 { json!(r as i64) } else { json!(r) }
}

/// A number as text: whole numbers plain, else one decimal.
fn shown(v: f64) -> String {
    let r = (v * 10.0).round() / 10.0;
    if r.fract() == 0.0 { format!("{}", r as i64) } else { format!("{r:.1}") }
}

/// Summary statistics of one vital sign on the day.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SummaryVital)]
pub struct VitalStat {
    /// LOINC.
    pub code: String,
    pub name: String,
    pub unit: String,
    pub count: u32,
    pub min: f64,
    pub max: f64,
    pub mean: f64,
}

/// The vital signs of the day: `readings` are (LOINC, value) pairs (blood pressure already
/// split into its components).
pub fn vital_stats(cat: &Catalog, lang: &str, readings: &[(String, f64)]) -> Vec<VitalStat> {
    cat.vitals
        .iter()
        .filter_map(|v| {
            let values: Vec<f64> = readings.iter().filter(|(c, _)| *c == v.code).map(|(_, x)| *x).collect();
            let first = *values.first()?;
            let (min, max) = values.iter().fold((first, first), |(lo, hi), x| (lo.min(*x), hi.max(*x)));
            let mean = values.iter().sum::<f64>() / values.len() as f64;
            Some(VitalStat {
                code: v.code.clone(),
                name: if lang == "hi" { v.hi.clone() } else { v.en.clone() },
                unit: v.unit.clone(),
                count: u32::try_from(values.len()).unwrap_or(u32::MAX),
                min: (min * 10.0).round() / 10.0,
                max: (max * 10.0).round() / 10.0,
                mean: (mean * 10.0).round() / 10.0,
            })
        })
        .collect()
}

/// The day's figures, whatever the language.
#[derive(Debug, Clone, Default, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SummaryFigures)]
pub struct Figures {
    pub vitals: Vec<VitalStat>,
    /// Alerts (`Flag`s) raised that day.
    pub alerts: u32,
    /// Doses logged as taken (`MedicationAdministration` completed).
    pub doses_taken: u32,
    /// Doses logged as skipped (`not-done`).
    pub doses_skipped: u32,
    pub steps: Option<f64>,
    pub exercise_minutes: Option<f64>,
    pub exercise_sessions: u32,
    pub active_energy_kcal: Option<f64>,
    pub sleep_minutes: Option<f64>,
    pub deep_sleep_minutes: Option<f64>,
    pub light_sleep_minutes: Option<f64>,
    pub rem_sleep_minutes: Option<f64>,
    pub awake_minutes: Option<f64>,
    pub water_ml: Option<f64>,
    pub water_entries: u32,
    /// Mean of the day's mood scores (1–5).
    pub mood: Option<f64>,
    pub mood_entries: u32,
    pub mood_tags: Vec<String>,
    pub meditation_minutes: Option<f64>,
    pub meditation_sessions: u32,
    pub food_entries: u32,
    pub energy_kcal: Option<f64>,
    pub carbohydrate_g: Option<f64>,
    pub protein_g: Option<f64>,
    pub fat_g: Option<f64>,
}

fn add(slot: &mut Option<f64>, v: Option<f64>) {
    if let Some(v) = v {
        *slot = Some(slot.unwrap_or(0.0) + v);
    }
}

/// The figures of the entries of one day (already chosen by their local day).
pub fn figures_of(entries: &[&EntryOut], steps: Option<f64>) -> Figures {
    let mut f = Figures { steps, ..Figures::default() };
    let mut mood_sum = 0.0;
    for e in entries {
        match e.kind {
            Some(Kind::Food) => {
                f.food_entries += 1;
                add(&mut f.energy_kcal, e.energy_kcal);
                add(&mut f.carbohydrate_g, e.carbohydrate_g);
                add(&mut f.protein_g, e.protein_g);
                add(&mut f.fat_g, e.fat_g);
            }
            Some(Kind::Water) => {
                f.water_entries += 1;
                add(&mut f.water_ml, e.volume_ml);
            }
            Some(Kind::Sleep) => {
                add(&mut f.sleep_minutes, e.asleep_minutes);
                add(&mut f.deep_sleep_minutes, e.deep_minutes);
                add(&mut f.light_sleep_minutes, e.light_minutes);
                add(&mut f.rem_sleep_minutes, e.rem_minutes);
                add(&mut f.awake_minutes, e.awake_minutes);
            }
            Some(Kind::Exercise) => {
                f.exercise_sessions += 1;
                add(&mut f.exercise_minutes, e.duration_minutes);
                add(&mut f.active_energy_kcal, e.energy_kcal);
            }
            Some(Kind::Mood) => {
                f.mood_entries += 1;
                mood_sum += e.score.map_or(0.0, |s| s as f64);
                for t in e.tags.as_deref().unwrap_or_default() {
                    if !f.mood_tags.contains(t) {
                        f.mood_tags.push(t.clone());
                    }
                }
            }
            Some(Kind::Meditation) => {
                f.meditation_sessions += 1;
                add(&mut f.meditation_minutes, e.duration_minutes);
            }
            None => {}
        }
    }
    if f.mood_entries > 0 {
        f.mood = Some(((mood_sum / f64::from(f.mood_entries)) * 10.0).round() / 10.0);
    }
    f.mood_tags.sort();
    f
}

/// One plain-language observation about the day.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SummaryInsight)]
pub struct Insight {
    /// `<metric>_above_baseline`, `<metric>_below_baseline`, `goal_met` or `goal_missed`.
    pub code: String,
    pub text: String,
}

/// A goal on the day.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SummaryGoal)]
pub struct GoalDay {
    pub id: String,
    pub metric: String,
    pub target: f64,
    pub value: Option<f64>,
    pub met: bool,
    /// Consecutive days met ending on the day.
    pub streak: u32,
}

/// The insights of `day`: each metric against its baseline (the catalogue's rule), then each
/// active goal met or missed with its streak.
pub fn insights(
    cat: &Catalog,
    lang: &str,
    days: &BTreeMap<NaiveDate, DayMetrics>,
    day: NaiveDate,
    goals: &[GoalDef],
) -> (Vec<Insight>, Vec<GoalDay>) {
    let mut out = Vec::new();
    let today = days.get(&day);
    for metric in METRICS {
        let (Some(rule), Some(v), Some(b)) =
            (cat.rule(metric), today.and_then(|m| m.get(metric)), baseline(days, metric, day, cat))
        else {
            continue;
        };
        if b <= 0.0 {
            continue;
        }
        let pct = (v - b) / b * 100.0;
        if pct.abs() < rule.change_percent {
            continue;
        }
        let (code, key) =
            if pct > 0.0 { ("above_baseline", "above_baseline") } else { ("below_baseline", "below_baseline") };
        out.push(Insight {
            code: format!("{metric}_{code}"),
            text: cat.text(
                lang,
                key,
                &[
                    ("metric", cat.text(lang, &format!("metric.{metric}"), &[])),
                    ("value", shown(v)),
                    ("percent", format!("{}", pct.abs().round() as i64)),
                    ("baseline", shown(b)),
                ],
            ),
        });
    }
    let mut goal_days = Vec::new();
    for g in goals.iter().filter(|g| g.status == "active") {
        let value = today.and_then(|m| m.get(&g.metric));
        let is_met = met(g, value);
        let s = streak(g, days, day, 366);
        let described = if g.description.is_empty() {
            format!("{} {}", shown(g.target), cat.text(lang, &format!("metric.{}", g.metric), &[]))
        } else {
            g.description.clone()
        };
        out.push(Insight {
            code: if is_met { "goal_met" } else { "goal_missed" }.to_owned(),
            text: if is_met {
                cat.text(lang, "goal_met", &[("goal", described), ("streak", s.to_string())])
            } else {
                cat.text(
                    lang,
                    "goal_missed",
                    &[("goal", described), ("value", shown(value.unwrap_or(0.0))), ("target", shown(g.target))],
                )
            },
        });
        goal_days.push(GoalDay {
            id: g.id.clone(),
            metric: g.metric.clone(),
            target: g.target,
            value,
            met: is_met,
            streak: s,
        });
    }
    (out, goal_days)
}

/// One section of the summary as read.
#[derive(Debug, Clone, PartialEq, Serialize, utoipa::ToSchema)]
#[schema(as = SummarySection)]
pub struct Section {
    /// vitals, alerts, doses, activity, sleep, water, mood, meditation, food or insights.
    pub code: String,
    pub title: String,
    pub text: String,
}

/// The sections in `lang`.
pub fn sections(cat: &Catalog, lang: &str, f: &Figures, insights: &[Insight]) -> Vec<Section> {
    let t = |key: &str, args: &[(&str, String)]| cat.text(lang, key, args);
    let mut out = Vec::new();
    let mut push = |code: &str, text: String| out.push(Section { code: code.to_owned(), title: t(code, &[]), text });
    let vitals = if f.vitals.is_empty() {
        t("no_vitals", &[])
    } else {
        f.vitals
            .iter()
            .map(|v| {
                let unit = if v.unit == "Cel" { "°C".to_owned() } else { v.unit.replace("mm[Hg]", "mmHg") };
                t(
                    "vital_line",
                    &[
                        ("name", v.name.clone()),
                        ("mean", shown(v.mean)),
                        ("unit", unit),
                        ("count", v.count.to_string()),
                        ("min", shown(v.min)),
                        ("max", shown(v.max)),
                    ],
                )
            })
            .collect::<Vec<_>>()
            .join("\n")
    };
    push("vitals", vitals);
    push(
        "alerts",
        if f.alerts == 0 { t("no_alerts", &[]) } else { t("alerts_line", &[("count", f.alerts.to_string())]) },
    );
    push("doses", t("doses_line", &[("taken", f.doses_taken.to_string()), ("skipped", f.doses_skipped.to_string())]));
    let mut activity = Vec::new();
    if let Some(s) = f.steps {
        activity.push(t("steps_line", &[("value", shown(s))]));
    }
    if let Some(m) = f.exercise_minutes {
        activity.push(t("exercise_line", &[("value", shown(m)), ("count", f.exercise_sessions.to_string())]));
    }
    push("activity", if activity.is_empty() { t("no_activity", &[]) } else { activity.join(" ") });
    push(
        "sleep",
        match f.sleep_minutes {
            Some(m) => {
                let whole = m.round() as i64;
                t("sleep_line", &[("hours", (whole / 60).to_string()), ("minutes", (whole % 60).to_string())])
            }
            None => t("no_sleep", &[]),
        },
    );
    push("water", f.water_ml.map_or_else(|| t("no_water", &[]), |v| t("water_line", &[("value", shown(v))])));
    push(
        "mood",
        f.mood.map_or_else(
            || t("no_mood", &[]),
            |v| t("mood_line", &[("value", shown(v)), ("count", f.mood_entries.to_string())]),
        ),
    );
    push(
        "meditation",
        f.meditation_minutes.map_or_else(
            || t("no_meditation", &[]),
            |v| t("meditation_line", &[("value", shown(v)), ("count", f.meditation_sessions.to_string())]),
        ),
    );
    push(
        "food",
        if f.food_entries == 0 {
            t("no_food", &[])
        } else {
            t("food_line", &[("count", f.food_entries.to_string()), ("value", shown(f.energy_kcal.unwrap_or(0.0)))])
        },
    );
    push(
        "insights",
        if insights.is_empty() {
            t("no_insights", &[])
        } else {
            insights.iter().map(|i| i.text.as_str()).collect::<Vec<_>>().join("\n")
        },
    );
    out
}

/// The sections as one plain text (the e-mail's body).
pub fn plain_text(sections: &[Section]) -> String {
    sections.iter().map(|s| format!("{}\n{}", s.title, s.text)).collect::<Vec<_>>().join("\n\n")
}

fn escape(s: &str) -> String {
    s.replace('&', "&amp;").replace('<', "&lt;").replace('>', "&gt;")
}

/// The Composition that keeps a summary: one section per topic, its text as narrative.
pub fn composition(
    cat: &Catalog,
    patient: &str,
    day: NaiveDate,
    lang: &str,
    title: &str,
    sections: &[Section],
    now: DateTime<Utc>,
) -> Result<Value, String> {
    let code = cat.code("summary")?;
    let sections: Vec<Value> = sections
        .iter()
        .map(|s| {
            let lines: Vec<String> = s.text.lines().map(|l| format!("<p>{}</p>", escape(l))).collect();
            json!({
                "title": s.title,
                "code": {"coding": [{"system": WELLNESS_SYSTEM, "code": format!("summary-{}", s.code)}]},
                "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{}</div>", lines.concat())}
            })
        })
        .collect();
    Ok(json!({
        "resourceType": "Composition",
        "language": lang,
        "status": "final",
        "type": {"coding": [{"system": code.system, "code": code.code, "display": code.display}]},
        "subject": {"reference": format!("Patient/{patient}")},
        "date": instant(now),
        "author": [{"display": "Hearth"}],
        "title": title,
        "event": [{"period": {"start": day.to_string(), "end": day.to_string()}}],
        "section": sections
    }))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn entry(kind: Kind, at: &str, f: impl FnOnce(&mut EntryOut)) -> EntryOut {
        let mut e = EntryOut { id: "x".into(), kind: Some(kind), effective: at.into(), ..EntryOut::default() };
        f(&mut e);
        e
    }

    #[test]
    fn baselines_streaks_and_insights_come_from_the_days() {
        let cat = Catalog::builtin().unwrap();
        let tz: Tz = "Asia/Kolkata".parse().unwrap();
        let mut entries = Vec::new();
        // Ten days of 2000 mL, then 1000 mL on the 11th; 19:00Z on the 10th is already the 11th in India.
        for d in 1..=10 {
            entries.push(entry(Kind::Water, &format!("2027-01-{d:02}T08:00:00Z"), |e| e.volume_ml = Some(2000.0)));
        }
        entries.push(entry(Kind::Water, "2027-01-10T19:00:00Z", |e| e.volume_ml = Some(1000.0)));
        let days = by_day(&entries, &[], tz);
        let day = NaiveDate::from_ymd_opt(2027, 1, 11).unwrap();
        assert_eq!(days.get(&day).and_then(|m| m.get("water_ml")), Some(1000.0));
        assert_eq!(baseline(&days, "water_ml", day, cat), Some(2000.0));
        let goal = GoalDef {
            id: "g".into(),
            metric: "water_ml".into(),
            target: 1500.0,
            unit: "mL".into(),
            direction: "at_least".into(),
            description: String::new(),
            status: "active".into(),
        };
        assert_eq!(streak(&goal, &days, day - TimeDelta::days(1), 366), 10);
        let (ins, goals) = insights(cat, "en", &days, day, std::slice::from_ref(&goal));
        assert_eq!(ins[0].code, "water_ml_below_baseline");
        assert_eq!(ins[0].text, "Water (mL): 1000, 50% below your usual 2000 (last 14 days).");
        assert_eq!(ins[1].code, "goal_missed");
        assert!(!goals[0].met);
        let (ins, _) = insights(cat, "hi", &days, day, &[]);
        assert_eq!(ins[0].text, "पानी (मि.ली.): 1000, आपके सामान्य 2000 से 50% कम (पिछले 14 दिन)।");
        // Too few days before: no comparison.
        assert_eq!(baseline(&days, "water_ml", NaiveDate::from_ymd_opt(2027, 1, 3).unwrap(), cat), None);
    }
}
