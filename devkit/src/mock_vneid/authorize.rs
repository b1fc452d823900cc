//! The authorization endpoint's protocol logic: checking the request, picking the citizen and
//! issuing the code. Knows nothing of actix; `http.rs` turns outcomes into responses.

use url::Url;

use super::citizens::{self, Citizen};
use super::grants::CodeGrant;
use super::id_token::Tamper;
use super::Inner;
use crate::params::Params;

/// `login_hint` value (and chooser button) that makes the mock answer `error=access_denied`, as
/// VNeID does when the citizen cancels in the app.
pub(crate) const DENY_HINT: &str = "access_denied";

/// A request whose client and redirect URI are trusted and whose parameters are valid.
#[derive(Clone, Debug)]
pub(crate) struct ValidRequest {
    pub(crate) client_id: String,
    pub(crate) redirect_uri: String,
    pub(crate) scope: String,
    pub(crate) state: Option<String>,
    pub(crate) nonce: Option<String>,
    pub(crate) code_challenge: Option<String>,
    pub(crate) login_hint: Option<String>,
    pub(crate) acr_values: Option<String>,
}

impl ValidRequest {
    /// The request parameters to carry through the chooser page as hidden fields.
    pub(crate) fn hidden_fields(&self) -> Vec<(&'static str, String)> {
        let optional = [
            ("state", &self.state),
            ("nonce", &self.nonce),
            ("code_challenge", &self.code_challenge),
            ("acr_values", &self.acr_values),
        ];
        let mut fields = vec![
            ("response_type", "code".to_owned()),
            ("client_id", self.client_id.clone()),
            ("redirect_uri", self.redirect_uri.clone()),
            ("scope", self.scope.clone()),
        ];
        if self.code_challenge.is_some() {
            fields.push(("code_challenge_method", "S256".to_owned()));
        }
        fields.extend(
            optional
                .into_iter()
                .filter_map(|(name, value)| value.clone().map(|v| (name, v))),
        );
        fields
    }
}

pub(crate) enum AuthorizeOutcome {
    /// The client or redirect URI cannot be trusted: show an error page and never redirect
    /// (RFC 6749 §4.1.2.1), or the redirect would deliver the code to an attacker.
    Reject(String),
    /// Back to the client, with a code or an error.
    Redirect(Url),
    /// No citizen chosen yet: let the tester pick one.
    Choose(Box<ValidRequest>),
}

/// `GET /authorize`: a `login_hint` naming a test case or subject answers at once (for tests and
/// the load driver); anything else shows the chooser.
pub(crate) fn start(inner: &Inner, params: &Params, now: u64) -> anyhow::Result<AuthorizeOutcome> {
    let request = match validate(inner, params) {
        Ok(request) => request,
        Err(outcome) => return Ok(outcome),
    };
    match request.login_hint.as_deref() {
        Some(DENY_HINT) => Ok(deny(inner, &request)),
        Some(hint) => match citizens::find(&inner.citizens, hint) {
            Some(citizen) => issue(inner, &request, citizen, now),
            None => Ok(AuthorizeOutcome::Choose(Box::new(request))),
        },
        None => Ok(AuthorizeOutcome::Choose(Box::new(request))),
    }
}

/// `POST /authorize/choose`: the tester's pick. The form comes from a browser, so the request is
/// validated again from scratch.
pub(crate) fn choose(inner: &Inner, params: &Params, now: u64) -> anyhow::Result<AuthorizeOutcome> {
    let request = match validate(inner, params) {
        Ok(request) => request,
        Err(outcome) => return Ok(outcome),
    };
    let pick = params.get("citizen").unwrap_or(DENY_HINT);
    if pick == DENY_HINT {
        return Ok(deny(inner, &request));
    }
    match citizens::find(&inner.citizens, pick) {
        Some(citizen) => issue(inner, &request, citizen, now),
        None => Ok(AuthorizeOutcome::Reject(format!(
            "Unknown test citizen `{pick}`."
        ))),
    }
}

