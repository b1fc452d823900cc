//! Access tokens whose signature was verified already, by the SHA-256 of the token, so that a
//! resource server introspecting the same token on every request pays one verification. An
//! entry is used only until the token's `exp` and while its key still verifies (a key removed
//! from the ring takes its tokens with it); revocation is checked on every use, not here.

use std::sync::Arc;

use super::claims::AccessClaims;
use super::{TokenError, TokenSigner};
use crate::crypto::{sha256, sha256_b64url};

/// Tokens held per instance (about 1 KB each).
pub const CAPACITY: usize = 4096;

/// A verified access token and what its checks need.
#[derive(Debug)]
pub struct Verified {
    pub claims: AccessClaims,
    /// SHA-256 of the `jti` (the key of a denied token).
    pub jti_hash: String,
    kid: String,
}

#[derive(Clone)]
pub struct VerifiedTokens {
    entries: Arc<quick_cache::sync::Cache<[u8; 32], Arc<Verified>>>,
}

impl VerifiedTokens {
    pub fn new(capacity: usize) -> Self {
        Self {
            entries: Arc::new(quick_cache::sync::Cache::new(capacity.max(1))),
        }
    }

    /// Signature, issuer, `typ` and expiry, from the cache when this token was verified before.
    pub fn verify(
        &self,
        signer: &TokenSigner,
        token: &str,
        now: i64,
    ) -> Result<Arc<Verified>, TokenError> {
        let key = sha256(token.as_bytes());
        if let Some(hit) = self.entries.get(&key) {
            if hit.claims.exp > now && signer.ring().verification_key(&hit.kid, now).is_some() {
                return Ok(hit);
            }
            self.entries.remove(&key);
            return Err(TokenError::Invalid);
        }
        let claims = signer.verify_access_token(token, now)?;
        let kid = jsonwebtoken::decode_header(token)
            .ok()
            .and_then(|h| h.kid)
            .ok_or(TokenError::Invalid)?;
        let verified = Arc::new(Verified {
            jti_hash: sha256_b64url(&claims.jti),
            claims,
            kid,
        });
        self.entries.insert(key, verified.clone());
        Ok(verified)
    }
}
