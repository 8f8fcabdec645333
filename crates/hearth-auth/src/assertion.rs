//! SMART Backend Services client authentication: a `private_key_jwt` client assertion (RFC 7523,
//! as the SMART Backend Services profile narrows it) checked against the client's registered
//! JWK Set. Pure: the caller fetches the JWKS and remembers the `jti`s it has seen.
//!
//! Decisions:
//! - Algorithms: `RS384` (RSASSA-PKCS1-v1_5 with SHA-384, keys of 2048 bits or more) and `ES384`
//!   (ECDSA P-384 with SHA-384, the JWS fixed `r‖s` form), the two the profile requires servers to
//!   support; anything else (`none`, HMAC, `RS256`) is refused before a key is looked at. The
//!   signature is checked with `ring`, already in the tree through rustls.
//! - The key is the JWKS entry with the header's `kid` (and a matching `kty`); without a `kid`,
//!   each key of the right type is tried.
//! - Claims: `iss` = `sub` = the client id, `aud` = the token endpoint URL (a string or an array
//!   holding it), `exp` in the future and at most five minutes ahead, a `jti`. Replay (a `jti`
//!   seen before for the client, until its `exp`) is the caller's check.

use chrono::{DateTime, Utc};
use serde::Deserialize;
use serde_json::Value;

use crate::util::b64url_decode;

/// The longest an assertion may live (SMART Backend Services: `exp` no more than five minutes in
/// the future).
pub const MAX_LIFETIME_SECONDS: i64 = 300;

/// The `client_assertion_type` of a JWT assertion.
pub const JWT_BEARER: &str = "urn:ietf:params:oauth:client-assertion-type:jwt-bearer";

/// The algorithms accepted.
pub const ALGORITHMS: [&str; 2] = ["RS384", "ES384"];

/// Why an assertion is refused (each is `invalid_client` on the wire; the text says why).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssertionError {
    #[error("the client assertion is not a compact JWS: {0}")]
    Malformed(&'static str),
    #[error("the client assertion's algorithm must be RS384 or ES384")]
    Algorithm,
    #[error("no key of the client's JWK Set verifies the client assertion's signature")]
    Signature,
    #[error("the client assertion's {0} is wrong")]
    Claim(&'static str),
    #[error("the client assertion has expired")]
    Expired,
    #[error("the client assertion may live at most five minutes")]
    TooLong,
}

/// What a verified assertion says the caller must still check: its `jti` (not seen before) and
/// until when to remember it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    pub jti: String,
    pub exp: DateTime<Utc>,
}

#[derive(Deserialize)]
struct Header {
    alg: String,
    #[serde(default)]
    kid: Option<String>,
}

#[derive(Deserialize)]
struct Claims {
    iss: Option<String>,
    sub: Option<String>,
    aud: Option<Value>,
    exp: Option<i64>,
    jti: Option<String>,
}

fn segments(jwt: &str) -> Result<(&str, &str, &str), AssertionError> {
    let mut parts = jwt.split('.');
    match (parts.next(), parts.next(), parts.next(), parts.next()) {
        (Some(h), Some(p), Some(s), None) if !h.is_empty() && !p.is_empty() && !s.is_empty() => Ok((h, p, s)),
        _ => Err(AssertionError::Malformed("it must have three non-empty segments")),
    }
}

/// The `iss` of an unverified assertion (to find the client whose keys verify it).
pub fn issuer(jwt: &str) -> Option<String> {
    let (_, payload, _) = segments(jwt).ok()?;
    let claims: Claims = serde_json::from_slice(&b64url_decode(payload)?).ok()?;
    claims.iss
}

