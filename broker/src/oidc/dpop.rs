//! DPoP (RFC 9449): proof that the caller holds a private key, so that a token bound to the key
//! is useless to whoever copies it. This module owns checking one proof (§4.3) and the key's
//! thumbprint (`jkt`, RFC 7638); the token endpoint binds tokens and refresh families to that
//! thumbprint, and the resource endpoints compare it with a token's `cnf.jkt`.
//!
//! The JWS work is jsonwebtoken's (signature, JWK parsing, thumbprint). Done here, because
//! jsonwebtoken does not do them: refusing private members in the header's `jwk` (its `Jwk`
//! type ignores unknown members, so `d` would pass unseen), checking that the key type suits
//! `alg`, and the claims of §4.3. A proof's `jti` is kept in the session store for as long as
//! the proof could be accepted, so a replay is refused on every instance (Redis) — and, like
//! the `private_key_jwt` `jti`s, forgotten when the store is lost.

use std::sync::Arc;
use std::time::Duration;

use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, ThumbprintHash};
use jsonwebtoken::{Algorithm, DecodingKey, Validation};
use serde::Deserialize;

use crate::clients::jwks::PRIVATE_MEMBERS;
use crate::crypto::{b64url_decode, sha256_b64url};
use crate::sessions::SessionStore;

/// The `alg` values a proof may use (`dpop_signing_alg_values_supported`): asymmetric only,
/// never `none` or an HMAC (§4.3 point 5).
pub const SIGNING_ALGS: &[&str] = &["ES256", "PS256", "RS256", "EdDSA"];

/// The longest `DPoP` header accepted. An RSA-4096 proof with every claim is about 1.5 KB.
pub const MAX_PROOF_LEN: usize = 8 * 1024;

/// How old a proof's `iat` may be, and how far ahead of our clock (client clocks drift a little).
const MAX_AGE_SECS: i64 = 60;
const MAX_AHEAD_SECS: i64 = 5;

/// The longest `jti` accepted; it is hashed before it is stored.
const MAX_JTI_LEN: usize = 256;

/// Why a proof was refused. The texts are the `error_description` of `invalid_dpop_proof`.
#[derive(Debug, thiserror::Error)]
pub enum DpopError {
    #[error("{0}")]
    Invalid(&'static str),
    #[error(transparent)]
    Backend(#[from] anyhow::Error),
}

/// The request a proof must be for: its method and URL, and the access token it accompanies.
#[derive(Debug, Clone, Copy)]
pub struct ProofTarget<'a> {
    pub method: &'a str,
    /// The endpoint's URL under the configured issuer (never built from the `Host` header).
    pub url: &'a str,
    /// At a resource endpoint: the access token, whose hash the proof must carry (`ath`).
    pub access_token: Option<&'a str>,
}

/// A proof that passed every check: the thumbprint of its key.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Proof {
    pub jkt: String,
}

#[derive(Deserialize)]
struct ProofClaims {
    jti: String,
    htm: String,
    htu: String,
    iat: i64,
    #[serde(default)]
    ath: Option<String>,
}

/// Checks proofs and remembers their `jti`s.
#[derive(Clone)]
pub struct DpopVerifier {
    replay: Arc<dyn SessionStore>,
}

impl DpopVerifier {
    pub fn new(replay: Arc<dyn SessionStore>) -> Self {
        Self { replay }
    }

    /// Every check of §4.3, then the `jti` is recorded: the last step, so that a proof refused
    /// for another reason spends nothing.
    pub async fn verify(
        &self,
        proof: &str,
        target: ProofTarget<'_>,
        now: i64,
    ) -> Result<Proof, DpopError> {
        let (checked, jti) = check(proof, target, now)?;
        let key = format!("dpop:{}:{}", checked.jkt, sha256_b64url(&jti));
        let window = Duration::from_secs((MAX_AGE_SECS + MAX_AHEAD_SECS + 1) as u64);
        if !self.replay.put_new(&key, b"1", window).await? {
            return Err(DpopError::Invalid("the DPoP proof was already used"));
        }
        Ok(checked)
    }
}

