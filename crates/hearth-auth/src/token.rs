//! Access tokens: short-lived JWTs signed with EdDSA (Ed25519), and the [`KeyRing`] that issues and
//! verifies them.
//!
//! ## Format
//! A compact JWS (RFC 7515) with the header `{"alg":"EdDSA","typ":"at+jwt","kid":"…"}` (RFC 8037,
//! RFC 9068's type for access tokens) and [`AccessClaims`] as payload. The `kid` is the key's RFC 7638
//! JWK thumbprint, so it is derived from the key itself and never has to be stored beside it.
//!
//! ## Why not the `jsonwebtoken` crate
//! Its pure-Rust backend (`rust_crypto`) compiles RSA, P-256 and P-384 as well, and its validation is
//! configured rather than typed: it cannot report "no `kid`" or "`alg: none`" as distinct errors, and
//! its key selection by `kid` is left to the caller anyway. A compact JWS with one algorithm is about a
//! hundred lines over `ed25519-dalek`, and keeping them here makes the accepted surface explicit:
//! exactly one algorithm, exactly three segments, strict base64url, strict signature verification
//! (`verify_strict`, which refuses small-order keys and non-canonical signatures), and no header
//! parameters that could point at other keys (`jku`, `jwk`, `x5u`… are simply ignored; `crit` is
//! refused as RFC 7515 §4.1.11 requires of unknown extensions).
//!
//! ## Verification
//! [`KeyRing::verify`] checks, in order: size and shape (three base64url segments), the header
//! (`alg` must be `EdDSA`: `none` and every other value are refused before any key is touched; `typ`
//! must be `at+jwt`; `kid` must be present and known), the signature, then the claims (issuer,
//! audience, expiry and issue time with a small leeway). Each failure is its own [`TokenError`]
//! variant with a stable code, for logs and metrics; clients should only ever see `invalid_token`.
//!
//! ## Key rotation
//! A ring has one active key that signs, and any number of older keys that still verify. To rotate,
//! [`KeyRing::rotate`] to a new key: tokens signed by the old key keep working until they expire
//! (at most the access-token lifetime) and the old key can then be [`KeyRing::remove`]d. Publish
//! [`KeyRing::jwks`] so that other services can follow. Private keys serialise to PKCS#8 DER
//! ([`TokenKey::to_pkcs8_der`]) for the caller to store *encrypted*.

use std::collections::BTreeMap;

use chrono::{DateTime, TimeDelta, Utc};
use ed25519_dalek::pkcs8::{DecodePrivateKey, EncodePrivateKey, KeypairBytes};
use ed25519_dalek::{Signature, Signer, SigningKey, VerifyingKey};
use rand_core::CryptoRng;
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

use crate::role::Role;
use crate::secret::Secret;
use crate::util::{b64url, b64url_decode, later, random_array};

/// The only JWS algorithm issued or accepted.
pub const ALGORITHM: &str = "EdDSA";
/// The JWT type of access tokens (RFC 9068).
pub const TOKEN_TYPE: &str = "at+jwt";
/// Default lifetime of an access token.
pub const DEFAULT_TTL: TimeDelta = TimeDelta::minutes(15);
/// Default allowance for clock differences when checking `exp` and `iat`.
pub const DEFAULT_LEEWAY: TimeDelta = TimeDelta::seconds(30);
/// Tokens longer than this are refused before any decoding (ours are well under 1 KiB).
pub const MAX_TOKEN_LEN: usize = 8 * 1024;

/// Issuer, audience and lifetimes shared by issuing and verifying.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TokenSettings {
    /// `iss`: this server's public base URL.
    pub issuer: String,
    /// `aud`: the API the tokens are for (usually the FHIR base URL).
    pub audience: String,
    /// How long an issued token lives.
    pub ttl: TimeDelta,
    /// Allowance for clock skew when checking `exp` and `iat`. Keep it small (seconds).
    pub leeway: TimeDelta,
}

impl TokenSettings {
    /// The defaults: 15-minute tokens, 30 seconds of leeway.
    pub fn new(issuer: impl Into<String>, audience: impl Into<String>) -> Self {
        TokenSettings { issuer: issuer.into(), audience: audience.into(), ttl: DEFAULT_TTL, leeway: DEFAULT_LEEWAY }
    }
}

/// The claims of an access token. Times are Unix seconds.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    /// The account id.
    pub sub: String,
    pub aud: String,
    pub iat: i64,
    pub exp: i64,
    /// A unique id (128 random bits), for revocation lists and audit trails.
    pub jti: String,
    pub role: Role,
    /// Space-separated scopes (see [`crate::scope::ScopeSet`]).
    pub scope: String,
    /// The FHIR `Patient` id in context (SMART `patient` launch context), if any.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub patient: Option<String>,
    /// The FHIR resource of the user (`Practitioner/…`, `Patient/…`, `RelatedPerson/…`), if any.
    #[serde(rename = "fhirUser", default, skip_serializing_if = "Option::is_none")]
    pub fhir_user: Option<String>,
    /// The OAuth client the token was issued to (RFC 9068 `client_id`); none for app sign-ins.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub client_id: Option<String>,
}

/// What a new access token grants; [`KeyRing::issue`] adds the registered claims.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AccessGrant {
    /// The account id (`sub`).
    pub subject: String,
    pub role: Role,
    /// Space-separated scopes, already checked against what the account and client may have.
    pub scope: String,
    pub patient: Option<String>,
    pub fhir_user: Option<String>,
    /// The OAuth client the token is for, if any.
    pub client_id: Option<String>,
}

