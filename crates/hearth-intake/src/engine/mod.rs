//! The pure intake engine: text → findings in context → red flags → urgency (+ safety message
//! and the guardrail for model proposals). See the crate documentation for the decisions.

mod extract;
mod guardrail;
mod lexicon;
mod rules;
mod safety;
mod text;

use std::collections::BTreeSet;
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

pub use guardrail::{ModelProposal, ProposedFinding, ProposedRedFlag};
pub use safety::{SafetyConfig, safety_message};

use lexicon::Lexicon;
use rules::RuleSet;

/// The language the patient answered in.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub enum Language {
    /// English.
    #[serde(rename = "en")]
    En,
    /// Hindi in Devanagari.
    #[serde(rename = "hi")]
    Hi,
    /// Hindi (and Hindi–English code-mixing) in Latin script.
    #[serde(rename = "hi-Latn")]
    HiLatn,
}

/// How soon the patient must be seen, lowest first (so `max` is the most urgent).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Urgency {
    /// Self-care advice is enough.
    SelfCare,
    /// A routine appointment.
    Routine,
    /// Within a week.
    Soon,
    /// The same day.
    Urgent,
    /// Now: ambulance / emergency department.
    Emergency,
}

/// A SNOMED CT code with its English display.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Coding {
    pub code: String,
    pub display: String,
}

/// Whether the patient said the finding is there or not.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Polarity {
    Present,
    Absent,
}

/// When the finding applies.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Temporality {
    /// Now, or recent and still relevant (the default).
    Current,
    /// Recent but said to have gone ("ab nahi hai", "went away"): still counts for rules that
    /// say so (a transient ischaemic attack, chest pain in the last hours).
    Resolved,
    /// History ("pehle", "saal pehle", "years ago", "used to").
    Past,
}

/// Whose finding it is.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Experiencer {
    Patient,
    Other,
}

/// Where a finding or red flag came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Origin {
    /// The deterministic lexicon and rules.
    Rules,
    /// Suggested by a language model: a clinician must confirm it.
    ModelSuggested,
}

/// The patient's own words behind a finding: a byte range of the intake text and its text.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Evidence {
    pub start: usize,
    pub end: usize,
    pub text: String,
}

/// One clinical finding extracted from the patient's text.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Finding {
    /// SNOMED CT finding code.
    pub code: String,
    /// English display of `code`.
    pub display: String,
    pub body_site: Option<Coding>,
    pub polarity: Polarity,
    pub temporality: Temporality,
    pub experiencer: Experiencer,
    /// The patient called it severe ("bahut tez", "unbearable").
    #[serde(default)]
    pub severe: bool,
    /// The words it was found in (always set for [`Origin::Rules`]; set for a model suggestion
    /// only when its span really is in the text).
    pub evidence: Option<Evidence>,
    pub origin: Origin,
}

impl Finding {
    /// Present, current and the patient's own.
    pub fn is_current_for_patient(&self) -> bool {
        self.polarity == Polarity::Present
            && self.temporality == Temporality::Current
            && self.experiencer == Experiencer::Patient
    }
}

/// Sex as recorded on the intake form.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Sex {
    Female,
    Male,
    Other,
}

/// Structured answers from the intake form.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct Facts {
    /// Age in years; if absent, an age stated in the text ("65 saal ki hoon", "8 year old")
    /// is used.
    #[serde(default)]
    pub age_years: Option<u32>,
    #[serde(default)]
    pub sex: Option<Sex>,
    /// Yes-answers to the form's risk questions, e.g. `cancer_history`, `immunosuppressed`,
    /// `cast_or_splint` (the vocabulary is listed in `data/red_flags.json`).
    #[serde(default)]
    pub flags: BTreeSet<String>,
    /// Someone (a parent) answers for the patient: "my son", "meri beti" then mean the patient.
    #[serde(default)]
    pub filled_by_proxy: bool,
    /// Red-flag rule codes whose screening question (a Questionnaire item coded
    /// `urn:hearth:red-flag-screen|<rule code>`) the patient answered "yes": each such rule fires
    /// at its highest urgency, whatever the text says (the question was written to screen for it).
    #[serde(default)]
    pub screens: BTreeSet<String>,
}

/// One intake answer to assess.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Intake {
    pub language: Language,
    pub text: String,
    #[serde(default)]
    pub facts: Facts,
}

/// The guideline a red-flag rule follows.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
pub struct Source {
    pub title: String,
    pub url: String,
}