/// Verifies `jwt` for `client_id` at `token_endpoint` against `jwks` (a JWK Set object).
pub fn verify(
    jwt: &str,
    jwks: &Value,
    client_id: &str,
    token_endpoint: &str,
    now: DateTime<Utc>,
) -> Result<Verified, AssertionError> {
    if jwt.len() > 16 * 1024 {
        return Err(AssertionError::Malformed("it is too long"));
    }
    let (h, p, s) = segments(jwt)?;
    let header: Header = b64url_decode(h)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AssertionError::Malformed("the header is not base64url JSON"))?;
    if !ALGORITHMS.contains(&header.alg.as_str()) {
        return Err(AssertionError::Algorithm);
    }
    let signature = b64url_decode(s).ok_or(AssertionError::Malformed("the signature is not base64url"))?;
    let signed = jwt.get(..h.len() + 1 + p.len()).ok_or(AssertionError::Malformed("the segments"))?;
    let kty = if header.alg == "RS384" { "RSA" } else { "EC" };
    let keys = jwks.get("keys").and_then(Value::as_array).map(Vec::as_slice).unwrap_or_default();
    let candidates = keys.iter().filter(|k| {
        k.get("kty").and_then(Value::as_str) == Some(kty)
            && header.kid.as_deref().is_none_or(|kid| k.get("kid").and_then(Value::as_str) == Some(kid))
    });
    let mut verified = false;
    for key in candidates {
        if check_signature(&header.alg, key, signed.as_bytes(), &signature) {
            verified = true;
            break;
        }
    }
    if !verified {
        return Err(AssertionError::Signature);
    }
    let claims: Claims = b64url_decode(p)
        .and_then(|b| serde_json::from_slice(&b).ok())
        .ok_or(AssertionError::Malformed("the payload is not base64url JSON"))?;
    if claims.iss.as_deref() != Some(client_id) {
        return Err(AssertionError::Claim("iss"));
    }
    if claims.sub.as_deref() != Some(client_id) {
        return Err(AssertionError::Claim("sub"));
    }
    let aud_ok = match &claims.aud {
        Some(Value::String(a)) => a == token_endpoint,
        Some(Value::Array(list)) => list.iter().any(|a| a.as_str() == Some(token_endpoint)),
        _ => false,
    };
    if !aud_ok {
        return Err(AssertionError::Claim("aud"));
    }
    let exp = claims.exp.ok_or(AssertionError::Claim("exp"))?;
    let now_s = now.timestamp();
    if exp <= now_s {
        return Err(AssertionError::Expired);
    }
    if exp > now_s + MAX_LIFETIME_SECONDS {
        return Err(AssertionError::TooLong);
    }
    let jti = claims.jti.filter(|j| !j.is_empty() && j.len() <= 256).ok_or(AssertionError::Claim("jti"))?;
    let exp = DateTime::from_timestamp(exp, 0).ok_or(AssertionError::Claim("exp"))?;
    Ok(Verified { jti, exp })
}

fn member(key: &Value, name: &str) -> Option<Vec<u8>> {
    key.get(name).and_then(Value::as_str).and_then(b64url_decode)
}

