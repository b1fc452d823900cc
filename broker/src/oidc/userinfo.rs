//! UserInfo (OIDC Core §5.3) and the shared check that an access token is still live.

use std::time::Duration;

use serde_json::{Map, Value};

use super::error::{ErrorCode, OAuthError};
use super::grants::issue::profile_claims;
use super::Provider;
use crate::crypto::sha256_b64url;
use crate::tokens::claims::AccessClaims;

fn invalid_token() -> OAuthError {
    OAuthError::new(
        ErrorCode::InvalidToken,
        "the access token is invalid, expired or revoked",
    )
}

fn revoked_key(jti: &str) -> String {
    format!("revoked-at:{}", sha256_b64url(jti))
}

/// Verifies signature, issuer, expiry and type, then that neither the token nor its grant was revoked.
pub async fn live_access_token(
    p: &Provider,
    token: &str,
    now: i64,
) -> Result<AccessClaims, OAuthError> {
    let claims = p
        .signer
        .verify_access_token(token, now)
        .map_err(|_| invalid_token())?;
    if p.sessions.get(&revoked_key(&claims.jti)).await?.is_some() {
        return Err(invalid_token());
    }
    if let Some(gid) = &claims.gid {
        match p.grants.find_grant(gid).await? {
            Some(grant) if grant.revoked_at.is_none() => {}
            _ => return Err(invalid_token()),
        }
    }
    Ok(claims)
}

/// Puts an access token on the deny list until it expires (RFC 7009 for access tokens).
pub async fn deny_access_token(
    p: &Provider,
    claims: &AccessClaims,
    now: i64,
) -> anyhow::Result<()> {
    let remaining = (claims.exp - now).max(1) as u64;
    p.sessions
        .put(
            &revoked_key(&claims.jti),
            b"1",
            Duration::from_secs(remaining),
        )
        .await
}

pub async fn userinfo(p: &Provider, token: &str) -> Result<Map<String, Value>, OAuthError> {
    let now = p.now();
    let claims = live_access_token(p, token, now).await?;
    if !claims.has_scope("openid") || claims.gid.is_none() {
        return Err(OAuthError::new(
            ErrorCode::InsufficientScope,
            "the token was not issued for OpenID Connect",
        ));
    }
    let account = p
        .accounts
        .find(&claims.sub)
        .await?
        .ok_or_else(invalid_token)?;
    let mut out = profile_claims(&account, &claims.scope);
    out.insert("sub".into(), Value::String(account.id));
    Ok(out)
}
