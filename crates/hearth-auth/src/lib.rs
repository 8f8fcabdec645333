//! # hearth-auth: the security primitives of Hearth's identity and access layer
//!
//! This crate owns the *decisions* and the *cryptography* of authentication, as pure functions and
//! small value types:
//!
//! | module | what it owns |
//! |---|---|
//! | [`password`] | Argon2id hashing/verification (PHC strings) and the password policy |
//! | [`token`] | signed access tokens (compact JWS, EdDSA/Ed25519), the rotating [`token::KeyRing`], JWKS |
//! | [`refresh`] | opaque refresh tokens, their hashes, and the rotation/reuse-detection decision |
//! | [`totp`] | RFC 6238 TOTP: secrets, `otpauth://` URIs, replay-aware verification, QR code as SVG |
//! | [`recovery`] | one-time 2FA recovery codes, stored as keyed hashes |
//! | [`otp`] | the 6-digit one-time login codes for patients, and their attempt/expiry decision |
//! | [`phone`] | the one phone-number normaliser (E.164, Indian mobile rules) |
//! | [`csrf`] | double-submit CSRF tokens |
//! | [`pkce`] | RFC 7636 PKCE (S256 only) |
//! | [`assertion`] | SMART Backend Services `private_key_jwt` client assertions (RS384, ES384) |
//! | [`scope`] | SMART on FHIR v1/v2 scopes, parsed into types, and the permission check |
//! | [`role`] | the account [`Role`] |
//! | [`secret`] | [`Secret`] (never printed, zeroised on drop) and the server [`Pepper`] |
//!
//! ## What it deliberately does not do
//! - **No storage.** Nothing here reads or writes a database. Where a decision depends on stored state
//!   (refresh-token families, OTP attempts, the last TOTP step, used recovery codes) the caller passes the
//!   record in and gets a decision back; each module's docs state what the storage layer must then do,
//!   and what must happen atomically.
//! - **No HTTP.** No cookies, headers, status codes or request parsing. Errors carry a stable machine
//!   `code()` and a human message for the edge to map; the edge decides what a client may learn (for
//!   example every [`token::TokenError`] should reach the client as a plain `401 invalid_token`).
//! - **No rate limiting, lockout policy across codes, or abuse detection.** Those need shared state and
//!   live at the edge; this crate only bounds what one code or token allows.
//! - **No clock and no entropy source of its own.** Every time-dependent function takes `now`
//!   (`chrono::DateTime<Utc>`), and every function that needs randomness takes a caller-supplied
//!   cryptographically secure generator (`&mut R where R: rand_core::CryptoRng`). In production that is
//!   `rand_core::UnwrapErr(getrandom::SysRng)`; tests pass deterministic generators.
//! - **No sending** of codes by SMS or e-mail, and no logging: nothing here can leak a secret to a log.
//!
//! ## Conventions
//! - Secrets the caller must hand to a user (tokens, codes, TOTP secrets) are returned wrapped in
//!   [`Secret`], whose `Debug` prints `[redacted]`; what is meant for storage is a hash or an encrypted
//!   form, never the secret itself (TOTP secrets and signing keys are the exception: they must be
//!   recoverable, so the caller stores them encrypted).
//! - Every comparison of a presented secret with a stored one is constant-time.
//! - Nothing panics on hostile input: malformed tokens, hashes, codes or scopes are typed errors.
#![forbid(unsafe_code)]

pub mod assertion;
pub mod csrf;
pub mod invite;
pub mod otp;
pub mod password;
pub mod phone;
pub mod pkce;
pub mod recovery;
pub mod refresh;
pub mod role;
pub mod scope;
pub mod secret;
pub mod token;
pub mod totp;

mod util;

/// The `rand_core` version this crate's APIs are written against, so callers name the same traits.
pub use rand_core;
pub use role::Role;
pub use secret::{Pepper, Secret};

#[cfg(test)]
pub(crate) mod test_rng;
