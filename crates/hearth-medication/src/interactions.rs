//! Drug–drug interaction and allergy checks (pure: no I/O, no clock).
//!
//! Two vendored sets, both data (`data/README.md` says where each came from and its licence):
//! the HL7 PDDI-CDS guide's rules (warfarin + NSAID, digoxin + cyclosporine) over its RxNorm value
//! sets, and 176 curated pairs named by drug names and synonyms. A medication is resolved at
//! ingredient level: an RxNorm code through the value sets (a product or brand code gives its
//! ingredients), a name through the value sets' RxNorm display names, the ingredient names and
//! the curated synonyms (`"Ibuprofen 400 mg tablet"`, `"Advil"`, `"atorvastatin calcium"`).
//! An ingredient in a class value set (NSAIDs, proton pump inhibitors, systemic corticosteroids,
//! loop diuretics, aldosterone antagonists) also carries the class, so a curated pair written for
//! "nsaid" meets celecoxib too.
//!
//! Allergy checks compare a medication with an allergy's substance: the same ingredient, or a
//! member of the class the allergy names ("NSAID"). Cross-reactivity between different
//! ingredients of a class is not inferred: no vendored source states it.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::sync::OnceLock;

use serde::{Deserialize, Serialize};

/// The curated pairs, verbatim (MIT).
pub const CURATED_JSON: &str = include_str!("../data/curated-interactions.json");
/// The PDDI-CDS RxNorm value sets (CC0).
pub const PDDI_VALUESETS_JSON: &str = include_str!("../data/pddi-valuesets.json");
/// The PDDI-CDS rules restated as data (CC0).
pub const PDDI_RULES_JSON: &str = include_str!("../data/pddi-rules.json");
/// RxNorm's FHIR system URI.
pub const RXNORM: &str = "http://www.nlm.nih.gov/research/umls/rxnorm";

/// How serious a finding is. `danger` needs a clinician's override with a reason.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum Severity {
    Caution,
    Warning,
    Danger,
}

impl Severity {
    pub fn as_str(self) -> &'static str {
        match self {
            Severity::Caution => "caution",
            Severity::Warning => "warning",
            Severity::Danger => "danger",
        }
    }
}

/// A medication (or allergy substance) as given: an RxNorm code, a name, or both.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Drug {
    pub code: Option<String>,
    pub name: Option<String>,
}

impl Drug {
    pub fn named(name: &str) -> Drug {
        Drug { code: None, name: Some(name.to_owned()) }
    }
    pub fn coded(code: &str) -> Drug {
        Drug { code: Some(code.to_owned()), name: None }
    }
}

/// What a drug resolved to.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Resolved {
    /// Ingredient value sets (`valueset-ibuprofen`).
    pub ingredients: BTreeSet<String>,
    /// Class value sets, from the ingredients and from a class named outright.
    pub classes: BTreeSet<String>,
    /// Class value sets named outright ("NSAID"): what an allergy to a class means.
    pub named_classes: BTreeSet<String>,
    /// Names the curated pairs are matched on: ingredient names, the matched name itself, class terms.
    pub terms: BTreeSet<String>,
    /// `terms` without the classes the ingredients brought in.
    pub own_terms: BTreeSet<String>,
}

impl Resolved {
    /// Nothing in either set knows this drug.
    pub fn is_unknown(&self) -> bool {
        self.ingredients.is_empty() && self.named_classes.is_empty() && self.own_terms.is_empty()
    }
    fn has_set(&self, set: &str) -> bool {
        self.ingredients.contains(set) || self.classes.contains(set)
    }
}

/// One interaction or allergy finding.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, utoipa::ToSchema)]
pub struct Finding {
    /// `interaction` or `allergy`.
    pub kind: &'static str,
    /// The rule's stable id (`pddi-warfarin-nsaids`, `curated-2`, `allergy-substance`, `allergy-class`).
    pub rule: String,
    pub severity: Severity,
    /// Index of the first medication in the list checked.
    pub a: usize,
    /// Index of the second medication (interactions only).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub b: Option<usize>,
    pub description: String,
    pub mechanism: String,
    pub recommendation: String,
    /// Where the rule comes from.
    pub source: String,
    /// Circumstances in the same list that raise or lower the risk (PDDI-CDS modifiers).
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub modifiers: Vec<String>,
}

