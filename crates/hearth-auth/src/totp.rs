//! Time-based one-time passwords (RFC 6238) for two-factor authentication.
//!
//! The parameters are the ones every authenticator app supports: HMAC-SHA-1, 6 digits, 30-second
//! steps, counted from the Unix epoch. Secrets are 160 bits (RFC 4226's recommended length), encoded
//! as unpadded base32 for people and apps.
//!
//! ## Enrolment
//! [`TotpSecret::generate`] → store it **encrypted** with the account (unconfirmed) → show
//! [`provisioning_uri`] as a QR code ([`qr_svg`]) and as text → the user types a code → [`verify`] it →
//! mark TOTP as confirmed and store the returned step as the last used step.
//!
//! ## Verification and replay
//! [`verify`] accepts the current step and one step either side (a ±30 s window for clock drift and
//! typing time) and returns the matched step. Storage keeps, per account, the last step that was
//! accepted and passes it back as `last_used_step`; a code whose step is not after it is refused as
//! [`TotpError::Replayed`], so a code observed over someone's shoulder cannot be used a second time.
//! Update the stored step in the same transaction that accepts the login, with a compare
//! (`… SET last_step = ? WHERE account = ? AND (last_step IS NULL OR last_step < ?)`), so two concurrent
//! logins with the same code cannot both succeed. Rate-limit attempts at the edge: six digits allow
//! only 10^6 codes, three of which are valid at any time.

use std::fmt::Write as _;

use chrono::{DateTime, Utc};
use data_encoding::BASE32_NOPAD;
use hmac::{Hmac, KeyInit, Mac};
use percent_encoding::{AsciiSet, NON_ALPHANUMERIC, utf8_percent_encode};
use qrcodegen::{QrCode, QrCodeEcc};
use rand_core::CryptoRng;
use sha1::Sha1;

use crate::secret::Secret;
use crate::util::ct_eq;

/// Digits in a code.
pub const DIGITS: u32 = 6;
/// Seconds per time step.
pub const PERIOD: u64 = 30;
/// Bytes of secret (160 bits).
pub const SECRET_BYTES: usize = 20;
/// Steps accepted either side of the current one.
pub const WINDOW: u64 = 1;

/// Everything here that can go wrong.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum TotpError {
    #[error("the code must be {DIGITS} digits")]
    MalformedCode,
    #[error("the code is not valid")]
    Mismatch,
    #[error("this code has already been used")]
    Replayed,
    #[error("the stored TOTP secret is not valid base32 of at least 16 bytes")]
    InvalidSecret,
    #[error("the issuer and account name must be non-empty and contain no colon")]
    InvalidLabel,
    #[error("the text is too long for a QR code")]
    QrTooLong,
}

impl TotpError {
    pub fn code(&self) -> &'static str {
        match self {
            TotpError::MalformedCode => "totp_malformed",
            TotpError::Mismatch => "totp_invalid",
            TotpError::Replayed => "totp_replayed",
            TotpError::InvalidSecret => "totp_secret_invalid",
            TotpError::InvalidLabel => "totp_label_invalid",
            TotpError::QrTooLong => "totp_qr_too_long",
        }
    }
}

/// A TOTP shared secret. Store it encrypted: unlike a password it must be recoverable to verify codes.
#[derive(Debug, Clone)]
pub struct TotpSecret(Secret<Vec<u8>>);

impl TotpSecret {
    /// 160 fresh bits from the caller's generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut bytes = vec![0u8; SECRET_BYTES];
        rng.fill_bytes(&mut bytes);
        TotpSecret(Secret::new(bytes))
    }

    /// Reads a secret back from its base32 form (case-insensitive; spaces and padding ignored).
    /// Secrets under 128 bits are refused (RFC 4226 §4 requires at least that).
    pub fn from_base32(text: &str) -> Result<Self, TotpError> {
        let cleaned: String =
            text.chars().filter(|c| !c.is_whitespace() && *c != '=').map(|c| c.to_ascii_uppercase()).collect();
        let bytes = BASE32_NOPAD.decode(cleaned.as_bytes()).map_err(|_| TotpError::InvalidSecret)?;
        if bytes.len() < 16 {
            return Err(TotpError::InvalidSecret);
        }
        Ok(TotpSecret(Secret::new(bytes)))
    }

    /// Unpadded base32, as authenticator apps expect.
    pub fn to_base32(&self) -> Secret<String> {
        Secret::new(BASE32_NOPAD.encode(self.0.expose()))
    }

    fn key(&self) -> &[u8] {
        self.0.expose()
    }
}

