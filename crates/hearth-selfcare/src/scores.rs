//! Early-warning scores (pure: no I/O, no clock): NEWS2 (RCP 2017, incl. SpO2 scale 2) and
//! qSOFA (Sepsis-3), interpreted from `data/early_warning.json`, where every threshold and its
//! citation live. The code holds no clinical number.
//!
//! Values are rounded half-up to the precision the chart is printed in (whole numbers; tenths
//! of a degree for temperature) before the bands are looked up, so 90.4 mmHg scores as 90 and
//! 35.05 °C as 35.1. The loader proves the bands of every parameter are contiguous and
//! non-overlapping at that precision, so every finite value scores exactly once.

use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The shipped rules, embedded at build time.
pub const EARLY_WARNING_JSON: &str = include_str!("../data/early_warning.json");

/// Why the rules could not be loaded or a score computed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScoreError {
    /// The rules file is malformed (a gap, an overlap, a missing source, ...).
    #[error("early-warning rules: {0}")]
    Rules(String),
    /// An input was not a finite number.
    #[error("{0} is not a finite number")]
    NotFinite(&'static str),
}

/// A citation for a rule set.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Source {
    /// The publication.
    pub title: String,
    /// Where to read it.
    pub url: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Band {
    min: Option<f64>,
    max: Option<f64>,
    /// Only for SpO2 scale 2: the band holds only on air (`false`) or on oxygen (`true`).
    on_oxygen: Option<bool>,
    score: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Parameter {
    #[allow(dead_code)]
    unit: String,
    precision: f64,
    #[serde(default)]
    #[allow(dead_code)]
    note: Option<String>,
    bands: Vec<Band>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct AirOrOxygen {
    air: u8,
    oxygen: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields, rename_all = "UPPERCASE")]
struct ConsciousnessScores {
    a: u8,
    c: u8,
    v: u8,
    p: u8,
    u: u8,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RiskRule {
    high_from_total: u8,
    medium_from_total: u8,
    low_medium_single_parameter: u8,
    #[allow(dead_code)]
    note: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct News2Rules {
    source: Source,
    respiratory_rate: Parameter,
    spo2_scale1: Parameter,
    spo2_scale2: Parameter,
    air_or_oxygen: AirOrOxygen,
    systolic_bp: Parameter,
    heart_rate: Parameter,
    consciousness: ConsciousnessScores,
    temperature: Parameter,
    risk: RiskRule,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct QsofaRules {
    source: Source,
    respiratory_rate_at_least: f64,
    systolic_bp_at_most: f64,
    gcs_below: u8,
    alert_from_total: u8,
    #[allow(dead_code)]
    note: String,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RulesFile {
    format: String,
    version: String,
    #[allow(dead_code)]
    notes: String,
    news2: News2Rules,
    qsofa: QsofaRules,
}

/// The level of consciousness on the ACVPU scale.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub enum Acvpu {
    /// Alert.
    A,
    /// New confusion.
    C,
    /// Responds to voice.
    V,
    /// Responds to pain.
    P,
    /// Unresponsive.
    U,
}

/// One complete set of observations for NEWS2.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct News2Input {
    /// Breaths per minute.
    pub respiratory_rate: f64,
    /// Oxygen saturation, %.
    pub spo2: f64,
    /// Breathing supplemental oxygen (not room air).
    pub on_oxygen: bool,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: f64,
    /// Pulse, beats per minute.
    pub heart_rate: f64,
    /// ACVPU.
    pub consciousness: Acvpu,
    /// Temperature, °C.
    pub temperature_c: f64,
    /// SpO2 scale 2 (target 88–92 %), only when a clinician has set it for this patient.
    pub spo2_scale2: bool,
}

/// The score of each NEWS2 parameter.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct News2Parts {
    /// Respiration rate.
    pub respiratory_rate: u8,
    /// SpO2 (scale 1 or 2).
    pub spo2: u8,
    /// Air or oxygen.
    pub air_or_oxygen: u8,
    /// Systolic blood pressure.
    pub systolic_bp: u8,
    /// Pulse.
    pub heart_rate: u8,
    /// Consciousness.
    pub consciousness: u8,
    /// Temperature.
    pub temperature: u8,
}

impl News2Parts {
    fn all(&self) -> [u8; 7] {
        [
            self.respiratory_rate,
            self.spo2,
            self.air_or_oxygen,
            self.systolic_bp,
            self.heart_rate,
            self.consciousness,
            self.temperature,
        ]
    }
}

/// The clinical risk of RCP NEWS2 Chart 2 (four levels).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum News2Risk {
    /// Aggregate 0–4, no single parameter at 3.
    Low,
    /// Aggregate 0–4 with a single parameter scoring 3.
    LowMedium,
    /// Aggregate 5–6.
    Medium,
    /// Aggregate 7 or more.
    High,
}

/// A NEWS2 result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct News2Score {
    /// The aggregate score.
    pub total: u8,
    /// The highest single-parameter score.
    pub max_single_parameter: u8,
    /// The clinical risk.
    pub risk: News2Risk,
    /// Each parameter's score.
    pub parts: News2Parts,
}