/// An allergy as the check needs it.
#[derive(Debug, Clone)]
pub struct Allergy {
    /// The `AllergyIntolerance` id (cited in the finding).
    pub id: String,
    pub substance: Resolved,
    /// `criticality` is `low`: the finding is a warning, not a danger.
    pub low_criticality: bool,
}

// ---- data files ----

#[derive(Deserialize)]
struct ValueSetsFile {
    value_sets: Vec<ValueSetIn>,
}

#[derive(Deserialize)]
struct ValueSetIn {
    id: String,
    #[serde(default)]
    members: Vec<String>,
    #[serde(default)]
    codes: Vec<(String, String)>,
}

#[derive(Deserialize)]
struct RulesFile {
    excluded_value_sets: Vec<Excluded>,
    classes: Vec<ClassIn>,
    rules: Vec<PddiRule>,
}

#[derive(Deserialize)]
struct Excluded {
    value_set: String,
    from: String,
    term: String,
}

#[derive(Deserialize)]
struct ClassIn {
    term: String,
    value_set: String,
    source: String,
}

#[derive(Deserialize)]
struct PddiRule {
    id: String,
    object: Vec<String>,
    precipitant: Vec<String>,
    severity: Severity,
    description: String,
    mechanism: String,
    recommendation: String,
    source: String,
    #[serde(default)]
    modifiers: Vec<Modifier>,
}

#[derive(Deserialize)]
struct Modifier {
    value_set: String,
    #[allow(dead_code)]
    effect: String,
    text: String,
}

#[derive(Deserialize)]
struct CuratedFile {
    count: usize,
    interactions: Vec<CuratedIn>,
}

#[derive(Deserialize)]
struct CuratedIn {
    drug_a: Vec<String>,
    drug_b: Vec<String>,
    severity: Severity,
    description: String,
    mechanism: String,
    recommendation: String,
    source: String,
}

struct Curated {
    id: String,
    a: HashSet<String>,
    b: HashSet<String>,
    rule: CuratedIn,
}

/// Both sets, indexed.
pub struct Knowledge {
    /// RxNorm code → ingredient value sets.
    codes: HashMap<String, BTreeSet<String>>,
    /// Normalised name (RxNorm display or ingredient name) → ingredient value sets.
    names: HashMap<String, BTreeSet<String>>,
    /// Ingredient value set → its name (a curated-comparable term).
    set_term: HashMap<String, String>,
    /// Ingredient value set → the classes it belongs to.
    set_classes: HashMap<String, BTreeSet<String>>,
    /// Class value set → (term, source); and term → class value set.
    class_info: HashMap<String, (String, String)>,
    class_by_term: HashMap<String, String>,
    /// Every name a curated pair uses.
    curated_terms: HashSet<String>,
    pddi: Vec<PddiRule>,
    curated: Vec<Curated>,
}

/// Lower case, one space between words, plain apostrophes.
pub fn normalize(name: &str) -> String {
    name.replace(['\u{2019}', '\u{2018}'], "'").to_lowercase().split_whitespace().collect::<Vec<_>>().join(" ")
}

