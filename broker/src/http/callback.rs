//! The upstream callback `/callback/{upstream}`: finish the pending login, verify the upstream,
//! resolve the account, start the SSO session, and send a code to the client.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use actix_web::middleware::from_fn;

use super::authorize::issue_code;
use super::front::{
    bad_request_page, cookie, cookie_name, redirect_to_client, too_many_logins_page,
    unavailable_page, wants_english,
};
use super::limits::rate_limit;
use super::pages::error_page;
use super::Broker;
use crate::accounts::login::LoginOutcome;
use crate::federation::pending::{cookie_name as pending_cookie_name, PendingLogin, UnknownLogin};
use crate::federation::upstream::UpstreamError;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::sessions::sso::{SsoSession, COOKIE as SSO_COOKIE};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(
        web::resource("/callback/{upstream}")
            .wrap(from_fn(rate_limit))
            .route(web::get().to(callback_get)),
    );
}

/// Reads the raw query without turning `+` into a space: some upstreams put `+` in codes.
fn raw_query_param(query: &str, name: &str) -> Option<String> {
    query.split('&').find_map(|pair| {
        let (k, v) = pair.split_once('=').unwrap_or((pair, ""));
        (k == name).then(|| {
            percent_encoding::percent_decode_str(v)
                .decode_utf8_lossy()
                .into_owned()
        })
    })
}

async fn callback_get(
    broker: web::Data<Broker>,
    req: HttpRequest,
    path: web::Path<String>,
) -> HttpResponse {
    let p = &broker.provider;
    if path.as_str() != broker.upstream.profile.name {
        return HttpResponse::NotFound().finish();
    }
    let english = wants_english(&req, None);
    let query = req.query_string();
    if query.len() > 8192 {
        return bad_request_page(&OAuthError::invalid_request("callback too large"), english);
    }
    let now = p.now();
    let client = broker.limits.client_key(&req);
    if let Err(refusal) = broker.budget.may_exchange(client, now) {
        return too_many_logins_page(refusal, english);
    }
    let state = raw_query_param(query, "state").unwrap_or_default();
    let binding_name = cookie_name(&broker, &pending_cookie_name(&state));
    let browser = req.cookie(&binding_name).map(|c| c.value().to_string());
    let pending = match broker.pending.finish(&state, browser.as_deref()).await {
        Ok(Ok(pending)) => pending,
        Ok(Err(UnknownLogin)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                english,
                "invalid_request",
                "Phiên đăng nhập đã hết hạn, đã được dùng, hoặc được bắt đầu trên trình duyệt khác. Vui lòng đăng nhập lại từ ứng dụng.",
                "The sign-in has expired, was already used, or was started in another browser. Please sign in again from the application.",
            );
        }
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page(english);
        }
    };
    broker.budget.finished(pending.created_at, now);
    let mut response = finish_login(&broker, &req, query, pending, now).await;
    // The binding cookie has done its job, whatever the outcome.
    let mut removal = cookie(&broker, &pending_cookie_name(&state), String::new(), 0);
    removal.make_removal();
    let _ = response.add_cookie(&removal);
    response
}

