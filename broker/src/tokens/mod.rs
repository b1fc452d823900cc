//! Issued tokens: access tokens as RFC 9068 JWTs (`typ: at+jwt`), ID tokens, and their
//! verification when they come back (userinfo, introspection, revocation, logout hints).

pub mod claims;
pub mod keys;
pub mod refresh_families;
pub mod verified;

use std::sync::Arc;

use aws_lc_rs::digest;
use jsonwebtoken::{Header, Validation};
use serde::de::DeserializeOwned;
use serde::Serialize;

use crate::crypto::b64url;
use claims::AccessClaims;
use keys::keyring::KeyRing;
use keys::Alg;

#[derive(Debug, thiserror::Error)]
pub enum TokenError {
    #[error("no active signing key for {0}")]
    NoKey(&'static str),
    #[error("token is malformed, expired, or not ours")]
    Invalid,
    #[error("signing failed: {0:#}")]
    Sign(anyhow::Error),
}

#[derive(Clone)]
pub struct TokenSigner {
    ring: KeyRing,
    issuer: Arc<str>,
    access_token_alg: Alg,
}

impl TokenSigner {
    pub fn new(ring: KeyRing, issuer: &str, access_token_alg: Alg) -> Self {
        Self {
            ring,
            issuer: issuer.into(),
            access_token_alg,
        }
    }

    pub fn issuer(&self) -> &str {
        &self.issuer
    }

    pub fn ring(&self) -> &KeyRing {
        &self.ring
    }

    pub fn sign<T: Serialize>(
        &self,
        alg: Alg,
        typ: &str,
        claims: &T,
        now: i64,
    ) -> Result<String, TokenError> {
        let key = self
            .ring
            .signing_key(alg, now)
            .ok_or(TokenError::NoKey(alg.as_str()))?;
        let mut header = Header::new(alg.jwt());
        header.typ = Some(typ.to_string());
        header.kid = Some(key.meta.kid.clone());
        keys::signer::encode(&header, claims, &key.signer).map_err(TokenError::Sign)
    }

    pub fn sign_access_token(&self, claims: &AccessClaims, now: i64) -> Result<String, TokenError> {
        self.sign(self.access_token_alg, "at+jwt", claims, now)
    }

    /// Verifies a JWT we issued: known `kid` in an active or retired state, the key's algorithm,
    /// our issuer, not expired, and the expected `typ`.
    pub fn verify<T: DeserializeOwned>(
        &self,
        token: &str,
        typ: &str,
        now: i64,
        check_exp: bool,
    ) -> Result<T, TokenError> {
        if token.len() > 16 * 1024 {
            return Err(TokenError::Invalid);
        }
        let header = jsonwebtoken::decode_header(token).map_err(|_| TokenError::Invalid)?;
        let kid = header.kid.as_deref().ok_or(TokenError::Invalid)?;
        let key = self
            .ring
            .verification_key(kid, now)
            .ok_or(TokenError::Invalid)?;
        if header.alg != key.meta.alg.jwt()
            || !header
                .typ
                .as_deref()
                .is_some_and(|t| t.eq_ignore_ascii_case(typ))
        {
            return Err(TokenError::Invalid);
        }
        let mut validation = Validation::new(key.meta.alg.jwt());
        validation.set_issuer(&[&*self.issuer]);
        validation.validate_aud = false;
        validation.validate_exp = false;
        validation.set_required_spec_claims(&["iss", "exp"]);
        let data = jsonwebtoken::decode::<serde_json::Value>(token, &key.decoding, &validation)
            .map_err(|_| TokenError::Invalid)?;
        let exp = data
            .claims
            .get("exp")
            .and_then(|e| e.as_i64())
            .ok_or(TokenError::Invalid)?;
        if check_exp && exp <= now {
            return Err(TokenError::Invalid);
        }
        serde_json::from_value(data.claims).map_err(|_| TokenError::Invalid)
    }

    pub fn verify_access_token(&self, token: &str, now: i64) -> Result<AccessClaims, TokenError> {
        self.verify(token, "at+jwt", now, true)
    }
}

/// `at_hash` / `c_hash`: the left half of the hash that goes with the signing algorithm.
pub fn half_hash(alg: Alg, value: &str) -> String {
    let algorithm = match alg {
        Alg::RS256 | Alg::ES256 => &digest::SHA256,
        Alg::EdDSA => &digest::SHA512,
    };
    let d = digest::digest(algorithm, value.as_bytes());
    let bytes = d.as_ref();
    b64url(&bytes[..bytes.len() / 2])
}
