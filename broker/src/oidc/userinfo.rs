//! UserInfo (OIDC Core §5.3) and the shared check that an access token is still live.

use serde_json::{Map, Value};

use super::error::{ErrorCode, OAuthError};
use super::grants::issue::profile_claims;
use super::Provider;
use crate::crypto::sha256_b64url;
use crate::tokens::claims::{AccessClaims, Audience};

fn invalid_token() -> OAuthError {
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

pub async fn userinfo(p: &Provider, token: &str) -> Result<Map<String, Value>, OAuthError> {
    let now = p.now();
    let claims = live_access_token(p, token, now).await?;
    if !claims.aud.contains(&p.issuer) {
        // RFC 9068 §4: a token meant for another API is not one for userinfo.
        return Err(invalid_token());
    }
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
    // A token that also goes to an API never releases the personal ID number here: that API
    // could otherwise pull it. The RP gets it in its ID token.
    if claims.aud != Audience::One(p.issuer.to_string()) {
        out.remove("personal_id");
    }
    out.insert("sub".into(), Value::String(account.id));
    Ok(out)
}
