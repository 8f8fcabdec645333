//! VADER sentiment (Hutto & Gilbert, ICWSM 2014), our own Rust implementation of the rules of
//! vaderSentiment 3.3.2 over its vendored lexicons (`data/vader/`, MIT). Pure: no I/O.
//!
//! Faithful means the same numbers as the reference for every sentence in
//! `data/vader/vader-test-vectors.json` (the unit test below checks each one exactly), including
//! the reference's quirks that decide numbers: emoji replaced per code point, tokens split on
//! whitespace with surrounding punctuation stripped only from tokens longer than two characters,
//! and the "but" rule that rescales the *first* equal score (list `index` semantics).
//!
//! English only: VADER's lexicon is English, so Hindi and Hinglish text is reported as
//! "not scored" by the caller (`nlp.rs`) rather than given a misleading neutral score.

use std::collections::HashMap;
use std::sync::OnceLock;

/// The analyser's identity, stored with every analysis.
pub const VERSION: &str = "vader-3.3.2";

const B_INCR: f64 = 0.293;
const B_DECR: f64 = -0.293;
const C_INCR: f64 = 0.733;
const N_SCALAR: f64 = -0.74;

const NEGATE: &[&str] = &[
    "aint",
    "arent",
    "cannot",
    "cant",
    "couldnt",
    "darent",
    "didnt",
    "doesnt",
    "ain't",
    "aren't",
    "can't",
    "couldn't",
    "daren't",
    "didn't",
    "doesn't",
    "dont",
    "hadnt",
    "hasnt",
    "havent",
    "isnt",
    "mightnt",
    "mustnt",
    "neither",
    "don't",
    "hadn't",
    "hasn't",
    "haven't",
    "isn't",
    "mightn't",
    "mustn't",
    "neednt",
    "needn't",
    "never",
    "none",
    "nope",
    "nor",
    "not",
    "nothing",
    "nowhere",
    "oughtnt",
    "shant",
    "shouldnt",
    "uhuh",
    "wasnt",
    "werent",
    "oughtn't",
    "shan't",
    "shouldn't",
    "uh-uh",
    "wasn't",
    "weren't",
    "without",
    "wont",
    "wouldnt",
    "won't",
    "wouldn't",
    "rarely",
    "seldom",
    "despite",
];

const BOOST_UP: &[&str] = &[
    "absolutely",
    "amazingly",
    "awfully",
    "completely",
    "considerable",
    "considerably",
    "decidedly",
    "deeply",
    "effing",
    "enormous",
    "enormously",
    "entirely",
    "especially",
    "exceptional",
    "exceptionally",
    "extreme",
    "extremely",
    "fabulously",
    "flipping",
    "flippin",
    "frackin",
    "fracking",
    "fricking",
    "frickin",
    "frigging",
    "friggin",
    "fully",
    "fuckin",
    "fucking",
    "fuggin",
    "fugging",
    "greatly",
    "hella",
    "highly",
    "hugely",
    "incredible",
    "incredibly",
    "intensely",
    "major",
    "majorly",
    "more",
    "most",
    "particularly",
    "purely",
    "quite",
    "really",
    "remarkably",
    "so",
    "substantially",
    "thoroughly",
    "total",
    "totally",
    "tremendous",
    "tremendously",
    "uber",
    "unbelievably",
    "unusually",
    "utter",
    "utterly",
    "very",
];

const BOOST_DOWN: &[&str] = &[
    "almost",
    "barely",
    "hardly",
    "just enough",
    "kind of",
    "kinda",
    "kindof",
    "kind-of",
    "less",
    "little",
    "marginal",
    "marginally",
    "occasional",
    "occasionally",
    "partly",
    "scarce",
    "scarcely",
    "slight",
    "slightly",
    "somewhat",
    "sort of",
    "sorta",
    "sortof",
    "sort-of",
];

const SPECIAL_CASES: &[(&str, f64)] = &[
    ("the shit", 3.0),
    ("the bomb", 3.0),
    ("bad ass", 1.5),
    ("badass", 1.5),
    ("bus stop", 0.0),
    ("yeah right", -2.0),
    ("kiss of death", -1.5),
    ("to die for", 3.0),
    ("beating heart", 3.1),
    ("broken heart", -2.9),
];

/// VADER's four scores, rounded as the reference rounds them (3 places, compound 4).
#[derive(Debug, Clone, Copy, PartialEq, serde::Serialize)]
pub struct Scores {
    pub neg: f64,
    pub neu: f64,
    pub pos: f64,
    pub compound: f64,
}

