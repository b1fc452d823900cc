//! `grant_type=client_credentials` (RFC 6749 §4.4): a token for the client itself.

use super::{issue, proof};
use crate::clients::{Client, GrantType};
use crate::oidc::dpop::Proof;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::oidc::params::Params;
use crate::oidc::{Provider, TokenResponse};
use crate::scope::Scope;

/// Scopes that only make sense for a person.
const USER_SCOPES: &[&str] = &[
    "openid",
    "profile",
    "phone",
    "personal_id",
    "offline_access",
    "roles",
];

pub async fn grant(
    p: &Provider,
    client: &Client,
    params: &Params,
    dpop: Option<&Proof>,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    if !client.metadata.allows_grant(GrantType::ClientCredentials) || client.metadata.is_public() {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client may not use this grant type",
        ));
    }
    let scope = params.get("scope").map(Scope::parse).unwrap_or_default();
    if scope
        .iter()
        .any(|s| USER_SCOPES.contains(&s) || !client.metadata.allows_scope(s))
    {
        return Err(OAuthError::new(
            ErrorCode::InvalidScope,
            "a requested scope is not allowed for this client",
        ));
    }
    let resource = params.get("resource");
    if let Some(r) = resource {
        if !client.metadata.allows_resource(r) {
            return Err(OAuthError::new(
                ErrorCode::InvalidTarget,
                "resource is not allowed for this client",
            ));
        }
    }
    let aud = issue::audience(p, client, resource, &scope);
    let jkt = dpop.map(|proof| proof.jkt.as_str());
    let access_token =
        issue::access_token(p, client, &client.client_id, &scope, aud, None, jkt, now)?;
    Ok(TokenResponse {
        access_token,
        token_type: proof::token_type(dpop),
        expires_in: p.tokens.access_token_ttl_secs,
        refresh_token: None,
        id_token: None,
        scope,
    })
}
