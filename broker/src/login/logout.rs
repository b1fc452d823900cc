//! RP-initiated logout (OpenID Connect RP-Initiated Logout 1.0) and ending a session.
//!
//! Without a valid `id_token_hint` for the browser's own session, the person confirms first, on
//! a form carrying a CSRF token bound to the SSO session; the HTTP layer adds that the POST came
//! from the broker's own page. Ending a session revokes what was issued under it and, in the
//! same transaction, records its `session:ended` event, from which every RP of the session gets
//! a back-channel logout token (`oidc::backchannel_logout`).

use url::Url;

use crate::audit::{AuditEntry, AuditLog};
use crate::crypto::{ct_eq, sha256_b64url};
use crate::oidc::error::OAuthError;
use crate::oidc::params::Params;
use crate::oidc::Provider;
use crate::session_end::EndReason;
use crate::sessions::sso::SsoSession;

/// The logout request as the flow needs it.
pub struct LogoutRequest<'r> {
    pub params: &'r Params,
    /// The SSO cookie's secret, if any.
    pub sso_secret: Option<&'r str>,
    /// A POST with `confirm=yes` from the broker's own page (Origin / Sec-Fetch-Site checked).
    pub confirmation_posted: bool,
}

#[derive(Debug)]
pub enum LogoutNext {
    /// Ask the person: the form posts these fields back.
    Confirm { fields: Vec<(String, String)> },
    /// Logged out: go to the RP's registered URI (with `state`), or show the signed-out page.
    Done { redirect: Option<Url> },
}

#[derive(Debug)]
pub enum LogoutError {
    /// A bad logout request: a page, never a redirect.
    BadRequest(OAuthError),
    Unavailable(anyhow::Error),
}

impl From<anyhow::Error> for LogoutError {
    fn from(error: anyhow::Error) -> Self {
        LogoutError::Unavailable(error)
    }
}

/// The logout form's CSRF token: derived from the SSO cookie's secret, which only this browser
/// holds (HttpOnly), under its own label so that it reveals nothing usable elsewhere.
fn logout_csrf(sso_secret: &str) -> String {
    sha256_b64url(&format!("logout-csrf:{sso_secret}"))
}

/// Ends the browser's SSO session and everything issued under it: a marker that makes its
/// unredeemed codes worthless, its grants (their refresh and access tokens) with the
/// `session:ended` event in one transaction, then the session. The session goes last, so that
/// a retry after a failure half-way still finds it and finishes.
pub async fn end_session(
    p: &Provider,
    sso_secret: &str,
    now: i64,
) -> anyhow::Result<Option<SsoSession>> {
    let Some(session) = p.sso.find(sso_secret).await? else {
        return Ok(None);
    };
    p.ended.mark(&session.sid).await?;
    let mut tx = p.transactions.begin().await?;
    p.session_ends
        .end(
            &mut tx,
            &session.account_id,
            &session.sid,
            EndReason::LoggedOut,
            now,
        )
        .await?;
    tx.commit().await?;
    p.sso.end(sso_secret).await?;
    Ok(Some(session))
}

/// What an operator's ending of a session found.
#[derive(Debug, PartialEq, Eq)]
pub enum AdminEnd {
    Ended,
    /// The account has no session with this `sid` that was ever given to a client.
    NotFound,
}

/// Who ends a session of an account from outside its browser.
pub enum Ender<'a> {
    /// An operator (the admin API): audited, naming them.
    Operator {
        audit: &'a dyn AuditLog,
        name: &'a str,
    },
    /// The citizen, from the account page (another of their sessions).
    Citizen,
}

