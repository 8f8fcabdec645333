//! Normalisation and tokenisation of patient text.
//!
//! A token keeps the byte range of the patient's own words, so every finding can point back at
//! them. Normalisation: lower case; Devanagari nukta, chandrabindu and anusvara removed (so
//! "ज़" = "ज", "माँ" = "मां" = "मा", "नहीं" = "नही"); precomposed nukta letters decomposed the same
//! way; zero-width joiners and apostrophes dropped inside a word ("can't" = "cant");
//! Devanagari digits turned into ASCII digits; punctuation turned into clause or sentence
//! breaks; everything else (spaces, hyphens, symbols) separates tokens.
//!
//! Romanised Hindi is spelt many ways, so each ASCII token also gets a *loose key*
//! ([`loose_key`]) used to match `hi-Latn` lexicon entries: "bukhaar", "bukhar" and "bhukhar"
//! share the key "bukar"; "seene" and "sine" share "sine".

/// What a token is.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum TokKind {
    Word,
    /// `,` `:` brackets, quotes, `/`: the end of a clause (scope of negation and time).
    ClauseBreak,
    /// `.` `!` `?` `;` danda, newline: the end of a sentence (scope of experiencer too).
    SentenceBreak,
}

/// One token of the patient's text.
#[derive(Debug, Clone)]
pub(crate) struct Tok {
    pub kind: TokKind,
    /// Byte range in the original text.
    pub start: usize,
    pub end: usize,
    /// Normalised form (empty for breaks).
    pub norm: String,
    /// Loose spelling key of `norm` (equal to `norm` for non-ASCII words).
    pub loose: String,
}

fn is_dropped(c: char) -> bool {
    matches!(
        c,
        '\u{0900}'
            | '\u{0901}'
            | '\u{0902}'
            | '\u{093C}'
            | '\u{200C}'
            | '\u{200D}'
            | '\u{00AD}'
            | '\''
            | '\u{2019}'
            | '\u{2018}'
            | '`'
    )
}

fn sentence_break(c: char) -> bool {
    matches!(c, '.' | '!' | '?' | ';' | '\n' | '\r' | '\u{0964}' | '\u{0965}')
}

fn clause_break(c: char) -> bool {
    matches!(c, ',' | ':' | '(' | ')' | '[' | ']' | '{' | '}' | '"' | '\u{201C}' | '\u{201D}' | '/' | '|')
}

fn is_word_char(c: char) -> bool {
    !sentence_break(c) && (c.is_alphanumeric() || ('\u{0900}'..='\u{097F}').contains(&c))
}

/// The normalised characters for one input character.
fn push_normalised(c: char, out: &mut String) {
    let mapped = match c {
        '\u{0958}' => '\u{0915}',
        '\u{0959}' => '\u{0916}',
        '\u{095A}' => '\u{0917}',
        '\u{095B}' => '\u{091C}',
        '\u{095C}' => '\u{0921}',
        '\u{095D}' => '\u{0922}',
        '\u{095E}' => '\u{092B}',
        '\u{095F}' => '\u{092F}',
        '\u{0966}'..='\u{096F}' => {
            let digit = u32::from(c) - 0x0966;
            char::from_digit(digit, 10).unwrap_or(c)
        }
        other => other,
    };
    out.extend(mapped.to_lowercase());
}

/// Splits `text` into word and break tokens.
pub(crate) fn tokenize(text: &str) -> Vec<Tok> {
    let mut toks = Vec::new();
    let mut word: Option<(usize, usize, String)> = None;
    let flush = |word: &mut Option<(usize, usize, String)>, toks: &mut Vec<Tok>| {
        if let Some((start, end, norm)) = word.take()
            && !norm.is_empty()
        {
            let loose = loose_key(&norm);
            toks.push(Tok { kind: TokKind::Word, start, end, norm, loose });
        }
    };
    for (i, c) in text.char_indices() {
        let end = i + c.len_utf8();
        if is_dropped(c) {
            if let Some((_, e, _)) = word.as_mut() {
                *e = end;
            }
            continue;
        }
        if is_word_char(c) {
            match word.as_mut() {
                Some((_, e, norm)) => {
                    *e = end;
                    push_normalised(c, norm);
                }
                None => {
                    let mut norm = String::new();
                    push_normalised(c, &mut norm);
                    word = Some((i, end, norm));
                }
            }
            continue;
        }
        flush(&mut word, &mut toks);
        let kind = if sentence_break(c) {
            TokKind::SentenceBreak
        } else if clause_break(c) {
            TokKind::ClauseBreak
        } else {
            continue;
        };
        toks.push(Tok { kind, start: i, end, norm: String::new(), loose: String::new() });
    }
    flush(&mut word, &mut toks);
    toks
}

