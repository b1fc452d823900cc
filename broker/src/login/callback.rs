//! Completing a login after the upstream's callback: the pending login, the upstream's answer
//! and its checks, then the steps that turn a verified identity into a code for the client.

use super::{BrowserCookie, FlowError, LoginFlow, Next};
use crate::abuse::ClientKey;
use crate::accounts::login::AppLink;
use crate::accounts::{Account, UpstreamIdentity};
use crate::federation::pending::{PendingLogin, UnknownLogin};
use crate::federation::upstream::{Upstream, UpstreamError};
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::sessions::records::SessionRecord;
use crate::sessions::sso::{SsoSession, COOKIE as SSO_COOKIE};

/// Reads a parameter from the raw query without turning `+` into a space: some upstreams put
/// `+` in codes.
pub fn raw_query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

/// The callback request as the flow needs it.
pub struct Callback<'r> {
    /// The upstream named by the callback's path (`/callback/{name}`).
    pub upstream: &'r str,
    /// The raw query string (`state`, `code`, `iss`, `error`).
    pub query: &'r str,
    /// The binding cookie named after this `state`, if the browser sent it.
    pub binding_secret: Option<&'r str>,
    /// The browser's current SSO cookie secret, if any: the new session replaces that one.
    pub sso_secret: Option<&'r str>,
    pub client: Option<ClientKey>,
}

/// The outcome, and whether the person asked for English (known once the pending login is).
pub struct Completed {
    pub english: Option<bool>,
    /// The pending login is still stored and its binding cookie still needed (the callback was
    /// refused before it was taken): a retry can still finish it.
    pub keep_binding: bool,
    pub next: Result<Next, FlowError>,
}

impl<'a> LoginFlow<'a> {
    pub async fn callback(&self, callback: Callback<'_>, now: i64) -> Completed {
        let unknown = |next, keep_binding| Completed {
            english: None,
            keep_binding,
            next,
        };
        if let Err(refusal) = self.budget.may_exchange(callback.client, now) {
            return unknown(Err(FlowError::Busy(refusal)), true);
        }
        let state = raw_query_param(callback.query, "state").unwrap_or_default();
        let pending = match self.pending.finish(&state, callback.binding_secret).await {
            Ok(Ok(pending)) => pending,
            Ok(Err(UnknownLogin)) => {
                // The callback's address loaded again (a reload, the back button) after it
                // answered with an interaction's first page: to that interaction, whose page
                // asks for its own binding cookie.
                return match self.pending.answered(&state).await {
                    Ok(Some(id)) => unknown(
                        Ok(Next::Interaction(super::Interaction {
                            id,
                            binding: None,
                            view: None,
                        })),
                        false,
                    ),
                    Ok(None) => unknown(Err(FlowError::UnknownLogin), false),
                    Err(e) => unknown(Err(FlowError::Unavailable(e)), true),
                };
            }
            Err(e) => return unknown(Err(FlowError::Unavailable(e)), true),
        };
        self.budget.finished(pending.created_at);
        let english = Some(pending.request.english());
        // The state is bound to the upstream it was sent to: an answer arriving at another
        // upstream's callback is a mix-up (or a forgery), and the login is over.
        let next = match self.upstream_of(&pending) {
            Some(upstream) if upstream.profile.name == callback.upstream => {
                self.complete(callback, &state, pending, upstream, now)
                    .await
            }
            _ => {
                tracing::warn!(
                    callback = callback.upstream,
                    "a callback arrived at another upstream's path than its login went to; refused"
                );
                Err(FlowError::UpstreamRefused)
            }
        };
        Completed {
            english,
            keep_binding: false,
            next,
        }
    }

