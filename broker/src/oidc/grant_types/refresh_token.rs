//! `grant_type=refresh_token` with rotation and reuse detection (RFC 6749 §6, RFC 9700 §4.14).
//! The happy path is one conditional UPDATE (`GrantStore::rotate_refresh`); only a token that is
//! not current is looked at further, to tell a replay (revoke the family) from garbage.
//! A grant is checked against the client's current registration: one made before the client
//! was (re-)created, or that its registration no longer allows, is revoked instead of refreshed.
//! An ID token is returned only to clients registered with `id_token_on_refresh` (OIDC Core
//! §12.2 makes it optional; it costs a signature per refresh for a token the client has).

use super::issue::{self, IdTokenInput, UserContext};
use super::{narrow_scope, proof, same_resource};
use crate::accounts::{Account, Loa};
use crate::clients::{Client, GrantType};
use crate::oidc::dpop::Proof;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::oidc::params::Params;
use crate::oidc::{Provider, TokenResponse};
use crate::scope::Scope;
use crate::tokens::refresh_families::{GrantRecord, RefreshToken, RotateOutcome};

const BAD_TOKEN: &str = "the refresh token is invalid, expired or revoked";

pub async fn refresh(
    p: &Provider,
    client: &Client,
    params: &Params,
    dpop: Option<&Proof>,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    if !client.metadata.allows_grant(GrantType::RefreshToken) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client may not use this grant type",
        ));
    }
    let offered = params
        .get("refresh_token")
        .ok_or_else(|| OAuthError::invalid_request("refresh_token is required"))?;
    let token = p
        .refresh
        .verify(offered)
        .ok_or_else(|| OAuthError::invalid_grant(BAD_TOKEN))?;
    // Everything that can fail happens before the family moves on: a request the grant cannot
    // satisfy, and the backend reads, so that a client that got no answer retries with a token
    // that is still the current one. The grant is read only when something needs it.
    let narrows = params.contains("scope") || params.contains("resource");
    let known = if narrows || client.metadata.id_token_on_refresh {
        p.grants
            .find_grant(&token.grant_id)
            .await?
            .filter(|g| g.client_id == client.client_id)
    } else {
        None
    };
    if let Some(grant) = known.as_ref().filter(|_| narrows) {
        narrow_scope(params.get("scope"), &grant.scope)?;
        same_resource(params.get("resource"), grant.resource.as_deref())?;
    }
    let id_token_account = match known.filter(|_| client.metadata.id_token_on_refresh) {
        Some(grant) => Some(
            p.accounts
                .find_for(
                    grant.account_id.as_deref().unwrap_or_default(),
                    client.metadata.legacy_source(),
                )
                .await?
                .ok_or_else(|| OAuthError::invalid_grant("the account no longer exists"))?,
        ),
        None => None,
    };
    // A family bound to a DPoP key rotates only with a proof of that key (in the same UPDATE).
    let jkt = dpop.map(|proof| proof.jkt.as_str());
    let outcome = p
        .grants
        .rotate_refresh(
            &token.grant_id,
            &client.client_id,
            token.generation,
            jkt,
            now,
        )
        .await?;
    let grant = match outcome {
        RotateOutcome::Rotated(grant) => grant,
        RotateOutcome::NotCurrent => {
            reuse_check(p, client, &token, dpop, now).await?;
            return Err(OAuthError::invalid_grant(BAD_TOKEN));
        }
    };
    // Deleting or narrowing a client revokes what no longer fits at once; this catches what
    // another instance's cached registration, or a grant made in between, let through.
    // A client that became a mobile app (or moved to another device group) since: its families
    // without that device would otherwise refresh forever outside the one-device rule.
    let device_changed = match (
        &grant.device,
        client.metadata.device_group(&client.client_id),
    ) {
        (None, Some(_)) => p.devices.enabled(),
        (Some(device), Some(group)) => device.group != group,
        (_, None) => false,
    };
    if grant.created_at < client.created_at
        || !client.metadata.admits_grant(&grant)
        || device_changed
    {
        p.grants
            .revoke_grant(&grant.id, "client registration changed", now)
            .await?;
        return Err(OAuthError::invalid_grant(BAD_TOKEN));
    }
    let new_token = p
        .refresh
        .mint(&grant.id, grant.refresh_generation.unwrap_or_default());
    // A narrower scope narrows this access token only; the family keeps its scope.
    let scope = narrow_scope(params.get("scope"), &grant.scope)?;
    let account_id = grant.account_id.clone().unwrap_or_default();
    let legacy_accounts = match (&id_token_account, client.metadata.legacy_source()) {
        (Some(account), _) => account.legacy_accounts.clone(),
        (None, Some(source)) => Some(p.accounts.legacy_ids(&account_id, source).await?),
        (None, None) => None,
    };
    let roles = issue::role_claims(p, client, &account_id, &scope).await?;
    let user = UserContext {
        account_id: &account_id,
        sid: grant.sid.as_deref(),
        auth_time: grant.auth_time,
        acr: grant.acr.as_deref(),
        grant_id: Some(&grant.id),
        legacy_accounts: legacy_accounts.as_deref(),
        roles: roles.as_deref(),
    };
    let aud = issue::audience(p, client, grant.resource.as_deref(), &scope);
    let access_token =
        issue::access_token(p, client, &account_id, &scope, aud, Some(&user), jkt, now)?;
    let id_token = match &id_token_account {
        Some(account) if grant.scope.contains("openid") => Some(refreshed_id_token(
            p,
            client,
            account,
            &grant,
            &scope,
            &access_token,
            roles.as_deref(),
            now,
        )?),
        _ => None,
    };
    Ok(TokenResponse {
        access_token,
        token_type: proof::token_type(dpop),
        expires_in: p.tokens.access_token_ttl_secs,
        refresh_token: Some(new_token),
        id_token,
        scope,
    })
}

