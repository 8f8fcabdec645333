//! Password hashing (Argon2id, PHC strings) and the password policy.
//!
//! ## Hashing
//! [`PasswordHasher`] uses Argon2id, version 0x13, with OWASP's recommended minimum parameters by
//! default: **m = 19456 KiB (19 MiB), t = 2 iterations, p = 1 lane**, a 16-byte random salt from the
//! caller's generator and a 32-byte output. The result is a PHC string
//! (`$argon2id$v=19$m=19456,t=2,p=1$<salt>$<hash>`), which records its own parameters, so the
//! defaults can be raised later: [`Verified::needs_rehash`] tells the caller to store a fresh hash after
//! a successful login.
//!
//! Verification compares in constant time (the `password-hash` crate's `Output` comparison) and never
//! panics on a malformed stored value. Stored parameters are bounded ([`MAX_M_KIB`], [`MAX_T`],
//! [`MAX_P`]) before any work is done, so a corrupted or planted row cannot make a login allocate
//! gigabytes. [`PasswordHasher::dummy_verify`] spends the same effort for logins to unknown accounts,
//! so response time does not reveal which e-mail addresses have accounts.
//!
//! ## Normalisation
//! Passwords are normalised to Unicode NFKC before hashing and before the policy checks (as NIST SP
//! 800-63B recommends), so the same password typed on keyboards that produce composed or decomposed
//! characters still matches. Lengths are counted in characters (Unicode scalar values) of that form.
//!
//! ## Policy
//! [`PasswordPolicy::check`] refuses, in this order: fewer than [`MIN_CHARS`] characters
//! (`password_too_short`), more than [`MAX_CHARS`] (`password_too_long`), a commonly breached password
//! or a trivial variant of one (`password_breached`), and a password containing the account's e-mail
//! local part or name (`password_contains_identity`). There are deliberately no composition rules
//! ("one digit, one symbol"): they do not make passwords stronger and push people to patterns.

use std::collections::HashSet;

use argon2::{Algorithm, Argon2, Params, PasswordHash as PhcHash, PasswordHasher as _, PasswordVerifier as _, Version};
use rand_core::CryptoRng;
use unicode_normalization::UnicodeNormalization;

use crate::secret::Secret;
use crate::util::random_array;

/// Fewest characters a new password may have.
pub const MIN_CHARS: usize = 12;
/// Most characters a new password may have (long passphrases are welcome; this only bounds input).
pub const MAX_CHARS: usize = 128;

/// OWASP's recommended Argon2id memory cost, in KiB.
pub const DEFAULT_M_KIB: u32 = 19 * 1024;
/// OWASP's recommended Argon2id iteration count for that memory cost.
pub const DEFAULT_T: u32 = 2;
/// One lane: the server parallelises across requests, not within one.
pub const DEFAULT_P: u32 = 1;

/// Ceiling on the memory cost accepted from a stored hash (256 MiB).
pub const MAX_M_KIB: u32 = 256 * 1024;
/// Ceiling on the iteration count accepted from a stored hash.
pub const MAX_T: u32 = 16;
/// Ceiling on the lane count accepted from a stored hash.
pub const MAX_P: u32 = 8;

const SALT_LEN: usize = 16;
const OUTPUT_LEN: usize = 32;
/// Presented passwords longer than this many bytes are refused without hashing (a cheap DoS guard;
/// a policy-conforming password is at most 128 characters, i.e. at most 512 bytes).
const MAX_PRESENTED_BYTES: usize = 4096;
/// Identity fragments shorter than this are not checked: they would refuse many good passwords
/// (`"ann"` in `"planning"`) without protecting anyone.
const MIN_IDENTITY_FRAGMENT: usize = 4;

/// The vendored list of commonly breached passwords (SecLists, MIT; see `data/README.md`).
const BREACHED_LIST: &str = include_str!("../data/10k-most-common.txt");

