//! One-time login codes for patients (sent by SMS or e-mail).
//!
//! [`issue`] draws six uniformly random digits (rejection sampling, no modulo bias) and returns the
//! code to send together with the [`OtpRecord`] to store: the code's HMAC-SHA256 under the server
//! [`Pepper`] (never the code), an expiry 10 minutes ahead, and a failed-attempt counter at zero.
//! [`check`] decides what a presented code does against that record.
//!
//! ## What the storage layer must do
//! For `POST otp/verify`, **in one transaction** (`BEGIN IMMEDIATE` / `SELECT … FOR UPDATE`), read the
//! record, call [`check`], then:
//! - [`OtpDecision::Valid`]: delete the record (a code logs in once) and log the person in;
//! - [`OtpDecision::Invalid`]: increment `failed_attempts`;
//! - [`OtpDecision::Locked`] / [`OtpDecision::Expired`]: delete the record (a new code must be requested).
//!
//! Reading and writing in one transaction is what stops parallel guesses from all seeing the same count.
//! Issuing a new code replaces the previous record for that destination. The edge must also rate-limit
//! code *requests* per destination and per IP: five guesses per code are only a bound if codes cannot be
//! requested without limit. Requesting a code must answer the same whether or not the destination has
//! an account.

use chrono::{DateTime, TimeDelta, Utc};
use rand_core::CryptoRng;

use crate::secret::{Pepper, Secret};
use crate::util::{ct_eq, later, uniform_below};

/// Digits in a code.
pub const DIGITS: usize = 6;
/// How long a code is valid.
pub const OTP_TTL: TimeDelta = TimeDelta::minutes(10);
/// Wrong codes allowed before the code is locked.
pub const MAX_ATTEMPTS: u32 = 5;

const DOMAIN: &str = "hearth/login-otp/v1";

/// The keyed hash of a code, as stored.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct OtpHash([u8; 32]);

impl OtpHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps bytes read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        OtpHash(bytes)
    }

    fn of(pepper: &Pepper, code: &str) -> Self {
        OtpHash(pepper.mac(DOMAIN, code.as_bytes()))
    }
}

/// The stored state of one outstanding code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OtpRecord {
    pub code_hash: OtpHash,
    pub expires_at: DateTime<Utc>,
    /// Wrong codes presented so far.
    pub failed_attempts: u32,
}

/// A new code: send `code`, store `record`.
#[derive(Debug, Clone)]
pub struct IssuedOtp {
    pub code: Secret<String>,
    pub record: OtpRecord,
}

/// What a presented code does.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[must_use]
pub enum OtpDecision {
    /// The code is right: consume the record and log in.
    Valid,
    /// Wrong code (or not six digits); `attempts_left` more may be tried.
    Invalid { attempts_left: u32 },
    /// All attempts are used up; the code no longer works, even if right.
    Locked,
    /// The code is past its expiry.
    Expired,
}

impl OtpDecision {
    /// Stable machine code for refusals (`None` for [`OtpDecision::Valid`]).
    pub fn code(&self) -> Option<&'static str> {
        match self {
            OtpDecision::Valid => None,
            OtpDecision::Invalid { .. } => Some("otp_invalid"),
            OtpDecision::Locked => Some("otp_locked"),
            OtpDecision::Expired => Some("otp_expired"),
        }
    }
}

/// A new six-digit code valid for [`OTP_TTL`] from `now`.
pub fn issue<R: CryptoRng + ?Sized>(rng: &mut R, pepper: &Pepper, now: DateTime<Utc>) -> IssuedOtp {
    let value = uniform_below(rng, 1_000_000);
    let code = Secret::new(format!("{value:06}"));
    let record = OtpRecord {
        code_hash: OtpHash::of(pepper, code.expose()),
        expires_at: later(now, OTP_TTL),
        failed_attempts: 0,
    };
    IssuedOtp { code, record }
}

