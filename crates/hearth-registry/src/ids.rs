//! Indian identifiers and contact details, validated and normalised (pure; unit-tested below).
//!
//! - **Phone**: stored as E.164, by the one normaliser of the code base,
//!   [`hearth_auth::phone::normalize`] (re-exported here as [`phone`]): Indian mobiles in every
//!   usual spelling, other countries only after `+`. Anything else is `invalid_phone`.
//! - **ABHA number** (Ayushman Bharat Health Account): 14 digits, shown and stored grouped
//!   `XX-XXXX-XXXX-XXXX`, typed with or without dashes or spaces. Else `invalid_abha_number`.
//! - **ABHA address**: `<name>@<domain>` with the domain `abdm` (production) or `sbx` (the ABDM
//!   sandbox); the name is 8 to 18 characters of lower-case letters and digits with at most one
//!   `.` or `_`, which is neither the first nor the last character; stored lower-case (the input
//!   is lower-cased first, since the ABDM treats addresses case-insensitively). Else
//!   `invalid_abha_address`.

pub use hearth_auth::phone::normalize as phone;

/// The ABHA number in its shown form `XX-XXXX-XXXX-XXXX`, or `None`.
pub fn abha_number(input: &str) -> Option<String> {
    let mut digits = String::with_capacity(14);
    for c in input.trim().chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' => {}
            _ => return None,
        }
    }
    if digits.len() != 14 {
        return None;
    }
    let (a, rest) = digits.split_at(2);
    let (b, rest) = rest.split_at(4);
    let (c, d) = rest.split_at(4);
    Some(format!("{a}-{b}-{c}-{d}"))
}

/// The ABHA address, lower-cased, or `None`.
pub fn abha_address(input: &str) -> Option<String> {
    let lower = input.trim().to_lowercase();
    let (name, domain) = lower.split_once('@')?;
    if !matches!(domain, "abdm" | "sbx") {
        return None;
    }
    let len_ok = (8..=18).contains(&name.chars().count());
    let chars_ok = name.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '.' || c == '_');
    let specials = name.chars().filter(|c| matches!(c, '.' | '_')).count();
    let ends_ok = !name.starts_with(['.', '_']) && !name.ends_with(['.', '_']);
    (len_ok && chars_ok && specials <= 1 && ends_ok).then_some(lower)
}

/// A lower-cased e-mail address, or `None` (the same rule as account e-mails).
pub fn email(input: &str) -> Option<String> {
    let e = input.trim().to_lowercase();
    let ok = e.len() <= 254
        && e.split_once('@').is_some_and(|(l, d)| {
            !l.is_empty() && d.contains('.') && !d.starts_with('.') && !d.ends_with('.') && !d.contains('@')
        })
        && !e.chars().any(|c| c.is_whitespace() || c.is_control());
    ok.then_some(e)
}

/// A BCP-47 language tag as the app takes it (`en`, `hi`, `hi-Latn`, `en-IN`): a 2–3 letter
/// primary subtag, then subtags of 2–8 letters or digits.
pub fn language(input: &str) -> Option<String> {
    let tag = input.trim();
    let mut parts = tag.split('-');
    let primary = parts.next()?;
    let primary_ok = (2..=3).contains(&primary.len()) && primary.chars().all(|c| c.is_ascii_alphabetic());
    let rest_ok = parts.all(|p| (2..=8).contains(&p.len()) && p.chars().all(|c| c.is_ascii_alphanumeric()));
    (primary_ok && rest_ok && tag.len() <= 35).then(|| tag.to_owned())
}

/// A name folded for duplicate detection: lower case, letters and digits of every script kept,
/// everything else a single space, trimmed.
pub fn fold_name(input: &str) -> String {
    let mut out = String::with_capacity(input.len());
    let mut space = false;
    for c in input.chars() {
        if c.is_alphanumeric() {
            if space && !out.is_empty() {
                out.push(' ');
            }
            space = false;
            out.extend(c.to_lowercase());
        } else {
            space = true;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn abha_numbers_are_fourteen_digits_shown_grouped() {
        assert_eq!(abha_number("12345678901234").as_deref(), Some("12-3456-7890-1234"));
        assert_eq!(abha_number("12-3456-7890-1234").as_deref(), Some("12-3456-7890-1234"));
        assert_eq!(abha_number(" 12 3456 7890 1234 ").as_deref(), Some("12-3456-7890-1234"));
        for bad in
            ["", "1234567890123", "123456789012345", "12-3456-7890-123X", "12/3456/7890/1234", "１２345678901234"]
        {
            assert_eq!(abha_number(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn abha_addresses_follow_the_documented_rules() {
        assert_eq!(abha_address("asha.rao84@abdm").as_deref(), Some("asha.rao84@abdm"));
        assert_eq!(abha_address("Asha_Rao1984@SBX").as_deref(), Some("asha_rao1984@sbx"));
        assert_eq!(abha_address("abcdefgh@abdm").as_deref(), Some("abcdefgh@abdm")); // 8: shortest
        assert_eq!(abha_address("abcdefghijklmnopqr@abdm").as_deref(), Some("abcdefghijklmnopqr@abdm")); // 18
        for bad in [
            "abcdefg@abdm",             // 7: too short
            "abcdefghijklmnopqrs@abdm", // 19: too long
            "asha.rao.84@abdm",         // two specials
            "asha._rao84@abdm",
            ".asharao84@abdm", // special first
            "asharao84_@abdm", // special last
            "asha-rao84@abdm", // dash not allowed
            "asha rao84@abdm",
            "asharao84@ndhm", // other domains
            "asharao84@abdm.gov.in",
            "asharao84",
            "@abdm",
            "asharao84@abdm@abdm",
            "आशाराव१२३४@abdm",
        ] {
            assert_eq!(abha_address(bad), None, "{bad:?}");
        }
    }

    #[test]
    fn emails_languages_and_folded_names() {
        assert_eq!(email(" Asha@Example.ORG ").as_deref(), Some("asha@example.org"));
        for bad in ["asha", "@example.org", "asha@example", "asha@.org", "a b@example.org", "a@b.org."] {
            assert_eq!(email(bad), None, "{bad:?}");
        }
        for good in ["en", "hi", "hi-Latn", "en-IN", "mr"] {
            assert_eq!(language(good).as_deref(), Some(good));
        }
        for bad in ["", "e", "english", "hi_IN", "hi-", "hi-L", "h1"] {
            assert_eq!(language(bad), None, "{bad:?}");
        }
        assert_eq!(fold_name("  Asha   RAO "), "asha rao");
        assert_eq!(fold_name("D'Souza-Rao"), "d souza rao");
        assert_eq!(fold_name("आशा  राव"), "आशा राव");
    }
}