/// An Argon2id PHC string, as stored in the database. Its `Debug` is redacted: a hash is not the
/// password, but it lets anyone holding it guess offline, so it stays out of logs too.
#[derive(Clone, PartialEq, Eq)]
pub struct PasswordHash(String);

impl PasswordHash {
    /// Wraps a value read back from storage (not checked here: [`PasswordHasher::verify`] does).
    pub fn from_stored(phc: String) -> Self {
        PasswordHash(phc)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    pub fn into_string(self) -> String {
        self.0
    }
}

impl core::fmt::Debug for PasswordHash {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str("PasswordHash([redacted])")
    }
}

/// Parameters outside what this crate accepts.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordHashError {
    #[error(
        "Argon2 parameters out of range (m ≤ {MAX_M_KIB} KiB, t ≤ {MAX_T}, p ≤ {MAX_P}, and Argon2's own minimums)"
    )]
    InvalidParams,
    #[error("Argon2 refused the input")]
    Hashing,
}

/// A successful verification.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub struct Verified {
    /// The stored hash used other parameters than the hasher's current ones: hash the password again
    /// (it is at hand now) and store the new PHC string.
    pub needs_rehash: bool,
}

/// Why a password did not verify. Callers answer all of them the same way ("wrong e-mail or
/// password"); the distinction is for logs and metrics, where a malformed hash is a data problem.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum VerifyError {
    #[error("the password does not match")]
    Mismatch,
    #[error("the stored password hash is not a valid PHC string")]
    MalformedHash,
    #[error("the stored password hash uses an algorithm, version or parameters this server does not accept")]
    UnsupportedHash,
}

impl VerifyError {
    pub fn code(&self) -> &'static str {
        match self {
            VerifyError::Mismatch => "password_mismatch",
            VerifyError::MalformedHash => "password_hash_malformed",
            VerifyError::UnsupportedHash => "password_hash_unsupported",
        }
    }
}

/// Hashes and verifies passwords with fixed Argon2id parameters. Build one at start-up and share it.
#[derive(Debug, Clone)]
pub struct PasswordHasher {
    params: Params,
}

impl Default for PasswordHasher {
    fn default() -> Self {
        PasswordHasher::new()
    }
}

impl PasswordHasher {
    /// OWASP's parameters: m = 19456 KiB, t = 2, p = 1.
    pub fn new() -> Self {
        PasswordHasher { params: Params::DEFAULT }
    }

    /// Other parameters (for stronger servers, or cheap ones in tests). Bounded by the same ceilings
    /// verification applies, so the server can always verify what it writes.
    pub fn with_params(m_kib: u32, t: u32, p: u32) -> Result<Self, PasswordHashError> {
        if m_kib > MAX_M_KIB || t > MAX_T || p > MAX_P {
            return Err(PasswordHashError::InvalidParams);
        }
        let params = Params::new(m_kib, t, p, Some(OUTPUT_LEN)).map_err(|_| PasswordHashError::InvalidParams)?;
        Ok(PasswordHasher { params })
    }

