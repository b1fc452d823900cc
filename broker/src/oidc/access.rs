//! Whether an access token is still live, and revoking one: shared by userinfo, introspection
//! and revocation. The signature says who issued it (verified once per token,
//! `tokens::verified`); whether it or its grant was revoked since, the instance's revocation set
//! says (`crate::changes`), and SQL, the durable truth, whenever the set cannot vouch for
//! itself (its listener is down or catching up). At a protected resource, a token bound to a DPoP key
//! (`cnf.jkt`, RFC 9449 §7) is accepted only under the `DPoP` scheme with a proof of that key
//! for this request and this token; a bound token sent as a bearer token is refused.

use std::sync::Arc;

use super::dpop::ProofTarget;
use super::error::{ErrorCode, OAuthError};
use super::Provider;
use crate::changes::Standing;
use crate::tokens::verified::Verified;

pub(super) fn invalid_token() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the access token is invalid, expired or revoked",
    )
}

/// Verifies signature, issuer, expiry and type, then that neither the token nor its grant was
/// revoked: by the revocation set, or in SQL when the set cannot vouch for itself.
pub async fn live_access_token(
    p: &Provider,
    token: &str,
    now: i64,
) -> Result<Arc<Verified>, OAuthError> {
    let verified = p
        .verified
        .verify(&p.signer, token, now)
        .map_err(|_| invalid_token())?;
    let gid = verified.claims.gid.as_deref();
    let live = match p.revocations.standing(&verified.jti_hash, gid) {
        Standing::Live => true,
        Standing::Revoked => false,
        Standing::Unknown => p.grants.access_token_live(&verified.jti_hash, gid).await?,
    };
    if !live {
        return Err(invalid_token());
    }
    Ok(verified)
}

/// How the token came (`Authorization: Bearer` or `DPoP`, RFC 9449 §7.1).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum TokenScheme {
    Bearer,
    Dpop,
}

/// An access token presented at a protected resource, with what came along with it.
#[derive(Debug)]
pub struct PresentedToken<'a> {
    pub token: &'a str,
    pub scheme: TokenScheme,
    /// The `DPoP` header (read only under the `DPoP` scheme).
    pub proof: Option<&'a str>,
    pub method: &'a str,
}

/// A live token presented at the broker's resource `path`, sender-constrained if it is bound.
pub async fn presented_access_token(
    p: &Provider,
    presented: &PresentedToken<'_>,
    path: &str,
    now: i64,
) -> Result<Arc<Verified>, OAuthError> {
    let verified = live_access_token(p, presented.token, now).await?;
    match (&verified.claims.cnf, presented.scheme) {
        (None, TokenScheme::Bearer) => Ok(verified),
        (Some(_), TokenScheme::Bearer) => Err(OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token is bound to a DPoP key: send it with the DPoP scheme and a proof",
        )),
        (None, TokenScheme::Dpop) => Err(OAuthError::new(
            ErrorCode::InvalidToken,
            "the access token is not bound to a DPoP key: send it as a Bearer token",
        )),
        (Some(cnf), TokenScheme::Dpop) => {
            let proof = presented
                .proof
                .ok_or_else(|| OAuthError::invalid_dpop_proof("a DPoP proof is required"))?;
            let url = p.endpoint(path);
            let target = ProofTarget {
                method: presented.method,
                url: &url,
                access_token: Some(presented.token),
            };
            let proof = p.dpop.verify(proof, target, now).await?;
            if proof.jkt != cnf.jkt {
                return Err(OAuthError::invalid_dpop_proof(
                    "the DPoP proof is not signed by the key the access token is bound to",
                ));
            }
            Ok(verified)
        }
    }
}

/// Revokes one access token until it expires (RFC 7009 for access tokens).
pub async fn deny_access_token(p: &Provider, verified: &Verified, now: i64) -> anyhow::Result<()> {
    p.grants
        .deny_access_token(&verified.jti_hash, verified.claims.exp, now)
        .await
}