fn validate(inner: &Inner, params: &Params) -> Result<ValidRequest, AuthorizeOutcome> {
    let client_id = params.get("client_id").unwrap_or_default();
    let redirect_uri = params.get("redirect_uri").unwrap_or_default();
    let trusted = inner
        .client(client_id)
        .is_some_and(|c| c.redirect_uris.iter().any(|r| r == redirect_uri));
    if !trusted {
        return Err(AuthorizeOutcome::Reject(
            "Unknown client_id, or redirect_uri not registered for it.".into(),
        ));
    }
    let Ok(redirect_url) = Url::parse(redirect_uri) else {
        return Err(AuthorizeOutcome::Reject(
            "Registered redirect_uri is not a URL.".into(),
        ));
    };
    let state = params.owned("state");
    let fail = |error: &str, description: &str| {
        AuthorizeOutcome::Redirect(error_redirect(
            &redirect_url,
            &inner.issuer,
            error,
            description,
            &state,
        ))
    };
    if params.get("response_type") != Some("code") {
        return Err(fail("unsupported_response_type", "only response_type=code"));
    }
    let scope = params.owned("scope").unwrap_or_default();
    if !scope.split(' ').any(|s| s == "openid") {
        return Err(fail("invalid_scope", "scope must include openid"));
    }
    let code_challenge = params.owned("code_challenge");
    match (
        code_challenge.as_deref(),
        params.get("code_challenge_method"),
    ) {
        (None, None) => {}
        (Some(challenge), Some("S256")) if is_pkce_value(challenge) => {}
        (Some(_), Some("S256")) => return Err(fail("invalid_request", "malformed code_challenge")),
        // RFC 7636 §4.3: a missing method means `plain`, which we, like VNeID, do not offer.
        _ => {
            return Err(fail(
                "invalid_request",
                "code_challenge_method must be S256",
            ))
        }
    }
    // The national portal (variant B) is always asked for a level.
    if inner.variant() == super::Variant::B
        && !matches!(params.get("acr_values"), Some("LoA1" | "LoA2"))
    {
        return Err(fail("invalid_request", "acr_values must be LoA1 or LoA2"));
    }
    Ok(ValidRequest {
        client_id: client_id.to_owned(),
        redirect_uri: redirect_uri.to_owned(),
        scope,
        state,
        nonce: params.owned("nonce"),
        code_challenge,
        login_hint: params.owned("login_hint"),
        acr_values: params.owned("acr_values"),
    })
}

/// RFC 7636 §4.1: 43 to 128 characters from the unreserved set.
pub(crate) fn is_pkce_value(value: &str) -> bool {
    (43..=128).contains(&value.len())
        && value
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-._~".contains(&b))
}

fn issue(
    inner: &Inner,
    request: &ValidRequest,
    citizen: Citizen,
    now: u64,
) -> anyhow::Result<AuthorizeOutcome> {
    // Variant B: a level-1 citizen cannot satisfy LoA2.
    if inner.variant() == super::Variant::B
        && request.acr_values.as_deref() == Some("LoA2")
        && citizen.level() != "2"
    {
        let url = Url::parse(&request.redirect_uri)?;
        return Ok(AuthorizeOutcome::Redirect(error_redirect(
            &url,
            &inner.issuer,
            "access_denied",
            "the citizen's account does not reach LoA2",
            &request.state,
        )));
    }
    let grant = CodeGrant {
        client_id: request.client_id.clone(),
        redirect_uri: request.redirect_uri.clone(),
        scope: request.scope.clone(),
        nonce: request.nonce.clone(),
        code_challenge: request.code_challenge.clone(),
        citizen,
        auth_time: now,
    };
    let code = inner.grants.issue_code(grant, now)?;
    let mut url = Url::parse(&request.redirect_uri)?;
    url.query_pairs_mut().append_pair("code", &code);
    if let Some(state) = &request.state {
        url.query_pairs_mut().append_pair("state", state);
    }
    // RFC 9207: the issuer in the authorization response, as discovery promises.
    match inner.tamper() {
        Tamper::CallbackNoIss => {}
        Tamper::CallbackWrongIss => {
            url.query_pairs_mut()
                .append_pair("iss", "http://wrong-issuer.invalid");
        }
        _ => {
            url.query_pairs_mut().append_pair("iss", &inner.issuer);
        }
    }
    Ok(AuthorizeOutcome::Redirect(url))
}

fn deny(inner: &Inner, request: &ValidRequest) -> AuthorizeOutcome {
    match Url::parse(&request.redirect_uri) {
        Ok(url) => AuthorizeOutcome::Redirect(error_redirect(
            &url,
            &inner.issuer,
            "access_denied",
            "the citizen cancelled the login",
            &request.state,
        )),
        Err(_) => AuthorizeOutcome::Reject("Registered redirect_uri is not a URL.".into()),
    }
}

fn error_redirect(
    base: &Url,
    issuer: &str,
    error: &str,
    description: &str,
    state: &Option<String>,
) -> Url {
    let mut url = base.clone();
    url.query_pairs_mut()
        .append_pair("error", error)
        .append_pair("error_description", description);
    if let Some(state) = state {
        url.query_pairs_mut().append_pair("state", state);
    }
    url.query_pairs_mut().append_pair("iss", issuer);
    url
}
