//! The parsers of what clients present to hearth-auth: access tokens (JWS compact, Ed25519),
//! TOTP and patient OTP codes, refresh tokens, recovery and invitation codes, SMART scopes, PKCE
//! verifiers and challenges, CSRF tokens. Any text goes through each of them; none may panic.
//! When the input is JSON access-token claims instead, they are signed with a fixed key and
//! verified back: the claims must come back unchanged while they are in date.
#![no_main]

use core::convert::Infallible;
use std::sync::OnceLock;

use chrono::{DateTime, TimeDelta, Utc};
use hearth_auth::rand_core::{TryCryptoRng, TryRng};
use hearth_auth::token::{AccessClaims, KeyRing, TokenKey, TokenSettings};
use hearth_auth::{Pepper, csrf, invite, otp, pkce, recovery, refresh, scope, totp};
use libfuzzer_sys::fuzz_target;

/// A fixed byte stream as a generator, so every run uses the same keys and codes.
struct Fixed(u8);

impl TryRng for Fixed {
    type Error = Infallible;
    fn try_next_u32(&mut self) -> Result<u32, Infallible> {
        let mut w = [0u8; 4];
        self.try_fill_bytes(&mut w)?;
        Ok(u32::from_le_bytes(w))
    }
    fn try_next_u64(&mut self) -> Result<u64, Infallible> {
        let mut w = [0u8; 8];
        self.try_fill_bytes(&mut w)?;
        Ok(u64::from_le_bytes(w))
    }
    fn try_fill_bytes(&mut self, dst: &mut [u8]) -> Result<(), Infallible> {
        for b in dst {
            self.0 = self.0.wrapping_mul(31).wrapping_add(7);
            *b = self.0;
        }
        Ok(())
    }
}

impl TryCryptoRng for Fixed {}

struct Fixture {
    ring: KeyRing,
    settings: TokenSettings,
    pepper: Pepper,
    totp: totp::TotpSecret,
    otp: otp::OtpRecord,
    recovery: Vec<recovery::RecoveryCodeHash>,
    now: DateTime<Utc>,
}

fn fixture() -> &'static Fixture {
    static F: OnceLock<Fixture> = OnceLock::new();
    F.get_or_init(|| {
        let mut rng = Fixed(1);
        let now = DateTime::from_timestamp(1_780_000_000, 0).expect("a valid instant");
        let pepper = Pepper::generate(&mut rng);
        Fixture {
            ring: KeyRing::new(TokenKey::generate(&mut rng)),
            settings: TokenSettings::new("https://hearth.example", "https://hearth.example/fhir"),
            totp: totp::TotpSecret::generate(&mut rng),
            otp: otp::issue(&mut rng, &pepper, now).record,
            recovery: recovery::generate(&mut rng, &pepper).hashes,
            pepper,
            now,
        }
    })
}

fuzz_target!(|data: &[u8]| {
    let f = fixture();
    if let Ok(claims) = serde_json::from_slice::<AccessClaims>(data) {
        let Some(now) = DateTime::from_timestamp(claims.iat, 0) else { return };
        let Ok(token) = f.ring.sign(&claims) else { return };
        let settings =
            TokenSettings { issuer: claims.iss.clone(), audience: claims.aud.clone(), ..TokenSettings::new("", "") };
        let got = f.ring.verify(&settings, token.expose(), now);
        let in_date = claims.exp.saturating_add(settings.leeway.num_seconds()) > claims.iat;
        let short = token.expose().len() <= hearth_auth::token::MAX_TOKEN_LEN;
        if in_date && short {
            assert_eq!(got.ok().as_ref(), Some(&claims), "signed claims did not verify back");
        }
        return;
    }
    let Ok(text) = std::str::from_utf8(data) else { return };
    let _ = f.ring.verify(&f.settings, text, f.now);
    let _ = f.ring.verify(&f.settings, text, f.now + TimeDelta::days(1));
    let _ = totp::TotpSecret::from_base32(text);
    let _ = totp::verify(&f.totp, text, f.now, Some(totp::time_step(f.now)));
    let _ = otp::check(&f.pepper, &f.otp, text, f.now);
    let _ = refresh::hash_presented(text);
    let _ = recovery::find_match(&f.pepper, text, &f.recovery);
    let _ = invite::hash(&f.pepper, text);
    let _ = scope::ScopeSet::parse(text);
    let _ = scope::ScopeSet::parse_lenient(text);
    let _ = scope::Scope::parse(text);
    let _ = pkce::ChallengeMethod::parse(Some(text));
    let _ = pkce::validate_verifier(text);
    let _ = pkce::validate_challenge(text);
    let (a, b) = text.split_once('\n').unwrap_or((text, text));
    let _ = pkce::verify_s256(a, b);
    let _ = csrf::verify(Some(a), Some(b));
});
