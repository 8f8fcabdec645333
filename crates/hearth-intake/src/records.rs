//! The FHIR resources an intake writes into the patient's record (pure builders).
//!
//! - `Consent` (first, before any question): scope `treatment`, category LOINC 59284-0,
//!   purpose `TREAT` (v3-ActReason), the session's language as the resource language and in
//!   the policy text, the time given; performer the patient.
//! - At the end (emergency or finished), linked to the session by the identifier
//!   `urn:hearth:intake-session|<id>`: one `QuestionnaireResponse` per pack; an `Observation`
//!   per finding of the patient (SNOMED CT, the patient's words in `valueString` and `note`);
//!   per red flag a `Flag` (code `urn:hearth:red-flag|<code>`, status active, the urgency in the
//!   extension `urn:hearth:extension:intake-urgency`) and a provisional `Condition` (evidence:
//!   the Observations); one `RiskAssessment` (a prediction per red flag, qualitative risk
//!   `high` for emergency/urgent and `moderate` otherwise, basis = the Observations); and the
//!   clinician's summary as a `preliminary` `Composition` (LOINC 34117-2), on the appointment's
//!   encounter when there is one.

use serde_json::{Value, json};

use crate::interview::{Questionnaire, response_items};
use crate::session::{Status, Stored, language_tag, urgency_name};
use crate::summary::Summary;
use crate::{Assessment, Experiencer, Finding, Language, Origin, Polarity, RedFlag, Temporality, Urgency};

/// The identifier system linking an intake's resources to its session.
pub const SESSION_SYSTEM: &str = "urn:hearth:intake-session";
/// The code system of red-flag codes (`Flag.code`, `Condition.code`).
pub const RED_FLAG_SYSTEM: &str = "urn:hearth:red-flag";
/// The extension on a `Flag` holding the red flag's urgency (`valueCode`).
pub const URGENCY_EXTENSION: &str = "urn:hearth:extension:intake-urgency";
const SNOMED: &str = "http://snomed.info/sct";

fn identifier(session: &str) -> Value {
    json!({"system": SESSION_SYSTEM, "value": session})
}

fn patient_ref(patient: &str) -> Value {
    json!({"reference": format!("Patient/{patient}")})
}

/// The intake's consent, recorded before the first question.
pub fn consent(patient: &str, language: Language, at: &str) -> Value {
    json!({
        "resourceType": "Consent",
        "language": language_tag(language),
        "status": "active",
        "scope": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/consentscope", "code": "treatment"}]},
        "category": [{"coding": [{"system": "http://loinc.org", "code": "59284-0", "display": "Patient Consent"}]}],
        "patient": patient_ref(patient),
        "dateTime": at,
        "performer": [patient_ref(patient)],
        "policy": [{"uri": "urn:hearth:policy:intake"}],
        "policyRule": {
            "coding": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActCode", "code": "OPTIN"}],
            "text": format!("Consent to a pre-visit intake interview (language {}): the answers are processed to prepare the visit and to detect emergencies, and stored in the patient's record.", language_tag(language)),
        },
        "provision": {
            "type": "permit",
            "period": {"start": at},
            "purpose": [{"system": "http://terminology.hl7.org/CodeSystem/v3-ActReason", "code": "TREAT", "display": "treatment"}],
        },
    })
}

/// One QuestionnaireResponse per pack that has answers.
pub fn questionnaire_responses(
    session: &str,
    patient: &str,
    packs: &[Questionnaire],
    stored: &Stored,
    status: Status,
    language: Language,
    at: &str,
) -> Vec<Value> {
    packs
        .iter()
        .filter_map(|q| {
            let items = response_items(q, &stored.interview);
            if items.is_empty() {
                return None;
            }
            let mut r = json!({
                "resourceType": "QuestionnaireResponse",
                "language": language_tag(language),
                "identifier": identifier(session),
                "status": if status == Status::Finished { "completed" } else { "stopped" },
                "subject": patient_ref(patient),
                "authored": at,
                "source": patient_ref(patient),
                "item": items,
            });
            if let (Some(url), Some(o)) = (&q.url, r.as_object_mut()) {
                o.insert("questionnaire".into(), json!(url));
            }
            Some(r)
        })
        .collect()
}

fn temporality(t: Temporality) -> &'static str {
    match t {
        Temporality::Current => "current",
        Temporality::Resolved => "recently resolved",
        Temporality::Past => "in the past",
    }
}

