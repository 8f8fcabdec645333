//! What a patient's latest readings raise (pure: no I/O, no clock): the complete NEWS2 and
//! qSOFA sets, their scores, and the personal thresholds a clinician set.
//!
//! A *set* is the latest reading of each parameter a score needs, and it is complete when every
//! one of them exists and all lie within [`SET_WINDOW_MINUTES`] of the newest of them (readings
//! an hour apart are still one round of observations at home; older ones describe another
//! moment). A score over a complete set either raises its alert or clears it; an incomplete set
//! leaves the alert as it is. A personal threshold is judged on the latest reading of its
//! parameter alone.
//!
//! When an alert is raised (the rules are data: [`crate::scores`] reads the RCP chart and
//! Sepsis-3 from `data/early_warning.json`):
//! - NEWS2: any risk above `low` (RCP 2017 Chart 2: a single parameter at 3 asks for an urgent
//!   review, 5 or more for an urgent response, 7 or more for an emergency response); the level
//!   is the risk, ordered `low_medium` < `medium` < `high`.
//! - qSOFA: at the Sepsis-3 alert total (2 or more).
//! - A personal threshold: a value above `above` or below `below` (strictly).

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::scores::{Acvpu, EarlyWarning, Mentation, News2Input, News2Risk, QsofaInput, ScoreError};

/// How far apart the readings of one set may be.
pub const SET_WINDOW_MINUTES: i64 = 60;

/// The latest reading of one parameter: its time and its value (canonical unit), or its
/// coded answer.
#[derive(Debug, Clone, PartialEq)]
pub struct Point {
    pub at: DateTime<Utc>,
    pub value: Option<f64>,
    pub code: Option<String>,
}

/// The latest readings by parameter: the numeric kinds (`heart_rate`, `systolic_bp`,
/// `diastolic_bp`, …) and the coded ones (`consciousness`, `supplemental_oxygen`).
pub type Latest = BTreeMap<String, Point>;

/// A personal threshold a clinician set.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct Threshold {
    /// The measured kind: `systolic_bp`, `diastolic_bp`, `heart_rate`, `respiratory_rate`,
    /// `spo2`, `body_temperature`, `blood_glucose`, `body_weight`.
    pub parameter: String,
    /// Alert when a reading is above this (canonical unit).
    #[serde(default)]
    pub above: Option<f64>,
    /// Alert when a reading is below this (canonical unit).
    #[serde(default)]
    pub below: Option<f64>,
}

/// The parameters a threshold may name.
pub const THRESHOLD_PARAMETERS: [&str; 8] = [
    "systolic_bp",
    "diastolic_bp",
    "heart_rate",
    "respiratory_rate",
    "spo2",
    "body_temperature",
    "blood_glucose",
    "body_weight",
];

/// What one rule decided.
#[derive(Debug, Clone, PartialEq)]
pub enum Outcome {
    /// Raise (or keep) an alert.
    Raise(Finding),
    /// The rule was judged and holds no more: resolve its live alert.
    Clear,
}

/// A raised alert's content.
#[derive(Debug, Clone, PartialEq)]
pub struct Finding {
    /// Orders the levels of one rule: a higher one supersedes a live lower one.
    pub severity: i64,
    /// `low_medium`, `medium`, `high` (NEWS2); `sepsis_alert` (qSOFA); `above`/`below`.
    pub level: String,
    pub score: Option<i64>,
    /// Human-readable, for the alert list and the Flag (the care team's record; never sent in
    /// a message).
    pub summary: String,
    /// What raised it.
    pub detail: Value,
}

fn value(latest: &Latest, p: &str) -> Option<(DateTime<Utc>, f64)> {
    latest.get(p).and_then(|x| x.value.map(|v| (x.at, v)))
}

fn code<'a>(latest: &'a Latest, p: &str) -> Option<(DateTime<Utc>, &'a str)> {
    latest.get(p).and_then(|x| x.code.as_deref().map(|c| (x.at, c)))
}

fn acvpu(c: &str) -> Option<Acvpu> {
    match c {
        "A" => Some(Acvpu::A),
        "C" => Some(Acvpu::C),
        "V" => Some(Acvpu::V),
        "P" => Some(Acvpu::P),
        "U" => Some(Acvpu::U),
        _ => None,
    }
}

/// Whether instants lie within the window of each other.
fn within(times: &[DateTime<Utc>]) -> bool {
    match (times.iter().min(), times.iter().max()) {
        (Some(lo), Some(hi)) => *hi - *lo <= TimeDelta::minutes(SET_WINDOW_MINUTES),
        _ => false,
    }
}

