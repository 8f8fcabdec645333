//! Web Push: message encryption (RFC 8291, `aes128gcm` of RFC 8188) and VAPID (RFC 8292).
//!
//! The application server keeps one long-lived P-256 key pair (VAPID) that signs a short JWT per
//! push-service origin; every message is encrypted for the subscription's `p256dh` key and `auth`
//! secret with a fresh ephemeral key and salt, as one record (the payload is small).

use data_encoding::BASE64URL_NOPAD;
use p256::ecdsa::signature::Signer;
use p256::elliptic_curve::sec1::ToEncodedPoint;
use p256::{PublicKey, SecretKey};
use ring::aead::{AES_128_GCM, Aad, LessSafeKey, Nonce, UnboundKey};
use ring::hmac;

/// The record size advertised in the header: one record holds the whole (short) payload.
const RECORD_SIZE: u32 = 4096;
/// Largest plaintext that fits in one 4096-byte record (16 bytes tag, 1 delimiter) and the
/// push services' 4 KiB limit with the 86-byte header.
pub const MAX_PLAINTEXT: usize = 3993;

#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PushCryptoError {
    #[error("the subscription's p256dh key is not an uncompressed P-256 point")]
    BadPublicKey,
    #[error("the subscription's auth secret is not 16 bytes")]
    BadAuthSecret,
    #[error("the payload is larger than one Web Push record")]
    TooLarge,
    #[error("the key is not a P-256 private key")]
    BadPrivateKey,
    #[error("encryption failed")]
    Crypto,
}

fn hmac_sha256(key: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    let key = hmac::Key::new(hmac::HMAC_SHA256, key);
    let mut ctx = hmac::Context::with_key(&key);
    for p in parts {
        ctx.update(p);
    }
    let tag = ctx.sign();
    let mut out = [0u8; 32];
    out.copy_from_slice(tag.as_ref());
    out
}

/// Encrypts `plaintext` for a subscription (`ua_public`: 65-byte `p256dh`, `auth`: 16 bytes)
/// with the given ephemeral key and salt. [`encrypt`] draws both at random; this form exists so
/// the RFC 8291 example can be reproduced byte for byte.
pub fn encrypt_with(
    plaintext: &[u8],
    ua_public: &[u8],
    auth: &[u8],
    ephemeral: &SecretKey,
    salt: &[u8; 16],
) -> Result<Vec<u8>, PushCryptoError> {
    if plaintext.len() > MAX_PLAINTEXT {
        return Err(PushCryptoError::TooLarge);
    }
    if auth.len() != 16 {
        return Err(PushCryptoError::BadAuthSecret);
    }
    let ua = PublicKey::from_sec1_bytes(ua_public).map_err(|_| PushCryptoError::BadPublicKey)?;
    let ua_bytes = ua.to_encoded_point(false);
    let as_point = ephemeral.public_key().to_encoded_point(false);
    let (ua_bytes, as_bytes) = (ua_bytes.as_bytes(), as_point.as_bytes());
    let shared = p256::ecdh::diffie_hellman(ephemeral.to_nonzero_scalar(), ua.as_affine());
    // HKDF (RFC 5869) spelled out with HMAC, as RFC 8291 section 3.4 does: every expansion
    // needs a single block, so T(1) = HMAC(PRK, info || 0x01).
    let shared: &[u8] = shared.raw_secret_bytes();
    let prk_key = hmac_sha256(auth, &[shared]);
    let ikm = hmac_sha256(&prk_key, &[b"WebPush: info\0", ua_bytes, as_bytes, &[1]]);
    let prk = hmac_sha256(salt, &[&ikm]);
    let cek = hmac_sha256(&prk, &[b"Content-Encoding: aes128gcm\0", &[1]]);
    let nonce = hmac_sha256(&prk, &[b"Content-Encoding: nonce\0", &[1]]);
    let cek = cek.get(..16).ok_or(PushCryptoError::Crypto)?;
    let nonce: [u8; 12] = nonce.get(..12).and_then(|n| n.try_into().ok()).ok_or(PushCryptoError::Crypto)?;
    let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, cek).map_err(|_| PushCryptoError::Crypto)?);
    let mut record = Vec::with_capacity(plaintext.len() + 17);
    record.extend_from_slice(plaintext);
    // The padding delimiter of the last (only) record.
    record.push(2);
    key.seal_in_place_append_tag(Nonce::assume_unique_for_key(nonce), Aad::empty(), &mut record)
        .map_err(|_| PushCryptoError::Crypto)?;
    let mut out = Vec::with_capacity(86 + record.len());
    out.extend_from_slice(salt);
    out.extend_from_slice(&RECORD_SIZE.to_be_bytes());
    out.push(65);
    out.extend_from_slice(as_bytes);
    out.extend_from_slice(&record);
    Ok(out)
}

