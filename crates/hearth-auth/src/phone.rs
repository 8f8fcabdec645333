//! Phone numbers, normalised to E.164 (pure; unit-tested below). The one normaliser of the code
//! base: the registry (patients, providers, invitations) and the sign-in edge (accounts, OTP) both
//! use [`normalize`], so a number typed either place is the same stored string.
//!
//! A 10-digit Indian mobile number (first digit 6–9) becomes `+91XXXXXXXXXX`, written with or without a trunk `0` or the `91`/`+91` country code, with
//! spaces, dashes, dots or parentheses anywhere (`98765 43210`, `09876543210`,
//! `+91-98765-43210`, `919876543210`). A number written with `+` and another country code is
//! accepted as any valid E.164 number (8 to 15 digits, no leading zero); an Indian number after
//! `+91` must still be a mobile. Everything else is refused (`None`; the HTTP answers call it
//! `invalid_phone`, or `invalid_destination` in the OTP sign-in routes).

/// The E.164 form of `input`, or `None` when it is not a phone number we accept.
pub fn normalize(input: &str) -> Option<String> {
    let trimmed = input.trim();
    if trimmed.is_empty() || trimmed.len() > 32 {
        return None;
    }
    // `+` may follow an opening parenthesis: `(+91) 98765 43210`.
    let lead = trimmed.trim_start_matches(['(', ' ']);
    let plus = lead.starts_with('+');
    let rest = if plus { lead.get(1..)? } else { trimmed };
    let mut digits = String::with_capacity(rest.len());
    for c in rest.chars() {
        match c {
            '0'..='9' => digits.push(c),
            ' ' | '-' | '.' | '(' | ')' => {}
            _ => return None,
        }
    }
    let indian_mobile = |d: &str| d.len() == 10 && d.starts_with(['6', '7', '8', '9']);
    if plus {
        if let Some(national) = digits.strip_prefix("91") {
            return indian_mobile(national).then(|| format!("+91{national}"));
        }
        let e164 = (8..=15).contains(&digits.len()) && !digits.starts_with('0');
        return e164.then(|| format!("+{digits}"));
    }
    let national = match digits.len() {
        10 => digits.as_str(),
        11 => digits.strip_prefix('0')?,
        12 => digits.strip_prefix("91")?,
        _ => return None,
    };
    indian_mobile(national).then(|| format!("+91{national}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn indian_mobiles_in_every_usual_spelling_become_e164() {
        for input in [
            "9876543210",
            "98765 43210",
            "09876543210",
            "+91-98765-43210",
            "+91 98765 43210",
            "919876543210",
            "(+91) 98765-43210",
            " 98765.43210 ",
        ] {
            assert_eq!(normalize(input).as_deref(), Some("+919876543210"), "{input}");
        }
        assert_eq!(normalize("6000000000").as_deref(), Some("+916000000000"));
        assert_eq!(normalize("7000000000").as_deref(), Some("+917000000000"));
    }

    #[test]
    fn not_mobiles_and_wrong_lengths_are_refused() {
        for input in [
            "",
            "   ",
            "5876543210",       // Indian numbers starting 0–5 are not mobiles
            "0123456789",       // a landline-looking number without +
            "987654321",        // 9 digits
            "98765432101",      // 11 digits without a trunk 0
            "+91 5876543210",   // +91 and not a mobile
            "+91 98765 4321",   // +91 and 9 digits
            "0091 98765 43210", // 00 international prefix is not taken
            "98765-4321O",      // a letter O
            "+",
            "+0441234567",       // E.164 never starts with 0
            "+1234567",          // 7 digits: too short for E.164 as we take it
            "+1234567890123456", // 16 digits
            "9876543210 ext 5",
        ] {
            assert_eq!(normalize(input), None, "{input:?}");
        }
    }

    #[test]
    fn foreign_numbers_with_plus_are_any_valid_e164() {
        assert_eq!(normalize("+44 20 7946 0958").as_deref(), Some("+442079460958"));
        assert_eq!(normalize("+1 (415) 555-0100").as_deref(), Some("+14155550100"));
        assert_eq!(normalize("+12345678").as_deref(), Some("+12345678"));
        assert_eq!(normalize("+123456789012345").as_deref(), Some("+123456789012345"));
        // Without + a foreign number is not guessed at.
        assert_eq!(normalize("442079460958"), None);
    }
}