/// The findings recorded as Observations: present, the patient's own.
pub fn recorded_findings(a: &Assessment) -> Vec<&Finding> {
    let mut out: Vec<&Finding> = Vec::new();
    for f in &a.findings {
        if f.polarity == Polarity::Present
            && f.experiencer == Experiencer::Patient
            && !out.iter().any(|o| o.code == f.code && o.body_site == f.body_site && o.temporality == f.temporality)
        {
            out.push(f);
        }
    }
    out
}

/// An Observation of one finding in the patient's words.
pub fn observation(session: &str, patient: &str, f: &Finding, at: &str) -> Value {
    let words = f.evidence.as_ref().map_or_else(|| f.display.clone(), |e| e.text.clone());
    let mut o = json!({
        "resourceType": "Observation",
        "identifier": [identifier(session)],
        "status": "preliminary",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/observation-category", "code": "survey"}]}],
        "code": {"coding": [{"system": SNOMED, "code": f.code, "display": f.display}], "text": f.display},
        "subject": patient_ref(patient),
        "effectiveDateTime": at,
        "issued": at,
        "valueString": words,
        "note": [{"text": format!("Reported by the patient at intake ({}{}): \"{}\"{}", temporality(f.temporality), if f.severe { ", severe" } else { "" }, words, if f.origin == Origin::ModelSuggested { ". Suggested by the language model, not the rules: a clinician must confirm it." } else { "" })}],
    });
    if let (Some(site), Some(obj)) = (&f.body_site, o.as_object_mut()) {
        obj.insert(
            "bodySite".into(),
            json!({"coding": [{"system": SNOMED, "code": site.code, "display": site.display}], "text": site.display}),
        );
    }
    o
}

fn red_flag_code(flag: &RedFlag) -> Value {
    json!({"coding": [{"system": RED_FLAG_SYSTEM, "code": flag.code, "display": flag.title}], "text": flag.title})
}

/// A Flag for one red flag.
pub fn flag(session: &str, patient: &str, flag: &RedFlag, at: &str) -> Value {
    json!({
        "resourceType": "Flag",
        "extension": [{"url": URGENCY_EXTENSION, "valueCode": urgency_name(flag.urgency).0}],
        "identifier": [identifier(session)],
        "status": "active",
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/flag-category", "code": "clinical", "display": "Clinical"}]}],
        "code": red_flag_code(flag),
        "subject": patient_ref(patient),
        "period": {"start": at},
        "author": {"display": if flag.origin == Origin::ModelSuggested { "Hearth intake: suggested by the language model (to be confirmed)" } else { "Hearth intake red-flag rules" }},
    })
}

/// A provisional Condition for one red flag, with the Observations that raised it.
pub fn condition(session: &str, patient: &str, flag: &RedFlag, evidence: &[String], at: &str) -> Value {
    let mut c = json!({
        "resourceType": "Condition",
        "identifier": [identifier(session)],
        "clinicalStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-clinical", "code": "active"}]},
        "verificationStatus": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-ver-status", "code": "provisional"}]},
        "category": [{"coding": [{"system": "http://terminology.hl7.org/CodeSystem/condition-category", "code": "problem-list-item"}]}],
        "code": red_flag_code(flag),
        "subject": patient_ref(patient),
        "recordedDate": at,
        "note": [{"text": format!("Raised by the intake's red-flag rules ({}; {}). To be confirmed by a clinician.", flag.source.title, flag.source.url)}],
    });
    if !evidence.is_empty()
        && let Some(o) = c.as_object_mut()
    {
        let detail: Vec<Value> = evidence.iter().map(|r| json!({"reference": r})).collect();
        o.insert("evidence".into(), json!([{"detail": detail}]));
    }
    c
}

/// One RiskAssessment of the session's red flags.
pub fn risk_assessment(session: &str, patient: &str, a: &Assessment, basis: &[String], at: &str) -> Value {
    let predictions: Vec<Value> = a
        .red_flags
        .iter()
        .map(|f| {
            let risk = if f.urgency >= Urgency::Urgent { "high" } else { "moderate" };
            json!({
                "outcome": red_flag_code(f),
                "qualitativeRisk": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/risk-probability", "code": risk}]},
                "rationale": format!("urgency {}; {} ({})", urgency_name(f.urgency).0, f.source.title, f.source.url),
            })
        })
        .collect();
    let mut r = json!({
        "resourceType": "RiskAssessment",
        "identifier": [identifier(session)],
        "status": "preliminary",
        "method": {"text": "Hearth intake deterministic red-flag rules"},
        "subject": patient_ref(patient),
        "occurrenceDateTime": at,
        "prediction": predictions,
        "note": [{"text": format!("Overall urgency: {}", urgency_name(a.urgency).0)}],
    });
    if !basis.is_empty()
        && let Some(o) = r.as_object_mut()
    {
        o.insert("basis".into(), Value::Array(basis.iter().map(|b| json!({"reference": b})).collect()));
    }
    r
}