/// A freshly issued access token.
#[derive(Debug, Clone)]
pub struct IssuedToken {
    /// The compact JWS to hand to the client.
    pub token: Secret<String>,
    pub claims: AccessClaims,
    pub expires_at: DateTime<Utc>,
}

/// Why a token was refused. Distinct variants for logs and metrics; a client gets `invalid_token`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("malformed token: {0}")]
    Malformed(&'static str),
    #[error("unsigned token (alg: none)")]
    AlgorithmNone,
    #[error("token algorithm is not EdDSA")]
    UnsupportedAlgorithm,
    #[error("token is not an access token (typ must be at+jwt)")]
    WrongType,
    #[error("token header has no kid")]
    MissingKid,
    #[error("token was signed by an unknown key")]
    UnknownKid,
    #[error("token signature does not verify")]
    BadSignature,
    #[error("token has expired")]
    Expired,
    #[error("token is not valid yet")]
    NotYetValid,
    #[error("token was issued by someone else")]
    WrongIssuer,
    #[error("token is for another audience")]
    WrongAudience,
}

impl TokenError {
    /// Stable machine code, for logs and metrics.
    pub fn code(&self) -> &'static str {
        match self {
            TokenError::Malformed(_) => "token_malformed",
            TokenError::AlgorithmNone => "token_alg_none",
            TokenError::UnsupportedAlgorithm => "token_alg_unsupported",
            TokenError::WrongType => "token_wrong_type",
            TokenError::MissingKid => "token_missing_kid",
            TokenError::UnknownKid => "token_unknown_kid",
            TokenError::BadSignature => "token_bad_signature",
            TokenError::Expired => "token_expired",
            TokenError::NotYetValid => "token_not_yet_valid",
            TokenError::WrongIssuer => "token_wrong_issuer",
            TokenError::WrongAudience => "token_wrong_audience",
        }
    }
}

/// Errors managing keys or signing.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum KeyError {
    #[error("the PKCS#8 document is not an Ed25519 private key")]
    InvalidPkcs8,
    #[error("the JWK is not an Ed25519 public key (kty OKP, crv Ed25519)")]
    InvalidJwk,
    #[error("the JWK's kid is not its RFC 7638 thumbprint")]
    KidMismatch,
    #[error("a key with this kid is already in the ring")]
    DuplicateKid,
    #[error("no key with this kid in the ring")]
    UnknownKid,
    #[error("only a key with its private half can be the active signing key")]
    NotASigningKey,
    #[error("the active signing key cannot be removed; rotate first")]
    ActiveKey,
    #[error("could not encode the token")]
    Encoding,
}

/// A key id: the RFC 7638 JWK SHA-256 thumbprint of the public key, base64url.
#[derive(Debug, Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Serialize, Deserialize)]
#[serde(transparent)]
pub struct KeyId(String);

impl KeyId {
    pub fn as_str(&self) -> &str {
        &self.0
    }

    fn of(public: &VerifyingKey) -> Self {
        // RFC 7638 §3.2: the required members in lexicographic order, no whitespace.
        let x = b64url(public.as_bytes());
        let canonical = format!(r#"{{"crv":"Ed25519","kty":"OKP","x":"{x}"}}"#);
        KeyId(b64url(&Sha256::digest(canonical.as_bytes())))
    }
}

impl core::fmt::Display for KeyId {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.write_str(&self.0)
    }
}

/// An Ed25519 signing key with its key id. `Debug` shows only the id.
#[derive(Clone)]
pub struct TokenKey {
    kid: KeyId,
    key: SigningKey,
}

impl core::fmt::Debug for TokenKey {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("TokenKey").field("kid", &self.kid).finish_non_exhaustive()
    }
}

impl TokenKey {
    /// A new key from 32 bytes of the caller's generator.
    pub fn generate<R: CryptoRng + ?Sized>(rng: &mut R) -> Self {
        let seed = Secret::new(random_array::<32, R>(rng));
        TokenKey::from_signing_key(SigningKey::from_bytes(seed.expose()))
    }

    fn from_signing_key(key: SigningKey) -> Self {
        TokenKey { kid: KeyId::of(&key.verifying_key()), key }
    }

    /// Reads a key stored with [`TokenKey::to_pkcs8_der`] (RFC 8410 PKCS#8, v1 or v2).
    pub fn from_pkcs8_der(der: &[u8]) -> Result<Self, KeyError> {
        SigningKey::from_pkcs8_der(der).map(TokenKey::from_signing_key).map_err(|_| KeyError::InvalidPkcs8)
    }

    /// The private key as PKCS#8 v1 DER (RFC 8410 §7, without the optional public key), for the caller
    /// to encrypt and store. v1 is what OpenSSL and most tooling read; the v2 form with the public key
    /// embedded is still accepted by [`TokenKey::from_pkcs8_der`].
    pub fn to_pkcs8_der(&self) -> Result<Secret<Vec<u8>>, KeyError> {
        let pair = KeypairBytes { secret_key: self.key.to_bytes(), public_key: None };
        let document = pair.to_pkcs8_der().map_err(|_| KeyError::InvalidPkcs8)?;
        Ok(Secret::new(document.as_bytes().to_vec()))
    }

    pub fn kid(&self) -> &KeyId {
        &self.kid
    }

    /// The public half as a JWK (for JWKS).
    pub fn public_jwk(&self) -> Jwk {
        Jwk::for_key(&self.kid, &self.key.verifying_key())
    }
}

