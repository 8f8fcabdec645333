//! One interview session's logic, without I/O: what is stored for it, and what one turn does
//! (apply the answer, keep the patient's words, run the engine over everything said so far plus
//! the screening answers, decide the status).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::interview::{AnswerError, AnswerValue, Applied, Input, Interview, Questionnaire, State};
use crate::model::{ModelNote, ModelSummary};
use crate::{Assessment, Engine, Facts, Intake, Language, Urgency};

/// A session's status.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "snake_case")]
pub enum Status {
    /// The interview goes on.
    Active,
    /// Stopped by an emergency: the patient was told to call for help.
    Emergency,
    /// Every question is answered.
    Finished,
}

impl Status {
    pub fn as_str(self) -> &'static str {
        match self {
            Status::Active => "active",
            Status::Emergency => "emergency",
            Status::Finished => "finished",
        }
    }

    pub fn parse(s: &str) -> Option<Status> {
        Some(match s {
            "active" => Status::Active,
            "emergency" => Status::Emergency,
            "finished" => Status::Finished,
            _ => return None,
        })
    }
}

/// The urgency's name (`emergency`, `urgent`, `soon`, `routine`, `self_care`) and queue rank.
pub fn urgency_name(u: Urgency) -> (&'static str, i64) {
    match u {
        Urgency::Emergency => ("emergency", 4),
        Urgency::Urgent => ("urgent", 3),
        Urgency::Soon => ("soon", 2),
        Urgency::Routine => ("routine", 1),
        Urgency::SelfCare => ("self_care", 0),
    }
}

/// The language's tag (`en`, `hi`, `hi-Latn`).
pub fn language_tag(l: Language) -> &'static str {
    match l {
        Language::En => "en",
        Language::Hi => "hi",
        Language::HiLatn => "hi-Latn",
    }
}

/// `en`, `hi` or `hi-Latn`.
pub fn parse_language(s: &str) -> Option<Language> {
    Some(match s {
        "en" => Language::En,
        "hi" => Language::Hi,
        "hi-Latn" => Language::HiLatn,
        _ => return None,
    })
}

/// What the `state` column holds.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
pub struct Stored {
    #[serde(default)]
    pub interview: State,
    /// Age and sex from the patient's record (the screening answers are derived each turn).
    #[serde(default)]
    pub facts: Facts,
    /// Snapshots of the clinic's own Questionnaires (`Questionnaire/<id>` → the resource as it
    /// was when the session started), so a session never changes under the patient.
    #[serde(default)]
    pub questionnaires: BTreeMap<String, Value>,
    /// The chat model's rewrite of the summary at the end of a finished interview (optional;
    /// the deterministic summary is the record).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_summary: Option<ModelSummary>,
}

/// One free-text turn: the patient's words.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Turn {
    /// When (RFC 3339).
    pub at: String,
    /// The question it answered, if any (`<pack>#<linkId>`).
    pub question: Option<String>,
    /// The patient's words (for a voice answer: the transcript, or empty when it is kept as
    /// audio for the clinician).
    pub text: String,
    /// What the optional chat model said about these words (its English rendering and the
    /// findings and red flags it proposes, merged add-only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model: Option<ModelNote>,
    /// A voice answer: how it was taken.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub voice: Option<Voice>,
}

/// A voice answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Voice {
    /// `Media/<id>`: the audio kept for the clinician (no transcription, or it failed).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub media: Option<String>,
    pub content_type: String,
    /// The text is the transcription service's.
    #[serde(default)]
    pub transcribed: bool,
}

/// Everything said so far, one turn a sentence (so a negation never reaches into the next turn).
pub fn corpus(turns: &[Turn]) -> String {
    let mut out = String::new();
    for t in turns.iter().filter(|t| !t.text.trim().is_empty()) {
        if !out.is_empty() {
            out.push_str(".\n");
        }
        out.push_str(t.text.trim());
    }
    out
}