/// The complete NEWS2 set in `latest`, if there is one.
pub fn news2_set(latest: &Latest, spo2_scale2: bool) -> Option<News2Input> {
    let (t1, respiratory_rate) = value(latest, "respiratory_rate")?;
    let (t2, spo2) = value(latest, "spo2")?;
    let (t3, o2) = code(latest, "supplemental_oxygen")?;
    let (t4, systolic_bp) = value(latest, "systolic_bp")?;
    let (t5, heart_rate) = value(latest, "heart_rate")?;
    let (t6, c) = code(latest, "consciousness")?;
    let (t7, temperature_c) = value(latest, "body_temperature")?;
    if !within(&[t1, t2, t3, t4, t5, t6, t7]) {
        return None;
    }
    Some(News2Input {
        respiratory_rate,
        spo2,
        on_oxygen: o2 == "oxygen",
        systolic_bp,
        heart_rate,
        consciousness: acvpu(c)?,
        temperature_c,
        spo2_scale2,
    })
}

/// The complete qSOFA set in `latest`, if there is one.
pub fn qsofa_set(latest: &Latest) -> Option<QsofaInput> {
    let (t1, respiratory_rate) = value(latest, "respiratory_rate")?;
    let (t2, systolic_bp) = value(latest, "systolic_bp")?;
    let (t3, c) = code(latest, "consciousness")?;
    if !within(&[t1, t2, t3]) {
        return None;
    }
    Some(QsofaInput { respiratory_rate, systolic_bp, mentation: Mentation::Acvpu(acvpu(c)?) })
}

fn risk_name(r: News2Risk) -> &'static str {
    match r {
        News2Risk::Low => "low",
        News2Risk::LowMedium => "low_medium",
        News2Risk::Medium => "medium",
        News2Risk::High => "high",
    }
}

/// Judges every rule that `latest` lets judge: `(rule, outcome)`. Rules whose set is
/// incomplete (or whose parameter has no reading) are absent.
pub fn evaluate(
    rules: &EarlyWarning,
    latest: &Latest,
    spo2_scale2: bool,
    thresholds: &[Threshold],
) -> Result<Vec<(String, Outcome)>, ScoreError> {
    let mut out = Vec::new();
    if let Some(input) = news2_set(latest, spo2_scale2) {
        let s = rules.news2(&input)?;
        let outcome = if s.risk == News2Risk::Low {
            Outcome::Clear
        } else {
            let severity = match s.risk {
                News2Risk::High => 3,
                News2Risk::Medium => 2,
                _ => 1,
            };
            Outcome::Raise(Finding {
                severity,
                level: risk_name(s.risk).to_owned(),
                score: Some(i64::from(s.total)),
                summary: format!(
                    "NEWS2 {} ({} clinical risk){}",
                    s.total,
                    risk_name(s.risk).replace('_', "-"),
                    if spo2_scale2 { ", SpO2 scale 2" } else { "" }
                ),
                detail: json!({"score": "news2", "total": s.total, "risk": s.risk, "parts": s.parts,
                               "spo2_scale2": spo2_scale2, "source": rules.news2_source().title}),
            })
        };
        out.push(("news2".to_owned(), outcome));
    }
    if let Some(input) = qsofa_set(latest) {
        let s = rules.qsofa(&input)?;
        let outcome = if s.sepsis_alert {
            Outcome::Raise(Finding {
                severity: 1,
                level: "sepsis_alert".to_owned(),
                score: Some(i64::from(s.total)),
                summary: format!("qSOFA {}: possible sepsis", s.total),
                detail: json!({"score": "qsofa", "total": s.total, "source": rules.qsofa_source().title}),
            })
        } else {
            Outcome::Clear
        };
        out.push(("qsofa".to_owned(), outcome));
    }
    for t in thresholds {
        let Some((_, v)) = value(latest, &t.parameter) else { continue };
        let over = t.above.filter(|a| v > *a).map(|a| ("above", a));
        let under = t.below.filter(|b| v < *b).map(|b| ("below", b));
        let outcome = match over.or(under) {
            Some((dir, limit)) => Outcome::Raise(Finding {
                severity: 1,
                level: dir.to_owned(),
                score: None,
                summary: format!("{} {v} is {dir} the personal threshold {limit}", t.parameter),
                detail: json!({"score": "threshold", "parameter": t.parameter, "value": v, dir: limit,
                               "source": "the patient's clinician"}),
            }),
            None => Outcome::Clear,
        };
        out.push((format!("threshold:{}", t.parameter), outcome));
    }
    Ok(out)
}

