//! Key generation with aws-lc-rs; the public half is kept as a JWK (RFC 7517/7518/8037).

use anyhow::anyhow;
use aws_lc_rs::encoding::AsDer;
use aws_lc_rs::rand::SystemRandom;
use aws_lc_rs::rsa::KeySize;
use aws_lc_rs::signature::{
    EcdsaKeyPair, Ed25519KeyPair, KeyPair, ECDSA_P256_SHA256_FIXED_SIGNING,
};
use serde_json::json;

use super::{Alg, StoredKey};
use crate::crypto::{b64url, random_bytes, MasterKey};

pub struct GeneratedKey {
    pub pkcs8: Vec<u8>,
    pub public_jwk: serde_json::Value,
}

pub fn generate(alg: Alg, kid: &str) -> anyhow::Result<GeneratedKey> {
    let rng = SystemRandom::new();
    let (pkcs8, mut jwk) = match alg {
        Alg::RS256 => {
            let pair = aws_lc_rs::rsa::KeyPair::generate(KeySize::Rsa2048)
                .map_err(|_| anyhow!("RSA key generation failed"))?;
            let der = AsDer::<aws_lc_rs::encoding::Pkcs8V1Der>::as_der(&pair)
                .map_err(|_| anyhow!("RSA key export failed"))?;
            let public = pair.public_key();
            let jwk = json!({
                "kty": "RSA",
                "n": b64url(public.modulus().big_endian_without_leading_zero()),
                "e": b64url(public.exponent().big_endian_without_leading_zero()),
            });
            (der.as_ref().to_vec(), jwk)
        }
        Alg::ES256 => {
            let doc = EcdsaKeyPair::generate_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, &rng)
                .map_err(|_| anyhow!("EC key generation failed"))?;
            let pair = EcdsaKeyPair::from_pkcs8(&ECDSA_P256_SHA256_FIXED_SIGNING, doc.as_ref())
                .map_err(|_| anyhow!("EC key re-read failed"))?;
            let point = pair.public_key().as_ref();
            anyhow::ensure!(
                point.len() == 65 && point[0] == 4,
                "unexpected EC point encoding"
            );
            let jwk = json!({"kty": "EC", "crv": "P-256", "x": b64url(&point[1..33]), "y": b64url(&point[33..])});
            (doc.as_ref().to_vec(), jwk)
        }
        Alg::EdDSA => {
            let doc = Ed25519KeyPair::generate_pkcs8(&rng)
                .map_err(|_| anyhow!("Ed25519 key generation failed"))?;
            let pair = Ed25519KeyPair::from_pkcs8(doc.as_ref())
                .map_err(|_| anyhow!("Ed25519 key re-read failed"))?;
            let jwk =
                json!({"kty": "OKP", "crv": "Ed25519", "x": b64url(pair.public_key().as_ref())});
            (doc.as_ref().to_vec(), jwk)
        }
    };
    if let Some(obj) = jwk.as_object_mut() {
        obj.insert("kid".into(), json!(kid));
        obj.insert("use".into(), json!("sig"));
        obj.insert("alg".into(), json!(alg.as_str()));
    }
    Ok(GeneratedKey {
        pkcs8,
        public_jwk: jwk,
    })
}

pub fn new_kid(alg: Alg, now: i64) -> String {
    format!(
        "{}-{}-{}",
        alg.as_str().to_ascii_lowercase(),
        now,
        b64url(&random_bytes::<6>())
    )
}

/// A new stored key, sealed under the master key, with the given activation time.
pub fn new_stored_key(
    alg: Alg,
    master: &MasterKey,
    now: i64,
    activates_at: i64,
) -> anyhow::Result<StoredKey> {
    let kid = new_kid(alg, now);
    let generated = generate(alg, &kid)?;
    Ok(StoredKey {
        private_enc: master.seal(&seal_purpose(&kid), &generated.pkcs8),
        kid,
        alg,
        public_jwk: generated.public_jwk,
        created_at: now,
        activates_at,
        retires_at: None,
        removes_at: None,
    })
}

pub fn seal_purpose(kid: &str) -> String {
    format!("signing-key:{kid}")
}
