//! The upstream callback `/callback/{upstream}`: finish the pending login, verify the upstream,
//! resolve the account, start the SSO session, and send a code to the client.

use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};

use super::authorize::issue_code;
use super::front::{bad_request_page, cookie, redirect_to_client, unavailable_page};
use super::pages::error_page;
use super::Broker;
use crate::accounts::login::LoginOutcome;
use crate::federation::pending::{UnknownLogin, COOKIE as PENDING_COOKIE};
use crate::federation::upstream::UpstreamError;
use crate::oidc::error::{ErrorCode, OAuthError};
use crate::sessions::sso::{SsoSession, COOKIE as SSO_COOKIE};

pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/callback/{upstream}", web::get().to(callback_get));
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
    let query = req.query_string();
    if query.len() > 8192 {
        return bad_request_page(&OAuthError::invalid_request("callback too large"));
    }
    let state = raw_query_param(query, "state").unwrap_or_default();
    let browser = req.cookie(PENDING_COOKIE).map(|c| c.value().to_string());
    let pending = match broker.pending.finish(&state, browser.as_deref()).await {
        Ok(Ok(pending)) => pending,
        Ok(Err(UnknownLogin)) => {
            return error_page(
                StatusCode::BAD_REQUEST,
                false,
                "invalid_request",
                "Phiên đăng nhập đã hết hạn, đã được dùng, hoặc được bắt đầu trên trình duyệt khác. Vui lòng đăng nhập lại từ ứng dụng.",
                "The sign-in has expired, was already used, or was started in another browser. Please sign in again from the application.",
            );
        }
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let request = &pending.request;
    let english = request.english();
    if raw_query_param(query, "error").is_some() {
        let error = OAuthError::new(
            ErrorCode::AccessDenied,
            "the user did not complete the VNeID login",
        );
        return redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Err(&error),
        );
    }
    let Some(code) = raw_query_param(query, "code").filter(|c| !c.is_empty()) else {
        return bad_request_page(&OAuthError::invalid_request(
            "the identity provider sent no code",
        ));
    };
    let now = p.now();
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
            return unavailable_page();
        }
        Err(e) => {
            tracing::warn!(error = %e, "upstream login refused");
            return error_page(
                StatusCode::BAD_REQUEST,
                english,
                "access_denied",
                "Không xác minh được thông tin đăng nhập từ VNeID. Vui lòng thử lại.",
                "The VNeID login could not be verified. Please try again.",
            );
        }
    };
    if request
        .required_loa
        .is_some_and(|required| identity.loa < required)
    {
        let error = OAuthError::new(
            ErrorCode::UnmetAuthenticationRequirements,
            "the application requires a higher VNeID assurance level",
        );
        return redirect_to_client(
            &request.redirect_uri,
            request.state.as_deref(),
            &p.issuer,
            Err(&error),
        );
    }
    let account = match p.accounts.complete_login(&identity, now).await {
        Ok(LoginOutcome::Authenticated { account, .. }) => account,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let session = SsoSession {
        sid: uuid::Uuid::new_v4().to_string(),
        account_id: account.id.clone(),
        // The upstream's own auth_time when it gives one (never later than now): the RP's
        // max_age and step-up checks must see when the person really authenticated.
        auth_time: identity.auth_time.map_or(now, |t| t.min(now)),
        loa: identity.loa,
        amr: vec!["fed".into()],
        upstream: broker.upstream.profile.name.clone(),
    };
    let secret = match p.sso.start(&session).await {
        Ok(secret) => secret,
        Err(e) => {
            let _ = OAuthError::unavailable(&e);
            return unavailable_page();
        }
    };
    let mut response = issue_code(&broker, request, &session, now).await;
    let _ = response.add_cookie(&cookie(
        &broker,
        SSO_COOKIE,
        secret,
        "/",
        p.sso.ttl().as_secs() as i64,
    ));
    response
}
