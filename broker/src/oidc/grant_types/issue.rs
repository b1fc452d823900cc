//! Building and signing the tokens of a user grant.

use crate::accounts::Account;
use crate::clients::Client;
use crate::crypto::random_token;
use crate::oidc::error::OAuthError;
use crate::oidc::Provider;
use crate::roles::claims::RoleClaim;
use crate::scope::Scope;
use crate::tokens::claims::{AccessClaims, Audience, Confirmation, IdClaims};
use crate::tokens::half_hash;

pub struct UserContext<'a> {
    pub account_id: &'a str,
    pub sid: Option<&'a str>,
    pub auth_time: Option<i64>,
    pub acr: Option<&'a str>,
    pub grant_id: Option<&'a str>,
    /// The client's legacy account ids of this person (clients with a `legacy_source`).
    pub legacy_accounts: Option<&'a [String]>,
    /// The `roles` claim (scope `roles`).
    pub roles: Option<&'a [RoleClaim]>,
}

/// The `roles` claim when the scope asks for it: read at every issuance, so an approval or a
/// revocation shows in the next token and the next refresh.
pub async fn role_claims(
    p: &Provider,
    client: &Client,
    account_id: &str,
    scope: &Scope,
) -> Result<Option<Vec<RoleClaim>>, OAuthError> {
    if !scope.contains("roles") {
        return Ok(None);
    }
    Ok(Some(p.roles.claims_for(account_id, client).await?))
}

/// The `aud` of an access token (RFC 9068 §2.2): the resource asked for, else the client's
/// configured API audience, else the broker itself. A token with the `openid` scope also names
/// the broker, whose userinfo endpoint accepts only tokens that name it.
pub fn audience(p: &Provider, client: &Client, resource: Option<&str>, scope: &Scope) -> Audience {
    let api = resource.or(client.metadata.audience.as_deref());
    let for_userinfo = scope.contains("openid");
    match (api, for_userinfo) {
        (Some(api), true) if api != &*p.issuer => {
            Audience::Many(vec![api.to_string(), p.issuer.to_string()])
        }
        (Some(api), _) => Audience::One(api.to_string()),
        (None, _) => Audience::One(p.issuer.to_string()),
    }
}

/// `jkt`: the DPoP key the token is bound to (RFC 9449 §6.1), if the request proved one.
#[allow(clippy::too_many_arguments)]
pub fn access_token(
    p: &Provider,
    client: &Client,
    sub: &str,
    scope: &Scope,
    aud: Audience,
    user: Option<&UserContext<'_>>,
    jkt: Option<&str>,
    now: i64,
) -> Result<String, OAuthError> {
    let claims = AccessClaims {
        iss: p.issuer.to_string(),
        sub: sub.to_string(),
        aud,
        exp: now + p.tokens.access_token_ttl_secs,
        iat: now,
        jti: random_token(),
        client_id: client.client_id.clone(),
        scope: scope.clone(),
        sid: user.and_then(|u| u.sid.map(str::to_string)),
        auth_time: user.and_then(|u| u.auth_time),
        acr: user.and_then(|u| u.acr.map(str::to_string)),
        gid: user.and_then(|u| u.grant_id.map(str::to_string)),
        legacy_accounts: user.and_then(|u| u.legacy_accounts.map(<[String]>::to_vec)),
        cnf: jkt.map(|jkt| Confirmation {
            jkt: jkt.to_string(),
        }),
        roles: user.and_then(|u| u.roles.map(<[RoleClaim]>::to_vec)),
    };
    p.signer
        .sign_access_token(&claims, now)
        .map_err(|e| OAuthError::unavailable(&anyhow::Error::from(e)))
}

/// Profile claims released by scope (OIDC Core §5.4); the personal ID only under its own scope.
pub fn profile_claims(
    account: &Account,
    scope: &Scope,
) -> serde_json::Map<String, serde_json::Value> {
    let has = |s: &str| scope.contains(s);
    let mut out = serde_json::Map::new();
    if has("profile") {
        out.insert("name".into(), account.full_name.clone().into());
        if let Some(b) = &account.birthdate {
            out.insert("birthdate".into(), b.clone().into());
        }
        if let Some(g) = &account.gender {
            out.insert("gender".into(), g.clone().into());
        }
    }
    if has("phone") {
        if let Some(phone) = &account.phone {
            out.insert("phone_number".into(), phone.clone().into());
            out.insert(
                "phone_number_verified".into(),
                account.phone_verified.into(),
            );
        }
    }
    if let Some(ids) = &account.legacy_accounts {
        out.insert("legacy_accounts".into(), ids.clone().into());
    }
    if has("personal_id") {
        if let Some(pid) = &account.personal_id {
            out.insert("personal_id".into(), pid.clone().into());
        }
    }
    out
}

/// The `sub` a client sees for an account, in ID tokens and logout tokens alike. Subjects are
/// public today (the account id for every client); pairwise subjects would change only this.
pub fn subject(_client: &Client, account_id: &str) -> String {
    account_id.to_string()
}

pub struct IdTokenInput<'a> {
    pub account: &'a Account,
    pub scope: &'a Scope,
    pub nonce: Option<&'a str>,
    pub sid: &'a str,
    pub auth_time: Option<i64>,
    pub acr: &'a str,
    pub amr: &'a [String],
    pub access_token: &'a str,
    /// Individual claims the RP asked for (`claims` parameter), released with the scope's.
    pub requested_claims: &'a [String],
    /// The `roles` claim (scope `roles`).
    pub roles: Option<&'a [RoleClaim]>,
}

pub fn id_token(
    p: &Provider,
    client: &Client,
    input: &IdTokenInput<'_>,
    now: i64,
) -> Result<String, OAuthError> {
    let alg = client.metadata.id_token_signed_response_alg;
    let claims = IdClaims {
        iss: p.issuer.to_string(),
        sub: subject(client, &input.account.id),
        aud: client.client_id.clone(),
        azp: client.client_id.clone(),
        exp: now + p.tokens.id_token_ttl_secs,
        iat: now,
        auth_time: input.auth_time,
        nonce: input.nonce.map(str::to_string),
        acr: input.acr.to_string(),
        amr: input.amr.to_vec(),
        sid: input.sid.to_string(),
        at_hash: Some(half_hash(alg, input.access_token)),
        profile: id_token_profile(input),
    };
    p.signer
        .sign(alg, "JWT", &claims, now)
        .map_err(|e| OAuthError::unavailable(&anyhow::Error::from(e)))
}

/// The scope's claims plus the individually requested ones (already limited to the client's
/// registered scopes when the request was accepted).
fn id_token_profile(input: &IdTokenInput<'_>) -> serde_json::Map<String, serde_json::Value> {
    let mut out = profile_claims(input.account, input.scope);
    if let Some(roles) = input.roles {
        if let Ok(value) = serde_json::to_value(roles) {
            out.insert("roles".into(), value);
        }
    }
    for claim in input.requested_claims {
        if out.contains_key(claim) {
            continue;
        }
        if let Some(scope) = crate::oidc::authorize::claim_scope(claim) {
            if let Some(v) = profile_claims(input.account, &Scope::from(scope)).remove(claim) {
                out.insert(claim.clone(), v);
            }
        }
    }
    out
}
