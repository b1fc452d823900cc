//! Starting a login: validate the authorization request, answer from the SSO session when it
//! fits, or store a pending login and send the person to the upstream.

use super::{BrowserCookie, FlowError, LoginFlow, Next};
use crate::abuse::ClientKey;
use crate::federation::pending::{cookie_name as binding_cookie_name, PendingChoice, UnknownLogin};
use crate::federation::upstream::{Upstream, UpstreamError, UpstreamHints};
use crate::oidc::authorize::{self, AuthorizeError, AuthorizeRequest, RequestOrigin};
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::oidc::par::{unusable_request_uri, REQUEST_URI_PREFIX};
use crate::oidc::params::Params;

/// The name of a choice's binding cookie (before any `__Host-`); it shares the pending logins'
/// prefix, so the cap on a browser's binding cookies counts it too.
pub fn choice_cookie(choice_id: &str) -> String {
    binding_cookie_name(&format!("choice:{choice_id}"))
}

/// What the browser brought along with the request's parameters.
pub struct Browser<'r> {
    /// The SSO cookie's secret, if any.
    pub sso_secret: Option<&'r str>,
    /// Who the request counts against for the login budget.
    pub client: Option<ClientKey>,
    /// Its `User-Agent`, for the session record.
    pub user_agent: Option<&'r str>,
}

/// The parameters an authorization request stands for: its own, or, given a `request_uri` of
/// this broker, those its client pushed (RFC 9126 §4: the others are then ignored).
#[derive(Debug)]
pub struct Resolved {
    pub params: Params,
    pub origin: RequestOrigin,
}

impl<'a> LoginFlow<'a> {
    /// Takes a pushed request back (once) when the request names one.
    pub async fn resolve(&self, params: Params, now: i64) -> Result<Resolved, FlowError> {
        let p = self.provider;
        let pushed_uri = params
            .get("request_uri")
            .filter(|uri| uri.starts_with(REQUEST_URI_PREFIX));
        let Some(uri) = pushed_uri else {
            return Ok(Resolved {
                origin: RequestOrigin::Browser {
                    par_required: p.require_pushed_requests,
                },
                params,
            });
        };
        let Some(client_id) = params.get("client_id") else {
            return Err(FlowError::BadRequest(OAuthError::invalid_request(
                "client_id is required with request_uri",
            )));
        };
        // No redirect: until the pushed request is found, its redirect URI is not known.
        match p.pushed.take(client_id, uri, now).await? {
            Some(pushed) => Ok(Resolved {
                params: pushed,
                origin: RequestOrigin::Pushed,
            }),
            None => Err(FlowError::BadRequest(unusable_request_uri())),
        }
    }

    /// `GET`/`POST /authorize` with its resolved parameters.
    pub async fn authorize(
        &self,
        request: &Resolved,
        browser: Browser<'_>,
        now: i64,
    ) -> Result<Next, FlowError> {
        let p = self.provider;
        let params = &request.params;
        let client_id = params.get("client_id");
        let client = p.clients.get(client_id.unwrap_or_default()).await?;
        let parsed =
            authorize::check_client(client.as_deref(), params).and_then(
                |redirect_uri| match &client {
                    Some(c) => authorize::parse(c, redirect_uri, params, &p.acr, request.origin),
                    None => Err(AuthorizeError::Page(OAuthError::invalid_client())),
                },
            );
        let request = match parsed {
            Ok(request) => request,
            Err(AuthorizeError::Page(e)) => return Err(FlowError::BadRequest(e)),
            Err(AuthorizeError::Redirect {
                redirect_uri,
                state,
                error,
            }) => return Ok(self.to_client(&redirect_uri, state.as_deref(), Err(error))),
        };
        let fail = |error: OAuthError| {
            self.to_client(&request.redirect_uri, request.state.as_deref(), Err(error))
        };
        if let Err(error) = authorize::check_idp_hint(&request, &p.upstream_names) {
            return Ok(fail(error));
        }
        // OIDC Core §3.1.2.1: the hint names who the RP expects; it must be our ID token for
        // this client (expired is fine), and a session of someone else cannot answer.
        let hinted_subject = match params.get("id_token_hint") {
            Some(token) => match self.hint_subject(token, &request.client_id, now) {
                Some(sub) => Some(sub),
                None => {
                    return Ok(fail(OAuthError::invalid_request(
                        "id_token_hint is not a valid ID token of this broker for this client",
                    )))
                }
            },
            None => None,
        };
        let session = match browser.sso_secret {
            Some(secret) => p.live_sso(secret).await.unwrap_or_else(|e| {
                tracing::error!(error = format!("{e:#}"), "session store failure");
                None
            }),
            None => None,
        };
        // Neither a hinted person nor one the `claims` parameter requires may be replaced by
        // the person who happens to be logged in.
        // Linking the app's own legacy account needs the person's VNeID login now, not a
        // session that may be someone else's on a shared device.
        let session = session.filter(|_| request.legacy_account.is_none());
        // A mobile app's request is answered only by a session its own device started: not by
        // another device's, nor by one a web login started in the phone's browser (an evicted
        // phone would otherwise take the slot back without a new VNeID login).
        let session =
            session.filter(|s| request.device_id.is_none() || s.device_id == request.device_id);
        // An RP that names an upstream (a test gateway's RP, say) is answered only by a session
        // that upstream started.
        let session = session.filter(|s| {
            request
                .idp_hint
                .as_ref()
                .is_none_or(|hint| *hint == s.upstream)
        });
        let session = session.filter(|s| {
            [hinted_subject.as_deref(), request.subject.as_deref()]
                .into_iter()
                .flatten()
                .all(|sub| sub == s.account_id)
        });
        if let Some(session) =
            session.filter(|s| authorize::session_satisfies(&request, s.auth_time, s.loa, now))
        {
            return Ok(self.issue_code(&request, &session, now).await);
        }
        if request.prompt_none {
            return Ok(fail(OAuthError::new(
                ErrorCode::LoginRequired,
                "the user must log in",
            )));
        }
        let seen_from = crate::sessions::records::SeenFrom::new(
            browser.user_agent,
            browser.client.as_ref().map(ClientKey::ip),
        );
        let upstream = match request.idp_hint.as_deref() {
            Some(name) => self.upstreams.get(name),
            None => self.upstreams.only(),
        };
        match upstream {
            Some(upstream) => {
                self.start_upstream_login(upstream, request, browser.client, seen_from, now)
                    .await
            }
            None => {
                self.offer_choice(request, browser.client, seen_from, now)
                    .await
            }
        }
    }