/// Ends one session of an account from outside its browser: its grants and event as for a
/// logout (and, for an operator, an audit entry naming them) in one transaction, then the
/// ended-session marker. The browser's SSO session is found by its cookie only, so its entry
/// stays in the session store, but the session is ended in SQL, and `Provider::live_sso` never
/// takes an ended session as alive: that browser logs in afresh.
pub async fn end_session_of(
    p: &Provider,
    ender: Ender<'_>,
    account_id: &str,
    sid: &str,
    now: i64,
) -> anyhow::Result<AdminEnd> {
    let recorded = p.session_records.session(sid).await?;
    let known = match &recorded {
        Some(session) => session.account_id == account_id,
        // Sessions from before the session table: known by their grants.
        None => p
            .grants
            .grants_of_session(sid)
            .await?
            .iter()
            .any(|g| g.account_id.as_deref() == Some(account_id)),
    };
    if !known {
        return Ok(AdminEnd::NotFound);
    }
    let reason = match ender {
        Ender::Operator { .. } => EndReason::Administrator,
        Ender::Citizen => EndReason::ByCitizen,
    };
    let mut tx = p.transactions.begin().await?;
    let revoked = p
        .session_ends
        .end(&mut tx, account_id, sid, reason, now)
        .await?;
    if let Ender::Operator { audit, name } = ender {
        let entry = AuditEntry {
            at: now,
            kind: "session.ended",
            account_id: Some(account_id),
            client_id: None,
            actor: Some(name),
            detail: serde_json::json!({"sid": sid, "grants_revoked": revoked}),
        };
        audit.append(&mut tx, &entry).await?;
    }
    tx.commit().await?;
    p.ended.mark(sid).await?;
    Ok(AdminEnd::Ended)
}

pub async fn logout(
    p: &Provider,
    request: LogoutRequest<'_>,
    now: i64,
) -> Result<LogoutNext, LogoutError> {
    let params = request.params;
    let bad = |d: &'static str| LogoutError::BadRequest(OAuthError::invalid_request(d));
    let hint = match params.get("id_token_hint") {
        Some(token) => Some(
            super::verify_id_token_hint(p, token, now)
                .ok_or_else(|| bad("id_token_hint is not a valid ID token of this broker"))?,
        ),
        None => None,
    };
    let hinted_client = hint
        .as_ref()
        .and_then(|c| c.get("aud"))
        .and_then(|a| a.as_str())
        .map(str::to_string);
    if let (Some(a), Some(b)) = (&hinted_client, params.get("client_id")) {
        if a != b {
            return Err(bad("client_id does not match id_token_hint"));
        }
    }
    let client_id = hinted_client.or_else(|| params.get("client_id").map(str::to_string));
    let target = match params.get("post_logout_redirect_uri") {
        Some(uri) => {
            let registered = match &client_id {
                Some(id) => p.clients.get(id).await?.is_some_and(|client| {
                    client
                        .metadata
                        .post_logout_redirect_uris
                        .iter()
                        .any(|u| u == uri)
                }),
                None => false,
            };
            if !registered {
                return Err(bad(
                    "post_logout_redirect_uri is not registered for this client",
                ));
            }
            Some(uri)
        }
        None => None,
    };
    let session = match request.sso_secret {
        Some(secret) => p.sso.find(secret).await?,
        None => None,
    };
    // A confirmation counts only with the CSRF token bound to this browser's SSO session.
    let expected_csrf = request.sso_secret.map(logout_csrf);
    let confirmed = request.confirmation_posted
        && match &expected_csrf {
            Some(expected) => params
                .get("csrf")
                .is_some_and(|c| ct_eq(c.as_bytes(), expected.as_bytes())),
            None => true,
        };
    // The hint proves the RP's wish only for the session it was issued in: someone else's ID
    // token (an attacker's own, say) must not log this browser out without asking.
    let hint_sid = hint
        .as_ref()
        .and_then(|c| c.get("sid"))
        .and_then(|s| s.as_str());
    let hint_is_for_this_session = match &session {
        Some(s) => hint_sid == Some(s.sid.as_str()),
        None => hint.is_some(),
    };
    if !hint_is_for_this_session && !confirmed {
        let mut fields: Vec<(String, String)> = params
            .iter()
            .filter(|(k, _)| !matches!(*k, "confirm" | "csrf"))
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        fields.sort_unstable();
        if let Some(csrf) = expected_csrf {
            fields.push(("csrf".into(), csrf));
        }
        return Ok(LogoutNext::Confirm { fields });
    }
    if let Some(secret) = request.sso_secret {
        end_session(p, secret, now).await?;
    }
    let redirect = target.and_then(|uri| Url::parse(uri).ok()).map(|mut url| {
        if let Some(state) = params.get("state") {
            url.query_pairs_mut().append_pair("state", state);
        }
        url
    });
    Ok(LogoutNext::Done { redirect })
}
