//! The mock's RS256 signing key: generated fresh in memory at start-up and on every rotation.

use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rsa::{KeyPair, KeySize};
use aws_lc_rs::signature::KeyPair as _;
use base64::engine::general_purpose::{STANDARD, URL_SAFE_NO_PAD};
use base64::Engine as _;
use jsonwebtoken::EncodingKey;
use serde_json::{json, Value};

pub(crate) struct SigningKey {
    pub(crate) kid: String,
    pub(crate) encoding: EncodingKey,
    /// The public half as a JWK, ready for `/jwks`.
    pub(crate) jwk: Value,
}

impl SigningKey {
    pub(crate) fn generate() -> anyhow::Result<Self> {
        let pair = KeyPair::generate(KeySize::Rsa2048)
            .map_err(|_| anyhow::anyhow!("RSA-2048 key generation failed"))?;
        let pkcs8 = pair
            .as_der()
            .map_err(|_| anyhow::anyhow!("PKCS#8 export of the RSA key failed"))?;
        // jsonwebtoken only takes RSA private keys as PEM (or PKCS#1 DER), so wrap the PKCS#8
        // bytes the way `openssl pkcs8` would print them.
        let encoding = EncodingKey::from_rsa_pem(pkcs8_pem(pkcs8.as_ref()).as_bytes())?;
        let public = pair.public_key();
        let kid = uuid::Uuid::new_v4().to_string();
        let jwk = json!({
            "kty": "RSA",
            "kid": kid,
            "use": "sig",
            "alg": "RS256",
            "n": URL_SAFE_NO_PAD.encode(public.modulus().big_endian_without_leading_zero()),
            "e": URL_SAFE_NO_PAD.encode(public.exponent().big_endian_without_leading_zero()),
        });
        Ok(Self { kid, encoding, jwk })
    }
}

fn pkcs8_pem(der: &[u8]) -> String {
    let body = STANDARD.encode(der);
    let mut pem = String::from("-----BEGIN PRIVATE KEY-----\n");
    // Base64 output is ASCII, so slicing it at byte offsets never splits a character.
    for start in (0..body.len()).step_by(64) {
        pem.push_str(&body[start..(start + 64).min(body.len())]);
        pem.push('\n');
    }
    pem.push_str("-----END PRIVATE KEY-----\n");
    pem
}
