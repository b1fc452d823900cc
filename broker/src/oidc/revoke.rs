//! Token revocation (RFC 7009). Revoking a refresh token revokes its grant (the whole family
//! and the access tokens issued under it); revoking an access token denies that token. A token
//! that is unknown, or not the caller's, gets the same 200 and nothing changes.

use super::access::{deny_access_token, live_access_token};
use super::error::OAuthError;
use super::grant_types::refresh_token::current_grant;
use super::Provider;
use crate::clients::auth::Presented;
use crate::oidc::params::Params;

pub async fn revoke(
    p: &Provider,
    presented: &Presented,
    params: &Params,
) -> Result<(), OAuthError> {
    let now = p.now();
    let caller = p.client_auth.authenticate(presented, now).await?;
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    // The hint is advisory (RFC 7009 §2.1): every token type we issue is looked up anyway.
    {
        if let Some(grant) = current_grant(p, token, now).await? {
            if grant.client_id == caller.client_id {
                p.grants
                    .revoke_grant(&grant.id, "revoked by the client", now)
                    .await?;
            }
            return Ok(());
        }
    }
    if let Ok(verified) = live_access_token(p, token, now).await {
        if verified.claims.client_id == caller.client_id {
            deny_access_token(p, &verified, now).await?;
        }
    }
    Ok(())
}
