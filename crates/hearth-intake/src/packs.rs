//! The built-in interview packs: FHIR SDC Questionnaires shipped in `data/questionnaires/`,
//! embedded at build time through the one explicit list below, and parsed once.
//!
//! To ship a pack, add its file to `data/questionnaires/` and one line to [`BUILTIN`]
//! (`("ortho-knee", include_str!("../data/questionnaires/ortho-knee.json"))`); the unit test
//! below parses every listed pack, so a pack the runner cannot ask fails the build's tests.
//! A clinic's own packs are `Questionnaire` resources in the store, named `Questionnaire/<id>`
//! when a session starts.
//!
//! When a session names no pack: `general-history` if it is shipped, else the built-in
//! free-text fallback ([`FALLBACK`]: one question, "what is your main problem?", in the three
//! languages), so an interview always has something to ask.

use std::sync::OnceLock;

use serde_json::Value;

use crate::interview::{Questionnaire, QuestionnaireError};

/// `(name, Questionnaire JSON)` of every shipped pack, in the order they are offered.
pub const BUILTIN: &[(&str, &str)] = &[
    ("general-history", include_str!("../data/questionnaires/general-history.json")),
    ("ortho-low-back", include_str!("../data/questionnaires/ortho-low-back.json")),
    ("ortho-neck", include_str!("../data/questionnaires/ortho-neck.json")),
    ("ortho-shoulder", include_str!("../data/questionnaires/ortho-shoulder.json")),
    ("ortho-elbow", include_str!("../data/questionnaires/ortho-elbow.json")),
    ("ortho-wrist-hand", include_str!("../data/questionnaires/ortho-wrist-hand.json")),
    ("ortho-hip", include_str!("../data/questionnaires/ortho-hip.json")),
    ("ortho-knee", include_str!("../data/questionnaires/ortho-knee.json")),
    ("ortho-ankle-foot", include_str!("../data/questionnaires/ortho-ankle-foot.json")),
    ("ortho-injury-fracture-followup", include_str!("../data/questionnaires/ortho-injury-fracture-followup.json")),
    ("ortho-child-limp", include_str!("../data/questionnaires/ortho-child-limp.json")),
];

/// The pack a session gets when it names none and `general-history` is not shipped.
pub const FALLBACK: &str = "free-text";

const FALLBACK_JSON: &str = r#"{
  "resourceType": "Questionnaire",
  "url": "urn:hearth:questionnaire:free-text",
  "name": "HearthFreeText",
  "title": "Tell us about your problem",
  "status": "active",
  "item": [
    {"linkId": "complaint", "type": "text", "required": true,
     "code": [{"system": "urn:hearth:intake-section", "code": "chief-complaint"}],
     "text": "What is your main problem? Please describe it in your own words: where, since when, and what makes it better or worse.",
     "_text": {"extension": [
       {"url": "http://hl7.org/fhir/StructureDefinition/translation", "extension": [
         {"url": "lang", "valueCode": "hi"},
         {"url": "content", "valueString": "आपकी मुख्य तकलीफ़ क्या है? अपने शब्दों में बताइए: कहाँ है, कब से है, और किससे बढ़ती या घटती है।"}]},
       {"url": "http://hl7.org/fhir/StructureDefinition/translation", "extension": [
         {"url": "lang", "valueCode": "hi-Latn"},
         {"url": "content", "valueString": "Aapki mukhya takleef kya hai? Apne shabdon mein bataiye: kahan hai, kab se hai, aur kis se badhti ya ghatti hai."}]}]}},
    {"linkId": "more", "type": "text",
     "text": "Is there anything else you want the doctor to know?",
     "_text": {"extension": [
       {"url": "http://hl7.org/fhir/StructureDefinition/translation", "extension": [
         {"url": "lang", "valueCode": "hi"},
         {"url": "content", "valueString": "क्या कुछ और है जो आप डॉक्टर को बताना चाहते हैं?"}]},
       {"url": "http://hl7.org/fhir/StructureDefinition/translation", "extension": [
         {"url": "lang", "valueCode": "hi-Latn"},
         {"url": "content", "valueString": "Kya kuch aur hai jo aap doctor ko batana chahte hain?"}]}]}}
  ]
}"#;

/// Every built-in pack (and the fallback), parsed once.
fn all() -> &'static Result<Vec<Questionnaire>, QuestionnaireError> {
    static PACKS: OnceLock<Result<Vec<Questionnaire>, QuestionnaireError>> = OnceLock::new();
    PACKS.get_or_init(|| {
        let mut out = Vec::new();
        for (name, json) in BUILTIN.iter().copied().chain(std::iter::once((FALLBACK, FALLBACK_JSON))) {
            let value: Value = serde_json::from_str(json)
                .map_err(|e| QuestionnaireError { pack: name.to_owned(), message: format!("invalid JSON: {e}") })?;
            out.push(Questionnaire::parse(name, &value)?);
        }
        Ok(out)
    })
}

/// The built-in pack `name`, if shipped.
pub fn builtin(name: &str) -> Result<Option<Questionnaire>, QuestionnaireError> {
    match all() {
        Ok(list) => Ok(list.iter().find(|q| q.name == name).cloned()),
        Err(e) => Err(e.clone()),
    }
}

/// The names of the shipped packs (without the fallback).
pub fn names() -> Vec<&'static str> {
    BUILTIN.iter().map(|(n, _)| *n).collect()
}

/// The packs a session runs when it names none.
pub fn default_names() -> Vec<String> {
    if BUILTIN.iter().any(|(n, _)| *n == "general-history") {
        vec!["general-history".to_owned()]
    } else {
        vec![FALLBACK.to_owned()]
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn every_listed_pack_and_the_fallback_parse() {
        let list = all().as_ref().unwrap();
        assert_eq!(list.len(), BUILTIN.len() + 1);
        assert!(builtin(FALLBACK).unwrap().is_some());
        assert!(builtin("no-such-pack").unwrap().is_none());
        assert!(!default_names().is_empty());
    }
}