    async fn complete(
        &self,
        callback: Callback<'_>,
        state: &str,
        pending: PendingLogin,
        upstream: &Upstream,
        now: i64,
    ) -> Result<Next, FlowError> {
        let request = &pending.request;
        let fail = |error: OAuthError| {
            Ok(self.to_client(&request.redirect_uri, request.state.as_deref(), Err(error)))
        };
        let query = callback.query;
        // RFC 9207 §2.4: where the upstream promises `iss` in its responses, a missing or wrong
        // one is a mix-up (the answer came from another provider), refused before anything else.
        upstream
            .check_response_issuer(raw_query_param(query, "iss").as_deref())
            .await
            .map_err(|e| self.upstream_failure(upstream, e, callback.client, now))?;
        if raw_query_param(query, "error").is_some() {
            return fail(OAuthError::new(
                ErrorCode::AccessDenied,
                "the user did not complete the VNeID login",
            ));
        }
        let Some(code) = raw_query_param(query, "code").filter(|c| !c.is_empty()) else {
            return Err(FlowError::BadRequest(OAuthError::invalid_request(
                "the identity provider sent no code",
            )));
        };
        let identity = upstream
            .complete(
                &code,
                pending.nonce.as_deref(),
                pending.pkce_verifier.as_deref(),
                now,
            )
            .await
            .map_err(|e| self.upstream_failure(upstream, e, callback.client, now))?;
        match self
            .run_steps(&pending, identity, callback.sso_secret, Some(state), now)
            .await?
        {
            Ok(next) => Ok(next),
            Err(error) => fail(error),
        }
    }

    /// Logs and counts a refused upstream answer; an unreachable upstream is not the caller's.
    fn upstream_failure(
        &self,
        upstream: &Upstream,
        e: UpstreamError,
        client: Option<ClientKey>,
        now: i64,
    ) -> FlowError {
        match e {
            UpstreamError::Unavailable(e) => {
                tracing::warn!(
                    error = format!("{e:#}"),
                    "the upstream did not answer the callback's calls"
                );
                FlowError::UpstreamDown {
                    retry_after: upstream.profile.breaker_open_secs.max(1),
                }
            }
            UpstreamError::Down { retry_after } => FlowError::UpstreamDown { retry_after },
            e => {
                self.budget.upstream_failed(client, now);
                tracing::warn!(error = %e, "upstream login refused");
                FlowError::UpstreamRefused
            }
        }
    }

    /// The steps after the upstream: authentication time, level, account, then the SSO session
    /// and the code. `Ok(Err(..))` is an answer for the client.
    async fn run_steps(
        &self,
        pending: &PendingLogin,
        identity: UpstreamIdentity,
        previous_secret: Option<&str>,
        answering: Option<&str>,
        now: i64,
    ) -> Result<Result<Next, OAuthError>, FlowError> {
        let p = self.provider;
        let request = &pending.request;
        let auth_time = match self.authentication_time(pending, identity.auth_time, now) {
            Ok(auth_time) => auth_time,
            Err(error) => return Ok(Err(error)),
        };
        if request
            .required_loa
            .is_some_and(|required| identity.loa < required)
        {
            return Ok(Err(OAuthError::new(
                ErrorCode::UnmetAuthenticationRequirements,
                "the application requires a higher VNeID assurance level",
            )));
        }
        let app_link = self.app_link(pending).await?;
        let outcome = p
            .accounts
            .complete_login(
                &identity,
                self.account_policy(pending),
                app_link.as_ref().map(|(s, id)| AppLink {
                    source: s,
                    legacy_id: id,
                }),
                now,
            )
            .await?;
        self.after_resolution(
            pending,
            identity,
            auth_time,
            outcome,
            previous_secret,
            answering,
            now,
        )
        .await
    }

    /// The legacy account the client's backend asked to link (through PAR), with the client's
    /// legacy source.
    async fn app_link(&self, pending: &PendingLogin) -> anyhow::Result<Option<(String, String)>> {
        let Some(legacy_id) = &pending.request.legacy_account else {
            return Ok(None);
        };
        // The request was checked against the registration when it was pushed; a client that
        // lost its source since then asks for nothing.
        let client = self
            .provider
            .clients
            .get(&pending.request.client_id)
            .await?;
        Ok(client
            .as_deref()
            .and_then(|c| c.metadata.legacy_source())
            .map(|source| (source.to_string(), legacy_id.clone())))
    }