impl Knowledge {
    /// The vendored sets, loaded and checked once.
    pub fn builtin() -> Result<&'static Knowledge, String> {
        static KB: OnceLock<Result<Knowledge, String>> = OnceLock::new();
        KB.get_or_init(|| Knowledge::load(PDDI_VALUESETS_JSON, PDDI_RULES_JSON, CURATED_JSON))
            .as_ref()
            .map_err(Clone::clone)
    }

    /// Loads and checks the three files: every rule cites a source, every value set a rule or
    /// class names exists, the curated count matches.
    pub fn load(valuesets: &str, rules: &str, curated: &str) -> Result<Knowledge, String> {
        let vs: ValueSetsFile = serde_json::from_str(valuesets).map_err(|e| format!("pddi value sets: {e}"))?;
        let rules: RulesFile = serde_json::from_str(rules).map_err(|e| format!("pddi rules: {e}"))?;
        let cur: CuratedFile = serde_json::from_str(curated).map_err(|e| format!("curated pairs: {e}"))?;
        if cur.count != cur.interactions.len() {
            return Err(format!("curated pairs: count {} but {} pairs", cur.count, cur.interactions.len()));
        }
        let known: HashSet<&str> = vs.value_sets.iter().map(|v| v.id.as_str()).collect();
        let excluded: HashMap<&str, &Excluded> =
            rules.excluded_value_sets.iter().map(|e| (e.value_set.as_str(), e)).collect();
        let mut excluded_codes: HashMap<String, &str> = HashMap::new();
        for v in &vs.value_sets {
            if let Some(e) = excluded.get(v.id.as_str()) {
                for (code, _) in &v.codes {
                    excluded_codes.insert(code.clone(), e.from.as_str());
                }
            }
        }
        let mut kb = Knowledge {
            codes: HashMap::new(),
            names: HashMap::new(),
            set_term: HashMap::new(),
            set_classes: HashMap::new(),
            class_info: HashMap::new(),
            class_by_term: HashMap::new(),
            curated_terms: HashSet::new(),
            pddi: Vec::new(),
            curated: Vec::new(),
        };
        for c in &rules.classes {
            let Some(class) = vs.value_sets.iter().find(|v| v.id == c.value_set) else {
                return Err(format!("class {}: no value set {}", c.term, c.value_set));
            };
            if c.source.trim().is_empty() {
                return Err(format!("class {}: no source", c.term));
            }
            for m in &class.members {
                kb.set_classes.entry(m.clone()).or_default().insert(c.value_set.clone());
            }
            kb.class_info.insert(c.value_set.clone(), (normalize(&c.term), c.source.clone()));
            kb.class_by_term.insert(normalize(&c.term), c.value_set.clone());
        }
        for v in &vs.value_sets {
            if v.codes.is_empty() {
                continue;
            }
            let term = match excluded.get(v.id.as_str()) {
                Some(e) => normalize(&e.term),
                None => normalize(v.id.strip_prefix("valueset-").unwrap_or(&v.id)),
            };
            kb.names.entry(term.clone()).or_default().insert(v.id.clone());
            kb.set_term.insert(v.id.clone(), term);
            for (code, display) in &v.codes {
                if excluded_codes.get(code).is_some_and(|from| *from == v.id) {
                    continue;
                }
                kb.codes.entry(code.clone()).or_default().insert(v.id.clone());
                if !display.is_empty() {
                    kb.names.entry(normalize(display)).or_default().insert(v.id.clone());
                }
            }
        }
        for r in rules.rules {
            if r.source.trim().is_empty() {
                return Err(format!("rule {}: no source", r.id));
            }
            for set in r.object.iter().chain(&r.precipitant).chain(r.modifiers.iter().map(|m| &m.value_set)) {
                if !known.contains(set.as_str()) {
                    return Err(format!("rule {}: no value set {set}", r.id));
                }
            }
            kb.pddi.push(r);
        }
        for (i, c) in cur.interactions.into_iter().enumerate() {
            if c.source.trim().is_empty() {
                return Err(format!("curated pair {}: no source", i + 1));
            }
            let a: HashSet<String> = c.drug_a.iter().map(|n| normalize(n)).collect();
            let b: HashSet<String> = c.drug_b.iter().map(|n| normalize(n)).collect();
            if a.is_empty() || b.is_empty() {
                return Err(format!("curated pair {}: a side without a name", i + 1));
            }
            kb.curated_terms.extend(a.iter().cloned());
            kb.curated_terms.extend(b.iter().cloned());
            kb.curated.push(Curated { id: format!("curated-{}", i + 1), a, b, rule: c });
        }
        Ok(kb)
    }

    /// Every RxNorm code the value sets know, with the ingredient sets it resolves to.
    pub fn codes(&self) -> impl Iterator<Item = (&str, &BTreeSet<String>)> {
        self.codes.iter().map(|(c, s)| (c.as_str(), s))
    }

    /// The ingredient name of an ingredient value set.
    pub fn ingredient_name(&self, set: &str) -> Option<&str> {
        self.set_term.get(set).map(String::as_str)
    }

    /// The ingredient value sets of a class value set (or the set itself for an ingredient).
    pub fn members(&self, set: &str) -> Vec<String> {
        if self.class_info.contains_key(set) {
            let mut m: Vec<String> =
                self.set_classes.iter().filter(|(_, c)| c.contains(set)).map(|(s, _)| s.clone()).collect();
            m.sort();
            m
        } else {
            vec![set.to_owned()]
        }
    }

    /// The PDDI rules' (id, object sets, precipitant sets).
    pub fn pddi_rules(&self) -> impl Iterator<Item = (&str, &[String], &[String])> {
        self.pddi.iter().map(|r| (r.id.as_str(), r.object.as_slice(), r.precipitant.as_slice()))
    }

    /// The curated pairs' (id, names of side a, names of side b).
    pub fn curated_pairs(&self) -> impl Iterator<Item = (&str, &[String], &[String])> {
        self.curated.iter().map(|c| (c.id.as_str(), c.rule.drug_a.as_slice(), c.rule.drug_b.as_slice()))
    }

    /// The codes of an ingredient value set (after exclusions).
    pub fn codes_of(&self, set: &str) -> Vec<&str> {
        let mut v: Vec<&str> = self.codes.iter().filter(|(_, s)| s.contains(set)).map(|(c, _)| c.as_str()).collect();
        v.sort_unstable();
        v
    }

    /// The ingredient value set a name names, if it is an ingredient name.
    pub fn set_of_term(&self, term: &str) -> Option<&str> {
        let t = normalize(term);
        self.set_term.iter().find(|(_, v)| **v == t).map(|(k, _)| k.as_str())
    }

    /// The class value set a term names ("nsaid").
    pub fn class_of_term(&self, term: &str) -> Option<&str> {
        self.class_by_term.get(&normalize(term)).map(String::as_str)
    }

    /// Resolves a drug to ingredients, classes and names.
    pub fn resolve(&self, drug: &Drug) -> Resolved {
        let mut r = Resolved::default();
        if let Some(code) = drug.code.as_deref().map(str::trim)
            && let Some(sets) = self.codes.get(code)
        {
            r.ingredients.extend(sets.iter().cloned());
        }
        if let Some(name) = drug.name.as_deref() {
            for cand in candidates(&normalize(name)) {
                let mut hit = false;
                if let Some(sets) = self.names.get(&cand) {
                    r.ingredients.extend(sets.iter().cloned());
                    hit = true;
                }
                if self.curated_terms.contains(&cand) {
                    r.own_terms.insert(cand.clone());
                    hit = true;
                }
                if let Some(class) = self.class_by_term.get(&cand) {
                    r.named_classes.insert(class.clone());
                    r.own_terms.insert(cand.clone());
                    hit = true;
                }
                if hit {
                    break;
                }
            }
        }
        for set in &r.ingredients {
            if let Some(t) = self.set_term.get(set) {
                r.own_terms.insert(t.clone());
            }
            if let Some(classes) = self.set_classes.get(set) {
                r.classes.extend(classes.iter().cloned());
            }
        }
        r.classes.extend(r.named_classes.iter().cloned());
        r.terms = r.own_terms.clone();
        for class in &r.classes {
            if let Some((term, _)) = self.class_info.get(class) {
                r.terms.insert(term.clone());
            }
        }
        r
    }

    /// Every interacting pair in a list of resolved medications (each pair once, `a < b`).
    pub fn interactions(&self, meds: &[Resolved]) -> Vec<Finding> {
        let mut out = Vec::new();
        for (i, x) in meds.iter().enumerate() {
            for (j, y) in meds.iter().enumerate().skip(i + 1) {
                for rule in &self.pddi {
                    let meets = |p: &Resolved, q: &Resolved| {
                        rule.object.iter().any(|s| p.has_set(s)) && rule.precipitant.iter().any(|s| q.has_set(s))
                    };
                    if meets(x, y) || meets(y, x) {
                        let mut modifiers = Vec::new();
                        for m in &rule.modifiers {
                            let present =
                                meds.iter().enumerate().any(|(k, z)| k != i && k != j && z.has_set(&m.value_set));
                            if present && !modifiers.contains(&m.text) {
                                modifiers.push(m.text.clone());
                            }
                        }
                        out.push(Finding {
                            kind: "interaction",
                            rule: rule.id.clone(),
                            severity: rule.severity,
                            a: i,
                            b: Some(j),
                            description: rule.description.clone(),
                            mechanism: rule.mechanism.clone(),
                            recommendation: rule.recommendation.clone(),
                            source: rule.source.clone(),
                            modifiers,
                        });
                    }
                }
                for c in &self.curated {
                    let meets = |p: &Resolved, q: &Resolved| {
                        p.terms.iter().any(|t| c.a.contains(t)) && q.terms.iter().any(|t| c.b.contains(t))
                    };
                    if meets(x, y) || meets(y, x) {
                        out.push(Finding {
                            kind: "interaction",
                            rule: c.id.clone(),
                            severity: c.rule.severity,
                            a: i,
                            b: Some(j),
                            description: c.rule.description.clone(),
                            mechanism: c.rule.mechanism.clone(),
                            recommendation: c.rule.recommendation.clone(),
                            source: format!("{} (curated set: drug-interaction-mcp 0.1.0)", c.rule.source),
                            modifiers: Vec::new(),
                        });
                    }
                }
            }
        }
        out
    }

    /// The allergies a medication (at `index` in the list checked) meets.
    pub fn allergies(&self, index: usize, med: &Resolved, allergies: &[Allergy]) -> Vec<Finding> {
        let mut out = Vec::new();
        for a in allergies {
            let s = &a.substance;
            let same = s.ingredients.iter().any(|i| med.ingredients.contains(i))
                || s.own_terms.iter().any(|t| med.own_terms.contains(t) && !self.class_by_term.contains_key(t));
            let class = s.named_classes.iter().find(|c| med.classes.contains(*c));
            let severity = if a.low_criticality { Severity::Warning } else { Severity::Danger };
            if same {
                out.push(Finding {
                    kind: "allergy",
                    rule: "allergy-substance".to_owned(),
                    severity,
                    a: index,
                    b: None,
                    description: "The patient has a recorded allergy or intolerance to this substance.".to_owned(),
                    mechanism: "Re-exposure to a substance the patient reacted to.".to_owned(),
                    recommendation: "Do not give unless a clinician has reviewed the allergy record.".to_owned(),
                    source: format!("AllergyIntolerance/{}", a.id),
                    modifiers: Vec::new(),
                });
            } else if let Some(class) = class {
                let (term, source) = self.class_info.get(class).cloned().unwrap_or_default();
                out.push(Finding {
                    kind: "allergy",
                    rule: "allergy-class".to_owned(),
                    severity,
                    a: index,
                    b: None,
                    description: format!("The patient has a recorded allergy or intolerance to the class ({term}) this medication belongs to."),
                    mechanism: "Re-exposure to a member of a drug class the patient reacted to.".to_owned(),
                    recommendation: "Do not give unless a clinician has reviewed the allergy record.".to_owned(),
                    source: format!("AllergyIntolerance/{}; class membership: {source}", a.id),
                    modifiers: Vec::new(),
                });
            }
        }
        out
    }
}