/// Encrypts with a fresh ephemeral key and salt.
pub fn encrypt(plaintext: &[u8], ua_public: &[u8], auth: &[u8]) -> Result<Vec<u8>, PushCryptoError> {
    let rng = ring::rand::SystemRandom::new();
    let mut salt = [0u8; 16];
    ring::rand::SecureRandom::fill(&rng, &mut salt).map_err(|_| PushCryptoError::Crypto)?;
    let mut key = [0u8; 32];
    let ephemeral = loop {
        ring::rand::SecureRandom::fill(&rng, &mut key).map_err(|_| PushCryptoError::Crypto)?;
        // A random 32-byte string is a valid scalar except with negligible probability.
        if let Ok(k) = SecretKey::from_slice(&key) {
            break k;
        }
    };
    encrypt_with(plaintext, ua_public, auth, &ephemeral, &salt)
}

/// The application server's VAPID key pair.
#[derive(Clone)]
pub struct VapidKey {
    secret: SecretKey,
}

impl std::fmt::Debug for VapidKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("VapidKey([redacted])")
    }
}

impl VapidKey {
    /// A new random key.
    pub fn generate() -> Result<VapidKey, PushCryptoError> {
        let rng = ring::rand::SystemRandom::new();
        let mut key = [0u8; 32];
        loop {
            ring::rand::SecureRandom::fill(&rng, &mut key).map_err(|_| PushCryptoError::Crypto)?;
            if let Ok(secret) = SecretKey::from_slice(&key) {
                return Ok(VapidKey { secret });
            }
        }
    }

    /// From the 32-byte private scalar, base64url (how it is stored).
    pub fn from_private_b64(s: &str) -> Result<VapidKey, PushCryptoError> {
        let bytes = BASE64URL_NOPAD.decode(s.trim().as_bytes()).map_err(|_| PushCryptoError::BadPrivateKey)?;
        let secret = SecretKey::from_slice(&bytes).map_err(|_| PushCryptoError::BadPrivateKey)?;
        Ok(VapidKey { secret })
    }

    pub fn private_b64(&self) -> String {
        BASE64URL_NOPAD.encode(&self.secret.to_bytes())
    }

    /// The public key as browsers want it for `applicationServerKey` (65 bytes, base64url).
    pub fn public_b64(&self) -> String {
        BASE64URL_NOPAD.encode(self.secret.public_key().to_encoded_point(false).as_bytes())
    }

    /// `Authorization: vapid t=<JWT>, k=<public key>` for a push service origin
    /// (`scheme://host[:port]`), valid until `exp` (seconds since the epoch, at most 24 h ahead).
    pub fn authorization(&self, audience: &str, subject: &str, exp: i64) -> String {
        let header = BASE64URL_NOPAD.encode(br#"{"typ":"JWT","alg":"ES256"}"#);
        let claims = serde_json::json!({"aud": audience, "exp": exp, "sub": subject});
        let claims = BASE64URL_NOPAD.encode(claims.to_string().as_bytes());
        let signing_input = format!("{header}.{claims}");
        let key = p256::ecdsa::SigningKey::from(&self.secret);
        let signature: p256::ecdsa::Signature = key.sign(signing_input.as_bytes());
        let jwt = format!("{signing_input}.{}", BASE64URL_NOPAD.encode(&signature.to_bytes()));
        format!("vapid t={jwt}, k={}", self.public_b64())
    }
}

/// The origin (`scheme://host[:port]`) of a push endpoint: the VAPID `aud`.
pub fn origin(endpoint: &str) -> Option<String> {
    let (scheme, rest) = endpoint.split_once("://")?;
    let host = rest.split(['/', '?', '#']).next()?;
    if host.is_empty() || !(scheme == "https" || scheme == "http") {
        return None;
    }
    Some(format!("{scheme}://{host}"))
}

#[cfg(test)]
mod tests {
    use super::*;

    fn b64(s: &str) -> Vec<u8> {
        BASE64URL_NOPAD.decode(s.as_bytes()).unwrap()
    }

