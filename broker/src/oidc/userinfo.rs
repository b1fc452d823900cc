//! UserInfo (OIDC Core §5.3). What it releases comes from the instance's released-claims cache
//! (`crate::changes::released`), filled from SQL on a miss.

use std::sync::Arc;

use serde_json::{Map, Value};

use super::access::{invalid_token, presented_access_token, PresentedToken};
use super::error::{ErrorCode, OAuthError};
use super::grant_types::issue::profile_claims;
use super::Provider;
use crate::changes::Released;
use crate::tokens::claims::Audience;

pub async fn userinfo(
    p: &Provider,
    presented: &PresentedToken<'_>,
) -> Result<Map<String, Value>, OAuthError> {
    let now = p.now();
    let verified = presented_access_token(p, presented, "/userinfo", now).await?;
    let claims = &verified.claims;
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
    let released = released(p, &claims.sub, now)
        .await?
        .ok_or_else(invalid_token)?;
    let account = released.account_for(source);
    let mut out = profile_claims(&account, &claims.scope);
    if let Some(client) = client.as_deref() {
        if claims.scope.contains("roles") {
            let roles = crate::roles::claims::for_client(client, &released.approved_roles);
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

/// The account, its legacy links and approved roles: cached, or read from SQL and cached.
async fn released(
    p: &Provider,
    account_id: &str,
    now: i64,
) -> anyhow::Result<Option<Arc<Released>>> {
    if let Some(hit) = p.released.get(account_id, now) {
        return Ok(Some(hit));
    }
    let ticket = p.released.ticket(account_id);
    let Some(account) = p.accounts.find(account_id).await? else {
        return Ok(None);
    };
    let released = Arc::new(Released {
        account,
        legacy_links: p.accounts.legacy_links(account_id).await?,
        approved_roles: p.roles.approved_of(account_id).await?,
    });
    p.released.fill(account_id, ticket, released.clone(), now);
    Ok(Some(released))
}