/// The lexicons, parsed once.
pub struct Vader {
    lexicon: HashMap<String, f64>,
    emoji: HashMap<char, String>,
}

fn booster(word: &str) -> Option<f64> {
    if BOOST_UP.contains(&word) {
        Some(B_INCR)
    } else if BOOST_DOWN.contains(&word) {
        Some(B_DECR)
    } else {
        None
    }
}

fn special(seq: &str) -> Option<f64> {
    SPECIAL_CASES.iter().find(|(k, _)| *k == seq).map(|(_, v)| *v)
}

/// Python's `str.isupper`: at least one cased character and none lower- or titlecase.
fn is_upper(s: &str) -> bool {
    let mut cased = false;
    for c in s.chars() {
        if c.is_lowercase() {
            return false;
        }
        if c.is_uppercase() {
            cased = true;
        }
    }
    cased
}

/// Python's `str.isspace` (Unicode White_Space plus the ASCII separators U+001C–U+001F).
fn is_space(c: char) -> bool {
    c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c)
}

const PUNCTUATION: &str = "!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~";

fn strip_punc_if_word(token: &str) -> String {
    let stripped = token.trim_matches(|c| PUNCTUATION.contains(c));
    if stripped.chars().count() <= 2 { token.to_owned() } else { stripped.to_owned() }
}

fn negated(word: &str) -> bool {
    NEGATE.contains(&word) || word.contains("n't")
}

/// Rounds like Python's `round(x, places)`: the shortest correctly rounded decimal.
fn round(x: f64, places: usize) -> f64 {
    format!("{x:.places$}").parse().unwrap_or(x)
}

fn normalize(score: f64) -> f64 {
    let n = score / (score * score + 15.0).sqrt();
    n.clamp(-1.0, 1.0)
}

impl Vader {
    /// The vendored lexicons (parsed on first use).
    pub fn builtin() -> &'static Vader {
        static VADER: OnceLock<Vader> = OnceLock::new();
        VADER.get_or_init(|| {
            Vader::from_text(
                include_str!("../data/vader/vader_lexicon.txt"),
                include_str!("../data/vader/emoji_utf8_lexicon.txt"),
            )
        })
    }

    /// Lexicons in the reference's formats (`word\tmean\t...`, `emoji\tdescription`); lines
    /// that do not parse are skipped, as they could only be blank.
    pub fn from_text(lexicon: &str, emoji: &str) -> Vader {
        let lexicon = lexicon
            .lines()
            .filter_map(|line| {
                let mut parts = line.trim().split('\t');
                let word = parts.next()?;
                let measure = parts.next()?.parse::<f64>().ok()?;
                Some((word.to_owned(), measure))
            })
            .collect();
        let emoji = emoji
            .lines()
            .filter_map(|line| {
                let mut parts = line.trim().split('\t');
                let key = parts.next()?;
                let description = parts.next()?;
                // The reference replaces emoji one code point at a time: only one-character keys can match.
                let mut chars = key.chars();
                let c = chars.next()?;
                chars.next().is_none().then(|| (c, description.to_owned()))
            })
            .collect();
        Vader { lexicon, emoji }
    }

    fn in_lexicon(&self, lower: &str) -> bool {
        self.lexicon.contains_key(lower)
    }

    /// The sentiment of `text`.
    pub fn polarity_scores(&self, text: &str) -> Scores {
        let mut replaced = String::with_capacity(text.len());
        let mut prev_space = true;
        for c in text.chars() {
            if let Some(description) = self.emoji.get(&c) {
                if !prev_space {
                    replaced.push(' ');
                }
                replaced.push_str(description);
                prev_space = false;
            } else {
                replaced.push(c);
                prev_space = c == ' ';
            }
        }
        let text = replaced.trim_matches(is_space);
        let words: Vec<String> = text.split(is_space).filter(|w| !w.is_empty()).map(strip_punc_if_word).collect();
        let lower: Vec<String> = words.iter().map(|w| w.to_lowercase()).collect();
        let allcaps = words.iter().filter(|w| is_upper(w)).count();
        let cap_diff = allcaps > 0 && allcaps < words.len();
        let lw = |i: usize| lower.get(i).map_or("", String::as_str);

        let mut sentiments: Vec<f64> = Vec::with_capacity(words.len());
        for (i, item) in words.iter().enumerate() {
            let item_lower = lw(i);
            if booster(item_lower).is_some() || (item_lower == "kind" && i + 1 < words.len() && lw(i + 1) == "of") {
                sentiments.push(0.0);
                continue;
            }
            sentiments.push(self.valence(item, i, &words, &lower, cap_diff));
        }
        but_check(&lower, &mut sentiments);
        score(&sentiments, text)
    }

    fn valence(&self, item: &str, i: usize, words: &[String], lower: &[String], cap_diff: bool) -> f64 {
        let lw = |j: usize| lower.get(j).map_or("", String::as_str);
        let item_lower = lw(i);
        let Some(&base) = self.lexicon.get(item_lower) else { return 0.0 };
        let mut valence = base;
        if item_lower == "no" && i + 1 != words.len() && self.in_lexicon(lw(i + 1)) {
            valence = 0.0;
        }
        if (i > 0 && lw(i - 1) == "no")
            || (i > 1 && lw(i - 2) == "no")
            || (i > 2 && lw(i - 3) == "no" && matches!(lw(i - 1), "or" | "nor"))
        {
            valence = base * N_SCALAR;
        }
        if is_upper(item) && cap_diff {
            if valence > 0.0 {
                valence += C_INCR;
            } else {
                valence -= C_INCR;
            }
        }
        for start in 0..3usize {
            if i > start && !self.in_lexicon(lw(i - (start + 1))) {
                let before = words.get(i - (start + 1)).map_or("", String::as_str);
                let mut s = scalar_inc_dec(before, valence, cap_diff);
                if start == 1 && s != 0.0 {
                    s *= 0.95;
                }
                if start == 2 && s != 0.0 {
                    s *= 0.9;
                }
                valence += s;
                valence = negation_check(valence, lower, start, i);
                if start == 2 {
                    valence = special_idioms_check(valence, lower, i);
                }
            }
        }
        self.least_check(valence, lower, i)
    }

    fn least_check(&self, valence: f64, lower: &[String], i: usize) -> f64 {
        let lw = |j: usize| lower.get(j).map_or("", String::as_str);
        if i > 1 && !self.in_lexicon(lw(i - 1)) && lw(i - 1) == "least" {
            if lw(i - 2) != "at" && lw(i - 2) != "very" {
                return valence * N_SCALAR;
            }
        } else if i > 0 && !self.in_lexicon(lw(i - 1)) && lw(i - 1) == "least" {
            return valence * N_SCALAR;
        }
        valence
    }
}