/// The time step containing `now` (steps before 1970 do not exist; such a clock yields step 0).
pub fn time_step(now: DateTime<Utc>) -> u64 {
    u64::try_from(now.timestamp()).unwrap_or(0) / PERIOD
}

/// RFC 4226 HOTP value of `counter`, truncated to `digits` decimal digits.
fn hotp(key: &[u8], counter: u64, digits: u32) -> u32 {
    // HMAC accepts keys of any length; the fallback is unreachable.
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(key) else {
        return 0;
    };
    mac.update(&counter.to_be_bytes());
    let digest: [u8; 20] = mac.finalize().into_bytes().into();
    // Dynamic truncation (RFC 4226 §5.3): the low nibble of the last byte picks four bytes.
    let offset = usize::from(digest.get(19).copied().unwrap_or(0) & 0x0f);
    let mut word = [0u8; 4];
    for (i, byte) in word.iter_mut().enumerate() {
        *byte = digest.get(offset + i).copied().unwrap_or(0);
    }
    let binary = u32::from_be_bytes(word) & 0x7fff_ffff;
    binary % 10u32.pow(digits)
}

/// The 6-digit code for a time step (zero-padded).
pub fn code_at_step(secret: &TotpSecret, step: u64) -> Secret<String> {
    Secret::new(format!("{:06}", hotp(secret.key(), step, DIGITS)))
}

/// Checks a code typed at `now`. Spaces in the code are ignored (apps show `123 456`).
///
/// Returns the matched time step, which the caller must store as the new `last_used_step`.
pub fn verify(
    secret: &TotpSecret,
    code: &str,
    now: DateTime<Utc>,
    last_used_step: Option<u64>,
) -> Result<u64, TotpError> {
    let code: String = code.chars().filter(|c| *c != ' ').collect();
    if code.len() != DIGITS as usize || !code.bytes().all(|b| b.is_ascii_digit()) {
        return Err(TotpError::MalformedCode);
    }
    let current = time_step(now);
    let mut newest_fresh: Option<u64> = None;
    let mut matched_any = false;
    // Every candidate is computed and compared, so timing does not tell which step matched. Steps run
    // oldest first, so the last fresh match is the newest.
    for step in current.saturating_sub(WINDOW)..=current.saturating_add(WINDOW) {
        let expected = code_at_step(secret, step);
        let matches = ct_eq(expected.expose().as_bytes(), code.as_bytes());
        matched_any |= matches;
        if matches && last_used_step.is_none_or(|last| step > last) {
            newest_fresh = Some(step);
        }
    }
    match newest_fresh {
        Some(step) => Ok(step),
        None if matched_any => Err(TotpError::Replayed),
        None => Err(TotpError::Mismatch),
    }
}

/// Characters left as they are in URI components: RFC 3986 unreserved.
const COMPONENT: &AsciiSet = &NON_ALPHANUMERIC.remove(b'-').remove(b'.').remove(b'_').remove(b'~');

/// The `otpauth://totp/…` URI that authenticator apps import (Google's Key URI Format):
/// `otpauth://totp/Issuer:account?secret=…&issuer=Issuer&algorithm=SHA1&digits=6&period=30`, with issuer
/// and account percent-encoded. It contains the secret.
pub fn provisioning_uri(secret: &TotpSecret, issuer: &str, account: &str) -> Result<Secret<String>, TotpError> {
    if issuer.is_empty() || account.is_empty() || issuer.contains(':') || account.contains(':') {
        return Err(TotpError::InvalidLabel);
    }
    let issuer = utf8_percent_encode(issuer, COMPONENT).to_string();
    let account = utf8_percent_encode(account, COMPONENT).to_string();
    let secret = secret.to_base32();
    Ok(Secret::new(format!(
        "otpauth://totp/{issuer}:{account}?secret={}&issuer={issuer}&algorithm=SHA1&digits={DIGITS}&period={PERIOD}",
        secret.expose()
    )))
}

