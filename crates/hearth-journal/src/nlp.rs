//! What the NLP job finds in an entry's words (pure: no I/O).
//!
//! - **Language**: Hindi in Devanagari (`hi`), Hindi in Latin script (`hi-Latn`, recognised by
//!   its common function words) or English (`en`).
//! - **Sentiment**: VADER ([`crate::vader`]) for English. Hindi and Hinglish are `not_scored`:
//!   VADER's lexicon is English and we found no Hindi sentiment lexicon under a licence we can
//!   vendor, so a score there would be a guess that looks like a measurement.
//! - **Symptoms** through the intake engine's lexicon (`hearth_intake::Engine::extract`: English,
//!   Hindi and Hinglish, with negation, time and experiencer). A symptom counts as present only
//!   when it is the patient's own, not negated and current ("no headache today" is a mention,
//!   negated, and is not counted).
//! - **Medications** through the medication workflow's knowledge base
//!   (`hearth_medication::interactions::Knowledge::resolve`: ingredient names and synonyms),
//!   each word and pair of words of the text; negated when a negation cue ("not", "didn't",
//!   "forgot", "missed", "skipped", "no", "without", "never") is among the three words before it
//!   in its clause, or a Hindi one ("nahi", "नहीं") among the two after it.
//! - **Automatic tags**: `symptom:<name>` per present symptom, `medication:<name>` per mention
//!   that is not negated, `missed-medication` when one is, and `sentiment:positive|negative|neutral`
//!   (VADER's conventional thresholds, compound ≥ 0.05 and ≤ −0.05).
//!
//! [`ANALYSER_VERSION`] names all of this: stored with every analysis, and when it changes every
//! entry is analysed again.

use serde::{Deserialize, Serialize};

use crate::vader::Vader;

/// The analyser's version: bump it when any rule here, the VADER implementation or a lexicon
/// it uses changes, and the job re-analyses every entry.
pub const ANALYSER_VERSION: &str = "journal-nlp/1 vader-3.3.2";

/// A symptom or medication named in the text.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JournalMention {
    /// SNOMED CT code (symptoms) or the ingredient's value set (medications).
    pub code: String,
    /// English name.
    pub name: String,
    /// Said not to be there (symptom) or not taken (medication).
    pub negated: bool,
    /// The patient's words it was found in.
    pub evidence: String,
}

/// One entry's analysis (stored as the `detail` JSON of its `nlp_analysis` row).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Analysis {
    /// `en`, `hi` (Devanagari) or `hi-Latn`.
    pub language: String,
    /// `scored`, or `not_scored` (not English: see `sentiment_note`).
    pub sentiment_status: String,
    /// VADER's scores when scored.
    pub sentiment: Option<JournalSentiment>,
    /// Why there is no score, when there is none.
    pub sentiment_note: Option<String>,
    pub symptoms: Vec<JournalMention>,
    pub medications: Vec<JournalMention>,
    pub auto_tags: Vec<String>,
}

/// VADER's four scores (as the reference rounds them).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct JournalSentiment {
    pub neg: f64,
    pub neu: f64,
    pub pos: f64,
    /// −1 (most negative) to 1 (most positive).
    pub compound: f64,
}

/// Common Hindi function words as written in Latin script ("Hinglish").
const HINGLISH_MARKERS: &[&str] = &[
    "hai", "hain", "tha", "thi", "nahi", "nahin", "nhi", "mera", "meri", "mere", "mujhe", "aaj", "bahut", "bohot",
    "raha", "rahi", "rahe", "kya", "aur", "se", "ko", "ka", "ki", "ke", "hoon", "hun", "bhi", "abhi", "kuch", "accha",
    "acha", "achha", "theek", "thik", "gaya", "gayi", "lag", "laga", "lagta", "lagti", "dard",
];