/// One set of observations for qSOFA.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct QsofaInput {
    /// Breaths per minute.
    pub respiratory_rate: f64,
    /// Systolic blood pressure, mmHg.
    pub systolic_bp: f64,
    /// The mentation as recorded.
    pub mentation: Mentation,
}

/// How mentation was recorded.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Mentation {
    /// Glasgow Coma Scale, 3–15.
    Gcs(u8),
    /// ACVPU (a home reading has no GCS).
    Acvpu(Acvpu),
}

/// A qSOFA result.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct QsofaScore {
    /// 0–3.
    pub total: u8,
    /// At or above the alert threshold (2).
    pub sepsis_alert: bool,
}

/// The loaded, checked rules.
#[derive(Debug, Clone)]
pub struct EarlyWarning {
    version: String,
    news2: News2Rules,
    qsofa: QsofaRules,
}

/// Half-up rounding to a step, as a whole count of steps. The small nudge makes a decimal
/// half (35.05 °C, stored as 35.04999…) round up as written, not as the binary float says.
fn steps(value: f64, precision: f64) -> f64 {
    (value / precision + 0.5 + 1e-9).floor()
}

fn check_source(name: &str, s: &Source) -> Result<(), ScoreError> {
    if s.title.trim().is_empty() || !s.url.starts_with("https://") {
        return Err(ScoreError::Rules(format!("{name}: a rule set needs a source title and an https URL")));
    }
    Ok(())
}

/// Proves `bands` (filtered to those holding for `oxygen`) cover every value exactly once.
fn check_bands(name: &str, p: &Parameter, oxygen: Option<bool>) -> Result<(), ScoreError> {
    if p.precision.is_nan() || p.precision <= 0.0 {
        return Err(ScoreError::Rules(format!("{name}: precision must be positive")));
    }
    let mut bands: Vec<(Option<f64>, Option<f64>)> = p
        .bands
        .iter()
        .filter(|b| b.on_oxygen.is_none() || b.on_oxygen == oxygen)
        .map(|b| (b.min.map(|v| steps(v, p.precision)), b.max.map(|v| steps(v, p.precision))))
        .collect();
    bands.sort_by(|a, b| a.0.unwrap_or(f64::NEG_INFINITY).total_cmp(&b.0.unwrap_or(f64::NEG_INFINITY)));
    let mut expect_min: Option<f64> = None;
    for (i, (min, max)) in bands.iter().enumerate() {
        if i == 0 {
            if min.is_some() {
                return Err(ScoreError::Rules(format!("{name}: the lowest band must be open below")));
            }
        } else if *min != expect_min {
            return Err(ScoreError::Rules(format!("{name}: gap or overlap before band {i}")));
        }
        if let (Some(lo), Some(hi)) = (min, max)
            && hi < lo
        {
            return Err(ScoreError::Rules(format!("{name}: band {i} is empty")));
        }
        match max {
            Some(hi) => expect_min = Some(hi + 1.0),
            None if i + 1 == bands.len() => return Ok(()),
            None => return Err(ScoreError::Rules(format!("{name}: only the highest band may be open above"))),
        }
    }
    Err(ScoreError::Rules(format!("{name}: the highest band must be open above")))
}

