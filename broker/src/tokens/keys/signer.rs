//! A signing key parsed once. jsonwebtoken's `encode` re-parses the private key on every call
//! (for RSA that is as costly as the signature itself: about a tenth of a whole login's CPU), so
//! the broker implements jsonwebtoken's own `JwtSigner` trait over an aws-lc-rs key pair parsed at
//! load time, and serialises the compact JWS itself (RFC 7515 §7.1: three base64url parts).
//! Verification stays entirely with jsonwebtoken.

use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, RsaKeyPair, ECDSA_P256_SHA256_FIXED_SIGNING, RSA_PKCS1_SHA256,
};
use jsonwebtoken::crypto::JwtSigner;
use jsonwebtoken::signature::{Error as SignatureError, Signer};
use jsonwebtoken::{Algorithm, Header};
use serde::Serialize;

use super::Alg;
use crate::crypto::b64url;

pub enum PreparedKey {
    Rs256(RsaKeyPair),
    Es256(EcdsaKeyPair),
    EdDsa(Ed25519KeyPair),
}

impl PreparedKey {
    pub fn from_pkcs8(alg: Alg, pkcs8: &[u8]) -> anyhow::Result<Self> {
        let bad = |_| anyhow::anyhow!("unreadable {} private key", alg.as_str());
        Ok(match alg {
            Alg::RS256 => PreparedKey::Rs256(RsaKeyPair::from_pkcs8(pkcs8).map_err(bad)?),
            Alg::ES256 => PreparedKey::Es256(
                EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, pkcs8).map_err(bad)?,
            ),
            Alg::EdDSA => PreparedKey::EdDsa(Ed25519KeyPair::from_pkcs8(pkcs8).map_err(bad)?),
        })
    }
}

impl Signer<Vec<u8>> for PreparedKey {
    fn try_sign(&self, msg: &[u8]) -> Result<Vec<u8>, SignatureError> {
        let rng = SystemRandom::new();
        match self {
            PreparedKey::Rs256(key) => {
                let mut out = vec![0; key.public_modulus_len()];
                key.sign(&RSA_PKCS1_SHA256, &rng, msg, &mut out)
                    .map_err(SignatureError::from_source)?;
                Ok(out)
            }
            PreparedKey::Es256(key) => Ok(key
                .sign(&rng, msg)
                .map_err(SignatureError::from_source)?
                .as_ref()
                .to_vec()),
            PreparedKey::EdDsa(key) => Ok(key.sign(msg).as_ref().to_vec()),
        }
    }
}

impl JwtSigner for PreparedKey {
    fn algorithm(&self) -> Algorithm {
        match self {
            PreparedKey::Rs256(_) => Algorithm::RS256,
            PreparedKey::Es256(_) => Algorithm::ES256,
            PreparedKey::EdDsa(_) => Algorithm::EdDSA,
        }
    }
}

/// The compact JWS of `claims` under `header`, signed by `signer` (whose algorithm must be the
/// header's).
pub fn encode<T: Serialize>(
    header: &Header,
    claims: &T,
    signer: &dyn JwtSigner,
) -> anyhow::Result<String> {
    anyhow::ensure!(
        header.alg == signer.algorithm(),
        "header alg does not match the key"
    );
    let message = format!(
        "{}.{}",
        b64url(&serde_json::to_vec(header)?),
        b64url(&serde_json::to_vec(claims)?)
    );
    let signature = signer
        .try_sign(message.as_bytes())
        .map_err(|e| anyhow::anyhow!("signing failed: {e}"))?;
    Ok(format!("{message}.{}", b64url(&signature)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::tokens::keys::generate::generate;

    /// What we sign, jsonwebtoken verifies, for every algorithm.
    #[test]
    fn jsonwebtoken_verifies_what_we_sign() {
        for alg in Alg::ALL {
            let key = generate(alg, "k").unwrap();
            let signer = PreparedKey::from_pkcs8(alg, &key.pkcs8).unwrap();
            let mut header = Header::new(alg.jwt());
            header.kid = Some("k".into());
            let token = encode(
                &header,
                &serde_json::json!({"sub": "x", "exp": 4_000_000_000u64}),
                &signer,
            )
            .unwrap();
            let jwk: jsonwebtoken::jwk::Jwk = serde_json::from_value(key.public_jwk).unwrap();
            let decoding = jsonwebtoken::DecodingKey::from_jwk(&jwk).unwrap();
            let data = jsonwebtoken::decode::<serde_json::Value>(
                &token,
                &decoding,
                &jsonwebtoken::Validation::new(alg.jwt()),
            )
            .unwrap();
            assert_eq!(data.claims["sub"], "x");
            let mut tampered = token.clone();
            tampered.insert(token.find('.').unwrap() + 2, 'A');
            assert!(jsonwebtoken::decode::<serde_json::Value>(
                &tampered,
                &decoding,
                &jsonwebtoken::Validation::new(alg.jwt())
            )
            .is_err());
        }
    }
}
