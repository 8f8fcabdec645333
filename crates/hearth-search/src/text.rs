//! String normalisation shared by index extraction and query parsing, so both sides of a string
//! comparison are always normalised the same way.

use unicode_normalization::UnicodeNormalization;
use unicode_normalization::char::is_combining_mark;

/// The normalised form of a string for default (`starts with`) and `:contains` matching:
///
/// 1. canonical decomposition (NFD), then every combining mark is dropped (`é` → `e`, `ñ` → `n`);
/// 2. letters with no decomposition get their usual base-letter spelling (`ø` → `o`, `æ` → `ae`,
///    `ß` → `ss`, `ł` → `l`, `đ` → `d`, `þ` → `th`, `ı` → `i`);
/// 3. lower-cased (Unicode lower case);
/// 4. every run of whitespace becomes one ASCII space, and leading/trailing whitespace goes.
///
/// Punctuation is kept: `O'Brien` stays `o'brien`.
pub fn normalize(s: &str) -> String {
    if s.is_ascii() {
        return normalize_ascii(s);
    }
    let mut out = String::with_capacity(s.len());
    let mut pending_space = false;
    for c in s.nfd() {
        if is_combining_mark(c) {
            continue;
        }
        if c.is_whitespace() {
            pending_space = !out.is_empty();
            continue;
        }
        if pending_space {
            out.push(' ');
            pending_space = false;
        }
        match c {
            'ø' | 'Ø' => out.push('o'),
            'æ' | 'Æ' => out.push_str("ae"),
            'œ' | 'Œ' => out.push_str("oe"),
            'ß' | 'ẞ' => out.push_str("ss"),
            'ł' | 'Ł' => out.push('l'),
            'đ' | 'Đ' | 'ð' | 'Ð' => out.push('d'),
            'þ' | 'Þ' => out.push_str("th"),
            'ı' => out.push('i'),
            other => out.extend(other.to_lowercase()),
        }
    }
    out
}

/// [`normalize`] of ASCII text, which has nothing to decompose or fold but case and
/// whitespace (most indexed text: codes' displays, a resource's content): a fifth of the cost
/// of indexing a vital sign went through the Unicode path.
fn normalize_ascii(s: &str) -> String {
    let mut out = String::with_capacity(s.len());
    // `char::is_whitespace`, as the Unicode path uses (it includes the vertical tab, which
    // `split_ascii_whitespace` does not).
    for word in s.split(char::is_whitespace).filter(|w| !w.is_empty()) {
        if !out.is_empty() {
            out.push(' ');
        }
        out.extend(word.chars().map(|c| c.to_ascii_lowercase()));
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lowercases_strips_accents_and_collapses_whitespace() {
        assert_eq!(normalize("Peter"), "peter");
        assert_eq!(normalize("  José   Núñez\t\nGarcía "), "jose nunez garcia");
        assert_eq!(normalize("Müller-Lüdenscheidt"), "muller-ludenscheidt");
        assert_eq!(normalize("Øster Ærø"), "oster aero");
        assert_eq!(normalize("Straße"), "strasse");
        assert_eq!(normalize("Łódź"), "lodz");
        assert_eq!(normalize("ÅNGSTRÖM"), "angstrom");
        assert_eq!(normalize("O'Brien"), "o'brien");
        assert_eq!(normalize("Ça va"), "ca va");
        assert_eq!(normalize(""), "");
        assert_eq!(normalize("   "), "");
        // Compatibility characters are kept (NFD, not NFKD): only accents go.
        assert_eq!(normalize("ﬁ"), "ﬁ");
    }

    /// The ASCII fast path answers exactly what the Unicode path does.
    #[test]
    fn ascii_takes_a_shortcut_to_the_same_answer() {
        let slow = |s: &str| {
            let mut t = s.to_owned();
            t.push('é');
            let n = normalize(&t);
            n.strip_suffix('e').unwrap_or(&n).trim_end().to_owned()
        };
        let every: String = (0u8..128).map(char::from).collect();
        for s in [every.as_str(), "  Heart\x0B RATE\t\r\n", "A\x0Bb", "O'Brien  Jr.", "", "\x0C"] {
            assert_eq!(normalize(s), slow(s), "{s:?}");
        }
    }
}
