//! `grant_type=authorization_code` (RFC 6749 §4.1.3, RFC 7636, RFC 9700 §4.8.2).

use super::issue::{self, IdTokenInput, UserContext};
use super::proof;
use crate::clients::{Client, GrantType};

use crate::devices::{Device, Taken};
use crate::oidc::codes::{CodeRecord, Redemption};
use crate::oidc::dpop::Proof;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::oidc::params::Params;
use crate::oidc::{pkce, Provider, TokenResponse};
use crate::tokens::refresh_families::{GrantCreated, GrantRecord};

const BAD_CODE: &str = "the authorization code is invalid, expired or already used";

pub async fn exchange(
    p: &Provider,
    client: &Client,
    params: &Params,
    dpop: Option<&Proof>,
    now: i64,
) -> Result<TokenResponse, OAuthError> {
    if !client.metadata.allows_grant(GrantType::AuthorizationCode) {
        return Err(OAuthError::new(
            ErrorCode::UnauthorizedClient,
            "client may not use this grant type",
        ));
    }
    let code = params
        .get("code")
        .ok_or_else(|| OAuthError::invalid_request("code is required"))?;
    let redirect_uri = params
        .get("redirect_uri")
        .ok_or_else(|| OAuthError::invalid_request("redirect_uri is required"))?;
    let record = match p.codes.peek(&client.client_id, code, now).await? {
        Redemption::Fresh(record) => record,
        Redemption::Replayed { grant_id } => return Err(replayed(p, &grant_id, now).await),
        Redemption::Unknown => return Err(OAuthError::invalid_grant(BAD_CODE)),
    };
    check_bindings(&record, redirect_uri, params.get("code_verifier"))?;
    // RFC 9449 §10: a code requested with `dpop_jkt` is redeemed only with that key.
    proof::check_bound(record.dpop_jkt.as_deref(), dpop)?;
    super::same_resource(params.get("resource"), record.resource.as_deref())?;
    if p.ended.is_ended(&record.sid).await? {
        return Err(OAuthError::invalid_grant(
            "the session this code was issued in has ended",
        ));
    }

    // The grant row exists before the code is consumed, so a replay that races us always
    // finds something to revoke.
    let scope = record.scope.clone();
    let refresh = client.metadata.allows_grant(GrantType::RefreshToken);
    // A mobile client's grant belongs to the device the code was issued to.
    let device =
        match (
            client.metadata.device_group(&client.client_id),
            &record.device_id,
        ) {
            (Some(group), Some(id)) => p.devices.enabled().then(|| Device {
                group: group.to_string(),
                id: id.clone(),
            }),
            (Some(_), None) => return Err(OAuthError::invalid_grant(
                "the code was issued without a device_id, and this client is a mobile application",
            )),
            (None, _) => None,
        };
    let grant = GrantRecord {
        id: record.grant_id.clone(),
        client_id: client.client_id.clone(),
        account_id: Some(record.account_id.clone()),
        sid: Some(record.sid.clone()),
        scope: scope.clone(),
        resource: record.resource.clone(),
        acr: Some(p.acr.value(record.loa).to_string()),
        auth_time: record.auth_time,
        amr: record.amr.clone(),
        created_at: now,
        revoked_at: None,
        refresh_generation: refresh.then_some(0),
        refresh_expires_at: refresh.then_some(now + p.tokens.refresh_token_ttl_secs),
        device,
        dpop_jkt: proof::family_binding(client, dpop),
    };
    // A mobile device takes the account's mobile slot in the grant's own transaction.
    let created = match grant.device {
        Some(_) => match p.devices.take(&grant, now).await? {
            Taken::Yes { .. } => GrantCreated::Created,
            Taken::No(created) => created,
        },
        None => p.grants.create_grant(&grant).await?,
    };
    match created {
        GrantCreated::Created => {}
        // Another request is redeeming the same code right now: a replay.
        GrantCreated::Duplicate => return Err(replayed(p, &grant.id, now).await),
        GrantCreated::SessionEnded => {
            return Err(OAuthError::invalid_grant(
                "the session this code was issued in has ended",
            ))
        }
    }
    match p.codes.redeem(&client.client_id, code, &grant.id).await? {
        Redemption::Fresh(_) => {}
        Redemption::Replayed { grant_id } => return Err(replayed(p, &grant_id, now).await),
        Redemption::Unknown => {
            p.grants
                .revoke_grant(&grant.id, "code vanished", now)
                .await?;
            return Err(OAuthError::invalid_grant(BAD_CODE));
        }
    }
    // A logout between the first check and the grant row's creation revoked the session's
    // grants without seeing this one; checking again now that the row exists closes the gap.
    if p.ended.is_ended(&record.sid).await? {
        p.grants
            .revoke_grant(&grant.id, "session ended", now)
            .await?;
        return Err(OAuthError::invalid_grant(
            "the session this code was issued in has ended",
        ));
    }

    let account = p
        .accounts
        .find_for(&record.account_id, client.metadata.legacy_source())
        .await?
        .ok_or_else(|| OAuthError::invalid_grant("the account no longer exists"))?;
    let roles = issue::role_claims(p, client, &account.id, &scope).await?;
    let user = UserContext {
        account_id: &account.id,
        sid: Some(&record.sid),
        auth_time: record.auth_time,
        acr: grant.acr.as_deref(),
        grant_id: Some(&grant.id),
        legacy_accounts: account.legacy_accounts.as_deref(),
        roles: roles.as_deref(),
    };
    let aud = issue::audience(p, client, record.resource.as_deref(), &scope);
    let jkt = dpop.map(|proof| proof.jkt.as_str());
    let access_token =
        issue::access_token(p, client, &account.id, &scope, aud, Some(&user), jkt, now)?;
    let id_token = issue::id_token(
        p,
        client,
        &IdTokenInput {
            account: &account,
            scope: &scope,
            nonce: record.nonce.as_deref(),
            sid: &record.sid,
            auth_time: record.auth_time,
            acr: grant.acr.as_deref().unwrap_or_default(),
            amr: &record.amr,
            access_token: &access_token,
            requested_claims: &record.id_token_claims,
            roles: roles.as_deref(),
        },
        now,
    )?;
    Ok(TokenResponse {
        access_token,
        token_type: proof::token_type(dpop),
        expires_in: p.tokens.access_token_ttl_secs,
        refresh_token: refresh.then(|| p.refresh.mint(&grant.id, 0)),
        id_token: Some(id_token),
        scope,
    })
}

