//! The model guardrail: merging what an optional language model proposed into the
//! deterministic assessment.
//!
//! A model may only add: findings (marked [`Origin::ModelSuggested`], for a clinician to
//! confirm), red flags, and a higher urgency. It can never remove or weaken a deterministic
//! finding or red flag, nor lower the urgency: the merge starts from the deterministic
//! assessment and only ever appends or raises. The deterministic rules are also run again
//! over the model's findings, so a model that notices "saddle anaesthesia" the lexicon missed
//! still raises `cauda_equina` (marked model-suggested).

use serde::{Deserialize, Serialize};

use super::{
    Assessment, Coding, Engine, Evidence, Experiencer, Finding, Intake, Origin, Polarity, RedFlag, Source, Temporality,
    Urgency,
};

/// A finding a model proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedFinding {
    pub code: String,
    pub display: String,
    #[serde(default)]
    pub body_site: Option<Coding>,
    pub polarity: Polarity,
    pub temporality: Temporality,
    pub experiencer: Experiencer,
    #[serde(default)]
    pub severe: bool,
    /// The words it is based on; kept only if that range of the intake text really has them.
    #[serde(default)]
    pub evidence: Option<Evidence>,
}

/// A red flag a model proposes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct ProposedRedFlag {
    pub code: String,
    pub title: String,
    pub urgency: Urgency,
    /// Why the model thinks so (shown to the clinician).
    pub rationale: String,
}

/// Everything a model proposed for one intake.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct ModelProposal {
    #[serde(default)]
    pub findings: Vec<ProposedFinding>,
    #[serde(default)]
    pub red_flags: Vec<ProposedRedFlag>,
    #[serde(default)]
    pub urgency: Option<Urgency>,
}

const MODEL_SOURCE_TITLE: &str = "Proposed by the language model; not a guideline rule. A clinician must confirm.";

