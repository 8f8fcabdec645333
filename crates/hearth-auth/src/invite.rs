//! Invitation codes: a staff member invites a patient to claim the record the clinic keeps, by SMS
//! or e-mail; the patient presents the code once to create an account linked to that record.
//!
//! [`issue`] draws 16 characters from the recovery-code alphabet (no look-alikes; about 79 bits),
//! shown grouped as `abcd-efgh-jkmn-pqrs`. Storage keeps only [`hash`] of it (HMAC-SHA256 under the
//! server [`Pepper`], its own domain), so a leaked database neither reveals nor lets anyone test
//! codes. Because the hash is deterministic under the pepper, storage finds an invitation by the
//! hash of what is presented (one indexed lookup); a wrong code and an unknown one are then the same
//! case. The code is long enough that guessing is hopeless within its lifetime even without a
//! per-code attempt counter; the edge still rate-limits claims. Single use and expiry are the
//! storage layer's (a conditional update only one request can win).

use rand_core::CryptoRng;

use crate::recovery::ALPHABET;
use crate::secret::{Pepper, Secret};
use crate::util::uniform_below;

/// Characters in a code, without the dashes.
pub const CODE_CHARS: usize = 16;
/// Characters between dashes as shown.
pub const GROUP_CHARS: usize = 4;

const DOMAIN: &str = "hearth/registry-invite/v1";

/// A new invitation: send `code`, store `hash`.
#[derive(Debug)]
pub struct IssuedInvite {
    pub code: Secret<String>,
    pub hash: [u8; 32],
}

/// A fresh code and its keyed hash.
pub fn issue<R: CryptoRng + ?Sized>(rng: &mut R, pepper: &Pepper) -> IssuedInvite {
    let mut shown = String::with_capacity(CODE_CHARS + CODE_CHARS / GROUP_CHARS);
    for i in 0..CODE_CHARS {
        if i > 0 && i % GROUP_CHARS == 0 {
            shown.push('-');
        }
        let index = uniform_below(rng, ALPHABET.len() as u32) as usize;
        shown.push(char::from(ALPHABET.get(index).copied().unwrap_or(b'2')));
    }
    let hash = pepper.mac(DOMAIN, normalise(&shown).unwrap_or_default().as_bytes());
    IssuedInvite { code: Secret::new(shown), hash }
}

/// What a user typed, reduced to the 16 code characters (case, spaces and dashes ignored);
/// `None` when it cannot be a code.
fn normalise(presented: &str) -> Option<String> {
    let s: String = presented.chars().filter(|c| !matches!(c, ' ' | '-')).map(|c| c.to_ascii_lowercase()).collect();
    (s.len() == CODE_CHARS && s.bytes().all(|b| ALPHABET.contains(&b))).then_some(s)
}

/// The keyed hash to look a presented code up by; `None` when it is not code-shaped (the caller
/// answers that exactly like an unknown code).
pub fn hash(pepper: &Pepper, presented: &str) -> Option<[u8; 32]> {
    normalise(presented).map(|s| pepper.mac(DOMAIN, s.as_bytes()))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::os;

    #[test]
    fn codes_are_grouped_and_hash_as_typed_loosely() {
        let pepper = Pepper::generate(&mut os());
        let issued = issue(&mut os(), &pepper);
        let code = issued.code.expose().clone();
        assert_eq!(code.len(), 19);
        assert_eq!(code.matches('-').count(), 3);
        assert_eq!(hash(&pepper, &code), Some(issued.hash));
        assert_eq!(hash(&pepper, &code.to_uppercase().replace('-', " ")), Some(issued.hash));
        assert_eq!(hash(&pepper, &code.replace('-', "")), Some(issued.hash));
    }

    #[test]
    fn other_codes_peppers_and_shapes_do_not_match() {
        let pepper = Pepper::generate(&mut os());
        let issued = issue(&mut os(), &pepper);
        let other = issue(&mut os(), &pepper);
        assert_ne!(issued.hash, other.hash);
        assert_ne!(hash(&Pepper::generate(&mut os()), issued.code.expose()), Some(issued.hash));
        assert_eq!(hash(&pepper, ""), None);
        assert_eq!(hash(&pepper, "abcd-efgh-jkmn-pqr"), None);
        // `0`, `1`, `i`, `l`, `o` are not in the alphabet.
        assert_eq!(hash(&pepper, "abcd-efgh-jkmn-pqr0"), None);
        assert_eq!(hash(&pepper, "abcd-efgh-jkmn-pqrsx"), None);
    }
}