/// Escapes text for HTML and XHTML.
pub fn escape(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    for c in s.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            c if c.is_control() && c != '\n' && c != '\t' => {}
            c => out.push(c),
        }
    }
    out
}

fn section(title: &str, code: Option<&str>, lines: &[String], entries: &[String]) -> Value {
    let body = if lines.is_empty() {
        "<p>None reported.</p>".to_owned()
    } else {
        lines.iter().map(|l| format!("<p>{}</p>", escape(l))).collect::<String>()
    };
    let mut s = json!({
        "title": title,
        "text": {"status": "generated", "div": format!("<div xmlns=\"http://www.w3.org/1999/xhtml\">{body}</div>")},
    });
    if let Some(o) = s.as_object_mut() {
        if let Some(c) = code {
            o.insert("code".into(), json!({"coding": [{"system": "http://loinc.org", "code": c}]}));
        }
        if !entries.is_empty() {
            o.insert("entry".into(), Value::Array(entries.iter().map(|e| json!({"reference": e})).collect()));
        }
    }
    s
}

/// The clinician's summary as a preliminary Composition.
pub fn composition(
    session: &str,
    patient: &str,
    summary: &Summary,
    encounter: Option<&str>,
    flags: &[String],
    observations: &[String],
    at: &str,
) -> Value {
    let red: Vec<String> = summary.red_flags.iter().map(|f| f.line()).collect();
    let mut c = json!({
        "resourceType": "Composition",
        "language": "en",
        "identifier": identifier(session),
        "status": "preliminary",
        "type": {"coding": [{"system": "http://loinc.org", "code": "34117-2", "display": "History and physical note"}], "text": "Intake summary"},
        "subject": patient_ref(patient),
        "date": at,
        "author": [{"display": "Hearth intake (automated; to be reviewed by a clinician)"}],
        "title": format!("Intake summary — urgency {}", summary.urgency),
        "section": [
            section("Red flags", None, &red, flags),
            section("History of presenting complaint", Some("10164-2"), &summary.history_lines(), &[]),
            section("Pertinent positives", None, &summary.finding_lines(true), observations),
            section("Pertinent negatives", None, &summary.finding_lines(false), &[]),
            section("Medications", Some("10160-0"), &summary.medications, &[]),
            section("Allergies", Some("48765-2"), &summary.allergies, &[]),
            section("Patient's own words", None, &summary.word_lines(), &[]),
        ],
    });
    if let (Some(m), Some(Value::Array(sections))) = (&summary.model_summary, c.get_mut("section")) {
        let line = format!("{} ({}): {}", m.note, m.model, m.text);
        sections.push(section("Model-written summary", None, &[line], &[]));
    }
    if !summary.voice_answers.is_empty()
        && let Some(Value::Array(sections)) = c.get_mut("section")
    {
        let media: Vec<String> = summary.voice_answers.iter().filter_map(|v| v.media.clone()).collect();
        sections.push(section("Voice answers", None, &summary.voice_lines(), &media));
    }
    if let (Some(e), Some(o)) = (encounter, c.as_object_mut()) {
        o.insert("encounter".into(), json!({"reference": format!("Encounter/{e}")}));
    }
    c
}

/// A voice answer kept for the clinician: the audio as an attachment, linked to the patient,
/// the session (identifier) and the appointment's encounter when one exists.
pub fn media(
    session: &str,
    patient: &str,
    encounter: Option<&str>,
    question: &str,
    content_type: &str,
    audio: &[u8],
    at: &str,
) -> Value {
    let title = if question.is_empty() {
        "Voice answer at intake".to_owned()
    } else {
        format!("Voice answer at intake to: {question}")
    };
    let mut m = json!({
        "resourceType": "Media",
        "identifier": [identifier(session)],
        "status": "completed",
        "type": {"coding": [{"system": "http://terminology.hl7.org/CodeSystem/media-type", "code": "audio", "display": "Audio"}]},
        "subject": patient_ref(patient),
        "createdDateTime": at,
        "issued": at,
        "content": {
            "contentType": content_type,
            "data": data_encoding::BASE64.encode(audio),
            "size": audio.len(),
            "title": title,
            "creation": at,
        },
        "note": [{"text": "Not transcribed: a clinician should listen to it."}],
    });
    if let (Some(e), Some(o)) = (encounter, m.as_object_mut()) {
        o.insert("encounter".into(), json!({"reference": format!("Encounter/{e}")}));
    }
    m
}