    /// Several upstreams and no `idp_hint`: the request waits for the person's choice.
    async fn offer_choice(
        &self,
        request: AuthorizeRequest,
        client: Option<ClientKey>,
        seen_from: crate::sessions::records::SeenFrom,
        now: i64,
    ) -> Result<Next, FlowError> {
        self.budget.admit(client, now).map_err(FlowError::Busy)?;
        let offered = self
            .pending
            .offer_choice(&PendingChoice {
                request,
                seen_from,
                created_at: now,
            })
            .await
            .inspect_err(|_| self.budget.finished(now))?;
        Ok(Next::Choose {
            binding: BrowserCookie {
                name: choice_cookie(&offered.interaction_id),
                value: offered.browser_secret,
                max_age: self.pending.ttl().as_secs() as i64,
            },
            id: offered.interaction_id,
        })
    }

    /// The person chose the upstream `name` on the login page: the waiting request starts a
    /// pending login bound to that upstream.
    pub async fn choose(
        &self,
        choice_id: &str,
        binding_secret: Option<&str>,
        name: &str,
        client: Option<ClientKey>,
        now: i64,
    ) -> Result<Next, FlowError> {
        let Some(upstream) = self.upstreams.get(name) else {
            return Err(FlowError::BadRequest(OAuthError::invalid_request(
                "no such identity provider",
            )));
        };
        let choice = match self.pending.choice(choice_id, binding_secret).await? {
            Ok(choice) => choice,
            Err(UnknownLogin) => return Err(FlowError::UnknownLogin),
        };
        self.start_upstream_login(upstream, choice.request, client, choice.seen_from, now)
            .await
    }

    /// The subject of a valid `id_token_hint` issued by this broker to `client_id`.
    fn hint_subject(&self, token: &str, client_id: &str, now: i64) -> Option<String> {
        let claims = super::verify_id_token_hint(self.provider, token, now)?;
        let aud_matches = match claims.get("aud")? {
            serde_json::Value::String(a) => a == client_id,
            serde_json::Value::Array(list) => list.iter().any(|a| a.as_str() == Some(client_id)),
            _ => false,
        };
        aud_matches.then(|| claims.get("sub")?.as_str().map(str::to_string))?
    }

    async fn start_upstream_login(
        &self,
        upstream: &Upstream,
        request: AuthorizeRequest,
        client: Option<ClientKey>,
        seen_from: crate::sessions::records::SeenFrom,
        now: i64,
    ) -> Result<Next, FlowError> {
        let profile = &upstream.profile;
        // VNeID is interrupted: say so at once, before anything is stored or budgeted.
        if let Err(UpstreamError::Down { retry_after }) = upstream.available() {
            return Err(FlowError::UpstreamDown { retry_after });
        }
        self.budget.admit(client, now).map_err(FlowError::Busy)?;
        // The upstream must tell when the person authenticated: max_age makes VNeID send
        // auth_time (OIDC Core §3.1.2.1). An upstream known not to send it is asked for a fresh
        // login whenever the RP bounds the age, so that the callback time is the time.
        let max_age = request
            .max_age
            .unwrap_or(self.provider.sso.ttl().as_secs() as i64);
        let bounds_time = request.max_age.is_some() || request.auth_time_required;
        let force_login = request.prompt_login || (bounds_time && !profile.sends_auth_time);
        let (login_hint, ui_locales) = (request.login_hint.clone(), request.ui_locales.clone());
        let required_loa = request.required_loa;
        let started = match self
            .pending
            .start(profile, request, force_login, seen_from, now)
            .await
        {
            Ok(started) => started,
            Err(e) => {
                self.budget.finished(now);
                return Err(FlowError::Unavailable(e));
            }
        };
        let url = upstream
            .authorization_url(
                &started.state,
                started.nonce.as_deref(),
                started.pkce_verifier.as_deref(),
                &UpstreamHints {
                    login_hint: login_hint.as_deref(),
                    ui_locales: ui_locales.as_deref(),
                    force_login,
                    max_age: Some(max_age),
                    required_loa,
                },
            )
            .await
            .map_err(|e| {
                // The stored pending login can never be used: it must not hold a budget place.
                self.budget.finished(now);
                match e {
                    UpstreamError::Down { retry_after } => FlowError::UpstreamDown { retry_after },
                    e => {
                        tracing::warn!(
                            error = format!("{e:#}"),
                            "the upstream's metadata is unavailable"
                        );
                        FlowError::UpstreamDown {
                            retry_after: profile.breaker_open_secs.max(1),
                        }
                    }
                }
            })?;
        Ok(Next::Upstream {
            url,
            binding: BrowserCookie {
                name: binding_cookie_name(&started.state),
                value: started.browser_secret,
                max_age: self.pending.ttl().as_secs() as i64,
            },
        })
    }
}