    /// The account is known: the client's subject requirement, the SSO session, the code.
    pub(super) async fn start_session(
        &self,
        pending: &PendingLogin,
        identity: &UpstreamIdentity,
        auth_time: Option<i64>,
        account: &Account,
        previous_secret: Option<&str>,
        now: i64,
    ) -> Result<Result<Next, OAuthError>, FlowError> {
        let p = self.provider;
        let request = &pending.request;
        // OIDC Core §5.5.1: never a token for another person than the one the RP required. No
        // SSO session starts either: the RP did not accept this person.
        if request.subject.as_ref().is_some_and(|s| *s != account.id) {
            return Ok(Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "a different person logged in than the one the application requires",
            )));
        }
        let sid = self
            .replace_previous_session(previous_secret, &account.id, now)
            .await?;
        let session = SsoSession {
            sid,
            account_id: account.id.clone(),
            auth_time,
            loa: identity.loa,
            amr: vec!["fed".into()],
            upstream: self
                .upstream_of(pending)
                .map(|u| u.profile.name.clone())
                .unwrap_or_default(),
            device_id: request.device_id.clone(),
        };
        // SQL first: a session the store knows is always one SQL can end.
        p.session_records
            .record_start(&SessionRecord {
                sid: session.sid.clone(),
                account_id: account.id.clone(),
                client_id: request.client_id.clone(),
                device_class: if request.device_id.is_some() {
                    "mobile"
                } else {
                    "web"
                }
                .into(),
                device_group: request.device_group.clone(),
                device_id: request.device_id.clone(),
                user_agent: pending.seen_from.user_agent.clone(),
                address: pending.seen_from.address.clone(),
                started_at: now,
                ended_at: None,
                end_reason: None,
            })
            .await?;
        let secret = p.sso.start(&session).await?;
        let next = match self.issue_code(request, &session, now).await {
            Next::ToClient { redirect, .. } => Next::ToClient {
                redirect,
                session: Some(BrowserCookie {
                    name: SSO_COOKIE.to_string(),
                    value: secret,
                    max_age: p.sso.ttl().as_secs() as i64,
                }),
            },
            other => other,
        };
        Ok(Ok(next))
    }

    /// The session this browser had before this login is replaced, never left behind: the
    /// same person keeps its `sid` (what was issued under it stays under the session a later
    /// logout ends); another person's session is ended with everything issued under it (one
    /// browser, one person). Returns the new session's `sid`.
    async fn replace_previous_session(
        &self,
        previous_secret: Option<&str>,
        account_id: &str,
        now: i64,
    ) -> anyhow::Result<String> {
        let p = self.provider;
        let previous = match previous_secret {
            Some(secret) => p.live_sso(secret).await?.map(|s| (secret, s)),
            None => None,
        };
        match previous {
            Some((secret, old)) if old.account_id == account_id => {
                p.sso.end(secret).await?;
                Ok(old.sid)
            }
            Some((secret, _)) => {
                super::logout::end_session(p, secret, now).await?;
                Ok(uuid::Uuid::new_v4().to_string())
            }
            None => Ok(uuid::Uuid::new_v4().to_string()),
        }
    }

    /// When the person authenticated, as far as the broker can vouch for it, or the error for
    /// the RP when the upstream's answer does not meet the request.
    ///
    /// The upstream's `auth_time` is believed (never later than now). Without one, the callback
    /// time stands only if the broker asked for a fresh login (`prompt=login`); otherwise the
    /// time is unknown, and an unknown time never satisfies a `max_age`.
    fn authentication_time(
        &self,
        pending: &PendingLogin,
        upstream_auth_time: Option<i64>,
        now: i64,
    ) -> Result<Option<i64>, OAuthError> {
        let request = &pending.request;
        let skew = self
            .upstream_of(pending)
            .map_or(60, |u| u.profile.clock_skew_secs) as i64;
        let auth_time = match upstream_auth_time {
            Some(t) => Some(t.min(now)),
            None if pending.forced_login => Some(now),
            None => None,
        };
        if pending.forced_login && auth_time.is_some_and(|t| t + skew < pending.created_at) {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "the identity provider did not authenticate the user again",
            ));
        }
        if request.auth_time_required && auth_time.is_none() {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "the identity provider did not report when the user authenticated",
            ));
        }
        if let Some(max_age) = request.max_age {
            if auth_time.is_none_or(|t| now - t > max_age.saturating_add(skew)) {
                return Err(OAuthError::new(
                    ErrorCode::LoginRequired,
                    "the identity provider did not confirm a recent enough authentication",
                ));
            }
        }
        Ok(auth_time)
    }
}
