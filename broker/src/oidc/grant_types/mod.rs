//! The token endpoint (RFC 6749 §3.2): client authentication, then one module per grant type.

mod authorization_code;
mod client_credentials;
pub mod issue;
pub mod proof;
pub mod refresh_token;

use super::error::{ErrorCode, OAuthError};
use super::{Provider, TokenResponse};
use crate::clients::auth::Presented;
use crate::oidc::params::Params;
use crate::scope::Scope;

/// `dpop`: the request's `DPoP` header (RFC 9449), checked once the client is known.
pub async fn token(
    p: &Provider,
    presented: &Presented,
    params: &Params,
    dpop: Option<&str>,
) -> Result<TokenResponse, OAuthError> {
    let now = p.now();
    let client = p.client_auth.authenticate(presented, now).await?;
    let proof = proof::token_request_proof(p, &client, dpop, now).await?;
    let proof = proof.as_ref();
    match params.get("grant_type") {
        Some("authorization_code") => {
            authorization_code::exchange(p, &client, params, proof, now).await
        }
        Some("refresh_token") => refresh_token::refresh(p, &client, params, proof, now).await,
        Some("client_credentials") => {
            client_credentials::grant(p, &client, params, proof, now).await
        }
        Some(_) => Err(OAuthError::new(
            ErrorCode::UnsupportedGrantType,
            "unsupported grant_type",
        )),
        None => Err(OAuthError::invalid_request("grant_type is required")),
    }
}

/// RFC 8707 §2.2: a `resource` at the token endpoint must be the one the grant was made for.
pub(crate) fn same_resource(
    requested: Option<&str>,
    granted: Option<&str>,
) -> Result<(), OAuthError> {
    match requested {
        Some(r) if Some(r) != granted => Err(OAuthError::new(
            ErrorCode::InvalidTarget,
            "resource does not match the authorization",
        )),
        _ => Ok(()),
    }
}

/// Checks a requested scope against what is allowed; returns the granted scope string.
pub(crate) fn narrow_scope(requested: Option<&str>, allowed: &Scope) -> Result<Scope, OAuthError> {
    match requested {
        None => Ok(allowed.clone()),
        Some(req) => {
            let wanted = Scope::parse(req);
            if wanted.is_within(allowed) {
                Ok(wanted)
            } else {
                Err(OAuthError::new(
                    ErrorCode::InvalidScope,
                    "requested scope exceeds what was granted",
                ))
            }
        }
    }
}