/// The facts the rules see: the record's, plus every "yes" to a screening question (a rule
/// code goes to `screens`, a declared fact name to `flags`).
pub fn facts_with_screens(engine: &Engine, packs: &[Questionnaire], stored: &Stored) -> Facts {
    let mut facts = stored.facts.clone();
    let rules: Vec<String> = engine.rules().into_iter().map(|r| r.code).collect();
    for (_, item, values) in stored.interview.answered(packs) {
        if item.screens.is_empty() || !values.iter().any(AnswerValue::is_yes) {
            continue;
        }
        for code in &item.screens {
            if rules.contains(code) {
                facts.screens.insert(code.clone());
            } else if engine.fact_names().contains(code) {
                facts.flags.insert(code.clone());
            }
        }
    }
    facts
}

/// The engine's assessment of the session so far: the deterministic assessment of everything
/// said, then each turn's model proposal merged into it through the guardrail (add-only: a
/// proposal never removes a finding or red flag nor lowers the urgency).
pub fn assess(
    engine: &Engine,
    packs: &[Questionnaire],
    stored: &Stored,
    turns: &[Turn],
    language: Language,
) -> Assessment {
    let facts = facts_with_screens(engine, packs, stored);
    let mut assessment = engine.assess(&Intake { language, text: corpus(turns), facts: facts.clone() });
    for t in turns {
        if let Some(note) = &t.model {
            let intake = Intake { language, text: t.text.clone(), facts: facts.clone() };
            assessment = engine.merge_model(&intake, &assessment, &note.proposal);
        }
    }
    assessment
}

/// The status an assessment leaves the session in.
pub fn status_of(packs: &[Questionnaire], stored: &Stored, assessment: &Assessment) -> Status {
    if assessment.urgency == Urgency::Emergency {
        Status::Emergency
    } else if Interview::new(packs).next(&stored.interview).is_none() {
        Status::Finished
    } else {
        Status::Active
    }
}

/// A voice answer kept as audio (`Media/<id>`) for the clinician: the open question is moved
/// past (answered by the clinician later, even when required) and the turn recorded with no
/// words. The assessment does not change but the status may (the last question).
pub fn take_voice_turn(
    engine: &Engine,
    packs: &[Questionnaire],
    stored: &mut Stored,
    turns: &mut Vec<Turn>,
    language: Language,
    voice: Voice,
    at: &str,
) -> Result<TurnResult, TurnError> {
    let interview = Interview::new(packs);
    let pos = interview.next(&stored.interview).ok_or(TurnError::Finished)?;
    let pack = packs.get(pos.pack).map(|q| q.name.clone()).unwrap_or_default();
    let key = format!("{pack}#{}", pos.link_id);
    stored.interview.passed.insert(key.clone());
    interview.calculate(&mut stored.interview, at);
    turns.push(Turn { at: at.to_owned(), question: Some(key), text: String::new(), model: None, voice: Some(voice) });
    let assessment = assess(engine, packs, stored, turns, language);
    let status = status_of(packs, stored, &assessment);
    Ok(TurnResult { applied: Applied::Unmatched { passed: true }, assessment, status })
}

/// What one turn did.
#[derive(Debug, Clone)]
pub struct TurnResult {
    pub applied: Applied,
    pub assessment: Assessment,
    pub status: Status,
}

/// Why a turn was not taken.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum TurnError {
    /// No question is open (the interview is over).
    Finished,
    Answer(AnswerError),
}

/// Applies `input` to the open question, keeps the patient's words, assesses and decides the
/// status. On an error nothing changes.
pub fn take_turn(
    engine: &Engine,
    packs: &[Questionnaire],
    stored: &mut Stored,
    turns: &mut Vec<Turn>,
    language: Language,
    input: &Input,
    at: &str,
) -> Result<TurnResult, TurnError> {
    let interview = Interview::new(packs);
    let pos = interview.next(&stored.interview).ok_or(TurnError::Finished)?;
    let pack = packs.get(pos.pack).map(|q| q.name.clone()).unwrap_or_default();
    let question = Some(format!("{pack}#{}", pos.link_id));
    let applied = interview.apply(&mut stored.interview, &pos, input).map_err(TurnError::Answer)?;
    interview.calculate(&mut stored.interview, at);
    match input {
        Input::Text(text) => {
            turns.push(Turn { at: at.to_owned(), question, text: text.trim().to_owned(), model: None, voice: None });
        }
        Input::Answer(_) => {
            // Words given as a structured answer to a text question are the patient's words too.
            if let Applied::Answered(values) = &applied {
                for v in values {
                    if let AnswerValue::String { value } = v {
                        turns.push(Turn {
                            at: at.to_owned(),
                            question: question.clone(),
                            text: value.clone(),
                            model: None,
                            voice: None,
                        });
                    }
                }
            }
        }
    }
    let assessment = assess(engine, packs, stored, turns, language);
    let status = status_of(packs, stored, &assessment);
    Ok(TurnResult { applied, assessment, status })
}

