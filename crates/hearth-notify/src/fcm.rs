//! Firebase Cloud Messaging HTTP v1: a service-account JWT (RS256) exchanged for an OAuth access
//! token at the account's `token_uri`, cached until shortly before it expires, then
//! `POST {api}/v1/projects/{project}/messages:send`.

use data_encoding::{BASE64, BASE64URL_NOPAD};
use ring::signature::{RSA_PKCS1_SHA256, RsaKeyPair};
use serde::Deserialize;

pub const SCOPE: &str = "https://www.googleapis.com/auth/firebase.messaging";

/// The fields of a Google service-account JSON key file that FCM needs.
#[derive(Deserialize)]
pub struct ServiceAccount {
    pub project_id: String,
    pub client_email: String,
    pub private_key: String,
    pub token_uri: String,
}

impl std::fmt::Debug for ServiceAccount {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ServiceAccount").field("project_id", &self.project_id).finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum FcmKeyError {
    #[error("the service account file is not valid JSON with project_id, client_email, private_key, token_uri")]
    Json,
    #[error("the service account private_key is not a PKCS#8 RSA key in PEM")]
    Key,
}

/// A service account with its parsed signing key.
pub struct Signer {
    pub account: ServiceAccount,
    key: RsaKeyPair,
}

/// The DER inside a PEM block (`-----BEGIN PRIVATE KEY-----`).
pub fn pem_der(pem: &str) -> Option<Vec<u8>> {
    let body: String = pem.lines().map(str::trim).filter(|l| !l.starts_with("-----") && !l.is_empty()).collect();
    BASE64.decode(body.as_bytes()).ok()
}

impl Signer {
    pub fn from_json(json: &str) -> Result<Signer, FcmKeyError> {
        let account: ServiceAccount = serde_json::from_str(json).map_err(|_| FcmKeyError::Json)?;
        let der = pem_der(&account.private_key).ok_or(FcmKeyError::Key)?;
        let key = RsaKeyPair::from_pkcs8(&der).map_err(|_| FcmKeyError::Key)?;
        Ok(Signer { account, key })
    }

    /// The public key (PKCS#1 `RSAPublicKey` DER), for verifying what this signs.
    pub fn public_key_der(&self) -> Vec<u8> {
        ring::signature::KeyPair::public_key(&self.key).as_ref().to_vec()
    }

    /// The signed JWT assertion for the token exchange, issued at `iat` (seconds), valid 1 h.
    pub fn assertion(&self, iat: i64) -> Result<String, String> {
        let header = BASE64URL_NOPAD.encode(br#"{"alg":"RS256","typ":"JWT"}"#);
        let claims = serde_json::json!({
            "iss": self.account.client_email,
            "scope": SCOPE,
            "aud": self.account.token_uri,
            "iat": iat,
            "exp": iat + 3600,
        });
        let input = format!("{header}.{}", BASE64URL_NOPAD.encode(claims.to_string().as_bytes()));
        let mut sig = vec![0u8; self.key.public().modulus_len()];
        self.key
            .sign(&RSA_PKCS1_SHA256, &ring::rand::SystemRandom::new(), input.as_bytes(), &mut sig)
            .map_err(|_| "RSA signing failed".to_owned())?;
        Ok(format!("{input}.{}", BASE64URL_NOPAD.encode(&sig)))
    }
}