    fn argon2(&self) -> Argon2<'static> {
        Argon2::new(Algorithm::Argon2id, Version::V0x13, self.params.clone())
    }

    /// Hashes a password (normalised to NFKC) with a fresh 16-byte salt from `rng`. Does not apply the
    /// policy: call [`PasswordPolicy::check`] first when the password is new.
    pub fn hash<R: CryptoRng + ?Sized>(&self, rng: &mut R, password: &str) -> Result<PasswordHash, PasswordHashError> {
        let normalized = normalize(password);
        let salt: [u8; SALT_LEN] = random_array(rng);
        let phc = self
            .argon2()
            .hash_password_with_salt(normalized.expose().as_bytes(), &salt)
            .map_err(|_| PasswordHashError::Hashing)?;
        Ok(PasswordHash(phc.to_string()))
    }

    /// Checks `password` against a stored PHC string in constant time.
    pub fn verify(&self, password: &str, stored: &PasswordHash) -> Result<Verified, VerifyError> {
        let parsed = PhcHash::new(stored.as_str()).map_err(|_| VerifyError::MalformedHash)?;
        if parsed.algorithm.as_str() != "argon2id" || parsed.version != Some(Version::V0x13.into()) {
            return Err(VerifyError::UnsupportedHash);
        }
        if parsed.salt.is_none() || parsed.hash.is_none() {
            return Err(VerifyError::MalformedHash);
        }
        let stored_params = Params::try_from(&parsed).map_err(|_| VerifyError::MalformedHash)?;
        if stored_params.m_cost() > MAX_M_KIB || stored_params.t_cost() > MAX_T || stored_params.p_cost() > MAX_P {
            return Err(VerifyError::UnsupportedHash);
        }
        if password.len() > MAX_PRESENTED_BYTES {
            return Err(VerifyError::Mismatch);
        }
        let normalized = normalize(password);
        match self.argon2().verify_password(normalized.expose().as_bytes(), &parsed) {
            Ok(()) => {
                let needs_rehash = stored_params.m_cost() != self.params.m_cost()
                    || stored_params.t_cost() != self.params.t_cost()
                    || stored_params.p_cost() != self.params.p_cost()
                    || stored_params.output_len() != Some(OUTPUT_LEN);
                Ok(Verified { needs_rehash })
            }
            Err(argon2::password_hash::Error::PasswordInvalid) => Err(VerifyError::Mismatch),
            Err(_) => Err(VerifyError::MalformedHash),
        }
    }

    /// Does the work of one verification and throws the result away. Call it when the account does not
    /// exist, so that "no such account" and "wrong password" take the same time.
    pub fn dummy_verify(&self, password: &str) {
        let normalized = normalize(password);
        let mut out = [0u8; OUTPUT_LEN];
        let bytes = normalized.expose().as_bytes();
        let bytes = bytes.get(..MAX_PRESENTED_BYTES).unwrap_or(bytes);
        // The result is irrelevant; only the time spent matters.
        let _ = self.argon2().hash_password_into(bytes, &[0u8; SALT_LEN], &mut out);
    }
}

fn normalize(password: &str) -> Secret<String> {
    Secret::new(password.nfkc().collect())
}

/// Who the password belongs to, for the "does not contain your name" rule.
#[derive(Debug, Clone, Copy, Default)]
pub struct AccountIdentity<'a> {
    /// The account's e-mail address; its local part (before the last `@`) is checked.
    pub email: Option<&'a str>,
    /// The person's name as entered; the whole name and each part of it are checked.
    pub name: Option<&'a str>,
}

/// A password the policy refuses. `code()` is stable and machine-readable; `Display` is the message
/// for the person choosing the password.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PasswordRejection {
    #[error("Choose a password of at least {min} characters; a few unrelated words make a good one.")]
    TooShort { min: usize },
    #[error("Choose a password of at most {max} characters.")]
    TooLong { max: usize },
    #[error("This password appears in lists of passwords stolen from other sites; choose another one.")]
    Breached,
    #[error("The password must not contain your name or e-mail address.")]
    ContainsIdentity,
}

impl PasswordRejection {
    pub fn code(&self) -> &'static str {
        match self {
            PasswordRejection::TooShort { .. } => "password_too_short",
            PasswordRejection::TooLong { .. } => "password_too_long",
            PasswordRejection::Breached => "password_breached",
            PasswordRejection::ContainsIdentity => "password_contains_identity",
        }
    }

    /// The human message (same as `Display`).
    pub fn message(&self) -> String {
        self.to_string()
    }
}

/// The rules for a new password. Build once (it indexes the breached list) and share.
#[derive(Debug, Clone)]
pub struct PasswordPolicy {
    breached: HashSet<String>,
}

impl Default for PasswordPolicy {
    fn default() -> Self {
        PasswordPolicy::new()
    }
}