/// Checks thresholds as a clinician sent them: known parameters, each once, at least one
/// limit, finite, `below` under `above`.
pub fn check_thresholds(ts: &[Threshold]) -> Result<(), String> {
    if ts.len() > THRESHOLD_PARAMETERS.len() {
        return Err("at most one threshold per parameter".into());
    }
    for (i, t) in ts.iter().enumerate() {
        if !THRESHOLD_PARAMETERS.contains(&t.parameter.as_str()) {
            return Err(format!("thresholds[{i}]: parameter is one of {}", THRESHOLD_PARAMETERS.join(", ")));
        }
        if ts.iter().take(i).any(|o| o.parameter == t.parameter) {
            return Err(format!("thresholds[{i}]: {} is named twice", t.parameter));
        }
        if t.above.is_none() && t.below.is_none() {
            return Err(format!("thresholds[{i}]: give `above`, `below` or both"));
        }
        if t.above.into_iter().chain(t.below).any(|v| !v.is_finite()) {
            return Err(format!("thresholds[{i}]: limits must be numbers"));
        }
        if let (Some(a), Some(b)) = (t.above, t.below)
            && b >= a
        {
            return Err(format!("thresholds[{i}]: `below` must be under `above`"));
        }
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn at(m: i64) -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap() + TimeDelta::minutes(m)
    }

    fn num(l: &mut Latest, k: &str, v: f64, m: i64) {
        l.insert(k.into(), Point { at: at(m), value: Some(v), code: None });
    }

    fn coded(l: &mut Latest, k: &str, c: &str, m: i64) {
        l.insert(k.into(), Point { at: at(m), value: None, code: Some(c.into()) });
    }

    /// RR 25 (3), SpO2 91 (3), air (0), SBP 95 (2), HR 115 (2), A (0), 38.5 (1) = 11.
    fn sick() -> Latest {
        let mut l = Latest::new();
        num(&mut l, "respiratory_rate", 25.0, 0);
        num(&mut l, "spo2", 91.0, 1);
        coded(&mut l, "supplemental_oxygen", "air", 1);
        num(&mut l, "systolic_bp", 95.0, 2);
        num(&mut l, "diastolic_bp", 60.0, 2);
        num(&mut l, "heart_rate", 115.0, 3);
        coded(&mut l, "consciousness", "A", 3);
        num(&mut l, "body_temperature", 38.5, 4);
        l
    }

    #[test]
    fn a_complete_set_scores_and_an_incomplete_one_does_not() {
        let rules = EarlyWarning::builtin().unwrap();
        let out = evaluate(rules, &sick(), false, &[]).unwrap();
        let Outcome::Raise(f) = &out[0].1 else { panic!("{out:?}") };
        assert_eq!((out[0].0.as_str(), f.level.as_str(), f.score), ("news2", "high", Some(11)));
        assert!(matches!(&out[1].1, Outcome::Raise(f) if f.score == Some(2)), "qSOFA: RR ≥ 22, SBP ≤ 100: {out:?}");
        let mut calm = sick();
        num(&mut calm, "systolic_bp", 130.0, 2);
        assert_eq!(evaluate(rules, &calm, false, &[]).unwrap()[1], ("qsofa".into(), Outcome::Clear), "qSOFA 1");
        let mut l = sick();
        l.remove("consciousness");
        assert!(evaluate(rules, &l, false, &[]).unwrap().is_empty());
        let mut l = sick();
        num(&mut l, "body_temperature", 38.5, 61);
        assert!(news2_set(&l, false).is_none(), "61 minutes apart is not one set");
        num(&mut l, "body_temperature", 38.5, 60);
        assert!(news2_set(&l, false).is_some(), "60 minutes apart is");
    }

    #[test]
    fn qsofa_and_thresholds() {
        let rules = EarlyWarning::builtin().unwrap();
        let mut l = sick();
        coded(&mut l, "consciousness", "C", 3);
        let t = [Threshold { parameter: "systolic_bp".into(), above: Some(160.0), below: Some(100.0) }];
        let out = evaluate(rules, &l, false, &t).unwrap();
        assert!(matches!(&out[1], (r, Outcome::Raise(f)) if r == "qsofa" && f.score == Some(3)), "{out:?}");
        assert!(matches!(&out[2], (r, Outcome::Raise(f)) if r == "threshold:systolic_bp" && f.level == "below"));
        num(&mut l, "systolic_bp", 120.0, 2);
        let out = evaluate(rules, &l, false, &t).unwrap();
        assert_eq!(out[2], ("threshold:systolic_bp".into(), Outcome::Clear));
        assert!(check_thresholds(&t).is_ok());
        let bad = [Threshold { parameter: "mood".into(), above: Some(1.0), below: None }];
        assert!(check_thresholds(&bad).is_err());
        let bad = [Threshold { parameter: "spo2".into(), above: Some(90.0), below: Some(95.0) }];
        assert!(check_thresholds(&bad).is_err());
    }

    #[test]
    fn scale_2_scores_high_saturation_on_oxygen() {
        let rules = EarlyWarning::builtin().unwrap();
        let mut l = Latest::new();
        num(&mut l, "respiratory_rate", 16.0, 0);
        num(&mut l, "spo2", 98.0, 0);
        coded(&mut l, "supplemental_oxygen", "oxygen", 0);
        num(&mut l, "systolic_bp", 120.0, 0);
        num(&mut l, "heart_rate", 70.0, 0);
        coded(&mut l, "consciousness", "A", 0);
        num(&mut l, "body_temperature", 37.0, 0);
        // Scale 1: 98 % scores 0, oxygen 2 → total 2, low. Scale 2: 98 % on oxygen scores 3 → 5, medium.
        assert!(matches!(evaluate(rules, &l, false, &[]).unwrap()[0].1, Outcome::Clear));
        let out = evaluate(rules, &l, true, &[]).unwrap();
        assert!(matches!(&out[0].1, Outcome::Raise(f) if f.level == "medium" && f.score == Some(5)), "{out:?}");
    }
}