/// Everything after the pending login was found: the upstream's answer, the checks on it, the
/// account, the SSO session and the code.
async fn finish_login(
    broker: &Broker,
    req: &HttpRequest,
    query: &str,
    pending: PendingLogin,
    now: i64,
) -> HttpResponse {
    let p = &broker.provider;
    let request = &pending.request;
    let english = request.english();
    let to_client = |error: OAuthError| {
        redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Err(&error),
        )
    };
    let client = broker.limits.client_key(req);
    // RFC 9207 §2.4: where the upstream promises `iss` in its responses, a missing or wrong one
    // is a mix-up (the answer came from another provider) and is refused before anything else.
    match broker
        .upstream
        .check_response_issuer(raw_query_param(query, "iss").as_deref())
        .await
    {
        Ok(()) => {}
        Err(UpstreamError::Unavailable(e)) => {
            tracing::error!(error = format!("{e:#}"), "upstream unavailable");
            return unavailable_page(english);
        }
        Err(e) => {
            broker.budget.upstream_failed(client, now);
            tracing::warn!(error = %e, "upstream response refused");
            return refused_page(english);
        }
    }
    if raw_query_param(query, "error").is_some() {
        return to_client(OAuthError::new(
            ErrorCode::AccessDenied,
            "the user did not complete the VNeID login",
        ));
    }
    let Some(code) = raw_query_param(query, "code").filter(|c| !c.is_empty()) else {
        return bad_request_page(
            &OAuthError::invalid_request("the identity provider sent no code"),
            english,
        );
    };
    let identity = match broker
        .upstream
        .complete(
            &code,
            pending.nonce.as_deref(),
            pending.pkce_verifier.as_deref(),
            now,
        )
        .await
    {
        Ok(identity) => identity,
        Err(UpstreamError::Unavailable(e)) => {
            tracing::error!(error = format!("{e:#}"), "upstream unavailable");
            return unavailable_page(english);
        }
        Err(e) => {
            broker.budget.upstream_failed(client, now);
            tracing::warn!(error = %e, "upstream login refused");
            return refused_page(english);
        }
    };
    let auth_time = match authentication_time(broker, &pending, identity.auth_time, now) {
        Ok(auth_time) => auth_time,
        Err(error) => return to_client(error),
    };
    if request
        .required_loa
        .is_some_and(|required| identity.loa < required)
    {
        return to_client(OAuthError::new(
            ErrorCode::UnmetAuthenticationRequirements,
            "the application requires a higher VNeID assurance level",
        ));
    }
    let account = match p.accounts.complete_login(&identity, now).await {
        Ok(LoginOutcome::Authenticated { account, .. }) => account,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page(english);
        }
    };
    // OIDC Core §5.5.1: never a token for another person than the one the RP required. No SSO
    // session starts either: the RP did not accept this person.
    if request.subject.as_ref().is_some_and(|s| *s != account.id) {
        return to_client(OAuthError::new(
            ErrorCode::LoginRequired,
            "a different person logged in than the one the application requires",
        ));
    }
    let session = SsoSession {
        sid: uuid::Uuid::new_v4().to_string(),
        account_id: account.id.clone(),
        auth_time,
        loa: identity.loa,
        amr: vec!["fed".into()],
        upstream: broker.upstream.profile.name.clone(),
    };
    let secret = match p.sso.start(&session).await {
        Ok(secret) => secret,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page(english);
        }
    };
    let mut response = issue_code(broker, request, &session, now).await;
    let _ = response.add_cookie(&cookie(
        broker,
        SSO_COOKIE,
        secret,
        p.sso.ttl().as_secs() as i64,
    ));
    response
}

/// When the person authenticated, as far as the broker can vouch for it, or the error for the
/// RP when the upstream's answer does not meet the request.
///
/// The upstream's `auth_time` is believed (never later than now). Without one, the callback
/// time stands only if the broker asked for a fresh login (`prompt=login`); otherwise the time
/// is unknown, and an unknown time never satisfies a `max_age`.
fn authentication_time(
    broker: &Broker,
    pending: &PendingLogin,
    upstream_auth_time: Option<i64>,
    now: i64,
) -> Result<Option<i64>, OAuthError> {
    let request = &pending.request;
    let skew = broker.upstream.profile.clock_skew_secs as i64;
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
    if let Some(max_age) = request.max_age {
        if auth_time.is_none_or(|t| now - t > max_age + skew) {
            return Err(OAuthError::new(
                ErrorCode::LoginRequired,
                "the identity provider did not confirm a recent enough authentication",
            ));
        }
    }
    Ok(auth_time)
}

fn refused_page(english: bool) -> HttpResponse {
    error_page(
        StatusCode::BAD_REQUEST,
        english,
        "access_denied",
        "Không xác minh được thông tin đăng nhập từ VNeID. Vui lòng thử lại.",
        "The VNeID login could not be verified. Please try again.",
    )
}
