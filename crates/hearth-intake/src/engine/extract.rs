//! Finding extraction with context.
//!
//! 1. The text is tokenised and the lexicon matched greedily left to right, longest phrase
//!    first, on token boundaries; each match (finding, body site or cue) or leftover word is
//!    one *item*. Phrases that contain negation words ("pishab nahi ho raha" = urinary
//!    retention) are findings, so their "nahi" never negates anything.
//! 2. Items are grouped into clauses (ended by punctuation and by "but", "lekin", "par"...) and
//!    sentences (ended by `.` `!` `?` `;` danda, newline).
//! 3. For each finding, within its clause:
//!    - **site**: a finding that takes a site and has none gets the nearest body-site item
//!      at most 4 items away (before wins a tie), then is refined (pain + back = low back pain);
//!    - **negation** before it ("no", "denies", "without", "bina"; "na"/"ना" only right before)
//!      within 4 items, or after it ("nahi", "नहीं", "bilkul nahi") with only filler words
//!      ("to", "bhi", "koi") between, since Hindi negation follows the symptom. A negation
//!      reaches across an "or"-list ("denies fever or chills", "bukhar ya khansi nahi") but not
//!      across "and"/"aur": when in doubt, a symptom stays present (a false alarm is cheaper
//!      than a missed red flag);
//!    - **time**: a past cue ("pehle", "saal pehle", "used to", "years ago") binds to the nearest
//!      finding in its reading direction (Hindi "pehle" to the one after it, English "ago" to
//!      the one before it), never across "now"/"ab"/"abhi", and spreads over an "and"/"or"
//!      list. Onset words ("shuru hua", "started") keep a finding current; "din pehle",
//!      "days ago", "se pehle" are not history. A "resolved" cue ("ab nahi", "theek ho gaya",
//!      "went away") right after a finding makes it `resolved`;
//!    - **experiencer**, within the sentence: the closest preceding person cue decides
//!      ("my mother", "mere papa", "मेरी माँ" → other; "I", "mujhe", "meri" → patient; "my son",
//!      "beti" → the patient only when a proxy fills the form);
//!    - **severity**: "severe", "bahut tez", "असहनीय" within 2 items.
//! 4. An age stated in the text ("8 saal ka", "65 years old", "umar 70") is read when the
//!    form has none and the sentence is about the patient.

use super::lexicon::{ConceptKind, CueKind, Lexicon, Payload};
use super::text::{Tok, TokKind, tokenize};
use super::{Coding, Evidence, Experiencer, Facts, Finding, Origin, Polarity, Temporality};

#[derive(Debug, Clone)]
enum ItemKind {
    Finding { concept: usize, site: Option<usize> },
    Site(usize),
    Cue(Vec<CueKind>),
    Word(String),
    Break,
}

#[derive(Debug, Clone)]
struct Item {
    kind: ItemKind,
    start: usize,
    end: usize,
    clause: usize,
    sentence: usize,
}

impl Item {
    fn has_cue(&self, kind: CueKind) -> bool {
        matches!(&self.kind, ItemKind::Cue(kinds) if kinds.contains(&kind))
    }
    fn is_finding(&self) -> bool {
        matches!(self.kind, ItemKind::Finding { .. })
    }
}

pub(crate) struct Extraction {
    pub findings: Vec<Finding>,
    pub age_years: Option<u32>,
}

const SITE_WINDOW: usize = 4;
const NEGATION_WINDOW: usize = 4;
const RESOLVED_WINDOW: usize = 4;
const SEVERE_WINDOW: usize = 2;

fn items(lexicon: &Lexicon, toks: &[Tok]) -> Vec<Item> {
    let mut out = Vec::new();
    let (mut clause, mut sentence) = (0usize, 0usize);
    let mut at = 0;
    while let Some(tok) = toks.get(at) {
        match tok.kind {
            TokKind::ClauseBreak | TokKind::SentenceBreak => {
                out.push(Item { kind: ItemKind::Break, start: tok.start, end: tok.end, clause, sentence });
                clause += 1;
                if tok.kind == TokKind::SentenceBreak {
                    sentence += 1;
                }
                at += 1;
            }
            TokKind::Word => {
                let (kind, len) = match lexicon.longest_match(toks, at) {
                    Some(m) => {
                        let kind = match m.payload {
                            Payload::Finding { concept, site } => ItemKind::Finding { concept: *concept, site: *site },
                            Payload::Site(s) => ItemKind::Site(*s),
                            Payload::Cue(kinds) => ItemKind::Cue(kinds.clone()),
                        };
                        (kind, m.len)
                    }
                    None => (ItemKind::Word(tok.norm.clone()), 1),
                };
                let end = toks.get(at + len - 1).map_or(tok.end, |t| t.end);
                let is_break = matches!(&kind, ItemKind::Cue(k) if k.contains(&CueKind::ClauseBreak));
                out.push(Item { kind, start: tok.start, end, clause, sentence });
                if is_break {
                    clause += 1;
                }
                at += len;
            }
        }
    }
    out
}