impl Engine {
    /// Merges `proposal` into `deterministic` (the result of [`Engine::assess`] on `intake`).
    /// The result keeps every deterministic finding and red flag unchanged and its urgency is
    /// never lower than `deterministic.urgency`.
    pub fn merge_model(&self, intake: &Intake, deterministic: &Assessment, proposal: &ModelProposal) -> Assessment {
        let mut merged = deterministic.clone();

        for p in &proposal.findings {
            let evidence = p.evidence.clone().filter(|e| intake.text.get(e.start..e.end) == Some(e.text.as_str()));
            let finding = Finding {
                code: p.code.clone(),
                display: p.display.clone(),
                body_site: p.body_site.clone(),
                polarity: p.polarity,
                temporality: p.temporality,
                experiencer: p.experiencer,
                severe: p.severe,
                evidence,
                origin: Origin::ModelSuggested,
            };
            let duplicate = merged.findings.iter().any(|f| {
                f.code == finding.code
                    && f.body_site == finding.body_site
                    && f.polarity == finding.polarity
                    && f.temporality == finding.temporality
                    && f.experiencer == finding.experiencer
            });
            if !duplicate {
                merged.findings.push(finding);
            }
        }

        // The deterministic rules over all findings: only flags not already raised are added.
        let again = self.rules.evaluate(&merged.findings, &intake.facts, merged.age_years, Origin::ModelSuggested);
        for flag in again {
            match merged.red_flags.iter_mut().find(|f| f.code == flag.code) {
                Some(existing) => existing.urgency = existing.urgency.max(flag.urgency),
                None => merged.red_flags.push(flag),
            }
        }

        for p in &proposal.red_flags {
            match merged.red_flags.iter_mut().find(|f| f.code == p.code) {
                Some(existing) => existing.urgency = existing.urgency.max(p.urgency),
                None => merged.red_flags.push(RedFlag {
                    code: p.code.clone(),
                    title: p.title.clone(),
                    urgency: p.urgency,
                    source: Source { title: MODEL_SOURCE_TITLE.to_owned(), url: String::new() },
                    evidence: Vec::new(),
                    findings: Vec::new(),
                    facts: Vec::new(),
                    origin: Origin::ModelSuggested,
                    rationale: Some(p.rationale.clone()),
                }),
            }
        }

        let flags_max = merged.red_flags.iter().map(|f| f.urgency).max().unwrap_or(Urgency::SelfCare);
        merged.urgency = deterministic.urgency.max(flags_max).max(proposal.urgency.unwrap_or(Urgency::SelfCare));
        merged
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::super::{Facts, Language};
    use super::*;

    fn intake(text: &str) -> Intake {
        Intake { language: Language::HiLatn, text: text.to_owned(), facts: Facts::default() }
    }

    #[test]
    fn a_model_can_never_remove_a_flag_or_lower_urgency() {
        let engine = Engine::builtin().unwrap();
        let i = intake("saddle area sunn ho gaya hai aur pishab nahi ho raha");
        let det = engine.assess(&i);
        assert!(det.has_flag("cauda_equina"));
        // The model says it is nothing: self care, the findings absent, no flags.
        let denial = ModelProposal {
            findings: vec![ProposedFinding {
                code: "44077006".to_owned(),
                display: "Numbness".to_owned(),
                body_site: None,
                polarity: Polarity::Absent,
                temporality: Temporality::Current,
                experiencer: Experiencer::Patient,
                severe: false,
                evidence: None,
            }],
            red_flags: vec![ProposedRedFlag {
                code: "cauda_equina".to_owned(),
                title: "Cauda equina".to_owned(),
                urgency: Urgency::SelfCare,
                rationale: "looks fine".to_owned(),
            }],
            urgency: Some(Urgency::SelfCare),
        };
        let merged = engine.merge_model(&i, &det, &denial);
        assert_eq!(merged.urgency, Urgency::Emergency);
        for flag in &det.red_flags {
            let kept = merged.red_flags.iter().find(|f| f.code == flag.code).unwrap();
            assert_eq!(kept, flag, "deterministic flag changed");
        }
        for f in &det.findings {
            assert!(merged.findings.contains(f), "deterministic finding lost");
        }
        assert!(merged.findings.iter().filter(|f| f.origin == Origin::ModelSuggested).count() == 1);
    }

    #[test]
    fn a_model_can_add_findings_and_flags_and_raise_urgency() {
        let engine = Engine::builtin().unwrap();
        let text = "kamar me dard hai, neeche wala hissa kuch ajeeb lagta hai";
        let i = intake(text);
        let det = engine.assess(&i);
        assert!(det.red_flags.is_empty());
        assert_eq!(det.urgency, Urgency::Routine);
        let start = text.find("neeche").unwrap();
        let proposal = ModelProposal {
            findings: vec![ProposedFinding {
                code: "44077006".to_owned(),
                display: "Numbness".to_owned(),
                body_site: Some(Coding { code: "38864007".to_owned(), display: "Perineal structure".to_owned() }),
                polarity: Polarity::Present,
                temporality: Temporality::Current,
                experiencer: Experiencer::Patient,
                severe: false,
                evidence: Some(Evidence { start, end: text.len(), text: text[start..].to_owned() }),
            }],
            red_flags: vec![ProposedRedFlag {
                code: "model_only_concern".to_owned(),
                title: "Unclear perineal symptom".to_owned(),
                urgency: Urgency::Urgent,
                rationale: "perineal sensation may be altered".to_owned(),
            }],
            urgency: Some(Urgency::Urgent),
        };
        let merged = engine.merge_model(&i, &det, &proposal);
        let added = merged.findings.iter().find(|f| f.origin == Origin::ModelSuggested).unwrap();
        assert!(added.evidence.is_some());
        // the deterministic rules, re-run over the model's finding, raise cauda equina
        let ce = merged.red_flags.iter().find(|f| f.code == "cauda_equina").unwrap();
        assert_eq!(ce.origin, Origin::ModelSuggested);
        assert!(merged.has_flag("model_only_concern"));
        assert_eq!(merged.urgency, Urgency::Emergency);

        // Raising alone works too; evidence that is not in the text is dropped.
        let raise = ModelProposal {
            findings: vec![ProposedFinding {
                evidence: Some(Evidence { start: 0, end: 3, text: "xyz".to_owned() }),
                ..proposal.findings[0].clone()
            }],
            red_flags: Vec::new(),
            urgency: Some(Urgency::Soon),
        };
        let merged = engine.merge_model(&i, &det, &raise);
        assert!(merged.findings.iter().any(|f| f.origin == Origin::ModelSuggested && f.evidence.is_none()));
        let only_raise = ModelProposal { urgency: Some(Urgency::Soon), ..ModelProposal::default() };
        assert_eq!(engine.merge_model(&i, &det, &only_raise).urgency, Urgency::Soon);
    }
}
