//! One-time recovery codes for accounts with two-factor authentication.
//!
//! [`generate`] makes ten codes such as `k7mq-2xbd-9hw4`: twelve characters from a 31-symbol alphabet
//! without look-alikes (no `0 o 1 l i`), about 59 bits each, shown to the user once. Storage keeps only
//! their keyed hashes ([`RecoveryCodeHash`], HMAC-SHA256 under the server [`Pepper`]), so a leaked
//! database does not reveal or let anyone test codes without the pepper.
//!
//! [`find_match`] normalises what the user typed (case, spaces, dashes), compares it with *every*
//! stored hash in constant time, and returns the index of the one it matches. Storage must then
//! consume that code atomically (`DELETE … WHERE account = ? AND hash = ?` and check that one row went),
//! so a code works once even under concurrent requests. Regenerating the codes replaces all ten.
//! Rate-limit attempts at the edge like password attempts.

use rand_core::CryptoRng;

use crate::secret::{Pepper, Secret};
use crate::util::{ct_eq, uniform_below};

/// Codes per set.
pub const CODE_COUNT: usize = 10;
/// Characters per code, without the dashes.
pub const CODE_CHARS: usize = 12;
/// Characters between dashes.
pub const GROUP_CHARS: usize = 4;
/// The alphabet: digits and lowercase letters without `0`, `1`, `i`, `l`, `o`.
pub const ALPHABET: &[u8; 31] = b"23456789abcdefghjkmnpqrstuvwxyz";

const DOMAIN: &str = "hearth/recovery-code/v1";

/// The keyed hash of one recovery code, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct RecoveryCodeHash([u8; 32]);

impl RecoveryCodeHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps bytes read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RecoveryCodeHash(bytes)
    }
}

/// A fresh set: show `codes` to the user once, store `hashes`.
#[derive(Debug)]
pub struct RecoveryCodes {
    pub codes: Vec<Secret<String>>,
    pub hashes: Vec<RecoveryCodeHash>,
}

/// Ten new codes and their hashes.
pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R, pepper: &Pepper) -> RecoveryCodes {
    let mut codes = Vec::with_capacity(CODE_COUNT);
    let mut hashes = Vec::with_capacity(CODE_COUNT);
    for _ in 0..CODE_COUNT {
        let mut raw = String::with_capacity(CODE_CHARS);
        for _ in 0..CODE_CHARS {
            let index = uniform_below(rng, ALPHABET.len() as u32) as usize;
            raw.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'2')));
        }
        let raw = Secret::new(raw);
        hashes.push(hash_normalized(pepper, raw.expose()));
        codes.push(Secret::new(group(raw.expose())));
    }
    RecoveryCodes { codes, hashes }
}

/// `abcdefghijkm` → `abcd-efgh-ijkm`.
fn group(raw: &str) -> String {
    let mut out = String::with_capacity(raw.len() + raw.len() / GROUP_CHARS);
    for (i, c) in raw.chars().enumerate() {
        if i > 0 && i % GROUP_CHARS == 0 {
            out.push('-');
        }
        out.push(c);
    }
    out
}

/// Lowercases and drops dashes and whitespace; `None` unless twelve alphabet characters remain.
fn normalize(presented: &str) -> Option<Secret<String>> {
    let cleaned: String =
        presented.chars().filter(|c| *c != '-' && !c.is_whitespace()).map(|c| c.to_ascii_lowercase()).collect();
    let cleaned = Secret::new(cleaned);
    let ok = cleaned.expose().len() == CODE_CHARS && cleaned.expose().bytes().all(|b| ALPHABET.contains(&b));
    ok.then_some(cleaned)
}

fn hash_normalized(pepper: &Pepper, normalized: &str) -> RecoveryCodeHash {
    RecoveryCodeHash(pepper.mac(DOMAIN, normalized.as_bytes()))
}

/// The index in `stored` of the code the user typed, if any. Every stored hash is compared, in
/// constant time, whatever matches.
pub fn find_match(pepper: &Pepper, presented: &str, stored: &[RecoveryCodeHash]) -> Option<usize> {
    let normalized = normalize(presented)?;
    let candidate = hash_normalized(pepper, normalized.expose());
    let mut found = None;
    for (index, hash) in stored.iter().enumerate() {
        if ct_eq(&hash.0, &candidate.0) && found.is_none() {
            found = Some(index);
        }
    }
    found
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::{ScriptedRng, os};

    fn pepper() -> Pepper {
        Pepper::new(vec![42u8; 32]).unwrap()
    }

    #[test]
    fn ten_grouped_codes_from_the_unambiguous_alphabet() {
        let set = generate(&mut os(), &pepper());
        assert_eq!(set.codes.len(), 10);
        assert_eq!(set.hashes.len(), 10);
        for code in &set.codes {
            let code = code.expose();
            assert_eq!(code.len(), 14, "{code}");
            let groups: Vec<_> = code.split('-').collect();
            assert_eq!(groups.len(), 3);
            assert!(groups.iter().all(|g| g.len() == 4 && g.bytes().all(|b| ALPHABET.contains(&b))), "{code}");
            assert!(!code.contains(['0', '1', 'i', 'l', 'o']));
        }
        let distinct: std::collections::HashSet<_> = set.codes.iter().map(|c| c.expose().clone()).collect();
        assert_eq!(distinct.len(), 10);
    }

    #[test]
    fn symbols_come_uniformly_from_the_generator() {
        // Draws below 2^32 - (2^32 mod 31) map to draw % 31; the first draw is in the rejected tail.
        let rejected = u32::MAX;
        let mut draws = vec![rejected];
        draws.extend(0u32..12);
        let set = generate(&mut ScriptedRng::u32s(&draws), &pepper());
        assert_eq!(set.codes[0].expose(), "2345-6789-abcd");
    }

    #[test]
    fn each_code_matches_its_own_hash_after_normalisation() {
        let pepper = pepper();
        let set = generate(&mut os(), &pepper);
        for (index, code) in set.codes.iter().enumerate() {
            let code = code.expose();
            assert_eq!(find_match(&pepper, code, &set.hashes), Some(index));
            let sloppy = format!("  {} ", code.to_uppercase().replace('-', " "));
            assert_eq!(find_match(&pepper, &sloppy, &set.hashes), Some(index));
            assert_eq!(find_match(&pepper, &code.replace('-', ""), &set.hashes), Some(index));
        }
    }

    #[test]
    fn wrong_malformed_and_other_pepper_codes_do_not_match() {
        let pepper = pepper();
        let set = generate(&mut os(), &pepper);
        let code = set.codes[3].expose();
        assert_eq!(find_match(&pepper, "2345-6789-abcd", &set.hashes), None);
        assert_eq!(find_match(&pepper, &code[..13], &set.hashes), None);
        assert_eq!(find_match(&pepper, &format!("{code}2"), &set.hashes), None);
        assert_eq!(find_match(&pepper, "0000-0000-0000", &set.hashes), None);
        assert_eq!(find_match(&pepper, "", &set.hashes), None);
        let other = Pepper::new(vec![7u8; 32]).unwrap();
        assert_eq!(find_match(&other, code, &set.hashes), None);
        assert_eq!(find_match(&pepper, code, &[]), None);
    }

    #[test]
    fn a_consumed_code_no_longer_matches() {
        let pepper = pepper();
        let mut set = generate(&mut os(), &pepper);
        let code = set.codes[5].expose().clone();
        let index = find_match(&pepper, &code, &set.hashes).unwrap();
        set.hashes.remove(index);
        assert_eq!(find_match(&pepper, &code, &set.hashes), None);
    }
}
