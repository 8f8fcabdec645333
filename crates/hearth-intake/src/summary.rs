//! The clinician's summary of a session, in English: red flags first (with the evidence that
//! raised them and the guideline), urgency, history of the presenting complaint, pertinent
//! positives and negatives, medications, allergies, and the patient's own words in their
//! language with an English gloss (the English names of what the lexicon recognised in them).
//! Rendered as JSON, plain text or HTML (every string escaped).

use serde::{Deserialize, Serialize};

use crate::interview::{AnswerValue, Questionnaire};
use crate::records::escape;
use crate::session::{Stored, Turn, language_tag, urgency_name};
use crate::{Assessment, Engine, Experiencer, Facts, Finding, Language, Origin, Polarity, Temporality};

/// The guideline a red flag follows.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct SourceView {
    pub title: String,
    pub url: String,
}

/// One red flag in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FlagView {
    /// Stable code (`cauda_equina`, …).
    pub code: String,
    pub title: String,
    pub urgency: String,
    /// What raised it: the patient's words, or the screening question answered yes.
    pub evidence: Vec<String>,
    pub source: SourceView,
    /// The findings behind it (English).
    pub findings: Vec<String>,
    /// Proposed by the language model, not a guideline rule: a clinician must confirm it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_suggested: bool,
    /// Why the model proposed it (model suggestions only).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub rationale: Option<String>,
}

impl FlagView {
    /// One line for text renderings.
    pub fn line(&self) -> String {
        let mut line = format!(
            "{} [{}; {}] — evidence: {} — source: {} ({})",
            self.title,
            self.code,
            self.urgency,
            if self.evidence.is_empty() { "none recorded".to_owned() } else { quoted(&self.evidence) },
            self.source.title,
            self.source.url
        );
        if self.model_suggested {
            line.push_str(" — MODEL-SUGGESTED, to be confirmed");
            if let Some(r) = &self.rationale {
                line.push_str(&format!(": {r}"));
            }
        }
        line
    }
}

fn quoted(list: &[String]) -> String {
    list.iter().map(|e| format!("\"{e}\"")).collect::<Vec<_>>().join("; ")
}

/// A finding in the summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct FindingView {
    /// SNOMED CT code.
    pub code: String,
    pub display: String,
    pub body_site: Option<String>,
    /// `current`, `resolved` or `past`.
    pub when: String,
    pub severe: bool,
    /// The patient's words (or the question answered).
    pub evidence: Option<String>,
    /// Suggested by the language model, not the lexicon: a clinician must confirm it.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub model_suggested: bool,
}

/// A question and its answer, in English.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct HistoryLine {
    pub question: String,
    pub answer: String,
}

/// A free-text turn with its English gloss.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct WordsView {
    /// As the patient wrote it.
    pub text: String,
    /// The session's language (`en`, `hi`, `hi-Latn`).
    pub language: String,
    /// What was recognised, in English ("no …" for a denial); empty when nothing was.
    pub gloss: String,
    /// The language model's English rendering (only with a chat provider; machine
    /// translation, to be read beside the patient's own words).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_english: Option<String>,
    /// The words are a voice answer's transcript.
    #[serde(default, skip_serializing_if = "std::ops::Not::not")]
    pub from_voice: bool,
}

/// A voice answer.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct VoiceView {
    /// The question it answered (English).
    pub question: String,
    pub at: String,
    pub content_type: String,
    /// `Media/<id>`: the audio, not transcribed, for the clinician to hear.
    pub media: Option<String>,
    /// The transcript (when a transcription service took it).
    pub transcript: Option<String>,
}

/// The chat model's rewrite of the summary (only with a chat provider, for a finished
/// interview): machine-written, beside the deterministic summary, never instead of it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
pub struct ModelSummaryView {
    pub text: String,
    pub model: String,
    /// Always says that a language model wrote it and that the sections are the record.
    pub note: String,
}

/// The clinician's summary.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, utoipa::ToSchema)]
#[schema(as = IntakeSummary)]
pub struct Summary {
    pub session: String,
    pub patient: String,
    pub appointment: Option<String>,
    /// `active`, `emergency` or `finished`.
    pub status: String,
    pub language: String,
    /// `emergency`, `urgent`, `soon`, `routine` or `self_care`.
    pub urgency: String,
    /// Most urgent first.
    pub red_flags: Vec<FlagView>,
    /// The chief complaint in the patient's words, with its gloss.
    pub presenting_complaint: Option<String>,
    pub history: Vec<HistoryLine>,
    pub pertinent_positives: Vec<FindingView>,
    pub pertinent_negatives: Vec<FindingView>,
    pub medications: Vec<String>,
    pub allergies: Vec<String>,
    pub patient_words: Vec<WordsView>,
    /// Voice answers: transcribed, or kept as audio (`Media`) awaiting a clinician.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub voice_answers: Vec<VoiceView>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub model_summary: Option<ModelSummaryView>,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<String>,
}