fn scalar_inc_dec(word: &str, valence: f64, cap_diff: bool) -> f64 {
    let Some(mut scalar) = booster(&word.to_lowercase()) else { return 0.0 };
    if valence < 0.0 {
        scalar *= -1.0;
    }
    if is_upper(word) && cap_diff {
        if valence > 0.0 {
            scalar += C_INCR;
        } else {
            scalar -= C_INCR;
        }
    }
    scalar
}

fn negation_check(valence: f64, lower: &[String], start: usize, i: usize) -> f64 {
    let lw = |j: usize| lower.get(j).map_or("", String::as_str);
    match start {
        0 => {
            if negated(lw(i - 1)) {
                return valence * N_SCALAR;
            }
        }
        1 => {
            if lw(i - 2) == "never" && matches!(lw(i - 1), "so" | "this") {
                return valence * 1.25;
            } else if lw(i - 2) == "without" && lw(i - 1) == "doubt" {
                return valence;
            } else if negated(lw(i - 2)) {
                return valence * N_SCALAR;
            }
        }
        _ => {
            // The reference's precedence: (never and (so or this)) or so or this.
            if (lw(i - 3) == "never" && matches!(lw(i - 2), "so" | "this")) || matches!(lw(i - 1), "so" | "this") {
                return valence * 1.25;
            } else if lw(i - 3) == "without" && (lw(i - 2) == "doubt" || lw(i - 1) == "doubt") {
                return valence;
            } else if negated(lw(i - 3)) {
                return valence * N_SCALAR;
            }
        }
    }
    valence
}

