//! Whether an access token is still live, and revoking one: shared by userinfo, introspection
//! and revocation. The signature says who issued it; SQL, the durable truth, says whether it or
//! its grant was revoked since.

use super::error::{ErrorCode, OAuthError};
use super::Provider;
use crate::crypto::sha256_b64url;
use crate::tokens::claims::AccessClaims;

pub(super) fn invalid_token() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the access token is invalid, expired or revoked",
    )
}

/// Verifies signature, issuer, expiry and type, then — in SQL, the durable truth — that neither
/// the token nor its grant was revoked.
pub async fn live_access_token(
    p: &Provider,
    token: &str,
    now: i64,
) -> Result<AccessClaims, OAuthError> {
    let claims = p
        .signer
        .verify_access_token(token, now)
        .map_err(|_| invalid_token())?;
    if !p
        .grants
        .access_token_live(&sha256_b64url(&claims.jti), claims.gid.as_deref())
        .await?
    {
        return Err(invalid_token());
    }
    Ok(claims)
}

/// Revokes one access token until it expires (RFC 7009 for access tokens).
pub async fn deny_access_token(p: &Provider, claims: &AccessClaims) -> anyhow::Result<()> {
    p.grants
        .deny_access_token(&sha256_b64url(&claims.jti), claims.exp)
        .await
}