/// The session facts the summary is built from.
pub struct Input<'a> {
    pub session: &'a str,
    pub patient: &'a str,
    pub appointment: Option<&'a str>,
    pub status: &'a str,
    pub language: Language,
    pub packs: &'a [Questionnaire],
    pub stored: &'a Stored,
    pub turns: &'a [Turn],
    pub assessment: &'a Assessment,
    pub reviewed_by: Option<String>,
    pub reviewed_at: Option<String>,
}

fn when(t: Temporality) -> &'static str {
    match t {
        Temporality::Current => "current",
        Temporality::Resolved => "resolved",
        Temporality::Past => "past",
    }
}

fn finding_view(f: &Finding) -> FindingView {
    FindingView {
        code: f.code.clone(),
        display: f.display.clone(),
        body_site: f.body_site.as_ref().map(|s| s.display.clone()),
        when: when(f.temporality).to_owned(),
        severe: f.severe,
        evidence: f.evidence.as_ref().map(|e| e.text.clone()),
        model_suggested: f.origin == Origin::ModelSuggested,
    }
}

fn named(f: &Finding) -> String {
    match &f.body_site {
        Some(site) => format!("{} ({})", f.display, site.display),
        None => f.display.clone(),
    }
}

/// The English gloss of `text`: what the lexicon recognised, denials as "no …".
pub fn gloss(engine: &Engine, text: &str, facts: &Facts) -> String {
    let mut parts: Vec<String> = Vec::new();
    for f in engine.extract(text, facts) {
        let mut s = named(&f);
        if f.polarity == Polarity::Absent {
            s = format!("no {s}");
        }
        if f.experiencer == Experiencer::Other {
            s = format!("{s} (someone else)");
        } else if f.temporality != Temporality::Current {
            s = format!("{s} ({})", when(f.temporality));
        }
        if !parts.contains(&s) {
            parts.push(s);
        }
    }
    parts.join("; ")
}

fn section_of(link_id: &str, section: Option<&str>) -> Option<&'static str> {
    let l = link_id.to_lowercase();
    match section {
        Some("medications") => Some("medications"),
        Some("allergies") => Some("allergies"),
        Some("chief-complaint") => Some("chief-complaint"),
        _ if l.contains("medic") || l.contains("drug") => Some("medications"),
        _ if l.contains("allerg") => Some("allergies"),
        _ => None,
    }
}

/// What the summary says of the model's rewrite.
pub const MODEL_SUMMARY_NOTE: &str = "Written by a language model from the sections of this summary; not checked by the rules. The sections are the record.";