impl PasswordPolicy {
    pub fn new() -> Self {
        let breached = BREACHED_LIST.lines().map(str::trim).filter(|l| !l.is_empty()).map(str::to_lowercase).collect();
        PasswordPolicy { breached }
    }

    /// How many distinct entries the breached list holds (for start-up logs and tests).
    pub fn breached_entries(&self) -> usize {
        self.breached.len()
    }

    /// Accepts or refuses a new password for the given account.
    pub fn check(&self, password: &str, identity: &AccountIdentity<'_>) -> Result<(), PasswordRejection> {
        let normalized = normalize(password);
        let normalized = normalized.expose();
        let chars = normalized.chars().count();
        if chars < MIN_CHARS {
            return Err(PasswordRejection::TooShort { min: MIN_CHARS });
        }
        if chars > MAX_CHARS {
            return Err(PasswordRejection::TooLong { max: MAX_CHARS });
        }
        let lowered = Secret::new(normalized.to_lowercase());
        if self.is_breached(lowered.expose()) {
            return Err(PasswordRejection::Breached);
        }
        if identity_fragments(identity).iter().any(|fragment| lowered.expose().contains(fragment.as_str())) {
            return Err(PasswordRejection::ContainsIdentity);
        }
        Ok(())
    }

    /// The lowercased password is on the list, or is a trivial variant of an entry: the entry with
    /// digits or punctuation stuck to either end (`"Password123!"`), or the entry repeated
    /// (`"qwertyqwerty"`).
    fn is_breached(&self, lowered: &str) -> bool {
        if self.breached.contains(lowered) {
            return true;
        }
        let core = lowered.trim_matches(|c: char| c.is_ascii_digit() || c.is_ascii_punctuation() || c.is_whitespace());
        if !core.is_empty() && self.breached.contains(core) {
            return true;
        }
        let unit = smallest_repeating_unit(core);
        unit.len() < core.len() && self.breached.contains(unit)
    }
}

/// The shortest prefix of `text` that, repeated, makes up all of `text` (`text` itself if none).
fn smallest_repeating_unit(text: &str) -> &str {
    let len = text.len();
    for (unit_len, _) in text.char_indices().skip(1) {
        if len.is_multiple_of(unit_len) {
            let unit = text.get(..unit_len).unwrap_or(text);
            if unit.repeat(len / unit_len) == text {
                return unit;
            }
        }
    }
    text
}