/// OIDC Core §12.2: the same `iss`, `sub`, `aud` and `azp` as at login, the original
/// `auth_time`, `acr`, `amr` and `sid`, a new `iat`, and no `nonce`.
#[allow(clippy::too_many_arguments)]
fn refreshed_id_token(
    p: &Provider,
    client: &Client,
    account: &Account,
    grant: &GrantRecord,
    scope: &Scope,
    access_token: &str,
    roles: Option<&[crate::roles::claims::RoleClaim]>,
    now: i64,
) -> Result<String, OAuthError> {
    issue::id_token(
        p,
        client,
        &IdTokenInput {
            account,
            scope,
            nonce: None,
            sid: grant.sid.as_deref().unwrap_or_default(),
            // Never invented: a grant whose authentication time is unknown keeps it unknown.
            auth_time: grant.auth_time,
            acr: grant
                .acr
                .as_deref()
                .unwrap_or_else(|| p.acr.value(Loa::One)),
            amr: &grant.amr,
            access_token,
            requested_claims: &[],
            roles,
        },
        now,
    )
}

/// The authentic token was not the live current one. If it belongs to a live family of this
/// client and is of an earlier generation, it is a replay, so the family is revoked. Another
/// client's token, or one of an expired or revoked family, changes nothing. Neither does a
/// token of a family bound to a DPoP key presented without a proof of that key: it proves
/// nothing about the key holder, and a copied token must not let its thief end the family.
async fn reuse_check(
    p: &Provider,
    client: &Client,
    token: &RefreshToken,
    dpop: Option<&Proof>,
    now: i64,
) -> Result<(), OAuthError> {
    let Some(grant) = p.grants.find_grant(&token.grant_id).await? else {
        return Ok(());
    };
    let live_family = grant.client_id == client.client_id
        && grant.revoked_at.is_none()
        && grant.refresh_expires_at.is_some_and(|t| t > now);
    if live_family {
        proof::check_bound(grant.dpop_jkt.as_deref(), dpop)?;
    }
    let earlier = grant
        .refresh_generation
        .is_some_and(|current| token.generation < current);
    if live_family
        && earlier
        && p.grants
            .revoke_grant(&grant.id, "refresh token reused", now)
            .await?
    {
        tracing::warn!(grant = %grant.id, "refresh token reused: the whole family is revoked");
    }
    Ok(())
}

/// The grant whose live current refresh token `offered` is (introspection, revocation).
pub async fn current_grant(
    p: &Provider,
    offered: &str,
    now: i64,
) -> anyhow::Result<Option<GrantRecord>> {
    let Some(token) = p.refresh.verify(offered) else {
        return Ok(None);
    };
    Ok(p.grants
        .find_grant(&token.grant_id)
        .await?
        .filter(|grant| grant.refresh_is_current(&token, now)))
}
