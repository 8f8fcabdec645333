//! Refresh tokens: opaque, rotating, with reuse detection.
//!
//! A refresh token is 256 bits from the caller's generator, base64url (43 characters). The server
//! stores only its SHA-256 ([`RefreshTokenHash`]); a plain hash is enough because the token has full
//! entropy (there is nothing to guess), and it lets storage look the token up by equality.
//!
//! Every token belongs to a **family**: the chain of tokens descended from one login. Each use rotates
//! the token (the presented one is marked used, a child with a fresh 7-day expiry is issued in the same
//! family). If a token that was already used is presented again, two parties hold the chain (a thief and
//! the real client), and there is no telling which is which: the whole family is revoked and both must
//! log in again ([`RefreshDecision::ReuseDetected`]).
//!
//! ## What the storage layer must do
//! Keep one row per token: `hash` (unique), `family`, `used`, `revoked`, `expires_at`, plus whatever it
//! needs (account id, client id, created_at). Then, for `POST refresh`:
//!
//! 1. [`hash_presented`] the token (a malformed one is refused without a query), then look the hash up.
//!    No row: refuse (`401 invalid_grant`); nothing else changes.
//! 2. **In one transaction** (`BEGIN IMMEDIATE` on SQLite; `SELECT … FOR UPDATE` on PostgreSQL), read
//!    the row, call [`decide`] with it and `now`, and apply the decision:
//!    - [`RefreshDecision::Rotate`]: `UPDATE … SET used = true WHERE hash = ? AND used = false AND
//!      revoked = false`, check that exactly **one** row changed, insert the child from [`rotate`] (same
//!      family), commit, then return the child token and a new access token. If no row changed, another
//!      request used the token first: treat it as reuse (below). Never issue a child without marking the
//!      parent used in the same transaction, or two concurrent requests could both rotate.
//!    - [`RefreshDecision::ReuseDetected`]: `UPDATE … SET revoked = true WHERE family = ?`, commit, refuse
//!      (`401`), and record a security event for the account.
//!    - [`RefreshDecision::Expired`] / [`RefreshDecision::Revoked`]: refuse (`401`).
//! 3. Logout revokes the family of the presented token (`UPDATE … SET revoked = true WHERE family = ?`);
//!    "log out everywhere" revokes every family of the account.
//!
//! Access tokens already issued stay valid until they expire (at most their 15 minutes); rows of expired
//! or revoked families can be deleted by a periodic job.

use chrono::{DateTime, TimeDelta, Utc};
use rand_core::CryptoRng;
use sha2::{Digest, Sha256};

use crate::secret::Secret;
use crate::util::{b64url, is_b64url_of_len, later, random_array};

/// How long a refresh token lives from its issue (each rotation starts a new 7 days).
pub const REFRESH_TTL: TimeDelta = TimeDelta::days(7);
/// Random bytes in a token (256 bits).
pub const TOKEN_BYTES: usize = 32;
/// Characters in an encoded token.
pub const TOKEN_CHARS: usize = 43;

/// The SHA-256 of a refresh token: what storage keeps and looks up.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub struct RefreshTokenHash([u8; 32]);

impl RefreshTokenHash {
    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }

    /// Wraps bytes read back from storage.
    pub fn from_bytes(bytes: [u8; 32]) -> Self {
        RefreshTokenHash(bytes)
    }

    fn of(token: &str) -> Self {
        RefreshTokenHash(Sha256::digest(token.as_bytes()).into())
    }
}

/// The id shared by every token descended from one login (128 random bits, base64url).
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct FamilyId(String);

impl FamilyId {
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        FamilyId(b64url(&random_array::<16, R>(rng)))
    }

    /// Wraps a value read back from storage.
    pub fn from_stored(id: String) -> Self {
        FamilyId(id)
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

/// The stored state of one refresh token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshRecord {
    pub family: FamilyId,
    /// Set when the token was rotated (exchanged for a child).
    pub used: bool,
    /// Set when its family was revoked (logout, reuse detected, admin action).
    pub revoked: bool,
    pub expires_at: DateTime<Utc>,
}

/// A new refresh token: give `token` to the client, store `hash` with `record`.
#[derive(Debug, Clone)]
pub struct IssuedRefreshToken {
    pub token: Secret<String>,
    pub hash: RefreshTokenHash,
    pub record: RefreshRecord,
}

/// What to do with a presented refresh token. See the module docs for what storage must do for each.
#[derive(Debug, Clone, PartialEq, Eq)]
#[must_use]
pub enum RefreshDecision {
    /// Valid and unused: mark it used and issue a child in the same family, atomically.
    Rotate,
    /// Already used: someone replayed it. Revoke the whole family.
    ReuseDetected { revoke_family: FamilyId },
    /// Past its expiry.
    Expired,
    /// Its family was revoked.
    Revoked,
}

/// The presented value is not shaped like a refresh token.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
#[error("malformed refresh token")]
pub struct MalformedRefreshToken;

impl MalformedRefreshToken {
    pub fn code(&self) -> &'static str {
        "refresh_token_malformed"
    }
}

fn issue<R: CryptoRng + ?Sized>(rng: &mut R, family: FamilyId, now: DateTime<Utc>) -> IssuedRefreshToken {
    let token = Secret::new(b64url(&random_array::<TOKEN_BYTES, R>(rng)));
    let hash = RefreshTokenHash::of(token.expose());
    IssuedRefreshToken {
        token,
        hash,
        record: RefreshRecord { family, used: false, revoked: false, expires_at: later(now, REFRESH_TTL) },
    }
}