/// The patient-facing closing line when the interview is finished.
pub fn thanks(language: Language) -> &'static str {
    match language {
        Language::En => "Thank you. Your answers have been sent to your doctor.",
        Language::Hi => "धन्यवाद। आपके जवाब आपके डॉक्टर को भेज दिए गए हैं।",
        Language::HiLatn => "Dhanyavaad. Aapke jawab aapke doctor ko bhej diye gaye hain.",
    }
}

/// Said when free text fitted no option of a required question.
pub fn ask_again(language: Language) -> &'static str {
    match language {
        Language::En => "Please choose one of the options (you can type its number).",
        Language::Hi => "कृपया दिए गए विकल्पों में से एक चुनें (आप उसका नंबर लिख सकते हैं)।",
        Language::HiLatn => "Kripya diye gaye vikalpon mein se ek chunein (aap uska number likh sakte hain).",
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn packs() -> Vec<Questionnaire> {
        let json = serde_json::from_str(include_str!("../tests/fixtures/intake-fixture.json")).unwrap();
        vec![Questionnaire::parse("fixture", &json).unwrap()]
    }

    #[test]
    fn hinglish_free_text_stops_the_interview_as_an_emergency() {
        let engine = Engine::builtin().unwrap();
        let packs = packs();
        let (mut stored, mut turns) = (Stored::default(), Vec::new());
        let r = take_turn(
            engine,
            &packs,
            &mut stored,
            &mut turns,
            Language::Hi,
            &Input::Text("kamar me dard hai".into()),
            "t1",
        )
        .unwrap();
        assert_eq!(r.status, Status::Active);
        let r = take_turn(
            engine,
            &packs,
            &mut stored,
            &mut turns,
            Language::Hi,
            &Input::Text("saddle area sunn ho gaya hai aur pishab nahi ho raha".into()),
            "t2",
        )
        .unwrap();
        assert_eq!(r.status, Status::Emergency);
        assert!(r.assessment.has_flag("cauda_equina"));
        assert_eq!(turns.len(), 2);
        assert_eq!(turns[1].question.as_deref(), Some("fixture#where"));
    }

    #[test]
    fn a_yes_to_the_screening_question_is_an_emergency_even_without_words() {
        let engine = Engine::builtin().unwrap();
        let packs = packs();
        let (mut stored, mut turns) = (Stored::default(), Vec::new());
        for input in [Input::Text("knee pain".into()), Input::Answer(serde_json::json!("knee"))] {
            let r = take_turn(engine, &packs, &mut stored, &mut turns, Language::En, &input, "t").unwrap();
            assert_eq!(r.status, Status::Active);
        }
        let r = take_turn(
            engine,
            &packs,
            &mut stored,
            &mut turns,
            Language::En,
            &Input::Answer(serde_json::json!(true)),
            "t",
        )
        .unwrap();
        assert_eq!(r.status, Status::Emergency);
        assert!(r.assessment.has_flag("cauda_equina"));
        // A "no" does not.
        let (mut stored, mut turns) = (Stored::default(), Vec::new());
        for input in [Input::Text("knee pain".into()), Input::Text("3".into()), Input::Text("nahi".into())] {
            let r = take_turn(engine, &packs, &mut stored, &mut turns, Language::HiLatn, &input, "t").unwrap();
            assert_eq!(r.status, Status::Active);
        }
    }
}