/// A public key in JWK form (RFC 7517, RFC 8037 `OKP`/`Ed25519`).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwk {
    pub kty: String,
    pub crv: String,
    /// The public key, base64url.
    pub x: String,
    pub kid: String,
    #[serde(rename = "use")]
    pub key_use: String,
    pub alg: String,
}

impl Jwk {
    fn for_key(kid: &KeyId, public: &VerifyingKey) -> Self {
        Jwk {
            kty: "OKP".to_owned(),
            crv: "Ed25519".to_owned(),
            x: b64url(public.as_bytes()),
            kid: kid.as_str().to_owned(),
            key_use: "sig".to_owned(),
            alg: ALGORITHM.to_owned(),
        }
    }

    fn verifying_key(&self) -> Result<VerifyingKey, KeyError> {
        if self.kty != "OKP" || self.crv != "Ed25519" {
            return Err(KeyError::InvalidJwk);
        }
        let bytes = b64url_decode(&self.x).ok_or(KeyError::InvalidJwk)?;
        let bytes: [u8; 32] = bytes.try_into().map_err(|_| KeyError::InvalidJwk)?;
        let key = VerifyingKey::from_bytes(&bytes).map_err(|_| KeyError::InvalidJwk)?;
        if key.is_weak() {
            return Err(KeyError::InvalidJwk);
        }
        Ok(key)
    }
}

/// A JWK Set, as served at the JWKS endpoint.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Jwks {
    pub keys: Vec<Jwk>,
}

#[derive(Clone)]
enum RingKey {
    Signing(TokenKey),
    VerifyOnly(VerifyingKey),
}

impl RingKey {
    fn verifying_key(&self) -> VerifyingKey {
        match self {
            RingKey::Signing(key) => key.key.verifying_key(),
            RingKey::VerifyOnly(key) => *key,
        }
    }
}

/// The set of keys that sign and verify access tokens: one active signing key, and older keys (with or
/// without their private half) that still verify until removed.
#[derive(Clone)]
pub struct KeyRing {
    active: KeyId,
    keys: BTreeMap<KeyId, RingKey>,
    verified: Verified,
}

/// Tokens whose signature this ring has already checked (by SHA-256 of the whole token), with
/// their claims: a client sends the same token with every request for its lifetime, and the
/// Ed25519 verification was one of the largest CPU costs of a read. Only the signature check is
/// skipped for a known token; issuer, audience and times are checked on every use. A copy of
/// the ring starts empty, and removing a key empties it, so no token outlives its key.
#[derive(Default)]
struct Verified(std::sync::Mutex<std::collections::HashMap<[u8; 32], AccessClaims>>);

impl Verified {
    /// Tokens remembered at most (then the memory starts over).
    const CAPACITY: usize = 4096;

    fn get(&self, digest: &[u8; 32]) -> Option<AccessClaims> {
        self.0.lock().ok()?.get(digest).cloned()
    }

    fn insert(&self, digest: [u8; 32], claims: AccessClaims) {
        if let Ok(mut map) = self.0.lock() {
            if map.len() >= Self::CAPACITY {
                map.clear();
            }
            map.insert(digest, claims);
        }
    }

    fn clear(&self) {
        if let Ok(mut map) = self.0.lock() {
            map.clear();
        }
    }
}

impl Clone for Verified {
    fn clone(&self) -> Self {
        Verified::default()
    }
}

impl core::fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut core::fmt::Formatter<'_>) -> core::fmt::Result {
        f.debug_struct("KeyRing").field("active", &self.active).field("kids", &self.keys.keys()).finish()
    }
}

#[derive(Serialize)]
struct HeaderOut<'a> {
    alg: &'a str,
    typ: &'a str,
    kid: &'a str,
}

/// Every header member we look at. Unknown members are ignored, except `crit`, whose presence alone
/// is refused. serde refuses duplicate members, so `{"alg":"EdDSA","alg":"none"}` is malformed.
#[derive(Deserialize)]
struct HeaderIn {
    alg: Option<String>,
    typ: Option<String>,
    kid: Option<String>,
    crit: Option<serde_json::Value>,
}

impl KeyRing {
    /// A ring whose only (and active) key is `active`.
    pub fn new(active: TokenKey) -> Self {
        let kid = active.kid.clone();
        let mut keys = BTreeMap::new();
        keys.insert(kid.clone(), RingKey::Signing(active));
        KeyRing { active: kid, keys, verified: Verified::default() }
    }

    /// The key that signs new tokens.
    pub fn active_kid(&self) -> &KeyId {
        &self.active
    }

    /// Every key id in the ring, active or not.
    pub fn kids(&self) -> impl Iterator<Item = &KeyId> {
        self.keys.keys()
    }

    /// Adds a key that verifies (and can later be made active) without changing the active key.
    pub fn insert(&mut self, key: TokenKey) -> Result<(), KeyError> {
        if self.keys.contains_key(&key.kid) {
            return Err(KeyError::DuplicateKid);
        }
        self.keys.insert(key.kid.clone(), RingKey::Signing(key));
        Ok(())
    }

    /// Adds a verification-only key from its public JWK (a retired key whose private half is gone, or
    /// a key of another instance). Its `kid` must be its RFC 7638 thumbprint.
    pub fn insert_public(&mut self, jwk: &Jwk) -> Result<(), KeyError> {
        let public = jwk.verifying_key()?;
        let kid = KeyId::of(&public);
        if kid.as_str() != jwk.kid {
            return Err(KeyError::KidMismatch);
        }
        if self.keys.contains_key(&kid) {
            return Err(KeyError::DuplicateKid);
        }
        self.keys.insert(kid, RingKey::VerifyOnly(public));
        Ok(())
    }