fn nearest_site(items: &[Item], i: usize) -> Option<(usize, usize)> {
    let clause = items.get(i)?.clause;
    for distance in 1..=SITE_WINDOW {
        for j in [i.checked_sub(distance), Some(i + distance)].into_iter().flatten() {
            if let Some(item) = items.get(j)
                && item.clause == clause
                && let ItemKind::Site(site) = item.kind
            {
                return Some((j, site));
            }
        }
    }
    None
}

/// Negated by a cue before the finding (walking back over an "or"-list of findings).
fn negated_before(items: &[Item], i: usize) -> bool {
    let Some(clause) = items.get(i).map(|it| it.clause) else { return false };
    let mut anchor = i;
    let mut steps = 0;
    let mut only_or = true;
    let mut j = i;
    while j > 0 {
        j -= 1;
        let Some(item) = items.get(j) else { break };
        if item.clause != clause {
            break;
        }
        if item.has_cue(CueKind::NegationBefore) {
            return true;
        }
        if item.has_cue(CueKind::NegationAdjacentBefore) && j + 1 == anchor {
            return true;
        }
        if item.is_finding() {
            if only_or {
                anchor = j;
                steps = 0;
                continue;
            }
            break;
        }
        if !item.has_cue(CueKind::Or) {
            only_or = false;
        }
        steps += 1;
        if steps >= NEGATION_WINDOW {
            break;
        }
    }
    false
}

/// Negated by a cue after the finding ("bukhar nahi hai", "bukhar ya khansi nahi").
fn negated_after(items: &[Item], i: usize) -> bool {
    let Some(clause) = items.get(i).map(|it| it.clause) else { return false };
    let mut only_or = true;
    let mut steps = 0;
    for item in items.iter().skip(i + 1) {
        if item.clause != clause {
            break;
        }
        if item.has_cue(CueKind::NegationAfter) {
            return true;
        }
        if item.is_finding() {
            if only_or {
                steps = 0;
                continue;
            }
            break;
        }
        if item.has_cue(CueKind::Or) {
            steps += 1;
        } else if item.has_cue(CueKind::NegationFiller) {
            only_or = false;
            steps += 1;
        } else {
            break;
        }
        if steps > NEGATION_WINDOW {
            break;
        }
    }
    false
}

/// Findings (item indexes) a time cue at `cue` binds to, looking forward or backward.
fn bind_time(items: &[Item], cue: usize, forward: bool, max_steps: Option<usize>) -> Vec<usize> {
    let mut bound = Vec::new();
    let Some(clause) = items.get(cue).map(|it| it.clause) else { return bound };
    let mut j = cue;
    let mut steps = 0;
    loop {
        j = match (forward, j.checked_sub(1)) {
            (true, _) => j + 1,
            (false, Some(prev)) => prev,
            (false, None) => break,
        };
        let Some(item) = items.get(j) else { break };
        if item.clause != clause || item.has_cue(CueKind::Now) || (!bound.is_empty() && item.has_cue(CueKind::Neutral))
        {
            break;
        }
        if item.is_finding() {
            bound.push(j);
            steps = 0;
            continue;
        }
        let listed = item.has_cue(CueKind::And) || item.has_cue(CueKind::Or);
        if !bound.is_empty() && !listed {
            break;
        }
        steps += 1;
        if max_steps.is_some_and(|m| steps > m) {
            break;
        }
    }
    bound
}

fn has_onset_after(items: &[Item], i: usize) -> bool {
    let Some(clause) = items.get(i).map(|it| it.clause) else { return false };
    items.iter().skip(i + 1).take(4).take_while(|it| it.clause == clause).any(|it| it.has_cue(CueKind::Onset))
}

