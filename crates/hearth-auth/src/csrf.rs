//! Double-submit CSRF tokens for browser sessions authenticated by cookie.
//!
//! At login the server sets a random token ([`generate`]) in a cookie that scripts can read, named
//! [`COOKIE_NAME`] (`__Host-` prefix: `Secure`, `Path=/`, no `Domain`, so a sibling subdomain cannot
//! plant its own value), with `SameSite=Strict`. The web app copies it into the [`HEADER_NAME`] header
//! of every state-changing request, and [`verify`] checks that header and cookie carry the same value.
//! A cross-site page can make the browser send the cookie but cannot read it to set the header.
//!
//! Requests authenticated by a bearer token (not a cookie) need no CSRF token: browsers never attach
//! those by themselves. Deciding which requests need the check is the edge's job.

use rand_core::CryptoRng;

use crate::util::{b64url, ct_eq, is_b64url_of_len, random_array};

/// The cookie holding the token.
pub const COOKIE_NAME: &str = "__Host-hearth-csrf";
/// The request header that must repeat it.
pub const HEADER_NAME: &str = "x-csrf-token";
/// Random bytes in a token (256 bits).
pub const TOKEN_BYTES: usize = 32;
/// Characters in an encoded token.
pub const TOKEN_CHARS: usize = 43;

/// Why a state-changing request was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum CsrfError {
    #[error("the CSRF header or cookie is missing")]
    Missing,
    #[error("the CSRF header does not match the cookie")]
    Mismatch,
}

impl CsrfError {
    pub fn code(&self) -> &'static str {
        match self {
            CsrfError::Missing => "csrf_missing",
            CsrfError::Mismatch => "csrf_mismatch",
        }
    }
}

/// A new token (256 random bits, base64url).
pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> String {
    b64url(&random_array::<TOKEN_BYTES, R>(rng))
}

/// Checks the header value against the cookie value in constant time. Both must be present and shaped
/// like a token: two empty values never "match".
pub fn verify(header: Option<&str>, cookie: Option<&str>) -> Result<(), CsrfError> {
    let (Some(header), Some(cookie)) = (header, cookie) else {
        return Err(CsrfError::Missing);
    };
    if header.is_empty() || cookie.is_empty() {
        return Err(CsrfError::Missing);
    }
    let well_formed = is_b64url_of_len(header, TOKEN_CHARS) && is_b64url_of_len(cookie, TOKEN_CHARS);
    if well_formed && ct_eq(header.as_bytes(), cookie.as_bytes()) { Ok(()) } else { Err(CsrfError::Mismatch) }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::os;

    #[test]
    fn tokens_are_random_base64url() {
        let a = generate(&mut os());
        let b = generate(&mut os());
        assert_eq!(a.len(), TOKEN_CHARS);
        assert!(is_b64url_of_len(&a, TOKEN_CHARS));
        assert_ne!(a, b);
    }

    #[test]
    fn matching_header_and_cookie_pass() {
        let token = generate(&mut os());
        assert_eq!(verify(Some(&token), Some(&token)), Ok(()));
    }

    #[test]
    fn missing_values_are_refused() {
        let token = generate(&mut os());
        assert_eq!(verify(None, Some(&token)), Err(CsrfError::Missing));
        assert_eq!(verify(Some(&token), None), Err(CsrfError::Missing));
        assert_eq!(verify(None, None), Err(CsrfError::Missing));
        assert_eq!(verify(Some(""), Some("")), Err(CsrfError::Missing));
        assert_eq!(verify(Some(""), Some(&token)), Err(CsrfError::Missing));
    }

    #[test]
    fn wrong_or_malformed_values_are_refused() {
        let token = generate(&mut os());
        let other = generate(&mut os());
        assert_eq!(verify(Some(&other), Some(&token)), Err(CsrfError::Mismatch));
        let mut flipped = token.clone().into_bytes();
        flipped[10] = if flipped[10] == b'A' { b'B' } else { b'A' };
        let flipped = String::from_utf8(flipped).unwrap();
        assert_eq!(verify(Some(&flipped), Some(&token)), Err(CsrfError::Mismatch));
        assert_eq!(verify(Some("short"), Some("short")), Err(CsrfError::Mismatch), "equal but not tokens");
        let padded = format!("{token}=");
        assert_eq!(verify(Some(&padded), Some(&padded)), Err(CsrfError::Mismatch));
        assert_eq!(CsrfError::Missing.code(), "csrf_missing");
        assert_eq!(CsrfError::Mismatch.code(), "csrf_mismatch");
    }
}