/// The language of `text`: `hi` when it holds Devanagari, `hi-Latn` when a fifth or more of
/// its words (and at least two) are Hindi function words in Latin script, else `en`.
pub fn language_of(text: &str) -> &'static str {
    if text.chars().any(|c| ('\u{0900}'..='\u{097F}').contains(&c)) {
        return "hi";
    }
    let words: Vec<String> =
        text.split(|c: char| !c.is_alphabetic()).filter(|w| !w.is_empty()).map(str::to_lowercase).collect();
    let hinglish = words.iter().filter(|w| HINGLISH_MARKERS.contains(&w.as_str())).count();
    if hinglish >= 2 && hinglish * 5 >= words.len() { "hi-Latn" } else { "en" }
}

const NEGATION_BEFORE: &[&str] =
    &["not", "no", "didn't", "didnt", "dont", "don't", "forgot", "missed", "skipped", "without", "never", "haven't"];
const NEGATION_AFTER: &[&str] = &["nahi", "nahin", "nhi", "नहीं", "नही"];

/// Words with their clause number (punctuation ends a clause), lower case.
fn clause_words(text: &str) -> Vec<(usize, String)> {
    let mut out = Vec::new();
    let mut clause = 0;
    let mut word = String::new();
    for c in text.chars() {
        if c.is_alphanumeric() || c == '\'' || c == '\u{2019}' || ('\u{0900}'..='\u{097F}').contains(&c) {
            word.extend(c.to_lowercase());
            continue;
        }
        if !word.is_empty() {
            out.push((clause, std::mem::take(&mut word).replace('\u{2019}', "'")));
        }
        if matches!(c, '.' | ',' | ';' | ':' | '!' | '?' | '\n' | '।') {
            clause += 1;
        }
    }
    if !word.is_empty() {
        out.push((clause, word.replace('\u{2019}', "'")));
    }
    out
}

fn medications(text: &str) -> Vec<JournalMention> {
    let Ok(kb) = hearth_medication::interactions::Knowledge::builtin() else { return Vec::new() };
    let words = clause_words(text);
    let mut out: Vec<JournalMention> = Vec::new();
    let mut i = 0;
    while let Some((clause, w)) = words.get(i) {
        // Longest first: a two-word name ("folic acid") before its first word.
        let pair = words.get(i + 1).filter(|(c, _)| c == clause).map(|(_, n)| format!("{w} {n}"));
        let mut found = None;
        for (cand, len) in pair.into_iter().map(|p| (p, 2)).chain(std::iter::once((w.clone(), 1))) {
            if cand.chars().count() < 4 {
                continue;
            }
            let r = kb.resolve(&hearth_medication::interactions::Drug::named(&cand));
            if let Some(set) = r.ingredients.iter().next() {
                let name = kb.ingredient_name(set).unwrap_or(&cand).to_owned();
                found = Some((set.clone(), name, cand, len));
                break;
            }
        }
        let Some((code, name, evidence, len)) = found else {
            i += 1;
            continue;
        };
        let before = words.get(i.saturating_sub(3)..i).unwrap_or_default();
        let after = words.get(i + len..(i + len + 2).min(words.len())).unwrap_or_default();
        let negated = before.iter().any(|(c, b)| c == clause && NEGATION_BEFORE.contains(&b.as_str()))
            || after.iter().any(|(c, a)| c == clause && NEGATION_AFTER.contains(&a.as_str()));
        if !out.iter().any(|m| m.code == code && m.negated == negated) {
            out.push(JournalMention { code, name, negated, evidence });
        }
        i += len;
    }
    out
}

fn symptoms(text: &str) -> Vec<JournalMention> {
    let Ok(engine) = hearth_intake::Engine::builtin() else { return Vec::new() };
    let mut out: Vec<JournalMention> = Vec::new();
    for f in engine.extract(text, &hearth_intake::Facts::default()) {
        if f.experiencer != hearth_intake::Experiencer::Patient {
            continue;
        }
        let negated = !f.is_current_for_patient();
        if out.iter().any(|m| m.code == f.code && m.negated == negated) {
            continue;
        }
        out.push(JournalMention {
            code: f.code,
            name: f.display,
            negated,
            evidence: f.evidence.map(|e| e.text).unwrap_or_default(),
        });
    }
    out
}

