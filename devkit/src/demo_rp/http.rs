//! The demo app's routes: home page, `/login` and `/callback`.

use actix_web::cookie::{Cookie, SameSite};
use actix_web::http::header;
use actix_web::http::StatusCode;
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;

use super::oidc::{LoginError, RelyingParty};
use super::pages::{ErrorPage, HomePage, ResultPage};
use crate::params::Params;
use crate::util::unix_now;

/// Holds only a random transaction id; the PKCE verifier and nonce stay on the server.
const TX_COOKIE: &str = "demo_rp_tx";

type Rp = web::Data<RelyingParty>;

pub(super) fn configure(cfg: &mut web::ServiceConfig) {
    cfg.route("/", web::get().to(home_get))
        .route("/login", web::get().to(login_get))
        .route("/callback", web::get().to(callback_get));
}

async fn home_get() -> HttpResponse {
    html(StatusCode::OK, HomePage.render())
}

#[tracing::instrument(name = "demo_rp.login", skip_all)]
async fn login_get(rp: Rp) -> HttpResponse {
    match rp.begin(unix_now()).await {
        Ok((url, tx)) => HttpResponse::SeeOther()
            .insert_header((header::LOCATION, url.as_str()))
            .cookie(tx_cookie(&rp, tx))
            .finish(),
        Err(e) => login_failed(&e),
    }
}

#[tracing::instrument(name = "demo_rp.callback", skip_all)]
async fn callback_get(rp: Rp, req: HttpRequest) -> HttpResponse {
    let pending = req
        .cookie(TX_COOKIE)
        .and_then(|c| rp.transactions.take(c.value(), unix_now()));
    let result = match (pending, Params::parse(req.query_string().as_bytes())) {
        (None, _) => Err(LoginError::NoTransaction),
        (Some(_), Err(e)) => Err(LoginError::Internal(e.into())),
        (Some(pending), Ok(params)) => rp.finish(pending, &params).await,
    };
    let mut response = match result {
        Ok(login) => {
            let page = ResultPage {
                id_token_claims: pretty(&login.id_token_claims),
                userinfo: pretty(&login.userinfo),
            };
            html(StatusCode::OK, page.render())
        }
        Err(e) => login_failed(&e),
    };
    // The transaction is spent either way; drop the cookie pointing at it.
    let mut expired = tx_cookie(&rp, String::new());
    expired.make_removal();
    if let Err(e) = response.add_cookie(&expired) {
        tracing::warn!(error = %e, "could not clear the transaction cookie");
    }
    response
}

fn tx_cookie(rp: &RelyingParty, value: String) -> Cookie<'static> {
    Cookie::build(TX_COOKIE, value)
        .path("/")
        .http_only(true)
        .same_site(SameSite::Lax)
        .secure(rp.secure_cookies)
        .finish()
}

fn login_failed(e: &LoginError) -> HttpResponse {
    tracing::warn!(error = %e, "demo RP login failed");
    let status = match e {
        LoginError::Discovery(_) | LoginError::Exchange(_) | LoginError::UserInfo(_) => {
            StatusCode::BAD_GATEWAY
        }
        LoginError::Internal(_) => StatusCode::INTERNAL_SERVER_ERROR,
        _ => StatusCode::BAD_REQUEST,
    };
    html(
        status,
        ErrorPage {
            message: e.to_string(),
        }
        .render(),
    )
}

fn pretty(value: &serde_json::Value) -> String {
    serde_json::to_string_pretty(value).unwrap_or_else(|_| value.to_string())
}

fn html(status: StatusCode, rendered: askama::Result<String>) -> HttpResponse {
    match rendered {
        Ok(body) => HttpResponse::build(status)
            .insert_header((header::CACHE_CONTROL, "no-store"))
            .content_type("text/html; charset=utf-8")
            .body(body),
        Err(e) => {
            tracing::error!(error = %e, "demo RP page failed to render");
            HttpResponse::InternalServerError().finish()
        }
    }
}