fn experiencer_at(items: &[Item], i: usize, facts: &Facts) -> Experiencer {
    let Some(sentence) = items.get(i).map(|it| it.sentence) else { return Experiencer::Patient };
    for item in items.iter().take(i).rev() {
        if item.sentence != sentence {
            break;
        }
        if item.has_cue(CueKind::OtherPerson) {
            return Experiencer::Other;
        }
        if item.has_cue(CueKind::ProxySubject) {
            return if facts.filled_by_proxy { Experiencer::Patient } else { Experiencer::Other };
        }
        if item.has_cue(CueKind::SelfRef) {
            return Experiencer::Patient;
        }
    }
    Experiencer::Patient
}

fn severe_near(items: &[Item], i: usize) -> bool {
    let Some(clause) = items.get(i).map(|it| it.clause) else { return false };
    let lo = i.saturating_sub(SEVERE_WINDOW);
    let hi = i + SEVERE_WINDOW;
    (lo..=hi)
        .filter(|&j| j != i)
        .filter_map(|j| items.get(j))
        .any(|it| it.clause == clause && it.has_cue(CueKind::Severe))
}

fn word_is(item: Option<&Item>, options: &[&str]) -> bool {
    matches!(item.map(|it| &it.kind), Some(ItemKind::Word(w)) if options.contains(&w.as_str()))
}

const YEAR_WORDS: &[&str] = &["saal", "sal", "year", "years", "yr", "yrs", "varsh", "baras", "साल", "वर्ष", "बरस"];
const AGE_AFTER: &[&str] = &["ka", "ki", "ke", "old", "का", "की", "के"];
const AGE_BEFORE: &[&str] = &["age", "aged", "umar", "umr", "umra", "उम्र", "उमर", "आयु"];

/// An age stated about the patient ("8 saal ka beta" with a proxy, "65 years old", "umar 70").
fn age_in_text(items: &[Item], facts: &Facts) -> Option<u32> {
    for (i, item) in items.iter().enumerate() {
        let ItemKind::Word(w) = &item.kind else { continue };
        let Ok(n) = w.parse::<u32>() else { continue };
        if !(1..=120).contains(&n) {
            continue;
        }
        let after_year = word_is(items.get(i + 1), YEAR_WORDS) && word_is(items.get(i + 2), AGE_AFTER);
        let before = i.checked_sub(1).is_some_and(|p| word_is(items.get(p), AGE_BEFORE));
        if !(after_year || before) {
            continue;
        }
        let described = if after_year { items.get(i + 3) } else { None };
        let who = match described {
            Some(d) if d.has_cue(CueKind::OtherPerson) => Experiencer::Other,
            Some(d) if d.has_cue(CueKind::ProxySubject) && !facts.filled_by_proxy => Experiencer::Other,
            Some(d) if d.has_cue(CueKind::ProxySubject) => Experiencer::Patient,
            _ => experiencer_at(items, i, facts),
        };
        if who == Experiencer::Patient {
            return Some(n);
        }
    }
    None
}

