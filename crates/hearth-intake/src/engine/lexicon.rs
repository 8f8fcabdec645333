//! The multilingual clinical lexicon (`data/lexicon.json`): SNOMED CT concepts, the words
//! patients use for them in `en`, `hi` and `hi-Latn`, the refinements that turn a generic
//! finding at a body site into a specific one (pain + chest = chest pain), and the context
//! cues (negation, time, experiencer, severity, list words, clause breaks).

use std::collections::HashMap;

use serde::Deserialize;

use super::text::{Tok, TokKind, tokenize};
use super::{DataError, Language, Urgency};

const FILE: &str = "lexicon.json";
const FORMAT: &str = "hearth-intake-lexicon/1";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum ConceptKind {
    Finding,
    Site,
}

/// Context cue kinds; see `data/lexicon.json` and `extract.rs` for how each is scoped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub(crate) enum CueKind {
    NegationBefore,
    NegationAdjacentBefore,
    NegationAfter,
    NegationFiller,
    PastBefore,
    PastAfter,
    ResolvedAfter,
    Neutral,
    Onset,
    Now,
    OtherPerson,
    ProxySubject,
    #[serde(rename = "self")]
    SelfRef,
    Severe,
    Or,
    And,
    ClauseBreak,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLexicon {
    format: String,
    #[serde(default)]
    #[allow(dead_code)]
    notes: String,
    concepts: Vec<RawConcept>,
    refinements: Vec<RawRefinement>,
    terms: Vec<RawTerm>,
    cues: Vec<RawCue>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConcept {
    code: String,
    display: String,
    kind: ConceptKind,
    #[serde(default)]
    base_urgency: Option<Urgency>,
    #[serde(default)]
    takes_site: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRefinement {
    finding: String,
    site: String,
    becomes: String,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTerm {
    #[serde(default)]
    concept: Option<String>,
    #[serde(default)]
    site: Option<String>,
    #[serde(default)]
    en: Vec<String>,
    #[serde(default)]
    hi: Vec<String>,
    #[serde(default, rename = "hi-Latn")]
    hi_latn: Vec<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCue {
    kind: CueKind,
    #[serde(default)]
    en: Vec<String>,
    #[serde(default)]
    hi: Vec<String>,
    #[serde(default, rename = "hi-Latn")]
    hi_latn: Vec<String>,
}

/// A SNOMED CT concept of the lexicon.
#[derive(Debug, Clone)]
pub(crate) struct Concept {
    pub code: String,
    pub display: String,
    pub kind: ConceptKind,
    pub base_urgency: Urgency,
    pub takes_site: bool,
}

/// What a matched phrase means.
#[derive(Debug, Clone, PartialEq)]
pub(crate) enum Payload {
    Finding { concept: usize, site: Option<usize> },
    Site(usize),
    Cue(Vec<CueKind>),
}

impl Payload {
    fn priority(&self) -> u8 {
        match self {
            Payload::Finding { .. } => 3,
            Payload::Site(_) => 2,
            Payload::Cue(_) => 1,
        }
    }
}

#[derive(Debug, Clone)]
struct Entry {
    tokens: Vec<String>,
    loose: bool,
    payload: usize,
}

/// A match of one lexicon phrase on the token stream.
#[derive(Debug, Clone)]
pub(crate) struct Match<'a> {
    /// Number of word tokens consumed.
    pub len: usize,
    pub payload: &'a Payload,
}

/// The compiled lexicon.
#[derive(Debug, Clone)]
pub(crate) struct Lexicon {
    concepts: Vec<Concept>,
    by_code: HashMap<String, usize>,
    refinements: HashMap<(usize, usize), usize>,
    payloads: Vec<Payload>,
    /// Entries keyed by the normalised (exact) or loose form of their first token.
    exact: HashMap<String, Vec<Entry>>,
    loose: HashMap<String, Vec<Entry>>,
    term_count: usize,
}

fn err(message: impl Into<String>) -> DataError {
    DataError { file: FILE.to_owned(), message: message.into() }
}

impl Lexicon {
    pub(crate) fn parse(json: &str) -> Result<Lexicon, DataError> {
        let raw: RawLexicon = serde_json::from_str(json).map_err(|e| err(format!("invalid JSON: {e}")))?;
        if raw.format != FORMAT {
            return Err(err(format!("format is {:?}, expected {FORMAT:?}", raw.format)));
        }
        let mut lex = Lexicon {
            concepts: Vec::new(),
            by_code: HashMap::new(),
            refinements: HashMap::new(),
            payloads: Vec::new(),
            exact: HashMap::new(),
            loose: HashMap::new(),
            term_count: 0,
        };
        for c in raw.concepts {
            let code = c.code.trim();
            if code.is_empty() || !code.chars().all(|ch| ch.is_ascii_digit()) {
                return Err(err(format!("concept code {:?} is not a SNOMED CT identifier", c.code)));
            }
            if c.display.trim().is_empty() {
                return Err(err(format!("concept {code} has no display")));
            }
            let base_urgency = match (c.kind, c.base_urgency) {
                (ConceptKind::Finding, Some(u)) => u,
                (ConceptKind::Finding, None) => return Err(err(format!("finding {code} has no base_urgency"))),
                (ConceptKind::Site, None) => Urgency::SelfCare,
                (ConceptKind::Site, Some(_)) => return Err(err(format!("site {code} must not have a base_urgency"))),
            };
            let idx = lex.concepts.len();
            if lex.by_code.insert(code.to_owned(), idx).is_some() {
                return Err(err(format!("concept {code} is defined twice")));
            }
            lex.concepts.push(Concept {
                code: code.to_owned(),
                display: c.display,
                kind: c.kind,
                base_urgency,
                takes_site: c.takes_site,
            });
        }
        for r in raw.refinements {
            let finding = lex.require(&r.finding, ConceptKind::Finding, "refinement")?;
            let site = lex.require(&r.site, ConceptKind::Site, "refinement")?;
            let becomes = lex.require(&r.becomes, ConceptKind::Finding, "refinement")?;
            if lex.refinements.insert((finding, site), becomes).is_some() {
                return Err(err(format!("refinement of {} at {} is defined twice", r.finding, r.site)));
            }
        }
        let mut phrases: HashMap<(bool, Vec<String>), usize> = HashMap::new();
        for t in raw.terms {
            let payload = match (&t.concept, &t.site) {
                (Some(concept), site) => {
                    let concept = lex.require(concept, ConceptKind::Finding, "term")?;
                    let site = match site {
                        Some(s) => Some(lex.require(s, ConceptKind::Site, "term")?),
                        None => None,
                    };
                    Payload::Finding { concept, site }
                }
                (None, Some(site)) => Payload::Site(lex.require(site, ConceptKind::Site, "term")?),
                (None, None) => return Err(err("a term entry names neither a concept nor a site")),
            };
            let all = [(Language::En, &t.en), (Language::Hi, &t.hi), (Language::HiLatn, &t.hi_latn)];
            if all.iter().all(|(_, list)| list.is_empty()) {
                return Err(err(format!("term entry {payload:?} has no words")));
            }
            for (lang, list) in all {
                for phrase in list {
                    lex.add_phrase(&mut phrases, lang, phrase, payload.clone())?;
                }
            }
        }
        for c in raw.cues {
            for (lang, list) in [(Language::En, &c.en), (Language::Hi, &c.hi), (Language::HiLatn, &c.hi_latn)] {
                for phrase in list {
                    lex.add_phrase(&mut phrases, lang, phrase, Payload::Cue(vec![c.kind]))?;
                }
            }
        }
        for entries in lex.exact.values_mut().chain(lex.loose.values_mut()) {
            entries.sort_by_key(|e| std::cmp::Reverse(e.tokens.len()));
        }
        Ok(lex)
    }

    fn require(&self, code: &str, kind: ConceptKind, what: &str) -> Result<usize, DataError> {
        match self.by_code.get(code.trim()) {
            Some(&idx) if self.concepts.get(idx).is_some_and(|c| c.kind == kind) => Ok(idx),
            Some(_) => Err(err(format!("{what} refers to {code}, which is not a {kind:?} concept"))),
            None => Err(err(format!("{what} refers to unknown concept {code}"))),
        }
    }

    fn add_phrase(
        &mut self,
        phrases: &mut HashMap<(bool, Vec<String>), usize>,
        lang: Language,
        phrase: &str,
        payload: Payload,
    ) -> Result<(), DataError> {
        let (exact_only, body) = match phrase.strip_prefix('=') {
            Some(rest) => (true, rest),
            None => (false, phrase),
        };
        let loose = lang == Language::HiLatn && !exact_only;
        let toks: Vec<Tok> = tokenize(body);
        if toks.is_empty() || toks.iter().any(|t| t.kind != TokKind::Word) {
            return Err(err(format!("phrase {phrase:?} must be one or more words without punctuation")));
        }
        let tokens: Vec<String> = toks.into_iter().map(|t| if loose { t.loose } else { t.norm }).collect();
        self.term_count += 1;
        let key = (loose, tokens.clone());
        if let Some(&existing) = phrases.get(&key) {
            let Some(old) = self.payloads.get_mut(existing) else {
                return Err(err("internal: phrase index out of range"));
            };
            return match (old, payload) {
                (Payload::Cue(kinds), Payload::Cue(more)) => {
                    for k in more {
                        if !kinds.contains(&k) {
                            kinds.push(k);
                        }
                    }
                    Ok(())
                }
                (old, new) if *old == new => Ok(()),
                (old, new) => Err(err(format!("phrase {phrase:?} is listed with two meanings: {old:?} and {new:?}"))),
            };
        }
        let idx = self.payloads.len();
        self.payloads.push(payload);
        phrases.insert(key, idx);
        let Some(first) = tokens.first().cloned() else {
            return Err(err(format!("phrase {phrase:?} is empty")));
        };
        let map = if loose { &mut self.loose } else { &mut self.exact };
        map.entry(first).or_default().push(Entry { tokens, loose, payload: idx });
        Ok(())
    }

    /// The longest phrase starting at word token `at` (ties: finding, then site, then cue).
    /// `toks` must be a run of word tokens.
    pub(crate) fn longest_match<'a>(&'a self, toks: &[Tok], at: usize) -> Option<Match<'a>> {
        let first = toks.get(at)?;
        let mut best: Option<Match<'a>> = None;
        let candidates =
            self.exact.get(&first.norm).into_iter().flatten().chain(self.loose.get(&first.loose).into_iter().flatten());
        for entry in candidates {
            let len = entry.tokens.len();
            let Some(window) = toks.get(at..at + len) else { continue };
            let matches = window.iter().zip(&entry.tokens).all(|(tok, want)| {
                tok.kind == TokKind::Word && if entry.loose { &tok.loose == want } else { &tok.norm == want }
            });
            if !matches {
                continue;
            }
            let Some(payload) = self.payloads.get(entry.payload) else { continue };
            let better = match &best {
                None => true,
                Some(b) => len > b.len || (len == b.len && payload.priority() > b.payload.priority()),
            };
            if better {
                best = Some(Match { len, payload });
            }
        }
        best
    }

    pub(crate) fn concept(&self, idx: usize) -> Option<&Concept> {
        self.concepts.get(idx)
    }

    pub(crate) fn index_of(&self, code: &str) -> Option<(usize, ConceptKind)> {
        let idx = *self.by_code.get(code)?;
        Some((idx, self.concepts.get(idx)?.kind))
    }

    pub(crate) fn refine(&self, finding: usize, site: usize) -> Option<usize> {
        self.refinements.get(&(finding, site)).copied()
    }

    /// Number of phrases (terms and cues) loaded.
    #[cfg(test)]
    pub(crate) fn phrase_count(&self) -> usize {
        self.term_count
    }

    #[cfg(test)]
    pub(crate) fn concept_count(&self) -> usize {
        self.concepts.len()
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    const MINI: &str = r#"{"format": "hearth-intake-lexicon/1",
        "concepts": [{"code": "22253000", "display": "Pain", "kind": "finding", "base_urgency": "routine"},
                     {"code": "51185008", "display": "Thoracic structure", "kind": "site"}],
        "refinements": [], "terms": [{"concept": "22253000", "en": ["pain"]}], "cues": []}"#;

    #[test]
    fn builtin_lexicon_loads() {
        let lex = Lexicon::parse(include_str!("../../data/lexicon.json")).unwrap();
        assert!(lex.concept_count() > 50);
        assert!(lex.phrase_count() > 1000);
    }

    #[test]
    fn a_minimal_lexicon_loads() {
        Lexicon::parse(MINI).unwrap();
    }

    #[test]
    fn malformed_data_is_refused_with_a_clear_error() {
        let cases = [
            ("{", "invalid JSON"),
            (&MINI.replace("lexicon/1", "lexicon/9"), "format"),
            (&MINI.replace(r#""concept": "22253000""#, r#""concept": "99999999""#), "unknown concept 99999999"),
            (&MINI.replace(r#""concept": "22253000""#, r#""concept": "51185008""#), "not a Finding concept"),
            (&MINI.replace(r#", "base_urgency": "routine""#, ""), "no base_urgency"),
            (&MINI.replace(r#"["pain"]"#, r#"["pain, ache"]"#), "without punctuation"),
            (&MINI.replace(r#""kind": "site""#, r#""kind": "organ""#), "invalid JSON"),
            (&MINI.replace(r#""cues": []"#, r#""cues": [], "extra": 1"#), "unknown field"),
            (&MINI.replace(r#""code": "51185008""#, r#""code": "22253000""#), "defined twice"),
            (
                &MINI.replace(
                    r#""terms": [{"concept": "22253000", "en": ["pain"]}]"#,
                    r#""terms": [{"concept": "22253000", "en": ["pain"]}, {"site": "51185008", "en": ["pain"]}]"#,
                ),
                "two meanings",
            ),
        ];
        for (json, expected) in cases {
            let error = Lexicon::parse(json).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
            assert!(error.starts_with("lexicon.json"), "{error}");
        }
    }
}