/// The stateless checks of §4.3; returns the proof and its `jti`.
fn check(proof: &str, target: ProofTarget<'_>, now: i64) -> Result<(Proof, String), DpopError> {
    let bad = DpopError::Invalid;
    if proof.is_empty() || proof.len() > MAX_PROOF_LEN {
        return Err(bad("the DPoP proof is missing or too long"));
    }
    let raw_header = raw_header(proof).ok_or(bad("the DPoP proof is not a JWS"))?;
    if raw_header.get("typ").and_then(|t| t.as_str()) != Some("dpop+jwt") {
        return Err(bad("the DPoP proof must have typ dpop+jwt"));
    }
    let alg = raw_header.get("alg").and_then(|a| a.as_str()).unwrap_or("");
    if !SIGNING_ALGS.contains(&alg) {
        return Err(bad("the DPoP proof's alg is not supported"));
    }
    let raw_jwk = raw_header
        .get("jwk")
        .and_then(|j| j.as_object())
        .ok_or(bad("the DPoP proof must carry its public key in jwk"))?;
    if PRIVATE_MEMBERS.iter().any(|m| raw_jwk.contains_key(*m)) {
        return Err(bad("the DPoP proof's jwk must be a public key"));
    }
    // The thumbprint is computed over these members as written: only base64url text may be
    // there, so that no other text can be made to hash like someone else's key.
    let encoded_ok = ["x", "y", "n", "e"].iter().all(|m| match raw_jwk.get(*m) {
        None => true,
        Some(v) => v.as_str().is_some_and(is_base64url),
    });
    if !encoded_ok {
        return Err(bad("the DPoP proof's jwk is malformed"));
    }
    let header =
        jsonwebtoken::decode_header(proof).map_err(|_| bad("the DPoP proof is not a JWS"))?;
    let jwk = header
        .jwk
        .as_ref()
        .ok_or(bad("the DPoP proof must carry its public key in jwk"))?;
    if !key_suits(jwk, header.alg) {
        return Err(bad("the DPoP proof's jwk does not suit its alg"));
    }
    let key = DecodingKey::from_jwk(jwk).map_err(|_| bad("the DPoP proof's jwk is malformed"))?;
    let mut validation = Validation::new(header.alg);
    validation.set_required_spec_claims::<&str>(&[]);
    // `iat` is checked below against the injected clock; a proof has no `exp` or `aud`.
    validation.validate_exp = false;
    validation.validate_nbf = false;
    validation.validate_aud = false;
    let claims = jsonwebtoken::decode::<ProofClaims>(proof, &key, &validation)
        .map_err(|_| bad("the DPoP proof's signature or claims are invalid"))?
        .claims;
    if claims.jti.is_empty() || claims.jti.len() > MAX_JTI_LEN {
        return Err(bad("the DPoP proof needs a jti"));
    }
    if claims.htm != target.method {
        return Err(bad("the DPoP proof's htm is not this request's method"));
    }
    if !same_uri(&claims.htu, target.url) {
        return Err(bad("the DPoP proof's htu is not this endpoint"));
    }
    if claims.iat < now - MAX_AGE_SECS || claims.iat > now + MAX_AHEAD_SECS {
        return Err(bad("the DPoP proof's iat is too old or in the future"));
    }
    if let Some(token) = target.access_token {
        if claims.ath.as_deref() != Some(sha256_b64url(token).as_str()) {
            return Err(bad("the DPoP proof's ath does not match the access token"));
        }
    }
    let jkt = jwk
        .thumbprint(ThumbprintHash::SHA256)
        .map_err(|_| bad("the DPoP proof's jwk is malformed"))?;
    Ok((Proof { jkt }, claims.jti))
}

fn raw_header(proof: &str) -> Option<serde_json::Map<String, serde_json::Value>> {
    let (header, rest) = proof.split_once('.')?;
    // A JWS in compact form: exactly three parts.
    if rest.split('.').count() != 2 {
        return None;
    }
    let bytes = b64url_decode(header)?;
    match serde_json::from_slice(&bytes).ok()? {
        serde_json::Value::Object(map) => Some(map),
        _ => None,
    }
}

fn is_base64url(text: &str) -> bool {
    !text.is_empty()
        && text
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'-' || b == b'_')
}

/// ES256 needs a P-256 key, RS256/PS256 an RSA key, EdDSA an Ed25519 key.
fn key_suits(jwk: &Jwk, alg: Algorithm) -> bool {
    match (&jwk.algorithm, alg) {
        (AlgorithmParameters::EllipticCurve(ec), Algorithm::ES256) => {
            ec.curve == EllipticCurve::P256
        }
        (AlgorithmParameters::RSA(_), Algorithm::RS256 | Algorithm::PS256) => true,
        (AlgorithmParameters::OctetKeyPair(okp), Algorithm::EdDSA) => {
            okp.curve == EllipticCurve::Ed25519
        }
        _ => false,
    }
}

/// §4.3 point 9: `htu` is the request's URI without query and fragment. Both sides are parsed,
/// so that the URL parser's normalisation (case of scheme and host, default port, an empty
/// path) applies to both alike.
fn same_uri(htu: &str, expected: &str) -> bool {
    let (Ok(mut offered), Ok(expected)) = (url::Url::parse(htu), url::Url::parse(expected)) else {
        return false;
    };
    offered.set_query(None);
    offered.set_fragment(None);
    offered == expected
}

/// `dpop_jkt` (§10): a SHA-256 JWK thumbprint, 43 base64url characters.
pub fn valid_jkt(jkt: &str) -> bool {
    jkt.len() == 43 && is_base64url(jkt)
}

/// `ath` (§4.2): the access token's SHA-256, base64url.
pub fn access_token_hash(token: &str) -> String {
    sha256_b64url(token)
}

impl From<DpopError> for crate::oidc::error::OAuthError {
    fn from(error: DpopError) -> Self {
        match error {
            DpopError::Invalid(why) => Self::invalid_dpop_proof(why),
            DpopError::Backend(e) => Self::unavailable(&e),
        }
    }
}

#[cfg(test)]
mod tests;