/// A red flag that fired.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct RedFlag {
    /// Stable rule code, e.g. `cauda_equina`.
    pub code: String,
    pub title: String,
    pub urgency: Urgency,
    pub source: Source,
    /// The patient's words that raised it.
    pub evidence: Vec<Evidence>,
    /// The findings that raised it (code and display).
    pub findings: Vec<Coding>,
    /// The structured facts that took part (`age>=60`, `cancer_history`, ...).
    pub facts: Vec<String>,
    pub origin: Origin,
    /// Why a model proposed it (model flags only).
    #[serde(default)]
    pub rationale: Option<String>,
}

/// The result of assessing one intake.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Assessment {
    pub language: Language,
    /// Every finding, including denied, past and other people's ones.
    pub findings: Vec<Finding>,
    pub red_flags: Vec<RedFlag>,
    /// The overall urgency: the highest of the red flags and `base_urgency`.
    pub urgency: Urgency,
    /// The urgency the patient's current findings give without any red flag.
    pub base_urgency: Urgency,
    /// The age used by the rules (from the form, else from the text).
    pub age_years: Option<u32>,
}

impl Assessment {
    /// Whether a red flag with this code fired.
    pub fn has_flag(&self, code: &str) -> bool {
        self.red_flags.iter().any(|f| f.code == code)
    }
}

/// Data that could not be loaded: which file and what is wrong with it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{file}: {message}")]
pub struct DataError {
    pub file: String,
    pub message: String,
}

/// A red-flag rule as loaded (for listing and audits).
#[derive(Debug, Clone, PartialEq, Eq, Serialize)]
pub struct RuleInfo {
    pub code: String,
    pub title: String,
    /// The highest urgency the rule can give.
    pub max_urgency: Urgency,
    pub source: Source,
}

/// The engine: the lexicon and the red-flag rules, loaded and checked once.
#[derive(Debug, Clone)]
pub struct Engine {
    lexicon: Lexicon,
    rules: RuleSet,
}

const LEXICON_JSON: &str = include_str!("../../data/lexicon.json");
const RULES_JSON: &str = include_str!("../../data/red_flags.json");

