//! DPoP at the token endpoint (RFC 9449 §5): the proof of a token request, what it binds, and
//! the checks of what was bound before. An access token issued with a proof carries the key's
//! thumbprint (`cnf.jkt`) and is of type `DPoP`. A refresh family is bound only for public
//! clients (§5): a confidential client's refresh token is already bound to its credentials. A
//! family issued unbound stays unbound; a proof on its refresh still binds the new access token.

use crate::clients::Client;
use crate::oidc::dpop::{Proof, ProofTarget};
use crate::oidc::error::OAuthError;
use crate::oidc::Provider;

/// The token request's verified proof, if it sent one. A client registered with
/// `dpop_bound_access_tokens` must send one (RFC 9449 §5.2).
pub async fn token_request_proof(
    p: &Provider,
    client: &Client,
    header: Option<&str>,
    now: i64,
) -> Result<Option<Proof>, OAuthError> {
    let Some(header) = header else {
        if client.metadata.dpop_bound_access_tokens {
            return Err(OAuthError::invalid_dpop_proof(
                "this client must send a DPoP proof with every token request",
            ));
        }
        return Ok(None);
    };
    let url = p.endpoint("/token");
    let target = ProofTarget {
        method: "POST",
        url: &url,
        access_token: None,
    };
    Ok(Some(p.dpop.verify(header, target, now).await?))
}

/// The `token_type` of the response (RFC 9449 §5: `DPoP` for a bound access token).
pub fn token_type(proof: Option<&Proof>) -> &'static str {
    if proof.is_some() {
        "DPoP"
    } else {
        "Bearer"
    }
}

/// The key a new refresh family is bound to: the proof's, for a public client.
pub fn family_binding(client: &Client, proof: Option<&Proof>) -> Option<String> {
    proof
        .filter(|_| client.metadata.is_public())
        .map(|proof| proof.jkt.clone())
}

/// What was bound to a key (a family, or a code by `dpop_jkt`) is used only with a proof of that
/// key. Nothing bound: anything goes.
pub fn check_bound(bound: Option<&str>, proof: Option<&Proof>) -> Result<(), OAuthError> {
    match (bound, proof) {
        (None, _) => Ok(()),
        (Some(_), None) => Err(OAuthError::invalid_dpop_proof(
            "a DPoP proof is required: this grant is bound to a key",
        )),
        (Some(jkt), Some(proof)) if proof.jkt == jkt => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(
            "this grant is bound to another DPoP key",
        )),
    }
}
