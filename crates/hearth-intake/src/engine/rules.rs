//! Red-flag rules as data (`data/red_flags.json`) and their evaluation.
//!
//! A rule has a stable code, an English title, the guideline it follows and one or more
//! *tiers* (urgency + condition); it fires when a tier holds, at the highest urgency that
//! holds. Conditions: `{"all": [..]}`, `{"any": [..]}`, `{"set": name}` (a named finding
//! pattern), `{"finding": {codes, sites?, time?, severe?}}`, `{"age_at_least": n}`,
//! `{"age_below": n}`, `{"sex": "female"}` and `{"fact": name}` (a yes-answer on the form).
//! A finding pattern matches a finding that is present and the patient's own, with one of the
//! codes, at one of the sites (any site if none are listed), whose temporality is in `time`
//! (default: current only) and, with `severe: true`, that the patient called severe.
//! An unknown age never satisfies an age condition. A rule whose code is in `Facts::screens`
//! (its screening question was answered "yes") fires at its highest tier in any case. Loading checks that every code is a
//! finding of the lexicon, every site a body site, every set and fact declared, every rule
//! code unique and every source present.

use std::collections::{BTreeMap, HashSet};

use serde::Deserialize;

use super::lexicon::{ConceptKind, Lexicon};
use super::{
    Coding, DataError, Evidence, Experiencer, Facts, Finding, Origin, Polarity, RedFlag, RuleInfo, Sex, Source,
    Temporality, Urgency,
};

const FILE: &str = "red_flags.json";
const FORMAT: &str = "hearth-intake-red-flags/1";