/// The first token of a new family, at login.
pub fn start_family<R: CryptoRng + ?Sized>(rng: &mut R, now: DateTime<Utc>) -> IssuedRefreshToken {
    let family = FamilyId::generate(rng);
    issue(rng, family, now)
}

/// The child that replaces a rotated token, in the same family.
pub fn rotate<R: CryptoRng + ?Sized>(rng: &mut R, family: &FamilyId, now: DateTime<Utc>) -> IssuedRefreshToken {
    issue(rng, family.clone(), now)
}

/// The storage key of a presented token, after checking its shape.
pub fn hash_presented(token: &str) -> Result<RefreshTokenHash, MalformedRefreshToken> {
    if !is_b64url_of_len(token, TOKEN_CHARS) {
        return Err(MalformedRefreshToken);
    }
    Ok(RefreshTokenHash::of(token))
}

/// Decides what a presented token (whose stored record is `record`) allows at `now`.
///
/// Precedence: a revoked family stays revoked; then reuse, even of an expired token, revokes the family
/// (a stolen token replayed late is still a theft, and a younger sibling may still be live); then expiry.
pub fn decide(record: &RefreshRecord, now: DateTime<Utc>) -> RefreshDecision {
    if record.revoked {
        RefreshDecision::Revoked
    } else if record.used {
        RefreshDecision::ReuseDetected { revoke_family: record.family.clone() }
    } else if now >= record.expires_at {
        RefreshDecision::Expired
    } else {
        RefreshDecision::Rotate
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::{ScriptedRng, os};
    use chrono::TimeZone;

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 6, 1, 12, 0, 0).unwrap()
    }

    #[test]
    fn tokens_are_256_bit_base64url_and_stored_as_sha256() {
        let issued = start_family(&mut os(), t0());
        let token = issued.token.expose();
        assert_eq!(token.len(), TOKEN_CHARS);
        assert!(is_b64url_of_len(token, TOKEN_CHARS));
        assert_eq!(hash_presented(token), Ok(issued.hash));
        assert_eq!(issued.hash.as_bytes(), &<[u8; 32]>::from(Sha256::digest(token.as_bytes())));
        assert_eq!(issued.record.expires_at, t0() + TimeDelta::days(7));
        assert!(!issued.record.used && !issued.record.revoked);
    }

    #[test]
    fn token_bytes_come_from_the_generator() {
        // Family id first (16 bytes of 0x01), then the token (32 bytes of 0xff).
        let mut script = vec![1u8; 16];
        script.extend([0xffu8; 32]);
        let issued = start_family(&mut ScriptedRng::bytes(&script), t0());
        assert_eq!(issued.record.family.as_str(), "AQEBAQEBAQEBAQEBAQEBAQ");
        assert_eq!(issued.token.expose(), &"_".repeat(42).chars().chain(['8']).collect::<String>());
    }

    #[test]
    fn rotation_stays_in_the_family_with_a_fresh_expiry() {
        let first = start_family(&mut os(), t0());
        let later = t0() + TimeDelta::days(3);
        let child = rotate(&mut os(), &first.record.family, later);
        assert_eq!(child.record.family, first.record.family);
        assert_ne!(child.hash, first.hash);
        assert_eq!(child.record.expires_at, later + REFRESH_TTL);
    }

    #[test]
    fn malformed_presented_tokens_are_refused_before_lookup() {
        let good = start_family(&mut os(), t0());
        let token = good.token.expose();
        for bad in
            [String::new(), token[..42].to_owned(), format!("{token}A"), format!("{}=", &token[..42]), "+".repeat(43)]
        {
            assert_eq!(hash_presented(&bad), Err(MalformedRefreshToken), "{bad}");
        }
    }

    #[test]
    fn decision_table() {
        let family = FamilyId::from_stored("fam".to_owned());
        let fresh = RefreshRecord { family: family.clone(), used: false, revoked: false, expires_at: t0() };
        let before = t0() - TimeDelta::seconds(1);
        assert_eq!(decide(&fresh, before), RefreshDecision::Rotate);
        assert_eq!(decide(&fresh, t0()), RefreshDecision::Expired);
        let used = RefreshRecord { used: true, ..fresh.clone() };
        assert_eq!(decide(&used, before), RefreshDecision::ReuseDetected { revoke_family: family.clone() });
        assert_eq!(
            decide(&used, t0() + TimeDelta::days(30)),
            RefreshDecision::ReuseDetected { revoke_family: family.clone() },
            "reuse of an expired token still revokes the family"
        );
        let revoked = RefreshRecord { revoked: true, ..fresh.clone() };
        assert_eq!(decide(&revoked, before), RefreshDecision::Revoked);
        let revoked_and_used = RefreshRecord { revoked: true, used: true, ..fresh };
        assert_eq!(decide(&revoked_and_used, before), RefreshDecision::Revoked);
    }

    #[test]
    fn a_replayed_token_after_rotation_revokes_the_family() {
        // Simulates the storage contract: rotate once, then present the parent again.
        let parent = start_family(&mut os(), t0());
        let mut parent_row = parent.record.clone();
        assert_eq!(decide(&parent_row, t0()), RefreshDecision::Rotate);
        parent_row.used = true;
        let child = rotate(&mut os(), &parent_row.family, t0());
        let mut child_row = child.record.clone();

        let decision = decide(&parent_row, t0() + TimeDelta::minutes(5));
        let RefreshDecision::ReuseDetected { revoke_family } = decision else {
            panic!("expected reuse detection, got {decision:?}");
        };
        for row in [&mut parent_row, &mut child_row] {
            if row.family == revoke_family {
                row.revoked = true;
            }
        }
        assert_eq!(decide(&child_row, t0() + TimeDelta::minutes(5)), RefreshDecision::Revoked);
    }
}