/// Analyses one entry's words.
pub fn analyse(text: &str) -> Analysis {
    let language = language_of(text);
    let (sentiment, note) = if text.trim().is_empty() {
        // A dictation without a transcript: nothing to score (a zero would read as "neutral").
        (None, Some("not scored: the entry has no words (dictation without a transcript)".to_owned()))
    } else if language == "en" {
        let s = Vader::builtin().polarity_scores(text);
        (Some(JournalSentiment { neg: s.neg, neu: s.neu, pos: s.pos, compound: s.compound }), None)
    } else {
        (
            None,
            Some(
                "not scored: VADER's lexicon is English, and no Hindi sentiment lexicon with a licence we can use is \
                 vendored"
                    .to_owned(),
            ),
        )
    };
    let symptoms = symptoms(text);
    let medications = medications(text);
    let mut auto_tags = Vec::new();
    for s in symptoms.iter().filter(|s| !s.negated) {
        push_tag(&mut auto_tags, format!("symptom:{}", s.name.to_lowercase()));
    }
    for m in &medications {
        if m.negated {
            push_tag(&mut auto_tags, "missed-medication".to_owned());
        } else {
            push_tag(&mut auto_tags, format!("medication:{}", m.name.to_lowercase()));
        }
    }
    if let Some(s) = &sentiment {
        let label = if s.compound >= 0.05 {
            "positive"
        } else if s.compound <= -0.05 {
            "negative"
        } else {
            "neutral"
        };
        push_tag(&mut auto_tags, format!("sentiment:{label}"));
    }
    Analysis {
        language: language.to_owned(),
        sentiment_status: if sentiment.is_some() { "scored" } else { "not_scored" }.to_owned(),
        sentiment,
        sentiment_note: note,
        symptoms,
        medications,
        auto_tags,
    }
}

fn push_tag(tags: &mut Vec<String>, tag: String) {
    if !tags.contains(&tag) {
        tags.push(tag);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_negated_symptom_is_a_mention_not_a_present_symptom() {
        let a = analyse("No headache today, but my back pain is worse.");
        let headache: Vec<&JournalMention> =
            a.symptoms.iter().filter(|s| s.name.to_lowercase().contains("headache")).collect();
        assert!(!headache.is_empty(), "{a:?}");
        assert!(headache.iter().all(|s| s.negated), "{a:?}");
        assert!(!a.auto_tags.iter().any(|t| t.contains("headache")), "{a:?}");
        assert_eq!(a.sentiment_status, "scored");
    }

    #[test]
    fn hindi_symptoms_are_found_and_sentiment_is_not_scored() {
        let a = analyse("आज सिर में बहुत दर्द है");
        assert_eq!(a.language, "hi");
        assert_eq!(a.sentiment_status, "not_scored");
        assert!(a.sentiment.is_none() && a.sentiment_note.is_some());
        assert!(a.symptoms.iter().any(|s| !s.negated), "{a:?}");
        let h = analyse("aaj mera sir bahut dard kar raha hai");
        assert_eq!(h.language, "hi-Latn");
        assert_eq!(h.sentiment_status, "not_scored");
        assert_eq!(language_of("I slept well today, no headache"), "en");
    }

    #[test]
    fn an_entry_without_words_is_not_scored() {
        let a = analyse("  ");
        assert_eq!((a.sentiment_status.as_str(), a.sentiment.is_none()), ("not_scored", true));
        assert!(a.symptoms.is_empty() && a.medications.is_empty() && a.auto_tags.is_empty());
    }

    #[test]
    fn medications_with_negation() {
        let a = analyse("Took my warfarin this morning. Forgot the aspirin tonight.");
        let names: Vec<(String, bool)> = a.medications.iter().map(|m| (m.name.to_lowercase(), m.negated)).collect();
        assert!(names.contains(&("warfarin".to_owned(), false)), "{names:?}");
        assert!(names.iter().any(|(n, neg)| n.contains("aspirin") && *neg), "{names:?}");
        assert!(a.auto_tags.contains(&"missed-medication".to_owned()), "{:?}", a.auto_tags);
    }
}
