//! Small helpers shared by the modules: encodings, constant-time comparison, uniform sampling.

use chrono::{DateTime, TimeDelta, Utc};
use data_encoding::BASE64URL_NOPAD;
use rand_core::CryptoRng;
use subtle::ConstantTimeEq;

/// Unpadded base64url (RFC 4648 §5), the encoding of every token this crate issues.
pub(crate) fn b64url(bytes: &[u8]) -> String {
    BASE64URL_NOPAD.encode(bytes)
}

/// Strict unpadded base64url decoding: no padding, no whitespace, no non-canonical trailing bits.
pub(crate) fn b64url_decode(text: &str) -> Option<Vec<u8>> {
    BASE64URL_NOPAD.decode(text.as_bytes()).ok()
}

/// `N` bytes from the caller's generator.
pub(crate) fn random_array<const N: usize, R: CryptoRng + ?Sized>(rng: &mut R) -> [u8; N] {
    let mut bytes = [0u8; N];
    rng.fill_bytes(&mut bytes);
    bytes
}

/// Constant-time equality of two byte strings. The lengths are not secret (they are fixed by the
/// formats), so a length mismatch may return early.
pub(crate) fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    bool::from(a.ct_eq(b))
}

/// A uniformly distributed integer in `0..bound` (`bound` ≥ 1), without modulo bias: draws that fall
/// into the incomplete last block of size `bound` are rejected and redrawn.
pub(crate) fn uniform_below<R: CryptoRng + ?Sized>(rng: &mut R, bound: u32) -> u32 {
    let bound = u64::from(bound.max(1));
    let space = 1u64 << 32;
    // The largest multiple of `bound` that fits in 2^32 draws: values below it map evenly.
    let zone = space - space % bound;
    loop {
        let draw = u64::from(rng.next_u32());
        if draw < zone {
            // `draw % bound < bound <= u32::MAX`, so the conversion cannot fail.
            return u32::try_from(draw % bound).unwrap_or(0);
        }
    }
}

/// `now + delta`, saturating at chrono's limits instead of panicking on overflow.
pub(crate) fn later(now: DateTime<Utc>, delta: TimeDelta) -> DateTime<Utc> {
    now.checked_add_signed(delta).unwrap_or(if delta < TimeDelta::zero() {
        DateTime::<Utc>::MIN_UTC
    } else {
        DateTime::<Utc>::MAX_UTC
    })
}

/// True when every byte is in RFC 3986 `unreserved` (`A-Z a-z 0-9 - . _ ~`).
pub(crate) fn is_unreserved(text: &str) -> bool {
    text.bytes().all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'.' | b'_' | b'~'))
}

/// True when `text` is exactly `len` characters of the base64url alphabet.
pub(crate) fn is_b64url_of_len(text: &str, len: usize) -> bool {
    text.len() == len && text.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::ScriptedRng;

    #[test]
    fn uniform_below_rejects_the_biased_tail() {
        // 2^32 mod 10^6 = 967_296, so the accepted zone ends at 4_294_000_000.
        let rejected = 4_294_000_000u32;
        let mut rng = ScriptedRng::u32s(&[u32::MAX, rejected, 4_293_999_999]);
        assert_eq!(uniform_below(&mut rng, 1_000_000), 999_999);
    }

    #[test]
    fn uniform_below_accepts_everything_for_powers_of_two() {
        let mut rng = ScriptedRng::u32s(&[u32::MAX]);
        assert_eq!(uniform_below(&mut rng, 16), 15);
    }

    #[test]
    fn later_saturates_instead_of_panicking() {
        let max = DateTime::<Utc>::MAX_UTC;
        assert_eq!(later(max, TimeDelta::minutes(15)), max);
        assert_eq!(later(DateTime::<Utc>::MIN_UTC, TimeDelta::minutes(-1)), DateTime::<Utc>::MIN_UTC);
        let t = DateTime::<Utc>::UNIX_EPOCH;
        assert_eq!(later(t, TimeDelta::seconds(30)).timestamp(), 30);
    }

    #[test]
    fn b64url_is_strict() {
        assert_eq!(b64url(&[0xfb, 0xff]), "-_8");
        assert_eq!(b64url_decode("-_8"), Some(vec![0xfb, 0xff]));
        assert_eq!(b64url_decode("-_8="), None, "padding is refused");
        assert_eq!(b64url_decode("-_9"), None, "non-canonical trailing bits are refused");
        assert_eq!(b64url_decode("+/8"), None, "the standard alphabet is refused");
    }

    #[test]
    fn ct_eq_compares_content_and_length() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"abcd"));
    }
}
