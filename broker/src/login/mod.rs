//! The login as a sequence of steps, free of actix: starting it (`authorize`), completing it
//! after the upstream's callback (`callback`), issuing the code (`code`), and ending a session
//! (`logout`). Each entry point returns a [`Next`]: what the browser must do next. The HTTP
//! handlers only translate it.
//!
//! ```text
//! /authorize ─► validate ─► SSO session fits? ──yes──────────────────────────────► code ─► client
//!                              │ no
//!                              ▼
//!                   budget ─► pending login (state, nonce, PKCE, binding cookie) ─► upstream
//! /callback  ─► budget ─► take pending ─► iss ─► code exchange + ID token ─► auth_time
//!                 ─► steps: level ─► account resolution ─► [failure page, phone, code]
//!                 ─► SSO session ─► code ─► client
//! ```
//!
//! A step that needs the person (the phone, the one-time code, the failure page: see
//! `standardise`) stops the flow with [`Next::Interaction`] after `PendingLogins::suspend` has
//! stored the login (sealed, bound to the browser) under the interaction's id.

pub mod authorize;
pub mod callback;
mod code;
pub mod logout;
pub mod standardise;

use crate::abuse::{LoginBudget, Refusal};
use crate::federation::pending::PendingLogin;
use crate::federation::pending::PendingLogins;
use crate::federation::upstream::Upstream;
use crate::federation::upstreams::Upstreams;
use crate::oidc::error::OAuthError;
use crate::oidc::Provider;

/// What the login needs; borrowed from the application state for one request.
pub struct LoginFlow<'a> {
    pub provider: &'a Provider,
    pub upstreams: &'a Upstreams,
    pub pending: &'a PendingLogins,
    pub budget: &'a LoginBudget,
    pub otp: &'a crate::otp::Otp,
}

/// The authorization response to send the browser back with (RFC 6749 §4.1.2, RFC 9207).
#[derive(Clone, Debug)]
pub struct ClientRedirect {
    pub redirect_uri: String,
    pub state: Option<String>,
    pub issuer: String,
    pub result: Result<String, OAuthError>,
}

/// A cookie the browser must hold; `name` is before any `__Host-` prefix.
#[derive(Debug)]
pub struct BrowserCookie {
    pub name: String,
    pub value: String,
    pub max_age: i64,
}

/// What the browser does next.
#[derive(Debug)]
pub enum Next {
    /// Back to the client with a code or an error; `session` is a new SSO session's cookie.
    ToClient {
        redirect: ClientRedirect,
        session: Option<BrowserCookie>,
    },
    /// To the upstream (through the login page), holding the pending login's binding cookie.
    Upstream {
        url: url::Url,
        binding: BrowserCookie,
    },
    /// To the login page's choice of upstream (several are enabled and the RP named none),
    /// holding the choice's binding cookie; each button leads to [`LoginFlow::choose`].
    Choose { id: String, binding: BrowserCookie },
    /// To the page of an interaction (its step is in the suspended login), holding its binding
    /// cookie when the interaction is new.
    Interaction(Interaction),
}

#[derive(Debug)]
pub struct Interaction {
    pub id: String,
    pub binding: Option<BrowserCookie>,
    /// The page itself, when the step that got here has it at hand (the code page after the
    /// code was sent): answered at once instead of a redirect to it.
    pub view: Option<standardise::StepView>,
}

/// Why the flow could not go on. None of these is sent back to the client: the request is
/// not (or no longer) known to be the client's.
#[derive(Debug)]
pub enum FlowError {
    /// The client's request is invalid before its redirect URI is trusted.
    BadRequest(OAuthError),
    /// A login budget is spent.
    Busy(Refusal),
    /// No such pending login: expired, used, or started in another browser.
    UnknownLogin,
    /// The upstream's answer failed verification (or named another issuer).
    UpstreamRefused,
    /// The upstream identity provider is not answering (timeouts, refused connections, or
    /// its circuit breaker is open); `retry_after` in seconds.
    UpstreamDown { retry_after: u64 },
    /// A backend failed.
    Unavailable(anyhow::Error),
}

impl From<anyhow::Error> for FlowError {
    fn from(error: anyhow::Error) -> Self {
        FlowError::Unavailable(error)
    }
}

impl<'a> LoginFlow<'a> {
    /// The upstream a pending login went to: the one it names, or, for a login stored before
    /// it named one, the first.
    fn upstream_of(&self, pending: &PendingLogin) -> Option<&'a Upstream> {
        match pending.upstream.as_deref() {
            Some(name) => self.upstreams.get(name).map(|u| &**u),
            None => Some(&**self.upstreams.first()),
        }
    }

    /// The account policy of the upstream a pending login went to. An upstream no longer
    /// configured is refused at its callback before this is asked; should it get here, it is
    /// given the narrowest policy that still lets an identity it linked before in (it creates
    /// nothing and never takes the phone step).
    fn account_policy(&self, pending: &PendingLogin) -> crate::accounts::AccountPolicy {
        self.upstream_of(pending)
            .map(|u| u.profile.accounts)
            .unwrap_or(crate::accounts::AccountPolicy::LinkOnly)
    }

    fn to_client(
        &self,
        redirect_uri: &str,
        state: Option<&str>,
        result: Result<String, OAuthError>,
    ) -> Next {
        Next::ToClient {
            redirect: ClientRedirect {
                redirect_uri: redirect_uri.to_string(),
                state: state.map(str::to_string),
                issuer: self.provider.issuer.to_string(),
                result,
            },
            session: None,
        }
    }
}

/// The claims of an `id_token_hint`: an ID token this broker signed (expired is fine, OIDC Core
/// §3.1.2.1 and RP-Initiated Logout §2), or `None`.
fn verify_id_token_hint(provider: &Provider, token: &str, now: i64) -> Option<serde_json::Value> {
    provider
        .signer
        .verify::<serde_json::Value>(token, "JWT", now, false)
        .ok()
}