/// Builds the summary.
pub fn build(engine: &Engine, i: &Input<'_>) -> Summary {
    let a = i.assessment;
    let answered = i.stored.interview.answered(i.packs);
    // Red flags, most urgent first (rule order within an urgency).
    let mut flags: Vec<&crate::RedFlag> = a.red_flags.iter().collect();
    flags.sort_by_key(|f| std::cmp::Reverse(f.urgency));
    let red_flags = flags
        .into_iter()
        .map(|f| {
            let mut evidence: Vec<String> = f.evidence.iter().map(|e| e.text.clone()).collect();
            for (_, item, values) in &answered {
                if item.screens.contains(&f.code) && values.iter().any(AnswerValue::is_yes) {
                    evidence.push(format!("answered yes to: {}", item.text.en));
                }
            }
            FlagView {
                code: f.code.clone(),
                title: f.title.clone(),
                urgency: urgency_name(f.urgency).0.to_owned(),
                evidence,
                source: SourceView { title: f.source.title.clone(), url: f.source.url.clone() },
                findings: f.findings.iter().map(|c| c.display.clone()).collect(),
                model_suggested: f.origin == Origin::ModelSuggested,
                rationale: f.rationale.clone(),
            }
        })
        .collect();

    let (mut history, mut medications, mut allergies) = (Vec::new(), Vec::new(), Vec::new());
    let mut complaint: Option<String> = None;
    let (mut positives, mut negatives): (Vec<FindingView>, Vec<FindingView>) = (Vec::new(), Vec::new());
    for (_, item, values) in &answered {
        let answer = values.iter().map(AnswerValue::english).collect::<Vec<_>>().join("; ");
        let question = if item.text.en.is_empty() { item.link_id.clone() } else { item.text.en.clone() };
        match section_of(&item.link_id, item.section.as_deref()) {
            Some("medications") => medications.push(answer.clone()),
            Some("allergies") => allergies.push(format!("{question} {answer}")),
            Some("chief-complaint") if complaint.is_none() => {
                let g = gloss(engine, &answer, &i.stored.facts);
                complaint = Some(if g.is_empty() { answer.clone() } else { format!("{answer} [{g}]") });
            }
            _ => {}
        }
        if let Some((code, display)) = &item.finding {
            let view = FindingView {
                code: code.clone(),
                display: if display.is_empty() { item.text.en.clone() } else { display.clone() },
                body_site: None,
                when: "current".into(),
                severe: false,
                evidence: Some(format!("{question} — {answer}")),
                model_suggested: false,
            };
            if values.iter().any(AnswerValue::is_yes) {
                positives.push(view);
            } else if values.iter().any(AnswerValue::is_no) {
                negatives.push(view);
            }
        }
        history.push(HistoryLine { question, answer });
    }
    for f in a.findings.iter().filter(|f| f.experiencer == Experiencer::Patient) {
        let view = finding_view(f);
        let list = if f.polarity == Polarity::Present { &mut positives } else { &mut negatives };
        if !list.iter().any(|v| v.code == view.code && v.body_site == view.body_site && v.when == view.when) {
            list.push(view);
        }
    }
    let patient_words = i
        .turns
        .iter()
        .filter(|t| !t.text.trim().is_empty())
        .map(|t| WordsView {
            text: t.text.clone(),
            language: language_tag(i.language).to_owned(),
            gloss: gloss(engine, &t.text, &i.stored.facts),
            model_english: t.model.as_ref().and_then(|m| m.english.clone()),
            from_voice: t.voice.is_some(),
        })
        .collect::<Vec<_>>();
    let voice_answers = i
        .turns
        .iter()
        .filter_map(|t| {
            let v = t.voice.as_ref()?;
            let question = t
                .question
                .as_deref()
                .and_then(|q| q.split_once('#'))
                .and_then(|(pack, link)| {
                    i.packs.iter().find(|p| p.name == pack)?.items.iter().find(|it| it.link_id == link)
                })
                .map(|it| it.text.en.clone())
                .unwrap_or_default();
            Some(VoiceView {
                question,
                at: t.at.clone(),
                content_type: v.content_type.clone(),
                media: v.media.clone(),
                transcript: v.transcribed.then(|| t.text.clone()),
            })
        })
        .collect();
    if complaint.is_none()
        && let Some(first) = patient_words.first()
    {
        complaint =
            Some(if first.gloss.is_empty() { first.text.clone() } else { format!("{} [{}]", first.text, first.gloss) });
    }
    Summary {
        session: i.session.to_owned(),
        patient: format!("Patient/{}", i.patient),
        appointment: i.appointment.map(|a| format!("Appointment/{a}")),
        status: i.status.to_owned(),
        language: language_tag(i.language).to_owned(),
        urgency: urgency_name(a.urgency).0.to_owned(),
        red_flags,
        presenting_complaint: complaint,
        history,
        pertinent_positives: positives,
        pertinent_negatives: negatives,
        medications,
        allergies,
        patient_words,
        voice_answers,
        model_summary: i.stored.model_summary.as_ref().map(|m| ModelSummaryView {
            text: m.text.clone(),
            model: m.model.clone(),
            note: MODEL_SUMMARY_NOTE.to_owned(),
        }),
        reviewed_by: i.reviewed_by.clone(),
        reviewed_at: i.reviewed_at.clone(),
    }
}

impl Summary {
    pub fn history_lines(&self) -> Vec<String> {
        let mut out: Vec<String> =
            self.presenting_complaint.iter().map(|c| format!("Presenting complaint: {c}")).collect();
        out.extend(self.history.iter().map(|h| format!("{}: {}", h.question, h.answer)));
        out
    }

