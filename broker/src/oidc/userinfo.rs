//! UserInfo (OIDC Core §5.3).

use serde_json::{Map, Value};

use super::access::{invalid_token, presented_access_token, PresentedToken};
use super::error::{ErrorCode, OAuthError};
use super::grant_types::issue::profile_claims;
use super::Provider;
use crate::tokens::claims::Audience;

pub async fn userinfo(
    p: &Provider,
    presented: &PresentedToken<'_>,
) -> Result<Map<String, Value>, OAuthError> {
    let now = p.now();
    let claims = presented_access_token(p, presented, "/userinfo", now).await?;
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
    let client = p.clients.get(&claims.client_id).await?;
    let source = client.as_deref().and_then(|c| c.metadata.legacy_source());
    let account = p
        .accounts
        .find_for(&claims.sub, source)
        .await?
        .ok_or_else(invalid_token)?;
    let mut out = profile_claims(&account, &claims.scope);
    if let Some(client) = client.as_deref() {
        if let Some(roles) =
            super::grant_types::issue::role_claims(p, client, &account.id, &claims.scope).await?
        {
            out.insert(
                "roles".into(),
                serde_json::to_value(roles).unwrap_or_default(),
            );
        }
    }
    // A token that also goes to an API never releases the personal ID number here: that API
    // could otherwise pull it. The RP gets it in its ID token.
    if claims.aud != Audience::One(p.issuer.to_string()) {
        out.remove("personal_id");
    }
    out.insert("sub".into(), Value::String(account.id));
    Ok(out)
}
