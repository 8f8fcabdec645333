//! The shipped data (`data/wellness.json`): the code of every logged value, the choices a log
//! takes, the vital signs a summary names, the insight rules with their sources and the texts
//! in English and Hindi. Parsed and checked once; code interprets it, it holds no clinical fact.

use std::collections::BTreeMap;
use std::sync::OnceLock;

use serde::Deserialize;

const WELLNESS_JSON: &str = include_str!("../data/wellness.json");

/// The Hearth code system of what LOINC has no code for (docs/WELLNESS.md lists its codes).
pub const WELLNESS_SYSTEM: &str = "urn:hearth:wellness";
/// Mood tags (`code` = the tag).
pub const MOOD_TAG_SYSTEM: &str = "urn:hearth:wellness:mood-tag";
/// The Goal category of wellness goals.
pub const GOAL_CATEGORY: &str = "wellness";
pub const LOINC: &str = "http://loinc.org";
pub const UCUM: &str = "http://unitsofmeasure.org";

/// One code.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Code {
    pub system: String,
    pub code: String,
    pub display: String,
    /// UCUM ("" for a coded value).
    pub unit: String,
    pub source: String,
}

/// A vital sign a summary names.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Vital {
    /// LOINC.
    pub code: String,
    pub en: String,
    pub hi: String,
    pub unit: String,
    /// The panel it is a component of (blood pressure).
    #[serde(default)]
    pub component_of: Option<String>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Baseline {
    pub days: i64,
    pub min_days: usize,
    pub source: String,
}

/// When a day is worth a word against the baseline.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Rule {
    pub metric: String,
    pub change_percent: f64,
    pub source: String,
}