    /// Makes `key` the active signing key; the previous one stays in the ring and keeps verifying.
    pub fn rotate(&mut self, key: TokenKey) -> Result<(), KeyError> {
        let kid = key.kid.clone();
        self.insert(key)?;
        self.active = kid;
        Ok(())
    }

    /// Makes a key already in the ring (with its private half) the active one.
    pub fn activate(&mut self, kid: &KeyId) -> Result<(), KeyError> {
        match self.keys.get(kid) {
            Some(RingKey::Signing(_)) => {
                self.active = kid.clone();
                Ok(())
            }
            Some(RingKey::VerifyOnly(_)) => Err(KeyError::NotASigningKey),
            None => Err(KeyError::UnknownKid),
        }
    }

    /// Removes a key: tokens it signed stop verifying at once. The active key cannot be removed.
    pub fn remove(&mut self, kid: &KeyId) -> Result<(), KeyError> {
        if *kid == self.active {
            return Err(KeyError::ActiveKey);
        }
        self.verified.clear();
        self.keys.remove(kid).map(|_| ()).ok_or(KeyError::UnknownKid)
    }

    /// The public keys of the ring, for the JWKS endpoint.
    pub fn jwks(&self) -> Jwks {
        Jwks { keys: self.keys.iter().map(|(kid, key)| Jwk::for_key(kid, &key.verifying_key())).collect() }
    }

    fn active_key(&self) -> Result<&TokenKey, KeyError> {
        match self.keys.get(&self.active) {
            Some(RingKey::Signing(key)) => Ok(key),
            // `new`, `rotate` and `activate` only ever point `active` at a signing key, and `remove`
            // refuses to remove it.
            _ => Err(KeyError::UnknownKid),
        }
    }

    /// Issues an access token for `grant`, valid from `now` for `settings.ttl`, with a random `jti`.
    pub fn issue<R: CryptoRng + ?Sized>(
        &self,
        settings: &TokenSettings,
        grant: AccessGrant,
        now: DateTime<Utc>,
        rng: &mut R,
    ) -> Result<IssuedToken, KeyError> {
        let expires_at = later(now, settings.ttl);
        let claims = AccessClaims {
            iss: settings.issuer.clone(),
            sub: grant.subject,
            aud: settings.audience.clone(),
            iat: now.timestamp(),
            exp: expires_at.timestamp(),
            jti: b64url(&random_array::<16, R>(rng)),
            role: grant.role,
            scope: grant.scope,
            patient: grant.patient,
            fhir_user: grant.fhir_user,
            client_id: grant.client_id,
        };
        let token = self.sign(&claims)?;
        Ok(IssuedToken { token, claims, expires_at })
    }

    /// Signs arbitrary claims with the active key (for callers that build [`AccessClaims`] themselves).
    pub fn sign(&self, claims: &AccessClaims) -> Result<Secret<String>, KeyError> {
        let key = self.active_key()?;
        let header = HeaderOut { alg: ALGORITHM, typ: TOKEN_TYPE, kid: key.kid.as_str() };
        let header = serde_json::to_vec(&header).map_err(|_| KeyError::Encoding)?;
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Encoding)?;
        Ok(Secret::new(sign_compact(&key.key, &header, &payload)))
    }

    /// Signs an OpenID Connect ID token (`typ: JWT`) with the active key. The caller builds the
    /// claims (`iss`, `sub`, `aud`, `iat`, `exp`, `nonce`, `fhirUser`); an ID token is never
    /// accepted as an access token, because [`KeyRing::verify`] requires `typ: at+jwt`.
    pub fn sign_id_token(&self, claims: &serde_json::Value) -> Result<Secret<String>, KeyError> {
        let key = self.active_key()?;
        let header = HeaderOut { alg: ALGORITHM, typ: "JWT", kid: key.kid.as_str() };
        let header = serde_json::to_vec(&header).map_err(|_| KeyError::Encoding)?;
        let payload = serde_json::to_vec(claims).map_err(|_| KeyError::Encoding)?;
        Ok(Secret::new(sign_compact(&key.key, &header, &payload)))
    }

    /// Verifies a token at time `now` and returns its claims.
    pub fn verify(
        &self,
        settings: &TokenSettings,
        token: &str,
        now: DateTime<Utc>,
    ) -> Result<AccessClaims, TokenError> {
        if token.len() > MAX_TOKEN_LEN {
            return Err(TokenError::Malformed("too long"));
        }
        let digest: [u8; 32] = Sha256::digest(token.as_bytes()).into();
        if let Some(claims) = self.verified.get(&digest) {
            return check_claims(settings, claims, now);
        }
        let mut segments = token.split('.');
        let (Some(header_b64), Some(payload_b64), Some(signature_b64), None) =
            (segments.next(), segments.next(), segments.next(), segments.next())
        else {
            return Err(TokenError::Malformed("not three segments"));
        };

        let header = b64url_decode(header_b64).ok_or(TokenError::Malformed("header is not base64url"))?;
        let header: HeaderIn = parse_object(&header).ok_or(TokenError::Malformed("header is not a JSON object"))?;
        match header.alg.as_deref() {
            None => return Err(TokenError::Malformed("header has no alg")),
            Some(alg) if alg.eq_ignore_ascii_case("none") => return Err(TokenError::AlgorithmNone),
            Some(ALGORITHM) => {}
            Some(_) => return Err(TokenError::UnsupportedAlgorithm),
        }
        if header.crit.is_some() {
            return Err(TokenError::Malformed("unsupported critical header parameters"));
        }
        let typ_ok = header
            .typ
            .as_deref()
            .is_some_and(|typ| typ.eq_ignore_ascii_case(TOKEN_TYPE) || typ.eq_ignore_ascii_case("application/at+jwt"));
        if !typ_ok {
            return Err(TokenError::WrongType);
        }
        let kid = header.kid.ok_or(TokenError::MissingKid)?;
        let key = self.keys.get(&KeyId(kid)).ok_or(TokenError::UnknownKid)?.verifying_key();

        let signature = b64url_decode(signature_b64).ok_or(TokenError::Malformed("signature is not base64url"))?;
        let signature: [u8; 64] =
            signature.try_into().map_err(|_| TokenError::Malformed("signature is not 64 bytes"))?;
        let signing_input_len = header_b64.len() + 1 + payload_b64.len();
        let signing_input = token.get(..signing_input_len).ok_or(TokenError::Malformed("segments"))?;
        key.verify_strict(signing_input.as_bytes(), &Signature::from_bytes(&signature))
            .map_err(|_| TokenError::BadSignature)?;

        let payload = b64url_decode(payload_b64).ok_or(TokenError::Malformed("payload is not base64url"))?;
        let claims: AccessClaims =
            parse_object(&payload).ok_or(TokenError::Malformed("payload is not access-token claims"))?;
        self.verified.insert(digest, claims.clone());
        check_claims(settings, claims, now)
    }
}

