//! Certificate credentials: a client assertion (RFC 7523 JWT) signed with
//! the app's certificate key, as Microsoft's identity platform documents
//! it — RS256, headers `x5t` and `x5t#S256` (the certificate's SHA-1 and
//! SHA-256 thumbprints), claims `aud` (the token endpoint), `iss` = `sub`
//! = the client id, a fresh `jti`, `nbf`/`iat` now and `exp` ten minutes
//! on. `azure_identity` sends it and caches the token; signing is done by
//! `jsonwebtoken` on aws-lc-rs, so the agent needs no OpenSSL.

use crate::clock::{Clock, SystemClock};
use async_trait::async_trait;
use azure_core::http::ClientMethodOptions;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine as _;
use jsonwebtoken::{Algorithm, EncodingKey, Header};
use rustls_pki_types::pem::PemObject;
use rustls_pki_types::CertificateDer;
use serde::Serialize;
use sha2::{Digest, Sha256};

/// How long a signed assertion is valid.
const LIFETIME_SECS: i64 = 600;

pub struct CertificateAssertion {
    client_id: String,
    audience: String,
    header: Header,
    key: EncodingKey,
}

impl std::fmt::Debug for CertificateAssertion {
    // The key never reaches a log.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("CertificateAssertion")
            .field("client_id", &self.client_id)
            .field("x5t#S256", &self.header.x5t_s256)
            .finish()
    }
}

#[derive(Serialize)]
struct Claims<'a> {
    aud: &'a str,
    iss: &'a str,
    sub: &'a str,
    jti: String,
    nbf: i64,
    iat: i64,
    exp: i64,
}

impl CertificateAssertion {
    /// From a PEM holding the certificate (the first one is the app's) and
    /// its RSA private key.
    pub fn from_pem(pem: &[u8], client_id: &str, audience: &str) -> Result<Self, String> {
        let cert = CertificateDer::pem_slice_iter(pem)
            .next()
            .ok_or("no CERTIFICATE in the PEM")?
            .map_err(|e| format!("bad CERTIFICATE: {e}"))?;
        // jsonwebtoken reads the first PEM block, so hand it the key's.
        let text = std::str::from_utf8(pem).map_err(|_| "the PEM is not text")?;
        let key_block = ["-----BEGIN PRIVATE KEY-----", "-----BEGIN RSA PRIVATE KEY-----"]
            .iter()
            .find_map(|begin| text.find(begin))
            .map(|at| &text[at..])
            .ok_or("no RSA private key in the PEM (PRIVATE KEY or RSA PRIVATE KEY)")?;
        let key = EncodingKey::from_rsa_pem(key_block.as_bytes())
            .map_err(|e| format!("no RSA private key in the PEM: {e}"))?;
        let mut header = Header::new(Algorithm::RS256);
        header.x5t_s256 = Some(URL_SAFE_NO_PAD.encode(Sha256::digest(cert.as_ref())));
        header.x5t = Some(URL_SAFE_NO_PAD.encode(
            aws_lc_rs::digest::digest(&aws_lc_rs::digest::SHA1_FOR_LEGACY_USE_ONLY, cert.as_ref()).as_ref(),
        ));
        let assertion = Self {
            client_id: client_id.to_owned(),
            audience: audience.to_owned(),
            header,
            key,
        };
        // Sign once now, so a key that cannot sign fails at start-up.
        assertion.sign()?;
        Ok(assertion)
    }

    fn sign(&self) -> Result<String, String> {
        let now = SystemClock.now().timestamp();
        let jti: [u8; 16] = rand::random();
        let claims = Claims {
            aud: &self.audience,
            iss: &self.client_id,
            sub: &self.client_id,
            jti: hex::encode(jti),
            nbf: now,
            iat: now,
            exp: now + LIFETIME_SECS,
        };
        jsonwebtoken::encode(&self.header, &claims, &self.key)
            .map_err(|e| format!("signing the client assertion: {e}"))
    }
}

#[async_trait]
impl azure_identity::ClientAssertion for CertificateAssertion {
    async fn secret(&self, _options: Option<ClientMethodOptions<'_>>) -> azure_core::Result<String> {
        self.sign()
            .map_err(|e| azure_core::Error::with_message(azure_core::error::ErrorKind::Credential, e))
    }
}