/// Renders `text` (the provisioning URI) as a QR code in SVG: black modules on white, a 4-module quiet
/// zone, medium error correction, 8 pixels per module at its natural size.
pub fn qr_svg(text: &str) -> Result<String, TotpError> {
    let qr = QrCode::encode_text(text, QrCodeEcc::Medium).map_err(|_| TotpError::QrTooLong)?;
    const BORDER: i32 = 4;
    let size = qr.size();
    let dimension = size + 2 * BORDER;
    let mut path = String::new();
    for y in 0..size {
        for x in 0..size {
            if qr.get_module(x, y) {
                // Writing to a String cannot fail.
                let _ = write!(path, "M{},{}h1v1h-1z", x + BORDER, y + BORDER);
            }
        }
    }
    Ok(format!(
        concat!(
            r#"<svg xmlns="http://www.w3.org/2000/svg" version="1.1" viewBox="0 0 {d} {d}" "#,
            r#"width="{px}" height="{px}" shape-rendering="crispEdges">"#,
            r##"<rect width="100%" height="100%" fill="#ffffff"/><path d="{path}" fill="#000000"/></svg>"##,
        ),
        d = dimension,
        px = dimension * 8,
        path = path
    ))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::os;
    use chrono::TimeZone;

    /// RFC 6238 Appendix B: the SHA-1 seed is the ASCII string "12345678901234567890".
    fn rfc_secret() -> TotpSecret {
        TotpSecret(Secret::new(b"12345678901234567890".to_vec()))
    }

    fn at(unix: i64) -> DateTime<Utc> {
        Utc.timestamp_opt(unix, 0).unwrap()
    }

    /// RFC 6238 Appendix B, SHA-1 rows: (Unix time, 8-digit TOTP).
    const RFC6238_SHA1: [(i64, &str); 6] = [
        (59, "94287082"),
        (1_111_111_109, "07081804"),
        (1_111_111_111, "14050471"),
        (1_234_567_890, "89005924"),
        (2_000_000_000, "69279037"),
        (20_000_000_000, "65353130"),
    ];

    #[test]
    fn rfc6238_appendix_b_sha1_eight_digits() {
        let secret = rfc_secret();
        for (unix, expected) in RFC6238_SHA1 {
            let value = hotp(secret.key(), time_step(at(unix)), 8);
            assert_eq!(format!("{value:08}"), expected, "T = {unix}");
        }
    }

    #[test]
    fn rfc6238_appendix_b_sha1_six_digit_truncation() {
        let secret = rfc_secret();
        for (unix, expected) in RFC6238_SHA1 {
            // Truncation keeps the value modulo 10^digits: the last six of the eight digits.
            let six = &expected[2..];
            assert_eq!(code_at_step(&secret, time_step(at(unix))).expose(), six, "T = {unix}");
            assert_eq!(verify(&secret, six, at(unix), None), Ok(time_step(at(unix))), "T = {unix}");
        }
    }

    #[test]
    fn rfc4226_appendix_d_hotp_values() {
        let expected =
            ["755224", "287082", "359152", "969429", "338314", "254676", "287922", "162583", "399871", "520489"];
        for (counter, code) in expected.iter().enumerate() {
            assert_eq!(format!("{:06}", hotp(b"12345678901234567890", counter as u64, 6)), *code);
        }
    }

    #[test]
    fn window_is_one_step_either_side() {
        let secret = TotpSecret::generate(&mut os());
        let now = at(1_700_000_015);
        let step = time_step(now);
        for (offset, ok) in [(-2i64, false), (-1, true), (0, true), (1, true), (2, false)] {
            let code_step = step.checked_add_signed(offset).unwrap();
            let code = code_at_step(&secret, code_step);
            let result = verify(&secret, code.expose(), now, None);
            if ok {
                assert_eq!(result, Ok(code_step), "offset {offset}");
            } else {
                assert_eq!(result, Err(TotpError::Mismatch), "offset {offset}");
            }
        }
    }

    #[test]
    fn a_used_step_cannot_be_replayed() {
        let secret = TotpSecret::generate(&mut os());
        let now = at(1_700_000_015);
        let code = code_at_step(&secret, time_step(now));
        let step = verify(&secret, code.expose(), now, None).unwrap();
        assert_eq!(verify(&secret, code.expose(), now, Some(step)), Err(TotpError::Replayed));
        assert_eq!(
            verify(&secret, code.expose(), now + chrono::TimeDelta::seconds(30), Some(step)),
            Err(TotpError::Replayed)
        );
        // An older code is refused once a newer step has been used.
        let previous = code_at_step(&secret, step - 1);
        assert_eq!(verify(&secret, previous.expose(), now, Some(step)), Err(TotpError::Replayed));
        // The next step's code is still good.
        let next = code_at_step(&secret, step + 1);
        assert_eq!(verify(&secret, next.expose(), now, Some(step)), Ok(step + 1));
    }

    #[test]
    fn malformed_codes_are_refused() {
        let secret = rfc_secret();
        for code in ["", "12345", "1234567", "12a456", "１２３４５６", "-12345"] {
            assert_eq!(verify(&secret, code, at(59), None), Err(TotpError::MalformedCode), "{code}");
        }
        assert_eq!(verify(&secret, "287 082", at(59), None), Ok(1), "spaces are ignored");
    }

    #[test]
    fn secrets_are_160_bits_and_round_trip_through_base32() {
        let secret = TotpSecret::generate(&mut os());
        assert_eq!(secret.key().len(), 20);
        let text = secret.to_base32();
        assert_eq!(text.expose().len(), 32);
        let back = TotpSecret::from_base32(text.expose()).unwrap();
        assert_eq!(back.key(), secret.key());
        let spaced = text
            .expose()
            .to_lowercase()
            .chars()
            .collect::<Vec<_>>()
            .chunks(4)
            .map(|c| c.iter().collect::<String>())
            .collect::<Vec<_>>()
            .join(" ");
        assert_eq!(TotpSecret::from_base32(&spaced).unwrap().key(), secret.key());
        assert_eq!(TotpSecret::from_base32("GEZDGNBV").err(), Some(TotpError::InvalidSecret), "40 bits is too short");
        assert_eq!(TotpSecret::from_base32("not base32!").err(), Some(TotpError::InvalidSecret));
    }

    #[test]
    fn provisioning_uri_percent_encodes_the_label() {
        let secret = rfc_secret();
        let uri = provisioning_uri(&secret, "Hearth Clinic & Co", "jane.doe+test@example.org").unwrap();
        assert_eq!(
            uri.expose(),
            "otpauth://totp/Hearth%20Clinic%20%26%20Co:jane.doe%2Btest%40example.org\
             ?secret=GEZDGNBVGY3TQOJQGEZDGNBVGY3TQOJQ&issuer=Hearth%20Clinic%20%26%20Co\
             &algorithm=SHA1&digits=6&period=30"
        );
        let unicode = provisioning_uri(&secret, "Hëarth", "zoë").unwrap();
        assert!(unicode.expose().starts_with("otpauth://totp/H%C3%ABarth:zo%C3%AB?"));
        assert_eq!(provisioning_uri(&secret, "Evil:Issuer", "a").err(), Some(TotpError::InvalidLabel));
        assert_eq!(provisioning_uri(&secret, "Hearth", "a:b").err(), Some(TotpError::InvalidLabel));
        assert_eq!(provisioning_uri(&secret, "", "a").err(), Some(TotpError::InvalidLabel));
    }

    #[test]
    fn qr_svg_draws_the_code() {
        let uri = provisioning_uri(&rfc_secret(), "Hearth", "jane@example.org").unwrap();
        let svg = qr_svg(uri.expose()).unwrap();
        let qr = QrCode::encode_text(uri.expose(), QrCodeEcc::Medium).unwrap();
        let dimension = qr.size() + 8;
        assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
        assert!(svg.contains(&format!("viewBox=\"0 0 {dimension} {dimension}\"")));
        assert!(svg.ends_with("</svg>"));
        let dark = (0..qr.size())
            .flat_map(|y| (0..qr.size()).map(move |x| (x, y)))
            .filter(|&(x, y)| qr.get_module(x, y))
            .count();
        assert_eq!(svg.matches("h1v1h-1z").count(), dark);
        // The top-left finder pattern starts at the quiet-zone corner.
        assert!(svg.contains("M4,4h1v1h-1z"));
        assert_eq!(qr_svg(&"x".repeat(5000)).err(), Some(TotpError::QrTooLong));
    }

    #[test]
    fn time_before_the_epoch_is_step_zero() {
        assert_eq!(time_step(at(-100)), 0);
        assert_eq!(time_step(at(29)), 0);
        assert_eq!(time_step(at(30)), 1);
    }
}