    pub fn finding_lines(&self, positive: bool) -> Vec<String> {
        let list = if positive { &self.pertinent_positives } else { &self.pertinent_negatives };
        list.iter()
            .map(|f| {
                let mut s = f.display.clone();
                if let Some(site) = &f.body_site {
                    s = format!("{s} ({site})");
                }
                if f.when != "current" {
                    s = format!("{s}, {}", f.when);
                }
                if f.severe {
                    s.push_str(", severe");
                }
                if f.model_suggested {
                    s.push_str(", model-suggested (to be confirmed)");
                }
                match &f.evidence {
                    Some(e) => format!("{s} — \"{e}\""),
                    None => s,
                }
            })
            .collect()
    }

    pub fn word_lines(&self) -> Vec<String> {
        self.patient_words
            .iter()
            .map(|w| {
                let gloss = if w.gloss.is_empty() { "nothing recognised" } else { w.gloss.as_str() };
                let mut line = format!("\"{}\" ({}) — {}", w.text, w.language, gloss);
                if let Some(e) = &w.model_english {
                    line.push_str(&format!(" — machine translation: \"{e}\""));
                }
                line
            })
            .collect()
    }

    pub fn voice_lines(&self) -> Vec<String> {
        self.voice_answers
            .iter()
            .map(|v| match (&v.media, &v.transcript) {
                (Some(m), _) => {
                    format!("{} — voice answer not transcribed, to be heard: {m} ({})", v.question, v.content_type)
                }
                (None, Some(t)) => format!("{} — voice answer, transcribed: \"{t}\"", v.question),
                (None, None) => format!("{} — voice answer", v.question),
            })
            .collect()
    }

    fn sections(&self) -> Vec<(&'static str, Vec<String>)> {
        let mut out = vec![
            ("Red flags", self.red_flags.iter().map(FlagView::line).collect()),
            ("History of presenting complaint", self.history_lines()),
            ("Pertinent positives", self.finding_lines(true)),
            ("Pertinent negatives", self.finding_lines(false)),
            ("Medications", self.medications.clone()),
            ("Allergies", self.allergies.clone()),
            ("Patient's own words", self.word_lines()),
        ];
        if !self.voice_answers.is_empty() {
            out.push(("Voice answers", self.voice_lines()));
        }
        out
    }

    /// The clinical sections as plain text, without the header (no session or patient id):
    /// what the chat model may rewrite.
    pub fn clinical_text(&self) -> String {
        let mut out = format!("URGENCY: {}\n", self.urgency.to_uppercase());
        for (title, lines) in self.sections() {
            out.push_str(&format!("\n{}\n", title.to_uppercase()));
            if lines.is_empty() {
                out.push_str("- none reported\n");
            }
            for l in lines {
                out.push_str(&format!("- {l}\n"));
            }
        }
        out
    }

    /// Plain text.
    pub fn to_text(&self) -> String {
        let mut out = format!("INTAKE SUMMARY (session {})\n", self.session);
        out.push_str(&format!("Patient: {}  Status: {}  Language: {}\n", self.patient, self.status, self.language));
        out.push_str(&self.clinical_text());
        if let Some(m) = &self.model_summary {
            out.push_str(&format!("\nMODEL-WRITTEN SUMMARY ({})\n{}\n- {}\n", m.model, m.note, m.text));
        }
        out
    }

    /// A standalone HTML page; every string from the session is escaped.
    pub fn to_html(&self) -> String {
        let mut out = String::from(
            "<!DOCTYPE html>\n<html lang=\"en\"><head><meta charset=\"utf-8\"><title>Intake summary</title></head><body>\n",
        );
        out.push_str(&format!(
            "<h1>Intake summary</h1>\n<p>Patient: {} · Status: {} · Language: {}</p>\n<p><strong>Urgency: {}</strong></p>\n",
            escape(&self.patient),
            escape(&self.status),
            escape(&self.language),
            escape(&self.urgency)
        ));
        for (title, lines) in self.sections() {
            out.push_str(&format!("<h2>{}</h2>\n<ul>\n", escape(title)));
            if lines.is_empty() {
                out.push_str("<li>none reported</li>\n");
            }
            for l in lines {
                out.push_str(&format!("<li>{}</li>\n", escape(&l)));
            }
            out.push_str("</ul>\n");
        }
        if let Some(m) = &self.model_summary {
            out.push_str(&format!(
                "<h2>Model-written summary ({})</h2>\n<p><em>{}</em></p>\n<p>{}</p>\n",
                escape(&m.model),
                escape(&m.note),
                escape(&m.text)
            ));
        }
        out.push_str("</body></html>\n");
        out
    }
}