fn check_signature(alg: &str, key: &Value, message: &[u8], signature: &[u8]) -> bool {
    use ring::signature as sig;
    match alg {
        "RS384" => {
            let (Some(n), Some(e)) = (member(key, "n"), member(key, "e")) else { return false };
            sig::RsaPublicKeyComponents { n: &n, e: &e }
                .verify(&sig::RSA_PKCS1_2048_8192_SHA384, message, signature)
                .is_ok()
        }
        "ES384" => {
            if key.get("crv").and_then(Value::as_str) != Some("P-384") {
                return false;
            }
            let (Some(x), Some(y)) = (member(key, "x"), member(key, "y")) else { return false };
            if x.len() != 48 || y.len() != 48 {
                return false;
            }
            let mut point = Vec::with_capacity(97);
            point.push(4u8);
            point.extend_from_slice(&x);
            point.extend_from_slice(&y);
            sig::UnparsedPublicKey::new(&sig::ECDSA_P384_SHA384_FIXED, point).verify(message, signature).is_ok()
        }
        _ => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::util::b64url;
    use ring::rand::SystemRandom;
    use ring::signature::{ECDSA_P384_SHA384_FIXED_SIGNING, EcdsaKeyPair, KeyPair};
    use serde_json::json;

    const ENDPOINT: &str = "https://hearth.example/oauth/token";

    fn es384() -> (EcdsaKeyPair, Value) {
        let rng = SystemRandom::new();
        let pkcs8 = EcdsaKeyPair::generate_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, &rng).unwrap();
        let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P384_SHA384_FIXED_SIGNING, pkcs8.as_ref(), &rng).unwrap();
        let public = pair.public_key().as_ref();
        let jwk = json!({"kty": "EC", "crv": "P-384", "kid": "k1",
            "x": b64url(&public[1..49]), "y": b64url(&public[49..97])});
        (pair, json!({"keys": [jwk]}))
    }

    fn sign(pair: &EcdsaKeyPair, header: Value, claims: Value) -> String {
        let input = format!("{}.{}", b64url(header.to_string().as_bytes()), b64url(claims.to_string().as_bytes()));
        let sig = pair.sign(&SystemRandom::new(), input.as_bytes()).unwrap();
        format!("{input}.{}", b64url(sig.as_ref()))
    }

    fn claims(now: DateTime<Utc>, exp_in: i64) -> Value {
        json!({"iss": "c1", "sub": "c1", "aud": ENDPOINT, "exp": now.timestamp() + exp_in, "jti": "j-1"})
    }

    #[test]
    fn a_good_es384_assertion_verifies_and_bad_ones_do_not() {
        let now = DateTime::from_timestamp(1_800_000_000, 0).unwrap();
        let (pair, jwks) = es384();
        let header = json!({"alg": "ES384", "kid": "k1", "typ": "JWT"});
        let good = sign(&pair, header.clone(), claims(now, 240));
        let v = verify(&good, &jwks, "c1", ENDPOINT, now).unwrap();
        assert_eq!(v.jti, "j-1");
        assert_eq!(issuer(&good).as_deref(), Some("c1"));
        // Another client, another endpoint.
        assert_eq!(verify(&good, &jwks, "c2", ENDPOINT, now), Err(AssertionError::Claim("iss")));
        assert_eq!(verify(&good, &jwks, "c1", "https://other/token", now), Err(AssertionError::Claim("aud")));
        // Expired, or living too long.
        assert_eq!(
            verify(&sign(&pair, header.clone(), claims(now, -1)), &jwks, "c1", ENDPOINT, now),
            Err(AssertionError::Expired)
        );
        assert_eq!(
            verify(&sign(&pair, header.clone(), claims(now, 301)), &jwks, "c1", ENDPOINT, now),
            Err(AssertionError::TooLong)
        );
        // Another key's signature, a changed payload, an algorithm we refuse.
        let (other, _) = es384();
        assert_eq!(
            verify(&sign(&other, header.clone(), claims(now, 60)), &jwks, "c1", ENDPOINT, now),
            Err(AssertionError::Signature)
        );
        let mut parts: Vec<String> = good.split('.').map(str::to_owned).collect();
        parts[1] = b64url(
            json!({"iss": "c1", "sub": "c1", "aud": ENDPOINT, "exp": now.timestamp() + 60, "jti": "j-2"})
                .to_string()
                .as_bytes(),
        );
        assert_eq!(verify(&parts.join("."), &jwks, "c1", ENDPOINT, now), Err(AssertionError::Signature));
        let none = format!("{}.{}.x", b64url(br#"{"alg":"none"}"#), b64url(claims(now, 60).to_string().as_bytes()));
        assert_eq!(verify(&none, &jwks, "c1", ENDPOINT, now), Err(AssertionError::Algorithm));
        assert!(matches!(verify("a.b", &jwks, "c1", ENDPOINT, now), Err(AssertionError::Malformed(_))));
    }
}