fn check_bindings(
    record: &CodeRecord,
    redirect_uri: &str,
    verifier: Option<&str>,
) -> Result<(), OAuthError> {
    if record.redirect_uri != redirect_uri {
        return Err(OAuthError::invalid_grant(
            "redirect_uri does not match the authorization request",
        ));
    }
    match (&record.code_challenge, verifier) {
        (Some(challenge), Some(v)) if pkce::verify(v, challenge) => Ok(()),
        (Some(_), Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier does not match the code_challenge",
        )),
        (Some(_), None) => Err(OAuthError::invalid_grant("code_verifier is required")),
        // RFC 9700 §4.8.2: a verifier for a code issued without a challenge is a downgrade attempt.
        (None, Some(_)) => Err(OAuthError::invalid_grant(
            "code_verifier sent but no code_challenge was used",
        )),
        (None, None) => Ok(()),
    }
}

async fn replayed(p: &Provider, grant_id: &str, now: i64) -> OAuthError {
    match p
        .grants
        .revoke_grant(grant_id, "authorization code replayed", now)
        .await
    {
        Ok(true) => tracing::warn!(grant = %grant_id, "authorization code replayed: grant revoked"),
        Ok(false) => {}
        Err(e) => return OAuthError::unavailable(&e),
    }
    OAuthError::invalid_grant(BAD_CODE)
}