fn is_vowel(c: char) -> bool {
    matches!(c, 'a' | 'e' | 'i' | 'o' | 'u')
}

/// Loose spelling key of a normalised ASCII word, for romanised Hindi: `ph`→`f`, `w`→`v`,
/// `z`→`j`, `q`→`k`, `ee`→`i`, `oo`→`u`, `ck`→`k`, an `h` after a consonant dropped
/// (aspiration is written inconsistently), then doubled letters collapsed. Non-ASCII words
/// are returned unchanged.
pub(crate) fn loose_key(word: &str) -> String {
    if !word.is_ascii() {
        return word.to_owned();
    }
    let replaced = word
        .replace("ph", "f")
        .replace('w', "v")
        .replace('z', "j")
        .replace('q', "k")
        .replace("ee", "i")
        .replace("oo", "u")
        .replace("ck", "k");
    let mut out = String::with_capacity(replaced.len());
    let mut prev: Option<char> = None;
    for c in replaced.chars() {
        if c == 'h'
            && let Some(p) = prev
            && p.is_ascii_alphabetic()
            && !is_vowel(p)
        {
            continue;
        }
        if Some(c) == prev {
            continue;
        }
        out.push(c);
        prev = Some(c);
    }
    out
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::indexing_slicing)]
mod tests {
    use super::*;

    fn words(text: &str) -> Vec<String> {
        tokenize(text).into_iter().filter(|t| t.kind == TokKind::Word).map(|t| t.norm).collect()
    }

    #[test]
    fn lowercases_and_splits_on_punctuation_keeping_byte_ranges() {
        let text = "No Fever, can't walk.";
        let toks = tokenize(text);
        let kinds: Vec<_> = toks.iter().map(|t| t.kind).collect();
        assert_eq!(
            kinds,
            [TokKind::Word, TokKind::Word, TokKind::ClauseBreak, TokKind::Word, TokKind::Word, TokKind::SentenceBreak]
        );
        assert_eq!(toks[1].norm, "fever");
        assert_eq!(&text[toks[1].start..toks[1].end], "Fever");
        assert_eq!(toks[3].norm, "cant");
        assert_eq!(&text[toks[3].start..toks[3].end], "can't");
    }

    #[test]
    fn devanagari_nukta_and_nasal_marks_are_normalised() {
        assert_eq!(words("बुख़ार"), words("बुखार"));
        assert_eq!(words("माँ"), words("मां"));
        assert_eq!(words("नहीं"), words("नही"));
        // precomposed U+095B (ज़) equals ज + nukta equals ज
        assert_eq!(words("\u{095B}ख्म"), words("ज\u{093C}ख्म"));
        assert_eq!(words("८ साल"), vec!["8".to_owned(), "साल".to_owned()]);
        let toks = tokenize("दर्द है। बुखार");
        assert!(toks.iter().any(|t| t.kind == TokKind::SentenceBreak));
    }

    #[test]
    fn loose_key_merges_romanised_spellings() {
        assert_eq!(loose_key("bukhaar"), loose_key("bukhar"));
        assert_eq!(loose_key("bhukhar"), loose_key("bukhar"));
        assert_eq!(loose_key("seene"), loose_key("sine"));
        assert_eq!(loose_key("sunn"), "sun");
        assert_eq!(loose_key("jhunjhuni"), loose_key("jhunjhunee"));
        assert_eq!(loose_key("kamzori"), loose_key("kamjori"));
        assert_ne!(loose_key("pet"), loose_key("peeth"));
        assert_eq!(loose_key("दर्द"), "दर्द");
    }
}