fn band_score(p: &Parameter, value: f64, oxygen: Option<bool>) -> Option<u8> {
    let v = steps(value, p.precision);
    p.bands
        .iter()
        .filter(|b| b.on_oxygen.is_none() || b.on_oxygen == oxygen)
        .find(|b| b.min.is_none_or(|m| v >= steps(m, p.precision)) && b.max.is_none_or(|m| v <= steps(m, p.precision)))
        .map(|b| b.score)
}

fn finite(name: &'static str, v: f64) -> Result<f64, ScoreError> {
    if v.is_finite() { Ok(v) } else { Err(ScoreError::NotFinite(name)) }
}

impl EarlyWarning {
    /// The shipped rules, parsed and checked once.
    pub fn builtin() -> Result<&'static EarlyWarning, ScoreError> {
        static RULES: OnceLock<Result<EarlyWarning, ScoreError>> = OnceLock::new();
        RULES.get_or_init(|| EarlyWarning::from_json(EARLY_WARNING_JSON)).as_ref().map_err(Clone::clone)
    }

    /// Parses and checks a rules file.
    pub fn from_json(json: &str) -> Result<EarlyWarning, ScoreError> {
        let file: RulesFile = serde_json::from_str(json).map_err(|e| ScoreError::Rules(e.to_string()))?;
        if file.format != "hearth-selfcare-early-warning/1" {
            return Err(ScoreError::Rules(format!("unknown format {:?}", file.format)));
        }
        check_source("news2", &file.news2.source)?;
        check_source("qsofa", &file.qsofa.source)?;
        let n = &file.news2;
        for (name, p) in [
            ("respiratory_rate", &n.respiratory_rate),
            ("spo2_scale1", &n.spo2_scale1),
            ("systolic_bp", &n.systolic_bp),
            ("heart_rate", &n.heart_rate),
            ("temperature", &n.temperature),
        ] {
            if p.bands.iter().any(|b| b.on_oxygen.is_some()) {
                return Err(ScoreError::Rules(format!("{name}: only SpO2 scale 2 depends on oxygen")));
            }
            check_bands(name, p, None)?;
        }
        check_bands("spo2_scale2 on air", &n.spo2_scale2, Some(false))?;
        check_bands("spo2_scale2 on oxygen", &n.spo2_scale2, Some(true))?;
        if n.risk.medium_from_total >= n.risk.high_from_total {
            return Err(ScoreError::Rules("news2 risk: medium must start below high".to_owned()));
        }
        Ok(EarlyWarning { version: file.version, news2: file.news2, qsofa: file.qsofa })
    }

    /// The rules' version.
    pub fn version(&self) -> &str {
        &self.version
    }

    /// The NEWS2 citation.
    pub fn news2_source(&self) -> &Source {
        &self.news2.source
    }

    /// The qSOFA citation.
    pub fn qsofa_source(&self) -> &Source {
        &self.qsofa.source
    }

    /// Scores one complete set of observations.
    pub fn news2(&self, input: &News2Input) -> Result<News2Score, ScoreError> {
        let r = &self.news2;
        let score = |p: &Parameter, name: &'static str, v: f64, ox: Option<bool>| -> Result<u8, ScoreError> {
            // The loader proved the bands cover every finite value; 0 is unreachable.
            Ok(band_score(p, finite(name, v)?, ox).unwrap_or(0))
        };
        let spo2 = if input.spo2_scale2 {
            score(&r.spo2_scale2, "spo2", input.spo2, Some(input.on_oxygen))?
        } else {
            score(&r.spo2_scale1, "spo2", input.spo2, None)?
        };
        let c = &r.consciousness;
        let parts = News2Parts {
            respiratory_rate: score(&r.respiratory_rate, "respiratory_rate", input.respiratory_rate, None)?,
            spo2,
            air_or_oxygen: if input.on_oxygen { r.air_or_oxygen.oxygen } else { r.air_or_oxygen.air },
            systolic_bp: score(&r.systolic_bp, "systolic_bp", input.systolic_bp, None)?,
            heart_rate: score(&r.heart_rate, "heart_rate", input.heart_rate, None)?,
            consciousness: match input.consciousness {
                Acvpu::A => c.a,
                Acvpu::C => c.c,
                Acvpu::V => c.v,
                Acvpu::P => c.p,
                Acvpu::U => c.u,
            },
            temperature: score(&r.temperature, "temperature", input.temperature_c, None)?,
        };
        let all = parts.all();
        let total = all.iter().fold(0u8, |acc, s| acc.saturating_add(*s));
        let max_single_parameter = all.iter().copied().max().unwrap_or(0);
        let risk = if total >= r.risk.high_from_total {
            News2Risk::High
        } else if total >= r.risk.medium_from_total {
            News2Risk::Medium
        } else if max_single_parameter >= r.risk.low_medium_single_parameter {
            News2Risk::LowMedium
        } else {
            News2Risk::Low
        };
        Ok(News2Score { total, max_single_parameter, risk, parts })
    }

    /// Scores qSOFA.
    pub fn qsofa(&self, input: &QsofaInput) -> Result<QsofaScore, ScoreError> {
        let q = &self.qsofa;
        let rr = finite("respiratory_rate", input.respiratory_rate)?;
        let sbp = finite("systolic_bp", input.systolic_bp)?;
        let altered = match input.mentation {
            Mentation::Gcs(g) => g < q.gcs_below,
            Mentation::Acvpu(a) => a != Acvpu::A,
        };
        let total = u8::from(steps(rr, 1.0) >= q.respiratory_rate_at_least)
            + u8::from(steps(sbp, 1.0) <= q.systolic_bp_at_most)
            + u8::from(altered);
        Ok(QsofaScore { total, sepsis_alert: total >= q.alert_from_total })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_shipped_rules_load() {
        assert!(EarlyWarning::builtin().is_ok());
    }

    #[test]
    fn a_gap_in_a_band_list_is_refused() {
        let broken =
            EARLY_WARNING_JSON.replace(r#"{"min": 9, "max": 11, "score": 1}"#, r#"{"min": 10, "max": 11, "score": 1}"#);
        assert_ne!(broken, EARLY_WARNING_JSON);
        let err = EarlyWarning::from_json(&broken).unwrap_err();
        assert!(matches!(err, ScoreError::Rules(m) if m.contains("respiratory_rate")));
    }

    #[test]
    fn an_overlap_in_scale_2_on_oxygen_is_refused() {
        let broken = EARLY_WARNING_JSON.replace(
            r#"{"min": 95, "max": 96, "on_oxygen": true, "score": 2}"#,
            r#"{"min": 94, "max": 96, "on_oxygen": true, "score": 2}"#,
        );
        assert_ne!(broken, EARLY_WARNING_JSON);
        assert!(EarlyWarning::from_json(&broken).is_err());
    }

    #[test]
    fn a_rule_set_without_source_is_refused() {
        let broken = EARLY_WARNING_JSON.replace("https://doi.org/10.1001/jama.2016.0287", "");
        assert!(EarlyWarning::from_json(&broken).is_err());
    }

    #[test]
    fn values_round_half_up_to_the_chart_precision() {
        let rules = EarlyWarning::builtin().unwrap();
        let base = News2Input {
            respiratory_rate: 16.0,
            spo2: 98.0,
            on_oxygen: false,
            systolic_bp: 120.0,
            heart_rate: 70.0,
            consciousness: Acvpu::A,
            temperature_c: 37.0,
            spo2_scale2: false,
        };
        let t = |c| rules.news2(&News2Input { temperature_c: c, ..base }).unwrap().parts.temperature;
        assert_eq!(t(35.04), 3);
        assert_eq!(t(35.05), 1);
        assert_eq!(t(38.04), 0);
        assert_eq!(t(38.06), 1);
        let rr = |r| rules.news2(&News2Input { respiratory_rate: r, ..base }).unwrap().parts.respiratory_rate;
        assert_eq!(rr(20.4), 0);
        assert_eq!(rr(20.5), 2);
        assert!(rules.news2(&News2Input { heart_rate: f64::NAN, ..base }).is_err());
    }
}