fn err(message: impl Into<String>) -> DataError {
    DataError { file: FILE.to_owned(), message: message.into() }
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Pattern {
    codes: Vec<String>,
    #[serde(default)]
    sites: Vec<String>,
    #[serde(default)]
    time: Option<Vec<Temporality>>,
    #[serde(default)]
    severe: bool,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(rename_all = "snake_case", deny_unknown_fields)]
enum Condition {
    All(Vec<Condition>),
    Any(Vec<Condition>),
    Set(String),
    Finding(Pattern),
    AgeAtLeast(u32),
    AgeBelow(u32),
    Sex(Sex),
    Fact(String),
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Tier {
    urgency: Urgency,
    when: Condition,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct Rule {
    code: String,
    title: String,
    source: Source,
    tiers: Vec<Tier>,
}

#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRules {
    format: String,
    #[serde(default)]
    #[allow(dead_code)]
    notes: String,
    facts: Vec<String>,
    sets: BTreeMap<String, Pattern>,
    rules: Vec<Rule>,
}

/// The loaded, checked rules.
#[derive(Debug, Clone)]
pub(crate) struct RuleSet {
    facts: Vec<String>,
    sets: BTreeMap<String, Pattern>,
    rules: Vec<Rule>,
}

/// What a condition matched: findings (indexes) and facts.
#[derive(Default)]
struct Why {
    findings: Vec<usize>,
    facts: Vec<String>,
}

impl Why {
    fn absorb(&mut self, other: Why) {
        for f in other.findings {
            if !self.findings.contains(&f) {
                self.findings.push(f);
            }
        }
        for f in other.facts {
            if !self.facts.contains(&f) {
                self.facts.push(f);
            }
        }
    }
}

struct Ctx<'a> {
    findings: &'a [Finding],
    facts: &'a Facts,
    age: Option<u32>,
    sets: &'a BTreeMap<String, Pattern>,
}

impl RuleSet {
    pub(crate) fn parse(json: &str, lexicon: &Lexicon) -> Result<RuleSet, DataError> {
        let raw: RawRules = serde_json::from_str(json).map_err(|e| err(format!("invalid JSON: {e}")))?;
        if raw.format != FORMAT {
            return Err(err(format!("format is {:?}, expected {FORMAT:?}", raw.format)));
        }
        let facts: HashSet<&str> = raw.facts.iter().map(String::as_str).collect();
        for (name, pattern) in &raw.sets {
            check_pattern(pattern, lexicon, &format!("set {name}"))?;
        }
        let mut codes = HashSet::new();
        for rule in &raw.rules {
            let code = rule.code.as_str();
            if code.is_empty() || !code.chars().all(|c| c.is_ascii_lowercase() || c == '_') {
                return Err(err(format!("rule code {code:?} must be snake_case")));
            }
            if !codes.insert(code) {
                return Err(err(format!("rule {code} is defined twice")));
            }
            if rule.title.trim().is_empty() {
                return Err(err(format!("rule {code} has no title")));
            }
            if rule.source.title.trim().is_empty() || !rule.source.url.starts_with("https://") {
                return Err(err(format!("rule {code} must cite its guideline (a title and an https URL)")));
            }
            if rule.tiers.is_empty() {
                return Err(err(format!("rule {code} has no tiers")));
            }
            for tier in &rule.tiers {
                check_condition(&tier.when, lexicon, &raw.sets, &facts, code)?;
            }
        }
        Ok(RuleSet { facts: raw.facts, sets: raw.sets, rules: raw.rules })
    }

    /// The declared form facts (`cancer_history`, ...).
    pub(crate) fn facts(&self) -> &[String] {
        &self.facts
    }

    pub(crate) fn info(&self) -> Vec<RuleInfo> {
        self.rules
            .iter()
            .map(|r| RuleInfo {
                code: r.code.clone(),
                title: r.title.clone(),
                max_urgency: r.tiers.iter().map(|t| t.urgency).max().unwrap_or(Urgency::Emergency),
                source: r.source.clone(),
            })
            .collect()
    }

    /// The red flags `findings` and `facts` raise, in rule order.
    pub(crate) fn evaluate(
        &self,
        findings: &[Finding],
        facts: &Facts,
        age: Option<u32>,
        origin: Origin,
    ) -> Vec<RedFlag> {
        let ctx = Ctx { findings, facts, age, sets: &self.sets };
        let mut fired = Vec::new();
        for rule in &self.rules {
            let mut best: Option<(Urgency, Why)> = None;
            for tier in &rule.tiers {
                if let Some(why) = eval(&tier.when, &ctx) {
                    match &mut best {
                        Some((u, w)) if *u >= tier.urgency => w.absorb(why),
                        Some((u, w)) => {
                            *u = tier.urgency;
                            w.absorb(why);
                        }
                        None => best = Some((tier.urgency, why)),
                    }
                }
            }
            // A "yes" to the rule's own screening question: the rule fires at its highest tier.
            if ctx.facts.screens.contains(&rule.code) {
                let top = rule.tiers.iter().map(|t| t.urgency).max().unwrap_or(Urgency::Emergency);
                let screened = Why {
                    findings: Vec::new(),
                    facts: vec![format!("screening question for {} answered yes", rule.code)],
                };
                match &mut best {
                    Some((u, w)) => {
                        *u = (*u).max(top);
                        w.absorb(screened);
                    }
                    None => best = Some((top, screened)),
                }
            }
            let Some((urgency, mut why)) = best else { continue };
            why.findings.sort_unstable();
            let used: Vec<&Finding> = why.findings.iter().filter_map(|&i| findings.get(i)).collect();
            let mut evidence: Vec<Evidence> = Vec::new();
            let mut codings: Vec<Coding> = Vec::new();
            for f in &used {
                if let Some(e) = &f.evidence
                    && !evidence.contains(e)
                {
                    evidence.push(e.clone());
                }
                let coding = Coding { code: f.code.clone(), display: f.display.clone() };
                if !codings.contains(&coding) {
                    codings.push(coding);
                }
            }
            fired.push(RedFlag {
                code: rule.code.clone(),
                title: rule.title.clone(),
                urgency,
                source: rule.source.clone(),
                evidence,
                findings: codings,
                facts: why.facts,
                origin,
                rationale: None,
            });
        }
        fired
    }
}

fn check_pattern(p: &Pattern, lexicon: &Lexicon, what: &str) -> Result<(), DataError> {
    if p.codes.is_empty() {
        return Err(err(format!("{what} lists no codes")));
    }
    for code in &p.codes {
        match lexicon.index_of(code) {
            Some((_, ConceptKind::Finding)) => {}
            _ => return Err(err(format!("{what}: {code} is not a finding of the lexicon"))),
        }
    }
    for site in &p.sites {
        match lexicon.index_of(site) {
            Some((_, ConceptKind::Site)) => {}
            _ => return Err(err(format!("{what}: {site} is not a body site of the lexicon"))),
        }
    }
    if p.time.as_ref().is_some_and(Vec::is_empty) {
        return Err(err(format!("{what}: time must not be empty")));
    }
    Ok(())
}

fn check_condition(
    c: &Condition,
    lexicon: &Lexicon,
    sets: &BTreeMap<String, Pattern>,
    facts: &HashSet<&str>,
    rule: &str,
) -> Result<(), DataError> {
    match c {
        Condition::All(list) | Condition::Any(list) => {
            if list.is_empty() {
                return Err(err(format!("rule {rule}: an all/any list is empty")));
            }
            list.iter().try_for_each(|c| check_condition(c, lexicon, sets, facts, rule))
        }
        Condition::Set(name) if !sets.contains_key(name) => Err(err(format!("rule {rule}: unknown set {name}"))),
        Condition::Fact(name) if !facts.contains(name.as_str()) => {
            Err(err(format!("rule {rule}: fact {name} is not declared in \"facts\"")))
        }
        Condition::Finding(p) => check_pattern(p, lexicon, &format!("rule {rule}")),
        _ => Ok(()),
    }
}

fn pattern_matches(p: &Pattern, ctx: &Ctx<'_>) -> Vec<usize> {
    let times: &[Temporality] = p.time.as_deref().unwrap_or(&[Temporality::Current]);
    ctx.findings
        .iter()
        .enumerate()
        .filter(|(_, f)| {
            f.polarity == Polarity::Present
                && f.experiencer == Experiencer::Patient
                && times.contains(&f.temporality)
                && (!p.severe || f.severe)
                && p.codes.contains(&f.code)
                && (p.sites.is_empty() || f.body_site.as_ref().is_some_and(|s| p.sites.contains(&s.code)))
        })
        .map(|(i, _)| i)
        .collect()
}

fn eval(c: &Condition, ctx: &Ctx<'_>) -> Option<Why> {
    match c {
        Condition::All(list) => {
            let mut why = Why::default();
            for c in list {
                why.absorb(eval(c, ctx)?);
            }
            Some(why)
        }
        Condition::Any(list) => {
            let mut why: Option<Why> = None;
            for w in list.iter().filter_map(|c| eval(c, ctx)) {
                why.get_or_insert_with(Why::default).absorb(w);
            }
            why
        }
        Condition::Set(name) => {
            let found = pattern_matches(ctx.sets.get(name)?, ctx);
            (!found.is_empty()).then_some(Why { findings: found, facts: Vec::new() })
        }
        Condition::Finding(p) => {
            let found = pattern_matches(p, ctx);
            (!found.is_empty()).then_some(Why { findings: found, facts: Vec::new() })
        }
        Condition::AgeAtLeast(n) => ctx
            .age
            .filter(|age| age >= n)
            .map(|age| Why { findings: Vec::new(), facts: vec![format!("age {age} >= {n}")] }),
        Condition::AgeBelow(n) => ctx
            .age
            .filter(|age| age < n)
            .map(|age| Why { findings: Vec::new(), facts: vec![format!("age {age} < {n}")] }),
        Condition::Sex(s) => {
            (ctx.facts.sex == Some(*s)).then(|| Why { findings: Vec::new(), facts: vec![format!("sex {s:?}")] })
        }
        Condition::Fact(name) => {
            ctx.facts.flags.contains(name).then(|| Why { findings: Vec::new(), facts: vec![name.clone()] })
        }
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn lexicon() -> Lexicon {
        Lexicon::parse(include_str!("../../data/lexicon.json")).unwrap()
    }

    const RULES: &str = include_str!("../../data/red_flags.json");

    #[test]
    fn builtin_rules_load() {
        let rules = RuleSet::parse(RULES, &lexicon()).unwrap();
        assert!(rules.info().len() >= 19);
    }

    #[test]
    fn a_yes_to_a_screening_question_fires_the_rule_at_its_top_tier() {
        let lex = lexicon();
        let rules = RuleSet::parse(RULES, &lex).unwrap();
        let mut facts = Facts::default();
        assert!(rules.evaluate(&[], &facts, None, Origin::Rules).is_empty());
        facts.screens.insert("cauda_equina".to_owned());
        facts.screens.insert("spinal_fracture".to_owned());
        let fired = rules.evaluate(&[], &facts, None, Origin::Rules);
        let codes: Vec<(&str, Urgency)> = fired.iter().map(|f| (f.code.as_str(), f.urgency)).collect();
        assert_eq!(codes, [("cauda_equina", Urgency::Emergency), ("spinal_fracture", Urgency::Urgent)]);
        assert!(fired[0].facts[0].contains("screening question"), "{:?}", fired[0].facts);
        facts.screens = ["not_a_rule".to_owned()].into();
        assert!(rules.evaluate(&[], &facts, None, Origin::Rules).is_empty());
    }

    #[test]
    fn malformed_rules_are_refused() {
        let lex = lexicon();
        let cases = [
            (RULES.replace(r#""code": "cauda_equina""#, r#""code": "stroke""#), "defined twice"),
            (RULES.replace("https://www.nice.org.uk/guidance/ng128", ""), "must cite its guideline"),
            (RULES.replace(r#""set": "saddle_sensory_loss""#, r#""set": "nope""#), "unknown set nope"),
            (RULES.replace(r#""fact": "iv_drug_use""#, r#""fact": "iv_drugs""#), "not declared"),
            (RULES.replace(r#""codes": ["41291007"]"#, r#""codes": ["12345"]"#), "not a finding of the lexicon"),
            (RULES.replace(r#""sites": ["661005"]"#, r#""sites": ["25064002"]"#), "not a body site"),
            (RULES.replace(r#""urgency": "urgent""#, r#""urgency": "asap""#), "invalid JSON"),
        ];
        for (json, expected) in cases {
            assert_ne!(json, RULES, "test case for {expected} did not change the data");
            let error = RuleSet::parse(&json, &lex).expect_err(expected).to_string();
            assert!(error.contains(expected), "{error:?} should mention {expected:?}");
        }
    }
}