/// Decides what `presented` does against `record` at `now`. Spaces are ignored; anything else that is
/// not exactly six ASCII digits counts as a wrong code.
///
/// Precedence: a locked code stays locked (no hint whether the guess was right), then expiry, then the
/// constant-time comparison.
pub fn check(pepper: &Pepper, record: &OtpRecord, presented: &str, now: DateTime<Utc>) -> OtpDecision {
    if record.failed_attempts >= MAX_ATTEMPTS {
        return OtpDecision::Locked;
    }
    if now >= record.expires_at {
        return OtpDecision::Expired;
    }
    let presented: String = presented.chars().filter(|c| *c != ' ').collect();
    let well_formed = presented.len() == DIGITS && presented.bytes().all(|b| b.is_ascii_digit());
    let matches = ct_eq(&OtpHash::of(pepper, &presented).0, &record.code_hash.0);
    if well_formed && matches {
        OtpDecision::Valid
    } else {
        OtpDecision::Invalid { attempts_left: MAX_ATTEMPTS - record.failed_attempts - 1 }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::{ScriptedRng, os};
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 3, 4, 5, 6, 7).unwrap()
    }

    fn pepper() -> Pepper {
        Pepper::new(vec![9u8; 32]).unwrap()
    }

    #[test]
    fn codes_are_six_digits_and_stored_only_as_a_keyed_hash() {
        let pepper = pepper();
        let issued = issue(&mut os(), &pepper, t0());
        let code = issued.code.expose();
        assert_eq!(code.len(), 6);
        assert!(code.bytes().all(|b| b.is_ascii_digit()));
        assert_eq!(issued.record.expires_at, t0() + TimeDelta::minutes(10));
        assert_eq!(issued.record.failed_attempts, 0);
        assert_eq!(issued.record.code_hash, OtpHash::of(&pepper, code));
        assert_ne!(issued.record.code_hash, OtpHash::of(&Pepper::new(vec![8u8; 32]).unwrap(), code));
    }

    #[test]
    fn digits_are_drawn_without_modulo_bias() {
        // 4_294_000_000 is the first rejected draw for 10^6; the next draw, 7, becomes "000007".
        let issued = issue(&mut ScriptedRng::u32s(&[4_294_000_000, u32::MAX, 7]), &pepper(), t0());
        assert_eq!(issued.code.expose(), "000007");
        let issued = issue(&mut ScriptedRng::u32s(&[4_293_999_999]), &pepper(), t0());
        assert_eq!(issued.code.expose(), "999999");
    }

    #[test]
    fn the_right_code_is_valid_until_expiry() {
        let pepper = pepper();
        let issued = issue(&mut os(), &pepper, t0());
        let code = issued.code.expose();
        assert_eq!(check(&pepper, &issued.record, code, t0()), OtpDecision::Valid);
        let spaced = format!("{} {}", &code[..3], &code[3..]);
        assert_eq!(check(&pepper, &issued.record, &spaced, t0()), OtpDecision::Valid);
        let last_second = t0() + TimeDelta::minutes(10) - TimeDelta::seconds(1);
        assert_eq!(check(&pepper, &issued.record, code, last_second), OtpDecision::Valid);
        assert_eq!(check(&pepper, &issued.record, code, t0() + TimeDelta::minutes(10)), OtpDecision::Expired);
    }

    #[test]
    fn five_wrong_attempts_then_locked_even_for_the_right_code() {
        let pepper = pepper();
        let issued = issue(&mut os(), &pepper, t0());
        let right = issued.code.expose().clone();
        let wrong = if right == "123456" { "654321" } else { "123456" };
        let mut record = issued.record;
        for expected_left in [4, 3, 2, 1, 0] {
            let decision = check(&pepper, &record, wrong, t0());
            assert_eq!(decision, OtpDecision::Invalid { attempts_left: expected_left });
            // What storage does for Invalid.
            record.failed_attempts += 1;
        }
        assert_eq!(check(&pepper, &record, wrong, t0()), OtpDecision::Locked, "6th attempt");
        assert_eq!(check(&pepper, &record, &right, t0()), OtpDecision::Locked, "right code after lock");
        assert_eq!(
            check(&pepper, &record, &right, t0() + TimeDelta::hours(1)),
            OtpDecision::Locked,
            "lock takes precedence over expiry"
        );
    }

    #[test]
    fn malformed_codes_count_as_wrong() {
        let pepper = pepper();
        let issued = issue(&mut os(), &pepper, t0());
        for bad in ["", "12345", "1234567", "abcdef", "１２３４５６"] {
            assert_eq!(check(&pepper, &issued.record, bad, t0()), OtpDecision::Invalid { attempts_left: 4 }, "{bad}");
        }
    }

    #[test]
    fn refusals_have_codes() {
        assert_eq!(OtpDecision::Valid.code(), None);
        assert_eq!(OtpDecision::Invalid { attempts_left: 1 }.code(), Some("otp_invalid"));
        assert_eq!(OtpDecision::Locked.code(), Some("otp_locked"));
        assert_eq!(OtpDecision::Expired.code(), Some("otp_expired"));
    }
}