impl Engine {
    /// The engine over the data shipped in `data/` (parsed on first use, then shared).
    pub fn builtin() -> Result<&'static Engine, DataError> {
        static ENGINE: OnceLock<Result<Engine, DataError>> = OnceLock::new();
        match ENGINE.get_or_init(|| Engine::from_json(LEXICON_JSON, RULES_JSON)) {
            Ok(engine) => Ok(engine),
            Err(e) => Err(e.clone()),
        }
    }

    /// An engine over other lexicon and rule files (same formats as `data/`).
    pub fn from_json(lexicon_json: &str, rules_json: &str) -> Result<Engine, DataError> {
        let lexicon = Lexicon::parse(lexicon_json)?;
        let rules = RuleSet::parse(rules_json, &lexicon)?;
        Ok(Engine { lexicon, rules })
    }

    /// The red-flag rules, in file order.
    pub fn rules(&self) -> Vec<RuleInfo> {
        self.rules.info()
    }

    /// The form facts the rules know (`cancer_history`, `immunosuppressed`, ...): the names a
    /// yes-answer may set in [`Facts::flags`].
    pub fn fact_names(&self) -> &[String] {
        self.rules.facts()
    }

    /// Findings in `text`, each with its context, in text order.
    pub fn extract(&self, text: &str, facts: &Facts) -> Vec<Finding> {
        extract::extract(&self.lexicon, text, facts).findings
    }

    /// Findings, red flags and urgency of one intake. Deterministic: the same intake always
    /// gives the same assessment.
    pub fn assess(&self, intake: &Intake) -> Assessment {
        let extraction = extract::extract(&self.lexicon, &intake.text, &intake.facts);
        let age_years = intake.facts.age_years.or(extraction.age_years);
        let red_flags = self.rules.evaluate(&extraction.findings, &intake.facts, age_years, Origin::Rules);
        let base_urgency = self.base_urgency(&extraction.findings);
        let urgency = red_flags.iter().map(|f| f.urgency).fold(base_urgency, Urgency::max);
        Assessment {
            language: intake.language,
            findings: extraction.findings,
            red_flags,
            urgency,
            base_urgency,
            age_years,
        }
    }

    /// Urgency without red flags: the highest `base_urgency` (see `data/lexicon.json`) of the
    /// patient's present, current findings; `routine` when there is none (nothing recognised
    /// still deserves a clinician's look, so it is never `self_care` by default).
    fn base_urgency(&self, findings: &[Finding]) -> Urgency {
        findings
            .iter()
            .filter(|f| f.is_current_for_patient())
            .filter_map(|f| self.lexicon.index_of(&f.code))
            .filter_map(|(idx, _)| self.lexicon.concept(idx))
            .map(|c| c.base_urgency)
            .max()
            .unwrap_or(Urgency::Routine)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn assess(language: Language, text: &str) -> Assessment {
        let intake = Intake { language, text: text.to_owned(), facts: Facts::default() };
        Engine::builtin().unwrap().assess(&intake)
    }

    #[test]
    fn serde_names_are_the_documented_ones() {
        let names: Vec<String> =
            [Urgency::Emergency, Urgency::Urgent, Urgency::Soon, Urgency::Routine, Urgency::SelfCare]
                .iter()
                .map(|u| serde_json::to_string(u).unwrap())
                .collect();
        assert_eq!(names, [r#""emergency""#, r#""urgent""#, r#""soon""#, r#""routine""#, r#""self_care""#]);
        assert_eq!(serde_json::to_string(&Language::HiLatn).unwrap(), r#""hi-Latn""#);
        assert!(Urgency::Emergency > Urgency::Urgent && Urgency::Soon > Urgency::Routine);
    }

    #[test]
    fn issue_scenario_is_cauda_equina_emergency() {
        let a = assess(Language::HiLatn, "Saddle area sunn ho gaya hai aur pishab nahi ho raha");
        assert!(a.has_flag("cauda_equina"), "{a:#?}");
        assert_eq!(a.urgency, Urgency::Emergency);
        let flag = a.red_flags.iter().find(|f| f.code == "cauda_equina").unwrap();
        let words: Vec<&str> = flag.evidence.iter().map(|e| e.text.as_str()).collect();
        assert!(words.iter().any(|w| w.starts_with("Saddle area sunn ho gaya")), "{words:?}");
        let retention = a.findings.iter().find(|f| f.code == "267064002").unwrap();
        assert!(retention.is_current_for_patient());
        assert_eq!(retention.evidence.as_ref().unwrap().text, "pishab nahi ho raha");
        assert!(flag.source.url.starts_with("https://"));
    }

    #[test]
    fn plain_back_pain_is_routine_without_flags() {
        let a = assess(Language::HiLatn, "2 hafte se kamar me dard hai");
        assert!(a.red_flags.is_empty(), "{:?}", a.red_flags);
        assert_eq!(a.urgency, Urgency::Routine);
        assert_eq!(a.findings[0].code, "279039007");
        let nothing = assess(Language::En, "I would like a check-up");
        assert_eq!(nothing.urgency, Urgency::Routine);
        let throat = assess(Language::En, "I have a sore throat");
        assert_eq!(throat.urgency, Urgency::SelfCare);
    }

    #[test]
    fn evidence_points_at_the_patients_words() {
        let text = "मेरी कमर में दर्द है";
        let a = assess(Language::Hi, text);
        let f = &a.findings[0];
        let ev = f.evidence.as_ref().unwrap();
        assert_eq!(&text[ev.start..ev.end], ev.text);
        assert_eq!(ev.text, "कमर में दर्द");
        assert_eq!(f.display, "Low back pain");
        assert_eq!(f.body_site.as_ref().unwrap().code, "77568009");
    }

    #[test]
    fn every_rule_has_a_source_and_the_required_codes_exist() {
        let engine = Engine::builtin().unwrap();
        let rules = engine.rules();
        for r in &rules {
            assert!(!r.source.title.trim().is_empty(), "{} has no source title", r.code);
            assert!(r.source.url.starts_with("https://"), "{} has no source URL", r.code);
            assert!(!r.title.trim().is_empty());
        }
        let required = [
            "cauda_equina",
            "spinal_fracture",
            "spinal_malignancy",
            "spinal_infection",
            "spinal_cord_compression",
            "progressive_neuro_deficit",
            "septic_arthritis",
            "compartment_syndrome",
            "neurovascular_compromise",
            "open_fracture",
            "hip_fracture",
            "child_hip_urgent",
            "giant_cell_arteritis",
            "acs_chest_pain",
            "stroke",
            "sepsis",
            "anaphylaxis",
            "suicide_risk",
            "dvt_pe",
        ];
        for code in required {
            assert!(rules.iter().any(|r| r.code == code), "rule {code} is missing");
        }
    }
}