/// The names tried for one given name, most specific first: the whole name, the part before the
/// first digit (the strength and form dropped), then that part with trailing words dropped one
/// at a time (a salt: "atorvastatin calcium" → "atorvastatin").
fn candidates(n: &str) -> Vec<String> {
    let mut out = vec![n.to_owned()];
    let head = n.split(|c: char| c.is_ascii_digit()).next().unwrap_or("").trim();
    let head = head.trim_end_matches([',', '-', '(', ' ']).trim();
    if !head.is_empty() && head != n {
        out.push(head.to_owned());
    }
    let mut words: Vec<&str> = head.split(' ').filter(|w| !w.is_empty()).collect();
    while words.len() > 1 {
        words.pop();
        out.push(words.join(" "));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loads() {
        assert!(Knowledge::builtin().is_ok());
    }

    #[test]
    fn candidates_drop_strength_then_salt() {
        assert_eq!(candidates("ibuprofen 400 mg tablet"), vec!["ibuprofen 400 mg tablet", "ibuprofen"]);
        assert_eq!(candidates("atorvastatin calcium"), vec!["atorvastatin calcium", "atorvastatin"]);
    }

    #[test]
    fn refuses_a_rule_without_a_source() {
        let rules = PDDI_RULES_JSON.replacen(
            "\"source\": \"HL7 PDDI-CDS, PlanDefinition warfarin",
            "\"source\": \"\", \"x\": \"",
            1,
        );
        let err = Knowledge::load(PDDI_VALUESETS_JSON, &rules, CURATED_JSON).err();
        assert!(err.is_some_and(|e| e.contains("no source")));
    }

    #[test]
    fn refuses_a_wrong_curated_count() {
        let cur = CURATED_JSON.replacen("\"count\": 176", "\"count\": 175", 1);
        assert!(Knowledge::load(PDDI_VALUESETS_JSON, PDDI_RULES_JSON, &cur).is_err());
    }
}