pub(crate) fn extract(lexicon: &Lexicon, text: &str, facts: &Facts) -> Extraction {
    let toks = tokenize(text);
    let items = items(lexicon, &toks);

    let mut past = vec![false; items.len()];
    let mut resolved = vec![false; items.len()];
    for (c, item) in items.iter().enumerate() {
        let before = item.has_cue(CueKind::PastBefore);
        let after = item.has_cue(CueKind::PastAfter);
        if before || after {
            let mut bound = bind_time(&items, c, before, None);
            if bound.is_empty() {
                bound = bind_time(&items, c, !before, None);
            }
            for f in bound {
                if let Some(p) = past.get_mut(f) {
                    *p = true;
                }
            }
        }
        if item.has_cue(CueKind::ResolvedAfter) {
            for f in bind_time(&items, c, false, Some(RESOLVED_WINDOW)) {
                if let Some(r) = resolved.get_mut(f) {
                    *r = true;
                }
            }
        }
    }

    let mut findings = Vec::new();
    for (i, item) in items.iter().enumerate() {
        let ItemKind::Finding { concept, site } = item.kind else { continue };
        let (mut concept, mut site) = (concept, site);
        let (mut start, mut end) = (item.start, item.end);
        if site.is_none()
            && lexicon.concept(concept).is_some_and(|c| c.takes_site)
            && let Some((j, s)) = nearest_site(&items, i)
        {
            site = Some(s);
            if let Some(site_item) = items.get(j) {
                start = start.min(site_item.start);
                end = end.max(site_item.end);
            }
        }
        if let Some(s) = site
            && let Some(refined) = lexicon.refine(concept, s)
        {
            concept = refined;
        }
        let Some(c) = lexicon.concept(concept) else { continue };
        if c.kind != ConceptKind::Finding {
            continue;
        }
        let body_site =
            site.and_then(|s| lexicon.concept(s)).map(|s| Coding { code: s.code.clone(), display: s.display.clone() });
        let polarity =
            if negated_before(&items, i) || negated_after(&items, i) { Polarity::Absent } else { Polarity::Present };
        let is_past = past.get(i).copied().unwrap_or(false) && !has_onset_after(&items, i);
        let temporality = if is_past {
            Temporality::Past
        } else if resolved.get(i).copied().unwrap_or(false) {
            Temporality::Resolved
        } else {
            Temporality::Current
        };
        let evidence = text.get(start..end).map(|t| Evidence { start, end, text: t.to_owned() });
        findings.push(Finding {
            code: c.code.clone(),
            display: c.display.clone(),
            body_site,
            polarity,
            temporality,
            experiencer: experiencer_at(&items, i, facts),
            severe: severe_near(&items, i),
            evidence,
            origin: Origin::Rules,
        });
    }
    Extraction { findings, age_years: age_in_text(&items, facts) }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::indexing_slicing)]
mod tests {
    use super::super::Engine;
    use super::*;

    fn find(text: &str, code: &str) -> Finding {
        let engine = Engine::builtin().unwrap();
        let all = engine.extract(text, &Facts::default());
        all.into_iter().find(|f| f.code == code).unwrap_or_else(|| panic!("no {code} in {text:?}"))
    }

    const FEVER: &str = "386661006";
    const BACK: &str = "279039007";
    const CHEST: &str = "29857009";
    const NUMB: &str = "44077006";
    const RETENTION: &str = "267064002";

    #[test]
    fn lexicon_variants_map_to_the_same_concept() {
        for text in ["bukhar", "bukhaar", "बुखार", "bhukhar hai", "I have a fever", "तेज बुखार"]
        {
            assert_eq!(find(text, FEVER).polarity, Polarity::Present, "{text}");
        }
        for text in ["kamar dard", "kamar me dard", "kamar mein bahut dard", "peeth dard", "कमर में दर्द", "my back hurts"]
        {
            let f = find(text, BACK);
            assert_eq!(f.body_site.unwrap().code, "77568009", "{text}");
        }
        for text in ["sunn", "pair sun ho gaya", "jhunjhuni nahi, sunn hai", "सुन्न पड़ गया"] {
            assert_eq!(find(text, NUMB).polarity, Polarity::Present, "{text}");
        }
        for text in ["pishab nahi ho raha", "पेशाब रुक गया", "I cannot pass urine", "peshab band hai"]
        {
            assert_eq!(find(text, RETENTION).polarity, Polarity::Present, "{text}");
        }
        assert_eq!(find("seene me dard", CHEST).polarity, Polarity::Present);
        assert_eq!(find("saans phoolna", "267036007").polarity, Polarity::Present);
        assert_eq!(find("chakkar aa rahe hain", "404640003").polarity, Polarity::Present);
    }

    #[test]
    fn negation_before_and_after() {
        assert_eq!(find("no fever", FEVER).polarity, Polarity::Absent);
        assert_eq!(find("denies fever or chills", "43724002").polarity, Polarity::Absent);
        assert_eq!(find("bukhar nahi hai", FEVER).polarity, Polarity::Absent);
        assert_eq!(find("bukhar bilkul nahi", FEVER).polarity, Polarity::Absent);
        assert_eq!(find("koi bukhar nahi", FEVER).polarity, Polarity::Absent);
        assert_eq!(find("बुखार नहीं है", FEVER).polarity, Polarity::Absent);
        assert_eq!(find("na bukhar na khansi", "49727002").polarity, Polarity::Absent);
        assert_eq!(find("no numbness, no trouble passing urine", RETENTION).polarity, Polarity::Absent);
        // the negation in the symptom phrase itself is not a negation
        assert_eq!(find("saddle sunn hai aur pishab nahi ho raha", NUMB).polarity, Polarity::Present);
        // not across "and", not past a clause break, not over a verb
        assert_eq!(find("no fever and back pain", BACK).polarity, Polarity::Present);
        assert_eq!(find("bukhar nahi hai, lekin kamar dard hai", BACK).polarity, Polarity::Present);
        assert_eq!(find("dard hai jo jaata nahi", "22253000").polarity, Polarity::Present);
        // a filler word like "na" ("wo na") only negates right before a symptom
        assert_eq!(find("wo na mujhe kamar dard hai", BACK).polarity, Polarity::Present);
    }

