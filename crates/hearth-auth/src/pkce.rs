//! Proof Key for Code Exchange (RFC 7636), S256 only.
//!
//! At `/authorize` the client sends `code_challenge` and `code_challenge_method`: [`ChallengeMethod::parse`]
//! accepts only `S256` (the `plain` method protects nothing against an attacker who can read the
//! authorization request, and a missing method would default to `plain`, so both are refused), and
//! [`validate_challenge`] checks the challenge's shape before it is stored with the authorization code.
//! At `/token` the client sends `code_verifier`, and [`verify_s256`] checks it against the stored
//! challenge in constant time.

use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use crate::util::{b64url, ct_eq, is_b64url_of_len, is_unreserved, random_array};

/// Shortest verifier (RFC 7636 §4.1).
pub const MIN_VERIFIER_LEN: usize = 43;
/// Longest verifier (RFC 7636 §4.1).
pub const MAX_VERIFIER_LEN: usize = 128;
/// Length of an S256 challenge: base64url of 32 bytes.
pub const CHALLENGE_LEN: usize = 43;

/// Why a PKCE parameter was refused. All map to OAuth `invalid_request` / `invalid_grant`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum PkceError {
    #[error("code_challenge_method is required and must be S256")]
    MissingMethod,
    #[error("the plain code_challenge_method is not allowed; use S256")]
    PlainRefused,
    #[error("unsupported code_challenge_method; use S256")]
    UnsupportedMethod,
    #[error("code_challenge must be 43 base64url characters")]
    InvalidChallenge,
    #[error("code_verifier must be 43 to 128 characters of A-Z a-z 0-9 - . _ ~")]
    InvalidVerifier,
    #[error("code_verifier does not match the code_challenge")]
    Mismatch,
}

impl PkceError {
    pub fn code(&self) -> &'static str {
        match self {
            PkceError::MissingMethod => "pkce_method_missing",
            PkceError::PlainRefused => "pkce_plain_refused",
            PkceError::UnsupportedMethod => "pkce_method_unsupported",
            PkceError::InvalidChallenge => "pkce_challenge_invalid",
            PkceError::InvalidVerifier => "pkce_verifier_invalid",
            PkceError::Mismatch => "pkce_mismatch",
        }
    }
}

/// The only accepted transformation.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum ChallengeMethod {
    S256,
}

impl ChallengeMethod {
    /// Parses `code_challenge_method` (case-sensitive, as RFC 7636 registers it).
    pub fn parse(method: Option<&str>) -> Result<Self, PkceError> {
        match method {
            None | Some("") => Err(PkceError::MissingMethod),
            Some("S256") => Ok(ChallengeMethod::S256),
            Some("plain") => Err(PkceError::PlainRefused),
            Some(_) => Err(PkceError::UnsupportedMethod),
        }
    }
}

/// Checks a verifier's syntax: 43–128 characters, all RFC 3986 unreserved.
pub fn validate_verifier(verifier: &str) -> Result<(), PkceError> {
    let len_ok = (MIN_VERIFIER_LEN..=MAX_VERIFIER_LEN).contains(&verifier.len());
    if len_ok && is_unreserved(verifier) { Ok(()) } else { Err(PkceError::InvalidVerifier) }
}

/// Checks an S256 challenge's syntax: the unpadded base64url of a SHA-256 digest.
pub fn validate_challenge(challenge: &str) -> Result<(), PkceError> {
    if is_b64url_of_len(challenge, CHALLENGE_LEN) { Ok(()) } else { Err(PkceError::InvalidChallenge) }
}

/// `BASE64URL(SHA256(ASCII(code_verifier)))` (RFC 7636 §4.2).
pub fn s256_challenge(verifier: &str) -> String {
    b64url(&Sha256::digest(verifier.as_bytes()))
}

/// Checks a presented verifier against the challenge stored with the authorization code.
pub fn verify_s256(challenge: &str, verifier: &str) -> Result<(), PkceError> {
    validate_verifier(verifier)?;
    validate_challenge(challenge)?;
    if ct_eq(s256_challenge(verifier).as_bytes(), challenge.as_bytes()) { Ok(()) } else { Err(PkceError::Mismatch) }
}

