//! `grant_type=refresh_token` with rotation and reuse detection (RFC 6749 §6, RFC 9700 §4.14).
//! No ID token is returned on refresh (OIDC Core §12.2 makes it optional): it would cost an
//! RSA signature per refresh for a token the client already has.

use std::collections::HashMap;

use super::issue::{self, UserContext};
use super::narrow_scope;
use crate::clients::{Client, GrantType};
use crate::crypto::{random_token, sha256_b64url};
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::oidc::{Provider, TokenResponse};
use crate::tokens::grants::{RefreshRecord, RotateOutcome};

const BAD_TOKEN: &str = "the refresh token is invalid, expired or revoked";

pub async fn refresh(
    p: &Provider,
    client: &Client,
    params: &HashMap<String, String>,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    if !client.metadata.allows_grant(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client may not use this grant type",
        ));
    }
    let token = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    if token.len() != 43 {
        return Err(OAuthError::invalid_grant(BAD_TOKEN));
    }
    let hash = sha256_b64url(token);
    let (old, grant) = p
        .grants
        .find_refresh(&hash)
        .await?
        .ok_or_else(|| OAuthError::invalid_grant(BAD_TOKEN))?;
    if grant.client_id != client.client_id || grant.revoked_at.is_some() || old.expires_at <= now {
        return Err(OAuthError::invalid_grant(BAD_TOKEN));
    }
    if old.used_at.is_some() {
        reuse_detected(p, &grant.id, now).await?;
        return Err(OAuthError::invalid_grant(BAD_TOKEN));
    }
    let scope = narrow_scope(params.get("scope"), &old.scope)?;
    let new_token = random_token();
    let new = RefreshRecord {
        token_hash: sha256_b64url(&new_token),
        grant_id: grant.id.clone(),
        // The family keeps its original scope; a narrower request narrows only this access token.
        scope: old.scope.clone(),
        created_at: now,
        expires_at: old.expires_at,
        used_at: None,
    };
    if let RotateOutcome::AlreadyUsed = p.grants.rotate_refresh(&hash, &new, now).await? {
        reuse_detected(p, &grant.id, now).await?;
        return Err(OAuthError::invalid_grant(BAD_TOKEN));
    }
    let account_id = grant.account_id.clone().unwrap_or_default();
    let user = UserContext {
        account_id: &account_id,
        sid: grant.sid.as_deref(),
        auth_time: grant.auth_time,
        acr: grant.acr.as_deref(),
        grant_id: Some(&grant.id),
    };
    let aud = issue::audience(p, client, grant.resource.as_deref());
    let access_token = issue::access_token(p, client, &account_id, &scope, aud, Some(&user), now)?;
    Ok(TokenResponse {
        access_token,
        token_type: "Bearer",
        expires_in: p.tokens.access_token_ttl_secs,
        refresh_token: Some(new_token),
        id_token: None,
        scope,
    })
}

async fn reuse_detected(p: &Provider, grant_id: &str, now: i64) -> Result<(), OAuthError> {
    if p.grants
        .revoke_grant(grant_id, "refresh token reused", now)
        .await?
    {
        tracing::warn!(grant = %grant_id, "refresh token reused: the whole family is revoked");
    }
    Ok(())
}