    #[test]
    fn temporality() {
        assert_eq!(find("pehle kamar dard tha ab nahi", BACK).temporality, Temporality::Past);
        assert_eq!(find("kamar dard do saal pehle tha", BACK).temporality, Temporality::Past);
        assert_eq!(find("I used to have back pain", BACK).temporality, Temporality::Past);
        assert_eq!(find("back pain two years ago", BACK).temporality, Temporality::Past);
        assert_eq!(find("पहले कमर दर्द था", BACK).temporality, Temporality::Past);
        // the cue binds to the nearest finding only, never across "ab"
        assert_eq!(find("kamar dard hai aur saal pehle cancer tha", BACK).temporality, Temporality::Current);
        assert_eq!(find("kamar dard hai aur saal pehle cancer tha", "363346000").temporality, Temporality::Past);
        assert_eq!(find("pehle kamar dard tha ab bukhar hai", FEVER).temporality, Temporality::Current);
        // recent, or started long ago and still there, is not history
        assert_eq!(find("2 din pehle bukhar aaya", FEVER).temporality, Temporality::Current);
        assert_eq!(find("saal pehle kamar dard shuru hua", BACK).temporality, Temporality::Current);
        assert_eq!(find("haath me kamzori thi ab nahi hai", "26544005").temporality, Temporality::Resolved);
    }

    #[test]
    fn experiencer() {
        assert_eq!(find("meri maa ko seene me dard hai", CHEST).experiencer, Experiencer::Other);
        assert_eq!(find("mere papa ko bukhar hai", FEVER).experiencer, Experiencer::Other);
        assert_eq!(find("मेरी माँ को बुखार है", FEVER).experiencer, Experiencer::Other);
        assert_eq!(find("My mother has chest pain", CHEST).experiencer, Experiencer::Other);
        assert_eq!(find("My mother had chest pain and I have a fever", FEVER).experiencer, Experiencer::Patient);
        assert_eq!(find("mere papa ko sugar hai, mujhe bukhar hai", FEVER).experiencer, Experiencer::Patient);
        assert_eq!(find("My mother has chest pain. I have a fever", FEVER).experiencer, Experiencer::Patient);
        let engine = Engine::builtin().unwrap();
        let proxy = Facts { filled_by_proxy: true, ..Facts::default() };
        let limp = engine.extract("my son is limping", &proxy);
        assert_eq!(limp[0].experiencer, Experiencer::Patient);
        let limp = engine.extract("my son is limping", &Facts::default());
        assert_eq!(limp[0].experiencer, Experiencer::Other);
    }

    #[test]
    fn sites_refine_generic_findings_and_severity_is_kept() {
        let f = find("pair me bahut tez dard", "22253000");
        assert_eq!(f.body_site.unwrap().code, "61685007");
        assert!(f.severe);
        assert_eq!(find("होंठ सूज गए", "41291007").polarity, Polarity::Present);
        let f = find("saddle area me jhunjhuni", "91019004");
        assert_eq!(f.body_site.unwrap().code, "38864007");
    }

    #[test]
    fn age_from_text() {
        let engine = Engine::builtin().unwrap();
        let lex = &engine.lexicon;
        assert_eq!(extract(lex, "main 65 saal ki hoon", &Facts::default()).age_years, Some(65));
        assert_eq!(extract(lex, "I am 72 years old", &Facts::default()).age_years, Some(72));
        assert_eq!(extract(lex, "2 saal pehle dard tha", &Facts::default()).age_years, None);
        assert_eq!(extract(lex, "mere 70 saal ke papa ko dard", &Facts::default()).age_years, None);
        let proxy = Facts { filled_by_proxy: true, ..Facts::default() };
        assert_eq!(extract(lex, "mera 8 saal ka beta", &proxy).age_years, Some(8));
    }
}