    /// RFC 8291 Appendix A: fixed keys and salt give the published message byte for byte.
    #[test]
    fn rfc8291_appendix_a_vector() {
        let plaintext = b64("V2hlbiBJIGdyb3cgdXAsIEkgd2FudCB0byBiZSBhIHdhdGVybWVsb24");
        assert_eq!(plaintext, b"When I grow up, I want to be a watermelon");
        let as_private = SecretKey::from_slice(&b64("yfWPiYE-n46HLnH0KqZOF1fJJU3MYrct3AELtAQ-oRw")).unwrap();
        assert_eq!(
            BASE64URL_NOPAD.encode(as_private.public_key().to_encoded_point(false).as_bytes()),
            "BP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A8"
        );
        let ua_public = b64("BCVxsr7N_eNgVRqvHtD0zTZsEc6-VV-JvLexhqUzORcxaOzi6-AYWXvTBHm4bjyPjs7Vd8pZGH6SRpkNtoIAiw4");
        let auth = b64("BTBZMqHH6r4Tts7J_aSIgg");
        let salt: [u8; 16] = b64("DGv6ra1nlYgDCS1FRnbzlw").try_into().unwrap();
        let body = encrypt_with(&plaintext, &ua_public, &auth, &as_private, &salt).unwrap();
        assert_eq!(
            BASE64URL_NOPAD.encode(&body),
            "DGv6ra1nlYgDCS1FRnbzlwAAEABBBP4z9KsN6nGRTbVYI_c7VJSPQTBtkgcy27mlmlMoZIIgDll6e3vCYLocInmYWAmS6TlzAC8wEqKK6PBru3jl7A_yl95bQpu6cVPTpK4Mqgkf1CXztLVBSt2Ks3oZwbuwXPXLWyouBWLVWGNWQexSgSxsj_Qulcy4a-fN"
        );
        // The user agent's side of the example decrypts a randomly encrypted message too.
        let ua_private = SecretKey::from_slice(&b64("q1dXpw3UpT5VOmu_cf_v6ih07Aems3njxI-JWgLcM94")).unwrap();
        let random = encrypt(b"hello", &ua_public, &auth).unwrap();
        assert_eq!(decrypt(&random, &ua_private, &auth), b"hello");
        assert_ne!(random.get(..16), body.get(..16), "a fresh salt every time");
    }

    /// The browser's half (for the round trip above and the integration test's push peer).
    fn decrypt(body: &[u8], ua_private: &SecretKey, auth: &[u8]) -> Vec<u8> {
        let salt = &body[..16];
        let as_public = PublicKey::from_sec1_bytes(&body[21..86]).unwrap();
        let ua_pub = ua_private.public_key().to_encoded_point(false);
        let shared = p256::ecdh::diffie_hellman(ua_private.to_nonzero_scalar(), as_public.as_affine());
        let shared: &[u8] = shared.raw_secret_bytes();
        let prk_key = hmac_sha256(auth, &[shared]);
        let ikm = hmac_sha256(&prk_key, &[b"WebPush: info\0", ua_pub.as_bytes(), &body[21..86], &[1]]);
        let prk = hmac_sha256(salt, &[&ikm]);
        let cek = hmac_sha256(&prk, &[b"Content-Encoding: aes128gcm\0", &[1]]);
        let nonce = hmac_sha256(&prk, &[b"Content-Encoding: nonce\0", &[1]]);
        let key = LessSafeKey::new(UnboundKey::new(&AES_128_GCM, &cek[..16]).unwrap());
        let mut data = body[86..].to_vec();
        let plain = key
            .open_in_place(Nonce::assume_unique_for_key(nonce[..12].try_into().unwrap()), Aad::empty(), &mut data)
            .unwrap();
        assert_eq!(plain.last(), Some(&2));
        plain[..plain.len() - 1].to_vec()
    }

    #[test]
    fn vapid_jwt_verifies_with_the_public_key() {
        let key = VapidKey::generate().unwrap();
        let again = VapidKey::from_private_b64(&key.private_b64()).unwrap();
        assert_eq!(key.public_b64(), again.public_b64());
        let auth = key.authorization("https://push.example.net", "mailto:ops@example.org", 1_900_000_000);
        let (t, k) = auth.strip_prefix("vapid t=").unwrap().split_once(", k=").unwrap();
        assert_eq!(k, key.public_b64());
        let (input, sig) = t.rsplit_once('.').unwrap();
        let public = ring::signature::UnparsedPublicKey::new(&ring::signature::ECDSA_P256_SHA256_FIXED, b64(k));
        public.verify(input.as_bytes(), &b64(sig)).unwrap();
        let claims: serde_json::Value = serde_json::from_slice(&b64(input.split('.').nth(1).unwrap())).unwrap();
        assert_eq!(claims["aud"], "https://push.example.net");
        assert_eq!(
            origin("https://push.example.net:8443/wpush/v2/abc?x"),
            Some("https://push.example.net:8443".into())
        );
        assert_eq!(origin("ftp://x/y"), None);
    }
}