/// The checks of a token's claims after its signature: issuer, audience, expiry, issue time.
fn check_claims(
    settings: &TokenSettings,
    claims: AccessClaims,
    now: DateTime<Utc>,
) -> Result<AccessClaims, TokenError> {
    if claims.iss != settings.issuer {
        return Err(TokenError::WrongIssuer);
    }
    if claims.aud != settings.audience {
        return Err(TokenError::WrongAudience);
    }
    let now = now.timestamp();
    let leeway = settings.leeway.num_seconds().max(0);
    // RFC 7519 §4.1.4: the token must not be accepted on or after `exp`.
    if now >= claims.exp.saturating_add(leeway) {
        return Err(TokenError::Expired);
    }
    if claims.iat > now.saturating_add(leeway) {
        return Err(TokenError::NotYetValid);
    }
    Ok(claims)
}

/// Parses a JSON *object* into `T`. serde would also accept an array for a struct, which JOSE does not
/// allow; the derived map visitor refuses duplicate members.
fn parse_object<T: serde::de::DeserializeOwned>(json: &[u8]) -> Option<T> {
    let first = json.iter().find(|b| !b.is_ascii_whitespace())?;
    if *first != b'{' {
        return None;
    }
    serde_json::from_slice(json).ok()
}

/// `base64url(header) . base64url(payload) . base64url(Ed25519(signing input))`.
fn sign_compact(key: &SigningKey, header: &[u8], payload: &[u8]) -> String {
    let mut token = format!("{}.{}", b64url(header), b64url(payload));
    let signature = key.sign(token.as_bytes());
    token.push('.');
    token.push_str(&b64url(&signature.to_bytes()));
    token
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::test_rng::os;
    use chrono::TimeZone;
    use data_encoding::{BASE64, HEXLOWER};

    fn settings() -> TokenSettings {
        TokenSettings::new("https://hearth.example", "https://hearth.example/fhir")
    }

    fn t0() -> DateTime<Utc> {
        Utc.with_ymd_and_hms(2030, 1, 2, 3, 4, 5).unwrap()
    }

    fn grant() -> AccessGrant {
        AccessGrant {
            subject: "acct_123".to_owned(),
            role: Role::Clinician,
            scope: "user/*.rs openid fhirUser".to_owned(),
            patient: None,
            fhir_user: Some("Practitioner/p1".to_owned()),
            client_id: None,
        }
    }

    fn ring() -> KeyRing {
        KeyRing::new(TokenKey::generate(&mut os()))
    }

    fn issue(ring: &KeyRing) -> String {
        ring.issue(&settings(), grant(), t0(), &mut os()).unwrap().token.expose().clone()
    }

    fn part(token: &str, index: usize) -> &str {
        token.split('.').nth(index).unwrap()
    }

    /// Re-encodes the header and payload as given, keeping the original signature.
    fn forge(header: &str, payload_b64: &str, signature_b64: &str) -> String {
        format!("{}.{}.{}", b64url(header.as_bytes()), payload_b64, signature_b64)
    }

    // RFC 8037 Appendix A: the Ed25519 key pair used by its examples.
    const RFC8037_D: &str = "nWGxne_9WmC6hEr0kuwsxERJxWl7MmkZcDusAxyuf2A";
    const RFC8037_X: &str = "11qYAYKxCrfVS_7TyWQHOg7hcvPapiMlrwIaaPcHURo";

    fn rfc8037_key() -> SigningKey {
        let d: [u8; 32] = b64url_decode(RFC8037_D).unwrap().try_into().unwrap();
        SigningKey::from_bytes(&d)
    }

    #[test]
    fn rfc8037_public_key_and_thumbprint() {
        let key = rfc8037_key();
        assert_eq!(b64url(key.verifying_key().as_bytes()), RFC8037_X);
        // RFC 8037 §A.3.
        assert_eq!(KeyId::of(&key.verifying_key()).as_str(), "kPrK_qmxVWaYVA9wwBF6Iuo3vVzz7TxHCTwXBygrS4k");
    }

    #[test]
    fn rfc8037_signature_vector() {
        // RFC 8037 §A.4: {"alg":"EdDSA"} over "Example of Ed25519 signing".
        let token = sign_compact(&rfc8037_key(), br#"{"alg":"EdDSA"}"#, b"Example of Ed25519 signing");
        assert_eq!(
            token,
            "eyJhbGciOiJFZERTQSJ9.RXhhbXBsZSBvZiBFZDI1NTE5IHNpZ25pbmc.hgyY0il_MGCjP0JzlnLWG1PPOt7-09PGcvMg3AIbQR6dWbhijcNR4ki4iylGjg5BhVsPt9g7sVvpAr_MuM0KAg"
        );
    }

    #[test]
    fn rfc8410_pkcs8_private_key_reads_and_writes_back_identically() {
        // RFC 8410 §10.3: an Ed25519 private key in PKCS#8.
        let der = BASE64.decode(b"MC4CAQAwBQYDK2VwBCIEINTuctv5E1hK1bbY8fdp+K06/nwoy/HU++CXqI9EdVhC").unwrap();
        let key = TokenKey::from_pkcs8_der(&der).unwrap();
        assert_eq!(
            HEXLOWER.encode(&key.key.to_bytes()),
            "d4ee72dbf913584ad5b6d8f1f769f8ad3afe7c28cbf1d4fbe097a88f44755842"
        );
        assert_eq!(key.to_pkcs8_der().unwrap().expose(), &der);
    }

    #[test]
    fn pkcs8_v2_with_the_public_key_still_reads() {
        let key = TokenKey::generate(&mut os());
        let v2 = key.key.to_pkcs8_der().unwrap();
        assert_eq!(TokenKey::from_pkcs8_der(v2.as_bytes()).unwrap().kid(), key.kid());
    }

    #[test]
    fn pkcs8_round_trip_keeps_the_kid() {
        let key = TokenKey::generate(&mut os());
        let der = key.to_pkcs8_der().unwrap();
        let back = TokenKey::from_pkcs8_der(der.expose()).unwrap();
        assert_eq!(back.kid(), key.kid());
        assert_eq!(TokenKey::from_pkcs8_der(b"not a key").err(), Some(KeyError::InvalidPkcs8));
        assert!(!format!("{key:?}").contains(&HEXLOWER.encode(&key.key.to_bytes())));
    }

    #[test]
    fn issue_then_verify_round_trips_the_claims() {
        let ring = ring();
        let issued = ring.issue(&settings(), grant(), t0(), &mut os()).unwrap();
        assert_eq!(issued.expires_at, t0() + TimeDelta::minutes(15));
        let claims = ring.verify(&settings(), issued.token.expose(), t0()).unwrap();
        assert_eq!(claims, issued.claims);
        assert_eq!(claims.exp - claims.iat, 900);
        assert_eq!(claims.jti.len(), 22);
        assert_eq!(claims.fhir_user.as_deref(), Some("Practitioner/p1"));

        let header: serde_json::Value =
            serde_json::from_slice(&b64url_decode(part(issued.token.expose(), 0)).unwrap()).unwrap();
        assert_eq!(header, serde_json::json!({"alg": "EdDSA", "typ": "at+jwt", "kid": ring.active_kid().as_str()}));
        let payload: serde_json::Value =
            serde_json::from_slice(&b64url_decode(part(issued.token.expose(), 1)).unwrap()).unwrap();
        assert_eq!(payload["fhirUser"], "Practitioner/p1");
        assert!(payload.get("patient").is_none(), "absent context is omitted, not null");
    }

    #[test]
    fn two_tokens_have_different_jtis() {
        let ring = ring();
        let a = ring.issue(&settings(), grant(), t0(), &mut os()).unwrap();
        let b = ring.issue(&settings(), grant(), t0(), &mut os()).unwrap();
        assert_ne!(a.claims.jti, b.claims.jti);
    }

    #[test]
    fn expiry_honours_the_leeway_to_the_second() {
        let ring = ring();
        let token = issue(&ring);
        let exp = t0() + TimeDelta::minutes(15);
        let leeway = settings().leeway;
        assert!(ring.verify(&settings(), &token, exp - TimeDelta::seconds(1)).is_ok());
        assert!(ring.verify(&settings(), &token, exp + leeway - TimeDelta::seconds(1)).is_ok());
        assert_eq!(ring.verify(&settings(), &token, exp + leeway), Err(TokenError::Expired));
        assert_eq!(ring.verify(&settings(), &token, exp + leeway + TimeDelta::seconds(1)), Err(TokenError::Expired));
        let strict = TokenSettings { leeway: TimeDelta::zero(), ..settings() };
        assert_eq!(ring.verify(&strict, &token, exp), Err(TokenError::Expired));
    }

    #[test]
    fn a_token_from_the_future_is_not_yet_valid() {
        let ring = ring();
        let token = issue(&ring);
        let leeway = settings().leeway;
        assert!(ring.verify(&settings(), &token, t0() - leeway).is_ok());
        assert_eq!(
            ring.verify(&settings(), &token, t0() - leeway - TimeDelta::seconds(1)),
            Err(TokenError::NotYetValid)
        );
    }

    #[test]
    fn wrong_issuer_and_audience_are_refused() {
        let ring = ring();
        let token = issue(&ring);
        let other_issuer = TokenSettings { issuer: "https://evil.example".to_owned(), ..settings() };
        assert_eq!(ring.verify(&other_issuer, &token, t0()), Err(TokenError::WrongIssuer));
        let other_audience = TokenSettings { audience: "https://hearth.example/api".to_owned(), ..settings() };
        assert_eq!(ring.verify(&other_audience, &token, t0()), Err(TokenError::WrongAudience));
    }

    #[test]
    fn every_tampered_byte_is_detected() {
        let ring = ring();
        let token = issue(&ring);
        let bytes = token.as_bytes();
        for index in 0..bytes.len() {
            if bytes[index] == b'.' {
                continue;
            }
            let mut tampered = bytes.to_vec();
            // Swap for another base64url character so the change is not caught by decoding alone.
            tampered[index] = if bytes[index] == b'A' { b'B' } else { b'A' };
            let tampered = String::from_utf8(tampered).unwrap();
            assert!(ring.verify(&settings(), &tampered, t0()).is_err(), "byte {index} changed and still verified");
        }
    }

    #[test]
    fn a_modified_payload_fails_the_signature() {
        let ring = ring();
        let token = issue(&ring);
        let mut claims: serde_json::Value = serde_json::from_slice(&b64url_decode(part(&token, 1)).unwrap()).unwrap();
        claims["role"] = serde_json::json!("admin");
        let forged = format!("{}.{}.{}", part(&token, 0), b64url(claims.to_string().as_bytes()), part(&token, 2));
        assert_eq!(ring.verify(&settings(), &forged, t0()), Err(TokenError::BadSignature));
    }

    #[test]
    fn alg_none_crafted_by_hand_is_refused() {
        let ring = ring();
        let token = issue(&ring);
        let kid = ring.active_kid().as_str();
        for alg in ["none", "None", "NONE"] {
            let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#);
            // Unsigned: empty signature segment, as RFC 7519 §6.1 writes it.
            let unsigned = format!("{}.{}.", b64url(header.as_bytes()), part(&token, 1));
            assert_eq!(ring.verify(&settings(), &unsigned, t0()), Err(TokenError::AlgorithmNone));
            // With the original signature kept.
            let resigned = forge(&header, part(&token, 1), part(&token, 2));
            assert_eq!(ring.verify(&settings(), &resigned, t0()), Err(TokenError::AlgorithmNone));
        }
    }

    #[test]
    fn other_algorithms_are_refused() {
        let ring = ring();
        let token = issue(&ring);
        let kid = ring.active_kid().as_str();
        for alg in ["HS256", "RS256", "ES256", "eddsa", "Ed25519", ""] {
            let header = format!(r#"{{"alg":"{alg}","typ":"at+jwt","kid":"{kid}"}}"#);
            let forged = forge(&header, part(&token, 1), part(&token, 2));
            assert_eq!(ring.verify(&settings(), &forged, t0()), Err(TokenError::UnsupportedAlgorithm), "{alg}");
        }
        let no_alg = forge(&format!(r#"{{"typ":"at+jwt","kid":"{kid}"}}"#), part(&token, 1), part(&token, 2));
        assert_eq!(ring.verify(&settings(), &no_alg, t0()), Err(TokenError::Malformed("header has no alg")));
        let duplicate = forge(
            &format!(r#"{{"alg":"EdDSA","alg":"none","typ":"at+jwt","kid":"{kid}"}}"#),
            part(&token, 1),
            part(&token, 2),
        );
        assert!(matches!(ring.verify(&settings(), &duplicate, t0()), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn missing_unknown_and_removed_kids_are_refused() {
        let ring = ring();
        let token = issue(&ring);
        let no_kid = forge(r#"{"alg":"EdDSA","typ":"at+jwt"}"#, part(&token, 1), part(&token, 2));
        assert_eq!(ring.verify(&settings(), &no_kid, t0()), Err(TokenError::MissingKid));
        let wrong_kid =
            forge(r#"{"alg":"EdDSA","typ":"at+jwt","kid":"no-such-key"}"#, part(&token, 1), part(&token, 2));
        assert_eq!(ring.verify(&settings(), &wrong_kid, t0()), Err(TokenError::UnknownKid));
        // A token from a different ring names a kid this ring does not have.
        let stranger = issue(&self::ring());
        assert_eq!(ring.verify(&settings(), &stranger, t0()), Err(TokenError::UnknownKid));
    }

    #[test]
    fn a_kid_pointing_at_another_key_in_the_ring_fails_the_signature() {
        let mut ring = ring();
        let old_kid = ring.active_kid().clone();
        ring.rotate(TokenKey::generate(&mut os())).unwrap();
        let token = issue(&ring);
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{old_kid}"}}"#);
        let relabelled = forge(&header, part(&token, 1), part(&token, 2));
        assert_eq!(ring.verify(&settings(), &relabelled, t0()), Err(TokenError::BadSignature));
    }

    #[test]
    fn wrong_type_and_critical_headers_are_refused() {
        let ring = ring();
        let token = issue(&ring);
        let kid = ring.active_kid().as_str();
        for header in [
            format!(r#"{{"alg":"EdDSA","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","typ":"JWT","kid":"{kid}"}}"#),
            format!(r#"{{"alg":"EdDSA","typ":"id_token+jwt","kid":"{kid}"}}"#),
        ] {
            let forged = forge(&header, part(&token, 1), part(&token, 2));
            assert_eq!(ring.verify(&settings(), &forged, t0()), Err(TokenError::WrongType), "{header}");
        }
        let crit = forge(
            &format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{kid}","crit":["exp"]}}"#),
            part(&token, 1),
            part(&token, 2),
        );
        assert!(matches!(ring.verify(&settings(), &crit, t0()), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn malformed_tokens_are_refused() {
        let ring = ring();
        let token = issue(&ring);
        let (h, p, s) = (part(&token, 0), part(&token, 1), part(&token, 2));
        for bad in [
            String::new(),
            "abc".to_owned(),
            format!("{h}.{p}"),
            format!("{h}.{p}.{s}.{s}"),
            format!("{h}.{p}.{s}="),
            format!("{h}=.{p}.{s}"),
            format!("{h}.{p}.{}", &s[..20]),
            format!("!!.{p}.{s}"),
            format!("{}.{p}.{s}", b64url(b"[1,2,3]")),
            format!("{}.{p}.{s}", b64url(br#"["EdDSA","at+jwt","kid",null]"#)),
            format!("{}.{p}.{s}", b64url(b"not json")),
            "a".repeat(MAX_TOKEN_LEN + 1),
        ] {
            let result = ring.verify(&settings(), &bad, t0());
            assert!(matches!(result, Err(TokenError::Malformed(_))), "{bad:.60} gave {result:?}");
        }
    }

    #[test]
    fn claims_that_are_not_ours_are_malformed_even_when_signed() {
        let ring = ring();
        let key = ring.active_key().unwrap();
        let header = format!(r#"{{"alg":"EdDSA","typ":"at+jwt","kid":"{}"}}"#, key.kid);
        let signed = sign_compact(&key.key, header.as_bytes(), br#"{"sub":"x"}"#);
        assert!(matches!(ring.verify(&settings(), &signed, t0()), Err(TokenError::Malformed(_))));
    }

    #[test]
    fn rotation_keeps_old_tokens_valid_until_the_old_key_is_removed() {
        let mut ring = ring();
        let old_kid = ring.active_kid().clone();
        let old_token = issue(&ring);
        let new_key = TokenKey::generate(&mut os());
        let new_kid = new_key.kid().clone();
        ring.rotate(new_key).unwrap();
        assert_eq!(ring.active_kid(), &new_kid);
        let new_token = issue(&ring);
        assert!(ring.verify(&settings(), &old_token, t0()).is_ok());
        assert!(ring.verify(&settings(), &new_token, t0()).is_ok());
        assert_eq!(ring.jwks().keys.len(), 2);

        assert_eq!(ring.remove(&new_kid), Err(KeyError::ActiveKey));
        ring.remove(&old_kid).unwrap();
        assert_eq!(ring.verify(&settings(), &old_token, t0()), Err(TokenError::UnknownKid));
        assert!(ring.verify(&settings(), &new_token, t0()).is_ok());
        assert_eq!(ring.remove(&old_kid), Err(KeyError::UnknownKid));
    }

    #[test]
    fn ring_bookkeeping_errors() {
        let key = TokenKey::generate(&mut os());
        let mut ring = KeyRing::new(key.clone());
        assert_eq!(ring.insert(key.clone()), Err(KeyError::DuplicateKid));
        assert_eq!(ring.rotate(key), Err(KeyError::DuplicateKid));
        assert_eq!(ring.activate(&KeyId("nope".to_owned())), Err(KeyError::UnknownKid));
        let spare = TokenKey::generate(&mut os());
        let spare_kid = spare.kid().clone();
        ring.insert(spare).unwrap();
        ring.activate(&spare_kid).unwrap();
        assert_eq!(ring.active_kid(), &spare_kid);
        assert_eq!(ring.kids().count(), 2);
    }

    #[test]
    fn verification_only_keys_verify_but_cannot_sign() {
        let signer = ring();
        let token = issue(&signer);
        let jwk = signer.jwks().keys.remove(0);

        let mut verifier = ring();
        verifier.insert_public(&jwk).unwrap();
        assert!(verifier.verify(&settings(), &token, t0()).is_ok());
        assert_eq!(verifier.activate(&signer.active_kid().clone()), Err(KeyError::NotASigningKey));
        assert_eq!(verifier.insert_public(&jwk), Err(KeyError::DuplicateKid));

        let lying = Jwk { kid: "chosen-by-attacker".to_owned(), ..jwk.clone() };
        assert_eq!(ring().insert_public(&lying), Err(KeyError::KidMismatch));
        let rsa = Jwk { kty: "RSA".to_owned(), ..jwk.clone() };
        assert_eq!(ring().insert_public(&rsa), Err(KeyError::InvalidJwk));
        let short = Jwk { x: "AAAA".to_owned(), ..jwk };
        assert_eq!(ring().insert_public(&short), Err(KeyError::InvalidJwk));
    }

    #[test]
    fn jwks_serialises_as_rfc8037_public_keys() {
        let ring = ring();
        let json = serde_json::to_value(ring.jwks()).unwrap();
        let key = &json["keys"][0];
        assert_eq!(key["kty"], "OKP");
        assert_eq!(key["crv"], "Ed25519");
        assert_eq!(key["use"], "sig");
        assert_eq!(key["alg"], "EdDSA");
        assert_eq!(key["kid"], ring.active_kid().as_str());
        assert_eq!(key["x"].as_str().unwrap().len(), 43);
        assert!(key.get("d").is_none(), "no private material in the JWKS");
    }

    #[test]
    fn error_codes_are_distinct() {
        let all = [
            TokenError::Malformed("x"),
            TokenError::AlgorithmNone,
            TokenError::UnsupportedAlgorithm,
            TokenError::WrongType,
            TokenError::MissingKid,
            TokenError::UnknownKid,
            TokenError::BadSignature,
            TokenError::Expired,
            TokenError::NotYetValid,
            TokenError::WrongIssuer,
            TokenError::WrongAudience,
        ];
        let codes: std::collections::HashSet<_> = all.iter().map(TokenError::code).collect();
        assert_eq!(codes.len(), all.len());
    }
}