/// The bounds of one entry's values (`[low, high]`, inclusive).
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Limits {
    pub source: String,
    pub volume_ml: [f64; 2],
    pub energy_kcal: [f64; 2],
    pub nutrient_g: [f64; 2],
    pub duration_minutes: [f64; 2],
    pub sleep_stage_minutes: [f64; 2],
    pub distance_m: [f64; 2],
    pub score: [f64; 2],
    pub tags: [f64; 2],
    pub text_chars: [f64; 2],
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Catalog {
    format: String,
    pub version: String,
    #[allow(dead_code)]
    notes: String,
    codes: BTreeMap<String, Code>,
    choices: BTreeMap<String, Vec<String>>,
    pub limits: Limits,
    pub vitals: Vec<Vital>,
    pub baseline: Baseline,
    pub rules: Vec<Rule>,
    texts: BTreeMap<String, BTreeMap<String, String>>,
}

impl Catalog {
    /// The shipped catalogue, parsed and checked once.
    pub fn builtin() -> Result<&'static Catalog, String> {
        static CATALOG: OnceLock<Result<Catalog, String>> = OnceLock::new();
        CATALOG.get_or_init(|| Catalog::from_json(WELLNESS_JSON)).as_ref().map_err(Clone::clone)
    }

    /// Parses and checks a catalogue: every code the code uses is there, every rule has a
    /// source, both languages have the same texts.
    pub fn from_json(json: &str) -> Result<Catalog, String> {
        let c: Catalog = serde_json::from_str(json).map_err(|e| format!("wellness catalogue: {e}"))?;
        if c.format != "hearth-wellness/1" {
            return Err(format!("wellness catalogue: unknown format {:?}", c.format));
        }
        for name in [
            "food",
            "carbohydrate",
            "protein",
            "fat",
            "fiber",
            "water",
            "sleep",
            "deep_sleep",
            "light_sleep",
            "rem_sleep",
            "awake",
            "exercise",
            "active_energy",
            "distance",
            "steps",
            "mood",
            "mood_tag",
            "meal",
            "activity",
            "meditation",
            "meditation_kind",
            "summary",
        ] {
            let code = c.codes.get(name).ok_or_else(|| format!("wellness catalogue: no code `{name}`"))?;
            if code.source.trim().is_empty() {
                return Err(format!("wellness catalogue: code `{name}` has no source"));
            }
        }
        for name in ["meal", "activity", "meditation_kind"] {
            if c.choices.get(name).is_none_or(Vec::is_empty) {
                return Err(format!("wellness catalogue: no choices for `{name}`"));
            }
        }
        if c.rules.iter().any(|r| r.source.trim().is_empty() || r.change_percent <= 0.0) {
            return Err("wellness catalogue: every rule needs a source and a positive threshold".into());
        }
        let (Some(en), Some(hi)) = (c.texts.get("en"), c.texts.get("hi")) else {
            return Err("wellness catalogue: texts in en and hi are needed".into());
        };
        if en.keys().ne(hi.keys()) {
            return Err("wellness catalogue: en and hi texts differ in their keys".into());
        }
        if c.baseline.days < 1 || c.baseline.min_days < 1 {
            return Err("wellness catalogue: the baseline needs days".into());
        }
        Ok(c)
    }

    /// The code named `name` (checked at load, so a missing one is a bug reported as such).
    pub fn code(&self, name: &str) -> Result<&Code, String> {
        self.codes.get(name).ok_or_else(|| format!("wellness catalogue: no code `{name}`"))
    }

    /// The choices of `name` (`meal`, `activity`, `meditation_kind`).
    pub fn choices(&self, name: &str) -> &[String] {
        self.choices.get(name).map_or(&[], Vec::as_slice)
    }

    /// The rule of a metric.
    pub fn rule(&self, metric: &str) -> Option<&Rule> {
        self.rules.iter().find(|r| r.metric == metric)
    }

    /// A text in `lang` with `{name}` placeholders filled.
    pub fn text(&self, lang: &str, key: &str, args: &[(&str, String)]) -> String {
        let template = self
            .texts
            .get(lang)
            .and_then(|t| t.get(key))
            .or_else(|| self.texts.get("en").and_then(|t| t.get(key)))
            .map_or(key, String::as_str);
        let mut out = template.to_owned();
        for (name, value) in args {
            out = out.replace(&format!("{{{name}}}"), value);
        }
        out
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_catalogue_loads() {
        let c = Catalog::builtin().unwrap();
        assert_eq!(c.code("water").unwrap().code, "105999-7");
        assert_eq!(c.text("hi", "water_line", &[("value", "250".into())]), "250 मि.ली. पानी पिया।");
    }

    /// Every LOINC code and unit here is the one devicecodex gives for that kind (the copy
    /// hearth-selfcare vendors with its licence).
    #[test]
    fn the_loinc_codes_agree_with_devicecodex() {
        let raw = std::fs::read_to_string(concat!(
            env!("CARGO_MANIFEST_DIR"),
            "/../hearth-selfcare/data/devicecodex-vitals-loinc.json"
        ))
        .unwrap();
        let dc: serde_json::Value = serde_json::from_str(&raw).unwrap();
        let codes = &dc["tables"]["devicecodex.code_systems.loinc.LOINC_CODES"];
        let units = &dc["tables"]["devicecodex.interop.LOINC_EXPECTED_UNITS"];
        let c = Catalog::builtin().unwrap();
        let pairs = [
            ("food", "energy_consumed"),
            ("carbohydrate", "carbohydrate"),
            ("protein", "protein"),
            ("fat", "fat"),
            ("fiber", "dietary_fiber"),
            ("water", "water_intake"),
            ("sleep", "sleep_duration"),
            ("deep_sleep", "deep_sleep"),
            ("light_sleep", "light_sleep"),
            ("rem_sleep", "rem_sleep"),
            ("awake", "awake_duration"),
            ("exercise", "active_duration"),
            ("active_energy", "active_energy_burned"),
            ("distance", "distance"),
            ("steps", "steps"),
        ];
        for (ours, theirs) in pairs {
            let code = c.code(ours).unwrap();
            assert_eq!(code.system, LOINC, "{ours}");
            assert_eq!(codes[theirs], code.code.as_str(), "{ours}");
            // Durations are kept in minutes where devicecodex expects hours: both are UCUM time.
            let expected = units[&code.code].as_str().unwrap();
            let same = expected == code.unit || (expected == "h" && code.unit == "min") || expected == "count";
            assert!(same, "{ours}: {expected} vs {}", code.unit);
        }
    }

    #[test]
    fn a_broken_catalogue_is_refused() {
        let mut v: serde_json::Value = serde_json::from_str(WELLNESS_JSON).unwrap();
        v["rules"][0]["source"] = "".into();
        assert!(Catalog::from_json(&v.to_string()).is_err());
        let mut v: serde_json::Value = serde_json::from_str(WELLNESS_JSON).unwrap();
        v["texts"]["hi"].as_object_mut().unwrap().remove("title");
        assert!(Catalog::from_json(&v.to_string()).is_err());
    }
}