fn special_idioms_check(mut valence: f64, lower: &[String], i: usize) -> f64 {
    let lw = |j: usize| lower.get(j).map_or("", String::as_str);
    let onezero = format!("{} {}", lw(i - 1), lw(i));
    let twoonezero = format!("{} {} {}", lw(i - 2), lw(i - 1), lw(i));
    let twoone = format!("{} {}", lw(i - 2), lw(i - 1));
    let threetwoone = format!("{} {} {}", lw(i - 3), lw(i - 2), lw(i - 1));
    let threetwo = format!("{} {}", lw(i - 3), lw(i - 2));
    for seq in [&onezero, &twoonezero, &twoone, &threetwoone, &threetwo] {
        if let Some(v) = special(seq) {
            valence = v;
            break;
        }
    }
    if lower.len() > i + 1
        && let Some(v) = special(&format!("{} {}", lw(i), lw(i + 1)))
    {
        valence = v;
    }
    if lower.len() > i + 2
        && let Some(v) = special(&format!("{} {} {}", lw(i), lw(i + 1), lw(i + 2)))
    {
        valence = v;
    }
    for n_gram in [&threetwoone, &threetwo, &twoone] {
        if let Some(b) = booster(n_gram) {
            valence += b;
        }
    }
    valence
}

/// "but": scores before the first "but" halve, after it grow by half. Like the reference, each
/// score rescales the first equal score in the list (Python's `list.index`).
fn but_check(lower: &[String], sentiments: &mut [f64]) {
    let Some(bi) = lower.iter().position(|w| w == "but") else { return };
    for k in 0..sentiments.len() {
        let Some(&s) = sentiments.get(k) else { continue };
        let si = sentiments.iter().position(|&x| x == s).unwrap_or(k);
        if let Some(slot) = sentiments.get_mut(si) {
            if si < bi {
                *slot = s * 0.5;
            } else if si > bi {
                *slot = s * 1.5;
            }
        }
    }
}

fn punctuation_emphasis(text: &str) -> f64 {
    let ep = text.matches('!').count().min(4);
    let qm = text.matches('?').count();
    let qm_amp = if qm > 1 { if qm <= 3 { qm as f64 * 0.18 } else { 0.96 } } else { 0.0 };
    ep as f64 * 0.292 + qm_amp
}

fn score(sentiments: &[f64], text: &str) -> Scores {
    if sentiments.is_empty() {
        return Scores { neg: 0.0, neu: 0.0, pos: 0.0, compound: 0.0 };
    }
    let mut sum: f64 = sentiments.iter().fold(0.0, |a, b| a + b);
    let amp = punctuation_emphasis(text);
    if sum > 0.0 {
        sum += amp;
    } else if sum < 0.0 {
        sum -= amp;
    }
    let compound = normalize(sum);
    let (mut pos_sum, mut neg_sum, mut neu) = (0.0f64, 0.0f64, 0u32);
    for &s in sentiments {
        if s > 0.0 {
            pos_sum += s + 1.0;
        }
        if s < 0.0 {
            neg_sum += s - 1.0;
        }
        if s == 0.0 {
            neu += 1;
        }
    }
    if pos_sum > neg_sum.abs() {
        pos_sum += amp;
    } else if pos_sum < neg_sum.abs() {
        neg_sum -= amp;
    }
    let total = pos_sum + neg_sum.abs() + f64::from(neu);
    Scores {
        neg: round((neg_sum / total).abs(), 3),
        neu: round((f64::from(neu) / total).abs(), 3),
        pos: round((pos_sum / total).abs(), 3),
        compound: round(compound, 4),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_reference_sentence_matches_exactly() {
        let vectors: serde_json::Value =
            serde_json::from_str(include_str!("../data/vader/vader-test-vectors.json")).unwrap();
        let vader = Vader::builtin();
        let list = vectors["vectors"].as_array().unwrap();
        assert!(list.len() >= 40, "the vector file is whole");
        let mut wrong = Vec::new();
        for v in list {
            let text = v["text"].as_str().unwrap();
            let want = &v["scores"];
            let got = vader.polarity_scores(text);
            let expected = Scores {
                neg: want["neg"].as_f64().unwrap(),
                neu: want["neu"].as_f64().unwrap(),
                pos: want["pos"].as_f64().unwrap(),
                compound: want["compound"].as_f64().unwrap(),
            };
            if got != expected {
                wrong.push(format!("{text:?}: got {got:?}, want {expected:?}"));
            }
        }
        assert!(wrong.is_empty(), "{} of {} differ:\n{}", wrong.len(), list.len(), wrong.join("\n"));
    }

    #[test]
    fn lexicons_are_loaded_whole() {
        let vader = Vader::builtin();
        assert!(vader.lexicon.len() > 7000);
        assert_eq!(vader.lexicon.get("good"), Some(&1.9));
        assert!(vader.emoji.contains_key(&'😁'));
    }
}
