//! Token introspection (RFC 7662). Only authenticated clients may ask, and a client learns
//! about a token only if it was issued to it or is meant for it (§4); otherwise `active: false`.

use serde_json::{json, Value};

use super::access::live_access_token;
use super::error::OAuthError;
use super::grant_types::refresh_token::current_grant;
use super::Provider;
use crate::clients::auth::Presented;
use crate::clients::Client;
use crate::oidc::params::Params;
use crate::tokens::claims::Audience;

pub async fn introspect(
    p: &Provider,
    presented: &Presented,
    params: &Params,
) -> Result<Value, OAuthError> {
    let now = p.now();
    let caller = p.client_auth.authenticate(presented, now).await?;
    if caller.metadata.is_public() {
        return Err(OAuthError::invalid_client());
    }
    let token = params
        .get("token")
        .ok_or_else(|| OAuthError::invalid_request("token is required"))?;
    let hint = params.get("token_type_hint");
    let inactive = json!({ "active": false });
    let as_access = || async { live_access_token(p, token, now).await.ok() };
    let as_refresh = || async { current_grant(p, token, now).await };
    if hint != Some("refresh_token") {
        if let Some(verified) = as_access().await {
            let claims = &verified.claims;
            if !entitled(&caller, &claims.client_id, Some(&claims.aud)) {
                return Ok(inactive);
            }
            let mut out = serde_json::to_value(claims).map_err(anyhow::Error::from)?;
            if let Some(obj) = out.as_object_mut() {
                obj.insert("active".into(), json!(true));
                // RFC 9449 §6.2: a bound token says so, with its `cnf` (kept in the claims).
                let token_type = if claims.cnf.is_some() {
                    "DPoP"
                } else {
                    "Bearer"
                };
                obj.insert("token_type".into(), json!(token_type));
                obj.remove("gid");
            }
            return Ok(out);
        }
    }
    if let Some(grant) = as_refresh().await? {
        if !entitled(&caller, &grant.client_id, None) {
            return Ok(inactive);
        }
        return Ok(json!({
            "active": true,
            "token_type": "refresh_token",
            "client_id": grant.client_id,
            "sub": grant.account_id,
            "scope": grant.scope,
            "exp": grant.refresh_expires_at,
            "iat": grant.created_at,
            "iss": &*p.issuer,
            "sid": grant.sid,
        }));
    }
    Ok(inactive)
}

/// Issued to the caller, or meant for it: its client id, or an API audience it is registered to
/// operate (`introspection_audiences`), is in `aud`.
fn entitled(caller: &Client, issued_to: &str, aud: Option<&Audience>) -> bool {
    if caller.client_id == issued_to {
        return true;
    }
    let Some(aud) = aud else { return false };
    aud.contains(&caller.client_id)
        || caller
            .metadata
            .introspection_audiences
            .iter()
            .any(|a| aud.contains(a))
}
