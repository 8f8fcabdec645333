//! TURN REST API credentials: the time-limited scheme coturn implements with `use-auth-secret`
//! (and `static-auth-secret=<secret>`): the username is `<expiry as Unix seconds>:<user id>`,
//! the password is base64(HMAC-SHA1(secret, username)). The TURN server recomputes the password
//! from the username and refuses it after the expiry, so nothing is stored or shared per user
//! beyond the secret. See docs/TELEHEALTH.md for the coturn set-up.

use chrono::{DateTime, Utc};
use hmac::{Hmac, KeyInit, Mac};
use sha1::Sha1;

/// A username and password a TURN server with `use-auth-secret` accepts until `expires`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TurnCredential {
    pub username: String,
    pub password: String,
    pub expires: DateTime<Utc>,
}

/// HMAC-SHA1 of `message` under `key`.
pub fn hmac_sha1(key: &[u8], message: &[u8]) -> [u8; 20] {
    // HMAC accepts keys of any length, so this cannot fail; the fallback is unreachable.
    let Ok(mut mac) = <Hmac<Sha1> as KeyInit>::new_from_slice(key) else {
        return [0; 20];
    };
    mac.update(message);
    mac.finalize().into_bytes().into()
}

/// The credential for `user` (a participant id: no name, no account id), valid `ttl_secs`
/// from `now`.
pub fn credential(secret: &str, user: &str, now: DateTime<Utc>, ttl_secs: u32) -> TurnCredential {
    let expires = now + chrono::Duration::seconds(i64::from(ttl_secs));
    let username = format!("{}:{user}", expires.timestamp());
    let password = data_encoding::BASE64.encode(&hmac_sha1(secret.as_bytes(), username.as_bytes()));
    TurnCredential { username, password, expires }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hex(bytes: &[u8]) -> String {
        bytes.iter().map(|b| format!("{b:02x}")).collect()
    }

    #[test]
    fn hmac_sha1_matches_rfc_2202_test_case_2() {
        assert_eq!(
            hex(&hmac_sha1(b"Jefe", b"what do ya want for nothing?")),
            "effcdf6ae5eb2fa2d27416d5f184df9c259a7c79"
        );
    }

    #[test]
    fn credential_is_expiry_colon_user_and_base64_hmac() {
        // The password was computed independently:
        // printf '%s' '1700000000:alice' | openssl dgst -sha1 -hmac north-star-secret -binary | base64
        let now = DateTime::from_timestamp(1_700_000_000 - 3600, 0).unwrap();
        let c = credential("north-star-secret", "alice", now, 3600);
        assert_eq!(c.username, "1700000000:alice");
        assert_eq!(c.password, "ZANVpdvVC/ZQx9/5ZfGNc4Drg44=");
        assert_eq!(c.expires.timestamp(), 1_700_000_000);
        // Another secret or another user: another password.
        assert_ne!(credential("other", "alice", now, 3600).password, c.password);
        assert_ne!(credential("north-star-secret", "bob", now, 3600).password, c.password);
    }
}