/// A new verifier (256 random bits, 43 characters), for clients and tests.
pub fn generate_verifier<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    b64url(&random_array::<32, R>(rng))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::os;

    // RFC 7636 Appendix B.
    const VERIFIER: &str = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXk";
    const CHALLENGE: &str = "E9Melhoa2OwvFrEMTJguCHaoeK1t8URWbuGJSstw-cM";

    #[test]
    fn rfc7636_appendix_b() {
        assert_eq!(s256_challenge(VERIFIER), CHALLENGE);
        assert_eq!(verify_s256(CHALLENGE, VERIFIER), Ok(()));
    }

    #[test]
    fn a_wrong_verifier_is_refused() {
        let other = "dBjftJeZ4CVP-mB92K27uhbUJU1p1r_wW1gFWFOEjXj";
        assert_eq!(verify_s256(CHALLENGE, other), Err(PkceError::Mismatch));
        let fresh = generate_verifier(&mut os());
        assert_eq!(verify_s256(CHALLENGE, &fresh), Err(PkceError::Mismatch));
        assert_eq!(verify_s256(&s256_challenge(&fresh), &fresh), Ok(()));
        // The plain method's "challenge = verifier" does not pass as S256.
        assert_eq!(verify_s256(VERIFIER, VERIFIER), Err(PkceError::Mismatch));
    }

    #[test]
    fn only_s256_is_accepted() {
        assert_eq!(ChallengeMethod::parse(Some("S256")), Ok(ChallengeMethod::S256));
        assert_eq!(ChallengeMethod::parse(Some("plain")), Err(PkceError::PlainRefused));
        assert_eq!(ChallengeMethod::parse(None), Err(PkceError::MissingMethod));
        assert_eq!(ChallengeMethod::parse(Some("")), Err(PkceError::MissingMethod));
        assert_eq!(ChallengeMethod::parse(Some("s256")), Err(PkceError::UnsupportedMethod));
        assert_eq!(ChallengeMethod::parse(Some("S512")), Err(PkceError::UnsupportedMethod));
    }

    #[test]
    fn verifier_syntax() {
        assert_eq!(validate_verifier(&"a".repeat(43)), Ok(()));
        assert_eq!(validate_verifier(&"~._-".repeat(32)), Ok(()), "128 unreserved characters");
        assert_eq!(validate_verifier(&"a".repeat(42)), Err(PkceError::InvalidVerifier));
        assert_eq!(validate_verifier(&"a".repeat(129)), Err(PkceError::InvalidVerifier));
        for bad_char in ['+', '/', '=', ' ', '%', 'é'] {
            let verifier = format!("{}{bad_char}", "a".repeat(42));
            assert_eq!(validate_verifier(&verifier), Err(PkceError::InvalidVerifier), "{bad_char:?}");
        }
        assert_eq!(verify_s256(CHALLENGE, "short"), Err(PkceError::InvalidVerifier));
    }

    #[test]
    fn challenge_syntax() {
        assert_eq!(validate_challenge(CHALLENGE), Ok(()));
        assert_eq!(validate_challenge(&CHALLENGE[..42]), Err(PkceError::InvalidChallenge));
        assert_eq!(validate_challenge(&format!("{CHALLENGE}=")), Err(PkceError::InvalidChallenge));
        assert_eq!(validate_challenge(&CHALLENGE.replace('-', "+")), Err(PkceError::InvalidChallenge));
        assert_eq!(verify_s256("bad", VERIFIER), Err(PkceError::InvalidChallenge));
        let codes: std::collections::HashSet<_> = [
            PkceError::MissingMethod,
            PkceError::PlainRefused,
            PkceError::UnsupportedMethod,
            PkceError::InvalidChallenge,
            PkceError::InvalidVerifier,
            PkceError::Mismatch,
        ]
        .iter()
        .map(PkceError::code)
        .collect();
        assert_eq!(codes.len(), 6);
    }
}