/// Lowercased pieces of the account's identity that a password must not contain.
fn identity_fragments(identity: &AccountIdentity<'_>) -> Vec<String> {
    let mut fragments = Vec::new();
    let mut add = |text: &str| {
        let lowered: String = text.nfkc().collect::<String>().to_lowercase();
        if lowered.chars().count() >= MIN_IDENTITY_FRAGMENT && !fragments.contains(&lowered) {
            fragments.push(lowered);
        }
    };
    if let Some(email) = identity.email {
        let local = email.rsplit_once('@').map_or(email, |(local, _)| local);
        add(local);
        for part in local.split(|c: char| !c.is_alphanumeric()) {
            add(part);
        }
    }
    if let Some(name) = identity.name {
        add(&name.chars().filter(|c| c.is_alphanumeric()).collect::<String>());
        for part in name.split(|c: char| !c.is_alphanumeric()) {
            add(part);
        }
    }
    fragments
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::os;

    /// Cheap parameters so the suite stays fast; one test uses the real defaults.
    fn fast() -> PasswordHasher {
        PasswordHasher::with_params(64, 1, 1).unwrap()
    }

    const NOBODY: AccountIdentity<'static> = AccountIdentity { email: None, name: None };

    #[test]
    fn default_hash_is_argon2id_with_owasp_parameters_and_verifies() {
        let hasher = PasswordHasher::new();
        let hash = hasher.hash(&mut os(), "correct horse battery staple").unwrap();
        assert!(hash.as_str().starts_with("$argon2id$v=19$m=19456,t=2,p=1$"), "{}", hash.as_str());
        assert_eq!(hasher.verify("correct horse battery staple", &hash), Ok(Verified { needs_rehash: false }));
        assert_eq!(hasher.verify("correct horse battery stapler", &hash), Err(VerifyError::Mismatch));
    }

    #[test]
    fn salts_differ_between_hashes() {
        let hasher = fast();
        let a = hasher.hash(&mut os(), "same password here").unwrap();
        let b = hasher.hash(&mut os(), "same password here").unwrap();
        assert_ne!(a, b);
    }

    #[test]
    fn verification_normalises_unicode() {
        let hasher = fast();
        // "é" precomposed (U+00E9) versus "e" + combining acute (U+0065 U+0301).
        let hash = hasher.hash(&mut os(), "caf\u{e9} au lait, s'il vous pla\u{ee}t").unwrap();
        assert!(hasher.verify("cafe\u{301} au lait, s'il vous plai\u{302}t", &hash).is_ok());
    }

    #[test]
    fn malformed_stored_hashes_are_errors_not_panics() {
        let hasher = fast();
        for stored in [
            "",
            "not a hash",
            "$argon2id$",
            "$argon2id$v=19$m=64,t=1,p=1$",
            "$argon2id$v=19$m=64,t=1,p=1$c2FsdHNhbHQ$",
            "$argon2id$v=19$m=abc,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaA",
            "$argon2id$v=19$m=64,t=1,p=1$!!!$aGFzaGhhc2hoYXNo",
            "$argon2id$v=19$m=0,t=0,p=0$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaA",
            "$2b$12$abcdefghijklmnopqrstuuabcdefghijklmnopqrstuvwxyz01234",
        ] {
            let result = hasher.verify("whatever password", &PasswordHash::from_stored(stored.to_owned()));
            assert!(
                matches!(result, Err(VerifyError::MalformedHash | VerifyError::UnsupportedHash)),
                "{stored:?} gave {result:?}"
            );
        }
    }

    #[test]
    fn refuses_other_variants_and_oversized_parameters_before_working() {
        let hasher = fast();
        let argon2i = "$argon2i$v=19$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let huge = "$argon2id$v=19$m=4194304,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        let old_version = "$argon2id$v=16$m=64,t=1,p=1$c2FsdHNhbHRzYWx0$aGFzaGhhc2hoYXNoaGFzaGhhc2hoYXNoaGFzaA";
        for stored in [argon2i, huge, old_version] {
            assert_eq!(
                hasher.verify("pw", &PasswordHash::from_stored(stored.to_owned())),
                Err(VerifyError::UnsupportedHash),
                "{stored}"
            );
        }
    }

    #[test]
    fn weaker_stored_parameters_ask_for_a_rehash() {
        let old = PasswordHasher::with_params(32, 1, 1).unwrap();
        let hash = old.hash(&mut os(), "a long enough password").unwrap();
        assert_eq!(fast().verify("a long enough password", &hash), Ok(Verified { needs_rehash: true }));
        assert_eq!(old.verify("a long enough password", &hash), Ok(Verified { needs_rehash: false }));
    }

    #[test]
    fn with_params_enforces_the_ceilings() {
        assert_eq!(PasswordHasher::with_params(MAX_M_KIB + 1, 1, 1).err(), Some(PasswordHashError::InvalidParams));
        assert_eq!(PasswordHasher::with_params(64, 0, 1).err(), Some(PasswordHashError::InvalidParams));
        assert_eq!(PasswordHasher::with_params(64, 1, MAX_P + 1).err(), Some(PasswordHashError::InvalidParams));
    }

    #[test]
    fn dummy_verify_runs() {
        fast().dummy_verify("anything at all");
        fast().dummy_verify(&"x".repeat(10_000));
    }

    #[test]
    fn debug_of_a_hash_is_redacted() {
        let hash = fast().hash(&mut os(), "a long enough password").unwrap();
        assert_eq!(format!("{hash:?}"), "PasswordHash([redacted])");
    }

    #[test]
    fn the_breached_list_is_embedded() {
        assert_eq!(PasswordPolicy::new().breached_entries(), 10_000);
    }

    #[test]
    fn length_is_counted_in_characters_not_bytes() {
        let policy = PasswordPolicy::new();
        // 11 characters but 22 bytes: too short.
        let short = "ä".repeat(11);
        assert_eq!(policy.check(&short, &NOBODY), Err(PasswordRejection::TooShort { min: 12 }));
        assert_eq!(policy.check("ÄÖÜäöüßéèêëç", &NOBODY), Ok(()));
        assert_eq!(policy.check("ab cd ef gh i", &NOBODY), Ok(()));
        assert_eq!(policy.check("ab cd ef gh", &NOBODY), Err(PasswordRejection::TooShort { min: 12 }));
        let long = "x".repeat(129);
        assert_eq!(policy.check(&long, &NOBODY), Err(PasswordRejection::TooLong { max: 128 }));
        let emoji = "🔒".repeat(128);
        assert_eq!(policy.check(&emoji, &NOBODY), Ok(()), "128 characters, 512 bytes");
    }

    #[test]
    fn breached_passwords_and_trivial_variants_are_refused() {
        let policy = PasswordPolicy::new();
        for password in [
            "masturbation",
            "UNBELIEVABLE",
            "Contortionist",
            "password12345678",
            "!!qwerty123456!!",
            "2024-football-2024",
            "qwertyqwertyqwerty",
            "dragondragon",
        ] {
            assert_eq!(policy.check(password, &NOBODY), Err(PasswordRejection::Breached), "{password}");
        }
        for password in ["correct horse battery staple", "sunshine-garden-2024", "qwerty is my dog's name"] {
            assert_eq!(policy.check(password, &NOBODY), Ok(()), "{password}");
        }
    }

    #[test]
    fn passwords_containing_the_identity_are_refused() {
        let policy = PasswordPolicy::new();
        let identity = AccountIdentity { email: Some("Jane.Doe+hearth@example.org"), name: Some("Jane Doe-Smith") };
        for password in [
            "my name is JANE and I like tea",
            "jane.doe+hearth rules",
            "smith family holidays",
            "janedoesmith!!!",
            "hearthstone by the sea",
        ] {
            assert_eq!(policy.check(password, &identity), Err(PasswordRejection::ContainsIdentity), "{password}");
        }
        // Fragments shorter than four characters ("doe") are not checked.
        assert_eq!(policy.check("a doe and a stag in the wood", &identity), Ok(()));
        assert_eq!(policy.check("purple elephants dance", &identity), Ok(()));
    }

    #[test]
    fn rejections_have_stable_codes_and_messages() {
        let all = [
            PasswordRejection::TooShort { min: MIN_CHARS },
            PasswordRejection::TooLong { max: MAX_CHARS },
            PasswordRejection::Breached,
            PasswordRejection::ContainsIdentity,
        ];
        let codes: Vec<_> = all.iter().map(PasswordRejection::code).collect();
        assert_eq!(
            codes,
            ["password_too_short", "password_too_long", "password_breached", "password_contains_identity"]
        );
        assert!(all[0].message().contains("12 characters"));
        assert!(all[1].message().contains("128 characters"));
    }

    #[test]
    fn repeating_units() {
        assert_eq!(smallest_repeating_unit("abcabc"), "abc");
        assert_eq!(smallest_repeating_unit("aaaa"), "a");
        assert_eq!(smallest_repeating_unit("abcab"), "abcab");
        assert_eq!(smallest_repeating_unit("ééé"), "é");
        assert_eq!(smallest_repeating_unit(""), "");
    }
}
