//! Wrappers for secret material: [`Secret`] (never printed, wiped on drop) and [`Pepper`], the server
//! key that turns short codes into keyed hashes.

use core::fmt;

use hmac::{Hmac, KeyInit, Mac};
use rand_core::CryptoRng;
use sha2::Sha256;
use zeroize::Zeroize;

/// A value that must never reach a log: `Debug` prints `Secret([redacted])`, there is no `Display`,
/// `Serialize` or `PartialEq` (equality of secrets must be constant-time and explicit), and the value
/// is zeroised when dropped.
pub struct Secret<T: Zeroize>(T);

impl<T: Zeroize> Secret<T> {
    pub fn new(value: T) -> Self {
        Secret(value)
    }

    /// The only way to the value: greppable on purpose.
    pub fn expose(&self) -> &T {
        &self.0
    }
}

impl<T: Zeroize> From<T> for Secret<T> {
    fn from(value: T) -> Self {
        Secret(value)
    }
}

impl<T: Zeroize + Clone> Clone for Secret<T> {
    fn clone(&self) -> Self {
        Secret(self.0.clone())
    }
}

impl<T: Zeroize> fmt::Debug for Secret<T> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Secret([redacted])")
    }
}

impl<T: Zeroize> Drop for Secret<T> {
    fn drop(&mut self) {
        self.0.zeroize();
    }
}

/// The server-side key ("pepper") for keyed hashes of low-entropy secrets: patient OTP codes and
/// recovery codes are stored as HMAC-SHA256 under it, so a leaked database alone does not let anyone
/// test guesses offline. It comes from configuration (or a secrets manager), never from the database.
///
/// Rotating it invalidates every outstanding OTP and every recovery code; keep the old pepper until
/// users have regenerated their recovery codes if that matters.
#[derive(Clone, Debug)]
pub struct Pepper(Secret<Vec<u8>>);

/// A pepper shorter than [`Pepper::MIN_LEN`] bytes was offered.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("the pepper must be at least {min} bytes of random data", min = Pepper::MIN_LEN)]
pub struct PepperTooShort;

impl Pepper {
    /// 256 bits: the HMAC-SHA256 key size.
    pub const MIN_LEN: usize = 32;

    pub fn new(key: Vec<u8>) -> Result<Self, PepperTooShort> {
        if key.len() < Self::MIN_LEN {
            return Err(PepperTooShort);
        }
        Ok(Pepper(Secret::new(key)))
    }

    /// A fresh random pepper (for first-run set-up and tests).
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let mut key = vec![0u8; Self::MIN_LEN];
        rng.fill_bytes(&mut key);
        Pepper(Secret::new(key))
    }

    /// HMAC-SHA256 of `message` under the pepper, domain-separated by `domain` so that a hash made for
    /// one purpose (an OTP) never verifies for another (a recovery code).
    pub(crate) fn mac(&self, domain: &str, message: &[u8]) -> [u8; 32] {
        // HMAC takes keys of any length, so keying cannot fail; the fallback is unreachable.
        let Ok(mut mac) = <Hmac<Sha256> as KeyInit>::new_from_slice(self.0.expose()) else {
            return [0u8; 32];
        };
        // Length-prefix the domain so that ("ab", "c") and ("a", "bc") never collide.
        mac.update(&(domain.len() as u64).to_be_bytes());
        mac.update(domain.as_bytes());
        mac.update(message);
        mac.finalize().into_bytes().into()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::os;

    #[test]
    fn debug_never_shows_the_value() {
        let secret = Secret::new(String::from("hunter2-hunter2"));
        assert_eq!(format!("{secret:?}"), "Secret([redacted])");
        assert_eq!(secret.expose(), "hunter2-hunter2");
        let pepper = Pepper::new(vec![7u8; 32]).map_err(|e| e.to_string());
        assert!(!format!("{pepper:?}").contains('7'));
    }

    #[test]
    fn pepper_must_be_long_enough() {
        assert_eq!(Pepper::new(vec![1u8; 31]).err(), Some(PepperTooShort));
        assert!(Pepper::new(vec![1u8; 32]).is_ok());
    }

    #[test]
    fn mac_is_keyed_and_domain_separated() {
        let a = Pepper::generate(&mut os());
        let b = Pepper::generate(&mut os());
        assert_eq!(a.mac("otp", b"123456"), a.mac("otp", b"123456"));
        assert_ne!(a.mac("otp", b"123456"), b.mac("otp", b"123456"));
        assert_ne!(a.mac("otp", b"123456"), a.mac("recovery", b"123456"));
        assert_ne!(a.mac("ab", b"c"), a.mac("a", b"bc"));
    }
}
